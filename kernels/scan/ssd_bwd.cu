// ssd backward on CUDA (Mamba-2, mamba_chunk_scan_combined semantics): the gradients of every
// input of ssd_fwd (kernels/scan/ssd.cu) from dout and, optionally, dfinal_states.
//
// Per (b, h) and chunk c of 64 steps (ssd_chunked.cuh: a_t = dt'_t A, cum_t = a_0 + ... + a_t,
// L[t][s] = exp(cum_t - cum_s) for s <= t), with h0 = the state entering the chunk,
// R = d loss / d (the state leaving it), dy = dout silu(z) (dout without z),
// w_s = exp(cum_63 - cum_s) and Ec = exp(cum_63), the forward
//   y_t    = exp(cum_t) C_t h0^T + sum_{s<=t} (C_t . B_s) L[t][s] dt'_s x_s + D x_t
//   h_out  = Ec h0 + sum_s w_s dt'_s x_s (x) B_s
// has the gradients
//   gB_s   = sum_{t>=s} (B_s . C_t) L[t][s] dy_t + w_s R B_s          dx_s = dt'_s gB_s + D dy_s
//   W[t][s] = L[t][s] dt'_s (dy_t . x_s) (s <= t)
//   dC_t   = exp(cum_t) dy_t h0 + sum_{s<=t} W[t][s] B_s               (summed over the group)
//   dB_s   = sum_{t>=s} W[t][s] C_t + w_s dt'_s x_s R                  (summed over the group)
//   Ga_r   = d loss / d a_r = Ec <R, h0> + sum_{t>=r} T1_t + sum_{s<r} Q_s
//            + sum_{t>=r} sum_{s<r} (C_t . B_s) W[t][s],
//            T1_t = C_t . exp(cum_t) dy_t h0,  Q_s = B_s . w_s dt'_s x_s R
//   ddt'_s = x_s . gB_s + A Ga_s;  dA = sum dt' Ga;  dD = sum dy . x;
//   ddt    = ddt' sigmoid(dt + dt_bias) under dt_softplus;  ddt_bias = sum ddt
//   R of chunk c - 1 = Ec R + sum_t exp(cum_t) dy_t (x) C_t,  dinitial_states = R of chunk -1.
// Every sum is over terms that exist: Ga's double sum is the column sum over t >= r of the row
// prefix sums of M = (C B^T) o W, never a difference of cumulative sums.
//
// Launches (ssd_bwd below): the forward's stages 1-3 recompute the states entering the chunks;
// stage 2 with U = dy, V = C gives sum_t exp(cum_t) dy_t (x) C_t per chunk, and stage 3 in
// reverse turns those into R per chunk (and dinitial_states); with z, stage 4 recomputes y for
// dz; then, parallel over chunks:
//   5. ssd_bwd_dx_kernel   per (chunk, p-tile, b h): dx, and per step the tile's x . gB, dy . x;
//   6. ssd_bwd_dbc_kernel  per (chunk, n-tile, b g, split of the group's heads), its heads in
//                          order: dB, dC summed over them in that order (the splits' sums added
//                          in split order by ssd_bwd_sum_splits_kernel), and per (head, step)
//                          the n-tile's share of Ga;
//   7. ssd_bwd_dt_kernel   per head: ddt from the partials; dA, dD, ddt_bias in float64,
//                          cub::BlockReduce's fixed order.
// No atomics: the gradients are bitwise reproducible. Stage 2 runs on FP64 tensor cores (Dmma),
// kernels 5 and 6 as Fma64 (ssd_chunked.cuh): f32 operands in shared memory, float64
// accumulators, decays in float64 and the products they scale rounded once; the quantities that
// feed Ga and ddt' (the products' accumulators, Gp, W, exp(cum_t) dy h0, w_s dt'_s x R) stay
// float64 until their sums; the gate's sigmoid is float64 too. Workspace: the states and their
// gradients (2 x (B, H, T / 64, P, N) f32), dt' and the cumulative sums (B, H, T) float64, per-step
// partials ((B, H, P / 64, T, 2) + (B, H, N / 64, T) float64), and with split heads (B, T, G,
// splits, N) x 2 f32.
//
// Precision (tests/models/ssd_chunked_model.py, as in ssd.cu): worst error / allowed by the 2x
// rule over the test table's shapes, 3 seeds each, with and without dfinal_states,
// f32 / bf16 / f16:
//   dx 0.24 / 0.23 / 0.22    ddt 0.17 / 0.24 / 0.23    dA 0.39 / 0.39 / 0.39
//   dB 0.32 / 0.24 / 0.23    dC 0.25 / 0.24 / 0.23     dD 0.20 / 0.55 / 0.30
//   dz 0.26 / 0.43 / 0.35    ddt_bias 0.25 / 0.24 / 0.40    dinitial_states 0.24 / 0.26 / 0.28
// and in the 64k-step case (--long, one seed) at most 0.31 (dz, f16).
#include <algorithm>
#include <cub/block/block_reduce.cuh>

