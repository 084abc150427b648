/* The protocol server (see server.h and docs/protocol.md). */
#include <string.h>

#include "server.h"

#define FW_VERSION "trm-fw 1"

/* Kept out of line: BENCH's locals stay out of the frame RUN's stack high-water mark includes. */
#if defined(__GNUC__)
#define TRM_NOINLINE __attribute__((noinline))
#else
#define TRM_NOINLINE
#endif

/* Offsets in the RESULT payload. */
enum { RESULT_FIXED = 36, INFO_FIXED = 40 };
/* BENCH: request rows u16 | cols u16 | bits u8 | reps u16; the BENCH_RESULT payload size. */
enum { BENCH_REQUEST = 7, BENCH_FIXED = 28 };

void trm_server_init(trm_server *s, const trm_port *port, const uint8_t *blob, size_t blob_region,
                     uint8_t *arena, size_t arena_size)
{
    memset(s, 0, sizeof *s);
    s->port = port;
    s->blob = blob;
    s->blob_region = blob_region;
    s->arena = arena;
    s->arena_size = arena_size;
    /* the header's total size says how much to check; the parser bounds it by the region */
    size_t len = blob_region >= 16 ? trm_get32(blob + 8) : 0u;
    if (len > blob_region)
        len = blob_region;
    s->blob_status = trm_blob_parse(blob, len, blob_region, &s->model);
}

/* Header and CRC around a payload already written at rsp + TRM_FRAME_HEADER. */
static size_t finish(uint8_t *rsp, uint8_t type, uint32_t seq, size_t payload)
{
    rsp[0] = TRM_PROTO_VERSION;
    rsp[1] = type;
    trm_put16(rsp + 2, seq);
    const size_t n = TRM_FRAME_HEADER + payload;
    trm_put32(rsp + n, trm_crc32(0, rsp, n));
    return n + TRM_FRAME_CRC;
}

static size_t error_frame(uint32_t seq, uint8_t code, uint8_t detail, const char *msg, uint8_t *rsp,
                          size_t cap)
{
    size_t m = strlen(msg);
    if (m > cap - TRM_FRAME_MIN - 2u)
        m = cap - TRM_FRAME_MIN - 2u;
    uint8_t *p = rsp + TRM_FRAME_HEADER;
    p[0] = code;
    p[1] = detail;
    memcpy(p + 2, msg, m);
    return finish(rsp, TRM_RSP_ERROR, seq, 2u + m);
}

size_t trm_server_error(uint8_t code, uint8_t detail, const char *msg, uint8_t *rsp, size_t cap)
{
    return error_frame(0, code, detail, msg, rsp, cap);
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = s ? strlen(s) : 0u;
    if (n > 64u)
        n = 64u;
    p[0] = (uint8_t)n;
    if (n)
        memcpy(p + 1, s, n);
    return 1u + n;
}

static size_t info(const trm_server *s, uint32_t seq, uint8_t *rsp)
{
    const trm_model *m = &s->model;
    const trm_port *port = s->port;
    uint8_t *p = rsp + TRM_FRAME_HEADER;
    memset(p, 0, INFO_FIXED);
    p[0] = (uint8_t)s->blob_status;
    p[1] = port->counter_unit;
    p[2] = m->mixer;
    p[3] = m->layers;
    trm_put32(p + 4, port->core_hz);
    trm_put32(p + 8, port->counter_hz);
    trm_put32(p + 12, s->blob_region >= 16 ? trm_get32(s->blob + 8) : 0u);  /* header: total size */
    trm_put32(p + 16, s->blob_region >= 16 ? trm_get32(s->blob + 12) : 0u); /* header: CRC-32 */
    trm_put32(p + 20, (uint32_t)s->blob_region);
    trm_put32(p + 24, (uint32_t)s->arena_size);
    trm_put32(p + 28, s->blob_status == TRM_OK ? (uint32_t)trm_workspace_bytes(m) : 0u);
    trm_put16(p + 32, m->vocab);
    trm_put16(p + 34, m->seq_len);
    trm_put16(p + 36, m->hidden);
    p[38] = m->weight_bits;
    p[39] = TRM_MAX_STEPS;
    size_t n = INFO_FIXED;
    n += put_str(p + n, port->target);
    n += put_str(p + n, port->build_id);
    n += put_str(p + n, FW_VERSION);
    p[n++] = m->default_T;
    p[n++] = m->default_n;
    p[n++] = m->default_steps;
    return finish(rsp, TRM_RSP_INFO, seq, n);
}

