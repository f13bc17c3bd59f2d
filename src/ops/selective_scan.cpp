// selective_scan: validation in front of both backends, then dispatch (see
// include/longctx/ops/selective_scan.h).
#include "longctx/ops/selective_scan.h"

#include <utility>
#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace cpu {
void selective_scan_fwd(const Context&, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams&);
void selective_scan_bwd(const Context&, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams&);
void selective_state_update(const Context&, const Tensor& out, const Tensor& state, const Tensor& u,
                            const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                            const Tensor& D, const Tensor& z, const Tensor& delta_bias,
                            const SelectiveScanParams&);
}  // namespace cpu
namespace cuda {
void selective_scan_fwd(const Context&, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams&);
void selective_scan_bwd(const Context&, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams&);
void selective_state_update(const Context&, const Tensor& out, const Tensor& state, const Tensor& u,
                            const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                            const Tensor& D, const Tensor& z, const Tensor& delta_bias,
                            const SelectiveScanParams&);
}  // namespace cuda

namespace {

constexpr int64_t kMaxState = 256;

using Named = std::pair<const char*, const Tensor*>;

// Every output must be disjoint from every input and from the other outputs.
void check_disjoint(const char* op, const std::vector<Named>& outputs,
                    const std::vector<Named>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].second->defined()) continue;
    const ArgCheck out = check_arg(op, outputs[i].first, *outputs[i].second);
    for (const auto& [name, t] : inputs) out.no_overlap(name, *t);
    for (size_t j = 0; j < i; ++j) out.no_overlap(outputs[j].first, *outputs[j].second);
  }
}

// The shared part of the scan and the decode step. `seq` is the shape suffix of u ({T} for the
// scan, {} for a step). Returns N.
int64_t check_inputs(const Context& ctx, const char* op, const Tensor& u, const Tensor& delta,
                     const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                     const Tensor& z, const Tensor& delta_bias, bool seq) {
  check_backend(ctx, op, "u", u);
  check_arg(op, "u", u).rank(seq ? 3 : 2).contiguous();
  const Device dev = ctx.device();
  const DType dt = u.dtype(), pdt = param_dtype(dt);
  const int64_t batch = u.size(0), Dm = u.size(1);
  check_arg(op, "delta", delta).shape(u.shape()).dtype(dt).device(dev).contiguous();
  check_arg(op, "A", A).rank(2).dtype(pdt).device(dev).contiguous();
  const int64_t N = A.size(1);
  check_arg(op, "A", A).shape({Dm, N});
  check_value(op, "A", 1 <= N && N <= kMaxState, "must have a state size 1 <= N <= ", kMaxState,
              " (its shape is (Dm, N)), got N = ", N);
  check_arg(op, "B", B).rank(seq ? 4 : 3).dtype(dt).device(dev).contiguous();
  const int64_t G = B.size(1);
  check_value(op, "B", G >= 1 && Dm % G == 0, "has G = ", G,
              " groups, which must divide the channel count Dm = ", Dm);
  Shape bshape = {batch, G, N};
  if (seq) bshape.push_back(u.size(2));
  check_arg(op, "B", B).shape(bshape);
  check_arg(op, "C", C).shape(bshape).dtype(dt).device(dev).contiguous();
  if_given(D, [&] { check_arg(op, "D", D).shape({Dm}).dtype(pdt).device(dev).contiguous(); });
  if_given(delta_bias, [&] {
    check_arg(op, "delta_bias", delta_bias).shape({Dm}).dtype(pdt).device(dev).contiguous();
  });
  if_given(z, [&] { check_arg(op, "z", z).shape(u.shape()).dtype(dt).device(dev).contiguous(); });
  return N;
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const Tensor& u, int64_t N) {
  check_arg(op, name, t).shape({u.size(0), u.size(1), N}).dtype(param_dtype(u.dtype()));
  check_arg(op, name, t).device(ctx.device()).contiguous();
}

