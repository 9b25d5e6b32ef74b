/*
 * scan_spf.c - Sender Policy Framework: is the client allowed to send
 * mail for the envelope sender's domain?
 *
 * RFC 7208: check_host() (section 4) with the MAIL FROM identity, or the
 * HELO identity (postmaster@helo) for the null sender (2.4); record
 * selection from TXT only (4.5, 3.1); the record grammar (4.6, 12) parsed
 * whole before anything is evaluated, so that any syntax error is a
 * permerror; mechanisms all, include, a, mx, ptr, ip4, ip6, exists (5)
 * with dual CIDR lengths; modifiers redirect and exp (6), each at most
 * once, unknown modifiers ignored; macros (7) with every letter,
 * transformers, delimiters and URL escaping; the processing limits
 * (4.6.4): 10 terms that query DNS, 10 MX hosts, 10 PTR names, 2 void
 * lookups.
 *
 * Choices:
 *  - Our own implementation rather than libspf2 (unmaintained, several
 *    CVEs, its own resolver): every lookup goes through scan_dns_*(),
 *    bounded by dns_timeout and the task's deadline; a lookup that runs
 *    out of time is a temperror, so SPF never waits beyond the deadline.
 *  - Any DNS failure other than NXDOMAIN / NODATA (SERVFAIL, timeout,
 *    REFUSED) is a temperror (4.4, 5).
 *  - A name that the resolver would refuse (src/dns accepts letters,
 *    digits, '-' and '_' in labels), e.g. a macro expanding a local part
 *    holding '+', is never queried: the mechanism does not match, as if
 *    the name did not exist (it counts as a void lookup).
 *  - The explanation (exp=) is fetched only for a fail of the record the
 *    result came from, and kept, sanitised, in the reason.
 *  - The PTR names of the client (ptr mechanism, %{p}) are validated once
 *    per check and reused; %{p} does not count toward the DNS terms.
 *  - IPv4-mapped IPv6 clients (::ffff:192.0.2.1) are IPv4 clients.
 */
#include "scan_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/util.h"

#define SPF_DNS_TERMS_MAX 10                      /* 4.6.4: include, a, mx, ptr, exists, redirect */
#define SPF_VOID_MAX      2                       /* 4.6.4: lookups answered NXDOMAIN / NODATA */
#define SPF_MX_MAX        10                      /* 4.6.4: MX hosts of one mx mechanism */
#define SPF_PTR_MAX       10                      /* 4.6.4: PTR names validated */
#define SPF_RECORD_MAX    4096                    /* octets of one record; longer is a permerror */
#define SPF_TERMS_MAX     128                     /* terms of one record; more is a permerror */
#define SPF_DEPTH_MAX     (SPF_DNS_TERMS_MAX + 1) /* include / redirect nesting */
#define SPF_EXPAND_MAX    2048                    /* octets of one macro expansion */
#define SPF_PARTS_MAX     256 /* parts of one macro value split on its delimiters */
#define SPF_EXP_MAX       512 /* octets of an explanation kept */

/* A term's outcome while evaluating. */
enum spf_match {
	SPF_NOMATCH,
	SPF_MATCH,
	SPF_TEMP,
	SPF_PERM,
};

enum spf_kind {
	SPF_ALL,
	SPF_INCLUDE,
	SPF_A,
	SPF_MX,
	SPF_PTR,
	SPF_IP4,
	SPF_IP6,
	SPF_EXISTS,
};

static const struct {
	const char *name;
	enum spf_kind kind;
} spf_mechs[] = {
        {"all", SPF_ALL}, {"include", SPF_INCLUDE}, {"a", SPF_A},     {"mx", SPF_MX},
        {"ptr", SPF_PTR}, {"ip4", SPF_IP4},         {"ip6", SPF_IP6}, {"exists", SPF_EXISTS},
};

struct spf_term {
	enum spf_kind kind;
	enum scan_auth qual;
	const char *text; /* the term as written, for the reason */
	size_t text_len;
	const char *spec; /* domain-spec (a macro string); NULL: the current domain */
	size_t spec_len;
	unsigned cidr4, cidr6;
	unsigned char net[16]; /* ip4 / ip6 */
};

struct spf_record {
	char buf[SPF_RECORD_MAX + 1];
	struct spf_term term[SPF_TERMS_MAX];
	size_t nterms;
	const char *redirect, *exp;
	size_t redirect_len, exp_len;
};

/* One check_host() evaluation, with the counters its limits need. */
struct spf_eval {
	struct scan_task *t;
	int family; /* AF_INET or AF_INET6 */
	unsigned char ip[16];
	char ip_str[INET6_ADDRSTRLEN];
	char local[256];                      /* %{l} */
	char sender_domain[DNS_NAME_MAX + 1]; /* %{o} */
	char helo[256];                       /* %{h} */
	unsigned dns_terms;
	unsigned voids;
	/* validated PTR names of the client, computed once */
	bool ptr_done;
	enum dns_status ptr_status;
	size_t nptr;
	char ptr[SPF_PTR_MAX][DNS_NAME_MAX + 1];
	char reason[160];
	char explanation[SPF_EXP_MAX];
};

