"""Loading of the compiled extension ``stg_cli._C`` and the choice native vs reference.

Importing stg never fails because the extension is missing or was built against another
torch: the public ops then run the pure-PyTorch references, with one warning that names the
reason. ``STG_DISABLE_NATIVE=1`` forces the references.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field

import torch

OPS = ("sinkhorn", "sinkhorn_backward", "xattn", "xattn_backward", "rollout", "rollout_paper")
DEVICE_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


@dataclass(frozen=True)
class NativeStatus:
    """Whether the extension loaded, why not, how it was built, and which kernels it has.

    ``kernels`` maps each op name to the device types ("cpu", "cuda") it has kernels for.
    """

    loaded: bool
    reason: str | None = None
    build: dict = field(default_factory=dict)
    kernels: dict[str, tuple[str, ...]] = field(default_factory=dict)


_status: NativeStatus | None = None
_warned: set[str] = set()


def status() -> NativeStatus:
    """Loads the extension once and reports the outcome."""
    global _status
    if _status is None:
        _status = _load()
    return _status


def _load() -> NativeStatus:
    if os.environ.get("STG_DISABLE_NATIVE") == "1":
        return NativeStatus(False, "disabled by STG_DISABLE_NATIVE=1")
    try:
        module = importlib.import_module("stg_cli._C")
    except ImportError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return NativeStatus(False, f"stg_cli._C could not be imported ({first_line})")
    except OSError as error:
        return NativeStatus(False, f"stg_cli._C could not be loaded ({error})")
    build = dict(module.build_info())
    if build.get("torch_version") != torch.__version__:
        return NativeStatus(
            False,
            f"stg_cli._C was built for torch {build.get('torch_version')} but torch "
            f"{torch.__version__} is installed; reinstall stg",
            build,
        )
    # Looked up once here so that the per-call choice is a plain dict lookup (traceable).
    kernels = {
        op: tuple(
            device
            for device, key in DEVICE_KEYS.items()
            if torch._C._dispatch_has_kernel_for_dispatch_key(f"stg::{op}", key)
        )
        for op in OPS
    }
    return NativeStatus(True, None, build, kernels)


def has_kernel(op: str, device_type: str) -> bool:
    """True if ``torch.ops.stg.<op>`` has a kernel for the device type ("cpu", "cuda")."""
    return device_type in status().kernels.get(op, ())


def use_native(
    op: str, device: torch.device, dtype: torch.dtype, native_dtypes: tuple, size_limit: str | None = None
) -> bool:
    """Decides whether ``op`` runs natively; warns once per reason when it cannot.

    ``size_limit`` names a limit of the kernel that the inputs exceed, if any.
    """
    state = status()
    if device.type == "meta" and state.loaded:
        return True  # every op has a fake kernel, which also serves meta tensors
    if not state.loaded:
        reason = state.reason or "unknown reason"
    elif not has_kernel(op, device.type):
        reason = f"stg_cli._C has no {device.type} kernel for {op}"
    elif dtype not in native_dtypes:
        reason = f"{op} has no native kernel for {dtype} on {device.type}"
    elif size_limit is not None:
        reason = f"{op} on {device.type} supports {size_limit}"
    else:
        return True
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"stg: using the PyTorch reference ops: {reason}", stacklevel=3)
    return False
