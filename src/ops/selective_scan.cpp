// selective_scan: validation in front of both backends, then dispatch (see
// include/longctx/ops/selective_scan.h).
#include "src/ops/selective_scan.h"

#include <utility>
#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

constexpr int64_t kMaxState = 256;

// The shared part of the scan and the decode step (`seq`: u has a T dimension); the params the
// inputs determine.
SelectiveScanArgs check_inputs(const Context& ctx, const char* op, const Tensor& u,
                               const Tensor& delta, const Tensor& A, const Tensor& B,
                               const Tensor& C, const Tensor& D, const Tensor& z,
                               const Tensor& delta_bias, const SelectiveScanParams& params,
                               bool seq) {
  check_backend(ctx, op, "u", u);
  check_arg(op, "u", u).rank(seq ? 3 : 2).contiguous();
  const Device dev = ctx.device();
  const DType dt = u.dtype(), pdt = stat_dtype(dt);
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
  SelectiveScanArgs args;
  args.dtype = dt;
  args.batch = batch;
  args.Dm = Dm;
  args.T = seq ? u.size(2) : 1;
  args.N = N;
  args.G = G;
  args.delta_softplus = params.delta_softplus;
  args.u = u.data();
  args.delta = delta.data();
  args.A = A.data();
  args.B = B.data();
  args.C = C.data();
  args.D = data_or_null(D);
  args.z = data_or_null(z);
  args.delta_bias = data_or_null(delta_bias);
  return args;
}

// The scan's inputs, with its sequences: a packed batch when in.cu_seqlens is given, whose values
// `host` keeps for the call.
SelectiveScanArgs check_inputs(const Context& ctx, const char* op, const SelectiveScanInputs& in,
                               const SelectiveScanParams& params, std::vector<int32_t>& host) {
  SelectiveScanArgs args = check_inputs(ctx, op, in.u, in.delta, in.A, in.B, in.C, in.D, in.z,
                                        in.delta_bias, params, /*seq=*/true);
  if_given(in.cu_seqlens, [&] {
    check_value(op, "u", args.batch == 1, "must have batch dimension 1 with cu_seqlens (a ",
                "packed batch), got shape ", shape_str(in.u.shape()));
    host = check_cu_seqlens(ctx, op, "cu_seqlens", in.cu_seqlens, args.T);
  });
  args.seqs = sequences_of(in.cu_seqlens, host, args.batch, args.T);
  args.h0 = data_or_null(in.h0);
  return args;
}

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// A state: (sequences, Dm, N); the decode step's sequences are its batch.
void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const SelectiveScanArgs& args) {
  const int64_t sequences = args.seqs.packed() ? args.seqs.count : args.batch;
  check_arg(op, name, t).shape({sequences, args.Dm, args.N}).dtype(stat_dtype(args.dtype));
  check_arg(op, name, t).device(ctx.device()).contiguous();
}

std::vector<NamedTensor> inputs_of(const SelectiveScanInputs& in) {
  return {{"u", &in.u},   {"delta", &in.delta},
          {"A", &in.A},   {"B", &in.B},
          {"C", &in.C},   {"D", &in.D},
          {"z", &in.z},   {"delta_bias", &in.delta_bias},
          {"h0", &in.h0}, {"cu_seqlens", &in.cu_seqlens}};
}

}  // namespace

std::string selective_scan_supports(Device device, DType dtype, int64_t state_size) {
  if (state_size < 1 || state_size > kMaxState)
    return detail::concat("selective_scan supports state sizes 1 <= N <= ", kMaxState,
                          ", got N = ", state_size);
  return dtype_supports("selective_scan", device, dtype);
}

