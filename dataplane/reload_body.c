/*
 * dataplane/reload_body.c - RELOAD message bodies (RFC 6940 §6.4-§7.4, Chord
 * §10), StoredData for the three data models, specifiers and metadata.
 */
#include "dataplane/reload.h"

#include <string.h>

#include "dataplane/reload_int.h"

/* A model resolver and its context, passed to element decoders as `arg`. */
typedef struct model_res {
	rl_model_fn fn;
	void *ctx;
} model_res_t;

static rl_data_model_t resolve(const model_res_t *mr, uint32_t kind)
{
	int m;
	if (!mr || !mr->fn)
		return RL_MODEL_UNKNOWN;
	m = mr->fn(mr->ctx, kind);
	if (m < RL_MODEL_SINGLE || m > RL_MODEL_DICTIONARY)
		return RL_MODEL_UNKNOWN;
	return (rl_data_model_t)m;
}

int rl_model_builtin(void *ctx, uint32_t kind)
{
	(void)ctx;
	switch (kind) {
	case RL_KIND_SIP_REGISTRATION:
	case RL_KIND_VIPR_REGISTRATION:
		return RL_MODEL_DICTIONARY;
	case RL_KIND_TURN_SERVICE:
		return RL_MODEL_SINGLE;
	case RL_KIND_CERTIFICATE_BY_NODE:
	case RL_KIND_CERTIFICATE_BY_USER:
		return RL_MODEL_ARRAY;
	default:
		return VP_EUNKNOWN_KIND;
	}
}

/* NodeId vectors: a whole number of 16-byte ids. */
static int rd_node_list(vp_rd_t *rd, rl_node_list_t *l)
{
	const uint8_t *p;
	size_t n;

	memset(l, 0, sizeof(*l));
	if (vp_rd_vec_bytes(rd, 2, &p, &n))
		return rd->err;
	if (n % RL_NODE_ID_LEN)
		return vp_rd_fail(rd, VP_EBADLEN);
	l->raw = p;
	l->raw_len = (uint32_t)n;
	l->raw_count = (uint32_t)(n / RL_NODE_ID_LEN);
	return 0;
}

static int wr_node_list(vp_wr_t *wr, const rl_node_list_t *l)
{
	size_t mark = vp_wr_vec_begin(wr, 2);
	vp_wr_bytes(wr, l->raw, l->raw_len);
	for (uint32_t i = 0; l->items && i < l->n_items; i++)
		vp_wr_bytes(wr, l->items[i].b, RL_NODE_ID_LEN);
	return vp_wr_vec_end(wr, mark, 2);
}

/* Fixed-size element vectors (uint8 / uint32 / ArrayRange). */
static int rd_fixed_list(vp_rd_t *rd, unsigned lenbytes, size_t elem, rl_raw_list_t *r)
{
	const uint8_t *p;
	size_t n;

	memset(r, 0, sizeof(*r));
	if (vp_rd_vec_bytes(rd, lenbytes, &p, &n))
		return rd->err;
	if (n % elem)
		return vp_rd_fail(rd, VP_EBADLEN);
	r->raw = p;
	r->len = (uint32_t)n;
	r->count = (uint32_t)(n / elem);
	return 0;
}

static int enc_u8(vp_wr_t *wr, const uint8_t *v)
{
	return vp_wr_u8(wr, *v);
}

static int enc_u32(vp_wr_t *wr, const uint32_t *v)
{
	return vp_wr_u32(wr, *v);
}

/* ---- StoredData -------------------------------------------------------- */

/* DataValue / ArrayEntry / DictionaryEntry per model. */
static int rd_data_value(vp_rd_t *rd, rl_stored_data_t *sd)
{
	switch (sd->model) {
	case RL_MODEL_ARRAY:
		vp_rd_u32(rd, &sd->index);
		break;
	case RL_MODEL_DICTIONARY:
		rl_rd_opaque(rd, 2, &sd->key);
		break;
	case RL_MODEL_SINGLE:
		break;
	default:
		return vp_rd_fail(rd, VP_EINVAL);
	}
	rl_rd_bool(rd, &sd->exists);
	return rl_rd_opaque(rd, 4, &sd->value);
}

int rl_stored_data_value_encode(vp_wr_t *wr, const rl_stored_data_t *sd)
{
	switch (sd->model) {
	case RL_MODEL_UNKNOWN:
		return vp_wr_fail(wr, VP_EINVAL);
	case RL_MODEL_ARRAY:
		vp_wr_u32(wr, sd->index);
		break;
	case RL_MODEL_DICTIONARY:
		rl_wr_opaque(wr, 2, &sd->key);
		break;
	case RL_MODEL_SINGLE:
		break;
	default:
		return vp_wr_fail(wr, VP_EINVAL);
	}
	vp_wr_u8(wr, sd->exists ? 1 : 0);
	return rl_wr_opaque(wr, 4, &sd->value);
}

