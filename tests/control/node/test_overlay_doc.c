/* The configuration document: parsing (fixtures in the style of the public RFC 6940 readers), the signature,
 * the trust rules (anchor, configuration signer, sequence) and the bad-node list as a node applies them.
 * argv[1] is the fixtures directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "control/node/ca.h"
#include "control/node/overlay_doc.h"

#define OVERLAY "vipr.test"

static const char *g_fixtures;

/* One overlay: CA, configuration signer, a signed first document. */
typedef struct world {
	ca_t *ca;
	EVP_PKEY *skey;
	X509 *scert;
	vp_id_t signer_id;
	char *doc; /* signed, sequence 1 */
	size_t len;
} world_t;

static char *build_doc(world_t *w, ca_t *ca, const vp_id_t *signers, size_t n_signers, uint64_t seq, size_t *len)
{
	X509 *root = ca_cert(ca);
	od_bootstrap_t b = { .address = "127.0.0.1", .port = 6084 };
	od_build_params_t p = {
		.instance = OVERLAY, .sequence = seq, .roots = &root, .n_roots = 1,
		.enrollment_server = "https://localhost:8443/enroll", .config_signers = signers,
		.n_config_signers = n_signers, .bootstrap = &b, .n_bootstrap = 1, .max_message_size = 65536,
		.initial_ttl = 100, .chord_update_interval = 600, .chord_ping_interval = 3600, .chord_reactive = true,
		.vipr_kind_id = 0xF0000100u, .vipr_max_count = 64, .vipr_max_size = 278, .vipr_quota = 10000,
		.vipr_min_lifetime = 60, .vipr_max_lifetime = 172800,
	};
	char *xml = NULL;
	(void)w;
	assert_int_equal(od_build(&p, &xml, len), 0);
	return xml;
}

static char *sign(const char *xml, size_t len, EVP_PKEY *key, X509 *cert, size_t *olen)
{
	char *out = NULL;
	assert_int_equal(od_sign(xml, len, NULL, key, cert, &out, olen), 0);
	return out;
}

static void make_signer(ca_t *ca, EVP_PKEY **key, X509 **cert, vp_id_t *id)
{
	assert_int_equal(ca_key_generate(CA_KEY_EC_P256, key), 0);
	assert_int_equal(ca_random_node_ids(id, 1), 0);
	ca_issue_params_t p = { .user = "config-signer@" OVERLAY, .ids = id, .n_ids = 1, .lifetime_s = 86400 };
	assert_int_equal(ca_issue_key(ca, *key, &p, cert), 0);
}

static int world_setup(void **state)
{
	world_t *w = calloc(1, sizeof(*w));
	size_t len;
	char *xml;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400 * 30, &w->ca), 0);
	make_signer(w->ca, &w->skey, &w->scert, &w->signer_id);
	xml = build_doc(w, w->ca, &w->signer_id, 1, 1, &len);
	w->doc = sign(xml, len, w->skey, w->scert, &w->len);
	free(xml);
	*state = w;
	return 0;
}

static int world_teardown(void **state)
{
	world_t *w = *state;
	free(w->doc);
	X509_free(w->scert);
	EVP_PKEY_free(w->skey);
	ca_free(w->ca);
	free(w);
	return 0;
}

static od_trust_t *trust_on(world_t *w)
{
	od_trust_t *t = NULL;
	assert_int_equal(od_trust_new(OVERLAY, ca_cert(w->ca), NULL, &t), 0);
	return t;
}

/* Replace the first occurrence of \p from by \p to (a copy, free()). */
static char *replace(const char *s, const char *from, const char *to, size_t *len)
{
	const char *at = strstr(s, from);
	size_t a, n;
	char *out;
	assert_non_null(at);
	a = (size_t)(at - s);
	n = strlen(s) - strlen(from) + strlen(to);
	out = malloc(n + 1);
	memcpy(out, s, a);
	memcpy(out + a, to, strlen(to));
	strcpy(out + a + strlen(to), at + strlen(from));
	*len = n;
	return out;
}

