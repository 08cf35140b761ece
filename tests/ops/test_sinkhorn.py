"""Tests of stg_cli.ops.sinkhorn and torch.ops.stg.sinkhorn / sinkhorn_backward."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck
from torch.library import opcheck

from stg_cli.ops import reference, sinkhorn
from stg_cli.ops.sinkhorn import MAX_ITERS

pytestmark = pytest.mark.stg_op("sinkhorn")

DTYPES = (torch.float32, torch.float64)
SHAPES = ((0, 3, 4), (1, 5, 7), (3, 7, 4), (2, 1, 6), (2, 6, 1), (16, 9, 20))
MASK_KINDS = ("none", "random", "masked_row", "masked_column", "no_frames", "all_masked")
# Per-matrix scales of P: from a matrix that converges at once to one that needs many iterations.
MATRIX_SCALES = torch.tensor([0.1, 1.0, 3.0, 6.0], dtype=torch.float64)[:, None, None]
# Absolute error per unit of log-plan magnitude (log_plan scales like |P| / eps).
RELATIVE_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def make_masks(kind: str, batch: int, words: int, frames: int, generator: torch.Generator):
    """word_mask [B, K] and frame_mask [B, U]; the padding pattern hits the last matrix."""
    word_mask = torch.ones(batch, words, dtype=torch.bool)
    frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    if kind == "random":
        word_mask = torch.rand(batch, words, generator=generator) > 0.3
        frame_mask = torch.rand(batch, frames, generator=generator) > 0.3
    elif batch and kind == "masked_row":
        word_mask[-1, 0] = False
    elif batch and kind == "masked_column":
        frame_mask[-1, -1] = False
    elif batch and kind == "no_frames":
        frame_mask[-1] = False
    elif batch and kind == "all_masked":
        word_mask[-1] = False
        frame_mask[-1] = False
    return word_mask, frame_mask


def make_similarities(batch, words, frames, generator, *, scale=3.0, dtype=torch.float64):
    """P uniform in [-scale, scale]."""
    return (torch.rand(batch, words, frames, generator=generator, dtype=dtype) * 2 - 1) * scale


def assert_log_plans_close(actual, expected, P, eps):
    """Same -inf pattern and finite entries within a tolerance scaled by max |P| / eps."""
    magnitude = max(1.0, P.abs().max().item() / eps) if P.numel() else 1.0
    atol = RELATIVE_TOLERANCE[P.dtype] * magnitude
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def valid_entries(word_mask, frame_mask):
    """[B, K, U] True where both the word and the frame are real."""
    return word_mask[:, :, None] & frame_mask[:, None, :]


def uniform_marginal(mask, dtype):
    """1 / (number of True entries) on True entries of each row of mask, 0 elsewhere."""
    weights = mask.to(dtype)
    return weights / weights.sum(1, keepdim=True)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_matches_reference(device, generator, dtype, shape, mask_kind):
    """The native log plan and iteration counts equal the reference's."""
    P = make_similarities(*shape, generator, dtype=dtype)
    word_mask, frame_mask = make_masks(mask_kind, *shape, generator)
    P, word_mask, frame_mask = P.to(device), word_mask.to(device), frame_mask.to(device)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.1, iters=10)
    expected, expected_iter = reference.sinkhorn(P, word_mask, frame_mask, 0.1, 10)
    assert log_plan.shape == P.shape and log_plan.dtype == dtype
    assert_log_plans_close(log_plan, expected, P, 0.1)
    assert torch.equal(n_iter, expected_iter)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_on_noncontiguous_views(device, generator, dtype):
    """Transposed and strided views give the result of their contiguous copies."""
    storage = make_similarities(3, 9, 10, generator, dtype=dtype).to(device)
    P = storage.transpose(1, 2)[:, ::2, 1:]  # [3, 5, 8], neither dense nor row-major
    word_mask = (torch.rand(5, 3, generator=generator) > 0.3).to(device).t()
    frame_mask = (torch.rand(3, 16, generator=generator) > 0.3).to(device)[:, ::2]
    assert not (P.is_contiguous() or word_mask.is_contiguous() or frame_mask.is_contiguous())
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.1, iters=7)
    expected, expected_iter = reference.sinkhorn(
        P.contiguous(), word_mask.contiguous(), frame_mask.contiguous(), 0.1, 7
    )
    assert_log_plans_close(log_plan, expected, P, 0.1)
    assert torch.equal(n_iter, expected_iter)