int rl_stored_data_decode(vp_rd_t *rd, rl_data_model_t model, rl_stored_data_t *sd)
{
	uint32_t len;
	vp_rd_t sub;
	const uint8_t *vstart;

	memset(sd, 0, sizeof(*sd));
	sd->model = model;
	vp_rd_u32(rd, &len);
	if (vp_rd_sub(rd, len, &sub))
		return rd->err;
	vp_rd_u64(&sub, &sd->storage_time);
	vp_rd_u32(&sub, &sd->lifetime);
	vstart = sub.pos;
	if (model == RL_MODEL_UNKNOWN) {
		/* Framing only: value and signature stay raw. */
		size_t n = vp_rd_left(&sub);
		vp_rd_bytes(&sub, n, &sd->raw_value.p);
		sd->raw_value.len = sub.err ? 0 : (uint32_t)n;
		return rl_sub_done(rd, &sub);
	}
	rd_data_value(&sub, sd);
	if (!sub.err) {
		sd->raw_value.p = vstart;
		sd->raw_value.len = (uint32_t)(sub.pos - vstart);
	}
	rl_signature_decode(&sub, &sd->sig);
	return rl_sub_done(rd, &sub);
}

int rl_stored_data_encode(vp_wr_t *wr, const rl_stored_data_t *sd)
{
	size_t mark = vp_wr_vec_begin(wr, 4);

	vp_wr_u64(wr, sd->storage_time);
	vp_wr_u32(wr, sd->lifetime);
	if (sd->model == RL_MODEL_UNKNOWN) {
		vp_wr_bytes(wr, sd->raw_value.p, sd->raw_value.len);
	} else {
		rl_stored_data_value_encode(wr, sd);
		rl_signature_encode(wr, &sd->sig);
	}
	return vp_wr_vec_end(wr, mark, 4);
}

static int dec_stored_data(vp_rd_t *rd, const void *arg, void *out)
{
	return rl_stored_data_decode(rd, *(const rl_data_model_t *)arg, out);
}

int rl_stored_data_next(rl_iter_t *it, rl_data_model_t model, rl_stored_data_t *out)
{
	return rl_iter_next(it, dec_stored_data, &model, out);
}

/* ---- StoredDataSpecifier ----------------------------------------------- */

static int dec_array_range(vp_rd_t *rd, const void *arg, void *out)
{
	rl_array_range_t *r = out;
	(void)arg;
	vp_rd_u32(rd, &r->first);
	return vp_rd_u32(rd, &r->last);
}

static int enc_array_range(vp_wr_t *wr, const rl_array_range_t *r)
{
	vp_wr_u32(wr, r->first);
	return vp_wr_u32(wr, r->last);
}

int rl_array_range_next(rl_iter_t *it, rl_array_range_t *out)
{
	return rl_iter_next(it, dec_array_range, NULL, out);
}

static int dec_bytes16(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return rl_rd_opaque(rd, 2, out);
}

static int enc_bytes16(vp_wr_t *wr, const rl_bytes_t *b)
{
	return rl_wr_opaque(wr, 2, b);
}

int rl_bytes16_next(rl_iter_t *it, rl_bytes_t *out)
{
	return rl_iter_next(it, dec_bytes16, NULL, out);
}

int rl_specifier_decode(vp_rd_t *rd, rl_model_fn fn, void *ctx, rl_specifier_t *s)
{
	vp_rd_t sub;
	rl_raw_list_t r;
	rl_bytes_t scratch;
	model_res_t mr = { fn, ctx };

	memset(s, 0, sizeof(*s));
	vp_rd_u32(rd, &s->kind);
	vp_rd_u64(rd, &s->generation);
	if (rl_rd_opaque(rd, 2, &s->raw))
		return rd->err;
	s->model = resolve(&mr, s->kind);
	vp_rd_init(&sub, s->raw.p, s->raw.len);
	switch (s->model) {
	case RL_MODEL_SINGLE:
		break;
	case RL_MODEL_ARRAY:
		if (rd_fixed_list(&sub, 2, sizeof(uint32_t) * 2, &r) == 0)
			RL_SET_LIST(s->indices, r);
		break;
	case RL_MODEL_DICTIONARY:
		if (rl_list_decode(&sub, 2, dec_bytes16, NULL, &scratch, &r) == 0)
			RL_SET_LIST(s->keys, r);
		break;
	default:
		return 0; /* model unknown: the selector stays raw */
	}
	return rl_sub_done(rd, &sub);
}

int rl_specifier_encode(vp_wr_t *wr, const rl_specifier_t *s)
{
	size_t mark;

	vp_wr_u32(wr, s->kind);
	vp_wr_u64(wr, s->generation);
	mark = vp_wr_vec_begin(wr, 2);
	switch (s->model) {
	case RL_MODEL_UNKNOWN:
		vp_wr_bytes(wr, s->raw.p, s->raw.len);
		break;
	case RL_MODEL_SINGLE:
		break;
	case RL_MODEL_ARRAY:
		RL_LIST_ENCODE(wr, 2, &s->indices, enc_array_range);
		break;
	case RL_MODEL_DICTIONARY:
		RL_LIST_ENCODE(wr, 2, &s->keys, enc_bytes16);
		break;
	default:
		return vp_wr_fail(wr, VP_EINVAL);
	}
	return vp_wr_vec_end(wr, mark, 2);
}

static int dec_specifier(vp_rd_t *rd, const void *arg, void *out)
{
	const model_res_t *mr = arg;
	return rl_specifier_decode(rd, mr ? mr->fn : NULL, mr ? mr->ctx : NULL, out);
}

