// linear on the CPU: the GEMMs of each direction through OpenBLAS, as single-threaded calls on
// blocks in one parallel region, except in f32 a one-row forward (gemv.h) and the forward and dx
// at a small inner dim (small_k_gemm.h); dbias reduced by column blocks (each column summed over
// rows in row order by one thread, so dbias does not depend on the thread count).
#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "src/core/dispatch.h"
#include "src/cpu/blas.h"
#include "src/cpu/gemv.h"
#include "src/cpu/parallel.h"
#include "src/cpu/small_k_gemm.h"
#include "src/ops/linear.h"

namespace longctx::cpu {

namespace {
constexpr int64_t kColumnBlock = 64;  // dbias columns per work item: 256 contiguous bytes a row
// The most linear_bwd keeps for the other threads' partial dweights (its split by rows): a bound
// on the memory, not a tuned size; a larger weight has its rows split between the threads.
constexpr int64_t kMaxPartialBytes = int64_t(8) << 20;
}  // namespace

void linear_fwd(const Context& ctx, const LinearArgs& args) {
  if (args.weight_dtype == DType::bf16) return linear_fwd_bf16_weight(ctx, args);  // gemv.cpp
  dispatch_cpu_float("linear_fwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
    if (M == 0) return;
    T* y = static_cast<T*>(args.out);  // (M, Cout)
    if constexpr (std::is_same_v<T, float>) {
      // One row (batch-1 decoding): a GEMV streaming the weight once. OpenBLAS's sgemm packed
      // (copied) the weight first (sgemm_incopy, 14% of a decode profile): a 93M-parameter
      // llama decoded in 91.8 ms/token with it, 40.7 with the GEMV (bench_decode, 2-core
      // AVX-512 dev VM at load 6-8).
      if (M == 1) {
        gemv(ctx, Cout, Cin, static_cast<const float*>(args.weight),
             static_cast<const float*>(args.x), static_cast<const float*>(args.bias), y);
        return;
      }
      // Many rows at a small Cin (a prefill's or a training step's projections): the
      // register-blocked kernel of small_k_gemm.h rather than OpenBLAS (1.03-1.31x fewer CPU
      // seconds on the prefill's projection shapes). With it for the forward and dx, the llama
      // preset's prefill took 96-102 instead of 108-110 ms CPU at T = 256, 129-136 instead of
      // 143-152 at T = 1024, 278-280 instead of 285-292 at T = 4096, and its training step
      // 306-318 instead of 334, 410-411 instead of 433-460, 1013-1042 instead of 1023-1062
      // (4096 tokens, 2 threads, medians of 7, three rounds alternating the two builds; 2-core
      // AVX-512 dev VM, load 15-20; bench/results/2026-12-05-cpu-linear-kernel/model-run.txt).
      if (use_small_k_gemm(M, Cout, Cin)) {
        small_k_gemm(ctx, M, Cout, Cin, static_cast<const float*>(args.x),
                     static_cast<const float*>(args.weight), static_cast<const float*>(args.bias),
                     y);
        return;
      }
    }
    // One parallel region of single-threaded GEMMs, each thread its own block of y (the bias
    // copied into it first), not one OpenBLAS-threaded call: the threaded call's threads wait
    // for each other by spinning on sched_yield (see linear_bwd). The llama preset's eight
    // projection shapes at M = 4096, 2 threads, 20 passes alternating (load 15,
    // bench/results/2026-12-05-cpu-train-2/linear_fwd_gemms.cpp): threaded 25.1 ms CPU / 173 ms
    // wall a pass; blocks of M / 2 rows 21.0 / 128, of 1024 rows 20.9 / 128, of 256 rows
    // 21.8 / 148, of 64 rows 26.2 / 170 (each call packs the weight again). So one block per
    // thread: of rows when M >= Cout, else of columns (rows of the weight), so that a few rows
    // (batched decoding) read the weight once between the threads, not once per thread.
    const T* x = static_cast<const T*>(args.x);       // (M, Cin)
    const T* w = static_cast<const T*>(args.weight);  // (Cout, Cin)
    const T* b = static_cast<const T*>(args.bias);    // (Cout) or null
    const bool by_rows = M >= Cout;
    const int64_t parts = std::min<int64_t>(ctx.cpu_threads(), by_rows ? M : Cout);
    parallel_for(ctx, parts, [&](int64_t part) {
      const int64_t m0 = by_rows ? M * part / parts : 0;
      const int64_t m1 = by_rows ? M * (part + 1) / parts : M;
      const int64_t c0 = by_rows ? 0 : Cout * part / parts;
      const int64_t c1 = by_rows ? Cout : Cout * (part + 1) / parts;
      if (b)
        for (int64_t row = m0; row < m1; ++row) std::copy(b + c0, b + c1, y + row * Cout + c0);
      // y[m0:m1, c0:c1] = x[m0:m1] @ weight[c0:c1]^T [+ bias]; beta = 0: y is not read
      gemm(/*trans_a=*/false, /*trans_b=*/true, m1 - m0, c1 - c0, Cin, T(1), x + m0 * Cin, Cin,
           w + c0 * Cin, Cin, b ? T(1) : T(0), y + m0 * Cout + c0, Cout);
    });
  });
}

