"""One training step of the grounding model (forward, backward, AdamW) on random features.

Each call is one optimizer step on a fixed batch of B clips: frame selection (Sinkhorn) over
U candidates, the global branch, and the local branch over every video × sentence pair of each
chunk, then AdamW. clips/s = B / (median ms / 1000); steps/s = 1000 / median ms.

Shapes: ``tiny`` — the demo's (Dv 256 and Dw 300 of the tiny backbone + word2vec, d = 128,
7×7 grid, U = 16, T = 4, B = 32, chunk 8); ``paper`` — d = 512, Dv = Dw = 512 (CLIP ViT-B/32),
7×7 grid, U = 16, T = 8, B = 16 and chunk 8 on the CPU, B = 64 and chunk 16 (the paper's batch)
on CUDA (``quick``: tiny B = 16, paper B = 8, chunk 8).

Variants: ``default`` is exactly what ``stg train`` runs on the device: the local branch
factored through the words (``GroundingModel.factorable``: exact, the R × R self-attention in
width 2(K + 1) instead of d) with the attention kernels chosen per call
(:func:`stg_cli.models.grounding.uses_native_attention`), eager; ``factored, native`` and
``factored, reference`` the same with one kind of kernel throughout. The others run every
layer as written: ``native`` with the attention through :func:`stg_cli.ops.xattn`,
``reference`` through the bmm reference (:func:`stg_cli.ops.reference.xattn`);
``compile(reference)`` and ``compile(native)`` the same with the forward pass and the losses
under ``torch.compile`` (compiled, and run twice, while the variant is set up, so that neither
the compile nor its first calls are timed).

Targets: ``default`` ≥ 1.5× the eager reference and ≥ 1× ``compile(reference)``; ``native``
≥ 1× the reference (the same layers, other kernels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from stg_cli.bench.common import REFERENCE, Case, Target, Variant, native_variant
from stg_cli.models import GroundingModel, ModelConfig
from stg_cli.train.losses import LossConfig, global_loss, local_loss

WORDS = 12
COMPILED_REFERENCE = "compile(reference)"
COMPILED_NATIVE = "compile(native)"
DEFAULT = "default (stg train)"
# what stg train's step must reach against the eager reference (and ≥ 1× its compiled form)
DEFAULT_MIN_SPEEDUP = 1.5
# calls that compile a variant before it is timed (the first traces, the second may recompile)
COMPILE_CALLS = 2


@dataclass(frozen=True)
class TrainShape:
    name: str
    visual_dim: int
    text_dim: int
    dim: int
    frames_u: int
    frames_t: int
    batch: int
    chunk: int

    def describe(self) -> str:
        return (
            f"{self.name}: B={self.batch} clips/step, U={self.frames_u} T={self.frames_t} N=49 "
            f"d={self.dim} Dv={self.visual_dim} Dw={self.text_dim} K={WORDS} chunk={self.chunk}"
        )


def shapes(quick: bool, device_type: str = "cpu") -> list[TrainShape]:
    """The benchmarked shapes; on CUDA the paper shape uses the paper's batch of 64 clips."""
    if quick:
        return [
            TrainShape("tiny", 256, 300, 128, 16, 4, 16, 8),
            TrainShape("paper", 512, 512, 512, 16, 8, 8, 8),
        ]
    if device_type == "cuda":
        return [
            TrainShape("tiny", 256, 300, 128, 16, 4, 32, 8),
            TrainShape("paper", 512, 512, 512, 16, 8, 64, 16),
        ]
    return [TrainShape("tiny", 256, 300, 128, 16, 4, 32, 8), TrainShape("paper", 512, 512, 512, 16, 8, 16, 8)]


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One case per shape: native and reference attention, each eager and compiled."""
    result = []
    for shape in shapes(quick, device.type):
        result.append(
            Case(
                op="train step",
                shape=shape.describe(),
                device=str(device),
                variants=[
                    Variant(DEFAULT, _setup(shape, device, "auto", factored=True)),
                    _factored_variant(shape, device, "native"),
                    _factored_variant(shape, device, "reference"),
                    native_variant("xattn", device, _setup(shape, device, "native")),
                    Variant(REFERENCE, _setup(shape, device, "reference")),
                    Variant(COMPILED_REFERENCE, _setup(shape, device, "reference", compiled=True)),
                    _renamed(
                        native_variant("xattn", device, _setup(shape, device, "native", compiled=True)),
                        COMPILED_NATIVE,
                    ),
                ],
                targets=[
                    Target(REFERENCE, "time", DEFAULT_MIN_SPEEDUP, subject=DEFAULT),
                    Target(COMPILED_REFERENCE, "time", 1.0, subject=DEFAULT),
                    Target(REFERENCE, "memory", subject=DEFAULT),
                    Target(REFERENCE, "time", 1.0),
                    Target(REFERENCE, "memory"),
                ],
            )
        )
    return result


def _setup(
    shape: TrainShape, device: torch.device, ops: str, compiled: bool = False, factored: bool = False
) -> Callable[[], Callable[[], object]]:
    def setup() -> Callable[[], object]:
        step = training_step(shape, device, ops, compiled=compiled, factored=factored)
        if compiled:
            for _ in range(COMPILE_CALLS):
                step()
        return step

    return setup


def _factored_variant(shape: TrainShape, device: torch.device, ops: str) -> Variant:
    """stg train's factored step with ``ops`` kernels (skipped when native ones are missing)."""
    setup = _setup(shape, device, ops, factored=True)
    if ops == "native":
        return _renamed(native_variant("xattn", device, setup), f"factored, {ops}")
    return Variant(f"factored, {ops}", setup)


