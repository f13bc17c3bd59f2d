// Can the d_model 128 llama preset's f32 weights live in two L2s if each of 2 threads always owns
// the same half of every matrix's rows? A stand-in for a decode step: the preset's 29 f32 GEMVs
// (4 attention layers: 128, 64, 64, 128 rows over 128 columns; 4 MLP layers: 384, 384 rows over
// 128, 128 over 384; the tied head 256 x 128), 3.3 MB a step, each a 16-lane AVX2 FMA loop. The
// matrices run one after another (as in a model, where each GEMV's input is the last one's
// output); the two threads meet at a barrier after every matrix. Ways, alternating, medians of
// `steps` steps:
//   one        one thread, all rows (today's decode of this model);
//   fixed      2 threads, thread t always rows [t/2, (t+1)/2) of every matrix, a spinning
//              barrier after each matrix (the cheapest hand-off: both threads busy all along);
//   swapped    the same, but the halves change owner every step: each thread reads what the
//              other core's L2 holds (the control for L2 residency: fixed - swapped is what
//              residency buys, the rest is the parallelism);
//   fixed-once the same as fixed with one barrier a step instead of 29 (not a real decode: the
//              bound on what the barriers cost);
//   sleeping   fixed, but the barrier sleeps (mutex + condition variable: a passive wait);
//   omp        one OpenMP region of 2 threads a matrix, thread t its fixed half (what the
//              library's parallel_for does; OMP_WAIT_POLICY decides whether the worker spins);
//   team-omp-barrier   one OpenMP region a step (a persistent team for the step), thread t its
//              fixed half of every matrix, `omp barrier` between matrices (libgomp's barrier
//              sleeps or spins as OMP_WAIT_POLICY says);
//   team-spin-barrier  the same region a step, the spinning barrier above between matrices.
// (decode-7: this file is decode-6's l2_split.cpp with the two team ways added.)
//
//   g++ -O2 -std=c++17 -pthread -fopenmp team_probe.cpp -o team_probe
//   [OMP_WAIT_POLICY=...] team_probe [steps 2000] [rounds 3]
#include <immintrin.h>

#include <omp.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Matrix {
  int rows, cols;
  std::vector<float> w;
};

__attribute__((target("avx2,fma"))) void gemv_rows(const Matrix& m, int o0, int o1, const float* x,
                                                   float* y) {
  for (int o = o0; o < o1; ++o) {
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A two-thread barrier: spinning (a generation counter) or sleeping (condition variable).
struct Barrier {
  bool sleep = false;
  std::atomic<int> arrived{0}, generation{0};
  std::mutex mu;
  std::condition_variable cv;
  void wait() {
    const int g = generation.load(std::memory_order_acquire);
    if (!sleep) {
      if (arrived.fetch_add(1, std::memory_order_acq_rel) == 1) {
        arrived.store(0, std::memory_order_relaxed);
        generation.store(g + 1, std::memory_order_release);
        return;
      }
      while (generation.load(std::memory_order_acquire) == g) _mm_pause();
      return;
    }
    std::unique_lock<std::mutex> lock(mu);
    if (++arrived == 2) {
      arrived = 0;
      generation.store(g + 1);
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return generation.load() != g; });
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
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
  std::printf("%zu matrices, %.2f MB a step\n", ms.size(), double(bytes) * 1e-6);
  std::vector<float> x(384, 0.5f), y(384, 0.0f);

  // mode: 0 fixed, 1 swapped, 2 fixed-once, 3 sleeping
  auto two = [&](int mode) {
    Barrier bar;
    bar.sleep = mode == 3;
    std::vector<double> us;
    auto step = [&](int t, int s) {
      const int half = mode == 1 ? (t + s) % 2 : t;
      for (const Matrix& m : ms) {
        const int mid = m.rows / 2;
        gemv_rows(m, half ? mid : 0, half ? m.rows : mid, x.data(), y.data());
        if (mode != 2) bar.wait();
      }
      if (mode == 2) bar.wait();
    };
    std::thread b([&] {
      for (int s = 0; s < steps; ++s) step(1, s);
    });
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      step(0, s);
      us.push_back(1e6 * (now_s() - t0));
    }
    b.join();
    return median(us);
  };
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> us;
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      for (const Matrix& m : ms) gemv_rows(m, 0, m.rows, x.data(), y.data());
      us.push_back(1e6 * (now_s() - t0));
    }
    const double one = median(us);
    const double fixed = two(0), swapped = two(1), once = two(2), sleeping = two(3);
    us.clear();
    for (int s = 0; s < steps; ++s) {
      const double t0 = now_s();
      for (const Matrix& m : ms) {
#pragma omp parallel num_threads(2)
        {
          const int t = omp_get_thread_num(), mid = m.rows / 2;
          gemv_rows(m, t ? mid : 0, t ? m.rows : mid, x.data(), y.data());
        }
      }
      us.push_back(1e6 * (now_s() - t0));
    }
    const double omp = median(us);
    // One region a step, the team's barrier (omp barrier) or a spinning one between matrices.
    auto team = [&](bool spin) {
      std::vector<double> t_us;
      Barrier bar;
      for (int s = 0; s < steps; ++s) {
        const double t0 = now_s();
#pragma omp parallel num_threads(2)
        {
          const int t = omp_get_thread_num();
          for (const Matrix& m : ms) {
            const int mid = m.rows / 2;
            gemv_rows(m, t ? mid : 0, t ? m.rows : mid, x.data(), y.data());
            if (spin) {
              bar.wait();
            } else {
#pragma omp barrier
            }
          }
        }
        t_us.push_back(1e6 * (now_s() - t0));
      }
      return median(t_us);
    };
    const double team_omp = team(false), team_spin = team(true);
    auto gbs = [&](double t) { return double(bytes) / t * 1e-3; };
    std::printf(
        "round %d, us/step (GB/s): one %.1f (%.1f), fixed %.1f (%.1f), swapped %.1f (%.1f), "
        "fixed-once %.1f (%.1f), sleeping %.1f (%.1f), omp %.1f (%.1f), team-omp-barrier %.1f, "
        "team-spin-barrier %.1f\n",
        r + 1, one, gbs(one), fixed, gbs(fixed), swapped, gbs(swapped), once, gbs(once), sleeping,
        gbs(sleeping), omp, gbs(omp), team_omp, team_spin);
  }
  std::printf("checksum %g\n", double(y[0]));
  return 0;
}
