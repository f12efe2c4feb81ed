/*
 * common/log.h - one line per event, key=value pairs.
 *
 *   2026-11-21T15:42:00.123Z level=warn mod=storage event=quota_refused signer=ab12.. used=31 limit=30
 *
 * The threshold and sink are process-wide (set once from main()); they are the
 * only global mutable state in the project, because every module logs and
 * threading a logger through every call would buy nothing.  Hot paths log at
 * debug only, behind vp_log_enabled().
 */
#ifndef VP_COMMON_LOG_H
#define VP_COMMON_LOG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum vp_log_level {
	VP_LOG_ERROR = 0,
	VP_LOG_WARN = 1,
	VP_LOG_INFO = 2,
	VP_LOG_DEBUG = 3,
} vp_log_level_t;

/*! \brief Set the threshold (default info) and the sink (default stderr; NULL keeps it). */
void vp_log_setup(vp_log_level_t level, FILE *sink);

/*! \brief Parse "error", "warn", "info", "debug". VP_EINVAL otherwise. */
int vp_log_level_parse(const char *s, vp_log_level_t *level);

/*! \brief Would a message at \p level be written? */
bool vp_log_enabled(vp_log_level_t level);

/*!
 * \brief Write one event line.  \p fmt holds the event's own key=value pairs
 * (may be NULL); values with spaces must be quoted by the caller.
 */
void vp_log(vp_log_level_t level, const char *mod, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define vp_log_error(mod, ev, ...) vp_log(VP_LOG_ERROR, mod, ev, __VA_ARGS__)
#define vp_log_warn(mod, ev, ...)  vp_log(VP_LOG_WARN, mod, ev, __VA_ARGS__)
#define vp_log_info(mod, ev, ...)  vp_log(VP_LOG_INFO, mod, ev, __VA_ARGS__)
#define vp_log_debug(mod, ev, ...) \
	do { if (vp_log_enabled(VP_LOG_DEBUG)) vp_log(VP_LOG_DEBUG, mod, ev, __VA_ARGS__); } while (0)

#endif
