/* Model blob parser: validation in the order of harness/export/blob.py, then name resolution. */
#include <string.h>

#include "blob.h"
#include "tensor_names.h"

/* Tensor names are built in buffers of NAME_BUF bytes: the longest name plus its NUL. */
enum { NAME_BUF = TRM_T_MAX_NAME + 1 };
/* digits of the largest layer number (TRM_MAX_LAYERS - 1) */
#define LAYER_DIGITS (TRM_MAX_LAYERS <= 10 ? 1 : TRM_MAX_LAYERS <= 100 ? 2 : 3)
_Static_assert(sizeof TRM_T_Y_BLOCK + LAYER_DIGITS + sizeof TRM_T_MIX + sizeof TRM_T_DOWN - 2 <= NAME_BUF,
               "a SwiGLU part's name outgrows NAME_BUF");
_Static_assert(sizeof TRM_T_Y_BLOCK + LAYER_DIGITS + sizeof TRM_T_ATT_QKV + sizeof TRM_T_MN - 2 <= NAME_BUF,
               "an attention matrix's .mn name outgrows NAME_BUF");

/* ---- little-endian field readers (the header need not be aligned for these) ------------------ */

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static int16_t rd_i16(const uint8_t *p)
{
    const int32_t v = rd_u16(p);
    return (int16_t)(v >= 0x8000 ? v - 0x10000 : v);
}
static int32_t rd_i32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    return u & 0x80000000u ? -(int32_t)(~u) - 1 : (int32_t)u;
}

/* ---- the tensor table -------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    uint8_t dtype;
    uint16_t rows;
    uint16_t cols;
} trm_tensor;

typedef struct {
    const uint8_t *blob;
    uint32_t total;
    uint32_t table;     /* offset of the tensor table: the header's size */
    uint16_t count;
    int check;          /* 0: presence only (BLOB_MISSING); 1: dtypes, shapes and values too */
    trm_status st;      /* first error */
} loader;

enum { K_I8, K_I16, K_I32, K_W /* int8 or int4 weights */ };
#define ANY_DIM UINT32_MAX /* need(): do not check this dimension */

/* The 16-byte NUL-padded field equals `name` (as Python's raw.rstrip(b"\0") == name). */
static int name_is(const uint8_t *field, const char *name)
{
    int i = 0;
    for (; i < 16 && name[i]; ++i)
        if (field[i] != (uint8_t)name[i])
            return 0;
    if (i == 16 && name[i])
        return 0;
    for (; i < 16; ++i)
        if (field[i])
            return 0;
    return 1;
}

/* buf[0..NAME_BUF) = a + b (cut at NAME_BUF - 1 bytes: a name that long is not in any blob). */
static const char *join(char *buf, const char *a, const char *b)
{
    int i = 0;
    for (; *a && i < NAME_BUF - 1; ++a)
        buf[i++] = *a;
    for (; *b && i < NAME_BUF - 1; ++b)
        buf[i++] = *b;
    buf[i] = '\0';
    return buf;
}

_Static_assert(sizeof TRM_T_Y_BLOCK >= sizeof TRM_T_BLOCK, "the y network's block prefix is the longer");

/* `net` ("<layer>" <suffix>: TRM_T_BLOCK or TRM_T_Y_BLOCK; names.block in Python) */
static const char *net_block_name(char *buf, const char *net, int layer, const char *suffix)
{
    char prefix[sizeof TRM_T_Y_BLOCK + 3];
    char digits[4];
    int nd = 0, i = 0;
    do {
        digits[nd++] = (char)('0' + layer % 10);
        layer /= 10;
    } while (layer && nd < 3);
    for (const char *p = net; *p; ++p)
        prefix[i++] = *p;
    while (nd)
        prefix[i++] = digits[--nd];
    prefix[i] = '\0';
    return join(buf, prefix, suffix);
}

/* Find `name` (the last entry of that name wins, as in the Python reader's dict); check it when
 * ld->check. Returns 1 when found (and, when checking, valid). */
