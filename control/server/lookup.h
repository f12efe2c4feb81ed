/*
 * control/server/lookup.h - the 3-copy majority lookup of a number's
 * claimants (seed 001 §B.4; docs/protocol.md §2.7).
 *
 * A reader of the overlay does not trust the node responsible for a number:
 * it fetches the VIPR-REGISTRATION entries from that node and from its two
 * replicas (the responsible node's successors) and keeps what a majority of
 * the copies holds.  One rogue or damaged node can then neither hide a
 * claimant (drop an entry) nor add one (forge an entry): it is outvoted, and
 * the disagreement is reported as an incident for the operator.
 *
 * The vote works on the entries' bytes exactly as they were fetched (the
 * storage/vipr_kind.h key and value), so the simulator, the in-process DHT and
 * the daemon's RELOAD Fetch all feed it the same way.  No state, no I/O.
 */
#ifndef VP_CONTROL_SERVER_LOOKUP_H
#define VP_CONTROL_SERVER_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/server/vipr_server.h"

#define VSRV_COPIES 3           /* the responsible node and its 2 replicas */
#define VSRV_INCIDENT_MAX 200   /* one incident line, NUL included */

/*! One dictionary entry as one copy returned it (views into the fetched bytes). */
typedef struct vsrv_entry {
	const uint8_t *key;     /*!< st_vipr key: claimant Node-ID || VService id */
	size_t key_len;
	const uint8_t *value;   /*!< st_vipr value (NULL/0 when deleted) */
	size_t value_len;
	bool exists;            /*!< false: the entry was deleted (a withdrawal) */
} vsrv_entry_t;

/*! What one copy answered. */
typedef struct vsrv_copy {
	bool answered;              /*!< false: the fetch of this copy failed (its entries are ignored) */
	const vsrv_entry_t *entries;
	size_t n;
} vsrv_copy_t;

/*! The outcome of one vote. */
typedef struct vsrv_vote {
	unsigned answered;          /*!< copies that answered (0..VSRV_COPIES) */
	unsigned outvoted;          /*!< distinct entries dropped for lack of a majority */
	unsigned malformed;         /*!< entries a majority held that do not decode as registrations */
	unsigned overflow;          /*!< registrations kept but beyond \p max */
	char incident[VSRV_INCIDENT_MAX]; /*!< "" when every copy answered and all agreed */
} vsrv_vote_t;

/*!
 * \brief Vote over the VSRV_COPIES copies of one number's resource.
 *
 * An entry (key, exists, value bytes) is kept when at least 2 copies that
 * answered hold exactly it, or when only one copy answered at all (nothing to
 * compare against: the incident says so).  With two copies answering and
 * disagreeing there is no majority for either version: neither is kept.  A copy
 * votes once for an entry however often it lists it.  Should a rogue copy list
 * two versions of one key that each find a second copy (the honest copies
 * themselves differing, e.g. a replica that missed a refresh), both are kept:
 * hiding a claimant would be worse than validating one twice, and PVP decides
 * who owns the number.  Kept
 * entries that exist and decode (key and value consistent: same VService id)
 * go into \p out (at most \p max; the rest are counted in overflow); kept
 * deletions are withdrawals and give nothing.  *n gets the count.
 *
 * Returns 0, or VP_ETIMEOUT when no copy answered (the lookup failed: *n = 0),
 * or VP_EINVAL for NULL arguments.  \p vote (may be NULL) gets the details and
 * the incident line.
 */
int vsrv_lookup_vote(const vsrv_copy_t copies[VSRV_COPIES], vsrv_reg_t *out, size_t max, size_t *n,
                     vsrv_vote_t *vote);

/*!
 * \brief Copies asked at once: how many lead copies stand as asking one after the other would have got them.
 *
 * Copy 0 is asked at the Resource-ID; copy k (k >= 1) at a guessed Node-ID + 1 (docs/protocol.md §4.9: the
 * replica rule), \p dest[k].  Copy k stands when copy k-1 stands, answered, and \p dest[k] is its
 * responder + 1: the overlay then routed copy k to that responder's successor exactly as a copy asked after
 * copy k-1's answer would have been.  Returns 1..\p n (the copies from there on are to be asked again, one
 * after the other); *\p missed (may be NULL) is set when the first copy that does not stand was asked at a
 * wrong guess (copy k-1 answered, by another peer than the one guessed).
 */
unsigned vsrv_copies_standing(const bool *answered, const vp_id_t *responder, const vp_id_t *dest, unsigned n,
                              bool *missed);

#endif
