// The one translation unit that includes torch/extension.h: operator schemas, the CPU entry
// points (checks, allocation, at::parallel_for over the raw-pointer kernels) and the Python
// module stg_cli._C with its build description.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <string>

#include "common/op_checks.h"
#include "rollout/rollout.h"
#include "sinkhorn/sinkhorn.h"
#include "xattn/xattn.h"

namespace stg {
namespace {

constexpr int64_t kMatrixGrain = 1;

std::tuple<at::Tensor, at::Tensor> sinkhorn_cpu(const at::Tensor& P, const at::Tensor& word_mask,
                                                const at::Tensor& frame_mask, double eps,
                                                int64_t iters, double tol) {
  checks::check_sinkhorn(P, word_mask, frame_mask, eps, iters, tol);
  const auto P_c = P.contiguous();
  const auto wm = word_mask.contiguous();
  const auto fm = frame_mask.contiguous();
  const int64_t B = P.size(0), K = P.size(1), U = P.size(2);
  auto log_q = at::empty_like(P_c);
  auto n_iter = at::empty({B}, P.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "sinkhorn_cpu", [&] {
    const scalar_t* p_ptr = P_c.data_ptr<scalar_t>();
    scalar_t* out_ptr = log_q.data_ptr<scalar_t>();
    int64_t* iter_ptr = n_iter.data_ptr<int64_t>();
    at::parallel_for(0, B, kMatrixGrain, [&](int64_t begin, int64_t end) {
      sinkhorn::forward_cpu<scalar_t>(p_ptr, wm.data_ptr<bool>(), fm.data_ptr<bool>(), K, U, eps,
                                      iters, tol, out_ptr, iter_ptr, begin, end);
    });
  });
  return {log_q, n_iter};
}

at::Tensor sinkhorn_backward_cpu(const at::Tensor& grad_log_q, const at::Tensor& P,
                                 const at::Tensor& word_mask, const at::Tensor& frame_mask,
                                 double eps, const at::Tensor& n_iter) {
  checks::check_sinkhorn(P, word_mask, frame_mask, eps, 0, 0.0);
  checks::expect_shape(grad_log_q, {P.size(0), P.size(1), P.size(2)}, "grad_log_q");
  checks::expect_shape(n_iter, {P.size(0)}, "n_iter");
  TORCH_CHECK(n_iter.scalar_type() == at::kLong, "n_iter must be int64");
  const auto grad_c = grad_log_q.to(P.scalar_type()).contiguous();
  const auto P_c = P.contiguous();
  const auto wm = word_mask.contiguous();
  const auto fm = frame_mask.contiguous();
  const auto iters_c = n_iter.contiguous();
  checks::check_iteration_counts(iters_c.data_ptr<int64_t>(), P.size(0));
  const int64_t B = P.size(0), K = P.size(1), U = P.size(2);
  auto grad_P = at::empty_like(P_c);
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "sinkhorn_backward_cpu", [&] {
    at::parallel_for(0, B, kMatrixGrain, [&](int64_t begin, int64_t end) {
      sinkhorn::backward_cpu<scalar_t>(grad_c.data_ptr<scalar_t>(), P_c.data_ptr<scalar_t>(),
                                       wm.data_ptr<bool>(), fm.data_ptr<bool>(), K, U, eps,
                                       iters_c.data_ptr<int64_t>(), grad_P.data_ptr<scalar_t>(),
                                       begin, end);
    });
  });
  return grad_P;
}

// Rows per task of a row pass over [rows, L] matrices: about 32 K elements.
int64_t row_grain(int64_t L) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(L, 1));
}

