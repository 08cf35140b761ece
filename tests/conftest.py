"""Shared fixtures of the test suite.

Markers registered here:
    ``stg_op(name)``: the ``torch.ops.stg`` op a test exercises (module- or test-level); the
        ``device`` fixture skips "cuda" unless that op has a CUDA kernel.
    ``requires_native``: skip unless the op of ``stg_op`` has a native kernel on the test's
        device (the extension loaded and was built for it).

torch is imported only where a hook or fixture needs it, so that the tests of the layers that
need no torch (``tests/video``, ``tests/text``) also run where torch is not installed
(``make test-py312``).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background (`cmd &` without job control, nohup, some CI runners)
    # inherits SIGINT ignored, and so would every stg process the Ctrl-C tests start; Python's
    # own handler makes children start with the default disposition again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "stg_op(name): the torch.ops.stg op under test")
    config.addinivalue_line("markers", "requires_native: needs the compiled kernel of the op")


def _op_name(node: pytest.Item) -> str:
    marker = node.get_closest_marker("stg_op")
    if marker is None:
        raise pytest.UsageError(f"{node.nodeid} needs a stg_op(name) marker")
    return marker.args[0]


def _device_type(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("device", "cpu") if callspec else "cpu"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_native") is None:
        return
    from stg_cli.ops import _native

    op, device_type = _op_name(item), _device_type(item)
    if not _native.has_kernel(op, device_type):
        reason = _native.status().reason or f"stg_cli._C has no {device_type} kernel for {op}"
        pytest.skip(f"native {op} unavailable: {reason}")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device a test runs on; "cuda" only with a GPU and a CUDA kernel for the op."""
    import torch

    from stg_cli.ops import _native

    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        op = _op_name(request.node)
        if not _native.has_kernel(op, "cuda"):
            pytest.skip(f"stg_cli._C has no CUDA kernel for {op}")
    return torch.device(request.param)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with a fixed seed: tensors are drawn on the CPU, then moved."""
    import torch

    return torch.Generator().manual_seed(0)


@pytest.fixture(params=["row_major", "column_major"])
def layout(request: pytest.FixtureRequest):
    """Stores a tensor's last two dimensions as given (row-major) or column-major."""
    if request.param == "row_major":
        return lambda tensor: tensor
    return lambda tensor: tensor.mT.contiguous().mT


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    """A random-initialised tiny-backbone export with its word2vec encoder."""
    from helpers.grounding import make_export

    return make_export(tmp_path_factory.mktemp("run") / "export")


@pytest.fixture(scope="session")
def small_video(tmp_path_factory):
    """A 6-second 160×120 video of a moving square."""
    from helpers.grounding import make_video

    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4")
