/* The TRM interpreter (see trm.h for the recursion and the workspace layout). */
#include <string.h>

#include "trm.h"

volatile trm_carry_snapshot_t trm_carry_snapshot;

#if defined(__GNUC__)
#define TRM_HOOK_ATTR __attribute__((weak, noinline, used))
#define TRM_WEAK_ATTR __attribute__((weak))
#else
#define TRM_HOOK_ATTR
#define TRM_WEAK_ATTR
#endif

TRM_HOOK_ATTR void trm_cycle_hook(const int8_t *y, const int8_t *z, int step,
                                                           int cycle)
{
    trm_carry_snapshot.y = y;
    trm_carry_snapshot.z = z;
    trm_carry_snapshot.step = step;
    trm_carry_snapshot.cycle = cycle;
    trm_carry_snapshot.count = trm_carry_snapshot.count + 1u;
}

/* Weak no-ops: a port with a counter (ports/counter.c) stops and restarts it around the hook. */
TRM_WEAK_ATTR void trm_counter_pause(void) {}
TRM_WEAK_ATTR void trm_counter_resume(void) {}

void trm_model_profile(trm_model *m, trm_profile *p)
{
    if (!m)
        return;
    m->profile = p;
    for (int l = 0; l < m->layers && l < TRM_MAX_LAYERS; ++l) {
        m->blocks[l].mix.prof = p;
        m->blocks[l].att.prof = p;
        m->blocks[l].ffn.prof = p;
    }
    for (int l = 0; l < m->y_layers && l < TRM_MAX_LAYERS; ++l) {
        m->y_blocks[l].mix.prof = p;
        m->y_blocks[l].att.prof = p;
        m->y_blocks[l].ffn.prof = p;
    }
}

/* The network that updates y: the y network's blocks (HRM), else the z network's. */
static const trm_block *y_net(const trm_model *m, int *layers)
{
    *layers = m->y_layers ? m->y_layers : m->layers;
    return m->y_layers ? m->y_blocks : m->blocks;
}

static size_t align8(size_t v) { return (v + 7u) & ~(size_t)7u; }

/* The readout's int16 logits [V], then (DSP path) the head's linear scratch. */
static size_t logits_bytes(const trm_model *m) { return 2u * (size_t)m->vocab; }

static size_t readout_bytes(const trm_model *m)
{
    const size_t lin = trm_linear_scratch_bytes(&m->head);
    return lin ? trm_scratch_align(logits_bytes(m)) + lin : logits_bytes(m);
}

/* The phases' buffers, at the start of the (8-byte aligned) scratch: mlp mixer, the SwiGLU's scratch
 * and column (swiglu_seq_s8.c), then its output m [R][D] (R = P + L, the carry's rows), then under the
 * norm over the rows two columns [R] (h's and m's of one channel); attention, its scratch (attention_s8.c);
 * channel SwiGLU, two tokens at a time, its pair scratch (swiglu_s8.c), then the output rows m [2][D]
 * (the pair scratch covers the one-token scratch of an odd last token); readout, the logits, then
 * the head's linear scratch. The kernels' scratch starts each phase: it must be 4-byte aligned. */
static size_t network_scratch_bytes(const trm_model *m, const trm_block *blocks, int layers, size_t need)
{
    const size_t R = m->carry_len, D = m->hidden;
    for (int l = 0; l < layers; ++l) {
        const trm_block *b = &blocks[l];
        size_t mix = m->mixer == TRM_MIXER_MLP
                       ? trm_swiglu_seq_s8_scratch_bytes(&b->mix, (int)R) + R * D + (m->seq_norm_const ? 2u * R : 0u)
                       : trm_attention_s8_scratch_bytes(&b->att, (int)R, (int)D);
        size_t ffn = trm_swiglu_s8_pair_scratch_bytes(&b->ffn) + 2u * D;
        if (mix > need)
            need = mix;
        if (ffn > need)
            need = ffn;
    }
    return need;
}