static void spf_reason(struct spf_eval *e, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
spf_reason(struct spf_eval *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
	va_end(ap);
}

static bool
spf_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
spf_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
spf_host_char(unsigned char c)
{
	return spf_alpha(c) || spf_digit(c) || c == '-' || c == '_';
}

static char
spf_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * A name the resolver will look up: 1 to 253 octets, labels of 1 to 63
 * letters, digits, '-' or '_' (one trailing dot allowed); multi: at least
 * two labels (4.3).
 */
static bool
spf_name_ok(const char *name, bool multi)
{
	size_t labels = dns_name_labels(name);

	return labels > 0 && (!multi || labels >= 2);
}

/* The client's address from text; IPv4-mapped IPv6 becomes IPv4. */
static bool
spf_parse_client(struct spf_eval *e, const char *ip)
{
	struct in6_addr a6;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (inet_pton(AF_INET, ip, e->ip) == 1) {
		e->family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &a6) == 1) {
		if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
			e->family = AF_INET;
			memcpy(e->ip, a6.s6_addr + 12, 4);
		} else {
			e->family = AF_INET6;
			memcpy(e->ip, a6.s6_addr, 16);
		}
	} else {
		return false;
	}
	return inet_ntop(e->family, e->ip, e->ip_str, sizeof(e->ip_str)) != NULL;
}

/* Do the first bits of a and b agree? */
static bool
spf_prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[bytes] ^ b[bytes]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

/* Is the address in ss the client's, within the CIDR length of its family? */
static bool
spf_addr_match(const struct spf_eval *e, const struct sockaddr_storage *ss, unsigned cidr4,
               unsigned cidr6)
{
	if (ss->ss_family != e->family)
		return false;
	if (e->family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		return spf_prefix_eq((const unsigned char *)&sin->sin_addr, e->ip, cidr4);
	}
	return spf_prefix_eq(((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr, e->ip, cidr6);
}

/* --- macros (section 7) --- */

static bool
spf_delimiter(char c)
{
	return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

static bool
spf_macro_letter(char c, bool exp)
{
	c = spf_lower(c);
	if (c == 'c' || c == 'r' || c == 't')
		return exp;
	return c == 's' || c == 'l' || c == 'o' || c == 'd' || c == 'i' || c == 'p' || c == 'h' ||
	       c == 'v';
}

/*
 * Length of the macro-expand at s[0] == '%' (0 when malformed):
 * "%{" letter *DIGIT ["r"] *delimiter "}", "%%", "%_", "%-".
 */
static size_t
spf_macro_len(const char *s, size_t len, bool exp)
{
	size_t i = 2;
	bool digits = false;
	unsigned long n = 0;

	if (len < 2)
		return 0;
	if (s[1] == '%' || s[1] == '_' || s[1] == '-')
		return 2;
	if (s[1] != '{' || len < 4 || !spf_macro_letter(s[2], exp))
		return 0;
	for (i = 3; i < len && spf_digit((unsigned char)s[i]); i++) {
		digits = true;
		if (n < 100000)
			n = n * 10 + (unsigned long)(s[i] - '0');
	}
	if (digits && n == 0)
		return 0; /* 7.1: the DIGIT transformer must be nonzero */
	if (i < len && spf_lower(s[i]) == 'r')
		i++;
	while (i < len && spf_delimiter(s[i]))
		i++;
	return i < len && s[i] == '}' ? i + 1 : 0;
}

/*
 * Is s[0..len) a macro-string (exp: an explain-string, which also allows
 * SP and the letters c, r, t)? *ends_macro: its last token is a
 * macro-expand.
 */
static bool
spf_macro_string_ok(const char *s, size_t len, bool exp, bool *ends_macro)
{
	bool macro = false;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			size_t n = spf_macro_len(s + i, len - i, exp);

			if (n == 0)
				return false;
			i += n;
			macro = true;
		} else if ((c >= 0x21 && c <= 0x7e) || (exp && c == ' ')) {
			i++;
			macro = false;
		} else {
			return false;
		}
	}
	if (ends_macro)
		*ends_macro = macro;
	return true;
}

/*
 * domain-spec = macro-string domain-end; domain-end = ( "." toplabel
 * [ "." ] ) / macro-expand.
 */
static bool
spf_domain_spec_ok(const char *s, size_t len)
{
	bool ends_macro, alpha = false, hyphen = false;
	size_t end = len, start;

	if (len == 0 || !spf_macro_string_ok(s, len, false, &ends_macro))
		return false;
	if (ends_macro)
		return true;
	if (s[end - 1] == '.')
		end--;
	for (start = end; start > 0 && s[start - 1] != '.'; start--) {
		unsigned char c = (unsigned char)s[start - 1];

		if (spf_alpha(c))
			alpha = true;
		else if (c == '-')
			hyphen = true;
		else if (!spf_digit(c))
			return false;
	}
	if (start == 0 || start == end) /* no "." before the top label, or it is empty */
		return false;
	/* toplabel: alphanumerics with a letter, or with inner hyphens */
	if (s[start] == '-' || s[end - 1] == '-')
		return false;
	return alpha || hyphen;
}

/* The value of macro letter c (lower case), into out. */
static void spf_macro_value(struct spf_eval *e, char c, const char *domain, char *out, size_t size);

/* Append n octets to out (size, *used); false when it does not fit. */
static bool
spf_put(char *out, size_t size, size_t *used, const char *s, size_t n)
{
	if (n >= size - *used)
		return false;
	memcpy(out + *used, s, n);
	*used += n;
	out[*used] = '\0';
	return true;
}

/* 7.3: unreserved characters are kept, others written %XX. */
static bool
spf_put_escaped(char *out, size_t size, size_t *used, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[3] = {'%', hex[c >> 4], hex[c & 0xf]};

		if (spf_alpha(c) || spf_digit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			if (!spf_put(out, size, used, s + i, 1))
				return false;
		} else if (!spf_put(out, size, used, esc, 3)) {
			return false;
		}
	}
	return true;
}

