/*
 * control/admin/admin_wire.c - the admin protocol's catalogue and its request/answer codec
 * (docs/protocol.md §10).  jansson reads and writes every JSON byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "control/admin/admin.h"

/* An argument is an E.164 number or a Node-ID in hex; 256 bytes leaves room for any future identifier and
 * keeps a hostile argument from reaching a handler's log line at full request size. */
#define ADM_ARG_MAX 256

const adm_cmd_info_t adm_commands[ADM_CMD__COUNT] = {
	[ADM_CMD_STATUS] = { "status", ADM_READ, NULL, NULL,
	                     "state, Node-IDs, shards, links, neighbours, fingers, entries, quota, uptime" },
	[ADM_CMD_RING] = { "ring", ADM_READ, NULL, NULL, "the node's view of the ring (predecessors, successors, fingers)" },
	[ADM_CMD_STORE] = { "store", ADM_WRITE, "number", "NUMBER",
	                    "store a ViPR registration for NUMBER through the overlay (checks by hand)" },
	[ADM_CMD_FETCH] = { "fetch", ADM_READ, "number", "NUMBER",
	                    "fetch NUMBER's registrations through the overlay (3-copy majority)" },
	[ADM_CMD_PROBE] = { "probe", ADM_READ, "node", "NODE", "route a Ping to Node-ID NODE (hex) and time it" },
	[ADM_CMD_LEAVE] = { "leave", ADM_WRITE, NULL, NULL, "hand the node's data over and leave the overlay" },
	[ADM_CMD_STATS] = { "stats", ADM_READ, NULL, NULL, "counters summed over every thread" },
	[ADM_CMD_ALARMS] = { "alarms", ADM_READ, NULL, NULL, "conditions an operator should act on" },
	[ADM_CMD_VALIDATION] = { "validation", ADM_READ, "number", "NUMBER",
	                         "validation state and learned routes of NUMBER" },
};

int adm_cmd_lookup(const char *name, adm_cmd_id_t *id)
{
	for (int i = 0; i < ADM_CMD__COUNT; i++) {
		if (!strcmp(adm_commands[i].name, name)) {
			*id = (adm_cmd_id_t)i;
			return 0;
		}
	}
	return VP_ENOTFOUND;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One frame: 4-byte length then \p j dumped compactly; VP_ETOOBIG above \p max. */
static int frame_dump(const json_t *j, size_t max, uint8_t **out, size_t *out_len)
{
	size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	if (n == 0)
		return VP_ENOMEM;
	if (n > max)
		return VP_ETOOBIG;
	uint8_t *buf = malloc(4 + n);
	if (!buf)
		return VP_ENOMEM;
	if (json_dumpb(j, (char *)buf + 4, n, JSON_COMPACT) != n) {
		free(buf);
		return VP_ENOMEM;
	}
	put_be32(buf, (uint32_t)n);
	*out = buf;
	*out_len = 4 + n;
	return 0;
}

/* The version member first, so that a later version's new members are reported as a version mismatch
 * rather than as garbage. */
static int check_version(const json_t *root)
{
	if (!json_is_object(root))
		return VP_EMALFORMED;
	json_t *v = json_object_get(root, "v");
	if (!json_is_integer(v))
		return VP_EMALFORMED;
	return json_integer_value(v) == ADM_PROTO_VERSION ? 0 : VP_EUNSUPPORTED;
}

static bool only_members(const json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val) {
		(void)val;
		bool ok = false;
		for (size_t i = 0; allowed[i]; i++)
			if (!strcmp(key, allowed[i]))
				ok = true;
		if (!ok)
			return false;
	}
	return true;
}

int adm_request_parse(const uint8_t *body, size_t len, adm_request_t *req, char *unknown)
{
	static const char *const members[] = { "v", "cmd", "args", NULL };
	int rc = VP_EMALFORMED;
	memset(req, 0, sizeof(*req));
	if (len > ADM_MAX_REQUEST)
		return VP_ETOOBIG;
	if (len == 0)
		return VP_EMALFORMED;
	json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root)
		return VP_EMALFORMED;
	if ((rc = check_version(root)) < 0)
		goto finish;
	rc = VP_EMALFORMED;
	if (!only_members(root, members))
		goto finish;
	json_t *cmd = json_object_get(root, "cmd");
	if (!json_is_string(cmd) || json_string_length(cmd) == 0)
		goto finish;
	const char *name = json_string_value(cmd);
	adm_cmd_id_t id;
	if (json_string_length(cmd) > ADM_CMD_NAME_MAX || adm_cmd_lookup(name, &id) < 0) {
		if (unknown) {
			strncpy(unknown, name, ADM_CMD_NAME_MAX);
			unknown[ADM_CMD_NAME_MAX] = '\0';
		}
		rc = VP_ENOTFOUND;
		goto finish;
	}
	json_t *args = json_object_get(root, "args");
	if (args && !json_is_object(args))
		goto finish;
	const char *argname = adm_commands[id].arg;
	if (!argname) {
		if (args && json_object_size(args) != 0)
			goto finish;
	} else {
		const char *const one[] = { argname, NULL };
		json_t *a = args ? json_object_get(args, argname) : NULL;
		if (!json_is_string(a) || !only_members(args, one))
			goto finish;
		size_t alen = json_string_length(a);
		if (alen == 0 || alen > ADM_ARG_MAX)
			goto finish;
		req->arg = strdup(json_string_value(a));
		if (!req->arg) {
			rc = VP_ENOMEM;
			goto finish;
		}
	}
	req->cmd = id;
	rc = 0;
