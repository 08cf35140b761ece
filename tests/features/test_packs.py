"""The packed layout: packs read like per-video folders, random access, resumable packing,
damage reported as one line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import stg_cli.features.packing as packing
from helpers.stores import make_store, write_store
from stg_cli import files
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore
from stg_cli.features.packing import pack_store
from stg_cli.features.packs import WRITING
from stg_cli.features.status import store_status

FIELDS = ("frame_times", "global_feats", "grid_feats", "caption_times", "sentence", "words", "word_mask")


def snapshot(store: FeatureStore) -> dict[str, dict]:
    """Every video's arrays (copied), texts and scalar facts."""
    out = {}
    for video_id in store.video_ids:
        video = store.load(video_id)
        out[video_id] = {
            **{name: np.array(getattr(video, name)) for name in FIELDS},
            "facts": (video.texts, video.width, video.height, video.duration),
        }
    return out


def assert_same(left: dict[str, dict], right: dict[str, dict]) -> None:
    assert list(left) == list(right)
    for video_id, arrays in left.items():
        assert arrays["facts"] == right[video_id]["facts"]
        for name in FIELDS:
            assert arrays[name].dtype == right[video_id][name].dtype, (video_id, name)
            np.testing.assert_array_equal(arrays[name], right[video_id][name], err_msg=f"{video_id} {name}")


@pytest.fixture
def per_video(tmp_path: Path) -> Path:
    """A per-video store of 7 videos, one without captions and two with other word slots."""
    fake = make_store(videos=7, captions=3, seconds=12, seed=4)
    empty = fake.load("vid3")
    for name in ("caption_times", "sentence", "words", "word_mask"):
        setattr(empty, name, getattr(empty, name)[:0])
    empty.texts = []
    wide = fake.load("vid5")
    wide.words = np.concatenate([wide.words, np.ones_like(wide.words[:, :2])], axis=1)
    wide.word_mask = np.concatenate([wide.word_mask, np.zeros_like(wide.word_mask[:, :2])], axis=1)
    write_store(tmp_path / "feats", fake)
    return tmp_path / "feats"


def test_packing_keeps_every_array_and_needs_few_files(per_video: Path) -> None:
    before = snapshot(FeatureStore.open(per_video))
    summary = pack_store(per_video, videos_per_pack=3)
    assert summary.videos_packed == 7 and len(summary.packs) == 3 and summary.store_videos == 7
    assert not any((per_video / "videos").iterdir()) and not any((per_video / "tmp").iterdir())
    assert sorted(len(list((per_video / "packs" / name).iterdir())) for name in summary.packs) == [8, 8, 8]
    store = FeatureStore.open(per_video)
    assert all("pack" in entry for entry in store.manifest["videos"].values())
    assert store.manifest["layout"] == {"packs": 3, "packed_videos": 7}
    assert_same(before, snapshot(store))
    again = pack_store(per_video, videos_per_pack=3)  # nothing left to do
    assert again.videos_packed == 0 and again.store_videos == 7


def test_a_clip_is_read_from_the_packs_memory_maps(per_video: Path) -> None:
    before = snapshot(FeatureStore.open(per_video))
    pack_store(per_video, videos_per_pack=4)
    store = FeatureStore.open(per_video)
    rng = np.random.default_rng(0)
    for _ in range(20):
        video_id = store.video_ids[int(rng.integers(len(store)))]
        video = store.load(video_id)
        frame = int(rng.integers(len(video.frame_times)))
        assert isinstance(video.grid_feats, np.memmap) and not video.grid_feats.flags.writeable
        np.testing.assert_array_equal(video.grid_feats[frame], before[video_id]["grid_feats"][frame])
    # every video of a pack is a view of the same 7 maps: a process maps 7 files per pack
    maps = Path("/proc/self/maps")
    if maps.exists():
        packs_dir = str(per_video / "packs")
        mapped = {line.split()[-1] for line in maps.read_text().splitlines() if packs_dir in line}
        assert len(mapped) <= 7 * 2


def test_mixed_layouts_and_a_later_pack(per_video: Path) -> None:
    pack_store(per_video, videos_per_pack=10, only=["vid0", "vid1"])
    store = FeatureStore.open(per_video)
    assert store.manifest["layout"]["packed_videos"] == 2 and len(store) == 7
    assert sorted(p.name for p in (per_video / "videos").iterdir()) == [f"vid{i}" for i in range(2, 7)]
    before = snapshot(store)
    pack_store(per_video)
    assert_same(before, snapshot(FeatureStore.open(per_video)))


