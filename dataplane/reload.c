/*
 * dataplane/reload.c - RELOAD forwarding header, MessageContents,
 * SecurityBlock, whole messages, in-place forwarding edits and link framing.
 */
#include "dataplane/reload.h"

#include <string.h>

#include <openssl/sha.h>

#include "dataplane/reload_int.h"

/* Offsets of the fixed preamble fields that the forward path edits. */
enum {
	OFF_TTL = 11,
	OFF_LENGTH = 16,
	OFF_VIA_LEN = 32,
	OFF_DEST_LEN = 34,
	OFF_OPT_LEN = 36,
};

/* ---- lists and iterators ----------------------------------------------- */

int rl_list_decode(vp_rd_t *rd, unsigned lenbytes, rl_elem_dec_fn fn, const void *arg,
                   void *scratch, rl_raw_list_t *out)
{
	vp_rd_t sub;
	uint32_t count = 0;

	out->raw = NULL;
	out->len = 0;
	out->count = 0;
	if (vp_rd_vec(rd, lenbytes, &sub))
		return rd->err;
	out->raw = sub.pos;
	out->len = (uint32_t)vp_rd_left(&sub);
	while (!sub.err && sub.pos != sub.end) {
		int e = fn(&sub, arg, scratch);
		if (e)
			return vp_rd_fail(rd, e);
		count++;
	}
	if (sub.err)
		return vp_rd_fail(rd, sub.err);
	out->count = count;
	return 0;
}

void rl_iter_init(rl_iter_t *it, const uint8_t *raw, size_t raw_len, const void *items,
                  uint32_t n_items, size_t elem_size)
{
	vp_rd_init(&it->rd, raw, raw_len);
	it->items = items;
	it->n_items = items ? n_items : 0;
	it->idx = 0;
	it->elem_size = elem_size;
}

int rl_iter_next(rl_iter_t *it, rl_elem_dec_fn fn, const void *arg, void *out)
{
	if (it->rd.err)
		return it->rd.err;
	if (it->rd.pos != it->rd.end) {
		int e = fn(&it->rd, arg, out);
		if (e)
			return vp_rd_fail(&it->rd, e);
		return 1;
	}
	if (it->idx < it->n_items) {
		memcpy(out, it->items + (size_t)it->idx * it->elem_size, it->elem_size);
		it->idx++;
		return 1;
	}
	return 0;
}

static int dec_u8(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return vp_rd_u8(rd, out);
}

static int dec_u32(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return vp_rd_u32(rd, out);
}

static int dec_node(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return rl_rd_node_id(rd, out);
}

int rl_u8_next(rl_iter_t *it, uint8_t *out)
{
	return rl_iter_next(it, dec_u8, NULL, out);
}

int rl_u32_next(rl_iter_t *it, uint32_t *out)
{
	return rl_iter_next(it, dec_u32, NULL, out);
}

int rl_node_next(rl_iter_t *it, vp_id_t *out)
{
	return rl_iter_next(it, dec_node, NULL, out);
}

/* ---- destinations ------------------------------------------------------ */

int rl_dest_decode(vp_rd_t *rd, rl_dest_t *out)
{
	uint8_t type, len, inner;
	vp_rd_t sub;

	memset(out, 0, sizeof(*out));
	if (vp_rd_need(rd, 1))
		return rd->err;
	if (rd->pos[0] & 0x80) {
		/* Compressed: a bare 16-bit id, no type or length. */
		out->type = RL_DEST_COMPRESSED;
		out->id.len = 2;
		return vp_rd_bytes(rd, 2, &out->id.p);
	}
	vp_rd_u8(rd, &type);
	vp_rd_u8(rd, &len);
	if (vp_rd_sub(rd, len, &sub))
		return rd->err;
	switch (type) {
	case RL_DEST_NODE:
		if (len != RL_NODE_ID_LEN)
			return rl_fail(rd, VP_ERELOAD_DEST);
		out->type = RL_DEST_NODE;
		out->id.len = RL_NODE_ID_LEN;
		vp_rd_bytes(&sub, RL_NODE_ID_LEN, &out->id.p);
		break;
	case RL_DEST_RESOURCE:
	case RL_DEST_OPAQUE:
		/* The data is itself an opaque<0..255>: its length byte must fill the destination. */
		if (len < 1)
			return rl_fail(rd, VP_ERELOAD_DEST);
		vp_rd_u8(&sub, &inner);
		if (inner != len - 1)
			return rl_fail(rd, VP_ERELOAD_DEST);
		out->type = (rl_dest_type_t)type;
		out->id.len = inner;
		vp_rd_bytes(&sub, inner, &out->id.p);
		break;
	default:
		return rl_fail(rd, VP_ERELOAD_DEST);
	}
	return rl_sub_done(rd, &sub);
}

