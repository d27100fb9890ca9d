/*
 * bench.c - pllm_bench: throughput of each kernel of the linked library,
 * beside a naive scalar single-thread C version of the same loop (written
 * as the loops of bindings/kernels.go read, compiled without
 * auto-vectorisation: a stand-in for the pure-Go kernels), as ratios
 * measured in one run.
 *
 *   pllm_bench [assign|decode|mlp|rln|adam|gemm|train|all]... [-r reps] [-q]
 *
 * Each figure is the best of reps runs (default 5); -q skips the naive runs.
 * Threads: OMP_NUM_THREADS; SIMD path: PLLM_CPU_ISA (see pocketllm.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pocketllm.h"

#define NAIVE __attribute__((noinline, optimize("no-tree-vectorize")))

static pllm_ctx *ctx;
static int reps = 5, quick = 0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
/* CPU seconds of the whole process (all threads): on a shared machine,
 * wall time includes the time other programs held the cores. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static double last_cpu; /* CPU seconds of the best run of the last TIME_BEST */

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *randv(int64_t n, float sc) {
    float *a = aligned_alloc(64, ((size_t)n * 4 + 63) / 64 * 64 + 64);
    for (int64_t i = 0; i < n; i++) a[i] = frand() * sc;
    return a;
}

static void die_on(int st, const char *what) {
    if (st != PLLM_OK) {
        fprintf(stderr, "%s: status %d: %s\n", what, st, pllm_ctx_error(ctx));
        exit(1);
    }
}

#define TIME_BEST(best, body)                       \
    do {                                            \
        best = 1e30;                                \
        for (int rep_ = 0; rep_ < reps; rep_++) {   \
            double c0_ = cpu_now(), t0_ = now();    \
            body;                                   \
            double t_ = now() - t0_;                \
            if (t_ < best) {                        \
                best = t_;                          \
                last_cpu = cpu_now() - c0_;         \
            }                                       \
        }                                           \
    } while (0)

/* ---- naive loops ---- */

/* The first rows rows of C = A*B, all [n,n], the loop of the Gemm doc
 * comment (beta = 0). */
NAIVE static void naive_gemm(int64_t n, int64_t rows, const float *a, const float *b, float *c) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t t = 0; t < n; t++) s += a[i * n + t] * b[t * n + j];
            c[i * n + j] = s;
        }
}

static float gelu(float a) { return 0.5f * a * (1.0f + tanhf(0.7978845608f * (a + 0.044715f * a * a * a))); }
static float gelu_grad(float a) {
    float t = tanhf(0.7978845608f * (a + 0.044715f * a * a * a));
    return 0.5f * (1.0f + t) + 0.5f * a * (1.0f - t * t) * 0.7978845608f * (1.0f + 3.0f * 0.044715f * a * a);
}

NAIVE static void naive_assign(const float *z, int64_t n, int dz, const float *c, int64_t k, int32_t *idx) {
    for (int64_t i = 0; i < n; i++) {
        float best = INFINITY;
        int32_t bj = 0;
        for (int64_t j = 0; j < k; j++) {
            float d = 0;
            for (int t = 0; t < dz; t++) {
                float u = z[i * dz + t] - c[j * dz + t];
                d += u * u;
            }
            if (d < best) {
                best = d;
                bj = (int32_t)j;
            }
        }
        idx[i] = bj;
    }
}

NAIVE static void naive_mlp_forward(int in, int hid, int out, const float *p, const float *x, int64_t rows, float *pre,
                                    float *y) {
    const float *w1 = p, *b1 = w1 + hid * in, *w2 = b1 + hid, *b2 = w2 + out * hid;
    float a[4096];
    for (int64_t r = 0; r < rows; r++) {
        for (int u = 0; u < hid; u++) {
            float s = b1[u];
            for (int i = 0; i < in; i++) s += w1[u * in + i] * x[r * in + i];
            pre[r * hid + u] = s;
            a[u] = gelu(s);
        }
        for (int o = 0; o < out; o++) {
            float s = b2[o];
            for (int u = 0; u < hid; u++) s += w2[o * hid + u] * a[u];
            y[r * out + o] = s;
        }
    }
}

