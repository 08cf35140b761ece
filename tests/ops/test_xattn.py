"""Tests of stg_cli.ops.xattn and torch.ops.stg.xattn / xattn_backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck
from torch.library import opcheck

from stg_cli.ops import reference, xattn

pytestmark = pytest.mark.stg_op("xattn")

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}
# (batch, queries M, keys L, width D)
SHAPES = (
    (0, 3, 4, 8),
    (1, 1, 1, 1),
    (1, 5, 7, 16),
    (3, 7, 4, 5),
    (9, 17, 6, 8),
    (2, 4, 130, 33),
    (2, 9, 20, 512),
    (2, 5, 600, 16),
)
MASK_KINDS = ("none", "random", "masked_key", "fully_masked")


def make_inputs(batch, queries, keys, dim, generator, *, dtype=torch.float64):
    """q [B, M, D], k and v [B, L, D] standard normal."""
    q = torch.randn(batch, queries, dim, generator=generator, dtype=dtype)
    k = torch.randn(batch, keys, dim, generator=generator, dtype=dtype)
    v = torch.randn(batch, keys, dim, generator=generator, dtype=dtype)
    return q, k, v


def make_key_mask(kind, batch, keys, generator):
    """key_mask [B, L]; the padding pattern hits the last sample."""
    key_mask = torch.ones(batch, keys, dtype=torch.bool)
    if kind == "random":
        key_mask = torch.rand(batch, keys, generator=generator) > 0.3
    elif batch and kind == "masked_key":
        key_mask[-1, 0] = False
    elif batch and kind == "fully_masked":
        key_mask[-1] = False
    return key_mask


def run_with_gradients(function, inputs, generator):
    """Runs function(q, k, v) -> (out, probs or None) on fresh leaf copies of ``inputs`` and
    back-propagates a fixed random weighting of out (and of probs when returned); the weights
    are drawn from a generator seeded from ``generator``'s seed, so two calls weight alike.

    Returns:
        (out, probs, [grad of q, k, v]).
    """
    leaves = [t.clone().requires_grad_() for t in inputs]
    out, probs = function(*leaves)
    weights = torch.Generator().manual_seed(int(generator.initial_seed()) + 1)
    loss = (out * torch.randn(out.shape, generator=weights, dtype=out.dtype).to(out.device)).sum()
    if probs is not None:
        loss = (
            loss
            + (probs * torch.randn(probs.shape, generator=weights, dtype=probs.dtype).to(probs.device)).sum()
        )
    loss.backward()
    return out, probs, [leaf.grad for leaf in leaves]


def assert_close(actual, expected):
    """Equal up to the tolerance of expected's dtype."""
    tolerance = TOLERANCE[expected.dtype]
    torch.testing.assert_close(actual, expected, atol=tolerance, rtol=tolerance)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_matches_reference(device, generator, dtype, shape, mask_kind):
    """Output and probabilities equal the bmm reference."""
    q, k, v = (t.to(device) for t in make_inputs(*shape, generator, dtype=dtype))
    key_mask = make_key_mask(mask_kind, shape[0], shape[2], generator).to(device)
    out, probs = xattn(q, k, v, key_mask, scale=0.3, return_probs=True)
    expected_out, expected_probs = reference.xattn(q, k, v, key_mask, 0.3, True)
    assert out.dtype == dtype and probs.dtype == dtype
    assert_close(out, expected_out)
    assert_close(probs, expected_probs)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_on_noncontiguous_views(device, generator, dtype):
    """Transposed and strided views give the result of their contiguous copies."""
    q = torch.randn(2, 6, 10, generator=generator, dtype=dtype).to(device).transpose(1, 2)[:, ::2]
    k = torch.randn(2, 6, 9, generator=generator, dtype=dtype).to(device)[:, :, ::2].transpose(1, 2)
    v = torch.randn(5, 2, 6, generator=generator, dtype=dtype).to(device).transpose(0, 1)
    key_mask = (torch.rand(5, 2, generator=generator) > 0.3).to(device).t()
    key_mask[0] = False
    assert not any(t.is_contiguous() for t in (q, k, v, key_mask))
    out, probs = xattn(q, k, v, key_mask, scale=0.4, return_probs=True)
    expected_out, expected_probs = reference.xattn(
        q.contiguous(), k.contiguous(), v.contiguous(), key_mask.contiguous(), 0.4, True
    )
    assert_close(out, expected_out)
    assert_close(probs, expected_probs)


def test_probabilities_only_when_asked(device, generator):
    """return_probs=False gives None and the same output."""
    q, k, v = (t.to(device) for t in make_inputs(2, 3, 5, 4, generator))
    out, probs = xattn(q, k, v)
    out_with_probs, _ = xattn(q, k, v, return_probs=True)
    assert probs is None
    torch.testing.assert_close(out, out_with_probs, atol=0, rtol=0)


