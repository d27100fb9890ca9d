/*
 * kernels.inc.c - the CPU kernels, written once against simd.h and compiled
 * once per SIMD path by isa_avx512.c, isa_avx2.c and isa_generic.c (each
 * with its own compiler flags), which define PLLM_ISA_* and KERNELS_NAME.
 *
 * Layout choices:
 *  - assign ranks codewords by ||c||^2 - 2 z.c with a register-blocked tile of
 *    latents x codewords (codewords in lanes) and a running minimum per lane;
 *    the portable path computes the distances themselves.
 *  - MLP training kernels put the hidden units in lanes (one row at a time),
 *    which matches the row-major pre/y buffers without transposes.
 *  - decode puts sub-vectors in lanes (structure of arrays) and runs the whole
 *    decoder on a block of whole weight rows while it sits in cache.
 *  - gradient reductions fill one partial per ReduceBlock rows in row order,
 *    then add the partials to g in block order, whatever the thread count.
 */
#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"
#include "simd.h"

#define RB PLLM_REDUCE_BLOCK

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int round_vw(int n) { return (n + VW - 1) / VW * VW; }

/* Carves consecutive 64-byte aligned float arrays out of one scratch area. */
typedef struct {
    char *p;
} carver;
static inline float *carve(carver *c, size_t nfloats) {
    float *r = (float *)c->p;
    c->p += pllm_round_up(nfloats * sizeof(float), PLLM_ALIGN);
    return r;
}
static inline size_t carve_size(size_t nfloats) { return pllm_round_up(nfloats * sizeof(float), PLLM_ALIGN); }

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* =========================================================================
 * assign
 * ========================================================================= */

/* The direct distance, as the loop writes it: used for dist on every path. */
static inline float sqdist(const float *z, const float *c, int dz) {
    float d = 0.0f;
    for (int t = 0; t < dz; t++) {
        float u = z[t] - c[t];
        d += u * u;
    }
    return d;
}

#if defined(PLLM_ISA_AVX512) || defined(PLLM_ISA_AVX2)

#if defined(PLLM_ISA_AVX512)
#define AS_V 4 /* codeword vectors per chunk */
#define AS_L 4 /* latents per tile */
#else
#define AS_V 2
#define AS_L 3
#endif
#define AS_CW (AS_V * VW) /* codewords per chunk */

/* The prepared codebook: chunk g holds AS_CW codewords as
 *   cn[AS_V][VW]      ||c_j||^2 (+inf for padding)
 *   ct[dz][AS_V][VW]  -2 c_j[t]   (0 for padding)
 * so a tile streams one contiguous block per chunk. */
static inline size_t as_chunk_floats(int dz) { return (size_t)(1 + dz) * AS_CW; }

static void as_prepare(const float *c, int64_t k, int dz, int64_t nchunk, float *cb, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nchunk * dz > 8192)
    for (int64_t g = 0; g < nchunk; g++) {
        float *blk = cb + g * as_chunk_floats(dz);
        for (int q = 0; q < AS_CW; q++) {
            int64_t j = g * AS_CW + q;
            if (j < k) {
                const float *cj = c + j * dz;
                float s = 0.0f;
                for (int t = 0; t < dz; t++) s = PLLM_FMAF(cj[t], cj[t], s);
                blk[q] = s;
                for (int t = 0; t < dz; t++) blk[AS_CW * (1 + t) + q] = -2.0f * cj[t];
            } else {
                blk[q] = INFINITY;
                for (int t = 0; t < dz; t++) blk[AS_CW * (1 + t) + q] = 0.0f;
            }
        }
    }
}

/* The score the tile computes for codeword j, bit for bit: the same fused
 * multiply-adds in the same order. */
static inline float as_score(const float *cb, int dz, int64_t j, const float *z) {
    const float *blk = cb + (j / AS_CW) * as_chunk_floats(dz);
    int q = (int)(j % AS_CW);
    float s = blk[q];
    for (int t = 0; t < dz; t++) s = PLLM_FMAF(blk[AS_CW * (1 + t) + q], z[t], s);
    return s;
}

/* From the per-lane minima and the chunk that first reached them, the lowest
 * j whose score equals the overall minimum. */
static inline int32_t as_resolve(const float *cb, int dz, int64_t k, const float *z, const float *bv,
                                 const int32_t *bg) {
    float mv = INFINITY;
    for (int l = 0; l < VW; l++)
        if (bv[l] < mv) mv = bv[l];
    int64_t best = -1;
    for (int l = 0; l < VW; l++) {
        if (!(bv[l] == mv)) continue;
        for (int v = 0; v < AS_V; v++) {
            int64_t j = ((int64_t)bg[l] * AS_V + v) * VW + l;
            if (j >= k) break;
            if (as_score(cb, dz, j, z) == mv) {
                if (best < 0 || j < best) best = j;
                break;
            }
        }
    }
    return best < 0 ? 0 : (int32_t)best; /* NaN input: no score compares */
}

