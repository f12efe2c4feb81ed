/*
 * control/node/overlay_doc.c - the RFC 6940 §11.1 configuration document (docs/protocol.md §9.3-9.5).
 */
#include "control/node/overlay_doc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "control/node/ca.h"
#include "dataplane/reload.h"

#define RELOAD_PORT 6084

struct od_trust {
	char instance[OD_TEXT_MAX];
	X509 *anchor_root;
	uint8_t anchor_fp[32];
	bool has_fp;
	od_doc_t *current;
};

static int fail(char *why, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, int rc, const char *fmt, ...)
{
	va_list ap;
	if (why) {
		va_start(ap, fmt);
		vsnprintf(why, OD_WHY_MAX, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- small value readers ---- */

static bool ns_is(const xmlNode *n, const char *href)
{
	return n->ns && n->ns->href && strcmp((const char *)n->ns->href, href) == 0;
}

static bool name_is(const xmlNode *n, const char *name)
{
	return strcmp((const char *)n->name, name) == 0;
}

/* The element's text, whitespace trimmed, into out (VP_ESPACE if it does not fit). */
static int node_text(xmlNode *n, char *out, size_t cap)
{
	xmlChar *c = xmlNodeGetContent(n);
	const char *s = c ? (const char *)c : "";
	size_t len;
	int rc = 0;
	while (*s && isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len >= cap)
		rc = VP_ESPACE;
	else {
		memcpy(out, s, len);
		out[len] = 0;
	}
	xmlFree(c);
	return rc;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!*s || !isdigit((unsigned char)*s))
		return VP_EMALFORMED;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return VP_EMALFORMED;
	*out = v;
	return 0;
}

static int text_u32(xmlNode *n, uint32_t max, uint32_t *out, char *why)
{
	char t[32];
	uint64_t v;
	if (node_text(n, t, sizeof(t)) || parse_u64(t, max, &v))
		return fail(why, VP_EMALFORMED, "<%s>: not an integer in 0..%u", (const char *)n->name, max);
	*out = (uint32_t)v;
	return 0;
}

static int text_bool(xmlNode *n, bool *out, char *why)
{
	char t[16];
	if (node_text(n, t, sizeof(t)) == 0) {
		if (!strcmp(t, "true") || !strcmp(t, "1")) {
			*out = true;
			return 0;
		}
		if (!strcmp(t, "false") || !strcmp(t, "0")) {
			*out = false;
			return 0;
		}
	}
	return fail(why, VP_EMALFORMED, "<%s>: not a boolean (true, false, 1, 0)", (const char *)n->name);
}

/* xsd:dateTime: YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm). */
static int parse_datetime(const char *s, time_t *out)
{
	struct tm tm;
	const char *p;
	long off = 0;
	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return VP_EMALFORMED;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return VP_EMALFORMED;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z') {
		p++;
	} else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
	           p[3] == ':' && isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5])) {
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600L + ((p[4] - '0') * 10 + (p[5] - '0')) * 60L;
		if (*p == '-')
			off = -off;
		p += 6;
	} else {
		return VP_EMALFORMED;
	}
	if (*p)
		return VP_EMALFORMED;
	*out = timegm(&tm) - off;
	return 0;
}

/* Base64 (whitespace allowed, as XML writes it) into a new buffer. */
static int b64_decode(const char *s, uint8_t **out, size_t *outlen)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	size_t len = strlen(s);
	uint8_t *buf = malloc(len / 4 * 3 + 4);
	int n1 = 0, n2 = 0, rc = VP_EMALFORMED;
	if (!ctx || !buf) {
		rc = VP_ENOMEM;
		goto finish;
	}
	EVP_DecodeInit(ctx);
	if (len > INT32_MAX || EVP_DecodeUpdate(ctx, buf, &n1, (const unsigned char *)s, (int)len) < 0)
		goto finish;
	if (EVP_DecodeFinal(ctx, buf + n1, &n2) != 1)
		goto finish;
	if (n1 + n2 == 0)
		goto finish;
	*out = buf;
	*outlen = (size_t)(n1 + n2);
	buf = NULL;
	rc = 0;
finish:
	free(buf);
	EVP_ENCODE_CTX_free(ctx);
	return rc;
}

/* Base64 in 64-character lines. */
static char *b64_encode(const uint8_t *p, size_t len)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	char *out = malloc(len / 48 * 66 + 70);
	int n1 = 0, n2 = 0;
	if (!ctx || !out || len > INT32_MAX / 2) {
		free(out);
		EVP_ENCODE_CTX_free(ctx);
		return NULL;
	}
	EVP_EncodeInit(ctx);
	if (EVP_EncodeUpdate(ctx, (unsigned char *)out, &n1, p, (int)len) != 1) {
		free(out);
		EVP_ENCODE_CTX_free(ctx);
		return NULL;
	}
	EVP_EncodeFinal(ctx, (unsigned char *)out + n1, &n2);
	out[n1 + n2] = 0;
	EVP_ENCODE_CTX_free(ctx);
	return out;
}

/* A Node-ID value: exactly 32 hex digits; anything else names no node of a 128-bit overlay. */
static int add_id(xmlNode *n, vp_id_t *arr, size_t *count, size_t cap, od_doc_t *doc, char *why)
{
	char t[OD_TEXT_MAX];
	size_t got = 0;
	vp_id_t id;
	if (node_text(n, t, sizeof(t)) || strlen(t) != VP_ID_HEX_LEN ||
	    vp_hex_decode(t, VP_ID_HEX_LEN, id.b, VP_ID_LEN, &got) || got != VP_ID_LEN) {
		doc->n_ignored_ids++;
		return 0;
	}
	if (*count == cap)
		return fail(why, VP_EMALFORMED, "too many <%s> elements (at most %zu)", (const char *)n->name, cap);
	arr[(*count)++] = id;
	return 0;
}