void linear_bwd(const Context& ctx, const LinearArgs& args) {
  dispatch_cpu_float("linear_bwd", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t Cin = args.Cin, Cout = args.Cout, M = args.M;
    const T* dy = static_cast<const T*>(args.dout);  // (M, Cout)
    T* dx = static_cast<T*>(args.dx);                // (M, Cin)
    T* dweight = static_cast<T*>(args.dweight);      // (Cout, Cin)
    if (args.dbias) {
      T* db = static_cast<T*>(args.dbias);  // (Cout)
      const int64_t blocks = (Cout + kColumnBlock - 1) / kColumnBlock;
      parallel_for(ctx, blocks, [&](int64_t block) {
        const int64_t c0 = block * kColumnBlock, c1 = std::min(Cout, c0 + kColumnBlock);
        T acc[kColumnBlock] = {};
        for (int64_t row = 0; row < M; ++row) {
          const T* dyr = dy + row * Cout;
          for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dyr[c];
        }
        std::copy(acc, acc + (c1 - c0), db + c0);
      });
    }
    if (dweight && M == 0) std::fill(dweight, dweight + Cout * Cin, T(0));
    if (M == 0) return;
    // One parallel region of single-threaded GEMMs, not two OpenBLAS-threaded ones, each
    // block's products in the same order for a given thread count. OpenBLAS's
    // threaded GEMM makes its threads wait for each other inside every call, spinning on
    // sched_yield (its level-3 driver), so on a shared machine a descheduled thread costs the
    // other one its time slice in CPU time and both in wall time. The hybrid preset's five
    // projection shapes at M = 4096 alone, 2 threads, 20 repetitions each: 60 -> 51-55 ms CPU and
    // 280-420 -> 160-250 ms wall at load 7-9, 47-53 -> 42-44 ms CPU and 98-111 -> 89-93 ms wall at
    // load 6.6. In the training-step profile (bench/results/2026-12-05-cpu-train-profile) the
    // backward's CPU time is ~2x the forward's before and after: the 4x seen in wall time was
    // the waiting.
    const T* w = static_cast<const T*>(args.weight);  // (Cout, Cin)
    const T* x = static_cast<const T*>(args.x);       // (M, Cin)
    // dx at a small Cout (the inner dimension here) by small_k_gemm.h's kernel, the weight packed
    // here once for both threads' blocks: see linear_fwd.
    std::optional<SmallKWeight> packed;
    if constexpr (std::is_same_v<T, float>)
      if (dx && use_small_k_gemm(M, Cin, Cout)) packed.emplace(Cin, Cout, w, true, nullptr);
    // dx rows [m0, m1) = dout rows [m0, m1) @ weight, on the calling thread
    auto dx_rows = [&](int64_t m0, int64_t m1) {
      if constexpr (std::is_same_v<T, float>)
        if (packed) return packed->rows(dy, m0, m1, dx);
      if (m1 > m0)
        gemm(/*trans_a=*/false, /*trans_b=*/false, m1 - m0, Cin, Cout, T(1), dy + m0 * Cout, Cout,
             w, Cin, T(0), dx + m0 * Cin, Cin);
    };
    const int64_t parts = ctx.cpu_threads();
    if (dweight && parts > 1 && (parts - 1) * Cout * Cin * int64_t(sizeof(T)) <= kMaxPartialBytes) {
      // Each thread its block of rows of both products: dx's rows and its partial dweight over
      // those rows (thread 0's into dweight, the others' into `partials`), then the partials
      // added to dweight in thread order, by blocks of its rows. So x and dout are each read and
      // packed by one thread, not x by every thread (dweight split by its rows, below), and the
      // threads' halves cost the same. The llama preset's 29 calls of a training step at
      // M = 4096, 2 threads, busy time by each thread's CPU clock, load 6-9, 6 runs alternating
      // (bench/results/2026-12-05-cpu-llama-step-2, splitk-regions-1.txt): the slower thread's
      // time summed 68.5-74.2 -> 62.7-66.8 ms a step (0.89-0.94 in each pair), both threads'
      // 133.8-144.7 -> 122.7-129.6.
      thread_local std::vector<T> kept;  // the calling thread's, kept: the same shapes every step
      kept.resize(std::max<size_t>(kept.size(), size_t((parts - 1) * Cout * Cin)));
      T* const partials = kept.data();  // a name in the workers' code would be their own
      parallel_for_then(
          ctx, parts,
          [&](int64_t part) {
            const int64_t m0 = M * part / parts, m1 = M * (part + 1) / parts;
            if (dx) dx_rows(m0, m1);
            T* dw = part == 0 ? dweight : partials + (part - 1) * Cout * Cin;
            if (m1 == m0) return std::fill(dw, dw + Cout * Cin, T(0));
            // dw = dout rows [m0, m1)^T @ x rows [m0, m1)
            gemm(/*trans_a=*/true, /*trans_b=*/false, Cout, Cin, m1 - m0, T(1), dy + m0 * Cout,
                 Cout, x + m0 * Cin, Cin, T(0), dw, Cin);
          },
          (Cout + kColumnBlock - 1) / kColumnBlock,
          [&](int64_t block) {
            const int64_t i0 = block * kColumnBlock * Cin,
                          i1 = std::min(Cout, (block + 1) * kColumnBlock) * Cin;
            for (int64_t t = 1; t < parts; ++t) {
              const T* p = partials + (t - 1) * Cout * Cin;
              for (int64_t i = i0; i < i1; ++i) dweight[i] += p[i];
            }
          });
      return;
    }
    // Thread t runs dx's block t and dweight's block t (the static schedule hands each thread
    // `kinds` consecutive items), not half the threads all of dx and the others all of dweight:
    // dx by small_k_gemm.h's kernel takes 0.5-0.75 of dweight's OpenBLAS time, and the threads
    // holding dx then waited. Measured before the split by rows above existed, on the llama
    // preset's 29 calls of a step at M = 4096 (2 threads, each thread's busy time by its CPU clock,
    // load 5.5; bench/results/2026-12-05-cpu-llama-step-2, linear-bwd-busy-1.txt): the slower
    // thread's time summed 82.8-83.4 -> 68.5-68.8 ms, both threads' 133.5 -> 134.6 ms.
    const int64_t kinds = (dx ? 1 : 0) + (dweight ? 1 : 0);
    parallel_for(ctx, parts * kinds, [&](int64_t item) {
      const int64_t part = item / kinds;
      if (dx && item % kinds == 0) return dx_rows(M * part / parts, M * (part + 1) / parts);
      // dweight rows [c0, c1) = dout^T rows [c0, c1) (columns of dout) @ x
      const int64_t c0 = Cout * part / parts, c1 = Cout * (part + 1) / parts;
      if (c1 > c0)
        gemm(/*trans_a=*/true, /*trans_b=*/false, c1 - c0, Cin, M, T(1), dy + c0, Cout, x, Cin,
             T(0), dweight + c0 * Cin, Cin);
    });
  });
}

}  // namespace longctx::cpu
