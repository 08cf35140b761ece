"""The ``stg ground`` computation: a video + queries + a trained model → when and where, in
memory (:meth:`Grounder.analyse`); :mod:`stg_cli.runs.grounding` writes the files and draws.

Per video:

1. frames: decoded at the model's feature rate (the feature store's fps, or ``fps``) and squashed
   to the visual backbone's input size, then encoded by the same frozen backbone that made the
   training features (global [F, Dv] and grid [F, N, Dv] tokens). With a feature store
   (``features``), a video whose id is in the store is read from it instead;
2. temporal: S = cos(f(frame), g(query)) [F, Q], then :func:`stg_cli.ground.temporal.detect`
   (τ, majority filter) gives labels and segments;
3. spatial: for each segment, the model's heatmaps (``settings.heatmap``) give a probability
   over grid cells per frame; :func:`stg_cli.ground.spatial.locate` turns it into a point and a
   box in video pixels.

A query none of whose words the text encoder knows (a word2vec vocabulary has no subwords) has
no embedding: its similarity column is 0, it is never detected (whatever τ), and it is listed
in :attr:`VideoResult.unknown_queries`.

The text encoder is the one that encoded the training captions; it is looked up in this order:
``text_encoder/`` beside the export (in the export folder, then its run folder), the feature
store given with ``features``, and last the named pretrained encoder of the store configuration
(``minilm``, ``clip``), reloaded and checked against the recorded fingerprint. A word2vec model
trained on the captions lives only in its feature store: pass ``features``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stg_cli.backbones import load_matching_visual, load_text, load_text_from
from stg_cli.devices import resolve_device
from stg_cli.errors import UserError
from stg_cli.features import FeatureStore
from stg_cli.features.encode import encode_frames
from stg_cli.ground.output import VideoGrounding
from stg_cli.ground.spatial import DEFAULT_MASK_THRESHOLD, FrameLocation, locate
from stg_cli.ground.temporal import DEFAULT_SMOOTH, DEFAULT_TAU, detect, given_segments
from stg_cli.models.export import load_export
from stg_cli.models.grounding import HEATMAP_MODES, centring_offsets
from stg_cli.text.normalize import normalize_text
from stg_cli.video import iter_clips, probe
from stg_cli.video_files import VideoInput

STAGES = ("decode", "features", "temporal", "spatial", "viz")


#: ``stg ground --heatmap``: a read-out of the model, or ``auto`` (the model's default one)
HEATMAP_CHOICES = ("auto", *HEATMAP_MODES)


@dataclass(frozen=True)
class GroundSettings:
    """Options of a grounding run (defaults as documented in the temporal/spatial modules).

    ``tau``: the detection threshold; None takes the model's calibrated one
    (:mod:`stg_cli.train.calibration`), or :data:`DEFAULT_TAU` for a model without one.
    ``trimmed``: take when and what from the video's ground-truth segments instead of detecting
    them (:func:`stg_cli.ground.temporal.given_segments`), and predict only where.
    ``heatmap``: one of :data:`HEATMAP_CHOICES`; ``auto`` takes the model's
    :attr:`~stg_cli.models.config.ModelConfig.default_heatmap`.
    """

    tau: float | None = None
    smooth: int = DEFAULT_SMOOTH
    heatmap: str = "auto"
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    fps: float | None = None
    viz: bool = False
    batch_size: int = 32
    trimmed: bool = False

    def __post_init__(self) -> None:
        if self.heatmap not in HEATMAP_CHOICES:
            raise UserError(f"--heatmap must be one of {', '.join(HEATMAP_CHOICES)}, got {self.heatmap!r}")
        if self.tau is not None and not np.isfinite(self.tau):
            raise UserError(f"--tau must be a number, got {self.tau}")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise UserError(f"--mask-threshold must be in [0, 1], got {self.mask_threshold}")
        if self.fps is not None and not (self.fps > 0 and np.isfinite(self.fps)):
            raise UserError(f"--fps must be positive, got {self.fps}")


@dataclass
class Timings:
    """Seconds spent per stage (see :data:`STAGES`), summed over videos."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@dataclass
class VideoResult:
    """What grounding one video produced (``error`` set instead when it failed)."""

    video_id: str
    source: str
    grounding: VideoGrounding | None = None
    prediction: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    unknown_queries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class QueryEmbeddings:
    """Encoded queries: g [Q, d] (rows of unknown queries are 0), words [Q, K, Dw], mask [Q, K]."""

    queries: list[str]
    sentence: torch.Tensor
    words: torch.Tensor
    mask: torch.Tensor

    @property
    def known(self) -> list[bool]:
        return self.mask.any(dim=1).tolist()


