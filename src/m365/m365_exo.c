/*
 * m365_exo.c - running one Exchange Online cmdlet through the admin API's
 * InvokeCommand endpoint, as Microsoft's management module does
 * (../shared/M365.md 2): JSON (RFC 8259) over HTTPS with a bearer token
 * (RFC 6750), OData paging by @odata.nextLink, and HTTP 429 back-off
 * honouring Retry-After (RFC 9110 10.2.3) or Rate-Limit-Reset.
 *
 * A nextLink is followed only to the origin the call went to: the answer
 * must not be able to send the bearer token elsewhere. Every request gets
 * its own client-request-id (a random UUID, RFC 9562 5.4), which is what
 * Microsoft support asks for about a failed call.
 */
#include "m365_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "../common/log.h"
#include "../common/util.h"

#define EXO_URL            "https://outlook.office365.com"
#define EXO_RETRIES_429    5       /* x->retries_429 when 0 */
#define EXO_WAIT_MAX_MS    120000  /* x->wait_max_ms when 0 */
#define EXO_BACKOFF_MAX_MS 3600000 /* Retry-After or Rate-Limit-Reset beyond an hour: capped */
#define EXO_CMDLET_MAX     63
#define EXO_GUID_LEN       36
#define EXO_NOT_ALLOWED    "User is not allowed to call" /* M365.md 2: role missing */

/* A random version 4 UUID, lower-case, into buf (EXO_GUID_LEN + 1). */
static void
m365_exo_guid(char *buf)
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		fatalx("no random bytes for a client-request-id");
	b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80; /* the RFC's variant */
	snprintf(buf, EXO_GUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
}

/* "2026-11-27T10:00:00.000Z" (UTC, fraction optional) as epoch ms; -1 if not so. */
static int64_t
m365_exo_iso8601_ms(const char *s)
{
	struct tm tm;
	const char *p;
	int64_t ms = 0;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return -1;
	if (*p == '.') {
		int64_t scale = 100;

		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (*p - '0') * scale;
	}
	if (strcmp(p, "Z") != 0 || (t = timegm(&tm)) == (time_t)-1)
		return -1;
	return (int64_t)t * 1000 + ms;
}

/*
 * How long to wait after the attempt'th 429 (from 0): Retry-After (seconds
 * or an HTTP date), else until Rate-Limit-Reset, else 2^(attempt+1) s.
 */
static int64_t
m365_exo_backoff_ms(const struct m365_http_answer *a, int attempt)
{
	uint64_t secs;
	int64_t at;
	time_t t;

	if (a->retry_after[0] != '\0') {
		size_t len = strlen(a->retry_after);

		if (strspn(a->retry_after, "0123456789") == len)
			return parse_u64(a->retry_after, len, EXO_BACKOFF_MAX_MS / 1000, &secs) == 0
			               ? (int64_t)secs * 1000
			               : EXO_BACKOFF_MAX_MS;
		if ((t = curl_getdate(a->retry_after, NULL)) != (time_t)-1)
			return (int64_t)t * 1000 - wall_ms();
	}
	if (a->rate_limit_reset[0] != '\0' && (at = m365_exo_iso8601_ms(a->rate_limit_reset)) >= 0)
		return at - wall_ms();
	return attempt < 20 ? (int64_t)2000 << attempt : EXO_BACKOFF_MAX_MS;
}

/*
 * One POST of body to url with M365.md 2's headers, again after each 429
 * (or 502, 503, 504: a gateway's passing trouble) for as long as x allows. 0 with *a (an answer
 * other than 429), or -1 with e.
 */
static int
m365_exo_post(struct m365_exo *x, const char *url, const char *body, struct m365_http_answer *a,
              struct m365_error *e)
{
	int retries = x->retries_429 > 0 ? x->retries_429 : EXO_RETRIES_429;
	int64_t wait_max = x->wait_max_ms > 0 ? x->wait_max_ms : EXO_WAIT_MAX_MS;
	char anchor[M365_UPN_MAX + 32], reqid[EXO_GUID_LEN + 32], guid[EXO_GUID_LEN + 1];
	const char *headers[] = {
	        NULL, /* Authorization, below */
	        "Content-Type: application/json",
	        "Accept: application/json",
	        anchor,
	        "Prefer: odata.maxpagesize=1000",
	        reqid,
	        NULL,
	};
	char *auth = xasprintf("Authorization: Bearer %s", x->token);
	int rc = -1;

