"""What stg runs on: versions, the native extension's build, threads and devices."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field

import torch

import stg_cli
from stg_cli.ops import _native


@dataclass(frozen=True)
class EnvironmentInfo:
    stg: str
    python: str
    platform: str
    torch: str
    torch_cuda: str | None
    extension_loaded: bool
    extension_reason: str | None
    extension_build: dict
    native_kernels: dict[str, list[str]]
    cpu_threads: int
    openmp: bool
    devices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def collect() -> EnvironmentInfo:
    """Gathers the facts ``stg info`` prints."""
    state = _native.status()
    devices = [f"cpu ({os.cpu_count()} cores)"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                f"cuda:{index} {props.name} (sm_{props.major}{props.minor}, "
                f"{props.total_memory / 2**30:.0f} GiB)"
            )
    kernels = {op: list(devices) for op, devices in state.kernels.items()}
    return EnvironmentInfo(
        stg=stg_cli.__version__,
        python=sys.version.split()[0],
        platform=platform.platform(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        extension_loaded=state.loaded,
        extension_reason=state.reason,
        extension_build=state.build,
        native_kernels=kernels,
        cpu_threads=torch.get_num_threads(),
        openmp=torch.backends.openmp.is_available(),
        devices=devices,
    )
