"""Cross-attention forward + backward: native vs bmm reference vs SDPA vs materialising.

The problem is the local branch's at training shapes: every (video, sentence) pair of a chunk
cross-attends its R = 8 · 49 = 392 region tokens (queries) to the sentence's L = 20 word tokens
(keys and values, padded words masked), D = 512, float32. One call is the forward, then the
backward of ``out`` against a fixed random gradient (q, k and v all require gradients).

Variants:
- ``native``: :func:`stg_cli.ops.xattn` (``torch.ops.stg.xattn`` and its backward kernel);
- ``reference``: :func:`stg_cli.ops.reference.xattn`, bmm + masked softmax + bmm;
- SDPA: ``torch.nn.functional.scaled_dot_product_attention`` with a boolean ``attn_mask``
  (on CUDA restricted to the memory-efficient backend);
- materialising: :func:`materialised_attention`, the formulation of the authors' code, which
  builds [pairs, R, L, D] products for the logits and for the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stg_cli.bench.common import REFERENCE, Case, Target, Variant, memory_available_bytes, native_variant
from stg_cli.ops import reference, xattn

REGIONS, WORDS, DIM = 8 * 49, 20, 512
PAIRS_FULL, PAIRS_QUICK = 256, 16
MIN_REAL_WORDS = 6
SCALE = 1.0 / math.sqrt(DIM)
SDPA_VARIANT = "SDPA (bool attn_mask)"
SDPA_EFFICIENT_VARIANT = "SDPA memory-efficient (bool attn_mask)"
MATERIALISING_VARIANT = "materialising [pairs,R,L,D] (official code)"

Attention = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One case: 256 pairs × R=392 × L=20 × D=512 (16 pairs with ``quick``)."""
    pairs = PAIRS_QUICK if quick else PAIRS_FULL
    sdpa_name = SDPA_EFFICIENT_VARIANT if device.type == "cuda" else SDPA_VARIANT
    variants = [
        native_variant("xattn", device, lambda: _training_step(_native, pairs, device)),
        Variant(REFERENCE, lambda: _training_step(_reference, pairs, device)),
        Variant(sdpa_name, lambda: _training_step(_sdpa_for(device), pairs, device)),
        Variant(MATERIALISING_VARIANT, lambda: _materialising_step(pairs, device)),
    ]
    speed_targets = (
        [Target(sdpa_name, "time", 2.0), Target(REFERENCE, "time")]
        if device.type == "cuda"
        else [Target(REFERENCE, "time", 1.0), Target(sdpa_name, "time")]
    )
    return [
        Case(
            op="xattn",
            shape=f"pairs={pairs} R={REGIONS} L={WORDS} D={DIM} fp32 fwd+bwd",
            device=str(device),
            variants=variants,
            targets=[
                *speed_targets,
                Target(MATERIALISING_VARIANT, "memory", 5.0),
                Target(MATERIALISING_VARIANT, "time"),
            ],
            # forward: q, k, v in, out; backward: grad_out, q, k, v in, grad q, k, v out (fp32).
            bytes_moved=4 * pairs * (5 * REGIONS * DIM + 6 * WORDS * DIM),
        )
    ]


def make_inputs(pairs: int, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
    """Seeded inputs of one training step.

    Returns:
        ``(q, k, v, key_mask, grad_out)``: q [pairs, 392, 512], k and v [pairs, 20, 512] (the
        three require grad), key_mask [pairs, 20] bool with 6..20 real words per pair, and the
        gradient of the output [pairs, 392, 512].
    """
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(pairs, REGIONS, DIM, generator=generator)
    k = torch.randn(pairs, WORDS, DIM, generator=generator)
    v = torch.randn(pairs, WORDS, DIM, generator=generator)
    real_words = torch.randint(MIN_REAL_WORDS, WORDS + 1, (pairs, 1), generator=generator)
    key_mask = torch.arange(WORDS)[None, :] < real_words
    grad_out = torch.randn(pairs, REGIONS, DIM, generator=generator)
    leaves = [tensor.to(device).requires_grad_() for tensor in (q, k, v)]
    return (*leaves, key_mask.to(device), grad_out.to(device))


def materialised_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
    """Masked softmax attention written as the authors' code does, through [B, M, L, D] products.

    Args:
        q: [B, M, D]; k, v: [B, L, D]; key_mask: [B, L] bool, True for real keys.

    Returns:
        out [B, M, D]; rows without a real key are zero.
    """
    logits = (q[:, :, None, :] * k[:, None, :, :]).sum(-1) * SCALE
    logits = logits.masked_fill(~key_mask[:, None, :], torch.finfo(logits.dtype).min)
    probs = torch.softmax(logits, dim=-1) * key_mask[:, None, :].to(logits.dtype)
    return (probs[..., None] * v[:, None, :, :]).sum(2)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
    """``F.scaled_dot_product_attention`` with a boolean mask; rows without a real key are zero.

    The inputs get a head axis ([B, 1, M, D]), without which SDPA's fused kernels decline and
    its unfused math path runs. SDPA returns NaN for a fully masked row, so pairs without any
    real word (if there are any) attend to all keys and their output is zeroed afterwards.
    """
    has_key = key_mask.any(1)
    every_pair_has_a_key = bool(has_key.all())
    attn_mask = key_mask if every_pair_has_a_key else key_mask | ~has_key[:, None]
    out = F.scaled_dot_product_attention(
        q[:, None], k[:, None], v[:, None], attn_mask=attn_mask[:, None, None, :], scale=SCALE
    )[:, 0]
    return out if every_pair_has_a_key else out * has_key[:, None, None].to(out.dtype)


def _native(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
    return xattn(q, k, v, key_mask, scale=SCALE)[0]


def _reference(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
    return reference.xattn(q, k, v, key_mask, SCALE)[0]


def _sdpa_for(device: torch.device) -> Attention:
    if device.type != "cuda":
        return sdpa_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def memory_efficient(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            return sdpa_attention(q, k, v, key_mask)

    return memory_efficient


def _training_step(attention: Attention, pairs: int, device: torch.device) -> Callable[[], None]:
    """Forward and backward of ``attention`` on :func:`make_inputs`; gradients are dropped."""
    q, k, v, key_mask, grad_out = make_inputs(pairs, device)

    def step() -> None:
        attention(q, k, v, key_mask).backward(grad_out)
        q.grad = k.grad = v.grad = None

    return step


def _materialising_step(pairs: int, device: torch.device) -> Callable[[], None] | str:
    """The materialising training step, skipped when two [pairs, R, L, D] products do not fit."""
    itemsize = torch.finfo(torch.float32).bits // 8
    needed = 2 * pairs * REGIONS * WORDS * DIM * itemsize
    available = memory_available_bytes(device)
    if available is not None and available < 1.25 * needed:
        return f"needs about {needed / 1e9:.1f} GB, {available / 1e9:.1f} GB available"
    return _training_step(materialised_attention, pairs, device)
