/*
 * train.c - the resident training run (pllm_train_*) of libpocketllm_cpu.so:
 * the backend primitives of ../common/train.inc on host memory. The kernels
 * are the exported ones, so a run gives the same bytes as the Go trainer
 * calling them one by one; float64 sums are taken in element order, as Go
 * takes them. Elementwise loops may be split across threads (each element is
 * computed alone); sums are not.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PAR_MIN 65536 /* elements below which a loop stays on one thread */

static int bk_enter(pllm_ctx *ctx) {
    pllm_clear_error(ctx);
    return PLLM_OK;
}
static int bk_finish(pllm_ctx *ctx) { return PLLM_OK; }

static int bk_alloc(pllm_ctx *ctx, size_t bytes, void **out) {
    size_t n = pllm_round_up(bytes ? bytes : 1, PLLM_ALIGN);
    *out = aligned_alloc(PLLM_ALIGN, n);
    if (!*out) return pllm_fail(ctx, PLLM_ERR_NO_MEMORY, "train: cannot allocate %zu bytes", bytes);
    memset(*out, 0, n);
    return PLLM_OK;
}
static void bk_free(pllm_ctx *ctx, void *p) { free(p); }
static int bk_put(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return PLLM_OK;
}
static int bk_get(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return PLLM_OK;
}
static int bk_copy(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) {
    memmove(dst, src, bytes);
    return PLLM_OK;
}
static int bk_zero(pllm_ctx *ctx, void *dst, size_t bytes) {
    memset(dst, 0, bytes);
    return PLLM_OK;
}

/* ---- kernels: the exported ones ---- */

static int bk_mlp_forward(pllm_ctx *ctx, int in, int hid, int out, const float *p, const float *x, int64_t rows,
                          float *pre, float *y) {
    return pllm_mlp_forward(ctx, in, hid, out, p, x, rows, pre, y);
}
static int bk_mlp_backward(pllm_ctx *ctx, int in, int hid, int out, const float *p, float *g, const float *x,
                           const float *pre, const float *dy, int64_t rows, float *dx) {
    return pllm_mlp_backward(ctx, in, hid, out, p, g, x, pre, dy, rows, dx);
}
static int bk_rln_forward(pllm_ctx *ctx, int W, const float *p, const float *x, int64_t groups, float *y, float *mean,
                          float *rstd) {
    return pllm_rln_forward(ctx, W, p, x, groups, y, mean, rstd);
}
static int bk_rln_backward(pllm_ctx *ctx, int W, const float *p, float *g, const float *x, const float *dy,
                           int64_t groups, const float *mean, const float *rstd, float *dx) {
    return pllm_rln_backward(ctx, W, p, g, x, dy, groups, mean, rstd, dx);
}
static int bk_assign(pllm_ctx *ctx, const float *z, int64_t n, int dz, const float *c, int64_t k, int32_t *idx,
                     float *dist) {
    return pllm_assign(ctx, z, n, dz, c, k, idx, dist);
}
static int bk_stats(pllm_ctx *ctx, const float *z, int64_t n, int dz, const int32_t *idx, int64_t k, double *sums,
                    int64_t *counts) {
    return pllm_codebook_stats(ctx, z, n, dz, idx, k, sums, counts);
}
static int bk_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                   float b2, float eps, int64_t step) {
    return pllm_adam(ctx, p, g, m, v, n, lr, b1, b2, eps, step);
}
static int bk_decode(pllm_ctx *ctx, int e, int dim, int lat, int hid, const float *p, const float *c, int64_t k,
                     const int32_t *idx, int64_t rows, float *out) {
    return pllm_decode(ctx, e, dim, lat, hid, p, c, k, idx, rows, out);
}

/* ---- elementwise ---- */

