/*
 * checks.h - the argument checks of the exported kernels, shared by
 * libpocketllm_cpu.so (cpu/api.c) and libpocketllm_cuda.so
 * (cuda/pocketllm.cu) so that both libraries accept the same calls and
 * refuse the rest with the same status and message. Written in the subset
 * of C11 that is also C++17, since nvcc compiles the CUDA library as C++.
 *
 * The including file first defines struct pllm_ctx, with a char array err
 * holding the last message, and declares
 *     int pllm_fail(pllm_ctx *ctx, int code, const char *fmt, ...);
 * which records a printf-style message on ctx and returns code.
 *
 * pllm_check_<kernel> takes the exported function's arguments that have
 * rules. A NULL context gives PLLM_ERR_INVALID_ARG with no message (there
 * is nowhere to put one); otherwise the context's message is cleared and
 * the result is PLLM_OK or the status of the first rule broken, with its
 * message recorded. A library may refuse more (its own limits) after these.
 */
#ifndef PLLM_COMMON_CHECKS_H
#define PLLM_COMMON_CHECKS_H

#include <stdint.h>

#include "pocketllm.h"

/* Sizes are capped so that every product the kernels form fits comfortably
 * in int64 and every per-row buffer in memory. */
#define PLLM_MAX_DIM (1 << 20)

/* Within the checks below, fn names the exported function for messages. */
#define PLLM_CHECK_CTX()                       \
    do {                                       \
        if (!ctx) return PLLM_ERR_INVALID_ARG; \
        ctx->err[0] = 0;                       \
    } while (0)
#define PLLM_REQUIRE(cond, ...)                                                \
    do {                                                                       \
        if (!(cond)) return pllm_fail(ctx, PLLM_ERR_INVALID_ARG, __VA_ARGS__); \
    } while (0)
#define PLLM_DIM_OK(name, v)                                                                          \
    PLLM_REQUIRE((v) >= 1 && (v) <= PLLM_MAX_DIM, "%s: %s = %lld outside [1, %d]", fn, name, (long long)(v), \
                 PLLM_MAX_DIM)
#define PLLM_COUNT_OK(name, v)                                                                              \
    PLLM_REQUIRE((v) >= 0 && (v) <= ((int64_t)1 << 40), "%s: %s = %lld is negative or too large", fn, name, \
                 (long long)(v))
#define PLLM_K_OK(k) \
    PLLM_REQUIRE((k) >= 1 && (k) <= INT32_MAX, "%s: k = %lld outside [1, %d]", fn, (long long)(k), INT32_MAX)
#define PLLM_PTR_OK(name, ptr, needed) PLLM_REQUIRE((ptr) || !(needed), "%s: %s is NULL", fn, name)

static inline int pllm_check_indices(pllm_ctx *ctx, const char *fn, const int32_t *idx, int64_t n, int64_t k) {
    /* A parallel scan would only help for indices not in cache; the kernels
     * stream the same memory right after. */
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || (int64_t)idx[i] >= k)
            return pllm_fail(ctx, PLLM_ERR_INDEX_RANGE, "%s: idx[%lld] = %d is outside [0, %lld)", fn, (long long)i,
                             idx[i], (long long)k);
    return PLLM_OK;
}

static inline int pllm_check_assign(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const float *c, int64_t k,
                                    const int32_t *idx) {
    const char *fn = "assign";
    PLLM_CHECK_CTX();
    PLLM_COUNT_OK("n", n);
    PLLM_DIM_OK("dz", dz);
    PLLM_K_OK(k);
    PLLM_PTR_OK("z", z, n > 0);
    PLLM_PTR_OK("c", c, 1);
    PLLM_PTR_OK("idx", idx, n > 0);
    return PLLM_OK;
}