static int add_bad(xmlNode *n, od_doc_t *doc, size_t *cap)
{
	char t[OD_TEXT_MAX];
	size_t got = 0;
	vp_id_t id;
	if (node_text(n, t, sizeof(t)) || strlen(t) != VP_ID_HEX_LEN ||
	    vp_hex_decode(t, VP_ID_HEX_LEN, id.b, VP_ID_LEN, &got) || got != VP_ID_LEN) {
		doc->n_ignored_ids++;
		return 0;
	}
	if (doc->n_bad_nodes == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		vp_id_t *p = realloc(doc->bad_nodes, nc * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		doc->bad_nodes = p;
		*cap = nc;
	}
	doc->bad_nodes[doc->n_bad_nodes++] = id;
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	return vp_id_cmp(a, b);
}

/* ---- the kinds ---- */

static int parse_kind(xmlNode *kn, od_kind_t *k, char *why)
{
	xmlChar *name = xmlGetNoNsProp(kn, (const xmlChar *)"name");
	xmlChar *id = xmlGetNoNsProp(kn, (const xmlChar *)"id");
	bool have_model = false, have_ac = false;
	int rc = 0;
	memset(k, 0, sizeof(*k));
	if (!name && !id) {
		rc = fail(why, VP_EMALFORMED, "<kind> needs a name or an id attribute");
		goto finish;
	}
	if (name) {
		if (strlen((const char *)name) >= sizeof(k->name)) {
			rc = fail(why, VP_EMALFORMED, "<kind> name too long");
			goto finish;
		}
		snprintf(k->name, sizeof(k->name), "%s", (const char *)name);
	}
	if (id) {
		uint64_t v;
		if (parse_u64((const char *)id, UINT32_MAX, &v) || v == 0) {
			rc = fail(why, VP_EMALFORMED, "<kind id=\"%s\">: not a Kind-ID (1..4294967295)",
			          (const char *)id);
			goto finish;
		}
		k->id = (uint32_t)v;
	}
	for (xmlNode *c = kn->children; c && !rc; c = c->next) {
		char t[64];
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (ns_is(c, OD_NS_BASE)) {
			if (name_is(c, "max-count"))
				rc = text_u32(c, INT32_MAX, &k->max_count, why);
			else if (name_is(c, "max-size"))
				rc = text_u32(c, INT32_MAX, &k->max_size, why);
			else if (name_is(c, "max-node-multiple"))
				rc = text_u32(c, INT32_MAX, &k->max_node_multiple, why);
			else if (name_is(c, "data-model")) {
				if (node_text(c, t, sizeof(t)))
					rc = fail(why, VP_EMALFORMED, "<data-model> too long");
				else
					k->data_model = !strcmp(t, "SINGLE") ? OD_MODEL_SINGLE
					              : !strcmp(t, "ARRAY") ? OD_MODEL_ARRAY
					              : !strcmp(t, "DICTIONARY") ? OD_MODEL_DICTIONARY : 0;
				have_model = true;
			} else if (name_is(c, "access-control")) {
				if (node_text(c, k->access_control, sizeof(k->access_control)))
					rc = fail(why, VP_EMALFORMED, "<access-control> too long");
				have_ac = true;
			} else {
				rc = fail(why, VP_EMALFORMED, "unknown element <%s> in <kind> (RFC 6940 namespace)",
				          (const char *)c->name);
			}
		} else if (ns_is(c, OD_NS_VIPR)) {
			if (name_is(c, "quota"))
				rc = text_u32(c, UINT32_MAX, &k->vipr_quota, why);
			else if (name_is(c, "min-lifetime"))
				rc = text_u32(c, UINT32_MAX, &k->vipr_min_lifetime, why);
			else if (name_is(c, "max-lifetime"))
				rc = text_u32(c, UINT32_MAX, &k->vipr_max_lifetime, why);
			else
				rc = fail(why, VP_EMALFORMED, "unknown element <vipr:%s> in <kind>", (const char *)c->name);
		} else if (!c->ns) {
			rc = fail(why, VP_EMALFORMED, "element <%s> in <kind> has no namespace", (const char *)c->name);
		}
		/* other namespaces: extensions, skipped */
	}
	if (!rc && (!have_model || !have_ac))
		rc = fail(why, VP_EMALFORMED, "<kind %s>: <data-model> and <access-control> are required",
		          k->name[0] ? k->name : "(by id)");
finish:
	xmlFree(name);
	xmlFree(id);
	return rc;
}

static int parse_required_kinds(xmlNode *rk, od_doc_t *doc, char *why)
{
	for (xmlNode *b = rk->children; b; b = b->next) {
		if (b->type != XML_ELEMENT_NODE)
			continue;
		if (!ns_is(b, OD_NS_BASE) || !name_is(b, "kind-block")) {
			if (b->ns && !ns_is(b, OD_NS_BASE) && !ns_is(b, OD_NS_CHORD))
				continue;
			return fail(why, VP_EMALFORMED, "unknown element <%s> in <required-kinds>",
			            (const char *)b->name);
		}
		bool have_kind = false;
		for (xmlNode *c = b->children; c; c = c->next) {
			int rc;
			if (c->type != XML_ELEMENT_NODE)
				continue;
			if (ns_is(c, OD_NS_BASE) && name_is(c, "kind")) {
				if (have_kind)
					return fail(why, VP_EMALFORMED, "<kind-block> with two <kind>");
				if (doc->n_kinds == OD_MAX_KINDS)
					return fail(why, VP_EMALFORMED, "more than %d kinds", OD_MAX_KINDS);
				rc = parse_kind(c, &doc->kinds[doc->n_kinds], why);
				if (rc)
					return rc;
				doc->n_kinds++;
				have_kind = true;
			} else if (ns_is(c, OD_NS_BASE) && name_is(c, "kind-signature")) {
				continue; /* covered by the configuration's own signature (§9.4) */
			} else if (!c->ns || ns_is(c, OD_NS_BASE) || ns_is(c, OD_NS_CHORD)) {
				return fail(why, VP_EMALFORMED, "unknown element <%s> in <kind-block>",
				            (const char *)c->name);
			}
		}
		if (!have_kind)
			return fail(why, VP_EMALFORMED, "<kind-block> without <kind>");
	}
	return 0;
}

/* ---- one <configuration> ---- */

static int parse_config(xmlNode *conf, od_doc_t *doc, char *why)
{
	size_t bad_cap = 0;
	xmlChar *a;
	int rc = 0;

	a = xmlGetNoNsProp(conf, (const xmlChar *)"instance-name");
	if (!a || !a[0] || strlen((const char *)a) >= sizeof(doc->instance_name)) {
		xmlFree(a);
		return fail(why, VP_EMALFORMED, "<configuration> without a valid instance-name");
	}
	snprintf(doc->instance_name, sizeof(doc->instance_name), "%s", (const char *)a);
	xmlFree(a);
	a = xmlGetNoNsProp(conf, (const xmlChar *)"sequence");
	if (a) {
		uint64_t v;
		rc = parse_u64((const char *)a, INT64_MAX, &v);
		xmlFree(a);
		if (rc)
			return fail(why, VP_EMALFORMED, "sequence: not an integer in 0..2^63-1");
		doc->sequence = v;
	}
	a = xmlGetNoNsProp(conf, (const xmlChar *)"expiration");
	if (a) {
		rc = parse_datetime((const char *)a, &doc->expiration);
		xmlFree(a);
		if (rc)
			return fail(why, VP_EMALFORMED, "expiration: not an xsd:dateTime");
	}

	for (xmlNode *c = conf->children; c && !rc; c = c->next) {
		char t[OD_TEXT_MAX];
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (ns_is(c, OD_NS_CHORD)) {
			if (name_is(c, "chord-ping-interval"))
				rc = text_u32(c, INT32_MAX, &doc->chord_ping_interval, why);
			else if (name_is(c, "chord-update-interval"))
				rc = text_u32(c, INT32_MAX, &doc->chord_update_interval, why);
			else if (name_is(c, "chord-reactive"))
				rc = text_bool(c, &doc->chord_reactive, why);
			else
				rc = fail(why, VP_EMALFORMED, "unknown element <chord:%s>", (const char *)c->name);
			continue;
		}
		if (!c->ns)
			return fail(why, VP_EMALFORMED, "element <%s> has no namespace (the RFC 6940 schema "
			            "allows none)", (const char *)c->name);
		if (!ns_is(c, OD_NS_BASE)) {
			doc->n_foreign++; /* an extension in its own namespace: ignored (RFC 6940 §11.1) */
			continue;
		}
		if (name_is(c, "topology-plugin")) {
			if (node_text(c, doc->topology_plugin, sizeof(doc->topology_plugin)))
				rc = fail(why, VP_EMALFORMED, "<topology-plugin> too long");
		} else if (name_is(c, "max-message-size")) {
			rc = text_u32(c, UINT32_MAX, &doc->max_message_size, why);
		} else if (name_is(c, "initial-ttl")) {
			rc = text_u32(c, 255, &doc->initial_ttl, why);
		} else if (name_is(c, "overlay-reliability-timer")) {
			rc = text_u32(c, INT32_MAX, &doc->overlay_reliability_timer, why);
		} else if (name_is(c, "node-id-length")) {
			rc = text_u32(c, 20, &doc->node_id_length, why);
		} else if (name_is(c, "turn-density")) {
			uint32_t v = 0;
			rc = text_u32(c, 255, &v, why);
			doc->turn_density = (uint8_t)v;
		} else if (name_is(c, "clients-permitted")) {
			rc = text_bool(c, &doc->clients_permitted, why);
		} else if (name_is(c, "no-ice")) {
			rc = text_bool(c, &doc->no_ice, why);
		} else if (name_is(c, "self-signed-permitted")) {
			rc = text_bool(c, &doc->self_signed_permitted, why);
		} else if (name_is(c, "shared-secret")) {
			continue; /* viprd does not use shared-secret admission; TLS certificates always */
		} else if (name_is(c, "root-cert")) {
			char *txt;
			uint8_t *der = NULL;
			size_t dlen = 0;
			const unsigned char *p;
			X509 *x;
			xmlChar *raw = xmlNodeGetContent(c);
			txt = raw ? (char *)raw : NULL;
			if (!txt || b64_decode(txt, &der, &dlen)) {
				xmlFree(raw);
				return fail(why, VP_EMALFORMED, "<root-cert>: not base64");
			}
			xmlFree(raw);
			p = der;
			x = d2i_X509(NULL, &p, (long)dlen);
			if (!x || p != der + dlen) {
				X509_free(x);
				free(der);
				ERR_clear_error();
				return fail(why, VP_EMALFORMED, "<root-cert>: not a DER X.509 certificate");
			}
			free(der);
			if (doc->n_roots == OD_MAX_ROOTS) {
				X509_free(x);
				return fail(why, VP_EMALFORMED, "more than %d <root-cert>", OD_MAX_ROOTS);
			}
			doc->roots[doc->n_roots++] = x;
		} else if (name_is(c, "enrollment-server")) {
			if (doc->n_enrollment_servers == OD_MAX_SERVERS)
				return fail(why, VP_EMALFORMED, "more than %d <enrollment-server>", OD_MAX_SERVERS);
			if (node_text(c, doc->enrollment_servers[doc->n_enrollment_servers], OD_TEXT_MAX))
				return fail(why, VP_EMALFORMED, "<enrollment-server> too long");
			doc->n_enrollment_servers++;
		} else if (name_is(c, "configuration-signer")) {
			rc = add_id(c, doc->config_signers, &doc->n_config_signers, OD_MAX_SIGNERS, doc, why);
		} else if (name_is(c, "kind-signer")) {
			rc = add_id(c, doc->kind_signers, &doc->n_kind_signers, OD_MAX_SIGNERS, doc, why);
		} else if (name_is(c, "bad-node")) {
			rc = add_bad(c, doc, &bad_cap);
		} else if (name_is(c, "overlay-link-protocol")) {
			if (doc->n_link_protocols == OD_MAX_LINKPROTO)
				return fail(why, VP_EMALFORMED, "more than %d <overlay-link-protocol>", OD_MAX_LINKPROTO);
			if (node_text(c, doc->link_protocols[doc->n_link_protocols], 32))
				return fail(why, VP_EMALFORMED, "<overlay-link-protocol> too long");
			doc->n_link_protocols++;
		} else if (name_is(c, "mandatory-extension")) {
			if (doc->n_mandatory_extensions == OD_MAX_MANDATORY)
				return fail(why, VP_EMALFORMED, "more than %d <mandatory-extension>", OD_MAX_MANDATORY);
			if (node_text(c, doc->mandatory_extensions[doc->n_mandatory_extensions], OD_TEXT_MAX))
				return fail(why, VP_EMALFORMED, "<mandatory-extension> too long");
			doc->n_mandatory_extensions++;
		} else if (name_is(c, "bootstrap-node")) {
			xmlChar *addr = xmlGetNoNsProp(c, (const xmlChar *)"address");
			xmlChar *port = xmlGetNoNsProp(c, (const xmlChar *)"port");
			od_bootstrap_t *b = &doc->bootstrap[doc->n_bootstrap];
			uint64_t pv = RELOAD_PORT;
			if (doc->n_bootstrap == OD_MAX_BOOTSTRAP || !addr || !addr[0] ||
			    strlen((const char *)addr) >= sizeof(b->address) ||
			    (port && (parse_u64((const char *)port, 65535, &pv) || pv == 0)))
				rc = fail(why, VP_EMALFORMED, "<bootstrap-node>: needs address and a port in 1..65535 "
				          "(at most %d nodes)", OD_MAX_BOOTSTRAP);
			else {
				snprintf(b->address, sizeof(b->address), "%s", (const char *)addr);
				b->port = (uint16_t)pv;
				doc->n_bootstrap++;
			}
			xmlFree(addr);
			xmlFree(port);
		} else if (name_is(c, "required-kinds")) {
			rc = parse_required_kinds(c, doc, why);
		} else {
			(void)t;
			rc = fail(why, VP_EMALFORMED, "unknown element <%s> in the RELOAD namespace (RFC 6940 §11.1 "
			          "allows extensions only in their own namespace)", (const char *)c->name);
		}
	}
	if (rc)
		return rc;
	if (doc->n_bad_nodes > 1) {
		size_t k = 1;
		qsort(doc->bad_nodes, doc->n_bad_nodes, sizeof(vp_id_t), id_cmp);
		for (size_t i = 1; i < doc->n_bad_nodes; i++)
			if (!vp_id_eq(&doc->bad_nodes[i], &doc->bad_nodes[k - 1]))
				doc->bad_nodes[k++] = doc->bad_nodes[i];
		doc->n_bad_nodes = k;
	}
	return 0;
}

/* ---- canonical form of the signed configuration ---- */

typedef struct growbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} growbuf_t;

