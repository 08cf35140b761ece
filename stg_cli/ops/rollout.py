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
        1 when the layers' rows do. Differentiable in ``layers``.
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
    if rows.numel() and not rows.is_meta and (int(rows.min()) < 0 or int(rows.max()) >= size):
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

    def rollout_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def rollout_backward(ctx, grad):
        layers, rows = ctx.saved_tensors
        return _rollout_grad(layers, rows, grad), None

    def paper_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def paper_backward(ctx, grad):
        return *_rollout_paper_grads(*ctx.saved_tensors, grad), None

    torch.library.register_autograd("stg::rollout", rollout_backward, setup_context=rollout_setup)
    torch.library.register_autograd("stg::rollout_paper", paper_backward, setup_context=paper_setup)


def _rollout_grad(layers: Tensor, rows: Tensor, grad: Tensor) -> Tensor:
    """d(rows of Ã_{Ly-1}···Ã_0)/d layers in O(Ly·R·n²): grad [B, R, n] → [B, Ly, n, n].

    With left_l = E·Ã_{Ly-1}···Ã_{l+1} and right_l = Ã_{l-1}···Ã_0, dÃ_l = left_lᵀ·G·right_lᵀ;
    G·right_lᵀ is built from the first layer up, left_l from the last layer down.
    """
    depth, size = layers.shape[1], layers.shape[2]
    mixed = 0.5 * layers + 0.5 * torch.eye(size, dtype=layers.dtype, device=layers.device)
    row_sums = mixed.sum(-1, keepdim=True)
    normalized = mixed / row_sums
    grad_through = [grad]
    for layer in range(depth - 1):
        grad_through.append(torch.bmm(grad_through[-1], normalized[:, layer].transpose(1, 2)))
    selector = torch.zeros(rows.shape[0], size, dtype=layers.dtype, device=layers.device)
    selector[torch.arange(rows.shape[0], device=layers.device), rows] = 1.0
    left = selector.expand(layers.shape[0], -1, -1)
    grads = []
    for layer in range(depth - 1, -1, -1):
        grad_normalized = torch.bmm(left.transpose(1, 2), grad_through[layer])
        grad_mixed = (
            grad_normalized - (grad_normalized * normalized[:, layer]).sum(-1, keepdim=True)
        ) / row_sums[:, layer]
        grads.append(0.5 * grad_mixed)
        left = torch.bmm(left, normalized[:, layer])
    return torch.stack(grads[::-1], dim=1)


def _rollout_paper_grads(
    ca2: Tensor, sa: Tensor, ca1: Tensor, word_mask: Tensor, grad: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of heat = (mean_r CA2·m)·(m·SA·m)·(m·CA1) for grad [B, R]."""
    m = word_mask.to(ca2.dtype)
    regions = ca2.shape[1]
    mean_ca2 = ca2.mean(1) * m
    sa_masked = sa * m[:, :, None] * m[:, None, :]
    ca1_masked = ca1 * m[:, :, None]
    through_sa = torch.bmm(mean_ca2[:, None, :], sa_masked).squeeze(1)
    grad_ca1 = (through_sa * m)[:, :, None] * grad[:, None, :]
    grad_through_sa = torch.bmm(ca1_masked, grad[:, :, None]).squeeze(2)
    grad_sa = mean_ca2[:, :, None] * grad_through_sa[:, None, :] * m[:, :, None] * m[:, None, :]
    grad_mean = torch.bmm(sa_masked, grad_through_sa[:, :, None]).squeeze(2) * m
    grad_ca2 = (grad_mean / regions)[:, None, :].expand(-1, regions, -1)
    return grad_ca2, grad_sa, grad_ca1


if _native.status().loaded:
    _register()
