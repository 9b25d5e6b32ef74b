/*
 * mailaddr.c - the envelope address parser (see mailaddr.h).
 *
 * RFC 5321 section 4.1.2 (Path, Mailbox, Local-part, Domain,
 * address-literal), 4.1.1.3 (source routes are dropped), 4.1.3 (address
 * literals), 4.5.3.1 (size limits); RFC 6531 section 3.3 (UTF-8 in atext,
 * qtext and sub-domains); RFC 3629 (well-formed UTF-8).
 *
 * A recursive-descent parser over a cursor: each production either
 * advances the cursor or returns the status for the octet it stopped at.
 * A pre-scan first turns any NUL, control or (without SMTPUTF8) 8-bit
 * octet before the first '>' into ENUL / E8BIT, so that those octets get
 * their own status whatever syntax error precedes them.
 *
 * Stricter than the grammar, on purpose:
 *  - labels over 63 octets (RFC 1035);
 *  - an all-numeric last label (RFC 3696 2): "u@192.0.2.1" names no
 *    domain, and getaddrinfo() would take it for an address;
 *  - IPv4 literals with leading zeros: "[010.0.0.1]" is 10.0.0.1 to
 *    RFC 5321 but 8.0.0.1 to inet_aton();
 *  - C1 controls (U+0080..U+009F) in UTF-8, refused like 7-bit controls;
 *  - as in Postfix, any General-address-literal: no tag but IPv6 was ever
 *    registered, so none is routable, while its dcontent may hold '@',
 *    ':' or '>' that a later reading of the formatted address could take
 *    for structure ("u@[x:a@evil.test]").
 *
 * The wire length of the local part (quotes and escapes included) is what
 * MAILADDR_LOCAL_MAX bounds; the canonical form is never longer.
 */
#include "mailaddr.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

#define MAILADDR_LABEL_MAX 63 /* RFC 1035 2.3.4, octets */

struct cursor {
	const unsigned char *s;
	size_t len;
	size_t pos;
	unsigned flags;
};

static bool
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 5322 atext, ASCII part. */
static bool
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 qtextSMTP, ASCII part. */
static bool
is_qtext(unsigned char c)
{
	return c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126);
}

/* RFC 5321 dcontent. */
static bool
is_dcontent(unsigned char c)
{
	return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
}

