// Device helpers shared by the CUDA kernels: typed math wrappers and warp reductions.
#pragma once

#include <cuda/std/limits>
#include <cuda_runtime.h>

namespace stg::device {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float log_of(float x) { return logf(x); }
__device__ __forceinline__ double log_of(double x) { return log(x); }
__device__ __forceinline__ float abs_of(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_of(double x) { return fabs(x); }
__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return fmax(a, b); }

// max(a, b) that is NaN when either operand is (fmax returns the other operand instead).
template <typename T>
__device__ __forceinline__ T max_keeping_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

template <typename T>
__host__ __device__ constexpr T negative_infinity() {
  return -cuda::std::numeric_limits<T>::infinity();
}

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullWarp, value, offset);
  }
  return value;
}

template <typename T>
__device__ __forceinline__ T warp_max(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = max_of(value, __shfl_xor_sync(kFullWarp, value, offset));
  }
  return value;
}

template <typename T>
__device__ __forceinline__ T warp_max_keeping_nan(T value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = max_keeping_nan(value, __shfl_xor_sync(kFullWarp, value, offset));
  }
  return value;
}

}  // namespace stg::device
