"""Benchmarks (``stg bench``): the native ops against their references, and the pipeline stages.

:func:`run_benchmarks` runs the named benchmarks on the chosen devices and returns a
:class:`BenchReport`: one :class:`BenchResult` row per variant (median time, peak memory,
speed-up vs the reference) and one :class:`Comparison` per performance target of the design
(native vs reference, vs POT, vs SDPA, vs the materialising formulation, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import torch

from stg_cli.bench import extract, ground, rollout, score, sinkhorn, train, xattn
from stg_cli.bench.common import (
    NATIVE,
    BenchReport,
    BenchResult,
    Case,
    Comparison,
    MachineInfo,
    Settings,
    machine_info,
    run_case,
)
from stg_cli.devices import DEVICE_CHOICES
from stg_cli.errors import UserError

BENCHMARKS: dict[str, Callable[[bool, torch.device], list[Case]]] = {
    "sinkhorn": sinkhorn.cases,
    "xattn": xattn.cases,
    "rollout": rollout.cases,
    "score": score.cases,
    "ground": ground.cases,
    "train": train.cases,
    "extract": extract.cases,
}

ProgressCallback = Callable[[int, int, str | None], None]

__all__ = [
    "BENCHMARKS",
    "NATIVE",
    "BenchReport",
    "BenchResult",
    "Comparison",
    "MachineInfo",
    "plan_benchmarks",
    "resolve_devices",
    "resolve_names",
    "run_benchmarks",
]


def resolve_names(names: Sequence[str] | None) -> list[str]:
    """Benchmark names in run order; empty or "all" means every benchmark.

    Raises:
        UserError: for a name that is not a benchmark.
    """
    available = ", ".join([*BENCHMARKS, "all"])
    resolved: list[str] = []
    for name in names or ["all"]:
        key = name.strip().lower()
        if key not in BENCHMARKS and key != "all":
            raise UserError(f"unknown benchmark {name!r}; choose from {available}")
        for selected in BENCHMARKS if key == "all" else [key]:
            if selected not in resolved:
                resolved.append(selected)
    return resolved


def resolve_devices(device: str) -> list[torch.device]:
    """``auto``: the CPU, plus the current CUDA device when there is one; ``cpu``; ``cuda``.

    Raises:
        UserError: for an unknown choice, or ``cuda`` without a CUDA device.
    """
    choice = device.strip().lower()
    if choice not in DEVICE_CHOICES:
        raise UserError(f"unknown device {device!r}; choose from {', '.join(DEVICE_CHOICES)}")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise UserError("--device cuda: no CUDA device is available to this torch")
    if choice == "cpu" or (choice == "auto" and not has_cuda):
        return [torch.device("cpu")]
    cuda = torch.device("cuda", torch.cuda.current_device())
    return [torch.device("cpu"), cuda] if choice == "auto" else [cuda]


def plan_benchmarks(names: Sequence[str] | None, quick: bool, device: str) -> list[Case]:
    """The cases :func:`run_benchmarks` would run, without running them."""
    return [
        case
        for target in resolve_devices(device)
        for name in resolve_names(names)
        for case in BENCHMARKS[name](quick, target)
    ]


def run_benchmarks(
    names: Sequence[str] | None,
    quick: bool = False,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
) -> BenchReport:
    """Runs the named benchmarks (see :data:`BENCHMARKS`; ``all``/empty: every one).

    Args:
        names: benchmark names.
        quick: fewer repeats and, where the full shape is slow, smaller shapes (the row's shape
            says which).
        device: ``auto`` (CPU, plus CUDA when available), ``cpu`` or ``cuda``.
        on_progress: called as ``(completed, total, label)`` before each step (warm-up, timing
            round, memory pass; the label says which) and once at the end with label None;
            the counts are of variants.

    Raises:
        UserError: for an unknown name or device.
    """
    names = resolve_names(names)
    cases = plan_benchmarks(names, quick, device)
    total = sum(len(case.variants) for case in cases)
    completed = 0

    def on_step(label: str, finished_in_case: int) -> None:
        if on_progress is not None:
            on_progress(completed + finished_in_case, total, label)

    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    begin = time.perf_counter()
    results: list[BenchResult] = []
    comparisons: list[Comparison] = []
    for case in cases:
        settings = Settings.for_run(quick, torch.device(case.device).type)
        rows, case_comparisons = run_case(case, settings, on_step)
        completed += len(case.variants)
        results.extend(rows)
        comparisons.extend(case_comparisons)
    if on_progress is not None:
        on_progress(total, total, None)
    return BenchReport(
        names=names,
        quick=quick,
        devices=sorted({case.device for case in cases}, key=lambda name: name != "cpu"),
        machine=machine_info(sorted({torch.device(case.device) for case in cases}, key=str)),
        results=results,
        comparisons=comparisons,
        started_at=started_at,
        duration_s=time.perf_counter() - begin,
    )
