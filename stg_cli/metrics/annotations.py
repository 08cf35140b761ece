"""Ground-truth annotation loaders for GroundingYouTube, MiningYouTube and YouCook2-Interactions.

Formats read (video ids are YouTube ids, times are integer seconds at 1 fps):

- ``GoundingYouTubeBox.json``: ``{video: {"<second>": {"box": [x1, y1, x2, y2], "step": str}}}``;
- ``box_anno.json``: ``{video: [{"second": int, "box": [x1, y1, x2, y2], "step_name": str}]}``
  (the same boxes as a list);
- ``ground_seg.json`` (refined GroundingYouTube segments) and ``seg.json`` (MiningYouTube, labels
  ``verb_noun``): ``{video: [{"segment": [start, end], "id": int, "sentence": str}]}``; ids are kept
  as given, they are not list positions;
- ``vid2step.json``: ``{video: [step, ...]}``, the query pool of each video, listing the background
  class ``"background"`` as well;
- ``id2wh.json`` (original resolution) and ``id2wh_new.json`` (annotation frame):
  ``{video: [width, height]}``;
- ``final_dataset_annotations.pkl``: ``{video: {second: (x1, y1, x2, y2)}}`` and
  ``final_dataset_segments.pkl``: ``{(video, start, end), ...}`` (YouCook2-Interactions), read with
  ``load_pickle``, which only rebuilds builtin containers and scalars;
- ``youcookii_annotations_trainval.json``: ``{"database": {video: {"annotations":
  [{"segment": [start, end], "id": int, "sentence": str}]}}}``;
- ``distractors.json`` (``stg synth``): ``{video: {"<second>": [{"step": str, "box": [x1, y1,
  x2, y2]}, ...]}}``, the unnarrated actions happening beside the step at each second.

Conventions: boxes are ``(x1, y1, x2, y2)`` floats in pixels of the annotation frame, loaded as
given. Refined GroundingYouTube segments are inclusive integer seconds (``"frames"``, so
``[s, s]`` lasts one second); MiningYouTube and YouCook2 segments are ``[start, end]`` in seconds
(``"continuous"``, so ``[s, s]`` has zero length). These names match the segment conventions of
``stg_cli.metrics.geometry``.

Defects are kept in the data and counted in ``DataDefects``: degenerate boxes (x1 >= x2 or
y1 >= y2; the scorer treats them as zero-area boxes), boxes reaching outside the annotation frame
(a coordinate below 0, x2 > width or y2 > height) and zero-length segments.

A missing file or malformed content raises ``UserError`` naming the file.
"""

from __future__ import annotations

import io
import json
import numbers
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from stg_cli.errors import UserError

BACKGROUND = "background"
EXAMPLES_KEPT = 5
#: the released YouCook2-Interactions files: boxes, segments, and YouCook2's sentences
YOUCOOK_BOXES = "final_dataset_annotations.pkl"
YOUCOOK_SEGMENTS = "final_dataset_segments.pkl"
YOUCOOK_SENTENCES = "youcookii_annotations_trainval.json"
#: YouCook2-Interactions boxes lie in each video's own frame, 640 × 360 for all but 8 videos
#: (whose boxes reach up to 1913 × 1080); the authors' code cuts its canvas to it
YOUCOOK_FRAME = (640, 360)

# The only globals a pickle of builtin containers and scalars needs: every protocol writes
# dicts, lists, tuples, strings and numbers with opcodes of their own, sets through set or
# frozenset (module __builtin__ in protocols 0-2) and, in protocols 0-2, bytes as
# _codecs.encode(str, "latin1"); each result is bounded by the pickle's own size. Constructors
# such as bytes or str are refused: bytes(300_000_000) is 33 bytes of pickle.
_SAFE_GLOBALS = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("_codecs", "encode"),
    }
)

Box4 = tuple[float, float, float, float]


@dataclass(frozen=True)
class FrameBox:
    """The ground-truth box of one annotated second, with its step label (None if unlabeled)."""

    second: int
    box: Box4
    label: str | None


@dataclass(frozen=True)
class Segment:
    """A labeled temporal segment; ``id`` is the source's own id (None where it has none)."""

    video: str
    start: int
    end: int
    label: str | None
    id: int | None


