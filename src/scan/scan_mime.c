/*
 * scan_mime.c - the MIME model of a message: GMime parses it once into
 * t->msg (parts decoded, candidate file names, From / Reply-To, subject),
 * and every defect that lets two readers see different messages becomes
 * a symbol.
 *
 * RFC 5322 (header fields, addresses, groups), RFC 2045-2049 (MIME,
 * transfer encodings, multipart), RFC 2047 (encoded words), RFC 2183
 * (Content-Disposition), RFC 2231 (parameter continuations and charsets).
 *
 * Design:
 * - GMime reads the message through a memory stream that borrows the
 *   spooled octets; the parser is told not to persist the stream, so each
 *   part's content is copied once and nothing refers to in->msg after
 *   scan_mime_parse() returns.
 * - GMime's parser warnings arrive through the parser options' callback;
 *   the options live as long as the message (header lists keep a pointer
 *   to them), attached to it as object data, and the callback is cleared
 *   when the parse is over so that later lazy parsing by other checks does
 *   not report into a finished task.
 * - GMime keeps one value of a parameter or header that appears twice; the
 *   raw Content-Type and Content-Disposition fields of each part are
 *   parsed here as well so that a second, different file name is not lost,
 *   and the headers that decide how a part is read are compared raw.
 * - libmagic runs on each leaf part's decoded data with one cookie per
 *   thread, opened on first use and closed by a thread-specific key's
 *   destructor when the thread exits.
 */
#include "scan_internal.h"

#include <ctype.h>
#include <magic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "../common/log.h"
#include "../common/util.h"

#define MIME_NAMES_MAX    16        /* candidate file names kept per part */
#define MIME_NAME_MAX     1024      /* octets of one file name */
#define MIME_PARAMS_MAX   64        /* parameters read from one raw field */
#define MIME_SECTIONS_MAX 64        /* RFC 2231 sections of one parameter */
#define MIME_MBOX_MAX     100       /* mailboxes kept per address field */
#define MIME_GROUP_DEPTH  4         /* groups inside groups (not RFC, but parsed) */
#define MIME_MAGIC_BYTES  (1 << 20) /* octets of a part libmagic looks at */

/* What the warning callback needs; lives on scan_mime_parse()'s stack. */
struct mime_ctx {
	struct scan_task *t;
	GMimeParserOptions *opts;
	bool stop; /* scan_mime_max_parts reached */
};

/* --- symbols --- */

/* Headers whose two different values make two readers see two messages. */
static const char *const mime_single_headers[] = {
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "From",
};

