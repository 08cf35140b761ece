"""Heatmap chains: attention rollout and the paper's chain, native vs reference.

The problem is the spatial grounding step's: B = 16 clips of 8 frames × 49 cells = 392 region
tokens plus 20 word tokens (n = 412), three layers (CA1, SA, CA2 over the joint token graph),
float32. ``rollout`` reads the 20 word rows of the rolled-out map; ``rollout_paper`` computes
the paper's mean over regions of CA2 · SA · CA1 at the same sizes (6..20 real words per clip).
The attention maps are random row-stochastic matrices (softmax of Gaussian logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from stg_cli.bench.common import REFERENCE, Case, Target, Variant, native_variant
from stg_cli.ops import reference, rollout, rollout_paper

CLIPS, REGIONS, WORDS, LAYERS = 16, 8 * 49, 20, 3
TOKENS = REGIONS + WORDS
MIN_REAL_WORDS = 6


def cases(quick: bool, device: torch.device) -> list[Case]:
    """Rollout on [16, 3, 412, 412] and the paper chain at the same sizes.

    ``quick`` keeps the shapes: at full size a call takes a fraction of a second.
    """
    return [
        Case(
            op="rollout",
            shape=f"B={CLIPS} layers={LAYERS} n={REGIONS}+{WORDS} rows={WORDS} fp32",
            device=str(device),
            variants=[
                native_variant("rollout", device, lambda: _rollout_call(rollout, device)),
                Variant(REFERENCE, lambda: _rollout_call(reference.rollout, device)),
            ],
            targets=[Target(REFERENCE, "time", 3.0)],
            bytes_moved=4 * CLIPS * (LAYERS * (REGIONS + WORDS) ** 2 + WORDS * (REGIONS + WORDS)),
        ),
        Case(
            op="rollout_paper",
            shape=f"B={CLIPS} R={REGIONS} W={WORDS} fp32",
            device=str(device),
            variants=[
                native_variant("rollout_paper", device, lambda: _paper_call(rollout_paper, device)),
                Variant(REFERENCE, lambda: _paper_call(reference.rollout_paper, device)),
            ],
            targets=[Target(REFERENCE, "time")],
            bytes_moved=4 * CLIPS * (3 * REGIONS * WORDS + WORDS * WORDS + REGIONS),
        ),
    ]


def make_layers(device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Row-stochastic layers [16, 3, 412, 412] and the word-token rows [20] (392..411)."""
    generator = torch.Generator().manual_seed(seed)
    layers = torch.softmax(torch.randn(CLIPS, LAYERS, TOKENS, TOKENS, generator=generator), dim=-1)
    return layers.to(device), torch.arange(REGIONS, TOKENS, device=device)


def make_paper_maps(device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ca2 [16, 392, 20], sa [16, 20, 20], ca1 [16, 20, 392] and word_mask [16, 20]."""
    generator = torch.Generator().manual_seed(seed)
    real_words = torch.randint(MIN_REAL_WORDS, WORDS + 1, (CLIPS, 1), generator=generator)
    word_mask = torch.arange(WORDS)[None, :] < real_words
    ca2 = torch.softmax(torch.randn(CLIPS, REGIONS, WORDS, generator=generator), dim=-1)
    sa = torch.softmax(torch.randn(CLIPS, WORDS, WORDS, generator=generator), dim=-1)
    ca1 = torch.softmax(torch.randn(CLIPS, WORDS, REGIONS, generator=generator), dim=-1)
    return tuple(tensor.to(device) for tensor in (ca2, sa, ca1, word_mask))


def _rollout_call(function: Callable[[Tensor, Tensor], Tensor], device: torch.device) -> Callable[[], Tensor]:
    layers, rows = make_layers(device)
    return lambda: function(layers, rows)


def _paper_call(function: Callable[..., Tensor], device: torch.device) -> Callable[[], Tensor]:
    ca2, sa, ca1, word_mask = make_paper_maps(device)
    return lambda: function(ca2, sa, ca1, word_mask)
