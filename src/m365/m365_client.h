/*
 * m365_client.h - moat's client of Microsoft's sign-in (Entra ID) and
 * Exchange Online admin endpoints: the OAuth 2.0 device authorization
 * grant (RFC 8628) and Exchange's InvokeCommand (../shared/M365.md 1, 2).
 *
 * Blocking calls over libcurl, made only on an M365 job's own thread
 * (m365_job.c): no event loop of moatd ever waits on Microsoft. Every wait
 * (polling interval, 429 back-off) goes through m365_cancel.sleep, so a
 * cancelled job or a stopping moatd ends it at once.
 *
 * Secrets: the device code and the access token are never logged, never
 * written anywhere and never put into an error text; m365_token_clear()
 * and m365_device_clear() cleanse them.
 */
#ifndef MOAT_M365_CLIENT_H
#define MOAT_M365_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define M365_TEXT_MAX  1024 /* one error text / explanation */
#define M365_UPN_MAX   320
#define M365_URL_MAX   2048
#define M365_PAGES_MAX 1000        /* @odata.nextLink pages followed for one cmdlet */
#define M365_BODY_MAX  (64u << 20) /* one answer's body; larger: M365_E_PROTOCOL */

/* Where to sign in and which Exchange to call (config m365_*). */
struct m365_endpoint {
	const char *authority; /* "https://login.microsoftonline.com" */
	const char *tenant;    /* "organizations", a GUID or a domain */
	const char *client_id; /* fb78d390-0c51-40cd-8e17-fdbfab77341b */
	const char *exo;       /* "https://outlook.office365.com" */
	const char *ca_file;   /* PEM CAs to trust instead of the system's; NULL/"" */
	long timeout_s;        /* one HTTP exchange, connect included */
	/* Polled during every exchange: true ends it with M365_E_CANCELLED. May be NULL. */
	bool (*aborted)(void *arg);
	void *abort_arg;
};

/* A wait that a cancel ends early: returns false when cancelled. */
struct m365_cancel {
	bool (*sleep)(void *arg, int64_t ms);
	void *arg;
};

enum m365_err_kind {
	M365_E_NONE,
	M365_E_NETWORK,   /* connect/TLS/timeout: curl's text */
	M365_E_PROTOCOL,  /* an answer not of the documented shape */
	M365_E_CANCELLED, /* the job was cancelled */
	/* sign-in (M365.md 1) */
	M365_E_DECLINED,           /* authorization_declined */
	M365_E_EXPIRED,            /* expired_token (70019): start over */
	M365_E_BAD_CODE,           /* bad_verification_code (70018) */
	M365_E_CONDITIONAL_ACCESS, /* AADSTS53003 */
	M365_E_MFA,                /* AADSTS50076 */
	M365_E_CONSENT,            /* AADSTS65001 */
	M365_E_SIGNIN,             /* any other sign-in error: its AADSTS text */
	/* Exchange (M365.md 2) */
	M365_E_TOKEN,         /* 401 without a body: the sign-in expired or was refused */
	M365_E_NOT_ALLOWED,   /* 401/403 "User is not allowed to call X" */
	M365_E_UNAVAILABLE,   /* 403 with an empty body: cmdlet not available */
	M365_E_THROTTLED,     /* 429 still after the back-off allowed */
	M365_E_NOT_FOUND,     /* ManagementObjectNotFoundException */
	M365_E_CUSTOMIZATION, /* "...run Enable-OrganizationCustomization" */
	M365_E_CMDLET,        /* any other cmdlet failure */
};

