// exp_array, expm1_array and softplus_array (src/cpu/exp_array.h), the vectorized f32 exp, expm1
// and softplus of the CPU scans and gates: against the f64 functions rounded once to f32, over the
// whole f32 range that does not round to 0 or overflow, plus the special values. sigmoid_array,
// the gates' sigmoid with its own f32 exp: the same way, and never subnormal. Each of these runs
// with the AVX2 loops and, where the CPU has AVX-512, with the AVX-512 ones (the ISA capped or
// not, src/cpu/isa.h); and the two give the same bits.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "src/cpu/exp_array.h"
#include "src/cpu/isa.h"

namespace longctx::test {
namespace {

int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = std::numeric_limits<int32_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int32_t>::min() - ib;
  return std::abs(int64_t(ia) - int64_t(ib));
}

// The test's ISA: the AVX2 loops, or the AVX-512 ones (skipped on a CPU without them).
class IsaTest : public testing::TestWithParam<cpu::CpuIsa> {
 protected:
  void SetUp() override {
    cpu::set_cpu_isa_cap(GetParam());
    if (cpu::cpu_isa() != GetParam())
      GTEST_SKIP() << "no AVX-512 on this CPU (or LONGCTX_CPU_ISA=avx2): its loops are not run";
  }
  void TearDown() override { cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512); }
};
class ExpArray : public IsaTest {};
class Expm1Array : public IsaTest {};
class SoftplusArray : public IsaTest {};
class SigmoidArray : public IsaTest {};

std::string isa_name(const testing::TestParamInfo<cpu::CpuIsa>& info) {
  return cpu::cpu_isa_name(info.param);
}

TEST_P(ExpArray, F32IsWithinOneUlpOfTheCorrectlyRoundedExp) {
  std::vector<float> x;
  for (double v = -110; v <= 90; v += 1.0 / 1024) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, 88.73f, -87.3f, -103.9f, -104.0f, -104.1f})
    x.push_back(v);
  std::vector<float> y(x.size());
  cpu::exp_array(y.data(), x.data(), int64_t(x.size()));
  int64_t off_by_one = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = float(std::exp(double(x[i])));  // double exp: error far below f32's ulp
    const int64_t d = ulp_distance(y[i], want);
    ASSERT_LE(d, 1) << "exp(" << x[i] << ") = " << y[i] << ", want " << want;
    off_by_one += d;
  }
  // A tie-near case now and then; almost every value is the correctly rounded one.
  EXPECT_LT(double(off_by_one) / double(x.size()), 1e-3);
}

TEST_P(ExpArray, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {std::nanf(""), -inf, inf, -1000.0f, 1000.0f};
  std::vector<float> y(x.size());
  cpu::exp_array(y.data(), x.data(), int64_t(x.size()));
  EXPECT_TRUE(std::isnan(y[0])) << "NaN must propagate (training stops on it)";
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], inf);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], inf);
}

TEST_P(ExpArray, InPlaceAndShortArrays) {
  for (int64_t n : {1, 3, 7, 8, 9, 33}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = -0.37f * float(i);
    std::vector<float> want(v.size());
    for (size_t i = 0; i < v.size(); ++i) want[i] = float(std::exp(double(v[i])));
    cpu::exp_array(v.data(), v.data(), n);
    for (size_t i = 0; i < v.size(); ++i)
      EXPECT_LE(ulp_distance(v[i], want[i]), 1) << n << " " << i;
  }
}

