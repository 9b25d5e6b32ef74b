/*
 * quarantine_preview.c - the safe preview of a held message: header
 * fields, text, HTML as text, links and an attachment list, as JSON.
 *
 * RFC 5322 (header fields, unfolding), RFC 2045-2049 (MIME, transfer
 * encodings), RFC 2047 (encoded words), RFC 2183 (Content-Disposition),
 * RFC 2231 (parameter charsets and continuations), RFC 3629 (UTF-8).
 *
 * Design:
 * - The message is read the way scan_mime.c reads it: GMime over a memory
 *   stream that borrows the octets, the stream not persisted, the same
 *   bounds (depth and parts as scan_mime_max_depth and
 *   scan_mime_max_parts default to, and the same refusal to let GMime
 *   build a tree of far too many boundaries: then only the header
 *   section is parsed). Which parts are attachments follows scan_mime.c:
 *   a file name or "Content-Disposition: attachment".
 * - The body is the first text/plain and the first text/html leaf that
 *   is not an attachment and not inside an attached message; every other
 *   leaf, and every attached message, is listed as an attachment with the
 *   size and SHA-256 of its decoded content, computed by streaming it
 *   through GMime's checksum filter into a null stream. Nothing else
 *   reads an attachment.
 * - Text is converted with iconv (GMime's charset names and cache); a
 *   sequence the charset does not have becomes U+FFFD, an undeclared or
 *   unknown charset is read as UTF-8 when valid, else as Windows-1252
 *   (as scan_mime.c does). Every string that goes out passes one sink
 *   (preview_sink_put()): invalid UTF-8 becomes U+FFFD, control
 *   characters go, and the ceiling cuts at a character boundary.
 * - HTML goes through libxml2's recovering parser (HTML_PARSE_NONET: no
 *   fetch), at most PREVIEW_HTML_MAX octets of it, and the tree is walked
 *   without recursion under a node budget. Only text nodes, the alt text
 *   of images and link targets are written out, never markup: script,
 *   style and head content, comments and attributes are dropped.
 */
#include "quarantine_preview.h"

#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include "../common/log.h"
#include "../common/util.h"

#define PREVIEW_TEXT_MAX         QUARANTINE_PREVIEW_TEXT_MAX
#define PREVIEW_HEADER_NAME_MAX  256          /* octets of a header field name */
#define PREVIEW_HEADER_VALUE_MAX 8192         /* octets of a decoded header field value */
#define PREVIEW_HEADER_RAW_MAX   (64u * 1024) /* octets of a raw value decoded */
#define PREVIEW_NAME_MAX         1024         /* octets of a file name */
#define PREVIEW_CTYPE_MAX        128          /* octets of a content type */
#define PREVIEW_HREF_MAX         2048         /* octets of a link target */
#define PREVIEW_LINK_TEXT_MAX    256          /* octets of a link's text in "links" */
#define PREVIEW_ALT_MAX          256          /* octets of an image's alt text */
#define PREVIEW_DEPTH_MAX        20           /* MIME nesting (scan_mime_max_depth's default) */
#define PREVIEW_PARTS_MAX        500          /* MIME entities (scan_mime_max_parts' default) */
#define PREVIEW_HTML_MAX         (2u << 20)   /* octets of HTML (as UTF-8) parsed */
#define PREVIEW_HTML_NODES_MAX   500000       /* HTML nodes visited */
#define PREVIEW_LINK_NEST_MAX    16           /* links inside links tracked */

static const char preview_fffd[] = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */

/* --- the sink every string goes through --- */

enum {
	SINK_ONELINE = 1 << 0, /* \n, \t become spaces, \r goes */
	SINK_BIDI = 1 << 1,    /* bidi embeddings, overrides, isolates become U+FFFD */
};

struct preview_sink {
	struct dynbuf b;
	unsigned flags;
	bool full; /* the ceiling cut something */
	bool bad;  /* the last thing put was U+FFFD for invalid octets */
	bool cr;   /* the last character put was a CR (a following LF is its pair) */
};

static void
preview_sink_init(struct preview_sink *k, size_t max, unsigned flags)
{
	memset(k, 0, sizeof(*k));
	dynbuf_init(&k->b, max);
	k->flags = flags;
}