static size_t scratch_bytes(const trm_model *m)
{
    return network_scratch_bytes(m, m->y_blocks, m->y_layers,
                                 network_scratch_bytes(m, m->blocks, m->layers, readout_bytes(m)));
}

size_t trm_workspace_bytes(const trm_model *m)
{
    if (!m || !m->embed)
        return 0u;
    return align8(2u * (size_t)m->carry_len * m->hidden) + scratch_bytes(m);
}

/* 64-bit: rows x (row bytes + 8) reaches 2^32 for 65535 x 65535 int8, past a 32-bit size_t. */
static uint64_t mat_bytes(const trm_mat *W)
{
    return (uint64_t)W->rows * ((uint64_t)trm_mat_row_bytes(W) + 2u * sizeof(int32_t));
}

/* Blob bytes one evaluation of a network reads: every kernel call reads its whole matrix. */
/* Whether a table is read from the blob (flash) or from a copy in RAM (EMBED_RAM). */
static int in_blob(const trm_model *m, const void *table)
{
    return (const uint8_t *)table >= m->blob && (const uint8_t *)table < m->blob + m->blob_size;
}

static uint64_t net_flash_bytes(const trm_model *m, const trm_block *blocks, int layers)
{
    const uint64_t L = m->carry_len, D = m->hidden;
    uint64_t bytes = 0;
    for (int l = 0; l < layers; ++l) {
        const trm_block *b = &blocks[l];
        if (m->mixer == TRM_MIXER_MLP)
            bytes += D * (mat_bytes(&b->mix.gate_up) + mat_bytes(&b->mix.down));
        else
            bytes += L * (mat_bytes(&b->att.qkv) + mat_bytes(&b->att.out));
        bytes += L * (mat_bytes(&b->ffn.gate_up) + mat_bytes(&b->ffn.down));
    }
    return bytes;
}

/* The mlp mixer's residual norm over each channel's R rows: the column of h and of the mixer's output
 * m gathered into col[0..R) and col[R..2R), normalised in place, scattered back into h. */
static trm_status residual_rows(int8_t *h, const int8_t *mix, int R, int D, const trm_residual *res, int8_t *col)
{
    trm_status st = TRM_OK;
    for (int d = 0; d < D && st == TRM_OK; ++d) {
        for (int r = 0; r < R; ++r) {
            col[r] = h[(size_t)r * (size_t)D + (size_t)d];
            col[R + r] = mix[(size_t)r * (size_t)D + (size_t)d];
        }
        st = trm_residual_rmsnorm_s8(col, col + R, R, res, col);
        for (int r = 0; r < R; ++r)
            h[(size_t)r * (size_t)D + (size_t)d] = col[r];
    }
    return st;
}

/* h[R][D] <- net(h), in place, with the network's `layers` blocks. */
static trm_status net(const trm_model *m, const trm_block *blocks, int layers, int8_t *h, uint8_t *scratch)
{
    trm_profile *prof = m->profile;
    const int L = m->carry_len, D = m->hidden;
    trm_status st = TRM_OK;
    for (int l = 0; l < layers && st == TRM_OK; ++l) {
        const trm_block *b = &blocks[l];
        if (m->mixer == TRM_MIXER_MLP) {
            int8_t *mix = (int8_t *)scratch + trm_swiglu_seq_s8_scratch_bytes(&b->mix, L);
            st = trm_swiglu_seq_s8(&b->mix, h, L, D, (int8_t *)scratch, mix);
            trm_prof(prof, TRM_OP_MIX_NORM);
            if (st == TRM_OK && m->seq_norm_const)
                st = residual_rows(h, mix, L, D, &b->mix_res, mix + (size_t)L * (size_t)D);
            for (int r = 0; r < L && st == TRM_OK && !m->seq_norm_const; ++r)
                st = trm_residual_rmsnorm_s8(h + (size_t)r * (size_t)D, mix + (size_t)r * (size_t)D, D, &b->mix_res,
                                             h + (size_t)r * (size_t)D);
        } else {
            st = trm_attention_residual_s8(&b->att, &b->mix_res, h, L, D, scratch);
        }
        /* tokens in pairs (the pair kernels share each weight load between them), an odd last alone */
        int8_t *row = (int8_t *)scratch + trm_swiglu_s8_pair_scratch_bytes(&b->ffn);
        for (int r = 0; r < L && st == TRM_OK; r += 2) {
            int8_t *hr = h + (size_t)r * (size_t)D;
            const int two = r + 1 < L;
            st = two ? trm_swiglu_s8_pair(&b->ffn, hr, hr + D, (int8_t *)scratch, row, row + D)
                     : trm_swiglu_s8(&b->ffn, hr, (int8_t *)scratch, row);
            trm_prof_vectors(prof, TRM_OP_FFN_NORM, two ? 2u : 1u);
            if (st == TRM_OK)
                st = trm_residual_rmsnorm_s8(hr, row, D, &b->ffn_res, hr);
            if (st == TRM_OK && two)
                st = trm_residual_rmsnorm_s8(hr + D, row + D, D, &b->ffn_res, hr + D);
        }
    }
    return st;
}