def test_default_scale_is_inverse_sqrt_width(device, generator):
    """scale=None means 1/sqrt(D)."""
    q, k, v = (t.to(device) for t in make_inputs(2, 3, 5, 7, generator))
    out, probs = xattn(q, k, v, return_probs=True)
    expected_out, expected_probs = xattn(q, k, v, scale=1 / math.sqrt(7), return_probs=True)
    torch.testing.assert_close(out, expected_out, atol=0, rtol=0)
    torch.testing.assert_close(probs, expected_probs, atol=0, rtol=0)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("poisoned", ["q", "k", "v"])
def test_nan_input_gives_nan_like_the_reference(device, generator, dtype, poisoned):
    """A NaN in q, k or v makes NaN exactly where the reference has it; masked keys stay 0."""
    q, k, v = (t.to(dtype) for t in make_inputs(2, 3, 5, 4, generator))
    {"q": q, "k": k, "v": v}[poisoned][0, 1, 2] = float("nan")
    key_mask = torch.tensor([[True, True, False, True, True], [True] * 5])
    q, k, v, key_mask = (t.to(device) for t in (q, k, v, key_mask))
    out, probs = xattn(q, k, v, key_mask, scale=0.5, return_probs=True)
    expected_out, expected_probs = reference.xattn(q, k, v, key_mask, 0.5, True)
    assert torch.equal(out.isnan(), expected_out.isnan()) and out.isnan().any()
    assert torch.equal(probs.isnan(), expected_probs.isnan())
    assert torch.all(probs[0, :, 2] == 0)
    finite = ~expected_out.isnan()
    assert_close(out[finite], expected_out[finite])
    if poisoned != "q":
        # the masked key's gradients stay 0 although its row's sums are NaN
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        grad_k, grad_v = torch.autograd.grad(
            xattn(*leaves, key_mask, scale=0.5)[0].sum(), leaves[1:], allow_unused=True
        )
        assert torch.all(grad_k[0, 2] == 0) and torch.all(grad_v[0, 2] == 0)


def test_meta_tensors_give_shapes():
    """Meta tensors (shapes only) run through the public op and the reference."""
    q = torch.empty(2, 3, 8, device="meta")
    kv = torch.empty(2, 5, 8, device="meta")
    key_mask = torch.ones(2, 5, dtype=torch.bool, device="meta")
    out, probs = xattn(q, kv, kv, key_mask, return_probs=True)
    assert out.shape == (2, 3, 8) and probs.shape == (2, 3, 5) and out.is_meta
    out, probs = reference.xattn(q, kv, kv, key_mask, 0.5, True)
    assert out.shape == (2, 3, 8) and probs.shape == (2, 3, 5)


@pytest.mark.requires_native
@pytest.mark.parametrize("return_probs", [False, True])
def test_gradient_matches_reference(device, generator, return_probs):
    """The native backward equals autograd through the reference, fully masked rows included."""
    inputs = [t.to(device) for t in make_inputs(3, 4, 6, 5, generator)]
    key_mask = make_key_mask("random", 3, 6, generator).to(device)
    key_mask[-1] = False
    _, _, grads = run_with_gradients(
        lambda q, k, v: xattn(q, k, v, key_mask, scale=0.5, return_probs=return_probs), inputs, generator
    )
    _, _, expected = run_with_gradients(
        lambda q, k, v: reference.xattn(q, k, v, key_mask, 0.5, return_probs), inputs, generator
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=1e-10)


@pytest.mark.requires_native
@pytest.mark.parametrize("return_probs", [False, True])
def test_keys_beyond_one_chunk_match_the_reference(device, generator, return_probs):
    """More keys than the CUDA kernel's chunk of 256, whose softmax runs online across chunks:
    keys real only in the last chunk (the running maximum starts empty), one real key, all real,
    with logits spread wide; output, probabilities and gradients equal the reference."""
    q, k, v = make_inputs(3, 5, 600, 24, generator)
    inputs = [(q * 3).to(device), k.to(device), v.to(device)]
    key_mask = torch.ones(3, 600, dtype=torch.bool)
    key_mask[0, :520] = False
    key_mask[1] = False
    key_mask[1, 599] = True
    key_mask = key_mask.to(device)
    out, probs, grads = run_with_gradients(
        lambda q, k, v: xattn(q, k, v, key_mask, scale=0.7, return_probs=return_probs), inputs, generator
    )
    expected_out, expected_probs, expected = run_with_gradients(
        lambda q, k, v: reference.xattn(q, k, v, key_mask, 0.7, return_probs), inputs, generator
    )
    assert_close(out, expected_out)
    if return_probs:
        assert_close(probs, expected_probs)
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, expected_grad, atol=1e-11, rtol=1e-10)


