/*
 * dataplane/cert.c - the overlay trust store, the verified-certificate cache,
 * the destination's message and StoredData checks, and the replay window.
 */
#include "dataplane/cert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/rand.h"

static const char *const reason_names[DP_CERT_REASON_COUNT] = {
	[DP_CERT_OK] = "ok",
	[DP_CERT_MALFORMED] = "cert_malformed",
	[DP_CERT_UNTRUSTED] = "cert_untrusted",
	[DP_CERT_EXPIRED] = "cert_expired",
	[DP_CERT_NOT_YET_VALID] = "cert_not_yet_valid",
	[DP_CERT_REVOKED] = "cert_revoked",
	[DP_CERT_NO_NODE_ID] = "cert_no_node_id",
	[DP_CERT_PROFILE] = "cert_profile",
	[DP_CERT_NO_CERT] = "signer_cert_missing",
	[DP_CERT_BAD_SIGNATURE] = "bad_signature",
	[DP_CERT_SIG_ALG] = "signature_algorithm",
	[DP_CERT_NOT_ORIGINATOR] = "signer_not_originator",
	[DP_CERT_REPLAYED] = "replayed",
	[DP_CERT_TOO_OLD] = "stored_data_too_old",
	[DP_CERT_NOT_CLAIMANT] = "signer_not_claimant",
};

const char *dp_cert_reason_name(dp_cert_reason_t r)
{
	if ((unsigned)r >= DP_CERT_REASON_COUNT || !reason_names[r])
		return "unknown";
	return reason_names[r];
}

/* ---- store and cache ----------------------------------------------------- */

typedef struct entry {
	dp_cert_ident_t id;
	int32_t next; /* bucket chain, -1 = end */
	bool used;
} entry_t;

struct dp_cert_store {
	char overlay[256];
	X509_STORE *roots;
	const vp_clock_t *clock;
	vp_id_t *bad;       /* sorted */
	size_t n_bad;
	entry_t *ents;
	uint32_t n_ents;    /* capacity */
	uint32_t hand;      /* next slot to (re)use: FIFO replacement */
	int32_t *buckets;
	uint32_t bmask;
	/* Signatures of StoredData verified here: SHA-256 of what was checked ‖ signer certificate hash. */
	uint8_t (*memo)[2 * DP_CERT_HASH_LEN];
	uint64_t memo_hits;
};

static uint64_t now_ms(const dp_cert_store_t *s)
{
	return vp_clock_now_ms(s->clock);
}

static uint32_t bucket_of(const dp_cert_store_t *s, const uint8_t *hash)
{
	uint64_t h;
	memcpy(&h, hash, sizeof(h)); /* SHA-256 output is already uniform */
	return (uint32_t)h & s->bmask;
}

int dp_cert_store_new(const dp_cert_store_cfg_t *cfg, dp_cert_store_t **out)
{
	dp_cert_store_t *s;
	uint32_t cap, nb = 1;

	*out = NULL;
	if (!cfg || !cfg->overlay || !cfg->overlay[0] || strlen(cfg->overlay) > 255)
		return VP_EINVAL;
	cap = cfg->cache_entries ? cfg->cache_entries : DP_CERT_CACHE_DEFAULT;
	if (cap > (1u << 24))
		return VP_EINVAL;
	while (nb < cap)
		nb <<= 1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return VP_ENOMEM;
	snprintf(s->overlay, sizeof(s->overlay), "%s", cfg->overlay);
	s->clock = cfg->clock;
	s->n_ents = cap;
	s->bmask = nb - 1;
	s->ents = calloc(cap, sizeof(*s->ents));
	s->buckets = malloc(nb * sizeof(*s->buckets));
	s->memo = calloc(DP_CERT_SIG_MEMO, sizeof(*s->memo));
	s->roots = X509_STORE_new();
	if (!s->ents || !s->buckets || !s->memo || !s->roots) {
		dp_cert_store_free(s);
		return VP_ENOMEM;
	}
	for (uint32_t i = 0; i < nb; i++)
		s->buckets[i] = -1;
	*out = s;
	return 0;
}

