"""Builds the native extension stg_cli._C from csrc/.

CUDA sources are compiled only when the installed torch is a CUDA build and a CUDA toolkit
is found; FORCE_CUDA=1 forces them, STG_FORCE_CPU=1 skips them. The decision is printed.
"""

from __future__ import annotations

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, pattern)))


def _use_cuda() -> tuple[bool, str]:
    if os.environ.get("STG_FORCE_CPU") == "1":
        return False, "STG_FORCE_CPU=1"
    if os.environ.get("FORCE_CUDA") == "1":
        return True, "FORCE_CUDA=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, f"torch CUDA {torch.version.cuda}, toolkit at {CUDA_HOME}"


def _extension():
    with_cuda, reason = _use_cuda()
    cpu_sources = ["csrc/stg.cpp", *_sources("csrc/*/cpu/*.cpp")]
    # No FP traps or errno: lets GCC vectorise the clamped polynomial exp of the kernels.
    cxx_flags = [
        "-O3",
        "-std=c++20",
        "-fopenmp",
        "-fno-trapping-math",
        "-fno-math-errno",
        "-Wno-psabi",
        f'-DSTG_TORCH_VERSION="{torch.__version__}"',
    ]
    link_flags = ["-fopenmp"]
    if not with_cuda:
        print(f"stg: building the CPU extension ({reason})")
        return CppExtension(
            "stg_cli._C",
            cpu_sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    print(f"stg: building the CPU+CUDA extension for archs {archs} ({reason})")
    cuda_defines = ["-DSTG_WITH_CUDA", f'-DSTG_CUDA_ARCHS="{archs}"']
    return CUDAExtension(
        "stg_cli._C",
        cpu_sources + _sources("csrc/*/cuda/*.cu"),
        extra_compile_args={
            "cxx": cxx_flags + cuda_defines,
            "nvcc": ["-O3", "-std=c++20", "--expt-relaxed-constexpr", *cuda_defines],
        },
        extra_link_args=link_flags,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
