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
        "native",
        "reference",
        "compile(reference)",
        "compile(native)",
    ]
    tiny = dataclasses.replace(train_bench.shapes(True)[0], batch=4, chunk=2, dim=16)
    step = train_bench.training_step(tiny, torch.device("cpu"), "native")
    first, second = step(), step()
    assert torch.isfinite(first) and torch.isfinite(second) and second != first


@pytest.mark.slow
def test_a_compiled_step_computes_the_eager_steps_losses():
    tiny = dataclasses.replace(train_bench.shapes(True)[0], batch=4, chunk=2, dim=16)
    for ops in ("reference", "native"):
        eager = train_bench.training_step(tiny, torch.device("cpu"), ops)
        compiled = train_bench.training_step(tiny, torch.device("cpu"), ops, compiled=True)
        for _ in range(3):
            torch.testing.assert_close(compiled(), eager(), rtol=1e-4, atol=1e-5)
