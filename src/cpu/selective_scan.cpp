// selective_scan on the CPU (Mamba-1's S6 scan, see include/longctx/ops/selective_scan.h).
//
// Work items: in the forward a block of up to kChannelBlock channels of one (sequence, group),
// which share each transposed tile of B and C; in the backward one of `parts` slices of a group's
// channels for one sequence. Each channel is scanned over T in tiles of kTile steps. B and C of
// the channel's group are stored (N, T); each tile is transposed to (kTile, N) so that the update
// of the N states of one step is a contiguous vector loop. The recurrence per state entry is the
// ScanPair step h = exp(delta * A) * h + delta * B * u. A tile's decays exp(delta * A) are
// computed together first (exp_array: vectorized f32 exp), the scan then reads them.
//
// Backward recomputes the forward: a first pass over T keeps the state at every tile boundary
// (O(T * N / kTile) per thread), then the tiles are visited last to first, the tile's states are
// recomputed from its checkpoint (kTile * N), and the reverse scan g_t = a_{t+1} * g_{t+1} +
// dy_t * C_t runs through the tile. dB and dC sum over the channels of a group: the channels are
// split into `parts`, each part accumulates into its own (B, G, N, T) slice and the slices are
// added in a fixed order (deterministic for a given thread count); dA, dD, ddelta_bias sum over
// the sequences through a (sequences, ...) scratch reduced in order.
#include <algorithm>
#include <cmath>
#include <vector>

// No fused multiply-adds: the states are rounded after every multiply and add, as in the plain
// reference, so the tests' 2x rule compares like with like (with contraction the f64 gradient
// error was 3.4x the plain loop's on one case).
#pragma GCC optimize("fp-contract=off")

#include "longctx/ops/scan_operator.h"
#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/lane_sum.h"
#include "src/cpu/parallel.h"
#include "src/ops/selective_scan.h"

namespace longctx::cpu {

namespace {

constexpr int64_t kTile = 64;
constexpr int64_t kChannelBlock = 16;  // forward: channels that share one transposed B/C tile

// The params' inputs as typed pointers (optional ones nullptr), and the index helpers.
template <class T>
struct Ptrs {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias, *h0;
  int64_t batch, Dm, N, G, L;  // L: the T dimension of the tensors (the row stride)
  bool softplus;
  Sequences seqs;

  explicit Ptrs(const SelectiveScanArgs& a)
      : u(static_cast<const T*>(a.u)),
        delta(static_cast<const T*>(a.delta)),
        A(static_cast<const T*>(a.A)),
        B(static_cast<const T*>(a.B)),
        C(static_cast<const T*>(a.C)),
        D(static_cast<const T*>(a.D)),
        z(static_cast<const T*>(a.z)),
        bias(static_cast<const T*>(a.delta_bias)),
        h0(static_cast<const T*>(a.h0)),
        batch(a.batch),
        Dm(a.Dm),
        N(a.N),
        G(a.G),
        L(a.T),
        softplus(a.delta_softplus),
        seqs(a.seqs) {}

  // Where sequence s starts in channel d of a (batch, Dm, T) tensor: batch row s of a
  // rectangular batch; [begin(s), ...) of row d of a packed (1, Dm, T) one.
  int64_t row_start(int64_t s, int64_t d) const {
    return seqs.packed() ? d * L + seqs.begin(s) : (s * Dm + d) * L;
  }
  // Likewise for the (N, T) rows of group g in a (batch, G, N, T) tensor (B, C and their
  // gradients): the row of state n is n * L further on.
  int64_t group_start(int64_t s, int64_t g) const {
    return seqs.packed() ? g * N * L + seqs.begin(s) : (s * G + g) * N * L;
  }