static size_t run(trm_server *s, uint32_t seq, const uint8_t *req, size_t n, uint8_t *rsp, size_t cap)
{
    trm_model *m = &s->model;
    if (s->blob_status != TRM_OK)
        return error_frame(seq, TRM_PERR_BLOB, (uint8_t)s->blob_status, trm_status_name(s->blob_status),
                           rsp, cap);
    if (n < 6)
        return error_frame(seq, TRM_PERR_ARGS, 0, "RUN needs T, n, steps, flags, length", rsp, cap);
    const int T = req[0], nz = req[1], steps = req[2];
    const unsigned flags = req[3];
    const size_t L = trm_get16(req + 4);
    if (steps < 1 || steps > TRM_MAX_STEPS || T < 1 || nz < 1 || (flags & ~7u))
        return error_frame(seq, TRM_PERR_ARGS, 0, "depth out of range (T, n >= 1; 1 <= steps <= 64) or unknown flag", rsp, cap);
    if (L != m->seq_len || n != 6u + L)
        return error_frame(seq, TRM_PERR_PUZZLE, 0, "puzzle length differs from the model's", rsp, cap);
    const uint8_t *tokens = req + 6;
    for (size_t l = 0; l < L; ++l)
        if (tokens[l] >= m->vocab)
            return error_frame(seq, TRM_PERR_PUZZLE, tokens[l], "token outside the vocabulary", rsp, cap);

    const size_t LD = L * m->hidden;
    const size_t need = TRM_FRAME_MIN + RESULT_FIXED + (size_t)steps * (8u + L) +
                        ((flags & TRM_RUN_CARRIES) ? 2u * LD : 0u);
    if (need > cap)
        return error_frame(seq, TRM_PERR_RESPONSE, 0, "result would not fit the transmit buffer", rsp, cap);

    /* working memory: the workspace, then (EMBED_RAM) the embedding table */
    const size_t ws_bytes = trm_workspace_bytes(m);
    const size_t embed_bytes = (size_t)m->vocab * m->hidden;
    const size_t used = ws_bytes + ((flags & TRM_RUN_EMBED_RAM) ? embed_bytes : 0u);
    if (used > s->arena_size)
        return error_frame(seq, TRM_PERR_RUN, TRM_ERR_WORKSPACE, "model needs more RAM than the arena", rsp, cap);
    const int8_t *flash_embed = m->embed;
    if (flags & TRM_RUN_EMBED_RAM) {
        memcpy(s->arena + ws_bytes, m->embed, embed_bytes);
        m->embed = (const int8_t *)(s->arena + ws_bytes);
    }

    uint8_t *p = rsp + TRM_FRAME_HEADER;
    /* the halting accumulators go straight to their place in the response (rsp + 40: 8-byte aligned,
     * and little-endian like the wire), not to the stack, whose high-water mark the run reports */
    int64_t *halt_acc = (int64_t *)(void *)(p + RESULT_FIXED);
    trm_workspace ws = {s->arena, ws_bytes};
    trm_result r = {p + RESULT_FIXED + 8u * (size_t)steps, halt_acc, NULL, 0, 0};
    const trm_port *port = s->port;
    if (port->stack_paint)
        port->stack_paint();
    if (port->counter_start)
        port->counter_start();
    const uint64_t t0 = port->counter ? port->counter() : 0u;
    trm_status st = trm_run(m, tokens, T, nz, steps, (flags & TRM_RUN_HALTING) != 0, &ws, &r);
    const uint64_t t1 = port->counter ? port->counter() : 0u;
    const uint32_t stack = port->stack_high_water ? port->stack_high_water() : 0u;
    m->embed = flash_embed;
    if (st != TRM_OK)
        return error_frame(seq, TRM_PERR_RUN, (uint8_t)st, trm_status_name(st), rsp, cap);
    s->arena_used = (uint32_t)used;

    memset(p, 0, RESULT_FIXED);
    p[0] = (uint8_t)r.steps_run;
    p[1] = (uint8_t)flags;
    trm_put16(p + 2, (uint32_t)L);
    p[4] = port->counter_unit;
    trm_put32(p + 8, port->counter_hz);
    trm_put64(p + 12, t1 - t0);
    trm_put32(p + 20, stack);
    trm_put32(p + 24, (uint32_t)used);
    trm_put64(p + 28, r.flash_bytes);
    /* halt accumulators are in place; the predictions (placed for all `steps`) are compacted */
    size_t off = RESULT_FIXED + 8u * (size_t)r.steps_run;
    memmove(p + off, r.pred, (size_t)r.steps_run * L);
    off += (size_t)r.steps_run * L;
    if (flags & TRM_RUN_CARRIES) {
        memcpy(p + off, trm_carry_snapshot.y, LD);
        memcpy(p + off + LD, trm_carry_snapshot.z, LD);
        off += 2u * LD;
    }
    return finish(rsp, TRM_RSP_RESULT, seq, off);
}

