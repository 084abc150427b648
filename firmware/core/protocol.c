/* COBS framing of the board protocol (see protocol.h). */
#include "protocol.h"

size_t trm_cobs_write(const uint8_t *in, size_t n, trm_put_fn put, void *ctx)
{
    size_t i = 0, written = 0;
    int ended_by_zero = 1; /* an empty input, or one ending in 0x00, still needs a final block */
    while (i < n || ended_by_zero) {
        size_t run = 0;
        while (i + run < n && in[i + run] != 0 && run < 254u)
            ++run;
        const uint8_t code = (uint8_t)(run + 1u);
        put(ctx, &code, 1);
        if (run)
            put(ctx, in + i, run);
        written += 1u + run;
        i += run;
        ended_by_zero = 0;
        if (run < 254u && i < n) { /* the block ended at a zero byte: consume it */
            ++i;
            ended_by_zero = i == n;
        }
    }
    const uint8_t delimiter = 0;
    put(ctx, &delimiter, 1);
    return written + 1u;
}

long trm_cobs_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        const uint8_t code = in[i++];
        if (code == 0 || i + (size_t)code - 1u > n)
            return -1;
        for (uint8_t k = 1; k < code; ++k) {
            if (in[i] == 0)
                return -1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n)
            out[o++] = 0;
    }
    return (long)o;
}
