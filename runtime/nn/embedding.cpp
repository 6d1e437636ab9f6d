#include "runtime/nn/embedding.h"

#include <limits>

#include "runtime/nn/device_check.h"
#include "runtime/nn/init_normal.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/transformer_ops.h"

namespace dp {

namespace {

// "[1, 5]": the multi-index of flat position `flat` in `shape`.
std::string position_of(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    const int64_t n = shape[i] > 0 ? shape[i] : 1;
    index[i] = flat % n;
    flat /= n;
  }
  std::string out;
  for (size_t i = 0; i < index.size(); ++i) out += (i ? ", " : "") + std::to_string(index[i]);
  return "[" + out + "]";
}

}  // namespace

Embedding::Embedding(std::string name, size_t num, size_t dim, uint64_t seed, float init_std,
                     std::string weight_name)
    : Module(std::move(name)),
      num_(num),
      dim_(dim),
      weight_(weight_name.empty() ? name_ + ".weight" : std::move(weight_name),
              {static_cast<int64_t>(num), static_cast<int64_t>(dim)}) {
  DP_CHECK(num > 0 && dim > 0, "{}: an embedding needs num > 0 and dim > 0, got [{}, {}]", name_,
           num, dim);
  DP_CHECK(num <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           "{}: {} rows exceed the int32 index range", name_, num);
  normal_init(weight_.value, init_std, seed, weight_.name);
  register_parameter(weight_);
  needs_input_grad_ = false;
}

const Tensor& Embedding::forward(const Tensor& indices) {
  DP_CHECK(indices.defined() && indices.dtype() == DType::i32, "{}: expected int32 indices, got {}",
           name_, indices.defined() ? indices.str() : "an undefined tensor");
  check_param_device(name_, indices, weight_);
  indices_ = indices;
  Shape shape = indices.shape();
  shape.push_back(static_cast<int64_t>(dim_));
  ensure_shape(output_, shape, compute_dtype_, indices.device());
  const int64_t bad = ops::embedding_forward(weight_.value, indices, output_, flag_);
  if (bad >= 0) {
    const int32_t index =
        indices.view(static_cast<size_t>(bad), {1}).to(Device::cpu()).data<int32_t>()[0];
    indices_ = Tensor();
    fail("{}: index {} at position {} of the input {} is outside the table's {} rows [0, {})",
         name_, index, position_of(bad, indices.shape()), indices.str(), num_, num_);
  }
  return output_;
}

const Tensor& Embedding::backward(const Tensor& grad_output) {
  DP_CHECK(indices_.defined(), "{}: backward called without a successful forward", name_);
  check_grad_output(name_, grad_output, output_);
  check_grad_device(name_, indices_, grad_output);
  check_param_device(name_, indices_, weight_);
  // The Reducer may have re-pointed the gradient into a bucket; a wrong-sized view there
  // would be silent memory corruption.
  DP_CHECK(weight_.grad.shape() == weight_.value.shape(),
           "{}: the gradient buffer is {}, expected [{}, {}]", name_, weight_.grad.str(), num_,
           dim_);
  ops::embedding_backward(grad_output, indices_, weight_.grad);
  weight_.grad_ready();
  return no_grad_;
}

}  // namespace dp
