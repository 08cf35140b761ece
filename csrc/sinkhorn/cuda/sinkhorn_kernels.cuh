// Batched log-domain Sinkhorn-Knopp on CUDA: raw-pointer kernels and their launchers, no torch
// headers (the torch-facing launcher and the standalone harness both include this file).
//
// Shapes (row-major, contiguous): P[B,K,U] (words × frames), word_mask[B,K], frame_mask[B,U],
// log_q[B,K,U], n_iter[B], grad_log_q and grad_P[B,K,U]. Semantics are those of
// stg_cli/ops/reference.py::sinkhorn and of the CPU kernels in ../sinkhorn.h; the arithmetic runs
// in the input type (float32 stays float32, float64 stays float64).
//
// One thread block owns one matrix and runs every iteration in a single launch: warp w computes
// the log-sum-exp of rows w, w + warps, ... with shuffle reductions, then of the columns the same
// way, with a block barrier between the two half-steps.
//
// Where the matrix lives. The kernel log(K) = saturated_logit(P, eps) (../logit.h; -inf on masked
// entries) is kept in
// dynamic shared memory whenever it fits the device's opt-in per-block limit (227 KiB on H100 and
// H200, 163 KiB on A100). The forward needs K·(U|1) + 2K + U + 32 values plus K + U mask bytes:
// on H100 up to 239 × 239 (57,121 entries) or K = 20 with U ≤ 2,731 in float32, half of that in
// float64 (168 × 168). The backward holds two matrices (log(K) and the gradient being
// accumulated): 168 × 168 in float32, 118 × 118 in float64. Beyond that the same kernels run with
// the matrices in global memory, read through L1/L2 (the forward uses log_q itself as scratch,
// the backward accumulates in grad_P and reads log(K) from a caller-provided workspace); only the per-row and per-column vectors stay in shared memory, which
// bounds K + U to about 17,000 (float32 backward) or 9,000 (float64 backward) on H100; larger
// problems are rejected by the launcher (Placement::kTooLarge).
#pragma once

#include <cuda/std/limits>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../../common/cuda_device.cuh"
#include "../logit.h"

