/*
 * scan_phish.c - phishing and impersonation: display names, lookalike
 * domains, links that say one place and go to another, Reply-To, and
 * mail that claims a protected domain without authenticating as it.
 *
 * Reads the From / Reply-To mailboxes (RFC 5322 3.4), the links of
 * scan_url.c, and the SPF (RFC 7208), DKIM (RFC 6376) and DMARC
 * (RFC 7489) results; domains are compared by their registered
 * (organizational) domain, RFC 7489 3.2, via scan_org_domain(). The
 * homoglyph table follows the idea of Unicode TR #39 (confusables,
 * mixed-script detection) on a deliberately small set.
 *
 * Trade-offs, chosen to stay quiet on ordinary mail:
 * - "Ours" is a protected domain or any subdomain of one; none of these
 *   checks fire for it except PHISH_SPOOFED_PROTECTED.
 * - A lookalike is a registered label at a small edit distance (optimal
 *   string alignment: none under 6 characters, 1 under 9, else 2) from a
 *   protected one, before or after mapping homoglyphs; the same label under another suffix
 * (contoso.net for contoso.com) is not one: companies own their brand under many TLDs.
 * - Display names match a protected user only by equality of normalised
 *   forms, for local parts of at least PHISH_USER_MIN characters that are
 *   not role names every outside sender also uses (support, info).
 * - Temporary authentication errors never make PHISH_SPOOFED_PROTECTED.
 */
#include "scan_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>

#include "../common/util.h"

#define PHISH_MBOX_MAX       16     /* From / Reply-To mailboxes looked at */
#define PHISH_HOST_MAX       512    /* octets of a normalised host */
#define PHISH_LABEL_MAX      64     /* code points of a registered label compared */
#define PHISH_PROTECTED_MAX  4096   /* protected domains compared against */
#define PHISH_SEEN_MAX       256    /* distinct hosts tested for lookalikes per message */
#define PHISH_SUBLABELS_MAX  16     /* labels of a host searched for a protected domain */
#define PHISH_KEY_MAX        128    /* octets of a normalised display name or local part */
#define PHISH_USER_MIN       4      /* shortest normalised local part matched */
#define PHISH_RECIPIENTS_MAX 100000 /* listed recipients compared per display name */
#define PHISH_TOKENS_MAX     16     /* addresses and domains of a display name examined */

struct phish_prot {
	const char *name; /* as in the policy */
	char reg[PHISH_HOST_MAX];
	uint32_t label[PHISH_LABEL_MAX]; /* the registered label, code points */
	size_t nlabel;
	uint32_t skel[PHISH_LABEL_MAX]; /* the same after mapping homoglyphs */
	size_t nskel;
};

struct phish_ctx {
	struct phish_prot *prot;
	size_t nprot;
	char (*seen)[PHISH_HOST_MAX]; /* hosts already tested for lookalikes */
	size_t nseen;
};