NAIVE static void naive_mlp_backward(int in, int hid, int out, const float *p, float *g, const float *x,
                                     const float *pre, const float *dy, int64_t rows, float *dx) {
    const float *w1 = p, *w2 = p + hid * in + hid;
    float *gw1 = g, *gb1 = g + hid * in, *gw2 = gb1 + hid, *gb2 = gw2 + out * hid;
    float a[4096], dp[4096];
    for (int64_t r = 0; r < rows; r++) {
        for (int u = 0; u < hid; u++) {
            a[u] = gelu(pre[r * hid + u]);
            float da = 0;
            for (int o = 0; o < out; o++) da += dy[r * out + o] * w2[o * hid + u];
            dp[u] = da * gelu_grad(pre[r * hid + u]);
        }
        for (int o = 0; o < out; o++) {
            for (int u = 0; u < hid; u++) gw2[o * hid + u] += dy[r * out + o] * a[u];
            gb2[o] += dy[r * out + o];
        }
        for (int u = 0; u < hid; u++) {
            for (int i = 0; i < in; i++) gw1[u * in + i] += dp[u] * x[r * in + i];
            gb1[u] += dp[u];
        }
        for (int i = 0; dx && i < in; i++) {
            float s = 0;
            for (int u = 0; u < hid; u++) s += dp[u] * w1[u * in + i];
            dx[r * in + i] = s;
        }
    }
}

NAIVE static void naive_rln_forward(int W, const float *p, const float *x, int64_t groups, float *y, float *mean,
                                    float *rstd) {
    for (int64_t r = 0; r < groups; r++) {
        float s = 0;
        for (int w = 0; w < W; w++) s += x[r * W + w];
        float mu = s / W, v = 0;
        for (int w = 0; w < W; w++) v += (x[r * W + w] - mu) * (x[r * W + w] - mu);
        float rsd = 1.0f / sqrtf(v / W + 1e-5f);
        mean[r] = mu;
        rstd[r] = rsd;
        for (int w = 0; w < W; w++) y[r * W + w] = (x[r * W + w] - mu) * rsd * p[w] + p[W + w];
    }
}

NAIVE static void naive_rln_backward(int W, const float *p, float *g, const float *x, const float *dy, int64_t groups,
                                     const float *mean, const float *rstd, float *dx) {
    for (int64_t r = 0; r < groups; r++) {
        float m1 = 0, m2 = 0;
        for (int w = 0; w < W; w++) {
            float h = (x[r * W + w] - mean[r]) * rstd[r], dh = dy[r * W + w] * p[w];
            m1 += dh;
            m2 += dh * h;
            g[w] += dy[r * W + w] * h;
            g[W + w] += dy[r * W + w];
        }
        m1 /= W;
        m2 /= W;
        for (int w = 0; w < W; w++) {
            float h = (x[r * W + w] - mean[r]) * rstd[r], dh = dy[r * W + w] * p[w];
            dx[r * W + w] = rstd[r] * (dh - m1 - h * m2);
        }
    }
}

NAIVE static void naive_adam(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                             float eps, int64_t step) {
    float bc1 = 1 - powf(b1, (float)step), bc2 = 1 - powf(b2, (float)step);
    for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
    }
}

