/*
 * control/node/enroll.c - HTTPS client for RFC 6940 §11.2 / §11.3 (libcurl).
 */
#include "control/node/enroll.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/errcode.h"
#include "control/node/ca.h"
#include "control/node/overlay_doc.h"

static int fail(char *why, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, int rc, const char *fmt, ...)
{
	va_list ap;
	if (why) {
		va_start(ap, fmt);
		vsnprintf(why, ENR_WHY_MAX, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int enr_csr_create(EVP_PKEY *key, X509_REQ **out)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	int rc = VP_ECRYPTO;
	if (!req || !n)
		goto finish;
	if (!X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"viprd node", -1, -1, 0) ||
	    !X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, n) || !X509_REQ_set_pubkey(req, key) ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto finish;
	*out = req;
	req = NULL;
	rc = 0;
finish:
	ERR_clear_error();
	X509_NAME_free(n);
	X509_REQ_free(req);
	return rc;
}

int enr_csr_der(X509_REQ *req, uint8_t **der, size_t *len)
{
	unsigned char *p = NULL;
	int n = i2d_X509_REQ(req, &p);
	if (n <= 0)
		return VP_ECRYPTO;
	*der = p;
	*len = (size_t)n;
	return 0;
}

/* ---- transfers ---- */

typedef struct sink {
	char *p;
	size_t len, cap, max;
	bool too_big;
} sink_t;

static size_t sink_write(char *data, size_t size, size_t nmemb, void *ud)
{
	sink_t *s = ud;
	size_t n = size * nmemb;
	if (s->len + n > s->max) {
		s->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (s->len + n + 1 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 4096;
		char *p;
		while (nc < s->len + n + 1)
			nc *= 2;
		p = realloc(s->p, nc);
		if (!p)
			return 0;
		s->p = p;
		s->cap = nc;
	}
	memcpy(s->p + s->len, data, n);
	s->len += n;
	s->p[s->len] = 0;
	return n;
}

static CURL *easy_for(const enr_http_t *h, sink_t *s, char *errbuf)
{
	CURL *c = curl_easy_init();
	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, h->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(h->timeout_ms ? h->timeout_ms : 10000));
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	if (h->cert_file && h->key_file) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, h->cert_file);
		curl_easy_setopt(c, CURLOPT_SSLKEY, h->key_file);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	return c;
}

/* The first line of a text answer, for the reason shown to the operator. */
static void first_line(const sink_t *s, char *out, size_t cap)
{
	size_t n = 0;
	if (s->p)
		while (n < s->len && n + 1 < cap && s->p[n] != '\n' && s->p[n] != '\r' && s->p[n] >= 0x20)
			n++;
	memcpy(out, s->p ? s->p : "", n);
	out[n] = 0;
}

int enr_fetch_config(const enr_http_t *h, char **xml, size_t *len, char *why)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	sink_t s = { .max = OD_MAX_DOC };
	struct curl_slist *hdr = NULL;
	long status = 0;
	CURL *c = easy_for(h, &s, errbuf);
	CURLcode cc;
	int rc;
	if (!c)
		return VP_ENOMEM;
	hdr = curl_slist_append(hdr, "Accept: " OD_MEDIA_TYPE);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (s.too_big)
		rc = fail(why, VP_ETOOBIG, "configuration document larger than %d bytes", OD_MAX_DOC);
	else if (cc != CURLE_OK)
		rc = fail(why, VP_EIO, "fetch %s: %s", h->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	else if (status != 200)
		rc = fail(why, VP_EIO, "fetch %s: HTTP %ld", h->url, status);
	else if (!s.p)
		rc = fail(why, VP_EMALFORMED, "fetch %s: empty answer", h->url);
	else {
		*xml = s.p;
		*len = s.len;
		s.p = NULL;
		rc = 0;
	}
	free(s.p);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return rc;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);
	if (*len + n + 1 > *cap) {
		size_t nc = (*len + n + 1) * 2;
		char *p = realloc(*buf, nc);
		if (!p)
			return VP_ENOMEM;
		*buf = p;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
	return 0;
}

