// Forward / decode tensor-core kernels for head dim 32 (one file per head dim so that they
// compile in parallel).
#include "kernels/attention/flash_fwd.cuh"
#include "kernels/attention/head_dims.h"

namespace longctx::cuda::attn {
static_assert(is_tensor_core_head_dim(32), "head_dims.h lists every instantiated head dim");
template void run_flash_fwd<__nv_bfloat16, 32>(const FwdParams&, cudaStream_t);
template void run_flash_fwd<__half, 32>(const FwdParams&, cudaStream_t);
template int flash_fwd_block_n<__nv_bfloat16, 32>();
template int flash_fwd_block_n<__half, 32>();
}  // namespace longctx::cuda::attn
