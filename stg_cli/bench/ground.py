"""Grounding speed: ``stg ground`` on a generated 5-minute 640×480 video, stage by stage.

The video (H.264, 30 fps, 640×480, 300 s: a gradient background with moving coloured blocks)
is generated once with PyAV and cached in ``$STG_BENCH_CACHE`` (default
``~/.cache/stg/bench``). The model is a random-initialised grounding model (d = 512, the
default architecture) over the backbone's features with 10 queries; τ = -1 so every frame is
assigned a query, the worst case for the spatial stage.

Each timed call processes the next minute of the video (minute 1, 2, ..., 5, 1, ...), so every
row's time is **milliseconds per minute of video**; seconds per video-minute = ms / 1000 and
"× real time" = 60,000 / ms. Variants (one per stage, as ``stg ground`` runs them):

- ``decode``: decode and sample 1 fps frames squashed to the backbone input (seek to the minute);
- ``features``: the frozen visual backbone on those frames;
- ``temporal``: frame embeddings, the frame × query cosines and the temporal detection;
- ``spatial``: local-branch heatmaps (``paper`` chain) per segment, then point and box in pixels;
- ``viz``: the overlay at the video's 30 fps (decode at display size, draw, H.264 encode) and
  the timeline figure;
- ``pipeline``: decode → features → temporal → spatial → prediction files, without viz: the
  time the ≥ 10× real-time target (< 6,000 ms per video-minute) is about.

Backbones other than ``tiny`` need their weights (``STG_CLIP_WEIGHTS``, ``STG_S3D_WEIGHTS``);
without them their case is skipped with the reason.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stg_cli.backbones import VISUAL_BACKBONES, load_visual, train_word2vec
from stg_cli.bench.common import Case, Variant, backbone_weights, benchmark_video, missing_weights
from stg_cli.errors import UserError
from stg_cli.features.encode import encode_frames
from stg_cli.ground.output import VideoGrounding, write_prediction
from stg_cli.ground.pipeline import Grounder, GroundSettings
from stg_cli.ground.spatial import locate
from stg_cli.ground.temporal import detect
from stg_cli.models import GroundingModel
from stg_cli.models.config import ModelConfig
from stg_cli.models.export import save_export
from stg_cli.video import iter_clips
from stg_cli.viz import plot_timeline, render_overlay
from stg_cli.viz.draw import MAX_OVERLAY_FPS

WIDTH, HEIGHT, VIDEO_FPS, MINUTES = 640, 480, 30, 5
QUERIES = [
    "crack the egg",
    "pour the milk",
    "whisk the eggs",
    "cut the onion",
    "add the salt",
    "stir the pan",
    "flip the pancake",
    "slice the bread",
    "peel the potato",
    "serve the dish",
]
STAGE_NAMES = ("decode", "features", "temporal", "spatial", "viz", "pipeline")
TARGET_MS_PER_MINUTE = 6000.0


def cases(quick: bool, device: torch.device) -> list[Case]:
    """One case per visual backbone on ``device``; ``quick`` keeps the problem (a call is one
    video-minute either way)."""

    out = []
    for name in VISUAL_BACKBONES:
        shape = (
            f"{name}, {WIDTH}×{HEIGHT} {VIDEO_FPS} fps {MINUTES}-min video, 1 fps, {len(QUERIES)} queries: "
            f"ms per video-minute (≥ 10× real time: pipeline < {TARGET_MS_PER_MINUTE:,.0f} ms)"
        )
        reason = missing_weights(name)
        if reason is not None:
            variants = [Variant("all stages", lambda reason=reason: reason)]
        else:
            variants = [Variant(stage, _setup(stage, name, device)) for stage in STAGE_NAMES]
        out.append(Case(op="ground", shape=shape, device=str(device), variants=variants))
    return out


class _Bench:
    """Everything the stage calls share: video, backbone, model, queries and per-minute inputs."""

    def __init__(self, backbone_name: str, device: torch.device) -> None:

        weights = backbone_weights(backbone_name)
        self.backbone = load_visual(backbone_name, weights, device=str(device))
        self.video = benchmark_video(width=WIDTH, height=HEIGHT, seconds=MINUTES * 60.0, fps=VIDEO_FPS)
        self.width, self.height = WIDTH, HEIGHT
        self.workdir = tempfile.TemporaryDirectory(prefix="stg-bench-ground-")
        root = Path(self.workdir.name)
        torch.manual_seed(0)
        text = train_word2vec(QUERIES * 20, dim=300, seed=0)
        spec = self.backbone.spec
        config = ModelConfig(visual_dim=spec.dim, text_dim=text.dim, grid=spec.grid)
        store = {
            "backbone": backbone_name,
            "weights": weights,
            "text": "word2vec",
            "grid": list(spec.grid),
            "visual_dim": spec.dim,
            "text_dim": text.dim,
            "fps": spec.fps,
            "input_size": list(spec.input_size),
            "clip_len": spec.clip_len,
            "clip_fps": spec.clip_fps,
            "visual_fingerprint": self.backbone.fingerprint,
            "text_fingerprint": text.fingerprint,
        }
        export = save_export(GroundingModel(config), root / "export", store)
        text.save(export / "text_encoder")

        self.grounder = Grounder(export, device=str(device))
        self.grounder._backbone = self.backbone
        self.settings = GroundSettings(tau=-1.0)
        self.queries = self.grounder.embed_queries(QUERIES)
        self.out = root / "out"
        self.minute = {stage: 0 for stage in STAGE_NAMES}
        self._decoded: dict[int, tuple] = {}
        self._features: dict[int, tuple] = {}
        self._groundings: dict[int, object] = {}

    def next_minute(self, stage: str) -> int:
        minute = self.minute[stage]
        self.minute[stage] = (minute + 1) % MINUTES
        return minute

    def decode(self, minute: int):
        """(times [F], frames uint8 [F, clip_len, h, w, 3]) of one minute."""

        spec = self.backbone.spec
        fps = float(spec.fps)
        clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
        times, frames = [], []
        for _, batch_times, _, batch in iter_clips(
            self.video,
            fps,
            tuple(spec.input_size),
            spec.clip_len,
            clip_fps,
            start=minute * 60.0,
            end=(minute + 1) * 60.0,
        ):
            times.append(batch_times)
            frames.append(batch)
        return np.concatenate(times), np.concatenate(frames)

    def decoded(self, minute: int):
        if minute not in self._decoded:
            self._decoded[minute] = self.decode(minute)
        return self._decoded[minute]

    def features(self, minute: int):

        _, frames = self.decoded(minute)
        return encode_frames(self.backbone, frames)

    def stored_features(self, minute: int):
        if minute not in self._features:
            self._features[minute] = self.features(minute)
        return self._features[minute]

    def temporal(self, minute: int):

        times, _ = self.decoded(minute)
        global_feats, _ = self.stored_features(minute)
        model = self.grounder.model
        with torch.no_grad():
            frames = model.frame_embeddings(global_feats.to(self.grounder.device)).float().cpu()
        similarity = (frames @ self.queries.sentence.T).numpy()
        return (
            times,
            similarity,
            detect(similarity, times, tau=self.settings.tau, smooth=self.settings.smooth),
        )

    def spatial(self, minute: int):

        times, similarity, detection = self.temporal(minute)
        _, grid = self.stored_features(minute)
        gh, gw = self.grounder.grid
        cells = np.zeros((len(times), gh, gw), dtype=np.float32)
        locations: list = [None] * len(times)
        for segment in detection.segments:
            span = slice(segment.first, segment.last + 1)
            heat = self.grounder.model.heatmaps(
                grid[span],
                self.queries.words[segment.query],
                self.queries.mask[segment.query],
                mode=self.grounder.heatmap_mode(self.settings),
                query=self.queries.sentence[segment.query],
            )
            cells[span] = heat.reshape(-1, gh, gw).numpy()
            locations[span] = locate(cells[span], self.width, self.height, self.settings.mask_threshold)
        return VideoGrounding(
            video_id=f"minute{minute}",
            width=self.width,
            height=self.height,
            fps=float(self.backbone.spec.fps),
            duration=60.0 * MINUTES,
            queries=list(QUERIES),
            times=times,
            similarity=similarity,
            detection=detection,
            cells=cells,
            locations=locations,
        )

    def grounding(self, minute: int):
        if minute not in self._groundings:
            self._groundings[minute] = self.spatial(minute)
        return self._groundings[minute]

    def viz(self, minute: int) -> None:

        grounding = self.grounding(minute)
        fps = min(float(VIDEO_FPS), MAX_OVERLAY_FPS)  # the video's own rate, as stg ground draws

        def frames():
            for _, times, _, batch in iter_clips(
                self.video, fps, None, 1, fps, start=minute * 60.0, end=(minute + 1) * 60.0, batch_size=8
            ):
                for time_value, frame in zip(times.tolist(), batch[:, 0]):
                    yield time_value, frame

        self.out.mkdir(parents=True, exist_ok=True)
        render_overlay(grounding, frames(), self.out / "overlay.mp4", fps=fps)
        plot_timeline(grounding, self.out / "timeline.png")

    def pipeline(self, minute: int) -> None:

        self._decoded.pop(minute, None)
        self._features.pop(minute, None)
        self.decoded(minute)
        self.stored_features(minute)
        write_prediction(self.spatial(minute), self.out)


@functools.lru_cache(maxsize=2)
def _bench(backbone_name: str, device: str) -> _Bench:
    return _Bench(backbone_name, torch.device(device))


def _setup(stage: str, backbone_name: str, device: torch.device) -> Callable[[], Callable[[], object] | str]:
    def setup() -> Callable[[], object] | str:
        try:
            bench = _bench(backbone_name, str(device))
        except UserError as error:
            return f"cannot load {backbone_name}: {error}"
        actions = {
            "decode": bench.decode,
            "features": bench.features,
            "temporal": bench.temporal,
            "spatial": bench.spatial,
            "viz": bench.viz,
            "pipeline": bench.pipeline,
        }
        action = actions[stage]
        for minute in range(MINUTES):  # inputs of the later stages, made once, untimed
            if stage in ("features", "temporal", "spatial"):
                bench.decoded(minute)
            if stage in ("temporal", "spatial"):
                bench.stored_features(minute)
            if stage == "viz":
                bench.grounding(minute)
        return lambda: action(bench.next_minute(stage))

    return setup
