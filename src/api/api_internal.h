/*
 * api_internal.h - what the admin API's files share: struct api (the
 * server, on its own thread), one request as its handlers see it, the
 * reply helpers and the route table's handlers.
 *
 * api.c is the manager (listeners, thread, routing, authentication,
 * replies, security header fields), api_auth.c sessions, passwords and
 * login throttling, api_quar.c quarantine and tracking, api_admin.c
 * everything else (policy, queue, stats, symbols, users, tokens, audit,
 * configuration), api_portal.c the portal's static files.
 */
#ifndef MOAT_API_INTERNAL_H
#define MOAT_API_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../store/store.h"
#include "api.h"

struct evhttp;
struct evhttp_request;
struct event;
struct event_base;
struct evkeyvalq;
struct api_sessions;
struct api_throttle;
struct store_writer;
struct m365;

#define API_PATH_ARGS      3    /* {...} segments in one route */
#define API_ARG_MAX        512  /* octets of one decoded path segment */
#define API_BATCH_MAX      1000 /* ids of one batch action */
#define API_PURGE_BATCH    500  /* expired entries per purge step */
#define API_PURGE_EVERY_S  60
#define API_POLICY_WAIT_MS 5000 /* longest wait for a policy rebuild */

struct api {
	struct config *cfg; /* under lock: swapped by api_reconfigure() */
	struct policy *pol;
	pthread_mutex_t lock;
	/* under lock: policy rebuilds asked for and done (api_policy_changed) */
	uint64_t pol_asked, pol_done;
	pthread_cond_t pol_cond; /* CLOCK_MONOTONIC */

	struct event_base *base;
	struct evhttp *http;
	int fds[16]; /* bound in api_new(), served from api_start() */
	size_t nfds;
	void *tls; /* SSL_CTX *, or NULL for plain HTTP */
	bool started;
	pthread_t thread;

	struct api_deps deps;
	struct store *store; /* the API thread's own connection */
	struct event *ev_purge;
	struct api_sessions *sessions;
	struct api_throttle *throttle;
	struct m365 *m365; /* Microsoft 365 jobs, each on its own thread */
	int64_t started_ms;
};

/* Who is asking, once authenticated. */
struct api_auth {
	bool ok;
	bool session;                       /* a portal session (CSRF applies) */
	unsigned scopes;                    /* STORE_SCOPE_* */
	char who[STORE_WHO_MAX + 1];        /* "user:NAME", "token:ID" */
	char user[STORE_USER_MAX + 1];      /* session: the user name */
	unsigned char sid[32];              /* session: its key */
	char token[STORE_TOKEN_ID_MAX + 1]; /* token: its id */
};

struct api_req {
	struct api *a;
	struct evhttp_request *req;
	int method;                      /* enum evhttp_cmd_type */
	const char *args[API_PATH_ARGS]; /* decoded {...} segments */
	size_t nargs;
	struct evkeyvalq *query; /* decoded ?a=b&... */
	json_t *body;            /* the parsed body (an object; {} when empty) */
	char addr[STORE_IP_MAX + 1];
	struct api_auth auth;
	/* references for the duration of the request */
	struct config *cfg;
	struct policy *pol;
};

/* --- replies (api.c) --- */

/*
 * The Content-Security-Policy of every answer of the admin listener: the
 * portal's own scripts, styles, images and fonts only, no inline code, no
 * framing. The JSON answers carry it too (a JSON body opened as a page
 * runs nothing).
 */
#define API_CSP                                                                                    \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "        \
	"base-uri 'none'"

/*
 * The security header fields every answer carries (CSP, nosniff, no
 * framing, no referrer, its own browsing context group); sandbox: the CSP
 * also sandboxes (downloads).
 */
void api_security_headers(struct evhttp_request *req, bool sandbox);

