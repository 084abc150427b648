/* Internal: integer dot products of an int8 vector with one weight row (int32 accumulators: the
 * contract bounds |sum| below 2^26 for K <= 4096; K <= 65535 still stays below 2^31), the stores of
 * requantized rows, and the helpers of the linear kernels' Helium and DSP paths. */
#ifndef TRM_DOT_H
#define TRM_DOT_H

#include <stdint.h>

#include "arith.h"
#include "kernels.h"

static inline int32_t trm_dot_s8(const int8_t *x, const int8_t *w, int K)
{
    int32_t acc = 0;
    for (int k = 0; k < K; ++k)
        acc += (int32_t)x[k] * (int32_t)w[k];
    return acc;
}

/* Sign-extend a 4-bit two's-complement nibble (0..15) to -8..7 without shifts of signed values. */
static inline int32_t trm_nibble_s4(uint32_t nib)
{
    return (int32_t)(nib ^ 8u) - 8;
}

static inline int32_t trm_dot_s4(const int8_t *x, const uint8_t *w, int K)
{
    int32_t acc = 0;
    const int pairs = K / 2;
    for (int j = 0; j < pairs; ++j) {
        const uint32_t b = w[j];
        acc += (int32_t)x[2 * j] * trm_nibble_s4(b & 0x0Fu) + (int32_t)x[2 * j + 1] * trm_nibble_s4(b >> 4);
    }
    if (K & 1) /* odd row: the high nibble of the last byte is padding */
        acc += (int32_t)x[K - 1] * trm_nibble_s4(w[pairs] & 0x0Fu);
    return acc;
}

/* Requantize row o's accumulator with its (M, n) pair and store it at the output's width. */
static inline void trm_store_row(trm_out out, int o, int32_t acc, const int32_t *mn)
{
    if (out.s16)
        out.s16[o] = (int16_t)trm_requantize(acc, mn[2 * o], mn[2 * o + 1], TRM_INT16_MIN, TRM_INT16_MAX);
    else
        out.s8[o] = (int8_t)trm_requantize(acc, mn[2 * o], mn[2 * o + 1], TRM_INT8_MIN, TRM_INT8_MAX);
}

/* Rows o .. o + n - 1 from their accumulators acc[0..n). */
static inline void trm_store_rows(trm_out out, int o, const int32_t *acc, int n, const int32_t *mn)
{
    for (int j = 0; j < n; ++j)
        trm_store_row(out, o + j, acc[j], mn);
}

#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
#include <arm_mve.h>
#include <string.h>

/* (a0, a1, a2, a3) as one vector, straight from the core registers. */
static inline int32x4_t trm_lanes4(int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
    int32x4_t v;
    __asm("vmov %q[v][2], %q[v][0], %[a0], %[a2]\n\t"
          "vmov %q[v][3], %q[v][1], %[a1], %[a3]"
          : [v] "=w"(v)
          : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3));
    return v;
}

/* Rows o .. o + 3 from their accumulators at once: per lane trm_round_shift_high, VMULH giving the
 * product's high word and VRSHL by 32 - n the rounding shift (h + 2^(n-33)) >> (n - 32); rows with
 * n <= 32 (rare) are then stored again by trm_store_row. */
static inline void trm_store_rows4(trm_out out, int o, int32x4_t acc, const int32_t *mn)
{
    const int32x4x2_t p = vld2q_s32(mn + 2 * o); /* M, n of the 4 rows */
    const int32x4_t v = vrshlq_s32(vmulhq_s32(acc, p.val[0]), vsubq_s32(vdupq_n_s32(32), p.val[1]));
    if (out.s16)
        vstrhq_s32(out.s16 + o, vmaxq_s32(vminq_s32(v, vdupq_n_s32(TRM_INT16_MAX)), vdupq_n_s32(TRM_INT16_MIN)));
    else
        vstrbq_s32(out.s8 + o, vmaxq_s32(vminq_s32(v, vdupq_n_s32(TRM_INT8_MAX)), vdupq_n_s32(TRM_INT8_MIN)));
    if (vcmpleq_n_s32(p.val[1], 32) != 0) {
        int32_t a[4];
        vst1q_s32(a, acc);
        for (int j = 0; j < 4; ++j)
            if (mn[2 * (o + j) + 1] <= 32)
                trm_store_row(out, o + j, a[j], mn);
    }
}
#endif

