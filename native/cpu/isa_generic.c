/* The portable path: plain C for any CPU, also the fallback under the SIMD
 * paths on x86. */
#define KERNELS_NAME pllm_kernels_generic
#define KERNELS_LABEL "portable C"
#include "kernels.inc.c"
