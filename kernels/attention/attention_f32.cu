// attention for f32 inputs on CUDA: plain FMA kernels (no tensor cores), tiled through shared
// memory with the same online softmax, masking, packing and split-KV scheme as the tensor-core
// kernels (see flash_fwd.cuh), so forward and decode share one kernel here too.
//
// Forward: one block of 128 threads per (16 packed rows, kv head, batch x split); 8 lanes per
// row, each lane scoring every 8th key of a tile and owning every 8th output column.
// Backward (no atomics, hence deterministic): a dK/dV kernel, one block per (key tile, kv head,
// batch) looping over the group's query heads and the query tiles that see the keys; and a dQ
// kernel, one block per (query tile, head, batch) looping over the key tiles. Both recompute
//   P = exp(S' - lse), dS = P (dP - D) (times 1 - tanh^2 under softcap), dP = dO V^T.
// f32 tiles are padded to D + 1 floats per row so that lanes reading different rows hit
// different banks.
#include "kernels/attention/attention_params.cuh"
#include "kernels/common/cuda_check.cuh"

namespace longctx::cuda::attn {

namespace {

constexpr int kThreads = 128;

template <int D>
struct F32FwdTraits {
  static constexpr int kBlockM = 16;  // rows per block: 8 lanes per row
  static constexpr int kLanesPerRow = kThreads / kBlockM;
  static constexpr int kBlockN = D <= 128 ? 32 : 16;
  static constexpr int kSd = D + 1;        // f32 row stride of Q, K, V tiles
  static constexpr int kSp = kBlockN + 1;  // of the P tile
  static constexpr int kSmemBytes =
      int(sizeof(float)) * ((kBlockM + 2 * kBlockN) * kSd + kBlockM * kSp);
  static_assert(kLanesPerRow == 8 && kBlockN % kLanesPerRow == 0 && D % kLanesPerRow == 0,
                "each of a row's 8 lanes owns whole keys and columns");
};

template <int D>
__global__ void __launch_bounds__(kThreads) f32_fwd_kernel(const FwdParams p) {
  using Tr = F32FwdTraits<D>;
  constexpr int kBM = Tr::kBlockM, kBN = Tr::kBlockN, kL = Tr::kLanesPerRow;
  constexpr int kSd = Tr::kSd, kSp = Tr::kSp;
  extern __shared__ float smem_f32[];
  float* sQ = smem_f32;        // [kBM][kSd]
  float* sK = sQ + kBM * kSd;  // [kBN][kSd]
  float* sV = sK + kBN * kSd;  // [kBN][kSd]
  float* sP = sV + kBN * kSd;  // [kBM][kSp]

  const int tid = threadIdx.x, r = tid / kL, lr = tid % kL;
  const int hk = blockIdx.y;
  const int b = blockIdx.z / p.num_splits, split = blockIdx.z % p.num_splits;
  const int G = p.G, rows = p.Tq * G, r0 = blockIdx.x * kBM;
  const int Tk = p.seqlens ? min(max(p.seqlens[b] + p.seqlen_add, 0), p.Tk_alloc) : p.Tk;
  const int wl = p.window_left, wr = p.window_right;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);

  const int t_first = r0 / G, t_last = (min(r0 + kBM, rows) - 1) / G;
  int lo, hi;
  visible_key_range(t_first, t_last, p.Tq, Tk, wl, wr, lo, hi);
  const int n_tiles = (Tk + kBN - 1) / kBN;
  const int per_split = (n_tiles + p.num_splits - 1) / p.num_splits;
  const int n_begin = max(lo / kBN, split * per_split);
  const int n_end = hi > lo ? min((hi + kBN - 1) / kBN, (split + 1) * per_split) : n_begin;

  const int row = r0 + r, t = row / G, h = hk * G + row % G;
  for (int e = tid; e < kBM * D; e += kThreads) {
    const int rr = r0 + e / D, d = e % D;
    sQ[(e / D) * kSd + d] =
        rr < rows ? q[((int64_t(b) * p.Tq + rr / G) * p.H + hk * G + rr % G) * D + d] : 0.f;
  }