	headers[0] = auth;
	snprintf(anchor, sizeof(anchor), "X-AnchorMailbox: UPN:%s", x->upn);
	for (int attempt = 0;; attempt++) {
		int64_t ms;

		m365_exo_guid(guid);
		snprintf(reqid, sizeof(reqid), "client-request-id: %s", guid);
		x->calls++;
		if (m365_http_post(x->ep, url, headers, body, strlen(body), a, e) < 0)
			goto fail;
		if (a->status != 429 && a->status != 502 && a->status != 503 && a->status != 504)
			break;
		if (a->status != 429 && attempt >= retries)
			break; /* still unavailable: the answer says so */
		if (a->status == 429)
			x->throttled++;
		if (attempt >= retries) {
			m365_error_set(e, M365_E_THROTTLED, "HTTP 429 (too many requests) %d times",
			               attempt + 1);
			e->http_status = 429;
			goto fail;
		}
		ms = m365_exo_backoff_ms(a, attempt);
		ms = ms < 0 ? 0 : ms > wait_max ? wait_max : ms;
		m365_http_answer_clear(a);
		if (!m365_cancel_sleep(&x->cancel, ms)) {
			m365_error_set(e, M365_E_CANCELLED, "cancelled while throttled");
			goto fail;
		}
	}
	rc = 0;
fail:
	if (rc < 0)
		m365_http_answer_clear(a);
	m365_secret_free(auth);
	return rc;
}

/* Does s end with suffix? */
static bool
m365_exo_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * A failed answer (M365.md 2) into e: role missing, not available, the
 * token refused, or the cmdlet's own failure split from details[].message
 * "errid|exception type|text".
 */
static void
m365_exo_error(const struct m365_http_answer *a, struct m365_error *e)
{
	json_t *root = a->len ? json_loadb(a->body, a->len, 0, NULL) : NULL;
	json_t *err = json_object_get(root, "error"), *details = json_object_get(err, "details");
	const char *msg = json_string_value(json_object_get(err, "message"));
	const char *code = json_string_value(json_object_get(err, "code"));
	bool empty = a->len == 0 || strspn(a->body, " \t\r\n") == a->len;
	size_t i;
	json_t *d;

	e->http_status = a->status;
	if (code != NULL)
		str_copy(e->code, code, sizeof(e->code));
	if ((a->status == 401 || a->status == 403) && msg != NULL &&
	    strncmp(msg, EXO_NOT_ALLOWED, strlen(EXO_NOT_ALLOWED)) == 0) {
		m365_error_set(e, M365_E_NOT_ALLOWED, "%s", msg);
	} else if (a->status == 401 && (empty || strstr(a->www_authenticate, "invalid_token"))) {
		m365_error_set(e, M365_E_TOKEN, "Exchange Online refused the sign-in's token");
	} else if (a->status == 403 && empty) {
		m365_error_set(e, M365_E_UNAVAILABLE, "HTTP 403 without a body");
	} else if (a->status == 401 || a->status == 403) {
		/*
		 * M365.md 2: the answer for a user whose API access is disabled
		 * is not documented; an authorization failure of another shape
		 * is taken as "not allowed", whose explanation says both.
		 */
		m365_error_set(e, M365_E_NOT_ALLOWED, "%s",
		               msg ? msg : "Exchange Online refused the call (HTTP 401/403)");
	} else if ((a->status == 400 || a->status == 404 || a->status == 500) &&
	           json_is_object(err)) {
		json_array_foreach (details, i, d) {
			const char *m = json_string_value(json_object_get(d, "message"));
			const char *bar1 = m ? strchr(m, '|') : NULL;
			const char *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;

			if (bar2 == NULL)
				continue;
			snprintf(e->errid, sizeof(e->errid), "%.*s", (int)(bar1 - m), m);
			snprintf(e->extype, sizeof(e->extype), "%.*s", (int)(bar2 - bar1 - 1),
			         bar1 + 1);
			msg = bar2 + 1;
			break;
		}
		m365_error_set(e, M365_E_CMDLET, "%s", msg ? msg : "the cmdlet failed");
		if (m365_exo_ends_with(e->extype, "ManagementObjectNotFoundException"))
			e->kind = M365_E_NOT_FOUND;
		else if (m365_exo_ends_with(e->extype,
		                            "OrganizationCustomizationRequiredException") ||
		         strstr(e->text, "Enable-OrganizationCustomization") != NULL)
			e->kind = M365_E_CUSTOMIZATION;
	} else {
		m365_error_set(e, M365_E_PROTOCOL, "Exchange Online answered HTTP %ld%s%s",
		               a->status, msg ? ": " : "", msg ? msg : "");
	}
	json_decref(root);
}

