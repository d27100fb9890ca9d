/*
 * pocketllm.cu - libpocketllm_cuda.so: the kernels of pocketllm.h on an
 * NVIDIA GPU. Every call copies its host inputs to device buffers held by
 * the context (grown on demand, reused), runs, copies the outputs back and
 * synchronises; nothing outlives the call but the buffers. Every CUDA error
 * becomes a status and a message on the context; nothing aborts.
 *
 * Determinism: no floating-point atomics. Reductions over rows follow the
 * ReduceBlock rule of the header (one partial per 256 rows, summed in row
 * order; partials added to g in block order), and codebook sums are taken
 * per codeword in row order after a stable sort, so results do not depend
 * on scheduling.
 */
#include <cuda_runtime.h>
#include <cub/cub.cuh>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pocketllm.h"

#ifndef PLLM_CUDA_ARCHS
#define PLLM_CUDA_ARCHS "unknown"
#endif

#define RB PLLM_REDUCE_BLOCK
#define WAVE 64 /* blocks of partials held at once */

/* ---------------------------------------------------------------------------
 * context
 * ------------------------------------------------------------------------- */

enum { NSLOT = 16 };

struct pllm_ctx {
    int device;
    cudaStream_t stream;
    void *buf[NSLOT];
    size_t cap[NSLOT];
    char dev[192];
    char err[512];
};

static int pllm_fail(pllm_ctx *ctx, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return code;
}

/* After struct pllm_ctx and pllm_fail, which the checks use. */
#include "../common/checks.h"

static int cuda_fail(pllm_ctx *ctx, cudaError_t e, const char *what) {
    int code = e == cudaErrorMemoryAllocation ? PLLM_ERR_NO_MEMORY : PLLM_ERR_DEVICE;
    cudaGetLastError(); /* clear a non-sticky error so the context stays usable */
    return pllm_fail(ctx, code, "%s: CUDA error %d (%s): %s", what, (int)e, cudaGetErrorName(e), cudaGetErrorString(e));
}

#define CK(call, what)                                        \
    do {                                                      \
        cudaError_t e_ = (call);                              \
        if (e_ != cudaSuccess) return cuda_fail(ctx, e_, what); \
    } while (0)
#define LAUNCHED(what) CK(cudaGetLastError(), what)

/* Device buffer in slot s of at least bytes (contents not kept on growth). */
static int dbuf(pllm_ctx *ctx, int s, size_t bytes, void **out) {
    if (bytes == 0) bytes = 1;
    if (ctx->cap[s] < bytes) {
        if (ctx->buf[s]) cudaFree(ctx->buf[s]);
        ctx->buf[s] = NULL;
        ctx->cap[s] = 0;
        size_t want = bytes + bytes / 4; /* some headroom for the next, larger batch */
        cudaError_t e = cudaMalloc(&ctx->buf[s], want);
        if (e != cudaSuccess) {
            e = cudaMalloc(&ctx->buf[s], bytes);
            want = bytes;
        }
        if (e != cudaSuccess) {
            ctx->buf[s] = NULL;
            cudaGetLastError();
            return pllm_fail(ctx, PLLM_ERR_NO_MEMORY, "cannot allocate %zu bytes on the GPU: %s", bytes,
                             cudaGetErrorString(e));
        }
        ctx->cap[s] = want;
    }
    *out = ctx->buf[s];
    return PLLM_OK;
}

#define DBUF(slot, type, name, count)                                                     \
    type *name = NULL;                                                                    \
    do {                                                                                  \
        int st_ = dbuf(ctx, slot, (size_t)(count) * sizeof(type), (void **)&name);        \
        if (st_) return st_;                                                              \
    } while (0)

static int h2d(pllm_ctx *ctx, void *d, const void *h, size_t bytes) {
    if (bytes) CK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, ctx->stream), "copy to device");
    return PLLM_OK;
}
static int d2h(pllm_ctx *ctx, void *h, const void *d, size_t bytes) {
    if (bytes) CK(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, ctx->stream), "copy to host");
    return PLLM_OK;
}
static int sync(pllm_ctx *ctx) {
    CK(cudaStreamSynchronize(ctx->stream), "kernel execution");
    return PLLM_OK;
}
#define TRY(expr)               \
    do {                        \
        int st_ = (expr);       \
        if (st_) return st_;    \
    } while (0)

/* The calling OS thread may differ from the last call's (Go moves
 * goroutines), and the current device is per thread. */
static int enter(pllm_ctx *ctx) {
    ctx->err[0] = 0;
    CK(cudaSetDevice(ctx->device), "select device");
    return PLLM_OK;
}

static unsigned grid_for(int64_t n, int threads) {
    int64_t g = (n + threads - 1) / threads;
    if (g > 1 << 30) g = 1 << 30; /* kernels stride over the rest */
    if (g < 1) g = 1;
    return (unsigned)g;
}

/* ---------------------------------------------------------------------------
 * device helpers
 * ------------------------------------------------------------------------- */

#define GELU_K0 0.7978845608028654f
#define GELU_K1 0.044715f

__device__ __forceinline__ float gelu(float a) {
    return 0.5f * a * (1.0f + tanhf(GELU_K0 * (a + GELU_K1 * a * a * a)));
}
__device__ __forceinline__ float gelu_grad(float a) {
    float t = tanhf(GELU_K0 * (a + GELU_K1 * a * a * a));
    float ac = fminf(fmaxf(a, -10.0f), 10.0f); /* 1-t^2 is 0 there; keeps a^2 finite */
    return 0.5f * (1.0f + t) + 0.5f * ac * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * ac * ac);
}

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* Block-wide sum in a fixed order (tree over shared memory); blockDim.x is a
 * power of two <= 1024. Every thread gets the result. */
__device__ float block_sum(float v, float *sh) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

/* ---------------------------------------------------------------------------
 * assign: one thread per latent, codebook tiles in shared memory
 * ------------------------------------------------------------------------- */

#define AS_THREADS 256
#define AS_TILE_FLOATS 8192 /* 32 KiB of codewords per tile */

template <int DZ>
__global__ void assign_kernel(const float *__restrict__ z, int64_t n, int dz_rt, const float *__restrict__ c,
                              int64_t k, int32_t *__restrict__ idx, float *__restrict__ dist) {
    const int dz = DZ > 0 ? DZ : dz_rt;
    __shared__ float cs[AS_TILE_FLOATS];
    const int64_t tile = AS_TILE_FLOATS / dz;
    for (int64_t base = blockIdx.x * (int64_t)blockDim.x; base < n; base += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = base + threadIdx.x;
        bool live = i < n;
        float zr[DZ > 0 ? DZ : 1];
        if (DZ > 0 && live)
#pragma unroll
            for (int t = 0; t < (DZ > 0 ? DZ : 1); t++) zr[t] = z[i * dz + t];
        float best = INFINITY;
        int64_t bj = 0;
        for (int64_t j0 = 0; j0 < k; j0 += tile) {
            int64_t nj = min(tile, k - j0);
            __syncthreads();
            for (int64_t q = threadIdx.x; q < nj * dz; q += blockDim.x) cs[q] = c[j0 * dz + q];
            __syncthreads();
            if (live) {
                for (int64_t jj = 0; jj < nj; jj++) {
                    float d = 0.0f;
                    if (DZ > 0) {
#pragma unroll
                        for (int t = 0; t < (DZ > 0 ? DZ : 1); t++) {
                            float u = zr[t] - cs[jj * dz + t];
                            d += u * u;
                        }
                    } else {
                        for (int t = 0; t < dz; t++) {
                            float u = z[i * dz + t] - cs[jj * dz + t];
                            d += u * u;
                        }
                    }
                    if (d < best) {
                        best = d;
                        bj = j0 + jj;
                    }
                }
            }
        }
        if (live) {
            idx[i] = (int32_t)bj;
            if (dist) { /* the direct distance of the chosen codeword, as the CPU library gives it */
                float d = 0.0f;
                for (int t = 0; t < dz; t++) {
                    float u = z[i * dz + t] - c[bj * dz + t];
                    d += u * u;
                }
                dist[i] = d;
            }
        }
    }
}