#if TRM_LINEAR_PATH == TRM_LINEAR_DSP
/* ---- helpers of the DSP paths (Cortex-M4/M7: SMLAD does two 16x16 MACs, SXTB16 sign-extends bytes
 * 0 and 2 of a word to two int16 lanes) ------------------------------------------------------------- */
#include <arm_acle.h>

/* The widest rows the DSP paths take; wider matrices use the portable path. The input vector is
 * arranged once per call into int16 lane pairs in the caller's scratch (2 bytes per column,
 * trm_linear_scratch_bytes), and the int4 path accumulates 4096 x the sum, exact while
 * |sum| <= 8 * 128 * K stays below 2^19, i.e. for K < 512. */
#define TRM_DSP_MAX_COLS 256
/* Below this many columns (or with a single row) the portable loop is about as fast. */
#define TRM_DSP_MIN_COLS 16
/* At most this many rows per call of the assembly loop are left to C: their accumulators wait in a
 * stack array (trm_dsp_pairs). */
#define TRM_DSP_LEFT 8

/* Whether the DSP path takes W (else the portable loop does). */
static inline int trm_dsp_takes(const trm_mat *W)
{
    return W->cols >= TRM_DSP_MIN_COLS && W->cols <= TRM_DSP_MAX_COLS && W->rows >= 2;
}

/* Words of arranged x: int8, a pair of words per whole group of 4 columns, then one per column of the
 * last K % 4 (linear_s8.c); int4, 4 words per group of 8 columns, 4 for a last half group, then 2 per
 * byte of the last K % 4 columns (linear_s4.c). */
static inline size_t trm_dsp_x_words(const trm_mat *W)
{
    const size_t K = W->cols;
    return W->bits == 4 ? K / 8u * 4u + ((K & 4u) ? 4u : 0u) + 2u * (((K & 3u) + 1u) / 2u)
                        : K / 4u * 2u + (K & 3u);
}

/* The DSP paths' assembly loop over pairs of rows (linear_s8.c, linear_s4.c), TRM_DSP_PAIRS: for each
 * pair (p0, p1 = p0 + stride) the accumulators start at 0, 32 columns per iteration (STEPS) until xp
 * reaches xe, then a group of columns at a time (GROUP) until st->xg, then TAIL (the last columns, which
 * no group covers, from the words of x arranged after the groups); then each row is requantized
 * and stored at st->y (int8): when its shift n >= FAST_N, as trm_round_shift_high and SSAT (the
 * accumulator may be 4096 x the sum: FAST_N = 21 then, the shifts 12 less); otherwise (rare, or every
 * row when st->mn points at zeros) its accumulator goes to st->acc[st->left] and its row (counted from
 * the call's first) to st->rows[st->left], C finishing those rows (the loop's store is a placeholder).
 * p0 moves to p1's end + skip; the loop ends when st->y reaches st->y_end, which a pair that leaves
 * st->left >= TRM_DSP_LEFT - 1 sets to its own end (so the next pair's two rows always find room).
 * The state that does not fit the 14 registers lives here, read at these offsets. */
