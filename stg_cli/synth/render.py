"""Rendering a ``VideoPlan`` to frames and an h264 ``.mp4``.

Per video the static scene (textured table + objects) is drawn once on a *world* canvas a few
pixels larger than the frame, with a fixed grain of pixel noise (``NOISE_VARIANTS`` grains in
turn when the difficulty asks for temporal noise). A frame is composed on the part of the world
the camera sees, bottom to top: the scene (idle objects sliding), the signatures of the step and
of the distractor actions (in scene order of their objects), flickering patches, passing hands;
then the camera's crop (jitter, and in v2 pan and zoom, resampled bilinearly to the frame size)
and the lighting (v2). Without pan, zoom and lighting (the v1 world) the crop is a plain slice
at a whole-pixel offset. Everything is a function of the plan, so the same plan gives the same
pixels.

Boxes are pixel-inclusive ``(x1, y1, x2, y2)`` in rendered frame pixels: the bounding box of
the frame pixels that an action's object and signature reach (through the resampling, every
frame pixel whose value they change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from stg_cli import files
from stg_cli.synth.config import Difficulty
from stg_cli.synth.motion import Distractor, Flicker, HandPass, Slide
from stg_cli.synth.script import Action, VideoPlan
from stg_cli.synth.world import PHASES, hand_sprite, noun_sprite, verb_sprites

NOISE_VARIANTS = 4
PHASES_PER_SECOND = 2

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Placed:
    """A sprite's binary mask and colours and its top-left corner in region coordinates."""

    rgb: np.ndarray  # [h, w, 3] uint8
    mask: np.ndarray  # [h, w] bool
    x: int
    y: int


@dataclass(frozen=True)
class _View:
    """What the camera sees at one frame: the crop ``(x0, y0, width, height)`` of the world
    canvas (floats) and the whole-pixel region ``[ry0:ry1, rx0:rx1]`` that holds it."""

    x0: float
    y0: float
    width: float
    height: float
    rx0: int
    ry0: int
    rx1: int
    ry1: int


