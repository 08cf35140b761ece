"""Tests of stg_cli.ops.rollout / rollout_paper and torch.ops.stg.rollout / rollout_paper."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.library import opcheck

from stg_cli.ops import reference, rollout, rollout_paper

pytestmark = pytest.mark.stg_op("rollout")

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-13}
# (batch, layers Ly, tokens n)
SHAPES = ((0, 2, 5), (1, 1, 1), (1, 3, 6), (3, 4, 7), (5, 3, 60))
ROW_KINDS = ("all", "ends", "repeated", "empty")
# (batch, regions R, words W)
PAPER_SHAPES = ((0, 3, 2), (1, 1, 1), (2, 6, 4), (3, 5, 9), (4, 98, 20))
PAPER_MASK_KINDS = ("none", "random", "fully_masked")


def make_layers(batch, depth, tokens, generator, *, dtype=torch.float64):
    """Row-stochastic attention maps [B, Ly, n, n]."""
    logits = torch.randn(batch, depth, tokens, tokens, generator=generator, dtype=dtype)
    return logits.softmax(-1)


def make_rows(kind, tokens):
    """Token indices: every token, the two ends, a repeated selection or none."""
    indices = {
        "all": range(tokens),
        "ends": [0, tokens - 1],
        "repeated": [tokens - 1, 0, tokens - 1],
        "empty": [],
    }[kind]
    return torch.tensor(list(indices), dtype=torch.int64)


def make_paper_inputs(batch, regions, words, generator, *, dtype=torch.float64):
    """Row-stochastic ca2 [B, R, W], sa [B, W, W], ca1 [B, W, R]."""

    def stochastic(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).softmax(-1)

    ca2 = stochastic(batch, regions, words)
    return ca2, stochastic(batch, words, words), stochastic(batch, words, regions)


def make_word_mask(kind, batch, words, generator):
    """word_mask [B, W]; "fully_masked" pads every word of the last sample."""
    word_mask = torch.ones(batch, words, dtype=torch.bool)
    if kind == "random":
        word_mask = torch.rand(batch, words, generator=generator) > 0.3
    elif batch and kind == "fully_masked":
        word_mask[-1] = False
    return word_mask


def assert_close(actual, expected):
    """Equal up to the tolerance of expected's dtype."""
    tolerance = TOLERANCE[expected.dtype]
    torch.testing.assert_close(actual, expected, atol=tolerance, rtol=tolerance)


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("row_kind", ROW_KINDS)
def test_matches_reference(device, generator, dtype, shape, row_kind):
    """Selected rows of the rolled-out product equal the reference."""
    layers = make_layers(*shape, generator, dtype=dtype).to(device)
    rows = make_rows(row_kind, shape[2]).to(device)
    heat = rollout(layers, rows)
    assert heat.shape == (shape[0], rows.numel(), shape[2])
    assert_close(heat, reference.rollout(layers, rows))


@pytest.mark.requires_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_on_noncontiguous_views(device, generator, dtype):
    """Permuted layers and strided rows give the result of their contiguous copies."""
    layers = make_layers(2, 3, 6, generator, dtype=dtype).to(device).transpose(0, 1).transpose(2, 3)
    rows = torch.arange(6, device=device)[::2]
    assert not (layers.is_contiguous() or rows.is_contiguous())
    assert_close(rollout(layers, rows), reference.rollout(layers.contiguous(), rows.contiguous()))


@pytest.mark.requires_native
def test_matches_reference_on_rows_that_do_not_sum_to_one(device, generator):
    """Zero rows (fully masked queries) and unnormalised rows follow the same formula."""
    layers = torch.rand(2, 3, 5, 5, generator=generator, dtype=torch.float64).to(device) * 3
    layers[:, 1, 2] = 0
    assert_close(rollout(layers), reference.rollout(layers, torch.arange(5, device=device)))


