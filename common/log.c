#include "common/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "common/errcode.h"

static struct {
	vp_log_level_t level;
	FILE *sink;
} g_log = { VP_LOG_INFO, NULL };

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void vp_log_setup(vp_log_level_t level, FILE *sink)
{
	g_log.level = level;
	if (sink)
		g_log.sink = sink;
}

int vp_log_level_parse(const char *s, vp_log_level_t *level)
{
	for (int i = 0; i <= VP_LOG_DEBUG; i++) {
		if (s && strcmp(s, level_names[i]) == 0) {
			*level = (vp_log_level_t)i;
			return 0;
		}
	}
	return VP_EINVAL;
}

bool vp_log_enabled(vp_log_level_t level)
{
	return level <= g_log.level;
}

void vp_log(vp_log_level_t level, const char *mod, const char *event, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;
	FILE *out = g_log.sink ? g_log.sink : stderr;

	if (!vp_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s mod=%s event=%s",
	             ts.tv_nsec / 1000000, level_names[level], mod, event);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (fmt && *fmt && n < sizeof(line) - 2) {
		va_list ap;
		line[n++] = ' ';
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	line[n++] = '\n';
	/* One fwrite per line so concurrent threads never interleave inside a line. */
	fwrite(line, 1, n, out);
	fflush(out);
}
