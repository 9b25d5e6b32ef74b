/*
 * api_auth.c - the portal's users: argon2id password hashes, sessions,
 * CSRF tokens, login throttling, and the first run's admin user.
 *
 * Passwords: argon2id (RFC 9106) with OWASP's second recommended cost,
 * m = 19 MiB, t = 2, p = 1: about 40-60 ms a login on the reference
 * machine, where RFC 9106's t = 3, m = 64 MiB took 300 ms a hash, all of
 * it on the API loop (docs/PERFORMANCE.md, bench/login.sh). The encoded
 * hash carries its cost, so raising it later needs no migration. An
 * unknown user name costs a verification against a dummy hash too, so
 * that timing does not tell which names exist.
 *
 * Sessions live in memory on the API thread (a restart logs everyone
 * out): the cookie holds 256 random bits, the table only their SHA-256,
 * so a memory dump shows no usable cookie. A session ends admin_session_idle
 * after its last request, admin_session_max after its login, or at logout.
 * Its CSRF token (also 256 bits) is returned by login and GET
 * /auth/session and must come back in X-CSRF-Token on every change.
 *
 * Throttling: failures are counted per user name and per client address.
 * From the 5th failure of a name (the 20th of an address: one address may
 * be a whole office's proxy) further attempts are refused with 429 and
 * Retry-After for 30 s, doubling with each further failure up to 15
 * minutes; a success clears the name's count. Every failure and every
 * refusal is audited.
 */
#include "api_internal.h"

#include <argon2.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "api_token.h"

#define API_ARGON2_T          2
#define API_ARGON2_M_KIB      19456
#define API_ARGON2_P          1
#define API_SALT_LEN          16
#define API_HASH_LEN          32
#define API_SESSIONS_MAX      1024 /* live sessions; the least recently used goes first */
#define API_SECRET_B64_LEN    43   /* 256 bits, base64url without padding */
#define API_PASSWORD_MIN      10
#define API_PASSWORD_MAX      256
#define API_THROTTLE_MAX      4096
#define API_THROTTLE_USER     5  /* failures of one name before throttling */
#define API_THROTTLE_ADDR     20 /* failures from one address before throttling */
#define API_THROTTLE_FIRST_MS 30000
#define API_THROTTLE_MAX_MS   900000
#define API_THROTTLE_KEEP_MS  3600000 /* a quiet entry is forgotten after this */

struct api_session {
	bool used;
	unsigned char key[32]; /* SHA-256 of the cookie value */
	char user[STORE_USER_MAX + 1];
	char csrf[API_SECRET_B64_LEN + 1];
	uint64_t created_ms, last_ms; /* monotonic */
};

struct api_sessions {
	struct api_session s[API_SESSIONS_MAX];
};

struct api_throttle_entry {
	char key[STORE_USER_MAX + STORE_IP_MAX + 8]; /* "u:NAME", "a:ADDR" */
	unsigned failures;
	uint64_t last_ms, until_ms; /* monotonic */
};

struct api_throttle {
	struct api_throttle_entry e[API_THROTTLE_MAX];
	size_t n;
};

static void
api_sha256(const void *p, size_t n, unsigned char out[32])
{
	unsigned int len = 32;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		fatalx("SHA-256 failed");
}