size_t rl_dest_wire_len(const rl_dest_t *d)
{
	switch (d->type) {
	case RL_DEST_COMPRESSED:
		return 2;
	case RL_DEST_NODE:
		return 2 + RL_NODE_ID_LEN;
	case RL_DEST_RESOURCE:
	case RL_DEST_OPAQUE:
		return 3 + (size_t)d->id.len;
	default:
		return 0;
	}
}

int rl_dest_encode(vp_wr_t *wr, const rl_dest_t *d)
{
	switch (d->type) {
	case RL_DEST_COMPRESSED:
		if (d->id.len != 2 || !(d->id.p[0] & 0x80))
			return vp_wr_fail(wr, VP_ERELOAD_DEST);
		return vp_wr_bytes(wr, d->id.p, 2);
	case RL_DEST_NODE:
		if (d->id.len != RL_NODE_ID_LEN)
			return vp_wr_fail(wr, VP_ERELOAD_DEST);
		vp_wr_u8(wr, RL_DEST_NODE);
		vp_wr_u8(wr, RL_NODE_ID_LEN);
		return vp_wr_bytes(wr, d->id.p, RL_NODE_ID_LEN);
	case RL_DEST_RESOURCE:
	case RL_DEST_OPAQUE:
		if (d->id.len > 254)
			return vp_wr_fail(wr, VP_ERELOAD_DEST);
		vp_wr_u8(wr, (uint8_t)d->type);
		vp_wr_u8(wr, (uint8_t)(d->id.len + 1));
		return rl_wr_opaque(wr, 1, &d->id);
	default:
		return vp_wr_fail(wr, VP_ERELOAD_DEST);
	}
}

static int dec_dest(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return rl_dest_decode(rd, out);
}

int rl_dest_next(rl_iter_t *it, rl_dest_t *out)
{
	return rl_iter_next(it, dec_dest, NULL, out);
}

int rl_dest_list_reversed(const rl_dest_list_t *l, rl_dest_t *out, size_t cap, size_t *n)
{
	rl_iter_t it;
	rl_dest_t d;
	size_t total = RL_LIST_COUNT(l), i = 0;
	int r;

	*n = 0;
	if (total > cap)
		return VP_ESPACE;
	RL_ITER_INIT(&it, l);
	while ((r = rl_dest_next(&it, &d)) == 1) {
		if (i == total)
			return VP_EINVAL; /* raw_count understates the raw bytes (hand-built list) */
		out[total - 1 - i++] = d;
	}
	if (r < 0)
		return r;
	if (i != total)
		return VP_EINVAL;
	*n = total;
	return 0;
}

/* ---- forwarding options ------------------------------------------------ */

static int dec_fwd_option(vp_rd_t *rd, const void *arg, void *out)
{
	rl_fwd_option_t *o = out;
	(void)arg;
	vp_rd_u8(rd, &o->type);
	vp_rd_u8(rd, &o->flags);
	rl_rd_opaque(rd, 2, &o->data);
	if (!rd->err && o->type == 0)
		return rl_fail(rd, VP_EBADTYPE);
	return rd->err;
}

static int enc_fwd_option(vp_wr_t *wr, const rl_fwd_option_t *o)
{
	if (o->type == 0)
		return vp_wr_fail(wr, VP_EBADTYPE);
	vp_wr_u8(wr, o->type);
	vp_wr_u8(wr, o->flags);
	return rl_wr_opaque(wr, 2, &o->data);
}

int rl_fwd_option_next(rl_iter_t *it, rl_fwd_option_t *out)
{
	return rl_iter_next(it, dec_fwd_option, NULL, out);
}

int rl_fwd_options_check(const rl_fwd_header_t *h, bool at_destination)
{
	rl_iter_t it;
	rl_fwd_option_t o;
	int r;
	uint8_t mask = RL_FWDOPT_FORWARD_CRITICAL |
	               (at_destination ? RL_FWDOPT_DESTINATION_CRITICAL : 0);

	RL_ITER_INIT(&it, &h->options);
	while ((r = rl_fwd_option_next(&it, &o)) == 1) {
		/* RFC 6940 defines no option, so every option is unknown here. */
		if (o.flags & mask)
			return VP_ERELOAD_OPTION;
	}
	return r;
}

/* ---- forwarding header ------------------------------------------------- */