typedef struct {
    const int32_t *mn;      /* 0: (M, n) of the pair's first row (advanced by the loop) */
    int8_t *y;              /* 4: its output (advanced) */
    uint32_t stride;        /* 8: bytes from a pair's first row to its second */
    uint32_t skip;          /* 12: bytes from where the second row's words end to the next pair */
    const uint32_t *xs;     /* 16: the arranged x */
    const uint32_t *xg;     /* 20: end of the arranged x the loop uses */
    int32_t zero[2];        /* 24: loaded to clear both accumulators */
    const int8_t *y_end;    /* 32: the loop ends when y reaches this */
    const int8_t *y_first;  /* 36: y of the call's first row */
    int32_t left;           /* 40: how many rows were left to C */
    const uint32_t *xe;     /* 44: end of the 32-column steps in the arranged x (C only) */
    int variant;            /* 48: which assembly the kernel runs (C only) */
    int32_t acc[TRM_DSP_LEFT];   /* 52: accumulators of the rows left to C, in order (TRM_DSP_QUADS: two a row) */
    uint16_t rows[TRM_DSP_LEFT]; /* 84: those rows, counted from the call's first */
    int32_t y_other;             /* 100: TRM_DSP_QUADS: bytes from the first vector's output to the second's */
} trm_dsp_pairs;
_Static_assert(TRM_DSP_LEFT == 8 && sizeof(void *) == 4 && sizeof(trm_dsp_pairs) == 104,
               "trm_dsp_pairs offsets are fixed");

/* Requantize the accumulator in register A of the row whose (M, n) is at w0 and output at w1 (both
 * advanced); labels SLOW (forward) and BACK. Scratch: xa, xb, t, xp. */
#define TRM_DSP_ROW(A, FAST_N, SLOW, BACK)                                                                \
    "ldrd %[xa], %[xb], [%[w0]], #8\n\t"                                                                  \
    "subs %[xb], %[xb], #" #FAST_N "\n\t"                                                                 \
    "bmi " #SLOW "f\n\t"                                                                                  \
    "smull %[t], %[" A "], %[" A "], %[xa]\n\t"                                                           \
    "asr %[" A "], %[" A "], %[xb]\n\t"                                                                   \
    "add %[" A "], %[" A "], #1\n\t"                                                                      \
    "ssat %[" A "], #8, %[" A "], asr #1\n" #BACK ":\n\t"                                                \
    "strb %[" A "], [%[w1]], #1\n\t"
/* Row A left to C: its accumulator and row to st->acc, st->rows; once st->left reaches TRM_DSP_LEFT - 1
 * (7), st->y_end moves to the pair's end, PAIR_END bytes past w1, so the loop stops after this pair. */
#define TRM_DSP_ROW_SLOW(A, SLOW, BACK, PAIR_END)                                                         \
    #SLOW ":\n\t"                                                                                         \
    "ldr %[t], [%[st], #36]\n\t"                                                                          \
    "sub %[t], %[w1], %[t]\n\t"                                                                           \
    "ldr %[xa], [%[st], #40]\n\t"                                                                         \
    "add %[xp], %[st], %[xa], lsl #2\n\t"                                                                 \
    "str %[" A "], [%[xp], #52]\n\t"                                                                      \
    "add %[xp], %[st], %[xa], lsl #1\n\t"                                                                 \
    "strh %[t], [%[xp], #84]\n\t"                                                                        \
    "add %[xa], %[xa], #1\n\t"                                                                            \
    "str %[xa], [%[st], #40]\n\t"                                                                         \
    "cmp %[xa], #7\n\t"                                                                                  \
    "blt " #BACK "b\n\t"                                                                                  \
    "add %[t], %[w1], #" #PAIR_END "\n\t"                                                                 \
    "str %[t], [%[st], #32]\n\t"                                                                          \
    "b " #BACK "b\n"
/* Both loops after their 32-column steps: a group of columns at a time (GROUP) until xp reaches st->xg
 * (label 2), then TAIL (label 4). */
