// gated_delta_rule on CUDA (include/longctx/ops/gated_delta_rule.h): the chunked forward, its
// backward, the decode step.
//
// This first version is a phase-by-phase port of the CPU path as it was when written
// (src/cpu/gated_delta_rule.cpp, whose file comment has the math of a chunk): the same U, O and S
// from the same products. The CPU path has since changed how it forms KDA's decays (running
// products, kda_gamma_rho) and the order of the Gated DeltaNet forward (run_chunk_scalar_fwd);
// here every decay is the exponential of its segment's sum, so the two backends agree to
// rounding, not bit for bit. One block of kThreads threads per (sequence, value head), chunk
// after chunk;
// inside a chunk every product is a block-parallel loop — a thread per output element (a warp per
// element for the pair products' channel sums, a thread per column for the triangular solves) —
// with __syncthreads() between phases. A chunk's operands live in a per-block scratch in global
// memory (about 1 MB per block at C = 64, K = V = 128, 1 MB more for KDA's per-channel decays;
// L1/L2-resident); the state lives in final_state (or the scratch) and, in the backward, every
// chunk's entering state in a workspace, as on the CPU. Arithmetic is f32, the backward's short
// sums (dbeta, the decay gradient) f64, as on the CPU.
//
// Tensor cores: for bf16/f16 Gated DeltaNet the pair products K̂ K̂ᵀ and Q̂ K̂ᵀ (2C x C x K) are
// 16x16x16 WMMA products of the raw 16-bit q and k (exact operands, f32 accumulation), scaled by
// the l2norm factors afterwards. The state products and the solves are f32 FMA.
//
// What this version is not: fast. Its parallelism is B·HV blocks and its operands go through
// L1/L2 rather than shared memory. The next step, once a GPU can check it: split V across blocks
// (the forward's columns are independent), keep the state and the chunk rows in shared memory,
// move the state products onto tensor cores (one operand exact in 16-bit, the f32 one split into
// three 16-bit parts as in kernels/scan/ssd.cu).
//
// Every chunk is C tokens, computed as Cp = C rounded up to 16 rows; the rows past a sequence's
// end are identity steps (q = k = v = 0, g = 0, β = 0) contributing exact zeros: the results are
// bitwise batch invariant, and deterministic (no atomics, every sum in a fixed order).
#include <mma.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/scan/scan_common.cuh"
#include "src/ops/gated_delta_rule.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTC = 16;  // WMMA tile edge

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

// Offsets (in floats) of one block's scratch arrays, each on a 256-byte boundary. C = Cp rows.
struct Layout {
  int64_t kq;           // (2C, K) k̂, then q̂
  int64_t kqg;          // (2C, K) −γ ⊙ k̂, then scale γ ⊙ q̂
  int64_t kd;           // (C, K) ρ ⊙ k̂
  int64_t raw;          // (2C, Kp) of T: the raw k, then q rows, zero-padded to Kp (WMMA operands)
  int64_t rstd;         // (2C) the l2norm factors of the k, then q rows (1 without l2norm)
  int64_t v;            // (C, V)
  int64_t g, gam, rho;  // (C, Kg) g, γ, ρ
  int64_t beta;         // (C)
  int64_t E;            // exp of the segment sums: (C, C) for Kg = 1, (C (C + 1) / 2, K) for KDA
  int64_t PM;           // (2C, C) P, then M
  int64_t A;            // (C, C) diag(β) P
  int64_t UO;           // (2C, V) U, then the outputs
  int64_t S;            // (K, V) the forward's state when final_state is not given
  // Backward:
  int64_t Y;            // (3C, V) dv = diag(β) dR, dO, dU then dR
  int64_t dMA;          // (2C, C) dM, then dR Uᵀ (−dA, then dP)
  int64_t Z;            // (2C, K) dv S0ᵀ (−dKg), then dO S0ᵀ (dQg)
  int64_t dKd, dq, dk;  // (C, K)
  int64_t dS, dS0;      // (K, V) the gradient of the state leaving / entering the chunk
  int64_t acc;          // doubles: t1, t2, rect (C, Kg each), dgam rows (K), dgam (Kg)
  int64_t floats;       // per block
};

Layout layout_of(int64_t Cp, int64_t K, int64_t V, int64_t Kg, int64_t Kp, bool bwd) {
  Layout l{};
  int64_t at = 0;
  const auto take = [&](int64_t n) {
    const int64_t start = at;
    at += round_up(std::max<int64_t>(n, 1), 64);
    return start;
  };
  l.kq = take(2 * Cp * K);
  l.kqg = take(2 * Cp * K);
  l.kd = take(Cp * K);
  l.raw = take(Cp * Kp);  // 2 Cp Kp 16-bit values
  l.rstd = take(2 * Cp);
  l.v = take(Cp * V);
  l.g = take(Cp * Kg);
  l.gam = take(Cp * Kg);
  l.rho = take(Cp * Kg);
  l.beta = take(Cp);
  l.E = take(Kg == 1 ? Cp * Cp : Cp * (Cp + 1) / 2 * K);
  l.PM = take(2 * Cp * Cp);
  l.A = take(Cp * Cp);
  l.UO = take(2 * Cp * V);
  l.S = take(K * V);
  if (bwd) {
    l.Y = take(3 * Cp * V);
    l.dMA = take(2 * Cp * Cp);
    l.Z = take(2 * Cp * K);
    l.dKd = take(Cp * K);
    l.dq = take(Cp * K);
    l.dk = take(Cp * K);
    l.dS = take(K * V);
    l.dS0 = take(K * V);
    l.acc = take(2 * (3 * Cp * Kg + K + Kg));
  }
  l.floats = at;
  return l;
}

