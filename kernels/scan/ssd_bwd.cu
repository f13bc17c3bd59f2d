// ssd backward on CUDA (Mamba-2, mamba_chunk_scan_combined semantics): the gradients of every
// input of ssd_fwd (kernels/scan/ssd.cu) from dout and, optionally, dfinal_states.
//
// Per (batch b, head h), the sequence is cut into chunks of kL = 32 steps (the last one padded
// with dt' = 0 and x = B = C = dout = 0: a padded step is the identity and adds nothing).
// In a chunk, with a_t = dt'_t A and every decay the exponential of a sum over its own segment:
//   Lm[t][s] = exp(a_{s+1} + ... + a_t) for s <= t (1 on the diagonal),
//   E_t = exp(a_0 + ... + a_t),  Ec = E_{kL-1} (the chunk's decay),  ex_s = Lm[kL-1][s],
//   S0 = the state entering the chunk,  R = d loss / d (the state leaving it),
// the forward is
//   y_t[p] = E_t (C_t . S0[p]) + sum_{s<=t} (C_t . B_s) Lm[t][s] dt'_s x_s[p] + D x_t[p]
//   S_out  = Ec S0 + sum_s ex_s dt'_s x_s ⊗ B_s
// With dy = dout silu(z) (dout without z), XD[t][s] = dy_t . x_s (a sum over p) and
// W[t][s] = Lm[t][s] dt'_s XD[t][s] (s <= t, else 0), the backward is
//   gB_s[p] = sum_{t>=s} (C_t . B_s) Lm[t][s] dy_t[p] + ex_s (R[p] . B_s)
//             (= sum_n G_s[p, n] B_s[n], G_s = d loss / d h_s)
//   dx_s    = dt'_s gB_s + D dy_s
//   dC_t[n] = E_t sum_p dy_t[p] S0[p, n] + sum_{s<=t} W[t][s] B_s[n]
//   dB_s[n] = sum_{t>=s} W[t][s] C_t[n] + ex_s dt'_s sum_p x_s[p] R[p, n]
//   Ga_r    = d loss / d a_r = sum_{t>=r} E_t (dy_t . C_t S0ᵀ) + Ec <R, S0>
//             + sum_{s<r} ex_s dt'_s (x_s . R B_s) + sum_{t>=r} sum_{s<r} (C_t . B_s) W[t][s]
//   ddt'_s  = x_s . gB_s + A Ga_s;  dA = sum dt'_s Ga_s;  dD = sum dy . x
//   ddt     = ddt' sigmoid(dt + dt_bias) under dt_softplus, else ddt';  ddt_bias = sum ddt
//   R      <- Ec R + sum_t E_t dy_t ⊗ C_t  (= d loss / d S0, the R of the chunk before)
// and dinitial_states is R after the first chunk. Ga is summed term by term (no cumulative sums
// whose differences would cancel), and segment decays are never ratios of cumulative decays, which
// would turn the absolute rounding of a long sum into a relative error of a short decay.
//
// Kernels (the same block shape as the forward: one block per (b, h, tile of kPT channels p)):
//   1. ssd_bwd_states_kernel: the forward's walk over chunk states, writing the state entering
//      every chunk to a workspace (B, H, chunks, P, N) f32 (4 * N / kL bytes per element of x).
//   2. ssd_bwd_chunk_kernel: chunks from the last to the first with R (kPT x N) in shared memory;
//      writes dx and dz, per-(b, h, tile, t) partials of Ga, x . gB and dy . x, and
//      per-(b, h, tile) partials of dB and dC. R goes through global memory between launches
//      (it ends as dinitial_states), so the sequence runs in slabs of at most kMaxSlabChunks
//      chunks whose dB/dC partials fit kPartialBudgetBytes.
//   3. ssd_bwd_sum_bc_kernel: dB and dC of a slab, summing the partials over the heads of the
//      group and the tiles in a fixed order.
//   4. ssd_bwd_dt_kernel: one block per head: ddt from the partials, then dA, dD and ddt_bias
//      summed over (b, t) with cub::BlockReduce.
// No atomics: every sum has a fixed order, so the gradients are bitwise reproducible. All
// products are f32 FMA from shared memory (no tensor cores yet); rows of N floats are padded to
// N + 1 and the (kL x kL), (kL x kPT) matrices to kL + 1 columns against bank conflicts.
#include <algorithm>
#include <cub/block/block_reduce.cuh>

