"""A small in-memory feature store with learnable structure, for the training tests.

Each caption names one of a few concepts; its words are noisy copies of the concept's word
vector and the frames inside the caption show the concept's visual vector in one grid cell
(and in the frame's global token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stg_cli.features.layout import VideoFeatures


@dataclass(frozen=True)
class FakeStoreConfig:
    backbone: str = "tiny"
    weights: str | None = None
    text: str = "word2vec"
    grid: tuple[int, int] = (2, 2)
    visual_dim: int = 12
    text_dim: int = 8
    fps: float = 1.0
    input_size: tuple[int, int] = (32, 32)
    fingerprint: str = "fake-0001"


class FakeStore:
    def __init__(self, videos: list[VideoFeatures], config: FakeStoreConfig) -> None:
        self.config = config
        self._videos = {video.video_id: video for video in videos}
        self.video_ids = list(self._videos)

    def load(self, video_id: str) -> VideoFeatures:
        return self._videos[video_id]


def make_store(
    videos: int = 4, captions: int = 6, seconds: int = 40, concepts: int = 5, seed: int = 0, **config
) -> FakeStore:
    cfg = FakeStoreConfig(**config)
    rng = np.random.default_rng(seed)
    cells = cfg.grid[0] * cfg.grid[1]
    visual = rng.normal(size=(concepts, cfg.visual_dim))
    textual = rng.normal(size=(concepts, cfg.text_dim))
    result = []
    for v in range(videos):
        times = np.arange(seconds, dtype=np.float32) + 0.5
        global_feats = rng.normal(size=(seconds, cfg.visual_dim)) * 0.5
        grid = rng.normal(size=(seconds, cells, cfg.visual_dim)) * 0.5
        caption_times, sentence, words, mask = [], [], [], []
        for c in range(captions):
            concept = int(rng.integers(concepts))
            start = float(c * seconds / captions)
            end = start + 3.0
            frames = (times >= start) & (times <= end)
            global_feats[frames] += visual[concept]
            cell = int(rng.integers(cells))
            grid[frames, cell] += 2 * visual[concept]
            count = int(rng.integers(2, 5))
            w = np.zeros((5, cfg.text_dim))
            w[:count] = textual[concept] + rng.normal(size=(count, cfg.text_dim)) * 0.3
            m = np.zeros(5, dtype=bool)
            m[:count] = True
            caption_times.append([start, end])
            sentence.append(w[:count].mean(0))
            words.append(w)
            mask.append(m)
        result.append(
            VideoFeatures(
                video_id=f"vid{v}",
                width=64,
                height=48,
                duration=float(seconds),
                frame_times=times,
                global_feats=global_feats.astype(np.float16),
                grid_feats=grid.astype(np.float16),
                caption_times=np.asarray(caption_times, dtype=np.float32),
                texts=[f"caption {c}" for c in range(captions)],
                sentence=np.asarray(sentence, dtype=np.float32),
                words=np.asarray(words, dtype=np.float32),
                word_mask=np.asarray(mask),
            )
        )
    return FakeStore(result, cfg)


def write_store(root, fake: FakeStore):
    """Writes ``fake`` as a real on-disk feature store and opens it."""
    from pathlib import Path

    from stg_cli.features.store import FeatureStore, StoreConfig, StoreWriter

    cfg = fake.config
    config = StoreConfig(
        backbone=cfg.backbone,
        weights=None,
        text=cfg.text,
        grid=cfg.grid,
        visual_dim=cfg.visual_dim,
        text_dim=cfg.text_dim,
        fps=cfg.fps,
        input_size=cfg.input_size,
    )
    writer = StoreWriter(Path(root), config)
    for video_id in fake.video_ids:
        video = fake.load(video_id)
        arrays = {
            "frame_times": video.frame_times,
            "global": video.global_feats,
            "grid": video.grid_feats,
            "caption_times": video.caption_times,
            "sentence": video.sentence,
            "words": video.words,
            "word_mask": video.word_mask,
        }
        info = {"width": video.width, "height": video.height, "duration": video.duration}
        writer.write(video_id, arrays, video.texts, info)
    writer.rebuild_manifest()
    return FeatureStore.open(Path(root))
