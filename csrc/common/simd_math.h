// Branch-free exp that GCC vectorises inside `#pragma omp simd` loops.
//
// The kernels are compiled without -ffast-math, so std::exp stays a scalar libm call; these
// polynomial versions are accurate to ~2 ulp (float) and ~1e-15 relative (double) over the
// representable range and saturate outside it instead of producing inf or NaN.
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

// Kernels that call these get an AVX2+FMA clone and a baseline clone, chosen at load time,
// so the extension runs on any x86-64 CPU and still vectorises on current ones.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define STG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define STG_SIMD_CLONES
#endif

namespace stg {

// Flushes denormal results and inputs to zero on this thread for the guard's lifetime: the
// linear-domain Sinkhorn steps multiply tiny scalings, and denormal arithmetic is ~100×
// slower on x86 while contributing nothing measurable to the sums.
class FlushDenormals {
 public:
#if defined(__SSE__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned int kFlushToZero = 0x8000;
  static constexpr unsigned int kDenormalsAreZero = 0x0040;
  unsigned int saved_;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

inline float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr int32_t kRoundMagicBits = 0x4B400000;
  const float shifted = x * 1.44269504088896341f + kRoundMagic;
  const float n = shifted - kRoundMagic;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const int32_t scale_bits = (shifted_bits - kRoundMagicBits + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

inline double exp_poly(double x) {
  x = x < -708.0 ? -708.0 : x;
  x = x > 709.0 ? 709.0 : x;
  constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52
  constexpr int64_t kRoundMagicBits = 0x4338000000000000LL;
  const double shifted = x * 1.4426950408889634 + kRoundMagic;
  const double n = shifted - kRoundMagic;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const int64_t scale_bits = (shifted_bits - kRoundMagicBits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

}  // namespace stg