int rl_fwd_header_decode(const uint8_t *p, size_t len, rl_fwd_header_t *h)
{
	vp_rd_t rd;
	uint32_t token;
	uint16_t via_len, dest_len, opt_len;
	rl_dest_t scratch_d;
	rl_fwd_option_t scratch_o;
	rl_raw_list_t r;

	/* Field by field: memset of the whole struct compiled to `rep stos`, whose start-up cost
	 * was ~40 % of this function's time (perf annotate, bench_codec).  Every field is zeroed. */
	h->overlay = 0;
	h->config_seq = 0;
	h->version = 0;
	h->ttl = 0;
	h->fragment = 0;
	h->length = 0;
	h->txid = 0;
	h->max_response_length = 0;
	h->via = (rl_dest_list_t){ 0 };
	h->dest = (rl_dest_list_t){ 0 };
	h->options = (rl_fwd_option_list_t){ 0 };
	h->hdr_len = 0;
	vp_rd_init(&rd, p, len);
	if (vp_rd_u32(&rd, &token))
		return rd.err;
	if (token != RL_TOKEN)
		return VP_EBADTOKEN;
	vp_rd_u32(&rd, &h->overlay);
	vp_rd_u16(&rd, &h->config_seq);
	vp_rd_u8(&rd, &h->version);
	vp_rd_u8(&rd, &h->ttl);
	vp_rd_u32(&rd, &h->fragment);
	vp_rd_u32(&rd, &h->length);
	vp_rd_u64(&rd, &h->txid);
	vp_rd_u32(&rd, &h->max_response_length);
	vp_rd_u16(&rd, &via_len);
	vp_rd_u16(&rd, &dest_len);
	vp_rd_u16(&rd, &opt_len);
	if (rd.err)
		return rd.err;
	if (h->version != RL_VERSION)
		return VP_EUNSUPPORTED;
	if (!(h->fragment & RL_FRAG_FLAG))
		return VP_EMALFORMED;
	if (h->length > RL_MAX_MESSAGE_SIZE)
		return VP_ETOOBIG;
	h->hdr_len = RL_HDR_FIXED_LEN + (uint32_t)via_len + dest_len + opt_len;
	if (h->length < h->hdr_len)
		return VP_EBADLEN;
	if (h->length > len)
		return VP_ETRUNC;

	/* Lists have 2-byte length fields in the preamble, not in front of the
	 * list, so decode them from sized sub-readers. */
	{
		vp_rd_t lists[3];
		uint16_t lens[3] = { via_len, dest_len, opt_len };
		for (int i = 0; i < 3; i++) {
			vp_rd_sub(&rd, lens[i], &lists[i]);
			if (rd.err)
				return rd.err;
		}
		for (int i = 0; i < 3; i++) {
			uint32_t count = 0;
			const uint8_t *start = lists[i].pos;
			while (!lists[i].err && lists[i].pos != lists[i].end) {
				int e = i < 2 ? rl_dest_decode(&lists[i], &scratch_d)
				              : dec_fwd_option(&lists[i], NULL, &scratch_o);
				if (e)
					return e;
				count++;
			}
			if (lists[i].err)
				return lists[i].err;
			r.raw = start;
			r.len = lens[i];
			r.count = count;
			if (i == 0)
				RL_SET_LIST(h->via, r);
			else if (i == 1)
				RL_SET_LIST(h->dest, r);
			else
				RL_SET_LIST(h->options, r);
		}
	}
	return 0;
}

/* Bytes of an encoded list: raw plus each item's wire size. */
static size_t dest_list_wire_len(const rl_dest_list_t *l)
{
	size_t n = l->raw_len;
	for (uint32_t i = 0; l->items && i < l->n_items; i++)
		n += rl_dest_wire_len(&l->items[i]);
	return n;
}

static size_t option_list_wire_len(const rl_fwd_option_list_t *l)
{
	size_t n = l->raw_len;
	for (uint32_t i = 0; l->items && i < l->n_items; i++)
		n += 4 + (size_t)l->items[i].data.len;
	return n;
}

size_t rl_fwd_header_wire_len(const rl_fwd_header_t *h)
{
	return RL_HDR_FIXED_LEN + dest_list_wire_len(&h->via) + dest_list_wire_len(&h->dest) +
	       option_list_wire_len(&h->options);
}

static int enc_list_body(vp_wr_t *wr, const rl_dest_list_t *l)
{
	vp_wr_bytes(wr, l->raw, l->raw_len);
	for (uint32_t i = 0; l->items && i < l->n_items && !wr->err; i++)
		rl_dest_encode(wr, &l->items[i]);
	return wr->err;
}

