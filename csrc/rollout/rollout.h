// Attention rollout and the paper's heatmap chain: raw-pointer kernels, no torch headers.
#pragma once
#include <cstdint>

namespace stg::rollout {

// Abnar & Zuidema rollout restricted to selected output rows.
// layers[B,Ly,n,n] (attention of layer l, rows = queries), rows[R] token indices,
// out[B,R,n] = rows of  Ã_{Ly-1} ··· Ã_0  with  Ã = rownorm(0.5·A + 0.5·I).
template <typename scalar_t>
void rollout_cpu(const scalar_t* layers, const int64_t* rows, int64_t n_layers, int64_t n,
                 int64_t n_rows, scalar_t* out, int64_t batch_begin, int64_t batch_end);

// The paper's chain: heat[b,r] = mean_r' (CA2[r',:] · SA · CA1)[r] with padded words zeroed.
// ca2[B,R,W] (regions→words), sa[B,W,W] (words→words), ca1[B,W,R] (words→regions),
// word_mask[B,W], heat[B,R].
template <typename scalar_t>
void paper_cpu(const scalar_t* ca2, const scalar_t* sa, const scalar_t* ca1,
               const bool* word_mask, int64_t R, int64_t W, scalar_t* heat,
               int64_t batch_begin, int64_t batch_end);

}  // namespace stg::rollout