// The products run through at::bmm (MKL); one native pass per row does the masked softmax.
std::tuple<at::Tensor, at::Tensor, at::Tensor> xattn_cpu(const at::Tensor& q,
                                                         const at::Tensor& k,
                                                         const at::Tensor& v,
                                                         const at::Tensor& key_mask,
                                                         double scale, bool return_probs) {
  checks::check_xattn(q, k, v, key_mask, scale);
  checks::expect_float(q, "q");
  const auto q_c = q.contiguous();
  const auto k_c = k.contiguous();
  const auto v_c = v.contiguous();
  const auto mask_c = key_mask.contiguous();
  const int64_t B = q.size(0), M = q.size(1), L = k.size(1);
  auto lse = at::empty({B, M}, q.options());
  auto probs = at::bmm(q_c, k_c.transpose(1, 2));
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "xattn_cpu", [&] {
    at::parallel_for(0, B * M, row_grain(L), [&](int64_t begin, int64_t end) {
      xattn::softmax_rows_cpu<scalar_t>(probs.data_ptr<scalar_t>(), mask_c.data_ptr<bool>(), M, L,
                                        scale, lse.data_ptr<scalar_t>(), begin, end);
    });
  });
  auto out = at::bmm(probs, v_c);
  return {out, lse, return_probs ? probs : at::empty({0}, q.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> xattn_backward_cpu(
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_probs, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_mask, const at::Tensor& out,
    const at::Tensor& lse, double scale) {
  checks::check_xattn_backward(grad_out, grad_probs, q, k, v, key_mask, out, lse, scale);
  checks::expect_float(q, "q");
  const auto dtype = q.scalar_type();
  const auto grad_out_c = grad_out.to(dtype).contiguous();
  const bool has_grad_probs = grad_probs.has_value() && grad_probs->defined();
  const auto grad_probs_c = has_grad_probs ? grad_probs->to(dtype).contiguous() : at::Tensor();
  const auto q_c = q.contiguous();
  const auto k_c = k.contiguous();
  const auto v_c = v.contiguous();
  const auto mask_c = key_mask.contiguous();
  const auto lse_c = lse.to(dtype).contiguous();
  const int64_t B = q.size(0), M = q.size(1), L = k.size(1);
  // P is recomputed from lse (the forward keeps no [B, M, L] tensor for the backward).
  auto probs = at::bmm(q_c, k_c.transpose(1, 2));
  auto grad_logits = at::bmm(grad_out_c, v_c.transpose(1, 2));
  AT_DISPATCH_FLOATING_TYPES(dtype, "xattn_backward_cpu", [&] {
    const scalar_t* grad_probs_ptr = has_grad_probs ? grad_probs_c.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, B * M, row_grain(L), [&](int64_t begin, int64_t end) {
      xattn::softmax_backward_rows_cpu<scalar_t>(
          probs.data_ptr<scalar_t>(), grad_logits.data_ptr<scalar_t>(), grad_probs_ptr,
          mask_c.data_ptr<bool>(), lse_c.data_ptr<scalar_t>(), M, L, scale, begin, end);
    });
  });
  return {at::bmm(grad_logits, k_c), at::bmm(grad_logits.transpose(1, 2), q_c),
          at::bmm(probs.transpose(1, 2), grad_out_c)};
}

at::Tensor rollout_cpu(const at::Tensor& layers, const at::Tensor& rows) {
  checks::check_rollout(layers, rows);
  const int64_t B = layers.size(0), n_layers = layers.size(1), n = layers.size(2);
  const auto rows_c = rows.contiguous();
  if (rows_c.numel() > 0) {
    const auto lowest = rows_c.min().item<int64_t>();
    const auto highest = rows_c.max().item<int64_t>();
    TORCH_CHECK(lowest >= 0 && highest < n, "rows must index tokens in [0, ", n, "), got [",
                lowest, ", ", highest, "]");
  }
  const auto layers_c = layers.contiguous();
  auto out = at::empty({B, rows_c.numel(), n}, layers.options());
  AT_DISPATCH_FLOATING_TYPES(layers.scalar_type(), "rollout_cpu", [&] {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      rollout::rollout_cpu<scalar_t>(layers_c.data_ptr<scalar_t>(), rows_c.data_ptr<int64_t>(),
                                     n_layers, n, rows_c.numel(), out.data_ptr<scalar_t>(),
                                     begin, end);
    });
  });
  return out;
}

at::Tensor rollout_paper_cpu(const at::Tensor& ca2, const at::Tensor& sa, const at::Tensor& ca1,
                             const at::Tensor& word_mask) {
  checks::check_rollout_paper(ca2, sa, ca1, word_mask);
  const int64_t B = ca2.size(0), R = ca2.size(1), W = ca2.size(2);
  const auto ca2_c = ca2.contiguous();
  const auto sa_c = sa.contiguous();
  const auto ca1_c = ca1.contiguous();
  const auto mask_c = word_mask.contiguous();
  auto heat = at::empty({B, R}, ca2.options());
  AT_DISPATCH_FLOATING_TYPES(ca2.scalar_type(), "rollout_paper_cpu", [&] {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      rollout::paper_cpu<scalar_t>(ca2_c.data_ptr<scalar_t>(), sa_c.data_ptr<scalar_t>(),
                                   ca1_c.data_ptr<scalar_t>(), mask_c.data_ptr<bool>(), R, W,
                                   heat.data_ptr<scalar_t>(), begin, end);
    });
  });
  return heat;
}

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef STG_WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = std::string(STG_CUDA_ARCHS);
#else
  info["cuda"] = false;
  info["cuda_archs"] = std::string();
#endif
  info["compiler"] = std::string(__VERSION__);
  info["torch_version"] = std::string(STG_TORCH_VERSION);
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  return info;
}

}  // namespace

TORCH_LIBRARY(stg, m) {
  m.def("sinkhorn(Tensor P, Tensor word_mask, Tensor frame_mask, float eps, int iters, float tol)"
        " -> (Tensor, Tensor)");
  m.def("sinkhorn_backward(Tensor grad_log_q, Tensor P, Tensor word_mask, Tensor frame_mask,"
        " float eps, Tensor n_iter) -> Tensor");
  m.def("xattn(Tensor q, Tensor k, Tensor v, Tensor key_mask, float scale, bool return_probs)"
        " -> (Tensor, Tensor, Tensor)");
  m.def("xattn_backward(Tensor grad_out, Tensor? grad_probs, Tensor q, Tensor k, Tensor v,"
        " Tensor key_mask, Tensor out, Tensor lse, float scale) -> (Tensor, Tensor, Tensor)");
  m.def("rollout(Tensor layers, Tensor rows) -> Tensor");
  m.def("rollout_paper(Tensor ca2, Tensor sa, Tensor ca1, Tensor word_mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(stg, CPU, m) {
  m.impl("sinkhorn", &sinkhorn_cpu);
  m.impl("sinkhorn_backward", &sinkhorn_backward_cpu);
  m.impl("xattn", &xattn_cpu);
  m.impl("xattn_backward", &xattn_backward_cpu);
  m.impl("rollout", &rollout_cpu);
  m.impl("rollout_paper", &rollout_paper_cpu);
}

}  // namespace stg

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "stg native operators (registered as torch.ops.stg.*)";
  module.def("build_info", &stg::build_info, "How this extension was built.");
}
