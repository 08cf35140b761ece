// CPU kernels of attention rollout and the paper's heatmap chain (see rollout.h).
//
// Rollout only needs a few output rows (the word tokens), so it runs the chain as
// row-vector × matrix products from the last layer down: O(Ly·R·n²) instead of O(Ly·n³).
#include "../rollout.h"

#include <algorithm>
#include <vector>

#include "../../common/simd_math.h"

namespace stg::rollout {
namespace {

template <typename T>
STG_SIMD_CLONES void rollout_batches(const T* layers, const int64_t* rows, int64_t n_layers,
                                     int64_t n, int64_t n_rows, T* out, int64_t batch_begin,
                                     int64_t batch_end) {
  // Row i of Ã = (0.5·A[i,:] + 0.5·e_i) / z_i with z_i = 0.5·Σ_j A[i,j] + 0.5.
  std::vector<T> inv_row_sum(n), current(n_rows * n), next(n_rows * n), scaled(n_rows);
  for (int64_t b = batch_begin; b < batch_end; ++b) {
    const T* stack = layers + b * n_layers * n * n;
    auto load_inverse_row_sums = [&](const T* layer) {
      for (int64_t i = 0; i < n; ++i) {
        const T* row = layer + i * n;
        T total = 0;
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < n; ++j) total += row[j];
        inv_row_sum[i] = T(1) / (T(0.5) * total + T(0.5));
      }
    };
    const T* last = stack + (n_layers - 1) * n * n;
    load_inverse_row_sums(last);
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t i = rows[r];
      const T* row = last + i * n;
      T* dst = current.data() + r * n;
      const T weight = T(0.5) * inv_row_sum[i];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) dst[j] = weight * row[j];
      dst[i] += weight;
    }
    for (int64_t layer = n_layers - 2; layer >= 0; --layer) {
      const T* a = stack + layer * n * n;
      load_inverse_row_sums(a);
      // next[r,:] = 0.5·Σ_i c[r,i]·A[i,:] + 0.5·c[r,:] with c[r,i] = current[r,i] / z_i.
      for (int64_t r = 0; r < n_rows; ++r) {
        const T* cur = current.data() + r * n;
        T* dst = next.data() + r * n;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) dst[j] = T(0.5) * cur[j] * inv_row_sum[j];
      }
      for (int64_t i = 0; i < n; ++i) {
        const T* a_row = a + i * n;
        for (int64_t r = 0; r < n_rows; ++r) scaled[r] = T(0.5) * current[r * n + i] * inv_row_sum[i];
        for (int64_t r = 0; r < n_rows; ++r) {
          const T weight = scaled[r];
          if (weight == T(0)) continue;
          T* dst = next.data() + r * n;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) dst[j] += weight * a_row[j];
        }
      }
      current.swap(next);
    }
    std::copy(current.begin(), current.end(), out + b * n_rows * n);
  }
}

template <typename T>
STG_SIMD_CLONES void paper_batches(const T* ca2, const T* sa, const T* ca1,
                                   const bool* word_mask, int64_t R, int64_t W, T* heat,
                                   int64_t batch_begin, int64_t batch_end) {
  std::vector<T> mean_ca2(W), through_sa(W);
  for (int64_t b = batch_begin; b < batch_end; ++b) {
    const T* ca2_b = ca2 + b * R * W;
    const T* sa_b = sa + b * W * W;
    const T* ca1_b = ca1 + b * W * R;
    const bool* mask_b = word_mask + b * W;
    std::fill(mean_ca2.begin(), mean_ca2.end(), T(0));
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t w = 0; w < W; ++w) mean_ca2[w] += ca2_b[r * W + w];
    }
    for (int64_t w = 0; w < W; ++w) mean_ca2[w] = mask_b[w] ? mean_ca2[w] / T(R) : T(0);
    std::fill(through_sa.begin(), through_sa.end(), T(0));
    for (int64_t w = 0; w < W; ++w) {
      if (mean_ca2[w] == T(0)) continue;
      for (int64_t w2 = 0; w2 < W; ++w2) {
        if (mask_b[w2]) through_sa[w2] += mean_ca2[w] * sa_b[w * W + w2];
      }
    }
    T* heat_b = heat + b * R;
    std::fill(heat_b, heat_b + R, T(0));
    for (int64_t w = 0; w < W; ++w) {
      if (through_sa[w] == T(0)) continue;
      const T weight = through_sa[w];
      const T* row = ca1_b + w * R;
#pragma omp simd
      for (int64_t r = 0; r < R; ++r) heat_b[r] += weight * row[r];
    }
  }
}

}  // namespace

template <typename scalar_t>
void rollout_cpu(const scalar_t* layers, const int64_t* rows, int64_t n_layers, int64_t n,
                 int64_t n_rows, scalar_t* out, int64_t batch_begin, int64_t batch_end) {
  rollout_batches(layers, rows, n_layers, n, n_rows, out, batch_begin, batch_end);
}

template <typename scalar_t>
void paper_cpu(const scalar_t* ca2, const scalar_t* sa, const scalar_t* ca1,
               const bool* word_mask, int64_t R, int64_t W, scalar_t* heat,
               int64_t batch_begin, int64_t batch_end) {
  paper_batches(ca2, sa, ca1, word_mask, R, W, heat, batch_begin, batch_end);
}

#define STG_INSTANTIATE_ROLLOUT(T)                                                            \
  template void rollout_cpu<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, T*,      \
                               int64_t, int64_t);                                            \
  template void paper_cpu<T>(const T*, const T*, const T*, const bool*, int64_t, int64_t, T*, \
                             int64_t, int64_t);
STG_INSTANTIATE_ROLLOUT(float)
STG_INSTANTIATE_ROLLOUT(double)
#undef STG_INSTANTIATE_ROLLOUT

}  // namespace stg::rollout