static char *read_fixture(const char *name, size_t *len)
{
	char path[1024];
	FILE *f;
	char *buf = malloc(1 << 16);
	snprintf(path, sizeof(path), "%s/%s", g_fixtures, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	*len = fread(buf, 1, (1 << 16) - 1, f);
	buf[*len] = 0;
	fclose(f);
	return buf;
}

static void valid_document_is_accepted_with_its_values(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	char why[OD_WHY_MAX];
	const od_doc_t *d;
	const od_kind_t *k;
	assert_int_equal(od_trust_accept(t, w->doc, w->len, 0, why), 0);
	d = od_trust_current(t);
	assert_non_null(d);
	assert_string_equal(d->instance_name, OVERLAY);
	assert_int_equal(d->sequence, 1);
	assert_int_equal(d->n_roots, 1);
	assert_int_equal(X509_cmp(d->roots[0], ca_cert(w->ca)), 0);
	assert_int_equal(d->n_config_signers, 1);
	assert_memory_equal(&d->config_signers[0], &w->signer_id, sizeof(vp_id_t));
	assert_int_equal(d->max_message_size, 65536);
	assert_int_equal(d->chord_update_interval, 600);
	assert_int_equal(d->n_bootstrap, 1);
	assert_int_equal(d->bootstrap[0].port, 6084);
	k = od_vipr_kind(d);
	assert_non_null(k);
	assert_int_equal(k->id, 0xF0000100u);
	assert_int_equal(k->data_model, OD_MODEL_DICTIONARY);
	assert_int_equal(k->max_count, 64);
	assert_int_equal(k->max_size, 278);
	assert_int_equal(k->vipr_quota, 10000);
	assert_int_equal(k->vipr_max_lifetime, 172800);
	/* the same document anchored by the root's fingerprint instead of the file */
	{
		uint8_t fp[32];
		od_trust_t *t2 = NULL;
		ca_cert_fingerprint(ca_cert(w->ca), fp);
		assert_int_equal(od_trust_new(OVERLAY, NULL, fp, &t2), 0);
		assert_int_equal(od_trust_accept(t2, w->doc, w->len, 0, why), 0);
		od_trust_free(t2);
	}
	od_trust_free(t);
}

/* Changing one signed byte after signing (a bigger max-message-size) breaks the signature. */
static void altered_document_has_a_bad_signature(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	char why[OD_WHY_MAX], *bad;
	size_t len;
	bad = replace(w->doc, "<max-message-size>65536<", "<max-message-size>65537<", &len);
	assert_int_equal(od_trust_accept(t, bad, len, 0, why), VP_EAUTH);
	assert_non_null(strstr(why, "bad signature"));
	assert_null(od_trust_current(t));
	free(bad);
	/* whitespace outside the configuration is not signed and does not matter */
	bad = replace(w->doc, "<overlay ", "\n\n<overlay  ", &len);
	assert_int_equal(od_trust_accept(t, bad, len, 0, why), 0);
	free(bad);
	od_trust_free(t);
}

static void unsigned_document_is_refused(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	char why[OD_WHY_MAX], *xml;
	size_t len;
	xml = build_doc(w, w->ca, &w->signer_id, 1, 1, &len);
	assert_int_equal(od_trust_accept(t, xml, len, 0, why), VP_EAUTH);
	assert_non_null(strstr(why, "not signed"));
	free(xml);
	od_trust_free(t);
}

/* An attacker's document carries its own root and is signed by its own signer: it vouches for itself,
 * which is worth nothing to a node anchored on the real root (file or fingerprint). */
static void signer_outside_the_anchor_is_refused(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w), *t_fp = NULL;
	ca_t *evil = NULL;
	EVP_PKEY *ekey = NULL;
	X509 *ecert = NULL;
	vp_id_t eid;
	uint8_t fp[32];
	char why[OD_WHY_MAX], *xml, *signed_xml;
	size_t len, slen;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &evil), 0);
	make_signer(evil, &ekey, &ecert, &eid);
	xml = build_doc(w, evil, &eid, 1, 1, &len);
	signed_xml = sign(xml, len, ekey, ecert, &slen);
	assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), VP_EPERM);
	assert_non_null(strstr(why, "anchor"));
	ca_cert_fingerprint(ca_cert(w->ca), fp);
	assert_int_equal(od_trust_new(OVERLAY, NULL, fp, &t_fp), 0);
	assert_int_equal(od_trust_accept(t_fp, signed_xml, slen, 0, why), VP_EPERM);
	/* the same bytes are fine for a node anchored on the attacker's root: the rule, not the document */
	{
		od_trust_t *t_evil = NULL;
		assert_int_equal(od_trust_new(OVERLAY, ca_cert(evil), NULL, &t_evil), 0);
		assert_int_equal(od_trust_accept(t_evil, signed_xml, slen, 0, why), 0);
		od_trust_free(t_evil);
	}
	free(xml);
	free(signed_xml);
	X509_free(ecert);
	EVP_PKEY_free(ekey);
	ca_free(evil);
	od_trust_free(t_fp);
	od_trust_free(t);
}

