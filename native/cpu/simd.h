/*
 * simd.h - one vector type V of VW float lanes for the instruction set the
 * including file is compiled for (PLLM_ISA_AVX512, PLLM_ISA_AVX2 or neither).
 * The kernels in kernels.inc.c are written once against these helpers.
 *
 * Helpers whose result must be reproducible across paths (fma) are exact
 * hardware instructions; gelu uses a polynomial exp and a refined reciprocal
 * on the SIMD paths (a few ulp from the libm form the portable path uses).
 */
#ifndef PLLM_SIMD_H
#define PLLM_SIMD_H

#include <math.h>
#include <stdint.h>

#define PLLM_INLINE static inline __attribute__((always_inline))

/* gelu constants: sqrt(2/pi) and the cubic coefficient of the tanh form. */
#define GELU_K0 0.7978845608028654f
#define GELU_K1 0.044715f

#if defined(PLLM_ISA_AVX512)
#include <immintrin.h>
#define VW 16
typedef __m512 V;
PLLM_INLINE __mmask16 vmask_(int n) { return (__mmask16)((1u << n) - 1u); }
PLLM_INLINE V vzero(void) { return _mm512_setzero_ps(); }
PLLM_INLINE V vset1(float a) { return _mm512_set1_ps(a); }
PLLM_INLINE V vload(const float *p) { return _mm512_loadu_ps(p); }
PLLM_INLINE void vstore(float *p, V a) { _mm512_storeu_ps(p, a); }
PLLM_INLINE V vloadn(const float *p, int n) { return _mm512_maskz_loadu_ps(vmask_(n), p); }
PLLM_INLINE void vstoren(float *p, V a, int n) { _mm512_mask_storeu_ps(p, vmask_(n), a); }
PLLM_INLINE V vkeep(V a, int n) { return _mm512_maskz_mov_ps(vmask_(n), a); } /* lanes >= n zeroed */
PLLM_INLINE V vadd(V a, V b) { return _mm512_add_ps(a, b); }
PLLM_INLINE V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
PLLM_INLINE V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
PLLM_INLINE V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
PLLM_INLINE V vsqrt(V a) { return _mm512_sqrt_ps(a); }
PLLM_INLINE V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }   /* a*b+c */
PLLM_INLINE V vfnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); } /* c-a*b */
PLLM_INLINE V vmin(V a, V b) { return _mm512_min_ps(a, b); }
PLLM_INLINE V vmax(V a, V b) { return _mm512_max_ps(a, b); }
PLLM_INLINE V vround(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
PLLM_INLINE V vscale2(V p, V n) { return _mm512_scalef_ps(p, n); } /* p * 2^n */
PLLM_INLINE V vrcp(V d) {                                          /* 1/d, ~23 bits */
    V r = _mm512_rcp14_ps(d);
    return vfma(r, vfnma(d, r, vset1(1.0f)), r);
}
PLLM_INLINE float vhsum(V a) { return _mm512_reduce_add_ps(a); }
#define PLLM_FMAF(a, b, c) fmaf((a), (b), (c))

#elif defined(PLLM_ISA_AVX2)
#include <immintrin.h>
#define VW 8
typedef __m256 V;
PLLM_INLINE __m256i vmask_(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
PLLM_INLINE V vzero(void) { return _mm256_setzero_ps(); }
PLLM_INLINE V vset1(float a) { return _mm256_set1_ps(a); }
PLLM_INLINE V vload(const float *p) { return _mm256_loadu_ps(p); }
PLLM_INLINE void vstore(float *p, V a) { _mm256_storeu_ps(p, a); }
PLLM_INLINE V vloadn(const float *p, int n) { return _mm256_maskload_ps(p, vmask_(n)); }
PLLM_INLINE void vstoren(float *p, V a, int n) { _mm256_maskstore_ps(p, vmask_(n), a); }
PLLM_INLINE V vkeep(V a, int n) { return _mm256_and_ps(a, _mm256_castsi256_ps(vmask_(n))); }
PLLM_INLINE V vadd(V a, V b) { return _mm256_add_ps(a, b); }
PLLM_INLINE V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
PLLM_INLINE V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
PLLM_INLINE V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
PLLM_INLINE V vsqrt(V a) { return _mm256_sqrt_ps(a); }
PLLM_INLINE V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
PLLM_INLINE V vfnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
PLLM_INLINE V vmin(V a, V b) { return _mm256_min_ps(a, b); }
PLLM_INLINE V vmax(V a, V b) { return _mm256_max_ps(a, b); }
PLLM_INLINE V vround(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
PLLM_INLINE V vscale2(V p, V n) { /* p * 2^n for integral n in [-126, 127] */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
PLLM_INLINE V vrcp(V d) { /* rcpps is 12 bits; two Newton steps reach ~23 */
    V r = _mm256_rcp_ps(d);
    r = vfma(r, vfnma(d, r, vset1(1.0f)), r);
    return vfma(r, vfnma(d, r, vset1(1.0f)), r);
}
PLLM_INLINE float vhsum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define PLLM_FMAF(a, b, c) fmaf((a), (b), (c))

#else /* portable C: one lane */
#define VW 1
typedef float V;
PLLM_INLINE V vzero(void) { return 0.0f; }
PLLM_INLINE V vset1(float a) { return a; }
PLLM_INLINE V vload(const float *p) { return *p; }
PLLM_INLINE void vstore(float *p, V a) { *p = a; }
PLLM_INLINE V vloadn(const float *p, int n) { return n > 0 ? *p : 0.0f; }
PLLM_INLINE void vstoren(float *p, V a, int n) { if (n > 0) *p = a; }
PLLM_INLINE V vkeep(V a, int n) { return n > 0 ? a : 0.0f; }
PLLM_INLINE V vadd(V a, V b) { return a + b; }
PLLM_INLINE V vsub(V a, V b) { return a - b; }
PLLM_INLINE V vmul(V a, V b) { return a * b; }
PLLM_INLINE V vdiv(V a, V b) { return a / b; }
PLLM_INLINE V vsqrt(V a) { return sqrtf(a); }
/* Two roundings: without an FMA unit fmaf is a slow library call. */
PLLM_INLINE V vfma(V a, V b, V c) { return a * b + c; }
PLLM_INLINE V vfnma(V a, V b, V c) { return c - a * b; }
PLLM_INLINE V vmin(V a, V b) { return a < b ? a : b; }
PLLM_INLINE V vmax(V a, V b) { return a > b ? a : b; }
PLLM_INLINE V vrcp(V d) { return 1.0f / d; }
PLLM_INLINE float vhsum(V a) { return a; }
#define PLLM_FMAF(a, b, c) ((a) * (b) + (c))
#endif

#if VW > 1
/* gelu(a) = 0.5 a (1 + tanh u) = a / (1 + 2^y), u = K0 (a + K1 a^3),
 * y = -2 u log2(e). 2^y = 2^n 2^f with n = round(y), f in [-1/2, 1/2] and
 * 2^f from a degree-5 polynomial (Chebyshev fit, 1e-7 relative); y is
 * clamped to 125 so 1 + 2^y stays finite (gelu is then -0 anyway). The
 * reciprocal is rcp14 and one Newton step. About 3 ulp from the libm form. */
#define GELU_Y0 (-2.0f * 1.4426950408889634f * GELU_K0)
#define GELU_Y1 (-2.0f * 1.4426950408889634f * GELU_K0 * GELU_K1)
PLLM_INLINE V vexp2_gelu(V a) { /* 1 + 2^y */
    V y = vmul(a, vfma(vmul(a, a), vset1(GELU_Y1), vset1(GELU_Y0)));
#if defined(PLLM_ISA_AVX512)
    y = vmin(y, vset1(125.0f)); /* scalef itself handles n below -126 */
#else
    y = vmax(vmin(y, vset1(125.0f)), vset1(-125.0f)); /* vscale2 builds 2^n from exponent bits */
#endif
    V n = vround(y);
    V f = vsub(y, n);
    V p = vset1(1.339086336e-03f);
    p = vfma(p, f, vset1(9.676031918e-03f));
    p = vfma(p, f, vset1(5.550357114e-02f));
    p = vfma(p, f, vset1(2.402210749e-01f));
    p = vfma(p, f, vset1(6.931471880e-01f));
    p = vfma(p, f, vset1(1.000000075e+00f));
    return vadd(vset1(1.0f), vscale2(p, n));
}
PLLM_INLINE V vgelu(V a) {
    V d = vexp2_gelu(a);
#if defined(PLLM_ISA_AVX512)
    V r = _mm512_rcp14_ps(d);
    V e = vfnma(d, r, vset1(1.0f));
    V t = vmul(a, r);
    return vfma(t, e, t); /* a r (2 - d r) */
#else
    return vmul(a, vrcp(d));
#endif
}
/* gelu and gelu': with s = 1 / (1 + 2^y), d/da [a s] = s + a s (1-s) 2 u'(a),
 * u' = K0 (1 + 3 K1 a^2). */
PLLM_INLINE V vgelu_grad(V a, V *ga) {
    V s = vrcp(vexp2_gelu(a));
    /* past |a| = 10, s(1-s) is 0 in float32; clamping keeps a^2 finite */
    V ac = vmax(vmin(a, vset1(10.0f)), vset1(-10.0f));
    V du2 = vfma(vmul(ac, ac), vset1(6.0f * GELU_K0 * GELU_K1), vset1(2.0f * GELU_K0));
    V ss = vfnma(s, s, s); /* s - s^2 */
    *ga = vfma(vmul(ac, ss), du2, s);
    return vmul(a, s);
}
#else
PLLM_INLINE V vgelu(V a) {
    return 0.5f * a * (1.0f + tanhf(GELU_K0 * (a + GELU_K1 * a * a * a)));
}
PLLM_INLINE V vgelu_grad(V a, V *ga) {
    float t = tanhf(GELU_K0 * (a + GELU_K1 * a * a * a));
    float ac = a > 10.0f ? 10.0f : a < -10.0f ? -10.0f : a; /* 1-t^2 is 0 there; keeps a^2 finite */
    *ga = 0.5f * (1.0f + t) + 0.5f * ac * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * ac * ac);
    return 0.5f * a * (1.0f + t);
}
#endif

#endif /* PLLM_SIMD_H */
