// GEMV on the CPU: y (Cout) = W (Cout, Cin) @ x (Cin) [+ bias], the one-row `linear` of batch-1
// decoding. A decode step reads each weight once and does 2 FLOPs with each, so it is bound by
// memory bandwidth: the kernel streams W's rows once, all threads on one matrix (rows split
// over threads), and W may be stored in bf16 (half the bytes; each element widened to f32 in
// the inner loop, f32 accumulation).
//
// Each y[o] is the same sum in the same order whatever the thread count and whichever ISA runs
// (AVX2 or AVX-512, src/cpu/isa.h): 16 f32 partial sums over k mod 16 (FMA chains), reduced by a
// fixed tree, plus the Cin mod 16 tail in order, plus bias[o]. The results are bitwise the same
// across ISAs and thread counts, but not the same as BLAS's sgemm (another order).
#pragma once

#include <cstdint>

#include "longctx/context.h"
#include "src/ops/linear.h"

namespace longctx::cpu {

// bias may be null. x, W, y must not overlap.
void gemv(const Context& ctx, int64_t Cout, int64_t Cin, const float* W, const float* x,
          const float* bias, float* y);
void gemv(const Context& ctx, int64_t Cout, int64_t Cin, const bf16* W, const float* x,
          const float* bias, float* y);

// linear_fwd with an f32 x and a bf16 weight (LinearArgs::weight_dtype): one row by the GEMV
// above; more (a prefill) by sgemm over blocks of weight rows widened to f32 in a scratch buffer
// that stays in cache, so the weight is read once either way.
void linear_fwd_bf16_weight(const Context& ctx, const LinearArgs& args);

}  // namespace longctx::cpu