struct m365_error {
	enum m365_err_kind kind;
	long http_status;            /* 0 when no answer */
	int aadsts;                  /* sign-in: the AADSTS number, 0 if none */
	char code[64];               /* OAuth "error" or Exchange "error.code" */
	char errid[32];              /* details[].message split on '|': "Ex6F9304" */
	char extype[256];            /* "...ManagementObjectNotFoundException" */
	char text[M365_TEXT_MAX];    /* Microsoft's text (AADSTS description without trace lines) */
	char cmdlet[64];             /* the cmdlet that failed, if any */
	char explain[M365_TEXT_MAX]; /* plain words: what happened */
	char action[M365_TEXT_MAX];  /* plain words: what the admin can do */
};
/* Fill explain and action from kind (and cmdlet, aadsts, text). */
void m365_error_explain(struct m365_error *e);
/* The stable name of a kind, for APIs and tests: "conditional_access", "not_allowed". */
const char *m365_err_kind_name(enum m365_err_kind k);

/* --- sign-in: the device authorization grant --- */

struct m365_device {
	char *device_code;  /* secret; cleansed by m365_device_clear() */
	char user_code[64]; /* shown to the admin */
	char verification_uri[M365_URL_MAX];
	char message[M365_TEXT_MAX];
	int64_t expires_at_ms; /* wall clock */
	int interval_s;        /* grows by 5 at every slow_down */
};

struct m365_token {
	char *access; /* secret; cleansed by m365_token_clear() */
	int64_t expires_at_ms;
	char upn[M365_UPN_MAX + 1]; /* from the id_token's preferred_username/upn, "" if none */
	char tenant_id[64];         /* from the id_token's tid, "" if none */
};

/*
 * POST {authority}/{tenant}/oauth2/v2.0/devicecode with client_id and the
 * scope "https://outlook.office365.com/.default openid profile" (openid and
 * profile bring an id_token naming the admin and the tenant). 0, or -1 with e.
 */
int m365_device_start(const struct m365_endpoint *ep, struct m365_device *d, struct m365_error *e);

enum m365_poll {
	M365_POLL_PENDING,   /* authorization_pending: ask again after d->interval_s */
	M365_POLL_SLOW_DOWN, /* slow_down: d->interval_s has grown by 5 */
	M365_POLL_OK,        /* *tok filled */
	M365_POLL_FAILED,    /* e says why; stop */
};
/* One POST {authority}/{tenant}/oauth2/v2.0/token. */
enum m365_poll m365_device_poll(const struct m365_endpoint *ep, struct m365_device *d,
                                struct m365_token *tok, struct m365_error *e);
/*
 * Poll at d->interval_s (never faster) until a token, a failure, the
 * code's expiry (M365_E_EXPIRED) or a cancel. 0, or -1 with e.
 */
int m365_device_wait(const struct m365_endpoint *ep, struct m365_device *d,
                     const struct m365_cancel *c, struct m365_token *tok, struct m365_error *e);
void m365_device_clear(struct m365_device *d);
void m365_token_clear(struct m365_token *t);

/* --- Exchange Online: InvokeCommand --- */

struct m365_exo {
	const struct m365_endpoint *ep;
	const char *tenant;        /* the URL's {tenant}: the token's tid, else ep->tenant */
	const char *upn;           /* X-AnchorMailbox: UPN:<upn> */
	const char *token;         /* Authorization: Bearer <token> */
	struct m365_cancel cancel; /* for the back-off */
	int retries_429;           /* 429s retried per call before M365_E_THROTTLED (default 5) */
	int64_t wait_max_ms;       /* the longest single back-off (default 120000) */
	/* calls made, answers 429'd, for the job's summary */
	unsigned calls, throttled;
};

/*
 * Run one cmdlet: POST {exo}/adminapi/beta/{tenant}/InvokeCommand with
 * {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}} (params
 * may be NULL: {}) and the headers of M365.md 2; follow @odata.nextLink
 * with the same body; on 429 wait Retry-After / Rate-Limit-Reset (capped)
 * and retry. *values gets every page's "value" items in one array (new
 * reference), *warnings (may be NULL) the @adminapi.warnings strings. 0,
 * or -1 with e (e->cmdlet set).
 */
int m365_invoke(struct m365_exo *x, const char *cmdlet, json_t *params, json_t **values,
                json_t **warnings, struct m365_error *e);

#endif