// Both of its forms (the series below |x| = 1/32, exp(x) − 1 above) and the switch between them.
TEST_P(Expm1Array, F32IsWithinOneUlpOfTheCorrectlyRoundedExpm1) {
  std::vector<float> x;
  for (double v = -110; v <= 90; v += 1.0 / 256) x.push_back(float(v));
  for (double v = -0.0625; v <= 0.0625; v += 1.0 / 65536) x.push_back(float(v));
  for (float v : {1e-30f, -1e-30f, 1e-40f, 0.03125f, -0.03125f, 0.0312499f, -0.0312501f, 88.72f,
                  88.73f, -17.4f})
    x.push_back(v);
  std::vector<float> y(x.size());
  cpu::expm1_array(y.data(), x.data(), int64_t(x.size()));
  int64_t off_by_one = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = float(std::expm1(double(x[i])));
    const int64_t d = ulp_distance(y[i], want);
    ASSERT_LE(d, 1) << "expm1(" << x[i] << ") = " << y[i] << ", want " << want;
    off_by_one += d;
  }
  EXPECT_LT(double(off_by_one) / double(x.size()), 1e-3);

  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {std::nanf(""), -inf, inf, -1000.0f, 1000.0f, 0.0f, -0.0f};
  std::vector<float> out(special.size());
  cpu::expm1_array(out.data(), special.data(), int64_t(special.size()));
  EXPECT_TRUE(std::isnan(out[0])) << "NaN must propagate";
  EXPECT_EQ(out[1], -1.0f);
  EXPECT_EQ(out[2], inf);
  EXPECT_EQ(out[3], -1.0f);
  EXPECT_EQ(out[4], inf);
  EXPECT_EQ(out[5], 0.0f);
  EXPECT_FALSE(std::signbit(out[5]));
  EXPECT_EQ(out[6], 0.0f);
  EXPECT_TRUE(std::signbit(out[6])) << "expm1(-0) = -0";
}

TEST_P(SoftplusArray, F32IsWithinOneUlpOfTheCorrectlyRoundedSoftplus) {
  std::vector<float> x;
  for (double v = -110; v <= 30; v += 1.0 / 1024) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 19.999f, 20.0f, 20.001f, -20.7f, -21.0f})
    x.push_back(v);
  std::vector<float> y(x.size());
  cpu::softplus_array(y.data(), x.data(), int64_t(x.size()));
  int64_t off_by_one = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = double(x[i]);
    const float want = float(v > 20 ? v : std::log1p(std::exp(v)));
    const int64_t d = ulp_distance(y[i], want);
    ASSERT_LE(d, 1) << "softplus(" << x[i] << ") = " << y[i] << ", want " << want;
    off_by_one += d;
  }
  EXPECT_LT(double(off_by_one) / double(x.size()), 1e-3);

  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {std::nanf(""), -inf, inf};
  std::vector<float> out(3);
  cpu::softplus_array(out.data(), special.data(), 3);
  EXPECT_TRUE(std::isnan(out[0])) << "NaN must propagate";
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], inf);
}

// sigmoid_array's f32 path (its own f32 exp) against the f64 sigmoid rounded once to f32.
TEST_P(SigmoidArray, F32IsWithinTwoUlpOfTheCorrectlyRoundedSigmoid) {
  std::vector<float> x;
  for (double v = -87; v <= 20; v += 1.0 / 1024) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, -86.99f, 16.6f, 17.4f}) x.push_back(v);
  std::vector<float> y(x.size());
  cpu::sigmoid_array(y.data(), x.data(), int64_t(x.size()));
  int64_t worst = 0, exact = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = float(1.0 / (1.0 + std::exp(-double(x[i]))));
    const int64_t d = ulp_distance(y[i], want);
    ASSERT_LE(d, 2) << "sigmoid(" << x[i] << ") = " << y[i] << ", want " << want;
    worst = std::max(worst, d);
    exact += d == 0;
  }
  // Most values are the correctly rounded ones (measured: 68 % exact, 32 % 1 ulp, 0.04 % 2 ulp):
  // a polynomial or range reduction off by a consistent ulp would leave almost none exact.
  EXPECT_GT(double(exact) / double(x.size()), 0.5) << "worst " << worst << " ulp";
}

// Below x = -87 the result is 0 (the true value is below 1.7e-38), and no result is subnormal:
// a subnormal would cost a microcode assist per instruction (src/cpu/exp_array.cpp).
TEST_P(SigmoidArray, F32NeverSubnormalAndSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {std::nanf(""), -inf, inf, -1000.0f, 1000.0f, -87.5f, -88.0f, -104.0f};
  for (double v = -120; v <= 120; v += 0.25) x.push_back(float(v));
  std::vector<float> y(x.size());
  cpu::sigmoid_array(y.data(), x.data(), int64_t(x.size()));
  EXPECT_TRUE(std::isnan(y[0])) << "NaN must propagate (training stops on it)";
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 1.0f);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], 1.0f);
  for (size_t i = 5; i < x.size(); ++i) {
    EXPECT_TRUE(y[i] == 0.0f || std::fpclassify(y[i]) == FP_NORMAL) << x[i] << " -> " << y[i];
    EXPECT_NEAR(y[i], 1.0 / (1.0 + std::exp(-double(x[i]))), 1.7e-38 + 2.4e-7 * y[i]) << x[i];
  }
}

