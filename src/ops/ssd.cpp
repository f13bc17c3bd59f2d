// ssd: validation in front of both backends, then dispatch (see include/longctx/ops/ssd.h).
#include "longctx/ops/ssd.h"

#include <utility>
#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace cpu {
void ssd_fwd(const Context&, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams&);
void ssd_bwd(const Context&, const SSDGrads& grads, const Tensor& dout, const Tensor& dfinal_states,
             const SSDInputs& in, const SSDParams&);
void ssd_state_update(const Context&, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor& z, const Tensor& dt_bias, const SSDParams&);
}  // namespace cpu
namespace cuda {
void ssd_fwd(const Context&, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams&);
void ssd_bwd(const Context&, const SSDGrads& grads, const Tensor& dout, const Tensor& dfinal_states,
             const SSDInputs& in, const SSDParams&);
void ssd_state_update(const Context&, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor& z, const Tensor& dt_bias, const SSDParams&);
}  // namespace cuda

namespace {

constexpr int64_t kMaxState = 256;

using Named = std::pair<const char*, const Tensor*>;

void check_disjoint(const char* op, const std::vector<Named>& outputs,
                    const std::vector<Named>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].second->defined()) continue;
    const ArgCheck out = check_arg(op, outputs[i].first, *outputs[i].second);
    for (const auto& [name, t] : inputs) out.no_overlap(name, *t);
    for (size_t j = 0; j < i; ++j) out.no_overlap(outputs[j].first, *outputs[j].second);
  }
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// The shared part of the chunked scan (seq = true: x (B, T, H, P)) and the decode step
// (x (B, H, P)). Returns N.
int64_t check_inputs(const Context& ctx, const char* op, const Tensor& x, const Tensor& dt,
                     const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                     const Tensor& z, const Tensor& dt_bias, const SSDParams& params, bool seq) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).rank(seq ? 4 : 3).contiguous();
  const Device dev = ctx.device();
  const DType xdt = x.dtype(), pdt = param_dtype(xdt);
  const int64_t batch = x.size(0), H = x.size(-2);
  const Shape lead = seq ? Shape{batch, x.size(1)} : Shape{batch};
  Shape dt_shape = lead;
  dt_shape.push_back(H);
  check_arg(op, "dt", dt).shape(dt_shape).dtype(xdt).device(dev).contiguous();
  check_arg(op, "A", A).shape({H}).dtype(pdt).device(dev).contiguous();
  check_arg(op, "B", B).rank(seq ? 4 : 3).dtype(xdt).device(dev).contiguous();
  const int64_t G = B.size(-2), N = B.size(-1);
  check_value(op, "B", G >= 1 && H % G == 0, "has G = ", G,
              " groups, which must divide the head count H = ", H);
  check_value(op, "B", 1 <= N && N <= kMaxState, "must have a state size 1 <= N <= ", kMaxState,
              ", got N = ", N);
  Shape bshape = lead;
  bshape.push_back(G);
  bshape.push_back(N);
  check_arg(op, "B", B).shape(bshape);
  check_arg(op, "C", C).shape(bshape).dtype(xdt).device(dev).contiguous();
  if_given(D, [&] { check_arg(op, "D", D).shape({H}).dtype(pdt).device(dev).contiguous(); });
  if_given(dt_bias, [&] {
    check_arg(op, "dt_bias", dt_bias).shape({H}).dtype(pdt).device(dev).contiguous();
  });
  if_given(z, [&] { check_like(ctx, op, "z", z, x); });
  check_value(op, "chunk_size", params.chunk_size >= 1, "must be >= 1, got ", params.chunk_size);
  return N;
}

void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const Tensor& x, int64_t N) {
  check_arg(op, name, t).shape({x.size(0), x.size(-2), x.size(-1), N});
  check_arg(op, name, t).dtype(param_dtype(x.dtype())).device(ctx.device()).contiguous();
}

std::vector<Named> inputs_of(const SSDInputs& in) {
  return {{"x", &in.x},
          {"dt", &in.dt},
          {"A", &in.A},
          {"B", &in.B},
          {"C", &in.C},
          {"D", &in.D},
          {"z", &in.z},
          {"dt_bias", &in.dt_bias},
          {"initial_states", &in.initial_states}};
}

}  // namespace