static int gb_write(void *ctx, const char *buf, int len)
{
	growbuf_t *g = ctx;
	if (len <= 0) /* a flush of nothing: no pointer arithmetic on an empty buffer */
		return len < 0 ? -1 : 0;
	if (g->len + (size_t)len > g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 4096;
		uint8_t *p;
		while (nc < g->len + (size_t)len)
			nc *= 2;
		p = realloc(g->p, nc);
		if (!p) {
			g->oom = true;
			return -1;
		}
		g->p = p;
		g->cap = nc;
	}
	memcpy(g->p + g->len, buf, (size_t)len);
	g->len += (size_t)len;
	return len;
}

static int gb_close(void *ctx)
{
	(void)ctx;
	return 0;
}

/* The document subset "the configuration element and everything inside it": element, attribute and
 * namespace nodes whose element is the configuration or one of its descendants. */
static int in_config(void *user, xmlNodePtr node, xmlNodePtr parent)
{
	xmlNodePtr conf = user, n = node;
	if (!node || node->type == XML_NAMESPACE_DECL || node->type == XML_ATTRIBUTE_NODE)
		n = parent;
	for (; n; n = n->parent)
		if (n == conf)
			return 1;
	return 0;
}

/* Exclusive XML Canonicalization 1.0, without comments, of the configuration subset. */
static int canonical_config(xmlDocPtr d, xmlNodePtr conf, uint8_t **out, size_t *len)
{
	growbuf_t g = { 0 };
	xmlOutputBufferPtr ob = xmlOutputBufferCreateIO(gb_write, gb_close, &g, NULL);
	int n;
	if (!ob)
		return VP_ENOMEM;
	n = xmlC14NExecute(d, in_config, conf, XML_C14N_EXCLUSIVE_1_0, NULL, 0, ob);
	xmlOutputBufferClose(ob);
	if (n < 0 || g.oom || g.len == 0) {
		free(g.p);
		return g.oom ? VP_ENOMEM : VP_EMALFORMED;
	}
	*out = g.p;
	*len = g.len;
	return 0;
}

