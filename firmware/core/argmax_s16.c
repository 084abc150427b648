/* Argmax of int16 logits, the lowest index winning a tie. */
#include "kernels.h"

int trm_argmax_s16(const int16_t *v, int len)
{
    if (!v || len < 1)
        return -1;
    int best = 0;
    for (int i = 1; i < len; ++i)
        if (v[i] > v[best])
            best = i;
    return best;
}
