"""What the store holds for one video, whatever the layout: its arrays' names, dtypes and shapes.

Both layouts of :mod:`stg_cli.features.store` (a folder per video, or packs of many videos,
:mod:`stg_cli.features.packs`) store the same seven arrays per video and hand them out as a
:class:`VideoFeatures`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stg_cli.errors import UserError

FEATURE_DTYPE = np.float16


@dataclass
class VideoFeatures:
    """The stored features of one video (arrays are memory-mapped, read-only).

    frame_times [U] float32 seconds (sampling times k / fps); global_feats [U, Dv] float16;
    grid_feats [U, N, Dv] float16 (cells row-major over the gh × gw grid of the whole frame);
    caption_times [C, 2] float32 (start, end); texts [C] normalised caption text;
    sentence [C, Dw] float16; words [C, K, Dw] float16; word_mask [C, K] bool.
    width/height are the display size of the original video, duration in seconds.
    """

    video_id: str
    width: int
    height: int
    duration: float
    frame_times: np.ndarray
    global_feats: np.ndarray
    grid_feats: np.ndarray
    caption_times: np.ndarray
    texts: list[str]
    sentence: np.ndarray
    words: np.ndarray
    word_mask: np.ndarray
    meta: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_meta(cls, meta: dict, arrays: dict[str, np.ndarray]) -> VideoFeatures:
        """A video from its meta.json object and its arrays keyed by :data:`ARRAYS`' field names."""
        return cls(
            video_id=meta["video_id"],
            width=int(meta["width"]),
            height=int(meta["height"]),
            duration=float(meta["duration"]),
            texts=list(meta["texts"]),
            meta=meta,
            **arrays,
        )


ARRAYS = {  # file stem → (VideoFeatures field, dtype on disk)
    "frame_times": ("frame_times", np.float32),
    "global": ("global_feats", FEATURE_DTYPE),
    "grid": ("grid_feats", FEATURE_DTYPE),
    "caption_times": ("caption_times", np.float32),
    "sentence": ("sentence", FEATURE_DTYPE),
    "words": ("words", FEATURE_DTYPE),
    "word_mask": ("word_mask", np.bool_),
}


def open_array(path: Path, dtype: np.dtype | type, shape: Sequence[int], source: str) -> np.ndarray:
    """The ``.npy`` file ``path`` memory-mapped read-only, once its header and its size agree
    with ``dtype`` and ``shape`` (what ``source``, e.g. ``meta.json``, says it holds).

    Only the header is read. Raises OSError when the file cannot be opened, ValueError (one line
    naming the file) when it is not an ``.npy`` file, holds another dtype or shape, or is
    shorter or longer than that shape needs (a file cut short by a crash of the machine).
    """
    expected_dtype, expected = np.dtype(dtype), tuple(int(n) for n in shape)
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                found, fortran, found_dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                found, fortran, found_dtype = np.lib.format.read_array_header_2_0(handle)
        except (ValueError, EOFError) as error:
            raise ValueError(f"{path.name} is not a readable .npy file ({error})") from None
        offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    if found_dtype != expected_dtype or tuple(found) != expected or fortran:
        raise ValueError(
            f"{path.name} is {found_dtype.name} {list(found)}, {source} says {expected_dtype.name} "
            f"{list(expected)}"
        )
    needed = offset + math.prod(expected) * expected_dtype.itemsize
    if size != needed:
        raise ValueError(
            f"{path.name} holds {size} bytes, its shape {list(expected)} needs {needed} "
            "(cut short by a crash?)"
        )
    return np.load(path, mmap_mode="r", allow_pickle=False)


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; FileNotFoundError when it is missing, UserError (one line
    naming ``what``) when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise UserError(f"unreadable {what} {path}: {error}") from None
    except RecursionError:
        raise UserError(f"unreadable {what} {path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise UserError(f"unreadable {what} {path}: not a JSON object")
    return data


def to_storage(name: str, array: np.ndarray, dtype) -> np.ndarray:
    """``array`` as stored: C-contiguous ``dtype``, float16 features clipped to its range.

    Raises ValueError for non-finite features."""
    array = np.asarray(array)
    if dtype == FEATURE_DTYPE:
        if not np.isfinite(array).all():
            raise ValueError(f"non-finite values in the {name} features")
        limit = float(np.finfo(FEATURE_DTYPE).max)
        array = np.clip(array, -limit, limit)
    return np.ascontiguousarray(array, dtype=dtype)