  float o[D / kL];
#pragma unroll
  for (int i = 0; i < D / kL; ++i) o[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int n = n_begin; n < n_end; ++n) {
    const int j0 = n * kBN;
    __syncthreads();  // the previous tile is consumed (and sQ is written before the first)
    for (int e = tid; e < kBN * D; e += kThreads) {
      const int j = j0 + e / D, d = e % D;
      const int64_t src = ((int64_t(b) * p.Tk_alloc + j) * p.Hkv + hk) * D + d;
      sK[(e / D) * kSd + d] = j < Tk ? k[src] : 0.f;
      sV[(e / D) * kSd + d] = j < Tk ? v[src] : 0.f;
    }
    __syncthreads();

    float s[kBN / kL], mx = m;
#pragma unroll
    for (int c = 0; c < kBN / kL; ++c) {
      const int jj = lr + kL * c;
      float acc = 0.f;
      for (int d = 0; d < D; ++d) acc = fmaf(sQ[r * kSd + d], sK[jj * kSd + d], acc);
      float x =
          p.softcap > 0.f ? tanhf(acc * p.scale_softcap) * p.softcap_log2 : acc * p.scale_log2;
      if (!key_visible(t, j0 + jj, p.Tq, Tk, wl, wr)) x = -INFINITY;
      s[c] = x;
      mx = fmaxf(mx, x);
    }
    for (int off = 1; off < kL; off *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float m_use = mx == -INFINITY ? 0.f : mx;  // no visible key yet: keep 2^(-inf) = 0
    const float alpha = exp2f(m - m_use);
    m = mx;
    l *= alpha;
#pragma unroll
    for (int c = 0; c < kBN / kL; ++c) {
      const float pv = exp2f(s[c] - m_use);
      l += pv;
      sP[r * kSp + lr + kL * c] = pv;
    }
    __syncwarp();  // a row's 8 lanes are in one warp
#pragma unroll
    for (int i = 0; i < D / kL; ++i) {
      const int d = lr + kL * i;
      float acc = o[i] * alpha;
      for (int jj = 0; jj < kBN; ++jj) acc = fmaf(sP[r * kSp + jj], sV[jj * kSd + d], acc);
      o[i] = acc;
    }
  }
  for (int off = 1; off < kL; off *= 2) l += __shfl_xor_sync(0xffffffffu, l, off);
  if (row >= rows) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
  const float lse = l > 0.f ? (m + log2f(l)) * kLn2 : -INFINITY;
  const int64_t bht = (int64_t(b) * p.H + h) * p.Tq + t;
  float* dst;
  if (p.num_splits > 1) {
    const int64_t part = int64_t(split) * p.B * p.H * p.Tq + bht;
    dst = p.o_part + part * D;
    if (lr == 0) p.lse_part[part] = lse;
  } else {
    dst = static_cast<float*>(p.out) + ((int64_t(b) * p.Tq + t) * p.H + h) * D;
    if (lr == 0) p.lse[bht] = lse;
  }
#pragma unroll
  for (int i = 0; i < D / kL; ++i) dst[lr + kL * i] = o[i] * inv;
}

template <int D>
struct F32BwdTraits {
  static constexpr int kTile = D <= 128 ? 32 : 16;  // queries and keys per tile
  static constexpr int kSd = D + 1;
  static constexpr int kSp = kTile + 1;
  static constexpr int kAcc = kTile * D / kThreads;  // outputs (j, d) or (i, d) per thread
  static constexpr int kSmemBytes =
      int(sizeof(float)) * (4 * kTile * kSd + 2 * kTile * kSp + 2 * kTile);
  static_assert(kTile * D % kThreads == 0, "whole outputs per thread");
};

// Shared-memory tiles of one (query tile, key tile) pair in the backward.
struct F32BwdTiles {
  float *q, *dout, *k, *v;  // [kTile][kSd]
  float *p, *ds;            // [kTile][kSp]: P and dS, query-major
  float *lse2, *dsum;       // [kTile]: lse * log2(e) (+inf for a row with no key or padding), D
};

template <int D>
__device__ F32BwdTiles f32_bwd_tiles(float* smem) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp;
  F32BwdTiles s;
  s.q = smem;
  s.dout = s.q + kT * kSd;
  s.k = s.dout + kT * kSd;
  s.v = s.k + kT * kSd;
  s.p = s.v + kT * kSd;
  s.ds = s.p + kT * kSp;
  s.lse2 = s.ds + kT * kSp;
  s.dsum = s.lse2 + kT;
  return s;
}

// Query rows [i0, i0 + kTile) of head h into s.q, s.dout, s.lse2, s.dsum (zero / +inf padding).
template <int D>
__device__ void f32_load_queries(const F32BwdTiles& s, const BwdParams& p, int b, int h, int i0) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd;
  const float* q = static_cast<const float*>(p.q);
  const float* dout = static_cast<const float*>(p.dout);
  for (int e = threadIdx.x; e < kT * D; e += kThreads) {
    const int i = i0 + e / D, d = e % D;
    const int64_t src = ((int64_t(b) * p.Tq + i) * p.H + h) * D + d;
    s.q[(e / D) * kSd + d] = i < p.Tq ? q[src] : 0.f;
    s.dout[(e / D) * kSd + d] = i < p.Tq ? dout[src] : 0.f;
  }
  for (int e = threadIdx.x; e < kT; e += kThreads) {
    const int i = i0 + e;
    const int64_t bht = (int64_t(b) * p.H + h) * p.Tq + i;
    const float lse = i < p.Tq ? p.lse[bht] : -INFINITY;
    s.lse2[e] = lse == -INFINITY ? INFINITY : lse * kLog2e;  // P = 2^(S' - inf) = 0
    s.dsum[e] = i < p.Tq ? p.dsum[bht] : 0.f;
  }
}

