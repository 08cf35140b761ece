// The CPU row passes of the masked softmax attention: raw pointers, no torch headers. The
// products around them are at::bmm calls in the CPU entry points (csrc/stg.cpp).
//
// Shapes (row-major, contiguous): rows of [B·M, L] matrices, key_mask[B, L], lse[B·M] (the
// log-sum-exp of the scaled, masked logits; 0 for a fully masked row). A fully masked row gets
// zero probabilities and zero gradients.
#pragma once
#include <cstdint>

namespace stg::xattn {

// Rows [row_begin, row_end): logits (q·kᵀ) become the probabilities in place; lse is written.
template <typename scalar_t>
void softmax_rows_cpu(scalar_t* logits, const bool* key_mask, int64_t M, int64_t L, double scale,
                      scalar_t* lse, int64_t row_begin, int64_t row_end);

// Rows [row_begin, row_end): probs holds q·kᵀ and becomes P (from lse); grad_logits holds dO·vᵀ
// and becomes dS = scale·P·(dP - Σ_j P dP), dP including grad_probs (may be null).
template <typename scalar_t>
void softmax_backward_rows_cpu(scalar_t* probs, scalar_t* grad_logits,
                               const scalar_t* grad_probs, const bool* key_mask,
                               const scalar_t* lse, int64_t M, int64_t L, double scale,
                               int64_t row_begin, int64_t row_end);

}  // namespace stg::xattn
