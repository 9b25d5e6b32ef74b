/*
 * scan_url.c - the links of a message: URLs written in its text/plain
 * parts and the links of its text/html parts, each with its host
 * normalised for the checks that follow (scan_phish.c, scan_dnsbl.c).
 *
 * RFC 3986 (URI: scheme, authority, userinfo, host, port and
 * percent-encoding), RFC 5890-5892 with UTS #46 (IDNA: hosts are kept as
 * U-labels, converted with libidn2, so that homoglyph checks see the
 * characters a reader sees), RFC 4291 / RFC 3986 3.2.2 (IPv6 literals in
 * brackets) and the WHATWG URL standard's IPv4 parser (browsers take
 * 3232235777, 0xC0A80101, 0300.0250.1.1 and 192.168.257 as addresses).
 *
 * Trade-offs:
 * - A host is normalised the way a browser would reach it, not as
 *   written: userinfo dropped (http://paypal.com@evil.example/ goes to
 *   evil.example), percent-decoded, ideographic full stops read as dots,
 *   IPv4 in any notation rewritten as a dotted quad, IPv6 in its
 *   canonical text form.
 * - HTML goes through libxml2's recovering parser (what mail clients
 *   render is as forgiving), on at most URL_HTML_MAX octets (past them
 *   only written URLs are found: the tree of a large part costs tens of
 *   times its size); the tree is walked without recursion under a node
 *   budget. The parser is used
 *   per call only: xmlInitParser() is called once at start-up by moatd.
 * - Relative links and schemes without an authority (mailto:, tel:,
 *   cid:, javascript:, fragments) carry no host and are not kept.
 */
#include "scan_internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include "../common/util.h"

#define URL_LEN_MAX        2048                /* octets of a URL kept */
#define URL_HOST_MAX       512                 /* octets of a host, U-label form */
#define URL_TEXT_MAX       256                 /* octets of a link's visible text */
#define URL_CANDIDATES_MAX (SCAN_URL_MAX * 20) /* URLs looked at per message */
#define URL_HTML_MAX       (2u * 1024 * 1024)  /* octets of one HTML part parsed as HTML */
#define URL_HTML_NODES_MAX 500000              /* HTML nodes visited per message */
#define URL_IPV4_DIGITS    32                  /* digits of one IPv4 part */

struct url_state {
	struct scan_msg *m;
	size_t cap;        /* of m->urls */
	size_t candidates; /* looked at, against URL_CANDIDATES_MAX */
	size_t nodes;      /* HTML nodes visited, against URL_HTML_NODES_MAX */
};

static bool
url_done(const struct url_state *st)
{
	return st->m->nurls >= SCAN_URL_MAX || st->candidates >= URL_CANDIDATES_MAX;
}

static bool
url_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
url_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
url_hex(unsigned char c)
{
	if (url_is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode s[0..n) into out (size octets), reading U+3002, U+FF0E
 * and U+FF61 as '.' (UTS #46 maps them so). False when it does not fit.
 */
static bool
url_decode(const char *s, size_t n, char *out, size_t size)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (c == '%' && i + 2 < n && (hi = url_hex((unsigned char)s[i + 1])) >= 0 &&
		    (lo = url_hex((unsigned char)s[i + 2])) >= 0) {
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (k + 1 >= size)
			return false;
		out[k++] = (char)c;
	}
	out[k] = '\0';

	/* the ideographic full stops, in place (each shrinks 3 octets to 1) */
	size_t r = 0, w = 0;
	while (r < k) {
		const unsigned char *p = (const unsigned char *)out + r;
		if (r + 2 < k && ((p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x82) ||
		                  (p[0] == 0xef && p[1] == 0xbc && p[2] == 0x8e) ||
		                  (p[0] == 0xef && p[1] == 0xbd && p[2] == 0xa1))) {
			out[w++] = '.';
			r += 3;
			continue;
		}
		out[w++] = out[r++];
	}
	out[w] = '\0';
	return true;
}

/* One part of an IPv4 host (WHATWG): 0x hex, leading-0 octal, or decimal. */
static bool
url_ipv4_part(const char *s, size_t n, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	} else if (n >= 2 && s[0] == '0') {
		base = 8;
		s++;
		n--;
	}
	if (n == 0 && base == 10)
		return false;
	if (n > URL_IPV4_DIGITS)
		return false;
	for (size_t i = 0; i < n; i++) {
		int d = url_hex((unsigned char)s[i]);
		if (d < 0 || (unsigned)d >= base)
			return false;
		v = v * base + (unsigned)d;
		if (v > UINT32_MAX)
			return false;
	}
	*out = v;
	return true;
}

/* host (ASCII, lower case) as an IPv4 address in any notation a browser takes. */
static bool
url_ipv4(const char *host, uint32_t *addr)
{
	uint64_t part[4];
	size_t nparts = 0, len = strlen(host), start = 0;
	uint64_t v;

	if (len > 0 && host[len - 1] == '.')
		len--; /* one trailing dot is allowed */
	if (len == 0)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && host[i] != '.')
			continue;
		if (nparts == 4 || !url_ipv4_part(host + start, i - start, &part[nparts]))
			return false;
		nparts++;
		start = i + 1;
	}
	v = part[nparts - 1];
	if (v >= (uint64_t)1 << (8 * (5 - nparts)))
		return false;
	for (size_t i = 0; i + 1 < nparts; i++) {
		if (part[i] > 255)
			return false;
		v += part[i] << (8 * (3 - i));
	}
	*addr = (uint32_t)v;
	return true;
}

