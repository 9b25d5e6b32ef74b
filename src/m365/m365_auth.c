/*
 * m365_auth.c - signing in to Microsoft Entra ID with the OAuth 2.0 device
 * authorization grant (RFC 8628; ../shared/M365.md 1), and the plain-words
 * explanation of every error of the M365 client.
 *
 * The scope adds "openid profile" to Exchange's so that the token answer
 * carries an OpenID Connect id_token (OpenID Connect Core 1.0) naming the
 * admin (preferred_username, else upn: Exchange's X-AnchorMailbox) and the
 * tenant (tid: InvokeCommand's URL), without a call to Microsoft Graph.
 *
 * Form bodies are application/x-www-form-urlencoded (RFC 6749 4.1.3,
 * appendix B), each value escaped by curl_easy_escape(). The device code
 * and the access token are kept in heap strings that are cleansed when
 * freed, and never written into an error text.
 */
#include "m365_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../common/log.h"
#include "../common/util.h"

#define AUTH_AUTHORITY          "https://login.microsoftonline.com"
#define AUTH_TENANT             "organizations"
#define AUTH_CLIENT_ID          "fb78d390-0c51-40cd-8e17-fdbfab77341b"
#define AUTH_APP_NAME           "Microsoft Exchange REST API Based Powershell"
#define AUTH_SCOPE              "https://outlook.office365.com/.default openid profile"
#define AUTH_DEVICE_GRANT       "urn:ietf:params:oauth:grant-type:device_code"
#define AUTH_INTERVAL           5     /* RFC 8628 3.2: when the answer names none */
#define AUTH_INTERVAL_MAX       600   /* seconds between polls, at most */
#define AUTH_EXPIRES            900   /* seconds a code lives, when the answer says nothing */
#define AUTH_EXPIRES_MAX        86400 /* seconds a code or token lives, at most */
#define M365_POLL_TRANSIENT_MAX 5     /* network or 5xx failures in a row that end a sign-in */
#define AUTH_SLOW_DOWN_S        5     /* RFC 8628 3.5 */
#define AUTH_SECRET_MAX         (64u << 10) /* octets of a device code, token or id_token */
#define AUTH_ID_PAYLOAD_MAX     (16u << 10) /* octets of an id_token's payload segment */

/* --- requests --- */

/* {authority}/{tenant}/oauth2/v2.0/{what}. */
static int
m365_auth_url(const struct m365_endpoint *ep, const char *what, char *buf, size_t size,
              struct m365_error *e)
{
	const char *authority = ep->authority && ep->authority[0] ? ep->authority : AUTH_AUTHORITY;
	const char *tenant = ep->tenant && ep->tenant[0] ? ep->tenant : AUTH_TENANT;
	char tail[64];

	snprintf(tail, sizeof(tail), "/oauth2/v2.0/%s", what);
	return m365_http_url(buf, size, authority, "/", tenant, tail, e);
}

static const char *
m365_auth_client_id(const struct m365_endpoint *ep)
{
	return ep->client_id && ep->client_id[0] ? ep->client_id : AUTH_CLIENT_ID;
}

/*
 * "k1=v1&k2=v2" of the NULL-terminated name/value pairs kv, values escaped;
 * it may hold the device code: free with m365_secret_free().
 */
static char *
m365_auth_form(const char *const *kv)
{
	char *esc[8] = {NULL}, *out, *o;
	size_t n = 0, len = 0;

	for (; kv[2 * n] != NULL; n++) {
		if (n == nitems(esc))
			fatalx("m365_auth_form: too many fields");
		if ((esc[n] = curl_easy_escape(NULL, kv[2 * n + 1], 0)) == NULL)
			fatalx("curl_easy_escape: out of memory");
		len += strlen(kv[2 * n]) + 1 + strlen(esc[n]) + 1;
	}
	o = out = xmalloc(len + 1);
	for (size_t i = 0; i < n; i++) {
		size_t klen = strlen(kv[2 * i]), vlen = strlen(esc[i]);

		if (i > 0)
			*o++ = '&';
		memcpy(o, kv[2 * i], klen);
		o += klen;
		*o++ = '=';
		memcpy(o, esc[i], vlen);
		o += vlen;
		OPENSSL_cleanse(esc[i], vlen);
		curl_free(esc[i]);
	}
	*o = '\0';
	return out;
}

