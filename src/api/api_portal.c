/*
 * api_portal.c - the web portal's static files (index.html, app.css, js/)
 * from portal_dir, on the admin listener, for every path outside /api/
 * that the route table does not take. RFC 9110 (GET, HEAD, ETag,
 * If-None-Match, 304).
 *
 * Design: the portal is a handful of small files, read whole on the API
 * thread at each request (no cache to invalidate: a deployment replaces
 * files and the next request sees them). Browsers revalidate every time
 * (Cache-Control: no-cache) with an ETag of size and modification time,
 * so an unchanged file costs a 304. No credentials are needed: the files
 * hold no data, the JavaScript asks the API for the session.
 *
 * What is served is narrow on purpose: the raw path (before any
 * %-decoding, so "%2e%2e" is simply refused) must be segments of
 * [A-Za-z0-9._-], none starting with '.', at most API_PORTAL_SEGMENTS of
 * them; each directory on the way and the file itself are opened with
 * O_NOFOLLOW from portal_dir (a symbolic link inside the portal is never
 * followed); only regular files up to API_PORTAL_FILE_MAX with a known
 * extension are answered. Everything else is a small text/plain 404.
 */
#include "api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"

#define API_PORTAL_SEGMENTS 8          /* path segments below portal_dir */
#define API_PORTAL_NAME_MAX 255        /* octets of one segment */
#define API_PORTAL_PATH_MAX 1024       /* octets of the whole path */
#define API_PORTAL_FILE_MAX (4u << 20) /* the largest file served */
#define API_PORTAL_ETAG_MAX 64

/* Content types by extension; any other extension is not served. */
static const struct {
	const char *ext;
	const char *type;
} api_portal_types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".woff2", "font/woff2"},
};

/* A text/plain answer (404, 405) with the security header fields. */
static void
api_portal_text(struct api_req *r, int code, const char *text)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	api_security_headers(r->req, false);
	if (r->method != EVHTTP_REQ_HEAD)
		evbuffer_add(buf, text, strlen(text));
	evhttp_send_reply(r->req, code, NULL, buf);
	evbuffer_free(buf);
	r->req = NULL;
}

static void
api_portal_not_found(struct api_req *r)
{
	api_portal_text(r, 404, "404 not found\n");
}

/*
 * The file's path below portal_dir for the raw request path ("/" is
 * index.html) into out, checked as the file comment says; its content
 * type in *type. False: not a portal path.
 */
static bool
api_portal_path(const char *path, char *out, size_t outsize, const char **type)
{
	const char *p, *ext;
	size_t nsegs = 0, len;

	if (strcmp(path, "/") == 0)
		path = "/index.html";
	len = strlen(path);
	if (path[0] != '/' || len > API_PORTAL_PATH_MAX || len >= outsize)
		return false;
	for (p = path; *p == '/';) {
		size_t seg = 0;

		p++;
		if (*p == '.' || ++nsegs > API_PORTAL_SEGMENTS)
			return false;
		while (p[seg] != '\0' && p[seg] != '/') {
			char c = p[seg];

			if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
				return false;
			seg++;
		}
		if (seg == 0 || seg > API_PORTAL_NAME_MAX)
			return false; /* an empty segment: "//", or a trailing '/' */
		p += seg;
	}
	if (*p != '\0')
		return false;
	if ((ext = strrchr(path, '.')) == NULL || strchr(ext, '/') != NULL)
		return false;
	*type = NULL;
	for (size_t i = 0; i < nitems(api_portal_types); i++)
		if (strcmp(ext, api_portal_types[i].ext) == 0)
			*type = api_portal_types[i].type;
	if (*type == NULL)
		return false;
	memcpy(out, path + 1, len); /* without the leading '/', with the NUL */
	return true;
}

/*
 * Open rel (segments checked by api_portal_path) below dir without
 * following a symbolic link on the way: -1 with errno (ELOOP for a link).
 */
