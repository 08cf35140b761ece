// Fused masked softmax attention on CUDA: raw-pointer kernels and their launchers, no torch
// headers (the torch-facing launcher and the standalone harness both include this file).
//
// Shapes (row-major, contiguous): q[B,M,D], k[B,L,D], v[B,L,D], key_mask[B,L], out[B,M,D],
// lse[B,M] (log-sum-exp of the scaled, masked logits; 0 for a fully masked row), probs[B,M,L]
// (optional). Storage types: float, double, __half, __nv_bfloat16; arithmetic in float (double
// for double). A fully masked row gives zero output, zero probabilities and zero gradients.
// Any number of keys L; D ≤ kMaxHeadDim.
//
// Row kernels (forward, backward_rows): one warp owns kRowsPerWarp query rows of one batch entry
// and keeps them in registers, lane l holding features l, l + 32, ... (D ≤ 32·kChunks). The keys
// are visited in chunks of at most kKeyChunk: for every unmasked key of a chunk the warp loads
// the key row once, forms the kRowsPerWarp dot products with shuffle reductions and keeps the
// logits of its rows in shared memory ([rows, chunk] per warp). The forward softmax is online
// across chunks (a running maximum and sum per row rescale the output accumulated so far), so
// shared memory does not grow with L; the weighted sum over a chunk's keys again loads each
// value row once for all the warp's rows. With probs asked for, a second pass over the chunks
// recomputes the logits and writes exp(s - lse). Keys and values are read straight from global
// memory rather than staged in shared memory: one batch entry's keys and values (80 KiB for 20
// words × 512 features in float32) are read by every warp working on that entry and are served
// from L1/L2, and the register blocking over rows is what divides that traffic. The key mask is
// read from global memory too (one byte per key, the same address for the whole warp). Nothing
// of size [B,M,L,D] exists.
//
// Backward: backward_rows makes two passes over the key chunks of its rows. The first computes
// P = exp(scale·q·k - lse) and dP = dO·Vᵀ (+ grad_probs), stores both to a caller-provided
// workspace ([B,M,L] each, accumulator type) and sums Drow = Σ_j P dP exactly; the second reads
// them back (each lane its own entries), writes dS = P ⊙ (dP - Drow) over dP and accumulates
// dQ = scale·dS·K chunk by chunk. backward_keys then reduces over the query rows per batch entry:
// one block owns (b, a tile of 16 keys, a tile of 128 features), one thread per feature, and
// computes dV = Pᵀ·dO and dK = scale·dSᵀ·Q with the workspace tiles staged in shared memory. No
// atomics: the reduction order is fixed, so the gradients are deterministic, and dK, dV need no
// zero fill.
#pragma once

#include <cuda/std/limits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../../common/cuda_device.cuh"

