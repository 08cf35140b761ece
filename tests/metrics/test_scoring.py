"""``score``: hand-computed datasets, properties, real annotation files, ground-truth loading."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stg_cli.bench.score import generated_ground_truth
from stg_cli.errors import UserError
from stg_cli.metrics.alignment import ground_truth_frame_labels
from stg_cli.metrics.annotations import FrameBox, GroundTruth, Segment, find_defects
from stg_cli.metrics.baselines import (
    baseline_predictions,
    prediction_to_dict,
    save_predictions,
    uniform_temporal,
)
from stg_cli.metrics.predictions import load_predictions, parse_prediction
from stg_cli.metrics.score import ScoreOptions, _video_map, detection_overlaps, load_ground_truth, score
from stg_cli.metrics.tubes import LabeledTube, TubeDetection, video_map
from stg_cli.text.normalize import normalize_text

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GROUNDING = DATA / "groundingyoutube"
YOUCOOK = DATA / "youcook2-interactions"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the released annotation files are not at {DATA}")

PERCENT_METRICS = (
    "iou_point",
    "iou_point_pooled",
    "pointing_game",
    "pointing_game_tolerant",
    "map@0.1",
    "map@0.2",
    "map@0.3",
    "map@0.4",
    "map@0.5",
    "map_mean",
    "spatial_accuracy",
    "spatial_map",
)


def ground_truth(boxes, segments, sizes=None, pools=None, convention="frames"):
    sizes = sizes or {}
    return GroundTruth(
        boxes, segments, sizes, pools or {}, find_defects(boxes, segments, sizes, convention), convention
    )


def hand_ground_truth():
    """Video v1 in a 100 × 100 frame: "cut" at seconds 1-2, "stir" at second 4."""
    cut, stir = (10.0, 10.0, 29.0, 29.0), (50.0, 50.0, 69.0, 69.0)
    boxes = {"v1": [FrameBox(1, cut, "cut"), FrameBox(2, cut, "cut"), FrameBox(4, stir, "stir")]}
    segments = {"v1": [Segment("v1", 1, 2, "cut", 0), Segment("v1", 4, 4, "stir", 1)]}
    return ground_truth(boxes, segments, {"v1": (100, 100)}, {"v1": ["cut", "stir"]})


def hand_prediction():
    """A 200 × 200 prediction: coordinates halve onto the annotation frame (pixel convention:
    40 → (40.5) / 2 − .5 = 19.75; box [20, 20, 59, 59] → [10, 10, 29, 29])."""
    frames = [
        {"t": 0, "label": "background", "score": 0.1, "point": None, "box": None},
        {"t": 1, "label": "cut", "score": 0.9, "point": [40, 40], "box": [20, 20, 59, 59]},
        {"t": 2, "label": "Cut.", "score": 0.6, "point": [100, 100], "box": [100, 100, 139, 139]},
        {"t": 3, "label": "stir", "score": 0.5, "point": [0, 0], "box": None},
        {"t": 4, "label": "stir", "score": 0.8, "point": [120, 120], "box": [100, 100, 139, 139]},
        {"t": 5, "label": "background", "score": 0.1, "point": None, "box": None},
    ]
    segments = [
        {"label": "cut", "start": 1, "end": 2, "score": 0.9},
        {"label": "stir", "start": 3, "end": 4, "score": 0.8},
    ]
    value = {"video": "v1", "width": 200, "height": 200, "segments": segments, "frames": frames}
    return parse_prediction(value, Path("v1.json"), "prediction")


def test_hand_computed_grounding_youtube_case():
    report = score({"v1": hand_prediction()}, hand_ground_truth(), "groundingyoutube")
    metrics = report.metrics
    # Rescaled points: 1 → (19.75, 19.75) in cut ✓; 2 → (49.75, 49.75) not in cut, not within
    # 15 px (29 + 15 = 44) ✗; 4 → (59.75, 59.75) in stir ✓. Pointing game 2/3 both ways.
    assert metrics["pointing_game"] == pytest.approx(200 / 3)
    assert metrics["pointing_game_tolerant"] == pytest.approx(200 / 3)
    # IoU+Point: foreground {1, 2, 4} ∪ predicted {1, 2, 3, 4}; correct {1, 4} → 2/4.
    # ("Cut." is matched to "cut" after normalisation.)
    assert metrics["iou_point"] == pytest.approx(50.0)
    assert metrics["iou_point_pooled"] == pytest.approx(50.0)
    # Spatial: 1 → IoU 1 ✓, 2 → [50..69] vs [10..29] IoU 0 ✗, 4 → IoU 1 ✓: 2/3.
    # AP cut: .9 hit, .6 miss of 2 positives → 1/2; stir: 1 → mean 75.
    assert metrics["spatial_accuracy"] == pytest.approx(200 / 3)
    assert metrics["spatial_map"] == pytest.approx(75.0)
    # Tubes: cut {1: [10..29], 2: [50..69]} vs ground truth {1, 2: [10..29]}: overlap 400 of
    # 400 + 400 + 400 + 400 − 400 = 1200 → IoU 1/3, a hit up to θ = 0.3. The stir segment
    # [3, 4] has a box only at 4 (3 has none): {4: [50..69]} = the ground truth → IoU 1.
    # mAP: 100, 100, 100, (0 + 100) / 2, (0 + 100) / 2 → mean 80.
    assert [metrics[f"map@{t}"] for t in (0.1, 0.2, 0.3, 0.4, 0.5)] == pytest.approx([100, 100, 100, 50, 50])
    assert metrics["map_mean"] == pytest.approx(80.0)
    assert report.counts["rescaled_videos"] == 1
    assert report.per_class["spatial_ap"] == pytest.approx({"cut": 50.0, "stir": 100.0})
    assert report.per_video[0]["iou_point"] == pytest.approx(50.0)


def test_missing_and_unknown_videos_are_listed():
    truth = hand_ground_truth()
    other = replace(hand_prediction(), video="elsewhere")
    report = score({"elsewhere": other}, truth, "synth")
    assert report.missing == ["v1"] and report.unknown == ["elsewhere"]
    assert all(report.metrics[key] == 0.0 for key in PERCENT_METRICS)
    assert report.per_video[0]["predicted"] is False


def test_degenerate_boxes_follow_the_documented_rule():
    # Second 3 has an inverted box (x1 > x2): it is left out of the point metrics, even though
    # the prediction labels it with a step; its tube of one zero-area box is left out of mAP.
    boxes = {"v": [FrameBox(1, (0, 0, 9, 9), "a"), FrameBox(3, (12, 0, 10, 9), "b")]}
    segments = {"v": [Segment("v", 1, 1, "a", 0), Segment("v", 3, 3, "b", 1)]}
    truth = ground_truth(boxes, segments, {"v": (20, 20)})
    assert truth.defects.degenerate_boxes == 1
    report = score(baseline_predictions(truth, "oracle"), truth, "groundingyoutube")
    assert report.counts["degenerate_frames"] == 1 and report.counts["degenerate_tubes"] == 1
    assert report.counts["pointing_frames"] == 1 and report.counts["gt_tubes"] == 1
    assert all(report.metrics[key] == pytest.approx(100.0) for key in PERCENT_METRICS)


def mining_ground_truth():
    segments = {"m": [Segment("m", 4, 6, "stir_egg", 1), Segment("m", 1, 3, "crack_egg", 0)]}
    return ground_truth({}, segments, convention="continuous")


def mining_prediction(tmp_path, similarity, queries=("crack egg", "stir egg")):
    np.savez(
        tmp_path / "m.heatmaps.npz",
        times=np.arange(len(similarity), dtype=np.float32),
        cells=np.zeros((len(similarity), 7, 7), dtype=np.float32),
        similarity=np.asarray(similarity, dtype=np.float32),
        queries=np.array(queries),
    )
    value = {
        "video": "m",
        "width": 64,
        "height": 48,
        "segments": [],
        "frames": [],
        "heatmaps": "m.heatmaps.npz",
        "queries": list(queries),
    }
    (tmp_path / "m.json").write_text(json.dumps(value))
    return load_predictions(tmp_path / "m.json")


def test_hand_computed_mining_youtube_case(tmp_path):
    # Ground truth (half-open): t1, t2 crack_egg; t4, t5 stir_egg; t0, t3, t6 background.
    # Similarity columns: crack egg, stir egg (matched to crack_egg / stir_egg by normalising).
    similarity = [
        [0.1, 0.1],  # t0 → background (.5)
        [0.9, 0.2],  # t1 → crack (.9)
        [0.4, 0.1],  # t2 → background: .4 < tau
        [0.2, 0.1],  # t3 → background
        [0.3, 0.9],  # t4 → stir
        [0.2, 0.8],  # t5 → stir
        [0.1, 0.9],  # t6 → stir (a false detection)
    ]
    predictions = mining_prediction(tmp_path, similarity)
    report = score(predictions, mining_ground_truth(), "miningyoutube", frame_ranges="half_open")
    # crack: G {1, 2}, D {1} → ∩ 1, ∪ 2; stir: G {4, 5}, D {4, 5, 6} → ∩ 2, ∪ 3.
    # IoU = 3/5 = 60 %, IoD = 3/(1 + 3) = 75 %.
    assert report.metrics["iou"] == pytest.approx(60.0)
    assert report.metrics["iod"] == pytest.approx(75.0)
    assert report.counts["intersection_frames"] == 3
    # tau = 0.35: t2 (.4) now pays more as crack than as background → crack G {1,2} = D.
    # IoU = 4/5 = 80 %, IoD = 4/5 = 80 %.
    lower = score(predictions, mining_ground_truth(), "miningyoutube", tau=0.35, frame_ranges="half_open")
    assert lower.metrics["iou"] == pytest.approx(80.0)
    assert lower.metrics["iod"] == pytest.approx(80.0)


def test_mining_youtube_without_prediction_or_query(tmp_path):
    report = score({}, mining_ground_truth(), "miningyoutube")
    assert report.missing == ["m"] and report.metrics["iou"] == 0.0 and report.metrics["iod"] == 0.0


def test_mining_youtube_step_missing_from_the_queries_scores_the_lowest_cosine(tmp_path):
    # "stir egg" is not a query, so its column is -1 on every frame. Every step needs a frame:
    # crack at t1 (.9 vs background .5), then stir at the first frame after it, t2, where
    # giving up background costs -1.5 wherever it is (the dynamic programme keeps the earliest).
    # Ground truth (half-open): crack {1, 2}, stir {4, 5}. crack: ∩ 1, ∪ 2; stir: D {2} → ∩ 0,
    # ∪ 3. IoU = 1/5 = 20 %, IoD = 1/2 = 50 %.
    similarity = [[0.1, 0.0], [0.9, 0.0], [0.4, 0.0], [0.2, 0.0], [0.3, 0.0], [0.2, 0.0], [0.1, 0.0]]
    predictions = mining_prediction(tmp_path, similarity, queries=("crack egg", "boil"))
    report = score(predictions, mining_ground_truth(), "miningyoutube", frame_ranges="half_open")
    assert any("1 ground-truth step(s) were not among" in note for note in report.notes)
    assert report.metrics["iou"] == pytest.approx(20.0)
    assert report.metrics["iod"] == pytest.approx(50.0)


def test_options_and_dataset_are_checked():
    with pytest.raises(ValueError, match="unknown scoring option"):
        score({}, hand_ground_truth(), "groundingyoutube", tolerence=3)
    with pytest.raises(ValueError, match="box_convention"):
        score({}, hand_ground_truth(), "groundingyoutube", box_convention="voc")
    with pytest.raises(UserError, match="unknown dataset"):
        score({}, hand_ground_truth(), "vidstg")


def random_ground_truth(seed, videos):
    generator = np.random.default_rng(seed)
    boxes, segments, sizes = {}, {}, {}
    for index in range(videos):
        video = f"v{index}"
        second, frames, runs = int(generator.integers(0, 3)), [], []
        for run in range(int(generator.integers(1, 4))):
            label = f"step {int(generator.integers(0, 3))}"
            length = int(generator.integers(1, 4))
            for offset in range(length):
                x1, y1 = generator.integers(0, 50, 2)
                width, height = generator.integers(1, 30, 2)
                if frames and generator.random() < 0.05:
                    width = -2  # a degenerate box (never the first), as in the released files
                frames.append(FrameBox(second + offset, (x1, y1, x1 + width, y1 + height), label))
            runs.append(Segment(video, second, second + length - 1, label, run))
            second += length + int(generator.integers(1, 3))
        boxes[video], segments[video], sizes[video] = frames, runs, (80, 60)
    return ground_truth(boxes, segments, sizes)


dataset_seeds = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 4))
property_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@property_settings
@given(dataset_seeds)
def test_perfect_predictions_score_100(case):
    truth = random_ground_truth(*case)
    report = score(baseline_predictions(truth, "oracle"), truth, "groundingyoutube")
    for key in PERCENT_METRICS:
        if key.startswith("map") and not report.counts["gt_tubes"]:
            continue
        assert report.metrics[key] == pytest.approx(100.0), key


@property_settings
@given(dataset_seeds)
def test_empty_predictions_score_0(case):
    truth = random_ground_truth(*case)
    background_only = {
        video: replace(
            prediction,
            segments=[],
            labels=["background"] * len(prediction.labels),
            points=np.full_like(prediction.points, np.nan),
            boxes=np.full_like(prediction.boxes, np.nan),
        )
        for video, prediction in baseline_predictions(truth, "oracle").items()
    }
    for predictions in ({}, background_only):
        report = score(predictions, truth, "groundingyoutube")
        assert all(report.metrics[key] == 0.0 for key in report.metrics)


@property_settings
@given(dataset_seeds, st.randoms(use_true_random=False))
def test_invariant_to_video_order_and_json_key_order(tmp_path, case, shuffler):
    truth = random_ground_truth(*case)
    predictions = baseline_predictions(truth, "centre")
    expected = score(predictions, truth, "groundingyoutube")
    videos = list(truth.boxes)
    shuffler.shuffle(videos)
    shuffled_truth = replace(truth, boxes={v: truth.boxes[v] for v in videos})
    reordered = {v: predictions[v] for v in reversed(videos)}

    def shuffled_keys(value):
        if isinstance(value, dict):
            items = list(value.items())
            shuffler.shuffle(items)
            return {key: shuffled_keys(item) for key, item in items}
        if isinstance(value, list):
            return [shuffled_keys(item) for item in value]
        return value

    path = tmp_path / "shuffled.json"
    path.write_text(
        json.dumps(
            shuffled_keys({video: prediction_to_dict(prediction) for video, prediction in reordered.items()})
        )
    )
    for candidate in (reordered, load_predictions(path)):
        got = score(candidate, shuffled_truth, "groundingyoutube")
        assert got.metrics == pytest.approx(expected.metrics)


@property_settings
@given(dataset_seeds, st.integers(0, 1000))
def test_correcting_a_wrong_frame_never_lowers_a_score(case, pick):
    truth = random_ground_truth(*case)
    predictions = baseline_predictions(truth, "centre")
    before = score(predictions, truth, "groundingyoutube")
    wrong = [
        (video, frame)
        for video, frames in truth.boxes.items()
        for frame in frames
        if frame.box[0] < frame.box[2]
        and not (frame.box[0] <= 39.5 <= frame.box[2] and frame.box[1] <= 29.5 <= frame.box[3])
    ]
    if not wrong:
        return
    video, frame = wrong[pick % len(wrong)]
    prediction = predictions[video]
    index = int(np.flatnonzero(prediction.times == frame.second)[0])
    points, boxes = prediction.points.copy(), prediction.boxes.copy()
    x1, y1, x2, y2 = frame.box
    points[index], boxes[index] = ((x1 + x2) / 2, (y1 + y2) / 2), frame.box
    fixed = {**predictions, video: replace(prediction, points=points, boxes=boxes)}
    after = score(fixed, truth, "groundingyoutube")
    for key in ("pointing_game", "iou_point", "iou_point_pooled", "spatial_accuracy"):
        assert after.metrics[key] >= before.metrics[key] - 1e-9, key
    assert after.counts["pointing_hits"] == before.counts["pointing_hits"] + 1


def test_load_ground_truth_finds_files_by_name(tmp_path):
    folder = tmp_path / "synth" / "test" / "annotations"
    folder.mkdir(parents=True)
    (folder / "GoundingYouTubeBox.json").write_text(
        json.dumps({"v": {"3": {"box": [0, 0, 9, 9], "step": "cut"}}})
    )
    (folder / "ground_seg.json").write_text(
        json.dumps({"v": [{"segment": [3, 3], "id": 7, "sentence": "cut"}]})
    )
    truth = load_ground_truth([tmp_path / "synth"], "synth")
    assert truth.boxes["v"][0].label == "cut" and truth.segments["v"][0].id == 7
    assert truth.frame_sizes == {}
    same = load_ground_truth(
        [folder / "GoundingYouTubeBox.json", folder / "ground_seg.json"], "groundingyoutube"
    )
    assert same.boxes == truth.boxes
    with pytest.raises(UserError, match="seg.json not found"):
        load_ground_truth([folder], "miningyoutube")
    with pytest.raises(UserError, match="ground truth not found"):
        load_ground_truth([tmp_path / "nothing"], "groundingyoutube")


def test_generated_benchmark_ground_truth_has_the_released_size():
    truth = generated_ground_truth(videos=3, boxes_per_video=20)
    assert len(truth.boxes) == 3 and all(len(frames) >= 20 for frames in truth.boxes.values())
    report = score(baseline_predictions(truth, "oracle"), truth, "groundingyoutube")
    assert report.metrics["map_mean"] == pytest.approx(100.0)


@pytest.fixture(scope="module")
def grounding_truth():
    return load_ground_truth([GROUNDING], "groundingyoutube")


@needs_data
def test_real_oracle_on_twenty_videos_scores_100(grounding_truth):
    videos = sorted(grounding_truth.boxes)[:20]
    boxes = {video: grounding_truth.boxes[video] for video in videos}
    truth = replace(grounding_truth, boxes=boxes)
    predictions = baseline_predictions(truth, "oracle")
    predictions["not-annotated"] = replace(predictions[videos[0]], video="not-annotated")
    report = score(predictions, truth, "groundingyoutube")
    assert report.unknown == ["not-annotated"]
    for key in PERCENT_METRICS:
        assert report.metrics[key] == pytest.approx(100.0), key


@needs_data
@pytest.mark.slow
def test_real_oracle_scores_100(grounding_truth, tmp_path):
    path = save_predictions(baseline_predictions(grounding_truth, "oracle"), tmp_path / "o.json")
    report = score(load_predictions(path), grounding_truth, "groundingyoutube")
    assert report.videos == 250 and report.missing == [] and report.unknown == []
    for key in PERCENT_METRICS:
        assert report.metrics[key] == pytest.approx(100.0), key
    assert report.counts["pointing_frames"] == 17_316 - 18
    assert report.counts["degenerate_frames"] == 18 and report.counts["degenerate_tubes"] == 4


@needs_data
def test_real_iou_point_foreground_includes_segment_seconds_without_a_box(grounding_truth):
    # Right wherever the ground truth says anything: box seconds with the box's step and its
    # centre, box-less seconds of a segment with that segment's step (the first in the file).
    predictions = {}
    for video, frames in grounding_truth.boxes.items():
        by_second = {frame.second: frame for frame in frames}
        segment_seconds = {}
        for segment in grounding_truth.segments[video]:
            for second in range(segment.start, segment.end + 1):
                segment_seconds.setdefault(second, segment.label)
        seconds = sorted(by_second.keys() | segment_seconds.keys())
        entries = []
        for second in seconds:
            frame = by_second.get(second)
            if frame is None:
                entries.append({"t": second, "label": segment_seconds[second], "score": 1.0})
                continue
            x1, y1, x2, y2 = frame.box
            point = [(x1 + x2) / 2, (y1 + y2) / 2]
            entries.append({"t": second, "label": frame.label, "score": 1.0, "point": point})
        width, height = grounding_truth.frame_sizes[video]
        value = {"video": video, "width": width, "height": height, "segments": [], "frames": entries}
        predictions[video] = parse_prediction(value, Path(f"{video}.json"), "prediction")
    report = score(predictions, grounding_truth, "groundingyoutube")
    assert report.metrics["iou_point"] == pytest.approx(100.0)
    assert report.metrics["iou_point_pooled"] == pytest.approx(100.0)
    # 22,329 seconds inside segments, 5,013 of them without a box, none with a box outside;
    # the 18 degenerate boxes are left out.
    assert report.counts["iou_point_union"] == 22_329 - 18
    box_seconds_only = {
        video: replace(
            prediction,
            labels=[
                label if second in {f.second for f in grounding_truth.boxes[video]} else "background"
                for second, label in zip(prediction.times.astype(int), prediction.labels)
            ],
        )
        for video, prediction in predictions.items()
    }
    partial = score(box_seconds_only, grounding_truth, "groundingyoutube")
    assert partial.counts["iou_point_correct"] == 17_316 - 18
    assert partial.metrics["iou_point_pooled"] == pytest.approx(100 * (17_316 - 18) / (22_329 - 18))


@needs_data
@pytest.mark.slow
def test_real_centre_baseline_documented_numbers(grounding_truth):
    report = score(baseline_predictions(grounding_truth, "centre"), grounding_truth, "synth")
    expected = {
        "iou_point": 75.53,
        "iou_point_pooled": 74.43,
        "pointing_game": 67.01,
        "pointing_game_tolerant": 74.05,
        "map@0.1": 90.93,
        "map@0.5": 17.50,
        "map_mean": 55.66,
        "spatial_accuracy": 63.16,
        "spatial_map": 52.08,
    }
    assert {key: round(report.metrics[key], 2) for key in expected} == expected
    assert report.counts["pointing_hits"] == 11_592


@needs_data
@pytest.mark.slow
def test_real_data_baselines_in_readme():
    """The real-data rows of README's metric section."""
    keys = ("iou_point", "pointing_game", "map_mean", "spatial_accuracy")
    rows = {}
    for protocol in ("stg", "official"):
        truth = load_ground_truth([GROUNDING], "groundingyoutube", protocol)
        for kind in ("oracle", "centre", "random"):
            report = score(baseline_predictions(truth, kind), truth, "groundingyoutube", protocol=protocol)
            rows["groundingyoutube", protocol, kind] = [round(report.metrics[key], 2) for key in keys]
    assert rows == {
        ("groundingyoutube", "stg", "oracle"): [100.0, 100.0, 100.0, 100.0],
        ("groundingyoutube", "stg", "centre"): [75.53, 67.01, 55.66, 63.16],
        ("groundingyoutube", "stg", "random"): [36.67, 17.5, 21.12, 21.84],
        ("groundingyoutube", "official", "oracle"): [100.0, 99.89, 100.0, 99.89],
        ("groundingyoutube", "official", "centre"): [75.53, 66.92, 55.66, 63.33],
        ("groundingyoutube", "official", "random"): [36.67, 17.49, 21.12, 22.16],
    }
    # the oracle limited to each video's vid2step.json pool: the ceiling of a model grounded with it
    truth = load_ground_truth([GROUNDING], "groundingyoutube")
    limited = {}
    for video, prediction in baseline_predictions(truth, "oracle").items():
        pool = {normalize_text(query) for query in truth.query_pools[video]}
        labels = [label if normalize_text(label) in pool else "background" for label in prediction.labels]
        limited[video] = replace(prediction, labels=labels)
    ceiling = score(limited, truth, "groundingyoutube")
    assert [round(ceiling.metrics[key], 2) for key in ("iou_point", "iou_point_pooled")] == [79.52, 82.68]
    youcook = load_ground_truth([YOUCOOK], "youcook-interactions")
    found = {}
    for protocol in ("stg", "official"):
        for kind in ("oracle", "centre", "random"):
            report = score(
                baseline_predictions(youcook, kind), youcook, "youcook-interactions", protocol=protocol
            )
            found[protocol, kind] = [
                round(report.metrics[key], 2) for key in ("pointing_game", "spatial_accuracy")
            ]
    assert found == {
        ("stg", "oracle"): [100.0, 100.0],
        ("stg", "centre"): [28.55, 15.08],
        ("stg", "random"): [14.48, 8.36],
        ("official", "oracle"): [96.23, 96.19],
        ("official", "centre"): [28.49, 15.38],
        ("official", "random"): [14.5, 8.89],
    }
    mining = load_ground_truth([GROUNDING / "seg.json"], "miningyoutube")
    times = {video: np.arange(max(s.end for s in items) + 1.0) for video, items in mining.segments.items()}
    uniform = uniform_temporal(mining, times)
    assert [round(uniform["iou"], 2), round(uniform["iod"], 2)] == [10.26, 13.06]


