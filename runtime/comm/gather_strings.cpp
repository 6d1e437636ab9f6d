#include "runtime/comm/gather_strings.h"

#include <algorithm>
#include <cstring>

namespace dp {

std::vector<std::string> allgather_strings(ProcessGroup& pg, const std::string& mine,
                                           std::chrono::milliseconds timeout,
                                           const std::string& tag) {
  const int world = pg.size();
  Tensor len = Tensor::from_vector({1}, std::vector<int32_t>{static_cast<int32_t>(mine.size())});
  Tensor lens = Tensor::zeros({world}, DType::i32);
  pg.allgather(len, lens, tag + " (sizes)")->wait(timeout);
  const int32_t* l = lens.data<int32_t>();
  size_t words =
      std::max<size_t>(1, (static_cast<size_t>(*std::max_element(l, l + world)) + 3) / 4);

  Tensor packed = Tensor::zeros({static_cast<int64_t>(words)}, DType::i32);
  std::memcpy(packed.raw(), mine.data(), mine.size());
  Tensor all = Tensor::zeros({static_cast<int64_t>(words) * world}, DType::i32);
  pg.allgather(packed, all, tag)->wait(timeout);

  std::vector<std::string> out(world);
  const char* bytes = static_cast<const char*>(all.raw());
  for (int r = 0; r < world; ++r) out[r].assign(bytes + r * words * 4, static_cast<size_t>(l[r]));
  return out;
}

std::vector<std::vector<std::string>> allgather_lines(ProcessGroup& pg,
                                                      const std::vector<std::string>& mine,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& tag) {
  std::string blob;
  for (const auto& line : mine) blob += line + "\n";
  std::vector<std::string> all = allgather_strings(pg, blob, timeout, tag);
  std::vector<std::vector<std::string>> per_rank(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    for (size_t pos = 0; pos < all[r].size();) {
      size_t nl = all[r].find('\n', pos);
      per_rank[r].push_back(all[r].substr(pos, nl - pos));
      pos = nl + 1;
    }
  }
  return per_rank;
}

}  // namespace dp
