/*
 * dataplane/reload_json.c - a RELOAD message (optionally framed) as JSON, for
 * operators (viprctl decode), debugging and tests.  Every field is printed;
 * ids and opaque data in lower-case hex, printable text fields as strings.
 * Not on any hot path: it walks every list with the iterators, so it also
 * proves that everything a decode accepted can be walked.
 */
#include "dataplane/reload.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#define JW_MAX_DEPTH 32

typedef struct jw {
	FILE *f;
	int depth;
	bool top; /* nothing printed yet */
	bool first[JW_MAX_DEPTH];
	int err; /* first iterator error met while printing */
} jw_t;

static void jw_indent(jw_t *w)
{
	fputc('\n', w->f);
	for (int i = 0; i < w->depth; i++)
		fputs("  ", w->f);
}

/* Comma, newline, indentation and "key": for the next member. */
static void jw_key(jw_t *w, const char *key)
{
	if (!w->first[w->depth])
		fputc(',', w->f);
	w->first[w->depth] = false;
	jw_indent(w);
	if (key)
		fprintf(w->f, "\"%s\": ", key);
}

static void jw_open(jw_t *w, const char *key, char c)
{
	if (w->top)
		w->top = false;
	else
		jw_key(w, key);
	fputc(c, w->f);
	if (w->depth < JW_MAX_DEPTH - 1)
		w->depth++;
	w->first[w->depth] = true;
}

static void jw_close(jw_t *w, char c)
{
	bool empty = w->first[w->depth];
	if (w->depth > 0)
		w->depth--;
	if (!empty)
		jw_indent(w);
	fputc(c, w->f);
}

#define jw_obj(w, k) jw_open((w), (k), '{')
#define jw_end(w) jw_close((w), '}')
#define jw_arr(w, k) jw_open((w), (k), '[')
#define jw_arr_end(w) jw_close((w), ']')

static void jw_u64(jw_t *w, const char *key, uint64_t v)
{
	jw_key(w, key);
	fprintf(w->f, "%llu", (unsigned long long)v);
}

static void jw_bool(jw_t *w, const char *key, bool v)
{
	jw_key(w, key);
	fputs(v ? "true" : "false", w->f);
}

static void jw_cstr(jw_t *w, const char *key, const char *s)
{
	jw_key(w, key);
	fprintf(w->f, "\"%s\"", s);
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
	fputc('"', f);
}

static void jw_hex(jw_t *w, const char *key, const uint8_t *p, size_t n)
{
	jw_key(w, key);
	put_hex(w->f, p, n);
}

static void jw_bhex(jw_t *w, const char *key, const rl_bytes_t *b)
{
	jw_hex(w, key, b->p, b->len);
}

/* Hex of a fixed-width integer, e.g. "0102030405060708". */
static void jw_xint(jw_t *w, const char *key, uint64_t v, int bytes)
{
	jw_key(w, key);
	fprintf(w->f, "\"%0*llx\"", bytes * 2, (unsigned long long)v);
}