#if defined(PLLM_ISA_AVX512)
PLLM_INLINE void as_tile(const float *z, int dz, const float *cb, int64_t nchunk, int L, float *bvo, int32_t *bgo) {
    __m512 best[AS_L];
    __m512i bg[AS_L];
    for (int l = 0; l < L; l++) {
        best[l] = _mm512_set1_ps(INFINITY);
        bg[l] = _mm512_setzero_si512();
    }
    __m512i gv = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    const size_t CH = as_chunk_floats(dz);
    for (int64_t g = 0; g < nchunk; g++) {
        const float *blk = cb + g * CH;
        __m512 acc[AS_L][AS_V];
        for (int l = 0; l < L; l++)
            for (int v = 0; v < AS_V; v++) acc[l][v] = _mm512_load_ps(blk + v * VW);
        for (int t = 0; t < dz; t++) {
            const float *ct = blk + (size_t)AS_CW * (1 + t);
            for (int v = 0; v < AS_V; v++) {
                __m512 cv = _mm512_load_ps(ct + v * VW);
                for (int l = 0; l < L; l++) acc[l][v] = _mm512_fmadd_ps(cv, _mm512_set1_ps(z[l * dz + t]), acc[l][v]);
            }
        }
        for (int l = 0; l < L; l++) {
            __m512 m = _mm512_min_ps(_mm512_min_ps(acc[l][0], acc[l][1]), _mm512_min_ps(acc[l][2], acc[l][3]));
            __mmask16 lt = _mm512_cmp_ps_mask(m, best[l], _CMP_LT_OQ);
            best[l] = _mm512_mask_mov_ps(best[l], lt, m);
            bg[l] = _mm512_mask_mov_epi32(bg[l], lt, gv);
        }
        gv = _mm512_add_epi32(gv, one);
    }
    for (int l = 0; l < L; l++) {
        _mm512_storeu_ps(bvo + l * VW, best[l]);
        _mm512_storeu_si512((void *)(bgo + l * VW), bg[l]);
    }
}
#else /* AVX2 */
PLLM_INLINE void as_tile(const float *z, int dz, const float *cb, int64_t nchunk, int L, float *bvo, int32_t *bgo) {
    __m256 best[AS_L];
    __m256i bg[AS_L];
    for (int l = 0; l < L; l++) {
        best[l] = _mm256_set1_ps(INFINITY);
        bg[l] = _mm256_setzero_si256();
    }
    __m256i gv = _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi32(1);
    const size_t CH = as_chunk_floats(dz);
    for (int64_t g = 0; g < nchunk; g++) {
        const float *blk = cb + g * CH;
        __m256 acc[AS_L][AS_V];
        for (int l = 0; l < L; l++)
            for (int v = 0; v < AS_V; v++) acc[l][v] = _mm256_load_ps(blk + v * VW);
        for (int t = 0; t < dz; t++) {
            const float *ct = blk + (size_t)AS_CW * (1 + t);
            for (int v = 0; v < AS_V; v++) {
                __m256 cv = _mm256_load_ps(ct + v * VW);
                for (int l = 0; l < L; l++)
                    acc[l][v] = _mm256_fmadd_ps(cv, _mm256_broadcast_ss(z + l * dz + t), acc[l][v]);
            }
        }
        for (int l = 0; l < L; l++) {
            __m256 m = _mm256_min_ps(acc[l][0], acc[l][1]);
            __m256 lt = _mm256_cmp_ps(m, best[l], _CMP_LT_OQ);
            best[l] = _mm256_blendv_ps(best[l], m, lt);
            bg[l] = _mm256_blendv_epi8(bg[l], gv, _mm256_castps_si256(lt));
        }
        gv = _mm256_add_epi32(gv, one);
    }
    for (int l = 0; l < L; l++) {
        _mm256_storeu_ps(bvo + l * VW, best[l]);
        _mm256_storeu_si256((__m256i *)(bgo + l * VW), bg[l]);
    }
}
#endif

/* dz is a compile-time constant at the specialised call sites below. */
PLLM_INLINE void as_range(const float *z, int dz, const float *cb, int64_t nchunk, int64_t k, int64_t i0,
                          int64_t i1, int32_t *idx, float *dist, const float *c) {
    float bv[AS_L * VW] __attribute__((aligned(64)));
    int32_t bg[AS_L * VW] __attribute__((aligned(64)));
    int64_t i = i0;
    for (; i + AS_L <= i1; i += AS_L) {
        as_tile(z + i * dz, dz, cb, nchunk, AS_L, bv, bg);
        for (int l = 0; l < AS_L; l++) idx[i + l] = as_resolve(cb, dz, k, z + (i + l) * dz, bv + l * VW, bg + l * VW);
    }
    for (; i < i1; i++) {
        as_tile(z + i * dz, dz, cb, nchunk, 1, bv, bg);
        idx[i] = as_resolve(cb, dz, k, z + i * dz, bv, bg);
    }
    if (dist)
        for (i = i0; i < i1; i++) dist[i] = sqdist(z + i * dz, c + (int64_t)idx[i] * dz, dz);
}

static int k_assign(pllm_ctx *ctx, const float *z, int64_t n, int dz, const float *c, int64_t k, int32_t *idx,
                    float *dist) {
    int nt = pllm_threads(ctx);
    int64_t nchunk = (k + AS_CW - 1) / AS_CW;
    float *cb = pllm_scratch(ctx, (size_t)nchunk * as_chunk_floats(dz) * sizeof(float));
    if (!cb) return PLLM_ERR_NO_MEMORY;
    as_prepare(c, k, dz, nchunk, cb, nt);
    /* Rows are split in slices of whole tiles; each thread streams the whole
     * prepared codebook (L2-resident for the usual K) once per tile. */
    int64_t ntile = (n + AS_L - 1) / AS_L;
    int64_t per = 16; /* tiles per scheduling unit */
    int64_t nunit = (ntile + per - 1) / per;
    int par = (double)n * (double)k * dz > 1e6;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par)
    for (int64_t u = 0; u < nunit; u++) {
        int64_t i0 = u * per * AS_L, i1 = min64(n, i0 + per * AS_L);
        switch (dz) {
        case 2: as_range(z, 2, cb, nchunk, k, i0, i1, idx, dist, c); break;
        case 4: as_range(z, 4, cb, nchunk, k, i0, i1, idx, dist, c); break;
        case 8: as_range(z, 8, cb, nchunk, k, i0, i1, idx, dist, c); break;
        case 16: as_range(z, 16, cb, nchunk, k, i0, i1, idx, dist, c); break;
        default: as_range(z, dz, cb, nchunk, k, i0, i1, idx, dist, c); break;
        }
    }
    return PLLM_OK;
}

#else /* portable: the loop itself */

static int k_assign(pllm_ctx *ctx, const float *z, int64_t n, int dz, const float *c, int64_t k, int32_t *idx,
                    float *dist) {
    int nt = pllm_threads(ctx);
    int par = (double)n * (double)k * dz > 1e6;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64) if (par)
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * dz;
        float best = INFINITY;
        int64_t bj = 0;
        for (int64_t j = 0; j < k; j++) {
            float d = sqdist(zi, c + j * dz, dz);
            if (d < best) {
                best = d;
                bj = j;
            }
        }
        idx[i] = (int32_t)bj;
        if (dist) dist[i] = sqdist(zi, c + bj * dz, dz);
    }
    return PLLM_OK;
}
#endif

