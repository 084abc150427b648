/* The cycle counter. Silicon: DWT CYCCNT (core cycles). QEMU models no DWT (CYCCNT reads 0), so
 * there: SysTick from the processor clock, 24 bits, with an interrupt counting wraps. Under QEMU
 * -icount shift=0 one instruction advances virtual time 1 ns, so SysTick ticks are instructions
 * divided by 1e9 / CORE_HZ: deterministic, an instruction count and not a cycle count. */
#include "../core/protocol.h"
#include "../core/trm.h"
#include "port.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static volatile uint32_t systick_wraps;
static volatile uint32_t cyccnt_high;
static uint32_t cyccnt_last;
static uint8_t unit;

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    systick_wraps = systick_wraps + 1u;
}

void counter_init(void)
{
    DEMCR |= 1u << 24;  /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;     /* CYCCNTENA */
    for (volatile int i = 0; i < 64; ++i) {
    }
    if (DWT_CYCCNT != 0) {
        unit = TRM_UNIT_CYCLES;
        return;
    }
    unit = TRM_UNIT_SYSTICK;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;      /* enable, interrupt on wrap, processor clock */
}

uint8_t counter_unit(void) { return unit; }

/* SysTick as a 64-bit count: wraps (interrupt) and the 24-bit down-counter */
static uint64_t systick_raw(void)
{
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return ((uint64_t)wraps << 24) + (0x00FFFFFFu - value);
}

/* SysTick ticks every 1e9 / CORE_HZ instructions under QEMU; a stretch of code is counted as the tick
 * edges it spans, which depends on where in a period it starts. That phase would come from host
 * wall-clock time (when the request's last byte arrived, how long a probe held the core at the cycle
 * hook), so the count could differ by a tick between identical runs. Instead, each measured stretch
 * (a "segment": from the start of a run to the first cycle hook, between hooks, to the end) restarts
 * the SysTick period when it begins (a write to CVR clears it; the reload follows from that instant)
 * and adds its ticks to seg_base. Every segment then starts at the same phase: identical runs give
 * identical counts, traced or not. Each segment rounds down to whole ticks, by the same amount in every
 * run. DWT needs none of this: it counts every cycle and is simply stopped around the hook. */
static uint64_t seg_base;   /* ticks of the finished segments of this measurement */
static uint64_t seg_start;  /* raw reading when the current segment began */

static void systick_new_segment(void)
{
    SYST_CSR = 0u;
    SYST_CVR = 0u;
    SYST_CSR = 7u;
    /* the reload from 0 is no wrap (no interrupt): wait for it, so the reading starts a full period */
    while (SYST_CVR == 0u) {
    }
    seg_start = systick_raw();
}

uint64_t counter_read(void)
{
    if (unit == TRM_UNIT_CYCLES) {
        /* 32-bit CYCCNT extended by watching for wraps between reads (reads are < 2^32 cycles apart
         * around a run of at most a few seconds at 480 MHz) */
        const uint32_t now = DWT_CYCCNT;
        if (now < cyccnt_last)
            cyccnt_high = cyccnt_high + 1u;
        cyccnt_last = now;
        return (uint64_t)cyccnt_high << 32 | now;
    }
    return seg_base + (systick_raw() - seg_start);
}

/* Before a measurement's first read. */
void counter_restart(void)
{
    if (unit == TRM_UNIT_CYCLES)
        return;
    seg_base = 0;
    systick_new_segment();
}

/* Around the cycle hook (trm.h), where a probe may hold the core: the hook is not counted. */
void trm_counter_pause(void)
{
    if (unit == TRM_UNIT_CYCLES)
        DWT_CTRL &= ~1u;
    else
        seg_base += systick_raw() - seg_start;
}

void trm_counter_resume(void)
{
    if (unit == TRM_UNIT_CYCLES)
        DWT_CTRL |= 1u;
    else
        systick_new_segment();
}
