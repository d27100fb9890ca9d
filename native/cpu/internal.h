/*
 * internal.h - what the CPU library's translation units share. Nothing here
 * is exported: the library is built with -fvisibility=hidden and only the
 * PLLM_API functions of pocketllm.h are visible.
 */
#ifndef PLLM_CPU_INTERNAL_H
#define PLLM_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pocketllm.h"

/* One SIMD path's kernels. Arguments have been checked by api.c: pointers
 * are non-NULL where required, sizes are positive, indices are in range.
 * Each returns PLLM_OK or an error already recorded with pllm_fail. */
typedef struct pllm_kernels {
    const char *name; /* "AVX-512", "AVX2+FMA" or "portable C" */
    int (*assign)(pllm_ctx *ctx, const float *z, int64_t n, int dz, const float *c, int64_t k,
                  int32_t *idx, float *dist);
    int (*mlp_forward)(pllm_ctx *ctx, int in, int hidden, int out, const float *p, const float *x,
                       int64_t rows, float *pre, float *y);
    int (*mlp_backward)(pllm_ctx *ctx, int in, int hidden, int out, const float *p, float *g,
                        const float *x, const float *pre, const float *dy, int64_t rows, float *dx);
    int (*rln_forward)(pllm_ctx *ctx, int width, const float *p, const float *x, int64_t groups,
                       float *y, float *mean, float *rstd);
    int (*rln_backward)(pllm_ctx *ctx, int width, const float *p, float *g, const float *x,
                        const float *dy, int64_t groups, const float *mean, const float *rstd,
                        float *dx);
    /* bc1 = 1-b1^step and bc2 = 1-b2^step, already computed. */
    int (*adam)(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr,
                float b1, float b2, float eps, float bc1, float bc2);
    int (*decode)(pllm_ctx *ctx, int e, int dim, int latent, int hidden, const float *p,
                  const float *c, const int32_t *idx, int64_t rows, float *out);
    /* m, n >= 1 (api.c returns earlier on an empty C); k may be 0. */
    int (*gemm)(pllm_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, const float *b, float beta, float *c);
} pllm_kernels;

extern const pllm_kernels pllm_kernels_generic;
#if defined(__x86_64__) || defined(__i386__)
#define PLLM_HAVE_X86 1
extern const pllm_kernels pllm_kernels_avx2;
extern const pllm_kernels pllm_kernels_avx512;
#endif

/* Records a printf-style message on ctx and returns code. */
int pllm_fail(pllm_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears the message kept on ctx (the start of every exported call). */
void pllm_clear_error(pllm_ctx *ctx);

/* A 64-byte aligned scratch area of at least bytes, owned by ctx and reused
 * by the next call; NULL (with the error recorded) when allocation fails. */
void *pllm_scratch(pllm_ctx *ctx, size_t bytes);

/* Threads a call on ctx may use (>= 1). */
int pllm_threads(const pllm_ctx *ctx);

/* Blocks of ReduceBlock rows whose partials are held at once by the
 * reduction kernels; bounds scratch memory whatever the row count. */
#define PLLM_WAVE_BLOCKS 64

#define PLLM_ALIGN 64
static inline size_t pllm_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

#endif /* PLLM_CPU_INTERNAL_H */
