/* Weighted add: several int8 tensors at different scales brought to one output scale with int16
 * coefficients in Q12 (the network input h). */
#include "dot.h"
#include "kernels.h"

trm_status trm_weighted_add_s8(const int8_t *const *terms, const int16_t *coef, int n_terms, int len,
                               int8_t *out)
{
    if (!terms || !coef || !out || n_terms < 1 || len < 0)
        return TRM_ERR_ARG;
    for (int t = 0; t < n_terms; ++t)
        if (!terms[t])
            return TRM_ERR_ARG;
    int i = 0;
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    /* Helium, 16 elements per step while the int32 sums cannot overflow (|q * a| <= 2^22 per term:
     * up to 511 terms): each term widened to int16 lanes (VMOVLB/T) and multiplied into int32 lanes
     * (VMULLB/T), VRSHR #12 the rounding shift (half up, as round_shift), clamped, narrowed back in the
     * inverse lane order; the last len % 16 by the scalar loop. */
    if (n_terms < 512)
        for (; i + 16 <= len; i += 16) {
            int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            for (int t = 0; t < n_terms; ++t) {
                const int8x16_t q = vld1q_s8(terms[t] + i);
                const int16x8_t qb = vmovlbq_s8(q), qt = vmovltq_s8(q), c = vdupq_n_s16(coef[t]);
                acc[0] = vaddq_s32(acc[0], vmullbq_int_s16(qb, c));
                acc[1] = vaddq_s32(acc[1], vmulltq_int_s16(qb, c));
                acc[2] = vaddq_s32(acc[2], vmullbq_int_s16(qt, c));
                acc[3] = vaddq_s32(acc[3], vmulltq_int_s16(qt, c));
            }
            int32x4_t r[4];
            for (int k = 0; k < 4; ++k)
                r[k] = vmaxq_s32(vminq_s32(vrshrq_n_s32(acc[k], TRM_ADD_SHIFT), vdupq_n_s32(TRM_INT8_MAX)),
                                 vdupq_n_s32(TRM_INT8_MIN));
            const int16x8_t lo = vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), r[0]), r[1]);
            const int16x8_t hi = vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), r[2]), r[3]);
            vst1q_s8(out + i, vmovntq_s16(vmovnbq_s16(vdupq_n_s8(0), lo), hi));
        }
#endif
    for (; i < len; ++i) {
        int64_t acc = 0; /* |q * a| < 2^22 per term: int32 would do for a few terms */
        for (int t = 0; t < n_terms; ++t)
            acc += (int32_t)terms[t][i] * (int32_t)coef[t];
        out[i] = (int8_t)trm_sat8(trm_round_shift(acc, TRM_ADD_SHIFT));
    }
    return TRM_OK;
}
