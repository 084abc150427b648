/* The attention token mixer (qkv projection, rotary positions, integer softmax, probability-weighted
 * values, output projection) fused with the residual RMSNorm that follows it.
 *
 * Scratch layout (4-byte aligned): scores int32 [L] | k int8 [L][D] | v int8 [L][D] | q [D] | a [D] |
 * m [D] | the linear layers' scratch (DSP path only, at a 4-byte boundary; the pair kernels' for keys
 * and values, two positions at a time). Keys and values of all positions are computed first; then, for each query position i, its
 * query comes from h[i] (still the block input), the mixer output row m is formed, and
 * rmsnorm(h[i] * a + m * b) overwrites h[i]. So no [L][D] copy of the input or of the mixer output
 * is needed: a post-norm residual is row-wise. */
#include "dot.h"
#include "kernels.h"

/* Bytes of the buffers before the linear layers' scratch. */
static size_t buffers(int L, int D)
{
    return 4u * (size_t)L + 2u * (size_t)L * (size_t)D + 3u * (size_t)D;
}

static size_t linear_scratch(const trm_attention *p)
{
    /* keys and values in pairs: the pair kernels' scratch of the qkv rows (the k and v views) */
    const size_t a = trm_linear_pair_scratch_bytes(&p->qkv), b = trm_linear_scratch_bytes(&p->out);
    return a > b ? a : b;
}

size_t trm_attention_s8_scratch_bytes(const trm_attention *p, int L, int D)
{
    if (!p || L < 1 || D < 1)
        return 0u;
    const size_t lin = linear_scratch(p);
    return lin ? trm_scratch_align(buffers(L, D)) + lin : buffers(L, D);
}

/* score[j] = q . k_j over the head's hd channels, k_j = keys + j * D. DSP: q arranged once into the
 * SXTB16 lane pairs (linear_s8.c's layout), 4 channels per 2 SXTB16 + 2 SMLAD; Helium: one predicated
 * load and VMLADAV per key for hd <= 16; else, and for other head sizes, the portable loop. */
static void scores(const int8_t *q, const int8_t *keys, int L, int D, int hd, int32_t *score)
{
#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
    enum { MAX_HD = 64 };
    if (hd % 4 == 0 && hd <= MAX_HD) {
        uint32_t qa[MAX_HD / 2];
        const int groups = hd / 4;
        for (int g = 0; g < groups; ++g) {
            const uint32_t v = trm_load32(q + 4 * g);
            qa[2 * g] = trm_sxtb16(v);
            qa[2 * g + 1] = trm_sxtb16_ror8(v);
        }
        for (int j = 0; j < L; ++j, keys += D) {
            int32_t acc = 0;
            for (int g = 0; g < groups; ++g) {
                const uint32_t w = trm_load32(keys + 4 * g);
                acc = __smlad((int32_t)trm_sxtb16(w), (int32_t)qa[2 * g], acc);
                acc = __smlad((int32_t)trm_sxtb16_ror8(w), (int32_t)qa[2 * g + 1], acc);
            }
            score[j] = acc;
        }
        return;
    }
#elif TRM_LINEAR_PATH == TRM_LINEAR_MVE
    if (hd <= 16) {
        const mve_pred16_t lanes = vctp8q((uint32_t)hd);
        const int8x16_t qv = vldrbq_z_s8(q, lanes);
        for (int j = 0; j < L; ++j, keys += D)
            score[j] = vmladavq_s8(qv, vldrbq_z_s8(keys, lanes));
        return;
    }
#endif
    for (int j = 0; j < L; ++j, keys += D)
        score[j] = trm_dot_s8(q, keys, hd);
}

