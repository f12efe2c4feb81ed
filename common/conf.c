#include "common/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "common/id.h"

typedef struct conf_entry {
	char *section;
	char *key;
	char *value;
	int line;
} conf_entry_t;

struct vp_conf {
	conf_entry_t *v;
	size_t n, cap;
};

static int fail(vp_conf_err_t *e, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(vp_conf_err_t *e, int line, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		e->line = line;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return VP_ECONFIG;
}

static char *trim(char *s)
{
	char *end;
	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static int valid_name(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static const conf_entry_t *find(const vp_conf_t *conf, const char *section, const char *key)
{
	for (size_t i = 0; i < conf->n; i++)
		if (strcmp(conf->v[i].section, section) == 0 && strcmp(conf->v[i].key, key) == 0)
			return &conf->v[i];
	return NULL;
}

static int add(vp_conf_t *conf, const char *section, const char *key, const char *value, int line)
{
	conf_entry_t *ent;
	if (conf->n == conf->cap) {
		size_t cap = conf->cap ? conf->cap * 2 : 16;
		conf_entry_t *v = realloc(conf->v, cap * sizeof(*v));
		if (!v)
			return VP_ENOMEM;
		conf->v = v;
		conf->cap = cap;
	}
	ent = &conf->v[conf->n];
	ent->section = strdup(section);
	ent->key = strdup(key);
	ent->value = strdup(value);
	ent->line = line;
	if (!ent->section || !ent->key || !ent->value) {
		free(ent->section);
		free(ent->key);
		free(ent->value);
		return VP_ENOMEM;
	}
	conf->n++;
	return 0;
}

/* Parse one "key = value" body; strips an unquoted trailing comment, unquotes "...". */
static int parse_value(char *raw, int line, vp_conf_err_t *e)
{
	char *s = trim(raw);
	if (*s == '"') {
		char *close = strchr(s + 1, '"');
		char *rest;
		if (!close)
			return fail(e, line, "unterminated quoted value");
		rest = trim(close + 1);
		if (*rest && *rest != '#')
			return fail(e, line, "text after the closing quote");
		*close = '\0';
		memmove(raw, s + 1, strlen(s + 1) + 1);
		return 0;
	}
	{
		char *hash = strchr(s, '#');
		if (hash)
			*hash = '\0';
	}
	memmove(raw, s, strlen(s) + 1);
	(void)trim(raw); /* drops the blanks before a stripped comment */
	return 0;
}

int vp_conf_parse(const char *text, size_t len, vp_conf_t **out, vp_conf_err_t *e)
{
	vp_conf_t *conf = calloc(1, sizeof(*conf));
	char section[VP_CONF_MAX_LINE] = "";
	char buf[VP_CONF_MAX_LINE + 1];
	size_t pos = 0;
	int line = 0, r = 0;

	*out = NULL;
	if (e) {
		e->line = 0;
		e->msg[0] = '\0';
	}
	if (!conf) {
		r = VP_ENOMEM;
		goto out;
	}
	while (pos < len) {
		size_t start = pos, n;
		char *s, *eq;
		while (pos < len && text[pos] != '\n')
			pos++;
		n = pos - start;
		pos++; /* skip '\n' */
		line++;
		if (n > VP_CONF_MAX_LINE) {
			r = fail(e, line, "line longer than %d bytes", VP_CONF_MAX_LINE);
			goto out;
		}
		memcpy(buf, text + start, n);
		buf[n] = '\0';
		if (memchr(buf, '\0', n)) {
			r = fail(e, line, "NUL byte in the file");
			goto out;
		}
		s = trim(buf);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			char *rest;
			if (!close) {
				r = fail(e, line, "section header without ']'");
				goto out;
			}
			*close = '\0';
			rest = trim(close + 1);
			if (*rest && *rest != '#') {
				r = fail(e, line, "text after the section header");
				goto out;
			}
			s = trim(s + 1);
			if (!valid_name(s)) {
				r = fail(e, line, "invalid section name '%s'", s);
				goto out;
			}
			strcpy(section, s);
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			r = fail(e, line, "expected 'key = value' or '[section]'");
			goto out;
		}
		*eq = '\0';
		{
			char *key = trim(s);
			if (!valid_name(key)) {
				r = fail(e, line, "invalid key name '%s'", key);
				goto out;
			}
			if ((r = parse_value(eq + 1, line, e)))
				goto out;
			if (find(conf, section, key)) {
				r = fail(e, line, "[%s] %s: set twice (first on line %d)", section, key,
				         find(conf, section, key)->line);
				goto out;
			}
			if ((r = add(conf, section, key, eq + 1, line)))
				goto out;
		}
	}
out:
	if (r) {
		if (r == VP_ENOMEM)
			fail(e, line, "out of memory");
		vp_conf_free(conf);
		return r;
	}
	*out = conf;
	return 0;
}

int vp_conf_load(const char *path, vp_conf_t **out, vp_conf_err_t *e)
{
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	*out = NULL;
	if (!(f = fopen(path, "rb"))) {
		fail(e, 0, "cannot open %s: %s", path, strerror(errno));
		return VP_EIO;
	}
	for (;;) {
		size_t got;
		if (len == cap) {
			char *t;
			cap = cap ? cap * 2 : 4096;
			t = realloc(text, cap);
			if (!t) {
				fail(e, 0, "out of memory reading %s", path);
				rc = VP_ENOMEM;
				goto out;
			}
			text = t;
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fail(e, 0, "cannot read %s", path);
		rc = VP_EIO;
		goto out;
	}
	rc = vp_conf_parse(text, len, out, e);
out:
	free(text);
	fclose(f);
	return rc;
}

void vp_conf_free(vp_conf_t *conf)
{
	if (!conf)
		return;
	for (size_t i = 0; i < conf->n; i++) {
		free(conf->v[i].section);
		free(conf->v[i].key);
		free(conf->v[i].value);
	}
	free(conf->v);
	free(conf);
}

const char *vp_conf_get(const vp_conf_t *conf, const char *section, const char *key)
{
	const conf_entry_t *ent = conf ? find(conf, section ? section : "", key) : NULL;
	return ent ? ent->value : NULL;
}

const char *vp_conf_str(const vp_conf_t *conf, const char *section, const char *key, const char *def)
{
	const char *v = vp_conf_get(conf, section, key);
	return v ? v : def;
}

static int entry_line(const vp_conf_t *conf, const char *section, const char *key)
{
	const conf_entry_t *ent = conf ? find(conf, section ? section : "", key) : NULL;
	return ent ? ent->line : 0;
}

static int parse_u64(const char *s, uint64_t *out, const char **end)
{
	char *e;
	unsigned long long v;
	if (*s == '-' || *s == '+' || *s == ' ' || !*s)
		return -1;
	errno = 0;
	v = strtoull(s, &e, 0);
	if (errno || e == s)
		return -1;
	*out = v;
	*end = e;
	return 0;
}

int vp_conf_u64(const vp_conf_t *conf, const char *section, const char *key, uint64_t def,
                uint64_t min, uint64_t max, uint64_t *out, vp_conf_err_t *e)
{
	const char *v = vp_conf_get(conf, section, key), *end;
	uint64_t x;
	*out = def;
	if (!v)
		return 0;
	if (parse_u64(v, &x, &end) || *end)
		return fail(e, entry_line(conf, section, key), "[%s] %s: '%s' is not a number",
		            section ? section : "", key, v);
	if (x < min || x > max)
		return fail(e, entry_line(conf, section, key), "[%s] %s: %llu is outside %llu..%llu",
		            section ? section : "", key, (unsigned long long)x,
		            (unsigned long long)min, (unsigned long long)max);
	*out = x;
	return 0;
}

/* 1 true, 0 false, -1 not a boolean. */
static int parse_bool(const char *v)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0)
			return 1;
		if (strcmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

int vp_conf_bool(const vp_conf_t *conf, const char *section, const char *key, bool def,
                 bool *out, vp_conf_err_t *e)
{
	const char *v = vp_conf_get(conf, section, key);
	int b;
	*out = def;
	if (!v)
		return 0;
	if ((b = parse_bool(v)) >= 0) {
		*out = b;
		return 0;
	}
	return fail(e, entry_line(conf, section, key), "[%s] %s: '%s' is not a boolean (true/false)",
	            section ? section : "", key, v);
}

int vp_duration_parse_ms(const char *v, uint64_t *out_ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	const char *end;
	uint64_t x;
	if (parse_u64(v, &x, &end))
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (x > UINT64_MAX / units[i].ms)
				return -1;
			*out_ms = x * units[i].ms;
			return 0;
		}
	}
	return -1;
}

int vp_conf_duration_ms(const vp_conf_t *conf, const char *section, const char *key, uint64_t def_ms,
                        uint64_t min_ms, uint64_t max_ms, uint64_t *out, vp_conf_err_t *e)
{
	const char *v = vp_conf_get(conf, section, key);
	uint64_t x;
	*out = def_ms;
	if (!v)
		return 0;
	if (vp_duration_parse_ms(v, &x))
		return fail(e, entry_line(conf, section, key),
		            "[%s] %s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 48h, 2d)",
		            section ? section : "", key, v);
	if (x < min_ms || x > max_ms)
		return fail(e, entry_line(conf, section, key), "[%s] %s: %s is outside %llums..%llums",
		            section ? section : "", key, v, (unsigned long long)min_ms, (unsigned long long)max_ms);
	*out = x;
	return 0;
}

static int known(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return 1;
	return 0;
}

int vp_conf_check_keys(const vp_conf_t *conf, const char *section, const char *const *known_list,
                       vp_conf_err_t *e)
{
	if (!conf)
		return 0;
	for (size_t i = 0; i < conf->n; i++) {
		const conf_entry_t *ent = &conf->v[i];
		if (!section) {
			if (!known(ent->section, known_list))
				return fail(e, ent->line, "[%s]: unknown section", ent->section);
		} else if (strcmp(ent->section, section) == 0 && !known(ent->key, known_list)) {
			return fail(e, ent->line, "[%s] %s: unknown key", section, ent->key);
		}
	}
	return 0;
}

/* ---- the schema ------------------------------------------------------------------------------------------ */

static size_t type_size(vp_conf_type_t t)
{
	switch (t) {
	case VP_CONF_U32:
	case VP_CONF_DUR_S:
		return sizeof(uint32_t);
	case VP_CONF_U64:
	case VP_CONF_DUR_MS:
		return sizeof(uint64_t);
	case VP_CONF_BOOL:
		return sizeof(bool);
	case VP_CONF_ENUM:
		return sizeof(unsigned);
	case VP_CONF_ID:
		return sizeof(vp_id_t);
	case VP_CONF_STR:
		return 0; /* any array size >= 1 */
	}
	return (size_t)-1;
}

static const char *type_name(vp_conf_type_t t)
{
	switch (t) {
	case VP_CONF_STR: return "string";
	case VP_CONF_U32:
	case VP_CONF_U64: return "integer";
	case VP_CONF_BOOL: return "boolean";
	case VP_CONF_DUR_MS:
	case VP_CONF_DUR_S: return "duration";
	case VP_CONF_ENUM: return "one of";
	case VP_CONF_ID: return "Node-ID (32 hex digits)";
	}
	return "?";
}

/* Parse \p v for row \p o and store it at out + o->off. \p line names the file line (0: default or flag). */
static int opt_store(const vp_conf_opt_t *o, const char *v, void *out, int line, vp_conf_err_t *e)
{
	unsigned char *dst = (unsigned char *)out + o->off;
	const char *end;
	uint64_t x = 0;
	int b;

	if (o->type != VP_CONF_STR && o->size != type_size(o->type))
	{
		fail(e, line, "[%s] %s: schema row stores %zu bytes for a %s", o->section, o->key, o->size,
		     type_name(o->type));
		return VP_EINVAL;
	}
	if (!v)
		v = "";
	switch (o->type) {
	case VP_CONF_STR:
		if (o->size == 0 || strlen(v) >= o->size)
			return fail(e, line, "[%s] %s: value is longer than %zu characters", o->section, o->key,
			            o->size ? o->size - 1 : 0);
		memcpy(dst, v, strlen(v) + 1);
		return 0;
	case VP_CONF_BOOL:
		if (!*v) {
			*(bool *)(void *)dst = false;
			return 0;
		}
		if ((b = parse_bool(v)) < 0)
			return fail(e, line, "[%s] %s: '%s' is not a boolean (true/false)", o->section, o->key, v);
		*(bool *)(void *)dst = b;
		return 0;
	case VP_CONF_ENUM:
		for (unsigned i = 0; o->choices && o->choices[i]; i++)
			if (strcmp(v, o->choices[i]) == 0) {
				memcpy(dst, &i, sizeof(i));
				return 0;
			}
		return fail(e, line, "[%s] %s: '%s' is not one of the accepted words (see --help-config)",
		            o->section, o->key, v);
	case VP_CONF_ID: {
		vp_id_t id;
		if (!*v) {
			memset(dst, 0, sizeof(id));
			return 0;
		}
		if (vp_id_from_hex(v, &id))
			return fail(e, line, "[%s] %s: '%s' is not 32 hex digits", o->section, o->key, v);
		memcpy(dst, &id, sizeof(id));
		return 0;
	}
	case VP_CONF_U32:
	case VP_CONF_U64:
		if (*v && (parse_u64(v, &x, &end) || *end))
			return fail(e, line, "[%s] %s: '%s' is not a number", o->section, o->key, v);
		break;
	case VP_CONF_DUR_MS:
	case VP_CONF_DUR_S:
		if (*v && vp_duration_parse_ms(v, &x))
			return fail(e, line, "[%s] %s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 48h, 2d)",
			            o->section, o->key, v);
		if (o->type == VP_CONF_DUR_S && x % 1000)
			return fail(e, line, "[%s] %s: '%s' must be whole seconds", o->section, o->key, v);
		break;
	}
	if ((o->min || o->max) && (x < o->min || x > o->max)) {
		if (o->type == VP_CONF_DUR_MS || o->type == VP_CONF_DUR_S)
			return fail(e, line, "[%s] %s: %s is outside %llums..%llums", o->section, o->key, v,
			            (unsigned long long)o->min, (unsigned long long)o->max);
		return fail(e, line, "[%s] %s: %llu is outside %llu..%llu", o->section, o->key,
		            (unsigned long long)x, (unsigned long long)o->min, (unsigned long long)o->max);
	}
	switch (o->type) {
	case VP_CONF_U32:
		if (x > UINT32_MAX)
			return fail(e, line, "[%s] %s: %llu does not fit 32 bits", o->section, o->key,
			            (unsigned long long)x);
		*(uint32_t *)(void *)dst = (uint32_t)x;
		break;
	case VP_CONF_DUR_S:
		if (x / 1000 > UINT32_MAX)
			return fail(e, line, "[%s] %s: %s is too long", o->section, o->key, v);
		*(uint32_t *)(void *)dst = (uint32_t)(x / 1000);
		break;
	default:
		*(uint64_t *)(void *)dst = x;
		break;
	}
	return 0;
}

int vp_conf_schema_defaults(const vp_conf_opt_t *opts, size_t n, void *out, vp_conf_err_t *e)
{
	for (size_t i = 0; i < n; i++) {
		int rc = opt_store(&opts[i], opts[i].def, out, 0, e);
		if (rc) {
			if (e) {
				static const char pre[] = "schema default: ";
				size_t keep = sizeof(e->msg) - sizeof(pre);
				memmove(e->msg + sizeof(pre) - 1, e->msg, keep);
				e->msg[sizeof(e->msg) - 1] = '\0';
				memcpy(e->msg, pre, sizeof(pre) - 1);
			}
			return VP_EINVAL;
		}
	}
	return 0;
}

const vp_conf_opt_t *vp_conf_schema_find(const vp_conf_opt_t *opts, size_t n, const char *section,
                                         const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(opts[i].section, section) == 0 && strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

static int section_known(const vp_conf_opt_t *opts, size_t n, const char *section)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(opts[i].section, section) == 0)
			return 1;
	return 0;
}

