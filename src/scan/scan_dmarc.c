/*
 * scan_dmarc.c - DMARC: does an SPF or DKIM pass align with the From
 * domain, and what does that domain ask for when none does? Also the
 * organizational domain (public suffix list) the rest of the scan uses.
 *
 * RFC 7489: the RFC5322.From domain (6.6.1: no From, several addresses
 * with different domains or an unusable one is a permerror), policy
 * discovery (6.6.3) at _dmarc.<From domain> then at the organizational
 * domain (3.2) where sp= applies, record selection (records not starting
 * with v=DMARC1 discarded, more than one: no policy), tags (6.3: v first,
 * p, sp, adkim, aspf, pct; unknown tags ignored), identifier alignment
 * (3.1: strict or relaxed through the organizational domain), the pct
 * sampling (6.6.4: a message not sampled gets the next lower policy,
 * reject -> quarantine -> none). RFC 5890 / 5891 (IDNA: a U-label From
 * domain is looked up as its A-label form).
 *
 * Choices:
 *  - pct is sampled per message with a random draw (arc4random), as the
 *    RFC says: with pct=50 and p=reject, half the failing messages get
 *    DMARC_FAIL_REJECT, the other half DMARC_FAIL_QUARANTINE.
 *  - SPF aligns only through the MAIL FROM identity: an SPF pass of the
 *    HELO identity (null sender) never aligns (as in DMARCbis).
 *  - A record without a valid p= is used as p=none when it has a valid
 *    rua= URI, else no policy applies (6.6.3 step 6); an invalid sp= is
 *    ignored in favour of p= (DMARCbis), other invalid values take their
 *    defaults.
 *  - Any DNS failure other than NXDOMAIN / NODATA is a temperror.
 *  - The public suffix list: psl_latest(NULL) (the newer of the system
 *    file and libpsl's built-in list), psl_builtin() if that fails, and
 *    the last two labels if both fail; loaded once, on first use, under
 *    pthread_once. The private section counts (github.io, ...), as in
 *    OpenDMARC.
 */
#include "scan_internal.h"

#include <idn2.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

#define DMARC_RECORD_MAX 4096 /* octets of one record parsed */
#define DMARC_TAGS_MAX   64   /* tags of one record parsed */
#define DMARC_URIS_MAX   32   /* rua URIs looked at */
#define DMARC_PREFIX     "_dmarc."

enum dmarc_p {
	DMARC_P_INVALID,
	DMARC_P_NONE,
	DMARC_P_QUARANTINE,
	DMARC_P_REJECT,
};

static const char *const dmarc_p_names[] = {
        [DMARC_P_INVALID] = "",
        [DMARC_P_NONE] = "none",
        [DMARC_P_QUARANTINE] = "quarantine",
        [DMARC_P_REJECT] = "reject",
};

struct dmarc_record {
	enum dmarc_p p, sp; /* sp: DMARC_P_INVALID when absent or invalid */
	bool adkim_strict, aspf_strict;
	unsigned pct;
	bool rua_ok; /* rua= holds at least one syntactically valid URI */
};

/* --- the organizational domain --- */

static pthread_once_t dmarc_psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *dmarc_psl;

static void
dmarc_psl_load(void)
{
	dmarc_psl = psl_latest(NULL);
	if (dmarc_psl == NULL)
		dmarc_psl = psl_builtin();
}

bool
scan_org_domain(const char *domain, char *out, size_t size)
{
	char buf[DNS_NAME_MAX + 2];
	size_t len;
	const char *org;

	if (domain == NULL || size == 0)
		return false;
	len = strnlen(domain, sizeof(buf));
	if (len > 1 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX || domain[0] == '.')
		return false;
	memcpy(buf, domain, len);
	buf[len] = '\0';
	str_lower(buf);
	if (strstr(buf, "..") != NULL)
		return false;
	pthread_once(&dmarc_psl_once, dmarc_psl_load);
	if (dmarc_psl != NULL) {
		org = psl_registrable_domain(dmarc_psl, buf);
	} else {
		/* no list at all: the last two labels */
		const char *last = strrchr(buf, '.');

		org = NULL;
		if (last != NULL) {
			org = buf;
			for (const char *p = last - 1; p > buf; p--)
				if (*p == '.') {
					org = p + 1;
					break;
				}
		}
	}
	if (org == NULL || *org == '\0' || strlen(org) >= size)
		return false;
	str_copy(out, org, size);
	return true;
}

/* --- records --- */

