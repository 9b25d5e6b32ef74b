/*
 * m365_http.c - the HTTPS POST of moat's Microsoft 365 client, over a
 * libcurl easy handle (HTTP/1.1 and 2, RFC 9110, 9112, 9113; TLS, RFC 8446).
 *
 * One handle per call, never shared: calls come from M365 job threads.
 * Certificates and host names are always verified (against ep->ca_file when
 * set, else the system's CAs); redirects are not followed; only https:// is
 * spoken, except plain http:// to loopback so the tests can run the
 * emulator without TLS. Every answer body grows up to M365_BODY_MAX, and
 * since bodies and header lines carry the access token or the device code,
 * each copy moat makes is cleansed before it is freed (libcurl's and
 * jansson's internal copies are beyond reach). Nothing here logs.
 *
 * curl_global_init() is called by scan_init() when moatd starts; it is
 * reference-counted and thread-safe in the libcurl moat needs (>= 7.85,
 * for CURLOPT_PROTOCOLS_STR), so m365_http_post() also makes sure of it
 * once, for programs (the test probe) that do not start the scan engine.
 */
#include "m365_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "../common/log.h"
#include "../common/util.h"

static pthread_once_t m365_http_once = PTHREAD_ONCE_INIT;

static void
m365_http_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("libcurl cannot start");
}

void
m365_secret_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
m365_error_set(struct m365_error *e, enum m365_err_kind kind, const char *fmt, ...)
{
	va_list ap;

	e->kind = kind;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
}

void
m365_error_scrub(struct m365_error *e, const char *secret)
{
	if (secret != NULL && secret[0] != '\0' && strstr(e->text, secret) != NULL)
		str_copy(e->text, "(Microsoft's text is withheld: it repeated a secret)",
		         sizeof(e->text));
}

bool
m365_http_header_safe(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static bool
m365_sleep_plain(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return true;
}

bool
m365_cancel_sleep(const struct m365_cancel *c, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	if (c == NULL || c->sleep == NULL)
		return m365_sleep_plain(ms);
	return c->sleep(c->arg, ms);
}

/* --- URLs --- */

/* Scheme, host and port of url (curl_free each), or -1. */
static int
m365_http_url_parts(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u;
	int rc = -1;

	*scheme = *host = *port = NULL;
	if ((u = curl_url()) == NULL)
		fatalx("curl_url: out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto fail;
	rc = 0;
fail:
	if (rc < 0) {
		curl_free(*scheme);
		curl_free(*host);
		curl_free(*port);
		*scheme = *host = *port = NULL;
	}
	curl_url_cleanup(u);
	return rc;
}

int
m365_http_url_check(const char *url, struct m365_error *e)
{
	static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
	char *scheme, *host, *port;
	int rc = -1;

	if (m365_http_url_parts(url, &scheme, &host, &port) < 0) {
		m365_error_set(e, M365_E_NETWORK, "'%.200s' is not a URL moat can use", url);
		return -1;
	}
	if (strcasecmp(scheme, "https") == 0)
		rc = 0;
	else if (strcasecmp(scheme, "http") == 0)
		for (size_t i = 0; i < nitems(loopback); i++)
			if (strcasecmp(host, loopback[i]) == 0)
				rc = 0;
	if (rc < 0)
		m365_error_set(e, M365_E_NETWORK,
		               "refusing %s://%s: Microsoft is spoken to over HTTPS only (plain "
		               "http:// is allowed to 127.0.0.1, localhost and [::1], for tests)",
		               scheme, host);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	return rc;
}

bool
m365_http_same_origin(const char *a, const char *b)
{
	char *sa, *ha, *pa, *sb, *hb, *pb;
	bool same = false;

	if (m365_http_url_parts(a, &sa, &ha, &pa) < 0)
		return false;
	if (m365_http_url_parts(b, &sb, &hb, &pb) == 0) {
		same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
		curl_free(sb);
		curl_free(hb);
		curl_free(pb);
	}
	curl_free(sa);
	curl_free(ha);
	curl_free(pa);
	return same;
}

int
m365_http_url(char *buf, size_t size, const char *base, const char *mid, const char *segment,
              const char *tail, struct m365_error *e)
{
	size_t blen = base ? strlen(base) : 0;
	char *esc;
	bool fit;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (blen == 0 || blen > M365_URL_MAX) {
		m365_error_set(e, M365_E_NETWORK, "no URL configured for Microsoft's endpoint");
		return -1;
	}
	if ((esc = curl_easy_escape(NULL, segment, 0)) == NULL)
		fatalx("curl_easy_escape: out of memory");
	fit = path_fmt(buf, size, "%.*s%s%s%s", (int)blen, base, mid, esc, tail);
	curl_free(esc);
	if (!fit) {
		m365_error_set(e, M365_E_NETWORK, "the URL of Microsoft's endpoint is too long");
		return -1;
	}
	return 0;
}

/* --- the POST --- */

/* Grow the body; every old copy is cleansed, since a body may hold a token. */
static size_t
m365_http_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct m365_http_answer *a = arg;
	size_t n = size * nmemb;

	if (n > M365_BODY_MAX - a->len) {
		a->toobig = true;
		return 0; /* curl stops the transfer */
	}
	if (a->len + n + 1 > a->cap) {
		size_t cap = a->cap ? a->cap : 4096;
		char *p;

		while (cap < a->len + n + 1)
			cap *= 2;
		if (cap > (size_t)M365_BODY_MAX + 1)
			cap = (size_t)M365_BODY_MAX + 1;
		p = xmalloc(cap);
		if (a->len > 0)
			memcpy(p, a->body, a->len);
		if (a->body != NULL) {
			OPENSSL_cleanse(a->body, a->cap);
			free(a->body);
		}
		a->body = p;
		a->cap = cap;
	}
	memcpy(a->body + a->len, ptr, n);
	a->len += n;
	a->body[a->len] = '\0';
	return n;
}

/* The answer headers kept, by name. */
static const struct {
	const char *name;
	size_t off;
} m365_http_kept[] = {
        {"Retry-After", offsetof(struct m365_http_answer, retry_after)},
        {"Rate-Limit-Reset", offsetof(struct m365_http_answer, rate_limit_reset)},
        {"Rate-Limit-Remaining", offsetof(struct m365_http_answer, rate_limit_remaining)},
        {"WWW-Authenticate", offsetof(struct m365_http_answer, www_authenticate)},
};

/* One header line of the answer ("Name: value\r\n"), or a status line. */
static size_t
m365_http_header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
	struct m365_http_answer *a = arg;
	size_t len = size * nmemb;

	if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* a new answer (after a 100 Continue): forget the last one's */
		for (size_t i = 0; i < nitems(m365_http_kept); i++)
			((char *)a + m365_http_kept[i].off)[0] = '\0';
		return len;
	}
	for (size_t i = 0; i < nitems(m365_http_kept); i++) {
		size_t nlen = strlen(m365_http_kept[i].name), vlen;
		const char *v = line + nlen + 1;
		char *dst = (char *)a + m365_http_kept[i].off;

		if (len <= nlen || line[nlen] != ':' ||
		    !mem_ieq(line, m365_http_kept[i].name, nlen))
			continue;
		vlen = len - nlen - 1;
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
		                    v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (vlen >= M365_HTTP_HDR_MAX)
			vlen = M365_HTTP_HDR_MAX - 1;
		memcpy(dst, v, vlen);
		dst[vlen] = '\0';
	}
	return len;
}