// Everything a kernel reads, by value.
struct Params {
  int64_t T;                   // each sequence's length in a rectangular batch
  int64_t H, HV, K, V, Kg, R;  // R = HV / H
  int64_t C, Cp, Kp;           // chunk length, its rows (C rounded up to 16), K rounded up to 16
  float scale;
  bool l2norm;
  const int32_t* cu_seqlens;  // (N + 1) or nullptr
  const int64_t* chunk_off;   // (N + 1): chunks before each sequence (backward workspaces)
  const void *q, *k, *v, *beta;
  const float *g, *h0;
  void* out;
  float* fin;
  const void* dout;
  const float* dfin;
  void *dq, *dk, *dv, *dbeta;
  float *dg, *dh0;
  float *dq_part, *dk_part;  // (B·T, HV, K) dq̂ and dk̂ of each value head
  float* states;             // per (sequence, value head): its chunks + 1 entering states (K, V)
  float *Us, *Vms;           // per (sequence, value head): its chunks' U and Vm (Cp, V)
  float* scratch;            // per block: lay.floats
  Layout lay;
};

__device__ __forceinline__ void seq_bounds(const Params& P, int64_t s, int64_t& begin, int64_t& L) {
  if (P.cu_seqlens) {
    begin = P.cu_seqlens[s];
    L = P.cu_seqlens[s + 1] - begin;
  } else {
    begin = s * P.T;
    L = P.T;
  }
}

template <class A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// One block's scratch views.
template <class T>
struct Block {
  float *kq, *kqg, *kd, *rstd, *v, *g, *gam, *rho, *beta, *E, *PM, *A, *UO, *S;
  T* raw;
  float *Y, *dMA, *Z, *dKd, *dq, *dk, *dS, *dS0;
  double* acc;
  int64_t Cp, K, Kg;

  __device__ Block(const Params& P, int64_t item) : Cp(P.Cp), K(P.K), Kg(P.Kg) {
    float* b = P.scratch + item * P.lay.floats;
    const Layout& l = P.lay;
    kq = b + l.kq, kqg = b + l.kqg, kd = b + l.kd, rstd = b + l.rstd, v = b + l.v;
    g = b + l.g, gam = b + l.gam, rho = b + l.rho, beta = b + l.beta, E = b + l.E;
    PM = b + l.PM, A = b + l.A, UO = b + l.UO, S = b + l.S;
    raw = reinterpret_cast<T*>(b + l.raw);
    Y = b + l.Y, dMA = b + l.dMA, Z = b + l.Z, dKd = b + l.dKd, dq = b + l.dq, dk = b + l.dk;
    dS = b + l.dS, dS0 = b + l.dS0;
    acc = reinterpret_cast<double*>(b + l.acc);
  }
  // The Kg decays E_ij, j <= i.
  __device__ float* e_at(int64_t i, int64_t j) const {
    return E + (Kg == 1 ? i * Cp + j : (i * (i + 1) / 2 + j) * K);
  }
  // γ_{Cp-1} of channel c (any c when Kg = 1).
  __device__ float gam_last(int64_t c) const { return gam[(Cp - 1) * Kg + (Kg == 1 ? 0 : c)]; }
};

