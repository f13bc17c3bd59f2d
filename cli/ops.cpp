// The op registry and `longctx op`: load the input file, check it against the op's spec, run the
// op on the requested device, save its outputs (see cli/ops.h).
#include "cli/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

namespace longctx::cli {

namespace {

// One line per op family; see "HOW TO ADD AN OP" in cli/ops.h.
const std::vector<std::vector<OpSpec> (*)()> kFamilies = {
    rmsnorm_ops, basic_ops, attention_ops, scan_ops, monarch_ops, gated_delta_rule_ops,
};

// Keys that other writers put in "__metadata__" and that mean nothing to an op: accepted, ignored.
// (PyTorch's safetensors writer adds "format": "pt".)
const std::vector<std::string> kIgnoredMetadata = {"format"};

std::string bare(const std::string& name) {
  return !name.empty() && name[0] == '?' ? name.substr(1) : name;
}
bool optional(const std::string& name) {
  return !name.empty() && name[0] == '?';
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + bare(n);
  return out.empty() ? "none" : out;
}

nlohmann::json parse_value(const std::string& op, const std::string& key, const std::string& text,
                           const char* expected) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw Error(detail::concat("op ", op, ": metadata '", key, "' must be ", expected, ", got '",
                               text, "'"));
  }
}

template <class Int>
Int parse_int(const std::string& op, const std::string& key, const nlohmann::json& v,
              const std::string& text) {
  if (!v.is_number_integer())
    throw Error(
        detail::concat("op ", op, ": metadata '", key, "' must be an integer, got '", text, "'"));
  if ((v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<Int>::max())) ||
      (!v.is_number_unsigned() && v.get<int64_t>() < int64_t(std::numeric_limits<Int>::min())))
    throw Error(detail::concat("op ", op, ": metadata '", key, "' must be an integer in [",
                               int64_t(std::numeric_limits<Int>::min()), ", ",
                               int64_t(std::numeric_limits<Int>::max()), "], got '", text, "'"));
  return Int(v.get<int64_t>());
}

}  // namespace

// ---- OpCall ------------------------------------------------------------------------------------

const Tensor& OpCall::input(const std::string& name) const {
  auto it = inputs_.find(name);
  LONGCTX_CHECK(it != inputs_.end(), "op ", op_, ": missing tensor '", name, "'");
  return it->second;
}

Tensor OpCall::optional_input(const std::string& name) const {
  auto it = inputs_.find(name);
  return it == inputs_.end() ? Tensor() : it->second;
}

const std::string* OpCall::find_option(const std::string& key) const {
  auto it = options_.find(key);
  return it == options_.end() ? nullptr : &it->second;
}

void OpCall::option(const std::string& key, double* value) const {
  const std::string* text = find_option(key);
  if (!text) return;
  const nlohmann::json v = parse_value(op_, key, *text, "a number");
  LONGCTX_CHECK(v.is_number(), "op ", op_, ": metadata '", key, "' must be a number, got '", *text,
                "'");
  *value = v.get<double>();
}

// An f32 option (attention's softmax_scale, softcap) takes the number as f32 holds it, which must
// still be the number given: a softcap of 1e-50 became 0, "off", without a word, and a scale of
// 1e39 inf.
void OpCall::option(const std::string& key, float* value) const {
  double d = *value;
  option(key, &d);
  const float f = float(d);
  LONGCTX_CHECK(std::isfinite(f) || !std::isfinite(d), "op ", op_, ": metadata '", key, "' = ", d,
                " is beyond f32's range (this option is f32)");
  LONGCTX_CHECK(f != 0 || d == 0, "op ", op_, ": metadata '", key, "' = ", d,
                " rounds to 0 in f32 (this option is f32)");
  *value = f;
}

void OpCall::option(const std::string& key, bool* value) const {
  const std::string* text = find_option(key);
  if (!text) return;
  const nlohmann::json v = parse_value(op_, key, *text, "true or false");
  LONGCTX_CHECK(v.is_boolean(), "op ", op_, ": metadata '", key, "' must be true or false, got '",
                *text, "'");
  *value = v.get<bool>();
}

void OpCall::option(const std::string& key, int* value) const {
  const std::string* text = find_option(key);
  if (!text) return;
  *value = parse_int<int>(op_, key, parse_value(op_, key, *text, "an integer"), *text);
}

void OpCall::option(const std::string& key, int64_t* value) const {
  const std::string* text = find_option(key);
  if (!text) return;
  *value = parse_int<int64_t>(op_, key, parse_value(op_, key, *text, "an integer"), *text);
}

void OpCall::option(const std::string& key, std::string* value) const {
  if (const std::string* text = find_option(key)) *value = *text;
}

void OpCall::option(const std::string& key, std::string* value,
                    const std::vector<std::string>& choices) const {
  const std::string* text = find_option(key);
  if (!text) return;
  LONGCTX_CHECK(std::find(choices.begin(), choices.end(), *text) != choices.end(), "op ", op_,
                ": metadata '", key, "' must be one of ", join(choices), ", got '", *text, "'");
  *value = *text;
}

