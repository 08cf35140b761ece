"""Batched log-domain Sinkhorn-Knopp (``torch.ops.stg.sinkhorn``)."""

from __future__ import annotations

import torch
from torch import Tensor

from stg_cli.ops import _native, _validate, reference

NATIVE_DTYPES = (torch.float32, torch.float64)
# The kernels' limit (csrc/common/op_checks.h): the backward keeps every iteration's potentials.
MAX_ITERS = 10_000


def sinkhorn(
    P: Tensor,
    word_mask: Tensor | None = None,
    frame_mask: Tensor | None = None,
    *,
    eps: float = 0.05,
    iters: int = 3,
    tol: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Entropic optimal transport between words and frames, in the log domain.

    Args:
        P: similarities [B, K, U] (words × frames), e.g. cos / τ_sel. float16/bfloat16 inputs
            are computed in float32. Any finite values: P / eps is saturated at ±(the dtype's
            largest value / 256) (``reference.saturated_logits``), so the plan is never NaN.
        word_mask: [B, K] bool, True for real words (None: all real).
        frame_mask: [B, U] bool, True for real frames (None: all real).
        eps: entropic regularisation: the kernel is exp(P / eps). Any finite eps > 0.
        iters: maximum iterations (one row then one column normalisation each; 3 = SwAV),
            at most MAX_ITERS.
        tol: if > 0, each matrix stops on its own before the first iteration whose row-marginal
            L1 error is below tol.

    Returns:
        ``(log_plan, n_iter)``: log_plan [B, K, U] with row sums 1/K_valid and column sums
        1/U_valid (columns are exact, rows converge), -inf on masked rows and columns;
        n_iter [B] int64 iterations done. A matrix with no real word or no real frame is all
        -inf with n_iter = 0. Differentiable with respect to P (exact gradient of the
        unrolled iterations; the stopping decision has none).
    """
    _validate.tensor(P, "P")
    _validate.rank(P, 3, "P", "[B, K, U]")
    _validate.floating(P, "P")
    batch, words, frames = P.shape
    word_mask = _validate.mask(word_mask, (batch, words), "word_mask", P)
    frame_mask = _validate.mask(frame_mask, (batch, frames), "frame_mask", P)
    _validate.finite(eps, "eps", positive=True)
    _validate.finite(tol, "tol", non_negative=True)
    iters = _validate.count(iters, "iters", MAX_ITERS)
    if P.dtype not in NATIVE_DTYPES:
        P = P.float()
    if _native.use_native("sinkhorn", P.device, P.dtype, NATIVE_DTYPES):
        return torch.ops.stg.sinkhorn(P, word_mask, frame_mask, float(eps), iters, float(tol))
    return reference.sinkhorn(P, word_mask, frame_mask, eps, iters, tol)


def _register() -> None:
    @torch.library.register_fake("stg::sinkhorn")
    def _(P, word_mask, frame_mask, eps, iters, tol):
        return P.new_empty(P.shape), P.new_empty((P.shape[0],), dtype=torch.int64)

    @torch.library.register_fake("stg::sinkhorn_backward")
    def _(grad_log_q, P, word_mask, frame_mask, eps, n_iter):
        return P.new_empty(P.shape)

    def setup_context(ctx, inputs, output):
        P, word_mask, frame_mask, eps, _, _ = inputs
        ctx.save_for_backward(P, word_mask, frame_mask, output[1])
        ctx.eps = eps

    def backward(ctx, grad_log_q, _grad_n_iter):
        P, word_mask, frame_mask, n_iter = ctx.saved_tensors
        grad_P = torch.ops.stg.sinkhorn_backward(grad_log_q, P, word_mask, frame_mask, ctx.eps, n_iter)
        return grad_P, None, None, None, None, None

    torch.library.register_autograd("stg::sinkhorn", backward, setup_context=setup_context)


if _native.status().loaded:
    _register()