/*
 * Expand one "%{...}" at m (its length n, checked by spf_macro_len()):
 * split the value on the delimiters, reverse, keep the rightmost parts,
 * join with dots, URL-escape for an upper-case letter (7.3).
 */
static bool
spf_expand_one(struct spf_eval *e, const char *m, size_t n, const char *domain, char *out,
               size_t size, size_t *used)
{
	char value[SPF_EXPAND_MAX], joined[SPF_EXPAND_MAX], delims[8];
	const char *part[SPF_PARTS_MAX];
	size_t plen[SPF_PARTS_MAX], nparts = 0, ndelims = 0, i = 3, keep, jlen = 0;
	unsigned long digits = 0;
	bool reverse = false, upper = m[2] >= 'A' && m[2] <= 'Z';

	spf_macro_value(e, spf_lower(m[2]), domain, value, sizeof(value));
	for (; i < n && spf_digit((unsigned char)m[i]); i++)
		if (digits < 100000)
			digits = digits * 10 + (unsigned long)(m[i] - '0');
	if (i < n && spf_lower(m[i]) == 'r') {
		reverse = true;
		i++;
	}
	for (; i < n - 1 && ndelims < sizeof(delims) - 1; i++)
		delims[ndelims++] = m[i];
	delims[ndelims] = '\0';
	if (ndelims == 0)
		memcpy(delims, ".", 2);

	/* split on any of the delimiters */
	for (const char *p = value;;) {
		size_t l = strcspn(p, delims);

		if (nparts == SPF_PARTS_MAX)
			return false;
		part[nparts] = p;
		plen[nparts++] = l;
		if (p[l] == '\0')
			break;
		p += l + 1;
	}
	if (reverse) {
		for (size_t a = 0, b = nparts - 1; a < b; a++, b--) {
			const char *tp = part[a];
			size_t tl = plen[a];

			part[a] = part[b];
			plen[a] = plen[b];
			part[b] = tp;
			plen[b] = tl;
		}
	}
	keep = digits > 0 && digits < nparts ? (size_t)digits : nparts;
	joined[0] = '\0';
	for (size_t k = nparts - keep; k < nparts; k++) {
		if (k > nparts - keep && !spf_put(joined, sizeof(joined), &jlen, ".", 1))
			return false;
		if (!spf_put(joined, sizeof(joined), &jlen, part[k], plen[k]))
			return false;
	}
	if (upper)
		return spf_put_escaped(out, size, used, joined, jlen);
	return spf_put(out, size, used, joined, jlen);
}

/* Expand the macro string s[0..len) (already checked) into out. */
static bool
spf_expand(struct spf_eval *e, const char *s, size_t len, bool exp, const char *domain, char *out,
           size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < len;) {
		size_t n;

		if (s[i] != '%') {
			if (!spf_put(out, size, &used, s + i, 1))
				return false;
			i++;
			continue;
		}
		n = spf_macro_len(s + i, len - i, exp);
		if (n == 0)
			return false;
		if (s[i + 1] == '%' || s[i + 1] == '_') {
			if (!spf_put(out, size, &used, s[i + 1] == '%' ? "%" : " ", 1))
				return false;
		} else if (s[i + 1] == '-') {
			if (!spf_put(out, size, &used, "%20", 3))
				return false;
		} else if (!spf_expand_one(e, s + i, n, domain, out, size, &used)) {
			return false;
		}
		i += n;
	}
	return true;
}

/*
 * Expand a domain-spec into a name to look up (4.8): without a trailing
 * dot, labels removed from the left until it fits in 253 octets. False
 * when the expansion overflows (a permerror).
 */
