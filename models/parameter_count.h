#pragma once
// A model's parameter count, planned before any layer is built: the layers allocate and zero
// their parameters one by one, so a model too big for the machine (--hidden with 2000 layers,
// --layers 2^62) grew the process until the kernel killed it, with no error.
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>

namespace dp {

// The product of `factors`; nullopt when it passes 2^64.
std::optional<size_t> checked_product(std::initializer_list<size_t> factors);

// Elements summed over a model's tensors; nullopt once the sum (or a term) passes 2^64.
class ParameterCount {
 public:
  void add(std::optional<size_t> elements);
  void add(std::initializer_list<size_t> factors) { add(checked_product(factors)); }
  std::optional<size_t> value() const { return overflow_ ? std::nullopt : std::optional(n_); }

 private:
  size_t n_ = 0;
  bool overflow_ = false;
};

// Throws a dp::Error when `count` float32 values (nullopt: more than 2^64) exceed this
// machine's memory: "MODEL: SIZES make N parameters, whose float32 values alone exceed this
// machine's X GiB of memory". SIZES names the options that size the model.
void check_parameter_memory(const std::string& model, const std::string& sizes,
                            std::optional<size_t> count);

}  // namespace dp
