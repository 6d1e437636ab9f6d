#include "models/parameter_count.h"

#include <unistd.h>

#include <cstdint>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

std::optional<size_t> checked_product(std::initializer_list<size_t> factors) {
  size_t p = 1;
  for (const size_t f : factors) {
    if (__builtin_mul_overflow(p, f, &p)) return std::nullopt;
  }
  return p;
}

void ParameterCount::add(std::optional<size_t> elements) {
  overflow_ = overflow_ || !elements || __builtin_add_overflow(n_, *elements, &n_);
}

void check_parameter_memory(const std::string& model, const std::string& sizes,
                            std::optional<size_t> count) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const size_t memory = pages > 0 && page > 0 ? size_t(pages) * size_t(page) : SIZE_MAX;
  DP_CHECK(count && *count <= memory / sizeof(float),
           "{}: {} make {} parameters, whose float32 values alone exceed this machine's {:.1f} "
           "GiB of memory",
           model, sizes, count ? fmt::format("{}", *count) : std::string("more than 2^64"),
           double(memory) / (1 << 30));
}

}  // namespace dp
