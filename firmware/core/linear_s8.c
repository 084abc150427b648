/* Linear layer with int8 weights: int32 accumulation, per-row requantization. */
#include "dot.h"
#include "kernels.h"

trm_status trm_linear_s8(const trm_mat *W, const int8_t *x, int8_t *out)
{
    if (!W || !x || !out || W->bits != 8 || !W->w || !W->mn)
        return TRM_ERR_ARG;
    const int8_t *row = (const int8_t *)W->w;
    const int K = W->cols;
    for (int o = 0; o < W->rows; ++o, row += K) {
        int32_t acc = trm_dot_s8(x, row, K);
        out[o] = (int8_t)trm_requantize(acc, W->mn[2 * o], W->mn[2 * o + 1], TRM_INT8_MIN, TRM_INT8_MAX);
    }
    return TRM_OK;
}

trm_status trm_linear_s8_s16(const trm_mat *W, const int8_t *x, int16_t *out)
{
    if (!W || !x || !out || W->bits != 8 || !W->w || !W->mn)
        return TRM_ERR_ARG;
    const int8_t *row = (const int8_t *)W->w;
    const int K = W->cols;
    for (int o = 0; o < W->rows; ++o, row += K) {
        int32_t acc = trm_dot_s8(x, row, K);
        out[o] = (int16_t)trm_requantize(acc, W->mn[2 * o], W->mn[2 * o + 1], TRM_INT16_MIN, TRM_INT16_MAX);
    }
    return TRM_OK;
}
