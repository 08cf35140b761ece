// CUDA implementations of stg::sinkhorn and stg::sinkhorn_backward: input checks, allocation and
// launch; the kernels are in sinkhorn_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "../../common/op_checks.h"
#include "sinkhorn_kernels.cuh"

namespace stg::sinkhorn {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

void check_problem(const char* op, const at::Tensor& P, const at::Tensor& word_mask,
                   const at::Tensor& frame_mask, double eps) {
  TORCH_CHECK(P.is_cuda(), op, ": P must be a CUDA tensor, got device ", P.device());
  checks::check_sinkhorn(P, word_mask, frame_mask, eps, 0, 0.0);
  TORCH_CHECK(P.size(0) <= kIntMax && P.size(1) <= kIntMax && P.size(2) <= kIntMax, op,
              ": P is too large, got ", P.sizes());
}

size_t device_shared_limit(const at::Tensor& tensor) {
  size_t bytes = 0;
  C10_CUDA_CHECK(max_shared_bytes(tensor.get_device(), &bytes));
  return bytes;
}

void check_placement(const char* op, Placement placement, int64_t K, int64_t U) {
  TORCH_CHECK(placement != Placement::kTooLarge, op, ": K + U = ", K + U,
              " is too large: the per-row and per-column vectors of one matrix must fit in the "
              "shared memory of one thread block");
}

std::tuple<at::Tensor, at::Tensor> sinkhorn_cuda(const at::Tensor& P_in,
                                                 const at::Tensor& word_mask_in,
                                                 const at::Tensor& frame_mask_in, double eps,
                                                 int64_t iters, double tol) {
  check_problem("sinkhorn", P_in, word_mask_in, frame_mask_in, eps);
  TORCH_CHECK(iters >= 0 && iters <= checks::kMaxSinkhornIters, "sinkhorn: iters must be in [0, ",
              checks::kMaxSinkhornIters, "], got ", iters);
  const c10::cuda::CUDAGuard device_guard(P_in.device());
  const at::Tensor P = P_in.contiguous();
  const at::Tensor word_mask = word_mask_in.contiguous();
  const at::Tensor frame_mask = frame_mask_in.contiguous();
  const int64_t B = P.size(0), K = P.size(1), U = P.size(2);
  at::Tensor log_q = at::empty(P.sizes(), P.options());
  at::Tensor n_iter = at::empty({B}, P.options().dtype(at::kLong));
  if (B == 0) return {log_q, n_iter};

  const size_t shared_limit = device_shared_limit(P);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "sinkhorn_cuda", [&] {
    const Placement placement = forward_placement<scalar_t>(K, U, shared_limit);
    check_placement("sinkhorn", placement, K, U);
    C10_CUDA_CHECK(launch_forward<scalar_t>(
        P.data_ptr<scalar_t>(), word_mask.data_ptr<bool>(), frame_mask.data_ptr<bool>(), B,
        static_cast<int>(K), static_cast<int>(U), eps,
        static_cast<int>(iters), static_cast<scalar_t>(tol), log_q.data_ptr<scalar_t>(),
        n_iter.data_ptr<int64_t>(), placement, stream));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {log_q, n_iter};
}

at::Tensor sinkhorn_backward_cuda(const at::Tensor& grad_log_q_in, const at::Tensor& P_in,
                                  const at::Tensor& word_mask_in,
                                  const at::Tensor& frame_mask_in, double eps,
                                  const at::Tensor& n_iter_in) {
  check_problem("sinkhorn_backward", P_in, word_mask_in, frame_mask_in, eps);
  TORCH_CHECK(grad_log_q_in.device() == P_in.device(), "sinkhorn_backward: grad_log_q must be on ",
              P_in.device(), " like P, got ", grad_log_q_in.device());
  TORCH_CHECK(grad_log_q_in.scalar_type() == P_in.scalar_type(),
              "sinkhorn_backward: grad_log_q must have P's dtype ", P_in.scalar_type(), ", got ",
              grad_log_q_in.scalar_type());
  TORCH_CHECK(grad_log_q_in.sizes() == P_in.sizes(),
              "sinkhorn_backward: grad_log_q must have P's shape ", P_in.sizes(), ", got ",
              grad_log_q_in.sizes());
  const int64_t B = P_in.size(0), K = P_in.size(1), U = P_in.size(2);
  TORCH_CHECK(n_iter_in.device() == P_in.device(), "sinkhorn_backward: n_iter must be on ",
              P_in.device(), " like P, got ", n_iter_in.device());
  TORCH_CHECK(n_iter_in.scalar_type() == at::kLong, "sinkhorn_backward: n_iter must be int64, got ",
              n_iter_in.scalar_type());
  TORCH_CHECK(n_iter_in.dim() == 1 && n_iter_in.size(0) == B,
              "sinkhorn_backward: n_iter must have shape [B] = [", B, "], got ", n_iter_in.sizes());

  const c10::cuda::CUDAGuard device_guard(P_in.device());
  const at::Tensor grad_log_q = grad_log_q_in.contiguous();
  const at::Tensor P = P_in.contiguous();
  const at::Tensor word_mask = word_mask_in.contiguous();
  const at::Tensor frame_mask = frame_mask_in.contiguous();
  const at::Tensor n_iter = n_iter_in.contiguous();
  at::Tensor grad_P = at::empty(P.sizes(), P.options());
  if (B == 0) return grad_P;

  // The iteration histories are sized by the largest count (one device-to-host copy).
  const auto [fewest, most] = at::aminmax(n_iter);
  const int64_t min_iters = fewest.item<int64_t>();
  const int64_t history_len = most.item<int64_t>();
  TORCH_CHECK(min_iters >= 0, "sinkhorn_backward: n_iter must be non-negative, got ", min_iters);
  TORCH_CHECK(history_len <= checks::kMaxSinkhornIters, "sinkhorn_backward: n_iter must be <= ",
              checks::kMaxSinkhornIters, ", got ", history_len);
  at::Tensor row_lse_history = at::empty({B, history_len, K}, P.options());
  at::Tensor col_lse_history = at::empty({B, history_len, U}, P.options());

  const size_t shared_limit = device_shared_limit(P);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "sinkhorn_backward_cuda", [&] {
    const Placement placement = backward_placement<scalar_t>(K, U, shared_limit);
    check_placement("sinkhorn_backward", placement, K, U);
    at::Tensor log_kernel_workspace =
        placement == Placement::kGlobal ? at::empty(P.sizes(), P.options()) : at::Tensor();
    C10_CUDA_CHECK(launch_backward<scalar_t>(
        grad_log_q.data_ptr<scalar_t>(), P.data_ptr<scalar_t>(), word_mask.data_ptr<bool>(),
        frame_mask.data_ptr<bool>(), B, static_cast<int>(K), static_cast<int>(U),
        eps, n_iter.data_ptr<int64_t>(), static_cast<int>(history_len),
        row_lse_history.data_ptr<scalar_t>(), col_lse_history.data_ptr<scalar_t>(),
        log_kernel_workspace.defined() ? log_kernel_workspace.data_ptr<scalar_t>() : nullptr,
        grad_P.data_ptr<scalar_t>(), placement, stream));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_P;
}

}  // namespace
}  // namespace stg::sinkhorn

TORCH_LIBRARY_IMPL(stg, CUDA, m) {
  m.impl("sinkhorn", &stg::sinkhorn::sinkhorn_cuda);
  m.impl("sinkhorn_backward", &stg::sinkhorn::sinkhorn_backward_cuda);
}