#include "kernels/scan/scan_common.cuh"
#include "longctx/ops/ssd.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kL = 32;       // chunk length: lane t of a warp owns step t of the chunk
constexpr int kPT = 32;      // head channels p per block: lane p of a warp owns channel p
constexpr int kL1 = kL + 1;  // row stride of the shared (kL x kL) and (kL x kPT) matrices
static_assert(kL == 32 && kPT == 32,
              "a warp spans the steps of a chunk and the channels of a tile");
static_assert(kThreads % 32 == 0 && kWarps >= 2, "whole warps, at least two");
constexpr size_t kPartialBudgetBytes = size_t(256) << 20;  // dB + dC partials of one slab
// At most this many chunks per launch of the chunk kernel (2048 steps): one more launch pair per
// 2048 steps costs little, and the carry of R between launches is then exercised by every test
// case longer than 2048 steps, not only by inputs too large for the partial budget.
constexpr int64_t kMaxSlabChunks = 64;

struct Dims {
  int64_t B, T, H, P, G, N;
  int64_t tiles;   // ceil(P / kPT): blocks per (b, h)
  int64_t chunks;  // ceil(T / kL)
  bool softplus;
};

// Chunks [c_lo, c_hi) of one launch of the chunk kernel; the dB/dC partial buffers hold `rows`
// steps per (b, h, tile), step t at row t - c_lo * kL.
struct Slab {
  int64_t c_lo, c_hi, rows;
};

// Shared floats of the two per-chunk kernels for state size N.
size_t states_smem_floats(int64_t N) {
  return size_t((kPT + kL) * (N + 1) + kL * kPT + 3 * kL + 1);
}
constexpr size_t kChunkSmemFixed = size_t(7 * kL * kL1 + 7 * kL + kPT);
size_t chunk_smem_floats(int64_t N) {
  return size_t(2 * (kPT + kL) * (N + 1)) + kChunkSmemFixed;
}

__device__ __forceinline__ float dt_eff(float dt, float bias, bool softplus) {
  const float v = dt + bias;
  return softplus ? scan::softplusf(v) : v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Warp 0 stages the chunk's steps: dtp[t] = dt'_t (0 past T), av[t] = dt'_t A.
template <class T>
__device__ __forceinline__ void stage_steps(float* dtp, float* av, const T* dt, int64_t bi,
                                            int64_t h, int64_t t0, float Ah, float bias,
                                            const Dims& n) {
  const int lane = threadIdx.x % 32;
  const int64_t tt = t0 + lane;
  const float d =
      tt < n.T ? dt_eff(load_f32(dt[(bi * n.T + tt) * n.H + h]), bias, n.softplus) : 0.f;
  dtp[lane] = d;
  av[lane] = d * Ah;
}

// 1. The state entering every chunk. Grid (tiles, H, B); dynamic shared memory
// states_smem_floats(N) floats. states: (B, H, chunks, P, N).
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_bwd_states_kernel(float* states, const T* x, const T* dt, const float* A, const T* Bm,
                          const float* dt_bias, const float* initial_states, Dims n) {
  extern __shared__ float smem[];
  const int64_t N1 = n.N + 1;
  float* S = smem;             // (kPT, N + 1) the state of this tile
  float* Bs = S + kPT * N1;    // (kL, N + 1)
  float* xs = Bs + kL * N1;    // (kL, kPT)
  float* dtp = xs + kL * kPT;  // (kL) dt'
  float* av = dtp + kL;        // (kL) dt' A
  float* w = av + kL;          // (kL) ex_s dt'_s
  float* Ec = w + kL;          // (1) the chunk decay

  const int64_t p0 = int64_t(blockIdx.x) * kPT, h = blockIdx.y, bi = blockIdx.z;
  const int64_t g = h / (n.H / n.G), bh = bi * n.H + h;
  const int np = int(std::min<int64_t>(kPT, n.P - p0));  // valid channels of this tile
  const float Ah = A[h], bias = dt_bias ? dt_bias[h] : 0.f;
  const int tid = threadIdx.x, lane = tid % 32;

  for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
    const int p = int(i / n.N);
    const int64_t k = i % n.N;
    S[p * N1 + k] = initial_states && p < np ? initial_states[(bh * n.P + p0 + p) * n.N + k] : 0.f;
  }
  __syncthreads();
  for (int64_t c = 0; c < n.chunks; ++c) {
    const int64_t t0 = c * kL;
    // The state entering chunk c: rows p0 .. p0 + np - 1 of (P, N), contiguous.
    float* out = states + ((bh * n.chunks + c) * n.P + p0) * n.N;
    for (int64_t i = tid; i < np * n.N; i += kThreads) out[i] = S[(i / n.N) * N1 + i % n.N];
    for (int64_t i = tid; i < kL * n.N; i += kThreads) {
      const int t = int(i / n.N);
      const int64_t k = i % n.N, tt = t0 + t;
      Bs[t * N1 + k] = tt < n.T ? load_f32(Bm[((bi * n.T + tt) * n.G + g) * n.N + k]) : 0.f;
    }
    for (int i = tid; i < kL * kPT; i += kThreads) {
      const int t = i / kPT, p = i % kPT;
      const int64_t tt = t0 + t;
      xs[i] = tt < n.T && p < np ? load_f32(x[((bi * n.T + tt) * n.H + h) * n.P + p0 + p]) : 0.f;
    }
    if (tid < 32) {
      stage_steps(dtp, av, dt, bi, h, t0, Ah, bias, n);
      __syncwarp();
      // ex_s = exp(a_{s+1} + ... + a_{kL-1}) and Ec = exp(a_0 + ... + a_{kL-1}), summed in step
      // order like the chunk kernel's decays.
      float suffix = 0.f, total = 0.f;
      for (int r = 0; r < kL; ++r) {
        const float a = av[r];
        total += a;
        if (r > lane) suffix += a;
      }
      w[lane] = expf(suffix) * dtp[lane];
      if (lane == 0) *Ec = expf(total);
    }
    __syncthreads();
    // S <- Ec S + sum_t ex_t dt'_t x_t ⊗ B_t; rows past np stay 0 (their xs are 0).
    const float decay = *Ec;
    for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
      const int p = int(i / n.N);
      const int64_t k = i % n.N;
      float v = decay * S[p * N1 + k];
      for (int t = 0; t < kL; ++t) v += w[t] * xs[t * kPT + p] * Bs[t * N1 + k];
      S[p * N1 + k] = v;
    }
    __syncthreads();
  }
}

