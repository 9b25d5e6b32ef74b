/*
 * scan_internal.h - what the checks of the scan pipeline share.
 *
 * A scan runs on one worker thread from start to end (scan_run()): every
 * check is a synchronous function of a struct scan_task that emits
 * symbols with scan_sym(). Waiting (DNS, clamd, rspamd) is bounded by the
 * task's deadline: scan_remaining_ms() tells a check how long it may
 * wait. A check that needs an unavailable required service calls
 * scan_tempfail(); the verdict is then tempfail whatever else was found.
 *
 * Checks read the message three ways: the raw octets (in->msg), the raw
 * header fields (t->hdrs, for DKIM and the Received chain), and the MIME
 * model GMime built (t->msg: parts decoded, names, addresses, links).
 */
#ifndef MOAT_SCAN_INTERNAL_H
#define MOAT_SCAN_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"
#include "../policy/policy.h"
#include "scan.h"

struct scan_task;

/* --- raw header fields (scan_hdr.c) --- */

struct scan_hdr {
	const char *name; /* points into the message; not NUL-terminated */
	size_t name_len;
	const char *value; /* after the colon, folding kept, without the final CRLF */
	size_t value_len;
	size_t offset; /* of the field in the message */
	size_t len;    /* the whole field including its final CRLF */
};

#define SCAN_HDR_MAX 1000 /* fields kept; more quarantines (MIME_TOO_MANY_HEADERS) */

struct scan_hdrs {
	struct scan_hdr *h; /* top to bottom */
	size_t n;
	size_t body_offset; /* first octet after the empty line (or len if none) */
	bool truncated;     /* more than SCAN_HDR_MAX fields */
};

void scan_hdrs_split(const unsigned char *msg, size_t len, struct scan_hdrs *out);
void scan_hdrs_free(struct scan_hdrs *h);
/* Case-insensitive name test. */
bool scan_hdr_is(const struct scan_hdr *h, const char *name);
/* Is this incoming field removed (it claims moat's authserv-id, relay key or X-Moat-*)? */
bool scan_hdr_strip(const struct scan_task *t, const struct scan_hdr *h);
/* The authserv-id moat writes (authserv_id, else hostname). */
const char *scan_authserv_id(const struct config *cfg);

/* --- the MIME model (scan_mime.c) --- */

struct scan_part {
	unsigned depth;  /* 0: the message itself */
	char ctype[128]; /* declared "type/subtype", lower case; "" when none */
	char **names;    /* every candidate file name (RFC 2231 / 2047 decoded), UTF-8 */
	size_t nnames;
	bool attachment;      /* Content-Disposition attachment, or a name */
	bool text, html;      /* a text/plain or text/html body part (not an attachment) */
	unsigned char *data;  /* content after transfer decoding */
	size_t len;           /* of data */
	char *text_utf8;      /* text parts: charset-converted, NUL-terminated; else NULL */
	char magic_type[128]; /* detected MIME type of data (libmagic); "" if not run */
	bool is_message;      /* message/rfc822 (its parts follow, one level deeper) */
};

struct scan_mbox {
	char *display; /* decoded display name, UTF-8, or NULL */
	char *addr;    /* local@domain as written; NULL when unparsable */
	char *domain;  /* lower case, or NULL */
};

struct scan_url {
	char *url;       /* as found */
	char *host;      /* lower case; for IDN the U-label form as found */
	char *text;      /* the visible link text (HTML), or NULL */
	bool ip_literal; /* host is an IPv4 / IPv6 address (any notation) */
	bool from_html;
};

#define SCAN_URL_MAX 500 /* links kept per message */

struct scan_msg {
	void *gmime; /* GMimeMessage * */
	struct scan_part *parts;
	size_t nparts;
	struct scan_mbox *from;
	size_t nfrom;
	struct scan_mbox *reply_to;
	size_t nreply_to;
	char *subject;    /* decoded, UTF-8, or NULL */
	char *message_id; /* or NULL */
	struct scan_url *urls;
	size_t nurls;
};