namespace stg::sinkhorn {

using stg::device::kWarpSize;
constexpr int kMaxWarps = 32;
constexpr int kMaxThreads = kWarpSize * kMaxWarps;
// Dynamic shared memory a kernel may use without opting in.
constexpr size_t kDefaultSharedBytes = 48 * 1024;

// Where a kernel keeps its K×U matrices.
enum class Placement { kOnChip, kGlobal, kTooLarge };

namespace detail {

using namespace stg::device;

// log Σ_{i<n} exp(value(i)), computed by one warp; every lane returns the result. -inf entries
// contribute nothing and an all -inf slice gives -inf (never NaN).
template <typename T, typename ValueAt>
__device__ __forceinline__ T warp_logsumexp(int n, const ValueAt& value) {
  const int lane = threadIdx.x % kWarpSize;
  T peak = negative_infinity<T>();
  for (int i = lane; i < n; i += kWarpSize) peak = max_of(peak, value(i));
  peak = warp_max(peak);
  if (peak == negative_infinity<T>()) return peak;
  T total = 0;
  for (int i = lane; i < n; i += kWarpSize) total += exp_of(value(i) - peak);
  return peak + log_of(warp_sum(total));
}

// Copies mask[0, n) into shared memory and returns the number of true entries. Every thread of
// the block must call it; it ends with a block barrier when n > 0.
__device__ __forceinline__ int stage_mask(const bool* mask, int n, unsigned char* staged) {
  int count = 0;
  for (int base = 0; base < n; base += blockDim.x) {
    const int i = base + threadIdx.x;
    const bool valid = i < n && mask[i];
    if (i < n) staged[i] = valid;
    count += __syncthreads_count(valid);
  }
  return count;
}

// Row stride of an on-chip matrix: odd, so that a warp walking down a column hits 32 banks.
__host__ __device__ constexpr int shared_row_stride(int U) { return U | 1; }

template <typename Kernel>
cudaError_t allow_dynamic_shared(Kernel kernel, size_t bytes) {
  if (bytes <= kDefaultSharedBytes) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace detail

// One warp per row or column, up to kMaxWarps.
inline int block_threads(int K, int U) {
  int warps = K > U ? K : U;
  if (warps < 1) warps = 1;
  if (warps > kMaxWarps) warps = kMaxWarps;
  return warps * kWarpSize;
}

// Largest dynamic shared memory one block may opt in to on `device`.
inline cudaError_t max_shared_bytes(int device, size_t* bytes) {
  int value = 0;
  const cudaError_t status =
      cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  *bytes = static_cast<size_t>(value);
  return status;
}

// Forward layout: [log(K): K·(U|1) when on chip] [f: 2 buffers of K] [g: U] [warp errors: 32]
// [word_valid: K bytes] [frame_valid: U bytes].
template <typename scalar_t>
size_t forward_shared_bytes(int K, int U, Placement placement) {
  const size_t matrix = placement == Placement::kOnChip
                            ? static_cast<size_t>(K) * detail::shared_row_stride(U)
                            : 0;
  const size_t values = matrix + 2 * static_cast<size_t>(K) + U + kMaxWarps;
  return values * sizeof(scalar_t) + K + U;
}

// Backward layout: [log(K), gradient: K·(U|1) each when on chip] [f, row_lse, grad_f: K each]
// [g, col_lse, grad_g: U each] [word_valid: K bytes] [frame_valid: U bytes].
template <typename scalar_t>
size_t backward_shared_bytes(int K, int U, Placement placement) {
  const size_t matrices = placement == Placement::kOnChip
                              ? 2 * static_cast<size_t>(K) * detail::shared_row_stride(U)
                              : 0;
  const size_t values = matrices + 3 * static_cast<size_t>(K) + 3 * static_cast<size_t>(U);
  return values * sizeof(scalar_t) + K + U;
}

template <typename scalar_t>
Placement forward_placement(int K, int U, size_t shared_limit) {
  if (forward_shared_bytes<scalar_t>(K, U, Placement::kOnChip) <= shared_limit) {
    return Placement::kOnChip;
  }
  if (forward_shared_bytes<scalar_t>(K, U, Placement::kGlobal) <= shared_limit) {
    return Placement::kGlobal;
  }
  return Placement::kTooLarge;
}

template <typename scalar_t>
Placement backward_placement(int K, int U, size_t shared_limit) {
  if (backward_shared_bytes<scalar_t>(K, U, Placement::kOnChip) <= shared_limit) {
    return Placement::kOnChip;
  }
  if (backward_shared_bytes<scalar_t>(K, U, Placement::kGlobal) <= shared_limit) {
    return Placement::kGlobal;
  }
  return Placement::kTooLarge;
}

// One block per matrix (blockIdx.x = b). Iterations: f = log a - LSE_u(log K + g), then
// g = log b - LSE_k(log K + f). With tol > 0, before every iteration but the first, the row
// marginal L1 error Σ_k |exp(f_k + LSE_u(log K + g)) - a| is measured with the row LSEs the
// update needs anyway, and the matrix stops (keeping f and g) when it is below tol.
// kOnChip = false keeps log(K) in log_q itself, which the final pass overwrites in place.
template <typename scalar_t, bool kOnChip>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(const scalar_t* __restrict__ P, const bool* __restrict__ word_mask,
                   const bool* __restrict__ frame_mask, int K, int U, double eps, int iters,
                   scalar_t tol, scalar_t* __restrict__ log_q, int64_t* __restrict__ n_iter) {
  using detail::negative_infinity;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int64_t b = blockIdx.x;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  const int64_t matrix_size = static_cast<int64_t>(K) * U;
  const int stride = kOnChip ? detail::shared_row_stride(U) : U;

  scalar_t* shared_values = reinterpret_cast<scalar_t*>(shared_bytes);
  scalar_t* matrix = kOnChip ? shared_values : log_q + b * matrix_size;
  scalar_t* f = kOnChip ? shared_values + static_cast<int64_t>(K) * stride : shared_values;
  scalar_t* f_next = f + K;
  scalar_t* g = f_next + K;
  scalar_t* warp_error = g + U;
  unsigned char* word_valid = reinterpret_cast<unsigned char*>(warp_error + kMaxWarps);
  unsigned char* frame_valid = word_valid + K;

  const int k_valid = detail::stage_mask(word_mask + b * K, K, word_valid);
  const int u_valid = detail::stage_mask(frame_mask + b * U, U, frame_valid);

  const scalar_t* P_b = P + b * matrix_size;
  for (int64_t i = threadIdx.x; i < matrix_size; i += blockDim.x) {
    const int k = static_cast<int>(i / U);
    const int u = static_cast<int>(i - static_cast<int64_t>(k) * U);
    matrix[static_cast<int64_t>(k) * stride + u] = word_valid[k] && frame_valid[u]
                                                       ? saturated_logit(P_b[i], eps)
                                                       : negative_infinity<scalar_t>();
  }
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    f[k] = f_next[k] = word_valid[k] ? scalar_t(0) : negative_infinity<scalar_t>();
  }
  for (int u = threadIdx.x; u < U; u += blockDim.x) {
    g[u] = frame_valid[u] ? scalar_t(0) : negative_infinity<scalar_t>();
  }
  __syncthreads();

  // Masked entries of `matrix` are -inf and f, g are -inf exactly on masked rows and columns
  // (never +inf), so every sum below is -inf on masked entries and finite elsewhere.
  const scalar_t log_a = -detail::log_of(static_cast<scalar_t>(k_valid > 0 ? k_valid : 1));
  const scalar_t log_b = -detail::log_of(static_cast<scalar_t>(u_valid > 0 ? u_valid : 1));
  const scalar_t row_target = detail::exp_of(log_a);
  int done = 0;
  if (k_valid > 0 && u_valid > 0) {
    for (int step = 0; step < iters; ++step) {
      const bool check_error = tol > 0 && step > 0;
      scalar_t error = 0;
      for (int k = warp; k < K; k += warps) {
        if (!word_valid[k]) continue;
        const scalar_t* row = matrix + static_cast<int64_t>(k) * stride;
        const scalar_t lse = detail::warp_logsumexp<scalar_t>(U, [&](int u) { return row[u] + g[u]; });
        if (check_error) error += detail::abs_of(detail::exp_of(f[k] + lse) - row_target);
        if (lane == 0) f_next[k] = log_a - lse;
      }
      if (check_error && lane == 0) warp_error[warp] = error;
      __syncthreads();
      if (check_error) {
        // Every thread sums the same values in the same order, so the decision is uniform.
        scalar_t total = 0;
        for (int w = 0; w < warps; ++w) total += warp_error[w];
        if (!(total >= tol)) break;
      }
      scalar_t* const f_previous = f;
      f = f_next;
      f_next = f_previous;
      for (int u = warp; u < U; u += warps) {
        if (!frame_valid[u]) continue;
        const scalar_t lse = detail::warp_logsumexp<scalar_t>(
            K, [&](int k) { return matrix[static_cast<int64_t>(k) * stride + u] + f[k]; });
        if (lane == 0) g[u] = log_b - lse;
      }
      __syncthreads();
      ++done;
    }
  }

  scalar_t* out = log_q + b * matrix_size;
  for (int64_t i = threadIdx.x; i < matrix_size; i += blockDim.x) {
    const int k = static_cast<int>(i / U);
    const int u = static_cast<int>(i - static_cast<int64_t>(k) * U);
    out[i] = matrix[static_cast<int64_t>(k) * stride + u] + f[k] + g[u];
  }
  if (threadIdx.x == 0) n_iter[b] = done;
}

// Exact VJP of forward_kernel's n_iter[b] unrolled iterations. The forward is recomputed and the
// row/column LSEs of every iteration t are kept in row_lse_history[B, history_len, K] and
// col_lse_history[B, history_len, U]; then, from out = log K + f_n + g_n backwards:
//   g_t = log b - LSE_k(log K + f_t):      C = exp(log K + f_t - col_lse_t)  (column softmax),
//       grad log K -= grad_g ⊙ C,  grad_f -= Σ_u grad_g ⊙ C;
//   f_t = log a - LSE_u(log K + g_{t-1}):  R = exp(log K + g_{t-1} - row_lse_t)  (row softmax),
//       grad log K -= grad_f ⊙ R,  grad_g(t-1) = -Σ_k grad_f ⊙ R.
// grad_P = logit_gradient(grad log K), zero on masked entries. kOnChip = false accumulates in grad_P and
// reads log(K) from log_kernel_workspace[B,K,U] (unused when on chip).
template <typename scalar_t, bool kOnChip>
__global__ void __launch_bounds__(kMaxThreads)
    backward_kernel(const scalar_t* __restrict__ grad_log_q, const scalar_t* __restrict__ P,
                    const bool* __restrict__ word_mask, const bool* __restrict__ frame_mask,
                    int K, int U, double eps, const int64_t* __restrict__ n_iter,
                    int history_len, scalar_t* __restrict__ row_lse_history,
                    scalar_t* __restrict__ col_lse_history,
                    scalar_t* __restrict__ log_kernel_workspace, scalar_t* __restrict__ grad_P) {
  using detail::negative_infinity;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int64_t b = blockIdx.x;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  const int64_t matrix_size = static_cast<int64_t>(K) * U;
  const int stride = kOnChip ? detail::shared_row_stride(U) : U;
  const int64_t on_chip_size = static_cast<int64_t>(K) * stride;

  scalar_t* shared_values = reinterpret_cast<scalar_t*>(shared_bytes);
  scalar_t* log_kernel = kOnChip ? shared_values : log_kernel_workspace + b * matrix_size;
  scalar_t* grad = kOnChip ? shared_values + on_chip_size : grad_P + b * matrix_size;
  scalar_t* f = kOnChip ? shared_values + 2 * on_chip_size : shared_values;
  scalar_t* row_lse = f + K;
  scalar_t* grad_f = row_lse + K;
  scalar_t* g = grad_f + K;
  scalar_t* col_lse = g + U;
  scalar_t* grad_g = col_lse + U;
  unsigned char* word_valid = reinterpret_cast<unsigned char*>(grad_g + U);
  unsigned char* frame_valid = word_valid + K;

  const int k_valid = detail::stage_mask(word_mask + b * K, K, word_valid);
  const int u_valid = detail::stage_mask(frame_mask + b * U, U, frame_valid);

  const scalar_t* P_b = P + b * matrix_size;
  const scalar_t* grad_out = grad_log_q + b * matrix_size;
  for (int64_t i = threadIdx.x; i < matrix_size; i += blockDim.x) {
    const int k = static_cast<int>(i / U);
    const int u = static_cast<int>(i - static_cast<int64_t>(k) * U);
    const bool valid = word_valid[k] && frame_valid[u];
    const int64_t at = static_cast<int64_t>(k) * stride + u;
    log_kernel[at] = valid ? saturated_logit(P_b[i], eps) : negative_infinity<scalar_t>();
    grad[at] = valid ? grad_out[i] : scalar_t(0);
  }
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    f[k] = word_valid[k] ? scalar_t(0) : negative_infinity<scalar_t>();
  }
  for (int u = threadIdx.x; u < U; u += blockDim.x) {
    g[u] = frame_valid[u] ? scalar_t(0) : negative_infinity<scalar_t>();
  }
  __syncthreads();

