// Checkpoints: a bitwise round trip (parameters, state tensors, metadata, the same logits), the
// config read back, every kind of mismatch named (config key, missing / unexpected tensor, shape,
// dtype), garbage and truncated files, a failed save leaving the old checkpoint intact, and
// Python's safetensors loader opening the file.
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "longctx/model/checkpoint.h"

namespace longctx::test {
namespace {

const char* kConfig = R"({"name": "tiny", "vocab_size": 11, "d_model": 16, "pattern": "*-SMGK",
    "attention": {"n_heads": 2, "n_kv_heads": 1, "gated": true}, "mamba": {"d_state": 4},
    "mamba2": {"d_state": 8, "head_dim": 8},
    "deltanet": {"n_heads": 1, "n_v_heads": 2, "head_k_dim": 4, "head_v_dim": 4}})";

Tensor tokens_2x7() {
  Tensor t = Tensor::empty({2, 7}, DType::i32);
  for (int i = 0; i < 14; ++i) t.data_as<int32_t>()[i] = (i * 5) % 11;
  return t;
}

// A model whose MLPs are Monarch matrices (two factor tensors per projection).
const char* kMonarchConfig = R"({"name": "tiny-monarch", "vocab_size": 11, "d_model": 16,
    "pattern": "*-", "attention": {"n_heads": 2, "n_kv_heads": 1},
    "mlp": {"kind": "monarch", "nblocks": 4, "hidden": 32}})";

class CheckpointRoundTrip : public testing::TestWithParam<const char*> {};

TEST_P(CheckpointRoundTrip, Bitwise) {
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  Model a(ModelConfig::from_json(GetParam()), ctx, DType::f32, /*seed=*/1);
  Tensor moment = Tensor::empty({5}, DType::f32);
  for (int i = 0; i < 5; ++i) moment.data_as<float>()[i] = float(i) / 3;
  save_checkpoint(dir.file("a.safetensors"), a, {{"state.m", moment}}, {{"step", "42"}});

  const ModelConfig config = checkpoint_config(dir.file("a.safetensors"));
  EXPECT_EQ(config.to_json(), a.config().to_json());
  Model b(config, ctx, DType::f32, /*seed=*/2);  // other initial values
  const SafetensorsFile file = load_checkpoint(dir.file("a.safetensors"), b);
  for (size_t i = 0; i < a.params().tensors().size(); ++i) {
    const Tensor& pa = a.params().tensors()[i].tensor;
    const Tensor& pb = b.params().tensors()[i].tensor;
    EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.nbytes()), 0) << a.params().tensors()[i].name;
  }
  EXPECT_EQ(std::memcmp(file.tensors.at("state.m").data(), moment.data(), moment.nbytes()), 0);
  EXPECT_EQ(file.metadata.at("step"), "42");
  a.forward(tokens_2x7());
  const Ref la = to_ref(a.logits());
  b.forward(tokens_2x7());
  EXPECT_EQ(max_abs_diff(la, to_ref(b.logits())), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Configs, CheckpointRoundTrip, testing::Values(kConfig, kMonarchConfig),
                         [](const auto& info) {
                           return std::string(info.index == 0 ? "hybrid" : "monarch_mlp");
                         });

// Writes `tensors` with the tiny model's config as a checkpoint would have it.
void write_file(const std::string& path, const Model& m, std::map<std::string, Tensor> tensors) {
  save_safetensors(path, tensors, {{"longctx.config", m.config().to_json()}});
}

std::map<std::string, Tensor> params_of(const Model& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.params().tensors()) out[name] = t;
  return out;
}

TEST(Checkpoint, MismatchesAreNamed) {
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  Model model(ModelConfig::from_json(kConfig), ctx, DType::f32, 1);
  const std::string path = dir.file("c.safetensors");

  ModelConfig other_config = ModelConfig::from_json(kConfig);
  other_config.mamba2.d_state = 4;
  save_checkpoint(path, Model(other_config, ctx, DType::f32, 1));
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), "differs from the model's at 'mamba2.d_state'",
                       "checkpoint: 4, model: 8");
  // Only the name differs: the same architecture, which loads (train --init with a --pattern
  // that is the preset's own was refused).
  ModelConfig renamed = ModelConfig::from_json(kConfig);
  renamed.name = "another-name";
  const Model source(renamed, ctx, DType::f32, 7);
  save_checkpoint(path, source);
  load_checkpoint(path, model);
  EXPECT_EQ(max_abs_diff(to_ref(model.params().flat()), to_ref(source.params().flat())), 0.0);

  auto missing = params_of(model);
  missing.erase("final_norm");
  write_file(path, model, missing);
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), "parameter 'final_norm' is missing");

  auto unexpected = params_of(model);
  unexpected["layers.9.attn.wq"] = Tensor::zeros({2}, DType::f32);
  write_file(path, model, unexpected);
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model),
                       "tensor 'layers.9.attn.wq' is not a parameter");

  auto reshaped = params_of(model);
  reshaped["embed"] = Tensor::zeros({11, 8}, DType::f32);
  write_file(path, model, reshaped);
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), "parameter 'embed' has shape (11, 8)",
                       "the model's is (11, 16)");

  auto retyped = params_of(model);
  retyped["final_norm"] = retyped["final_norm"].to_dtype(DType::f64);
  write_file(path, model, retyped);
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), "parameter 'final_norm' is f64",
                       "the model's is f32");

  save_safetensors(path, params_of(model));  // no config
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), "no 'longctx.config'");
  EXPECT_LONGCTX_ERROR(save_checkpoint(path, model, {{"m", Tensor::zeros({1}, DType::f32)}}),
                       "must start with 'state.'");
}

