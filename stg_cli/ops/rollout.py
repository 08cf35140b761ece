"""Attention rollout and the paper's heatmap chain (``torch.ops.stg.rollout*``)."""

from __future__ import annotations

import torch
from torch import Tensor

from stg_cli.ops import _native, _validate, reference

NATIVE_DTYPES = (torch.float32, torch.float64)


def rollout(layers: Tensor, rows: Tensor | None = None) -> Tensor:
    """Attention rollout (Abnar & Zuidema) read off selected output tokens.

    Args:
        layers: [B, Ly, n, n] attention maps over the joint token graph, in layer order,
            rows = queries (e.g. CA1, SA, CA2 of the local branch over regions + words).
        rows: [R] int64 token indices to read (e.g. the word tokens); None reads all n.

    Returns:
        [B, R, n]: rows of Ã_{Ly-1} ··· Ã_0 with Ã = rownorm(0.5·A + 0.5·I). Each row sums to
        1 when the layers' rows do. Not differentiable through the native kernel.
    """
    _validate.tensor(layers, "layers")
    _validate.rank(layers, 4, "layers", "[B, Ly, n, n]")
    _validate.floating(layers, "layers")
    batch, depth, size, size_cols = layers.shape
    if size != size_cols or depth < 1:
        raise ValueError(f"layers must be [B, Ly>=1, n, n], got shape {tuple(layers.shape)}")
    if rows is None:
        rows = torch.arange(size, device=layers.device)
    _validate.tensor(rows, "rows")
    _validate.rank(rows, 1, "rows", "[R]")
    if rows.dtype != torch.int64:
        raise ValueError(f"rows must be int64 indices, got {rows.dtype}")
    _validate.same_device(rows, layers, "rows")
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= size):
        raise ValueError(f"rows must index tokens in [0, {size}), got {rows.tolist()}")
    if _native.use_native("rollout", layers.device, layers.dtype, NATIVE_DTYPES):
        return torch.ops.stg.rollout(layers, rows)
    return reference.rollout(layers, rows)


def rollout_paper(ca2: Tensor, sa: Tensor, ca1: Tensor, word_mask: Tensor | None = None) -> Tensor:
    """The heatmap the paper evaluates: mean over query regions of CA2 · SA · CA1.

    Args:
        ca2: [B, R, W] second cross-attention, regions → words.
        sa: [B, W, W] word self-attention.
        ca1: [B, W, R] first cross-attention, words → regions.
        word_mask: [B, W] bool, padded words are zeroed in every factor (None: all real).

    Returns:
        heat [B, R] (unnormalised; the grounding step turns it into a probability over cells).
    """
    for value, name in ((ca2, "ca2"), (sa, "sa"), (ca1, "ca1")):
        _validate.tensor(value, name)
        _validate.rank(value, 3, name, {"ca2": "[B, R, W]", "sa": "[B, W, W]", "ca1": "[B, W, R]"}[name])
        _validate.floating(value, name)
    batch, regions, words = ca2.shape
    _validate.shape(sa, (batch, words, words), "sa")
    _validate.shape(ca1, (batch, words, regions), "ca1")
    for value, name in ((sa, "sa"), (ca1, "ca1")):
        _validate.same_dtype(value, ca2, name)
        _validate.same_device(value, ca2, name)
    word_mask = _validate.mask(word_mask, (batch, words), "word_mask", ca2)
    if _native.use_native("rollout_paper", ca2.device, ca2.dtype, NATIVE_DTYPES):
        return torch.ops.stg.rollout_paper(ca2, sa, ca1, word_mask)
    return reference.rollout_paper(ca2, sa, ca1, word_mask)


def _register() -> None:
    @torch.library.register_fake("stg::rollout")
    def _(layers, rows):
        return layers.new_empty((layers.shape[0], rows.shape[0], layers.shape[2]))

    @torch.library.register_fake("stg::rollout_paper")
    def _(ca2, sa, ca1, word_mask):
        return ca2.new_empty((ca2.shape[0], ca2.shape[1]))


if _native.status().loaded:
    _register()
