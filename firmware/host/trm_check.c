/* Stand-alone driver of the core for sanitizer runs (built by harness/native.py or the Makefile):
 *
 *   trm_check run BLOB TOKENS OUT T n steps halting
 *       TOKENS: B*L bytes; OUT gets, per puzzle, int32 steps_run, uint8 pred[steps][L],
 *       int64 halt_acc[steps], int8 carries[steps][T][2][L][D]. Exit status 0, or 2 + status.
 *   trm_check parse BLOB...
 *       prints the status name of each blob; blobs that parse are also run on one all-zero puzzle
 *       for one step (T = n = 1) to exercise the kernels on whatever values they hold.
 *
 *   trm_check serve REGION ARENA BLOB IN OUT [BLOB IN OUT]...
 *       opens one protocol server (trm_host_server_open) per BLOB, all at once, each with its own
 *       REGION-byte blob memory (the blob, then 0xFF) and ARENA-byte arena; then feeds each IN, one
 *       frame (up to a 0x00) at a time, taking the servers in turn, and writes each server's wire
 *       responses to its OUT. A server is closed (its memory freed) as soon as its IN is used up, while
 *       the others go on. BLOB "-": no blob (erased flash). Prints "hook calls N".
 *   trm_check serve-threads REGION ARENA BLOB IN OUT [BLOB IN OUT]...
 *       the same with every server fed its whole IN on its own thread (C11 threads), all at once.
 *
 * The blob, tokens and workspace are heap buffers of exactly the size needed, so AddressSanitizer
 * catches any access past them.
 *
 * Built with -DTRM_CHECK_STRONG_HOOK, it overrides the core's weak trm_cycle_hook with one that only
 * counts (as a port may): results must not depend on the hook (tests/test_native.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "../core/trm.h"
#include "trm_host.h"

static unsigned long hook_calls;

#ifdef TRM_CHECK_STRONG_HOOK
void trm_cycle_hook(const int8_t *y, const int8_t *z, int step, int cycle)
{
    (void)y;
    (void)z;
    (void)step;
    (void)cycle;
    ++hook_calls;
}
#endif

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1u); /* malloc: 16-byte aligned */
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0u;
    return buf;
}

static int run_one_puzzle(const trm_model *m)
{
    size_t wsb = trm_workspace_bytes(m);
    void *ws_mem = malloc(wsb ? wsb : 1u);
    uint8_t *tok = calloc(m->seq_len, 1);
    uint8_t *pred = malloc(m->seq_len);
    int64_t acc = 0;
    trm_workspace ws = {ws_mem, wsb};
    trm_result r = {pred, &acc, NULL, NULL, NULL, 0, 0};
    int st = trm_run(m, tok, 0, 1, 1, 1, 0, &ws, &r);
    free(ws_mem);
    free(tok);
    free(pred);
    return st;
}

static int cmd_parse(int argc, char **argv)
{
    for (int i = 2; i < argc; ++i) {
        size_t len = 0;
        uint8_t *blob = read_file(argv[i], &len);
        if (!blob) {
            printf("IO_ERROR\n");
            continue;
        }
        trm_model m;
        int st = trm_blob_parse(blob, len, 0, &m);
        int run = st == TRM_OK ? run_one_puzzle(&m) : -1;
        printf("%s %s\n", trm_status_name(st), run < 0 ? "-" : trm_status_name(run));
        free(blob);
    }
    return 0;
}

static int cmd_run(char **argv)
{
    size_t blen = 0, tlen = 0;
    uint8_t *blob = read_file(argv[2], &blen);
    uint8_t *tokens = read_file(argv[3], &tlen);
    if (!blob || !tokens) {
        fprintf(stderr, "cannot read inputs\n");
        return 1;
    }
    const int T = atoi(argv[5]), n = atoi(argv[6]), steps = atoi(argv[7]), halting = atoi(argv[8]);
    trm_model m;
    int st = trm_blob_parse(blob, blen, 0, &m);
    if (st != TRM_OK) {
        fprintf(stderr, "blob: %s\n", trm_status_name(st));
        return 2 + st;
    }
    const size_t L = m.seq_len, LD = (size_t)m.carry_len * m.hidden;
    const size_t B = tlen / L;
    const size_t wsb = trm_workspace_bytes(&m);
    void *ws_mem = malloc(wsb);
    uint8_t *pred = malloc((size_t)steps * L + 1u);
    int64_t *acc = malloc(sizeof(int64_t) * ((size_t)steps + 1u));
    int8_t *carries = malloc((size_t)steps * (size_t)T * 2u * LD + 1u);
    FILE *out = fopen(argv[4], "wb");
    if (!ws_mem || !pred || !acc || !carries || !out) {
        fprintf(stderr, "cannot allocate or open the output\n");
        return 1;
    }
    trm_workspace ws = {ws_mem, wsb};
    for (size_t b = 0; b < B && st == TRM_OK; ++b) {
        memset(pred, 0, (size_t)steps * L);
        memset(acc, 0, sizeof(int64_t) * (size_t)steps);
        memset(carries, 0, (size_t)steps * (size_t)T * 2u * LD);
        trm_result r = {pred, acc, carries, NULL, NULL, 0, 0};
        st = trm_run(&m, tokens + b * L, 0, T, n, steps, halting, &ws, &r);
        int32_t sr = r.steps_run;
        fwrite(&sr, sizeof sr, 1, out);
        fwrite(pred, 1, (size_t)steps * L, out);
        fwrite(acc, sizeof(int64_t), (size_t)steps, out);
        fwrite(carries, 1, (size_t)steps * (size_t)T * 2u * LD, out);
    }
    fclose(out);
    free(ws_mem);
    free(pred);
    free(acc);
    free(carries);
    free(tokens);
    free(blob);
    if (st != TRM_OK)
        fprintf(stderr, "run: %s\n", trm_status_name(st));
    return st == TRM_OK ? 0 : 2 + st;
}

