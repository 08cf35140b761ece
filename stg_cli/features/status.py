"""Where the extraction of a store stands, across machines: ``stg store status FEATS``.

Each ``stg extract`` process keeps a progress record of its shard in
``FEATS/shards/<i>-of-<n>.json`` (its own file, replaced atomically: no two shards write the
same file), and :func:`store_status` adds them up with what the store holds: videos finished
(in folders and in packs), failed (recorded under ``failures/`` and not stored since), being
written (under ``tmp/``), and whether ``manifest.json`` lists them all. It reads the folders
and the packs' indexes, never the arrays.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stg_cli import files
from stg_cli.features.store import open_packs, read_config, rebuild_manifest
from stg_cli.files import safe_name
from stg_cli.processes import process_alive

SHARDS = "shards"


@dataclass
class ShardProgress:
    """The progress of one extraction shard, as its process last recorded it.

    ``state``: running | finished | interrupted; ``in_shard`` videos dealt to the shard, of
    which ``done`` extracted by this run, ``stored`` found stored by an earlier one, ``failed``,
    ``no_captions``; times are seconds since the epoch.
    """

    shard: tuple[int, int]
    host: str
    pid: int
    state: str
    started: float
    updated: float
    in_shard: int
    done: int = 0
    stored: int = 0
    failed: int = 0
    no_captions: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.in_shard - self.done - self.stored - self.failed - self.no_captions)

    def to_dict(self) -> dict:
        return {**asdict(self), "shard": list(self.shard), "remaining": self.remaining}


def shard_record_path(root: Path, shard: tuple[int, int]) -> Path:
    return root / SHARDS / f"{shard[0]}-of-{shard[1]}.json"


def write_shard_progress(root: Path, progress: ShardProgress) -> None:
    """Replaces the shard's progress record atomically."""
    path = shard_record_path(root, progress.shard)
    path.parent.mkdir(exist_ok=True)
    files.write_json(path, progress.to_dict(), indent=1)


def new_shard_progress(shard: tuple[int, int], in_shard: int) -> ShardProgress:
    """A running record of this process for ``shard``."""
    now = time.time()
    return ShardProgress(shard, socket.gethostname(), os.getpid(), "running", now, now, in_shard)


def _read_shards(root: Path) -> list[ShardProgress]:
    records = []
    for path in sorted((root / SHARDS).glob("*-of-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            data.pop("remaining", None)
            data["shard"] = tuple(int(v) for v in data["shard"])
            records.append(ShardProgress(**data))
    return sorted(records, key=lambda record: (record.shard[1], record.shard[0]))


def _process_gone(record: ShardProgress) -> bool:
    """Whether a running record's process is known to be gone (only checkable on its host)."""
    return (
        record.state == "running"
        and record.host == socket.gethostname()
        and isinstance(record.pid, int)
        and not process_alive(record.pid)
    )


@dataclass
class StoreStatus:
    """What a store holds now and how far each shard got (see the module)."""

    root: str
    fingerprint: str
    backbone: str
    videos: int
    in_folders: int
    in_packs: int
    packs: int
    failed: dict[str, str]
    being_written: int
    manifest_videos: int | None
    damaged_packs: dict[str, str] = field(default_factory=dict)
    shards: list[ShardProgress] = field(default_factory=list)
    missing_shards: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    manifest_rebuilt: bool = False

    @property
    def manifest_current(self) -> bool:
        return self.manifest_videos == self.videos

    def to_dict(self) -> dict:
        return {
            "store": self.root,
            "fingerprint": self.fingerprint,
            "backbone": self.backbone,
            "videos": self.videos,
            "in_folders": self.in_folders,
            "in_packs": self.in_packs,
            "packs": self.packs,
            "failed": len(self.failed),
            "failures": self.failed,
            "being_written": self.being_written,
            "manifest_videos": self.manifest_videos,
            "manifest_current": self.manifest_current,
            "manifest_rebuilt": self.manifest_rebuilt,
            "damaged_packs": self.damaged_packs,
            "shards": [record.to_dict() for record in self.shards],
            "missing_shards": self.missing_shards,
            "processes_gone": self.gone,
        }


def store_status(root: str | Path, rebuild: bool = False) -> StoreStatus:
    """The status of the store at ``root``; ``rebuild`` first rebuilds its manifest (after an
    array job, or when the manifest lags behind the videos).

    Raises:
        UserError: when ``root`` is not a feature store.
    """
    root = Path(root)
    config = read_config(root)
    rebuilt = False
    if rebuild:
        rebuild_manifest(root, config)
        rebuilt = True
    packs, damaged = open_packs(root, config.fingerprint)
    stored = {safe_name(video_id) for pack in packs for video_id in pack.videos}
    in_packs = len(stored)
    in_folders = 0
    videos = root / "videos"
    for folder in videos.iterdir() if videos.is_dir() else ():
        if folder.name not in stored and (folder / "meta.json").exists():
            stored.add(folder.name)
            in_folders += 1
    failed: dict[str, str] = {}
    for path in sorted((root / "failures").glob("*.json")):
        if path.stem in stored:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(path.read_text())
            failed[str(record["video_id"])] = str(record.get("reason"))
    try:
        manifest_videos = len(json.loads((root / "manifest.json").read_text())["videos"])
    except (OSError, ValueError, KeyError, TypeError):
        manifest_videos = None
    tmp = root / "tmp"
    shards = _read_shards(root)
    missing = []
    for count in sorted({record.shard[1] for record in shards}):
        seen = {record.shard[0] for record in shards if record.shard[1] == count}
        missing += [f"{index}/{count}" for index in range(count) if index not in seen]
    return StoreStatus(
        root=str(root),
        fingerprint=config.fingerprint,
        backbone=config.backbone,
        videos=len(stored),
        in_folders=in_folders,
        in_packs=in_packs,
        packs=len(packs),
        failed=failed,
        being_written=sum(1 for _ in tmp.iterdir()) if tmp.is_dir() else 0,
        manifest_videos=manifest_videos,
        damaged_packs=damaged,
        shards=shards,
        missing_shards=missing,
        gone=[f"{r.shard[0]}/{r.shard[1]}" for r in shards if _process_gone(r)],
        manifest_rebuilt=rebuilt,
    )