static inline int pllm_check_codebook_stats(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const int32_t *idx,
                                            int64_t k, const double *sums, const int64_t *counts) {
    const char *fn = "codebook_stats";
    PLLM_CHECK_CTX();
    PLLM_COUNT_OK("n", n);
    PLLM_DIM_OK("dz", dz);
    PLLM_K_OK(k);
    PLLM_PTR_OK("z", z, n > 0);
    PLLM_PTR_OK("idx", idx, n > 0);
    PLLM_PTR_OK("sums", sums, 1);
    PLLM_PTR_OK("counts", counts, 1);
    return pllm_check_indices(ctx, fn, idx, n, k);
}

static inline int pllm_check_mlp_forward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p,
                                         const float *x, int64_t rows, const float *pre, const float *y) {
    const char *fn = "mlp_forward";
    PLLM_CHECK_CTX();
    PLLM_DIM_OK("in", in);
    PLLM_DIM_OK("hidden", hidden);
    PLLM_DIM_OK("out", out);
    PLLM_COUNT_OK("rows", rows);
    PLLM_PTR_OK("p", p, 1);
    PLLM_PTR_OK("x", x, rows > 0);
    PLLM_PTR_OK("pre", pre, rows > 0);
    PLLM_PTR_OK("y", y, rows > 0);
    return PLLM_OK;
}

/* dx may be NULL: the input gradient is then not wanted. */
static inline int pllm_check_mlp_backward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p,
                                          const float *g, const float *x, const float *pre, const float *dy,
                                          int64_t rows) {
    const char *fn = "mlp_backward";
    PLLM_CHECK_CTX();
    PLLM_DIM_OK("in", in);
    PLLM_DIM_OK("hidden", hidden);
    PLLM_DIM_OK("out", out);
    PLLM_COUNT_OK("rows", rows);
    PLLM_PTR_OK("p", p, 1);
    PLLM_PTR_OK("g", g, 1);
    PLLM_PTR_OK("x", x, rows > 0);
    PLLM_PTR_OK("pre", pre, rows > 0);
    PLLM_PTR_OK("dy", dy, rows > 0);
    return PLLM_OK;
}

static inline int pllm_check_rln_forward(pllm_ctx *ctx, int32_t width, const float *p, const float *x, int64_t groups,
                                         const float *y, const float *mean, const float *rstd) {
    const char *fn = "rln_forward";
    PLLM_CHECK_CTX();
    PLLM_DIM_OK("width", width);
    PLLM_COUNT_OK("groups", groups);
    PLLM_PTR_OK("p", p, 1);
    PLLM_PTR_OK("x", x, groups > 0);
    PLLM_PTR_OK("y", y, groups > 0);
    PLLM_PTR_OK("mean", mean, groups > 0);
    PLLM_PTR_OK("rstd", rstd, groups > 0);
    return PLLM_OK;
}

static inline int pllm_check_rln_backward(pllm_ctx *ctx, int32_t width, const float *p, const float *g, const float *x,
                                          const float *dy, int64_t groups, const float *mean, const float *rstd,
                                          const float *dx) {
    const char *fn = "rln_backward";
    PLLM_CHECK_CTX();
    PLLM_DIM_OK("width", width);
    PLLM_COUNT_OK("groups", groups);
    PLLM_PTR_OK("p", p, 1);
    PLLM_PTR_OK("g", g, 1);
    PLLM_PTR_OK("x", x, groups > 0);
    PLLM_PTR_OK("dy", dy, groups > 0);
    PLLM_PTR_OK("mean", mean, groups > 0);
    PLLM_PTR_OK("rstd", rstd, groups > 0);
    PLLM_PTR_OK("dx", dx, groups > 0);
    return PLLM_OK;
}

static inline int pllm_check_adam(pllm_ctx *ctx, const float *p, const float *g, const float *m, const float *v,
                                  int64_t n, int64_t step) {
    const char *fn = "adam";
    PLLM_CHECK_CTX();
    PLLM_COUNT_OK("n", n);
    PLLM_REQUIRE(step >= 1, "%s: step = %lld, must be >= 1", fn, (long long)step);
    PLLM_PTR_OK("p", p, n > 0);
    PLLM_PTR_OK("g", g, n > 0);
    PLLM_PTR_OK("m", m, n > 0);
    PLLM_PTR_OK("v", v, n > 0);
    return PLLM_OK;
}

