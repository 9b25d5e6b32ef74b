/*
 * log.h - moat's logger: one key=value line per event, to stderr or syslog.
 *
 * Lines look like `level=info event=... key=value ...`; callers write the
 * key=value part and the logger adds the level (and, on stderr, a time
 * stamp). Values that come from the network must go through log_quote(),
 * which escapes anything that could forge a line or a key.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_target {
	LOG_TARGET_STDERR,
	LOG_TARGET_SYSLOG,
};

void log_init(const char *ident, enum log_target target, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_LEVEL_DEBUG)                                            \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/* Broken process invariant: log and exit(1). */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* As fatalx(), with ": strerror(errno)" appended. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Quote an untrusted string for a log value into buf (always terminated).
 * Printable ASCII other than '"' and '\\' is copied; everything else
 * becomes \xHH. The result is wrapped in double quotes when it contains a
 * space or is empty. Returns buf (the result always starts there).
 */
const char *log_quote(char *buf, size_t bufsize, const char *s, size_t len);

#endif