@needs_data
def test_real_youcook_interactions_oracle(tmp_path):
    truth = load_ground_truth([YOUCOOK], "youcook-interactions")
    report = score(baseline_predictions(truth, "oracle"), truth, "youcook-interactions")
    assert report.videos == 92
    assert report.metrics["pointing_game"] == pytest.approx(100.0)
    assert report.counts["pointing_frames"] + report.counts["frames_outside_segments"] == 2_570 - 1
    assert "iou_point" not in report.metrics
    assert any("frame size unknown" in note for note in report.notes)


def write_mining_oracle(folder: Path, truth: GroundTruth, videos: list[str], padding: int = 3) -> None:
    """A prediction per video whose similarity is 1 where the frame's ground-truth step is the
    query (the ``seg.json`` step names, underscores read as spaces), 0 elsewhere."""
    for video in videos:
        segments = truth.segments[video]
        times = np.arange(max(s.end for s in segments) + padding, dtype=np.float32)
        queries = sorted({s.label.replace("_", " ") for s in segments})
        labels = [label.replace("_", " ") for label in ground_truth_frame_labels(times, segments)]
        similarity = np.array([[float(label == q) for q in queries] for label in labels])
        np.savez(
            folder / f"{video}.heatmaps.npz", times=times, similarity=similarity, queries=np.array(queries)
        )
        value = {
            "video": video,
            "width": 640,
            "height": 480,
            "segments": [],
            "frames": [],
            "heatmaps": f"{video}.heatmaps.npz",
        }
        (folder / f"{video}.json").write_text(json.dumps(value))