typedef struct {
    trm_host_server *h;
    uint8_t *mem;        /* the blob region */
    uint8_t *in;
    size_t in_len, at;
    FILE *out;
    uint8_t *rsp;        /* this server's response bytes */
    size_t cap;
    int failed;
} served;

/* Feed server v its next frame (up to and including a 0x00) and write the answers. Returns 1 while
 * more input is left, 0 when done (the server is then closed and its memory freed), -1 on error. */
static int feed_frame(served *v)
{
    size_t end = v->at;
    while (end < v->in_len && v->in[end] != 0)
        ++end;
    end += end < v->in_len;   /* the delimiter */
    const size_t n = trm_host_server_feed(v->h, v->in + v->at, end - v->at, v->rsp, v->cap);
    if (n == (size_t)-1) {
        fprintf(stderr, "serve: responses larger than %zu bytes\n", v->cap);
        return -1;
    }
    fwrite(v->rsp, 1, n, v->out);
    v->at = end;
    if (v->at < v->in_len)
        return 1;
    trm_host_server_close(v->h);   /* done: close it now, the others go on */
    v->h = NULL;
    free(v->mem);
    free(v->in);
    free(v->rsp);
    fclose(v->out);
    return 0;
}

static int serve_thread(void *arg)
{
    served *v = arg;
    int more = 1;
    while (more > 0)
        more = feed_frame(v);
    v->failed = more < 0;
    return 0;
}

static int cmd_serve(int argc, char **argv, int threads)
{
    const size_t region = (size_t)strtoul(argv[2], NULL, 0), arena = (size_t)strtoul(argv[3], NULL, 0);
    const int count = (argc - 4) / 3;
    served *sv = calloc((size_t)count, sizeof *sv);
    if (!sv || region < 16u) {
        fprintf(stderr, "serve: bad REGION or out of memory\n");
        return 1;
    }
    for (int i = 0; i < count; ++i) {
        char **a = argv + 4 + 3 * i;
        size_t blen = 0;
        uint8_t *blob = strcmp(a[0], "-") ? read_file(a[0], &blen) : NULL;
        sv[i].mem = malloc(region);
        sv[i].in = read_file(a[1], &sv[i].in_len);
        sv[i].out = fopen(a[2], "wb");
        sv[i].cap = 1u << 20;
        sv[i].rsp = malloc(sv[i].cap);
        if (!sv[i].mem || !sv[i].in || !sv[i].out || !sv[i].rsp || (strcmp(a[0], "-") && !blob)) {
            fprintf(stderr, "serve: cannot read %s or %s, or open %s\n", a[0], a[1], a[2]);
            return 1;
        }
        memset(sv[i].mem, 0xFF, region);
        memcpy(sv[i].mem, blob ? blob : sv[i].mem, blen < region ? blen : region);
        free(blob);
        int status = -1;
        sv[i].h = trm_host_server_open(sv[i].mem, region, arena, 1024u, 16384u, &status);
        if (!sv[i].h) {
            fprintf(stderr, "serve: trm_host_server_open(region %zu, arena %zu) refused\n", region, arena);
            return 1;
        }
    }
    int failed = 0;
    if (threads) {   /* every server on its own thread, all at once */
        thrd_t *t = calloc((size_t)count, sizeof *t);
        if (!t)
            return 1;
        for (int i = 0; i < count; ++i)
            if (thrd_create(&t[i], serve_thread, &sv[i]) != thrd_success) {
                fprintf(stderr, "serve-threads: cannot start thread %d\n", i);
                return 1;
            }
        for (int i = 0; i < count; ++i) {
            thrd_join(t[i], NULL);
            failed |= sv[i].failed;
        }
        free(t);
    } else {         /* one frame per server in turn */
        for (int open = count; open > 0 && !failed;) {
            open = 0;
            for (int i = 0; i < count && !failed; ++i) {
                if (!sv[i].h)
                    continue;
                const int more = feed_frame(&sv[i]);
                failed = more < 0;
                open += more > 0;
            }
        }
    }
    free(sv);
    if (failed)
        return 1;
    printf("hook calls %lu\n", hook_calls);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 7 && (argc - 4) % 3 == 0 && !strcmp(argv[1], "serve"))
        return cmd_serve(argc, argv, 0);
    if (argc >= 7 && (argc - 4) % 3 == 0 && !strcmp(argv[1], "serve-threads"))
        return cmd_serve(argc, argv, 1);
    if (argc >= 9 && !strcmp(argv[1], "run"))
        return cmd_run(argv);
    if (argc >= 3 && !strcmp(argv[1], "parse"))
        return cmd_parse(argc, argv);
    fprintf(stderr, "usage: trm_check run BLOB TOKENS OUT T n steps halting | trm_check parse BLOB... | "
                    "trm_check serve|serve-threads REGION ARENA BLOB IN OUT [BLOB IN OUT]...\n");
    return 1;
}
