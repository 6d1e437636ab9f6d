#pragma once
// dprun's one byte unit for people: MB means 2^20 bytes everywhere (headers, errors, bucket
// options), as PyTorch DDP's bucket_cap_mb does.
namespace dp {

constexpr double kBytesPerMb = 1048576.0;

constexpr double bytes_to_mb(double bytes) {
  return bytes / kBytesPerMb;
}

}  // namespace dp