/* The BENCH pattern (docs/protocol.md, BENCH): xorshift32 from a fixed seed, drawn in this order:
 * per row M (in [2^30, 2^31)) and n (in [32, 47]: in-range and saturated outputs; n = 32, the general
 * 64-bit requantization, on one row in 16, where exported models have n <= 32 on about 1% of rows),
 * then the weights row by row (int8 in [-127, 127]; int4 nibbles in [-7, 7], a zero pad nibble on odd
 * rows), then x (int8 in [-128, 127]). harness/boards/protocol.py repeats it. */
static uint32_t bench_next(uint32_t *r)
{
    uint32_t v = *r;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    return *r = v;
}

static TRM_NOINLINE size_t bench(trm_server *s, uint32_t seq, const uint8_t *req, size_t n, uint8_t *rsp,
                                  size_t cap)
{
    if (n != BENCH_REQUEST)
        return error_frame(seq, TRM_PERR_ARGS, 0, "BENCH needs rows u16, cols u16, bits u8, reps u16", rsp, cap);
    const uint32_t rows = trm_get16(req), cols = trm_get16(req + 2), reps = trm_get16(req + 5);
    const uint8_t bits = req[4];
    if (rows < 1 || cols < 1 || reps < 1 || (bits != 4 && bits != 8))
        return error_frame(seq, TRM_PERR_ARGS, bits, "BENCH: rows, cols, reps >= 1 and bits 4 or 8", rsp, cap);
    const size_t row_bytes = bits == 4 ? (cols + 1u) / 2u : cols;
    const size_t mn_bytes = 8u * rows, w_bytes = (row_bytes * rows + 7u) & ~(size_t)7u;
    const trm_mat shape = {NULL, NULL, (uint16_t)rows, (uint16_t)cols, bits};
    const size_t lin_bytes = trm_linear_scratch_bytes(&shape);
    const size_t lin_at = trm_scratch_align(mn_bytes + w_bytes + cols + rows);
    if ((lin_bytes ? lin_at + lin_bytes : mn_bytes + w_bytes + cols + rows) > s->arena_size)
        return error_frame(seq, TRM_PERR_ARGS, 0, "BENCH matrix does not fit the arena", rsp, cap);
    /* arena: mn, weights, x, out (mn first: the arena is 8-byte aligned), the kernel's scratch */
    int32_t *mn = (int32_t *)(void *)s->arena;
    uint8_t *w = s->arena + mn_bytes;
    int8_t *x = (int8_t *)(w + w_bytes);
    int8_t *out = x + cols;
    void *lin = lin_bytes ? s->arena + lin_at : NULL;
    uint32_t r = 0x2545F491u;
    for (uint32_t o = 0; o < rows; ++o) {
        mn[2 * o] = (int32_t)(0x40000000u | (bench_next(&r) & 0x3FFFFFFFu));
        mn[2 * o + 1] = (int32_t)(32u + bench_next(&r) % 16u);
    }
    for (uint32_t o = 0; o < rows; ++o) {
        uint8_t *row = w + o * row_bytes;
        for (uint32_t k = 0; k < cols; ++k) {
            const uint32_t v = bits == 8 ? bench_next(&r) % 255u : bench_next(&r) % 15u;
            if (bits == 8)
                row[k] = (uint8_t)(v + 129u); /* v - 127 in two's complement */
            else if (k & 1u)
                row[k / 2] = (uint8_t)(row[k / 2] | ((v + 9u) & 0xFu) << 4);
            else
                row[k / 2] = (uint8_t)((v + 9u) & 0xFu); /* v - 7 as a nibble; the pad stays 0 */
        }
    }
    for (uint32_t k = 0; k < cols; ++k)
        x[k] = (int8_t)((int32_t)(bench_next(&r) >> 24) - 128);

    const trm_mat W = {w, mn, (uint16_t)rows, (uint16_t)cols, bits};
    const trm_port *port = s->port;
    trm_status st = TRM_OK;
    if (port->counter_start)
        port->counter_start();
    const uint64_t t0 = port->counter ? port->counter() : 0u;
    for (uint32_t i = 0; i < reps && st == TRM_OK; ++i)
        st = trm_linear(&W, x, out, lin);
    const uint64_t t1 = port->counter ? port->counter() : 0u;
    if (st != TRM_OK)
        return error_frame(seq, TRM_PERR_RUN, (uint8_t)st, trm_status_name(st), rsp, cap);

    uint8_t *p = rsp + TRM_FRAME_HEADER;
    memset(p, 0, BENCH_FIXED);
    trm_put16(p, rows);
    trm_put16(p + 2, cols);
    p[4] = bits;
    p[5] = TRM_LINEAR_PATH;
    trm_put16(p + 6, reps);
    p[8] = port->counter_unit;
    trm_put32(p + 12, port->counter_hz);
    trm_put64(p + 16, t1 - t0);
    trm_put32(p + 24, trm_crc32(0, (const uint8_t *)out, rows));
    return finish(rsp, TRM_RSP_BENCH, seq, BENCH_FIXED);
}

