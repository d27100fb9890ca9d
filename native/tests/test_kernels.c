/*
 * test_kernels.c - C-level tests of every kernel of one backend library
 * (linked against libpocketllm_cpu.so or libpocketllm_cuda.so) against naive
 * double-precision references written here, sharing no code with the
 * library.
 *
 *   pllm_test_<backend>      run the tests; exit 0 pass, 1 fail, 77 skipped
 *   pllm_test_<backend> --digest print one hash of the outputs of a fixed
 *                            workload (determinism across thread counts)
 *
 * Every output buffer is surrounded by guard bytes that are checked after
 * each call, so an overrun fails the test.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pocketllm.h"

static int failures;
static int checks;

#define CHECK(cond, ...)                                              \
    do {                                                              \
        checks++;                                                     \
        if (!(cond)) {                                                \
            failures++;                                               \
            if (failures < 60) {                                      \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
                fprintf(stderr, __VA_ARGS__);                         \
                fputc('\n', stderr);                                  \
            }                                                         \
        }                                                             \
    } while (0)

#define OKCALL(expr)                                                                        \
    do {                                                                                    \
        int st_ = (expr);                                                                   \
        CHECK(st_ == PLLM_OK, "%s returned %d: %s", #expr, st_, pllm_ctx_error(ctx));       \
    } while (0)

/* ---- random numbers (splitmix64) ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0); }
static float normal(float sd) {
    double u1 = unif(), u2 = unif();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static void fill_normal(float *a, int64_t n, float sd) {
    for (int64_t i = 0; i < n; i++) a[i] = normal(sd);
}

/* ---- guarded buffers ---- */

#define GUARD 64
static void *galloc(size_t bytes) {
    unsigned char *b = malloc(bytes + 2 * GUARD);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(b, 0xA5, GUARD);
    memset(b + GUARD + bytes, 0xA5, GUARD);
    memcpy(b + GUARD - sizeof(size_t), &bytes, sizeof(size_t)); /* size kept inside the front guard */
    memset(b + GUARD, 0x5A, bytes);
    return b + GUARD;
}
static int guards_ok(const void *p) {
    const unsigned char *b = (const unsigned char *)p - GUARD;
    size_t bytes;
    memcpy(&bytes, b + GUARD - sizeof(size_t), sizeof(size_t));
    for (size_t i = 0; i < GUARD - sizeof(size_t); i++)
        if (b[i] != 0xA5) return 0;
    for (size_t i = 0; i < GUARD; i++)
        if (b[GUARD + bytes + i] != 0xA5) return 0;
    return 1;
}
static void gfree(void *p) {
    if (p) free((unsigned char *)p - GUARD);
}
#define GF(n) ((float *)galloc((size_t)(n) * sizeof(float)))
#define GCHECK(p) CHECK(guards_ok(p), "guard bytes of %s overwritten", #p)

/* ---- comparison ---- */

/* |got-ref| <= atol + rtol*scale[i] (scale NULL: |ref|). */
static int close_all(const char *what, const float *got, const double *ref, const double *scale, int64_t n,
                     double rtol, double atol) {
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = scale ? scale[i] : fabs(ref[i]);
        double err = fabs((double)got[i] - ref[i]);
        double tol = atol + rtol * s;
        if (!(err <= tol)) {
            if (first < 0) first = i;
            bad++;
        }
        if (tol > 0 && err / tol > worst) worst = err / tol;
    }
    CHECK(bad == 0, "%s: %lld of %lld elements out of tolerance, first [%lld] got %.9g want %.9g (worst err/tol %.3g)",
          what, (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
          first >= 0 ? ref[first] : 0.0, worst);
    return bad == 0;
}

/* ---- references (float64) ---- */

static double ref_gelu(double a) {
    return 0.5 * a * (1.0 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a)));
}
static double ref_gelu_grad(double a) {
    double k0 = 0.7978845608028654, k1 = 0.044715;
    double t = tanh(k0 * (a + k1 * a * a * a));
    return 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * k0 * (1.0 + 3.0 * k1 * a * a);
}

/* MLP forward for one row, from float params; pre/y values and scales. */
static void ref_mlp_row(int in, int hid, int out, const float *p, const double *x, double *pre, double *pres,
                        double *y, double *ys) {
    const float *w1 = p, *b1 = w1 + (int64_t)hid * in, *w2 = b1 + hid, *b2 = w2 + (int64_t)out * hid;
    double *a = malloc(sizeof(double) * hid);
    for (int u = 0; u < hid; u++) {
        double s = b1[u], sa = fabs(b1[u]);
        for (int i = 0; i < in; i++) {
            s += (double)w1[(int64_t)u * in + i] * x[i];
            sa += fabs((double)w1[(int64_t)u * in + i] * x[i]);
        }
        pre[u] = s;
        if (pres) pres[u] = sa;
        a[u] = ref_gelu(s);
    }
    for (int o = 0; o < out; o++) {
        double s = b2[o], sa = fabs(b2[o]);
        for (int u = 0; u < hid; u++) {
            s += (double)w2[(int64_t)o * hid + u] * a[u];
            /* pre's rounding moves a by up to |gelu'| * its scale */
            double apert = fabs(a[u]) + 1.2 * (pres ? pres[u] : fabs(pre[u]));
            sa += fabs((double)w2[(int64_t)o * hid + u]) * apert;
        }
        y[o] = s;
        if (ys) ys[o] = sa;
    }
    free(a);
}

static void ref_rln_row(int W, const float *p, const double *x, double *y, double *mean, double *rstd) {
    double s = 0;
    for (int w = 0; w < W; w++) s += x[w];
    double mu = s / W, v = 0;
    for (int w = 0; w < W; w++) v += (x[w] - mu) * (x[w] - mu);
    double rs = 1.0 / sqrt(v / W + 1e-5);
    for (int w = 0; w < W; w++) y[w] = (x[w] - mu) * rs * p[w] + p[W + w];
    if (mean) *mean = mu;
    if (rstd) *rstd = rs;
}

/* ---- context ---- */

static pllm_ctx *ctx;

/* =========================================================================
 * assign
 * ========================================================================= */