int rl_fwd_header_encode(vp_wr_t *wr, const rl_fwd_header_t *h, uint32_t total_len)
{
	size_t via = dest_list_wire_len(&h->via);
	size_t dest = dest_list_wire_len(&h->dest);
	size_t opt = option_list_wire_len(&h->options);

	if (via > 0xFFFF || dest > 0xFFFF || opt > 0xFFFF)
		return vp_wr_fail(wr, VP_ERANGE);
	vp_wr_u32(wr, RL_TOKEN);
	vp_wr_u32(wr, h->overlay);
	vp_wr_u16(wr, h->config_seq);
	vp_wr_u8(wr, h->version);
	vp_wr_u8(wr, h->ttl);
	vp_wr_u32(wr, h->fragment);
	vp_wr_u32(wr, total_len);
	vp_wr_u64(wr, h->txid);
	vp_wr_u32(wr, h->max_response_length);
	vp_wr_u16(wr, (uint16_t)via);
	vp_wr_u16(wr, (uint16_t)dest);
	vp_wr_u16(wr, (uint16_t)opt);
	enc_list_body(wr, &h->via);
	enc_list_body(wr, &h->dest);
	vp_wr_bytes(wr, h->options.raw, h->options.raw_len);
	for (uint32_t i = 0; h->options.items && i < h->options.n_items && !wr->err; i++)
		enc_fwd_option(wr, &h->options.items[i]);
	return wr->err;
}

/* ---- MessageContents --------------------------------------------------- */

static int dec_ext(vp_rd_t *rd, const void *arg, void *out)
{
	rl_ext_t *x = out;
	(void)arg;
	vp_rd_u16(rd, &x->type);
	rl_rd_bool(rd, &x->critical);
	rl_rd_opaque(rd, 4, &x->contents);
	/* MessageExtensionType 0 is reserved (RFC 6940 §6.3.3): no sender may use it. */
	if (!rd->err && x->type == 0)
		return rl_fail(rd, VP_EBADTYPE);
	return rd->err;
}

static int enc_ext(vp_wr_t *wr, const rl_ext_t *x)
{
	if (x->type == 0)
		return vp_wr_fail(wr, VP_EBADTYPE);
	vp_wr_u16(wr, x->type);
	vp_wr_u8(wr, x->critical ? 1 : 0);
	return rl_wr_opaque(wr, 4, &x->contents);
}

int rl_ext_next(rl_iter_t *it, rl_ext_t *out)
{
	return rl_iter_next(it, dec_ext, NULL, out);
}

int rl_contents_decode(vp_rd_t *rd, rl_contents_t *c)
{
	const uint8_t *start = rd->pos;
	rl_ext_t scratch;
	rl_raw_list_t r;

	memset(c, 0, sizeof(*c));
	vp_rd_u16(rd, &c->code);
	rl_rd_opaque(rd, 4, &c->body);
	rl_list_decode(rd, 4, dec_ext, NULL, &scratch, &r);
	if (rd->err)
		return rd->err;
	RL_SET_LIST(c->exts, r);
	c->raw.p = start;
	c->raw.len = (uint32_t)(rd->pos - start);
	return 0;
}

int rl_contents_encode(vp_wr_t *wr, const rl_contents_t *c)
{
	vp_wr_u16(wr, c->code);
	if (c->body_st) {
		size_t mark = vp_wr_vec_begin(wr, 4);
		if (c->body_st->code != c->code)
			return vp_wr_fail(wr, VP_EINVAL);
		rl_body_encode(wr, c->body_st);
		vp_wr_vec_end(wr, mark, 4);
	} else {
		rl_wr_opaque(wr, 4, &c->body);
	}
	RL_LIST_ENCODE(wr, 4, &c->exts, enc_ext);
	return wr->err;
}

int rl_contents_check_exts(const rl_contents_t *c)
{
	rl_iter_t it;
	rl_ext_t x;
	int r;

	RL_ITER_INIT(&it, &c->exts);
	while ((r = rl_ext_next(&it, &x)) == 1) {
		if (x.critical)
			return VP_ERELOAD_EXT;
	}
	return r;
}

/* ---- SecurityBlock ----------------------------------------------------- */

static int dec_cert(vp_rd_t *rd, const void *arg, void *out)
{
	rl_cert_t *c = out;
	(void)arg;
	vp_rd_u8(rd, &c->type);
	rl_rd_opaque(rd, 2, &c->der);
	if (!rd->err && c->type != RL_CERT_X509)
		return rl_fail(rd, VP_EBADTYPE);
	return rd->err;
}

