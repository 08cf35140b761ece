// The exponent of the Sinkhorn kernel, x = P / eps, shared by the CPU and CUDA kernels and the
// CUDA harness. No torch headers.
//
// x is computed in double and saturated at ±kLogitLimit (the type's largest value / 256), so a
// finite P with any positive eps never makes x infinite: |P| near the type's maximum, or an eps
// below 1/max, would otherwise give ±inf entries and an all-NaN plan. Saturated entries already
// lie 1e36 (float32) apart from any other in the log domain, where the plan is a hard assignment,
// and the 256× headroom keeps the potentials and the sums x + f + g of the iterations finite.
#pragma once

#if defined(__CUDACC__)
#define STG_HOST_DEVICE __host__ __device__
#else
#define STG_HOST_DEVICE
#endif

namespace stg::sinkhorn {

// The type's largest finite value / 256 (spelled out: std::numeric_limits is host-only in CUDA).
template <typename T>
STG_HOST_DEVICE constexpr double logit_limit();
template <>
STG_HOST_DEVICE constexpr double logit_limit<float>() {
  return 3.4028234663852886e38 / 256.0;
}
template <>
STG_HOST_DEVICE constexpr double logit_limit<double>() {
  return 1.7976931348623157e308 / 256.0;
}

// x = P / eps, saturated at ±logit_limit<T>().
template <typename T>
STG_HOST_DEVICE inline T saturated_logit(T p, double eps) {
  const double x = static_cast<double>(p) / eps;
  const double limit = logit_limit<T>();
  return static_cast<T>(x > limit ? limit : (x < -limit ? -limit : x));
}

// dL/dP from dL/dx: 1/eps where x is within the limits (bounds included, as torch.clamp), 0
// where it saturated.
template <typename T>
STG_HOST_DEVICE inline T logit_gradient(T grad_x, T p, double eps) {
  const double x = static_cast<double>(p) / eps;
  const double limit = logit_limit<T>();
  return x > limit || x < -limit ? T(0) : static_cast<T>(static_cast<double>(grad_x) / eps);
}

}  // namespace stg::sinkhorn