/* ---------------------------------------------------------------------------
 * codebook stats: stable sort of rows by codeword, then per (codeword, t)
 * a float64 sum in row order
 * ------------------------------------------------------------------------- */

__global__ void iota_kernel(int32_t *a, int64_t n) {
    GRID_STRIDE(i, n) a[i] = (int32_t)i;
}

__global__ void count_kernel(const int32_t *idx, int64_t n, unsigned long long *cnt) {
    GRID_STRIDE(i, n) atomicAdd(&cnt[idx[i]], 1ull); /* integer: order-free */
}

__global__ void stats_sum_kernel(const float *z, int dz, const int32_t *rows_sorted, const unsigned long long *cnt,
                                 const unsigned long long *start, int64_t k, double *sums, int64_t *counts) {
    GRID_STRIDE(q, k * dz) {
        int64_t j = q / dz;
        int t = (int)(q % dz);
        unsigned long long s0 = start[j], nn = cnt[j];
        double s = 0.0;
        for (unsigned long long a = 0; a < nn; a++) s += (double)z[(int64_t)rows_sorted[s0 + a] * dz + t];
        sums[q] = s;
        if (t == 0) counts[j] = (int64_t)nn;
    }
}

/* ---------------------------------------------------------------------------
 * MLP
 * ------------------------------------------------------------------------- */

#define MLP_THREADS 128
#define MLP_SHARED_MAX 8192 /* parameters (floats) staged in shared memory when they fit */

/* One row per thread: pre, act = gelu(pre), y (= or += when add). */
__global__ void mlp_forward_kernel(int in, int hid, int out, const float *__restrict__ p, const float *__restrict__ x,
                                   int64_t rows, float *__restrict__ pre, float *__restrict__ act, float *__restrict__ y,
                                   int add, int staged) {
    extern __shared__ float sp[];
    int64_t np = (int64_t)hid * in + hid + (int64_t)out * hid + out;
    const float *w = p;
    if (staged) {
        for (int64_t q = threadIdx.x; q < np; q += blockDim.x) sp[q] = p[q];
        __syncthreads();
        w = sp;
    }
    const float *w1 = w, *b1 = w1 + (int64_t)hid * in, *w2 = b1 + hid, *b2 = w2 + (int64_t)out * hid;
    GRID_STRIDE(r, rows) {
        const float *xr = x + r * in;
        float *prer = pre + r * hid, *ar = act + r * hid;
        for (int u = 0; u < hid; u++) {
            float s = b1[u];
            for (int i = 0; i < in; i++) s += w1[(int64_t)u * in + i] * xr[i];
            prer[u] = s;
            ar[u] = gelu(s);
        }
        float *yr = y + r * out;
        for (int o = 0; o < out; o++) {
            float s = b2[o];
            for (int u = 0; u < hid; u++) s += w2[(int64_t)o * hid + u] * ar[u];
            yr[o] = add ? yr[o] + s : s;
        }
    }
}

/* Per row: act = gelu(pre), dp = (dy . W2) * gelu'(pre), dx = dp . W1. */
__global__ void mlp_backward_rows_kernel(int in, int hid, int out, const float *__restrict__ p,
                                         const float *__restrict__ pre, const float *__restrict__ dy, int64_t rows,
                                         float *__restrict__ act, float *__restrict__ dp, float *__restrict__ dx) {
    const float *w1 = p, *w2 = p + (int64_t)hid * in + hid;
    GRID_STRIDE(r, rows) {
        const float *dyr = dy + r * out, *prer = pre + r * hid;
        float *ar = act + r * hid, *dpr = dp + r * hid;
        for (int u = 0; u < hid; u++) {
            float a = prer[u];
            float da = 0.0f;
            for (int o = 0; o < out; o++) da += dyr[o] * w2[(int64_t)o * hid + u];
            ar[u] = gelu(a);
            dpr[u] = da * gelu_grad(a);
        }
        if (dx) {
            for (int i = 0; i < in; i++) {
                float s = 0.0f;
                for (int u = 0; u < hid; u++) s += dpr[u] * w1[(int64_t)u * in + i];
                dx[r * in + i] = s;
            }
        }
    }
}

/* part[b][q] = sum over rows of block b0+b, in row order, of parameter q's
 * contribution. Thread per (block, parameter). */
__global__ void mlp_partials_kernel(int in, int hid, int out, const float *__restrict__ x, const float *__restrict__ dy,
                                    const float *__restrict__ act, const float *__restrict__ dp, int64_t rows,
                                    int64_t b0, int nb, float *__restrict__ part) {
    int64_t np = (int64_t)hid * in + hid + (int64_t)out * hid + out;
    GRID_STRIDE(task, np * nb) {
        int64_t b = task / np, q = task % np;
        int64_t r0 = (b0 + b) * RB, r1 = min(rows, r0 + RB);
        float s = 0.0f;
        if (q < (int64_t)hid * in) {
            int u = (int)(q / in), i = (int)(q % in);
            for (int64_t r = r0; r < r1; r++) s += dp[r * hid + u] * x[r * in + i];
        } else if ((q -= (int64_t)hid * in) < hid) {
            for (int64_t r = r0; r < r1; r++) s += dp[r * hid + q];
        } else if ((q -= hid) < (int64_t)out * hid) {
            int o = (int)(q / hid), u = (int)(q % hid);
            for (int64_t r = r0; r < r1; r++) s += dy[r * out + o] * act[r * hid + u];
        } else {
            q -= (int64_t)out * hid;
            for (int64_t r = r0; r < r1; r++) s += dy[r * out + q];
        }
        part[task] = s;
    }
}

/* g[q] += part[0][q] + part[1][q] + ... in block order. */
__global__ void add_partials_kernel(float *g, const float *part, int nb, int64_t n) {
    GRID_STRIDE(q, n) {
        float s = g[q];
        for (int b = 0; b < nb; b++) s += part[(int64_t)b * n + q];
        g[q] = s;
    }
}

/* ---------------------------------------------------------------------------
 * RLN
 * ------------------------------------------------------------------------- */

#define RLN_THREADS 256

/* One block per group (grid-strided). */
__global__ void rln_forward_kernel(int W, const float *__restrict__ p, const float *__restrict__ x, int64_t groups,
                                   float *__restrict__ y, float *__restrict__ mean, float *__restrict__ rstd) {
    __shared__ float sh[RLN_THREADS];
    const float *gam = p, *bet = p + W;
    for (int64_t r = blockIdx.x; r < groups; r += gridDim.x) {
        const float *xr = x + r * W;
        float s = 0.0f;
        for (int w = threadIdx.x; w < W; w += blockDim.x) s += xr[w];
        float mu = block_sum(s, sh) / (float)W;
        float v = 0.0f;
        for (int w = threadIdx.x; w < W; w += blockDim.x) {
            float d = xr[w] - mu;
            v += d * d;
        }
        float rs = 1.0f / sqrtf(block_sum(v, sh) / (float)W + PLLM_RLN_EPS);
        if (threadIdx.x == 0) {
            if (mean) mean[r] = mu;
            if (rstd) rstd[r] = rs;
        }
        float *yr = y + r * W;
        for (int w = threadIdx.x; w < W; w += blockDim.x) yr[w] = (xr[w] - mu) * rs * gam[w] + bet[w];
    }
}