/* Is detail one of the comma-separated details already recorded? */
static bool
mime_detail_has(const char *have, const char *detail)
{
	size_t n = strlen(detail);

	for (const char *p = have; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && memcmp(p, detail, n) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

/* Emit id with detail unless the same detail is already there. */
static void
mime_sym_once(struct scan_task *t, enum scan_sym_id id, const char *detail)
{
	if (detail == NULL) {
		scan_sym(t, id, NULL);
		return;
	}
	if (scan_has(t, id) && mime_detail_has(t->detail[id], detail))
		return;
	scan_sym(t, id, "%.80s", detail);
}

static const char *
mime_warning_name(GMimeParserWarning w)
{
	switch (w) {
	case GMIME_WARN_DUPLICATED_HEADER:
		return "DUPLICATED_HEADER";
	case GMIME_WARN_DUPLICATED_PARAMETER:
		return "DUPLICATED_PARAMETER";
	case GMIME_WARN_UNENCODED_8BIT_HEADER:
		return "UNENCODED_8BIT_HEADER";
	case GMIME_WARN_INVALID_CONTENT_TYPE:
		return "INVALID_CONTENT_TYPE";
	case GMIME_WARN_INVALID_RFC2047_HEADER_VALUE:
		return "INVALID_RFC2047_HEADER_VALUE";
	case GMIME_WARN_MALFORMED_MULTIPART:
		return "MALFORMED_MULTIPART";
	case GMIME_WARN_TRUNCATED_MESSAGE:
		return "TRUNCATED_MESSAGE";
	case GMIME_WARN_MALFORMED_MESSAGE:
		return "MALFORMED_MESSAGE";
	case GMIME_WARN_INVALID_PARAMETER:
		return "INVALID_PARAMETER";
	case GMIME_WARN_INVALID_ADDRESS_LIST:
		return "INVALID_ADDRESS_LIST";
	case GMIME_WARN_PART_WITHOUT_CONTENT:
		return "PART_WITHOUT_CONTENT";
	default:
		return "UNKNOWN_WARNING";
	}
}

/* GMime's parser warnings: the critical ones each have a symbol. */
static void
mime_warning(gint64 offset, GMimeParserWarning w, const gchar *item, gpointer user_data)
{
	struct mime_ctx *c = user_data;
	enum scan_sym_id id;

	(void)offset;
	switch (w) {
	case GMIME_CRIT_INVALID_HEADER_NAME:
		id = SYM_MIME_BAD_HEADER_NAME;
		break;
	case GMIME_CRIT_CONFLICTING_HEADER:
		/* the deciding headers are compared by mime_check_conflicts(), unfolded */
		for (size_t i = 0; item != NULL && i < nitems(mime_single_headers); i++)
			if (str_ieq(item, mime_single_headers[i]))
				return;
		id = SYM_MIME_CONFLICTING_HEADER;
		break;
	case GMIME_CRIT_CONFLICTING_PARAMETER:
		id = SYM_MIME_CONFLICTING_PARAMETER;
		break;
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
		id = SYM_MIME_MULTIPART_NO_BOUNDARY;
		break;
	case GMIME_CRIT_NESTING_OVERFLOW:
		id = SYM_MIME_NESTING_OVERFLOW;
		break;
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		id = SYM_MIME_PART_NO_HEADERS;
		break;
	default:
		mime_sym_once(c->t, SYM_MIME_MALFORMED, mime_warning_name(w));
		return;
	}
	mime_sym_once(c->t, id, item);
}

/* --- text helpers --- */

/* s as valid UTF-8 (invalid sequences replaced), malloc()ed, cut at a NUL. */
static char *
mime_utf8_dup(const char *s, size_t len)
{
	gchar *v = g_utf8_make_valid(s, (gssize)len);
	char *out = xstrdup(v);

	g_free(v);
	return out;
}

/* len octets in charset to UTF-8 (g_malloc()ed); unknown charsets as Windows-1252. */
static gchar *
mime_convert(const char *data, size_t len, const char *charset)
{
	gchar *out = NULL, *valid;
	gsize written = 0;

	if (charset != NULL && *charset != '\0' && !str_ieq(charset, "utf-8") &&
	    !str_ieq(charset, "us-ascii")) {
		const char *name = g_mime_charset_iconv_name(charset);

		if (name != NULL)
			out = g_convert_with_fallback(data, (gssize)len, "UTF-8", name, "?", NULL,
			                              &written, NULL);
	}
	if (out == NULL && !g_utf8_validate(data, (gssize)len, NULL))
		out = g_convert_with_fallback(data, (gssize)len, "UTF-8", "WINDOWS-1252", "?", NULL,
		                              &written, NULL);
	if (out == NULL)
		return g_utf8_make_valid(data, (gssize)len);
	valid = g_utf8_make_valid(out, (gssize)written);
	g_free(out);
	return valid;
}

/* Collapse folding and runs of white space; trim. For comparing raw values. */
static char *
mime_normalize(const char *v)
{
	size_t n = strlen(v), o = 0;
	char *out = xmalloc(n + 1);
	bool space = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			space = o > 0;
			continue;
		}
		if (space)
			out[o++] = ' ';
		space = false;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return out;
}

/* --- raw parameters (RFC 2045 5.1, RFC 2231) --- */

/* One parameter value as read from a raw field. */
struct mime_rawparam {
	char attr[64]; /* lower case, without the section and '*' */
	int section;   /* -1: none */
	bool extended; /* ends in '*': charset'lang'%XX (section 0) or %XX */
	char *value;   /* unquoted, malloc()ed */
};

/* Read the parameters after "type/subtype" of a raw field; returns how many. */
static size_t
mime_rawparams_read(const char *v, struct mime_rawparam *out, size_t max)
{
	const char *p = v;
	size_t n = 0;
	bool quoted = false;

	/* skip the value itself up to the first ';' outside quotes */
	for (; *p != '\0' && (quoted || *p != ';'); p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '\\' && quoted && p[1] != '\0')
			p++;
	}
	while (*p == ';' && n < max) {
		struct mime_rawparam *rp = &out[n];
		const char *a, *star;
		size_t alen, vcap, vlen = 0;
		uint64_t sec;

		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
			p++;
		a = p;
		while (*p != '\0' && *p != '=' && *p != ';' && *p != ' ' && *p != '\t' &&
		       *p != '\r' && *p != '\n')
			p++;
		alen = (size_t)(p - a);
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '=' || alen == 0) {
			while (*p != '\0' && *p != ';')
				p++;
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;

		memset(rp, 0, sizeof(*rp));
		rp->section = -1;
		if (alen > 0 && a[alen - 1] == '*') {
			rp->extended = true;
			alen--;
		}
		star = memchr(a, '*', alen);
		if (star != NULL) {
			size_t slen = alen - (size_t)(star - a) - 1;

			if (parse_u64(star + 1, slen, MIME_SECTIONS_MAX - 1, &sec) == 0)
				rp->section = (int)sec;
			else
				rp->section = MIME_SECTIONS_MAX; /* unusable; ignored */
			alen = (size_t)(star - a);
		}
		if (alen >= sizeof(rp->attr))
			alen = sizeof(rp->attr) - 1;
		memcpy(rp->attr, a, alen);
		rp->attr[alen] = '\0';
		str_lower(rp->attr);

		/* a value is never longer than what is left of the field, nor kept longer than a
		 * name */
		vcap = strnlen(p, MIME_NAME_MAX * 4) + 1;
		rp->value = xmalloc(vcap);
		if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				if (*p != '\r' && *p != '\n' && vlen + 1 < vcap)
					rp->value[vlen++] = *p;
			}
			if (*p == '"')
				p++;
			while (*p != '\0' && *p != ';')
				p++;
		} else {
			for (; *p != '\0' && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' &&
			       *p != '\n';
			     p++)
				if (vlen + 1 < vcap)
					rp->value[vlen++] = *p;
			while (*p != '\0' && *p != ';')
				p++;
		}
		rp->value[vlen] = '\0';
		n++;
	}
	return n;
}

