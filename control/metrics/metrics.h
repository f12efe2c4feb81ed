/*
 * control/metrics/metrics.h - Prometheus text metrics and /health over HTTP.
 *
 * A registry holds counters and histograms, each with a name, an optional
 * label set and a help line.  Every value is kept once per writer thread (a
 * "slot row" per thread, each on its own cache lines): a thread only ever
 * adds to its own row with relaxed atomics, so the message path takes no lock
 * and shares no cache line; a scrape sums the rows (as unbound's do_stats adds
 * up its workers).  Register everything before the writer threads start; the
 * registry is then read-only apart from the values.
 *
 * vm_http_start() serves the registry with libmicrohttpd on its own thread:
 *   GET /metrics  Prometheus text exposition format 0.0.4
 *   GET /health   200 "ok" or 503 with the health callback's reason
 * anything else is 404.  Generic: the border element and the daemon use it.
 */
#ifndef VP_CONTROL_METRICS_H
#define VP_CONTROL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_NAME_MAX 96      /* metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) */
#define VM_LABELS_MAX 160   /* label text as written between braces: reason="bad-mac" */
#define VM_BUCKETS_MAX 24   /* finite histogram buckets (the +Inf bucket is implicit) */

typedef struct vm_registry vm_registry_t;
typedef struct vm_http vm_http_t;

/*!
 * \brief A registry for \p nthreads writer threads (1..256) and at most
 * \p max_slots values per thread (a counter takes 1, a histogram buckets + 2).
 * VP_EINVAL, VP_ENOMEM.  Free with vm_registry_free().
 */
int vm_registry_new(unsigned nthreads, unsigned max_slots, vm_registry_t **out);

void vm_registry_free(vm_registry_t *reg);

/*!
 * \brief Register a counter; \p labels may be NULL or text such as
 * `reason="bad-mac"` (the caller quotes values; they are printed as given).
 * Series of one name share \p help and must be registered with the same type.
 * *\p id is what vm_inc() takes.  VP_EINVAL (bad name or labels, type clash),
 * VP_ESPACE (slots exhausted), VP_EEXIST (same name and labels twice).
 */
int vm_counter_add(vm_registry_t *reg, const char *name, const char *labels, const char *help,
                   unsigned *id);

/*!
 * \brief Register a histogram over integer observations with \p nb increasing
 * upper bounds (in the observation's unit); printed values are divided by
 * \p scale (1e6 turns microseconds into the seconds Prometheus expects).
 * Errors as vm_counter_add(), VP_EINVAL also for unsorted bounds or nb = 0.
 */
int vm_histogram_add(vm_registry_t *reg, const char *name, const char *labels, const char *help,
                     const uint64_t *bounds, unsigned nb, double scale, unsigned *id);

/*! \brief Add \p n to counter \p id, from writer thread \p thread only (no lock, no check on the hot path). */
void vm_inc(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t n);

/*! \brief Record one observation \p v in histogram \p id, from writer thread \p thread only. */
void vm_observe(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t v);

/*!
 * \brief Register a gauge (a value that goes up and down: links up, entries stored).  Errors as
 * vm_counter_add().  Set it with vm_set().
 */
int vm_gauge_add(vm_registry_t *reg, const char *name, const char *labels, const char *help, unsigned *id);

/*!
 * \brief Store \p v as thread \p thread's share of counter or gauge \p id (the series is the sum of the
 * shares).  For a counter kept elsewhere by its owning thread and copied here as a running total (which
 * only grows), and for gauges.  From that thread only, as vm_inc().
 */
void vm_set(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t v);

/*! \brief Called before every scrape (on the HTTP thread) to refresh the series set with vm_set(). */
typedef void (*vm_collect_fn)(void *ctx, vm_registry_t *reg);

/*! \brief Install \p fn (NULL: none) as the registry's collector; call before vm_http_start(). */
void vm_registry_set_collect(vm_registry_t *reg, vm_collect_fn fn, void *ctx);

/*! \brief The sum of counter \p id over all threads (any thread may call). */
uint64_t vm_value(const vm_registry_t *reg, unsigned id);

/*!
 * \brief Render every series in Prometheus text format into a malloc'd,
 * NUL-terminated buffer the caller frees.  VP_ENOMEM.
 */
int vm_render(const vm_registry_t *reg, char **out, size_t *len);

/*! \brief Health callback: true when healthy; otherwise write a short reason into \p why. */
typedef bool (*vm_health_fn)(void *ctx, char *why, size_t cap);

/*!
 * \brief Serve /metrics and /health on \p addr (numeric IPv4 or IPv6) port
 * \p port (0 = ephemeral, see vm_http_port()) from a libmicrohttpd thread.
 * \p health may be NULL (always healthy); it runs on the HTTP thread, so it
 * must only read state that is safe to read from there.  VP_EINVAL, VP_EIO.
 */
int vm_http_start(vm_registry_t *reg, const char *addr, uint16_t port, vm_health_fn health, void *ctx,
                  vm_http_t **out);

/*! \brief The port actually bound. */
uint16_t vm_http_port(const vm_http_t *h);

/*! \brief Stop serving and free \p h (NULL is fine); the registry stays. */
void vm_http_stop(vm_http_t *h);

#endif
