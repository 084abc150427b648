/* Host-side entry points of libtrm_host.so (loaded by harness/native.py through ctypes): the core
 * plus a batch loop and a few accessors so Python never needs the C struct layouts. */
#include <string.h>

#include "trm_host.h"

#define TRM_HOST_API __attribute__((visibility("default")))

TRM_HOST_API int trm_host_abi_version(void) { return 1; }

TRM_HOST_API size_t trm_host_model_bytes(void) { return sizeof(trm_model); }

TRM_HOST_API int trm_host_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m)
{
    return (int)trm_blob_parse(data, len, max_size, m);
}

TRM_HOST_API void trm_host_model_info(const trm_model *m, int64_t *info)
{
    memset(info, 0, 16 * sizeof *info);
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
}

TRM_HOST_API int trm_host_run_batch(const trm_model *m, const uint8_t *tokens, int B, int T, int n, int steps,
                                    int halting, void *ws_mem, size_t ws_size, uint8_t *pred,
                                    int64_t *halt_acc, int32_t *steps_run, int8_t *carries)
{
    if (!m || !tokens || B < 0 || steps < 0 || T < 0 || !steps_run)
        return TRM_ERR_ARG;
    const size_t L = m->seq_len, LD = L * m->hidden, S = (size_t)steps, TT = (size_t)T;
    const trm_workspace ws = {ws_mem, ws_size};
    for (int b = 0; b < B; ++b) {
        const size_t bb = (size_t)b;
        trm_result r = {pred + bb * S * L, halt_acc + bb * S, carries ? carries + bb * S * TT * 2u * LD : NULL, 0};
        trm_status st = trm_run(m, tokens + (size_t)b * L, T, n, steps, halting, &ws, &r);
        if (st != TRM_OK)
            return st;
        steps_run[b] = r.steps_run;
    }
    return TRM_OK;
}