// 2. The backward of chunks [slab.c_lo, slab.c_hi), last first. Grid (tiles, H, B); dynamic shared
// memory chunk_smem_floats(N) floats.
//   carry: (B, H, P, N) R in and out;  states: (B, H, chunks, P, N) from kernel 1;
//   partial_dB, partial_dC: (B, H, tiles, slab.rows, N);  tpart: (B, H, tiles, T, 3) holding
//   (Ga, x . gB, dy . x) of this tile's channels per step.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_bwd_chunk_kernel(T* dx, T* dz, float* partial_dB, float* partial_dC, float* tpart,
                         float* carry, const T* dout, const float* states, const T* x, const T* dt,
                         const float* A, const T* Bm, const T* Cm, const float* Dv, const T* z,
                         const float* dt_bias, Dims n, Slab slab) {
  extern __shared__ float smem[];
  const int64_t N1 = n.N + 1;
  float* R = smem;             // (kPT, N + 1) d loss / d(state leaving the chunk)
  float* S0 = R + kPT * N1;    // (kPT, N + 1) the state entering the chunk
  float* Bs = S0 + kPT * N1;   // (kL, N + 1)
  float* Cs = Bs + kL * N1;    // (kL, N + 1)
  float* xs = Cs + kL * N1;    // (kL, kL1) [t][p]
  float* dys = xs + kL * kL1;  // (kL, kL1) [t][p] dout, then dy = dout silu(z)
  float* CS = dys + kL * kL1;  // (kL, kL1) [t][p] C_t . S0[p]
  float* RB = CS + kL * kL1;   // (kL, kL1) [s][p] R[p] . B_s
  float* CB = RB + kL * kL1;   // (kL, kL1) [t][s] C_t . B_s for s <= t, else 0
  float* Lm = CB + kL * kL1;   // (kL, kL1) [t][s] segment decays for s <= t, else 0
  float* W = Lm + kL * kL1;    // (kL, kL1) [t][s] Lm dt'_s (dy_t . x_s) for s <= t, else 0
  float* av = W + kL * kL1;    // (kL) dt' A
  float* dtp = av + kL;        // (kL) dt'
  float* E = dtp + kL;         // (kL) E_t
  float* direct = E + kL;      // (kL) x_s . gB_s
  float* dDt = direct + kL;    // (kL) dy_s . x_s
  float* T1 = dDt + kL;        // (kL) E_t (dy_t . C_t S0ᵀ)
  float* Q = T1 + kL;          // (kL) ex_s dt'_s (x_s . R B_s)
  float* RSp = Q + kL;         // (kPT) R[p] . S0[p]
  // Total: 2 (kPT + kL)(N + 1) + 7 kL kL1 + 7 kL + kPT floats = chunk_smem_floats(N).

  const int64_t tile = blockIdx.x, p0 = tile * kPT, h = blockIdx.y, bi = blockIdx.z;
  const int64_t g = h / (n.H / n.G), bh = bi * n.H + h;
  const int np = int(std::min<int64_t>(kPT, n.P - p0));  // valid channels of this tile
  const float Ah = A[h], Dh = Dv ? Dv[h] : 0.f, bias = dt_bias ? dt_bias[h] : 0.f;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t t_lo = slab.c_lo * kL;
  float* pB = partial_dB + (bh * n.tiles + tile) * slab.rows * n.N;  // (rows, N) of this block
  float* pC = partial_dC + (bh * n.tiles + tile) * slab.rows * n.N;
  float* tp = tpart + (bh * n.tiles + tile) * n.T * 3;  // (T, 3) of this block

  for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
    const int p = int(i / n.N);
    const int64_t k = i % n.N;
    R[p * N1 + k] = p < np ? carry[(bh * n.P + p0 + p) * n.N + k] : 0.f;
  }
  // R is first read after the __syncthreads that ends step 1 below.
  for (int64_t c = slab.c_hi - 1; c >= slab.c_lo; --c) {
    const int64_t t0 = c * kL;
    // 1. Stage the chunk: B and C rows, S0, the x and dout tiles, dt', the decays E.
    for (int64_t i = tid; i < kL * n.N; i += kThreads) {
      const int t = int(i / n.N);
      const int64_t k = i % n.N, tt = t0 + t;
      const int64_t at = ((bi * n.T + tt) * n.G + g) * n.N + k;
      Bs[t * N1 + k] = tt < n.T ? load_f32(Bm[at]) : 0.f;
      Cs[t * N1 + k] = tt < n.T ? load_f32(Cm[at]) : 0.f;
    }
    const float* st = states + ((bh * n.chunks + c) * n.P + p0) * n.N;  // rows p0.. of (P, N)
    for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
      const int p = int(i / n.N);
      const int64_t k = i % n.N;
      S0[p * N1 + k] = p < np ? st[p * n.N + k] : 0.f;
    }
    for (int i = tid; i < kL * kPT; i += kThreads) {
      const int t = i / kPT, p = i % kPT;
      const int64_t tt = t0 + t;
      const bool valid = tt < n.T && p < np;
      const int64_t at = ((bi * n.T + tt) * n.H + h) * n.P + p0 + p;
      xs[t * kL1 + p] = valid ? load_f32(x[at]) : 0.f;
      dys[t * kL1 + p] = valid ? load_f32(dout[at]) : 0.f;
    }
    if (warp == 0) {
      stage_steps(dtp, av, dt, bi, h, t0, Ah, bias, n);
      __syncwarp();
      float cum = 0.f;  // a_0 + ... + a_lane in step order
      for (int r = 0; r < kL; ++r)
        if (r <= lane) cum += av[r];
      E[lane] = expf(cum);
    }
    __syncthreads();

    // 2. Lm (warp 0: lane s walks column s), CB = C Bᵀ, CS = C S0ᵀ, RB = B Rᵀ, RSp (warp 1).
    if (warp == 0) {
      float seg = 0.f;  // a_{s+1} + ... + a_t, s = lane
      for (int t = 0; t < kL; ++t) {
        if (t > lane) seg += av[t];
        Lm[t * kL1 + lane] = t >= lane ? expf(seg) : 0.f;
      }
    } else if (warp == 1) {
      float v = 0.f;
      if (lane < np)
        for (int64_t k = 0; k < n.N; ++k) v += R[lane * N1 + k] * S0[lane * N1 + k];
      RSp[lane] = v;
    }
    for (int i = tid; i < kL * kL; i += kThreads) {
      const int t = i / kL, s = i % kL;
      float v = 0.f;
      if (s <= t)
        for (int64_t k = 0; k < n.N; ++k) v += Cs[t * N1 + k] * Bs[s * N1 + k];
      CB[t * kL1 + s] = v;
    }
    for (int i = tid; i < kL * kPT; i += kThreads) {
      const int t = i / kPT, p = i % kPT;
      float cs = 0.f, rb = 0.f;
      if (p < np)
        for (int64_t k = 0; k < n.N; ++k) {
          cs += Cs[t * N1 + k] * S0[p * N1 + k];
          rb += Bs[t * N1 + k] * R[p * N1 + k];
        }
      CS[t * kL1 + p] = cs;
      RB[t * kL1 + p] = rb;
    }
    __syncthreads();

    // 3. With z: y recomputed, dz = dout y silu'(z), dy = dout silu(z) in place of dout.
    //    Warp w takes steps t = w, w + kWarps, ...; lane = channel p.
    if (z) {
      for (int t = warp; t < kL; t += kWarps) {
        const int p = lane;
        const int64_t tt = t0 + t;
        if (tt >= n.T || p >= np) continue;
        float y = E[t] * CS[t * kL1 + p] + Dh * xs[t * kL1 + p];
        for (int s = 0; s <= t; ++s)
          y += CB[t * kL1 + s] * Lm[t * kL1 + s] * dtp[s] * xs[s * kL1 + p];
        const int64_t at = ((bi * n.T + tt) * n.H + h) * n.P + p0 + p;
        const float zv = load_f32(z[at]), dov = dys[t * kL1 + p];
        dz[at] = store_as<T>(dov * y * scan::silu_grad(zv));
        dys[t * kL1 + p] = dov * scan::siluf(zv);
      }
      __syncthreads();
    }

    // 4a. Per step s (warp w takes s = w, w + kWarps, ...; lane = channel p): gB, dx, and the
    //     per-step sums over the tile's channels.
    for (int s = warp; s < kL; s += kWarps) {
      const int p = lane;
      const float ex = Lm[(kL - 1) * kL1 + s];
      float gb = ex * RB[s * kL1 + p];
      for (int t = s; t < kL; ++t) gb += CB[t * kL1 + s] * Lm[t * kL1 + s] * dys[t * kL1 + p];
      const float xv = xs[s * kL1 + p], dyv = dys[s * kL1 + p];
      const int64_t tt = t0 + s;
      if (tt < n.T && p < np)
        dx[((bi * n.T + tt) * n.H + h) * n.P + p0 + p] = store_as<T>(dtp[s] * gb + Dh * dyv);
      // Channels past np have xs = dys = CS = RB = 0 and add nothing.
      const float v_direct = warp_sum(xv * gb);
      const float v_dD = warp_sum(dyv * xv);
      const float v_T1 = warp_sum(dyv * CS[s * kL1 + p]);
      const float v_Q = warp_sum(xv * RB[s * kL1 + p]);
      if (lane == 0) {
        direct[s] = v_direct;
        dDt[s] = v_dD;
        T1[s] = E[s] * v_T1;
        Q[s] = ex * dtp[s] * v_Q;
      }
    }
    // 4b. W[t][s] = Lm[t][s] dt'_s (dy_t . x_s) for s <= t.
    for (int i = tid; i < kL * kL; i += kThreads) {
      const int t = i / kL, s = i % kL;
      float v = 0.f;
      if (s <= t) {
        for (int p = 0; p < np; ++p) v += dys[t * kL1 + p] * xs[s * kL1 + p];
        v *= Lm[t * kL1 + s] * dtp[s];
      }
      W[t * kL1 + s] = v;
    }
    __syncthreads();

    // 5a. Ga_r of this tile's channels; warp w takes r = w, w + kWarps, ... Lane l adds channel l
    //     of Ec <R, S0> and step l of the sums over steps: T1_l (l >= r), Q_l (l < r) and the
    //     pairs (t = l >= r, s < r).
    const float Ec = E[kL - 1];
    for (int r = warp; r < kL; r += kWarps) {
      float v = Ec * RSp[lane];
      if (lane >= r) {
        v += T1[lane];
        for (int s = 0; s < r; ++s) v += CB[lane * kL1 + s] * W[lane * kL1 + s];
      } else {
        v += Q[lane];
      }
      v = warp_sum(v);
      const int64_t tt = t0 + r;
      if (lane == 0 && tt < n.T) {
        tp[tt * 3 + 0] = v;
        tp[tt * 3 + 1] = direct[r];
        tp[tt * 3 + 2] = dDt[r];
      }
    }
    // 5b. The dC (row t) and dB (row s = t) partials of this (head, tile); one thread per (t, n).
    for (int64_t i = tid; i < kL * n.N; i += kThreads) {
      const int t = int(i / n.N);
      const int64_t k = i % n.N, tt = t0 + t;
      if (tt >= n.T) continue;
      float dc = 0.f, xr = 0.f;
      for (int p = 0; p < np; ++p) {
        dc += dys[t * kL1 + p] * S0[p * N1 + k];
        xr += xs[t * kL1 + p] * R[p * N1 + k];
      }
      dc *= E[t];
      float db = Lm[(kL - 1) * kL1 + t] * dtp[t] * xr;
      for (int s = 0; s <= t; ++s) dc += W[t * kL1 + s] * Bs[s * N1 + k];
      for (int u = t; u < kL; ++u) db += W[u * kL1 + t] * Cs[u * N1 + k];
      const int64_t row = (tt - t_lo) * n.N + k;  // tt - t_lo < slab.rows
      pC[row] = dc;
      pB[row] = db;
    }
    __syncthreads();  // R, dys, Cs, E are read above and R is rewritten below

    // 6. R <- Ec R + sum_t E_t dy_t ⊗ C_t: the adjoint of the state entering this chunk. Rows past
    //    np stay 0.
    for (int64_t i = tid; i < kPT * n.N; i += kThreads) {
      const int p = int(i / n.N);
      const int64_t k = i % n.N;
      if (p >= np) continue;
      float v = Ec * R[p * N1 + k];
      for (int t = 0; t < kL; ++t) v += E[t] * dys[t * kL1 + p] * Cs[t * N1 + k];
      R[p * N1 + k] = v;
    }
    __syncthreads();  // before the next chunk restages the tiles and reads R
  }
  for (int64_t i = tid; i < np * n.N; i += kThreads)
    carry[(bh * n.P + p0) * n.N + i] = R[(i / n.N) * N1 + i % n.N];
}