static void test_assign_case(int64_t n, int dz, int64_t k, int dup, int with_dist) {
    float *z = GF(n * dz), *c = GF(k * dz), *dist = GF(n);
    int32_t *idx = galloc((size_t)n * sizeof(int32_t));
    fill_normal(c, k * dz, 1.0f);
    fill_normal(z, n * dz, 1.0f);
    if (dup && k >= 4) {
        /* codeword k-1 repeats codeword k/2 and codeword 1 repeats 0, and
         * some latents sit exactly on them: exact ties that must go to k/2
         * and 0. */
        memcpy(c + (k - 1) * dz, c + (k / 2) * dz, dz * sizeof(float));
        memcpy(c + 1 * dz, c + 0 * dz, dz * sizeof(float));
        for (int64_t i = 0; i < n; i += 3) memcpy(z + i * dz, c + (k / 2) * dz, dz * sizeof(float));
        for (int64_t i = 1; i < n; i += 7) memcpy(z + i * dz, c + 0 * dz, dz * sizeof(float));
    }
    OKCALL(pllm_assign(ctx, z, n, dz, c, k, idx, with_dist ? dist : NULL));
    double cmax = 0;
    for (int64_t j = 0; j < k; j++) {
        double s = 0;
        for (int t = 0; t < dz; t++) s += (double)c[j * dz + t] * c[j * dz + t];
        if (s > cmax) cmax = s;
    }
    int64_t bad = 0, badtie = 0, baddist = 0;
    for (int64_t i = 0; i < n; i++) {
        double best = INFINITY, zz = 0;
        for (int t = 0; t < dz; t++) zz += (double)z[i * dz + t] * z[i * dz + t];
        for (int64_t j = 0; j < k; j++) {
            double d = 0;
            for (int t = 0; t < dz; t++) {
                double u = (double)z[i * dz + t] - c[j * dz + t];
                d += u * u;
            }
            if (d < best) best = d;
        }
        int32_t j = idx[i];
        if (j < 0 || j >= k) {
            bad++;
            continue;
        }
        double dj = 0;
        for (int t = 0; t < dz; t++) {
            double u = (double)z[i * dz + t] - c[(int64_t)j * dz + t];
            dj += u * u;
        }
        double tol = (dz + 2) * ldexp(1.0, -21) * (zz + cmax);
        if (!(dj <= best + tol)) bad++;
        if (dup && k >= 4 && i % 7 == 1 && j != 0) badtie++; /* written last */
        if (dup && k >= 4 && i % 3 == 0 && i % 7 != 1 && j != k / 2) badtie++;
        if (with_dist && !(fabs(dist[i] - dj) <= 1e-6 * (zz + cmax) + 1e-6 * dj)) baddist++;
    }
    CHECK(bad == 0, "assign n=%lld dz=%d k=%lld: %lld latents not at a nearest codeword", (long long)n, dz, (long long)k,
          (long long)bad);
    CHECK(badtie == 0, "assign n=%lld dz=%d k=%lld: %lld exact ties not resolved to the lowest index", (long long)n, dz,
          (long long)k, (long long)badtie);
    CHECK(baddist == 0, "assign n=%lld dz=%d k=%lld: %lld wrong distances", (long long)n, dz, (long long)k,
          (long long)baddist);
    GCHECK(idx);
    GCHECK(dist);
    gfree(z);
    gfree(c);
    gfree(dist);
    gfree(idx);
}

/* Near ties: each latent has a codeword at squared distance 0.0100 and, at
 * a lower index, one at 0.0106. The gap is far above the documented
 * tolerance (about 1e-4 here), so the closer one must win. The pair is 1
 * index apart for even latents and 16 apart (the same SIMD lane) for odd. */
static void test_assign_near_ties(void) {
    const int64_t n = 64, k = 64 * n;
    const int dz = 8;
    float *z = GF(n * dz), *c = GF(k * dz);
    int32_t *idx = galloc((size_t)n * sizeof(int32_t)), *want = malloc((size_t)n * sizeof(int32_t));
    fill_normal(z, n * dz, 1.0f);
    fill_normal(c, k * dz, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = 64 * i + (i % 16), hi = lo + (i % 2 ? 16 : 1);
        float u[8], v[8], nu = 0, nv = 0;
        for (int t = 0; t < dz; t++) {
            u[t] = normal(1.0f);
            v[t] = normal(1.0f);
            nu += u[t] * u[t];
            nv += v[t] * v[t];
        }
        for (int t = 0; t < dz; t++) {
            c[lo * dz + t] = z[i * dz + t] + u[t] * sqrtf(0.0106f / nu);
            c[hi * dz + t] = z[i * dz + t] + v[t] * sqrtf(0.0100f / nv);
        }
        want[i] = (int32_t)hi;
    }
    OKCALL(pllm_assign(ctx, z, n, dz, c, k, idx, NULL));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += idx[i] != want[i];
    CHECK(bad == 0, "assign near ties: %lld of %lld latents not at the closer codeword", (long long)bad, (long long)n);
    gfree(z);
    gfree(c);
    gfree(idx);
    free(want);
}

static void test_assign(void) {
    test_assign_near_ties();
    test_assign_case(1000, 8, 1000, 1, 1);
    test_assign_case(777, 8, 4096, 1, 0);
    test_assign_case(513, 3, 100, 1, 1); /* odd dz, k not a multiple of any chunk */
    test_assign_case(100, 4, 1, 0, 1);   /* k = 1 */
    test_assign_case(5, 16, 70, 1, 1);   /* fewer latents than a tile */
    test_assign_case(301, 2, 257, 1, 1);
    test_assign_case(64, 33, 65, 1, 1); /* wide latent */
    test_assign_case(3, 1, 5, 0, 1);
    /* an exact midpoint tie: z = 0 between c0 = e1 and c1 = -e1 (k = 2) */
    {
        float c[2 * 4] = {1, 0, 0, 0, -1, 0, 0, 0}, z[4] = {0, 0, 0, 0}, d = -1;
        int32_t j = -1;
        OKCALL(pllm_assign(ctx, z, 1, 4, c, 2, &j, &d));
        CHECK(j == 0 && d == 1.0f, "midpoint tie: idx %d dist %g, want 0 and 1", j, d);
    }
    /* n = 0 with NULL buffers */
    OKCALL(pllm_assign(ctx, NULL, 0, 8, (const float[8]){0}, 1, NULL, NULL));
}

/* =========================================================================
 * codebook_stats: exact (each sum in row order, in float64)
 * ========================================================================= */