static bool
spf_expand_domain(struct spf_eval *e, const char *spec, size_t len, const char *domain,
                  char out[DNS_NAME_MAX + 1])
{
	char buf[SPF_EXPAND_MAX];
	const char *p = buf;
	size_t n;

	if (!spf_expand(e, spec, len, false, domain, buf, sizeof(buf)))
		return false;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	while (n > DNS_NAME_MAX) {
		const char *dot = memchr(p, '.', n);

		if (dot == NULL) {
			out[0] = '\0'; /* one label too long: no name */
			return true;
		}
		n -= (size_t)(dot + 1 - p);
		p = dot + 1;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	for (size_t i = 0; i < n; i++)
		out[i] = spf_lower(out[i]);
	return true;
}

/* --- DNS-backed pieces --- */

/* The validated PTR names of the client (5.5), looked up once. */
static void
spf_ptr_load(struct spf_eval *e, enum dns_status *st)
{
	struct dns_ptr_result r;
	size_t n;

	if (e->ptr_done) {
		*st = e->ptr_status;
		return;
	}
	e->ptr_done = true;
	*st = e->ptr_status = scan_dns_ptr(e->t, e->ip_str, &r);
	if (*st != DNS_OK)
		return;
	n = r.n < SPF_PTR_MAX ? r.n : SPF_PTR_MAX;
	for (size_t i = 0; i < n; i++) {
		struct dns_addr_result a;

		if (!spf_name_ok(r.name[i], false) ||
		    scan_dns_addr(e->t, r.name[i], e->family, &a) != DNS_OK)
			continue; /* 5.5: a name that fails to resolve is skipped */
		for (size_t k = 0; k < a.naddrs; k++) {
			if (spf_addr_match(e, &a.addr[k], 32, 128)) {
				str_copy(e->ptr[e->nptr++], r.name[i], DNS_NAME_MAX + 1);
				break;
			}
		}
	}
}

/* Is name equal to domain or one of its subdomains (case-insensitive)? */
static bool
spf_name_within(const char *name, const char *domain)
{
	size_t nl = strlen(name), dl = strlen(domain);

	if (dl == 0 || nl < dl)
		return false;
	if (!mem_ieq(name + nl - dl, domain, dl))
		return false;
	return nl == dl || name[nl - dl - 1] == '.';
}

static void
spf_macro_value(struct spf_eval *e, char c, const char *domain, char *out, size_t size)
{
	enum dns_status st;
	const char *best = NULL;
	size_t used = 0;

	out[0] = '\0';
	switch (c) {
	case 's':
		snprintf(out, size, "%s@%s", e->local, e->sender_domain);
		break;
	case 'l':
		str_copy(out, e->local, size);
		break;
	case 'o':
		str_copy(out, e->sender_domain, size);
		break;
	case 'd':
		str_copy(out, domain, size);
		break;
	case 'h':
		str_copy(out, e->helo, size);
		break;
	case 'c':
		str_copy(out, e->ip_str, size);
		break;
	case 'v':
		str_copy(out, e->family == AF_INET ? "in-addr" : "ip6", size);
		break;
	case 'i':
		if (e->family == AF_INET) {
			str_copy(out, e->ip_str, size);
			break;
		}
		for (size_t i = 0; i < 16; i++) { /* 7.3: dot-separated nibbles */
			static const char hex[] = "0123456789abcdef";
			char nib[4] = {hex[e->ip[i] >> 4], '.', hex[e->ip[i] & 0xf], '.'};

			if (!spf_put(out, size, &used, nib, i == 15 ? 3 : 4))
				break;
		}
		break;
	case 'p':
		/* 7.3: a validated name, the domain itself or a subdomain first */
		spf_ptr_load(e, &st);
		for (size_t i = 0; i < e->nptr && best == NULL; i++)
			if (str_ieq(e->ptr[i], domain))
				best = e->ptr[i];
		for (size_t i = 0; i < e->nptr && best == NULL; i++)
			if (spf_name_within(e->ptr[i], domain))
				best = e->ptr[i];
		if (best == NULL && e->nptr > 0)
			best = e->ptr[0];
		str_copy(out, best ? best : "unknown", size);
		break;
	case 'r': {
		const char *r = e->t->cfg ? e->t->cfg->authserv_id : NULL;

		str_copy(out, r && *r ? r : "unknown", size);
		break;
	}
	case 't':
		snprintf(out, size, "%lld", (long long)time(NULL));
		break;
	default:
		break;
	}
}

/* --- parsing a record (4.6, section 12) --- */

/* ip4-cidr-length / ip6-cidr-length at s[0] == '/': the value, or -1. */
static int
spf_parse_cidr(const char *s, size_t len, unsigned max)
{
	uint64_t v;

	if (len < 2 || s[0] != '/' || len > 4)
		return -1;
	if (s[1] == '0' && len > 2)
		return -1; /* no leading zeros */
	if (parse_u64(s + 1, len - 1, max, &v) != 0)
		return -1;
	return (int)v;
}

/* dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]: the whole of s. */
static bool
spf_parse_dual_cidr(const char *s, size_t len, unsigned *c4, unsigned *c6)
{
	const char *dd = NULL;
	int v;

	*c4 = 32;
	*c6 = 128;
	for (size_t i = 0; i + 1 < len; i++)
		if (s[i] == '/' && s[i + 1] == '/') {
			dd = s + i;
			break;
		}
	if (dd) {
		if ((v = spf_parse_cidr(dd + 1, len - (size_t)(dd + 1 - s), 128)) < 0)
			return false;
		*c6 = (unsigned)v;
		len = (size_t)(dd - s);
	}
	if (len == 0)
		return true;
	if ((v = spf_parse_cidr(s, len, 32)) < 0)
		return false;
	*c4 = (unsigned)v;
	return true;
}

/* ip4-network: four qnums without leading zeros. */
static bool
spf_parse_ip4(const char *s, size_t len, unsigned char out[4])
{
	char buf[16];
	size_t digits = 0, dots = 0;

	if (len == 0 || len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (digits == 0)
				return false;
			digits = 0;
			dots++;
		} else if (spf_digit((unsigned char)s[i])) {
			if (digits == 1 && s[i - 1] == '0')
				return false;
			digits++;
		} else {
			return false;
		}
	}
	if (dots != 3 || digits == 0)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, out) == 1;
}

static bool
spf_parse_ip6(const char *s, size_t len, unsigned char out[16])
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, out) == 1;
}