def test_reads_every_row_by_default(device, generator):
    """rows=None reads all n tokens."""
    layers = make_layers(2, 3, 5, generator).to(device)
    expected = rollout(layers, torch.arange(5, device=device))
    torch.testing.assert_close(rollout(layers), expected, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_sum_to_one_when_layer_rows_do(device, generator, dtype):
    """Rollout of row-stochastic layers is row-stochastic."""
    heat = rollout(make_layers(3, 4, 8, generator, dtype=dtype).to(device))
    ones = torch.ones(3, 8, dtype=dtype, device=device)
    torch.testing.assert_close(heat.sum(-1), ones, atol=TOLERANCE[dtype], rtol=0)


def test_one_layer_is_identity_mixed_and_renormalised(device, generator):
    """With one layer the rows are those of rownorm(0.5·A + 0.5·I)."""
    layers = torch.rand(2, 1, 6, 6, generator=generator, dtype=torch.float64).to(device)
    mixed = 0.5 * layers[:, 0] + 0.5 * torch.eye(6, dtype=torch.float64, device=device)
    expected = mixed / mixed.sum(-1, keepdim=True)
    rows = torch.tensor([4, 1], device=device)
    torch.testing.assert_close(rollout(layers, rows), expected[:, rows], atol=1e-15, rtol=0)


def test_two_layers_multiply_later_layer_on_the_left(device):
    """Hand-computed: Ã1·Ã0 with Ã0 = [[1, 0], [.5, .5]] and Ã1 = [[.5, .5], [0, 1]]."""
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # everyone attends token 0
    second = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # everyone attends token 1
    layers = torch.stack([first, second])[None].to(device, torch.float64)
    expected = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]], dtype=torch.float64)
    torch.testing.assert_close(rollout(layers).cpu(), expected, atol=1e-15, rtol=0)


@pytest.mark.requires_native
@pytest.mark.stg_op("rollout_paper")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PAPER_SHAPES, ids=str)
@pytest.mark.parametrize("mask_kind", PAPER_MASK_KINDS)
def test_paper_matches_reference(device, generator, dtype, shape, mask_kind):
    """The paper chain equals the reference, padded words included."""
    ca2, sa, ca1 = (t.to(device) for t in make_paper_inputs(*shape, generator, dtype=dtype))
    word_mask = make_word_mask(mask_kind, shape[0], shape[2], generator).to(device)
    heat = rollout_paper(ca2, sa, ca1, word_mask)
    assert heat.shape == shape[:2]
    assert_close(heat, reference.rollout_paper(ca2, sa, ca1, word_mask))


@pytest.mark.requires_native
@pytest.mark.stg_op("rollout_paper")
def test_paper_matches_reference_on_noncontiguous_views(device, generator):
    """Transposed factors and a strided mask give the result of their contiguous copies."""
    ca2 = torch.rand(2, 4, 6, generator=generator, dtype=torch.float64).to(device).transpose(1, 2)
    sa = torch.rand(2, 4, 4, generator=generator, dtype=torch.float64).to(device).transpose(1, 2)
    ca1 = torch.rand(6, 2, 4, generator=generator, dtype=torch.float64).to(device).permute(1, 2, 0)
    word_mask = torch.tensor([[1, 1], [0, 1], [1, 0], [1, 1]], dtype=torch.bool, device=device).t()
    assert not any(t.is_contiguous() for t in (ca2, sa, ca1, word_mask))
    expected = reference.rollout_paper(*(t.contiguous() for t in (ca2, sa, ca1, word_mask)))
    assert_close(rollout_paper(ca2, sa, ca1, word_mask), expected)