@pytest.mark.requires_native
@pytest.mark.parametrize("tol", [1e-2, 1e-5, 1e-9])
def test_matches_reference_with_tolerance_stop(device, generator, tol):
    """With tol > 0 native and reference stop each matrix at the same iteration."""
    P = make_similarities(4, 5, 6, generator, scale=MATRIX_SCALES)
    word_mask, frame_mask = make_masks("random", 4, 5, 6, generator)
    P, word_mask, frame_mask = P.to(device), word_mask.to(device), frame_mask.to(device)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.5, iters=200, tol=tol)
    expected, expected_iter = reference.sinkhorn(P, word_mask, frame_mask, 0.5, 200, tol)
    assert torch.equal(n_iter, expected_iter)
    assert_log_plans_close(log_plan, expected, P, 0.5)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("magnitude", "iters", "tol"), [(10.0, 3, 0.0), (10.0, 100, 1e-6), (1e4, 3, 0.0), (1e4, 100, 1e-6)]
)
def test_matches_reference_at_large_magnitudes(device, generator, dtype, magnitude, iters, tol):
    """At eps=0.05 with cos/τ-sized (10) and extreme (1e4) similarities, as the reference.

    In float32 at |P|/eps = 2e5 the log-domain reference cannot resolve a marginal error of
    1e-6 (its potentials carry an absolute rounding error of ~1e-2), so it never stops early;
    the native kernel measures the error in the scaling domain and may stop sooner. There the
    test checks instead that a native early stop is genuine: its row marginals, computed in
    float64, are within tol.
    """
    P = make_similarities(3, 6, 8, generator, scale=magnitude, dtype=dtype).to(device)
    word_mask, frame_mask = make_masks("random", 3, 6, 8, generator)
    word_mask, frame_mask = word_mask.to(device), frame_mask.to(device)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.05, iters=iters, tol=tol)
    expected, expected_iter = reference.sinkhorn(P, word_mask, frame_mask, 0.05, iters, tol)
    assert_log_plans_close(log_plan, expected, P, 0.05)
    if dtype == torch.float64 or magnitude < 1e3 or tol == 0:
        assert torch.equal(n_iter, expected_iter)
        return
    stopped_early = n_iter < iters
    row_mass = log_plan.double().exp().sum(2)
    target = uniform_marginal(word_mask, torch.float64).to(device)
    error = (row_mass - target).abs().masked_fill(~word_mask, 0).sum(1)
    assert (error[stopped_early] < 10 * tol).all()


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(
    batch=st.integers(0, 3),
    words=st.integers(1, 6),
    frames=st.integers(1, 6),
    iters=st.integers(0, 6),
    seed=st.integers(0, 2**31 - 1),
)
@pytest.mark.requires_native
def test_matches_reference_on_random_masks(batch, words, frames, iters, seed):
    """Any padding pattern gives the reference result in float64."""
    generator = torch.Generator().manual_seed(seed)
    P = make_similarities(batch, words, frames, generator)
    word_mask, frame_mask = make_masks("random", batch, words, frames, generator)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.2, iters=iters)
    expected, expected_iter = reference.sinkhorn(P, word_mask, frame_mask, 0.2, iters)
    assert_log_plans_close(log_plan, expected, P, 0.2)
    assert torch.equal(n_iter, expected_iter)


@pytest.mark.requires_native
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_gradient_matches_reference(device, generator, tol):
    """The native backward equals autograd through the reference, frozen matrices included."""
    P = make_similarities(4, 5, 6, generator, scale=MATRIX_SCALES)
    word_mask, frame_mask = make_masks("random", 4, 5, 6, generator)
    word_mask[0] = False
    P, word_mask, frame_mask = P.to(device), word_mask.to(device), frame_mask.to(device)
    valid = valid_entries(word_mask, frame_mask)
    weights = torch.rand(P.shape, generator=generator, dtype=P.dtype).to(device)

    def grad_of(function, *args):
        leaf = P.clone().requires_grad_()
        log_plan, n_iter = function(leaf, word_mask, frame_mask, *args)
        (log_plan.masked_fill(~valid, 0) * weights).sum().backward()
        return leaf.grad, n_iter

    grad, n_iter = grad_of(lambda *a: sinkhorn(*a, eps=0.5, iters=30, tol=tol))
    expected, expected_iter = grad_of(reference.sinkhorn, 0.5, 30, tol)
    assert torch.equal(n_iter, expected_iter)
    torch.testing.assert_close(grad, expected, atol=1e-10, rtol=1e-9)
    assert torch.all(grad[~valid] == 0)


