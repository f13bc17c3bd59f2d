// `longctx op` for the basic ops: linear, rope, swiglu, embedding, cross_entropy, adamw.
// Tensor and option names are those of the ops' public headers (include/longctx/ops/*.h).
#include "cli/ops.h"

namespace longctx::cli {

namespace {

// Output shapes are derived defensively: with malformed inputs (wrong rank) they fall back to
// something allocatable, and the op's own validation then reports the problem by name.
Shape with_last(const Tensor& t, int64_t last) {
  Shape s = t.shape();
  if (!s.empty()) s.back() = last;
  return s;
}
Shape without_last(const Tensor& t) {
  Shape s = t.shape();
  if (!s.empty()) s.pop_back();
  return s;
}
int64_t size_or_zero(const Tensor& t, int d) {
  return t.dim() > d ? t.size(d) : 0;
}
// ---- linear: x (..., Cin), weight (Cout, Cin), bias (Cout) -> out (..., Cout) ----
void linear_forward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& weight = call.input("weight");
  const Tensor out = call.output("out", with_last(x, size_or_zero(weight, 0)), x.dtype());
  linear_fwd(call.ctx, out, x, weight, call.optional_input("bias"));
}
void linear_backward(OpCall& call) {
  const Tensor& x = call.input("x");
  const Tensor& weight = call.input("weight");
  const Tensor bias = call.optional_input("bias");
  const Tensor dbias = bias.defined() ? call.output("dbias", bias.shape(), bias.dtype()) : Tensor();
  linear_bwd(call.ctx, call.output("dx", x.shape(), x.dtype()),
             call.output("dweight", weight.shape(), weight.dtype()), dbias, call.input("dout"), x,
             weight);
}

// ---- rope: x (B, T, H, D), positions (B, T) i32; option theta ----
void rope_forward(OpCall& call) {
  const Tensor& x = call.input("x");
  RopeParams params;
  call.option("theta", &params.theta);
  rope_fwd(call.ctx, call.output("out", x.shape(), x.dtype()), x, call.optional_input("positions"),
           params);
}
void rope_backward(OpCall& call) {
  const Tensor& x = call.input("x");
  RopeParams params;
  call.option("theta", &params.theta);
  rope_bwd(call.ctx, call.output("dx", x.shape(), x.dtype()), call.input("dout"),
           call.optional_input("positions"), params);
}

// ---- swiglu: gate, up (..., C) -> out = silu(gate) * up ----
void swiglu_forward(OpCall& call) {
  const Tensor& gate = call.input("gate");
  swiglu_fwd(call.ctx, call.output("out", gate.shape(), gate.dtype()), gate, call.input("up"));
}
void swiglu_backward(OpCall& call) {
  const Tensor& gate = call.input("gate");
  const Tensor& up = call.input("up");
  swiglu_bwd(call.ctx, call.output("dgate", gate.shape(), gate.dtype()),
             call.output("dup", up.shape(), up.dtype()), call.input("dout"), gate, up);
}

// ---- embedding: tokens (...) i32, table (V, C) -> out (..., C) ----
void embedding_forward(OpCall& call) {
  const Tensor& tokens = call.input("tokens");
  const Tensor& table = call.input("table");
  Shape shape = tokens.shape();
  shape.push_back(size_or_zero(table, 1));
  embedding_fwd(call.ctx, call.output("out", shape, table.dtype()), tokens, table);
}
void embedding_backward(OpCall& call) {
  const Tensor& table = call.input("table");
  embedding_bwd(call.ctx, call.output("dtable", table.shape(), table.dtype()), call.input("dout"),
                call.input("tokens"));
}

// ---- cross_entropy: logits (..., V), targets (...) i32; option ignore_index ----
void cross_entropy_forward(OpCall& call) {
  const Tensor& logits = call.input("logits");
  CrossEntropyParams params;
  call.option("ignore_index", &params.ignore_index);
  cross_entropy_fwd(call.ctx, call.output("loss", {1}, stat_dtype(logits.dtype())),
                    call.output("lse", without_last(logits), stat_dtype(logits.dtype())), logits,
                    call.input("targets"), params);
}
void cross_entropy_backward(OpCall& call) {
  const Tensor& logits = call.input("logits");
  const Tensor& targets = call.input("targets");
  CrossEntropyParams params;
  call.option("ignore_index", &params.ignore_index);
  const Device dev = call.ctx.device();
  const Tensor loss = Tensor::empty({1}, stat_dtype(logits.dtype()), dev, &call.ctx);
  const Tensor lse = Tensor::empty(without_last(logits), stat_dtype(logits.dtype()), dev, &call.ctx);
  cross_entropy_fwd(call.ctx, loss, lse, logits, targets, params);
  cross_entropy_bwd(call.ctx, call.output("dlogits", logits.shape(), logits.dtype()),
                    call.input("dloss"), logits, targets, lse, params);
}

// ---- adamw: one step; writes the updated param, m, v (and param_copy when given) ----
void adamw_forward(OpCall& call) {
  AdamWParams params;
  call.option("lr", &params.lr);
  call.option("beta1", &params.beta1);
  call.option("beta2", &params.beta2);
  call.option("eps", &params.eps);
  call.option("weight_decay", &params.weight_decay);
  call.option("step", &params.step);
  call.option("grad_scale", &params.grad_scale);
  // The step is in place: run it on copies that become the outputs.
  auto updated = [&](const std::string& name) {
    const Tensor& in = call.input(name);
    const Tensor t = call.output(name, in.shape(), in.dtype());
    t.copy_from(in, &call.ctx);
    return t;
  };
  const Tensor param = updated("param"), m = updated("m"), v = updated("v");
  const Tensor copy = call.optional_input("param_copy");
  const Tensor param_copy =
      copy.defined() ? call.output("param_copy", copy.shape(), copy.dtype()) : Tensor();
  adamw_step(call.ctx, param, m, v, call.input("grad"), params, param_copy);
}

}  // namespace

std::vector<OpSpec> basic_ops() {
  return {
      {"linear",
       "out = x @ weight^T + bias",
       {"x", "weight", "?bias"},
       {},
       {"dout"},
       linear_forward,
       linear_backward},
      {"rope",
       "rotary position embedding (rotate_half), x (B, T, H, D)",
       {"x", "?positions"},
       {"theta"},
       {"dout"},
       rope_forward,
       rope_backward},
      {"swiglu",
       "out = silu(gate) * up",
       {"gate", "up"},
       {},
       {"dout"},
       swiglu_forward,
       swiglu_backward},
      {"embedding",
       "out = table[tokens]",
       {"tokens", "table"},
       {},
       {"dout"},
       embedding_forward,
       embedding_backward},
      {"cross_entropy",
       "mean cross entropy of logits (..., V) against i32 targets",
       {"logits", "targets"},
       {"ignore_index"},
       {"dloss"},
       cross_entropy_forward,
       cross_entropy_backward},
      {"adamw",
       "one AdamW step; writes the updated param, m, v (and param_copy)",
       {"param", "m", "v", "grad", "?param_copy"},
       {"lr", "beta1", "beta2", "eps", "weight_decay", "step", "grad_scale"},
       {},
       adamw_forward,
       nullptr},
  };
}

}  // namespace longctx::cli