/* =========================================================================
 * MLP forward / backward: hidden units (or outputs) in lanes, row by row.
 * ========================================================================= */

typedef struct {
    int in, hid, out;
    int ip, hp, op; /* sizes rounded up to VW */
    const float *w1, *b1, *w2, *b2;
} mlp_view;

static inline mlp_view mlp_at(const float *p, int in, int hid, int out) {
    mlp_view m;
    m.in = in;
    m.hid = hid;
    m.out = out;
    m.ip = round_vw(in);
    m.hp = round_vw(hid);
    m.op = round_vw(out);
    m.w1 = p;
    m.b1 = p + (int64_t)hid * in;
    m.w2 = m.b1 + hid;
    m.b2 = m.w2 + (int64_t)out * hid;
    return m;
}

static int k_mlp_forward(pllm_ctx *ctx, int in, int hid, int out, const float *p, const float *x, int64_t rows,
                         float *pre, float *y) {
    mlp_view m = mlp_at(p, in, hid, out);
    int nt = pllm_threads(ctx);
    /* W1T [in][hp], B1 [hp], W2T [hid][op], B2 [op], then per thread a [hp]. */
    size_t fixed = carve_size((size_t)in * m.hp) + carve_size(m.hp) + carve_size((size_t)hid * m.op) + carve_size(m.op);
    size_t per = carve_size(m.hp);
    char *base = pllm_scratch(ctx, fixed + per * nt);
    if (!base) return PLLM_ERR_NO_MEMORY;
    carver cv = {base};
    float *w1t = carve(&cv, (size_t)in * m.hp), *b1 = carve(&cv, m.hp);
    float *w2t = carve(&cv, (size_t)hid * m.op), *b2 = carve(&cv, m.op);
    memset(base, 0, fixed);
    for (int u = 0; u < hid; u++)
        for (int i = 0; i < in; i++) w1t[(size_t)i * m.hp + u] = m.w1[(size_t)u * in + i];
    memcpy(b1, m.b1, hid * sizeof(float));
    for (int o = 0; o < out; o++)
        for (int u = 0; u < hid; u++) w2t[(size_t)u * m.op + o] = m.w2[(size_t)o * hid + u];
    memcpy(b2, m.b2, out * sizeof(float));
    /* Parallel only above ~0.1 ms of work: a fork/join costs microseconds on
     * idle cores and much more on busy ones. Dynamic schedules everywhere
     * (results never depend on them) let a thread that got its core take
     * the work of one that did not. */
    int par = rows * (int64_t)hid * (in + out) > 1000000;
#pragma omp parallel num_threads(nt) if (par)
    {
        float *a = (float *)(base + fixed + per * thread_id());
#pragma omp for schedule(dynamic, 256)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * in;
            float *prer = pre + r * hid;
            for (int hc = 0; hc < hid; hc += VW) {
                V acc = vload(b1 + hc);
                for (int i = 0; i < in; i++) acc = vfma(vset1(xr[i]), vload(w1t + (size_t)i * m.hp + hc), acc);
                vstoren(prer + hc, acc, imin(VW, hid - hc));
                vstore(a + hc, vgelu(acc));
            }
            float *yr = y + r * out;
            for (int oc = 0; oc < out; oc += VW) {
                V acc = vload(b2 + oc);
                for (int u = 0; u < hid; u++) acc = vfma(vset1(a[u]), vload(w2t + (size_t)u * m.op + oc), acc);
                vstoren(yr + oc, acc, imin(VW, out - oc));
            }
        }
    }
    return PLLM_OK;
}

/* Adds the wave's partials (nb of them, each n floats, in block order) to g;
 * each element sees them in the same order on any thread count. */
static void add_partials(float *g, const float *part, int nb, int64_t n, int nt) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (n * nb > 65536)
    for (int64_t j0 = 0; j0 < n; j0 += 1024) {
        int64_t j1 = min64(n, j0 + 1024);
        for (int b = 0; b < nb; b++) {
            const float *pb = part + (size_t)b * n;
            for (int64_t j = j0; j < j1; j++) g[j] += pb[j];
        }
    }
}

static int k_mlp_backward(pllm_ctx *ctx, int in, int hid, int out, const float *p, float *g, const float *x,
                          const float *pre, const float *dy, int64_t rows, float *dx) {
    mlp_view m = mlp_at(p, in, hid, out);
    int nt = pllm_threads(ctx);
    int64_t np = PLLM_MLP_PARAMS(in, hid, out);
    int64_t nblk = (rows + RB - 1) / RB;
    int wave = (int)min64(nblk, PLLM_WAVE_BLOCKS);
    /* W1 rows [hid][ip] and W2 rows [out][hp], zero-padded; per thread the
     * block accumulators GW1T [in][hp], GB1 [hp], GW2 [out][hp], GB2 [op]
     * and dp [hp]; per wave block one partial in canonical layout. */
    size_t fixed = carve_size((size_t)hid * m.ip) + carve_size((size_t)out * m.hp);
    size_t acc_n = (size_t)in * m.hp + m.hp + (size_t)out * m.hp + m.op;
    size_t per = carve_size(acc_n) + carve_size(m.hp);
    size_t parts = carve_size((size_t)np * wave);
    char *base = pllm_scratch(ctx, fixed + per * nt + parts);
    if (!base) return PLLM_ERR_NO_MEMORY;
    carver cv = {base};
    float *w1p = carve(&cv, (size_t)hid * m.ip), *w2p = carve(&cv, (size_t)out * m.hp);
    memset(base, 0, fixed);
    for (int u = 0; u < hid; u++) memcpy(w1p + (size_t)u * m.ip, m.w1 + (size_t)u * in, in * sizeof(float));
    for (int o = 0; o < out; o++) memcpy(w2p + (size_t)o * m.hp, m.w2 + (size_t)o * hid, hid * sizeof(float));
    float *part = (float *)(base + fixed + per * nt);
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)min64(wave, nblk - b0);
        int par = nb > 1 && rows * (int64_t)hid * (in + out) > 500000;