int rl_specifier_next(rl_iter_t *it, rl_model_fn fn, void *ctx, rl_specifier_t *out)
{
	model_res_t mr = { fn, ctx };
	return rl_iter_next(it, dec_specifier, &mr, out);
}

/* ---- StoredMetaData ---------------------------------------------------- */

int rl_stored_meta_decode(vp_rd_t *rd, rl_data_model_t model, rl_stored_meta_t *m)
{
	uint32_t len;
	vp_rd_t sub;
	const uint8_t *vstart;

	memset(m, 0, sizeof(*m));
	m->model = model;
	vp_rd_u32(rd, &len);
	if (vp_rd_sub(rd, len, &sub))
		return rd->err;
	vp_rd_u64(&sub, &m->storage_time);
	vp_rd_u32(&sub, &m->lifetime);
	vstart = sub.pos;
	switch (model) {
	case RL_MODEL_UNKNOWN: {
		size_t n = vp_rd_left(&sub);
		vp_rd_bytes(&sub, n, &m->raw.p);
		m->raw.len = sub.err ? 0 : (uint32_t)n;
		return rl_sub_done(rd, &sub);
	}
	case RL_MODEL_ARRAY:
		vp_rd_u32(&sub, &m->index);
		break;
	case RL_MODEL_DICTIONARY:
		rl_rd_opaque(&sub, 2, &m->key);
		break;
	case RL_MODEL_SINGLE:
		break;
	default:
		return vp_rd_fail(rd, VP_EINVAL);
	}
	rl_rd_bool(&sub, &m->exists);
	vp_rd_u32(&sub, &m->value_length);
	vp_rd_u8(&sub, &m->hash_alg);
	rl_rd_opaque(&sub, 1, &m->hash);
	if (!sub.err) {
		m->raw.p = vstart;
		m->raw.len = (uint32_t)(sub.pos - vstart);
	}
	return rl_sub_done(rd, &sub);
}

int rl_stored_meta_encode(vp_wr_t *wr, const rl_stored_meta_t *m)
{
	size_t mark = vp_wr_vec_begin(wr, 4);

	vp_wr_u64(wr, m->storage_time);
	vp_wr_u32(wr, m->lifetime);
	switch (m->model) {
	case RL_MODEL_UNKNOWN:
		vp_wr_bytes(wr, m->raw.p, m->raw.len);
		return vp_wr_vec_end(wr, mark, 4);
	case RL_MODEL_ARRAY:
		vp_wr_u32(wr, m->index);
		break;
	case RL_MODEL_DICTIONARY:
		rl_wr_opaque(wr, 2, &m->key);
		break;
	case RL_MODEL_SINGLE:
		break;
	default:
		return vp_wr_fail(wr, VP_EINVAL);
	}
	vp_wr_u8(wr, m->exists ? 1 : 0);
	vp_wr_u32(wr, m->value_length);
	vp_wr_u8(wr, m->hash_alg);
	rl_wr_opaque(wr, 1, &m->hash);
	return vp_wr_vec_end(wr, mark, 4);
}

static int dec_stored_meta(vp_rd_t *rd, const void *arg, void *out)
{
	return rl_stored_meta_decode(rd, *(const rl_data_model_t *)arg, out);
}

int rl_stored_meta_next(rl_iter_t *it, rl_data_model_t model, rl_stored_meta_t *out)
{
	return rl_iter_next(it, dec_stored_meta, &model, out);
}

/* ---- kind-level containers --------------------------------------------- */

/* StoreKindData and FetchKindResponse: kind, generation, StoredData values<0..2^32-1>. */
static int rd_kind_values(vp_rd_t *rd, const model_res_t *mr, uint32_t *kind, uint64_t *gen,
                          rl_stored_data_list_t *values)
{
	rl_data_model_t model;
	rl_stored_data_t scratch;
	rl_raw_list_t r;

	vp_rd_u32(rd, kind);
	vp_rd_u64(rd, gen);
	if (rd->err)
		return rd->err;
	model = resolve(mr, *kind);
	if (rl_list_decode(rd, 4, dec_stored_data, &model, &scratch, &r))
		return rd->err;
	RL_SET_LIST(*values, r);
	return 0;
}

static int enc_stored_data_item(vp_wr_t *wr, const rl_stored_data_t *sd)
{
	return rl_stored_data_encode(wr, sd);
}

static int dec_store_kind_data(vp_rd_t *rd, const void *arg, void *out)
{
	rl_store_kind_data_t *k = out;
	memset(k, 0, sizeof(*k));
	return rd_kind_values(rd, arg, &k->kind, &k->generation, &k->values);
}

static int enc_store_kind_data(vp_wr_t *wr, const rl_store_kind_data_t *k)
{
	vp_wr_u32(wr, k->kind);
	vp_wr_u64(wr, k->generation);
	RL_LIST_ENCODE(wr, 4, &k->values, enc_stored_data_item);
	return wr->err;
}

int rl_store_kind_data_next(rl_iter_t *it, rl_store_kind_data_t *out)
{
	return rl_iter_next(it, dec_store_kind_data, NULL, out);
}