namespace stg::xattn {

constexpr int kMaxHeadDim = 512;
// Keys per chunk of the row kernels (their shared memory holds [rows, chunk] logits per warp).
constexpr int kKeyChunk = 256;
using stg::device::kWarpSize;
// Warps per block of the row kernels.
constexpr int kRowWarps = 4;
constexpr int kRowThreads = kRowWarps * kWarpSize;
// backward_keys: threads (one per feature) per block, keys per block, rows staged per step.
constexpr int kKeyThreads = 128;
constexpr int kKeysPerBlock = 16;
constexpr int kRowChunk = 32;

// Storage type <-> accumulator type.
template <typename T>
struct ScalarTraits;

template <>
struct ScalarTraits<float> {
  using acc_t = float;
  static __device__ __forceinline__ float to_acc(float x) { return x; }
  static __device__ __forceinline__ float from_acc(float x) { return x; }
};

template <>
struct ScalarTraits<double> {
  using acc_t = double;
  static __device__ __forceinline__ double to_acc(double x) { return x; }
  static __device__ __forceinline__ double from_acc(double x) { return x; }
};

template <>
struct ScalarTraits<__half> {
  using acc_t = float;
  static __device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_acc(float x) { return __float2half_rn(x); }
};

template <>
struct ScalarTraits<__nv_bfloat16> {
  using acc_t = float;
  static __device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_acc(float x) {
    return __float2bfloat16_rn(x);
  }
};

template <typename scalar_t>
using acc_type = typename ScalarTraits<scalar_t>::acc_t;

// Query rows per warp: register blocking over rows, halved for double to bound registers.
template <typename scalar_t>
constexpr int kRowsPerWarp = sizeof(acc_type<scalar_t>) == 8 ? 2 : 4;

template <typename scalar_t>
constexpr int kRowsPerBlock = kRowWarps * kRowsPerWarp<scalar_t>;

namespace detail {

using namespace stg::device;

// values[r][c] = row_r[lane + 32c] for the warp's rows (zero past D and for rows ≥ M).
template <typename scalar_t, int kRows, int kChunks>
__device__ __forceinline__ void load_rows(const scalar_t* matrix, int first_row, int M, int D,
                                          acc_type<scalar_t> (&values)[kRows][kChunks]) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = first_row + r;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + c * kWarpSize;
      values[r][c] = row < M && d < D
                         ? ScalarTraits<scalar_t>::to_acc(matrix[static_cast<int64_t>(row) * D + d])
                         : acc_type<scalar_t>(0);
    }
  }
}

// row_r[lane + 32c] = factor · values[r][c] for the warp's rows below M.
template <typename scalar_t, int kRows, int kChunks>
__device__ __forceinline__ void store_rows(scalar_t* matrix, int first_row, int M, int D,
                                           const acc_type<scalar_t> (&values)[kRows][kChunks],
                                           acc_type<scalar_t> factor) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int row = first_row + r;
    if (row >= M) continue;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + c * kWarpSize;
      if (d < D) {
        matrix[static_cast<int64_t>(row) * D + d] =
            ScalarTraits<scalar_t>::from_acc(factor * values[r][c]);
      }
    }
  }
}

// scores[r·L + j] = epilogue(r, <row_r, keys_j>) for unmasked keys j, masked_value otherwise.
// Ends with __syncwarp(), so every lane may read any score afterwards.
template <typename scalar_t, int kRows, int kChunks, typename Epilogue>
__device__ __forceinline__ void row_key_dots(const acc_type<scalar_t> (&rows)[kRows][kChunks],
                                             const scalar_t* keys, const bool* key_valid,
                                             int L, int D, acc_type<scalar_t> masked_value,
                                             acc_type<scalar_t>* scores,
                                             const Epilogue& epilogue) {
  using acc_t = acc_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  for (int j = 0; j < L; ++j) {
    if (!key_valid[j]) {
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) scores[r * L + j] = masked_value;
      }
      continue;
    }
    acc_t key[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + c * kWarpSize;
      key[c] = d < D ? ScalarTraits<scalar_t>::to_acc(keys[static_cast<int64_t>(j) * D + d])
                     : acc_t(0);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      acc_t partial = 0;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) partial += rows[r][c] * key[c];
      const acc_t dot = warp_sum(partial);
      if (lane == 0) scores[r * L + j] = epilogue(r, dot);
    }
  }
  __syncwarp();
}

// result[r][c] += Σ_j weights[r·L + j] · values_j[lane + 32c] over unmasked keys.
template <typename scalar_t, int kRows, int kChunks>
__device__ __forceinline__ void add_weighted_key_sum(const acc_type<scalar_t>* weights,
                                                     const scalar_t* values,
                                                     const bool* key_valid, int L, int D,
                                                     acc_type<scalar_t> (&result)[kRows][kChunks]) {
  using acc_t = acc_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  for (int j = 0; j < L; ++j) {
    if (!key_valid[j]) continue;
    acc_t value[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int d = lane + c * kWarpSize;
      value[c] = d < D ? ScalarTraits<scalar_t>::to_acc(values[static_cast<int64_t>(j) * D + d])
                       : acc_t(0);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const acc_t weight = weights[r * L + j];
#pragma unroll
      for (int c = 0; c < kChunks; ++c) result[r][c] += weight * value[c];
    }
  }
}