/*
 * POST the form kv to {authority}/{tenant}/oauth2/v2.0/{what}; *root gets
 * the answer's JSON object, NULL when it has none. 0, or -1 with e.
 */
static int
m365_auth_post(const struct m365_endpoint *ep, const char *what, const char *const *kv,
               long *status, json_t **root, struct m365_error *e)
{
	static const char *const headers[] = {
	        "Content-Type: application/x-www-form-urlencoded",
	        "Accept: application/json",
	        NULL,
	};
	struct m365_http_answer a;
	char url[M365_URL_MAX];
	char *form;
	int rc;

	*root = NULL;
	if (m365_auth_url(ep, what, url, sizeof(url), e) < 0)
		return -1;
	form = m365_auth_form(kv);
	rc = m365_http_post(ep, url, headers, form, strlen(form), &a, e);
	m365_secret_free(form);
	if (rc < 0)
		return -1;
	*status = a.status;
	e->http_status = a.status;
	if (a.len > 0) {
		*root = json_loadb(a.body, a.len, 0, NULL);
		if (*root != NULL && !json_is_object(*root)) {
			json_decref(*root);
			*root = NULL;
		}
	}
	m365_http_answer_clear(&a);
	return 0;
}

/* --- answers --- */

/* A string member, or NULL. */
static const char *
m365_auth_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/*
 * An integer member ("expires_in": 900; a decimal string is accepted too)
 * into *out within [min, max]; dflt when absent. -1 when present but not so.
 */
