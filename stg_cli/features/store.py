"""The feature store: what ``stg extract`` writes and ``stg train``/``stg ground`` read.

Layout of a store folder FEATS::

    FEATS/store.json                 format version, configuration and its fingerprint
    FEATS/manifest.json              the finished videos and the failures (rebuilt, see below)
    FEATS/text_encoder/              the text encoder that encoded the captions (reloadable)
    FEATS/videos/<name>/meta.json    per video: id, size, duration, captions' text, array shapes
    FEATS/videos/<name>/*.npy        frame_times [U] f32, global [U, Dv] f16, grid [U, N, Dv] f16,
                                     caption_times [C, 2] f32, sentence [C, Dw] f16,
                                     words [C, K, Dw] f16, word_mask [C, K] bool
    FEATS/packs/<pack>/              many videos' arrays in 7 .npy files + index.json
                                     (the packed layout, :mod:`stg_cli.features.packs`)
    FEATS/failures/<name>.json       a video that could not be extracted, and why
    FEATS/shards/<i>-of-<n>.json     progress of each extraction shard (``stg store status``)
    FEATS/tmp/                       videos and packs being written, folders being removed

``<name>`` is the video id made safe as a file name (:func:`safe_name`). A video lives either
in its own folder under ``videos/`` (the per-video layout: 8 files per video) or in a pack (the
packed layout: 8 files per pack of thousands of videos); a store may hold both, and
:class:`FeatureStore` reads either the same way. :func:`stg_cli.features.packing.pack_store`
(``stg store pack``, ``stg extract --layout packed``) moves per-video folders into packs.

Atomicity and resumption: a video is written into ``FEATS/tmp/<name>.<8 random characters>``
(arrays first, ``meta.json`` last, every file flushed to disk) and moved into
``FEATS/videos/`` with one rename (:func:`stg_cli.files.atomic_folder`, durable), so a folder
under ``videos/`` is always complete, even after a crash of the machine. An interrupted
extraction leaves at most one such folder per video it was writing, which the next run removes
when it writes that video again (only that video's: :func:`stg_cli.files.scratch_pattern`).
Packs appear the same way (:mod:`stg_cli.features.packs`): an interrupted packing leaves its
pack half written in ``tmp/`` (``.pack-<pack>.<8 random characters>``), and a folder it was
removing renamed there (``.packed-<name>.<…>``), both of which the next packing removes under
its lock (:mod:`stg_cli.features.packing`). The reader and the packer check every array's size
against its meta.json (a file cut short is reported, naming the video). A rerun skips every
video whose folder or pack exists. The per-video ``meta.json`` files and the packs' indexes are
the source of truth: ``manifest.json`` is rebuilt from them (and from ``failures/``) under a
file lock and replaced atomically, so shards on several machines writing disjoint videos into
one store never lose each other's entries. Every process of a store must use the same
configuration: the fingerprint in ``store.json`` (backbone name and weights digest, text
encoder digest, fps, input size, clip geometry, dtype and the store format version) is compared
at every run and a mismatch is refused; ``store.json`` is created with an exclusive link
(:func:`stg_cli.files.create_new`), so two machines starting at once cannot both create it,
even on a file system without locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.backbones import load_matching_visual, load_text_from
from stg_cli.errors import UserError
from stg_cli.features.layout import (
    ARRAYS,
    FEATURE_DTYPE,
    VideoFeatures,
    open_array,
    read_json_object,
    to_storage,
)
from stg_cli.features.packs import Pack, valid_pack_name
from stg_cli.files import safe_name

__all__ = [
    "ARRAYS",
    "FEATURE_DTYPE",
    "FeatureStore",
    "StoreConfig",
    "StoreWriter",
    "VideoFeatures",
    "safe_name",
]

STORE_FORMAT = "stg-features"
#: Bumped whenever the layout or the meaning of an array changes.
STORE_VERSION = 1
PACKS = "packs"


@dataclass(frozen=True)
class StoreConfig:
    """How the features of a store were made; ``fingerprint`` digests all of it.

    ``weights``/``text_weights`` are the paths given to the backbones (informational: the
    fingerprint holds the digests of the weights themselves), ``visual_fingerprint`` and
    ``text_fingerprint`` the backbones' own fingerprints.
    """

    backbone: str
    weights: str | None
    text: str
    grid: tuple[int, int]
    visual_dim: int
    text_dim: int
    fps: float
    input_size: tuple[int, int]
    fingerprint: str = ""
    clip_len: int = 1
    clip_fps: float = 1.0
    text_weights: str | None = None
    visual_fingerprint: str = ""
    text_fingerprint: str = ""
    dtype: str = "float16"
    version: int = STORE_VERSION

    def identity(self) -> dict:
        """The fields that decide the features' values (what the fingerprint digests)."""
        return {
            "version": self.version,
            "backbone": self.backbone,
            "visual_fingerprint": self.visual_fingerprint,
            "text": self.text,
            "text_fingerprint": self.text_fingerprint,
            "fps": float(self.fps),
            "input_size": list(self.input_size),
            "clip_len": int(self.clip_len),
            "clip_fps": float(self.clip_fps),
            "grid": list(self.grid),
            "visual_dim": int(self.visual_dim),
            "text_dim": int(self.text_dim),
            "dtype": self.dtype,
        }

    def with_fingerprint(self) -> StoreConfig:
        text = json.dumps(self.identity(), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return StoreConfig(**{**asdict(self), "fingerprint": digest})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["grid"], out["input_size"] = list(self.grid), list(self.input_size)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> StoreConfig:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["grid"] = tuple(int(v) for v in known["grid"])
        known["input_size"] = tuple(int(v) for v in known["input_size"])
        return cls(**known)

    def differences(self, other: StoreConfig) -> list[str]:
        """``"field: mine → other"`` for each identity field that differs."""
        mine, theirs = self.identity(), other.identity()
        return [f"{key}: {mine[key]} → {theirs[key]}" for key in mine if mine[key] != theirs[key]]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[bool]:
    """An exclusive advisory lock on ``path`` (flock: one process of one machine at a time);
    yields whether it is held: False on a file system without locks, where the block runs
    anyway (what it does must then be safe without the lock)."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            held = True
        except OSError as error:  # file systems without locks: the rebuild is still atomic
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            held = False
        try:
            yield held
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


#: what a store folder holds (the module docstring), its lock files included
_STORE_ENTRIES = frozenset(
    {
        "store.json",
        "manifest.json",
        "text_encoder",
        "videos",
        PACKS,
        "failures",
        "shards",
        "tmp",
        ".lock",
        ".pack.lock",
    }
)


class StoreWriter:
    """Writes videos into a store folder (created, or resumed when its fingerprint matches)."""

    def __init__(self, root: str | os.PathLike, config: StoreConfig) -> None:
        self.root = Path(root)
        self.config = config if config.fingerprint else config.with_fingerprint()
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} exists and is not a folder")
        # another shard may be creating the store right now: a folder holding only a store's
        # own entries is one, whether or not its store.json is there yet
        if not (self.root / "store.json").exists() and any(
            entry.name not in _STORE_ENTRIES and not entry.name.startswith(".store.json.")
            for entry in (self.root.iterdir() if self.root.is_dir() else ())
        ):
            raise UserError(f"--out {self.root} is a non-empty folder that is not a feature store")
        for sub in ("videos", "failures", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        header = {"format": STORE_FORMAT, "version": STORE_VERSION, "config": self.config.to_dict()}
        with locked(self.root / ".lock"):
            path = self.root / "store.json"
            text = json.dumps(header, indent=1) + "\n"
            if path.exists() or not files.create_new(path, text.encode(), durable=True):
                existing = StoreConfig.from_dict(read_json_object(path, "feature store")["config"])
                if existing.fingerprint != self.config.fingerprint:
                    changes = "; ".join(existing.differences(self.config)) or "fingerprint"
                    raise UserError(
                        f"{self.root} holds features made with another configuration ({changes}); "
                        "use another --out or delete it to start over"
                    )
        self.packed = set(packed_videos(self.root, self.config.fingerprint))

    def video_dir(self, video_id: str) -> Path:
        return self.root / "videos" / safe_name(video_id)

    def is_done(self, video_id: str) -> bool:
        """Whether ``video_id`` is fully written: its folder exists (folders appear complete and
        flushed to disk, see :meth:`write`) or a pack holds it (the packs present when the
        writer was made)."""
        return video_id in self.packed or (self.video_dir(video_id) / "meta.json").exists()

    def prepare(
        self, video_id: str, arrays: dict[str, np.ndarray], texts: list[str], info: dict
    ) -> tuple[dict[str, np.ndarray], dict]:
        """The arrays as stored (keyed as :data:`ARRAYS`) and the meta.json object of one video.

        ``arrays``: frame_times [U], global [U, Dv], grid [U, N, Dv], caption_times [C, 2],
        sentence [C, Dw], words [C, K, Dw], word_mask [C, K]; ``info`` goes into meta.json.
        Raises ValueError for non-finite features or inconsistent shapes.
        """
        missing = set(ARRAYS) - set(arrays)
        if missing:
            raise ValueError(f"missing arrays: {', '.join(sorted(missing))}")
        frames = len(arrays["frame_times"])
        captions = len(arrays["caption_times"])
        shapes = {
            "global": (frames, self.config.visual_dim),
            "grid": (frames, self.config.grid[0] * self.config.grid[1], self.config.visual_dim),
            "caption_times": (captions, 2),
            "sentence": (captions, self.config.text_dim),
        }
        for key, shape in shapes.items():
            if tuple(np.shape(arrays[key])) != shape:
                raise ValueError(f"{key} has shape {tuple(np.shape(arrays[key]))}, expected {shape}")
        if (
            np.shape(arrays["words"])[:1] != (captions,)
            or np.shape(arrays["words"])[-1] != self.config.text_dim
            or len(np.shape(arrays["words"])) != 3
        ):
            raise ValueError(f"words has shape {np.shape(arrays['words'])}")
        if np.shape(arrays["word_mask"]) != np.shape(arrays["words"])[:2] or len(texts) != captions:
            raise ValueError("word_mask, words and texts disagree")
        stored = {name: to_storage(name, arrays[name], dtype) for name, (_, dtype) in ARRAYS.items()}
        meta = {
            "video_id": video_id,
            "fingerprint": self.config.fingerprint,
            "frames": frames,
            "captions": captions,
            **info,
            "texts": list(texts),
            "arrays": {stem: [list(a.shape), a.dtype.name] for stem, a in stored.items()},
        }
        return stored, meta

    def write(self, video_id: str, arrays: dict[str, np.ndarray], texts: list[str], info: dict) -> Path:
        """Atomically and durably write one video into its folder (see :meth:`prepare` for the
        arguments), first removing what a killed write of the same video left in ``tmp/``.

        Raises ValueError for non-finite features or inconsistent shapes (nothing is written).
        """
        stored, meta = self.prepare(video_id, arrays, texts, info)
        # what a killed write of this video left; exactly its own: "clip.v2"'s are not "clip"'s
        files.remove_scratch(self.root / "tmp", files.scratch_pattern(re.escape(safe_name(video_id))))
        # written by an earlier run meanwhile, or a stale copy: replaced. Durable, so that after
        # a crash of the machine the folder is complete or absent (is_done trusts its meta.json)
        target = self.video_dir(video_id)
        with files.atomic_folder(target, self.root / "tmp", durable=True, replace=True) as tmp:
            for stem, array in stored.items():
                with open(tmp / f"{stem}.npy", "xb") as handle:
                    np.save(handle, array)
            files.write_json(tmp / "meta.json", meta, indent=1)
        self.clear_failure(video_id)
        return self.video_dir(video_id)

    def record_failure(self, video_id: str, source: str, reason: str) -> None:
        """Remember why ``video_id`` failed (listed in the manifest until a later run succeeds)."""
        path = self.root / "failures" / f"{safe_name(video_id)}.json"
        files.write_json(
            path, {"video_id": video_id, "source": source, "reason": reason}, indent=1, durable=True
        )

    def clear_failure(self, video_id: str) -> None:
        (self.root / "failures" / f"{safe_name(video_id)}.json").unlink(missing_ok=True)

    def rebuild_manifest(self) -> dict:
        """Rebuild ``manifest.json`` from every video's meta.json, the packs and the failures."""
        return rebuild_manifest(self.root, self.config)


def pack_folders(root: Path) -> list[Path]:
    """The pack folders of the store at ``root`` (names checked, symlinks ignored), sorted."""
    folder = root / PACKS
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if valid_pack_name(path.name) and path.is_dir() and not path.is_symlink()
    )


