// linear_scan on the CPU: h_t = a_t * h_{t-1} + b_t over (B, T, D).
//
// One work item is a (sequence, block of channels) pair scanned sequentially over the sequence
// (the B rows of a rectangular batch, or the N sequences of a packed one); the channels of
// a block are contiguous in memory, so each time step is a short vector loop (AVX2) over the
// block, and the three streams (a, b, out) are read/written once. Backward is the reverse scan
// with the gates shifted by one: g_t = a_{t+1} * g_{t+1} + dout_t (g_{T-1} also gets
// dlast_state), db_t = g_t, da_t = g_t * h_{t-1}, dh0 = a_0 * g_0.
#include <algorithm>

#include "longctx/ops/scan_operator.h"
#include "src/core/dispatch.h"
#include "src/cpu/parallel.h"
#include "src/ops/linear_scan.h"

namespace longctx::cpu {

namespace {

constexpr int64_t kMaxBlock = 4096;  // channels per work item (the state lives on the stack)

// Channels per work item, a multiple of 16 and at most kMaxBlock, as few items as give every
// thread work: long contiguous strips keep the hardware prefetchers streaming. At B=1, D=2560,
// T=4096 on 2 threads, 5 strips of 512 channels took 10.3 ms (slower than a plain
// whole-row loop, 7.4 ms); 2 strips of 1280 take 6.5-7.6 ms.
int64_t channel_block(const Context& ctx, int64_t B, int64_t D) {
  const int64_t threads = std::max<int64_t>(1, ctx.cpu_threads());
  // An empty batch (B = 0) has no items at all; the block size is then only kept in range.
  const int64_t per_batch = std::max<int64_t>(1, (threads + B - 1) / std::max<int64_t>(B, 1));
  const int64_t rounds =
      std::max<int64_t>(1, (D + per_batch * kMaxBlock - 1) / (per_batch * kMaxBlock));
  const int64_t items = per_batch * rounds;
  const int64_t blk = ((D + items - 1) / items + 15) / 16 * 16;
  return std::clamp<int64_t>(blk, 16, kMaxBlock);
}

}  // namespace

void linear_scan_fwd(const Context& ctx, const LinearScanArgs& args) {
  dispatch_cpu_float("linear_scan_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Sequences& seqs = args.seqs;
    const int64_t D = args.D;
    const int64_t blk = channel_block(ctx, seqs.count, D), nblk = (D + blk - 1) / blk;
    const T* ap = static_cast<const T*>(args.a);
    const T* bp = static_cast<const T*>(args.b);
    const T* h0p = static_cast<const T*>(args.h0);
    T* op = static_cast<T*>(args.out);
    T* lp = static_cast<T*>(args.last_state);
    parallel_for(ctx, seqs.count * nblk, [&](int64_t item) {
      const int64_t s = item / nblk, d0 = (item % nblk) * blk, n = std::min(blk, D - d0);
      const int64_t begin = seqs.begin(s), L = seqs.length(s);
      T h[kMaxBlock];
      for (int64_t j = 0; j < n; ++j) h[j] = h0p ? h0p[s * D + d0 + j] : T(0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t off = (begin + t) * D + d0;
        const T* at = ap + off;
        const T* bt = bp + off;
        T* ot = op + off;
        for (int64_t j = 0; j < n; ++j) {
          h[j] = scan_apply(ScanPair<T>{at[j], bt[j]}, h[j]);
          ot[j] = h[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) lp[s * D + d0 + j] = h[j];
    });
  });
}

void linear_scan_bwd(const Context& ctx, const LinearScanArgs& args) {
  dispatch_cpu_float("linear_scan_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Sequences& seqs = args.seqs;
    const int64_t D = args.D;
    const int64_t blk = channel_block(ctx, seqs.count, D), nblk = (D + blk - 1) / blk;
    const T* ap = static_cast<const T*>(args.a);
    const T* hp = static_cast<const T*>(args.out);
    const T* dyp = static_cast<const T*>(args.dout);
    const T* dlp = static_cast<const T*>(args.dlast_state);
    const T* h0p = static_cast<const T*>(args.h0);
    T* dap = static_cast<T*>(args.da);
    T* dbp = static_cast<T*>(args.db);
    T* dh0p = static_cast<T*>(args.dh0);
    parallel_for(ctx, seqs.count * nblk, [&](int64_t item) {
      const int64_t s = item / nblk, d0 = (item % nblk) * blk, n = std::min(blk, D - d0);
      const int64_t begin = seqs.begin(s), L = seqs.length(s);
      T g[kMaxBlock];     // g_{t+1}, the gradient flowing into h_{t+1}
      T gate[kMaxBlock];  // a_{t+1} (1 past the end: dlast_state enters unscaled)
      for (int64_t j = 0; j < n; ++j) {
        g[j] = dlp ? dlp[s * D + d0 + j] : T(0);
        gate[j] = T(1);
      }
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t off = (begin + t) * D + d0;
        const T* at = ap + off;
        const T* dyt = dyp + off;
        T* dat = dap + off;
        T* dbt = dbp + off;
        // h_{t-1}: the previous output, or h0 (zeros when not given) at t = 0.
        const T* hprev = t > 0 ? hp + off - D : (h0p ? h0p + s * D + d0 : nullptr);
        for (int64_t j = 0; j < n; ++j) {
          g[j] = scan_apply(ScanPair<T>{gate[j], dyt[j]}, g[j]);
          dbt[j] = g[j];
          dat[j] = hprev ? g[j] * hprev[j] : T(0);
          gate[j] = at[j];
        }
      }
      if (dh0p)
        for (int64_t j = 0; j < n; ++j) dh0p[s * D + d0 + j] = gate[j] * g[j];
    });
  });
}

}  // namespace longctx::cpu