#pragma omp parallel num_threads(nt) if (par)
        {
            float *acc = (float *)(base + fixed + per * thread_id());
            float *gw1t = acc, *gb1 = gw1t + (size_t)in * m.hp, *gw2 = gb1 + m.hp, *gb2 = gw2 + (size_t)out * m.hp;
            float *dp = (float *)((char *)acc + carve_size(acc_n));
#pragma omp for schedule(dynamic, 1)
            for (int bi = 0; bi < nb; bi++) {
                int64_t r0 = (b0 + bi) * RB, r1 = min64(rows, r0 + RB);
                memset(acc, 0, acc_n * sizeof(float));
                for (int64_t r = r0; r < r1; r++) {
                    const float *xr = x + r * in, *dyr = dy + r * out, *prer = pre + r * hid;
                    for (int hc = 0; hc < hid; hc += VW) {
                        V gp, a = vgelu_grad(vloadn(prer + hc, imin(VW, hid - hc)), &gp);
                        V da = vzero();
                        for (int o = 0; o < out; o++) {
                            V dyo = vset1(dyr[o]);
                            da = vfma(dyo, vload(w2p + (size_t)o * m.hp + hc), da);
                            float *q = gw2 + (size_t)o * m.hp + hc;
                            vstore(q, vfma(dyo, a, vload(q)));
                        }
                        V d = vmul(da, gp);
                        vstore(dp + hc, d);
                        vstore(gb1 + hc, vadd(vload(gb1 + hc), d));
                        for (int i = 0; i < in; i++) {
                            float *q = gw1t + (size_t)i * m.hp + hc;
                            vstore(q, vfma(vset1(xr[i]), d, vload(q)));
                        }
                    }
                    for (int oc = 0; oc < out; oc += VW)
                        vstore(gb2 + oc, vadd(vload(gb2 + oc), vloadn(dyr + oc, imin(VW, out - oc))));
                    if (dx) {
                        float *dxr = dx + r * in;
                        for (int ic = 0; ic < in; ic += VW) {
                            V s = vzero();
                            for (int u = 0; u < hid; u++) s = vfma(vset1(dp[u]), vload(w1p + (size_t)u * m.ip + ic), s);
                            vstoren(dxr + ic, s, imin(VW, in - ic));
                        }
                    }
                }
                float *pb = part + (size_t)bi * np;
                for (int u = 0; u < hid; u++)
                    for (int i = 0; i < in; i++) pb[(size_t)u * in + i] = gw1t[(size_t)i * m.hp + u];
                pb += (size_t)hid * in;
                memcpy(pb, gb1, hid * sizeof(float));
                pb += hid;
                for (int o = 0; o < out; o++) memcpy(pb + (size_t)o * hid, gw2 + (size_t)o * m.hp, hid * sizeof(float));
                pb += (size_t)out * hid;
                memcpy(pb, gb2, out * sizeof(float));
            }
        }
        add_partials(g, part, nb, np, nt);
    }
    return PLLM_OK;
}

/* =========================================================================
 * RLN forward / backward: one group (weight row) at a time, width in lanes.
 * ========================================================================= */

/* Sum of a[0..n) (two accumulators on the SIMD paths, one on the portable). */
static inline float vsum(const float *a, int n) {
#if VW > 1
    V s0 = vzero(), s1 = vzero();
    int w = 0;
    for (; w + 2 * VW <= n; w += 2 * VW) {
        s0 = vadd(s0, vload(a + w));
        s1 = vadd(s1, vload(a + w + VW));
    }
    for (; w < n; w += VW) s0 = vadd(s0, vloadn(a + w, imin(VW, n - w)));
    return vhsum(vadd(s0, s1));
#else
    float s = 0.0f;
    for (int w = 0; w < n; w++) s += a[w];
    return s;
#endif
}

/* Sum of (a[w]-mu)^2. */
static inline float vsumsqdev(const float *a, int n, float mu) {
#if VW > 1
    V m = vset1(mu);
    V s0 = vzero(), s1 = vzero();
    int w = 0;
    for (; w + 2 * VW <= n; w += 2 * VW) {
        V d0 = vsub(vload(a + w), m), d1 = vsub(vload(a + w + VW), m);
        s0 = vfma(d0, d0, s0);
        s1 = vfma(d1, d1, s1);
    }
    for (; w < n; w += VW) {
        int c = imin(VW, n - w);
        V d = vkeep(vsub(vloadn(a + w, c), m), c);
        s0 = vfma(d, d, s0);
    }
    return vhsum(vadd(s0, s1));
#else
    float s = 0.0f;
    for (int w = 0; w < n; w++) {
        float d = a[w] - mu;
        s += d * d;
    }
    return s;
#endif
}

static int k_rln_forward(pllm_ctx *ctx, int W, const float *p, const float *x, int64_t groups, float *y, float *mean,
                         float *rstd) {
    const float *gam = p, *bet = p + W;
    int nt = pllm_threads(ctx);
    int par = groups * (int64_t)W > (1 << 19);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64) if (par)
    for (int64_t r = 0; r < groups; r++) {
        const float *xr = x + r * W;
        float *yr = y + r * W;
        float mu = vsum(xr, W) / (float)W;
        float rs = 1.0f / sqrtf(vsumsqdev(xr, W, mu) / (float)W + PLLM_RLN_EPS);
        mean[r] = mu;
        rstd[r] = rs;
        V m = vset1(mu), q = vset1(rs);
        for (int w = 0; w < W; w += VW) {
            int c = imin(VW, W - w);
            V h = vmul(vsub(vloadn(xr + w, c), m), q);
            vstoren(yr + w, vfma(h, vloadn(gam + w, c), vloadn(bet + w, c)), c);
        }
    }
    return PLLM_OK;
}