  const scalar_t log_a = -detail::log_of(static_cast<scalar_t>(k_valid > 0 ? k_valid : 1));
  const scalar_t log_b = -detail::log_of(static_cast<scalar_t>(u_valid > 0 ? u_valid : 1));
  int n = 0;
  if (k_valid > 0 && u_valid > 0) {
    const int64_t requested = n_iter[b];
    n = static_cast<int>(requested < 0 ? 0 : (requested > history_len ? history_len : requested));
  }
  scalar_t* row_history = row_lse_history + b * history_len * K;
  scalar_t* col_history = col_lse_history + b * history_len * U;

  for (int t = 0; t < n; ++t) {
    for (int k = warp; k < K; k += warps) {
      if (!word_valid[k]) continue;
      const scalar_t* row = log_kernel + static_cast<int64_t>(k) * stride;
      const scalar_t lse = detail::warp_logsumexp<scalar_t>(U, [&](int u) { return row[u] + g[u]; });
      if (lane == 0) {
        f[k] = log_a - lse;
        row_history[static_cast<int64_t>(t) * K + k] = lse;
      }
    }
    __syncthreads();
    for (int u = warp; u < U; u += warps) {
      if (!frame_valid[u]) continue;
      const scalar_t lse = detail::warp_logsumexp<scalar_t>(
          K, [&](int k) { return log_kernel[static_cast<int64_t>(k) * stride + u] + f[k]; });
      if (lane == 0) {
        g[u] = log_b - lse;
        col_history[static_cast<int64_t>(t) * U + u] = lse;
      }
    }
    __syncthreads();
  }

