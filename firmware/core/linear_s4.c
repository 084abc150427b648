/* Linear layer with packed int4 weights (low nibble first): int32 accumulation, per-row
 * requantization.
 *
 * Three paths computing the same bits (TRM_LINEAR_PATH, kernels.h). The SIMD paths multiply nibbles
 * left in place, scaled by a power of two, and shift the exact sum back at the end:
 *   Helium (Cortex-M55): 4 rows per pass, 32 columns per step. VLD2 splits x into even and odd
 *     columns; of 16 weight bytes, VSHL #4 gives 16 x the low nibbles and VAND 0xF0 16 x the high ones
 *     as int8 lanes, each multiplied by its half of x with one VMLADAVA. The last K % 32 columns use a
 *     zero-padded copy of x and predicated weight loads; the 4 rows are requantized together.
 *   DSP (Cortex-M4/M7): x is arranged once per call, in the caller's scratch (trm_linear_scratch_bytes),
 *     per 8 columns, into int16 pairs (x0, x4), (x1, x5), (x2, x6), (x3, x7); of a weight word, AND
 *     0xF000F000 of the word shifted left by 12, 8, 4 and 0 puts nibbles (e0, e4), (e1, e5), (e2, e6),
 *     (e3, e7) at the top of the two int16 lanes: 4096 x their values, 1 AND + 1 SMLAD per 2 MACs. Two rows per pass; the loop over the pairs and the
 *     int8 requantization run in the assembly (dot.h, TRM_DSP_PAIRS), a last half group of 4 columns
 *     from halfwords, the last K % 4 columns byte by byte (SBFX, MLA); int16 outputs and rare shifts
 *     are finished in C.
 *   portable C: one row at a time. */
#include "dot.h"
#include "kernels.h"

#if TRM_LINEAR_PATH == TRM_LINEAR_MVE

/* Lane j: sum_k x[k] * W_j[k] for 4 packed rows r0..r3; xt: the last K % 32 columns of x, zero-padded
 * to 32. The last columns' weight bytes are loaded under a VCTP predicate (nothing read past a row);
 * lanes past them multiply xt's zeros. */
static int32x4_t dot4_s4_mve(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3,
                             const int8_t *x, const int8_t *xt, int K)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#define S4_ROW(LOAD, r, a)                                                                                \
    LOAD " q2, [%[" r "]], #16\n\t"                                                                       \
    "vshl.i8 q3, q2, #4\n\t"                                                                             \
    "vand q2, q2, q4\n\t"                                                                                \
    "vmladava.s8 %[" a "], q0, q3\n\t"                                                                   \
    "vmladava.s8 %[" a "], q1, q2\n\t"
#define S4_ROWS(LOAD) S4_ROW(LOAD, "r0", "a0") S4_ROW(LOAD, "r1", "a1") S4_ROW(LOAD, "r2", "a2") S4_ROW(LOAD, "r3", "a3")
    __asm("vmov.i8 q4, #0xf0\n\t"
          "wls lr, %[steps], 2f\n"
          "1:\n\t"
          "vld20.8 {q0, q1}, [%[x]]\n\t"
          "vld21.8 {q0, q1}, [%[x]]!\n\t" S4_ROWS("vldrb.8") "le lr, 1b\n"
          "2:\n\t"
          "cmp %[tail], #0\n\t"
          "beq 3f\n\t"
          "vld20.8 {q0, q1}, [%[xt]]\n\t"
          "vld21.8 {q0, q1}, [%[xt]]\n\t"
          "vctp.8 %[tail]\n\t" S4_ROWS("vpst\n\tvldrbt.8") "3:"
          : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3), [x] "+r"(x), [r0] "+r"(r0),
            [r1] "+r"(r1), [r2] "+r"(r2), [r3] "+r"(r3)
          : [steps] "r"(K / 32), [xt] "r"(xt), [tail] "r"(((K & 31) + 1) / 2)
          : "lr", "q0", "q1", "q2", "q3", "q4", "cc", "memory");
#undef S4_ROWS
#undef S4_ROW
    return vshrq_n_s32(trm_lanes4(a0, a1, a2, a3), 4);
}