static unsigned char
ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 table), or 0. */
static size_t
utf8_width(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t w;

	if (c >= 0xc2 && c <= 0xdf)
		w = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		w = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		w = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else
		return 0;
	if (n < w || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < w; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return w;
}

/* The status for the unexpected octet at the cursor (or the end of input). */
static enum mailaddr_status
cur_fail(const struct cursor *c)
{
	unsigned char ch;

	if (c->pos >= c->len)
		return MAILADDR_ESYNTAX;
	ch = c->s[c->pos];
	if (ch < 0x20 || ch == 0x7f)
		return MAILADDR_ENUL;
	if (ch >= 0x80 && !(c->flags & MAILADDR_F_SMTPUTF8))
		return MAILADDR_E8BIT;
	return MAILADDR_ESYNTAX;
}

/* Width of the non-ASCII character at the cursor, or 0 with *st set. */
static size_t
cur_utf8(const struct cursor *c, enum mailaddr_status *st)
{
	const unsigned char *p = c->s + c->pos;
	size_t w;

	if (!(c->flags & MAILADDR_F_SMTPUTF8)) {
		*st = MAILADDR_E8BIT;
		return 0;
	}
	if ((w = utf8_width(p, c->len - c->pos)) == 0) {
		*st = MAILADDR_ESYNTAX;
		return 0;
	}
	if (p[0] == 0xc2 && p[1] < 0xa0) {
		*st = MAILADDR_ENUL; /* C1 control */
		return 0;
	}
	return w;
}

/* NUL, controls and (without SMTPUTF8) 8-bit octets up to the first '>'. */
static enum mailaddr_status
prescan(const struct cursor *c)
{
	for (size_t i = 0; i < c->len; i++) {
		unsigned char ch = c->s[i];

		if (ch == '>' && !(c->flags & MAILADDR_F_NO_ANGLES))
			break;
		if (ch < 0x20 || ch == 0x7f)
			return MAILADDR_ENUL;
		if (ch >= 0x80 && !(c->flags & MAILADDR_F_SMTPUTF8))
			return MAILADDR_E8BIT;
	}
	return MAILADDR_OK;
}

/*
 * Domain = sub-domain *("." sub-domain) at the cursor, lower-cased into
 * out (MAILADDR_DOMAIN_MAX + 1 octets) unless out is NULL.
 */
static enum mailaddr_status
parse_domain(struct cursor *c, char *out, bool *utf8)
{
	size_t start = c->pos;
	enum mailaddr_status st;

	for (;;) {
		size_t label = c->pos;
		bool hyphen = false, digits = true;

		while (c->pos < c->len) {
			unsigned char ch = c->s[c->pos];
			size_t w = 1;

			if (is_alnum(ch))
				hyphen = false;
			else if (ch == '-' && c->pos > label)
				hyphen = true;
			else if (ch >= 0x80) {
				if ((w = cur_utf8(c, &st)) == 0)
					return st;
				hyphen = false;
				*utf8 = true;
			} else
				break;
			if (ch < '0' || ch > '9')
				digits = false;
			if (c->pos + w - start > MAILADDR_DOMAIN_MAX)
				return MAILADDR_EDOMAIN_TOO_LONG;
			if (out != NULL)
				for (size_t i = 0; i < w; i++)
					out[c->pos - start + i] =
					        (char)ascii_lower(c->s[c->pos + i]);
			c->pos += w;
		}
		if (c->pos == label)
			return cur_fail(c);
		if (hyphen || c->pos - label > MAILADDR_LABEL_MAX)
			return MAILADDR_ESYNTAX;
		if (c->pos >= c->len || c->s[c->pos] != '.') {
			if (digits)
				return MAILADDR_ESYNTAX; /* an all-numeric TLD */
			break;
		}
		if (out != NULL)
			out[c->pos - start] = '.';
		c->pos++;
	}
	if (out != NULL)
		out[c->pos - start] = '\0';
	return MAILADDR_OK;
}

/* Snum 3("." Snum), each 0..255 without leading zeros. */
static bool
ipv4_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t digits = 0;
		unsigned v = 0;

		if (part > 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
		while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(p[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		if (digits > 1 && p[i - digits] == '0')
			return false;
	}
	return i == n;
}

/*
 * IPv6-addr of RFC 5321 4.1.3: eight groups, or at most six around one
 * "::"; a trailing IPv4 address counts as two groups.
 */
static bool
ipv6_valid(const unsigned char *p, size_t n)
{
	size_t i = 0, groups = 0;
	bool dcolon = false;

	if (n >= 2 && p[0] == ':' && p[1] == ':') {
		dcolon = true;
		i = 2;
	}
	while (i < n) {
		size_t k = i;

		while (k < n && p[k] != ':')
			k++;
		if (memchr(p + i, '.', k - i) != NULL) {
			if (k != n || !ipv4_valid(p + i, k - i))
				return false;
			groups += 2;
			break;
		}
		if (k - i < 1 || k - i > 4)
			return false;
		for (size_t j = i; j < k; j++)
			if (!is_hex(p[j]))
				return false;
		groups++;
		if (k == n)
			break;
		i = k + 1;
		if (i < n && p[i] == ':') {
			if (dcolon)
				return false;
			dcolon = true;
			i++;
		} else if (i == n)
			return false; /* a trailing single ':' */
	}
	return dcolon ? groups <= 6 : groups == 8;
}

/* IPv4 or IPv6 address-literal at the cursor ('['), lower-cased into out, brackets kept. */
static enum mailaddr_status
parse_literal(struct cursor *c, char *out)
{
	size_t start = c->pos, end = c->pos + 1, n, blen;
	const unsigned char *body;

	while (end < c->len && is_dcontent(c->s[end]))
		end++;
	if (end >= c->len || c->s[end] != ']') {
		c->pos = end;
		return cur_fail(c);
	}
	n = end + 1 - start;
	if (n > MAILADDR_DOMAIN_MAX)
		return MAILADDR_EDOMAIN_TOO_LONG;
	body = c->s + start + 1;
	blen = n - 2;
	if (blen > 5 && mem_ieq((const char *)body, "IPv6:", 5)) {
		if (!ipv6_valid(body + 5, blen - 5))
			return MAILADDR_ESYNTAX;
	} else if (!ipv4_valid(body, blen))
		return MAILADDR_ESYNTAX; /* nor a General-address-literal: see the top */
	for (size_t i = 0; i < n; i++)
		out[i] = (char)ascii_lower(c->s[start + i]);
	out[n] = '\0';
	c->pos = end + 1;
	return MAILADDR_OK;
}

/* Dot-string: Atom *("." Atom), with UTF-8 atext when it was allowed. */
static bool
dot_string_valid(const unsigned char *p, size_t n)
{
	bool dot = true; /* an atom must follow */

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '.') {
			if (dot)
				return false;
			dot = true;
		} else if (is_atext(p[i]) || p[i] >= 0x80)
			dot = false;
		else
			return false;
	}
	return !dot;
}

