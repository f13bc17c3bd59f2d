// Prints the block size and dynamic shared memory of every attention kernel instantiation, from
// the kernels' own traits, as JSON for resource_table.py (ptxas reports registers and static
// shared memory only). A host program: no GPU needed to run it.
#include <cstdio>

#include "kernels/attention/attention_f32.cuh"
#include "kernels/attention/flash_bwd.cuh"
#include "kernels/attention/flash_fwd.cuh"
#include "kernels/attention/head_dims.h"

namespace attn = longctx::cuda::attn;

bool first = true;
void row(const char* kernel, const char* dtype, int D, int threads, int smem) {
  std::printf("%s\n  {\"kernel\": \"%s<%s%s%d>\", \"threads\": %d, \"dyn_smem\": %d}",
              first ? "[" : ",", kernel, dtype, *dtype ? "," : "", D, threads, smem);
  first = false;
}

template <class T>
void tensor_core(const char* dtype) {
#define LONGCTX_ROWS(D)                                                        \
  row("flash_fwd_kernel", dtype, D, attn::FlashFwdTraits<T, D>::kThreads,      \
      attn::FlashFwdTraits<T, D>::kSmemBytes);                                 \
  row("flash_bwd_dkdv_kernel", dtype, D, attn::FlashBwdTraits<T, D>::kThreads, \
      attn::FlashBwdTraits<T, D>::kSmemBytes);                                 \
  row("flash_bwd_dq_kernel", dtype, D, attn::FlashBwdDqTraits<T, D>::kThreads, \
      attn::FlashBwdDqTraits<T, D>::kSmemBytes);
  LONGCTX_ATTN_TENSOR_CORE_HEAD_DIMS(LONGCTX_ROWS)
#undef LONGCTX_ROWS
}

int main() {
  tensor_core<__nv_bfloat16>("__nv_bfloat16");
  tensor_core<__half>("__half");
#define LONGCTX_ROWS(D)                                              \
  row("f32_fwd_kernel", "", D, attn::F32FwdTraits<D>::kThreads,      \
      attn::F32FwdTraits<D>::kSmemBytes);                            \
  row("f32_bwd_dkdv_kernel", "", D, attn::F32BwdTraits<D>::kThreads, \
      attn::F32BwdTraits<D>::kSmemBytes);                            \
  row("f32_bwd_dq_kernel", "", D, attn::F32BwdTraits<D>::kThreads,   \
      attn::F32BwdTraits<D>::kSmemBytes);
  LONGCTX_ATTN_F32_HEAD_DIM_BUCKETS(LONGCTX_ROWS)
#undef LONGCTX_ROWS
  std::printf("\n]\n");
}
