/*
 * control/vap/vap_ststore.c - the VAP store hook on an st_ shard (see header).
 */
#include "control/vap/vap_ststore.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/vipr_kind.h"

#define MOD "vap"

struct vap_ststore {
	st_shard_t *sh;
	vap_server_t *srv;          /* set by vap_ststore_run */
	vap_ststore_conf_t conf;
	uint64_t last_time;         /* storage_time of the last store (strictly increasing) */
	void **tokens;              /* stores of the open batch, completed after its commit */
	size_t n_tokens, cap;
	bool open;
	vap_ststore_stats_t st;
};

int vap_ststore_put(st_shard_t *sh, const vap_ststore_conf_t *conf, uint64_t storage_time, const char *number,
                    uint32_t vservice_id, uint8_t op)
{
	uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN];
	size_t vlen = 0;
	st_vipr_key_t k = { conf->node, vservice_id };
	st_vipr_value_t v = { conf->node, vservice_id, conf->methods, NULL, 0 };
	st_entry_t e;
	st_kind_data_t kd;
	st_store_req_t req;
	int rc;

	if (!number || (op != VAP_OP_ADD && op != VAP_OP_WITHDRAW))
		return VP_EINVAL;
	st_vipr_key_encode(&k, key);
	if (op == VAP_OP_ADD && (rc = st_vipr_value_encode(&v, val, sizeof(val), &vlen)))
		return rc;
	memset(&e, 0, sizeof(e));
	e.key = key;
	e.key_len = ST_VIPR_KEY_LEN;
	e.storage_time = storage_time;
	e.lifetime = conf->lifetime_s ? conf->lifetime_s : VAP_STSTORE_LIFETIME_DEFAULT;
	e.exists = op == VAP_OP_ADD;
	e.value = e.exists ? val : NULL;
	e.value_len = e.exists ? (uint32_t)vlen : 0;
	kd = (st_kind_data_t){ .kind = ST_VIPR_KIND_ID_DEFAULT, .values = &e, .n_values = 1 };
	req = (st_store_req_t){ .resource = vp_id_from_name(number, strlen(number)), .kinds = &kd, .n_kinds = 1,
	                        .signers = &conf->node, .n_signers = 1 };
	return st_store(sh, &req, NULL, NULL);
}

int vap_ststore_store(vap_ststore_t *s, const vap_store_req_t *r)
{
	uint64_t now = vp_time_wall_ms();
	int rc;
	if (s->n_tokens == s->cap)
		return VP_ESPACE; /* cannot happen: the server keeps at most store_inflight (= cap) in flight */
	if (!s->open) {
		if ((rc = st_batch_begin(s->sh)))
			return rc;
		s->open = true;
	}
	s->last_time = now > s->last_time ? now : s->last_time + 1;
	if ((rc = vap_ststore_put(s->sh, &s->conf, s->last_time, r->number, r->vservice_id, r->op))) {
		s->st.refused++;
		return rc; /* this store only: the others of the batch stand */
	}
	s->tokens[s->n_tokens++] = r->token;
	return 0;
}

/* Commit the iteration's batch, then complete its stores with the commit's status. */
static size_t commit(vap_ststore_t *s)
{
	size_t n = s->n_tokens;
	int rc;
	if (!s->open)
		return 0;
	rc = st_batch_commit(s->sh);
	s->open = false;
	s->st.batches++;
	if (rc) {
		s->st.commit_errors++;
		vp_log_error(MOD, "commit_failed", "stores=%zu err=%s", n, vp_errname(rc));
	} else {
		s->st.committed += n;
	}
	s->n_tokens = 0;
	for (size_t i = 0; i < n; i++)
		vap_server_store_done(s->srv, s->tokens[i], rc);
	return n;
}

int vap_ststore_new(st_shard_t *sh, const vap_ststore_conf_t *conf, unsigned max_inflight, vap_ststore_t **out)
{
	vap_ststore_t *s;
	*out = NULL;
	if (!sh || !conf || !max_inflight)
		return VP_EINVAL;
	if (!(s = calloc(1, sizeof(*s))) || !(s->tokens = calloc(max_inflight, sizeof(*s->tokens)))) {
		free(s);
		return VP_ENOMEM;
	}
	s->sh = sh;
	s->conf = *conf;
	s->cap = max_inflight;
	*out = s;
	return 0;
}

void vap_ststore_free(vap_ststore_t *s)
{
	if (!s)
		return;
	if (s->open)
		st_batch_abort(s->sh); /* the server stopped: nothing of it was acknowledged */
	free(s->tokens);
	free(s);
}

static int hook_store(void *ctx, const vap_store_req_t *r)
{
	return vap_ststore_store(ctx, r);
}

void vap_ststore_hooks(vap_ststore_t *s, vap_hooks_t *hooks)
{
	hooks->ctx = s;
	hooks->store = hook_store;
}

int vap_ststore_run(vap_ststore_t *s, vap_server_t *srv)
{
	size_t done = 0;
	int rc = 0;
	s->srv = srv;
	while (!vap_server_stopping(srv)) {
		/* Completions free in-flight slots: the next iteration issues stores at once. */
		if ((rc = vap_server_run_once(srv, done ? 0 : 100)))
			break;
		done = commit(s);
	}
	if (s->open) {
		st_batch_abort(s->sh);
		s->open = false;
	}
	return rc;
}

void vap_ststore_get_stats(const vap_ststore_t *s, vap_ststore_stats_t *out)
{
	*out = s->st;
}
