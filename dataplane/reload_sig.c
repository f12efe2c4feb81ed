/*
 * dataplane/reload_sig.c - RELOAD signatures (RFC 6940 §7.3): signature
 * inputs for messages and StoredData, SHA-256 with RSA (PKCS#1 v1.5) or ECDSA
 * through OpenSSL EVP, and cert_hash SignerIdentities.
 *
 * The inputs are streamed into the digest piece by piece, so signing never
 * copies the message contents.
 */
#include "dataplane/reload.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "dataplane/reload_int.h"

/* Small fixed fields plus a SignerIdentity (at most 3 + 1 + 1 + 255 bytes). */
#define SMALL_BUF 512

/* A pre-built piece list: the signature input is the concatenation. */
typedef struct piece {
	const uint8_t *p;
	size_t len;
} piece_t;

static int key_sig_alg(EVP_PKEY *key, uint8_t *alg)
{
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA:
		*alg = RL_SIG_RSA;
		return 0;
	case EVP_PKEY_EC:
		*alg = RL_SIG_ECDSA;
		return 0;
	default:
		return VP_EUNSUPPORTED;
	}
}

static int sign_pieces(EVP_PKEY *key, const piece_t *pc, size_t n, uint8_t *sig, size_t cap,
                       size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t need = 0;
	int ret = VP_ECRYPTO;

	if (!ctx)
		return VP_ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (pc[i].len && EVP_DigestSignUpdate(ctx, pc[i].p, pc[i].len) != 1)
			goto out;
	if (EVP_DigestSignFinal(ctx, NULL, &need) != 1)
		goto out;
	if (need > cap || need > 0xFFFF) {
		ret = VP_ESPACE;
		goto out;
	}
	*siglen = cap;
	if (EVP_DigestSignFinal(ctx, sig, siglen) != 1)
		goto out;
	ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}

