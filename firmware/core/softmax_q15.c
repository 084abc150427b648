/* Integer softmax to Q15 probabilities with the base-2 exponent table. */
#include "kernels.h"

trm_status trm_softmax_q15(int32_t *s, int len, int32_t M, int32_t n)
{
    if (!s || len < 1 || len > (1 << 16) || M < 0 || n < 1 || n > TRM_MN_MAX_SHIFT)
        return TRM_ERR_ARG;
    int32_t max = s[0];
    for (int j = 1; j < len; ++j)
        if (s[j] > max)
            max = s[j];
    uint32_t total = 0; /* <= len * 2^15 < 2^32 */
    for (int j = 0; j < len; ++j) {
        const int64_t d = (int64_t)s[j] - max;               /* <= 0, > -2^32 */
        int64_t u = trm_round_shift(d * M, (int)n);          /* <= 0: units of 2^-8 of log2 */
        if (u < -TRM_EXP_RANGE)
            u = -TRM_EXP_RANGE;
        const uint32_t neg = (uint32_t)(-u);                 /* 0 .. 4096 */
        const uint32_t e = neg >= TRM_EXP_RANGE ? 0u
                         : (uint32_t)trm_exp2_q15[neg & 255u] >> (neg >> TRM_EXP_FRAC_BITS);
        s[j] = (int32_t)e;
        total += e;
    }
    /* the maximum contributes exactly 2^15, so total >= 2^15 and rcp <= 2^15 */
    const uint32_t rcp = (UINT32_C(1) << 30) / total;
    for (int j = 0; j < len; ++j)
        s[j] = (int32_t)trm_round_shift((int64_t)s[j] * rcp, TRM_PROB_BITS);
    return TRM_OK;
}
