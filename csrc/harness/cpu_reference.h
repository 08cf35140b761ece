// Plain C++ references for the CUDA harness, templated on the arithmetic type: double gives the
// ground truth, float gives a same-precision run whose error calibrates the tolerances. They
// follow stg_cli/ops/reference.py; the gradients are written from the chain rule independently of
// the kernels (softmax weights recomputed from fresh log-sum-exps, not from stored ones).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace stg::harness {

using Mask = std::vector<unsigned char>;

template <typename T>
constexpr T minus_infinity() {
  return -std::numeric_limits<T>::infinity();
}

// log Σ exp(values[i]) over the entries with keep[i]; -inf when none is kept.
template <typename T>
T masked_logsumexp(const std::vector<T>& values, const std::vector<bool>& keep) {
  T peak = minus_infinity<T>();
  for (size_t i = 0; i < values.size(); ++i) {
    if (keep[i]) peak = std::max(peak, values[i]);
  }
  if (peak == minus_infinity<T>()) return peak;
  T total = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (keep[i]) total += std::exp(values[i] - peak);
  }
  return peak + std::log(total);
}

// One Sinkhorn problem: P[B,K,U] and masks; iterations capped per matrix.
struct SinkhornShape {
  int B, K, U;
};

template <typename T>
struct SinkhornPotentials {
  std::vector<std::vector<T>> f, g;  // f[t][k], g[t][u] for t = 0..n (t = 0: initial zeros)
};

// The potentials of every iteration of one matrix b, stopping as the reference does.
template <typename T>
SinkhornPotentials<T> sinkhorn_potentials(const std::vector<T>& P, const Mask& word_mask,
                                          const Mask& frame_mask, SinkhornShape shape, int b,
                                          T eps, int iters, T tol) {
  const int K = shape.K, U = shape.U;
  const T* P_b = P.data() + static_cast<size_t>(b) * K * U;
  const unsigned char* words = word_mask.data() + static_cast<size_t>(b) * K;
  const unsigned char* frames = frame_mask.data() + static_cast<size_t>(b) * U;
  int k_valid = 0, u_valid = 0;
  for (int k = 0; k < K; ++k) k_valid += words[k] ? 1 : 0;
  for (int u = 0; u < U; ++u) u_valid += frames[u] ? 1 : 0;
  const T log_a = -std::log(static_cast<T>(std::max(k_valid, 1)));
  const T log_b = -std::log(static_cast<T>(std::max(u_valid, 1)));

  std::vector<T> f(K), g(U);
  for (int k = 0; k < K; ++k) f[k] = words[k] ? T(0) : minus_infinity<T>();
  for (int u = 0; u < U; ++u) g[u] = frames[u] ? T(0) : minus_infinity<T>();
  SinkhornPotentials<T> history{{f}, {g}};
  if (k_valid == 0 || u_valid == 0) return history;

  std::vector<bool> keep_u(U), keep_k(K);
  for (int u = 0; u < U; ++u) keep_u[u] = frames[u] != 0;
  for (int k = 0; k < K; ++k) keep_k[k] = words[k] != 0;
  std::vector<T> row(U), column(K), row_lse(K);
  for (int step = 0; step < iters; ++step) {
    for (int k = 0; k < K; ++k) {
      if (!words[k]) continue;
      for (int u = 0; u < U; ++u) row[u] = P_b[k * U + u] / eps + g[u];
      row_lse[k] = masked_logsumexp(row, keep_u);
    }
    if (tol > 0 && step > 0) {
      T error = 0;
      for (int k = 0; k < K; ++k) {
        if (words[k]) error += std::fabs(std::exp(f[k] + row_lse[k]) - std::exp(log_a));
      }
      if (!(error >= tol)) break;
    }
    for (int k = 0; k < K; ++k) {
      if (words[k]) f[k] = log_a - row_lse[k];
    }
    for (int u = 0; u < U; ++u) {
      if (!frames[u]) continue;
      for (int k = 0; k < K; ++k) column[k] = P_b[k * U + u] / eps + f[k];
      g[u] = log_b - masked_logsumexp(column, keep_k);
    }
    history.f.push_back(f);
    history.g.push_back(g);
  }
  return history;
}