static int enc_cert(vp_wr_t *wr, const rl_cert_t *c)
{
	vp_wr_u8(wr, c->type);
	return rl_wr_opaque(wr, 2, &c->der);
}

int rl_cert_next(rl_iter_t *it, rl_cert_t *out)
{
	return rl_iter_next(it, dec_cert, NULL, out);
}

int rl_signer_identity_decode(vp_rd_t *rd, rl_signer_identity_t *id)
{
	uint16_t len;
	vp_rd_t sub;

	memset(id, 0, sizeof(*id));
	vp_rd_u8(rd, &id->type);
	vp_rd_u16(rd, &len);
	if (vp_rd_sub(rd, len, &sub))
		return rd->err;
	switch (id->type) {
	case RL_SIGNER_CERT_HASH:
	case RL_SIGNER_CERT_HASH_NODE_ID:
		vp_rd_u8(&sub, &id->hash_alg);
		rl_rd_opaque(&sub, 1, &id->hash);
		break;
	case RL_SIGNER_NONE:
		break;
	default:
		return rl_fail(rd, VP_EBADTYPE);
	}
	return rl_sub_done(rd, &sub);
}

int rl_signer_identity_encode(vp_wr_t *wr, const rl_signer_identity_t *id)
{
	size_t mark;

	vp_wr_u8(wr, id->type);
	mark = vp_wr_vec_begin(wr, 2);
	switch (id->type) {
	case RL_SIGNER_CERT_HASH:
	case RL_SIGNER_CERT_HASH_NODE_ID:
		vp_wr_u8(wr, id->hash_alg);
		rl_wr_opaque(wr, 1, &id->hash);
		break;
	case RL_SIGNER_NONE:
		break;
	default:
		return vp_wr_fail(wr, VP_EBADTYPE);
	}
	return vp_wr_vec_end(wr, mark, 2);
}

int rl_signature_decode(vp_rd_t *rd, rl_signature_t *s)
{
	memset(s, 0, sizeof(*s));
	vp_rd_u8(rd, &s->hash_alg);
	vp_rd_u8(rd, &s->sig_alg);
	rl_signer_identity_decode(rd, &s->identity);
	return rl_rd_opaque(rd, 2, &s->value);
}

int rl_signature_encode(vp_wr_t *wr, const rl_signature_t *s)
{
	vp_wr_u8(wr, s->hash_alg);
	vp_wr_u8(wr, s->sig_alg);
	rl_signer_identity_encode(wr, &s->identity);
	return rl_wr_opaque(wr, 2, &s->value);
}

int rl_security_block_decode(vp_rd_t *rd, rl_security_block_t *sb)
{
	rl_cert_t scratch;
	rl_raw_list_t r;

	memset(sb, 0, sizeof(*sb));
	if (rl_list_decode(rd, 2, dec_cert, NULL, &scratch, &r))
		return rd->err;
	RL_SET_LIST(sb->certs, r);
	return rl_signature_decode(rd, &sb->sig);
}

int rl_security_block_encode(vp_wr_t *wr, const rl_security_block_t *sb)
{
	RL_LIST_ENCODE(wr, 2, &sb->certs, enc_cert);
	return rl_signature_encode(wr, &sb->sig);
}

/* ---- whole messages ---------------------------------------------------- */

int rl_msg_decode(const uint8_t *p, size_t len, rl_message_t *m)
{
	vp_rd_t rd;
	int e;

	memset(m, 0, sizeof(*m));
	if (len > RL_MAX_MESSAGE_SIZE)
		return VP_ETOOBIG;
	e = rl_fwd_header_decode(p, len, &m->hdr);
	if (e)
		return e;
	if (m->hdr.length != len)
		return VP_ETRAILING; /* the header's length is shorter than the input */
	if ((m->hdr.fragment & ~RL_FRAG_RESERVED) != RL_FRAG_UNFRAGMENTED)
		return VP_ERELOAD_FRAG;
	vp_rd_init(&rd, p + m->hdr.hdr_len, len - m->hdr.hdr_len);
	rl_contents_decode(&rd, &m->contents);
	rl_security_block_decode(&rd, &m->sec);
	return vp_rd_done(&rd);
}

static int msg_encode_head(vp_wr_t *wr, const rl_message_t *m, size_t *len_field_off)
{
	*len_field_off = vp_wr_len(wr) + OFF_LENGTH;
	return rl_fwd_header_encode(wr, &m->hdr, 0);
}

