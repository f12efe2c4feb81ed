#include "common/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"

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

vp_conf_t *vp_conf_parse(const char *text, size_t len, int *err, vp_conf_err_t *e)
{
	vp_conf_t *conf = calloc(1, sizeof(*conf));
	char section[VP_CONF_MAX_LINE] = "";
	char buf[VP_CONF_MAX_LINE + 1];
	size_t pos = 0;
	int line = 0, r = 0;

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
	if (err)
		*err = r;
	if (r) {
		if (r == VP_ENOMEM)
			fail(e, line, "out of memory");
		vp_conf_free(conf);
		return NULL;
	}
	return conf;
}

vp_conf_t *vp_conf_load(const char *path, int *err, vp_conf_err_t *e)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;
	vp_conf_t *conf = NULL;

	if (!f) {
		fail(e, 0, "cannot open %s: %s", path, strerror(errno));
		if (err)
			*err = VP_EIO;
		return NULL;
	}
	for (;;) {
		size_t got;
		if (len == cap) {
			char *t;
			cap = cap ? cap * 2 : 4096;
			t = realloc(text, cap);
			if (!t) {
				fail(e, 0, "out of memory reading %s", path);
				if (err)
					*err = VP_ENOMEM;
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
		if (err)
			*err = VP_EIO;
		goto out;
	}
	conf = vp_conf_parse(text, len, err, e);
out:
	free(text);
	fclose(f);
	return conf;
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

int vp_conf_bool(const vp_conf_t *conf, const char *section, const char *key, bool def,
                 bool *out, vp_conf_err_t *e)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	const char *v = vp_conf_get(conf, section, key);
	*out = def;
	if (!v)
		return 0;
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return fail(e, entry_line(conf, section, key), "[%s] %s: '%s' is not a boolean (true/false)",
	            section ? section : "", key, v);
}

int vp_conf_duration_ms(const vp_conf_t *conf, const char *section, const char *key, uint64_t def_ms,
                        uint64_t min_ms, uint64_t max_ms, uint64_t *out, vp_conf_err_t *e)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	const char *v = vp_conf_get(conf, section, key), *end;
	uint64_t x;
	*out = def_ms;
	if (!v)
		return 0;
	if (parse_u64(v, &x, &end))
		goto bad;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (x > UINT64_MAX / units[i].ms)
				goto bad;
			x *= units[i].ms;
			if (x < min_ms || x > max_ms)
				return fail(e, entry_line(conf, section, key),
				            "[%s] %s: %s is outside %llums..%llums", section ? section : "",
				            key, v, (unsigned long long)min_ms, (unsigned long long)max_ms);
			*out = x;
			return 0;
		}
	}
bad:
	return fail(e, entry_line(conf, section, key),
	            "[%s] %s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 48h, 2d)",
	            section ? section : "", key, v);
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
