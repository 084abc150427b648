/* Fuzz target: the frame decoder. The input is what arrives on the UART.
 *
 * 1. trm_cobs_decode (protocol.c) on the whole input, into a buffer of exactly the input's size and
 *    in place: both agree, the length is within bounds, and a decoded body re-encodes (trm_cobs_write)
 *    to bytes without a zero that decode to it again.
 * 2. trm_cobs_write then trm_cobs_decode of the input taken as a body gives it back.
 * 3. The bytes fed one by one into trm_link_feed (server.c) with a 64-byte receive buffer: every
 *    delimiter ends a frame, which is COBS-decoded and checked (length, CRC, version: the frame header
 *    check of trm_server_handle) or answered as garbage / oversize; each response is a well-formed frame.
 *    The server holds no valid blob here (erased flash): the requests themselves are fuzz_request's. */
#include <string.h>

#include "fuzz_common.h"

typedef struct {
    uint8_t *buf;
    size_t cap, len;
} sink;

static void put(void *ctx, const uint8_t *data, size_t n)
{
    sink *s = ctx;
    FUZZ_CHECK(s->len + n <= s->cap);
    memcpy(s->buf + s->len, data, n);
    s->len += n;
}

/* Upper bound of an encoding of n bytes, the delimiter included. */
static size_t encoded_max(size_t n) { return n + n / 254u + 2u; }

static void check_encode(const uint8_t *body, size_t n)
{
    const size_t cap = encoded_max(n);
    uint8_t *enc = malloc(cap);
    sink s = {enc, cap, 0};
    const size_t w = trm_cobs_write(body, n, put, &s);
    FUZZ_CHECK(w == s.len && w >= 2u && enc[w - 1] == 0);
    for (size_t i = 0; i + 1 < w; ++i)
        FUZZ_CHECK(enc[i] != 0);
    uint8_t *dec = malloc(w);
    const long d = trm_cobs_decode(enc, w - 1u, dec);
    FUZZ_CHECK(d == (long)n);
    FUZZ_CHECK(n == 0 || memcmp(dec, body, n) == 0);
    free(dec);
    free(enc);
}

static const trm_port port = {"fuzz", "fuzz", 0, TRM_UNIT_NONE, 0, NULL, NULL, NULL, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1: decode, out of place and in place */
    uint8_t *in = malloc(size ? size : 1u), *out = malloc(size ? size : 1u);
    if (size)
        memcpy(in, data, size);
    const long n = trm_cobs_decode(data, size, out);
    const long m = trm_cobs_decode(in, size, in);
    FUZZ_CHECK(n == m);
    FUZZ_CHECK(n >= -1 && n <= (long)size);
    if (n > 0)
        FUZZ_CHECK(memcmp(in, out, (size_t)n) == 0);
    if (n >= 0)
        check_encode(out, (size_t)n);
    free(in);
    free(out);

    /* 2: any bytes survive encode + decode */
    check_encode(data, size);

    /* 3: the link, byte by byte */
    enum { RX = 64, TX = 256, REGION = 64 };
    uint8_t *rx = malloc(RX), *blob = malloc(REGION), *arena = malloc(64);
    uint8_t *rsp = malloc(TX);   /* 8-byte aligned */
    memset(blob, 0xFF, REGION);   /* erased flash: no blob */
    trm_server server;
    trm_server_init(&server, &port, blob, REGION, arena, 64);
    trm_link link = {rx, RX, 0, 0};
    for (size_t i = 0; i < size; ++i) {
        const size_t r = trm_link_feed(&link, &server, data[i], rsp, TX);
        fuzz_check_response(rsp, r, TX);
        FUZZ_CHECK(link.len <= RX);
    }
    free(rsp);
    free(arena);
    free(blob);
    free(rx);
    return 0;
}