static int
mime_hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Append s, %XX-decoded when pct, to buf (bounded by MIME_NAME_MAX). */
static void
mime_append(GString *buf, const char *s, bool pct)
{
	for (; *s != '\0' && buf->len < MIME_NAME_MAX; s++) {
		int hi, lo;

		if (pct && s[0] == '%' && (hi = mime_hexval((unsigned char)s[1])) >= 0 &&
		    (lo = mime_hexval((unsigned char)s[2])) >= 0) {
			g_string_append_c(buf, (gchar)(hi << 4 | lo));
			s += 2;
		} else
			g_string_append_c(buf, *s);
	}
}

/* "charset'lang'rest": the charset into cs, returns rest (or s when malformed). */
static const char *
mime_2231_charset(const char *s, char *cs, size_t cssize)
{
	const char *q1 = strchr(s, '\''), *q2;
	size_t n;

	cs[0] = '\0';
	if (q1 == NULL || (q2 = strchr(q1 + 1, '\'')) == NULL)
		return s;
	n = (size_t)(q1 - s);
	if (n >= cssize)
		n = cssize - 1;
	memcpy(cs, s, n);
	cs[n] = '\0';
	return q2 + 1;
}

/* Add name (UTF-8) to the part's candidates unless already there. */
static void
mime_name_add(struct scan_part *p, const char *name)
{
	char *dup;

	if (name == NULL || *name == '\0' || p->nnames >= MIME_NAMES_MAX)
		return;
	dup = mime_utf8_dup(name, strnlen(name, MIME_NAME_MAX));
	for (size_t i = 0; i < p->nnames; i++)
		if (strcmp(p->names[i], dup) == 0) {
			free(dup);
			return;
		}
	p->names = xrealloc(p->names, (p->nnames + 1) * sizeof(*p->names));
	p->names[p->nnames++] = dup;
}

/*
 * The file names ("name", "filename") of one raw field, each decoded
 * (RFC 2231 sections and charset, or RFC 2047 words), into names (UTF-8,
 * g_malloc()ed) up to max; returns how many.
 */
