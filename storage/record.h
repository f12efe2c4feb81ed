/*
 * storage/record.h - the on-disk record of one (Resource-ID, Kind-ID): the
 * generation counter and every entry of the kind at that resource.  Internal
 * to storage/ (and its tests and fuzz target); the layout is:
 *
 *   uint8 format (1) ‖ uint8 model ‖ uint64 generation ‖ uint32 count ‖ entry[count]
 *   entry = uint8 flags (bit0 exists) ‖ uint8 replica_number ‖ uint64 storage_time ‖
 *           uint32 lifetime ‖ uint64 expires_ms ‖ NodeId owner (16) ‖
 *           opaque key<0..2^16-1> (single: empty; array: uint32 index; dictionary: key) ‖
 *           opaque value<0..2^32-1> ‖ opaque signature<0..2^32-1>
 *
 * Entries are sorted by model key (array index, or dictionary key bytes with
 * the shorter key first on a common prefix); the decoder rejects anything else,
 * so a corrupt record is reported instead of being half-used.
 */
#ifndef VP_STORAGE_RECORD_H
#define VP_STORAGE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"

#define ST_REC_FORMAT 1
#define ST_REC_HDR_LEN 14          /* format, model, generation, count */
#define ST_REC_ENTRY_FIXED 48      /* entry bytes besides key, value, signature bodies */

typedef struct st_rec {
	uint8_t model;
	uint64_t generation;
	st_entry_t *e;   /* entries (views into the decoded buffer), grown by the decoder */
	size_t n, cap;
} st_rec_t;

/*! \brief Free the entry array (not what the entries point to). */
void st_rec_free(st_rec_t *rec);

/*! \brief Make room for \p n entries; VP_ENOMEM. */
int st_rec_reserve(st_rec_t *rec, size_t n);

/*!
 * \brief Decode \p buf into \p rec (entries point into buf).  VP_ETRUNC,
 * VP_ETRAILING, VP_EMALFORMED (unknown format or model, bad key length for
 * the model, unsorted or duplicate keys), VP_ENOMEM.
 */
int st_rec_decode(const uint8_t *buf, size_t len, st_rec_t *rec);

/*! \brief Encoded size of \p rec. */
size_t st_rec_size(const st_rec_t *rec);

/*! \brief Encode \p rec into \p out (capacity \p cap); *len = bytes written. VP_ESPACE. */
int st_rec_encode(const st_rec_t *rec, uint8_t *out, size_t cap, size_t *len);

/*! \brief Order of two entries of \p model by model key (<0, 0, >0). */
int st_rec_keycmp(uint8_t model, const st_entry_t *a, const st_entry_t *b);

/*! \brief Earliest expires_ms of the record's entries (UINT64_MAX if none). */
uint64_t st_rec_min_expiry(const st_rec_t *rec);

#endif