  // Seeds: out = log K + f_n + g_n sends the row sums of the output gradient to f_n and the
  // column sums to g_n (grad is zero on masked entries).
  for (int k = warp; k < K; k += warps) {
    if (!word_valid[k]) continue;
    const scalar_t* row = grad + static_cast<int64_t>(k) * stride;
    scalar_t sum = 0;
    for (int u = lane; u < U; u += kWarpSize) sum += row[u];
    sum = detail::warp_sum(sum);
    if (lane == 0) grad_f[k] = sum;
  }
  for (int u = warp; u < U; u += warps) {
    if (!frame_valid[u]) continue;
    scalar_t sum = 0;
    for (int k = lane; k < K; k += kWarpSize) sum += grad[static_cast<int64_t>(k) * stride + u];
    sum = detail::warp_sum(sum);
    if (lane == 0) grad_g[u] = sum;
  }
  __syncthreads();

  for (int t = n - 1; t >= 0; --t) {
    // Stage iteration t: f_t, its row LSEs, its column LSEs and g_{t-1} (zero before the first).
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      if (!word_valid[k]) continue;
      row_lse[k] = row_history[static_cast<int64_t>(t) * K + k];
      f[k] = log_a - row_lse[k];
      if (t < n - 1) grad_f[k] = 0;  // f_t feeds only g_t once t < n
    }
    for (int u = threadIdx.x; u < U; u += blockDim.x) {
      if (!frame_valid[u]) continue;
      col_lse[u] = col_history[static_cast<int64_t>(t) * U + u];
      g[u] = t > 0 ? log_b - col_history[static_cast<int64_t>(t - 1) * U + u] : scalar_t(0);
    }
    __syncthreads();

