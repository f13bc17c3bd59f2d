// The scaling benchmark's training-FLOP estimate (bench/flops.h) against a count made here another
// way: the delta rule's products listed one by one as src/cpu/gated_delta_rule.cpp calls them.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "bench/flops.h"
#include "longctx/model/config.h"

namespace longctx {
namespace {

ModelConfig preset(const std::string& name) {
  return ModelConfig::load(std::string(LONGCTX_SOURCE_DIR) + "/models/presets/" + name + ".json");
}

// Multiply-adds of one chunk of C tokens of one value head, forward and backward, product by
// product; a triangular C x C factor counts its nonzeros (strictly lower: P, dP, the solves'
// matrix; lower with the diagonal: M, dM).
double chunk_macs(double C, double K, double V) {
  const double strict = C * (C - 1) / 2, lower = C * (C + 1) / 2;
  double macs = 0;
  // Forward: P, M; V − (γ ⊙ K̂) S and (scale γ ⊙ Q̂) S; the solve; M U; the state update.
  macs += strict * K + lower * K + 2 * C * K * V + strict * V + lower * V + K * C * V;
  // Backward pass 1: P; V − (γ ⊙ K̂) S; the solve; the state update.
  macs += strict * K + C * K * V + strict * V + K * C * V;
  // Pass 2: P, M; Mᵀ dO; (ρ ⊙ K̂) dS; U dSᵀ; the transposed solve; [dO; dR] Uᵀ on dM's and dA's
  // triangles; [dv; dO] S₀ᵀ; the rows' products into dS₀; dq̂ = dM K̂; dk̂ = (dP + dPᵀ) K̂ + dMᵀ Q̂.
  macs += strict * K + lower * K;
  macs += lower * V + C * V * K + C * K * V + strict * V + (lower + strict) * V;
  macs += 2 * C * K * V + K * V * 2 * C;
  macs += lower * K + (2 * strict + lower) * K;
  return macs;
}

TEST(TrainFlops, DeltaRuleChunkProductsMatchTheirListing) {
  for (const char* name : {"gdn", "kimi", "qwen3next"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = preset(name);
    const DeltaNetConfig& d = c.deltanet;
    const int64_t layers = c.count(LayerKind::gated_deltanet) + c.count(LayerKind::kda);
    ASSERT_GT(layers, 0);
    ASSERT_GT(d.n_v_heads, 0);       // filled in by the validation
    const int64_t params = 1000000;  // the weights' part is 6 per parameter (the head counted once)
    for (const int64_t T :
         {int64_t(1), d.chunk_size - 1, d.chunk_size, int64_t(1000), int64_t(4096)}) {
      SCOPED_TRACE("T = " + std::to_string(T));
      const double chunks = double((T + d.chunk_size - 1) / d.chunk_size);
      const double delta =
          2 * chunk_macs(double(d.chunk_size), double(d.head_k_dim), double(d.head_v_dim)) *
          chunks * double(d.n_v_heads) * double(layers) / double(T);
      const double hd = double(c.attention.n_heads * c.head_dim());
      // The estimate's convention for causal attention: T / 2 visible keys per token.
      const double attention = 6 * hd * double(c.count(LayerKind::attention)) * double(T) / 2;
      const double want = 6.0 * params + delta + attention;
      EXPECT_NEAR(bench::train_flops_per_token(c, params, T), want, 1e-9 * want);
    }
  }
}

}  // namespace
}  // namespace longctx
