// Core: dtype conversions, tensor views and copies, contexts, error messages, the ops' overlap
// check.
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "harness.h"
#include "src/core/checks.h"

namespace longctx::test {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_float(to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(to_float(to_bf16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(to_float(to_bf16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(to_float(to_bf16(INFINITY))));
}

TEST(DType, F16RoundTripsEveryFiniteValue) {
  // Every f16 bit pattern that is finite converts to f32 and back unchanged.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if ((bits & 0x7c00u) == 0x7c00u) continue;
    const f16 h{uint16_t(bits)};
    ASSERT_EQ(to_f16(to_float(h)).bits, h.bits) << "bits " << bits;
  }
}

TEST(DType, F16RoundsToNearestEven) {
  EXPECT_EQ(to_float(to_f16(1.0f + 0x1p-11f)), 1.0f);                // tie -> even
  EXPECT_EQ(to_float(to_f16(1.0f + 3 * 0x1p-11f)), 1.0f + 0x1p-9f);  // tie -> even (up)
  EXPECT_EQ(to_float(to_f16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(to_float(to_f16(65520.0f))));
  EXPECT_EQ(to_float(to_f16(0x1p-24f)), 0x1p-24f);           // smallest subnormal
  EXPECT_EQ(to_float(to_f16(0x1p-26f)), 0.0f);               // below half of it: zero
  EXPECT_EQ(to_float(to_f16(-3.0f * 0x1p-25f)), -0x1p-23f);  // 1.5 subnormal ULPs -> 2 (even)
}

TEST(DType, ParseRejectsUnknown) {
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_LONGCTX_ERROR(parse_dtype("f8"), "unknown dtype 'f8'", "f32");
}

TEST(Tensor, ViewsShareMemoryAndKeepItAlive) {
  Tensor base = Tensor::empty({2, 3, 4}, DType::f32);
  float* p = base.data_as<float>();
  for (int i = 0; i < 24; ++i) p[i] = float(i);
  Tensor row = base.select(0, 1);  // (3, 4) starting at 12
  EXPECT_EQ(row.shape(), (Shape{3, 4}));
  EXPECT_EQ(row.data_as<float>()[0], 12.0f);
  Tensor col = base.narrow(2, 1, 2);  // (2, 3, 2), not contiguous
  EXPECT_FALSE(col.is_contiguous());
  Tensor packed = Tensor::empty(col.shape(), DType::f32);
  packed.copy_from(col);
  const float expected[] = {1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(packed.data_as<float>()[i], expected[i]);
  base = Tensor();  // the views still own the storage
  EXPECT_EQ(row.data_as<float>()[1], 13.0f);
}

TEST(Tensor, TransposeAndByteViews) {
  Tensor base = Tensor::empty({2, 3}, DType::f32);
  for (int i = 0; i < 6; ++i) base.data_as<float>()[i] = float(i);
  Tensor t = Tensor::empty({3, 2}, DType::f32);
  t.copy_from(base.transpose(0, 1));
  const float expected[] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data_as<float>()[i], expected[i]);
  Tensor tail = base.view_bytes(8, {4}, DType::f32);
  EXPECT_EQ(tail.data_as<float>()[0], 2.0f);
  EXPECT_LONGCTX_ERROR(base.view_bytes(8, {5}, DType::f32), "outside the tensor's 24 bytes");
}

// Element i of a view, found from its shape and strides alone (the independent reference).
template <typename E>
E element_at(const Tensor& t, int64_t i) {
  int64_t offset = 0;
  for (int d = t.dim() - 1; d >= 0; --d) {
    offset += (i % t.size(d)) * t.strides()[size_t(d)];
    i /= t.size(d);
  }
  return static_cast<const E*>(t.data())[offset];
}

template <typename E>
void expect_copies_every_layout(DType dtype) {
  // A (4, 5, 6, 7) base of distinct values, viewed through narrows, transposes and selects, copied
  // into contiguous and into strided destinations.
  Tensor base = Tensor::empty({4, 5, 6, 7}, dtype);
  for (int64_t i = 0; i < base.numel(); ++i) static_cast<E*>(base.data())[i] = E(i + 1);
  const std::vector<Tensor> sources = {
      base.transpose(1, 3),
      base.narrow(3, 2, 4).transpose(0, 2),
      base.narrow(1, 1, 3).narrow(2, 0, 5),
      base.select(2, 4).transpose(0, 2),
      base.transpose(2, 3).narrow(0, 1, 1),
      base.narrow(3, 6, 1),
  };
  for (size_t k = 0; k < sources.size(); ++k) {
    const Tensor& src = sources[k];
    Tensor packed = Tensor::zeros(src.shape(), dtype);
    packed.copy_from(src);
    // A strided destination: every second column of a wider buffer, transposed back.
    Shape wide = src.shape();
    wide.back() *= 2;
    Tensor holder = Tensor::zeros(wide, dtype);
    Tensor strided = holder.narrow(-1, 0, src.shape().back());
    strided.copy_from(src);
    for (int64_t i = 0; i < src.numel(); ++i) {
      ASSERT_EQ(element_at<E>(packed, i), element_at<E>(src, i)) << "source " << k << " at " << i;
      ASSERT_EQ(element_at<E>(strided, i), element_at<E>(src, i)) << "source " << k << " at " << i;
    }
  }
}

TEST(Tensor, StridedCopiesMatchIndexArithmetic) {
  expect_copies_every_layout<double>(DType::f64);
  expect_copies_every_layout<float>(DType::f32);
  expect_copies_every_layout<int32_t>(DType::i32);
  expect_copies_every_layout<uint16_t>(DType::bf16);
}

// Copies of 1 MiB or more run across the context's threads, split into row tiles of each block:
// the Mamba-2 mixer's shapes (xBC out of the projection, transposed; one block when B = 1, several
// when B > 1) and one whose block count and row count are not multiples of anything.
TEST(Tensor, ParallelStridedCopiesMatchIndexArithmetic) {
  Context ctx(Device::cpu(), 2);
  for (const Shape& shape : {Shape{1, 1000, 700}, Shape{4, 301, 333}, Shape{3, 2, 97, 1201}}) {
    Tensor base = Tensor::empty(shape, DType::f32);
    for (int64_t i = 0; i < base.numel(); ++i) base.data_as<float>()[i] = float(i);
    const int last = int(shape.size()) - 1;
    const std::vector<Tensor> sources = {
        base.narrow(last, 7, shape.back() - 100).transpose(last - 1, last),
        base.transpose(0, last),
        base.narrow(last, 3, shape.back() - 3),
    };
    for (size_t k = 0; k < sources.size(); ++k) {
      const Tensor& src = sources[k];
      ASSERT_GE(src.numel() * 4, int64_t(1) << 20) << "source " << k << " takes the serial path";
      Tensor packed = Tensor::zeros(src.shape(), DType::f32);
      packed.copy_from(src, &ctx);
      Tensor into = Tensor::zeros(src.transpose(0, 1).shape(), DType::f32);
      into.copy_from(packed.transpose(0, 1), &ctx);  // a strided source into a contiguous one
      for (int64_t i = 0; i < src.numel(); ++i)
        ASSERT_EQ(element_at<float>(packed, i), element_at<float>(src, i))
            << "shape " << shape_str(shape) << " source " << k << " at " << i;
      const Tensor src_t = src.transpose(0, 1);
      for (int64_t i = 0; i < src.numel(); ++i)
        ASSERT_EQ(element_at<float>(into, i), element_at<float>(src_t, i))
            << "shape " << shape_str(shape) << " source " << k << " transposed, at " << i;
    }
  }
}

TEST(Tensor, OverlappingStridedCopyReadsTheOldValues) {
  // Shift the columns of a (3, 8) buffer right by one through strided views of the same storage.
  Tensor base = Tensor::empty({3, 8}, DType::f32);
  for (int i = 0; i < 24; ++i) base.data_as<float>()[i] = float(i);
  base.narrow(1, 1, 7).copy_from(base.narrow(1, 0, 7));
  for (int r = 0; r < 3; ++r)
    for (int c = 1; c < 8; ++c) EXPECT_EQ(base.data_as<float>()[r * 8 + c], float(r * 8 + c - 1));
  // A square transpose in place: the staged source keeps it correct.
  Tensor square = Tensor::empty({16, 16}, DType::f32);
  for (int i = 0; i < 256; ++i) square.data_as<float>()[i] = float(i);
  square.copy_from(square.transpose(0, 1));
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) EXPECT_EQ(square.data_as<float>()[i * 16 + j], float(j * 16 + i));
}

// The bytes a tensor's elements occupy, counted from `base`.
std::set<int64_t> bytes_of(const Tensor& t, const void* base) {
  std::set<int64_t> out;
  const int64_t esize = int64_t(dtype_size(t.dtype()));
  const int64_t start = static_cast<const char*>(t.data()) - static_cast<const char*>(base);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t offset = 0, rest = i;
    for (int d = t.dim() - 1; d >= 0; --d) {
      offset += rest % t.size(d) * t.stride(d);
      rest /= t.size(d);
    }
    for (int64_t b = 0; b < esize; ++b) out.insert(start + offset * esize + b);
  }
  return out;
}

// no_overlap against the bytes themselves, over random views of one buffer: it refuses every
// pair that shares a byte, and for two narrows or contiguous runs of one dtype at element
// offsets (the layouts detail::disjoint_rows reads) it refuses only those. Column narrows of
// one buffer were refused though disjoint.
TEST(ArgCheck, NoOverlapRefusesExactlyTheViewsThatShareMemory) {
  Rng rng(12);
  const Tensor buffer = Tensor::zeros({6, 24}, DType::f32);
  struct View {
    Tensor t;
    bool rows;  // a layout disjoint_rows decides exactly
  };
  auto pick = [&]() -> View {
    switch (rng.integer(0, 3)) {
      case 0: {  // some rows, some columns
        const int64_t r0 = rng.integer(0, 5), c0 = rng.integer(0, 23);
        const Tensor t = buffer.narrow(0, r0, rng.integer(1, 6 - r0));
        return {t.narrow(1, c0, rng.integer(1, 24 - c0)), true};
      }
      case 1: {  // a contiguous run as a matrix of its own pitch
        const int64_t start = rng.integer(0, 120), pitch = rng.integer(1, 12);
        const int64_t rows = rng.integer(1, std::max<int64_t>(1, (144 - start) / pitch));
        return {
            buffer.view_bytes(size_t(start) * 4, {rows, std::min(pitch, 144 - start)}, DType::f32),
            true};
      }
      case 2: {  // a transposed narrow: not a row layout
        const int64_t c0 = rng.integer(0, 20);
        return {buffer.narrow(1, c0, rng.integer(2, 24 - c0)).transpose(0, 1), false};
      }
      default: {  // a run at an odd byte offset
        const int64_t start = rng.integer(0, 130);
        return {buffer.view_bytes(size_t(start) * 4 + 2, {rng.integer(1, 13)}, DType::f32), false};
      }
    }
  };
  int exact = 0;
  for (int i = 0; i < 4000; ++i) {
    const View a = pick(), b = pick();
    const std::set<int64_t> bytes_a = bytes_of(a.t, buffer.data());
    bool shared = false;
    for (int64_t byte : bytes_of(b.t, buffer.data())) shared = shared || bytes_a.count(byte);
    bool refused = false;
    try {
      check_arg("op", "a", a.t).no_overlap("b", b.t);
    } catch (const Error&) {
      refused = true;
    }
    if (shared) EXPECT_TRUE(refused) << shape_str(a.t.shape()) << " " << shape_str(b.t.shape());
    if (a.rows && b.rows) {
      EXPECT_EQ(refused, shared) << shape_str(a.t.shape()) << " " << shape_str(b.t.shape());
      exact += !shared;
    }
  }
  EXPECT_GT(exact, 100) << "too few disjoint pairs drawn to test the exact verdict";
}

TEST(Tensor, ErrorsNameWhatWasWrong) {
  Tensor t = Tensor::empty({2, 3}, DType::f32);
  EXPECT_LONGCTX_ERROR(t.reshape({4, 2}), "cannot view (2, 3) as (4, 2)");
  EXPECT_LONGCTX_ERROR(t.data_as<double>(), "holds f32", "asked for f64");
  EXPECT_LONGCTX_ERROR(t.narrow(1, 2, 2), "2 elements from 2 out of range for size 3");
  Tensor other = Tensor::empty({3, 2}, DType::f32);
  EXPECT_LONGCTX_ERROR(t.copy_from(other), "source shape (3, 2)", "destination shape (2, 3)");
  EXPECT_LONGCTX_ERROR(parse_device("gpu"), "unknown device 'gpu'");
}

// A number in a message is the value given, in its shortest exact text: a stream's six digits
// wrote 0.99999999 as "1" ("beta2 must be below 1, got 1").
TEST(Error, MessagesWriteNumbersExactly) {
  EXPECT_EQ(detail::concat("got ", 0.99999999, ", ", 0.1, ", ", 1e-50, ", ", 123456789.0),
            "got 0.99999999, 0.1, 1e-50, 123456789");
  EXPECT_EQ(detail::concat(0.5f, " ", 3, " ", int64_t(-7), " ", 1e300, " ", -0.0),
            "0.5 3 -7 1e+300 -0");
  EXPECT_EQ(detail::concat(std::numeric_limits<double>::infinity(), " ", -std::nan("")),
            "inf -nan");
}

// Sizes from files and configs: an element or byte count that would overflow is an error, never
// a wrapped small number (2^62 floats wrapped to 0 bytes and let a model write past its buffer).
TEST(Tensor, SizesThatOverflowAreErrors) {
  const int64_t big = int64_t(1) << 62;
  EXPECT_EQ(checked_nbytes({3, 5}, DType::f64, "test"), 120u);
  EXPECT_EQ(checked_nbytes({big / 8, 0}, DType::f32, "test"), 0u);
  EXPECT_LONGCTX_ERROR(checked_nbytes({big}, DType::f32, "who"),
                       "who: shape (4611686018427387904,)", "of f32 needs more than 2^62 bytes");
  // Zero sizes do not excuse an overflowing product: the strides would still overflow.
  EXPECT_LONGCTX_ERROR(checked_nbytes({0, big, big}, DType::f32, "who"), "more than 2^62");
  EXPECT_LONGCTX_ERROR(checked_nbytes({2, -1}, DType::f32, "who"), "who: negative size");
  EXPECT_LONGCTX_ERROR(Tensor::empty({big / 4, 8}, DType::f32), "Tensor::empty", "2^62");
  EXPECT_LONGCTX_ERROR(Tensor(nullptr, DType::f32, Device::cpu(), {big, big}), "Tensor: shape");
  const Tensor t = Tensor::empty({16}, DType::f32);
  EXPECT_LONGCTX_ERROR(t.view_bytes(size_t(-8), {4}, DType::f32), "outside the tensor's 64 bytes");
  EXPECT_LONGCTX_ERROR(t.view_bytes(0, {big / 4}, DType::f32), "outside the tensor's 64 bytes");
  EXPECT_LONGCTX_ERROR(t.view_bytes(0, {big, 4}, DType::f32), "2^62");
  EXPECT_LONGCTX_ERROR(t.narrow(0, 8, INT64_MAX), "out of range for size 16");
  EXPECT_LONGCTX_ERROR(t.reshape({big, big, 0}), "2^62");
}

TEST(Tensor, DtypeConversionRoundTrips) {
  Rng rng(1);
  Tensor x = random_tensor({5, 7}, DType::f32, rng);
  Tensor back = x.to_dtype(DType::bf16).to_dtype(DType::f32);
  const Ref a = to_ref(x), b = to_ref(back);
  EXPECT_LE(max_abs_diff(a, b), unit_roundoff(DType::bf16));
  EXPECT_GT(max_abs_diff(a, b), 0.0);
}

TEST(PeakMemory, HostPeakSeesATouchedBufferAndResets) {
  reset_peak_memory(Device::cpu());
  const size_t before = peak_memory_bytes(Device::cpu());
  {
    // 512 MiB, written so it is resident; larger than ASan's quarantine, so freeing it unmaps it
    // under the sanitizers too.
    Tensor big = Tensor::empty({128 << 20}, DType::f32);
    big.fill(1.0);
    EXPECT_GE(peak_memory_bytes(Device::cpu()), before + (500u << 20));
  }
  reset_peak_memory(Device::cpu());
  EXPECT_LT(peak_memory_bytes(Device::cpu()), before + (500u << 20));
}

TEST(PeakMemory, DevicePoolPeakSeesATensor) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& ctx = context_for(Device::cuda(0));
  ctx.synchronize();
  reset_peak_memory(Device::cuda(0));
  const size_t before = peak_memory_bytes(Device::cuda(0));
  {
    Tensor t = Tensor::empty({16 << 20}, DType::f32, Device::cuda(0), &ctx);  // 64 MiB
    ctx.synchronize();
    EXPECT_GE(peak_memory_bytes(Device::cuda(0)), before + (64u << 20));
  }
}

// The one place every --threads ends: a thread count libgomp cannot run (100000 crashed in
// GOMP_parallel, 2^31 - 1 aborted with libgomp's own message) is an error.
TEST(Context, ThreadCountIsBounded) {
  EXPECT_EQ(Context(Device::cpu(), 3).cpu_threads(), 3);
  EXPECT_EQ(Context(Device::cpu(), kMaxCpuThreads).cpu_threads(), kMaxCpuThreads);
  EXPECT_LONGCTX_ERROR(Context(Device::cpu(), 100000), "cpu_threads must be in [0, 1024]",
                       "got 100000");
  EXPECT_LONGCTX_ERROR(Context(Device::cpu(), 2147483647), "got 2147483647");
  EXPECT_LONGCTX_ERROR(Context(Device::cpu(), -1), "got -1");
}

// The op profile (Context::set_profile; `longctx bench scaling --profile`): each op call on a
// profiled context counts once under its public name — also the ops whose backend function
// serves several (rope, the elementwise ops) — and nothing counts without a profile.
TEST(Context, OpProfileCountsEachCallUnderItsPublicName) {
  Context ctx(Device::cpu(), 2);
  Rng rng(5);
  const Tensor x = random_tensor({2, 8, 2, 16}, DType::f32, rng);
  const Tensor w = random_tensor({16}, DType::f32, rng);
  Tensor y = Tensor::empty(x.shape(), DType::f32), z = Tensor::empty(x.shape(), DType::f32);
  Tensor rstd = Tensor::empty({32}, DType::f32);
  OpProfile profile;
  rmsnorm_fwd(ctx, y, rstd, x, w);  // before set_profile: not counted
  ctx.set_profile(&profile);
  const auto start = std::chrono::steady_clock::now();
  rmsnorm_fwd(ctx, y, rstd, x, w);
  rmsnorm_fwd(ctx, y, rstd, x, w);
  rope_fwd(ctx, z, x);
  rope_bwd(ctx, z, z);
  add_fwd(ctx, y, y, x);
  swiglu_fwd(ctx, z, x, y);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ctx.set_profile(nullptr);
  add_fwd(ctx, y, y, x);  // after: not counted
  const std::map<std::string, int64_t> expected = {
      {"rmsnorm_fwd", 2}, {"rope_fwd", 1}, {"rope_bwd", 1}, {"add_fwd", 1}, {"swiglu_fwd", 1}};
  std::map<std::string, int64_t> calls;
  double total = 0;
  for (const auto& [name, entry] : profile.ops) {
    calls[name] = entry.calls;
    EXPECT_GE(entry.seconds, 0) << name;
    total += entry.seconds;
  }
  EXPECT_EQ(calls, expected);
  EXPECT_LE(total, elapsed);  // the ops' times are disjoint parts of the span around them
  EXPECT_EQ(profile.depth, 0);
}

TEST(Context, CudaWithoutDeviceIsAClearError) {
  const CudaStatus& status = cached_cuda_status();
  if (status.available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_FALSE(status.reason.empty());
  EXPECT_LONGCTX_ERROR(Context(Device::cuda(0)), "cuda:0");
  EXPECT_LONGCTX_ERROR(Tensor::empty({4}, DType::f32, Device::cuda(0)), "");
}

TEST(Context, CudaRoundTripWhenPresent) {
  LONGCTX_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Context& ctx = context_for(Device::cuda(0));
  Rng rng(2);
  Tensor x = random_tensor({3, 5, 7}, DType::f32, rng);
  Tensor on_gpu = x.to(Device::cuda(0), &ctx);
  // A strided view copied device -> host goes through the CUDA strided-copy kernel.
  Tensor back = on_gpu.narrow(1, 1, 3).to(Device::cpu(), &ctx);
  Tensor expected = x.narrow(1, 1, 3).to(Device::cpu());
  expect_equal(back, expected, "cuda strided copy");
  // Strided destinations: host -> device and device -> device.
  Tensor dst = Tensor::zeros({3, 5, 7}, DType::f32, Device::cuda(0), &ctx);
  dst.narrow(2, 2, 3).copy_from(x.narrow(2, 0, 3), &ctx);
  dst.narrow(2, 5, 2).copy_from(on_gpu.narrow(2, 0, 2), &ctx);
  Tensor expected_dst = Tensor::zeros({3, 5, 7}, DType::f32);
  expected_dst.narrow(2, 2, 3).copy_from(x.narrow(2, 0, 3));
  expected_dst.narrow(2, 5, 2).copy_from(x.narrow(2, 0, 2));
  expect_equal(dst, expected_dst, "cuda strided destination");
  Tensor filled = Tensor::empty({100}, DType::bf16, Device::cuda(0), &ctx);
  filled.fill(0.5, &ctx);
  EXPECT_EQ(max_abs_diff(to_ref(filled), Ref({100}, 0.5)), 0.0);
}

}  // namespace
}  // namespace longctx::test