static int k_rln_backward(pllm_ctx *ctx, int W, const float *p, float *g, const float *x, const float *dy,
                          int64_t groups, const float *mean, const float *rstd, float *dx) {
    const float *gam = p;
    int nt = pllm_threads(ctx);
    int64_t nblk = (groups + RB - 1) / RB;
    int wave = (int)min64(nblk, PLLM_WAVE_BLOCKS);
    float *part = pllm_scratch(ctx, (size_t)wave * 2 * W * sizeof(float));
    if (!part) return PLLM_ERR_NO_MEMORY;
    const int WC = 512; /* width chunk of a partial task */
    int nwc = (W + WC - 1) / WC;
    int par = groups * (int64_t)W > (1 << 18);
    /* dx, one group at a time */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64) if (par)
    for (int64_t r = 0; r < groups; r++) {
        const float *xr = x + r * W, *dyr = dy + r * W;
        float *dxr = dx + r * W;
        V m = vset1(mean[r]), q = vset1(rstd[r]);
        V s1 = vzero(), s2 = vzero();
        for (int w = 0; w < W; w += VW) {
            int c = imin(VW, W - w);
            V h = vkeep(vmul(vsub(vloadn(xr + w, c), m), q), c);
            V dh = vmul(vloadn(dyr + w, c), vloadn(gam + w, c));
            s1 = vadd(s1, dh);
            s2 = vfma(dh, h, s2);
        }
        V m1 = vset1(vhsum(s1) / (float)W), m2 = vset1(vhsum(s2) / (float)W);
        for (int w = 0; w < W; w += VW) {
            int c = imin(VW, W - w);
            V h = vmul(vsub(vloadn(xr + w, c), m), q);
            V dh = vmul(vloadn(dyr + w, c), vloadn(gam + w, c));
            vstoren(dxr + w, vmul(q, vsub(vsub(dh, m1), vmul(h, m2))), c);
        }
    }
    /* gGamma, gBeta: one partial per block of groups, each element summed in
     * group order; tasks are (block, width chunk) so narrow and wide rows
     * both spread over the threads. */
    for (int64_t b0 = 0; b0 < nblk; b0 += wave) {
        int nb = (int)min64(wave, nblk - b0);
        int ntask = nb * nwc;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par && ntask > 1)
        for (int task = 0; task < ntask; task++) {
            int bi = task / nwc, w0 = (task % nwc) * WC, w1 = imin(W, w0 + WC);
            float *pg = part + (size_t)bi * 2 * W, *pb = pg + W;
            memset(pg + w0, 0, (size_t)(w1 - w0) * sizeof(float));
            memset(pb + w0, 0, (size_t)(w1 - w0) * sizeof(float));
            int64_t r0 = (b0 + bi) * RB, r1 = min64(groups, r0 + RB);
            for (int64_t r = r0; r < r1; r++) {
                const float *xr = x + r * W, *dyr = dy + r * W;
                V m = vset1(mean[r]), q = vset1(rstd[r]);
                for (int w = w0; w < w1; w += VW) {
                    int c = imin(VW, w1 - w);
                    V h = vmul(vsub(vloadn(xr + w, c), m), q);
                    V d = vloadn(dyr + w, c);
                    vstoren(pg + w, vfma(d, h, vloadn(pg + w, c)), c);
                    vstoren(pb + w, vadd(d, vloadn(pb + w, c)), c);
                }
            }
        }
        add_partials(g, part, nb, 2 * (int64_t)W, nt);
    }
    return PLLM_OK;
}

/* =========================================================================
 * Adam: element-wise, the loop's operations in the loop's order (no fused
 * multiply-add), so the SIMD paths round like the loop.
 * ========================================================================= */

static int k_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                  float eps, float bc1, float bc2) {
    int nt = pllm_threads(ctx);
    const int64_t CH = 4096;
    int64_t nch = (n + CH - 1) / CH;
    const V B1 = vset1(b1), B2 = vset1(b2), C1 = vset1(1.0f - b1), C2 = vset1(1.0f - b2);
    const V LR = vset1(lr), BC1 = vset1(bc1), BC2 = vset1(bc2), EPS = vset1(eps);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 4) if (nch > 16)
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i1 = min64(n, (ch + 1) * CH);
        for (int64_t i = ch * CH; i < i1; i += VW) {
            int c = (int)min64(VW, i1 - i);
            V gi = vloadn(g + i, c);
            V mi = vadd(vmul(B1, vloadn(m + i, c)), vmul(C1, gi));
            V vi = vadd(vmul(B2, vloadn(v + i, c)), vmul(vmul(C2, gi), gi));
            V step = vdiv(vmul(LR, vdiv(mi, BC1)), vadd(vsqrt(vdiv(vi, BC2)), EPS));
            vstoren(m + i, mi, c);
            vstoren(v + i, vi, c);
            vstoren(p + i, vsub(vloadn(p + i, c), step), c);
        }
    }
    return PLLM_OK;
}

/* =========================================================================
 * decode: sub-vectors in lanes. A block is R whole weight rows (S = R*e
 * sub-vectors), laid out as [feature][Sp] arrays, so each MLP is a run of
 * broadcast-weight FMAs over full vectors and each RLN a sum over columns.
 * ========================================================================= */

#define DEC_TARGET 64 /* sub-vectors per block, at least one row */

typedef struct {
    int e, lat, hid, dim, W;
    int S, Sp; /* sub-vectors per full block, rounded up to VW */
    const float *d1, *d2, *d0;
    const float *G; /* [3][2][lat][Sp]: gamma, beta of N1, N2, N3 by lane */
} dec_plan;

