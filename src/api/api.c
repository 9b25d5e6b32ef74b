/*
 * api.c - the admin HTTP API's manager (api.h): listeners, the API
 * thread and its loop, the route table, authentication (API tokens and
 * portal sessions), CSRF and scope checks, JSON replies, the audit
 * helper and the retention timer. HTTP/1.1 (RFC 9112) is libevent's
 * evhttp; HTTPS is evhttp over bufferevent_openssl.
 *
 * Design: every request is handled to the end in its callback on the API
 * loop, store calls and quarantine operations included (they wait on
 * disk, never on the network, except a clamd rescan bounded by its
 * timeout). That keeps handlers straight-line code and the one store
 * connection single-threaded; the admin API is not a high-rate service.
 * Errors are JSON {"error", "field"} with the HTTP status: 400 naming the
 * field, 401, 403 naming the missing scope, 404, 405, 409, 413 (evhttp's
 * own, its body not JSON), 429, 500, 503. Paths outside /api/ that no
 * route takes are the portal's files (api_portal.c), their errors text.
 * Every answer of ours carries the security header fields
 * (api_security_headers(): the CSP, nosniff, no framing, no referrer).
 */
#include "api_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/mailaddr.h"
#include "../common/util.h"
#include "../m365/m365.h"
#include "../policy/policy.h"
#include "../scan/scan.h"
#include "api_token.h"

#define API_SEGMENTS_MAX   8
#define API_TOKEN_TOUCH_MS 60000 /* a token's last use is written at most this often */

enum {
	M_GET = EVHTTP_REQ_GET,
	M_POST = EVHTTP_REQ_POST,
	M_PUT = EVHTTP_REQ_PUT,
	M_DELETE = EVHTTP_REQ_DELETE,
	M_PATCH = EVHTTP_REQ_PATCH,
};

#define S_NONE    0u
#define S_READ    STORE_SCOPE_READ
#define S_OPERATE STORE_SCOPE_OPERATE
#define S_ADMIN   STORE_SCOPE_ADMIN

/* One route: "{}" in a path is a segment the handler gets in args[]. */
struct api_route {
	int method;
	const char *path;
	bool open;      /* no credentials needed */
	unsigned scope; /* the scope a token needs */
	void (*fn)(struct api_req *r);
};