@pytest.mark.stg_op("rollout_paper")
def test_paper_hand_computed_example(device):
    """mean_r CA2 · SA · CA1 with the padded third word ignored, on two word masks."""
    ca2 = [[0.2, 0.8, 5.0], [0.6, 0.4, 5.0]]
    sa = [[0.5, 0.5, 5.0], [0.1, 0.9, 5.0], [5.0, 5.0, 5.0]]
    ca1 = [[0.3, 0.7], [0.9, 0.1], [5.0, 5.0]]
    ca2, sa, ca1 = (torch.tensor([t, t], dtype=torch.float64, device=device) for t in (ca2, sa, ca1))
    word_mask = torch.tensor([[True, True, False], [True, False, False]], device=device)
    heat = rollout_paper(ca2, sa, ca1, word_mask)
    # mean CA2 = [.4, .6] → through SA = [.26, .74] → heat = [.744, .256];
    # with word 1 padded: [.4, 0] → [.2, 0] → [.06, .14].
    expected = torch.tensor([[0.744, 0.256], [0.06, 0.14]], dtype=torch.float64)
    torch.testing.assert_close(heat.cpu(), expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize(
    "implementation", [pytest.param(rollout, id="public"), pytest.param(reference.rollout, id="reference")]
)
def test_gradcheck(generator, implementation):
    """Gradients with respect to the layers are exact."""
    layers = torch.rand(2, 3, 4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    rows = torch.tensor([3, 0])
    assert gradcheck(lambda layers: implementation(layers, rows), (layers,))


@pytest.mark.stg_op("rollout_paper")
@pytest.mark.parametrize(
    "implementation",
    [pytest.param(rollout_paper, id="public"), pytest.param(reference.rollout_paper, id="reference")],
)
def test_paper_gradcheck(generator, implementation):
    """Gradients with respect to the three attention maps are exact, padded words included."""
    inputs = [t.requires_grad_() for t in make_paper_inputs(2, 5, 3, generator)]
    word_mask = torch.tensor([[True, False, True], [False, False, False]])
    assert gradcheck(lambda ca2, sa, ca1: implementation(ca2, sa, ca1, word_mask), inputs)


@pytest.mark.requires_native
def test_opcheck_rollout(generator, layout):
    """Schema, fake kernel, autograd registration and AOT dispatch of stg::rollout."""
    layers = layout(make_layers(2, 3, 5, generator)).requires_grad_()
    opcheck(torch.ops.stg.rollout.default, (layers, torch.tensor([4, 0, 2])))


@pytest.mark.requires_native
@pytest.mark.stg_op("rollout_paper")
def test_opcheck_rollout_paper(generator, layout):
    """Schema, fake kernel, autograd registration and AOT dispatch of stg::rollout_paper."""
    inputs = [layout(t).requires_grad_() for t in make_paper_inputs(2, 5, 3, generator)]
    word_mask = torch.tensor([[True, False, True], [True, True, True]])
    opcheck(torch.ops.stg.rollout_paper.default, (*inputs, word_mask))


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"layers": torch.rand(3, 5, 5)}, "layers", id="layers-rank"),
        pytest.param({"layers": torch.rand(2, 3, 5, 4)}, "layers", id="layers-not-square"),
        pytest.param({"layers": torch.rand(2, 0, 5, 5)}, "layers", id="layers-zero-depth"),
        pytest.param({"layers": torch.ones(2, 3, 5, 5).long()}, "layers", id="layers-int"),
        pytest.param({"layers": [[[[1.0]]]]}, "layers", id="layers-list"),
        pytest.param({"rows": torch.tensor([5])}, "rows", id="rows-too-large"),
        pytest.param({"rows": torch.tensor([0, -1])}, "rows", id="rows-negative"),
        pytest.param({"rows": torch.tensor([1], dtype=torch.int32)}, "rows", id="rows-int32"),
        pytest.param({"rows": torch.tensor([[1]])}, "rows", id="rows-rank"),
        pytest.param({"rows": [1]}, "rows", id="rows-list"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, name):
    """Each bad argument of rollout gives a ValueError that names it."""
    arguments = {"layers": torch.rand(2, 3, 5, 5), "rows": torch.tensor([0, 4])}
    arguments.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rollout(**arguments)


