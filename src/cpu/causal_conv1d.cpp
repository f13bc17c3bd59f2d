// causal_conv1d on the CPU: one (batch, channel) row per work item in the forward; one channel
// per work item in the backward, looping over the batch inside so that dweight and dbias are
// reduced in a fixed order (channel-last: a block of steps per item, partial sums added in item
// order; deterministic for any thread count either way). The width is a template argument
// (W <= 4) so the inner loop over taps unrolls and the loop over time vectorises.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "src/core/activations.h"
#include "src/core/dispatch.h"
#include "src/cpu/aligned_vector.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/parallel.h"
#include "src/ops/causal_conv1d.h"

namespace longctx::cpu {

namespace {

template <class T>
inline T activate(T s, bool silu) {
  return silu ? longctx::silu(s) : s;
}

// Where row d of sequence s starts in (B, D, T): a rectangular batch's sequence s is batch row
// s; a packed batch's (1, D, T) holds sequence s at [begin(s), begin(s) + length(s)) of each row.
int64_t row_start(const CausalConv1dArgs& args, int64_t s, int64_t d) {
  return args.seqs.packed() ? d * args.T + args.seqs.begin(s) : (s * args.D + d) * args.T;
}

// Pre-activation of one row: pre[t] = bias + sum_w w[w] * x[t - (W-1) + w], x = 0 before t = 0.
template <int W, class T>
void conv_row(T* pre, const T* x, const T* w, T bias, int64_t L) {
  for (int64_t t = 0; t < std::min<int64_t>(W - 1, L); ++t) {
    T s = bias;
    for (int k = 0; k < W; ++k)
      if (t - (W - 1) + k >= 0) s += w[k] * x[t - (W - 1) + k];
    pre[t] = s;
  }
  for (int64_t t = W - 1; t < L; ++t) {
    T s = bias;
    for (int k = 0; k < W; ++k) s += w[k] * x[t - (W - 1) + k];
    pre[t] = s;
  }
}

// Where step t of sequence s starts in a channel-last (B, T, D) view: batch row s of a rectangular
// batch; step begin(s) + t of a packed (1, T, D) one.
int64_t step_at(const CausalConv1dArgs& args, const ConvStrides& at, int64_t s, int64_t t) {
  return args.seqs.packed() ? (args.seqs.begin(s) + t) * at.t : s * at.b + t * at.t;
}

// Channel-last: the weights as (W, D), so that each tap's weights are unit-stride like the rows.
// They and the backward's partials are LineVector (aligned_vector.h: 64-byte aligned). Measured
// (B = 1, T = 4096, D = 1792, W = 4, silu, f32, best of 9, process CPU time, alternating with the
// library before, Zen 4, load 2.7-3.0: bench/results/2026-12-06-cpu-scan-alignment): backward
// -6.8% (1 thread, 20.9 -> 18.3 ms, 16 of 16 rounds), -5.1% (1 thread, 7 of 8), -1.4% (2 threads,
// 8 of 10); forward -1.7% to +1.7% (noise). The same bits.
template <class T>
LineVector<T> taps_by_row(const T* weight, int64_t D, int W) {
  LineVector<T> wt(size_t(W * D));
  for (int64_t d = 0; d < D; ++d)
    for (int k = 0; k < W; ++k) wt[size_t(k * D + d)] = weight[d * W + k];
  return wt;
}

// Channel-last pre-activation of channels [c0, c0 + n) at step t of sequence s (L steps): the
// same sums, in the same order, as conv_row's. Once every tap is inside the sequence, one pass
// over the channels with the taps unrolled in registers: the per-tap passes over pre (a load and
// a store each, and alias checks against x and the weights) cost the channel-last backward
// about twice the channel-first one's time (see bwd_channel_last).
template <int W, class T>
inline void conv_step(T* __restrict pre, const CausalConv1dArgs& args, const T* x, const T* wt,
                      const T* bias, int64_t s, int64_t t, int64_t c0, int64_t n) {
  const T* bs = bias ? bias + c0 : nullptr;
  if (t >= W - 1) {
    const T* xr[W];
    const T* wk[W];
    for (int k = 0; k < W; ++k) {
      xr[k] = x + step_at(args, args.x_at, s, t - (W - 1) + k) + c0;
      wk[k] = wt + k * args.D + c0;
    }
    for (int64_t c = 0; c < n; ++c) {
      T v = bs ? bs[c] : T(0);
      for (int k = 0; k < W; ++k) v += wk[k][c] * xr[k][c];
      pre[c] = v;
    }
    return;
  }
  for (int64_t c = 0; c < n; ++c) pre[c] = bs ? bs[c] : T(0);
  for (int k = 0; k < W; ++k) {
    const int64_t tt = t - (W - 1) + k;
    if (tt < 0) continue;
    const T* xr = x + step_at(args, args.x_at, s, tt) + c0;
    const T* wk = wt + k * args.D + c0;
    for (int64_t c = 0; c < n; ++c) pre[c] += wk[c] * xr[c];
  }
}

template <class F>
void dispatch_width(int64_t W, F&& f) {
  switch (W) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    default:
      return f(std::integral_constant<int, 4>{});
  }
}

// Channel-last forward: one item per (sequence, block of kSteps steps), each step a row of D
// channels that the loops over channels vectorise. The models' mixers read their conv inputs
// this way straight out of their projections, where they transposed them into (B, D, T) and the
// output back before (see src/model/mamba2_mixer.cpp and deltanet_mixer.cpp for the measurements).
void fwd_channel_last(const Context& ctx, const CausalConv1dArgs& args) {
  constexpr int64_t kSteps = 64;
  dispatch_cpu_float("causal_conv1d_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D, blocks = (args.T + kSteps - 1) / kSteps;
    const T* xp = static_cast<const T*>(args.x);
    const T* bp = static_cast<const T*>(args.bias);
    T* op = static_cast<T*>(args.out);
    const LineVector<T> wt = taps_by_row(static_cast<const T*>(args.weight), D, args.W);
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      parallel_for(ctx, args.seqs.count * blocks, [&](int64_t item) {
        const int64_t s = item / blocks, L = args.seqs.length(s);
        for (int64_t t = (item % blocks) * kSteps; t < std::min(L, (item % blocks + 1) * kSteps);
             ++t) {
          T* o = op + step_at(args, args.out_at, s, t);
          conv_step<W>(o, args, xp, wt.data(), bp, s, t, 0, D);
          // silu_array (f32 exp, 8 lanes), as the channel-first forward: 5.0-6.0 -> 1.2-1.3 ms
          // CPU per call in conv-bwd-blocked.txt's runs (channel-first 1.0-1.3).
          if (args.silu) silu_array(o, D);
        }
      });
    });
  });
}

