#pragma once
// A rank on a GPU keeps its threads on the CPUs near that GPU (its PCI device's local_cpulist),
// as NCCL does for its own threads: `dprun launch` starts GPU ranks unbound (--bind-to none),
// since mpirun's --bind-to numa would give rank i NUMA node i mod N, not its GPU's.
#include <string>
#include <vector>

namespace dp {

// CUDA's PCI bus id ("0000:3B:00.0", or NVML's "00000000:3B:00.0") as the name of the
// device's directory under /sys/bus/pci/devices ("0000:3b:00.0").
std::string pci_sysfs_name(const std::string& bus_id);

struct GpuAffinity {
  std::vector<int> cpus;  // the mask to set; empty: leave it as it is
  std::string note;       // what was decided and why, for a --verbose line
};

// The GPU's local CPUs (ROOT/bus/pci/devices/<id>/local_cpulist) that are also in `current`
// (this process's mask). Left as is when the file cannot be read, when the mask is already
// within them (a user's tighter binding included), or when the mask holds none of them: a
// binding the user chose away from the GPU is theirs to keep.
GpuAffinity plan_gpu_affinity(const std::string& root, const std::string& gpu,
                              const std::string& bus_id, const std::vector<int>& current);

// At a rank's start-up on cuda:`device`: applies plan_gpu_affinity to every thread of this
// process (threads made later inherit it). Never fails the run: a CUDA or sysfs problem leaves
// the mask as it is, with a --verbose note.
void bind_near_gpu(int device);

}  // namespace dp
