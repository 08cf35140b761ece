"""Frame selection: which T of the U candidate frames around an ASR sentence to train on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stg_cli.defaults import SELECTION_MODES
from stg_cli.ops import _validate
from stg_cli.ops.sinkhorn import sinkhorn


@dataclass(frozen=True)
class FrameSelection:
    """Selected frames of each sample.

    Attributes:
        indices: [B, T] int64 frame indices in ascending time order. When fewer than T frames
            are real, the tail repeats the last selected index and ``mask`` is False there.
        mask: [B, T] bool, True for real selections.
        scores: [B, U] the per-frame score that was ranked (-inf for padded frames).
        n_iter: [B] int64 Sinkhorn iterations (zeros for the other modes).
    """

    indices: Tensor
    mask: Tensor
    scores: Tensor
    n_iter: Tensor


@torch.no_grad()
def select_frames(
    word_frame_sim: Tensor,
    word_mask: Tensor | None,
    frame_mask: Tensor | None,
    num_frames: int,
    mode: str = "sinkhorn",
    *,
    sentence_frame_sim: Tensor | None = None,
    boundary: Tensor | None = None,
    eps: float = 0.05,
    iters: int = 3,
    tol: float = 0.0,
) -> FrameSelection:
    """Ranks the candidate frames of each sample and keeps the top ``num_frames``.

    Args:
        word_frame_sim: P [B, K, U] = cos(g(word_k), f(frame_u)) / τ_sel.
        word_mask: [B, K] bool (None: all real). frame_mask: [B, U] bool (None: all real).
        num_frames: T, how many frames to keep.
        mode: ``sinkhorn`` — s_u = Σ_k Q[k,u]·P[k,u] with Q the Sinkhorn plan (Q alone cannot
            rank frames: at convergence every column has the same mass); ``global`` — the
            sentence–frame similarity (needs ``sentence_frame_sim`` [B, U]); ``local`` — the
            mean word–frame similarity over real words; ``none`` — the T frames closest to the
            centre of the ASR boundary.
        boundary: [B, 2] int64 first and last frame index of the ASR sentence (inclusive), for
            ``none``; None uses the span of real frames.
        eps, iters, tol: Sinkhorn settings (see :func:`stg_cli.ops.sinkhorn`).
    """
    _validate.tensor(word_frame_sim, "word_frame_sim")
    _validate.rank(word_frame_sim, 3, "word_frame_sim", "[B, K, U]")
    batch, words, frames = word_frame_sim.shape
    word_mask = _validate.mask(word_mask, (batch, words), "word_mask", word_frame_sim)
    frame_mask = _validate.mask(frame_mask, (batch, frames), "frame_mask", word_frame_sim)
    if mode not in SELECTION_MODES:
        raise ValueError(f"mode must be one of {', '.join(SELECTION_MODES)}, got {mode!r}")
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    n_iter = torch.zeros(batch, dtype=torch.int64, device=word_frame_sim.device)
    sim = word_frame_sim.float() if word_frame_sim.dtype != torch.float64 else word_frame_sim
    if mode == "sinkhorn":
        log_plan, n_iter = sinkhorn(sim, word_mask, frame_mask, eps=eps, iters=iters, tol=tol)
        scores = (log_plan.exp() * sim.masked_fill(~word_mask[:, :, None], 0.0)).sum(1)
    elif mode == "local":
        weights = word_mask.to(sim.dtype)
        scores = (sim * weights[:, :, None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
    elif mode == "global":
        if sentence_frame_sim is None:
            raise ValueError("mode 'global' needs sentence_frame_sim [B, U]")
        _validate.tensor(sentence_frame_sim, "sentence_frame_sim")
        _validate.shape(sentence_frame_sim, (batch, frames), "sentence_frame_sim")
        scores = sentence_frame_sim.to(sim.dtype)
    else:
        scores = _centrality(frame_mask, boundary, sim.dtype)
    scores = scores.masked_fill(~frame_mask, float("-inf"))
    return _top_frames(scores, frame_mask, int(num_frames), n_iter)


def _centrality(frame_mask: Tensor, boundary: Tensor | None, dtype: torch.dtype) -> Tensor:
    """-|u - centre of the boundary|, ties broken towards earlier frames."""
    batch, frames = frame_mask.shape
    positions = torch.arange(frames, device=frame_mask.device, dtype=dtype)
    if boundary is None:
        first = torch.where(frame_mask, positions, torch.full_like(positions, frames)).amin(1)
        last = torch.where(frame_mask, positions, torch.full_like(positions, -1)).amax(1)
    else:
        _validate.tensor(boundary, "boundary")
        _validate.shape(boundary, (batch, 2), "boundary")
        first, last = boundary[:, 0].to(dtype), boundary[:, 1].to(dtype)
    centre = (first + last) / 2
    return -(positions[None, :] - centre[:, None]).abs() - positions[None, :] * 1e-6


def _top_frames(scores: Tensor, frame_mask: Tensor, num_frames: int, n_iter: Tensor) -> FrameSelection:
    batch, frames = scores.shape
    keep = min(num_frames, frames)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]
    chosen_mask = torch.gather(frame_mask, 1, order)
    # Padded frames sort last; move them behind the real ones and sort the rest by time.
    sort_key = torch.where(chosen_mask, order, order + frames)
    sorted_key, _ = torch.sort(sort_key, dim=1)
    real = sorted_key < frames
    indices = torch.where(real, sorted_key, sorted_key - frames)
    if keep < num_frames:
        pad = num_frames - keep
        indices = torch.cat([indices, indices[:, -1:].expand(batch, pad)], dim=1)
        real = torch.cat([real, torch.zeros(batch, pad, dtype=torch.bool, device=real.device)], 1)
    last_real = torch.where(real, indices, torch.full_like(indices, -1)).amax(1, keepdim=True)
    indices = torch.where(real, indices, last_real.clamp(min=0).expand_as(indices))
    return FrameSelection(indices=indices, mask=real, scores=scores, n_iter=n_iter)
