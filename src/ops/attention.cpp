// attention: validation in front of both backends, the table of supported configurations, and
// dispatch (see include/longctx/ops/attention.h).
#include "src/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/attention/head_dims.h"
#include "src/ops/backend.h"

namespace longctx {

namespace {

// q (B, Tq, H, D); k and v (B, Tk, Hkv, D) named `k_name`, `v_name`; the configuration is one
// attention_supports() accepts; the params are in range. The params they determine, the options
// resolved.
AttentionArgs check_qkv(const Context& ctx, const char* op, const Tensor& q, const Tensor& k,
                        const Tensor& v, const AttentionParams& params, const char* k_name = "k",
                        const char* v_name = "v") {
  check_backend(ctx, op, "q", q);
  check_arg(op, "q", q).rank(4).contiguous();
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  check_arg(op, k_name, k).rank(4);
  const int64_t Tk = k.size(1), Hkv = k.size(2);
  check_arg(op, k_name, k).shape({B, Tk, Hkv, D}).dtype(q.dtype()).device(ctx.device());
  check_arg(op, k_name, k).contiguous();
  check_arg(op, v_name, v).shape({B, Tk, Hkv, D}).dtype(q.dtype()).device(ctx.device());
  check_arg(op, v_name, v).contiguous();
  check_value(op, "q", H >= 1, "must have at least one head, got shape ", ShapeText{q.shape()});
  check_value(op, k_name, Hkv >= 1 && H % Hkv == 0, "has Hkv = ", Hkv,
              " heads, which must divide the H = ", H,
              " query heads of 'q' (MHA: Hkv = H, GQA: H % Hkv == 0, MQA: Hkv = 1)");
  const std::string why = attention_supports(ctx.device(), q.dtype(), D);
  LONGCTX_CHECK(why.empty(), op, ": ", why);
  check_value(op, "softmax_scale", std::isfinite(params.softmax_scale),
              "must be finite (0 means 1/sqrt(D)), got ", params.softmax_scale);
  check_value(op, "window_left", params.window_left >= -1,
              "must be >= -1 (-1 means unbounded), got ", params.window_left);
  check_value(op, "window_right", params.window_right >= -1,
              "must be >= -1 (-1 means unbounded), got ", params.window_right);
  check_value(op, "softcap", std::isfinite(params.softcap) && params.softcap >= 0,
              "must be >= 0 (0 turns it off), got ", params.softcap);
  AttentionArgs args;
  args.dtype = q.dtype();
  args.B = B;
  args.Tq = Tq;
  args.Tk = Tk;
  args.H = H;
  args.Hkv = Hkv;
  args.D = D;
  args.scale =
      params.softmax_scale != 0.f ? double(params.softmax_scale) : 1.0 / std::sqrt(double(D));
  // A window side that cannot bind for any query is unbounded: no integer arithmetic of the
  // backends then comes near overflow.
  auto window = [&](int64_t w) { return w < 0 || w > Tq + Tk ? int64_t(-1) : w; };
  args.window_left = window(params.window_left);
  args.window_right = params.causal ? 0 : window(params.window_right);
  args.softcap = params.softcap;
  args.deterministic = params.deterministic || ctx.deterministic();
  args.seqs_q = sequences_of({}, {}, B, Tq);
  args.seqs_k = sequences_of({}, {}, B, Tk);
  args.q = q.data();
  args.k = k.data();
  args.v = v.data();
  return args;
}

// A packed batch: cu_seqlens_q and cu_seqlens_k given together (values kept in host_q, host_k for
// the call), q and k of batch 1, the same number of sequences.
void check_packed(const Context& ctx, const char* op, const Tensor& cu_seqlens_q,
                  const Tensor& cu_seqlens_k, AttentionArgs& args, std::vector<int32_t>& host_q,
                  std::vector<int32_t>& host_k) {
  LONGCTX_CHECK(cu_seqlens_q.defined() == cu_seqlens_k.defined(), op,
                ": arguments 'cu_seqlens_q' and 'cu_seqlens_k' must be given together, got ",
                cu_seqlens_q.defined() ? "'cu_seqlens_q' alone" : "'cu_seqlens_k' alone");
  if (!cu_seqlens_q.defined()) return;
  check_value(op, "q", args.B == 1, "must have batch dimension 1 with cu_seqlens_q (a packed ",
              "batch), got batch ", args.B);
  host_q = check_cu_seqlens(ctx, op, "cu_seqlens_q", cu_seqlens_q, args.Tq);
  host_k = check_cu_seqlens(ctx, op, "cu_seqlens_k", cu_seqlens_k, args.Tk);
  check_value(op, "cu_seqlens_k", host_k.size() == host_q.size(), "must have as many entries as ",
              "'cu_seqlens_q' (one per sequence, plus one), got ", host_k.size(), " and ",
              host_q.size());
  args.seqs_q = sequences_of(cu_seqlens_q, host_q, 1, args.Tq);
  args.seqs_k = sequences_of(cu_seqlens_k, host_k, 1, args.Tk);
}

void check_out_lse(const Context& ctx, const char* op, const Tensor& out, const Tensor& lse,
                   const Tensor& q) {
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2);
  check_arg(op, "out", out).shape(q.shape()).dtype(q.dtype()).device(ctx.device()).contiguous();
  check_arg(op, "lse", lse).shape({B, H, Tq}).dtype(stat_dtype(q.dtype())).device(ctx.device());
  check_arg(op, "lse", lse).contiguous().no_overlap("out", out);
}

}  // namespace