NAIVE static void naive_decode(int e, int dim, int lat, int hid, const float *p, const float *c, const int32_t *idx,
                               int64_t rows, float *out) {
    int W = e * lat;
    int P1 = hid * lat + hid + lat * hid + lat;
    const float *n1 = p, *d1 = n1 + 2 * W, *n2 = d1 + P1, *d2 = n2 + 2 * W, *n3 = d2 + P1, *d0 = n3 + 2 * W;
    float *y = malloc(sizeof(float) * W), *u = malloc(sizeof(float) * W), *pre = malloc(sizeof(float) * hid);
    float *o = malloc(sizeof(float) * (lat > dim ? lat : dim)), mu, rsd;
    for (int64_t r = 0; r < rows; r++) {
        for (int s = 0; s < e; s++)
            for (int t = 0; t < lat; t++) y[s * lat + t] = c[(int64_t)idx[r * e + s] * lat + t];
        naive_rln_forward(W, n1, y, 1, u, &mu, &rsd);
        for (int s = 0; s < e; s++) {
            naive_mlp_forward(lat, hid, lat, d1, u + s * lat, 1, pre, o);
            for (int t = 0; t < lat; t++) y[s * lat + t] += o[t];
        }
        naive_rln_forward(W, n2, y, 1, u, &mu, &rsd);
        for (int s = 0; s < e; s++) {
            naive_mlp_forward(lat, hid, lat, d2, u + s * lat, 1, pre, o);
            for (int t = 0; t < lat; t++) y[s * lat + t] += o[t];
        }
        naive_rln_forward(W, n3, y, 1, u, &mu, &rsd);
        for (int s = 0; s < e; s++) naive_mlp_forward(lat, hid, dim, d0, u + s * lat, 1, pre, out + (r * e + s) * dim);
    }
    free(y);
    free(u);
    free(pre);
    free(o);
}

/* rate per wall second, then per CPU second of the process (x threads
 * would be the unloaded wall rate when the threads had the cores). */
static void report(const char *name, const char *size, double t, double cpu, double naive_t, double work,
                   const char *unit) {
    printf("%-12s %-30s %8.3f ms %8.2f %s (%.2f per CPU-s)", name, size, t * 1e3, work / t / 1e9, unit,
           work / cpu / 1e9);
    if (naive_t > 0)
        printf("   naive %9.3f ms  x%.1f", naive_t * 1e3, naive_t / t);
    printf("\n");
    fflush(stdout);
}

/* ---- benches ---- */

static void bench_assign(void) {
    const int64_t n = 262144, k = 4096;
    const int dz = 8;
    float *z = randv(n * dz, 1), *c = randv(k * dz, 1);
    int32_t *idx = malloc(n * 4), *idx2 = malloc(n * 4);
    double t, tc, tn = 0;
    TIME_BEST(t, die_on(pllm_assign(ctx, z, n, dz, c, k, idx, NULL), "assign"));
    tc = last_cpu;
    if (!quick) {
        /* naive on a slice, scaled: the full run would take minutes */
        int64_t ns = n / 32;
        double b;
        int r0 = reps;
        reps = 1;
        TIME_BEST(b, naive_assign(z, ns, dz, c, k, idx2));
        reps = r0;
        tn = b * (double)n / ns;
        int64_t diff = 0;
        for (int64_t i = 0; i < ns; i++) diff += idx[i] != idx2[i];
        if (diff) printf("  (assign: %lld of %lld indices differ from the naive loop: near-ties)\n", (long long)diff, (long long)ns);
    }
    report("assign", "N=262144 K=4096 dz=8", t, tc, tn, 2.0 * n * k * dz, "GFLOP/s (2NKdz)");
    free(z);
    free(c);
    free(idx);
    free(idx2);
}

