"""Tests of the NCE losses."""

from __future__ import annotations

import math

import pytest
import torch

from stg_cli.train.losses import LossConfig, global_loss, local_loss, symmetric_nce


def reference_nce(x, temperature, margin):
    """Eq. 4 written out with loops."""
    logits = x / temperature
    count = x.shape[0]
    total = 0.0
    for i in range(count):
        pos = math.exp(logits[i, i] - margin)
        col = sum(math.exp(logits[k, i]) for k in range(count) if k != i)
        row = sum(math.exp(logits[i, k]) for k in range(count) if k != i)
        total += math.log(pos / (pos + col)) + math.log(pos / (pos + row))
    return -total / count


@pytest.mark.parametrize("temperature,margin", [(0.07, 0.1), (1.0, 0.0), (0.5, 2.0)])
def test_matches_written_out_equation(temperature, margin):
    x = torch.rand(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    got = symmetric_nce(x, temperature, margin)
    assert got.item() == pytest.approx(reference_nce(x, temperature, margin), rel=1e-5)


def test_margin_raises_loss_and_temperature_sharpens():
    x = torch.eye(4) * 0.8 + 0.1
    assert symmetric_nce(x, 0.1, 1.0) > symmetric_nce(x, 0.1, 0.0)
    # a well-separated diagonal: lower temperature → smaller loss
    assert symmetric_nce(x, 0.05, 0.0) < symmetric_nce(x, 0.5, 0.0)
    # wrong pairing: loss grows as temperature falls
    shuffled = x[[1, 0, 3, 2]]
    assert symmetric_nce(shuffled, 0.05, 0.0) > symmetric_nce(shuffled, 0.5, 0.0)


def test_gradients_pull_positives_together():
    x = torch.zeros(3, 3, requires_grad=True)
    symmetric_nce(x, 0.1, 0.1).backward()
    assert (x.grad.diagonal() < 0).all()
    off = x.grad[~torch.eye(3, dtype=torch.bool)]
    assert (off > 0).all()


def test_single_and_empty_batches_are_finite():
    assert symmetric_nce(torch.ones(1, 1)).item() == 0.0
    assert symmetric_nce(torch.zeros(0, 0)).item() == 0.0
    assert torch.isfinite(symmetric_nce(torch.full((3, 3), 1e4)))


def test_global_and_local_losses():
    config = LossConfig()
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    s = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    loss, backward = global_loss(v, s, config)
    torch.testing.assert_close(loss, symmetric_nce(v @ s.t(), 0.07, 0.1))
    torch.testing.assert_close(backward, loss)
    chunks = [torch.randn(3, 3), torch.randn(3, 3)]
    expected = (symmetric_nce(chunks[0]) + symmetric_nce(chunks[1])) / 2
    torch.testing.assert_close(local_loss(chunks, config), expected)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="loss"):
        LossConfig(mode="neither")
    with pytest.raises(ValueError, match="temperature"):
        LossConfig(temperature=0)
    assert LossConfig("global").uses_global and not LossConfig("global").uses_local
