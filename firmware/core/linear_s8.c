/* Linear layer with int8 weights: int32 accumulation, per-row requantization.
 *
 * Three paths computing the same bits (TRM_LINEAR_PATH, kernels.h):
 *   Helium (Cortex-M55): 4 rows per pass, VMLADAVA does 16 MACs into a scalar accumulator; one load of
 *     x serves the 4 rows; a tail-predicated loop (WLSTP/LETP) covers any K without reading past a row;
 *     the 4 rows are requantized together (dot.h, trm_store_rows4).
 *   DSP (Cortex-M4/M7): x is arranged once per call, in the caller's scratch (trm_linear_scratch_bytes),
 *     into int16 pairs (x0, x2), (x1, x3) per 4 columns, the lanes SXTB16 makes of a weight word
 *     (w0, w2) and, rotated by 8, (w1, w3): 2 SXTB16 + 2 SMLAD per 4 MACs. Two rows per pass share each load of x; the loop over the pairs and the int8
 *     requantization run in the assembly (dot.h, TRM_DSP_PAIRS), the last K % 4 columns too (a byte of
 *     each row and x as words, MLA); int16 outputs and rare shifts are finished in C. Matrices outside TRM_DSP_MIN_COLS..TRM_DSP_MAX_COLS
 *     columns or of one row take the portable C.
 *   portable C: one row at a time. */
#include "dot.h"
#include "kernels.h"

#if TRM_LINEAR_PATH == TRM_LINEAR_MVE

/* Lane j: sum_k x[k] * r_j[k] for 4 rows ("Te": the even core registers VMLADAVA accumulates in). */
static int32x4_t dot4_mve(const int8_t *r0, const int8_t *r1, const int8_t *r2, const int8_t *r3, const int8_t *x,
                          int K)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    __asm("wlstp.8 lr, %[K], 2f\n"
          "1:\n\t"
          "vldrb.8 q0, [%[x]], #16\n\t"
          "vldrb.8 q1, [%[r0]], #16\n\t"
          "vmladava.s8 %[a0], q0, q1\n\t"
          "vldrb.8 q1, [%[r1]], #16\n\t"
          "vmladava.s8 %[a1], q0, q1\n\t"
          "vldrb.8 q1, [%[r2]], #16\n\t"
          "vmladava.s8 %[a2], q0, q1\n\t"
          "vldrb.8 q1, [%[r3]], #16\n\t"
          "vmladava.s8 %[a3], q0, q1\n\t"
          "letp lr, 1b\n"
          "2:"
          : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3), [x] "+r"(x), [r0] "+r"(r0),
            [r1] "+r"(r1), [r2] "+r"(r2), [r3] "+r"(r3)
          : [K] "r"(K)
          : "lr", "q0", "q1", "memory");
    return trm_lanes4(a0, a1, a2, a3);
}

static void linear_s8_mve(const trm_mat *W, const int8_t *x, trm_out out)
{
    const int8_t *r = (const int8_t *)W->w;
    const int K = W->cols, rows = W->rows;
    int o = 0;
    for (; o + 4 <= rows; o += 4, r += 4 * K)
        trm_store_rows4(out, o, dot4_mve(r, r + K, r + 2 * K, r + 3 * K, x, K), W->mn);
    if (o < rows) { /* the last 1..3 rows, the last one repeated */
        const int last = rows - 1 - o;
        int32_t acc[4];
        vst1q_s32(acc, dot4_mve(r, r + (last < 1 ? last : 1) * K, r + (last < 2 ? last : 2) * K, r + last * K, x, K));
        trm_store_rows(out, o, acc, rows - o, W->mn);
    }
}

#elif TRM_LINEAR_PATH == TRM_LINEAR_DSP

/* Group g of 4 columns -> xs[2g] = (x0, x2), xs[2g + 1] = (x1, x3): the lanes SXTB16 makes of a
 * weight word and of the word rotated by 8; then each of the last K % 4 columns as an int32 word.
 * step 2 leaves every other word to a second vector (trm_linear_pair). */
static void arrange_s8(const int8_t *x, int K, uint32_t *xs, int step)
{
    int k = 0;
    for (; k + 4 <= K; k += 4, xs += 2 * step) {
        const uint32_t v = trm_load32(x + k);
        xs[0] = trm_sxtb16(v);
        xs[step] = trm_sxtb16_ror8(v);
    }
    for (; k < K; ++k, xs += step)
        *xs = (uint32_t)(int32_t)x[k];
}

/* 4 columns of the pair: weight word W of the first row, U of the second, 2 words of arranged x. */
#define S8_MACS(W, U)                                                                                     \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "sxtb16 %[t], %[" W "]\n\t"                                                                           \
    "smlad %[a0], %[t], %[xa], %[a0]\n\t"                                                                 \
    "sxtb16 %[t], %[" W "], ror #8\n\t"                                                                   \
    "smlad %[a0], %[t], %[xb], %[a0]\n\t"                                                                 \
    "sxtb16 %[t], %[" U "]\n\t"                                                                           \
    "smlad %[a1], %[t], %[xa], %[a1]\n\t"                                                                 \
    "sxtb16 %[t], %[" U "], ror #8\n\t"                                                                   \
    "smlad %[a1], %[t], %[xb], %[a1]\n\t"