static void dmarc_why(char *why, size_t size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The reason, truncated to fit. */
static void
dmarc_why(char *why, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
}

static bool
dmarc_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* s[0..*len) with white space around it removed. */
static const char *
dmarc_trim(const char *s, size_t *len)
{
	while (*len > 0 && (dmarc_wsp(s[0]) || s[0] == '\r' || s[0] == '\n')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (dmarc_wsp(s[*len - 1]) || s[*len - 1] == '\r' || s[*len - 1] == '\n'))
		(*len)--;
	return s;
}

/* Does the record start with the v=DMARC1 tag (6.6.3 step 2)? */
static bool
dmarc_is_record(const char *txt)
{
	size_t i = 0;

	while (dmarc_wsp(txt[i]))
		i++;
	if (txt[i] != 'v' && txt[i] != 'V')
		return false;
	i++;
	while (dmarc_wsp(txt[i]))
		i++;
	if (txt[i++] != '=')
		return false;
	while (dmarc_wsp(txt[i]))
		i++;
	if (strncmp(txt + i, "DMARC1", 6) != 0)
		return false;
	i += 6;
	while (dmarc_wsp(txt[i]))
		i++;
	return txt[i] == '\0' || txt[i] == ';';
}

static enum dmarc_p
dmarc_parse_p(const char *v, size_t len)
{
	for (size_t i = DMARC_P_NONE; i < nitems(dmarc_p_names); i++)
		if (strlen(dmarc_p_names[i]) == len && mem_ieq(v, dmarc_p_names[i], len))
			return (enum dmarc_p)i;
	return DMARC_P_INVALID;
}

/* URI = scheme ":" something (RFC 3986 3.1), enough to tell a valid rua. */
static bool
dmarc_uri_ok(const char *s, size_t len)
{
	size_t i = 0;

	s = dmarc_trim(s, &len);
	if (len == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (i = 1; i < len && s[i] != ':'; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '-' || c == '.'))
			return false;
	}
	return i + 1 < len;
}

static bool
dmarc_rua_ok(const char *v, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i <= len && n < DMARC_URIS_MAX;) {
		const char *comma = memchr(v + i, ',', len - i);
		size_t l = comma ? (size_t)(comma - (v + i)) : len - i;

		if (dmarc_uri_ok(v + i, l))
			return true;
		n++;
		if (comma == NULL)
			break;
		i += l + 1;
	}
	return false;
}

/* Parse the tags of a record that passed dmarc_is_record(). */
static void
dmarc_parse(const char *txt, struct dmarc_record *r)
{
	size_t len = strnlen(txt, DMARC_RECORD_MAX), ntags = 0;

	memset(r, 0, sizeof(*r));
	r->pct = 100;
	for (size_t i = 0; i < len && ntags < DMARC_TAGS_MAX; ntags++) {
		const char *semi = memchr(txt + i, ';', len - i);
		size_t tl = semi ? (size_t)(semi - (txt + i)) : len - i;
		const char *tag = txt + i, *eq, *v;
		size_t nl, vl;
		uint64_t pct;

		i += tl + 1;
		tag = dmarc_trim(tag, &tl);
		eq = memchr(tag, '=', tl);
		if (eq == NULL)
			continue;
		nl = (size_t)(eq - tag);
		vl = tl - nl - 1;
		tag = dmarc_trim(tag, &nl);
		v = dmarc_trim(eq + 1, &vl);
		if (nl == 1 && mem_ieq(tag, "p", 1)) {
			r->p = dmarc_parse_p(v, vl);
		} else if (nl == 2 && mem_ieq(tag, "sp", 2)) {
			r->sp = dmarc_parse_p(v, vl);
		} else if (nl == 5 && mem_ieq(tag, "adkim", 5)) {
			r->adkim_strict = vl == 1 && (v[0] == 's' || v[0] == 'S');
		} else if (nl == 4 && mem_ieq(tag, "aspf", 4)) {
			r->aspf_strict = vl == 1 && (v[0] == 's' || v[0] == 'S');
		} else if (nl == 3 && mem_ieq(tag, "pct", 3)) {
			if (parse_u64(v, vl, 100, &pct) == 0)
				r->pct = (unsigned)pct;
		} else if (nl == 3 && mem_ieq(tag, "rua", 3)) {
			r->rua_ok = dmarc_rua_ok(v, vl);
		}
		/* other tags (ruf, fo, rf, ri, unknown) do not change the result */
	}
}

/* The outcome of looking for a record at one name. */
enum dmarc_lookup {
	DMARC_FOUND,
	DMARC_ABSENT,   /* no record: try the organizational domain */
	DMARC_NOPOLICY, /* several records: no DMARC processing */
	DMARC_TEMP,
};

