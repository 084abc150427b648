/* Linear layer with packed int4 weights (low nibble first): int32 accumulation, per-row
 * requantization. */
#include "dot.h"
#include "kernels.h"

trm_status trm_linear_s4(const trm_mat *W, const int8_t *x, trm_out out)
{
    if (!W || !x || !out.s8 == !out.s16 || W->bits != 4 || !W->w || !W->mn)
        return TRM_ERR_ARG;
    const uint8_t *row = (const uint8_t *)W->w;
    const int K = W->cols;
    const size_t stride = trm_mat_row_bytes(W);
    for (int o = 0; o < W->rows; ++o, row += stride)
        trm_store_row(out, o, trm_dot_s4(x, row, K), W->mn);
    return TRM_OK;
}