#include "kernels/scan/ssd_chunked.cuh"

namespace longctx::cuda {

namespace ssd {

namespace {

using Acc = Fma64::Acc;
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kMinDbcBlocks = 512;

// The sum of v over the 8 lanes holding the same rows of an Fma64 tile (fixed order).
__device__ __forceinline__ double sum_row_lanes(double v) {
  v += __shfl_xor_sync(kFull, v, 1);
  v += __shfl_xor_sync(kFull, v, 2);
  v += __shfl_xor_sync(kFull, v, 4);
  return v;
}

// The block's sum of v, returned to every thread; red holds kWarps doubles.
__device__ __forceinline__ double block_sum(double v, double* red) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kWarps; ++w) total += red[w];
  return total;
}

template <class Smem, class Kernel>
void set_smem(const Context& ctx, Kernel kernel, const char* what) {
  int max_smem = 0;
  LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            state_of(ctx).device));
  LONGCTX_CHECK(sizeof(Smem) <= size_t(max_smem), "ssd_bwd: the ", what, " kernel needs ",
                sizeof(Smem), " bytes of shared memory per block, the device allows ", max_smem);
  LONGCTX_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sizeof(Smem))));
}

// ---- 5. dx -----------------------------------------------------------------------------------

struct DxSmem {
  float dy[kTile][kLdF];   // (t x p) dy
  float x[kTile][kLdF];    // (s x p)
  float sa[kTile][kLdF];   // (s x n) a slab of B
  float sb[kTile][kLdF];   // (n x t) a slab of C, transposed; then (n x p) of R, transposed
  double gp[kTile][kLdD];  // (s x t) Gp = (B C^T) o L^T; then (s x p) Gp dy
  double cum[kChunk], dtp[kChunk];
};
static_assert(sizeof(DxSmem) <= kSmemLimit, "101.5 KiB");

