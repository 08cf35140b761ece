"""Process-group setup for ``torchrun``: gloo on CPU, nccl on CUDA, one device per process.

Multi-node and elastic runs use torchrun's own machinery (``--nnodes``, ``--rdzv-backend c10d``,
``--rdzv-id``, ``--max-restarts``): when a worker dies or a node leaves or joins, torchrun
restarts every worker of the job, and each checkpoint records the job's rendezvous id
(:func:`elastic_job`), so the restarted workers — and a relaunch of the same job, such as a
requeued SLURM job — resume from the run folder's latest checkpoint, which every node reads from
the shared run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stg_cli.devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Joins the process group when started by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def elastic_job() -> str | None:
    """The rendezvous id of the torchrun job this process belongs to: None outside torchrun and
    where torchrun has none (static rendezvous, ``--master-addr``/``--master-port``, names every
    job ``none``)."""
    job = os.environ.get("TORCHELASTIC_RUN_ID", "").strip()
    return None if job.lower() in ("", "none") else job


def from_main(value: object, info: DistInfo) -> object:
    """Rank 0's ``value`` on every process (picklable; ``value`` itself with one process), so
    that all of them act on one decision even where a shared file system shows them different
    things."""
    if not info.enabled:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def shutdown(info: DistInfo, finished: bool = False) -> None:
    """Leaves the process group. ``finished``: every process got here normally, so wait for
    the others first — tearing gloo down while a peer is still writing its files can abort
    the process ("terminate called without an active exception"). After an error there is no
    barrier, as a failed peer would never reach it."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over processes (identity with one process)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every process if it is True on any."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
