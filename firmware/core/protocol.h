/* The board protocol (docs/protocol.md), version 1: framing, CRC and message layout.
 *
 * On the wire every frame is COBS-encoded and ends with one 0x00 byte. A decoded frame is
 *   version u8 | type u8 | seq u16 | payload ... | crc32 u32
 * little-endian, the CRC-32 (zlib polynomial) covering everything before it. A request's seq is
 * echoed in its response. Requests have types below 0x80, responses have the top bit set. */
#ifndef TRM_PROTOCOL_H
#define TRM_PROTOCOL_H

#include "trm_common.h"

#define TRM_PROTO_VERSION 1
#define TRM_FRAME_HEADER 4  /* version, type, seq */
#define TRM_FRAME_CRC 4
#define TRM_FRAME_MIN (TRM_FRAME_HEADER + TRM_FRAME_CRC)

enum {
    TRM_CMD_PING = 0x01,      /* empty payload -> PONG (same payload) */
    TRM_CMD_INFO = 0x02,      /* empty -> INFO */
    TRM_CMD_RUN = 0x03,       /* puzzle + depth -> RESULT */
    TRM_CMD_RELOAD = 0x04,    /* re-validate the blob in place (after the host rewrote it) -> INFO */
    TRM_CMD_BENCH = 0x05,     /* time trm_linear on a generated matrix -> BENCH_RESULT (no blob needed) */
    TRM_RSP_PONG = 0x81,
    TRM_RSP_INFO = 0x82,
    TRM_RSP_RESULT = 0x83,
    TRM_RSP_BENCH = 0x85,
    TRM_RSP_ERROR = 0xFF      /* code u8 | detail u8 | message (ASCII, no terminator) */
};

/* ERROR codes. */
enum {
    TRM_PERR_COBS = 1,        /* the bytes before a delimiter are not valid COBS (garbage) */
    TRM_PERR_TRUNCATED = 2,   /* decoded frame shorter than header + CRC */
    TRM_PERR_CRC = 3,
    TRM_PERR_VERSION = 4,     /* detail: the version received */
    TRM_PERR_OVERSIZE = 5,    /* frame longer than the receive buffer (dropped up to the next 0x00) */
    TRM_PERR_COMMAND = 6,     /* unknown request type; detail: the type */
    TRM_PERR_ARGS = 7,        /* malformed payload or depth outside the limits */
    TRM_PERR_PUZZLE = 8,      /* puzzle length != the model's L, or a token >= vocab */
    TRM_PERR_BLOB = 9,        /* no valid blob; detail: the blob status (TRM_BLOB_*) */
    TRM_PERR_RUN = 10,        /* trm_run failed; detail: its status */
    TRM_PERR_RESPONSE = 11    /* the response would not fit the transmit buffer */
};

/* RUN flags. */
enum {
    TRM_RUN_HALTING = 1u << 0,      /* stop after the first step whose halt_acc > threshold */
    TRM_RUN_CARRIES = 1u << 1,      /* append the final carries y, z to RESULT */
    TRM_RUN_EMBED_RAM = 1u << 2,    /* copy the embedding table to RAM for this run */
    TRM_RUN_PROFILE = 1u << 3       /* split the run's count per operation (profile.h); appended to RESULT */
};

/* Counter units in RESULT / INFO. */
enum {
    TRM_UNIT_NONE = 0,
    TRM_UNIT_CYCLES = 1,            /* DWT CYCCNT: core clock cycles (silicon) */
    TRM_UNIT_SYSTICK = 2,           /* SysTick ticks at counter_hz (on QEMU -icount: instructions / (1e9/hz)) */
    TRM_UNIT_NANOSECONDS = 3        /* host build: monotonic wall clock */
};

/* COBS. write: streams the encoding of in[0..n) and the 0x00 delimiter through put (no buffer: each
 * block's length is found by scanning ahead in `in`); returns the bytes written.
 * decode: returns the decoded length, or -1 on a zero byte or a code running past the end. In-place
 * decoding (out == in) is allowed. */
typedef void (*trm_put_fn)(void *ctx, const uint8_t *data, size_t n);
size_t trm_cobs_write(const uint8_t *in, size_t n, trm_put_fn put, void *ctx);
long trm_cobs_decode(const uint8_t *in, size_t n, uint8_t *out);

/* Little-endian field helpers. */
static inline void trm_put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void trm_put32(uint8_t *p, uint32_t v)
{
    trm_put16(p, v);
    trm_put16(p + 2, v >> 16);
}
static inline void trm_put64(uint8_t *p, uint64_t v)
{
    trm_put32(p, (uint32_t)v);
    trm_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t trm_get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t trm_get32(const uint8_t *p) { return trm_get16(p) | trm_get16(p + 2) << 16; }

#endif /* TRM_PROTOCOL_H */