static void entry_clear(entry_t *e)
{
	EVP_PKEY_free(e->id.pub);
	X509_free(e->id.x509);
	memset(e, 0, sizeof(*e));
}

void dp_cert_store_free(dp_cert_store_t *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->ents && i < s->n_ents; i++)
		if (s->ents[i].used)
			entry_clear(&s->ents[i]);
	free(s->ents);
	free(s->buckets);
	free(s->memo);
	free(s->bad);
	X509_STORE_free(s->roots);
	free(s);
}

int dp_cert_store_add_root(dp_cert_store_t *s, X509 *root)
{
	if (!s || !root)
		return VP_EINVAL;
	return X509_STORE_add_cert(s->roots, root) == 1 ? 0 : VP_ECRYPTO;
}

int dp_cert_store_add_root_file(dp_cert_store_t *s, const char *path)
{
	FILE *f;
	X509 *x;
	int n = 0, ret = 0;

	if (!s || !path)
		return VP_EINVAL;
	f = fopen(path, "r");
	if (!f)
		return VP_EIO;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		ret = dp_cert_store_add_root(s, x);
		X509_free(x);
		if (ret)
			break;
		n++;
	}
	fclose(f);
	if (!ret && n == 0)
		ret = VP_ECONFIG;
	return ret;
}

static int id_cmp(const void *a, const void *b)
{
	return vp_id_cmp(a, b);
}

int dp_cert_store_set_bad_nodes(dp_cert_store_t *s, const vp_id_t *ids, size_t n)
{
	vp_id_t *copy = NULL;

	if (!s || (n && !ids))
		return VP_EINVAL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return VP_ENOMEM;
		memcpy(copy, ids, n * sizeof(*copy));
		qsort(copy, n, sizeof(*copy), id_cmp);
	}
	free(s->bad);
	s->bad = copy;
	s->n_bad = n;
	return 0;
}

X509_STORE *dp_cert_store_x509(dp_cert_store_t *s)
{
	return s->roots;
}

static bool is_bad(const dp_cert_store_t *s, const dp_cert_ident_t *id)
{
	for (uint32_t i = 0; s->n_bad && i < id->n_node_ids; i++)
		if (bsearch(&id->node_ids[i], s->bad, s->n_bad, sizeof(*s->bad), id_cmp))
			return true;
	return false;
}

bool dp_cert_ident_has(const dp_cert_ident_t *id, const vp_id_t *node)
{
	for (uint32_t i = 0; id && i < id->n_node_ids; i++)
		if (vp_id_eq(&id->node_ids[i], node))
			return true;
	return false;
}

static entry_t *cache_find(dp_cert_store_t *s, const uint8_t *hash)
{
	for (int32_t i = s->buckets[bucket_of(s, hash)]; i >= 0; i = s->ents[i].next)
		if (memcmp(s->ents[i].id.hash, hash, DP_CERT_HASH_LEN) == 0)
			return &s->ents[i];
	return NULL;
}

static void cache_unlink(dp_cert_store_t *s, uint32_t slot)
{
	int32_t *pp = &s->buckets[bucket_of(s, s->ents[slot].id.hash)];
	while (*pp >= 0 && *pp != (int32_t)slot)
		pp = &s->ents[*pp].next;
	if (*pp == (int32_t)slot)
		*pp = s->ents[slot].next;
}

/* Take over `id` (its key and certificate references) into the next slot. */
static const dp_cert_ident_t *cache_put(dp_cert_store_t *s, const dp_cert_ident_t *id)
{
	uint32_t slot = s->hand;
	uint32_t b;
	entry_t *e;

	s->hand = (s->hand + 1) % s->n_ents;
	e = &s->ents[slot];
	if (e->used) {
		cache_unlink(s, slot);
		entry_clear(e);
	}
	e->id = *id;
	e->used = true;
	b = bucket_of(s, id->hash);
	e->next = s->buckets[b];
	s->buckets[b] = (int32_t)slot;
	return &e->id;
}