@pytest.mark.stg_op("rollout_paper")
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"ca2": torch.rand(6, 3)}, "ca2", id="ca2-rank"),
        pytest.param({"ca2": torch.ones(2, 6, 3, dtype=torch.int64)}, "ca2", id="ca2-int"),
        pytest.param({"sa": torch.rand(2, 2, 3)}, "sa", id="sa-shape"),
        pytest.param({"sa": torch.rand(2, 3, 3, dtype=torch.float64)}, "sa", id="sa-dtype"),
        pytest.param({"ca1": torch.rand(2, 3, 5)}, "ca1", id="ca1-regions"),
        pytest.param({"ca1": [[[1.0]]]}, "ca1", id="ca1-list"),
        pytest.param({"word_mask": torch.ones(2, 3)}, "word_mask", id="word_mask-float"),
        pytest.param({"word_mask": torch.ones(2, 4).bool()}, "word_mask", id="word_mask-shape"),
    ],
)
def test_paper_bad_arguments_raise_value_error(overrides, name):
    """Each bad argument of rollout_paper gives a ValueError that names it."""
    arguments = {"ca2": torch.rand(2, 6, 3), "sa": torch.rand(2, 3, 3), "ca1": torch.rand(2, 3, 6)}
    arguments.update(overrides)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rollout_paper(**arguments)


@pytest.mark.requires_native
@pytest.mark.parametrize(
    ("layers", "rows", "name"),
    [
        pytest.param(torch.rand(3, 5, 5), torch.tensor([0]), "layers", id="layers-rank"),
        pytest.param(torch.rand(2, 3, 5, 4), torch.tensor([0]), "layers", id="layers-not-square"),
        pytest.param(torch.rand(2, 0, 5, 5), torch.tensor([0]), "layers", id="layers-zero-depth"),
        pytest.param(torch.ones(2, 3, 5, 5).long(), torch.tensor([0]), "layers", id="layers-int"),
        pytest.param(torch.rand(2, 3, 5, 5), torch.tensor([5]), "rows", id="rows-too-large"),
        pytest.param(torch.rand(2, 3, 5, 5), torch.tensor([-1]), "rows", id="rows-negative"),
        pytest.param(torch.rand(2, 3, 5, 5), torch.tensor([0]).int(), "rows", id="rows-int32"),
    ],
)
def test_native_op_rejects_bad_arguments(layers, rows, name):
    """torch.ops.stg.rollout raises a RuntimeError naming the argument."""
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.rollout(layers, rows)


@pytest.mark.requires_native
@pytest.mark.stg_op("rollout_paper")
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        pytest.param({"ca2": torch.rand(6, 3)}, "ca2", id="ca2-rank"),
        pytest.param({"sa": torch.rand(2, 2, 3)}, "sa", id="sa-shape"),
        pytest.param({"ca1": torch.rand(2, 3, 5)}, "ca1", id="ca1-regions"),
        pytest.param({"sa": torch.rand(2, 3, 3, dtype=torch.float64)}, "sa", id="sa-dtype"),
        pytest.param({"word_mask": torch.ones(2, 2).bool()}, "word_mask", id="word_mask-shape"),
        pytest.param({"word_mask": torch.ones(2, 3)}, "word_mask", id="word_mask-float"),
    ],
)
def test_native_paper_rejects_bad_arguments(overrides, name):
    """torch.ops.stg.rollout_paper raises a RuntimeError naming the argument."""
    arguments = {"ca2": torch.rand(2, 6, 3), "sa": torch.rand(2, 3, 3), "ca1": torch.rand(2, 3, 6)}
    arguments["word_mask"] = torch.ones(2, 3, dtype=torch.bool)
    arguments.update(overrides)
    with pytest.raises(RuntimeError, match=rf"\b{name}\b"):
        torch.ops.stg.rollout_paper(*arguments.values())


def test_meta_tensors_give_shapes():
    """Meta tensors (shapes only) run through both public ops, rows unchecked (no values)."""
    layers = torch.empty(2, 3, 5, 5, device="meta")
    rows = torch.empty(2, dtype=torch.int64, device="meta")
    assert rollout(layers, rows).shape == (2, 2, 5)
    ca2, sa, ca1 = (torch.empty(*shape, device="meta") for shape in ((2, 4, 3), (2, 3, 3), (2, 3, 4)))
    assert rollout_paper(ca2, sa, ca1).shape == (2, 4)
