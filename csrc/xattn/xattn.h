// Fused masked softmax attention for short keys: raw-pointer kernels, no torch headers.
//
// Shapes (row-major, contiguous): q[B,M,D], k[B,L,D], v[B,L,D], key_mask[B,L],
// out[B,M,D], lse[B,M] (log-sum-exp of the scaled, masked logits; 0 for a fully masked
// row), probs[B,M,L] (may be null). A fully masked row yields zero output and probs.
#pragma once
#include <cstdint>

namespace stg::xattn {

// Handles the flattened query rows [row_begin, row_end) of the B·M rows.
template <typename scalar_t>
void forward_cpu(const scalar_t* q, const scalar_t* k, const scalar_t* v, const bool* key_mask,
                 int64_t M, int64_t L, int64_t D, double scale, scalar_t* out, scalar_t* lse,
                 scalar_t* probs, int64_t row_begin, int64_t row_end);

// Handles the batch entries [batch_begin, batch_end). grad_probs may be null. grad_k and grad_v are overwritten for each handled batch entry.
template <typename scalar_t>
void backward_cpu(const scalar_t* grad_out, const scalar_t* grad_probs, const scalar_t* q,
                  const scalar_t* k, const scalar_t* v, const bool* key_mask,
                  const scalar_t* out, const scalar_t* lse, int64_t M, int64_t L, int64_t D,
                  double scale, scalar_t* grad_q, scalar_t* grad_k, scalar_t* grad_v,
                  int64_t batch_begin, int64_t batch_end);

}  // namespace stg::xattn