/* An enrolled node (a valid certificate of the right CA) is not a configuration signer. */
static void later_document_from_a_non_signer_is_refused(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	EVP_PKEY *nkey = NULL;
	X509 *ncert = NULL;
	vp_id_t nid;
	char why[OD_WHY_MAX], *xml, *signed_xml;
	size_t len, slen;
	assert_int_equal(od_trust_accept(t, w->doc, w->len, 0, why), 0);
	make_signer(w->ca, &nkey, &ncert, &nid);
	/* it lists itself as signer of its own document: only the current document's list counts */
	xml = build_doc(w, w->ca, &nid, 1, 2, &len);
	signed_xml = sign(xml, len, nkey, ncert, &slen);
	assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), VP_EPERM);
	assert_non_null(strstr(why, "configuration-signer of the current"));
	assert_int_equal(od_trust_current(t)->sequence, 1);
	free(signed_xml);
	/* a forged signer: the real signer's Node-ID in a certificate from the attacker's own CA */
	{
		ca_t *evil = NULL;
		EVP_PKEY *fkey = NULL;
		X509 *fcert = NULL;
		free(xml);
		assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &evil), 0);
		assert_int_equal(ca_key_generate(CA_KEY_EC_P256, &fkey), 0);
		ca_issue_params_t fp = { .user = "config-signer@" OVERLAY, .ids = &w->signer_id, .n_ids = 1,
		                         .lifetime_s = 3600 };
		assert_int_equal(ca_issue_key(evil, fkey, &fp, &fcert), 0);
		xml = build_doc(w, w->ca, &w->signer_id, 1, 2, &len);
		signed_xml = sign(xml, len, fkey, fcert, &slen);
		assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), VP_EPERM);
		assert_non_null(strstr(why, "does not chain to the current roots"));
		assert_int_equal(od_trust_current(t)->sequence, 1);
		free(signed_xml);
		X509_free(fcert);
		EVP_PKEY_free(fkey);
		ca_free(evil);
	}
	/* the real signer's sequence 2 goes through */
	free(xml);
	xml = build_doc(w, w->ca, &w->signer_id, 1, 2, &len);
	signed_xml = sign(xml, len, w->skey, w->scert, &slen);
	assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), 0);
	assert_int_equal(od_trust_current(t)->sequence, 2);
	free(xml);
	free(signed_xml);
	X509_free(ncert);
	EVP_PKEY_free(nkey);
	od_trust_free(t);
}

/* A replayed or rolled-back document (lower or equal sequence) is refused; the node keeps the current one. */
static void lower_sequence_is_refused_and_current_kept(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	char why[OD_WHY_MAX], *docs[4];
	size_t lens[4];
	uint64_t seqs[4] = { 5, 4, 5, 6 };
	for (int i = 0; i < 4; i++) {
		size_t len;
		char *xml = build_doc(w, w->ca, &w->signer_id, 1, seqs[i], &len);
		docs[i] = sign(xml, len, w->skey, w->scert, &lens[i]);
		free(xml);
	}
	assert_int_equal(od_trust_accept(t, docs[0], lens[0], 0, why), 0);
	assert_int_equal(od_trust_accept(t, docs[1], lens[1], 0, why), VP_EDATA_TOO_OLD);
	assert_non_null(strstr(why, "not higher"));
	assert_int_equal(od_trust_current(t)->sequence, 5);
	assert_int_equal(od_trust_accept(t, docs[2], lens[2], 0, why), VP_EDATA_TOO_OLD);
	assert_int_equal(od_trust_current(t)->sequence, 5);
	assert_int_equal(od_trust_accept(t, docs[3], lens[3], 0, why), 0);
	assert_int_equal(od_trust_current(t)->sequence, 6);
	for (int i = 0; i < 4; i++)
		free(docs[i]);
	od_trust_free(t);
}