static int need(loader *ld, const char *name, int kind, uint32_t rows, uint32_t cols, trm_tensor *t)
{
    if (ld->st != TRM_OK)
        return 0;
    int found = 0;
    for (uint32_t i = 0; i < ld->count; ++i) {
        const uint8_t *e = ld->blob + ld->table + TRM_BLOB_ENTRY_SIZE * i;
        if (name_is(e, name)) {
            found = 1;
            t->dtype = e[16];
            t->rows = rd_u16(e + 20);
            t->cols = rd_u16(e + 22);
            t->data = ld->blob + rd_u32(e + 24);
        }
    }
    if (!found) {
        ld->st = TRM_BLOB_MISSING;
        return 0;
    }
    if (!ld->check)
        return 1;
    int dtype_ok = kind == K_I8    ? t->dtype == TRM_DTYPE_INT8
                 : kind == K_I16   ? t->dtype == TRM_DTYPE_INT16
                 : kind == K_I32   ? t->dtype == TRM_DTYPE_INT32
                 : (t->dtype == TRM_DTYPE_INT8 || t->dtype == TRM_DTYPE_INT4);
    if (!dtype_ok || (rows != ANY_DIM && t->rows != rows) || (cols != ANY_DIM && t->cols != cols)) {
        ld->st = TRM_BLOB_SHAPE;
        return 0;
    }
    return 1;
}

static int mn_ok(const int32_t *mn, uint32_t pairs)
{
    for (uint32_t i = 0; i < pairs; ++i)
        if (mn[2 * i] < 0 || mn[2 * i + 1] < 1 || mn[2 * i + 1] > TRM_MN_MAX_SHIFT)
            return 0;
    return 1;
}

/* A weight matrix `name` [rows][cols] and its `name.mn` [rows][2]. rows == 0 takes the stored row
 * count (which must then be even and positive: a gate/up matrix). */
static void need_mat(loader *ld, const char *name, uint32_t rows, uint32_t cols, trm_mat *W)
{
    trm_tensor w = {0}, mn = {0};
    char mn_name[NAME_BUF];
    join(mn_name, name, TRM_T_MN);
    if (!need(ld, name, K_W, ANY_DIM, ANY_DIM, &w))
        return;
    if (ld->check) {
        if (rows == 0) {
            rows = w.rows;
            if (rows == 0 || rows % 2) {
                ld->st = TRM_BLOB_SHAPE;
                return;
            }
        }
        if (w.rows != rows || w.cols != cols) {
            ld->st = TRM_BLOB_SHAPE;
            return;
        }
    }
    if (!need(ld, mn_name, K_I32, rows, 2, &mn))
        return;
    if (!ld->check)
        return;
    if (!mn_ok((const int32_t *)(const void *)mn.data, rows)) {
        ld->st = TRM_BLOB_SHAPE;
        return;
    }
    W->w = w.data;
    W->mn = (const int32_t *)(const void *)mn.data;
    W->rows = (uint16_t)rows;
    W->cols = (uint16_t)cols;
    W->bits = w.dtype == TRM_DTYPE_INT4 ? 4 : 8;
}

/* The SwiGLU `part` (TRM_T_MIX or TRM_T_FFN) of block `layer` of network `net`; `op` its gate/up
 * operation in a profile. */
static void need_swiglu(loader *ld, const char *net, int layer, const char *part, uint32_t K, uint32_t N, uint32_t op,
                        trm_swiglu *s)
{
    char name[NAME_BUF], prefix[NAME_BUF];
    net_block_name(prefix, net, layer, part);
    need_mat(ld, join(name, prefix, TRM_T_GU), 0, K, &s->gate_up);
    const uint32_t inner = ld->check ? s->gate_up.rows / 2u : 0u;
    trm_tensor t = {0};
    if (need(ld, join(name, prefix, TRM_T_SILU), K_I8, 256, 1, &t))
        s->silu = (const int8_t *)t.data;
    if (need(ld, join(name, prefix, TRM_T_PROD), K_I32, 2, 1, &t) && ld->check) {
        const int32_t *mn = (const int32_t *)(const void *)t.data;
        if (!mn_ok(mn, 1))
            ld->st = TRM_BLOB_SHAPE;
        s->prod_M = mn[0];
        s->prod_n = mn[1];
    }
    need_mat(ld, join(name, prefix, TRM_T_DOWN), N, inner, &s->down);
    s->inner = (uint16_t)inner;
    s->prof_op = op;
}