// 3. dB, dC of the steps [t_lo, t_lo + len): the partials of the group's heads and the tiles,
// summed in order. One thread per (b, step, g, n). partial_*: (B, H, tiles, rows, N).
template <class T>
__global__ void ssd_bwd_sum_bc_kernel(T* dB, T* dC, const float* partial_dB,
                                      const float* partial_dC, Dims n, int64_t t_lo, int64_t len,
                                      int64_t rows) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n.B * len * n.G * n.N) return;
  const int64_t k = i % n.N, g = (i / n.N) % n.G, tl = (i / (n.N * n.G)) % len,
                bi = i / (n.N * n.G * len);
  const int64_t per_group = n.H / n.G;
  float sum_b = 0.f, sum_c = 0.f;
  for (int64_t j = 0; j < per_group; ++j) {
    const int64_t h = g * per_group + j;
    for (int64_t tile = 0; tile < n.tiles; ++tile) {
      const int64_t at = (((bi * n.H + h) * n.tiles + tile) * rows + tl) * n.N + k;
      sum_b += partial_dB[at];
      sum_c += partial_dC[at];
    }
  }
  const int64_t out = ((bi * n.T + t_lo + tl) * n.G + g) * n.N + k;
  dB[out] = store_as<T>(sum_b);
  dC[out] = store_as<T>(sum_c);
}

