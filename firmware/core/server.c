/* The protocol server (see server.h and docs/protocol.md). */
#include <string.h>

#include "server.h"

#define FW_VERSION "trm-fw 1"

/* Offsets in the RESULT payload. */
enum { RESULT_FIXED = 36, INFO_FIXED = 40 };

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
    int64_t halt_acc[TRM_MAX_STEPS];
    trm_workspace ws = {s->arena, ws_bytes};
    trm_result r = {p + RESULT_FIXED + 8u * (size_t)steps, halt_acc, NULL, 0, 0};
    const trm_port *port = s->port;
    if (port->stack_paint)
        port->stack_paint();
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
    /* halt accumulators, then the predictions (already in place for all `steps`), compacted */
    for (int k = 0; k < r.steps_run; ++k)
        trm_put64(p + RESULT_FIXED + 8u * (size_t)k, (uint64_t)halt_acc[k]);
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