// Channel-last backward: one item per (sequence, block of kItemSteps steps), all channels,
// kChannels at a time; each item writes its dweight and dbias partial sums to its own slot, and the
// slots are added in item order afterwards, so the result does not depend on the thread count.
// Inside, the steps go kSteps at a time: g = dout * act'(pre) of those steps and the W - 1 after
// them (zeros past the sequence's end, for the same reason as in the channel-first backward) stays
// in L1, each row's pre-activation is computed once, and the W - 1 rows the next block also needs
// carry over. silu' by silu_grad_mul (f32 exp, 8 lanes), as in the channel-first backward, not a
// libm expf per element. Items over time rather than over channels
// because reading strided rows is what cost: with the above in place but one 64-channel item
// walking all 4096 rows (R floats apart), the backward was still 8.5-12 ms against channel-first's
// 5.5-7.4. Mamba-2 preset's xBC (K = 384, W = 4, silu, 4096 tokens as B x T, 2 threads, load
// ~3.7, bench/results/2026-12-05-cpu-mamba2-layout/conv-bwd-blocked.txt, 2 rounds alternating):
// 12.7-17.8 ms CPU per call before, 2.9-4.4 now, channel-first 4.9-7.1 in the same runs; against
// main's kernel with the f32 sigmoid already in (conv-bwd-vs-main.txt): 7.6-10.7 -> 2.9-3.6.
void bwd_channel_last(const Context& ctx, const CausalConv1dArgs& args) {
  constexpr int64_t kChannels = 128, kSteps = 32, kItemSteps = 256;
  dispatch_cpu_float("causal_conv1d_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D, count = args.seqs.count;
    const T* xp = static_cast<const T*>(args.x);
    const T* bp = static_cast<const T*>(args.bias);
    const T* dyp = static_cast<const T*>(args.dout);
    T* dxp = static_cast<T*>(args.dx);
    T* dwp = static_cast<T*>(args.dweight);
    T* dbp = static_cast<T*>(args.dbias);
    const LineVector<T> wt = taps_by_row(static_cast<const T*>(args.weight), D, args.W);
    std::vector<int64_t> first_item(size_t(count + 1), 0);  // sequence s: its first item
    for (int64_t s = 0; s < count; ++s)
      first_item[size_t(s + 1)] =
          first_item[size_t(s)] + (args.seqs.length(s) + kItemSteps - 1) / kItemSteps;
    const int64_t items = first_item[size_t(count)];
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      // Item i's partials: dweight as (W, D) at i * (W + 1) * D, then dbias (D); (W + 1) / 256 of
      // x's size.
      LineVector<T> partial(size_t(items * (W + 1) * D));
      parallel_for(ctx, items, [&](int64_t item) {
        const int64_t sq = int64_t(std::upper_bound(first_item.begin(), first_item.end(), item) -
                                   first_item.begin()) -
                           1;
        const int64_t L = args.seqs.length(sq), ts = (item - first_item[size_t(sq)]) * kItemSteps;
        const int64_t te = std::min(L, ts + kItemSteps);
        T* pw = partial.data() + item * (W + 1) * D;
        T g_rows[(kSteps + W - 1) * kChannels];
        T* __restrict g = g_rows;
        T sw[W][kChannels], sb[kChannels];
        for (int64_t c0 = 0; c0 < D; c0 += kChannels) {
          const int64_t n = std::min(D, c0 + kChannels) - c0;
          const T* wk[W];
          for (int k = 0; k < W; ++k) wk[k] = wt.data() + k * D + c0;
          std::fill(&sw[0][0], &sw[0][0] + W * kChannels, T(0));
          std::fill(sb, sb + kChannels, T(0));
          for (int64_t t0 = ts; t0 < te; t0 += kSteps) {
            const int64_t t1 = std::min(te, t0 + kSteps), rows = t1 - t0 + (W - 1);
            // The previous block was kSteps long; its last W - 1 rows are steps t0 .. t0 + W - 2.
            if (t0 > ts) std::copy(g + kSteps * n, g + (kSteps + W - 1) * n, g);
            for (int64_t r = t0 > ts ? W - 1 : 0; r < rows; ++r) {
              T* __restrict gr = g + r * n;
              if (t0 + r >= L) {
                std::fill(gr, gr + n, T(0));
                continue;
              }
              const T* dy = dyp + step_at(args, args.dout_at, sq, t0 + r) + c0;
              if (!args.silu) {
                std::copy(dy, dy + n, gr);
                continue;
              }
              conv_step<W>(gr, args, xp, wt.data(), bp, sq, t0 + r, c0, n);
              silu_grad_mul(gr, dy, n);
            }
            // dx[t] = sum_k w[k] * g[t + (W-1) - k]; dw[k] = sum_t g[t] * x[t - (W-1) + k].
            for (int64_t t = t0; t < t1; ++t) {
              const T* __restrict gr = g + (t - t0) * n;
              T* dxr = dxp + step_at(args, args.dx_at, sq, t) + c0;
              for (int64_t c = 0; c < n; ++c) {
                T s = 0;
                for (int k = 0; k < W; ++k) s += wk[k][c] * gr[((W - 1) - k) * n + c];
                dxr[c] = s;
              }
              for (int k = 0; k < W; ++k) {
                const int64_t tt = t - (W - 1) + k;
                if (tt < 0) continue;
                const T* xr = xp + step_at(args, args.x_at, sq, tt) + c0;
                for (int64_t c = 0; c < n; ++c) sw[k][c] += gr[c] * xr[c];
              }
              for (int64_t c = 0; c < n; ++c) sb[c] += gr[c];
            }
          }
          for (int k = 0; k < W; ++k) std::copy(sw[k], sw[k] + n, pw + k * D + c0);
          std::copy(sb, sb + n, pw + W * D + c0);
        }
      });
      parallel_for(ctx, (D + kChannels - 1) / kChannels, [&](int64_t block) {
        const int64_t c0 = block * kChannels, c1 = std::min(D, c0 + kChannels);
        for (int64_t d = c0; d < c1; ++d) {
          T dw[W] = {}, db = 0;
          for (int64_t i = 0; i < items; ++i) {
            const T* pw = partial.data() + i * (W + 1) * D;
            for (int k = 0; k < W; ++k) dw[k] += pw[k * D + d];
            db += pw[W * D + d];
          }
          for (int k = 0; k < W; ++k) dwp[d * W + k] = dw[k];
          if (dbp) dbp[d] = db;
        }
      });
    });
  });
}

}  // namespace