static int
m365_auth_int(json_t *obj, const char *key, int64_t dflt, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	uint64_t u;

	if (v == NULL || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (json_is_integer(v))
		*out = json_integer_value(v);
	else if (json_is_string(v) &&
	         parse_u64(json_string_value(v), json_string_length(v), (uint64_t)max, &u) == 0)
		*out = (int64_t)u;
	else
		return -1;
	return *out >= min && *out <= max ? 0 : -1;
}

/* Copy a string member that must fit and be printable into dst; -1 if not. */
static int
m365_auth_copy(json_t *obj, const char *key, bool required, char *dst, size_t size)
{
	const char *s = m365_auth_str(obj, key);

	dst[0] = '\0';
	if (s == NULL)
		return required ? -1 : 0;
	if ((required && s[0] == '\0') || strlen(s) >= size || !m365_http_header_safe(s))
		return -1;
	str_copy(dst, s, size);
	return 0;
}

/* A secret string member, copied to the heap; NULL if absent, empty or unusable. */
static char *
m365_auth_secret(json_t *obj, const char *key)
{
	const char *s = m365_auth_str(obj, key);

	if (s == NULL || s[0] == '\0' || strlen(s) > AUTH_SECRET_MAX || !m365_http_header_safe(s) ||
	    strchr(s, ' ') != NULL)
		return NULL;
	return xstrdup(s);
}

/*
 * An OAuth error answer (RFC 6749 5.2, Microsoft's error_codes and
 * AADSTS text; M365.md 1) into e: code, aadsts, kind, and Microsoft's text
 * as its first line (the Trace ID, Correlation ID and Timestamp lines are
 * left out). An answer of another shape is M365_E_PROTOCOL.
 */
static void
m365_auth_error(json_t *root, long status, struct m365_error *e)
{
	static const struct {
		const char *error;
		enum m365_err_kind kind;
	} named[] = {
	        {"authorization_declined", M365_E_DECLINED},
	        {"expired_token", M365_E_EXPIRED},
	        {"bad_verification_code", M365_E_BAD_CODE},
	};
	static const struct {
		int aadsts;
		enum m365_err_kind kind;
	} numbered[] = {
	        {53003, M365_E_CONDITIONAL_ACCESS},
	        {50076, M365_E_MFA},
	        {65001, M365_E_CONSENT},
	};
	const char *error = m365_auth_str(root, "error");
	const char *desc = m365_auth_str(root, "error_description");
	json_t *codes = json_object_get(root, "error_codes");
	size_t n;

	e->http_status = status;
	if (error == NULL) {
		m365_error_set(e, M365_E_PROTOCOL,
		               "the sign-in service answered HTTP %ld without an OAuth error",
		               status);
		return;
	}
	str_copy(e->code, error, sizeof(e->code));
	if (json_is_array(codes) && json_is_integer(json_array_get(codes, 0)))
		e->aadsts = (int)json_integer_value(json_array_get(codes, 0));
	else if (desc != NULL && strncmp(desc, "AADSTS", 6) == 0) {
		uint64_t u;

		n = strspn(desc + 6, "0123456789");
		if (parse_u64(desc + 6, n, 9999999, &u) == 0)
			e->aadsts = (int)u;
	}
	desc = desc && desc[0] ? desc : error;
	n = strcspn(desc, "\r\n");
	m365_error_set(e, M365_E_SIGNIN, "%.*s",
	               (int)(n < sizeof(e->text) ? n : sizeof(e->text) - 1), desc);
	for (size_t i = 0; i < nitems(named); i++)
		if (strcmp(error, named[i].error) == 0)
			e->kind = named[i].kind;
	for (size_t i = 0; i < nitems(numbered); i++)
		if (e->aadsts == numbered[i].aadsts)
			e->kind = numbered[i].kind;
}

/* base64url (RFC 4648 5, no padding) of len octets at s, decoded; NULL if not. */
static unsigned char *
m365_auth_b64url_decode(const char *s, size_t len, size_t *out_len)
{
	size_t pad = (4 - len % 4) % 4, blen = len + pad;
	unsigned char *b64, *raw;
	int n;

	if (len == 0 || len > AUTH_ID_PAYLOAD_MAX || pad == 3)
		return NULL;
	b64 = xmalloc(blen + 1);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		           (c >= '0' && c <= '9'))) {
			free(b64);
			return NULL;
		}
		b64[i] = (unsigned char)c;
	}
	memset(b64 + len, '=', pad);
	b64[blen] = '\0';
	raw = xmalloc(blen / 4 * 3 + 1);
	n = EVP_DecodeBlock(raw, b64, (int)blen);
	free(b64);
	if (n < 0 || (size_t)n < pad) {
		free(raw);
		return NULL;
	}
	*out_len = (size_t)n - pad; /* EVP_DecodeBlock counts the padding's zeros */
	return raw;
}

/*
 * The id_token's claims moat needs: tid, and preferred_username else upn.
 * Its signature is not checked: OpenID Connect Core 1.0 3.1.3.7 (6) lets a
 * client that received the id_token directly from the token endpoint over
 * TLS (as here, with the server's certificate verified) rely on TLS instead.
 * Only the audience is checked (3.1.3.7 (3)). moat uses it to name the
 * admin and the tenant, never to grant anything: Exchange checks the token.
 */
static int
m365_auth_id_token(const char *jwt, const char *client_id, struct m365_token *tok,
                   struct m365_error *e)
{
	const char *p1 = strchr(jwt, '.'), *p2 = p1 ? strchr(p1 + 1, '.') : NULL;
	const char *aud, *upn;
	unsigned char *raw = NULL;
	json_t *claims = NULL;
	size_t len = 0;
	int rc = -1;