static const struct api_route api_routes[] = {
        {M_GET, "/api/v1/health", true, S_NONE, api_h_health},
        {M_GET, "/metrics", false, S_READ, api_h_metrics},
        {M_POST, "/api/v1/auth/login", true, S_NONE, api_h_login},
        {M_POST, "/api/v1/auth/logout", false, S_NONE, api_h_logout},
        {M_GET, "/api/v1/auth/session", false, S_NONE, api_h_session},
        {M_GET, "/api/v1/quarantine", false, S_READ, api_h_quar_list},
        {M_POST, "/api/v1/quarantine/batch", false, S_OPERATE, api_h_quar_batch},
        {M_GET, "/api/v1/quarantine/{}", false, S_READ, api_h_quar_get},
        {M_GET, "/api/v1/quarantine/{}/download", false, S_READ, api_h_quar_download},
        {M_GET, "/api/v1/quarantine/{}/preview", false, S_READ, api_h_quar_preview},
        {M_POST, "/api/v1/quarantine/{}/release", false, S_OPERATE, api_h_quar_release},
        {M_POST, "/api/v1/quarantine/{}/delete", false, S_OPERATE, api_h_quar_delete},
        {M_GET, "/api/v1/tracking", false, S_READ, api_h_track_list},
        {M_GET, "/api/v1/tracking/{}", false, S_READ, api_h_track_get},
        {M_GET, "/api/v1/domains", false, S_READ, api_h_domains},
        {M_PUT, "/api/v1/domains/{}", false, S_ADMIN, api_h_domain_put},
        {M_DELETE, "/api/v1/domains/{}", false, S_ADMIN, api_h_domain_delete},
        {M_GET, "/api/v1/lists", false, S_READ, api_h_lists_get},
        {M_POST, "/api/v1/lists", false, S_OPERATE, api_h_lists_add},
        {M_DELETE, "/api/v1/lists", false, S_OPERATE, api_h_lists_delete},
        {M_GET, "/api/v1/rules", false, S_READ, api_h_rules_list},
        {M_GET, "/api/v1/rules/{}", false, S_READ, api_h_rule_get},
        {M_PUT, "/api/v1/rules/{}", false, S_ADMIN, api_h_rule_put},
        {M_DELETE, "/api/v1/rules/{}", false, S_ADMIN, api_h_rule_delete},
        {M_GET, "/api/v1/queue", false, S_READ, api_h_queue_list},
        {M_GET, "/api/v1/queue/{}", false, S_READ, api_h_queue_get},
        {M_POST, "/api/v1/queue/{}/{}", false, S_OPERATE, api_h_queue_action},
        {M_GET, "/api/v1/stats", false, S_READ, api_h_stats},
        {M_GET, "/api/v1/symbols", false, S_READ, api_h_symbols},
        {M_GET, "/api/v1/tokens", false, S_ADMIN, api_h_tokens_list},
        {M_POST, "/api/v1/tokens", false, S_ADMIN, api_h_token_create},
        {M_DELETE, "/api/v1/tokens/{}", false, S_ADMIN, api_h_token_delete},
        {M_GET, "/api/v1/users", false, S_ADMIN, api_h_users_list},
        {M_POST, "/api/v1/users", false, S_ADMIN, api_h_user_create},
        {M_DELETE, "/api/v1/users/{}", false, S_ADMIN, api_h_user_delete},
        {M_POST, "/api/v1/users/{}/password", false, S_ADMIN, api_h_user_password},
        {M_GET, "/api/v1/audit", false, S_ADMIN, api_h_audit},
        {M_GET, "/api/v1/config/export", false, S_ADMIN, api_h_config_export},
        {M_POST, "/api/v1/config/import", false, S_ADMIN, api_h_config_import},
        {M_GET, "/api/v1/settings", false, S_ADMIN, api_h_settings_list},
        {M_PUT, "/api/v1/settings/{}", false, S_ADMIN, api_h_setting_put},
        {M_DELETE, "/api/v1/settings/{}", false, S_ADMIN, api_h_setting_delete},
        {M_GET, "/api/v1/m365/tenant", false, S_ADMIN, api_h_m365_tenant},
        {M_GET, "/api/v1/m365/plan", false, S_ADMIN, api_h_m365_plan},
        {M_GET, "/api/v1/m365/script", false, S_ADMIN, api_h_m365_script},
        {M_GET, "/api/v1/m365/jobs", false, S_ADMIN, api_h_m365_jobs},
        {M_POST, "/api/v1/m365/jobs", false, S_ADMIN, api_h_m365_job_start},
        {M_GET, "/api/v1/m365/jobs/{}", false, S_ADMIN, api_h_m365_job_get},
        {M_GET, "/api/v1/m365/jobs/{}/script", false, S_ADMIN, api_h_m365_job_script},
        {M_POST, "/api/v1/m365/jobs/{}/{}", false, S_ADMIN, api_h_m365_job_action},
};

static const char *
api_method_name(int m)
{
	switch (m) {
	case M_GET:
		return "GET";
	case M_POST:
		return "POST";
	case M_PUT:
		return "PUT";
	case M_DELETE:
		return "DELETE";
	case M_PATCH:
		return "PATCH";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	default:
		return "?";
	}
}

/* --- small helpers --- */

int64_t
api_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *
api_str(const char *s)
{
	json_t *j;
	char *copy;

	if (s == NULL)
		s = "";
	if ((j = json_string(s)) != NULL)
		return j;
	copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_string("");
}

void
api_security_headers(struct evhttp_request *req, bool sandbox)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Security-Policy", sandbox ? API_CSP "; sandbox" : API_CSP);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
}

/* An attachment (a download) is sandboxed as well, should a browser render it. */
static void
api_common_headers(struct api_req *r, const char *type, bool attachment)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	api_security_headers(r->req, attachment);
}

void
api_reply(struct api_req *r, int code, json_t *obj)
{
	struct evbuffer *buf = evbuffer_new();
	char *text;

	if (obj == NULL) {
		/* a json_pack() refused its input: a bug, answered rather than crashed on */
		log_error("event=api_reply_failed code=%d", code);
		obj = json_pack("{s:s}", "error", "the answer could not be built");
		code = 500;
	}
	if ((text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII)) == NULL)
		fatalx("json_dumps failed");
	evbuffer_add(buf, text, strlen(text));
	evbuffer_add(buf, "\n", 1);
	free(text);
	json_decref(obj);
	api_common_headers(r, "application/json", false);
	evhttp_send_reply(r->req, code, NULL, buf);
	evbuffer_free(buf);
	r->req = NULL; /* answered */
}