/* Split arg (after the mechanism name) into ":domain-spec" and a dual-cidr-length. */
static bool
spf_parse_spec_cidr(struct spf_term *tm, const char *arg, size_t len, bool cidr)
{
	size_t speclen = len;

	tm->cidr4 = 32;
	tm->cidr6 = 128;
	if (cidr) {
		/* the first '/' from which the rest is a dual-cidr-length */
		for (size_t i = 0; i < len; i++) {
			if (arg[i] == '/' &&
			    spf_parse_dual_cidr(arg + i, len - i, &tm->cidr4, &tm->cidr6)) {
				speclen = i;
				break;
			}
		}
	}
	if (speclen == 0)
		return true; /* no domain-spec: the current domain */
	if (arg[0] != ':' || !spf_domain_spec_ok(arg + 1, speclen - 1))
		return false;
	tm->spec = arg + 1;
	tm->spec_len = speclen - 1;
	return true;
}

/* One directive: [qualifier] mechanism. */
static bool
spf_parse_directive(struct spf_term *tm, const char *s, size_t len)
{
	size_t i = 0, nl;
	const char *arg;
	size_t alen;
	bool found = false;

	memset(tm, 0, sizeof(*tm));
	tm->text = s;
	tm->text_len = len;
	tm->qual = SCAN_AUTH_PASS;
	switch (s[0]) {
	case '+':
		i = 1;
		break;
	case '-':
		tm->qual = SCAN_AUTH_FAIL;
		i = 1;
		break;
	case '~':
		tm->qual = SCAN_AUTH_SOFTFAIL;
		i = 1;
		break;
	case '?':
		tm->qual = SCAN_AUTH_NEUTRAL;
		i = 1;
		break;
	default:
		break;
	}
	for (nl = i;
	     nl < len && (spf_alpha((unsigned char)s[nl]) || spf_digit((unsigned char)s[nl])); nl++)
		;
	for (size_t k = 0; k < nitems(spf_mechs); k++) {
		if (strlen(spf_mechs[k].name) == nl - i &&
		    mem_ieq(s + i, spf_mechs[k].name, nl - i)) {
			tm->kind = spf_mechs[k].kind;
			found = true;
			break;
		}
	}
	if (!found)
		return false;
	arg = s + nl;
	alen = len - nl;
	switch (tm->kind) {
	case SPF_ALL:
		return alen == 0;
	case SPF_INCLUDE:
	case SPF_EXISTS:
		return alen > 1 && spf_parse_spec_cidr(tm, arg, alen, false) && tm->spec != NULL;
	case SPF_A:
	case SPF_MX:
		return spf_parse_spec_cidr(tm, arg, alen, true);
	case SPF_PTR:
		return spf_parse_spec_cidr(tm, arg, alen, false);
	case SPF_IP4:
	case SPF_IP6: {
		const char *slash;
		size_t nlen;
		int v = tm->kind == SPF_IP4 ? 32 : 128;

		if (alen < 2 || arg[0] != ':')
			return false;
		slash = memchr(arg, '/', alen);
		nlen = slash ? (size_t)(slash - arg) - 1 : alen - 1;
		if (slash && (v = spf_parse_cidr(slash, alen - (size_t)(slash - arg),
		                                 tm->kind == SPF_IP4 ? 32 : 128)) < 0)
			return false;
		tm->cidr4 = tm->cidr6 = (unsigned)v;
		return tm->kind == SPF_IP4 ? spf_parse_ip4(arg + 1, nlen, tm->net)
		                           : spf_parse_ip6(arg + 1, nlen, tm->net);
	}
	}
	return false;
}

/* Parse a whole record (after selection) into rec; false on any syntax error. */
static bool
spf_parse_record(struct spf_record *rec, const char *txt, char *why, size_t whysize)
{
	size_t len = strlen(txt), i = 6; /* after "v=spf1" */

	if (len > SPF_RECORD_MAX) {
		snprintf(why, whysize, "record longer than %d octets", SPF_RECORD_MAX);
		return false;
	}
	memcpy(rec->buf, txt, len + 1);
	rec->nterms = 0;
	rec->redirect = rec->exp = NULL;
	rec->redirect_len = rec->exp_len = 0;
	while (i < len) {
		const char *s;
		size_t n = 0, name = 0;

		while (i < len && rec->buf[i] == ' ')
			i++;
		if (i == len)
			break;
		s = rec->buf + i;
		while (i + n < len && rec->buf[i + n] != ' ')
			n++;
		i += n;
		/* modifier: name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / - / _ / . ) */
		if (spf_alpha((unsigned char)s[0])) {
			name = 1;
			while (name < n &&
			       (spf_host_char((unsigned char)s[name]) || s[name] == '.'))
				name++;
		}
		if (name > 0 && name < n && s[name] == '=') {
			const char *v = s + name + 1;
			size_t vl = n - name - 1;
			bool redirect = name == 8 && mem_ieq(s, "redirect", 8);
			bool exp = name == 3 && mem_ieq(s, "exp", 3);

			if (redirect || exp) {
				if ((redirect ? rec->redirect : rec->exp) != NULL) {
					snprintf(why, whysize, "%s given twice",
					         redirect ? "redirect" : "exp");
					return false;
				}
				if (!spf_domain_spec_ok(v, vl))
					goto bad;
				if (redirect) {
					rec->redirect = v;
					rec->redirect_len = vl;
				} else {
					rec->exp = v;
					rec->exp_len = vl;
				}
			} else if (!spf_macro_string_ok(v, vl, true, NULL)) {
				goto bad; /* unknown modifiers are ignored, but must parse */
			}
			continue;
		}
		if (rec->nterms == SPF_TERMS_MAX) {
			snprintf(why, whysize, "more than %d terms", SPF_TERMS_MAX);
			return false;
		}
		if (!spf_parse_directive(&rec->term[rec->nterms], s, n))
			goto bad;
		rec->nterms++;
		continue;
	bad:
		snprintf(why, whysize, "syntax error in \"%.*s\"", n > 60 ? 60 : (int)n, s);
		return false;
	}
	return true;
}