static void bench_decode(void) {
    const int e = 8, dim = 8, lat = 8, hid = 16;
    const int64_t rows = 65536, k = 4096;
    int64_t np = PLLM_DECODER_PARAMS(e, dim, lat, hid);
    float *p = randv(np, 0.3f), *c = randv(k * lat, 1), *out = malloc(rows * e * dim * 4), *out2 = malloc(rows * e * dim * 4);
    for (int q = 0; q < 2 * e * lat; q++) p[q] += q < e * lat ? 1.0f : 0.0f;
    int32_t *idx = malloc(rows * e * 4);
    for (int64_t q = 0; q < rows * e; q++) idx[q] = (int32_t)(rs = rs * 6364136223846793005ull + 1, (rs >> 33) % k);
    double t, tc, tn = 0;
    TIME_BEST(t, die_on(pllm_decode(ctx, e, dim, lat, hid, p, c, k, idx, rows, out), "decode"));
    tc = last_cpu;
    if (!quick) {
        int r0 = reps;
        reps = 1;
        TIME_BEST(tn, naive_decode(e, dim, lat, hid, p, c, idx, rows, out2));
        reps = r0;
        double md = 0;
        for (int64_t q = 0; q < rows * e * dim; q++) md = fmax(md, fabs(out[q] - out2[q]));
        printf("  (decode: max |native - naive| = %.3g)\n", md);
    }
    char sz[64];
    snprintf(sz, sizeof sz, "rows=%lld E=8 d=8 dz=8 h=16", (long long)rows);
    /* "GFLOP/s" slot reports millions of sub-vectors per second * 1e-3 */
    printf("%-12s %-30s %8.3f ms %8.2f M sub-vectors/s (%.2f per CPU-s)", "decode", sz, t * 1e3, rows * e / t / 1e6,
           rows * e / tc / 1e6);
    if (tn > 0) printf("   naive %9.3f ms  x%.1f", tn * 1e3, tn / t);
    printf("\n");
    free(p);
    free(c);
    free(out);
    free(out2);
    free(idx);
}

static void bench_mlp(void) {
    const int in = 8, hid = 16, out = 8;
    const int64_t rows = 16384;
    int64_t np = PLLM_MLP_PARAMS(in, hid, out);
    float *p = randv(np, 0.4f), *x = randv(rows * in, 1), *pre = malloc(rows * hid * 4), *y = malloc(rows * out * 4);
    float *dy = randv(rows * out, 1), *dx = malloc(rows * in * 4), *g = calloc(np, 4);
    double t, tc, tn = 0, flops = 2.0 * rows * hid * (in + out);
    TIME_BEST(t, die_on(pllm_mlp_forward(ctx, in, hid, out, p, x, rows, pre, y), "mlp_forward"));
    tc = last_cpu;
    if (!quick) TIME_BEST(tn, naive_mlp_forward(in, hid, out, p, x, rows, pre, y));
    report("mlp_forward", "8x16x8 rows=16384", t, tc, tn, flops, "GFLOP/s");
    TIME_BEST(t, die_on(pllm_mlp_backward(ctx, in, hid, out, p, g, x, pre, dy, rows, dx), "mlp_backward"));
    tc = last_cpu;
    if (!quick) TIME_BEST(tn, naive_mlp_backward(in, hid, out, p, g, x, pre, dy, rows, dx));
    report("mlp_backward", "8x16x8 rows=16384", t, tc, tn, 2 * flops, "GFLOP/s");
    free(p); free(x); free(pre); free(y); free(dy); free(dx); free(g);
}

static void bench_rln(void) {
    const int W = 64;
    const int64_t groups = 2048;
    float *p = randv(2 * W, 1), *x = randv(groups * W, 1), *y = malloc(groups * W * 4), *m = malloc(groups * 4),
          *r = malloc(groups * 4), *dy = randv(groups * W, 1), *dx = malloc(groups * W * 4), *g = calloc(2 * W, 4);
    double t, tc, tn = 0;
    TIME_BEST(t, die_on(pllm_rln_forward(ctx, W, p, x, groups, y, m, r), "rln_forward"));
    tc = last_cpu;
    if (!quick) TIME_BEST(tn, naive_rln_forward(W, p, x, groups, y, m, r));
    report("rln_forward", "width=64 groups=2048", t, tc, tn, (double)groups * W * 4 * 2, "GB/s (x,y)");
    TIME_BEST(t, die_on(pllm_rln_backward(ctx, W, p, g, x, dy, groups, m, r, dx), "rln_backward"));
    tc = last_cpu;
    if (!quick) TIME_BEST(tn, naive_rln_backward(W, p, g, x, dy, groups, m, r, dx));
    report("rln_backward", "width=64 groups=2048", t, tc, tn, (double)groups * W * 4 * 3, "GB/s (x,dy,dx)");
    free(p); free(x); free(y); free(m); free(r); free(dy); free(dx); free(g);
}

