/* Start-up for every Cortex-M target: vector table, .data/.bss initialisation, coprocessor enable,
 * the interrupts that wake an idle board, and fault handlers that report over the UART before
 * resetting (a fault is never silent). */
#include <string.h>

#include "../core/protocol.h"
#include "../core/server.h"
#include "port.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);
void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);

/* External interrupts: every line of the table is enabled and served by the UART's handler. Only the
 * UART's receive interrupt is ever armed at its source (port.h), so only it can fire; the line it
 * arrives on differs per board and emulator (QEMU and Renode number them differently), and with every
 * line enabled no target file has to name it. */
enum { EXTERNAL_IRQS = 96 };

__attribute__((noreturn)) void Reset_Handler(void)
{
    memcpy(&__data_start, &__data_load, (size_t)((uint8_t *)&__data_end - (uint8_t *)&__data_start));
    memset(&__bss_start, 0, (size_t)((uint8_t *)&__bss_end - (uint8_t *)&__bss_start));
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CPACR: full access to CP10/CP11 (FPU and, on Armv8.1-M, MVE) before any such instruction */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    for (uint32_t i = 0; i < EXTERNAL_IRQS / 32u; ++i)
        ((volatile uint32_t *)0xE000E100u)[i] = 0xFFFFFFFFu;   /* NVIC ISER */
    main();
    for (;;) {
    }
}

static void put_uart(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    uart_write(data, n);
}

/* HardFault, MemManage, BusFault, UsageFault: an ERROR frame (code 12, the faulting PC in the
 * message) then a system reset through AIRCR. */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm volatile("tst lr, #4\n\t"
                   "ite eq\n\t"
                   "mrseq r0, msp\n\t"
                   "mrsne r0, psp\n\t"
                   "b fault_report\n\t");
}

__attribute__((used, noreturn)) void fault_report(const uint32_t *frame);
__attribute__((used, noreturn)) void fault_report(const uint32_t *frame)
{
    static const char hex[] = "0123456789abcdef";
    char msg[] = "fault at pc 0x00000000";
    const uint32_t pc = frame[6];
    for (int i = 0; i < 8; ++i)
        msg[sizeof msg - 2 - (size_t)i] = hex[(pc >> (4 * i)) & 0xFu];
    uint8_t rsp[64];
    const size_t n = trm_server_error(12, 0, msg, rsp, sizeof rsp);
    trm_cobs_write(rsp, n, put_uart, NULL);
    *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u; /* AIRCR: VECTKEY | SYSRESETREQ */
    for (;;) {
    }
}

static void Default_Handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16 + EXTERNAL_IRQS])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    Default_Handler, /* NMI */
    Fault_Handler,   /* HardFault */
    Fault_Handler,   /* MemManage */
    Fault_Handler,   /* BusFault */
    Fault_Handler,   /* UsageFault */
    [11] = Default_Handler, /* SVCall */
    [14] = Default_Handler, /* PendSV */
    [15] = SysTick_Handler,
    [16 ... 16 + EXTERNAL_IRQS - 1] = uart_irq,
};
