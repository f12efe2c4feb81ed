/*
 * control/metrics/metrics.c - per-thread counter rows summed on scrape; the HTTP side is libmicrohttpd.
 */
#include "control/metrics/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "common/errcode.h"
#include "common/log.h"

#define VM_LINE 64 /* a thread's row starts on its own cache line */
#define VM_MAX_THREADS 256

typedef enum { VM_COUNTER, VM_HISTOGRAM, VM_GAUGE } vm_type_t;

typedef struct vm_series {
	char name[VM_NAME_MAX];
	char labels[VM_LABELS_MAX];
	const char *help; /* caller's static text */
	vm_type_t type;
	unsigned slot;    /* first slot */
	unsigned nb;      /* histogram: finite buckets */
	uint64_t bounds[VM_BUCKETS_MAX];
	double scale;
} vm_series_t;

struct vm_registry {
	unsigned nthreads, max_slots, used_slots, row; /* row: slots per thread, rounded to a cache line */
	vm_series_t *series;
	unsigned nseries;
	_Atomic uint64_t *slots; /* nthreads * row */
	vm_collect_fn collect;
	void *collect_ctx;
};

struct vm_http {
	struct MHD_Daemon *d;
	vm_registry_t *reg;
	vm_health_fn health;
	void *ctx;
	uint16_t port;
};

int vm_registry_new(unsigned nthreads, unsigned max_slots, vm_registry_t **out)
{
	if (!out || nthreads == 0 || nthreads > VM_MAX_THREADS || max_slots == 0 || max_slots > (1u << 20))
		return VP_EINVAL;
	vm_registry_t *r = calloc(1, sizeof(*r));
	if (!r)
		return VP_ENOMEM;
	unsigned per_line = VM_LINE / sizeof(uint64_t);
	r->nthreads = nthreads;
	r->max_slots = max_slots;
	r->row = (max_slots + per_line - 1) / per_line * per_line;
	r->series = calloc(max_slots, sizeof(*r->series)); /* at most one series per slot */
	r->slots = aligned_alloc(VM_LINE, (size_t)nthreads * r->row * sizeof(uint64_t));
	if (!r->series || !r->slots) {
		vm_registry_free(r);
		return VP_ENOMEM;
	}
	for (size_t i = 0; i < (size_t)nthreads * r->row; i++)
		atomic_init(&r->slots[i], 0);
	*out = r;
	return 0;
}

void vm_registry_free(vm_registry_t *reg)
{
	if (!reg)
		return;
	free(reg->series);
	free(reg->slots);
	free(reg);
}

