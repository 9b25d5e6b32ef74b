/*
 * rules.c - the one parser of administrator rules (see rules.h).
 *
 * Every line is "KEYWORD ARGUMENTS"; keywords are case-insensitive. Lists
 * are separated by commas (and blanks, except attachment globs, which may
 * hold blanks). Everything a rule can hold is bounded here, so that the
 * config file, the store and the admin API all get the same limits.
 *
 * Header patterns are POSIX extended expressions compiled once here. The
 * matcher must stay polynomial on the sender's text: back-references are
 * refused, and the bounds of {n,m} repetitions are limited (their product,
 * an over-estimate of nesting, at most RULE_REGEX_REPEAT_MAX).
 */
#include "rules.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/mailaddr.h"
#include "../common/util.h"

/* Scan symbol names, for `symbol NAME` (the same files as scan.h's enum). */
static const char *const rule_sym_names[] = {
#define SCAN_SYM(name, score, flags, doc) #name,
#include "../scan/symbols/all.def"
#undef SCAN_SYM
};

static const char *const rule_check_names[RULE_CHECK_COUNT] = {
        [RULE_CHECK_SPF] = "spf",       [RULE_CHECK_DKIM] = "dkim",
        [RULE_CHECK_DMARC] = "dmarc",   [RULE_CHECK_ARC] = "arc",
        [RULE_CHECK_DNSBL] = "dnsbl",   [RULE_CHECK_ATTACHMENTS] = "attachments",
        [RULE_CHECK_PHISH] = "phish",   [RULE_CHECK_GTUBE] = "gtube",
        [RULE_CHECK_RSPAMD] = "rspamd",
};

static const char *const rule_verdict_names[] = {
        [RULE_V_DELIVER] = "deliver",
        [RULE_V_QUARANTINE] = "quarantine",
        [RULE_V_REJECT] = "reject",
};

/* Header fields a rule may neither set nor remove: moat's own, and MIME's. */
static const char *const rule_hdr_reserved[] = {
        "Received",
        "Authentication-Results",
        "MIME-Version",
};

__attribute__((format(printf, 3, 4))) static int
rule_error(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
	return -1;
}

/* At most this many octets of s for a message (attacker text never reaches here). */
static int
rule_shown(size_t len)
{
	return (int)(len > 80 ? 80 : len);
}

const char *
rule_check_name(enum rule_check c)
{
	return (size_t)c < RULE_CHECK_COUNT ? rule_check_names[c] : "unknown";
}

bool
rule_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > RULE_NAME_MAX || name[0] == ' ' || name[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != ' ' && c != '-' && c != '_' && c != '.')
			return false;
	}
	return true;
}

/* A header field name: RFC 5322 ftext (printable ASCII but ':'), bounded. */
static bool
rule_hdr_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > RULE_HDR_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

/* May a rule set or remove this field? Not moat's own, not one MIME reads. */
static bool
rule_hdr_reserved_name(const char *name)
{
	for (size_t i = 0; i < nitems(rule_hdr_reserved); i++)
		if (strcasecmp(name, rule_hdr_reserved[i]) == 0)
			return true;
	return strncasecmp(name, "X-Moat-", 7) == 0 || strncasecmp(name, "Content-", 8) == 0;
}

/* A finite number within +-10000. */
static int
rule_parse_number(const char *s, double *out)
{
	char *end;
	double d;

	if (*s == '\0' || strlen(s) > 32)
		return -1;
	errno = 0;
	d = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(d) || d < -10000 || d > 10000)
		return -1;
	*out = d;
	return 0;
}

static void
rule_items_free(char **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/*
 * Split a list into items: separated by commas, and by blanks too when
 * blanks is set. Items are trimmed; empty items are skipped.
 */
static int
rule_split(const char *s, bool blanks, char ***out, size_t *n, const char *what, char *err,
           size_t errsize)
{
	const char *seps = blanks ? ", \t" : ",";

	*out = NULL;
	*n = 0;
	while (*s) {
		size_t len;

		s += strspn(s, seps);
		s += strspn(s, " \t");
		len = strcspn(s, seps);
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len == 0) {
			s += strcspn(s, seps);
			continue;
		}
		if (*n == RULE_LIST_MAX) {
			rule_items_free(*out, *n);
			*out = NULL;
			*n = 0;
			return rule_error(err, errsize, "%s: more than %d items", what,
			                  RULE_LIST_MAX);
		}
		*out = xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = xstrndup(s, len);
		s += strcspn(s, seps);
	}
	if (*n == 0)
		return rule_error(err, errsize, "%s: at least one item is needed", what);
	return 0;
}

