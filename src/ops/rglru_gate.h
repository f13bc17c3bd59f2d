// rglru_gate's params: validated and resolved once by src/ops/rglru_gate.cpp, then the one
// argument (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/rglru_gate.h.
#pragma once

#include "longctx/ops/rglru_gate.h"

namespace longctx {

struct RGLRUGateArgs {
  DType dtype = DType::f32;  // of every tensor
  int64_t rows = 0;          // x viewed as (rows, D): its leading dims flattened (0 when D = 0)
  int64_t D = 0;             // channels: x's last dimension (may be 0)

  const void* x = nullptr;       // (rows, D)
  const void* gate_a = nullptr;  // (rows, D): the recurrence gate's pre-activation
  const void* gate_x = nullptr;  // (rows, D): the input gate's pre-activation
  const void* lambda = nullptr;  // (D): softplus(lambda) sets the decay rate per channel
  void* a = nullptr;             // (rows, D), forward
  void* b = nullptr;             // (rows, D), forward
  const void* da = nullptr;      // (rows, D), backward
  const void* db = nullptr;      // (rows, D), backward
  void* dx = nullptr;            // (rows, D), backward
  void* dgate_a = nullptr;       // (rows, D), backward
  void* dgate_x = nullptr;       // (rows, D), backward
  void* dlambda = nullptr;       // (D), backward, overwritten (zeros when rows = 0)
};

namespace cpu {
void rglru_gate_fwd(const Context& ctx, const RGLRUGateArgs& args);
void rglru_gate_bwd(const Context& ctx, const RGLRUGateArgs& args);
}  // namespace cpu
namespace cuda {
void rglru_gate_fwd(const Context& ctx, const RGLRUGateArgs& args);
void rglru_gate_bwd(const Context& ctx, const RGLRUGateArgs& args);
}  // namespace cuda

}  // namespace longctx
