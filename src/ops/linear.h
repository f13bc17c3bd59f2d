// linear's params: validated and resolved once by src/ops/linear.cpp, then the one argument
// (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/linear.h.
#pragma once

#include "longctx/ops/linear.h"

namespace longctx {

struct LinearArgs {
  DType dtype = DType::f32;         // of every tensor but the weight
  DType weight_dtype = DType::f32;  // dtype, or bf16 with an f32 x (CPU forward: weight-only bf16)
  int64_t M = 0;                    // rows: x's leading dims flattened (may be 0)
  int64_t Cin = 0, Cout = 0;  // features in and out, each >= 1 (all three fit in 32 bits for BLAS)

  const void* x = nullptr;       // (M, Cin)
  const void* weight = nullptr;  // (Cout, Cin)
  const void* bias = nullptr;    // (Cout), optional (forward)
  void* out = nullptr;           // (M, Cout), forward
  const void* dout = nullptr;    // (M, Cout), backward
  void* dx = nullptr;            // (M, Cin), backward, optional
  void* dweight = nullptr;       // (Cout, Cin), backward, optional, overwritten (zeros when M = 0)
  void* dbias = nullptr;         // (Cout), backward, optional, overwritten (zeros when M = 0)
};

namespace cpu {
void linear_fwd(const Context& ctx, const LinearArgs& args);
void linear_bwd(const Context& ctx, const LinearArgs& args);
}  // namespace cpu
namespace cuda {
void linear_fwd(const Context& ctx, const LinearArgs& args);
void linear_bwd(const Context& ctx, const LinearArgs& args);
}  // namespace cuda

}  // namespace longctx