static void need_residual(loader *ld, const char *net, int layer, const char *suffix, uint32_t C, trm_residual *r)
{
    char name[NAME_BUF];
    trm_tensor t = {0};
    if (!need(ld, net_block_name(name, net, layer, suffix), K_I32, 2, 1, &t) || !ld->check)
        return;
    const int32_t *ab = (const int32_t *)(const void *)t.data;
    if (ab[0] < TRM_INT16_MIN || ab[0] > TRM_INT16_MAX || ab[1] < TRM_INT16_MIN || ab[1] > TRM_INT16_MAX)
        ld->st = TRM_BLOB_SHAPE;
    r->a = ab[0];
    r->b = ab[1];
    r->C = C;
}

/* The `layers` blocks of network `net` (TRM_T_BLOCK or TRM_T_Y_BLOCK) into blocks[] (when checking).
 * Every block mixes the carry's R rows; the mlp mixer's residual takes seq_norm_const when the
 * norm runs over the rows. */
static void load_network(loader *ld, const trm_model *m, const char *net, int layers, trm_block *blocks)
{
    const uint32_t R = m->carry_len, D = m->hidden;
    const uint32_t hd = m->heads ? D / m->heads : 0;
    trm_tensor t = {0};
    for (int l = 0; l < layers && ld->st == TRM_OK; ++l) {
        trm_block b;
        char name[NAME_BUF];
        memset(&b, 0, sizeof b);
        if (m->mixer == TRM_MIXER_MLP) {
            need_swiglu(ld, net, l, TRM_T_MIX, R, R, TRM_OP_MIX_GATE_UP, &b.mix);
        } else {
            need_mat(ld, net_block_name(name, net, l, TRM_T_ATT_QKV), 3 * D, D, &b.att.qkv);
            /* learned positions: no rotary tables (cos and sin stay NULL: no rotation) */
            if (!(m->flags & TRM_BLOB_FLAG_POS_LEARNED) &&
                need(ld, net_block_name(name, net, l, TRM_T_ATT_COS), K_I16, R, hd / 2, &t))
                b.att.cos = (const int16_t *)(const void *)t.data;
            if (!(m->flags & TRM_BLOB_FLAG_POS_LEARNED) &&
                need(ld, net_block_name(name, net, l, TRM_T_ATT_SIN), K_I16, R, hd / 2, &t))
                b.att.sin = (const int16_t *)(const void *)t.data;
            if (need(ld, net_block_name(name, net, l, TRM_T_ATT_SM), K_I32, 4, 1, &t) && ld->check) {
                const int32_t *sm = (const int32_t *)(const void *)t.data;
                if (!mn_ok(sm, 2))
                    ld->st = TRM_BLOB_SHAPE;
                b.att.score_M = sm[0];
                b.att.score_n = sm[1];
                b.att.pv_M = sm[2];
                b.att.pv_n = sm[3];
            }
            need_mat(ld, net_block_name(name, net, l, TRM_T_ATT_OUT), D, D, &b.att.out);
            b.att.heads = m->heads;
        }
        const uint32_t mix_C = m->seq_norm_const && m->mixer == TRM_MIXER_MLP ? m->seq_norm_const : m->norm_const;
        need_residual(ld, net, l, TRM_T_MIX_RES, mix_C, &b.mix_res);
        need_swiglu(ld, net, l, TRM_T_FFN, D, D, TRM_OP_FFN_GATE_UP, &b.ffn);
        need_residual(ld, net, l, TRM_T_FFN_RES, m->norm_const, &b.ffn_res);
        if (ld->check && ld->st == TRM_OK)
            blocks[l] = b;
    }
}

/* Resolve every tensor of the model. Pass 0 (ld->check == 0) only looks for names, for any header
 * (like the Python reader, any mixer other than 0 is attention there); pass 1 runs on a header
 * already checked against this build's limits and fills *m. */
