// linear_scan's params: validated once by src/ops/linear_scan.cpp, then the one argument (besides
// the context) of both backends' entry points. The contract is include/longctx/ops/linear_scan.h.
#pragma once

#include "longctx/ops/linear_scan.h"
#include "src/ops/varlen.h"

namespace longctx {

struct LinearScanArgs {
  DType dtype = DType::f32;  // of a, b, out and their gradients
  // h0, last_state and their gradients are stat_dtype(dtype): f32, f64 for f64.
  int64_t B = 0, T = 0, D = 0;  // a: (B, T, D); B = 1 when packed
  Sequences seqs;  // the N sequences (N = B when rectangular), each scanned from its h0[n]

  const void* a = nullptr;            // (B, T, D) the gates
  const void* b = nullptr;            // (B, T, D), forward
  const void* h0 = nullptr;           // (N, D) optional; zeros when absent
  void* out = nullptr;                // (B, T, D) every h_t: written forward, read backward
  void* last_state = nullptr;         // (N, D) each sequence's last h, forward
  const void* dout = nullptr;         // (B, T, D), backward
  const void* dlast_state = nullptr;  // (N, D), backward, optional
  void* da = nullptr;                 // (B, T, D), backward
  void* db = nullptr;                 // (B, T, D), backward
  void* dh0 = nullptr;                // (N, D), backward, exactly when h0 is given
};

namespace cpu {
void linear_scan_fwd(const Context& ctx, const LinearScanArgs& args);
void linear_scan_bwd(const Context& ctx, const LinearScanArgs& args);
}  // namespace cpu
namespace cuda {
void linear_scan_fwd(const Context& ctx, const LinearScanArgs& args);
void linear_scan_bwd(const Context& ctx, const LinearScanArgs& args);
}  // namespace cuda

}  // namespace longctx