@pytest.mark.parametrize(
    "implementation",
    [
        pytest.param(lambda P, w, f, iters: sinkhorn(P, w, f, eps=0.5, iters=iters), id="public"),
        pytest.param(lambda P, w, f, iters: reference.sinkhorn(P, w, f, 0.5, iters), id="reference"),
    ],
)
@pytest.mark.parametrize("output", ["log_plan", "plan"])
def test_gradcheck(generator, implementation, output):
    """Gradients with respect to P are exact (finite entries of log_plan, or the plan)."""
    P = make_similarities(3, 4, 5, generator).requires_grad_()
    word_mask, frame_mask = make_masks("random", 3, 4, 5, generator)
    word_mask[-1] = False
    valid = valid_entries(word_mask, frame_mask)

    def function(P):
        log_plan, _ = implementation(P, word_mask, frame_mask, 4)
        return log_plan.masked_fill(~valid, 0) if output == "log_plan" else log_plan.exp()

    assert gradcheck(function, (P,))


@pytest.mark.requires_native
def test_opcheck_sinkhorn(generator, layout):
    """Schema, fake kernel, autograd registration and AOT dispatch of stg::sinkhorn."""
    P = layout(make_similarities(2, 3, 4, generator))
    word_mask, frame_mask = make_masks("random", 2, 3, 4, generator)
    word_mask[:, 0] = frame_mask[:, 0] = True
    args = (P.requires_grad_(), word_mask, frame_mask, 0.5, 5, 0.0)
    opcheck(torch.ops.stg.sinkhorn.default, args)


@pytest.mark.requires_native
@pytest.mark.stg_op("sinkhorn_backward")
def test_opcheck_sinkhorn_backward(generator, layout):
    """Schema and fake kernel of stg::sinkhorn_backward."""
    P = layout(make_similarities(2, 3, 4, generator))
    grad = layout(torch.randn(2, 3, 4, generator=generator, dtype=torch.float64))
    word_mask, frame_mask = make_masks("masked_row", 2, 3, 4, generator)
    n_iter = torch.tensor([5, 2])
    opcheck(torch.ops.stg.sinkhorn_backward.default, (grad, P, word_mask, frame_mask, 0.5, n_iter))