template <typename T, int kRows, int kChunks>
__device__ __forceinline__ void fill(T (&values)[kRows][kChunks], T value) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) values[r][c] = value;
  }
}

}  // namespace detail

// Features per lane rounded up to a power of two: 1, 2, 4, 8 or 16 (D ≤ kMaxHeadDim).
inline int feature_chunks(int D) {
  if (D <= 32) return 1;
  if (D <= 64) return 2;
  if (D <= 128) return 4;
  if (D <= 256) return 8;
  return 16;
}

template <typename scalar_t>
int row_tiles(int M) {
  return (M + kRowsPerBlock<scalar_t> - 1) / kRowsPerBlock<scalar_t>;
}

// Keys per chunk of the row kernels for L keys.
__host__ __device__ constexpr int key_chunk(int L) { return L < kKeyChunk ? L : kKeyChunk; }

// Dynamic shared memory of a row kernel: `score_buffers` [rows, chunk] buffers per warp.
template <typename scalar_t>
constexpr size_t row_kernel_shared_bytes(int L, int score_buffers) {
  return static_cast<size_t>(kRowsPerBlock<scalar_t>) * key_chunk(L) * score_buffers *
         sizeof(acc_type<scalar_t>);
}

// The row kernels never need the shared-memory opt-in, whatever L.
static_assert(row_kernel_shared_bytes<float>(kKeyChunk, 2) <= 48 * 1024, "row kernel smem");
static_assert(row_kernel_shared_bytes<double>(kKeyChunk, 2) <= 48 * 1024, "row kernel smem");