  // delta' of the steps [t0, t0 + k) of the row starting at `start` (row_start) of channel d:
  // delta + bias, through softplus when asked (vectorized, see exp_array.h).
  void tile_deltas(T* dl, int64_t start, int64_t d, int64_t t0, int64_t k) const {
    for (int64_t j = 0; j < k; ++j) dl[j] = delta[start + t0 + j] + (bias ? bias[d] : T(0));
    if (softplus) softplus_array(dl, dl, k);
  }
};

// Copies the tile [t0, t0 + k) of an (N, L) matrix into (k, N).
template <class T>
void transpose_tile(T* dst, const T* src, int64_t N, int64_t L, int64_t t0, int64_t k) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) dst[j * N + n] = src[n * L + t0 + j];
}

// The decays of a tile's k steps, (k, N): at[j * N + n] = exp(dl[j] * A[n]).
template <class T>
void tile_decays(T* at, const T* dl, const T* A, int64_t N, int64_t k) {
  for (int64_t j = 0; j < k; ++j)
    for (int64_t n = 0; n < N; ++n) at[j * N + n] = dl[j] * A[n];
  exp_array(at, at, k * N);
}

// Advances the N states h through the tile's k steps, whose decays are `at` (k, N). If hs is
// given, stores the state after each step (k, N); if y is given, stores y_t = sum_n C_t[n] h_t[n].
template <class T>
void scan_tile(T* h, T* hs, T* y, const T* at, const T* Bt, const T* Ct, const T* dl, const T* u,
               int64_t N, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    const T du = dl[j] * u[j];
    const T* aj = at + j * N;
    const T* Bj = Bt + j * N;
    const T* Cj = Ct + j * N;
    for (int64_t n = 0; n < N; ++n) h[n] = scan_apply(ScanPair<T>{aj[n], du * Bj[n]}, h[n]);
    if (hs) std::copy(h, h + N, hs + j * N);
    if (y) y[j] = lane_dot(Cj, h, N);
  }
}

// One step t of the reverse scan over the N states: g_t = a_{t+1} g_{t+1} + dy_t C_t (gst holds
// g_{t+1} and becomes g_t, gate holds a_{t+1} and becomes a_t), dA += g h_{t-1} a dt, the
// step's dB and dC rows, and the terms of ddelta to sum. Separate, with restrict pointers, so
// that the compiler vectorizes it (inline in the tile loop it could not rule out aliasing).
template <class T>
void reverse_step(T* __restrict gst, T* __restrict gate, T* __restrict dA, T* __restrict ddt_terms,
                  T* __restrict dB, T* __restrict dC, const T* __restrict a, const T* __restrict A,
                  const T* __restrict B, const T* __restrict C, const T* __restrict hprev,
                  const T* __restrict hcur, T dt, T ut, T dy, int64_t N) {
  for (int64_t n = 0; n < N; ++n) {
    const T g = scan_apply(ScanPair<T>{gate[n], dy * C[n]}, gst[n]);
    const T da = g * hprev[n];  // d loss / d a_t[n]
    ddt_terms[n] = da * a[n] * A[n] + g * B[n] * ut;
    dA[n] += da * a[n] * dt;
    dB[n] = g * dt * ut;
    dC[n] = dy * hcur[n];
    gst[n] = g;
    gate[n] = a[n];
  }
}

}  // namespace