/* One RLN over the nr rows of a block: Y [lat][Sp] -> U. */
PLLM_INLINE void dec_rln(const dec_plan *pl, int lat, const float *Y, float *U, const float *G, const float *B,
                         int nr, int scp, float *M, float *Rs, float *cs) {
    const int Sp = pl->Sp, e = pl->e, sc = nr * e;
    const float invW = 1.0f / (float)pl->W;
    for (int s0 = 0; s0 < scp; s0 += VW) {
        V acc = vload(Y + s0);
        for (int t = 1; t < lat; t++) acc = vadd(acc, vload(Y + (size_t)t * Sp + s0));
        vstore(cs + s0, acc);
    }
    for (int q = 0; q < nr; q++) {
        float sum = 0.0f;
        for (int s = q * e; s < q * e + e; s++) sum += cs[s];
        float mu = sum * invW;
        for (int s = q * e; s < q * e + e; s++) M[s] = mu;
    }
    for (int s = sc; s < scp; s++) M[s] = 0.0f;
    for (int s0 = 0; s0 < scp; s0 += VW) {
        V mv = vload(M + s0), acc = vzero();
        for (int t = 0; t < lat; t++) {
            V d = vsub(vload(Y + (size_t)t * Sp + s0), mv);
            acc = vfma(d, d, acc);
        }
        vstore(cs + s0, acc);
    }
    for (int q = 0; q < nr; q++) {
        float sum = 0.0f;
        for (int s = q * e; s < q * e + e; s++) sum += cs[s];
        float rs = 1.0f / sqrtf(sum * invW + PLLM_RLN_EPS);
        for (int s = q * e; s < q * e + e; s++) Rs[s] = rs;
    }
    for (int s = sc; s < scp; s++) Rs[s] = 0.0f;
    for (int s0 = 0; s0 < scp; s0 += VW) {
        V mv = vload(M + s0), rv = vload(Rs + s0);
        for (int t = 0; t < lat; t++) {
            size_t o = (size_t)t * Sp + s0;
            vstore(U + o, vfma(vmul(vsub(vload(Y + o), mv), rv), vload(G + o), vload(B + o)));
        }
    }
}

/* One MLP over a tile of VW sub-vectors: in [ni][ld] -> dst [no][ldd]
 * (dst += when add). a holds nh vectors. */
PLLM_INLINE void dec_mlp(const float *in, size_t ld, int ni, int nh, int no, const float *mp, float *dst, size_t ldd,
                         int add, V *a) {
    const float *w1 = mp, *b1 = w1 + (size_t)nh * ni, *w2 = b1 + nh, *b2 = w2 + (size_t)no * nh;
    /* three passes, each of independent chains, so the long gelu chains
     * overlap instead of waiting on each other */
#pragma GCC unroll 16
    for (int u = 0; u < nh; u++) {
        V acc = vset1(b1[u]);
#pragma GCC unroll 16
        for (int i = 0; i < ni; i++) acc = vfma(vset1(w1[(size_t)u * ni + i]), vload(in + (size_t)i * ld), acc);
        a[u] = acc;
    }
#pragma GCC unroll 16
    for (int u = 0; u < nh; u++) a[u] = vgelu(a[u]);
#pragma GCC unroll 16
    for (int o = 0; o < no; o++) {
        V acc = vset1(b2[o]);
#pragma GCC unroll 16
        for (int u = 0; u < nh; u++) acc = vfma(vset1(w2[(size_t)o * nh + u]), a[u], acc);
        float *q = dst + (size_t)o * ldd;
        vstore(q, add ? vadd(vload(q), acc) : acc);
    }
}

#if defined(PLLM_ISA_AVX512)
/* Transposes the 8x8 block in each 256-bit half of r[0..8): afterwards
 * r[i] half h holds column i of the rows that half h held. */
PLLM_INLINE void tr8x8x2(__m512 r[8]) {
    __m512 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* 128-bit lanes: low = (a.l0, b.l0 | a.l2, b.l2), high = (a.l1, b.l1 | a.l3, b.l3) */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_permutex2var_ps(u[i], lo, u[i + 4]);
        r[i + 4] = _mm512_permutex2var_ps(u[i], hi, u[i + 4]);
    }
}
#endif

/* Decodes block rows [r0, r0+nr). lat, hid, dim are compile-time constants at
 * the specialised call sites. ws is this thread's work space. */
PLLM_INLINE void dec_block(const dec_plan *pl, int lat, int hid, int dim, const float *c, const int32_t *idx, int64_t r0,
                           int nr, float *out, float *ws, V *a) {
    const int Sp = pl->Sp, e = pl->e, sc = nr * e, scp = round_vw(sc);
    float *Y = ws, *U = Y + (size_t)lat * Sp, *M = U + (size_t)lat * Sp, *Rs = M + Sp, *cs = Rs + Sp;
    float *xt = cs + Sp; /* [dim][VW] */
    const int32_t *ib = idx + r0 * e;
    int s_done = 0;
#if defined(PLLM_ISA_AVX512)
    if (lat == 8) { /* 16 codewords of 8 -> 8 lane vectors, transposed in registers */
        for (; s_done + 16 <= sc; s_done += 16) {
            __m512 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(c + (int64_t)ib[s_done + i] * 8)),
                                          _mm256_loadu_ps(c + (int64_t)ib[s_done + 8 + i] * 8), 1);
            tr8x8x2(r);
            for (int t = 0; t < 8; t++) _mm512_storeu_ps(Y + (size_t)t * Sp + s_done, r[t]);
        }
    }
