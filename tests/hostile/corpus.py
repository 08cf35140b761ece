"""The hostile-input corpus: each case writes its broken or malicious files at test time and
says which ``stg`` command line meets them, and what a clean refusal looks like.

A case reproduces one finding of a bad-input campaign (paths escaping a folder, writes through
symlinks, allocations sized by a file, internal errors, terminal and markup injection, silently
wrong results). ``test_corpus.py`` runs each through ``stg``'s entry point and checks the outcome:
the exit code, one error line that keeps its detail, never the catch-all handler, and the case's
own after-condition (an outside file untouched, a secret never printed, ...).

Findings that need a process to signal or a failing allocator are tested where they live:
Ctrl-C of extract and ground (tests/commands/test_extract.py, test_ground.py), ``kill -9``
leftovers of extract's workers (tests/features/test_extract_run.py), MemoryError and a
torchrun peer's error text holding ``[...]`` (tests/test_terminal.py), JSON nested too deeply
in every loader (tests/hostile/test_json.py), pickles that run code or allocate
(tests/metrics/test_annotations.py), MiniLM weights that are code pickles
(tests/backbones/test_minilm.py), and the ops' edge values (tests/ops).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from helpers.grounding import make_export, make_video
from helpers.stores import make_store, write_store

SECRET = "secret-token-7f3a"
DEEP_JSON = "[" * 200_000 + "]" * 200_000


@dataclass(frozen=True)
class Base:
    """Valid inputs the cases start from (built once per test module)."""

    export: Path  # a random-initialised tiny-backbone export with its word2vec encoder
    video: Path  # a 5-second 320×240 video
    queries: Path  # a query file with two queries
    store: Path  # a small feature store written by the store writer


def build_base(root: Path) -> Base:
    export = make_export(root / "export")
    video = make_video(root / "videos" / "clip.mp4", 320, 240, 5)
    queries = root / "queries.txt"
    queries.write_text("crack the egg\npour milk\n")
    store = root / "store"
    write_store(store, make_store(videos=2, captions=4))
    return Base(export, video, queries, store)


@dataclass(frozen=True)
class Case:
    """One hostile input.

    ``build(base, folder)`` writes the case's files under ``folder`` and returns the arguments
    of ``stg``. The run must exit with ``exit_code``; with exit code 2 stderr is exactly one line
    matching ``message``; with 0 or 1 ``message`` is searched in stdout. ``after(folder)`` checks
    what the run must have left (or not) on disk.
    """

    name: str
    finding: str
    build: Callable[[Base, Path], list[str]]
    exit_code: int
    message: str
    after: Callable[[Path], None] | None = None


def _copy_export(base: Base, folder: Path) -> Path:
    export = folder / "export"
    for source in sorted(base.export.rglob("*")):
        target = export / source.relative_to(base.export)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return export


def _ground(base: Base, export: Path, folder: Path, *extra: str) -> list[str]:
    return [
        "ground",
        str(base.video),
        "--queries",
        str(base.queries),
        "--checkpoint",
        str(export),
        "--out",
        str(folder / "out"),
        *extra,
    ]


def _edit_model_config(base: Base, folder: Path, **model: object) -> list[str]:
    export = _copy_export(base, folder)
    config = json.loads((export / "config.json").read_text())
    config["model"].update(model)
    (export / "config.json").write_text(json.dumps(config))
    return _ground(base, export, folder)


def _text_vectors_outside(base: Base, folder: Path) -> list[str]:
    export = _copy_export(base, folder)
    secret = folder / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    descriptor = next(export.rglob("text_encoder.json"))
    config = json.loads(descriptor.read_text())
    config["vectors"] = str(secret)
    descriptor.write_text(json.dumps(config))
    return _ground(base, export, folder)


def _secret_not_printed(folder: Path) -> None:
    assert not (folder / "out" / "predictions.json").exists()


def _tampered_safetensors(base: Base, folder: Path) -> list[str]:
    export = _copy_export(base, folder)
    weights = export / "model.safetensors"
    data = weights.read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    weights.write_bytes(struct.pack("<Q", header_length + 10**6) + data[8:])
    return _ground(base, export, folder)


def _missing_weight(base: Base, folder: Path) -> list[str]:
    from safetensors.torch import load_file, save_file

    export = _copy_export(base, folder)
    tensors = load_file(export / "model.safetensors")
    tensors.pop(next(name for name in sorted(tensors) if name.endswith(".weight")))
    save_file(tensors, export / "model.safetensors")
    return _ground(base, export, folder)


def _nested_config(base: Base, folder: Path) -> list[str]:
    export = _copy_export(base, folder)
    (export / "config.json").write_text(DEEP_JSON)
    return _ground(base, export, folder)


def _escape_in_video_name(base: Base, folder: Path) -> list[str]:
    bad = folder / "bad\x1b[2J\x1b[31mred.mp4"
    bad.write_bytes(b"\x00" * 64)
    return [
        "ground",
        str(bad),
        str(base.video),
        "--queries",
        str(base.queries),
        "--checkpoint",
        str(base.export),
        "--out",
        str(folder / "out"),
    ]


def _markup_in_path(base: Base, folder: Path) -> list[str]:
    return [
        "ground",
        str(base.video),
        "--queries",
        str(folder / "q[bold red]x[/]:x:.txt"),
        "--checkpoint",
        str(base.export),
        "--out",
        str(folder / "out"),
    ]


def _outputs_are_symlinks(base: Base, folder: Path) -> list[str]:
    outside = folder / "outside.txt"
    outside.write_text("keep me")
    out = folder / "out"
    out.mkdir()
    for name in ("predictions.json", "clip.json", "clip.heatmaps.npz"):
        (out / name).symlink_to(outside)
    return _ground(base, base.export, folder)


def _outputs_replaced_and_readable(folder: Path) -> None:
    import os

    assert (folder / "outside.txt").read_text() == "keep me"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("predictions.json", "clip.json", "clip.heatmaps.npz"):
        path = folder / "out" / name
        assert path.is_file() and not path.is_symlink(), name
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, name


def _run_config_symlink(base: Base, folder: Path) -> list[str]:
    outside = folder / "outside.txt"
    outside.write_text("keep me")
    run = folder / "run"
    run.mkdir()
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        (run / name).symlink_to(outside)
    return [
        "train",
        str(base.store),
        "--out",
        str(run),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--dim",
        "32",
        "--frames-u",
        "8",
        "--frames-t",
        "4",
        "--device",
        "cpu",
    ]


def _outside_untouched(folder: Path) -> None:
    assert (folder / "outside.txt").read_text() == "keep me"


def _bench_out_exists(base: Base, folder: Path) -> list[str]:
    report = folder / "report.json"
    report.write_text("earlier results")
    return ["bench", "sinkhorn", "--quick", "--out", str(report)]


def _report_untouched(folder: Path) -> None:
    assert (folder / "report.json").read_text() == "earlier results"


def _allocating_pickle(base: Base, folder: Path) -> list[str]:
    predictions = folder / "predictions.json"
    predictions.write_text(json.dumps({"videos": {}}))
    crafted = folder / "final_dataset_annotations.pkl"
    # builtins.bytes(300_000_000): 300 MB from 33 bytes, refused before it is called.
    crafted.write_bytes(b"\x80\x04cbuiltins\nbytes\nJ\x00\xa3\xe1\x11\x85R.")
    (folder / "final_dataset_segments.pkl").write_bytes(b"\x80\x04\x8f\x94.")
    (folder / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": {}}))
    return ["score", str(predictions), "--dataset", "youcook-interactions", "--gt", str(folder)]


def _hostile_captions(base: Base, folder: Path) -> list[str]:
    videos = folder / "videos"
    videos.mkdir()
    for name in ("clip", "other"):
        (videos / f"{name}.mp4").write_bytes(base.video.read_bytes())
    captions = folder / "captions"
    captions.mkdir()
    (captions / "clip.json").write_text(
        json.dumps({"start": [0.0, 1e300], "end": [2.0, 1e301], "text": ["crack the egg", "pour milk"]})
    )
    (captions / "other.csv").write_text("start,end,text\n0,2," + "x" * 200_000 + "\n")
    return [
        "extract",
        str(videos),
        "--captions",
        str(captions),
        "--out",
        str(folder / "store"),
        "--backbone",
        "tiny",
        "--fps",
        "1",
        "--json",
    ]


def _clip_stored(folder: Path) -> None:
    assert any(path.name.startswith("clip") for path in (folder / "store").rglob("*"))


CASES = [
    Case(
        "text-vectors-outside-export",
        "an export's text_encoder.json names a file outside it",
        _text_vectors_outside,
        2,
        r"text_encoder\.json.*outside",
        _secret_not_printed,
    ),
    Case(
        "model-dim-huge",
        "config.json dim 2,000,000 allocated 9 GB before failing",
        lambda base, folder: _edit_model_config(base, folder, dim=2_000_000),
        2,
        r"\bdim\b",
    ),
    Case(
        "model-dim-fraction",
        "config.json dim 12.5 reached the catch-all",
        lambda base, folder: _edit_model_config(base, folder, dim=12.5),
        2,
        r"\bdim\b",
    ),
    Case(
        "safetensors-header-tampered",
        "a tampered safetensors header reached the catch-all",
        _tampered_safetensors,
        2,
        r"model\.safetensors",
    ),
    Case(
        "state-dict-key-missing",
        "the state-dict error was cut before its detail",
        _missing_weight,
        2,
        r"Missing key",
    ),
    Case(
        "config-nested-too-deeply",
        "deeply nested JSON was reported without naming the file",
        _nested_config,
        2,
        r"config\.json",
    ),
    Case(
        "escape-codes-in-video-name",
        "a video named with ANSI escapes printed raw ESC bytes",
        _escape_in_video_name,
        1,
        r"bad\\x1b\[2J",
    ),
    Case(
        "markup-in-error-message",
        "rich markup swallowed [...] and turned :x: into an emoji",
        _markup_in_path,
        2,
        r"q\[bold red\]x\[/\]:x:\.txt",
    ),
    Case(
        "outputs-are-symlinks",
        "stg wrote through symlinks and made 0600 files",
        _outputs_are_symlinks,
        0,
        r"segments per query",
        _outputs_replaced_and_readable,
    ),
    Case(
        "run-files-are-symlinks",
        "stg train --out RUN overwrote a symlinked config.json's target",
        _run_config_symlink,
        0,
        r"steps",
        _outside_untouched,
    ),
    Case(
        "synth-size-huge",
        "stg synth --size 100000x100000 died with MemoryError",
        lambda base, folder: ["synth", str(folder / "synth"), "--size", "100000x100000"],
        2,
        r"size must be even, from 64x48 to 3840x3840",
    ),
    Case(
        "extract-fps-zero",
        "stg extract --fps 0 silently used 1.0",
        lambda base, folder: [
            "extract",
            str(base.video),
            "--captions",
            str(folder),
            "--out",
            str(folder / "store"),
            "--fps",
            "0",
        ],
        2,
        r"--fps",
    ),
    Case(
        "train-checkpoint-every-zero",
        "--checkpoint-every 0 trained, then saved nothing",
        lambda base, folder: [
            "train",
            str(base.store),
            "--out",
            str(folder / "run"),
            "--checkpoint-every",
            "0",
        ],
        2,
        r"--checkpoint-every",
    ),
    Case(
        "bench-out-exists",
        "stg bench --out overwrote an existing file",
        _bench_out_exists,
        2,
        r"--overwrite",
        _report_untouched,
    ),
    Case(
        "pickle-allocates",
        "a 33-byte pickle built a 300 MB object before the refusal",
        _allocating_pickle,
        2,
        r"refusing to unpickle builtins\.bytes",
    ),
    Case(
        "captions-huge-times-and-fields",
        "1e300 caption times became inf; a 200k-character CSV field aborted the whole extract",
        _hostile_captions,
        0,
        r'"bad_time": 1[\s\S]*other\.csv: field larger than field limit',
        _clip_stored,
    ),
]
