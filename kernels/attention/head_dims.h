// The head dims of the CUDA attention kernels: the one table that attention_supports()
// (src/ops/attention.cpp), the dispatch (attention.cu) and the instantiation files
// (flash_{fwd,bwd}_hdim*.cu, attention_f32_hdim*.cu) share.
//
// Tensor-core kernels (bf16, f16; f32 under bf16 matmul precision): one instantiation per head
// dim, each in its own flash_{fwd,bwd}_hdim<D>.cu (they compile in parallel). A file
// static_asserts that its D is listed; a listed D without its file fails at link time, since the
// dispatch instantiates a call for every entry.
// f32 FMA kernels (attention_f32.cuh): one instantiation per bucket, each in its own
// attention_f32_hdim<D>.cu. In one file the six took 75 s of nvcc 13.0 for sm_90a (idle Zen 4),
// the build's longest object (257 s on the loaded machine the GPU lease's plan measured: the
// critical path of its 16-core build); one a file 3.6 / 3.7 / 10.8 / 19.3 / 31.5 / 12.0 s for
// buckets 16 / 32 / 64 / 96 / 128 / 256, 81 s in all. Head dim D runs in the smallest bucket >= D,
// its columns past D masked, so every D in 1 .. kMaxHeadDim runs. The buckets keep the padding
// small where models put their head dims (16 and below for toy models, 32 .. 128, 256 for Gemma);
// the kernels' loops over columns run to D, not to the bucket, so padding costs registers and
// shared memory but no arithmetic.
//
// Plain C++ (no CUDA headers).
#pragma once

#include <cstdint>
#include <string>

#define LONGCTX_ATTN_TENSOR_CORE_HEAD_DIMS(X) X(32) X(64) X(96) X(128) X(256)
#define LONGCTX_ATTN_F32_HEAD_DIM_BUCKETS(X) X(16) X(32) X(64) X(96) X(128) X(256)

namespace longctx::cuda::attn {

#define LONGCTX_ATTN_LIST_ITEM(D) D,
inline constexpr int kTensorCoreHeadDims[] = {
    LONGCTX_ATTN_TENSOR_CORE_HEAD_DIMS(LONGCTX_ATTN_LIST_ITEM)};
inline constexpr int kF32HeadDimBuckets[] = {
    LONGCTX_ATTN_F32_HEAD_DIM_BUCKETS(LONGCTX_ATTN_LIST_ITEM)};
#undef LONGCTX_ATTN_LIST_ITEM

inline constexpr int kMaxHeadDim = 256;  // the largest f32 bucket

constexpr bool is_tensor_core_head_dim(int64_t D) {
  for (int d : kTensorCoreHeadDims)
    if (d == D) return true;
  return false;
}

// The f32 bucket head dim D runs in; 0 when D is outside 1 .. kMaxHeadDim.
constexpr int f32_head_dim_bucket(int64_t D) {
  if (D < 1) return 0;
  for (int d : kF32HeadDimBuckets)
    if (D <= d) return d;
  return 0;
}

static_assert(kF32HeadDimBuckets[sizeof(kF32HeadDimBuckets) / sizeof(int) - 1] == kMaxHeadDim,
              "the last f32 bucket is the largest head dim");

// "32, 64, 96, 128 and 256": the tensor-core head dims, for messages.
inline std::string tensor_core_head_dims_text() {
  std::string s;
  const int n = int(sizeof(kTensorCoreHeadDims) / sizeof(int));
  for (int i = 0; i < n; ++i)
    s += (i == 0 ? "" : i + 1 == n ? " and " : ", ") + std::to_string(kTensorCoreHeadDims[i]);
  return s;
}

}  // namespace longctx::cuda::attn