static int dec_fetch_kind_resp(vp_rd_t *rd, const void *arg, void *out)
{
	rl_fetch_kind_resp_t *k = out;
	memset(k, 0, sizeof(*k));
	return rd_kind_values(rd, arg, &k->kind, &k->generation, &k->values);
}

static int enc_fetch_kind_resp(vp_wr_t *wr, const rl_fetch_kind_resp_t *k)
{
	vp_wr_u32(wr, k->kind);
	vp_wr_u64(wr, k->generation);
	RL_LIST_ENCODE(wr, 4, &k->values, enc_stored_data_item);
	return wr->err;
}

int rl_fetch_kind_resp_next(rl_iter_t *it, rl_fetch_kind_resp_t *out)
{
	return rl_iter_next(it, dec_fetch_kind_resp, NULL, out);
}

static int dec_stat_kind_resp(vp_rd_t *rd, const void *arg, void *out)
{
	rl_stat_kind_resp_t *k = out;
	rl_data_model_t model;
	rl_stored_meta_t scratch;
	rl_raw_list_t r;

	memset(k, 0, sizeof(*k));
	vp_rd_u32(rd, &k->kind);
	vp_rd_u64(rd, &k->generation);
	if (rd->err)
		return rd->err;
	model = resolve(arg, k->kind);
	if (rl_list_decode(rd, 4, dec_stored_meta, &model, &scratch, &r))
		return rd->err;
	RL_SET_LIST(k->values, r);
	return 0;
}

static int enc_stored_meta_item(vp_wr_t *wr, const rl_stored_meta_t *m)
{
	return rl_stored_meta_encode(wr, m);
}

static int enc_stat_kind_resp(vp_wr_t *wr, const rl_stat_kind_resp_t *k)
{
	vp_wr_u32(wr, k->kind);
	vp_wr_u64(wr, k->generation);
	RL_LIST_ENCODE(wr, 4, &k->values, enc_stored_meta_item);
	return wr->err;
}

int rl_stat_kind_resp_next(rl_iter_t *it, rl_stat_kind_resp_t *out)
{
	return rl_iter_next(it, dec_stat_kind_resp, NULL, out);
}

static int dec_store_kind_resp(vp_rd_t *rd, const void *arg, void *out)
{
	rl_store_kind_resp_t *k = out;
	(void)arg;
	memset(k, 0, sizeof(*k));
	vp_rd_u32(rd, &k->kind);
	vp_rd_u64(rd, &k->generation);
	return rd_node_list(rd, &k->replicas);
}

static int enc_store_kind_resp(vp_wr_t *wr, const rl_store_kind_resp_t *k)
{
	vp_wr_u32(wr, k->kind);
	vp_wr_u64(wr, k->generation);
	return wr_node_list(wr, &k->replicas);
}

int rl_store_kind_resp_next(rl_iter_t *it, rl_store_kind_resp_t *out)
{
	return rl_iter_next(it, dec_store_kind_resp, NULL, out);
}

static int dec_find_result(vp_rd_t *rd, const void *arg, void *out)
{
	rl_find_result_t *f = out;
	(void)arg;
	vp_rd_u32(rd, &f->kind);
	return rl_rd_opaque(rd, 1, &f->closest);
}

static int enc_find_result(vp_wr_t *wr, const rl_find_result_t *f)
{
	vp_wr_u32(wr, f->kind);
	return rl_wr_opaque(wr, 1, &f->closest);
}

int rl_find_result_next(rl_iter_t *it, rl_find_result_t *out)
{
	return rl_iter_next(it, dec_find_result, NULL, out);
}

/* ---- Probe ------------------------------------------------------------- */

static int dec_probe_info(vp_rd_t *rd, const void *arg, void *out)
{
	rl_probe_info_t *pi = out;
	uint8_t len;
	(void)arg;
	vp_rd_u8(rd, &pi->type);
	vp_rd_u8(rd, &len);
	if (rd->err)
		return rd->err;
	if (pi->type < RL_PROBE_RESPONSIBLE_SET || pi->type > RL_PROBE_UPTIME)
		return vp_rd_fail(rd, VP_EBADTYPE);
	if (len != 4)
		return vp_rd_fail(rd, VP_EBADLEN);
	return vp_rd_u32(rd, &pi->value);
}

static int enc_probe_info(vp_wr_t *wr, const rl_probe_info_t *pi)
{
	vp_wr_u8(wr, pi->type);
	vp_wr_u8(wr, 4);
	return vp_wr_u32(wr, pi->value);
}

int rl_probe_info_next(rl_iter_t *it, rl_probe_info_t *out)
{
	return rl_iter_next(it, dec_probe_info, NULL, out);
}

static int dec_probe_type(vp_rd_t *rd, const void *arg, void *out)
{
	uint8_t *t = out;
	(void)arg;
	if (vp_rd_u8(rd, t))
		return rd->err;
	if (*t == 0)
		return vp_rd_fail(rd, VP_EBADTYPE);
	return 0;
}

/* ---- ICE --------------------------------------------------------------- */