class VideoRenderer:
    """Frames of one planned video: ``frame(i)`` is ``[height, width, 3]`` uint8 RGB."""

    def __init__(self, plan: VideoPlan, difficulty: Difficulty) -> None:
        self.plan = plan
        rng = np.random.default_rng(plan.render_seed)
        self.amplitude = difficulty.jitter * plan.width
        self.resampled = not plan.camera.still
        pan = max(abs(plan.camera.pan_x), abs(plan.camera.pan_y))
        self.margin = int(math.ceil(self.amplitude + pan)) + 1 + int(self.resampled)
        self.phase = rng.uniform(0, 2 * math.pi, size=2)
        table = _background(plan.background, plan.width + 2 * self.margin, plan.height + 2 * self.margin, rng)
        canvas = table.copy()
        for obj in plan.objects:
            sprite = noun_sprite(obj.noun, obj.size)
            mask = sprite[..., 3] > 0
            y, x = obj.y + self.margin, obj.x + self.margin
            region = canvas[y : y + obj.size, x : x + obj.size]
            region[mask] = sprite[..., :3][mask]
        slides = any(isinstance(motion, Slide) for motion in plan.idle)
        self.scenes, self.tables = [], []
        for _ in range(NOISE_VARIANTS if difficulty.temporal_noise else 1):
            noise = rng.normal(0.0, difficulty.noise, size=canvas.shape)
            self.scenes.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
            if slides:
                self.tables.append(np.clip(table + noise, 0, 255).astype(np.uint8))
        self._signatures = {}
        for verb, target in [(a.verb, a.target) for a in plan.actions] + [
            (d.verb, d.target) for d in plan.distractors
        ]:
            key = (verb, plan.objects[target].size)
            if key not in self._signatures:
                self._signatures[key] = verb_sprites(*key)

    def jitter(self, index: int) -> tuple[int, int]:
        """The camera offset ``(dx, dy)`` in pixels at frame ``index``: slow sinusoids."""
        t = index / self.plan.fps
        dx = round(self.amplitude * math.sin(2 * math.pi * t / 7.3 + self.phase[0]))
        dy = round(self.amplitude * math.sin(2 * math.pi * t / 5.1 + self.phase[1]))
        return dx, dy

    def action_at_frame(self, index: int) -> Action | None:
        return self.plan.action_at(index // self.plan.fps)

    def distractors_at_frame(self, index: int) -> list[Distractor]:
        return self.plan.distractors_at(index // self.plan.fps)

    def _view(self, index: int) -> _View:
        plan = self.plan
        dx, dy = self.jitter(index)
        if not self.resampled:
            x0, y0 = self.margin + dx, self.margin + dy
            return _View(x0, y0, plan.width, plan.height, x0, y0, x0 + plan.width, y0 + plan.height)
        pan_x, pan_y, zoom = plan.camera.view(index / plan.fps)
        width, height = plan.width / zoom, plan.height / zoom
        x0 = self.margin + dx + pan_x + (plan.width - width) / 2
        y0 = self.margin + dy + pan_y + (plan.height - height) / 2
        canvas_h, canvas_w = self.scenes[0].shape[:2]
        return _View(
            x0,
            y0,
            width,
            height,
            math.floor(x0),
            math.floor(y0),
            min(canvas_w, math.ceil(x0 + width) + 1),
            min(canvas_h, math.ceil(y0 + height) + 1),
        )

    def _signature(self, verb: str, target: int, index: int, view: _View) -> _Placed:
        obj = self.plan.objects[target]
        sprites = self._signatures[(verb, obj.size)]
        sprite = sprites[(index * PHASES_PER_SECOND // self.plan.fps) % PHASES]
        half = obj.size // 2
        return _Placed(
            sprite[..., :3],
            sprite[..., 3] > 0,
            obj.x - half + self.margin - view.rx0,
            obj.y - half + self.margin - view.ry0,
        )

    def _acted(self, index: int, with_action: bool, tracks: Collection[int] | None) -> list[tuple[str, int]]:
        """(verb, target) of every signature drawn at frame ``index``, in scene order."""
        acted = []
        action = self.action_at_frame(index) if with_action else None
        if action is not None:
            acted.append((action.verb, action.target))
        acted += [
            (d.verb, d.target)
            for d in self.distractors_at_frame(index)
            if tracks is None or d.track in tracks
        ]
        return sorted(acted, key=lambda item: item[1])

    def frame(
        self,
        index: int,
        with_action: bool = True,
        distractor_tracks: Collection[int] | None = None,
        with_idle: bool = True,
    ) -> np.ndarray:
        """Frame ``index`` (time ``index / fps``): ``[height, width, 3]`` uint8. The step's
        signature and the idle motion can be left out, and the distractor actions drawn only
        for ``distractor_tracks`` (None: all)."""
        plan = self.plan
        view = self._view(index)
        scene = self.scenes[index % len(self.scenes)]
        image = scene[view.ry0 : view.ry1, view.rx0 : view.rx1].copy()
        t = index / plan.fps
        idle = plan.idle_at(t) if with_idle else []
        for motion in idle:
            if isinstance(motion, Slide):
                self._slide(image, motion, t, index, view)
        for verb, target in self._acted(index, with_action, distractor_tracks):
            _paste(image, self._signature(verb, target, index, view))
        for motion in idle:
            if isinstance(motion, Flicker):
                self._flicker(image, motion, t, view)
        for motion in idle:
            if isinstance(motion, HandPass):
                sprite = hand_sprite(motion.size)
                cx, cy = motion.centre(t)
                _paste(
                    image,
                    _Placed(
                        sprite[..., :3],
                        sprite[..., 3] > 0,
                        round(cx - motion.size / 2) + self.margin - view.rx0,
                        round(cy - motion.size / 2) + self.margin - view.ry0,
                    ),
                )
        if not self.resampled:
            return image
        resized = np.asarray(
            Image.fromarray(image).resize((plan.width, plan.height), Image.BILINEAR, box=_box_in_region(view))
        )
        # Gains in 1/128 steps: integer arithmetic halves the cost of a float multiply, and
        # 255 * 128 * gain stays inside uint16 for every gain below 2.
        light = np.round(plan.camera.light(t, plan.width) * 128).astype(np.uint16)
        return np.minimum((resized * light[None, :, None]) >> 7, 255).astype(np.uint8)

    def _slide(self, image: np.ndarray, motion: Slide, t: float, index: int, view: _View) -> None:
        """Moves ``objects[motion.target]`` to its offset at ``t``: the table where it rests,
        the object (with its grain) at the offset."""
        obj = self.plan.objects[motion.target]
        variant = index % len(self.scenes)
        x, y = obj.x + self.margin, obj.y + self.margin
        rest = (slice(y, y + obj.size), slice(x, x + obj.size))
        mask = noun_sprite(obj.noun, obj.size)[..., 3] > 0
        pixels = self.scenes[variant][rest]
        _paste(image, _Placed(self.tables[variant][rest], mask, x - view.rx0, y - view.ry0))
        dx, dy = motion.offset(t)
        _paste(image, _Placed(pixels, mask, x + dx - view.rx0, y + dy - view.ry0))

    def _flicker(self, image: np.ndarray, motion: Flicker, t: float, view: _View) -> None:
        x0 = max(0, motion.x + self.margin - view.rx0)
        y0 = max(0, motion.y + self.margin - view.ry0)
        x1 = min(image.shape[1], motion.x + motion.width + self.margin - view.rx0)
        y1 = min(image.shape[0], motion.y + motion.height + self.margin - view.ry0)
        if x0 < x1 and y0 < y1:
            patch = image[y0:y1, x0:x1].astype(np.float32) * motion.gain(t)
            image[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)

    def _frame_mask(self, placed: list[_Placed], view: _View) -> np.ndarray:
        """``[height, width]`` bool: the frame pixels that the masks of ``placed`` (region
        coordinates) reach through the camera."""
        plan = self.plan
        region = np.zeros((view.ry1 - view.ry0, view.rx1 - view.rx0), dtype=bool)
        for item in placed:
            target, source = _overlap(item, region.shape[1], region.shape[0])
            if target is not None:
                region[target] |= item.mask[source]
        if not self.resampled:
            return region
        reached = Image.fromarray(region.astype(np.float32), mode="F").resize(
            (plan.width, plan.height), Image.BILINEAR, box=_box_in_region(view)
        )
        return np.asarray(reached) > 0

    def _acted_mask(self, verb: str, target: int, index: int) -> np.ndarray:
        view = self._view(index)
        obj = self.plan.objects[target]
        signature = self._signature(verb, target, index, view)
        sprite = noun_sprite(obj.noun, obj.size)
        body = _Placed(
            sprite[..., :3],
            sprite[..., 3] > 0,
            obj.x + self.margin - view.rx0,
            obj.y + self.margin - view.ry0,
        )
        return self._frame_mask([signature, body], view)

    def action_mask(self, index: int) -> np.ndarray:
        """``[height, width]`` bool: the frame pixels of the acted object and its signature at
        frame ``index`` (all False outside actions)."""
        action = self.action_at_frame(index)
        if action is None:
            return np.zeros((self.plan.height, self.plan.width), dtype=bool)
        return self._acted_mask(action.verb, action.target, index)

    def box(self, second: int) -> Box | None:
        """The box of the step at ``second`` (its first frame), or None."""
        return _bounding_box(self.action_mask(second * self.plan.fps))

    def distractor_boxes(self, second: int) -> list[tuple[Distractor, Box | None]]:
        """Each distractor action at ``second`` (by track) with its box at the second's first
        frame (None when the camera does not see it)."""
        index = second * self.plan.fps
        return [
            (d, _bounding_box(self._acted_mask(d.verb, d.target, index)))
            for d in self.plan.distractors_at(second)
        ]


def _box_in_region(view: _View) -> tuple[float, float, float, float]:
    x0, y0 = view.x0 - view.rx0, view.y0 - view.ry0
    return x0, y0, x0 + view.width, y0 + view.height


def _bounding_box(mask: np.ndarray) -> Box | None:
    if not mask.any():
        return None
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def _paste(image: np.ndarray, placed: _Placed) -> None:
    target, source = _overlap(placed, image.shape[1], image.shape[0])
    if target is not None:
        np.copyto(image[target], placed.rgb[source], where=placed.mask[source][..., None])


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


def render_to_mp4(
    renderer: VideoRenderer,
    path: Path,
    crf: int = 23,
    preset: str = "superfast",
    on_frame: Callable[[int], None] | None = None,
    threads: int = 0,
) -> int:
    """Renders every frame and writes an h264 (libx264, yuv420p) ``.mp4`` atomically (a
    temporary file renamed into place) with ``threads`` encoder threads (0: x264 decides);
    returns the number of frames."""
    plan = renderer.plan
    path = Path(path)
    with files.atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=plan.fps, options={"preset": preset, "crf": str(crf), "threads": str(threads)}
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
    return plan.num_frames
