// ssd on CUDA (Mamba-2 state-space duality, mamba_chunk_scan_combined semantics): forward and
// the one-step decode. The backward is in ssd_bwd.cu.
//
//   h_t[h, p, n] = exp(dt'_t[h] A[h]) h_{t-1}[h, p, n] + dt'_t[h] B_t[g, n] x_t[h, p]
//   y_t[h, p] = sum_n C_t[g, n] h_t[h, p, n] + D[h] x_t[h, p];  out = y * silu(z) if z given.
// Layouts: x, z, out (B, T, H, P); dt (B, T, H); A, D, dt_bias (H); B, C (B, T, G, N);
//          initial_states, final_states (B, H, P, N).
//
// Forward: one block per (batch, head, tile of kPT head channels p), walking the sequence in
// chunks of kL = 32 steps with the (kPT x N) state in shared memory. Per chunk, with
// a_t = dt'_t A, cum_t = a_0 + ... + a_t, seg(s, t) = a_{s+1} + ... + a_t (every sum taken over
// its own segment in step order) and all products f32 FMA from shared memory:
//   Gm[t, s] = (C_t . B_s) exp(seg(s, t)) dt'_s  for s <= t              (intra-chunk kernel)
//   y_t[p]   = exp(cum_t) sum_n C_t[n] S[p, n] + sum_s Gm[t, s] x_s[p]   (inter + intra)
//   S[p, n] <- exp(cum_{L-1}) S[p, n] + sum_s exp(seg(s, L-1)) dt'_s x_s[p] B_s[n]
// so the pass over chunk states is sequential over chunks inside the block and no chunk states
// are stored. The CUDA chunk is fixed at kL (params.chunk_size tunes the CPU path; the result
// does not depend on it beyond rounding). That kernel runs f32 inputs (and 16-bit ones whose
// tensor-core kernel does not fit in shared memory): f32 FMA from shared memory, rows padded to
// N + 1 floats against bank conflicts.
//
// bf16/f16 inputs run the same algorithm on tensor cores (ssd_fwd_tc_kernel): chunks of kTL = 64
// steps, tiles of kTP = 64 head channels, every in-chunk product a 16x16x16 WMMA (16-bit
// operands from shared memory, f32 accumulation), N padded with zeros to a multiple of 16:
//   G  = C B^T                 then Gm[t, s] = G[t, s] exp(seg(s, t)) dt'_s for s <= t, in T
//   Yi = Gm X                  the intra-chunk outputs
//   Ys = C S^T                 from the state rounded to T;  y = exp(cum_t) Ys + Yi + D x
//   S  = exp(cum_{L-1}) S + Xw^T B,  Xw[s, p] = exp(seg(s, L-1)) dt'_s x_s[p]
// Xw enters the state product as three T parts (hi + mid + lo, 24 significant bits together), so
// the f32 state, which final_states returns and every later chunk reads, keeps f32 accuracy while
// its product runs on tensor cores too; only the outputs (stored in T anyway) see T-rounded
// operands, as in mamba_ssm's Triton kernels. In a numpy model of this kernel (T = 200, P = 64,
// N = 128, bf16) the final state's error was 1.1e-7 against 3.8e-7 allowed by the 2x rule with
// three parts, 2.5e-6 with two and 1.4e-3 with one; out's 0.053 against 0.142.
//
// ssd_state_update: one warp per (b, h, p), lanes over slices of n.
#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "kernels/scan/scan_common.cuh"
#include "longctx/ops/ssd.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kL = 32;   // chunk length: one warp scans the chunk's cumulative decay
constexpr int kPT = 32;  // head channels p per block
static_assert(kL == 32, "the chunk cumsum is one warp scan");

struct Dims {
  int64_t B, T, H, P, G, N;
  bool softplus;
};

// Shared-memory floats of the forward kernel for state size N.
size_t fwd_smem_floats(int64_t N) {
  return size_t((kPT + 2 * kL) * (N + 1) + kL * kPT + kL * kL + 3 * kL);
}

