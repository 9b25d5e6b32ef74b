/*
 * moatctl_api.c - moatctl's client of the admin HTTP API (src/api/,
 * docs/openapi.yaml): JSON over HTTP/1.1 (RFC 9110, 9112) with libcurl,
 * authenticated by a bearer token (RFC 6750).
 *
 * Where to: --url, else MOAT_URL, else the first address of the config's
 * admin_listen (a wildcard address becomes loopback), https when
 * admin_tls_cert is set. For that address moatctl trusts exactly the
 * configured certificate: it is the CA file, and its public key is pinned
 * (so the name it was issued for need not be the address; an intermediate
 * in the file does not vouch for other certificates). Proxies from the
 * environment apply only to an explicit URL.
 *
 * The token: MOAT_TOKEN, or a file (--token-file, MOAT_TOKEN_FILE), never
 * an argument (ps would show it to every user of the host). A file others
 * can read is used with a warning.
 *
 * Errors: the server's {"error", "field"} printed as
 * "moatctl: WHAT: 409 already released"; the exit status by class (moatctl.h).
 */
#include "moatctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"

#define MOATCTL_API_PREFIX    "/api/v1"
#define MOATCTL_API_BODY_MAX  (64u << 20) /* a JSON answer; larger is refused */
#define MOATCTL_API_TOKEN_MAX 512         /* a token file's first line */
#define MOATCTL_API_CONNECT_S 10
#define MOATCTL_API_TIMEOUT_S 300 /* a release may wait for a clamd rescan */
#define MOATCTL_API_WHAT_MAX  128

struct moatctl_api {
	CURL *curl;
	char *base;   /* "http://127.0.0.1:8025", no trailing slash */
	char *auth;   /* "Authorization: Bearer ..." or NULL */
	char *cainfo; /* admin_tls_cert, with pin: from the config */
	char *pin;    /* "sha256//..." */
	bool from_config;
	char what[MOATCTL_API_WHAT_MAX];
	char errbuf[CURL_ERROR_SIZE];
	/* the answer being received */
	struct dynbuf body;
	FILE *sink; /* moatctl_api_fetch(): a 2xx body goes here */
	int sink_errno;
};

/* "sha256//BASE64" of the public key of the first certificate in path; NULL with err. */
static char *
moatctl_api_pin(const char *path, char *err, size_t errsize)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	X509 *x = NULL;
	FILE *fp;
	int len;
	char *pin = NULL;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errsize, "cannot read admin_tls_cert %s: %s", path, strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (x == NULL) {
		snprintf(err, errsize, "admin_tls_cert %s: no PEM certificate", path);
		return NULL;
	}
	if ((len = i2d_PUBKEY(X509_get0_pubkey(x), &der)) <= 0 ||
	    EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1) {
		snprintf(err, errsize, "admin_tls_cert %s: cannot read its public key", path);
		goto done;
	}
	EVP_EncodeBlock((unsigned char *)b64, md, (int)mdlen);
	pin = xasprintf("sha256//%s", b64);
done:
	OPENSSL_free(der);
	X509_free(x);
	return pin;
}

