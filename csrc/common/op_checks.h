// Argument checks shared by the CPU and CUDA entry points. Each failure raises a
// c10::Error (RuntimeError in Python) that names the offending argument.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <initializer_list>

namespace stg::checks {

// The most Sinkhorn iterations one call may run (or one backward may unroll): the backward keeps
// every iteration's potentials, so the count bounds its memory.
constexpr int64_t kMaxSinkhornIters = 10000;

inline void expect_rank(const at::Tensor& t, int64_t rank, const char* name) {
  TORCH_CHECK(t.dim() == rank, name, " must have ", rank, " dimensions, got shape ", t.sizes());
}

inline void expect_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void expect_bool(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kBool, name, " must be a bool mask, got ",
              t.scalar_type());
}

inline void expect_same_dtype(const at::Tensor& t, const at::Tensor& ref, const char* name,
                              const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have the dtype of ", ref_name,
              " (", ref.scalar_type(), "), got ", t.scalar_type());
}

inline void expect_same_device(const at::Tensor& t, const at::Tensor& ref, const char* name,
                               const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device());
}

inline void expect_shape(const at::Tensor& t, std::initializer_list<int64_t> shape,
                         const char* name) {
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), name, " must have shape ",
              at::IntArrayRef(shape), ", got ", t.sizes());
}

inline void check_sinkhorn(const at::Tensor& P, const at::Tensor& word_mask,
                           const at::Tensor& frame_mask, double eps, int64_t iters, double tol) {
  expect_rank(P, 3, "P");
  expect_float(P, "P");
  const int64_t B = P.size(0), K = P.size(1), U = P.size(2);
  expect_bool(word_mask, "word_mask");
  expect_bool(frame_mask, "frame_mask");
  expect_shape(word_mask, {B, K}, "word_mask");
  expect_shape(frame_mask, {B, U}, "frame_mask");
  expect_same_device(word_mask, P, "word_mask", "P");
  expect_same_device(frame_mask, P, "frame_mask", "P");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, "eps must be a positive finite number, got ", eps);
  TORCH_CHECK(iters >= 0 && iters <= kMaxSinkhornIters, "iters must be in [0, ",
              kMaxSinkhornIters, "], got ", iters);
  TORCH_CHECK(std::isfinite(tol) && tol >= 0, "tol must be a finite number >= 0, got ", tol);
}

// n_iter of a backward call: every count in [0, kMaxSinkhornIters]. Reads the values, so only for
// host tensors.
inline void check_iteration_counts(const int64_t* n_iter, int64_t count) {
  for (int64_t b = 0; b < count; ++b) {
    TORCH_CHECK(n_iter[b] >= 0 && n_iter[b] <= kMaxSinkhornIters, "n_iter must be in [0, ",
                kMaxSinkhornIters, "], got ", n_iter[b], " at index ", b);
  }
}

inline void check_xattn(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& key_mask, double scale) {
  expect_rank(q, 3, "q");
  expect_rank(k, 3, "k");
  expect_rank(v, 3, "v");
  const int64_t B = q.size(0), D = q.size(2), L = k.size(1);
  expect_shape(k, {B, L, D}, "k");
  expect_shape(v, {B, L, D}, "v");
  expect_bool(key_mask, "key_mask");
  expect_shape(key_mask, {B, L}, "key_mask");
  expect_same_dtype(k, q, "k", "q");
  expect_same_dtype(v, q, "v", "q");
  expect_same_device(k, q, "k", "q");
  expect_same_device(v, q, "v", "q");
  expect_same_device(key_mask, q, "key_mask", "q");
  TORCH_CHECK(std::isfinite(scale), "scale must be finite, got ", scale);
}

inline void check_xattn_backward(const at::Tensor& grad_out,
                                 const c10::optional<at::Tensor>& grad_probs,
                                 const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_mask, const at::Tensor& out,
                                 const at::Tensor& lse, double scale) {
  check_xattn(q, k, v, key_mask, scale);
  const int64_t B = q.size(0), M = q.size(1), D = q.size(2), L = k.size(1);
  expect_shape(grad_out, {B, M, D}, "grad_out");
  expect_shape(out, {B, M, D}, "out");
  expect_shape(lse, {B, M}, "lse");
  expect_same_device(grad_out, q, "grad_out", "q");
  expect_same_device(out, q, "out", "q");
  expect_same_device(lse, q, "lse", "q");
  if (grad_probs.has_value() && grad_probs->defined()) {
    expect_shape(*grad_probs, {B, M, L}, "grad_probs");
    expect_same_device(*grad_probs, q, "grad_probs", "q");
  }
}

inline void check_rollout(const at::Tensor& layers, const at::Tensor& rows) {
  expect_rank(layers, 4, "layers");
  expect_float(layers, "layers");
  TORCH_CHECK(layers.size(1) >= 1, "layers must hold at least one layer, got shape ",
              layers.sizes());
  TORCH_CHECK(layers.size(2) == layers.size(3), "layers must be square [B, Ly, n, n], got ",
              layers.sizes());
  expect_rank(rows, 1, "rows");
  TORCH_CHECK(rows.scalar_type() == at::kLong, "rows must be int64, got ", rows.scalar_type());
  expect_same_device(rows, layers, "rows", "layers");
}

inline void check_rollout_paper(const at::Tensor& ca2, const at::Tensor& sa,
                                const at::Tensor& ca1, const at::Tensor& word_mask) {
  expect_rank(ca2, 3, "ca2");
  expect_float(ca2, "ca2");
  const int64_t B = ca2.size(0), R = ca2.size(1), W = ca2.size(2);
  expect_shape(sa, {B, W, W}, "sa");
  expect_shape(ca1, {B, W, R}, "ca1");
  expect_shape(word_mask, {B, W}, "word_mask");
  expect_bool(word_mask, "word_mask");
  expect_same_dtype(sa, ca2, "sa", "ca2");
  expect_same_dtype(ca1, ca2, "ca1", "ca2");
  expect_same_device(sa, ca2, "sa", "ca2");
  expect_same_device(ca1, ca2, "ca1", "ca2");
  expect_same_device(word_mask, ca2, "word_mask", "ca2");
}

}  // namespace stg::checks
