"""Annotation loaders on the released annotation files, and the restricted unpickler."""

import os
import pickle
from pathlib import Path

import pytest

from stg_cli.errors import UserError
from stg_cli.metrics import (
    is_degenerate,
    load_frame_sizes,
    load_ground_seg,
    load_grounding_youtube,
    load_grounding_youtube_boxes,
    load_mining_youtube_segments,
    load_pickle,
    load_vid2step,
    load_youcook_interactions,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GROUNDING = DATA / "groundingyoutube"
YOUCOOK = DATA / "youcook2-interactions"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the released annotation files are not at {DATA}")


@pytest.fixture(scope="module")
def grounding():
    return load_grounding_youtube(GROUNDING)


@needs_data
def test_grounding_youtube_counts_and_known_defects(grounding):
    boxes = [frame.box for frames in grounding.boxes.values() for frame in frames]
    assert len(grounding.boxes) == 250
    assert len(boxes) == 17_316
    assert sum(box[2] == 480 for box in boxes) == 5_119
    assert max(box[3] for box in boxes) == 629
    assert sum(is_degenerate(box) for box in boxes) == 18
    assert all(box[0] >= box[2] and box[1] < box[3] for box in boxes if is_degenerate(box))
    defects = grounding.defects
    assert defects.degenerate_boxes == 18
    assert defects.boxes_outside_frame == 2_107
    assert defects.zero_length_segments == 0
    assert "-q5MfvBP9RE@125" in defects.degenerate_box_examples


@needs_data
def test_degenerate_boxes_are_kept_as_given(grounding):
    frame = next(f for f in grounding.boxes["-q5MfvBP9RE"] if f.second == 125)
    assert frame.box == (482.0, 229.0, 480.0, 461.0)
    assert frame.label == "toast bread"


@needs_data
def test_both_box_formats_load_the_same_boxes(grounding):
    assert load_grounding_youtube_boxes(GROUNDING / "box_anno.json") == grounding.boxes
    seconds = [frame.second for frame in grounding.boxes["-1okAudsnAc"]]
    assert seconds == sorted(seconds)


@needs_data
def test_frame_sizes_have_one_portrait_video(grounding):
    assert sorted(set(grounding.frame_sizes.values())) == [(480, 640), (640, 480)]
    assert grounding.frame_sizes["7mabCfrc90Y"] == (480, 640)
    original = load_frame_sizes(GROUNDING / "id2wh.json")
    assert original["tMBdem-e9Fk"] == (360, 360)


@needs_data
def test_ground_seg_keeps_ids_that_are_not_positions(grounding):
    segments = load_ground_seg(GROUNDING / "ground_seg.json")
    assert segments == grounding.segments
    assert grounding.segment_convention == "frames"
    assert sum(len(v) for v in segments.values()) == 5_018
    moved = segments["3PJTVE554D8"][24]
    assert (moved.id, moved.start, moved.end, moved.label) == (25, 199, 200, "flip chapati")
    assert sum(s.id != i for v in segments.values() for i, s in enumerate(v)) == 948


@needs_data
def test_mining_youtube_segments_keep_zero_length_ones():
    segments = load_mining_youtube_segments(GROUNDING / "seg.json")
    flat = [s for v in segments.values() for s in v]
    assert len(segments) == 250
    assert len(flat) == 5_132
    assert sum(s.start == s.end for s in flat) == 41
    assert all("_" in s.label and " " not in s.label for s in flat)
    mining = load_grounding_youtube(GROUNDING, segments="mining")
    assert mining.segment_convention == "continuous"
    assert mining.defects.zero_length_segments == 41
    assert "aRDICA9x9vg#1" in mining.defects.zero_length_segment_examples


@needs_data
def test_vid2step_pools_leave_out_background(grounding):
    pools = load_vid2step(GROUNDING / "vid2step.json")
    assert pools == grounding.query_pools
    assert len(pools) == 250
    assert all("background" not in pool for pool in pools.values())
    assert pools["-1okAudsnAc"][:2] == ["crack eggs", "pour egg whites"]
    assert pools["-1okAudsnAc"][-1] == "add salsa sauce"


@needs_data
def test_youcook_interactions_load_through_the_restricted_unpickler():
    truth = load_youcook_interactions(
        YOUCOOK / "final_dataset_annotations.pkl",
        YOUCOOK / "final_dataset_segments.pkl",
        YOUCOOK / "youcookii_annotations_trainval.json",
    )
    assert len(truth.boxes) == 92
    assert sum(len(v) for v in truth.boxes.values()) == 2_570
    assert sum(len(v) for v in truth.segments.values()) == 254
    assert len(truth.segments) == 91
    assert all(s.label is not None for v in truth.segments.values() for s in v)
    assert truth.defects.degenerate_boxes == 1
    assert truth.boxes["iqcnbNqVc7U"][0].box == (334.0, 247.0, 415.0, 298.0)
    assert isinstance(load_pickle(YOUCOOK / "final_dataset_segments.pkl"), set)


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unpickler_refuses_os_system(tmp_path):
    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(pickle.dumps(_RunsShell()))
    with pytest.raises(UserError, match=r"crafted\.pkl.*refusing to unpickle \w+\.system"):
        load_pickle(crafted)


def test_unpickler_refuses_classes_outside_builtins(tmp_path):
    path = tmp_path / "path.pkl"
    path.write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(UserError, match="refusing to unpickle pathlib"):
        load_pickle(path)


def test_unpickler_refuses_constructors_that_allocate(tmp_path):
    crafted = tmp_path / "big.pkl"  # builtins.bytes(300_000_000): 300 MB from 33 bytes
    crafted.write_bytes(b"\x80\x04cbuiltins\nbytes\nJ\x00\xa3\xe1\x11\x85R.")
    with pytest.raises(UserError, match=r"refusing to unpickle builtins\.bytes"):
        load_pickle(crafted)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unpickler_accepts_builtin_containers(tmp_path, protocol):
    value = {"a": [1, 2.5, None, True], "b": {("v", 1, 2)}, "c": frozenset({b"x"}), "d": "é"}
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(value, protocol=protocol))
    assert load_pickle(plain) == value


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "seg.json"
    with pytest.raises(UserError, match=r"not found: .*seg\.json"):
        load_mining_youtube_segments(missing)


def test_malformed_json_names_the_file(tmp_path):
    broken = tmp_path / "ground_seg.json"
    broken.write_text('{"vid": [{"segment": [1, 2],')
    with pytest.raises(UserError, match=r"ground_seg\.json: not valid JSON"):
        load_ground_seg(broken)


def test_malformed_content_names_the_file(tmp_path):
    reversed_segment = tmp_path / "seg.json"
    reversed_segment.write_text('{"vid": [{"segment": [5, 2], "id": 0, "sentence": "add_salt"}]}')
    with pytest.raises(UserError, match=r"seg\.json: video vid has a segment \[5, 2\]"):
        load_mining_youtube_segments(reversed_segment)
    bad_box = tmp_path / "box_anno.json"
    bad_box.write_text('{"vid": [{"second": 1, "box": [1, 2, 3], "step_name": "x"}]}')
    with pytest.raises(UserError, match=r"box_anno\.json: video vid has a box"):
        load_grounding_youtube_boxes(bad_box)


def test_missing_folder_and_unknown_segment_source(tmp_path):
    with pytest.raises(UserError, match="folder not found"):
        load_grounding_youtube(tmp_path / "absent")
    with pytest.raises(UserError, match="segments must be"):
        load_grounding_youtube(tmp_path, segments="other")