static void linear_s4_mve(const trm_mat *W, const int8_t *x, trm_out out)
{
    const uint8_t *r = (const uint8_t *)W->w;
    const int K = W->cols, rows = W->rows;
    const size_t stride = trm_mat_row_bytes(W);
    int8_t xt[32] = {0};
    memcpy(xt, x + (K & ~31), (size_t)(K & 31));
    int o = 0;
    for (; o + 4 <= rows; o += 4, r += 4 * stride)
        trm_store_rows4(out, o, dot4_s4_mve(r, r + stride, r + 2 * stride, r + 3 * stride, x, xt, K), W->mn);
    if (o < rows) { /* the last 1..3 rows, the last one repeated */
        const size_t last = (size_t)(rows - 1 - o);
        int32_t acc[4];
        vst1q_s32(acc, dot4_s4_mve(r, r + (last < 1 ? last : 1) * stride, r + (last < 2 ? last : 2) * stride,
                                   r + last * stride, x, xt, K));
        trm_store_rows(out, o, acc, rows - o, W->mn);
    }
}

#elif TRM_LINEAR_PATH == TRM_LINEAR_DSP

/* Group c of 8 columns -> xs[4c + j] = (x[8c + j], x[8c + j + 4]), j < 4; a last half group of 4
 * columns -> (x[8c + j], 0); then the last K % 4 columns as words 4096 x x[k], a pair per byte of the
 * row (the pad nibble of an odd row pairs with 0). step 2 leaves every other word to a second vector
 * (trm_linear_pair). */
static void arrange_s4(const int8_t *x, int K, uint32_t *xs, int step)
{
    int k = 0;
    for (; k + 8 <= K; k += 8, xs += 4 * step) {
        const uint32_t v0 = trm_load32(x + k), v1 = trm_load32(x + k + 4);
        const uint32_t e0 = trm_sxtb16(v0), o0 = trm_sxtb16_ror8(v0); /* (x0, x2), (x1, x3) */
        const uint32_t e1 = trm_sxtb16(v1), o1 = trm_sxtb16_ror8(v1); /* (x4, x6), (x5, x7) */
        xs[0] = (e0 & 0xFFFFu) | e1 << 16;
        xs[step] = (o0 & 0xFFFFu) | o1 << 16;
        xs[2 * step] = e0 >> 16 | (e1 & 0xFFFF0000u);
        xs[3 * step] = o0 >> 16 | (o1 & 0xFFFF0000u);
    }
    if (k + 4 <= K) {
        for (int j = 0; j < 4; ++j)
            xs[j * step] = (uint32_t)x[k + j] & 0xFFFFu;
        k += 4;
        xs += 4 * step;
    }
    for (; k < K; k += 2, xs += 2 * step) {
        xs[0] = (uint32_t)((int32_t)x[k] * 4096);
        xs[step] = k + 1 < K ? (uint32_t)((int32_t)x[k + 1] * 4096) : 0u;
    }
}

/* 8 columns of the pair from its weight words w0, w1 and 4 words of arranged x; m = 0xF000F000. */
#define S4_MACS                                                                                           \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "and %[t], %[m], %[w0], lsl #12\n\t"                                                                  \
    "smlad %[a0], %[t], %[xa], %[a0]\n\t"                                                                 \
    "and %[t], %[m], %[w1], lsl #12\n\t"                                                                  \
    "smlad %[a1], %[t], %[xa], %[a1]\n\t"                                                                 \
    "and %[t], %[m], %[w0], lsl #8\n\t"                                                                   \
    "smlad %[a0], %[t], %[xb], %[a0]\n\t"                                                                 \
    "and %[t], %[m], %[w1], lsl #8\n\t"                                                                   \
    "smlad %[a1], %[t], %[xb], %[a1]\n\t"                                                                 \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "and %[t], %[m], %[w0], lsl #4\n\t"                                                                   \
    "smlad %[a0], %[t], %[xa], %[a0]\n\t"                                                                 \
    "and %[t], %[m], %[w1], lsl #4\n\t"                                                                   \
    "smlad %[a1], %[t], %[xa], %[a1]\n\t"                                                                 \
    "and %[t], %[m], %[w0]\n\t"                                                                           \
    "smlad %[a0], %[t], %[xb], %[a0]\n\t"                                                                 \
    "and %[t], %[m], %[w1]\n\t"                                                                           \
    "smlad %[a1], %[t], %[xb], %[a1]\n\t"
/* A group of 8 columns: a word of each row. */
#define S4_STEP "ldr %[w0], [%[p0]], #4\n\tldr %[w1], [%[p1]], #4\n\t" S4_MACS
/* A last half group of 4 columns: a halfword of each row (the upper nibbles read as 0). */
#define S4_HALF "ldrh %[w0], [%[p0]], #2\n\tldrh %[w1], [%[p1]], #2\n\t" S4_MACS
/* A byte of each row among the last K % 4 columns: its two nibbles sign-extended (SBFX), times the
 * pair of 4096-scaled x words. */