static bool name_ok(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (len == 0 || len >= VM_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

/* Labels are printed verbatim inside braces: refuse what would break the line or the braces. */
static bool labels_ok(const char *l)
{
	if (!l)
		return true;
	if (strlen(l) >= VM_LABELS_MAX)
		return false;
	for (const char *p = l; *p; p++)
		if (*p == '\n' || *p == '{' || *p == '}' || *p == '\\')
			return false;
	return true;
}

static int add_series(vm_registry_t *reg, const char *name, const char *labels, const char *help,
                      vm_type_t type, unsigned nslots, unsigned *id)
{
	if (!reg || !id || !name_ok(name) || !labels_ok(labels))
		return VP_EINVAL;
	const char *lab = labels ? labels : "";
	for (unsigned i = 0; i < reg->nseries; i++) {
		vm_series_t *s = &reg->series[i];
		if (strcmp(s->name, name) != 0)
			continue;
		if (s->type != type)
			return VP_EINVAL;
		if (strcmp(s->labels, lab) == 0)
			return VP_EEXIST;
	}
	if (reg->used_slots + nslots > reg->max_slots)
		return VP_ESPACE;
	vm_series_t *s = &reg->series[reg->nseries];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->labels, sizeof(s->labels), "%s", lab);
	s->help = help;
	s->type = type;
	s->slot = reg->used_slots;
	reg->used_slots += nslots;
	*id = reg->nseries++;
	return 0;
}

int vm_counter_add(vm_registry_t *reg, const char *name, const char *labels, const char *help,
                   unsigned *id)
{
	return add_series(reg, name, labels, help, VM_COUNTER, 1, id);
}

int vm_gauge_add(vm_registry_t *reg, const char *name, const char *labels, const char *help, unsigned *id)
{
	return add_series(reg, name, labels, help, VM_GAUGE, 1, id);
}

void vm_registry_set_collect(vm_registry_t *reg, vm_collect_fn fn, void *ctx)
{
	reg->collect = fn;
	reg->collect_ctx = ctx;
}

int vm_histogram_add(vm_registry_t *reg, const char *name, const char *labels, const char *help,
                     const uint64_t *bounds, unsigned nb, double scale, unsigned *id)
{
	if (!bounds || nb == 0 || nb > VM_BUCKETS_MAX || !(scale > 0))
		return VP_EINVAL;
	for (unsigned i = 1; i < nb; i++)
		if (bounds[i] <= bounds[i - 1])
			return VP_EINVAL;
	int rc = add_series(reg, name, labels, help, VM_HISTOGRAM, nb + 2, id);
	if (rc != 0)
		return rc;
	vm_series_t *s = &reg->series[*id];
	s->nb = nb;
	memcpy(s->bounds, bounds, nb * sizeof(*bounds));
	s->scale = scale;
	return 0;
}

static inline _Atomic uint64_t *slot(const vm_registry_t *reg, unsigned thread, unsigned i)
{
	return &reg->slots[(size_t)thread * reg->row + i];
}

/* Only the owning thread writes its row, so load + store is enough (no read-modify-write bus lock). */
static inline void bump(_Atomic uint64_t *p, uint64_t n)
{
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n, memory_order_relaxed);
}

void vm_inc(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t n)
{
	bump(slot(reg, thread, reg->series[id].slot), n);
}

void vm_set(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t v)
{
	atomic_store_explicit(slot(reg, thread, reg->series[id].slot), v, memory_order_relaxed);
}

void vm_observe(vm_registry_t *reg, unsigned thread, unsigned id, uint64_t v)
{
	const vm_series_t *s = &reg->series[id];
	unsigned b = 0;
	while (b < s->nb && v > s->bounds[b])
		b++;
	bump(slot(reg, thread, s->slot + b), 1);
	bump(slot(reg, thread, s->slot + s->nb + 1), v);
}

static uint64_t sum_slot(const vm_registry_t *reg, unsigned i)
{
	uint64_t t = 0;
	for (unsigned th = 0; th < reg->nthreads; th++)
		t += atomic_load_explicit(slot(reg, th, i), memory_order_relaxed);
	return t;
}

uint64_t vm_value(const vm_registry_t *reg, unsigned id)
{
	return sum_slot(reg, reg->series[id].slot);
}

/* A growing output buffer; on allocation failure it remembers the failure and stops writing. */
typedef struct out {
	char *p;
	size_t len, cap;
	bool failed;
} out_t;

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...)
{
	if (o->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t ncap = (o->cap + (size_t)n + 1) * 2;
		char *np = realloc(o->p, ncap);
		if (!np) {
			o->failed = true;
			return;
		}
		o->p = np;
		o->cap = ncap;
	}
}

/* `{labels}` or `{labels,extra}` or `{extra}` or nothing. */
static void out_labels(out_t *o, const char *labels, const char *extra)
{
	bool l = labels[0] != '\0', e = extra && extra[0];
	if (!l && !e)
		return;
	outf(o, "{%s%s%s}", labels, l && e ? "," : "", e ? extra : "");
}

