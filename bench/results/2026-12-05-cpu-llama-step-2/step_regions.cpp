// Probe (not part of the build): the llama preset's training step (or prefill), 4096 tokens a
// batch, 2 threads, against a library built with region-instrumentation.diff: every parallel
// region's per-thread busy time (CLOCK_THREAD_CPUTIME_ID, which does not count a passive worker's
// sleep or time taken by other processes), summed by the op whose lambda ran, over REPS steps
// after one warm-up: the slower thread's sum is that op's wall time on an idle machine, all
// threads' its CPU time; "loss" is their difference from a perfect split. The library side also
// needs in src/cpu/linear.cpp (dlsym finds them):
//   extern "C" __attribute__((visibility("default"))) void s8_regions_reset() {
//   longctx::cpu::g_regions.reset(); } extern "C" __attribute__((visibility("default"))) void
//   s8_regions_print(const char* l) { longctx::cpu::g_regions.print(l); } g++ -O2 -std=c++17
//   -fopenmp -I include step_regions.cpp -Lbuild-cpu -llongctx -ldl -o regions
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive S8_REGIONS=1 ./regions T REPS train|prefill
#include <dlfcn.h>
#include <cstdio>
#include <random>
#include <string>
#include "longctx/longctx.h"
#include "longctx/model/model.h"
using namespace longctx;
int main(int argc, char** argv) {
  auto reset = (void (*)())dlsym(RTLD_DEFAULT, "s8_regions_reset");
  auto print = (void (*)(const char*))dlsym(RTLD_DEFAULT, "s8_regions_print");
  const int64_t T = std::stoll(argv[1]), B = std::max<int64_t>(1, 4096 / T);
  const int reps = std::atoi(argv[2]);
  const bool train = std::string(argv[3]) == "train";
  Context ctx(Device::cpu(), 2);
  ModelConfig config = ModelConfig::load("models/presets/llama.json");
  Model model(config, ctx, DType::f32, 1);
  std::mt19937_64 rng(T);
  Tensor x = Tensor::empty({B, T}, DType::i32), y = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) static_cast<int32_t*>(x.data())[i] = int32_t(rng() % 256);
  for (int64_t i = 0; i < B * T; ++i) static_cast<int32_t*>(y.data())[i] = int32_t(rng() % 256);
  auto step = [&] {
    if (train) {
      model.forward(x, y);
      model.backward();
    } else
      model.forward(x);
    ctx.synchronize();
  };
  step();
  reset();
  for (int r = 0; r < reps; ++r) step();
  char label[64];
  std::snprintf(label, sizeof label, "T=%lld %s, sums over %d steps:", (long long)T, argv[3], reps);
  print(label);
}