/* Append one page's "value" items and @adminapi.warnings; *next its nextLink or NULL. */
static int
m365_exo_page(json_t *root, json_t *values, json_t *warnings, const char **next,
              struct m365_error *e)
{
	json_t *v = json_object_get(root, "value"),
	       *w = json_object_get(root, "@adminapi.warnings");
	json_t *link = json_object_get(root, "@odata.nextLink");
	size_t i;
	json_t *item;

	*next = NULL;
	if (!json_is_object(root) || (v != NULL && !json_is_array(v) && !json_is_null(v)) ||
	    (link != NULL && !json_is_string(link) && !json_is_null(link))) {
		m365_error_set(e, M365_E_PROTOCOL, "an answer not of InvokeCommand's shape");
		return -1;
	}
	if (json_is_array(v))
		json_array_extend(values, v);
	json_array_foreach (w, i, item) {
		if (json_is_string(item))
			json_array_append(warnings, item);
	}
	*next = json_string_value(link);
	return 0;
}

int
m365_invoke(struct m365_exo *x, const char *cmdlet, json_t *params, json_t **values,
            json_t **warnings, struct m365_error *e)
{
	const struct m365_endpoint *ep = x->ep;
	const char *exo = ep->exo && ep->exo[0] ? ep->exo : EXO_URL;
	const char *tenant = x->tenant && x->tenant[0] ? x->tenant : ep->tenant;
	char url[M365_URL_MAX], first[M365_URL_MAX];
	json_t *vals = json_array(), *warns = json_array(), *req = NULL, *root = NULL;
	struct m365_http_answer a = {0};
	char *body = NULL;
	int rc = -1;

	memset(e, 0, sizeof(*e));
	*values = NULL;
	if (warnings != NULL)
		*warnings = NULL;
	str_copy(e->cmdlet, cmdlet ? cmdlet : "", sizeof(e->cmdlet));
	if (cmdlet == NULL || cmdlet[0] == '\0' || strlen(cmdlet) > EXO_CMDLET_MAX ||
	    strspn(cmdlet, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") !=
	            strlen(cmdlet) ||
	    (params != NULL && !json_is_object(params))) {
		m365_error_set(e, M365_E_CMDLET, "not a cmdlet moat can send");
		goto fail;
	}
	if (x->token == NULL || x->token[0] == '\0' || !m365_http_header_safe(x->token) ||
	    x->upn == NULL || x->upn[0] == '\0' || strlen(x->upn) > M365_UPN_MAX ||
	    !m365_http_header_safe(x->upn) || tenant == NULL || tenant[0] == '\0') {
		m365_error_set(e, M365_E_TOKEN, "no usable sign-in (token, account or tenant)");
		goto fail;
	}
	if (m365_http_url(first, sizeof(first), exo, "/adminapi/beta/", tenant, "/InvokeCommand",
	                  e) < 0 ||
	    m365_http_url_check(first, e) < 0)
		goto fail;
	req = json_pack("{s:{s:s,s:o}}", "CmdletInput", "CmdletName", cmdlet, "Parameters",
	                params ? json_incref(params) : json_object());
	if (req == NULL || (body = json_dumps(req, JSON_COMPACT)) == NULL)
		fatalx("m365_invoke: out of memory");
	str_copy(url, first, sizeof(url));
	for (int page = 0;; page++) {
		const char *next;

		if (page == M365_PAGES_MAX) {
			m365_error_set(e, M365_E_PROTOCOL, "more than %d pages of answers",
			               M365_PAGES_MAX);
			goto fail;
		}
		if (m365_exo_post(x, url, body, &a, e) < 0)
			goto fail;
		if (a.status < 200 || a.status > 299) {
			m365_exo_error(&a, e);
			goto fail;
		}
		root = a.len ? json_loadb(a.body, a.len, 0, NULL) : json_object();
		if (m365_exo_page(root, vals, warns, &next, e) < 0)
			goto fail;
		if (next == NULL)
			break;
		/* the same body to the next page, at the same origin only */
		if (!m365_http_same_origin(next, first) || strlen(next) >= sizeof(url)) {
			m365_error_set(e, M365_E_PROTOCOL, "a nextLink to another server");
			goto fail;
		}
		str_copy(url, next, sizeof(url));
		json_decref(root);
		root = NULL;
		m365_http_answer_clear(&a);
	}
	*values = vals;
	vals = NULL;
	if (warnings != NULL) {
		*warnings = warns;
		warns = NULL;
	}
	rc = 0;
fail:
	if (rc < 0) {
		m365_error_scrub(e, x->token);
		m365_error_explain_account(e, x->upn);
	}
	m365_http_answer_clear(&a);
	json_decref(root);
	json_decref(req);
	json_decref(vals);
	json_decref(warns);
	free(body);
	return rc;
}
