// The f32 attention kernels (attention_f32.cuh), instantiated for every head-dim bucket of
// head_dims.h.
#include "kernels/attention/attention_f32.cuh"
#include "kernels/attention/head_dims.h"

namespace longctx::cuda::attn {

#define LONGCTX_ATTN_F32(kD)                                     \
  template int f32_fwd_block_n<kD>();                            \
  template void run_f32_fwd<kD>(const FwdParams&, cudaStream_t); \
  template void run_f32_bwd<kD>(const BwdParams&, cudaStream_t);
LONGCTX_ATTN_F32_HEAD_DIM_BUCKETS(LONGCTX_ATTN_F32)
#undef LONGCTX_ATTN_F32

}  // namespace longctx::cuda::attn
