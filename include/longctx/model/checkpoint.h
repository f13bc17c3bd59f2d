// Checkpoints: a model's parameters in one safetensors file, its config (ModelConfig::to_json) in
// the file's __metadata__ under "longctx.config", plus whatever a trainer adds: tensors named
// "state.<anything>" (optimizer moments, ...) and metadata strings (step, RNG state, ...). The
// write is atomic (temporary file, fsync, rename): a failed save leaves the previous checkpoint
// at `path` intact. The file is plain safetensors: Python's safetensors loader opens it.
#pragma once

#include <map>
#include <string>

#include "longctx/io/safetensors.h"
#include "longctx/model/model.h"

namespace longctx {

// `extra_tensors` must be named "state.<name>"; `extra_metadata` must not use "longctx.config".
void save_checkpoint(const std::string& path, const Model& model,
                     const std::map<std::string, Tensor>& extra_tensors = {},
                     const std::map<std::string, std::string>& extra_metadata = {});

// Loads the parameters into `model` after checking the file against it: the same config (its
// name aside: a label), every parameter present with the model's shape and dtype, no tensor that
// is neither a parameter nor "state.*". Each mismatch names the tensor or the config key.
// Returns the whole file (the "state.*" tensors and the metadata are for the caller).
SafetensorsFile load_checkpoint(const std::string& path, Model& model);

// The config a checkpoint was saved with, to build the model it fits; checked first against the
// file's tensors (every parameter of that model present with its shape), so that a config edited
// to a larger model is an error before any model is built.
ModelConfig checkpoint_config(const std::string& path);

}  // namespace longctx
