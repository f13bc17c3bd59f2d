// attention on CUDA: the host entry points of include/longctx/ops/attention.h and the small
// kernels around the flash kernels — KV-cache append, split-KV combine, the backward's
// preprocess D = rowsum(dO * O) and the dQ f32 -> T conversion.
//
// Dispatch: dtype -> head dim -> launcher, over the table of head_dims.h. bf16/f16 run the
// tensor-core kernels (flash_fwd.cuh, flash_bwd.cuh, instantiated per head dim); f32 runs the FMA
// kernels of attention_f32.cuh (instantiated per head-dim bucket, any head dim up to 256), except
// on a context with bf16 matmul precision (Context::set_matmul_precision), where f32 attention
// with a tensor-core head dim runs the bf16 kernels on bf16 copies of its inputs and converts the
// results back (torch.autocast's SDPA with f32 outputs). An f32 head dim the tensor-core kernels
// lack (say 16 or 80) runs the f32 kernels there too, computing in f32: defined, just slower.
// Decoding stays f32 under bf16 precision: converting the whole cache at every step would cost
// more than the tensor cores save on one query row.
// Inputs were validated by src/ops/attention.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/attention/attention_params.cuh"
#include "kernels/attention/head_dims.h"
#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/runtime.h"
#include "kernels/common/types.cuh"
#include "src/ops/attention.h"

namespace longctx::cuda {

namespace {

using attn::BwdParams;
using attn::FwdParams;

// ---- small kernels --------------------------------------------------------------------------

// k_cache[b, seqlens[b] + t] = k_new[b, t] (and v); positions past Tmax are dropped (the op's
// validation requires seqlens[b] + Tq <= Tmax; this keeps a violation from writing out of bounds).
template <class T>
__global__ void __launch_bounds__(256)
    append_kv_kernel(T* k_cache, T* v_cache, const T* k_new, const T* v_new, const int* seqlens,
                     int Tq, int Tmax, int64_t row_elems, int64_t total) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t per_batch = int64_t(Tq) * row_elems;
  const int b = int(idx / per_batch);
  const int t = int(idx % per_batch / row_elems);
  const int64_t e = idx % row_elems;  // (hk, d) within a token
  const int pos = seqlens[b] + t;
  if (pos < 0 || pos >= Tmax) return;
  const int64_t dst = (int64_t(b) * Tmax + pos) * row_elems + e;
  if (k_new) k_cache[dst] = k_new[idx];
  if (v_new) v_cache[dst] = v_new[idx];
}

// out = sum_s e^(lse_s - L) O_s, lse = L = log sum_s e^(lse_s); one warp per (b, h, t) row.
template <class T>
__global__ void __launch_bounds__(128)
    combine_splits_kernel(T* out, float* lse, const float* o_part, const float* lse_part,
                          int splits, int64_t rows, int H, int Tq, int D) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t b = row / (int64_t(H) * Tq);
  const int h = int(row / Tq % H), t = int(row % Tq);
  T* dst = out + ((b * Tq + t) * H + h) * D;
  float mx = -INFINITY;
  bool nan = false;
  for (int s = 0; s < splits; ++s) {
    const float x = lse_part[s * rows + row];
    nan = nan || x != x;
    mx = fmaxf(mx, x);  // skips NaN
  }
  if (nan) {  // a split saw a NaN or +inf score: one softmax over the whole row would be NaN
    for (int d = lane; d < D; d += 32) dst[d] = store_as<T>(NAN);
    if (lane == 0) lse[row] = NAN;
    return;
  }
  if (mx == -INFINITY) {  // no split saw a key
    for (int d = lane; d < D; d += 32) dst[d] = store_as<T>(0.f);
    if (lane == 0) lse[row] = -INFINITY;
    return;
  }
  float sum = 0.f;
  for (int s = 0; s < splits; ++s) sum += expf(lse_part[s * rows + row] - mx);
  const float total = mx + logf(sum);
  for (int d = lane; d < D; d += 32) {
    float acc = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float w = expf(lse_part[s * rows + row] - total);  // 0 for an empty split
      if (w > 0.f) acc += w * o_part[(s * rows + row) * D + d];
    }
    dst[d] = store_as<T>(acc);
  }
  if (lane == 0) lse[row] = total;
}

