/* Logging: one line per event to stderr, with level and a component tag.
 * The level is process-wide and may be changed at run time (admin /logging). */
#ifndef WEFT_COMMON_LOG_H
#define WEFT_COMMON_LOG_H

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_CRITICAL, LOG_OFF };

extern int log_current_level;

/* Parses Envoy's level names (trace, debug, info, warning|warn, error, critical, off).
 * Returns the level or -1. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(lvl, ...) do { if ((lvl) >= log_current_level) log_write((lvl), __VA_ARGS__); } while (0)
#define log_trace(...) LOG_AT(LOG_TRACE, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)

#endif
