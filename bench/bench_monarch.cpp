// bench_monarch: monarch_linear against the dense `linear` at the same width n (square, x (M, n)
// -> (M, n)), forward and backward (dx and the weight gradients), for n = 1024, 2048, 4096 and
// nblocks 4 and 16. A Monarch matrix of b blocks costs 2n²/b multiply-adds a row against the
// dense n², so the ideal speedup is b/2 (the FLOP ratio 2/b); the table sets the measured speedup
// against it. The backward is given the forward's saved intermediate (`mid`), so its products
// are four block-diagonal ones against the dense two: the same ratio. Each Monarch matrix is
// first checked against `linear` with its dense weight (the forward applied to the identity) on
// the same rows.
//
//   bench_monarch [--device cpu|cuda[:N]] [--dtype f32|bf16|f16] [--json FILE] [--rows M]
//                 [--sizes 1024,2048,4096] [--blocks 4,16] [--reps 3] [--threads 0 (all)]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "longctx/longctx.h"

using namespace longctx;
using bench::cpu_s;
using bench::now_s;

namespace {

struct Timing {
  double wall_ms, cpu_ms;  // each the best of the timed runs
};

// The best wall and CPU times of `reps` runs after one warm-up.
Timing time_best(const Context& ctx, const std::function<void()>& f, int reps) {
  f();
  ctx.synchronize();
  Timing best{1e30, 1e30};
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s(), c0 = cpu_s();
    f();
    ctx.synchronize();
    best.wall_ms = std::min(best.wall_ms, 1e3 * (now_s() - t0));
    best.cpu_ms = std::min(best.cpu_ms, 1e3 * (cpu_s() - c0));
  }
  return best;
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  return out;
}

// A tensor of `dtype` on ctx's device, uniform in [-bound, bound).
Tensor random_tensor(const Context& ctx, const Shape& shape, DType dtype, double bound,
                     bench::SplitMix64& gen) {
  Tensor host = Tensor::empty(shape, DType::f32);
  float* p = host.data_as<float>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = float(gen.uniform(-bound, bound));
  const Tensor typed = dtype == DType::f32 ? host : host.to_dtype(dtype);
  return ctx.device().is_cpu() ? typed : typed.to(ctx.device(), &ctx);
}

