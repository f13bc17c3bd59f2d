// `longctx op` for attention (flash attention forward and backward) and attention_decode (KV
// cache). Tensor and option names are those of include/longctx/ops/attention.h.
//
//   attention         q (B, Tq, H, D), k, v (B, Tk, Hkv, D) [+ cu_seqlens_q, cu_seqlens_k: a packed
//                     batch] -> out (B, Tq, H, D), lse (B, H, Tq)
//     --backward      + dout [+ out, lse from an earlier forward] -> dq, dk, dv
//   attention_decode  q, k_cache, v_cache (B, Tmax, Hkv, D), cache_seqlens (B) i32
//                     [+ k_new, v_new (B, Tq, Hkv, D)] -> out, lse [+ the updated k_cache, v_cache]
#include "cli/ops.h"

namespace longctx::cli {

namespace {

const std::vector<std::string> kAttentionOptions = {"softmax_scale", "causal",  "window_left",
                                                    "window_right",  "softcap", "deterministic"};

AttentionParams attention_params(const OpCall& call) {
  AttentionParams params;
  call.option("softmax_scale", &params.softmax_scale);
  call.option("causal", &params.causal);
  call.option("window_left", &params.window_left);
  call.option("window_right", &params.window_right);
  call.option("softcap", &params.softcap);
  call.option("deterministic", &params.deterministic);
  return params;
}

// lse (B, H, Tq) for q (B, Tq, H, D). With a q of the wrong rank this falls back to an
// allocatable shape and the op's own validation names the problem.
Shape lse_shape(const Tensor& q) {
  if (q.dim() != 4) return {0};
  return {q.size(0), q.size(2), q.size(1)};
}
void attention_forward(OpCall& call) {
  const Tensor& q = call.input("q");
  attention_fwd(call.ctx, call.output("out", q.shape(), q.dtype()),
                call.output("lse", lse_shape(q), stat_dtype(q.dtype())), q, call.input("k"),
                call.input("v"), attention_params(call), call.optional_input("cu_seqlens_q"),
                call.optional_input("cu_seqlens_k"));
}

// Uses out and lse from the file when given (the tensors an earlier forward saved), else runs the
// forward first.
void attention_backward(OpCall& call) {
  const Tensor& q = call.input("q");
  const Tensor& k = call.input("k");
  const Tensor& v = call.input("v");
  const AttentionParams params = attention_params(call);
  const Tensor cu_q = call.optional_input("cu_seqlens_q"),
               cu_k = call.optional_input("cu_seqlens_k");
  LONGCTX_CHECK(call.has_input("out") == call.has_input("lse"), "op attention --backward: tensors ",
                "'out' and 'lse' come together (both from the forward, or neither), got only '",
                call.has_input("out") ? "out" : "lse", "'");
  Tensor out = call.optional_input("out"), lse = call.optional_input("lse");
  if (!out.defined()) {
    out = Tensor::empty(q.shape(), q.dtype(), call.ctx.device(), &call.ctx);
    lse = Tensor::empty(lse_shape(q), stat_dtype(q.dtype()), call.ctx.device(), &call.ctx);
    attention_fwd(call.ctx, out, lse, q, k, v, params, cu_q, cu_k);
  }
  attention_bwd(call.ctx, call.output("dq", q.shape(), q.dtype()),
                call.output("dk", k.shape(), k.dtype()), call.output("dv", v.shape(), v.dtype()),
                call.input("dout"), q, k, v, out, lse, params, cu_q, cu_k);
}

void attention_decode_forward(OpCall& call) {
  const Tensor& q = call.input("q");
  const AttentionParams params = attention_params(call);
  int num_splits = 0;
  call.option("num_splits", &num_splits);
  const Tensor k_new = call.optional_input("k_new"), v_new = call.optional_input("v_new");
  // The append writes into the caches: run it on copies that become the outputs. Without new
  // tokens the caches are only read and are not written out.
  auto cache = [&](const std::string& name) {
    const Tensor& in = call.input(name);
    if (!k_new.defined() && !v_new.defined()) return in;
    const Tensor t = call.output(name, in.shape(), in.dtype());
    t.copy_from(in, &call.ctx);
    return t;
  };
  const Tensor k_cache = cache("k_cache"), v_cache = cache("v_cache");
  attention_decode(call.ctx, call.output("out", q.shape(), q.dtype()),
                   call.output("lse", lse_shape(q), stat_dtype(q.dtype())), q, k_cache, v_cache,
                   call.input("cache_seqlens"), k_new, v_new, params, num_splits);
}

}  // namespace

std::vector<OpSpec> attention_ops() {
  std::vector<std::string> decode_options = kAttentionOptions;
  decode_options.push_back("num_splits");
  return {
      {"attention",
       "softmax(q k^T * scale, masked) v over (B, T, H, D); GQA, causal/window, softcap; out, lse",
       {"q", "k", "v", "?cu_seqlens_q", "?cu_seqlens_k"},
       kAttentionOptions,
       {"dout", "?out", "?lse"},
       attention_forward,
       attention_backward},
      {"attention_decode",
       "q against a KV cache (cache_seqlens i32), appending k_new/v_new first; out, lse "
       "(+ updated k_cache, v_cache)",
       {"q", "k_cache", "v_cache", "cache_seqlens", "?k_new", "?v_new"},
       decode_options,
       {},
       attention_decode_forward,
       nullptr},
  };
}

}  // namespace longctx::cli