static void test_stats_case(int64_t n, int dz, int64_t k) {
    float *z = GF(n * dz);
    int32_t *idx = galloc((size_t)n * sizeof(int32_t));
    double *sums = galloc((size_t)k * dz * sizeof(double)), *rs = calloc((size_t)k * dz, sizeof(double));
    int64_t *counts = galloc((size_t)k * sizeof(int64_t)), *rc = calloc((size_t)k, sizeof(int64_t));
    fill_normal(z, n * dz, 3.0f);
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)(rnd64() % (uint64_t)(k > 3 ? k - 2 : k)); /* some unused */
    for (int64_t i = 0; i < n; i++) {
        rc[idx[i]]++;
        for (int t = 0; t < dz; t++) rs[(int64_t)idx[i] * dz + t] += (double)z[i * dz + t];
    }
    OKCALL(pllm_codebook_stats(ctx, z, n, dz, idx, k, sums, counts));
    CHECK(memcmp(counts, rc, (size_t)k * sizeof(int64_t)) == 0, "codebook_stats n=%lld k=%lld: counts differ",
          (long long)n, (long long)k);
    int64_t bad = 0;
    for (int64_t q = 0; q < k * dz; q++)
        if (sums[q] != rs[q]) bad++;
    CHECK(bad == 0, "codebook_stats n=%lld dz=%d k=%lld: %lld sums differ from the row-order sum", (long long)n, dz,
          (long long)k, (long long)bad);
    GCHECK(sums);
    GCHECK(counts);
    /* an index out of range: error, outputs untouched */
    if (n > 0) {
        memset(sums, 0x11, (size_t)k * dz * sizeof(double));
        memset(counts, 0x22, (size_t)k * sizeof(int64_t));
        int32_t keep = idx[n / 2];
        idx[n / 2] = (int32_t)k;
        int st = pllm_codebook_stats(ctx, z, n, dz, idx, k, sums, counts);
        CHECK(st == PLLM_ERR_INDEX_RANGE, "codebook_stats with idx = k: status %d, want %d", st, PLLM_ERR_INDEX_RANGE);
        CHECK(strstr(pllm_ctx_error(ctx), "idx[") != NULL, "codebook_stats error message: %s", pllm_ctx_error(ctx));
        idx[n / 2] = -1;
        st = pllm_codebook_stats(ctx, z, n, dz, idx, k, sums, counts);
        CHECK(st == PLLM_ERR_INDEX_RANGE, "codebook_stats with idx = -1: status %d", st);
        idx[n / 2] = keep;
        unsigned char *sb = (unsigned char *)sums, *cb = (unsigned char *)counts;
        int touched = 0;
        for (size_t q = 0; q < (size_t)k * dz * sizeof(double); q++) touched |= sb[q] != 0x11;
        for (size_t q = 0; q < (size_t)k * sizeof(int64_t); q++) touched |= cb[q] != 0x22;
        CHECK(!touched, "codebook_stats wrote outputs on an index error");
    }
    gfree(z);
    gfree(idx);
    gfree(sums);
    gfree(counts);
    free(rs);
    free(rc);
}

static void test_stats(void) {
    test_stats_case(5000, 8, 300);
    test_stats_case(1001, 3, 7);
    test_stats_case(10, 4, 1);
    /* n = 0: all zero */
    double s[6];
    int64_t cnt[3];
    memset(s, 0x33, sizeof s);
    memset(cnt, 0x33, sizeof cnt);
    OKCALL(pllm_codebook_stats(ctx, NULL, 0, 2, NULL, 3, s, cnt));
    int zero = 1;
    for (int q = 0; q < 6; q++) zero &= s[q] == 0.0;
    for (int q = 0; q < 3; q++) zero &= cnt[q] == 0;
    CHECK(zero, "codebook_stats n=0 must zero sums and counts");
}

/* =========================================================================
 * MLP
 * ========================================================================= */

static void test_mlp_case(int in, int hid, int out, int64_t rows) {
    int64_t np = PLLM_MLP_PARAMS(in, hid, out);
    float *p = GF(np), *x = GF(rows * in), *pre = GF(rows * hid), *y = GF(rows * out);
    float *dy = GF(rows * out), *dx = GF(rows * in), *g = GF(np), *g2 = GF(np);
    fill_normal(p, np, 1.0f);
    /* weights ~ 1/sqrt(fan in) so activations stay O(1) and gelu sees both tails */
    for (int64_t q = 0; q < (int64_t)hid * in; q++) p[q] *= 1.5f / sqrtf((float)in);
    for (int64_t q = (int64_t)hid * in + hid; q < (int64_t)hid * in + hid + (int64_t)out * hid; q++)
        p[q] /= sqrtf((float)hid);
    fill_normal(x, rows * in, 1.0f);
    fill_normal(dy, rows * out, 1.0f);
    fill_normal(g, np, 0.1f);
    memcpy(g2, g, np * sizeof(float));

    OKCALL(pllm_mlp_forward(ctx, in, hid, out, p, x, rows, pre, y));
    double *rpre = malloc(sizeof(double) * rows * hid), *rpres = malloc(sizeof(double) * rows * hid);
    double *ry = malloc(sizeof(double) * rows * out), *rys = malloc(sizeof(double) * rows * out);
    double *xd = malloc(sizeof(double) * in);
    for (int64_t r = 0; r < rows; r++) {
        for (int i = 0; i < in; i++) xd[i] = x[r * in + i];
        ref_mlp_row(in, hid, out, p, xd, rpre + r * hid, rpres + r * hid, ry + r * out, rys + r * out);
    }
    char what[96];
    snprintf(what, sizeof what, "mlp_forward %dx%dx%d rows=%lld pre", in, hid, out, (long long)rows);
    close_all(what, pre, rpre, rpres, rows * hid, 2e-6, 1e-7);
    snprintf(what, sizeof what, "mlp_forward %dx%dx%d rows=%lld y", in, hid, out, (long long)rows);
    close_all(what, y, ry, rys, rows * out, 4e-6, 1e-7);
    GCHECK(pre);
    GCHECK(y);

    /* backward against the reference, from the float pre the forward wrote */
    const float *w1 = p, *w2 = p + (int64_t)hid * in + hid;
    double *rg = calloc(np, sizeof(double)), *rgs = calloc(np, sizeof(double));
    double *rdx = malloc(sizeof(double) * rows * in), *rdxs = malloc(sizeof(double) * rows * in);
    double *dp = malloc(sizeof(double) * hid), *dps = malloc(sizeof(double) * hid);
    double *gw1 = rg, *gb1 = rg + (int64_t)hid * in, *gw2 = gb1 + hid, *gb2 = gw2 + (int64_t)out * hid;
    double *sw1 = rgs, *sb1 = rgs + (int64_t)hid * in, *sw2 = sb1 + hid, *sb2 = sw2 + (int64_t)out * hid;
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * out, *xr = x + r * in, *prer = pre + r * hid;
        for (int u = 0; u < hid; u++) {
            double a = ref_gelu(prer[u]), gp = ref_gelu_grad(prer[u]);
            double da = 0, das = 0;
            for (int o = 0; o < out; o++) {
                gw2[(int64_t)o * hid + u] += dyr[o] * a;
                sw2[(int64_t)o * hid + u] += fabs(dyr[o]) * (fabs(a) + 1e-6);
                da += (double)dyr[o] * w2[(int64_t)o * hid + u];
                das += fabs((double)dyr[o] * w2[(int64_t)o * hid + u]);
            }
            dp[u] = da * gp;
            dps[u] = das * (fabs(gp) + 1e-6 * (1 + fabs(prer[u]))); /* gelu' approximations on SIMD paths */
            gb1[u] += dp[u];
            sb1[u] += dps[u];
            for (int i = 0; i < in; i++) {
                gw1[(int64_t)u * in + i] += dp[u] * xr[i];
                sw1[(int64_t)u * in + i] += dps[u] * fabs(xr[i]);
            }
        }
        for (int o = 0; o < out; o++) {
            gb2[o] += dyr[o];
            sb2[o] += fabs(dyr[o]);
        }
        for (int i = 0; i < in; i++) {
            double s = 0, sa = 0;
            for (int u = 0; u < hid; u++) {
                s += dp[u] * w1[(int64_t)u * in + i];
                sa += dps[u] * fabs(w1[(int64_t)u * in + i]);
            }
            rdx[r * in + i] = s;
            rdxs[r * in + i] = sa;
        }
    }
    for (int64_t q = 0; q < np; q++) {
        rg[q] += g[q];
        rgs[q] += fabs(g[q]);
    }
    OKCALL(pllm_mlp_backward(ctx, in, hid, out, p, g, x, pre, dy, rows, dx));
    snprintf(what, sizeof what, "mlp_backward %dx%dx%d rows=%lld g", in, hid, out, (long long)rows);
    close_all(what, g, rg, rgs, np, 1e-5, 1e-7);
    snprintf(what, sizeof what, "mlp_backward %dx%dx%d rows=%lld dx", in, hid, out, (long long)rows);
    close_all(what, dx, rdx, rdxs, rows * in, 1e-5, 1e-7);
    GCHECK(g);
    GCHECK(dx);
    /* dx = NULL gives the same g */
    OKCALL(pllm_mlp_backward(ctx, in, hid, out, p, g2, x, pre, dy, rows, NULL));
    CHECK(memcmp(g, g2, np * sizeof(float)) == 0, "mlp_backward: g differs when dx is NULL");
    GCHECK(g2);

    free(rpre);
    free(rpres);
    free(ry);
    free(rys);
    free(xd);
    free(rg);
    free(rgs);
    free(rdx);
    free(rdxs);
    free(dp);
    free(dps);
    gfree(p);
    gfree(x);
    gfree(pre);
    gfree(y);
    gfree(dy);
    gfree(dx);
    gfree(g);
    gfree(g2);
}

