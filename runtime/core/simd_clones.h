#pragma once
// DP_SIMD_CLONES on a hot loop's function compiles it for AVX-512, AVX2 and the baseline,
// and the dynamic loader picks the best the CPU has (GCC's and Clang's function
// multiversioning): one binary runs everywhere and uses the wide vectors where they exist.
// Every version does the same arithmetic in the same order (-ffp-contract=off, no reassociated
// sums), so results never depend on which one runs: replicas on different CPUs stay equal.
// Off in sanitizer and fuzzing builds (their runtimes and ifunc resolvers do not mix well).
// The loops' helpers (templates shared by the float32 and bfloat16 entry points) carry
// DP_SIMD_INLINE, so that each version compiles them for its own target.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(DPRUN_NO_SIMD_CLONES)
#define DP_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DP_SIMD_CLONES
#endif
#if defined(__GNUC__)
#define DP_SIMD_INLINE __attribute__((always_inline)) inline
#else
#define DP_SIMD_INLINE inline
#endif
