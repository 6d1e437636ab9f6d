#pragma once
// A spin-wait's pause: tells the core (and its hyper-thread sibling) that this loop only polls.
namespace dp {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace dp
