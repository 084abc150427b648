/* Internal: integer dot products of an int8 vector with one weight row (int32 accumulators: the
 * contract bounds |sum| below 2^26 for K <= 4096; K <= 65535 still stays below 2^31). */
#ifndef TRM_DOT_H
#define TRM_DOT_H

#include <stdint.h>

#include "arith.h"
#include "kernels.h"

static inline int32_t trm_dot_s8(const int8_t *x, const int8_t *w, int K)
{
    int32_t acc = 0;
    for (int k = 0; k < K; ++k)
        acc += (int32_t)x[k] * (int32_t)w[k];
    return acc;
}

/* Sign-extend a 4-bit two's-complement nibble (0..15) to -8..7 without shifts of signed values. */
static inline int32_t trm_nibble_s4(uint32_t nib)
{
    return (int32_t)(nib ^ 8u) - 8;
}

static inline int32_t trm_dot_s4(const int8_t *x, const uint8_t *w, int K)
{
    int32_t acc = 0;
    const int pairs = K / 2;
    for (int j = 0; j < pairs; ++j) {
        const uint32_t b = w[j];
        acc += (int32_t)x[2 * j] * trm_nibble_s4(b & 0x0Fu) + (int32_t)x[2 * j + 1] * trm_nibble_s4(b >> 4);
    }
    if (K & 1) /* odd row: the high nibble of the last byte is padding */
        acc += (int32_t)x[K - 1] * trm_nibble_s4(w[pairs] & 0x0Fu);
    return acc;
}

/* Requantize row o's accumulator with its (M, n) pair and store it at the output's width. */
static inline void trm_store_row(trm_out out, int o, int32_t acc, const int32_t *mn)
{
    if (out.s16)
        out.s16[o] = (int16_t)trm_requantize(acc, mn[2 * o], mn[2 * o + 1], TRM_INT16_MIN, TRM_INT16_MAX);
    else
        out.s8[o] = (int8_t)trm_requantize(acc, mn[2 * o], mn[2 * o + 1], TRM_INT8_MIN, TRM_INT8_MAX);
}

#endif /* TRM_DOT_H */
