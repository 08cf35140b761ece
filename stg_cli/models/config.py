"""The configuration of the global-local grounding model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from stg_cli.defaults import ATTENTION_STACKS, SELECTION_MODES
from stg_cli.errors import UserError

CROSS_LOGITS = ("dot", "cosine")
LOCAL_PROJECTIONS = ("own", "shared")

# upper bounds checked before anything is allocated (a tampered export's config must not make
# stg allocate gigabytes): far above every backbone and the paper's dims (Dv, Dw ≤ 1280, d = 512)
SIZE_LIMITS = {"visual_dim": 8192, "text_dim": 8192, "dim": 4096, "frames_u": 1024, "frames_t": 1024}
MAX_GRID_SIDE = 64


@dataclass
class ModelConfig:
    """Architecture and frame-selection settings (dims come from the feature store).

    Attributes:
        visual_dim, text_dim: Dv and Dw of the stored features.
        dim: d, the joint embedding width of f, g, f' and g'.
        grid: (gh, gw) grid of the visual tokens, N = gh * gw.
        attention: the local stack, one of :data:`ATTENTION_STACKS` (paper Table 8).
        frames_u: U, candidate frames per training window.
        frames_t: T, frames kept by the selection (and frames per clip in the heatmaps).
        select: frame selection mode (sinkhorn | none | global | local).
        tau_select: τ_sel dividing the word–frame cosine before selection.
        sinkhorn_eps, sinkhorn_iters, sinkhorn_tol: Sinkhorn settings.
        gated: projections are gated units (linear, then x * sigmoid(W x + b)).
        cross_logits: logits of the cross-attention layers: ``cosine`` — cos(q, k) /
            cross_temperature (default), or ``dot`` — ⟨q, k⟩ · scale. Values are never
            normalised. Why cosine by default: with dot logits of freshly initialised
            projections the attention is nearly uniform, and a residual cross layer then gives
            every pair the same pooled video and sentence embedding (v_l = s_l = mean V + mean W),
            so the local loss starts with (almost) no gradient; sharp cosine attention breaks
            that symmetry from the first step.
        cross_temperature: temperature of the ``cosine`` logits.
        local_projections: what maps grid cells and words into the local branch. ``own``: the
            paper's f' and g', trained by the local loss alone. ``shared``: f' = f and g' = g,
            the global branch's projections (and input statistics) applied to each grid cell
            and each word, trained by both losses. Why ``shared`` exists: the paper's
            heatmap is essentially CA1's word→region attention, and with ``own`` projections
            nothing makes it pick the named action's cells (the local loss is met by pooling
            over all regions); with ``shared`` it compares each word with each cell in the
            space where the global loss has already made frames and their narration agree
            (see benchmarks/RESULTS.md, "Where").
        attention_scale: scale of the ``dot`` logits; None means 1/sqrt(d).
        center_video: subtract each video's mean from its features before the model sees them
            (:func:`stg_cli.models.grounding.video_means`: the mean global token over its
            frames, and per grid cell the mean of that cell over its frames), in training and
            in grounding alike. What a video keeps the whole time (its scene, the objects
            lying about, lighting, a static camera's view) cancels out and what changes — the
            actions — stands out; without it, matching a narration to its video's scene
            alone separates most training pairs and the model learns little of the actions
            (see the ablation in benchmarks/RESULTS.md). An export whose configuration
            predates this setting was trained without it and loads with False.
    """

    visual_dim: int
    text_dim: int
    dim: int = 512
    grid: tuple[int, int] = (7, 7)
    attention: str = "cross-self-cross"
    frames_u: int = 16
    frames_t: int = 8
    select: str = "sinkhorn"
    tau_select: float = 0.1
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 3
    sinkhorn_tol: float = 0.0
    gated: bool = False
    cross_logits: str = "cosine"
    cross_temperature: float = 0.1
    attention_scale: float | None = None
    center_video: bool = True
    local_projections: str = "own"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.grid, (tuple, list))
            or len(self.grid) != 2
            or not all(isinstance(side, int) and not isinstance(side, bool) for side in self.grid)
        ):
            raise UserError(f"grid must be two whole numbers, got {self.grid!r}")
        self.grid = (int(self.grid[0]), int(self.grid[1]))
        if self.attention not in ATTENTION_STACKS:
            raise UserError(f"attention must be one of {', '.join(ATTENTION_STACKS)}, got {self.attention!r}")
        if self.select not in SELECTION_MODES:
            raise UserError(f"select must be one of {', '.join(SELECTION_MODES)}, got {self.select!r}")
        for name, limit in SIZE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise UserError(f"{name} must be a whole number from 1 to {limit}, got {value!r}")
        if self.frames_t > self.frames_u:
            raise UserError(f"frames_t ({self.frames_t}) must not exceed frames_u ({self.frames_u})")
        if self.cross_logits not in CROSS_LOGITS:
            raise UserError(
                f"cross_logits must be one of {', '.join(CROSS_LOGITS)}, got {self.cross_logits!r}"
            )
        if self.local_projections not in LOCAL_PROJECTIONS:
            raise UserError(
                f"local_projections must be one of {', '.join(LOCAL_PROJECTIONS)}, "
                f"got {self.local_projections!r}"
            )
        if not self.cross_temperature > 0:
            raise UserError(f"cross_temperature must be > 0, got {self.cross_temperature}")
        if not (1 <= self.grid[0] <= MAX_GRID_SIDE and 1 <= self.grid[1] <= MAX_GRID_SIDE):
            raise UserError(f"grid sides must be from 1 to {MAX_GRID_SIDE}, got {self.grid}")

    @property
    def default_heatmap(self) -> str:
        """The read-out ``stg ground --heatmap auto`` (the default) uses for this model: the
        local branch's paper chain (``paper``) when it shares f and g, else the global branch's
        activation map (``global``). Measured (benchmarks/RESULTS.md): with its own f' and g'
        the paper chain points little above the centre prior and the activation map is the
        better read-out (the ablation); with shared projections the paper chain points as often
        as the same model's activation map and a wrong query costs it more ("The same models on
        30 test videos")."""
        return "paper" if self.local_projections == "shared" else "global"

    @property
    def num_cells(self) -> int:
        """N, grid tokens per frame."""
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict:
        """Plain JSON-able dict (``grid`` as a list)."""
        data = asdict(self)
        data["grid"] = list(self.grid)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown model config keys: {', '.join(unknown)}")
        values = dict(data)
        values.setdefault("center_video", False)
        if "grid" in values:
            values["grid"] = tuple(values["grid"])
        return cls(**values)