/* Patch the length field once the whole message is written. */
static int msg_encode_finish(vp_wr_t *wr, size_t start, size_t len_field_off)
{
	size_t total;
	uint8_t *p;

	if (wr->err)
		return wr->err;
	total = vp_wr_len(wr) - start;
	if (total > RL_MAX_MESSAGE_SIZE)
		return vp_wr_fail(wr, VP_ETOOBIG);
	p = wr->start + len_field_off;
	p[0] = (uint8_t)(total >> 24);
	p[1] = (uint8_t)(total >> 16);
	p[2] = (uint8_t)(total >> 8);
	p[3] = (uint8_t)total;
	return 0;
}

int rl_msg_encode(vp_wr_t *wr, const rl_message_t *m)
{
	size_t start = vp_wr_len(wr), lenoff;

	msg_encode_head(wr, m, &lenoff);
	rl_contents_encode(wr, &m->contents);
	rl_security_block_encode(wr, &m->sec);
	return msg_encode_finish(wr, start, lenoff);
}

int rl_msg_encode_signed(vp_wr_t *wr, rl_message_t *m, EVP_PKEY *key,
                         const rl_signer_identity_t *signer, uint8_t *sigbuf, size_t sigcap)
{
	size_t start = vp_wr_len(wr), lenoff, cstart;
	int e;

	msg_encode_head(wr, m, &lenoff);
	cstart = vp_wr_len(wr);
	rl_contents_encode(wr, &m->contents);
	if (wr->err)
		return wr->err;
	e = rl_msg_sign(key, m->hdr.overlay, m->hdr.txid, wr->start + cstart,
	                vp_wr_len(wr) - cstart, signer, sigbuf, sigcap, &m->sec.sig);
	if (e)
		return vp_wr_fail(wr, e);
	rl_security_block_encode(wr, &m->sec);
	return msg_encode_finish(wr, start, lenoff);
}

/* ---- forward path ------------------------------------------------------ */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The packet holds at least a preamble whose lists fit in it. */
static int pkt_check(const rl_pkt_t *pkt)
{
	const uint8_t *m;
	size_t lists;

	if (!pkt->buf || pkt->off > pkt->cap || pkt->len > pkt->cap - pkt->off ||
	    pkt->len < RL_HDR_FIXED_LEN)
		return VP_EINVAL;
	m = pkt->buf + pkt->off;
	if (get32(m) != RL_TOKEN)
		return VP_EBADTOKEN;
	lists = (size_t)get16(m + OFF_VIA_LEN) + get16(m + OFF_DEST_LEN) + get16(m + OFF_OPT_LEN);
	if (RL_HDR_FIXED_LEN + lists > pkt->len)
		return VP_ETRUNC;
	return 0;
}

int rl_fwd_ttl_decrement(rl_pkt_t *pkt)
{
	uint8_t *ttl;
	int e = pkt_check(pkt);

	if (e)
		return e;
	ttl = pkt->buf + pkt->off + OFF_TTL;
	if (*ttl == 0)
		return VP_ERELOAD_TTL;
	(*ttl)--;
	return 0;
}

int rl_fwd_append_via(rl_pkt_t *pkt, const rl_dest_t *via)
{
	uint8_t enc[3 + 254]; /* the largest destination on the wire */
	size_t n, front;
	uint8_t *m;
	uint16_t via_len;
	vp_wr_t wr;
	int e = pkt_check(pkt);

	if (e)
		return e;
	/* Encode first: a destination that cannot be written must leave the packet as it was. */
	vp_wr_init(&wr, enc, sizeof(enc));
	if (rl_dest_encode(&wr, via))
		return wr.err == VP_ESPACE ? VP_ERELOAD_DEST : wr.err;
	n = vp_wr_len(&wr);
	m = pkt->buf + pkt->off;
	via_len = get16(m + OFF_VIA_LEN);
	if (via_len + n > 0xFFFF || pkt->len + n > RL_MAX_MESSAGE_SIZE)
		return VP_ETOOBIG;
	front = RL_HDR_FIXED_LEN + via_len;
	if (pkt->off >= n) {
		/* Slide the short front (preamble + via list) into the headroom. */
		memmove(m - n, m, front);
		pkt->off -= n;
	} else if (pkt->cap - pkt->off - pkt->len >= n) {
		memmove(m + front + n, m + front, pkt->len - front);
	} else {
		return VP_ESPACE;
	}
	m = pkt->buf + pkt->off;
	memcpy(m + front, enc, n);
	pkt->len += n;
	put16(m + OFF_VIA_LEN, (uint16_t)(via_len + n));
	put32(m + OFF_LENGTH, (uint32_t)pkt->len);
	return 0;
}