const dp_cert_ident_t *dp_cert_lookup(dp_cert_store_t *s, const uint8_t hash[DP_CERT_HASH_LEN])
{
	entry_t *e = cache_find(s, hash);
	if (!e || e->id.not_after_ms < now_ms(s) || is_bad(s, &e->id))
		return NULL;
	return &e->id;
}

/* ---- certificate checks ------------------------------------------------- */

/* "reload://<32 hex>@<overlay>" with an optional trailing '/'. */
static bool parse_reload_uri(const char *u, size_t len, const char *overlay, vp_id_t *out)
{
	static const char pfx[] = "reload://";
	size_t olen = strlen(overlay), rest;
	char hex[VP_ID_HEX_LEN + 1];

	if (len < sizeof(pfx) - 1 + VP_ID_HEX_LEN + 1 || strncasecmp(u, pfx, sizeof(pfx) - 1) != 0)
		return false;
	u += sizeof(pfx) - 1;
	len -= sizeof(pfx) - 1;
	memcpy(hex, u, VP_ID_HEX_LEN);
	hex[VP_ID_HEX_LEN] = '\0';
	if (u[VP_ID_HEX_LEN] != '@' || vp_id_from_hex(hex, out))
		return false;
	u += VP_ID_HEX_LEN + 1;
	rest = len - VP_ID_HEX_LEN - 1;
	if (rest == olen + 1 && u[olen] == '/')
		rest = olen;
	/* Host names compare without case (RFC 3986 §3.2.2). */
	return rest == olen && strncasecmp(u, overlay, olen) == 0;
}

int dp_cert_node_ids(X509 *x, const char *overlay, vp_id_t *out, size_t cap)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int n = 0;

	if (!names)
		return 0;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		vp_id_t id;
		bool dup = false;
		if (g->type != GEN_URI)
			continue;
		if (!parse_reload_uri((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
		                      (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier), overlay, &id))
			continue;
		for (int j = 0; j < n; j++)
			dup |= vp_id_eq(&out[j], &id);
		if (dup)
			continue;
		if ((size_t)n >= cap) {
			n = VP_ESPACE;
			break;
		}
		out[n++] = id;
	}
	GENERAL_NAMES_free(names);
	return n;
}

static uint64_t asn1_time_ms(const ASN1_TIME *t)
{
	struct tm tm;
	time_t sec;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	sec = timegm(&tm);
	return sec < 0 ? 0 : (uint64_t)sec * 1000u;
}

static dp_cert_reason_t map_x509_err(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return DP_CERT_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return DP_CERT_NOT_YET_VALID;
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_INVALID_PURPOSE:
	case X509_V_ERR_INVALID_EXTENSION:
		return DP_CERT_PROFILE;
	default:
		return DP_CERT_UNTRUSTED;
	}
}

