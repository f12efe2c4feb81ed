/*
 * pvp/valx.h - ValExchange request/response codec (docs/protocol.md §6).
 *
 * Encoders write into caller buffers; decoders copy into fixed-size structs
 * (no allocation) and refuse anything that is not exactly the documented form.
 */
#ifndef VP_PVP_VALX_H
#define VP_PVP_VALX_H

#include <stddef.h>
#include <stdint.h>

#include "common/e164.h"
#include "pvp/ticket.h"

#define PVP_VALX_VERSION 1
#define PVP_VALX_MAX 8192           /* frame body limit */
#define PVP_BINDING_LEN 32
#define PVP_URI_MAX 256             /* bytes per SIP URI, NUL included */
#define PVP_URIS_MAX 8              /* URIs per number */
#define PVP_EXPORTER_LABEL "EXPORTER-ViPR-PVP-v1"

enum { PVP_VALX_REQ = 1, PVP_VALX_RESP = 2 };

typedef enum pvp_status {
	PVP_ST_ROUTES = 0,   /*!< routes and ticket */
	PVP_ST_PENDING = 1,  /*!< ticket only: entropy below the threshold */
	PVP_ST_REFUSED = 2,  /*!< no ticket; see reason */
} pvp_status_t;

typedef enum pvp_refusal {
	PVP_RF_NONE = 0,
	PVP_RF_DOMAIN = 1,
	PVP_RF_NUMBER = 2,
	PVP_RF_BINDING = 3,
	PVP_RF_MALFORMED = 4,
	PVP_RF_VERSION = 5,
	PVP_RF_INTERNAL = 6,
} pvp_refusal_t;

/*! \brief Token for a refusal reason ("domain-refused"); never NULL. */
const char *pvp_refusal_str(unsigned reason);

typedef struct pvp_valreq {
	uint8_t binding[PVP_BINDING_LEN];
	char number[VP_E164_BUFLEN];
	char domain[PVP_DOMAIN_MAX + 1];
	uint8_t prev_ticket[PVP_TICKET_MAX];
	size_t prev_ticket_len;     /*!< 0 = none */
} pvp_valreq_t;

typedef struct pvp_valresp {
	uint8_t status;             /*!< pvp_status_t */
	uint8_t reason;             /*!< pvp_refusal_t */
	uint8_t binding[PVP_BINDING_LEN];
	uint32_t expires;
	uint16_t entropy_cbits;
	uint16_t threshold_cbits;
	size_t nuris;
	char uris[PVP_URIS_MAX][PVP_URI_MAX];
	uint8_t ticket[PVP_TICKET_MAX];
	size_t ticket_len;
} pvp_valresp_t;

/*! \brief Encode a request body (no frame header). */
int pvp_valreq_encode(const pvp_valreq_t *q, uint8_t *out, size_t cap, size_t *len);

/*!
 * \brief Decode a request body.  VP_EUNSUPPORTED for another version,
 * VP_EMALFORMED/VP_ETRUNC/VP_ETRAILING/VP_EBADTYPE for bad bytes.
 */
int pvp_valreq_decode(const uint8_t *in, size_t len, pvp_valreq_t *q);

/*! \brief Encode a response body. */
int pvp_valresp_encode(const pvp_valresp_t *r, uint8_t *out, size_t cap, size_t *len);

/*! \brief Decode a response body (errors as pvp_valreq_decode()). */
int pvp_valresp_decode(const uint8_t *in, size_t len, pvp_valresp_t *r);

#endif