int rl_ip_port_decode(vp_rd_t *rd, rl_ip_port_t *a)
{
	uint8_t len;
	size_t alen;

	memset(a, 0, sizeof(*a));
	vp_rd_u8(rd, &a->type);
	vp_rd_u8(rd, &len);
	if (rd->err)
		return rd->err;
	if (a->type == RL_ADDR_IPV4)
		alen = 4;
	else if (a->type == RL_ADDR_IPV6)
		alen = 16;
	else
		return vp_rd_fail(rd, VP_EBADTYPE);
	if (len != alen + 2)
		return vp_rd_fail(rd, VP_EBADLEN);
	vp_rd_copy(rd, a->addr, alen);
	return vp_rd_u16(rd, &a->port);
}

int rl_ip_port_encode(vp_wr_t *wr, const rl_ip_port_t *a)
{
	size_t alen;
	if (a->type == RL_ADDR_IPV4)
		alen = 4;
	else if (a->type == RL_ADDR_IPV6)
		alen = 16;
	else
		return vp_wr_fail(wr, VP_EBADTYPE);
	vp_wr_u8(wr, a->type);
	vp_wr_u8(wr, (uint8_t)(alen + 2));
	vp_wr_bytes(wr, a->addr, alen);
	return vp_wr_u16(wr, a->port);
}

static int dec_ice_ext(vp_rd_t *rd, const void *arg, void *out)
{
	rl_ice_ext_t *x = out;
	(void)arg;
	rl_rd_opaque(rd, 2, &x->name);
	return rl_rd_opaque(rd, 2, &x->value);
}

static int enc_ice_ext(vp_wr_t *wr, const rl_ice_ext_t *x)
{
	rl_wr_opaque(wr, 2, &x->name);
	return rl_wr_opaque(wr, 2, &x->value);
}

int rl_ice_ext_next(rl_iter_t *it, rl_ice_ext_t *out)
{
	return rl_iter_next(it, dec_ice_ext, NULL, out);
}

static bool cand_has_rel(uint8_t t)
{
	return t == RL_CAND_SRFLX || t == RL_CAND_PRFLX || t == RL_CAND_RELAY;
}

int rl_ice_candidate_decode(vp_rd_t *rd, rl_ice_candidate_t *c)
{
	rl_ice_ext_t scratch;
	rl_raw_list_t r;

	memset(c, 0, sizeof(*c));
	rl_ip_port_decode(rd, &c->addr);
	vp_rd_u8(rd, &c->overlay_link);
	rl_rd_opaque(rd, 1, &c->foundation);
	vp_rd_u32(rd, &c->priority);
	vp_rd_u8(rd, &c->cand_type);
	if (rd->err)
		return rd->err;
	if (c->cand_type < RL_CAND_HOST || c->cand_type > RL_CAND_RELAY)
		return vp_rd_fail(rd, VP_EBADTYPE);
	if (cand_has_rel(c->cand_type))
		rl_ip_port_decode(rd, &c->rel_addr);
	if (rl_list_decode(rd, 2, dec_ice_ext, NULL, &scratch, &r))
		return rd->err;
	RL_SET_LIST(c->exts, r);
	return 0;
}

int rl_ice_candidate_encode(vp_wr_t *wr, const rl_ice_candidate_t *c)
{
	rl_ip_port_encode(wr, &c->addr);
	vp_wr_u8(wr, c->overlay_link);
	rl_wr_opaque(wr, 1, &c->foundation);
	vp_wr_u32(wr, c->priority);
	if (c->cand_type < RL_CAND_HOST || c->cand_type > RL_CAND_RELAY)
		return vp_wr_fail(wr, VP_EBADTYPE);
	vp_wr_u8(wr, c->cand_type);
	if (cand_has_rel(c->cand_type))
		rl_ip_port_encode(wr, &c->rel_addr);
	RL_LIST_ENCODE(wr, 2, &c->exts, enc_ice_ext);
	return wr->err;
}

static int dec_ice_candidate(vp_rd_t *rd, const void *arg, void *out)
{
	(void)arg;
	return rl_ice_candidate_decode(rd, out);
}

int rl_ice_candidate_next(rl_iter_t *it, rl_ice_candidate_t *out)
{
	return rl_iter_next(it, dec_ice_candidate, NULL, out);
}

static int rd_candidates(vp_rd_t *rd, rl_ice_list_t *l)
{
	rl_ice_candidate_t scratch;
	rl_raw_list_t r;
	if (rl_list_decode(rd, 2, dec_ice_candidate, NULL, &scratch, &r))
		return rd->err;
	RL_SET_LIST(*l, r);
	return 0;
}

/* ---- Chord Leave data -------------------------------------------------- */

int rl_chord_leave_decode(const uint8_t *p, size_t len, rl_chord_leave_t *out)
{
	vp_rd_t rd;

	memset(out, 0, sizeof(*out));
	vp_rd_init(&rd, p, len);
	if (vp_rd_u8(&rd, &out->type))
		return rd.err;
	if (out->type != RL_LEAVE_FROM_SUCC && out->type != RL_LEAVE_FROM_PRED)
		return VP_EBADTYPE;
	rd_node_list(&rd, &out->nodes);
	return vp_rd_done(&rd);
}

int rl_chord_leave_encode(vp_wr_t *wr, const rl_chord_leave_t *l)
{
	if (l->type != RL_LEAVE_FROM_SUCC && l->type != RL_LEAVE_FROM_PRED)
		return vp_wr_fail(wr, VP_EBADTYPE);
	vp_wr_u8(wr, l->type);
	return wr_node_list(wr, &l->nodes);
}

