// KDA's in-block pair loop of load_chunk (C = 64, K = 128, blocks of 16 rows, P and M): the
// library's form before (w = k_j ⊙ E_ij stored, then dot(k_i, w) and dot(q_i, w), dot<float> as in
// gated_delta_rule.cpp) against kda_pairs_f32's (four pairs' chains side by side), alternating in
// one process, one thread; checks the two give the same bits.
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>
constexpr long C = 64, K = 128, EB = 16;
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
template <class R, class A, class B>
__attribute__((noinline)) R dot(const A* a, const B* b, long n) {
  R part[8] = {};
  long i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) part[l] += R(a[i + l]) * R(b[i + l]);
  for (; i < n; ++i) part[0] += R(a[i]) * R(b[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}
inline float tree8(__m256 v) {
  alignas(32) float p[8];
  _mm256_store_ps(p, v);
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
struct Ch {
  std::vector<float> k, q, E;
  float scale = 0.088f;
  const float* e_at(long i, long j) const { return &E[(i * (i + 1) / 2 + j) * K]; }
};
template <int NJ>
void pairs(const Ch& ch, long i, long j, float* Pi, float* Mi) {
  const float* ki = ch.k.data() + i * K;
  const float* qi = ch.q.data() + i * K;
  __m256 accP[NJ], accM[NJ];
  for (int n = 0; n < NJ; ++n) accP[n] = accM[n] = _mm256_setzero_ps();
  for (long c = 0; c < K; c += 8) {
    const __m256 kv = _mm256_loadu_ps(ki + c), qv = _mm256_loadu_ps(qi + c);
    for (int n = 0; n < NJ; ++n) {
      const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(ch.k.data() + (j + n) * K + c),
                                     _mm256_loadu_ps(ch.e_at(i, j + n) + c));
      accP[n] = _mm256_fmadd_ps(kv, w, accP[n]);
      accM[n] = _mm256_fmadd_ps(qv, w, accM[n]);
    }
  }
  for (int n = 0; n < NJ; ++n) {
    Pi[j + n] = j + n < i ? tree8(accP[n]) : 0.f;
    Mi[j + n] = ch.scale * tree8(accM[n]);
  }
}
void before(const Ch& ch, float* P, float* M) {
  std::vector<float> w(K);
  for (long i = 0; i < C; ++i)
    for (long j = i / EB * EB; j <= i; ++j) {
      const float* kj = ch.k.data() + j * K;
      const float* e = ch.e_at(i, j);
      for (long c = 0; c < K; ++c) w[c] = kj[c] * e[c];
      P[i * C + j] = j < i ? dot<float>(ch.k.data() + i * K, w.data(), K) : 0.f;
      M[i * C + j] = ch.scale * dot<float>(ch.q.data() + i * K, w.data(), K);
    }
}
void after(const Ch& ch, float* P, float* M) {
  for (long i = 0; i < C; ++i) {
    long j = i / EB * EB;
    for (; j + 4 <= i + 1; j += 4) pairs<4>(ch, i, j, P + i * C, M + i * C);
    switch (i + 1 - j) {
      case 3:
        pairs<3>(ch, i, j, P + i * C, M + i * C);
        break;
      case 2:
        pairs<2>(ch, i, j, P + i * C, M + i * C);
        break;
      case 1:
        pairs<1>(ch, i, j, P + i * C, M + i * C);
    }
  }
}
int main() {
  Ch ch;
  ch.k.resize(C * K);
  ch.q.resize(C * K);
  ch.E.resize(C * (C + 1) / 2 * K);
  unsigned s = 1;
  auto r = [&] {
    s = s * 1664525u + 1013904223u;
    return float(int(s >> 9) % 2001 - 1000) / 1000.f;
  };
  for (auto* v : {&ch.k, &ch.q})
    for (auto& x : *v) x = r() * 0.1f;
  for (auto& x : ch.E) x = 0.5f + 0.5f * std::abs(r());
  std::vector<float> P1(C * C), M1(C * C), P2(C * C), M2(C * C);
  before(ch, P1.data(), M1.data());
  after(ch, P2.data(), M2.data());
  bool same = true;
  for (long i = 0; i < C; ++i)
    for (long j = i / EB * EB; j <= i; ++j)
      same = same && !std::memcmp(&P1[i * C + j], &P2[i * C + j], 4) &&
             !std::memcmp(&M1[i * C + j], &M2[i * C + j], 4);
  printf("same bits: %s\n", same ? "yes" : "NO");
  for (int round = 0; round < 8; ++round) {
    double t[2];
    for (int v = 0; v < 2; ++v) {
      double best = 1e9;
      for (int rep = 0; rep < 200; ++rep) {
        double t0 = now();
        v ? after(ch, P2.data(), M2.data()) : before(ch, P1.data(), M1.data());
        best = std::min(best, now() - t0);
      }
      t[v] = best;
    }
    printf("a chunk's in-block pairs: before %.2f us, after %.2f us (%.2fx)\n", t[0] * 1e6,
           t[1] * 1e6, t[0] / t[1]);
  }
}
