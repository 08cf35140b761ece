"""Symmetric NCE with in-batch imposters and a margin (paper Eq. 4), global and local.

For a similarity matrix x [B, B] (x[k, l] = video k against sentence l, cosines divided by a
temperature), the loss is

    L = -1/B Σ_l [ log e^{x_ll-δ} / (e^{x_ll-δ} + Σ_{k≠l} e^{x_kl})
                 + log e^{x_ll-δ} / (e^{x_ll-δ} + Σ_{k≠l} e^{x_lk}) ],

i.e. the cross-entropy of the rows plus that of the columns of x - δ·I, each averaged over B.
Defaults: temperature 0.07 (cosines are scaled by 1/0.07) and δ = 0.1 in logit units
(subtracted after the temperature), so a positive pair must beat its imposters by a small
margin before its gradient vanishes.

Global negatives across processes: every process all-gathers v_g and s_g of the whole global
batch (the other processes' parts as constants, its own part carrying the gradient), computes
the same [B_total, B_total] loss, and scales what it back-propagates by the number of
processes. DistributedDataParallel then averages the gradients, so the update equals that of
one process holding the whole batch. Local negatives are the other clips of the same chunk of
``--local-chunk`` clips, which never spans two processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stg_cli.errors import UserError

LOSS_MODES = ("both", "global", "local")


@dataclass(frozen=True)
class LossConfig:
    """Temperature and margin of the NCE losses, and which parts are used."""

    mode: str = "both"
    temperature: float = 0.07
    margin: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in LOSS_MODES:
            raise UserError(f"loss must be one of {', '.join(LOSS_MODES)}, got {self.mode!r}")
        if not self.temperature > 0:
            raise UserError(f"temperature must be > 0, got {self.temperature}")

    @property
    def uses_global(self) -> bool:
        return self.mode in ("both", "global")

    @property
    def uses_local(self) -> bool:
        return self.mode in ("both", "local")


def symmetric_nce(similarity: Tensor, temperature: float = 0.07, margin: float = 0.1) -> Tensor:
    """Eq. 4 on a square similarity matrix.

    Args:
        similarity: [B, B] cosines, entry [k, l] = video k vs sentence l; the diagonal holds
            the positive pairs.
        temperature: logits are similarity / temperature.
        margin: δ subtracted from the positive logits (logit units).

    Returns:
        scalar loss (0-d tensor); 0 for B = 0.
    """
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise UserError(f"similarity must be square [B, B], got {tuple(similarity.shape)}")
    count = similarity.shape[0]
    if count == 0:
        return similarity.sum() * 0.0
    logits = similarity.float() / temperature
    logits = logits - margin * torch.eye(count, device=logits.device, dtype=logits.dtype)
    target = torch.arange(count, device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


def global_loss(
    video: Tensor, sentence: Tensor, config: LossConfig, world_size: int = 1, rank: int = 0
) -> tuple[Tensor, Tensor]:
    """The global NCE over the batch of every process.

    Args:
        video, sentence: [b, d] this process's L2-normalised v_g and s_g (b equal on every
            process).

    Returns:
        ``(loss, backward_loss)``: loss is the value of the whole batch's NCE; backward_loss
        the tensor to back-propagate (loss × world_size, see the module docstring).
    """
    if world_size > 1:
        video = _gather_with_own_grad(video, world_size, rank)
        sentence = _gather_with_own_grad(sentence, world_size, rank)
    loss = symmetric_nce(video @ sentence.t(), config.temperature, config.margin)
    return loss, loss * world_size


def local_loss(similarities: list[Tensor], config: LossConfig) -> Tensor:
    """Mean over chunks of the NCE of each chunk's [c, c] local similarity."""
    if not similarities:
        raise UserError("local_loss needs at least one chunk")
    losses = [symmetric_nce(sim, config.temperature, config.margin) for sim in similarities]
    return torch.stack(losses).mean()


def _gather_with_own_grad(tensor: Tensor, world_size: int, rank: int) -> Tensor:
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[rank] = tensor
    return torch.cat(parts, 0)