static void load(loader *ld, trm_model *m)
{
    const uint32_t V = m->vocab, D = m->hidden;
    trm_tensor t = {0};
    if (need(ld, TRM_T_EMBED, K_I8, V, D, &t))
        m->embed = (const int8_t *)t.data;
    if (need(ld, TRM_T_Y_INIT, K_I8, D, 1, &t))
        m->y_init = (const int8_t *)t.data;
    if (need(ld, TRM_T_Z_INIT, K_I8, D, 1, &t))
        m->z_init = (const int8_t *)t.data;
    if (m->prefix && need(ld, TRM_T_PUZZLE_EMB, K_I8, m->puzzle_ids, (uint32_t)m->prefix * D, &t))
        m->puzzle_emb = (const int8_t *)t.data;
    if ((m->flags & TRM_BLOB_FLAG_POS_LEARNED) && need(ld, TRM_T_POS_EMB, K_I8, m->carry_len, D, &t))
        m->pos_emb = (const int8_t *)t.data;
    load_network(ld, m, TRM_T_BLOCK, m->layers, m->blocks);
    load_network(ld, m, TRM_T_Y_BLOCK, m->y_layers, m->y_blocks);
    need_mat(ld, TRM_T_HEAD, V, D, &m->head);
    if (need(ld, TRM_T_HALT, K_I8, D, 1, &t))
        m->halt = (const int8_t *)t.data;
}

/* Header dimensions this build supports (TRM_BLOB_SHAPE otherwise). A carry of L x D bytes must be
 * addressable with room to spare: the workspace (trm_workspace_bytes, at most 4·L·D plus terms below
 * 2^20) and the RESULT size are then computed without wrapping a 32-bit size_t. (65535 x 32769 int8
 * carries, a valid blob of a few hundred KB with no layers, would otherwise wrap 2·L·D to 65534.) */
static int header_ok(const trm_model *m)
{
    const uint32_t R = (uint32_t)m->seq_len + m->prefix;
    if (m->vocab < 1 || m->vocab > TRM_MAX_VOCAB || m->seq_len < 1 || m->hidden < 1 ||
        m->layers > TRM_MAX_LAYERS || m->y_layers > TRM_MAX_LAYERS || m->norm_const >= TRM_NORM_CONST_LIMIT ||
        m->seq_norm_const >= TRM_NORM_CONST_LIMIT || R > UINT16_MAX ||
        (uint64_t)R * m->hidden > (uint64_t)(SIZE_MAX / 8u))
        return 0;
    /* a prefix comes with its table (at least one identifier), a table only with a prefix; the norm
     * over the rows belongs to the mlp mixer */
    if ((m->prefix != 0) != (m->puzzle_ids != 0) || (m->seq_norm_const && m->mixer != TRM_MIXER_MLP))
        return 0;
    /* only the flags the blob's version defines (bits 0 and 1; version 3 adds bit 2) */
    const unsigned known = TRM_BLOB_FLAG_EMBED_RAM | TRM_BLOB_FLAG_HALT_FIRST |
                           (m->version >= TRM_BLOB_VERSION_3 ? TRM_BLOB_FLAG_POS_LEARNED : 0u);
    if (m->flags & ~known)
        return 0;
    if (m->mixer == TRM_MIXER_ATTENTION)
        return m->heads >= 1 && m->hidden % m->heads == 0 && (m->hidden / m->heads) % 2 == 0;
    return m->mixer == TRM_MIXER_MLP;
}

