/* Host-side entry points of libtrm_host.so (loaded by harness/native.py through ctypes): the core
 * plus a batch loop and a few accessors so Python never needs the C struct layouts. */
#define _POSIX_C_SOURCE 199309L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trm_host.h"

#define TRM_HOST_API __attribute__((visibility("default")))

TRM_HOST_API int trm_host_abi_version(void) { return TRM_HOST_ABI_VERSION; }

TRM_HOST_API size_t trm_host_model_bytes(void) { return sizeof(trm_model); }

TRM_HOST_API int trm_host_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m)
{
    return (int)trm_blob_parse(data, len, max_size, m);
}

TRM_HOST_API void trm_host_model_info(const trm_model *m, int64_t *info)
{
    memset(info, 0, 20 * sizeof *info);
    info[0] = m->vocab;
    info[1] = m->seq_len;
    info[2] = m->hidden;
    info[3] = m->layers;
    info[4] = m->mixer;
    info[5] = m->heads;
    info[6] = m->weight_bits;
    info[7] = m->default_T;
    info[8] = m->default_n;
    info[9] = m->default_steps;
    info[10] = m->flags;
    info[11] = m->halt_threshold;
    info[12] = m->norm_const;
    if (m->layers) {
        info[13] = m->mixer == TRM_MIXER_MLP ? m->blocks[0].mix.inner : 0;
        info[14] = m->blocks[0].ffn.inner;
    }
    info[15] = m->head.bits;
    info[16] = m->prefix;
    info[17] = m->y_layers;
    info[18] = m->carry_len;
    info[19] = m->puzzle_ids;
}

TRM_HOST_API int trm_host_run_batch(const trm_model *m, const uint8_t *tokens, const int32_t *puzzle_ids, int B,
                                    int T, int n, int steps, int halting, void *ws_mem, size_t ws_size,
                                    uint8_t *pred, int64_t *halt_acc, int32_t *steps_run, int8_t *carries)
{
    if (!m || !tokens || B < 0 || steps < 0 || T < 0 || !steps_run)
        return TRM_ERR_ARG;
    const size_t L = m->seq_len, LD = (size_t)m->carry_len * m->hidden, S = (size_t)steps, TT = (size_t)T;
    const trm_workspace ws = {ws_mem, ws_size};
    for (int b = 0; b < B; ++b) {
        const size_t bb = (size_t)b;
        trm_result r = {pred + bb * S * L, halt_acc + bb * S, carries ? carries + bb * S * TT * 2u * LD : NULL,
                        NULL, NULL, 0, 0};
        trm_status st = trm_run(m, tokens + (size_t)b * L, puzzle_ids ? puzzle_ids[b] : 0, T, n, steps, halting, &ws, &r);
        if (st != TRM_OK)
            return st;
        steps_run[b] = r.steps_run;
    }
    return TRM_OK;
}

/* --- the protocol server ------------------------------------------------------------------------- */

/* One server: its state, link and buffers are its own (separate allocations, so AddressSanitizer
 * sees an overrun of any of them); nothing is shared between servers, and servers on different
 * threads run in parallel (one server is not to be fed from two threads at once). */
struct trm_host_server {
    trm_server server;
    trm_link link;
    uint8_t *rx;
    uint8_t *tx;          /* 8-byte aligned */
    size_t tx_bytes;
    uint8_t *arena;       /* 8-byte aligned */
};

static uint64_t host_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static const trm_port host_port = {"host", "host", 0, TRM_UNIT_NANOSECONDS, 1000000000u, host_ns, NULL, NULL, NULL};

TRM_HOST_API void trm_host_server_close(trm_host_server *h)
{
    if (!h)
        return;
    free(h->rx);
    free(h->tx);
    free(h->arena);
    free(h);
}

TRM_HOST_API trm_host_server *trm_host_server_open(const uint8_t *blob, size_t region, size_t arena_capacity,
                                                   size_t rx_bytes, size_t tx_bytes, int *blob_status)
{
    if (!blob || region < 16u || arena_capacity < 8u || arena_capacity > TRM_HOST_ARENA_MAX || rx_bytes < 16u ||
        rx_bytes > TRM_HOST_BUFFER_MAX || tx_bytes < 64u || tx_bytes > TRM_HOST_BUFFER_MAX)
        return NULL;
    trm_host_server *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->rx = malloc(rx_bytes);
    h->tx = malloc(tx_bytes);
    h->arena = malloc(arena_capacity);
    /* malloc aligns for any object type: at least 8 bytes here (checked, not assumed) */
    if (!h->rx || !h->tx || !h->arena || ((uintptr_t)h->tx & 7u) || ((uintptr_t)h->arena & 7u)) {
        trm_host_server_close(h);
        return NULL;
    }
    h->tx_bytes = tx_bytes;
    h->link.buf = h->rx;
    h->link.cap = rx_bytes;
    trm_server_init(&h->server, &host_port, blob, region, h->arena, arena_capacity);
    if (blob_status)
        *blob_status = (int)h->server.blob_status;
    return h;
}

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t len;
    int full;
} sink;

static void put_sink(void *ctx, const uint8_t *data, size_t n)
{
    sink *k = ctx;
    if (k->len + n > k->cap) {
        k->full = 1;
        return;
    }
    memcpy(k->out + k->len, data, n);
    k->len += n;
}

TRM_HOST_API size_t trm_host_server_feed(trm_host_server *h, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    if (!h || (n && !in) || (cap && !out))
        return (size_t)-1;
    sink k = {out, cap, 0, 0};
    for (size_t i = 0; i < n; ++i) {
        const size_t r = trm_link_feed(&h->link, &h->server, in[i], h->tx, h->tx_bytes);
        if (r)
            trm_cobs_write(h->tx, r, put_sink, &k);
    }
    return k.full ? (size_t)-1 : k.len;
}
