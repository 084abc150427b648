/* Weighted add: several int8 tensors at different scales brought to one output scale with int16
 * coefficients in Q12 (the network input h). */
#include "kernels.h"

trm_status trm_weighted_add_s8(const int8_t *const *terms, const int16_t *coef, int n_terms, int len,
                               int8_t *out)
{
    if (!terms || !coef || !out || n_terms < 1 || len < 0)
        return TRM_ERR_ARG;
    for (int t = 0; t < n_terms; ++t)
        if (!terms[t])
            return TRM_ERR_ARG;
    for (int i = 0; i < len; ++i) {
        int64_t acc = 0; /* |q * a| < 2^22 per term: int32 would do for a few terms */
        for (int t = 0; t < n_terms; ++t)
            acc += (int32_t)terms[t][i] * (int32_t)coef[t];
        out[i] = (int8_t)trm_sat8(trm_round_shift(acc, TRM_ADD_SHIFT));
    }
    return TRM_OK;
}
