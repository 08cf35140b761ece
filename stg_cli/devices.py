"""Choosing the torch device: one rule for every command, the Python API and the workers.

``auto`` is CUDA when this torch sees a GPU, else the CPU; ``cpu``; ``cuda`` or ``cuda:N``. A
plain CUDA choice under torchrun takes the process's own GPU (``LOCAL_RANK`` modulo the GPU
count), so that the processes of one host share its GPUs one each.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stg_cli.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device of ``choice`` (see the module docstring).

    Args:
        choice: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: the process's GPU slot for a plain ``cuda`` (default: ``$LOCAL_RANK``, 0).

    Raises:
        UserError: an unknown choice, CUDA without a CUDA device, or a GPU index out of range.
    """
    import torch

    text = str(choice or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise UserError(f"unknown device {choice!r}; choose from auto, cpu, cuda or cuda:N")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device {choice!r}: no CUDA device is available to this torch")
    count = torch.cuda.device_count()
    if index:
        if int(index) >= count:
            raise UserError(f"device {choice!r}: this machine has {count} CUDA device(s)")
        return torch.device("cuda", int(index))
    rank = local_rank if local_rank is not None else int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", rank % max(count, 1))
