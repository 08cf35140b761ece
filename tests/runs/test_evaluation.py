"""Evaluating a model on a labelled split: the wrong-query controls and their relabelled truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.grounding import make_video
from stg_cli.errors import UserError
from stg_cli.runs.evaluation import (
    LabelledSplit,
    distractor_labels,
    distractor_query_truth,
    evaluate_export,
    score_control,
    split_priors,
    wrong_query_truth,
)
from stg_cli.viz import TruthSegment

CRACK, POUR, WHISK, CUT = (
    "crack the egg into the bowl",
    "pour milk into the pan",
    "whisk the eggs with a fork",
    "cut the onion on the board",
)
BOX = [100, 100, 299, 299]


def segments(*items: tuple[str, float, float]) -> list[TruthSegment]:
    return [TruthSegment(label, float(start), float(end)) for label, start, end in items]


def test_wrong_query_takes_the_next_distinct_step_of_the_video_cyclically():
    truth = {
        "v": segments(("c", 14, 15), ("a", 0, 3), ("b", 5, 8), ("a", 10, 12)),
        "solo": segments(("a", 0, 3), ("a", 6, 9)),
        "empty": [],
    }
    relabelled = wrong_query_truth(truth)
    # Steps in order of appearance: a, b, c; a → b, b → c, c → a. A video of one step has none.
    assert relabelled == {"v": segments(("b", 0, 3), ("c", 5, 8), ("b", 10, 12), ("a", 14, 15))}


def test_distractor_query_splits_segments_into_runs_of_one_distractor():
    truth = {"v": segments(("cut onion", 3, 7), ("stir pot", 9, 11)), "quiet": segments(("cut onion", 0, 2))}
    distractors = {
        # 5 has none, 6-7 another run of the same distractor; 9 lists the segment's own step,
        # 10-11 change distractor; 8 is outside every segment.
        "v": {
            3: "stir pot",
            4: "stir pot",
            6: "stir pot",
            7: "stir pot",
            8: "peel egg",
            9: "stir pot",
            10: "peel egg",
            11: "fry egg",
        },
        "quiet": {},
    }
    assert distractor_query_truth(truth, distractors) == {
        "v": segments(("stir pot", 3, 4), ("stir pot", 6, 7), ("peel egg", 10, 10), ("fry egg", 11, 11))
    }


def test_distractor_labels_are_the_first_listed_step_of_each_second(tmp_path):
    path = tmp_path / "distractors.json"
    path.write_text(
        json.dumps(
            {
                "v": {
                    "0": [
                        {"step": "stir pot", "box": [0, 0, 9, 9]},
                        {"step": "peel egg", "box": [1, 1, 5, 5]},
                    ],
                    "1": [],
                    "2": [{"step": "peel egg", "box": [0, 0, 9, 9]}],
                }
            }
        )
    )
    assert distractor_labels(path) == {"v": {0: "stir pot", 2: "peel egg"}}
    path.write_text(json.dumps({"v": {"0": [{"box": [0, 0, 9, 9]}]}}))
    with pytest.raises(UserError, match="no 'step'"):
        distractor_labels(path)


def write_split(root: Path, with_videos: bool = True) -> LabelledSplit:
    """Two 6-s videos, boxes at seconds 1-4: v1 cracks [1, 2] then pours [3, 4], v2 whisks
    [1, 4]; distractors: v1 cuts at 1-2 and whisks at 3, v2 cuts all along."""
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    (root / "videos").mkdir()
    if with_videos:
        for video in ("v1", "v2"):
            make_video(root / "videos" / f"{video}.mp4")
    boxes = {
        "v1": {str(s): {"box": BOX, "step": CRACK if s < 3 else POUR} for s in range(1, 5)},
        "v2": {str(s): {"box": BOX, "step": WHISK} for s in range(1, 5)},
    }
    files = {
        "GoundingYouTubeBox.json": boxes,
        "ground_seg.json": {
            "v1": [
                {"segment": [1, 2], "id": 0, "sentence": CRACK},
                {"segment": [3, 4], "id": 1, "sentence": POUR},
            ],
            "v2": [{"segment": [1, 4], "id": 0, "sentence": WHISK}],
        },
        "vid2step.json": {"v1": [CRACK, POUR, "background"], "v2": [WHISK, "background"]},
        "id2wh_new.json": {"v1": [640, 480], "v2": [640, 480]},
        "distractors.json": {
            "v1": {
                "1": [{"step": CUT, "box": BOX}],
                "2": [{"step": CUT, "box": BOX}],
                "3": [{"step": WHISK, "box": BOX}],
                "4": [],
            },
            "v2": {str(s): [{"step": CUT, "box": BOX}] for s in range(1, 5)},
        },
    }
    for name, value in files.items():
        (annotations / name).write_text(json.dumps(value))
    return LabelledSplit.find(root)


def frame(t: int, point: list[float] | None) -> dict:
    return {"t": t, "label": "x", "score": 1.0, "point": point, "box": None}


def test_score_control_counts_the_seconds_of_its_segments_against_the_true_boxes(tmp_path):
    split = write_split(tmp_path / "split", with_videos=False)
    inside, outside = [200.0, 200.0], [10.0, 10.0]
    predictions = tmp_path / "predictions.json"
    predictions.write_text(
        json.dumps(
            {
                "v1": {
                    "video": "v1",
                    "width": 640,
                    "height": 480,
                    "segments": [],
                    "heatmaps": None,
                    "frames": [frame(1, inside), frame(2, inside), frame(3, outside), frame(4, None)],
                }
            }
        )
    )
    # The labels of the control (not the boxes' steps) do not matter: no label is required.
    control = {"v1": segments(("other", 1, 3))}
    assert score_control(predictions, split, control) == pytest.approx(200 / 3)
    # v2 has no prediction: its seconds count as misses; a control of no annotated second: None.
    both = {**control, "v2": segments(("other", 2, 2))}
    assert score_control(predictions, split, both) == pytest.approx(50.0)
    assert score_control(predictions, split, {"v1": segments(("other", 7, 9))}) is None


@pytest.mark.slow
def test_evaluate_export_grounds_the_wrong_queries_and_scores_them(export_dir, tmp_path):
    split = write_split(tmp_path / "split")
    out = tmp_path / "eval"
    metrics = evaluate_export(export_dir, split, out)
    for key in ("pointing_true_timing", "pointing_wrong_query", "pointing_distractor_query"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["failed"] == 0

    def labels(folder: str) -> dict[str, dict[float, str]]:
        combined = json.loads((out / folder / "predictions.json").read_text())
        return {
            video: {f["t"]: f["label"] for f in value["frames"] if f["t"] in (1, 2, 3, 4)}
            for video, value in combined.items()
        }

    # v2 has one step: no other step to ask for.
    assert labels("wrong-query") == {"v1": {1.0: POUR, 2.0: POUR, 3.0: CRACK, 4.0: CRACK}}
    assert labels("distractor-query") == {
        "v1": {1.0: CUT, 2.0: CUT, 3.0: WHISK, 4.0: "background"},
        "v2": {1.0: CUT, 2.0: CUT, 3.0: CUT, 4.0: CUT},
    }
    # Each control is the pointing game of its own predictions on its seconds.
    assert metrics["pointing_wrong_query"] == pytest.approx(
        score_control(
            out / "wrong-query" / "predictions.json",
            split,
            wrong_query_truth({"v1": segments((CRACK, 1, 2), (POUR, 3, 4))}),
        )
    )


def test_split_priors_read_the_split_videos(tmp_path):
    split = write_split(tmp_path / "split")
    priors = split_priors(split)
    assert list(priors.scores) == ["centre", "random", "motion", "centred_energy"]
    assert priors.skipped == {} and priors.frames["motion"] == 8
    # The frame centre (319.5, 239.5) is outside the box [100, 100, 299, 299] at every second.
    assert priors.scores["centre"]["pointing_game"] == 0.0
