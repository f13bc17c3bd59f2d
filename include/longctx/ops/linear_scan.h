// linear_scan: the gated linear recurrence under RG-LRU (Griffin/Hawk), elementwise over D.
//
//   h_t = a_t * h_{t-1} + b_t,   h_{-1} = h0 (zeros when not given)
//
// a, b, out, da, db, dout: (B, T, D);  h0, last_state, dh0, dlast_state: (B, D).
// out holds every h_t; last_state = h_{T-1}. Purely bandwidth-bound: each element is read and
// written once. CPU: f32, f64. CUDA: a, b, out in f32/bf16/f16; h0 and last_state in f32.
//
// Packed variable-length batches: with cu_seqlens, i32 (N + 1) — 0 first, nondecreasing, T
// last — a, b, out and their gradients are (1, T, D) holding N sequences back to back, sequence
// n at positions [cu_seqlens[n], cu_seqlens[n + 1]), each scanned from its own h0[n]; the state
// tensors are (N, D), last_state[n] the state after sequence n's last step (h0[n], or zeros, for
// an empty one). A sequence's results are bitwise the same alone, in a rectangular batch or
// packed (on CUDA in deterministic mode, Context::set_deterministic).
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs linear_scan in `dtype`, else the reason.
std::string linear_scan_supports(Device device, DType dtype);

void linear_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                     const Tensor& a, const Tensor& b, const Tensor& h0 = {},
                     const Tensor& cu_seqlens = {});

// out is the forward's output (the h_{t-1} that da needs). dlast_state and h0 are optional;
// dh0 is required exactly when h0 is given. da, db, dh0 are overwritten.
void linear_scan_bwd(const Context& ctx, const Tensor& da, const Tensor& db, const Tensor& dh0,
                     const Tensor& dout, const Tensor& dlast_state, const Tensor& a,
                     const Tensor& out, const Tensor& h0 = {}, const Tensor& cu_seqlens = {});

}  // namespace longctx
