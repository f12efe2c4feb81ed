/* ValExchange codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "pvp/valx.h"

static void request_bytes_and_round_trip(void **state)
{
	pvp_valreq_t q, d;
	uint8_t buf[PVP_VALX_MAX];
	size_t n;
	(void)state;
	memset(&q, 0, sizeof(q));
	memset(q.binding, 0xb1, sizeof(q.binding));
	strcpy(q.number, "+14085551234");
	strcpy(q.domain, "b.example");
	q.prev_ticket[0] = 0xaa;
	q.prev_ticket[1] = 0xbb;
	q.prev_ticket_len = 2;
	assert_int_equal(pvp_valreq_encode(&q, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 2 + 32 + 1 + 12 + 1 + 9 + 2 + 2);
	assert_int_equal(buf[0], 1);
	assert_int_equal(buf[1], 1);
	assert_int_equal(buf[34], 12);
	assert_memory_equal(buf + 35, "+14085551234", 12);
	assert_int_equal(buf[47], 9);
	assert_memory_equal(buf + 57, "\x00\x02\xaa\xbb", 4);
	assert_int_equal(pvp_valreq_decode(buf, n, &d), 0);
	assert_memory_equal(&q, &d, sizeof(q));
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(pvp_valreq_decode(buf, i, &d), 0);
	buf[n] = 0;
	assert_int_equal(pvp_valreq_decode(buf, n + 1, &d), VP_ETRAILING);
	buf[1] = 2;
	assert_int_equal(pvp_valreq_decode(buf, n, &d), VP_EUNSUPPORTED);
	buf[1] = 1;
	buf[0] = 2;
	assert_int_equal(pvp_valreq_decode(buf, n, &d), VP_EBADTYPE);
}

static void request_with_nul_in_domain_rejected(void **state)
{
	pvp_valreq_t q, d;
	uint8_t buf[PVP_VALX_MAX];
	size_t n;
	(void)state;
	memset(&q, 0, sizeof(q));
	strcpy(q.number, "+14085551234");
	strcpy(q.domain, "b.example");
	assert_int_equal(pvp_valreq_encode(&q, buf, sizeof(buf), &n), 0);
	buf[49] = 0; /* inside "b.example" */
	assert_int_equal(pvp_valreq_decode(buf, n, &d), VP_EMALFORMED);
}

static pvp_valresp_t routes_resp(void)
{
	pvp_valresp_t r;
	memset(&r, 0, sizeof(r));
	r.status = PVP_ST_ROUTES;
	memset(r.binding, 0xc2, sizeof(r.binding));
	r.expires = 1795256243;
	r.entropy_cbits = 1684;
	r.threshold_cbits = 1600;
	r.nuris = 2;
	strcpy(r.uris[0], "sips:+14085551234@pbx.a.example");
	strcpy(r.uris[1], "sips:+14085551234@backup.a.example");
	r.ticket_len = 3;
	memcpy(r.ticket, "\x01\x02\x03", 3);
	return r;
}

static void response_round_trip(void **state)
{
	pvp_valresp_t r = routes_resp(), d;
	uint8_t buf[PVP_VALX_MAX];
	size_t n;
	(void)state;
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(buf[0], 2);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), 0);
	assert_memory_equal(&r, &d, sizeof(r));
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(pvp_valresp_decode(buf, i, &d), 0);
}

static void response_status_must_be_consistent(void **state)
{
	pvp_valresp_t r = routes_resp(), d;
	uint8_t buf[PVP_VALX_MAX];
	size_t n;
	(void)state;
	r.status = PVP_ST_PENDING; /* pending with routes */
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), VP_EMALFORMED);
	r = routes_resp();
	r.status = PVP_ST_REFUSED; /* refused with a ticket */
	r.reason = PVP_RF_DOMAIN;
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), VP_EMALFORMED);
	r.nuris = 0;
	r.ticket_len = 0;
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), 0);
	assert_int_equal(d.reason, PVP_RF_DOMAIN);
	r.status = 3;
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), VP_EMALFORMED);
	assert_string_equal(pvp_refusal_str(PVP_RF_BINDING), "binding-mismatch");
}

static void too_many_uris_rejected(void **state)
{
	pvp_valresp_t r = routes_resp(), d;
	uint8_t buf[PVP_VALX_MAX];
	size_t n;
	(void)state;
	r.nuris = PVP_URIS_MAX;
	for (size_t i = 0; i < r.nuris; i++)
		strcpy(r.uris[i], "sip:x@y");
	assert_int_equal(pvp_valresp_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_valresp_decode(buf, n, &d), 0);
	/* Hand-append a ninth URI into the list: the decoder refuses it. */
	{
		uint8_t b2[PVP_VALX_MAX];
		size_t off = 2 + 2 + 32 + 4 + 2 + 2; /* start of the uris vector length */
		size_t ulen = (size_t)buf[off] << 8 | buf[off + 1];
		memcpy(b2, buf, off + 2 + ulen);
		memcpy(b2 + off + 2 + ulen, "\x00\x07sip:x@y", 9);
		memcpy(b2 + off + 2 + ulen + 9, buf + off + 2 + ulen, n - off - 2 - ulen);
		ulen += 9;
		b2[off] = (uint8_t)(ulen >> 8);
		b2[off + 1] = (uint8_t)ulen;
		assert_int_equal(pvp_valresp_decode(b2, n + 9, &d), VP_EMALFORMED);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_bytes_and_round_trip),
		cmocka_unit_test(request_with_nul_in_domain_rejected),
		cmocka_unit_test(response_round_trip),
		cmocka_unit_test(response_status_must_be_consistent),
		cmocka_unit_test(too_many_uris_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