__global__ void rln_backward_dx_kernel(int W, const float *__restrict__ p, const float *__restrict__ x,
                                       const float *__restrict__ dy, int64_t groups, const float *__restrict__ mean,
                                       const float *__restrict__ rstd, float *__restrict__ dx) {
    __shared__ float sh[RLN_THREADS];
    const float *gam = p;
    for (int64_t r = blockIdx.x; r < groups; r += gridDim.x) {
        const float *xr = x + r * W, *dyr = dy + r * W;
        float mu = mean[r], rs = rstd[r];
        float s1 = 0.0f, s2 = 0.0f;
        for (int w = threadIdx.x; w < W; w += blockDim.x) {
            float h = (xr[w] - mu) * rs, dh = dyr[w] * gam[w];
            s1 += dh;
            s2 += dh * h;
        }
        float m1 = block_sum(s1, sh) / (float)W;
        float m2 = block_sum(s2, sh) / (float)W;
        float *dxr = dx + r * W;
        for (int w = threadIdx.x; w < W; w += blockDim.x) {
            float h = (xr[w] - mu) * rs, dh = dyr[w] * gam[w];
            dxr[w] = rs * (dh - m1 - h * m2);
        }
    }
}

/* part[b][w] (gGamma) and part[b][W+w] (gBeta) over the groups of block b0+b
 * in order. Thread per (block, w). */
__global__ void rln_partials_kernel(int W, const float *__restrict__ x, const float *__restrict__ dy, int64_t groups,
                                    const float *__restrict__ mean, const float *__restrict__ rstd, int64_t b0, int nb,
                                    float *__restrict__ part) {
    GRID_STRIDE(task, (int64_t)W * nb) {
        int64_t b = task / W;
        int w = (int)(task % W);
        int64_t r0 = (b0 + b) * RB, r1 = min(groups, r0 + RB);
        float sg = 0.0f, sb = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            float d = dy[r * W + w];
            sg += d * ((x[r * W + w] - mean[r]) * rstd[r]);
            sb += d;
        }
        part[b * 2 * W + w] = sg;
        part[b * 2 * W + W + w] = sb;
    }
}

/* ---------------------------------------------------------------------------
 * Adam
 * ------------------------------------------------------------------------- */

__global__ void adam_kernel(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                            float eps, float bc1, float bc2) {
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(1.0f - b1, gi));
        float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(1.0f - b2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(lr, __fdiv_rn(mi, bc1)), __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, bc2)), eps)));
    }
}

/* ---------------------------------------------------------------------------
 * decode: gather, then the decoder layer by layer over all sub-vectors
 * ------------------------------------------------------------------------- */

__global__ void gather_kernel(const float *c, int lat, const int32_t *idx, int64_t nsub, float *y) {
    GRID_STRIDE(q, nsub * lat) {
        int64_t s = q / lat;
        int t = (int)(q % lat);
        y[q] = c[(int64_t)idx[s] * lat + t];
    }
}

/* ---------------------------------------------------------------------------
 * gemm: 64 x 64 tiles of C, one block of 256 threads each; slices of 16 of
 * the inner dimension are staged in shared memory (op() applied while
 * loading, zero past the matrix), and each thread keeps 4 x 4 outputs (rows
 * ty + 16r, columns tx + 16s: conflict-free shared reads) in registers,
 * summed over t = 0..k-1 in order with fused multiply-adds. No atomics and
 * no split of k: the bytes do not depend on the launch.
 * ------------------------------------------------------------------------- */

#define GM_TILE 64
#define GM_BK 16

