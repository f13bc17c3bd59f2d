// cross_entropy's params: validated and resolved once by src/ops/cross_entropy.cpp, then the one
// argument (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/cross_entropy.h. Target values are checked by the backends.
#pragma once

#include <cstdint>

#include "longctx/ops/cross_entropy.h"

namespace longctx {

struct CrossEntropyArgs {
  DType dtype = DType::f32;     // of logits and dlogits; lse, loss and dloss are stat_dtype(dtype)
  int64_t N = 0;                // rows: logits' leading dims flattened (below 2^31)
  int64_t V = 0;                // classes: logits' last dimension, >= 1
  int32_t ignore_index = -100;  // a row whose target is this is unlabelled

  const void* logits = nullptr;      // (N, V)
  const int32_t* targets = nullptr;  // (N), each ignore_index or in [0, V) (checked by backends)
  void* lse = nullptr;               // (N): written by the forward, read by the backward
  void* loss = nullptr;              // (1), forward: the mean over labelled rows
  const void* dloss = nullptr;       // (1), backward
  void* dlogits = nullptr;           // (N, V), backward, overwritten; may be logits itself
};

namespace cpu {
void cross_entropy_fwd(const Context& ctx, const CrossEntropyArgs& args);
void cross_entropy_bwd(const Context& ctx, const CrossEntropyArgs& args);
}  // namespace cpu
namespace cuda {
void cross_entropy_fwd(const Context& ctx, const CrossEntropyArgs& args);
void cross_entropy_bwd(const Context& ctx, const CrossEntropyArgs& args);
}  // namespace cuda

}  // namespace longctx
