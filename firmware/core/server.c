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
/* BENCH: request rows u16 | cols u16 | bits u8 | reps u16 [| vectors u8, 1 or 2]; the BENCH_RESULT
 * payload size. */
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

/* An ERROR message with numbers, written in place in the response (no stack buffer, no libc
 * formatting): msg_begin, then msg_str / msg_u64 pieces, then msg_end. Pieces past the transmit
 * buffer are cut. The builders are kept out of line: cold paths, out of RUN's stack frame. */
typedef struct {
    uint8_t *text;   /* rsp + header + code + detail */
    size_t len;
    size_t cap;
} trm_msg;

static trm_msg msg_begin(uint8_t *rsp, size_t cap)
{
    trm_msg m = {rsp + TRM_FRAME_HEADER + 2u, 0u, cap - TRM_FRAME_MIN - 2u};
    return m;
}

static void msg_str(trm_msg *m, const char *s)
{
    for (; *s && m->len < m->cap; ++s)
        m->text[m->len++] = (uint8_t)*s;
}

static TRM_NOINLINE void msg_u64(trm_msg *m, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    while (n && m->len < m->cap)
        m->text[m->len++] = (uint8_t)digits[--n];
}

static size_t msg_end(const trm_msg *m, uint32_t seq, uint8_t code, uint8_t detail, uint8_t *rsp)
{
    rsp[TRM_FRAME_HEADER] = code;
    rsp[TRM_FRAME_HEADER + 1] = detail;
    return finish(rsp, TRM_RSP_ERROR, seq, 2u + m->len);
}

/* "<what> <value> > <bound> (<name>)", an ARGS error. */
static TRM_NOINLINE size_t over_bound(uint32_t seq, const char *what, uint64_t value, uint64_t bound, const char *name,
                         uint8_t *rsp, size_t cap)
{
    trm_msg m = msg_begin(rsp, cap);
    msg_str(&m, what);
    msg_str(&m, " ");
    msg_u64(&m, value);
    msg_str(&m, " > ");
    msg_u64(&m, bound);
    msg_str(&m, " (");
    msg_str(&m, name);
    msg_str(&m, "): ask for less work per request");
    return msg_end(&m, seq, TRM_PERR_ARGS, 0, rsp);
}

static TRM_NOINLINE size_t below_one(uint32_t seq, const char *what, uint64_t value, uint8_t *rsp, size_t cap)
{
    trm_msg m = msg_begin(rsp, cap);
    msg_str(&m, what);
    msg_str(&m, " ");
    msg_u64(&m, value);
    msg_str(&m, " < 1");
    return msg_end(&m, seq, TRM_PERR_ARGS, 0, rsp);
}

/* "<what> needs <need> bytes, <where> has <have>" with the given code and detail. */
static TRM_NOINLINE size_t too_big(uint32_t seq, uint8_t code, uint8_t detail, const char *what, uint64_t need,
                      const char *where, uint64_t have, uint8_t *rsp, size_t cap)
{
    trm_msg m = msg_begin(rsp, cap);
    msg_str(&m, what);
    msg_str(&m, " needs ");
    msg_u64(&m, need);
    msg_str(&m, " bytes, ");
    msg_str(&m, where);
    msg_str(&m, " has ");
    msg_u64(&m, have);
    return msg_end(&m, seq, code, detail, rsp);
}

static uint32_t sat32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

static size_t str_len(const char *s)
{
    const size_t n = s ? strlen(s) : 0u;
    return n > 64u ? 64u : n;
}

static size_t put_str(uint8_t *p, const char *s)
{
    const size_t n = str_len(s);
    p[0] = (uint8_t)n;
    if (n)
        memcpy(p + 1, s, n);
    return 1u + n;
}