// Grid: batch · row_tiles(M) blocks of kRowThreads; block (b, tile) handles query rows
// [tile·kRowsPerBlock, (tile + 1)·kRowsPerBlock). probs may be null.
template <typename scalar_t, int kChunks>
__global__ void __launch_bounds__(kRowThreads)
    forward_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, const bool* __restrict__ key_mask, int M, int L,
                   int D, acc_type<scalar_t> scale, int tiles_per_batch,
                   scalar_t* __restrict__ out, acc_type<scalar_t>* __restrict__ lse,
                   scalar_t* __restrict__ probs) {
  using acc_t = acc_type<scalar_t>;
  constexpr int kRows = kRowsPerWarp<scalar_t>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t b = blockIdx.x / tiles_per_batch;
  const int first_row =
      static_cast<int>(blockIdx.x % tiles_per_batch) * kRowsPerBlock<scalar_t> + warp * kRows;
  if (first_row >= M) return;

  const int chunk = key_chunk(L);
  acc_t* scores = reinterpret_cast<acc_t*>(shared_bytes) + warp * kRows * chunk;
  const bool* key_valid = key_mask + b * L;
  const scalar_t* keys = k + b * L * D;
  const scalar_t* values = v + b * L * D;
  const auto scaled = [&](int, acc_t dot) { return dot * scale; };
  acc_t query[kRows][kChunks];
  detail::load_rows<scalar_t>(q + b * M * D, first_row, M, D, query);
  // scores[r·span + j] = the scaled logits of keys [start, start + span) (-inf when masked).
  const auto chunk_logits = [&](int start, int span) {
    detail::row_key_dots<scalar_t>(query, keys + static_cast<int64_t>(start) * D,
                                   key_valid + start, span, D,
                                   detail::negative_infinity<acc_t>(), scores, scaled);
  };

  // Online softmax over the chunks: peak[r] is the largest logit so far (-inf while no key was
  // valid, NaN once a logit was NaN), total[r] = Σ exp(s - peak) and result[r] = Σ exp(s - peak)
  // · v, both rescaled whenever the peak grows.
  acc_t peak[kRows];
  acc_t total[kRows];
  acc_t result[kRows][kChunks];
  detail::fill(result, acc_t(0));
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    peak[r] = detail::negative_infinity<acc_t>();
    total[r] = 0;
  }
  for (int start = 0; start < L; start += chunk) {
    const int span = L - start < chunk ? L - start : chunk;
    chunk_logits(start, span);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      acc_t* row_scores = scores + r * span;
      acc_t chunk_peak = detail::negative_infinity<acc_t>();
      // A NaN score makes the row NaN, as in the reference (fmax would skip it).
      for (int j = lane; j < span; j += kWarpSize) {
        chunk_peak = detail::max_keeping_nan(chunk_peak, row_scores[j]);
      }
      const acc_t new_peak =
          detail::max_keeping_nan(peak[r], detail::warp_max_keeping_nan(chunk_peak));
      const bool any_valid = new_peak != detail::negative_infinity<acc_t>();
      // Each lane rewrites only the entries it read: logits become weights in place.
      acc_t partial = 0;
      for (int j = lane; j < span; j += kWarpSize) {
        const acc_t weight = any_valid && key_valid[start + j]
                                 ? detail::exp_of(row_scores[j] - new_peak)
                                 : acc_t(0);
        row_scores[j] = weight;
        partial += weight;
      }
      const acc_t chunk_total = detail::warp_sum(partial);
      if (any_valid) {
        const acc_t rescale = detail::exp_of(peak[r] - new_peak);  // 0 after an empty start
        total[r] = total[r] * rescale + chunk_total;
#pragma unroll
        for (int c = 0; c < kChunks; ++c) result[r][c] *= rescale;
        peak[r] = new_peak;
      }
    }
    __syncwarp();
    detail::add_weighted_key_sum<scalar_t>(scores, values + static_cast<int64_t>(start) * D,
                                           key_valid + start, span, D, result);
    __syncwarp();
  }

  acc_t row_lse[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const bool any_valid = peak[r] != detail::negative_infinity<acc_t>();
    row_lse[r] = any_valid ? peak[r] + detail::log_of(total[r]) : acc_t(0);
    const acc_t inverse = any_valid ? acc_t(1) / total[r] : acc_t(0);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) result[r][c] *= inverse;
    if (lane == 0 && first_row + r < M) lse[b * M + first_row + r] = row_lse[r];
  }
  detail::store_rows<scalar_t>(out + b * M * D, first_row, M, D, result, acc_t(1));
  if (probs == nullptr) return;

  for (int start = 0; start < L; start += chunk) {
    const int span = L - start < chunk ? L - start : chunk;
    chunk_logits(start, span);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = first_row + r;
      if (row >= M) continue;
      const bool any_valid = peak[r] != detail::negative_infinity<acc_t>();
      for (int j = lane; j < span; j += kWarpSize) {
        const acc_t p = any_valid && key_valid[start + j]
                            ? detail::exp_of(scores[r * span + j] - row_lse[r])
                            : acc_t(0);
        probs[(b * M + row) * L + start + j] = ScalarTraits<scalar_t>::from_acc(p);
      }
    }
    __syncwarp();
  }
}

