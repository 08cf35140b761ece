"""The two feature-store layouts at corpus scale: a folder per video against packs.

Generates one store of each layout holding the same random features of ``--videos`` videos
(each U ~ uniform 30–60 frames, global [U, 64] and grid [U, 4, 64] float16 (a 2×2 grid of 64-d
cells, far smaller than CLIP's 7×7 × 512 so that 100,000 videos of both layouts fit in ~10 GB),
6 captions with sentence [6, 64] and words [6, 8, 64] float16), then measures from each, in
interleaved rounds: the files, the time to open the store, random single-clip reads (one
frame's grid features of a random video, through a freshly opened store) per second, and the
training loader (:class:`stg_cli.train.data.ClipDataset`, U = 16, batches of 64 random samples)
in clips per second. The per-video store is written with :class:`StoreWriter` (as
``stg extract`` does); the packed one with :func:`stg_cli.features.packs.write_pack` directly
from the same arrays, in packs of 4,096 videos (as ``stg store pack`` lays them out). The
stores are made once under ``--out`` and reused by later runs (``--fresh`` remakes them).

Usage: python benchmarks/store_layouts.py [--videos 100000] [--out DIR] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from stg_cli.defaults import VIDEOS_PER_PACK
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore, StoreConfig, StoreWriter
from stg_cli.features.packs import PackSource, pack_name, write_pack
from stg_cli.features.store import PACKS, rebuild_manifest
from stg_cli.train.data import ClipDataset

DIM, CELLS, TEXT_DIM, CAPTIONS, WORDS = 64, (2, 2), 64, 6, 8
CONFIG = StoreConfig(
    backbone="bench",
    weights=None,
    text="bench",
    grid=CELLS,
    visual_dim=DIM,
    text_dim=TEXT_DIM,
    fps=1.0,
    input_size=(224, 224),
    visual_fingerprint="bench-v",
    text_fingerprint="bench-t",
)


def video(index: int) -> tuple[dict[str, np.ndarray], list[str], dict]:
    """The arrays, caption texts and info of video ``index`` (seeded by it)."""
    rng = np.random.default_rng(index)
    frames = int(rng.integers(30, 61))
    cells = CELLS[0] * CELLS[1]
    starts = np.sort(rng.uniform(0, frames - 6, CAPTIONS)).astype(np.float32)
    mask = np.arange(WORDS)[None, :] < rng.integers(2, WORDS + 1, (CAPTIONS, 1))
    arrays = {
        "frame_times": np.arange(frames, dtype=np.float32),
        "global": rng.standard_normal((frames, DIM), dtype=np.float32),
        "grid": rng.standard_normal((frames, cells, DIM), dtype=np.float32),
        "caption_times": np.stack([starts, starts + 4.0], axis=1),
        "sentence": rng.standard_normal((CAPTIONS, TEXT_DIM), dtype=np.float32),
        "words": rng.standard_normal((CAPTIONS, WORDS, TEXT_DIM), dtype=np.float32),
        "word_mask": mask,
    }
    info = {"width": 640, "height": 360, "duration": float(frames)}
    return arrays, [f"caption {c} of video {index}" for c in range(CAPTIONS)], info


def video_id(index: int) -> str:
    return f"v{index:07d}"


def make_stores(out: Path, videos: int, fresh: bool) -> dict[str, float]:
    """Writes both stores under ``out`` unless a complete pair is there; returns the seconds
    each took to write (0 when reused)."""
    marker = out / "made.json"
    if not fresh and marker.is_file() and json.loads(marker.read_text()).get("videos") == videos:
        return json.loads(marker.read_text())["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    seconds = {}
    began = time.perf_counter()
    writer = StoreWriter(out / "per-video", CONFIG)
    for index in range(videos):
        writer.write(video_id(index), *video(index))
        if index % 10000 == 0:
            print(f"per-video: {index} videos, {time.perf_counter() - began:.0f} s", file=sys.stderr)
    writer.rebuild_manifest()
    seconds["per-video"] = time.perf_counter() - began
    began = time.perf_counter()
    packed = StoreWriter(out / "packed", CONFIG)
    (out / "packed" / PACKS).mkdir()
    for first in range(0, videos, VIDEOS_PER_PACK):
        sources = []
        for index in range(first, min(videos, first + VIDEOS_PER_PACK)):
            stored, meta = packed.prepare(video_id(index), *video(index))
            sources.append(PackSource(meta["video_id"], meta, stored.__getitem__))
        ids = [source.video_id for source in sources]
        name = pack_name("pack", ids)
        write_pack(
            out / "packed" / PACKS, out / "packed" / "tmp", name, packed.config.fingerprint, "pack", sources
        )
    rebuild_manifest(out / "packed", packed.config)
    seconds["packed"] = time.perf_counter() - began
    marker.write_text(json.dumps({"videos": videos, "seconds": seconds}) + "\n")
    return seconds


def count_files(root: Path) -> tuple[int, int]:
    """(files, bytes on disk) under ``root``."""
    count = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            count += 1
            size += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return count, size


def open_seconds(root: Path) -> float:
    began = time.perf_counter()
    FeatureStore.open(root)
    return time.perf_counter() - began


def clip_reads_per_second(root: Path, reads: int, seed: int) -> tuple[float, float]:
    """Random (video, frame) grid reads [N, Dv] per second through a freshly opened store: the
    first ``reads`` (packs' indexes read as they are first touched), then as many more."""
    store = FeatureStore.open(root)
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(2):
        picks = rng.integers(0, len(store), reads)
        began = time.perf_counter()
        for pick in picks:
            features = store.load(store.video_ids[pick])
            frame = int(rng.integers(len(features.frame_times)))
            np.array(features.grid_feats[frame], dtype=np.float32)
        rates.append(reads / (time.perf_counter() - began))
    return rates[0], rates[1]


class Subset:
    """The first ``count`` videos of a store, for the training loader."""

    def __init__(self, store: FeatureStore, count: int) -> None:
        self.config, self.video_ids, self.load = store.config, store.video_ids[:count], store.load


def loader(root: Path, videos: int, batches: int, seed: int) -> dict:
    """ClipDataset over the first ``videos`` videos: build seconds and clips/s of random batches
    of 64 (or why it failed)."""
    began = time.perf_counter()
    try:
        data = ClipDataset(Subset(FeatureStore.open(root), videos), frames_u=16)
    except UserError as error:
        return {"error": str(error)[:200]}
    built = time.perf_counter() - began
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    for _ in range(batches):
        data.batch(rng.integers(0, len(data), 64))
    return {"build_s": round(built, 2), "clips_per_s": round(64 * batches / (time.perf_counter() - began), 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/store-layouts"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=5000, help="random clip reads per round and layout")
    parser.add_argument(
        "--loader-videos",
        type=int,
        default=2000,
        help="videos in the loader's dataset (per-video: 7 open files per video, ulimit -n / 7 at most)",
    )
    parser.add_argument("--batches", type=int, default=50, help="loader batches per round and layout")
    parser.add_argument("--fresh", action="store_true", help="remake the stores")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    written = make_stores(args.out, args.videos, args.fresh)
    layouts = {"per-video": args.out / "per-video", "packed": args.out / "packed"}
    rows = {name: {"write_s": round(written[name], 1)} for name in layouts}
    for name, root in layouts.items():
        rows[name]["files"], rows[name]["bytes"] = count_files(root)
    samples: dict[str, dict[str, list]] = {name: {"open": [], "reads": [], "loader": []} for name in layouts}
    for round_ in range(args.rounds):
        for name, root in layouts.items():
            samples[name]["open"].append(open_seconds(root))
            samples[name]["reads"].append(clip_reads_per_second(root, args.reads, round_))
            samples[name]["loader"].append(loader(root, args.loader_videos, args.batches, round_))
    for name, root in layouts.items():
        rows[name]["open_s"] = round(float(np.median(samples[name]["open"])), 3)
        for position, key in enumerate(("clip_reads_per_s", "warm_clip_reads_per_s")):
            rows[name][key] = round(float(np.median([pair[position] for pair in samples[name]["reads"]])), 1)
        rates = [run["clips_per_s"] for run in samples[name]["loader"] if "clips_per_s" in run]
        builds = [run["build_s"] for run in samples[name]["loader"] if "build_s" in run]
        rows[name]["loader_clips_per_s"] = round(float(np.median(rates)), 1) if rates else None
        rows[name]["loader_build_s"] = round(float(np.median(builds)), 2) if builds else None
        rows[name]["all_videos_loader"] = loader(root, args.videos, args.batches, 0)
    print(
        "| layout | files | GB on disk | write s | open s | random clip reads/s, fresh + warm | "
        "loader clips/s "
        f"({args.loader_videos} videos) | loader build s | loader over all {args.videos} videos |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        full = row["all_videos_loader"]
        full_text = full.get("error") or f"{full['clips_per_s']} clips/s, built in {full['build_s']} s"
        print(
            f"| {name} | {row['files']:,} | {row['bytes'] / 1e9:.2f} | {row['write_s']} | {row['open_s']} | "
            f"{row['clip_reads_per_s']:,}, {row['warm_clip_reads_per_s']:,} | "
            f"{row['loader_clips_per_s']} | {row['loader_build_s']} | "
            f"{full_text} |"
        )
    if args.json is not None:
        machine = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"out": str(args.out), "json": str(args.json)},
                    "machine": machine,
                    "rows": rows,
                    "samples": samples,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