static enum dmarc_lookup
dmarc_lookup(struct scan_task *t, const char *domain, struct dmarc_record *rec, char *why,
             size_t whysize)
{
	char name[DNS_NAME_MAX + sizeof(DMARC_PREFIX)];
	struct dns_txt_result r;
	enum dns_status st;
	const char *found = NULL;
	size_t nfound = 0;
	enum dmarc_lookup res;

	snprintf(name, sizeof(name), DMARC_PREFIX "%s", domain);
	st = scan_dns_txt(t, name, &r);
	if (st == DNS_NXDOMAIN || st == DNS_NODATA) {
		dmarc_why(why, whysize, "no record at %s", name);
		return DMARC_ABSENT;
	}
	if (st != DNS_OK) {
		dmarc_why(why, whysize, "lookup of %s: %s", name, dns_status_str(st));
		scan_dns_txt_free(&r);
		return DMARC_TEMP;
	}
	for (size_t i = 0; i < r.n; i++)
		if (dmarc_is_record(r.txt[i]) && nfound++ == 0)
			found = r.txt[i];
	if (nfound == 1) {
		dmarc_parse(found, rec);
		res = DMARC_FOUND;
	} else if (nfound > 1) {
		dmarc_why(why, whysize, "%zu records at %s", nfound, name);
		res = DMARC_NOPOLICY;
	} else if (r.truncated) {
		dmarc_why(why, whysize, "too many TXT records at %s", name);
		res = DMARC_NOPOLICY;
	} else {
		dmarc_why(why, whysize, "no record at %s", name);
		res = DMARC_ABSENT;
	}
	scan_dns_txt_free(&r);
	return res;
}

/* --- alignment --- */

/* A domain we can look up: labels of letters, digits, '-', '_'; lower-cased into out. */
static bool
dmarc_domain_ok(const char *d, char *out, size_t size)
{
	size_t len = strnlen(d, DNS_NAME_MAX + 2), label = 0;

	if (len > 1 && d[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX - (sizeof(DMARC_PREFIX) - 1) || len >= size)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = d[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_') ||
		    ++label > DNS_LABEL_MAX)
			return false;
	}
	if (label == 0)
		return false;
	memcpy(out, d, len);
	out[len] = '\0';
	str_lower(out);
	return true;
}

/* The From domain as an A-label name (RFC 5891) into out. */
static bool
dmarc_from_ascii(const char *domain, char *out, size_t size)
{
	char *ace = NULL;
	bool ok;

	for (const char *p = domain; *p; p++) {
		if ((unsigned char)*p >= 0x80) {
			if (idn2_to_ascii_8z(domain, &ace, IDN2_NONTRANSITIONAL) != IDN2_OK)
				return false;
			ok = dmarc_domain_ok(ace, out, size);
			idn2_free(ace);
			return ok;
		}
	}
	return dmarc_domain_ok(domain, out, size);
}

/* 3.1: is the authenticated domain id aligned with the From domain? */
static bool
dmarc_aligned(const char *id, const char *from, const char *from_org, bool strict)
{
	char d[DNS_NAME_MAX + 1], org[DNS_NAME_MAX + 1];

	if (id == NULL || !dmarc_domain_ok(id, d, sizeof(d)))
		return false;
	if (strcmp(d, from) == 0)
		return true;
	if (strict || from_org[0] == '\0')
		return false;
	return scan_org_domain(d, org, sizeof(org)) && strcmp(org, from_org) == 0;
}

/* The From domain of the message, or NULL with why set (6.6.1). */
static const char *
dmarc_from_domain(const struct scan_task *t, char *why, size_t whysize, bool *multi)
{
	const char *d;

	if (t->msg.nfrom == 0 || t->msg.from == NULL) {
		dmarc_why(why, whysize, "no From address");
		return NULL;
	}
	d = t->msg.from[0].domain;
	for (size_t i = 0; i < t->msg.nfrom; i++) {
		const char *di = t->msg.from[i].domain;

		if (di == NULL || di[0] == '\0') {
			dmarc_why(why, whysize, "From address without a domain");
			return NULL;
		}
		if (!str_ieq(di, d)) {
			dmarc_why(why, whysize, "From addresses in different domains");
			*multi = true;
			return NULL;
		}
	}
	return d;
}

static void
dmarc_finish(struct scan_task *t, enum scan_auth res, enum scan_sym_id sym, const char *why)
{
	t->dmarc.result = res;
	str_copy(t->dmarc.reason, why, sizeof(t->dmarc.reason));
	scan_sym(t, sym, "%s", t->dmarc.domain[0] ? t->dmarc.domain : "-");
}