/* Append valid UTF-8 as it is, cut at a character boundary at the ceiling. */
static void
preview_sink_raw(struct preview_sink *k, const char *s, size_t n)
{
	size_t room = k->b.max - k->b.len;

	if (k->full || n == 0)
		return;
	if (n > room) {
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		k->full = true;
	}
	if (dynbuf_add(&k->b, s, n) != 0)
		k->full = true;
}

/* Characters the sink does not pass as they are. */
static bool
preview_special(const struct preview_sink *k, uint32_t cp)
{
	if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
		return true;
	return (k->flags & SINK_BIDI) &&
	       ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069));
}

/*
 * Put n octets of s: invalid sequences become one U+FFFD per run, control
 * characters go (CR, CRLF and LF become LF; \t stays; SINK_ONELINE makes
 * LF and tab a space).
 */
static void
preview_sink_put(struct preview_sink *k, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;

	if (n == 0)
		return;
	while (i < n && !k->full) {
		uint32_t cp = 0;
		size_t l = utf8_decode(u + i, n - i, &cp);
		bool cr = false;

		if (l > 0 && !preview_special(k, cp)) {
			i += l;
			k->bad = k->cr = false;
			continue;
		}
		preview_sink_raw(k, s + run, i - run);
		if (l == 0) {
			if (!k->bad)
				preview_sink_raw(k, preview_fffd, 3);
			k->bad = true;
			i++;
			run = i;
			k->cr = false;
			continue;
		}
		if (cp == '\r' || cp == '\n') {
			if (k->flags & SINK_ONELINE) {
				if (cp == '\n')
					preview_sink_raw(k, " ", 1);
			} else if (cp == '\r' || !k->cr)
				preview_sink_raw(k, "\n", 1);
			cr = cp == '\r';
		} else if (cp == '\t')
			preview_sink_raw(k, (k->flags & SINK_ONELINE) ? " " : "\t", 1);
		else if (cp >= 0x2000)
			preview_sink_raw(k, preview_fffd, 3); /* bidi control */
		i += l;
		run = i;
		k->bad = false;
		k->cr = cr;
	}
	preview_sink_raw(k, s + run, i - run);
}

static void
preview_sink_str(struct preview_sink *k, const char *s)
{
	preview_sink_put(k, s, strlen(s));
}

/* The sink's text as a JSON string; the sink is emptied. */
static json_t *
preview_sink_json(struct preview_sink *k)
{
	json_t *j = json_stringn(k->b.p ? k->b.p : "", k->b.len);

	free(k->b.p);
	dynbuf_init(&k->b, k->b.max);
	if (j == NULL &&
	    (j = json_string("")) == NULL) /* not reached: the sink's output is valid */
		fatalx("json_string failed");
	return j;
}

/* --- the preview being built --- */

struct preview {
	json_t *out, *headers, *links, *attachments;
	GMimeParserOptions *opts;
	struct preview_sink text, html;
	bool have_text, have_html;
	size_t nparts;
	bool truncated;
};

static void
preview_set(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		fatalx("preview: cannot build JSON");
}

static void
preview_append(json_t *arr, json_t *v)
{
	if (v == NULL || json_array_append_new(arr, v) != 0)
		fatalx("preview: cannot build JSON");
}

/* s (n octets) through a sink with ceiling max as a JSON string. */
static json_t *
preview_str(struct preview *pv, const char *s, size_t n, size_t max, unsigned flags)
{
	struct preview_sink k;
	json_t *j;

	preview_sink_init(&k, max, flags);
	preview_sink_put(&k, s ? s : "", s ? n : 0);
	if (k.full)
		pv->truncated = true;
	j = preview_sink_json(&k);
	return j;
}