// P (strictly lower) and M (lower with the diagonal) of the loaded chunk into PM: on tensor cores
// for 16-bit Gated DeltaNet, else a warp per pair summing over the channels.
template <class T>
__device__ void pair_products(const Params& P, Block<T>& w, bool with_M) {
  const int64_t Cp = P.Cp, K = P.K, Kg = P.Kg;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float* Pm = w.PM;
  float* Mm = w.PM + Cp * Cp;
  if constexpr (!std::is_same_v<T, float>) {
    if (Kg == 1) {
      using namespace nvcuda;
      // [P; M] before scaling = [K; Q] Kᵀ of the raw rows: tile (ti, tj) of the (2Cp, Cp) result.
      const int64_t Kp = P.Kp, col_tiles = Cp / kTC,
                    tiles = (with_M ? 2 : 1) * col_tiles * col_tiles;
      for (int64_t t = warp; t < tiles; t += kWarps) {
        const int64_t ti = t / col_tiles, tj = t % col_tiles;
        wmma::fragment<wmma::accumulator, kTC, kTC, kTC, float> acc;
        wmma::fragment<wmma::matrix_a, kTC, kTC, kTC, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, kTC, kTC, kTC, T, wmma::col_major>
            fb;  // Kᵀ: k rows as columns
        wmma::fill_fragment(acc, 0.f);
        for (int64_t k0 = 0; k0 < Kp; k0 += kTC) {
          wmma::load_matrix_sync(fa, w.raw + ti * kTC * Kp + k0, unsigned(Kp));
          wmma::load_matrix_sync(fb, w.raw + tj * kTC * Kp + k0, unsigned(Kp));
          wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(w.PM + ti * kTC * Cp + tj * kTC, acc, unsigned(Cp),
                                wmma::mem_row_major);
      }
      __syncthreads();
      for (int64_t e = threadIdx.x; e < Cp * Cp; e += kThreads) {
        const int64_t i = e / Cp, j = e % Cp;
        const float gate = j <= i ? *w.e_at(i, j) : 0.f;
        Pm[e] = j < i ? Pm[e] * (w.rstd[i] * w.rstd[j]) * gate : 0.f;
        if (with_M) Mm[e] = j <= i ? Mm[e] * (w.rstd[Cp + i] * w.rstd[j]) * (P.scale * gate) : 0.f;
      }
      return;
    }
  }
  for (int64_t pi = warp; pi < Cp * Cp; pi += kWarps) {
    const int64_t i = pi / Cp, j = pi % Cp;
    if (j > i) {
      if (lane == 0) {
        Pm[pi] = 0.f;
        if (with_M) Mm[pi] = 0.f;
      }
      continue;
    }
    const float* ki = w.kq + i * K;
    const float* kj = w.kq + j * K;
    const float* qi = w.kq + (Cp + i) * K;
    const float* e = w.e_at(i, j);
    float pk = 0.f, mk = 0.f;
    for (int64_t c = lane; c < K; c += 32) {
      const float kje = Kg == 1 ? kj[c] : kj[c] * e[c];
      pk += ki[c] * kje;
      mk += qi[c] * kje;
    }
    pk = warp_sum(pk);
    mk = warp_sum(mk);
    if (lane == 0) {
      const float gate = Kg == 1 ? e[0] : 1.f;
      Pm[pi] = j < i ? pk * gate : 0.f;
      if (with_M) Mm[pi] = mk * (P.scale * gate);
    }
  }
}

// Loads the n tokens at positions [p0, p0 + n) of value head hv into the block's scratch, rows n
// to Cp as identity steps, and derives the decays, the rows that read the state, P, M and A.
template <class T>
__device__ void load_chunk(const Params& P, Block<T>& w, int64_t hv, int64_t p0, int64_t n,
                           bool with_M) {
  const int64_t Cp = P.Cp, K = P.K, V = P.V, Kg = P.Kg, Kp = P.Kp, h = hv / P.R;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const T* q = static_cast<const T*>(P.q);
  const T* k = static_cast<const T*>(P.k);
  const T* v = static_cast<const T*>(P.v);
  const T* beta = static_cast<const T*>(P.beta);
  const auto row_of = [&](int64_t r) {  // the raw k (r < Cp) or q row of chunk row r % Cp
    return (r < Cp ? k : q) + ((p0 + r % Cp) * P.H + h) * K;
  };
  // The l2norm factors, a warp per row.
  for (int64_t r = warp; r < 2 * Cp; r += kWarps) {
    float f = 1.f;
    if (P.l2norm && r % Cp < n) {
      const T* x = row_of(r);
      float ss = 0.f;
      for (int64_t c = lane; c < K; c += 32) ss += load_f32(x[c]) * load_f32(x[c]);
      f = 1.f / sqrtf(warp_sum(ss) + float(kL2NormEps));
    }
    if (lane == 0) w.rstd[r] = f;
  }
  __syncthreads();
  for (int64_t e = tid; e < 2 * Cp * K; e += kThreads) {
    const int64_t r = e / K, c = e % K;
    w.kq[e] = r % Cp < n ? load_f32(row_of(r)[c]) * w.rstd[r] : 0.f;
  }
  if constexpr (!std::is_same_v<T, float>) {
    for (int64_t e = tid; e < 2 * Cp * Kp; e += kThreads) {
      const int64_t r = e / Kp, c = e % Kp;
      w.raw[e] = r % Cp < n && c < K ? row_of(r)[c] : store_as<T>(0.f);
    }
  }
  for (int64_t e = tid; e < Cp * V; e += kThreads) {
    const int64_t i = e / V, c = e % V;
    w.v[e] = i < n ? load_f32(v[((p0 + i) * P.HV + hv) * V + c]) : 0.f;
  }
  for (int64_t e = tid; e < Cp * Kg; e += kThreads) {
    const int64_t i = e / Kg, c = e % Kg;
    w.g[e] = i < n ? P.g[((p0 + i) * P.HV + hv) * Kg + c] : 0.f;
  }
  for (int64_t i = tid; i < Cp; i += kThreads)
    w.beta[i] = i < n ? load_f32(beta[(p0 + i) * P.HV + hv]) : 0.f;
  __syncthreads();
  // Decays, each the exponential of a segment sum in step order: γ and ρ a thread per gate
  // channel, E a thread per (column j, channel c) down the rows.
  for (int64_t c = tid; c < Kg; c += kThreads) {
    float run = 0.f;
    for (int64_t i = 0; i < Cp; ++i) {
      run += w.g[i * Kg + c];
      w.gam[i * Kg + c] = expf(run);
    }
    run = 0.f;
    for (int64_t i = Cp - 1; i >= 0; --i) {
      w.rho[i * Kg + c] = expf(run);
      run += w.g[i * Kg + c];
    }
  }
  for (int64_t e = tid; e < Cp * Kg; e += kThreads) {
    const int64_t j = e / Kg, c = e % Kg;
    w.e_at(j, j)[c] = 1.f;
    float s = 0.f;
    for (int64_t i = j + 1; i < Cp; ++i) {
      s += w.g[i * Kg + c];
      w.e_at(i, j)[c] = expf(s);
    }
  }
  __syncthreads();
  for (int64_t e = tid; e < Cp * K; e += kThreads) {
    const int64_t i = e / K, c = e % K, gc = i * Kg + (Kg == 1 ? 0 : c);
    const float a = w.gam[gc];
    w.kqg[e] = -a * w.kq[e];
    w.kqg[Cp * K + e] = (P.scale * a) * w.kq[Cp * K + e];
    w.kd[e] = w.rho[gc] * w.kq[e];
  }
  pair_products(P, w, with_M);
  __syncthreads();
  for (int64_t e = tid; e < Cp * Cp; e += kThreads) w.A[e] = w.beta[e / Cp] * w.PM[e];
  __syncthreads();
}

// Runs the loaded chunk from the state S (K x V; zeros when zero_state, and then only written):
// the delta values to U (Cp x V), V − (γ ⊙ K̂) S to Vm when given, the outputs to the block's
// UO[Cp:] when with_O; leaves the state after the chunk in S.
template <class T>
__device__ void run_chunk(const Params& P, Block<T>& w, float* S, bool zero_state, float* U,
                          float* Vm, bool with_O) {
  const int64_t Cp = P.Cp, K = P.K, V = P.V;
  const int tid = threadIdx.x;
  float* O = w.UO + Cp * V;
  // [V − (γ ⊙ K̂) S; (scale γ ⊙ Q̂) S]; the first part kept in Vm and scaled by β into U.
  for (int64_t e = tid; e < (with_O ? 2 : 1) * Cp * V; e += kThreads) {
    const int64_t r = e / V, c = e % V;
    float x = r < Cp ? w.v[e] : 0.f;
    if (!zero_state) {
      const float* a = w.kqg + r * K;
      float s = 0.f;
      for (int64_t j = 0; j < K; ++j) s += a[j] * S[j * V + c];
      x += s;
    }
    if (r < Cp) {
      if (Vm) Vm[e] = x;
      U[e] = w.beta[r] * x;
    } else {
      O[e - Cp * V] = x;
    }
  }
  __syncthreads();
  // U = (I + A)⁻¹ U by forward substitution, a thread per column.
  for (int64_t c = tid; c < V; c += kThreads)
    for (int64_t i = 1; i < Cp; ++i) {
      const float* a = w.A + i * Cp;
      float x = U[i * V + c];
      for (int64_t j = 0; j < i; ++j) x -= a[j] * U[j * V + c];
      U[i * V + c] = x;
    }
  __syncthreads();
  if (with_O)
    for (int64_t e = tid; e < Cp * V; e += kThreads) {
      const int64_t i = e / V, c = e % V;
      const float* m = w.PM + (Cp + i) * Cp;
      float s = 0.f;
      for (int64_t j = 0; j <= i; ++j) s += m[j] * U[j * V + c];
      O[e] += s;
    }
  for (int64_t e = tid; e < K * V; e += kThreads) {
    const int64_t r = e / V, c = e % V;
    float s = zero_state ? 0.f : w.gam_last(r) * S[e];
    for (int64_t j = 0; j < Cp; ++j) s += w.kd[j * K + r] * U[j * V + c];
    S[e] = s;
  }
  __syncthreads();
}

// The backward of one loaded chunk at positions [p0, p0 + n) (see the CPU's chunk_bwd): from dS,
// the gradient of the state leaving it, S0 the state entering it, U and Vm from the first pass.
// Writes dv, dbeta, dg of its tokens and this value head's dq̂, dk̂ rows; dS0 receives the
// gradient of S0.
template <class T>
__device__ void chunk_bwd(const Params& P, Block<T>& w, int64_t hv, int64_t p0, int64_t n,
                          const float* S0, const float* U, const float* Vm, const float* dS,
                          float* dS0) {
  const int64_t Cp = P.Cp, K = P.K, V = P.V, Kg = P.Kg, KV = K * V;
  const int tid = threadIdx.x;
  float* dv = w.Y;
  float* dO = w.Y + Cp * V;
  float* dU = w.Y + 2 * Cp * V;  // then dR
  float* dM = w.dMA;
  float* dRU = w.dMA + Cp * Cp;  // dR Uᵀ = −dA, then dP
  const float* Pm = w.PM;
  const float* Mm = w.PM + Cp * Cp;
  double* t1 = w.acc;
  double* t2 = t1 + Cp * Kg;
  double* rect = t2 + Cp * Kg;
  double* dgam_row = rect + Cp * Kg;  // (K)
  double* dgam = dgam_row + K;        // (Kg)
  const T* dout = static_cast<const T*>(P.dout);
  for (int64_t e = tid; e < Cp * V; e += kThreads) {
    const int64_t i = e / V, c = e % V;
    dO[e] = i < n ? load_f32(dout[((p0 + i) * P.HV + hv) * V + c]) : 0.f;
  }
  for (int64_t e = tid; e < Cp * Kg; e += kThreads) rect[e] = 0.0;
  __syncthreads();
  // Through O = (scale γ ⊙ Q̂) S0 + M U and S' = diag(γ_{Cp-1}) S0 + (ρ ⊙ K̂)ᵀ U.
  for (int64_t e = tid; e < Cp * V; e += kThreads) {
    const int64_t i = e / V, c = e % V;
    float s = 0.f;
    for (int64_t j = i; j < Cp; ++j) s += Mm[j * Cp + i] * dO[j * V + c];
    const float* kd = w.kd + i * K;
    float t = 0.f;
    for (int64_t j = 0; j < K; ++j) t += kd[j] * dS[j * V + c];
    dU[e] = s + t;
  }
  for (int64_t e = tid; e < Cp * K; e += kThreads) {
    const int64_t i = e / K, c = e % K;
    float s = 0.f;
    for (int64_t j = 0; j < V; ++j) s += U[i * V + j] * dS[c * V + j];
    w.dKd[e] = s;
  }
  for (int64_t c = tid; c < K; c += kThreads) {
    double s = 0.0;
    for (int64_t j = 0; j < V; ++j) s += double(S0[c * V + j]) * dS[c * V + j];
    dgam_row[c] = s;
  }
  for (int64_t e = tid; e < KV; e += kThreads) dS0[e] = w.gam_last(e / V) * dS[e];
  __syncthreads();
  if (tid == 0 && Kg == 1) {
    double s = 0.0;
    for (int64_t c = 0; c < K; ++c) s += dgam_row[c];
    dgam[0] = s;
  }
  for (int64_t c = tid; c < K && Kg > 1; c += kThreads) dgam[c] = dgam_row[c];
  // dU becomes dR = (I + A)⁻ᵀ dU, by back substitution, a thread per column.
  for (int64_t c = tid; c < V; c += kThreads)
    for (int64_t i = Cp - 2; i >= 0; --i) {
      float x = dU[i * V + c];
      for (int64_t j = i + 1; j < Cp; ++j) x -= w.A[j * Cp + i] * dU[j * V + c];
      dU[i * V + c] = x;
    }
  __syncthreads();
  const float* dR = dU;
  // [dM; dR Uᵀ] = [dO; dR] Uᵀ.
  for (int64_t e = tid; e < 2 * Cp * Cp; e += kThreads) {
    const int64_t r = e / Cp, j = e % Cp;
    const float* y = dO + r * V;  // rows of dO, then of dR
    float s = 0.f;
    for (int64_t c = 0; c < V; ++c) s += y[c] * U[j * V + c];
    w.dMA[e] = s;
  }
  // dv = diag(β) dR.
  T* dv_out = static_cast<T*>(P.dv);
  for (int64_t e = tid; e < Cp * V; e += kThreads) {
    const int64_t i = e / V, c = e % V;
    dv[e] = w.beta[i] * dR[e];
    if (i < n) dv_out[((p0 + i) * P.HV + hv) * V + c] = store_as<T>(dv[e]);
  }
  __syncthreads();
  // dbeta_i = <dR_i, Vm_i> + Σ_j dA_ij P_ij.
  T* dbeta = static_cast<T*>(P.dbeta);
  for (int64_t i = tid; i < n; i += kThreads) {
    double s = 0.0;
    for (int64_t c = 0; c < V; ++c) s += double(dR[i * V + c]) * Vm[i * V + c];
    for (int64_t j = 0; j < i; ++j) s -= double(dRU[i * Cp + j]) * Pm[i * Cp + j];
    dbeta[(p0 + i) * P.HV + hv] = store_as<T>(float(s));
  }
  // [dv; dO] S0ᵀ = [−dKg; dQg]; the rows [−γ ⊙ K̂; scale γ ⊙ Q̂] take [dv; dO] back into dS0.
  for (int64_t e = tid; e < 2 * Cp * K; e += kThreads) {
    const int64_t r = e / K, c = e % K;
    const float* y = dv + r * V;
    float s = 0.f;
    for (int64_t j = 0; j < V; ++j) s += y[j] * S0[c * V + j];
    w.Z[e] = s;
  }
  for (int64_t e = tid; e < KV; e += kThreads) {
    const int64_t c = e / V, j = e % V;
    float s = 0.f;
    for (int64_t r = 0; r < 2 * Cp; ++r) s += w.kqg[r * K + c] * dv[r * V + j];
    dS0[e] += s;
  }
  __syncthreads();
  // dP = diag(β) dA on the strict lower triangle (in dR Uᵀ's place); dM on the lower one.
  for (int64_t e = tid; e < Cp * Cp; e += kThreads) {
    const int64_t i = e / Cp, j = e % Cp;
    dRU[e] = j < i ? -w.beta[i] * dRU[e] : 0.f;
    if (j > i) dM[e] = 0.f;
  }
  __syncthreads();
  const float* dP = dRU;
  const float* k = w.kq;
  const float* q = w.kq + Cp * K;
  // The decay gradient's pair terms (see the CPU's chunk_bwd): rect_t = Σ_{j<t<=i} D_ij.
  if (Kg == 1) {
    for (int64_t t = tid; t < Cp; t += kThreads) {
      double s = 0.0;
      for (int64_t i = t; i < Cp; ++i)
        for (int64_t j = 0; j < t; ++j)
          s += double(dM[i * Cp + j]) * Mm[i * Cp + j] + double(dP[i * Cp + j]) * Pm[i * Cp + j];
      rect[t] = s;
    }
    __syncthreads();
    // The q/k gradients: products of dM ⊙ E and dP ⊙ E.
    for (int64_t e = tid; e < Cp * Cp; e += kThreads) {
      const int64_t i = e / Cp, j = e % Cp;
      if (j > i) continue;
      const float gate = *w.e_at(i, j);
      dM[e] *= gate;
      dRU[e] *= gate;
    }
    __syncthreads();
    for (int64_t e = tid; e < Cp * K; e += kThreads) {
      const int64_t i = e / K, c = e % K;
      float sq = 0.f, sk = 0.f;
      for (int64_t j = 0; j < Cp; ++j) {
        sq += dM[i * Cp + j] * k[j * K + c];
        sk += (dP[i * Cp + j] + dP[j * Cp + i]) * k[j * K + c] +
              P.scale * dM[j * Cp + i] * q[j * K + c];
      }
      w.dq[e] = P.scale * sq;
      w.dk[e] = sk;
    }
  } else {
    // Per channel, a thread per (row, channel): dq̂_i += Σ_j scale dM_ij (k̂_j ⊙ E_ij),
    // dk̂_i += Σ_j dP_ij (k̂_j ⊙ E_ij) + Σ_i' (scale dM_i'i q̂_i' + dP_i'i k̂_i') ⊙ E_i'i.
    for (int64_t e = tid; e < Cp * K; e += kThreads) {
      const int64_t i = e / K, c = e % K;
      float sq = 0.f, sk = 0.f;
      for (int64_t j = 0; j <= i; ++j) {
        const float kje = k[j * K + c] * w.e_at(i, j)[c];
        sq += P.scale * dM[i * Cp + j] * kje;
        sk += dP[i * Cp + j] * kje;
      }
      for (int64_t r = i; r < Cp; ++r)
        sk += (P.scale * dM[r * Cp + i] * q[r * K + c] + dP[r * Cp + i] * k[r * K + c]) *
              w.e_at(r, i)[c];
      w.dq[e] = sq;
      w.dk[e] = sk;
    }
    // rect, a thread per channel: D_ijc = (scale dM_ij q̂_ic + dP_ij k̂_ic) k̂_jc E_ijc.
    for (int64_t c = tid; c < K; c += kThreads)
      for (int64_t i = 1; i < Cp; ++i) {
        double row = 0.0;
        for (int64_t j = 0; j < i; ++j) {
          row += (double(P.scale * dM[i * Cp + j]) * q[i * K + c] +
                  double(dP[i * Cp + j]) * k[i * K + c]) *
                 (double(k[j * K + c]) * w.e_at(i, j)[c]);
          rect[(j + 1) * K + c] += row;
        }
      }
  }
  __syncthreads();
  // Through −γ ⊙ K̂, scale γ ⊙ Q̂ (Z holds −dKg, dQg) and ρ ⊙ K̂.
  const float* dQg = w.Z + Cp * K;
  for (int64_t e = tid; e < Cp * K; e += kThreads) {
    const int64_t i = e / K, c = e % K, gc = i * Kg + (Kg == 1 ? 0 : c);
    const float a = w.gam[gc];
    w.dk[e] += w.rho[gc] * w.dKd[e] - a * w.Z[e];
    w.dq[e] += (P.scale * a) * dQg[e];
    if (Kg > 1) {
      t1[e] = double(w.kqg[e]) * w.Z[e] + double(w.kqg[Cp * K + e]) * dQg[e];
      t2[e] = double(w.kd[e]) * w.dKd[e];
    }
  }
  if (Kg == 1)
    for (int64_t i = tid; i < Cp; i += kThreads) {
      double s1 = 0.0, s2 = 0.0;
      for (int64_t c = 0; c < K; ++c) {
        s1 += double(w.kqg[i * K + c]) * w.Z[i * K + c] +
              double(w.kqg[(Cp + i) * K + c]) * dQg[i * K + c];
        s2 += double(w.kd[i * K + c]) * w.dKd[i * K + c];
      }
      t1[i] = s1;
      t2[i] = s2;
    }
  __syncthreads();
  // dg_t = Σ_{i>=t} T1_i + Σ_{j<t} T2_j + T3 + rect_t.
  for (int64_t c = tid; c < Kg; c += kThreads) {
    const double t3 = double(w.gam_last(c)) * dgam[c];
    double before = 0.0, after = 0.0;
    for (int64_t t = 0; t < n; ++t) {
      rect[t * Kg + c] += before + t3;
      before += t2[t * Kg + c];
    }
    for (int64_t t = Cp - 1; t >= 0; --t) {
      after += t1[t * Kg + c];
      if (t < n) P.dg[((p0 + t) * P.HV + hv) * Kg + c] = float(rect[t * Kg + c] + after);
    }
  }
  for (int64_t e = tid; e < n * K; e += kThreads) {
    const int64_t i = e / K, c = e % K, at = ((p0 + i) * P.HV + hv) * K + c;
    P.dq_part[at] = w.dq[e];
    P.dk_part[at] = w.dk[e];
  }
  __syncthreads();
}

// Grid: (N·HV); one block per (sequence, value head).
template <class T>
__global__ void __launch_bounds__(kThreads) gdr_fwd_kernel(Params P) {
  const int64_t item = blockIdx.x, s = item / P.HV, hv = item % P.HV, KV = P.K * P.V;
  int64_t begin, L;
  seq_bounds(P, s, begin, L);
  Block<T> w(P, item);
  float* S = P.fin ? P.fin + item * KV : w.S;
  for (int64_t e = threadIdx.x; e < KV; e += kThreads) S[e] = P.h0 ? P.h0[item * KV + e] : 0.f;
  __syncthreads();
  T* out = static_cast<T*>(P.out);
  const float* O = w.UO + P.Cp * P.V;
  for (int64_t t0 = 0; t0 < L; t0 += P.C) {
    const int64_t n = min(P.C, L - t0), p0 = begin + t0;
    load_chunk(P, w, hv, p0, n, /*with_M=*/true);
    run_chunk(P, w, S, /*zero_state=*/t0 == 0 && !P.h0, w.UO, nullptr, /*with_O=*/true);
    for (int64_t e = threadIdx.x; e < n * P.V; e += kThreads) {
      const int64_t i = e / P.V, c = e % P.V;
      out[((p0 + i) * P.HV + hv) * P.V + c] = store_as<T>(O[e]);
    }
    __syncthreads();
  }
}

// Grid: (N·HV). Pass 1 recomputes every chunk's entering state, U and Vm into the workspaces;
// pass 2 runs the chunks last to first carrying dS.
template <class T>
__global__ void __launch_bounds__(kThreads) gdr_bwd_kernel(Params P) {
  const int64_t item = blockIdx.x, s = item / P.HV, hv = item % P.HV, KV = P.K * P.V;
  const int64_t Cp = P.Cp, V = P.V;
  int64_t begin, L;
  seq_bounds(P, s, begin, L);
  const int64_t nc = (L + P.C - 1) / P.C, off = P.chunk_off[s];
  Block<T> w(P, item);
  float* states = P.states + ((off + s) * P.HV + hv * (nc + 1)) * KV;
  float* Us = P.Us + (off * P.HV + hv * nc) * Cp * V;
  float* Vms = P.Vms + (off * P.HV + hv * nc) * Cp * V;
  for (int64_t e = threadIdx.x; e < KV; e += kThreads) states[e] = P.h0 ? P.h0[item * KV + e] : 0.f;
  __syncthreads();
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t t0 = c * P.C;
    load_chunk(P, w, hv, begin + t0, min(P.C, L - t0), /*with_M=*/false);
    float* next = states + (c + 1) * KV;
    for (int64_t e = threadIdx.x; e < KV; e += kThreads) next[e] = next[e - KV];
    __syncthreads();
    run_chunk(P, w, next, /*zero_state=*/c == 0 && !P.h0, Us + c * Cp * V, Vms + c * Cp * V,
              /*with_O=*/false);
  }
  float* dS = w.dS;
  float* dS0 = w.dS0;
  for (int64_t e = threadIdx.x; e < KV; e += kThreads) dS[e] = P.dfin ? P.dfin[item * KV + e] : 0.f;
  __syncthreads();
  for (int64_t c = nc - 1; c >= 0; --c) {
    const int64_t t0 = c * P.C;
    load_chunk(P, w, hv, begin + t0, min(P.C, L - t0), /*with_M=*/true);
    chunk_bwd(P, w, hv, begin + t0, min(P.C, L - t0), states + c * KV, Us + c * Cp * V,
              Vms + c * Cp * V, dS, dS0);
    float* tmp = dS;
    dS = dS0;
    dS0 = tmp;
  }
  if (P.dh0)
    for (int64_t e = threadIdx.x; e < KV; e += kThreads) P.dh0[item * KV + e] = dS[e];
}