/* ---- bodies ------------------------------------------------------------ */

static int rd_fetch_req(vp_rd_t *rd, const model_res_t *mr, rl_fetch_req_t *f)
{
	rl_specifier_t scratch;
	rl_raw_list_t r;

	rl_rd_opaque(rd, 1, &f->resource);
	if (rl_list_decode(rd, 2, dec_specifier, mr, &scratch, &r))
		return rd->err;
	RL_SET_LIST(f->specifiers, r);
	return 0;
}

static int enc_specifier_item(vp_wr_t *wr, const rl_specifier_t *s)
{
	return rl_specifier_encode(wr, s);
}

static int rd_attach(vp_rd_t *rd, rl_attach_t *a)
{
	rl_rd_opaque(rd, 1, &a->ufrag);
	rl_rd_opaque(rd, 1, &a->password);
	rl_rd_opaque(rd, 1, &a->role);
	rd_candidates(rd, &a->candidates);
	return rl_rd_bool(rd, &a->send_update);
}

static int enc_ice_candidate_item(vp_wr_t *wr, const rl_ice_candidate_t *c)
{
	return rl_ice_candidate_encode(wr, c);
}

/*
 * The error_info of codes RFC 6940 gives a structure (§6.4.1.2): Unknown_Kind
 * carries `KindId unknown_kinds<0..2^8-1>`, Generation_Counter_Too_Low the
 * StoreAns shape `StoreKindResponse kind_responses<0..2^16-1>`.  When present
 * (empty info is allowed: the sender said nothing) it must be exactly that, so
 * no reader (Wireshark decodes it as a structure) runs past it.  Other codes'
 * error_info is free text or opaque.
 */
static int check_error_info(uint16_t code, const rl_bytes_t *info)
{
	vp_rd_t rd;
	rl_raw_list_t r;
	rl_store_kind_resp_t scratch;
	if (!info->len)
		return 0;
	vp_rd_init(&rd, info->p, info->len);
	if (code == RL_ERR_UNKNOWN_KIND)
		rd_fixed_list(&rd, 1, sizeof(uint32_t), &r);
	else if (code == RL_ERR_GENERATION_COUNTER_TOO_LOW)
		rl_list_decode(&rd, 2, dec_store_kind_resp, NULL, &scratch, &r);
	else
		return 0;
	return vp_rd_done(&rd);
}