@pytest.mark.requires_native
def test_compiles_with_fullgraph(generator):
    """torch.compile(fullgraph=True) traces the public function, forward and backward."""
    P = make_similarities(2, 3, 5, generator, dtype=torch.float32)
    word_mask, frame_mask = make_masks("masked_column", 2, 3, 5, generator)

    def loss(P):
        log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.5, iters=4)
        return (log_plan.exp() * P).sum(), n_iter

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_input, compiled_input = P.clone().requires_grad_(), P.clone().requires_grad_()
    eager_value, eager_iter = loss(eager_input)
    compiled_value, compiled_iter = compiled(compiled_input)
    eager_value.backward()
    compiled_value.backward()
    torch.testing.assert_close(compiled_value, eager_value)
    assert torch.equal(compiled_iter, eager_iter)
    torch.testing.assert_close(compiled_input.grad, eager_input.grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_converged_plan_has_uniform_marginals(device, generator, dtype):
    """Row sums are 1/K_valid and column sums 1/U_valid once converged."""
    P = make_similarities(3, 6, 9, generator, scale=0.5, dtype=dtype).to(device)
    word_mask, frame_mask = make_masks("random", 3, 6, 9, generator)
    word_mask[:, 0] = frame_mask[:, 0] = True
    word_mask, frame_mask = word_mask.to(device), frame_mask.to(device)
    plan = sinkhorn(P, word_mask, frame_mask, eps=0.5, iters=500)[0].exp()
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(plan.sum(2), uniform_marginal(word_mask, dtype), atol=atol, rtol=0)
    torch.testing.assert_close(plan.sum(1), uniform_marginal(frame_mask, dtype), atol=atol, rtol=0)


def test_columns_are_exact_after_every_iteration(device, generator):
    """After a few iterations columns already sum to 1/U_valid; rows do not yet."""
    P = make_similarities(2, 5, 7, generator, scale=6.0).to(device)
    word_mask, frame_mask = make_masks("masked_column", 2, 5, 7, generator)
    plan = sinkhorn(P, word_mask.to(device), frame_mask.to(device), eps=0.5, iters=3)[0].exp()
    expected = uniform_marginal(frame_mask.to(device), P.dtype)
    torch.testing.assert_close(plan.sum(1), expected, atol=1e-12, rtol=0)
    assert (plan.sum(2) - 1 / 5).abs().max() > 1e-6


def test_tolerance_freezes_each_matrix_separately(device, generator):
    """An easy matrix stops earlier than a hard one, and batching does not change either."""
    easy = torch.full((1, 4, 6), 0.3, dtype=torch.float64)
    hard = make_similarities(1, 4, 6, generator, scale=5.0)
    P = torch.cat([easy, hard]).to(device)
    log_plan, n_iter = sinkhorn(P, eps=0.5, iters=100, tol=1e-8)
    assert n_iter.tolist()[0] == 1
    assert n_iter.tolist()[1] > n_iter.tolist()[0]
    for index in range(2):
        alone, alone_iter = sinkhorn(P[index : index + 1], eps=0.5, iters=100, tol=1e-8)
        torch.testing.assert_close(log_plan[index : index + 1], alone, atol=1e-12, rtol=0)
        assert torch.equal(n_iter[index : index + 1], alone_iter)


def test_zero_tolerance_runs_all_iterations(device, generator):
    """tol=0 runs every iteration on every matrix that has a valid entry."""
    P = make_similarities(3, 4, 6, generator).to(device)
    word_mask, frame_mask = make_masks("all_masked", 3, 4, 6, generator)
    _, n_iter = sinkhorn(P, word_mask.to(device), frame_mask.to(device), eps=0.5, iters=17)
    assert n_iter.tolist() == [17, 17, 0]
    assert n_iter.dtype == torch.int64


def test_zero_iterations_return_scaled_similarities(device, generator):
    """iters=0 gives P / eps on valid entries and -inf elsewhere."""
    P = make_similarities(2, 4, 6, generator).to(device)
    word_mask, frame_mask = make_masks("random", 2, 4, 6, generator)
    word_mask, frame_mask = word_mask.to(device), frame_mask.to(device)
    log_plan, n_iter = sinkhorn(P, word_mask, frame_mask, eps=0.25, iters=0)
    valid = valid_entries(word_mask, frame_mask)
    expected = torch.where(valid, P / 0.25, torch.full_like(P, float("-inf")))
    torch.testing.assert_close(log_plan, expected, atol=1e-12, rtol=0)
    assert n_iter.tolist() == [0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1.0, 1e2, 1e4])
def test_large_similarities_stay_finite(device, generator, dtype, magnitude):
    """|P| up to 1e4 at eps=0.05: no NaN, no inf except -inf on masked entries, finite grads."""
    P = make_similarities(3, 6, 8, generator, scale=magnitude, dtype=dtype).to(device)
    word_mask, frame_mask = make_masks("random", 3, 6, 8, generator)
    word_mask[:, 0] = frame_mask[:, 0] = True
    word_mask, frame_mask = word_mask.to(device), frame_mask.to(device)
    valid = valid_entries(word_mask, frame_mask)
    P.requires_grad_()
    log_plan, _ = sinkhorn(P, word_mask, frame_mask, eps=0.05, iters=20, tol=1e-6)
    assert torch.isfinite(log_plan[valid]).all()
    assert torch.isneginf(log_plan[~valid]).all()
    column_mass = log_plan.exp().sum(1)
    expected = uniform_marginal(frame_mask, dtype)
    torch.testing.assert_close(column_mass, expected, atol=1e-4, rtol=0)
    log_plan.exp().mul(P).sum().backward()
    assert torch.isfinite(P.grad).all()


def _public(P, word_mask, frame_mask, eps, iters):
    return sinkhorn(P, word_mask, frame_mask, eps=eps, iters=iters)