void selective_scan_fwd(const Context& ctx, const SelectiveScanArgs& args) {
  dispatch_cpu_float("selective_scan_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> p(args);
    const int64_t N = p.N, L = p.L;
    T* op = static_cast<T*>(args.out);
    T* lp = static_cast<T*>(args.last_state);
    // Work item: a block of up to kChannelBlock channels of one (sequence, group), so that each
    // tile of B and C is transposed once for the block rather than once per channel.
    const int64_t per_group = p.Dm / p.G;
    const int64_t blocks = (per_group + kChannelBlock - 1) / kChannelBlock;
    parallel_for(ctx, p.seqs.count * p.G * blocks, [&](int64_t item) {
      const int64_t b = item / (p.G * blocks), g = item / blocks % p.G, block = item % blocks;
      const int64_t len = p.seqs.length(b);
      const int64_t d_begin = g * per_group + block * kChannelBlock;
      const int64_t d_end = std::min(d_begin + kChannelBlock, (g + 1) * per_group);
      std::vector<T> scratch(size_t(3 * kTile * N + 2 * kTile));
      T* Bt = scratch.data();
      T* Ct = Bt + kTile * N;
      T* at = Ct + kTile * N;
      T* dl = at + kTile * N;
      T* y = dl + kTile;
      const T* Bg = p.B + p.group_start(b, g);
      const T* Cg = p.C + p.group_start(b, g);
      for (int64_t d = d_begin; d < d_end; ++d) {  // the running states live in last_state
        const int64_t row = b * p.Dm + d;
        for (int64_t n = 0; n < N; ++n) lp[row * N + n] = p.h0 ? p.h0[row * N + n] : T(0);
      }
      for (int64_t t0 = 0; t0 < len; t0 += kTile) {
        const int64_t k = std::min(kTile, len - t0);
        transpose_tile(Bt, Bg, N, L, t0, k);
        transpose_tile(Ct, Cg, N, L, t0, k);
        for (int64_t d = d_begin; d < d_end; ++d) {
          const int64_t row = b * p.Dm + d, start = p.row_start(b, d);
          p.tile_deltas(dl, start, d, t0, k);
          const T* u = p.u + start + t0;
          tile_decays(at, dl, p.A + d * N, N, k);
          scan_tile(lp + row * N, static_cast<T*>(nullptr), y, at, Bt, Ct, dl, u, N, k);
          T* o = op + start + t0;
          for (int64_t j = 0; j < k; ++j) {
            T v = y[j] + (p.D ? p.D[d] * u[j] : T(0));
            if (p.z) {
              const T zv = p.z[start + t0 + j];
              v *= zv * sigmoid(zv);
            }
            o[j] = v;
          }
        }
      }
    });
  });
}