void
api_reply_raw(struct api_req *r, int code, const char *type, const void *p, size_t n,
              const char *disposition)
{
	struct evbuffer *buf = evbuffer_new();

	evbuffer_add(buf, p, n);
	api_common_headers(r, type, disposition != NULL);
	if (disposition != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Disposition",
		                  disposition);
	evhttp_send_reply(r->req, code, NULL, buf);
	evbuffer_free(buf);
	r->req = NULL;
}

void
api_error(struct api_req *r, int code, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:o}", "error", api_str(msg));
	if (field != NULL)
		json_object_set_new(o, "field", api_str(field));
	api_reply(r, code, o);
}

void
api_store_error(struct api_req *r, enum store_status st)
{
	log_error("event=api_store_error status=\"%s\" reason=\"%s\"", store_status_str(st),
	          st == STORE_ERROR ? store_errmsg(r->a->store) : "");
	api_error(r, 500, NULL, "the store failed: %s", store_status_str(st));
}

const char *
api_query(struct api_req *r, const char *name)
{
	return r->query ? evhttp_find_header(r->query, name) : NULL;
}

int
api_body_str(struct api_req *r, const char *name, const char **out)
{
	json_t *v = json_object_get(r->body, name);

	if (v == NULL)
		return 0;
	if (!json_is_string(v)) {
		api_error(r, 400, name, "'%s' must be a string", name);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int
api_body_bool(struct api_req *r, const char *name, bool *out)
{
	json_t *v = json_object_get(r->body, name);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		api_error(r, 400, name, "'%s' must be true or false", name);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int
api_body_int(struct api_req *r, const char *name, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(r->body, name);

	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		api_error(r, 400, name, "'%s' must be an integer from %" PRId64 " to %" PRId64,
		          name, min, max);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

void
api_audit(struct api_req *r, const char *action, const char *target)
{
	struct store_audit e = {
	        .time_ms = api_now_ms(),
	        .who = r->auth.ok ? r->auth.who : "anonymous",
	        .action = action,
	        .target = target ? target : "",
	        .addr = r->addr,
	};
	char tq[128];
	enum store_status st;

	if (strlen(e.target) > STORE_TARGET_MAX)
		e.target = "(too long)";
	if ((st = store_audit_add(r->a->store, &e)) != STORE_OK)
		log_error("event=audit_failed action=%s status=\"%s\"", action,
		          store_status_str(st));
	log_info("event=audit who=%s action=%s target=%s addr=%s", e.who, action,
	         log_quote(tq, sizeof(tq), e.target, strlen(e.target)), r->addr);
}

void
api_audit_system(struct api *a, const char *action, const char *target)
{
	struct store_audit e = {
	        .time_ms = api_now_ms(),
	        .who = "system",
	        .action = action,
	        .target = target,
	        .addr = "",
	};

	if (store_audit_add(a->store, &e) != STORE_OK)
		log_error("event=audit_failed action=%s", action);
}

void
api_policy_changed(struct api_req *r)
{
	struct api *a = r->a;
	struct timespec until;
	uint64_t gen;

	if (a->deps.policy_changed == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	gen = ++a->pol_asked;
	pthread_mutex_unlock(&a->lock);
	a->deps.policy_changed(a->deps.arg);
	/* read-your-writes: the next request sees the change (or its refusal is logged) */
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += API_POLICY_WAIT_MS / 1000;
	pthread_mutex_lock(&a->lock);
	while (a->pol_done < gen)
		if (pthread_cond_timedwait(&a->pol_cond, &a->lock, &until) == ETIMEDOUT) {
			log_warn("event=policy_rebuild_slow note=\"answered before the rebuild "
			         "ended\"");
			break;
		}
	pthread_mutex_unlock(&a->lock);
}

uint64_t
api_policy_rebuild_begin(struct api *a)
{
	uint64_t gen;

	if (a == NULL)
		return 0;
	pthread_mutex_lock(&a->lock);
	gen = a->pol_asked;
	pthread_mutex_unlock(&a->lock);
	return gen;
}

void
api_policy_rebuild_end(struct api *a, uint64_t gen)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	if (gen > a->pol_done)
		a->pol_done = gen;
	pthread_cond_broadcast(&a->pol_cond);
	pthread_mutex_unlock(&a->lock);
}

const char *
api_pattern_check(const char *pattern)
{
	struct mailaddr ma;
	char buf[STORE_PATTERN_MAX + 2];

	if (pattern == NULL || pattern[0] == '\0')
		return "is empty";
	if (strlen(pattern) > STORE_PATTERN_MAX)
		return "is too long";
	if (pattern[0] == '@') {
		/* @domain: check the domain as the one address parser sees it */
		snprintf(buf, sizeof(buf), "x%s", pattern);
		pattern = buf;
	}
	if (mailaddr_parse(pattern, strlen(pattern), MAILADDR_F_NO_ANGLES | MAILADDR_F_SMTPUTF8,
	                   &ma, NULL) != MAILADDR_OK ||
	    ma.is_null || ma.literal || strchr(ma.domain, '.') == NULL)
		return "is not an address or @domain";
	return NULL;
}

/* --- authentication --- */

static void
api_unauthorized(struct api_req *r, const char *why)
{
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate",
	                  "Bearer realm=\"moat\"");
	api_error(r, 401, NULL, "%s", why);
}

/* The value of cookie name in a Cookie header (RFC 6265 5.4), into out. */
static bool
api_cookie(const char *header, const char *name, char *out, size_t outsize)
{
	size_t nlen = strlen(name);
	const char *p = header;

	while (p && *p) {
		const char *end;

		while (*p == ' ' || *p == ';')
			p++;
		end = strchr(p, ';');
		if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t vlen;

			p += nlen + 1;
			vlen = end ? (size_t)(end - p) : strlen(p);
			if (vlen >= outsize)
				return false;
			memcpy(out, p, vlen);
			out[vlen] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

/* Fill r->auth from a bearer token or the session cookie; false: 401 sent. */
static bool
api_authenticate(struct api_req *r)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(r->req);
	const char *authz = evhttp_find_header(h, "Authorization");
	const char *cookie = evhttp_find_header(h, "Cookie");
	char sid[128];

	if (authz != NULL) {
		unsigned char hash[STORE_SHA256_LEN];
		struct store_token t;
		enum store_status st;
		int64_t now = api_now_ms();

		if (strncasecmp(authz, "Bearer ", 7) != 0) {
			api_unauthorized(r, "Authorization: only Bearer tokens are accepted");
			return false;
		}
		authz += 7;
		while (*authz == ' ')
			authz++;
		if (api_token_hash(authz, hash) < 0) {
			api_unauthorized(r, "the bearer token is not a moat token");
			return false;
		}
		st = store_token_find(r->a->store, hash, &t);
		if (st == STORE_NOT_FOUND) {
			api_unauthorized(r, "unknown or revoked token");
			return false;
		}
		if (st != STORE_OK) {
			api_store_error(r, st);
			return false;
		}
		if (now - t.last_used_ms >= API_TOKEN_TOUCH_MS)
			store_token_touch(r->a->store, t.id, now);
		r->auth.ok = true;
		r->auth.scopes = t.scopes;
		str_copy(r->auth.token, t.id, sizeof(r->auth.token));
		snprintf(r->auth.who, sizeof(r->auth.who), "token:%s", t.id);
		return true;
	}
	if (cookie != NULL && api_cookie(cookie, "moat_session", sid, sizeof(sid))) {
		if (api_session_find(r->a, sid, &r->auth))
			return true;
		api_unauthorized(r, "the session has ended: log in again");
		return false;
	}
	api_unauthorized(r, "credentials required: a bearer token or a session");
	return false;
}

/* --- dispatch --- */

/* Split path into decoded segments; -1 if it cannot be one of ours. */
static int
api_split(const char *path, char segs[API_SEGMENTS_MAX][API_ARG_MAX + 1], size_t *n)
{
	const char *p = path;

	*n = 0;
	if (*p != '/')
		return -1;
	while (*p == '/') {
		const char *end;
		size_t len;
		char *dec;

		p++;
		end = strchr(p, '/');
		len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 && end == NULL)
			break; /* a trailing slash */
		if (*n == API_SEGMENTS_MAX || len > API_ARG_MAX * 3)
			return -1;
		{
			char raw[API_ARG_MAX * 3 + 1];

			memcpy(raw, p, len);
			raw[len] = '\0';
			if ((dec = evhttp_uridecode(raw, 0, &len)) == NULL)
				return -1;
		}
		if (len > API_ARG_MAX || memchr(dec, '\0', len) != NULL) {
			free(dec);
			return -1;
		}
		memcpy(segs[*n], dec, len + 1);
		free(dec);
		(*n)++;
		p += end ? (size_t)(end - p) : strlen(p);
	}
	return 0;
}

/* Does the route's path match the segments? Fills args. */
static bool
api_route_match(const char *pattern, char segs[API_SEGMENTS_MAX][API_ARG_MAX + 1], size_t nsegs,
                const char **args, size_t *nargs)
{
	const char *p = pattern + 1;
	size_t i = 0;

	*nargs = 0;
	while (*p) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (i == nsegs)
			return false;
		if (len == 2 && memcmp(p, "{}", 2) == 0) {
			if (segs[i][0] == '\0' || *nargs == API_PATH_ARGS)
				return false;
			args[(*nargs)++] = segs[i];
		} else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
			return false;
		}
		i++;
		p += len;
		if (*p == '/')
			p++;
	}
	return i == nsegs;
}

/* Is this path one of the route table's, whatever the method? */
static bool
api_route_known(char segs[API_SEGMENTS_MAX][API_ARG_MAX + 1], size_t nsegs)
{
	const char *args[API_PATH_ARGS];
	size_t nargs;

	for (size_t i = 0; i < nitems(api_routes); i++)
		if (api_route_match(api_routes[i].path, segs, nsegs, args, &nargs))
			return true;
	return false;
}

/* Under /api/: JSON answers, never the portal. */
static bool
api_path_is_api(const char *path)
{
	return strcmp(path, "/api") == 0 || strncmp(path, "/api/", 5) == 0;
}

static bool
api_parse_body(struct api_req *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;

	if (len == 0) {
		r->body = json_object();
		return true;
	}
	r->body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES,
	                     &jerr);
	if (r->body == NULL) {
		api_error(r, 400, "body", "the body is not JSON: %s (at %d:%d)", jerr.text,
		          jerr.line, jerr.column);
		return false;
	}
	if (!json_is_object(r->body)) {
		api_error(r, 400, "body", "the body must be a JSON object");
		return false;
	}
	return true;
}