int rl_fwd_pop_dest(rl_pkt_t *pkt)
{
	uint8_t *m;
	uint16_t via_len, dest_len;
	size_t front, k;
	vp_rd_t rd;
	rl_dest_t d;
	int e = pkt_check(pkt);

	if (e)
		return e;
	m = pkt->buf + pkt->off;
	via_len = get16(m + OFF_VIA_LEN);
	dest_len = get16(m + OFF_DEST_LEN);
	front = RL_HDR_FIXED_LEN + via_len;
	if (dest_len == 0)
		return VP_ERELOAD_DEST;
	vp_rd_init(&rd, m + front, dest_len);
	if (rl_dest_decode(&rd, &d))
		return rd.err;
	k = (size_t)(rd.pos - (m + front));
	memmove(m + k, m, front);
	pkt->off += k;
	pkt->len -= k;
	m = pkt->buf + pkt->off;
	put16(m + OFF_DEST_LEN, (uint16_t)(dest_len - k));
	put32(m + OFF_LENGTH, (uint32_t)pkt->len);
	return 0;
}

int rl_fwd_copy(vp_wr_t *wr, const uint8_t *in, size_t len, const rl_fwd_header_t *h,
                const rl_dest_t *via, bool pop_dest)
{
	rl_fwd_header_t out = *h;
	size_t start = vp_wr_len(wr), total;

	if (h->hdr_len > len || h->length != len)
		return vp_wr_fail(wr, VP_EINVAL);
	if (h->ttl == 0)
		return vp_wr_fail(wr, VP_ERELOAD_TTL);
	out.ttl = (uint8_t)(h->ttl - 1);
	out.via.items = via;
	out.via.n_items = via ? 1 : 0;
	if (pop_dest) {
		vp_rd_t rd;
		rl_dest_t d;
		if (h->dest.raw_count == 0)
			return vp_wr_fail(wr, VP_ERELOAD_DEST);
		vp_rd_init(&rd, h->dest.raw, h->dest.raw_len);
		if (rl_dest_decode(&rd, &d))
			return vp_wr_fail(wr, rd.err);
		out.dest.raw = rd.pos;
		out.dest.raw_len = (uint32_t)vp_rd_left(&rd);
		out.dest.raw_count--;
	}
	total = rl_fwd_header_wire_len(&out) + (len - h->hdr_len);
	if (total > RL_MAX_MESSAGE_SIZE)
		return vp_wr_fail(wr, VP_ETOOBIG);
	rl_fwd_header_encode(wr, &out, (uint32_t)total);
	vp_wr_bytes(wr, in + h->hdr_len, len - h->hdr_len);
	if (!wr->err && vp_wr_len(wr) - start != total)
		return vp_wr_fail(wr, VP_EINVAL);
	return wr->err;
}

/* ---- framing ----------------------------------------------------------- */