// Keys [j0, j0 + kTile) of kv head hk into s.k, s.v (zero padding).
template <int D>
__device__ void f32_load_keys(const F32BwdTiles& s, const BwdParams& p, int b, int hk, int j0) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd;
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  for (int e = threadIdx.x; e < kT * D; e += kThreads) {
    const int j = j0 + e / D, d = e % D;
    const int64_t src = ((int64_t(b) * p.Tk + j) * p.Hkv + hk) * D + d;
    s.k[(e / D) * kSd + d] = j < p.Tk ? k[src] : 0.f;
    s.v[(e / D) * kSd + d] = j < p.Tk ? v[src] : 0.f;
  }
}

// s.p = P and s.ds = dS for the loaded pair of tiles. Call between two __syncthreads().
template <int D>
__device__ void f32_probs_and_grads(const F32BwdTiles& s, const BwdParams& p, int i0, int j0) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp;
  for (int e = threadIdx.x; e < kT * kT; e += kThreads) {
    const int i = e / kT, j = e % kT;
    float sc = 0.f, dp = 0.f;
    for (int d = 0; d < D; ++d) {
      sc = fmaf(s.q[i * kSd + d], s.k[j * kSd + d], sc);
      dp = fmaf(s.dout[i * kSd + d], s.v[j * kSd + d], dp);
    }
    float x2, dcap = 1.f;
    if (p.softcap > 0.f) {
      const float th = tanhf(sc * p.scale_softcap);
      x2 = th * p.softcap_log2;
      dcap = 1.f - th * th;
    } else {
      x2 = sc * p.scale_log2;
    }
    float pv = exp2f(x2 - s.lse2[i]);
    if (!key_visible(i0 + i, j0 + j, p.Tq, p.Tk, p.window_left, p.window_right)) pv = 0.f;
    s.p[i * kSp + j] = pv;
    s.ds[i * kSp + j] = pv * (dp - s.dsum[i]) * dcap;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) f32_bwd_dkdv_kernel(const BwdParams p) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp, kAcc = Tr::kAcc;
  extern __shared__ float smem_f32[];
  const F32BwdTiles s = f32_bwd_tiles<D>(smem_f32);
  const int hk = blockIdx.y, b = blockIdx.z, j0 = blockIdx.x * kT;

  int lo, hi;
  visible_query_range(j0, min(j0 + kT, p.Tk) - 1, p.Tq, p.Tk, p.window_left, p.window_right, lo,
                      hi);
  const int m_begin = lo / kT, m_end = hi > lo ? (hi + kT - 1) / kT : m_begin;

  float dk[kAcc], dv[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) dk[a] = dv[a] = 0.f;
  f32_load_keys<D>(s, p, b, hk, j0);
  for (int h = hk * p.G; h < (hk + 1) * p.G; ++h) {
    for (int m = m_begin; m < m_end; ++m) {
      const int i0 = m * kT;
      __syncthreads();  // previous pair consumed
      f32_load_queries<D>(s, p, b, h, i0);
      __syncthreads();
      f32_probs_and_grads<D>(s, p, i0, j0);
      __syncthreads();
#pragma unroll
      for (int a = 0; a < kAcc; ++a) {
        const int e = threadIdx.x + kThreads * a, j = e / D, d = e % D;
        float accv = dv[a], acck = dk[a];
        for (int i = 0; i < kT; ++i) {
          accv = fmaf(s.p[i * kSp + j], s.dout[i * kSd + d], accv);
          acck = fmaf(s.ds[i * kSp + j], s.q[i * kSd + d], acck);
        }
        dv[a] = accv;
        dk[a] = acck;
      }
    }
  }
  float* dkp = static_cast<float*>(p.dk);
  float* dvp = static_cast<float*>(p.dv);
