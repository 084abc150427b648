/* The model blob (docs/model-blob.md, format versions 1 to 3): validated and resolved in place.
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
#define TRM_BLOB_VERSION_2 2
#define TRM_BLOB_VERSION_3 3          /* the version 2 header; learned positions (flag bit 2) */
#define TRM_BLOB_HEADER_SIZE 64       /* version 1; the smallest header */
#define TRM_BLOB_HEADER_SIZE_2 80     /* version 2: prefix, y network, puzzle identifiers, sequence norm */
#define TRM_BLOB_FLAG_EMBED_RAM 1u
#define TRM_BLOB_FLAG_HALT_FIRST 2u   /* the halting head reads carry row 0, not the sum of all rows */
#define TRM_BLOB_FLAG_POS_LEARNED 4u  /* version 3: learned positions (pos_emb), no rotary tables */
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
    uint8_t flags;            /* TRM_BLOB_FLAG_*: bit 0 embeddings may be copied to RAM, bit 1 halting
                                 reads carry row 0, bit 2 learned positions (version 3); a bit its
                                 version does not define is TRM_BLOB_SHAPE */
    uint8_t prefix;           /* P: carry rows before the sequence, from the puzzle-embedding table */
    uint8_t y_layers;         /* blocks of the y network (HRM); 0: the z network updates y too */
    uint16_t puzzle_ids;      /* rows of puzzle_emb (0 without a prefix) */
    uint16_t carry_len;       /* R = P + L: rows of the carry */
    uint16_t header_size;     /* 64 (version 1) or 80 (versions 2, 3): where the tensor table starts */
    uint8_t version;          /* format version, 1 to 3 */
    uint32_t seq_norm_const;  /* > 0: the mlp mixer's residual norm runs over each channel's R rows
                                 with this C; 0: over each row's channels with norm_const */
    uint32_t norm_const;      /* C */
    int32_t halt_threshold;
    int16_t z_in[4];          /* coefficients of the z-update input's terms (Q12): z, x, y; with learned
                                 positions z, x, the position row (x's coefficient again), y */
    uint8_t z_terms;          /* terms of the z-update input: 3, or 4 with learned positions */
    int16_t y_in[2];          /* coefficients of y, z in the y-update input (Q12) */
    uint32_t carry_scale_bits;/* float32 bits, host-side dequantization only */
    /* tensors (pointers into the blob; `embed` may be repointed to a RAM copy after parsing) */
    const int8_t *embed;      /* [V][D] */
    const int8_t *puzzle_emb; /* [puzzle_ids][P*D], NULL without a prefix */
    const int8_t *pos_emb;    /* [R][D] learned positions at the scale of x, read in place (always from
                                 the blob); NULL with rotary positions */
    const int8_t *y_init;     /* [D] */
    const int8_t *z_init;     /* [D] */
    const int8_t *halt;       /* [D] */
    trm_mat head;             /* [V][D], int16 logits */
    trm_block blocks[TRM_MAX_LAYERS];   /* the z network (and the y network when y_layers == 0) */
    trm_block y_blocks[TRM_MAX_LAYERS]; /* the y network: y_layers blocks */
    const uint8_t *blob;
    uint32_t blob_size;
    trm_profile *profile;     /* NULL, or the profile of the run in progress (trm_model_profile) */
} trm_model;

/* Validate data[0..len) and fill *m. max_size: the size of the region reserved for the blob
 * (TRM_BLOB_TOO_BIG above it), 0 for no limit. data must be 4-byte aligned (TRM_ERR_ARG). On any
 * error *m is zeroed. */
trm_status trm_blob_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m);

#endif /* TRM_BLOB_H */
