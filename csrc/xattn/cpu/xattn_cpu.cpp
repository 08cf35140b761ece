// CPU kernels of the fused masked softmax attention (see xattn.h).
//
// Query rows are processed in tiles of kTile rows of one batch entry: each key and value
// vector is loaded once per tile and used for kTile accumulators held in registers, so the
// [L, D] keys and values are streamed from cache M / kTile times instead of M times. The
// logits of a tile ([kTile, L]) are the only intermediate; nothing of size [B, M, L, D]
// exists, and [B, M, L] only when probabilities are asked for.
#include "../xattn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../../common/simd_math.h"
#include "../../common/simd_vec.h"

namespace stg::xattn {
namespace {

constexpr int64_t kTile = 8;

// dots[r * L + j] = rows[r] · keys[j] for the valid keys j (others untouched).
template <int64_t TM, typename T>
inline void tile_dots(const T* rows, const T* keys, const bool* key_mask, int64_t L, int64_t D,
                      T* dots) {
  using namespace simd;
  const int64_t width = Vec<T>::width;
  const int64_t vector_end = D - D % width;
  for (int64_t j = 0; j < L; ++j) {
    if (!key_mask[j]) continue;
    const T* key = keys + j * D;
    vec_t<T> acc[TM];
    for (int64_t r = 0; r < TM; ++r) acc[r] = zero<T>();
    for (int64_t d = 0; d < vector_end; d += width) {
      const vec_t<T> key_chunk = load(key + d);
      for (int64_t r = 0; r < TM; ++r) acc[r] += load(rows + r * D + d) * key_chunk;
    }
    for (int64_t r = 0; r < TM; ++r) {
      T total = horizontal_sum<T>(acc[r]);
      for (int64_t d = vector_end; d < D; ++d) total += rows[r * D + d] * key[d];
      dots[r * L + j] = total;
    }
  }
}

// outs[r] = Σ_j weights[r * L + j] · vectors[j]; weights of masked keys must be zero.
template <int64_t TM, typename T>
inline void tile_combine(const T* weights, const T* vectors, const bool* key_mask, int64_t L,
                         int64_t D, T* outs) {
  using namespace simd;
  const int64_t width = Vec<T>::width;
  const int64_t vector_end = D - D % width;
  for (int64_t d = 0; d < vector_end; d += width) {
    vec_t<T> acc[TM];
    for (int64_t r = 0; r < TM; ++r) acc[r] = zero<T>();
    for (int64_t j = 0; j < L; ++j) {
      if (!key_mask[j]) continue;
      const vec_t<T> chunk = load(vectors + j * D + d);
      for (int64_t r = 0; r < TM; ++r) acc[r] += weights[r * L + j] * chunk;
    }
    for (int64_t r = 0; r < TM; ++r) store(outs + r * D + d, acc[r]);
  }
  for (int64_t d = vector_end; d < D; ++d) {
    for (int64_t r = 0; r < TM; ++r) {
      T total = 0;
      for (int64_t j = 0; j < L; ++j) {
        if (key_mask[j]) total += weights[r * L + j] * vectors[j * D + d];
      }
      outs[r * D + d] = total;
    }
  }
}

// targets[j] += Σ_r weights[r * L + j] · rows[r] for the valid keys j.
template <int64_t TM, typename T>
inline void tile_accumulate(const T* weights, const T* rows, const bool* key_mask, int64_t L,
                            int64_t D, T* targets) {
  using namespace simd;
  const int64_t width = Vec<T>::width;
  const int64_t vector_end = D - D % width;
  for (int64_t j = 0; j < L; ++j) {
    if (!key_mask[j]) continue;
    T* target = targets + j * D;
    for (int64_t d = 0; d < vector_end; d += width) {
      vec_t<T> acc = load(target + d);
      for (int64_t r = 0; r < TM; ++r) acc += weights[r * L + j] * load(rows + r * D + d);
      store(target + d, acc);
    }
    for (int64_t d = vector_end; d < D; ++d) {
      for (int64_t r = 0; r < TM; ++r) target[d] += weights[r * L + j] * rows[r * D + d];
    }
  }
}

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

template <int64_t TM, typename T>
inline void forward_tile(const T* q, const T* k_b, const T* v_b, const bool* mask_b, int64_t L,
                         int64_t D, T scale, T* out, T* lse, T* probs, T* weights) {
  tile_dots<TM>(q, k_b, mask_b, L, D, weights);
  for (int64_t r = 0; r < TM; ++r) lse[r] = softmax_row(weights + r * L, mask_b, L, scale);
  tile_combine<TM>(weights, v_b, mask_b, L, D, out);
  if (probs) std::copy(weights, weights + TM * L, probs);
}

template <typename T>
STG_SIMD_CLONES void forward_rows(const T* q, const T* k, const T* v, const bool* key_mask,
                                  int64_t M, int64_t L, int64_t D, T scale, T* out, T* lse,
                                  T* probs, int64_t row_begin, int64_t row_end) {
  std::vector<T> weights(kTile * L);
  int64_t row = row_begin;
  while (row < row_end) {
    const int64_t b = row / M;
    const int64_t tile_end = std::min({row_end, (b + 1) * M, row + kTile});
    const T* k_b = k + b * L * D;
    const T* v_b = v + b * L * D;
    const bool* mask_b = key_mask + b * L;
    T* probs_tile = probs ? probs + row * L : nullptr;
    if (tile_end - row == kTile) {
      forward_tile<kTile>(q + row * D, k_b, v_b, mask_b, L, D, scale, out + row * D, lse + row,
                          probs_tile, weights.data());
    } else {
      for (int64_t single = row; single < tile_end; ++single) {
        forward_tile<1>(q + single * D, k_b, v_b, mask_b, L, D, scale, out + single * D,
                        lse + single, probs ? probs + single * L : nullptr, weights.data());
      }
    }
    row = tile_end;
  }
}

template <typename T>
struct BackwardArgs {
  const T* grad_out;
  const T* grad_probs;
  const T* q;
  const T* out;
  const T* lse;
  const T* k_b;
  const T* v_b;
  const bool* mask_b;
  int64_t L;
  int64_t D;
  T scale;
  T* grad_q;
  T* grad_k_b;
  T* grad_v_b;
};

// Rows [row, row + TM) of one batch entry; prob and grad_logit are [TM, L] scratch.
template <int64_t TM, typename T>
inline void backward_tile(const BackwardArgs<T>& a, int64_t row, T* prob, T* grad_logit) {
  const int64_t L = a.L, D = a.D;
  const T* q_rows = a.q + row * D;
  const T* grad_out_rows = a.grad_out + row * D;
  tile_dots<TM>(q_rows, a.k_b, a.mask_b, L, D, prob);
  tile_dots<TM>(grad_out_rows, a.v_b, a.mask_b, L, D, grad_logit);
  bool any_key = false;
  for (int64_t j = 0; j < L; ++j) any_key = any_key || a.mask_b[j];
  for (int64_t r = 0; r < TM; ++r) {
    T* p = prob + r * L;
    T* dp = grad_logit + r * L;
    for (int64_t j = 0; j < L; ++j) {
      p[j] = (a.mask_b[j] && any_key) ? exp_poly(a.scale * p[j] - a.lse[row + r]) : T(0);
      dp[j] = a.mask_b[j] ? dp[j] : T(0);
    }
    // Σ_j P_ij dP_ij: equals dO·O when only the output carries a gradient.
    T row_dot = 0;
    if (a.grad_probs) {
      const T* gp = a.grad_probs + (row + r) * L;
      for (int64_t j = 0; j < L; ++j) {
        dp[j] += a.mask_b[j] ? gp[j] : T(0);
        row_dot += p[j] * dp[j];
      }
    } else {
      const T* o = a.out + (row + r) * D;
      const T* g = grad_out_rows + r * D;
      for (int64_t d = 0; d < D; ++d) row_dot += g[d] * o[d];
    }
    for (int64_t j = 0; j < L; ++j) dp[j] = a.scale * p[j] * (dp[j] - row_dot);
  }
  tile_combine<TM>(grad_logit, a.k_b, a.mask_b, L, D, a.grad_q + row * D);
  tile_accumulate<TM>(grad_logit, q_rows, a.mask_b, L, D, a.grad_k_b);
  tile_accumulate<TM>(prob, grad_out_rows, a.mask_b, L, D, a.grad_v_b);
}

template <typename T>
STG_SIMD_CLONES void backward_batches(const T* grad_out, const T* grad_probs, const T* q,
                                      const T* k, const T* v, const bool* key_mask,
                                      const T* out, const T* lse, int64_t M, int64_t L,
                                      int64_t D, T scale, T* grad_q, T* grad_k, T* grad_v,
                                      int64_t batch_begin, int64_t batch_end) {
  std::vector<T> prob(kTile * L), grad_logit(kTile * L);
  for (int64_t b = batch_begin; b < batch_end; ++b) {
    BackwardArgs<T> args{grad_out,       grad_probs, q, out, lse, k + b * L * D, v + b * L * D,
                         key_mask + b * L, L,        D, scale, grad_q, grad_k + b * L * D,
                         grad_v + b * L * D};
    std::fill(args.grad_k_b, args.grad_k_b + L * D, T(0));
    std::fill(args.grad_v_b, args.grad_v_b + L * D, T(0));
    int64_t row = b * M;
    const int64_t row_end = (b + 1) * M;
    for (; row + kTile <= row_end; row += kTile) {
      backward_tile<kTile>(args, row, prob.data(), grad_logit.data());
    }
    for (; row < row_end; ++row) backward_tile<1>(args, row, prob.data(), grad_logit.data());
  }
}

}  // namespace

template <typename scalar_t>
void forward_cpu(const scalar_t* q, const scalar_t* k, const scalar_t* v, const bool* key_mask,
                 int64_t M, int64_t L, int64_t D, double scale, scalar_t* out, scalar_t* lse,
                 scalar_t* probs, int64_t row_begin, int64_t row_end) {
  forward_rows(q, k, v, key_mask, M, L, D, static_cast<scalar_t>(scale), out, lse, probs,
               row_begin, row_end);
}

template <typename scalar_t>
void backward_cpu(const scalar_t* grad_out, const scalar_t* grad_probs, const scalar_t* q,
                  const scalar_t* k, const scalar_t* v, const bool* key_mask,
                  const scalar_t* out, const scalar_t* lse, int64_t M, int64_t L, int64_t D,
                  double scale, scalar_t* grad_q, scalar_t* grad_k, scalar_t* grad_v,
                  int64_t batch_begin, int64_t batch_end) {
  backward_batches(grad_out, grad_probs, q, k, v, key_mask, out, lse, M, L, D,
                   static_cast<scalar_t>(scale), grad_q, grad_k, grad_v, batch_begin,
                   batch_end);
}

#define STG_INSTANTIATE_XATTN(T)                                                              \
  template void forward_cpu<T>(const T*, const T*, const T*, const bool*, int64_t, int64_t,  \
                               int64_t, double, T*, T*, T*, int64_t, int64_t);               \
  template void backward_cpu<T>(const T*, const T*, const T*, const T*, const T*,            \
                                const bool*, const T*, const T*, int64_t, int64_t, int64_t,  \
                                double, T*, T*, T*, int64_t, int64_t);
STG_INSTANTIATE_XATTN(float)
STG_INSTANTIATE_XATTN(double)
#undef STG_INSTANTIATE_XATTN

}  // namespace stg::xattn
