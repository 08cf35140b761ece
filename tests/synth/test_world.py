"""The world's vocabulary: nouns and verbs look different from each other at a glance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stg_cli.synth.world import NOUNS, PHASES, VERBS, noun_sprite, verb_sprites

SIDE = 60


def mean_colour(sprite: np.ndarray) -> np.ndarray:
    return sprite[..., :3][sprite[..., 3] > 0].astype(float).mean(axis=0)


def on_grey(sprite: np.ndarray) -> np.ndarray:
    alpha = sprite[..., 3:] > 0
    return np.where(alpha, sprite[..., :3], 128).astype(float)


def test_vocabulary_sizes():
    assert len(NOUNS) >= 10 and len(VERBS) >= 8
    assert len({n.name for n in NOUNS}) == len(NOUNS)
    assert len({v.name for v in VERBS}) == len(VERBS)
    for verb in VERBS:
        assert len(verb.words) == len(verb.gerunds) and verb.words[0] == verb.name


def test_nouns_differ_in_colour_or_shape():
    sprites = {n.name: noun_sprite(n.name, SIDE) for n in NOUNS}
    for a, b in itertools.combinations(sprites, 2):
        colour = np.linalg.norm(mean_colour(sprites[a]) - mean_colour(sprites[b]))
        pixels = np.abs(on_grey(sprites[a]) - on_grey(sprites[b])).mean()
        assert colour > 25 and pixels > 15, (a, b, colour, pixels)


def test_verbs_are_large_distinct_and_animated():
    sprites = {v.name: verb_sprites(v.name, SIDE) for v in VERBS}
    for name, frames in sprites.items():
        assert frames.shape == (PHASES, 2 * SIDE, 2 * SIDE, 4)
        assert (frames[..., 3] > 0).mean() > 0.08, name
        assert any(not np.array_equal(frames[0], f) for f in frames[1:]), name
    for a, b in itertools.combinations(sprites, 2):
        distance = np.linalg.norm(mean_colour(sprites[a][0]) - mean_colour(sprites[b][0]))
        assert distance > 50, (a, b, distance)


@pytest.mark.parametrize("side", [9, 24, 61, 128])
def test_sprites_at_any_size_are_binary_and_read_only(side):
    for noun in NOUNS:
        sprite = noun_sprite(noun.name, side)
        assert sprite.shape == (side, side, 4) and set(np.unique(sprite[..., 3])) <= {0, 255}
        assert not sprite.flags.writeable
    for verb in VERBS:
        frames = verb_sprites(verb.name, side)
        assert frames.shape[1] == side + 2 * (side // 2)
        assert not frames.flags.writeable
