// selective_scan: Mamba-1's selective state-space scan (mamba_ssm selective_scan_fn semantics),
// and its one-step decode, selective_state_update.
//
//   delta' = softplus(delta + delta_bias) if delta_softplus else delta + delta_bias
//   h_t[d, n] = exp(delta'_t[d] * A[d, n]) * h_{t-1}[d, n] + delta'_t[d] * B_t[g, n] * u_t[d]
//   y_t[d] = sum_n C_t[g, n] * h_t[d, n] + D[d] * u_t[d];   out = y * silu(z) when z is given
// with g = d / (Dm / G) the group of channel d, and h_{-1} = h0 (zeros when not given).
//
// Layouts: u, delta, z, out: (B, Dm, T);  A: (Dm, N);  B, C: (B, G, N, T) with Dm % G == 0;
//          D, delta_bias: (Dm);  h0, last_state: (B, Dm, N).
// Dtypes: u, delta, z, B, C, out share one dtype (CPU: f32/f64; CUDA: f32/bf16/f16);
//         A, D, delta_bias, h0, last_state are f32 (f64 when u is f64). N <= 256.
//
// Packed variable-length batches: with in.cu_seqlens, i32 (N + 1) — 0 first, nondecreasing, T
// last — u, delta, z, out and their gradients are (1, Dm, T) and B, C (1, G, N, T), holding the
// sequences back to back along T, sequence n at [cu_seqlens[n], cu_seqlens[n + 1]), each scanned
// from its own h0[n]; h0, last_state and their gradients are (N, Dm, N) — state size N. A
// sequence's results are bitwise the same alone, in a rectangular batch or packed.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

struct SelectiveScanParams {
  bool delta_softplus = false;
};

// Optional inputs are left undefined (Tensor{}).
struct SelectiveScanInputs {
  Tensor u, delta, A, B, C;     // required
  Tensor D, z, delta_bias, h0;  // optional
  Tensor cu_seqlens;            // optional: a packed batch (below)
};

// Gradients, named d<input>; each is required exactly when its input is given. Overwritten.
struct SelectiveScanGrads {
  Tensor du, ddelta, dA, dB, dC;
  Tensor dD, dz, ddelta_bias, dh0;
};

// "" when the backend of `device` runs selective_scan (and its decode step) in `dtype` with
// state size N = `state_size`, else the reason.
std::string selective_scan_supports(Device device, DType dtype, int64_t state_size);

void selective_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params = {});

// Recomputes the forward (no saved states needed). dlast_state is optional.
void selective_scan_bwd(const Context& ctx, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params = {});

// One decode step, updating `state` (B, Dm, N) in place:
// u, delta, z, out: (B, Dm);  B, C: (B, G, N);  A, D, delta_bias as above.
void selective_state_update(const Context& ctx, const Tensor& out, const Tensor& state,
                            const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                            const Tensor& C, const Tensor& D = {}, const Tensor& z = {},
                            const Tensor& delta_bias = {}, const SelectiveScanParams& params = {});

}  // namespace longctx
