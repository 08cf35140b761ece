"""CUDA kernels: low precision, every output element written, one launch (need a GPU).

Low-precision results are judged by the flash-attention rule: the kernel's error against a
float64 reference must be at most twice the error of the reference itself run in the same low
precision.
"""

from __future__ import annotations

import pytest
import torch

from stg_cli.ops import _native, reference, sinkhorn, xattn

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(
        not (_native.has_kernel("xattn", "cuda") and _native.has_kernel("sinkhorn", "cuda")),
        reason="stg_cli._C was built without CUDA kernels",
    ),
]

LOW_PRECISION = [torch.float16, torch.bfloat16]


def poison_allocator_cache(numel: int) -> None:
    """Leaves NaN-filled blocks in the caching allocator so unwritten outputs show as NaN."""
    for size in (numel, numel // 4 + 1, 4096):
        block = torch.full((size,), float("nan"), device="cuda")
        del block


def attention_inputs(batch, rows, keys, dim, seed=0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(batch, rows, dim, device="cuda", dtype=torch.float64, generator=generator)
    k = torch.randn(batch, keys, dim, device="cuda", dtype=torch.float64, generator=generator)
    v = torch.randn(batch, keys, dim, device="cuda", dtype=torch.float64, generator=generator)
    key_mask = torch.rand(batch, keys, device="cuda", generator=generator) > 0.3
    key_mask[:, 0] = True
    key_mask[-1] = False
    return q, k, v, key_mask


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.double() - expected).abs().max().item()


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize(
    "shape",
    [(4, 392, 20, 512), (4, 20, 392, 512)],
    ids=["regions-to-words", "words-to-regions (two key chunks)"],
)
def test_xattn_low_precision_forward_and_backward(dtype, shape):
    q, k, v, key_mask = attention_inputs(*shape)
    scale = 512**-0.5
    grad = torch.randn_like(q)
    exact = [t.clone().requires_grad_() for t in (q, k, v)]
    exact_out, _ = reference.xattn(*exact, key_mask, scale)
    exact_grads = torch.autograd.grad((exact_out * grad).sum(), exact)
    low_ref = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    low_ref_out, _ = reference.xattn(*low_ref, key_mask, scale)
    low_ref_grads = torch.autograd.grad((low_ref_out * grad.to(dtype)).sum(), low_ref)
    low = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out, _ = xattn(*low, key_mask, scale=scale)
    grads = torch.autograd.grad((out * grad.to(dtype)).sum(), low)
    assert out.dtype == dtype
    assert max_error(out, exact_out) <= 2 * max_error(low_ref_out, exact_out) + 1e-6
    for kernel_grad, ref_grad, exact_grad in zip(grads, low_ref_grads, exact_grads):
        assert max_error(kernel_grad, exact_grad) <= 2 * max_error(ref_grad, exact_grad) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, *LOW_PRECISION], ids=str)
def test_xattn_writes_every_output_element(dtype):
    q, k, v, key_mask = attention_inputs(3, 50, 37, 96)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    poison_allocator_cache(q.numel())
    out, probs = xattn(q, k, v, key_mask, return_probs=True)
    assert torch.isfinite(out).all() and torch.isfinite(probs).all()
    assert (out[-1] == 0).all() and (probs[-1] == 0).all()


def test_sinkhorn_writes_every_element_in_one_launch():
    generator = torch.Generator(device="cuda").manual_seed(0)
    P = torch.randn(64, 20, 80, device="cuda", generator=generator) * 10
    word_mask = torch.rand(64, 20, device="cuda", generator=generator) > 0.2
    frame_mask = torch.rand(64, 80, device="cuda", generator=generator) > 0.1
    word_mask[0] = False
    sinkhorn(P, word_mask, frame_mask, iters=50)
    poison_allocator_cache(P.numel())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        log_plan, n_iter = torch.ops.stg.sinkhorn(P, word_mask, frame_mask, 0.05, 50, 0.0)
        torch.cuda.synchronize()
    cuda = torch.autograd.DeviceType.CUDA
    kernels = [event for event in profile.events() if event.device_type == cuda]
    assert len(kernels) == 1, [event.name for event in kernels]
    valid = word_mask[:, :, None] & frame_mask[:, None, :]
    assert not torch.isnan(log_plan).any()
    assert torch.isfinite(log_plan[valid]).all() and torch.isneginf(log_plan[~valid]).all()
    expected, expected_iter = reference.sinkhorn(P.double(), word_mask, frame_mask, 0.05, 50)
    # float32 log-plan entries reach max|P| / eps (~900 here): the tolerance scales with it, as in
    # test_sinkhorn.assert_log_plans_close
    atol = 1e-5 * float(P.abs().max()) / 0.05
    torch.testing.assert_close(log_plan[valid].double(), expected[valid], atol=atol, rtol=0)
    assert torch.equal(n_iter, expected_iter)