/* ---- document level ---- */

static xmlNodePtr next_element(xmlNodePtr n)
{
	for (n = n ? n->next : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE)
			return n;
	return NULL;
}

static int read_xml(const char *xml, size_t len, xmlDocPtr *out, char *why)
{
	xmlDocPtr d;
	if (len > OD_MAX_DOC)
		return fail(why, VP_ETOOBIG, "document larger than %d bytes", OD_MAX_DOC);
	/* No network, no entity substitution, no DTD: a configuration document has none. */
	d = xmlReadMemory(xml, (int)len, "reload-config.xml", NULL,
	                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!d) {
		const xmlError *e = xmlGetLastError();
		int rc = fail(why, VP_EMALFORMED, "not well-formed XML: line %d: %s", e ? e->line : 0,
		              e && e->message ? e->message : "parse error");
		if (why) {
			size_t l = strlen(why);
			if (l && why[l - 1] == '\n')
				why[l - 1] = 0;
		}
		xmlResetLastError();
		return rc;
	}
	if (d->intSubset || d->extSubset) {
		xmlFreeDoc(d);
		return fail(why, VP_EMALFORMED, "a document type declaration is not allowed");
	}
	*out = d;
	return 0;
}

/* Find the overlay root and the configuration for instance (first if NULL). */
static int find_config(xmlDocPtr d, const char *instance, xmlNodePtr *conf_out, char *why)
{
	xmlNodePtr root = xmlDocGetRootElement(d);
	if (!root || !ns_is(root, OD_NS_BASE) || !name_is(root, "overlay"))
		return fail(why, VP_EMALFORMED, "the root element is not <overlay> in %s", OD_NS_BASE);
	for (xmlNodePtr c = root->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (!ns_is(c, OD_NS_BASE)) {
			if (!c->ns)
				return fail(why, VP_EMALFORMED, "element <%s> in <overlay> has no namespace",
				            (const char *)c->name);
			continue;
		}
		if (name_is(c, "signature"))
			continue;
		if (!name_is(c, "configuration"))
			return fail(why, VP_EMALFORMED, "unknown element <%s> in <overlay>", (const char *)c->name);
		if (instance) {
			xmlChar *a = xmlGetNoNsProp(c, (const xmlChar *)"instance-name");
			bool match = a && strcasecmp((const char *)a, instance) == 0;
			xmlFree(a);
			if (!match)
				continue;
		}
		*conf_out = c;
		return 0;
	}
	return instance ? fail(why, VP_ENOTFOUND, "no <configuration> for instance-name %s", instance)
	                : fail(why, VP_EMALFORMED, "<overlay> without <configuration>");
}

static xmlNodePtr signature_of(xmlNodePtr conf)
{
	xmlNodePtr s = next_element(conf);
	return s && ns_is(s, OD_NS_BASE) && name_is(s, "signature") ? s : NULL;
}

void od_doc_free(od_doc_t *doc)
{
	if (!doc)
		return;
	for (size_t i = 0; i < doc->n_roots; i++)
		X509_free(doc->roots[i]);
	X509_free(doc->signer);
	free(doc->bad_nodes);
	free(doc->signed_bytes);
	free(doc->signature);
	free(doc);
}

