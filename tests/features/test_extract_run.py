from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stg_cli.backbones import load_visual
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore, encode_video
from stg_cli.features.extract import ExtractOptions, decode_to_file, extract, parse_shard, shard_from_env
from stg_cli.video import write_video

OPTIONS = dict(word2vec_dim=16)
GOOD = ["alpha", "bravo", "charlie", "delta", "echo"]


def _noise(seed: int, count: int):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("extract")
    videos = root / "videos"
    videos.mkdir()
    captions = {}
    for index, name in enumerate(GOOD):
        write_video(videos / f"{name}.mp4", _noise(index, 40 + 10 * index), fps=10)
        captions[name] = {
            "start": [0.0, 1.5, 3.0],
            "end": [1.0, 3.0, 4.0],
            "text": ["crack the egg", "pour milk into the bowl", f"whisk {name}"],
        }
    data = (videos / "alpha.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (videos / "notavideo.mp4").write_text("hello\n" * 50)
    write_video(videos / "silent.mp4", _noise(9, 30), fps=10)  # no captions
    (videos / "readme.txt").write_text("ignored")
    captions["truncated"] = captions["notavideo"] = captions["alpha"]
    captions["elsewhere"] = captions["alpha"]  # captions of a video that is not in the folder
    (root / "captions.json").write_text(json.dumps(captions))
    return {"root": root, "videos": videos, "captions": root / "captions.json"}


def test_mixed_folder_summary_and_store(dataset: dict[str, Path], tmp_path: Path) -> None:
    seen = []
    summary = extract(
        [dataset["videos"]],
        dataset["captions"],
        tmp_path / "feats",
        ExtractOptions(**OPTIONS),
        on_video=seen.append,
    )
    report = summary.to_dict()
    assert (report["done"], report["failed"], report["no_captions"], report["already_stored"]) == (5, 2, 1, 0)
    assert {f["video"] for f in report["failures"]} == {"truncated", "notavideo"}
    assert all("\n" not in f["reason"] and f["reason"] for f in report["failures"])
    assert report["skipped_no_captions"] == ["silent"] and report["ignored_files"][0].endswith("readme.txt")
    assert report["captions_without_video"] == 1 and report["frames"] == sum(4 + i for i in range(5))
    assert len(seen) == 8

    store = FeatureStore.open(tmp_path / "feats")
    assert store.video_ids == sorted(GOOD)
    assert set(store.manifest["failures"]) == {"truncated", "notavideo"}
    video = store.load("charlie")  # 6 s at 10 fps → 6 frames at 1 fps
    assert video.frame_times.tolist() == [0, 1, 2, 3, 4, 5]
    assert video.grid_feats.shape == (6, 49, 256) and video.global_feats.dtype == np.float16
    assert video.texts[2] == "whisk charlie" and video.words.shape[:2] == video.word_mask.shape
    assert (video.width, video.height) == (64, 48) and video.duration == pytest.approx(6.0, abs=0.1)
    direct = encode_video(dataset["videos"] / "charlie.mp4", load_visual("tiny"))
    np.testing.assert_allclose(video.grid_feats, direct.grid_feats.numpy(), rtol=2e-3, atol=2e-3)
    encoder = store.text_encoder()
    features = encoder.encode(video.texts)
    np.testing.assert_allclose(video.sentence, features.sentence.numpy(), rtol=2e-3, atol=2e-3)
    assert store.visual_backbone().fingerprint == store.config.visual_fingerprint

    again = extract([dataset["videos"]], dataset["captions"], tmp_path / "feats", ExtractOptions(**OPTIONS))
    assert again.count("stored") == 5 and again.count("done") == 0 and again.count("failed") == 2
    assert "reused" in again.text_encoder
    with pytest.raises(UserError, match=r"another configuration \(fps"):
        extract(
            [dataset["videos"]], dataset["captions"], tmp_path / "feats", ExtractOptions(fps=2.0, **OPTIONS)
        )


@pytest.mark.parametrize("fps", [0.0, -1.0, float("nan")])
def test_a_non_positive_fps_is_refused_not_replaced(dataset: dict[str, Path], tmp_path: Path, fps) -> None:
    with pytest.raises(UserError, match="--fps must be a positive number"):
        extract(
            [dataset["videos"]], dataset["captions"], tmp_path / "feats", ExtractOptions(fps=fps, **OPTIONS)
        )


def test_shards_cover_every_video_once(dataset: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    videos = [dataset["videos"] / f"{name}.mp4" for name in GOOD]
    done: list[str] = []
    for index in range(3):
        summary = extract(
            videos, dataset["captions"], tmp_path / "sharded", ExtractOptions(shard=(index, 3), **OPTIONS)
        )
        done += [r.video_id for r in summary.results if r.status == "done"]
    assert sorted(done) == sorted(GOOD)  # every video exactly once
    assert FeatureStore.open(tmp_path / "sharded").video_ids == sorted(GOOD)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_from_env() == (1, 2)
    summary = extract(videos, dataset["captions"], tmp_path / "ranked", ExtractOptions(**OPTIONS))
    assert summary.shard == (1, 2) and [r.video_id for r in summary.results] == ["bravo", "delta"]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(UserError, match="shard"):
            parse_shard(bad)


def test_workers_give_identical_features(dataset: dict[str, Path], tmp_path: Path) -> None:
    videos = [dataset["videos"] / f"{name}.mp4" for name in GOOD[:3]] + [dataset["videos"] / "notavideo.mp4"]
    stores = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        summary = extract(videos, dataset["captions"], out, ExtractOptions(workers=workers, **OPTIONS))
        assert summary.count("done") == 3 and summary.count("failed") == 1
        stores[workers] = FeatureStore.open(out)
    for name in GOOD[:3]:
        for workers in (1, 2):
            for field in ("frame_times", "global_feats", "grid_feats", "sentence", "words"):
                np.testing.assert_array_equal(
                    getattr(stores[0].load(name), field), getattr(stores[workers].load(name), field)
                )


KILLER = """
import os, signal, sys
import numpy as np
from stg_cli.features.extract import ExtractOptions, extract
videos, captions, out, mode = sys.argv[1:5]
done = []
if mode == "mid-write":
    real_save, calls = np.save, []
    def save(handle, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7 + 3:  # third array of the second video
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(handle, array, *args, **kwargs)
    np.save = save
def on_video(result):
    done.append(result.video_id)
    if mode == "after-two" and len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
extract([videos], captions, out, ExtractOptions(word2vec_dim=16), on_video=on_video)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["after-two", "mid-write"])
def test_resume_after_a_killed_run(dataset: dict[str, Path], tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in GOOD:
        os.symlink(dataset["videos"] / f"{name}.mp4", folder / f"{name}.mp4")
    out = tmp_path / "feats"
    run = subprocess.run(
        [sys.executable, "-c", KILLER, str(folder), str(dataset["captions"]), str(out), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    finished = sorted(p.name for p in (out / "videos").iterdir())
    assert len(finished) == (2 if mode == "after-two" else 1)
    with pytest.raises(UserError, match="unfinished"):
        FeatureStore.open(out)
    if mode == "mid-write":
        assert len(list((out / "tmp").iterdir())) == 1  # the half-written video, never read
    summary = extract([folder], dataset["captions"], out, ExtractOptions(word2vec_dim=16))
    assert summary.count("stored") == len(finished) and summary.count("done") == 5 - len(finished)
    store = FeatureStore.open(out)
    assert store.video_ids == sorted(GOOD)
    for name in GOOD:
        assert np.isfinite(store.load(name).grid_feats).all()
    assert not any((out / "tmp").iterdir())


def _dying_decode(path, *args, **kwargs):
    """Decodes like the workers do, but the process dies on bravo (as if killed for memory)."""
    if Path(path).stem == "bravo":
        os._exit(1)
    return decode_to_file(path, *args, **kwargs)


def test_a_dead_worker_fails_one_video(dataset: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    import stg_cli.features.extract as extract_module

    monkeypatch.setattr(extract_module, "decode_to_file", _dying_decode)
    videos = [dataset["videos"] / f"{name}.mp4" for name in GOOD[:4]]
    summary = extract(videos, dataset["captions"], tmp_path / "f", ExtractOptions(workers=1, **OPTIONS))
    assert [r.video_id for r in summary.failed] == ["bravo"] and "died" in summary.failed[0].reason
    assert FeatureStore.open(tmp_path / "f").video_ids == ["alpha", "charlie", "delta"]
    assert not any((tmp_path / "f" / "tmp").iterdir())  # no decoded-frame files left behind


def test_scratch_of_killed_extractions_is_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from stg_cli.features.extract import _remove_orphaned_scratch

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    host = socket.gethostname()
    names = {
        "dead": f".frames-{host}-{gone.stdout.strip()}-k9x2",
        "live": f".frames-{host}-{os.getpid()}-a1b2",
        "other host": f".frames-elsewhere-{gone.stdout.strip()}-c3d4",
        "a video's": "clip.ab12cd",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    _remove_orphaned_scratch(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for kind, name in names.items() if kind != "dead"
    )


def _contents(store: FeatureStore) -> dict:
    """Every video's arrays (copied) and texts, and the failures, of an opened store."""
    fields = ("frame_times", "global_feats", "grid_feats", "caption_times", "sentence", "words", "word_mask")
    videos = {}
    for video_id in store.video_ids:
        video = store.load(video_id)
        videos[video_id] = {"texts": video.texts, **{name: np.array(getattr(video, name)) for name in fields}}
    return {"videos": videos, "failures": sorted(store.manifest["failures"])}


def _assert_same_store(left: dict, right: dict) -> None:
    assert list(left["videos"]) == list(right["videos"]) and left["failures"] == right["failures"]
    for video_id, arrays in left["videos"].items():
        assert arrays["texts"] == right["videos"][video_id]["texts"]
        for name, array in arrays.items():
            if name != "texts":
                np.testing.assert_array_equal(
                    array, right["videos"][video_id][name], err_msg=f"{video_id} {name}"
                )


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["videos", "packed"])
def test_concurrent_shard_processes_build_the_one_process_store(
    dataset: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    """Three processes extract disjoint shards into one store at the same time (as an array
    job on several machines would): the store equals the one a single process makes."""
    import multiprocessing

    from stg_cli.features.status import store_status

    videos = [dataset["videos"] / f"{name}.mp4" for name in GOOD] + [dataset["videos"] / "notavideo.mp4"]
    extract(videos, dataset["captions"], tmp_path / "one", ExtractOptions(**OPTIONS))
    shared = tmp_path / "shared"
    jobs = [
        (
            videos,
            dataset["captions"],
            shared,
            ExtractOptions(shard=(i, 3), layout=layout, videos_per_pack=1, **OPTIONS),
        )
        for i in range(3)
    ]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        summaries = pool.starmap(extract, jobs)
    assert sorted(r.video_id for s in summaries for r in s.results if r.status == "done") == sorted(GOOD)
    _assert_same_store(_contents(FeatureStore.open(tmp_path / "one")), _contents(FeatureStore.open(shared)))
    if layout == "packed":
        assert not any((shared / "videos").iterdir()) and len(list((shared / "packs").iterdir())) == 5

    status = store_status(shared)
    assert (status.videos, list(status.failed), status.manifest_current) == (5, ["notavideo"], True)
    assert [(r.shard, r.state, r.done + r.failed, r.remaining) for r in status.shards] == [
        ((0, 3), "finished", 2, 0),
        ((1, 3), "finished", 2, 0),
        ((2, 3), "finished", 2, 0),
    ]
    # a shard's rerun is idempotent: it skips its stored videos and retries its failure
    again = extract(
        videos, dataset["captions"], shared, ExtractOptions(shard=(2, 3), layout=layout, **OPTIONS)
    )
    assert (again.count("done"), again.count("stored"), again.count("failed")) == (0, 1, 1)
    _assert_same_store(_contents(FeatureStore.open(tmp_path / "one")), _contents(FeatureStore.open(shared)))


def test_layout_is_checked(dataset: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--layout must be one of videos, packed"):
        extract(
            [dataset["videos"]], dataset["captions"], tmp_path / "f", ExtractOptions(layout="flat", **OPTIONS)
        )
