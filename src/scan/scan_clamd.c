/*
 * scan_clamd.c - the malware check: the raw message streamed to clamd.
 *
 * Protocol: clamd(8), command INSTREAM in its NUL-terminated form.
 * moat sends "zINSTREAM\0", then the message as chunks of
 * <length, 4 octets big-endian><data> (CLAMD_CHUNK octets at most, below
 * any StreamMaxLength), then a zero-length chunk; clamd answers one
 * NUL-terminated line: "stream: OK", "stream: NAME FOUND" or
 * "... ERROR" ("INSTREAM size limit exceeded. ERROR" when the message is
 * longer than StreamMaxLength; clamd may send that before the stream
 * ends and close). The whole raw message is sent once: clamd decodes MIME
 * itself (ScanMail), archives included (ScanArchive).
 *
 * cfg->clamd is "unix:/path" or "tcp:HOST:PORT" ("tcp:[::1]:3310").
 * Every wait (connect, each write, the reply) is bounded by one deadline,
 * the nearer of clamd_timeout and the scan's. A failure of any kind
 * (refused, timed out, an ERROR or unreadable reply) is a tempfail when
 * clamd_required is set, a log line otherwise: moat never reads a broken
 * answer as "clean".
 *
 * Trade-off: a HOST that is a name is resolved with getaddrinfo(), which
 * the deadline does not bound; write an address to avoid the system
 * resolver.
 */
#include "scan_internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"

#define CLAMD_CHUNK     (64 * 1024) /* octets per INSTREAM chunk */
#define CLAMD_REPLY_MAX 1024        /* octets of reply read before it is called garbage */
#define CLAMD_NAME_MAX  128         /* octets of a signature name kept */
#define CLAMD_HOST_MAX  256

enum clamd_result {
	CLAMD_CLEAN,
	CLAMD_FOUND,   /* name holds the signature */
	CLAMD_TOO_BIG, /* INSTREAM size limit exceeded */
	CLAMD_FAILED,  /* why holds the reason */
};

struct clamd_conn {
	const char *spec; /* cfg->clamd, for messages */
	int64_t deadline; /* clock_ms() */
	int fd;
	char why[128];
	char name[CLAMD_NAME_MAX + 1];
};

