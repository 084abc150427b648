/* Linear layer with int8 weights: int32 accumulation, per-row requantization. */
#include "dot.h"
#include "kernels.h"

trm_status trm_linear_s8(const trm_mat *W, const int8_t *x, trm_out out)
{
    if (!W || !x || !out.s8 == !out.s16 || W->bits != 8 || !W->w || !W->mn)
        return TRM_ERR_ARG;
    const int8_t *row = (const int8_t *)W->w;
    const int K = W->cols;
    for (int o = 0; o < W->rows; ++o, row += K)
        trm_store_row(out, o, trm_dot_s8(x, row, K), W->mn);
    return TRM_OK;
}
