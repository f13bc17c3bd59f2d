// Warp-level tensor-core building blocks for the attention kernels (sm_80+): cp.async copies,
// ldmatrix fragment loads and mma.sync m16n8k16 (bf16/f16 in, f32 accumulate), and three warp
// GEMMs that the forward and backward kernels are written in.
//
// Fragment layouts (PTX ISA, mma.m16n8k16), lane = 4 * g + q (g = group 0..7, q = 0..3):
//   A 16x16 (4 regs of 2 elements): a0 (row g, cols 2q..2q+1), a1 (row g+8, same cols),
//                                   a2 (row g, cols 2q+8..), a3 (row g+8, cols 2q+8..)
//   B 16x8  (2 regs):               b0 (rows 2q..2q+1, col g), b1 (rows 2q+8.., col g)
//   C 16x8  (4 f32):                c0, c1 (row g, cols 2q, 2q+1), c2, c3 (row g+8, same cols)
// An accumulator `float acc[N / 8][4]` is a 16 x N tile: acc[nb][c] sits at
//   row g + 8 * (c / 2), column nb * 8 + 2 * q + (c % 2).
//
// Shared-memory tiles are row-major with a row stride of (cols + 8) elements: the 16-byte pad
// shifts consecutive rows by one 16-byte bank group, so the 8 row addresses of an ldmatrix phase
// hit 8 distinct bank groups for every head dim used here (D = 32, 64, 96, 128, 256).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace longctx::cuda::attn {

// ---- copies -------------------------------------------------------------------------------

// 16-byte async copy global -> shared; when !valid the 16 bytes are zero-filled and nothing is
// read (src must still be a valid address expression; callers pass the tensor base).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Copies `rows` x D elements into a shared tile of row stride S (elements), 16 bytes per thread
// per step. row_ptr(r) returns the global address of row r, or nullptr for a row to zero-fill.
template <int D, int S, int kThreads, class T, class RowPtr>
__device__ __forceinline__ void load_tile_async(T* smem, int rows, const T* base, RowPtr row_ptr) {
  constexpr int kChunksPerRow = D * int(sizeof(T)) / 16;
  for (int c = threadIdx.x; c < rows * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * (16 / int(sizeof(T)));
    const T* src = row_ptr(r);
    cp_async_16(smem + r * S + col, src ? src + col : base, src != nullptr);
  }
}

// ---- fragments ------------------------------------------------------------------------------

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4],
                                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- warp GEMMs (each called by all 32 lanes of a warp) -------------------------------------

// acc (16 x N) += A (16 x K, smem rows, stride sa) * B^T, B (N x K, smem rows, stride sb).
// Q K^T in the forward; K Q^T and V dO^T in the backward.
template <int N, int K, class T>
__device__ __forceinline__ void warp_gemm_abt(float (&acc)[N / 8][4], const T* A, int sa,
                                              const T* B, int sb) {
  static_assert(N % 16 == 0 && K % 16 == 0, "warp_gemm_abt: N and K must be multiples of 16");
  const int lane = threadIdx.x % 32;
  // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
  const T* a_row = A + (lane % 16) * sa + (lane / 16) * 8;
  // B: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15): b0 b1 of two n-blocks.
  const T* b_row = B + ((lane % 8) + 8 * (lane / 16)) * sb + ((lane / 8) % 2) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, a_row + kk * 16);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, b_row + np * 16 * sb + kk * 16);
      mma_16816<T>(acc[2 * np], a, b[0], b[1]);
      mma_16816<T>(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// acc (16 x N) += A * B, A (16 x K) given as an f32 accumulator tile (rounded to T here),
// B (K x N, smem rows, stride sb). P V in the forward; P^T dO, dS^T Q, dS K in the backward.
template <int N, int K, class T>
__device__ __forceinline__ void warp_gemm_rb(float (&acc)[N / 8][4], const float (&a_acc)[K / 8][4],
                                             const T* B, int sb) {
  static_assert(N % 16 == 0 && K % 16 == 0, "warp_gemm_rb: N and K must be multiples of 16");
  const int lane = threadIdx.x % 32;
  // B transposed: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
  const T* b_row = B + ((lane % 8) + 8 * ((lane / 8) % 2)) * sb + (lane / 16) * 8;
#pragma unroll
  for (int kt = 0; kt < K / 16; ++kt) {
    const uint32_t a[4] = {pack2<T>(a_acc[2 * kt][0], a_acc[2 * kt][1]),
                           pack2<T>(a_acc[2 * kt][2], a_acc[2 * kt][3]),
                           pack2<T>(a_acc[2 * kt + 1][0], a_acc[2 * kt + 1][1]),
                           pack2<T>(a_acc[2 * kt + 1][2], a_acc[2 * kt + 1][3])};
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, b_row + kt * 16 * sb + np * 16);
      mma_16816<T>(acc[2 * np], a, b[0], b[1]);
      mma_16816<T>(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// acc (16 x N) += A * B, A (16 x K, smem rows, stride sa), B (K x N, smem rows, stride sb).
// dS K for dQ in the dK/dV kernel (dS staged in shared memory).
template <int N, int K, class T>
__device__ __forceinline__ void warp_gemm_ab(float (&acc)[N / 8][4], const T* A, int sa, const T* B,
                                             int sb) {
  static_assert(N % 16 == 0 && K % 16 == 0, "warp_gemm_ab: N and K must be multiples of 16");
  const int lane = threadIdx.x % 32;
  const T* a_row = A + (lane % 16) * sa + (lane / 16) * 8;
  const T* b_row = B + ((lane % 8) + 8 * ((lane / 8) % 2)) * sb + (lane / 16) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, a_row + kk * 16);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, b_row + kk * 16 * sb + np * 16);
      mma_16816<T>(acc[2 * np], a, b[0], b[1]);
      mma_16816<T>(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
}

// Two consecutive elements (an accumulator pair) stored as T.
template <class T>
__device__ __forceinline__ void store_pair(T* dst, float x, float y) {
  *reinterpret_cast<uint32_t*>(dst) = pack2<T>(x, y);
}
template <>
__device__ __forceinline__ void store_pair<float>(float* dst, float x, float y) {
  *reinterpret_cast<float2*>(dst) = make_float2(x, y);
}

}  // namespace longctx::cuda::attn