// log_q[B,K,U] and n_iter[B]; iters[b] caps matrix b.
template <typename T>
void sinkhorn_forward(const std::vector<T>& P, const Mask& word_mask, const Mask& frame_mask,
                      SinkhornShape shape, T eps, const std::vector<int>& iters, T tol,
                      std::vector<T>& log_q, std::vector<int64_t>& n_iter) {
  const int K = shape.K, U = shape.U;
  log_q.assign(static_cast<size_t>(shape.B) * K * U, T(0));
  n_iter.assign(shape.B, 0);
  for (int b = 0; b < shape.B; ++b) {
    const auto history =
        sinkhorn_potentials(P, word_mask, frame_mask, shape, b, eps, iters[b], tol);
    n_iter[b] = static_cast<int64_t>(history.f.size()) - 1;
    const auto& f = history.f.back();
    const auto& g = history.g.back();
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        const size_t at = (static_cast<size_t>(b) * K + k) * U + u;
        const bool valid = word_mask[static_cast<size_t>(b) * K + k] &&
                           frame_mask[static_cast<size_t>(b) * U + u];
        log_q[at] = valid ? P[at] / eps + f[k] + g[u] : minus_infinity<T>();
      }
    }
  }
}

// grad_P[B,K,U] of Σ grad_log_q ⊙ log_q for n_iter[b] unrolled iterations (no stopping test).
template <typename T>
std::vector<T> sinkhorn_backward(const std::vector<T>& grad_log_q, const std::vector<T>& P,
                                 const Mask& word_mask, const Mask& frame_mask,
                                 SinkhornShape shape, T eps, const std::vector<int64_t>& n_iter) {
  const int K = shape.K, U = shape.U;
  std::vector<T> grad_P(static_cast<size_t>(shape.B) * K * U, T(0));
  for (int b = 0; b < shape.B; ++b) {
    const unsigned char* words = word_mask.data() + static_cast<size_t>(b) * K;
    const unsigned char* frames = frame_mask.data() + static_cast<size_t>(b) * U;
    const auto history = sinkhorn_potentials(P, word_mask, frame_mask, shape, b, eps,
                                             static_cast<int>(n_iter[b]), T(0));
    const int n = static_cast<int>(history.f.size()) - 1;
    const T* P_b = P.data() + static_cast<size_t>(b) * K * U;
    const T* G = grad_log_q.data() + static_cast<size_t>(b) * K * U;
    auto valid = [&](int k, int u) { return words[k] && frames[u]; };
    auto log_kernel = [&](int k, int u) { return P_b[k * U + u] / eps; };

    std::vector<T> grad_kernel(static_cast<size_t>(K) * U, T(0)), grad_f(K, T(0)), grad_g(U, T(0));
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        if (!valid(k, u)) continue;
        grad_kernel[k * U + u] = G[k * U + u];
        grad_f[k] += G[k * U + u];
        grad_g[u] += G[k * U + u];
      }
    }
    std::vector<bool> keep_u(U), keep_k(K);
    for (int u = 0; u < U; ++u) keep_u[u] = frames[u] != 0;
    for (int k = 0; k < K; ++k) keep_k[k] = words[k] != 0;
    std::vector<T> row(U), column(K);
    for (int t = n; t >= 1; --t) {
      const auto& f = history.f[t];
      const auto& g_previous = history.g[t - 1];
      // g_t[u] = log b - LSE_k(log K[k,u] + f_t[k]): column softmax weights.
      std::vector<T> new_grad_f(K, T(0));
      for (int u = 0; u < U; ++u) {
        if (!frames[u]) continue;
        for (int k = 0; k < K; ++k) column[k] = log_kernel(k, u) + f[k];
        const T lse = masked_logsumexp(column, keep_k);
        for (int k = 0; k < K; ++k) {
          if (!words[k]) continue;
          const T weight = std::exp(column[k] - lse);
          grad_kernel[k * U + u] -= grad_g[u] * weight;
          new_grad_f[k] -= grad_g[u] * weight;
        }
      }
      for (int k = 0; k < K; ++k) grad_f[k] += new_grad_f[k];
      // f_t[k] = log a - LSE_u(log K[k,u] + g_{t-1}[u]): row softmax weights.
      std::vector<T> new_grad_g(U, T(0));
      for (int k = 0; k < K; ++k) {
        if (!words[k]) continue;
        for (int u = 0; u < U; ++u) row[u] = log_kernel(k, u) + g_previous[u];
        const T lse = masked_logsumexp(row, keep_u);
        for (int u = 0; u < U; ++u) {
          if (!frames[u]) continue;
          const T weight = std::exp(row[u] - lse);
          grad_kernel[k * U + u] -= grad_f[k] * weight;
          new_grad_g[u] -= grad_f[k] * weight;
        }
      }
      grad_g = new_grad_g;
      std::fill(grad_f.begin(), grad_f.end(), T(0));
    }
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        grad_P[(static_cast<size_t>(b) * K + k) * U + u] =
            valid(k, u) ? grad_kernel[k * U + u] / eps : T(0);
      }
    }
  }
  return grad_P;
}