	if (p2 == NULL ||
	    (raw = m365_auth_b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), &len)) == NULL ||
	    (claims = json_loadb((const char *)raw, len, 0, NULL)) == NULL ||
	    !json_is_object(claims)) {
		m365_error_set(e, M365_E_PROTOCOL, "the id_token of the sign-in is not a JWT");
		goto fail;
	}
	aud = m365_auth_str(claims, "aud");
	if (aud != NULL && strcmp(aud, client_id) != 0) {
		m365_error_set(e, M365_E_PROTOCOL,
		               "the id_token of the sign-in is for another app");
		goto fail;
	}
	if ((upn = m365_auth_str(claims, "preferred_username")) == NULL || upn[0] == '\0')
		upn = m365_auth_str(claims, "upn");
	if (m365_auth_copy(claims, "tid", false, tok->tenant_id, sizeof(tok->tenant_id)) < 0 ||
	    (upn != NULL && (strlen(upn) > M365_UPN_MAX || !m365_http_header_safe(upn)))) {
		m365_error_set(e, M365_E_PROTOCOL,
		               "the id_token names an unusable tenant or account");
		goto fail;
	}
	str_copy(tok->upn, upn ? upn : "", sizeof(tok->upn));
	rc = 0;
fail:
	json_decref(claims);
	free(raw);
	return rc;
}

/* The token endpoint's success answer (RFC 6749 5.1) into *tok. */
static int
m365_auth_token_parse(json_t *root, const char *client_id, struct m365_token *tok,
                      struct m365_error *e)
{
	const char *type = m365_auth_str(root, "token_type"),
	           *idt = m365_auth_str(root, "id_token");
	int64_t expires_in;

	memset(tok, 0, sizeof(*tok));
	if ((type != NULL && !str_ieq(type, "Bearer")) ||
	    m365_auth_int(root, "expires_in", 3600, 0, AUTH_EXPIRES_MAX, &expires_in) < 0 ||
	    (tok->access = m365_auth_secret(root, "access_token")) == NULL) {
		m365_error_set(e, M365_E_PROTOCOL, "the sign-in answer has no usable bearer token");
		goto fail;
	}
	if (idt != NULL && m365_auth_id_token(idt, client_id, tok, e) < 0)
		goto fail;
	tok->expires_at_ms = wall_ms() + expires_in * 1000;
	return 0;
fail:
	m365_token_clear(tok);
	return -1;
}

/* --- the device authorization grant --- */

int
m365_device_start(const struct m365_endpoint *ep, struct m365_device *d, struct m365_error *e)
{
	const char *const kv[] = {"client_id", m365_auth_client_id(ep), "scope", AUTH_SCOPE, NULL};
	json_t *root = NULL;
	int64_t expires_in, interval;
	long status = 0;

	memset(d, 0, sizeof(*d));
	memset(e, 0, sizeof(*e));
	if (m365_auth_post(ep, "devicecode", kv, &status, &root, e) < 0)
		goto fail;
	if (status != 200) {
		m365_auth_error(root, status, e);
		goto fail;
	}
	if (m365_auth_copy(root, "user_code", true, d->user_code, sizeof(d->user_code)) < 0 ||
	    m365_auth_copy(root, "verification_uri", true, d->verification_uri,
	                   sizeof(d->verification_uri)) < 0 ||
	    m365_auth_int(root, "expires_in", AUTH_EXPIRES, 1, AUTH_EXPIRES_MAX, &expires_in) < 0 ||
	    m365_auth_int(root, "interval", AUTH_INTERVAL, 0, AUTH_INTERVAL_MAX, &interval) < 0 ||
	    (d->device_code = m365_auth_secret(root, "device_code")) == NULL) {
		m365_error_set(e, M365_E_PROTOCOL, "a device code answer not of RFC 8628's shape");
		goto fail;
	}
	/* the message is only shown: a long one is cut, a bad one dropped */
	if (m365_auth_str(root, "message") != NULL &&
	    m365_http_header_safe(m365_auth_str(root, "message")))
		str_copy(d->message, m365_auth_str(root, "message"), sizeof(d->message));
	d->interval_s = interval > 0 ? (int)interval : AUTH_INTERVAL;
	d->expires_at_ms = wall_ms() + expires_in * 1000;
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	m365_device_clear(d);
	m365_error_explain(e);
	return -1;
}

enum m365_poll
m365_device_poll(const struct m365_endpoint *ep, struct m365_device *d, struct m365_token *tok,
                 struct m365_error *e)
{
	const char *const kv[] = {
	        "grant_type",  AUTH_DEVICE_GRANT, "client_id", m365_auth_client_id(ep),
	        "device_code", d->device_code,    NULL};
	enum m365_poll r = M365_POLL_FAILED;
	json_t *root = NULL;
	long status = 0;