__device__ __forceinline__ float dt_eff(float dt, float bias, bool softplus) {
  const float v = dt + bias;
  return softplus ? scan::softplusf(v) : v;
}

// Grid: (ceil(P / kPT), H, B); dynamic shared memory fwd_smem_floats(N) floats.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_fwd_kernel(T* out, float* final_states, const T* x, const T* dt, const float* A,
                   const T* Bm, const T* Cm, const float* Dv, const T* z, const float* dt_bias,
                   const float* initial_states, Dims n) {
  extern __shared__ float smem[];
  const int64_t N1 = n.N + 1;
  float* S = smem;            // (kPT, N + 1) the state of this p-tile
  float* Bs = S + kPT * N1;   // (kL, N + 1)
  float* Cs = Bs + kL * N1;   // (kL, N + 1)
  float* xs = Cs + kL * N1;   // (kL, kPT)
  float* Gm = xs + kL * kPT;  // (kL, kL)
  float* cum = Gm + kL * kL;  // (kL) inclusive cumsum of dt' A
  float* dtp = cum + kL;      // (kL) dt'
  float* w = dtp + kL;        // (kL) exp(cum_{L-1} - cum_s) dt'_s

  const int64_t p0 = int64_t(blockIdx.x) * kPT, h = blockIdx.y, bi = blockIdx.z;
  const int64_t g = h / (n.H / n.G);
  const int np = int(std::min<int64_t>(kPT, n.P - p0));
  const float Ah = A[h], Dh = Dv ? Dv[h] : 0.f, bias = dt_bias ? dt_bias[h] : 0.f;
  const int tid = threadIdx.x, lane = tid % 32;

  for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
    const int p = int(i / n.N);
    const int64_t s = i % n.N;
    S[p * N1 + s] =
        initial_states && p < np ? initial_states[((bi * n.H + h) * n.P + p0 + p) * n.N + s] : 0.f;
  }
  for (int64_t t0 = 0; t0 < n.T; t0 += kL) {
    // 1. Stage the chunk: B, C rows, the x tile, dt' and the decay cumsum.
    for (int64_t i = tid; i < kL * n.N; i += kThreads) {
      const int t = int(i / n.N);
      const int64_t s = i % n.N, tt = t0 + t;
      const int64_t at = ((bi * n.T + tt) * n.G + g) * n.N + s;
      Bs[t * N1 + s] = tt < n.T ? load_f32(Bm[at]) : 0.f;
      Cs[t * N1 + s] = tt < n.T ? load_f32(Cm[at]) : 0.f;
    }
    for (int i = tid; i < kL * kPT; i += kThreads) {
      const int t = i / kPT, p = i % kPT;
      const int64_t tt = t0 + t;
      xs[i] = tt < n.T && p < np ? load_f32(x[((bi * n.T + tt) * n.H + h) * n.P + p0 + p]) : 0.f;
    }
    if (tid < 32) {
      const int64_t tt = t0 + lane;
      // Past the end dt' = 0: the step is the identity and adds nothing.
      const float d =
          tt < n.T ? dt_eff(load_f32(dt[(bi * n.T + tt) * n.H + h]), bias, n.softplus) : 0.f;
      dtp[lane] = d;
      __syncwarp();
      // cum_t = a_0 + ... + a_t and the suffix a_{t+1} + ... + a_{kL-1} (a_r = dt'_r A), each
      // summed in step order: a segment's decay is the exponential of its own sum, never a
      // difference of cumulative sums, whose absolute rounding (~|cum| u) would become a
      // relative error of the decay (2.4x the naive f32 error of out in a numpy model of the
      // mamba2_130m_scaled case; 0.7x with segment sums).
      float c = 0.f, suffix = 0.f;
      for (int r = 0; r < kL; ++r) {
        const float a = dtp[r] * Ah;
        if (r <= lane)
          c += a;
        else
          suffix += a;
      }
      cum[lane] = c;
      w[lane] = expf(suffix) * d;
    }
    __syncthreads();
    // 2. Gm[t, s] = (C_t . B_s) exp(a_{s+1} + ... + a_t) dt'_s for s <= t; a warp covers one t.
    for (int i = tid; i < kL * kL; i += kThreads) {
      const int t = i / kL, s = i % kL;
      float v = 0.f;
      if (s <= t) {
        for (int64_t k = 0; k < n.N; ++k) v += Cs[t * N1 + k] * Bs[s * N1 + k];
        float seg = 0.f;
        for (int r = s + 1; r <= t; ++r) seg += dtp[r] * Ah;
        v *= expf(seg) * dtp[s];
      }
      Gm[i] = v;
    }
    __syncthreads();
    // 3. Outputs of the chunk from the state entering it (S) and the intra-chunk kernel.
    for (int i = tid; i < kL * kPT; i += kThreads) {
      const int t = i / kPT, p = i % kPT;
      const int64_t tt = t0 + t;
      if (tt >= n.T || p >= np) continue;
      float inter = 0.f;
      for (int64_t k = 0; k < n.N; ++k) inter += Cs[t * N1 + k] * S[p * N1 + k];
      float y = expf(cum[t]) * inter + Dh * xs[t * kPT + p];
      for (int s = 0; s <= t; ++s) y += Gm[t * kL + s] * xs[s * kPT + p];
      const int64_t at = ((bi * n.T + tt) * n.H + h) * n.P + p0 + p;
      if (z) y *= scan::siluf(load_f32(z[at]));
      out[at] = store_as<T>(y);
    }
    __syncthreads();
    // 4. The state leaving the chunk; a warp covers 32 consecutive n of one p.
    const float chunk_decay = expf(cum[kL - 1]);
    for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
      const int p = int(i / n.N);
      const int64_t s = i % n.N;
      float v = chunk_decay * S[p * N1 + s];
      for (int t = 0; t < kL; ++t) v += w[t] * xs[t * kPT + p] * Bs[t * N1 + s];
      S[p * N1 + s] = v;
    }
    __syncthreads();
  }
  if (!final_states) return;
  for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
    const int p = int(i / n.N);
    const int64_t s = i % n.N;
    if (p < np) final_states[((bi * n.H + h) * n.P + p0 + p) * n.N + s] = S[p * N1 + s];
  }
}