// Grid (chunks, ptiles, B H); warp w owns rows s of [16 w, 16 w + 16).
//   dstates (B, H, chunks, P, N): R of every chunk;  tpart (B, H, ptiles, Tc, 2): per step,
//   (x_s . gB_s, dy_s . x_s) over this tile's channels.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_bwd_dx_kernel(T* dx, double* tpart, const T* dout, const T* z, const T* x, const T* Bm,
                      const T* Cm, const float* Dv, const float* dstates, const double* dtp,
                      const double* cum, Dims n) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<DxSmem*>(smem_raw);
  const int64_t c = blockIdx.x, pt = blockIdx.y, p0 = pt * kTile, bh = blockIdx.z;
  const int64_t b = bh / n.H, h = bh % n.H, g = h / (n.H / n.G), t0 = c * kChunk;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, r_lo = kWarpRows * warp;
  const int r0 = Fma64::row0(), c0 = Fma64::col0();
  const int steps = int(std::min<int64_t>(kChunk, n.T - t0));
  const float* R = dstates + (bh * n.chunks + c) * n.P * n.N;

  if (tid < kChunk) {
    sm.cum[tid] = cum[bh * n.Tc() + t0 + tid];
    sm.dtp[tid] = dtp[bh * n.Tc() + t0 + tid];
  }
  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int t = i / kTile, p = i % kTile;
    const bool valid = t < steps && p0 + p < n.P;
    const int64_t at = ((b * n.T + t0 + t) * n.H + h) * n.P + p0 + p;
    sm.dy[t][p] = valid ? gated_dout(dout, z, at) : 0.f;
    sm.x[t][p] = valid ? load_f32(x[at]) : 0.f;
  }
  // B slab (s x k) and a transposed slab (k x column) of a (rows, N) matrix `src`.
  auto stage = [&](int64_t n0, const float* src, const T* src_t, int64_t rows) {
    for (int i = tid; i < kTile * kTile; i += kThreads) {
      const int r = i / kTile, k = i % kTile;
      const bool in_n = n0 + k < n.N;
      sm.sa[r][k] =
          r < steps && in_n ? load_f32(Bm[((b * n.T + t0 + r) * n.G + g) * n.N + n0 + k]) : 0.f;
      float v = 0.f;
      if (in_n && r < rows)
        v = src ? src[(p0 + r) * n.N + n0 + k]
                : load_f32(src_t[((b * n.T + t0 + r) * n.G + g) * n.N + n0 + k]);
      sm.sb[k][r] = v;
    }
  };
  Acc acc;
  // B C^T, then Gp = (B C^T) o L^T in float64 (t >= s).
  Fma64::zero(acc);
  for (int64_t n0 = 0; n0 < n.N; n0 += kTile) {
    const int kn = round16(int(std::min<int64_t>(kTile, n.N - n0)));
    __syncthreads();
    stage(n0, nullptr, Cm, steps);
    __syncthreads();
    Fma64::mma(acc, &sm.sa[r_lo][0], kLdF, &sm.sb[0][0], kLdF, 0, kn);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int s = r_lo + r0 + i, t = c0 + j;
      sm.gp[s][t] = t >= s ? acc.v[i][j] * exp(sm.cum[t] - sm.cum[s]) : 0.0;
    }
  __syncwarp();
  // Gp dy over t >= s, the most decayed terms first; into this warp's rows of gp.
  Fma64::zero(acc);
  Fma64::mma(acc, &sm.gp[r_lo][0], kLdD, &sm.dy[0][0], kLdF, r_lo, kChunk, /*reverse=*/true);
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) sm.gp[r_lo + r0 + i][c0 + j] = acc.v[i][j];
  // B R^T (s x p).
  Fma64::zero(acc);
  for (int64_t n0 = 0; n0 < n.N; n0 += kTile) {
    const int kn = round16(int(std::min<int64_t>(kTile, n.N - n0)));
    __syncthreads();
    stage(n0, R, nullptr, n.P - p0);
    __syncthreads();
    Fma64::mma(acc, &sm.sa[r_lo][0], kLdF, &sm.sb[0][0], kLdF, 0, kn);
  }
  // gB = w_s B R^T + Gp dy; dx; the per-step sums over this tile's channels.
  const double Dh = Dv ? double(Dv[h]) : 0.0;
  double direct[4], dd[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int s = r_lo + r0 + i;
    const double w = exp(sm.cum[kChunk - 1] - sm.cum[s]);
    direct[i] = dd[i] = 0.0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int p = c0 + j;
      const double gB = w * acc.v[i][j] + sm.gp[s][p];
      const double dyv = sm.dy[s][p], xv = sm.x[s][p];
      if (s < steps && p0 + p < n.P)
        dx[((b * n.T + t0 + s) * n.H + h) * n.P + p0 + p] =
            store_as<T>(float(sm.dtp[s] * gB + Dh * dyv));
      direct[i] += xv * gB;
      dd[i] += dyv * xv;
    }
    direct[i] = sum_row_lanes(direct[i]);
    dd[i] = sum_row_lanes(dd[i]);
  }
  if (lane % 8 == 0)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      double* o = tpart + ((bh * n.ptiles() + pt) * n.Tc() + t0 + r_lo + r0 + i) * 2;
      o[0] = direct[i];
      o[1] = dd[i];
    }
}

// ---- 6. dB, dC, Ga ---------------------------------------------------------------------------

struct DbcSmem {
  float C[kTile][kLdF];     // (t x n) C of the chunk, this n-tile
  float B[kTile][kLdF];     // (s x n)
  float dcs[kTile][kLdF];   // (t x n) dC, summed over the group's heads so far
  float dbs[kTile][kLdF];   // (s x n) dB, likewise
  float sa[kTile][kLdF];    // slabs (t x p) dy, (s x p) x; then (t x s) W
  float sb[kTile][kLdF];    // (n x s) B^T; then slabs (p x n) h0, R, (p x s) x^T
  double cbt[kTile][kLdD];  // (t x s) C B^T over this n-tile
  double t1[kChunk], qv[kChunk], colpart[kWarps][kChunk];
  double cum[kChunk], dtp[kChunk], red[kWarps];
};
static_assert(sizeof(DbcSmem) <= kSmemLimit, "138.5 KiB");

// How the heads of a group are shared out among blocks of the dB/dC kernel: `splits` blocks of
// `heads` consecutive heads each (the last may have fewer).
struct HeadSplit {
  int64_t heads, splits;
};