@needs_data
def test_real_mining_youtube_oracle_scores_100(tmp_path):
    truth = load_ground_truth([GROUNDING / "seg.json"], "miningyoutube")
    assert len(truth.segments) == 250 and truth.defects.zero_length_segments == 41
    write_mining_oracle(tmp_path, truth, sorted(truth.segments))
    report = score(load_predictions(tmp_path), truth, "miningyoutube")
    assert report.missing == []
    for key in ("iou", "iod", "iou_pooled", "iod_pooled"):
        assert report.metrics[key] == pytest.approx(100.0), key
    # steps inside an earlier-starting segment own no second and leave their transcript
    assert report.counts["steps_without_frames"] == 5
    half_open = score(load_predictions(tmp_path), truth, "miningyoutube", frame_ranges="half_open")
    assert round(half_open.metrics["iou"], 2) == 77.97


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["volume", "temporal_x_spatial"]))
def test_cached_video_map_equals_tubes_video_map(seed, method):
    generator = np.random.default_rng(seed)

    def random_tube():
        first = int(generator.integers(0, 6))
        return {
            second: tuple(float(v) for v in (*generator.integers(0, 10, 2), *generator.integers(10, 20, 2)))
            for second in range(first, first + int(generator.integers(1, 5)))
        }

    labels, videos = ["a", "b", "c"], ["v1", "v2"]
    truth = [
        LabeledTube(str(generator.choice(videos)), str(generator.choice(labels[:2])), random_tube())
        for _ in range(int(generator.integers(1, 6)))
    ]
    detections = [
        TubeDetection(
            str(generator.choice(videos)),
            str(generator.choice(labels)),
            random_tube(),
            float(generator.choice([0.2, 0.5, 0.9])),  # ties keep input order in both
        )
        for _ in range(int(generator.integers(0, 8)))
    ]
    options = ScoreOptions(tube_method=method)
    scored = [
        detection_overlaps([tube for tube in truth if tube.video == detection.video], [detection], options)[0]
        for detection in detections
    ]
    cached, per_class = _video_map(truth, scored, options)
    reference = video_map(truth, detections, options.thresholds, method=method)
    assert cached == pytest.approx({t: 100 * v for t, v in reference.map_at.items()})
    for label in per_class:
        expected = np.mean([reference.ap_per_class[t][label] for t in options.thresholds])
        assert per_class[label] == pytest.approx(100 * expected)