struct AttentionShape {
  int B, M, L, D;
};

// out[B,M,D], lse[B,M], probs[B,M,L] of masked softmax attention (fully masked row: zeros).
template <typename T>
void xattn_forward(const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                   const Mask& key_mask, AttentionShape s, T scale, std::vector<T>& out,
                   std::vector<T>& lse, std::vector<T>& probs) {
  out.assign(static_cast<size_t>(s.B) * s.M * s.D, T(0));
  lse.assign(static_cast<size_t>(s.B) * s.M, T(0));
  probs.assign(static_cast<size_t>(s.B) * s.M * s.L, T(0));
  std::vector<T> logits(s.L);
  std::vector<bool> keep(s.L);
  for (int b = 0; b < s.B; ++b) {
    for (int j = 0; j < s.L; ++j) keep[j] = key_mask[static_cast<size_t>(b) * s.L + j] != 0;
    for (int i = 0; i < s.M; ++i) {
      const T* query = q.data() + (static_cast<size_t>(b) * s.M + i) * s.D;
      for (int j = 0; j < s.L; ++j) {
        const T* key = k.data() + (static_cast<size_t>(b) * s.L + j) * s.D;
        T dot = 0;
        for (int d = 0; d < s.D; ++d) dot += query[d] * key[d];
        logits[j] = dot * scale;
      }
      const T row_lse = masked_logsumexp(logits, keep);
      if (row_lse == minus_infinity<T>()) continue;
      lse[static_cast<size_t>(b) * s.M + i] = row_lse;
      T* row_out = out.data() + (static_cast<size_t>(b) * s.M + i) * s.D;
      for (int j = 0; j < s.L; ++j) {
        if (!keep[j]) continue;
        const T p = std::exp(logits[j] - row_lse);
        probs[(static_cast<size_t>(b) * s.M + i) * s.L + j] = p;
        const T* value = v.data() + (static_cast<size_t>(b) * s.L + j) * s.D;
        for (int d = 0; d < s.D; ++d) row_out[d] += p * value[d];
      }
    }
  }
}

// Gradients of Σ grad_out ⊙ out + Σ grad_probs ⊙ probs (grad_probs may be empty).
template <typename T>
void xattn_backward(const std::vector<T>& grad_out, const std::vector<T>& grad_probs,
                    const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                    const Mask& key_mask, AttentionShape s, T scale, std::vector<T>& grad_q,
                    std::vector<T>& grad_k, std::vector<T>& grad_v) {
  std::vector<T> out, lse, probs;
  xattn_forward(q, k, v, key_mask, s, scale, out, lse, probs);
  grad_q.assign(q.size(), T(0));
  grad_k.assign(k.size(), T(0));
  grad_v.assign(v.size(), T(0));
  std::vector<T> grad_p(s.L), grad_logits(s.L);
  for (int b = 0; b < s.B; ++b) {
    for (int i = 0; i < s.M; ++i) {
      const size_t row = static_cast<size_t>(b) * s.M + i;
      const T* p = probs.data() + row * s.L;
      const T* g_out = grad_out.data() + row * s.D;
      // Masked keys take no part (their rows of k, v and grad_probs may hold anything).
      T row_dot = 0;
      for (int j = 0; j < s.L; ++j) {
        if (!key_mask[static_cast<size_t>(b) * s.L + j]) continue;
        const T* value = v.data() + (static_cast<size_t>(b) * s.L + j) * s.D;
        T dot = 0;
        for (int d = 0; d < s.D; ++d) dot += g_out[d] * value[d];
        if (!grad_probs.empty()) dot += grad_probs[row * s.L + j];
        grad_p[j] = dot;
        row_dot += p[j] * dot;
      }
      const T* query = q.data() + row * s.D;
      for (int j = 0; j < s.L; ++j) {
        if (!key_mask[static_cast<size_t>(b) * s.L + j]) continue;
        grad_logits[j] = p[j] * (grad_p[j] - row_dot);
        const size_t key_row = (static_cast<size_t>(b) * s.L + j) * s.D;
        for (int d = 0; d < s.D; ++d) {
          grad_q[row * s.D + d] += scale * grad_logits[j] * k[key_row + d];
          grad_k[key_row + d] += scale * grad_logits[j] * query[d];
          grad_v[key_row + d] += p[j] * g_out[d];
        }
      }
    }
  }
}

}  // namespace stg::harness