/* gelu and gelu' alone, through a 1x1x1 MLP with unit weights, over the
 * whole range including both tails and huge inputs. */
static void test_gelu(void) {
    const int64_t n = 4001 + 8;
    float p[4] = {1, 0, 1, 0}, g[4] = {0, 0, 0, 0};
    float *x = GF(n), *pre = GF(n), *y = GF(n), *dy = GF(n), *dx = GF(n);
    for (int64_t i = 0; i < 4001; i++) x[i] = -20.0f + 40.0f * (float)i / 4000.0f;
    const float big[8] = {-1e30f, -1e4f, -100.0f, -9.5f, 9.5f, 100.0f, 1e4f, 1e30f};
    memcpy(x + 4001, big, sizeof big);
    for (int64_t i = 0; i < n; i++) dy[i] = 1.0f;
    OKCALL(pllm_mlp_forward(ctx, 1, 1, 1, p, x, n, pre, y));
    OKCALL(pllm_mlp_backward(ctx, 1, 1, 1, p, g, x, pre, dy, n, dx));
    int64_t bad = 0, badg = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = x[i], want = ref_gelu(a), wantg = ref_gelu_grad(a);
        /* the SIMD paths measure 1.6e-7 |a| and 3.3e-7 (1+|a|) at most */
        if (!(fabs(y[i] - want) <= 2.5e-7 * fabs(a) + 1e-30)) {
            if (bad++ < 3) fprintf(stderr, "  gelu(%g) = %.9g, want %.9g\n", a, y[i], want);
        }
        if (!(fabs(dx[i] - wantg) <= 6e-7 * (1 + fabs(a)))) {
            if (badg++ < 3) fprintf(stderr, "  gelu'(%g) = %.9g, want %.9g\n", a, dx[i], wantg);
        }
    }
    CHECK(bad == 0, "gelu: %lld of %lld values off", (long long)bad, (long long)n);
    CHECK(badg == 0, "gelu': %lld of %lld values off", (long long)badg, (long long)n);
    gfree(x);
    gfree(pre);
    gfree(y);
    gfree(dy);
    gfree(dx);
}

static void test_mlp(void) {
    test_gelu();
    test_mlp_case(8, 16, 8, 1000);  /* the default shape, rows not a multiple of 256 */
    test_mlp_case(8, 16, 8, 256);
    test_mlp_case(8, 16, 4, 3);
    test_mlp_case(3, 5, 7, 700);    /* odd everything */
    test_mlp_case(17, 33, 9, 300);  /* wider than one vector, with tails */
    test_mlp_case(1, 1, 1, 10);
    test_mlp_case(4, 16, 4, 520);
    OKCALL(pllm_mlp_forward(ctx, 8, 16, 8, (const float[280]){0}, NULL, 0, NULL, NULL));
}

/* =========================================================================
 * RLN
 * ========================================================================= */

