/* Integer primitives: external definitions of the inline helpers and the non-inline ones. */
#include "arith.h"

extern inline int32_t trm_clamp(int64_t v, int32_t lo, int32_t hi);
extern inline int32_t trm_sat8(int64_t v);
extern inline int32_t trm_sat16(int64_t v);
extern inline int32_t trm_sat8_i32(int32_t v);
extern inline int64_t trm_mul_i32(int32_t a, int32_t b);
extern inline int64_t trm_round_shift(int64_t v, int n);
extern inline int32_t trm_round_shift_high(int32_t acc, int32_t M, int32_t n);
extern inline int32_t trm_requantize(int32_t acc, int32_t M, int32_t n, int32_t lo, int32_t hi);

int32_t trm_requantize_wide(int32_t acc, int32_t M, int32_t n, int32_t lo, int32_t hi)
{
    return trm_clamp(trm_round_shift((int64_t)acc * M, (int)n), lo, hi);
}

int trm_bit_length_u64(uint64_t v)
{
#if defined(__GNUC__)
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    int n = 0;
    while (v) {
        v >>= 1;
        ++n;
    }
    return n;
#endif
}

/* floor(sqrt(x)) for x >= 2: integer Newton from above. e0 = 2^ceil(b/2) > sqrt(x) (b: bit length);
 * each step floor((e + x / e) / 2) decreases strictly while e > floor(sqrt(x)) and stops there (the
 * AM-GM bound keeps it >= floor(sqrt(x))). e + x / e < 2^17: no overflow. One UDIV per step. */
static uint32_t isqrt_u32(uint32_t x)
{
    uint32_t e = 1u << ((trm_bit_length_u64(x) + 1) / 2);
    for (;;) {
        const uint32_t y = (e + x / e) >> 1;
        if (y >= e)
            return e;
        e = y;
    }
}

uint64_t trm_isqrt_u64(uint64_t v)
{
    /* The top (at most) 32 bits t = v >> s (s even) by Newton, then one result bit per remaining pair
     * of bits, digit by digit: with r = isqrt of the bits so far and rem = their excess over r^2
     * (rem <= 2r), bring down the next pair: r' = 2r + [rem' >= 4r + 1]. Exact. */
    if (v < 2u)
        return v;
    if ((v >> 32) == 0)
        return isqrt_u32((uint32_t)v);
    const int b = trm_bit_length_u64(v);  /* 33..64 */
    const int s = (b - 31) & ~1;          /* even, >= b - 32: t < 2^32; t >= 2^30 */
    const uint32_t t = (uint32_t)(v >> s);
    const uint32_t r0 = isqrt_u32(t);
    if (b <= 60) {
        /* the result stays below 2^30 and rem below 2^32 in 32-bit words; s <= 28, so the pairs
         * still to bring down all lie in the low word */
        const uint32_t lo = (uint32_t)v;
        uint32_t r = r0, rem = t - r0 * r0;
        for (int sh = s - 2; sh >= 0; sh -= 2) {
            rem = (rem << 2) | ((lo >> sh) & 3u);
            const uint32_t trial = (r << 2) | 1u;
            r <<= 1;
            if (rem >= trial) {
                rem -= trial;
                r |= 1u;
            }
        }
        return r;
    }
    uint64_t r = r0, rem = (uint64_t)(t - r0 * r0);
    for (int sh = s - 2; sh >= 0; sh -= 2) {
        rem = (rem << 2) | ((v >> sh) & 3u);
        const uint64_t trial = (r << 2) | 1u;
        r <<= 1;
        if (rem >= trial) {
            rem -= trial;
            r |= 1u;
        }
    }
    return r;
}

uint64_t trm_rmsnorm_inv(uint64_t ss, uint32_t C)
{
    /* The golden code writes max(0, (48 - bl) // 2) with floor division; C truncates instead, but
     * the two differ only for negative odd numerators, where both end up clamped to 0. */
    int k = (TRM_NORM_TARGET_BITS - trm_bit_length_u64(ss)) / 2;
    if (k < 0)
        k = 0;
    /* ss < 2^(48 - 2k + 1) when k > 0, so ss << 2k < 2^49; with k = 0 it is ss itself. */
    uint64_t r = trm_isqrt_u64(ss << (2 * k));
    /* ss > 0 gives r >= 1; C < 2^24 and k <= 23 keep C << (16 + k) below 2^63. */
    return (((uint64_t)C << (16 + k)) + r / 2) / r;
}

uint32_t trm_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; ++i)
        crc = trm_crc32_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

const char *trm_status_name(int status)
{
    static const char names[TRM_STATUS_COUNT][20] = { /* no pointers: stays in .rodata */
        "TRM_OK",       "BLOB_TRUNCATED", "BLOB_MAGIC", "BLOB_VERSION",  "BLOB_TOO_BIG",
        "BLOB_CRC",     "BLOB_TABLE",     "BLOB_MISSING", "BLOB_SHAPE", "TRM_ERR_ARG",
        "TRM_ERR_WORKSPACE",
    };
    return (status >= 0 && status < TRM_STATUS_COUNT) ? names[status] : "TRM_UNKNOWN";
}
