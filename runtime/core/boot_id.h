#pragma once
// The running kernel's boot id (/proc/sys/kernel/random/boot_id): what processes on one host,
// its containers included, have in common and processes on another host do not (a hostname may
// repeat across machines). Ranks with one boot id share CLOCK_MONOTONIC and, in one pid
// namespace, each other's pids.
#include <string>

namespace dp {

// "" where it cannot be read (not Linux, /proc not mounted).
std::string boot_id();

}  // namespace dp
