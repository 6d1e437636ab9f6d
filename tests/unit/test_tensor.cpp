#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/core/tensor.h"

using namespace dp;

TEST(Tensor, ZerosHasShapeAndIsZeroed) {
  Tensor t = Tensor::zeros({3, 5});
  EXPECT_EQ(t.numel(), 15u);
  EXPECT_EQ(t.nbytes(), 60u);
  EXPECT_EQ(t.str(), "float32[3, 5]");
  for (float v : t.to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(Tensor, ViewSharesStorage) {
  Tensor flat = Tensor::zeros({10});
  Tensor v = flat.view(4, {2, 3});
  v.fill_(2.5f);
  EXPECT_TRUE(v.shares_storage_with(flat));
  auto all = flat.to_vector();
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(all[i], (i >= 4) ? 2.5f : 0.0f) << i;
  EXPECT_THROW(flat.view(5, {2, 3}), Error);
}

TEST(Tensor, CloneIsIndependent) {
  Tensor a = Tensor::from_vector({2, 2}, std::vector<float>{1, 2, 3, 4});
  Tensor b = a.clone();
  b.fill_(0);
  EXPECT_EQ(a.to_vector(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_FALSE(a.shares_storage_with(b));
}

TEST(Tensor, DtypeIsChecked) {
  Tensor labels = Tensor::from_vector({3}, std::vector<int32_t>{0, 1, 2});
  EXPECT_EQ(labels.data<int32_t>()[2], 2);
  EXPECT_THROW(labels.f32(), Error);
  EXPECT_THROW(Tensor::from_vector({2}, std::vector<float>{1}), Error);
}

TEST(Tensor, ReshapeAndCopy) {
  Tensor a = Tensor::from_vector({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor r = a.reshape({3, 2});
  EXPECT_EQ(r.dim(0), 3);
  EXPECT_THROW(a.reshape({4}), Error);
  Tensor c = Tensor::zeros({6});
  c.copy_(a);
  EXPECT_EQ(c.to_vector(), a.to_vector());
  EXPECT_DOUBLE_EQ(max_rel_diff(c, r.reshape({6})), 0.0);
}

TEST(Tensor, FromExternalStorageNeitherCopiesNorFrees) {
  auto memory = std::make_shared<std::vector<float>>(8, 1.0f);
  std::weak_ptr<std::vector<float>> alive = memory;
  {
    auto storage =
        std::make_shared<Storage>(memory->data(), memory->size() * sizeof(float), memory);
    EXPECT_FALSE(storage->owns_memory());
    Tensor t = Tensor::from_storage(storage, {2, 3});
    EXPECT_EQ(t.raw(), memory->data());
    EXPECT_EQ(t.str(), "float32[2, 3]");
    Tensor v = t.view(1, {2});
    v.fill_(4.0f);
    EXPECT_TRUE(v.shares_storage_with(t));
    memory.reset();  // the storage's owner keeps it alive
    EXPECT_FALSE(alive.expired());
    EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 4, 4, 1, 1, 1}));
    Tensor i = Tensor::from_storage(storage, {8}, DType::i32);
    EXPECT_EQ(i.numel(), 8u);
  }
  EXPECT_TRUE(alive.expired());  // released with the last tensor, freed by its owner only
}

TEST(Tensor, FromStorageChecksSizeAndAlignment) {
  alignas(8) float mem[4] = {};
  auto storage = std::make_shared<Storage>(mem, sizeof(mem), nullptr);
  EXPECT_THROW(Tensor::from_storage(storage, {5}), Error);
  EXPECT_THROW(Tensor::from_storage(nullptr, {1}), Error);
  auto odd = std::make_shared<Storage>(reinterpret_cast<char*>(mem) + 1, 8, nullptr);
  EXPECT_THROW(Tensor::from_storage(odd, {1}), Error);
  EXPECT_NO_THROW(Tensor::from_storage(storage, {4}));
  EXPECT_TRUE(Storage(4).owns_memory());
}

TEST(Philox, CounterBasedAndDeterministic) {
  Philox a(42), b(42), c(43);
  EXPECT_EQ(a.block(7), b.block(7));
  EXPECT_NE(a.block(7), c.block(7));
  EXPECT_NE(a.block(7), a.block(8));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    float u = a.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(b.below(7), 7u);
}

TEST(Tensor, CudaTensorWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: tests/gpu covers CUDA tensors";
  EXPECT_THROW(Tensor::zeros({4}, DType::f32, Device::cuda(0)), Error);
  Tensor host = Tensor::zeros({4});
  EXPECT_EQ(host.to(Device::cpu()).raw(), host.raw());  // already there: no copy
  EXPECT_EQ(host.str(), "float32[4]");
}

TEST(Tensor, Bf16IsTwoBytes) {
  Tensor t = Tensor::zeros({3, 5}, DType::bf16);
  EXPECT_EQ(t.nbytes(), 30u);
  EXPECT_EQ(t.str(), "bfloat16[3, 5]");
  EXPECT_THROW(t.f32(), Error);
  EXPECT_NO_THROW(t.data<bf16>());
}

TEST(Tensor, PinnedZerosWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: tests/gpu covers pinned memory";
  try {
    Tensor::pinned_zeros({4});
    FAIL() << "pinned memory without a GPU driver";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("pinned") != std::string::npos || what.find("CUDA") != std::string::npos)
        << what;
  }
}
