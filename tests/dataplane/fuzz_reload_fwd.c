/*
 * libFuzzer target: the in-place forward path (rl_fwd_ttl_decrement,
 * rl_fwd_append_via, rl_fwd_pop_dest) on arbitrary bytes, not only on
 * messages that decode, with fuzzed headroom, tailroom and via.  The packet
 * sits in a heap buffer of exactly its capacity so any write outside it is an
 * ASan report.  A refused edit must leave the packet as it was; an accepted
 * one must keep the length field and the list lengths consistent, and a
 * header that decoded before must still decode after.
 *
 * Input: headroom (1 byte), tailroom (1 byte), via type (1 byte), via id
 * length (1 byte), then the packet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* One edit: unchanged on error; consistent on success.  Returns the edit's result. */
static int edit(int which, rl_pkt_t *pkt, const rl_dest_t *via, uint8_t *saved)
{
	size_t off = pkt->off, len = pkt->len;
	bool decoded;
	rl_fwd_header_t before, after;
	int e;

	memcpy(saved, pkt->buf, pkt->cap);
	decoded = rl_fwd_header_decode(pkt->buf + pkt->off, pkt->len, &before) == 0 &&
	          before.length == pkt->len;
	switch (which) {
	case 0: e = rl_fwd_ttl_decrement(pkt); break;
	case 1: e = rl_fwd_append_via(pkt, via); break;
	default: e = rl_fwd_pop_dest(pkt); break;
	}
	CHECK(pkt->off <= pkt->cap && pkt->len <= pkt->cap - pkt->off);
	if (e) {
		CHECK(e < 0);
		CHECK(pkt->off == off && pkt->len == len);
		CHECK(memcmp(saved, pkt->buf, pkt->cap) == 0);
		return e;
	}
	if (which != 0)
		CHECK(get32(pkt->buf + pkt->off + 16) == pkt->len);
	if (which == 1)
		CHECK(get16(pkt->buf + pkt->off + 32) == get16(saved + off + 32) + (pkt->len - len));
	if (which == 2)
		CHECK(get16(pkt->buf + pkt->off + 34) == get16(saved + off + 34) - (len - pkt->len));
	if (decoded) {
		CHECK(rl_fwd_header_decode(pkt->buf + pkt->off, pkt->len, &after) == 0);
		CHECK(after.length == pkt->len);
		if (which == 0)
			CHECK(after.ttl == before.ttl - 1);
		if (which == 1)
			CHECK(after.via.raw_count == before.via.raw_count + 1);
		if (which == 2)
			CHECK(after.dest.raw_count == before.dest.raw_count - 1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t idbytes[300] = { 0x80, 1, 2, 3 };
	size_t head, tail, cap;
	uint8_t *buf, *saved;
	rl_dest_t via;
	rl_pkt_t pkt;

	if (size < 4)
		return 0;
	head = data[0];
	tail = data[1];
	via.type = (rl_dest_type_t)(data[2] & 3);
	if (data[2] & 4)
		via.type = RL_DEST_COMPRESSED;
	via.id.p = idbytes;
	via.id.len = data[3] + (data[2] & 8 ? 45u : 0u); /* up to 300: over the 254 limit too */
	data += 4;
	size -= 4;
	if (size > RL_MAX_MESSAGE_SIZE)
		return 0;
	cap = head + size + tail;
	buf = malloc(cap ? cap : 1);
	saved = malloc(cap ? cap : 1);
	if (!buf || !saved)
		abort();
	memset(buf, 0xa5, cap);
	if (size)
		memcpy(buf + head, data, size);
	pkt.buf = buf;
	pkt.cap = cap;
	pkt.off = head;
	pkt.len = size;

	edit(0, &pkt, &via, saved);
	edit(1, &pkt, &via, saved);
	edit(2, &pkt, &via, saved);
	edit(2, &pkt, &via, saved);
	edit(1, &pkt, &via, saved);
	free(saved);
	free(buf);
	return 0;
}
