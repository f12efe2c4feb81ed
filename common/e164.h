/*
 * common/e164.h - normalisation of dialled or displayed phone numbers to E.164.
 *
 * ViPR keys the DHT by SHA-1 of the canonical E.164 string ("+" then 7..15
 * digits), so every number that enters the system (VAP publish, call records,
 * SIP Request-URIs, tickets) goes through vp_e164_normalize() first.  Two
 * spellings of one number must give the same string, or validation fails.
 *
 * Accepted input: digits with the separators space, tab, '-', '.', '/', '(' and
 * ')'; an optional leading '+'; an international dialling prefix ("00", or the
 * configured one such as NANP's "011"); or a national number, which needs the
 * configured default country code and may carry the national trunk prefix.
 */
#ifndef VP_COMMON_E164_H
#define VP_COMMON_E164_H

#include <stddef.h>

#define VP_E164_MAX_DIGITS 15 /* ITU-T E.164 §6 */
#define VP_E164_MIN_DIGITS 7  /* shortest assigned numbers, e.g. +683 4002 (Niue) */
#define VP_E164_BUFLEN (VP_E164_MAX_DIGITS + 2) /* '+', digits, NUL */

typedef struct vp_e164_conf {
	char country_code[4];  /*!< default country code for national numbers, digits only; "" = none */
	char intl_prefix[5];   /*!< international dialling prefix besides "00" ("011" in NANP); "" = only "00" */
	char trunk_prefix[3];  /*!< national trunk prefix stripped from national numbers ("0", NANP "1"); "" = none */
} vp_e164_conf_t;

/*!
 * \brief Fill \p conf with the usual dialling plan for \p country_code (NULL or ""
 * for none): NANP ("1") gets intl "011" and trunk "1", every other code intl "00"
 * and trunk "0".  VP_E164_CC if the code is not 1..3 digits without a leading 0.
 */
int vp_e164_conf_init(vp_e164_conf_t *conf, const char *country_code);

/*!
 * \brief Normalise \p in to "+<digits>" in \p out (VP_E164_BUFLEN bytes).
 * \p conf may be NULL (international forms only).  Errors: VP_E164_EMPTY,
 * VP_E164_CHAR (letters, misplaced '+'), VP_E164_SHORT, VP_E164_LONG,
 * VP_E164_NOCC (national number, no default country), VP_E164_CC (starts with 0).
 */
int vp_e164_normalize(const char *in, const vp_e164_conf_t *conf, char out[VP_E164_BUFLEN]);

/*! \brief True if \p s is already canonical ("+" and 7..15 digits, first digit not 0). */
int vp_e164_is_canonical(const char *s);

#endif