int od_parse(const char *xml, size_t len, const char *instance, od_doc_t **out, char *why)
{
	xmlDocPtr d = NULL;
	xmlNodePtr conf = NULL, sig;
	od_doc_t *doc = NULL;
	int rc;
	if (why)
		why[0] = 0;
	if ((rc = read_xml(xml, len, &d, why)) || (rc = find_config(d, instance, &conf, why)))
		goto finish;
	doc = calloc(1, sizeof(*doc));
	if (!doc) {
		rc = VP_ENOMEM;
		goto finish;
	}
	/* RFC 6940 §11.1 defaults */
	snprintf(doc->topology_plugin, sizeof(doc->topology_plugin), "CHORD-RELOAD");
	doc->node_id_length = 16;
	doc->max_message_size = 5000;
	doc->initial_ttl = 100;
	doc->overlay_reliability_timer = 3000;
	doc->chord_ping_interval = 3600;
	doc->chord_update_interval = 600;
	doc->chord_reactive = true;
	doc->clients_permitted = true;
	doc->turn_density = 1;
	if ((rc = parse_config(conf, doc, why)))
		goto finish;
	if ((rc = canonical_config(d, conf, &doc->signed_bytes, &doc->signed_len))) {
		fail(why, rc, "cannot canonicalise <configuration>");
		goto finish;
	}
	sig = signature_of(conf);
	if (sig) {
		xmlChar *raw = xmlNodeGetContent(sig);
		xmlChar *alg = xmlGetNoNsProp(sig, (const xmlChar *)"algorithm");
		rc = raw ? b64_decode((const char *)raw, &doc->signature, &doc->signature_len) : VP_EMALFORMED;
		if (rc)
			fail(why, VP_EMALFORMED, "<signature>: not base64");
		else if (alg && strcmp((const char *)alg, "ecdsa-sha256") && strcmp((const char *)alg, "rsa-sha256"))
			rc = fail(why, VP_EUNSUPPORTED, "<signature algorithm=\"%s\">: only ecdsa-sha256 and "
			          "rsa-sha256 are accepted", (const char *)alg);
		xmlFree(raw);
		xmlFree(alg);
		if (rc)
			goto finish;
	}
finish:
	xmlFreeDoc(d);
	if (rc) {
		od_doc_free(doc);
		return rc;
	}
	*out = doc;
	return 0;
}

/* ---- signatures ---- */

static int sig_alg_of(EVP_PKEY *key, uint8_t *alg)
{
	ca_key_type_t t;
	if (ca_key_type_of(key, &t))
		return VP_EUNSUPPORTED;
	*alg = t == CA_KEY_EC_P256 ? RL_SIG_ECDSA : RL_SIG_RSA;
	return 0;
}

int od_verify(od_doc_t *doc, char *why)
{
	rl_security_block_t sb;
	rl_cert_t rc_cert;
	vp_rd_t rd;
	X509 *x = NULL;
	EVP_MD_CTX *md = NULL;
	const unsigned char *p;
	uint8_t alg;
	int rc;
	if (!doc->signature)
		return fail(why, VP_ENOTFOUND, "the configuration is not signed (no <signature> after it)");
	vp_rd_init(&rd, doc->signature, doc->signature_len);
	rl_security_block_decode(&rd, &sb);
	if (vp_rd_done(&rd))
		return fail(why, VP_EMALFORMED, "<signature>: not a RELOAD SecurityBlock");
	if (sb.sig.hash_alg != RL_HASH_SHA256 || (sb.sig.sig_alg != RL_SIG_ECDSA && sb.sig.sig_alg != RL_SIG_RSA))
		return fail(why, VP_EAUTH, "<signature>: algorithm {%u,%u} is not sha256 with ecdsa or rsa",
		            sb.sig.hash_alg, sb.sig.sig_alg);
	if (sb.sig.identity.type != RL_SIGNER_CERT_HASH)
		return fail(why, VP_EAUTH, "<signature>: signer identity is not a certificate hash");
	if (rl_find_signer_cert(&sb.certs, &sb.sig.identity, &rc_cert))
		return fail(why, VP_EAUTH, "<signature>: the signer's certificate is not in the signature");
	p = rc_cert.der.p;
	x = d2i_X509(NULL, &p, (long)rc_cert.der.len);
	if (!x || p != rc_cert.der.p + rc_cert.der.len) {
		rc = fail(why, VP_EMALFORMED, "<signature>: the signer's certificate does not decode");
		goto finish;
	}
	if (sig_alg_of(X509_get0_pubkey(x), &alg) || alg != sb.sig.sig_alg) {
		rc = fail(why, VP_EAUTH, "<signature>: the signer's key does not match the signature algorithm");
		goto finish;
	}
	md = EVP_MD_CTX_new();
	if (!md) {
		rc = VP_ENOMEM;
		goto finish;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) != 1 ||
	    EVP_DigestVerify(md, sb.sig.value.p, sb.sig.value.len, doc->signed_bytes, doc->signed_len) != 1) {
		rc = fail(why, VP_EAUTH, "bad signature: the configuration was not signed by the certificate in "
		          "<signature> (altered after signing?)");
		goto finish;
	}
	X509_free(doc->signer);
	doc->signer = x;
	x = NULL;
	rc = 0;
finish:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	X509_free(x);
	return rc;
}