// Same grid as forward_kernel. grad_probs may be null. Writes grad_q and, for its rows,
// probs_workspace = P and grad_scores_workspace = dS ([B,M,L], accumulator type).
template <typename scalar_t, int kChunks>
__global__ void __launch_bounds__(kRowThreads)
    backward_rows_kernel(const scalar_t* __restrict__ grad_out,
                         const scalar_t* __restrict__ grad_probs, const scalar_t* __restrict__ q,
                         const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                         const bool* __restrict__ key_mask,
                         const acc_type<scalar_t>* __restrict__ lse, int M, int L, int D,
                         acc_type<scalar_t> scale, int tiles_per_batch,
                         scalar_t* __restrict__ grad_q,
                         acc_type<scalar_t>* __restrict__ probs_workspace,
                         acc_type<scalar_t>* __restrict__ grad_scores_workspace) {
  using acc_t = acc_type<scalar_t>;
  constexpr int kRows = kRowsPerWarp<scalar_t>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t b = blockIdx.x / tiles_per_batch;
  const int first_row =
      static_cast<int>(blockIdx.x % tiles_per_batch) * kRowsPerBlock<scalar_t> + warp * kRows;
  if (first_row >= M) return;

  const int chunk = key_chunk(L);
  acc_t* probs = reinterpret_cast<acc_t*>(shared_bytes) + warp * kRows * chunk;
  acc_t* grad_scores = reinterpret_cast<acc_t*>(shared_bytes) +
                       kRowsPerBlock<scalar_t> * chunk + warp * kRows * chunk;
  const bool* key_valid = key_mask + b * L;
  const scalar_t* keys = k + b * L * D;
  const scalar_t* values = v + b * L * D;
  acc_t row_lse[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row_lse[r] = first_row + r < M ? lse[b * M + first_row + r] : acc_t(0);
  }
  const auto probability = [&](int r, acc_t dot) {
    return detail::exp_of(dot * scale - row_lse[r]);
  };
  const auto plain = [](int, acc_t dot) { return dot; };

  // Pass 1: P and dP (+ grad_probs) of every key to the workspaces, and Drow = Σ_j P·dP.
  acc_t row_dot[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) row_dot[r] = 0;
  {
    acc_t query[kRows][kChunks];
    acc_t grad_row[kRows][kChunks];
    detail::load_rows<scalar_t>(q + b * M * D, first_row, M, D, query);
    detail::load_rows<scalar_t>(grad_out + b * M * D, first_row, M, D, grad_row);
    for (int start = 0; start < L; start += chunk) {
      const int span = L - start < chunk ? L - start : chunk;
      const int64_t key_offset = static_cast<int64_t>(start) * D;
      detail::row_key_dots<scalar_t>(query, keys + key_offset, key_valid + start, span, D,
                                     acc_t(0), probs, probability);
      detail::row_key_dots<scalar_t>(grad_row, values + key_offset, key_valid + start, span, D,
                                     acc_t(0), grad_scores, plain);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int row = first_row + r;
        if (row >= M) continue;
        const int64_t row_offset = (b * M + row) * L + start;
        acc_t partial = 0;
        for (int j = lane; j < span; j += kWarpSize) {
          acc_t p = 0;
          acc_t grad_p = 0;
          if (key_valid[start + j]) {
            p = probs[r * span + j];
            grad_p = grad_scores[r * span + j];
            if (grad_probs != nullptr) {
              grad_p += ScalarTraits<scalar_t>::to_acc(grad_probs[row_offset + j]);
            }
            partial += p * grad_p;
          }
          probs_workspace[row_offset + j] = p;
          grad_scores_workspace[row_offset + j] = grad_p;
        }
        row_dot[r] += detail::warp_sum(partial);
      }
      __syncwarp();
    }
  }

  // Pass 2: dS = P ⊙ (dP - Drow) over dP, and dQ = scale · Σ_j dS_j k_j. Each lane reads back
  // only the workspace entries it wrote in pass 1.
  acc_t grad_query[kRows][kChunks];
  detail::fill(grad_query, acc_t(0));
  for (int start = 0; start < L; start += chunk) {
    const int span = L - start < chunk ? L - start : chunk;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = first_row + r;
      const int64_t row_offset = (b * M + row) * L + start;
      for (int j = lane; j < span; j += kWarpSize) {
        acc_t grad_score = 0;
        if (row < M) {
          // A masked key's dS is 0 even when Drow is not finite (0·NaN would be NaN).
          if (key_valid[start + j]) {
            grad_score = probs_workspace[row_offset + j] *
                         (grad_scores_workspace[row_offset + j] - row_dot[r]);
          }
          grad_scores_workspace[row_offset + j] = grad_score;
        }
        grad_scores[r * span + j] = grad_score;
      }
    }
    __syncwarp();
    detail::add_weighted_key_sum<scalar_t>(grad_scores, keys + static_cast<int64_t>(start) * D,
                                           key_valid + start, span, D, grad_query);
    __syncwarp();
  }
  detail::store_rows<scalar_t>(grad_q + b * M * D, first_row, M, D, grad_query, scale);
}