int rl_body_decode(uint16_t code, const uint8_t *p, size_t len, rl_model_fn fn, void *ctx,
                   rl_body_t *out)
{
	vp_rd_t rd;
	rl_raw_list_t r;
	model_res_t mr = { fn, ctx };
	int e;

	memset(out, 0, sizeof(*out));
	out->code = code;
	vp_rd_init(&rd, p, len);
	switch (code) {
	case RL_PROBE_REQ: {
		uint8_t scratch;
		if (rl_list_decode(&rd, 1, dec_probe_type, NULL, &scratch, &r) == 0)
			RL_SET_LIST(out->u.probe_req.requested, r);
		break;
	}
	case RL_PROBE_ANS: {
		rl_probe_info_t scratch;
		if (rl_list_decode(&rd, 2, dec_probe_info, NULL, &scratch, &r) == 0)
			RL_SET_LIST(out->u.probe_ans.info, r);
		break;
	}
	case RL_ATTACH_REQ:
	case RL_ATTACH_ANS:
		rd_attach(&rd, &out->u.attach);
		break;
	case RL_STORE_REQ: {
		rl_store_req_t *s = &out->u.store_req;
		rl_store_kind_data_t scratch;
		rl_rd_opaque(&rd, 1, &s->resource);
		vp_rd_u8(&rd, &s->replica_number);
		if (rl_list_decode(&rd, 4, dec_store_kind_data, &mr, &scratch, &r) == 0)
			RL_SET_LIST(s->kind_data, r);
		break;
	}
	case RL_STORE_ANS: {
		rl_store_kind_resp_t scratch;
		if (rl_list_decode(&rd, 2, dec_store_kind_resp, NULL, &scratch, &r) == 0)
			RL_SET_LIST(out->u.store_ans.responses, r);
		break;
	}
	case RL_FETCH_REQ:
	case RL_STAT_REQ:
		rd_fetch_req(&rd, &mr, &out->u.fetch_req);
		break;
	case RL_FETCH_ANS: {
		rl_fetch_kind_resp_t scratch;
		if (rl_list_decode(&rd, 4, dec_fetch_kind_resp, &mr, &scratch, &r) == 0)
			RL_SET_LIST(out->u.fetch_ans.responses, r);
		break;
	}
	case RL_STAT_ANS: {
		rl_stat_kind_resp_t scratch;
		if (rl_list_decode(&rd, 4, dec_stat_kind_resp, &mr, &scratch, &r) == 0)
			RL_SET_LIST(out->u.stat_ans.responses, r);
		break;
	}
	case RL_FIND_REQ:
		rl_rd_opaque(&rd, 1, &out->u.find_req.resource);
		if (rd_fixed_list(&rd, 1, sizeof(uint32_t), &r) == 0)
			RL_SET_LIST(out->u.find_req.kinds, r);
		break;
	case RL_FIND_ANS: {
		rl_find_result_t scratch;
		if (rl_list_decode(&rd, 2, dec_find_result, NULL, &scratch, &r) == 0)
			RL_SET_LIST(out->u.find_ans.results, r);
		break;
	}
	case RL_JOIN_REQ:
		rl_rd_node_id(&rd, &out->u.join_req.joining_peer);
		rl_rd_opaque(&rd, 2, &out->u.join_req.overlay_data);
		break;
	case RL_JOIN_ANS:
		rl_rd_opaque(&rd, 2, &out->u.join_ans.overlay_data);
		break;
	case RL_LEAVE_REQ:
		rl_rd_node_id(&rd, &out->u.leave_req.leaving_peer);
		rl_rd_opaque(&rd, 2, &out->u.leave_req.overlay_data);
		break;
	case RL_UPDATE_REQ: {
		rl_chord_update_t *u = &out->u.update;
		vp_rd_u32(&rd, &u->uptime);
		if (vp_rd_u8(&rd, &u->type))
			break;
		switch (u->type) {
		case RL_UPDATE_PEER_READY:
			break;
		case RL_UPDATE_NEIGHBORS:
			rd_node_list(&rd, &u->predecessors);
			rd_node_list(&rd, &u->successors);
			break;
		case RL_UPDATE_FULL:
			rd_node_list(&rd, &u->predecessors);
			rd_node_list(&rd, &u->successors);
			rd_node_list(&rd, &u->fingers);
			break;
		default:
			vp_rd_fail(&rd, VP_EBADTYPE);
			break;
		}
		break;
	}
	case RL_ROUTE_QUERY_REQ:
		rl_rd_bool(&rd, &out->u.route_query_req.send_update);
		rl_dest_decode(&rd, &out->u.route_query_req.destination);
		rl_rd_opaque(&rd, 2, &out->u.route_query_req.overlay_data);
		break;
	case RL_ROUTE_QUERY_ANS:
		rl_rd_node_id(&rd, &out->u.route_query_ans.next_peer);
		break;
	case RL_PING_REQ:
		rl_rd_opaque(&rd, 2, &out->u.ping_req.padding);
		break;
	case RL_PING_ANS:
		vp_rd_u64(&rd, &out->u.ping_ans.response_id);
		vp_rd_u64(&rd, &out->u.ping_ans.time);
		break;
	case RL_APP_ATTACH_REQ:
	case RL_APP_ATTACH_ANS: {
		rl_app_attach_t *a = &out->u.app_attach;
		rl_rd_opaque(&rd, 1, &a->ufrag);
		rl_rd_opaque(&rd, 1, &a->password);
		vp_rd_u16(&rd, &a->application);
		rl_rd_opaque(&rd, 1, &a->role);
		rd_candidates(&rd, &a->candidates);
		break;
	}
	case RL_CONFIG_UPDATE_REQ: {
		rl_config_update_req_t *c = &out->u.config_update_req;
		uint32_t clen;
		vp_rd_t sub;
		rl_bytes_t scratch;
		vp_rd_u8(&rd, &c->type);
		vp_rd_u32(&rd, &clen);
		if (vp_rd_sub(&rd, clen, &sub))
			break;
		if (c->type == RL_CONFIG_UPDATE_CONFIG) {
			rl_rd_opaque(&sub, 3, &c->config_data);
		} else if (c->type == RL_CONFIG_UPDATE_KIND) {
			if (rl_list_decode(&sub, 3, dec_bytes16, NULL, &scratch, &r) == 0)
				RL_SET_LIST(c->kinds, r);
		} else {
			vp_rd_fail(&rd, VP_EBADTYPE);
			break;
		}
		rl_sub_done(&rd, &sub);
		break;
	}
	case RL_UPDATE_ANS:
	case RL_LEAVE_ANS:
	case RL_CONFIG_UPDATE_ANS:
		break; /* empty bodies */
	case RL_ERROR:
		vp_rd_u16(&rd, &out->u.error.code);
		if (rl_rd_opaque(&rd, 2, &out->u.error.info) == 0 &&
		    (e = check_error_info(out->u.error.code, &out->u.error.info)))
			vp_rd_fail(&rd, e);
		break;
	default:
		return VP_EBADTYPE;
	}
	return vp_rd_done(&rd);
}