static int verify_pieces(EVP_PKEY *pub, const piece_t *pc, size_t n, const rl_signature_t *s)
{
	EVP_MD_CTX *ctx;
	uint8_t alg;
	int ret = VP_EAUTH;

	if (s->hash_alg != RL_HASH_SHA256)
		return VP_EUNSUPPORTED;
	if (key_sig_alg(pub, &alg))
		return VP_EUNSUPPORTED;
	if (alg != s->sig_alg)
		return VP_EAUTH;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return VP_ENOMEM;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) != 1) {
		ret = VP_ECRYPTO;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (pc[i].len && EVP_DigestVerifyUpdate(ctx, pc[i].p, pc[i].len) != 1) {
			ret = VP_ECRYPTO;
			goto out;
		}
	if (EVP_DigestVerifyFinal(ctx, s->value.p, s->value.len) == 1)
		ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* overlay ‖ transaction_id, then contents, then the SignerIdentity. */
static int msg_pieces(uint32_t overlay, uint64_t txid, const uint8_t *contents, size_t clen,
                      const rl_signer_identity_t *id, uint8_t head[12], uint8_t *idbuf,
                      size_t idcap, piece_t pc[3])
{
	vp_wr_t wr;

	vp_wr_init(&wr, head, 12);
	vp_wr_u32(&wr, overlay);
	vp_wr_u64(&wr, txid);
	vp_wr_init(&wr, idbuf, idcap);
	if (rl_signer_identity_encode(&wr, id))
		return wr.err;
	pc[0] = (piece_t){ head, 12 };
	pc[1] = (piece_t){ contents, clen };
	pc[2] = (piece_t){ idbuf, vp_wr_len(&wr) };
	return 0;
}

int rl_sig_input_msg(vp_wr_t *wr, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                     size_t contents_len, const rl_signer_identity_t *id)
{
	vp_wr_u32(wr, overlay);
	vp_wr_u64(wr, txid);
	vp_wr_bytes(wr, contents, contents_len);
	return rl_signer_identity_encode(wr, id);
}

int rl_msg_sign(EVP_PKEY *key, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                size_t contents_len, const rl_signer_identity_t *id, uint8_t *sigbuf,
                size_t sigcap, rl_signature_t *out)
{
	uint8_t head[12], idbuf[SMALL_BUF];
	piece_t pc[3];
	size_t siglen = 0;
	int e;

	memset(out, 0, sizeof(*out));
	if ((e = key_sig_alg(key, &out->sig_alg)))
		return e;
	if ((e = msg_pieces(overlay, txid, contents, contents_len, id, head, idbuf, sizeof(idbuf), pc)))
		return e;
	if ((e = sign_pieces(key, pc, 3, sigbuf, sigcap, &siglen)))
		return e;
	out->hash_alg = RL_HASH_SHA256;
	out->identity = *id;
	out->value.p = sigbuf;
	out->value.len = (uint32_t)siglen;
	return 0;
}

int rl_msg_verify(EVP_PKEY *pub, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                  size_t contents_len, const rl_signature_t *sig)
{
	uint8_t head[12], idbuf[SMALL_BUF];
	piece_t pc[3];
	int e;

	if ((e = msg_pieces(overlay, txid, contents, contents_len, &sig->identity, head, idbuf,
	                    sizeof(idbuf), pc)))
		return e;
	return verify_pieces(pub, pc, 3, sig);
}

int rl_signer_cert_hash(const uint8_t *der, size_t der_len, uint8_t hash[RL_MAX_HASH_LEN],
                        rl_signer_identity_t *id)
{
	if (!SHA256(der, der_len, hash))
		return VP_ECRYPTO;
	id->type = RL_SIGNER_CERT_HASH;
	id->hash_alg = RL_HASH_SHA256;
	id->hash.p = hash;
	id->hash.len = SHA256_DIGEST_LENGTH;
	return 0;
}

int rl_find_signer_cert(const rl_cert_list_t *certs, const rl_signer_identity_t *id, rl_cert_t *out)
{
	rl_iter_t it;
	rl_cert_t c;
	uint8_t md[SHA256_DIGEST_LENGTH];
	int r;

	if (id->type != RL_SIGNER_CERT_HASH || id->hash_alg != RL_HASH_SHA256 ||
	    id->hash.len != SHA256_DIGEST_LENGTH)
		return VP_EUNSUPPORTED;
	RL_ITER_INIT(&it, certs);
	while ((r = rl_cert_next(&it, &c)) == 1) {
		SHA256(c.der.p, c.der.len, md);
		if (memcmp(md, id->hash.p, sizeof(md)) == 0) {
			*out = c;
			return 0;
		}
	}
	return r < 0 ? r : VP_ENOTFOUND;
}

int rl_msg_verify_embedded(const rl_message_t *m)
{
	rl_cert_t c;
	const unsigned char *p;
	X509 *x = NULL;
	EVP_PKEY *pub = NULL;
	int e;

	if (m->sec.sig.identity.type == RL_SIGNER_NONE)
		return VP_EUNSUPPORTED;
	if ((e = rl_find_signer_cert(&m->sec.certs, &m->sec.sig.identity, &c)))
		return e;
	p = c.der.p;
	x = d2i_X509(NULL, &p, c.der.len);
	if (!x || p != c.der.p + c.der.len) {
		e = VP_EAUTH;
		goto out;
	}
	pub = X509_get_pubkey(x);
	if (!pub) {
		e = VP_EAUTH;
		goto out;
	}
	e = rl_msg_verify(pub, m->hdr.overlay, m->hdr.txid, m->contents.raw.p, m->contents.raw.len,
	                  &m->sec.sig);
out:
	EVP_PKEY_free(pub);
	X509_free(x);
	return e;
}

/*
 * StoredData input: resource_id ‖ kind ‖ storage_time ‖ StoredDataValue ‖
 * SignerIdentity.  The StoredDataValue's small head (index or key prefix,
 * exists, value length) goes in its own piece so the value is not copied.
 */
static int sd_pieces(const uint8_t *rid, size_t rid_len, uint32_t kind,
                     const rl_stored_data_t *sd, const rl_signer_identity_t *id,
                     uint8_t head[12], uint8_t *vhead, size_t vcap, uint8_t *idbuf,
                     size_t idcap, piece_t pc[7])
{
	vp_wr_t wr;
	size_t n = 0;

	if (sd->model == RL_MODEL_UNKNOWN)
		return VP_EINVAL;
	vp_wr_init(&wr, head, 12);
	vp_wr_u32(&wr, kind);
	vp_wr_u64(&wr, sd->storage_time);
	pc[n++] = (piece_t){ rid, rid_len };
	pc[n++] = (piece_t){ head, 12 };
	vp_wr_init(&wr, vhead, vcap);
	switch (sd->model) {
	case RL_MODEL_ARRAY:
		vp_wr_u32(&wr, sd->index);
		break;
	case RL_MODEL_DICTIONARY:
		vp_wr_u16(&wr, (uint16_t)sd->key.len);
		if (sd->key.len > 0xFFFF)
			return VP_ERANGE;
		break;
	default:
		break;
	}
	pc[n++] = (piece_t){ vhead, vp_wr_len(&wr) };
	if (sd->model == RL_MODEL_DICTIONARY)
		pc[n++] = (piece_t){ sd->key.p, sd->key.len };
	{
		size_t mark = vp_wr_len(&wr);
		vp_wr_u8(&wr, sd->exists ? 1 : 0);
		vp_wr_u32(&wr, sd->value.len);
		if (wr.err)
			return wr.err;
		pc[n++] = (piece_t){ vhead + mark, vp_wr_len(&wr) - mark };
	}
	pc[n++] = (piece_t){ sd->value.p, sd->value.len };
	vp_wr_init(&wr, idbuf, idcap);
	if (rl_signer_identity_encode(&wr, id))
		return wr.err;
	pc[n++] = (piece_t){ idbuf, vp_wr_len(&wr) };
	return (int)n;
}

int rl_sig_input_stored_data(vp_wr_t *wr, const uint8_t *rid, size_t rid_len, uint32_t kind,
                             const rl_stored_data_t *sd, const rl_signer_identity_t *id)
{
	if (sd->model == RL_MODEL_UNKNOWN)
		return vp_wr_fail(wr, VP_EINVAL);
	vp_wr_bytes(wr, rid, rid_len);
	vp_wr_u32(wr, kind);
	vp_wr_u64(wr, sd->storage_time);
	rl_stored_data_value_encode(wr, sd);
	return rl_signer_identity_encode(wr, id);
}

int rl_stored_data_sign(EVP_PKEY *key, const uint8_t *rid, size_t rid_len, uint32_t kind,
                        rl_stored_data_t *sd, const rl_signer_identity_t *id, uint8_t *sigbuf,
                        size_t sigcap)
{
	uint8_t head[12], vhead[16], idbuf[SMALL_BUF];
	piece_t pc[7];
	size_t siglen = 0;
	uint8_t alg;
	int n, e;

	if ((e = key_sig_alg(key, &alg)))
		return e;
	n = sd_pieces(rid, rid_len, kind, sd, id, head, vhead, sizeof(vhead), idbuf, sizeof(idbuf), pc);
	if (n < 0)
		return n;
	if ((e = sign_pieces(key, pc, (size_t)n, sigbuf, sigcap, &siglen)))
		return e;
	sd->sig.hash_alg = RL_HASH_SHA256;
	sd->sig.sig_alg = alg;
	sd->sig.identity = *id;
	sd->sig.value.p = sigbuf;
	sd->sig.value.len = (uint32_t)siglen;
	return 0;
}

int rl_stored_data_verify(EVP_PKEY *pub, const uint8_t *rid, size_t rid_len, uint32_t kind,
                          const rl_stored_data_t *sd)
{
	uint8_t head[12], vhead[16], idbuf[SMALL_BUF];
	piece_t pc[7];
	int n;

	n = sd_pieces(rid, rid_len, kind, sd, &sd->sig.identity, head, vhead, sizeof(vhead), idbuf,
	              sizeof(idbuf), pc);
	if (n < 0)
		return n;
	return verify_pieces(pub, pc, (size_t)n, &sd->sig);
}

int rl_stored_data_verify_digest(const uint8_t *rid, size_t rid_len, uint32_t kind, const rl_stored_data_t *sd,
                                 uint8_t out[32])
{
	uint8_t head[12], vhead[16], idbuf[SMALL_BUF], algs[6];
	piece_t pc[7];
	EVP_MD_CTX *ctx;
	unsigned olen = 0;
	int n, ret = VP_ECRYPTO;
	vp_wr_t wr;

	n = sd_pieces(rid, rid_len, kind, sd, &sd->sig.identity, head, vhead, sizeof(vhead), idbuf,
	              sizeof(idbuf), pc);
	if (n < 0)
		return n;
	vp_wr_init(&wr, algs, sizeof(algs));
	vp_wr_u8(&wr, sd->sig.hash_alg);
	vp_wr_u8(&wr, sd->sig.sig_alg);
	vp_wr_u32(&wr, sd->sig.value.len);
	if (!(ctx = EVP_MD_CTX_new()))
		return VP_ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (int i = 0; i < n; i++)
		if (pc[i].len && EVP_DigestUpdate(ctx, pc[i].p, pc[i].len) != 1)
			goto out;
	if (EVP_DigestUpdate(ctx, algs, sizeof(algs)) != 1 ||
	    (sd->sig.value.len && EVP_DigestUpdate(ctx, sd->sig.value.p, sd->sig.value.len) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &olen) != 1 || olen != 32)
		goto out;
	ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}
