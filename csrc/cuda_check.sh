#!/usr/bin/env bash
# Compile-only check of the CUDA sources, no GPU needed (`make cuda-check`).
#
#   1. csrc/harness/cuda_harness.cu, which instantiates every kernel template for every dtype,
#      for sm_80 and sm_90, with warnings as errors and torch's half-precision flags;
#   2. with STG_CUDA_CHECK_TORCH=1, and when torch is importable from $PYTHON: the torch-facing
#      launchers csrc/{sinkhorn,xattn}/cuda/*_cuda.cu for sm_90 against torch's headers. They
#      take about 2 minutes of the 2-core CPU here (ATen headers), so they are off by default;
#      their kernels are already compiled by step 1.
#
# Environment: NVCC (default: nvcc on PATH, else $CUDA_HOME/bin/nvcc), PYTHON (default: python,
# else python3), STG_CUDA_CHECK_TORCH (0 or 1). Exits non-zero if any compilation fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

nvcc="${NVCC:-}"
if [[ -z "$nvcc" ]]; then
  if command -v nvcc >/dev/null 2>&1; then
    nvcc=nvcc
  elif [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
    nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  else
    echo "cuda-check: nvcc not found (set NVCC or CUDA_HOME)" >&2
    exit 1
  fi
fi
echo "cuda-check: $("$nvcc" --version | tail -n 1)"

out="$(mktemp -d /tmp/stg-cuda-check.XXXXXX)"
trap 'rm -rf "$out"' EXIT

# The flags torch's extension builder passes to nvcc.
half_flags=(-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
            -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__)

# compile LABEL NVCC_ARGS...: one line with the outcome and duration, then any compiler output.
compile() {
  local label="$1"
  shift
  local log
  log="$(mktemp "$out/log.XXXXXX")"
  local start=$SECONDS
  if "$nvcc" "$@" >"$log" 2>&1; then
    echo "ok      $label ($((SECONDS - start)) s)"
    cat "$log"
    return 0
  fi
  echo "FAILED  $label ($((SECONDS - start)) s)"
  cat "$log"
  return 1
}

start=$SECONDS
failed=0

compile "harness: every kernel template and dtype, sm_80 + sm_90" \
  -c -O3 -std=c++17 \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  --Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror "${half_flags[@]}" \
  csrc/harness/cuda_harness.cu -o "$out/cuda_harness.o" &
harness_job=$!

python="${PYTHON:-python}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [[ "${STG_CUDA_CHECK_TORCH:-0}" != 1 ]]; then
  echo "skipped torch launchers (STG_CUDA_CHECK_TORCH=1 compiles them against torch's headers)"
elif ! includes="$("$python" -c 'import torch.utils.cpp_extension as c; print("\n".join(c.include_paths()))' 2>/dev/null)"; then
  echo "skipped torch launchers: torch.utils.cpp_extension is not importable from $python"
else
  abi="$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  torch_flags=(-D_GLIBCXX_USE_CXX11_ABI="$abi" -DTORCH_EXTENSION_NAME=_C)
  cmake_macros_found=0
  while IFS= read -r dir; do
    torch_flags+=(-isystem "$dir")
    [[ -f "$dir/c10/cuda/impl/cuda_cmake_macros.h" ]] && cmake_macros_found=1
  done <<<"$includes"
  # A CPU-only torch ships c10/cuda headers without this generated one (it only matters on
  # Windows); skip it so that the launchers can be checked against such a torch.
  [[ $cmake_macros_found == 1 ]] || torch_flags+=(-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE)
  for op in sinkhorn xattn; do
    compile "torch launcher csrc/$op/cuda/${op}_cuda.cu, sm_90" \
      -c -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr \
      -Xcompiler -Wall,-Wextra "${half_flags[@]}" "${torch_flags[@]}" \
      "csrc/$op/cuda/${op}_cuda.cu" -o "$out/${op}_cuda.o" || failed=1
  done
fi

wait "$harness_job" || failed=1
if [[ $failed != 0 ]]; then
  echo "cuda-check: FAILED ($((SECONDS - start)) s)"
  exit 1
fi
echo "cuda-check: passed ($((SECONDS - start)) s)"