void ssd_fwd(const Context& ctx, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams& params) {
  const char* op = "ssd_fwd";
  const int64_t N =
      check_inputs(ctx, op, in.x, in.dt, in.A, in.B, in.C, in.D, in.z, in.dt_bias, params, true);
  if_given(in.initial_states,
           [&] { check_state(ctx, op, "initial_states", in.initial_states, in.x, N); });
  check_like(ctx, op, "out", out, in.x);
  check_state(ctx, op, "final_states", final_states, in.x, N);
  check_disjoint(op, {{"out", &out}, {"final_states", &final_states}}, inputs_of(in));
  LONGCTX_DISPATCH(ctx, ssd_fwd, ctx, out, final_states, in, params);
}

void ssd_bwd(const Context& ctx, const SSDGrads& grads, const Tensor& dout,
             const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params) {
  const char* op = "ssd_bwd";
  const int64_t N =
      check_inputs(ctx, op, in.x, in.dt, in.A, in.B, in.C, in.D, in.z, in.dt_bias, params, true);
  if_given(in.initial_states,
           [&] { check_state(ctx, op, "initial_states", in.initial_states, in.x, N); });
  check_like(ctx, op, "dout", dout, in.x);
  if_given(dfinal_states, [&] { check_state(ctx, op, "dfinal_states", dfinal_states, in.x, N); });
  check_like(ctx, op, "dx", grads.dx, in.x);
  check_like(ctx, op, "ddt", grads.ddt, in.dt);
  check_like(ctx, op, "dA", grads.dA, in.A);
  check_like(ctx, op, "dB", grads.dB, in.B);
  check_like(ctx, op, "dC", grads.dC, in.C);
  const std::pair<Named, Named> optional[] = {
      {{"D", &in.D}, {"dD", &grads.dD}},
      {{"z", &in.z}, {"dz", &grads.dz}},
      {{"dt_bias", &in.dt_bias}, {"ddt_bias", &grads.ddt_bias}},
      {{"initial_states", &in.initial_states}, {"dinitial_states", &grads.dinitial_states}}};
  for (const auto& pair : optional) {
    // Named references, not a structured binding: lambdas cannot capture those before C++20.
    const Named &input = pair.first, &grad = pair.second;
    check_optional_grad(op, input.first, *input.second, grad.first, *grad.second);
    if_given(*grad.second, [&] { check_like(ctx, op, grad.first, *grad.second, *input.second); });
  }
  std::vector<Named> inputs = inputs_of(in);
  inputs.push_back({"dout", &dout});
  inputs.push_back({"dfinal_states", &dfinal_states});
  check_disjoint(op,
                 {{"dx", &grads.dx},
                  {"ddt", &grads.ddt},
                  {"dA", &grads.dA},
                  {"dB", &grads.dB},
                  {"dC", &grads.dC},
                  {"dD", &grads.dD},
                  {"dz", &grads.dz},
                  {"ddt_bias", &grads.ddt_bias},
                  {"dinitial_states", &grads.dinitial_states}},
                 inputs);
  LONGCTX_DISPATCH(ctx, ssd_bwd, ctx, grads, dout, dfinal_states, in, params);
}

void ssd_state_update(const Context& ctx, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                      const SSDParams& params) {
  const char* op = "ssd_state_update";
  const int64_t N = check_inputs(ctx, op, x, dt, A, B, C, D, z, dt_bias, params, false);
  check_like(ctx, op, "out", out, x);
  check_state(ctx, op, "state", state, x, N);
  check_disjoint(op, {{"out", &out}, {"state", &state}},
                 {{"x", &x},
                  {"dt", &dt},
                  {"A", &A},
                  {"B", &B},
                  {"C", &C},
                  {"D", &D},
                  {"z", &z},
                  {"dt_bias", &dt_bias}});
  LONGCTX_DISPATCH(ctx, ssd_state_update, ctx, out, state, x, dt, A, B, C, D, z, dt_bias, params);
}

}  // namespace longctx
