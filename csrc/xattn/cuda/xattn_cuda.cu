// CUDA implementations of stg::xattn and stg::xattn_backward: input checks, allocation and
// launch; the kernels are in xattn_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "../../common/op_checks.h"
#include "xattn_kernels.cuh"

namespace stg::xattn {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// The CUDA type with the same layout as an ATen scalar type.
template <typename T>
struct DeviceScalar {
  using type = T;
};
template <>
struct DeviceScalar<at::Half> {
  using type = __half;
};
template <>
struct DeviceScalar<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
typename DeviceScalar<T>::type* device_ptr(const at::Tensor& tensor) {
  return reinterpret_cast<typename DeviceScalar<T>::type*>(tensor.data_ptr<T>());
}

at::ScalarType lse_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// Checks q[B,M,D], k[B,L,D], v[B,L,D], key_mask[B,L] and the kernel limits.
void check_attention(const char* op, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, const at::Tensor& key_mask, double scale) {
  TORCH_CHECK(q.is_cuda(), op, ": q must be a CUDA tensor, got device ", q.device());
  checks::check_xattn(q, k, v, key_mask, scale);
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": q must be float16, bfloat16, float32 or float64, got ", dtype);
  const int64_t B = q.size(0), M = q.size(1), D = q.size(2), L = k.size(1);
  TORCH_CHECK(D <= kMaxHeadDim, op, ": the feature size D = ", D, " exceeds the kernel's limit ",
              kMaxHeadDim);
  // The kernels index rows and keys with int (the key loop steps by a chunk past L).
  TORCH_CHECK(M <= kIntMax && L <= kIntMax - kKeyChunk, op,
              ": too many query rows or keys for the kernel, got q of shape ", q.sizes(),
              " and k of shape ", k.sizes());
  // Grids are one-dimensional: blocks per batch entry times B must stay below 2^31.
  const int64_t row_blocks = (M + kRowsPerBlock<double> - 1) / kRowsPerBlock<double>;
  const int64_t key_blocks = ((L + kKeysPerBlock - 1) / kKeysPerBlock) *
                             ((D + kKeyThreads - 1) / kKeyThreads);
  TORCH_CHECK(B * row_blocks <= kIntMax && B * key_blocks <= kIntMax, op,
              ": the problem is too large for one launch, got q of shape ", q.sizes(),
              " and k of shape ", k.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> xattn_cuda(const at::Tensor& q_in,
                                                          const at::Tensor& k_in,
                                                          const at::Tensor& v_in,
                                                          const at::Tensor& key_mask_in,
                                                          double scale, bool return_probs) {
  check_attention("xattn", q_in, k_in, v_in, key_mask_in, scale);
  const c10::cuda::CUDAGuard device_guard(q_in.device());
  const at::Tensor q = q_in.contiguous();
  const at::Tensor k = k_in.contiguous();
  const at::Tensor v = v_in.contiguous();
  const at::Tensor key_mask = key_mask_in.contiguous();
  const int64_t B = q.size(0), M = q.size(1), D = q.size(2), L = k.size(1);

  at::Tensor out = at::empty({B, M, D}, q.options());
  at::Tensor lse = at::empty({B, M}, q.options().dtype(lse_dtype(q.scalar_type())));
  at::Tensor probs = return_probs ? at::empty({B, M, L}, q.options()) : at::empty({0}, q.options());
  if (B == 0 || M == 0) return {out, lse, probs};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "xattn_cuda", [&] {
    using device_t = typename DeviceScalar<scalar_t>::type;
    using acc_t = acc_type<device_t>;
    launch_forward<device_t>(device_ptr<scalar_t>(q), device_ptr<scalar_t>(k),
                             device_ptr<scalar_t>(v), key_mask.data_ptr<bool>(), B,
                             static_cast<int>(M), static_cast<int>(L), static_cast<int>(D),
                             static_cast<acc_t>(scale), device_ptr<scalar_t>(out),
                             lse.data_ptr<acc_t>(),
                             return_probs ? device_ptr<scalar_t>(probs) : nullptr, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, lse, probs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> xattn_backward_cuda(
    const at::Tensor& grad_out_in, const std::optional<at::Tensor>& grad_probs_in,
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& key_mask_in, const at::Tensor& out, const at::Tensor& lse_in,
    double scale) {
  const char* op = "xattn_backward";
  check_attention(op, q_in, k_in, v_in, key_mask_in, scale);
  checks::check_xattn_backward(grad_out_in, grad_probs_in, q_in, k_in, v_in, key_mask_in, out,
                               lse_in, scale);
  const int64_t B = q_in.size(0), M = q_in.size(1), D = q_in.size(2), L = k_in.size(1);
  // out is part of the schema but not needed: Drow = Σ_j P·dP is formed from its definition.
  checks::expect_same_dtype(grad_out_in, q_in, "grad_out", "q");
  const bool has_grad_probs = grad_probs_in.has_value() && grad_probs_in->defined();
  if (has_grad_probs) checks::expect_same_dtype(*grad_probs_in, q_in, "grad_probs", "q");
  const auto acc_dtype = lse_dtype(q_in.scalar_type());
  TORCH_CHECK(lse_in.scalar_type() == acc_dtype, op, ": lse must be ", acc_dtype, " for q of dtype ",
              q_in.scalar_type(), ", got ", lse_in.scalar_type());

  const c10::cuda::CUDAGuard device_guard(q_in.device());
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor grad_probs = has_grad_probs ? grad_probs_in->contiguous() : at::Tensor();
  const at::Tensor q = q_in.contiguous();
  const at::Tensor k = k_in.contiguous();
  const at::Tensor v = v_in.contiguous();
  const at::Tensor key_mask = key_mask_in.contiguous();
  const at::Tensor lse = lse_in.contiguous();

  at::Tensor grad_q = at::empty({B, M, D}, q.options());
  at::Tensor grad_k = at::empty({B, L, D}, q.options());
  at::Tensor grad_v = at::empty({B, L, D}, q.options());
  if (B == 0) return {grad_q, grad_k, grad_v};
  // P and dS per (row, key): [2, B, M, L] in the accumulator type, never [B, M, L, D].
  at::Tensor workspace = at::empty({2, B, M, L}, q.options().dtype(acc_dtype));

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "xattn_backward_cuda", [&] {
        using device_t = typename DeviceScalar<scalar_t>::type;
        using acc_t = acc_type<device_t>;
        acc_t* probs_workspace = workspace.data_ptr<acc_t>();
        launch_backward<device_t>(
            device_ptr<scalar_t>(grad_out),
            has_grad_probs ? device_ptr<scalar_t>(grad_probs) : nullptr, device_ptr<scalar_t>(q),
            device_ptr<scalar_t>(k), device_ptr<scalar_t>(v), key_mask.data_ptr<bool>(),
            lse.data_ptr<acc_t>(), B, static_cast<int>(M), static_cast<int>(L),
            static_cast<int>(D), static_cast<acc_t>(scale), device_ptr<scalar_t>(grad_q),
            device_ptr<scalar_t>(grad_k), device_ptr<scalar_t>(grad_v), probs_workspace,
            probs_workspace + backward_workspace_elements(B, static_cast<int>(M),
                                                          static_cast<int>(L)),
            stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_q, grad_k, grad_v};
}

}  // namespace
}  // namespace stg::xattn

TORCH_LIBRARY_IMPL(stg, CUDA, m) {
  m.impl("xattn", &stg::xattn::xattn_cuda);
  m.impl("xattn_backward", &stg::xattn::xattn_backward_cuda);
}
