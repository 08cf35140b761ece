"""What happens in each synthetic video: its scene, its actions and its narration.

A ``VideoPlan`` is drawn from ``SeedSequence([seed, split, index])`` alone, so a video does not
change when other videos are added. Times: actions cover whole seconds ``start..end``
(inclusive, as the refined GroundingYouTube segments), i.e. the frames with time in
``[start, end + 1)``; captions are in seconds (floats, two decimals).

Captions: a narrated action gets one ``narration`` starting ``offset`` seconds from the action's
start (``|offset| <= max_offset`` of the difficulty); a narrated action of at least
``FOLLOWUP_MIN_SECONDS`` gets, with probability ``FOLLOWUP_PROBABILITY``, a ``followup``
("keep stirring the cheese") starting between 2 s after the action's start and its last
second, shifted by at most ``max_offset / 2``; ``mention`` captions name a step never shown;
``filler`` captions describe nothing visible.

Distractor actions, idle motion and the camera (synth v2) are planned by
:mod:`stg_cli.synth.motion` from the video's stream ``purpose=5``, after everything above, so
that they change none of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stg_cli.synth.config import SynthConfig
from stg_cli.synth.motion import (
    STILL_CAMERA,
    Camera,
    Distractor,
    IdleMotion,
    plan_camera,
    plan_distractors,
    plan_idle,
)
from stg_cli.synth.world import (
    FILLER_TEMPLATES,
    FOLLOWUP_TEMPLATES,
    MENTION_TEMPLATES,
    NARRATION_TEMPLATES,
    NOUN_BY_NAME,
    NOUNS,
    VERB_BY_NAME,
    VERBS,
    mining_label,
    query_text,
)

SPLITS = {"train": 1, "test": 2}
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WORDS_PER_SECOND = 2.5
FOLLOWUP_MIN_SECONDS = 6
FOLLOWUP_PROBABILITY = 0.5


@dataclass(frozen=True)
class SceneObject:
    """An object at rest: its noun, side ``size`` and top-left ``(x, y)`` in frame pixels
    (before camera jitter)."""

    noun: str
    size: int
    x: int
    y: int


@dataclass(frozen=True)
class Action:
    """One action instance: ``verb`` applied to ``objects[target]`` during whole seconds
    ``start..end`` (inclusive). ``id`` is its id in ``seg.json`` and ``ground_seg.json``."""

    id: int
    verb: str
    noun: str
    target: int
    start: int
    end: int

    @property
    def query(self) -> str:
        return query_text(self.verb, self.noun)

    @property
    def label(self) -> str:
        return mining_label(self.verb, self.noun)


@dataclass(frozen=True)
class Mention:
    """A step the narrator names but never shows: a zero-length ``seg.json`` segment."""

    id: int
    verb: str
    noun: str
    second: int


@dataclass(frozen=True)
class Caption:
    """One ASR-like sentence. ``kind``: ``narration`` or ``followup`` (of action ``action``,
    with the start ``offset`` from that action's start), ``mention`` or ``filler``."""

    start: float
    end: float
    text: str
    kind: str
    action: int | None = None
    offset: float | None = None


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video and write its ground truth."""

    video_id: str
    split: str
    index: int
    duration: int
    width: int
    height: int
    fps: int
    render_seed: int
    background: str
    objects: tuple[SceneObject, ...]
    actions: tuple[Action, ...]
    mentions: tuple[Mention, ...]
    captions: tuple[Caption, ...]
    distractors: tuple[Distractor, ...] = ()
    idle: tuple[IdleMotion, ...] = ()
    camera: Camera = STILL_CAMERA

    @property
    def num_frames(self) -> int:
        return self.duration * self.fps

    def action_at(self, second: int) -> Action | None:
        for action in self.actions:
            if action.start <= second <= action.end:
                return action
        return None

    def distractors_at(self, second: int) -> list[Distractor]:
        """The distractor actions at ``second``, by track."""
        return [d for d in self.distractors if d.start <= second <= d.end]

    def idle_at(self, t: float) -> list[IdleMotion]:
        """The idle motions under way at time ``t`` (seconds)."""
        return [m for m in self.idle if m.start <= t < m.end]

    def to_dict(self) -> dict:
        return {
            "video": self.video_id,
            "split": self.split,
            "duration": self.duration,
            "frames": self.num_frames,
            "background": self.background,
            "objects": [asdict(obj) for obj in self.objects],
            "actions": [
                {**asdict(action), "query": action.query, "label": action.label} for action in self.actions
            ],
            "mentions": [asdict(mention) for mention in self.mentions],
            "captions": [asdict(caption) for caption in self.captions],
            "distractors": [{**asdict(d), "query": d.query} for d in self.distractors],
            "idle": [{"kind": m.kind, **asdict(m)} for m in self.idle],
            "camera": asdict(self.camera),
        }


def vocabulary(config: SynthConfig) -> tuple[list[str], list[str]]:
    """The nouns and verbs in use: the first ``num_nouns`` / ``num_verbs`` of the world's."""
    return (
        [noun.name for noun in NOUNS[: config.num_nouns]],
        [verb.name for verb in VERBS[: config.num_verbs]],
    )


def video_rng(seed: int, split: str, index: int, purpose: int = 0) -> np.random.Generator:
    """The random generator of one video (``purpose`` separates independent streams)."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index, purpose]))


def video_id(seed: int, split: str, index: int, taken: set[str]) -> str:
    """A YouTube-like 11-character id (letters, digits, '-' and '_', never first)."""
    rng = video_rng(seed, split, index, purpose=7)
    while True:
        chars = [_ID_ALPHABET[i] for i in rng.integers(0, 62, size=1)]
        chars += [_ID_ALPHABET[i] for i in rng.integers(0, 64, size=10)]
        candidate = "".join(chars)
        if candidate not in taken:
            return candidate


def plan_video(config: SynthConfig, split: str, index: int, taken: set[str]) -> VideoPlan:
    """The plan of video ``index`` of ``split``; ``taken`` holds ids already used."""
    rng = video_rng(config.seed, split, index)
    difficulty = config.difficulty_settings
    nouns, verbs = vocabulary(config)
    duration = int(rng.integers(config.min_duration, config.max_duration + 1))
    objects = _place_objects(config, rng, nouns)
    spans = _timeline(config, rng, duration)
    actions: list[Action] = []
    previous = None
    for start, end in spans:
        while True:
            target = int(rng.integers(len(objects)))
            verb = verbs[int(rng.integers(len(verbs)))]
            if (verb, target) != previous or len(objects) * len(verbs) == 1:
                break
        previous = (verb, target)
        actions.append(Action(0, verb, objects[target].noun, target, start, end))
    mentions: list[Mention] = []
    if split == "test" and rng.random() < difficulty.mention_only:
        # A background second before the last action, so the refined ids skip a number.
        last = actions[-1].start
        gaps = [s for s in range(last) if all(not a.start <= s <= a.end for a in actions)]
        second = int(gaps[int(rng.integers(len(gaps)))])
        mentions.append(
            Mention(0, verbs[int(rng.integers(len(verbs)))], nouns[int(rng.integers(len(nouns)))], second)
        )
    actions, mentions = _number(actions, mentions)
    captions = _narrate(
        config, rng, duration, actions, mentions, objects, video_rng(config.seed, split, index, purpose=3)
    )
    motion_rng = video_rng(config.seed, split, index, purpose=5)
    distractors = plan_distractors(
        motion_rng, difficulty.distractor_actions, duration, objects, actions, verbs
    )
    idle = plan_idle(
        motion_rng,
        difficulty.idle_motions,
        duration,
        config.width,
        config.height,
        objects,
        actions,
        distractors,
    )
    camera = plan_camera(motion_rng, difficulty, config.width, config.height)
    return VideoPlan(
        video_id=video_id(config.seed, split, index, taken),
        split=split,
        index=index,
        duration=duration,
        width=config.width,
        height=config.height,
        fps=config.fps,
        render_seed=int(rng.integers(0, 2**31 - 1)),
        background=("wood", "tiles", "cloth")[int(rng.integers(3))],
        objects=tuple(objects),
        actions=tuple(actions),
        mentions=tuple(mentions),
        captions=tuple(captions),
        distractors=tuple(distractors),
        idle=tuple(idle),
        camera=camera,
    )


def _number(actions: list[Action], mentions: list[Mention]) -> tuple[list[Action], list[Mention]]:
    # seg.json numbers every step in time order, mentions included (ids are list positions
    # there); ground_seg.json keeps the ids of the shown actions only, so its ids skip.
    events = sorted(
        [(a.start, 0, i) for i, a in enumerate(actions)] + [(m.second, 1, i) for i, m in enumerate(mentions)]
    )
    new_actions = list(actions)
    new_mentions = list(mentions)
    for number, (_, kind, i) in enumerate(events):
        if kind == 0:
            a = actions[i]
            new_actions[i] = Action(number, a.verb, a.noun, a.target, a.start, a.end)
        else:
            m = mentions[i]
            new_mentions[i] = Mention(number, m.verb, m.noun, m.second)
    return new_actions, new_mentions


def _place_objects(config: SynthConfig, rng: np.random.Generator, nouns: list[str]) -> list:
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    chosen = rng.choice(len(nouns), size=min(count, len(nouns)), replace=False)
    base = config.object_scale * config.width
    objects: list[SceneObject] = []
    for noun_index in chosen:
        size = max(8, int(round(base * rng.uniform(0.9, 1.1))))
        half = size // 2
        # Keep the object and most of its signature canvas (half a side around it) in frame.
        x_lo, x_hi = half // 2, config.width - size - half // 2
        y_lo, y_hi = half // 2, config.height - size - half // 2
        for _ in range(200):
            x = int(rng.integers(x_lo, max(x_lo, x_hi) + 1))
            y = int(rng.integers(y_lo, max(y_lo, y_hi) + 1))
            gap = 0.15 * size
            if all(
                x + size + gap <= o.x
                or o.x + o.size + gap <= x
                or y + size + gap <= o.y
                or o.y + o.size + gap <= y
                for o in objects
            ):
                objects.append(SceneObject(nouns[int(noun_index)], size, x, y))
                break
    return objects


def _timeline(config: SynthConfig, rng: np.random.Generator, duration: int) -> list[tuple]:
    """Action spans ``(start, end)`` in whole seconds, inclusive, with background gaps of at
    least ``min_gap`` seconds before, between and after them."""
    count = int(rng.integers(config.min_instances, config.max_instances + 1))
    lengths = [int(v) for v in rng.integers(config.min_action, config.max_action + 1, size=count)]
    while sum(lengths) + (len(lengths) + 1) * config.min_gap > duration:
        longest = int(np.argmax(lengths))
        if lengths[longest] > config.min_action:
            lengths[longest] -= 1
        else:
            lengths.pop()
    slack = duration - sum(lengths) - (len(lengths) + 1) * config.min_gap
    extra = rng.multinomial(slack, rng.dirichlet(np.ones(len(lengths) + 1)))
    spans = []
    t = config.min_gap + int(extra[0])
    for i, length in enumerate(lengths):
        spans.append((t, t + length - 1))
        t += length + config.min_gap + int(extra[i + 1])
    return spans


def _pick(rng: np.random.Generator, words: tuple[str, ...], other: float) -> str:
    """The first (query) word, or with probability ``other`` one of the others."""
    if len(words) > 1 and rng.random() < other:
        return words[1 + int(rng.integers(len(words) - 1))]
    return words[0]


def narration(
    rng: np.random.Generator,
    verb: str,
    noun: str,
    synonym: float,
    drop_word: float,
    templates: tuple[str, ...] = NARRATION_TEMPLATES,
) -> str:
    """An ASR-like sentence about ``verb`` ``noun``: filler words around it, sometimes another
    word for the verb or noun, sometimes one non-key word dropped."""
    verb_entry = VERB_BY_NAME[verb]
    template = templates[int(rng.integers(len(templates)))]
    form = int(rng.integers(len(verb_entry.words))) if rng.random() < synonym else 0
    noun_word = _pick(rng, NOUN_BY_NAME[noun].words, synonym)
    text = template.format(verb=verb_entry.words[form], gerund=verb_entry.gerunds[form], noun=noun_word)
    words = text.split()
    if rng.random() < drop_word:
        key = set(verb_entry.words[form].split()) | set(verb_entry.gerunds[form].split())
        key.add(noun_word)
        droppable = [i for i, word in enumerate(words) if word not in key]
        if droppable:
            words.pop(droppable[int(rng.integers(len(droppable)))])
    return " ".join(words)


def filler(rng: np.random.Generator, nouns: list[str]) -> str:
    """A sentence that describes nothing visible (it may name an object in view)."""
    template = FILLER_TEMPLATES[int(rng.integers(len(FILLER_TEMPLATES)))]
    return template.format(noun=nouns[int(rng.integers(len(nouns)))])


def _timed(
    rng: np.random.Generator, text: str, start: float, duration: int, jitter: float
) -> tuple[float, float]:
    length = max(1.0, len(text.split()) / WORDS_PER_SECOND + rng.uniform(-jitter, jitter))
    start = min(max(0.0, start), duration - 1.0)
    end = min(float(duration), start + length)
    return round(start, 2), round(end, 2)


def _narrate(
    config: SynthConfig,
    rng: np.random.Generator,
    duration: int,
    actions: list,
    mentions: list,
    objects: list,
    followup_rng: np.random.Generator,
) -> list[Caption]:
    d = config.difficulty_settings
    captions: list[Caption] = []
    for i, action in enumerate(actions):
        if rng.random() < d.unnarrated:
            continue
        text = narration(rng, action.verb, action.noun, d.synonym, d.drop_word)
        start, end = _timed(
            rng, text, action.start + rng.uniform(-d.max_offset, d.max_offset), duration, d.duration_jitter
        )
        captions.append(Caption(start, end, text, "narration", i, round(start - action.start, 2)))
        length = action.end - action.start + 1
        if length >= FOLLOWUP_MIN_SECONDS and followup_rng.random() < FOLLOWUP_PROBABILITY:
            text = narration(
                followup_rng, action.verb, action.noun, d.synonym, d.drop_word, FOLLOWUP_TEMPLATES
            )
            anchor = followup_rng.uniform(action.start + 2, action.end)
            shift = followup_rng.uniform(-d.max_offset / 2, d.max_offset / 2)
            start, end = _timed(followup_rng, text, anchor + shift, duration, d.duration_jitter)
            captions.append(Caption(start, end, text, "followup", i, round(start - action.start, 2)))
    for mention in mentions:
        text = narration(rng, mention.verb, mention.noun, 0.0, 0.0, MENTION_TEMPLATES)
        start, end = _timed(rng, text, mention.second, duration, d.duration_jitter)
        captions.append(Caption(start, end, text, "mention"))
    scene_nouns = [obj.noun for obj in objects]
    count = int(rng.poisson(d.fillers_per_minute * duration / 60.0))
    for _ in range(count):
        text = filler(rng, scene_nouns)
        start, end = _timed(rng, text, rng.uniform(0, duration - 1), duration, d.duration_jitter)
        captions.append(Caption(start, end, text, "filler"))
    captions.sort(key=lambda caption: (caption.start, caption.end, caption.text))
    return captions


def corpus(config: SynthConfig, count: int) -> list[str]:
    """``count`` extra narration and filler sentences over the vocabulary in use (four
    narrations to one filler), for training word vectors on the train split's language."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 3, 0, 11]))
    nouns, verbs = vocabulary(config)
    d = config.difficulty_settings
    sentences = []
    for _ in range(count):
        if rng.random() < 0.8:
            verb = verbs[int(rng.integers(len(verbs)))]
            noun = nouns[int(rng.integers(len(nouns)))]
            sentences.append(narration(rng, verb, noun, d.synonym, d.drop_word))
        else:
            sentences.append(filler(rng, nouns))
    return sentences
