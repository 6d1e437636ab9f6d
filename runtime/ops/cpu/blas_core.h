#pragma once
// OpenBLAS picks its GEMM kernels from the CPU model at load time. In virtual machines that
// hide the model (and on CPUs newer than the library) Debian's OpenBLAS 0.3.21 falls back to
// its "Prescott" SSE3 kernels on AVX-512 hardware: every GEMM runs about 3x slower, with no
// message. The only switch is the OPENBLAS_CORETYPE variable, read once when the library
// loads, so a program that finds the fallback re-executes itself with the variable set.
namespace dp {

// The OpenBLAS core a CPU with these features should use when the library fell back to a
// generic one: "SkylakeX" (AVX-512), "Haswell" (AVX2 + FMA), or nullptr (nothing better, or
// the library already chose well, or the user set OPENBLAS_CORETYPE).
const char* better_openblas_core(const char* current_core, bool avx512, bool avx2_fma,
                                 bool user_set);

// Call first thing in main(): when better_openblas_core() names a core for this machine,
// re-executes the program (same arguments, OPENBLAS_CORETYPE set); does not return then.
// Otherwise, or if the re-execution fails, returns and the program runs as it is.
void use_best_openblas_core(char** argv);

}  // namespace dp