/* scan_sym() with a detail fit for a header field: control characters become '?'. */
static void phish_sym(struct scan_task *t, enum scan_sym_id id, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
phish_sym(struct scan_task *t, enum scan_sym_id id, const char *fmt, ...)
{
	char buf[SCAN_SYM_DETAIL_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (char *p = buf; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	scan_sym(t, id, "%s", buf);
}

/* --- UTF-8 and characters --- */

/* Decode one UTF-8 sequence of s (n > 0 octets); octets used; U+FFFD when invalid. */
static size_t
phish_utf8(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len = utf8_decode(s, n, cp);

	if (len == 0) {
		*cp = 0xfffd;
		return 1;
	}
	return len;
}

/* Encode c (a valid code point) as UTF-8 into out (4 octets); octets written. */
static size_t
phish_utf8_put(uint32_t c, char *out)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | (c >> 6 & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | c >> 18);
	out[1] = (char)(0x80 | (c >> 12 & 0x3f));
	out[2] = (char)(0x80 | (c >> 6 & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Latin-1 and Latin Extended-A letters without their accents ('_': none). */
static const char phish_fold_c0[] =
        "aaaaaaaceeeeiiiidnooooo_ouuuuy_saaaaaaaceeeeiiiidnooooo_ouuuuy_y";
static const char phish_fold_100[] =
        "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiiijjkkklllllll"
        "lllnnnnnnnnnoooooooorrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";

/* Cyrillic, Greek and IPA letters that look like a Latin one (TR #39 confusables, abridged). */
static const struct {
	uint32_t cp;
	char latin;
} phish_glyphs[] = {
        {0x0251, 'a'}, {0x0261, 'g'}, {0x0269, 'i'}, {0x026a, 'i'}, {0x0391, 'a'}, {0x0392, 'b'},
        {0x0395, 'e'}, {0x0396, 'z'}, {0x0397, 'h'}, {0x0399, 'i'}, {0x039a, 'k'}, {0x039c, 'm'},
        {0x039d, 'n'}, {0x039f, 'o'}, {0x03a1, 'p'}, {0x03a4, 't'}, {0x03a5, 'y'}, {0x03a7, 'x'},
        {0x03b1, 'a'}, {0x03b5, 'e'}, {0x03b9, 'i'}, {0x03ba, 'k'}, {0x03bd, 'v'}, {0x03bf, 'o'},
        {0x03c1, 'p'}, {0x03c4, 't'}, {0x03c5, 'u'}, {0x03c7, 'x'}, {0x0405, 's'}, {0x0406, 'i'},
        {0x0408, 'j'}, {0x0410, 'a'}, {0x0412, 'b'}, {0x0415, 'e'}, {0x041a, 'k'}, {0x041c, 'm'},
        {0x041d, 'h'}, {0x041e, 'o'}, {0x0420, 'p'}, {0x0421, 'c'}, {0x0422, 't'}, {0x0423, 'y'},
        {0x0425, 'x'}, {0x0430, 'a'}, {0x0435, 'e'}, {0x043a, 'k'}, {0x043e, 'o'}, {0x0440, 'p'},
        {0x0441, 'c'}, {0x0443, 'y'}, {0x0445, 'x'}, {0x044c, 'b'}, {0x0455, 's'}, {0x0456, 'i'},
        {0x0458, 'j'}, {0x04bb, 'h'}, {0x04cf, 'l'}, {0x0501, 'd'}, {0x051b, 'q'}, {0x051d, 'w'},
};

/* A character as the Latin letter it looks like: case, accents, homoglyphs, digits. */
static uint32_t
phish_confusable(uint32_t c)
{
	if (c >= 0xff01 && c <= 0xff5e)
		c -= 0xfee0; /* fullwidth forms */
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 'a';
	switch (c) {
	case '0':
		return 'o';
	case '1':
		return 'l';
	case '3':
		return 'e';
	case '5':
		return 's';
	}
	if (c >= 0xc0 && c < 0x100 && phish_fold_c0[c - 0xc0] != '_')
		return (uint32_t)phish_fold_c0[c - 0xc0];
	if (c >= 0x100 && c < 0x180)
		return (uint32_t)phish_fold_100[c - 0x100];
	for (size_t i = 0; i < nitems(phish_glyphs); i++)
		if (phish_glyphs[i].cp == c)
			return (uint32_t)phish_glyphs[i].latin;
	return c;
}

/* The skeleton of a label: confusables mapped, then rn -> m, vv -> w, cl -> d. */
static size_t
phish_skeleton(const uint32_t *in, size_t n, uint32_t *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t c = phish_confusable(in[i]);

		if (k > 0 && out[k - 1] == 'r' && c == 'n')
			out[k - 1] = 'm';
		else if (k > 0 && out[k - 1] == 'v' && c == 'v')
			out[k - 1] = 'w';
		else if (k > 0 && out[k - 1] == 'c' && c == 'l')
			out[k - 1] = 'd';
		else
			out[k++] = c;
	}
	return k;
}

enum phish_script {
	PHISH_SCRIPT_LATIN = 1,
	PHISH_SCRIPT_GREEK = 2,
	PHISH_SCRIPT_CYRILLIC = 4,
};

/* Does the label mix Latin, Greek and Cyrillic letters? */
static bool
phish_mixed_scripts(const uint32_t *l, size_t n)
{
	unsigned seen = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t c = l[i];
		if ((c >= 'a' && c <= 'z') || (c >= 0xc0 && c < 0x250 && c != 0xd7 && c != 0xf7))
			seen |= PHISH_SCRIPT_LATIN;
		else if (c >= 0x370 && c < 0x400)
			seen |= PHISH_SCRIPT_GREEK;
		else if (c >= 0x400 && c < 0x530)
			seen |= PHISH_SCRIPT_CYRILLIC;
	}
	return seen != 0 && (seen & (seen - 1)) != 0;
}

/*
 * Damerau-Levenshtein distance (optimal string alignment) of a and b,
 * both at most PHISH_LABEL_MAX long; anything above cap is cap + 1.
 */
static size_t
phish_distance(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t cap)
{
	size_t rows[3][PHISH_LABEL_MAX + 1];
	size_t *pp = rows[0], *p = rows[1], *c = rows[2];

	if (na > nb + cap || nb > na + cap)
		return cap + 1;
	for (size_t j = 0; j <= nb; j++)
		p[j] = j;
	for (size_t i = 1; i <= na; i++) {
		size_t best;
		c[0] = best = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = p[j - 1] + cost;
			if (p[j] + 1 < v)
				v = p[j] + 1;
			if (c[j - 1] + 1 < v)
				v = c[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			c[j] = v;
			if (v < best)
				best = v;
		}
		if (best > cap)
			return cap + 1;
		size_t *tmp = pp;
		pp = p;
		p = c;
		c = tmp;
	}
	return p[nb] > cap ? cap + 1 : p[nb];
}

/* --- domains --- */

/* A domain as scan_url.c normalises hosts (case, IDN U-labels); false if unusable. */
static bool
phish_norm_domain(const char *d, char *out, size_t size)
{
	char url[PHISH_HOST_MAX + 3];
	bool ip;

	if (d == NULL || d[0] == '\0' || strlen(d) >= PHISH_HOST_MAX ||
	    strpbrk(d, "/\\?#@:[") != NULL)
		return false;
	url[0] = '/';
	url[1] = '/';
	str_copy(url + 2, d, sizeof(url) - 2);
	return scan_url_host(url, out, size, &ip, NULL, 0) && !ip;
}

/* The registered domain of a normalised host (itself when it has none). */
static void
phish_reg(const char *host, char *out, size_t size)
{
	if (!scan_org_domain(host, out, size))
		str_copy(out, host, size);
}

static bool
phish_same_org(const char *a, const char *b)
{
	char ra[PHISH_HOST_MAX], rb[PHISH_HOST_MAX];

	phish_reg(a, ra, sizeof(ra));
	phish_reg(b, rb, sizeof(rb));
	return strcmp(ra, rb) == 0;
}

/* Is host a protected domain or a subdomain of one? */
static bool
phish_ours(const struct scan_task *t, const char *host)
{
	for (const char *p = host; p != NULL && *p != '\0'; p = strchr(p, '.')) {
		if (*p == '.')
			p++;
		if (scan_domain_protected(t, p))
			return true;
	}
	return false;
}

/* The first label of reg as code points; false when longer than PHISH_LABEL_MAX. */
static bool
phish_label(const char *reg, uint32_t *label, size_t *n)
{
	const unsigned char *s = (const unsigned char *)reg;
	size_t len = strcspn(reg, "."), i = 0;

	*n = 0;
	while (i < len) {
		if (*n == PHISH_LABEL_MAX)
			return false;
		i += phish_utf8(s + i, len - i, &label[(*n)++]);
	}
	return *n > 0;
}

/* Is tld (the last label of a name) a real public suffix, not the implicit '*' rule? */
static bool
phish_known_tld(const char *tld)
{
	const psl_ctx_t *psl = psl_builtin();

	if (tld[0] == '\0')
		return false;
	if (psl == NULL) { /* libpsl without built-in data: any alphabetic TLD */
		for (const char *p = tld; *p != '\0'; p++)
			if (!((*p >= 'a' && *p <= 'z') || (unsigned char)*p >= 0x80))
				return false;
		return strlen(tld) >= 2;
	}
	return psl_is_public_suffix2(psl, tld, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}

/* Does s (a bare token, lower case) look like a domain name under a real TLD? */
static bool
phish_looks_domain(const char *s)
{
	const char *dot = strrchr(s, '.');

	if (dot == NULL || dot == s || dot[1] == '\0' || s[0] == '.' || s[0] == '-' ||
	    strstr(s, "..") != NULL)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c >= 0x80))
			return false;
	}
	return phish_known_tld(dot + 1);
}

/* --- the lookalike test --- */

static void
phish_prepare(const struct scan_task *t, struct phish_ctx *c)
{
	size_t n = t->pol ? policy_domain_count(t->pol) : 0;

	if (n > PHISH_PROTECTED_MAX)
		n = PHISH_PROTECTED_MAX;
	c->prot = n ? xcalloc(n, sizeof(*c->prot)) : NULL;
	for (size_t i = 0; i < n; i++) {
		struct phish_prot *p = &c->prot[c->nprot];
		char host[PHISH_HOST_MAX];

		p->name = policy_domain_name(t->pol, i);
		if (p->name == NULL || !phish_norm_domain(p->name, host, sizeof(host)))
			continue;
		phish_reg(host, p->reg, sizeof(p->reg));
		if (!phish_label(p->reg, p->label, &p->nlabel))
			continue;
		p->nskel = phish_skeleton(p->label, p->nlabel, p->skel);
		c->nprot++;
	}
}

/* Has host been tested already? Remembers it; true also when no room is left. */
static bool
phish_seen(struct phish_ctx *c, const char *host)
{
	for (size_t i = 0; i < c->nseen; i++)
		if (strcmp(c->seen[i], host) == 0)
			return true;
	if (c->nseen == PHISH_SEEN_MAX)
		return true;
	if (c->seen == NULL)
		c->seen = xcalloc(PHISH_SEEN_MAX, sizeof(*c->seen));
	str_copy(c->seen[c->nseen++], host, PHISH_HOST_MAX);
	return false;
}

/* contoso.com.evil.example: a protected domain as labels of another domain. */
static bool
phish_as_subdomain(struct scan_task *t, const char *host, const char *reg)
{
	size_t hlen = strlen(host), rlen = strlen(reg), ns = 0;
	size_t starts[PHISH_SUBLABELS_MAX + 1]; /* of the labels before reg, then of reg */
	char sub[PHISH_HOST_MAX];

	if (rlen >= hlen || hlen >= sizeof(sub) || strcmp(host + hlen - rlen, reg) != 0)
		return false;
	for (size_t i = 0; i + rlen < hlen && ns < PHISH_SUBLABELS_MAX; i++)
		if (i == 0 || host[i - 1] == '.')
			starts[ns++] = i;
	starts[ns] = hlen - rlen;
	for (size_t s = 0; s < ns; s++) {
		for (size_t e = s + 2; e <= ns; e++) { /* two labels at least */
			size_t len = starts[e] - 1 - starts[s];
			memcpy(sub, host + starts[s], len);
			sub[len] = '\0';
			if (scan_domain_protected(t, sub)) {
				phish_sym(t, SYM_PHISH_LOOKALIKE_DOMAIN, "%s ~ %s", host, sub);
				return true;
			}
		}
	}
	return false;
}

/* Does host (normalised) imitate a protected domain? Emits the symbol once per host. */
static void
phish_lookalike(struct scan_task *t, struct phish_ctx *c, const char *host)
{
	char reg[PHISH_HOST_MAX];
	uint32_t label[PHISH_LABEL_MAX], skel[PHISH_LABEL_MAX];
	size_t nlabel, nskel;
	bool mixed;

	if (c->nprot == 0 || phish_ours(t, host) || phish_seen(c, host))
		return;
	phish_reg(host, reg, sizeof(reg));
	if (phish_as_subdomain(t, host, reg) || !phish_label(reg, label, &nlabel))
		return;
	nskel = phish_skeleton(label, nlabel, skel);
	mixed = phish_mixed_scripts(label, nlabel);
	for (size_t i = 0; i < c->nprot; i++) {
		const struct phish_prot *p = &c->prot[i];
		/*
		 * Edits allowed: none for short names (acme would match acm, ace,
		 * acne: homoglyphs still count, through the skeletons), one from 6
		 * characters, two from 9.
		 */
		size_t cap = p->nlabel >= 9 ? 2 : p->nlabel >= 6 ? 1 : 0;

		if (strcmp(reg, p->reg) == 0)
			continue;
		if (nlabel == p->nlabel && memcmp(label, p->label, nlabel * sizeof(*label)) == 0)
			continue; /* the same name under another suffix */
		if (mixed && cap < 2)
			cap = 2; /* Latin mixed with Cyrillic or Greek is never innocent */
		if (phish_distance(label, nlabel, p->label, p->nlabel, cap) <= cap ||
		    phish_distance(skel, nskel, p->skel, p->nskel, cap) <= cap) {
			phish_sym(t, SYM_PHISH_LOOKALIKE_DOMAIN, "%s ~ %s%s", reg, p->name,
			          mixed ? " (mixed scripts)" : "");
			return;
		}
	}
}

/* --- display names --- */

/* A non-ASCII character that may be a letter: not punctuation, symbols or emoji. */
static bool
phish_is_letter(uint32_t c)
{
	return c >= 0x80 && c != 0xfffd && !(c >= 0x2000 && c < 0x2c00) &&
	       !(c >= 0x3000 && c < 0x3040) && !(c >= 0xfe00 && c < 0xfe70) && c < 0x1f000 &&
	       !(c >= 0xa0 && c < 0xc0) && c != 0xd7 && c != 0xf7;
}

/*
 * A display name (or local part) normalised for comparison: lower case,
 * accents and homoglyphs folded, everything but letters and digits
 * dropped. With swap, two words are taken in the other order ("Smith,
 * John"). False when it does not fit or has no two words to swap.
 */
static bool
phish_name_key(const char *s, bool swap, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), k = 0, words = 0, split = 0;
	bool in_word = false;
	char tmp[PHISH_KEY_MAX];

	for (size_t i = 0; i < n;) {
		uint32_t c;
		i += phish_utf8(p + i, n - i, &c);
		c = phish_confusable(c);
		if (c >= 0x300 && c < 0x370)
			continue; /* combining accents */
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || phish_is_letter(c))) {
			in_word = false;
			continue;
		}
		if (!in_word) {
			in_word = true;
			if (++words == 2)
				split = k;
		}
		if (c >= 0x80) { /* a letter of another script: keep it */
			if (k + 4 >= sizeof(tmp))
				return false;
			k += phish_utf8_put(c, tmp + k);
			continue;
		}
		if (k + 1 >= sizeof(tmp))
			return false;
		tmp[k++] = (char)c;
	}
	if (k == 0 || k >= size || (swap && words != 2))
		return false;
	if (swap) {
		memcpy(out, tmp + split, k - split);
		memcpy(out + k - split, tmp, split);
	} else {
		memcpy(out, tmp, k);
	}
	out[k] = '\0';
	return true;
}