#pragma unroll
  for (int a = 0; a < kAcc; ++a) {
    const int e = threadIdx.x + kThreads * a, j = j0 + e / D, d = e % D;
    if (j >= p.Tk) continue;
    const int64_t dst = ((int64_t(b) * p.Tk + j) * p.Hkv + hk) * D + d;
    dkp[dst] = dk[a] * p.scale;
    dvp[dst] = dv[a];
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) f32_bwd_dq_kernel(const BwdParams p) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile, kSd = Tr::kSd, kSp = Tr::kSp, kAcc = Tr::kAcc;
  extern __shared__ float smem_f32[];
  const F32BwdTiles s = f32_bwd_tiles<D>(smem_f32);
  const int h = blockIdx.y, b = blockIdx.z, i0 = blockIdx.x * kT, hk = h / p.G;

  int lo, hi;
  visible_key_range(i0, min(i0 + kT, p.Tq) - 1, p.Tq, p.Tk, p.window_left, p.window_right, lo, hi);
  const int n_begin = lo / kT, n_end = hi > lo ? (hi + kT - 1) / kT : n_begin;

  float dq[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) dq[a] = 0.f;
  f32_load_queries<D>(s, p, b, h, i0);
  for (int n = n_begin; n < n_end; ++n) {
    const int j0 = n * kT;
    __syncthreads();
    f32_load_keys<D>(s, p, b, hk, j0);
    __syncthreads();
    f32_probs_and_grads<D>(s, p, i0, j0);
    __syncthreads();
#pragma unroll
    for (int a = 0; a < kAcc; ++a) {
      const int e = threadIdx.x + kThreads * a, i = e / D, d = e % D;
      float acc = dq[a];
      for (int j = 0; j < kT; ++j) acc = fmaf(s.ds[i * kSp + j], s.k[j * kSd + d], acc);
      dq[a] = acc;
    }
  }
  float* dqp = static_cast<float*>(p.dq);
#pragma unroll
  for (int a = 0; a < kAcc; ++a) {
    const int e = threadIdx.x + kThreads * a, i = i0 + e / D, d = e % D;
    if (i < p.Tq) dqp[((int64_t(b) * p.Tq + i) * p.H + h) * D + d] = dq[a] * p.scale;
  }
}

}  // namespace

template <int D>
int f32_fwd_block_n() {
  return F32FwdTraits<D>::kBlockN;
}

template <int D>
void run_f32_fwd(const FwdParams& p, cudaStream_t stream) {
  using Tr = F32FwdTraits<D>;
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const int rows = p.Tq * p.G;
  const dim3 grid((rows + Tr::kBlockM - 1) / Tr::kBlockM, p.Hkv, p.B * p.num_splits);
  f32_fwd_kernel<D><<<grid, kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
}

template <int D>
void run_f32_bwd(const BwdParams& p, cudaStream_t stream) {
  using Tr = F32BwdTraits<D>;
  constexpr int kT = Tr::kTile;
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_bwd_dkdv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
      f32_bwd_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const dim3 grid_kv((p.Tk + kT - 1) / kT, p.Hkv, p.B);
  f32_bwd_dkdv_kernel<D><<<grid_kv, kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
  const dim3 grid_q((p.Tq + kT - 1) / kT, p.H, p.B);
  f32_bwd_dq_kernel<D><<<grid_q, kThreads, Tr::kSmemBytes, stream>>>(p);
  LONGCTX_CHECK_LAUNCH();
}

#define LONGCTX_ATTN_F32(D)                                     \
  template int f32_fwd_block_n<D>();                            \
  template void run_f32_fwd<D>(const FwdParams&, cudaStream_t); \
  template void run_f32_bwd<D>(const BwdParams&, cudaStream_t);
LONGCTX_ATTN_F32(32)
LONGCTX_ATTN_F32(64)
LONGCTX_ATTN_F32(96)
LONGCTX_ATTN_F32(128)
LONGCTX_ATTN_F32(256)
#undef LONGCTX_ATTN_F32

}  // namespace longctx::cuda::attn
