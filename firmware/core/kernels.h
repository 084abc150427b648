/* The integer kernels of the TRM core (docs/integer-inference.md, section 3), CMSIS-NN style: one
 * kernel per file, pure functions over explicit pointers and small parameter structs, no globals,
 * no allocation. A kernel that needs working memory takes a `scratch` pointer, and a sibling
 * function `..._scratch_bytes` says how much (already rounded for alignment).
 *
 * Kernels check their pointers and dimensions cheaply (TRM_ERR_ARG); the value ranges of parameters
 * (shifts in [1, 62], multipliers in [0, 2^31), coefficients within int16, C < 2^24) are validated
 * once when the blob is parsed (blob.c), not on every call. */
#ifndef TRM_KERNELS_H
#define TRM_KERNELS_H

#include "arith.h"
#include "profile.h"

/* A weight matrix [rows, cols] with one requantization pair (M, n) per row.
 * bits 8: int8 row-major; bits 4: packed int4 rows of (cols + 1) / 2 bytes, element 2j in the low
 * nibble of byte j, 2j+1 in the high nibble (two's complement), odd rows padded with a zero nibble. */
typedef struct {
    const void *w;
    const int32_t *mn;   /* [rows][2]: M, n */
    uint16_t rows;
    uint16_t cols;
    uint8_t bits;        /* 8 or 4 */
} trm_mat;

/* Bytes of one stored row. */
static inline size_t trm_mat_row_bytes(const trm_mat *W)
{
    return W->bits == 4 ? ((size_t)W->cols + 1u) / 2u : (size_t)W->cols;
}

/* The view of rows [first, first + count) of W (both within W). */
static inline trm_mat trm_mat_rows(const trm_mat *W, int first, int count)
{
    trm_mat v = *W;
    v.w = (const uint8_t *)W->w + (size_t)first * trm_mat_row_bytes(W);
    v.mn = W->mn + 2 * (size_t)first;
    v.rows = (uint16_t)count;
    return v;
}

/* SwiGLU (gate/up projection, SiLU table, product requantization, down projection). */
typedef struct {
    trm_mat gate_up;      /* [2I, K]: rows [0, I) gate, [I, 2I) up */
    trm_mat down;         /* [N, I] */
    const int8_t *silu;   /* [256], indexed by gate + 128 */
    int32_t prod_M;
    int32_t prod_n;
    uint16_t inner;       /* I */
    uint32_t prof_op;     /* its gate/up operation (profile_ops.h); the products and down follow it */
    trm_profile *prof;    /* NULL, or the profile of the run in progress (trm_model_profile) */
} trm_swiglu;

/* Post-norm residual: out = rmsnorm(h * a + m * b) with the per-model constant C. */
typedef struct {
    int32_t a;            /* int16 range */
    int32_t b;            /* int16 range */
    uint32_t C;           /* round(sqrt(D) / s_carry * 2^8), < 2^24 */
} trm_residual;

/* Multi-head non-causal attention with rotary positions (none when cos and sin are both NULL: a model
 * with learned positions) and the integer softmax. */
typedef struct {
    trm_mat qkv;          /* [3D, D]: q rows, k rows, v rows; head j uses channels j*hd .. (j+1)*hd-1 */
    trm_mat out;          /* [D, D] */
    const int16_t *cos;   /* Q14 [L][hd/2] */
    const int16_t *sin;
    int32_t score_M;      /* scores -> exponent in units of 2^-8 of log2 */
    int32_t score_n;
    int32_t pv_M;         /* Q15-weighted sum of v -> int8 */
    int32_t pv_n;
    uint16_t heads;
    trm_profile *prof;    /* NULL, or the profile of the run in progress (trm_model_profile) */
} trm_attention;

/* ---- linear layers (linear_s8.c, linear_s4.c, linear.c) ------------------------------------- */

/* The implementation the linear kernels are compiled with, chosen here once from the architecture
 * macros (BENCH reports it): Helium (MVE) on Armv8.1-M, the DSP extension (SMLAD, SXTB16) on
 * Cortex-M4/M7, the portable C elsewhere or when TRM_PORTABLE_KERNELS is defined (for comparisons).
 * Every path computes the same bits. */