static size_t
mime_rawnames(struct mime_ctx *c, const char *raw, gchar **names, size_t max)
{
	struct mime_rawparam ps[MIME_PARAMS_MAX];
	size_t np = mime_rawparams_read(raw, ps, MIME_PARAMS_MAX), nn = 0;
	static const char *const attrs[] = {"name", "filename"};

	for (size_t a = 0; a < nitems(attrs) && nn < max; a++) {
		struct mime_rawparam *sec[MIME_SECTIONS_MAX] = {0};
		bool any_sec = false;

		for (size_t i = 0; i < np && nn < max; i++) {
			struct mime_rawparam *rp = &ps[i];

			if (strcmp(rp->attr, attrs[a]) != 0)
				continue;
			if (rp->section >= 0) {
				if (rp->section < MIME_SECTIONS_MAX && sec[rp->section] == NULL)
					sec[rp->section] = rp;
				any_sec = true;
			} else if (rp->extended) {
				char cs[64];
				const char *rest = mime_2231_charset(rp->value, cs, sizeof(cs));
				GString *buf = g_string_new(NULL);

				mime_append(buf, rest, true);
				names[nn++] = mime_convert(buf->str, buf->len, cs);
				g_string_free(buf, TRUE);
			} else
				names[nn++] = g_mime_utils_header_decode_text(c->opts, rp->value);
		}
		if (any_sec && nn < max && sec[0] != NULL) {
			GString *buf = g_string_new(NULL);
			char cs[64] = "";

			for (size_t s = 0; s < MIME_SECTIONS_MAX && sec[s] != NULL; s++) {
				const char *v = sec[s]->value;

				if (s == 0 && sec[s]->extended)
					v = mime_2231_charset(v, cs, sizeof(cs));
				mime_append(buf, v, sec[s]->extended);
			}
			names[nn++] = mime_convert(buf->str, buf->len, cs);
			g_string_free(buf, TRUE);
		}
	}
	for (size_t i = 0; i < np; i++)
		free(ps[i].value);
	return nn;
}

/* --- the part tree --- */

/* Compare repeated deciding headers of one object raw (GMime warns for some only). */
static void
mime_check_conflicts(struct mime_ctx *c, GMimeObject *obj)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	char *first[nitems(mime_single_headers)] = {0};
	int n = hl ? g_mime_header_list_get_count(hl) : 0;

	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *name = g_mime_header_get_name(h);
		const char *raw = g_mime_header_get_raw_value(h);

		if (name == NULL)
			continue;
		for (size_t k = 0; k < nitems(mime_single_headers); k++) {
			char *v;

			if (!str_ieq(name, mime_single_headers[k]))
				continue;
			v = mime_normalize(raw ? raw : "");
			if (first[k] == NULL)
				first[k] = v;
			else {
				if (strcmp(first[k], v) != 0)
					mime_sym_once(c->t, SYM_MIME_CONFLICTING_HEADER,
					              mime_single_headers[k]);
				free(v);
			}
		}
	}
	for (size_t k = 0; k < nitems(mime_single_headers); k++)
		free(first[k]);
}

/* Every candidate file name of a part: GMime's, plus the raw ones when it kept fewer. */
static void
mime_part_names(struct mime_ctx *c, GMimeObject *obj, struct scan_part *p)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	gchar *raw[MIME_NAMES_MAX];
	size_t nraw = 0, ngmime = 0;
	int n = hl ? g_mime_header_list_get_count(hl) : 0;
	const char *v;

	if ((v = g_mime_object_get_content_disposition_parameter(obj, "filename")) != NULL &&
	    *v != '\0') {
		mime_name_add(p, v);
		ngmime++;
	}
	if ((v = g_mime_object_get_content_type_parameter(obj, "name")) != NULL && *v != '\0') {
		mime_name_add(p, v);
		ngmime++;
	}
	for (int i = 0; i < n && nraw < MIME_NAMES_MAX; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *name = g_mime_header_get_name(h);
		const char *value = g_mime_header_get_raw_value(h);

		if (name == NULL || value == NULL ||
		    !(str_ieq(name, "Content-Type") || str_ieq(name, "Content-Disposition")))
			continue;
		nraw += mime_rawnames(c, value, raw + nraw, MIME_NAMES_MAX - nraw);
	}
	/* the same names decoded twice may differ in detail: only add when GMime lost one */
	for (size_t i = 0; i < nraw; i++) {
		if (nraw > ngmime)
			mime_name_add(p, raw[i]);
		g_free(raw[i]);
	}
}

static magic_t mime_magic_cookie_get(void);

/* The detected type of data into out ("" when libmagic is unavailable). */
static void
mime_magic_type(const unsigned char *data, size_t len, char *out, size_t size)
{
	magic_t m = mime_magic_cookie_get();
	const char *r;

	out[0] = '\0';
	if (m == NULL)
		return;
	r = magic_buffer(m, data, len < MIME_MAGIC_BYTES ? len : MIME_MAGIC_BYTES);
	if (r != NULL) {
		str_copy(out, r, size);
		str_lower(out);
	}
}

