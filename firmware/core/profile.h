/* The per-operation profile of one RUN (the PROFILE flag, docs/protocol.md).
 *
 * At every boundary between two operations (profile_ops.h) the interpreter calls trm_prof(p, op): the
 * counter is read once and the stretch since the previous boundary goes to the operation that ran it.
 * The stretches tile the run, so the parts add up to the run's count exactly. Without a profile
 * (p == NULL, every RUN without the flag) a boundary is one compare. The profile lives on the server's
 * stack for one request: no globals. */
#ifndef TRM_PROFILE_H
#define TRM_PROFILE_H

#include <stdint.h>

#include "profile_ops.h"

typedef struct trm_profile {
    uint64_t (*now)(void);          /* the port's counter (the one RUN's count is read from) */
    uint64_t last;                  /* reading at the last boundary */
    uint32_t op;                    /* the operation running since then */
    uint32_t calls[TRM_OP_COUNT];   /* vectors each operation was entered for (one per boundary, two where a
                                       kernel takes two vectors at once: trm_prof_vectors) */
    uint64_t counts[TRM_OP_COUNT];  /* counter units spent in each operation */
} trm_profile;

/* Start at reading t0 in operation OTHER; end at reading t1 (the stretch since the last boundary goes
 * to the operation running then). */
void trm_profile_begin(trm_profile *p, uint64_t (*now)(void), uint64_t t0);
void trm_profile_end(trm_profile *p, uint64_t t1);
void trm_profile_switch(trm_profile *p, uint32_t op);

static inline void trm_prof(trm_profile *p, uint32_t op)
{
    if (p)
        trm_profile_switch(p, op);
}

/* A boundary into an operation that handles `vectors` vectors at once (calls count vectors). */
static inline void trm_prof_vectors(trm_profile *p, uint32_t op, uint32_t vectors)
{
    if (p) {
        trm_profile_switch(p, op);
        p->calls[p->op] += vectors - 1u;
    }
}

#endif /* TRM_PROFILE_H */
