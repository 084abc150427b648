/* Fuzz target: the request parser. Whole decoded frames through the protocol server's C API
 * (server.h: trm_server_init, trm_server_handle), with a valid model blob loaded so that RUN goes
 * all the way into trm_run.
 *
 * The blob is sudoku6-mlp at int8 (`harness export --model sudoku6-mlp --recipe int8`, written by
 * make_corpus.py to corpus/blob/), built into the binary with .incbin (FUZZ_BLOB, set by the Makefile).
 *
 * Input layout (make_corpus.py writes seeds in it):
 *   config u8                       bits 0-1: arena size (the workspace exactly, workspace + embedding
 *                                   table exactly, 16 KiB, 96 KiB); bits 2-3: the blob in the region
 *                                   (valid, one byte flipped, erased flash 0xFF, zeroed memory);
 *                                   bit 4: region = blob size exactly (else 64 bytes more, erased)
 *   then records, up to 8:  ctl u8 | len u8 | frame[len]
 *                                   ctl bit 0: append the frame's correct CRC-32 (else it is taken as
 *                                   it is, its last 4 bytes the CRC); bits 1-2: response buffer size
 *                                   (16384, FUZZ_SMALL_CAP, 256, 1024 bytes); bit 3: flip the blob between valid
 *                                   and corrupt before this record (a probe rewriting flash: RELOAD)
 * Every buffer the server gets (blob region, arena, frame, response) is a heap block of exactly its
 * size, so AddressSanitizer sees any access past it.
 *
 * Work per input is bounded here, not in the input: a RUN whose depth the server accepts is reduced
 * to T = n = 1, steps <= 2 (at most 4 network evaluations), and BENCH to reps <= 2 (the arena bounds the matrix), so that an input takes
 * milliseconds. The server's own range checks still see every value they reject. */
#include <string.h>

#include "fuzz_common.h"

/* The smallest response buffer tried: what server.h allows (cap >= 64). INFO used to write its whole
 * response past a 64-byte buffer (corpus/request/regress-info-overflows-64-byte-response). */
#ifndef FUZZ_SMALL_CAP
#define FUZZ_SMALL_CAP 64
#endif

#ifndef FUZZ_BLOB
#error "FUZZ_BLOB: the path of the model blob to build in (the Makefile sets it)"
#endif

__asm__(".section .rodata\n"
        ".balign 16\n"
        "fuzz_blob_start:\n"
        ".incbin \"" FUZZ_BLOB "\"\n"
        "fuzz_blob_end:\n"
        ".previous\n");
extern const uint8_t fuzz_blob_start[], fuzz_blob_end[];

static const trm_port port = {"fuzz", "fuzz", 0, TRM_UNIT_NONE, 0, NULL, NULL, NULL, NULL};
static size_t ws_bytes, embed_bytes;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const size_t len = (size_t)(fuzz_blob_end - fuzz_blob_start);
    trm_model m;
    const trm_status st = trm_blob_parse(fuzz_blob_start, len, 0, &m);
    if (st != TRM_OK) {
        fprintf(stderr, "fuzz_request: the built-in blob (%zu bytes) does not parse: %s\n", len,
                trm_status_name(st));
        abort();
    }
    ws_bytes = trm_workspace_bytes(&m);
    embed_bytes = (size_t)m.vocab * m.hidden;
    return 0;
}

static void place_blob(uint8_t *region, size_t region_size, size_t blob_len, unsigned how)
{
    memset(region, 0xFF, region_size);
    if (how == 3)
        memset(region, 0, region_size);
    else if (how != 2)
        memcpy(region, fuzz_blob_start, blob_len);
    if (how == 1)
        region[blob_len / 2] ^= 0x40;   /* the CRC no longer matches */
}

static void bound_work(uint8_t *f, size_t len)
{
    if (len >= TRM_FRAME_HEADER + 6u && f[1] == TRM_CMD_RUN) {
        uint8_t *p = f + TRM_FRAME_HEADER;
        const unsigned T = p[0], n = p[1], steps = p[2];
        if (T >= 1 && n >= 1 && steps >= 1 && steps <= TRM_MAX_STEPS && T * n * steps > 2) {
            p[0] = 1;
            p[1] = 1;
            p[2] = (uint8_t)(1u + (steps - 1u) % 2u);
        }
    }
    if (len >= TRM_FRAME_HEADER + 7u && f[1] == TRM_CMD_BENCH) {
        uint8_t *p = f + TRM_FRAME_HEADER;
        const uint32_t reps = trm_get16(p + 5);
        if (reps > 2u)
            trm_put16(p + 5, 1u + (reps - 1u) % 2u);
    }
}