/* One form field name=value, value percent-encoded by libcurl. */
static int field(CURL *c, char **buf, size_t *len, size_t *cap, const char *name, const char *value)
{
	char *esc = curl_easy_escape(c, value, 0);
	int rc;
	if (!esc)
		return VP_ENOMEM;
	rc = (*len ? append(buf, len, cap, "&") : 0);
	if (!rc)
		rc = append(buf, len, cap, name);
	if (!rc)
		rc = append(buf, len, cap, "=");
	if (!rc)
		rc = append(buf, len, cap, esc);
	curl_free(esc);
	return rc;
}

int enr_enroll(const enr_http_t *h, const enr_request_t *r, X509 **cert, long *status, char *why)
{
	char errbuf[CURL_ERROR_SIZE] = "", num[16], line[ENR_WHY_MAX];
	sink_t s = { .max = ENR_MAX_ANSWER };
	struct curl_slist *hdr = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0, blen = 0, bcap = 0;
	char *body = NULL, *b64 = NULL;
	CURL *c = NULL;
	CURLcode cc;
	int rc;
	*status = 0;
	if ((rc = enr_csr_der(r->csr, &der, &der_len)))
		return rc;
	b64 = malloc(der_len / 3 * 4 + 8);
	c = easy_for(h, &s, errbuf);
	if (!b64 || !c) {
		rc = VP_ENOMEM;
		goto finish;
	}
	EVP_EncodeBlock((unsigned char *)b64, der, (int)der_len);
	if (r->username && (rc = field(c, &body, &blen, &bcap, "username", r->username)))
		goto finish;
	if (r->password && (rc = field(c, &body, &blen, &bcap, "password", r->password)))
		goto finish;
	if (r->username) {
		snprintf(num, sizeof(num), "%u", r->nodeids);
		if ((rc = field(c, &body, &blen, &bcap, "nodeids", num)))
			goto finish;
	}
	if ((rc = field(c, &body, &blen, &bcap, "csr", b64)))
		goto finish;
	hdr = curl_slist_append(hdr, "Accept: application/pkix-cert");
	hdr = curl_slist_append(hdr, "Content-Type: application/x-www-form-urlencoded");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (s.too_big) {
		rc = fail(why, VP_ETOOBIG, "answer larger than %d bytes", ENR_MAX_ANSWER);
	} else if (cc != CURLE_OK) {
		rc = fail(why, VP_EIO, "enroll %s: %s", h->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	} else if (*status != 200) {
		first_line(&s, line, sizeof(line));
		rc = *status == 401 || *status == 403 ? VP_EAUTH
		   : *status == 400 || *status == 413 ? VP_EINVAL
		   : *status == 429 ? VP_ERATELIMIT : VP_EIO;
		fail(why, rc, "HTTP %ld: %s", *status, line[0] ? line : "(no reason given)");
	} else {
		const unsigned char *p = (const unsigned char *)s.p;
		X509 *x = s.p ? d2i_X509(NULL, &p, (long)s.len) : NULL;
		if (!x || p != (const unsigned char *)s.p + s.len) {
			X509_free(x);
			ERR_clear_error();
			rc = fail(why, VP_EMALFORMED, "the answer is not a DER certificate");
		} else {
			*cert = x;
			rc = 0;
		}
	}
finish:
	free(s.p);
	free(body);
	free(b64);
	OPENSSL_free(der);
	curl_slist_free_all(hdr);
	if (c)
		curl_easy_cleanup(c);
	return rc;
}

int enr_check_issued(X509 *cert, EVP_PKEY *key, const char *overlay, size_t expect_n,
                     const vp_id_t *expect_ids, char *why)
{
	vp_id_t ids[CA_MAX_NODE_IDS];
	size_t n = 0;
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		return fail(why, VP_EAUTH, "the certificate is not for our key");
	}
	if (ca_cert_node_ids(cert, overlay, ids, CA_MAX_NODE_IDS, &n) || n != expect_n)
		return fail(why, VP_EAUTH, "the certificate carries %zu Node-IDs of %s, expected %zu", n, overlay,
		            expect_n);
	if (expect_ids)
		for (size_t i = 0; i < n; i++)
			if (!vp_id_eq(&ids[i], &expect_ids[i]))
				return fail(why, VP_EAUTH, "renewal changed Node-ID %zu", i);
	return 0;
}