def open_packs(root: Path, fingerprint: str) -> tuple[list[Pack], dict[str, str]]:
    """The readable packs of the store, and ``{pack name: why}`` for the damaged ones."""
    packs, damaged = [], {}
    for folder in pack_folders(root):
        try:
            packs.append(Pack.open(folder, fingerprint))
        except UserError as error:
            damaged[folder.name] = str(error)
    return packs, damaged


def packed_videos(root: Path, fingerprint: str) -> dict[str, str]:
    """``{video id: pack name}`` over the readable packs of the store."""
    packs, _ = open_packs(root, fingerprint)
    return {video_id: pack.folder.name for pack in packs for video_id in pack.videos}


def rebuild_manifest(root: Path, config: StoreConfig) -> dict:
    """Rebuild ``manifest.json`` from every video's meta.json, the packs' indexes and the
    failures, under the store's lock, and replace it atomically; returns it.

    A video both in a pack and in a folder (a pack step interrupted before it removed the
    folder) is listed in its pack.
    """
    with locked(root / ".lock"):
        videos: dict[str, dict] = {}
        packs, damaged = open_packs(root, config.fingerprint)
        for pack in packs:
            for video_id, entry in pack.videos.items():
                meta = entry["meta"]
                videos[video_id] = {
                    "pack": pack.folder.name,
                    "frames": entry["frames"][1],
                    "captions": entry["captions"][1],
                    "duration": meta.get("duration"),
                    "width": meta.get("width"),
                    "height": meta.get("height"),
                }
        for folder in sorted((root / "videos").iterdir()):
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                continue  # not a finished video
            if meta.get("fingerprint") != config.fingerprint or meta.get("video_id") in videos:
                continue
            videos[meta["video_id"]] = {
                "dir": folder.name,
                "frames": meta["frames"],
                "captions": meta["captions"],
                "duration": meta.get("duration"),
                "width": meta.get("width"),
                "height": meta.get("height"),
            }
        failures: dict[str, dict] = {}
        for path in sorted((root / "failures").glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(path.read_text())
                if record["video_id"] not in videos:
                    failures[record["video_id"]] = {
                        "source": record.get("source"),
                        "reason": record.get("reason"),
                    }
        manifest = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "fingerprint": config.fingerprint,
            "config": config.to_dict(),
            "counts": {
                "videos": len(videos),
                "frames": sum(v["frames"] for v in videos.values()),
                "captions": sum(v["captions"] for v in videos.values()),
                "failures": len(failures),
            },
            "layout": {"packs": len(packs), "packed_videos": sum("pack" in v for v in videos.values())},
            "damaged_packs": damaged,
            "videos": dict(sorted(videos.items())),
            "failures": dict(sorted(failures.items())),
        }
        files.write_json(root / "manifest.json", manifest, indent=1, durable=True)
    return manifest