	memset(e, 0, sizeof(*e));
	if (d->device_code == NULL) {
		m365_error_set(e, M365_E_BAD_CODE, "no sign-in code was asked for");
		goto fail;
	}
	if (m365_auth_post(ep, "token", kv, &status, &root, e) < 0)
		goto fail;
	if (status == 200) {
		if (m365_auth_token_parse(root, m365_auth_client_id(ep), tok, e) == 0)
			r = M365_POLL_OK;
		goto fail;
	}
	m365_auth_error(root, status, e);
	if (strcmp(e->code, "authorization_pending") == 0)
		r = M365_POLL_PENDING;
	else if (strcmp(e->code, "slow_down") == 0) {
		/* RFC 8628 3.5: for this and every later request */
		if (d->interval_s <= AUTH_INTERVAL_MAX)
			d->interval_s += AUTH_SLOW_DOWN_S;
		r = M365_POLL_SLOW_DOWN;
	}
	if (r != M365_POLL_FAILED)
		memset(e, 0, sizeof(*e));
fail:
	json_decref(root);
	if (r == M365_POLL_FAILED) {
		m365_error_scrub(e, d->device_code);
		m365_error_explain(e);
	}
	return r;
}

int
m365_device_wait(const struct m365_endpoint *ep, struct m365_device *d, const struct m365_cancel *c,
                 struct m365_token *tok, struct m365_error *e)
{
	int transient = 0; /* failed polls in a row that a later one may get past */

	for (;;) {
		int64_t left = d->expires_at_ms - wall_ms();

		memset(e, 0, sizeof(*e));
		if (left > 0 && !m365_cancel_sleep(c, (int64_t)d->interval_s * 1000)) {
			m365_error_set(e, M365_E_CANCELLED, "the sign-in was cancelled");
			break;
		}
		if (left <= 0 || wall_ms() >= d->expires_at_ms) {
			m365_error_set(e, M365_E_EXPIRED,
			               "the sign-in code expired before it was used");
			break;
		}
		switch (m365_device_poll(ep, d, tok, e)) {
		case M365_POLL_OK:
			return 0;
		case M365_POLL_PENDING:
		case M365_POLL_SLOW_DOWN:
			transient = 0;
			continue;
		case M365_POLL_FAILED:
			/* a network hiccup or a 5xx does not end the sign-in; a few in a row do */
			if ((e->kind == M365_E_NETWORK || e->http_status >= 500) &&
			    ++transient < M365_POLL_TRANSIENT_MAX)
				continue;
			return -1;
		}
	}
	m365_error_explain(e);
	return -1;
}

void
m365_device_clear(struct m365_device *d)
{
	m365_secret_free(d->device_code);
	OPENSSL_cleanse(d, sizeof(*d));
}

void
m365_token_clear(struct m365_token *t)
{
	m365_secret_free(t->access);
	OPENSSL_cleanse(t, sizeof(*t));
}

/* --- errors in plain words --- */

const char *
m365_err_kind_name(enum m365_err_kind k)
{
	static const char *const names[] = {
	        [M365_E_NONE] = "none",
	        [M365_E_NETWORK] = "network",
	        [M365_E_PROTOCOL] = "protocol",
	        [M365_E_CANCELLED] = "cancelled",
	        [M365_E_DECLINED] = "declined",
	        [M365_E_EXPIRED] = "expired",
	        [M365_E_BAD_CODE] = "bad_code",
	        [M365_E_CONDITIONAL_ACCESS] = "conditional_access",
	        [M365_E_MFA] = "mfa",
	        [M365_E_CONSENT] = "consent",
	        [M365_E_SIGNIN] = "signin",
	        [M365_E_TOKEN] = "token",
	        [M365_E_NOT_ALLOWED] = "not_allowed",
	        [M365_E_UNAVAILABLE] = "unavailable",
	        [M365_E_THROTTLED] = "throttled",
	        [M365_E_NOT_FOUND] = "not_found",
	        [M365_E_CUSTOMIZATION] = "customization",
	        [M365_E_CMDLET] = "cmdlet",
	};

	if ((size_t)k >= nitems(names) || names[k] == NULL)
		return "unknown";
	return names[k];
}

