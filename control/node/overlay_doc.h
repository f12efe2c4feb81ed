/*
 * control/node/overlay_doc.h - the overlay configuration document (RFC 6940 §11.1): reading it (libxml2),
 * signing it, and deciding whether a node may believe it.
 *
 * A document carries its own roots and signer, so it cannot vouch for itself. Trust (od_trust_t) is:
 *   - the first document is believed only if its signer chains to an anchor provisioned on the node (the
 *     root certificate itself, or its SHA-256 fingerprint matching one of the document's root-certs);
 *   - a later document must be signed by a configuration signer of the current document, chaining to the
 *     current roots, and carry a higher sequence.
 * A refused document leaves the current one in force; the reason is a sentence for the operator.
 * Element names, the signature format and every rule are in docs/protocol.md §9.
 */
#ifndef VP_CONTROL_NODE_OVERLAY_DOC_H
#define VP_CONTROL_NODE_OVERLAY_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/id.h"

#define OD_NS_BASE "urn:ietf:params:xml:ns:p2p:config-base"
#define OD_NS_CHORD "urn:ietf:params:xml:ns:p2p:config-chord"
#define OD_NS_VIPR "urn:viprd:xml:ns:config"   /* ViPR kind parameters (foreign to RFC 6940) */
#define OD_MEDIA_TYPE "application/p2p-overlay+xml"
#define OD_WELL_KNOWN_PATH "/.well-known/reload-config"

#define OD_MAX_DOC (1024 * 1024) /* a larger document is refused before parsing */
#define OD_MAX_ROOTS 8
#define OD_MAX_SIGNERS 16
#define OD_MAX_SERVERS 4
#define OD_MAX_BOOTSTRAP 64
#define OD_MAX_KINDS 32
#define OD_MAX_LINKPROTO 4
#define OD_MAX_MANDATORY 8
#define OD_TEXT_MAX 256
#define OD_WHY_MAX 256

/* Data models (RFC 6940 / PROTOCOL-FACTS: SINGLE 1, ARRAY 2, DICTIONARY 3). */
enum { OD_MODEL_SINGLE = 1, OD_MODEL_ARRAY = 2, OD_MODEL_DICTIONARY = 3 };

#define OD_VIPR_KIND_NAME "VIPR-REGISTRATION"
#define OD_VIPR_ACCESS "VIPR-CLAIMANT-MATCH" /* docs/protocol.md §2.4 */

/*! \brief One kind-block's kind. */
typedef struct od_kind {
	uint32_t id;                   /* 0 when given by name only */
	char name[64];                 /* "" when given by id only */
	uint8_t data_model;            /* OD_MODEL_*, 0 for an extension model */
	char access_control[64];
	uint32_t max_count, max_size, max_node_multiple;
	/* ViPR parameters (OD_NS_VIPR), meaningful for the ViPR kind; 0 = absent */
	uint32_t vipr_quota, vipr_min_lifetime, vipr_max_lifetime;
} od_kind_t;

typedef struct od_bootstrap {
	char address[OD_TEXT_MAX];
	uint16_t port; /* 6084 when absent */
} od_bootstrap_t;

/*! \brief A parsed configuration (one <configuration> element) and its signature. */
typedef struct od_doc {
	char instance_name[OD_TEXT_MAX];
	uint64_t sequence;       /* 0 when absent */
	time_t expiration;       /* 0 when absent */
	char topology_plugin[64];
	uint32_t node_id_length; /* default 16 */
	uint32_t max_message_size, initial_ttl, overlay_reliability_timer;
	uint32_t chord_ping_interval, chord_update_interval; /* s */
	bool chord_reactive, clients_permitted, no_ice, self_signed_permitted;
	uint8_t turn_density;
	X509 *roots[OD_MAX_ROOTS];
	size_t n_roots;
	char enrollment_servers[OD_MAX_SERVERS][OD_TEXT_MAX];
	size_t n_enrollment_servers;
	vp_id_t config_signers[OD_MAX_SIGNERS];
	size_t n_config_signers;
	vp_id_t kind_signers[OD_MAX_SIGNERS];
	size_t n_kind_signers;
	vp_id_t *bad_nodes;      /* sorted, duplicates removed */
	size_t n_bad_nodes;
	size_t n_ignored_ids;    /* signer/bad-node values that are not 2*node-id-length hex digits */
	od_bootstrap_t bootstrap[OD_MAX_BOOTSTRAP];
	size_t n_bootstrap;
	char link_protocols[OD_MAX_LINKPROTO][32];
	size_t n_link_protocols;
	char mandatory_extensions[OD_MAX_MANDATORY][OD_TEXT_MAX];
	size_t n_mandatory_extensions;
	od_kind_t kinds[OD_MAX_KINDS];
	size_t n_kinds;
	size_t n_foreign;        /* foreign-namespace elements ignored (RFC 6940 §11.1 extensibility) */
	/* signature: the canonical bytes it covers and the decoded SecurityBlock, kept for od_verify() */
	uint8_t *signed_bytes;
	size_t signed_len;
	uint8_t *signature;      /* the <signature> element's decoded bytes; NULL if unsigned */
	size_t signature_len;
	X509 *signer;            /* after a successful od_verify(): the signer's certificate */
} od_doc_t;

