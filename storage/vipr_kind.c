#include "storage/vipr_kind.h"

#include "common/buf.h"

void st_vipr_key_encode(const st_vipr_key_t *key, uint8_t out[ST_VIPR_KEY_LEN])
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, ST_VIPR_KEY_LEN);
	vp_wr_bytes(&wr, key->node.b, VP_ID_LEN);
	vp_wr_u32(&wr, key->vservice_id);
}

int st_vipr_key_decode(const uint8_t *buf, size_t len, st_vipr_key_t *key)
{
	vp_rd_t rd;
	if (len != ST_VIPR_KEY_LEN)
		return VP_EMALFORMED;
	vp_rd_init(&rd, buf, len);
	vp_rd_copy(&rd, key->node.b, VP_ID_LEN);
	vp_rd_u32(&rd, &key->vservice_id);
	return vp_rd_done(&rd);
}

int st_vipr_value_encode(const st_vipr_value_t *v, uint8_t *out, size_t cap, size_t *len)
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, ST_VIPR_VALUE_VERSION);
	vp_wr_bytes(&wr, v->contact.b, VP_ID_LEN);
	vp_wr_u32(&wr, v->vservice_id);
	vp_wr_u8(&wr, v->pvp_methods);
	vp_wr_vec_bytes(&wr, 1, v->reserved, v->reserved_len);
	*len = wr.err ? 0 : vp_wr_len(&wr);
	return wr.err;
}

int st_vipr_value_decode(const uint8_t *buf, size_t len, st_vipr_value_t *v)
{
	vp_rd_t rd;
	uint8_t version;
	size_t rlen;
	vp_rd_init(&rd, buf, len);
	if (vp_rd_u8(&rd, &version))
		return rd.err;
	if (version != ST_VIPR_VALUE_VERSION)
		return VP_EUNSUPPORTED;
	vp_rd_copy(&rd, v->contact.b, VP_ID_LEN);
	vp_rd_u32(&rd, &v->vservice_id);
	vp_rd_u8(&rd, &v->pvp_methods);
	vp_rd_vec_bytes(&rd, 1, &v->reserved, &rlen);
	v->reserved_len = (uint8_t)rlen;
	return vp_rd_done(&rd);
}
