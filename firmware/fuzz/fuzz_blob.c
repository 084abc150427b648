/* Fuzz target: the blob parser, trm_blob_parse (blob.c), and what a blob it accepts can make trm_run do.
 *
 * Input layout (make_corpus.py writes seeds in it): ctl u8 | blob bytes
 *   ctl bit 0: write the correct CRC-32 into the header before parsing (else the fuzzer would hardly
 *              ever get past the CRC check); bit 1: set the header's total size to the blob's length
 *              first; bits 2-3: max_size (0 = no limit, the length, the length - 1, 32 KiB); bit 4: run
 *              a blob that parses
 * The blob is copied into a heap block of exactly its length (malloc: aligned as the parser requires).
 * A blob that parses is run (ctl bit 4; a run takes 15-80 ms under the sanitizers, a parse well under
 * one, so the fuzzer gets to choose) for one step (T = n = 1) on a puzzle of tokens i % vocab, with a workspace
 * of exactly trm_workspace_bytes: the parser's checks must be enough for the kernels to stay inside
 * the blob and the workspace (AddressSanitizer and UBSan watch). Runs whose work would exceed about
 * 10^7 multiply-accumulates are skipped, so an input takes milliseconds. */
#include <string.h>

#include "fuzz_common.h"

static uint32_t rd32(const uint8_t *p) { return trm_get32(p); }

/* The multiply-accumulates of one network evaluation, roughly: every matrix's size times how often it
 * is applied (the mlp mixer's per channel, the rest per position). */
static uint64_t work(const trm_model *m)
{
    const uint64_t L = m->carry_len, D = m->hidden;
    uint64_t w = (uint64_t)m->head.rows * m->head.cols;
    for (int l = 0; l < m->layers + m->y_layers; ++l) {
        const trm_block *b = l < m->layers ? &m->blocks[l] : &m->y_blocks[l - m->layers];
        if (m->mixer == TRM_MIXER_MLP)
            w += D * ((uint64_t)b->mix.gate_up.rows * b->mix.gate_up.cols +
                      (uint64_t)b->mix.down.rows * b->mix.down.cols);
        else
            w += L * ((uint64_t)b->att.qkv.rows * b->att.qkv.cols + (uint64_t)b->att.out.rows * b->att.out.cols +
                      2u * L * D);
        w += L * ((uint64_t)b->ffn.gate_up.rows * b->ffn.gate_up.cols +
                  (uint64_t)b->ffn.down.rows * b->ffn.down.cols);
    }
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned ctl = data[0];
    const size_t len = size - 1u;
    uint8_t *blob = malloc(len ? len : 1u);
    if (len)
        memcpy(blob, data + 1, len);
    if ((ctl & 2u) && len >= 16u)
        trm_put32(blob + 8, (uint32_t)len);
    if ((ctl & 1u) && len >= 16u) {
        const uint32_t total = rd32(blob + 8);
        if (total >= 16u && total <= len)
            trm_put32(blob + 12, trm_crc32(0, blob + 16, total - 16u));
    }
    const size_t limits[4] = {0, len, len ? len - 1u : 0u, 32768};
    const size_t max_size = limits[(ctl >> 2) & 3u];

    trm_model m;
    const trm_status st = trm_blob_parse(blob, len, max_size, &m);
    FUZZ_CHECK(st >= TRM_OK && st <= TRM_BLOB_SHAPE);
    if (st == TRM_OK) {
        FUZZ_CHECK(m.blob == blob && m.blob_size <= len && m.blob_size >= TRM_BLOB_HEADER_SIZE);
        FUZZ_CHECK(max_size == 0 || m.blob_size <= max_size);
        FUZZ_CHECK(m.vocab >= 1 && m.vocab <= TRM_MAX_VOCAB && m.seq_len >= 1 && m.hidden >= 1);
        const size_t wsb = trm_workspace_bytes(&m);
        FUZZ_CHECK(wsb > 0);
        if ((ctl & 16u) && wsb <= (1u << 22) && work(&m) <= 10000000u) {
            void *ws_mem = malloc(wsb);
            uint8_t *tok = malloc(m.seq_len), *pred = malloc(m.seq_len);
            for (size_t i = 0; i < m.seq_len; ++i)
                tok[i] = (uint8_t)(i % m.vocab);
            int64_t acc = 0;
            trm_workspace ws = {ws_mem, wsb};
            trm_result r;
            memset(&r, 0, sizeof r);
            r.pred = pred;
            r.halt_acc = &acc;
            const trm_status rs = trm_run(&m, tok, 0, 1, 1, 1, 0, &ws, &r);
            FUZZ_CHECK(rs == TRM_OK && r.steps_run == 1);
            for (size_t i = 0; i < m.seq_len; ++i)
                FUZZ_CHECK(pred[i] < m.vocab);
            free(pred);
            free(tok);
            free(ws_mem);
        }
    }
    free(blob);
    return 0;
}