/* ADDR or @DOMAIN, lower-cased in place; false when neither. */
static bool
rule_addr_item(char *item)
{
	struct mailaddr a;
	char *probe;
	bool ok;

	if (strlen(item) > MAILADDR_PATH_MAX)
		return false;
	probe = item[0] == '@' ? xasprintf("postmaster%s", item) : xstrdup(item);
	ok = mailaddr_parse(probe, strlen(probe), MAILADDR_F_NO_ANGLES | MAILADDR_F_SMTPUTF8, &a,
	                    NULL) == MAILADDR_OK &&
	     !a.literal && !(item[0] == '@' && strchr(item + 1, '@'));
	free(probe);
	if (ok)
		str_lower(item);
	return ok;
}

static int
rule_parse_addrs(const char *kw, const char *args, struct rule_cond *c, char *err, size_t errsize)
{
	if (rule_split(args, true, &c->items, &c->nitems, kw, err, errsize) < 0)
		return -1;
	for (size_t i = 0; i < c->nitems; i++)
		if (!rule_addr_item(c->items[i]))
			return rule_error(err, errsize, "%s: '%.*s' is not an address or @domain",
			                  kw, rule_shown(strlen(c->items[i])), c->items[i]);
	return 0;
}

static int
rule_parse_globs(const char *args, struct rule_cond *c, char *err, size_t errsize)
{
	if (rule_split(args, false, &c->items, &c->nitems, "attachment", err, errsize) < 0)
		return -1;
	for (size_t i = 0; i < c->nitems; i++) {
		const char *g = c->items[i];

		if (strlen(g) > RULE_GLOB_MAX)
			return rule_error(err, errsize,
			                  "attachment: a pattern is longer than %d octets",
			                  RULE_GLOB_MAX);
		for (const char *q = g; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				return rule_error(err, errsize,
				                  "attachment: control character in '%.*s'",
				                  rule_shown(strlen(g)), g);
	}
	return 0;
}

/* An interval "{n}", "{n,}" or "{n,m}" at *pp: multiplies *product; *pp on its last octet. */
static int
rule_regex_interval(const char **pp, unsigned long *product)
{
	const char *p = *pp + 1;
	unsigned long n = 0, m;

	for (; isdigit((unsigned char)*p) && n <= RULE_REGEX_REPEAT_MAX; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	m = n;
	if (*p == ',') {
		m = 0;
		for (p++; isdigit((unsigned char)*p) && m <= RULE_REGEX_REPEAT_MAX; p++)
			m = m * 10 + (unsigned long)(*p - '0');
		if (m < n)
			m = n; /* {n,}: n copies and a star */
	}
	*pp = *p == '}' ? p : p - 1;
	*product *= m > 0 ? m : 1;
	return *product > RULE_REGEX_REPEAT_MAX ? -1 : 0;
}

/*
 * Keep a pattern small once compiled and polynomial to match: no
 * back-references, no repetition of a repetition (a**, a+{2}: glibc
 * expands each), groups nested at most RULE_REGEX_DEPTH_MAX deep, and
 * {n,m} bounds whose product stays at most RULE_REGEX_REPEAT_MAX.
 */
static int
rule_regex_bounded(const char *re, char *err, size_t errsize)
{
	unsigned long product = 1;
	bool bracket = false, quant = false;
	unsigned depth = 0;

	for (const char *p = re; *p; p++) {
		bool was_quant = quant;
		bool interval = *p == '{' && isdigit((unsigned char)p[1]);

		quant = false;
		if (bracket) {
			if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
				const char *close = strstr(p + 2, (char[]){p[1], ']', '\0'});

				if (close == NULL)
					break; /* regcomp reports it */
				p = close + 1;
			} else if (*p == ']') {
				bracket = false;
			}
			continue;
		}
		if ((*p == '*' || *p == '+' || *p == '?' || interval) && was_quant)
			return rule_error(err, errsize,
			                  "header: a repetition of a repetition is not allowed");
		if (*p == '\\') {
			if (p[1] >= '1' && p[1] <= '9')
				return rule_error(err, errsize,
				                  "header: back-references (\\%c) are not allowed",
				                  p[1]);
			if (p[1] != '\0')
				p++;
		} else if (*p == '[') {
			bracket = true;
			if (p[1] == '^')
				p++;
			if (p[1] == ']')
				p++; /* a ']' first in the set is literal */
		} else if (*p == '(') {
			if (++depth > RULE_REGEX_DEPTH_MAX)
				return rule_error(err, errsize,
				                  "header: groups nested deeper than %d",
				                  RULE_REGEX_DEPTH_MAX);
		} else if (*p == ')') {
			depth -= depth > 0;
		} else if (*p == '*' || *p == '+' || *p == '?') {
			quant = true;
		} else if (interval) {
			if (rule_regex_interval(&p, &product) < 0)
				return rule_error(
				        err, errsize,
				        "header: repetition bounds multiply to more than %d",
				        RULE_REGEX_REPEAT_MAX);
			quant = true;
		}
	}
	return 0;
}

static int
rule_parse_header(const char *args, struct rule_cond *c, char *err, size_t errsize)
{
	size_t nlen = strcspn(args, " \t");
	const char *re = args + nlen;
	char msg[160];
	int rc;

	re += strspn(re, " \t");
	if (!rule_hdr_name_ok(args, nlen))
		return rule_error(err, errsize, "header: '%.*s' is not a header field name",
		                  rule_shown(nlen), args);
	if (*re == '\0')
		return rule_error(err, errsize, "header: NAME REGEX expected (no pattern)");
	if (strlen(re) > RULE_REGEX_MAX)
		return rule_error(err, errsize, "header: the pattern is longer than %d octets",
		                  RULE_REGEX_MAX);
	for (const char *q = re; *q; q++)
		if ((unsigned char)*q < 0x20 && *q != '\t')
			return rule_error(err, errsize, "header: control character in the pattern");
	if (rule_regex_bounded(re, err, errsize) < 0)
		return -1;
	c->hdr_name = xstrndup(args, nlen);
	c->re = xmalloc(sizeof(*c->re));
	if ((rc = regcomp(c->re, re, REG_EXTENDED | REG_ICASE | REG_NOSUB)) != 0) {
		regerror(rc, c->re, msg, sizeof(msg));
		free(c->re);
		c->re = NULL;
		return rule_error(err, errsize, "header: bad pattern '%.*s': %s",
		                  rule_shown(strlen(re)), re, msg);
	}
	return 0;
}

static int
rule_parse_score_cond(const char *args, struct rule_cond *c, char *err, size_t errsize)
{
	const char *p = args;

	if (strncmp(p, ">=", 2) == 0) {
		c->kind = RULE_C_SCORE_GE;
		p += 2;
	} else if (*p == '<' && p[1] != '=') {
		c->kind = RULE_C_SCORE_LT;
		p += 1;
	} else {
		return rule_error(err, errsize, "score: '>= N' or '< N' expected");
	}
	p += strspn(p, " \t");
	if (rule_parse_number(p, &c->score) < 0)
		return rule_error(err, errsize, "score: '%.*s' is not a number within +-10000",
		                  rule_shown(strlen(p)), p);
	return 0;
}

static int
rule_parse_symbol(const char *args, struct rule_cond *c, char *err, size_t errsize)
{
	for (size_t i = 0; i < nitems(rule_sym_names); i++) {
		if (strcasecmp(args, rule_sym_names[i]) == 0) {
			c->symbol = (unsigned)i;
			return 0;
		}
	}
	return rule_error(err, errsize, "symbol: '%.*s' is not a scan symbol (docs/SCAN.md)",
	                  rule_shown(strlen(args)), args);
}

/* Split "KEYWORD ARGS" of a trimmed line; kw gets the keyword, lower case. */
static const char *
rule_keyword(const char *line, char *kw, size_t size)
{
	size_t n = strcspn(line, " \t");

	if (n >= size)
		n = size - 1;
	memcpy(kw, line, n);
	kw[n] = '\0';
	str_lower(kw);
	line += strcspn(line, " \t");
	return line + strspn(line, " \t");
}

/* The line trimmed into a new string; -1 when too long, empty or holding controls. */
static int
rule_line(const char *text, char **out, const char *what, char *err, size_t errsize)
{
	size_t n;

	text += strspn(text, " \t");
	n = strnlen(text, RULE_TEXT_MAX + 1);
	if (n > RULE_TEXT_MAX)
		return rule_error(err, errsize, "%s longer than %d octets", what, RULE_TEXT_MAX);
	while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' ||
	                 text[n - 1] == '\n'))
		n--;
	if (n == 0)
		return rule_error(err, errsize, "empty %s", what);
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)text[i] < 0x20 && text[i] != '\t') || text[i] == 0x7f)
			return rule_error(err, errsize, "control character in %s", what);
	*out = xstrndup(text, n);
	return 0;
}

