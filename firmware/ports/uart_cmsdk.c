/* Arm CMSDK APB UART (MPS2/MPS3 boards): DATA +0, STATE +4 (bit 0 TX full, bit 1 RX full),
 * CTRL +8 (bit 0 TX enable, bit 1 RX enable, bit 3 RX interrupt enable), INTSTATUS/INTCLEAR +0xC
 * (bit 1 RX, write 1 to clear), BAUDDIV +0x10. Transmit is polled; receive sleeps (port.h). */
#include "port.h"

#define UART(off) (*(volatile uint32_t *)(UART_BASE + (off)))
#define CTRL_ENABLE 3u
#define CTRL_RX_IRQ (1u << 3)

void uart_init(void)
{
    UART(0x10) = CORE_HZ / 115200u;
    UART(0x08) = CTRL_ENABLE;
}

static int rx_full(void) { return (UART(0x04) & 2u) != 0u; }

/* The receive interrupt only ends the sleep: disarm it and clear its status; the byte stays in DATA. */
void uart_irq(void)
{
    UART(0x08) = CTRL_ENABLE;
    UART(0x0C) = 2u;
}

uint8_t uart_getc(void)
{
    while (!rx_full()) {
        port_irq_off();
        UART(0x08) = CTRL_ENABLE | CTRL_RX_IRQ;
        if (!rx_full())
            port_sleep();
        port_irq_on();
    }
    return (uint8_t)UART(0x00);
}

void uart_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        while (UART(0x04) & 1u) {
        }
        UART(0x00) = data[i];
    }
}

void clock_init(void) {}
