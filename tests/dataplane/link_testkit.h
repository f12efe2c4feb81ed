/*
 * tests/dataplane/link_testkit.h - test nodes for the link tests: a
 * certificate store, a link context and a link set per node, all pumped from
 * one thread (dp_link_set_run with a zero timeout), plus a captured log.
 */
#ifndef VP_TESTS_LINK_TESTKIT_H
#define VP_TESTS_LINK_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "pki_testkit.h"

#define LT_OVERLAY "vipr.example"
#define LT_MAX_MSGS 256

typedef struct lt_node {
	const char *name;
	dp_cert_store_t *certs;
	dp_link_ctx_t *ctx;
	dp_link_set_t *set;
	uint16_t port;     /* listening port on 127.0.0.1, 0 if none */
	int ups, downs;
	char last_down[64];
	/* messages received, copied */
	uint8_t *msgs[LT_MAX_MSGS];
	size_t lens[LT_MAX_MSGS];
	dp_link_t *from[LT_MAX_MSGS];
	size_t n_msgs;
	uint64_t bytes_rx;
	void (*on_msg)(struct lt_node *n, dp_link_t *l, const uint8_t *msg, size_t len); /* optional */
	void *user;
} lt_node_t;

/* A node with identity `id` trusting `root`; conf may be NULL (defaults). listen: open a listener. */
void lt_node_init(lt_node_t *n, const char *name, const pk_ca_t *root, const pk_node_t *id,
                  const dp_link_conf_t *conf, bool listen);
/* As lt_node_init with a listener on 127.0.0.1:port (0 = any). */
void lt_node_init_port(lt_node_t *n, const char *name, const pk_ca_t *root, const pk_node_t *id,
                       const dp_link_conf_t *conf, uint16_t port);
void lt_node_fini(lt_node_t *n);
void lt_node_clear_msgs(lt_node_t *n);

/* Connect `from` to `to`'s listener (expect may be NULL); the link is in from's set. */
dp_link_t *lt_connect(lt_node_t *from, const lt_node_t *to, const vp_id_t *expect);

/* Run every node's set (zero timeout) until cond(arg) or `ms` pass. Returns cond's last value. */
bool lt_pump(lt_node_t **nodes, size_t n, int ms, bool (*cond)(void *), void *arg);

/* The log: everything logged since lt_log_mark(), NUL-terminated (static buffer). */
void lt_log_start(void);
long lt_log_mark(void);
const char *lt_log_since(long mark);
/* Copy the whole captured log to stderr (kept in meson's test log for diagnosis). */
void lt_log_dump(void);
/* Lines containing every one of the NULL-terminated needles. */
int lt_log_count(long mark, const char *const *needles);

#endif
