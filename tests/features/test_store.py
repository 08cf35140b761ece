from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stg_cli.errors import UserError
from stg_cli.features import FeatureStore, StoreConfig, StoreWriter, safe_name
from stg_cli.features.layout import ARRAYS

CONFIG = StoreConfig(
    backbone="tiny",
    weights=None,
    text="word2vec",
    grid=(2, 3),
    visual_dim=4,
    text_dim=5,
    fps=1.0,
    input_size=(112, 112),
    visual_fingerprint="v1",
    text_fingerprint="t1",
)


def arrays(frames: int = 6, captions: int = 2, words: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((captions, words), dtype=bool)
    mask[:, :2] = True
    return {
        "frame_times": np.arange(frames, dtype=np.float32),
        "global": rng.normal(size=(frames, 4)).astype(np.float32),
        "grid": rng.normal(size=(frames, 6, 4)).astype(np.float32),
        "caption_times": np.array([[i, i + 1.5] for i in range(captions)], dtype=np.float32).reshape(-1, 2),
        "sentence": rng.normal(size=(captions, 5)).astype(np.float32),
        "words": rng.normal(size=(captions, words, 5)).astype(np.float32),
        "word_mask": mask,
    }


INFO = {"width": 640, "height": 480, "duration": 6.0}


def write(writer: StoreWriter, video_id: str, seed: int = 0, **kwargs) -> dict:
    data = arrays(seed=seed, **kwargs)
    writer.write(video_id, data, [f"text {i}" for i in range(len(data["caption_times"]))], INFO)
    return data


def test_round_trip_with_memory_mapped_fp16(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "feats", CONFIG)
    data = write(writer, "vid/one?")
    write(writer, "two", seed=1, captions=0)
    manifest = writer.rebuild_manifest()
    assert manifest["counts"] == {"videos": 2, "frames": 12, "captions": 2, "failures": 0}

    store = FeatureStore.open(tmp_path / "feats")
    assert store.video_ids == ["two", "vid/one?"]
    assert store.config.grid == (2, 3) and store.config.fingerprint == CONFIG.with_fingerprint().fingerprint
    video = store.load("vid/one?")
    assert isinstance(video.grid_feats, np.memmap) and video.grid_feats.dtype == np.float16
    assert not video.grid_feats.flags.writeable
    np.testing.assert_allclose(video.grid_feats, data["grid"], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(video.word_mask, data["word_mask"])
    assert video.texts == ["text 0", "text 1"] and (video.width, video.height, video.duration) == (
        640,
        480,
        6.0,
    )
    assert (tmp_path / "feats" / "videos" / safe_name("vid/one?") / "meta.json").exists()
    empty = store.load("two")
    assert empty.words.shape[0] == 0 and empty.caption_times.shape == (0, 2)
    with pytest.raises(UserError, match="not in the feature store"):
        store.load("three")


def test_safe_names() -> None:
    assert safe_name("abc_DEF-1.2") == "abc_DEF-1.2"
    assert safe_name("a/b") != safe_name("a_b") and "/" not in safe_name("a/b")
    assert not safe_name("..").startswith(".") and not safe_name(".hidden").startswith(".")
    assert len(safe_name("x" * 500)) < 140


def test_invalid_arrays_write_nothing(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "feats", CONFIG)
    bad = arrays()
    bad["grid"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        writer.write("v", bad, ["a", "b"], INFO)
    wrong = arrays()
    wrong["global"] = wrong["global"][:, :3]
    with pytest.raises(ValueError, match="global has shape"):
        writer.write("v", wrong, ["a", "b"], INFO)
    assert not writer.is_done("v") and not any((tmp_path / "feats" / "tmp").iterdir())
    big = arrays()
    big["global"][0, 0] = 1e6  # beyond fp16: clipped, not inf
    writer.write("v", big, ["a", "b"], INFO)
    writer.rebuild_manifest()
    assert np.isfinite(FeatureStore.open(tmp_path / "feats").load("v").global_feats).all()


def test_changed_fingerprint_is_refused(tmp_path: Path) -> None:
    StoreWriter(tmp_path / "feats", CONFIG)
    StoreWriter(tmp_path / "feats", CONFIG)  # same configuration: resumes
    with pytest.raises(UserError, match=r"another configuration \(fps: 1.0 → 2.0\)"):
        StoreWriter(tmp_path / "feats", replace(CONFIG, fps=2.0))
    with pytest.raises(UserError, match="text_fingerprint: t1 → t2"):
        StoreWriter(tmp_path / "feats", replace(CONFIG, text_fingerprint="t2"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a feature store"):
        StoreWriter(tmp_path / "other", CONFIG)


def test_shards_merge_into_one_manifest(tmp_path: Path) -> None:
    """Two writers (two machines) on disjoint videos: whichever rebuilds last lists everything."""
    first, second = StoreWriter(tmp_path / "f", CONFIG), StoreWriter(tmp_path / "f", CONFIG)
    write(first, "a")
    first.rebuild_manifest()
    write(second, "b")
    second.record_failure("c", "/videos/c.mp4", "corrupt")
    write(first, "d")
    second.rebuild_manifest()  # sees a, b and d even though d came from the other writer
    manifest = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert list(manifest["videos"]) == ["a", "b", "d"]
    assert manifest["failures"] == {"c": {"source": "/videos/c.mp4", "reason": "corrupt"}}
    write(first, "c")  # a later success removes the failure
    assert "c" not in first.rebuild_manifest()["failures"]


def test_partial_writes_are_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = StoreWriter(tmp_path / "f", CONFIG)
    write(writer, "a")
    calls = []
    real_save = np.save

    def failing_save(handle, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_save(handle, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write(writer, "b")
    monkeypatch.undo()
    assert not writer.is_done("b") and not any((tmp_path / "f" / "tmp").iterdir())
    # a killed process leaves its folder under tmp/: ignored, and removed when the video is redone
    stale = tmp_path / "f" / "tmp" / "b.x1y2z3w4"
    stale.mkdir()
    (stale / "global.npy").write_bytes(b"half")
    writer.rebuild_manifest()
    assert FeatureStore.open(tmp_path / "f").video_ids == ["a"]
    write(writer, "b")
    assert not stale.exists()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        FeatureStore.open(tmp_path / "nope")
    with pytest.raises(UserError, match="no store.json"):
        FeatureStore.open(tmp_path)
    writer = StoreWriter(tmp_path / "f", CONFIG)
    write(writer, "a")
    with pytest.raises(UserError, match="unfinished"):
        FeatureStore.open(tmp_path / "f")
    writer.rebuild_manifest()
    FeatureStore.open(tmp_path / "f")
    (tmp_path / "f" / "videos" / "a" / "grid.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(UserError, match="damaged features of 'a'"):
        FeatureStore.open(tmp_path / "f").load("a")
    header = json.loads((tmp_path / "f" / "store.json").read_text())
    header["version"] = 99
    (tmp_path / "f" / "store.json").write_text(json.dumps(header))
    with pytest.raises(UserError, match="format 99"):
        FeatureStore.open(tmp_path / "f")
    empty = StoreWriter(tmp_path / "g", CONFIG)
    empty.rebuild_manifest()
    with pytest.raises(UserError, match="holds no video"):
        FeatureStore.open(tmp_path / "g")
    (tmp_path / "g" / "manifest.json").write_text("{broken")
    with pytest.raises(UserError, match="unreadable manifest"):
        FeatureStore.open(tmp_path / "g")
    assert os.listdir(tmp_path / "g" / "tmp") == []


def test_running_out_of_memory_maps_points_to_packing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    writer = StoreWriter(tmp_path / "f", CONFIG)
    write(writer, "a")
    writer.rebuild_manifest()
    store = FeatureStore.open(tmp_path / "f")

    for code in (errno.ENOMEM, errno.EMFILE):

        def no_more_maps(*args, code=code, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(np, "load", no_more_maps)
        with pytest.raises(UserError, match="too many memory maps and files .* stg store pack"):
            store.load("a")


def test_a_store_another_shard_is_creating_is_not_refused(tmp_path: Path) -> None:
    """A shard that starts while another one has made the folders but not yet store.json."""
    root = tmp_path / "f"
    for sub in ("videos", "failures", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / ".lock").touch()
    StoreWriter(root, CONFIG)
    assert (root / "store.json").exists()


def test_a_write_removes_only_its_own_video_s_leftovers(tmp_path: Path) -> None:
    """``clip.v2``'s folder being written by another shard is not a leftover of ``clip``."""
    writer = StoreWriter(tmp_path / "f", CONFIG)
    scratch = tmp_path / "f" / "tmp"
    other, stale, longer = scratch / "clip.v2.k3j4h5g6", scratch / "clip.ab12cd34", scratch / "clip.v2"
    for folder in (other, stale, longer):
        folder.mkdir()
    write(writer, "clip")
    assert sorted(p.name for p in scratch.iterdir()) == ["clip.v2", "clip.v2.k3j4h5g6"]


def test_video_folders_are_written_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = StoreWriter(tmp_path / "f", CONFIG)
    flushed = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    write(writer, "a")
    names = {Path(path).name for path in flushed}
    assert {f"{stem}.npy" for stem in ARRAYS} | {"meta.json", "videos"} <= names


@pytest.mark.parametrize("cut", ["half", "empty", "header"])
def test_an_array_cut_short_is_one_line_naming_the_video(tmp_path: Path, cut: str) -> None:
    writer = StoreWriter(tmp_path / "f", CONFIG)
    write(writer, "a")
    writer.rebuild_manifest()
    path = tmp_path / "f" / "videos" / "a" / "grid.npy"
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) - 10], "empty": b"", "header": data[:20]}[cut])
    with pytest.raises(UserError, match="damaged features of 'a'.*grid.npy") as raised:
        FeatureStore.open(tmp_path / "f").load("a")
    assert "\n" not in str(raised.value)