void causal_conv1d_fwd(const Context& ctx, const CausalConv1dArgs& args) {
  if (args.channel_last) return fwd_channel_last(ctx, args);
  dispatch_cpu_float("causal_conv1d_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    T* op = static_cast<T*>(args.out);
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      parallel_for(ctx, args.seqs.count * D, [&](int64_t item) {
        const int64_t s = item / D, d = item % D, L = args.seqs.length(s);
        const int64_t base = row_start(args, s, d);
        T* o = op + base;
        conv_row<W>(o, xp + base, wp + d * W, bp ? bp[d] : T(0), L);
        // The row's SiLU by silu_array (an f32 exp, 8 lanes), not a libm expf per element.
        // hybrid preset, a prefill + a training step (6 calls), 2 threads, load ~20, 2 rounds
        // alternating (bench/results/2026-12-05-cpu-elementwise): T = 256 26.5-27.5 -> 10.0-10.8
        // ms CPU, T = 4096 28.9-29.4 -> 11.5-11.6.
        if (silu) silu_array(o, L);
      });
    });
  });
}

void causal_conv1d_bwd(const Context& ctx, const CausalConv1dArgs& args) {
  if (args.channel_last) return bwd_channel_last(ctx, args);
  dispatch_cpu_float("causal_conv1d_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = args.D;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    const T* dyp = static_cast<const T*>(args.dout);
    T* dxp = static_cast<T*>(args.dx);
    T* dwp = static_cast<T*>(args.dweight);
    T* dbp = static_cast<T*>(args.dbias);
    dispatch_width(args.W, [&](auto width) {
      constexpr int W = decltype(width)::value;
      parallel_for(ctx, D, [&](int64_t d) {
        const T* w = wp + d * W;
        T dw[W] = {};
        T db = 0;
        // d loss / d pre-activation of one sequence's row, followed by W - 1 zeros: the outputs
        // past its end, which no input reaches. One loop over every t then computes dx with the
        // same operations whatever follows the sequence (padding, another sequence, nothing), so
        // its bits do not depend on the batch (the FMA contraction of a loop that skipped the
        // missing terms differed).
        std::vector<T> g;
        for (int64_t sq = 0; sq < args.seqs.count; ++sq) {
          const int64_t base = row_start(args, sq, d), L = args.seqs.length(sq);
          g.assign(size_t(L + W - 1), T(0));
          const T* xr = xp + base;
          const T* dy = dyp + base;
          if (silu) {
            conv_row<W>(g.data(), xr, w, bp ? bp[d] : T(0), L);
            // silu' by silu_grad_mul (f32 exp, 8 lanes), not a libm expf per element. hybrid
            // preset, a training step (3 calls), 2 threads, load ~12, 2 rounds alternating
            // (bench/results/2026-12-05-cpu-elementwise, run 4): T = 256 26.7-26.8 -> 15.2-16.3
            // ms CPU, T = 4096 32.8-33.0 -> 20.3-20.8.
            silu_grad_mul(g.data(), dy, L);
          } else {
            std::copy(dy, dy + L, g.begin());
          }
          const T* gr = g.data();
          // dx[t] = sum_k w[k] * g[t + (W-1) - k].
          T* dxr = dxp + base;
          for (int64_t t = 0; t < L; ++t) {
            T s = 0;
            for (int k = 0; k < W; ++k) s += w[k] * gr[t + (W - 1) - k];
            dxr[t] = s;
          }
          for (int k = 0; k < W; ++k) {
            T s = 0;
            for (int64_t t = std::max<int64_t>(0, (W - 1) - k); t < L; ++t)
              s += gr[t] * xr[t - (W - 1) + k];
            dw[k] += s;
          }
          T s = 0;
          for (int64_t t = 0; t < L; ++t) s += gr[t];
          db += s;
        }
        for (int k = 0; k < W; ++k) dwp[d * W + k] = dw[k];
        if (dbp) dbp[d] = db;
      });
    });
  });
}

void causal_conv1d_update(const Context& ctx, const CausalConv1dArgs& args) {
  dispatch_cpu_float("causal_conv1d_update", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t B = args.B, D = args.D, W = args.W;
    const bool silu = args.silu;
    const T* xp = static_cast<const T*>(args.x);
    const T* wp = static_cast<const T*>(args.weight);
    const T* bp = static_cast<const T*>(args.bias);
    T* op = static_cast<T*>(args.out);
    T* sp = static_cast<T*>(args.conv_state);
    parallel_for(ctx, B, [&](int64_t bi) {
      for (int64_t d = 0; d < D; ++d) {
        const int64_t row = bi * D + d;
        T* st = sp + row * (W - 1);  // the W - 1 previous inputs, oldest first
        const T* w = wp + d * W;
        const T xv = xp[row];
        T s = bp ? bp[d] : T(0);
        for (int64_t k = 0; k < W - 1; ++k) s += w[k] * st[k];
        s += w[W - 1] * xv;
        op[row] = activate(s, silu);
        for (int64_t k = 0; k + 1 < W - 1; ++k) st[k] = st[k + 1];
        if (W > 1) st[W - 2] = xv;
      }
    });
  });
}

}  // namespace longctx::cpu