int vp_conf_schema_apply(const vp_conf_opt_t *opts, size_t n, const vp_conf_t *conf, void *out,
                         vp_conf_err_t *e)
{
	if (!conf)
		return 0;
	for (size_t i = 0; i < conf->n; i++) {
		const conf_entry_t *ent = &conf->v[i];
		const vp_conf_opt_t *o = vp_conf_schema_find(opts, n, ent->section, ent->key);
		int rc;
		if (!o) {
			if (!section_known(opts, n, ent->section))
				return fail(e, ent->line, "[%s]: unknown section", ent->section);
			return fail(e, ent->line, "[%s] %s: unknown key", ent->section, ent->key);
		}
		if ((rc = opt_store(o, ent->value, out, ent->line, e)))
			return rc;
	}
	return 0;
}

int vp_conf_schema_parse(const vp_conf_opt_t *opts, size_t n, const char *text, size_t len, void *out,
                         vp_conf_err_t *e)
{
	int rc = vp_conf_schema_defaults(opts, n, out, e);
	vp_conf_t *vc;
	if (rc)
		return rc;
	if ((rc = vp_conf_parse(text, len, &vc, e)))
		return rc;
	rc = vp_conf_schema_apply(opts, n, vc, out, e);
	vp_conf_free(vc);
	return rc;
}