#define TRM_DSP_GROUPS(GROUP, TAIL)                                                                       \
    "2:\n\t"                                                                                               \
    "ldr %[t], [%[st], #20]\n\t"                                                                           \
    "cmp %[xp], %[t]\n\t"                                                                                  \
    "beq 4f\n"                                                                                             \
    "3:\n\t" GROUP "ldr %[t], [%[st], #20]\n\t"                                                          \
    "cmp %[xp], %[t]\n\t"                                                                                  \
    "bne 3b\n"                                                                                             \
    "4:\n\t" TAIL
#define TRM_DSP_PAIRS(STEPS, GROUP, TAIL, FAST_N)                                                         \
    "0:\n\t"                                                                                               \
    "ldrd %[a0], %[a1], [%[st], #24]\n\t"                                                                  \
    "ldr %[xp], [%[st], #16]\n\t"                                                                          \
    "cmp %[xp], %[xe]\n\t"                                                                                 \
    "beq 2f\n"                                                                                             \
    "1:\n\t" STEPS "cmp %[xp], %[xe]\n\t"                                                                  \
    "bne 1b\n"                                                                                             \
    TRM_DSP_GROUPS(GROUP, TAIL)                                                                         \
    "ldrd %[w0], %[w1], [%[st]]\n\t" TRM_DSP_ROW("a0", FAST_N, 5, 6) TRM_DSP_ROW("a1", FAST_N, 7, 8)        \
    "strd %[w0], %[w1], [%[st]]\n\t"                                                                       \
    "ldrd %[a0], %[a1], [%[st], #8]\n\t"                                                                   \
    "add %[p0], %[p1], %[a1]\n\t"                                                                          \
    "add %[p1], %[p0], %[a0]\n\t"                                                                          \
    "ldr %[t], [%[st], #32]\n\t"                                                                           \
    "cmp %[w1], %[t]\n\t"                                                                                  \
    "bne 0b\n\t"                                                                                           \
    "b 9f\n" TRM_DSP_ROW_SLOW("a0", 5, 6, 2) TRM_DSP_ROW_SLOW("a1", 7, 8, 1) "9:"

/* (M, n) = (0, 0) for TRM_DSP_LEFT rows, the most one call of the loop reaches: every row left to C
 * (linear.c). */
extern const int32_t trm_dsp_no_mn[2 * TRM_DSP_LEFT];

/* The loop state a kernel sets before trm_dsp_rows: row stride, the arranged x
 * and its two loop ends (xe: the 32-column steps; xg: the groups), the assembly variant. */
static inline void trm_dsp_begin(trm_dsp_pairs *st, uint32_t stride, const uint32_t *xs, const uint32_t *xg,
                                 const uint32_t *xe, int variant)
{
    st->stride = stride;
    st->skip = 0u; /* the loops read each row to its end */
    st->xs = xs;
    st->xg = xg;
    st->zero[0] = st->zero[1] = 0;
    st->xe = xe;
    st->variant = variant;
}

/* The loop over pairs of rows, the first at p0; returns where the next pair starts. */
typedef const uint8_t *(*trm_dsp_pairs_fn)(const uint8_t *p0, trm_dsp_pairs *st);

/* All rows of W (rows >= 2) through `loop`, which covers every column: TRM_DSP_PAIRS, or with a second
 * vector (out1: its int8 outputs) TRM_DSP_QUADS. The pairs of rows in as few calls as the rows left
 * to C allow (one, unless more than TRM_DSP_LEFT - 2 accumulators are), then an odd last row with the
 * row before it, which is computed and stored twice. A row's sum is its accumulator >> acc_shift (the
 * int4 loop accumulates 4096 x the sum); a row left to C has one accumulator per vector. int16 outputs
 * (one vector only) are requantized in C: the loop leaves every row to C, at most TRM_DSP_LEFT per
 * call, and its int8 stores are placeholders into the bytes of that call's own rows (an int16 row has
 * 2: the call from row o stores at bytes 2o.., which C then overwrites; stores at byte o, the rows'
 * int8 place, overwrote rows already finished, as the odd last call of an 11-row head did). */
