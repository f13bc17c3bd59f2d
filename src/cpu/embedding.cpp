// embedding on the CPU. Forward: row copies, one token per work item. Backward: the positions of
// each token id gathered in order (a counting sort: offsets per id, then positions), then one
// table row per work item summing its dout rows in that order: deterministic, no atomics.
#include <algorithm>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/embedding.h"
#include "src/ops/index_errors.h"

namespace longctx::cpu {

namespace {

void check_tokens(const char* op, const int32_t* tokens, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; ++i)
    if (tokens[i] < 0 || tokens[i] >= V) throw_index_out_of_range(op, "tokens", i, tokens[i], V);
}

}  // namespace

void embedding_fwd(const Context& ctx, const EmbeddingArgs& args) {
  dispatch_cpu_float("embedding_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t N = args.N, V = args.V, C = args.C;
    const int32_t* tok = args.tokens;  // (N)
    check_tokens("embedding_fwd", tok, N, V);
    const T* w = static_cast<const T*>(args.table);  // (V, C)
    T* y = static_cast<T*>(args.out);                // (N, C)
    parallel_for(ctx, N, [&](int64_t i) {
      const T* row = w + int64_t(tok[i]) * C;
      std::copy(row, row + C, y + i * C);
    });
  });
}

void embedding_bwd(const Context& ctx, const EmbeddingArgs& args) {
  dispatch_cpu_float("embedding_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t N = args.N, V = args.V, C = args.C;
    const int32_t* tok = args.tokens;  // (N)
    check_tokens("embedding_bwd", tok, N, V);
    // offsets[v] .. offsets[v + 1]: where v's positions sit in `order`, ascending.
    std::vector<int64_t> offsets(size_t(V + 1), 0);
    for (int64_t i = 0; i < N; ++i) ++offsets[size_t(tok[i]) + 1];
    for (int64_t v = 0; v < V; ++v) offsets[size_t(v + 1)] += offsets[size_t(v)];
    std::vector<int64_t> order(static_cast<size_t>(N));
    std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
    for (int64_t i = 0; i < N; ++i) order[size_t(fill[size_t(tok[i])]++)] = i;
    const T* dy = static_cast<const T*>(args.dout);  // (N, C)
    T* dw = static_cast<T*>(args.dtable);            // (V, C)
    parallel_for(ctx, V, [&](int64_t v) {
      T* row = dw + v * C;
      std::fill(row, row + C, T(0));
      for (int64_t k = offsets[size_t(v)]; k < offsets[size_t(v + 1)]; ++k) {
        const T* src = dy + order[size_t(k)] * C;
        for (int64_t c = 0; c < C; ++c) row[c] += src[c];
      }
    });
  });
}

}  // namespace longctx::cpu