/* The base URL of the config's admin listener; NULL with err. */
static char *
moatctl_api_config_url(const struct moatctl_global *g, struct moatctl_api *a, char *err,
                       size_t errsize)
{
	char host[INET6_ADDRSTRLEN], lerr[1024];
	const struct config_listen *l;
	struct config *cfg;
	char *url = NULL;
	unsigned port;
	bool tls;

	log_init("moatctl", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
	if ((cfg = config_load(g->config, lerr, sizeof(lerr))) == NULL) {
		snprintf(err, errsize, "%s (use -c CONFIG, --url or MOAT_URL)", lerr);
		return NULL;
	}
	if (cfg->admin_listen.n == 0) {
		snprintf(err, errsize,
		         "%s: admin_listen is empty: moatd serves no API there "
		         "(use --url or MOAT_URL)",
		         g->config);
		goto done;
	}
	l = &cfg->admin_listen.addr[0];
	if (l->ss.ss_family == AF_INET6) {
		struct in6_addr in6;
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&l->ss;

		in6 = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? in6addr_loopback : s6->sin6_addr;
		inet_ntop(AF_INET6, &in6, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&l->ss;
		struct in_addr in4 = s4->sin_addr;

		if (in4.s_addr == htonl(INADDR_ANY))
			in4.s_addr = htonl(INADDR_LOOPBACK);
		inet_ntop(AF_INET, &in4, host, sizeof(host));
		port = ntohs(s4->sin_port);
	}
	tls = cfg->admin_tls_cert[0] != '\0';
	if (tls) {
		if ((a->pin = moatctl_api_pin(cfg->admin_tls_cert, err, errsize)) == NULL)
			goto done;
		a->cainfo = xstrdup(cfg->admin_tls_cert);
	}
	url = xasprintf("%s://%s%s%s:%u", tls ? "https" : "http",
	                l->ss.ss_family == AF_INET6 ? "[" : "", host,
	                l->ss.ss_family == AF_INET6 ? "]" : "", port);
done:
	config_unref(cfg);
	return url;
}

/* The token's first line from path; NULL with err. Warns when others may read it. */
static char *
moatctl_api_token_file(const char *path, char *err, size_t errsize)
{
	char buf[MOATCTL_API_TOKEN_MAX + 2];
	struct stat st;
	size_t len;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errsize, "token file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &st) == 0 && (st.st_mode & S_IROTH))
		fprintf(stderr,
		        "moatctl: warning: token file %s is readable by every user of this host "
		        "(chmod 600 %s)\n",
		        path, path);
	if (fgets(buf, sizeof(buf), fp) == NULL)
		buf[0] = '\0';
	fclose(fp);
	len = strcspn(buf, "\r\n");
	if (len > MOATCTL_API_TOKEN_MAX) {
		snprintf(err, errsize, "token file %s: the first line is too long for a token",
		         path);
		return NULL;
	}
	buf[len] = '\0';
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (len == 0) {
		snprintf(err, errsize, "token file %s: no token on its first line", path);
		return NULL;
	}
	return xstrdup(buf);
}

/* "Authorization: Bearer TOKEN" from the environment or a file; NULL: none. -1 with err. */
static int
moatctl_api_auth(const struct moatctl_global *g, struct moatctl_api *a, char *err, size_t errsize)
{
	const char *env = getenv("MOAT_TOKEN"), *file = g->token_file;
	char *token = NULL;

	if (file == NULL && (env == NULL || env[0] == '\0')) {
		file = getenv("MOAT_TOKEN_FILE");
		if (file != NULL && file[0] == '\0')
			file = NULL;
	}
	if (file != NULL) {
		if ((token = moatctl_api_token_file(file, err, errsize)) == NULL)
			return -1;
	} else if (env != NULL && env[0] != '\0') {
		if (strlen(env) > MOATCTL_API_TOKEN_MAX) {
			snprintf(err, errsize, "MOAT_TOKEN is too long for a token");
			return -1;
		}
		token = xstrdup(env);
	} else {
		return 0;
	}
	/* it goes into a header line: printable ASCII only */
	for (const char *p = token; *p; p++)
		if (*p <= ' ' || *p > '~') {
			snprintf(err, errsize, "the token has a space or control character in it");
			OPENSSL_cleanse(token, strlen(token));
			free(token);
			return -1;
		}
	a->auth = xasprintf("Authorization: Bearer %s", token);
	OPENSSL_cleanse(token, strlen(token));
	free(token);
	return 0;
}

struct moatctl_api *
moatctl_api_open(const struct moatctl_global *g, const char *what, int *rc)
{
	struct moatctl_api *a = xcalloc(1, sizeof(*a));
	const char *url = g->url;
	char err[1100];
	size_t len;

	str_copy(a->what, what, sizeof(a->what));
	if (url == NULL && (url = getenv("MOAT_URL")) != NULL && url[0] == '\0')
		url = NULL;
	if (url != NULL) {
		if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
			fprintf(stderr,
			        "moatctl: %s: the URL must start with http:// or https://: %s\n",
			        what, url);
			*rc = MOATCTL_EXIT_USAGE;
			goto fail;
		}
		a->base = xstrdup(url);
	} else {
		if ((a->base = moatctl_api_config_url(g, a, err, sizeof(err))) == NULL) {
			fprintf(stderr, "moatctl: %s: %s\n", what, err);
			*rc = MOATCTL_EXIT_UNREACHABLE;
			goto fail;
		}
		a->from_config = true;
	}
	/* "https://host/" and "https://host/api/v1" both name the server */
	len = strlen(a->base);
	while (len > 0 && a->base[len - 1] == '/')
		a->base[--len] = '\0';
	if (len >= strlen(MOATCTL_API_PREFIX) &&
	    strcmp(a->base + len - strlen(MOATCTL_API_PREFIX), MOATCTL_API_PREFIX) == 0)
		a->base[len - strlen(MOATCTL_API_PREFIX)] = '\0';
	if (moatctl_api_auth(g, a, err, sizeof(err)) < 0) {
		fprintf(stderr, "moatctl: %s: %s\n", what, err);
		*rc = MOATCTL_EXIT_USAGE;
		goto fail;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (a->curl = curl_easy_init()) == NULL)
		fatalx("libcurl cannot start");
	return a;
fail:
	moatctl_api_close(a);
	return NULL;
}

void
moatctl_api_close(struct moatctl_api *a)
{
	if (a == NULL)
		return;
	if (a->curl)
		curl_easy_cleanup(a->curl);
	if (a->auth) {
		OPENSSL_cleanse(a->auth, strlen(a->auth));
		free(a->auth);
	}
	free(a->base);
	free(a->cainfo);
	free(a->pin);
	free(a->body.p);
	free(a);
}

void
moatctl_api_set_what(struct moatctl_api *a, const char *what)
{
	str_copy(a->what, what, sizeof(a->what));
}

char *
moatctl_api_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(3 * strlen(s) + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static size_t
moatctl_api_write(char *p, size_t size, size_t n, void *arg)
{
	struct moatctl_api *a = arg;
	long status = 0;

	n *= size;
	if (a->sink != NULL) {
		curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300) {
			if (fwrite(p, 1, n, a->sink) != n) {
				a->sink_errno = errno ? errno : EIO;
				return 0;
			}
			return n;
		}
	}
	return dynbuf_add(&a->body, p, n) < 0 ? 0 : n;
}

static const char *
moatctl_api_reason(long status)
{
	switch (status) {
	case 400:
		return "bad request";
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return "not found";
	case 405:
		return "method not allowed";
	case 409:
		return "conflict";
	case 413:
		return "request too large";
	case 429:
		return "too many requests";
	case 500:
		return "internal server error";
	case 503:
		return "service unavailable";
	default:
		return "error";
	}
}

/* Print a non-2xx answer; its exit status. */
static int
moatctl_api_failed(struct moatctl_api *a, long status)
{
	json_t *j = a->body.p ? json_loads(a->body.p, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(j, "error"));
	const char *field = json_string_value(json_object_get(j, "field"));
	int rc;

	if (status >= 300 && status < 400) {
		char *loc = NULL;

		curl_easy_getinfo(a->curl, CURLINFO_REDIRECT_URL, &loc);
		fprintf(stderr, "moatctl: %s: %ld redirected to %s (not followed: check --url)\n",
		        a->what, status, loc ? loc : "?");
		json_decref(j);
		return MOATCTL_EXIT_REFUSED;
	}
	fprintf(stderr, "moatctl: %s: %ld %s", a->what, status,
	        msg && msg[0] ? msg : moatctl_api_reason(status));
	if (field && field[0])
		fprintf(stderr, " (field %s)", field);
	fprintf(stderr, "\n");
	if (status == 401 && a->auth == NULL)
		fprintf(stderr, "moatctl: no token: set MOAT_TOKEN or MOAT_TOKEN_FILE, or use "
		                "--token-file (`moatctl token create` on the host makes one)\n");
	if (status == 401 || status == 403)
		rc = MOATCTL_EXIT_AUTH;
	else if (status >= 500 || status < 100)
		rc = MOATCTL_EXIT_UNREACHABLE;
	else
		rc = MOATCTL_EXIT_REFUSED;
	json_decref(j);
	return rc;
}

/* Send one request; the answer's status in *status. A transport failure is printed. */
static int
moatctl_api_perform(struct moatctl_api *a, const char *method, const char *path, const char *query,
                    const char *body, long *status)
{
	struct curl_slist *hdrs = NULL;
	char *url;
	CURLcode cc;
	int rc = MOATCTL_EXIT_OK;

	url = xasprintf("%s%s%s%s%s", a->base, path[0] == '/' ? "" : MOATCTL_API_PREFIX "/", path,
	                query && query[0] ? "?" : "", query ? query : "");
	free(a->body.p);
	dynbuf_init(&a->body, MOATCTL_API_BODY_MAX);
	a->sink_errno = 0;
	a->errbuf[0] = '\0';
	curl_easy_reset(a->curl);
	curl_easy_setopt(a->curl, CURLOPT_URL, url);
	curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT, (long)MOATCTL_API_CONNECT_S);
	curl_easy_setopt(a->curl, CURLOPT_TIMEOUT, (long)MOATCTL_API_TIMEOUT_S);
	curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "moatctl/" MOAT_VERSION);
	curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->errbuf);
	curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, moatctl_api_write);
	curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L); /* the token stays with this host */
	if (a->from_config)
		curl_easy_setopt(a->curl, CURLOPT_PROXY, "");
	if (a->pin) {
		curl_easy_setopt(a->curl, CURLOPT_CAINFO, a->cainfo);
		curl_easy_setopt(a->curl, CURLOPT_PINNEDPUBLICKEY, a->pin);
		curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYHOST,
		                 0L); /* the key is pinned instead */
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (a->auth)
		hdrs = curl_slist_append(hdrs, a->auth);
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method);
	if (body == NULL && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)) {
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE, 0L);
	}
	curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(a->curl);
	curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, status);
	if (cc == CURLE_WRITE_ERROR && a->sink_errno) {
		fprintf(stderr, "moatctl: %s: write: %s\n", a->what, strerror(a->sink_errno));
		rc = MOATCTL_EXIT_REFUSED;
	} else if (cc == CURLE_WRITE_ERROR) {
		fprintf(stderr, "moatctl: %s: the answer is over %u bytes\n", a->what,
		        MOATCTL_API_BODY_MAX);
		rc = MOATCTL_EXIT_UNREACHABLE;
	} else if (cc != CURLE_OK) {
		fprintf(stderr, "moatctl: %s: cannot reach moat at %s: %s%s\n", a->what, a->base,
		        a->errbuf[0] ? a->errbuf : curl_easy_strerror(cc),
		        cc == CURLE_COULDNT_CONNECT
		                ? " (is moatd running, with admin_listen there?)"
		                : "");
		rc = MOATCTL_EXIT_UNREACHABLE;
	}
	curl_slist_free_all(hdrs);
	free(url);
	return rc;
}

