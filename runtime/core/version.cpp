#include "runtime/core/version.h"

#include "dprun_build_id.h"  // generated in the build tree (runtime/core/build_id.cmake)

namespace dp {

const std::string& dprun_version() {
  static const std::string v = std::string(DPRUN_BUILD_ID).empty()
                                   ? std::string(DPRUN_VERSION)
                                   : std::string(DPRUN_VERSION) + " (" + DPRUN_BUILD_ID + ")";
  return v;
}

}  // namespace dp