// Grid: batch · key_tiles · feature_tiles blocks of kKeyThreads threads; block (b, key tile,
// feature tile) writes grad_k and grad_v for keys [16·key_tile, +16) and features
// [128·feature_tile, +128), reducing over all M query rows of batch entry b.
template <typename scalar_t>
__global__ void __launch_bounds__(kKeyThreads)
    backward_keys_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ grad_out,
                         const acc_type<scalar_t>* __restrict__ probs_workspace,
                         const acc_type<scalar_t>* __restrict__ grad_scores_workspace, int M,
                         int L, int D, acc_type<scalar_t> scale, int key_tiles,
                         int feature_tiles, scalar_t* __restrict__ grad_k,
                         scalar_t* __restrict__ grad_v) {
  using acc_t = acc_type<scalar_t>;
  __shared__ __align__(16) acc_t probs_tile[kRowChunk][kKeysPerBlock];
  __shared__ __align__(16) acc_t grad_scores_tile[kRowChunk][kKeysPerBlock];
  const int tiles_per_batch = key_tiles * feature_tiles;
  const int64_t b = blockIdx.x / tiles_per_batch;
  const int tile = static_cast<int>(blockIdx.x % tiles_per_batch);
  const int first_key = (tile / feature_tiles) * kKeysPerBlock;
  const int d = (tile % feature_tiles) * kKeyThreads + static_cast<int>(threadIdx.x);

  acc_t grad_key[kKeysPerBlock];
  acc_t grad_value[kKeysPerBlock];
#pragma unroll
  for (int j = 0; j < kKeysPerBlock; ++j) grad_key[j] = grad_value[j] = 0;

  const scalar_t* q_b = q + b * M * D;
  const scalar_t* grad_out_b = grad_out + b * M * D;
  for (int chunk_row = 0; chunk_row < M; chunk_row += kRowChunk) {
    for (int i = threadIdx.x; i < kRowChunk * kKeysPerBlock; i += kKeyThreads) {
      const int row = chunk_row + i / kKeysPerBlock;
      const int key = first_key + i % kKeysPerBlock;
      const bool inside = row < M && key < L;
      const int64_t at = (b * M + row) * L + key;
      probs_tile[i / kKeysPerBlock][i % kKeysPerBlock] = inside ? probs_workspace[at] : acc_t(0);
      grad_scores_tile[i / kKeysPerBlock][i % kKeysPerBlock] =
          inside ? grad_scores_workspace[at] : acc_t(0);
    }
    __syncthreads();
    if (d < D) {
      const int rows = M - chunk_row < kRowChunk ? M - chunk_row : kRowChunk;
      for (int i = 0; i < rows; ++i) {
        const int64_t at = static_cast<int64_t>(chunk_row + i) * D + d;
        const acc_t query = ScalarTraits<scalar_t>::to_acc(q_b[at]);
        const acc_t grad_row = ScalarTraits<scalar_t>::to_acc(grad_out_b[at]);
#pragma unroll
        for (int j = 0; j < kKeysPerBlock; ++j) {
          grad_value[j] += probs_tile[i][j] * grad_row;
          grad_key[j] += grad_scores_tile[i][j] * query;
        }
      }
    }
    __syncthreads();
  }

  if (d >= D) return;
#pragma unroll
  for (int j = 0; j < kKeysPerBlock; ++j) {
    const int key = first_key + j;
    if (key >= L) break;
    const int64_t at = (b * L + key) * D + d;
    grad_k[at] = ScalarTraits<scalar_t>::from_acc(scale * grad_key[j]);
    grad_v[at] = ScalarTraits<scalar_t>::from_acc(grad_value[j]);
  }
}