static void bench_adam(void) {
    const int64_t n = 1 << 20;
    float *p = randv(n, 1), *g = randv(n, 1), *m = calloc(n, 4), *v = calloc(n, 4);
    double t, tc, tn = 0;
    int64_t step = 1;
    TIME_BEST(t, die_on(pllm_adam(ctx, p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, step++), "adam"));
    tc = last_cpu;
    if (!quick) TIME_BEST(tn, naive_adam(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, step++));
    report("adam", "n=1M", t, tc, tn, (double)n * 4 * 7, "GB/s");
    free(p); free(g); free(m); free(v);
}

/* Square products C = A*B at sides 64, 256 and 1024. */
static void bench_gemm(void) {
    static const int64_t sides[] = {64, 256, 1024};
    for (size_t s = 0; s < sizeof sides / sizeof sides[0]; s++) {
        int64_t n = sides[s];
        float *a = randv(n * n, 1), *b = randv(n * n, 1), *c = malloc((size_t)(n * n) * 4);
        double t, tc, tn = 0;
        TIME_BEST(t, die_on(pllm_gemm(ctx, 0, 0, n, n, n, 1.0f, a, b, 0.0f, c), "gemm"));
        tc = last_cpu;
        if (!quick) {
            /* naive on a slice of rows, scaled: the full 1024^3 loop takes many seconds */
            int64_t rows = n > 256 ? n / 16 : n;
            TIME_BEST(tn, naive_gemm(n, rows, a, b, c));
            tn *= (double)n / (double)rows;
        }
        char size[32];
        snprintf(size, sizeof size, "%lldx%lldx%lld", (long long)n, (long long)n, (long long)n);
        report("gemm", size, t, tc, tn, 2.0 * n * n * n, "GFLOP/s");
        free(a); free(b); free(c);
    }
}

/* One training step of METHOD.md on a batch of 16384 sub-vectors (d = dz = 8,
 * h = 16, E = 8, K = 4096): encoder forward, assignment, decoder forward,
 * backward through both, Adam over every parameter. The pure-Go training
 * runs this sequence of kernels, so the ratio is the epoch speed-up. */
static void T_mlpf(int native, int in, int hid, int out, const float *p, const float *x, int64_t rows, float *pre,
                   float *y) {
    if (native) die_on(pllm_mlp_forward(ctx, in, hid, out, p, x, rows, pre, y), "mlp_forward");
    else naive_mlp_forward(in, hid, out, p, x, rows, pre, y);
}
static void T_mlpb(int native, int in, int hid, int out, const float *p, float *g, const float *x, const float *pre,
                   const float *dy, int64_t rows, float *dx) {
    if (native) die_on(pllm_mlp_backward(ctx, in, hid, out, p, g, x, pre, dy, rows, dx), "mlp_backward");
    else naive_mlp_backward(in, hid, out, p, g, x, pre, dy, rows, dx);
}
static void T_rlnf(int native, int W, const float *p, const float *x, int64_t groups, float *y, float *m, float *r) {
    if (native) die_on(pllm_rln_forward(ctx, W, p, x, groups, y, m, r), "rln_forward");
    else naive_rln_forward(W, p, x, groups, y, m, r);
}
static void T_rlnb(int native, int W, const float *p, float *g, const float *x, const float *dy, int64_t groups,
                   const float *m, const float *r, float *dx) {
    if (native) die_on(pllm_rln_backward(ctx, W, p, g, x, dy, groups, m, r, dx), "rln_backward");
    else naive_rln_backward(W, p, g, x, dy, groups, m, r, dx);
}

