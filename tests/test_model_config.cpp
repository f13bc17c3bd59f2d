// ModelConfig: presets load, JSON round trips, pattern strings, and bad configs name the key.
#include <cmath>
#include <filesystem>

#include "harness.h"
#include "longctx/model/config.h"

namespace longctx::test {
namespace {

TEST(ModelConfig, EveryPresetLoadsAndRoundTrips) {
  int presets = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(LONGCTX_SOURCE_DIR) + "/models/presets")) {
    if (entry.path().extension() != ".json") continue;
    ++presets;
    const ModelConfig c = ModelConfig::load(entry.path().string());
    EXPECT_FALSE(c.layers.empty()) << entry.path();
    const ModelConfig again = ModelConfig::from_json(c.to_json());
    EXPECT_EQ(again.to_json(), c.to_json()) << entry.path();
    EXPECT_EQ(again.pattern(), c.pattern());
  }
  EXPECT_GE(presets, 10);
}

TEST(ModelConfig, PatternAndListGiveTheSameLayers) {
  const ModelConfig a = ModelConfig::from_json(R"({"d_model": 64, "pattern": "M-S-R-W-*-"})");
  const ModelConfig b = ModelConfig::from_json(R"({"d_model": 64, "layers": ["mamba", "mlp",
      "mamba2", "mlp", "rglru", "mlp", "sliding_attention", "mlp", "attention", "mlp"]})");
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.pattern(), "M-S-R-W-*-");
  EXPECT_EQ(a.count(LayerKind::mlp), 5);
}

TEST(ModelConfig, DerivedValuesAreFilledIn) {
  const ModelConfig c = ModelConfig::from_json(R"({"d_model": 100, "pattern": "MR-"})");
  EXPECT_EQ(c.mamba.dt_rank, 7);  // ceil(100 / 16)
  EXPECT_EQ(c.rglru.width, 100);
  EXPECT_EQ(c.mlp.hidden, 320);  // 8/3 * 100 = 266 -> next multiple of 64
  EXPECT_EQ(c.mlp.kind, ProjectionKind::dense);
  const ModelConfig d = ModelConfig::from_json(
      R"({"d_model": 64, "pattern": "G-K-*-", "deltanet": {"n_heads": 3}, "attention":
          {"n_heads": 2, "n_kv_heads": 1, "gated": true}})");
  EXPECT_EQ(d.deltanet.n_v_heads, 3);  // n_heads
  EXPECT_EQ(d.pattern(), "G-K-*-");
  EXPECT_TRUE(d.attention.gated);
  const ModelConfig round_trip = ModelConfig::from_json(d.to_json());
  EXPECT_EQ(round_trip.to_json(), d.to_json());
}

TEST(ModelConfig, DeltaNetLettersAndNames) {
  const ModelConfig a = ModelConfig::from_json(R"({"d_model": 16, "pattern": "GK"})");
  const ModelConfig b =
      ModelConfig::from_json(R"({"d_model": 16, "layers": ["gated_deltanet", "kda"]})");
  EXPECT_EQ(a.layers, b.layers);
  EXPECT_EQ(a.count(LayerKind::gated_deltanet), 1);
  EXPECT_EQ(a.count(LayerKind::kda), 1);
}

TEST(ModelConfig, MonarchMlpRoundTrips) {
  const ModelConfig c = ModelConfig::from_json(
      R"({"d_model": 64, "pattern": "*-", "mlp": {"kind": "monarch", "nblocks": 8}})");
  EXPECT_EQ(c.mlp.kind, ProjectionKind::monarch);
  EXPECT_EQ(c.mlp.nblocks, 8);
  const ModelConfig again = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(again.mlp.kind, ProjectionKind::monarch);
  EXPECT_EQ(again.mlp.nblocks, 8);
  EXPECT_EQ(again.to_json(), c.to_json());
}

