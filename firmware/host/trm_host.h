/* Host-side API of libtrm_host.so (used by harness/native.py through ctypes). */
#ifndef TRM_HOST_H
#define TRM_HOST_H

#include "../core/trm.h"

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

#endif /* TRM_HOST_H */
