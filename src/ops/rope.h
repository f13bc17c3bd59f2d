// rope's params: validated and resolved once by src/ops/rope.cpp, then the one argument (besides
// the context) of both backends' entry points. The contract is include/longctx/ops/rope.h.
#pragma once

#include "longctx/ops/rope.h"

namespace longctx {

// The forward rotates x into out by the angles a_i = pos * theta^(-2i/D); the backward rotates
// dout into dx by -a_i. Both read `in` and write `out`, which may be the same memory.
struct RopeArgs {
  DType dtype = DType::f32;            // of in and out
  int64_t B = 0, T = 0, H = 0, D = 0;  // in, out: (B, T, H, D), D even
  double theta = 0;                    // the frequency base
  double sign = 1;                     // +1 forward, -1 backward: the sign of the angle

  const int32_t* positions = nullptr;  // (B, T) optional; pos = t when absent
  const void* in = nullptr;            // x (forward) or dout (backward)
  void* out = nullptr;                 // out (forward) or dx (backward)
};

namespace cpu {
void rope(const Context& ctx, const RopeArgs& args);
}
namespace cuda {
void rope(const Context& ctx, const RopeArgs& args);
}

}  // namespace longctx
