// The f32 attention kernels (attention_f32.cuh) for head-dim bucket 64 (one file per bucket so
// that they compile in parallel: head_dims.h).
#include "kernels/attention/attention_f32.cuh"
#include "kernels/attention/head_dims.h"

namespace longctx::cuda::attn {
static_assert(f32_head_dim_bucket(64) == 64, "head_dims.h lists every instantiated bucket");
template int f32_fwd_block_n<64>();
template void run_f32_fwd<64>(const FwdParams&, cudaStream_t);
template void run_f32_bwd<64>(const BwdParams&, cudaStream_t);
}  // namespace longctx::cuda::attn