int rl_frame_peek(const uint8_t *p, size_t len, size_t *frame_len)
{
	uint32_t mlen;

	*frame_len = 0;
	if (len < 1)
		return VP_EAGAIN;
	switch (p[0]) {
	case RL_FRAME_DATA:
		if (len < RL_FRAME_DATA_HDR_LEN)
			return VP_EAGAIN;
		mlen = (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
		if (mlen > RL_MAX_MESSAGE_SIZE)
			return VP_ETOOBIG;
		*frame_len = RL_FRAME_DATA_HDR_LEN + (size_t)mlen;
		return 0;
	case RL_FRAME_ACK:
		*frame_len = RL_FRAME_ACK_LEN;
		return 0;
	default:
		return VP_EBADTYPE;
	}
}

int rl_frame_decode(const uint8_t *p, size_t len, rl_frame_t *f)
{
	vp_rd_t rd;

	memset(f, 0, sizeof(*f));
	vp_rd_init(&rd, p, len);
	vp_rd_u8(&rd, &f->type);
	switch (f->type) {
	case RL_FRAME_DATA:
		vp_rd_u32(&rd, &f->sequence);
		rl_rd_opaque(&rd, 3, &f->message);
		break;
	case RL_FRAME_ACK:
		vp_rd_u32(&rd, &f->sequence);
		vp_rd_u32(&rd, &f->received);
		break;
	default:
		if (!rd.err)
			return VP_EBADTYPE;
		break;
	}
	return vp_rd_done(&rd);
}

int rl_frame_encode(vp_wr_t *wr, const rl_frame_t *f)
{
	switch (f->type) {
	case RL_FRAME_DATA:
		return rl_frame_encode_data(wr, f->sequence, f->message.p, f->message.len);
	case RL_FRAME_ACK:
		return rl_frame_encode_ack(wr, f->sequence, f->received);
	default:
		return vp_wr_fail(wr, VP_EBADTYPE);
	}
}

int rl_frame_encode_data(vp_wr_t *wr, uint32_t sequence, const uint8_t *msg, size_t len)
{
	vp_wr_u8(wr, RL_FRAME_DATA);
	vp_wr_u32(wr, sequence);
	return vp_wr_vec_bytes(wr, 3, msg, len);
}

int rl_frame_encode_ack(vp_wr_t *wr, uint32_t ack_sequence, uint32_t received)
{
	vp_wr_u8(wr, RL_FRAME_ACK);
	vp_wr_u32(wr, ack_sequence);
	return vp_wr_u32(wr, received);
}

/* ---- names and ids ----------------------------------------------------- */

uint32_t rl_overlay_id(const char *name, size_t len)
{
	uint8_t md[SHA_DIGEST_LENGTH];

	SHA1((const unsigned char *)name, len, md);
	return get32(md + SHA_DIGEST_LENGTH - 4);
}

const char *rl_msg_code_name(uint16_t code)
{
	switch (code) {
	case RL_PROBE_REQ: return "probe_req";
	case RL_PROBE_ANS: return "probe_ans";
	case RL_ATTACH_REQ: return "attach_req";
	case RL_ATTACH_ANS: return "attach_ans";
	case RL_STORE_REQ: return "store_req";
	case RL_STORE_ANS: return "store_ans";
	case RL_FETCH_REQ: return "fetch_req";
	case RL_FETCH_ANS: return "fetch_ans";
	case RL_FIND_REQ: return "find_req";
	case RL_FIND_ANS: return "find_ans";
	case RL_JOIN_REQ: return "join_req";
	case RL_JOIN_ANS: return "join_ans";
	case RL_LEAVE_REQ: return "leave_req";
	case RL_LEAVE_ANS: return "leave_ans";
	case RL_UPDATE_REQ: return "update_req";
	case RL_UPDATE_ANS: return "update_ans";
	case RL_ROUTE_QUERY_REQ: return "route_query_req";
	case RL_ROUTE_QUERY_ANS: return "route_query_ans";
	case RL_PING_REQ: return "ping_req";
	case RL_PING_ANS: return "ping_ans";
	case RL_STAT_REQ: return "stat_req";
	case RL_STAT_ANS: return "stat_ans";
	case RL_APP_ATTACH_REQ: return "app_attach_req";
	case RL_APP_ATTACH_ANS: return "app_attach_ans";
	case RL_CONFIG_UPDATE_REQ: return "config_update_req";
	case RL_CONFIG_UPDATE_ANS: return "config_update_ans";
	case RL_ERROR: return "error";
	default: return "unknown";
	}
}

const char *rl_error_code_name(uint16_t code)
{
	switch (code) {
	case RL_ERR_FORBIDDEN: return "Error_Forbidden";
	case RL_ERR_NOT_FOUND: return "Error_Not_Found";
	case RL_ERR_REQUEST_TIMEOUT: return "Error_Request_Timeout";
	case RL_ERR_GENERATION_COUNTER_TOO_LOW: return "Error_Generation_Counter_Too_Low";
	case RL_ERR_INCOMPATIBLE_WITH_OVERLAY: return "Error_Incompatible_with_Overlay";
	case RL_ERR_UNSUPPORTED_FORWARDING_OPTION: return "Error_Unsupported_Forwarding_Option";
	case RL_ERR_DATA_TOO_LARGE: return "Error_Data_Too_Large";
	case RL_ERR_DATA_TOO_OLD: return "Error_Data_Too_Old";
	case RL_ERR_TTL_EXCEEDED: return "Error_TTL_Exceeded";
	case RL_ERR_MESSAGE_TOO_LARGE: return "Error_Message_Too_Large";
	case RL_ERR_UNKNOWN_KIND: return "Error_Unknown_Kind";
	case RL_ERR_UNKNOWN_EXTENSION: return "Error_Unknown_Extension";
	case RL_ERR_RESPONSE_TOO_LARGE: return "Error_Response_Too_Large";
	case RL_ERR_CONFIG_TOO_OLD: return "Error_Config_Too_Old";
	case RL_ERR_CONFIG_TOO_NEW: return "Error_Config_Too_New";
	case RL_ERR_IN_PROGRESS: return "Error_In_Progress";
	case RL_ERR_EXP_A: return "Error_Exp_A";
	case RL_ERR_EXP_B: return "Error_Exp_B";
	case RL_ERR_INVALID_MESSAGE: return "Error_Invalid_Message";
	default: return "unknown";
	}
}