def test_an_interrupted_pack_loses_nothing_and_resumes(per_video: Path, monkeypatch) -> None:
    before = snapshot(FeatureStore.open(per_video))
    removed = []
    real_rmtree = files.shutil.rmtree

    def killed_on_the_third(path, *args, **kwargs):  # Ctrl-C half-way through removing a folder
        if not packing.DISCARDED.fullmatch(Path(path).name):
            return real_rmtree(path, *args, **kwargs)
        if len(removed) == 2:
            for item in sorted(Path(path).iterdir())[:3]:
                item.unlink()
            raise KeyboardInterrupt
        removed.append(path)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(files.shutil, "rmtree", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        pack_store(per_video, videos_per_pack=4)
    monkeypatch.undo()
    # the half-removed folder is in tmp/, never under videos/
    assert sorted(p.name for p in (per_video / "videos").iterdir()) == [f"vid{i}" for i in range(3, 7)]
    (left,) = (per_video / "tmp").iterdir()
    assert left.name.startswith(".packed-vid2.")
    assert_same(before, snapshot(FeatureStore.open(per_video)))  # pack + leftover folders: all there
    # a rerun first removes the folders of packed videos; then its pack write dies half-way
    real_write = packing.write_pack
    reads = []

    def dying_write(packs, scratch, name, fingerprint, label, sources):
        def read(source, stem):
            reads.append(stem)
            if len(reads) == 5:
                raise OSError("disk full")
            return source.read(stem)

        dying = [replace(source, read=partial(read, source)) for source in sources]
        return real_write(packs, scratch, name, fingerprint, label, dying)

    monkeypatch.setattr(packing, "write_pack", dying_write)
    with pytest.raises(OSError, match="disk full"):
        pack_store(per_video, videos_per_pack=4)
    monkeypatch.undo()
    assert len(list((per_video / "videos").iterdir())) == 3 and not any((per_video / "tmp").iterdir())
    assert_same(before, snapshot(FeatureStore.open(per_video)))
    summary = pack_store(per_video, videos_per_pack=4)
    assert summary.videos_packed == 3 and not any((per_video / "videos").iterdir())
    assert_same(before, snapshot(FeatureStore.open(per_video)))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", r"damaged pack .*grid\.npy|damaged pack .*mmap"),
        ("index", "unreadable pack index"),
        ("no-index", "no index.json"),
        ("offsets", "lie outside the arrays"),
    ],
)
def test_damaged_packs_give_one_line(per_video: Path, damage: str, message: str) -> None:
    pack_store(per_video, videos_per_pack=10)
    (pack,) = (per_video / "packs").iterdir()
    if damage == "truncate":
        data = (pack / "grid.npy").read_bytes()
        (pack / "grid.npy").write_bytes(data[: len(data) // 2])
    elif damage == "index":
        (pack / "index.json").write_text('{"format": "stg-pack", "vid')
    elif damage == "no-index":
        (pack / "index.json").unlink()
    else:
        index = json.loads((pack / "index.json").read_text())
        index["videos"]["vid6"]["frames"][0] = 10**6
        (pack / "index.json").write_text(json.dumps(index))
    store = FeatureStore.open(per_video)  # the manifest still lists the videos
    with pytest.raises(UserError, match=message) as raised:
        store.load("vid0")
    assert "\n" not in str(raised.value)
    status = store_status(per_video)
    assert list(status.damaged_packs) == [pack.name] and status.videos == 0


def test_a_tampered_manifest_cannot_name_a_folder_outside_packs(per_video: Path) -> None:
    pack_store(per_video)
    manifest = json.loads((per_video / "manifest.json").read_text())
    manifest["videos"]["vid0"]["pack"] = "../videos"
    (per_video / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="refused"):
        FeatureStore.open(per_video).load("vid0")


def test_pack_refuses_bad_arguments(per_video: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="videos-per-pack"):
        pack_store(per_video, videos_per_pack=0)
    with pytest.raises(UserError, match="label"):
        pack_store(per_video, label="../x")
    with pytest.raises(UserError, match="not a feature store"):
        pack_store(tmp_path)


KILLED_PACKING = """
import os, signal, sys
from dataclasses import replace
from functools import partial
import stg_cli.features.packing as packing
from stg_cli import files

real_write = packing.write_pack

def dying_write(packs, scratch, name, fingerprint, label, sources):
    def read(source, stem):
        if stem == "grid":
            os.kill(os.getpid(), signal.SIGKILL)
        return source.read(stem)

    dying = [replace(source, read=partial(read, source)) for source in sources]
    return real_write(packs, scratch, name, fingerprint, label, dying)

packing.write_pack = dying_write
packing.pack_store(sys.argv[1], videos_per_pack=4)
"""


def test_a_killed_pack_leaves_a_half_written_pack_that_the_next_one_removes(per_video: Path) -> None:
    before = snapshot(FeatureStore.open(per_video))
    run = subprocess.run(
        [sys.executable, "-c", KILLED_PACKING, str(per_video)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    (left,) = (per_video / "tmp").iterdir()
    assert WRITING.fullmatch(left.name) and (left / "global.npy").exists()
    assert store_status(per_video).being_written == 1
    summary = pack_store(per_video, videos_per_pack=4)
    assert summary.videos_packed == 7 and not any((per_video / "tmp").iterdir())
    assert store_status(per_video).being_written == 0
    assert_same(before, snapshot(FeatureStore.open(per_video)))


@pytest.mark.parametrize("left", ["without meta.json", "without an array"])
def test_a_half_removed_folder_of_a_packed_video_is_removed(
    per_video: Path, tmp_path: Path, left: str
) -> None:
    """What an older pack, killed while deleting a packed video's folder, left under videos/."""
    shutil.copytree(per_video / "videos" / "vid0", tmp_path / "vid0")
    pack_store(per_video, videos_per_pack=10, only=["vid0", "vid1"])
    shutil.copytree(tmp_path / "vid0", per_video / "videos" / "vid0")
    (per_video / "videos" / "vid0" / ("meta.json" if left == "without meta.json" else "grid.npy")).unlink()
    summary = pack_store(per_video, videos_per_pack=10, only=["vid0"])
    assert summary.damaged == {} and summary.duplicates_removed == 1
    assert not (per_video / "videos" / "vid0").exists() and not any((per_video / "tmp").iterdir())
    assert "pack" in FeatureStore.open(per_video).manifest["videos"]["vid0"]


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_the_packer_reports_an_array_cut_short(per_video: Path, cut: str) -> None:
    path = per_video / "videos" / "vid2" / "words.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "half" else b"")
    summary = pack_store(per_video, videos_per_pack=10)
    assert list(summary.damaged) == ["vid2"] and "words.npy" in summary.damaged["vid2"]
    assert "\n" not in summary.damaged["vid2"] and summary.videos_packed == 6
    with pytest.raises(UserError, match="damaged features of 'vid2'.*words.npy"):
        FeatureStore.open(per_video).load("vid2")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda index: index.update(videos=["vid0"]),
        lambda index: index.update(videos="vid0"),
        lambda index: index.update(arrays=[1, 2]),
        lambda index: index["arrays"].update(grid="float16"),
        lambda index: index["videos"].update(vid0=[0, 1]),
        lambda index: index["videos"]["vid0"].update(meta="text"),
        lambda index: index["videos"]["vid0"].update(frames=[0.5, 3]),
        lambda index: index["videos"]["vid0"].update(frames=[-1, 3]),
        lambda index: index["videos"]["vid0"].update(captions=[0]),
        lambda index: index["videos"]["vid0"].update(words={"0": 1}),
    ],
)
def test_a_malformed_index_is_one_line(per_video: Path, tamper) -> None:
    pack_store(per_video, videos_per_pack=10)
    (pack,) = (per_video / "packs").iterdir()
    index = json.loads((pack / "index.json").read_text())
    tamper(index)
    (pack / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="damaged pack") as raised:
        FeatureStore.open(per_video).load("vid1")
    assert "\n" not in str(raised.value)
    assert list(store_status(per_video, rebuild=True).damaged_packs) == [pack.name]


def test_without_file_locks_only_the_own_label_s_half_written_packs_are_removed(
    per_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import stg_cli.features.store as store_module

    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(store_module.fcntl, "flock", no_locks)
    mine, theirs = (f".pack-{label}-0123456789abcdef.ab12cd34" for label in ("pack", "shard-1-of-2"))
    for name in (mine, theirs):
        (per_video / "tmp" / name).mkdir()
    assert pack_store(per_video).videos_packed == 7
    assert [p.name for p in (per_video / "tmp").iterdir()] == [theirs]