// 4. ddt from the tiles' partials; dA, dD, ddt_bias summed over (b, t). One block per head; each
// thread takes the steps i = threadIdx.x, + kThreads, ... of (B * T), then a fixed-order
// cub::BlockReduce. tpart: (B, H, tiles, T, 3).
template <class T>
__global__ void __launch_bounds__(kThreads)
    ssd_bwd_dt_kernel(T* ddt, float* dA, float* dD, float* ddt_bias, const float* tpart,
                      const T* dt, const float* A, const float* dt_bias, Dims n) {
  using BlockReduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename BlockReduce::TempStorage storage;
  const int64_t h = blockIdx.x;
  const float Ah = A[h], bias = dt_bias ? dt_bias[h] : 0.f;
  float sum_A = 0.f, sum_D = 0.f, sum_bias = 0.f;
  for (int64_t i = threadIdx.x; i < n.B * n.T; i += kThreads) {
    const int64_t bi = i / n.T, t = i % n.T;
    float ga = 0.f, direct = 0.f, dd = 0.f;
    for (int64_t tile = 0; tile < n.tiles; ++tile) {
      const float* o = tpart + (((bi * n.H + h) * n.tiles + tile) * n.T + t) * 3;
      ga += o[0];
      direct += o[1];
      dd += o[2];
    }
    const int64_t at = (bi * n.T + t) * n.H + h;
    const float v = load_f32(dt[at]) + bias;
    const float d = n.softplus ? scan::softplusf(v) : v;
    float grad = direct + Ah * ga;  // d loss / d dt'
    sum_A += d * ga;
    if (n.softplus) grad *= scan::sigmoidf(v);
    ddt[at] = store_as<T>(grad);
    sum_bias += grad;
    sum_D += dd;
  }
  const float total_A = BlockReduce(storage).Sum(sum_A);
  __syncthreads();  // storage is reused
  const float total_D = BlockReduce(storage).Sum(sum_D);
  __syncthreads();
  const float total_bias = BlockReduce(storage).Sum(sum_bias);
  if (threadIdx.x != 0) return;  // the reductions are valid in thread 0
  dA[h] = total_A;
  if (dD) dD[h] = total_D;
  if (ddt_bias) ddt_bias[h] = total_bias;
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data()) : nullptr;
}
template <class T>
T* mut_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data()) : nullptr;
}