static double train_step(int native) {
    const int d = 8, h = 16, E = 8, W = E * d;
    const int64_t B = 16384, G = B / E, K = 4096;
    const int64_t PM = PLLM_MLP_PARAMS(d, h, d);
    static float *buf[64];
    static int init;
    enum { X, P, GR, M1, V1, PRE1, PRE2, PRE3, PRE4, PRE5, PRE6, PRE7, A, Bq, Cq, Dq, Eq, Fq, Gq, Hq, Iq, Jq, MEAN, RSTD, DY, DX, CB, IDX };
    if (!init) {
        init = 1;
        buf[X] = randv(B * d, 1);
        buf[P] = randv(8 * PM + 12 * W + K * d, 0.3f);
        buf[GR] = calloc(8 * PM + 12 * W + K * d, 4);
        buf[M1] = calloc(8 * PM + 12 * W + K * d, 4);
        buf[V1] = calloc(8 * PM + 12 * W + K * d, 4);
        for (int q = PRE1; q <= PRE7; q++) buf[q] = calloc(B * h, 4);
        for (int q = A; q <= Jq; q++) buf[q] = calloc(B * d, 4);
        buf[MEAN] = calloc(G * 8, 4);
        buf[RSTD] = calloc(G * 8, 4);
        buf[DY] = randv(B * d, 1);
        buf[DX] = calloc(B * d, 4);
        buf[IDX] = calloc(B, 4);
    }
    float *p = buf[P], *g = buf[GR];
    const float *e0 = p, *e1 = p + PM, *e2 = p + 2 * PM, *d1 = p + 3 * PM, *d2 = p + 4 * PM, *d0 = p + 5 * PM;
    const float *nrm = p + 8 * PM, *cb = nrm + 12 * W;
    float *ge0 = g, *ge1 = g + PM, *ge2 = g + 2 * PM, *gd1 = g + 3 * PM, *gd2 = g + 4 * PM, *gd0 = g + 5 * PM;
    float *gn = g + 8 * PM;
    float *mean = buf[MEAN], *rstd = buf[RSTD];
    double t0 = now();
    /* encoder: z = MLP_e0(x); z += MLP_e1(RLN1(z)); z = RLN3(z + MLP_e2(RLN2(z))) */
    T_mlpf(native, d, h, d, e0, buf[X], B, buf[PRE1], buf[A]);
    T_rlnf(native, W, nrm, buf[A], G, buf[Bq], mean, rstd);
    T_mlpf(native, d, h, d, e1, buf[Bq], B, buf[PRE2], buf[Cq]);
    T_rlnf(native, W, nrm + 2 * W, buf[Cq], G, buf[Dq], mean + G, rstd + G);
    T_mlpf(native, d, h, d, e2, buf[Dq], B, buf[PRE3], buf[Eq]);
    T_rlnf(native, W, nrm + 4 * W, buf[Eq], G, buf[Fq], mean + 2 * G, rstd + 2 * G);
    /* assignment */
    if (native) die_on(pllm_assign(ctx, buf[Fq], B, d, cb, K, (int32_t *)buf[IDX], NULL), "assign");
    else naive_assign(buf[Fq], B, d, cb, K, (int32_t *)buf[IDX]);
    /* decoder on C[idx] (buf Fq stands in for the gathered codewords) */
    T_rlnf(native, W, nrm + 6 * W, buf[Fq], G, buf[Gq], mean + 3 * G, rstd + 3 * G);
    T_mlpf(native, d, h, d, d1, buf[Gq], B, buf[PRE4], buf[Hq]);
    T_rlnf(native, W, nrm + 8 * W, buf[Hq], G, buf[Iq], mean + 4 * G, rstd + 4 * G);
    T_mlpf(native, d, h, d, d2, buf[Iq], B, buf[PRE5], buf[Jq]);
    T_rlnf(native, W, nrm + 10 * W, buf[Jq], G, buf[A], mean + 5 * G, rstd + 5 * G);
    T_mlpf(native, d, h, d, d0, buf[A], B, buf[PRE6], buf[Bq]);
    /* backward, mirror order (shapes as in training; values are stand-ins) */
    T_mlpb(native, d, h, d, d0, gd0, buf[A], buf[PRE6], buf[DY], B, buf[DX]);
    T_rlnb(native, W, nrm + 10 * W, gn + 10 * W, buf[Jq], buf[DX], G, mean + 5 * G, rstd + 5 * G, buf[Cq]);
    T_mlpb(native, d, h, d, d2, gd2, buf[Iq], buf[PRE5], buf[Cq], B, buf[DX]);
    T_rlnb(native, W, nrm + 8 * W, gn + 8 * W, buf[Hq], buf[DX], G, mean + 4 * G, rstd + 4 * G, buf[Cq]);
    T_mlpb(native, d, h, d, d1, gd1, buf[Gq], buf[PRE4], buf[Cq], B, buf[DX]);
    T_rlnb(native, W, nrm + 6 * W, gn + 6 * W, buf[Fq], buf[DX], G, mean + 3 * G, rstd + 3 * G, buf[Cq]);
    T_rlnb(native, W, nrm + 4 * W, gn + 4 * W, buf[Eq], buf[Cq], G, mean + 2 * G, rstd + 2 * G, buf[DX]);
    T_mlpb(native, d, h, d, e2, ge2, buf[Dq], buf[PRE3], buf[DX], B, buf[Cq]);
    T_rlnb(native, W, nrm + 2 * W, gn + 2 * W, buf[Cq], buf[Cq], G, mean + G, rstd + G, buf[DX]);
    T_mlpb(native, d, h, d, e1, ge1, buf[Bq], buf[PRE2], buf[DX], B, buf[Cq]);
    T_rlnb(native, W, nrm, gn, buf[A], buf[Cq], G, mean, rstd, buf[DX]);
    T_mlpb(native, d, h, d, e0, ge0, buf[X], buf[PRE1], buf[DX], B, NULL);
    int64_t np = 8 * PM + 12 * W + K * d;
    if (native) die_on(pllm_adam(ctx, p, g, buf[M1], buf[V1], np, 1e-4f, 0.9f, 0.999f, 1e-8f, 1), "adam");
    else naive_adam(p, g, buf[M1], buf[V1], np, 1e-4f, 0.9f, 0.999f, 1e-8f, 1);
    memset(g, 0, np * 4);
    return now() - t0;
}

