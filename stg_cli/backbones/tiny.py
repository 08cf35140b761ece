"""``tiny``: a small seeded random-init conv net with a 7×7 grid, fast on a CPU.

No weights are loaded: the network is drawn from its own ``torch.Generator`` seeded with ``seed``,
so the same seed gives the same features on every machine, whatever the global RNG state. It is
meant for tests and the demo on synthetic videos, where a learned projection on top of frozen
random features must still tell which coloured object is in which cell. Hence:

- the input is normalised with fixed per-channel constants (no data-dependent normalisation that
  would wash out colour), and there is no batch/layer norm anywhere;
- a wide first layer (5×5, 64 channels) of random filters keeps colour and texture detail;
- the grid token of a cell is the concatenation of the deep features at that cell (192 channels,
  receptive field ~45 px at 112×112 input) and the first-layer features average-pooled over the
  cell (64 channels): the pooled shallow part keeps the cell's own colour and texture statistics,
  the deep part its shapes and surroundings;
- the global token is the mean of the 49 grid tokens.

Layout at the default input 112×112 (H×W):

    conv 3→64   5×5 stride 2 + ReLU   → 56×56   (shallow)
    conv 64→96  3×3 stride 2 + ReLU   → 28×28
    conv 96→128 3×3 stride 2 + ReLU   → 14×14
    conv 128→192 3×3 stride 2 + ReLU  → 7×7     (deep)
    grid = concat(deep, avgpool8(shallow)) → 7×7×256;  global = mean over the 49 cells

Weights are Kaiming-normal (fan-in, ReLU gain) so activations keep roughly unit scale through the
layers; biases are small (N(0, 0.1²)) so that ReLU does not zero half of every map's mean.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor, nn

from stg_cli.backbones.base import VisualBackbone, VisualSpec

TINY_INPUT = (112, 112)
TINY_MEAN = (0.45, 0.45, 0.45)
TINY_STD = (0.25, 0.25, 0.25)
# (in, out, kernel, stride) of the four conv layers
TINY_LAYERS = ((3, 64, 5, 2), (64, 96, 3, 2), (96, 128, 3, 2), (128, 192, 3, 2))
TINY_DIM = TINY_LAYERS[-1][1] + TINY_LAYERS[0][1]


def _architecture_hash() -> str:
    text = repr((TINY_INPUT, TINY_MEAN, TINY_STD, TINY_LAYERS, "relu", "kaiming", "bias0.1", 1))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class TinyBackbone(VisualBackbone):
    """Seeded random conv net: uint8 frames ``[U, 1, 112, 112, 3]`` → global [U, 256], grid [U, 49, 256]."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self.spec = VisualSpec(
            name="tiny", grid=(7, 7), dim=TINY_DIM, fps=1.0, input_size=TINY_INPUT, clip_len=1, clip_fps=1.0
        )
        self.fingerprint = f"tiny:seed={self.seed}:arch={_architecture_hash()}"
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, k, stride=s, padding=k // 2) for cin, cout, k, s in TINY_LAYERS
        )
        self.register_buffer("mean", torch.tensor(TINY_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(TINY_STD).view(1, 3, 1, 1))
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
                std = math.sqrt(2.0 / fan_in)
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B, 3, 112, 112] in [0, 1] → (global [B, 256], grid [B, 49, 256])."""
        x = (x - self.mean) / self.std
        shallow = torch.relu(self.convs[0](x))
        deep = shallow
        for conv in self.convs[1:]:
            deep = torch.relu(conv(deep))
        gh, gw = self.spec.grid
        pooled = nn.functional.adaptive_avg_pool2d(shallow, (gh, gw))
        grid = torch.cat([deep, pooled], dim=1).flatten(2).transpose(1, 2)
        return grid.mean(dim=1), grid.contiguous()
