/*
 * api.c - the exported functions of libpocketllm_cpu.so: contexts, the
 * choice of SIMD path, the kernels that need no SIMD, and the argument checks
 * (../common/checks.h, shared with the CUDA library) before every kernel.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

struct pllm_ctx {
    const pllm_kernels *k;
    int threads;
    void *scratch;
    size_t scratch_size;
    char device[96];
    char err[512];
};

/* After struct pllm_ctx: the checks record their messages in ctx->err. */
#include "../common/checks.h"

int pllm_fail(pllm_ctx *ctx, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return code;
}

void pllm_clear_error(pllm_ctx *ctx) { ctx->err[0] = 0; }

void *pllm_scratch(pllm_ctx *ctx, size_t bytes) {
    bytes = pllm_round_up(bytes ? bytes : 1, PLLM_ALIGN);
    if (bytes <= ctx->scratch_size) return ctx->scratch;
    free(ctx->scratch);
    ctx->scratch = aligned_alloc(PLLM_ALIGN, bytes);
    ctx->scratch_size = ctx->scratch ? bytes : 0;
    if (!ctx->scratch) pllm_fail(ctx, PLLM_ERR_NO_MEMORY, "cannot allocate %zu bytes of scratch memory", bytes);
    return ctx->scratch;
}

int pllm_threads(const pllm_ctx *ctx) { return ctx->threads; }

/* ---- choice of SIMD path ---- */

static const pllm_kernels *best_kernels(void) {
#ifdef PLLM_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
        return &pllm_kernels_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &pllm_kernels_avx2;
#endif
    return &pllm_kernels_generic;
}

static int kernels_rank(const pllm_kernels *k) {
#ifdef PLLM_HAVE_X86
    if (k == &pllm_kernels_avx512) return 3;
    if (k == &pllm_kernels_avx2) return 2;
#endif
    (void)k;
    return 1;
}

/* ---- library ---- */

PLLM_API int pllm_abi_version(void) { return PLLM_ABI_VERSION; }

PLLM_API int pllm_backend_score(void) { return 10 * kernels_rank(best_kernels()); }

PLLM_API const char *pllm_backend_name(void) { return "cpu"; }

#define PLLM_STR2(x) #x
#define PLLM_STR(x) PLLM_STR2(x)
#if defined(__clang__)
#define PLLM_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define PLLM_COMPILER "gcc " __VERSION__
#else
#define PLLM_COMPILER "unknown compiler"
#endif
#ifdef _OPENMP
#define PLLM_OMP "OpenMP " PLLM_STR(_OPENMP)
#else
#define PLLM_OMP "no OpenMP"
#endif
#ifdef PLLM_HAVE_X86
#define PLLM_PATHS "AVX-512, AVX2+FMA, portable C"
#else
#define PLLM_PATHS "portable C"
#endif

PLLM_API const char *pllm_build_info(void) {
    return "libpocketllm_cpu ABI " PLLM_STR(PLLM_ABI_VERSION) "; " PLLM_COMPILER "; paths: " PLLM_PATHS
           "; " PLLM_OMP;
}

/* ---- contexts ---- */

PLLM_API int pllm_ctx_create(pllm_ctx **out) {
    if (!out) return PLLM_ERR_INVALID_ARG;
    *out = NULL;
    const pllm_kernels *k = best_kernels();
    const char *isa = getenv("PLLM_CPU_ISA");
    if (isa && *isa) {
        const pllm_kernels *want = NULL;
        if (!strcmp(isa, "generic")) want = &pllm_kernels_generic;
#ifdef PLLM_HAVE_X86
        else if (!strcmp(isa, "avx2")) want = &pllm_kernels_avx2;
        else if (!strcmp(isa, "avx512")) want = &pllm_kernels_avx512;
#endif
        if (!want || kernels_rank(want) > kernels_rank(k)) return PLLM_ERR_UNSUPPORTED;
        k = want;
    }
    pllm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return PLLM_ERR_NO_MEMORY;
    ctx->k = k;
#ifdef _OPENMP
    ctx->threads = omp_get_max_threads();
#else
    ctx->threads = 1;
#endif
    if (ctx->threads < 1) ctx->threads = 1;
    snprintf(ctx->device, sizeof ctx->device, "%s, %d thread%s", k->name, ctx->threads,
             ctx->threads == 1 ? "" : "s");
    *out = ctx;
    return PLLM_OK;
}

PLLM_API void pllm_ctx_destroy(pllm_ctx *ctx) {
    if (!ctx) return;
    free(ctx->scratch);
    free(ctx);
}

PLLM_API const char *pllm_ctx_error(const pllm_ctx *ctx) { return ctx ? ctx->err : "NULL context"; }

PLLM_API const char *pllm_ctx_device(const pllm_ctx *ctx) { return ctx ? ctx->device : "NULL context"; }

