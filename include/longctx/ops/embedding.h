// embedding: a table lookup, out[..., :] = table[tokens[...], :] (torch.nn.functional.embedding).
//
// tokens: (...) i32, typically (B, T); table, dtable: (V, C); out, dout: tokens' shape + (C).
// A token outside [0, V) is an Error naming its position, its value and V: on the CPU from the
// call; on CUDA the kernel finds it and the Error comes at the context's next synchronisation
// (Context::synchronize, or a copy to the host on the context), so that the call never waits for
// the device; the forward writes a zero row for it meanwhile, the backward adds it nowhere.
// CPU: f32, f64. CUDA: f32, bf16, f16.
#pragma once

#include <string>

#include "longctx/context.h"

namespace longctx {

// "" when the backend of `device` runs embedding with a table in `dtype`, else the reason.
std::string embedding_supports(Device device, DType dtype);

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& tokens,
                   const Tensor& table);

// dtable is overwritten: dtable[v] = the sum of the dout rows whose token is v (zero for tokens
// that do not occur), summed in order of position, so the result is deterministic on both
// backends (no atomics). CUDA sorts the tokens (CUB radix sort) to find each row's positions.
void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout,
                   const Tensor& tokens);

}  // namespace longctx