/*
 * A non-ASCII or xn-- host to its U-label form (UTS #46 mapping: case,
 * width; then A-labels decoded). Left as it is when libidn2 refuses it.
 */
static void
url_idn(char *host, size_t size)
{
	bool convert = strstr(host, "xn--") != NULL;
	char *ascii = NULL, *uni = NULL;

	for (const char *p = host; *p != '\0' && !convert; p++)
		convert = (unsigned char)*p >= 0x80;
	if (!convert)
		return;
	if (idn2_lookup_u8((const uint8_t *)host, (uint8_t **)&ascii,
	                   IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) == IDN2_OK &&
	    idn2_to_unicode_8z8z(ascii, &uni, 0) == IDN2_OK && strlen(uni) < size)
		str_copy(host, uni, size);
	idn2_free(ascii);
	idn2_free(uni);
}

bool
scan_url_host(const char *url, char *host, size_t hostsize, bool *ip_literal, char *userinfo,
              size_t usize)
{
	const char *a, *end, *at = NULL, *h, *hend;
	char buf[URL_HOST_MAX];
	struct in6_addr a6;
	uint32_t a4;

	*ip_literal = false;
	if (userinfo != NULL && usize > 0)
		userinfo[0] = '\0';
	if (hostsize == 0)
		return false;
	host[0] = '\0';

	/* where the authority starts: scheme://, //, or a bare www. */
	a = url;
	if (mem_ieq(a, "www.", 4)) {
		/* a bare host: the authority starts here */
	} else if (url_is_alpha((unsigned char)*a)) {
		const char *p = a;
		while (url_is_alpha((unsigned char)*p) || url_is_digit((unsigned char)*p) ||
		       *p == '+' || *p == '-' || *p == '.')
			p++;
		if (*p == ':') {
			const char *q = p + 1;
			while (*q == '/' || *q == '\\') /* browsers read http:\\ as http:// */
				q++;
			if (q - p < 3)
				return false; /* mailto:, tel:, cid:, javascript: ... */
			a = q;
		} else {
			return false;
		}
	} else if ((a[0] == '/' || a[0] == '\\') && (a[1] == '/' || a[1] == '\\')) {
		a += 2;
	} else {
		return false;
	}

	for (end = a; *end != '\0' && *end != '/' && *end != '\\' && *end != '?' && *end != '#' &&
	              (unsigned char)*end > 0x20 && *end != 0x7f;
	     end++)
		if (*end == '@')
			at = end; /* the last one: userinfo may hold '@' itself */
	h = a;
	if (at != NULL) {
		if (userinfo != NULL && usize > 0 &&
		    !url_decode(a, (size_t)(at - a), userinfo, usize))
			userinfo[0] = '\0';
		h = at + 1;
	}

	if (*h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));
		if (close == NULL || (size_t)(close - h - 1) >= sizeof(buf))
			return false;
		memcpy(buf, h + 1, (size_t)(close - h - 1));
		buf[close - h - 1] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1 ||
		    inet_ntop(AF_INET6, &a6, host, (socklen_t)hostsize) == NULL) {
			host[0] = '\0';
			return false;
		}
		*ip_literal = true;
		return true;
	}

	hend = memchr(h, ':', (size_t)(end - h)); /* the port */
	if (hend == NULL)
		hend = end;
	if (!url_decode(h, (size_t)(hend - h), buf, sizeof(buf)))
		return false;
	for (char *p = buf; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
		    c == '/' || c == '@')
			return false; /* nothing a resolver would take */
		if (c >= 'A' && c <= 'Z')
			*p = (char)(c - 'A' + 'a');
	}
	if (url_ipv4(buf, &a4)) {
		struct in_addr in = {.s_addr = htonl(a4)};
		if (inet_ntop(AF_INET, &in, host, (socklen_t)hostsize) == NULL) {
			host[0] = '\0';
			return false;
		}
		*ip_literal = true;
		return true;
	}
	url_idn(buf, sizeof(buf));
	size_t n = strlen(buf);
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	if (n == 0 || buf[0] == '.' || n >= hostsize)
		return false;
	memcpy(host, buf, n + 1);
	return true;
}

