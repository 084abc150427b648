/* Shared by the fuzz targets (firmware/fuzz/README.md): the invariants every response frame of the
 * protocol server must satisfy. A violated invariant aborts, which libFuzzer reports as a finding,
 * like a sanitizer error. */
#ifndef TRM_FUZZ_COMMON_H
#define TRM_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "../core/server.h"

#define FUZZ_CHECK(cond)                                                                            \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);      \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/* A response frame rsp[0..n) written into a buffer of cap bytes: none (n == 0), or header, payload
 * and a correct CRC, version 1, a response type. */
static inline void fuzz_check_response(const uint8_t *rsp, size_t n, size_t cap)
{
    if (n == 0)
        return;
    FUZZ_CHECK(n <= cap);
    FUZZ_CHECK(n >= TRM_FRAME_MIN);
    FUZZ_CHECK(rsp[0] == TRM_PROTO_VERSION);
    FUZZ_CHECK(rsp[1] >= 0x80);
    FUZZ_CHECK(trm_crc32(0, rsp, n - TRM_FRAME_CRC) == trm_get32(rsp + n - TRM_FRAME_CRC));
    if (rsp[1] == TRM_RSP_ERROR)
        FUZZ_CHECK(n >= TRM_FRAME_MIN + 2u && rsp[4] >= TRM_PERR_COBS && rsp[4] <= TRM_PERR_RESPONSE);
}

#endif /* TRM_FUZZ_COMMON_H */
