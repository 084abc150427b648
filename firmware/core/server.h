/* The protocol server: one decoded request frame in, one response frame out (docs/protocol.md).
 *
 * Portable: the same code serves on every Cortex-M port (ports/) and in the host build. What differs
 * per platform (the counter, the stack, names and clocks) comes in through trm_port. The server owns
 * no memory: the caller provides the model arena and the response buffer. */
#ifndef TRM_SERVER_H
#define TRM_SERVER_H

#include "protocol.h"
#include "trm.h"

#include "limits.h"       /* TRM_MAX_T, _N, _STEPS, _EVALUATIONS, _BENCH_REPS, _BENCH_MACS: the work one request may ask for */

typedef struct {
    const char *target;       /* e.g. "mps2-an386" */
    const char *build_id;     /* source hash of the firmware build */
    uint32_t core_hz;         /* core clock the target is specified for */
    uint8_t counter_unit;     /* TRM_UNIT_* */
    uint32_t counter_hz;      /* ticks per second of the counter (0 when not a clock) */
    uint64_t (*counter)(void);
    void (*stack_paint)(void);        /* refill the unused stack with the paint pattern */
    uint32_t (*stack_high_water)(void); /* bytes of stack touched since the last paint */
    void (*counter_start)(void);      /* optional, called just before a measurement's first counter
                                         read: lets a port fix the counter's phase (ports/counter.c) */
} trm_port;

typedef struct {
    const trm_port *port;
    const uint8_t *blob;      /* where the blob lives (flash) */
    size_t blob_region;       /* bytes reserved for it */
    uint8_t *arena;           /* 8-byte aligned model working memory */
    size_t arena_size;
    trm_model model;
    trm_status blob_status;   /* of the last (re)load */
    uint32_t arena_used;      /* bytes of the arena the last RUN used */
} trm_server;

/* Validate the blob and get ready to serve. */
void trm_server_init(trm_server *s, const trm_port *port, const uint8_t *blob, size_t blob_region,
                     uint8_t *arena, size_t arena_size);

/* Handle the request frame[0..len) (decoded, CRC included) and write the response frame (CRC
 * included) to rsp[0..cap) (8-byte aligned). Returns the response length; 0 when the request gets no answer (an
 * empty frame: the host's resynchronisation delimiter). cap must be >= 64. */
size_t trm_server_handle(trm_server *s, const uint8_t *frame, size_t len, uint8_t *rsp, size_t cap);

/* An ERROR response for a frame the transport could not decode (TRM_PERR_COBS / OVERSIZE). */
size_t trm_server_error(uint8_t code, uint8_t detail, const char *msg, uint8_t *rsp, size_t cap);

/* The receiving side of the link: bytes are collected up to each 0x00, then decoded and served. */
typedef struct {
    uint8_t *buf;             /* receive buffer (encoded bytes of one frame) */
    size_t cap;
    size_t len;
    int overflow;             /* the current frame outgrew buf: it is dropped, OVERSIZE answered */
} trm_link;

/* Feed one received byte. Returns the length of a response frame written to rsp (to be sent COBS-
 * encoded), or 0 when there is nothing to send yet. Garbage, overlong frames, bad CRCs: ERROR frames;
 * the link is ready for the next frame after every delimiter. */
size_t trm_link_feed(trm_link *link, trm_server *s, uint8_t byte, uint8_t *rsp, size_t cap);

#endif /* TRM_SERVER_H */
