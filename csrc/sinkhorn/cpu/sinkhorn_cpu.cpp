// CPU kernels of the batched log-domain Sinkhorn-Knopp (see sinkhorn.h).
//
// Each matrix is first compacted to its valid K'×U' block so the iterations run over dense
// rows without mask tests; the result is scattered back with -inf on masked entries.
#include "../sinkhorn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../../common/simd_math.h"
#include "../logit.h"

namespace stg::sinkhorn {
namespace {

template <typename T>
struct ValidBlock {
  std::vector<int64_t> rows;
  std::vector<int64_t> cols;
  std::vector<T> kernel;  // [K', U'] = saturated_logit(P, eps) on valid entries

  bool is_full(int64_t K, int64_t U) const {
    return static_cast<int64_t>(rows.size()) == K && static_cast<int64_t>(cols.size()) == U;
  }
};

template <typename T>
void gather_block(const T* P, const bool* word_mask, const bool* frame_mask, int64_t K,
                  int64_t U, double eps, ValidBlock<T>& block) {
  block.rows.clear();
  block.cols.clear();
  for (int64_t k = 0; k < K; ++k) {
    if (word_mask[k]) block.rows.push_back(k);
  }
  for (int64_t u = 0; u < U; ++u) {
    if (frame_mask[u]) block.cols.push_back(u);
  }
  const int64_t n_cols = static_cast<int64_t>(block.cols.size());
  block.kernel.resize(block.rows.size() * block.cols.size());
  if (block.is_full(K, U)) {
    const int64_t size = K * U;
    T* dst = block.kernel.data();
#pragma omp simd
    for (int64_t i = 0; i < size; ++i) dst[i] = saturated_logit(P[i], eps);
    return;
  }
  for (size_t i = 0; i < block.rows.size(); ++i) {
    const T* row = P + block.rows[i] * U;
    T* dst = block.kernel.data() + static_cast<int64_t>(i) * n_cols;
    for (int64_t j = 0; j < n_cols; ++j) dst[j] = saturated_logit(row[block.cols[j]], eps);
  }
}

// log Σ_j exp(x[j] + y[j]) over a dense row.
template <typename T>
inline T row_logsumexp(const T* x, const T* y, int64_t n) {
  T peak = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : peak)
  for (int64_t j = 0; j < n; ++j) peak = std::max(peak, x[j] + y[j]);
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += exp_poly(x[j] + y[j] - peak);
  return peak + std::log(total);
}

// col_lse[j] = log Σ_i exp(x[i, j] + f[i]) over a dense [rows, cols] block.
template <typename T>
inline void column_logsumexp(const T* __restrict x, const T* __restrict f, int64_t rows,
                             int64_t cols, T* __restrict peak, T* __restrict total,
                             T* __restrict col_lse) {
  for (int64_t j = 0; j < cols; ++j) {
    peak[j] = -std::numeric_limits<T>::infinity();
    total[j] = 0;
  }
  for (int64_t i = 0; i < rows; ++i) {
    const T* __restrict row = x + i * cols;
    const T fi = f[i];
    for (int64_t j = 0; j < cols; ++j) {
      const T value = row[j] + fi;
      peak[j] = value > peak[j] ? value : peak[j];
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    const T* __restrict row = x + i * cols;
    const T fi = f[i];
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) total[j] += exp_poly(row[j] + fi - peak[j]);
  }
  for (int64_t j = 0; j < cols; ++j) col_lse[j] = peak[j] + std::log(total[j]);
}

// Runs `iters` log-domain iterations on one dense block and records the potentials after
// every iteration (g_history starts with the initial zeros): the reverse pass needs them.
template <typename T>
STG_SIMD_CLONES void iterate_block_with_history(const T* x, int64_t rows, int64_t cols,
                                                int64_t iters, std::vector<T>& f_history,
                                                std::vector<T>& g_history) {
  const T log_a = -std::log(static_cast<T>(rows));
  const T log_b = -std::log(static_cast<T>(cols));
  std::vector<T> f(rows, T(0)), g(cols, T(0));
  std::vector<T> row_lse(rows), peak(cols), total(cols), col_lse(cols);
  g_history.assign(g.begin(), g.end());
  f_history.clear();
  for (int64_t step = 0; step < iters; ++step) {
    for (int64_t i = 0; i < rows; ++i) row_lse[i] = row_logsumexp(x + i * cols, g.data(), cols);
    for (int64_t i = 0; i < rows; ++i) f[i] = log_a - row_lse[i];
    column_logsumexp(x, f.data(), rows, cols, peak.data(), total.data(), col_lse.data());
    for (int64_t j = 0; j < cols; ++j) g[j] = log_b - col_lse[j];
    f_history.insert(f_history.end(), f.begin(), f.end());
    g_history.insert(g_history.end(), g.begin(), g.end());
  }
}

// Bounds on the row and column scalings of a linear-domain step. Kernel entries below
// exp_poly's floor (e^-87 in float, e^-708 in double) are not represented exactly; with both
// scalings within e^±30 (float) or e^±276 (double) such an entry changes a mass by less than
// the type's rounding error for K·U up to ~e^10, so the step is as exact as the log domain.
// A step that would leave the bounds is redone in the log domain.
template <typename T>
struct ScalingRange;
template <>
struct ScalingRange<float> {
  static constexpr float low = 1e-13f, high = 1e13f;
};
template <>
struct ScalingRange<double> {
  static constexpr double low = 1e-120, high = 1e120;
};

// scaling[i] = target / mass[i]; false (scaling unspecified) if any falls outside the range.
template <typename T>
inline bool rescale_within_range(const T* mass, T target, int64_t n, T* scaling) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    scaling[i] = target / mass[i];
    ok = ok && scaling[i] >= ScalingRange<T>::low && scaling[i] <= ScalingRange<T>::high;
  }
  return ok;
}

