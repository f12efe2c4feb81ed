/*
 * pvp/ledger.h - the originating side's guess ledger (docs/protocol.md §5.9).
 *
 * The claimant is the party under test: every PVP handshake we offer it is
 * one online guess at our call, and a claimant that wins one has not proved
 * anything unless our own record carries enough entropy for that guess to be
 * unlikely.  The ledger keeps, per (called number, claimant):
 *
 *  - the accumulation chain: handshakes offered G, calls counted S, their
 *    summed entropy (our estimator, on our record, for the method used) and
 *    the start of the last call counted (a call counts once);
 *  - the guess budget: handshakes that reached the key exchange and did not
 *    succeed, counted in two consecutive fixed windows whose sum is held
 *    under the budget, so the budget holds over *any* interval of one window
 *    length (a fixed window alone allows twice the budget across its edge).
 *
 * The credit of the chain is  sum(e) - log2 C(G, S)  bits: C(G, S) counts
 * the ways S lucky guesses could sit among G handshakes (a union bound), so
 * an owner whose every call validates at the first handshake pays nothing
 * and a claimant that needed many handshakes pays for each.
 *
 * Entries live in the call-record store (pvp_vcr_store_aux_*), written
 * before a handshake starts, so a restart or a crash never gives back a
 * guess.  A ledger is shared by threads (a mutex; one RocksDB read and write
 * per handshake, against milliseconds of modexp).
 */
#ifndef VP_PVP_LEDGER_H
#define VP_PVP_LEDGER_H

#include <stdint.h>

#include "pvp/vcr.h"

#define PVP_LEDGER_BUDGET_DEFAULT 64          /* failed handshakes per (number, claimant) per window */
#define PVP_LEDGER_BUDGET_WINDOW_DEFAULT 86400 /* s */
#define PVP_LEDGER_ACCUM_WINDOW_DEFAULT (30u * 86400) /* s of inactivity that restart a chain (= ticket accumulation window) */

typedef struct pvp_ledger_conf {
	pvp_vcr_store_t *store;     /*!< durable backing (required, not owned) */
	uint32_t budget;            /*!< failed handshakes per (number, claimant) per window; 0 = 64 */
	uint32_t budget_window_s;   /*!< 0 = 86400 */
	uint32_t accum_window_s;    /*!< 0 = 30 days */
} pvp_ledger_conf_t;

typedef struct pvp_ledger pvp_ledger_t;

/*! \brief One (number, claimant) entry, as stored. */
typedef struct pvp_ledger_entry {
	uint32_t handshakes;    /*!< G: handshakes offered in the chain (each an online guess) */
	uint32_t calls;         /*!< S: calls counted */
	uint32_t acc_cbits;     /*!< sum of the counted calls' entropy, 1/100 bit */
	uint32_t last_call_s;   /*!< start (UTC s) of the last call counted */
	uint64_t updated_s;     /*!< last change (chain restarts after accum_window_s without one) */
	uint64_t fail_window;   /*!< budget window index of fails_cur */
	uint32_t fails_cur;     /*!< failed handshakes in that window */
	uint32_t fails_prev;    /*!< ... and in the window before it */
} pvp_ledger_entry_t;

/*! \brief Create a ledger over \p conf->store.  VP_EINVAL without a store, VP_ENOMEM. */
int pvp_ledger_new(const pvp_ledger_conf_t *conf, pvp_ledger_t **out);

void pvp_ledger_free(pvp_ledger_t *l);

/*!
 * \brief Reserve one handshake to \p claimant for \p number at \p now_s:
 * counted as offered and as failed (given back by pvp_ledger_settle()), and
 * written before returning.  VP_ERATELIMIT (nothing counted) if the failed
 * handshakes of this window and the previous one reach the budget;
 * VP_EDB / VP_EINVAL otherwise.
 */
int pvp_ledger_take(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s);

/*! \brief How a reserved handshake ended. */
typedef enum pvp_ledger_result {
	PVP_LEDGER_NO_GUESS = 0, /*!< ended before the key exchange: no password was tested, all given back */
	PVP_LEDGER_FAILED,       /*!< the proof failed: stays counted */
	PVP_LEDGER_SUCCEEDED,    /*!< the proof succeeded: offered, not failed */
} pvp_ledger_result_t;

/*! \brief Settle the last reservation for (\p number, \p claimant) taken at \p now_s. */
int pvp_ledger_settle(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s,
                      pvp_ledger_result_t res);

/*!
 * \brief Count call \p call_start_s worth \p e_cbits (once: only if it
 * started after the last call counted) after a successful validation, and
 * give the chain's credit in *credit_cbits (sum(e) - 100 log2 C(G, S),
 * never below 0).  \p e_out (may be NULL) gets the entry after the update.
 */
int pvp_ledger_credit(pvp_ledger_t *l, const char *number, const char *claimant, uint32_t call_start_s,
                      uint32_t e_cbits, uint64_t now_s, uint32_t *credit_cbits, pvp_ledger_entry_t *e_out);

/*! \brief Read the entry (zeroed if absent or its chain has lapsed). */
int pvp_ledger_get(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s,
                   pvp_ledger_entry_t *out);

/*!
 * \brief Delete the entries that no longer say anything at \p now_s: the
 * chain lapsed (no change for accum_window_s) and both budget windows that
 * held its failures are over, so reading the entry would give zeros anyway.
 * Damaged entries are kept (they read as an exhausted budget).  *removed (may
 * be NULL) gets the count.  VP_EDB on a database error.  Called by the
 * owner's maintenance; without it every (number, claimant) ever validated
 * stays in the store.
 */
int pvp_ledger_purge(pvp_ledger_t *l, uint64_t now_s, size_t *removed);

/*! \brief The credit of a chain: sum(e) - 100 log2 C(G, S) in 1/100 bit, 0 if negative. */
uint32_t pvp_ledger_credit_of(uint32_t acc_cbits, uint32_t handshakes, uint32_t calls);

#endif
