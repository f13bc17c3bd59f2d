// rope on CUDA: one thread per (b, t, i) pair index, looping over the H heads so the angle's
// sin/cos is computed once per position and frequency and reused H times. The angle
// pos * theta^(-2i/D) and its sin/cos are computed in double (an f32 product alone would be off
// by ~pos * 6e-8 rad); that is one double sincos per H pairs moved, cheap on A100/H100 (FP64 at
// half the FP32 rate) for a kernel that is bound by memory traffic.
#include <algorithm>

#include "kernels/common/context_state.cuh"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/types.cuh"
#include "src/ops/rope.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

// out = rotate(in, sign * angle), x/out (B, T, H, D) with D = 2 * half; out may be in: each
// thread reads its pair (i, i + half) of one row before writing it, and no other thread touches it.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(T* out, const T* in, const int32_t* positions, int64_t BT, int64_t T_len, int64_t H,
                int64_t half, double log2_theta, float sign) {
  const int64_t count = BT * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, bt = idx / half;
    const double pos = positions ? double(positions[bt]) : double(bt % T_len);
    // theta^(-2i/D) = 2^(-(i / half) * log2(theta))
    const double angle = pos * exp2(-double(i) / double(half) * log2_theta);
    double sd, cd;
    sincos(angle, &sd, &cd);
    const float s = sign * float(sd), c = float(cd);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = (bt * H + h) * 2 * half;
      const float lo = load_f32(in[base + i]), hi = load_f32(in[base + i + half]);
      out[base + i] = store_as<T>(lo * c - hi * s);
      out[base + i + half] = store_as<T>(hi * c + lo * s);
    }
  }
}

}  // namespace

void rope(const Context& ctx, const RopeArgs& args) {
  const int64_t half = args.D / 2, count = args.B * args.T * half;
  if (count == 0 || args.H == 0) return;
  const int64_t blocks = std::min<int64_t>((count + kThreads - 1) / kThreads, 65535 * 8);
  dispatch_cuda_float("rope", args.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rope_kernel<T><<<unsigned(blocks), kThreads, 0, state_of(ctx).stream>>>(
        static_cast<T*>(args.out), static_cast<const T*>(args.in), args.positions, args.B * args.T,
        args.T, args.H, half, std::log2(args.theta), float(args.sign));
  });
  LONGCTX_CHECK_LAUNCH();
}

}  // namespace longctx::cuda