/* --- sender authentication results (written into Authentication-Results) --- */

enum scan_auth {
	SCAN_AUTH_NONE,
	SCAN_AUTH_PASS,
	SCAN_AUTH_FAIL,
	SCAN_AUTH_SOFTFAIL,
	SCAN_AUTH_NEUTRAL,
	SCAN_AUTH_TEMPERROR,
	SCAN_AUTH_PERMERROR,
	SCAN_AUTH_POLICY, /* DKIM: valid but refused by local policy (e.g. rsa-sha1) */
};
/* RFC 8601 result names: "none", "pass", "fail", ... */
const char *scan_auth_str(enum scan_auth a);

struct scan_spf {
	enum scan_auth result;
	char domain[DNS_NAME_MAX + 1]; /* the domain checked */
	bool helo;                     /* the identity was the HELO name (null sender) */
	char reason[160];              /* why, for logs and the A-R comment */
};

#define SCAN_DKIM_MAX 8 /* signatures verified per message */

struct scan_dkim_sig {
	enum scan_auth result;
	char domain[DNS_NAME_MAX + 1]; /* d= */
	char selector[64];             /* s= */
	char algo[32];                 /* a= */
	char b[16];                    /* the first 8 characters of b= (RFC 6008) */
	char reason[160];
};

struct scan_dmarc {
	enum scan_auth result;         /* pass, fail, none, temperror, permerror */
	char domain[DNS_NAME_MAX + 1]; /* the From domain */
	char policy[16];               /* p= (or sp=) that applies: none, quarantine, reject */
	bool spf_aligned, dkim_aligned;
	char reason[160];
};

struct scan_arc {
	enum scan_auth result; /* pass, fail, none */
	unsigned instances;
	char reason[160];
};

/* --- a scan in progress --- */

#define SCAN_SYM_DETAIL_MAX 256 /* octets of detail kept per symbol */
#define SCAN_RULE_HDRS_MAX  64  /* header fields rules set, and names they remove */

struct scan_task {
	const struct scan_env *env;
	const struct config *cfg;
	const struct policy *pol;
	const struct scan_input *in;
	int64_t deadline_ms; /* 0: none */

	/* who sent it: the client, or the last untrusted hop in relay mode */
	char client_ip[64];
	char helo[256];
	bool relayed;

	struct scan_hdrs hdrs;
	struct scan_msg msg;

	struct scan_spf spf;
	struct scan_dkim_sig dkim[SCAN_DKIM_MAX];
	size_t ndkim;
	struct scan_dmarc dmarc;
	struct scan_arc arc;

	/* symbols: at most one entry per id; details appended */
	bool has[SCAN_SYM_COUNT];
	double extra[SCAN_SYM_COUNT]; /* score added to the default (weights, rspamd) */
	char *detail[SCAN_SYM_COUNT];
	enum scan_sym_id order[SCAN_SYM_COUNT];
	size_t nsyms;

	bool tempfail;
	char tempfail_reason[200];

	/* administrator rules (scan_rules.c) */
	bool skip[RULE_CHECK_COUNT];                           /* checks a rule skips */
	enum scan_verdict checks_verdict;                      /* what the checks alone decide */
	const struct rule_action *hdr_set[SCAN_RULE_HDRS_MAX]; /* later rules replace earlier */
	size_t nhdr_set;
	const char *hdr_remove[SCAN_RULE_HDRS_MAX]; /* names of incoming fields removed */
	size_t nhdr_remove;
};