__global__ void __launch_bounds__(256) gemm_kernel(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                                                   float alpha, const float *__restrict__ a,
                                                   const float *__restrict__ b, float beta, float *__restrict__ c) {
    __shared__ float as[GM_BK][GM_TILE + 1];
    __shared__ float bs[GM_BK][GM_TILE + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t tiles_m = (m + GM_TILE - 1) / GM_TILE, tiles_n = (n + GM_TILE - 1) / GM_TILE;
    for (int64_t bi = blockIdx.y; bi < tiles_m; bi += gridDim.y)
        for (int64_t bj = blockIdx.x; bj < tiles_n; bj += gridDim.x) {
            const int64_t i0 = bi * GM_TILE, j0 = bj * GM_TILE;
            float acc[4][4];
            for (int r = 0; r < 4; r++)
                for (int s = 0; s < 4; s++) acc[r][s] = 0.0f;
            for (int64_t t0 = 0; t0 < k; t0 += GM_BK) {
                for (int l = 0; l < GM_TILE * GM_BK / 256; l++) {
                    int e = tid + 256 * l;
                    /* consecutive threads read consecutive addresses of the stored matrix */
                    int row = trans_a ? e % GM_TILE : e / GM_BK, col = trans_a ? e / GM_TILE : e % GM_BK;
                    int64_t i = i0 + row, t = t0 + col;
                    as[col][row] = (i < m && t < k) ? (trans_a ? a[t * m + i] : a[i * k + t]) : 0.0f;
                    int brow = trans_b ? e % GM_BK : e / GM_TILE, bcol = trans_b ? e / GM_BK : e % GM_TILE;
                    int64_t tb = t0 + brow, j = j0 + bcol;
                    bs[brow][bcol] = (tb < k && j < n) ? (trans_b ? b[j * k + tb] : b[tb * n + j]) : 0.0f;
                }
                __syncthreads();
                for (int tt = 0; tt < GM_BK; tt++) {
                    float av[4], bv[4];
                    for (int r = 0; r < 4; r++) av[r] = as[tt][ty + 16 * r];
                    for (int s = 0; s < 4; s++) bv[s] = bs[tt][tx + 16 * s];
                    for (int r = 0; r < 4; r++)
                        for (int s = 0; s < 4; s++) acc[r][s] = fmaf(av[r], bv[s], acc[r][s]);
                }
                __syncthreads();
            }
            for (int r = 0; r < 4; r++) {
                int64_t i = i0 + ty + 16 * r;
                if (i >= m) continue;
                for (int s = 0; s < 4; s++) {
                    int64_t j = j0 + tx + 16 * s;
                    if (j >= n) continue;
                    float *cp = c + i * n + j;
                    *cp = beta == 0.0f ? alpha * acc[r][s] : alpha * acc[r][s] + beta * *cp;
                }
            }
        }
}

/* ---------------------------------------------------------------------------
 * exported API
 * ------------------------------------------------------------------------- */

extern "C" {

PLLM_API int pllm_abi_version(void) { return PLLM_ABI_VERSION; }

PLLM_API int pllm_backend_score(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0 ? 100 : 0;
}

PLLM_API const char *pllm_backend_name(void) { return "cuda"; }

#define PLLM_STR2(x) #x
#define PLLM_STR(x) PLLM_STR2(x)
#ifdef __VERSION__
#define PLLM_HOST_CC "; host compiler " __VERSION__
#else
#define PLLM_HOST_CC ""
#endif
PLLM_API const char *pllm_build_info(void) {
    return "libpocketllm_cuda ABI " PLLM_STR(PLLM_ABI_VERSION) "; nvcc " PLLM_STR(__CUDACC_VER_MAJOR__) "." PLLM_STR(
        __CUDACC_VER_MINOR__) "; CUDA runtime " PLLM_STR(CUDART_VERSION) " (static); architectures " PLLM_CUDA_ARCHS PLLM_HOST_CC;
}

PLLM_API int pllm_ctx_create(pllm_ctx **out) {
    if (!out) return PLLM_ERR_INVALID_ARG;
    *out = NULL;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return PLLM_ERR_DEVICE;
    }
    int dev = 0;
    const char *want = getenv("PLLM_CUDA_DEVICE");
    if (want && *want) {
        dev = atoi(want);
        if (dev < 0 || dev >= n) return PLLM_ERR_DEVICE;
    }
    pllm_ctx *ctx = (pllm_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return PLLM_ERR_NO_MEMORY;
    ctx->device = dev;
    cudaDeviceProp prop;
    if (cudaSetDevice(dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess ||
        cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking) != cudaSuccess) {
        cudaGetLastError();
        free(ctx);
        return PLLM_ERR_DEVICE;
    }
    snprintf(ctx->dev, sizeof ctx->dev, "%s, %d SMs, %.1f GiB, sm_%d%d", prop.name, prop.multiProcessorCount,
             prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor);
    *out = ctx;
    return PLLM_OK;
}

PLLM_API void pllm_ctx_destroy(pllm_ctx *ctx) {
    if (!ctx) return;
    cudaSetDevice(ctx->device);
    for (int s = 0; s < NSLOT; s++)
        if (ctx->buf[s]) cudaFree(ctx->buf[s]);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    cudaGetLastError();
    free(ctx);
}

PLLM_API const char *pllm_ctx_error(const pllm_ctx *ctx) { return ctx ? ctx->err : "NULL context"; }
PLLM_API const char *pllm_ctx_device(const pllm_ctx *ctx) { return ctx ? ctx->dev : "NULL context"; }

enum { S_A, S_B, S_C, S_D, S_E, S_F, S_G, S_H, S_I, S_J, S_K, S_L };

PLLM_API int pllm_assign(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const float *c, int64_t k, int32_t *idx,
                         float *dist) {
    TRY(pllm_check_assign(ctx, z, n, dz, c, k, idx));
    if (n == 0) return PLLM_OK;
    if (dz > AS_TILE_FLOATS)
        return pllm_fail(ctx, PLLM_ERR_INVALID_ARG, "assign: dz = %d exceeds this backend's %d", dz, AS_TILE_FLOATS);
    TRY(enter(ctx));
    DBUF(S_A, float, dz_, n * dz);
    DBUF(S_B, float, dc, k * dz);
    DBUF(S_C, int32_t, di, n);
    DBUF(S_D, float, dd, n);
    TRY(h2d(ctx, dz_, z, (size_t)n * dz * sizeof(float)));
    TRY(h2d(ctx, dc, c, (size_t)k * dz * sizeof(float)));
    unsigned g = grid_for(n, AS_THREADS);
    float *dist_d = dist ? dd : NULL;
    switch (dz) {
#define AS_CASE(D) \
    case D: assign_kernel<D><<<g, AS_THREADS, 0, ctx->stream>>>(dz_, n, dz, dc, k, di, dist_d); break;
        AS_CASE(1) AS_CASE(2) AS_CASE(3) AS_CASE(4) AS_CASE(6) AS_CASE(8) AS_CASE(12) AS_CASE(16)
    default: assign_kernel<0><<<g, AS_THREADS, 0, ctx->stream>>>(dz_, n, dz, dc, k, di, dist_d); break;
#undef AS_CASE
    }
    LAUNCHED("assign kernel");
    TRY(d2h(ctx, idx, di, (size_t)n * sizeof(int32_t)));
    if (dist) TRY(d2h(ctx, dist, dd, (size_t)n * sizeof(float)));
    return sync(ctx);
}

PLLM_API int pllm_codebook_stats(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz, const int32_t *idx, int64_t k,
                                 double *sums, int64_t *counts) {
    TRY(pllm_check_codebook_stats(ctx, z, n, dz, idx, k, sums, counts));
    if (n == 0) {
        memset(sums, 0, (size_t)k * dz * sizeof(double));
        memset(counts, 0, (size_t)k * sizeof(int64_t));
        return PLLM_OK;
    }
    if (n > INT32_MAX) /* cub's sort and scan count in int */
        return pllm_fail(ctx, PLLM_ERR_INVALID_ARG, "codebook_stats: n = %lld exceeds this backend's %d", (long long)n,
                         INT32_MAX);
    TRY(enter(ctx));
    DBUF(S_A, float, dz_, n * dz);
    DBUF(S_B, int32_t, dkeys, n);
    DBUF(S_C, int32_t, dkeys2, n);
    DBUF(S_D, int32_t, drows, n);
    DBUF(S_E, int32_t, drows2, n);
    DBUF(S_F, unsigned long long, dcnt, k);
    DBUF(S_G, unsigned long long, dstart, k);
    DBUF(S_H, double, dsums, k * dz);
    DBUF(S_I, int64_t, dcounts, k);
    TRY(h2d(ctx, dz_, z, (size_t)n * dz * sizeof(float)));
    TRY(h2d(ctx, dkeys, idx, (size_t)n * sizeof(int32_t)));
    iota_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(drows, n);
    LAUNCHED("iota kernel");
    CK(cudaMemsetAsync(dcnt, 0, (size_t)k * sizeof(unsigned long long), ctx->stream), "memset");
    count_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dkeys, n, dcnt);
    LAUNCHED("count kernel");
    /* radix sort is stable: rows keep their order within a codeword */
    int end_bit = 1;
    while (end_bit < 31 && ((int64_t)1 << end_bit) < k) end_bit++;
    size_t sort_bytes = 0, scan_bytes = 0;
    CK(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, dkeys, dkeys2, drows, drows2, (int)n, 0, end_bit,
                                       ctx->stream),
       "sort size");
    CK(cub::DeviceScan::ExclusiveSum(NULL, scan_bytes, dcnt, dstart, (int)k, ctx->stream), "scan size");
    DBUF(S_J, unsigned char, dtmp, sort_bytes > scan_bytes ? sort_bytes : scan_bytes);
    CK(cub::DeviceRadixSort::SortPairs(dtmp, sort_bytes, dkeys, dkeys2, drows, drows2, (int)n, 0, end_bit,
                                       ctx->stream),
       "sort");
    CK(cub::DeviceScan::ExclusiveSum(dtmp, scan_bytes, dcnt, dstart, (int)k, ctx->stream), "scan");
    stats_sum_kernel<<<grid_for(k * dz, 128), 128, 0, ctx->stream>>>(dz_, dz, drows2, dcnt, dstart, k, dsums, dcounts);
    LAUNCHED("stats kernel");
    TRY(d2h(ctx, sums, dsums, (size_t)k * dz * sizeof(double)));
    TRY(d2h(ctx, counts, dcounts, (size_t)k * sizeof(int64_t)));
    return sync(ctx);
}

static int launch_mlp_forward(pllm_ctx *ctx, int in, int hid, int out, const float *dp_, const float *dx_, int64_t rows,
                              float *dpre, float *dact, float *dy_, int add) {
    int64_t np = PLLM_MLP_PARAMS(in, hid, out);
    int staged = np <= MLP_SHARED_MAX;
    size_t shm = staged ? (size_t)np * sizeof(float) : 0;
    mlp_forward_kernel<<<grid_for(rows, MLP_THREADS), MLP_THREADS, shm, ctx->stream>>>(in, hid, out, dp_, dx_, rows,
                                                                                      dpre, dact, dy_, add, staged);
    LAUNCHED("mlp forward kernel");
    return PLLM_OK;
}

PLLM_API int pllm_mlp_forward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p, const float *x,
                              int64_t rows, float *pre, float *y) {
    TRY(pllm_check_mlp_forward(ctx, in, hidden, out, p, x, rows, pre, y));
    if (rows == 0) return PLLM_OK;
    TRY(enter(ctx));
    int64_t np = PLLM_MLP_PARAMS(in, hidden, out);
    DBUF(S_A, float, dp_, np);
    DBUF(S_B, float, dx_, rows * in);
    DBUF(S_C, float, dpre, rows * hidden);
    DBUF(S_D, float, dact, rows * hidden);
    DBUF(S_E, float, dy_, rows * out);
    TRY(h2d(ctx, dp_, p, np * sizeof(float)));
    TRY(h2d(ctx, dx_, x, (size_t)rows * in * sizeof(float)));
    TRY(launch_mlp_forward(ctx, in, hidden, out, dp_, dx_, rows, dpre, dact, dy_, 0));
    TRY(d2h(ctx, pre, dpre, (size_t)rows * hidden * sizeof(float)));
    TRY(d2h(ctx, y, dy_, (size_t)rows * out * sizeof(float)));
    return sync(ctx);
}