/* Store a decoded local part in canonical form: bare if a dot-string, else quoted. */
static enum mailaddr_status
local_store(const unsigned char *dec, size_t n, char *out)
{
	size_t o = 0;

	if (dot_string_valid(dec, n)) {
		memcpy(out, dec, n);
		out[n] = '\0';
		return MAILADDR_OK;
	}
	out[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (o + 3 > MAILADDR_LOCAL_MAX + 1) /* escape, octet, closing quote */
			return MAILADDR_ELOCAL_TOO_LONG;
		if (dec[i] == '"' || dec[i] == '\\')
			out[o++] = '\\';
		out[o++] = (char)dec[i];
	}
	if (o + 1 > MAILADDR_LOCAL_MAX)
		return MAILADDR_ELOCAL_TOO_LONG;
	out[o++] = '"';
	out[o] = '\0';
	return MAILADDR_OK;
}

/*
 * Local-part at the cursor into out->local (canonical form); *routing is
 * set when the decoded local part holds '@', '%' or '!'.
 */
static enum mailaddr_status
parse_local(struct cursor *c, struct mailaddr *out, bool *routing)
{
	unsigned char dec[MAILADDR_LOCAL_MAX];
	size_t start = c->pos, n = 0;
	enum mailaddr_status st;

	if (c->pos < c->len && c->s[c->pos] == '"') {
		c->pos++;
		for (;;) {
			unsigned char ch;
			size_t w = 1;

			if (c->pos >= c->len)
				return MAILADDR_ESYNTAX;
			ch = c->s[c->pos];
			if (ch == '"')
				break;
			if (ch == '\\') {
				c->pos++;
				if (c->pos >= c->len)
					return MAILADDR_ESYNTAX;
				ch = c->s[c->pos];
				if (ch < 32 || ch > 126)
					return cur_fail(c); /* quoted-pairSMTP */
			} else if (ch >= 0x80) {
				if ((w = cur_utf8(c, &st)) == 0)
					return st;
				out->utf8 = true;
			} else if (!is_qtext(ch))
				return cur_fail(c);
			/* this character and the closing quote must still fit */
			if (c->pos + w + 1 - start > MAILADDR_LOCAL_MAX)
				return MAILADDR_ELOCAL_TOO_LONG;
			memcpy(dec + n, c->s + c->pos, w);
			n += w;
			c->pos += w;
		}
		c->pos++;
	} else {
		for (;;) {
			size_t atom = c->pos;

			while (c->pos < c->len) {
				unsigned char ch = c->s[c->pos];
				size_t w = 1;

				if (ch >= 0x80) {
					if ((w = cur_utf8(c, &st)) == 0)
						return st;
					out->utf8 = true;
				} else if (!is_atext(ch))
					break;
				if (c->pos + w - start > MAILADDR_LOCAL_MAX)
					return MAILADDR_ELOCAL_TOO_LONG;
				c->pos += w;
			}
			if (c->pos == atom)
				return cur_fail(c);
			if (c->pos >= c->len || c->s[c->pos] != '.')
				break;
			c->pos++;
		}
		n = c->pos - start;
		memcpy(dec, c->s + start, n);
	}
	*routing = memchr(dec, '@', n) != NULL || memchr(dec, '%', n) != NULL ||
	           memchr(dec, '!', n) != NULL;
	return local_store(dec, n, out->local);
}