/* Trim white space at both ends of s[0..*n) in place; returns the new start. */
static const char *
preview_trim(const char *s, size_t *n)
{
	while (*n > 0 &&
	       (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\n' || s[*n - 1] == '\r'))
		(*n)--;
	while (*n > 0 && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
		s++;
		(*n)--;
	}
	return s;
}

/* --- charsets --- */

static bool
preview_charset_is(const char *cs, const char *name)
{
	return cs != NULL && str_ieq(cs, name);
}

/*
 * len octets of data in charset (NULL or "" when none is declared) into
 * the sink as UTF-8: iconv with U+FFFD for what the charset does not
 * have; UTF-8 when declared so or valid, else Windows-1252.
 */
static void
preview_convert(struct preview_sink *k, const char *data, size_t len, const char *charset)
{
	iconv_t cd = (iconv_t)-1;
	char *in = (char *)(uintptr_t)data, out[4096];
	size_t inleft = len;
	bool utf8 = preview_charset_is(charset, "utf-8") || preview_charset_is(charset, "utf8");

	if (charset != NULL && *charset != '\0' && !utf8 &&
	    !preview_charset_is(charset, "us-ascii")) {
		const char *name = g_mime_charset_iconv_name(charset);

		if (name != NULL)
			cd = g_mime_iconv_open("UTF-8", name);
	}
	if (cd == (iconv_t)-1) {
		if (utf8 || g_utf8_validate(data, (gssize)len, NULL) ||
		    (cd = g_mime_iconv_open("UTF-8", "WINDOWS-1252")) == (iconv_t)-1) {
			preview_sink_put(k, data, len);
			return;
		}
	}
	while (inleft > 0 && !k->full) {
		char *o = out;
		size_t oleft = sizeof(out);
		size_t r = iconv(cd, &in, &inleft, &o, &oleft);

		preview_sink_put(k, out, (size_t)(o - out));
		if (r != (size_t)-1)
			continue;
		if (errno == E2BIG && o != out)
			continue;
		if (errno != EILSEQ && errno != EINVAL)
			break;
		/* an octet the charset does not have, or a sequence cut at the end */
		preview_sink_put(k, preview_fffd, 3);
		in++;
		inleft--;
	}
	g_mime_iconv_close(cd);
}

/* --- header fields --- */

/* A raw header value unfolded, RFC 2047 decoded, as a JSON string. */
static json_t *
preview_header_value(struct preview *pv, const char *raw)
{
	size_t n = raw ? strnlen(raw, PREVIEW_HEADER_RAW_MAX) : 0, k = 0, dn;
	char *unfolded = xmalloc(n + 1);
	gchar *dec;
	const char *v;
	json_t *j;

	if (raw != NULL && raw[n] != '\0')
		pv->truncated = true;
	for (size_t i = 0; i < n; i++)
		if (raw[i] != '\r' && raw[i] != '\n')
			unfolded[k++] = raw[i];
	unfolded[k] = '\0';
	dec = g_mime_utils_header_decode_text(pv->opts, unfolded);
	dn = dec ? strlen(dec) : 0;
	v = preview_trim(dec ? dec : "", &dn);
	j = preview_str(pv, v, dn, PREVIEW_HEADER_VALUE_MAX, SINK_ONELINE);
	g_free(dec);
	free(unfolded);
	return j;
}

/* A top-level header field and where it was read. */
struct preview_hdr {
	GMimeHeader *h;
	gint64 offset;
	size_t seq;
};

static int
preview_hdr_cmp(const void *a, const void *b)
{
	const struct preview_hdr *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Append the first fields of hl to v (n used): a list is in the order
 * written, so no field past its first QUARANTINE_PREVIEW_HEADERS_MAX + 1
 * can be among the first shown. A field in both lists (same offset) is
 * taken once.
 */
static void
preview_hdrs_collect(GMimeHeaderList *hl, struct preview_hdr *v, size_t *n)
{
	int count = hl ? g_mime_header_list_get_count(hl) : 0;
	size_t first = *n;

	for (int i = 0; i < count && i <= QUARANTINE_PREVIEW_HEADERS_MAX; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		gint64 off = g_mime_header_get_offset(h);
		size_t seq = *n;
		bool dup = false;

		for (size_t k = 0; k < first && off >= 0 && !dup; k++)
			dup = v[k].offset == off;
		if (!dup) {
			v[seq] = (struct preview_hdr){h, off, seq};
			*n = seq + 1;
		}
	}
}

/*
 * The top-level header fields in the order written, and the first of
 * each field shown on its own. GMime keeps the top-level Content-*
 * fields with the message's MIME part, the others with the message:
 * both lists, merged by offset.
 */
static void
preview_headers(struct preview *pv, GMimeMessage *msg)
{
	static const struct {
		const char *key, *field;
	} named[] = {
	        {"subject", "Subject"}, {"from", "From"}, {"to", "To"},
	        {"cc", "Cc"},           {"date", "Date"}, {"message_id", "Message-ID"},
	};
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	GMimeObject *top = g_mime_message_get_mime_part(msg);
	struct preview_hdr *v = xcalloc(2 * (QUARANTINE_PREVIEW_HEADERS_MAX + 1), sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < nitems(named); i++) {
		GMimeHeader *h = hl ? g_mime_header_list_get_header(hl, named[i].field) : NULL;

		if (h != NULL)
			preview_set(pv->out, named[i].key,
			            preview_header_value(pv, g_mime_header_get_raw_value(h)));
	}
	preview_hdrs_collect(hl, v, &n);
	if (top != NULL)
		preview_hdrs_collect(g_mime_object_get_header_list(top), v, &n);
	if (n > 1)
		qsort(v, n, sizeof(*v), preview_hdr_cmp);
	for (size_t i = 0; i < n; i++) {
		const char *name = g_mime_header_get_name(v[i].h);
		json_t *e;

		if (i >= QUARANTINE_PREVIEW_HEADERS_MAX) {
			pv->truncated = true;
			break;
		}
		e = json_object();
		preview_set(e, "name",
		            preview_str(pv, name, name ? strlen(name) : 0, PREVIEW_HEADER_NAME_MAX,
		                        SINK_ONELINE));
		preview_set(e, "value",
		            preview_header_value(pv, g_mime_header_get_raw_value(v[i].h)));
		preview_append(pv->headers, e);
	}
	free(v);
}

/* --- HTML to text --- */

struct preview_html {
	struct preview *pv;
	struct preview_sink *out;
	bool space;     /* white space is owed before the next word */
	unsigned pre;   /* inside <pre> */
	unsigned lists; /* inside <ul> / <ol> */
	size_t nodes;
	struct {
		const xmlNode *el;
		size_t start; /* of its text in out */
		char *href;
	} open[PREVIEW_LINK_NEST_MAX]; /* links being written */
	size_t nopen;
};

/* Elements whose content is not shown. */
static const char *const html_skip[] = {
        "head", "script", "style", "title", "template", "iframe", "object", "noembed", "noframes",
};
/* Elements that stand on lines of their own. */
static const char *const html_block[] = {
        "address", "article", "aside",   "body",   "caption",  "center",     "dd",     "details",
        "dialog",  "div",     "dl",      "dt",     "fieldset", "figcaption", "figure", "footer",
        "form",    "header",  "html",    "legend", "li",       "main",       "menu",   "nav",
        "ol",      "section", "summary", "tr",     "ul",
};
/* Blocks set off by an empty line. */
static const char *const html_para[] = {
        "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "p", "pre", "table",
};

static bool
html_is(const xmlNode *n, const char *name)
{
	return n->name != NULL && str_ieq((const char *)n->name, name);
}

static bool
html_in(const xmlNode *n, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (html_is(n, names[i]))
			return true;
	return false;
}

static bool
html_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* How many LF end the text so far (up to 2). */
static unsigned
html_newlines(const struct preview_html *h)
{
	const struct dynbuf *b = &h->out->b;
	unsigned n = 0;

	while (n < 2 && n < b->len && b->p[b->len - 1 - n] == '\n')
		n++;
	return n;
}

/* End the line; lines = 2 leaves an empty line. Nothing at the start. */
static void
html_break(struct preview_html *h, unsigned lines)
{
	struct dynbuf *b = &h->out->b;

	while (b->len > 0 && b->p[b->len - 1] == ' ')
		b->p[--b->len] = '\0';
	for (size_t i = 0; i < h->nopen; i++)
		if (h->open[i].start > b->len)
			h->open[i].start = b->len;
	h->space = false;
	if (b->len == 0)
		return;
	for (unsigned n = html_newlines(h); n < lines; n++)
		preview_sink_raw(h->out, "\n", 1);
}

/* One word (no white space in it), after the space owed. */
static void
html_word(struct preview_html *h, const char *s, size_t n)
{
	const struct dynbuf *b = &h->out->b;

	if (n == 0)
		return;
	if (h->space && b->len > 0 && b->p[b->len - 1] != '\n' && b->p[b->len - 1] != ' ')
		preview_sink_raw(h->out, " ", 1);
	h->space = false;
	preview_sink_put(h->out, s, n);
}

/* Text: white space collapsed, except inside <pre>. */
static void
html_text(struct preview_html *h, const char *s)
{
	if (h->pre > 0) {
		html_word(h, s, strlen(s));
		return;
	}
	while (*s != '\0' && !h->out->full) {
		const char *e = s;

		if (html_ws(*s)) {
			h->space = true;
			s++;
			continue;
		}
		while (*e != '\0' && !html_ws(*e))
			e++;
		html_word(h, s, (size_t)(e - s));
		s = e;
	}
}

/*
 * An attribute through a sink (ceiling max), trimmed; a URL loses its
 * tabs and newlines as browsers read it, text keeps one space per run.
 */
static char *
html_attr(struct preview_html *h, const xmlNode *n, const char *name, size_t max, bool url)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	struct preview_sink k;
	size_t len;
	const char *s;

	if (v == NULL)
		return NULL;
	preview_sink_init(&k, max, SINK_ONELINE);
	len = strlen((const char *)v);
	s = preview_trim((const char *)v, &len);
	for (size_t i = 0, e; i < len; i = e) {
		if (html_ws(s[i])) {
			if (url ? s[i] == ' ' : k.b.len > 0 && k.b.p[k.b.len - 1] != ' ')
				preview_sink_raw(&k, " ", 1);
			e = i + 1;
			continue;
		}
		for (e = i; e < len && !html_ws(s[e]); e++)
			;
		preview_sink_put(&k, s + i, e - i);
	}
	if (k.full)
		h->pv->truncated = true;
	xmlFree(v);
	return k.b.p ? k.b.p : xstrdup("");
}

/* Add {text, href} to "links" unless there already or over the limit. */
static void
html_link_add(struct preview_html *h, const char *text, size_t tlen, const char *href)
{
	struct preview *pv = h->pv;
	json_t *t, *e;
	size_t i;
	json_t *v;

	t = preview_str(pv, text, tlen, PREVIEW_LINK_TEXT_MAX, SINK_ONELINE);
	json_array_foreach (pv->links, i, v) {
		if (strcmp(json_string_value(json_object_get(v, "href")), href) == 0 &&
		    json_equal(json_object_get(v, "text"), t)) {
			json_decref(t);
			return;
		}
	}
	if (json_array_size(pv->links) >= QUARANTINE_PREVIEW_LINKS_MAX) {
		pv->truncated = true;
		json_decref(t);
		return;
	}
	e = json_object();
	preview_set(e, "text", t);
	preview_set(e, "href", preview_str(pv, href, strlen(href), PREVIEW_HREF_MAX, SINK_ONELINE));
	preview_append(pv->links, e);
}

/* A link ends: its target after its text, "text <href>", unless the text is the target. */
static void
html_link_close(struct preview_html *h, size_t start, const char *href)
{
	const struct dynbuf *b = &h->out->b;
	size_t tlen = b->len > start ? b->len - start : 0;
	const char *text = preview_trim(b->p ? b->p + start : "", &tlen);
	char *t = xstrndup(text, tlen);

	/* the list shows the text on one line, as the sink makes it */
	html_link_add(h, t, tlen, href);
	if (strcmp(t, href) != 0) {
		h->space = true;
		html_word(h, "<", 1);
		preview_sink_str(h->out, href);
		preview_sink_raw(h->out, ">", 1);
	}
	free(t);
}

/* An element starts; whether to read what it holds. */
static bool
html_enter(struct preview_html *h, const xmlNode *n)
{
	if (html_in(n, html_skip, nitems(html_skip)))
		return false;
	if (html_in(n, html_para, nitems(html_para)))
		html_break(h, 2);
	else if (html_in(n, html_block, nitems(html_block)))
		html_break(h, 1);

	if (html_is(n, "br")) {
		h->space = false;
		if (h->out->b.len > 0 && html_newlines(h) < 2)
			preview_sink_raw(h->out, "\n", 1);
	} else if (html_is(n, "hr")) {
		html_break(h, 1);
		html_word(h, "---", 3);
		html_break(h, 1);
	} else if (html_is(n, "li")) {
		for (unsigned i = 1; i < h->lists && i < 8; i++)
			preview_sink_raw(h->out, "  ", 2);
		preview_sink_raw(h->out, "- ", 2);
		h->space = false;
	} else if (html_is(n, "ul") || html_is(n, "ol")) {
		h->lists++;
	} else if (html_is(n, "pre")) {
		h->pre++;
	} else if (html_is(n, "td") || html_is(n, "th")) {
		h->space = true;
	} else if (html_is(n, "img")) {
		char *alt = html_attr(h, n, "alt", PREVIEW_ALT_MAX, false);

		h->space = true;
		html_word(h, "[image", 6);
		if (alt != NULL && *alt != '\0') {
			preview_sink_raw(h->out, ": ", 2);
			preview_sink_str(h->out, alt);
		}
		preview_sink_raw(h->out, "]", 1);
		h->space = true;
		free(alt);
	}

	if (html_is(n, "a") || html_is(n, "area")) {
		char *href = html_attr(h, n, "href", PREVIEW_HREF_MAX, true);

		if (href == NULL || *href == '\0') {
			free(href);
			return true;
		}
		if (h->nopen == PREVIEW_LINK_NEST_MAX) {
			/* too deep to follow: the target before the text */
			h->space = true;
			html_word(h, "<", 1);
			preview_sink_str(h->out, href);
			preview_sink_raw(h->out, ">", 1);
			h->space = true;
			html_link_add(h, "", 0, href);
			free(href);
			return true;
		}
		if (h->space && h->out->b.len > 0 && h->out->b.p[h->out->b.len - 1] != '\n' &&
		    h->out->b.p[h->out->b.len - 1] != ' ') {
			preview_sink_raw(h->out, " ", 1);
			h->space = false;
		}
		h->open[h->nopen].el = n;
		h->open[h->nopen].start = h->out->b.len;
		h->open[h->nopen].href = href;
		h->nopen++;
		if (html_is(n, "area")) {
			char *alt = html_attr(h, n, "alt", PREVIEW_ALT_MAX, false);

			if (alt != NULL)
				html_word(h, alt, strlen(alt)); /* the text of the link */
			free(alt);
		}
	}
	return true;
}

/* An element ends (after what it holds). */
static void
html_leave(struct preview_html *h, const xmlNode *n)
{
	if (h->nopen > 0 && h->open[h->nopen - 1].el == n) {
		h->nopen--;
		html_link_close(h, h->open[h->nopen].start, h->open[h->nopen].href);
		free(h->open[h->nopen].href);
	}
	if (html_in(n, html_skip, nitems(html_skip)))
		return;
	if (html_is(n, "ul") || html_is(n, "ol"))
		h->lists--;
	else if (html_is(n, "pre"))
		h->pre--;
	else if (html_is(n, "td") || html_is(n, "th"))
		h->space = true;
	if (html_in(n, html_para, nitems(html_para)))
		html_break(h, 2);
	else if (html_in(n, html_block, nitems(html_block)))
		html_break(h, 1);
}

/* The tree below root, depth first without recursion, into h->out. */
static void
html_walk(struct preview_html *h, xmlNode *root)
{
	xmlNode *n = root->children;

	while (n != NULL && !h->out->full) {
		bool down = false;

		if (++h->nodes > PREVIEW_HTML_NODES_MAX) {
			h->pv->truncated = true;
			return;
		}
		if (n->type == XML_ELEMENT_NODE)
			down = html_enter(h, n);
		else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
		         n->content != NULL)
			html_text(h, (const char *)n->content);
		if (down && n->children != NULL) {
			n = n->children;
			continue;
		}
		if (n->type == XML_ELEMENT_NODE)
			html_leave(h, n);
		while (n->next == NULL) {
			n = n->parent;
			if (n == NULL || n == root)
				return;
			html_leave(h, n);
		}
		n = n->next;
	}
}

/* An HTML body part (UTF-8, len octets) as text into pv->html, its links into "links". */
static void
preview_html_render(struct preview *pv, const char *html, size_t len)
{
	/* (no HTML_PARSE_NOIMPLIED: text outside an element would be lost) */
	const int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
	                 HTML_PARSE_NONET | HTML_PARSE_IGNORE_ENC;
	struct preview_html h = {.pv = pv, .out = &pv->html};
	htmlDocPtr doc;
	struct dynbuf *b = &pv->html.b;

	if (len == 0)
		return;
	if ((doc = htmlReadMemory(html, (int)len, NULL, "UTF-8", opts)) == NULL)
		return;
	html_walk(&h, (xmlNode *)doc);
	while (h.nopen > 0)
		free(h.open[--h.nopen].href);
	xmlFreeDoc(doc);
	if (pv->html.full)
		pv->truncated = true;
	while (b->len > 0 && (b->p[b->len - 1] == '\n' || b->p[b->len - 1] == ' '))
		b->p[--b->len] = '\0';
}

/* --- the part tree --- */

/* The decoded content of a leaf into a g_malloc()ed buffer. */
static guint8 *
preview_part_data(GMimeObject *obj, size_t *len)
{
	GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
	GMimeStream *out;
	GByteArray *ba;

	*len = 0;
	if (w == NULL)
		return NULL;
	out = g_mime_stream_mem_new();
	g_mime_data_wrapper_write_to_stream(w, out);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
	g_object_unref(out);
	*len = ba->len;
	return g_byte_array_free(ba, FALSE);
}

/* An attachment entry: size and SHA-256 of the decoded leaf (or of the attached message). */
static void
preview_attachment(struct preview *pv, GMimeObject *obj, const char *filename)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimeStream *null, *fs;
	GMimeFilter *sum;
	char *mt = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	gchar *hex;
	json_t *e;

	if (json_array_size(pv->attachments) >= QUARANTINE_PREVIEW_ATTACH_MAX) {
		pv->truncated = true;
		g_free(mt);
		return;
	}
	if (mt != NULL)
		str_lower(mt);
	null = g_mime_stream_null_new();
	fs = g_mime_stream_filter_new(null);
	sum = g_mime_filter_checksum_new(G_CHECKSUM_SHA256);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(fs), sum);
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (m != NULL)
			g_mime_object_write_to_stream(GMIME_OBJECT(m), NULL, fs);
	} else {
		GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));

		if (w != NULL)
			g_mime_data_wrapper_write_to_stream(w, fs);
	}
	g_mime_stream_flush(fs);
	hex = g_mime_filter_checksum_get_string(GMIME_FILTER_CHECKSUM(sum));

	e = json_object();
	preview_set(e, "filename",
	            preview_str(pv, filename, filename ? strlen(filename) : 0, PREVIEW_NAME_MAX,
	                        SINK_ONELINE | SINK_BIDI));
	preview_set(e, "content_type",
	            preview_str(pv, mt, mt ? strlen(mt) : 0, PREVIEW_CTYPE_MAX, SINK_ONELINE));
	preview_set(e, "size", json_integer((json_int_t)GMIME_STREAM_NULL(null)->written));
	preview_set(e, "sha256", json_string(hex ? hex : ""));
	preview_append(pv->attachments, e);

	g_free(hex);
	g_object_unref(sum);
	g_object_unref(fs);
	g_object_unref(null);
	g_free(mt);
}

