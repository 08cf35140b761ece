"""Sinkhorn frame selection: native vs the eager reference vs POT's batch solver.

The problem is the selector's at the paper's setting: B = 64 clips, K = 20 words, U = 80
candidate frames, P = cos / 0.1 of random unit vectors, eps = 0.05, a fixed number of
iterations (3, SwAV's default, and 50). Every word and frame is real, so POT, which takes no
masks, solves the same problem: ``ot.batch.solve_batch(M=-P, reg=eps, method="log_sinkhorn",
max_iter=iters, tol=0)`` runs exactly ``iters`` log-domain iterations (its convergence test every
10 iterations never stops at tol = 0). POT runs on its PyTorch backend, on the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stg_cli.bench.common import REFERENCE, Case, Target, Variant, native_variant
from stg_cli.ops import reference, sinkhorn

CLIPS, WORDS, FRAMES = 64, 20, 80
EPS = 0.05
SELECTION_TEMPERATURE = 0.1
ITERATIONS = (3, 50)
POT_VARIANT = "POT ot.batch.solve_batch(log_sinkhorn)"
LAUNCH_FLOOR_VARIANT = "launch floor (1-element add kernel)"


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One case per iteration count (3 and 50) at B=64, K=20, U=80.

    ``quick`` keeps the shape: at full size a call takes well under a second.
    """
    return [_case(iters, device) for iters in ITERATIONS]


def make_inputs(device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Similarities P [64, 20, 80] = cos / 0.1 and all-true masks [64, 20], [64, 80]."""
    generator = torch.Generator().manual_seed(seed)
    words = F.normalize(torch.randn(CLIPS, WORDS, 64, generator=generator), dim=-1)
    frames = F.normalize(torch.randn(CLIPS, FRAMES, 64, generator=generator), dim=-1)
    similarities = words @ frames.transpose(1, 2) / SELECTION_TEMPERATURE
    word_mask = torch.ones(CLIPS, WORDS, dtype=torch.bool)
    frame_mask = torch.ones(CLIPS, FRAMES, dtype=torch.bool)
    return similarities.to(device), word_mask.to(device), frame_mask.to(device)


def _case(iters: int, device: torch.device) -> Case:
    variants = [
        native_variant("sinkhorn", device, lambda: _native_call(iters, device)),
        Variant(REFERENCE, lambda: _reference_call(iters, device)),
        Variant(POT_VARIANT, lambda: _pot_call(iters, device)),
    ]
    if device.type == "cuda":
        variants.append(Variant(LAUNCH_FLOOR_VARIANT, lambda: _launch_floor_call(device)))
    return Case(
        op="sinkhorn",
        shape=f"B={CLIPS} K={WORDS} U={FRAMES} iters={iters} eps={EPS} fp32",
        device=str(device),
        variants=variants,
        targets=_targets(device),
        bytes_moved=CLIPS * (2 * WORDS * FRAMES * 4 + WORDS + FRAMES + 8),
    )


def _targets(device: torch.device) -> list[Target]:
    """CPU: ≥ 10× reference, ≥ 50× POT; CUDA: ≥ 20× reference, at most 2× a kernel launch."""
    if device.type == "cuda":
        return [
            Target(REFERENCE, "time", 20.0),
            Target(LAUNCH_FLOOR_VARIANT, "time", 0.5),
            Target(POT_VARIANT, "time"),
        ]
    return [Target(REFERENCE, "time", 10.0), Target(POT_VARIANT, "time", 50.0)]


def _native_call(iters: int, device: torch.device) -> Callable[[], object]:
    similarities, word_mask, frame_mask = make_inputs(device)
    return lambda: sinkhorn(similarities, word_mask, frame_mask, eps=EPS, iters=iters)


def _reference_call(iters: int, device: torch.device) -> Callable[[], object]:
    similarities, word_mask, frame_mask = make_inputs(device)
    return lambda: reference.sinkhorn(similarities, word_mask, frame_mask, EPS, iters)


def _pot_call(iters: int, device: torch.device) -> Callable[[], object] | str:
    try:
        from ot.batch import solve_batch
    except ImportError:
        return "POT (pip install pot) with ot.batch is not installed"
    costs = -make_inputs(device)[0]
    return lambda: solve_batch(costs, reg=EPS, max_iter=iters, tol=0.0, method="log_sinkhorn", grad="detach")


def _launch_floor_call(device: torch.device) -> Callable[[], object]:
    scalar = torch.zeros(1, device=device)
    return lambda: scalar.add_(1.0)