/* Replace the signature after conf with a new one over conf's canonical form. */
static int sign_tree(xmlDocPtr d, xmlNodePtr conf, EVP_PKEY *key, X509 *signer)
{
	uint8_t *c14n = NULL, *der = NULL, hash[RL_MAX_HASH_LEN], sigbuf[RL_MAX_SIG_LEN], *sbuf = NULL;
	size_t c14n_len = 0, der_len = 0, siglen = sizeof(sigbuf), cap;
	EVP_MD_CTX *md = NULL;
	rl_security_block_t sb;
	rl_cert_t cert;
	xmlNodePtr old, s;
	vp_wr_t wr;
	char *b64 = NULL;
	uint8_t alg;
	int rc;

	if ((rc = sig_alg_of(key, &alg)))
		return rc;
	if (X509_check_private_key(signer, key) != 1) {
		ERR_clear_error();
		return VP_ECRYPTO;
	}
	old = signature_of(conf);
	if (old) {
		xmlUnlinkNode(old);
		xmlFreeNode(old);
	}
	if ((rc = canonical_config(d, conf, &c14n, &c14n_len)) || (rc = ca_cert_der(signer, &der, &der_len)))
		goto finish;
	rc = VP_ECRYPTO;
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, sigbuf, &siglen, c14n, c14n_len) != 1)
		goto finish;
	memset(&sb, 0, sizeof(sb));
	cert.type = RL_CERT_X509;
	cert.der.p = der;
	cert.der.len = (uint32_t)der_len;
	sb.certs.items = &cert;
	sb.certs.n_items = 1;
	sb.sig.hash_alg = RL_HASH_SHA256;
	sb.sig.sig_alg = alg;
	if ((rc = rl_signer_cert_hash(der, der_len, hash, &sb.sig.identity)))
		goto finish;
	sb.sig.value.p = sigbuf;
	sb.sig.value.len = (uint32_t)siglen;
	cap = der_len + siglen + 256;
	sbuf = malloc(cap);
	if (!sbuf) {
		rc = VP_ENOMEM;
		goto finish;
	}
	vp_wr_init(&wr, sbuf, cap);
	if ((rc = rl_security_block_encode(&wr, &sb)))
		goto finish;
	b64 = b64_encode(sbuf, vp_wr_len(&wr));
	rc = VP_ENOMEM;
	if (!b64)
		goto finish;
	s = xmlNewDocNode(d, conf->ns, (const xmlChar *)"signature", NULL);
	if (!s)
		goto finish;
	xmlSetProp(s, (const xmlChar *)"algorithm",
	           (const xmlChar *)(alg == RL_SIG_ECDSA ? "ecdsa-sha256" : "rsa-sha256"));
	xmlNodeAddContent(s, (const xmlChar *)"\n");
	xmlNodeAddContent(s, (const xmlChar *)b64);
	xmlAddNextSibling(conf, s);
	xmlAddPrevSibling(s, xmlNewDocText(d, (const xmlChar *)"\n"));
	rc = 0;
finish:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	free(c14n);
	free(sbuf);
	free(b64);
	return rc;
}

static int dump(xmlDocPtr d, char **out, size_t *outlen)
{
	xmlChar *mem = NULL;
	int n = 0;
	xmlDocDumpMemoryEnc(d, &mem, &n, "UTF-8");
	if (!mem || n <= 0) {
		xmlFree(mem);
		return VP_ENOMEM;
	}
	*out = malloc((size_t)n + 1);
	if (!*out) {
		xmlFree(mem);
		return VP_ENOMEM;
	}
	memcpy(*out, mem, (size_t)n);
	(*out)[n] = 0;
	*outlen = (size_t)n;
	xmlFree(mem);
	return 0;
}

int od_sign(const char *xml, size_t len, const char *instance, EVP_PKEY *key, X509 *signer, char **out,
            size_t *outlen)
{
	od_edit_t none = { 0 };
	xmlDocPtr d = NULL;
	xmlNodePtr conf;
	int rc;
	(void)none;
	if ((rc = read_xml(xml, len, &d, NULL)) || (rc = find_config(d, instance, &conf, NULL)) ||
	    (rc = sign_tree(d, conf, key, signer)))
		goto finish;
	rc = dump(d, out, outlen);
finish:
	xmlFreeDoc(d);
	return rc;
}

int od_edit_and_sign(const char *xml, size_t len, const char *instance, const od_edit_t *e, EVP_PKEY *key,
                     X509 *signer, char **out, size_t *outlen)
{
	char seq[32], hex[VP_ID_HEX_LEN + 1];
	od_doc_t *cur = NULL;
	xmlDocPtr d = NULL;
	xmlNodePtr conf;
	int rc;
	if ((rc = od_parse(xml, len, instance, &cur, NULL)) || (rc = read_xml(xml, len, &d, NULL)) ||
	    (rc = find_config(d, instance, &conf, NULL)))
		goto finish;
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)(e->sequence ? e->sequence : cur->sequence + 1));
	xmlSetProp(conf, (const xmlChar *)"sequence", (const xmlChar *)seq);
	for (size_t i = 0; i < e->n_add_bad_nodes; i++) {
		if (od_is_bad_node(cur, &e->add_bad_nodes[i]))
			continue;
		vp_hex_encode(e->add_bad_nodes[i].b, VP_ID_LEN, hex, sizeof(hex));
		xmlAddChild(conf, xmlNewDocText(d, (const xmlChar *)"  "));
		if (!xmlNewChild(conf, conf->ns, (const xmlChar *)"bad-node", (const xmlChar *)hex)) {
			rc = VP_ENOMEM;
			goto finish;
		}
		xmlAddChild(conf, xmlNewDocText(d, (const xmlChar *)"\n"));
	}
	if ((rc = sign_tree(d, conf, key, signer)))
		goto finish;
	rc = dump(d, out, outlen);
finish:
	od_doc_free(cur);
	xmlFreeDoc(d);
	return rc;
}

/* ---- policy ---- */

bool od_is_bad_node(const od_doc_t *doc, const vp_id_t *id)
{
	return doc->n_bad_nodes && bsearch(id, doc->bad_nodes, doc->n_bad_nodes, sizeof(vp_id_t), id_cmp);
}

const od_kind_t *od_vipr_kind(const od_doc_t *doc)
{
	for (size_t i = 0; i < doc->n_kinds; i++)
		if (!strcmp(doc->kinds[i].access_control, OD_VIPR_ACCESS) ||
		    !strcmp(doc->kinds[i].name, OD_VIPR_KIND_NAME))
			return &doc->kinds[i];
	return NULL;
}

int od_check_usable(const od_doc_t *doc, char *why)
{
	const od_kind_t *k;
	bool tls = false;
	size_t n_vipr = 0;
	if (strcmp(doc->topology_plugin, "CHORD-RELOAD"))
		return fail(why, VP_EUNSUPPORTED, "topology-plugin %s: viprd implements CHORD-RELOAD only",
		            doc->topology_plugin);
	if (doc->node_id_length != VP_ID_LEN)
		return fail(why, VP_EUNSUPPORTED, "node-id-length %u: viprd uses 16", doc->node_id_length);
	if (doc->n_mandatory_extensions)
		return fail(why, VP_EUNSUPPORTED, "mandatory-extension %s is not supported: a node must not join",
		            doc->mandatory_extensions[0]);
	if (doc->self_signed_permitted)
		return fail(why, VP_EUNSUPPORTED, "self-signed-permitted true: viprd requires CA-issued certificates");
	for (size_t i = 0; i < doc->n_link_protocols; i++)
		tls |= strcmp(doc->link_protocols[i], "TLS") == 0;
	if (doc->n_link_protocols && !tls)
		return fail(why, VP_EUNSUPPORTED, "overlay-link-protocol: viprd needs TLS");
	if (doc->n_roots == 0)
		return fail(why, VP_EUNSUPPORTED, "no root-cert: nothing to check peers' certificates against");
	for (size_t i = 0; i < doc->n_kinds; i++)
		if (!strcmp(doc->kinds[i].access_control, OD_VIPR_ACCESS) ||
		    !strcmp(doc->kinds[i].name, OD_VIPR_KIND_NAME))
			n_vipr++;
	k = od_vipr_kind(doc);
	if (n_vipr != 1 || !k->id)
		return fail(why, VP_EUNSUPPORTED, "the document must define the ViPR kind exactly once, with an id");
	if (k->data_model != OD_MODEL_DICTIONARY || strcmp(k->access_control, OD_VIPR_ACCESS) || !k->max_count ||
	    !k->max_size)
		return fail(why, VP_EUNSUPPORTED, "the ViPR kind must be DICTIONARY, %s, with max-count and "
		            "max-size", OD_VIPR_ACCESS);
	return 0;
}