static void
api_peer(struct api_req *r)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
	char *host = NULL;
	ev_uint16_t port = 0;

	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &host, &port);
	str_copy(r->addr, host ? host : "", sizeof(r->addr));
}

static void
api_http_cb(struct evhttp_request *req, void *arg)
{
	struct api *a = arg;
	struct api_req r = {.a = a, .req = req, .method = (int)evhttp_request_get_command(req)};
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	static char segs[API_SEGMENTS_MAX][API_ARG_MAX + 1]; /* API thread only */
	const struct api_route *route = NULL;
	struct evkeyvalq q;
	char allow[64] = "";
	size_t nsegs = 0;
	bool path_known = false, split_ok;

	TAILQ_INIT(&q);
	pthread_mutex_lock(&a->lock);
	r.cfg = config_ref(a->cfg);
	r.pol = policy_ref(a->pol);
	pthread_mutex_unlock(&a->lock);
	evhttp_set_max_body_size(a->http, (ev_ssize_t)r.cfg->admin_request_max);
	api_peer(&r);

	split_ok = path != NULL && api_split(path, segs, &nsegs) == 0;
	if (path != NULL && !api_path_is_api(path) && !(split_ok && api_route_known(segs, nsegs))) {
		api_portal_serve(&r, path); /* the portal's files, or a text/plain 404 */
		goto done;
	}
	if (!split_ok) {
		api_error(&r, 404, NULL, "no such resource");
		goto done;
	}
	for (size_t i = 0; i < nitems(api_routes); i++) {
		const char *args[API_PATH_ARGS];
		size_t nargs;

		if (!api_route_match(api_routes[i].path, segs, nsegs, args, &nargs))
			continue;
		path_known = true;
		if (api_routes[i].method != r.method) {
			size_t len = strlen(allow);

			snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "",
			         api_method_name(api_routes[i].method));
			continue;
		}
		route = &api_routes[i];
		memcpy(r.args, args, sizeof(args));
		r.nargs = nargs;
		break;
	}
	if (route == NULL) {
		if (!path_known) {
			api_error(&r, 404, NULL, "no such resource");
		} else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
			api_error(&r, 405, NULL, "method %s not allowed here (allowed: %s)",
			          api_method_name(r.method), allow);
		}
		goto done;
	}
	if (query != NULL && evhttp_parse_query_str(query, &q) < 0) {
		api_error(&r, 400, "query", "the query string is malformed");
		goto done;
	}
	r.query = &q;
	if (!route->open) {
		if (!api_authenticate(&r))
			goto done;
		if (r.auth.session && r.method != M_GET) {
			const char *tok = evhttp_find_header(evhttp_request_get_input_headers(req),
			                                     "X-CSRF-Token");

			if (tok == NULL || !api_session_csrf_ok(a, &r.auth, tok)) {
				api_error(&r, 403, "X-CSRF-Token",
				          "%s: a session's changes need its CSRF token in "
				          "X-CSRF-Token",
				          tok == NULL ? "missing CSRF token" : "wrong CSRF token");
				goto done;
			}
		}
		if ((r.auth.scopes & route->scope) != route->scope) {
			char need[64];

			api_token_scopes_str(route->scope & ~r.auth.scopes, need, sizeof(need));
			api_error(&r, 403, "scope", "this needs the '%s' scope", need);
			goto done;
		}
	}
	if (r.method != M_GET && !api_parse_body(&r))
		goto done;
	if (r.body == NULL)
		r.body = json_object();
	route->fn(&r);