/* RFC 6940 §11.1: extensions live in their own namespace (ignored); an unknown element in the RELOAD
 * namespace is not a valid document (refused), even when properly signed. */
static void unknown_elements_follow_the_schema(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	char why[OD_WHY_MAX], *xml, *x2, *signed_xml;
	size_t len, l2, slen;
	xml = build_doc(w, w->ca, &w->signer_id, 1, 1, &len);
	x2 = replace(xml, "<topology-plugin>", "<ext:hint xmlns:ext=\"urn:example:ext\">x</ext:hint><topology-plugin>", &l2);
	signed_xml = sign(x2, l2, w->skey, w->scert, &slen);
	assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), 0);
	assert_int_equal(od_trust_current(t)->n_foreign, 1);
	free(x2);
	free(signed_xml);
	x2 = replace(xml, "<topology-plugin>", "<turbo-mode>on</turbo-mode><topology-plugin>", &l2);
	signed_xml = sign(x2, l2, w->skey, w->scert, &slen);
	od_trust_free(t);
	t = trust_on(w);
	assert_int_equal(od_trust_accept(t, signed_xml, slen, 0, why), VP_EMALFORMED);
	assert_non_null(strstr(why, "turbo-mode"));
	free(x2);
	free(signed_xml);
	free(xml);
	od_trust_free(t);
}

/* revoke: sequence + 1 and the Node-ID on the bad-node list; a node then refuses that certificate. */
static void revoked_node_id_is_refused_by_a_node(void **state)
{
	world_t *w = *state;
	od_trust_t *t = trust_on(w);
	EVP_PKEY *k1 = NULL, *k2 = NULL;
	X509 *c1 = NULL, *c2 = NULL;
	vp_id_t id1, id2, ids[8];
	size_t n = 0, len;
	char why[OD_WHY_MAX], *next = NULL;
	make_signer(w->ca, &k1, &c1, &id1); /* two ordinary node certificates */
	make_signer(w->ca, &k2, &c2, &id2);
	assert_int_equal(od_trust_accept(t, w->doc, w->len, 0, why), 0);
	assert_int_equal(od_trust_check_peer(t, c1, 0, ids, 8, &n, why), 0);
	assert_int_equal(n, 1);
	od_edit_t e = { .add_bad_nodes = &id1, .n_add_bad_nodes = 1 };
	assert_int_equal(od_edit_and_sign(w->doc, w->len, NULL, &e, w->skey, w->scert, &next, &len), 0);
	assert_int_equal(od_trust_accept(t, next, len, 0, why), 0);
	assert_int_equal(od_trust_current(t)->sequence, 2);
	assert_int_equal(od_trust_check_peer(t, c1, 0, ids, 8, &n, why), VP_EPERM);
	assert_non_null(strstr(why, "bad-node"));
	assert_int_equal(od_trust_check_peer(t, c2, 0, ids, 8, &n, why), 0);
	/* a certificate for a fresh Node-ID from another CA is no way around it */
	{
		ca_t *evil = NULL;
		EVP_PKEY *k3 = NULL;
		X509 *c3 = NULL;
		vp_id_t id3;
		assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &evil), 0);
		make_signer(evil, &k3, &c3, &id3);
		assert_int_equal(od_trust_check_peer(t, c3, 0, ids, 8, &n, why), VP_EAUTH);
		X509_free(c3);
		EVP_PKEY_free(k3);
		ca_free(evil);
	}
	/* the revocation cannot be undone by replaying the first document */
	assert_int_equal(od_trust_accept(t, w->doc, w->len, 0, why), VP_EDATA_TOO_OLD);
	assert_int_equal(od_trust_check_peer(t, c1, 0, ids, 8, &n, why), VP_EPERM);
	free(next);
	X509_free(c1);
	X509_free(c2);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	od_trust_free(t);
}

