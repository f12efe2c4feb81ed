#include "common/clock.h"

#include <time.h>

uint64_t vp_time_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t vp_time_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t vp_time_thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t system_now(void *ctx)
{
	(void)ctx;
	return vp_time_wall_ms();
}

const vp_clock_t vp_clock_system = { system_now, 0 };

uint64_t vp_clock_manual_now(void *ctx)
{
	return *(const uint64_t *)ctx;
}