/* Keep url (NUL-terminated) with its link text (or NULL), unless seen or hostless. */
static void
url_add(struct url_state *st, const char *url, const char *text, bool from_html)
{
	struct scan_msg *m = st->m;
	char host[URL_HOST_MAX];
	bool ip;

	if (url_done(st))
		return;
	st->candidates++;
	if (!scan_url_host(url, host, sizeof(host), &ip, NULL, 0))
		return;
	if (text != NULL && text[0] == '\0')
		text = NULL;
	for (size_t i = 0; i < m->nurls; i++) {
		const struct scan_url *u = &m->urls[i];
		if (strcmp(u->url, url) == 0 &&
		    ((u->text == NULL && text == NULL) ||
		     (u->text != NULL && text != NULL && strcmp(u->text, text) == 0)))
			return;
	}
	if (m->nurls == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 16;
		if (st->cap > SCAN_URL_MAX)
			st->cap = SCAN_URL_MAX;
		m->urls = xrealloc(m->urls, st->cap * sizeof(*m->urls));
	}
	m->urls[m->nurls++] = (struct scan_url){
	        .url = xstrdup(url),
	        .host = xstrdup(host),
	        .text = text ? xstrdup(text) : NULL,
	        .ip_literal = ip,
	        .from_html = from_html,
	};
}

/* An octet sequence at s that ends a URL in plain text: octets it spans, 0 if none. */
static size_t
url_stop_at(const unsigned char *s, size_t n)
{
	if (s[0] <= 0x20 || s[0] == 0x7f || s[0] == '<' || s[0] == '>' || s[0] == '"' ||
	    s[0] == '`')
		return 1;
	if (n >= 2 && s[0] == 0xc2 && s[1] == 0xa0) /* no-break space */
		return 2;
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
	    ((s[2] >= 0x80 && s[2] <= 0x8f) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
		return 3; /* spaces, zero widths, line and paragraph separators */
	if (n >= 3 && s[0] == 0xe3 && s[1] == 0x80 && s[2] <= 0x82)
		return 3; /* ideographic space, comma, full stop */
	if (n >= 3 && s[0] == 0xef &&
	    ((s[1] == 0xbc && s[2] == 0x8c) || /* fullwidth comma */
	     (s[1] == 0xbb && s[2] == 0xbf)))  /* BOM */
		return 3;
	return 0;
}

static size_t
url_count(const char *s, size_t n, char c)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += s[i] == c;
	return k;
}

static const char url_openers[3] = {'(', '[', '{'};
static const char url_closers[3] = {')', ']', '}'};

/* The length of a URL prefix (http://, https://, www.) at s[i], 0 if none. */
static size_t
url_prefix_at(const char *s, size_t len, size_t i)
{
	if (len - i >= 7 && mem_ieq(s + i, "http://", 7))
		return 7;
	if (len - i >= 8 && mem_ieq(s + i, "https://", 8))
		return 8;
	if (len - i >= 5 && mem_ieq(s + i, "www.", 4)) {
		unsigned char prev = i > 0 ? (unsigned char)s[i - 1] : ' ';
		if (url_is_alpha(prev) || url_is_digit(prev) || prev >= 0x80 ||
		    strchr(".-_@/:", prev) != NULL)
			return 0; /* inside a word, a host or a URL already taken */
		return 4;
	}
	return 0;
}