@pytest.mark.parametrize(
    "implementation",
    [
        pytest.param(lambda q, k, v, m, p: xattn(q, k, v, m, scale=0.5, return_probs=p), id="public"),
        pytest.param(lambda q, k, v, m, p: reference.xattn(q, k, v, m, 0.5, p), id="reference"),
    ],
)
@pytest.mark.parametrize("return_probs", [False, True])
def test_gradcheck(generator, implementation, return_probs):
    """Gradients in q, k and v are exact, through the output and the probabilities."""
    q, k, v = (t.requires_grad_() for t in make_inputs(2, 3, 5, 4, generator))
    key_mask = torch.tensor([[True, False, True, True, False], [False] * 5])

    def function(q, k, v):
        out, probs = implementation(q, k, v, key_mask, return_probs)
        return (out, probs) if return_probs else out

    assert gradcheck(function, (q, k, v))


@pytest.mark.requires_native
@pytest.mark.parametrize("return_probs", [False, True])
def test_opcheck_xattn(generator, layout, return_probs):
    """Schema, fake kernel, autograd registration and AOT dispatch of stg::xattn."""
    q, k, v = (layout(t).requires_grad_() for t in make_inputs(2, 3, 5, 4, generator))
    key_mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    opcheck(torch.ops.stg.xattn.default, (q, k, v, key_mask, 0.5, return_probs))


@pytest.mark.requires_native
@pytest.mark.stg_op("xattn_backward")
@pytest.mark.parametrize("with_grad_probs", [False, True])
def test_opcheck_xattn_backward(generator, layout, with_grad_probs):
    """Schema and fake kernel of stg::xattn_backward, with and without a probability gradient."""
    q, k, v = (layout(t) for t in make_inputs(2, 3, 5, 4, generator))
    key_mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    out, lse, _ = torch.ops.stg.xattn(q, k, v, key_mask, 0.5, False)
    grad_out = layout(torch.randn(2, 3, 4, generator=generator, dtype=torch.float64))
    grad_probs = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    args = (grad_out, grad_probs if with_grad_probs else None, q, k, v, key_mask, out, lse, 0.5)
    opcheck(torch.ops.stg.xattn_backward.default, args)


@pytest.mark.requires_native
def test_compiles_with_fullgraph(generator):
    """torch.compile(fullgraph=True) traces the public function, forward and backward."""
    q, k, v = make_inputs(2, 3, 5, 4, generator, dtype=torch.float32)
    key_mask = torch.tensor([[True, False, True, True, False], [False] * 5])

    def loss(q, k, v):
        out, probs = xattn(q, k, v, key_mask, return_probs=True)
        return out.square().sum() + probs[..., 0].sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    compiled_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    eager_value, compiled_value = loss(*eager_inputs), compiled(*compiled_inputs)
    eager_value.backward()
    compiled_value.backward()
    torch.testing.assert_close(compiled_value, eager_value)
    for compiled_input, eager_input in zip(compiled_inputs, eager_inputs):
        torch.testing.assert_close(compiled_input.grad, eager_input.grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_rows_sum_to_one_or_zero(device, generator, dtype):
    """Rows sum to 1 over real keys; padded keys and fully masked rows get 0, never NaN."""
    q, k, v = (t.to(device) for t in make_inputs(3, 4, 6, 8, generator, dtype=dtype))
    key_mask = make_key_mask("random", 3, 6, generator)
    key_mask[0, 0] = True
    key_mask[-1] = False
    key_mask = key_mask.to(device)
    out, probs = xattn(q, k, v, key_mask, return_probs=True)
    row_sums = probs.sum(-1)
    torch.testing.assert_close(row_sums[:-1], torch.ones_like(row_sums[:-1]), atol=1e-6, rtol=0)
    assert torch.all(probs[~key_mask[:, None, :].expand_as(probs)] == 0)
    assert torch.all(out[-1] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_stay_finite(device, dtype):
    """Logits of ±1e4 give a finite one-hot attention and finite gradients."""
    q = torch.tensor([[[100.0, 0.0], [0.0, -100.0]]], dtype=dtype, device=device)
    k = torch.tensor([[[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0]]], dtype=dtype, device=device)
    v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], dtype=dtype, device=device)
    q.requires_grad_()
    k.requires_grad_()
    out, probs = xattn(q, k, v, scale=1.0, return_probs=True)
    # logits: row 0 = [1e4, -1e4, 0], row 1 = [0, 0, -1e4]
    expected_probs = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]], dtype=dtype)
    torch.testing.assert_close(probs.detach().cpu(), expected_probs, atol=1e-30, rtol=0)
    expected_out = torch.tensor([[[1.0, 2.0], [2.0, 3.0]]], dtype=dtype)
    torch.testing.assert_close(out.detach().cpu(), expected_out)
    (out.sum() + probs[..., 0].sum()).backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_zero_width_features_give_empty_output(device):
    """D = 0: an empty output, or a ValueError naming q — never another exception."""
    q = torch.ones(2, 3, 0, device=device)
    k = v = torch.ones(2, 4, 0, device=device)
    try:
        out, _ = xattn(q, k, v)
    except ValueError as error:
        assert "q" in str(error)
    else:
        assert out.shape == (2, 3, 0)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"q": torch.zeros(3, 4)}, "q", id="q-rank"),
        pytest.param({"k": torch.zeros(5, 4)}, "k", id="k-rank"),
        pytest.param({"q": torch.zeros(2, 3, 4, dtype=torch.int64)}, "q", id="q-int"),
        pytest.param({"k": torch.zeros(2, 5, 4, dtype=torch.float64)}, "k", id="k-dtype"),
        pytest.param({"k": torch.zeros(2, 5, 3)}, "k", id="k-width"),
        pytest.param({"k": torch.zeros(1, 5, 4)}, "k", id="k-batch"),
        pytest.param({"v": torch.zeros(2, 4, 4)}, "v", id="v-keys"),
        pytest.param({"v": "values"}, "v", id="v-str"),
        pytest.param({"q": [[[0.0]]]}, "q", id="q-list"),
        pytest.param({"key_mask": torch.ones(2, 5)}, "key_mask", id="key_mask-float"),
        pytest.param({"key_mask": torch.ones(2, 4).bool()}, "key_mask", id="key_mask-shape"),
        pytest.param({"scale": float("inf")}, "scale", id="scale-inf"),
        pytest.param({"scale": "large"}, "scale", id="scale-str"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, name):
    """Each bad argument of the public function gives a ValueError that names it."""
    arguments = {"q": torch.zeros(2, 3, 4), "k": torch.zeros(2, 5, 4), "v": torch.zeros(2, 5, 4)}
    arguments.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        xattn(**arguments)


