// linear_scan: the gated linear recurrence under RG-LRU (Griffin/Hawk), elementwise over D.
//
//   h_t = a_t * h_{t-1} + b_t,   h_{-1} = h0 (zeros when not given)
//
// a, b, out, da, db, dout: (B, T, D);  h0, last_state, dh0, dlast_state: (B, D).
// out holds every h_t; last_state = h_{T-1}. Purely bandwidth-bound: each element is read and
// written once. CPU: f32, f64. CUDA: a, b, out in f32/bf16/f16; h0 and last_state in f32.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs linear_scan in `dtype`, else the reason.
std::string linear_scan_supports(Device device, DType dtype);

void linear_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                     const Tensor& a, const Tensor& b, const Tensor& h0 = {});

// out is the forward's output (the h_{t-1} that da needs). dlast_state and h0 are optional;
// dh0 is required exactly when h0 is given. da, db, dh0 are overwritten.
void linear_scan_bwd(const Context& ctx, const Tensor& da, const Tensor& db, const Tensor& dh0,
                     const Tensor& dout, const Tensor& dlast_state, const Tensor& a,
                     const Tensor& out, const Tensor& h0 = {});

}  // namespace longctx
