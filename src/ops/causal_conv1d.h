// causal_conv1d's params: validated once by src/ops/causal_conv1d.cpp, then the one argument
// (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/causal_conv1d.h.
#pragma once

#include "longctx/ops/causal_conv1d.h"
#include "src/ops/varlen.h"

namespace longctx {

// Where element (b, d, t) of an activation lies: b * this->b + d * this->d + t * this->t elements
// from its start. Channel-first (B, D, T): {D * T, T, 1}; channel-last (B, T, D) rows R apart:
// {T * R, 1, R}.
struct ConvStrides {
  int64_t b = 0, d = 0, t = 0;
};

struct CausalConv1dArgs {
  DType dtype = DType::f32;     // of every tensor
  int64_t B = 0, D = 0, T = 0;  // x: (B, D, T) or (B, T, D); the decode step has no T; B = 1 when
                                // packed
  Sequences seqs;             // the scan and its backward: the N sequences (N = B when rectangular)
  int W = 1;                  // kernel width, 1..4
  bool silu = false;          // act = silu, else identity
  bool channel_last = false;  // x, out, dout, dx are (B, T, D) views: the strides below say where

  ConvStrides x_at, out_at, dout_at, dx_at;  // of x, out, dout, dx (scan and backward)

  const void* x = nullptr;       // (B, D, T); (B, D) for the decode step
  const void* weight = nullptr;  // (D, W)
  const void* bias = nullptr;    // (D) optional
  void* out = nullptr;           // like x: forward and decode step
  void* conv_state = nullptr;    // (B, D, W - 1), oldest first: decode step, updated in place
  const void* dout = nullptr;    // (B, D, T), backward
  void* dx = nullptr;            // (B, D, T), backward
  void* dweight = nullptr;       // (D, W), backward, overwritten
  void* dbias = nullptr;         // (D), backward, exactly when bias is given, overwritten
};

namespace cpu {
void causal_conv1d_fwd(const Context& ctx, const CausalConv1dArgs& args);
void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args);
void causal_conv1d_update(const Context& ctx, const CausalConv1dArgs& args);
}  // namespace cpu
namespace cuda {
void causal_conv1d_fwd(const Context& ctx, const CausalConv1dArgs& args);
void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args);
void causal_conv1d_update(const Context& ctx, const CausalConv1dArgs& args);
}  // namespace cuda

}  // namespace longctx