/* A leaf: names, flags, decoded content, text, detected type. */
static void
mime_leaf(struct mime_ctx *c, GMimeObject *obj, size_t idx)
{
	struct scan_part *p = &c->t->msg.parts[idx];
	GMimeContentDisposition *disp = g_mime_object_get_content_disposition(obj);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
	const char *type = ct ? g_mime_content_type_get_media_type(ct) : NULL;
	const char *sub = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;
	bool is_text = type != NULL && g_ascii_strcasecmp(type, "text") == 0;

	mime_part_names(c, obj, p);
	p->attachment =
	        p->nnames > 0 || (disp != NULL && g_mime_content_disposition_is_attachment(disp));
	if (is_text && !p->attachment && sub != NULL) {
		p->text = g_ascii_strcasecmp(sub, "plain") == 0;
		p->html = g_ascii_strcasecmp(sub, "html") == 0;
	}
	if (w != NULL) {
		GMimeStream *out = g_mime_stream_mem_new();
		GByteArray *ba;

		g_mime_data_wrapper_write_to_stream(w, out);
		ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
		p->len = ba->len;
		p->data = g_byte_array_free(ba, FALSE);
		g_object_unref(out);
		if (p->len == 0) {
			g_free(p->data);
			p->data = NULL;
		}
	}
	if (is_text)
		p->text_utf8 =
		        mime_convert(p->data ? (const char *)p->data : "", p->len,
		                     g_mime_object_get_content_type_parameter(obj, "charset"));
	/*
	 * libmagic is most of a small message's scan cost: run it where a
	 * type can lie (attachments, non-text parts); the body text itself
	 * is still checked for executables and archives by their signatures.
	 */
	if (p->len > 0 && (p->attachment || !(p->text || p->html)))
		mime_magic_type(p->data, p->len, p->magic_type, sizeof(p->magic_type));
}

/* Append a part for obj at depth; its index, or -1 past scan_mime_max_parts. */
static long
mime_part_new(struct mime_ctx *c, GMimeObject *obj, unsigned depth)
{
	struct scan_msg *m = &c->t->msg;
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	struct scan_part *p;

	if (m->nparts >= c->t->cfg->scan_mime_max_parts) {
		scan_sym(c->t, SYM_MIME_TOO_MANY_PARTS, "%zu", m->nparts);
		c->stop = true;
		return -1;
	}
	if ((m->nparts & (m->nparts - 1)) == 0) /* 0, 1, 2, 4, ...: grow by doubling */
		m->parts = xrealloc(m->parts, (m->nparts ? m->nparts * 2 : 1) * sizeof(*m->parts));
	p = &m->parts[m->nparts];
	memset(p, 0, sizeof(*p));
	p->depth = depth;
	if (hl != NULL && ct != NULL && g_mime_header_list_contains(hl, "Content-Type")) {
		char *mt = g_mime_content_type_get_mime_type(ct);

		if (mt != NULL) {
			str_copy(p->ctype, mt, sizeof(p->ctype));
			str_lower(p->ctype);
		}
		g_free(mt);
	}
	return (long)m->nparts++;
}

/* Walk obj and what it holds; depth bounded by scan_mime_max_depth. */
static void
mime_walk(struct mime_ctx *c, GMimeObject *obj, unsigned depth)
{
	long idx;

	if (c->stop || obj == NULL)
		return;
	if (depth > c->t->cfg->scan_mime_max_depth) {
		mime_sym_once(c->t, SYM_MIME_NESTING_OVERFLOW, "depth");
		return;
	}
	if ((idx = mime_part_new(c, obj, depth)) < 0)
		return;
	mime_check_conflicts(c, obj);

	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);

		for (int i = 0; i < n && !c->stop; i++)
			mime_walk(c, g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		c->t->msg.parts[idx].is_message = true;
		if (inner != NULL) {
			mime_check_conflicts(c, GMIME_OBJECT(inner));
			mime_walk(c, g_mime_message_get_mime_part(inner), depth + 1);
		}
	} else if (GMIME_IS_PART(obj))
		mime_leaf(c, obj, (size_t)idx);
}

/* --- addresses (RFC 5322 3.4) --- */