/* 256 random bits as 43 base64url characters. */
static void
api_secret(char out[API_SECRET_B64_LEN + 1])
{
	static const char b64url[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char rnd[API_SECRET_B64_LEN];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		fatalx("no random bytes");
	/* one character per octet, 6 of its bits: 258 bits */
	for (size_t i = 0; i < API_SECRET_B64_LEN; i++)
		out[i] = b64url[rnd[i] & 63];
	out[API_SECRET_B64_LEN] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
}

/* --- passwords --- */

int
api_password_hash(const char *password, char *out, size_t outsize)
{
	unsigned char salt[API_SALT_LEN];

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		fatalx("no random bytes");
	if (argon2id_hash_encoded(API_ARGON2_T, API_ARGON2_M_KIB, API_ARGON2_P, password,
	                          strlen(password), salt, sizeof(salt), API_HASH_LEN, out,
	                          outsize) != ARGON2_OK)
		return -1;
	return 0;
}

const char *
api_password_check(const char *password)
{
	size_t n = strlen(password);

	if (n < API_PASSWORD_MIN)
		return "is shorter than 10 characters";
	if (n > API_PASSWORD_MAX)
		return "is longer than 256 octets";
	return NULL;
}

static bool
api_password_verify(const char *hash, const char *password)
{
	return argon2id_verify(hash, password, strlen(password)) == ARGON2_OK;
}

/* A hash of nothing anyone knows: unknown names cost what known ones do. */
static const char *
api_dummy_hash(void)
{
	static char dummy[STORE_HASH_MAX + 1];

	if (dummy[0] == '\0') {
		char pw[API_SECRET_B64_LEN + 1];

		api_secret(pw);
		if (api_password_hash(pw, dummy, sizeof(dummy)) < 0)
			fatalx("argon2 failed");
	}
	return dummy;
}

/* --- sessions --- */

struct api_sessions *
api_sessions_new(void)
{
	return xcalloc(1, sizeof(struct api_sessions));
}

void
api_sessions_free(struct api_sessions *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

static void
api_session_limits(struct api *a, uint64_t *idle, uint64_t *max)
{
	pthread_mutex_lock(&a->lock);
	*idle = a->cfg->admin_session_idle;
	*max = a->cfg->admin_session_max;
	pthread_mutex_unlock(&a->lock);
}

static struct api_session *
api_session_lookup(struct api *a, const unsigned char key[32])
{
	for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
		struct api_session *s = &a->sessions->s[i];

		if (s->used && CRYPTO_memcmp(s->key, key, 32) == 0)
			return s;
	}
	return NULL;
}

bool
api_session_find(struct api *a, const char *id, struct api_auth *auth)
{
	unsigned char key[32];
	struct api_session *s;
	uint64_t now = clock_ms(), idle, max;

	api_sha256(id, strlen(id), key);
	if ((s = api_session_lookup(a, key)) == NULL)
		return false;
	api_session_limits(a, &idle, &max);
	if (now - s->last_ms >= idle || now - s->created_ms >= max) {
		log_info("event=session_expired user=%s reason=%s", s->user,
		         now - s->created_ms >= max ? "max" : "idle");
		memset(s, 0, sizeof(*s));
		return false;
	}
	s->last_ms = now;
	auth->ok = true;
	auth->session = true;
	auth->scopes = STORE_SCOPE_ALL; /* users are administrators */
	memcpy(auth->sid, key, 32);
	str_copy(auth->user, s->user, sizeof(auth->user));
	snprintf(auth->who, sizeof(auth->who), "user:%s", s->user);
	return true;
}

bool
api_session_csrf_ok(struct api *a, const struct api_auth *auth, const char *token)
{
	struct api_session *s = api_session_lookup(a, auth->sid);

	return s != NULL && strlen(token) == API_SECRET_B64_LEN &&
	       CRYPTO_memcmp(s->csrf, token, API_SECRET_B64_LEN) == 0;
}

void
api_sessions_drop_user(struct api *a, const char *user, const unsigned char *keep)
{
	for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
		struct api_session *s = &a->sessions->s[i];

		if (s->used && strcmp(s->user, user) == 0 &&
		    (keep == NULL || memcmp(s->key, keep, 32) != 0))
			memset(s, 0, sizeof(*s));
	}
}

/* A new session for user: its cookie value into id. */
static struct api_session *
api_session_new(struct api *a, const char *user, char id[API_SECRET_B64_LEN + 1])
{
	struct api_session *s = NULL, *oldest = NULL;
	uint64_t now = clock_ms(), idle, max;

	api_session_limits(a, &idle, &max);
	for (size_t i = 0; i < API_SESSIONS_MAX; i++) {
		struct api_session *c = &a->sessions->s[i];

		if (c->used && (now - c->last_ms >= idle || now - c->created_ms >= max))
			memset(c, 0, sizeof(*c));
		if (!c->used && s == NULL)
			s = c;
		if (c->used && (oldest == NULL || c->last_ms < oldest->last_ms))
			oldest = c;
	}
	if (s == NULL) {
		log_warn("event=session_evicted user=%s reason=\"%d sessions\"", oldest->user,
		         API_SESSIONS_MAX);
		s = oldest;
	}
	memset(s, 0, sizeof(*s));
	api_secret(id);
	api_sha256(id, strlen(id), s->key);
	api_secret(s->csrf);
	str_copy(s->user, user, sizeof(s->user));
	s->created_ms = s->last_ms = now;
	s->used = true;
	return s;
}

/* --- throttling --- */

struct api_throttle *
api_throttle_new(void)
{
	return xcalloc(1, sizeof(struct api_throttle));
}