#define TRM_LINEAR_PORTABLE 0
#define TRM_LINEAR_DSP 1
#define TRM_LINEAR_MVE 2
#if defined(TRM_PORTABLE_KERNELS)
#define TRM_LINEAR_PATH TRM_LINEAR_PORTABLE
#elif defined(__ARM_FEATURE_MVE)
#define TRM_LINEAR_PATH TRM_LINEAR_MVE
#elif defined(__ARM_FEATURE_DSP)
#define TRM_LINEAR_PATH TRM_LINEAR_DSP
#else
#define TRM_LINEAR_PATH TRM_LINEAR_PORTABLE
#endif

/* Where a linear layer writes: int8 activations (s8), or int16 logits of the output head (s16).
 * Exactly one of the two is set. */
typedef struct {
    int8_t *s8;
    int16_t *s16;
} trm_out;

/* Working memory the linear kernels need for W: on the DSP path (Cortex-M4/M7), for the matrices it
 * takes (16..256 columns, 2 rows or more), the input vector arranged into int16 lanes: 2 bytes per
 * column (int4: 4 for a last half group of 4 columns), a multiple of 4; 0 on the portable and Helium
 * paths and for the matrices the DSP path leaves to the portable loop. */
size_t trm_linear_scratch_bytes(const trm_mat *W);

/* out[o] = sat(requantize(sum_k x[k] * W[o][k], M[o], n[o])), o < W->rows, saturated to int8 or
 * int16 as the output says; x has W->cols entries and must not overlap the output. scratch: 4-byte
 * aligned, trm_linear_scratch_bytes(W) bytes overlapping neither x nor the output (may be NULL when
 * that is 0); its contents are not kept.
 * trm_linear_s8: int8 weights (W->bits == 8); trm_linear_s4: packed int4 weights (W->bits == 4). */
trm_status trm_linear_s8(const trm_mat *W, const int8_t *x, trm_out out, void *scratch);
trm_status trm_linear_s4(const trm_mat *W, const int8_t *x, trm_out out, void *scratch);
/* Dispatch on W->bits, to int8 or to int16: inline (no stack frame of their own between the caller
 * and the kernel), with external definitions in linear.c. */
inline trm_status trm_linear(const trm_mat *W, const int8_t *x, int8_t *out, void *scratch)
{
    if (!W)
        return TRM_ERR_ARG;
    const trm_out to = {out, NULL};
    return W->bits == 4 ? trm_linear_s4(W, x, to, scratch) : trm_linear_s8(W, x, to, scratch);
}

inline trm_status trm_linear_s16(const trm_mat *W, const int8_t *x, int16_t *out, void *scratch)
{
    if (!W)
        return TRM_ERR_ARG;
    const trm_out to = {NULL, out};
    return W->bits == 4 ? trm_linear_s4(W, x, to, scratch) : trm_linear_s8(W, x, to, scratch);
}

/* W applied to two input vectors at once, int8 outputs: out0 = W x0, out1 = W x1, the same bits as
 * two trm_linear calls. The DSP path (Cortex-M4/M7) loads and unpacks each weight word once for both
 * (dot.h, TRM_DSP_QUADS); elsewhere it is the two calls. Outputs overlap neither input nor each
 * other; scratch: 4-byte aligned, trm_linear_pair_scratch_bytes(W) bytes (twice the one-vector
 * scratch), overlapping neither. */
size_t trm_linear_pair_scratch_bytes(const trm_mat *W);
trm_status trm_linear_pair(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                           void *scratch);

/* Offset of a linear layer's scratch after `used` bytes of a 4-byte aligned buffer. */
static inline size_t trm_scratch_align(size_t used)
{
    return (used + 3u) & ~(size_t)3u;
}

/* ---- weighted_add_s8.c ------------------------------------------------------------------------ */

/* out[i] = sat8(round_shift(sum_t terms[t][i] * coef[t], 12)), i < len; out may alias any term. */
trm_status trm_weighted_add_s8(const int8_t *const *terms, const int16_t *coef, int n_terms, int len,
                               int8_t *out);

/* ---- rmsnorm_s8.c ----------------------------------------------------------------------------- */