/* Full verification of a certificate not in the cache. */
static dp_cert_reason_t verify_fresh(dp_cert_store_t *s, X509 *leaf, STACK_OF(X509) *chain,
                                     dp_cert_ident_t *id)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	dp_cert_reason_t why = DP_CERT_UNTRUSTED;
	uint64_t now = now_ms(s), na = UINT64_MAX;
	STACK_OF(X509) *built;
	int n;

	if (!ctx)
		return DP_CERT_UNTRUSTED;
	if (X509_STORE_CTX_init(ctx, s->roots, leaf, chain) != 1)
		goto finish;
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)(now / 1000u));
	if (X509_verify_cert(ctx) != 1) {
		why = map_x509_err(X509_STORE_CTX_get_error(ctx));
		goto finish;
	}
	/* An end-entity certificate only: a CA key must not act as a node. */
	if (X509_check_ca(leaf) != 0) {
		why = DP_CERT_PROFILE;
		goto finish;
	}
	built = X509_STORE_CTX_get0_chain(ctx);
	for (int i = 0; built && i < sk_X509_num(built); i++) {
		uint64_t t = asn1_time_ms(X509_get0_notAfter(sk_X509_value(built, i)));
		if (t < na)
			na = t;
	}
	n = dp_cert_node_ids(leaf, s->overlay, id->node_ids, DP_CERT_MAX_NODE_IDS);
	if (n < 0) {
		why = DP_CERT_PROFILE;
		goto finish;
	}
	if (n == 0) {
		why = DP_CERT_NO_NODE_ID;
		goto finish;
	}
	id->n_node_ids = (uint32_t)n;
	id->not_after_ms = na;
	if (is_bad(s, id)) {
		why = DP_CERT_REVOKED;
		goto finish;
	}
	id->pub = X509_get_pubkey(leaf);
	if (!id->pub) {
		why = DP_CERT_PROFILE;
		goto finish;
	}
	why = DP_CERT_OK;
finish:
	X509_STORE_CTX_free(ctx);
	return why;
}

static int finish_verify(dp_cert_store_t *s, X509 *leaf, STACK_OF(X509) *chain, const uint8_t *hash,
                         const dp_cert_ident_t **out, dp_cert_reason_t *why)
{
	const dp_cert_ident_t *c;
	dp_cert_ident_t id;
	entry_t *old;

	*out = NULL;
	if ((c = dp_cert_lookup(s, hash)) != NULL) {
		*why = DP_CERT_OK;
		*out = c;
		return 0;
	}
	memset(&id, 0, sizeof(id));
	memcpy(id.hash, hash, DP_CERT_HASH_LEN);
	*why = verify_fresh(s, leaf, chain, &id);
	if (*why != DP_CERT_OK) {
		EVP_PKEY_free(id.pub);
		return VP_EAUTH;
	}
	/* A stale entry for the same certificate (expired, or its node was bad) gives way. */
	old = cache_find(s, hash);
	if (old) {
		uint32_t slot = (uint32_t)(old - s->ents);
		cache_unlink(s, slot);
		entry_clear(old);
	}
	X509_up_ref(leaf);
	id.x509 = leaf;
	*out = cache_put(s, &id);
	return 0;
}

int dp_cert_verify_x509(dp_cert_store_t *s, X509 *leaf, STACK_OF(X509) *chain,
                        const dp_cert_ident_t **out, dp_cert_reason_t *why)
{
	uint8_t hash[EVP_MAX_MD_SIZE];
	unsigned hl = 0;

	*out = NULL;
	if (!s || !leaf) {
		*why = DP_CERT_MALFORMED;
		return VP_EINVAL;
	}
	if (X509_digest(leaf, EVP_sha256(), hash, &hl) != 1 || hl != DP_CERT_HASH_LEN) {
		*why = DP_CERT_MALFORMED;
		return VP_EAUTH;
	}
	return finish_verify(s, leaf, chain, hash, out, why);
}

int dp_cert_verify_der(dp_cert_store_t *s, const uint8_t *der, size_t len, const dp_cert_ident_t **out,
                       dp_cert_reason_t *why)
{
	uint8_t hash[SHA256_DIGEST_LENGTH];
	const unsigned char *p = der;
	const dp_cert_ident_t *c;
	X509 *x;
	int e;

	*out = NULL;
	if (!s || !der || len == 0 || len > 0x7fffffff) {
		*why = DP_CERT_MALFORMED;
		return VP_EAUTH;
	}
	SHA256(der, len, hash);
	if ((c = dp_cert_lookup(s, hash)) != NULL) {
		*why = DP_CERT_OK;
		*out = c;
		return 0;
	}
	x = d2i_X509(NULL, &p, (long)len);
	if (!x || p != der + len) {
		X509_free(x);
		*why = DP_CERT_MALFORMED;
		return VP_EAUTH;
	}
	e = finish_verify(s, x, NULL, hash, out, why);
	X509_free(x);
	return e;
}