/* A text field (ufrag, role, ...): a JSON string with every non-printable escaped. */
static void jw_text(jw_t *w, const char *key, const rl_bytes_t *b)
{
	jw_key(w, key);
	fputc('"', w->f);
	for (uint32_t i = 0; i < b->len; i++) {
		uint8_t c = b->p[i];
		if (c == '"' || c == '\\')
			fprintf(w->f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(w->f, "\\u%04x", c);
		else
			fputc(c, w->f);
	}
	fputc('"', w->f);
}

static void jw_note(jw_t *w, int r)
{
	if (r < 0 && !w->err)
		w->err = r;
}

static const char *hash_name(uint8_t h)
{
	static const char *const names[] = { "none", "md5", "sha1", "sha224", "sha256", "sha384", "sha512" };
	return h < sizeof(names) / sizeof(names[0]) ? names[h] : "unknown";
}

static const char *sig_name(uint8_t s)
{
	static const char *const names[] = { "anonymous", "rsa", "dsa", "ecdsa" };
	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static const char *model_name(rl_data_model_t m)
{
	switch (m) {
	case RL_MODEL_SINGLE: return "single";
	case RL_MODEL_ARRAY: return "array";
	case RL_MODEL_DICTIONARY: return "dictionary";
	default: return "unknown";
	}
}

static void json_dest(jw_t *w, const char *key, const rl_dest_t *d)
{
	static const char *const names[] = { "invalid", "node", "resource", "opaque_id" };
	jw_obj(w, key);
	jw_cstr(w, "type", d->type == RL_DEST_COMPRESSED ? "compressed" : names[d->type & 3]);
	jw_bhex(w, "id", &d->id);
	jw_end(w);
}

static void json_dest_list(jw_t *w, const char *key, const rl_dest_list_t *l)
{
	rl_iter_t it;
	rl_dest_t d;
	int r;
	jw_arr(w, key);
	RL_ITER_INIT(&it, l);
	while ((r = rl_dest_next(&it, &d)) == 1)
		json_dest(w, NULL, &d);
	jw_note(w, r);
	jw_arr_end(w);
}

static void json_nodes(jw_t *w, const char *key, const rl_node_list_t *l)
{
	rl_iter_t it;
	vp_id_t id;
	int r;
	jw_arr(w, key);
	RL_ITER_INIT(&it, l);
	while ((r = rl_node_next(&it, &id)) == 1)
		jw_hex(w, NULL, id.b, sizeof(id.b));
	jw_note(w, r);
	jw_arr_end(w);
}

static void json_identity(jw_t *w, const rl_signer_identity_t *id)
{
	static const char *const names[] = { "invalid", "cert_hash", "cert_hash_node_id", "none" };
	jw_obj(w, "identity");
	jw_u64(w, "type", id->type);
	jw_cstr(w, "type_name", id->type <= 3 ? names[id->type] : "unknown");
	if (id->type != RL_SIGNER_NONE) {
		jw_u64(w, "hash_algorithm", id->hash_alg);
		jw_cstr(w, "hash_algorithm_name", hash_name(id->hash_alg));
		jw_bhex(w, "certificate_hash", &id->hash);
	}
	jw_end(w);
}

static void json_signature(jw_t *w, const rl_signature_t *s)
{
	jw_obj(w, "signature");
	jw_u64(w, "hash_algorithm", s->hash_alg);
	jw_cstr(w, "hash_algorithm_name", hash_name(s->hash_alg));
	jw_u64(w, "signature_algorithm", s->sig_alg);
	jw_cstr(w, "signature_algorithm_name", sig_name(s->sig_alg));
	json_identity(w, &s->identity);
	jw_bhex(w, "value", &s->value);
	jw_end(w);
}

static void json_stored_data(jw_t *w, const rl_stored_data_t *sd)
{
	jw_obj(w, NULL);
	jw_u64(w, "storage_time", sd->storage_time);
	jw_u64(w, "lifetime", sd->lifetime);
	jw_cstr(w, "model", model_name(sd->model));
	if (sd->model == RL_MODEL_UNKNOWN) {
		jw_bhex(w, "raw", &sd->raw_value);
		jw_end(w);
		return;
	}
	if (sd->model == RL_MODEL_ARRAY)
		jw_u64(w, "index", sd->index);
	if (sd->model == RL_MODEL_DICTIONARY)
		jw_bhex(w, "key", &sd->key);
	jw_bool(w, "exists", sd->exists);
	jw_bhex(w, "value", &sd->value);
	json_signature(w, &sd->sig);
	jw_end(w);
}

static void json_kind_values(jw_t *w, uint32_t kind, uint64_t gen, const rl_stored_data_list_t *l,
                             rl_model_fn fn, void *ctx)
{
	rl_data_model_t model = RL_MODEL_UNKNOWN;
	rl_iter_t it;
	rl_stored_data_t sd;
	int r;

	if (fn) {
		int m = fn(ctx, kind);
		if (m >= RL_MODEL_SINGLE && m <= RL_MODEL_DICTIONARY)
			model = (rl_data_model_t)m;
	}
	jw_u64(w, "kind", kind);
	jw_xint(w, "kind_hex", kind, 4);
	jw_u64(w, "generation", gen);
	jw_arr(w, "values");
	RL_ITER_INIT(&it, l);
	while ((r = rl_stored_data_next(&it, model, &sd)) == 1)
		json_stored_data(w, &sd);
	jw_note(w, r);
	jw_arr_end(w);
}

static void json_ip_port(jw_t *w, const char *key, const rl_ip_port_t *a)
{
	char txt[INET6_ADDRSTRLEN];
	int v6 = a->type == RL_ADDR_IPV6;
	jw_obj(w, key);
	jw_cstr(w, "family", v6 ? "ipv6" : "ipv4");
	if (!inet_ntop(v6 ? AF_INET6 : AF_INET, a->addr, txt, sizeof(txt)))
		txt[0] = 0;
	jw_cstr(w, "address", txt);
	jw_u64(w, "port", a->port);
	jw_end(w);
}

static void json_candidates(jw_t *w, const rl_ice_list_t *l)
{
	static const char *const types[] = { "invalid", "host", "srflx", "prflx", "relay" };
	rl_iter_t it, xit;
	rl_ice_candidate_t c;
	rl_ice_ext_t x;
	int r, rx;

	jw_arr(w, "candidates");
	RL_ITER_INIT(&it, l);
	while ((r = rl_ice_candidate_next(&it, &c)) == 1) {
		jw_obj(w, NULL);
		json_ip_port(w, "addr_port", &c.addr);
		jw_u64(w, "overlay_link", c.overlay_link);
		jw_text(w, "foundation", &c.foundation);
		jw_u64(w, "priority", c.priority);
		jw_cstr(w, "type", types[c.cand_type <= 4 ? c.cand_type : 0]);
		if (c.cand_type != RL_CAND_HOST)
			json_ip_port(w, "rel_addr_port", &c.rel_addr);
		jw_arr(w, "extensions");
		RL_ITER_INIT(&xit, &c.exts);
		while ((rx = rl_ice_ext_next(&xit, &x)) == 1) {
			jw_obj(w, NULL);
			jw_text(w, "name", &x.name);
			jw_text(w, "value", &x.value);
			jw_end(w);
		}
		jw_note(w, rx);
		jw_arr_end(w);
		jw_end(w);
	}
	jw_note(w, r);
	jw_arr_end(w);
}

static void json_specifiers(jw_t *w, const rl_specifier_list_t *l, rl_model_fn fn, void *ctx)
{
	rl_iter_t it, sit;
	rl_specifier_t s;
	rl_bytes_t k;
	rl_array_range_t ar;
	int r, rs;

	jw_arr(w, "specifiers");
	RL_ITER_INIT(&it, l);
	while ((r = rl_specifier_next(&it, fn, ctx, &s)) == 1) {
		jw_obj(w, NULL);
		jw_u64(w, "kind", s.kind);
		jw_xint(w, "kind_hex", s.kind, 4);
		jw_u64(w, "generation", s.generation);
		jw_cstr(w, "model", model_name(s.model));
		if (s.model == RL_MODEL_ARRAY) {
			jw_arr(w, "indices");
			RL_ITER_INIT(&sit, &s.indices);
			while ((rs = rl_array_range_next(&sit, &ar)) == 1) {
				jw_obj(w, NULL);
				jw_u64(w, "first", ar.first);
				jw_u64(w, "last", ar.last);
				jw_end(w);
			}
			jw_note(w, rs);
			jw_arr_end(w);
		} else if (s.model == RL_MODEL_DICTIONARY) {
			jw_arr(w, "keys");
			RL_ITER_INIT(&sit, &s.keys);
			while ((rs = rl_bytes16_next(&sit, &k)) == 1)
				jw_bhex(w, NULL, &k);
			jw_note(w, rs);
			jw_arr_end(w);
		} else if (s.model == RL_MODEL_UNKNOWN) {
			jw_bhex(w, "raw", &s.raw);
		}
		jw_end(w);
	}
	jw_note(w, r);
	jw_arr_end(w);
}

static void json_body(jw_t *w, const rl_body_t *b, rl_model_fn fn, void *ctx)
{
	rl_iter_t it, sit;
	int r, rs;

	jw_obj(w, "body");
	switch (b->code) {
	case RL_PROBE_REQ: {
		uint8_t t;
		jw_arr(w, "requested_info");
		RL_ITER_INIT(&it, &b->u.probe_req.requested);
		while ((r = rl_u8_next(&it, &t)) == 1)
			jw_u64(w, NULL, t);
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_PROBE_ANS: {
		static const char *const names[] = { "invalid", "responsible_set", "num_resources", "uptime" };
		rl_probe_info_t pi;
		jw_arr(w, "probe_info");
		RL_ITER_INIT(&it, &b->u.probe_ans.info);
		while ((r = rl_probe_info_next(&it, &pi)) == 1) {
			jw_obj(w, NULL);
			jw_cstr(w, "type", names[pi.type <= 3 ? pi.type : 0]);
			jw_u64(w, "value", pi.value);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_ATTACH_REQ:
	case RL_ATTACH_ANS:
		jw_text(w, "ufrag", &b->u.attach.ufrag);
		jw_text(w, "password", &b->u.attach.password);
		jw_text(w, "role", &b->u.attach.role);
		json_candidates(w, &b->u.attach.candidates);
		jw_bool(w, "send_update", b->u.attach.send_update);
		break;
	case RL_APP_ATTACH_REQ:
	case RL_APP_ATTACH_ANS:
		jw_text(w, "ufrag", &b->u.app_attach.ufrag);
		jw_text(w, "password", &b->u.app_attach.password);
		jw_u64(w, "application", b->u.app_attach.application);
		jw_text(w, "role", &b->u.app_attach.role);
		json_candidates(w, &b->u.app_attach.candidates);
		break;
	case RL_STORE_REQ: {
		rl_store_kind_data_t kd;
		jw_bhex(w, "resource", &b->u.store_req.resource);
		jw_u64(w, "replica_number", b->u.store_req.replica_number);
		jw_arr(w, "kind_data");
		RL_ITER_INIT(&it, &b->u.store_req.kind_data);
		while ((r = rl_store_kind_data_next(&it, &kd)) == 1) {
			jw_obj(w, NULL);
			json_kind_values(w, kd.kind, kd.generation, &kd.values, fn, ctx);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_STORE_ANS: {
		rl_store_kind_resp_t kr;
		jw_arr(w, "kind_responses");
		RL_ITER_INIT(&it, &b->u.store_ans.responses);
		while ((r = rl_store_kind_resp_next(&it, &kr)) == 1) {
			jw_obj(w, NULL);
			jw_u64(w, "kind", kr.kind);
			jw_xint(w, "kind_hex", kr.kind, 4);
			jw_u64(w, "generation", kr.generation);
			json_nodes(w, "replicas", &kr.replicas);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_FETCH_REQ:
	case RL_STAT_REQ:
		jw_bhex(w, "resource", &b->u.fetch_req.resource);
		json_specifiers(w, &b->u.fetch_req.specifiers, fn, ctx);
		break;
	case RL_FETCH_ANS: {
		rl_fetch_kind_resp_t kr;
		jw_arr(w, "kind_responses");
		RL_ITER_INIT(&it, &b->u.fetch_ans.responses);
		while ((r = rl_fetch_kind_resp_next(&it, &kr)) == 1) {
			jw_obj(w, NULL);
			json_kind_values(w, kr.kind, kr.generation, &kr.values, fn, ctx);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_STAT_ANS: {
		rl_stat_kind_resp_t kr;
		rl_stored_meta_t m;
		jw_arr(w, "kind_responses");
		RL_ITER_INIT(&it, &b->u.stat_ans.responses);
		while ((r = rl_stat_kind_resp_next(&it, &kr)) == 1) {
			rl_data_model_t model = RL_MODEL_UNKNOWN;
			if (fn) {
				int mm = fn(ctx, kr.kind);
				if (mm >= RL_MODEL_SINGLE && mm <= RL_MODEL_DICTIONARY)
					model = (rl_data_model_t)mm;
			}
			jw_obj(w, NULL);
			jw_u64(w, "kind", kr.kind);
			jw_xint(w, "kind_hex", kr.kind, 4);
			jw_u64(w, "generation", kr.generation);
			jw_arr(w, "values");
			RL_ITER_INIT(&sit, &kr.values);
			while ((rs = rl_stored_meta_next(&sit, model, &m)) == 1) {
				jw_obj(w, NULL);
				jw_u64(w, "storage_time", m.storage_time);
				jw_u64(w, "lifetime", m.lifetime);
				jw_cstr(w, "model", model_name(m.model));
				if (m.model == RL_MODEL_UNKNOWN) {
					jw_bhex(w, "raw", &m.raw);
				} else {
					if (m.model == RL_MODEL_ARRAY)
						jw_u64(w, "index", m.index);
					if (m.model == RL_MODEL_DICTIONARY)
						jw_bhex(w, "key", &m.key);
					jw_bool(w, "exists", m.exists);
					jw_u64(w, "value_length", m.value_length);
					jw_u64(w, "hash_algorithm", m.hash_alg);
					jw_bhex(w, "hash_value", &m.hash);
				}
				jw_end(w);
			}
			jw_note(w, rs);
			jw_arr_end(w);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_FIND_REQ: {
		uint32_t k;
		jw_bhex(w, "resource", &b->u.find_req.resource);
		jw_arr(w, "kinds");
		RL_ITER_INIT(&it, &b->u.find_req.kinds);
		while ((r = rl_u32_next(&it, &k)) == 1)
			jw_u64(w, NULL, k);
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_FIND_ANS: {
		rl_find_result_t f;
		jw_arr(w, "results");
		RL_ITER_INIT(&it, &b->u.find_ans.results);
		while ((r = rl_find_result_next(&it, &f)) == 1) {
			jw_obj(w, NULL);
			jw_u64(w, "kind", f.kind);
			jw_bhex(w, "closest", &f.closest);
			jw_end(w);
		}
		jw_note(w, r);
		jw_arr_end(w);
		break;
	}
	case RL_JOIN_REQ:
		jw_hex(w, "joining_peer_id", b->u.join_req.joining_peer.b, RL_NODE_ID_LEN);
		jw_bhex(w, "overlay_specific_data", &b->u.join_req.overlay_data);
		break;
	case RL_JOIN_ANS:
		jw_bhex(w, "overlay_specific_data", &b->u.join_ans.overlay_data);
		break;
	case RL_LEAVE_REQ: {
		rl_chord_leave_t l;
		jw_hex(w, "leaving_peer_id", b->u.leave_req.leaving_peer.b, RL_NODE_ID_LEN);
		jw_bhex(w, "overlay_specific_data", &b->u.leave_req.overlay_data);
		if (rl_chord_leave_decode(b->u.leave_req.overlay_data.p, b->u.leave_req.overlay_data.len,
		                          &l) == 0) {
			jw_obj(w, "chord_leave");
			jw_cstr(w, "type", l.type == RL_LEAVE_FROM_SUCC ? "from_succ" : "from_pred");
			json_nodes(w, "nodes", &l.nodes);
			jw_end(w);
		}
		break;
	}
	case RL_UPDATE_REQ: {
		static const char *const names[] = { "invalid", "peer_ready", "neighbors", "full" };
		const rl_chord_update_t *u = &b->u.update;
		jw_u64(w, "uptime", u->uptime);
		jw_cstr(w, "type", names[u->type <= 3 ? u->type : 0]);
		if (u->type >= RL_UPDATE_NEIGHBORS) {
			json_nodes(w, "predecessors", &u->predecessors);
			json_nodes(w, "successors", &u->successors);
		}
		if (u->type == RL_UPDATE_FULL)
			json_nodes(w, "fingers", &u->fingers);
		break;
	}
	case RL_ROUTE_QUERY_REQ:
		jw_bool(w, "send_update", b->u.route_query_req.send_update);
		json_dest(w, "destination", &b->u.route_query_req.destination);
		jw_bhex(w, "overlay_specific_data", &b->u.route_query_req.overlay_data);
		break;
	case RL_ROUTE_QUERY_ANS:
		jw_hex(w, "next_peer", b->u.route_query_ans.next_peer.b, RL_NODE_ID_LEN);
		break;
	case RL_PING_REQ:
		jw_u64(w, "padding_length", b->u.ping_req.padding.len);
		jw_bhex(w, "padding", &b->u.ping_req.padding);
		break;
	case RL_PING_ANS:
		jw_xint(w, "response_id", b->u.ping_ans.response_id, 8);
		jw_u64(w, "time", b->u.ping_ans.time);
		break;
	case RL_CONFIG_UPDATE_REQ: {
		const rl_config_update_req_t *c = &b->u.config_update_req;
		rl_bytes_t k;
		jw_cstr(w, "type", c->type == RL_CONFIG_UPDATE_CONFIG ? "config" : "kind");
		if (c->type == RL_CONFIG_UPDATE_CONFIG) {
			jw_text(w, "config_data", &c->config_data);
		} else {
			jw_arr(w, "kinds");
			RL_ITER_INIT(&it, &c->kinds);
			while ((r = rl_bytes16_next(&it, &k)) == 1)
				jw_text(w, NULL, &k);
			jw_note(w, r);
			jw_arr_end(w);
		}
		break;
	}
	case RL_ERROR:
		jw_u64(w, "error_code", b->u.error.code);
		jw_cstr(w, "error_name", rl_error_code_name(b->u.error.code));
		jw_bhex(w, "error_info", &b->u.error.info);
		break;
	default:
		break; /* empty answers */
	}
	jw_end(w);
}

int rl_json_message(FILE *out, const uint8_t *p, size_t len, rl_model_fn fn, void *ctx)
{
	jw_t w = { out, 0, true, { true }, 0 };
	rl_frame_t fr;
	rl_message_t m;
	rl_body_t b;
	rl_iter_t it;
	int r, e;
	bool framed = len > 0 && (p[0] == RL_FRAME_DATA || p[0] == RL_FRAME_ACK);

	/* Check everything before printing anything: the output is all or nothing. */
	if (framed) {
		if ((e = rl_frame_decode(p, len, &fr)))
			return e;
		if (fr.type == RL_FRAME_ACK) {
			jw_obj(&w, NULL);
			jw_obj(&w, "framing");
			jw_cstr(&w, "type", "ack");
			jw_u64(&w, "ack_sequence", fr.sequence);
			jw_xint(&w, "received", fr.received, 4);
			jw_end(&w);
			jw_end(&w);
			fputc('\n', out);
			return 0;
		}
		p = fr.message.p;
		len = fr.message.len;
	}
	if ((e = rl_msg_decode(p, len, &m)))
		return e;
	if ((e = rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, fn, ctx, &b)))
		return e;

	jw_obj(&w, NULL);
	if (framed) {
		jw_obj(&w, "framing");
		jw_cstr(&w, "type", "data");
		jw_u64(&w, "sequence", fr.sequence);
		jw_u64(&w, "length", fr.message.len);
		jw_end(&w);
	}
	jw_obj(&w, "forwarding_header");
	jw_xint(&w, "relo_token", RL_TOKEN, 4);
	jw_xint(&w, "overlay", m.hdr.overlay, 4);
	jw_u64(&w, "configuration_sequence", m.hdr.config_seq);
	jw_u64(&w, "version", m.hdr.version);
	jw_u64(&w, "ttl", m.hdr.ttl);
	jw_xint(&w, "fragment", m.hdr.fragment, 4);
	jw_bool(&w, "last_fragment", (m.hdr.fragment & RL_FRAG_LAST) != 0);
	jw_u64(&w, "fragment_offset", m.hdr.fragment & RL_FRAG_OFFSET_MASK);
	jw_u64(&w, "length", m.hdr.length);
	jw_xint(&w, "transaction_id", m.hdr.txid, 8);
	jw_u64(&w, "max_response_length", m.hdr.max_response_length);
	json_dest_list(&w, "via_list", &m.hdr.via);
	json_dest_list(&w, "destination_list", &m.hdr.dest);
	{
		rl_fwd_option_t o;
		jw_arr(&w, "forwarding_options");
		RL_ITER_INIT(&it, &m.hdr.options);
		while ((r = rl_fwd_option_next(&it, &o)) == 1) {
			jw_obj(&w, NULL);
			jw_u64(&w, "type", o.type);
			jw_u64(&w, "flags", o.flags);
			jw_bool(&w, "forward_critical", o.flags & RL_FWDOPT_FORWARD_CRITICAL);
			jw_bool(&w, "destination_critical", o.flags & RL_FWDOPT_DESTINATION_CRITICAL);
			jw_bool(&w, "response_copy", o.flags & RL_FWDOPT_RESPONSE_COPY);
			jw_hex(&w, "data", o.data.p, o.data.len);
			jw_end(&w);
		}
		jw_note(&w, r);
		jw_arr_end(&w);
	}
	jw_end(&w);

	jw_obj(&w, "message_contents");
	jw_u64(&w, "message_code", m.contents.code);
	jw_cstr(&w, "message_name", rl_msg_code_name(m.contents.code));
	jw_u64(&w, "body_length", m.contents.body.len);
	json_body(&w, &b, fn, ctx);
	{
		rl_ext_t x;
		jw_arr(&w, "extensions");
		RL_ITER_INIT(&it, &m.contents.exts);
		while ((r = rl_ext_next(&it, &x)) == 1) {
			jw_obj(&w, NULL);
			jw_u64(&w, "type", x.type);
			jw_bool(&w, "critical", x.critical);
			jw_bhex(&w, "contents", &x.contents);
			jw_end(&w);
		}
		jw_note(&w, r);
		jw_arr_end(&w);
	}
	jw_end(&w);

	jw_obj(&w, "security_block");
	{
		rl_cert_t c;
		uint8_t md[SHA256_DIGEST_LENGTH];
		jw_arr(&w, "certificates");
		RL_ITER_INIT(&it, &m.sec.certs);
		while ((r = rl_cert_next(&it, &c)) == 1) {
			jw_obj(&w, NULL);
			jw_u64(&w, "type", c.type);
			jw_u64(&w, "length", c.der.len);
			SHA256(c.der.p, c.der.len, md);
			jw_hex(&w, "sha256", md, sizeof(md));
			jw_bhex(&w, "der", &c.der);
			jw_end(&w);
		}
		jw_note(&w, r);
		jw_arr_end(&w);
	}
	json_signature(&w, &m.sec.sig);
	jw_end(&w);
	jw_end(&w);
	fputc('\n', out);
	return w.err;
}