@dataclass(frozen=True)
class DataDefects:
    """Counts of known annotation defects, with up to ``EXAMPLES_KEPT`` example ids of each.

    Box examples read ``"<video>@<second>"``, segment examples ``"<video>#<id>"``.
    """

    degenerate_boxes: int = 0
    boxes_outside_frame: int = 0
    zero_length_segments: int = 0
    degenerate_box_examples: tuple[str, ...] = ()
    outside_box_examples: tuple[str, ...] = ()
    zero_length_segment_examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroundTruth:
    """Everything a scorer needs about one dataset.

    ``frame_sizes`` maps a video to its annotation frame ``(width, height)`` and ``query_pools``
    to its queries (background excluded); both are empty where the dataset has none.
    ``segment_convention`` is ``"frames"`` or ``"continuous"`` (see the module docstring).
    ``default_frame_size`` is the frame assumed where a video's is unknown (reference
    predictions are built in it): GroundingYouTube's 640 × 480, YouCook2-Interactions'
    :data:`YOUCOOK_FRAME`. ``trimmed_segments``, where set, are the segments of the trimmed
    spatial metrics in place of ``segments`` (the authors' ``seg.json`` under
    ``--protocol official``).
    """

    boxes: dict[str, list[FrameBox]]
    segments: dict[str, list[Segment]]
    frame_sizes: dict[str, tuple[int, int]]
    query_pools: dict[str, list[str]]
    defects: DataDefects
    segment_convention: str
    default_frame_size: tuple[int, int] = (640, 480)
    trimmed_segments: dict[str, list[Segment]] | None = None


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UserError(
            f"refusing to unpickle {module}.{name}: only builtin containers and scalars are allowed"
        )