/* ---- trust ---- */

int od_trust_new(const char *instance, X509 *anchor_root, const uint8_t anchor_fp[32], od_trust_t **out)
{
	od_trust_t *t;
	if (!instance || !instance[0] || strlen(instance) >= OD_TEXT_MAX || (!anchor_root && !anchor_fp))
		return VP_EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return VP_ENOMEM;
	snprintf(t->instance, sizeof(t->instance), "%s", instance);
	if (anchor_root) {
		X509_up_ref(anchor_root);
		t->anchor_root = anchor_root;
	}
	if (anchor_fp) {
		memcpy(t->anchor_fp, anchor_fp, 32);
		t->has_fp = true;
	}
	*out = t;
	return 0;
}

void od_trust_free(od_trust_t *t)
{
	if (!t)
		return;
	X509_free(t->anchor_root);
	od_doc_free(t->current);
	free(t);
}

const od_doc_t *od_trust_current(const od_trust_t *t)
{
	return t->current;
}

static bool listed(const vp_id_t *ids, size_t n, const vp_id_t *list, size_t nl)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < nl; j++)
			if (vp_id_eq(&ids[i], &list[j]))
				return true;
	return false;
}

int od_trust_accept(od_trust_t *t, const char *xml, size_t len, time_t now, char *why)
{
	char reason[OD_WHY_MAX];
	X509 *anchors[OD_MAX_ROOTS + 1];
	size_t n_anchor = 0, n_ids = 0;
	vp_id_t ids[CA_MAX_NODE_IDS];
	od_doc_t *doc = NULL;
	int rc;
	if (!now)
		now = time(NULL);
	if ((rc = od_parse(xml, len, t->instance, &doc, why)))
		return rc;
	if ((rc = od_verify(doc, why))) {
		if (rc == VP_ENOTFOUND)
			rc = VP_EAUTH;
		goto finish;
	}
	if (!t->current) {
		if (t->anchor_root)
			anchors[n_anchor++] = t->anchor_root;
		if (t->has_fp)
			for (size_t i = 0; i < doc->n_roots; i++) {
				uint8_t fp[32];
				if (ca_cert_fingerprint(doc->roots[i], fp) == 0 && !memcmp(fp, t->anchor_fp, 32))
					anchors[n_anchor++] = doc->roots[i];
			}
		if (!n_anchor) {
			rc = fail(why, VP_EPERM, "no root-cert of the document matches the provisioned anchor "
			          "fingerprint");
			goto finish;
		}
		if (ca_verify(doc->signer, NULL, 0, anchors, n_anchor, now, reason, sizeof(reason))) {
			rc = fail(why, VP_EPERM, "the signer's certificate does not chain to the provisioned anchor "
			          "(%s): a document cannot vouch for itself", reason);
			goto finish;
		}
		if (ca_cert_node_ids(doc->signer, t->instance, ids, CA_MAX_NODE_IDS, &n_ids) ||
		    !listed(ids, n_ids, doc->config_signers, doc->n_config_signers)) {
			rc = fail(why, VP_EPERM, "the signer is not a configuration-signer of the document");
			goto finish;
		}
	} else {
		const od_doc_t *cur = t->current;
		if (ca_verify(doc->signer, NULL, 0, cur->roots, cur->n_roots, now, reason, sizeof(reason))) {
			rc = fail(why, VP_EPERM, "the signer's certificate does not chain to the current roots (%s)",
			          reason);
			goto finish;
		}
		if (ca_cert_node_ids(doc->signer, t->instance, ids, CA_MAX_NODE_IDS, &n_ids) ||
		    !listed(ids, n_ids, cur->config_signers, cur->n_config_signers)) {
			rc = fail(why, VP_EPERM, "the signer is not a configuration-signer of the current document "
			          "(sequence %llu)", (unsigned long long)cur->sequence);
			goto finish;
		}
		for (size_t i = 0; i < n_ids; i++)
			if (od_is_bad_node(cur, &ids[i])) {
				rc = fail(why, VP_EPERM, "the signer's Node-ID is on the current bad-node list");
				goto finish;
			}
		if (doc->sequence <= cur->sequence) {
			rc = fail(why, VP_EDATA_TOO_OLD, "sequence %llu is not higher than the current %llu (replay "
			          "or rollback)", (unsigned long long)doc->sequence,
			          (unsigned long long)cur->sequence);
			goto finish;
		}
	}
	if (doc->expiration && doc->expiration <= now) {
		rc = fail(why, VP_EEXPIRED, "the document expired (expiration attribute is in the past)");
		goto finish;
	}
	if ((rc = od_check_usable(doc, why)))
		goto finish;
	od_doc_free(t->current);
	t->current = doc;
	doc = NULL;
finish:
	od_doc_free(doc);
	return rc;
}

int od_trust_check_peer(const od_trust_t *t, X509 *cert, time_t now, vp_id_t *ids, size_t cap, size_t *n,
                        char *why)
{
	char reason[OD_WHY_MAX];
	const od_doc_t *cur = t->current;
	int rc;
	*n = 0;
	if (!cur)
		return fail(why, VP_ESTATE, "no configuration document accepted yet");
	if (ca_verify(cert, NULL, 0, cur->roots, cur->n_roots, now, reason, sizeof(reason)))
		return fail(why, VP_EAUTH, "certificate refused: %s", reason);
	rc = ca_cert_node_ids(cert, t->instance, ids, cap, n);
	if (rc)
		return fail(why, rc == VP_ENOTFOUND ? VP_ENOTFOUND : rc, "certificate carries no Node-ID of %s",
		            t->instance);
	for (size_t i = 0; i < *n; i++)
		if (od_is_bad_node(cur, &ids[i])) {
			char hex[VP_ID_HEX_LEN + 1];
			vp_hex_encode(ids[i].b, VP_ID_LEN, hex, sizeof(hex));
			return fail(why, VP_EPERM, "Node-ID %s is on the bad-node list (revoked)", hex);
		}
	return 0;
}