// dsum[b, h, t] = sum_d dout[b, t, h, d] * out[b, t, h, d] (f32); one warp per row.
template <class T>
__global__ void __launch_bounds__(128)
    bwd_preprocess_kernel(float* dsum, const T* dout, const T* out, int64_t rows, int H, int Tq,
                          int D) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;  // (b, t, h)
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* dor = dout + row * D;
  const T* orow = out + row * D;
  float acc = 0.f;
  for (int d = lane; d < D; d += 32) acc += load_f32(dor[d]) * load_f32(orow[d]);
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    const int64_t b = row / (int64_t(Tq) * H);
    const int t = int(row / H % Tq), h = int(row % H);
    dsum[(b * H + h) * Tq + t] = acc;
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    convert_dq_kernel(T* dq, const float* dq_accum, float scale, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) dq[i] = store_as<T>(dq_accum[i] * scale);
}

unsigned blocks_for(int64_t n, int per_block) {
  return unsigned((n + per_block - 1) / per_block);
}

// ---- dispatch -------------------------------------------------------------------------------
//
// Two kernel families run today, chosen by dtype: f32 -> the FMA kernels (attention_f32.cuh),
// bf16/f16 -> the mma.sync kernels (flash_fwd.cuh, flash_bwd.cuh; sm_80 and later). A Hopper
// family (wgmma + TMA, FA3-style) is the planned third; it slots in where launch_fwd and
// attention_bwd pick the tensor-core launcher, under this rule (bench/results/2026-12-04-ptxas/
// README.md has the design):
//   bf16/f16 (or f32 converted under bf16 precision) runs the Hopper family when the device's
//   compute capability is 9.x, the build has sm_90a code (wgmma and setmaxnreg need it), and the
//   head dim is in its own table in head_dims.h; else the mma.sync family.
// attention_supports does not change with it: the Hopper family covers a subset of what the
// mma.sync family runs, faster. The params structs, the split-KV combine, the backward's
// preprocess and the dQ conversion are shared.

#define LONGCTX_ATTN_CASE(D) \
  case D:                    \
    return f(std::integral_constant<int, D>{});

// f(integral_constant<kD>) for a tensor-core head dim D == kD.
template <class F>
void dispatch_tensor_core_head_dim(const char* op, int64_t D, F&& f) {
  switch (D) {
    LONGCTX_ATTN_TENSOR_CORE_HEAD_DIMS(LONGCTX_ATTN_CASE)
    default:
      throw Error(detail::concat(op, ": the CUDA tensor-core kernels support head dims ",
                                 attn::tensor_core_head_dims_text(), ", got ", D));
  }
}

// f(integral_constant<kD>) for the f32 bucket kD >= D that head dim D runs in.
template <class F>
void dispatch_f32_bucket(const char* op, int64_t D, F&& f) {
  switch (attn::f32_head_dim_bucket(D)) {
    LONGCTX_ATTN_F32_HEAD_DIM_BUCKETS(LONGCTX_ATTN_CASE)
    default:
      throw Error(detail::concat(op, ": the CUDA f32 kernels support head dims 1 .. ",
                                 attn::kMaxHeadDim, ", got ", D));
  }
}

#undef LONGCTX_ATTN_CASE

void check_aligned(const char* op, std::initializer_list<std::pair<const char*, const void*>> ps) {
  for (const auto& [name, p] : ps) {
    if (!p) continue;
    LONGCTX_CHECK(
        reinterpret_cast<uintptr_t>(p) % 16 == 0, op, ": argument '", name,
        "' must start on a 16-byte boundary for the bf16/f16 CUDA kernels (its data "
        "pointer is offset; pass a tensor that owns its memory or a 16-byte aligned view; in a "
        "packed batch every sequence's rows must start on one)");
  }
}