def write_mask_prediction(folder: Path, cells: np.ndarray, box: list[float]) -> Path:
    """Video "v", 7 × 7 pixels = a 7 × 7 grid (so a mask is its cells), "cut" at seconds 1-2
    with ``cells`` [7, 7] and ``box`` at both."""
    times = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float32)
    all_cells = np.zeros((4, 7, 7), dtype=np.float32)
    all_cells[1:3] = cells
    np.savez(folder / "v.heatmaps.npz", times=times, cells=all_cells)
    frames = [{"t": 0, "label": "background", "score": 0.1, "point": None, "box": None}]
    frames += [{"t": t, "label": "cut", "score": 0.9, "point": [0, 0], "box": box} for t in (1, 2)]
    frames += [{"t": 3, "label": "background", "score": 0.1, "point": None, "box": None}]
    value = {
        "video": "v",
        "width": 7,
        "height": 7,
        "segments": [{"label": "cut", "start": 1, "end": 2, "score": 0.9}],
        "frames": frames,
        "heatmaps": "v.heatmaps.npz",
    }
    (folder / "v.json").write_text(json.dumps(value))
    return folder / "v.json"


def mask_ground_truth():
    boxes = {"v": [FrameBox(1, (0, 0, 1, 1), "cut"), FrameBox(2, (0, 0, 1, 1), "cut")]}
    return ground_truth(boxes, {"v": [Segment("v", 1, 2, "cut", 0)]}, {"v": (7, 7)})


