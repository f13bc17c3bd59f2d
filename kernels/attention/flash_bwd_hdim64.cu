// Backward tensor-core kernels for head dim 64 (one file per head dim so that they compile in
// parallel).
#include "kernels/attention/flash_bwd.cuh"
#include "kernels/attention/head_dims.h"

namespace longctx::cuda::attn {
static_assert(is_tensor_core_head_dim(64), "head_dims.h lists every instantiated head dim");
template void run_flash_bwd<__nv_bfloat16, 64>(const BwdParams&, bool, cudaStream_t);
template void run_flash_bwd<__half, 64>(const BwdParams&, bool, cudaStream_t);
}  // namespace longctx::cuda::attn