def _forward_arguments():
    return {
        "q": torch.zeros(2, 3, 4),
        "k": torch.zeros(2, 5, 4),
        "v": torch.zeros(2, 5, 4),
        "key_mask": torch.ones(2, 5, dtype=torch.bool),
        "scale": 0.5,
        "return_probs": True,
    }


@pytest.mark.requires_native
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"q": torch.zeros(3, 4)}, "q", id="q-rank"),
        pytest.param({"k": torch.zeros(2, 5, 3)}, "k", id="k-width"),
        pytest.param({"v": torch.zeros(2, 4, 4)}, "v", id="v-keys"),
        pytest.param({"k": torch.zeros(2, 5, 4, dtype=torch.float64)}, "k", id="k-dtype"),
        pytest.param({"key_mask": torch.ones(2, 4).bool()}, "key_mask", id="key_mask-shape"),
        pytest.param({"key_mask": torch.ones(2, 5)}, "key_mask", id="key_mask-float"),
        pytest.param({"scale": float("nan")}, "scale", id="scale-nan"),
    ],
)
def test_native_op_rejects_bad_arguments(overrides, name):
    """torch.ops.stg.xattn raises a RuntimeError naming the argument."""
    arguments = _forward_arguments()
    arguments.update(overrides)
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.xattn(*arguments.values())


@pytest.mark.requires_native
@pytest.mark.stg_op("xattn_backward")
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"grad_out": torch.zeros(2, 2, 4)}, "grad_out", id="grad_out-shape"),
        pytest.param({"grad_probs": torch.zeros(2, 3, 4)}, "grad_probs", id="grad_probs-shape"),
        pytest.param({"out": torch.zeros(1, 3, 4)}, "out", id="out-shape"),
        pytest.param({"lse": torch.zeros(2, 2)}, "lse", id="lse-shape"),
    ],
)
def test_native_backward_rejects_bad_arguments(overrides, name):
    """torch.ops.stg.xattn_backward raises a RuntimeError naming the argument."""
    forward = _forward_arguments()
    out, lse, _ = torch.ops.stg.xattn(*forward.values())
    arguments = {"grad_out": torch.zeros(2, 3, 4), "grad_probs": None}
    arguments.update({key: forward[key] for key in ("q", "k", "v", "key_mask")})
    arguments.update({"out": out, "lse": lse, "scale": 0.5})
    arguments.update(overrides)
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.xattn_backward(*arguments.values())