// Key tile of the forward kernel that runs (dtype, D): the split heuristic counts tiles.
int fwd_block_n(DType dtype, int D) {
  int bn = 0;
  if (dtype == DType::f32) {
    dispatch_f32_bucket("attention", D,
                        [&](auto hd) { bn = attn::f32_fwd_block_n<decltype(hd)::value>(); });
    return bn;
  }
  dispatch_tensor_core_head_dim("attention", D, [&](auto hd) {
    constexpr int kD = decltype(hd)::value;
    bn = dtype == DType::bf16 ? attn::flash_fwd_block_n<__nv_bfloat16, kD>()
                              : attn::flash_fwd_block_n<__half, kD>();
  });
  return bn;
}

void launch_fwd(const char* op, const FwdParams& p, DType dtype, cudaStream_t stream) {
  switch (dtype) {
    case DType::f32:
      return dispatch_f32_bucket(
          op, p.D, [&](auto hd) { attn::run_f32_fwd<decltype(hd)::value>(p, stream); });
    case DType::bf16:
      return dispatch_tensor_core_head_dim(op, p.D, [&](auto hd) {
        attn::run_flash_fwd<__nv_bfloat16, decltype(hd)::value>(p, stream);
      });
    case DType::f16:
      return dispatch_tensor_core_head_dim(
          op, p.D, [&](auto hd) { attn::run_flash_fwd<__half, decltype(hd)::value>(p, stream); });
    default:
      throw Error(detail::concat(op, ": the CUDA backend supports f32, bf16 and f16, got ",
                                 dtype_name(dtype)));
  }
}

// Split count for decode: enough blocks for about two waves over the SMs, at least two key tiles
// per split, at most 128 splits (flash-decoding's range).
int choose_num_splits(int64_t blocks, int64_t key_tiles, int sms) {
  if (blocks >= sms || key_tiles < 4) return 1;
  const int64_t want = (2 * int64_t(sms) + blocks - 1) / blocks;
  return int(std::max<int64_t>(1, std::min<int64_t>({want, key_tiles / 2, 128})));
}

// Runs the forward over `p` (with p.num_splits chosen), then the combine when it split.
void forward(const Context& ctx, const char* op, FwdParams p, void* out, float* lse, DType dtype) {
  cudaStream_t stream = state_of(ctx).stream;
  p.out = out;
  p.lse = lse;
  if (p.num_splits <= 1) {
    p.num_splits = 1;
    launch_fwd(op, p, dtype, stream);
    return;
  }
  const int D = p.D;
  const int64_t rows = int64_t(p.B) * p.H * p.Tq;
  Tensor o_part = Tensor::empty({p.num_splits, rows, D}, DType::f32, ctx.device(), &ctx);
  Tensor lse_part = Tensor::empty({p.num_splits, rows}, DType::f32, ctx.device(), &ctx);
  p.o_part = o_part.data_as<float>();
  p.lse_part = lse_part.data_as<float>();
  launch_fwd(op, p, dtype, stream);
  dispatch_cuda_float(op, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    combine_splits_kernel<T><<<blocks_for(rows, 4), 128, 0, stream>>>(
        static_cast<T*>(out), lse, p.o_part, p.lse_part, p.num_splits, rows, p.H, p.Tq, D);
  });
  LONGCTX_CHECK_LAUNCH();
}

FwdParams make_fwd_params(const AttentionArgs& a) {
  FwdParams p{};
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.B = int(a.B);
  p.Tq = int(a.Tq);
  p.H = int(a.H);
  p.Tk = int(a.Tk);
  p.Tk_alloc = int(a.Tk);
  p.Hkv = int(a.Hkv);
  p.G = p.H / p.Hkv;
  p.D = int(a.D);
  const float scale = float(a.scale);
  p.scale_log2 = scale * attn::kLog2e;
  p.softcap = float(a.softcap);
  p.scale_softcap = p.softcap > 0.f ? scale / p.softcap : 0.f;
  p.softcap_log2 = p.softcap * attn::kLog2e;
  p.window_left = int(a.window_left);
  p.window_right = int(a.window_right);
  p.num_splits = 1;
  return p;
}