void zero(const Tensor& t, cudaStream_t stream) {
  if (t.defined() && t.numel() > 0)
    LONGCTX_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.nbytes(), stream));
}

}  // namespace

void ssd_bwd(const Context& ctx, const SSDGrads& grads, const Tensor& dout,
             const Tensor& dfinal_states, const SSDInputs& in, const SSDParams& params) {
  Dims n{};
  n.B = in.x.size(0);
  n.T = in.x.size(1);
  n.H = in.x.size(2);
  n.P = in.x.size(3);
  n.G = in.B.size(2);
  n.N = in.B.size(3);
  n.tiles = (n.P + kPT - 1) / kPT;
  n.chunks = (n.T + kL - 1) / kL;
  n.softplus = params.dt_softplus;  // params.chunk_size tunes the CPU path; CUDA chunks are kL
  cudaStream_t stream = state_of(ctx).stream;
  const Device dev = ctx.device();

  // Nothing to scan: every gradient is an empty sum, except dinitial_states = dfinal_states.
  if (n.B * n.H * n.P == 0 || n.T == 0) {
    for (const Tensor* t : {&grads.dx, &grads.ddt, &grads.dA, &grads.dB, &grads.dC, &grads.dD,
                            &grads.dz, &grads.ddt_bias, &grads.dinitial_states})
      zero(*t, stream);
    if (grads.dinitial_states.defined() && dfinal_states.defined() &&
        grads.dinitial_states.numel() > 0)
      LONGCTX_CUDA_CHECK(cudaMemcpyAsync(grads.dinitial_states.data(), dfinal_states.data(),
                                         grads.dinitial_states.nbytes(), cudaMemcpyDeviceToDevice,
                                         stream));
    return;
  }
  LONGCTX_CHECK(n.H <= 65535 && n.B <= 65535,
                "ssd_bwd: the CUDA kernels take at most 65535 heads "
                "and 65535 batch entries, got H = ",
                n.H, ", B = ", n.B);
  int max_smem = 0;
  LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            state_of(ctx).device));
  const size_t smem_states = states_smem_floats(n.N) * sizeof(float);
  const size_t smem_chunk = chunk_smem_floats(n.N) * sizeof(float);
  const int64_t max_n =
      (int64_t(size_t(max_smem) / sizeof(float)) - int64_t(kChunkSmemFixed)) / (2 * (kPT + kL)) - 1;
  LONGCTX_CHECK(smem_chunk <= size_t(max_smem) && smem_states <= size_t(max_smem),
                "ssd_bwd: state size N = ", n.N, " needs ", smem_chunk,
                " bytes of shared memory per block on CUDA, the device allows ", max_smem,
                " (N <= ", max_n, " fits on this device)");

  // R, the adjoint carried from the right between launches; it ends as dinitial_states, so that
  // gradient's memory serves when it is asked for.
  Tensor carry = grads.dinitial_states.defined()
                     ? grads.dinitial_states
                     : Tensor::empty({n.B, n.H, n.P, n.N}, DType::f32, dev, &ctx);
  if (dfinal_states.defined())
    LONGCTX_CUDA_CHECK(cudaMemcpyAsync(carry.data(), dfinal_states.data(), carry.nbytes(),
                                       cudaMemcpyDeviceToDevice, stream));
  else
    zero(carry, stream);
  Tensor states = Tensor::empty({n.B, n.H, n.chunks, n.P, n.N}, DType::f32, dev, &ctx);
  Tensor tpart = Tensor::empty({n.B, n.H, n.tiles, n.T, 3}, DType::f32, dev, &ctx);
  const size_t chunk_partial_bytes = 2 * size_t(n.B * n.H * n.tiles * kL * n.N) * sizeof(float);
  const int64_t chunks_per_slab = std::clamp<int64_t>(
      int64_t(kPartialBudgetBytes / chunk_partial_bytes), 1, std::min(n.chunks, kMaxSlabChunks));
  const int64_t rows = chunks_per_slab * kL;
  Tensor partial = Tensor::empty({2, n.B * n.H * n.tiles, rows, n.N}, DType::f32, dev, &ctx);
  float* partial_dB = partial.data_as<float>();
  float* partial_dC = partial_dB + n.B * n.H * n.tiles * rows * n.N;

  const dim3 grid(unsigned(n.tiles), unsigned(n.H), unsigned(n.B));
  dispatch_cuda_float("ssd_bwd", in.x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
        ssd_bwd_states_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_states)));
    LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
        ssd_bwd_chunk_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_chunk)));
    ssd_bwd_states_kernel<T><<<grid, kThreads, smem_states, stream>>>(
        states.data_as<float>(), ptr_or_null<T>(in.x), ptr_or_null<T>(in.dt), in.A.data_as<float>(),
        ptr_or_null<T>(in.B), ptr_or_null<float>(in.dt_bias), ptr_or_null<float>(in.initial_states),
        n);
    LONGCTX_CHECK_LAUNCH();
    for (int64_t hi = n.chunks; hi > 0; hi -= chunks_per_slab) {
      const Slab slab{std::max<int64_t>(0, hi - chunks_per_slab), hi, rows};
      ssd_bwd_chunk_kernel<T><<<grid, kThreads, smem_chunk, stream>>>(
          static_cast<T*>(grads.dx.data()), mut_or_null<T>(grads.dz), partial_dB, partial_dC,
          tpart.data_as<float>(), carry.data_as<float>(), ptr_or_null<T>(dout),
          states.data_as<float>(), ptr_or_null<T>(in.x), ptr_or_null<T>(in.dt),
          in.A.data_as<float>(), ptr_or_null<T>(in.B), ptr_or_null<T>(in.C),
          ptr_or_null<float>(in.D), ptr_or_null<T>(in.z), ptr_or_null<float>(in.dt_bias), n, slab);
      LONGCTX_CHECK_LAUNCH();
      const int64_t t_lo = slab.c_lo * kL, len = std::min(n.T, slab.c_hi * kL) - t_lo;
      const int64_t threads = n.B * len * n.G * n.N;
      ssd_bwd_sum_bc_kernel<T><<<unsigned((threads + 255) / 256), 256, 0, stream>>>(
          static_cast<T*>(grads.dB.data()), static_cast<T*>(grads.dC.data()), partial_dB,
          partial_dC, n, t_lo, len, rows);
      LONGCTX_CHECK_LAUNCH();
    }
    ssd_bwd_dt_kernel<T><<<unsigned(n.H), kThreads, 0, stream>>>(
        static_cast<T*>(grads.ddt.data()), grads.dA.data_as<float>(), mut_or_null<float>(grads.dD),
        mut_or_null<float>(grads.ddt_bias), tpart.data_as<float>(), ptr_or_null<T>(in.dt),
        in.A.data_as<float>(), ptr_or_null<float>(in.dt_bias), n);
    LONGCTX_CHECK_LAUNCH();
  });
}

}  // namespace longctx::cuda
