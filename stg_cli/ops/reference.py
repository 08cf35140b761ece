"""Pure-PyTorch references of the native ops.

These are the ground truth for the kernels: tests compare against them, benchmarks time
them, and the public functions in :mod:`stg_cli.ops` fall back to them when the compiled
extension is unavailable. They are differentiable and run in float32 or float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_logsumexp(x: Tensor, valid: Tensor, dim: int) -> Tensor:
    """logsumexp of ``x`` over ``dim`` restricted to ``valid`` entries.

    Returns -inf where a slice has no valid entry. Invalid entries may hold -inf; neither the
    value nor the gradient is ever NaN, because invalid entries are replaced before ``exp``.
    """
    any_valid = valid.any(dim)
    peak = x.masked_fill(~valid, float("-inf")).amax(dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak)).detach()
    shifted = torch.where(valid, x, peak) - peak
    total = torch.where(valid, shifted.exp(), torch.zeros_like(shifted)).sum(dim)
    safe_log = torch.where(any_valid, total, torch.ones_like(total)).log()
    lse = peak.squeeze(dim) + safe_log
    return lse.masked_fill(~any_valid, float("-inf"))


def saturated_logits(P: Tensor, eps: float) -> Tensor:
    """The exponent of the Sinkhorn kernel, P / eps, saturated at ±(largest value / 256).

    Computed in float64, so a finite P and any positive eps never give ±inf (which would make
    the plan NaN); see csrc/sinkhorn/logit.h for why the limit is safe. Saturated entries have
    zero gradient, as with torch.clamp.
    """
    limit = torch.finfo(P.dtype).max / 256
    return (P.to(torch.float64) / eps).clamp(-limit, limit).to(P.dtype)


def sinkhorn(
    P: Tensor, word_mask: Tensor, frame_mask: Tensor, eps: float = 0.05, iters: int = 3, tol: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Batched log-domain Sinkhorn-Knopp.

    Args:
        P: similarities [B, K, U] (words × frames).
        word_mask: [B, K] bool, True for real words.
        frame_mask: [B, U] bool, True for real frames.
        eps: entropic regularisation; the kernel is exp(saturated_logits(P, eps)).
        iters: maximum number of iterations (one row update then one column update).
        tol: if > 0, a matrix stops before the first iteration at which the L1 error of its
            row marginals is below ``tol`` (columns are exact after every iteration).

    Returns:
        log_q: [B, K, U] log transport plan with row sums 1/K_valid and column sums
            1/U_valid; -inf on masked rows/columns and on every entry of an all-masked matrix.
        n_iter: [B] int64 iterations performed (0 for an all-masked matrix).
    """
    if P.shape[1] == 0 or P.shape[2] == 0:
        return P.new_full(P.shape, float("-inf")), torch.zeros(P.shape[0], dtype=torch.int64, device=P.device)
    valid = word_mask[:, :, None] & frame_mask[:, None, :]
    log_kernel = torch.where(valid, saturated_logits(P, eps), torch.full_like(P, float("-inf")))
    k_valid = word_mask.sum(1).to(P.dtype)
    u_valid = frame_mask.sum(1).to(P.dtype)
    log_a = -k_valid.clamp(min=1).log()[:, None]
    log_b = -u_valid.clamp(min=1).log()[:, None]
    neg_inf_f = torch.full(word_mask.shape, float("-inf"), dtype=P.dtype, device=P.device)
    neg_inf_g = torch.full(frame_mask.shape, float("-inf"), dtype=P.dtype, device=P.device)
    f = torch.where(word_mask, torch.zeros_like(neg_inf_f), neg_inf_f)
    g = torch.where(frame_mask, torch.zeros_like(neg_inf_g), neg_inf_g)
    active = (k_valid > 0) & (u_valid > 0)
    n_iter = torch.zeros(P.shape[0], dtype=torch.int64, device=P.device)
    for step in range(iters):
        row_lse = masked_logsumexp(log_kernel + g[:, None, :], valid, dim=2)
        if tol > 0 and step > 0:
            with torch.no_grad():
                row_mass = (f + row_lse).exp().masked_fill(~word_mask, 0.0)
                error = (row_mass - log_a.exp()).abs().masked_fill(~word_mask, 0.0).sum(1)
                active = active & (error >= tol)
        # Meta tensors hold no values: their shapes do not depend on when iterations stop.
        if not P.is_meta and not bool(active.any()):
            break
        f = torch.where(active[:, None] & word_mask, log_a - row_lse, f)
        col_lse = masked_logsumexp(log_kernel + f[:, :, None], valid, dim=1)
        g = torch.where(active[:, None] & frame_mask, log_b - col_lse, g)
        n_iter = n_iter + active.to(torch.int64)
    log_q = log_kernel + f[:, :, None] + g[:, None, :]
    return torch.where(valid, log_q, torch.full_like(log_q, float("-inf"))), n_iter