/* ---- roles ------------------------------------------------------------- */

int dp_cert_originator(const rl_message_t *m, const vp_id_t *link_peer, vp_id_t *out)
{
	rl_iter_t it;
	rl_dest_t d;
	int r;

	RL_ITER_INIT(&it, &m->hdr.via);
	r = rl_dest_next(&it, &d);
	if (r < 0)
		return r;
	if (r == 0) {
		if (!link_peer)
			return VP_EINVAL;
		*out = *link_peer;
		return 0;
	}
	if (d.type != RL_DEST_NODE || d.id.len != VP_ID_LEN)
		return VP_ERELOAD_DEST;
	memcpy(out->b, d.id.p, VP_ID_LEN);
	return 0;
}

/* Untrusted intermediates: every carried certificate but the signer's. */
static STACK_OF(X509) *carried_chain(const rl_cert_list_t *certs, const uint8_t *signer_der)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	rl_iter_t it;
	rl_cert_t c;

	if (!sk)
		return NULL;
	RL_ITER_INIT(&it, certs);
	while (rl_cert_next(&it, &c) == 1) {
		const unsigned char *p = c.der.p;
		X509 *x;
		if (c.der.p == signer_der || c.type != RL_CERT_X509)
			continue;
		x = d2i_X509(NULL, &p, c.der.len);
		if (x && !sk_X509_push(sk, x))
			X509_free(x);
	}
	return sk;
}

/* The signer's verified certificate: from the cache, else from `certs`. */
static int signer_ident(dp_cert_store_t *s, const rl_signature_t *sig, const rl_cert_list_t *certs,
                        const dp_cert_ident_t **out, dp_cert_reason_t *why)
{
	const rl_signer_identity_t *sid = &sig->identity;
	STACK_OF(X509) *chain;
	const unsigned char *p;
	rl_cert_t c;
	X509 *x;
	int e;

	*out = NULL;
	if (sid->type != RL_SIGNER_CERT_HASH || sid->hash_alg != RL_HASH_SHA256 ||
	    sid->hash.len != DP_CERT_HASH_LEN || sig->hash_alg != RL_HASH_SHA256 ||
	    (sig->sig_alg != RL_SIG_ECDSA && sig->sig_alg != RL_SIG_RSA)) {
		*why = DP_CERT_SIG_ALG;
		return VP_EAUTH;
	}
	if ((*out = dp_cert_lookup(s, sid->hash.p)) != NULL) {
		*why = DP_CERT_OK;
		return 0;
	}
	if (!certs || rl_find_signer_cert(certs, sid, &c) != 0) {
		*why = DP_CERT_NO_CERT;
		return VP_EAUTH;
	}
	p = c.der.p;
	x = d2i_X509(NULL, &p, c.der.len);
	if (!x || p != c.der.p + c.der.len) {
		X509_free(x);
		*why = DP_CERT_MALFORMED;
		return VP_EAUTH;
	}
	chain = carried_chain(certs, c.der.p);
	e = finish_verify(s, x, chain, sid->hash.p, out, why);
	sk_X509_pop_free(chain, X509_free);
	X509_free(x);
	return e;
}

static dp_cert_reason_t sig_reason(int e)
{
	return e == VP_EAUTH ? DP_CERT_BAD_SIGNATURE : DP_CERT_SIG_ALG;
}