void
api_throttle_free(struct api_throttle *t)
{
	free(t);
}

static struct api_throttle_entry *
api_throttle_get(struct api_throttle *t, const char *key, bool create)
{
	uint64_t now = clock_ms();
	struct api_throttle_entry *oldest = NULL;

	for (size_t i = 0; i < t->n; i++) {
		struct api_throttle_entry *e = &t->e[i];

		if (now - e->last_ms > API_THROTTLE_KEEP_MS && now >= e->until_ms) {
			t->e[i--] = t->e[--t->n]; /* forgotten */
			continue;
		}
		if (strcmp(e->key, key) == 0)
			return e;
		if (oldest == NULL || e->last_ms < oldest->last_ms)
			oldest = e;
	}
	if (!create)
		return NULL;
	if (t->n < API_THROTTLE_MAX)
		oldest = &t->e[t->n++];
	memset(oldest, 0, sizeof(*oldest));
	str_copy(oldest->key, key, sizeof(oldest->key));
	oldest->last_ms = now;
	return oldest;
}

/* Milliseconds until key may try again; 0 now. */
static uint64_t
api_throttle_wait(struct api_throttle *t, const char *key)
{
	struct api_throttle_entry *e = api_throttle_get(t, key, false);
	uint64_t now = clock_ms();

	return e != NULL && e->until_ms > now ? e->until_ms - now : 0;
}

static void
api_throttle_fail(struct api_throttle *t, const char *key, unsigned free_failures)
{
	struct api_throttle_entry *e = api_throttle_get(t, key, true);
	uint64_t now = clock_ms();

	e->failures++;
	e->last_ms = now;
	if (e->failures >= free_failures) {
		unsigned shift = e->failures - free_failures;
		uint64_t delay = shift >= 5 ? API_THROTTLE_MAX_MS : API_THROTTLE_FIRST_MS << shift;

		e->until_ms = now + (delay > API_THROTTLE_MAX_MS ? API_THROTTLE_MAX_MS : delay);
	}
}

static void
api_throttle_clear(struct api_throttle *t, const char *key)
{
	struct api_throttle_entry *e = api_throttle_get(t, key, false);

	if (e != NULL)
		*e = t->e[--t->n];
}

/* --- handlers --- */

static void
api_session_cookie(struct api_req *r, const char *value, bool clear)
{
	char *c = xasprintf("moat_session=%s; HttpOnly; SameSite=Strict; Path=/%s%s", value,
	                    r->a->tls ? "; Secure" : "", clear ? "; Max-Age=0" : "");

	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Set-Cookie", c);
	free(c);
}

static json_t *
api_session_json(const struct api_session *s, uint64_t idle, uint64_t max)
{
	uint64_t now = clock_ms();
	int64_t wall = api_now_ms();
	uint64_t left_idle = idle - (now - s->last_ms), left_max = max - (now - s->created_ms);

	return json_pack(
	        "{s:s, s:o, s:s, s:[sss], s:I}", "kind", "session", "user", api_str(s->user),
	        "csrf_token", s->csrf, "scopes", "read", "operate", "admin", "expires_ms",
	        (json_int_t)(wall + (int64_t)(left_idle < left_max ? left_idle : left_max)));
}