int vp_conf_schema_load(const vp_conf_opt_t *opts, size_t n, const char *path, void *out, vp_conf_err_t *e)
{
	int rc = vp_conf_schema_defaults(opts, n, out, e);
	vp_conf_t *vc;
	if (rc)
		return rc;
	if ((rc = vp_conf_load(path, &vc, e)))
		return rc;
	rc = vp_conf_schema_apply(opts, n, vc, out, e);
	vp_conf_free(vc);
	return rc;
}

int vp_conf_schema_set(const vp_conf_opt_t *opts, size_t n, void *out, const char *section, const char *key,
                       const char *value, bool allow_overlay, vp_conf_err_t *e)
{
	const vp_conf_opt_t *o = vp_conf_schema_find(opts, n, section, key);
	if (!o) {
		fail(e, 0, "[%s] %s: unknown option", section, key);
		return VP_ENOTFOUND;
	}
	if ((o->flags & VP_CONF_F_OVERLAY) && !allow_overlay) {
		fail(e, 0, "[%s] %s: overlay-wide, set by the overlay's configuration document only", section, key);
		return VP_EPERM;
	}
	return opt_store(o, value, out, 0, e);
}

/* "1..64", "100ms..10m", or "" when unbounded. */
static void range_text(const vp_conf_opt_t *o, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (!o->min && !o->max)
		return;
	if (o->type == VP_CONF_DUR_MS || o->type == VP_CONF_DUR_S) {
		uint64_t v[2] = { o->min, o->max };
		char part[2][32];
		for (int i = 0; i < 2; i++) {
			if (v[i] % 86400000 == 0 && v[i])
				snprintf(part[i], sizeof(part[i]), "%llud", (unsigned long long)(v[i] / 86400000));
			else if (v[i] % 3600000 == 0 && v[i])
				snprintf(part[i], sizeof(part[i]), "%lluh", (unsigned long long)(v[i] / 3600000));
			else if (v[i] % 60000 == 0 && v[i])
				snprintf(part[i], sizeof(part[i]), "%llum", (unsigned long long)(v[i] / 60000));
			else if (v[i] % 1000 == 0)
				snprintf(part[i], sizeof(part[i]), "%llus", (unsigned long long)(v[i] / 1000));
			else
				snprintf(part[i], sizeof(part[i]), "%llums", (unsigned long long)v[i]);
		}
		snprintf(buf, cap, "%s..%s", part[0], part[1]);
	} else {
		snprintf(buf, cap, "%llu..%llu", (unsigned long long)o->min, (unsigned long long)o->max);
	}
}