// ---- Forward on tensor cores -----------------------------------------------------------------

constexpr int kTL = 64;  // chunk length
constexpr int kTP = 64;  // head channels p per block
constexpr int kTC = 16;  // WMMA tile edge
constexpr int kTcWarps = kThreads / 32;

// The shared-memory layout of ssd_fwd_tc_kernel for state size N (padded to Np): byte offsets of
// each array, every one 128-byte aligned (WMMA wants 32), rows padded (16-bit: +8 elements,
// f32: +4) so that the 16 rows of a tile start in different banks.
struct TcLayout {
  int64_t Np, ld_s, ld_h, ld_x,
      ld_f;  // padded N; row strides of Sf, the T rows of N, x/Gm, f32 tiles
  size_t Sf, Sh, Bh, Ch, Xh, Gm, Xw, Gf, Yf, cum, w, bytes;

  template <class T>
  static TcLayout of(int64_t N) {
    TcLayout l{};
    l.Np = (N + kTC - 1) / kTC * kTC;
    l.ld_s = l.Np + 4;
    l.ld_h = l.Np + 8;
    l.ld_x = kTL + 8;
    l.ld_f = kTL + 4;
    size_t at = 0;
    const auto take = [&](size_t bytes) {
      const size_t start = at;
      at += (bytes + 127) / 128 * 128;
      return start;
    };
    const size_t t = sizeof(T);
    l.Sf = take(kTP * l.ld_s * 4);
    l.Sh = take(kTP * l.ld_h * t);
    l.Bh = take(kTL * l.ld_h * t);
    l.Ch = take(kTL * l.ld_h * t);
    l.Xh = take(kTL * l.ld_x * t);
    l.Gm = take(kTL * l.ld_x * t);
    l.Xw = take(kTL * l.ld_x * t);
    l.Gf = take(kTL * l.ld_f * 4);
    l.Yf = take(kTL * l.ld_f * 4);
    l.cum = take(kTL * 4);
    l.w = take(3 * kTL * 4);  // w, then a = dt' A, then dt'
    l.bytes = at;
    return l;
  }
};