done:
	if (r.req != NULL) /* a handler that forgot to answer: a bug, not a hang */
		api_error(&r, 500, NULL, "no answer");
	evhttp_clear_headers(&q);
	json_decref(r.body);
	policy_unref(r.pol);
	config_unref(r.cfg);
}

/* --- TLS --- */

static struct bufferevent *
api_bevcb(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                      BEV_OPT_CLOSE_ON_FREE);
}

static SSL_CTX *
api_tls_ctx(const struct config *c, char *err, size_t errsize)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errsize, "admin TLS: cannot create a context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->admin_tls_cert) != 1) {
		snprintf(err, errsize, "admin_tls_cert %s: cannot load it", c->admin_tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx,
	                                c->admin_tls_key[0] ? c->admin_tls_key : c->admin_tls_cert,
	                                SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errsize, "admin_tls_key %s: cannot load it or it does not match",
		         c->admin_tls_key);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* --- the thread --- */

/*
 * Every minute, or every half retention when that is shorter (a retention
 * of seconds, in tests, is kept to within a second).
 */
static void
api_purge_interval(struct api *a, struct timeval *tv)
{
	uint64_t ms = (uint64_t)API_PURGE_EVERY_S * 1000;

	pthread_mutex_lock(&a->lock);
	if (a->cfg->quarantine_retention / 2 < ms)
		ms = a->cfg->quarantine_retention / 2;
	if (a->cfg->tracking_retention / 2 < ms)
		ms = a->cfg->tracking_retention / 2;
	pthread_mutex_unlock(&a->lock);
	if (ms < 1000)
		ms = 1000;
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static void
api_purge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *a = arg;
	bool more = false;
	struct timeval tv = {0, 0};

	api_purge_step(a, &more);
	if (!more) /* else the next step on the next loop turn, after waiting requests */
		api_purge_interval(a, &tv);
	evtimer_add(a->ev_purge, &tv);
}