std::string attention_supports(Device device, DType dtype, int64_t head_dim) {
  if (device.is_cpu()) {
    if (dtype != DType::f32 && dtype != DType::f64)
      return detail::concat("attention on the CPU supports dtypes f32 and f64, got ",
                            dtype_name(dtype));
    if (head_dim < 1)
      return detail::concat("attention on the CPU supports any head dim >= 1, got ", head_dim);
    return "";
  }
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16)
    return detail::concat("attention on CUDA supports dtypes f32, bf16 and f16, got ",
                          dtype_name(dtype));
  // The table of kernels/attention/head_dims.h: f32 runs every head dim up to the largest bucket,
  // bf16 and f16 the tensor-core instantiations.
  if (dtype == DType::f32) {
    if (cuda::attn::f32_head_dim_bucket(head_dim) != 0) return "";
    return detail::concat("attention on CUDA supports f32 head dims 1 .. ", cuda::attn::kMaxHeadDim,
                          ", got ", head_dim, " (the CPU backend supports any head dim)");
  }
  if (cuda::attn::is_tensor_core_head_dim(head_dim)) return "";
  return detail::concat("attention on CUDA supports head dims ",
                        cuda::attn::tensor_core_head_dims_text(), " for ", dtype_name(dtype),
                        ", got ", head_dim, " (f32 takes any head dim 1 .. ",
                        cuda::attn::kMaxHeadDim, "; the CPU backend any head dim)");
}

AttentionArgs AttentionArgs::sequence(int64_t s) const {
  AttentionArgs v = *this;
  const int64_t esize = int64_t(dtype_size(dtype));
  const int64_t q_at = seqs_q.begin(s) * H * D * esize, k_at = seqs_k.begin(s) * Hkv * D * esize;
  auto at = [](auto* p, int64_t bytes) {
    using Byte =
        std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>, const char, char>;
    return p ? static_cast<decltype(p)>(static_cast<Byte*>(p) + bytes) : p;
  };
  v.q = at(q, q_at);
  v.dout = at(dout, q_at);
  v.out = at(out, q_at);
  v.dq = at(dq, q_at);
  v.k = at(k, k_at);
  v.v = at(this->v, k_at);
  v.dk = at(dk, k_at);
  v.dv = at(dv, k_at);
  v.lse = nullptr;
  v.B = 1;
  v.Tq = seqs_q.length(s);
  v.Tk = seqs_k.length(s);
  v.seqs_q = sequences_of({}, {}, 1, v.Tq);
  v.seqs_k = sequences_of({}, {}, 1, v.Tk);
  return v;
}

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params,
                   const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  const char* op = "attention_fwd";
  AttentionArgs args = check_qkv(ctx, op, q, k, v, params);
  std::vector<int32_t> host_q, host_k;
  check_packed(ctx, op, cu_seqlens_q, cu_seqlens_k, args, host_q, host_k);
  check_out_lse(ctx, op, out, lse, q);
  check_disjoint(op, {{"out", &out}, {"lse", &lse}},
                 {{"q", &q},
                  {"k", &k},
                  {"v", &v},
                  {"cu_seqlens_q", &cu_seqlens_q},
                  {"cu_seqlens_k", &cu_seqlens_k}});
  args.out = out.data();
  args.lse = lse.data();
  LONGCTX_DISPATCH(ctx, attention_fwd, ctx, args);
}