finish:
	json_decref(root);
	return rc;
}

void adm_request_clear(adm_request_t *req)
{
	free(req->arg);
	req->arg = NULL;
}

int adm_request_encode(adm_cmd_id_t cmd, const char *arg, uint8_t **out, size_t *out_len)
{
	if ((unsigned)cmd >= ADM_CMD__COUNT)
		return VP_EINVAL;
	const char *argname = adm_commands[cmd].arg;
	if (!argname != !arg || (arg && (arg[0] == '\0' || strlen(arg) > ADM_ARG_MAX)))
		return VP_EINVAL;
	json_t *root = arg ? json_pack("{s:i, s:s, s:{s:s}}", "v", ADM_PROTO_VERSION, "cmd", adm_commands[cmd].name,
	                               "args", argname, arg)
	                   : json_pack("{s:i, s:s}", "v", ADM_PROTO_VERSION, "cmd", adm_commands[cmd].name);
	if (!root)
		return VP_EINVAL; /* json_pack refuses strings that are not UTF-8 */
	int rc = frame_dump(root, ADM_MAX_REQUEST, out, out_len);
	json_decref(root);
	return rc;
}

int adm_answer_encode(int code, const json_t *data, const char *message, uint8_t **out, size_t *out_len)
{
	json_t *root;
	if (code == 0) {
		if (data && !json_is_object(data))
			return VP_EINVAL;
		json_t *d = data ? json_incref((json_t *)data) : json_object();
		root = json_pack("{s:i, s:b, s:o}", "v", ADM_PROTO_VERSION, "ok", 1, "data", d);
	} else {
		if (code > 0)
			return VP_EINVAL;
		if (!message)
			message = vp_strerror(code);
		root = json_pack("{s:i, s:b, s:{s:i, s:s, s:s%}}", "v", ADM_PROTO_VERSION, "ok", 0, "error", "code", code,
		                 "name", vp_errname(code), "message", message, strnlen(message, 255));
	}
	if (!root)
		return VP_EINVAL;
	int rc = frame_dump(root, ADM_MAX_ANSWER, out, out_len);
	json_decref(root);
	return rc;
}

int adm_answer_parse(const uint8_t *body, size_t len, adm_answer_t *ans)
{
	static const char *const ok_members[] = { "v", "ok", "data", NULL };
	static const char *const err_members[] = { "v", "ok", "error", NULL };
	static const char *const error_members[] = { "code", "name", "message", NULL };
	int rc;
	memset(ans, 0, sizeof(*ans));
	if (len > ADM_MAX_ANSWER)
		return VP_ETOOBIG;
	if (len == 0)
		return VP_EMALFORMED;
	json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root)
		return VP_EMALFORMED;
	if ((rc = check_version(root)) < 0)
		goto finish;
	rc = VP_EMALFORMED;
	json_t *ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok))
		goto finish;
	if (json_is_true(ok)) {
		json_t *data = json_object_get(root, "data");
		if (!json_is_object(data) || !only_members(root, ok_members))
			goto finish;
		ans->data = json_incref(data);
		ans->code = 0;
	} else {
		json_t *err = json_object_get(root, "error");
		if (!json_is_object(err) || !only_members(root, err_members) || !only_members(err, error_members))
			goto finish;
		json_t *code = json_object_get(err, "code"), *msg = json_object_get(err, "message");
		if (!json_is_integer(code) || json_integer_value(code) >= 0 || json_integer_value(code) < INT32_MIN ||
		    !json_is_string(msg) || !json_is_string(json_object_get(err, "name")))
			goto finish;
		ans->code = (int)json_integer_value(code);
		snprintf(ans->message, sizeof(ans->message), "%s", json_string_value(msg));
	}
	rc = 0;
finish:
	json_decref(root);
	return rc;
}

void adm_answer_clear(adm_answer_t *ans)
{
	json_decref(ans->data);
	ans->data = NULL;
}
