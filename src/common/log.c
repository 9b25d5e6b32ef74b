/*
 * log.c - key=value logging to stderr or syslog (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum log_target log_target = LOG_TARGET_STDERR;
static enum log_level log_level = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARN] = "warn",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

void
log_init(const char *ident, enum log_target target, enum log_level level)
{
	log_target = target;
	log_level = level;
	if (target == LOG_TARGET_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int off = 0;

	if (level > log_level)
		return;
	if (log_target == LOG_TARGET_STDERR) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		off = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		off += snprintf(line + off, sizeof(line) - (size_t)off, ".%03ldZ ",
		                ts.tv_nsec / 1000000);
	}
	off += snprintf(line + off, sizeof(line) - (size_t)off, "level=%s ",
	                log_level_names[level]);
	if (off < (int)sizeof(line))
		vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);

	if (log_target == LOG_TARGET_SYSLOG) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		syslog(prio[level], "%s", line);
	} else {
		/* One write per line so that threads never interleave within a line. */
		size_t n = strlen(line);
		if (n < sizeof(line) - 1) {
			line[n++] = '\n';
		} else {
			line[sizeof(line) - 2] = '\n';
			n = sizeof(line) - 1;
		}
		fwrite(line, 1, n, stderr);
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatal(const char *fmt, ...)
{
	char buf[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(LOG_LEVEL_ERROR, "%s: %s", buf, strerror(saved));
	exit(1);
}

const char *
log_quote(char *buf, size_t bufsize, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	bool need_quotes = len == 0;
	size_t o = 1;

	if (bufsize < 8) {
		if (bufsize)
			buf[0] = '\0';
		return buf;
	}
	for (size_t i = 0; i < len && !need_quotes; i++)
		need_quotes = s[i] == ' ';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 6 >= bufsize) {
			buf[o++] = '~'; /* truncated */
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=') {
			buf[o++] = (char)c;
		} else if (c == '=' && need_quotes) {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	if (need_quotes) {
		buf[0] = '"';
		buf[o++] = '"';
		buf[o] = '\0';
		return buf;
	}
	buf[o] = '\0';
	memmove(buf, buf + 1, o); /* no quotes: start at buf, like the quoted form */
	return buf;
}
