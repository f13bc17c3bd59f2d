// Forward / decode tensor-core kernels for head dim 128 (one file per head dim so that they
// compile in parallel).
#include "kernels/attention/flash_fwd.cuh"
#include "kernels/attention/head_dims.h"

namespace longctx::cuda::attn {
static_assert(is_tensor_core_head_dim(128), "head_dims.h lists every instantiated head dim");
template void run_flash_fwd<__nv_bfloat16, 128>(const FwdParams&, cudaStream_t);
template void run_flash_fwd<__half, 128>(const FwdParams&, cudaStream_t);
template int flash_fwd_block_n<__nv_bfloat16, 128>();
template int flash_fwd_block_n<__half, 128>();
}  // namespace longctx::cuda::attn