TEST(ModelConfig, BadConfigsNameTheKey) {
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "M-X"})"),
                       "unknown layer letter 'X'", "position 2");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "*", "widht": 3})"),
                       "unknown key 'widht'");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "*", "attention": {"n_head": 2}})"),
      "unknown key 'attention.n_head'", "n_heads");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": "64", "pattern": "*"})"),
                       "'d_model' must be an integer", "string");
  // 2^64 - 1 was read back as -1 and reported so.
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 18446744073709551615, "pattern": "*"})"),
      "'d_model' is too large, got 18446744073709551615");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "*", "attention": {"n_heads": 5}})"),
      "'attention.n_heads'", "must divide d_model 64", "got 5");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(
                           R"({"d_model": 64, "pattern": "*",
                               "attention": {"n_heads": 4, "n_kv_heads": 3}})"),
                       "'attention.n_kv_heads'");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "M", "mamba": {"d_conv": 5}})"),
      "'mamba.d_conv'", "[1, 4]", "got 5");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "S", "mamba2": {"head_dim": 48}})"),
      "'mamba2.head_dim'", "128");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "G",
                           "deltanet": {"n_heads": 2, "n_v_heads": 3}})"),
                       "'deltanet.n_v_heads'", "multiple of deltanet.n_heads 2", "got 3");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "K", "deltanet": {"head_k_dim": 0}})"),
      "'deltanet.head_k_dim'", "[1, 512]", "got 0");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "G", "deltanet": {"d_conv": 5}})"),
      "'deltanet.d_conv'", "[1, 4]");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "G", "deltanet": {"chunk_size": 512}})"),
      "'deltanet.chunk_size'", "[1, 256]");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "*", "attention": {"gated": 1}})"),
      "'attention.gated' must be true or false");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "layers": ["mamba", "lstm"]})"),
                       "'layers[1]'", "lstm");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64})"), "'pattern'", "is required");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "*",)"),
                       "not valid JSON");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 0, "pattern": "*"})"), "'d_model'",
                       "must be in [1, 262144]");
  EXPECT_LONGCTX_ERROR(ModelConfig::load("/nonexistent/model.json"), "cannot open");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "-", "mlp": {"kind": "sparse"}})"),
      "'mlp.kind'", "\"dense\" or \"monarch\"", "sparse");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "-",
                                                  "mlp": {"kind": "monarch", "nblocks": 3}})"),
                       "'mlp.nblocks'", "must divide d_model 64 and mlp.hidden 192", "got 3");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "-",
                                                  "mlp": {"kind": "monarch", "nblocks": 0}})"),
                       "'mlp.nblocks'", "must be in [1, 262144]", "got 0");
  // A repeated key was accepted, the last one winning; nesting is bounded.
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "d_model": 8, "pattern": "*"})"),
                       "config: duplicate key 'd_model'");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "M",
                           "mamba": {"d_state": 8, "d_state": 4}})"),
                       "duplicate key 'd_state'");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "*", "name": [[[[[1]]]]]})"),
      "nests deeper than 4 levels");
}

// Every size is bounded, and derived widths are computed without overflow: a config comes from
// checkpoints too, and mlp.hidden = 2^60 made `train` write past its parameter buffer.
TEST(ModelConfig, SizesAreBounded) {
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"vocab_size": 64, "d_model": 4, "pattern": "-",
                                                  "mlp": {"hidden": 1152921504606846976}})"),
                       "'mlp.hidden'", "must be in [1, 262144]", "got 1152921504606846976");
  // expand * d_model = 2^64 wraps to 0 in int64 arithmetic.
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 4, "pattern": "S",
                           "mamba2": {"expand": 4611686018427387904, "head_dim": 1}})"),
                       "'mamba2.expand'");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 4096, "pattern": "M",
                                                  "mamba": {"expand": 128}})"),
                       "'mamba.expand'", "inner width", "524288");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"vocab_size": 1099511627776, "d_model": 4,
                                                  "pattern": "-"})"),
                       "'vocab_size'", "16777216");
  // A window wider than an int was silently truncated (2^32 + 1 trained as window 1).
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 32, "pattern": "W",
                           "attention": {"n_heads": 2, "n_kv_heads": 2, "window": 4294967297}})"),
                       "'attention.window'", "2147483647");
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 8, "pattern": ")" + std::string(5000, '-') + R"("})"),
      "'pattern'", "5000 layers", "4096");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "S",
                                                  "mamba2": {"chunk_size": 1000000}})"),
                       "'mamba2.chunk_size'");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "G",
                           "deltanet": {"n_heads": 262144, "n_v_heads": 262144,
                                        "head_v_dim": 512}})"),
                       "'deltanet.n_heads'", "key width");
  EXPECT_LONGCTX_ERROR(ModelConfig::from_json(R"({"d_model": 64, "pattern": "K",
                           "deltanet": {"n_heads": 1, "n_v_heads": 4611686018427387904}})"),
                       "'deltanet.n_v_heads'");
  // dt_bias = softplus^-1(dt) is an f32 parameter: dt_max 1e300 passed and gave NaN at step 1.
  EXPECT_LONGCTX_ERROR(
      ModelConfig::from_json(R"({"d_model": 64, "pattern": "M", "mamba": {"dt_max": 1e300}})"),
      "'mamba.dt_min'", "0 < dt_min <= dt_max <= 1000", "got 0.001 and 1e+300");
  // Every section is written by to_json, the unused ones too: a NaN there passed, became null,
  // and the checkpoint saved with it could not be read back. A name of invalid UTF-8 threw
  // nlohmann's exception out of to_json.
  ModelConfig unused = ModelConfig::from_json(R"({"d_model": 64, "pattern": "*-"})");
  unused.mamba.dt_max = std::nan("");
  EXPECT_LONGCTX_ERROR(unused.validate(), "'mamba.dt_max'", "must be a finite number, got nan");
  ModelConfig named = ModelConfig::from_json(R"({"d_model": 64, "pattern": "*-"})");
  named.name = "caf\xe9";
  EXPECT_LONGCTX_ERROR(named.validate(), "'name'", "valid UTF-8");
  // The largest values allowed still build a config.
  EXPECT_NO_THROW(ModelConfig::from_json(R"({"d_model": 32, "pattern": "W-",
      "attention": {"n_heads": 2, "n_kv_heads": 2, "window": 2147483647}, "mlp": {"hidden": 262144}})"));
}

}  // namespace
}  // namespace longctx::test
