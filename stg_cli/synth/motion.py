"""Motion that is not the narrated step (synth v2): distractor actions, idle motion, the camera.

In real instructional video the step is rarely the only thing that moves: hands, tools, other
food and the camera move too, and the task is to find the *queried* action among them. So that a
detector of change cannot pass for grounding, every second of a v2 video holds, besides the
step:

- ``distractor_actions`` **distractor actions** (:class:`Distractor`): unnarrated actions on
  other objects, drawn with the same animated signatures as real steps. Their (verb, noun) pair
  is never one of the video's own steps (so the temporal ground truth and the wrong-query
  control stay clean); with probability :data:`SHARED_VERB_PROBABILITY` a distractor takes the
  current step's verb, so that the verb's look alone does not say which region is the step.
  They run in tracks of events of :data:`DISTRACTOR_SECONDS` seconds, on one object each; an
  event ends early when the step moves onto its object. At most one action per object at once.
- ``idle_motions`` tracks of **idle motion**, back to back: a hand passing across
  (:class:`HandPass`: reaching in from an edge to a point of the table and back), an idle
  object sliding away and back (:class:`Slide`, only an object no action uses meanwhile) or a
  flickering patch (:class:`Flicker`, a screen or a reflection).
- a **camera** (:class:`Camera`) that pans and zooms slowly and a global lighting change (a
  gain and a light gradient moving left and right), over the whole video.

Narration describes the step only, like background activity in real video. Everything is drawn
from the video's own random stream for this purpose, so the v1 plan (scene, steps, captions) of
a seed is unchanged by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from stg_cli.synth.config import Difficulty
from stg_cli.synth.world import query_text

if TYPE_CHECKING:
    from stg_cli.synth.script import Action, SceneObject

DISTRACTOR_SECONDS = (3, 8)
SHARED_VERB_PROBABILITY = 0.3
HAND_SECONDS = (2.0, 4.0)
SLIDE_SECONDS = (3.0, 6.0)
FLICKER_SECONDS = (3.0, 6.0)
CAMERA_PERIOD_SECONDS = (20.0, 60.0)


@dataclass(frozen=True)
class Distractor:
    """An unnarrated action: ``verb`` on ``objects[target]`` during whole seconds
    ``start..end`` (inclusive), in distractor track ``track``."""

    verb: str
    noun: str
    target: int
    start: int
    end: int
    track: int

    @property
    def query(self) -> str:
        return query_text(self.verb, self.noun)


@dataclass(frozen=True)
class HandPass:
    """A hand of side ``size`` whose centre goes from ``(x0, y0)`` (outside an edge) to
    ``(x1, y1)`` and back during ``[start, end)`` seconds; frame pixels before the camera."""

    kind: ClassVar[str] = "hand"

    start: float
    end: float
    size: int
    x0: float
    y0: float
    x1: float
    y1: float

    def centre(self, t: float) -> tuple[float, float]:
        reach = math.sin(math.pi * (t - self.start) / (self.end - self.start))
        return self.x0 + (self.x1 - self.x0) * reach, self.y0 + (self.y1 - self.y0) * reach


@dataclass(frozen=True)
class Slide:
    """``objects[target]`` moves by up to ``(dx, dy)`` pixels and back during ``[start, end)``."""

    kind: ClassVar[str] = "slide"

    start: float
    end: float
    target: int
    dx: float
    dy: float

    def offset(self, t: float) -> tuple[int, int]:
        away = math.sin(math.pi * (t - self.start) / (self.end - self.start))
        return round(self.dx * away), round(self.dy * away)


@dataclass(frozen=True)
class Flicker:
    """The pixels of the rectangle ``x, y, width, height`` (frame pixels before the camera)
    brighten and darken by ``depth`` (a fraction) in a square wave of ``hertz`` during
    ``[start, end)``."""

    kind: ClassVar[str] = "flicker"

    start: float
    end: float
    x: int
    y: int
    width: int
    height: int
    hertz: float
    phase: float
    depth: float

    def gain(self, t: float) -> float:
        wave = math.sin(2 * math.pi * self.hertz * t + self.phase)
        return 1.0 + self.depth * (1.0 if wave >= 0 else -1.0)


IdleMotion = HandPass | Slide | Flicker


@dataclass(frozen=True)
class Camera:
    """Slow pan (amplitudes in pixels), zoom-in (largest factor ``1 + zoom``) and lighting
    (global gain amplitude ``gain``, left-right gradient amplitude ``gradient``), each a
    sinusoid of its own period (seconds) and phase."""

    pan_x: float
    pan_y: float
    zoom: float
    gain: float
    gradient: float
    periods: tuple[float, float, float, float, float]
    phases: tuple[float, float, float, float, float]

    @property
    def still(self) -> bool:
        """Whether the camera never pans, zooms or changes the light (the v1 camera)."""
        return not (self.pan_x or self.pan_y or self.zoom or self.gain or self.gradient)

    def _wave(self, k: int, t: float) -> float:
        return math.sin(2 * math.pi * t / self.periods[k] + self.phases[k])

    def view(self, t: float) -> tuple[float, float, float]:
        """``(pan_x, pan_y, zoom factor ≥ 1)`` at time ``t``."""
        return (
            self.pan_x * self._wave(0, t),
            self.pan_y * self._wave(1, t),
            1.0 + self.zoom * 0.5 * (1.0 + self._wave(2, t)),
        )

    def light(self, t: float, width: int) -> np.ndarray:
        """``[width]`` float32: the gain of each pixel column at time ``t``."""
        columns = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
        return (1.0 + self.gain * self._wave(3, t) + 2.0 * self.gradient * self._wave(4, t) * columns).astype(
            np.float32
        )


STILL_CAMERA = Camera(0.0, 0.0, 0.0, 0.0, 0.0, (1.0,) * 5, (0.0,) * 5)


def plan_camera(rng: np.random.Generator, difficulty: Difficulty, width: int, height: int) -> Camera:
    """The video's camera: pan ``difficulty.pan`` of the frame size, zoom up to
    ``difficulty.zoom``, lighting ``difficulty.lighting``."""
    if not (difficulty.pan or difficulty.zoom or difficulty.lighting):
        return STILL_CAMERA
    periods = tuple(float(p) for p in rng.uniform(*CAMERA_PERIOD_SECONDS, size=5))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, size=5))
    return Camera(
        difficulty.pan * width,
        difficulty.pan * height,
        difficulty.zoom,
        difficulty.lighting,
        difficulty.lighting,
        periods,
        phases,
    )


def plan_distractors(
    rng: np.random.Generator,
    count: int,
    duration: int,
    objects: list[SceneObject],
    actions: list[Action],
    verbs: list[str],
) -> list[Distractor]:
    """``count`` tracks (at most one fewer than the objects) of distractor actions covering
    every second of the video; see the module docstring for the rules."""
    tracks = min(count, len(objects) - 1)
    steps = {(a.verb, a.noun) for a in actions}
    step_at = {s: a for a in actions for s in range(a.start, a.end + 1)}
    current: list[list | None] = [None] * tracks  # [verb, target, start, planned end]
    events: list[Distractor] = []

    def close(track: int, last: int) -> None:
        verb, target, start, _ = current[track]
        events.append(Distractor(verb, objects[target].noun, target, start, last, track))
        current[track] = None

    for second in range(duration):
        step = step_at.get(second)
        busy = {step.target} if step is not None else set()
        for track in range(tracks):
            event = current[track]
            if event is not None and (second > event[3] or event[1] in busy):
                close(track, second - 1)
            elif event is not None:
                busy.add(event[1])
        for track in range(tracks):
            if current[track] is not None:
                continue
            free = [i for i in range(len(objects)) if i not in busy]
            target = free[int(rng.integers(len(free)))]
            noun = objects[target].noun
            allowed = [v for v in verbs if (v, noun) not in steps]
            if not allowed:
                continue
            if step is not None and step.verb in allowed and rng.random() < SHARED_VERB_PROBABILITY:
                verb = step.verb
            else:
                verb = allowed[int(rng.integers(len(allowed)))]
            length = int(rng.integers(DISTRACTOR_SECONDS[0], DISTRACTOR_SECONDS[1] + 1))
            current[track] = [verb, target, second, second + length - 1]
            busy.add(target)
    for track in range(tracks):
        if current[track] is not None:
            close(track, duration - 1)
    return sorted(events, key=lambda d: (d.start, d.track))


def plan_idle(
    rng: np.random.Generator,
    count: int,
    duration: int,
    width: int,
    height: int,
    objects: list[SceneObject],
    actions: list[Action],
    distractors: list[Distractor],
) -> list[IdleMotion]:
    """``count`` back-to-back tracks of idle motion over ``[0, duration)``."""
    acted = [(a.target, a.start, a.end + 1) for a in actions]
    acted += [(d.target, d.start, d.end + 1) for d in distractors]
    motions: list[IdleMotion] = []
    for _ in range(count):
        t = 0.0
        while t < duration:
            kind = ("hand", "slide", "flicker")[int(rng.integers(3))]
            motion = _slide(rng, t, duration, objects, acted, motions) if kind == "slide" else None
            if motion is None and kind != "hand":
                motion = _flicker(rng, t, duration, width, height)
            if motion is None:
                motion = _hand(rng, t, duration, width, height, objects)
            motions.append(motion)
            t = motion.end
    return motions


def _slide(
    rng: np.random.Generator,
    t: float,
    duration: int,
    objects: list[SceneObject],
    acted: list[tuple[int, float, float]],
    motions: list[IdleMotion],
) -> Slide | None:
    """An object that no action uses and nothing else slides meanwhile moves away and back;
    None when there is no such object."""
    end = min(float(duration), t + float(rng.uniform(*SLIDE_SECONDS)))
    sliding = {m.target for m in motions if isinstance(m, Slide) and m.start < end and t < m.end}
    free = [
        i
        for i in range(len(objects))
        if i not in sliding and all(target != i or stop <= t or end <= begin for target, begin, stop in acted)
    ]
    if not free:
        return None
    target = free[int(rng.integers(len(free)))]
    angle = rng.uniform(0, 2 * math.pi)
    reach = objects[target].size * rng.uniform(0.3, 0.6)
    return Slide(round(t, 3), round(end, 3), target, reach * math.cos(angle), reach * math.sin(angle))


def _flicker(rng: np.random.Generator, t: float, duration: int, width: int, height: int) -> Flicker:
    """A patch of 10-18 % of the frame's width and height flickering at 1.5-3 Hz."""
    end = min(float(duration), t + float(rng.uniform(*FLICKER_SECONDS)))
    w = int(width * rng.uniform(0.1, 0.18))
    h = int(height * rng.uniform(0.1, 0.18))
    return Flicker(
        round(t, 3),
        round(end, 3),
        int(rng.integers(0, width - w)),
        int(rng.integers(0, height - h)),
        w,
        h,
        float(rng.uniform(1.5, 3.0)),
        float(rng.uniform(0, 2 * math.pi)),
        float(rng.uniform(0.25, 0.45)),
    )


def _hand(
    rng: np.random.Generator, t: float, duration: int, width: int, height: int, objects: list[SceneObject]
) -> HandPass:
    """A hand reaching from a random edge to a point near a random object, and back."""
    length = float(rng.uniform(*HAND_SECONDS))
    size = int(round(max(o.size for o in objects) * rng.uniform(0.8, 1.0))) if objects else (width // 5)
    edge = int(rng.integers(4))
    along = float(rng.uniform(0.15, 0.85))
    x0, y0 = (
        (along * width, height + size / 2),
        (along * width, -size / 2),
        (-size / 2, along * height),
        (width + size / 2, along * height),
    )[edge]
    if objects:
        obj = objects[int(rng.integers(len(objects)))]
        x1 = obj.x + obj.size / 2 + rng.uniform(-0.5, 0.5) * obj.size
        y1 = obj.y + obj.size / 2 + rng.uniform(-0.5, 0.5) * obj.size
    else:
        x1, y1 = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    return HandPass(
        round(t, 3),
        round(min(float(duration), t + length), 3),
        size,
        float(x0),
        float(y0),
        float(x1),
        float(y1),
    )
