"""The grounding pipeline on a random-initialised export and generated videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.grounding import make_export, make_video
from stg_cli.errors import UserError
from stg_cli.ground.pipeline import Grounder, GroundSettings
from stg_cli.ground.queries import QuerySet
from stg_cli.runs.grounding import GroundingInterrupted, ground_videos
from stg_cli.video_files import find_videos


def _queries(*queries: str) -> QuerySet:
    return QuerySet(source="q.txt", shared=tuple(queries))


def _run(export_dir, paths, out, queries=("crack the egg", "pour milk"), **options):
    grounder = Grounder(export_dir)
    videos, problems = find_videos([str(p) for p in paths])
    assert not problems
    settings = GroundSettings(**{"tau": -1.0, **options})  # τ = -1: every frame is a query
    return ground_videos(grounder, videos, _queries(*queries), settings, out)


def test_predictions_are_valid(export_dir, small_video, tmp_path):
    results, timings = _run(export_dir, [small_video], tmp_path)
    (result,) = results
    assert result.error is None
    prediction = json.loads((tmp_path / "clip.json").read_text())
    assert prediction == json.loads((tmp_path / "predictions.json").read_text())["clip"]
    assert (prediction["width"], prediction["height"]) == (160, 120)
    assert prediction["queries"] == ["crack the egg", "pour milk"]
    assert len(prediction["frames"]) == 6 and prediction["duration"] == pytest.approx(6.0, abs=0.2)
    for segment in prediction["segments"]:
        assert 0 <= segment["start"] <= segment["end"] <= prediction["duration"]
    by_label: dict[str, list] = {}
    for segment in prediction["segments"]:
        by_label.setdefault(segment["label"], []).append((segment["start"], segment["end"]))
    for spans in by_label.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    for frame in prediction["frames"]:
        assert frame["label"] in prediction["queries"]  # τ = -1
        x, y = frame["point"]
        assert 0 <= x < 160 and 0 <= y < 120
        x1, y1, x2, y2 = frame["box"]
        assert 0 <= x1 <= x2 < 160 and 0 <= y1 <= y2 < 120
    with np.load(tmp_path / prediction["heatmaps"]) as archive:
        assert np.allclose(archive["cells"].reshape(6, -1).sum(1), 1.0, atol=1e-5)
        assert archive["similarity"].shape == (6, 2)
        assert np.all(np.abs(archive["similarity"]) <= 1.0 + 1e-5)
    assert timings.seconds["decode"] > 0 and timings.seconds["features"] > 0


def test_a_shared_projection_export_loads_and_grounds_with_the_paper_heatmaps(small_video, tmp_path):
    """An export trained with ``local_projections="shared"`` has no f' or g' of its own; it
    loads with its config and its paper heatmaps come from the global branch's f and g."""
    export = make_export(tmp_path / "export", local_projections="shared")
    grounder = Grounder(export)
    assert grounder.model.config.local_projections == "shared"
    assert not hasattr(grounder.model, "region_proj")
    results, _ = _run(export, [small_video], tmp_path / "out", heatmap="paper")
    assert results[0].error is None
    prediction = json.loads((tmp_path / "out" / "clip.json").read_text())
    with np.load(tmp_path / "out" / prediction["heatmaps"]) as archive:
        assert np.allclose(archive["cells"].reshape(6, -1).sum(1), 1.0, atol=1e-5)


def test_auto_heatmaps_are_the_models_default_read_out(export_dir, small_video, tmp_path):
    """``--heatmap auto`` (the default) reads a shared-projection model with the paper chain and
    any other model with the activation map: the same heatmaps as naming that read-out."""
    shared = make_export(tmp_path / "shared", local_projections="shared")
    for export, expected in ((export_dir, "global"), (shared, "paper")):
        grounder = Grounder(export)
        assert grounder.heatmap_mode(GroundSettings()) == expected
        assert grounder.heatmap_mode(GroundSettings(heatmap="rollout")) == "rollout"
        cells = {}
        for mode in ("auto", expected, "rollout" if expected == "global" else "global"):
            _run(export, [small_video], tmp_path / f"{expected}-{mode}", heatmap=mode)
            with np.load(tmp_path / f"{expected}-{mode}" / "clip.heatmaps.npz") as archive:
                cells[mode] = archive["cells"]
        np.testing.assert_array_equal(cells["auto"], cells[expected])
        (other,) = set(cells) - {"auto", expected}
        assert not np.allclose(cells["auto"], cells[other])