// acc (+)= A (16 x K, row-major at a, stride lda) @ B, B read as (K x 16) from b with layout
// LayoutB (col_major: b holds B^T row-major), K a multiple of 16.
template <class T, class LayoutA, class LayoutB>
__device__ __forceinline__ void wmma_accumulate(
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kTC, kTC, kTC, float>& acc, const T* a,
    int64_t a_step, int64_t lda, const T* b, int64_t b_step, int64_t ldb, int64_t K) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, kTC, kTC, kTC, T, LayoutA> fa;
  wmma::fragment<wmma::matrix_b, kTC, kTC, kTC, T, LayoutB> fb;
  for (int64_t k = 0; k < K; k += kTC) {
    wmma::load_matrix_sync(fa, a + k * a_step, unsigned(lda));
    wmma::load_matrix_sync(fb, b + k * b_step, unsigned(ldb));
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// Grid: (ceil(P / kTP), H, B); kThreads threads; dynamic shared memory TcLayout::of<T>(N).bytes.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_fwd_tc_kernel(T* out, float* final_states, const T* x, const T* dt, const float* A,
                      const T* Bm, const T* Cm, const float* Dv, const T* z, const float* dt_bias,
                      const float* initial_states, Dims n, TcLayout lay) {
  using namespace nvcuda;
  using Acc = wmma::fragment<wmma::accumulator, kTC, kTC, kTC, float>;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  float* Sf = reinterpret_cast<float*>(tc_smem + lay.Sf);  // (kTP, Np) the f32 state
  T* Sh = reinterpret_cast<T*>(tc_smem + lay.Sh);          // (kTP, Np) the state in T
  T* Bh = reinterpret_cast<T*>(tc_smem + lay.Bh);          // (kTL, Np)
  T* Ch = reinterpret_cast<T*>(tc_smem + lay.Ch);          // (kTL, Np)
  T* Xh = reinterpret_cast<T*>(tc_smem + lay.Xh);          // (kTL, kTP)
  T* Gm = reinterpret_cast<T*>(tc_smem + lay.Gm);          // (kTL, kTL)
  T* Xw = reinterpret_cast<T*>(tc_smem + lay.Xw);          // (kTL, kTP) one part of Xw
  float* Gf = reinterpret_cast<float*>(tc_smem + lay.Gf);  // (kTL, kTL) G, then Yi
  float* Yf = reinterpret_cast<float*>(tc_smem + lay.Yf);  // (kTL, kTP) Ys
  float* cum = reinterpret_cast<float*>(tc_smem + lay.cum);
  float* w = reinterpret_cast<float*>(tc_smem + lay.w);
  float* a = w + kTL;
  float* dtp = a + kTL;

  const int64_t Np = lay.Np, ld_s = lay.ld_s, ld_h = lay.ld_h, ld_x = lay.ld_x, ld_f = lay.ld_f;
  const int64_t p0 = int64_t(blockIdx.x) * kTP, h = blockIdx.y, bi = blockIdx.z;
  const int64_t g = h / (n.H / n.G);
  const int np = int(std::min<int64_t>(kTP, n.P - p0));
  const float Ah = A[h], Dh = Dv ? Dv[h] : 0.f, bias = dt_bias ? dt_bias[h] : 0.f;
  const int tid = threadIdx.x, warp = tid / 32;
  constexpr int kTiles = (kTL / kTC) * (kTP / kTC);  // 16 output tiles of a (64 x 64) product
  const int64_t state_tiles = (kTP / kTC) * (Np / kTC);

  for (int64_t i = tid; i < kTP * Np; i += kThreads) {
    const int p = int(i / Np);
    const int64_t s = i % Np;
    const float v = initial_states && p < np && s < n.N
                        ? initial_states[((bi * n.H + h) * n.P + p0 + p) * n.N + s]
                        : 0.f;
    Sf[p * ld_s + s] = v;
    Sh[p * ld_h + s] = store_as<T>(v);
  }
  for (int64_t t0 = 0; t0 < n.T; t0 += kTL) {
    // 1. Stage the chunk (zeros past the end of the sequence, of N and of P), dt' and a = dt' A.
    for (int64_t i = tid; i < kTL * Np; i += kThreads) {
      const int t = int(i / Np);
      const int64_t s = i % Np, tt = t0 + t;
      const bool in = tt < n.T && s < n.N;
      const int64_t at = ((bi * n.T + tt) * n.G + g) * n.N + s;
      Bh[t * ld_h + s] = in ? Bm[at] : store_as<T>(0.f);
      Ch[t * ld_h + s] = in ? Cm[at] : store_as<T>(0.f);
    }
    for (int i = tid; i < kTL * kTP; i += kThreads) {
      const int t = i / kTP, p = i % kTP;
      const int64_t tt = t0 + t;
      Xh[t * ld_x + p] =
          tt < n.T && p < np ? x[((bi * n.T + tt) * n.H + h) * n.P + p0 + p] : store_as<T>(0.f);
    }
    if (tid < kTL) {
      const int64_t tt = t0 + tid;
      // Past the end dt' = 0: the step is the identity and adds nothing.
      const float d =
          tt < n.T ? dt_eff(load_f32(dt[(bi * n.T + tt) * n.H + h]), bias, n.softplus) : 0.f;
      a[tid] = d * Ah;
      dtp[tid] = d;
    }
    __syncthreads();
    if (tid < kTL) {
      // Segment sums in step order, as in the FMA kernel (never differences of cumulative sums).
      float c = 0.f, suffix = 0.f;
      for (int r = 0; r < kTL; ++r) {
        if (r <= tid)
          c += a[r];
        else
          suffix += a[r];
      }
      cum[tid] = c;
      w[tid] = expf(suffix) * dtp[tid];
    }
    // 2. G = C B^T into Gf and Ys = C S^T into Yf: 16 tiles each, two of each per warp.
    for (int tile = warp; tile < kTiles; tile += kTcWarps) {
      const int ti = tile / (kTL / kTC), tj = tile % (kTL / kTC);
      Acc acc;
      wmma::fill_fragment(acc, 0.f);
      wmma_accumulate<T, wmma::row_major, wmma::col_major>(acc, Ch + ti * kTC * ld_h, 1, ld_h,
                                                           Bh + tj * kTC * ld_h, 1, ld_h, Np);
      wmma::store_matrix_sync(Gf + ti * kTC * ld_f + tj * kTC, acc, unsigned(ld_f),
                              wmma::mem_row_major);
      wmma::fill_fragment(acc, 0.f);
      wmma_accumulate<T, wmma::row_major, wmma::col_major>(acc, Ch + ti * kTC * ld_h, 1, ld_h,
                                                           Sh + tj * kTC * ld_h, 1, ld_h, Np);
      wmma::store_matrix_sync(Yf + ti * kTC * ld_f + tj * kTC, acc, unsigned(ld_f),
                              wmma::mem_row_major);
    }
    __syncthreads();
    // 3. Gm from G (causal mask and segment decays), and the state decays by the whole chunk.
    for (int i = tid; i < kTL * kTL; i += kThreads) {
      const int t = i / kTL, s = i % kTL;
      float v = 0.f;
      if (s <= t) {
        float seg = 0.f;
        for (int r = s + 1; r <= t; ++r) seg += a[r];
        v = Gf[t * ld_f + s] * expf(seg) * dtp[s];
      }
      Gm[t * ld_x + s] = store_as<T>(v);
    }
    const float chunk_decay = expf(cum[kTL - 1]);
    for (int64_t i = tid; i < kTP * Np; i += kThreads) Sf[i / Np * ld_s + i % Np] *= chunk_decay;
    __syncthreads();
    // 4. Yi = Gm X into Gf (G is used up).
    for (int tile = warp; tile < kTiles; tile += kTcWarps) {
      const int ti = tile / (kTP / kTC), tj = tile % (kTP / kTC);
      Acc acc;
      wmma::fill_fragment(acc, 0.f);
      wmma_accumulate<T, wmma::row_major, wmma::row_major>(acc, Gm + ti * kTC * ld_x, 1, ld_x,
                                                           Xh + tj * kTC, ld_x, ld_x, kTL);
      wmma::store_matrix_sync(Gf + ti * kTC * ld_f + tj * kTC, acc, unsigned(ld_f),
                              wmma::mem_row_major);
    }
    // 5. S += Xw^T B, Xw in three T parts: each part is the rounding of what the earlier ones
    //    left of Xw[s, p] = w_s x_s[p] (the state's tiles are the accumulators).
    for (int part = 0; part < 3; ++part) {
      for (int i = tid; i < kTL * kTP; i += kThreads) {
        const int s = i / kTP, p = i % kTP;
        float rest = w[s] * load_f32(Xh[s * ld_x + p]);
        for (int q = 0; q < part; ++q) rest -= load_f32(store_as<T>(rest));
        Xw[s * ld_x + p] = store_as<T>(rest);
      }
      __syncthreads();
      for (int64_t tile = warp; tile < state_tiles; tile += kTcWarps) {
        const int64_t ti = tile / (Np / kTC), tj = tile % (Np / kTC);
        float* dst = Sf + ti * kTC * ld_s + tj * kTC;
        Acc acc;
        wmma::load_matrix_sync(acc, dst, unsigned(ld_s), wmma::mem_row_major);
        // A = Xw^T (p, s): Xw is (s, p) row-major, i.e. Xw^T column-major.
        wmma_accumulate<T, wmma::col_major, wmma::row_major>(acc, Xw + ti * kTC, ld_x, ld_x,
                                                             Bh + tj * kTC, ld_h, ld_h, kTL);
        wmma::store_matrix_sync(dst, acc, unsigned(ld_s), wmma::mem_row_major);
      }
      __syncthreads();
    }
    // 6. The chunk's outputs; the new state in T for the next chunk's Ys.
    for (int i = tid; i < kTL * kTP; i += kThreads) {
      const int t = i / kTP, p = i % kTP;
      const int64_t tt = t0 + t;
      if (tt >= n.T || p >= np) continue;
      const int64_t at = ((bi * n.T + tt) * n.H + h) * n.P + p0 + p;
      float y =
          expf(cum[t]) * Yf[t * ld_f + p] + Gf[t * ld_f + p] + Dh * load_f32(Xh[t * ld_x + p]);
      if (z) y *= scan::siluf(load_f32(z[at]));
      out[at] = store_as<T>(y);
    }
    for (int64_t i = tid; i < kTP * Np; i += kThreads) {
      const int64_t p = i / Np, s = i % Np;
      Sh[p * ld_h + s] = store_as<T>(Sf[p * ld_s + s]);
    }
    __syncthreads();
  }
  if (!final_states) return;
  for (int64_t i = tid; i < kTP * n.N; i += kThreads) {
    const int p = int(i / n.N);
    const int64_t s = i % n.N;
    if (p < np) final_states[((bi * n.H + h) * n.P + p0 + p) * n.N + s] = Sf[p * ld_s + s];
  }
}

