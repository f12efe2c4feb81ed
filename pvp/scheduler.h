/*
 * pvp/scheduler.h - the validation scheduler (docs/protocol.md §5.7).
 *
 * Each originating call record is validated once, at a uniformly random delay
 * inside a window after the call.  When its time comes the scheduler looks
 * the number up through an injected lookup function (the DHT, later), runs
 * PVP against every claimant through an injected validate function (several
 * claimants may succeed: all are reported, seed 001 §B.3.2), retries lookups
 * and unreachable claimants with exponential back-off, and reports each
 * outcome that carries a ticket through the route callback.  A claimant that
 * answered and failed every handshake is a definite failure: never retried.
 *
 * Single-threaded: the owner calls pvp_sched_run() from its timer, using
 * pvp_sched_next_due_ms() to arm it.  Jobs live in a binary heap by due time.
 */
#ifndef VP_PVP_SCHEDULER_H
#define VP_PVP_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "pvp/pvp.h"

#define PVP_CLAIMANTS_MAX 8     /* claimants validated per number (the DHT majority vote returns few) */
#define PVP_CLAIMANT_ID_MAX 64

/*! \brief One claimant of a number, as the lookup returns it. */
typedef struct pvp_claimant {
	char id[PVP_CLAIMANT_ID_MAX];    /*!< Node-ID hex (or any stable name): dedupe and logs */
	char addr[PVP_CLAIMANT_ID_MAX];  /*!< transport hint for validate_fn ("127.0.0.1:port"), may be "" */
	unsigned methods;                /*!< advertised PVP_MBIT set */
} pvp_claimant_t;

/*!
 * \brief Lookup: claimants of \p number into \p out (at most \p max), *n the
 * count (0 = nobody claims it).  Non-zero VP_E* = lookup failed, retry later.
 */
typedef int (*pvp_lookup_fn)(void *arg, const char *number, pvp_claimant_t *out, size_t max, size_t *n);

/*!
 * \brief Validate \p r against \p c (typically AppAttach, then
 * pvp_client_validate()); returns as pvp_client_validate() does.
 */
typedef int (*pvp_validate_fn)(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r,
                               const uint8_t *prev_ticket, size_t prev_len, pvp_validation_t *out);

/*!
 * \brief Previous ticket for (number, claimant), for entropy accumulation:
 * copy it into \p buf and return its length, or 0 if none.
 */
typedef size_t (*pvp_prev_ticket_fn)(void *arg, const char *number, const char *claimant_id,
                                     uint8_t *buf, size_t cap);

/*! \brief A learned route (status routes) or a pending ticket (status pending). */
typedef struct pvp_route {
	const char *number;
	const pvp_claimant_t *claimant;
	const pvp_valresp_t *resp;       /*!< status, URIs, ticket, expiry, entropy */
	pvp_method_t method;
	const uint8_t *cert;             /*!< client certificate (DER) issued with the routes (§6.1), or NULL */
	size_t cert_len;
} pvp_route_t;

typedef void (*pvp_route_fn)(void *arg, const pvp_route_t *route);

typedef struct pvp_sched_conf {
	uint32_t delay_min_s;      /*!< 0 = 300 */
	uint32_t delay_max_s;      /*!< 0 = 7200 */
	uint32_t backoff_s;        /*!< first retry delay, doubled each time; 0 = 60 */
	uint32_t max_attempts;     /*!< lookups/validation rounds per record; 0 = 4 */
	size_t max_jobs;           /*!< queue bound; 0 = 1,000,000 */
	uint64_t rng_seed;         /*!< 0 = from the OS */
	pvp_lookup_fn lookup;
	void *lookup_arg;
	pvp_validate_fn validate;
	void *validate_arg;
	pvp_prev_ticket_fn prev_ticket; /*!< may be NULL */
	void *prev_ticket_arg;
	pvp_route_fn route;
	void *route_arg;
	const vp_clock_t *clock;   /*!< NULL = system */
} pvp_sched_conf_t;

typedef struct pvp_sched pvp_sched_t;

/*! \brief Statistics since creation. */
typedef struct pvp_sched_stats {
	uint64_t scheduled, routes, pending, refused, failed, unreachable, no_claimant, dropped;
} pvp_sched_stats_t;

int pvp_sched_new(const pvp_sched_conf_t *conf, pvp_sched_t **out);

void pvp_sched_free(pvp_sched_t *s);

/*!
 * \brief Schedule originating record \p r (copied) at a random time in
 * [stop + delay_min, stop + delay_max].  VP_EINVAL for a non-originating
 * record, VP_EBUSY if the queue is full.
 */
int pvp_sched_add(pvp_sched_t *s, const pvp_vcr_t *r);

/*! \brief Run up to \p max due jobs; *ran (may be NULL) gets how many ran. */
int pvp_sched_run(pvp_sched_t *s, size_t max, size_t *ran);

/*! \brief When the next job is due (UTC ms), or UINT64_MAX if the queue is empty. */
uint64_t pvp_sched_next_due_ms(const pvp_sched_t *s);

/*! \brief Jobs queued. */
size_t pvp_sched_pending(const pvp_sched_t *s);

/*! \brief Copy the statistics. */
void pvp_sched_stats(const pvp_sched_t *s, pvp_sched_stats_t *out);

/*!
 * \brief A pvp_validate_fn for plain TCP: \p arg is a pvp_client_t, the
 * claimant's addr is "host:port" (IPv4/IPv6 literal, port numeric).
 */
int pvp_sched_tcp_validate(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r,
                           const uint8_t *prev_ticket, size_t prev_len, pvp_validation_t *out);

#endif
