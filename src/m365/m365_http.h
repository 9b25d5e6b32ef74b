/*
 * m365_http.h - private to the M365 client (m365_auth.c, m365_exo.c): the
 * one HTTPS POST they make, and the helpers they share.
 */
#ifndef MOAT_M365_HTTP_H
#define MOAT_M365_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "m365_client.h"

#define M365_HTTP_TIMEOUT_S 60  /* one exchange, when ep->timeout_s is 0 */
#define M365_HTTP_HDR_MAX   256 /* octets kept of one captured answer header */

/* One answer: status, body and the headers the client acts on. */
struct m365_http_answer {
	long status;
	char *body; /* NUL-terminated, NULL when empty; may hold a secret */
	size_t len, cap;
	bool toobig; /* more than M365_BODY_MAX: the transfer was stopped */
	char retry_after[M365_HTTP_HDR_MAX];
	char rate_limit_reset[M365_HTTP_HDR_MAX];
	char rate_limit_remaining[M365_HTTP_HDR_MAX];
	char www_authenticate[M365_HTTP_HDR_MAX];
};

/*
 * POST len octets of body to url with the "Name: value" lines of headers
 * (NULL-terminated). 0 with *a filled whatever the status, or -1 with e
 * (M365_E_NETWORK, or M365_E_PROTOCOL for an answer over M365_BODY_MAX).
 * The header lines and body may hold secrets: they are not logged or kept.
 */
int m365_http_post(const struct m365_endpoint *ep, const char *url, const char *const *headers,
                   const char *body, size_t len, struct m365_http_answer *a, struct m365_error *e);
/* Cleanse and free the body; *a is zeroed. */
void m365_http_answer_clear(struct m365_http_answer *a);

/*
 * May a secret be sent to url? https://, or http:// to 127.0.0.1, localhost
 * or [::1] only (the tests' emulator). 0, or -1 with e (M365_E_NETWORK).
 */
int m365_http_url_check(const char *url, struct m365_error *e);
/* Do a and b have the same scheme, host and port? */
bool m365_http_same_origin(const char *a, const char *b);
/*
 * "{base without trailing '/'}{mid}{segment, url-escaped}{tail}" into buf.
 * 0, or -1 with e when it does not fit M365_URL_MAX or base is empty.
 */
int m365_http_url(char *buf, size_t size, const char *base, const char *mid, const char *segment,
                  const char *tail, struct m365_error *e);
/* Can s go into a header line (no control octets)? */
bool m365_http_header_safe(const char *s);

/* OPENSSL_cleanse then free a NUL-terminated secret; NULL is fine. */
void m365_secret_free(char *s);

/* c->sleep, or a plain sleep when c or its sleep is NULL; false when cancelled. */
bool m365_cancel_sleep(const struct m365_cancel *c, int64_t ms);

/* Set e's kind and text (printf-style); the rest of e is left as it is. */
void m365_error_set(struct m365_error *e, enum m365_err_kind kind, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Withhold e's text if it contains secret (which Microsoft might echo). */
void m365_error_scrub(struct m365_error *e, const char *secret);
/* m365_error_explain(), naming the signed-in account when upn is known. */
void m365_error_explain_account(struct m365_error *e, const char *upn);

#endif
