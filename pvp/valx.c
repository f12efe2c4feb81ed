/*
 * pvp/valx.c - ValExchange codec.
 */
#include "pvp/valx.h"

#include <string.h>

#include "common/buf.h"
#include "common/errcode.h"

static const char *const refusal_str[] = {
	[PVP_RF_NONE] = "none",
	[PVP_RF_DOMAIN] = "domain-refused",
	[PVP_RF_NUMBER] = "number-mismatch",
	[PVP_RF_BINDING] = "binding-mismatch",
	[PVP_RF_MALFORMED] = "malformed",
	[PVP_RF_VERSION] = "version",
	[PVP_RF_INTERNAL] = "server-error",
};

const char *pvp_refusal_str(unsigned reason)
{
	if (reason < sizeof(refusal_str) / sizeof(refusal_str[0]))
		return refusal_str[reason];
	return "unknown";
}

/* Copy a vector into a C string of capacity cap: no NUL inside, 1..cap-1 bytes. */
static int copy_str(char *dst, size_t cap, const uint8_t *p, size_t n, size_t min)
{
	if (n < min || n >= cap || (n && memchr(p, 0, n)))
		return VP_EMALFORMED;
	if (n)
		memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

static int header(vp_rd_t *rd, uint8_t want_type)
{
	uint8_t type, ver;
	vp_rd_u8(rd, &type);
	vp_rd_u8(rd, &ver);
	if (rd->err)
		return rd->err;
	if (type != want_type)
		return VP_EBADTYPE;
	if (ver != PVP_VALX_VERSION)
		return VP_EUNSUPPORTED;
	return 0;
}

int pvp_valreq_encode(const pvp_valreq_t *q, uint8_t *out, size_t cap, size_t *len)
{
	vp_wr_t wr;
	size_t nl = strnlen(q->number, sizeof(q->number)), dl = strnlen(q->domain, sizeof(q->domain));
	*len = 0;
	if (nl == 0 || dl == 0 || q->prev_ticket_len > sizeof(q->prev_ticket))
		return VP_EINVAL;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, PVP_VALX_REQ);
	vp_wr_u8(&wr, PVP_VALX_VERSION);
	vp_wr_bytes(&wr, q->binding, PVP_BINDING_LEN);
	vp_wr_vec_bytes(&wr, 1, q->number, nl);
	vp_wr_vec_bytes(&wr, 1, q->domain, dl);
	vp_wr_vec_bytes(&wr, 2, q->prev_ticket, q->prev_ticket_len);
	*len = vp_wr_len(&wr);
	return wr.err;
}

int pvp_valreq_decode(const uint8_t *in, size_t len, pvp_valreq_t *q)
{
	vp_rd_t rd;
	const uint8_t *num, *dom, *tk;
	size_t nl, dl, tl;
	int rc;

	memset(q, 0, sizeof(*q));
	vp_rd_init(&rd, in, len);
	if ((rc = header(&rd, PVP_VALX_REQ)))
		return rc;
	vp_rd_copy(&rd, q->binding, PVP_BINDING_LEN);
	vp_rd_vec_bytes(&rd, 1, &num, &nl);
	vp_rd_vec_bytes(&rd, 1, &dom, &dl);
	vp_rd_vec_bytes(&rd, 2, &tk, &tl);
	if ((rc = vp_rd_done(&rd)))
		return rc;
	if (copy_str(q->number, sizeof(q->number), num, nl, 1) ||
	    copy_str(q->domain, sizeof(q->domain), dom, dl, 1) || tl > sizeof(q->prev_ticket))
		return VP_EMALFORMED;
	memcpy(q->prev_ticket, tk, tl);
	q->prev_ticket_len = tl;
	return 0;
}

int pvp_valresp_encode(const pvp_valresp_t *r, uint8_t *out, size_t cap, size_t *len)
{
	vp_wr_t wr;
	size_t mark;
	*len = 0;
	if (r->nuris > PVP_URIS_MAX || r->ticket_len > sizeof(r->ticket))
		return VP_EINVAL;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, PVP_VALX_RESP);
	vp_wr_u8(&wr, PVP_VALX_VERSION);
	vp_wr_u8(&wr, r->status);
	vp_wr_u8(&wr, r->reason);
	vp_wr_bytes(&wr, r->binding, PVP_BINDING_LEN);
	vp_wr_u32(&wr, r->expires);
	vp_wr_u16(&wr, r->entropy_cbits);
	vp_wr_u16(&wr, r->threshold_cbits);
	mark = vp_wr_vec_begin(&wr, 2);
	for (size_t i = 0; i < r->nuris; i++) {
		size_t ul = strnlen(r->uris[i], PVP_URI_MAX);
		if (ul == 0 || ul >= PVP_URI_MAX)
			return VP_EINVAL;
		vp_wr_vec_bytes(&wr, 2, r->uris[i], ul);
	}
	vp_wr_vec_end(&wr, mark, 2);
	vp_wr_vec_bytes(&wr, 2, r->ticket, r->ticket_len);
	*len = vp_wr_len(&wr);
	return wr.err;
}

int pvp_valresp_decode(const uint8_t *in, size_t len, pvp_valresp_t *r)
{
	vp_rd_t rd, uris;
	const uint8_t *tk;
	size_t tl;
	int rc;

	memset(r, 0, sizeof(*r));
	vp_rd_init(&rd, in, len);
	if ((rc = header(&rd, PVP_VALX_RESP)))
		return rc;
	vp_rd_u8(&rd, &r->status);
	vp_rd_u8(&rd, &r->reason);
	vp_rd_copy(&rd, r->binding, PVP_BINDING_LEN);
	vp_rd_u32(&rd, &r->expires);
	vp_rd_u16(&rd, &r->entropy_cbits);
	vp_rd_u16(&rd, &r->threshold_cbits);
	vp_rd_vec(&rd, 2, &uris);
	vp_rd_vec_bytes(&rd, 2, &tk, &tl);
	if ((rc = vp_rd_done(&rd)))
		return rc;
	while (vp_rd_left(&uris) > 0) {
		const uint8_t *u;
		size_t ul;
		if (vp_rd_vec_bytes(&uris, 2, &u, &ul))
			return uris.err;
		if (r->nuris == PVP_URIS_MAX || copy_str(r->uris[r->nuris], PVP_URI_MAX, u, ul, 1))
			return VP_EMALFORMED;
		r->nuris++;
	}
	if (r->status > PVP_ST_REFUSED || tl > sizeof(r->ticket))
		return VP_EMALFORMED;
	/* Consistency: routes need URIs and a ticket; pending a ticket only; refused neither. */
	if ((r->status == PVP_ST_ROUTES && (!r->nuris || !tl)) ||
	    (r->status == PVP_ST_PENDING && (r->nuris || !tl)) ||
	    (r->status == PVP_ST_REFUSED && (r->nuris || tl || r->reason == PVP_RF_NONE)) ||
	    (r->status != PVP_ST_REFUSED && r->reason != PVP_RF_NONE))
		return VP_EMALFORMED;
	memcpy(r->ticket, tk, tl);
	r->ticket_len = tl;
	return 0;
}
