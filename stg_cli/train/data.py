"""Training samples from a feature store: (U-frame window, sentence) pairs and their batches.

Every caption of every stored video with at least one word token and one frame is a sample.
Its candidate window comes from :func:`stg_cli.features.samples.candidate_window`: the caption
widened to ``min_time`` seconds around its centre, and U frames covering it and its
surroundings (padding, index -1, where the video is too short).

Batch order: the samples of epoch e are permuted by a generator seeded with ``seed + e``; step
s of the run takes batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch`` (the last
incomplete batch of an epoch is dropped). The data position of a run is therefore its step
alone, which makes resuming exact. With several processes, the global batch is split into
contiguous equal parts by rank, so the union of the processes' batches is the one-process batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from stg_cli.errors import UserError
from stg_cli.features.samples import candidate_window
from stg_cli.models.grounding import centring_offsets


class StoreLike(Protocol):
    """What training needs of :class:`stg_cli.features.FeatureStore`."""

    config: object
    video_ids: list[str]

    def load(self, video_id: str): ...


@dataclass
class Batch:
    """Tensors of B samples (float32 features, bool masks).

    global_feats [B, U, Dv]; grid_feats [B, U, N, Dv]; frame_mask [B, U]; boundary [B, 2]
    int64 (first/last window position inside the widened caption); sentence [B, Dw];
    words [B, K, Dw] (K = most real words in the batch); word_mask [B, K].
    """

    global_feats: Tensor
    grid_feats: Tensor
    frame_mask: Tensor
    boundary: Tensor
    sentence: Tensor
    words: Tensor
    word_mask: Tensor

    @property
    def size(self) -> int:
        return self.global_feats.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            **{name: getattr(self, name).to(device, non_blocking=True) for name in self.__dataclass_fields__}
        )

    def model_inputs(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class ClipDataset:
    """All (video, caption) samples of a store with their precomputed candidate windows.

    Args:
        store: an opened feature store (or anything with ``config``, ``video_ids``, ``load``).
        frames_u: U, frames per window.
        min_time: captions shorter than this (seconds) are widened around their centre.
        window_fn: the window function (default
            :func:`stg_cli.features.samples.candidate_window`).
        center_video: batches hold each video's features minus its means
            (:func:`stg_cli.models.grounding.centring_offsets`, the model's ``center_video``).

    Raises:
        UserError: when the store holds no usable sample, or its arrays do not match its
            configuration (visual/text width, grid size).
    """

    def __init__(
        self,
        store: StoreLike,
        frames_u: int,
        min_time: float = 5.0,
        window_fn: Callable | None = None,
        center_video: bool = False,
    ) -> None:
        window_fn = window_fn or candidate_window
        config = store.config
        self.visual_dim = int(config.visual_dim)
        self.text_dim = int(config.text_dim)
        self.cells = int(config.grid[0]) * int(config.grid[1])
        self.frames_u = int(frames_u)
        self.videos = []
        # per video: (mean global [Dv], mean grid [N, Dv]) subtracted from its features
        self.means: list[tuple[np.ndarray, np.ndarray]] = []
        windows: list[np.ndarray] = []
        boundaries: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        for video_id in store.video_ids:
            video = store.load(video_id)
            self._check(video)
            if len(video.frame_times) == 0:
                continue
            slot = len(self.videos)
            self.videos.append(video)
            self.means.append(self._means(video, center_video))
            real_words = np.asarray(video.word_mask).any(axis=1) if len(video.texts) else []
            for caption, (start, end) in enumerate(np.asarray(video.caption_times, dtype=np.float64)):
                if not real_words[caption]:
                    continue
                indices, boundary = window_fn(
                    np.asarray(video.frame_times), float(start), float(end), self.frames_u, min_time
                )
                if not (np.asarray(indices) >= 0).any():
                    continue
                windows.append(np.asarray(indices, dtype=np.int64))
                boundaries.append(np.asarray(boundary, dtype=np.int64))
                owners.append((slot, caption))
        if not owners:
            raise UserError(
                "the feature store holds no training sample (no caption with both frames and words)"
            )
        self.windows = np.stack(windows)
        self.boundaries = np.stack(boundaries)
        self.owners = owners

    def __len__(self) -> int:
        return len(self.owners)

    def sample_videos(self) -> np.ndarray:
        """The video (its index in ``videos``) of each sample [num_samples]."""
        return np.array([slot for slot, _ in self.owners], dtype=np.int64)

    def _means(self, video, center_video: bool) -> tuple[np.ndarray, np.ndarray]:
        return centring_offsets(center_video, video.global_feats, video.grid_feats)

    def _check(self, video) -> None:
        grid = np.asarray(video.grid_feats).shape
        glob = np.asarray(video.global_feats).shape
        if (
            len(glob) != 2
            or glob[1] != self.visual_dim
            or len(grid) != 3
            or grid[1:] != (self.cells, self.visual_dim)
        ):
            raise UserError(
                f"video {video.video_id} in the feature store has global {glob} and grid {grid} "
                f"features, expected [U, {self.visual_dim}] and [U, {self.cells}, {self.visual_dim}]"
            )
        if len(video.texts) and np.asarray(video.words).shape[-1] != self.text_dim:
            raise UserError(
                f"video {video.video_id} in the feature store has {np.asarray(video.words).shape[-1]}-d "
                f"word features, expected {self.text_dim}"
            )

    def batch(self, sample_ids: list[int] | np.ndarray) -> Batch:
        """Collates samples into a :class:`Batch` (padding frames are zero and masked)."""
        ids = [int(i) for i in sample_ids]
        count, frames_u = len(ids), self.frames_u
        global_feats = np.zeros((count, frames_u, self.visual_dim), dtype=np.float32)
        grid_feats = np.zeros((count, frames_u, self.cells, self.visual_dim), dtype=np.float32)
        frame_mask = self.windows[ids] >= 0
        sentence = np.zeros((count, self.text_dim), dtype=np.float32)
        word_rows, mask_rows = [], []
        for row, sample in enumerate(ids):
            slot, caption = self.owners[sample]
            video = self.videos[slot]
            window = self.windows[sample]
            real = window >= 0
            positions = np.nonzero(real)[0]
            frame_ids = window[real]
            global_mean, grid_mean = self.means[slot]
            global_feats[row, positions] = video.global_feats[frame_ids] - global_mean
            grid_feats[row, positions] = video.grid_feats[frame_ids] - grid_mean
            sentence[row] = video.sentence[caption]
            mask = np.asarray(video.word_mask[caption], dtype=bool)
            word_rows.append(np.asarray(video.words[caption], dtype=np.float32)[mask])
            mask_rows.append(int(mask.sum()))
        width = max(mask_rows)
        words = np.zeros((count, width, self.text_dim), dtype=np.float32)
        word_mask = np.zeros((count, width), dtype=bool)
        for row, (values, real) in enumerate(zip(word_rows, mask_rows)):
            words[row, :real] = values
            word_mask[row, :real] = True
        return Batch(
            global_feats=torch.from_numpy(global_feats),
            grid_feats=torch.from_numpy(grid_feats),
            frame_mask=torch.from_numpy(frame_mask),
            boundary=torch.from_numpy(self.boundaries[ids]),
            sentence=torch.from_numpy(sentence),
            words=torch.from_numpy(words),
            word_mask=torch.from_numpy(word_mask),
        )


@dataclass(frozen=True)
class BatchOrder:
    """The deterministic order of samples: which ids step s of the run trains on.

    Attributes:
        num_samples: samples in the dataset. global_batch: clips per step over all processes.
        seed: the run's seed.
        groups: None (each epoch is a shuffled permutation of all samples) or the video of
            each sample [num_samples]: each epoch then visits the videos in a shuffled order
            and each video's samples consecutively, shuffled among themselves (``stg train
            --negatives same-video``).
    """

    num_samples: int
    global_batch: int
    seed: int
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.global_batch < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.global_batch}")
        if self.num_samples < self.global_batch:
            raise UserError(
                f"the feature store has {self.num_samples} training samples, fewer than the "
                f"batch size {self.global_batch}; lower --batch-size"
            )
        if self.groups is not None and len(self.groups) != self.num_samples:
            raise ValueError(f"groups has {len(self.groups)} entries for {self.num_samples} samples")

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Every sample id once, in the order epoch ``epoch`` (0-based) visits them [num_samples]."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=generator).numpy()
        if self.groups is None:
            return order
        _, group = np.unique(np.asarray(self.groups), return_inverse=True)
        place = np.argsort(torch.randperm(int(group.max()) + 1, generator=generator).numpy())
        # a stable sort by the group's place keeps the shuffled order within each group
        return order[np.argsort(place[group[order]], kind="stable")]

    def ids(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Sample ids of this process at ``step`` (0-based): [global_batch / world_size]."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        chosen = order[position * self.global_batch : (position + 1) * self.global_batch]
        per_rank = self.global_batch // world_size
        return chosen[rank * per_rank : (rank + 1) * per_rank]


def feature_stats(dataset: ClipDataset, max_rows: int = 20000) -> dict[str, tuple[Tensor, Tensor]]:
    """Per-channel mean and std of the stored features, for the model's input standardisation.

    Uses every stored frame's global token, up to ``max_rows`` evenly spaced grid tokens, every
    sentence token and every real word token of the dataset's videos (float64 sums); visual
    features less the dataset's video means (zero unless it centres videos).

    Returns:
        ``{"global": (mean [Dv], std [Dv]), "grid": ..., "sentence": (mean [Dw], std [Dw]),
        "words": ...}``, float32.
    """
    sums: dict[str, list] = {}

    def add(key: str, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[-1])
        rows = rows[np.isfinite(rows).all(axis=1)]  # a damaged row must not poison the statistics
        if len(rows) == 0:
            return
        entry = sums.setdefault(key, [0, 0.0, 0.0])
        entry[0] += len(rows)
        entry[1] = entry[1] + rows.sum(0)
        entry[2] = entry[2] + (rows * rows).sum(0)

    total_cells = sum(len(video.frame_times) for video in dataset.videos) * dataset.cells
    stride = max(1, total_cells // max_rows)
    for video, (global_mean, grid_mean) in zip(dataset.videos, dataset.means):
        add("global", np.asarray(video.global_feats) - global_mean)
        grid = np.asarray(video.grid_feats) - grid_mean
        add("grid", grid.reshape(-1, dataset.visual_dim)[::stride])
        if len(video.texts):
            add("sentence", np.asarray(video.sentence))
            add("words", np.asarray(video.words)[np.asarray(video.word_mask, dtype=bool)])
    stats = {}
    for key, (count, total, squares) in sums.items():
        mean = total / count
        var = np.maximum(squares / count - mean * mean, 0.0)
        stats[key] = (
            torch.from_numpy(mean.astype(np.float32)),
            torch.from_numpy(np.sqrt(var).astype(np.float32)),
        )
    return stats