// Runs up to `iters` iterations (see sinkhorn.h for the tol rule), writes the log plan of the
// dense block to log_plan (row stride plan_stride) and returns the count done. Computed mostly
// in the scaling domain:
// after a log-domain iteration the plan kernel = exp(x + f + g) is materialised once and the
// next iterations only rescale rows and columns (u, v) with multiply-adds, which is exact in
// exact arithmetic. A step whose masses leave ScalingRange is absorbed into f, g and redone
// in the log domain, so extreme inputs keep the log-domain robustness.
template <typename T>
STG_SIMD_CLONES int64_t iterate_block_scaled(const T* x, int64_t rows, int64_t cols,
                                             int64_t iters, double tol, T* log_plan,
                                             int64_t plan_stride) {
  const T log_a = -std::log(static_cast<T>(rows));
  const T log_b = -std::log(static_cast<T>(cols));
  const T a = static_cast<T>(1) / static_cast<T>(rows);
  const T b = static_cast<T>(1) / static_cast<T>(cols);
  std::vector<T> f(rows, T(0)), g(cols, T(0));
  std::vector<T> kernel(rows * cols), u(rows), v(cols), row_mass(rows), col_mass(cols);
  std::vector<T> next_u(rows), next_v(cols);
  std::vector<T> row_lse(rows), peak(cols), total(cols), col_lse(cols);
  bool scaled = false;
  auto absorb = [&] {
    for (int64_t i = 0; i < rows; ++i) f[i] += std::log(u[i]);
    for (int64_t j = 0; j < cols; ++j) g[j] += std::log(v[j]);
    scaled = false;
  };
  auto log_domain_columns = [&] {
    column_logsumexp(x, f.data(), rows, cols, peak.data(), total.data(), col_lse.data());
    for (int64_t j = 0; j < cols; ++j) g[j] = log_b - col_lse[j];
  };
  auto materialise = [&] {
    for (int64_t i = 0; i < rows; ++i) {
      const T* xrow = x + i * cols;
      T* krow = kernel.data() + i * cols;
      const T fi = f[i];
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) krow[j] = exp_poly(xrow[j] + fi + g[j]);
    }
    std::fill(u.begin(), u.end(), T(1));
    std::fill(v.begin(), v.end(), T(1));
    scaled = true;
  };
  int64_t done = 0;
  for (int64_t step = 0; step < iters; ++step) {
    if (scaled) {
      for (int64_t i = 0; i < rows; ++i) {
        const T* krow = kernel.data() + i * cols;
        T mass = 0;
#pragma omp simd reduction(+ : mass)
        for (int64_t j = 0; j < cols; ++j) mass += krow[j] * v[j];
        row_mass[i] = mass;
      }
      if (rescale_within_range(row_mass.data(), a, rows, next_u.data())) {
        if (tol > 0 && step > 0) {
          T error = 0;
          for (int64_t i = 0; i < rows; ++i) error += std::abs(u[i] * row_mass[i] - a);
          if (error < static_cast<T>(tol)) break;
        }
        u.swap(next_u);
        std::fill(col_mass.begin(), col_mass.end(), T(0));
        for (int64_t i = 0; i < rows; ++i) {
          const T* krow = kernel.data() + i * cols;
          const T ui = u[i];
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) col_mass[j] += ui * krow[j];
        }
        ++done;
        if (rescale_within_range(col_mass.data(), b, cols, next_v.data())) {
          v.swap(next_v);
          continue;
        }
        absorb();
        log_domain_columns();
        materialise();
        continue;
      }
      absorb();
    }
    for (int64_t i = 0; i < rows; ++i) row_lse[i] = row_logsumexp(x + i * cols, g.data(), cols);
    if (tol > 0 && step > 0) {
      T error = 0;
      for (int64_t i = 0; i < rows; ++i) error += std::abs(std::exp(f[i] + row_lse[i]) - a);
      if (error < static_cast<T>(tol)) break;
    }
    for (int64_t i = 0; i < rows; ++i) f[i] = log_a - row_lse[i];
    log_domain_columns();
    ++done;
    if (step + 1 < iters) materialise();
  }
  // x + f + g is summed exactly as when the kernel was materialised and the small log-scalings
  // are added last: folding them into potentials of magnitude |P|/eps first would round them
  // away in float32.
  std::vector<T>& log_u = next_u;
  std::vector<T>& log_v = next_v;
  for (int64_t i = 0; i < rows; ++i) log_u[i] = scaled ? std::log(u[i]) : T(0);
  for (int64_t j = 0; j < cols; ++j) log_v[j] = scaled ? std::log(v[j]) : T(0);
  for (int64_t i = 0; i < rows; ++i) {
    const T* xrow = x + i * cols;
    T* out = log_plan + i * plan_stride;
    const T fi = f[i];
    const T log_ui = log_u[i];
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) out[j] = (xrow[j] + fi + g[j]) + (log_ui + log_v[j]);
  }
  return done;
}

