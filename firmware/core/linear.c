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

extern inline trm_status trm_linear(const trm_mat *W, const int8_t *x, int8_t *out, void *scratch);
extern inline trm_status trm_linear_s16(const trm_mat *W, const int8_t *x, int16_t *out, void *scratch);
