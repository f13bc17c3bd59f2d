// ssd: validation in front of both backends, then dispatch (see include/longctx/ops/ssd.h).
#include "src/ops/ssd.h"

#include <type_traits>
#include <vector>

#include "src/ops/scan_checks.h"

namespace longctx {

namespace {

constexpr int64_t kMaxState = 256;

void check_like(const Context& ctx, const char* op, const char* name, const Tensor& t,
                const Tensor& like) {
  check_arg(op, name, t).shape(like.shape()).dtype(like.dtype()).device(ctx.device());
  check_arg(op, name, t).contiguous();
}

// The shared part of the chunked scan (seq = true: x (B, T, H, P)) and the decode step
// (x (B, H, P)); the params the inputs determine.
SSDArgs check_inputs(const Context& ctx, const char* op, const Tensor& x, const Tensor& dt,
                     const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                     const Tensor& z, const Tensor& dt_bias, const SSDParams& params, bool seq) {
  check_backend(ctx, op, "x", x);
  check_arg(op, "x", x).rank(seq ? 4 : 3).contiguous();
  const Device dev = ctx.device();
  const DType xdt = x.dtype(), pdt = stat_dtype(xdt);
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
  SSDArgs args;
  args.dtype = xdt;
  args.batch = batch;
  args.T = seq ? x.size(1) : 1;
  args.H = H;
  args.P = x.size(-1);
  args.G = G;
  args.N = N;
  args.chunk_size = params.chunk_size;
  args.dt_softplus = params.dt_softplus;
  args.x = x.data();
  args.dt = dt.data();
  args.A = A.data();
  args.B = B.data();
  args.C = C.data();
  args.D = data_or_null(D);
  args.z = data_or_null(z);
  args.dt_bias = data_or_null(dt_bias);
  return args;
}

// The scan's inputs, with its sequences: a packed batch when in.cu_seqlens is given, whose values
// `host` keeps for the call; initial_states per sequence.
SSDArgs check_scan_inputs(const Context& ctx, const char* op, const SSDInputs& in,
                          const SSDParams& params, std::vector<int32_t>& host) {
  SSDArgs args = check_inputs(ctx, op, in.x, in.dt, in.A, in.B, in.C, in.D, in.z, in.dt_bias,
                              params, /*seq=*/true);
  if_given(in.cu_seqlens, [&] {
    check_value(op, "x", args.batch == 1, "must have batch dimension 1 with cu_seqlens (a ",
                "packed batch), got shape ", shape_str(in.x.shape()));
    host = check_cu_seqlens(ctx, op, "cu_seqlens", in.cu_seqlens, args.T);
  });
  args.seqs = sequences_of(in.cu_seqlens, host, args.batch, args.T);
  args.initial_states = data_or_null(in.initial_states);
  return args;
}

// A state: (sequences, H, P, N); the decode step's sequences are its batch.
void check_state(const Context& ctx, const char* op, const char* name, const Tensor& t,
                 const SSDArgs& args) {
  const int64_t sequences = args.seqs.packed() ? args.seqs.count : args.batch;
  check_arg(op, name, t).shape({sequences, args.H, args.P, args.N});
  check_arg(op, name, t).dtype(stat_dtype(args.dtype)).device(ctx.device()).contiguous();
}

std::vector<NamedTensor> inputs_of(const SSDInputs& in) {
  return {{"x", &in.x},
          {"dt", &in.dt},
          {"A", &in.A},
          {"B", &in.B},
          {"C", &in.C},
          {"D", &in.D},
          {"z", &in.z},
          {"dt_bias", &in.dt_bias},
          {"initial_states", &in.initial_states},
          {"cu_seqlens", &in.cu_seqlens}};
}

}  // namespace

SSDArgs SSDArgs::sequence(int64_t s) const {
  SSDArgs v = *this;
  const int64_t begin = seqs.begin(s), esize = int64_t(dtype_size(dtype));
  const int64_t state = int64_t(dtype_size(stat_dtype(dtype))) * s * H * P * N;
  auto at = [](auto* p, int64_t bytes) {
    using Byte =
        std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>, const char, char>;
    return p ? static_cast<decltype(p)>(static_cast<Byte*>(p) + bytes) : p;
  };
  for (const void** p : {&v.x, &v.z, &v.dout}) *p = at(*p, begin * H * P * esize);
  for (void** p : {&v.out, &v.dx, &v.dz}) *p = at(*p, begin * H * P * esize);
  v.dt = at(v.dt, begin * H * esize);
  v.ddt = at(v.ddt, begin * H * esize);
  for (const void** p : {&v.B, &v.C}) *p = at(*p, begin * G * N * esize);
  for (void** p : {&v.dB, &v.dC}) *p = at(*p, begin * G * N * esize);
  for (const void** p : {&v.initial_states, &v.dfinal_states}) *p = at(*p, state);
  for (void** p : {&v.final_states, &v.dinitial_states}) *p = at(*p, state);
  v.batch = 1;
  v.T = seqs.length(s);
  v.seqs = Sequences();
  v.seqs.count = 1;
  v.seqs.T = v.T;
  return v;
}

std::string ssd_supports(Device device, DType dtype, int64_t state_size) {
  if (state_size < 1 || state_size > kMaxState)
    return detail::concat("ssd supports state sizes 1 <= N <= ", kMaxState,
                          ", got N = ", state_size);
  return dtype_supports("ssd", device, dtype);
}

void ssd_fwd(const Context& ctx, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams& params) {
  const char* op = "ssd_fwd";
  std::vector<int32_t> host;
  SSDArgs args = check_scan_inputs(ctx, op, in, params, host);
  if_given(in.initial_states,
           [&] { check_state(ctx, op, "initial_states", in.initial_states, args); });
  check_like(ctx, op, "out", out, in.x);
  check_state(ctx, op, "final_states", final_states, args);
  check_disjoint(op, {{"out", &out}, {"final_states", &final_states}}, inputs_of(in));
  args.out = out.data();
  args.final_states = final_states.data();
  LONGCTX_DISPATCH(ctx, ssd_fwd, ctx, args);
}

void ssd_bwd(const Context& ctx, const SSDGrads& grads, const Tensor& dout,
             const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params) {
  const char* op = "ssd_bwd";
  std::vector<int32_t> host;
  SSDArgs args = check_scan_inputs(ctx, op, in, params, host);
  if_given(in.initial_states,
           [&] { check_state(ctx, op, "initial_states", in.initial_states, args); });
  check_like(ctx, op, "dout", dout, in.x);
  if_given(dfinal_states, [&] { check_state(ctx, op, "dfinal_states", dfinal_states, args); });
  check_like(ctx, op, "dx", grads.dx, in.x);
  check_like(ctx, op, "ddt", grads.ddt, in.dt);
  check_like(ctx, op, "dA", grads.dA, in.A);
  check_like(ctx, op, "dB", grads.dB, in.B);
  check_like(ctx, op, "dC", grads.dC, in.C);
  const std::pair<NamedTensor, NamedTensor> optional[] = {
      {{"D", &in.D}, {"dD", &grads.dD}},
      {{"z", &in.z}, {"dz", &grads.dz}},
      {{"dt_bias", &in.dt_bias}, {"ddt_bias", &grads.ddt_bias}},
      {{"initial_states", &in.initial_states}, {"dinitial_states", &grads.dinitial_states}}};
  for (const auto& pair : optional) {
    // Named references, not a structured binding: lambdas cannot capture those before C++20.
    const NamedTensor &input = pair.first, &grad = pair.second;
    check_optional_grad(op, input.first, *input.second, grad.first, *grad.second);
    if_given(*grad.second, [&] { check_like(ctx, op, grad.first, *grad.second, *input.second); });
  }
  std::vector<NamedTensor> inputs = inputs_of(in);
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
  args.dout = dout.data();
  args.dfinal_states = data_or_null(dfinal_states);
  args.dx = grads.dx.data();
  args.ddt = grads.ddt.data();
  args.dA = grads.dA.data();
  args.dB = grads.dB.data();
  args.dC = grads.dC.data();
  args.dD = data_or_null(grads.dD);
  args.dz = data_or_null(grads.dz);
  args.ddt_bias = data_or_null(grads.ddt_bias);
  args.dinitial_states = data_or_null(grads.dinitial_states);
  LONGCTX_DISPATCH(ctx, ssd_bwd, ctx, args);
}

void ssd_state_update(const Context& ctx, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                      const SSDParams& params) {
  const char* op = "ssd_state_update";
  SSDArgs args = check_inputs(ctx, op, x, dt, A, B, C, D, z, dt_bias, params, /*seq=*/false);
  check_like(ctx, op, "out", out, x);
  check_state(ctx, op, "state", state, args);
  check_disjoint(op, {{"out", &out}, {"state", &state}},
                 {{"x", &x},
                  {"dt", &dt},
                  {"A", &A},
                  {"B", &B},
                  {"C", &C},
                  {"D", &D},
                  {"z", &z},
                  {"dt_bias", &dt_bias}});
  args.out = out.data();
  args.state = state.data();
  LONGCTX_DISPATCH(ctx, ssd_state_update, ctx, args);
}

}  // namespace longctx