def test_video_map_scores_masks_by_default_and_boxes_as_an_option(tmp_path):
    cells = np.zeros((7, 7))
    cells[:2, :2] = 0.25  # the mask is exactly the ground-truth box [0, 0, 1, 1]
    predictions = load_predictions(write_mask_prediction(tmp_path, cells, [0, 0, 2, 2]))
    masks = score(predictions, mask_ground_truth(), "groundingyoutube")
    assert masks.metrics["map@0.5"] == pytest.approx(100.0)
    assert masks.options["tube_regions"] == "masks" and not masks.notes
    boxes = score(predictions, mask_ground_truth(), "groundingyoutube", tube_regions="boxes")
    # the box [0, 0, 2, 2] covers 9 pixels: tube IoU 2·4 / 2·9 = 0.44
    assert boxes.metrics["map@0.4"] == pytest.approx(100.0) and boxes.metrics["map@0.5"] == 0.0


def test_mask_tube_iou_counts_pixels(tmp_path):
    cells = np.zeros((7, 7))
    cells[0, :3] = cells[1, 0] = 0.25  # 4 pixels, 3 of them in the box: IoU 3 / (4 + 4 − 3)
    predictions = load_predictions(write_mask_prediction(tmp_path, cells, [0, 0, 1, 1]))
    truth = mask_ground_truth()
    thresholds = (0.6, 0.61)
    report = score(predictions, truth, "groundingyoutube", thresholds=thresholds, mask_threshold=0.2)
    assert [report.metrics["map@0.6"], report.metrics["map@0.61"]] == [100.0, 0.0]
    # a higher threshold keeps no pixel: a tube of empty masks overlaps nothing
    empty = score(predictions, truth, "groundingyoutube", mask_threshold=0.3)
    assert empty.metrics["map@0.1"] == 0.0


