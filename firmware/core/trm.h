/* The TRM interpreter: the recursion of docs/integer-inference.md, section 4, over a parsed blob.
 *
 *   x = PUZZLE_EMB[id] rows, then EMBED[token]; y = Y_INIT; z = Z_INIT  (R = P + L rows each)
 *   for step: for cycle in T: { n times z = net_z(wadd(z, x, y)); y = net_y(wadd(y, z)); hook(y, z) }
 *   (net_y is the y network's blocks for an HRM, else net_z's)
 *             logits = head(y) -> prediction (argmax, lowest index on ties); halt_acc; halted?
 *
 * Working memory: every buffer comes from one caller-provided arena of trm_workspace_bytes(model)
 * bytes (8-byte aligned). Layout: y [L][D] | z [L][D] | pad to 8 | scratch, where scratch is shared
 * by the phases (the largest of them):
 *   mlp mixer       gate/up [2I] + column [L] + m [L][D]
 *   attention mixer scores int32 [L] + k, v [L][D] each + q, a, m rows [D] each
 *   channel SwiGLU  gate/up [2F] + m row [D]
 *   readout         int16 logits [V]
 * plus, on the DSP path (Cortex-M4/M7) only, the linear kernels' scratch S(matrix) =
 * trm_linear_scratch_bytes (the input vector arranged into int16 lanes, 2 bytes per column, at a
 * 4-byte boundary): in a SwiGLU after gate/up for the gate/up projection and over the dead up half
 * for the down projection (max(align4(2I) + S(gate/up), align4(I) + S(down)) instead of 2I), after
 * the attention buffers, after the logits. The portable and Helium paths need none. This is
 * implementation scratch, not part of the model's working buffer W below.
 * x is never materialised (each row is read from the embedding table by its token, in flash), the
 * network input h is formed in place in the carry it replaces (z = net(wadd(z, x, y)) overwrites z;
 * likewise y), and post-norm residuals are written over h row by row. The theoretical minimum of
 * the brief (carries x, y, z + network input h + largest working buffer = 4·L·D + W) is thus cut to
 * 2·L·D + W: y and z must persist, and the mlp mixer's output must coexist with its whole input
 * (each output row depends on every input row), so W >= L·D there. For sudoku6-mlp (L = 36, D = 32,
 * I = 72): 2304 + 1152 + 36 + 144 = 3636 bytes; on the DSP path the mixer's SwiGLU scratch grows
 * from 144 to max(144 + 72, 72 + 144) = 216 bytes: 3708.
 */
#ifndef TRM_TRM_H
#define TRM_TRM_H

#include "blob.h"

typedef struct {
    void *mem;      /* 8-byte aligned */
    size_t size;    /* >= trm_workspace_bytes(model) */
} trm_workspace;

typedef struct {
    uint8_t *pred;        /* required: [steps][L] predictions after every step run */
    int64_t *halt_acc;    /* required: [steps] halting accumulators (int32 by the contract's ranges) */
    int8_t *carries;      /* optional (NULL): [steps][T][2][R][D], y then z after every cycle */
    int8_t *final_y;      /* optional (NULL): [R][D], y after the last cycle run (y_init if none ran) */
    int8_t *final_z;      /* optional (NULL): [R][D], z likewise. The results' own buffers: nothing is
                             read back from the cycle hook, which a port may override freely. */
    int steps_run;        /* out: steps executed (< steps when halting stopped early) */
    uint64_t flash_bytes; /* out: blob bytes the kernels read (weights with their (M, n), embedding
                             rows, head, halting weights; lookup tables not counted). Embedding rows
                             count only while the table is the blob's (not a RAM copy). */
} trm_result;

/* Exact arena size trm_run needs for this model with the kernels this core was built with (0 for
 * NULL): the same on every build except the DSP path, which adds its linear scratch (above). */
size_t trm_workspace_bytes(const trm_model *m);

/* Run one puzzle: tokens[L] (< vocab) of puzzle identifier `puzzle_id` (its prefix rows; < puzzle_ids,
 * 0 for a model without a prefix), T cycles of n z-updates and one y-update per step, `steps` steps,
 * stopping after the first step whose halt_acc > threshold when `halting`. Entries of out->pred /
 * halt_acc / carries for steps not run are left untouched. */
trm_status trm_run(const trm_model *m, const uint8_t *tokens, int puzzle_id, int T, int n, int steps, int halting,
                   const trm_workspace *ws, trm_result *out);

/* Attach a begun profile (profile.h) to the model, or detach it (NULL): while attached, trm_run and
 * its kernels mark every boundary between their operations in it. The pointer is kept in the model
 * and in its kernels' parameter structs, so no kernel call carries an extra argument. */
void trm_model_profile(trm_model *m, trm_profile *p);

/* Called after every cycle with the carries (each [L][D], in the workspace), the 0-based step and
 * cycle. A stable, never-inlined, externally visible symbol for a debug probe to break on. The weak
 * default records its arguments in trm_carry_snapshot (for a probe only: no result is taken from it);
 * a target may override it with anything, results stay the same (trm_result.final_y/final_z). */
void trm_cycle_hook(const int8_t *y, const int8_t *z, int step, int cycle);

/* Called just before and just after trm_cycle_hook; weak no-ops in the core. A port's strong versions
 * stop and restart its cycle counter, so time spent stopped at the hook (a probe's breakpoint) and the
 * hook's own few instructions are not counted: a traced run counts what an untraced one does. */
void trm_counter_pause(void);
void trm_counter_resume(void);

typedef struct {
    const int8_t *y;
    const int8_t *z;
    int32_t step;
    int32_t cycle;
    uint32_t count;       /* hooks seen since start-up */
} trm_carry_snapshot_t;

extern volatile trm_carry_snapshot_t trm_carry_snapshot;

#endif /* TRM_TRM_H */