// dq, dk from the value heads' parts: a warp per (position, q/k head, which), summing the HV / H
// parts in order, then the l2norm's backward d = rstd (d̂ − x̂ (x̂ · d̂)) with x̂ = x rstd.
template <class T>
__global__ void __launch_bounds__(kThreads) gdr_dqk_kernel(Params P, int64_t rows) {
  const int64_t wid = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (wid >= 2 * rows) return;  // whole warps leave together
  const bool is_k = wid >= rows;
  const int64_t row = wid % rows, p = row / P.H, h = row % P.H, K = P.K;
  const float* part = (is_k ? P.dk_part : P.dq_part) + (p * P.HV + h * P.R) * K;
  const T* x = static_cast<const T*>(is_k ? P.k : P.q) + row * K;
  T* d = static_cast<T*>(is_k ? P.dk : P.dq) + row * K;
  const auto grad = [&](int64_t c) {
    float s = part[c];
    for (int64_t r = 1; r < P.R; ++r) s += part[r * K + c];
    return s;
  };
  if (!P.l2norm) {
    for (int64_t c = lane; c < K; c += 32) d[c] = store_as<T>(grad(c));
    return;
  }
  // As the CPU's l2norm_bwd (src/cpu/gated_delta_rule.cpp): rstd (r + e / (s + e) · a x) with
  // r = d̂ − a x projected twice against x, a = (x · d̂) / s, s = Σ x², e = kL2NormEps — the
  // direct d̂ − x̂ (x̂ · d̂) cancels when d̂ is near x's direction (K = 1: all of it). In double,
  // as the CPU: r's rounding in f32 (an ulp of d̂, which the second projection does not remove)
  // is as large as the naive f32 reference's whole error, half the 2x rule's allowance at small K.
  double ss = 0, sd = 0;
  for (int64_t c = lane; c < K; c += 32) {
    const double xc = load_f32(x[c]);
    ss += xc * xc;
    sd += xc * grad(c);
  }
  const double s = warp_sum(ss), e = kL2NormEps, rstd = 1 / sqrt(s + e);
  const double a = s > 0 ? warp_sum(sd) / s : 0;  // s = 0: x̂ = 0, d = rstd d̂
  double sr = 0;
  for (int64_t c = lane; c < K; c += 32) {
    const double xc = load_f32(x[c]);
    sr += xc * (grad(c) - a * xc);
  }
  const double b = s > 0 ? warp_sum(sr) / s : 0;
  const double par = e / (s + e) * (a + b);
  for (int64_t c = lane; c < K; c += 32) {
    const double xc = load_f32(x[c]);
    d[c] = store_as<T>(float(rstd * ((grad(c) - a * xc) - b * xc + par * xc)));
  }
}