// Reverse pass through the unrolled iterations of one dense block; grad_x holds the
// incoming gradient of log_q on entry and the gradient of x = saturated_logit(P, eps) on exit.
template <typename T>
STG_SIMD_CLONES void reverse_block(const T* x, int64_t rows, int64_t cols, int64_t n_done,
                                   const std::vector<T>& f_history,
                                   const std::vector<T>& g_history, T* grad_x) {
  const T log_a = -std::log(static_cast<T>(rows));
  const T log_b = -std::log(static_cast<T>(cols));
  std::vector<T> grad_f(rows, T(0)), grad_g(cols, T(0));
  for (int64_t i = 0; i < rows; ++i) {
    const T* grow = grad_x + i * cols;
    T row_total = 0;
    for (int64_t j = 0; j < cols; ++j) {
      row_total += grow[j];
      grad_g[j] += grow[j];
    }
    grad_f[i] = row_total;
  }
  for (int64_t step = n_done; step >= 1; --step) {
    const T* f = f_history.data() + (step - 1) * rows;
    const T* g = g_history.data() + step * cols;
    const T* g_prev = g_history.data() + (step - 1) * cols;
    // g = log b − LSE_i(x + f): the weights exp(x + f + g − log b) are a column softmax.
    for (int64_t i = 0; i < rows; ++i) {
      const T* xrow = x + i * cols;
      T* grow = grad_x + i * cols;
      const T shift = f[i] - log_b;
      T row_total = 0;
#pragma omp simd reduction(+ : row_total)
      for (int64_t j = 0; j < cols; ++j) {
        const T contribution = grad_g[j] * exp_poly(xrow[j] + g[j] + shift);
        grow[j] -= contribution;
        row_total += contribution;
      }
      grad_f[i] -= row_total;
    }
    // f = log a − LSE_j(x + g_prev): the weights exp(x + g_prev + f − log a) are a row softmax.
    std::fill(grad_g.begin(), grad_g.end(), T(0));
    for (int64_t i = 0; i < rows; ++i) {
      const T* xrow = x + i * cols;
      T* grow = grad_x + i * cols;
      const T shift = f[i] - log_a;
      const T upstream = grad_f[i];
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        const T contribution = upstream * exp_poly(xrow[j] + g_prev[j] + shift);
        grow[j] -= contribution;
        grad_g[j] -= contribution;
      }
    }
    std::fill(grad_f.begin(), grad_f.end(), T(0));
  }
}

}  // namespace