// One warp per (b, h, p); lane l owns n = l, l + 32, ...
template <class T>
__global__ void ssd_state_update_kernel(T* out, float* state, const T* x, const T* dt,
                                        const float* A, const T* Bm, const T* Cm, const float* Dv,
                                        const T* z, const float* dt_bias, Dims n) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // (b, h, p)
  const int lane = threadIdx.x % 32;
  if (row >= n.B * n.H * n.P) return;  // whole warps exit together
  const int64_t bh = row / n.P, bi = bh / n.H, h = bh % n.H, g = h / (n.H / n.G);
  const float d = dt_eff(load_f32(dt[bh]), dt_bias ? dt_bias[h] : 0.f, n.softplus);
  const float decay = expf(d * A[h]), xv = load_f32(x[row]);
  float y = 0.f;
  for (int64_t s = lane; s < n.N; s += 32) {
    const int64_t bc = (bi * n.G + g) * n.N + s;
    const float hs = decay * state[row * n.N + s] + d * load_f32(Bm[bc]) * xv;
    state[row * n.N + s] = hs;
    y += load_f32(Cm[bc]) * hs;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) y += __shfl_xor_sync(0xffffffffu, y, off);
  if (lane != 0) return;
  if (Dv) y += Dv[h] * xv;
  if (z) y *= scan::siluf(load_f32(z[row]));
  out[row] = store_as<T>(y);
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data()) : nullptr;
}

}  // namespace

