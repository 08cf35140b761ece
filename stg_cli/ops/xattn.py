"""Fused masked softmax attention for short keys (``torch.ops.stg.xattn``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stg_cli.ops import _native, _validate, reference

NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}
# The CUDA kernels keep a query row's features in registers (any number of keys, visited in
# chunks): beyond this width the reference runs instead (csrc/xattn/cuda/xattn_kernels.cuh,
# kMaxHeadDim).
CUDA_MAX_DIM = 512


def xattn(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None = None,
    *,
    scale: float | None = None,
    return_probs: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """softmax(scale · q kᵀ, masked) v without materialising anything of size [B, M, L, D].

    Args:
        q: queries [B, M, D]; k, v: keys and values [B, L, D] (same dtype and device).
        key_mask: [B, L] bool, True for real keys (None: all real).
        scale: logit scale, 1/sqrt(D) by default (1 when D = 0).
        return_probs: also return the attention probabilities (heatmaps need them, training
            does not).

    Returns:
        ``(out, probs)``: out [B, M, D]; probs [B, M, L] or None. A query row whose keys are
        all masked gets zeros in both (never NaN). Differentiable in q, k and v through a
        native backward kernel.
    """
    for value, name in ((q, "q"), (k, "k"), (v, "v")):
        _validate.tensor(value, name)
        _validate.rank(value, 3, name, "[B, M, D]" if name == "q" else "[B, L, D]")
        _validate.floating(value, name)
    batch, _, dim = q.shape
    keys = k.shape[1]
    _validate.shape(k, (batch, keys, dim), "k")
    _validate.shape(v, (batch, keys, dim), "v")
    for value, name in ((k, "k"), (v, "v")):
        _validate.same_dtype(value, q, name)
        _validate.same_device(value, q, name)
    key_mask = _validate.mask(key_mask, (batch, keys), "key_mask", q)
    if scale is None:
        scale = 1.0 / math.sqrt(dim) if dim > 0 else 1.0
    scale = _validate.finite(scale, "scale")
    native_dtypes = NATIVE_DTYPES.get(q.device.type, ())
    size_limit = None
    if q.device.type == "cuda" and dim > CUDA_MAX_DIM:
        size_limit = f"D <= {CUDA_MAX_DIM} features"
    if _native.use_native("xattn", q.device, q.dtype, native_dtypes, size_limit):
        out, _, probs = torch.ops.stg.xattn(q, k, v, key_mask, scale, bool(return_probs))
        return out, (probs if return_probs else None)
    return reference.xattn(q, k, v, key_mask, scale, return_probs)


def _register() -> None:
    @torch.library.register_fake("stg::xattn")
    def _(q, k, v, key_mask, scale, return_probs):
        batch, rows, _ = q.shape
        lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        probs_shape = (batch, rows, k.shape[1]) if return_probs else (0,)
        return (q.new_empty(q.shape), q.new_empty((batch, rows), dtype=lse_dtype), q.new_empty(probs_shape))

    @torch.library.register_fake("stg::xattn_backward")
    def _(grad_out, grad_probs, q, k, v, key_mask, out, lse, scale):
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)

    def setup_context(ctx, inputs, output):
        q, k, v, key_mask, scale, return_probs = inputs
        out, lse, _ = output
        ctx.save_for_backward(q, k, v, key_mask, out, lse)
        ctx.scale = scale
        ctx.return_probs = return_probs

    def backward(ctx, grad_out, _grad_lse, grad_probs):
        q, k, v, key_mask, out, lse = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        if not ctx.return_probs:
            grad_probs = None
        grad_q, grad_k, grad_v = torch.ops.stg.xattn_backward(
            grad_out, grad_probs, q, k, v, key_mask, out, lse, ctx.scale
        )
        return grad_q, grad_k, grad_v, None, None, None

    torch.library.register_autograd("stg::xattn", backward, setup_context=setup_context)


if _native.status().loaded:
    _register()
