/* The per-operation profile (profile.h). */
#include <string.h>

#include "profile.h"

void trm_profile_begin(trm_profile *p, uint64_t (*now)(void), uint64_t t0)
{
    memset(p, 0, sizeof *p);
    p->now = now;
    p->last = t0;
    p->op = TRM_OP_OTHER;
    p->calls[TRM_OP_OTHER] = 1u;
}

void trm_profile_switch(trm_profile *p, uint32_t op)
{
    const uint64_t t = p->now ? p->now() : 0u;
    p->counts[p->op] += t - p->last;
    p->last = t;
    p->op = op < TRM_OP_COUNT ? op : TRM_OP_OTHER;
    p->calls[p->op] += 1u;
}

void trm_profile_end(trm_profile *p, uint64_t t1)
{
    p->counts[p->op] += t1 - p->last;
    p->last = t1;
    p->op = TRM_OP_OTHER;
}
