/*
 * delivery_maildir.c - the local `maildir` route: one Maildir per
 * recipient under data_dir/maildir/<domain>/<local part>/ (the maildir(5)
 * protocol: write to tmp/, fsync, link into new/, fsync new/).
 *
 * Maildir files use LF line ends; the spooled message's CRLFs are turned
 * into LFs on the way (moat never spools a bare CR or LF). A Return-Path
 * and a Delivered-To header are added on top, as a local delivery agent
 * does.
 */
#include "delivery_internal.h"
#include "../common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAILDIR_CHUNK (64 * 1024)

/* A path component from an address part: safe characters, the rest %XX. */
static void
maildir_component(const char *s, size_t len, char *out, size_t outsize)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 4 < outsize; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '+' || c == '=' || (c == '.' && i > 0)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

/* mkdir -p; a directory it creates is made durable in its parent. */
static int
maildir_mkdirs(const char *path)
{
	char buf[4096];

	str_copy(buf, path, sizeof(buf));
	for (char *p = buf + 1;; p++) {
		char saved = *p;

		if (*p != '/' && *p != '\0')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == 0) {
			char *slash = strrchr(buf, '/');
			int r;

			if (slash == buf)
				r = fsync_dir("/");
			else {
				*slash = '\0';
				r = fsync_dir(buf);
				*slash = '/';
			}
			if (r < 0)
				return -1;
		} else if (errno != EEXIST) {
			return -1;
		}
		*p = saved;
		if (saved == '\0')
			return 0;
	}
}

/* Copy the body from the queue file, CRLF -> LF. */
static int
maildir_copy_body(int out, const struct spool_body *b)
{
	char *in = xmalloc(MAILDIR_CHUNK), *conv = xmalloc(MAILDIR_CHUNK);
	uint64_t left = b->len, pos = 0;
	bool cr = false;
	int r = -1;

	while (left > 0) {
		size_t want = left < MAILDIR_CHUNK ? (size_t)left : MAILDIR_CHUNK, o = 0;
		ssize_t n = spool_body_pread(b, in, want, pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			goto out;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (cr && in[i] != '\n')
				conv[o++] = '\r';
			cr = in[i] == '\r';
			if (!cr)
				conv[o++] = in[i];
			if (o >= MAILDIR_CHUNK - 1) {
				if (write_all(out, conv, o) < 0)
					goto out;
				o = 0;
			}
		}
		if (o && write_all(out, conv, o) < 0)
			goto out;
		pos += (uint64_t)n;
		left -= (uint64_t)n;
	}
	if (cr && write_all(out, "\r", 1) < 0)
		goto out;
	r = 0;
out:
	free(in);
	free(conv);
	return r;
}

int
delivery_maildir(const char *root, const char *hostname, const struct spool_body *b,
                 const struct spool_env *env, const char *rcpt, char *path, size_t pathsize)
{
	static unsigned counter;
	const char *at = strrchr(rcpt, '@');
	char local[256], domain[1024], dir[4096], tmp[4096], name[512];
	char hdr[2048];
	struct timeval tv;
	int fd = -1, saved, n;

	if (at == NULL) {
		errno = EINVAL;
		return -1;
	}
	maildir_component(rcpt, (size_t)(at - rcpt), local, sizeof(local));
	maildir_component(at + 1, strlen(at + 1), domain, sizeof(domain));
	if (!path_fmt(dir, sizeof(dir), "%s/maildir/%s/%s", root, domain, local))
		return -1;
	for (int i = 0; i < 3; i++) {
		static const char *const sub[] = {"tmp", "new", "cur"};
		if (!path_fmt(tmp, sizeof(tmp), "%s/%s", dir, sub[i]) || maildir_mkdirs(tmp) < 0)
			return -1;
	}
	gettimeofday(&tv, NULL);
	if (!path_fmt(name, sizeof(name), "%lld.M%06ldP%dQ%u_%s.%s", (long long)tv.tv_sec,
	              (long)tv.tv_usec, (int)getpid(),
	              __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), env->id, hostname) ||
	    !path_fmt(tmp, sizeof(tmp), "%s/tmp/%s", dir, name) ||
	    !path_fmt(path, pathsize, "%s/new/%s", dir, name))
		return -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		return -1;
	n = snprintf(hdr, sizeof(hdr), "Return-Path: <%s>\nDelivered-To: %s\n", env->sender, rcpt);
	if (n < 0 || (size_t)n >= sizeof(hdr) || write_all(fd, hdr, (size_t)n) < 0 ||
	    maildir_copy_body(fd, b) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	if (!path_fmt(tmp, sizeof(tmp), "%s/new", dir))
		return -1;
	return fsync_dir(tmp);
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}
