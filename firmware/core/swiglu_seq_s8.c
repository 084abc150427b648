/* The mlp token mixer: one SwiGLU applied along the sequence axis of every channel.
 *
 * Layout: h stays [L][D] row-major; each channel's column is gathered into a contiguous L-byte
 * scratch vector, pushed through the SwiGLU (whose output overwrites the column buffer) and
 * scattered into out[.][d]. No [D][L] transpose of the whole tensor is needed. Scratch: the SwiGLU's
 * own (first, keeping its 4-byte alignment) | column [L]. */
#include "kernels.h"

size_t trm_swiglu_seq_s8_scratch_bytes(const trm_swiglu *p, int L)
{
    return p && L > 0 ? trm_swiglu_s8_scratch_bytes(p) + (size_t)L : 0u;
}

trm_status trm_swiglu_seq_s8(const trm_swiglu *p, const int8_t *h, int L, int D, int8_t *scratch,
                             int8_t *out)
{
    if (!p || !h || !scratch || !out || L < 1 || D < 1 || p->gate_up.cols != L || p->down.rows != L)
        return TRM_ERR_ARG;
    int8_t *inner = scratch;
    int8_t *col = scratch + trm_swiglu_s8_scratch_bytes(p);
    for (int d = 0; d < D; ++d) {
        trm_prof(p->prof, TRM_OP_MIX_GATHER);
        for (int l = 0; l < L; ++l)
            col[l] = h[(size_t)l * (size_t)D + (size_t)d];
        trm_status st = trm_swiglu_s8(p, col, inner, col);
        if (st != TRM_OK)
            return st;
        trm_prof(p->prof, TRM_OP_MIX_GATHER);
        for (int l = 0; l < L; ++l)
            out[(size_t)l * (size_t)D + (size_t)d] = col[l];
    }
    return TRM_OK;
}