// ---- bf16 matmul precision ------------------------------------------------------------------

// f32 attention on a context with bf16 matmul precision runs the tensor-core kernels when they
// exist for its head dim; otherwise the f32 kernels (see the file comment).
bool runs_in_bf16(const Context& ctx, const AttentionArgs& a) {
  if (a.dtype != DType::f32 || ctx.matmul_precision() != MatmulPrecision::bf16) return false;
  return attn::is_tensor_core_head_dim(a.D);
}

// The bf16 copies (or buffers) of one call's q- and kv-shaped tensors.
struct Bf16 {
  const Context& ctx;
  int64_t q_elems, kv_elems;
  std::vector<Tensor> keep;  // alive until the call returns
  void* buffer(int64_t n) {
    keep.push_back(Tensor::empty({n}, DType::bf16, ctx.device(), &ctx));
    return keep.back().data();
  }
  const void* copy(const void* f32, int64_t n) {
    void* dst = buffer(n);
    convert(dst, DType::bf16, f32, DType::f32, n, state_of(ctx).stream);
    return dst;
  }
  // dst (f32) <- src (bf16), exactly.
  void widen(void* f32, const void* src, int64_t n) {
    convert(f32, DType::f32, src, DType::bf16, n, state_of(ctx).stream);
  }
};

// The forward of a rectangular batch (or of one sequence of a packed one) into out and lse.
void forward_rows(const Context& ctx, const AttentionArgs& a, void* out, float* lse) {
  const char* op = "attention_fwd";
  if (a.B * a.Tq * a.H == 0) return;
  if (runs_in_bf16(ctx, a)) {
    Bf16 bf{ctx, a.B * a.Tq * a.H * a.D, a.B * a.Tk * a.Hkv * a.D, {}};
    AttentionArgs b = a;
    b.dtype = DType::bf16;
    b.q = bf.copy(a.q, bf.q_elems);
    b.k = bf.copy(a.k, bf.kv_elems);
    b.v = bf.copy(a.v, bf.kv_elems);
    void* out16 = bf.buffer(bf.q_elems);
    forward_rows(ctx, b, out16, lse);
    bf.widen(out, out16, bf.q_elems);
    return;
  }
  if (a.dtype != DType::f32) check_aligned(op, {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"out", out}});
  forward(ctx, op, make_fwd_params(a), out, lse, a.dtype);
}

// Rows [begin, begin + len) of the H rows of `lse` (pitch Tq floats) to or from a contiguous
// (H, len) buffer: a packed batch's lse holds one sequence's rows Tq apart.
void copy_lse_rows(const Context& ctx, float* dst, int64_t dst_pitch, const float* src,
                   int64_t src_pitch, int64_t H, int64_t len) {
  if (H * len == 0) return;
  LONGCTX_CUDA_CHECK(cudaMemcpy2DAsync(
      dst, size_t(dst_pitch) * sizeof(float), src, size_t(src_pitch) * sizeof(float),
      size_t(len) * sizeof(float), size_t(H), cudaMemcpyDeviceToDevice, state_of(ctx).stream));
}

}  // namespace

// A packed batch runs one sequence at a time, each exactly as it would alone (batch invariance by
// construction); its lse rows go through a contiguous buffer. Many short sequences pay a launch
// each (~5 us); one launch over every (sequence, tile) is the next step.
void attention_fwd(const Context& ctx, const AttentionArgs& args) {
  auto* lse = static_cast<float*>(args.lse);
  if (!args.seqs_q.packed()) return forward_rows(ctx, args, args.out, lse);
  Tensor rows =
      Tensor::empty({args.H, std::max<int64_t>(args.Tq, 1)}, DType::f32, ctx.device(), &ctx);
  for (int64_t s = 0; s < args.seqs_q.count; ++s) {
    const AttentionArgs seq = args.sequence(s);
    forward_rows(ctx, seq, seq.out, rows.data_as<float>());
    copy_lse_rows(ctx, lse + args.seqs_q.begin(s), args.Tq, rows.data_as<float>(), seq.Tq, args.H,
                  seq.Tq);
  }
}