def load_pickle(path: Path | str) -> object:
    """The object in a pickle file, rebuilt only from builtin containers and scalars.

    Any other global (``os.system``, numpy types, classes) raises ``UserError`` naming it, so an
    untrusted file cannot run code.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        return _BuiltinsOnlyUnpickler(io.BytesIO(data)).load()
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path}: not a valid pickle ({error})") from None


def load_grounding_youtube_boxes(path: Path | str) -> dict[str, list[FrameBox]]:
    """Per-second boxes of ``GoundingYouTubeBox.json`` or ``box_anno.json``, sorted by second.

    The format is recognised per video: a mapping ``{"<second>": {"box", "step"}}`` or a list of
    ``{"second", "box", "step_name"}``.
    """
    path = Path(path)
    boxes: dict[str, list[FrameBox]] = {}
    for video, entries in _mapping(_read_json(path), path, "the top level").items():
        if isinstance(entries, Mapping):
            frames = [_frame_box(second, entry, "step", path, video) for second, entry in entries.items()]
        elif isinstance(entries, list):
            frames = [
                _frame_box(_field(entry, "second", path, video), entry, "step_name", path, video)
                for entry in entries
            ]
        else:
            raise UserError(f"{path}: video {video} must map seconds to boxes or list boxes")
        seconds = [frame.second for frame in frames]
        if len(set(seconds)) != len(seconds):
            raise UserError(f"{path}: video {video} has two boxes for the same second")
        boxes[video] = sorted(frames, key=lambda frame: frame.second)
    return boxes


def load_ground_seg(path: Path | str) -> dict[str, list[Segment]]:
    """Refined GroundingYouTube segments (``ground_seg.json``): inclusive integer seconds."""
    return _load_segment_json(path)


def load_mining_youtube_segments(path: Path | str) -> dict[str, list[Segment]]:
    """MiningYouTube temporal ground truth (``seg.json``): ``verb_noun`` labels, ``[start, end]``
    in seconds; zero-length segments (start == end) are kept."""
    return _load_segment_json(path)


def load_vid2step(path: Path | str) -> dict[str, list[str]]:
    """The query pool of each video (``vid2step.json``) in file order.

    ``"background"`` is the background class, what a frame is when no step happens, not a query,
    so it is left out of the pools.
    """
    path = Path(path)
    pools: dict[str, list[str]] = {}
    for video, steps in _mapping(_read_json(path), path, "the top level").items():
        if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
            raise UserError(f"{path}: video {video} must list its steps as strings")
        pools[video] = [step for step in steps if step != BACKGROUND]
    return pools


def load_distractors(path: Path | str) -> dict[str, dict[int, list[FrameBox]]]:
    """Concurrent distractor actions of ``distractors.json``: video → second → one
    :class:`FrameBox` per distractor (its step and box, in the file's order; a second may list
    none)."""
    path = Path(path)
    distractors: dict[str, dict[int, list[FrameBox]]] = {}
    for video, seconds in _mapping(_read_json(path), path, "the top level").items():
        per_second: dict[int, list[FrameBox]] = {}
        for second, entries in _mapping(seconds, path, f"video {video}").items():
            if not isinstance(entries, list):
                raise UserError(f"{path}: video {video} must list the distractors of each second")
            per_second[_second(second, path, video)] = [
                _frame_box(second, entry, "step", path, video) for entry in entries
            ]
        distractors[video] = dict(sorted(per_second.items()))
    return distractors


def load_frame_sizes(path: Path | str) -> dict[str, tuple[int, int]]:
    """``(width, height)`` per video from ``id2wh.json`` or ``id2wh_new.json``."""
    path = Path(path)
    sizes: dict[str, tuple[int, int]] = {}
    for video, size in _mapping(_read_json(path), path, "the top level").items():
        is_pair = isinstance(size, list) and len(size) == 2
        if not (is_pair and all(_is_int(v) and v > 0 for v in size)):
            raise UserError(f"{path}: video {video} must have [width, height] as positive integers")
        sizes[video] = (size[0], size[1])
    return sizes


def load_youcook_interactions(
    annotations_path: Path | str, segments_path: Path | str, youcook2_path: Path | str | None = None
) -> GroundTruth:
    """YouCook2-Interactions boxes and segments, read through ``load_pickle``.

    The pickles carry no step labels: with ``youcook2_path`` (the YouCook2 train/val json) each
    segment takes the sentence and id of the YouCook2 annotation with the same ``[start, end]``;
    without it, labels and ids are None. Box labels are None; frame sizes are unknown (boxes are
    in each video's own frame; :data:`YOUCOOK_FRAME` is assumed).
    """
    annotations_path, segments_path = Path(annotations_path), Path(segments_path)
    boxes: dict[str, list[FrameBox]] = {}
    per_video = _mapping(load_pickle(annotations_path), annotations_path, "the top level")
    for video, per_second in per_video.items():
        per_second = _mapping(per_second, annotations_path, f"video {video}")
        boxes[video] = sorted(
            (
                FrameBox(_second(second, annotations_path, video), _box(box, annotations_path, video), None)
                for second, box in per_second.items()
            ),
            key=lambda frame: frame.second,
        )
    triples = load_pickle(segments_path)
    if not isinstance(triples, (set, frozenset, list, tuple)) or not all(
        isinstance(triple, tuple)
        and len(triple) == 3
        and isinstance(triple[0], str)
        and _is_int(triple[1])
        and _is_int(triple[2])
        for triple in triples
    ):
        raise UserError(f"{segments_path}: expected a set of (video, start, end) tuples")
    labels = _youcook2_labels(Path(youcook2_path)) if youcook2_path is not None else {}
    segments: dict[str, list[Segment]] = {}
    for video, start, end in sorted(triples):
        if start > end:
            raise UserError(f"{segments_path}: video {video} has a segment with start > end")
        label, segment_id = labels.get((video, start, end), (None, None))
        segments.setdefault(video, []).append(Segment(video, start, end, label, segment_id))
    truth = _ground_truth(boxes, segments, {}, {}, "continuous")
    return replace(truth, default_frame_size=YOUCOOK_FRAME)


def load_grounding_youtube(directory: Path | str, segments: str = "refined") -> GroundTruth:
    """The GroundingYouTube folder as one ``GroundTruth``.

    Boxes from ``GoundingYouTubeBox.json``, annotation frame sizes from ``id2wh_new.json``, query
    pools from ``vid2step.json``, and segments from ``ground_seg.json`` (``segments="refined"``,
    inclusive seconds) or ``seg.json`` (``segments="mining"``, the MiningYouTube ground truth).
    Data is kept as-is; degenerate, out-of-frame and zero-length entries are counted in
    ``defects``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"annotation folder not found: {directory}")
    if segments == "refined":
        segment_file, convention = "ground_seg.json", "frames"
    elif segments == "mining":
        segment_file, convention = "seg.json", "continuous"
    else:
        raise UserError(f"segments must be 'refined' or 'mining', got {segments!r}")
    return _ground_truth(
        load_grounding_youtube_boxes(directory / "GoundingYouTubeBox.json"),
        _load_segment_json(directory / segment_file),
        load_frame_sizes(directory / "id2wh_new.json"),
        load_vid2step(directory / "vid2step.json"),
        convention,
    )