def read_config(root: Path) -> StoreConfig:
    """The configuration in ``root/store.json``; UserError if it is missing, foreign, of
    another format version or broken."""
    if not root.exists():
        raise UserError(f"feature store not found: {root}")
    try:
        header = read_json_object(root / "store.json", "feature store")
    except FileNotFoundError:
        raise UserError(
            f"{root} is not a feature store (no store.json); create one with stg extract"
        ) from None
    if header.get("format") != STORE_FORMAT:
        raise UserError(f"{root}/store.json is not a stg feature store")
    if header.get("version") != STORE_VERSION:
        raise UserError(
            f"{root} was written in store format {header.get('version')}, this stg reads "
            f"format {STORE_VERSION}: extract the features again"
        )
    try:
        return StoreConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{root}/store.json has a broken configuration ({error})") from None


class FeatureStore:
    """Read access to a finished feature store of either layout (see the module docstring)."""

    def __init__(self, root: Path, config: StoreConfig, manifest: dict) -> None:
        self.root = root
        self.config = config
        self.manifest = manifest
        self.video_ids: list[str] = list(manifest["videos"])
        self._packs: dict[str, Pack] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open the store at ``path``; UserError if it is missing, empty, unfinished or broken."""
        root = Path(path)
        config = read_config(root)
        try:
            manifest = read_json_object(root / "manifest.json", "manifest")
        except FileNotFoundError:
            raise UserError(
                f"{root} is unfinished (no manifest.json): rerun stg extract with --out {root}"
            ) from None
        if manifest.get("fingerprint") != config.fingerprint or not isinstance(manifest.get("videos"), dict):
            raise UserError(f"{root}/manifest.json does not match {root}/store.json: rerun stg extract")
        if not manifest["videos"]:
            raise UserError(f"feature store {root} holds no video")
        return cls(root, config, manifest)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.manifest["videos"]

    def load(self, video_id: str) -> VideoFeatures:
        """The features of ``video_id`` (memory-mapped); UserError if unknown or damaged."""
        entry = self.manifest["videos"].get(video_id)
        if entry is None:
            raise UserError(f"video {video_id!r} is not in the feature store {self.root}")
        if "pack" in entry:
            return self._pack(str(entry["pack"])).features(video_id)
        folder = self.root / "videos" / str(entry["dir"])
        try:
            meta = json.loads((folder / "meta.json").read_text())
            arrays = {
                name: open_array(folder / f"{stem}.npy", dtype, meta["arrays"][stem][0], "meta.json")
                for stem, (name, dtype) in ARRAYS.items()
            }
            return VideoFeatures.from_meta({**meta, "video_id": video_id}, arrays)
        except OSError as error:
            # each array is a memory map holding a file descriptor: 7 per video, against the
            # process's open-file limit (ulimit -n) and Linux's 65,530 maps (vm.max_map_count)
            if error.errno in (errno.ENOMEM, errno.EMFILE, errno.ENFILE):
                raise UserError(
                    f"cannot map the features of {video_id!r}: this process holds too many memory "
                    f"maps and files (7 per video; {error.strerror}); pack the store with "
                    f"stg store pack {self.root}"
                ) from None
            raise UserError(f"damaged features of {video_id!r} in {folder}: {error}") from None
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"damaged features of {video_id!r} in {folder}: {error}; delete the folder and rerun "
                "stg extract to extract the video again"
            ) from None

    def _pack(self, name: str) -> Pack:
        """The pack ``name``, opened once (its index read, its arrays mapped) and kept."""
        pack = self._packs.get(name)
        if pack is None:
            if not valid_pack_name(name):
                raise UserError(f"{self.root}/manifest.json names the pack {name!r}: refused")
            pack = self._packs[name] = Pack.open(self.root / PACKS / name, self.config.fingerprint)
        return pack

    def visual_backbone(self, device: str = "cpu"):
        """The visual backbone that made this store, loaded from the recorded weights path."""

        return load_matching_visual(
            self.config.backbone,
            self.config.weights,
            self.config.visual_fingerprint,
            f"the feature store {self.root}",
            device=device,
        )

    def text_encoder(self, device: str = "cpu"):
        """The text encoder that encoded this store's captions (saved in ``text_encoder/``)."""

        encoder = load_text_from(self.root / "text_encoder", device=device)
        if self.config.text_fingerprint and encoder.fingerprint != self.config.text_fingerprint:
            raise UserError(f"{self.root}/text_encoder does not match the store's text fingerprint")
        return encoder
