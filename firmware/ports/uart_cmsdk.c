/* Arm CMSDK APB UART (MPS2/MPS3 boards): DATA +0, STATE +4 (bit 0 TX full, bit 1 RX full),
 * CTRL +8 (bit 0 TX enable, bit 1 RX enable), BAUDDIV +0x10. Polled. */
#include "port.h"

#define UART(off) (*(volatile uint32_t *)(UART_BASE + (off)))

void uart_init(void)
{
    UART(0x10) = CORE_HZ / 115200u;
    UART(0x08) = 3u;
}

uint8_t uart_getc(void)
{
    while (!(UART(0x04) & 2u)) {
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
