// monarch_linear's params: validated and resolved once by src/ops/monarch_linear.cpp, then the
// one argument (besides the context) of both backends' entry points. The contract, with the four
// steps these names come from, is include/longctx/ops/monarch_linear.h.
#pragma once

#include "longctx/ops/monarch_linear.h"

namespace longctx {

struct MonarchLinearArgs {
  DType dtype = DType::f32;     // of every tensor
  int64_t M = 0;                // rows: x's leading dims flattened (may be 0)
  int64_t k = 0, q = 0, p = 0;  // w1: k blocks of q outputs x p inputs; n_in = k·p
  int64_t l = 0, s = 0, r = 0;  // w2: l blocks of s outputs x r inputs; l·r = k·q, n_out = l·s
  int64_t n_in = 0, n_out = 0;  // k·p and l·s

  const void* x = nullptr;     // (M, n_in) = (M, k, p)
  const void* w1 = nullptr;    // (k, q, p)
  const void* w2 = nullptr;    // (l, s, r)
  const void* bias = nullptr;  // (n_out), optional (forward)
  void* out = nullptr;         // (M, n_out) = (M, s, l), forward
  // (M, l·r) = (M, l, r): y1 permuted (step 2), optional: written by the forward when set; read
  // by the backward when set, else the backward recomputes it into scratch.
  void* mid = nullptr;
  const void* dout = nullptr;  // (M, n_out), backward
  void* dx = nullptr;          // (M, n_in), backward, optional
  void* dw1 = nullptr;         // (k, q, p), backward, optional, overwritten (zeros when M = 0)
  void* dw2 = nullptr;         // (l, s, r), backward, optional, overwritten (zeros when M = 0)
  void* dbias = nullptr;       // (n_out), backward, optional, overwritten (zeros when M = 0)
};

// The projection's params: a dense weight onto the factors' structure.
struct MonarchProjectArgs {
  DType dtype = DType::f32;
  int64_t k = 0, q = 0, p = 0, l = 0, s = 0, r = 0;  // as above
  const void* weight = nullptr;                      // (l·s, k·p), dense, linear's layout
  void* w1 = nullptr;                                // (k, q, p), overwritten
  void* w2 = nullptr;                                // (l, s, r), overwritten
};

namespace cpu {
void monarch_linear_fwd(const Context& ctx, const MonarchLinearArgs& args);
void monarch_linear_bwd(const Context& ctx, const MonarchLinearArgs& args);
void monarch_project(const Context& ctx, const MonarchProjectArgs& args);
}  // namespace cpu
namespace cuda {
void monarch_linear_fwd(const Context& ctx, const MonarchLinearArgs& args);
void monarch_linear_bwd(const Context& ctx, const MonarchLinearArgs& args);
}  // namespace cuda

}  // namespace longctx