template <typename scalar_t>
void forward_cpu(const scalar_t* P, const bool* word_mask, const bool* frame_mask, int64_t K,
                 int64_t U, double eps, int64_t iters, double tol, scalar_t* log_q,
                 int64_t* n_iter, int64_t batch_begin, int64_t batch_end) {
  FlushDenormals flush_denormals;
  ValidBlock<scalar_t> block;
  std::vector<scalar_t> dense_plan;
  const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();
  for (int64_t b = batch_begin; b < batch_end; ++b) {
    gather_block(P + b * K * U, word_mask + b * K, frame_mask + b * U, K, U, eps, block);
    scalar_t* out = log_q + b * K * U;
    const int64_t rows = static_cast<int64_t>(block.rows.size());
    const int64_t cols = static_cast<int64_t>(block.cols.size());
    if (rows == 0 || cols == 0) {
      std::fill(out, out + K * U, neg_inf);
      n_iter[b] = 0;
      continue;
    }
    if (block.is_full(K, U)) {
      n_iter[b] = iterate_block_scaled(block.kernel.data(), rows, cols, iters, tol, out, U);
      continue;
    }
    dense_plan.resize(rows * cols);
    n_iter[b] = iterate_block_scaled(block.kernel.data(), rows, cols, iters, tol,
                                     dense_plan.data(), cols);
    std::fill(out, out + K * U, neg_inf);
    for (int64_t i = 0; i < rows; ++i) {
      const scalar_t* plan_row = dense_plan.data() + i * cols;
      scalar_t* orow = out + block.rows[i] * U;
      for (int64_t j = 0; j < cols; ++j) orow[block.cols[j]] = plan_row[j];
    }
  }
}

template <typename scalar_t>
void backward_cpu(const scalar_t* grad_log_q, const scalar_t* P, const bool* word_mask,
                  const bool* frame_mask, int64_t K, int64_t U, double eps,
                  const int64_t* n_iter, scalar_t* grad_P, int64_t batch_begin,
                  int64_t batch_end) {
  ValidBlock<scalar_t> block;
  std::vector<scalar_t> f_history, g_history, grad_x;
  for (int64_t b = batch_begin; b < batch_end; ++b) {
    gather_block(P + b * K * U, word_mask + b * K, frame_mask + b * U, K, U, eps, block);
    scalar_t* grad_out = grad_P + b * K * U;
    std::fill(grad_out, grad_out + K * U, scalar_t(0));
    const int64_t rows = static_cast<int64_t>(block.rows.size());
    const int64_t cols = static_cast<int64_t>(block.cols.size());
    if (rows == 0 || cols == 0) continue;
    iterate_block_with_history(block.kernel.data(), rows, cols, n_iter[b], f_history,
                               g_history);
    grad_x.resize(rows * cols);
    const scalar_t* grad_in = grad_log_q + b * K * U;
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        grad_x[i * cols + j] = grad_in[block.rows[i] * U + block.cols[j]];
      }
    }
    reverse_block(block.kernel.data(), rows, cols, n_iter[b], f_history, g_history, grad_x.data());
    for (int64_t i = 0; i < rows; ++i) {
      const scalar_t* P_row = P + b * K * U + block.rows[i] * U;
      for (int64_t j = 0; j < cols; ++j) {
        grad_out[block.rows[i] * U + block.cols[j]] =
            logit_gradient(grad_x[i * cols + j], P_row[block.cols[j]], eps);
      }
    }
  }
}

template void forward_cpu<float>(const float*, const bool*, const bool*, int64_t, int64_t,
                                 double, int64_t, double, float*, int64_t*, int64_t, int64_t);
template void forward_cpu<double>(const double*, const bool*, const bool*, int64_t, int64_t,
                                  double, int64_t, double, double*, int64_t*, int64_t, int64_t);
template void backward_cpu<float>(const float*, const float*, const bool*, const bool*, int64_t,
                                  int64_t, double, const int64_t*, float*, int64_t, int64_t);
template void backward_cpu<double>(const double*, const double*, const bool*, const bool*,
                                   int64_t, int64_t, double, const int64_t*, double*, int64_t,
                                   int64_t);

}  // namespace stg::sinkhorn
