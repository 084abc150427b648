/* The firmware's main loop: bytes from the UART are collected up to each 0x00 delimiter, decoded
 * (COBS), handed to the protocol server (core/server.c), and the response goes back encoded.
 * Whatever arrives, the loop answers and keeps serving: garbage, overlong frames and bad CRCs get
 * ERROR frames. */
#include "../core/server.h"
#include "port.h"

static uint8_t rx[RX_BYTES];
static uint8_t tx[TX_BYTES] __attribute__((aligned(8)));
/* the linker's (ports/cortexm.ld): the blob region and the arena, whatever the image leaves */
extern const uint8_t __blob_start[], __blob_end[];
extern uint8_t __arena_start[], __arena_end[];
static trm_server server;

static uint64_t counter(void) { return counter_read(); }

static void put_uart(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    uart_write(data, n);
}

int main(void)
{
    clock_init();
    uart_init();
    counter_init();
    static trm_port port = {TRM_TARGET, TRM_BUILD_ID, CORE_HZ, 0, CORE_HZ, counter, stack_paint,
                            stack_high_water, counter_restart};
    port.counter_unit = counter_unit();
    if (port.counter_unit == TRM_UNIT_CYCLES)
        port.counter_hz = CORE_HZ;
    trm_server_init(&server, &port, __blob_start, (size_t)(__blob_end - __blob_start), __arena_start,
                    (size_t)(__arena_end - __arena_start));

    trm_link link = {rx, sizeof rx, 0, 0};
    for (;;) {
        const size_t out = trm_link_feed(&link, &server, uart_getc(), tx, sizeof tx);
        if (out)
            trm_cobs_write(tx, out, put_uart, NULL);
    }
}