void
api_h_login(struct api_req *r)
{
	const char *user = NULL, *password = NULL;
	char ukey[STORE_USER_MAX + 8], akey[STORE_IP_MAX + 8], id[API_SECRET_B64_LEN + 1];
	struct store_user u;
	enum store_status st;
	uint64_t wait, idle, max;
	struct api_session *s;
	bool ok;

	if (api_body_str(r, "user", &user) < 0 || api_body_str(r, "password", &password) < 0)
		return;
	if (user == NULL || user[0] == '\0' || strlen(user) > STORE_USER_MAX) {
		api_error(r, 400, "user", "'user' (a user name) is missing or too long");
		return;
	}
	if (password == NULL || strlen(password) > API_PASSWORD_MAX) {
		api_error(r, 400, "password", "'password' is missing or too long");
		return;
	}
	snprintf(ukey, sizeof(ukey), "u:%s", user);
	snprintf(akey, sizeof(akey), "a:%s", r->addr);
	wait = api_throttle_wait(r->a->throttle, ukey);
	if (wait == 0)
		wait = api_throttle_wait(r->a->throttle, akey);
	if (wait > 0) {
		char ra[32];

		api_audit(r, "auth.login_throttled", user);
		snprintf(ra, sizeof(ra), "%llu", (unsigned long long)(wait + 999) / 1000);
		evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", ra);
		api_error(r, 429, NULL, "too many failed logins: try again in %s s", ra);
		return;
	}
	st = store_user_get(r->a->store, user, &u);
	if (st != STORE_OK && st != STORE_NOT_FOUND) {
		api_store_error(r, st);
		return;
	}
	ok = api_password_verify(st == STORE_OK ? u.hash : api_dummy_hash(), password) &&
	     st == STORE_OK;
	OPENSSL_cleanse(&u.hash, sizeof(u.hash));
	if (!ok) {
		api_throttle_fail(r->a->throttle, ukey, API_THROTTLE_USER);
		api_throttle_fail(r->a->throttle, akey, API_THROTTLE_ADDR);
		api_audit(r, "auth.login_failed", user);
		api_error(r, 401, NULL, "wrong user name or password");
		return;
	}
	api_throttle_clear(r->a->throttle, ukey);
	s = api_session_new(r->a, u.name, id);
	r->auth.ok = true;
	snprintf(r->auth.who, sizeof(r->auth.who), "user:%s", u.name);
	api_audit(r, "auth.login", u.name);
	api_session_limits(r->a, &idle, &max);
	api_session_cookie(r, id, false);
	OPENSSL_cleanse(id, sizeof(id));
	api_reply(r, 200, api_session_json(s, idle, max));
}

void
api_h_logout(struct api_req *r)
{
	struct api_session *s;

	if (!r->auth.session) {
		api_error(r, 400, NULL,
		          "logout ends a portal session; a token is revoked with "
		          "DELETE /api/v1/tokens/{id}");
		return;
	}
	if ((s = api_session_lookup(r->a, r->auth.sid)) != NULL)
		memset(s, 0, sizeof(*s));
	api_audit(r, "auth.logout", r->auth.user);
	api_session_cookie(r, "", true);
	api_reply(r, 200, json_pack("{s:b}", "ok", 1));
}

void
api_h_session(struct api_req *r)
{
	char scopes[64];
	json_t *o, *arr;

	if (r->auth.session) {
		struct api_session *s = api_session_lookup(r->a, r->auth.sid);
		uint64_t idle, max;

		api_session_limits(r->a, &idle, &max);
		if (s != NULL) {
			api_reply(r, 200, api_session_json(s, idle, max));
			return;
		}
	}
	arr = json_array();
	api_token_scopes_str(r->auth.scopes, scopes, sizeof(scopes));
	{
		char *cursor = scopes, *tok;

		while ((tok = strsep(&cursor, ",")) != NULL)
			if (*tok)
				json_array_append_new(arr, json_string(tok));
	}
	o = json_pack("{s:s, s:s, s:o}", "kind", "token", "token_id", r->auth.token, "scopes", arr);
	api_reply(r, 200, o);
}

/* --- first run --- */

static int
api_user_count_cb(void *arg, const struct store_user *u)
{
	(*(size_t *)arg)++;
	return 1; /* one is enough */
}

int
api_first_user(struct api *a, char *err, size_t errsize)
{
	struct store_user u = {.name = "admin"};
	char password[API_SECRET_B64_LEN + 1];
	size_t n = 0;
	enum store_status st;

	if ((st = store_user_list(a->store, api_user_count_cb, &n)) != STORE_OK) {
		snprintf(err, errsize, "store: users: %s", store_errmsg(a->store));
		return -1;
	}
	if (n > 0)
		return 0;
	api_secret(password);
	password[24] = '\0'; /* 24 characters of 64 symbols: 144 bits */
	if (api_password_hash(password, u.hash, sizeof(u.hash)) < 0) {
		snprintf(err, errsize, "argon2 failed");
		return -1;
	}
	u.created_ms = api_now_ms();
	if ((st = store_user_add(a->store, &u)) != STORE_OK && st != STORE_ALREADY) {
		snprintf(err, errsize, "store: first user: %s", store_errmsg(a->store));
		return -1;
	}
	if (st == STORE_OK) {
		fprintf(stderr,
		        "moatd: first run: admin user 'admin', password %s (shown once: log in "
		        "and change it)\n",
		        password);
		log_info("event=first_run user=admin password=%s note=\"shown once, not stored: "
		         "log in and change it\"",
		         password);
		api_audit_system(a, "user.create", "admin");
	}
	OPENSSL_cleanse(password, sizeof(password));
	return 0;
}
