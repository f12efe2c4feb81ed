/*
 * pvp/policy.h - PVP server policy: per-VService domain lists with entropy
 * thresholds, and handshake rate limits (docs/protocol.md §5.6, §5.8).
 *
 * Seed 001 §B.7 folds black and white lists into thresholds: a blacklist is a
 * default threshold with "never" for the listed domains, a whitelist is a
 * default of "never" with a threshold for the listed ones.  A list entry
 * matches the domain itself and its subdomains; the longest match wins.
 *
 * Rate limits count *failed* handshakes (online password guesses) per key,
 * peers and numbers in separate tables (docs/protocol.md §5.8).  A failure is
 * admitted only while the key's count in this window plus its count in the
 * previous one stays under the limit, so the limit holds over any interval of
 * one window length (a plain fixed window allows twice the limit across its
 * edge); a key that hit its limit stays limited up to two windows.  Each table
 * is a count-min sketch per window (4 rows of table_slots counters, keyed
 * hash, fixed size, no allocation after creation): a key's count is the
 * smallest of its counters, which is never below its true count, so a flood
 * of other keys can only over-count (new keys may start limited when far
 * more than table_slots failures arrive per window), never make a key
 * forget.  An IPv6 peer is counted as its /64 (addresses inside a prefix are
 * free to rotate), an IPv4-mapped address as its IPv4 address.  All
 * functions are thread-safe (one mutex; handshakes cost milliseconds, the
 * lock microseconds).
 */
#ifndef VP_PVP_POLICY_H
#define VP_PVP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PVP_THRESHOLD_NEVER UINT32_MAX  /* refused whatever the entropy */

typedef enum pvp_list_mode {
	PVP_LIST_BLACK = 0, /*!< everybody at min_entropy except listed "never" entries */
	PVP_LIST_WHITE = 1, /*!< nobody except listed domains */
} pvp_list_mode_t;

typedef enum pvp_rate_kind {
	PVP_RATE_PEER = 0,
	PVP_RATE_NUMBER = 1,
} pvp_rate_kind_t;

typedef struct pvp_policy_conf {
	pvp_list_mode_t mode;
	uint32_t min_entropy_cbits;  /*!< default threshold; 0 = 1600 (16 bits) */
	uint32_t peer_fail_limit;    /*!< failed handshakes per peer per window; 0 = 30 */
	uint32_t number_fail_limit;  /*!< failed handshakes per number per window; 0 = 10 */
	uint32_t window_s;           /*!< 0 = 3600 */
	uint32_t table_slots;        /*!< counters per sketch row (power of two, >= 64); 0 = 4096 */
} pvp_policy_conf_t;

typedef struct pvp_policy pvp_policy_t;

/*! \brief Create a policy (conf NULL = defaults). VP_ENOMEM. */
int pvp_policy_new(const pvp_policy_conf_t *conf, pvp_policy_t **out);

void pvp_policy_free(pvp_policy_t *p);

/*!
 * \brief List \p domain (and its subdomains) with \p threshold_cbits
 * (PVP_THRESHOLD_NEVER to refuse).  Re-listing replaces.  VP_EINVAL for a bad name.
 */
int pvp_policy_list(pvp_policy_t *p, const char *domain, uint32_t threshold_cbits);

/*!
 * \brief The entropy threshold for \p domain (1/100 bit); VP_EREFUSED if the
 * domain is refused (blacklisted, or not whitelisted), VP_EINVAL for a bad name.
 */
int pvp_policy_threshold(const pvp_policy_t *p, const char *domain, uint32_t *threshold_cbits);

/*! \brief May a handshake for \p key of \p kind start now? (false: over the limit). */
bool pvp_policy_rate_ok(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s);

/*! \brief Count one failed handshake for \p key. */
void pvp_policy_rate_fail(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s);

/*!
 * \brief Check and count in one step: if \p key is under its limit, count one
 * failure now and return true (the handshake may start), else return false.
 * Concurrent handshakes for one key can then never exceed the limit, as
 * separate check and count calls would (every worker passes the check before
 * any failure is counted).  A handshake that succeeds gives the count back
 * with pvp_policy_rate_refund().
 */
bool pvp_policy_rate_take(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s);

/*!
 * \brief Give back one count taken by pvp_policy_rate_take() at \p now_s (the
 * take's time: counted in that window, or nothing if two windows have
 * passed).  Only for a take that succeeded: a sketch cannot tell whose count
 * it removes, and an unmatched refund would lower other keys' counts.
 */
void pvp_policy_rate_refund(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s);

#endif