// One decode step: a block per (batch row, value head), a thread per value column.
template <class T>
__global__ void __launch_bounds__(kThreads) gdr_update_kernel(Params P, float* state) {
  extern __shared__ float sm[];  // q̂ scale, k̂, exp(g): (3K); q's and k's rstd: (2)
  const int64_t item = blockIdx.x, b = item / P.HV, hv = item % P.HV, h = hv / P.R;
  const int64_t K = P.K, V = P.V, Kg = P.Kg;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  float* qs = sm;
  float* ks = sm + K;
  float* a = sm + 2 * K;
  float* rstd = sm + 3 * K;  // in the dynamic block, so the host's size check counts it
  const T* qr = static_cast<const T*>(P.q) + (b * P.H + h) * K;
  const T* kr = static_cast<const T*>(P.k) + (b * P.H + h) * K;
  if (warp < 2) {
    const T* x = warp == 0 ? qr : kr;
    float ss = 0.f;
    for (int64_t c = lane; c < K; c += 32) ss += load_f32(x[c]) * load_f32(x[c]);
    ss = warp_sum(ss);
    if (lane == 0) rstd[warp] = P.l2norm ? 1.f / sqrtf(ss + float(kL2NormEps)) : 1.f;
  }
  __syncthreads();
  const float* g = P.g + item * Kg;
  for (int64_t c = tid; c < K; c += kThreads) {
    qs[c] = load_f32(qr[c]) * (P.scale * rstd[0]);
    ks[c] = load_f32(kr[c]) * rstd[1];
    a[c] = expf(g[Kg == 1 ? 0 : c]);
  }
  __syncthreads();
  const float beta = load_f32(static_cast<const T*>(P.beta)[item]);
  const T* v = static_cast<const T*>(P.v) + item * V;
  T* out = static_cast<T*>(P.out) + item * V;
  float* S = state + item * K * V;
  for (int64_t c = tid; c < V; c += kThreads) {
    float kS = 0.f;
    for (int64_t j = 0; j < K; ++j) {
      const float x = S[j * V + c] * a[j];
      S[j * V + c] = x;
      kS += ks[j] * x;
    }
    const float u = beta * (load_f32(v[c]) - kS);
    float o = 0.f;
    for (int64_t j = 0; j < K; ++j) {
      const float x = S[j * V + c] + ks[j] * u;
      S[j * V + c] = x;
      o += qs[j] * x;
    }
    out[c] = store_as<T>(o);
  }
}

