/* The AVX2+FMA path (flags set by CMakeLists.txt). Only reached after CPUID
 * says the CPU has them. */
#define PLLM_ISA_AVX2 1
#define KERNELS_NAME pllm_kernels_avx2
#define KERNELS_LABEL "AVX2+FMA"
#include "kernels.inc.c"
