/* Stack painting: fill the unused stack with a pattern, later find the deepest overwritten byte. */
#include "port.h"

#define PAINT 0xA5u

extern uint8_t __stack_bottom, __stack_top;

void stack_paint(void)
{
    uintptr_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    /* stop short of this frame */
    for (volatile uint8_t *p = &__stack_bottom; (uintptr_t)p < sp - 64u; ++p)
        *p = PAINT;
}

uint32_t stack_high_water(void)
{
    const uint8_t *p = &__stack_bottom;
    while (p < &__stack_top && *p == PAINT)
        ++p;
    return (uint32_t)(&__stack_top - p);
}