Params params_of(const GatedDeltaRuleArgs& a) {
  Params P{};
  P.T = a.seqs.T;
  P.H = a.H;
  P.HV = a.HV;
  P.K = a.K;
  P.V = a.V;
  P.Kg = a.gate_dim();
  P.R = a.HV / a.H;
  P.C = a.chunk_size;
  P.Cp = round_up(a.chunk_size, kTC);
  P.Kp = round_up(a.K, kTC);
  P.scale = float(a.scale);
  P.l2norm = a.l2norm;
  P.cu_seqlens = a.seqs.cu_seqlens;
  P.q = a.q;
  P.k = a.k;
  P.v = a.v;
  P.beta = a.beta;
  P.g = static_cast<const float*>(a.g);
  P.h0 = static_cast<const float*>(a.initial_state);
  return P;
}

// `floats` f32 values of workspace on the context's device, ordered on its stream.
Tensor workspace(const Context& ctx, int64_t floats) {
  return Tensor::empty({std::max<int64_t>(floats, 1)}, DType::f32, ctx.device(), &ctx);
}

}  // namespace

void gated_delta_rule_fwd(const Context& ctx, const GatedDeltaRuleArgs& args) {
  const int64_t items = args.seqs.count * args.HV;
  if (items == 0) return;
  Params P = params_of(args);
  P.lay = layout_of(P.Cp, P.K, P.V, P.Kg, P.Kp, /*bwd=*/false);
  const Tensor scratch = workspace(ctx, items * P.lay.floats);
  P.scratch = scratch.data_as<float>();
  P.out = args.out;
  P.fin = static_cast<float*>(args.final_state);
  cudaStream_t stream = state_of(ctx).stream;
  dispatch_cuda_float("gated_delta_rule_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gdr_fwd_kernel<T><<<unsigned(items), kThreads, 0, stream>>>(P);
  });
  LONGCTX_CHECK_LAUNCH();
}