PLLM_API int pllm_mlp_backward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out, const float *p, float *g,
                               const float *x, const float *pre, const float *dy, int64_t rows, float *dx) {
    TRY(pllm_check_mlp_backward(ctx, in, hidden, out, p, g, x, pre, dy, rows));
    if (rows == 0) return PLLM_OK;
    TRY(enter(ctx));
    int64_t np = PLLM_MLP_PARAMS(in, hidden, out);
    int64_t nblk = (rows + RB - 1) / RB;
    int wave = (int)(nblk < WAVE ? nblk : WAVE);
    DBUF(S_A, float, dp_, np);
    DBUF(S_B, float, dg, np);
    DBUF(S_C, float, dx_, rows * in);
    DBUF(S_D, float, dpre, rows * hidden);
    DBUF(S_E, float, ddy, rows * out);
    DBUF(S_F, float, dact, rows * hidden);
    DBUF(S_G, float, ddp, rows * hidden);
    DBUF(S_H, float, ddx, rows * in);
    DBUF(S_I, float, dpart, (int64_t)wave * np);
    TRY(h2d(ctx, dp_, p, np * sizeof(float)));
    TRY(h2d(ctx, dg, g, np * sizeof(float)));
    TRY(h2d(ctx, dx_, x, (size_t)rows * in * sizeof(float)));
    TRY(h2d(ctx, dpre, pre, (size_t)rows * hidden * sizeof(float)));
    TRY(h2d(ctx, ddy, dy, (size_t)rows * out * sizeof(float)));
    mlp_backward_rows_kernel<<<grid_for(rows, MLP_THREADS), MLP_THREADS, 0, ctx->stream>>>(
        in, hidden, out, dp_, dpre, ddy, rows, dact, ddp, dx ? ddx : NULL);
    LAUNCHED("mlp backward kernel");
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)(nblk - b0 < wave ? nblk - b0 : wave);
        mlp_partials_kernel<<<grid_for(np * nb, 128), 128, 0, ctx->stream>>>(in, hidden, out, dx_, ddy, dact, ddp,
                                                                              rows, b0, nb, dpart);
        LAUNCHED("mlp partials kernel");
        add_partials_kernel<<<grid_for(np, 128), 128, 0, ctx->stream>>>(dg, dpart, nb, np);
        LAUNCHED("add partials kernel");
    }
    TRY(d2h(ctx, g, dg, np * sizeof(float)));
    if (dx) TRY(d2h(ctx, dx, ddx, (size_t)rows * in * sizeof(float)));
    return sync(ctx);
}

static unsigned group_grid(int64_t groups) { return (unsigned)(groups < (1 << 30) ? groups : (1 << 30)); }

PLLM_API int pllm_rln_forward(pllm_ctx *ctx, int32_t width, const float *p, const float *x, int64_t groups, float *y,
                              float *mean, float *rstd) {
    TRY(pllm_check_rln_forward(ctx, width, p, x, groups, y, mean, rstd));
    if (groups == 0) return PLLM_OK;
    TRY(enter(ctx));
    DBUF(S_A, float, dp_, 2 * width);
    DBUF(S_B, float, dx_, groups * width);
    DBUF(S_C, float, dy_, groups * width);
    DBUF(S_D, float, dm, groups);
    DBUF(S_E, float, dr, groups);
    TRY(h2d(ctx, dp_, p, 2 * (size_t)width * sizeof(float)));
    TRY(h2d(ctx, dx_, x, (size_t)groups * width * sizeof(float)));
    rln_forward_kernel<<<group_grid(groups), RLN_THREADS, 0, ctx->stream>>>(width, dp_, dx_, groups, dy_, dm, dr);
    LAUNCHED("rln forward kernel");
    TRY(d2h(ctx, y, dy_, (size_t)groups * width * sizeof(float)));
    TRY(d2h(ctx, mean, dm, (size_t)groups * sizeof(float)));
    TRY(d2h(ctx, rstd, dr, (size_t)groups * sizeof(float)));
    return sync(ctx);
}

PLLM_API int pllm_rln_backward(pllm_ctx *ctx, int32_t width, const float *p, float *g, const float *x, const float *dy,
                               int64_t groups, const float *mean, const float *rstd, float *dx) {
    TRY(pllm_check_rln_backward(ctx, width, p, g, x, dy, groups, mean, rstd, dx));
    if (groups == 0) return PLLM_OK;
    TRY(enter(ctx));
    int64_t nblk = (groups + RB - 1) / RB;
    int wave = (int)(nblk < WAVE ? nblk : WAVE);
    DBUF(S_A, float, dp_, 2 * width);
    DBUF(S_B, float, dg, 2 * width);
    DBUF(S_C, float, dx_, groups * width);
    DBUF(S_D, float, ddy, groups * width);
    DBUF(S_E, float, dm, groups);
    DBUF(S_F, float, dr, groups);
    DBUF(S_G, float, ddx, groups * width);
    DBUF(S_H, float, dpart, (int64_t)wave * 2 * width);
    TRY(h2d(ctx, dp_, p, 2 * (size_t)width * sizeof(float)));
    TRY(h2d(ctx, dg, g, 2 * (size_t)width * sizeof(float)));
    TRY(h2d(ctx, dx_, x, (size_t)groups * width * sizeof(float)));
    TRY(h2d(ctx, ddy, dy, (size_t)groups * width * sizeof(float)));
    TRY(h2d(ctx, dm, mean, (size_t)groups * sizeof(float)));
    TRY(h2d(ctx, dr, rstd, (size_t)groups * sizeof(float)));
    rln_backward_dx_kernel<<<group_grid(groups), RLN_THREADS, 0, ctx->stream>>>(width, dp_, dx_, ddy, groups, dm, dr,
                                                                                ddx);
    LAUNCHED("rln backward kernel");
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)(nblk - b0 < wave ? nblk - b0 : wave);
        rln_partials_kernel<<<grid_for((int64_t)width * nb, 128), 128, 0, ctx->stream>>>(width, dx_, ddy, groups, dm,
                                                                                          dr, b0, nb, dpart);
        LAUNCHED("rln partials kernel");
        add_partials_kernel<<<grid_for(2 * width, 128), 128, 0, ctx->stream>>>(dg, dpart, nb, 2 * (int64_t)width);
        LAUNCHED("add partials kernel");
    }
    TRY(d2h(ctx, g, dg, 2 * (size_t)width * sizeof(float)));
    TRY(d2h(ctx, dx, ddx, (size_t)groups * width * sizeof(float)));
    return sync(ctx);
}

PLLM_API int pllm_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                       float b2, float eps, int64_t step) {
    TRY(pllm_check_adam(ctx, p, g, m, v, n, step));
    if (n == 0) return PLLM_OK;
    TRY(enter(ctx));
    float bc1 = (float)(1.0 - pow((double)b1, (double)step));
    float bc2 = (float)(1.0 - pow((double)b2, (double)step));
    DBUF(S_A, float, dp_, n);
    DBUF(S_B, float, dg, n);
    DBUF(S_C, float, dm, n);
    DBUF(S_D, float, dv, n);
    TRY(h2d(ctx, dp_, p, (size_t)n * sizeof(float)));
    TRY(h2d(ctx, dg, g, (size_t)n * sizeof(float)));
    TRY(h2d(ctx, dm, m, (size_t)n * sizeof(float)));
    TRY(h2d(ctx, dv, v, (size_t)n * sizeof(float)));
    adam_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dp_, dg, dm, dv, n, lr, b1, b2, eps, bc1, bc2);
    LAUNCHED("adam kernel");
    TRY(d2h(ctx, p, dp_, (size_t)n * sizeof(float)));
    TRY(d2h(ctx, m, dm, (size_t)n * sizeof(float)));
    TRY(d2h(ctx, v, dv, (size_t)n * sizeof(float)));
    return sync(ctx);
}