/* Role names every outside sender uses too: never taken as a protected user. */
static bool
phish_role_name(const char *key)
{
	static const char *const roles[] = {
	        "info",    "admin",         "support",    "sales",    "contact",    "office",
	        "billing", "service",       "team",       "hello",    "news",       "help",
	        "noreply", "donotreply",    "marketing",  "accounts", "postmaster", "webmaster",
	        "mail",    "notifications", "newsletter", "security",
	};

	for (size_t i = 0; i < nitems(roles); i++)
		if (strcmp(key, roles[i]) == 0)
			return true;
	return false;
}

/* Does the display name equal a listed recipient of a protected domain? */
static bool
phish_display_user(struct scan_task *t, const char *display, char *who, size_t size)
{
	char key[PHISH_KEY_MAX], swapped[PHISH_KEY_MAX], rkey[PHISH_KEY_MAX];
	bool have_swap;
	size_t budget = PHISH_RECIPIENTS_MAX;

	if (!phish_name_key(display, false, key, sizeof(key)))
		return false;
	have_swap = phish_name_key(display, true, swapped, sizeof(swapped));
	for (size_t i = 0; t->pol && i < policy_domain_count(t->pol); i++) {
		size_t n = 0;
		const char *const *r = policy_domain_recipients(t->pol, i, &n);

		for (size_t j = 0; j < n && r != NULL; j++) {
			if (budget-- == 0)
				return false;
			if (!phish_name_key(r[j], false, rkey, sizeof(rkey)) ||
			    strlen(rkey) < PHISH_USER_MIN || phish_role_name(rkey))
				continue;
			if (strcmp(key, rkey) == 0 || (have_swap && strcmp(swapped, rkey) == 0)) {
				snprintf(who, size, "%s@%s", r[j], policy_domain_name(t->pol, i));
				return true;
			}
		}
	}
	return false;
}

