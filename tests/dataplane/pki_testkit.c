#include "pki_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

vp_id_t pk_id(uint8_t b)
{
	vp_id_t id;
	memset(id.b, b, sizeof(id.b));
	return id;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

static long serial_next(void)
{
	static long serial = 1000;
	return serial++;
}

int pk_ca_new(pk_ca_t *ca, const char *cn)
{
	X509_NAME *name;
	memset(ca, 0, sizeof(*ca));
	ca->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ca->cert = X509_new();
	if (!ca->key || !ca->cert)
		goto fail;
	X509_set_version(ca->cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(ca->cert), serial_next());
	X509_gmtime_adj(X509_getm_notBefore(ca->cert), -86400);
	X509_gmtime_adj(X509_getm_notAfter(ca->cert), 10L * 365 * 86400);
	X509_set_pubkey(ca->cert, ca->key);
	name = X509_get_subject_name(ca->cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(ca->cert, name);
	if (add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash"))
		goto fail;
	if (!X509_sign(ca->cert, ca->key, EVP_sha256()))
		goto fail;
	return 0;
fail:
	pk_ca_free(ca);
	return -1;
}

void pk_ca_free(pk_ca_t *ca)
{
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	memset(ca, 0, sizeof(*ca));
}

int pk_node_new(pk_node_t *nd, const pk_ca_t *ca, const vp_id_t *ids, size_t n, const pk_opts_t *o)
{
	char san[4096];
	size_t off = 0;
	unsigned char *p;
	int len;

	memset(nd, 0, sizeof(*nd));
	nd->key = o->rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
	                 : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	nd->cert = X509_new();
	if (!nd->key || !nd->cert)
		goto fail;
	X509_set_version(nd->cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(nd->cert), serial_next());
	X509_gmtime_adj(X509_getm_notBefore(nd->cert), o->not_before_s);
	X509_gmtime_adj(X509_getm_notAfter(nd->cert), o->not_after_s);
	X509_set_pubkey(nd->cert, nd->key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(nd->cert), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"viprd node", -1, -1, 0);
	X509_set_issuer_name(nd->cert, X509_get_subject_name(ca->cert));
	for (size_t i = 0; i < n; i++) {
		char hex[VP_ID_HEX_LEN + 1];
		off += (size_t)snprintf(san + off, sizeof(san) - off, "%sURI:reload://%s@%s%s", i ? "," : "",
		                        vp_id_to_hex(&ids[i], hex), o->overlay, o->no_slash ? "" : "/");
		if (off >= sizeof(san))
			goto fail;
	}
	off += (size_t)snprintf(san + off, sizeof(san) - off, "%semail:carrier@%s", n ? "," : "", o->overlay);
	if (off >= sizeof(san))
		goto fail;
	if (add_ext(nd->cert, ca->cert, NID_subject_alt_name, san) ||
	    add_ext(nd->cert, ca->cert, NID_basic_constraints, o->ca_true ? "critical,CA:TRUE" : "critical,CA:FALSE") ||
	    add_ext(nd->cert, ca->cert, NID_key_usage, o->ca_true ? "critical,digitalSignature,keyCertSign"
	                                                         : "critical,digitalSignature") ||
	    add_ext(nd->cert, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    add_ext(nd->cert, ca->cert, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	if (!X509_sign(nd->cert, ca->key, EVP_sha256()))
		goto fail;
	len = i2d_X509(nd->cert, NULL);
	if (len <= 0)
		goto fail;
	nd->der = malloc((size_t)len);
	if (!nd->der)
		goto fail;
	p = nd->der;
	i2d_X509(nd->cert, &p);
	nd->der_len = (size_t)len;
	if (rl_signer_cert_hash(nd->der, nd->der_len, nd->hash, &nd->signer))
		goto fail;
	nd->rlcert.type = RL_CERT_X509;
	nd->rlcert.der.p = nd->der;
	nd->rlcert.der.len = (uint32_t)nd->der_len;
	return 0;
fail:
	pk_node_free(nd);
	return -1;
}

void pk_node_free(pk_node_t *nd)
{
	EVP_PKEY_free(nd->key);
	X509_free(nd->cert);
	free(nd->der);
	memset(nd, 0, sizeof(*nd));
}

int pk_ca_write(const pk_ca_t *ca, const char *path)
{
	FILE *f = fopen(path, "w");
	int ok;
	if (!f)
		return -1;
	ok = PEM_write_X509(f, ca->cert);
	fclose(f);
	return ok == 1 ? 0 : -1;
}

int pk_node_write(const pk_node_t *nd, const char *dir, const char *name)
{
	char path[1024];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
	if (!(f = fopen(path, "w")))
		return -1;
	ok = PEM_write_X509(f, nd->cert);
	fclose(f);
	if (ok != 1)
		return -1;
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	if (!(f = fopen(path, "w")))
		return -1;
	ok = PEM_write_PrivateKey(f, nd->key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	return ok == 1 ? 0 : -1;
}

size_t pk_sign_msg(uint8_t *buf, size_t cap, const pk_node_t *signer, const pk_node_t *carry,
                   const vp_id_t *via, size_t nvia, const vp_id_t *dest, const rl_body_t *body,
                   uint64_t txid)
{
	uint8_t sig[RL_MAX_SIG_LEN];
	rl_dest_t d = rl_dest_node(dest), v[8];
	rl_message_t m;
	vp_wr_t wr;

	if (nvia > 8)
		abort();
	memset(&m, 0, sizeof(m));
	m.hdr.overlay = rl_overlay_id("vipr.example", 12);
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = txid;
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	for (size_t i = 0; i < nvia; i++)
		v[i] = rl_dest_node(&via[i]);
	m.hdr.via.items = v;
	m.hdr.via.n_items = (uint32_t)nvia;
	m.contents.code = body->code;
	m.contents.body_st = body;
	if (carry) {
		m.sec.certs.items = &carry->rlcert;
		m.sec.certs.n_items = 1;
	}
	vp_wr_init(&wr, buf, cap);
	if (rl_msg_encode_signed(&wr, &m, signer->key, &signer->signer, sig, sizeof(sig)))
		abort();
	return vp_wr_len(&wr);
}