// A checkpoint is untrusted input: a config in its metadata with impossible sizes (mlp.hidden =
// 2^60 crashed `generate` and `train --init` in init_normal) is an error naming the file and key
// before any model is built.
TEST(Checkpoint, HostileConfigIsAnErrorNamingTheFile) {
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  const std::string path = dir.file("hostile.safetensors"), where = "checkpoint " + path;
  save_safetensors(path, {{"embed", Tensor::zeros({64, 4}, DType::f32)}},
                   {{"longctx.config", R"({"name": "x", "vocab_size": 64, "d_model": 4,
                      "pattern": "-", "mlp": {"hidden": 1152921504606846976}})"}});
  EXPECT_LONGCTX_ERROR(checkpoint_config(path), where.c_str(), "'mlp.hidden'");
  Model model(ModelConfig::from_json(kConfig), ctx, DType::f32, 1);
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), where.c_str(), "'mlp.hidden'");
  save_safetensors(path, {}, {{"longctx.config", "{not json"}});
  EXPECT_LONGCTX_ERROR(checkpoint_config(path), where.c_str(), "not valid JSON");
  EXPECT_LONGCTX_ERROR(load_checkpoint(path, model), where.c_str(), "not valid JSON");
}

// A config edited to a larger model than the file's tensors hold (an 87 KB checkpoint saying
// vocab_size 2^24 had `generate` allocate and initialise 5 GB before its tensors were checked):
// checkpoint_config refuses it, naming the tensor, before any model of it is built; every
// parameter missing is refused too, and the file as saved still reads.
TEST(Checkpoint, ConfigLargerThanItsTensorsIsRefusedBeforeAModelIsBuilt) {
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  Model model(ModelConfig::from_json(kConfig), ctx, DType::f32, 1);
  const std::string path = dir.file("edited.safetensors");
  save_checkpoint(path, model);
  EXPECT_EQ(checkpoint_config(path).to_json(), model.config().to_json());
  const std::string config = model.config().to_json();
  nlohmann::json edited = nlohmann::json::parse(config);
  edited["vocab_size"] = 16777216;
  const std::string inflated = edited.dump();
  save_safetensors(path, params_of(model), {{"longctx.config", inflated}});
  EXPECT_LONGCTX_ERROR(checkpoint_config(path), path.c_str(),
                       "parameter 'embed' has shape (11, 16)", "the model's is (16777216, 16)",
                       "do not fit its config");
  auto missing = params_of(model);
  missing.erase("final_norm");
  save_safetensors(path, missing, {{"longctx.config", config}});
  EXPECT_LONGCTX_ERROR(checkpoint_config(path), "parameter 'final_norm' is missing");
}

TEST(Checkpoint, BadFilesAreErrorsAndAFailedSaveKeepsTheOldOne) {
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  Model model(ModelConfig::from_json(kConfig), ctx, DType::f32, 1);
  const std::string path = dir.file("d.safetensors");
  std::ofstream(dir.file("garbage")) << "not a checkpoint at all";
  EXPECT_LONGCTX_ERROR(load_checkpoint(dir.file("garbage"), model), "garbage");
  EXPECT_LONGCTX_ERROR(load_checkpoint(dir.file("absent"), model), "absent");

  save_checkpoint(path, model);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir.file("truncated"), std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  EXPECT_LONGCTX_ERROR(load_checkpoint(dir.file("truncated"), model), "truncated");

  // A save that fails (an extra tensor with a bad name is refused before anything is written;
  // a path in a missing directory fails at the write) leaves the old file as it was.
  EXPECT_ANY_THROW(save_checkpoint(path, model, {{"bad", Tensor::zeros({1}, DType::f32)}}));
  EXPECT_ANY_THROW(save_checkpoint(dir.file("no/such/dir.safetensors"), model));
  std::ifstream again(path, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()),
            bytes);
}

TEST(Checkpoint, OpensInPythonSafetensors) {
  std::string py;
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (py.empty() &&
        std::system(
            (std::string(candidate) + " -c 'import numpy, safetensors' 2>/dev/null").c_str()) == 0)
      py = candidate;
  if (py.empty()) GTEST_SKIP() << "python3 with numpy and the safetensors package not found";
  Context& ctx = context_for(Device::cpu());
  TempDir dir;
  Model model(ModelConfig::from_json(kConfig), ctx, DType::f32, 1);
  save_checkpoint(dir.file("p.safetensors"), model);
  const std::string cmd = py +
                          " -c \"import json, sys; from safetensors import safe_open\n"
                          "with safe_open(sys.argv[1], 'numpy') as f:\n"
                          "  assert json.loads(f.metadata()['longctx.config'])['d_model'] == 16\n"
                          "  assert f.get_tensor('embed').shape == (11, 16)\n"
                          "  assert len(list(f.keys())) == " +
                          std::to_string(model.params().tensors().size()) + "\" " +
                          dir.file("p.safetensors");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace longctx::test
