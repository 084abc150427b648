/* SwiGLU over one vector: gate/up projection, SiLU table, requantized product, down projection. */
#include "kernels.h"

size_t trm_swiglu_s8_scratch_bytes(const trm_swiglu *p)
{
    return p ? 2u * (size_t)p->inner : 0u;
}

trm_status trm_swiglu_s8(const trm_swiglu *p, const int8_t *x, int8_t *scratch, int8_t *out)
{
    if (!p || !x || !scratch || !out || !p->silu || p->gate_up.rows != 2 * p->inner ||
        p->down.cols != p->inner)
        return TRM_ERR_ARG;
    const int I = p->inner;
    trm_status st = trm_linear(&p->gate_up, x, scratch); /* gate [0, I), up [I, 2I) */
    if (st != TRM_OK)
        return st;
    for (int i = 0; i < I; ++i) {
        int32_t act = p->silu[(int32_t)scratch[i] + 128];
        int32_t up = scratch[I + i];
        /* the product overwrites the gate it came from: |act * up| <= 2^14 */
        scratch[i] = (int8_t)trm_requantize(act * up, p->prod_M, p->prod_n, TRM_INT8_MIN, TRM_INT8_MAX);
    }
    return trm_linear(&p->down, scratch, out);
}
