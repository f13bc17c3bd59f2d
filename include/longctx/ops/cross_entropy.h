// cross_entropy: fused log-softmax + negative log-likelihood over the last dimension, averaged
// over the labelled positions (torch.nn.functional.cross_entropy, reduction='mean').
//
//   lse[n]  = log sum_v exp(logits[n, v])
//   loss    = (1 / L) * sum over labelled n of (lse[n] - logits[n, targets[n]])
//   dlogits[n, v] = dloss * (exp(logits[n, v] - lse[n]) - [v == targets[n]]) / L
//
// logits, dlogits: (..., V), typically (B, T, V) or (N, V); targets: (...) i32; lse: (...) saved by
// the forward for the backward; loss, dloss: (1). A position whose target is ignore_index
// (default -100) is unlabelled: it adds nothing to the loss and its dlogits row is zero; L is the
// number of labelled positions. With no labelled position at all, loss = 0 and dlogits = 0 (not
// NaN: a batch of only padding trains nothing). A target outside [0, V) that is not ignore_index
// is an Error naming its position: on the CPU from the call; on CUDA the forward's kernel finds
// it and the Error comes at the context's next synchronisation (Context::synchronize, or reading
// the loss on the host), so that the forward never waits for the device; its row adds 0 to the
// loss meanwhile. The CUDA backward does not re-check and treats such a target as having no
// label in the vocabulary, never reading out of bounds.
// loss, dloss and lse are f32 (f64 when logits are f64).
// CPU: f32, f64. CUDA: logits f32, bf16, f16 (f32 math, the loss summed in f64 in a fixed order).
#pragma once

#include <cstdint>
#include <string>

#include "longctx/context.h"

namespace longctx {

struct CrossEntropyParams {
  int32_t ignore_index = -100;  // targets equal to this are not labelled
};

// "" when the backend of `device` runs cross_entropy on logits in `dtype`, else the reason.
std::string cross_entropy_supports(Device device, DType dtype);

void cross_entropy_fwd(const Context& ctx, const Tensor& loss, const Tensor& lse,
                       const Tensor& logits, const Tensor& targets,
                       const CrossEntropyParams& params = {});

// dlogits is overwritten; it may be logits itself (in place, saving the (..., V) buffer).
void cross_entropy_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dloss,
                       const Tensor& logits, const Tensor& targets, const Tensor& lse,
                       const CrossEntropyParams& params = {});

}  // namespace longctx