void attention_decode(const Context& ctx, const AttentionArgs& args) {
  const char* op = "attention_decode";
  if (args.B * args.Tq * args.H == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  if (args.dtype != DType::f32)
    check_aligned(op, {{"q", args.q}, {"k_cache", args.k}, {"v_cache", args.v}, {"out", args.out}});
  const int Tq = int(args.Tq), Tmax = int(args.Tk);
  const bool append = args.k_new || args.v_new;
  if (append) {
    const int64_t row_elems = args.Hkv * args.D, total = args.B * args.Tq * row_elems;
    if (total > 0) {
      dispatch_cuda_float(op, args.dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        append_kv_kernel<T><<<blocks_for(total, 256), 256, 0, stream>>>(
            static_cast<T*>(const_cast<void*>(args.k)), static_cast<T*>(const_cast<void*>(args.v)),
            static_cast<const T*>(args.k_new), static_cast<const T*>(args.v_new),
            args.cache_seqlens, Tq, Tmax, row_elems, total);
      });
      LONGCTX_CHECK_LAUNCH();
    }
  }
  FwdParams p = make_fwd_params(args);
  p.seqlens = args.cache_seqlens;
  p.seqlen_add = append ? Tq : 0;
  const int D = p.D;
  if (args.num_splits > 0) {
    p.num_splits = std::min(args.num_splits, 256);
  } else {
    int sms = 0;
    LONGCTX_CUDA_CHECK(
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, state_of(ctx).device));
    // Rows per block: 128 for the tensor-core kernels with D <= 128, 64 otherwise; a lower bound
    // on blocks is enough for the heuristic.
    const int64_t row_tiles = (int64_t(Tq) * p.G + 127) / 128;
    const int bn = fwd_block_n(args.dtype, D);
    p.num_splits = choose_num_splits(row_tiles * p.B * p.Hkv, (Tmax + bn - 1) / bn, sms);
  }
  forward(ctx, op, p, args.out, static_cast<float*>(args.lse), args.dtype);
}

namespace {

// The backward of a rectangular batch (or of one sequence of a packed one) from lse.
void backward_rows(const Context& ctx, const AttentionArgs& a, const float* lse) {
  const char* op = "attention_bwd";
  const int64_t B = a.B, Tq = a.Tq, H = a.H, D = a.D, Tk = a.Tk, Hkv = a.Hkv;
  const int64_t q_elems = B * Tq * H * D, kv_elems = B * Tk * Hkv * D;
  if (runs_in_bf16(ctx, a)) {
    // out holds the bf16 forward's output widened exactly, so its bf16 copy is that output.
    Bf16 bf{ctx, q_elems, kv_elems, {}};
    AttentionArgs b = a;
    b.dtype = DType::bf16;
    b.q = bf.copy(a.q, q_elems);
    b.k = bf.copy(a.k, kv_elems);
    b.v = bf.copy(a.v, kv_elems);
    b.out = const_cast<void*>(bf.copy(a.out, q_elems));
    b.dout = bf.copy(a.dout, q_elems);
    b.dq = bf.buffer(q_elems);
    b.dk = bf.buffer(kv_elems);
    b.dv = bf.buffer(kv_elems);
    backward_rows(ctx, b, lse);
    bf.widen(a.dq, b.dq, q_elems);
    bf.widen(a.dk, b.dk, kv_elems);
    bf.widen(a.dv, b.dv, kv_elems);
    return;
  }
  cudaStream_t stream = state_of(ctx).stream;
  const size_t esize = dtype_size(a.dtype);
  if (kv_elems > 0 && Tq == 0) {  // no query: the key gradients are zero
    LONGCTX_CUDA_CHECK(cudaMemsetAsync(a.dk, 0, size_t(kv_elems) * esize, stream));
    LONGCTX_CUDA_CHECK(cudaMemsetAsync(a.dv, 0, size_t(kv_elems) * esize, stream));
  }
  if (q_elems > 0 && Tk == 0)
    LONGCTX_CUDA_CHECK(cudaMemsetAsync(a.dq, 0, size_t(q_elems) * esize, stream));
  if (Tq == 0 || Tk == 0 || B == 0 || H == 0) return;
  if (a.dtype != DType::f32)
    check_aligned(op, {{"q", a.q},
                       {"k", a.k},
                       {"v", a.v},
                       {"dout", a.dout},
                       {"dq", a.dq},
                       {"dk", a.dk},
                       {"dv", a.dv}});

  Tensor dsum = Tensor::empty({B, H, Tq}, DType::f32, ctx.device(), &ctx);
  const int64_t rows = B * Tq * H;
  dispatch_cuda_float(op, a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    bwd_preprocess_kernel<T><<<blocks_for(rows, 4), 128, 0, stream>>>(
        dsum.data_as<float>(), static_cast<const T*>(a.dout), static_cast<const T*>(a.out), rows,
        int(H), int(Tq), int(D));
  });
  LONGCTX_CHECK_LAUNCH();

