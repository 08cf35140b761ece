"""Argument checks of the public ops: a ValueError that names the argument."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def rank(value: Tensor, expected: int, name: str, layout: str) -> None:
    if value.dim() != expected:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(value.shape)}")


def shape(value: Tensor, expected: tuple[int, ...], name: str) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(value.shape)}")


def floating(value: Tensor, name: str) -> None:
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")


def mask(value: Tensor | None, expected: tuple[int, ...], name: str, like: Tensor) -> Tensor:
    """A bool mask of the expected shape on like's device; None means all True."""
    if value is None:
        return torch.ones(expected, dtype=torch.bool, device=like.device)
    tensor(value, name)
    if value.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {value.dtype}")
    shape(value, expected, name)
    same_device(value, like, name)
    return value


def same_device(value: Tensor, like: Tensor, name: str) -> None:
    if value.device != like.device:
        raise ValueError(f"{name} is on {value.device}, expected {like.device}")


def same_dtype(value: Tensor, like: Tensor, name: str) -> None:
    if value.dtype != like.dtype:
        raise ValueError(f"{name} must have dtype {like.dtype}, got {value.dtype}")


def finite(value: object, name: str, *, positive: bool = False, non_negative: bool = False) -> float:
    """The value as a float, checked to be a finite real number (and > 0 or >= 0 if asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if non_negative and number < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return number


def count(value: object, name: str, maximum: int) -> int:
    """The value as an int, checked to be an integer in [0, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [0, {maximum}], got {value!r}")
    return int(value)