static int
api_portal_open(const char *dir, char *rel)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *seg = rel;

	if (fd < 0)
		return -1;
	for (;;) {
		char *slash = strchr(seg, '/');
		int next, saved;

		if (slash != NULL)
			*slash = '\0';
		next = openat(fd, seg,
		              O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
		                      (slash != NULL ? O_DIRECTORY : O_NONBLOCK));
		saved = errno;
		if (slash != NULL)
			*slash = '/';
		close(fd);
		if (next < 0) {
			errno = saved;
			return -1;
		}
		fd = next;
		if (slash == NULL)
			return fd;
		seg = slash + 1;
	}
}

/* Does an If-None-Match value (a list of entity tags, or "*") name etag? */
static bool
api_portal_etag_match(const char *inm, const char *etag)
{
	size_t elen = strlen(etag);
	const char *p = inm;

	while (*p != '\0') {
		const char *end;
		size_t len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0) /* weak comparison (RFC 9110 13.1.2) */
			p += 2;
		end = p;
		while (*end != '\0' && *end != ',')
			end++;
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == elen && memcmp(p, etag, len) == 0)
			return true;
		p = end;
	}
	return false;
}

/* Read the whole of fd, size octets as fstat() said, into *out; -1 if it changed. */
static int
api_portal_read(int fd, size_t size, unsigned char **out)
{
	unsigned char *buf = xmalloc(size ? size : 1);
	size_t have = 0;

	while (have < size) {
		ssize_t n = read(fd, buf + have, size - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return -1; /* shorter than it was, or unreadable */
		}
		have += (size_t)n;
	}
	*out = buf;
	return 0;
}

void
api_portal_serve(struct api_req *r, const char *path)
{
	struct evkeyvalq *h;
	const char *dir = r->cfg->portal_dir, *type, *inm;
	char rel[API_PORTAL_PATH_MAX + 1], etag[API_PORTAL_ETAG_MAX];
	unsigned char *data = NULL;
	struct evbuffer *buf;
	struct stat st = {0};
	int fd;

	if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", "GET, HEAD");
		api_portal_text(r, 405, "405 method not allowed\n");
		return;
	}
	if (dir == NULL || dir[0] == '\0' || !api_portal_path(path, rel, sizeof(rel), &type)) {
		api_portal_not_found(r);
		return;
	}
	if ((fd = api_portal_open(dir, rel)) < 0) {
		if (errno == ELOOP)
			log_warn("event=portal_refused path=/%s reason=\"a symbolic link\"", rel);
		api_portal_not_found(r);
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > API_PORTAL_FILE_MAX) {
		if (S_ISREG(st.st_mode) && st.st_size > API_PORTAL_FILE_MAX)
			log_warn("event=portal_refused path=/%s reason=\"over %u octets\"", rel,
			         API_PORTAL_FILE_MAX);
		close(fd);
		api_portal_not_found(r);
		return;
	}
	snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
	         (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
	h = evhttp_request_get_output_headers(r->req);
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "ETag", etag);
	api_security_headers(r->req, false);
	inm = evhttp_find_header(evhttp_request_get_input_headers(r->req), "If-None-Match");
	if (inm != NULL && api_portal_etag_match(inm, etag)) {
		close(fd);
		evhttp_send_reply(r->req, 304, NULL, NULL);
		r->req = NULL;
		return;
	}
	if (r->method == EVHTTP_REQ_GET && api_portal_read(fd, (size_t)st.st_size, &data) < 0) {
		close(fd);
		log_warn("event=portal_read_failed path=/%s", rel);
		evhttp_clear_headers(h);
		api_portal_not_found(r);
		return;
	}
	close(fd);
	evhttp_add_header(h, "Content-Type", type);
	buf = evbuffer_new();
	if (data != NULL) {
		evbuffer_add(buf, data, (size_t)st.st_size);
		free(data);
	} else {
		/* HEAD: the length a GET would have, without the body */
		char len[32];

		snprintf(len, sizeof(len), "%" PRIu64, (uint64_t)st.st_size);
		evhttp_add_header(h, "Content-Length", len);
	}
	evhttp_send_reply(r->req, 200, NULL, buf);
	evbuffer_free(buf);
	r->req = NULL;
}