/* Integer RMSNorm of int32 v[0..D) (|v| < 2^23) to int8: out = v / rms(v) / s_carry (contract 3). */
trm_status trm_rmsnorm_s8(const int32_t *v, int D, uint32_t C, int8_t *out);
/* Residual + RMSNorm without an int32 temporary (the sum is formed twice): out = rmsnorm(h*a + m*b).
 * out may alias h or m. */
trm_status trm_residual_rmsnorm_s8(const int8_t *h, const int8_t *m, int D, const trm_residual *r,
                                   int8_t *out);

/* ---- swiglu_s8.c: SwiGLU over one vector ------------------------------------------------------ */

/* Scratch: gate/up [2I], and the linear layers' scratch (trm_linear_scratch_bytes): gate/up's after
 * the 2I bytes, down's after the I products (over the up values, no longer needed). */
size_t trm_swiglu_s8_scratch_bytes(const trm_swiglu *p);
/* out[N] = down(requantize(SILU[gate] * up)); x has gate_up.cols entries. out may alias x but not
 * the scratch, which must be 4-byte aligned. */
trm_status trm_swiglu_s8(const trm_swiglu *p, const int8_t *x, int8_t *scratch, int8_t *out);

/* Two vectors at once (the pair linear kernels), the same bits as two trm_swiglu_s8 calls. Scratch:
 * gate/up of x0 [2I] | of x1 [2I] | the pair kernels' scratch at a 4-byte boundary. out0 and out1 may
 * alias x0 and x1 but not the scratch or each other. */
size_t trm_swiglu_s8_pair_scratch_bytes(const trm_swiglu *p);
trm_status trm_swiglu_s8_pair(const trm_swiglu *p, const int8_t *x0, const int8_t *x1, int8_t *scratch,
                              int8_t *out0, int8_t *out1);

/* ---- swiglu_seq_s8.c: the mlp token mixer ----------------------------------------------------- */

/* Scratch: the SwiGLU's (trm_swiglu_s8_scratch_bytes), then the column [L]. */
size_t trm_swiglu_seq_s8_scratch_bytes(const trm_swiglu *p, int L);
/* For every channel d the SwiGLU of the column h[0..L)[d] (K = N = L): out[l][d]. h and out are
 * [L][D] row-major and must not overlap. scratch must be 4-byte aligned. */
trm_status trm_swiglu_seq_s8(const trm_swiglu *p, const int8_t *h, int L, int D, int8_t *scratch,
                             int8_t *out);

/* ---- rope_s8.c -------------------------------------------------------------------------------- */

/* Rotate the channel pairs (2i, 2i+1) of one head's vector v[hd] in place by the Q14 table rows
 * cos[hd/2], sin[hd/2] of its position. hd is even. */
trm_status trm_rope_s8(int8_t *v, int hd, const int16_t *cos, const int16_t *sin);

/* ---- softmax_q15.c ---------------------------------------------------------------------------- */

/* Integer softmax of int32 scores s[len] in place, to Q15 probabilities (contract 3, step 4). */
trm_status trm_softmax_q15(int32_t *s, int len, int32_t M, int32_t n);

/* ---- attention_s8.c: the attention token mixer fused with its residual ------------------------ */

/* Scratch: 4L + 2·L·D + 3D bytes (scores, keys, values, three rows: attention_s8.c), then, at a
 * 4-byte boundary, the linear layers' scratch (the larger of trm_linear_pair_scratch_bytes of qkv and
 * trm_linear_scratch_bytes of out; none on the portable and Helium paths). */
size_t trm_attention_s8_scratch_bytes(const trm_attention *p, int L, int D);
/* h[L][D] <- rmsnorm(h * a + attention(h) * b), in place. Keys and values of every position are
 * computed first (scratch), then each query row is handled and its residual written over its h row
 * (the queries come from h rows not yet overwritten). scratch must be 4-byte aligned. */
trm_status trm_attention_residual_s8(const trm_attention *p, const trm_residual *res, int8_t *h, int L,
                                     int D, void *scratch);

/* ---- argmax_s16.c ----------------------------------------------------------------------------- */

/* Index of the largest v[i], the lowest index on ties; -1 when len < 1. */
int trm_argmax_s16(const int16_t *v, int len);

#endif /* TRM_KERNELS_H */