class Grounder:
    """A loaded model with its backbones, ready to ground videos (see the module docstring)."""

    def __init__(self, checkpoint: Path, features: Path | None = None, device: str = "cpu") -> None:

        self.device = resolve_device(device)
        loaded = load_export(Path(checkpoint), device=self.device)
        self.model = loaded.model.eval()
        self.config = loaded.config
        self.store_config = dict(loaded.store_config)
        self.checkpoint = Path(checkpoint)
        self.store = None
        if features is not None:
            self.store = FeatureStore.open(Path(features))
            self._check_store(self.store)
        self.text_encoder = self._text_encoder()
        if self.text_encoder.dim != self.config.text_dim:
            raise UserError(
                f"the text encoder gives {self.text_encoder.dim}-d words but the model expects "
                f"{self.config.text_dim}-d"
            )
        self._backbone = None

    @property
    def fps(self) -> float:
        """The rate features were made at (the store's), 1 fps when the export does not say."""
        return float(self.store_config.get("fps") or 1.0)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.config.grid)

    def backbone(self):
        """The visual backbone of the training features (loaded on first use)."""
        if self._backbone is None:
            name = self.store_config.get("backbone")
            if not name:
                raise UserError(f"{self.checkpoint} does not record its visual backbone")
            backbone = load_matching_visual(
                name,
                self.store_config.get("weights"),
                self.store_config.get("visual_fingerprint"),
                f"the model {self.checkpoint}",
                device=str(self.device),
            )
            if backbone.spec.dim != self.config.visual_dim:
                raise UserError(
                    f"the {name} backbone gives {backbone.spec.dim}-d features but the model "
                    f"expects {self.config.visual_dim}-d"
                )
            self._backbone = backbone
        return self._backbone

    def heatmap_mode(self, settings: GroundSettings) -> str:
        """The read-out of a run: ``settings.heatmap``, or for ``auto`` the model's default."""
        return self.config.default_heatmap if settings.heatmap == "auto" else settings.heatmap

    def threshold(self, settings: GroundSettings) -> float:
        """The detection threshold τ of a run: ``settings.tau``, else the model's calibrated
        one, else :data:`DEFAULT_TAU`."""
        if settings.tau is not None:
            return float(settings.tau)
        calibrated = self.model.calibrated_threshold
        return DEFAULT_TAU if calibrated is None else calibrated

    def embed_queries(self, queries: list[str]) -> QueryEmbeddings:
        """Encodes the queries once: g(sentence) [Q, d] plus the word tokens for the heatmaps."""
        features = self.text_encoder.encode(list(queries))
        with torch.no_grad():
            sentence = self.model.sentence_embeddings(features.sentence.to(self.device)).float().cpu()
        known = features.mask.any(dim=1)
        sentence = sentence * known[:, None]
        return QueryEmbeddings(list(queries), sentence, features.words.float(), features.mask.bool())

    def analyse(
        self,
        video: VideoInput,
        queries: QueryEmbeddings,
        settings: GroundSettings,
        timings: Timings | None = None,
        on_step: Callable[[str, int, int], None] | None = None,
        ground_truth: Sequence | None = None,
        notes: list[str] | None = None,
    ) -> VideoGrounding:
        """When and where in one video, in memory (no file written).

        ``notes`` receives what the run leaves out (ground-truth segments whose label is no
        query, with ``settings.trimmed``). Raises UserError (VideoError) when the video cannot
        be read.
        """
        timings = timings or Timings()
        step = on_step or (lambda stage, done, total: None)
        fps = float(settings.fps or self.fps)
        times, global_feats, grid_feats, width, height, duration = self._features(
            video, fps, settings, timings, step
        )
        global_offset, grid_offset = centring_offsets(self.config.center_video, global_feats, grid_feats)
        global_feats = global_feats - torch.from_numpy(global_offset)
        grid_feats = grid_feats - torch.from_numpy(grid_offset)

        begin = time.perf_counter()
        with torch.no_grad():
            frames = self.model.frame_embeddings(global_feats.to(self.device)).float().cpu()
        similarity = (frames @ queries.sentence.T).numpy().astype(np.float32)
        if settings.trimmed:
            spans = _truth_spans(queries, ground_truth or (), notes if notes is not None else [])
            detection = given_segments(similarity, times, spans)
        else:
            detection = detect(
                similarity,
                times,
                tau=self.threshold(settings),
                smooth=settings.smooth,
                allowed=np.array(queries.known, dtype=bool),
            )
        timings.add("temporal", time.perf_counter() - begin)

        begin = time.perf_counter()
        gh, gw = self.grid
        count = len(times)
        cells = np.zeros((count, gh, gw), dtype=np.float32)
        locations: list[FrameLocation | None] = [None] * count
        segments = detection.segments
        for done, segment in enumerate(segments):
            step("spatial", done, len(segments))
            span = slice(segment.first, segment.last + 1)
            heat = self.model.heatmaps(
                grid_feats[span].float(),
                queries.words[segment.query],
                queries.mask[segment.query],
                mode=self.heatmap_mode(settings),
                query=queries.sentence[segment.query],
            )
            cells[span] = heat.reshape(-1, gh, gw).numpy()
            found = locate(cells[span], width, height, threshold=settings.mask_threshold)
            locations[span] = found
        step("spatial", len(segments), len(segments))
        timings.add("spatial", time.perf_counter() - begin)
        return VideoGrounding(
            video_id=video.video_id,
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            queries=list(queries.queries),
            times=np.asarray(times, dtype=np.float32),
            similarity=similarity,
            detection=detection,
            cells=cells,
            locations=locations,
        )

    # ------------------------------------------------------------------ internals

    def _features(self, video, fps, settings, timings, step):
        """(times [F] float64, global [F, Dv], grid [F, N, Dv], width, height, duration)."""
        stored = self.store is not None and video.video_id in self.store
        same_rate = abs(fps - float(self.store.config.fps)) < 1e-9 if self.store is not None else False
        if stored and (same_rate or video.path is None):
            begin = time.perf_counter()
            features = self.store.load(video.video_id)
            times = np.asarray(features.frame_times, dtype=np.float64)
            global_feats = torch.from_numpy(np.asarray(features.global_feats, dtype=np.float32))
            grid_feats = torch.from_numpy(np.asarray(features.grid_feats, dtype=np.float32))
            timings.add("features", time.perf_counter() - begin)
            return times, global_feats, grid_feats, features.width, features.height, features.duration
        if video.path is None:
            raise UserError(f"{video.video_id}: not in the feature store at another fps ({fps})")

        backbone = self.backbone()
        spec = backbone.spec
        clip_fps = spec.clip_fps if spec.clip_len > 1 else fps
        info = probe(video.path)
        expected = int(info.duration * fps) + 1 if info.duration else None
        times, globals_, grids = [], [], []
        begin = time.perf_counter()
        clips = iter_clips(
            video.path, fps, tuple(spec.input_size), spec.clip_len, clip_fps, batch_size=settings.batch_size
        )
        done = 0
        for info, batch_times, _, frames in clips:
            timings.add("decode", time.perf_counter() - begin)
            begin = time.perf_counter()
            global_feats, grid_feats = encode_frames(backbone, frames, settings.batch_size)
            times.append(batch_times)
            globals_.append(global_feats.float())
            grids.append(grid_feats.float())
            done += len(batch_times)
            timings.add("features", time.perf_counter() - begin)
            step("frames", done, max(expected or done, done))
            begin = time.perf_counter()
        timings.add("decode", time.perf_counter() - begin)
        if not times:
            count = 0
            times_array = np.zeros(0)
            global_all = torch.zeros(0, spec.dim)
            grid_all = torch.zeros(0, spec.num_cells, spec.dim)
        else:
            times_array = np.concatenate(times).astype(np.float64)
            global_all, grid_all = torch.cat(globals_), torch.cat(grids)
            count = len(times_array)
        last = float(times_array[-1]) + 1.0 / fps if count else 0.0
        duration = float(info.duration) if info.duration else last
        return times_array, global_all, grid_all, int(info.width), int(info.height), duration

    def _check_store(self, store) -> None:
        expected = self.store_config.get("fingerprint")
        if expected and store.config.fingerprint != expected:
            raise UserError(
                f"the feature store {store.root} (fingerprint {store.config.fingerprint}) is not "
                f"the kind the model was trained on (fingerprint {expected})"
            )

    def _text_encoder(self):

        expected = self.store_config.get("text_fingerprint")
        places = [self.checkpoint / "text_encoder", self.checkpoint / "export" / "text_encoder"]
        if self.checkpoint.name == "export" or (self.checkpoint / "config.json").is_file():
            places.append(self.checkpoint.parent / "text_encoder")
        for place in places:
            if (place / "text_encoder.json").is_file():
                encoder = load_text_from(place, device=str(self.device))
                if not expected or encoder.fingerprint == expected:
                    return encoder
        if self.store is not None:
            return self.store.text_encoder(device=str(self.device))
        name = self.store_config.get("text")
        if name and name != "word2vec":
            try:
                encoder = load_text(name, self.store_config.get("text_weights"), device=str(self.device))
            except UserError:
                encoder = None
            if encoder is not None and (not expected or encoder.fingerprint == expected):
                return encoder
        raise UserError(
            f"the text encoder of {self.checkpoint} ({name or 'unknown'}) is not saved with it; "
            "pass --features FEATS, the feature store it was trained on"
        )


def _truth_spans(
    queries: QueryEmbeddings, truth: Sequence, notes: list[str]
) -> list[tuple[int, float, float]]:
    """(query column, start, end) of each ground-truth segment whose label is one of the queries.

    Labels match as given, else after text normalisation; a segment of another label is left
    out and noted in ``notes``.
    """

    columns = {query: index for index, query in enumerate(queries.queries)}
    normalised = {normalize_text(query): index for index, query in enumerate(queries.queries)}
    spans, unmatched = [], set()
    for segment in truth:
        column = columns.get(segment.label, normalised.get(normalize_text(segment.label)))
        if column is None:
            unmatched.add(segment.label)
        else:
            spans.append((column, float(segment.start), float(segment.end)))
    if not truth:
        notes.append("no ground-truth segment for this video: nothing to ground")
    if unmatched:
        notes.append(
            "ground-truth segments left out, their label is not a query: " + ", ".join(sorted(unmatched))
        )
    return spans
