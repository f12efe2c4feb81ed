/*
 * common/conf.h - the configuration file format of viprd and its tools.
 *
 *   # comment
 *   [overlay]
 *   name = vipr.example.net
 *   bootstrap = 127.0.0.1:6084, 127.0.0.1:6085
 *   [pvp]
 *   vcr_retention = 48h          # durations: ms, s, m, h, d
 *   greeting = "quoted # keeps hashes"
 *
 * Sections and keys are case-sensitive ASCII; a key may appear once per section.
 * Every lookup is typed and range-checked and every error names the file line,
 * so a typo is reported at start-up ("line 12: [pvp] vcr_retension: unknown key")
 * rather than silently ignored.  vp_conf_check_keys() rejects keys the program
 * does not know.
 */
#ifndef VP_COMMON_CONF_H
#define VP_COMMON_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VP_CONF_MAX_LINE 4096 /* longer lines are an error, not a silent cut */

typedef struct vp_conf vp_conf_t;

/*! \brief Where and why parsing or a lookup failed (a line of 0 means "not from the file"). */
typedef struct vp_conf_err {
	int line;
	char msg[256];
} vp_conf_err_t;

/*! \brief Parse \p len bytes of text. NULL on error (VP_ECONFIG/VP_ENOMEM in *err and a reason in \p e). */
vp_conf_t *vp_conf_parse(const char *text, size_t len, int *err, vp_conf_err_t *e);

/*! \brief Read and parse a file (VP_EIO if it cannot be read). */
vp_conf_t *vp_conf_load(const char *path, int *err, vp_conf_err_t *e);

void vp_conf_free(vp_conf_t *conf);

/*! \brief The raw value of [section] key, or NULL if absent. Valid until vp_conf_free(). */
const char *vp_conf_get(const vp_conf_t *conf, const char *section, const char *key);

/*! \brief String value or \p def when absent. */
const char *vp_conf_str(const vp_conf_t *conf, const char *section, const char *key, const char *def);

/*!
 * \brief Unsigned integer in [min, max] (decimal, or 0x hex); \p def when absent.
 * VP_ECONFIG with a reason in \p e for a malformed or out-of-range value.
 */
int vp_conf_u64(const vp_conf_t *conf, const char *section, const char *key, uint64_t def,
                uint64_t min, uint64_t max, uint64_t *out, vp_conf_err_t *e);

/*! \brief Boolean: true/false, yes/no, on/off, 1/0. */
int vp_conf_bool(const vp_conf_t *conf, const char *section, const char *key, bool def,
                 bool *out, vp_conf_err_t *e);

/*! \brief Duration with a unit (ms, s, m, h, d; a bare number is seconds) into milliseconds, in [min_ms, max_ms]. */
int vp_conf_duration_ms(const vp_conf_t *conf, const char *section, const char *key, uint64_t def_ms,
                        uint64_t min_ms, uint64_t max_ms, uint64_t *out, vp_conf_err_t *e);

/*!
 * \brief Reject any key of \p section not in the NULL-terminated \p known list
 * (and, when \p section is NULL, any section not in \p known). VP_ECONFIG names the first offender.
 */
int vp_conf_check_keys(const vp_conf_t *conf, const char *section, const char *const *known,
                       vp_conf_err_t *e);

#endif