static void render_series(out_t *o, const vm_registry_t *reg, const vm_series_t *s)
{
	if (s->type == VM_COUNTER || s->type == VM_GAUGE) {
		outf(o, "%s", s->name);
		out_labels(o, s->labels, NULL);
		outf(o, " %llu\n", (unsigned long long)sum_slot(reg, s->slot));
		return;
	}
	uint64_t cum = 0;
	char le[48];
	for (unsigned b = 0; b <= s->nb; b++) {
		cum += sum_slot(reg, s->slot + b);
		if (b < s->nb)
			snprintf(le, sizeof(le), "le=\"%.9g\"", (double)s->bounds[b] / s->scale);
		else
			snprintf(le, sizeof(le), "le=\"+Inf\"");
		outf(o, "%s_bucket", s->name);
		out_labels(o, s->labels, le);
		outf(o, " %llu\n", (unsigned long long)cum);
	}
	outf(o, "%s_sum", s->name);
	out_labels(o, s->labels, NULL);
	outf(o, " %.9g\n", (double)sum_slot(reg, s->slot + s->nb + 1) / s->scale);
	outf(o, "%s_count", s->name);
	out_labels(o, s->labels, NULL);
	outf(o, " %llu\n", (unsigned long long)cum);
}

int vm_render(const vm_registry_t *reg, char **out, size_t *len)
{
	out_t o = {0};
	o.cap = 4096;
	o.p = malloc(o.cap);
	if (!o.p)
		return VP_ENOMEM;
	o.p[0] = '\0';
	for (unsigned i = 0; i < reg->nseries; i++) {
		const vm_series_t *s = &reg->series[i];
		bool seen = false;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = strcmp(reg->series[j].name, s->name) == 0;
		if (seen)
			continue; /* printed with the first series of its name */
		outf(&o, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help ? s->help : s->name, s->name,
		     s->type == VM_COUNTER ? "counter" : s->type == VM_GAUGE ? "gauge" : "histogram");
		for (unsigned j = i; j < reg->nseries; j++)
			if (strcmp(reg->series[j].name, s->name) == 0)
				render_series(&o, reg, &reg->series[j]);
	}
	if (o.failed) {
		free(o.p);
		return VP_ENOMEM;
	}
	*out = o.p;
	if (len)
		*len = o.len;
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **state)
{
	(void)version;
	(void)upload;
	vm_http_t *h = cls;
	if (*upload_len != 0)
		return MHD_NO; /* we take no bodies */
	(void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("method not allowed\n"), 19, "text/plain");
	if (strcmp(url, "/metrics") == 0) {
		char *body;
		size_t len;
		if (h->reg->collect)
			h->reg->collect(h->reg->collect_ctx, h->reg);
		if (vm_render(h->reg, &body, &len) != 0)
			return MHD_NO;
		return reply(c, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4");
	}
	if (strcmp(url, "/health") == 0) {
		char why[200] = "";
		bool ok = h->health ? h->health(h->ctx, why, sizeof(why)) : true;
		char *body = malloc(256);
		if (!body)
			return MHD_NO;
		int n = snprintf(body, 256, "%s%s%s\n", ok ? "ok" : "unhealthy", why[0] ? " " : "", why);
		return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, (size_t)n, "text/plain");
	}
	return reply(c, MHD_HTTP_NOT_FOUND, strdup("not found\n"), 10, "text/plain");
}

int vm_http_start(vm_registry_t *reg, const char *addr, uint16_t port, vm_health_fn health, void *ctx,
                  vm_http_t **out)
{
	if (!reg || !addr || !out)
		return VP_EINVAL;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		flags |= MHD_USE_IPv6;
	} else {
		return VP_EINVAL;
	}
	vm_http_t *h = calloc(1, sizeof(*h));
	if (!h)
		return VP_ENOMEM;
	h->reg = reg;
	h->health = health;
	h->ctx = ctx;
	h->d = MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
	                        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!h->d) {
		vp_log_error("metrics", "http_start_failed", "addr=%s port=%u", addr, port);
		free(h);
		return VP_EIO;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = di ? di->port : port;
	*out = h;
	return 0;
}

uint16_t vm_http_port(const vm_http_t *h)
{
	return h->port;
}

void vm_http_stop(vm_http_t *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