/* Is txt an SPF version 1 record (4.5)? */
static bool
spf_is_record(const char *txt)
{
	return strnlen(txt, 7) >= 6 && mem_ieq(txt, "v=spf1", 6) &&
	       (txt[6] == '\0' || txt[6] == ' ');
}

/* --- evaluation --- */

static enum scan_auth spf_check_host(struct spf_eval *e, const char *domain, unsigned depth,
                                     bool in_include);

/* Count one term that queries DNS (4.6.4). */
static bool
spf_count_term(struct spf_eval *e)
{
	if (++e->dns_terms > SPF_DNS_TERMS_MAX) {
		spf_reason(e, "more than %d DNS-querying terms", SPF_DNS_TERMS_MAX);
		return false;
	}
	return true;
}

/* NXDOMAIN / NODATA of a term's lookup (4.6.4). */
static enum spf_match
spf_void(struct spf_eval *e)
{
	if (++e->voids > SPF_VOID_MAX) {
		spf_reason(e, "more than %d void lookups", SPF_VOID_MAX);
		return SPF_PERM;
	}
	return SPF_NOMATCH;
}

static enum spf_match
spf_dns_error(struct spf_eval *e, const char *what, const char *name, enum dns_status st)
{
	spf_reason(e, "%s lookup of %s: %s", what, name, dns_status_str(st));
	return SPF_TEMP;
}

/* The a mechanism (5.3), on one target name. */
static enum spf_match
spf_match_a(struct spf_eval *e, const char *target, unsigned c4, unsigned c6)
{
	struct dns_addr_result r;
	enum dns_status st;

	if (!spf_name_ok(target, false))
		return spf_void(e);
	st = scan_dns_addr(e->t, target, e->family, &r);
	if (st == DNS_NXDOMAIN || st == DNS_NODATA)
		return spf_void(e);
	if (st != DNS_OK)
		return spf_dns_error(e, "address", target, st);
	for (size_t i = 0; i < r.naddrs; i++)
		if (spf_addr_match(e, &r.addr[i], c4, c6))
			return SPF_MATCH;
	return SPF_NOMATCH;
}

/* The mx mechanism (5.4): no implicit MX, at most 10 hosts. */
static enum spf_match
spf_match_mx(struct spf_eval *e, const char *target, unsigned c4, unsigned c6)
{
	struct dns_mx_result *r;
	enum dns_status st;
	enum spf_match m = SPF_NOMATCH;
	bool temp = false;

	if (!spf_name_ok(target, false))
		return spf_void(e);
	r = xmalloc(sizeof(*r));
	st = scan_dns_mx(e->t, target, r);
	if (st == DNS_NXDOMAIN || st == DNS_NODATA || (st == DNS_OK && r->implicit)) {
		m = spf_void(e);
		goto out;
	}
	if (st != DNS_OK) {
		m = spf_dns_error(e, "MX", target, st);
		goto out;
	}
	if (r->nhosts > SPF_MX_MAX) {
		spf_reason(e, "%s has more than %d MX hosts", target, SPF_MX_MAX);
		m = SPF_PERM;
		goto out;
	}
	for (size_t h = 0; h < r->nhosts && m == SPF_NOMATCH; h++) {
		if (r->host[h].addr_status == DNS_TEMPFAIL)
			temp = true;
		for (size_t i = 0; i < r->host[h].naddrs; i++)
			if (spf_addr_match(e, &r->host[h].addr[i], c4, c6)) {
				m = SPF_MATCH;
				break;
			}
	}
	if (m == SPF_NOMATCH && temp)
		m = spf_dns_error(e, "MX host address", target, DNS_TEMPFAIL);
out:
	free(r);
	return m;
}

/* The ptr mechanism (5.5). */
static enum spf_match
spf_match_ptr(struct spf_eval *e, const char *target)
{
	enum dns_status st;

	spf_ptr_load(e, &st);
	if (st == DNS_NXDOMAIN || st == DNS_NODATA)
		return spf_void(e);
	for (size_t i = 0; i < e->nptr; i++)
		if (spf_name_within(e->ptr[i], target))
			return SPF_MATCH;
	return SPF_NOMATCH; /* 5.5: a DNS error makes the mechanism not match */
}

/* The exists mechanism (5.7): an A lookup whatever the client's family. */
static enum spf_match
spf_match_exists(struct spf_eval *e, const char *target)
{
	struct dns_addr_result r;
	enum dns_status st;

	if (!spf_name_ok(target, false))
		return spf_void(e);
	st = scan_dns_addr(e->t, target, AF_INET, &r);
	if (st == DNS_NXDOMAIN || st == DNS_NODATA)
		return spf_void(e);
	if (st != DNS_OK)
		return spf_dns_error(e, "exists", target, st);
	return r.naddrs > 0 ? SPF_MATCH : SPF_NOMATCH;
}