void OpCall::option(const std::string& key, std::vector<int64_t>* value) const {
  const std::string* text = find_option(key);
  if (!text) return;
  const nlohmann::json v = parse_value(op_, key, *text, "a list of integers");
  LONGCTX_CHECK(v.is_array(), "op ", op_, ": metadata '", key,
                "' must be a list of integers like [64, 0], got '", *text, "'");
  std::vector<int64_t> out;
  for (const auto& e : v) out.push_back(parse_int<int64_t>(op_, key, e, *text));
  *value = out;
}

Tensor OpCall::output(const std::string& name, const Shape& shape, DType dtype) {
  LONGCTX_CHECK(!outputs_.count(name), "op ", op_, ": output '", name, "' created twice");
  // Outputs are sized from the inputs before the op has validated them: 3 tokens and a table of
  // shape (0, 2^59) asked for a (3, 2^59) output, over 2^62 bytes. The error says where the size
  // came from.
  try {
    Tensor t = Tensor::empty(shape, dtype, ctx.device(), &ctx);
    outputs_.emplace(name, t);
    return t;
  } catch (const Error& e) {
    std::string shapes;
    for (const auto& [input, tensor] : inputs_)
      shapes += detail::concat(shapes.empty() ? "" : ", ", input, " ", shape_str(tensor.shape()));
    throw Error(detail::concat("op ", op_, ": output '", name, "' of shape ", shape_str(shape),
                               ", sized from the inputs (", shapes,
                               "), cannot be allocated: ", e.what()));
  }
}

// ---- The table ---------------------------------------------------------------------------------

const std::vector<OpSpec>& op_table() {
  static const std::vector<OpSpec> table = [] {
    std::vector<OpSpec> all;
    for (auto family : kFamilies)
      for (OpSpec& spec : family()) all.push_back(std::move(spec));
    return all;
  }();
  return table;
}

const OpSpec* find_op(const std::string& name) {
  for (const OpSpec& spec : op_table())
    if (spec.name == name) return &spec;
  return nullptr;
}

// ---- Running -----------------------------------------------------------------------------------

void run_op(const OpRun& run) {
  const OpSpec* spec = find_op(run.op);
  if (!spec) {
    std::vector<std::string> names;
    for (const OpSpec& s : op_table()) names.push_back(s.name);
    throw Error("unknown op '" + run.op + "' (known: " + join(names) + ")");
  }
  LONGCTX_CHECK(!run.backward || spec->backward, "op ", run.op, " has no backward");

  const Device device = parse_device(run.device);
  if (device.is_cuda()) {
    const CudaStatus status = cuda_status();
    LONGCTX_CHECK(status.available(), "--device ", run.device,
                  ": no usable CUDA device: ", status.reason);
    LONGCTX_CHECK(device.index < int(status.devices.size()), "--device ", run.device, ": only ",
                  status.devices.size(), " CUDA device(s) present");
  }

  SafetensorsFile file = load_safetensors(run.in);

  // Every metadata key must be an option of this op.
  for (const auto& [key, value] : file.metadata) {
    const bool known =
        std::find(spec->options.begin(), spec->options.end(), key) != spec->options.end() ||
        std::find(kIgnoredMetadata.begin(), kIgnoredMetadata.end(), key) != kIgnoredMetadata.end();
    LONGCTX_CHECK(known, "op ", run.op, ": unknown metadata key '", key, "' in ", run.in,
                  " (options of ", run.op, ": ", join(spec->options), ")");
  }
  // Every required tensor present; none unknown. Backward-only tensors are accepted (and
  // ignored) by a forward, so that one file can drive both.
  std::vector<std::string> expected = spec->inputs;
  expected.insert(expected.end(), spec->backward_inputs.begin(), spec->backward_inputs.end());
  for (const std::string& name : spec->inputs)
    LONGCTX_CHECK(optional(name) || file.tensors.count(name), "op ", run.op, ": missing tensor '",
                  name, "' in ", run.in, " (inputs of ", run.op, ": ", join(spec->inputs), ")");
  if (run.backward)
    for (const std::string& name : spec->backward_inputs)
      LONGCTX_CHECK(optional(name) || file.tensors.count(name), "op ", run.op,
                    " --backward: missing tensor '", name, "' in ", run.in,
                    " (gradients of the outputs: ", join(spec->backward_inputs), ")");
  for (const auto& [name, t] : file.tensors) {
    const bool known = std::any_of(expected.begin(), expected.end(),
                                   [&](const std::string& e) { return bare(e) == name; });
    LONGCTX_CHECK(known, "op ", run.op, ": tensor '", name, "' in ", run.in,
                  " is not an input (inputs: ", join(spec->inputs),
                  spec->backward ? "; with --backward also: " + join(spec->backward_inputs) : "",
                  ")");
  }

  Context ctx(device, run.threads);
  std::map<std::string, Tensor> inputs;
  for (auto& [name, t] : file.tensors)
    inputs.emplace(name, device.is_cpu() ? t : t.to(device, &ctx));
  OpCall call(ctx, run.op, std::move(inputs), std::move(file.metadata));
  (run.backward ? spec->backward : spec->forward)(call);
  ctx.synchronize();

  std::map<std::string, Tensor> outputs;
  for (const auto& [name, t] : call.outputs())
    outputs.emplace(name, t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx));
  save_safetensors(run.out, outputs,
                   {{"op", run.op}, {"pass", run.backward ? "backward" : "forward"}});
}

}  // namespace longctx::cli