static inline void trm_dsp_rows(const trm_mat *W, trm_out out, int8_t *out1, trm_dsp_pairs *st,
                                trm_dsp_pairs_fn loop, int acc_shift)
{
    const int rows = W->rows, even = rows & ~1, fused = out.s8 != NULL, accs = out1 ? 2 : 1;
    const size_t row_bytes = trm_mat_row_bytes(W);
    const uint8_t *p0 = (const uint8_t *)W->w;
    const trm_out second = {out1, NULL};
    if (out1)
        st->y_other = (int32_t)(out1 - out.s8);
    for (int o = 0; o < rows;) {
        int end = even;
        if (o == even) { /* the odd last row, with the one before */
            o = rows - 2;
            p0 -= row_bytes;
            end = rows;
        }
        int8_t *y = fused ? out.s8 + o : (int8_t *)(void *)(out.s16 + o);
        st->mn = fused ? W->mn + 2 * o : trm_dsp_no_mn;
        st->y = y;
        st->y_first = y;
        st->y_end = y + (end - o); /* unfused, the loop stops earlier: every row is left to C */
        st->left = 0;
        p0 = loop(p0, st);
        for (int k = 0; k < st->left; ++k) {
            const int j = o + st->rows[k];
            trm_store_row(out, j, st->acc[accs * k] >> acc_shift, W->mn);
            if (out1)
                trm_store_row(second, j, st->acc[accs * k + 1] >> acc_shift, W->mn);
        }
        o += (int)(st->y - y);
    }
}

/* The same loop for two input vectors at once (TRM_DSP_QUADS, trm_linear_pair): each weight word is
 * loaded and unpacked once for both. The arranged x interleaves the vectors word by word (the words
 * of the one-vector layout, A's then B's); four accumulators: a0 (first row, A), a1 (second row, A),
 * a2 (first row, B), a3 (second row, B); A's outputs at st->y, B's st->y_other bytes further. Both
 * loop ends are compared with st->xe and st->xg in memory (no register left). A row whose shift is
 * below FAST_N is left to C with both its accumulators (TRM_DSP_QROW_SLOW), its stores skipped.
 * Scratch registers at the pair's end: w (the (M, n) pointer), u (A's output),
 * xa, xb, t, xp. */
#define TRM_DSP_QROW(A, B, FAST_N, SLOW, BACK)                                                            \
    "ldrd %[xa], %[xb], [%[w]], #8\n\t"                                                                   \
    "subs %[xb], %[xb], #" #FAST_N "\n\t"                                                                 \
    "bmi " #SLOW "f\n\t"                                                                                 \
    "smull %[t], %[" A "], %[" A "], %[xa]\n\t"                                                           \
    "asr %[" A "], %[" A "], %[xb]\n\t"                                                                   \
    "add %[" A "], %[" A "], #1\n\t"                                                                      \
    "ssat %[" A "], #8, %[" A "], asr #1\n\t"                                                             \
    "smull %[t], %[" B "], %[" B "], %[xa]\n\t"                                                           \
    "asr %[" B "], %[" B "], %[xb]\n\t"                                                                   \
    "add %[" B "], %[" B "], #1\n\t"                                                                      \
    "ssat %[" B "], #8, %[" B "], asr #1\n\t"                                                             \
    "ldr %[t], [%[st], #100]\n\t"                                                                         \
    "strb %[" B "], [%[u], %[t]]\n\t"                                                                     \
    "strb %[" A "], [%[u]], #1\n" #BACK ":\n\t"
/* A row left to C: its two accumulators to st->acc[2 left], [2 left + 1], its row to st->rows[left];
 * once st->left reaches TRM_DSP_LEFT / 2 - 1 (3), st->y_end moves to the pair's end, PAIR_END bytes
 * past the advanced u (so the next pair's rows always find room). */
