/* The mlp token mixer: one SwiGLU applied along the sequence axis of every channel.
 *
 * Layout: h stays [L][D] row-major; each channel's column is gathered into a contiguous L-byte
 * scratch vector, pushed through the SwiGLU (whose output overwrites the column buffer) and
 * scattered into out[.][d]. No [D][L] transpose of the whole tensor is needed. Scratch: the SwiGLU's
 * own (first, keeping its 4-byte alignment) | column [L]. */
#include "dot.h"
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
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    /* Helium: 8 rows per gather load and per scatter store (byte offsets l * D in int16 lanes) */
    const int vector = 7 * D < 65536; /* the offsets 0, D, ..., 7D fit 16 bits */
    const uint16x8_t step = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)D);
#endif
    for (int d = 0; d < D; ++d) {
        trm_prof(p->prof, TRM_OP_MIX_GATHER);
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
        if (vector) {
            for (int l = 0; l < L; l += 8) {
                const mve_pred16_t pr = vctp16q((uint32_t)(L - l));
                vstrbq_p_s16(col + l, vldrbq_gather_offset_z_s16(h + (size_t)l * (size_t)D + (size_t)d, step, pr), pr);
            }
        } else
#endif
            for (int l = 0; l < L; ++l)
                col[l] = h[(size_t)l * (size_t)D + (size_t)d];
        trm_status st = trm_swiglu_s8(p, col, inner, col);
        if (st != TRM_OK)
            return st;
        trm_prof(p->prof, TRM_OP_MIX_GATHER);
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
        if (vector) {
            for (int l = 0; l < L; l += 8) {
                const mve_pred16_t pr = vctp16q((uint32_t)(L - l));
                vstrbq_scatter_offset_p_s16(out + (size_t)l * (size_t)D + (size_t)d, step, vldrbq_z_s16(col + l, pr), pr);
            }
        } else
#endif
            for (int l = 0; l < L; ++l)
                out[(size_t)l * (size_t)D + (size_t)d] = col[l];
    }
    return TRM_OK;
}
