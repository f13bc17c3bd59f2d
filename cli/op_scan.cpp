// `longctx op` for the recurrent ops: selective_scan, ssd, linear_scan, causal_conv1d. Tensor and
// option names are those of their public headers (include/longctx/ops/*.h); optional inputs are
// simply absent from the file. A backward writes d<input> for every input given, and accepts the
// gradient of the last state (dlast_state, dfinal_states) when the file holds it.
#include <algorithm>

#include "cli/ops.h"

namespace longctx::cli {

namespace {

// Output shapes are derived defensively: with an input of the wrong rank they fall back to an
// allocatable shape, and the op's own validation then reports the problem by name.
int64_t dim_or_zero(const Tensor& t, int d) {
  const int rank = int(t.dim());
  if (d < 0) d += rank;
  return d >= 0 && d < rank ? t.size(d) : 0;
}
// The number of sequences whose states a call has: N of a packed batch's cu_seqlens (N + 1), else
// the batch dimension of `x`.
int64_t sequences(const Tensor& cu_seqlens, const Tensor& x) {
  return cu_seqlens.defined() ? std::max<int64_t>(dim_or_zero(cu_seqlens, 0) - 1, 0)
                              : dim_or_zero(x, 0);
}
// The gradient of an optional input: defined exactly when the input is.
Tensor grad_of(OpCall& call, const std::string& name, const Tensor& input) {
  return input.defined() ? call.output("d" + name, input.shape(), input.dtype()) : Tensor();
}
Tensor grad_of(OpCall& call, const std::string& name) {
  return grad_of(call, name, call.input(name));
}

// ---- selective_scan: u, delta (B, Dm, T), A (Dm, N), B, C (B, G, N, T) -> out, last_state ----
SelectiveScanInputs selective_scan_inputs(const OpCall& call) {
  return {call.input("u"),           call.input("delta"),
          call.input("A"),           call.input("B"),
          call.input("C"),           call.optional_input("D"),
          call.optional_input("z"),  call.optional_input("delta_bias"),
          call.optional_input("h0"), call.optional_input("cu_seqlens")};
}
SelectiveScanParams selective_scan_params(const OpCall& call) {
  SelectiveScanParams params;
  call.option("delta_softplus", &params.delta_softplus);
  return params;
}
Shape selective_scan_state_shape(const SelectiveScanInputs& in) {
  return {sequences(in.cu_seqlens, in.u), dim_or_zero(in.u, 1), dim_or_zero(in.A, 1)};
}

void selective_scan_forward(OpCall& call) {
  const SelectiveScanInputs in = selective_scan_inputs(call);
  selective_scan_fwd(
      call.ctx, call.output("out", in.u.shape(), in.u.dtype()),
      call.output("last_state", selective_scan_state_shape(in), stat_dtype(in.u.dtype())), in,
      selective_scan_params(call));
}
void selective_scan_backward(OpCall& call) {
  const SelectiveScanInputs in = selective_scan_inputs(call);
  const SelectiveScanGrads grads = {
      grad_of(call, "u"),        grad_of(call, "delta"),
      grad_of(call, "A"),        grad_of(call, "B"),
      grad_of(call, "C"),        grad_of(call, "D", in.D),
      grad_of(call, "z", in.z),  grad_of(call, "delta_bias", in.delta_bias),
      grad_of(call, "h0", in.h0)};
  selective_scan_bwd(call.ctx, grads, call.input("dout"), call.optional_input("dlast_state"), in,
                     selective_scan_params(call));
}

// ---- ssd: x (B, T, H, P), dt (B, T, H), A (H), B, C (B, T, G, N) -> out, final_states ----
SSDInputs ssd_inputs(const OpCall& call) {
  return {call.input("x"),
          call.input("dt"),
          call.input("A"),
          call.input("B"),
          call.input("C"),
          call.optional_input("D"),
          call.optional_input("z"),
          call.optional_input("dt_bias"),
          call.optional_input("initial_states"),
          call.optional_input("cu_seqlens")};
}
SSDParams ssd_params(const OpCall& call) {
  SSDParams params;
  call.option("chunk_size", &params.chunk_size);
  call.option("dt_softplus", &params.dt_softplus);
  return params;
}

void ssd_forward(OpCall& call) {
  const SSDInputs in = ssd_inputs(call);
  const Shape state = {sequences(in.cu_seqlens, in.x), dim_or_zero(in.x, 2), dim_or_zero(in.x, 3),
                       dim_or_zero(in.B, -1)};
  ssd_fwd(call.ctx, call.output("out", in.x.shape(), in.x.dtype()),
          call.output("final_states", state, stat_dtype(in.x.dtype())), in, ssd_params(call));
}
void ssd_backward(OpCall& call) {
  const SSDInputs in = ssd_inputs(call);
  const SSDGrads grads = {grad_of(call, "x"),
                          grad_of(call, "dt"),
                          grad_of(call, "A"),
                          grad_of(call, "B"),
                          grad_of(call, "C"),
                          grad_of(call, "D", in.D),
                          grad_of(call, "z", in.z),
                          grad_of(call, "dt_bias", in.dt_bias),
                          grad_of(call, "initial_states", in.initial_states)};
  ssd_bwd(call.ctx, grads, call.input("dout"), call.optional_input("dfinal_states"), in,
          ssd_params(call));
}

// ---- linear_scan: a, b (B, T, D) [, h0 (B, D)] -> out (B, T, D), last_state (B, D) ----
Shape linear_scan_state_shape(const Tensor& a, const Tensor& cu_seqlens) {
  return {sequences(cu_seqlens, a), dim_or_zero(a, 2)};
}

void linear_scan_forward(OpCall& call) {
  const Tensor& a = call.input("a");
  const Tensor cu_seqlens = call.optional_input("cu_seqlens");
  linear_scan_fwd(
      call.ctx, call.output("out", a.shape(), a.dtype()),
      call.output("last_state", linear_scan_state_shape(a, cu_seqlens), stat_dtype(a.dtype())), a,
      call.input("b"), call.optional_input("h0"), cu_seqlens);
}
// The backward needs the forward's out (every h_t): it runs the forward first.
void linear_scan_backward(OpCall& call) {
  const Tensor& a = call.input("a");
  const Tensor& b = call.input("b");
  const Tensor h0 = call.optional_input("h0");
  const Tensor cu_seqlens = call.optional_input("cu_seqlens");
  const Device dev = call.ctx.device();
  const Tensor out = Tensor::empty(a.shape(), a.dtype(), dev, &call.ctx);
  const Tensor last_state =
      Tensor::empty(linear_scan_state_shape(a, cu_seqlens), stat_dtype(a.dtype()), dev, &call.ctx);
  linear_scan_fwd(call.ctx, out, last_state, a, b, h0, cu_seqlens);
  linear_scan_bwd(call.ctx, grad_of(call, "a"), grad_of(call, "b"), grad_of(call, "h0", h0),
                  call.input("dout"), call.optional_input("dlast_state"), a, out, h0, cu_seqlens);
}

// ---- causal_conv1d: x (B, D, T), weight (D, W) [, bias (D)]; activation none|silu ----
CausalConv1dParams causal_conv1d_params(const OpCall& call) {
  std::string activation = "none";
  call.option("activation", &activation, {"none", "silu"});
  CausalConv1dParams params;
  params.activation = activation == "silu" ? Activation::silu : Activation::none;
  return params;
}

void causal_conv1d_forward(OpCall& call) {
  const Tensor& x = call.input("x");
  causal_conv1d_fwd(call.ctx, call.output("out", x.shape(), x.dtype()), x, call.input("weight"),
                    call.optional_input("bias"), causal_conv1d_params(call),
                    call.optional_input("cu_seqlens"));
}
void causal_conv1d_backward(OpCall& call) {
  const Tensor bias = call.optional_input("bias");
  causal_conv1d_bwd(call.ctx, grad_of(call, "x"), grad_of(call, "weight"),
                    grad_of(call, "bias", bias), call.input("dout"), call.input("x"),
                    call.input("weight"), bias, causal_conv1d_params(call),
                    call.optional_input("cu_seqlens"));
}

}  // namespace

std::vector<OpSpec> scan_ops() {
  return {
      {"selective_scan",
       "Mamba-1 selective scan: u, delta (B, Dm, T), A (Dm, N), B, C (B, G, N, T); out, last_state",
       {"u", "delta", "A", "B", "C", "?D", "?z", "?delta_bias", "?h0", "?cu_seqlens"},
       {"delta_softplus"},
       {"dout", "?dlast_state"},
       selective_scan_forward,
       selective_scan_backward},
      {"ssd",
       "Mamba-2 SSD: x (B, T, H, P), dt (B, T, H), A (H), B, C (B, T, G, N); out, final_states",
       {"x", "dt", "A", "B", "C", "?D", "?z", "?dt_bias", "?initial_states", "?cu_seqlens"},
       {"chunk_size", "dt_softplus"},
       {"dout", "?dfinal_states"},
       ssd_forward,
       ssd_backward},
      {"linear_scan",
       "h_t = a_t * h_{t-1} + b_t over a, b (B, T, D); out (every h_t), last_state",
       {"a", "b", "?h0", "?cu_seqlens"},
       {},
       {"dout", "?dlast_state"},
       linear_scan_forward,
       linear_scan_backward},
      {"causal_conv1d",
       "depthwise causal conv: x (B, D, T), weight (D, W), bias (D); activation none|silu",
       {"x", "weight", "?bias", "?cu_seqlens"},
       {"activation"},
       {"dout"},
       causal_conv1d_forward,
       causal_conv1d_backward},
  };
}

}  // namespace longctx::cli