/* 8 columns: LOAD8 fetches the words w0, w1 of the first row and u0, u1 of the second. Rows on 4-byte
 * boundaries fetch two words at once, others word by word (LDRD must be aligned). */
#define S8_STEP(LOAD8) LOAD8 S8_MACS("w0", "u0") S8_MACS("w1", "u1")
#define S8_LOAD_ALIGNED "ldrd %[w0], %[w1], [%[p0]], #8\n\tldrd %[u0], %[u1], [%[p1]], #8\n\t"
#define S8_LOAD_ANY                                                                                       \
    "ldr %[w0], [%[p0]], #4\n\tldr %[w1], [%[p0]], #4\n\tldr %[u0], [%[p1]], #4\n\tldr %[u1], [%[p1]], #4\n\t"
/* 4 columns. */
#define S8_GROUP "ldr %[w0], [%[p0]], #4\n\tldr %[u0], [%[p1]], #4\n\t" S8_MACS("w0", "u0")
/* One of the last K % 4 columns: a byte of each row, its x as a word. */
#define S8_COLUMN                                                                                         \
    "ldrsb %[w0], [%[p0]], #1\n\tldrsb %[u0], [%[p1]], #1\n\tldr %[xa], [%[xp]], #4\n\t"                    \
    "mla %[a0], %[w0], %[xa], %[a0]\n\tmla %[a1], %[u0], %[xa], %[a1]\n\t"