// Grid (chunks, ntiles x splits, B G); warp w owns rows [16 w, 16 w + 16) of t (or s). A block
// takes its heads of the group in order and sums their dB and dC terms in that order; with one
// split it writes dB and dC, else its sums go to part (B, T, G, splits, N) x {dC, dB}, which
// ssd_bwd_sum_splits_kernel adds in split order.
//   states, dstates (B, H, chunks, P, N): h0 and R of every chunk;  decay (B, H, chunks);
//   gpart (B, H, ntiles, Tc): this n-tile's share of Ga per step.
// One block per SM (its shared memory, 139 KiB, allows no second): __launch_bounds__ says so,
// and ptxas may use up to 255 registers (it capped this kernel at 168, for three blocks, and
// spilled).
template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    ssd_bwd_dbc_kernel(T* dB, T* dC, float* part, double* gpart, const T* dout, const T* z,
                       const T* x, const T* Bm, const T* Cm, const float* states,
                       const float* dstates, const double* dtp, const double* cum,
                       const double* decay, Dims n, HeadSplit hs) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<DbcSmem*>(smem_raw);
  const int64_t c = blockIdx.x, nt = blockIdx.y / hs.splits, split = blockIdx.y % hs.splits;
  const int64_t n0 = nt * kTile, bg = blockIdx.z, b = bg / n.G, g = bg % n.G, t0 = c * kChunk;
  const int64_t per_group = n.H / n.G, head_lo = split * hs.heads;
  const int64_t head_hi = std::min(per_group, head_lo + hs.heads);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, r_lo = kWarpRows * warp;
  const int r0 = Fma64::row0(), c0 = Fma64::col0();
  const int steps = int(std::min<int64_t>(kChunk, n.T - t0));
  const int kn = round16(int(std::min<int64_t>(kTile, n.N - n0)));

  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int t = i / kTile, k = i % kTile;
    const bool valid = t < steps && n0 + k < n.N;
    const int64_t at = ((b * n.T + t0 + t) * n.G + g) * n.N + n0 + k;
    sm.C[t][k] = valid ? load_f32(Cm[at]) : 0.f;
    sm.B[t][k] = sm.sb[k][t] = valid ? load_f32(Bm[at]) : 0.f;
    sm.dcs[t][k] = sm.dbs[t][k] = 0.f;
  }
  __syncthreads();
  Acc acc;
  Fma64::zero(acc);
  Fma64::mma(acc, &sm.C[r_lo][0], kLdF, &sm.sb[0][0], kLdF, 0, kn);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) sm.cbt[r_lo + r0 + i][c0 + j] = acc.v[i][j];

  for (int64_t head = head_lo; head < head_hi; ++head) {
    const int64_t h = g * per_group + head, bh = b * n.H + h;
    const float* h0 = states + (bh * n.chunks + c) * n.P * n.N;
    const float* R = dstates + (bh * n.chunks + c) * n.P * n.N;
    __syncthreads();  // the previous head is done with every buffer
    if (tid < kChunk) {
      sm.cum[tid] = cum[bh * n.Tc() + t0 + tid];
      sm.dtp[tid] = dtp[bh * n.Tc() + t0 + tid];
    }
    double rh = 0.0;  // <R, h0> over (P, this n-tile)
    for (int64_t i = tid; i < n.P * kTile; i += kThreads) {
      const int64_t p = i / kTile, k = i % kTile;
      if (n0 + k < n.N) rh += double(R[p * n.N + n0 + k]) * double(h0[p * n.N + n0 + k]);
    }
    rh = block_sum(rh, sm.red);  // its __syncthreads also publishes cum and dtp
    // A product over the P channels in slabs of 64: acc (rows of this warp) += A B with
    // stage(p0) writing the slabs A to sa and B to sb.
    auto over_p = [&](auto stage) {
      Fma64::zero(acc);
      for (int64_t p0 = 0; p0 < n.P; p0 += kTile) {
        const int kp = round16(int(std::min<int64_t>(kTile, n.P - p0)));
        __syncthreads();
        stage(p0);
        __syncthreads();
        Fma64::mma(acc, &sm.sa[r_lo][0], kLdF, &sm.sb[0][0], kLdF, 0, kp);
      }
    };
    auto x_at = [&](int r, int64_t p) {  // x of step r, channel p (0 outside)
      return r < steps && p < n.P ? load_f32(x[((b * n.T + t0 + r) * n.H + h) * n.P + p]) : 0.f;
    };
    auto dy_at = [&](int r, int64_t p) {
      return r < steps && p < n.P ? gated_dout(dout, z, ((b * n.T + t0 + r) * n.H + h) * n.P + p)
                                  : 0.f;
    };
    auto state_at = [&](const float* S, int64_t p, int k) {
      return p < n.P && n0 + k < n.N ? S[p * n.N + n0 + k] : 0.f;
    };
    // exp(cum_t) dy h0 (t x n): into the dC sum; T1_t = C_t . exp(cum_t) dy_t h0.
    over_p([&](int64_t p0) {
      for (int i = tid; i < kTile * kTile; i += kThreads) {
        const int r = i / kTile, k = i % kTile;
        sm.sa[r][k] = dy_at(r, p0 + k);
        sm.sb[r][k] = state_at(h0, p0 + r, k);
      }
    });
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = r_lo + r0 + i;
      const double e = exp(sm.cum[t]);
      double part = 0.0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const double v = e * acc.v[i][j];
        part += double(sm.C[t][c0 + j]) * v;
        sm.dcs[t][c0 + j] += float(v);
      }
      part = sum_row_lanes(part);
      if (lane % 8 == 0) sm.t1[t] = part;
    }
    // w_s dt'_s x R (s x n): into the dB sum; Q_s = B_s . w_s dt'_s x_s R.
    over_p([&](int64_t p0) {
      for (int i = tid; i < kTile * kTile; i += kThreads) {
        const int r = i / kTile, k = i % kTile;
        sm.sa[r][k] = x_at(r, p0 + k);
        sm.sb[r][k] = state_at(R, p0 + r, k);
      }
    });
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int s = r_lo + r0 + i;
      const double w = exp(sm.cum[kChunk - 1] - sm.cum[s]) * sm.dtp[s];
      double part = 0.0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const double v = w * acc.v[i][j];
        part += double(sm.B[s][c0 + j]) * v;
        sm.dbs[s][c0 + j] += float(v);
      }
      part = sum_row_lanes(part);
      if (lane % 8 == 0) sm.qv[s] = part;
    }
    // dy x^T (t x s).
    over_p([&](int64_t p0) {
      for (int i = tid; i < kTile * kTile; i += kThreads) {
        const int r = i / kTile, k = i % kTile;
        sm.sa[r][k] = dy_at(r, p0 + k);
        sm.sb[k][r] = x_at(r, p0 + k);
      }
    });
    __syncthreads();  // every warp is done with the slabs: sa becomes W
    // W = L o dt' o (dy x^T) (float64; f32 into sa for the dB, dC products); M = (C B^T) o W:
    // its row prefix sums Pm[t][r] = sum_{s<r} M[t][s] and their column sums over this warp's
    // rows t >= r.
    double col[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};  // columns r = c0 + j
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = r_lo + r0 + i;
      double pm[8], run = 0.0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int s = c0 + j;
        const double w = s <= t ? exp(sm.cum[t] - sm.cum[s]) * sm.dtp[s] * acc.v[i][j] : 0.0;
        sm.sa[t][s] = float(w);
        pm[j] = run;  // this lane's exclusive prefix
        run += sm.cbt[t][s] * w;
      }
      // Plus the sum over the lanes to the left (columns < c0): a fixed-order scan of 8 lanes.
      double incl = run;
      for (int d = 1; d < 8; d *= 2) {
        const double up = __shfl_up_sync(kFull, incl, d, 8);
        if (lane % 8 >= d) incl += up;
      }
      double left = __shfl_up_sync(kFull, incl, 1, 8);
      if (lane % 8 == 0) left = 0.0;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (t >= c0 + j) col[j] += pm[j] + left;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      col[j] += __shfl_xor_sync(kFull, col[j], 8);
      col[j] += __shfl_xor_sync(kFull, col[j], 16);
      if (lane < 8) sm.colpart[warp][c0 + j] = col[j];
    }
    __syncthreads();  // W, colpart, t1, qv and this head's dC, dB terms are complete
    // dC += W B over s <= t; dB += W^T C over t >= s, the most decayed terms first.
    Fma64::load(acc, &sm.dcs[r_lo][0], kLdF);
    Fma64::mma(acc, &sm.sa[r_lo][0], kLdF, &sm.B[0][0], kLdF, 0, r_lo + kWarpRows);
    Fma64::store(&sm.dcs[r_lo][0], kLdF, acc);
    Fma64::load(acc, &sm.dbs[r_lo][0], kLdF);
    Fma64::mma<true>(acc, &sm.sa[0][r_lo], kLdF, &sm.C[0][0], kLdF, r_lo, kChunk,
                     /*reverse=*/true);
    Fma64::store(&sm.dbs[r_lo][0], kLdF, acc);
    if (tid < kChunk) {
      const int r = tid;
      double ga = decay[bh * n.chunks + c] * rh;
      for (int t = kChunk - 1; t >= r; --t) ga += sm.t1[t];
      for (int s = 0; s < r; ++s) ga += sm.qv[s];
      for (int w = 0; w < kWarps; ++w) ga += sm.colpart[w][r];
      gpart[(bh * n.ntiles() + nt) * n.Tc() + t0 + r] = ga;
    }
  }
  __syncthreads();
  for (int i = tid; i < kTile * kTile; i += kThreads) {
    const int t = i / kTile, k = i % kTile;
    if (t >= steps || n0 + k >= n.N) continue;
    const int64_t at = ((b * n.T + t0 + t) * n.G + g) * n.N + n0 + k;
    if (hs.splits == 1) {
      dC[at] = store_as<T>(sm.dcs[t][k]);
      dB[at] = store_as<T>(sm.dbs[t][k]);
    } else {
      float* o = part + ((((b * n.T + t0 + t) * n.G + g) * hs.splits + split) * n.N + n0 + k);
      o[0] = sm.dcs[t][k];
      o[n.B * n.T * n.G * hs.splits * n.N] = sm.dbs[t][k];
    }
  }
}