void
scan_check_dmarc(struct scan_task *t)
{
	char from[DNS_NAME_MAX + 1], org[DNS_NAME_MAX + 1] = "", why[160] = "";
	const char *raw;
	struct dmarc_record rec;
	enum dmarc_lookup lk;
	enum dmarc_p policy;
	bool at_org = false, multi = false;

	memset(&t->dmarc, 0, sizeof(t->dmarc));
	raw = dmarc_from_domain(t, why, sizeof(why), &multi);
	if (raw == NULL) {
		if (multi) /* the reader may show the one the sender forged */
			scan_sym(t, SYM_DMARC_MULTIPLE_FROM, NULL);
		dmarc_finish(t, SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, why);
		return;
	}
	if (!dmarc_from_ascii(raw, from, sizeof(from))) {
		str_copy(t->dmarc.domain, raw, sizeof(t->dmarc.domain));
		for (char *p = t->dmarc.domain; *p; p++) /* a log-safe form of what was there */
			if ((unsigned char)*p < 0x21 || *p == '(' || *p == ')' || *p == '\\')
				*p = '?';
		dmarc_finish(t, SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, "unusable From domain");
		return;
	}
	str_copy(t->dmarc.domain, from, sizeof(t->dmarc.domain));
	if (!scan_org_domain(from, org, sizeof(org)))
		org[0] = '\0'; /* From is a public suffix: alignment must be exact */

	/* 6.6.3: the From domain, then its organizational domain */
	lk = dmarc_lookup(t, from, &rec, why, sizeof(why));
	if (lk == DMARC_ABSENT && org[0] != '\0' && strcmp(org, from) != 0) {
		lk = dmarc_lookup(t, org, &rec, why, sizeof(why));
		at_org = true;
	}
	if (lk == DMARC_TEMP) {
		dmarc_finish(t, SCAN_AUTH_TEMPERROR, SYM_DMARC_TEMPERROR, why);
		return;
	}
	if (lk != DMARC_FOUND) {
		dmarc_finish(t, SCAN_AUTH_NONE, SYM_DMARC_NONE, why);
		return;
	}
	if (rec.p == DMARC_P_INVALID) {
		if (!rec.rua_ok) {
			dmarc_finish(t, SCAN_AUTH_NONE, SYM_DMARC_NONE,
			             "record without a valid p=");
			return;
		}
		rec.p = DMARC_P_NONE; /* 6.6.3 step 6.1 */
	}
	policy = at_org && rec.sp != DMARC_P_INVALID ? rec.sp : rec.p;

	/* 3.1: identifier alignment */
	t->dmarc.spf_aligned = t->spf.result == SCAN_AUTH_PASS && !t->spf.helo &&
	                       dmarc_aligned(t->spf.domain, from, org, rec.aspf_strict);
	for (size_t i = 0; i < t->ndkim && i < SCAN_DKIM_MAX && !t->dmarc.dkim_aligned; i++)
		t->dmarc.dkim_aligned =
		        t->dkim[i].result == SCAN_AUTH_PASS &&
		        dmarc_aligned(t->dkim[i].domain, from, org, rec.adkim_strict);
	if (t->dmarc.spf_aligned || t->dmarc.dkim_aligned) {
		str_copy(t->dmarc.policy, dmarc_p_names[policy], sizeof(t->dmarc.policy));
		dmarc_why(why, sizeof(why), "%s aligned", t->dmarc.dkim_aligned ? "DKIM" : "SPF");
		dmarc_finish(t, SCAN_AUTH_PASS, SYM_DMARC_PASS, why);
		return;
	}

	/* 6.6.4: a message outside the pct sample gets the next lower policy */
	if (policy != DMARC_P_NONE && rec.pct < 100 && arc4random_uniform(100) >= rec.pct) {
		policy = policy == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
		dmarc_why(why, sizeof(why), "no aligned pass; outside pct=%u", rec.pct);
	} else {
		dmarc_why(why, sizeof(why), "no aligned pass");
	}
	str_copy(t->dmarc.policy, dmarc_p_names[policy], sizeof(t->dmarc.policy));
	dmarc_finish(t, SCAN_AUTH_FAIL,
	             policy == DMARC_P_REJECT       ? SYM_DMARC_FAIL_REJECT
	             : policy == DMARC_P_QUARANTINE ? SYM_DMARC_FAIL_QUARANTINE
	                                            : SYM_DMARC_FAIL_NONE,
	             why);
}