/* The include mechanism (5.2): its result mapped to match / no match / error. */
static enum spf_match
spf_match_include(struct spf_eval *e, const char *target, unsigned depth)
{
	switch (spf_check_host(e, target, depth + 1, true)) {
	case SCAN_AUTH_PASS:
		return SPF_MATCH;
	case SCAN_AUTH_FAIL:
	case SCAN_AUTH_SOFTFAIL:
	case SCAN_AUTH_NEUTRAL:
		return SPF_NOMATCH;
	case SCAN_AUTH_TEMPERROR:
		return SPF_TEMP;
	case SCAN_AUTH_NONE:
		spf_reason(e, "include:%s has no SPF record", target);
		return SPF_PERM;
	default:
		return SPF_PERM;
	}
}

/* Evaluate one mechanism against the client. */
static enum spf_match
spf_match_term(struct spf_eval *e, const struct spf_term *tm, const char *domain, unsigned depth)
{
	char target[DNS_NAME_MAX + 1];

	switch (tm->kind) {
	case SPF_ALL:
		return SPF_MATCH;
	case SPF_IP4:
		return e->family == AF_INET && spf_prefix_eq(tm->net, e->ip, tm->cidr4)
		               ? SPF_MATCH
		               : SPF_NOMATCH;
	case SPF_IP6:
		return e->family == AF_INET6 && spf_prefix_eq(tm->net, e->ip, tm->cidr6)
		               ? SPF_MATCH
		               : SPF_NOMATCH;
	default:
		break;
	}
	if (!spf_count_term(e))
		return SPF_PERM;
	if (tm->spec == NULL) {
		str_copy(target, domain, sizeof(target));
	} else if (!spf_expand_domain(e, tm->spec, tm->spec_len, domain, target)) {
		spf_reason(e, "macro expansion of \"%.*s\" too long", (int)tm->text_len, tm->text);
		return SPF_PERM;
	}
	switch (tm->kind) {
	case SPF_INCLUDE:
		return spf_match_include(e, target, depth);
	case SPF_A:
		return spf_match_a(e, target, tm->cidr4, tm->cidr6);
	case SPF_MX:
		return spf_match_mx(e, target, tm->cidr4, tm->cidr6);
	case SPF_PTR:
		return spf_match_ptr(e, target);
	case SPF_EXISTS:
		return spf_match_exists(e, target);
	default:
		return SPF_PERM;
	}
}

/* Keep printable ASCII other than what would end a comment or quoted string. */
static void
spf_sanitise(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '(' ||
		    *s == ')' || *s == '\\' || *s == '"')
			*s = '?';
}

/* 6.2: the explanation of a fail, best effort (errors leave it empty). */
static void
spf_explain(struct spf_eval *e, const struct spf_record *rec, const char *domain)
{
	char target[DNS_NAME_MAX + 1];
	struct dns_txt_result r;

	if (!spf_expand_domain(e, rec->exp, rec->exp_len, domain, target) ||
	    !spf_name_ok(target, false))
		return;
	if (scan_dns_txt(e->t, target, &r) == DNS_OK && r.n == 1) {
		size_t l = strlen(r.txt[0]);

		if (l < SPF_EXPAND_MAX && spf_macro_string_ok(r.txt[0], l, true, NULL) &&
		    spf_expand(e, r.txt[0], l, true, domain, e->explanation,
		               sizeof(e->explanation)))
			spf_sanitise(e->explanation);
		else
			e->explanation[0] = '\0';
	}
	scan_dns_txt_free(&r);
}

/* Fetch and select the SPF record of domain (4.4, 4.5) into rec. */
static enum scan_auth
spf_fetch(struct spf_eval *e, const char *domain, struct spf_record *rec)
{
	struct dns_txt_result r;
	enum dns_status st = scan_dns_txt(e->t, domain, &r);
	const char *found = NULL;
	size_t nfound = 0;
	enum scan_auth res = SCAN_AUTH_PASS; /* pass: rec holds the record */
	char why[120];

	if (st == DNS_NXDOMAIN || st == DNS_NODATA) {
		spf_reason(e, "%s: no SPF record", domain);
		res = SCAN_AUTH_NONE;
		goto out;
	}
	if (st != DNS_OK) {
		spf_dns_error(e, "TXT", domain, st);
		res = SCAN_AUTH_TEMPERROR;
		goto out;
	}
	for (size_t i = 0; i < r.n; i++)
		if (spf_is_record(r.txt[i]) && nfound++ == 0)
			found = r.txt[i];
	if (nfound > 1) {
		spf_reason(e, "%s: %zu SPF records", domain, nfound);
		res = SCAN_AUTH_PERMERROR;
	} else if (nfound == 0 && r.truncated) {
		spf_reason(e, "%s: too many TXT records to find the SPF one", domain);
		res = SCAN_AUTH_PERMERROR;
	} else if (nfound == 0) {
		spf_reason(e, "%s: no SPF record", domain);
		res = SCAN_AUTH_NONE;
	} else if (!spf_parse_record(rec, found, why, sizeof(why))) {
		spf_reason(e, "%s: %s", domain, why);
		res = SCAN_AUTH_PERMERROR;
	}
out:
	scan_dns_txt_free(&r);
	return res;
}