void selective_scan_bwd(const Context& ctx, const SelectiveScanArgs& args) {
  dispatch_cpu_float("selective_scan_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Ptrs<T> p(args);
    const int64_t N = p.N, L = p.L, Dm = p.Dm, G = p.G, seqs = p.seqs.count;
    const int64_t per_group = Dm / G;
    // Channel parts per group: enough items for the threads even for one sequence. The split
    // depends on neither the sequence count nor their lengths, so a sequence's dB and dC are
    // summed over its channels the same way alone, in a batch or packed (batch invariance).
    const int64_t parts =
        std::clamp<int64_t>(ctx.cpu_threads() / G, 1, std::max<int64_t>(1, per_group));
    const int64_t bc_size = p.batch * G * N * L;
    std::vector<T> dbc_extra(size_t(parts > 1 ? 2 * (parts - 1) * bc_size : 0));
    T* dBp0 = static_cast<T*>(args.dB);
    T* dCp0 = static_cast<T*>(args.dC);
    std::fill(dBp0, dBp0 + bc_size, T(0));
    std::fill(dCp0, dCp0 + bc_size, T(0));
    auto dB_slice = [&](int64_t part) {
      return part == 0 ? dBp0 : dbc_extra.data() + (2 * (part - 1)) * bc_size;
    };
    auto dC_slice = [&](int64_t part) {
      return part == 0 ? dCp0 : dbc_extra.data() + (2 * (part - 1) + 1) * bc_size;
    };
    // Per-sequence partial sums of the parameter gradients: (seqs, Dm, N), (seqs, Dm), (seqs, Dm).
    std::vector<T> dA_b(size_t(seqs * Dm * N)), dD_b(size_t(seqs * Dm)), dbias_b(size_t(seqs * Dm));
    const T* dyp = static_cast<const T*>(args.dout);
    const T* dlp = static_cast<const T*>(args.dlast_state);
    T* dup = static_cast<T*>(args.du);
    T* ddp = static_cast<T*>(args.ddelta);
    T* dzp = static_cast<T*>(args.dz);
    T* dh0p = static_cast<T*>(args.dh0);

    parallel_for(ctx, seqs * G * parts, [&](int64_t item) {
      const int64_t part = item % parts, bg = item / parts;
      const int64_t b = bg / G, g = bg % G;
      const int64_t len = p.seqs.length(b), ntiles = (len + kTile - 1) / kTile;
      const int64_t d_begin = g * per_group + part * per_group / parts;
      const int64_t d_end = g * per_group + (part + 1) * per_group / parts;
      std::vector<T> ck(size_t(ntiles * N));  // the state before each tile
      std::vector<T> scratch(size_t(6 * kTile * N + 5 * N + 3 * kTile));
      T* Bt = scratch.data();
      T* Ct = Bt + kTile * N;
      T* at = Ct + kTile * N;    // the tile's decays, (k, N)
      T* hs = at + kTile * N;    // states after each step of the tile
      T* dBt = hs + kTile * N;   // this tile's dB, (k, N)
      T* dCt = dBt + kTile * N;  // this tile's dC, (k, N)
      T* h = dCt + kTile * N;
      T* gst = h + N;     // g_{t+1}
      T* gate = gst + N;  // a_{t+1}
      T* dA = gate + N;
      T* ddt_terms = dA + N;
      T* dl = ddt_terms + N;
      T* y = dl + kTile;
      T* dyv = y + kTile;
      T* dB = dB_slice(part) + p.group_start(b, g);
      T* dC = dC_slice(part) + p.group_start(b, g);
      for (int64_t d = d_begin; d < d_end; ++d) {
        const int64_t row = b * Dm + d, start = p.row_start(b, d);
        const T* Bg = p.B + p.group_start(b, g);
        const T* Cg = p.C + p.group_start(b, g);
        const T* A = p.A + d * N;
        const T* u = p.u + start;
        // Pass 1: checkpoints.
        for (int64_t n = 0; n < N; ++n) h[n] = p.h0 ? p.h0[row * N + n] : T(0);
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          const int64_t t0 = tile * kTile, k = std::min(kTile, len - t0);
          std::copy(h, h + N, ck.data() + tile * N);
          if (tile + 1 == ntiles) break;  // the last tile's end state is not needed
          transpose_tile(Bt, Bg, N, L, t0, k);
          p.tile_deltas(dl, start, d, t0, k);
          tile_decays(at, dl, A, N, k);
          scan_tile(h, static_cast<T*>(nullptr), static_cast<T*>(nullptr), at, Bt, Ct, dl, u + t0,
                    N, k);
        }
        // Pass 2: tiles last to first.
        for (int64_t n = 0; n < N; ++n) {
          gst[n] = dlp ? dlp[row * N + n] : T(0);
          gate[n] = T(1);
          dA[n] = T(0);
        }
        T dD = 0, dbias = 0;
        for (int64_t tile = ntiles - 1; tile >= 0; --tile) {
          const int64_t t0 = tile * kTile, k = std::min(kTile, len - t0);
          transpose_tile(Bt, Bg, N, L, t0, k);
          transpose_tile(Ct, Cg, N, L, t0, k);
          p.tile_deltas(dl, start, d, t0, k);
          std::copy(ck.data() + tile * N, ck.data() + (tile + 1) * N, h);
          tile_decays(at, dl, A, N, k);
          scan_tile(h, hs, y, at, Bt, Ct, dl, u + t0, N, k);
          // dy from dout through the gate and the skip term.
          for (int64_t j = 0; j < k; ++j) {
            const int64_t t = t0 + j;
            T dy = dyp[start + t];
            if (p.z) {
              const T zv = p.z[start + t], sg = sigmoid(zv);
              const T yv = y[j] + (p.D ? p.D[d] * u[t] : T(0));
              dzp[start + t] = dy * yv * sg * (T(1) + zv * (T(1) - sg));
              dy *= zv * sg;
            }
            dyv[j] = dy;
          }
          for (int64_t j = k - 1; j >= 0; --j) {
            const int64_t t = t0 + j;
            const T dt = dl[j], ut = u[t], dy = dyv[j];
            const T* hprev = j > 0 ? hs + (j - 1) * N : ck.data() + tile * N;
            const T* hcur = hs + j * N;
            const T* Bj = Bt + j * N;
            const T* Cj = Ct + j * N;
            reverse_step(gst, gate, dA, ddt_terms, dBt + j * N, dCt + j * N, at + j * N, A, Bj, Cj,
                         hprev, hcur, dt, ut, dy, N);
            T ddt = lane_sum<T>(N, [&](int64_t n) { return ddt_terms[n]; });
            const T du = lane_dot(gst, Bj, N);
            dup[start + t] = du * dt + (p.D ? dy * p.D[d] : T(0));
            dD += dy * ut;
            if (p.softplus) ddt *= sigmoid(p.delta[start + t] + (p.bias ? p.bias[d] : T(0)));
            ddp[start + t] = ddt;
            dbias += ddt;
          }
          for (int64_t n = 0; n < N; ++n)
            for (int64_t j = 0; j < k; ++j) {
              dB[n * L + t0 + j] += dBt[j * N + n];
              dC[n * L + t0 + j] += dCt[j * N + n];
            }
        }
        if (dh0p)
          for (int64_t n = 0; n < N; ++n) dh0p[row * N + n] = gate[n] * gst[n];
        std::copy(dA, dA + N, dA_b.data() + row * N);
        dD_b[size_t(row)] = dD;
        dbias_b[size_t(row)] = dbias;
      }
    });

    // Fixed-order reductions: dB/dC over channel parts, parameters over the batch.
    for (int64_t part = 1; part < parts; ++part) {
      const T* sb = dB_slice(part);
      const T* sc = dC_slice(part);
      for (int64_t i = 0; i < bc_size; ++i) {
        dBp0[i] += sb[i];
        dCp0[i] += sc[i];
      }
    }
    T* dAp = static_cast<T*>(args.dA);
    T* dDp = static_cast<T*>(args.dD);
    T* dbp = static_cast<T*>(args.ddelta_bias);
    for (int64_t d = 0; d < Dm; ++d) {
      for (int64_t n = 0; n < N; ++n) {
        T s = 0;
        for (int64_t b = 0; b < seqs; ++b) s += dA_b[size_t((b * Dm + d) * N + n)];
        dAp[d * N + n] = s;
      }
      T sD = 0, sb = 0;
      for (int64_t b = 0; b < seqs; ++b) {
        sD += dD_b[size_t(b * Dm + d)];
        sb += dbias_b[size_t(b * Dm + d)];
      }
      if (dDp) dDp[d] = sD;
      if (dbp) dbp[d] = sb;
    }
  });
}

