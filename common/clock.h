/*
 * common/clock.h - wall and monotonic clocks, and an injectable clock for tests.
 *
 * Wall time (UTC milliseconds since 1970) is what RELOAD storage_time, call
 * records and tickets carry; monotonic time drives timers and rate limits.
 * Code that must be tested across hours or days (lifetimes, VCR retention,
 * ticket expiry) takes a vp_clock_t instead of calling the system directly.
 */
#ifndef VP_COMMON_CLOCK_H
#define VP_COMMON_CLOCK_H

#include <stdint.h>

/*! \brief Wall clock, UTC milliseconds since the Unix epoch. */
uint64_t vp_time_wall_ms(void);

/*! \brief Monotonic clock in nanoseconds (arbitrary origin, never jumps). */
uint64_t vp_time_mono_ns(void);

/*! \brief CPU time consumed by the calling thread, in nanoseconds (benchmarks' per-core figures). */
uint64_t vp_time_thread_cpu_ns(void);

/*! \brief A wall clock that tests can replace. */
typedef struct vp_clock {
	uint64_t (*now_ms)(void *ctx); /*!< UTC ms since the epoch */
	void *ctx;
} vp_clock_t;

/*! \brief The real wall clock. */
extern const vp_clock_t vp_clock_system;

/*! \brief Read \p clk (NULL means the system clock). */
static inline uint64_t vp_clock_now_ms(const vp_clock_t *clk)
{
	return clk ? clk->now_ms(clk->ctx) : vp_time_wall_ms();
}

/*! \brief A manual clock for tests: now_ms returns *(uint64_t *)ctx. */
uint64_t vp_clock_manual_now(void *ctx);

#endif
