"""Settings of the synthetic benchmark: sizes, durations, the vocabulary size and the difficulty.

Every random choice of ``stg synth`` is drawn from ``numpy.random.SeedSequence([seed, ...])``, so
a ``SynthConfig`` plus the ``stg`` version fixes the output: identical annotation files and
identical decoded frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from stg_cli.errors import UserError
from stg_cli.synth.world import NOUNS, VERBS


@dataclass(frozen=True)
class Difficulty:
    """How far narration and pixels stray from the ground truth.

    ``max_offset``: a narration's start is the action's start shifted by a uniform offset in
    ``[-max_offset, +max_offset]`` seconds (then kept inside the video). ``duration_jitter``:
    the narration lasts ``0.4 s`` per word plus a uniform ``[-j, +j]`` seconds (at least 1 s).
    ``unnarrated``: probability that an action is never narrated. ``fillers_per_minute``:
    sentences that describe nothing visible. ``synonym``: probability that the narration uses
    another word for the verb or the noun than the query ("slice" for "cut"). ``drop_word``:
    probability that a narration loses one non-key word. ``extra_queries``: queries of other
    videos added to each test video's query pool. ``mention_only``: probability per test video
    of a step the narrator mentions but never shows (a zero-length segment in ``seg.json``, as
    in the MiningYouTube ground truth, absent from the refined segments and the boxes).
    ``noise``: standard deviation of the pixel noise (0-255 scale), a fixed grain per video
    unless ``temporal_noise`` (then four grains in turn, which costs the h264 encoder about
    twice the time and six times the bytes). ``jitter``: camera jitter amplitude as a fraction
    of the frame width.

    Motion that is not the narrated step (synth v2; see :mod:`stg_cli.synth.script`):
    ``distractor_actions`` unnarrated actions run at every second on other objects than the
    step's (at most one per object, so a video with fewer objects gets fewer), with the same
    animated signatures as real steps; ``idle_motions`` further changing regions at every second
    (a hand passing across, an idle object sliding away and back, a flickering patch);
    ``pan``: amplitude of the slow camera pan as a fraction of the frame size; ``zoom``: the
    largest camera zoom-in (``0.08``: up to 1.08x); ``lighting``: amplitude of the slow global
    gain and of the moving left-right light gradient (``0.15``: gain 0.85..1.15).
    """

    name: str
    max_offset: float
    duration_jitter: float
    unnarrated: float
    fillers_per_minute: float
    synonym: float
    drop_word: float
    extra_queries: int
    mention_only: float
    noise: float
    jitter: float
    temporal_noise: bool
    distractor_actions: int
    idle_motions: int
    pan: float
    zoom: float
    lighting: float

    def without_distractors(self) -> Difficulty:
        """The same narration and noise with none of the v2 motion: the v1 world."""
        return replace(self, distractor_actions=0, idle_motions=0, pan=0.0, zoom=0.0, lighting=0.0)


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(
        "easy", 2.0, 0.5, 0.0, 2.0, 0.2, 0.0, 0, 0.0, 2.0, 0.004, False, 1, 1, 0.02, 0.05, 0.1
    ),
    "medium": Difficulty(
        "medium", 6.0, 1.0, 0.15, 4.0, 0.4, 0.15, 1, 0.3, 5.0, 0.008, False, 3, 2, 0.03, 0.08, 0.15
    ),
    "hard": Difficulty(
        "hard", 10.0, 2.0, 0.3, 8.0, 0.6, 0.3, 3, 0.6, 10.0, 0.015, True, 4, 3, 0.05, 0.12, 0.25
    ),
}

ANNOTATION_SIZE = (640, 480)
# the largest frame side: 4K video; a frame is composed in memory several times over, so
# 100000x100000 would ask for tens of GB before the first frame
MAX_SIDE = 3840


@dataclass(frozen=True)
class SynthConfig:
    """What ``stg synth`` renders.

    Videos last ``min_duration``..``max_duration`` whole seconds at ``fps`` frames per second
    (an integer, so every whole second starts exactly on a frame) and ``width`` x ``height``
    pixels (even numbers, for yuv420p). Each video holds ``min_instances``..``max_instances``
    actions of ``min_action``..``max_action`` seconds separated by at least ``min_gap`` seconds
    of background, on one of ``min_objects``..``max_objects`` objects. ``object_scale`` is the
    side of an object as a fraction of the frame width. Boxes are written in an
    ``annotation_size`` frame (640 x 480, as GroundingYouTube's ``id2wh_new.json``), whatever
    the rendered size. ``corpus_sentences`` extra narration-like sentences go to
    ``train/corpus.txt`` for training word vectors. ``distractors``: concurrent distractor
    actions (None: the difficulty's ``distractor_actions``); ``0`` renders the v1 world, with
    no distractor actions, idle motion, camera pan/zoom or lighting change.
    """

    train_videos: int = 24
    test_videos: int = 6
    seed: int = 0
    min_duration: int = 40
    max_duration: int = 60
    width: int = 320
    height: int = 240
    fps: int = 5
    difficulty: str = "medium"
    min_instances: int = 3
    max_instances: int = 6
    min_action: int = 3
    max_action: int = 10
    min_gap: int = 2
    min_objects: int = 4
    max_objects: int = 5
    object_scale: float = 0.18
    num_nouns: int = 10
    num_verbs: int = 8
    annotation_size: tuple[int, int] = field(default=ANNOTATION_SIZE)
    corpus_sentences: int = 5000
    distractors: int | None = None
    crf: int = 23
    x264_preset: str = "superfast"

    @classmethod
    def quick(cls, **changes: object) -> SynthConfig:
        """The quick set: 24 train + 6 test videos of 40-60 s (``stg demo`` asks for 30 test
        videos), 320x240 at 5 fps, 10 nouns and 8 verbs, 4-5 objects of 0.18 x the frame width,
        3-6 actions of 3-10 s per video (about 7,300 frames). Objects were 0.22 x the width
        before the distractors came: with four or five objects at once their boxes (object and
        signature, twice the object's side) then covered so much of the frame that a fixed point
        at the centre hit the step's box on up to 46 % of the test seconds for some seeds."""
        return replace(cls(), **changes).validated()

    @classmethod
    def full(cls, **changes: object) -> SynthConfig:
        """The larger set: 120 train + 30 test videos of 60-180 s, 640x480 at 10 fps, 12 nouns
        and 10 verbs, 4-6 objects of 0.16 x the frame width, 4-10 actions of 3-20 s per video
        (about 180,000 frames)."""
        base = cls(
            train_videos=120,
            test_videos=30,
            min_duration=60,
            max_duration=180,
            width=640,
            height=480,
            fps=10,
            min_instances=4,
            max_instances=10,
            max_action=20,
            max_objects=6,
            object_scale=0.16,
            num_nouns=12,
            num_verbs=10,
            corpus_sentences=20000,
        )
        return replace(base, **changes).validated()

    @property
    def difficulty_settings(self) -> Difficulty:
        """The difficulty's settings, with ``distractors`` applied."""
        settings = DIFFICULTIES[self.difficulty]
        if self.distractors == 0:
            return settings.without_distractors()
        if self.distractors is not None:
            return replace(settings, distractor_actions=self.distractors)
        return settings

    def validated(self) -> SynthConfig:
        """Itself, or ``UserError`` naming the first setting out of range."""

        counts = (self.train_videos, self.test_videos)
        if min(counts) < 0 or sum(counts) < 1:
            raise UserError("need at least one video (train + test)")
        if (
            self.width < 64
            or self.height < 48
            or self.width % 2
            or self.height % 2
            or self.width > MAX_SIDE
            or self.height > MAX_SIDE
        ):
            raise UserError(
                f"size must be even, from 64x48 to {MAX_SIDE}x{MAX_SIDE}, got {self.width}x{self.height}"
            )
        if not 1 <= self.fps <= 60:
            raise UserError(f"fps must be a whole number from 1 to 60, got {self.fps}")
        if self.difficulty not in DIFFICULTIES:
            raise UserError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {self.difficulty!r}")
        if not 1 <= self.min_action <= self.max_action:
            raise UserError("need 1 <= min_action <= max_action")
        if not 1 <= self.min_instances <= self.max_instances:
            raise UserError("need 1 <= min_instances <= max_instances")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise UserError("need 1 <= min_objects <= max_objects <= 8")
        if self.min_gap < 1:
            raise UserError("min_gap must be at least 1 second")
        shortest = self.min_action + 2 * self.min_gap
        if not shortest <= self.min_duration <= self.max_duration:
            raise UserError(f"durations must satisfy {shortest} <= min_duration <= max_duration seconds")
        if not 2 <= self.num_nouns <= len(NOUNS):
            raise UserError(f"num_nouns must be from 2 to {len(NOUNS)}")
        if not 2 <= self.num_verbs <= len(VERBS):
            raise UserError(f"num_verbs must be from 2 to {len(VERBS)}")
        if not 0.05 <= self.object_scale <= 0.3:
            raise UserError("object_scale must be from 0.05 to 0.3 of the frame width")
        if self.seed < 0:
            raise UserError("seed must be a non-negative integer")
        if self.distractors is not None and not 0 <= self.distractors <= 7:
            raise UserError(f"distractors must be from 0 to 7, got {self.distractors}")
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["annotation_size"] = list(self.annotation_size)
        return data