  BwdParams p{};
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.dout = a.dout;
  p.lse = lse;
  p.dsum = dsum.data_as<float>();
  p.dq = a.dq;
  p.dk = a.dk;
  p.dv = a.dv;
  p.B = int(B);
  p.Tq = int(Tq);
  p.Tk = int(Tk);
  p.H = int(H);
  p.Hkv = int(Hkv);
  p.G = int(H / Hkv);
  p.D = int(D);
  p.scale = float(a.scale);
  p.scale_log2 = p.scale * attn::kLog2e;
  p.softcap = float(a.softcap);
  p.scale_softcap = p.softcap > 0.f ? p.scale / p.softcap : 0.f;
  p.softcap_log2 = p.softcap * attn::kLog2e;
  p.window_left = int(a.window_left);
  p.window_right = int(a.window_right);

  if (a.dtype == DType::f32) {  // no atomics: deterministic either way
    dispatch_f32_bucket(op, D, [&](auto hd) { attn::run_f32_bwd<decltype(hd)::value>(p, stream); });
    return;
  }
  Tensor dq_accum;
  if (!a.deterministic) {
    dq_accum = Tensor::zeros({B, Tq, H, D}, DType::f32, ctx.device(), &ctx);
    p.dq_accum = dq_accum.data_as<float>();
  }
  dispatch_tensor_core_head_dim(op, D, [&](auto hd) {
    constexpr int kD = decltype(hd)::value;
    dispatch_cuda_float(op, a.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (!std::is_same_v<T, float>) {
        attn::run_flash_bwd<T, kD>(p, a.deterministic, stream);
        if (!a.deterministic) {
          convert_dq_kernel<T><<<blocks_for(q_elems, 256), 256, 0, stream>>>(
              static_cast<T*>(a.dq), p.dq_accum, p.scale, q_elems);
          LONGCTX_CHECK_LAUNCH();
        }
      }
    });
  });
}

}  // namespace

void attention_bwd(const Context& ctx, const AttentionArgs& args) {
  const auto* lse = static_cast<const float*>(args.lse);
  if (!args.seqs_q.packed()) return backward_rows(ctx, args, lse);
  Tensor rows =
      Tensor::empty({args.H, std::max<int64_t>(args.Tq, 1)}, DType::f32, ctx.device(), &ctx);
  for (int64_t s = 0; s < args.seqs_q.count; ++s) {
    const AttentionArgs seq = args.sequence(s);
    copy_lse_rows(ctx, rows.data_as<float>(), seq.Tq, lse + args.seqs_q.begin(s), args.Tq, args.H,
                  seq.Tq);
    backward_rows(ctx, seq, rows.data_as<float>());
  }
}

}  // namespace longctx::cuda