def xattn(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, scale: float, return_probs: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Masked softmax attention, bmm formulation.

    Args:
        q: queries [B, M, D]; k, v: keys and values [B, L, D].
        key_mask: [B, L] bool, True for real keys.
        scale: logit scale (1/sqrt(D) for dot-product attention).
        return_probs: also return the attention probabilities.

    Returns:
        out [B, M, D] and probs [B, M, L] (None unless asked). A row whose keys are all
        masked gives zeros in both; a row with a NaN logit gives NaN in both (probabilities
        of masked keys stay 0).
    """
    probs = masked_softmax(torch.bmm(q, k.transpose(1, 2)) * scale, key_mask[:, None, :])
    out = torch.bmm(probs, v)
    return out, (probs if return_probs else None)


def masked_softmax(logits: Tensor, key_mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` among the keys ``key_mask`` keeps (bool, broadcastable to
    ``logits``): masked keys get 0, and a row without a key is all 0 (never NaN)."""
    logits = logits.masked_fill(~key_mask, torch.finfo(logits.dtype).min)
    return torch.where(key_mask, torch.softmax(logits, dim=dim), 0.0)


def normalized_rollout_layers(layers: Tensor) -> Tensor:
    """Ã = rownorm(0.5·A + 0.5·I) for layers [..., n, n]."""
    eye = torch.eye(layers.shape[-1], dtype=layers.dtype, device=layers.device)
    mixed = 0.5 * layers + 0.5 * eye
    return mixed / mixed.sum(-1, keepdim=True)


def rollout(layers: Tensor, rows: Tensor) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) over a stack of layers.

    Args:
        layers: [B, Ly, n, n] attention maps in layer order, rows are queries.
        rows: [R] int64 indices of the output tokens to read.

    Returns:
        [B, R, n]: the selected rows of Ã_{Ly-1} ··· Ã_0 with Ã = rownorm(0.5·A + 0.5·I).
    """
    mixed = normalized_rollout_layers(layers)
    joint = mixed[:, 0]
    for layer in range(1, layers.shape[1]):
        joint = torch.bmm(mixed[:, layer], joint)
    return joint[:, rows, :]


def rollout_paper(ca2: Tensor, sa: Tensor, ca1: Tensor, word_mask: Tensor) -> Tensor:
    """The heatmap chain the paper evaluates.

    Args:
        ca2: [B, R, W] second cross-attention, regions → words.
        sa: [B, W, W] word self-attention.
        ca1: [B, W, R] first cross-attention, words → regions.
        word_mask: [B, W] bool, padded words are zeroed in every factor.

    Returns:
        heat [B, R] = mean over query regions r' of (CA2 · SA · CA1)[r', :].
    """
    m = word_mask.to(ca2.dtype)
    ca2_masked = ca2 * m[:, None, :]
    sa_masked = sa * m[:, :, None] * m[:, None, :]
    ca1_masked = ca1 * m[:, :, None]
    chain = torch.bmm(torch.bmm(ca2_masked, sa_masked), ca1_masked)
    return chain.mean(1)
