// Tensors on a CUDA device: allocation, copies both ways, views, zero/fill, to().
#include <gtest/gtest.h>

#include "runtime/core/tensor.h"
#include "runtime/ddp/replica_check.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;

TEST(CudaTensor, ZerosCopiesAndViews) {
  DP_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  Tensor d = Tensor::zeros({3, 7}, DType::f32, gpu);
  EXPECT_TRUE(d.is_cuda());
  EXPECT_EQ(d.str(), "float32[3, 7] on cuda:0");
  for (float v : d.to_vector()) EXPECT_EQ(v, 0.0f);

  std::vector<float> values(21);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * float(i) - 3.0f;
  Tensor host = Tensor::from_vector({3, 7}, values);
  d.copy_(host);  // host -> device
  EXPECT_EQ(d.to_vector(), values);
  EXPECT_EQ(d.to(Device::cpu()).to_vector(), values);

  Tensor row = d.view(7, {7});  // the second row, on the device
  row.fill_(2.5f);
  std::vector<float> expect = values;
  for (size_t i = 7; i < 14; ++i) expect[i] = 2.5f;
  EXPECT_EQ(d.to_vector(), expect);

  Tensor c = d.clone();  // device -> device
  d.zero_();
  EXPECT_EQ(c.to_vector(), expect);
  for (float v : d.to_vector()) EXPECT_EQ(v, 0.0f);
  EXPECT_DOUBLE_EQ(max_rel_diff(c, Tensor::from_vector({3, 7}, expect)), 0.0);
}

TEST(CudaTensor, OddSizesAndInt32) {
  DP_REQUIRE_GPU();
  for (int64_t n : {1, 3, 1000, 65537}) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = int32_t(i * 7 - 5);
    Tensor d = Tensor::from_vector({n}, v).to(Device::cuda(0));
    Tensor back = d.to(Device::cpu());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back.data<int32_t>()[i], v[static_cast<size_t>(i)]);
  }
}

// Ranks of one node compute on different GPUs: the replica check compares the kind of device,
// not its index (a replica on cuda:0 equals one on cuda:1).
TEST(CudaTensor, ReplicaEntryNamesTheDeviceKindNotItsIndex) {
  DP_REQUIRE_GPU();
  EXPECT_EQ(replica_entry("fc1.weight", Tensor::zeros({4, 3}, DType::f32, Device::cuda(0))),
            "fc1.weight float32[4, 3] on cuda");
  EXPECT_EQ(replica_entry("fc1.weight", Tensor::zeros({4, 3})), "fc1.weight float32[4, 3]");
}
