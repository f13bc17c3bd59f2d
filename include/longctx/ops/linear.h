// linear: out = x @ weight^T + bias (torch.nn.functional.linear; llm.c matmul_forward).
//
// x, dx: (..., Cin); weight, dweight: (Cout, Cin) (PyTorch's layout: one row per output
// feature); bias, dbias: (Cout); out, dout: (..., Cout). Rows M = numel(x) / Cin.
// CPU: f32, f64 through OpenBLAS (cblas_?gemm), run with the context's thread count; in f32 a
// single row runs as a GEMV (src/cpu/gemv.h), and many rows at a small inner dim on
// src/cpu/small_k_gemm.h's kernel.
// CUDA: f32, bf16, f16 through cuBLASLt with f32 accumulation (no TF32), bias in the epilogue;
// f32 products on bf16 tensor cores when the context's matmul precision is bf16 (context.h).
// Every tensor is contiguous and in x's dtype; Cin and Cout are >= 1, M may be 0.
// Weight-only bf16 (inference): on the CPU, linear_fwd also takes an f32 x with a bf16 weight
// (bias and out f32): each weight is widened to f32 exactly as it is read, products and sums in
// f32, so the result is the f32 linear of the bf16-rounded weight. Half the bytes of a batch-1
// decode step, which is bound by reading the weights (src/cpu/gemv.h).
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// bias is optional (an undefined Tensor: no bias).
// "" when the backend of `device` runs linear in `dtype`, else the reason.
std::string linear_supports(Device device, DType dtype);

void linear_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                const Tensor& bias = {});

// Each gradient is optional (an undefined Tensor is not computed) and overwritten when given:
//   dx = dout @ weight,  dweight = dout^T @ x,  dbias = sum over rows of dout.
// dbias is reduced in a fixed order on both backends, so it does not depend on the thread count;
// the CPU's dweight is a sum of per-thread partials over blocks of rows, added in thread order:
// the same bits for a given thread count, rounded differently at another.
void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                const Tensor& dout, const Tensor& x, const Tensor& weight);

}  // namespace longctx