static void
mime_mbox_add(struct scan_mbox **v, size_t *n, const char *display, const char *addr)
{
	struct scan_mbox *mb;
	const char *at;

	if (*n >= MIME_MBOX_MAX)
		return;
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	mb = &(*v)[(*n)++];
	memset(mb, 0, sizeof(*mb));
	if (display != NULL && *display != '\0')
		mb->display = mime_utf8_dup(display, strnlen(display, MIME_NAME_MAX));
	if (addr != NULL && *addr != '\0') {
		mb->addr = mime_utf8_dup(addr, strnlen(addr, MIME_NAME_MAX));
		if ((at = strrchr(mb->addr, '@')) != NULL && at[1] != '\0') {
			mb->domain = xstrdup(at + 1);
			str_lower(mb->domain);
		}
	}
}

/* Mailboxes of list, groups flattened; how many were added. */
static size_t
mime_addrs_flatten(InternetAddressList *list, struct scan_mbox **v, size_t *n, int level)
{
	int len = list ? internet_address_list_length(list) : 0;
	size_t added = 0;

	for (int i = 0; i < len && *n < MIME_MBOX_MAX; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);

		if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			mime_mbox_add(
			        v, n, internet_address_get_name(ia),
			        internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
			added++;
		} else if (INTERNET_ADDRESS_IS_GROUP(ia) && level < MIME_GROUP_DEPTH) {
			InternetAddressList *members =
			        internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));

			if (mime_addrs_flatten(members, v, n, level + 1) == 0) {
				/* an empty group: its name, no address */
				mime_mbox_add(v, n, internet_address_get_name(ia), NULL);
			}
			added++;
		}
	}
	return added;
}

/* Every mailbox of every field called name; returns how many fields there were. */
static size_t
mime_addrs(struct mime_ctx *c, GMimeObject *msg, const char *name, struct scan_mbox **v, size_t *n)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(msg);
	int count = hl ? g_mime_header_list_get_count(hl) : 0;
	size_t fields = 0;

	for (int i = 0; i < count; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *hn = g_mime_header_get_name(h), *raw = g_mime_header_get_raw_value(h);
		InternetAddressList *list;

		if (hn == NULL || !str_ieq(hn, name))
			continue;
		fields++;
		list = internet_address_list_parse(c->opts, raw ? raw : "");
		if (mime_addrs_flatten(list, v, n, 0) == 0) {
			/* unparsable: what a reader would show, no address */
			gchar *text = g_mime_utils_header_decode_text(c->opts, raw ? raw : "");

			mime_mbox_add(v, n, text ? g_strstrip(text) : NULL, NULL);
			g_free(text);
		}
		if (list != NULL)
			g_object_unref(list);
	}
	return fields;
}

/* --- libmagic, one cookie per thread --- */

static __thread magic_t mime_magic_cookie;
static __thread bool mime_magic_failed;
static pthread_key_t mime_magic_key;
static pthread_once_t mime_magic_once = PTHREAD_ONCE_INIT;

static void
mime_magic_close(void *cookie)
{
	magic_close(cookie);
}

static void
mime_magic_key_init(void)
{
	if (pthread_key_create(&mime_magic_key, mime_magic_close) != 0)
		fatalx("pthread_key_create failed");
}

/* This thread's cookie, opened on first use; NULL when libmagic cannot load. */
static magic_t
mime_magic_cookie_get(void)
{
	magic_t m;

	if (mime_magic_cookie != NULL || mime_magic_failed)
		return mime_magic_cookie;
	pthread_once(&mime_magic_once, mime_magic_key_init);
	m = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_ENCODING |
	               MAGIC_NO_CHECK_TOKENS | MAGIC_NO_CHECK_JSON | MAGIC_NO_CHECK_CSV |
	               MAGIC_NO_CHECK_APPTYPE | MAGIC_NO_CHECK_ELF | MAGIC_ERROR);
	if (m == NULL || magic_load(m, NULL) != 0) {
		log_warn("event=scan_magic_unavailable error=\"%s\"",
		         m ? magic_error(m) : "magic_open failed");
		if (m != NULL)
			magic_close(m);
		mime_magic_failed = true;
		return NULL;
	}
	mime_magic_cookie = m;
	pthread_setspecific(mime_magic_key, m);
	return m;
}

/* --- entry points --- */

static void
mime_options_free(gpointer opts)
{
	g_mime_parser_options_free(opts);
}