static int bk_decode(pllm_ctx *ctx, int e, int dim, int latent, int hidden, const float *p, const float *c, int64_t k,
                     const int32_t *idx, int64_t rows, float *out);

PLLM_API int pllm_decode(pllm_ctx *ctx, int32_t e, int32_t dim, int32_t latent, int32_t hidden, const float *p,
                         const float *c, int64_t k, const int32_t *idx, int64_t rows, float *out) {
    TRY(pllm_check_decode(ctx, e, dim, latent, hidden, p, c, k, idx, rows, out));
    if (rows == 0) return PLLM_OK;
    TRY(enter(ctx));
    const int64_t np = PLLM_DECODER_PARAMS(e, dim, latent, hidden), nsub = rows * e;
    /* Slots S_I..S_L: bk_decode takes its scratch from T_A..T_D (slots 0-3). */
    DBUF(S_I, float, dp_, np);
    DBUF(S_J, float, dc, k * latent);
    DBUF(S_K, int32_t, di, nsub);
    DBUF(S_L, float, dout, nsub * dim);
    TRY(h2d(ctx, dp_, p, np * sizeof(float)));
    TRY(h2d(ctx, dc, c, (size_t)k * latent * sizeof(float)));
    TRY(h2d(ctx, di, idx, (size_t)nsub * sizeof(int32_t)));
    /* The same device-memory decoder the resident training runs use. */
    TRY(bk_decode(ctx, e, dim, latent, hidden, dp_, dc, k, di, rows, dout));
    TRY(d2h(ctx, out, dout, (size_t)nsub * dim * sizeof(float)));
    return sync(ctx);
}

PLLM_API int pllm_gemm(pllm_ctx *ctx, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, const float *b, float beta, float *c) {
    TRY(pllm_check_gemm(ctx, trans_a, trans_b, m, n, k, a, b, c));
    if (m == 0 || n == 0) return PLLM_OK;
    TRY(enter(ctx));
    DBUF(S_A, float, da, m * k);
    DBUF(S_B, float, db, k * n);
    DBUF(S_C, float, dc, m * n);
    TRY(h2d(ctx, da, a, (size_t)(m * k) * sizeof(float)));
    TRY(h2d(ctx, db, b, (size_t)(k * n) * sizeof(float)));
    if (beta != 0.0f) TRY(h2d(ctx, dc, c, (size_t)(m * n) * sizeof(float)));
    int64_t tiles_m = (m + GM_TILE - 1) / GM_TILE, tiles_n = (n + GM_TILE - 1) / GM_TILE;
    dim3 grid((unsigned)(tiles_n < (1 << 30) ? tiles_n : (1 << 30)), (unsigned)(tiles_m < 65535 ? tiles_m : 65535));
    gemm_kernel<<<grid, 256, 0, ctx->stream>>>(trans_a, trans_b, m, n, k, alpha, da, db, beta, dc);
    LAUNCHED("gemm kernel");
    TRY(d2h(ctx, c, dc, (size_t)(m * n) * sizeof(float)));
    return sync(ctx);
}

} /* extern "C" */

/* ---------------------------------------------------------------------------
 * resident training run: the backend primitives of ../common/train.inc on
 * device memory. Nothing is copied to or from the host but what train.inc
 * asks for with bk_put and bk_get; temporaries live in the context's slots.
 * ------------------------------------------------------------------------- */

__global__ void gather_rows_kernel(const float *src, const int32_t *order, int64_t nrows, int64_t rowlen, float *dst) {
    GRID_STRIDE(q, nrows * rowlen) {
        int64_t i = q / rowlen, u = q % rowlen;
        dst[q] = src[(int64_t)order[i] * rowlen + u];
    }
}
__global__ void add_kernel(float *dst, const float *a, const float *b, int64_t n) {
    GRID_STRIDE(i, n) dst[i] = __fadd_rn(a[i], b[i]);
}
__global__ void add_to_kernel(float *dst, const float *src, int64_t n) {
    GRID_STRIDE(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}
__global__ void add_codewords_kernel(float *dst, const float *c, const int32_t *idx, int64_t n, int lat) {
    GRID_STRIDE(q, n * lat) {
        int64_t i = q / lat;
        int t = (int)(q % lat);
        dst[q] = __fadd_rn(dst[q], c[(int64_t)idx[i] * lat + t]);
    }
}
/* part[b] = sum of a over elements [b*RB, (b+1)*RB) in order. */
__global__ void chunk_sum_kernel(const float *a, int64_t n, double *part) {
    int64_t nb = (n + RB - 1) / RB;
    GRID_STRIDE(b, nb) {
        int64_t i1 = min(n, (b + 1) * RB);
        double s = 0.0;
        for (int64_t i = b * RB; i < i1; i++) s += (double)a[i];
        part[b] = s;
    }
}
/* out[0] = part[0] + part[1] + ... in order (one thread). */
__global__ void seq_sum_kernel(const double *part, int64_t nb, double *out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double s = 0.0;
        for (int64_t b = 0; b < nb; b++) s += part[b];
        out[0] = s;
    }
}
__global__ void loss_grad_kernel(const float *xhat, const float *x, const float *w, int64_t n, const double *sw,
                                 float *dxhat, double *part) {
    int64_t nb = (n + RB - 1) / RB;
    float inv = (float)(2.0 / sw[0]);
    GRID_STRIDE(b, nb) {
        int64_t i1 = min(n, (b + 1) * RB);
        double s = 0.0;
        for (int64_t i = b * RB; i < i1; i++) {
            float e = __fsub_rn(xhat[i], x[i]);
            s += (double)w[i] * (double)e * (double)e;
            dxhat[i] = __fmul_rn(__fmul_rn(inv, w[i]), e);
        }
        part[b] = s;
    }
}
__global__ void full_mse_kernel(const float *y, const float *x, const float *w, int64_t n, double *part_se,
                                double *part_sw) {
    int64_t nb = (n + RB - 1) / RB;
    GRID_STRIDE(b, nb) {
        int64_t i1 = min(n, (b + 1) * RB);
        double se = 0.0, sw = 0.0;
        for (int64_t i = b * RB; i < i1; i++) {
            double d = (double)y[i] - (double)x[i];
            se += (double)w[i] * d * d;
            sw += (double)w[i];
        }
        part_se[b] = se;
        part_sw[b] = sw;
    }
}
__global__ void commit_kernel(float *g, const float *z, const float *c, const int32_t *idx, int64_t n, int lat,
                              float coef) {
    GRID_STRIDE(q, n * lat) {
        int64_t i = q / lat;
        int t = (int)(q % lat);
        g[q] = __fadd_rn(g[q], __fmul_rn(coef, __fsub_rn(z[q], c[(int64_t)idx[i] * lat + t])));
    }
}
__global__ void codebook_grad_kernel(float *gc, const float *c, const double *sums, const int64_t *counts, int64_t k,
                                     int lat, double coef) {
    GRID_STRIDE(q, k * lat) {
        int64_t cnt = counts[q / lat];
        if (cnt != 0) gc[q] = __fadd_rn(gc[q], (float)(coef * ((double)cnt * (double)c[q] - sums[q])));
    }
}
__global__ void batch_loss_kernel(double *acc, const double *se_sw, const double *cb, double lambda, int64_t nlat) {
    if (blockIdx.x == 0 && threadIdx.x == 0) acc[0] += se_sw[0] / se_sw[1] + lambda * (cb[0] / (double)nlat);
}
__global__ void lloyd_kernel(float *c, const double *sums, const int64_t *counts, int64_t k, int lat) {
    GRID_STRIDE(q, k * lat) {
        int64_t cnt = counts[q / lat];
        if (cnt != 0) c[q] = (float)(sums[q] / (double)cnt);
    }
}