def _reference(P, word_mask, frame_mask, eps, iters):
    return reference.sinkhorn(P, word_mask, frame_mask, eps, iters)


@pytest.mark.parametrize("implementation", [_public, _reference], ids=["public", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("scale", "eps"),
    [
        pytest.param("max/2", 0.05, id="P-max/2"),
        pytest.param(1e38, 0.05, id="P-1e38"),
        pytest.param(1.0, 1e-40, id="eps-1e-40"),
        pytest.param(1.0, 1e-300, id="eps-1e-300"),
        pytest.param(1.0, 5e-324, id="eps-denormal"),
        pytest.param("sign*max/2", 0.05, id="P-±max/2"),
    ],
)
def test_any_finite_input_gives_no_nan(device, generator, implementation, dtype, scale, eps):
    """Finite P up to the dtype's maximum and any eps > 0: no NaN and no +inf, in the plan or
    the gradient.

    P / eps saturates at ±(max / 256) instead of overflowing to ±inf (which made the plan NaN).
    The marginals are not checked: at these magnitudes the potentials' rounding exceeds the
    log-sum-exp's small terms (README, "Defined behaviour at the edges").
    """
    P = make_similarities(3, 6, 8, generator, scale=1.0, dtype=dtype)
    if scale == "max/2":
        P = P * (torch.finfo(dtype).max / 2)
    elif scale == "sign*max/2":
        P = P.sign() * (torch.finfo(dtype).max / 2)
    else:
        P = P * scale
    P = P.to(device).requires_grad_()
    word_mask, frame_mask = make_masks("random", 3, 6, 8, generator)
    word_mask[:, 0] = frame_mask[:, 0] = True
    word_mask, frame_mask = word_mask.to(device), frame_mask.to(device)
    valid = valid_entries(word_mask, frame_mask)
    log_plan, _ = implementation(P, word_mask, frame_mask, eps, 20)
    assert not torch.isnan(log_plan).any()
    assert not torch.isposinf(log_plan).any()
    assert torch.isneginf(log_plan[~valid]).all()
    weights = torch.rand(P.shape, generator=generator, dtype=dtype).to(device)
    log_plan.exp().mul(weights).sum().backward()
    assert not torch.isnan(P.grad).any()


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_saturation_matches_reference(device, generator, dtype):
    """The kernel saturates P / eps exactly as the reference: values and zero gradients."""
    limit = torch.finfo(dtype).max / 256
    P = make_similarities(2, 4, 5, generator, dtype=dtype)
    P[:, 0, :2] = torch.finfo(dtype).max / 2
    P[:, 1, 3] = -torch.finfo(dtype).max
    P = P.to(device)
    word_mask, frame_mask = (mask.to(device) for mask in make_masks("none", 2, 4, 5, generator))
    leaves = [P.clone().requires_grad_() for _ in range(2)]
    native, _ = sinkhorn(leaves[0], word_mask, frame_mask, eps=0.05, iters=0)
    expected, _ = reference.sinkhorn(leaves[1], word_mask, frame_mask, 0.05, 0)
    torch.testing.assert_close(native, expected, atol=0, rtol=1e-6)
    assert torch.all(native[:, 0, :2] == limit) and torch.all(native[:, 1, 3] == -limit)
    weights = torch.rand(P.shape, generator=generator, dtype=dtype).to(device)
    for plan, leaf in zip((native, expected), leaves):
        plan.mul(weights).sum().backward()
    torch.testing.assert_close(leaves[0].grad, leaves[1].grad, atol=0, rtol=1e-6)
    assert torch.all(leaves[0].grad[:, 0, :2] == 0) and torch.all(leaves[0].grad[:, 1, 3] == 0)


def test_meta_tensors_give_shapes():
    """Meta tensors (shapes only) run through the public op and the reference."""
    P = torch.empty(2, 3, 4, device="meta")
    for implementation in (_public, _reference):
        mask_words = torch.ones(2, 3, dtype=torch.bool, device="meta")
        mask_frames = torch.ones(2, 4, dtype=torch.bool, device="meta")
        log_plan, n_iter = implementation(P, mask_words, mask_frames, 0.05, 3)
        assert log_plan.shape == (2, 3, 4) and log_plan.is_meta
        assert n_iter.shape == (2,) and n_iter.dtype == torch.int64


def test_all_masked_matrix_is_neg_inf_with_zero_iterations(device, generator):
    """A matrix without a real word, or without a real frame, is all -inf with n_iter 0."""
    P = make_similarities(3, 4, 5, generator).to(device)
    word_mask = torch.ones(3, 4, dtype=torch.bool)
    frame_mask = torch.ones(3, 5, dtype=torch.bool)
    word_mask[0] = False
    frame_mask[1] = False
    log_plan, n_iter = sinkhorn(P, word_mask.to(device), frame_mask.to(device), iters=5)
    assert torch.isneginf(log_plan[:2]).all()
    assert torch.isfinite(log_plan[2]).all()
    assert n_iter.tolist() == [0, 0, 5]


@pytest.mark.parametrize("empty_axis", ["words", "frames"])
def test_reference_accepts_empty_axes(empty_axis):
    """K = 0 or U = 0 gives an empty plan and n_iter 0 in the reference, as natively."""
    shape = (2, 0, 4) if empty_axis == "words" else (2, 3, 0)
    P = torch.zeros(shape, dtype=torch.float64)
    word_mask = torch.ones(shape[:2], dtype=torch.bool)
    frame_mask = torch.ones(shape[0], shape[2], dtype=torch.bool)
    log_plan, n_iter = reference.sinkhorn(P, word_mask, frame_mask, 0.5, 3)
    assert log_plan.shape == shape
    assert n_iter.tolist() == [0, 0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(generator, dtype):
    """float16/bfloat16 P gives the float32 result of the same values."""
    P = make_similarities(2, 3, 4, generator, dtype=torch.float32).to(dtype)
    log_plan, n_iter = sinkhorn(P, eps=0.5, iters=5)
    expected, expected_iter = sinkhorn(P.float(), eps=0.5, iters=5)
    assert log_plan.dtype == torch.float32
    torch.testing.assert_close(log_plan, expected, atol=0, rtol=0)
    assert torch.equal(n_iter, expected_iter)


def solve_with_pot(P: torch.Tensor, eps: float) -> np.ndarray:
    """POT's log-domain plan for the kernel exp(P/eps): cost -P, uniform marginals."""
    words, frames = P.shape
    return ot.sinkhorn(
        np.full(words, 1.0 / words),
        np.full(frames, 1.0 / frames),
        -P.numpy(),
        eps,
        method="sinkhorn_log",
        numItermax=20000,
        stopThr=1e-13,
    )


def test_converged_plan_matches_pot(generator):
    """Unmasked matrices (K ≠ U) agree with POT's sinkhorn_log to 1e-6."""
    P = make_similarities(3, 5, 8, generator, scale=1.0)
    log_plan, n_iter = sinkhorn(P, eps=0.5, iters=5000, tol=1e-13)
    assert (n_iter < 5000).all()
    for index in range(3):
        expected = solve_with_pot(P[index], 0.5)
        np.testing.assert_allclose(log_plan[index].exp().numpy(), expected, rtol=0, atol=1e-6)


def test_masked_plan_matches_pot_on_valid_submatrix(generator):
    """A padded matrix equals POT on its valid block and is zero elsewhere."""
    P = make_similarities(1, 6, 9, generator, scale=1.0)
    word_mask = torch.tensor([[True, False, True, True, False, True]])
    frame_mask = torch.tensor([[True, True, False, True, True, True, False, True, True]])
    plan = sinkhorn(P, word_mask, frame_mask, eps=0.5, iters=5000, tol=1e-13)[0][0].exp()
    rows, cols = word_mask[0].nonzero()[:, 0], frame_mask[0].nonzero()[:, 0]
    expected = solve_with_pot(P[0][rows][:, cols], 0.5)
    np.testing.assert_allclose(plan[rows][:, cols].numpy(), expected, rtol=0, atol=1e-6)
    assert plan.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert plan[~valid_entries(word_mask, frame_mask)[0]].abs().max() == 0


def _masks(*shape):
    return torch.ones(*shape, dtype=torch.bool)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"P": torch.zeros(3, 4)}, "P", id="P-rank"),
        pytest.param({"P": torch.zeros(2, 3, 4, dtype=torch.int64)}, "P", id="P-int"),
        pytest.param({"P": [[[0.0]]]}, "P", id="P-list"),
        pytest.param({"word_mask": torch.ones(2, 3)}, "word_mask", id="word_mask-float"),
        pytest.param({"word_mask": _masks(2, 4)}, "word_mask", id="word_mask-shape"),
        pytest.param({"word_mask": [[True] * 3] * 2}, "word_mask", id="word_mask-list"),
        pytest.param({"frame_mask": _masks(2, 3)}, "frame_mask", id="frame_mask-shape"),
        pytest.param({"frame_mask": torch.ones(2, 4).byte()}, "frame_mask", id="frame_mask-uint8"),
        pytest.param({"iters": -1}, "iters", id="iters-negative"),
        pytest.param({"iters": MAX_ITERS + 1}, "iters", id="iters-above-limit"),
        pytest.param({"iters": None}, "iters", id="iters-none"),
        pytest.param({"eps": 0.0}, "eps", id="eps-zero"),
        pytest.param({"eps": -0.1}, "eps", id="eps-negative"),
        pytest.param({"eps": float("nan")}, "eps", id="eps-nan"),
        pytest.param({"eps": None}, "eps", id="eps-none"),
        pytest.param({"tol": -1e-3}, "tol", id="tol-negative"),
        pytest.param({"tol": float("inf")}, "tol", id="tol-inf"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, name):
    """Each bad argument of the public function gives a ValueError that names it."""
    arguments = {"P": torch.zeros(2, 3, 4), "word_mask": None, "frame_mask": None}
    arguments.update({"eps": 0.5, "iters": 3})
    arguments.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        sinkhorn(**arguments)


