#pragma once
// A fresh directory under /tmp for one test, removed with everything in it afterwards, and
// the small file helpers the data-format tests share.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace dp::test {

class TempDirTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dprun_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  void write_bytes(const std::string& file, const std::vector<uint8_t>& bytes) const {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    ASSERT_TRUE(out.good()) << file;
  }
  void write_text(const std::string& file, const std::string& text) const {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << file;
  }
  static std::vector<uint8_t> read_bytes(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
};

// The dp::Error message `fn` throws, or a marker that it threw none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no dp::Error thrown>";
}

// Whether `msg` contains `what`; on failure, the whole message.
inline ::testing::AssertionResult mentions(const std::string& msg, const std::string& what) {
  if (msg.find(what) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "message: " << msg << "\ndoes not mention: " << what;
}

}  // namespace dp::test

// `msg` is evaluated once: it is often error_of(...), which runs the failing code.
#define EXPECT_MENTIONS(msg, what) EXPECT_TRUE(::dp::test::mentions((msg), (what)))
