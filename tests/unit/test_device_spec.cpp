// --device as written (parse_device_spec), before it meets a node's GPUs: every rule is
// checked here without CUDA.
#include <gtest/gtest.h>

#include <string>

#include "runtime/core/device.h"
#include "runtime/core/error.h"

using dp::DeviceSpec;

namespace {

std::string parse_error(const std::string& spec) {
  try {
    dp::parse_device_spec(spec);
  } catch (const dp::Error& e) {
    return e.what();
  }
  return "<no dp::Error thrown>";
}

}  // namespace

TEST(DeviceSpec, ParsesTheFourForms) {
  EXPECT_EQ(dp::parse_device_spec("auto").kind, DeviceSpec::Kind::auto_pick);
  EXPECT_EQ(dp::parse_device_spec("cpu").kind, DeviceSpec::Kind::cpu);
  DeviceSpec cuda = dp::parse_device_spec("cuda");
  EXPECT_EQ(cuda.kind, DeviceSpec::Kind::cuda);
  EXPECT_EQ(cuda.index, -1);
  EXPECT_EQ(dp::parse_device_spec("cuda:0").index, 0);
  EXPECT_EQ(dp::parse_device_spec("cuda:7").index, 7);
  EXPECT_EQ(dp::parse_device_spec("cuda:12").index, 12);
  EXPECT_EQ(dp::parse_device_spec("cuda:007").index, 7);
  EXPECT_EQ(dp::parse_device_spec("cuda:2147483647").index, 2147483647);
}

TEST(DeviceSpec, RefusesJunkSignsAndHugeIndices) {
  // std::stoi read cuda:1abc as cuda:1, and took spaces and a plus sign.
  for (const char* spec :
       {"cuda:1abc", "cuda:", "cuda:x", "cuda: 1", "cuda:+1", "cuda:1 ", "cuda:1.0", "cuda:0x1"}) {
    const std::string m = parse_error(spec);
    EXPECT_NE(m.find(std::string("--device ") + spec + ": expected cuda:N"), std::string::npos)
        << spec << ": " << m;
  }
  std::string m = parse_error("cuda:-1");
  EXPECT_NE(m.find("--device cuda:-1: the device index must not be negative"), std::string::npos)
      << m;
  for (const char* spec : {"cuda:2147483648", "cuda:99999999999999999999"}) {
    m = parse_error(spec);
    EXPECT_NE(m.find("out of range"), std::string::npos) << spec << ": " << m;
    EXPECT_NE(m.find("--device"), std::string::npos) << spec << ": " << m;
  }
  for (const char* spec : {"gpu", "CUDA", "cuda0", "cpu:0", ""}) {
    m = parse_error(spec);
    EXPECT_NE(m.find("unknown device"), std::string::npos) << spec << ": " << m;
  }
}

TEST(DeviceSpec, ResolveDeviceRefusesJunkEvenWithoutCuda) {
  // The spelling is checked before the GPUs are: the same message on every machine.
  try {
    dp::resolve_device("cuda:1abc", 0);
    FAIL() << "cuda:1abc accepted";
  } catch (const dp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda:1abc: expected cuda:N"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(dp::resolve_device("cpu", 3).is_cpu());
}
