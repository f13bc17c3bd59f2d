// ssd: Mamba-2's state-space duality layer (mamba_ssm mamba_chunk_scan_combined semantics) and
// its one-step decode.
//
//   dt' = softplus(dt + dt_bias) if dt_softplus else dt + dt_bias
//   h_t[h, p, n] = exp(dt'_t[h] * A[h]) * h_{t-1}[h, p, n] + dt'_t[h] * B_t[g, n] * x_t[h, p]
//   y_t[h, p] = sum_n C_t[g, n] * h_t[h, p, n] + D[h] * x_t[h, p];  out = y * silu(z) if z given
// with g = h / (H / G), h_{-1} = initial_states (zeros when not given).
//
// Layouts: x, z, out: (B, T, H, P);  dt: (B, T, H);  A, D, dt_bias: (H);
//          B, C: (B, T, G, N) with H % G == 0;  initial_states, final_states: (B, H, P, N).
// Computed in chunks of chunk_size tokens: inside a chunk as small matrix products, then a pass
// over the chunk states. Dtypes: x, dt, z, B, C, out share one dtype (CPU: f32/f64; CUDA:
// f32/bf16/f16); A, D, dt_bias, initial_states, final_states are f32 (f64 when x is f64).
//
// Packed variable-length batches: with in.cu_seqlens, i32 (N + 1) — 0 first, nondecreasing, T
// last — x, dt, z, B, C, out and their gradients are (1, T, ...) holding the sequences back to
// back, sequence n at [cu_seqlens[n], cu_seqlens[n + 1]), each scanned from its own
// initial_states[n]; the state tensors are (N, H, P, N_state). A sequence's outputs and gradients
// are bitwise the same alone or packed (chunks start at each sequence's first step).
#pragma once

#include <cstdint>
#include <string>

#include "longctx/context.h"

namespace longctx {

struct SSDParams {
  int64_t chunk_size = 64;
  bool dt_softplus = false;
};

struct SSDInputs {
  Tensor x, dt, A, B, C;                 // required
  Tensor D, z, dt_bias, initial_states;  // optional
  Tensor cu_seqlens;                     // optional: a packed batch (below)
};

struct SSDGrads {
  Tensor dx, ddt, dA, dB, dC;
  Tensor dD, dz, ddt_bias, dinitial_states;  // each required exactly when its input is given
};

// "" when the backend of `device` runs ssd (and its decode step) in `dtype` with state size
// N = `state_size`, else the reason.
std::string ssd_supports(Device device, DType dtype, int64_t state_size);

void ssd_fwd(const Context& ctx, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams& params = {});

// dfinal_states is optional. Gradients are overwritten.
void ssd_bwd(const Context& ctx, const SSDGrads& grads, const Tensor& dout,
             const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params = {});

// One decode step on `state` (B, H, P, N), in place: x, z, out: (B, H, P); dt: (B, H);
// B, C: (B, G, N).
void ssd_state_update(const Context& ctx, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D = {}, const Tensor& z = {}, const Tensor& dt_bias = {},
                      const SSDParams& params = {});

}  // namespace longctx
