/* common/net: host:port parsing, loopback listen/connect, deadlines and timespec arithmetic. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/net.h"

static void split_accepts_v4_names_and_bracketed_v6(void **state)
{
	char h[64];
	uint16_t p;
	(void)state;
	assert_int_equal(vp_net_split_hostport("127.0.0.1:5349", true, h, sizeof(h), &p), 0);
	assert_string_equal(h, "127.0.0.1");
	assert_int_equal(p, 5349);
	assert_int_equal(vp_net_split_hostport("vap.example:0", true, h, sizeof(h), &p), 0);
	assert_string_equal(h, "vap.example");
	assert_int_equal(p, 0);
	assert_int_equal(vp_net_split_hostport("[::1]:65535", true, h, sizeof(h), &p), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(p, 65535);
	assert_int_equal(vp_net_split_hostport("[fe80::1%lo]:7", true, h, sizeof(h), &p), 0);
	assert_string_equal(h, "fe80::1%lo");
	assert_int_equal(p, 7);
	/* Without a port when the caller allows it. */
	assert_int_equal(vp_net_split_hostport("[::1]", false, h, sizeof(h), &p), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(p, 0);
	assert_int_equal(vp_net_split_hostport("10.0.0.1", false, h, sizeof(h), &p), 0);
	assert_string_equal(h, "10.0.0.1");
}

static void split_refuses_malformed(void **state)
{
	char h[16];
	uint16_t p = 77;
	(void)state;
	static const char *const bad[] = {
		"127.0.0.1",        /* port required */
		"127.0.0.1:",       /* empty port */
		":80",              /* empty host */
		"[]:80",            /* empty host */
		"127.0.0.1:65536",  /* port out of range */
		"127.0.0.1:99999999999999999999", /* overflow */
		"127.0.0.1:8o",     /* not decimal */
		"127.0.0.1:-1",
		"127.0.0.1: 80",
		"::1:80",           /* bare IPv6: ambiguous */
		"[::1:80",          /* unbalanced */
		"[::1]80",          /* junk after the bracket */
		"[[::1]]:80",
		"a]b:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = vp_net_split_hostport(bad[i], true, h, sizeof(h), &p);
		if (rc != VP_EINVAL)
			fail_msg("'%s' gave %d", bad[i], rc);
	}
	/* Exactly 15 characters fit a 16-byte buffer; 16 do not (never cut). */
	assert_int_equal(vp_net_split_hostport("abcdefghijklmno:1", true, h, sizeof(h), &p), 0);
	assert_string_equal(h, "abcdefghijklmno");
	assert_int_equal(vp_net_split_hostport("abcdefghijklmnop:1", true, h, sizeof(h), &p), VP_ESPACE);
}

