// For the fuzz targets: whether a valid config is small enough to build and run (a config may
// legitimately ask for gigabytes of parameters; the fuzzer's memory limit is not the finding).
#pragma once

#include <algorithm>
#include <cstdint>

#include "longctx/model/config.h"

namespace longctx::fuzz {

// An upper bound on the parameter count: every layer as if each of its matrices were
// 16 x (widest width) x (widest width + 256), plus the embedding and head.
inline bool small_enough(const ModelConfig& c, int64_t max_parameters = 1 << 22) {
  int64_t w = std::max({c.d_model, c.mamba_inner(), c.mamba2_inner(), c.rglru.width, c.mlp.hidden});
  const double bound = 2.0 * double(c.vocab_size) * double(c.d_model) +
                       double(c.layers.size()) * 16.0 * double(w) * double(w + 256);
  return bound <= double(max_parameters);
}

}  // namespace longctx::fuzz
