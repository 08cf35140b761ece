// CPU row passes of the masked softmax attention (see xattn.h).
//
// The products q·kᵀ, P·v and those of the backward run as at::bmm calls in the entry points
// (csrc/stg.cpp), i.e. through MKL, which at every training shape measured matched or beat a
// hand-tiled kernel of fused dot products (benchmarks/RESULTS.md, "xattn on the CPU"). What the native op
// adds over the PyTorch reference is between those products: one pass per row does the scale,
// the mask, the softmax and the log-sum-exp (forward), or the probabilities from the
// log-sum-exp and the softmax's backward (backward), where the reference takes four
// element-wise passes and as many autograd nodes each way.
#include "../xattn.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../../common/simd_math.h"

namespace stg::xattn {
namespace {

// Turns scaled logits into probabilities in place (zero on masked keys and on rows without
// any key) and returns the log-sum-exp (0 for a row without keys, NaN for a row with a NaN
// logit, whose real keys' probabilities are then NaN too).
template <typename T>
inline T softmax_row(T* logits, const bool* key_mask, int64_t L, T scale) {
  T peak = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < L; ++j) {
    if (!key_mask[j]) continue;
    logits[j] *= scale;
    // A NaN logit makes the row NaN, as in the reference (std::max would skip it).
    peak = logits[j] > peak || logits[j] != logits[j] ? logits[j] : peak;
  }
  if (peak == -std::numeric_limits<T>::infinity()) {
    std::fill(logits, logits + L, T(0));
    return T(0);
  }
  T total = 0;
  for (int64_t j = 0; j < L; ++j) {
    logits[j] = key_mask[j] ? exp_poly(logits[j] - peak) : T(0);
    total += logits[j];
  }
  const T inv_total = T(1) / total;
  for (int64_t j = 0; j < L; ++j) logits[j] = key_mask[j] ? logits[j] * inv_total : T(0);
  return peak + std::log(total);
}

template <typename T>
STG_SIMD_CLONES void softmax_rows(T* logits, const bool* key_mask, int64_t M, int64_t L, T scale,
                                  T* lse, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    lse[row] = softmax_row(logits + row * L, key_mask + (row / M) * L, L, scale);
  }
}

template <typename T>
STG_SIMD_CLONES void softmax_backward_rows(T* probs, T* grad_logits, const T* grad_probs,
                                           const bool* key_mask, const T* lse, int64_t M,
                                           int64_t L, T scale, int64_t row_begin,
                                           int64_t row_end) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    const bool* mask = key_mask + (row / M) * L;
    T* p = probs + row * L;
    T* dp = grad_logits + row * L;
    const T* gp = grad_probs ? grad_probs + row * L : nullptr;
    T row_dot = 0;
    for (int64_t j = 0; j < L; ++j) {
      // Masked keys' logits and value products are never used: they may be NaN.
      p[j] = mask[j] ? exp_poly(scale * p[j] - lse[row]) : T(0);
      dp[j] = mask[j] ? dp[j] + (gp ? gp[j] : T(0)) : T(0);
      row_dot += p[j] * dp[j];
    }
    // A masked key's dS is 0 even when the row's sum is not finite (0·NaN would be NaN).
    for (int64_t j = 0; j < L; ++j) dp[j] = mask[j] ? scale * p[j] * (dp[j] - row_dot) : T(0);
  }
}

}  // namespace

template <typename scalar_t>
void softmax_rows_cpu(scalar_t* logits, const bool* key_mask, int64_t M, int64_t L, double scale,
                      scalar_t* lse, int64_t row_begin, int64_t row_end) {
  softmax_rows(logits, key_mask, M, L, static_cast<scalar_t>(scale), lse, row_begin, row_end);
}

template <typename scalar_t>
void softmax_backward_rows_cpu(scalar_t* probs, scalar_t* grad_logits,
                               const scalar_t* grad_probs, const bool* key_mask,
                               const scalar_t* lse, int64_t M, int64_t L, double scale,
                               int64_t row_begin, int64_t row_end) {
  softmax_backward_rows(probs, grad_logits, grad_probs, key_mask, lse, M, L,
                        static_cast<scalar_t>(scale), row_begin, row_end);
}

#define STG_INSTANTIATE_XATTN(T)                                                              \
  template void softmax_rows_cpu<T>(T*, const bool*, int64_t, int64_t, double, T*, int64_t,  \
                                    int64_t);                                                \
  template void softmax_backward_rows_cpu<T>(T*, T*, const T*, const bool*, const T*,        \
                                             int64_t, int64_t, double, int64_t, int64_t);
STG_INSTANTIATE_XATTN(float)
STG_INSTANTIATE_XATTN(double)
#undef STG_INSTANTIATE_XATTN

}  // namespace stg::xattn