void
scan_mime_parse(struct scan_task *t)
{
	struct mime_ctx c = {.t = t};
	GByteArray borrowed;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;
	const char *v;
	size_t nfromfields;

	memset(&t->msg, 0, sizeof(t->msg));
	if (t->in == NULL || t->in->msg == NULL || t->in->len == 0 || t->in->len > G_MAXUINT) {
		scan_sym(t, SYM_MIME_UNPARSABLE, "empty");
		return;
	}
	/*
	 * GMime builds the whole tree before the part limit can apply (a 10 MB
	 * message of a million empty parts took 9 s and 1.4 GB): count the
	 * lines that could be boundaries first, and refuse to parse far too many.
	 */
	{
		const unsigned char *m = t->in->msg, *end = m + t->in->len, *nl;
		uint64_t dashes = 0, limit = 4 * (uint64_t)t->cfg->scan_mime_max_parts + 8;

		for (const unsigned char *p = m; p < end && dashes <= limit; p = nl + 1) {
			if (end - p >= 2 && p[0] == '-' && p[1] == '-')
				dashes++;
			if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
				break;
		}
		if (dashes > limit) {
			scan_sym(t, SYM_MIME_TOO_MANY_PARTS, "over %llu lines starting with --",
			         (unsigned long long)limit);
			return;
		}
	}
	c.opts = g_mime_parser_options_new();
	g_mime_parser_options_set_warning_callback(c.opts, mime_warning, &c);

	/* borrow in->msg: the stream only reads, and does not own the array */
	borrowed.data = (guint8 *)(uintptr_t)t->in->msg;
	borrowed.len = (guint)t->in->len;
	stream = g_mime_stream_mem_new();
	g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(stream), &borrowed);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_persist_stream(parser, FALSE);
	msg = g_mime_parser_construct_message(parser, c.opts);
	g_object_unref(parser);
	g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(stream), g_byte_array_new());
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), TRUE);
	g_object_unref(stream);

	if (msg == NULL) {
		scan_sym(t, SYM_MIME_UNPARSABLE, NULL);
		g_mime_parser_options_free(c.opts);
		return;
	}
	g_object_set_data_full(G_OBJECT(msg), "moat-parser-options", c.opts, mime_options_free);
	t->msg.gmime = msg;

	mime_check_conflicts(&c, GMIME_OBJECT(msg));
	mime_walk(&c, g_mime_message_get_mime_part(msg), 0);
	if (t->msg.nparts == 0 && !c.stop)
		scan_sym(t, SYM_MIME_UNPARSABLE, "no parts");

	nfromfields = mime_addrs(&c, GMIME_OBJECT(msg), "From", &t->msg.from, &t->msg.nfrom);
	if (nfromfields == 0)
		scan_sym(t, SYM_MIME_NO_FROM, NULL);
	else if (t->msg.nfrom > 1)
		scan_sym(t, SYM_MIME_MULTIPLE_FROM, "%zu", t->msg.nfrom);
	mime_addrs(&c, GMIME_OBJECT(msg), "Reply-To", &t->msg.reply_to, &t->msg.nreply_to);
	if ((v = g_mime_message_get_subject(msg)) != NULL)
		t->msg.subject = mime_utf8_dup(v, strlen(v));
	if ((v = g_mime_message_get_message_id(msg)) != NULL)
		t->msg.message_id = mime_utf8_dup(v, strlen(v));

	/* later lazy parsing must not report into this task */
	g_mime_parser_options_set_warning_callback(c.opts, NULL, NULL);
}

static void
mime_mboxes_free(struct scan_mbox *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].display);
		free(v[i].addr);
		free(v[i].domain);
	}
	free(v);
}

void
scan_mime_free(struct scan_msg *m)
{
	for (size_t i = 0; i < m->nparts; i++) {
		struct scan_part *p = &m->parts[i];

		for (size_t k = 0; k < p->nnames; k++)
			free(p->names[k]);
		free(p->names);
		g_free(p->data);
		g_free(p->text_utf8);
	}
	free(m->parts);
	mime_mboxes_free(m->from, m->nfrom);
	mime_mboxes_free(m->reply_to, m->nreply_to);
	free(m->subject);
	free(m->message_id);
	scan_url_free(m);
	if (m->gmime != NULL)
		g_object_unref(m->gmime);
	memset(m, 0, sizeof(*m));
}
