/*
 * control/chord_table.h - a virtual node's Chord-RELOAD routing table.
 *
 * A table is an immutable snapshot: predecessors, successors and fingers of one
 * vnode, plus every distinct entry sorted by clockwise distance from the vnode
 * so that next-hop selection is one binary search.  The topology engine builds
 * a fresh table from its live peers whenever its view changes and publishes it
 * through a chord_rt_t with liburcu (QSBR): shard threads read it lock-free, the
 * old snapshot is freed after a grace period.  Nothing here allocates on the
 * lookup path.
 *
 * Rules (RFC 6940 §10, PROTOCOL-FACTS §3): a vnode is responsible for
 * (predecessor, self] (everything when it knows no predecessor); a message is
 * delivered locally, or sent straight to a neighbour responsible for the
 * destination, or else to the entry that most closely precedes it.  Data is
 * replicated on the 2 immediate successors (replica_number 1 and 2).
 */
#ifndef VP_CONTROL_CHORD_TABLE_H
#define VP_CONTROL_CHORD_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu-qsbr.h>

#include "common/id.h"

/* Upper bounds of the configurable sizes (RFC 6940 asks for at least 3 of each). */
#define CHORD_MAX_NEIGH 8
/* A finger slot per bit of the ring; only the top num_fingers slots are kept. */
#define CHORD_MAX_FINGERS 128
#define CHORD_MAX_ROUTE (2 * CHORD_MAX_NEIGH + CHORD_MAX_FINGERS)
/* Replicas per resource besides the responsible peer (RFC 6940 §10.7: 2). */
#define CHORD_REPLICAS 2

/* Sizes of one table; see chord_table_params_default(). */
typedef struct chord_table_params {
	uint32_t num_pred;    /*!< predecessors kept, 1..CHORD_MAX_NEIGH (default 3) */
	uint32_t num_succ;    /*!< successors kept, CHORD_REPLICAS..CHORD_MAX_NEIGH (default 3) */
	uint32_t num_fingers; /*!< finger slots self+2^i for i = 128-num_fingers..127, 16..128 (default 32) */
} chord_table_params_t;

typedef struct chord_table {
	struct rcu_head rcu;  /*!< for call_rcu; not part of the table's value */
	vp_id_t self;
	uint64_t version;     /*!< incremented by the engine on every publish */
	uint32_t npred, nsucc, nroute;
	uint32_t finger_lo;   /*!< first finger slot index (128 - num_fingers) */
	uint32_t nfinger;     /*!< number of filled finger slots */
	uint32_t nfinger_distinct; /*!< distinct ids among the filled finger slots */
	uint8_t whole_ring;   /*!< fewer peers known than num_pred: the table holds the whole ring */
	vp_id_t pred[CHORD_MAX_NEIGH]; /*!< pred[0] is the immediate predecessor */
	vp_id_t succ[CHORD_MAX_NEIGH]; /*!< succ[0] is the immediate successor */
	/*! finger[i - finger_lo] = first peer at or after self+2^i; valid if finger_ok */
	vp_id_t finger[CHORD_MAX_FINGERS];
	uint8_t finger_ok[CHORD_MAX_FINGERS];
	/*! every distinct peer of the table, by increasing clockwise distance from self */
	vp_id_t route[CHORD_MAX_ROUTE];
	uint32_t checksum;    /*!< chord_table_checksum() of the above, for torn-read checks */
} chord_table_t;

typedef enum chord_hop {
	CHORD_HOP_LOCAL = 0,   /*!< this vnode is responsible: deliver here */
	CHORD_HOP_DIRECT = 1,  /*!< *next is a neighbour responsible for (or equal to) the destination */
	CHORD_HOP_FORWARD = 2, /*!< *next is the closest preceding entry */
} chord_hop_t;

/*! \brief RFC-conform defaults: 3 predecessors, 3 successors, 32 finger slots. */
chord_table_params_t chord_table_params_default(void);

/*! \brief VP_ECONFIG if a size is out of its range. */
int chord_table_params_check(const chord_table_params_t *p);

/*!
 * \brief Build the table of \p self from the live peers \p peers[0..n) (any order,
 * duplicates and self ignored) into \p out.  Predecessors and successors are the
 * peers closest before and after self; finger slot i holds the first peer at or
 * after self+2^i.  Returns 0 or VP_ECONFIG.
 */
int chord_table_build(chord_table_t *out, const chord_table_params_t *p,
                      const vp_id_t *self, const vp_id_t *peers, size_t n);

/*! \brief Is \p id in (pred[0], self]?  True for every id when no predecessor is known. */
bool chord_table_responsible(const chord_table_t *t, const vp_id_t *id);

/*!
 * \brief Next hop towards \p dest.  CHORD_HOP_LOCAL when this vnode is responsible
 * (\p next = self); otherwise \p next is the neighbour responsible for dest if the
 * neighbour sets cover it, or the table entry that most closely precedes dest.
 * VP_ENOROUTE only if the table is empty and another vnode would be responsible
 * (never happens: an empty table is responsible for everything).
 */
int chord_table_next_hop(const chord_table_t *t, const vp_id_t *dest, vp_id_t *next);

/*! \brief Fraction of the ring this vnode is responsible for, in ppb (Probe responsible_set). */
uint32_t chord_table_fraction_ppb(const chord_table_t *t);

/*!
 * \brief Peers holding the replicas of the data this vnode is responsible for:
 * succ[0] gets replica_number 1, succ[1] replica_number 2.  Writes up to \p max
 * ids into \p out and returns the count (fewer on a ring of < 3 vnodes).
 */
size_t chord_table_replicas(const chord_table_t *t, vp_id_t *out, size_t max);

/*!
 * \brief Role of this vnode for resource \p id: 0 responsible, 1 or 2 the
 * replica_number it should hold it under (id in (pred[1], pred[0]] or
 * (pred[2], pred[1]]), -1 if it should hold nothing.
 */
int chord_table_replica_rank(const chord_table_t *t, const vp_id_t *id);

/*! \brief Is \p id one of the table's peers (neighbour or finger)? */
bool chord_table_contains(const chord_table_t *t, const vp_id_t *id);

/*! \brief Hash over every field but rcu and checksum, arrays up to their counts (FNV-1a on words); build sets t->checksum. */
uint32_t chord_table_checksum(const chord_table_t *t);

/* ---- RCU publication ------------------------------------------------- */

/* Holder of a vnode's current table.  Readers: any QSBR-registered thread. */
typedef struct chord_rt {
	chord_table_t *cur;
} chord_rt_t;

/*! \brief Start with \p initial (owned by the holder from now on; may be NULL). */
void chord_rt_init(chord_rt_t *rt, chord_table_t *initial);

/*!
 * \brief The current snapshot, or NULL.  The caller must be a registered QSBR
 * thread; the snapshot stays valid until the caller's next quiescent state.
 */
static inline const chord_table_t *chord_rt_read(chord_rt_t *rt)
{
	return rcu_dereference(rt->cur);
}

/*!
 * \brief Publish \p t (malloc'ed, now owned by the holder); the previous snapshot
 * is freed by call_rcu after a grace period.  Single writer per holder.
 */
void chord_rt_publish(chord_rt_t *rt, chord_table_t *t);

/*!
 * \brief Free the current snapshot after a grace period (synchronize_rcu).  Call
 * rcu_barrier() (from an offline thread) before exit to run pending frees.
 */
void chord_rt_destroy(chord_rt_t *rt);

#endif
