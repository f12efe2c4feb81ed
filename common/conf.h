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
#include <stdio.h>

#define VP_CONF_MAX_LINE 4096 /* longer lines are an error, not a silent cut */

typedef struct vp_conf vp_conf_t;

/*! \brief Where and why parsing or a lookup failed (a line of 0 means "not from the file"). */
typedef struct vp_conf_err {
	int line;
	char msg[256];
} vp_conf_err_t;

/*!
 * \brief Parse \p len bytes of text into *\p out (the caller frees it with vp_conf_free()).
 * 0, or VP_ECONFIG / VP_ENOMEM with a reason in \p e; *\p out is NULL on error.
 */
int vp_conf_parse(const char *text, size_t len, vp_conf_t **out, vp_conf_err_t *e);

/*! \brief Read and parse a file into *\p out, as vp_conf_parse(); VP_EIO if it cannot be read. */
int vp_conf_load(const char *path, vp_conf_t **out, vp_conf_err_t *e);

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

/*! \brief Parse a duration with a unit (ms, s, m, h, d; a bare number is seconds) into milliseconds: 0, or -1
 * when malformed or overflowing.  The format of every duration option and command-line flag. */
int vp_duration_parse_ms(const char *v, uint64_t *out_ms);

/*! \brief Duration with a unit (ms, s, m, h, d; a bare number is seconds) into milliseconds, in [min_ms, max_ms]. */
int vp_conf_duration_ms(const vp_conf_t *conf, const char *section, const char *key, uint64_t def_ms,
                        uint64_t min_ms, uint64_t max_ms, uint64_t *out, vp_conf_err_t *e);

/*!
 * \brief Reject any key of \p section not in the NULL-terminated \p known list
 * (and, when \p section is NULL, any section not in \p known). VP_ECONFIG names the first offender.
 */
int vp_conf_check_keys(const vp_conf_t *conf, const char *section, const char *const *known,
                       vp_conf_err_t *e);

/*
 * The configuration schema: one row per option (section, key, type, range, default, unit, a one-line doc and
 * where the value is stored in the program's configuration struct), as Knot DNS's conf/schema.c does.  Parsing,
 * range checks, defaults, `--help-config` and the README's options tables all come from the same rows, so they
 * cannot drift apart.  A program declares `static const vp_conf_opt_t opts[] = { ... };` with VP_CONF_AT() and
 * calls vp_conf_schema_load() (defaults, then the file), vp_conf_schema_set() for command-line overrides.
 */

/*! \brief Value types; each names the C type the row's field must have. */
typedef enum vp_conf_type {
	VP_CONF_STR,    /* char[size]: a value that does not fit is an error, never cut */
	VP_CONF_U32,    /* uint32_t in [min, max] */
	VP_CONF_U64,    /* uint64_t in [min, max] */
	VP_CONF_BOOL,   /* bool: true/false, yes/no, on/off, 1/0 */
	VP_CONF_DUR_MS, /* uint64_t milliseconds; written with a unit (500ms, 30s, 5m, 48h, 2d); min/max in ms */
	VP_CONF_DUR_S,  /* uint32_t seconds; written with a unit, must be whole seconds; min/max in ms */
	VP_CONF_ENUM,   /* unsigned: index into the row's NULL-terminated choices */
	VP_CONF_ID,     /* vp_id_t (common/id.h): 32 hex digits */
} vp_conf_type_t;

/*! \brief Option flags. */
enum {
	VP_CONF_F_OVERLAY = 1u << 0, /* overlay-wide: from the overlay's configuration document, never a node's flag */
	VP_CONF_F_RELOAD = 1u << 1,  /* may change at run time (SIGHUP); others need a restart */
	VP_CONF_F_SECRET = 1u << 2,  /* never printed (help shows the default only when it is not secret) */
};

/*! \brief One option. Build rows with designated initialisers and VP_CONF_AT(struct, field). */
typedef struct vp_conf_opt {
	const char *section;
	const char *key;
	vp_conf_type_t type;
	uint64_t min, max;           /* integers and durations (ms); 0, 0 means no range check */
	const char *def;             /* the default as written in a file; NULL = empty / 0 / false */
	const char *unit;            /* for the documentation only ("bytes", "entries", ...); may be NULL */
	const char *doc;             /* one line: what it does, why one would change it */
	size_t off, size;            /* where it is stored in the configuration struct */
	const char *const *choices;  /* VP_CONF_ENUM: the accepted words, NULL-terminated */
	unsigned flags;              /* VP_CONF_F_* */
} vp_conf_opt_t;

#define VP_CONF_AT(type, field) .off = offsetof(type, field), .size = sizeof(((type *)0)->field)
#define VP_CONF_NOPTS(arr) (sizeof(arr) / sizeof((arr)[0]))

/*!
 * \brief Store every row's default into \p out. VP_EINVAL (with the row named in \p e) when a row is
 * inconsistent (a field size that does not match its type, a default outside its range): a table bug, which the
 * schema unit tests catch for every program's table.
 */
int vp_conf_schema_defaults(const vp_conf_opt_t *opts, size_t n, void *out, vp_conf_err_t *e);

/*!
 * \brief Apply the keys present in \p conf over what \p out holds. Sections and keys not in the table are
 * VP_ECONFIG ("line 12: [pvp] vcr_retension: unknown key"); so is a bad value, naming its line and the range.
 */
int vp_conf_schema_apply(const vp_conf_opt_t *opts, size_t n, const vp_conf_t *conf, void *out,
                         vp_conf_err_t *e);

/*! \brief Defaults, then the file at \p path (VP_EIO if it cannot be read), into \p out. */
int vp_conf_schema_load(const vp_conf_opt_t *opts, size_t n, const char *path, void *out, vp_conf_err_t *e);

/*! \brief Defaults, then \p len bytes of configuration text, into \p out. */
int vp_conf_schema_parse(const vp_conf_opt_t *opts, size_t n, const char *text, size_t len, void *out,
                         vp_conf_err_t *e);

/*!
 * \brief Set one option from text (a command-line override "section.key=value"). VP_ENOTFOUND for an unknown
 * option; VP_EPERM for an overlay-wide option unless \p allow_overlay; VP_ECONFIG for a bad value.
 */
int vp_conf_schema_set(const vp_conf_opt_t *opts, size_t n, void *out, const char *section, const char *key,
                       const char *value, bool allow_overlay, vp_conf_err_t *e);

/*! \brief The row for [section] key, or NULL. */
const vp_conf_opt_t *vp_conf_schema_find(const vp_conf_opt_t *opts, size_t n, const char *section,
                                         const char *key);

/*!
 * \brief `--help-config`: every option as it would be written in a file, with its doc, type, range, flags.
 * An option with no default, or a secret, is printed commented out ("# key =") so the output parses as it is.
 */
void vp_conf_schema_help(FILE *f, const vp_conf_opt_t *opts, size_t n);

/*! \brief The README's options table (Markdown), one row per option, grouped by section. */
void vp_conf_schema_markdown(FILE *f, const vp_conf_opt_t *opts, size_t n);

#endif