static void interop_style_fixture_parses(void **state)
{
	char why[OD_WHY_MAX], *xml;
	size_t len;
	od_doc_t *d = NULL;
	(void)state;
	xml = read_fixture("interop_style.xml", &len);
	assert_int_equal(od_parse(xml, len, "fixture.example", &d, why), 0);
	assert_int_equal(d->sequence, 22);
	assert_int_equal(d->expiration, 1917846000); /* 2030-10-10T07:00:00Z */
	assert_false(d->self_signed_permitted);
	assert_false(d->clients_permitted);
	assert_int_equal(d->n_bootstrap, 2);
	assert_int_equal(d->bootstrap[1].port, 6084);
	assert_int_equal(d->max_message_size, 15000);
	assert_int_equal(d->chord_ping_interval, 300);
	assert_false(d->chord_reactive);
	assert_int_equal(d->n_kinds, 3);
	assert_int_equal(d->kinds[1].id, 1);
	assert_string_equal(d->kinds[1].name, "SIP-REGISTRATION");
	assert_int_equal(d->n_config_signers, 0); /* 16 hex digits: not a 128-bit Node-ID */
	assert_int_equal(d->n_kind_signers, 1);
	assert_int_equal(d->n_ignored_ids, 1);
	assert_int_equal(d->n_bad_nodes, 2);
	assert_int_equal(d->n_foreign, 1);
	assert_non_null(od_vipr_kind(d));
	assert_int_equal(od_vipr_kind(d)->vipr_quota, 10000);
	/* its signature is a placeholder: present, but not a SecurityBlock */
	assert_int_equal(od_verify(d, why), VP_EMALFORMED);
	od_doc_free(d);
	d = NULL;
	assert_int_equal(od_parse(xml, len, "other.example", &d, why), 0);
	assert_int_equal(d->sequence, 3);
	assert_null(d->signature); /* the signature follows the other configuration */
	od_doc_free(d);
	d = NULL;
	assert_int_equal(od_parse(xml, len, "missing.example", &d, why), VP_ENOTFOUND);
	free(xml);
}

static void refused_fixtures_say_why(void **state)
{
	char why[OD_WHY_MAX], *xml;
	size_t len;
	od_doc_t *d = NULL;
	(void)state;
	xml = read_fixture("unknown_reload_element.xml", &len);
	assert_int_equal(od_parse(xml, len, NULL, &d, why), VP_EMALFORMED);
	assert_non_null(strstr(why, "max-mesage-size"));
	free(xml);
	xml = read_fixture("doctype.xml", &len);
	assert_int_equal(od_parse(xml, len, NULL, &d, why), VP_EMALFORMED);
	assert_non_null(strstr(why, "document type"));
	free(xml);
	xml = read_fixture("mandatory_extension.xml", &len);
	assert_int_equal(od_parse(xml, len, NULL, &d, why), 0);
	assert_int_equal(od_check_usable(d, why), VP_EUNSUPPORTED);
	assert_non_null(strstr(why, "diagnostics"));
	od_doc_free(d);
	d = NULL;
	free(xml);
	assert_int_equal(od_parse("<overlay", 8, NULL, &d, why), VP_EMALFORMED);
	assert_non_null(strstr(why, "well-formed"));
	assert_int_equal(od_parse("<overlay xmlns=\"urn:other\"/>", 28, NULL, &d, why), VP_EMALFORMED);
	assert_null(d);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(valid_document_is_accepted_with_its_values, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(altered_document_has_a_bad_signature, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(unsigned_document_is_refused, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(signer_outside_the_anchor_is_refused, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(later_document_from_a_non_signer_is_refused, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(lower_sequence_is_refused_and_current_kept, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(unknown_elements_follow_the_schema, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(revoked_node_id_is_refused_by_a_node, world_setup, world_teardown),
		cmocka_unit_test(interop_style_fixture_parses),
		cmocka_unit_test(refused_fixtures_say_why),
	};
	if (argc < 2) {
		fprintf(stderr, "usage: %s FIXTURES-DIR\n", argv[0]);
		return 2;
	}
	g_fixtures = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