#endif
    for (int s = s_done; s < sc; s++) {
        const float *cj = c + (int64_t)ib[s] * lat;
        for (int t = 0; t < lat; t++) Y[(size_t)t * Sp + s] = cj[t];
    }
    for (int t = 0; t < lat; t++)
        for (int s = sc; s < scp; s++) Y[(size_t)t * Sp + s] = 0.0f;
    const size_t gsz = (size_t)lat * Sp;
    const float *G = pl->G;
    /* y = y + D1(N1(y)) */
    dec_rln(pl, lat, Y, U, G, G + gsz, nr, scp, M, Rs, cs);
    for (int s0 = 0; s0 < scp; s0 += VW) dec_mlp(U + s0, Sp, lat, hid, lat, pl->d1, Y + s0, Sp, 1, a);
    /* y = N3(y + D2(N2(y))) */
    dec_rln(pl, lat, Y, U, G + 2 * gsz, G + 3 * gsz, nr, scp, M, Rs, cs);
    for (int s0 = 0; s0 < scp; s0 += VW) dec_mlp(U + s0, Sp, lat, hid, lat, pl->d2, Y + s0, Sp, 1, a);
    dec_rln(pl, lat, Y, U, G + 4 * gsz, G + 5 * gsz, nr, scp, M, Rs, cs);
    /* x = D0(y), written back to sub-vector rows */
    float *ob = out + r0 * e * (int64_t)dim;
    for (int s0 = 0; s0 < scp; s0 += VW) {
        dec_mlp(U + s0, Sp, lat, hid, dim, pl->d0, xt, VW, 0, a);
        int nl = imin(VW, sc - s0);
#if defined(PLLM_ISA_AVX512)
        if (dim == 8) { /* 8 lane vectors -> 16 rows of 8, transposed in registers */
            __m512 r[8];
            for (int o = 0; o < 8; o++) r[o] = _mm512_load_ps(xt + o * VW);
            tr8x8x2(r);
            float *q = ob + (int64_t)s0 * 8;
            for (int i = 0; i < 8; i++) {
                if (i < nl) _mm256_storeu_ps(q + i * 8, _mm512_castps512_ps256(r[i]));
                if (i + 8 < nl) _mm256_storeu_ps(q + (i + 8) * 8, _mm512_extractf32x8_ps(r[i], 1));
            }
            continue;
        }
#endif
        for (int l = 0; l < nl; l++)
            for (int o = 0; o < dim; o++) ob[(int64_t)(s0 + l) * dim + o] = xt[o * VW + l];
    }
}

static int k_decode(pllm_ctx *ctx, int e, int dim, int lat, int hid, const float *p, const float *c,
                    const int32_t *idx, int64_t rows, float *out) {
    dec_plan pl;
    pl.e = e;
    pl.lat = lat;
    pl.hid = hid;
    pl.dim = dim;
    pl.W = e * lat;
    int64_t R = e >= DEC_TARGET ? 1 : DEC_TARGET / e;
    if (R > rows) R = rows;
    pl.S = (int)R * e;
    pl.Sp = round_vw(pl.S);
    const int64_t W = pl.W, P1 = PLLM_MLP_PARAMS(lat, hid, lat);
    const float *n1 = p, *n2 = p + 2 * W + P1, *n3 = n2 + 2 * W + P1;
    pl.d1 = p + 2 * W;
    pl.d2 = n2 + 2 * W;
    pl.d0 = n3 + 2 * W;
    int nt = pllm_threads(ctx);
    size_t gsz = (size_t)lat * pl.Sp;
    size_t fixed = carve_size(6 * gsz);
    size_t per = carve_size(2 * gsz + 3 * (size_t)pl.Sp + (size_t)dim * VW) + carve_size((size_t)hid * VW);
    char *base = pllm_scratch(ctx, fixed + per * nt);
    if (!base) return PLLM_ERR_NO_MEMORY;
    float *G = (float *)base;
    const float *ns[3] = {n1, n2, n3};
    for (int nn = 0; nn < 3; nn++)
        for (int h = 0; h < 2; h++) {
            const float *src = ns[nn] + h * W;
            float *dst = G + (size_t)(2 * nn + h) * gsz;
            for (int t = 0; t < lat; t++)
                for (int s = 0; s < pl.Sp; s++)
                    dst[(size_t)t * pl.Sp + s] = s < pl.S ? src[(size_t)(s % e) * lat + t] : 0.0f;
        }
    pl.G = G;
    int64_t nblk = (rows + R - 1) / R;
    int par = nblk > 1 && rows * (int64_t)e * hid * (2 * lat + dim) > 200000;
#pragma omp parallel num_threads(nt) if (par)
    {
        char *mine = base + fixed + per * thread_id();
        float *ws = (float *)mine;
        V *abuf = (V *)(mine + carve_size(2 * gsz + 3 * (size_t)pl.Sp + (size_t)dim * VW));
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t r0 = b * R;
            int nr = (int)min64(R, rows - r0);
            if (lat == 8 && hid == 16 && dim == 8) {
                V a[16];
                dec_block(&pl, 8, 16, 8, c, idx, r0, nr, out, ws, a);
            } else if (lat == 4 && hid == 16 && dim == 4) {
                V a[16];
                dec_block(&pl, 4, 16, 4, c, idx, r0, nr, out, ws, a);
            } else {
                dec_block(&pl, lat, hid, dim, c, idx, r0, nr, out, ws, abuf);
            }
        }
    }
    return PLLM_OK;
}

/* =========================================================================
 * gemm: op(A) and op(B) are packed once into panels (GM_MR rows of op(A),
 * GM_NR columns of op(B), each [k][width] so the inner loop streams
 * memory); C is cut into tiles of GM_MC x GM_NC, one per OpenMP work item;
 * for each GM_KC slice of the inner dimension a register micro-kernel
 * updates GM_MR x GM_NR accumulators, which live in the tile's accumulator
 * buffer between slices. Every output is therefore one float32 sum over
 * t = 0..k-1 in order, whatever the tiles and threads; alpha and beta are
 * applied once at the end.
 * ========================================================================= */

#if defined(PLLM_ISA_AVX512)
#define GM_MR 8 /* 8 x 2 zmm accumulators of 32 */
#define GM_NV 2
#define GM_MC 128
#elif defined(PLLM_ISA_AVX2)
#define GM_MR 6 /* 6 x 2 ymm accumulators, 2 for B and 1 broadcast: 15 of 16 */
#define GM_NV 2
#define GM_MC 96
#else
#define GM_MR 4 /* 16 scalar accumulators */
#define GM_NV 4
#define GM_MC 64
#endif
#define GM_NR (GM_NV * VW)
#define GM_KC 256 /* a B micro-panel (GM_KC x GM_NR) stays in L1 */
#define GM_NC 128 /* a multiple of every GM_NR; small enough to give threads several tiles at n = 256 */
#define GM_ACC_BLK (GM_MR * GM_NR)