std::vector<float> to_host_f32(const Context& ctx, const Tensor& t) {
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu(), &ctx);
  const Tensor f = host.dtype() == DType::f32 ? host : host.to_dtype(DType::f32);
  return std::vector<float>(f.data_as<float>(), f.data_as<float>() + f.numel());
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, device_arg = "cpu", dtype_arg = "f32";
  std::string sizes_arg = "1024,2048,4096", blocks_arg = "4,16";
  int64_t M = 2048;
  int reps = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* flag) { return !std::strcmp(argv[i], flag) && i + 1 < argc; };
    if (next("--json"))
      json_path = argv[++i];
    else if (next("--device"))
      device_arg = argv[++i];
    else if (next("--dtype"))
      dtype_arg = argv[++i];
    else if (next("--rows"))
      M = std::atoll(argv[++i]);
    else if (next("--sizes"))
      sizes_arg = argv[++i];
    else if (next("--blocks"))
      blocks_arg = argv[++i];
    else if (next("--reps"))
      reps = std::atoi(argv[++i]);
    else if (next("--threads"))
      threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_monarch [--device cpu|cuda[:N]] [--dtype f32|bf16|f16] "
                   "[--json FILE] [--rows M] [--sizes 1024,2048,4096] [--blocks 4,16] [--reps N] "
                   "[--threads N]\n");
      return 2;
    }
  }
  Device dev;
  DType dtype;
  std::string device_name = "cpu";
  try {
    dev = parse_device(device_arg);
    dtype = parse_dtype(dtype_arg);
    if (dev.is_cuda()) {
      const CudaStatus st = cuda_status();
      if (!st.available()) throw Error("no usable CUDA device: " + st.reason);
      if (dev.index >= int(st.devices.size())) throw Error("no device " + device_arg);
      device_name = st.devices[size_t(dev.index)].name;
    }
    const std::string why = monarch_linear_supports(dev, dtype);
    if (!why.empty()) throw Error(why);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_monarch: %s\n", e.what());
    return 2;
  }
  Context ctx(dev, threads);
  bench::SplitMix64 gen{42};
  // The check's bound. f32: the dense weight is the Monarch matrix rounded to f32 and the two
  // products sum in other orders, each worth a few roundings times sqrt(n) (~4e-6 at n = 4096)
  // of the output's scale. bf16/f16 store the intermediate and the dense weight in 8/11 bits.
  const double check_tol = dtype == DType::f32 ? 1e-4 : 5e-2;
  bool checks_ok = true;

  std::printf(
      "monarch_linear vs linear on %s, %s, %lld rows, %d CPU threads; best of %d runs of wall and\n"
      "CPU time (the process's, all threads: on a shared machine what the op consumed); GFLOP/s\n"
      "and speedup by wall time, speedup (cpu) by CPU time; ideal = b/2, the FLOP ratio's "
      "inverse\n",
      device_name.c_str(), dtype_name(dtype), static_cast<long long>(M), ctx.cpu_threads(), reps);
  std::printf("%6s %6s %-4s %9s %9s %9s %9s %9s %9s %8s %8s %6s\n", "n", "blocks", "pass",
              "dense ms", "cpu ms", "GFLOP/s", "monarch", "cpu ms", "GFLOP/s", "speedup", "(cpu)",
              "ideal");
  nlohmann::json results = nlohmann::json::array();
  for (const int64_t n : parse_list(sizes_arg)) {
    const Tensor x = random_tensor(ctx, {M, n}, dtype, 1.0, gen);
    const Tensor dout = random_tensor(ctx, {M, n}, dtype, 1.0, gen);
    const Tensor w = random_tensor(ctx, {n, n}, dtype, 1.0 / std::sqrt(double(n)), gen);
    const Tensor out = Tensor::empty({M, n}, dtype, dev, &ctx);
    const Tensor dx = Tensor::empty({M, n}, dtype, dev, &ctx);
    const Tensor dw = Tensor::empty({n, n}, dtype, dev, &ctx);
    const Timing dense_fwd = time_best(
        ctx, [&] { linear_fwd(ctx, out, x, w); }, reps);
    const Timing dense_bwd = time_best(
        ctx, [&] { linear_bwd(ctx, dx, dw, Tensor(), dout, x, w); }, reps);
    const double dense_flops = 2.0 * double(M) * double(n) * double(n);  // a forward

    for (const int64_t b : parse_list(blocks_arg)) {
      const MonarchShape shape = monarch_shape(n, n, b);
      const double bound = 1.0 / std::sqrt(double(n / b));
      const Tensor w1 = random_tensor(ctx, shape.w1, dtype, bound, gen);
      const Tensor w2 = random_tensor(ctx, shape.w2, dtype, bound, gen);
      const Tensor mid = Tensor::empty({M, n}, dtype, dev, &ctx);
      const Tensor dw1 = Tensor::empty(shape.w1, dtype, dev, &ctx);
      const Tensor dw2 = Tensor::empty(shape.w2, dtype, dev, &ctx);

      // The check: the dense weight of (w1, w2) is the transpose of the forward of the identity.
      {
        Tensor eye_host = Tensor::zeros({n, n}, DType::f32);
        for (int64_t i = 0; i < n; ++i) eye_host.data_as<float>()[i * n + i] = 1.f;
        const Tensor eye_t = dtype == DType::f32 ? eye_host : eye_host.to_dtype(dtype);
        const Tensor eye = dev.is_cpu() ? eye_t : eye_t.to(dev, &ctx);
        const Tensor columns = Tensor::empty({n, n}, dtype, dev, &ctx);
        monarch_linear_fwd(ctx, columns, eye, w1, w2);
        std::vector<float> c = to_host_f32(ctx, columns);  // (n_in, n_out) = weightᵀ
        Tensor dense_host = Tensor::empty({n, n}, DType::f32);
        for (int64_t o = 0; o < n; ++o)
          for (int64_t i = 0; i < n; ++i) dense_host.data_as<float>()[o * n + i] = c[i * n + o];
        const Tensor dense_t = dtype == DType::f32 ? dense_host : dense_host.to_dtype(dtype);
        const Tensor dense = dev.is_cpu() ? dense_t : dense_t.to(dev, &ctx);
        linear_fwd(ctx, out, x, dense);
        const std::vector<float> want = to_host_f32(ctx, out);
        monarch_linear_fwd(ctx, out, x, w1, w2, Tensor(), mid);
        const std::vector<float> got = to_host_f32(ctx, out);
        double err = 0, scale = 1e-30;
        for (size_t i = 0; i < want.size(); ++i) {
          err = std::max(err, double(std::abs(got[i] - want[i])));
          scale = std::max(scale, double(std::abs(want[i])));
        }
        if (!(err <= check_tol * scale)) {
          std::printf("CHECK FAILED: n = %lld, %lld blocks: max |monarch - dense| = %g of %g\n",
                      static_cast<long long>(n), static_cast<long long>(b), err, scale);
          checks_ok = false;
        }
      }

      const Timing monarch_fwd = time_best(
          ctx, [&] { monarch_linear_fwd(ctx, out, x, w1, w2, Tensor(), mid); }, reps);
      const Timing monarch_bwd = time_best(
          ctx, [&] { monarch_linear_bwd(ctx, dx, dw1, dw2, Tensor(), dout, x, w1, w2, mid); },
          reps);
      const double ideal = double(b) / 2;
      for (const auto& [pass, dense, monarch, mult] :
           {std::tuple<const char*, Timing, Timing, double>{"fwd", dense_fwd, monarch_fwd, 1.0},
            {"bwd", dense_bwd, monarch_bwd, 2.0}}) {
        const double flops = mult * dense_flops, monarch_flops = flops / ideal;
        const double speedup = dense.wall_ms / monarch.wall_ms;
        const double speedup_cpu = dense.cpu_ms / monarch.cpu_ms;
        std::printf("%6lld %6lld %-4s %9.2f %9.2f %9.1f %9.2f %9.2f %9.1f %7.2fx %7.2fx %5.1fx\n",
                    static_cast<long long>(n), static_cast<long long>(b), pass, dense.wall_ms,
                    dense.cpu_ms, flops / dense.wall_ms * 1e-6, monarch.wall_ms, monarch.cpu_ms,
                    monarch_flops / monarch.wall_ms * 1e-6, speedup, speedup_cpu, ideal);
        results.push_back({{"n", n},
                           {"nblocks", b},
                           {"pass", pass},
                           {"dense_ms", dense.wall_ms},
                           {"dense_cpu_ms", dense.cpu_ms},
                           {"dense_gflop_per_s", flops / dense.wall_ms * 1e-6},
                           {"monarch_ms", monarch.wall_ms},
                           {"monarch_cpu_ms", monarch.cpu_ms},
                           {"monarch_gflop_per_s", monarch_flops / monarch.wall_ms * 1e-6},
                           {"speedup", speedup},
                           {"speedup_cpu_time", speedup_cpu},
                           {"ideal_speedup", ideal}});
      }
    }
  }
  if (!json_path.empty()) {
    const nlohmann::json doc = {{"device", device_name},
                                {"dtype", dtype_name(dtype)},
                                {"rows", M},
                                {"cpu_threads", ctx.cpu_threads()},
                                {"reps", reps},
                                {"commit", LONGCTX_GIT_COMMIT},
                                {"checks_ok", checks_ok},
                                {"results", results}};
    std::FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fputs(doc.dump(2).c_str(), f);
    std::fclose(f);
  }
  return checks_ok ? 0 : 1;
}