/* Slots of the temporaries below; per-call functions use the same slots,
 * which is fine: calls on a context never overlap. */
enum { T_A = 0, T_B, T_C, T_D, T_E, T_F, T_G, T_H, T_I, T_J, T_PART = 15 };

static int bk_enter(pllm_ctx *ctx) { return enter(ctx); }
static int bk_finish(pllm_ctx *ctx) { return sync(ctx); }
static int bk_alloc(pllm_ctx *ctx, size_t bytes, void **out) {
    *out = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        *out = NULL;
        return cuda_fail(ctx, e, "train: allocate device memory");
    }
    CK(cudaMemsetAsync(*out, 0, bytes, ctx->stream), "train: clear device memory");
    return PLLM_OK;
}
static void bk_free(pllm_ctx *ctx, void *p) {
    if (p) cudaFree(p);
    cudaGetLastError();
}
static int bk_put(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) { return h2d(ctx, dst, src, bytes); }
static int bk_get(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) {
    TRY(d2h(ctx, dst, src, bytes));
    return sync(ctx);
}
static int bk_copy(pllm_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream), "device copy");
    return PLLM_OK;
}
static int bk_zero(pllm_ctx *ctx, void *dst, size_t bytes) {
    if (bytes) CK(cudaMemsetAsync(dst, 0, bytes, ctx->stream), "device clear");
    return PLLM_OK;
}

static int bk_mlp_forward(pllm_ctx *ctx, int in, int hid, int out, const float *p, const float *x, int64_t rows,
                          float *pre, float *y) {
    if (rows == 0) return PLLM_OK;
    DBUF(T_A, float, dact, rows * hid);
    return launch_mlp_forward(ctx, in, hid, out, p, x, rows, pre, dact, y, 0);
}
static int bk_mlp_backward(pllm_ctx *ctx, int in, int hid, int out, const float *p, float *g, const float *x,
                           const float *pre, const float *dy, int64_t rows, float *dx) {
    if (rows == 0) return PLLM_OK;
    int64_t np = PLLM_MLP_PARAMS(in, hid, out);
    int64_t nblk = (rows + RB - 1) / RB;
    int wave = (int)(nblk < WAVE ? nblk : WAVE);
    DBUF(T_A, float, dact, rows * hid);
    DBUF(T_B, float, ddp, rows * hid);
    DBUF(T_C, float, dpart, (int64_t)wave * np);
    mlp_backward_rows_kernel<<<grid_for(rows, MLP_THREADS), MLP_THREADS, 0, ctx->stream>>>(in, hid, out, p, pre, dy,
                                                                                          rows, dact, ddp, dx);
    LAUNCHED("mlp backward kernel");
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)(nblk - b0 < wave ? nblk - b0 : wave);
        mlp_partials_kernel<<<grid_for(np * nb, 128), 128, 0, ctx->stream>>>(in, hid, out, x, dy, dact, ddp, rows, b0,
                                                                              nb, dpart);
        LAUNCHED("mlp partials kernel");
        add_partials_kernel<<<grid_for(np, 128), 128, 0, ctx->stream>>>(g, dpart, nb, np);
        LAUNCHED("add partials kernel");
    }
    return PLLM_OK;
}
static int bk_rln_forward(pllm_ctx *ctx, int W, const float *p, const float *x, int64_t groups, float *y, float *mean,
                          float *rstd) {
    if (groups == 0) return PLLM_OK;
    rln_forward_kernel<<<group_grid(groups), RLN_THREADS, 0, ctx->stream>>>(W, p, x, groups, y, mean, rstd);
    LAUNCHED("rln forward kernel");
    return PLLM_OK;
}
static int bk_rln_backward(pllm_ctx *ctx, int W, const float *p, float *g, const float *x, const float *dy,
                           int64_t groups, const float *mean, const float *rstd, float *dx) {
    if (groups == 0) return PLLM_OK;
    int64_t nblk = (groups + RB - 1) / RB;
    int wave = (int)(nblk < WAVE ? nblk : WAVE);
    DBUF(T_A, float, dpart, (int64_t)wave * 2 * W);
    rln_backward_dx_kernel<<<group_grid(groups), RLN_THREADS, 0, ctx->stream>>>(W, p, x, dy, groups, mean, rstd, dx);
    LAUNCHED("rln backward kernel");
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)(nblk - b0 < wave ? nblk - b0 : wave);
        rln_partials_kernel<<<grid_for((int64_t)W * nb, 128), 128, 0, ctx->stream>>>(W, x, dy, groups, mean, rstd, b0,
                                                                                      nb, dpart);
        LAUNCHED("rln partials kernel");
        add_partials_kernel<<<grid_for(2 * W, 128), 128, 0, ctx->stream>>>(g, dpart, nb, 2 * (int64_t)W);
        LAUNCHED("add partials kernel");
    }
    return PLLM_OK;
}
static int bk_assign(pllm_ctx *ctx, const float *z, int64_t n, int dz, const float *c, int64_t k, int32_t *idx,
                     float *dist) {
    if (n == 0) return PLLM_OK;
    if (dz > AS_TILE_FLOATS)
        return pllm_fail(ctx, PLLM_ERR_UNSUPPORTED, "train: latent size %d exceeds this backend's %d", dz, AS_TILE_FLOATS);
    unsigned g = grid_for(n, AS_THREADS);
    switch (dz) {
#define AS_CASE(D) \
    case D: assign_kernel<D><<<g, AS_THREADS, 0, ctx->stream>>>(z, n, dz, c, k, idx, dist); break;
        AS_CASE(1) AS_CASE(2) AS_CASE(3) AS_CASE(4) AS_CASE(6) AS_CASE(8) AS_CASE(12) AS_CASE(16)
    default: assign_kernel<0><<<g, AS_THREADS, 0, ctx->stream>>>(z, n, dz, c, k, idx, dist); break;
#undef AS_CASE
    }
    LAUNCHED("assign kernel");
    return PLLM_OK;
}
static int bk_stats(pllm_ctx *ctx, const float *z, int64_t n, int dz, const int32_t *idx, int64_t k, double *sums,
                    int64_t *counts) {
    if (n == 0) {
        CK(cudaMemsetAsync(sums, 0, (size_t)k * dz * sizeof(double), ctx->stream), "memset");
        CK(cudaMemsetAsync(counts, 0, (size_t)k * sizeof(int64_t), ctx->stream), "memset");
        return PLLM_OK;
    }
    DBUF(T_A, int32_t, dkeys2, n);
    DBUF(T_B, int32_t, drows, n);
    DBUF(T_C, int32_t, drows2, n);
    DBUF(T_D, unsigned long long, dcnt, k);
    DBUF(T_E, unsigned long long, dstart, k);
    iota_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(drows, n);
    LAUNCHED("iota kernel");
    CK(cudaMemsetAsync(dcnt, 0, (size_t)k * sizeof(unsigned long long), ctx->stream), "memset");
    count_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(idx, n, dcnt);
    LAUNCHED("count kernel");
    int end_bit = 1;
    while (end_bit < 31 && ((int64_t)1 << end_bit) < k) end_bit++;
    size_t sort_bytes = 0, scan_bytes = 0;
    CK(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, idx, dkeys2, drows, drows2, (int)n, 0, end_bit, ctx->stream),
       "sort size");
    CK(cub::DeviceScan::ExclusiveSum(NULL, scan_bytes, dcnt, dstart, (int)k, ctx->stream), "scan size");
    DBUF(T_F, unsigned char, dtmp, sort_bytes > scan_bytes ? sort_bytes : scan_bytes);
    CK(cub::DeviceRadixSort::SortPairs(dtmp, sort_bytes, idx, dkeys2, drows, drows2, (int)n, 0, end_bit, ctx->stream),
       "sort");
    CK(cub::DeviceScan::ExclusiveSum(dtmp, scan_bytes, dcnt, dstart, (int)k, ctx->stream), "scan");
    stats_sum_kernel<<<grid_for(k * dz, 128), 128, 0, ctx->stream>>>(z, dz, drows2, dcnt, dstart, k, sums, counts);
    LAUNCHED("stats kernel");
    return PLLM_OK;
}
static int bk_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                   float b2, float eps, int64_t step) {
    float bc1 = (float)(1.0 - pow((double)b1, (double)step));
    float bc2 = (float)(1.0 - pow((double)b2, (double)step));
    adam_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(p, g, m, v, n, lr, b1, b2, eps, bc1, bc2);
    LAUNCHED("adam kernel");
    return PLLM_OK;
}
static int bk_decode(pllm_ctx *ctx, int e, int dim, int latent, int hidden, const float *p, const float *c, int64_t k,
                     const int32_t *idx, int64_t rows, float *out) {
    if (rows == 0) return PLLM_OK;
    const int W = e * latent;
    const int64_t P1 = PLLM_MLP_PARAMS(latent, hidden, latent), nsub = rows * e;
    DBUF(T_A, float, dY, nsub * latent);
    DBUF(T_B, float, dU, nsub * latent);
    DBUF(T_C, float, dpre, nsub * hidden);
    DBUF(T_D, float, dact, nsub * hidden);
    const float *n1 = p, *d1 = n1 + 2 * W, *n2 = d1 + P1, *d2 = n2 + 2 * W, *n3 = d2 + P1, *d0 = n3 + 2 * W;
    gather_kernel<<<grid_for(nsub * latent, 256), 256, 0, ctx->stream>>>(c, latent, idx, nsub, dY);
    LAUNCHED("gather kernel");
    rln_forward_kernel<<<group_grid(rows), RLN_THREADS, 0, ctx->stream>>>(W, n1, dY, rows, dU, NULL, NULL);
    LAUNCHED("rln kernel");
    TRY(launch_mlp_forward(ctx, latent, hidden, latent, d1, dU, nsub, dpre, dact, dY, 1));
    rln_forward_kernel<<<group_grid(rows), RLN_THREADS, 0, ctx->stream>>>(W, n2, dY, rows, dU, NULL, NULL);
    LAUNCHED("rln kernel");
    TRY(launch_mlp_forward(ctx, latent, hidden, latent, d2, dU, nsub, dpre, dact, dY, 1));
    rln_forward_kernel<<<group_grid(rows), RLN_THREADS, 0, ctx->stream>>>(W, n3, dY, rows, dU, NULL, NULL);
    LAUNCHED("rln kernel");
    return launch_mlp_forward(ctx, latent, hidden, dim, d0, dU, nsub, dpre, dact, out, 0);
}

