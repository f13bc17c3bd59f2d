// Probe (not part of the build): linear_bwd through the public API at the small presets'
// projection shapes, M = 4096 rows, 2 threads: the median of REPS CPU times (process, all
// threads) per call in µs, for dx + dweight (as the models call it), dweight alone, dx alone, and
// dweight + dbias. Built once; run against two builds of liblongctx by LD_LIBRARY_PATH (run.sh
// alternates them), so the same binary times main and the branch.
//   g++ -O2 -std=c++17 -fopenmp -I include linear_bwd_probe.cpp -Lbuild-cpu -llongctx -o probe
//   LD_LIBRARY_PATH=build-cpu OMP_WAIT_POLICY=passive ./probe 21 LABEL [cold]
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "longctx/longctx.h"

using namespace longctx;

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  const char* label = argc > 2 ? argv[2] : "";
  // "cold": 64 MB written between calls (not timed), so x and dout come from memory as in a
  // training step, where they were written by ops long before.
  const bool cold = argc > 3 && std::string(argv[3]) == "cold";
  std::vector<char> evict(cold ? 64 << 20 : 0);
  const int64_t M = 4096;
  Context ctx(Device::cpu(), 2);
  // Cout x Cin: llama q/o, k/v, gate/up, down; the lm head; mamba2 in_proj, out_proj.
  const int64_t shapes[][2] = {{128, 128}, {64, 128},  {384, 128}, {128, 384},
                               {256, 128}, {648, 128}, {128, 256}};
  const char* modes[] = {"dx+dw", "dw", "dx", "dw+db"};
  for (const auto& s : shapes) {
    const int64_t Cout = s[0], Cin = s[1];
    const Tensor x = Tensor::empty({M, Cin}, DType::f32),
                 w = Tensor::empty({Cout, Cin}, DType::f32);
    const Tensor dy = Tensor::empty({M, Cout}, DType::f32);
    x.fill(0.5), w.fill(0.25), dy.fill(0.125);
    Tensor dx = Tensor::empty({M, Cin}, DType::f32), dw = Tensor::empty({Cout, Cin}, DType::f32);
    Tensor db = Tensor::empty({Cout}, DType::f32);
    std::printf("%s %4lldx%-4lld", label, (long long)Cout, (long long)Cin);
    for (int mode = 0; mode < 4; ++mode) {
      const Tensor dxm = mode == 0 || mode == 2 ? dx : Tensor();
      const Tensor dwm = mode != 2 ? dw : Tensor();
      const Tensor dbm = mode == 3 ? db : Tensor();
      std::vector<double> cpu;
      for (int r = 0; r < reps + 1; ++r) {
        if (cold) std::fill(evict.begin(), evict.end(), char(r));
        const std::clock_t c0 = std::clock();
        linear_bwd(ctx, dxm, dwm, dbm, dy, x, w);
        if (r) cpu.push_back(double(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      std::sort(cpu.begin(), cpu.end());
      std::printf("  %s %7.0f", modes[mode], cpu[reps / 2] * 1e6);
    }
    std::printf("  (µs CPU, medians of %d)\n", reps);
    std::fflush(stdout);
  }
}