static void bench_train(void) {
    double t = 1e30, tn = 0;
    for (int r = 0; r < reps; r++) {
        double x = train_step(1);
        if (x < t) t = x;
    }
    if (!quick) tn = train_step(0);
    printf("%-12s %-34s %9.3f ms  %9.2f M sub-vectors/s", "train_step", "B=16384 d=dz=8 h=16 E=8 K=4096", t * 1e3,
           16384 / t / 1e6);
    if (tn > 0) printf("   naive %9.3f ms  x%.1f", tn * 1e3, tn / t);
    printf("\n");
}

int main(int argc, char **argv) {
    const char *which[16];
    int nw = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "-r") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "-q")) quick = 1;
        else if (nw < 16) which[nw++] = argv[a];
    }
    if (nw == 0) which[nw++] = "all";
    if (pllm_backend_score() <= 0) {
        fprintf(stderr, "backend %s unusable here\n", pllm_backend_name());
        return 1;
    }
    if (pllm_ctx_create(&ctx) != PLLM_OK) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    printf("%s: %s\n%s\n", pllm_backend_name(), pllm_ctx_device(ctx), pllm_build_info());
    for (int w = 0; w < nw; w++) {
        int all = !strcmp(which[w], "all");
        if (all || !strcmp(which[w], "assign")) bench_assign();
        if (all || !strcmp(which[w], "decode")) bench_decode();
        if (all || !strcmp(which[w], "mlp")) bench_mlp();
        if (all || !strcmp(which[w], "rln")) bench_rln();
        if (all || !strcmp(which[w], "adam")) bench_adam();
        if (all || !strcmp(which[w], "gemm")) bench_gemm();
        if (all || !strcmp(which[w], "train")) bench_train();
    }
    pllm_ctx_destroy(ctx);
    return 0;
}