trm_status trm_attention_residual_s8(const trm_attention *p, const trm_residual *res, int8_t *h, int L,
                                     int D, void *scratch)
{
    if (!p || !res || !h || !scratch || L < 1 || D < 1 || ((uintptr_t)scratch & 3u) || p->heads < 1 ||
        D % p->heads || (D / p->heads) % 2 || !p->cos != !p->sin || p->qkv.rows != 3 * D ||
        p->qkv.cols != D || p->out.rows != D || p->out.cols != D)
        return TRM_ERR_ARG;
    const int hd = D / p->heads, half = hd / 2;
    const size_t LD = (size_t)L * (size_t)D;
    int32_t *score = (int32_t *)scratch;
    int8_t *key = (int8_t *)(score + L);
    int8_t *val = key + LD;
    int8_t *q = val + LD;
    int8_t *a = q + D;
    int8_t *m = a + D;
    void *lin = linear_scratch(p) ? (uint8_t *)scratch + trm_scratch_align(buffers(L, D)) : NULL;
    const trm_mat Wq = trm_mat_rows(&p->qkv, 0, D);
    const trm_mat Wk = trm_mat_rows(&p->qkv, D, D);
    const trm_mat Wv = trm_mat_rows(&p->qkv, 2 * D, D);
    const int32_t pv_M = p->pv_M, pv_n = p->pv_n;
    trm_status st = TRM_OK;

    /* keys and values of positions in pairs (the pair kernels share each weight load), an odd last alone */
    for (int j = 0; j < L && st == TRM_OK; j += 2) {
        const int two = j + 1 < L;
        const int8_t *hj = h + (size_t)j * (size_t)D;
        int8_t *kj = key + (size_t)j * (size_t)D, *vj = val + (size_t)j * (size_t)D;
        trm_prof_vectors(p->prof, TRM_OP_QKV, two ? 2u : 1u);
        if (two) {
            st = trm_linear_pair(&Wk, hj, hj + D, kj, kj + D, lin);
            if (st == TRM_OK)
                st = trm_linear_pair(&Wv, hj, hj + D, vj, vj + D, lin);
        } else {
            st = trm_linear(&Wk, hj, kj, lin);
            if (st == TRM_OK)
                st = trm_linear(&Wv, hj, vj, lin);
        }
        if (!p->cos)
            continue;
        trm_prof_vectors(p->prof, TRM_OP_ROTARY, two ? 2u : 1u);
        for (int i = j; i < j + 1 + two && st == TRM_OK; ++i)
            for (int g = 0; g < p->heads && st == TRM_OK; ++g)
                st = trm_rope_s8(key + (size_t)i * (size_t)D + g * hd, hd, p->cos + (size_t)i * (size_t)half,
                                 p->sin + (size_t)i * (size_t)half);
    }
    for (int i = 0; i < L && st == TRM_OK; ++i) {
        int8_t *hi = h + (size_t)i * (size_t)D;
        trm_prof(p->prof, TRM_OP_QKV);
        st = trm_linear(&Wq, hi, q, lin);
        for (int g = 0; g < p->heads && st == TRM_OK; ++g) {
            const int off = g * hd;
            if (p->cos) {
                trm_prof(p->prof, TRM_OP_ROTARY);
                st = trm_rope_s8(q + off, hd, p->cos + (size_t)i * (size_t)half, p->sin + (size_t)i * (size_t)half);
            }
            trm_prof(p->prof, TRM_OP_SOFTMAX);
            if (st == TRM_OK)
                scores(q + off, key + off, L, D, hd, score);
            if (st == TRM_OK)
                st = trm_softmax_q15(score, L, p->score_M, p->score_n);
            trm_prof(p->prof, TRM_OP_VALUES);
            /* sum_j P[j] <= 2^15 + L/2 and |v| <= 128: the sums stay below 2^31. Two channels per
             * pass (hd is even) along the value rows, in registers */
            for (int c = 0; c < hd && st == TRM_OK; c += 2) {
                int32_t acc0 = 0, acc1 = 0;
                const int8_t *vc = val + off + c;
                for (int j = 0; j < L; ++j, vc += D) {
                    const int32_t pj = score[j];
                    acc0 += pj * (int32_t)vc[0];
                    acc1 += pj * (int32_t)vc[1];
                }
                a[off + c] = (int8_t)trm_requantize(acc0, pv_M, pv_n, TRM_INT8_MIN, TRM_INT8_MAX);
                a[off + c + 1] = (int8_t)trm_requantize(acc1, pv_M, pv_n, TRM_INT8_MIN, TRM_INT8_MAX);
            }
        }
        trm_prof(p->prof, TRM_OP_ATT_OUT);
        if (st == TRM_OK)
            st = trm_linear(&p->out, a, m, lin);
        trm_prof(p->prof, TRM_OP_MIX_NORM);
        if (st == TRM_OK)
            st = trm_residual_rmsnorm_s8(hi, m, D, res, hi);
    }
    return st;
}