/* A leaf: the first text/plain and text/html body parts are shown, the rest listed. */
static void
preview_leaf(struct preview *pv, GMimeObject *obj, bool attached)
{
	GMimeContentDisposition *disp = g_mime_object_get_content_disposition(obj);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	const char *filename = g_mime_part_get_filename(GMIME_PART(obj));
	const char *charset = g_mime_object_get_content_type_parameter(obj, "charset");
	bool attachment = (filename != NULL && *filename != '\0') ||
	                  (disp != NULL && g_mime_content_disposition_is_attachment(disp));
	bool plain = ct != NULL && g_mime_content_type_is_type(ct, "text", "plain");
	bool html = ct != NULL && g_mime_content_type_is_type(ct, "text", "html");
	guint8 *data;
	size_t len;

	if (attachment || attached || (plain && pv->have_text) || (html && pv->have_html) ||
	    !(plain || html)) {
		preview_attachment(pv, obj, filename);
		return;
	}
	if (plain)
		pv->have_text = true;
	else
		pv->have_html = true;
	if ((data = preview_part_data(obj, &len)) == NULL)
		return; /* no content: nothing to show */
	if (plain) {
		preview_convert(&pv->text, (const char *)data, len, charset);
		if (pv->text.full)
			pv->truncated = true;
	} else {
		struct preview_sink utf8;

		preview_sink_init(&utf8, PREVIEW_HTML_MAX, 0);
		preview_convert(&utf8, (const char *)data, len, charset);
		if (utf8.full)
			pv->truncated = true;
		preview_html_render(pv, utf8.b.p, utf8.b.len);
		free(utf8.b.p);
	}
	g_free(data);
}