/* M365_E_NETWORK: "https://host:port: curl's text". */
/* CURLOPT_XFERINFOFUNCTION: a cancelled job or a stopping moatd ends the exchange. */
static int
m365_http_progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                      curl_off_t ulnow)
{
	struct m365_endpoint *ep = arg; /* the caller's copy */

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return ep->aborted(ep->abort_arg) ? 1 : 0;
}

static void
m365_http_net_error(const char *url, const char *why, struct m365_error *e)
{
	char *scheme, *host, *port;

	if (m365_http_url_parts(url, &scheme, &host, &port) < 0) {
		m365_error_set(e, M365_E_NETWORK, "%s", why);
		return;
	}
	m365_error_set(e, M365_E_NETWORK, "%s://%s:%s: %s", scheme, host, port, why);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
}

void
m365_http_answer_clear(struct m365_http_answer *a)
{
	if (a->body != NULL) {
		OPENSSL_cleanse(a->body, a->cap);
		free(a->body);
	}
	memset(a, 0, sizeof(*a));
}

int
m365_http_post(const struct m365_endpoint *ep, const char *url, const char *const *headers,
               const char *body, size_t len, struct m365_http_answer *a, struct m365_error *e)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *list = NULL, *l;
	struct m365_endpoint abort_ep = *ep;
	long timeout = ep->timeout_s > 0 ? ep->timeout_s : M365_HTTP_TIMEOUT_S;
	CURL *h = NULL;
	CURLcode rc;
	int ret = -1;

	memset(a, 0, sizeof(*a));
	if (m365_http_url_check(url, e) < 0)
		return -1;
	pthread_once(&m365_http_once, m365_http_global_init);
	for (size_t i = 0; headers[i] != NULL; i++) {
		if ((l = curl_slist_append(list, headers[i])) == NULL)
			fatalx("curl_slist_append: out of memory");
		list = l;
	}
	/* no "Expect: 100-continue" round trip for the larger bodies */
	if ((l = curl_slist_append(list, "Expect:")) == NULL)
		fatalx("curl_slist_append: out of memory");
	list = l;
	if ((h = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ep->ca_file != NULL && ep->ca_file[0] != '\0')
		curl_easy_setopt(h, CURLOPT_CAINFO, ep->ca_file);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "moat/" MOAT_VERSION);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, m365_http_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, m365_http_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	if (ep->aborted) {
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, m365_http_progress_cb);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &abort_ep);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	}
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		if (rc == CURLE_ABORTED_BY_CALLBACK && !a->toobig)
			m365_error_set(e, M365_E_CANCELLED, "cancelled");
		else if (a->toobig)
			m365_error_set(e, M365_E_PROTOCOL, "an answer of more than %u octets",
			               (unsigned)M365_BODY_MAX);
		else
			m365_http_net_error(url, errbuf[0] ? errbuf : curl_easy_strerror(rc), e);
		goto fail;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
	ret = 0;
fail:
	/* the header lines hold the bearer token */
	for (l = list; l != NULL; l = l->next)
		OPENSSL_cleanse(l->data, strlen(l->data));
	curl_slist_free_all(list);
	curl_easy_cleanup(h);
	if (ret < 0)
		m365_http_answer_clear(a);
	return ret;
}