int
rule_cond_parse(const char *text, struct rule_cond *out, char *err, size_t errsize)
{
	char kw[32];
	const char *args;
	int r;

	memset(out, 0, sizeof(*out));
	if (rule_line(text, &out->text, "condition", err, errsize) < 0)
		return -1;
	args = rule_keyword(out->text, kw, sizeof(kw));
	if (*args == '\0')
		r = rule_error(err, errsize, "condition '%.*s' needs a value",
		               rule_shown(strlen(kw)), kw);
	else if (strcmp(kw, "sender-ip") == 0) {
		out->kind = RULE_C_SENDER_IP;
		out->ips = xmalloc(sizeof(*out->ips));
		r = cidr_list_parse(args, out->ips, err, errsize);
		if (r == 0 && out->ips->n == 0)
			r = rule_error(err, errsize, "sender-ip: at least one range is needed");
		else if (r < 0) {
			char why[160];

			str_copy(why, err, sizeof(why));
			r = rule_error(err, errsize, "sender-ip: %s", why);
		}
	} else if (strcmp(kw, "sender") == 0) {
		out->kind = RULE_C_SENDER;
		r = rule_parse_addrs(kw, args, out, err, errsize);
	} else if (strcmp(kw, "recipient") == 0) {
		out->kind = RULE_C_RECIPIENT;
		r = rule_parse_addrs(kw, args, out, err, errsize);
	} else if (strcmp(kw, "header") == 0) {
		out->kind = RULE_C_HEADER;
		r = rule_parse_header(args, out, err, errsize);
	} else if (strcmp(kw, "attachment") == 0) {
		out->kind = RULE_C_ATTACHMENT;
		r = rule_parse_globs(args, out, err, errsize);
	} else if (strcmp(kw, "verdict") == 0) {
		out->kind = RULE_C_VERDICT;
		r = -1;
		for (size_t i = 0; i < nitems(rule_verdict_names) && r < 0; i++)
			if (strcasecmp(args, rule_verdict_names[i]) == 0) {
				out->verdict = (enum rule_verdict)i;
				r = 0;
			}
		if (r < 0)
			rule_error(err, errsize,
			           "verdict: '%.*s' is not deliver, quarantine or reject",
			           rule_shown(strlen(args)), args);
	} else if (strcmp(kw, "score") == 0) {
		r = rule_parse_score_cond(args, out, err, errsize);
	} else if (strcmp(kw, "symbol") == 0) {
		out->kind = RULE_C_SYMBOL;
		r = rule_parse_symbol(args, out, err, errsize);
	} else {
		r = rule_error(err, errsize,
		               "unknown condition '%.*s' (sender-ip, sender, recipient, header, "
		               "attachment, verdict, score, symbol)",
		               rule_shown(strlen(kw)), kw);
	}
	if (r < 0)
		rule_cond_clear(out);
	return r;
}

