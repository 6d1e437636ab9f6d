// The Module tree: registration, parameters listed once (tied weights), buffers, train/eval
// propagation, and a shared parameter reported ready once per backward, after its last use.
#include <gtest/gtest.h>

#include <memory>

#include "runtime/nn/linear.h"
#include "runtime/nn/module.h"
#include "runtime/nn/sequential.h"

namespace dp {
namespace {

// A leaf that owns one parameter and one buffer and writes the gradient in backward.
class Leaf : public Module {
 public:
  explicit Leaf(const std::string& name)
      : Module(name), w(name + ".w", {3}), stat(name + ".stat", {2}) {
    register_parameter(w);
    register_buffer(stat);
  }
  const Tensor& forward(const Tensor& x) override { return x; }
  const Tensor& backward(const Tensor& g) override {
    w.grad.f32()[0] += 1.0f;
    w.grad_ready();
    return g;
  }
  Parameter w;
  Buffer stat;
};

// Uses another module's parameter (the tied output head of a language model).
class Borrower : public Module {
 public:
  Borrower(std::string name, Parameter& shared) : Module(std::move(name)), p(shared) {
    p.add_use();
    register_parameter(p);
  }
  const Tensor& forward(const Tensor& x) override { return x; }
  const Tensor& backward(const Tensor& g) override {
    p.grad.f32()[0] += 10.0f;
    p.grad_ready();
    return g;
  }
  Parameter& p;
};

class Tree : public Module {
 public:
  Tree() : Module("tree"), a("a"), b("b"), head("head", a.w) {
    register_module(a);
    register_module(b);
    register_module(head);
  }
  const Tensor& forward(const Tensor& x) override { return head.forward(b.forward(a.forward(x))); }
  const Tensor& backward(const Tensor& g) override {
    return a.backward(b.backward(head.backward(g)));
  }
  Leaf a, b;
  Borrower head;
};

TEST(Module, ListsEveryParameterAndBufferOnceInRegistrationOrder) {
  Tree t;
  auto ps = t.parameters();
  ASSERT_EQ(ps.size(), 2u);  // a.w is registered by a and by head: listed once, where first
  EXPECT_EQ(ps[0]->name, "a.w");
  EXPECT_EQ(ps[1]->name, "b.w");
  auto bs = t.buffers();
  ASSERT_EQ(bs.size(), 2u);
  EXPECT_EQ(bs[0]->name, "a.stat");
  EXPECT_EQ(bs[1]->name, "b.stat");
}

// A composite whose graph does not matter here: what it registers does.
class PassThrough : public Module {
 public:
  using Module::Module;
  const Tensor& forward(const Tensor& x) override { return x; }
  const Tensor& backward(const Tensor& g) override { return g; }
};

// A module's own states come before its children's, whatever order they were registered
// in (PyTorch's named_parameters() order): the dump and the bucket order follow it.
class OwnAfterChild : public PassThrough {
 public:
  OwnAfterChild() : PassThrough("m"), child("child"), own("own", {1}) {
    register_module(child);
    register_parameter(own);
  }
  Leaf child;
  Parameter own;
};

TEST(Module, ListsItsOwnParametersBeforeItsChildren) {
  OwnAfterChild m;
  auto ps = m.parameters();
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0]->name, "own");
  EXPECT_EQ(ps[1]->name, "child.w");
}

// Two children of one name (two blocks each holding a Linear "fc1") give two states named
// alike; a checkpoint of them could never be read back, so listing them throws.
class TwoOfOneName : public PassThrough {
 public:
  TwoOfOneName() : PassThrough("twins"), first("fc1"), second("fc1") {
    register_module(first);
    register_module(second);
  }
  Leaf first, second;
};

TEST(Module, RefusesTwoStatesOfOneName) {
  TwoOfOneName m;
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0)
        m.parameters();
      else
        m.buffers();
      FAIL() << "two states named fc1.w were listed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model twins: two states are named 'fc1.w'"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(Module, SharedParameterIsReadyOnceAfterItsLastUse) {
  Tree t;
  std::vector<std::string> ready;
  std::vector<float> grad_when_ready;
  for (Parameter* p : t.parameters())
    p->on_grad_ready = [&](Parameter& q) {
      ready.push_back(q.name);
      grad_when_ready.push_back(q.grad.f32()[0]);
    };
  Tensor x = Tensor::zeros({1});
  for (int step = 0; step < 2; ++step) {
    ready.clear();
    grad_when_ready.clear();
    for (Parameter* p : t.parameters()) p->grad.zero_();
    t.forward(x);
    t.backward(x);
    // head (first use of a.w in backward) must not fire it; a (the last use) does, with
    // both parts summed.
    ASSERT_EQ(ready, (std::vector<std::string>{"b.w", "a.w"})) << "step " << step;
    EXPECT_EQ(grad_when_ready[1], 11.0f);
  }
  EXPECT_EQ(t.a.w.uses(), 2);
}

TEST(Module, TrainAndEvalReachEveryChild) {
  Tree t;
  EXPECT_TRUE(t.training() && t.a.training() && t.head.training());
  t.eval();
  EXPECT_FALSE(t.training() || t.a.training() || t.b.training() || t.head.training());
  t.train();
  EXPECT_TRUE(t.b.training());
}

TEST(Module, SequentialPassesModeAndDtypeToChildrenAddedLater) {
  Sequential s("s");
  s.eval();
  s.set_compute_dtype(DType::bf16);
  Module& fc = s.add(std::make_unique<Linear>("fc", 2, 3, 0));
  EXPECT_FALSE(fc.training());
  EXPECT_EQ(fc.compute_dtype(), DType::bf16);
  EXPECT_EQ(s.parameters().size(), 2u);
}

TEST(Linear, AcceptsLeadingDimensionsAndOptionalBias) {
  Linear fc("fc", 4, 3, 7, /*bias=*/false);
  ASSERT_EQ(fc.parameters().size(), 1u);
  Tensor x = Tensor::zeros({2, 5, 4});
  for (size_t i = 0; i < x.numel(); ++i) x.f32()[i] = 0.1f * float(i % 7) - 0.2f;
  const Tensor& y = fc.forward(x);
  ASSERT_EQ(y.shape(), (Shape{2, 5, 3}));
  // Row r of y is x[r] W^T.
  const float* w = fc.weight().value.f32();
  for (int r = 0; r < 10; ++r)
    for (int o = 0; o < 3; ++o) {
      float ref = 0;
      for (int i = 0; i < 4; ++i) ref += x.f32()[r * 4 + i] * w[o * 4 + i];
      EXPECT_NEAR(y.f32()[r * 3 + o], ref, 1e-6f);
    }
}

}  // namespace
}  // namespace dp