int dp_cert_msg_verify(dp_cert_store_t *s, const rl_message_t *m, const vp_id_t *link_peer,
                       const dp_cert_ident_t **signer, dp_cert_reason_t *why)
{
	const dp_cert_ident_t *id;
	vp_id_t orig;
	int e;

	*signer = NULL;
	if ((e = signer_ident(s, &m->sec.sig, &m->sec.certs, &id, why)))
		return e;
	e = rl_msg_verify(id->pub, m->hdr.overlay, m->hdr.txid, m->contents.raw.p, m->contents.raw.len,
	                  &m->sec.sig);
	if (e) {
		*why = sig_reason(e);
		return VP_EAUTH;
	}
	if (dp_cert_originator(m, link_peer, &orig) || !dp_cert_ident_has(id, &orig)) {
		*why = DP_CERT_NOT_ORIGINATOR;
		return VP_EAUTH;
	}
	*why = DP_CERT_OK;
	*signer = id;
	return 0;
}

int dp_cert_stored_data_verify(dp_cert_store_t *s, const uint8_t *rid, size_t rid_len, uint32_t kind,
                               const rl_stored_data_t *sd, const rl_cert_list_t *certs,
                               const vp_id_t *claimant, uint32_t max_lifetime_s,
                               const dp_cert_ident_t **signer, dp_cert_reason_t *why)
{
	const dp_cert_ident_t *id;
	int e;

	uint8_t dg[DP_CERT_HASH_LEN], *slot = NULL;

	*signer = NULL;
	if ((e = signer_ident(s, &sd->sig, certs, &id, why)))
		return e;
	/* The same entry verified before under the same certificate (its other copies in a 3-copy fetch, a
	 * number fetched again): the memo answers for the signature; the certificate, claimant and age checks
	 * still run every time.  Only a verified signature enters the memo. */
	if (!rl_stored_data_verify_digest(rid, rid_len, kind, sd, dg)) {
		uint32_t i;
		memcpy(&i, dg, sizeof(i));
		slot = s->memo[i & (DP_CERT_SIG_MEMO - 1)];
	}
	if (slot && !memcmp(slot, dg, DP_CERT_HASH_LEN) && !memcmp(slot + DP_CERT_HASH_LEN, id->hash, DP_CERT_HASH_LEN)) {
		s->memo_hits++;
	} else {
		e = rl_stored_data_verify(id->pub, rid, rid_len, kind, sd);
		if (e) {
			*why = sig_reason(e);
			return VP_EAUTH;
		}
		if (slot) {
			memcpy(slot, dg, DP_CERT_HASH_LEN);
			memcpy(slot + DP_CERT_HASH_LEN, id->hash, DP_CERT_HASH_LEN);
		}
	}
	if (claimant && !dp_cert_ident_has(id, claimant)) {
		*why = DP_CERT_NOT_CLAIMANT;
		return VP_EAUTH;
	}
	if (max_lifetime_s && sd->storage_time + (uint64_t)max_lifetime_s * 1000u < now_ms(s)) {
		*why = DP_CERT_TOO_OLD;
		return VP_EAUTH;
	}
	*why = DP_CERT_OK;
	*signer = id;
	return 0;
}

uint64_t dp_cert_sig_memo_hits(const dp_cert_store_t *s)
{
	return s->memo_hits;
}

int dp_cert_topology_check(const rl_message_t *m, const vp_id_t *originator, const dp_cert_ident_t *signer,
                           dp_cert_reason_t *why)
{
	const vp_id_t *named = NULL;
	rl_body_t b;
	int e;

	*why = DP_CERT_OK;
	if (m->contents.code != RL_JOIN_REQ && m->contents.code != RL_LEAVE_REQ &&
	    m->contents.code != RL_UPDATE_REQ)
		return 0;
	if ((e = rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, NULL, NULL, &b)))
		return e;
	if (m->contents.code == RL_JOIN_REQ)
		named = &b.u.join_req.joining_peer;
	else if (m->contents.code == RL_LEAVE_REQ)
		named = &b.u.leave_req.leaving_peer;
	else
		named = originator; /* an Update speaks for its originator */
	if (!vp_id_eq(named, originator) || !dp_cert_ident_has(signer, named)) {
		*why = DP_CERT_NOT_ORIGINATOR;
		return VP_EAUTH;
	}
	return 0;
}

