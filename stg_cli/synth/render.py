"""Rendering a ``VideoPlan`` to frames and an h264 ``.mp4``.

Per video the static scene (textured table + objects) is drawn once on a canvas a few pixels
larger than the frame, with a fixed grain of pixel noise (``NOISE_VARIANTS`` grains in turn when
the difficulty asks for temporal noise); a frame is a crop of one copy
(camera jitter) plus, during an action, the verb's signature pasted around the acted object.
Everything is a function of the plan, so the same plan gives the same pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from stg_cli.synth.config import Difficulty
from stg_cli.synth.script import Action, VideoPlan
from stg_cli.synth.world import PHASES, noun_sprite, verb_sprites

NOISE_VARIANTS = 4
PHASES_PER_SECOND = 2

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Placed:
    """A sprite's binary mask and colours and its top-left corner in frame coordinates."""

    rgb: np.ndarray  # [h, w, 3] uint8
    mask: np.ndarray  # [h, w] bool
    x: int
    y: int


class VideoRenderer:
    """Frames of one planned video: ``frame(i)`` is ``[height, width, 3]`` uint8 RGB."""

    def __init__(self, plan: VideoPlan, difficulty: Difficulty) -> None:
        self.plan = plan
        rng = np.random.default_rng(plan.render_seed)
        self.amplitude = difficulty.jitter * plan.width
        self.margin = int(math.ceil(self.amplitude)) + 1
        self.phase = rng.uniform(0, 2 * math.pi, size=2)
        canvas = _background(plan.background, plan.width + 2 * self.margin,
                             plan.height + 2 * self.margin, rng)
        for obj in plan.objects:
            sprite = noun_sprite(obj.noun, obj.size)
            mask = sprite[..., 3] > 0
            y, x = obj.y + self.margin, obj.x + self.margin
            region = canvas[y : y + obj.size, x : x + obj.size]
            region[mask] = sprite[..., :3][mask]
        noisy = []
        for _ in range(NOISE_VARIANTS if difficulty.temporal_noise else 1):
            noise = rng.normal(0.0, difficulty.noise, size=canvas.shape)
            noisy.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
        self.scenes = noisy
        self._signatures = {}
        for action in plan.actions:
            obj = plan.objects[action.target]
            key = (action.verb, obj.size)
            if key not in self._signatures:
                self._signatures[key] = verb_sprites(action.verb, obj.size)

    def jitter(self, index: int) -> tuple[int, int]:
        """The camera offset ``(dx, dy)`` in pixels at frame ``index``: slow sinusoids."""
        t = index / self.plan.fps
        dx = round(self.amplitude * math.sin(2 * math.pi * t / 7.3 + self.phase[0]))
        dy = round(self.amplitude * math.sin(2 * math.pi * t / 5.1 + self.phase[1]))
        return dx, dy

    def action_at_frame(self, index: int) -> Action | None:
        return self.plan.action_at(index // self.plan.fps)

    def _signature(self, action: Action, index: int) -> _Placed:
        obj = self.plan.objects[action.target]
        sprites = self._signatures[(action.verb, obj.size)]
        phase = (index * PHASES_PER_SECOND // self.plan.fps) % PHASES
        sprite = sprites[phase]
        dx, dy = self.jitter(index)
        half = obj.size // 2
        return _Placed(sprite[..., :3], sprite[..., 3] > 0, obj.x - half - dx, obj.y - half - dy)

    def frame(self, index: int, with_action: bool = True) -> np.ndarray:
        """Frame ``index`` (time ``index / fps``): ``[height, width, 3]`` uint8."""
        plan = self.plan
        dx, dy = self.jitter(index)
        y0, x0 = self.margin + dy, self.margin + dx
        scene = self.scenes[index % len(self.scenes)]
        image = scene[y0 : y0 + plan.height, x0 : x0 + plan.width].copy()
        action = self.action_at_frame(index) if with_action else None
        if action is not None:
            placed = self._signature(action, index)
            target, source = _overlap(placed, plan.width, plan.height)
            if target is not None:
                region = image[target]
                mask = placed.mask[source]
                region[mask] = placed.rgb[source][mask]
        return image

    def action_mask(self, index: int) -> np.ndarray:
        """``[height, width]`` bool: the pixels of the acted object and its signature at frame
        ``index`` (all False outside actions)."""
        plan = self.plan
        mask = np.zeros((plan.height, plan.width), dtype=bool)
        action = self.action_at_frame(index)
        if action is None:
            return mask
        placed = self._signature(action, index)
        obj = plan.objects[action.target]
        full = placed.mask.copy()
        half = obj.size // 2
        full[half : half + obj.size, half : half + obj.size] |= noun_sprite(obj.noun, obj.size)[
            ..., 3
        ] > 0
        target, source = _overlap(_Placed(placed.rgb, full, placed.x, placed.y), plan.width,
                                  plan.height)
        if target is not None:
            mask[target] = full[source]
        return mask

    def box(self, second: int) -> Box | None:
        """The pixel-inclusive ``(x1, y1, x2, y2)`` box of the action at ``second`` in rendered
        pixels (bounding box of ``action_mask`` at that second's first frame), or None."""
        mask = self.action_mask(second * self.plan.fps)
        if not mask.any():
            return None
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def _overlap(placed: _Placed, width: int, height: int) -> tuple:
    """Slices (frame, sprite) of the part of ``placed`` inside the frame, or (None, None)."""
    h, w = placed.mask.shape
    fx0, fy0 = max(0, placed.x), max(0, placed.y)
    fx1, fy1 = min(width, placed.x + w), min(height, placed.y + h)
    if fx0 >= fx1 or fy0 >= fy1:
        return None, None
    target = (slice(fy0, fy1), slice(fx0, fx1))
    source = (slice(fy0 - placed.y, fy1 - placed.y), slice(fx0 - placed.x, fx1 - placed.x))
    return target, source


def _background(style: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, textured table top: ``[height, width, 3]`` float32 in 0..255."""
    hue = rng.uniform(0, 1)
    saturation = rng.uniform(0.12, 0.3)
    value = rng.uniform(0.45, 0.65)
    base = np.array(_hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if style == "wood":
        freq = rng.uniform(0.15, 0.3)
        wave = np.sin(ys * freq + 3.0 * np.sin(xs * 0.02 + rng.uniform(0, 6)))
        shade = 1.0 + 0.08 * wave
    elif style == "tiles":
        tile = max(8, width // int(rng.integers(5, 9)))
        grout = (xs % tile < 2) | (ys % tile < 2)
        shade = np.where(grout, 0.7, 1.0) + 0.04 * (((xs // tile) + (ys // tile)) % 2)
    else:
        check = max(8, width // int(rng.integers(8, 14)))
        shade = 1.0 + 0.07 * ((((xs // check) + (ys // check)) % 2) * 2 - 1)
    return (base[None, None, :] * shade[..., None]).astype(np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def encode_video(
    renderer: VideoRenderer,
    path: Path,
    crf: int = 23,
    preset: str = "veryfast",
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Renders every frame and writes an h264 (libx264, yuv420p) ``.mp4`` atomically (a
    temporary file renamed into place); returns the number of frames."""
    plan = renderer.plan
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(
                "libx264", rate=plan.fps, options={"preset": preset, "crf": str(crf)}
            )
            stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, "yuv420p"
            for index in range(plan.num_frames):
                frame = av.VideoFrame.from_ndarray(renderer.frame(index), format="rgb24")
                frame.pts = index
                for packet in stream.encode(frame):
                    container.mux(packet)
                if on_frame is not None:
                    on_frame(index)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return plan.num_frames
