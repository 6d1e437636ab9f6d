#pragma once
// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11). The value at
// counter c under key k depends on nothing else, so every rank derives the same
// permutation or initialisation from (seed, counter) without sharing state, and a
// resumed run can jump straight to any position.
#include <array>
#include <cmath>
#include <cstdint>

namespace dp {

class Philox {
 public:
  explicit Philox(uint64_t seed, uint64_t stream = 0) : key_{uint32_t(seed), uint32_t(seed >> 32)} {
    ctr_[2] = uint32_t(stream);
    ctr_[3] = uint32_t(stream >> 32);
  }

  // The 4 words at block `counter` (pure function of seed, stream and counter).
  std::array<uint32_t, 4> block(uint64_t counter) const {
    std::array<uint32_t, 4> c = {uint32_t(counter), uint32_t(counter >> 32), ctr_[2], ctr_[3]};
    std::array<uint32_t, 2> k = key_;
    for (int round = 0; round < 10; ++round) {
      uint64_t p0 = uint64_t(0xD2511F53u) * c[0];
      uint64_t p1 = uint64_t(0xCD9E8D57u) * c[2];
      c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1],
           uint32_t(p0)};
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    return c;
  }

  // Sequential draws on top of the counter.
  uint32_t next_u32() {
    if (idx_ == 4) {
      buf_ = block(pos_++);
      idx_ = 0;
    }
    return buf_[idx_++];
  }
  // The first draw is the high word. Two statements, because the operands of one | are
  // unsequenced: the order (and so every permutation drawn) was the compiler's choice.
  uint64_t next_u64() {
    const uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }
  // Uniform integer in [0, n) without modulo bias (Lemire's method).
  uint64_t below(uint64_t n) {
    for (;;) {
      uint64_t x = next_u64();
      __uint128_t m = __uint128_t(x) * n;
      uint64_t lo = uint64_t(m);
      if (lo >= n || lo >= (-n) % n) return uint64_t(m >> 64);
    }
  }
  // Standard normal (Box-Muller).
  float normal() {
    float u1 = uniform(), u2 = uniform();
    if (u1 < 1e-12f) u1 = 1e-12f;
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530717958647692f * u2);
  }

 private:
  std::array<uint32_t, 2> key_;
  std::array<uint32_t, 4> ctr_{};
  std::array<uint32_t, 4> buf_{};
  int idx_ = 4;
  uint64_t pos_ = 0;
};

}  // namespace dp
