/*
 * control/callagent/routes.c - the call agent's route table: learn, plan (fork / PSTN / renewal), classify
 * final responses, apply their results (docs/protocol.md §11).
 */
#include "control/callagent/callagent.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "common/log.h"

#define MOD "callagent"

typedef struct entry {
	struct entry *next;
	char number[VP_E164_BUFLEN];
	size_t n;
	vca_route_t routes[VCA_MAX_FORKS];
	uint64_t renewal_sent_s;   /* last renewal call placed over the PSTN for this number; 0 = none */
} entry_t;

struct vca_table {
	vca_conf_t conf;
	entry_t **buckets;
};

int vca_table_new(const vca_conf_t *conf, vca_table_t **out)
{
	vca_conf_t c = conf ? *conf : (vca_conf_t){ 0 };
	*out = NULL;
	if (!c.renew_permille)
		c.renew_permille = VCA_RENEW_PERMILLE_DEFAULT;
	if (!c.renew_retry_s)
		c.renew_retry_s = VCA_RENEW_RETRY_S_DEFAULT;
	if (!c.down_s)
		c.down_s = VCA_DOWN_S_DEFAULT;
	if (!c.buckets)
		c.buckets = 4096;
	if (c.renew_permille > 1000 || (c.buckets & (c.buckets - 1)))
		return VP_EINVAL;
	vca_table_t *t = calloc(1, sizeof(*t));
	if (!t || !(t->buckets = calloc(c.buckets, sizeof(*t->buckets)))) {
		free(t);
		return VP_ENOMEM;
	}
	t->conf = c;
	*out = t;
	return 0;
}

void vca_table_free(vca_table_t *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->conf.buckets; i++)
		for (entry_t *e = t->buckets[i], *nx; e; e = nx) {
			nx = e->next;
			free(e);
		}
	free(t->buckets);
	free(t);
}