std::vector<Named> inputs_of(const SelectiveScanInputs& in) {
  return {{"u", &in.u},  {"delta", &in.delta}, {"A", &in.A}, {"B", &in.B},
          {"C", &in.C},  {"D", &in.D},         {"z", &in.z}, {"delta_bias", &in.delta_bias},
          {"h0", &in.h0}};
}

}  // namespace

void selective_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params) {
  const char* op = "selective_scan_fwd";
  const int64_t N =
      check_inputs(ctx, op, in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias, true);
  if_given(in.h0, [&] { check_state(ctx, op, "h0", in.h0, in.u, N); });
  check_like(ctx, op, "out", out, in.u);
  check_state(ctx, op, "last_state", last_state, in.u, N);
  check_disjoint(op, {{"out", &out}, {"last_state", &last_state}}, inputs_of(in));
  LONGCTX_DISPATCH(ctx, selective_scan_fwd, ctx, out, last_state, in, params);
}

void selective_scan_bwd(const Context& ctx, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params) {
  const char* op = "selective_scan_bwd";
  const int64_t N =
      check_inputs(ctx, op, in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias, true);
  if_given(in.h0, [&] { check_state(ctx, op, "h0", in.h0, in.u, N); });
  check_like(ctx, op, "dout", dout, in.u);
  if_given(dlast_state, [&] { check_state(ctx, op, "dlast_state", dlast_state, in.u, N); });
  check_like(ctx, op, "du", grads.du, in.u);
  check_like(ctx, op, "ddelta", grads.ddelta, in.delta);
  check_like(ctx, op, "dA", grads.dA, in.A);
  check_like(ctx, op, "dB", grads.dB, in.B);
  check_like(ctx, op, "dC", grads.dC, in.C);
  const std::pair<Named, Named> optional[] = {
      {{"D", &in.D}, {"dD", &grads.dD}},
      {{"z", &in.z}, {"dz", &grads.dz}},
      {{"delta_bias", &in.delta_bias}, {"ddelta_bias", &grads.ddelta_bias}},
      {{"h0", &in.h0}, {"dh0", &grads.dh0}}};
  for (const auto& pair : optional) {
    // Named references, not a structured binding: lambdas cannot capture those before C++20.
    const Named &input = pair.first, &grad = pair.second;
    check_optional_grad(op, input.first, *input.second, grad.first, *grad.second);
    if_given(*grad.second, [&] { check_like(ctx, op, grad.first, *grad.second, *input.second); });
  }
  std::vector<Named> inputs = inputs_of(in);
  inputs.push_back({"dout", &dout});
  inputs.push_back({"dlast_state", &dlast_state});
  check_disjoint(op,
                 {{"du", &grads.du},
                  {"ddelta", &grads.ddelta},
                  {"dA", &grads.dA},
                  {"dB", &grads.dB},
                  {"dC", &grads.dC},
                  {"dD", &grads.dD},
                  {"dz", &grads.dz},
                  {"ddelta_bias", &grads.ddelta_bias},
                  {"dh0", &grads.dh0}},
                 inputs);
  LONGCTX_DISPATCH(ctx, selective_scan_bwd, ctx, grads, dout, dlast_state, in, params);
}

void selective_state_update(const Context& ctx, const Tensor& out, const Tensor& state,
                            const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                            const Tensor& C, const Tensor& D, const Tensor& z,
                            const Tensor& delta_bias, const SelectiveScanParams& params) {
  const char* op = "selective_state_update";
  const int64_t N = check_inputs(ctx, op, u, delta, A, B, C, D, z, delta_bias, false);
  check_like(ctx, op, "out", out, u);
  check_state(ctx, op, "state", state, u, N);
  check_disjoint(op, {{"out", &out}, {"state", &state}},
                 {{"u", &u},
                  {"delta", &delta},
                  {"A", &A},
                  {"B", &B},
                  {"C", &C},
                  {"D", &D},
                  {"z", &z},
                  {"delta_bias", &delta_bias}});
  LONGCTX_DISPATCH(ctx, selective_state_update, ctx, out, state, u, delta, A, B, C, D, z,
                   delta_bias, params);
}

}  // namespace longctx
