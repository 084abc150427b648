/* Integer softmax to Q15 probabilities with the base-2 exponent table. */
#include "kernels.h"

trm_status trm_softmax_q15(int32_t *s, int len, int32_t M, int32_t n)
{
    if (!s || len < 1 || len > (1 << 16) || M < 0 || n < 1 || n > TRM_MN_MAX_SHIFT)
        return TRM_ERR_ARG;
    int32_t max = s[0], min = s[0];
    for (int j = 1; j < len; ++j) {
        if (s[j] > max)
            max = s[j];
        if (s[j] < min)
            min = s[j];
    }
    uint32_t total = 0; /* <= len * 2^15 < 2^32 */
    /* the usual case in 32-bit words: every d = s[j] - max fits int32 and n > 32, where
     * round_shift(d * M, n) is trm_round_shift_high(d, M, n) exactly (arith.h) */
    const int narrow = n > 32 && (int64_t)max - min <= INT32_MAX;
    for (int j = 0; j < len; ++j) {
        int64_t u;                                           /* <= 0: units of 2^-8 of log2 */
        if (narrow)
            u = trm_round_shift_high(s[j] - max, M, n);
        else
            u = trm_round_shift(((int64_t)s[j] - max) * M, (int)n); /* d <= 0, > -2^32 */
        if (u < -TRM_EXP_RANGE)
            u = -TRM_EXP_RANGE;
        const uint32_t neg = (uint32_t)(-u);                 /* 0 .. 4096 */
        const uint32_t e = neg >= TRM_EXP_RANGE ? 0u
                         : (uint32_t)trm_exp2_q15[neg & 255u] >> (neg >> TRM_EXP_FRAC_BITS);
        s[j] = (int32_t)e;
        total += e;
    }
    /* the maximum contributes exactly 2^15, so total >= 2^15 and rcp <= 2^15: e * rcp <= 2^30, and the
     * rounding shift stays in 32-bit words */
    const uint32_t rcp = (UINT32_C(1) << 30) / total;
    for (int j = 0; j < len; ++j)
        s[j] = (int32_t)(((uint32_t)s[j] * rcp + (UINT32_C(1) << (TRM_PROB_BITS - 1))) >> TRM_PROB_BITS);
    return TRM_OK;
}
