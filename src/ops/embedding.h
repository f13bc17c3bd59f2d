// embedding's params: validated and resolved once by src/ops/embedding.cpp, then the one argument
// (besides the context) of both backends' entry points. The contract is
// include/longctx/ops/embedding.h. Token values are checked by the backends as they read them.
#pragma once

#include <cstdint>

#include "longctx/ops/embedding.h"

namespace longctx {

struct EmbeddingArgs {
  DType dtype = DType::f32;  // of table, out, dout and dtable
  int64_t N = 0;             // tokens: every dimension of `tokens` flattened (below 2^31)
  int64_t V = 0;             // table rows (the vocabulary), >= 1
  int64_t C = 0;             // table columns (the embedding width, may be 0)

  const int32_t* tokens = nullptr;  // (N), each in [0, V) (checked by the backends)
  const void* table = nullptr;      // (V, C), forward
  void* out = nullptr;              // (N, C), forward
  const void* dout = nullptr;       // (N, C), backward
  void* dtable = nullptr;           // (V, C), backward, overwritten
};

namespace cpu {
void embedding_fwd(const Context& ctx, const EmbeddingArgs& args);
void embedding_bwd(const Context& ctx, const EmbeddingArgs& args);
}  // namespace cpu
namespace cuda {
void embedding_fwd(const Context& ctx, const EmbeddingArgs& args);
void embedding_bwd(const Context& ctx, const EmbeddingArgs& args);
}  // namespace cuda

}  // namespace longctx
