"""The vocabulary of the synthetic world and how its nouns and verbs look.

Nouns are objects with their own colour, shape and texture; verbs are signatures drawn on and
around the acted object (a knife across it, bubbles around it, flames under it, ...), each with a
saturated colour no noun uses, so that a single frame shows which action happens and where, even
for a small random-init conv net looking at a 112 x 112 thumbnail.

Sprites are RGBA ``numpy`` arrays with a binary alpha: ``noun_sprite(name, s)`` is ``[s, s, 4]``;
``verb_sprites(name, s)`` is ``[PHASES, s + 2 * (s // 2), s + 2 * (s // 2), 4]``, a canvas twice
the object's size with the object's square in its middle, one image per animation phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

PHASES = 4

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Noun:
    """An object: its query word and the other words narration uses for it."""

    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Verb:
    """An action: its query word, the base forms narration uses, and their -ing forms."""

    name: str
    words: tuple[str, ...]
    gerunds: tuple[str, ...]


NOUNS: tuple[Noun, ...] = (
    Noun("tomato", ("tomato", "tomatoes")),
    Noun("egg", ("egg", "eggs")),
    Noun("bread", ("bread", "loaf")),
    Noun("cheese", ("cheese", "cheddar")),
    Noun("carrot", ("carrot", "carrots")),
    Noun("cucumber", ("cucumber", "cucumbers")),
    Noun("onion", ("onion", "onions")),
    Noun("potato", ("potato", "potatoes")),
    Noun("fish", ("fish", "salmon")),
    Noun("meat", ("meat", "steak", "beef")),
    Noun("broccoli", ("broccoli", "florets")),
    Noun("shrimp", ("shrimp", "prawns")),
)

VERBS: tuple[Verb, ...] = (
    Verb("cut", ("cut", "slice", "chop"), ("cutting", "slicing", "chopping")),
    Verb("wash", ("wash", "rinse"), ("washing", "rinsing")),
    Verb("fry", ("fry", "cook"), ("frying", "cooking")),
    Verb("season", ("season", "salt"), ("seasoning", "salting")),
    Verb("grab", ("grab", "take", "pick up"), ("grabbing", "taking", "picking up")),
    Verb("cover", ("cover", "put a lid on"), ("covering", "putting a lid on")),
    Verb("stir", ("stir", "mix"), ("stirring", "mixing")),
    Verb("mash", ("mash", "crush"), ("mashing", "crushing")),
    Verb("flip", ("flip", "turn"), ("flipping", "turning")),
    Verb("peel", ("peel", "skin"), ("peeling", "skinning")),
)

NOUN_BY_NAME = {noun.name: noun for noun in NOUNS}
VERB_BY_NAME = {verb.name: verb for verb in VERBS}

NARRATION_TEMPLATES: tuple[str, ...] = (
    "okay now i'm going to {verb} the {noun}",
    "next we {verb} the {noun}",
    "so you just {verb} your {noun} like this",
    "now {verb} the {noun} a little bit",
    "let's {verb} the {noun}",
    "and then you want to {verb} the {noun} okay",
    "i'm gonna {verb} this {noun} right here",
    "now i'm {gerund} the {noun}",
    "so here i'm just {gerund} my {noun}",
    "we are {gerund} the {noun} now",
    "the next step is to {verb} the {noun}",
    "all right {verb} the {noun} like that",
)

FOLLOWUP_TEMPLATES: tuple[str, ...] = (
    "keep {gerund} the {noun}",
    "just {verb} it a little more",
    "you want to {verb} it really well",
    "{gerund} it until it looks good",
    "still {gerund} this {noun}",
)

MENTION_TEMPLATES: tuple[str, ...] = (
    "you could also {verb} the {noun} but i'm skipping that",
    "some people like to {verb} the {noun} first",
    "if you want you can {verb} the {noun} later",
)

FILLER_TEMPLATES: tuple[str, ...] = (
    "hi guys welcome back to my kitchen",
    "today we're making something really simple",
    "this is going to be so delicious",
    "don't forget to like and subscribe",
    "so that's it for this step",
    "you can see it looks really nice",
    "let me show you how i do it",
    "i really love this recipe",
    "make sure you have everything ready",
    "it smells amazing already",
    "thank you so much for watching",
    "i got this {noun} from the market this morning",
    "this {noun} is really fresh",
    "i always keep some {noun} in the fridge",
)

# Colours: nouns take natural tones, verbs saturated ones no noun uses.
_OUTLINE: RGB = (25, 25, 25)


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def _binary(image: Image.Image) -> np.ndarray:
    array = np.array(image, dtype=np.uint8)
    array[..., 3] = np.where(array[..., 3] >= 128, 255, 0).astype(np.uint8)
    array.setflags(write=False)  # cached and shared between renderers
    return array


def _width(s: int, fraction: float) -> int:
    return max(1, round(s * fraction))


@lru_cache(maxsize=256)
def noun_sprite(name: str, s: int) -> np.ndarray:
    """The object ``name`` drawn in an ``[s, s, 4]`` RGBA uint8 array (alpha 0 or 255)."""
    image, draw = _canvas(s)
    m = _width(s, 0.06)
    w = _width(s, 0.05)
    if name == "tomato":
        draw.ellipse([m, m, s - m, s - m], fill=(220, 25, 25), outline=_OUTLINE, width=w)
        c = s // 2
        for angle in range(0, 360, 72):
            a = math.radians(angle)
            top = m + s // 8
            draw.line(
                [c, top, c + s * 0.14 * math.cos(a), top + s * 0.14 * math.sin(a)],
                fill=(20, 140, 30),
                width=_width(s, 0.06),
            )
        draw.ellipse([s * 0.28, s * 0.3, s * 0.42, s * 0.44], fill=(255, 200, 200))
    elif name == "egg":
        draw.ellipse([s * 0.18, m, s * 0.82, s - m], fill=(248, 244, 225), outline=_OUTLINE, width=w)
        draw.ellipse([s * 0.32, s * 0.2, s * 0.45, s * 0.36], fill=(255, 255, 255))
    elif name == "bread":
        draw.rounded_rectangle(
            [m, s * 0.15, s - m, s * 0.85],
            radius=s // 6,
            fill=(200, 150, 85),
            outline=(110, 60, 20),
            width=_width(s, 0.1),
        )
        for x in (0.3, 0.5, 0.7):
            for y in (0.4, 0.6):
                draw.ellipse([s * x - 2, s * y - 2, s * x + 2, s * y + 2], fill=(245, 220, 170))
    elif name == "cheese":
        draw.polygon([(m, s - m), (s - m, s - m), (s - m, m)], fill=(250, 210, 0), outline=_OUTLINE)
        holes = ((0.62, 0.7, 0.08), (0.78, 0.45, 0.06), (0.45, 0.82, 0.05), (0.8, 0.78, 0.06))
        for x, y, r in holes:
            draw.ellipse([s * (x - r), s * (y - r), s * (x + r), s * (y + r)], fill=(190, 130, 0))
    elif name == "carrot":
        draw.polygon(
            [(s * 0.2, m), (s * 0.45, s * 0.12), (s * 0.85, s - m)], fill=(255, 120, 0), outline=_OUTLINE
        )
        for t in (0.3, 0.45, 0.6, 0.75):
            x, y = s * (0.32 + 0.5 * t), s * (0.06 + 0.9 * t)
            draw.line([x - s * 0.1, y, x + s * 0.05, y - s * 0.05], fill=(150, 60, 0), width=w)
        draw.polygon([(s * 0.2, m), (s * 0.05, 0), (s * 0.3, 0)], fill=(40, 160, 40))
    elif name == "cucumber":
        draw.ellipse([m, s * 0.28, s - m, s * 0.72], fill=(25, 100, 35), outline=_OUTLINE, width=w)
        for y in (0.4, 0.5, 0.6):
            draw.line([s * 0.18, s * y, s * 0.82, s * y], fill=(150, 220, 120), width=w)
    elif name == "onion":
        draw.ellipse([m, m, s - m, s - m], fill=(135, 45, 140), outline=_OUTLINE, width=w)
        for r in (0.32, 0.22, 0.12):
            draw.ellipse(
                [s * (0.5 - r), s * (0.5 - r), s * (0.5 + r), s * (0.5 + r)], outline=(230, 190, 235), width=w
            )
    elif name == "potato":
        draw.ellipse([m, s * 0.18, s - m, s * 0.82], fill=(125, 85, 45), outline=_OUTLINE, width=w)
        for x, y in ((0.3, 0.4), (0.55, 0.35), (0.7, 0.6), (0.4, 0.65), (0.6, 0.5)):
            draw.ellipse(
                [s * x - s * 0.04, s * y - s * 0.04, s * x + s * 0.04, s * y + s * 0.04], fill=(60, 35, 15)
            )
    elif name == "fish":
        draw.polygon(
            [(s * 0.72, s * 0.5), (s - m, s * 0.22), (s - m, s * 0.78)], fill=(60, 120, 175), outline=_OUTLINE
        )
        draw.ellipse([m, s * 0.28, s * 0.8, s * 0.72], fill=(70, 135, 190), outline=_OUTLINE, width=w)
        draw.ellipse([s * 0.16, s * 0.4, s * 0.26, s * 0.5], fill=(255, 255, 255), outline=_OUTLINE)
        draw.line([s * 0.3, s * 0.5, s * 0.65, s * 0.5], fill=(190, 220, 240), width=w)
    elif name == "meat":
        draw.polygon(
            [
                (s * 0.1, s * 0.3),
                (s * 0.45, m),
                (s * 0.9, s * 0.2),
                (s - m, s * 0.7),
                (s * 0.55, s - m),
                (s * 0.12, s * 0.8),
            ],
            fill=(125, 15, 40),
            outline=_OUTLINE,
        )
        draw.line([s * 0.2, s * 0.4, s * 0.5, s * 0.55, s * 0.8, s * 0.4], fill=(250, 235, 235), width=w)
        draw.line([s * 0.3, s * 0.7, s * 0.6, s * 0.75], fill=(250, 235, 235), width=w)
    elif name == "broccoli":
        draw.rectangle([s * 0.42, s * 0.5, s * 0.58, s - m], fill=(190, 230, 140), outline=_OUTLINE)
        for x, y in ((0.3, 0.35), (0.5, 0.25), (0.7, 0.35), (0.4, 0.5), (0.6, 0.5)):
            r = 0.17
            draw.ellipse(
                [s * (x - r), s * (y - r), s * (x + r), s * (y + r)],
                fill=(60, 175, 40),
                outline=(20, 80, 15),
                width=w,
            )
    elif name == "shrimp":
        draw.arc([m, m, s - m, s - m], start=200, end=20, fill=(255, 135, 150), width=_width(s, 0.25))
        for angle in (220, 260, 300, 340):
            a = math.radians(angle)
            r1, r2 = s * 0.22, s * 0.44
            c = s / 2
            draw.line(
                [c + r1 * math.cos(a), c + r1 * math.sin(a), c + r2 * math.cos(a), c + r2 * math.sin(a)],
                fill=(180, 60, 80),
                width=w,
            )
    else:
        raise KeyError(name)
    return _binary(image)


def _arc_points(cx: float, cy: float, r: float, start: float, end: float, n: int = 24) -> list:
    return [
        (
            cx + r * math.cos(math.radians(start + (end - start) * i / n)),
            cy + r * math.sin(math.radians(start + (end - start) * i / n)),
        )
        for i in range(n + 1)
    ]


def _draw_verb(draw: ImageDraw.ImageDraw, name: str, s: int, phase: int) -> None:
    """Draws verb ``name`` at animation ``phase`` on a canvas of side ``s + 2 * (s // 2)`` whose
    middle square ``[s // 2, s // 2 + s)`` is the object."""
    h = s // 2
    size = s + 2 * h
    c = size / 2
    w = _width(s, 0.09)
    p = phase / PHASES
    if name == "cut":
        # A knife across the object, moving up and down, with a red handle out of it.
        dy = s * 0.12 * math.sin(2 * math.pi * p)
        blade = [
            (h * 0.3, c + s * 0.2 + dy),
            (size * 0.6, c - s * 0.38 + dy),
            (size * 0.72, c - s * 0.16 + dy),
            (h * 0.6, c + s * 0.45 + dy),
        ]
        draw.polygon(blade, fill=(235, 235, 245), outline=_OUTLINE, width=_width(s, 0.04))
        draw.line(
            [size * 0.65, c - s * 0.25 + dy, size - 2, c - s * 0.62 + dy],
            fill=(230, 0, 0),
            width=_width(s, 0.16),
        )
    elif name == "wash":
        # Bubbles circling the object.
        for i in range(8):
            a = 2 * math.pi * (i / 8 + p / 8)
            r = s * (0.13 + 0.05 * (i % 3))
            x, y = c + s * 0.72 * math.cos(a), c + s * 0.72 * math.sin(a)
            draw.ellipse(
                [x - r, y - r, x + r, y + r],
                fill=(235, 250, 255),
                outline=(0, 120, 255),
                width=_width(s, 0.05),
            )
    elif name == "fry":
        # Flames under and beside the object.
        for i in range(6):
            x = h * 0.2 + i * (size - h * 0.4) / 5
            tall = s * (0.45 + 0.2 * math.sin(2 * math.pi * (p + i / 3)))
            base = size - 2
            draw.polygon([(x - s * 0.14, base), (x + s * 0.14, base), (x, base - tall)], fill=(255, 40, 0))
            draw.polygon(
                [(x - s * 0.07, base), (x + s * 0.07, base), (x, base - tall * 0.55)], fill=(255, 230, 0)
            )
    elif name == "season":
        # Salt and pepper grains falling over the object.
        for i in range(5):
            for j in range(4):
                x = h * 0.4 + i * (size - h * 0.8) / 4 + (j % 2) * s * 0.12
                y = s * 0.1 + (j * size / 4 + p * size / 4 + (i % 2) * s * 0.15) % (size * 0.8)
                r = s * 0.1
                color = (0, 0, 0) if (i + j) % 2 else (255, 255, 255)
                draw.rectangle(
                    [x - r, y - r, x + r, y + r], fill=color, outline=(255, 0, 255), width=_width(s, 0.04)
                )
    elif name == "grab":
        # An orange glove holding the object from the right.
        dx = s * 0.06 * math.sin(2 * math.pi * p)
        draw.ellipse(
            [c + s * 0.3 + dx, c - s * 0.4, size - 2 + dx, c + s * 0.45],
            fill=(255, 160, 60),
            outline=_OUTLINE,
            width=_width(s, 0.04),
        )
        for k in range(4):
            y = c - s * 0.33 + k * s * 0.2
            draw.rounded_rectangle(
                [c - s * 0.05 + dx, y, c + s * 0.5 + dx, y + s * 0.13],
                radius=s * 0.06,
                fill=(255, 160, 60),
                outline=_OUTLINE,
                width=_width(s, 0.03),
            )
    elif name == "cover":
        # A turquoise lid coming down on the object.
        dy = s * 0.1 * (1 - p)
        draw.chord(
            [h * 0.35, c - s * 0.75 - dy, size - h * 0.35, c + s * 0.45 - dy],
            start=180,
            end=360,
            fill=(0, 205, 175),
            outline=_OUTLINE,
            width=_width(s, 0.05),
        )
        draw.rectangle([h * 0.25, c - s * 0.17 - dy, size - h * 0.25, c - s * 0.07 - dy], fill=(0, 90, 80))
        draw.ellipse([c - s * 0.1, c - s * 0.9 - dy, c + s * 0.1, c - s * 0.7 - dy], fill=(20, 20, 20))
    elif name == "stir":
        # A thick fuchsia spiral over the object, turning.
        points = []
        for i in range(60):
            t = i / 59
            a = 2 * math.pi * (2.2 * t + p)
            r = s * (0.08 + 0.72 * t)
            points.append((c + r * math.cos(a), c + r * math.sin(a)))
        draw.line(points, fill=(255, 0, 170), width=w, joint="curve")
    elif name == "mash":
        # A black masher grid pressed on the object, with its handle.
        dy = s * 0.08 * math.sin(2 * math.pi * p)
        x0, x1 = c - s * 0.55, c + s * 0.55
        y0, y1 = c - s * 0.4 + dy, c + s * 0.5 + dy
        for k in range(5):
            x = x0 + k * (x1 - x0) / 4
            draw.line([x, y0, x, y1], fill=(0, 0, 0), width=w)
            y = y0 + k * (y1 - y0) / 4
            draw.line([x0, y, x1, y], fill=(0, 0, 0), width=w)
        draw.line([c, y0, c, 2], fill=(255, 255, 255), width=_width(s, 0.14))
        draw.line([c, y0, c, 2], fill=(0, 0, 0), width=_width(s, 0.05))
    elif name == "flip":
        # A violet arrow arching over the object, sweeping round.
        start = 180 + 40 * math.sin(2 * math.pi * p)
        points = _arc_points(c, c, s * 0.8, start, start + 150)
        draw.line(points, fill=(150, 40, 255), width=_width(s, 0.2), joint="curve")
        (x, y), (px, py) = points[-1], points[-3]
        ax, ay = x - px, y - py
        norm = math.hypot(ax, ay) or 1.0
        ax, ay = ax / norm, ay / norm
        tip = (x + ax * s * 0.35, y + ay * s * 0.35)
        draw.polygon(
            [tip, (x - ay * s * 0.28, y + ax * s * 0.28), (x + ay * s * 0.28, y - ax * s * 0.28)],
            fill=(150, 40, 255),
        )
    elif name == "peel":
        # Lime-green peel ribbons curling off the object.
        for k in range(3):
            points = []
            for i in range(30):
                t = i / 29
                x = c + s * (0.1 + 0.8 * t)
                y = c - s * 0.35 + k * s * 0.35 + s * 0.14 * math.sin(2 * math.pi * (2 * t + p))
                points.append((x, y))
            draw.line(points, fill=(180, 255, 0), width=_width(s, 0.14), joint="curve")
            draw.line(points[:8], fill=(60, 90, 0), width=max(1, w // 3))
    else:
        raise KeyError(name)


@lru_cache(maxsize=256)
def verb_sprites(name: str, s: int) -> np.ndarray:
    """Verb ``name`` around an object of side ``s``: ``[PHASES, S, S, 4]`` RGBA uint8 with
    ``S = s + 2 * (s // 2)``, alpha 0 or 255; the object's square is ``[s // 2, s // 2 + s)``."""
    size = s + 2 * (s // 2)
    phases = []
    for phase in range(PHASES):
        image, draw = _canvas(size)
        _draw_verb(draw, name, s, phase)
        phases.append(_binary(image))
    stacked = np.stack(phases)
    stacked.setflags(write=False)  # cached and shared between renderers
    return stacked


HAND_SKIN: RGB = (224, 170, 132)


@lru_cache(maxsize=64)
def hand_sprite(s: int) -> np.ndarray:
    """A bare hand seen from above, fingers up, in an ``[s, s, 4]`` RGBA uint8 array (alpha 0
    or 255): the idle hand that passes across the scene (no verb uses skin tones)."""
    image, draw = _canvas(s)
    w = _width(s, 0.04)
    draw.ellipse([s * 0.2, s * 0.4, s * 0.8, s * 0.98], fill=HAND_SKIN, outline=_OUTLINE, width=w)
    for k, top in enumerate((0.12, 0.04, 0.06, 0.16)):
        x = s * (0.24 + 0.14 * k)
        draw.rounded_rectangle(
            [x, s * top, x + s * 0.12, s * 0.6], radius=s * 0.06, fill=HAND_SKIN, outline=_OUTLINE, width=w
        )
    draw.polygon(
        [(s * 0.22, s * 0.62), (s * 0.02, s * 0.42), (s * 0.1, s * 0.36), (s * 0.32, s * 0.55)],
        fill=HAND_SKIN,
        outline=_OUTLINE,
    )
    return _binary(image)


def query_text(verb: str, noun: str) -> str:
    """The test-time query of an action, e.g. ``"cut tomato"``."""
    return f"{verb} {noun}"


def mining_label(verb: str, noun: str) -> str:
    """The MiningYouTube-style label of an action, e.g. ``"cut_tomato"``."""
    return f"{verb}_{noun}"


def contact_image(sprites: list[np.ndarray], background: RGB = (120, 120, 120)) -> Image.Image:
    """Sprites side by side on a grey strip (for looking at the vocabulary)."""
    height = max(sprite.shape[0] for sprite in sprites)
    width = sum(sprite.shape[1] for sprite in sprites)
    strip = Image.new("RGB", (width, height), background)
    x = 0
    for sprite in sprites:
        strip.paste(Image.fromarray(sprite, "RGBA"), (x, 0), Image.fromarray(sprite[..., 3]))
        x += sprite.shape[1]
    return strip