static void test_rln_case(int W, int64_t groups) {
    float *p = GF(2 * W), *x = GF(groups * W), *y = GF(groups * W), *mean = GF(groups), *rstd = GF(groups);
    float *dy = GF(groups * W), *dx = GF(groups * W), *g = GF(2 * W);
    for (int w = 0; w < W; w++) {
        p[w] = 1.0f + normal(0.3f);
        p[W + w] = normal(0.3f);
    }
    for (int64_t r = 0; r < groups; r++) {
        float off = normal(2.0f), sd = 0.2f + (float)unif() * 3.0f; /* rows of different location and spread */
        for (int w = 0; w < W; w++) x[r * W + w] = off + normal(sd);
    }
    fill_normal(dy, groups * W, 1.0f);
    fill_normal(g, 2 * W, 0.1f);
    double *ry = malloc(sizeof(double) * groups * W), *rys = malloc(sizeof(double) * groups * W);
    double *rm = malloc(sizeof(double) * groups), *rr = malloc(sizeof(double) * groups);
    double *rms = malloc(sizeof(double) * groups), *xd = malloc(sizeof(double) * W);
    for (int64_t r = 0; r < groups; r++) {
        double sa = 0;
        for (int w = 0; w < W; w++) {
            xd[w] = x[r * W + w];
            sa += fabs(xd[w]);
        }
        ref_rln_row(W, p, xd, ry + r * W, rm + r, rr + r);
        rms[r] = sa / W;
        for (int w = 0; w < W; w++)
            rys[r * W + w] = fabs(ry[r * W + w]) + (fabs(p[w]) + 1) * (1 + (sa / W) * rr[r]);
    }
    OKCALL(pllm_rln_forward(ctx, W, p, x, groups, y, mean, rstd));
    char what[96];
    snprintf(what, sizeof what, "rln_forward width=%d groups=%lld y", W, (long long)groups);
    close_all(what, y, ry, rys, groups * W, 2e-6, 1e-7);
    snprintf(what, sizeof what, "rln_forward width=%d groups=%lld mean", W, (long long)groups);
    close_all(what, mean, rm, rms, groups, 2e-6, 1e-7);
    snprintf(what, sizeof what, "rln_forward width=%d groups=%lld rstd", W, (long long)groups);
    close_all(what, rstd, rr, NULL, groups, 1e-5, 1e-7);
    GCHECK(y);
    GCHECK(mean);
    GCHECK(rstd);

    /* backward from the float mean/rstd the forward wrote */
    double *rg = calloc(2 * W, sizeof(double)), *rgs = calloc(2 * W, sizeof(double));
    double *rdx = malloc(sizeof(double) * groups * W), *rdxs = malloc(sizeof(double) * groups * W);
    for (int64_t r = 0; r < groups; r++) {
        double m1 = 0, m2 = 0, m1s = 0, m2s = 0;
        for (int w = 0; w < W; w++) {
            double h = ((double)x[r * W + w] - mean[r]) * rstd[r], dh = (double)dy[r * W + w] * p[w];
            m1 += dh;
            m2 += dh * h;
            m1s += fabs(dh);
            m2s += fabs(dh * h);
            rg[w] += dy[r * W + w] * h;
            rgs[w] += fabs(dy[r * W + w]) * (fabs(h) + (1 + fabs(x[r * W + w]) * rstd[r]) * 1e-6);
            rg[W + w] += dy[r * W + w];
            rgs[W + w] += fabs(dy[r * W + w]);
        }
        m1 /= W;
        m2 /= W;
        m1s /= W;
        m2s /= W;
        for (int w = 0; w < W; w++) {
            double h = ((double)x[r * W + w] - mean[r]) * rstd[r], dh = (double)dy[r * W + w] * p[w];
            rdx[r * W + w] = rstd[r] * (dh - m1 - h * m2);
            rdxs[r * W + w] = rstd[r] * (fabs(dh) + m1s + fabs(h) * m2s + m2s);
        }
    }
    for (int w = 0; w < 2 * W; w++) {
        rg[w] += g[w];
        rgs[w] += fabs(g[w]);
    }
    OKCALL(pllm_rln_backward(ctx, W, p, g, x, dy, groups, mean, rstd, dx));
    snprintf(what, sizeof what, "rln_backward width=%d groups=%lld g", W, (long long)groups);
    close_all(what, g, rg, rgs, 2 * W, 1e-5, 1e-7);
    snprintf(what, sizeof what, "rln_backward width=%d groups=%lld dx", W, (long long)groups);
    close_all(what, dx, rdx, rdxs, groups * W, 1e-5, 1e-7);
    GCHECK(g);
    GCHECK(dx);
    free(ry);
    free(rys);
    free(rm);
    free(rr);
    free(rms);
    free(xd);
    free(rg);
    free(rgs);
    free(rdx);
    free(rdxs);
    gfree(p);
    gfree(x);
    gfree(y);
    gfree(mean);
    gfree(rstd);
    gfree(dy);
    gfree(dx);
    gfree(g);
}

static void test_rln(void) {
    test_rln_case(64, 600);   /* stories260K: E=8, latent 8; 3 blocks, last partial */
    test_rln_case(7, 300);    /* width not a multiple of any vector */
    test_rln_case(1000, 40);  /* wide rows, one block */
    test_rln_case(4096, 3);   /* Llama-size row */
    test_rln_case(1, 5);
    test_rln_case(33, 257);
}

/* =========================================================================
 * Adam
 * ========================================================================= */

static void test_adam_case(int64_t n, int64_t step) {
    float *p = GF(n), *g = GF(n), *m = GF(n), *v = GF(n);
    fill_normal(p, n, 1.0f);
    fill_normal(g, n, 0.5f);
    fill_normal(m, n, 0.1f);
    for (int64_t i = 0; i < n; i++) v[i] = (float)unif() * 0.05f;
    if (step == 1)
        for (int64_t i = 0; i < n; i++) m[i] = v[i] = 0.0f;
    double *rp = malloc(sizeof(double) * n), *rm = malloc(sizeof(double) * n), *rv = malloc(sizeof(double) * n);
    double *sp = malloc(sizeof(double) * n), *sm = malloc(sizeof(double) * n), *sv = malloc(sizeof(double) * n);
    const float lr = 1.6e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        rm[i] = (double)b1 * m[i] + (1 - (double)b1) * g[i];
        rv[i] = (double)b2 * v[i] + (1 - (double)b2) * g[i] * g[i];
        sm[i] = fabs((double)b1 * m[i]) + fabs((1 - (double)b1) * g[i]); /* m may cancel */
        sv[i] = rv[i];
        double st = lr * (rm[i] / bc1) / (sqrt(rv[i] / bc2) + eps);
        rp[i] = p[i] - st;
        sp[i] = fabs(p[i]) + fabs(st);
    }
    OKCALL(pllm_adam(ctx, p, g, m, v, n, lr, b1, b2, eps, step));
    char what[64];
    snprintf(what, sizeof what, "adam n=%lld step=%lld p", (long long)n, (long long)step);
    close_all(what, p, rp, sp, n, 2e-6, 0);
    snprintf(what, sizeof what, "adam n=%lld step=%lld m", (long long)n, (long long)step);
    close_all(what, m, rm, sm, n, 1e-6, 1e-12);
    snprintf(what, sizeof what, "adam n=%lld step=%lld v", (long long)n, (long long)step);
    close_all(what, v, rv, sv, n, 1e-6, 1e-12);
    GCHECK(p);
    GCHECK(m);
    GCHECK(v);
    free(rp);
    free(rm);
    free(rv);
    free(sp);
    free(sm);
    free(sv);
    gfree(p);
    gfree(g);
    gfree(m);
    gfree(v);
}

static void test_adam(void) {
    test_adam_case(100003, 1);
    test_adam_case(37, 10);
    test_adam_case(1, 1000);
    int st = pllm_adam(ctx, NULL, NULL, NULL, NULL, 0, 1, 0.9f, 0.999f, 1e-8f, 0);
    CHECK(st == PLLM_ERR_INVALID_ARG, "adam step 0: status %d", st);
}

/* =========================================================================
 * decode
 * ========================================================================= */

