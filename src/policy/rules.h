/*
 * rules.h - administrator mail-flow rules, modelled on Exchange transport
 * rules (PRODUCT.md "Rules"): the model and its one text grammar.
 *
 * A rule has a name, a priority (lowest first), enabled, stop ("stop
 * processing more rules"), conditions that must all match ("if"),
 * exceptions of which none may match ("unless") and actions ("then").
 * Each condition and action is one line of text:
 *
 *   sender-ip CIDR[,CIDR...]        the effective client (relay mode: the
 *                                   last untrusted hop)
 *   sender ADDR|@DOMAIN[,...]       envelope sender or the From address
 *   recipient ADDR|@DOMAIN[,...]    any recipient
 *   header NAME REGEX               POSIX extended, case-insensitive, on
 *                                   every occurrence's unfolded value
 *   attachment GLOB[,...]           fnmatch, case-insensitive, on every
 *                                   candidate file name of every part
 *   verdict deliver|quarantine|reject   what the checks alone decide
 *   score >= N | score < N          the score so far
 *   symbol NAME                     a scan symbol is present
 *
 *   score N | quarantine | reject | deliver
 *   set-header NAME: VALUE | remove-header NAME
 *   skip spf|dkim|dmarc|arc|dnsbl|attachments|phish|gtube|rspamd
 *
 * The config file seeds rules as text ([rule NAME] sections) and the store
 * will keep the same text: both build a rule with rule_new() from a
 * struct rule_spec, so the grammar lives here once (STYLE.md 7) and the
 * admin API's errors read like the config file's. A rule is immutable once
 * built; the policy that holds it frees it.
 */
#ifndef MOAT_RULES_H
#define MOAT_RULES_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include "../common/cidr.h"

#define RULES_MAX             1000    /* rules in a policy */
#define RULE_ITEMS_MAX        32      /* conditions, exceptions, actions: each */
#define RULE_LIST_MAX         256     /* items of one list (CIDR_LIST_MAX too) */
#define RULE_NAME_MAX         64      /* octets of a rule name */
#define RULE_PRIORITY_MAX     1000000 /* priorities are 0..this */
#define RULE_REGEX_MAX        512     /* octets of a header pattern */
#define RULE_REGEX_REPEAT_MAX 1000    /* product of a pattern's {n,m} bounds */
#define RULE_REGEX_DEPTH_MAX  8       /* groups nested in a pattern */
#define RULE_GLOB_MAX         255     /* octets of an attachment glob */
#define RULE_HDR_NAME_MAX     76      /* octets of a header field name */
#define RULE_HDR_VALUE_MAX    256     /* octets of a set-header value */
#define RULE_TEXT_MAX         4096    /* octets of one condition or action line */

enum rule_cond_kind {
	RULE_C_SENDER_IP,
	RULE_C_SENDER,
	RULE_C_RECIPIENT,
	RULE_C_HEADER,
	RULE_C_ATTACHMENT,
	/* known only after the checks */
	RULE_C_VERDICT,
	RULE_C_SCORE_GE,
	RULE_C_SCORE_LT,
	RULE_C_SYMBOL,
};

/* The outcome a verdict condition names (the checks' verdict, not tempfail). */
enum rule_verdict {
	RULE_V_DELIVER,
	RULE_V_QUARANTINE,
	RULE_V_REJECT,
};

struct rule_cond {
	enum rule_cond_kind kind;
	char *text;            /* the line as written, trimmed */
	struct cidr_list *ips; /* sender-ip */
	char **items; /* sender, recipient: lower-case ADDR or @DOMAIN; attachment: globs */
	size_t nitems;
	char *hdr_name; /* header */
	regex_t *re;    /* header: REG_EXTENDED | REG_ICASE | REG_NOSUB */
	enum rule_verdict verdict;
	double score;    /* score >= / < */
	unsigned symbol; /* symbol: enum scan_sym_id */
};

/* Checks a rule may skip. Malware scanning (clamd) is never one of them. */
enum rule_check {
	RULE_CHECK_SPF,
	RULE_CHECK_DKIM,
	RULE_CHECK_DMARC,
	RULE_CHECK_ARC,
	RULE_CHECK_DNSBL,
	RULE_CHECK_ATTACHMENTS,
	RULE_CHECK_PHISH,
	RULE_CHECK_GTUBE,
	RULE_CHECK_RSPAMD,
	RULE_CHECK_COUNT
};

enum rule_action_kind {
	RULE_A_SCORE,
	RULE_A_QUARANTINE,
	RULE_A_REJECT,
	RULE_A_DELIVER,
	RULE_A_SET_HEADER,
	RULE_A_REMOVE_HEADER,
	RULE_A_SKIP,
};

struct rule_action {
	enum rule_action_kind kind;
	char *text;      /* the line as written, trimmed */
	double score;    /* score */
	char *hdr_name;  /* set-header, remove-header */
	char *hdr_value; /* set-header */
	enum rule_check check;
};

struct rule {
	char *name;
	unsigned priority; /* lowest first; unique in a policy */
	bool enabled;
	bool stop; /* stop processing more rules when this one matches */
	struct rule_cond *conds;
	size_t nconds;
	struct rule_cond *except;
	size_t nexcept;
	struct rule_action *acts;
	size_t nacts;
	bool early; /* every condition and exception is known before the checks */
	bool skips; /* has a skip action */
};

/* A rule as text: what the config file and the store hold. */
struct rule_spec {
	const char *name;
	unsigned priority;
	bool enabled;
	bool stop;
	const char *const *ifs;
	size_t nifs;
	const char *const *unless;
	size_t nunless;
	const char *const *then;
	size_t nthen;
};

/*
 * Parse one condition ("sender-ip 192.0.2.0/24") or action line. 0, or -1
 * with a message in err (without file or line: the caller adds them).
 * A parsed item is released with rule_cond_clear() / rule_action_clear().
 */
int rule_cond_parse(const char *text, struct rule_cond *out, char *err, size_t errsize);
void rule_cond_clear(struct rule_cond *c);
int rule_action_parse(const char *text, struct rule_action *out, char *err, size_t errsize);
void rule_action_clear(struct rule_action *a);

/* Is name a rule name (1..RULE_NAME_MAX letters, digits, blanks, '-', '_', '.')? */
bool rule_name_ok(const char *name);

/* Build a rule from its text; NULL with a message in err. */
struct rule *rule_new(const struct rule_spec *spec, char *err, size_t errsize);
void rule_free(struct rule *r);

/* Is this condition known before the checks run (not verdict, score, symbol)? */
bool rule_cond_early(const struct rule_cond *c);
/* "spf", "dkim", ... */
const char *rule_check_name(enum rule_check c);
/* Order by priority (qsort on struct rule *). */
int rule_cmp_priority(const void *a, const void *b);

#endif