int
moatctl_api_json(struct moatctl_api *a, const char *method, const char *path, const char *query,
                 json_t *body, json_t **out)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_error_t jerr;
	long status = 0;
	int rc;

	*out = NULL;
	a->sink = NULL;
	rc = moatctl_api_perform(a, method, path, query, text, &status);
	free(text);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	if (status < 200 || status >= 300)
		return moatctl_api_failed(a, status);
	if (a->body.len == 0)
		return MOATCTL_EXIT_OK;
	if ((*out = json_loadb(a->body.p, a->body.len, 0, &jerr)) == NULL) {
		fprintf(stderr, "moatctl: %s: the answer is not JSON: %s\n", a->what, jerr.text);
		return MOATCTL_EXIT_UNREACHABLE;
	}
	return MOATCTL_EXIT_OK;
}

int
moatctl_api_fetch(struct moatctl_api *a, const char *path, const char *query, FILE *fp)
{
	long status = 0;
	int rc;

	a->sink = fp;
	rc = moatctl_api_perform(a, "GET", path, query, NULL, &status);
	a->sink = NULL;
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	if (status < 200 || status >= 300)
		return moatctl_api_failed(a, status);
	if (fflush(fp) != 0) {
		fprintf(stderr, "moatctl: %s: write: %s\n", a->what, strerror(errno));
		return MOATCTL_EXIT_REFUSED;
	}
	return MOATCTL_EXIT_OK;
}
