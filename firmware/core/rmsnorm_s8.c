/* Integer RMSNorm to int8 at the carry scale, and the post-norm residual built on it. */
#include "dot.h"
#include "kernels.h"

trm_status trm_rmsnorm_s8(const int32_t *v, int D, uint32_t C, int8_t *out)
{
    if (!v || !out || D < 1 || C >= TRM_NORM_CONST_LIMIT)
        return TRM_ERR_ARG;
    uint64_t ss = 0; /* |v| < 2^23: each square < 2^46, D < 2^16 terms: < 2^62 */
    for (int d = 0; d < D; ++d)
        ss += (uint64_t)((int64_t)v[d] * v[d]);
    if (ss == 0) {
        for (int d = 0; d < D; ++d)
            out[d] = 0;
        return TRM_OK;
    }
    const int64_t inv = (int64_t)trm_rmsnorm_inv(ss, C); /* < 2^40 */
    for (int d = 0; d < D; ++d)
        out[d] = (int8_t)trm_sat8(trm_round_shift((int64_t)v[d] * inv, TRM_NORM_SHIFT));
    return TRM_OK;
}

/* out[d] = sat8(round_shift(v[d] * inv, TRM_NORM_SHIFT)). |v[d]| <= sqrt(ss) and inv <= C * 2^(16+k) / r + 1
 * with r + 1 > sqrt(ss) * 2^k bound |v[d] * inv| below C * 2^17 + r + 1 < 2^42, so the shifted value
 * fits 32 bits; with inv < 2^31 the product is one 32 x 32 -> 64-bit multiply (SMULL), exact. */
static inline int32_t scaled_s8(int32_t v, int32_t inv31)
{
    return trm_sat8_i32((int32_t)((trm_mul_i32(v, inv31) + ((int64_t)1 << (TRM_NORM_SHIFT - 1))) >> TRM_NORM_SHIFT));
}

#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
/* Helium: v = h * a + m * b for 16 channels as four int32x4 (the lanes of VMOVLB/VMOVLT and then of
 * VMULLB/VMULLT: the inverse narrowing puts them back in order). */
typedef struct {
    int32x4_t v[4];
} residual16;

static inline residual16 residual_lanes(const int8_t *h, const int8_t *m, int16x8_t A, int16x8_t B,
                                        mve_pred16_t pr)
{
    const int8x16_t h8 = vldrbq_z_s8(h, pr), m8 = vldrbq_z_s8(m, pr);
    const int16x8_t hb = vmovlbq_s8(h8), ht = vmovltq_s8(h8), mb = vmovlbq_s8(m8), mt = vmovltq_s8(m8);
    residual16 r;
    r.v[0] = vaddq_s32(vmullbq_int_s16(hb, A), vmullbq_int_s16(mb, B));
    r.v[1] = vaddq_s32(vmulltq_int_s16(hb, A), vmulltq_int_s16(mb, B));
    r.v[2] = vaddq_s32(vmullbq_int_s16(ht, A), vmullbq_int_s16(mt, B));
    r.v[3] = vaddq_s32(vmulltq_int_s16(ht, A), vmulltq_int_s16(mt, B));
    return r;
}

/* sat8(round_shift(v * inv, 24)) per lane as VRMULH(v << 8, inv) = floor((v * inv * 2^8 + 2^31) / 2^32):
 * exact for |v| < 2^23 and 0 <= inv < 2^31. */
static inline int32x4_t scaled4(int32x4_t v, int32_t inv31)
{
    const int32x4_t q = vrmulhq_s32(vshlq_n_s32(v, 8), vdupq_n_s32(inv31));
    return vmaxq_s32(vminq_s32(q, vdupq_n_s32(TRM_INT8_MAX)), vdupq_n_s32(TRM_INT8_MIN));
}

/* The residual RMSNorm when |a|, |b| <= 2^15 - 1 (so |v| < 2^23); returns 0 where it does not apply
 * (the reciprocal of 2^31 or more, which tiny sums give), the scalar code then runs. */
static int residual_rmsnorm_mve(const int8_t *h, const int8_t *m, int D, const trm_residual *r, int8_t *out)
{
    const int16x8_t A = vdupq_n_s16((int16_t)r->a), B = vdupq_n_s16((int16_t)r->b);
    int64_t ss = 0;
    for (int d = 0; d < D; d += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)(D - d));
        const residual16 v = residual_lanes(h + d, m + d, A, B, pr); /* lanes past D are 0 */
        for (int k = 0; k < 4; ++k)
            ss = vmlaldavaq_s32(ss, v.v[k], v.v[k]);
    }
    if (ss == 0) {
        for (int d = 0; d < D; ++d)
            out[d] = 0;
        return 1;
    }
    const uint64_t inv = trm_rmsnorm_inv((uint64_t)ss, r->C);
    if (inv >= ((uint64_t)1 << 31))
        return 0;
    const int32_t inv31 = (int32_t)inv;
    for (int d = 0; d < D; d += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)(D - d));
        const residual16 v = residual_lanes(h + d, m + d, A, B, pr);
        const int16x8_t lo = vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), scaled4(v.v[0], inv31)), scaled4(v.v[1], inv31));
        const int16x8_t hi = vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), scaled4(v.v[2], inv31)), scaled4(v.v[3], inv31));
        vstrbq_p_s8(out + d, vmovntq_s16(vmovnbq_s16(vdupq_n_s8(0), lo), hi), pr);
    }
    return 1;
}
#endif

trm_status trm_residual_rmsnorm_s8(const int8_t *h, const int8_t *m, int D, const trm_residual *r,
                                   int8_t *out)
{
    if (!h || !m || !r || !out || D < 1 || r->C >= TRM_NORM_CONST_LIMIT)
        return TRM_ERR_ARG;
    const int32_t a = r->a, b = r->b; /* int16 range: |h * a + m * b| <= 2^23, its square < 2^46 */
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    if (a > INT16_MIN && b > INT16_MIN && residual_rmsnorm_mve(h, m, D, r, out))
        return TRM_OK;
#endif
    uint64_t ss = 0;
    for (int d = 0; d < D; ++d) {
        const int32_t v = (int32_t)h[d] * a + (int32_t)m[d] * b;
        ss += (uint64_t)((int64_t)v * v);
    }
    if (ss == 0) {
        for (int d = 0; d < D; ++d)
            out[d] = 0;
        return TRM_OK;
    }
    const uint64_t inv = trm_rmsnorm_inv(ss, r->C);
    /* read h[d] and m[d] before writing out[d]: out may alias either */
    if (inv < ((uint64_t)1 << 31)) {
        const int32_t inv31 = (int32_t)inv;
        for (int d = 0; d < D; ++d)
            out[d] = (int8_t)scaled_s8((int32_t)h[d] * a + (int32_t)m[d] * b, inv31);
    } else {
        for (int d = 0; d < D; ++d) {
            const int64_t v = (int32_t)h[d] * a + (int32_t)m[d] * b;
            out[d] = (int8_t)trm_sat8(trm_round_shift(v * (int64_t)inv, TRM_NORM_SHIFT));
        }
    }
    return TRM_OK;
}