static void ref_decode(int e, int dim, int lat, int hid, const float *p, const float *c, const int32_t *idx,
                       int64_t rows, double *out) {
    int W = e * lat;
    int64_t P1 = PLLM_MLP_PARAMS(lat, hid, lat);
    const float *n1 = p, *d1 = n1 + 2 * W, *n2 = d1 + P1, *d2 = n2 + 2 * W, *n3 = d2 + P1, *d0 = n3 + 2 * W;
    double *y = malloc(sizeof(double) * W), *u = malloc(sizeof(double) * W), *pre = malloc(sizeof(double) * hid);
    double *o = malloc(sizeof(double) * (lat > dim ? lat : dim));
    for (int64_t r = 0; r < rows; r++) {
        for (int s = 0; s < e; s++)
            for (int t = 0; t < lat; t++) y[s * lat + t] = c[(int64_t)idx[r * e + s] * lat + t];
        ref_rln_row(W, n1, y, u, NULL, NULL);
        for (int s = 0; s < e; s++) {
            ref_mlp_row(lat, hid, lat, d1, u + s * lat, pre, NULL, o, NULL);
            for (int t = 0; t < lat; t++) y[s * lat + t] += o[t];
        }
        ref_rln_row(W, n2, y, u, NULL, NULL);
        for (int s = 0; s < e; s++) {
            ref_mlp_row(lat, hid, lat, d2, u + s * lat, pre, NULL, o, NULL);
            for (int t = 0; t < lat; t++) y[s * lat + t] += o[t];
        }
        ref_rln_row(W, n3, y, u, NULL, NULL);
        for (int s = 0; s < e; s++) {
            ref_mlp_row(lat, hid, dim, d0, u + s * lat, pre, NULL, o, NULL);
            for (int t = 0; t < dim; t++) out[(r * e + s) * dim + t] = o[t];
        }
    }
    free(y);
    free(u);
    free(pre);
    free(o);
}

static void random_decoder(int e, int dim, int lat, int hid, float *p) {
    int W = e * lat;
    int64_t np = PLLM_DECODER_PARAMS(e, dim, lat, hid);
    fill_normal(p, np, 1.0f);
    /* RLN gammas near 1, MLP weights scaled by fan-in */
    int64_t off = 0;
    for (int blk = 0; blk < 6; blk++) {
        if (blk % 2 == 0) {
            for (int w = 0; w < W; w++) p[off + w] = 1.0f + 0.3f * p[off + w];
            for (int w = 0; w < W; w++) p[off + W + w] *= 0.3f;
            off += 2 * W;
        } else {
            int no = blk == 5 ? dim : lat;
            for (int64_t q = 0; q < (int64_t)hid * lat; q++) p[off + q] *= 1.5f / sqrtf((float)lat);
            off += (int64_t)hid * lat + hid;
            for (int64_t q = 0; q < (int64_t)no * hid; q++) p[off + q] /= sqrtf((float)hid);
            off += (int64_t)no * hid + no;
        }
    }
    if (off != np) {
        fprintf(stderr, "decoder layout mismatch %lld != %lld\n", (long long)off, (long long)np);
        exit(2);
    }
}

static void test_decode_case(int e, int dim, int lat, int hid, int64_t k, int64_t rows) {
    int64_t np = PLLM_DECODER_PARAMS(e, dim, lat, hid);
    float *p = GF(np), *c = GF(k * lat), *out = GF(rows * e * dim);
    int32_t *idx = galloc((size_t)rows * e * sizeof(int32_t));
    random_decoder(e, dim, lat, hid, p);
    fill_normal(c, k * lat, 2.0f / sqrtf((float)lat));
    for (int64_t q = 0; q < rows * e; q++) idx[q] = (int32_t)(rnd64() % (uint64_t)k);
    double *ref = malloc(sizeof(double) * rows * e * dim);
    ref_decode(e, dim, lat, hid, p, c, idx, rows, ref);
    OKCALL(pllm_decode(ctx, e, dim, lat, hid, p, c, k, idx, rows, out));
    double *sc = malloc(sizeof(double) * rows * e * dim);
    for (int64_t q = 0; q < rows * e * dim; q++) sc[q] = 1.0 + fabs(ref[q]);
    char what[96];
    snprintf(what, sizeof what, "decode e=%d dim=%d latent=%d hidden=%d rows=%lld", e, dim, lat, hid, (long long)rows);
    close_all(what, out, ref, sc, rows * e * dim, 2e-5, 0);
    GCHECK(out);
    /* an index out of range anywhere: error, nothing written */
    if (rows > 0) {
        memset(out, 0x5A, (size_t)rows * e * dim * sizeof(float));
        int64_t at = (rows * e) - 1;
        int32_t keep = idx[at];
        idx[at] = (int32_t)k;
        int st = pllm_decode(ctx, e, dim, lat, hid, p, c, k, idx, rows, out);
        CHECK(st == PLLM_ERR_INDEX_RANGE, "decode with idx = k: status %d, want %d", st, PLLM_ERR_INDEX_RANGE);
        CHECK(strstr(pllm_ctx_error(ctx), "idx[") != NULL, "decode error message: %s", pllm_ctx_error(ctx));
        idx[at] = -5;
        st = pllm_decode(ctx, e, dim, lat, hid, p, c, k, idx, rows, out);
        CHECK(st == PLLM_ERR_INDEX_RANGE, "decode with idx = -5: status %d", st);
        idx[at] = keep;
        const unsigned char *ob = (const unsigned char *)out;
        int touched = 0;
        for (size_t q = 0; q < (size_t)rows * e * dim * sizeof(float); q++) touched |= ob[q] != 0x5A;
        CHECK(!touched, "decode wrote output on an index error");
        GCHECK(out);
    }
    free(ref);
    free(sc);
    gfree(p);
    gfree(c);
    gfree(out);
    gfree(idx);
}

static void test_decode(void) {
    test_decode_case(8, 8, 8, 16, 4096, 300);  /* stories260K-like, rows not a multiple of a block */
    test_decode_case(22, 8, 8, 16, 512, 50);   /* E = ceil(172/8) */
    test_decode_case(3, 5, 3, 7, 40, 101);     /* odd everything */
    test_decode_case(100, 4, 4, 16, 300, 9);   /* one row per block */
    test_decode_case(8, 4, 4, 16, 64, 1);
    test_decode_case(1, 2, 2, 3, 1, 77);       /* e = 1: each RLN over one sub-vector; k = 1 */
    OKCALL(pllm_decode(ctx, 8, 8, 8, 16, (const float[1]){0}, (const float[8]){0}, 1, NULL, 0, NULL));
}

/* =========================================================================
 * gemm
 * ========================================================================= */

/* One product against a float64 loop. The bound is the classic one for a
 * float32 sum of k products taken in order, plus the alpha and beta
 * roundings: (k+3) u times the sum of the magnitudes of the terms. */