#define S4_BYTE                                                                                           \
    "ldrb %[w0], [%[p0]], #1\n\tldrb %[w1], [%[p1]], #1\n\tldrd %[xa], %[xb], [%[xp]], #8\n\t"              \
    "sbfx %[t], %[w0], #0, #4\n\tmla %[a0], %[t], %[xa], %[a0]\n\t"                                         \
    "sbfx %[t], %[w0], #4, #4\n\tmla %[a0], %[t], %[xb], %[a0]\n\t"                                         \
    "sbfx %[t], %[w1], #0, #4\n\tmla %[a1], %[t], %[xa], %[a1]\n\t"                                         \
    "sbfx %[t], %[w1], #4, #4\n\tmla %[a1], %[t], %[xb], %[a1]\n\t"
#define S4_PAIRS(TAIL)                                                                                    \
    __asm volatile(TRM_DSP_PAIRS(S4_STEP S4_STEP S4_STEP S4_STEP, S4_STEP, TAIL, 21)                      \
                   : [p0] "+r"(p0), [p1] "+r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [xp] "=&r"(xp),        \
                     [w0] "=&r"(w0), [w1] "=&r"(w1), [xa] "=&r"(xa), [xb] "=&r"(xb), [t] "=&r"(t)         \
                   : [st] "r"(st), [xe] "r"(xe), [m] "r"(0xF000F000u)                                     \
                   : "cc", "memory")

/* The assembly variants: a last half group of 4 columns or not (bit 0), times 0, 1 or 2 bytes of
 * the last K % 4 columns (S4_BYTES x the bytes). */
enum { S4_HALF_GROUP = 1, S4_BYTES = 2 };

static int variant_s4(int K)
{
    const int K4 = K & ~3, K8 = K & ~7;
    return (K4 != K8 ? S4_HALF_GROUP : 0) + S4_BYTES * ((K - K4 + 1) / 2);
}

/* Pairs of rows over every column (dot.h, TRM_DSP_PAIRS: the accumulators are 4096 x the sums, hence
 * FAST_N = 21), the first row at p0; returns where the next pair starts. */
static const uint8_t *pairs_s4(const uint8_t *p0, trm_dsp_pairs *st)
{
    const uint8_t *p1 = p0 + st->stride;
    const uint32_t *xp, *const xe = st->xe;
    int32_t a0, a1;
    uint32_t w0, w1, xa, xb, t;
    switch (st->variant) {
    case 0:
        S4_PAIRS("");
        break;
    case S4_HALF_GROUP:
        S4_PAIRS(S4_HALF);
        break;
    case S4_BYTES:
        S4_PAIRS(S4_BYTE);
        break;
    case S4_BYTES + S4_HALF_GROUP:
        S4_PAIRS(S4_HALF S4_BYTE);
        break;
    case 2 * S4_BYTES:
        S4_PAIRS(S4_BYTE S4_BYTE);
        break;
    default:
        S4_PAIRS(S4_HALF S4_BYTE S4_BYTE);
        break;
    }
    (void)p1, (void)xp, (void)a0, (void)a1, (void)w0, (void)w1, (void)xa, (void)xb, (void)t;
    return p0;
}

/* Two vectors (TRM_DSP_QUADS): 8 columns from a weight word of each row and 8 words of x (A's and B's
 * for each nibble position), 32 MACs in 30 instructions; m = 0xF000F000. */
#define Q4_NIBBLES(SHIFT)                                                                                 \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "and %[t], %[m], %[w]" SHIFT "\n\tsmlad %[a0], %[t], %[xa], %[a0]\n\tsmlad %[a2], %[t], %[xb], %[a2]\n\t"  \
    "and %[t], %[m], %[u]" SHIFT "\n\tsmlad %[a1], %[t], %[xa], %[a1]\n\tsmlad %[a3], %[t], %[xb], %[a3]\n\t"
#define Q4_MACS Q4_NIBBLES(", lsl #12") Q4_NIBBLES(", lsl #8") Q4_NIBBLES(", lsl #4") Q4_NIBBLES("")
#define Q4_STEP "ldr %[w], [%[p0]], #4\n\tldr %[u], [%[p1]], #4\n\t" Q4_MACS
#define Q4_HALF "ldrh %[w], [%[p0]], #2\n\tldrh %[u], [%[p1]], #2\n\t" Q4_MACS
/* A byte of each row among the last K % 4 columns, both nibbles, A's and B's 4096-scaled x words. */
#define Q4_BYTE_NIBBLE(LSB)                                                                               \
    "ldrd %[xa], %[xb], [%[xp]], #8\n\t"                                                                  \
    "sbfx %[t], %[w], #" LSB ", #4\n\tmla %[a0], %[t], %[xa], %[a0]\n\tmla %[a2], %[t], %[xb], %[a2]\n\t"     \
    "sbfx %[t], %[u], #" LSB ", #4\n\tmla %[a1], %[t], %[xa], %[a1]\n\tmla %[a3], %[t], %[xb], %[a3]\n\t"
#define Q4_BYTE "ldrb %[w], [%[p0]], #1\n\tldrb %[u], [%[p1]], #1\n\t" Q4_BYTE_NIBBLE("0") Q4_BYTE_NIBBLE("4")
#define Q4_QUADS(TAIL)                                                                                    \
    __asm volatile(TRM_DSP_QUADS(Q4_STEP Q4_STEP Q4_STEP Q4_STEP, Q4_STEP, TAIL, 21)                      \
                   : [p0] "+r"(p0), [p1] "+r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),        \
                     [a3] "=&r"(a3), [xp] "=&r"(xp), [w] "=&r"(w), [u] "=&r"(u), [xa] "=&r"(xa),          \
                     [xb] "=&r"(xb), [t] "=&r"(t)                                                         \
                   : [st] "r"(st), [m] "r"(0xF000F000u)                                                   \
                   : "cc", "memory")

static const uint8_t *quads_s4(const uint8_t *p0, trm_dsp_pairs *st)
{
    const uint8_t *p1 = p0 + st->stride;
    const uint32_t *xp;
    int32_t a0, a1, a2, a3;
    uint32_t w, u, xa, xb, t;
    switch (st->variant) {
    case 0:
        Q4_QUADS("");
        break;
    case S4_HALF_GROUP:
        Q4_QUADS(Q4_HALF);
        break;
    case S4_BYTES:
        Q4_QUADS(Q4_BYTE);
        break;
    case S4_BYTES + S4_HALF_GROUP:
        Q4_QUADS(Q4_HALF Q4_BYTE);
        break;
    case 2 * S4_BYTES:
        Q4_QUADS(Q4_BYTE Q4_BYTE);
        break;
    default:
        Q4_QUADS(Q4_HALF Q4_BYTE Q4_BYTE);
        break;
    }
    (void)p1, (void)xp, (void)a0, (void)a1, (void)a2, (void)a3, (void)w, (void)u, (void)xa, (void)xb, (void)t;
    return p0;
}

/* Two vectors; xs: 2 x trm_dsp_x_words(W) words of the caller's scratch. */
void trm_linear_s4_pair_dsp(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                            uint32_t *xs)
{
    const int K = W->cols, K8 = K & ~7;
    arrange_s4(x0, K, xs, 2);
    arrange_s4(x1, K, xs + 1, 2);
    trm_dsp_pairs st; /* trm_dsp_rows sets the rest */
    trm_dsp_begin(&st, (uint32_t)trm_mat_row_bytes(W), xs, xs + 2 * (K8 / 2), xs + 2 * 16 * (K / 32), variant_s4(K));
    trm_dsp_rows(W, (trm_out){out0, NULL}, out1, &st, quads_s4, 12);
}

/* xs: trm_dsp_x_words(W) words of the caller's scratch. */
static void linear_s4_dsp(const trm_mat *W, const int8_t *x, trm_out out, uint32_t *xs)
{
    const int K = W->cols, K8 = K & ~7;
    arrange_s4(x, K, xs, 1);
    trm_dsp_pairs st; /* trm_dsp_rows sets the rest */
    trm_dsp_begin(&st, (uint32_t)trm_mat_row_bytes(W), xs, xs + K8 / 2, xs + 16 * (K / 32), variant_s4(K));
    trm_dsp_rows(W, out, NULL, &st, pairs_s4, 12);
}

#endif

trm_status trm_linear_s4(const trm_mat *W, const int8_t *x, trm_out out, void *scratch)
{
    if (!W || !x || !out.s8 == !out.s16 || W->bits != 4 || !W->w || !W->mn)
        return TRM_ERR_ARG;
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    (void)scratch;
    linear_s4_mve(W, x, out);
#else
#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
    if (trm_dsp_takes(W)) {
        if (!scratch || ((uintptr_t)scratch & 3u))
            return TRM_ERR_ARG;
        linear_s4_dsp(W, x, out, scratch);
        return TRM_OK;
    }
#endif
    (void)scratch;
    const uint8_t *row = (const uint8_t *)W->w;
    const int K = W->cols;
    const size_t stride = trm_mat_row_bytes(W);
    for (int o = 0; o < W->rows; ++o, row += stride)
        trm_store_row(out, o, trm_dot_s4(x, row, K), W->mn);
#endif
    return TRM_OK;
}