@pytest.mark.requires_native
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"P": torch.zeros(3, 4)}, "P", id="P-rank"),
        pytest.param({"P": torch.zeros(2, 3, 4, dtype=torch.int32)}, "P", id="P-int"),
        pytest.param({"word_mask": torch.ones(2, 3)}, "word_mask", id="word_mask-float"),
        pytest.param({"word_mask": _masks(3, 2)}, "word_mask", id="word_mask-shape"),
        pytest.param({"frame_mask": _masks(2, 5)}, "frame_mask", id="frame_mask-shape"),
        pytest.param({"eps": 0.0}, "eps", id="eps-zero"),
        pytest.param({"iters": -2}, "iters", id="iters-negative"),
        pytest.param({"iters": MAX_ITERS + 1}, "iters", id="iters-above-limit"),
        pytest.param({"tol": float("nan")}, "tol", id="tol-nan"),
    ],
)
def test_native_op_rejects_bad_arguments(overrides, name):
    """torch.ops.stg.sinkhorn raises a RuntimeError naming the argument."""
    arguments = {"P": torch.zeros(2, 3, 4), "word_mask": _masks(2, 3), "frame_mask": _masks(2, 4)}
    arguments.update({"eps": 0.5, "iters": 3, "tol": 0.0})
    arguments.update(overrides)
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.sinkhorn(*arguments.values())


@pytest.mark.requires_native
@pytest.mark.stg_op("sinkhorn_backward")
@pytest.mark.parametrize(
    ("grad", "n_iter", "name"),
    [
        pytest.param(torch.zeros(2, 3, 5), torch.tensor([1, 1]), "grad_log_q", id="grad-shape"),
        pytest.param(torch.zeros(2, 3, 4), torch.tensor([1]), "n_iter", id="n_iter-shape"),
        pytest.param(torch.zeros(2, 3, 4), torch.tensor([1, 1]).int(), "n_iter", id="n_iter-int32"),
        pytest.param(torch.zeros(2, 3, 4), torch.tensor([1, -1]), "n_iter", id="n_iter-negative"),
        pytest.param(torch.zeros(2, 3, 4), torch.tensor([MAX_ITERS + 1, 1]), "n_iter", id="n_iter-too-large"),
    ],
)
def test_native_backward_rejects_bad_arguments(grad, n_iter, name):
    """torch.ops.stg.sinkhorn_backward raises a RuntimeError naming the argument."""
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.sinkhorn_backward(grad, torch.zeros(2, 3, 4), _masks(2, 3), _masks(2, 4), 0.5, n_iter)
