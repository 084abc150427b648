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
/* B puzzles one after the other through one workspace. Outputs per puzzle b: pred[b][steps][L],
 * halt_acc[b][steps], steps_run[b], carries[b][steps][T][2][L][D] (optional, NULL). */
int trm_host_run_batch(const trm_model *m, const uint8_t *tokens, int B, int T, int n, int steps, int halting,
                       void *ws_mem, size_t ws_size, uint8_t *pred, int64_t *halt_acc, int32_t *steps_run,
                       int8_t *carries);

/* The firmware's protocol server on the host (the same core/server.c as on the boards): open it on a
 * blob (the caller keeps `blob` alive and 8-byte aligned; region = bytes reserved for it), then feed
 * it wire bytes; the responses come back as wire bytes (COBS + 0x00). The counter is the host's
 * monotonic clock in nanoseconds; there is no stack measurement. One server per process. */
int trm_host_server_open(const uint8_t *blob, size_t region, size_t arena_bytes);
/* Returns the bytes written to out, or (size_t)-1 when out[cap] is too small. */
size_t trm_host_server_feed(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

#endif /* TRM_HOST_H */