    for (int k = warp; k < K; k += warps) {
      if (!word_valid[k]) continue;
      const int64_t row = static_cast<int64_t>(k) * stride;
      scalar_t sum = 0;
      for (int u = lane; u < U; u += kWarpSize) {
        if (!frame_valid[u]) continue;
        const scalar_t weight =
            grad_g[u] * detail::exp_of(log_kernel[row + u] + f[k] - col_lse[u]);
        grad[row + u] -= weight;
        sum += weight;
      }
      sum = detail::warp_sum(sum);
      if (lane == 0) grad_f[k] -= sum;
    }
    __syncthreads();

    for (int u = warp; u < U; u += warps) {
      if (!frame_valid[u]) continue;
      scalar_t sum = 0;
      for (int k = lane; k < K; k += kWarpSize) {
        if (!word_valid[k]) continue;
        const int64_t at = static_cast<int64_t>(k) * stride + u;
        const scalar_t weight = grad_f[k] * detail::exp_of(log_kernel[at] + g[u] - row_lse[k]);
        grad[at] -= weight;
        sum += weight;
      }
      sum = detail::warp_sum(sum);
      if (lane == 0) grad_g[u] = -sum;
    }
    __syncthreads();
  }

  scalar_t* grad_P_b = grad_P + b * matrix_size;
  for (int64_t i = threadIdx.x; i < matrix_size; i += blockDim.x) {
    const int k = static_cast<int>(i / U);
    const int u = static_cast<int>(i - static_cast<int64_t>(k) * U);
    grad_P_b[i] = word_valid[k] && frame_valid[u]
                      ? logit_gradient(grad[static_cast<int64_t>(k) * stride + u], P_b[i], eps)
                      : scalar_t(0);
  }
}

