#!/usr/bin/env bash
# Everything stg can only verify on a GPU, in one run of at most 8 minutes (`make gpu-check`):
#
#   1. build the native extension in place for the GPU at hand (TORCH_CUDA_ARCH_LIST from its
#      compute capability);
#   2. the op and model tests (tests/ops, tests/models), whose CUDA cases skip without a GPU;
#   3. the CUDA harness (csrc/harness/cuda_harness.cu): every kernel template and dtype
#      against a CPU reference, then its kernel timings;
#   4. `stg bench sinkhorn xattn rollout --device cuda` and `stg bench train --device cuda`
#      (the paper shape with the paper's batch of 64);
#   5. a short `stg train` under torchrun (world size 1, so nccl), bfloat16 autocast, on a small
#      generated feature store.
#
# Every step has its own time limit (together 9 minutes at most, 6-8 expected), writes its log to OUT and goes on when an earlier one
# failed (a failed build leaves the reference ops, which the tests then report). OUT/summary.txt
# lists each step's outcome and time; OUT/bench-ops.json, OUT/bench-train.json and
# OUT/train-metrics.jsonl hold the figures for benchmarks/RESULTS.md.
#
# Environment: PYTHON (default python3), NVCC (default nvcc on PATH, else $CUDA_HOME/bin/nvcc),
# OUT (default gpu-check-out). Exits non-zero if any step failed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
: >"$summary"
failed=0
begin=$SECONDS

# step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit with its output in OUT/NAME.log
# and adds one line to the summary.
step() {
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS status
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  status=$?
  local line
  if [[ $status == 0 ]]; then
    line="ok      $name ($((SECONDS - start)) s)"
  else
    [[ $status == 124 || $status == 137 ]] && line="TIMEOUT $name (limit $limit s)" ||
      line="FAILED  $name (exit $status, $((SECONDS - start)) s)"
    failed=1
  fi
  echo "$line" | tee -a "$summary"
  tail -n 3 "$out/$name.log" | sed 's/^/        /' | tee -a "$summary"
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi fails); nothing to check" | tee -a "$summary"
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$summary"
"$python" - <<'PY' 2>&1 | tee -a "$summary"
import importlib.util, sys
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda})")
missing = [m for m in ("numpy", "typer", "rich", "safetensors", "pytest") if importlib.util.find_spec(m) is None]
if missing:
    print("gpu-check: missing Python packages:", ", ".join(missing))
PY
arch="$("$python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
nvcc="${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}"
sm="${arch/./}"

step build 120 env TORCH_CUDA_ARCH_LIST="$arch" "$python" setup.py build_ext --inplace
"$python" -m stg_cli info 2>&1 | grep -E "extension|native kernels" | tee -a "$summary"
step tests 75 "$python" -m pytest -q -p no:cacheprovider tests/ops tests/models
half_flags=(-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
            -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__)
step harness-build 60 "$nvcc" -O3 -std=c++17 -arch="sm_$sm" "${half_flags[@]}" \
  csrc/harness/cuda_harness.cu -o "$out/cuda_harness"
step harness 20 "$out/cuda_harness"
step harness-timings 20 "$out/cuda_harness" --time 200
step bench-ops 60 "$python" -m stg_cli bench sinkhorn xattn rollout --device cuda \
  --out "$out/bench-ops.json" --overwrite
step bench-train 120 "$python" -m stg_cli bench train --device cuda --out "$out/bench-train.json" --overwrite

store="$out/train-store"
rm -rf "$store" "$out/train-run"
step train-store 15 env PYTHONPATH="$root/tests" "$python" -c \
  "from pathlib import Path; from helpers.training import write_training_store; write_training_store(Path('$store'))"
step train 60 "$python" -m torch.distributed.run --standalone --nproc_per_node 1 -m stg_cli train "$store" \
  --out "$out/train-run" --steps 60 --dim 128 --frames-u 8 --frames-t 4 --batch-size 8 --local-chunk 4 \
  --device cuda
cp "$out/train-run/metrics.jsonl" "$out/train-metrics.jsonl" 2>/dev/null
rm -rf "$store" "$out/train-run"

if [[ $failed != 0 ]]; then
  echo "gpu-check: FAILED ($((SECONDS - begin)) s); logs in $out" | tee -a "$summary"
  exit 1
fi
echo "gpu-check: passed ($((SECONDS - begin)) s); logs and figures in $out" | tee -a "$summary"
