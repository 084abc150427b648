/* SwiGLU over one vector: gate/up projection, SiLU table, requantized product, down projection.
 *
 * Scratch layout (4-byte aligned): gate [I] | up [I], the products overwriting the gates; the linear
 * layers' scratch (DSP path only) after the 2I bytes for gate/up, after the I products for down (the
 * up values are dead by then). */
#include "dot.h"
#include "kernels.h"

/* Where the linear layers' scratch starts: gate/up's, down's. */
static size_t gate_up_at(const trm_swiglu *p) { return trm_scratch_align(2u * (size_t)p->inner); }
static size_t down_at(const trm_swiglu *p) { return trm_scratch_align((size_t)p->inner); }

size_t trm_swiglu_s8_scratch_bytes(const trm_swiglu *p)
{
    if (!p)
        return 0u;
    size_t need = 2u * (size_t)p->inner;
    const size_t g = trm_linear_scratch_bytes(&p->gate_up), d = trm_linear_scratch_bytes(&p->down);
    if (g && gate_up_at(p) + g > need)
        need = gate_up_at(p) + g;
    if (d && down_at(p) + d > need)
        need = down_at(p) + d;
    return need;
}

#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
/* trm_round_shift_high then the int8 clamp, per lane: VMULH gives floor(v * M / 2^32), VSHL by a
 * negative count the arithmetic shift by n - 33. */
static inline int32x4_t requantize_high4(int32x4_t v, int32_t M, int32_t n)
{
    int32x4_t h = vshlq_s32(vmulhq_s32(v, vdupq_n_s32(M)), vdupq_n_s32(33 - n));
    h = vshrq_n_s32(vaddq_n_s32(h, 1), 1);
    return vmaxq_s32(vminq_s32(h, vdupq_n_s32(TRM_INT8_MAX)), vdupq_n_s32(TRM_INT8_MIN));
}
#endif

/* gate[i] <- requantize(SILU[gate[i]] * up[i]), i < I: the product overwrites the gate it came from,
 * |act * up| <= 2^14. The parameters in locals (int8 stores may alias them, which would reload them
 * per element), the usual shift n > 32 in a loop of its own. */
static void products(const trm_swiglu *p, int8_t *gate, const int8_t *up)
{
    const int I = p->inner;
    const int8_t *const silu = p->silu + 128;
    const int32_t M = p->prod_M, n = p->prod_n;
#if TRM_LINEAR_PATH == TRM_LINEAR_MVE
    /* Helium, 16 elements per step (tail-predicated): the SiLU table by a gather load at gate + 128,
     * the int16 products of even and odd lanes (VMULLB/VMULLT), widened to int32 and requantized,
     * narrowed back in the inverse lane order (VMOVNB/VMOVNT). */
    if (n > 32) {
        for (int i = 0; i < I; i += 16) {
            const mve_pred16_t pr = vctp8q((uint32_t)(I - i));
            const int8x16_t g = vldrbq_z_s8(gate + i, pr);
            const uint8x16_t at = vreinterpretq_u8_s8(veorq_s8(g, vdupq_n_s8(INT8_MIN))); /* g + 128 */
            const int8x16_t act = vldrbq_gather_offset_z_s8(p->silu, at, pr);
            const int8x16_t u = vldrbq_z_s8(up + i, pr);
            const int16x8_t pe = vmullbq_int_s8(act, u), po = vmulltq_int_s8(act, u);
            int16x8_t re = vmovnbq_s32(vdupq_n_s16(0), requantize_high4(vmovlbq_s16(pe), M, n));
            re = vmovntq_s32(re, requantize_high4(vmovltq_s16(pe), M, n));
            int16x8_t ro = vmovnbq_s32(vdupq_n_s16(0), requantize_high4(vmovlbq_s16(po), M, n));
            ro = vmovntq_s32(ro, requantize_high4(vmovltq_s16(po), M, n));
            vstrbq_p_s8(gate + i, vmovntq_s16(vmovnbq_s16(vdupq_n_s8(0), re), ro), pr);
        }
        return;
    }
#endif
    if (n > 32) {
        for (int i = 0; i < I; ++i)
            gate[i] = (int8_t)trm_sat8_i32(trm_round_shift_high((int32_t)silu[gate[i]] * up[i], M, n));
    } else {
        for (int i = 0; i < I; ++i)
            gate[i] = (int8_t)trm_requantize_wide((int32_t)silu[gate[i]] * up[i], M, n, TRM_INT8_MIN, TRM_INT8_MAX);
    }
}

static int valid(const trm_swiglu *p)
{
    return p->silu && p->gate_up.rows == 2 * p->inner && p->down.cols == p->inner;
}

trm_status trm_swiglu_s8(const trm_swiglu *p, const int8_t *x, int8_t *scratch, int8_t *out)
{
    if (!p || !x || !scratch || !out || ((uintptr_t)scratch & 3u) || !valid(p))
        return TRM_ERR_ARG;
    const int I = p->inner;
    void *lin_g = trm_linear_scratch_bytes(&p->gate_up) ? scratch + gate_up_at(p) : NULL;
    void *lin_d = trm_linear_scratch_bytes(&p->down) ? scratch + down_at(p) : NULL;
    trm_prof(p->prof, p->prof_op);
    trm_status st = trm_linear(&p->gate_up, x, scratch, lin_g); /* gate [0, I), up [I, 2I) */
    if (st != TRM_OK)
        return st;
    trm_prof(p->prof, p->prof_op + 1u);
    products(p, scratch, scratch + I);
    trm_prof(p->prof, p->prof_op + 2u);
    return trm_linear(&p->down, scratch, out, lin_d);
}

/* Two vectors: gate/up of x0 [2I] | of x1 [2I] | the pair kernels' scratch (at a 4-byte boundary). */
static size_t pair_at(const trm_swiglu *p) { return trm_scratch_align(4u * (size_t)p->inner); }

size_t trm_swiglu_s8_pair_scratch_bytes(const trm_swiglu *p)
{
    if (!p)
        return 0u;
    const size_t g = trm_linear_pair_scratch_bytes(&p->gate_up), d = trm_linear_pair_scratch_bytes(&p->down);
    return pair_at(p) + (g > d ? g : d);
}

trm_status trm_swiglu_s8_pair(const trm_swiglu *p, const int8_t *x0, const int8_t *x1, int8_t *scratch,
                              int8_t *out0, int8_t *out1)
{
    if (!p || !x0 || !x1 || !scratch || !out0 || !out1 || ((uintptr_t)scratch & 3u) || !valid(p))
        return TRM_ERR_ARG;
    const int I = p->inner;
    int8_t *g0 = scratch, *g1 = scratch + 2 * I;
    void *lin = scratch + pair_at(p);
    trm_prof_vectors(p->prof, p->prof_op, 2u);
    trm_status st = trm_linear_pair(&p->gate_up, x0, x1, g0, g1, lin);
    if (st != TRM_OK)
        return st;
    trm_prof_vectors(p->prof, p->prof_op + 1u, 2u);
    products(p, g0, g0 + I);
    products(p, g1, g1 + I);
    trm_prof_vectors(p->prof, p->prof_op + 2u, 2u);
    return trm_linear_pair(&p->down, g0, g1, out0, out1, lin);
}
