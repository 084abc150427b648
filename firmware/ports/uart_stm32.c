/* STM32F4 USART (SR +0: bit 5 RXNE, bit 7 TXE; DR +4; BRR +8; CR1 +0xC, bit 5 RXNEIE) and the clock tree: PLL from
 * the 16 MHz HSI to 168 MHz, APB1 at 42 MHz. Every wait is bounded: QEMU models neither RCC nor the
 * PLL-ready bit, and there the core simply stays at its emulated clock. Transmit is polled; receive
 * sleeps (port.h). */
#include "port.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define RCC 0x40023800u
#define FLASH_ACR REG(0x40023C00u)
#define USART(off) REG(UART_BASE + (off))
#define CR1_ENABLE ((1u << 13) | (1u << 3) | (1u << 2))   /* UE, TE, RE */
#define CR1_RXNEIE (1u << 5)

static int wait_set(uint32_t addr, uint32_t mask)
{
    for (uint32_t i = 0; i < 100000u; ++i)
        if (REG(addr) & mask)
            return 1;
    return 0;
}

void clock_init(void)
{
    REG(RCC + 0x40) |= 1u << 28;                        /* APB1ENR: PWR */
    FLASH_ACR = (5u << 0) | (1u << 8) | (1u << 9) | (1u << 10); /* 5 wait states, caches, prefetch */
    /* PLLCFGR: M = 16, N = 336, P = 2 (code 0), Q = 7, source HSI */
    REG(RCC + 0x04) = 16u | (336u << 6) | (0u << 16) | (7u << 24);
    REG(RCC + 0x00) |= 1u << 24;                        /* PLLON */
    if (!wait_set(RCC + 0x00, 1u << 25))                /* PLLRDY */
        return;
    REG(RCC + 0x08) = (5u << 10) | (4u << 13) | 2u;     /* APB1 /4, APB2 /2, SYSCLK = PLL */
    (void)wait_set(RCC + 0x08, 2u << 2);                /* SWS = PLL */
}

void uart_init(void)
{
    REG(RCC + 0x30) |= 1u << 0;                         /* AHB1ENR: GPIOA */
    REG(RCC + 0x40) |= 1u << 17;                        /* APB1ENR: USART2 */
    /* PA2/PA3 alternate function 7 (USART2 TX/RX) */
    REG(0x40020000u + 0x00) = (REG(0x40020000u) & ~(0xFu << 4)) | (0xAu << 4);
    REG(0x40020000u + 0x20) = (REG(0x40020000u + 0x20) & ~(0xFFu << 8)) | (0x77u << 8);
    USART(0x08) = (CORE_HZ / 4u + 57600u) / 115200u;    /* BRR at APB1 = CORE_HZ / 4 */
    USART(0x0C) = CR1_ENABLE;
}

static int rx_full(void) { return (USART(0x00) & (1u << 5)) != 0u; }

/* QEMU's USART lowers its interrupt line only when DR is read (disarming RXNEIE leaves it raised), so
 * the handler takes the byte into a one-byte mailbox, which reads DR, and disarms. The handler may also
 * run late, from a pending bit latched before uart_getc read DR itself: DR is therefore read only with
 * interrupts masked in uart_getc, and never into a full mailbox. */
static volatile uint8_t mailbox, mailbox_full;

void uart_irq(void)
{
    USART(0x0C) = CR1_ENABLE;   /* first: the next byte, which QEMU delivers as soon as DR is read,
                                   must find the interrupt disarmed or it raises the line again */
    if (!mailbox_full && rx_full()) {
        mailbox = (uint8_t)USART(0x04);
        mailbox_full = 1u;
    }
}

uint8_t uart_getc(void)
{
    for (;;) {
        port_irq_off();
        if (mailbox_full || rx_full()) {
            const uint8_t byte = mailbox_full ? mailbox : (uint8_t)USART(0x04);
            mailbox_full = 0u;
            port_irq_on();
            return byte;
        }
        USART(0x0C) = CR1_ENABLE | CR1_RXNEIE;
        if (!rx_full())
            port_sleep();
        port_irq_on();
    }
}

void uart_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        while (!(USART(0x00) & (1u << 7))) {
        }
        USART(0x04) = data[i];
    }
}