trm_status trm_run(const trm_model *m, const uint8_t *tokens, int puzzle_id, int T, int n, int steps, int halting,
                   const trm_workspace *ws, trm_result *out)
{
    if (!m || !m->embed || !tokens || !ws || !out || !out->pred || !out->halt_acc || T < 0 || n < 0 ||
        steps < 0 || puzzle_id < 0 || puzzle_id >= (m->prefix ? (int)m->puzzle_ids : 1))
        return TRM_ERR_ARG;
    /* L tokens; the carry has R = P + L rows: P prefix rows, then one per token */
    const int L = m->seq_len, P = m->prefix, R = m->carry_len, D = m->hidden;
    const size_t LD = (size_t)R * (size_t)D;
    for (int l = 0; l < L; ++l)
        if (tokens[l] >= m->vocab)
            return TRM_ERR_ARG;
    const int8_t *prefix_rows = P ? m->puzzle_emb + (size_t)puzzle_id * (size_t)P * (size_t)D : NULL;
    int y_layers;
    const trm_block *y_blocks = y_net(m, &y_layers);
    if (!ws->mem || ((uintptr_t)ws->mem & 7u) || ws->size < trm_workspace_bytes(m))
        return TRM_ERR_WORKSPACE;

    int8_t *y = (int8_t *)ws->mem;
    int8_t *z = y + LD;
    uint8_t *scratch = (uint8_t *)ws->mem + align8(2u * LD);
    trm_profile *prof = m->profile;
    trm_prof(prof, TRM_OP_COPY);
    for (int l = 0; l < R; ++l) {
        memcpy(y + (size_t)l * (size_t)D, m->y_init, (size_t)D);
        memcpy(z + (size_t)l * (size_t)D, m->z_init, (size_t)D);
    }
    out->steps_run = 0;
    out->flash_bytes = 0;
    const int embed_in_blob = in_blob(m, m->embed), prefix_in_blob = P && in_blob(m, m->puzzle_emb);
    /* per z-update: the z network plus the L embedding rows, the P prefix rows (none of a table copied
     * to RAM) and the R learned position rows read from flash; per y-update: the y network */
    const uint64_t per_cycle = (uint64_t)n * net_flash_bytes(m, m->blocks, m->layers) +
                               net_flash_bytes(m, y_blocks, y_layers) +
                               (uint64_t)n * ((embed_in_blob ? (uint64_t)L * (uint64_t)D : 0u) +
                                              (prefix_in_blob ? (uint64_t)P * (uint64_t)D : 0u) +
                                              (m->pos_emb ? (uint64_t)R * (uint64_t)D : 0u));
    /* the head reads the L sequence rows; the halting weights one row (first) or all R */
    const int halt_rows = (m->flags & TRM_BLOB_FLAG_HALT_FIRST) ? 1 : R;
    const uint64_t per_readout = (uint64_t)L * mat_bytes(&m->head) + (uint64_t)halt_rows * (uint64_t)D;
    void *head_scratch = trm_linear_scratch_bytes(&m->head) ? scratch + trm_scratch_align(logits_bytes(m)) : NULL;
    trm_status st = TRM_OK;
    for (int s = 0; s < steps; ++s) {
        for (int c = 0; c < T; ++c) {
            for (int r = 0; r < n; ++r) {
                trm_prof(prof, TRM_OP_Z_INPUT);
                for (int l = 0; l < R && st == TRM_OK; ++l) {
                    const int8_t *x = l < P ? prefix_rows + (size_t)l * (size_t)D
                                            : m->embed + (size_t)tokens[l - P] * (size_t)D;
                    /* z, x, y, or z, x, the position row, y (m->z_in, m->z_terms) */
                    const int8_t *yl = y + (size_t)l * (size_t)D;
                    const int8_t *terms[4] = {z + (size_t)l * (size_t)D, x,
                                              m->pos_emb ? m->pos_emb + (size_t)l * (size_t)D : yl, yl};
                    st = trm_weighted_add_s8(terms, m->z_in, m->z_terms, D, z + (size_t)l * (size_t)D);
                }
                if (st == TRM_OK)
                    st = net(m, m->blocks, m->layers, z, scratch);
                if (st != TRM_OK)
                    return st;
            }
            const int8_t *terms[2] = {y, z};
            trm_prof(prof, TRM_OP_Y_INPUT);
            st = trm_weighted_add_s8(terms, m->y_in, 2, (int)LD, y);
            if (st == TRM_OK)
                st = net(m, y_blocks, y_layers, y, scratch);
            if (st != TRM_OK)
                return st;
            trm_prof(prof, TRM_OP_COPY);
            if (out->carries) {
                int8_t *dst = out->carries + ((size_t)s * (size_t)T + (size_t)c) * 2u * LD;
                memcpy(dst, y, LD);
                memcpy(dst + LD, z, LD);
            }
            /* the counter stands still across the hook, so a probe stopping there (for any time)
             * leaves the count of the run as it is without a probe */
            trm_counter_pause();
            trm_cycle_hook(y, z, s, c);
            trm_counter_resume();
        }
        /* readout: argmax of the int16 logits per sequence row; halt_acc = sum_d w[d] y[l][d] over the
         * rows l the halting head reads (row 0 with TRM_BLOB_FLAG_HALT_FIRST, else all R) */
        int16_t *logits = (int16_t *)(void *)scratch;
        int64_t halt_acc = 0;
        for (int l = 0; l < R; ++l) {
            const int8_t *yl = y + (size_t)l * (size_t)D;
            if (l >= P) {
                trm_prof(prof, TRM_OP_HEAD);
                st = trm_linear_s16(&m->head, yl, logits, head_scratch);
                if (st != TRM_OK)
                    return st;
            }
            trm_prof(prof, TRM_OP_ARGMAX_HALT);
            if (l >= P)
                out->pred[(size_t)s * (size_t)L + (size_t)(l - P)] = (uint8_t)trm_argmax_s16(logits, m->vocab);
            if (l < halt_rows) {
                int32_t row = 0; /* |w * y| <= 2^14, D < 2^16 terms */
                for (int d = 0; d < D; ++d)
                    row += (int32_t)m->halt[d] * yl[d];
                halt_acc += row;
            }
        }
        out->halt_acc[s] = halt_acc;
        out->steps_run = s + 1;
        out->flash_bytes += (uint64_t)T * per_cycle + per_readout;
        if (halting && halt_acc > m->halt_threshold)
            break;
    }
    trm_prof(prof, TRM_OP_COPY);
    if (out->final_y)
        memcpy(out->final_y, y, LD);
    if (out->final_z)
        memcpy(out->final_z, z, LD);
    return TRM_OK;
}