/*!
 * \brief Parse \p len bytes of XML into *out: the <configuration> whose instance-name is \p instance (or the
 * first one when NULL) and the <signature> that follows it. Unknown elements in the RELOAD namespaces are
 * refused (the RFC 6940 §11.1 schema does not allow them); elements of other namespaces are skipped.
 * The signature is not checked here (od_verify). VP_EMALFORMED with a reason in \p why (OD_WHY_MAX bytes)
 * for anything that is not such a document, VP_ENOTFOUND if no configuration has that instance-name,
 * VP_ETOOBIG above OD_MAX_DOC. Free with od_doc_free().
 */
int od_parse(const char *xml, size_t len, const char *instance, od_doc_t **out, char *why);

void od_doc_free(od_doc_t *doc);

/*!
 * \brief Check the signature: it decodes (base64 of a RELOAD SecurityBlock), its SignerIdentity names a
 * certificate it carries, and that key signed the canonical configuration. Sets doc->signer. VP_ENOTFOUND
 * if unsigned, VP_EMALFORMED if the signature does not decode, VP_EAUTH if it does not verify. Trust in
 * the signer is decided by od_trust_accept(), not here.
 */
int od_verify(od_doc_t *doc, char *why);

/*!
 * \brief Can viprd run on this overlay? CHORD-RELOAD, node-id-length 16, TLS links, no self-signed
 * certificates, every mandatory-extension one viprd knows (none today), and exactly one ViPR kind.
 * VP_EUNSUPPORTED with the reason otherwise.
 */
int od_check_usable(const od_doc_t *doc, char *why);

/*! \brief Is \p id on the document's bad-node list? */
bool od_is_bad_node(const od_doc_t *doc, const vp_id_t *id);

/*! \brief The ViPR kind of the document, or NULL. */
const od_kind_t *od_vipr_kind(const od_doc_t *doc);

/* ---- trust ---- */

typedef struct od_trust od_trust_t;

/*!
 * \brief Trust state for \p instance (the overlay name the node expects) with one provisioned anchor:
 * a root certificate (\p anchor_root, copied) or its SHA-256 fingerprint (\p anchor_fp); one must be given.
 */
int od_trust_new(const char *instance, X509 *anchor_root, const uint8_t anchor_fp[32], od_trust_t **out);

void od_trust_free(od_trust_t *t);

/*!
 * \brief Offer a document. On success it becomes the current one (0). Otherwise the current one stays and
 * \p why says why: VP_EMALFORMED / VP_ENOTFOUND (od_parse), VP_EAUTH (bad signature), VP_EPERM (signer not
 * trusted: not from the anchor, not a current configuration signer, or its certificate does not chain),
 * VP_EDATA_TOO_OLD (sequence not higher), VP_EEXPIRED (expiration passed), VP_EUNSUPPORTED
 * (od_check_usable). \p now 0 = time(NULL).
 */
int od_trust_accept(od_trust_t *t, const char *xml, size_t len, time_t now, char *why);

/*! \brief The document in force, or NULL before the first one was accepted (a node must not start then). */
const od_doc_t *od_trust_current(const od_trust_t *t);

/*!
 * \brief Would a node of this overlay accept \p cert from a peer? It chains to the current roots and is
 * valid at \p now, it carries at least one Node-ID of the overlay, and none is on the bad-node list.
 * Node-IDs into \p ids (up to \p cap; count in *n). VP_ESTATE without a current document, VP_EAUTH for the
 * chain, VP_ENOTFOUND without Node-ID, VP_EPERM for a bad node; \p why says which.
 */
int od_trust_check_peer(const od_trust_t *t, X509 *cert, time_t now, vp_id_t *ids, size_t cap, size_t *n,
                        char *why);

/* ---- writing (vipr-enroll) ---- */

/*! \brief What od_build() writes for a first document. */
typedef struct od_build_params {
	const char *instance;
	uint64_t sequence;
	X509 *const *roots;
	size_t n_roots;
	const char *enrollment_server;    /* URL, may be NULL */
	const vp_id_t *config_signers;
	size_t n_config_signers;
	const od_bootstrap_t *bootstrap;
	size_t n_bootstrap;
	uint32_t max_message_size, initial_ttl;
	uint32_t chord_update_interval, chord_ping_interval; /* s */
	bool chord_reactive;
	uint32_t vipr_kind_id, vipr_max_count, vipr_max_size, vipr_quota, vipr_min_lifetime,
	         vipr_max_lifetime;
} od_build_params_t;

/*! \brief Write an unsigned document (libxml2 tree, UTF-8) into *xml (free()). VP_EINVAL, VP_ENOMEM. */
int od_build(const od_build_params_t *p, char **xml, size_t *len);

/*! \brief Changes od_edit() makes to an existing document (the others elements stay as they are). */
typedef struct od_edit {
	uint64_t sequence;               /* new sequence attribute; 0 = current + 1 */
	const vp_id_t *add_bad_nodes;    /* appended as <bad-node> unless already listed */
	size_t n_add_bad_nodes;
} od_edit_t;

/*!
 * \brief Apply \p e to the configuration \p instance (NULL = first) of \p xml, then sign it (od_sign).
 * The result in *out (free()). VP_EMALFORMED / VP_ENOTFOUND as od_parse.
 */
int od_edit_and_sign(const char *xml, size_t len, const char *instance, const od_edit_t *e, EVP_PKEY *key,
                     X509 *signer, char **out, size_t *outlen);

/*!
 * \brief Sign the configuration \p instance (NULL = first) of \p xml with \p key, whose certificate
 * \p signer goes into the signature: any <signature> after it is replaced. *out is free()'d by the caller.
 */
int od_sign(const char *xml, size_t len, const char *instance, EVP_PKEY *key, X509 *signer, char **out,
            size_t *outlen);

#endif
