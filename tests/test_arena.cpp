// ParamArena and ActivationArena: layout, alignment, growth to the high-water mark.
#include "harness.h"
#include "longctx/model/arena.h"

namespace longctx::test {
namespace {

TEST(ParamArena, NamedViewsShareOneAlignedBuffer) {
  Context& ctx = context_for(Device::cpu());
  ParamArena params;
  params.declare("embed", {10, 3});
  params.declare("norm", {3});
  EXPECT_LONGCTX_ERROR(params.declare("norm", {4}), "'norm' declared twice");
  params.allocate(DType::f32, ctx);
  EXPECT_EQ(params.numel(), 33);
  const Tensor& norm = params.get("norm");
  EXPECT_EQ(norm.shape(), (Shape{3}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(norm.data()) % 64, 0u);
  norm.fill(2.0);
  const float* flat = params.flat().data_as<float>();
  const int64_t offset = (static_cast<const float*>(norm.data()) - flat);
  EXPECT_EQ(offset, 32);  // 30 floats = 120 bytes, padded to 128
  EXPECT_EQ(flat[offset + 2], 2.0f);
  ParamArena grads = params.like(DType::f32, ctx);
  EXPECT_EQ(grads.get("embed").shape(), (Shape{10, 3}));
  EXPECT_EQ(grads.get("embed").data_as<float>()[7], 0.0f);  // zeroed
  EXPECT_LONGCTX_ERROR(params.get("head"), "no tensor named 'head'");
}

// A declared shape whose size overflows, or a total past one buffer's limit, is an error before
// anything is allocated (the sizes come from model configs, and so from checkpoints).
TEST(ParamArena, OverflowingSizesAreErrors) {
  Context& ctx = context_for(Device::cpu());
  ParamArena params;
  EXPECT_LONGCTX_ERROR(params.declare("huge", {int64_t(1) << 40, int64_t(1) << 40}),
                       "ParamArena: 'huge'", "2^62");
  // Five tensors of 2^60 bytes each pass one by one; their sum does not.
  for (int i = 0; i < 5; ++i) params.declare("w" + std::to_string(i), {int64_t(1) << 58});
  EXPECT_LONGCTX_ERROR(params.allocate(DType::f32, ctx), "ParamArena: 'w4'",
                       "exceed the 2^62-byte limit");
  ActivationArena arena(ctx);
  arena.reset();
  EXPECT_LONGCTX_ERROR(arena.take({int64_t(1) << 61, 4}, DType::f32), "ActivationArena::take");
}

TEST(ActivationArena, GrowsToTheHighWaterMarkThenReuses) {
  Context& ctx = context_for(Device::cpu());
  ActivationArena arena(ctx);
  arena.reset();
  Tensor a = arena.take({100}, DType::f32);  // 400 -> 448 bytes
  Tensor b = arena.take({10}, DType::f64);   // 80 -> 128 bytes
  EXPECT_EQ(arena.capacity_bytes(), 0u);
  EXPECT_EQ(arena.high_water_bytes(), 576u);
  EXPECT_EQ(arena.pass_bytes(), 576u);
  arena.reset();
  EXPECT_EQ(arena.pass_bytes(), 0u);
  EXPECT_EQ(arena.capacity_bytes(), 576u);
  Tensor c = arena.take({100}, DType::f32);
  Tensor d = arena.take({10}, DType::f64);
  EXPECT_EQ(static_cast<char*>(d.data()) - static_cast<char*>(c.data()), 448);
  d.fill(1.0);
  c.fill(3.0);
  EXPECT_EQ(d.data_as<double>()[9], 1.0);  // no overlap
}

}  // namespace
}  // namespace longctx::test
