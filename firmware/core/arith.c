/* Integer primitives: external definitions of the inline helpers and the non-inline ones. */
#include "arith.h"

extern inline int32_t trm_clamp(int64_t v, int32_t lo, int32_t hi);
extern inline int32_t trm_sat8(int64_t v);
extern inline int32_t trm_sat16(int64_t v);
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

uint64_t trm_isqrt_u64(uint64_t v)
{
    /* Classic digit-by-digit square root: one result bit per iteration, exact. */
    if (v == 0)
        return 0;
    uint64_t r = 0;
    uint64_t bit = (uint64_t)1 << ((trm_bit_length_u64(v) - 1) & ~1); /* largest 4^j <= v */
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
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