void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params,
                   const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  const char* op = "attention_bwd";
  AttentionArgs args = check_qkv(ctx, op, q, k, v, params);
  std::vector<int32_t> host_q, host_k;
  check_packed(ctx, op, cu_seqlens_q, cu_seqlens_k, args, host_q, host_k);
  check_out_lse(ctx, op, out, lse, q);
  const Device dev = ctx.device();
  check_arg(op, "dout", dout).shape(q.shape()).dtype(q.dtype()).device(dev).contiguous();
  check_arg(op, "dq", dq).shape(q.shape()).dtype(q.dtype()).device(dev).contiguous();
  check_arg(op, "dk", dk).shape(k.shape()).dtype(q.dtype()).device(dev).contiguous();
  check_arg(op, "dv", dv).shape(v.shape()).dtype(q.dtype()).device(dev).contiguous();
  check_disjoint(op, {{"dq", &dq}, {"dk", &dk}, {"dv", &dv}},
                 {{"q", &q},
                  {"k", &k},
                  {"v", &v},
                  {"out", &out},
                  {"lse", &lse},
                  {"dout", &dout},
                  {"cu_seqlens_q", &cu_seqlens_q},
                  {"cu_seqlens_k", &cu_seqlens_k}});
  args.out = out.data();
  args.lse = lse.data();
  args.dout = dout.data();
  args.dq = dq.data();
  args.dk = dk.data();
  args.dv = dv.data();
  LONGCTX_DISPATCH(ctx, attention_bwd, ctx, args);
}

void attention_decode(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                      const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
                      const Tensor& k_new, const Tensor& v_new, const AttentionParams& params,
                      int num_splits) {
  const char* op = "attention_decode";
  AttentionArgs args = check_qkv(ctx, op, q, k_cache, v_cache, params, "k_cache", "v_cache");
  const AttentionArgs& d = args;
  const int64_t Tmax = d.Tk;
  check_out_lse(ctx, op, out, lse, q);
  check_arg(op, "cache_seqlens", cache_seqlens).shape({d.B}).dtype(DType::i32);
  check_arg(op, "cache_seqlens", cache_seqlens).device(ctx.device()).contiguous();
  LONGCTX_CHECK(k_new.defined() == v_new.defined(), op,
                ": arguments 'k_new' and 'v_new' must be given together, got ",
                k_new.defined() ? "'k_new' without 'v_new'" : "'v_new' without 'k_new'");
  const bool append = k_new.defined();
  if (append) {
    const Shape kv_new = {d.B, d.Tq, d.Hkv, d.D};
    check_arg(op, "k_new", k_new).shape(kv_new).dtype(q.dtype()).device(ctx.device());
    check_arg(op, "k_new", k_new).contiguous();
    check_arg(op, "v_new", v_new).shape(kv_new).dtype(q.dtype()).device(ctx.device());
    check_arg(op, "v_new", v_new).contiguous();
  }
  // More splits than cache rows have no keys to split (2^31 - 1 of them allocated 2.8 GB and
  // more for a 16-token cache).
  check_value(op, "num_splits", num_splits >= 0 && num_splits <= std::max<int64_t>(1, Tmax),
              "must be in [0, max(1, Tmax = ", Tmax, ")] (0 picks a count), got ", num_splits);
  // cache_seqlens is (B): copying it to the host to check its values costs one tiny transfer.
  const Tensor lens_host =
      cache_seqlens.device().is_cpu() ? cache_seqlens : cache_seqlens.to(Device::cpu(), &ctx);
  const int32_t* lens = lens_host.data_as<int32_t>();
  const int64_t appended = append ? d.Tq : 0;
  for (int64_t b = 0; b < d.B; ++b) {
    check_value(op, "cache_seqlens", lens[b] >= 0 && lens[b] <= Tmax, "[", b, "] = ", lens[b],
                " is outside [0, Tmax = ", Tmax, "]");
    check_value(op, "cache_seqlens", lens[b] + appended <= Tmax, "[", b, "] = ", lens[b],
                " plus the Tq = ", appended,
                " appended tokens exceeds the cache length Tmax = ", Tmax);
  }
  // The caches are written (append) and read; out and lse are only written.
  const std::vector<NamedTensor> inputs = {
      {"q", &q}, {"cache_seqlens", &cache_seqlens}, {"k_new", &k_new}, {"v_new", &v_new}};
  check_arg(op, "k_cache", k_cache).no_overlap("v_cache", v_cache);
  check_disjoint(op, {{"out", &out}, {"lse", &lse}},
                 {{"k_cache", &k_cache}, {"v_cache", &v_cache}});
  check_disjoint(op, {{"out", &out}, {"lse", &lse}, {"k_cache", &k_cache}, {"v_cache", &v_cache}},
                 inputs);
  args.out = out.data();
  args.lse = lse.data();
  args.cache_seqlens = cache_seqlens.data_as<int32_t>();
  args.k_new = data_or_null(k_new);
  args.v_new = data_or_null(v_new);
  args.num_splits = num_splits;
  LONGCTX_DISPATCH(ctx, attention_decode, ctx, args);
}

}  // namespace longctx