static int bk_gather_rows(pllm_ctx *ctx, const float *src, const int32_t *order, int64_t nrows, int64_t rowlen,
                          float *dst) {
    if (nrows == 0) return PLLM_OK;
    gather_rows_kernel<<<grid_for(nrows * rowlen, 256), 256, 0, ctx->stream>>>(src, order, nrows, rowlen, dst);
    LAUNCHED("gather rows kernel");
    return PLLM_OK;
}
static int bk_gather_codewords(pllm_ctx *ctx, const float *c, const int32_t *idx, int64_t n, int lat, float *dst) {
    return bk_gather_rows(ctx, c, idx, n, lat, dst);
}
static int bk_add(pllm_ctx *ctx, float *dst, const float *a, const float *b, int64_t n) {
    if (n == 0) return PLLM_OK;
    add_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dst, a, b, n);
    LAUNCHED("add kernel");
    return PLLM_OK;
}
static int bk_add_to(pllm_ctx *ctx, float *dst, const float *src, int64_t n) {
    if (n == 0) return PLLM_OK;
    add_to_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dst, src, n);
    LAUNCHED("add kernel");
    return PLLM_OK;
}
static int bk_add_codewords(pllm_ctx *ctx, float *dst, const float *c, const int32_t *idx, int64_t n, int lat) {
    if (n == 0) return PLLM_OK;
    add_codewords_kernel<<<grid_for(n * lat, 256), 256, 0, ctx->stream>>>(dst, c, idx, n, lat);
    LAUNCHED("add codewords kernel");
    return PLLM_OK;
}
static int bk_sum(pllm_ctx *ctx, const float *a, int64_t n, double *s) {
    int64_t nb = (n + RB - 1) / RB;
    DBUF(T_PART, double, part, nb);
    if (nb) {
        chunk_sum_kernel<<<grid_for(nb, 128), 128, 0, ctx->stream>>>(a, n, part);
        LAUNCHED("sum kernel");
    }
    seq_sum_kernel<<<1, 1, 0, ctx->stream>>>(part, nb, s);
    LAUNCHED("sum kernel");
    return PLLM_OK;
}
static int bk_loss_grad(pllm_ctx *ctx, const float *xhat, const float *x, const float *w, int64_t n, float *dxhat,
                        double *s) {
    TRY(bk_sum(ctx, w, n, s + 1));
    int64_t nb = (n + RB - 1) / RB;
    DBUF(T_PART, double, part, nb);
    if (nb) {
        loss_grad_kernel<<<grid_for(nb, 128), 128, 0, ctx->stream>>>(xhat, x, w, n, s + 1, dxhat, part);
        LAUNCHED("loss kernel");
    }
    seq_sum_kernel<<<1, 1, 0, ctx->stream>>>(part, nb, s);
    LAUNCHED("sum kernel");
    return PLLM_OK;
}
static int bk_commit(pllm_ctx *ctx, float *g, const float *z, const float *c, const int32_t *idx, int64_t n, int lat,
                     float coef) {
    if (n == 0) return PLLM_OK;
    commit_kernel<<<grid_for(n * lat, 256), 256, 0, ctx->stream>>>(g, z, c, idx, n, lat, coef);
    LAUNCHED("commitment kernel");
    return PLLM_OK;
}
static int bk_codebook_grad(pllm_ctx *ctx, float *gc, const float *c, const double *sums, const int64_t *counts,
                            int64_t k, int lat, double coef) {
    codebook_grad_kernel<<<grid_for(k * lat, 256), 256, 0, ctx->stream>>>(gc, c, sums, counts, k, lat, coef);
    LAUNCHED("codebook gradient kernel");
    return PLLM_OK;
}
static int bk_batch_loss(pllm_ctx *ctx, double *acc, const double *se_sw, const double *cb, double lambda,
                         int64_t nlat) {
    batch_loss_kernel<<<1, 1, 0, ctx->stream>>>(acc, se_sw, cb, lambda, nlat);
    LAUNCHED("batch loss kernel");
    return PLLM_OK;
}
static int bk_full_mse(pllm_ctx *ctx, const float *y, const float *x, const float *w, int64_t n, double *s) {
    int64_t nb = (n + RB - 1) / RB;
    DBUF(T_PART, double, part, 2 * nb);
    if (nb) {
        full_mse_kernel<<<grid_for(nb, 128), 128, 0, ctx->stream>>>(y, x, w, n, part, part + nb);
        LAUNCHED("mse kernel");
    }
    seq_sum_kernel<<<1, 1, 0, ctx->stream>>>(part, nb, s);
    LAUNCHED("sum kernel");
    seq_sum_kernel<<<1, 1, 0, ctx->stream>>>(part + nb, nb, s + 1);
    LAUNCHED("sum kernel");
    return PLLM_OK;
}
static int bk_lloyd(pllm_ctx *ctx, float *c, const double *sums, const int64_t *counts, int64_t k, int lat) {
    lloyd_kernel<<<grid_for(k * lat, 256), 256, 0, ctx->stream>>>(c, sums, counts, k, lat);
    LAUNCHED("lloyd kernel");
    return PLLM_OK;
}

#include "../common/train.inc"
