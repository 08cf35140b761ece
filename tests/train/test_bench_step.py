"""The training-step benchmark builds a real optimizer step at each shape."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stg_cli.bench import train as train_bench


def test_cases_and_one_small_step_lowers_nothing_to_nan():
    cases = train_bench.cases(True, torch.device("cpu"))
    assert [case.op for case in cases] == ["train step", "train step"]
    assert [variant.name for variant in cases[0].variants] == [
        "default (stg train)",
        "factored, native",
        "factored, reference",
        "native",
        "reference",
        "compile(reference)",
        "compile(native)",
    ]
    held = {(target.subject, target.baseline, target.measure): target.minimum for target in cases[0].targets}
    assert held[(train_bench.DEFAULT, "reference", "time")] == 1.5
    assert held[(train_bench.DEFAULT, train_bench.COMPILED_REFERENCE, "time")] == 1.0
    assert held[("native", "reference", "time")] == 1.0
    tiny = dataclasses.replace(train_bench.shapes(True)[0], batch=4, chunk=2, dim=16)
    step = train_bench.training_step(tiny, torch.device("cpu"), "native")
    first, second = step(), step()
    assert torch.isfinite(first) and torch.isfinite(second) and second != first


def test_the_factored_step_trains_like_the_written_layers():
    """Three optimizer steps of stg train's factored step give the losses of the layers as
    written (d = 64, so the span of K + 1 = 13 words, doubled by the self layer, is narrower)."""
    tiny = dataclasses.replace(train_bench.shapes(True)[0], batch=4, chunk=2, dim=64)
    factored = train_bench.training_step(tiny, torch.device("cpu"), "reference", factored=True)
    written = train_bench.training_step(tiny, torch.device("cpu"), "reference")
    for _ in range(3):
        torch.testing.assert_close(factored(), written(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_compiled_step_computes_the_eager_steps_losses():
    tiny = dataclasses.replace(train_bench.shapes(True)[0], batch=4, chunk=2, dim=16)
    for ops in ("reference", "native"):
        eager = train_bench.training_step(tiny, torch.device("cpu"), ops)
        compiled = train_bench.training_step(tiny, torch.device("cpu"), ops, compiled=True)
        for _ in range(3):
            torch.testing.assert_close(compiled(), eager(), rtol=1e-4, atol=1e-5)