/* obj and what it holds; attached: inside an attached message. */
static void
preview_walk(struct preview *pv, GMimeObject *obj, unsigned depth, bool attached)
{
	if (obj == NULL)
		return;
	if (depth > PREVIEW_DEPTH_MAX || pv->nparts >= PREVIEW_PARTS_MAX) {
		pv->truncated = true;
		return;
	}
	pv->nparts++;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);

		for (int i = 0; i < n; i++)
			preview_walk(pv, g_mime_multipart_get_part(mp, i), depth + 1, attached);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		const char *name = g_mime_object_get_content_disposition_parameter(obj, "filename");

		if (name == NULL)
			name = g_mime_object_get_content_type_parameter(obj, "name");
		preview_attachment(pv, obj, name);
		if (inner != NULL)
			preview_walk(pv, g_mime_message_get_mime_part(inner), depth + 1, true);
	} else if (GMIME_IS_PART(obj))
		preview_leaf(pv, obj, attached);
}

/* --- entry point --- */

/* More lines starting with "--" than PREVIEW_PARTS_MAX parts can use (see scan_mime.c). */
static bool
preview_too_many_boundaries(const unsigned char *m, size_t len)
{
	const unsigned char *end = m + len, *nl;
	uint64_t dashes = 0, limit = 4 * (uint64_t)PREVIEW_PARTS_MAX + 8;

	for (const unsigned char *p = m; p < end; p = nl + 1) {
		if (end - p >= 2 && p[0] == '-' && p[1] == '-' && ++dashes > limit)
			return true;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			break;
	}
	return false;
}

