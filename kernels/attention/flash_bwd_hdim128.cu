// Backward tensor-core kernels for head dim 128 (one file per head dim so that they compile in
// parallel).
#include "kernels/attention/flash_bwd.cuh"

namespace longctx::cuda::attn {
template void run_flash_bwd<__nv_bfloat16, 128>(const BwdParams&, bool, cudaStream_t);
template void run_flash_bwd<__half, 128>(const BwdParams&, bool, cudaStream_t);
}  // namespace longctx::cuda::attn