static void *
api_main(void *arg)
{
	struct api *a = arg;

	event_base_dispatch(a->base);
	return NULL;
}

struct api *
api_new(struct config *cfg, struct policy *pol, char *err, size_t errsize)
{
	struct api *a = xcalloc(1, sizeof(*a));

	pthread_mutex_init(&a->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->pol_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	a->cfg = config_ref(cfg);
	a->pol = pol ? policy_ref(pol) : NULL; /* moatd builds it after binding */
	if ((a->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if ((a->http = evhttp_new(a->base)) == NULL)
		fatalx("evhttp_new failed");
	for (size_t i = 0; i < cfg->admin_listen.n; i++) {
		const struct config_listen *l = &cfg->admin_listen.addr[i];
		int one = 1, fd;

		if (a->nfds == nitems(a->fds))
			break;
		fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(err, errsize, "admin_listen %s: %s", l->text, strerror(errno));
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (l->ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)&l->ss, l->len) < 0 || listen(fd, 128) < 0) {
			snprintf(err, errsize, "admin_listen %s: %s", l->text, strerror(errno));
			close(fd);
			goto fail;
		}
		a->fds[a->nfds++] = fd;
		log_info("event=admin_listen addr=%s", l->text);
	}
	if (cfg->admin_tls_cert[0] != '\0' && (a->tls = api_tls_ctx(cfg, err, errsize)) == NULL)
		goto fail;
	return a;
fail:
	api_free(a);
	return NULL;
}

/* m365_deps.relay_key: the key delivery stamps on mail to domain. */
static void
api_relay_key(void *arg, const struct policy *pol, const char *domain, char *out, size_t size)
{
	struct api *a = arg;

	scan_relay_key(a->deps.scan_env, pol, domain, out, size);
}

int
api_start(struct api *a, const struct api_deps *deps, char *err, size_t errsize)
{
	struct timeval first;

	if (a->pol == NULL) {
		snprintf(err, errsize, "no policy (api_reconfigure() first)");
		return -1;
	}
	a->deps = *deps;
	a->started_ms = api_now_ms();
	if ((a->store = store_open(deps->store_url, err, errsize)) == NULL)
		return -1;
	if (api_first_user(a, err, errsize) < 0)
		return -1;
	a->sessions = api_sessions_new();
	a->throttle = api_throttle_new();
	a->m365 = m365_new(&(struct m365_deps){.store_url = deps->store_url,
	                                       .relay_key = api_relay_key,
	                                       .arg = a},
	                   a->cfg, a->pol);
	m365_recover(a->m365, a->store);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
	                                            EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(a->http, (ev_ssize_t)a->cfg->admin_request_max);
	evhttp_set_max_headers_size(a->http, 64 * 1024);
	evhttp_set_timeout(a->http, 60);
	evhttp_set_gencb(a->http, api_http_cb, a);
	if (a->tls != NULL)
		evhttp_set_bevcb(a->http, api_bevcb, a->tls);
	for (size_t i = 0; i < a->nfds; i++) {
		if (evhttp_accept_socket_with_handle(a->http, a->fds[i]) == NULL) {
			snprintf(err, errsize, "admin listener: evhttp cannot take it");
			return -1;
		}
		a->fds[i] = -1; /* evhttp owns it now */
	}
	a->ev_purge = evtimer_new(a->base, api_purge_cb, a);
	api_purge_interval(a, &first);
	evtimer_add(a->ev_purge, &first);
	if (pthread_create(&a->thread, NULL, api_main, a) != 0) {
		snprintf(err, errsize, "cannot start the admin API thread");
		return -1;
	}
	a->started = true;
	return 0;
}

void
api_reconfigure(struct api *a, struct config *cfg, struct policy *pol)
{
	struct config *oc;
	struct policy *op;

	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	oc = a->cfg;
	op = a->pol;
	a->cfg = config_ref(cfg);
	a->pol = policy_ref(pol);
	pthread_mutex_unlock(&a->lock);
	config_unref(oc);
	policy_unref(op);
	m365_reconfigure(a->m365, cfg, pol);
}

void
api_free(struct api *a)
{
	if (a == NULL)
		return;
	if (a->started) {
		event_base_loopexit(a->base, NULL);
		pthread_join(a->thread, NULL);
	}
	m365_free(a->m365); /* after the API thread, which calls into it */
	for (size_t i = 0; i < a->nfds; i++)
		if (a->fds[i] >= 0)
			close(a->fds[i]);
	if (a->http)
		evhttp_free(a->http);
	if (a->ev_purge)
		event_free(a->ev_purge);
	api_sessions_free(a->sessions);
	api_throttle_free(a->throttle);
	store_close(a->store);
	SSL_CTX_free(a->tls);
	event_base_free(a->base);
	config_unref(a->cfg);
	policy_unref(a->pol);
	pthread_cond_destroy(&a->pol_cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
