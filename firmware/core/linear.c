/* The linear kernels' working memory, and the external definitions of the dispatch on the weight
 * width (kernels.h). */
#include "dot.h"
#include "kernels.h"

#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
const int32_t trm_dsp_no_mn[2 * TRM_DSP_LEFT] = {0};
#endif

size_t trm_linear_scratch_bytes(const trm_mat *W)
{
#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
    if (W && trm_dsp_takes(W))
        return 4u * trm_dsp_x_words(W);
#else
    (void)W;
#endif
    return 0u;
}

size_t trm_linear_pair_scratch_bytes(const trm_mat *W)
{
    return 2u * trm_linear_scratch_bytes(W);
}

trm_status trm_linear_pair(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                           void *scratch)
{
    if (!W || !x0 || !x1 || !out0 || !out1 || !W->w || !W->mn || (W->bits != 8 && W->bits != 4))
        return TRM_ERR_ARG;
#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
    if (trm_dsp_takes(W)) {
        if (!scratch || ((uintptr_t)scratch & 3u))
            return TRM_ERR_ARG;
        if (W->bits == 8)
            trm_linear_s8_pair_dsp(W, x0, x1, out0, out1, scratch);
        else
            trm_linear_s4_pair_dsp(W, x0, x1, out0, out1, scratch);
        return TRM_OK;
    }
#endif
    const trm_status st = trm_linear(W, x0, out0, scratch);
    return st != TRM_OK ? st : trm_linear(W, x1, out1, scratch);
}

extern inline trm_status trm_linear(const trm_mat *W, const int8_t *x, int8_t *out, void *scratch);
extern inline trm_status trm_linear_s16(const trm_mat *W, const int8_t *x, int16_t *out, void *scratch);
