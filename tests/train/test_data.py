"""Tests of the training samples and the batch order."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.stores import make_store
from stg_cli.errors import UserError
from stg_cli.train.data import BatchOrder, ClipDataset


def test_dataset_collates_padded_batches(store):
    data = ClipDataset(store, frames_u=8)
    assert len(data) == 24
    batch = data.batch([0, 5, 23])
    assert batch.global_feats.shape == (3, 8, 12)
    assert batch.grid_feats.shape == (3, 8, 4, 12)
    assert batch.frame_mask.shape == (3, 8) and batch.boundary.shape == (3, 2)
    assert batch.words.shape[0] == 3 and batch.words.shape[2] == 8
    assert batch.word_mask.any(1).all()
    assert batch.words.shape[1] == int(batch.word_mask.sum(1).max())
    assert (batch.global_feats[~batch.frame_mask] == 0).all()
    video = store.load("vid0")
    window = data.windows[0]
    np.testing.assert_allclose(
        batch.global_feats[0, window >= 0].numpy(), video.global_feats[window[window >= 0]].astype(np.float32)
    )


def test_dataset_rejects_wrong_dims_and_empty_stores():
    bad = make_store()
    bad.config = type(bad.config)(visual_dim=13)
    with pytest.raises(UserError, match="expected"):
        ClipDataset(bad, frames_u=8)
    empty = make_store(videos=1)
    empty.load("vid0").word_mask[:] = False
    with pytest.raises(UserError, match="no training sample"):
        ClipDataset(empty, frames_u=8)


def test_batch_order_is_deterministic_and_splits_by_rank():
    order = BatchOrder(num_samples=10, global_batch=4, seed=3)
    assert order.steps_per_epoch == 2
    assert list(order.ids(1)) == list(BatchOrder(10, 4, 3).ids(1))
    whole = order.ids(5)
    assert list(whole) == list(order.ids(5, 0, 2)) + list(order.ids(5, 1, 2))
    epoch = set(order.ids(0)) | set(order.ids(1))
    assert len(epoch) == 8
    assert list(order.ids(0)) != list(order.ids(2))  # a new permutation per epoch
    with pytest.raises(UserError, match="fewer than the batch size"):
        BatchOrder(3, 4, 0)


def test_same_video_order_visits_each_videos_clips_together():
    groups = np.array([0] * 5 + [1] * 7 + [2] * 3 + [3] * 5)
    order = BatchOrder(20, 4, 7, groups)
    for epoch in range(3):
        visit = order.epoch_order(epoch)
        assert sorted(visit) == list(range(20))
        videos = groups[visit]
        # each video's clips form one run: the video changes exactly three times
        assert int((videos[1:] != videos[:-1]).sum()) == 3
    assert list(order.epoch_order(0)) != list(order.epoch_order(1))
    whole = np.concatenate([order.ids(step) for step in range(order.steps_per_epoch)])
    assert list(whole) == list(order.epoch_order(0))
    assert list(order.ids(2)) == list(BatchOrder(20, 4, 7, groups).ids(2))
    # the grouped order keeps the shuffled order's draw: without groups nothing changes
    assert list(BatchOrder(20, 4, 7).epoch_order(0)) == list(BatchOrder(20, 4, 7, None).epoch_order(0))
    with pytest.raises(ValueError, match="groups"):
        BatchOrder(20, 4, 7, groups[:10])


def test_sample_videos_name_each_samples_video(store):
    data = ClipDataset(store, frames_u=8)
    videos = data.sample_videos()
    assert videos.shape == (len(data),)
    assert [int(video) for video in videos] == [slot for slot, _ in data.owners]


def test_centred_batches_subtract_each_videos_means(store):
    plain = ClipDataset(store, frames_u=8)
    centred = ClipDataset(store, frames_u=8, center_video=True)
    slot, _ = centred.owners[5]
    video = centred.videos[slot]
    global_mean = np.asarray(video.global_feats, dtype=np.float64).mean(0)
    grid_mean = np.asarray(video.grid_feats, dtype=np.float64).mean(0)
    a, b = plain.batch([5]), centred.batch([5])
    real = b.frame_mask[0].numpy()
    np.testing.assert_allclose(
        b.global_feats[0, real].numpy(), a.global_feats[0, real].numpy() - global_mean, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        b.grid_feats[0, real].numpy(), a.grid_feats[0, real].numpy() - grid_mean, rtol=1e-5, atol=1e-5
    )
    assert (b.global_feats[0, ~real] == 0).all()
    # the input statistics are those of the centred features
    from stg_cli.train.data import feature_stats

    assert abs(float(feature_stats(centred)["global"][0].mean())) < 1e-4


def test_a_packed_store_gives_the_same_batches(tmp_path):
    from helpers.stores import write_store
    from stg_cli.features import FeatureStore
    from stg_cli.features.packing import pack_store

    fake = make_store()
    per_video = write_store(tmp_path / "per-video", fake)
    write_store(tmp_path / "packed", fake)
    pack_store(tmp_path / "packed", videos_per_pack=3)
    packed = FeatureStore.open(tmp_path / "packed")
    assert packed.manifest["layout"]["packed_videos"] == 4
    left, right = (
        ClipDataset(per_video, frames_u=8, center_video=True),
        ClipDataset(packed, frames_u=8, center_video=True),
    )
    ids = list(range(len(left)))
    for name, value in left.batch(ids).model_inputs().items():
        assert (value == right.batch(ids).model_inputs()[name]).all(), name