def test_high_tau_gives_background_only(export_dir, small_video, tmp_path):
    (result,), _ = _run(export_dir, [small_video], tmp_path, tau=1.5)
    assert result.prediction["segments"] == []
    assert all(f["label"] == "background" and f["point"] is None for f in result.prediction["frames"])
    with np.load(tmp_path / "clip.heatmaps.npz") as archive:
        assert not archive["cells"].any()


def test_bad_files_are_reported_and_skipped(export_dir, small_video, tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is not a video")
    results, _ = _run(export_dir, [junk, small_video], tmp_path / "out")
    assert results[0].error and results[1].error is None
    combined = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert list(combined) == ["clip"]


def test_unknown_words_never_detected(export_dir, small_video, tmp_path):
    (result,), _ = _run(export_dir, [small_video], tmp_path, queries=("zzz qqq", "pour milk"), tau=0.0)
    assert result.unknown_queries == ["zzz qqq"]
    with np.load(tmp_path / "clip.heatmaps.npz") as archive:
        assert not archive["similarity"][:, 0].any()
    assert all(s["label"] != "zzz qqq" for s in result.prediction["segments"])


def test_short_and_portrait_videos(export_dir, tmp_path):
    short = make_video(tmp_path / "short.mp4", seconds=0.5)
    portrait = make_video(tmp_path / "portrait.mp4", width=120, height=160, seconds=3)
    results, _ = _run(export_dir, [short, portrait], tmp_path / "out")
    assert [r.error for r in results] == [None, None]
    assert len(results[0].prediction["frames"]) == 1
    tall = results[1].prediction
    assert (tall["width"], tall["height"]) == (120, 160)
    for frame in tall["frames"]:
        x, y = frame["point"]
        assert 0 <= x < 120 and 0 <= y < 160


@pytest.mark.slow
def test_coordinates_scale_with_the_video(export_dir, tmp_path):
    small = make_video(tmp_path / "a" / "v.mp4", width=160, height=120, seconds=3)
    large = make_video(tmp_path / "b" / "v.mp4", width=320, height=240, seconds=3)
    (first,), _ = _run(export_dir, [small], tmp_path / "o1")
    (second,), _ = _run(export_dir, [large], tmp_path / "o2")
    for a, b in zip(first.prediction["frames"], second.prediction["frames"]):
        assert a["label"] == b["label"]
        assert np.allclose(b["point"], 2 * np.array(a["point"]), atol=3)
        assert np.allclose(b["box"], 2 * np.array(a["box"]), atol=4)


def test_folders_and_duplicate_stems(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "v.mp4").write_bytes(b"x")
    (tmp_path / "b" / "v.mp4").write_bytes(b"x")
    (tmp_path / "b" / "readme.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    videos, problems = find_videos(
        [tmp_path / "a", tmp_path / "b", tmp_path / "empty", "nope", tmp_path / "a" / "v.mp4", "v", "w"],
        store_ids=["v", "w"],
    )
    assert [(v.video_id, v.path is None) for v in videos] == [("v", False), ("v-2", False), ("w", True)]
    assert [p[0] for p in problems] == [str(tmp_path / "empty"), "nope"]


def test_missing_text_encoder_is_a_user_error(tmp_path):
    export = make_export(tmp_path / "export", save_text=False)
    with pytest.raises(UserError, match="--features"):
        Grounder(export)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        GroundSettings(heatmap="nope")
    with pytest.raises(UserError):
        GroundSettings(mask_threshold=2.0)
    with pytest.raises(UserError):
        GroundSettings(fps=0)


@pytest.mark.slow
def test_workers_give_the_same_predictions_and_skip_bad_files(export_dir, tmp_path):
    paths = [
        make_video(tmp_path / "videos" / "a.mp4", seconds=4),
        tmp_path / "videos" / "bad.mp4",
        make_video(tmp_path / "videos" / "b.mp4", width=120, height=160, seconds=3),
        make_video(tmp_path / "videos" / "c.mp4", seconds=2),
    ]
    paths[1].write_text("this is not a video")
    grounder = Grounder(export_dir)
    videos, _ = find_videos([str(p) for p in paths])
    queries, settings = _queries("crack the egg", "pour milk"), GroundSettings(tau=-1.0, viz=True)
    runs = {}
    for workers in (0, 2):
        progress: list[tuple[int, str]] = []
        results, timings = ground_videos(
            grounder,
            videos,
            queries,
            settings,
            tmp_path / f"w{workers}",
            workers=workers,
            on_video=lambda done, total, video_id: progress.append((done, video_id)),
        )
        assert [r.video_id for r in results] == ["a", "bad", "b", "c"]
        assert [r.error is None for r in results] == [True, False, True, True]
        assert progress[-1] == (4, "") and len(progress) == 5
        assert timings.seconds["features"] > 0
        runs[workers] = results
    assert runs[0][1].error == runs[2][1].error
    files = {workers: sorted(p.name for p in (tmp_path / f"w{workers}").iterdir()) for workers in (0, 2)}
    assert files[0] == files[2] and "bad.json" not in files[2] and "a.overlay.mp4" in files[2]
    combined = [json.loads((tmp_path / f"w{w}" / "predictions.json").read_text()) for w in (0, 2)]
    assert list(combined[0]) == list(combined[1]) == ["a", "b", "c"]
    for video_id in combined[0]:
        first, second = (json.loads((tmp_path / f"w{w}" / f"{video_id}.json").read_text()) for w in (0, 2))
        assert [(s["label"], s["start"], s["end"]) for s in first["segments"]] == [
            (s["label"], s["start"], s["end"]) for s in second["segments"]
        ]
        assert np.allclose([s["score"] for s in first["segments"]], [s["score"] for s in second["segments"]])
        assert [f["label"] for f in first["frames"]] == [f["label"] for f in second["frames"]]
        for a, b in zip(first["frames"], second["frames"]):
            assert (a["point"] is None) == (b["point"] is None)
            if a["point"] is not None:
                assert np.allclose(a["point"], b["point"], atol=1e-3)
                assert np.allclose(a["box"], b["box"], atol=1e-3)


def test_ctrl_c_keeps_the_finished_videos_in_predictions_json(export_dir, tmp_path):
    paths = [make_video(tmp_path / "videos" / f"{name}.mp4", seconds=2) for name in ("a", "b", "c")]
    videos, _ = find_videos([str(p) for p in paths])

    def on_video(index: int, total: int, video_id: str) -> None:
        if video_id == "c":
            raise KeyboardInterrupt

    with pytest.raises(GroundingInterrupted) as stopped:
        ground_videos(
            Grounder(export_dir),
            videos,
            _queries("pour milk"),
            GroundSettings(tau=-1.0),
            tmp_path / "out",
            on_video=on_video,
        )
    assert [r.video_id for r in stopped.value.results] == ["a", "b"] and stopped.value.total == 3
    assert stopped.value.timings.seconds["features"] > 0
    assert list(json.loads((tmp_path / "out" / "predictions.json").read_text())) == ["a", "b"]


def test_negative_workers_is_a_user_error(export_dir, small_video, tmp_path):
    videos, _ = find_videos([str(small_video)])
    with pytest.raises(UserError, match="--workers"):
        ground_videos(
            Grounder(export_dir), videos, _queries("pour milk"), GroundSettings(), tmp_path, workers=-1
        )


@pytest.mark.parametrize("heatmap", ["global", "paper"])
def test_centred_models_ignore_what_stays_the_same_all_video(
    export_dir, small_video, tmp_path, monkeypatch, heatmap
):
    """A constant added to every frame's features (a video-wide tint) changes nothing."""
    import torch

    grounder = Grounder(export_dir)
    assert grounder.config.center_video
    videos, _ = find_videos([str(small_video)])
    queries = _queries("crack the egg", "pour milk")
    settings = GroundSettings(tau=-1.0, heatmap=heatmap)
    (plain,), _ = ground_videos(grounder, videos, queries, settings, tmp_path / "a")
    features = Grounder._features
    generator = torch.Generator().manual_seed(0)
    shift_global = torch.randn(grounder.config.visual_dim, generator=generator)
    shift_grid = torch.randn(49, grounder.config.visual_dim, generator=generator)

    def shifted(self, *args):
        times, global_feats, grid_feats, *rest = features(self, *args)
        return (times, global_feats + shift_global, grid_feats + shift_grid, *rest)

    monkeypatch.setattr(Grounder, "_features", shifted)
    (moved,), _ = ground_videos(grounder, videos, queries, settings, tmp_path / "b")
    np.testing.assert_allclose(moved.grounding.similarity, plain.grounding.similarity, atol=1e-4)
    np.testing.assert_allclose(moved.grounding.cells, plain.grounding.cells, atol=1e-4)


def test_threshold_is_the_given_tau_else_the_calibrated_one_else_the_default(export_dir):
    grounder = Grounder(export_dir)
    assert grounder.model.calibrated_threshold is None
    assert grounder.threshold(GroundSettings()) == 0.5
    grounder.model.detection_threshold.fill_(0.125)
    assert grounder.threshold(GroundSettings()) == 0.125
    assert grounder.threshold(GroundSettings(tau=0.3)) == 0.3
