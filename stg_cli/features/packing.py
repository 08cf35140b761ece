"""Moving a store's per-video folders into packs: ``stg store pack`` and
``stg extract --layout packed``.

:func:`pack_store` takes the finished per-video folders of a store (all of them, or those of
the given videos: one extraction shard's), sorted by video id, ``videos_per_pack`` at a time,
and for each group: writes the pack (:func:`stg_cli.features.packs.write_pack`: into ``tmp/``,
flushed to disk, renamed into ``packs/``), rebuilds the manifest, which then lists the group's
videos in the pack, and only then removes the group's folders, each renamed into ``tmp/`` at
once and deleted there (:func:`stg_cli.files.discard_folder`), so that no half-deleted folder
is ever under ``videos/``. Interrupted at any point, it loses nothing: a folder is removed only
once its video is durably in a pack, and a rerun removes the folders whose videos a pack
already holds (before it looks inside them), packs the rest, and first deletes what a killed
run left in ``tmp/``: packs half written and folders half deleted. Packing processes of one
store (one per shard) take turns through a lock file, held from that cleanup to the end;
folders that are damaged (arrays missing, cut short or not matching their meta.json) are left
in place and reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.defaults import VIDEOS_PER_PACK
from stg_cli.errors import UserError
from stg_cli.features.layout import ARRAYS, open_array
from stg_cli.features.packs import (
    WRITING,
    PackSource,
    pack_name,
    valid_pack_name,
    write_pack,
    writing_pattern,
)
from stg_cli.features.store import PACKS, locked, packed_videos, read_config, rebuild_manifest
from stg_cli.files import safe_name

_DISCARD_TAG = ".packed-"
#: the names of the folders of packed videos being deleted in a store's ``tmp/``
DISCARDED = files.scratch_pattern(r"[A-Za-z0-9._-]+", _DISCARD_TAG)


@dataclass
class PackSummary:
    """What :func:`pack_store` did: the packs written, the videos moved into them, the folders
    removed because a pack already held their video, and the folders left as they were."""

    root: str
    packs: list[str] = field(default_factory=list)
    videos_packed: int = 0
    duplicates_removed: int = 0
    damaged: dict[str, str] = field(default_factory=dict)
    store_videos: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "store": self.root,
            "packs_written": self.packs,
            "videos_packed": self.videos_packed,
            "duplicates_removed": self.duplicates_removed,
            "damaged": self.damaged,
            "store_videos": self.store_videos,
            "seconds": round(self.seconds, 3),
        }


def _folder_source(folder: Path, fingerprint: str) -> PackSource:
    """A per-video folder as a pack source, its arrays' headers checked against its meta.json.

    Raises OSError/ValueError/KeyError when the folder is damaged or of another configuration.
    """
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("fingerprint") != fingerprint:
        raise ValueError("made with another store configuration")
    for stem, (_, dtype) in ARRAYS.items():
        open_array(folder / f"{stem}.npy", dtype, meta["arrays"][stem][0], "meta.json")

    def read(stem: str) -> np.ndarray:
        return open_array(folder / f"{stem}.npy", ARRAYS[stem][1], meta["arrays"][stem][0], "meta.json")

    return PackSource(str(meta["video_id"]), meta, read)


def pack_store(
    root: str | Path,
    videos_per_pack: int = VIDEOS_PER_PACK,
    only: Iterable[str] | None = None,
    label: str = "pack",
    on_pack: Callable[[str, int], None] | None = None,
) -> PackSummary:
    """Moves the per-video folders of the store at ``root`` into packs (see the module).

    Args:
        root: the store folder.
        videos_per_pack: videos per pack at most (the last pack takes the rest).
        only: pack only these video ids (an extraction shard's); default every folder.
        label: the packs' name prefix (letters, digits, ``.``, ``_``, ``-``).
        on_pack: called with each pack's name and video count once it is written.

    Raises:
        UserError: not a store, a bad ``videos_per_pack`` or ``label``.
    """
    started = time.perf_counter()
    root = Path(root)
    config = read_config(root)
    if videos_per_pack < 1:
        raise UserError(f"--videos-per-pack must be >= 1, got {videos_per_pack}")
    if not valid_pack_name(label):
        raise UserError(f"pack label {label!r}: use letters, digits, '.', '_' and '-'")
    summary = PackSummary(str(root))
    videos, tmp = root / "videos", root / "tmp"
    (root / PACKS).mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    with locked(root / ".pack.lock") as held:
        # every packing process holds the lock while it writes: what is here was left by one
        # killed. Without locks, only this label's (this shard's) packs are known to be stale
        files.remove_scratch(tmp, WRITING if held else writing_pattern(label))
        files.remove_scratch(tmp, DISCARDED)
        if only is None:
            folders = sorted(path for path in videos.iterdir() if path.is_dir() and not path.is_symlink())
        else:
            folders = sorted(
                path
                for path in (videos / safe_name(video_id) for video_id in set(only))
                if path.is_dir() and not path.is_symlink()
            )
        packed = {safe_name(video_id) for video_id in packed_videos(root, config.fingerprint)}
        sources: list[tuple[Path, PackSource]] = []
        duplicates: list[Path] = []
        for folder in folders:
            if folder.name in packed:  # whatever is left of it: its video is safe in a pack
                duplicates.append(folder)
                continue
            if not (folder / "meta.json").exists():
                continue  # not a finished video
            try:
                sources.append((folder, _folder_source(folder, config.fingerprint)))
            except (OSError, ValueError, KeyError, TypeError) as error:
                summary.damaged[folder.name] = str(error).replace("\n", " ")
        if duplicates:
            summary.store_videos = rebuild_manifest(root, config)["counts"]["videos"]
            for folder in duplicates:
                files.discard_folder(folder, tmp, _DISCARD_TAG)
            summary.duplicates_removed = len(duplicates)
        sources.sort(key=lambda item: item[1].video_id)
        for begin in range(0, len(sources), videos_per_pack):
            group = sources[begin : begin + videos_per_pack]
            name = pack_name(label, [source.video_id for _, source in group])
            write_pack(root / PACKS, tmp, name, config.fingerprint, label, [s for _, s in group])
            summary.store_videos = rebuild_manifest(root, config)["counts"]["videos"]
            for folder, _ in group:
                files.discard_folder(folder, tmp, _DISCARD_TAG)
            summary.packs.append(name)
            summary.videos_packed += len(group)
            if on_pack is not None:
                on_pack(name, len(group))
    if not summary.packs and not duplicates:
        summary.store_videos = rebuild_manifest(root, config)["counts"]["videos"]
    summary.seconds = time.perf_counter() - started
    return summary