static size_t info(const trm_server *s, uint32_t seq, uint8_t *rsp, size_t cap)
{
    const trm_model *m = &s->model;
    const trm_port *port = s->port;
    /* the fixed part, three length-prefixed strings and the default depth */
    const size_t need = TRM_FRAME_MIN + INFO_FIXED + 3u + str_len(port->target) + str_len(port->build_id) +
                        str_len(FW_VERSION) + 3u;
    if (need > cap)
        return too_big(seq, TRM_PERR_RESPONSE, 0, "INFO", need, "the transmit buffer", cap, rsp, cap);
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
    const size_t ws = s->blob_status == TRM_OK ? trm_workspace_bytes(m) : 0u;
    trm_put32(p + 28, sat32(ws));
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

enum { PROFILE_ENTRY = 12 };   /* RESULT's profile section: per operation calls u32, counts u64 */

/* The embedding tables EMBED_RAM copies: the token table (V x D) and the puzzle-embedding table
 * (puzzle_ids x P x D) of a model with a prefix. */
static uint64_t token_table_bytes(const trm_model *m) { return (uint64_t)m->vocab * m->hidden; }

static uint64_t puzzle_table_bytes(const trm_model *m)
{
    return m->prefix ? (uint64_t)m->puzzle_ids * m->prefix * m->hidden : 0u;
}

/* The RUN's flags with the blob's say: a blob exported with its embeddings in RAM (blob flag
 * EMBED_RAM, a recipe's choice) runs every puzzle as RUN flag EMBED_RAM does. */
static unsigned run_flags(const trm_model *m, unsigned flags)
{
    return flags | ((m->flags & TRM_BLOB_FLAG_EMBED_RAM) ? (unsigned)TRM_RUN_EMBED_RAM : 0u);
}

/* The arena a RUN uses: the workspace, the embedding tables (EMBED_RAM), at an 8-byte boundary the
 * profile (PROFILE). 64-bit: the parser bounds every term, their sum may pass a 32-bit size_t. */
static uint64_t embed_end(const trm_model *m, unsigned flags)
{
    return (uint64_t)trm_workspace_bytes(m) +
           ((flags & TRM_RUN_EMBED_RAM) ? token_table_bytes(m) + puzzle_table_bytes(m) : 0u);
}

static uint64_t run_arena_bytes(const trm_model *m, unsigned flags)
{
    const uint64_t end = embed_end(m, flags);
    return (flags & TRM_RUN_PROFILE) ? ((end + 7u) & ~(uint64_t)7u) + sizeof(trm_profile) : end;
}

/* RUN's checks: 0 when the request can run, else the length of the ERROR written to rsp. Out of line
 * (their 64-bit sizes and messages stay out of the frame whose stack the run measures). */
static TRM_NOINLINE size_t run_refused(const trm_server *s, uint32_t seq, const uint8_t *req, size_t n, uint8_t *rsp,
                                       size_t cap)
{
    const trm_model *m = &s->model;
    if (s->blob_status != TRM_OK)
        return error_frame(seq, TRM_PERR_BLOB, (uint8_t)s->blob_status, trm_status_name(s->blob_status),
                           rsp, cap);
    if (n < 6)
        return error_frame(seq, TRM_PERR_ARGS, 0, "RUN needs T, n, steps, flags, length", rsp, cap);
    const uint32_t T = req[0], nz = req[1], steps = req[2];
    const unsigned flags = req[3];
    const size_t L = trm_get16(req + 4);
    /* the depth, within the bounds of limits.h (harness/depth.py LIMITS) */
    if (T < 1)
        return below_one(seq, "T", T, rsp, cap);
    if (nz < 1)
        return below_one(seq, "n", nz, rsp, cap);
    if (steps < 1)
        return below_one(seq, "steps", steps, rsp, cap);
    if (T > TRM_MAX_T)
        return over_bound(seq, "T", T, TRM_MAX_T, "TRM_MAX_T", rsp, cap);
    if (nz > TRM_MAX_N)
        return over_bound(seq, "n", nz, TRM_MAX_N, "TRM_MAX_N", rsp, cap);
    if (steps > TRM_MAX_STEPS)
        return over_bound(seq, "steps", steps, TRM_MAX_STEPS, "TRM_MAX_STEPS", rsp, cap);
    if (T * (nz + 1u) * steps > TRM_MAX_EVALUATIONS)   /* <= 16 * 17 * 64: no wrap */
        return over_bound(seq, "network evaluations T*(n+1)*steps", T * (nz + 1u) * steps, TRM_MAX_EVALUATIONS,
                          "TRM_MAX_EVALUATIONS", rsp, cap);
    if (flags & ~15u)
        return error_frame(seq, TRM_PERR_ARGS, (uint8_t)flags,
                           "unknown RUN flag (known: 1 HALTING, 2 CARRIES, 4 EMBED_RAM, 8 PROFILE)", rsp, cap);
    /* the tokens, then optionally the puzzle identifier (u16, 0 when absent) */
    if (L != m->seq_len || (n != 6u + L && n != 8u + L)) {
        trm_msg e = msg_begin(rsp, cap);
        msg_str(&e, "puzzle length ");
        msg_u64(&e, L);
        msg_str(&e, " with ");
        msg_u64(&e, n - 6u);
        msg_str(&e, " token bytes (and 2 for a puzzle identifier); the blob's model has L = ");
        msg_u64(&e, m->seq_len);
        return msg_end(&e, seq, TRM_PERR_PUZZLE, 0, rsp);
    }
    const uint8_t *tokens = req + 6;
    for (size_t l = 0; l < L; ++l)
        if (tokens[l] >= m->vocab)
            return error_frame(seq, TRM_PERR_PUZZLE, tokens[l], "token outside the vocabulary", rsp, cap);
    const uint32_t id = n == 8u + L ? trm_get16(req + 6 + L) : 0u;
    if (id >= (m->prefix ? m->puzzle_ids : 1u)) {
        trm_msg e = msg_begin(rsp, cap);
        msg_str(&e, "puzzle identifier ");
        msg_u64(&e, id);
        msg_str(&e, " outside the blob's table of ");
        msg_u64(&e, m->prefix ? m->puzzle_ids : 1u);
        return msg_end(&e, seq, TRM_PERR_PUZZLE, 0, rsp);
    }

    /* sizes in 64 bits: nothing here may wrap a 32-bit size_t (the parser bounds R x D, blob.c) */
    const uint64_t need = TRM_FRAME_MIN + RESULT_FIXED + (uint64_t)steps * (8u + L) +
                          ((flags & TRM_RUN_CARRIES) ? 2u * (uint64_t)m->carry_len * m->hidden : 0u) +
                          ((flags & TRM_RUN_PROFILE) ? PROFILE_ENTRY * (uint64_t)TRM_OP_COUNT : 0u);
    if (need > cap)
        return too_big(seq, TRM_PERR_RESPONSE, 0, "RESULT", need, "the transmit buffer", cap, rsp, cap);
    /* working memory: the workspace, then (EMBED_RAM) the embedding tables, then (PROFILE) the profile */
    const unsigned mode = run_flags(m, flags);
    const uint64_t used = run_arena_bytes(m, mode);
    if (used > s->arena_size)
        return too_big(seq, TRM_PERR_RUN, TRM_ERR_WORKSPACE,
                       (mode & TRM_RUN_EMBED_RAM) ? "model with EMBED_RAM (workspace + embedding tables)" : "model workspace",
                       used, "the arena", s->arena_size, rsp, cap);
    return 0;
}

static size_t run(trm_server *s, uint32_t seq, const uint8_t *req, size_t n, uint8_t *rsp, size_t cap)
{
    const size_t refused = run_refused(s, seq, req, n, rsp, cap);
    if (refused)
        return refused;
    /* checked by run_refused: every size below fits the response, the arena and a size_t */
    trm_model *m = &s->model;
    const int T = req[0], nz = req[1], steps = req[2];
    const unsigned flags = run_flags(m, req[3]);
    const size_t L = trm_get16(req + 4), LD = (size_t)m->carry_len * m->hidden;
    const uint8_t *tokens = req + 6;
    const int puzzle_id = n == 8u + L ? (int)trm_get16(req + 6 + L) : 0;
    const size_t ws_bytes = trm_workspace_bytes(m);
    const size_t token_bytes = (size_t)token_table_bytes(m), puzzle_bytes = (size_t)puzzle_table_bytes(m);
    const size_t used = (size_t)run_arena_bytes(m, flags);
    const int8_t *flash_embed = m->embed, *flash_puzzle_emb = m->puzzle_emb;
    if (flags & TRM_RUN_EMBED_RAM) {
        memcpy(s->arena + ws_bytes, m->embed, token_bytes);
        m->embed = (const int8_t *)(s->arena + ws_bytes);
        if (puzzle_bytes) {
            memcpy(s->arena + ws_bytes + token_bytes, m->puzzle_emb, puzzle_bytes);
            m->puzzle_emb = (const int8_t *)(s->arena + ws_bytes + token_bytes);
        }
    }

    uint8_t *p = rsp + TRM_FRAME_HEADER;
    /* every output goes straight to its place in the response, not to the stack, whose high-water
     * mark the run reports: the halting accumulators at rsp + 40 (8-byte aligned, and little-endian
     * like the wire), the predictions after them and the final carries after those, all placed for
     * `steps` and compacted below when halting stopped early */
    int64_t *halt_acc = (int64_t *)(void *)(p + RESULT_FIXED);
    int8_t *final_y = (flags & TRM_RUN_CARRIES) ? (int8_t *)(p + RESULT_FIXED + (size_t)steps * (8u + L)) : NULL;
    trm_workspace ws = {s->arena, ws_bytes};
    const trm_port *port = s->port;
    /* the profile in the arena (8-byte aligned after the embedding copy), not on the measured stack */
    trm_profile *prof = (flags & TRM_RUN_PROFILE)
                            ? (trm_profile *)(void *)(s->arena + (((size_t)embed_end(m, flags) + 7u) & ~(size_t)7u))
                            : NULL;
    trm_result r = {p + RESULT_FIXED + 8u * (size_t)steps, halt_acc, NULL, final_y,
                    final_y ? final_y + LD : NULL, 0, 0};
    if (prof) {
        trm_profile_begin(prof, port->counter, 0u);
        trm_model_profile(m, prof);
    }
    if (port->stack_paint)
        port->stack_paint();
    if (port->counter_start)
        port->counter_start();
    const uint64_t t0 = port->counter ? port->counter() : 0u;
    if (prof)
        prof->last = t0;
    trm_status st = trm_run(m, tokens, puzzle_id, T, nz, steps, (flags & TRM_RUN_HALTING) != 0, &ws, &r);
    const uint64_t t1 = port->counter ? port->counter() : 0u;
    if (prof) {
        trm_profile_end(prof, t1);
        trm_model_profile(m, NULL);
    }
    const uint32_t stack = port->stack_high_water ? port->stack_high_water() : 0u;
    m->embed = flash_embed;
    m->puzzle_emb = flash_puzzle_emb;
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
    /* halt accumulators are in place; the predictions and carries (placed for all `steps`) are compacted */
    size_t off = RESULT_FIXED + 8u * (size_t)r.steps_run;
    memmove(p + off, r.pred, (size_t)r.steps_run * L);
    off += (size_t)r.steps_run * L;
    if (final_y) {
        memmove(p + off, final_y, 2u * LD);
        off += 2u * LD;
    }
    if (prof) {
        for (uint32_t i = 0; i < TRM_OP_COUNT; ++i) {
            trm_put32(p + off, prof->calls[i]);
            trm_put64(p + off + 4u, prof->counts[i]);
            off += PROFILE_ENTRY;
        }
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
    if (n != BENCH_REQUEST && n != BENCH_REQUEST + 1)
        return error_frame(seq, TRM_PERR_ARGS, 0, "BENCH needs rows u16, cols u16, bits u8, reps u16 [, vectors u8]",
                           rsp, cap);
    const uint32_t rows = trm_get16(req), cols = trm_get16(req + 2), reps = trm_get16(req + 5);
    const uint8_t bits = req[4], vectors = n > BENCH_REQUEST ? req[7] : 1u;
    if (rows < 1 || cols < 1 || reps < 1 || (bits != 4 && bits != 8) || (vectors != 1 && vectors != 2))
        return error_frame(seq, TRM_PERR_ARGS, bits, "BENCH: rows, cols, reps >= 1, bits 4 or 8, vectors 1 or 2",
                           rsp, cap);
    if (reps > TRM_MAX_BENCH_REPS)
        return over_bound(seq, "BENCH reps", reps, TRM_MAX_BENCH_REPS, "TRM_MAX_BENCH_REPS", rsp, cap);
    /* sizes in 64 bits: 65535 x 65535 int8 weights alone pass 2^32, which a 32-bit size_t would wrap
     * (to a matrix that "fits" and is then written past the arena) */
    const uint64_t row_bytes = bits == 4 ? (cols + 1u) / 2u : cols;
    const uint64_t mn_bytes = 8u * (uint64_t)rows, w_bytes = (row_bytes * rows + 7u) & ~(uint64_t)7u;
    const uint64_t buffers = mn_bytes + w_bytes + (uint64_t)vectors * (cols + rows);
    const trm_mat shape = {NULL, NULL, (uint16_t)rows, (uint16_t)cols, bits};
    const size_t lin_bytes = vectors == 2 ? trm_linear_pair_scratch_bytes(&shape) : trm_linear_scratch_bytes(&shape);
    const uint64_t lin_at = (buffers + 3u) & ~(uint64_t)3u;   /* trm_scratch_align */
    const uint64_t need = lin_bytes ? lin_at + lin_bytes : buffers;
    if (need > s->arena_size) {
        trm_msg e = msg_begin(rsp, cap);
        msg_str(&e, "BENCH ");
        msg_u64(&e, rows);
        msg_str(&e, "x");
        msg_u64(&e, cols);
        msg_str(&e, bits == 4 ? " int4" : " int8");
        msg_str(&e, " needs ");
        msg_u64(&e, need);
        msg_str(&e, " bytes, the arena has ");
        msg_u64(&e, s->arena_size);
        return msg_end(&e, seq, TRM_PERR_ARGS, 0, rsp);
    }
    const uint64_t macs = (uint64_t)rows * cols * reps * vectors;
    if (macs > TRM_MAX_BENCH_MACS)
        return over_bound(seq, "BENCH MACs rows*cols*reps*vectors", macs, TRM_MAX_BENCH_MACS, "TRM_MAX_BENCH_MACS",
                          rsp, cap);
    /* arena: mn, weights, x [vectors][cols], out [vectors][rows] (mn first: the arena is 8-byte
     * aligned), the kernel's scratch */
    int32_t *mn = (int32_t *)(void *)s->arena;
    uint8_t *w = s->arena + (size_t)mn_bytes;
    int8_t *x = (int8_t *)(w + (size_t)w_bytes);
    int8_t *out = x + (size_t)vectors * cols;
    void *lin = lin_bytes ? s->arena + (size_t)lin_at : NULL;
    uint32_t r = 0x2545F491u;
    for (uint32_t o = 0; o < rows; ++o) {
        mn[2 * o] = (int32_t)(0x40000000u | (bench_next(&r) & 0x3FFFFFFFu));
        mn[2 * o + 1] = (int32_t)(32u + bench_next(&r) % 16u);
    }
    for (uint32_t o = 0; o < rows; ++o) {
        uint8_t *row = w + (size_t)o * (size_t)row_bytes;
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
    for (uint32_t k = 0; k < vectors * cols; ++k) /* the second vector's x follows the first's */
        x[k] = (int8_t)((int32_t)(bench_next(&r) >> 24) - 128);

    const trm_mat W = {w, mn, (uint16_t)rows, (uint16_t)cols, bits};
    const trm_port *port = s->port;
    trm_status st = TRM_OK;
    if (port->counter_start)
        port->counter_start();
    const uint64_t t0 = port->counter ? port->counter() : 0u;
    for (uint32_t i = 0; i < reps && st == TRM_OK; ++i)
        st = vectors == 2 ? trm_linear_pair(&W, x, x + cols, out, out + rows, lin) : trm_linear(&W, x, out, lin);
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
    p[9] = vectors;
    trm_put32(p + 24, trm_crc32(0, (const uint8_t *)out, (size_t)vectors * rows)); /* both outputs, in order */
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
        return info(s, seq, rsp, cap);
    case TRM_CMD_RELOAD:
        trm_server_init(s, s->port, s->blob, s->blob_region, s->arena, s->arena_size);
        return info(s, seq, rsp, cap);
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
