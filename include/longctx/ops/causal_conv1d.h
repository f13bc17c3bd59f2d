// causal_conv1d: depthwise causal convolution (causal_conv1d_fn semantics) and its decode step.
//
//   out[b, d, t] = act(bias[d] + sum_{w < W} weight[d, w] * x[b, d, t - (W - 1) + w])
// with x = 0 before t = 0 and act = identity or silu.
// Layouts: x, out, dx, dout: (B, D, T);  weight, dweight: (D, W) with 1 <= W <= 4;
//          bias, dbias: (D);  conv_state: (B, D, W - 1), the last W - 1 inputs, oldest first.
// CPU: f32/f64. CUDA: f32/bf16/f16, weight and bias in the same dtype as x.
//
// Channel-last (params.channel_last): x, out, dout, dx are (B, T, D) instead, each either
// contiguous or a narrow of the last dimension of a contiguous (B, T, R) tensor, R >= D (its
// channels unit-stride, its time steps R apart): the models' mixers read their conv inputs
// straight out of their input projections this way and write the gradients straight into the
// projections', with no transposes. An output must not share memory with an input; narrows of
// different columns of one buffer are separate memory.
// The decode step's (B, D) tensors are the same in both layouts. On CUDA the channel-last forward
// and backward have kernels of their own, a warp's lanes on consecutive channels, so that each
// row is read in one coalesced piece.
//
// Packed variable-length batches: with cu_seqlens, i32 (N + 1) — 0 first, nondecreasing, T
// last — x, out and their gradients are (1, D, T) holding N sequences back to back along T,
// sequence n at [cu_seqlens[n], cu_seqlens[n + 1]) ((1, T, D) channel-last), and each sees zeros
// before its first token.
// A sequence's out and dx are bitwise the same alone, in a rectangular batch or packed.
#pragma once

#include <cstdint>
#include <string>

#include "longctx/context.h"

namespace longctx {

enum class Activation { none, silu };

struct CausalConv1dParams {
  Activation activation = Activation::none;
  bool channel_last = false;  // (B, T, D) tensors, rows possibly strided (above)
};

// "" when the backend of `device` runs causal_conv1d in `dtype` with kernel width `width`, else
// the reason.
std::string causal_conv1d_supports(Device device, DType dtype, int64_t width);

void causal_conv1d_fwd(const Context& ctx, const Tensor& out, const Tensor& x, const Tensor& weight,
                       const Tensor& bias = {}, const CausalConv1dParams& params = {},
                       const Tensor& cu_seqlens = {});

// dbias is required exactly when bias is given. Gradients are overwritten.
void causal_conv1d_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                       const Tensor& dbias, const Tensor& dout, const Tensor& x,
                       const Tensor& weight, const Tensor& bias = {},
                       const CausalConv1dParams& params = {}, const Tensor& cu_seqlens = {});

// One decode step: x, out: (B, D). Computes the output for x given the W - 1 previous inputs in
// conv_state, then shifts x into conv_state (in place).
void causal_conv1d_update(const Context& ctx, const Tensor& out, const Tensor& conv_state,
                          const Tensor& x, const Tensor& weight, const Tensor& bias = {},
                          const CausalConv1dParams& params = {});

}  // namespace longctx
