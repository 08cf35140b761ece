"""Packs: the arrays of many videos in a few files, for stores of many videos.

A pack is a folder ``FEATS/packs/<name>/``::

    index.json          format, store fingerprint, label, the arrays' shapes, and per video its
                        rows in the arrays and its meta.json object (texts, size, duration, …)
    frame_times.npy     [F] float32        F = the frames of all its videos
    global.npy          [F, Dv] float16
    grid.npy            [F, N, Dv] float16
    caption_times.npy   [C, 2] float32     C = the captions of all its videos
    sentence.npy        [C, Dw] float16
    words.npy           [W, Dw] float16    W = Σ over its videos of captions × word slots
    word_mask.npy       [W] bool

A video's rows are contiguous in each array: frames ``[f0, f0 + U)``, captions ``[c0, c0 + C)``,
word rows ``[w0, w0 + C·K)``, which reshape to its [C, K, Dw] words without a copy. A reader
maps each array once (``np.load(mmap_mode="r")``) and slices it, so reading one clip touches
only that clip's pages, never the whole pack, and a process holds 7 mappings per pack instead of
7 per video.

A pack is written into ``FEATS/tmp/.pack-<name>.<8 random characters>`` and renamed into
``packs/`` once every file is on disk (:func:`stg_cli.files.atomic_folder`, durable), so a pack
folder is complete or absent; :data:`WRITING` matches what a killed packing process leaves in
``tmp/`` (the dot keeps it apart from a video's folder being written, whose name never starts
with one). Its name is its label and a digest of its video ids: packing the same videos again
gives the same name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.features.layout import ARRAYS, VideoFeatures, open_array, read_json_object

PACK_FORMAT = "stg-pack"
PACK_VERSION = 1
#: the row space of each array: "frames", "captions" or "words" (captions × word slots)
ROWS = {
    "frame_times": "frames",
    "global": "frames",
    "grid": "frames",
    "caption_times": "captions",
    "sentence": "captions",
    "words": "words",
    "word_mask": "words",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
_WRITING_TAG = ".pack-"
#: the names of the folders of packs being written in a store's ``tmp/``
WRITING = files.scratch_pattern(r"[A-Za-z0-9][A-Za-z0-9._-]*", _WRITING_TAG)


def writing_pattern(label: str) -> re.Pattern[str]:
    """The names of the folders of packs labelled ``label`` being written (see :data:`WRITING`)."""
    return files.scratch_pattern(f"{re.escape(label)}-[0-9a-f]{{16}}", _WRITING_TAG)


@dataclass(frozen=True)
class PackSource:
    """One video to pack: its meta.json object (``meta["arrays"][stem]`` = [shape, dtype]) and
    a function giving its stored array of a stem of :data:`ARRAYS` (e.g. a memory map)."""

    video_id: str
    meta: dict
    read: Callable[[str], np.ndarray]


def pack_name(label: str, video_ids: Sequence[str]) -> str:
    """``<label>-<16 hex digits of the sorted ids' SHA-256>``."""
    digest = hashlib.sha256("\n".join(sorted(video_ids)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{label}-{digest[:16]}"


def _rows_of(meta: dict) -> dict[str, int]:
    """The rows a video takes in each row space, and its word slots K."""
    words = meta["arrays"]["words"][0]
    return {"frames": int(meta["frames"]), "captions": int(meta["captions"]), "words": words[0] * words[1]}


def _tail(stem: str, shape: list[int]) -> tuple[int, ...]:
    """The shape of one row of ``stem`` in a pack (words flattened to [C·K, Dw])."""
    return tuple(shape[2:] if ROWS[stem] == "words" else shape[1:])


def write_pack(
    packs: Path, scratch: Path, name: str, fingerprint: str, label: str, sources: Sequence[PackSource]
) -> Path:
    """Writes ``sources`` (in order) as the pack ``packs/<name>``, atomically and durably.

    Every source must have the same row shapes (store width, grid); ValueError otherwise.
    FileExistsError when ``packs/<name>`` exists already (nothing is written then).
    """
    if not sources:
        raise ValueError("a pack needs at least one video")
    first = sources[0].meta["arrays"]
    tails = {stem: _tail(stem, first[stem][0]) for stem in ARRAYS}
    totals = {"frames": 0, "captions": 0, "words": 0}
    videos: dict[str, dict] = {}
    for source in sources:
        shapes = source.meta["arrays"]
        for stem in ARRAYS:
            if _tail(stem, shapes[stem][0]) != tails[stem]:
                raise ValueError(
                    f"{source.video_id}: {stem} has shape {shapes[stem][0]}, rows {tails[stem]} expected"
                )
        rows = _rows_of(source.meta)
        videos[source.video_id] = {
            "frames": [totals["frames"], rows["frames"]],
            "captions": [totals["captions"], rows["captions"]],
            "words": [totals["words"], int(shapes["words"][0][1])],
            "meta": {key: value for key, value in source.meta.items() if key != "arrays"},
        }
        for space in totals:
            totals[space] += rows[space]
    shapes = {stem: [totals[ROWS[stem]], *tails[stem]] for stem in ARRAYS}
    with files.atomic_folder(packs / name, scratch, durable=True, tag=_WRITING_TAG) as work:
        for stem, (_, dtype) in ARRAYS.items():
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False,
                "shape": tuple(shapes[stem]),
            }
            with open(work / f"{stem}.npy", "xb") as handle:
                np.lib.format.write_array_header_2_0(handle, header)
                for source in sources:
                    array = np.asarray(source.read(stem))
                    expected = tuple(source.meta["arrays"][stem][0])
                    if array.shape != expected or array.dtype != dtype:
                        raise ValueError(
                            f"{source.video_id}: {stem}.npy is {array.dtype} {array.shape}, "
                            f"expected {np.dtype(dtype).name} {expected}"
                        )
                    handle.write(np.ascontiguousarray(array).tobytes())
        index = {
            "format": PACK_FORMAT,
            "version": PACK_VERSION,
            "fingerprint": fingerprint,
            "label": label,
            "arrays": {stem: [shapes[stem], np.dtype(dtype).name] for stem, (_, dtype) in ARRAYS.items()},
            "videos": videos,
        }
        files.write_json(work / "index.json", index, indent=None)
    return packs / name


def _index_field(data: dict, key: str, kind: type, where: str) -> dict | list:
    """``data[key]``, which must be a ``kind`` (dict or list); ValueError naming it otherwise."""
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{where} has no {key!r} {'object' if kind is dict else 'list'}")
    return value


def _rows_entry(video_id: str, entry: object) -> tuple[tuple[int, int], ...]:
    """A video's ``(start, count)`` in the frames, captions and words row spaces (words:
    ``(start, word slots K)``), from its index entry; ValueError naming the video when the entry
    is not an object of three pairs of non-negative integers with a ``meta`` object."""
    if not isinstance(entry, dict) or not isinstance(entry.get("meta"), dict):
        raise ValueError(f"the entry of {video_id!r} is not an object with a meta object")
    rows = tuple(entry.get(space) for space in ("frames", "captions", "words"))
    if not all(
        isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in pair)
        for pair in rows
    ):
        raise ValueError(f"the rows of {video_id!r} are not pairs of non-negative integers")
    return tuple((pair[0], pair[1]) for pair in rows)