// dC, dB = the splits' sums in split order (float64, rounded once). One thread per element of
// dC (B, T, G, N); part (2, B, T, G, splits, N).
template <class T>
__global__ void ssd_bwd_sum_splits_kernel(T* dB, T* dC, const float* part, Dims n, int64_t splits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, count = n.B * n.T * n.G * n.N;
  if (i >= count) return;
  const int64_t k = i % n.N, row = i / n.N;  // row = (b, t, g)
  double sum_c = 0.0, sum_b = 0.0;
  for (int64_t s = 0; s < splits; ++s) {
    const int64_t at = (row * splits + s) * n.N + k;
    sum_c += part[at];
    sum_b += part[count * splits + at];
  }
  dC[i] = store_as<T>(float(sum_c));
  dB[i] = store_as<T>(float(sum_b));
}

// ---- 7. dt, dA, dD, ddt_bias -----------------------------------------------------------------

constexpr int kDtThreads = 256;

// One block per head; thread i takes the steps i, i + 256, ... of (B T).
template <class T>
__global__ void __launch_bounds__(kDtThreads)
    ssd_bwd_dt_kernel(T* ddt, float* dA, float* dD, float* ddt_bias, const double* tpart,
                      const double* gpart, const T* dt, const float* A, const float* dt_bias,
                      const double* dtp, Dims n) {
  using BlockReduce = cub::BlockReduce<double, kDtThreads>;
  __shared__ typename BlockReduce::TempStorage storage;
  const int64_t h = blockIdx.x;
  const double Ah = A[h], bias = dt_bias ? double(dt_bias[h]) : 0.0;
  double sum_A = 0.0, sum_D = 0.0, sum_bias = 0.0;
  for (int64_t i = threadIdx.x; i < n.B * n.T; i += kDtThreads) {
    const int64_t b = i / n.T, t = i % n.T, bh = b * n.H + h;
    double direct = 0.0, dd = 0.0, ga = 0.0;
    for (int64_t pt = 0; pt < n.ptiles(); ++pt) {
      const double* o = tpart + ((bh * n.ptiles() + pt) * n.Tc() + t) * 2;
      direct += o[0];
      dd += o[1];
    }
    for (int64_t nt = 0; nt < n.ntiles(); ++nt) ga += gpart[(bh * n.ntiles() + nt) * n.Tc() + t];
    const int64_t at = (b * n.T + t) * n.H + h;
    double grad = direct + Ah * ga;  // d loss / d dt'
    sum_A += dtp[bh * n.Tc() + t] * ga;
    if (n.softplus) grad /= 1.0 + exp(-(double(load_f32(dt[at])) + bias));
    ddt[at] = store_as<T>(float(grad));
    sum_bias += grad;
    sum_D += dd;
  }
  const double total_A = BlockReduce(storage).Sum(sum_A);
  __syncthreads();  // storage is reused
  const double total_D = BlockReduce(storage).Sum(sum_D);
  __syncthreads();
  const double total_bias = BlockReduce(storage).Sum(sum_bias);
  if (threadIdx.x != 0) return;  // the reductions are valid in thread 0
  dA[h] = float(total_A);
  if (dD) dD[h] = float(total_D);
  if (ddt_bias) ddt_bias[h] = float(total_bias);
}

