// selective_scan's params (Mamba-1): validated once by src/ops/selective_scan.cpp, then the one
// argument (besides the context) of both backends' entry points, for the scan, its backward and
// the decode step. The contract is include/longctx/ops/selective_scan.h.
#pragma once

#include "longctx/ops/selective_scan.h"
#include "src/ops/varlen.h"

namespace longctx {

struct SelectiveScanArgs {
  DType dtype = DType::f32;  // of u, delta, B, C, z, out and their gradients
  // A, D, delta_bias, the states and their gradients are stat_dtype(dtype): f32, f64 for f64.
  int64_t batch = 0;  // the batch dimension ("B" names the input matrix here); 1 when packed
  Sequences seqs;     // the scan's sequences (the batch when rectangular); states per sequence
  int64_t Dm = 0;     // channels
  int64_t T = 0;      // steps (1 for the decode step, which has no T dimension)
  int64_t N = 0;      // state size per channel, 1..256
  int64_t G = 0;      // B/C groups, dividing Dm: channel d reads group d / (Dm / G)
  bool delta_softplus = false;  // delta' = softplus(delta + delta_bias), else delta + delta_bias

  const void* u = nullptr;            // (batch, Dm, T)
  const void* delta = nullptr;        // (batch, Dm, T)
  const void* A = nullptr;            // (Dm, N)
  const void* B = nullptr;            // (batch, G, N, T)
  const void* C = nullptr;            // (batch, G, N, T)
  const void* D = nullptr;            // (Dm) optional
  const void* z = nullptr;            // (batch, Dm, T) optional
  const void* delta_bias = nullptr;   // (Dm) optional
  const void* h0 = nullptr;           // (sequences, Dm, N) optional; zeros when absent
  void* out = nullptr;                // (batch, Dm, T): scan and decode step
  void* last_state = nullptr;         // (sequences, Dm, N), scan
  void* state = nullptr;              // (batch, Dm, N), decode step, updated in place
  const void* dout = nullptr;         // (batch, Dm, T), backward
  const void* dlast_state = nullptr;  // (sequences, Dm, N), backward, optional
  void *du = nullptr, *ddelta = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr;  // backward
  // Backward, each exactly when its input is given: dD, dz, ddelta_bias, dh0.
  void *dD = nullptr, *dz = nullptr, *ddelta_bias = nullptr, *dh0 = nullptr;
};

namespace cpu {
void selective_scan_fwd(const Context& ctx, const SelectiveScanArgs& args);
void selective_scan_bwd(const Context& ctx, const SelectiveScanArgs& args);
void selective_state_update(const Context& ctx, const SelectiveScanArgs& args);
}  // namespace cpu
namespace cuda {
void selective_scan_fwd(const Context& ctx, const SelectiveScanArgs& args);
void selective_scan_bwd(const Context& ctx, const SelectiveScanArgs& args);
void selective_state_update(const Context& ctx, const SelectiveScanArgs& args);
}  // namespace cuda

}  // namespace longctx
