// The op registry behind `longctx op NAME --in IN.safetensors --out OUT.safetensors`.
//
// The input file holds the op's tensors, named as in the op's public header (x, weight, ...), and
// its scalar options as strings in "__metadata__" ("eps": "1e-5", "causal": "true",
// "window_left": "64"; every value is read as JSON except string options). A forward writes
// the op's outputs by their header names (out, rstd, lse, ...). With --backward the file also
// holds the output gradients (dout, and dlast_state / dfinal_states for ops with a state) and the
// CLI writes the input gradients d<input>. The tool checks before running that every required
// tensor is present and that no tensor or metadata key is unknown; the op validates shapes and
// dtypes itself. Every failure is one line on stderr and a non-zero exit.
//
// HOW TO ADD AN OP (or a family of ops)
//   1. Write cli/op_<family>.cpp with `std::vector<OpSpec> <family>_ops()` returning one OpSpec
//      per op — cli/op_rmsnorm.cpp is the example. In forward/backward: read tensors with
//      call.input("x") / call.optional_input("h0"), read options into the op's params struct
//      with call.option("eps", &params.eps) (absent keys keep the struct's default), allocate
//      results with call.output("out", shape, dtype), then call the public op. A backward that
//      needs tensors saved by the forward (rstd, lse, ...) runs the forward itself first.
//      Gradients are named "d" + the input's name.
//   2. Declare `<family>_ops()` below and add it to the table kFamilies in cli/ops.cpp.
//   3. Add the op to tests/cli_reference.py (numpy, float64) and a case to kCliOpCases in
//      tests/test_cli.cpp.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "longctx/longctx.h"

namespace longctx::cli {

// What an op's forward or backward function sees: the context, the input tensors (already on
// the context's device), the options, and the outputs it creates.
class OpCall {
 public:
  OpCall(const Context& ctx, std::string op, std::map<std::string, Tensor> inputs,
         std::map<std::string, std::string> options)
      : ctx(ctx), op_(std::move(op)), inputs_(std::move(inputs)), options_(std::move(options)) {}

  const Context& ctx;

  // A tensor from the input file; throws when absent.
  const Tensor& input(const std::string& name) const;
  // Undefined (Tensor()) when absent: how optional op arguments are left out.
  Tensor optional_input(const std::string& name) const;
  bool has_input(const std::string& name) const { return inputs_.count(name) != 0; }

  // Overwrites *value with the option's value when the file gives it; throws on a malformed one.
  void option(const std::string& key, double* value) const;
  void option(const std::string& key, float* value) const;
  void option(const std::string& key, bool* value) const;
  void option(const std::string& key, int* value) const;
  void option(const std::string& key, int64_t* value) const;
  void option(const std::string& key, std::string* value) const;
  // A string that must be one of `choices` ("activation": "silu").
  void option(const std::string& key, std::string* value,
              const std::vector<std::string>& choices) const;
  void option(const std::string& key, std::vector<int64_t>* value) const;

  // Allocates a result on the context's device, to be written to the output file as `name`.
  Tensor output(const std::string& name, const Shape& shape, DType dtype);
  const std::map<std::string, Tensor>& outputs() const { return outputs_; }

  const std::string& op() const { return op_; }

 private:
  const std::string* find_option(const std::string& key) const;

  std::string op_;
  std::map<std::string, Tensor> inputs_;
  std::map<std::string, std::string> options_;
  std::map<std::string, Tensor> outputs_;
};

using OpFn = std::function<void(OpCall&)>;

struct OpSpec {
  std::string name;
  std::string summary;                       // one line for `longctx ops`
  std::vector<std::string> inputs;           // forward inputs; a leading '?' marks optional ones
  std::vector<std::string> options;          // accepted "__metadata__" keys
  std::vector<std::string> backward_inputs;  // also needed with --backward; '?' = optional
  OpFn forward;
  OpFn backward;  // empty when the op has no backward
};

// Every registered op, in table order.
const std::vector<OpSpec>& op_table();
const OpSpec* find_op(const std::string& name);

struct OpRun {
  std::string op, in, out;
  std::string device = "cpu";
  bool backward = false;
  int threads = 0;  // CPU threads, 0 = all
};
// Loads, checks, runs and saves; throws longctx::Error on any problem.
void run_op(const OpRun& run);

// ---- Families: one function per cli/op_<family>.cpp ------------------------------------------
std::vector<OpSpec> rmsnorm_ops();
std::vector<OpSpec> basic_ops();      // linear, rope, swiglu, embedding, cross_entropy, adamw
std::vector<OpSpec> attention_ops();  // attention, attention_decode
std::vector<OpSpec> scan_ops();       // selective_scan, ssd, linear_scan, causal_conv1d
std::vector<OpSpec> monarch_ops();    // monarch_linear
std::vector<OpSpec> gated_delta_rule_ops();

}  // namespace longctx::cli