static void test_gemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, int nan_c) {
    float *a = GF(m * k + 1), *b = GF(k * n + 1), *c = GF(m * n);
    fill_normal(a, m * k + 1, 1.0f);
    fill_normal(b, k * n + 1, 1.0f);
    fill_normal(c, m * n, 1.0f);
    if (nan_c)
        for (int64_t i = 0; i < m * n; i++) c[i] = NAN;
    double *ref = malloc(sizeof(double) * (size_t)(m * n + 1)), *scale = malloc(sizeof(double) * (size_t)(m * n + 1));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0, mag = 0;
            for (int64_t t = 0; t < k; t++) {
                double x = ta ? a[t * m + i] : a[i * k + t], y = tb ? b[j * k + t] : b[t * n + j];
                sum += x * y;
                mag += fabs(x * y);
            }
            double c0 = beta == 0 ? 0 : c[i * n + j];
            ref[i * n + j] = alpha * sum + beta * c0;
            scale[i * n + j] = fabs(alpha) * mag + fabs(beta * c0);
        }
    float *a_before = malloc(sizeof(float) * (size_t)(m * k + 1));
    memcpy(a_before, a, sizeof(float) * (size_t)(m * k + 1));
    OKCALL(pllm_gemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c));
    char what[96];
    snprintf(what, sizeof what, "gemm %s%s %lldx%lldx%lld alpha=%g beta=%g%s", ta ? "T" : "N", tb ? "T" : "N",
             (long long)m, (long long)n, (long long)k, alpha, beta, nan_c ? " (NaN in C)" : "");
    close_all(what, c, ref, scale, m * n, (double)(k + 3) * 0x1p-24, 0);
    CHECK(!memcmp(a, a_before, sizeof(float) * (size_t)(m * k + 1)), "%s: A was written", what);
    GCHECK(a);
    GCHECK(b);
    GCHECK(c);
    free(a_before);
    free(ref);
    free(scale);
    gfree(a);
    gfree(b);
    gfree(c);
}

static void test_gemm(void) {
    /* Sizes cross every path's micro-tile (up to 8 x 32), tile (up to
     * 128 x 128) and k-slice (256) boundaries. */
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {130, 300, 520}, {3, 5, 0}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const int64_t *sh = shapes[s];
                test_gemm_case(ta, tb, sh[0], sh[1], sh[2], 1.0f, 0.0f, 1);
                test_gemm_case(ta, tb, sh[0], sh[1], sh[2], -0.75f, 1.0f, 0);
                test_gemm_case(ta, tb, sh[0], sh[1], sh[2], 2.5f, 0.5f, 0);
            }
    /* Empty products, NULL where nothing is read or written, then refusals. */
    float f[16] = {0};
    OKCALL(pllm_gemm(ctx, 0, 0, 0, 5, 3, 1.0f, NULL, f, 0.0f, NULL));
    OKCALL(pllm_gemm(ctx, 0, 0, 4, 0, 3, 1.0f, f, NULL, 0.0f, NULL));
    int st = pllm_gemm(ctx, 2, 0, 1, 1, 1, 1.0f, f, f, 0.0f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG && strstr(pllm_ctx_error(ctx), "trans_a"), "gemm trans_a = 2: status %d '%s'", st,
          pllm_ctx_error(ctx));
    st = pllm_gemm(ctx, 0, 0, -1, 1, 1, 1.0f, f, f, 0.0f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "gemm m = -1: status %d", st);
    st = pllm_gemm(ctx, 0, 0, 1, 1, 1, 1.0f, NULL, f, 0.0f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "gemm a = NULL: status %d", st);
    st = pllm_gemm(ctx, 0, 0, (int64_t)1 << 31, 1, 1, 1.0f, f, f, 0.0f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "gemm m = 2^31: status %d", st);
    st = pllm_gemm(ctx, 0, 0, (int64_t)1 << 21, (int64_t)1 << 21, 1, 1.0f, f, f, 0.0f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG && strstr(pllm_ctx_error(ctx), "2^40"), "gemm m*n = 2^42: status %d '%s'", st,
          pllm_ctx_error(ctx));
}

/* =========================================================================
 * argument errors and the context
 * ========================================================================= */

static void test_errors(void) {
    float f[64] = {0};
    int32_t ix[8] = {0};
    int st = pllm_assign(NULL, f, 1, 1, f, 1, ix, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "NULL context: status %d", st);
    st = pllm_assign(ctx, f, -1, 1, f, 1, ix, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG && pllm_ctx_error(ctx)[0], "n = -1: status %d, message '%s'", st,
          pllm_ctx_error(ctx));
    st = pllm_assign(ctx, f, 1, 0, f, 1, ix, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "dz = 0: status %d", st);
    st = pllm_assign(ctx, f, 1, 1, f, 0, ix, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "k = 0: status %d", st);
    st = pllm_assign(ctx, f, 1, 1, NULL, 1, ix, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "c = NULL: status %d", st);
    st = pllm_mlp_forward(ctx, 0, 1, 1, f, f, 1, f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "mlp in = 0: status %d", st);
    st = pllm_mlp_backward(ctx, 1, 1, 1, f, NULL, f, f, f, 1, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "mlp g = NULL: status %d", st);
    st = pllm_rln_forward(ctx, -3, f, f, 1, f, f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "rln width = -3: status %d", st);
    st = pllm_rln_backward(ctx, 2, f, f, f, f, -1, f, f, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "rln groups = -1: status %d", st);
    st = pllm_decode(ctx, 0, 1, 1, 1, f, f, 1, ix, 1, f);
    CHECK(st == PLLM_ERR_INVALID_ARG, "decode e = 0: status %d", st);
    st = pllm_codebook_stats(ctx, f, 1, 1, ix, 1, NULL, NULL);
    CHECK(st == PLLM_ERR_INVALID_ARG, "stats sums = NULL: status %d", st);
    OKCALL(pllm_adam(ctx, f, f, f + 8, f + 16, 8, 0.1f, 0.9f, 0.999f, 1e-8f, 1));
    CHECK(pllm_ctx_error(ctx)[0] == 0, "a successful call must clear the error, have '%s'", pllm_ctx_error(ctx));
    CHECK(pllm_ctx_error(NULL) != NULL && pllm_ctx_device(NULL) != NULL, "NULL context strings");
    CHECK(pllm_ctx_create(NULL) == PLLM_ERR_INVALID_ARG, "ctx_create(NULL)");
    pllm_ctx_destroy(NULL);
}

