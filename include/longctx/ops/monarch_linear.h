// monarch_linear: out = x @ Mᵀ + bias for a Monarch matrix M = P_out · R · P · L (Dao et al.,
// "Monarch: Expressive Structured Matrices for Efficient and Accurate Training", ICML 2022): two
// block-diagonal factors with a fixed permutation between them, as the authors'
// `blockdiag_butterfly_multiply(x, w1, w2)`.
//
// x (..., n_in) with rows M = numel(x) / n_in; w1 (k, q, p) with k·p = n_in; w2 (l, s, r) with
// l·r = k·q; bias (l·s); out (..., l·s). For each row m of x:
//   1. y1[i, j]  = Σ_c x[i·p + c] · w1[i, j, c]        i < k, j < q   (k blocks of q x p)
//   2. y1t[a, c] = y1[c·l + a]                          y1 (k·q) read as (r, l), transposed
//   3. y2[a, b]  = Σ_c y1t[a, c] · w2[a, b, c]          a < l, b < s   (l blocks of s x r)
//   4. out[b·l + a] = y2[a, b] + bias[b·l + a]          (l, s) read back as (s, l)
// A square Monarch matrix of n with b blocks (w1, w2 both (b, n/b, n/b)) costs 2n²/b
// multiply-adds a row instead of a dense matrix's n²; b = 1 is a dense matrix (w2 (1, n, n) after
// w1 (1, n, n): the product of two dense matrices).
//
// mid (..., l·r), optional: y1t of step 2, row-major (l, r) per row. The forward writes it when
// given; the backward reads it when given and otherwise computes it again from x and w1 (one
// block-diagonal product more). Keeping it makes the backward's cost that of its four products.
//
// CPU: f32, f64 (strided OpenBLAS GEMMs per block). CUDA: f32, bf16, f16 (cuBLASLt
// strided-batched GEMMs with f32 accumulation; y1t is stored in x's dtype, as the authors' code
// does); f32 products on bf16 tensor cores when the context's matmul precision is bf16
// (context.h). Every tensor is contiguous and in x's dtype; every factor dimension >= 1, M may
// be 0.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs monarch_linear in `dtype`, else the reason.
std::string monarch_linear_supports(Device device, DType dtype);

void monarch_linear_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& w1,
                        const Tensor& w2, const Tensor& bias = {}, const Tensor& mid = {});

// Each gradient is optional (an undefined Tensor is not computed) and overwritten when given.
// dbias is reduced in a fixed order (as linear's), so it does not depend on the thread count.
void monarch_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dw1, const Tensor& dw2,
                        const Tensor& dbias, const Tensor& dout, const Tensor& x, const Tensor& w1,
                        const Tensor& w2, const Tensor& mid = {});

// The factor shapes of the authors' MonarchLinear for n_in -> n_out features with b = nblocks
// blocks (both must be multiples of b): when n_in < n_out, w1 (b, n_in/b, n_in/b) and
// w2 (b, n_out/b, n_in/b); otherwise w1 (b, n_out/b, n_in/b) and w2 (b, n_out/b, n_out/b).
// Parameters and multiply-adds a row: (min(n_in, n_out) · (n_in + n_out)) / b.
struct MonarchShape {
  Shape w1, w2;  // (k, q, p), (l, s, r)
};
MonarchShape monarch_shape(int64_t n_in, int64_t n_out, int64_t nblocks);

// The projection of a dense weight (n_out, n_in) (linear's layout: out = x @ weightᵀ) onto the
// closest Monarch matrix in the Frobenius norm, written into w1 (k, q, p) and w2 (l, s, r), whose
// shapes choose the structure: the paper's closed form, here for rectangular factors too.
// Block (a, i) of `weight` (rows b·l + a for b < s, columns i·p + e for e < p) is the sum of the
// rank-1 terms w2[a, :, c] ⊗ w1[i, j, :] over the c with c·l + a = i·q + j, j < q, and every
// factor row or column belongs to exactly one block. So the closest Monarch matrix takes, block
// by block, the truncated SVD of that many terms, each singular value split evenly between the
// two factors. The factors are not unique (signs, equal singular values); their product is.
// CPU only (a one-off conversion of trained weights), f32 or f64 (computed in f64);
// O(n_out · n_in · min(s, p)) per Jacobi sweep of the blocks' SVDs.
std::string monarch_project_supports(Device device, DType dtype);
void monarch_project(const Context& ctx, const Tensor& w1, const Tensor& w2, const Tensor& weight);

}  // namespace longctx