def _renamed(variant: Variant, name: str) -> Variant:
    return Variant(name, variant.setup)


def training_step(
    shape: TrainShape,
    device: torch.device,
    ops: str,
    seed: int = 0,
    compiled: bool = False,
    factored: bool = False,
) -> Callable[[], object]:
    """A closure running one optimizer step on a fixed random batch (``compiled``: the forward
    pass and the losses under ``torch.compile``; ``factored``: the local branch in the span of
    the words, as ``stg train`` runs it, see ``GroundingModel.factorable``)."""
    generator = torch.Generator().manual_seed(seed)
    config = ModelConfig(
        visual_dim=shape.visual_dim,
        text_dim=shape.text_dim,
        dim=shape.dim,
        frames_u=shape.frames_u,
        frames_t=shape.frames_t,
    )
    torch.manual_seed(seed)
    model = GroundingModel(config, ops=ops, factored=factored).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, u = shape.batch, shape.frames_u
    word_mask = torch.arange(WORDS)[None, :] < torch.randint(3, WORDS + 1, (b, 1), generator=generator)
    inputs = {
        "global_feats": torch.randn(b, u, shape.visual_dim, generator=generator),
        "grid_feats": torch.randn(b, u, 49, shape.visual_dim, generator=generator),
        "frame_mask": torch.ones(b, u, dtype=torch.bool),
        "sentence": torch.randn(b, shape.text_dim, generator=generator),
        "words": torch.randn(b, WORDS, shape.text_dim, generator=generator),
        "word_mask": word_mask,
        "boundary": torch.tensor([[u // 4, 3 * u // 4]] * b),
    }
    inputs = {key: value.to(device) for key, value in inputs.items()}
    losses = LossConfig()
    amp = device.type == "cuda"

    def forward_and_losses() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(**inputs, local_chunk=shape.chunk)
        lg, _ = global_loss(out.video_global.float(), out.sentence_global.float(), losses)
        return lg + local_loss(out.local_similarity, losses)

    loss_of = torch.compile(forward_and_losses) if compiled else forward_and_losses

    def step() -> object:
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    return step