#define S8_PAIRS(LOAD8, TAIL)                                                                             \
    __asm volatile(TRM_DSP_PAIRS(S8_STEP(LOAD8) S8_STEP(LOAD8) S8_STEP(LOAD8) S8_STEP(LOAD8), S8_GROUP, TAIL, \
                                 33)                                                                      \
                   : [p0] "+r"(p0), [p1] "+r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [xp] "=&r"(xp),        \
                     [w0] "=&r"(w0), [w1] "=&r"(w1), [u0] "=&r"(u0), [u1] "=&r"(u1), [xa] "=&r"(xa),     \
                     [xb] "=&r"(xb), [t] "=&r"(t)                                                         \
                   : [st] "r"(st), [xe] "r"(xe)                                                           \
                   : "cc", "memory")

/* The assembly variants: rows on 4-byte boundaries (K % 4 = 0 and an aligned matrix), any rows
 * without a tail, any rows with a tail of 1, 2 or 3 columns. */
enum { S8_ALIGNED, S8_ANY, S8_TAIL1, S8_TAIL2, S8_TAIL3 };

/* Pairs of rows over every column (dot.h, TRM_DSP_PAIRS), the first row at p0; returns where the
 * next pair starts. */
static const uint8_t *pairs_s8(const uint8_t *p0, trm_dsp_pairs *st)
{
    const uint8_t *p1 = p0 + st->stride;
    const uint32_t *xp, *const xe = st->xe;
    int32_t a0, a1;
    uint32_t w0, w1, u0, u1, xa, xb, t;
    switch (st->variant) {
    case S8_ALIGNED:
        S8_PAIRS(S8_LOAD_ALIGNED, "");
        break;
    case S8_ANY:
        S8_PAIRS(S8_LOAD_ANY, "");
        break;
    case S8_TAIL1:
        S8_PAIRS(S8_LOAD_ANY, S8_COLUMN);
        break;
    case S8_TAIL2:
        S8_PAIRS(S8_LOAD_ANY, S8_COLUMN S8_COLUMN);
        break;
    default:
        S8_PAIRS(S8_LOAD_ANY, S8_COLUMN S8_COLUMN S8_COLUMN);
        break;
    }
    (void)p1, (void)xp, (void)a0, (void)a1, (void)w0, (void)w1, (void)u0, (void)u1, (void)xa, (void)xb, (void)t;
    return p0;
}

/* Two vectors (TRM_DSP_QUADS): 4 columns from a weight word of each row and 4 words of x (A's and B's
 * even lanes, then their odd lanes), 16 MACs in 16 instructions. */
#define Q8_GROUP                                                                                          \
    "ldr %[w], [%[p0]], #4\n\tldr %[u], [%[p1]], #4\n\t"                                                     \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "sxtb16 %[t], %[w]\n\tsmlad %[a0], %[t], %[xa], %[a0]\n\tsmlad %[a2], %[t], %[xb], %[a2]\n\t"           \
    "sxtb16 %[t], %[u]\n\tsmlad %[a1], %[t], %[xa], %[a1]\n\tsmlad %[a3], %[t], %[xb], %[a3]\n\t"           \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "sxtb16 %[t], %[w], ror #8\n\tsmlad %[a0], %[t], %[xa], %[a0]\n\tsmlad %[a2], %[t], %[xb], %[a2]\n\t"   \
    "sxtb16 %[t], %[u], ror #8\n\tsmlad %[a1], %[t], %[xa], %[a1]\n\tsmlad %[a3], %[t], %[xb], %[a3]\n\t"
/* One of the last K % 4 columns: a byte of each row, A's and B's x as words. */
#define Q8_COLUMN                                                                                         \
    "ldrsb %[w], [%[p0]], #1\n\tldrsb %[u], [%[p1]], #1\n\tldrd %[xa], %[xb], [%[xp]], #8\n\t"              \
    "mla %[a0], %[w], %[xa], %[a0]\n\tmla %[a2], %[w], %[xb], %[a2]\n\t"                                    \
    "mla %[a1], %[u], %[xa], %[a1]\n\tmla %[a3], %[u], %[xb], %[a3]\n\t"
#define Q8_QUADS(TAIL)                                                                                    \
    __asm volatile(TRM_DSP_QUADS(Q8_GROUP Q8_GROUP Q8_GROUP Q8_GROUP Q8_GROUP Q8_GROUP Q8_GROUP Q8_GROUP,      \
                                 Q8_GROUP, TAIL, 33)                                                      \
                   : [p0] "+r"(p0), [p1] "+r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),        \
                     [a3] "=&r"(a3), [xp] "=&r"(xp), [w] "=&r"(w), [u] "=&r"(u), [xa] "=&r"(xa),          \
                     [xb] "=&r"(xb), [t] "=&r"(t)                                                         \
                   : [st] "r"(st)                                                                         \
                   : "cc", "memory")

static const uint8_t *quads_s8(const uint8_t *p0, trm_dsp_pairs *st)
{
    const uint8_t *p1 = p0 + st->stride;
    const uint32_t *xp;
    int32_t a0, a1, a2, a3;
    uint32_t w, u, xa, xb, t;
    switch (st->variant) {
    case 0:
        Q8_QUADS("");
        break;
    case 1:
        Q8_QUADS(Q8_COLUMN);
        break;
    case 2:
        Q8_QUADS(Q8_COLUMN Q8_COLUMN);
        break;
    default:
        Q8_QUADS(Q8_COLUMN Q8_COLUMN Q8_COLUMN);
        break;
    }
    (void)p1, (void)xp, (void)a0, (void)a1, (void)a2, (void)a3, (void)w, (void)u, (void)xa, (void)xb, (void)t;
    return p0;
}

/* Two vectors; xs: 2 x trm_dsp_x_words(W) words of the caller's scratch. */
void trm_linear_s8_pair_dsp(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                            uint32_t *xs)
{
    const int K = W->cols, K4 = K & ~3;
    arrange_s8(x0, K, xs, 2);
    arrange_s8(x1, K, xs + 1, 2);
    trm_dsp_pairs st; /* trm_dsp_rows sets the rest */
    trm_dsp_begin(&st, (uint32_t)K, xs, xs + 2 * (K4 / 2), xs + 2 * 16 * (K / 32), K - K4);
    trm_dsp_rows(W, (trm_out){out0, NULL}, out1, &st, quads_s8, 0);
}

/* xs: trm_dsp_x_words(W) words of the caller's scratch. */
static void linear_s8_dsp(const trm_mat *W, const int8_t *x, trm_out out, uint32_t *xs)
{
    const int K = W->cols, K4 = K & ~3;
    arrange_s8(x, K, xs, 1);
    trm_dsp_pairs st; /* trm_dsp_rows sets the rest */
    trm_dsp_begin(&st, (uint32_t)K, xs, xs + K4 / 2, xs + 16 * (K / 32),
                  K != K4 ? S8_TAIL1 - 1 + (K - K4) : (((uintptr_t)W->w | (uintptr_t)K) & 3u) == 0 ? S8_ALIGNED : S8_ANY);
    trm_dsp_rows(W, out, NULL, &st, pairs_s8, 0);
}

#endif

trm_status trm_linear_s8(const trm_mat *W, const int8_t *x, trm_out out, void *scratch)
{
    if (!W || !x || !out.s8 == !out.s16 || W->bits != 8 || !W->w || !W->mn)
        return TRM_ERR_ARG;
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    (void)scratch;
    linear_s8_mve(W, x, out);
#else
#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
    if (trm_dsp_takes(W)) {
        if (!scratch || ((uintptr_t)scratch & 3u))
            return TRM_ERR_ARG;
        linear_s8_dsp(W, x, out, scratch);
        return TRM_OK;
    }
#endif
    (void)scratch;
    const int8_t *row = (const int8_t *)W->w;
    const int K = W->cols;
    for (int o = 0; o < W->rows; ++o, row += K)
        trm_store_row(out, o, trm_dot_s8(x, row, K), W->mn);
#endif
    return TRM_OK;
}