void ssd_fwd(const Context& ctx, const Tensor& out, const Tensor& final_states, const SSDInputs& in,
             const SSDParams& params) {
  Dims n{};
  n.B = in.x.size(0);
  n.T = in.x.size(1);
  n.H = in.x.size(2);
  n.P = in.x.size(3);
  n.G = in.B.size(2);
  n.N = in.B.size(3);
  n.softplus = params.dt_softplus;
  if (n.B * n.H * n.P == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  int max_smem = 0;
  LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            state_of(ctx).device));
  dispatch_cuda_float("ssd_fwd", in.x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* y = static_cast<T*>(out.data());
    float* fin = final_states.defined() ? final_states.data_as<float>() : nullptr;
    if constexpr (!std::is_same_v<T, float>) {
      const TcLayout lay = TcLayout::of<T>(n.N);
      if (lay.bytes <= size_t(max_smem)) {
        LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
            ssd_fwd_tc_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(lay.bytes)));
        const dim3 grid(unsigned((n.P + kTP - 1) / kTP), unsigned(n.H), unsigned(n.B));
        ssd_fwd_tc_kernel<T><<<grid, kThreads, lay.bytes, stream>>>(
            y, fin, ptr_or_null<T>(in.x), ptr_or_null<T>(in.dt), in.A.data_as<float>(),
            ptr_or_null<T>(in.B), ptr_or_null<T>(in.C), ptr_or_null<float>(in.D),
            ptr_or_null<T>(in.z), ptr_or_null<float>(in.dt_bias),
            ptr_or_null<float>(in.initial_states), n, lay);
        return;
      }
    }
    const size_t smem = fwd_smem_floats(n.N) * sizeof(float);
    LONGCTX_CHECK(smem <= size_t(max_smem), "ssd_fwd: state size N = ", n.N, " needs ", smem,
                  " bytes of shared memory per block on CUDA, the device allows ", max_smem);
    LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
        ssd_fwd_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid(unsigned((n.P + kPT - 1) / kPT), unsigned(n.H), unsigned(n.B));
    ssd_fwd_kernel<T><<<grid, kThreads, smem, stream>>>(
        y, fin, ptr_or_null<T>(in.x), ptr_or_null<T>(in.dt), in.A.data_as<float>(),
        ptr_or_null<T>(in.B), ptr_or_null<T>(in.C), ptr_or_null<float>(in.D), ptr_or_null<T>(in.z),
        ptr_or_null<float>(in.dt_bias), ptr_or_null<float>(in.initial_states), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

void ssd_state_update(const Context& ctx, const Tensor& out, const Tensor& state, const Tensor& x,
                      const Tensor& dt, const Tensor& A, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                      const SSDParams& params) {
  Dims n{};
  n.B = x.size(0);
  n.H = x.size(1);
  n.P = x.size(2);
  n.G = B.size(1);
  n.N = B.size(2);
  n.T = 1;
  n.softplus = params.dt_softplus;
  const int64_t rows = n.B * n.H * n.P;
  if (rows == 0) return;
  cudaStream_t stream = state_of(ctx).stream;
  constexpr int kBlock = 128;
  dispatch_cuda_float("ssd_state_update", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    ssd_state_update_kernel<T><<<unsigned((rows * 32 + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
        static_cast<T*>(out.data()), state.data_as<float>(), ptr_or_null<T>(x), ptr_or_null<T>(dt),
        A.data_as<float>(), ptr_or_null<T>(B), ptr_or_null<T>(C), ptr_or_null<float>(D),
        ptr_or_null<T>(z), ptr_or_null<float>(dt_bias), n);
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