void selective_state_update(const Context& ctx, const SelectiveScanArgs& args) {
  dispatch_cpu_float("selective_state_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Dm = args.Dm, N = args.N, G = args.G;
    const Ptrs<T> p(args);
    const T *up = p.u, *dp = p.delta, *Ap = p.A, *Bp = p.B, *Cp = p.C, *Dp = p.D, *zp = p.z;
    const T* bp = p.bias;
    T* op = static_cast<T*>(args.out);
    T* sp = static_cast<T*>(args.state);
    parallel_for(ctx, args.batch * Dm, [&](int64_t row) {
      const int64_t b = row / Dm, d = row % Dm;
      const T* Bg = Bp + (b * G + d / (Dm / G)) * N;
      const T* Cg = Cp + (b * G + d / (Dm / G)) * N;
      T dt = dp[row] + (bp ? bp[d] : T(0));
      if (p.softplus) softplus_array(&dt, &dt, 1);  // as the scan computes it
      T y = 0;
      T* h = sp + row * N;
      // The decays as the scan computes them, kTile states at a time (no allocation per row).
      T a[kTile];
      for (int64_t n0 = 0; n0 < N; n0 += kTile) {
        const int64_t m = std::min(kTile, N - n0);
        tile_decays(a, &dt, Ap + d * N + n0, m, 1);
        for (int64_t n = n0; n < n0 + m; ++n) {
          h[n] = scan_apply(ScanPair<T>{a[n - n0], dt * up[row] * Bg[n]}, h[n]);
          y += Cg[n] * h[n];
        }
      }
      if (Dp) y += Dp[d] * up[row];
      if (zp) y *= zp[row] * sigmoid(zp[row]);
      op[row] = y;
    });
  });
}

}  // namespace longctx::cpu
