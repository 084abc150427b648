/* Host-side API of libtrm_host.so (used by harness/native.py through ctypes). */
#ifndef TRM_HOST_H
#define TRM_HOST_H

#include "../core/server.h"

int trm_host_abi_version(void);
/* sizeof(trm_model): Python allocates the parsed model as an opaque buffer. */
size_t trm_host_model_bytes(void);
/* trm_blob_parse, returning the status as an int. */
int trm_host_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m);
/* info[0..16): V, L, D, layers, mixer, heads, weight_bits, default T, n, steps, flags,
 * halt_threshold, norm_const, mix inner (block 0, mlp), ffn inner (block 0), head bits. */
void trm_host_model_info(const trm_model *m, int64_t *info);
/* B puzzles one after the other through one workspace, puzzle b with identifier puzzle_ids[b] (NULL:
 * all 0). Outputs per puzzle b: pred[b][steps][L], halt_acc[b][steps], steps_run[b],
 * carries[b][steps][T][2][R][D] (optional, NULL; R = prefix + L rows). */
int trm_host_run_batch(const trm_model *m, const uint8_t *tokens, const int32_t *puzzle_ids, int B, int T, int n,
                       int steps, int halting, void *ws_mem, size_t ws_size, uint8_t *pred, int64_t *halt_acc,
                       int32_t *steps_run, int8_t *carries);

/* The firmware's protocol server on the host (the same core/server.c as on the boards), any number
 * at a time: open one on a blob (the caller keeps `blob` alive and 8-byte aligned until it closes the
 * server; region = bytes reserved for it), then feed it wire bytes; the responses come back as wire
 * bytes (COBS + 0x00). Each server owns its receive buffer (rx_bytes, as a target's), transmit buffer
 * (tx_bytes, >= 64) and arena (arena_capacity, <= TRM_HOST_ARENA_MAX): servers share nothing, and
 * servers on different threads run in parallel (feed one server from one thread at a time). The
 * counter is the host's monotonic clock in nanoseconds; there is no stack measurement. */
#define TRM_HOST_ABI_VERSION 3
#define TRM_HOST_ARENA_MAX ((size_t)1 << 28)
#define TRM_HOST_BUFFER_MAX ((size_t)1 << 24)

typedef struct trm_host_server trm_host_server;  /* opaque */

/* NULL when an argument is out of range (blob NULL, region < 16, arena_capacity outside [8,
 * TRM_HOST_ARENA_MAX], rx_bytes < 16, tx_bytes < 64, a buffer over TRM_HOST_BUFFER_MAX) or memory
 * runs out. *blob_status (optional): the blob's TRM_BLOB_* status, as INFO reports it. */
trm_host_server *trm_host_server_open(const uint8_t *blob, size_t region, size_t arena_capacity, size_t rx_bytes,
                                      size_t tx_bytes, int *blob_status);
/* Returns the bytes written to out, or (size_t)-1 when out[cap] is too small (or h is NULL). */
size_t trm_host_server_feed(trm_host_server *h, const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* Frees the server and its buffers (NULL: nothing). The handle is invalid afterwards. */
void trm_host_server_close(trm_host_server *h);

#endif /* TRM_HOST_H */