static inline int pllm_check_decode(pllm_ctx *ctx, int32_t e, int32_t dim, int32_t latent, int32_t hidden,
                                    const float *p, const float *c, int64_t k, const int32_t *idx, int64_t rows,
                                    const float *out) {
    const char *fn = "decode";
    PLLM_CHECK_CTX();
    PLLM_DIM_OK("e", e);
    PLLM_DIM_OK("dim", dim);
    PLLM_DIM_OK("latent", latent);
    PLLM_DIM_OK("hidden", hidden);
    PLLM_REQUIRE((int64_t)e * latent <= PLLM_MAX_DIM, "%s: e*latent = %lld exceeds %d", fn, (long long)e * latent,
                 PLLM_MAX_DIM);
    PLLM_K_OK(k);
    PLLM_COUNT_OK("rows", rows);
    PLLM_PTR_OK("p", p, 1);
    PLLM_PTR_OK("c", c, 1);
    PLLM_PTR_OK("idx", idx, rows > 0);
    PLLM_PTR_OK("out", out, rows > 0);
    return pllm_check_indices(ctx, fn, idx, rows * e, k);
}

/* The largest m, n or k of pllm_gemm, and the largest element count of any
 * of its three matrices. */
#define PLLM_GEMM_MAX_SIDE INT32_MAX
#define PLLM_GEMM_MAX_ELEMS ((int64_t)1 << 40)

static inline int pllm_gemm_elems_ok(int64_t r, int64_t c) { return r == 0 || c <= PLLM_GEMM_MAX_ELEMS / r; }

static inline int pllm_check_gemm(pllm_ctx *ctx, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                  const float *a, const float *b, const float *c) {
    const char *fn = "gemm";
    PLLM_CHECK_CTX();
    PLLM_REQUIRE(trans_a == 0 || trans_a == 1, "%s: trans_a = %d, must be 0 or 1", fn, trans_a);
    PLLM_REQUIRE(trans_b == 0 || trans_b == 1, "%s: trans_b = %d, must be 0 or 1", fn, trans_b);
    PLLM_REQUIRE(m >= 0 && m <= PLLM_GEMM_MAX_SIDE, "%s: m = %lld outside [0, %d]", fn, (long long)m, PLLM_GEMM_MAX_SIDE);
    PLLM_REQUIRE(n >= 0 && n <= PLLM_GEMM_MAX_SIDE, "%s: n = %lld outside [0, %d]", fn, (long long)n, PLLM_GEMM_MAX_SIDE);
    PLLM_REQUIRE(k >= 0 && k <= PLLM_GEMM_MAX_SIDE, "%s: k = %lld outside [0, %d]", fn, (long long)k, PLLM_GEMM_MAX_SIDE);
    PLLM_REQUIRE(pllm_gemm_elems_ok(m, k), "%s: A of %lld x %lld exceeds 2^40 values", fn, (long long)m, (long long)k);
    PLLM_REQUIRE(pllm_gemm_elems_ok(k, n), "%s: B of %lld x %lld exceeds 2^40 values", fn, (long long)k, (long long)n);
    PLLM_REQUIRE(pllm_gemm_elems_ok(m, n), "%s: C of %lld x %lld exceeds 2^40 values", fn, (long long)m, (long long)n);
    PLLM_PTR_OK("a", a, m * k > 0);
    PLLM_PTR_OK("b", b, k * n > 0);
    PLLM_PTR_OK("c", c, m * n > 0);
    return PLLM_OK;
}

#undef PLLM_CHECK_CTX
#undef PLLM_REQUIRE
#undef PLLM_DIM_OK
#undef PLLM_COUNT_OK
#undef PLLM_K_OK
#undef PLLM_PTR_OK

#endif /* PLLM_COMMON_CHECKS_H */
