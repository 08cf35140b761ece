"""The reference fallback: STG_DISABLE_NATIVE=1 and dtypes without a native kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from stg_cli.ops import _native, reference, rollout, rollout_paper, sinkhorn, xattn

# Runs every public op three times with the extension disabled, saves inputs and outputs to
# argv[1] and prints what it saw as JSON.
FALLBACK_SCRIPT = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    import stg_cli.ops as ops
    g = torch.Generator().manual_seed(0)
    inputs = {
        "P": torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
        "word_mask": torch.tensor([[True, True, False], [True, True, True]]),
        "q": torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
        "k": torch.randn(2, 5, 4, generator=g, dtype=torch.float64),
        "v": torch.randn(2, 5, 4, generator=g, dtype=torch.float64),
        "key_mask": torch.tensor([[True, False, True, True, True], [False] * 5]),
        "layers": torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64),
        "ca2": torch.rand(2, 4, 3, generator=g, dtype=torch.float64),
        "sa": torch.rand(2, 3, 3, generator=g, dtype=torch.float64),
        "ca1": torch.rand(2, 3, 4, generator=g, dtype=torch.float64),
    }
    for _ in range(3):
        outputs = {
            "sinkhorn": ops.sinkhorn(inputs["P"], inputs["word_mask"], eps=0.5, iters=5),
            "xattn": ops.xattn(inputs["q"], inputs["k"], inputs["v"], inputs["key_mask"],
                               return_probs=True),
            "rollout": ops.rollout(inputs["layers"]),
            "rollout_paper": ops.rollout_paper(inputs["ca2"], inputs["sa"], inputs["ca1"],
                                               inputs["word_mask"]),
        }
torch.save({"inputs": inputs, "outputs": outputs}, sys.argv[1])
print(json.dumps({
    "loaded": ops.status().loaded,
    "reason": ops.status().reason,
    "extension_imported": "stg_cli._C" in sys.modules,
    "warnings": [str(w.message) for w in caught if str(w.message).startswith("stg")],
}))
"""


@pytest.fixture(scope="module")
def fallback_run(tmp_path_factory):
    """(report, saved tensors) of FALLBACK_SCRIPT run with STG_DISABLE_NATIVE=1."""
    saved = tmp_path_factory.mktemp("fallback") / "results.pt"
    environment = {**os.environ, "STG_DISABLE_NATIVE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(saved)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return report, torch.load(saved, weights_only=True)


def test_disabled_native_imports_without_the_extension(fallback_run):
    """Importing stg_cli.ops works and never loads stg_cli._C."""
    report, _ = fallback_run
    assert report["loaded"] is False
    assert "STG_DISABLE_NATIVE=1" in report["reason"]
    assert report["extension_imported"] is False


def test_disabled_native_warns_once_with_the_reason(fallback_run):
    """Twelve op calls give exactly one warning, and it names the reason."""
    report, _ = fallback_run
    assert len(report["warnings"]) == 1
    assert "STG_DISABLE_NATIVE=1" in report["warnings"][0]


def test_disabled_native_outputs_are_the_reference(fallback_run):
    """Each op's output is the reference result on the same inputs."""
    _, saved = fallback_run
    inputs, outputs = saved["inputs"], saved["outputs"]
    frame_mask = torch.ones(2, 4, dtype=torch.bool)
    expected = {
        "sinkhorn": reference.sinkhorn(inputs["P"], inputs["word_mask"], frame_mask, 0.5, 5),
        "xattn": reference.xattn(inputs["q"], inputs["k"], inputs["v"], inputs["key_mask"], 0.5, True),
        "rollout": reference.rollout(inputs["layers"], torch.arange(4)),
        "rollout_paper": reference.rollout_paper(
            inputs["ca2"], inputs["sa"], inputs["ca1"], inputs["word_mask"]
        ),
    }
    for name, value in expected.items():
        torch.testing.assert_close(outputs[name], value, atol=0, rtol=0, msg=name)


@pytest.mark.requires_native
@pytest.mark.stg_op("sinkhorn")
def test_disabled_native_outputs_match_native(fallback_run):
    """The fallback and the native kernels agree on the same inputs."""
    _, saved = fallback_run
    inputs, outputs = saved["inputs"], saved["outputs"]
    native = {
        "sinkhorn": sinkhorn(inputs["P"], inputs["word_mask"], eps=0.5, iters=5),
        "xattn": xattn(inputs["q"], inputs["k"], inputs["v"], inputs["key_mask"], return_probs=True),
        "rollout": rollout(inputs["layers"]),
        "rollout_paper": rollout_paper(inputs["ca2"], inputs["sa"], inputs["ca1"], inputs["word_mask"]),
    }
    for name, value in native.items():
        torch.testing.assert_close(outputs[name], value, atol=1e-12, rtol=1e-12, msg=name)


@pytest.mark.requires_native
@pytest.mark.stg_op("xattn")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_without_cpu_kernel_warns_once_and_uses_reference(monkeypatch, generator, dtype):
    """Half-precision xattn on CPU runs the reference, with one warning naming op and dtype."""
    monkeypatch.setattr(_native, "_warned", set())
    q, k, v = (torch.randn(2, 3, 4, generator=generator).to(dtype) for _ in range(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [xattn(q, k, v, scale=0.5, return_probs=True) for _ in range(3)]
    messages = [str(w.message) for w in caught if str(w.message).startswith("stg")]
    assert len(messages) == 1
    assert "xattn" in messages[0] and str(dtype) in messages[0]
    mask = torch.ones(2, 3, dtype=torch.bool)
    expected_out, expected_probs = reference.xattn(q, k, v, mask, 0.5, True)
    for out, probs in results:
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected_out, atol=0, rtol=0)
        torch.testing.assert_close(probs, expected_probs, atol=0, rtol=0)
