/*
 * control/admin/admin_conf.c - the [admin] rows of the daemon's configuration schema (common/conf.h):
 * where the admin sockets are and the bounds the server keeps (docs/protocol.md §10.5, §10.6).
 */
#include <string.h>

#include "common/errcode.h"
#include "control/admin/admin.h"

static const vp_conf_opt_t adm_rows[] = {
	{ .section = "admin", .key = "socket", .type = VP_CONF_STR, .def = "/run/viprd/admin.sock",
	  .doc = "admin socket (mode 0600): every viprctl command, including store and leave",
	  VP_CONF_AT(adm_conf_t, socket) },
	{ .section = "admin", .key = "monitor_socket", .type = VP_CONF_STR,
	  .doc = "optional second socket, mode 0660, read-only commands only (for a monitoring group)",
	  VP_CONF_AT(adm_conf_t, monitor_socket) },
	{ .section = "admin", .key = "max_conns", .type = VP_CONF_U32, .min = 1, .max = 1024, .def = "16",
	  .unit = "connections", .doc = "admin connections served at once per socket; one more is answered busy",
	  VP_CONF_AT(adm_conf_t, max_conns) },
	{ .section = "admin", .key = "request_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 600000,
	  .def = "5s", .doc = "a request must arrive whole, and its answer be taken, within this",
	  VP_CONF_AT(adm_conf_t, request_timeout_ms) },
	{ .section = "admin", .key = "idle_timeout", .type = VP_CONF_DUR_MS, .min = 1000, .max = 86400000,
	  .def = "60s", .doc = "an admin connection with nothing in flight is closed after this",
	  VP_CONF_AT(adm_conf_t, idle_timeout_ms) },
};

int adm_conf_schema(size_t base, vp_conf_opt_t *out, size_t cap, size_t *n)
{
	size_t k = VP_CONF_NOPTS(adm_rows);
	if (cap < k)
		return VP_ESPACE;
	for (size_t i = 0; i < k; i++) {
		out[i] = adm_rows[i];
		out[i].off += base;
	}
	*n = k;
	return 0;
}

void adm_conf_server_opts(const adm_conf_t *c, bool monitor, adm_server_opts_t *out)
{
	memset(out, 0, sizeof(*out));
	out->mode = monitor ? 0660 : 0600;
	out->read_only = monitor;
	out->max_conns = c->max_conns;
	out->request_timeout_ms = (unsigned)c->request_timeout_ms;
	out->idle_timeout_ms = (unsigned)c->idle_timeout_ms;
}
