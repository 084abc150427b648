/* What a Cortex-M port provides to main.c. The target's values come from targets/<name>.toml as -D
 * definitions (harness/firmware.py): TRM_TARGET, TRM_BUILD_ID, CORE_HZ, UART_BASE, RX_BYTES, TX_BYTES;
 * the blob region and the arena come from the linker script's symbols (cortexm.ld). */
#ifndef TRM_PORT_H
#define TRM_PORT_H

#include <stddef.h>
#include <stdint.h>

/* uart_cmsdk.c or uart_stm32.c: 115200 8N1 on silicon. Transmit polls. Receive sleeps: with interrupts
 * masked (PRIMASK) uart_getc arms the UART's receive interrupt, checks once more for a byte and only then
 * waits with WFI, which a pending enabled interrupt ends even while PRIMASK masks it; unmasking then
 * runs uart_irq, which disarms the interrupt. No byte can slip between the check and the sleep, and an
 * idle board executes nothing until a byte (or a SysTick wrap) arrives. */
void uart_init(void);
uint8_t uart_getc(void);                       /* sleeps until a byte arrives */
void uart_write(const uint8_t *data, size_t n);
void uart_irq(void);                           /* the receive interrupt's handler (startup.c) */

static inline void port_irq_off(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void port_irq_on(void) { __asm volatile("cpsie i\n\tisb" ::: "memory"); }
static inline void port_sleep(void) { __asm volatile("dsb\n\twfi" ::: "memory"); }

/* counter.c: DWT CYCCNT where it counts (silicon), else SysTick with a wrap counter. */
void counter_init(void);
uint64_t counter_read(void);
void counter_restart(void);                    /* SysTick: restart its period now (see counter.c) */
uint8_t counter_unit(void);                    /* TRM_UNIT_CYCLES or TRM_UNIT_SYSTICK */

/* stack.c: stack painting between the linker symbols __stack_bottom and __stack_top. */
void stack_paint(void);
uint32_t stack_high_water(void);

/* clock.c: bring the core to CORE_HZ where the port has to (STM32 PLL); bounded waits. */
void clock_init(void);

#endif /* TRM_PORT_H */
