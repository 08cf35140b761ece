// Batched log-domain Sinkhorn-Knopp: raw-pointer kernels, no torch headers.
//
// Shapes (row-major, contiguous): P[B,K,U], word_mask[B,K], frame_mask[B,U],
// log_q[B,K,U], n_iter[B]. Each call handles the matrices [batch_begin, batch_end).
#pragma once
#include <cstdint>

namespace stg::sinkhorn {

// log_q = log of the transport plan with row marginals 1/K_valid and column marginals
// 1/U_valid for the kernel exp(P/eps); masked rows/columns and all-masked matrices get -inf
// (n_iter = 0 for an all-masked matrix). Stops after `iters` iterations or, when tol > 0,
// before the first iteration whose row-marginal L1 error is below tol.
template <typename scalar_t>
void forward_cpu(const scalar_t* P, const bool* word_mask, const bool* frame_mask,
                 int64_t K, int64_t U, double eps, int64_t iters, double tol,
                 scalar_t* log_q, int64_t* n_iter, int64_t batch_begin, int64_t batch_end);

// Vector-Jacobian product of forward_cpu with respect to P for the unrolled n_iter[b]
// iterations of each matrix (the stopping decision itself has no gradient).
template <typename scalar_t>
void backward_cpu(const scalar_t* grad_log_q, const scalar_t* P, const bool* word_mask,
                  const bool* frame_mask, int64_t K, int64_t U, double eps,
                  const int64_t* n_iter, scalar_t* grad_P, int64_t batch_begin,
                  int64_t batch_end);

}  // namespace stg::sinkhorn
