// Would pinning layers to threads put the small preset's f32 weights in two L2s? A stand-in for
// a decode step of the d_model 128 llama preset: its 29 f32 GEMVs (4 attention layers: 128, 64,
// 64, 128 rows; 4 MLP layers: 384, 384, 128 rows over 128 or 384 columns; the tied head 256 x
// 128), 3.3 MB a step, each GEMV a simple 16-lane AVX2 FMA loop. Three ways, alternating:
//   one      one thread runs all 29 (today's decode: every GEMV of this model is under the 1 MB
//            threshold of src/cpu/gemv.cpp, so all run on the calling thread);
//   pinned   the first 4 layers always on thread A, the last 4 and the head always on thread B:
//            two hand-offs a step (mutex + condition variable: a sleeping wait, like OpenMP's
//            passive policy), each thread's 1.65 MB staying in its core's L2 if the OS keeps the
//            threads on different cores;
//   half     one thread, only the first half (the L2-resident rate for comparison).
//
//   layer_pinned [steps 2000] [rounds 3] [bind]   (bind: thread A on CPU 0, B on CPU 1)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Matrix {
  int rows, cols;
  std::vector<float> w;
};

__attribute__((target("avx2,fma"))) void gemv(const Matrix& m, const float* x, float* y) {
  for (int o = 0; o < m.rows; ++o) {
    const float* row = m.w.data() + size_t(o) * size_t(m.cols);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int k = 0; k < m.cols; k += 16) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(row + k), _mm256_loadu_ps(x + k), a);
      b = _mm256_fmadd_ps(_mm256_loadu_ps(row + k + 8), _mm256_loadu_ps(x + k + 8), b);
    }
    alignas(32) float lane[8];
    _mm256_store_ps(lane, _mm256_add_ps(a, b));
    float s = 0;
    for (float v : lane) s += v;
    y[o] = s;
  }
}

// Runs matrices [m0, m1) on x, each output to y (x stays the same: no denormals or NaN build
// up, which a fed-back x did).
void run(const std::vector<Matrix>& ms, size_t m0, size_t m1, std::vector<float>& x,
         std::vector<float>& y) {
  for (size_t i = m0; i < m1; ++i) gemv(ms[i], x.data(), y.data());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  // "bind": the calling thread on CPU 0 and thread B on CPU 1 (sched_setaffinity).
  const bool bind = argc > 3 && std::string(argv[3]) == "bind";
  auto pin = [&](int cpu) {
    if (!bind) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
  };
  pin(0);
  std::vector<Matrix> ms;
  auto add = [&](int rows, int cols) {
    Matrix m{rows, cols, std::vector<float>(size_t(rows) * size_t(cols))};
    for (size_t i = 0; i < m.w.size(); ++i) m.w[i] = float(int(i % 7) - 3) * 0.01f;
    ms.push_back(std::move(m));
  };
  for (int layer = 0; layer < 8; ++layer) {
    if (layer % 2 == 0) {
      add(128, 128), add(64, 128), add(64, 128), add(128, 128);
    } else {
      add(384, 128), add(384, 128), add(128, 384);
    }
  }
  add(256, 128);
  size_t bytes = 0;
  for (const auto& m : ms) bytes += m.w.size() * sizeof(float);
  const size_t split = 14;  // layers 0-3: 2 x 4 + 2 x 3 matrices
  size_t first = 0;
  for (size_t i = 0; i < split; ++i) first += ms[i].w.size() * sizeof(float);
  std::printf("%zu matrices, %.2f MB a step; thread A %.2f MB, thread B %.2f MB\n", ms.size(),
              double(bytes) * 1e-6, double(first) * 1e-6, double(bytes - first) * 1e-6);

  std::vector<float> x(384, 0.5f), y(384, 0.0f);
  for (int r = 0; r < rounds; ++r) {
    // one
    std::vector<double> us;
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      run(ms, 0, ms.size(), x, y);
      us.push_back(1e6 * (now_s() - t0));
    }
    const double one = median(us);
    // half
    us.clear();
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      run(ms, 0, split, x, y);
      us.push_back(1e6 * (now_s() - t0));
    }
    const double half = median(us);
    // pinned: thread B waits for A's half, runs its own, hands back.
    std::mutex mu;
    std::condition_variable cv;
    int turn = 0;  // 0: A's, 1: B's, 2: done with the step, -1: stop
    std::thread b([&] {
      pin(1);
      for (;;) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return turn == 1 || turn == -1; });
        if (turn == -1) return;
        lock.unlock();
        run(ms, split, ms.size(), x, y);
        lock.lock();
        turn = 2;
        cv.notify_all();
      }
    });
    us.clear();
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      run(ms, 0, split, x, y);
      {
        std::unique_lock<std::mutex> lock(mu);
        turn = 1;
        cv.notify_all();
        cv.wait(lock, [&] { return turn == 2; });
        turn = 0;
      }
      us.push_back(1e6 * (now_s() - t0));
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      turn = -1;
    }
    cv.notify_all();
    b.join();
    const double pinned = median(us);
    std::printf(
        "round %d: one %.1f us/step (%.1f GB/s), pinned %.1f us (%.1f GB/s), half %.1f us "
        "(%.1f GB/s of its %.2f MB)\n",
        r + 1, one, double(bytes) / one * 1e-3, pinned, double(bytes) / pinned * 1e-3, half,
        double(first) / half * 1e-3, double(first) * 1e-6);
  }
  std::printf("checksum %g\n", double(y[0]));
  return 0;
}
