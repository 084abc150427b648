/* The model blob (docs/model-blob.md, format version 1): validated and resolved in place.
 *
 * trm_blob_parse checks the blob exactly as harness/export/blob.py does (same order, same codes
 * 1..7), then resolves every tensor the model needs by name into a trm_model of pointers into the
 * blob (no copies: on the device the blob stays in flash). Beyond the Python reader it also checks
 * what memory safety needs: dtypes and shapes of the needed tensors, (M, n) ranges, int16
 * coefficients, C < 2^24 and the header dimensions (TRM_BLOB_SHAPE). */
#ifndef TRM_BLOB_H
#define TRM_BLOB_H

#include "kernels.h"

#define TRM_BLOB_VERSION_1 1
#define TRM_BLOB_HEADER_SIZE 64
#define TRM_BLOB_ENTRY_SIZE 32
#define TRM_BLOB_ALIGN 16

#ifndef TRM_MAX_LAYERS
#define TRM_MAX_LAYERS 8          /* blocks a trm_model can hold (build option) */
#endif
#define TRM_MAX_VOCAB 256         /* tokens and predictions are bytes */

enum { TRM_MIXER_MLP = 0, TRM_MIXER_ATTENTION = 1 };
enum { TRM_DTYPE_INT8 = 0, TRM_DTYPE_INT4 = 1, TRM_DTYPE_INT16 = 2, TRM_DTYPE_INT32 = 3 };

typedef struct {
    trm_swiglu mix;           /* mixer == TRM_MIXER_MLP: SwiGLU along the sequence (K = N = L) */
    trm_attention att;        /* mixer == TRM_MIXER_ATTENTION */
    trm_residual mix_res;
    trm_swiglu ffn;           /* channel SwiGLU (K = N = D) */
    trm_residual ffn_res;
} trm_block;

typedef struct {
    /* header */
    uint16_t vocab;           /* V */
    uint16_t seq_len;         /* L */
    uint16_t hidden;          /* D */
    uint8_t layers;
    uint8_t mixer;            /* TRM_MIXER_* */
    uint8_t heads;
    uint8_t weight_bits;      /* as written in the header (each matrix carries its own width) */
    uint8_t default_T, default_n, default_steps;
    uint8_t flags;            /* bit 0: embeddings may be copied to RAM */
    uint32_t norm_const;      /* C */
    int32_t halt_threshold;
    int16_t z_in[3];          /* coefficients of z, x, y in the z-update input (Q12) */
    int16_t y_in[2];          /* coefficients of y, z in the y-update input (Q12) */
    uint32_t carry_scale_bits;/* float32 bits, host-side dequantization only */
    /* tensors (pointers into the blob; `embed` may be repointed to a RAM copy after parsing) */
    const int8_t *embed;      /* [V][D] */
    const int8_t *y_init;     /* [D] */
    const int8_t *z_init;     /* [D] */
    const int8_t *halt;       /* [D] */
    trm_mat head;             /* [V][D], int16 logits */
    trm_block blocks[TRM_MAX_LAYERS];
    const uint8_t *blob;
    uint32_t blob_size;
    trm_profile *profile;     /* NULL, or the profile of the run in progress (trm_model_profile) */
} trm_model;

/* Validate data[0..len) and fill *m. max_size: the size of the region reserved for the blob
 * (TRM_BLOB_TOO_BIG above it), 0 for no limit. data must be 4-byte aligned (TRM_ERR_ARG). On any
 * error *m is zeroed. */
trm_status trm_blob_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m);

#endif /* TRM_BLOB_H */