def find_defects(
    boxes: Mapping[str, list[FrameBox]],
    segments: Mapping[str, list[Segment]],
    frame_sizes: Mapping[str, tuple[int, int]],
    segment_convention: str,
) -> DataDefects:
    """Counts degenerate boxes, boxes outside their video's frame (only where the size is known)
    and, under the ``"continuous"`` convention, zero-length segments."""
    degenerate, outside, zero_length = [], [], []
    for video, frames in boxes.items():
        size = frame_sizes.get(video)
        for frame in frames:
            x1, y1, x2, y2 = frame.box
            where = f"{video}@{frame.second}"
            if x1 >= x2 or y1 >= y2:
                degenerate.append(where)
            if size is not None and (min(frame.box) < 0 or x2 > size[0] or y2 > size[1]):
                outside.append(where)
    if segment_convention == "continuous":
        zero_length = [
            f"{video}#{segment.id}"
            for video, video_segments in segments.items()
            for segment in video_segments
            if segment.start == segment.end
        ]
    return DataDefects(
        degenerate_boxes=len(degenerate),
        boxes_outside_frame=len(outside),
        zero_length_segments=len(zero_length),
        degenerate_box_examples=tuple(degenerate[:EXAMPLES_KEPT]),
        outside_box_examples=tuple(outside[:EXAMPLES_KEPT]),
        zero_length_segment_examples=tuple(zero_length[:EXAMPLES_KEPT]),
    )


def _ground_truth(
    boxes: dict[str, list[FrameBox]],
    segments: dict[str, list[Segment]],
    frame_sizes: dict[str, tuple[int, int]],
    query_pools: dict[str, list[str]],
    segment_convention: str,
) -> GroundTruth:
    defects = find_defects(boxes, segments, frame_sizes, segment_convention)
    return GroundTruth(boxes, segments, frame_sizes, query_pools, defects, segment_convention)


def _load_segment_json(path: Path | str) -> dict[str, list[Segment]]:
    path = Path(path)
    segments: dict[str, list[Segment]] = {}
    for video, entries in _mapping(_read_json(path), path, "the top level").items():
        if not isinstance(entries, list):
            raise UserError(f"{path}: video {video} must list its segments")
        segments[video] = [_segment(video, entry, path) for entry in entries]
    return segments


def _segment(video: str, entry: object, path: Path) -> Segment:
    bounds = _field(entry, "segment", path, video)
    segment_id = _field(entry, "id", path, video)
    label = _field(entry, "sentence", path, video)
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_int(v) for v in bounds)):
        raise UserError(f"{path}: video {video} has a segment that is not [start, end] in seconds")
    if bounds[0] > bounds[1] or bounds[0] < 0:
        raise UserError(f"{path}: video {video} has a segment {bounds} with start > end or start < 0")
    if not _is_int(segment_id) or not isinstance(label, str):
        raise UserError(f"{path}: video {video} has a segment without an integer id and a sentence")
    return Segment(video, bounds[0], bounds[1], label, segment_id)


def _youcook2_labels(path: Path) -> dict[tuple[str, int, int], tuple[str, int]]:
    database = _field(_read_json(path), "database", path, "the top level")
    labels: dict[tuple[str, int, int], tuple[str, int]] = {}
    for video, record in _mapping(database, path, "database").items():
        for entry in _field(record, "annotations", path, video):
            segment = _segment(video, entry, path)
            labels[(video, segment.start, segment.end)] = (segment.label, segment.id)
    return labels


def _frame_box(second: object, entry: object, label_key: str, path: Path, video: str) -> FrameBox:
    label = _field(entry, label_key, path, video)
    if not isinstance(label, str):
        raise UserError(f"{path}: video {video} has a box whose {label_key!r} is not a string")
    box = _box(_field(entry, "box", path, video), path, video)
    return FrameBox(_second(second, path, video), box, label)


def _second(value: object, path: Path, video: str) -> int:
    # GoundingYouTubeBox.json keys its seconds as strings, the other files as integers.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if _is_int(value) and value >= 0:
        return value
    raise UserError(f"{path}: video {video} has a box at second {value!r}, not a whole second")


def _box(value: object, path: Path, video: str) -> Box4:
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    ):
        raise UserError(f"{path}: video {video} has a box {value!r} that is not [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


def _field(entry: object, key: str, path: Path, video: str) -> object:
    if not isinstance(entry, Mapping) or key not in entry:
        raise UserError(f"{path}: an entry of {video} has no {key!r}")
    return entry[key]


def _mapping(value: object, path: Path, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise UserError(f"{path}: {where} must be a mapping, got {type(value).__name__}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"annotation file not found: {path}")
    return path.read_bytes()


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_bytes(path))
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None
