/* Rotary positions on int8 vectors with Q14 cos/sin tables. */
#include "kernels.h"

trm_status trm_rope_s8(int8_t *v, int hd, const int16_t *cos, const int16_t *sin)
{
    if (!v || !cos || !sin || hd < 0 || (hd & 1))
        return TRM_ERR_ARG;
    for (int i = 0; i < hd / 2; ++i) {
        const int32_t e = v[2 * i], o = v[2 * i + 1], c = cos[i], s = sin[i];
        /* |e * c| + |o * s| <= 2^23: int32 */
        v[2 * i] = (int8_t)trm_sat8(trm_round_shift(e * c - o * s, TRM_ROPE_SHIFT));
        v[2 * i + 1] = (int8_t)trm_sat8(trm_round_shift(e * s + o * c, TRM_ROPE_SHIFT));
    }
    return TRM_OK;
}
