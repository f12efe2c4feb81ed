/*
 * bench/support/vsrv_memdht.c - in-process registration table for vipr_server (see header).
 */
#include "bench/support/vsrv_memdht.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/net.h"
#include "control/vap/vap_msg.h"

#define MEMDHT_BUCKETS 4096u
#define MEMDHT_NODES 64u

typedef struct mreg {
	struct mreg *next;
	char number[VP_E164_BUFLEN];
	vsrv_reg_t reg;
} mreg_t;

typedef struct mnode {
	vp_id_t id;
	char host[64];
	uint16_t port;
} mnode_t;

struct vsrv_memdht {
	pthread_mutex_t mu;
	mreg_t *b[MEMDHT_BUCKETS];
	mnode_t nodes[MEMDHT_NODES];
	size_t n_nodes;
};

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

int vsrv_memdht_new(vsrv_memdht_t **out)
{
	vsrv_memdht_t *m = calloc(1, sizeof(*m));
	*out = m;
	if (!m)
		return VP_ENOMEM;
	pthread_mutex_init(&m->mu, NULL);
	return 0;
}

void vsrv_memdht_free(vsrv_memdht_t *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < MEMDHT_BUCKETS; i++) {
		mreg_t *e = m->b[i];
		while (e) {
			mreg_t *n = e->next;
			free(e);
			e = n;
		}
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static int md_store(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg, vsrv_done_fn done,
                    void *arg)
{
	vsrv_memdht_t *m = ctx;
	mreg_t **pp, *e;
	int rc = 0;
	if (!number || !reg || (op != VAP_OP_ADD && op != VAP_OP_WITHDRAW) ||
	    strlen(number) >= VP_E164_BUFLEN)
		return VP_EINVAL;
	pthread_mutex_lock(&m->mu);
	pp = &m->b[hash_str(number) % MEMDHT_BUCKETS];
	for (; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->number, number) && vp_id_eq(&(*pp)->reg.node, &reg->node) &&
		    (*pp)->reg.vservice_id == reg->vservice_id)
			break;
	if (op == VAP_OP_WITHDRAW) {
		if (*pp) {
			e = *pp;
			*pp = e->next;
			free(e);
		}
	} else if (*pp) {
		(*pp)->reg = *reg;
	} else if ((e = calloc(1, sizeof(*e)))) {
		snprintf(e->number, sizeof(e->number), "%s", number);
		e->reg = *reg;
		*pp = e;
	} else {
		rc = VP_ENOMEM;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc)
		return rc;
	done(arg, 0);
	return 0;
}

static int md_fetch(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	vsrv_memdht_t *m = ctx;
	vsrv_reg_t regs[VSRV_REGS_MAX];
	size_t n = 0;
	if (!number)
		return VP_EINVAL;
	pthread_mutex_lock(&m->mu);
	for (mreg_t *e = m->b[hash_str(number) % MEMDHT_BUCKETS]; e && n < VSRV_REGS_MAX; e = e->next)
		if (!strcmp(e->number, number))
			regs[n++] = e->reg;
	pthread_mutex_unlock(&m->mu);
	done(arg, 0, regs, n, NULL);
	return 0;
}

int vsrv_memdht_connect(const char *host, uint16_t port, unsigned timeout_ms, int *fd)
{
	int rc = vp_net_connect_tcp(host, port, timeout_ms, VP_NET_NUMERIC, fd);
	if (!rc && (rc = vp_net_set_timeouts(*fd, timeout_ms ? timeout_ms : 5000))) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

static int md_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	vsrv_memdht_t *m = ctx;
	char host[64];
	uint16_t port = 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n_nodes; i++) {
		if (vp_id_eq(&m->nodes[i].id, contact)) {
			memcpy(host, m->nodes[i].host, sizeof(host));
			port = m->nodes[i].port;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (!port)
		return VP_ENOROUTE;
	return vsrv_memdht_connect(host, port, timeout_ms, fd);
}

void vsrv_memdht_iface(vsrv_memdht_t *m, vsrv_dht_t *out)
{
	out->ctx = m;
	out->store = md_store;
	out->fetch = md_fetch;
	out->app_attach = md_attach;
}

int vsrv_memdht_add_node(vsrv_memdht_t *m, const vp_id_t *node, const char *host, uint16_t port)
{
	int rc = 0;
	if (!node || !host || strlen(host) >= sizeof(m->nodes[0].host) || !port)
		return VP_EINVAL;
	pthread_mutex_lock(&m->mu);
	if (m->n_nodes == MEMDHT_NODES) {
		rc = VP_ESPACE;
	} else {
		m->nodes[m->n_nodes].id = *node;
		snprintf(m->nodes[m->n_nodes].host, sizeof(m->nodes[0].host), "%s", host);
		m->nodes[m->n_nodes].port = port;
		m->n_nodes++;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

size_t vsrv_memdht_count(vsrv_memdht_t *m, const char *number)
{
	size_t n = 0;
	pthread_mutex_lock(&m->mu);
	for (mreg_t *e = m->b[hash_str(number) % MEMDHT_BUCKETS]; e; e = e->next)
		n += !strcmp(e->number, number);
	pthread_mutex_unlock(&m->mu);
	return n;
}

size_t vsrv_memdht_numbers(vsrv_memdht_t *m)
{
	size_t n = 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < MEMDHT_BUCKETS; i++) {
		for (mreg_t *e = m->b[i]; e; e = e->next) {
			mreg_t *f = m->b[i];
			while (f != e && strcmp(f->number, e->number))
				f = f->next;
			n += f == e;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return n;
}