/* Emit a symbol; fmt (may be NULL) adds a detail. Repeated calls add details. */
void scan_sym(struct scan_task *t, enum scan_sym_id id, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Emit a symbol with score added to its default (zone weights, rspamd's score). */
void scan_sym_score(struct scan_task *t, enum scan_sym_id id, double add, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
bool scan_has(const struct scan_task *t, enum scan_sym_id id);
/* A required service is unavailable: the verdict will be tempfail. */
void scan_tempfail(struct scan_task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Milliseconds left before the deadline (INT64_MAX without one; 0 when past). */
int64_t scan_remaining_ms(const struct scan_task *t);
/* A deadline for one wait: min(task deadline, now + ms). */
int64_t scan_deadline_in(const struct scan_task *t, uint64_t ms);

/* DNS through env->dns, each call bounded by dns_timeout and the deadline. */
enum dns_status scan_dns_txt(struct scan_task *t, const char *name, struct dns_txt_result *out);
enum dns_status scan_dns_addr(struct scan_task *t, const char *name, int family,
                              struct dns_addr_result *out);
enum dns_status scan_dns_mx(struct scan_task *t, const char *domain, struct dns_mx_result *out);
enum dns_status scan_dns_ptr(struct scan_task *t, const char *ip, struct dns_ptr_result *out);

/* Is domain (lower case) one of the protected domains? */
bool scan_domain_protected(const struct scan_task *t, const char *domain);

/* --- the checks, in the order scan_run() calls them --- */

/* scan_hdr.c: relay mode (the last untrusted hop), HELO, incoming fields claiming moat's id */
void scan_check_origin(struct scan_task *t);
/* scan_mime.c: parse with GMime into t->msg; critical defects become symbols */
void scan_mime_parse(struct scan_task *t);
void scan_mime_free(struct scan_msg *m);
/* scan_url.c: links of the text and HTML parts into t->msg.urls */
void scan_url_extract(struct scan_task *t);
void scan_url_free(struct scan_msg *m);
/*
 * The one URL host parser: the host of url (scheme://, // or www.)
 * normalised as in struct scan_url; userinfo (may be NULL) gets the part
 * before '@'.
 */
bool scan_url_host(const char *url, char *host, size_t hostsize, bool *ip_literal, char *userinfo,
                   size_t usize);
/* scan_spf.c */
void scan_check_spf(struct scan_task *t);
/* scan_dkim.c: DKIM signatures, then the ARC chain */
void scan_check_dkim(struct scan_task *t);
void scan_check_arc(struct scan_task *t);
/* scan_dmarc.c: needs the SPF and DKIM results */
void scan_check_dmarc(struct scan_task *t);
/* scan_dnsbl.c: the client address and the link domains */
void scan_check_dnsbl(struct scan_task *t);
/* scan_attach.c: names, types, archives, macros */
void scan_check_attachments(struct scan_task *t);
/* scan_phish.c: display names, lookalikes, links, Reply-To */
void scan_check_phish(struct scan_task *t);
/* scan_clamd.c */
void scan_check_clamd(struct scan_task *t);
/* scan_spam.c: GTUBE, rspamd */
void scan_check_gtube(struct scan_task *t);
void scan_check_rspamd(struct scan_task *t);

/* --- administrator rules (scan_rules.c, the model in src/policy/rules.h) --- */

/*
 * After the MIME parse, before the checks: rules whose conditions are
 * known by then and that skip checks mark them in t->skip.
 */
void scan_rules_before(struct scan_task *t);
/* After the checks and the lists, before the verdict: every rule's actions. */
void scan_rules_after(struct scan_task *t);
/* Does a rule remove (or replace with set-header) this incoming field? */
bool scan_rules_strip(const struct scan_task *t, const struct scan_hdr *h);

/* --- the verdict (scan.c) --- */

/* The sum of the symbols' scores so far. */
double scan_task_score(const struct scan_task *t);
/* The verdict for score, without side effects; reason is safe to send. */
enum scan_verdict scan_decide(const struct scan_task *t, double score, char *reason, size_t size);

/* scan_dmarc.c: organizational domain (public suffix list) into out; false if none */
bool scan_org_domain(const char *domain, char *out, size_t size);

#endif