void
rule_cond_clear(struct rule_cond *c)
{
	free(c->text);
	free(c->ips);
	rule_items_free(c->items, c->nitems);
	free(c->hdr_name);
	if (c->re) {
		regfree(c->re);
		free(c->re);
	}
	memset(c, 0, sizeof(*c));
}

bool
rule_cond_early(const struct rule_cond *c)
{
	return c->kind != RULE_C_VERDICT && c->kind != RULE_C_SCORE_GE &&
	       c->kind != RULE_C_SCORE_LT && c->kind != RULE_C_SYMBOL;
}

static int
rule_parse_set_header(const char *args, struct rule_action *a, char *err, size_t errsize)
{
	const char *colon = strchr(args, ':');
	size_t nlen = colon ? (size_t)(colon - args) : 0;
	const char *v;
	size_t vlen;

	while (nlen > 0 && (args[nlen - 1] == ' ' || args[nlen - 1] == '\t'))
		nlen--;
	if (colon == NULL || !rule_hdr_name_ok(args, nlen))
		return rule_error(err, errsize, "set-header: NAME: VALUE expected");
	v = colon + 1;
	v += strspn(v, " \t");
	vlen = strlen(v);
	if (vlen == 0)
		return rule_error(err, errsize, "set-header: the value is empty");
	if (vlen > RULE_HDR_VALUE_MAX)
		return rule_error(err, errsize, "set-header: the value is longer than %d octets",
		                  RULE_HDR_VALUE_MAX);
	for (size_t i = 0; i < vlen; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return rule_error(err, errsize,
			                  "set-header: the value must be printable ASCII");
	a->hdr_name = xstrndup(args, nlen);
	a->hdr_value = xstrdup(v);
	return 0;
}

int
rule_action_parse(const char *text, struct rule_action *out, char *err, size_t errsize)
{
	char kw[32];
	const char *args;
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (rule_line(text, &out->text, "action", err, errsize) < 0)
		return -1;
	args = rule_keyword(out->text, kw, sizeof(kw));
	if (strcmp(kw, "quarantine") == 0 || strcmp(kw, "reject") == 0 ||
	    strcmp(kw, "deliver") == 0) {
		out->kind = kw[0] == 'q'   ? RULE_A_QUARANTINE
		            : kw[0] == 'r' ? RULE_A_REJECT
		                           : RULE_A_DELIVER;
		if (*args)
			r = rule_error(err, errsize, "%s takes no value", kw);
	} else if (strcmp(kw, "score") == 0) {
		out->kind = RULE_A_SCORE;
		if (rule_parse_number(args, &out->score) < 0)
			r = rule_error(err, errsize, "score: '%.*s' is not a number within +-10000",
			               rule_shown(strlen(args)), args);
	} else if (strcmp(kw, "set-header") == 0) {
		out->kind = RULE_A_SET_HEADER;
		r = rule_parse_set_header(args, out, err, errsize);
	} else if (strcmp(kw, "remove-header") == 0) {
		out->kind = RULE_A_REMOVE_HEADER;
		if (!rule_hdr_name_ok(args, strlen(args)))
			r = rule_error(err, errsize,
			               "remove-header: '%.*s' is not a header field name",
			               rule_shown(strlen(args)), args);
		else
			out->hdr_name = xstrdup(args);
	} else if (strcmp(kw, "skip") == 0) {
		out->kind = RULE_A_SKIP;
		r = -1;
		for (size_t i = 0; i < RULE_CHECK_COUNT && r < 0; i++)
			if (strcasecmp(args, rule_check_names[i]) == 0) {
				out->check = (enum rule_check)i;
				r = 0;
			}
		if (r < 0 && strcasecmp(args, "clamd") == 0)
			rule_error(err, errsize, "skip: malware scanning (clamd) is never skipped");
		else if (r < 0)
			rule_error(err, errsize,
			           "skip: '%.*s' is not spf, dkim, dmarc, arc, dnsbl, attachments, "
			           "phish, gtube or rspamd",
			           rule_shown(strlen(args)), args);
	} else if (strcmp(kw, "route") == 0) {
		r = rule_error(err, errsize,
		               "route is not supported yet: delivery routes are per domain");
	} else {
		r = rule_error(err, errsize,
		               "unknown action '%.*s' (score, quarantine, reject, deliver, "
		               "set-header, remove-header, skip)",
		               rule_shown(strlen(kw)), kw);
	}
	if (r == 0 && out->hdr_name && rule_hdr_reserved_name(out->hdr_name))
		r = rule_error(err, errsize,
		               "%s: %s is moat's or MIME's (Received, Authentication-Results, "
		               "X-Moat-*, MIME-Version, Content-*)",
		               kw, out->hdr_name);
	if (r < 0)
		rule_action_clear(out);
	return r;
}

void
rule_action_clear(struct rule_action *a)
{
	free(a->text);
	free(a->hdr_name);
	free(a->hdr_value);
	memset(a, 0, sizeof(*a));
}

/* Parse n condition lines into a new array; -1 with err naming the line. */
static int
rule_conds(const char *what, const char *const *text, size_t n, struct rule_cond **out, char *err,
           size_t errsize)
{
	char why[512];

	if (n > RULE_ITEMS_MAX)
		return rule_error(err, errsize, "more than %d '%s' lines", RULE_ITEMS_MAX, what);
	*out = xcalloc(n ? n : 1, sizeof(**out));
	for (size_t i = 0; i < n; i++)
		if (rule_cond_parse(text[i], &(*out)[i], why, sizeof(why)) < 0)
			return rule_error(err, errsize, "%s: %s", what, why);
	return 0;
}

struct rule *
rule_new(const struct rule_spec *s, char *err, size_t errsize)
{
	struct rule *r = xcalloc(1, sizeof(*r));
	unsigned outcomes = 0;
	char why[512];

	if (s->name == NULL || !rule_name_ok(s->name)) {
		rule_error(err, errsize,
		           "'%.*s' is not a rule name (1 to %d letters, digits, blanks, '-', '_', "
		           "'.')",
		           rule_shown(s->name ? strlen(s->name) : 0), s->name ? s->name : "",
		           RULE_NAME_MAX);
		goto fail;
	}
	r->name = xstrdup(s->name);
	if (s->priority > RULE_PRIORITY_MAX) {
		rule_error(err, errsize, "priority %u is over %d", s->priority, RULE_PRIORITY_MAX);
		goto fail;
	}
	r->priority = s->priority;
	r->enabled = s->enabled;
	r->stop = s->stop;
	r->nconds = s->nifs;
	if (rule_conds("if", s->ifs, s->nifs, &r->conds, err, errsize) < 0)
		goto fail;
	r->nexcept = s->nunless;
	if (rule_conds("unless", s->unless, s->nunless, &r->except, err, errsize) < 0)
		goto fail;
	if (s->nthen == 0) {
		rule_error(err, errsize, "a rule needs at least one 'then' action");
		goto fail;
	}
	if (s->nthen > RULE_ITEMS_MAX) {
		rule_error(err, errsize, "more than %d 'then' lines", RULE_ITEMS_MAX);
		goto fail;
	}
	r->acts = xcalloc(s->nthen, sizeof(*r->acts));
	r->nacts = s->nthen;
	for (size_t i = 0; i < s->nthen; i++) {
		const struct rule_action *a = &r->acts[i];

		if (rule_action_parse(s->then[i], &r->acts[i], why, sizeof(why)) < 0) {
			rule_error(err, errsize, "then: %s", why);
			goto fail;
		}
		if (a->kind == RULE_A_QUARANTINE || a->kind == RULE_A_REJECT ||
		    a->kind == RULE_A_DELIVER)
			outcomes |= 1u << a->kind;
		r->skips |= a->kind == RULE_A_SKIP;
	}
	if (outcomes & (outcomes - 1)) {
		rule_error(err, errsize, "conflicting actions: one of quarantine, reject, deliver");
		goto fail;
	}
	r->early = true;
	for (size_t i = 0; i < r->nconds; i++)
		r->early &= rule_cond_early(&r->conds[i]);
	for (size_t i = 0; i < r->nexcept; i++)
		r->early &= rule_cond_early(&r->except[i]);
	if (r->skips && !r->early) {
		rule_error(err, errsize,
		           "skip runs before the checks: its rule may only use sender-ip, sender, "
		           "recipient, header and attachment conditions");
		goto fail;
	}
	return r;
fail:
	rule_free(r);
	return NULL;
}

void
rule_free(struct rule *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; r->conds && i < r->nconds; i++)
		rule_cond_clear(&r->conds[i]);
	for (size_t i = 0; r->except && i < r->nexcept; i++)
		rule_cond_clear(&r->except[i]);
	for (size_t i = 0; r->acts && i < r->nacts; i++)
		rule_action_clear(&r->acts[i]);
	free(r->conds);
	free(r->except);
	free(r->acts);
	free(r->name);
	free(r);
}

int
rule_cmp_priority(const void *a, const void *b)
{
	const struct rule *x = *(const struct rule *const *)a, *y = *(const struct rule *const *)b;

	return x->priority < y->priority ? -1 : x->priority > y->priority;
}
