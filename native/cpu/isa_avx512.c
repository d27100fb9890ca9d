/* The AVX-512 path (F, DQ, BW, VL and FMA; flags set by CMakeLists.txt). Only
 * reached after CPUID says the CPU has them. */
#define PLLM_ISA_AVX512 1
#define KERNELS_NAME pllm_kernels_avx512
#define KERNELS_LABEL "AVX-512"
#include "kernels.inc.c"
