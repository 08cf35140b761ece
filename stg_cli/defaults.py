"""The choices and default values that ``stg``'s help shows, in a module that imports nothing.

The command modules read them when ``stg --help`` or ``stg COMMAND --help`` builds its text, so
they must not cost an import of torch or numpy; the library modules that use them import them
from here, so each value has this one home.
"""

from __future__ import annotations

#: frame selection modes of :func:`stg_cli.ops.select_frames` (paper Table 6)
SELECTION_MODES = ("sinkhorn", "none", "global", "local")

#: the local stack's layers by name (paper Table 8)
ATTENTION_STACKS: dict[str, tuple[str, ...]] = {
    "cross-self-cross": ("cross", "self", "cross"),
    "self-cross": ("self", "cross"),
    "cross-self": ("cross", "self"),
    "cross-cross": ("cross", "cross"),
}

#: passes over the training samples when neither --steps nor --epochs is given
DEFAULT_EPOCHS = 20.0

#: detection threshold τ of a model without a calibrated one
DEFAULT_TAU = 0.5
#: majority-filter window over per-frame labels (odd; 0 turns it off)
DEFAULT_SMOOTH = 3
#: a heatmap cell belongs to the mask above this probability (uniform over 7×7 is 0.0204)
DEFAULT_MASK_THRESHOLD = 0.01

#: the visual backbone and text encoder of ``stg demo`` (``--backbone``, ``--text``)
DEMO_BACKBONE = "effnet-lite0"
DEMO_TEXT = "word2vec"

#: annotation formats ``stg score`` reads
DATASETS = ("groundingyoutube", "miningyoutube", "youcook-interactions", "synth")

#: difficulty levels of ``stg synth`` (their settings: :data:`stg_cli.synth.config.DIFFICULTIES`)
DIFFICULTY_LEVELS = ("easy", "medium", "hard")

#: layouts of a feature store: a folder per video, or packs of many videos (stg_cli.features.store)
STORE_LAYOUTS = ("videos", "packed")
#: videos per pack of the packed layout (``stg store pack``, ``stg extract --layout packed``)
VIDEOS_PER_PACK = 4096
