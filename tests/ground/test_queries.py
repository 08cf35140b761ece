"""Query files: text lines and per-video pools."""

from __future__ import annotations

import json

import pytest

from stg_cli.errors import UserError
from stg_cli.ground.queries import load_queries, parse_query_lines


def test_text_file_skips_blanks_comments_and_duplicates(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("# steps\ncrack egg\n\n  pour milk  \ncrack egg\n   # indented comment\nwhisk\n")
    queries = load_queries(path)
    assert queries.for_video("any") == ["crack egg", "pour milk", "whisk"]
    assert queries.all_queries == ["crack egg", "pour milk", "whisk"]


def test_hash_inside_a_query_is_kept():
    assert parse_query_lines("add #2 pencil\n") == ["add #2 pencil"]


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n  \n"])
def test_empty_text_file_is_a_user_error(tmp_path, content):
    path = tmp_path / "q.txt"
    path.write_text(content)
    with pytest.raises(UserError, match="no queries"):
        load_queries(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_queries(tmp_path / "nope.txt")


def test_vid2step_pools_drop_background(tmp_path):
    path = tmp_path / "vid2step.json"
    path.write_text(
        json.dumps(
            {"v1": ["crack eggs", "background", "pour eggs", "crack eggs"], "v2": ["fold it", "background"]}
        )
    )
    queries = load_queries(path)
    assert queries.for_video("v1") == ["crack eggs", "pour eggs"]
    assert queries.for_video("v2") == ["fold it"]
    assert queries.all_queries == ["crack eggs", "pour eggs", "fold it"]
    with pytest.raises(UserError, match="no queries for video 'v3'"):
        queries.for_video("v3")


def test_vid2step_with_only_background_is_a_user_error(tmp_path):
    path = tmp_path / "vid2step.json"
    path.write_text(json.dumps({"v1": ["background"]}))
    with pytest.raises(UserError, match="no queries"):
        load_queries(path)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"v": "crack"}', '{"v": [1]}'])
def test_malformed_json_is_a_user_error(tmp_path, content):
    path = tmp_path / "pools.json"
    path.write_text(content)
    with pytest.raises(UserError, match="pools.json"):
        load_queries(path)


def test_real_vid2step_loads():
    from pathlib import Path

    path = Path("/work/shared/data/groundingyoutube/vid2step.json")
    if not path.exists():
        pytest.skip("real annotations not present")
    queries = load_queries(path)
    pool = queries.for_video("-1okAudsnAc")
    assert "crack eggs" in pool and "background" not in pool


def test_given_queries_alone_are_the_pool_of_every_video():
    from stg_cli.ground.queries import gather_queries

    queries = gather_queries(None, [" cut tomato ", "pour milk", "cut tomato", ""])
    assert queries.shared == ("cut tomato", "pour milk") and queries.source == "--query"
    assert queries.for_video("any") == ["cut tomato", "pour milk"]


def test_given_queries_are_added_after_a_file_s(tmp_path):
    from stg_cli.ground.queries import gather_queries

    text = tmp_path / "q.txt"
    text.write_text("crack egg\npour milk\n")
    assert gather_queries(text, ["pour milk", "stir"]).shared == ("crack egg", "pour milk", "stir")
    pools = tmp_path / "vid2step.json"
    pools.write_text('{"a": ["crack egg", "background"], "b": ["stir"]}')
    combined = gather_queries(pools, ["stir", "fry"])
    assert combined.for_video("a") == ["crack egg", "stir", "fry"]
    assert combined.for_video("b") == ["stir", "fry"]


def test_no_query_at_all_is_a_user_error():
    from stg_cli.errors import UserError
    from stg_cli.ground.queries import gather_queries

    with pytest.raises(UserError, match="--query TEXT"):
        gather_queries(None, ["  "])


def test_segment_files_give_each_video_its_annotated_steps(tmp_path):
    path = tmp_path / "seg.json"
    path.write_text(
        '{"a": [{"segment": [30, 31], "id": 1, "sentence": "add_butter"},'
        ' {"segment": [19, 23], "id": 0, "sentence": "beat_egg"},'
        ' {"segment": [47, 61], "id": 2, "sentence": "add_butter"}]}'
    )
    assert load_queries(path).for_video("a") == ["beat egg", "add butter"]
    path.write_text('{"a": [{"segment": [1], "sentence": "x"}]}')
    with pytest.raises(UserError, match="segment 0 must be"):
        load_queries(path)


def test_real_seg_json_pools_cover_every_step():
    from pathlib import Path

    from stg_cli.metrics.score import load_ground_truth
    from stg_cli.text.normalize import normalize_text

    path = Path("/work/shared/data/groundingyoutube/seg.json")
    if not path.exists():
        pytest.skip("real annotations not present")
    queries = load_queries(path)
    truth = load_ground_truth([path], "miningyoutube")
    missing = sum(
        normalize_text(segment.label) not in {normalize_text(q) for q in queries.for_video(video)}
        for video, segments in truth.segments.items()
        for segment in segments
    )
    assert missing == 0
    pools = load_queries(path.parent / "vid2step.json")
    missing_from_vid2step = sum(
        normalize_text(segment.label) not in {normalize_text(q) for q in pools.for_video(video)}
        for video, segments in truth.segments.items()
        for segment in segments
    )
    assert missing_from_vid2step == 1_835
