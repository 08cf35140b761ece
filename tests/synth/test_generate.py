"""stg_cli.synth: the benchmark loads through the real loaders, is deterministic, and its boxes
hold the rendered action pixels."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from stg_cli.errors import UserError
from stg_cli.metrics.annotations import load_grounding_youtube, load_grounding_youtube_boxes
from stg_cli.synth import SynthConfig, VideoRenderer, generate, plan_all
from stg_cli.synth.annotations import ground_truth_files, scale_box
from stg_cli.synth.config import DIFFICULTIES

TINY = SynthConfig.quick(
    train_videos=1,
    test_videos=2,
    seed=3,
    min_duration=14,
    max_duration=18,
    width=128,
    height=96,
    fps=2,
    min_instances=2,
    max_instances=3,
    min_action=3,
    max_action=4,
    min_gap=1,
    corpus_sentences=200,
)

ANNOTATION_FILES = (
    "GoundingYouTubeBox.json",
    "box_anno.json",
    "ground_seg.json",
    "seg.json",
    "vid2step.json",
    "id2wh.json",
    "id2wh_new.json",
    "distractors.json",
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    generate(out, TINY)
    return out


def decode_all(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def manifest(out: Path) -> dict:
    return json.loads((out / "synth.json").read_text())


def test_layout(bench):
    info = manifest(bench)
    for split in ("train", "test"):
        ids = [v["video"] for v in info["videos"] if v["split"] == split]
        assert sorted(p.stem for p in (bench / split / "videos").glob("*.mp4")) == sorted(ids)
        assert sorted(p.stem for p in (bench / split / "captions").glob("*.csv")) == sorted(ids)
        assert sorted(json.loads((bench / split / "captions.json").read_text())) == sorted(ids)
    for name in ANNOTATION_FILES:
        assert (bench / "test" / "annotations" / name).is_file()
    assert not list(bench.parent.glob(".bench.*")), "no temporary folder left behind"


def test_annotations_load_with_exact_counts(bench):
    info = manifest(bench)
    tests = [v for v in info["videos"] if v["split"] == "test"]
    truth = load_grounding_youtube(bench / "test" / "annotations")
    assert set(truth.boxes) == {v["video"] for v in tests}
    for video in tests:
        vid = video["video"]
        seconds = [s for a in video["actions"] for s in range(a["start"], a["end"] + 1)]
        assert [b.second for b in truth.boxes[vid]] == seconds
        labels = {s: a["query"] for a in video["actions"] for s in range(a["start"], a["end"] + 1)}
        assert all(b.label == labels[b.second] for b in truth.boxes[vid])
        assert [(s.start, s.end, s.label, s.id) for s in truth.segments[vid]] == [
            (a["start"], a["end"], a["query"], a["id"]) for a in video["actions"]
        ]
        assert truth.frame_sizes[vid] == (640, 480)
        own = list(dict.fromkeys(a["query"] for a in video["actions"]))
        assert truth.query_pools[vid][: len(own)] == own
    assert truth.defects.degenerate_boxes == 0
    assert truth.defects.boxes_outside_frame == 0
    mining = load_grounding_youtube(bench / "test" / "annotations", segments="mining")
    for video in tests:
        entries = mining.segments[video["video"]]
        assert [s.id for s in entries] == list(range(len(entries)))
        assert len(entries) == len(video["actions"]) + len(video["mentions"])
        shown = [s for s in entries if s.start < s.end]
        assert [(s.start, s.end, s.label) for s in shown] == [
            (a["start"], a["end"] + 1, a["label"]) for a in video["actions"]
        ]
    boxes_list = load_grounding_youtube_boxes(bench / "test" / "annotations" / "box_anno.json")
    assert boxes_list == truth.boxes
    assert info["counts"]["boxes"] == sum(len(b) for b in truth.boxes.values())
    queries = (bench / "test" / "queries.txt").read_text().splitlines()
    assert sorted(queries) == sorted({a["query"] for v in tests for a in v["actions"]})


def test_file_layout_matches_the_released_files(bench):
    annotations = bench / "test" / "annotations"
    # The released files: compact JSON without a final newline, except box_anno.json (one
    # newline) and id2wh*.json (indented by 4).
    assert not (annotations / "GoundingYouTubeBox.json").read_text().endswith("\n")
    assert (annotations / "box_anno.json").read_text().endswith("}]}\n")
    assert (annotations / "id2wh_new.json").read_text().startswith('{\n    "')
    first = json.loads((annotations / "GoundingYouTubeBox.json").read_text())
    entry = next(iter(next(iter(first.values())).values()))
    assert set(entry) == {"box", "step"} and all(isinstance(v, int) for v in entry["box"])
    pools = json.loads((annotations / "vid2step.json").read_text())
    assert all(pool[-1] == "background" for pool in pools.values())


def test_same_seed_same_files_and_frames(bench, tmp_path):
    again = tmp_path / "again"
    generate(again, TINY)
    for name in ANNOTATION_FILES:
        path = Path("test/annotations") / name
        assert (bench / path).read_bytes() == (again / path).read_bytes(), name
    for path in ("synth.json", "train/captions.json", "test/captions.json", "train/corpus.txt"):
        assert (bench / path).read_bytes() == (again / path).read_bytes(), path
    for video in sorted((bench / "test" / "videos").glob("*.mp4")):
        copy = again / "test" / "videos" / video.name
        np.testing.assert_array_equal(decode_all(video), decode_all(copy))
    other = tmp_path / "other"
    generate(other, replace(TINY, seed=4, train_videos=0))
    assert (other / "test/annotations/ground_seg.json").read_bytes() != (
        bench / "test/annotations/ground_seg.json"
    ).read_bytes()


def test_videos_decode_with_the_stated_frames_and_size(bench):
    info = manifest(bench)
    for video in info["videos"]:
        frames = decode_all(bench / video["split"] / "videos" / f"{video['video']}.mp4")
        assert frames.shape == (video["duration"] * TINY.fps, TINY.height, TINY.width, 3)
        assert video["frames"] == frames.shape[0]


def changed_pixels(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.any(first != second, axis=-1)


def box_mask(box, shape) -> np.ndarray:
    x1, y1, x2, y2 = box
    inside = np.zeros(shape, dtype=bool)
    inside[y1 : y2 + 1, x1 : x2 + 1] = True
    return inside


def test_boxes_hold_the_rendered_action(bench):
    _, test = plan_all(TINY)
    truth = load_grounding_youtube(bench / "test" / "annotations")
    checked = 0
    for plan in test:
        renderer = VideoRenderer(plan, TINY.difficulty_settings)
        frames = decode_all(bench / "test" / "videos" / f"{plan.video_id}.mp4")
        for box in truth.boxes[plan.video_id]:
            index = box.second * TINY.fps
            own = renderer.box(box.second)
            assert scale_box(own, (TINY.width, TINY.height), (640, 480)) == list(map(int, box.box))
            # Every pixel that the step changes (through the camera's resampling) is in its box.
            rendered = renderer.frame(index)
            plain = renderer.frame(index, with_action=False)
            inside = box_mask(own, (TINY.height, TINY.width))
            changed = changed_pixels(rendered, plain)
            assert changed.any() and not changed[~inside].any()
            assert not renderer.action_mask(index)[~inside].any()
            # The decoded frame shows the signature inside the box.
            decoded = frames[index].astype(np.int16)
            strong = np.abs(decoded - plain.astype(np.int16)).max(axis=-1) > 60
            assert strong[inside].sum() >= 0.05 * inside.sum()
            # h264 at crf 23 keeps the frame within a few levels on average.
            assert np.abs(decoded - rendered.astype(np.int16)).mean() < 12
            checked += 1
    assert checked == sum(len(b) for b in truth.boxes.values()) > 0


def test_distractor_boxes_hold_the_rendered_distractors(bench):
    _, test = plan_all(TINY)
    written = json.loads((bench / "test" / "annotations" / "distractors.json").read_text())
    assert set(written) == {plan.video_id for plan in test}
    checked = 0
    for plan in test:
        renderer = VideoRenderer(plan, TINY.difficulty_settings)
        steps = {a.query for a in plan.actions}
        for second in range(plan.duration):
            index = second * TINY.fps
            entries = written[plan.video_id].get(str(second), [])
            pairs = renderer.distractor_boxes(second)
            assert [e["step"] for e in entries] == [d.query for d, _ in pairs]
            rendered = renderer.frame(index)
            tracks = [d.track for d, _ in pairs]
            for (distractor, box), entry in zip(pairs, entries):
                assert distractor.query not in steps
                assert entry["box"] == scale_box(box, (TINY.width, TINY.height), (640, 480))
                others = [t for t in tracks if t != distractor.track]
                changed = changed_pixels(rendered, renderer.frame(index, distractor_tracks=others))
                inside = box_mask(box, (TINY.height, TINY.width))
                assert changed.any() and not changed[~inside].any()
                checked += 1
    assert checked > 0


def test_every_annotated_second_has_two_other_changing_regions():
    config = replace(TINY, train_videos=4, test_videos=4)
    for plan in sum(plan_all(config), []):
        for action in plan.actions:
            for second in range(action.start, action.end + 1):
                others = plan.distractors_at(second)
                assert action.target not in {d.target for d in others}
                assert len({d.target for d in others}) == len(others)
                assert len(others) + len(plan.idle_at(second + 0.5)) >= 2
        assert not plan.camera.still


def test_no_distractors_is_the_v1_world_with_the_same_script():
    v2_train, v2_test = plan_all(TINY)
    v1_train, v1_test = plan_all(replace(TINY, distractors=0))
    for old, new in zip(v1_train + v1_test, v2_train + v2_test):
        assert (old.actions, old.captions, old.objects) == (new.actions, new.captions, new.objects)
        assert old.distractors == () and old.idle == () and old.camera.still
        renderer = VideoRenderer(old, replace(TINY, distractors=0).difficulty_settings)
        assert renderer.margin == math.ceil(renderer.amplitude) + 1


def test_background_seconds_show_no_action(bench):
    _, test = plan_all(TINY)
    plan = test[0]
    renderer = VideoRenderer(plan, TINY.difficulty_settings)
    annotated = {s for a in plan.actions for s in range(a.start, a.end + 1)}
    background = [s for s in range(plan.duration) if s not in annotated]
    assert background
    for second in background:
        index = second * plan.fps
        assert not renderer.action_mask(index).any()
        np.testing.assert_array_equal(renderer.frame(index), renderer.frame(index, False))


def test_narration_offsets_stay_in_the_documented_range(bench):
    info = manifest(bench)
    limit = info["difficulty"]["narration_offset_range"][1]
    assert limit == DIFFICULTIES[TINY.difficulty].max_offset
    narrated = 0
    for video in info["videos"]:
        split = bench / video["split"]
        stored = json.loads((split / "captions.json").read_text())[video["video"]]
        with open(split / "captions" / f"{video['video']}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["text"] for r in rows] == stored["text"] == [c["text"] for c in video["captions"]]
        assert [float(r["start"]) for r in rows] == stored["start"]
        for caption in video["captions"]:
            assert 0 <= caption["start"] < caption["end"] <= video["duration"]
            if caption["kind"] == "narration":
                action = video["actions"][caption["action"]]
                assert -limit - 0.01 <= caption["offset"] <= limit + 0.01
                assert caption["start"] == pytest.approx(action["start"] + caption["offset"])
                assert action["noun"] in caption["text"] or any(
                    word in caption["text"]
                    for word in ("loaf", "cheddar", "salmon", "steak", "beef", "florets", "prawns", "es", "s")
                )
                narrated += 1
    assert narrated > 0


def test_offsets_in_range_for_every_difficulty():
    for name, difficulty in DIFFICULTIES.items():
        config = replace(TINY, difficulty=name, train_videos=6, test_videos=6)
        train, test = plan_all(config)
        for plan in train + test:
            for caption in plan.captions:
                if caption.kind == "narration":
                    assert abs(caption.offset) <= difficulty.max_offset + 0.01


def test_refined_segment_ids_skip_mentioned_steps():
    config = replace(TINY, difficulty="hard", train_videos=0, test_videos=8)
    _, test = plan_all(config)
    with_mentions = [plan for plan in test if plan.mentions]
    assert with_mentions, "hard difficulty mentions a step in some test videos"
    boxes = {}
    for plan in test:
        renderer = VideoRenderer(plan, config.difficulty_settings)
        boxes[plan.video_id] = {s: renderer.box(s) for a in plan.actions for s in range(a.start, a.end + 1)}
    texts = ground_truth_files(test, boxes, (640, 480), 3, config.seed)
    ground_seg = json.loads(texts["ground_seg.json"])
    seg = json.loads(texts["seg.json"])
    plan = with_mentions[0]
    ids = [entry["id"] for entry in ground_seg[plan.video_id]]
    assert ids != list(range(len(ids)))
    zero = [e for e in seg[plan.video_id] if e["segment"][0] == e["segment"][1]]
    assert [e["id"] for e in zero] == [m.id for m in plan.mentions]
    pools = json.loads(texts["vid2step.json"])
    own = {a.query for a in plan.actions}
    assert len([q for q in pools[plan.video_id] if q not in own and q != "background"]) > 0


def test_corpus_covers_the_vocabulary(bench):
    sentences = (bench / "train" / "corpus.txt").read_text().splitlines()
    assert len(sentences) == TINY.corpus_sentences
    words = {word for sentence in sentences for word in sentence.split()}
    info = manifest(bench)
    assert set(info["vocabulary"]["verbs"]) <= words
    assert set(info["vocabulary"]["nouns"]) <= words


def test_refuses_a_non_empty_folder(bench, tmp_path):
    with pytest.raises(UserError, match="not empty"):
        generate(bench, TINY)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="no synth.json"):
        generate(foreign, TINY, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"
    small = replace(TINY, train_videos=0, test_videos=1)
    target = tmp_path / "target"
    generate(target, small)
    generate(target, small, overwrite=True, preview=True)
    assert (target / "preview.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"width": 127}, "even"),
        ({"fps": 0}, "fps"),
        ({"difficulty": "brutal"}, "difficulty"),
        ({"train_videos": 0, "test_videos": 0}, "at least one video"),
        ({"min_duration": 2}, "durations"),
        ({"num_nouns": 99}, "num_nouns"),
    ],
)
def test_bad_settings_are_user_errors(changes, fragment):
    with pytest.raises(UserError, match=fragment):
        replace(TINY, **changes).validated()


@pytest.mark.slow
def test_quick_preset_renders_in_under_a_minute(tmp_path):
    started = time.perf_counter()
    summary = generate(tmp_path / "quick", SynthConfig.quick())
    elapsed = time.perf_counter() - started
    assert summary.train_videos == 24 and summary.test_videos == 6
    assert elapsed < 60, f"quick preset took {elapsed:.1f} s"
    truth = load_grounding_youtube(tmp_path / "quick" / "test" / "annotations")
    assert sum(len(b) for b in truth.boxes.values()) == summary.boxes


def test_an_oracle_prediction_scores_perfectly(bench, tmp_path):
    """Predictions made from the plan at the rendered size (128 x 96), rescaled
    by the scorer to the 640 x 480 annotation frame, hit every ground-truth box and tube."""
    from stg_cli.metrics.predictions import load_predictions
    from stg_cli.metrics.score import load_ground_truth, score

    _, test = plan_all(TINY)
    pools = json.loads((bench / "test" / "annotations" / "vid2step.json").read_text())
    predictions = {}
    for plan in test:
        renderer = VideoRenderer(plan, TINY.difficulty_settings)
        frames = []
        for second in range(plan.duration):
            action = plan.action_at(second)
            if action is None:
                frames.append(
                    {"t": float(second), "label": "background", "score": 0.0, "point": None, "box": None}
                )
                continue
            x1, y1, x2, y2 = renderer.box(second)
            frames.append(
                {
                    "t": float(second),
                    "label": action.query,
                    "score": 1.0,
                    "point": [(x1 + x2) / 2, (y1 + y2) / 2],
                    "box": [x1, y1, x2, y2],
                }
            )
        predictions[plan.video_id] = {
            "video": plan.video_id,
            "width": plan.width,
            "height": plan.height,
            "fps": 1.0,
            "duration": float(plan.duration),
            "queries": [q for q in pools[plan.video_id] if q != "background"],
            "segments": [
                {"label": a.query, "start": a.start, "end": a.end, "score": 1.0} for a in plan.actions
            ],
            "frames": frames,
        }
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(predictions))
    report = score(load_predictions(path), load_ground_truth([bench], "synth"), "synth")
    assert not report.missing and not report.unknown
    values = [v for v in report.metrics.values() if isinstance(v, float)]
    assert values and all(v == pytest.approx(100.0) for v in values), report.metrics


def test_followups_stay_inside_their_action_give_or_take_half_the_offset():
    config = replace(TINY, train_videos=8, test_videos=0, min_duration=40, max_duration=60, max_action=12)
    train, _ = plan_all(config)
    half = config.difficulty_settings.max_offset / 2
    followups = 0
    for plan in train:
        for caption in plan.captions:
            if caption.kind == "followup":
                action = plan.actions[caption.action]
                assert action.end - action.start + 1 >= 6
                low = max(0.0, action.start + 2 - half)
                high = min(plan.duration - 1.0, action.end + half)
                assert low - 0.01 <= caption.start <= high + 0.01
                followups += 1
    assert followups > 0
