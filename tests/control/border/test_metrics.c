/*
 * tests/control/border/test_metrics.c - control/metrics: per-thread counters summed on scrape, histogram
 * buckets, the Prometheus text, /metrics and /health over loopback HTTP.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/errcode.h"
#include "control/metrics/metrics.h"

#define PER_THREAD 200000 /* large enough that a lost update (a shared, non-atomic slot) would show */

typedef struct worker {
	vm_registry_t *reg;
	unsigned thread, id;
} worker_t;

static void *work(void *arg)
{
	worker_t *w = arg;
	for (int i = 0; i < PER_THREAD; i++)
		vm_inc(w->reg, w->thread, w->id, 1);
	return NULL;
}

static void counters_from_threads_add_up(void **state)
{
	(void)state;
	vm_registry_t *reg;
	unsigned id;
	assert_int_equal(vm_registry_new(4, 16, &reg), 0);
	assert_int_equal(vm_counter_add(reg, "x_total", NULL, "x", &id), 0);
	pthread_t th[4];
	worker_t w[4];
	for (unsigned t = 0; t < 4; t++) {
		w[t] = (worker_t){reg, t, id};
		pthread_create(&th[t], NULL, work, &w[t]);
	}
	for (unsigned t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	assert_int_equal(vm_value(reg, id), 4ull * PER_THREAD);
	vm_registry_free(reg);
}

static void registration_rules(void **state)
{
	(void)state;
	vm_registry_t *reg;
	unsigned id;
	uint64_t b[] = {10, 5};
	assert_int_equal(vm_registry_new(1, 4, &reg), 0);
	assert_int_equal(vm_counter_add(reg, "bad name", NULL, "x", &id), VP_EINVAL);
	assert_int_equal(vm_counter_add(reg, "a_total", "x=\"1\"}", "x", &id), VP_EINVAL);
	assert_int_equal(vm_counter_add(reg, "a_total", "k=\"1\"", "x", &id), 0);
	assert_int_equal(vm_counter_add(reg, "a_total", "k=\"1\"", "x", &id), VP_EEXIST);
	assert_int_equal(vm_histogram_add(reg, "a_total", NULL, "x", (uint64_t[]){1}, 1, 1, &id), VP_EINVAL);
	assert_int_equal(vm_histogram_add(reg, "h", NULL, "x", b, 2, 1, &id), VP_EINVAL); /* unsorted */
	assert_int_equal(vm_histogram_add(reg, "h", NULL, "x", (uint64_t[]){1, 2, 3}, 3, 1, &id), VP_ESPACE);
	vm_registry_free(reg);
}

static void text_format(void **state)
{
	(void)state;
	vm_registry_t *reg;
	unsigned a, b2, h;
	assert_int_equal(vm_registry_new(2, 32, &reg), 0);
	assert_int_equal(vm_counter_add(reg, "r_total", "reason=\"a\"", "refusals", &a), 0);
	assert_int_equal(vm_counter_add(reg, "other_total", NULL, "other", &b2), 0);
	assert_int_equal(vm_counter_add(reg, "r_total", "reason=\"b\"", "refusals", &b2), 0);
	assert_int_equal(vm_histogram_add(reg, "lat_seconds", NULL, "latency", (uint64_t[]){100, 1000}, 2, 1e6, &h), 0);
	vm_inc(reg, 0, a, 2);
	vm_inc(reg, 1, a, 3);
	vm_observe(reg, 0, h, 50);
	vm_observe(reg, 1, h, 500);
	vm_observe(reg, 1, h, 5000);
	char *txt;
	size_t len;
	assert_int_equal(vm_render(reg, &txt, &len), 0);
	assert_int_equal(strlen(txt), len);
	/* series of one name are grouped under one HELP/TYPE */
	const char *want = "# HELP r_total refusals\n# TYPE r_total counter\nr_total{reason=\"a\"} 5\nr_total{reason=\"b\"} 0\n";
	assert_non_null(strstr(txt, want));
	assert_non_null(strstr(txt, "lat_seconds_bucket{le=\"0.0001\"} 1\n"));
	assert_non_null(strstr(txt, "lat_seconds_bucket{le=\"0.001\"} 2\n"));
	assert_non_null(strstr(txt, "lat_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(txt, "lat_seconds_sum 0.00555\n"));
	assert_non_null(strstr(txt, "lat_seconds_count 3\n"));
	free(txt);
	vm_registry_free(reg);
}

static bool healthy;

static bool health(void *ctx, char *why, size_t cap)
{
	(void)ctx;
	if (!healthy)
		snprintf(why, cap, "call agent down");
	return healthy;
}

static void http_get(uint16_t port, const char *path, char *out, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	size_t got = 0;
	for (int i = 0; i < 100 && got + 1 < cap; i++) { /* bounded: HTTP/1.0, the server closes */
		ssize_t r = read(fd, out + got, cap - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = '\0';
	close(fd);
}

static void http_metrics_and_health(void **state)
{
	(void)state;
	vm_registry_t *reg;
	unsigned a;
	assert_int_equal(vm_registry_new(1, 8, &reg), 0);
	assert_int_equal(vm_counter_add(reg, "calls_total", NULL, "calls", &a), 0);
	vm_inc(reg, 0, a, 7);
	vm_http_t *h;
	assert_int_equal(vm_http_start(reg, "127.0.0.1", 0, health, NULL, &h), 0);
	assert_int_not_equal(vm_http_port(h), 0);
	char buf[8192];
	http_get(vm_http_port(h), "/metrics", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.0 200") ? strstr(buf, "HTTP/1.0 200") : strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "\ncalls_total 7\n"));
	healthy = true;
	http_get(vm_http_port(h), "/health", buf, sizeof(buf));
	assert_non_null(strstr(buf, " 200 "));
	healthy = false;
	http_get(vm_http_port(h), "/health", buf, sizeof(buf));
	assert_non_null(strstr(buf, " 503 "));
	assert_non_null(strstr(buf, "call agent down"));
	http_get(vm_http_port(h), "/other", buf, sizeof(buf));
	assert_non_null(strstr(buf, " 404 "));
	vm_http_stop(h);
	assert_int_equal(vm_http_start(reg, "not-an-address", 0, NULL, NULL, &h), VP_EINVAL);
	vm_registry_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(counters_from_threads_add_up),
		cmocka_unit_test(registration_rules),
		cmocka_unit_test(text_format),
		cmocka_unit_test(http_metrics_and_health),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