/* Panels of GM_MR rows of op(A): panel p is [k][GM_MR], zero past row m. */
static void gm_pack_a(int trans, int64_t m, int64_t k, const float *a, float *ap, int nt) {
    int64_t np = (m + GM_MR - 1) / GM_MR;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8) if (np * k > 65536)
    for (int64_t p = 0; p < np; p++) {
        float *dst = ap + p * k * GM_MR;
        for (int r = 0; r < GM_MR; r++) {
            int64_t i = p * GM_MR + r;
            if (i >= m) {
                for (int64_t t = 0; t < k; t++) dst[t * GM_MR + r] = 0.0f;
            } else if (trans) { /* op(A)[i,t] = A[t,i], A stored [k,m] */
                for (int64_t t = 0; t < k; t++) dst[t * GM_MR + r] = a[t * m + i];
            } else {
                const float *row = a + i * k;
                for (int64_t t = 0; t < k; t++) dst[t * GM_MR + r] = row[t];
            }
        }
    }
}

/* Panels of GM_NR columns of op(B): panel q is [k][GM_NR], zero past column n. */
static void gm_pack_b(int trans, int64_t n, int64_t k, const float *b, float *bp, int nt) {
    int64_t nq = (n + GM_NR - 1) / GM_NR;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8) if (nq * k > 65536)
    for (int64_t q = 0; q < nq; q++) {
        float *dst = bp + q * k * GM_NR;
        int64_t j0 = q * GM_NR;
        int w = (int)min64(GM_NR, n - j0);
        for (int64_t t = 0; t < k; t++) {
            float *d = dst + t * GM_NR;
            if (trans) { /* op(B)[t,j] = B[j,t], B stored [n,k] */
                for (int u = 0; u < w; u++) d[u] = b[(j0 + u) * k + t];
            } else {
                memcpy(d, b + t * n + j0, (size_t)w * sizeof(float));
            }
            for (int u = w; u < GM_NR; u++) d[u] = 0.0f;
        }
    }
}

/* acc [GM_MR][GM_NR] += ap [kc][GM_MR] x bp [kc][GM_NR], one t at a time. */
PLLM_INLINE void gm_micro(int kc, const float *restrict ap, const float *restrict bp, float *restrict acc) {
    V c[GM_MR][GM_NV];
    for (int r = 0; r < GM_MR; r++)
        for (int v = 0; v < GM_NV; v++) c[r][v] = vload(acc + r * GM_NR + v * VW);
    for (int t = 0; t < kc; t++) {
        V bv[GM_NV];
        for (int v = 0; v < GM_NV; v++) bv[v] = vload(bp + (size_t)t * GM_NR + v * VW);
        for (int r = 0; r < GM_MR; r++) {
            V av = vset1(ap[(size_t)t * GM_MR + r]);
            for (int v = 0; v < GM_NV; v++) c[r][v] = vfma(av, bv[v], c[r][v]);
        }
    }
    for (int r = 0; r < GM_MR; r++)
        for (int v = 0; v < GM_NV; v++) vstore(acc + r * GM_NR + v * VW, c[r][v]);
}

static int k_gemm(pllm_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, const float *b, float beta, float *c) {
    int nt = pllm_threads(ctx);
    int64_t np = (m + GM_MR - 1) / GM_MR, nq = (n + GM_NR - 1) / GM_NR;
    size_t asz = carve_size((size_t)(np * GM_MR) * (size_t)k), bsz = carve_size((size_t)(nq * GM_NR) * (size_t)k);
    size_t per = carve_size((size_t)GM_MC * GM_NC);
    char *base = pllm_scratch(ctx, asz + bsz + per * nt);
    if (!base) return PLLM_ERR_NO_MEMORY;
    carver cv = {base};
    float *ap = carve(&cv, (size_t)(np * GM_MR) * (size_t)k), *bp = carve(&cv, (size_t)(nq * GM_NR) * (size_t)k);
    gm_pack_a(trans_a, m, k, a, ap, nt);
    gm_pack_b(trans_b, n, k, b, bp, nt);
    int64_t tm = (m + GM_MC - 1) / GM_MC, tn = (n + GM_NC - 1) / GM_NC;
    int par = tm * tn > 1 && (double)m * (double)n * (double)k > 1e6;
#pragma omp parallel num_threads(nt) if (par)
    {
        float *acc = (float *)(base + asz + bsz + per * thread_id());
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < tm * tn; tile++) {
            int64_t i0 = tile / tn * GM_MC, j0 = tile % tn * GM_NC;
            int mc = (int)min64(GM_MC, m - i0), nc = (int)min64(GM_NC, n - j0);
            int tp = (mc + GM_MR - 1) / GM_MR, tq = (nc + GM_NR - 1) / GM_NR;
            memset(acc, 0, (size_t)tp * tq * GM_ACC_BLK * sizeof(float));
            for (int64_t t0 = 0; t0 < k; t0 += GM_KC) {
                int kc = (int)min64(GM_KC, k - t0);
                for (int q = 0; q < tq; q++) {
                    const float *bq = bp + ((j0 / GM_NR + q) * k + t0) * GM_NR;
                    for (int p = 0; p < tp; p++)
                        gm_micro(kc, ap + ((i0 / GM_MR + p) * k + t0) * GM_MR, bq,
                                 acc + (size_t)(p * tq + q) * GM_ACC_BLK);
                }
            }
            for (int i = 0; i < mc; i++) {
                const float *arow = acc + (size_t)(i / GM_MR) * tq * GM_ACC_BLK + (i % GM_MR) * GM_NR;
                float *crow = c + (i0 + i) * n + j0;
                for (int j = 0; j < nc; j++) {
                    float s = arow[(size_t)(j / GM_NR) * GM_ACC_BLK + j % GM_NR];
                    crow[j] = beta == 0.0f ? alpha * s : alpha * s + beta * crow[j];
                }
            }
        }
    }
    return PLLM_OK;
}

const pllm_kernels KERNELS_NAME = {
    KERNELS_LABEL, k_assign, k_mlp_forward, k_mlp_backward, k_rln_forward, k_rln_backward, k_adam, k_decode, k_gemm,
};