static int bk_gather_rows(pllm_ctx *ctx, const float *src, const int32_t *order, int64_t nrows, int64_t rowlen,
                          float *dst) {
#pragma omp parallel for num_threads(pllm_threads(ctx)) if (nrows * rowlen > PAR_MIN)
    for (int64_t i = 0; i < nrows; i++) memcpy(dst + i * rowlen, src + (int64_t)order[i] * rowlen, (size_t)rowlen * sizeof(float));
    return PLLM_OK;
}
static int bk_gather_codewords(pllm_ctx *ctx, const float *c, const int32_t *idx, int64_t n, int lat, float *dst) {
    return bk_gather_rows(ctx, c, idx, n, lat, dst);
}
static int bk_add(pllm_ctx *ctx, float *dst, const float *a, const float *b, int64_t n) {
#pragma omp parallel for num_threads(pllm_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
    return PLLM_OK;
}
static int bk_add_to(pllm_ctx *ctx, float *dst, const float *src, int64_t n) {
#pragma omp parallel for num_threads(pllm_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    return PLLM_OK;
}
static int bk_add_codewords(pllm_ctx *ctx, float *dst, const float *c, const int32_t *idx, int64_t n, int lat) {
#pragma omp parallel for num_threads(pllm_threads(ctx)) if (n * lat > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *ci = c + (int64_t)idx[i] * lat;
        float *o = dst + i * lat;
        for (int q = 0; q < lat; q++) o[q] += ci[q];
    }
    return PLLM_OK;
}
static int bk_loss_grad(pllm_ctx *ctx, const float *xhat, const float *x, const float *w, int64_t n, float *dxhat,
                        double *s) {
    double se = 0, sw = 0;
    for (int64_t i = 0; i < n; i++) sw += (double)w[i];
    float inv = (float)(2 / sw);
    for (int64_t i = 0; i < n; i++) {
        float e = xhat[i] - x[i];
        se += (double)w[i] * (double)e * (double)e;
        dxhat[i] = inv * w[i] * e;
    }
    s[0] = se, s[1] = sw;
    return PLLM_OK;
}
static int bk_sum(pllm_ctx *ctx, const float *a, int64_t n, double *s) {
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)a[i];
    s[0] = acc;
    return PLLM_OK;
}
static int bk_commit(pllm_ctx *ctx, float *g, const float *z, const float *c, const int32_t *idx, int64_t n, int lat,
                     float coef) {
#pragma omp parallel for num_threads(pllm_threads(ctx)) if (n * lat > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *cw = c + (int64_t)idx[i] * lat;
        for (int q = 0; q < lat; q++) g[i * lat + q] += coef * (z[i * lat + q] - cw[q]);
    }
    return PLLM_OK;
}
static int bk_codebook_grad(pllm_ctx *ctx, float *gc, const float *c, const double *sums, const int64_t *counts,
                            int64_t k, int lat, double coef) {
    for (int64_t j = 0; j < k; j++) {
        if (counts[j] == 0) continue;
        for (int q = 0; q < lat; q++) {
            int64_t o = j * lat + q;
            gc[o] += (float)(coef * ((double)counts[j] * (double)c[o] - sums[o]));
        }
    }
    return PLLM_OK;
}
static int bk_batch_loss(pllm_ctx *ctx, double *acc, const double *se_sw, const double *cb, double lambda,
                         int64_t nlat) {
    acc[0] += se_sw[0] / se_sw[1] + lambda * (cb[0] / (double)nlat);
    return PLLM_OK;
}
static int bk_full_mse(pllm_ctx *ctx, const float *y, const float *x, const float *w, int64_t n, double *s) {
    double se = 0, sw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)x[i];
        se += (double)w[i] * d * d;
        sw += (double)w[i];
    }
    s[0] = se, s[1] = sw;
    return PLLM_OK;
}
static int bk_lloyd(pllm_ctx *ctx, float *c, const double *sums, const int64_t *counts, int64_t k, int lat) {
    for (int64_t j = 0; j < k; j++) {
        if (counts[j] == 0) continue;
        for (int q = 0; q < lat; q++) c[j * lat + q] = (float)(sums[j * lat + q] / (double)counts[j]);
    }
    return PLLM_OK;
}

#include "../common/train.inc"