/* ---- kernels ---- */

PLLM_API int pllm_assign(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const float *c, int64_t k,
                         int32_t *idx, float *dist) {
    int st = pllm_check_assign(ctx, z, n, dz, c, k, idx);
    if (st) return st;
    if (n == 0) return PLLM_OK;
    return ctx->k->assign(ctx, z, n, dz, c, k, idx, dist);
}

PLLM_API int pllm_codebook_stats(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const int32_t *idx,
                                 int64_t k, double *sums, int64_t *counts) {
    int st = pllm_check_codebook_stats(ctx, z, n, dz, idx, k, sums, counts);
    if (st) return st;
    /* Each thread owns a range of codewords and scans every row, so each sum
     * is taken in row order, exactly as the loop, for any thread count. */
    int nt = pllm_threads(ctx);
    if ((int64_t)nt > k) nt = (int)k;
#pragma omp parallel num_threads(nt) if (n * dz > 65536)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t j0 = k * t / T, j1 = k * (t + 1) / T;
        memset(sums + j0 * dz, 0, (size_t)((j1 - j0) * dz) * sizeof *sums);
        memset(counts + j0, 0, (size_t)(j1 - j0) * sizeof *counts);
        for (int64_t i = 0; i < n; i++) {
            int64_t j = idx[i];
            if (j < j0 || j >= j1) continue;
            counts[j]++;
            double *s = sums + j * dz;
            const float *zi = z + i * dz;
            for (int u = 0; u < dz; u++) s[u] += (double)zi[u];
        }
    }
    return PLLM_OK;
}

PLLM_API int pllm_mlp_forward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p,
                              const float *x, int64_t rows, float *pre, float *y) {
    int st = pllm_check_mlp_forward(ctx, in, hidden, out, p, x, rows, pre, y);
    if (st) return st;
    if (rows == 0) return PLLM_OK;
    return ctx->k->mlp_forward(ctx, in, hidden, out, p, x, rows, pre, y);
}

PLLM_API int pllm_mlp_backward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p, float *g,
                               const float *x, const float *pre, const float *dy, int64_t rows, float *dx) {
    int st = pllm_check_mlp_backward(ctx, in, hidden, out, p, g, x, pre, dy, rows);
    if (st) return st;
    if (rows == 0) return PLLM_OK;
    return ctx->k->mlp_backward(ctx, in, hidden, out, p, g, x, pre, dy, rows, dx);
}

PLLM_API int pllm_rln_forward(pllm_ctx *ctx, int32_t width, const float *p, const float *x, int64_t groups,
                              float *y, float *mean, float *rstd) {
    int st = pllm_check_rln_forward(ctx, width, p, x, groups, y, mean, rstd);
    if (st) return st;
    if (groups == 0) return PLLM_OK;
    return ctx->k->rln_forward(ctx, width, p, x, groups, y, mean, rstd);
}

PLLM_API int pllm_rln_backward(pllm_ctx *ctx, int32_t width, const float *p, float *g, const float *x,
                               const float *dy, int64_t groups, const float *mean, const float *rstd,
                               float *dx) {
    int st = pllm_check_rln_backward(ctx, width, p, g, x, dy, groups, mean, rstd, dx);
    if (st) return st;
    if (groups == 0) return PLLM_OK;
    return ctx->k->rln_backward(ctx, width, p, g, x, dy, groups, mean, rstd, dx);
}

PLLM_API int pllm_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                       float b2, float eps, int64_t step) {
    int st = pllm_check_adam(ctx, p, g, m, v, n, step);
    if (st) return st;
    if (n == 0) return PLLM_OK;
    float bc1 = (float)(1.0 - pow((double)b1, (double)step));
    float bc2 = (float)(1.0 - pow((double)b2, (double)step));
    return ctx->k->adam(ctx, p, g, m, v, n, lr, b1, b2, eps, bc1, bc2);
}

PLLM_API int pllm_decode(pllm_ctx *ctx, int32_t e, int32_t dim, int32_t latent, int32_t hidden, const float *p,
                         const float *c, int64_t k, const int32_t *idx, int64_t rows, float *out) {
    int st = pllm_check_decode(ctx, e, dim, latent, hidden, p, c, k, idx, rows, out);
    if (st) return st;
    if (rows == 0) return PLLM_OK;
    return ctx->k->decode(ctx, e, dim, latent, hidden, p, c, idx, rows, out);
}

PLLM_API int pllm_gemm(pllm_ctx *ctx, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, const float *b, float beta, float *c) {
    int st = pllm_check_gemm(ctx, trans_a, trans_b, m, n, k, a, b, c);
    if (st) return st;
    if (m == 0 || n == 0) return PLLM_OK;
    return ctx->k->gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, b, beta, c);
}