TEST_P(SigmoidArray, InPlaceShortArraysAndF64) {
  for (int64_t n : {1, 3, 7, 8, 9, 33}) {
    std::vector<float> v(static_cast<size_t>(n));
    std::vector<double> w(v.size());
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.37f * float(i - 4);
    for (size_t i = 0; i < v.size(); ++i) w[i] = double(v[i]);
    const std::vector<double> w_in = w;
    std::vector<float> want(v.size());
    for (size_t i = 0; i < v.size(); ++i) want[i] = float(1.0 / (1.0 + std::exp(-double(v[i]))));
    cpu::sigmoid_array(v.data(), v.data(), n);
    cpu::sigmoid_array(w.data(), w.data(), n);
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_LE(ulp_distance(v[i], want[i]), 2) << n << " " << i;
      // f64: std::exp, the same value as longctx::sigmoid, bit for bit.
      EXPECT_EQ(w[i], sigmoid(w_in[i])) << n << " " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, ExpArray, testing::Values(cpu::CpuIsa::avx2, cpu::CpuIsa::avx512),
                         isa_name);
INSTANTIATE_TEST_SUITE_P(Isa, Expm1Array, testing::Values(cpu::CpuIsa::avx2, cpu::CpuIsa::avx512),
                         isa_name);
INSTANTIATE_TEST_SUITE_P(Isa, SoftplusArray,
                         testing::Values(cpu::CpuIsa::avx2, cpu::CpuIsa::avx512), isa_name);
INSTANTIATE_TEST_SUITE_P(Isa, SigmoidArray, testing::Values(cpu::CpuIsa::avx2, cpu::CpuIsa::avx512),
                         isa_name);

// The AVX-512 loops against the AVX2 ones, bit for bit, on every 1021st float bit pattern (NaNs,
// infinities, subnormals and both signs among them) in arrays of 1 to 67 elements, in place, so
// that every length of the vector loops' tails is reached.
TEST(ExpArraysIsa, Avx512GivesTheAvx2Bits) {
  if (cpu::cpu_isa() != cpu::CpuIsa::avx512)
    GTEST_SKIP() << "no AVX-512 on this CPU (or LONGCTX_CPU_ISA=avx2): nothing to compare";
  std::vector<float> x;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 1021) {
    const uint32_t bits = uint32_t(u);
    float v;
    std::memcpy(&v, &bits, 4);
    x.push_back(v);
  }
  using Fn = void (*)(float*, const float*, int64_t);
  const std::pair<const char*, Fn> fns[] = {{"exp_array", cpu::exp_array},
                                            {"expm1_array", cpu::expm1_array},
                                            {"softplus_array", cpu::softplus_array},
                                            {"sigmoid_array", cpu::sigmoid_array}};
  for (const auto& [name, fn] : fns) {
    std::vector<float> avx2 = x, avx512 = x;
    for (size_t begin = 0, n = 1; begin < x.size(); begin += n, n = n % 67 + 1) {
      const int64_t len = int64_t(std::min(n, x.size() - begin));
      cpu::set_cpu_isa_cap(cpu::CpuIsa::avx2);
      fn(avx2.data() + begin, avx2.data() + begin, len);
      cpu::set_cpu_isa_cap(cpu::CpuIsa::avx512);
      fn(avx512.data() + begin, avx512.data() + begin, len);
    }
    for (size_t i = 0; i < x.size(); ++i) {
      uint32_t a, b;
      std::memcpy(&a, &avx2[i], 4);
      std::memcpy(&b, &avx512[i], 4);
      ASSERT_EQ(a, b) << name << "(" << x[i] << "): AVX2 " << avx2[i] << ", AVX-512 " << avx512[i];
    }
  }
}

}  // namespace
}  // namespace longctx::test
