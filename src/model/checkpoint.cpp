// Checkpoints, see include/longctx/model/checkpoint.h.
#include "longctx/model/checkpoint.h"

#include <nlohmann/json.hpp>

#include "src/core/checks.h"

namespace longctx {

namespace {

constexpr const char* kConfigKey = "longctx.config";
constexpr const char* kStatePrefix = "state.";

bool is_state(const std::string& name) {
  return name.rfind(kStatePrefix, 0) == 0;
}

// The first key path where two configs differ ("mamba2.d_state"), or "" when they are equal.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b,
                             const std::string& where) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      const std::string path = where.empty() ? key : where + "." + key;
      if (!b.contains(key)) return path;
      const std::string inner = first_difference(value, b[key], path);
      if (!inner.empty()) return inner;
    }
    for (const auto& [key, value] : b.items())
      if (!a.contains(key)) return where.empty() ? key : where + "." + key;
    return "";
  }
  return a == b ? "" : where;
}

// The value at a dotted key path, as JSON text, or "absent".
std::string value_at(const nlohmann::json& j, const std::string& path) {
  std::string pointer = "/" + path;
  for (char& c : pointer)
    if (c == '.') c = '/';
  const nlohmann::json::json_pointer p(pointer);
  return j.contains(p) ? j.at(p).dump() : "absent";
}

// The config in a checkpoint's metadata, validated: the file is untrusted input, and every size
// of the model built from it comes from here.
ModelConfig config_of(const std::map<std::string, std::string>& metadata, const std::string& path) {
  const auto it = metadata.find(kConfigKey);
  LONGCTX_CHECK(it != metadata.end(), "checkpoint ", path, ": no '", kConfigKey,
                "' in its __metadata__ (not a longctx checkpoint?)");
  try {
    return ModelConfig::from_json(it->second);
  } catch (const Error& e) {
    throw Error(detail::concat("checkpoint ", path, ": ", e.what()));
  }
}

// Every parameter of `params` (names and shapes, in order) present in the file with its shape;
// `shape_in_file` gives a tensor's shape, or null when the file has no such tensor.
template <class ShapeInFile>
void check_parameter_shapes(const ShapeInFile& shape_in_file, const std::string& path,
                            const std::vector<std::pair<std::string, Shape>>& params) {
  for (const auto& [name, shape] : params) {
    const Shape* found = shape_in_file(name);
    LONGCTX_CHECK(found, "checkpoint ", path, ": parameter '", name, "' is missing");
    LONGCTX_CHECK(*found == shape, "checkpoint ", path, ": parameter '", name, "' has shape ",
                  shape_str(*found), ", the model's is ", shape_str(shape));
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, Tensor>& extra_tensors,
                     const std::map<std::string, std::string>& extra_metadata) {
  const Context& ctx = model.context();
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, t] : model.params().tensors())
    tensors[name] = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
  for (const auto& [name, t] : extra_tensors) {
    check_value("save_checkpoint", "extra_tensors", is_state(name), "names must start with '",
                kStatePrefix, "', got '", name, "'");
    tensors[name] = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
  }
  std::map<std::string, std::string> metadata = extra_metadata;
  check_value("save_checkpoint", "extra_metadata", !metadata.count(kConfigKey), "must not set '",
              kConfigKey, "' (the model's config goes there)");
  metadata[kConfigKey] = model.config().to_json();
  save_safetensors(path, tensors, metadata);
}

SafetensorsFile load_checkpoint(const std::string& path, Model& model) {
  SafetensorsFile file = load_safetensors(path);
  nlohmann::json saved = nlohmann::json::parse(config_of(file.metadata, path).to_json());
  nlohmann::json mine = nlohmann::json::parse(model.config().to_json());
  // The name labels a model and is no part of its architecture: `train --init` of a run whose
  // --pattern is its preset's own was refused for "llama" against "llama-*-*-*-*-".
  saved.erase("name");
  mine.erase("name");
  const std::string diff = first_difference(saved, mine, "");
  LONGCTX_CHECK(diff.empty(), "checkpoint ", path, ": its config differs from the model's at '",
                diff, "' (checkpoint: ", value_at(saved, diff), ", model: ", value_at(mine, diff),
                "); build the model from checkpoint_config(path)");
  check_parameter_shapes(
      [&](const std::string& name) {
        const auto it = file.tensors.find(name);
        return it == file.tensors.end() ? nullptr : &it->second.shape();
      },
      path, model.params().declared());
  for (const auto& [name, param] : model.params().tensors()) {
    const Tensor& t = file.tensors.at(name);
    LONGCTX_CHECK(t.dtype() == param.dtype(), "checkpoint ", path, ": parameter '", name, "' is ",
                  dtype_name(t.dtype()), ", the model's is ", dtype_name(param.dtype()));
  }
  for (const auto& [name, t] : file.tensors) {
    if (is_state(name)) continue;
    bool known = false;
    for (const auto& p : model.params().tensors()) known = known || p.name == name;
    LONGCTX_CHECK(known, "checkpoint ", path, ": tensor '", name,
                  "' is not a parameter of this model (nor a 'state.' tensor)");
  }
  // Every check passed: only now is the model changed.
  for (const auto& [name, param] : model.params().tensors())
    param.copy_from(file.tensors.at(name), &model.context());
  return file;
}

ModelConfig checkpoint_config(const std::string& path) {
  // The header alone: `generate` read the file twice, config then parameters. An 834 MB training
  // checkpoint (llama at d_model 1024, 32 layers, with its moments) loads in 0.46 s and its
  // header in 1.5 ms: `generate --max-new-tokens 1` from it takes 3.5 s with this, and the
  // second read added those 0.46 s and the file's size in memory (2-core Zen 4 VM).
  const SafetensorsHeader header = load_safetensors_header(path);
  ModelConfig config = config_of(header.metadata, path);
  // The tensors against the config before anyone builds its model: a config edited to a larger
  // one (vocab_size 2^24 in an 87 KB file) had `generate` allocate and initialise 5 GB first.
  const ParamArena declared = Model::declared_parameters(config);
  try {
    check_parameter_shapes(
        [&](const std::string& name) {
          const auto it = header.tensors.find(name);
          return it == header.tensors.end() ? nullptr : &it->second.shape;
        },
        path, declared.declared());
  } catch (const Error& e) {
    throw Error(detail::concat(e.what(), " (the checkpoint's tensors do not fit its config)"));
  }
  return config;
}

}  // namespace longctx