int rl_body_encode(vp_wr_t *wr, const rl_body_t *b)
{
	int e;
	switch (b->code) {
	case RL_PROBE_REQ:
		RL_LIST_ENCODE(wr, 1, &b->u.probe_req.requested, enc_u8);
		break;
	case RL_PROBE_ANS:
		RL_LIST_ENCODE(wr, 2, &b->u.probe_ans.info, enc_probe_info);
		break;
	case RL_ATTACH_REQ:
	case RL_ATTACH_ANS: {
		const rl_attach_t *a = &b->u.attach;
		rl_wr_opaque(wr, 1, &a->ufrag);
		rl_wr_opaque(wr, 1, &a->password);
		rl_wr_opaque(wr, 1, &a->role);
		RL_LIST_ENCODE(wr, 2, &a->candidates, enc_ice_candidate_item);
		vp_wr_u8(wr, a->send_update ? 1 : 0);
		break;
	}
	case RL_STORE_REQ: {
		const rl_store_req_t *s = &b->u.store_req;
		rl_wr_opaque(wr, 1, &s->resource);
		vp_wr_u8(wr, s->replica_number);
		RL_LIST_ENCODE(wr, 4, &s->kind_data, enc_store_kind_data);
		break;
	}
	case RL_STORE_ANS:
		RL_LIST_ENCODE(wr, 2, &b->u.store_ans.responses, enc_store_kind_resp);
		break;
	case RL_FETCH_REQ:
	case RL_STAT_REQ:
		rl_wr_opaque(wr, 1, &b->u.fetch_req.resource);
		RL_LIST_ENCODE(wr, 2, &b->u.fetch_req.specifiers, enc_specifier_item);
		break;
	case RL_FETCH_ANS:
		RL_LIST_ENCODE(wr, 4, &b->u.fetch_ans.responses, enc_fetch_kind_resp);
		break;
	case RL_STAT_ANS:
		RL_LIST_ENCODE(wr, 4, &b->u.stat_ans.responses, enc_stat_kind_resp);
		break;
	case RL_FIND_REQ:
		rl_wr_opaque(wr, 1, &b->u.find_req.resource);
		RL_LIST_ENCODE(wr, 1, &b->u.find_req.kinds, enc_u32);
		break;
	case RL_FIND_ANS:
		RL_LIST_ENCODE(wr, 2, &b->u.find_ans.results, enc_find_result);
		break;
	case RL_JOIN_REQ:
		vp_wr_bytes(wr, b->u.join_req.joining_peer.b, RL_NODE_ID_LEN);
		rl_wr_opaque(wr, 2, &b->u.join_req.overlay_data);
		break;
	case RL_JOIN_ANS:
		rl_wr_opaque(wr, 2, &b->u.join_ans.overlay_data);
		break;
	case RL_LEAVE_REQ:
		vp_wr_bytes(wr, b->u.leave_req.leaving_peer.b, RL_NODE_ID_LEN);
		rl_wr_opaque(wr, 2, &b->u.leave_req.overlay_data);
		break;
	case RL_UPDATE_REQ: {
		const rl_chord_update_t *u = &b->u.update;
		vp_wr_u32(wr, u->uptime);
		vp_wr_u8(wr, u->type);
		switch (u->type) {
		case RL_UPDATE_PEER_READY:
			break;
		case RL_UPDATE_NEIGHBORS:
			wr_node_list(wr, &u->predecessors);
			wr_node_list(wr, &u->successors);
			break;
		case RL_UPDATE_FULL:
			wr_node_list(wr, &u->predecessors);
			wr_node_list(wr, &u->successors);
			wr_node_list(wr, &u->fingers);
			break;
		default:
			return vp_wr_fail(wr, VP_EBADTYPE);
		}
		break;
	}
	case RL_ROUTE_QUERY_REQ:
		vp_wr_u8(wr, b->u.route_query_req.send_update ? 1 : 0);
		rl_dest_encode(wr, &b->u.route_query_req.destination);
		rl_wr_opaque(wr, 2, &b->u.route_query_req.overlay_data);
		break;
	case RL_ROUTE_QUERY_ANS:
		vp_wr_bytes(wr, b->u.route_query_ans.next_peer.b, RL_NODE_ID_LEN);
		break;
	case RL_PING_REQ:
		rl_wr_opaque(wr, 2, &b->u.ping_req.padding);
		break;
	case RL_PING_ANS:
		vp_wr_u64(wr, b->u.ping_ans.response_id);
		vp_wr_u64(wr, b->u.ping_ans.time);
		break;
	case RL_APP_ATTACH_REQ:
	case RL_APP_ATTACH_ANS: {
		const rl_app_attach_t *a = &b->u.app_attach;
		rl_wr_opaque(wr, 1, &a->ufrag);
		rl_wr_opaque(wr, 1, &a->password);
		vp_wr_u16(wr, a->application);
		rl_wr_opaque(wr, 1, &a->role);
		RL_LIST_ENCODE(wr, 2, &a->candidates, enc_ice_candidate_item);
		break;
	}
	case RL_CONFIG_UPDATE_REQ: {
		const rl_config_update_req_t *c = &b->u.config_update_req;
		size_t mark;
		vp_wr_u8(wr, c->type);
		mark = vp_wr_vec_begin(wr, 4);
		if (c->type == RL_CONFIG_UPDATE_CONFIG)
			rl_wr_opaque(wr, 3, &c->config_data);
		else if (c->type == RL_CONFIG_UPDATE_KIND)
			RL_LIST_ENCODE(wr, 3, &c->kinds, enc_bytes16);
		else
			return vp_wr_fail(wr, VP_EBADTYPE);
		vp_wr_vec_end(wr, mark, 4);
		break;
	}
	case RL_UPDATE_ANS:
	case RL_LEAVE_ANS:
	case RL_CONFIG_UPDATE_ANS:
		break;
	case RL_ERROR:
		if ((e = check_error_info(b->u.error.code, &b->u.error.info)))
			return vp_wr_fail(wr, e);
		vp_wr_u16(wr, b->u.error.code);
		rl_wr_opaque(wr, 2, &b->u.error.info);
		break;
	default:
		return vp_wr_fail(wr, VP_EBADTYPE);
	}
	return wr->err;
}
