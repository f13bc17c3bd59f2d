// Plain reference for embedding, templated on the arithmetic type S of the backward's sums.
// tokens: N ids in [0, V).
#pragma once

#include "harness.h"

namespace longctx::ref {

using test::Ref;
using test::Round;

inline Ref embedding_fwd(const std::vector<int32_t>& tokens, const Shape& tokens_shape,
                         const Ref& table) {
  const int64_t C = table.shape[1];
  Shape out_shape = tokens_shape;
  out_shape.push_back(C);
  Ref out(out_shape);
  for (size_t i = 0; i < tokens.size(); ++i)
    for (int64_t c = 0; c < C; ++c) out[int64_t(i) * C + c] = table[tokens[i] * C + c];
  return out;
}

template <class S>
Ref embedding_bwd(const Ref& dout, const std::vector<int32_t>& tokens, int64_t V,
                  const Round& round) {
  const int64_t C = dout.shape.back();
  std::vector<S> sum(size_t(V * C), S(0));
  for (size_t i = 0; i < tokens.size(); ++i)
    for (int64_t c = 0; c < C; ++c) sum[size_t(tokens[i] * C + c)] += S(dout[int64_t(i) * C + c]);
  Ref dtable({V, C});
  for (int64_t k = 0; k < V * C; ++k) dtable[k] = round(double(sum[size_t(k)]));
  return dtable;
}

}  // namespace longctx::ref
