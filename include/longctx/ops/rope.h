// rope: rotary position embedding, LLaMA / GPT-NeoX convention ("rotate_half"): dimension i of a
// head is paired with dimension i + D/2, and the pair is rotated by the angle pos * theta^(-2i/D):
//
//   out[i]       = x[i] * cos(a_i) - x[i + D/2] * sin(a_i)
//   out[i + D/2] = x[i + D/2] * cos(a_i) + x[i] * sin(a_i),   a_i = pos * theta^(-2i/D), i < D/2
//
// x, out, dout, dx: (B, T, H, D), D even; positions: (B, T) i32, optional (default pos = t), so
// decoding at an offset (pos = cache length + t) and packed sequences work. The backward is the
// inverse rotation (angle -a_i). out may be x itself (in place), dx may be dout; any other overlap
// is an error. Angles and their sin/cos are computed in double on both backends (in f32,
// pos * freq at pos ~ 1e5 would be off by ~1e-2 rad), then rounded to the compute type.
// CPU: f32, f64. CUDA: f32, bf16, f16 (f32 math).
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

struct RopeParams {
  double theta = 10000.0;  // frequency base: a_i = pos * theta^(-2i/D)
};

// "" when the backend of `device` runs rope in `dtype`, else the reason.
std::string rope_supports(Device device, DType dtype);

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& positions = {},
              const RopeParams& params = {});

// dx is overwritten; dx may be dout (in place).
void rope_bwd(const Context& ctx, const Tensor& dx, const Tensor& dout,
              const Tensor& positions = {}, const RopeParams& params = {});

}  // namespace longctx