class Pack:
    """A pack opened for reading: its index and its arrays memory-mapped (see the module)."""

    def __init__(self, folder: Path, index: dict, arrays: dict[str, np.ndarray]) -> None:
        self.folder = folder
        self.label = str(index.get("label", ""))
        self.videos: dict[str, dict] = index["videos"]
        self._arrays = arrays

    @classmethod
    def open(cls, folder: Path, fingerprint: str) -> Pack:
        """Reads ``index.json``, maps the arrays and checks that they agree with the index.

        Raises:
            UserError: one line naming the pack, when a file is missing, truncated or
                inconsistent, or the pack belongs to another store configuration.
        """
        try:
            index = read_json_object(folder / "index.json", "pack index")
        except FileNotFoundError:
            raise UserError(f"damaged pack {folder}: no index.json") from None
        try:
            if index.get("format") != PACK_FORMAT or index.get("version") != PACK_VERSION:
                raise ValueError(f"index.json is not a stg pack of version {PACK_VERSION}")
            if index.get("fingerprint") != fingerprint:
                raise ValueError("made with another store configuration (fingerprint)")
            shapes = _index_field(index, "arrays", dict, "index.json")
            arrays = {}
            for stem, (_, dtype) in ARRAYS.items():
                shape, dtype_name = _index_field(shapes, stem, list, "index.json's arrays")
                if dtype_name != np.dtype(dtype).name:
                    raise ValueError(f"index.json says {stem}.npy is {dtype_name}")
                arrays[stem] = open_array(folder / f"{stem}.npy", dtype, shape, "index.json")
            totals = {space: len(arrays[stem]) for stem, space in ROWS.items()}
            for video_id, entry in _index_field(index, "videos", dict, "index.json").items():
                (f0, frames), (c0, captions), (w0, slots) = _rows_entry(video_id, entry)
                if (
                    f0 + frames > totals["frames"]
                    or c0 + captions > totals["captions"]
                    or w0 + captions * slots > totals["words"]
                ):
                    raise ValueError(f"the rows of {video_id!r} lie outside the arrays")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"damaged pack {folder}: {error}") from None
        return cls(folder, index, arrays)

    def features(self, video_id: str) -> VideoFeatures:
        """The features of ``video_id``: views into the pack's memory maps (no data read)."""
        entry = self.videos.get(video_id)
        if entry is None:
            raise UserError(f"video {video_id!r} is not in the pack {self.folder}")
        (f0, frames), (c0, captions), (w0, slots) = entry["frames"], entry["captions"], entry["words"]
        arrays = self._arrays
        words = arrays["words"][w0 : w0 + captions * slots]
        fields = {
            "frame_times": arrays["frame_times"][f0 : f0 + frames],
            "global_feats": arrays["global"][f0 : f0 + frames],
            "grid_feats": arrays["grid"][f0 : f0 + frames],
            "caption_times": arrays["caption_times"][c0 : c0 + captions],
            "sentence": arrays["sentence"][c0 : c0 + captions],
            "words": words.reshape(captions, slots, *words.shape[1:]),
            "word_mask": arrays["word_mask"][w0 : w0 + captions * slots].reshape(captions, slots),
        }
        try:
            return VideoFeatures.from_meta(entry["meta"], fields)
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"damaged pack {self.folder}: the entry of {video_id!r} lacks {error}") from None


def valid_pack_name(name: str) -> bool:
    """Whether ``name`` may be a pack folder's name (no path separator, no leading dot)."""
    return bool(_NAME.match(name))