void selective_scan_fwd(const Context& ctx, const Tensor& out, const Tensor& last_state,
                        const SelectiveScanInputs& in, const SelectiveScanParams& params) {
  const char* op = "selective_scan_fwd";
  std::vector<int32_t> host;
  SelectiveScanArgs args = check_inputs(ctx, op, in, params, host);
  if_given(in.h0, [&] { check_state(ctx, op, "h0", in.h0, args); });
  check_like(ctx, op, "out", out, in.u);
  check_state(ctx, op, "last_state", last_state, args);
  check_disjoint(op, {{"out", &out}, {"last_state", &last_state}}, inputs_of(in));
  args.out = out.data();
  args.last_state = last_state.data();
  LONGCTX_DISPATCH(ctx, selective_scan_fwd, ctx, args);
}

void selective_scan_bwd(const Context& ctx, const SelectiveScanGrads& grads, const Tensor& dout,
                        const Tensor& dlast_state, const SelectiveScanInputs& in,
                        const SelectiveScanParams& params) {
  const char* op = "selective_scan_bwd";
  std::vector<int32_t> host;
  SelectiveScanArgs args = check_inputs(ctx, op, in, params, host);
  if_given(in.h0, [&] { check_state(ctx, op, "h0", in.h0, args); });
  check_like(ctx, op, "dout", dout, in.u);
  if_given(dlast_state, [&] { check_state(ctx, op, "dlast_state", dlast_state, args); });
  check_like(ctx, op, "du", grads.du, in.u);
  check_like(ctx, op, "ddelta", grads.ddelta, in.delta);
  check_like(ctx, op, "dA", grads.dA, in.A);
  check_like(ctx, op, "dB", grads.dB, in.B);
  check_like(ctx, op, "dC", grads.dC, in.C);
  const std::pair<NamedTensor, NamedTensor> optional[] = {
      {{"D", &in.D}, {"dD", &grads.dD}},
      {{"z", &in.z}, {"dz", &grads.dz}},
      {{"delta_bias", &in.delta_bias}, {"ddelta_bias", &grads.ddelta_bias}},
      {{"h0", &in.h0}, {"dh0", &grads.dh0}}};
  for (const auto& pair : optional) {
    // Named references, not a structured binding: lambdas cannot capture those before C++20.
    const NamedTensor &input = pair.first, &grad = pair.second;
    check_optional_grad(op, input.first, *input.second, grad.first, *grad.second);
    if_given(*grad.second, [&] { check_like(ctx, op, grad.first, *grad.second, *input.second); });
  }
  std::vector<NamedTensor> inputs = inputs_of(in);
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
  args.dout = dout.data();
  args.dlast_state = data_or_null(dlast_state);
  args.du = grads.du.data();
  args.ddelta = grads.ddelta.data();
  args.dA = grads.dA.data();
  args.dB = grads.dB.data();
  args.dC = grads.dC.data();
  args.dD = data_or_null(grads.dD);
  args.dz = data_or_null(grads.dz);
  args.ddelta_bias = data_or_null(grads.ddelta_bias);
  args.dh0 = data_or_null(grads.dh0);
  LONGCTX_DISPATCH(ctx, selective_scan_bwd, ctx, args);
}

void selective_state_update(const Context& ctx, const Tensor& out, const Tensor& state,
                            const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                            const Tensor& C, const Tensor& D, const Tensor& z,
                            const Tensor& delta_bias, const SelectiveScanParams& params) {
  const char* op = "selective_state_update";
  SelectiveScanArgs args =
      check_inputs(ctx, op, u, delta, A, B, C, D, z, delta_bias, params, /*seq=*/false);
  check_like(ctx, op, "out", out, u);
  check_state(ctx, op, "state", state, args);
  check_disjoint(op, {{"out", &out}, {"state", &state}},
                 {{"u", &u},
                  {"delta", &delta},
                  {"A", &A},
                  {"B", &B},
                  {"C", &C},
                  {"D", &D},
                  {"z", &z},
                  {"delta_bias", &delta_bias}});
  args.out = out.data();
  args.state = state.data();
  LONGCTX_DISPATCH(ctx, selective_state_update, ctx, args);
}

}  // namespace longctx
