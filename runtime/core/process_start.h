#pragma once
// When a process of this machine started, for telling a PID's current owner from an earlier
// one: PIDs repeat (a restarted container's PID namespace hands out the same small numbers).

namespace dp {

// Seconds since the epoch at which process `pid` started (from /proc/PID/stat's start time
// after boot and /proc/stat's boot time), or a negative number when it cannot be read (no
// such process, no /proc).
double process_start_time(long pid);

}  // namespace dp
