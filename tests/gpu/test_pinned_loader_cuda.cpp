// The data loader's pinned batches (pin_memory, used when a run trains on a GPU): page-locked,
// the same batches as an ordinary loader, and copied to the device intact.
#include <cuda_runtime_api.h>

#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/data/dataloader.h"
#include "runtime/data/synthetic.h"
#include "samplers/distributed_sampler.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;

namespace {

bool page_locked(const void* p) {
  cudaPointerAttributes attr{};
  DP_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
  return attr.type == cudaMemoryTypeHost;
}

}  // namespace

TEST(PinnedLoader, PinnedZerosIsPageLockedAndZero) {
  DP_REQUIRE_GPU();
  Tensor t = Tensor::pinned_zeros({7, 13});
  EXPECT_FALSE(t.is_cuda());
  EXPECT_TRUE(page_locked(t.raw()));
  for (float v : t.to_vector()) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(Tensor::pinned_zeros({0}).numel(), 0u);
}

TEST(PinnedLoader, SameBatchesAsAnOrdinaryLoaderAndIntactOnTheDevice) {
  DP_REQUIRE_GPU();
  SyntheticDataset ds(300, 24, 5, 3);
  for (bool prefetch : {false, true}) {
    SCOPED_TRACE(prefetch);
    DistributedSampler sa(ds.size(), 1, 0, true, 9, false), sb(ds.size(), 1, 0, true, 9, false);
    DataLoader plain(ds, sa, 32, prefetch), pinned(ds, sb, 32, prefetch, /*pin_memory=*/true);
    plain.start_epoch(1);
    pinned.start_epoch(1);
    size_t batches = 0;
    while (const Batch* a = plain.next()) {
      const Batch* b = pinned.next();
      ASSERT_NE(b, nullptr);
      EXPECT_TRUE(page_locked(b->x.raw()));
      EXPECT_TRUE(page_locked(b->y.raw()));
      EXPECT_EQ(b->x.to_vector(), a->x.to_vector());
      // The asynchronous copy out of pinned memory, then back: the batch arrived whole.
      Tensor xd = Tensor::zeros(b->x.shape(), DType::f32, Device::cuda(0));
      xd.copy_(b->x);
      EXPECT_EQ(xd.to_vector(), a->x.to_vector());
      ++batches;
    }
    EXPECT_EQ(pinned.next(), nullptr);
    EXPECT_EQ(batches, plain.batches_per_epoch());
  }
}
