/*
 * control/border/sdp.c - is this SDP offer or answer SRTP?  libosip2's SDP parser reads the body.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <osipparser2/sdp_message.h>

#include "control/border/border.h"

#define VB_SDP_MAX 65536 /* larger bodies are not SDP we accept */
#define SDP_PAD 16        /* NUL bytes after the text (see below) */

/* Is attribute \p name present at media level \p m (or session level, m = -1)? */
static bool has_attr(sdp_message_t *sdp, int m, const char *name)
{
	for (int i = 0;; i++) {
		char *f = sdp_message_a_att_field_get(sdp, m, i);
		if (!f)
			return false;
		if (strcasecmp(f, name) == 0)
			return true;
	}
}

vb_sdp_t vb_sdp_classify(const char *body, size_t len)
{
	if (!body || len == 0)
		return VB_SDP_NONE;
	if (len > VB_SDP_MAX || memchr(body, '\0', len))
		return VB_SDP_BAD;
	/*
	 * libosip2 5.3's sdp_message_parse() reads past the end of the text when a line ends in a bare LF
	 * (e.g. "m=audio 40 I*\n", found by fuzz_border_input under ASan).  So lines are handed over in
	 * their RFC 4566 form: bare LFs become CRLF, a bare CR is refused, and the copy ends in NUL padding
	 * so that an off-by-a-few read stops at a NUL inside our buffer.
	 */
	char *text = malloc(2 * len + SDP_PAD);
	if (!text)
		return VB_SDP_BAD;
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		char c = body[i];
		if (c == '\r' && (i + 1 == len || body[i + 1] != '\n')) {
			free(text);
			return VB_SDP_BAD;
		}
		if (c == '\n' && (i == 0 || body[i - 1] != '\r'))
			text[k++] = '\r';
		text[k++] = c;
	}
	memset(text + k, 0, SDP_PAD);
	sdp_message_t *sdp = NULL;
	vb_sdp_t res = VB_SDP_BAD;
	if (sdp_message_init(&sdp) != 0)
		goto finish;
	if (sdp_message_parse(sdp, text) != 0)
		goto finish;
	bool sess_crypto = has_attr(sdp, -1, "crypto");
	bool sess_fp = has_attr(sdp, -1, "fingerprint");
	res = VB_SDP_SRTP;
	for (int m = 0; !sdp_message_endof_media(sdp, m); m++) {
		const char *port = sdp_message_m_port_get(sdp, m);
		const char *proto = sdp_message_m_proto_get(sdp, m);
		if (!port || !proto) {
			res = VB_SDP_BAD;
			break;
		}
		if (strcmp(port, "0") == 0)
			continue; /* a disabled stream carries nothing */
		bool sdes = strcasecmp(proto, "RTP/SAVP") == 0 || strcasecmp(proto, "RTP/SAVPF") == 0;
		bool dtls = strcasecmp(proto, "UDP/TLS/RTP/SAVP") == 0 || strcasecmp(proto, "UDP/TLS/RTP/SAVPF") == 0;
		bool ok = (sdes && (sess_crypto || has_attr(sdp, m, "crypto"))) ||
		          (dtls && (sess_fp || has_attr(sdp, m, "fingerprint")));
		if (!ok) {
			res = VB_SDP_PLAIN;
			break;
		}
	}
finish:
	sdp_message_free(sdp);
	free(text);
	return res;
}