/* Send obj (reference taken) with status code. */
void api_reply(struct api_req *r, int code, json_t *obj);
/* {"error": message, "field": field} with status code; field may be NULL. */
void api_error(struct api_req *r, int code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* A 500 for a failed store call, logged. */
void api_store_error(struct api_req *r, enum store_status st);
/*
 * Send raw octets with a content type and a Content-Disposition (may be
 * NULL; a download's CSP also sandboxes it).
 */
void api_reply_raw(struct api_req *r, int code, const char *type, const void *p, size_t n,
                   const char *disposition);
/* A JSON string for text that may not be UTF-8: invalid octets become '?'. */
json_t *api_str(const char *s);
/* Record a state change: who, action, target, the client's address. */
void api_audit(struct api_req *r, const char *action, const char *target);
/* The same for a change without a request ("system"). */
void api_audit_system(struct api *a, const char *action, const char *target);
/* Wall-clock milliseconds. */
int64_t api_now_ms(void);
/* A query parameter, or NULL. */
const char *api_query(struct api_req *r, const char *name);
/*
 * Fields of the body: a string / bool / integer, absent -> *out unchanged
 * and 0; wrong type -> a 400 naming it is sent and -1.
 */
int api_body_str(struct api_req *r, const char *name, const char **out);
int api_body_bool(struct api_req *r, const char *name, bool *out);
int api_body_int(struct api_req *r, const char *name, int64_t min, int64_t max, int64_t *out);
/* Tell moatd that rules or lists changed in the store. */
void api_policy_changed(struct api_req *r);
/* Validate an allow/block pattern (address or @domain): NULL, or why not. */
const char *api_pattern_check(const char *pattern);

/* --- api_auth.c --- */

struct api_sessions *api_sessions_new(void);
void api_sessions_free(struct api_sessions *s);
struct api_throttle *api_throttle_new(void);
void api_throttle_free(struct api_throttle *t);
/*
 * The session whose cookie value is id: fills auth, refreshes its idle
 * time; false when unknown or expired (then it is forgotten).
 */
bool api_session_find(struct api *a, const char *id, struct api_auth *auth);
/* Does token equal the CSRF token of the session of auth? */
bool api_session_csrf_ok(struct api *a, const struct api_auth *auth, const char *token);
/* Forget every session of user (deleted, password changed), but keep (may be NULL). */
void api_sessions_drop_user(struct api *a, const char *user, const unsigned char *keep);
/* argon2id of password into out (STORE_HASH_MAX + 1); -1 on failure. */
int api_password_hash(const char *password, char *out, size_t outsize);
/* A password an administrator may set: NULL, or why not. */
const char *api_password_check(const char *password);
/* First run: create "admin" with a one-time password when the store has no user. */
int api_first_user(struct api *a, char *err, size_t errsize);

void api_h_login(struct api_req *r);
void api_h_logout(struct api_req *r);
void api_h_session(struct api_req *r);

/* --- api_quar.c --- */

void api_h_quar_list(struct api_req *r);
void api_h_quar_get(struct api_req *r);
void api_h_quar_download(struct api_req *r);
void api_h_quar_preview(struct api_req *r);
void api_h_quar_release(struct api_req *r);
void api_h_quar_delete(struct api_req *r);
void api_h_quar_batch(struct api_req *r);
void api_h_track_list(struct api_req *r);
void api_h_track_get(struct api_req *r);
/* Expire what the retention allows, in small steps (the purge timer). */
void api_purge_step(struct api *a, bool *more);

/* --- api_admin.c --- */

void api_h_health(struct api_req *r);
void api_h_metrics(struct api_req *r);
void api_h_stats(struct api_req *r);
void api_h_symbols(struct api_req *r);
void api_h_domains(struct api_req *r);
void api_h_domain_put(struct api_req *r);
void api_h_domain_delete(struct api_req *r);
void api_h_lists_get(struct api_req *r);
void api_h_lists_add(struct api_req *r);
void api_h_lists_delete(struct api_req *r);
void api_h_rules_list(struct api_req *r);
void api_h_rule_get(struct api_req *r);
void api_h_rule_put(struct api_req *r);
void api_h_rule_delete(struct api_req *r);
void api_h_queue_list(struct api_req *r);
void api_h_queue_get(struct api_req *r);
void api_h_queue_action(struct api_req *r);
void api_h_tokens_list(struct api_req *r);
void api_h_token_create(struct api_req *r);
void api_h_token_delete(struct api_req *r);
void api_h_users_list(struct api_req *r);
void api_h_user_create(struct api_req *r);
void api_h_user_delete(struct api_req *r);
void api_h_user_password(struct api_req *r);
void api_h_audit(struct api_req *r);
void api_h_config_export(struct api_req *r);
void api_h_config_import(struct api_req *r);
void api_h_settings_list(struct api_req *r);
void api_h_setting_put(struct api_req *r);
void api_h_setting_delete(struct api_req *r);

/* --- api_portal.c --- */

/*
 * A request outside /api/ that no route took: the portal's file for path
 * (the raw path of the URI), or a text/plain 404 (405 for a method other
 * than GET and HEAD). No credentials: the portal asks the API for its session.
 */
void api_portal_serve(struct api_req *r, const char *path);

/* --- api_m365.c --- */

void api_h_m365_tenant(struct api_req *r);
void api_h_m365_plan(struct api_req *r);
void api_h_m365_script(struct api_req *r);
void api_h_m365_jobs(struct api_req *r);
void api_h_m365_job_start(struct api_req *r);
void api_h_m365_job_get(struct api_req *r);
void api_h_m365_job_script(struct api_req *r);
void api_h_m365_job_action(struct api_req *r);

#endif