/* What the response says about the request it answers. */
static void check_answer(const uint8_t *f, size_t len, const uint8_t *rsp, size_t r, size_t cap)
{
    fuzz_check_response(rsp, r, cap);
    if (len == 0) {
        FUZZ_CHECK(r == 0);
        return;
    }
    FUZZ_CHECK(r > 0);
    const size_t pn = r - TRM_FRAME_MIN;
    const uint8_t *p = rsp + TRM_FRAME_HEADER;
    if (len < TRM_FRAME_MIN) {
        FUZZ_CHECK(rsp[1] == TRM_RSP_ERROR && p[0] == TRM_PERR_TRUNCATED);
        return;
    }
    FUZZ_CHECK(trm_get16(rsp + 2) == trm_get16(f + 2));   /* seq echoed */
    const int crc_ok = trm_crc32(0, f, len - TRM_FRAME_CRC) == trm_get32(f + len - TRM_FRAME_CRC);
    if (!crc_ok || f[0] != TRM_PROTO_VERSION) {
        FUZZ_CHECK(rsp[1] == TRM_RSP_ERROR && p[0] == (crc_ok ? TRM_PERR_VERSION : TRM_PERR_CRC));
        return;
    }
    const size_t n = len - TRM_FRAME_MIN;
    switch (rsp[1]) {
    case TRM_RSP_PONG:
        FUZZ_CHECK(f[1] == TRM_CMD_PING && pn == n && memcmp(p, f + TRM_FRAME_HEADER, n) == 0);
        break;
    case TRM_RSP_INFO:
        FUZZ_CHECK(f[1] == TRM_CMD_INFO || f[1] == TRM_CMD_RELOAD);
        FUZZ_CHECK(pn >= 40u + 3u + 3u);
        break;
    case TRM_RSP_RESULT: {
        FUZZ_CHECK(f[1] == TRM_CMD_RUN);
        const uint8_t *q = f + TRM_FRAME_HEADER;
        const size_t L = trm_get16(q + 4);
        const unsigned steps_run = p[0];
        FUZZ_CHECK(steps_run >= 1 && steps_run <= q[2] && p[1] == q[3] && trm_get16(p + 2) == L);
        FUZZ_CHECK(pn >= 36u + steps_run * (8u + L));
        if (!(q[3] & TRM_RUN_CARRIES))
            FUZZ_CHECK(pn == 36u + steps_run * (8u + L));
        break;
    }
    case TRM_RSP_BENCH:
        FUZZ_CHECK(f[1] == TRM_CMD_BENCH && pn == 28u);
        FUZZ_CHECK(memcmp(p, f + TRM_FRAME_HEADER, 5) == 0);   /* rows, cols, bits echoed */
        break;
    case TRM_RSP_ERROR:
        break;
    default:
        FUZZ_CHECK(!"unexpected response type");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned config = data[0];
    const size_t blob_len = (size_t)(fuzz_blob_end - fuzz_blob_start);
    const size_t arenas[4] = {ws_bytes, ws_bytes + embed_bytes, 16384, 98304};
    const size_t arena_size = arenas[config & 3u];
    const size_t region_size = blob_len + ((config & 16u) ? 0u : 64u);
    unsigned how = (config >> 2) & 3u;

    uint8_t *region = malloc(region_size);
    uint8_t *arena = malloc(arena_size);   /* malloc: 8-byte aligned at least */
    place_blob(region, region_size, blob_len, how);
    trm_server server;
    trm_server_init(&server, &port, region, region_size, arena, arena_size);
    FUZZ_CHECK((server.blob_status == TRM_OK) == (how == 0));

    size_t at = 1;
    for (int record = 0; record < 8 && at + 2u <= size; ++record) {
        const unsigned ctl = data[at];
        size_t len = data[at + 1];
        at += 2;
        if (len > size - at)
            len = size - at;
        static const size_t caps[4] = {16384, FUZZ_SMALL_CAP, 256, 1024};
        const size_t cap = caps[(ctl >> 1) & 3u];
        if (ctl & 8u) {
            how = how == 0 ? 1u : 0u;
            place_blob(region, region_size, blob_len, how);
        }
        const size_t flen = len + ((ctl & 1u) ? TRM_FRAME_CRC : 0u);
        uint8_t *f = malloc(flen ? flen : 1u);
        if (len)
            memcpy(f, data + at, len);
        at += len;
        bound_work(f, len);
        if (ctl & 1u)
            trm_put32(f + len, trm_crc32(0, f, len));
        uint8_t *rsp = malloc(cap);
        const size_t r = trm_server_handle(&server, f, flen, rsp, cap);
        check_answer(f, flen, rsp, r, cap);
        free(rsp);
        free(f);
    }
    free(arena);
    free(region);
    return 0;
}