/* URLs written in text: http://, https:// and www. forms, trailing punctuation trimmed. */
static void
url_scan_text(struct url_state *st, const char *s, size_t len, bool from_html)
{
	char url[URL_LEN_MAX + 1];
	size_t i = 0;

	while (i < len && !url_done(st)) {
		size_t pre, j, end;
		unsigned char c = (unsigned char)s[i];

		if ((c != 'h' && c != 'H' && c != 'w' && c != 'W') ||
		    (pre = url_prefix_at(s, len, i)) == 0) {
			i++;
			continue;
		}
		for (j = i + pre; j < len && j - i < URL_LEN_MAX; j++)
			if (url_stop_at((const unsigned char *)s + j, len - j) > 0)
				break;
		end = j;
		/* closing brackets stay when the URL opened them: http://w.test/Foo_(bar) */
		size_t nopen[3], nclose[3];
		for (size_t k = 0; k < 3; k++) {
			nopen[k] = url_count(s + i, end - i, url_openers[k]);
			nclose[k] = url_count(s + i, end - i, url_closers[k]);
		}
		while (end > i + pre) {
			const char *b = memchr(url_closers, s[end - 1], 3);
			if (b != NULL && nclose[b - url_closers] > nopen[b - url_closers]) {
				nclose[b - url_closers]--;
				end--;
			} else if (memchr(".,;:!?'*", s[end - 1], 8) != NULL) {
				end--;
			} else {
				break;
			}
		}
		if (end > i + pre) {
			memcpy(url, s + i, end - i);
			url[end - i] = '\0';
			url_add(st, url, NULL, from_html);
		}
		i = j;
	}
}

/* An attribute value cleaned as browsers do: ends trimmed, tab and newlines removed. */
static void
url_clean_attr(const char *v, char *out, size_t size)
{
	size_t n = strlen(v), k = 0;

	while (n > 0 && (unsigned char)v[n - 1] <= 0x20)
		n--;
	while (n > 0 && (unsigned char)*v <= 0x20) {
		v++;
		n--;
	}
	for (size_t i = 0; i < n && k + 1 < size; i++)
		if (v[i] != '\t' && v[i] != '\r' && v[i] != '\n')
			out[k++] = v[i];
	out[k] = '\0';
}

/* Append s to the visible text buf (len used), whitespace runs collapsed, bounded. */
static void
url_text_append(char *buf, size_t *len, const char *s)
{
	for (; *s != '\0' && *len + 1 < URL_TEXT_MAX; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20) {
			if (*len > 0 && buf[*len - 1] != ' ')
				buf[(*len)++] = ' ';
			continue;
		}
		buf[(*len)++] = (char)c;
	}
	buf[*len] = '\0';
}

/* Trim the visible text and cut it on a UTF-8 boundary. */
static void
url_text_finish(char *buf, size_t len)
{
	if (len + 1 >= URL_TEXT_MAX)
		while (len > 0 && ((unsigned char)buf[len - 1] & 0xc0) == 0x80)
			len--; /* a continuation octet: drop the cut sequence */
	if (len > 0 && (unsigned char)buf[len - 1] >= 0xc0)
		len--;
	while (len > 0 && buf[len - 1] == ' ')
		len--;
	buf[len] = '\0';
}

static bool
url_node_is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && n->name != NULL &&
	       str_ieq((const char *)n->name, name);
}

/* The next node of a depth-first walk below root (children skipped when skip). */
static xmlNode *
url_next(xmlNode *n, const xmlNode *root, bool skip)
{
	if (!skip && n->children != NULL && n->type == XML_ELEMENT_NODE)
		return n->children;
	while (n != NULL && n != root && n->next == NULL)
		n = n->parent;
	if (n == NULL || n == root)
		return NULL;
	return n->next;
}

