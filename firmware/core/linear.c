/* Linear layer dispatch on the weight width. */
#include "dot.h"
#include "kernels.h"

#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
const int32_t trm_dsp_no_mn[2 * TRM_DSP_BLOCK] = {0};
#endif

trm_status trm_linear(const trm_mat *W, const int8_t *x, int8_t *out)
{
    if (!W)
        return TRM_ERR_ARG;
    const trm_out to = {out, NULL};
    return W->bits == 4 ? trm_linear_s4(W, x, to) : trm_linear_s8(W, x, to);
}

trm_status trm_linear_s16(const trm_mat *W, const int8_t *x, int16_t *out)
{
    if (!W)
        return TRM_ERR_ARG;
    const trm_out to = {NULL, out};
    return W->bits == 4 ? trm_linear_s4(W, x, to) : trm_linear_s8(W, x, to);
}