/* ---- replay window -------------------------------------------------------- */

typedef struct replay_ent {
	uint8_t hash[DP_CERT_HASH_LEN];
	uint64_t txid;
	uint64_t at;
	int32_t next;
} replay_ent_t;

struct dp_replay {
	uint64_t window;
	uint32_t cap, mask;  /* ring capacity (power of two) */
	uint32_t head, count; /* ring: oldest at (head - count) */
	uint64_t evicted;
	replay_ent_t *ring;
	int32_t *buckets;    /* cap buckets */
};

int dp_replay_new(uint64_t window_ms, uint32_t cap, dp_replay_t **out)
{
	dp_replay_t *r;
	uint32_t n = 1;

	*out = NULL;
	if (cap == 0 || cap > (1u << 24) || window_ms == 0)
		return VP_EINVAL;
	while (n < cap)
		n <<= 1;
	r = calloc(1, sizeof(*r));
	if (!r)
		return VP_ENOMEM;
	r->window = window_ms;
	r->cap = n;
	r->mask = n - 1;
	r->ring = calloc(n, sizeof(*r->ring));
	r->buckets = malloc(n * sizeof(*r->buckets));
	if (!r->ring || !r->buckets) {
		dp_replay_free(r);
		return VP_ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		r->buckets[i] = -1;
	*out = r;
	return 0;
}

void dp_replay_free(dp_replay_t *r)
{
	if (!r)
		return;
	free(r->ring);
	free(r->buckets);
	free(r);
}

static uint32_t replay_bucket(const dp_replay_t *r, const uint8_t *hash, uint64_t txid)
{
	uint64_t h;
	memcpy(&h, hash, sizeof(h));
	return (uint32_t)vp_fmix64(h ^ txid) & r->mask;
}

static void replay_drop_oldest(dp_replay_t *r)
{
	uint32_t slot = (r->head - r->count) & r->mask;
	replay_ent_t *e = &r->ring[slot];
	int32_t *pp = &r->buckets[replay_bucket(r, e->hash, e->txid)];
	while (*pp >= 0 && *pp != (int32_t)slot)
		pp = &r->ring[*pp].next;
	if (*pp == (int32_t)slot)
		*pp = e->next;
	r->count--;
}

int dp_replay_check(dp_replay_t *r, const uint8_t hash[DP_CERT_HASH_LEN], uint64_t txid, uint64_t now_ms)
{
	uint32_t b = replay_bucket(r, hash, txid), slot;
	replay_ent_t *e;

	/* Forget what left the window (the ring is in arrival order). */
	while (r->count && r->ring[(r->head - r->count) & r->mask].at + r->window <= now_ms)
		replay_drop_oldest(r);
	for (int32_t i = r->buckets[b]; i >= 0; i = r->ring[i].next)
		if (r->ring[i].txid == txid && memcmp(r->ring[i].hash, hash, DP_CERT_HASH_LEN) == 0)
			return VP_EEXIST;
	if (r->count == r->cap) {
		replay_drop_oldest(r);
		if (r->evicted++ % 65536 == 0)
			vp_log_warn("cert", "replay_window_full", "cap=%u window_ms=%llu evicted=%llu", r->cap,
			            (unsigned long long)r->window, (unsigned long long)r->evicted);
		b = replay_bucket(r, hash, txid);
	}
	slot = r->head & r->mask;
	e = &r->ring[slot];
	memcpy(e->hash, hash, DP_CERT_HASH_LEN);
	e->txid = txid;
	e->at = now_ms;
	e->next = r->buckets[b];
	r->buckets[b] = (int32_t)slot;
	r->head++;
	r->count++;
	return 0;
}

uint64_t dp_replay_evicted(const dp_replay_t *r)
{
	return r->evicted;
}