/* \p sep: "|" in help text, ", " in Markdown (where "|" would end the table cell). */
static void choices_text(const vp_conf_opt_t *o, const char *sep, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	for (unsigned i = 0; o->choices && o->choices[i] && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? sep : "", o->choices[i]);
}

void vp_conf_schema_help(FILE *f, const vp_conf_opt_t *opts, size_t n)
{
	const char *section = NULL;
	for (size_t i = 0; i < n; i++) {
		const vp_conf_opt_t *o = &opts[i];
		char range[80], what[160];
		if (!section || strcmp(section, o->section) != 0) {
			fprintf(f, "%s[%s]\n", section ? "\n" : "", o->section);
			section = o->section;
		}
		range_text(o, range, sizeof(range));
		if (o->type == VP_CONF_ENUM)
			choices_text(o, "|", range, sizeof(range));
		snprintf(what, sizeof(what), "%s%s%s%s%s%s%s", type_name(o->type), *range ? " " : "", range,
		         o->unit ? ", " : "", o->unit ? o->unit : "",
		         (o->flags & VP_CONF_F_OVERLAY) ? ", overlay-wide" : "",
		         (o->flags & VP_CONF_F_RELOAD) ? ", reloadable" : "");
		/* Without a value to show, the line is commented out: "key = " would set the option to nothing,
		 * which is not the same as leaving it unset, so the output can be copied into a file as it is. */
		if ((o->flags & VP_CONF_F_SECRET) || !o->def || !*o->def)
			fprintf(f, "# %s (%s)\n# %s =\n", o->doc, what, o->key);
		else
			fprintf(f, "# %s (%s)\n%s = %s\n", o->doc, what, o->key, o->def);
	}
}

void vp_conf_schema_markdown(FILE *f, const vp_conf_opt_t *opts, size_t n)
{
	fprintf(f, "| option | type | default | range | meaning |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		const vp_conf_opt_t *o = &opts[i];
		char range[80];
		range_text(o, range, sizeof(range));
		if (o->type == VP_CONF_ENUM)
			choices_text(o, ", ", range, sizeof(range));
		fprintf(f, "| `[%s] %s` | %s%s%s | %s%s%s | %s | %s%s%s |\n", o->section, o->key, type_name(o->type),
		        o->unit ? ", " : "", o->unit ? o->unit : "", o->def && *o->def ? "`" : "",
		        (o->flags & VP_CONF_F_SECRET) || !o->def || !*o->def ? "" : o->def,
		        o->def && *o->def ? "`" : "", range, o->doc,
		        (o->flags & VP_CONF_F_OVERLAY) ? " (overlay-wide)" : "",
		        (o->flags & VP_CONF_F_RELOAD) ? " (reloadable)" : "");
	}
}