/* =========================================================================
 * determinism: same call twice gives the same bytes; --digest hashes a
 * workload whose reductions span many blocks, for comparison across thread
 * counts by determinism.cmake.
 * ========================================================================= */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t workload_digest(void) {
    uint64_t h = 0xCBF29CE484222325ull;
    rng_state = 12345;
    const int in = 8, hid = 16, out = 8;
    const int64_t rows = 40000, np = PLLM_MLP_PARAMS(in, hid, out); /* large enough for every kernel to go parallel */
    float *p = GF(np), *x = GF(rows * in), *pre = GF(rows * hid), *y = GF(rows * out), *dx = GF(rows * in),
          *g = GF(np);
    fill_normal(p, np, 0.5f);
    fill_normal(x, rows * in, 1.0f);
    memset(g, 0, np * sizeof(float));
    OKCALL(pllm_mlp_forward(ctx, in, hid, out, p, x, rows, pre, y));
    OKCALL(pllm_mlp_backward(ctx, in, hid, out, p, g, x, pre, y, rows, dx));
    h = fnv(h, pre, rows * hid * sizeof(float));
    h = fnv(h, y, rows * out * sizeof(float));
    h = fnv(h, dx, rows * in * sizeof(float));
    h = fnv(h, g, np * sizeof(float));
    const int W = 64;
    const int64_t groups = rows * out / W;
    float *rp = GF(2 * W), *ry = GF(groups * W), *mean = GF(groups), *rstd = GF(groups), *rdx = GF(groups * W),
          *rg = GF(2 * W);
    fill_normal(rp, 2 * W, 1.0f);
    memset(rg, 0, 2 * W * sizeof(float));
    OKCALL(pllm_rln_forward(ctx, W, rp, y, groups, ry, mean, rstd));
    OKCALL(pllm_rln_backward(ctx, W, rp, rg, y, x, groups, mean, rstd, rdx));
    h = fnv(h, ry, groups * W * sizeof(float));
    h = fnv(h, mean, groups * sizeof(float));
    h = fnv(h, rstd, groups * sizeof(float));
    h = fnv(h, rdx, groups * W * sizeof(float));
    h = fnv(h, rg, 2 * W * sizeof(float));
    const int64_t k = 500;
    int32_t *idx = galloc((size_t)rows * sizeof(int32_t));
    float *dist = GF(rows);
    double *sums = galloc((size_t)k * out * sizeof(double));
    int64_t *counts = galloc((size_t)k * sizeof(int64_t));
    OKCALL(pllm_assign(ctx, y, rows, out, x, k, idx, dist));
    OKCALL(pllm_codebook_stats(ctx, y, rows, out, idx, k, sums, counts));
    h = fnv(h, idx, rows * sizeof(int32_t));
    h = fnv(h, dist, rows * sizeof(float));
    h = fnv(h, sums, k * out * sizeof(double));
    h = fnv(h, counts, k * sizeof(int64_t));
    const int e = 8, lat = 8, dim = 8, dh = 16;
    int64_t dnp = PLLM_DECODER_PARAMS(e, dim, lat, dh);
    float *dp = GF(dnp), *dout = GF(rows / e * e * dim);
    random_decoder(e, dim, lat, dh, dp);
    for (int64_t q = 0; q < rows; q++) idx[q] = (int32_t)(rnd64() % (uint64_t)k);
    OKCALL(pllm_decode(ctx, e, dim, lat, dh, dp, x, k, idx, rows / e, dout));
    h = fnv(h, dout, rows / e * e * dim * sizeof(float));
    OKCALL(pllm_adam(ctx, p, g, x, dist, np, 1e-2f, 0.9f, 0.999f, 1e-8f, 3)); /* v = dist >= 0 */
    h = fnv(h, p, np * sizeof(float));
    /* gemm over many tiles and k-slices: x^T [in, rows] x pre [rows, hid],
     * then into a non-zero C */
    float *gc = GF(in * hid);
    OKCALL(pllm_gemm(ctx, 1, 0, in, hid, rows, 0.5f, x, pre, 0.0f, gc));
    OKCALL(pllm_gemm(ctx, 0, 1, in, hid, 300, 1.0f, x, pre, -1.0f, gc));
    h = fnv(h, gc, (size_t)in * hid * sizeof(float));
    const int64_t gm = 300, gn = 200, gk = 280;
    float *ga = GF(gm * gk), *gb = GF(gk * gn), *gcc = GF(gm * gn);
    fill_normal(ga, gm * gk, 1.0f);
    fill_normal(gb, gk * gn, 1.0f);
    OKCALL(pllm_gemm(ctx, 0, 0, gm, gn, gk, 1.0f, ga, gb, 0.0f, gcc));
    h = fnv(h, gcc, (size_t)(gm * gn) * sizeof(float));
    gfree(gc); gfree(ga); gfree(gb); gfree(gcc);
    gfree(p); gfree(x); gfree(pre); gfree(y); gfree(dx); gfree(g);
    gfree(rp); gfree(ry); gfree(mean); gfree(rstd); gfree(rdx); gfree(rg);
    gfree(idx); gfree(dist); gfree(sums); gfree(counts); gfree(dp); gfree(dout);
    return h;
}

static void test_repeat(void) {
    uint64_t a = workload_digest(), b = workload_digest();
    CHECK(a == b, "two runs of the same workload differ: %016llx %016llx", (unsigned long long)a,
          (unsigned long long)b);
}

int main(int argc, char **argv) {
    int digest = argc > 1 && !strcmp(argv[1], "--digest");
    if (pllm_abi_version() != PLLM_ABI_VERSION) {
        fprintf(stderr, "ABI version %d, header %d\n", pllm_abi_version(), PLLM_ABI_VERSION);
        return 1;
    }
    if (pllm_backend_score() <= 0) {
        printf("SKIPPED: backend %s is unusable here (score 0)\n", pllm_backend_name());
        return 77;
    }
    int st = pllm_ctx_create(&ctx);
    if (st == PLLM_ERR_UNSUPPORTED) {
        printf("SKIPPED: this CPU cannot run the path PLLM_CPU_ISA=%s asks for\n", getenv("PLLM_CPU_ISA"));
        return 77;
    }
    if (st != PLLM_OK) {
        fprintf(stderr, "pllm_ctx_create: %d\n", st);
        return 1;
    }
    if (digest) {
        uint64_t h = workload_digest();
        printf("digest %016llx %s\n", (unsigned long long)h, failures ? "with failures" : "");
        pllm_ctx_destroy(ctx);
        return failures ? 1 : 0;
    }
    printf("backend %s (score %d) on %s\n%s\n", pllm_backend_name(), pllm_backend_score(), pllm_ctx_device(ctx),
           pllm_build_info());
    test_errors();
    test_assign();
    test_stats();
    test_mlp();
    test_rln();
    test_adam();
    test_decode();
    test_gemm();
    test_repeat();
    pllm_ctx_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