namespace detail {

template <int kValue>
struct ChunkCount {
  static constexpr int value = kValue;
};

// Calls launch(ChunkCount<feature_chunks(D)>{}).
template <typename Launch>
void dispatch_feature_chunks(int D, const Launch& launch) {
  switch (feature_chunks(D)) {
    case 1: launch(ChunkCount<1>{}); break;
    case 2: launch(ChunkCount<2>{}); break;
    case 4: launch(ChunkCount<4>{}); break;
    case 8: launch(ChunkCount<8>{}); break;
    default: launch(ChunkCount<16>{}); break;
  }
}

}  // namespace detail

// Launches forward_kernel. Requires D ≤ kMaxHeadDim and batch · row_tiles(M) <
// 2^31 (checked by the caller). probs may be null. Launch errors are left for the caller's
// cudaGetLastError().
template <typename scalar_t>
void launch_forward(const scalar_t* q, const scalar_t* k, const scalar_t* v, const bool* key_mask,
                    int64_t batch, int M, int L, int D, acc_type<scalar_t> scale, scalar_t* out,
                    acc_type<scalar_t>* lse, scalar_t* probs, cudaStream_t stream) {
  if (batch == 0 || M == 0) return;
  const int tiles = row_tiles<scalar_t>(M);
  const unsigned blocks = static_cast<unsigned>(batch * tiles);
  const size_t shared = row_kernel_shared_bytes<scalar_t>(L, 1);
  detail::dispatch_feature_chunks(D, [&](auto chunks) {
    forward_kernel<scalar_t, decltype(chunks)::value><<<blocks, kRowThreads, shared, stream>>>(
        q, k, v, key_mask, M, L, D, scale, tiles, out, lse, probs);
  });
}

// Number of accumulator values in each of the two backward workspaces (P and dS).
inline int64_t backward_workspace_elements(int64_t batch, int M, int L) {
  return batch * M * L;
}

// Launches backward_rows_kernel then backward_keys_kernel on `stream`. grad_probs may be null;
// probs_workspace and grad_scores_workspace hold backward_workspace_elements() values each.
template <typename scalar_t>
void launch_backward(const scalar_t* grad_out, const scalar_t* grad_probs, const scalar_t* q,
                     const scalar_t* k, const scalar_t* v, const bool* key_mask,
                     const acc_type<scalar_t>* lse, int64_t batch, int M, int L, int D,
                     acc_type<scalar_t> scale, scalar_t* grad_q, scalar_t* grad_k,
                     scalar_t* grad_v, acc_type<scalar_t>* probs_workspace,
                     acc_type<scalar_t>* grad_scores_workspace, cudaStream_t stream) {
  if (batch == 0) return;
  if (M > 0) {
    const int tiles = row_tiles<scalar_t>(M);
    const unsigned blocks = static_cast<unsigned>(batch * tiles);
    const size_t shared = row_kernel_shared_bytes<scalar_t>(L, 2);
    detail::dispatch_feature_chunks(D, [&](auto chunks) {
      backward_rows_kernel<scalar_t, decltype(chunks)::value>
          <<<blocks, kRowThreads, shared, stream>>>(grad_out, grad_probs, q, k, v, key_mask, lse,
                                                    M, L, D, scale, tiles, grad_q,
                                                    probs_workspace, grad_scores_workspace);
    });
  }
  if (L > 0 && D > 0) {
    const int key_tiles = (L + kKeysPerBlock - 1) / kKeysPerBlock;
    const int feature_tiles = (D + kKeyThreads - 1) / kKeyThreads;
    const unsigned blocks = static_cast<unsigned>(batch * key_tiles * feature_tiles);
    backward_keys_kernel<scalar_t><<<blocks, kKeyThreads, 0, stream>>>(
        q, grad_out, probs_workspace, grad_scores_workspace, M, L, D, scale, key_tiles,
        feature_tiles, grad_k, grad_v);
  }
}

}  // namespace stg::xattn
