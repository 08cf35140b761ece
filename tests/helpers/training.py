"""What the training tests share: a small on-disk store, the options of a small model, a port."""

from __future__ import annotations

import socket
from pathlib import Path

from helpers.stores import make_store, write_store

#: ``stg train`` options of a small, fast model on :func:`write_training_store`'s features
SMALL_MODEL = ["--dim", "16", "--frames-u", "8", "--frames-t", "4", "--batch-size", "8", "--local-chunk", "4"]


def write_training_store(root: Path) -> Path:
    """:func:`helpers.stores.make_store`'s features written at ``root``, with the text encoder
    folder ``stg train`` copies into its export."""
    write_store(root, make_store())
    (root / "text_encoder").mkdir()
    (root / "text_encoder" / "text_encoder.json").write_text("{}")
    return root


def free_port() -> int:
    """A TCP port free on this host now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