static int clamd_fail(struct clamd_conn *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Record why the scan failed (the first reason wins); returns -1. */
static int
clamd_fail(struct clamd_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->why[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(c->why, sizeof(c->why), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Wait for events on c->fd until the deadline: revents, 0 on timeout, -1 on error. */
static int
clamd_wait(struct clamd_conn *c, short events)
{
	struct pollfd pfd = {.fd = c->fd, .events = events};
	int64_t left;
	int n;

	for (;;) {
		left = c->deadline - (int64_t)clock_ms();
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return pfd.revents;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* Connect a non-blocking socket to one address within the deadline. */
static int
clamd_connect_addr(struct clamd_conn *c, const struct sockaddr *sa, socklen_t salen)
{
	int err = 0, rev;
	socklen_t len = sizeof(err);

	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		return clamd_fail(c, "socket: %s", strerror(errno));
	if (connect(c->fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		goto fail;
	rev = clamd_wait(c, POLLOUT);
	if (rev == 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (rev < 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		goto fail;
	if (err == 0)
		return 0;
	errno = err;
fail:
	clamd_fail(c, "connect: %s", strerror(errno));
	close(c->fd);
	c->fd = -1;
	return -1;
}

/* Connect to "unix:/path" or "tcp:HOST:PORT" (HOST may be "[v6]"). */
static int
clamd_connect(struct clamd_conn *c)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	char host[CLAMD_HOST_MAX];
	const char *s = c->spec, *colon, *port;
	size_t hlen;
	int gai;

	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		if (str_copy(sun.sun_path, s + 5, sizeof(sun.sun_path)) >= sizeof(sun.sun_path) ||
		    s[5] == '\0')
			return clamd_fail(c, "socket path empty or too long");
		return clamd_connect_addr(c, (const struct sockaddr *)&sun, sizeof(sun));
	}
	if (strncmp(s, "tcp:", 4) != 0)
		return clamd_fail(c, "not unix:PATH or tcp:HOST:PORT");
	s += 4;
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return clamd_fail(c, "bad [address]:port");
		s++;
		hlen = (size_t)(end - s);
		port = end + 2;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return clamd_fail(c, "no port");
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || *port == '\0')
		return clamd_fail(c, "bad host or port");
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	hints.ai_flags = AI_NUMERICSERV;
	if ((gai = getaddrinfo(host, port, &hints, &res)) != 0)
		return clamd_fail(c, "resolve %s: %s", host, gai_strerror(gai));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (clamd_connect_addr(c, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if ((int64_t)clock_ms() >= c->deadline)
			break;
	}
	freeaddrinfo(res);
	return c->fd == -1 ? -1 : 0;
}

/*
 * Send buf within the deadline. Returns 0 when sent, 1 when clamd has
 * something to say first (an early reply: stop sending and read it), -1
 * on failure.
 */
static int
clamd_send(struct clamd_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	ssize_t n;
	int rev;

	while (len > 0) {
		rev = clamd_wait(c, POLLOUT | POLLIN);
		if (rev == 0)
			return clamd_fail(c, "timed out sending");
		if (rev < 0)
			return clamd_fail(c, "poll: %s", strerror(errno));
		if (rev & (POLLIN | POLLHUP | POLLERR))
			return 1;
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return 1; /* a reply may be waiting */
			return clamd_fail(c, "send: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Stream the message: command, chunks, end. 0, 1 (early reply) or -1. */
static int
clamd_stream(struct clamd_conn *c, const unsigned char *msg, size_t len)
{
	static const char cmd[] = "zINSTREAM"; /* sent with its NUL */
	unsigned char hdr[4];
	size_t off = 0, n;
	int rc;

	if ((rc = clamd_send(c, cmd, sizeof(cmd))) != 0)
		return rc;
	do {
		n = len - off > CLAMD_CHUNK ? CLAMD_CHUNK : len - off;
		hdr[0] = (unsigned char)(n >> 24);
		hdr[1] = (unsigned char)(n >> 16);
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		if ((rc = clamd_send(c, hdr, sizeof(hdr))) != 0)
			return rc;
		if (n > 0 && (rc = clamd_send(c, msg + off, n)) != 0)
			return rc;
		off += n;
	} while (n > 0); /* the zero-length chunk ends the stream */
	return 0;
}

/* Read the reply up to its NUL (or EOF) into buf; its length or -1. */
static ssize_t
clamd_read_reply(struct clamd_conn *c, char *buf, size_t size)
{
	size_t have = 0;
	ssize_t n;
	int rev;

	while (have < size - 1) {
		rev = clamd_wait(c, POLLIN);
		if (rev == 0)
			return clamd_fail(c, "timed out waiting for the reply");
		if (rev < 0)
			return clamd_fail(c, "poll: %s", strerror(errno));
		n = recv(c->fd, buf + have, size - 1 - have, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return clamd_fail(c, "recv: %s", strerror(errno));
		}
		if (n == 0)
			break;
		if (memchr(buf + have, '\0', (size_t)n) != NULL) {
			have += (size_t)n;
			buf[have] = '\0';
			return (ssize_t)strlen(buf);
		}
		have += (size_t)n;
	}
	buf[have] = '\0';
	if (have == 0)
		return clamd_fail(c, "connection closed without a reply");
	if (have >= size - 1)
		return clamd_fail(c, "reply too long");
	return (ssize_t)have; /* EOF without NUL: parse what came */
}

/* Copy a signature name as printable ASCII, bounded. */
static void
clamd_copy_name(char *dst, size_t size, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 1 < size; i++)
		dst[o++] = s[i] > ' ' && s[i] < 0x7f ? s[i] : '?';
	dst[o] = '\0';
}

static bool
clamd_ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Read a reply line: "stream: OK", "stream: NAME FOUND", "... ERROR". */
static enum clamd_result
clamd_parse_reply(struct clamd_conn *c, char *r, size_t len)
{
	char quoted[160];

	while (len > 0 && (r[len - 1] == '\n' || r[len - 1] == '\r' || r[len - 1] == ' '))
		r[--len] = '\0';
	if (strncmp(r, "stream: ", 8) == 0) {
		r += 8;
		len -= 8;
	}
	if (len == 2 && memcmp(r, "OK", 2) == 0)
		return CLAMD_CLEAN;
	if (clamd_ends_with(r, len, " FOUND") && len > 6) {
		clamd_copy_name(c->name, sizeof(c->name), r, len - 6);
		return CLAMD_FOUND;
	}
	if (strstr(r, "size limit exceeded") != NULL)
		return CLAMD_TOO_BIG;
	log_quote(quoted, sizeof(quoted), r, len);
	clamd_fail(c, "%s %s", clamd_ends_with(r, len, " ERROR") ? "error" : "unexpected reply",
	           quoted);
	return CLAMD_FAILED;
}

/* One INSTREAM scan of the whole message. */
static enum clamd_result
clamd_scan(struct clamd_conn *c, const unsigned char *msg, size_t len)
{
	char reply[CLAMD_REPLY_MAX];
	ssize_t n;

	if (clamd_connect(c) == -1)
		return CLAMD_FAILED;
	if (clamd_stream(c, msg, len) == -1)
		return CLAMD_FAILED;
	if ((n = clamd_read_reply(c, reply, sizeof(reply))) < 0)
		return CLAMD_FAILED;
	return clamd_parse_reply(c, reply, (size_t)n);
}

/* Which symbol a signature name stands for. */
static enum scan_sym_id
clamd_symbol(const char *name)
{
	if (strncmp(name, "Heuristics.Limits.Exceeded", 26) == 0 ||
	    strstr(name, ".Exceeded.") != NULL)
		return SYM_CLAM_LIMITS_EXCEEDED;
	if (strncmp(name, "Heuristics.Encrypted", 20) == 0)
		return SYM_CLAM_ENCRYPTED;
	return SYM_CLAM_VIRUS;
}

void
scan_check_clamd(struct scan_task *t)
{
	const struct config *cfg = t->cfg;
	struct clamd_conn c = {.fd = -1};
	enum clamd_result r;
	char qspec[128], qwhy[256];

	if (cfg == NULL || cfg->clamd == NULL || cfg->clamd[0] == '\0')
		return;
	c.spec = cfg->clamd;
	c.deadline = scan_deadline_in(t, cfg->clamd_timeout);
	if (scan_remaining_ms(t) == 0) {
		clamd_fail(&c, "scan deadline passed");
		r = CLAMD_FAILED;
	} else
		r = clamd_scan(&c, t->in->msg, t->in->len);
	if (c.fd != -1)
		close(c.fd);

	switch (r) {
	case CLAMD_CLEAN:
		break;
	case CLAMD_FOUND:
		scan_sym(t, clamd_symbol(c.name), "%s", c.name);
		break;
	case CLAMD_TOO_BIG:
		scan_sym(t, SYM_CLAM_LIMITS_EXCEEDED, "INSTREAM size limit exceeded");
		break;
	case CLAMD_FAILED:
		log_quote(qspec, sizeof(qspec), c.spec, strlen(c.spec));
		log_quote(qwhy, sizeof(qwhy), c.why, strlen(c.why));
		log_warn("event=clamd_failed queue_id=%s clamd=%s required=%s reason=%s",
		         t->in->queue_id ? t->in->queue_id : "-", qspec,
		         cfg->clamd_required ? "yes" : "no", qwhy);
		if (cfg->clamd_required)
			scan_tempfail(t, "clamd unavailable: %s", c.why);
		break;
	}
}
