/*
 * util.h - small primitives every part of moat uses: allocation that does
 * not return on failure, bounded string copies and bounded number parsing.
 * atoi/strtol-style parsing, strcpy, sprintf and strtok are not used in
 * moat; these are the replacements.
 */
#ifndef MOAT_UTIL_H
#define MOAT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy src into dst of size dstsize, always terminated; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t dstsize);

/*
 * snprintf that reports truncation: true when the whole result fit,
 * false (errno ENAMETOOLONG) otherwise. For building paths.
 */
bool path_fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ASCII-only case-insensitive comparisons (locale-free). */
bool str_ieq(const char *a, const char *b);
bool mem_ieq(const char *a, const char *b, size_t n);
void str_lower(char *s);

/*
 * Parse an unsigned decimal number of exactly len bytes (no sign, no
 * spaces, no leading '+'). Fails (-1) on an empty string, a non-digit or
 * a value above max.
 */
int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

/* "4096", "10k", "50M", "2G" (powers of 1024). */
int parse_size(const char *s, uint64_t max, uint64_t *out);

/* "30" (seconds), "500ms", "30s", "5m", "2h", "5d"; result in milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);

/* Monotonic clock in milliseconds. */
uint64_t clock_ms(void);
/* Wall clock: milliseconds since the epoch (UTC), as the store keeps times. */
int64_t wall_ms(void);
/*
 * Length of the valid UTF-8 character at s (n > 0 octets there), its code
 * point in *cp; 0 if there is none (RFC 3629: no overlong forms,
 * surrogates or values over U+10FFFF).
 */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/*
 * A growable buffer with a ceiling (curl's dynbuf): p is NUL-terminated
 * (NULL until the first append), at most max octets. The appends return
 * -1, appending nothing, when the ceiling would be passed.
 */
struct dynbuf {
	char *p;
	size_t len, cap, max;
};
void dynbuf_init(struct dynbuf *b, size_t max);
int dynbuf_add(struct dynbuf *b, const void *s, size_t n);
int dynbuf_printf(struct dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* write() all of buf, retrying on EINTR and short writes; -1 and errno on error. */
int write_all(int fd, const void *buf, size_t len);

/* fsync() a directory by path; -1 and errno on error. */
int fsync_dir(const char *path);

#endif