/* FNV-1a over the number: numbers are dense, any spreading hash does. */
static entry_t **slot(const vca_table_t *t, const char *number)
{
	uint32_t h = 2166136261u;
	for (const char *p = number; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	entry_t **s = &t->buckets[h & (t->conf.buckets - 1)];
	while (*s && strcmp((*s)->number, number) != 0)
		s = &(*s)->next;
	return s;
}

int vca_learn(vca_table_t *t, const vca_route_t *r)
{
	if (!r || vp_e164_is_canonical(r->number) != 1 || !r->uri[0] || !r->ticket[0] == !r->cert[0] ||
	    r->expires_s <= r->learned_s || strnlen(r->uri, VCA_URI_MAX) == VCA_URI_MAX) {
		vp_log_warn(MOD, "route_refused", "number=%s uri=%s reason=invalid", r ? r->number : "-", r ? r->uri : "-");
		return VP_EINVAL;
	}
	entry_t **s = slot(t, r->number), *e = *s;
	if (!e) {
		if (!(e = calloc(1, sizeof(*e))))
			return VP_ENOMEM;
		memcpy(e->number, r->number, sizeof(e->number));
		*s = e;
	}
	for (size_t i = 0; i < e->n; i++) {
		if (strcmp(e->routes[i].uri, r->uri) != 0)
			continue;
		uint64_t down = e->routes[i].down_until_s;
		bool newer = r->expires_s > e->routes[i].expires_s;
		e->routes[i] = *r;
		/* a re-validation (later expiry) proves the route again: it is no longer down */
		e->routes[i].down_until_s = newer ? 0 : down;
		return 0;
	}
	if (e->n == VCA_MAX_FORKS)
		return VP_ESPACE;
	e->routes[e->n] = *r;
	e->routes[e->n].down_until_s = 0;
	e->n++;
	return 0;
}

static void drop(entry_t **s, size_t i)
{
	entry_t *e = *s;
	memmove(&e->routes[i], &e->routes[i + 1], (e->n - i - 1) * sizeof(e->routes[0]));
	e->n--;
	if (e->n == 0) {
		*s = e->next;
		free(e);
	}
}

int vca_forget(vca_table_t *t, const char *number, const char *uri)
{
	entry_t **s = slot(t, number);
	for (size_t i = 0; *s && i < (*s)->n; i++)
		if (strcmp((*s)->routes[i].uri, uri) == 0) {
			drop(s, i);
			return 0;
		}
	return VP_ENOTFOUND;
}

size_t vca_count(const vca_table_t *t, const char *number)
{
	entry_t *e = *slot(t, number);
	return e ? e->n : 0;
}

void vca_plan(vca_table_t *t, const char *number, uint64_t now_s, vca_plan_t *p)
{
	entry_t **s = slot(t, number);
	const vca_route_t *longest = NULL;

	memset(p, 0, sizeof(*p));
	/* expired routes are of no use any more: a new validation brings new ones */
	for (size_t i = 0; *s && i < (*s)->n;) {
		if ((*s)->routes[i].expires_s <= now_s) {
			vp_log_info(MOD, "route_expired", "number=%s uri=%s", number, (*s)->routes[i].uri);
			drop(s, i);
		} else {
			i++;
		}
	}
	entry_t *e = *s;
	for (size_t i = 0; e && i < e->n; i++) {
		const vca_route_t *r = &e->routes[i];
		if (r->down_until_s > now_s)
			continue;
		p->routes[p->n++] = *r;
		if (!longest || r->expires_s > longest->expires_s)
			longest = r;
	}
	if (!longest) {
		p->pstn = true;
		p->n = 0;
		return;
	}
	/*
	 * Renewal: the routes lapse unless the number is validated again, and only a PSTN call gets it
	 * validated.  In the last renew_permille of the longest route's life, one call goes over the PSTN;
	 * the routes stay in use for every other call until the new ones arrive, so there is no gap.
	 */
	uint64_t life = longest->expires_s - longest->learned_s;
	uint64_t window = longest->expires_s - life * t->conf.renew_permille / 1000;
	if (now_s >= window && (!e->renewal_sent_s || e->renewal_sent_s < window ||
	                        now_s >= e->renewal_sent_s + t->conf.renew_retry_s)) {
		e->renewal_sent_s = now_s;
		p->pstn = p->renewal = true;
		p->n = 0;
		vp_log_info(MOD, "route_renewal", "number=%s expires=%" PRIu64 " now=%" PRIu64, number, longest->expires_s,
		            now_s);
	}
}

vca_class_t vca_classify(int status)
{
	if (status >= 200 && status < 300)
		return VCA_C_ANSWERED;
	switch (status) {
	case 480: /* Temporarily Unavailable: the callee's own element says the user is away */
	case 486: /* Busy Here */
	case 487: /* Request Terminated: our own CANCEL, or the callee's */
	case 600: /* Busy Everywhere */
	case 603: /* Decline */
		return VCA_C_CALLEE;
	case 482:
		return VCA_C_DUPLICATE;
	case 403: /* the border refused the ticket or the certificate */
	case 404: /* the number is not there any more */
	case 410: /* Gone */
	case 484: /* Address Incomplete: the route names the number wrongly */
	case 604: /* Does Not Exist Anywhere */
		return VCA_C_FORGET;
	case 488:
	case 606:
		return VCA_C_MEDIA;
	case 501: /* Not Implemented and Version Not Supported will not get better in five minutes */
	case 505:
		return VCA_C_FORGET;
	default:
		return VCA_C_DOWN; /* 0 (transport, timeout), 3xx, other 4xx, 5xx, other 6xx */
	}
}

const char *vca_class_str(vca_class_t c)
{
	static const char *const s[] = { "answered", "callee", "duplicate", "route-down", "forget", "media" };
	return (unsigned)c < sizeof(s) / sizeof(s[0]) ? s[c] : "unknown";
}

void vca_report(vca_table_t *t, const char *number, const char *uri, vca_class_t c, uint64_t now_s)
{
	entry_t **s = slot(t, number);
	for (size_t i = 0; *s && i < (*s)->n; i++) {
		if (strcmp((*s)->routes[i].uri, uri) != 0)
			continue;
		if (c == VCA_C_DOWN) {
			(*s)->routes[i].down_until_s = now_s + t->conf.down_s;
			vp_log_info(MOD, "route_down", "number=%s uri=%s until=%" PRIu64, number, uri,
			            (*s)->routes[i].down_until_s);
		} else if (c == VCA_C_FORGET) {
			vp_log_info(MOD, "route_forgotten", "number=%s uri=%s", number, uri);
			drop(s, i);
		}
		return;
	}
}

uint64_t vca_renewal_sent(const vca_table_t *t, const char *number)
{
	entry_t *e = *slot(t, number);
	return e ? e->renewal_sent_s : 0;
}

int vca_set_renewal_sent(vca_table_t *t, const char *number, uint64_t s)
{
	entry_t *e = *slot(t, number);
	if (!e)
		return VP_ENOTFOUND;
	e->renewal_sent_s = s;
	return 0;
}

void vca_each(const vca_table_t *t, void (*fn)(void *arg, const vca_route_t *r), void *arg)
{
	for (uint32_t b = 0; b < t->conf.buckets; b++)
		for (const entry_t *e = t->buckets[b]; e; e = e->next)
			for (size_t i = 0; i < e->n; i++)
				fn(arg, &e->routes[i]);
}