/* The visible text of element el: its text nodes, whitespace collapsed, bounded. */
static void
url_visible_text(struct url_state *st, xmlNode *el, char *buf)
{
	size_t len = 0;

	buf[0] = '\0';
	for (xmlNode *n = el->children; n != NULL && len + 1 < URL_TEXT_MAX;) {
		/* a nested link is another link (browsers never nest them) */
		bool skip =
		        url_node_is(n, "style") || url_node_is(n, "script") || url_node_is(n, "a");

		if (++st->nodes > URL_HTML_NODES_MAX)
			break;
		if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
		    n->content != NULL) {
			url_text_append(buf, &len, (const char *)n->content);
		} else if (url_node_is(n, "img")) {
			xmlChar *alt = xmlGetProp(n, (const xmlChar *)"alt");
			if (alt != NULL)
				url_text_append(buf, &len, (const char *)alt);
			xmlFree(alt);
		}
		n = url_next(n, el, skip);
	}
	url_text_finish(buf, len);
}

/* One element: a link (a, area href; form action) is kept with its text. */
static void
url_element(struct url_state *st, xmlNode *n)
{
	const char *attr = NULL;
	char url[URL_LEN_MAX + 1], text[URL_TEXT_MAX];
	xmlChar *v;

	if (url_node_is(n, "a") || url_node_is(n, "area"))
		attr = "href";
	else if (url_node_is(n, "form"))
		attr = "action";
	else
		return;
	if ((v = xmlGetProp(n, (const xmlChar *)attr)) == NULL)
		return;
	url_clean_attr((const char *)v, url, sizeof(url));
	xmlFree(v);
	text[0] = '\0';
	if (url_node_is(n, "a")) {
		url_visible_text(st, n, text);
	} else if (url_node_is(n, "area") && (v = xmlGetProp(n, (const xmlChar *)"alt")) != NULL) {
		size_t len = 0;
		url_text_append(text, &len, (const char *)v);
		url_text_finish(text, len);
		xmlFree(v);
	}
	url_add(st, url, text[0] ? text : NULL, true);
}

/* An HTML part: links with their text, then URLs written in its text. */
static void
url_scan_html(struct url_state *st, const char *html, size_t len)
{
	const int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
	                 HTML_PARSE_NONET | HTML_PARSE_NOIMPLIED;
	htmlDocPtr doc;

	if (len > URL_HTML_MAX) {
		/* the first URL_HTML_MAX octets as HTML, the rest for written URLs */
		url_scan_html(st, html, URL_HTML_MAX);
		url_scan_text(st, html + URL_HTML_MAX, len - URL_HTML_MAX, true);
		return;
	}
	doc = htmlReadMemory(html, (int)len, NULL, "UTF-8", opts);
	if (doc == NULL) {
		url_scan_text(st, html, len, true); /* still see what is written */
		return;
	}
	for (xmlNode *n = doc->children; n != NULL && !url_done(st);) {
		bool skip = url_node_is(n, "style");

		if (++st->nodes > URL_HTML_NODES_MAX)
			break;
		if (n->type == XML_ELEMENT_NODE)
			url_element(st, n);
		else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
		         n->content != NULL)
			url_scan_text(st, (const char *)n->content,
			              strlen((const char *)n->content), true);
		n = url_next(n, (xmlNode *)doc, skip);
	}
	xmlFreeDoc(doc);
}

void
scan_url_extract(struct scan_task *t)
{
	struct url_state st = {.m = &t->msg, .cap = t->msg.nurls};

	for (size_t i = 0; i < t->msg.nparts && !url_done(&st); i++) {
		const struct scan_part *p = &t->msg.parts[i];

		if (p->text_utf8 == NULL)
			continue;
		if (p->html)
			url_scan_html(&st, p->text_utf8, strlen(p->text_utf8));
		else if (p->text)
			url_scan_text(&st, p->text_utf8, strlen(p->text_utf8), false);
	}
	/* links past a limit were not examined: padding must not hide one */
	if (url_done(&st) || st.nodes > URL_HTML_NODES_MAX)
		scan_sym(t, SYM_URL_LIMIT, "%zu links, %zu HTML nodes", t->msg.nurls, st.nodes);
}

void
scan_url_free(struct scan_msg *m)
{
	for (size_t i = 0; i < m->nurls; i++) {
		free(m->urls[i].url);
		free(m->urls[i].host);
		free(m->urls[i].text);
	}
	free(m->urls);
	m->urls = NULL;
	m->nurls = 0;
}