void zero(void* p, size_t bytes, cudaStream_t stream) {
  if (p && bytes > 0) LONGCTX_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
}

// The sums over sequences of a packed batch's parameter gradients: dst[h] = sum_s part[s, h] in
// sequence order. part: (sequences, H) f32.
__global__ void ssd_sum_sequences_kernel(float* dst, const float* part, int64_t sequences,
                                         int64_t H) {
  const int64_t h = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (h >= H || !dst) return;
  float sum = 0.f;
  for (int64_t s = 0; s < sequences; ++s) sum += part[s * H + h];
  dst[h] = sum;
}

}  // namespace

}  // namespace ssd

namespace {

// Workspace and launches of the backward of a rectangular batch (or of one sequence of a packed
// one; see the file comment).
void backward(const Context& ctx, const SSDArgs& args) {
  const ssd::Dims n = ssd::dims_of(args);
  cudaStream_t stream = state_of(ctx).stream;
  const Device dev = ctx.device();

  // Nothing to scan: every gradient is an empty sum, except dinitial_states = dfinal_states.
  if (n.B * n.H * n.P == 0 || n.T == 0) {
    const size_t esize = dtype_size(args.dtype), f32 = sizeof(float);
    const size_t steps = size_t(n.B * n.T), states = size_t(n.B * n.H * n.P * n.N) * f32;
    ssd::zero(args.dx, steps * size_t(n.H * n.P) * esize, stream);
    ssd::zero(args.dz, steps * size_t(n.H * n.P) * esize, stream);
    ssd::zero(args.ddt, steps * size_t(n.H) * esize, stream);
    ssd::zero(args.dB, steps * size_t(n.G * n.N) * esize, stream);
    ssd::zero(args.dC, steps * size_t(n.G * n.N) * esize, stream);
    for (void* p : {args.dA, args.dD, args.ddt_bias}) ssd::zero(p, size_t(n.H) * f32, stream);
    if (args.dinitial_states && args.dfinal_states && states > 0)
      LONGCTX_CUDA_CHECK(cudaMemcpyAsync(args.dinitial_states, args.dfinal_states, states,
                                         cudaMemcpyDeviceToDevice, stream));
    else
      ssd::zero(args.dinitial_states, states, stream);
    return;
  }
  ssd::check_grid(n, "ssd_bwd");
  Tensor dtp = Tensor::empty({n.B, n.H, n.Tc()}, DType::f64, dev, &ctx);
  Tensor cum = Tensor::empty({n.B, n.H, n.Tc()}, DType::f64, dev, &ctx);
  Tensor decay = Tensor::empty({n.B, n.H, n.chunks}, DType::f64, dev, &ctx);
  Tensor states = Tensor::empty({n.B, n.H, n.chunks, n.P, n.N}, DType::f32, dev, &ctx);
  Tensor dstates = Tensor::empty({n.B, n.H, n.chunks, n.P, n.N}, DType::f32, dev, &ctx);
  Tensor tpart = Tensor::empty({n.B, n.H, n.ptiles(), n.Tc(), 2}, DType::f64, dev, &ctx);
  Tensor gpart = Tensor::empty({n.B, n.H, n.ntiles(), n.Tc()}, DType::f64, dev, &ctx);
  // The dB/dC kernel: a block per (chunk, n-tile, b, g) takes every head of its group unless
  // that leaves fewer than kMinDbcBlocks blocks (1 per SM: T <= 4096 at B = G = 1 and N = 128);
  // then the heads are shared out, and their sums added in split order (at most 64 x 64 x
  // kMinDbcBlocks x 8 bytes of partials more than one split's). Shapes alone decide: the same
  // result on every device.
  const int64_t per_group = n.H / n.G, blocks = n.chunks * n.ntiles() * n.B * n.G;
  const int64_t want =
      std::clamp<int64_t>((ssd::kMinDbcBlocks + blocks - 1) / blocks, 1, per_group);
  ssd::HeadSplit hs{};
  hs.heads = (per_group + want - 1) / want;
  hs.splits = (per_group + hs.heads - 1) / hs.heads;
  Tensor part = hs.splits > 1
                    ? Tensor::empty({2, n.B, n.T, n.G, hs.splits, n.N}, DType::f32, dev, &ctx)
                    : Tensor();
  double *dtp_p = dtp.data_as<double>(), *cum_p = cum.data_as<double>();
  double* decay_p = decay.data_as<double>();
  float *states_p = states.data_as<float>(), *dstates_p = dstates.data_as<float>();

  // The states entering the chunks (as the forward, in float64 arithmetic), then the gradients
  // of the states leaving them.
  ssd::chunk_cumsum(ctx, n, dtp_p, cum_p, decay_p, args);
  ssd::chunk_states(ctx, n, args.dtype, states_p, args.x, /*z=*/nullptr, args.B, dtp_p, cum_p,
                    /*dstates=*/false);
  ssd::state_passing(ctx, n, states_p, /*final_out=*/nullptr,
                     static_cast<const float*>(args.initial_states), decay_p, /*reverse=*/false);
  ssd::chunk_states(ctx, n, args.dtype, dstates_p, args.dout, args.z, args.C, dtp_p, cum_p,
                    /*dstates=*/true);
  ssd::state_passing(ctx, n, dstates_p, static_cast<float*>(args.dinitial_states),
                     static_cast<const float*>(args.dfinal_states), decay_p, /*reverse=*/true);
  if (args.z) ssd::chunk_scan(ctx, n, args.dz, args, args.dout, states_p, dtp_p, cum_p);

  dispatch_cuda_float("ssd_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *x = static_cast<const T*>(args.x), *z = static_cast<const T*>(args.z);
    const T *Bm = static_cast<const T*>(args.B), *Cm = static_cast<const T*>(args.C);
    const T* dout = static_cast<const T*>(args.dout);
    const unsigned bh = unsigned(n.B * n.H), bg = unsigned(n.B * n.G);
    const auto dx_kernel = ssd::ssd_bwd_dx_kernel<T>;
    ssd::set_smem<ssd::DxSmem>(ctx, dx_kernel, "dx");
    dx_kernel<<<dim3(unsigned(n.chunks), unsigned(n.ptiles()), bh), ssd::kThreads,
                sizeof(ssd::DxSmem), stream>>>(
        static_cast<T*>(args.dx), tpart.data_as<double>(), dout, z, x, Bm, Cm,
        static_cast<const float*>(args.D), dstates_p, dtp_p, cum_p, n);
    LONGCTX_CHECK_LAUNCH();
    const auto dbc_kernel = ssd::ssd_bwd_dbc_kernel<T>;
    ssd::set_smem<ssd::DbcSmem>(ctx, dbc_kernel, "dB/dC");
    T *dB = static_cast<T*>(args.dB), *dC = static_cast<T*>(args.dC);
    float* part_p = part.defined() ? part.data_as<float>() : nullptr;
    dbc_kernel<<<dim3(unsigned(n.chunks), unsigned(n.ntiles() * hs.splits), bg), ssd::kThreads,
                 sizeof(ssd::DbcSmem), stream>>>(dB, dC, part_p, gpart.data_as<double>(), dout, z,
                                                 x, Bm, Cm, states_p, dstates_p, dtp_p, cum_p,
                                                 decay_p, n, hs);
    LONGCTX_CHECK_LAUNCH();
    if (hs.splits > 1) {
      const int64_t count = n.B * n.T * n.G * n.N;
      ssd::ssd_bwd_sum_splits_kernel<T>
          <<<unsigned((count + 255) / 256), 256, 0, stream>>>(dB, dC, part_p, n, hs.splits);
      LONGCTX_CHECK_LAUNCH();
    }
    ssd::ssd_bwd_dt_kernel<T><<<unsigned(n.H), ssd::kDtThreads, 0, stream>>>(
        static_cast<T*>(args.ddt), static_cast<float*>(args.dA), static_cast<float*>(args.dD),
        static_cast<float*>(args.ddt_bias), tpart.data_as<double>(), gpart.data_as<double>(),
        static_cast<const T*>(args.dt), static_cast<const float*>(args.A),
        static_cast<const float*>(args.dt_bias), dtp_p, n);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace

// A packed batch runs one sequence at a time, each exactly as it would alone; its parameter
// gradients (dA, dD, ddt_bias) go to per-sequence rows summed in sequence order at the end.
void ssd_bwd(const Context& ctx, const SSDArgs& args) {
  if (!args.seqs.packed()) return backward(ctx, args);
  const int64_t S = args.seqs.count, H = args.H;
  Tensor part = Tensor::empty({3, std::max<int64_t>(S, 1), H}, DType::f32, ctx.device(), &ctx);
  float* dA_part = part.data_as<float>();
  float* dD_part = dA_part + std::max<int64_t>(S, 1) * H;
  float* dbias_part = dD_part + std::max<int64_t>(S, 1) * H;
  for (int64_t s = 0; s < S; ++s) {
    SSDArgs view = args.sequence(s);
    view.dA = dA_part + s * H;
    view.dD = args.dD ? dD_part + s * H : nullptr;
    view.ddt_bias = args.ddt_bias ? dbias_part + s * H : nullptr;
    backward(ctx, view);
  }
  for (auto [dst, src] :
       {std::pair{args.dA, dA_part}, {args.dD, dD_part}, {args.ddt_bias, dbias_part}}) {
    if (!dst) continue;
    ssd::ssd_sum_sequences_kernel<<<unsigned((H + 127) / 128), 128, 0, state_of(ctx).stream>>>(
        static_cast<float*>(dst), src, S, H);
    LONGCTX_CHECK_LAUNCH();
  }
}

}  // namespace longctx::cuda
