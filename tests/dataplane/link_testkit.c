#include "link_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

static FILE *log_file;
static char log_buf[1 << 20];

void lt_log_start(void)
{
	if (!log_file)
		log_file = tmpfile();
	if (!log_file)
		abort();
	vp_log_setup(VP_LOG_INFO, log_file);
}

long lt_log_mark(void)
{
	fflush(log_file);
	return ftell(log_file);
}

const char *lt_log_since(long mark)
{
	long end;
	size_t n;
	fflush(log_file);
	end = ftell(log_file);
	if (end - mark >= (long)sizeof(log_buf))
		mark = end - (long)sizeof(log_buf) + 1;
	fseek(log_file, mark, SEEK_SET);
	n = fread(log_buf, 1, (size_t)(end - mark), log_file);
	log_buf[n] = '\0';
	fseek(log_file, 0, SEEK_END);
	return log_buf;
}

void lt_log_dump(void)
{
	fputs(lt_log_since(0), stderr);
}

int lt_log_count(long mark, const char *const *needles)
{
	const char *p = lt_log_since(mark);
	int count = 0;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[2048];
		bool all = true;
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		for (const char *const *n = needles; *n; n++)
			all = all && strstr(line, *n);
		count += all;
		p += eol ? (size_t)(eol - p) + 1 : strlen(p);
	}
	return count;
}

static void on_up(void *arg, dp_link_t *l)
{
	lt_node_t *n = arg;
	(void)l;
	n->ups++;
}

static void on_down(void *arg, dp_link_t *l, const char *reason)
{
	lt_node_t *n = arg;
	(void)l;
	n->downs++;
	snprintf(n->last_down, sizeof(n->last_down), "%s", reason ? reason : "");
}

static void on_msg(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	lt_node_t *n = arg;
	n->bytes_rx += len;
	if (n->n_msgs < LT_MAX_MSGS) {
		n->msgs[n->n_msgs] = malloc(len ? len : 1);
		memcpy(n->msgs[n->n_msgs], msg, len);
		n->lens[n->n_msgs] = len;
		n->from[n->n_msgs] = l;
		n->n_msgs++;
	}
	if (n->on_msg)
		n->on_msg(n, l, msg, len);
}

void lt_node_init(lt_node_t *n, const char *name, const pk_ca_t *root, const pk_node_t *id,
                  const dp_link_conf_t *conf, bool listen)
{
	lt_node_init_port(n, name, root, id, conf, listen ? 0 : UINT16_MAX);
}

void lt_node_init_port(lt_node_t *n, const char *name, const pk_ca_t *root, const pk_node_t *id,
                       const dp_link_conf_t *conf, uint16_t port)
{
	char addr[32];
	dp_cert_store_cfg_t cc = { LT_OVERLAY, 0, NULL };
	dp_link_ident_t ident = { id->cert, id->key, NULL };
	dp_link_set_cb_t cb = { n, on_up, on_msg, on_down };
	dp_link_conf_t def;
	int fd = -1;

	memset(n, 0, sizeof(*n));
	n->name = name;
	if (!conf) {
		dp_link_conf_default(&def);
		def.handshake_timeout_ms = 3000;
		conf = &def;
	}
	if (dp_cert_store_new(&cc, &n->certs) || dp_cert_store_add_root(n->certs, root->cert) ||
	    dp_link_ctx_new(conf, n->certs, &ident, &n->ctx))
		abort();
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (port != UINT16_MAX && dp_link_listen(addr, 128, &fd, &n->port))
		abort();
	if (dp_link_set_new(n->ctx, fd, &cb, &n->set))
		abort();
}

void lt_node_clear_msgs(lt_node_t *n)
{
	for (size_t i = 0; i < n->n_msgs; i++)
		free(n->msgs[i]);
	n->n_msgs = 0;
}

void lt_node_fini(lt_node_t *n)
{
	lt_node_clear_msgs(n);
	dp_link_set_free(n->set);
	dp_link_ctx_free(n->ctx);
	dp_cert_store_free(n->certs);
	memset(n, 0, sizeof(*n));
}

dp_link_t *lt_connect(lt_node_t *from, const lt_node_t *to, const vp_id_t *expect)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char addr[32];
	dp_link_t *l;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", to->port);
	if (dp_link_addr_parse(addr, &ss, &sl) ||
	    dp_link_connect(from->ctx, (struct sockaddr *)&ss, sl, expect, vp_time_mono_ns() / 1000000u, &l) ||
	    dp_link_set_add(from->set, l))
		abort();
	return l;
}

bool lt_pump(lt_node_t **nodes, size_t n, int ms, bool (*cond)(void *), void *arg)
{
	uint64_t end = vp_time_mono_ns() / 1000000u + (uint64_t)ms;
	for (;;) {
		bool idle = true;
		if (cond && cond(arg))
			return true;
		if (vp_time_mono_ns() / 1000000u >= end)
			return cond ? cond(arg) : false;
		for (size_t i = 0; i < n; i++)
			if (dp_link_set_run(nodes[i]->set, 0) > 0)
				idle = false;
		if (idle) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
}
