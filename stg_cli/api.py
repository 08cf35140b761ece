"""The Python API: ground videos from a script or a notebook, without an output folder.

::

    import stg_cli

    grounder = stg_cli.load_grounder("runs/demo")        # a run folder, its export/ or a .pt
    result = grounder.ground("video.mp4", ["crack egg", "pour milk"])   # writes no file
    result.segments      # [{"label", "start", "end", "score"}], seconds
    result.frames        # [{"t", "label", "score", "point", "box"}], video pixels
    result.heatmaps      # float32 [F, gh, gw]: each analysed frame's cell probabilities
    result.to_dict()     # the <id>.json object of ``stg ground``
    result.save("out/")  # what ``stg ground`` writes for the video (viz=True: the pictures too)

    features = stg_cli.encode("video.mp4", backbone="effnet-lite0")     # frozen features

:func:`load_grounder` loads the model, its text encoder and (on first use) its visual backbone
once; :meth:`VideoGrounder.ground` then grounds any number of videos with any queries. The settings
are those of ``stg ground`` (same names, same defaults).

The functions import the grounding library when they are called, so that ``import stg_cli``
stays light (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stg_cli.defaults import DEFAULT_MASK_THRESHOLD, DEFAULT_SMOOTH
from stg_cli.errors import UserError
from stg_cli.features.encode import VideoEncoding
from stg_cli.ground.output import VideoGrounding


@dataclass(frozen=True)
class GroundingResult:
    """What grounding one video found (see :mod:`stg_cli.ground.output` for the format).

    Attributes:
        grounding: the full result: analysed frame times, frame × query similarity [F, Q],
            temporal detection, cell probabilities [F, gh, gw] and per-frame locations.
        video: the video file it came from (None for a feature-store id).
        unknown_queries: queries none of whose words the text encoder knows (never detected).
        notes: what was left out, if anything.
    """

    grounding: VideoGrounding
    video: Path | None
    unknown_queries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def video_id(self) -> str:
        return self.grounding.video_id

    @property
    def segments(self) -> list[dict]:
        """``{"label", "start", "end", "score"}`` per detected segment, in time order."""
        return self.to_dict()["segments"]

    @property
    def frames(self) -> list[dict]:
        """``{"t", "label", "score", "point", "box"}`` per analysed frame."""
        return self.to_dict()["frames"]

    @property
    def heatmaps(self) -> np.ndarray:
        """float32 [F, gh, gw]: per analysed frame, the probability over grid cells of its
        predicted label (zeros on background frames)."""
        return self.grounding.cells

    def to_dict(self) -> dict:
        """The per-video prediction object that ``stg ground`` writes as ``<id>.json``."""
        return self.grounding.to_prediction()

    def save(self, out: str | Path, viz: bool = False) -> dict[str, Path]:
        """Writes ``<id>.json``, ``<id>.heatmaps.npz`` and ``predictions.json`` into ``out``
        (created), and with ``viz`` the timeline and the overlay video; returns kind → path."""
        from stg_cli.ground.output import prediction_names, write_combined, write_prediction
        from stg_cli.viz.draw import draw_grounding

        out = Path(out)
        prediction = write_prediction(self.grounding, out)
        written = {kind: out / name for kind, name in prediction_names(self.video_id).items()}
        written["predictions"] = write_combined({self.video_id: prediction}, out)
        if viz:
            pictures, _ = draw_grounding(self.grounding, self.video, out)
            written.update({kind: out / name for kind, name in pictures.items()})
        return written


class VideoGrounder:
    """A trained model ready to ground videos (use :func:`load_grounder`)."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline

    @property
    def device(self) -> str:
        return str(self._pipeline.device)

    @property
    def threshold(self) -> float:
        """The detection threshold τ used when ``ground`` is not given one."""
        from stg_cli.ground.pipeline import GroundSettings

        return self._pipeline.threshold(GroundSettings())

    def ground(
        self,
        video: str | Path,
        queries: str | Sequence[str],
        *,
        tau: float | None = None,
        smooth: int = DEFAULT_SMOOTH,
        heatmap: str = "auto",
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        fps: float | None = None,
    ) -> GroundingResult:
        """Grounds ``queries`` in one video, in memory.

        Args:
            video: a video file, or the id of a video of the feature store given to
                :func:`load_grounder`.
            queries: one query or several (free text).
            tau, smooth, heatmap, mask_threshold, fps: as ``stg ground``'s options.

        Raises:
            UserError: no query, a bad setting, or a video that cannot be read.
        """
        from stg_cli.ground.pipeline import GroundSettings
        from stg_cli.ground.queries import unique
        from stg_cli.ground.temporal import check_smooth
        from stg_cli.video_files import VideoInput

        pool = unique([queries] if isinstance(queries, str) else queries)
        if not pool:
            raise UserError("no queries: give at least one non-empty query")
        settings = GroundSettings(
            tau=tau, smooth=check_smooth(smooth), heatmap=heatmap, mask_threshold=mask_threshold, fps=fps
        )
        path = Path(video)
        store = self._pipeline.store
        if path.is_file():
            source = VideoInput(path.stem, path)
        elif store is not None and str(video) in store:
            source = VideoInput(str(video), None)
        else:
            raise UserError(f"video not found: {video}")
        embeddings = self._pipeline.embed_queries(pool)
        notes: list[str] = []
        grounding = self._pipeline.analyse(source, embeddings, settings, notes=notes)
        unknown = [query for query, known in zip(pool, embeddings.known) if not known]
        return GroundingResult(grounding, source.path, unknown, notes)


def load_grounder(
    checkpoint: str | Path, device: str = "auto", features: str | Path | None = None
) -> VideoGrounder:
    """Loads a trained model for :meth:`VideoGrounder.ground`.

    Args:
        checkpoint: a ``stg train`` run folder, its ``export/`` folder or a checkpoint ``.pt``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        features: the feature store the model was trained on, when its text encoder is not
            saved with the model (word2vec trained on the captions), or to ground its videos
            from their stored features.
    """
    from stg_cli.ground.pipeline import Grounder

    return VideoGrounder(Grounder(Path(checkpoint), features=features, device=device))


def encode(
    video: str | Path,
    backbone: str = "tiny",
    weights: str | Path | None = None,
    fps: float | None = None,
    device: str = "auto",
) -> VideoEncoding:
    """Frozen visual features of a video, as ``stg extract`` stores them.

    Returns ``times`` [F] seconds, ``global_feats`` [F, Dv], ``grid_feats`` [F, N, Dv] and the
    video's ``info``, decoded at ``fps`` (default: the backbone's).
    """
    from stg_cli.backbones import load_visual
    from stg_cli.devices import resolve_device
    from stg_cli.features.encode import encode_video

    if not Path(video).is_file():
        raise UserError(f"video not found: {video}")
    model = load_visual(backbone, weights, device=str(resolve_device(device)))
    return encode_video(video, model, fps=fps)