size_t trm_server_handle(trm_server *s, const uint8_t *frame, size_t len, uint8_t *rsp, size_t cap)
{
    if (len == 0)
        return 0;
    if (len < TRM_FRAME_MIN)
        return error_frame(0, TRM_PERR_TRUNCATED, (uint8_t)len, "frame shorter than header and CRC", rsp, cap);
    const uint32_t seq = trm_get16(frame + 2);
    if (trm_crc32(0, frame, len - TRM_FRAME_CRC) != trm_get32(frame + len - TRM_FRAME_CRC))
        return error_frame(seq, TRM_PERR_CRC, 0, "CRC-32 mismatch", rsp, cap);
    if (frame[0] != TRM_PROTO_VERSION)
        return error_frame(seq, TRM_PERR_VERSION, frame[0], "protocol version 1 expected", rsp, cap);
    const uint8_t *payload = frame + TRM_FRAME_HEADER;
    const size_t n = len - TRM_FRAME_MIN;
    switch (frame[1]) {
    case TRM_CMD_PING:
        if (n > cap - TRM_FRAME_MIN)
            return error_frame(seq, TRM_PERR_RESPONSE, 0, "PING payload too long", rsp, cap);
        memmove(rsp + TRM_FRAME_HEADER, payload, n);
        return finish(rsp, TRM_RSP_PONG, seq, n);
    case TRM_CMD_INFO:
        return info(s, seq, rsp);
    case TRM_CMD_RELOAD:
        trm_server_init(s, s->port, s->blob, s->blob_region, s->arena, s->arena_size);
        return info(s, seq, rsp);
    case TRM_CMD_RUN:
        return run(s, seq, payload, n, rsp, cap);
    case TRM_CMD_BENCH:
        return bench(s, seq, payload, n, rsp, cap);
    default:
        return error_frame(seq, TRM_PERR_COMMAND, frame[1], "unknown request type", rsp, cap);
    }
}

size_t trm_link_feed(trm_link *link, trm_server *s, uint8_t byte, uint8_t *rsp, size_t cap)
{
    if (byte != 0) {
        if (link->len < link->cap)
            link->buf[link->len++] = byte;
        else
            link->overflow = 1;
        return 0;
    }
    size_t out = 0;
    if (link->overflow) {
        out = trm_server_error(TRM_PERR_OVERSIZE, 0, "frame longer than the receive buffer", rsp, cap);
    } else if (link->len) {
        const long n = trm_cobs_decode(link->buf, link->len, link->buf);
        out = n < 0 ? trm_server_error(TRM_PERR_COBS, 0, "bytes before the delimiter are not COBS", rsp, cap)
                    : trm_server_handle(s, link->buf, (size_t)n, rsp, cap);
    }
    link->len = 0;
    link->overflow = 0;
    return out;
}
