/* Integer primitives of the inference contract (docs/integer-inference.md, section 2 and the
 * helpers of section 3). Bit-exact with harness/golden/arith.py.
 *
 * The small ones are C99/C11 `inline` functions defined here; arith.c holds their one external
 * definition (so they are also callable through the host library, e.g. from ctypes tests). */
#ifndef TRM_ARITH_H
#define TRM_ARITH_H

#include "trm_common.h"

#define TRM_INT8_MIN (-128)
#define TRM_INT8_MAX 127
#define TRM_INT16_MIN (-32768)
#define TRM_INT16_MAX 32767
#define TRM_ADD_SHIFT 12          /* fixed-point bits of weighted-add coefficients */
#define TRM_NORM_SHIFT 24         /* fixed-point bits of the RMSNorm reciprocal */
#define TRM_NORM_CONST_SHIFT 8    /* fixed-point bits of the RMSNorm constant C */
#define TRM_NORM_TARGET_BITS 48   /* RMSNorm: sums are scaled up to about this many bits */
#define TRM_PROB_BITS 15          /* softmax probabilities are Q15 */
#define TRM_EXP_FRAC_BITS 8       /* softmax exponent: units of 2^-8 of log2 */
#define TRM_EXP_RANGE (16 << TRM_EXP_FRAC_BITS) /* exp2 of anything below -16 is 0 */
#define TRM_ROPE_SHIFT 14         /* rotary tables are Q14 */
#define TRM_MN_MAX_SHIFT 62       /* requantization shifts lie in [1, 62] */
#define TRM_NORM_CONST_LIMIT (1u << 24) /* C must stay below this for the 64-bit reciprocal (contract: < 2^20) */

/* exp2 fractions in Q15: trm_exp2_q15[f] = round(2^15 * 2^(-f/256)), f = 0..255 (tables.c). */
extern const uint16_t trm_exp2_q15[256];
/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) byte table (tables.c). */
extern const uint32_t trm_crc32_table[256];

/* Clamp to [lo, hi]. */
inline int32_t trm_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

inline int32_t trm_sat8(int64_t v) { return trm_clamp(v, TRM_INT8_MIN, TRM_INT8_MAX); }
inline int32_t trm_sat16(int64_t v) { return trm_clamp(v, TRM_INT16_MIN, TRM_INT16_MAX); }

/* trm_sat8 of a 32-bit value: one SSAT on cores that have it (the general clamp elsewhere). */
inline int32_t trm_sat8_i32(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && defined(__GNUC__)
    int32_t r;
    __asm("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return trm_clamp(v, TRM_INT8_MIN, TRM_INT8_MAX);
#endif
}

/* The exact int64 product of two int32 values. The barrier keeps gcc from widening an operand it
 * knows to be small (a range check on an int64 it came from) into a 64 x 64-bit multiply: one SMULL
 * on 32-bit Arm cores. */
inline int64_t trm_mul_i32(int32_t a, int32_t b)
{
#if defined(__GNUC__)
    __asm("" : "+r"(a), "+r"(b));
#endif
    return (int64_t)a * b;
}

/* round_shift(v, n) = (v + 2^(n-1)) >> n, round half up (towards +inf); 1 <= n <= 62 and
 * |v| <= 2^62 so the addition cannot overflow. The shift is arithmetic (trm_common.h). */
inline int64_t trm_round_shift(int64_t v, int n)
{
    return (v + ((int64_t)1 << (n - 1))) >> n;
}

/* requantize for any n in [1, 62], with the 64-bit rounding shift (arith.c). */
int32_t trm_requantize_wide(int32_t acc, int32_t M, int32_t n, int32_t lo, int32_t hi);

/* round_shift(acc * M, n) for n > 32 (the usual case), from the product's high word h = floor(acc * M
 * / 2^32) alone, without a 64-bit addition and variable 64-bit shifts on 32-bit cores:
 * round_shift(v, n) = (floor(v / 2^(n-1)) + 1) >> 1, and floor(v / 2^(n-1)) = h >> (n - 33) (floors of
 * floors; |h| < 2^30, so h + 1 cannot overflow). */
inline int32_t trm_round_shift_high(int32_t acc, int32_t M, int32_t n)
{
    return (((int32_t)(((int64_t)acc * M) >> 32) >> (n - 33)) + 1) >> 1;
}

/* requantize(acc, M, n) = clamp(round_shift(acc * M, n), lo, hi) with the product in int64.
 * |acc| < 2^31 and 0 <= M < 2^31, so |acc * M| < 2^62. Shifts up to 32 take the out-of-line general
 * form, which keeps this one short where it is inlined. */
inline int32_t trm_requantize(int32_t acc, int32_t M, int32_t n, int32_t lo, int32_t hi)
{
    if (n > 32)
        return trm_clamp(trm_round_shift_high(acc, M, n), lo, hi);
    return trm_requantize_wide(acc, M, n, lo, hi);
}

/* Number of bits of v (position of the highest set bit plus one; 0 for 0). */
int trm_bit_length_u64(uint64_t v);

/* floor(sqrt(v)), exact for every 64-bit v (digit-by-digit, no division, no float). */
uint64_t trm_isqrt_u64(uint64_t v);

/* The RMSNorm reciprocal for a sum of squares ss > 0 and the per-model constant C < 2^24:
 * k = max(0, (48 - bit_length(ss)) / 2); r = isqrt(ss << 2k); inv = ((C << (16 + k)) + r / 2) / r.
 * The result is below 2^40. */
uint64_t trm_rmsnorm_inv(uint64_t ss, uint32_t C);

/* CRC-32 as zlib.crc32: pass 0 to start, or a previous result to continue. */
uint32_t trm_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif /* TRM_ARITH_H */