/* ---- building a first document ---- */

static xmlNodePtr add_text(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
	return xmlNewTextChild(parent, ns, (const xmlChar *)name, (const xmlChar *)text);
}

static xmlNodePtr add_u32(xmlNodePtr parent, xmlNsPtr ns, const char *name, uint32_t v)
{
	char t[16];
	snprintf(t, sizeof(t), "%u", v);
	return add_text(parent, ns, name, t);
}

int od_build(const od_build_params_t *p, char **xml, size_t *len)
{
	char hex[VP_ID_HEX_LEN + 1], t[32];
	xmlDocPtr d = xmlNewDoc((const xmlChar *)"1.0");
	xmlNodePtr root, conf, rk, kb, k, n;
	xmlNsPtr ns, chord, vipr;
	int rc = VP_ENOMEM;
	if (!p->instance || !p->instance[0] || !p->n_roots || !p->n_config_signers) {
		xmlFreeDoc(d);
		return VP_EINVAL;
	}
	if (!d)
		return VP_ENOMEM;
	root = xmlNewDocNode(d, NULL, (const xmlChar *)"overlay", NULL);
	if (!root)
		goto finish;
	xmlDocSetRootElement(d, root);
	ns = xmlNewNs(root, (const xmlChar *)OD_NS_BASE, NULL);
	chord = xmlNewNs(root, (const xmlChar *)OD_NS_CHORD, (const xmlChar *)"chord");
	vipr = xmlNewNs(root, (const xmlChar *)OD_NS_VIPR, (const xmlChar *)"vipr");
	if (!ns || !chord || !vipr)
		goto finish;
	xmlSetNs(root, ns);
	conf = xmlNewChild(root, ns, (const xmlChar *)"configuration", NULL);
	if (!conf)
		goto finish;
	xmlSetProp(conf, (const xmlChar *)"instance-name", (const xmlChar *)p->instance);
	snprintf(t, sizeof(t), "%llu", (unsigned long long)p->sequence);
	xmlSetProp(conf, (const xmlChar *)"sequence", (const xmlChar *)t);
	add_text(conf, ns, "topology-plugin", "CHORD-RELOAD");
	add_u32(conf, ns, "node-id-length", VP_ID_LEN);
	for (size_t i = 0; i < p->n_roots; i++) {
		uint8_t *der = NULL;
		size_t dl = 0;
		char *b64;
		if ((rc = ca_cert_der(p->roots[i], &der, &dl)))
			goto finish;
		b64 = b64_encode(der, dl);
		OPENSSL_free(der);
		rc = VP_ENOMEM;
		if (!b64)
			goto finish;
		n = add_text(conf, ns, "root-cert", "");
		if (n) {
			xmlNodeAddContent(n, (const xmlChar *)"\n");
			xmlNodeAddContent(n, (const xmlChar *)b64);
		}
		free(b64);
		if (!n)
			goto finish;
	}
	if (p->enrollment_server)
		add_text(conf, ns, "enrollment-server", p->enrollment_server);
	n = add_text(conf, ns, "self-signed-permitted", "false");
	if (n)
		xmlSetProp(n, (const xmlChar *)"digest", (const xmlChar *)"sha256");
	for (size_t i = 0; i < p->n_bootstrap; i++) {
		n = xmlNewChild(conf, ns, (const xmlChar *)"bootstrap-node", NULL);
		if (!n)
			goto finish;
		xmlSetProp(n, (const xmlChar *)"address", (const xmlChar *)p->bootstrap[i].address);
		snprintf(t, sizeof(t), "%u", p->bootstrap[i].port);
		xmlSetProp(n, (const xmlChar *)"port", (const xmlChar *)t);
	}
	add_text(conf, ns, "clients-permitted", "false");
	add_text(conf, ns, "no-ice", "true");
	add_u32(conf, ns, "max-message-size", p->max_message_size);
	add_u32(conf, ns, "initial-ttl", p->initial_ttl);
	add_text(conf, ns, "overlay-link-protocol", "TLS");
	for (size_t i = 0; i < p->n_config_signers; i++) {
		vp_hex_encode(p->config_signers[i].b, VP_ID_LEN, hex, sizeof(hex));
		add_text(conf, ns, "configuration-signer", hex);
		add_text(conf, ns, "kind-signer", hex);
	}
	add_u32(conf, chord, "chord-update-interval", p->chord_update_interval);
	add_u32(conf, chord, "chord-ping-interval", p->chord_ping_interval);
	add_text(conf, chord, "chord-reactive", p->chord_reactive ? "true" : "false");
	rk = xmlNewChild(conf, ns, (const xmlChar *)"required-kinds", NULL);
	kb = rk ? xmlNewChild(rk, ns, (const xmlChar *)"kind-block", NULL) : NULL;
	k = kb ? xmlNewChild(kb, ns, (const xmlChar *)"kind", NULL) : NULL;
	if (!k)
		goto finish;
	snprintf(t, sizeof(t), "%u", p->vipr_kind_id);
	xmlSetProp(k, (const xmlChar *)"id", (const xmlChar *)t);
	xmlSetProp(k, (const xmlChar *)"name", (const xmlChar *)OD_VIPR_KIND_NAME);
	add_text(k, ns, "data-model", "DICTIONARY");
	add_text(k, ns, "access-control", OD_VIPR_ACCESS);
	add_u32(k, ns, "max-count", p->vipr_max_count);
	add_u32(k, ns, "max-size", p->vipr_max_size);
	add_u32(k, vipr, "quota", p->vipr_quota);
	add_u32(k, vipr, "min-lifetime", p->vipr_min_lifetime);
	add_u32(k, vipr, "max-lifetime", p->vipr_max_lifetime);
	{
		xmlChar *mem = NULL;
		int sz = 0;
		xmlDocDumpFormatMemoryEnc(d, &mem, &sz, "UTF-8", 1);
		if (!mem || sz <= 0) {
			xmlFree(mem);
			goto finish;
		}
		*xml = malloc((size_t)sz + 1);
		if (*xml) {
			memcpy(*xml, mem, (size_t)sz);
			(*xml)[sz] = 0;
			*len = (size_t)sz;
			rc = 0;
		}
		xmlFree(mem);
	}
finish:
	xmlFreeDoc(d);
	return rc;
}