/* check_host() (section 4) for domain; the sender and client are in e. */
static enum scan_auth
spf_check_host(struct spf_eval *e, const char *domain, unsigned depth, bool in_include)
{
	struct spf_record *rec;
	enum scan_auth res;
	char target[DNS_NAME_MAX + 1];

	if (depth > SPF_DEPTH_MAX) {
		spf_reason(e, "nested too deep");
		return SCAN_AUTH_PERMERROR;
	}
	if (!spf_name_ok(domain, true)) {
		spf_reason(e, "%s is not a domain name", domain);
		return SCAN_AUTH_NONE;
	}
	rec = xmalloc(sizeof(*rec));
	res = spf_fetch(e, domain, rec);
	if (res != SCAN_AUTH_PASS)
		goto out;
	for (size_t i = 0; i < rec->nterms; i++) {
		const struct spf_term *tm = &rec->term[i];

		switch (spf_match_term(e, tm, domain, depth)) {
		case SPF_NOMATCH:
			continue;
		case SPF_TEMP:
			res = SCAN_AUTH_TEMPERROR;
			goto out;
		case SPF_PERM:
			res = SCAN_AUTH_PERMERROR;
			goto out;
		case SPF_MATCH:
			res = tm->qual;
			spf_reason(e, "%s: %.*s matched", domain, (int)tm->text_len, tm->text);
			if (res == SCAN_AUTH_FAIL && rec->exp && !in_include)
				spf_explain(e, rec, domain);
			goto out;
		}
	}
	if (rec->redirect) {
		/* 6.1: as if the record of the target had been the one asked for */
		if (!spf_count_term(e)) {
			res = SCAN_AUTH_PERMERROR;
			goto out;
		}
		if (!spf_expand_domain(e, rec->redirect, rec->redirect_len, domain, target)) {
			spf_reason(e, "%s: redirect expansion too long", domain);
			res = SCAN_AUTH_PERMERROR;
			goto out;
		}
		res = spf_check_host(e, target, depth + 1, in_include);
		if (res == SCAN_AUTH_NONE) {
			spf_reason(e, "%s: redirect=%s has no SPF record", domain, target);
			res = SCAN_AUTH_PERMERROR;
		}
		goto out;
	}
	spf_reason(e, "%s: no mechanism matched", domain);
	res = SCAN_AUTH_NEUTRAL;
out:
	free(rec);
	return res;
}

static const enum scan_sym_id spf_syms[] = {
        [SCAN_AUTH_NONE] = SYM_SPF_NONE,           [SCAN_AUTH_PASS] = SYM_SPF_PASS,
        [SCAN_AUTH_FAIL] = SYM_SPF_FAIL,           [SCAN_AUTH_SOFTFAIL] = SYM_SPF_SOFTFAIL,
        [SCAN_AUTH_NEUTRAL] = SYM_SPF_NEUTRAL,     [SCAN_AUTH_TEMPERROR] = SYM_SPF_TEMPERROR,
        [SCAN_AUTH_PERMERROR] = SYM_SPF_PERMERROR, [SCAN_AUTH_POLICY] = SYM_SPF_PERMERROR,
};

/* The identity: MAIL FROM, or postmaster@HELO for the null sender (2.4). */
static bool
spf_identity(struct spf_eval *e, const char *sender, const char *helo)
{
	const char *at = strrchr(sender, '@');

	str_copy(e->helo, helo, sizeof(e->helo));
	for (char *p = e->helo; *p; p++)
		*p = spf_lower(*p);
	if (sender[0] == '\0' || at == NULL) {
		e->t->spf.helo = true;
		str_copy(e->local, "postmaster", sizeof(e->local));
		str_copy(e->sender_domain, e->helo, sizeof(e->sender_domain));
		return strlen(e->helo) < sizeof(e->sender_domain);
	}
	/* 4.3: an empty local part is "postmaster" */
	if (at == sender)
		str_copy(e->local, "postmaster", sizeof(e->local));
	else if ((size_t)(at - sender) < sizeof(e->local))
		str_copy(e->local, sender, (size_t)(at - sender) + 1);
	else
		return false;
	if (str_copy(e->sender_domain, at + 1, sizeof(e->sender_domain)) >=
	    sizeof(e->sender_domain))
		return false;
	for (char *p = e->sender_domain; *p; p++)
		*p = spf_lower(*p);
	return true;
}

void
scan_check_spf(struct scan_task *t)
{
	struct spf_eval *e = xcalloc(1, sizeof(*e));
	const char *sender = t->in && t->in->sender ? t->in->sender : "";
	enum scan_auth res;

	e->t = t;
	memset(&t->spf, 0, sizeof(t->spf));
	if (!spf_identity(e, sender, t->helo)) {
		res = SCAN_AUTH_NONE;
		spf_reason(e, "no usable identity");
	} else if (!spf_parse_client(e, t->client_ip)) {
		res = SCAN_AUTH_NONE;
		spf_reason(e, "no client address");
	} else {
		res = spf_check_host(e, e->sender_domain, 0, false);
	}
	t->spf.result = res;
	str_copy(t->spf.domain, e->sender_domain, sizeof(t->spf.domain));
	if (res == SCAN_AUTH_FAIL && e->explanation[0])
		(void)path_fmt(t->spf.reason, sizeof(t->spf.reason), "%s: %s", e->reason,
		               e->explanation); /* truncated: fine */
	else
		str_copy(t->spf.reason, e->reason, sizeof(t->spf.reason));
	spf_sanitise(t->spf.reason);
	scan_sym(t, spf_syms[res], "%s", t->spf.domain[0] ? t->spf.domain : "-");
	free(e);
}
