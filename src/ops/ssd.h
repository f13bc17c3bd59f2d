// ssd's params (Mamba-2's state-space duality layer): validated once by src/ops/ssd.cpp, then the
// one argument (besides the context) of both backends' entry points, for the chunked scan, its
// backward and the decode step. The contract is include/longctx/ops/ssd.h.
#pragma once

#include "longctx/ops/ssd.h"
#include "src/ops/varlen.h"

namespace longctx {

struct SSDArgs {
  DType dtype = DType::f32;  // of x, dt, B, C, z, out and their gradients
  // A, D, dt_bias, the states and their gradients are stat_dtype(dtype): f32, f64 for f64.
  int64_t batch = 0;         // the batch dimension ("B" names the input matrix here); 1 when packed
  int64_t T = 0;             // steps (1 for the decode step, which has no T dimension)
  int64_t H = 0;             // heads
  int64_t P = 0;             // head dim
  int64_t G = 0;             // B/C groups, dividing H: head h reads group h / (H / G)
  int64_t N = 0;             // state size, 1..256
  int64_t chunk_size = 64;   // steps per chunk (the CPU's; the CUDA kernels use 64)
  bool dt_softplus = false;  // dt' = softplus(dt + dt_bias), else dt + dt_bias
  Sequences seqs;            // the scan's sequences (the batch when rectangular)

  const void* x = nullptr;               // (batch, T, H, P)
  const void* dt = nullptr;              // (batch, T, H)
  const void* A = nullptr;               // (H)
  const void* B = nullptr;               // (batch, T, G, N)
  const void* C = nullptr;               // (batch, T, G, N)
  const void* D = nullptr;               // (H) optional
  const void* z = nullptr;               // (batch, T, H, P) optional
  const void* dt_bias = nullptr;         // (H) optional
  const void* initial_states = nullptr;  // (sequences, H, P, N) optional; zeros when absent
  void* out = nullptr;                   // (batch, T, H, P): scan and decode step
  void* final_states = nullptr;          // (sequences, H, P, N), scan
  void* state = nullptr;                 // (batch, H, P, N), decode step, updated in place
  const void* dout = nullptr;            // (batch, T, H, P), backward
  const void* dfinal_states = nullptr;   // (sequences, H, P, N), backward, optional
  void *dx = nullptr, *ddt = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr;  // backward
  // Backward, each exactly when its input is given: dD, dz, ddt_bias, dinitial_states.
  void *dD = nullptr, *dz = nullptr, *ddt_bias = nullptr, *dinitial_states = nullptr;

  // Sequence s of a packed batch as a batch of one: every pointer advanced to the sequence's
  // first step or to its states (the layout is step-major, so the view is contiguous).
  SSDArgs sequence(int64_t s) const;
};

namespace cpu {
void ssd_fwd(const Context& ctx, const SSDArgs& args);
void ssd_bwd(const Context& ctx, const SSDArgs& args);
void ssd_state_update(const Context& ctx, const SSDArgs& args);
}  // namespace cpu
namespace cuda {
void ssd_fwd(const Context& ctx, const SSDArgs& args);
void ssd_bwd(const Context& ctx, const SSDArgs& args);
void ssd_state_update(const Context& ctx, const SSDArgs& args);
}  // namespace cuda

}  // namespace longctx