def test_masks_need_the_heatmaps_file_a_prediction_names(tmp_path):
    path = write_mask_prediction(tmp_path, np.full((7, 7), 1 / 49), [0, 0, 1, 1])
    (tmp_path / "v.heatmaps.npz").unlink()
    with pytest.raises(UserError, match="heatmaps file not found"):
        score(load_predictions(path), mask_ground_truth(), "groundingyoutube")
    value = json.loads(path.read_text())
    value["heatmaps"] = None
    path.write_text(json.dumps(value))
    report = score(load_predictions(path), mask_ground_truth(), "groundingyoutube")
    assert report.metrics["map@0.5"] == pytest.approx(100.0)
    assert any("their tubes are their boxes" in note for note in report.notes)


@pytest.mark.parametrize("protocol", ["stg", "official"])
def test_a_prediction_without_frames_but_with_heatmaps_scores_as_empty(tmp_path, protocol):
    path = write_mask_prediction(tmp_path, np.full((7, 7), 1 / 49), [0, 0, 1, 1])
    value = json.loads(path.read_text())
    value["frames"] = []
    path.write_text(json.dumps(value))
    report = score(load_predictions(path), mask_ground_truth(), "groundingyoutube", protocol=protocol)
    assert report.metrics["pointing_game"] == 0.0 and report.metrics["map@0.1"] == 0.0
