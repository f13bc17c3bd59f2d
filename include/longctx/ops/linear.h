// linear: out = x @ weight^T + bias (torch.nn.functional.linear; llm.c matmul_forward).
//
// x, dx: (..., Cin); weight, dweight: (Cout, Cin) (PyTorch's layout: one row per output
// feature); bias, dbias: (Cout); out, dout: (..., Cout). Rows M = numel(x) / Cin.
// CPU: f32, f64 through OpenBLAS (cblas_?gemm), run with the context's thread count.
// CUDA: f32, bf16, f16 through cuBLASLt with f32 accumulation (no TF32), bias in the epilogue;
// f32 products on bf16 tensor cores when the context's matmul precision is bf16 (context.h).
// Every tensor is contiguous and in x's dtype; Cin and Cout are >= 1, M may be 0.
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
// dbias is reduced in a fixed order on both backends, so it does not depend on the thread count.
void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                const Tensor& dout, const Tensor& x, const Tensor& weight);

}  // namespace longctx
