/*
 * tests/pvp/harness.h - shared fixtures for the PVP tests: a temporary
 * RocksDB directory, a manual clock, a ticket key ring, and a PVP server
 * thread on 127.0.0.1 serving a bounded number of connections.
 */
#ifndef VP_TESTS_PVP_HARNESS_H
#define VP_TESTS_PVP_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "pvp/pvp.h"

/* 2026-11-21 10:17:23 UTC: a start away from the top of the hour. */
#define T0_MS 1795256243000ull

/*! \brief mkdtemp under $TMPDIR (or /tmp) into \p out (PATH_MAX). */
void h_tmpdir(char *out, size_t cap);

/*! \brief rm -r of a directory made by h_tmpdir (RocksDB files only, one level). */
void h_rmdir(const char *dir);

/*! \brief A fixed test key ring: epoch 7, 32 bytes 0x11. */
void h_keys(pvp_ticket_keys_t *keys);

/*! \brief Routes callback returning "sip:<number>@<arg>" (arg = host string). */
int h_routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n);

/*! \brief A claimant: store, policy, server and a listening socket served by a thread. */
typedef struct h_claimant {
	char dir[256];
	uint64_t clock_ms;
	vp_clock_t clock;
	pvp_vcr_store_t *store;
	pvp_policy_t *policy;
	pvp_ticket_keys_t keys;
	pvp_server_t *srv;
	char host[64];
	int lfd;
	char port[8];
	pvp_tcp_target_t target;
	/* results of the connections served, in order */
	pvp_server_result_t results[64];
	int nresults;
	int rc_last;
	int slots;                 /* result slots claimed */
	/* server threads */
	void *threads;
	int nthreads;
	int stop;
	pvp_gate_t *gate;          /* NULL: workers accept() directly (the structure before the gate) */
} h_claimant_t;

/*! \brief Start a claimant; \p pconf and \p group_bits may be NULL/0 for defaults. */
void h_claimant_start(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits);

/*! \brief Like h_claimant_start() with \p nthreads server threads sharing one pvp_server_t. */
void h_claimant_start_n(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads);

/*! \brief Full form: \p io_timeout_ms is the server's whole-connection deadline (0 = 5000). */
void h_claimant_start_ex(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads,
                         unsigned io_timeout_ms);

/*!
 * \brief Like h_claimant_start_ex(); \p gated: the server threads take
 * connections through a pvp_gate_t (as the daemon's workers do) instead of
 * accept(); the listen backlog is 128 either way.
 */
void h_claimant_start_gated(h_claimant_t *c, const pvp_policy_conf_t *pconf, int nthreads, unsigned io_timeout_ms,
                            bool gated);

/*! \brief One server thread that answers CertRequests with \p iss (docs/protocol.md §6.4). */
void h_claimant_start_issuer(h_claimant_t *c, const pvp_policy_conf_t *pconf, const pvp_cc_issuer_t *iss);

/*! \brief Stop the server threads, free everything, remove the directory. */
void h_claimant_stop(h_claimant_t *c);

/*! \brief Add a terminating record to the claimant's store (asserts success). */
void h_claimant_add(h_claimant_t *c, const char *called, const char *caller, uint64_t start_ms,
                    uint64_t stop_ms);

/*! \brief Make an originating record (asserts success). */
pvp_vcr_t h_orig(const char *called, const char *caller, uint64_t start_ms, uint64_t stop_ms);

/*! \brief Wait (bounded, 5 s) until the claimant has served \p n connections. */
void h_claimant_wait(h_claimant_t *c, int n);

/*! \brief The originating side's durable state: a call-record store and the guess ledger in it. */
typedef struct h_orig_side {
	char dir[256];
	pvp_vcr_store_t *store;
	pvp_ledger_t *ledger;
} h_orig_side_t;

/*! \brief Open (\p dir "" = a new temporary directory) with ledger configuration \p lc (may be NULL). */
void h_orig_side_open(h_orig_side_t *o, const char *dir, const pvp_ledger_conf_t *lc);

/*! \brief Close; \p keep leaves the directory for a reopen (a restart). */
void h_orig_side_close(h_orig_side_t *o, bool keep);

#endif