trm_status trm_blob_parse(const uint8_t *data, size_t len, size_t max_size, trm_model *m)
{
    if (!m)
        return TRM_ERR_ARG;
    memset(m, 0, sizeof *m);
    if (!data || ((uintptr_t)data & 3u))
        return TRM_ERR_ARG;
    if (len < TRM_BLOB_HEADER_SIZE)
        return TRM_BLOB_TRUNCATED;
    if (data[0] != 'T' || data[1] != 'R' || data[2] != 'M' || data[3] != 'B')
        return TRM_BLOB_MAGIC;
    const uint16_t version = rd_u16(data + 4);
    if (version != TRM_BLOB_VERSION_1 && version != TRM_BLOB_VERSION_2 && version != TRM_BLOB_VERSION_3)
        return TRM_BLOB_VERSION;
    const uint32_t total = rd_u32(data + 8);
    const uint32_t hsize = version == TRM_BLOB_VERSION_1 ? TRM_BLOB_HEADER_SIZE : TRM_BLOB_HEADER_SIZE_2;
    if (rd_u16(data + 6) != hsize || total > len || total < hsize)
        return TRM_BLOB_TRUNCATED;
    if (max_size && total > max_size)
        return TRM_BLOB_TOO_BIG;
    if (trm_crc32(0, data + 16, total - 16u) != rd_u32(data + 12))
        return TRM_BLOB_CRC;

    const uint16_t count = rd_u16(data + 34);
    for (uint32_t i = 0; i < count; ++i) {
        const uint64_t at = hsize + (uint64_t)TRM_BLOB_ENTRY_SIZE * i;
        if (at + TRM_BLOB_ENTRY_SIZE > total)
            return TRM_BLOB_TABLE;
        const uint8_t *e = data + at;
        const uint8_t dtype = e[16];
        if (dtype > TRM_DTYPE_INT32)
            return TRM_BLOB_TABLE;
        const uint64_t rows = rd_u16(e + 20), cols = rd_u16(e + 22);
        const uint64_t off = rd_u32(e + 24), size = rd_u32(e + 28);
        const uint64_t width = dtype == TRM_DTYPE_INT16 ? 2 : dtype == TRM_DTYPE_INT32 ? 4 : 1;
        const uint64_t want = dtype == TRM_DTYPE_INT4 ? rows * ((cols + 1) / 2) : rows * cols * width;
        if (off % TRM_BLOB_ALIGN || off + size > total || size != want)
            return TRM_BLOB_TABLE;
    }

    m->vocab = rd_u16(data + 16);
    m->seq_len = rd_u16(data + 18);
    m->hidden = rd_u16(data + 20);
    m->layers = data[22];
    m->mixer = data[23];
    m->heads = data[24];
    m->weight_bits = data[25];
    m->default_T = data[30];
    m->default_n = data[31];
    m->default_steps = data[32];
    m->flags = data[33];
    m->norm_const = rd_u32(data + 36);
    m->halt_threshold = rd_i32(data + 40);
    for (int i = 0; i < 3; ++i)
        m->z_in[i] = rd_i16(data + 44 + 2 * i);
    /* resolved here, not on trm_run's stack: the position row is a term at x's scale, before y */
    m->z_terms = 3;
    if (m->flags & TRM_BLOB_FLAG_POS_LEARNED) {
        m->z_in[3] = m->z_in[2];
        m->z_in[2] = m->z_in[1];
        m->z_terms = 4;
    }
    for (int i = 0; i < 2; ++i)
        m->y_in[i] = rd_i16(data + 50 + 2 * i);
    m->carry_scale_bits = rd_u32(data + 58);
    if (version >= TRM_BLOB_VERSION_2) {
        m->prefix = data[64];
        m->y_layers = data[65];
        m->puzzle_ids = rd_u16(data + 66);
        m->seq_norm_const = rd_u32(data + 68);
    }
    m->carry_len = (uint16_t)(m->seq_len + m->prefix); /* checked below (header_ok: R <= 65535) */
    m->header_size = (uint16_t)hsize;
    m->version = (uint8_t)version;
    m->blob = data;
    m->blob_size = total;

    /* Pass 0: every needed tensor present (BLOB_MISSING). load() stores blocks only when checking,
     * so any layer count is fine here; like the Python reader, any mixer but 0 means attention. */
    loader ld = {data, total, hsize, count, 0, TRM_OK};
    const uint8_t mixer = m->mixer;
    if (m->mixer != TRM_MIXER_MLP)
        m->mixer = TRM_MIXER_ATTENTION;
    load(&ld, m);
    m->mixer = mixer;
    trm_status st = ld.st;
    if (st == TRM_OK && !header_ok(m))
        st = TRM_BLOB_SHAPE;
    if (st == TRM_OK) {
        ld.check = 1;
        load(&ld, m);
        st = ld.st;
    }
    if (st != TRM_OK)
        memset(m, 0, sizeof *m);
    return st;
}