#define TRM_DSP_QROW_SLOW(A, B, SLOW, BACK, PAIR_END)                                                     \
    #SLOW ":\n\t"                                                                                         \
    "ldr %[t], [%[st], #36]\n\t"                                                                          \
    "sub %[t], %[u], %[t]\n\t"                                                                            \
    "ldr %[xa], [%[st], #40]\n\t"                                                                         \
    "add %[xp], %[st], %[xa], lsl #1\n\t"                                                                 \
    "strh %[t], [%[xp], #84]\n\t"                                                                        \
    "add %[xp], %[st], %[xa], lsl #3\n\t"                                                                 \
    "str %[" A "], [%[xp], #52]\n\t"                                                                      \
    "str %[" B "], [%[xp], #56]\n\t"                                                                      \
    "add %[xa], %[xa], #1\n\t"                                                                            \
    "str %[xa], [%[st], #40]\n\t"                                                                         \
    "add %[u], %[u], #1\n\t"                                                                              \
    "cmp %[xa], #3\n\t"                                                                                   \
    "blt " #BACK "b\n\t"                                                                                 \
    "add %[t], %[u], #" #PAIR_END "\n\t"                                                                  \
    "str %[t], [%[st], #32]\n\t"                                                                          \
    "b " #BACK "b\n"
#define TRM_DSP_QUADS(STEPS, GROUP, TAIL, FAST_N)                                                         \
    "0:\n\t"                                                                                               \
    "ldrd %[a0], %[a1], [%[st], #24]\n\t"                                                                  \
    "ldrd %[a2], %[a3], [%[st], #24]\n\t"                                                                  \
    "ldr %[xp], [%[st], #16]\n\t"                                                                          \
    "ldr %[t], [%[st], #44]\n\t"                                                                           \
    "cmp %[xp], %[t]\n\t"                                                                                  \
    "beq 2f\n"                                                                                             \
    "1:\n\t" STEPS "ldr %[t], [%[st], #44]\n\t"                                                          \
    "cmp %[xp], %[t]\n\t"                                                                                  \
    "bne 1b\n"                                                                                             \
    TRM_DSP_GROUPS(GROUP, TAIL)                                                                         \
    "ldrd %[w], %[u], [%[st]]\n\t" TRM_DSP_QROW("a0", "a2", FAST_N, 5, 6) TRM_DSP_QROW("a1", "a3", FAST_N, 7, 8) \
    "strd %[w], %[u], [%[st]]\n\t"                                                                         \
    "ldrd %[a0], %[a1], [%[st], #8]\n\t"                                                                   \
    "add %[p0], %[p1], %[a1]\n\t"                                                                          \
    "add %[p1], %[p0], %[a0]\n\t"                                                                          \
    "ldr %[t], [%[st], #32]\n\t"                                                                           \
    "cmp %[u], %[t]\n\t"                                                                                   \
    "bne 0b\n\t"                                                                                           \
    "b 9f\n" TRM_DSP_QROW_SLOW("a0", "a2", 5, 6, 1) TRM_DSP_QROW_SLOW("a1", "a3", 7, 8, 0) "9:"

/* The two-vector kernels (linear_s8.c, linear_s4.c) behind trm_linear_pair. */
void trm_linear_s8_pair_dsp(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                            uint32_t *xs);
void trm_linear_s4_pair_dsp(const trm_mat *W, const int8_t *x0, const int8_t *x1, int8_t *out0, int8_t *out1,
                            uint32_t *xs);

static inline uint32_t trm_load32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v); /* one LDR (unaligned words are fine on Armv7-M), also freestanding */
    return v;
}

/* SXTB16: bytes 0 and 2 of a word sign-extended to two int16 lanes. */
static inline uint32_t trm_sxtb16(uint32_t v) { return (uint32_t)__sxtb16((int32_t)v); }

/* SXTB16 of bytes 1 and 3 (the rotation is part of the instruction). */
static inline uint32_t trm_sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

#endif

#endif /* TRM_DOT_H */