/* The length of the header section with its empty line (all of m when there is none). */
static size_t
preview_header_len(const unsigned char *m, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (m[i] != '\n')
			continue;
		if (m[i + 1] == '\n')
			return i + 2;
		if (m[i + 1] == '\r' && i + 2 < len && m[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/* GMime's message over the len octets at m (borrowed), or NULL. */
static GMimeMessage *
preview_parse(const unsigned char *m, size_t len, GMimeParserOptions *opts)
{
	GByteArray borrowed;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;

	borrowed.data = (guint8 *)(uintptr_t)m;
	borrowed.len = (guint)len;
	stream = g_mime_stream_mem_new();
	g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(stream), &borrowed);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_persist_stream(parser, FALSE);
	msg = g_mime_parser_construct_message(parser, opts);
	g_object_unref(parser);
	g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(stream), g_byte_array_new());
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), TRUE);
	g_object_unref(stream);
	return msg;
}

json_t *
quarantine_preview(const unsigned char *msg, size_t len)
{
	static const char *const strings[] = {"subject", "from", "to", "cc", "date", "message_id"};
	struct preview pv = {0};
	GMimeMessage *m = NULL;
	const char *error = NULL;

	if ((pv.out = json_object()) == NULL || (pv.headers = json_array()) == NULL ||
	    (pv.links = json_array()) == NULL || (pv.attachments = json_array()) == NULL)
		fatalx("preview: cannot build JSON");
	for (size_t i = 0; i < nitems(strings); i++)
		preview_set(pv.out, strings[i], json_string(""));
	preview_sink_init(&pv.text, PREVIEW_TEXT_MAX, 0);
	preview_sink_init(&pv.html, PREVIEW_TEXT_MAX, 0);

	if (msg == NULL || len == 0) {
		error = "empty message";
		goto done;
	}
	if (len > G_MAXUINT) {
		error = "message too large to parse";
		goto done;
	}
	if (preview_too_many_boundaries(msg, len)) {
		/* GMime would build every part first: the header section only */
		error = "too many MIME boundaries: only the header section was read";
		pv.truncated = true;
		len = preview_header_len(msg, len);
	}
	pv.opts = g_mime_parser_options_new();
	if ((m = preview_parse(msg, len, pv.opts)) == NULL) {
		error = "not a message GMime can parse";
		goto done;
	}
	preview_headers(&pv, m);
	if (error == NULL)
		preview_walk(&pv, g_mime_message_get_mime_part(m), 0, false);

done:
	preview_set(pv.out, "headers", pv.headers);
	preview_set(pv.out, "text", preview_sink_json(&pv.text));
	preview_set(pv.out, "html_text", preview_sink_json(&pv.html));
	preview_set(pv.out, "links", pv.links);
	preview_set(pv.out, "attachments", pv.attachments);
	preview_set(pv.out, "parts", json_integer((json_int_t)pv.nparts));
	preview_set(pv.out, "truncated", json_boolean(pv.truncated));
	if (error != NULL)
		preview_set(pv.out, "error", json_string(error));
	if (m != NULL)
		g_object_unref(m);
	if (pv.opts != NULL)
		g_mime_parser_options_free(pv.opts);
	return pv.out;
}