enum mailaddr_status
mailaddr_parse(const char *s, size_t len, unsigned flags, struct mailaddr *out, size_t *consumed)
{
	struct cursor c = {(const unsigned char *)s, len, 0, flags};
	bool angles = !(flags & MAILADDR_F_NO_ANGLES), routing = false, route_utf8;
	enum mailaddr_status st;
	size_t path_len;

	memset(out, 0, sizeof(*out));
	if (consumed != NULL)
		*consumed = 0;
	if ((st = prescan(&c)) != MAILADDR_OK)
		return st;

	if (angles) {
		if (len == 0 || s[0] != '<')
			return cur_fail(&c);
		c.pos = 1;
		if (len > 1 && s[1] == '>') {
			if (!(flags & MAILADDR_F_NULL_OK))
				return MAILADDR_ESYNTAX;
			out->is_null = true;
			if (consumed != NULL)
				*consumed = 2;
			return MAILADDR_OK;
		}
		/* A-d-l ":" is parsed and dropped (RFC 5321 4.1.1.3, appendix C) */
		if (len > 1 && s[1] == '@') {
			for (;;) {
				c.pos++; /* '@' */
				if ((st = parse_domain(&c, NULL, &route_utf8)) != MAILADDR_OK)
					return st;
				if (c.pos < len && s[c.pos] == ':') {
					c.pos++;
					break;
				}
				if (c.pos >= len || s[c.pos] != ',')
					return cur_fail(&c);
				c.pos++;
				if (c.pos >= len || s[c.pos] != '@')
					return cur_fail(&c);
			}
		}
	}

	if ((st = parse_local(&c, out, &routing)) != MAILADDR_OK)
		return st;
	if (c.pos >= len || s[c.pos] != '@')
		return cur_fail(&c);
	c.pos++;
	if (c.pos < len && s[c.pos] == '[') {
		out->literal = true;
		st = parse_literal(&c, out->domain);
	} else
		st = parse_domain(&c, out->domain, &out->utf8);
	if (st != MAILADDR_OK)
		return st;

	if (angles) {
		if (c.pos >= len || s[c.pos] != '>')
			return cur_fail(&c);
		c.pos++;
		path_len = c.pos;
	} else {
		if (c.pos != len)
			return cur_fail(&c);
		path_len = len + 2; /* as it would go on the wire */
	}
	if (routing)
		return MAILADDR_EROUTING;
	if (path_len > MAILADDR_PATH_MAX)
		return MAILADDR_EPATH_TOO_LONG;
	if (consumed != NULL)
		*consumed = c.pos;
	return MAILADDR_OK;
}

const char *
mailaddr_format(const struct mailaddr *a, char *buf, size_t bufsize)
{
	if (bufsize == 0)
		return buf;
	if (a->is_null)
		buf[0] = '\0';
	else
		(void)snprintf(buf, bufsize, "%s@%s", a->local, a->domain);
	return buf;
}

const char *
mailaddr_strerror(enum mailaddr_status st)
{
	switch (st) {
	case MAILADDR_OK:
		return "no error";
	case MAILADDR_ESYNTAX:
		return "syntax error in address";
	case MAILADDR_ELOCAL_TOO_LONG:
		return "local part too long";
	case MAILADDR_EDOMAIN_TOO_LONG:
		return "domain too long";
	case MAILADDR_EPATH_TOO_LONG:
		return "address too long";
	case MAILADDR_E8BIT:
		return "non-ASCII address without SMTPUTF8";
	case MAILADDR_ENUL:
		return "control character in address";
	case MAILADDR_EROUTING:
		return "source routing in local part not allowed";
	}
	return "unknown address error";
}