void gated_delta_rule_bwd(const Context& ctx, const GatedDeltaRuleArgs& args) {
  const Sequences& seqs = args.seqs;
  const int64_t N = seqs.count, items = N * args.HV;
  if (items == 0) return;
  Params P = params_of(args);
  P.lay = layout_of(P.Cp, P.K, P.V, P.Kg, P.Kp, /*bwd=*/true);
  // The chunks before each sequence: where its states, U and Vm go in the workspaces.
  Tensor off_host = Tensor::empty({N + 1}, DType::i64);
  int64_t* off = off_host.data_as<int64_t>();
  off[0] = 0;
  for (int64_t s = 0; s < N; ++s) off[s + 1] = off[s] + (seqs.length(s) + P.C - 1) / P.C;
  const Tensor off_dev = off_host.to(ctx.device(), &ctx);
  const int64_t chunks = off[N], positions = args.B * args.T, KV = P.K * P.V;
  const Tensor scratch = workspace(ctx, items * P.lay.floats);
  const Tensor states = workspace(ctx, (chunks + N) * P.HV * KV);
  const Tensor us = workspace(ctx, 2 * chunks * P.HV * P.Cp * P.V);
  const Tensor parts = workspace(ctx, 2 * positions * P.HV * P.K);
  P.chunk_off = off_dev.data_as<int64_t>();
  P.scratch = scratch.data_as<float>();
  P.states = states.data_as<float>();
  P.Us = us.data_as<float>();
  P.Vms = P.Us + chunks * P.HV * P.Cp * P.V;
  P.dq_part = parts.data_as<float>();
  P.dk_part = P.dq_part + positions * P.HV * P.K;
  P.dout = args.dout;
  P.dfin = static_cast<const float*>(args.dfinal_state);
  P.dq = args.dq;
  P.dk = args.dk;
  P.dv = args.dv;
  P.dbeta = args.dbeta;
  P.dg = static_cast<float*>(args.dg);
  P.dh0 = static_cast<float*>(args.dinitial_state);
  cudaStream_t stream = state_of(ctx).stream;
  const int64_t rows = positions * P.H;
  dispatch_cuda_float("gated_delta_rule_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gdr_bwd_kernel<T><<<unsigned(items), kThreads, 0, stream>>>(P);
    LONGCTX_CHECK_LAUNCH();
    if (rows == 0) return;
    const int64_t blocks = (2 * rows * 32 + kThreads - 1) / kThreads;
    gdr_dqk_kernel<T><<<unsigned(blocks), kThreads, 0, stream>>>(P, rows);
    LONGCTX_CHECK_LAUNCH();
  });
}

void gated_delta_rule_update(const Context& ctx, const GatedDeltaRuleArgs& args) {
  const int64_t items = args.B * args.HV;
  if (items == 0) return;
  Params P = params_of(args);
  P.out = args.out;
  const size_t smem = size_t(3 * args.K + 2) * sizeof(float);
  int max_smem = 0;
  LONGCTX_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            state_of(ctx).device));
  LONGCTX_CHECK(smem <= size_t(max_smem), "gated_delta_rule_update: key head dim K = ", args.K,
                " needs ", smem, " bytes of shared memory per block on CUDA, the device allows ",
                max_smem);
  cudaStream_t stream = state_of(ctx).stream;
  dispatch_cuda_float("gated_delta_rule_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (smem > 48 * 1024)
      LONGCTX_CUDA_CHECK(cudaFuncSetAttribute(
          gdr_update_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    gdr_update_kernel<T>
        <<<unsigned(items), kThreads, smem, stream>>>(P, static_cast<float*>(args.state));
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