static void numeric_addresses_and_format(void **state)
{
	vp_net_addr_t a;
	char s[64];
	(void)state;
	assert_int_equal(vp_net_addr_numeric("192.0.2.7", 80, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(vp_net_addr_port(&a), 80);
	assert_int_equal(vp_net_addr_format(&a, s, sizeof(s)), 0);
	assert_string_equal(s, "192.0.2.7:80");
	assert_int_equal(vp_net_addr_numeric("2001:db8::5", 443, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(vp_net_addr_format(&a, s, sizeof(s)), 0);
	assert_string_equal(s, "[2001:db8::5]:443");
	assert_int_equal(vp_net_addr_format(&a, s, 8), VP_ESPACE);
	assert_int_equal(vp_net_addr_numeric("localhost", 80, &a), VP_EINVAL);
	assert_int_equal(vp_net_addr_numeric("256.1.1.1", 80, &a), VP_EINVAL);
}

static void listen_then_connect_on_loopback(void **state)
{
	int lfd, cfd, afd;
	uint16_t port = 0;
	char buf[4];
	(void)state;
	assert_int_equal(vp_net_listen_tcp("127.0.0.1", 0, 16, VP_NET_NONBLOCK, &lfd, &port), 0);
	assert_true(port != 0);
	assert_int_equal(vp_net_connect_tcp("127.0.0.1", port, 2000, VP_NET_NUMERIC | VP_NET_NODELAY, &cfd), 0);
	/* The listener is non-blocking as asked; the connected socket is blocking (the default). */
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(write(afd, "ok", 2), 2);
	assert_int_equal(vp_net_set_timeouts(cfd, 2000), 0);
	assert_int_equal(read(cfd, buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "ok", 2);
	close(afd);
	close(cfd);
	/* By "host:port"; a name is refused when only numeric addresses may be used (no DNS lookup). */
	{
		char hp[32];
		snprintf(hp, sizeof(hp), "127.0.0.1:%u", port);
		assert_int_equal(vp_net_connect_hostport(hp, 2000, VP_NET_NUMERIC, &cfd), 0);
		close(cfd);
		snprintf(hp, sizeof(hp), "localhost:%u", port);
		assert_int_equal(vp_net_connect_hostport(hp, 2000, VP_NET_NUMERIC, &cfd), VP_EINVAL);
		assert_int_equal(cfd, -1);
	}
	close(lfd);
}

static void connect_to_closed_port_fails_fast(void **state)
{
	int lfd, cfd;
	uint16_t port;
	uint64_t t0;
	(void)state;
	/* A port that was just ours and is closed now: refused, not a timeout. */
	assert_int_equal(vp_net_listen_tcp("127.0.0.1", 0, 1, 0, &lfd, &port), 0);
	close(lfd);
	t0 = vp_time_mono_ns();
	assert_int_equal(vp_net_connect_tcp("127.0.0.1", port, 3000, VP_NET_NUMERIC, &cfd), VP_EIO);
	assert_int_equal(cfd, -1);
	assert_true(vp_time_mono_ns() - t0 < 2000000000ull);
	/* Not an address: refused before any socket. */
	assert_int_equal(vp_net_listen_tcp("not-an-address", 0, 1, 0, &lfd, &port), VP_EINVAL);
	assert_int_equal(lfd, -1);
}

static void listen_on_ipv6_loopback(void **state)
{
	int lfd, cfd;
	uint16_t port;
	(void)state;
	if (vp_net_listen_tcp("::1", 0, 4, 0, &lfd, &port)) {
		skip(); /* no IPv6 on this machine */
		return;
	}
	{
		char hp[32];
		snprintf(hp, sizeof(hp), "[::1]:%u", port);
		assert_int_equal(vp_net_connect_hostport(hp, 2000, VP_NET_NUMERIC, &cfd), 0);
		close(cfd);
	}
	close(lfd);
}

static void timespec_arithmetic_normalises(void **state)
{
	struct timespec a = { .tv_sec = 10, .tv_nsec = 999999999 }, b;
	(void)state;
	b = vp_timespec_add_ms(a, 1);
	assert_int_equal(b.tv_sec, 11);
	assert_int_equal(b.tv_nsec, 999999);
	b = vp_timespec_add_ms(a, 2500);
	assert_int_equal(b.tv_sec, 13);
	assert_int_equal(b.tv_nsec, 499999999);
	b = vp_timespec_add_ms(a, 0);
	assert_int_equal(vp_timespec_cmp(&a, &b), 0);
	b = vp_timespec_add_ms(a, 1);
	assert_int_equal(vp_timespec_cmp(&a, &b), -1);
	assert_int_equal(vp_timespec_cmp(&b, &a), 1);
	b = (struct timespec){ .tv_sec = 11, .tv_nsec = 0 };
	assert_int_equal(vp_timespec_cmp(&a, &b), -1);
	b = vp_timespec_from_ms(86400001);
	assert_int_equal(b.tv_sec, 86400);
	assert_int_equal(b.tv_nsec, 1000000);
}

static void deadlines_count_down_and_saturate(void **state)
{
	vp_deadline_t d;
	struct timespec now, at, cap;
	int left;
	(void)state;
	d = vp_deadline_in_ms(0);
	assert_true(vp_deadline_expired(&d));
	assert_int_equal(vp_deadline_remaining_ms(&d), 0);
	d = vp_deadline_in_ms(1000);
	left = vp_deadline_remaining_ms(&d);
	assert_true(left > 900 && left <= 1000);
	assert_false(vp_deadline_expired(&d));
	vp_sleep_ms(30);
	assert_true(vp_deadline_remaining_ms(&d) <= left - 30);
	/* Huge: no overflow into the past. */
	d = vp_deadline_in_ms(UINT64_MAX);
	assert_false(vp_deadline_expired(&d));
	assert_int_equal(vp_deadline_remaining_ms(&d), INT32_MAX);
	/* The timed-wait time is capped by the slice, and by the deadline when that comes first. */
	clock_gettime(CLOCK_REALTIME, &now);
	at = vp_deadline_abstime(&d, 100);
	cap = vp_timespec_add_ms(now, 150);
	assert_int_equal(vp_timespec_cmp(&at, &cap), -1);
	cap = vp_timespec_add_ms(now, 99);
	assert_int_equal(vp_timespec_cmp(&at, &cap), 1);
	d = vp_deadline_in_ms(20);
	clock_gettime(CLOCK_REALTIME, &now);
	at = vp_deadline_abstime(&d, 100);
	cap = vp_timespec_add_ms(now, 60);
	assert_int_equal(vp_timespec_cmp(&at, &cap), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(split_accepts_v4_names_and_bracketed_v6),
		cmocka_unit_test(split_refuses_malformed),
		cmocka_unit_test(numeric_addresses_and_format),
		cmocka_unit_test(listen_then_connect_on_loopback),
		cmocka_unit_test(connect_to_closed_port_fails_fast),
		cmocka_unit_test(listen_on_ipv6_loopback),
		cmocka_unit_test(timespec_arithmetic_normalises),
		cmocka_unit_test(deadlines_count_down_and_saturate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