/* An address or a domain found in a display name; local is "" for a domain. */
struct phish_token {
	char local[PHISH_KEY_MAX];
	char domain[PHISH_HOST_MAX];
};

/* Does c end a word of a display name? */
static bool
phish_is_sep(uint32_t c)
{
	return c <= 0x20 || c == 0xa0 || c == 0x3000 ||
	       (c < 0x80 && strchr("\"'()<>[],;|", (int)c) != NULL);
}

/*
 * The words of a display name that look like addresses or domains, in
 * lower case, fullwidth '@' and '.' read as ASCII; at most max.
 */
static size_t
phish_display_tokens(const char *display, struct phish_token *tok, size_t max)
{
	const unsigned char *p = (const unsigned char *)display;
	size_t n = strlen(display), ntok = 0, i = 0;

	while (i < n && ntok < max) {
		char word[PHISH_HOST_MAX + PHISH_KEY_MAX];
		size_t k = 0;
		bool fits = true;

		/* one word: up to a space, quote, bracket, comma, semicolon or angle */
		while (i < n) {
			uint32_t c;
			size_t len = phish_utf8(p + i, n - i, &c);
			if (c == 0xff20 || c == 0xfe6b)
				c = '@';
			else if (c == 0xff0e || c == 0x3002 || c == 0xff61)
				c = '.';
			if (phish_is_sep(c))
				break;
			if (k + len + 1 >= sizeof(word)) {
				fits = false;
			} else if (c < 0x80) {
				word[k++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
			} else {
				memcpy(word + k, p + i, len);
				k += len;
			}
			i += len;
		}
		while (i < n && ntok < max) { /* the separators */
			uint32_t c;
			size_t len = phish_utf8(p + i, n - i, &c);
			if (!phish_is_sep(c))
				break;
			i += len;
		}
		word[k] = '\0';
		while (k > 0 && (word[k - 1] == '.' || word[k - 1] == ':'))
			word[--k] = '\0'; /* end of a sentence */
		if (!fits || k == 0)
			continue;

		char *at = strrchr(word, '@');
		struct phish_token *tk = &tok[ntok];
		if (at != NULL) {
			*at = '\0';
			if (word[0] == '\0' || strlen(word) >= sizeof(tk->local) ||
			    !phish_norm_domain(at + 1, tk->domain, sizeof(tk->domain)) ||
			    strchr(tk->domain, '.') == NULL)
				continue;
			str_copy(tk->local, word, sizeof(tk->local));
			ntok++;
		} else if (phish_looks_domain(word) &&
		           phish_norm_domain(word, tk->domain, sizeof(tk->domain))) {
			tk->local[0] = '\0';
			ntok++;
		}
	}
	return ntok;
}

/* PHISH_DISPLAY_ADDR and PHISH_DISPLAY_PROTECTED for one From mailbox. */
static void
phish_display(struct scan_task *t, const struct scan_mbox *mb, const char *from_dom)
{
	struct phish_token tok[PHISH_TOKENS_MAX];
	size_t ntok;
	bool ours = from_dom != NULL && phish_ours(t, from_dom);
	char who[PHISH_HOST_MAX + PHISH_KEY_MAX];

	if (mb->display == NULL || mb->display[0] == '\0')
		return;
	ntok = phish_display_tokens(mb->display, tok, nitems(tok));
	for (size_t i = 0; i < ntok; i++) {
		const struct phish_token *tk = &tok[i];
		bool other;

		if (tk->local[0] != '\0') {
			size_t ll = strlen(tk->local);
			other = mb->addr == NULL || from_dom == NULL ||
			        strcmp(tk->domain, from_dom) != 0 ||
			        !mem_ieq(mb->addr, tk->local, ll) || mb->addr[ll] != '@';
		} else {
			other = from_dom == NULL || !phish_same_org(tk->domain, from_dom);
		}
		if (other)
			phish_sym(t, SYM_PHISH_DISPLAY_ADDR, "'%s%s%s' from %s", tk->local,
			          tk->local[0] ? "@" : "", tk->domain, mb->addr ? mb->addr : "?");
		if (!ours && phish_ours(t, tk->domain))
			phish_sym(t, SYM_PHISH_DISPLAY_PROTECTED, "'%s' from %s", tk->domain,
			          mb->addr ? mb->addr : "?");
	}
	if (!ours && phish_display_user(t, mb->display, who, sizeof(who)))
		phish_sym(t, SYM_PHISH_DISPLAY_PROTECTED, "'%s' ~ %s", mb->display, who);
}

/* --- links --- */

/*
 * The host a link's visible text names, when the text is one URL or
 * domain ("https://contoso.com", "www.contoso.com/login").
 */
static bool
phish_text_host(const char *text, char *host, size_t size, bool *ip)
{
	char tok[PHISH_HOST_MAX + 8];
	size_t n = strlen(text), k;

	while (n > 0 && strchr(" .,;:!?)>]", text[n - 1]) != NULL)
		n--;
	while (n > 0 && strchr(" (<[", *text) != NULL) {
		text++;
		n--;
	}
	if (n == 0 || n + 3 >= sizeof(tok) || memchr(text, ' ', n) != NULL)
		return false;
	memcpy(tok, text, n);
	tok[n] = '\0';
	if (scan_url_host(tok, host, size, ip, NULL, 0))
		return true; /* scheme://, // or www. */
	/* a bare domain, perhaps with a path */
	k = strcspn(tok, "/?#");
	tok[k] = '\0';
	for (char *p = tok; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!phish_looks_domain(tok))
		return false;
	*ip = false;
	return phish_norm_domain(tok, host, size);
}

/* PHISH_LINK_MISMATCH and PHISH_IP_LINK for one link. */
static void
phish_link(struct scan_task *t, const struct scan_url *u)
{
	char th[PHISH_HOST_MAX], host[PHISH_HOST_MAX], ui[PHISH_HOST_MAX], uh[PHISH_HOST_MAX];
	bool tip, ip;

	if (u->ip_literal)
		phish_sym(t, SYM_PHISH_IP_LINK, "%s", u->host);
	if (u->text != NULL && phish_text_host(u->text, th, sizeof(th), &tip)) {
		bool differ = (tip || u->ip_literal) ? strcmp(th, u->host) != 0
		                                     : !phish_same_org(th, u->host);
		if (differ)
			phish_sym(t, SYM_PHISH_LINK_MISMATCH, "text %s -> %s", th, u->host);
	}
	/* http://paypal.com@evil.example/: the userinfo names another domain */
	if (scan_url_host(u->url, host, sizeof(host), &ip, ui, sizeof(ui)) && ui[0] != '\0') {
		ui[strcspn(ui, ":/\\?#")] = '\0'; /* user:password, or a path glued on */
		str_lower(ui);
		if (phish_looks_domain(ui) && phish_norm_domain(ui, uh, sizeof(uh)) &&
		    (ip || !phish_same_org(uh, host)))
			phish_sym(t, SYM_PHISH_LINK_MISMATCH, "userinfo %s@ -> %s", uh, host);
	}
}

/* --- authentication of a protected From domain --- */

static void
phish_spoofed(struct scan_task *t, const char *from_dom)
{
	bool tempfail = t->dmarc.result == SCAN_AUTH_TEMPERROR;

	if (!phish_ours(t, from_dom) || t->dmarc.result == SCAN_AUTH_PASS)
		return;
	if (t->spf.domain[0] != '\0' && phish_same_org(t->spf.domain, from_dom)) {
		if (t->spf.result == SCAN_AUTH_PASS)
			return;
		tempfail |= t->spf.result == SCAN_AUTH_TEMPERROR;
	}
	for (size_t i = 0; i < t->ndkim && i < SCAN_DKIM_MAX; i++) {
		if (t->dkim[i].domain[0] == '\0' || !phish_same_org(t->dkim[i].domain, from_dom))
			continue;
		if (t->dkim[i].result == SCAN_AUTH_PASS)
			return;
		tempfail |= t->dkim[i].result == SCAN_AUTH_TEMPERROR;
	}
	if (tempfail)
		return; /* cannot tell; the next attempt will */
	phish_sym(t, SYM_PHISH_SPOOFED_PROTECTED, "%s: dmarc %s, spf %s, no aligned dkim pass",
	          from_dom, scan_auth_str(t->dmarc.result), scan_auth_str(t->spf.result));
}

void
scan_check_phish(struct scan_task *t)
{
	struct phish_ctx c = {0};
	char from_dom[PHISH_HOST_MAX], dom[PHISH_HOST_MAX];
	bool have_from = false;

	phish_prepare(t, &c);

	for (size_t i = 0; i < t->msg.nfrom && i < PHISH_MBOX_MAX; i++) {
		const struct scan_mbox *mb = &t->msg.from[i];
		bool ok = phish_norm_domain(mb->domain, dom, sizeof(dom));

		if (ok && !have_from) {
			str_copy(from_dom, dom, sizeof(from_dom));
			have_from = true;
		}
		phish_display(t, mb, ok ? dom : NULL);
		if (ok) {
			phish_lookalike(t, &c, dom);
			phish_spoofed(t, dom);
		}
	}
	for (size_t i = 0; i < t->msg.nreply_to && i < PHISH_MBOX_MAX; i++) {
		if (!phish_norm_domain(t->msg.reply_to[i].domain, dom, sizeof(dom)))
			continue;
		phish_lookalike(t, &c, dom);
		if (have_from && !phish_same_org(dom, from_dom))
			phish_sym(t, SYM_PHISH_REPLYTO_DOMAIN, "reply-to %s, from %s", dom,
			          from_dom);
	}
	if (t->in != NULL && t->in->sender != NULL) {
		const char *at = strrchr(t->in->sender, '@');
		if (at != NULL && phish_norm_domain(at + 1, dom, sizeof(dom)))
			phish_lookalike(t, &c, dom);
	}
	for (size_t i = 0; i < t->msg.nurls && i < SCAN_URL_MAX; i++) {
		const struct scan_url *u = &t->msg.urls[i];

		if (u->host == NULL || u->url == NULL)
			continue;
		phish_link(t, u);
		if (!u->ip_literal)
			phish_lookalike(t, &c, u->host);
	}
	free(c.prot);
	free(c.seen);
}