static void m365_auth_say(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* snprintf into one of e's texts; a result too long is cut. */
static void
m365_auth_say(char *dst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, M365_TEXT_MAX, fmt, ap);
	va_end(ap);
}

/*
 * The words: what happened (explain) and what the admin can do (action),
 * for an Exchange administrator rather than a developer. Microsoft's own
 * text, when it says more, comes last in explain.
 */
void
m365_error_explain_account(struct m365_error *e, const char *upn)
{
	const char *cmdlet = e->cmdlet[0] ? e->cmdlet : "this command";
	char account[M365_UPN_MAX + 16];

	if (upn != NULL && upn[0] != '\0')
		snprintf(account, sizeof(account), "The account %s", upn);
	else
		str_copy(account, "The account that signed in", sizeof(account));
	e->explain[0] = e->action[0] = '\0';
	switch (e->kind) {
	case M365_E_NONE:
		break;
	case M365_E_NETWORK:
		m365_auth_say(e->explain, "moat could not talk to Microsoft: %s", e->text);
		m365_auth_say(
		        e->action,
		        "Check that m365_authority and m365_exo_url are https:// URLs (by default "
		        "login.microsoftonline.com and outlook.office365.com) and that moat can "
		        "reach them over HTTPS on port 443: DNS, firewall, the proxy if one is "
		        "needed, and that the CA certificates (m365_ca_file, else the system's) "
		        "trust theirs. Then try again.");
		break;
	case M365_E_PROTOCOL:
		if (e->http_status != 0)
			m365_auth_say(e->explain,
			              "Microsoft answered in a way moat does not understand "
			              "(HTTP %ld): %s",
			              e->http_status, e->text);
		else
			m365_auth_say(e->explain,
			              "Microsoft answered in a way moat does not understand: %s",
			              e->text);
		m365_auth_say(e->action,
		              "Try again in a few minutes. If it keeps happening, report "
		              "it to moat's maintainers with the time it happened.");
		break;
	case M365_E_CANCELLED:
		m365_auth_say(e->explain, "The job was cancelled before it finished.");
		m365_auth_say(e->action, "Start it again when you are ready.");
		break;
	case M365_E_DECLINED:
		m365_auth_say(e->explain, "The sign-in was declined: Decline was pressed on "
		                          "Microsoft's sign-in page.");
		m365_auth_say(e->action, "Start again, and press Continue when Microsoft asks "
		                         "whether you are trying to sign in to " AUTH_APP_NAME ".");
		break;
	case M365_E_EXPIRED:
		m365_auth_say(e->explain, "The sign-in code was not used within its lifetime "
		                          "(usually 15 minutes).");
		m365_auth_say(e->action, "Start again for a new code, and enter it on Microsoft's "
		                         "page right away.");
		break;
	case M365_E_BAD_CODE:
		m365_auth_say(e->explain, "Microsoft did not recognise the sign-in code; it may "
		                          "have been used already.");
		m365_auth_say(e->action, "Start again for a new code.");
		break;
	case M365_E_CONDITIONAL_ACCESS:
		m365_auth_say(
		        e->explain,
		        "A Conditional Access policy of your tenant blocked the sign-in. "
		        "Microsoft recommends that tenants block the device code sign-in that "
		        "moat uses, so this is common. Microsoft said: %s",
		        e->text);
		m365_auth_say(
		        e->action,
		        "Ask whoever manages Conditional Access in Microsoft Entra for an "
		        "exception for this one sign-in, for example by excluding the admin "
		        "account from the blocking policy for a short time, or by allowing the "
		        "device code flow from moat's address. Then start again.");
		break;
	case M365_E_MFA:
		m365_auth_say(e->explain,
		              "Microsoft requires multi-factor authentication for this sign-in. "
		              "Microsoft said: %s",
		              e->text);
		m365_auth_say(
		        e->action,
		        "Start again and complete the MFA prompt in the browser when you sign "
		        "in. If the policy also requires a compliant or managed device, ask "
		        "for a Conditional Access exception for this sign-in.");
		break;
	case M365_E_CONSENT:
		m365_auth_say(e->explain,
		              "The app moat signs in as has not been given consent in your tenant. "
		              "Microsoft said: %s",
		              e->text);
		m365_auth_say(e->action,
		              "A Global Administrator must consent to the app "
		              "\"" AUTH_APP_NAME "\" (client id " AUTH_CLIENT_ID "), for example "
		              "by signing in once with Connect-ExchangeOnline, or moat can use an "
		              "app your provider registered: set m365_client_id to its client id. "
		              "Then start again.");
		break;
	case M365_E_SIGNIN:
		m365_auth_say(e->explain, "Microsoft refused the sign-in: %s", e->text);
		m365_auth_say(e->action,
		              "Fix what Microsoft's message names (its AADSTS number is "
		              "explained in Microsoft's documentation), then start again.");
		break;
	case M365_E_TOKEN:
		m365_auth_say(e->explain, "The Microsoft sign-in has expired or Exchange Online no "
		                          "longer accepts it.");
		m365_auth_say(e->action, "Start again and sign in once more.");
		break;
	case M365_E_NOT_ALLOWED:
		m365_auth_say(e->explain,
		              "%s is not allowed to run %s: it needs the Exchange Administrator or "
		              "Global Administrator role (Security Administrator is enough for "
		              "protection policies but not for mail flow rules or connectors), or "
		              "its Exchange Online API access is disabled (Set-User "
		              "-EXOModuleEnabled $false).",
		              account, cmdlet);
		m365_auth_say(
		        e->action,
		        "Sign in with an account that has the Exchange Administrator or Global "
		        "Administrator role, or give this one the role. If it has the role "
		        "already, turn its API access back on with Set-User <account> "
		        "-EXOModuleEnabled $true. Then start again.");
		break;
	case M365_E_UNAVAILABLE:
		m365_auth_say(
		        e->explain,
		        "%s is not available to this tenant or account: for Safe Links / Safe "
		        "Attachments this means Defender for Office 365 is not licensed.",
		        cmdlet);
		m365_auth_say(e->action, "Nothing to do for a protection the tenant does not have. "
		                         "For other commands, check the tenant's licences and the "
		                         "account's roles.");
		break;
	case M365_E_THROTTLED:
		m365_auth_say(e->explain, "Exchange Online is limiting how fast moat may call it, "
		                          "and still was after moat waited and retried.");
		m365_auth_say(e->action, "Wait a few minutes and run it again; other admin tools "
		                         "working on the tenant at the same time make this more "
		                         "likely.");
		break;
	case M365_E_NOT_FOUND:
		m365_auth_say(e->explain, "%s did not find the object. Microsoft said: %s", cmdlet,
		              e->text);
		m365_auth_say(e->action, "It may have been removed or renamed meanwhile. Read the "
		                         "tenant again (Check configuration) and retry.");
		break;
	case M365_E_CUSTOMIZATION:
		m365_auth_say(
		        e->explain,
		        "Your tenant has never been customised, so Exchange Online refuses %s "
		        "until it is.",
		        cmdlet);
		m365_auth_say(e->action,
		              "Run Enable-OrganizationCustomization (once, in Exchange Online "
		              "PowerShell). Microsoft can take up to an hour to finish it; run the "
		              "wizard again after that.");
		break;
	case M365_E_CMDLET:
		m365_auth_say(e->explain, "%s failed. Microsoft said: %s", cmdlet, e->text);
		m365_auth_say(e->action,
		              "Fix what Microsoft's message names, in moat's settings or "
		              "in the tenant, and run it again.");
		break;
	}
}

void
m365_error_explain(struct m365_error *e)
{
	m365_error_explain_account(e, NULL);
}
