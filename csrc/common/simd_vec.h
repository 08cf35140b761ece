// 32-byte GCC vector types for hand-tiled loops the auto-vectoriser does not find (several
// accumulators live in registers at once). Inside STG_SIMD_CLONES functions they lower to
// AVX2+FMA in one clone and to pairs of SSE2 registers in the baseline clone.
#pragma once
#include <cstdint>
#include <cstring>

namespace stg::simd {

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
  static constexpr int64_t width = 8;
};

template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
  static constexpr int64_t width = 4;
};

template <typename T>
using vec_t = typename Vec<T>::type;

template <typename T>
inline vec_t<T> load(const T* source) {
  vec_t<T> value;
  std::memcpy(&value, source, sizeof(value));
  return value;
}

template <typename T>
inline void store(T* target, vec_t<T> value) {
  std::memcpy(target, &value, sizeof(value));
}

template <typename T>
inline vec_t<T> zero() {
  return vec_t<T>{};
}

template <typename T>
inline T horizontal_sum(vec_t<T> value) {
  T total = 0;
  for (int64_t i = 0; i < Vec<T>::width; ++i) total += value[i];
  return total;
}

}  // namespace stg::simd
