/* Common definitions of the TRM integer core: status codes and the target assumptions.
 *
 * The core is portable C11 for any little-endian two's-complement target with arithmetic right
 * shifts (gcc and arm-none-eabi-gcc on x86-64 and Cortex-M). It uses no dynamic allocation, no
 * floating point and nothing from the C library beyond memcpy/memset/memmove/strlen and <stdint.h>/<stddef.h>.
 */
#ifndef TRM_COMMON_H
#define TRM_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The contract's ">>" is an arithmetic shift (floor division by a power of two, also for negative
 * values). C11 leaves the right shift of a negative value implementation-defined; gcc and
 * arm-none-eabi-gcc define it as arithmetic (sign-extending). Refuse to build anywhere else. */
_Static_assert((-1 >> 1) == -1, "right shift of negative int must be arithmetic");
_Static_assert((-5 >> 1) == -3, "right shift of negative int must round towards -inf");
_Static_assert(((int64_t)-1 >> 1) == -1, "right shift of negative int64_t must be arithmetic");
_Static_assert(((int64_t)-5 >> 1) == -3, "right shift of negative int64_t must round towards -inf");
_Static_assert((int8_t)-1 == -1 && (int32_t)0xFFFFFFFFu == -1, "two's complement required");

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the blob's tensors are read in place: little-endian only");
#endif

/* Status codes. 1..7 are the Python BlobError codes (harness/export/blob.py) with the same names. */
typedef enum {
    TRM_OK = 0,
    TRM_BLOB_TRUNCATED = 1, /* shorter than the header, header size != 64, or total size > data */
    TRM_BLOB_MAGIC = 2,     /* not "TRMB" */
    TRM_BLOB_VERSION = 3,   /* format version != 1 */
    TRM_BLOB_TOO_BIG = 4,   /* total size exceeds the region reserved for the blob */
    TRM_BLOB_CRC = 5,       /* CRC-32 of bytes [16, total) mismatch */
    TRM_BLOB_TABLE = 6,     /* a table entry runs past the blob, is misaligned, has an unknown dtype
                               or a size inconsistent with its shape */
    TRM_BLOB_MISSING = 7,   /* a tensor the model needs is absent */
    TRM_BLOB_SHAPE = 8,     /* firmware only: a needed tensor has the wrong dtype/shape, a value
                               outside the contract's range ((M, n), coefficients, C), or the header's
                               dimensions are outside what this build supports */
    TRM_ERR_ARG = 9,        /* bad argument: NULL pointer, negative depth, token >= vocab, or data
                               not aligned to 4 bytes */
    TRM_ERR_WORKSPACE = 10  /* workspace smaller than trm_workspace_bytes() or not 8-byte aligned */
} trm_status;

#define TRM_STATUS_COUNT 11

/* The name of a status ("TRM_OK", "BLOB_CRC", ...): the Python codes for 1..7. */
const char *trm_status_name(int status);

#endif /* TRM_COMMON_H */