// Launches forward_kernel for `batch` matrices. `placement` comes from forward_placement() with
// the device's limit (kTooLarge is rejected). Returns the error of the shared-memory opt-in;
// launch errors are left for the caller's cudaGetLastError().
template <typename scalar_t>
cudaError_t launch_forward(const scalar_t* P, const bool* word_mask, const bool* frame_mask,
                           int64_t batch, int K, int U, double eps, int iters, scalar_t tol,
                           scalar_t* log_q, int64_t* n_iter, Placement placement,
                           cudaStream_t stream) {
  if (placement == Placement::kTooLarge) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  const size_t shared = forward_shared_bytes<scalar_t>(K, U, placement);
  const auto kernel = placement == Placement::kOnChip ? forward_kernel<scalar_t, true>
                                                      : forward_kernel<scalar_t, false>;
  const cudaError_t status = detail::allow_dynamic_shared(kernel, shared);
  if (status != cudaSuccess) return status;
  kernel<<<static_cast<unsigned>(batch), block_threads(K, U), shared, stream>>>(
      P, word_mask, frame_mask, K, U, eps, iters, tol, log_q, n_iter);
  return cudaSuccess;
}

// Launches backward_kernel. history_len >= max(n_iter); the histories hold
// batch·history_len·K and batch·history_len·U values (may be null when history_len is 0).
// log_kernel_workspace holds batch·K·U values and is only used when placement is kGlobal.
template <typename scalar_t>
cudaError_t launch_backward(const scalar_t* grad_log_q, const scalar_t* P, const bool* word_mask,
                            const bool* frame_mask, int64_t batch, int K, int U, double eps,
                            const int64_t* n_iter, int history_len, scalar_t* row_lse_history,
                            scalar_t* col_lse_history, scalar_t* log_kernel_workspace,
                            scalar_t* grad_P, Placement placement, cudaStream_t stream) {
  if (placement == Placement::kTooLarge) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  const size_t shared = backward_shared_bytes<scalar_t>(K, U, placement);
  const auto kernel = placement == Placement::kOnChip ? backward_kernel<scalar_t, true>
                                                      : backward_kernel<scalar_t, false>;
  const cudaError_t status = detail::allow_dynamic_shared(kernel, shared);
  if (status != cudaSuccess) return status;
  kernel<<<static_cast<unsigned>(batch), block_threads(K, U), shared, stream>>>(
      grad_log_q, P, word_mask, frame_mask, K, U, eps, n_iter, history_len, row_lse_history,
      col_lse_history, log_kernel_workspace, grad_P);
  return cudaSuccess;
}

}  // namespace stg::sinkhorn
