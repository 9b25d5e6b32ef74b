/*
 * dsn.c - builds delivery status notifications (see dsn.h).
 *
 * RFC 3464 (message/delivery-status: field order and syntax, 2.2 and
 * 2.3), RFC 6522 (multipart/report), RFC 3461 (NOTIFY, RET, ENVID,
 * ORCPT), RFC 3463 (status codes), RFC 6533 (utf-8 address type,
 * message/global-delivery-status, message/global-headers), RFC 6532
 * (message/global), RFC 5322 (2.1.1 line limits, 2.2.3 folding, 3.3
 * dates), RFC 2045/2046 (MIME, boundaries), RFC 3834 (Auto-Submitted).
 *
 * Design:
 * - Everything that came from outside moat (the remote reply above all,
 *   but also addresses, HELO names, ENVID and ORCPT) goes through
 *   dsn_clean() before it is written anywhere: one line of printable text,
 *   UTF-8 only where the report may hold it, bounded in length. So a reply
 *   "550 x\r\nBcc: y" becomes "550 x Bcc: y", text inside a field, never a
 *   field of its own.
 * - Every header field and every line of the text part is written by
 *   dsn_fold(), which breaks at spaces near DSN_FOLD columns and splits a
 *   token that would not fit: whatever the inputs, no line of ours exceeds
 *   DSN_LINE_MAX. The returned original is scanned first and sent whole
 *   only when none of its lines does either.
 * - The parts are built first; then a boundary is chosen that occurs in
 *   none of them nor in the returned original (dsn_boundary(), two passes,
 *   always succeeds); then the whole is assembled.
 * - The output has a ceiling computed from the inputs (dsn_ceiling());
 *   reaching it would be a bug here, not a property of the input, so it is
 *   fatal.
 * - The only state is the Message-ID counter, an atomic: dsn_build() may
 *   run on any thread.
 */
#include "dsn.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../smtp/smtp_parse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert((DSN_WANT_DEFAULT_DELAY & (SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS |
                                          SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) == 0,
               "DSN_WANT_DEFAULT_DELAY overlaps an RFC 3461 NOTIFY bit");

#define DSN_WRAP            76            /* text part lines wrap here */
#define DSN_LABEL           "           " /* text part: indent under a label */
#define DSN_QID_MAX         32            /* queue id octets in Message-ID and boundary */
#define DSN_HOST_MAX        255
#define DSN_BOUNDARY_PREFIX "=_moat-dsn-" /* "=_" occurs in no QP or base64 text */
#define DSN_DATE_MAX        64
#define DSN_TIME_MAX        INT64_C(253402300799) /* 9999-12-31 23:59:59 UTC */

/* What the original looks like, from one pass over it. */
struct dsn_scan {
	size_t hdr_len; /* header block: up to the first empty line, its CRLF included */
	bool hdr_8bit, hdr_long, body_8bit, body_long;
};

enum dsn_ret { DSN_RET_NONE, DSN_RET_HDRS, DSN_RET_FULL };

/* Why the original is not returned whole; the text part explains some. */
enum dsn_why {
	DSN_WHY_NONE,       /* it is, or there is none */
	DSN_WHY_ASKED,      /* RET=HDRS */
	DSN_WHY_NOT_FAILED, /* delay or success report */
	DSN_WHY_TOO_BIG,    /* over max_original */
	DSN_WHY_LONG_LINE,  /* a body line over DSN_LINE_MAX */
	DSN_WHY_HDR_LONG,   /* a header line over DSN_LINE_MAX: not returned at all */
};

struct dsn_ctx {
	const struct dsn_msg *m;
	const char *orig;
	size_t orig_len;
	char *host;     /* reporting MTA as a host name token */
	char *qid;      /* queue id, letters and digits, at most DSN_QID_MAX */
	char *qid_text; /* queue id as shown */
	size_t nlisted; /* recipients in the report */
	bool utf8;      /* message/global-*: UTF-8 allowed in the text and report */
	bool any_failed, any_delayed;
	struct dsn_scan scan;
	enum dsn_ret ret;
	enum dsn_why why;
	size_t ceiling;
};

static _Atomic uint64_t dsn_seq;

/* The report's buffers: their ceilings are computed from what they hold, so passing one is a bug.
 */
static void
buf_add(struct dynbuf *b, const void *s, size_t n)
{
	if (dynbuf_add(b, s, n) < 0)
		fatalx("dsn: output over its ceiling of %zu octets", b->max);
}

static void
buf_str(struct dynbuf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

#define buf_fmt(b, ...)                                                                            \
	do {                                                                                       \
		if (dynbuf_printf((b), __VA_ARGS__) < 0)                                           \
			fatalx("dsn: output over its ceiling of %zu octets", (b)->max);            \
	} while (0)

/* Append s[0..n) with every bare CR or LF made CRLF (the next hop would refuse them). */
static void
buf_add_crlf(struct dynbuf *b, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && s[j] != '\r' && s[j] != '\n')
			j++;
		buf_add(b, s + i, j - i);
		if (j == n)
			break;
		buf_add(b, "\r\n", 2);
		if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n')
			j++;
		i = j + 1;
	}
}

static size_t
sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX / 2 - b ? SIZE_MAX / 2 : a + b;
}

static size_t
sat_mul(size_t a, size_t b)
{
	return b != 0 && a > SIZE_MAX / 2 / b ? SIZE_MAX / 2 : a * b;
}

/*
 * Characters that must not reach a reader although valid: C1 controls,
 * line and paragraph separators, and the marks, overrides and isolates
 * that reorder bidirectional text (they can make a reply read backwards).
 */
static bool
utf8_unsafe(uint32_t c)
{
	return (c >= 0x80 && c <= 0x9f) || c == 0x200e || c == 0x200f || c == 0x2028 ||
	       c == 0x2029 || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) ||
	       c == 0xfeff;
}

static bool
has_8bit(const char *s)
{
	if (s == NULL)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/*
 * One line of printable text from untrusted s (NULL: empty), malloc'd: CR,
 * LF, TAB and other controls become a space, a run of spaces one space,
 * none at either end. An 8-bit octet stays only when utf8 is set and it
 * starts a valid, harmless UTF-8 character; otherwise the character
 * becomes '?'. At most max octets of s are used and the rest is counted
 * in a note, so the result is at most max + 40 octets.
 */
static char *
dsn_clean(const char *s, bool utf8, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	struct dynbuf b;
	size_t n, lim, i = 0;
	bool space = false;

	dynbuf_init(&b, sat_add(max, 64));
	buf_add(&b, "", 0);
	if (s == NULL)
		return b.p;
	n = strlen(s);
	lim = n;
	if (n > max) {
		lim = max;
		while (lim > 0 && (u[lim] & 0xc0) == 0x80)
			lim--;
	}
	while (i < lim) {
		uint32_t cp;
		size_t j = i, l;

		if (u[i] <= 0x20 || u[i] == 0x7f) {
			space = b.len > 0;
			i++;
			continue;
		}
		if (space) {
			buf_add(&b, " ", 1);
			space = false;
		}
		while (j < lim && u[j] > 0x20 && u[j] < 0x7f)
			j++;
		if (j > i) {
			buf_add(&b, u + i, j - i);
			i = j;
			continue;
		}
		l = utf8_decode(u + i, lim - i, &cp);
		if (l != 0 && utf8 && !utf8_unsafe(cp))
			buf_add(&b, u + i, l);
		else
			buf_add(&b, "?", 1);
		i += l != 0 ? l : 1;
	}
	if (lim < n)
		buf_fmt(&b, "%s[%zu more octets not shown]", b.len > 0 ? " " : "", n - lim);
	return b.p;
}

/*
 * A token for a structured field (host name, HELO, address literal, queue
 * id), malloc'd: printable ASCII other than space, "()\;<>@" and DQUOTE;
 * anything else becomes '?'. At most max octets; NULL or empty: dflt.
 */
static char *
dsn_token(const char *s, size_t max, const char *dflt)
{
	size_t n, i;
	char *t;

	if (s == NULL || *s == '\0')
		return xstrdup(dflt);
	n = strnlen(s, max);
	t = xstrndup(s, n);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t[i];

		if (c <= 0x20 || c >= 0x7f || strchr("()\\;<>@\"", c) != NULL)
			t[i] = '?';
	}
	return t;
}

/* The reporting MTA's name as a dot-atom for From: and Message-ID. */
static char *
dsn_host(const char *s)
{
	char *t = xmalloc(DSN_HOST_MAX + 1);
	size_t o = 0;

	for (; s != NULL && *s != '\0' && o < DSN_HOST_MAX; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '.') {
			if (o > 0 && t[o - 1] != '.')
				t[o++] = '.';
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '-')
			t[o++] = (char)c;
		else
			t[o++] = '-';
	}
	while (o > 0 && t[o - 1] == '.')
		o--;
	t[o] = '\0';
	if (o == 0) {
		free(t);
		return xstrdup("localhost");
	}
	return t;
}

/* The queue id reduced to letters and digits, for Message-ID and boundary. */
static char *
dsn_qid(const char *s)
{
	char *t = xmalloc(DSN_QID_MAX + 1);
	size_t o = 0;

	for (; s != NULL && *s != '\0' && o < DSN_QID_MAX; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			t[o++] = (char)c;
	}
	t[o] = '\0';
	if (o == 0) {
		free(t);
		return xstrdup("noqueue");
	}
	return t;
}

/* RFC 5322 3.3 date-time in UTC, locale-free; out of range is clamped. */
static void
dsn_date(char *buf, size_t size, int64_t t)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	time_t tt;

	if (t < 0)
		t = 0;
	if (t > DSN_TIME_MAX)
		t = DSN_TIME_MAX;
	tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
	    tm.tm_mon > 11) {
		str_copy(buf, "Thu, 01 Jan 1970 00:00:00 +0000", size);
		return;
	}
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Append text as lines: the first starts with first, the others with cont.
 * Lines break at spaces so as to stay within width when they can; a token
 * that does not fit in limit octets is split there (at a UTF-8 character
 * boundary). text is a dsn_clean() result or our own words: no controls.
 * For a header field: first "Name: ", cont " ", width DSN_FOLD, limit
 * DSN_LINE_MAX (RFC 5322 2.2.3); for the text part: a label, DSN_WRAP.
 */
static void
dsn_fold(struct dynbuf *b, const char *first, const char *cont, const char *text, size_t width,
         size_t limit)
{
	size_t col = strlen(first), ccol = strlen(cont);
	bool empty = true; /* no word on this line yet */
	const char *p = text;

	buf_str(b, first);
	for (;;) {
		const char *w;
		size_t wlen;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		w = p;
		while (*p != '\0' && *p != ' ')
			p++;
		wlen = (size_t)(p - w);
		if (!empty && col + 1 + wlen > width) {
			buf_add(b, "\r\n", 2);
			buf_str(b, cont);
			col = ccol;
			empty = true;
		}
		if (!empty) {
			buf_add(b, " ", 1);
			col++;
		}
		while (col + wlen > limit) {
			size_t cut = limit > col ? limit - col : 0;

			while (cut > 0 && ((unsigned char)w[cut] & 0xc0) == 0x80)
				cut--;
			if (cut == 0) /* only when limit is absurdly small; cut anyway */
				cut = limit > col ? limit - col : 1;
			buf_add(b, w, cut);
			buf_add(b, "\r\n", 2);
			buf_str(b, cont);
			col = ccol;
			w += cut;
			wlen -= cut;
		}
		buf_add(b, w, wlen);
		col += wlen;
		empty = false;
	}
	buf_add(b, "\r\n", 2);
}

/* A header field (RFC 5322 2.2), folded; value as for dsn_fold(). */
static void
dsn_field(struct dynbuf *b, const char *name, const char *value)
{
	char first[64];

	snprintf(first, sizeof(first), "%s: ", name);
	dsn_fold(b, first, " ", value, DSN_FOLD, DSN_LINE_MAX);
}

/* A text part paragraph with a label ("Reply:     ") or none (""). */
static void
dsn_para(struct dynbuf *b, const char *label, const char *text)
{
	dsn_fold(b, label, *label != '\0' ? DSN_LABEL : "", text, DSN_WRAP, DSN_WRAP);
}

/* RFC 3463 2: class "." subject "." detail, class 2, 4 or 5, 1-3 digits each. */
static bool
dsn_status_valid(const char *s)
{
	size_t i = 2;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;

		while (s[i] >= '0' && s[i] <= '9' && n < 4) {
			i++;
			n++;
		}
		if (n == 0 || n > 3)
			return false;
		if (part == 0 && s[i++] != '.')
			return false;
	}
	return s[i] == '\0';
}

static const char *
dsn_status(const struct dsn_rcpt *r)
{
	if (dsn_status_valid(r->status))
		return r->status;
	switch (r->action) {
	case DSN_FAILED:
		return "5.0.0";
	case DSN_DELAYED:
		return "4.0.0";
	default:
		return "2.0.0";
	}
}

static const char *
dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	case DSN_EXPANDED:
		return "expanded";
	}
	return "failed";
}

/* One pass over the original: where its header ends, 8-bit octets, long lines. */
static void
dsn_scan(const char *s, size_t n, struct dsn_scan *sc)
{
	bool in_hdr = true;
	size_t i = 0;

	memset(sc, 0, sizeof(*sc));
	while (i < n) {
		size_t j = i, next;
		bool eight = false;

		while (j < n && s[j] != '\r' && s[j] != '\n') {
			if ((unsigned char)s[j] >= 0x80)
				eight = true;
			j++;
		}
		next = j;
		if (j < n)
			next = (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n') ? j + 2 : j + 1;
		if (in_hdr && j == i) {
			sc->hdr_len = i;
			in_hdr = false;
		} else if (in_hdr) {
			sc->hdr_8bit |= eight;
			sc->hdr_long |= j - i > DSN_LINE_MAX;
		} else {
			sc->body_8bit |= eight;
			sc->body_long |= j - i > DSN_LINE_MAX;
		}
		i = next;
	}
	if (in_hdr)
		sc->hdr_len = n;
}

/* Whether and how the original comes back (see dsn.h). */
static void
dsn_choose_ret(struct dsn_ctx *c)
{
	const struct dsn_msg *m = c->m;

	c->ret = DSN_RET_HDRS;
	c->why = DSN_WHY_NONE;
	if (c->orig == NULL || c->orig_len == 0)
		c->ret = DSN_RET_NONE;
	else if (c->scan.hdr_long) {
		c->ret = DSN_RET_NONE;
		c->why = DSN_WHY_HDR_LONG;
	} else if (!c->any_failed)
		c->why = DSN_WHY_NOT_FAILED;
	else if (m->ret_hdrs)
		c->why = DSN_WHY_ASKED;
	else if (c->orig_len > m->max_original)
		c->why = DSN_WHY_TOO_BIG;
	else if (c->scan.body_long)
		c->why = DSN_WHY_LONG_LINE;
	else
		c->ret = DSN_RET_FULL;
}

/* The most the output can take, from the inputs; reaching it is a bug. */
static size_t
dsn_ceiling(const struct dsn_ctx *c)
{
	size_t per_rcpt = 4 * (DSN_DIAG_MAX + 64) + 12 * (DSN_FIELD_MAX + 64) + 4096;
	size_t total = 64 * 1024 + 16 * (DSN_FIELD_MAX + 64);

	total = sat_add(total, sat_mul(c->orig_len, 2));
	return sat_add(total, sat_mul(c->nlisted, per_rcpt));
}

static void
dsn_ctx_init(struct dsn_ctx *c, const struct dsn_msg *m, const char *orig, size_t orig_len)
{
	memset(c, 0, sizeof(*c));
	c->m = m;
	c->orig = orig;
	c->orig_len = orig != NULL ? orig_len : 0;
	c->host = dsn_host(m->reporting_mta);
	c->qid = dsn_qid(m->queue_id);
	c->qid_text = dsn_token(m->queue_id, DSN_FIELD_MAX, "unknown");
	c->nlisted = m->rcpts != NULL ? m->nrcpts : 0;
	if (c->nlisted > DSN_RCPTS_MAX)
		c->nlisted = DSN_RCPTS_MAX;
	dsn_scan(c->orig, c->orig_len, &c->scan);
	c->utf8 = has_8bit(m->sender) || c->scan.hdr_8bit;
	for (size_t i = 0; i < c->nlisted; i++) {
		const struct dsn_rcpt *r = &m->rcpts[i];

		c->utf8 |= has_8bit(r->addr) || has_8bit(r->orcpt);
		c->any_failed |= r->action == DSN_FAILED;
		c->any_delayed |= r->action == DSN_DELAYED;
	}
	dsn_choose_ret(c);
	c->ceiling = dsn_ceiling(c);
}

static void
dsn_ctx_free(struct dsn_ctx *c)
{
	free(c->host);
	free(c->qid);
	free(c->qid_text);
}

/* What happened to one recipient, for the sender. */
static char *
dsn_result_text(const struct dsn_rcpt *r)
{
	char date[DSN_DATE_MAX];

	switch (r->action) {
	case DSN_FAILED:
		return xstrdup("Not delivered. The mail system has given up on this recipient.");
	case DSN_DELAYED:
		if (r->will_retry_until == 0)
			return xstrdup("Not delivered yet. The mail system is still trying.");
		dsn_date(date, sizeof(date), r->will_retry_until);
		return xasprintf("Not delivered yet. The mail system will keep trying until %s.",
		                 date);
	case DSN_DELIVERED:
		return xstrdup("Delivered.");
	case DSN_RELAYED:
		return xstrdup("Passed on to a mail system that does not send delivery reports, "
		               "so you may hear nothing more about it.");
	case DSN_EXPANDED:
		return xstrdup("Delivered to a mailing list or forwarding address, which passed it "
		               "on to its members.");
	}
	return xstrdup("Unknown.");
}

/* Part 1: text/plain for the sender. */
static void
dsn_text(struct dynbuf *b, const struct dsn_ctx *c)
{
	const struct dsn_msg *m = c->m;
	char *s, *t;

	buf_str(b, "Content-Description: Notification\r\n"
	           "Content-Type: text/plain; charset=utf-8\r\n");
	buf_fmt(b, "Content-Transfer-Encoding: %s\r\n\r\n", c->utf8 ? "8bit" : "7bit");

	s = xasprintf("This is the mail system at %s.", c->host);
	dsn_para(b, "", s);
	free(s);
	buf_str(b, "\r\n");
	if (c->any_failed)
		dsn_para(b, "",
		         "Your message could not be delivered to one or more of its "
		         "recipients. The mail system has stopped trying for them; the "
		         "details are below.");
	else if (c->any_delayed)
		dsn_para(b, "",
		         "Your message has not been delivered yet to one or more of its "
		         "recipients. The mail system is still trying, so you do not need to "
		         "send it again; the details are below.");
	else
		dsn_para(b, "",
		         "This is the delivery report you asked for when you sent your "
		         "message; the details are below.");

	for (size_t i = 0; i < c->nlisted; i++) {
		const struct dsn_rcpt *r = &m->rcpts[i];

		buf_str(b, "\r\n");
		s = dsn_clean(r->addr, c->utf8, DSN_FIELD_MAX);
		t = xasprintf("<%s>", s);
		dsn_para(b, "Recipient: ", t);
		free(t);
		free(s);
		s = dsn_result_text(r);
		dsn_para(b, "Result:    ", s);
		free(s);
		dsn_para(b, "Code:      ", dsn_status(r));
		s = dsn_clean(r->remote_mta, c->utf8, DSN_FIELD_MAX);
		if (*s != '\0')
			dsn_para(b, "Server:    ", s);
		free(s);
		s = dsn_clean(r->diagnostic, c->utf8, DSN_DIAG_MAX);
		if (*s != '\0')
			dsn_para(b, "Reply:     ", s);
		free(s);
	}
	if (m->nrcpts > c->nlisted) {
		buf_str(b, "\r\n");
		s = xasprintf("%zu more recipient%s not listed in this report.",
		              m->nrcpts - c->nlisted,
		              m->nrcpts - c->nlisted == 1 ? " is" : "s are");
		dsn_para(b, "", s);
		free(s);
	}

	buf_str(b, "\r\n");
	switch (c->why) {
	case DSN_WHY_NONE:
		if (c->ret == DSN_RET_FULL)
			dsn_para(b, "", "A copy of your message is attached.");
		break;
	case DSN_WHY_ASKED:
	case DSN_WHY_NOT_FAILED:
		dsn_para(b, "", "The headers of your message are attached.");
		break;
	case DSN_WHY_TOO_BIG:
		s = xasprintf("Your message is larger than %zu bytes, so only its headers are "
		              "attached.",
		              m->max_original);
		dsn_para(b, "", s);
		free(s);
		break;
	case DSN_WHY_LONG_LINE:
		s = xasprintf("Your message has a line longer than %d characters, which mail "
		              "servers refuse to carry, so only its headers are attached.",
		              DSN_LINE_MAX);
		dsn_para(b, "", s);
		free(s);
		break;
	case DSN_WHY_HDR_LONG:
		s = xasprintf("Your message could not be attached: a line in its header is longer "
		              "than %d characters, which mail servers refuse to carry.",
		              DSN_LINE_MAX);
		dsn_para(b, "", s);
		free(s);
		break;
	}
	if (c->ret == DSN_RET_FULL || c->why != DSN_WHY_NONE)
		buf_str(b, "\r\n");
	dsn_para(b, "", "If you need help, forward this report to your mail administrator.");
	dsn_para(b, "Reference: ", c->qid_text);
}

/*
 * "dns; name" from a host given as a name, optionally followed by more
 * (" [192.0.2.1]"), which becomes a comment: "dns; name ([192.0.2.1])".
 */
static char *
dsn_mta_value(const char *host)
{
	char *s = dsn_clean(host, false, DSN_FIELD_MAX), *sp, *name, *rest, *v;

	if (*s == '\0') {
		free(s);
		return NULL;
	}
	sp = strchr(s, ' ');
	if (sp != NULL)
		*sp = '\0';
	name = dsn_token(s, DSN_FIELD_MAX, "unknown");
	if (sp == NULL)
		v = xasprintf("dns; %s", name);
	else {
		rest = sp + 1; /* clean text: a comment once "()\\" are gone */
		for (char *q = rest; *q != '\0'; q++)
			if (*q == '(' || *q == ')' || *q == '\\')
				*q = '?';
		v = xasprintf("dns; %s (%s)", name, rest);
	}
	free(name);
	free(s);
	return v;
}

/* Original-Recipient from an ORCPT "type;value": type checked, value as given. */
static char *
dsn_orcpt_value(const char *orcpt, bool utf8)
{
	char *s, *semi, *v = NULL;

	if (orcpt == NULL)
		return NULL;
	s = dsn_clean(orcpt, utf8, DSN_FIELD_MAX);
	semi = strchr(s, ';');
	if (semi == NULL || semi == s || semi[1] == '\0')
		goto done;
	*semi = '\0';
	for (char *q = s; *q != '\0'; q++) {
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
		else if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-'))
			goto done;
	}
	v = xasprintf("%s;%s", s, semi[1] == ' ' ? semi + 2 : semi + 1);
done:
	free(s);
	return v;
}

/* "smtp; 550 ..." for an SMTP reply, "X-Moat; ..." for anything else. */
static bool
dsn_is_smtp_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
	       s[2] <= '9' && (s[3] == '\0' || s[3] == ' ' || s[3] == '-');
}

/* Part 2: message/delivery-status (RFC 3464 2.2, 2.3), or the global one (RFC 6533). */
static void
dsn_report(struct dynbuf *b, const struct dsn_ctx *c)
{
	const struct dsn_msg *m = c->m;
	char date[DSN_DATE_MAX], *s, *v;

	buf_str(b, "Content-Description: Delivery report\r\n");
	buf_fmt(b, "Content-Type: message/%sdelivery-status\r\n", c->utf8 ? "global-" : "");
	buf_fmt(b, "Content-Transfer-Encoding: %s\r\n\r\n", c->utf8 ? "8bit" : "7bit");

	/* per-message fields, in the order of RFC 3464 2.2 */
	s = dsn_clean(m->envid, false, DSN_FIELD_MAX);
	if (*s != '\0')
		dsn_field(b, "Original-Envelope-Id", s);
	free(s);
	v = xasprintf("dns; %s", c->host);
	dsn_field(b, "Reporting-MTA", v);
	free(v);
	if ((m->client_helo != NULL && *m->client_helo != '\0') ||
	    (m->client_addr != NULL && *m->client_addr != '\0')) {
		char *helo = dsn_token(m->client_helo, DSN_FIELD_MAX, "");
		char *addr = dsn_token(m->client_addr, DSN_FIELD_MAX, "");

		if (*helo != '\0' && *addr != '\0')
			v = xasprintf("dns; %s (%s%s%s)", helo, *addr == '[' ? "" : "[", addr,
			              *addr == '[' ? "" : "]");
		else if (*helo != '\0')
			v = xasprintf("dns; %s", helo);
		else
			v = xasprintf("dns; %s%s%s", *addr == '[' ? "" : "[", addr,
			              *addr == '[' ? "" : "]");
		dsn_field(b, "Received-From-MTA", v);
		free(v);
		free(helo);
		free(addr);
	}
	if (m->arrival != 0) {
		dsn_date(date, sizeof(date), m->arrival);
		dsn_field(b, "Arrival-Date", date);
	}
	dsn_field(b, "X-Moat-Queue-Id", c->qid_text);

	/* per-recipient fields, in the order of RFC 3464 2.3 */
	for (size_t i = 0; i < c->nlisted; i++) {
		const struct dsn_rcpt *r = &m->rcpts[i];

		buf_str(b, "\r\n");
		v = dsn_orcpt_value(r->orcpt, c->utf8);
		if (v != NULL)
			dsn_field(b, "Original-Recipient", v);
		free(v);
		s = dsn_clean(r->addr, c->utf8, DSN_FIELD_MAX);
		v = xasprintf("%s;%s", has_8bit(s) ? "utf-8" : "rfc822",
		              *s != '\0' ? s : "unknown");
		dsn_field(b, "Final-Recipient", v);
		free(v);
		free(s);
		dsn_field(b, "Action", dsn_action_name(r->action));
		dsn_field(b, "Status", dsn_status(r));
		v = dsn_mta_value(r->remote_mta);
		if (v != NULL)
			dsn_field(b, "Remote-MTA", v);
		free(v);
		s = dsn_clean(r->diagnostic, c->utf8, DSN_DIAG_MAX);
		if (*s != '\0') {
			v = xasprintf("%s; %s", dsn_is_smtp_reply(s) ? "smtp" : "X-Moat", s);
			dsn_field(b, "Diagnostic-Code", v);
			free(v);
		}
		free(s);
		if (r->last_attempt != 0) {
			dsn_date(date, sizeof(date), r->last_attempt);
			dsn_field(b, "Last-Attempt-Date", date);
		}
		if (r->action == DSN_DELAYED && r->will_retry_until != 0) {
			dsn_date(date, sizeof(date), r->will_retry_until);
			dsn_field(b, "Will-Retry-Until", date);
		}
	}
}

/* Part 3's header; its content is the original, or its header block. */
static void
dsn_returned_header(struct dynbuf *b, const struct dsn_ctx *c, size_t *len)
{
	bool full = c->ret == DSN_RET_FULL;
	bool eight = c->scan.hdr_8bit || (full && c->scan.body_8bit);
	const char *type;

	if (full)
		type = c->scan.hdr_8bit ? "message/global" : "message/rfc822";
	else
		type = c->scan.hdr_8bit ? "message/global-headers" : "text/rfc822-headers";
	buf_fmt(b, "Content-Description: %s%s\r\n",
	        c->any_failed || c->any_delayed ? "Undelivered " : "",
	        full ? "Message" : "Message Headers");
	buf_fmt(b, "Content-Type: %s\r\n", type);
	buf_fmt(b, "Content-Transfer-Encoding: %s\r\n\r\n", eight ? "8bit" : "7bit");
	*len = full ? c->orig_len : c->scan.hdr_len;
}

struct dsn_span {
	const char *p;
	size_t len;
};

/*
 * A boundary that occurs in none of the spans (RFC 2046 5.1.1):
 * PREFIX qid "-" N "=" with the smallest N not seen there after
 * PREFIX qid "-". Every occurrence of that prefix rules out at most one
 * N, so N is at most their number: one pass to count, one to mark.
 */
static char *
dsn_boundary(const char *qid, const struct dsn_span *spans, size_t nspans)
{
	char *prefix = xasprintf(DSN_BOUNDARY_PREFIX "%s-", qid), *boundary;
	size_t plen = strlen(prefix), count = 0, n = 0;
	bool *used = NULL;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < nspans; k++) {
			const char *p = spans[k].p, *end = spans[k].p + spans[k].len, *q;

			while (p < end &&
			       (q = memmem(p, (size_t)(end - p), prefix, plen)) != NULL) {
				const char *d = q + plen;
				size_t v = 0, nd = 0;

				p = q + 1;
				if (pass == 0) {
					count++;
					continue;
				}
				while (d < end && *d >= '0' && *d <= '9' && nd < 19) {
					v = v * 10 + (size_t)(*d - '0');
					d++;
					nd++;
				}
				if (nd > 0 && d < end && *d == '=' && v <= count)
					used[v] = true;
			}
		}
		if (pass == 0)
			used = xcalloc(count + 1, sizeof(*used));
	}
	while (used[n])
		n++;
	boundary = xasprintf("%s%zu=", prefix, n);
	free(used);
	free(prefix);
	return boundary;
}

/* The DSN's own header (RFC 5322 3.6, RFC 3834 5, RFC 6522 3). */
static void
dsn_header(struct dynbuf *b, const struct dsn_ctx *c, const char *boundary, bool eight)
{
	const struct dsn_msg *m = c->m;
	char date[DSN_DATE_MAX], *s, *v;
	uint64_t seq = atomic_fetch_add(&dsn_seq, 1);

	v = xasprintf("\"Mail Delivery System\" <MAILER-DAEMON@%s>", c->host);
	dsn_field(b, "From", v);
	free(v);
	s = dsn_clean(m->sender, true, DSN_FIELD_MAX);
	if (*s != '\0') {
		v = xasprintf("<%s>", s);
		dsn_field(b, "To", v);
		free(v);
	} else
		dsn_field(b, "To", "undisclosed-recipients:;");
	free(s);
	if (c->any_failed)
		dsn_field(b, "Subject", "Undelivered Mail Returned to Sender");
	else if (c->any_delayed)
		dsn_field(b, "Subject", "Delayed Mail (still being retried)");
	else
		dsn_field(b, "Subject", "Successful Mail Delivery Report");
	dsn_date(date, sizeof(date), m->now);
	dsn_field(b, "Date", date);
	v = xasprintf("<%s.dsn-%" PRId64 ".%" PRIu64 "@%s>", c->qid, m->now, seq, c->host);
	dsn_field(b, "Message-ID", v);
	free(v);
	dsn_field(b, "Auto-Submitted", "auto-replied");
	dsn_field(b, "MIME-Version", "1.0");
	v = xasprintf("multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary);
	dsn_field(b, "Content-Type", v);
	free(v);
	dsn_field(b, "Content-Transfer-Encoding", eight ? "8bit" : "7bit");
}

char *
dsn_build(const struct dsn_msg *m, const char *orig, size_t orig_len, size_t *out_len)
{
	struct dsn_ctx c;
	struct dynbuf text, report, ret, out;
	struct dsn_span spans[4];
	size_t nspans = 0, ret_len = 0;
	char *boundary;
	bool eight;

	dsn_ctx_init(&c, m, orig, orig_len);
	dynbuf_init(&text, c.ceiling);
	dynbuf_init(&report, c.ceiling);
	dynbuf_init(&ret, c.ceiling);
	dynbuf_init(&out, c.ceiling);

	dsn_text(&text, &c);
	dsn_report(&report, &c);
	spans[nspans++] = (struct dsn_span){text.p, text.len};
	spans[nspans++] = (struct dsn_span){report.p, report.len};
	if (c.ret != DSN_RET_NONE) {
		dsn_returned_header(&ret, &c, &ret_len);
		spans[nspans++] = (struct dsn_span){ret.p, ret.len};
		spans[nspans++] = (struct dsn_span){c.orig, ret_len};
	}
	boundary = dsn_boundary(c.qid, spans, nspans);

	eight = c.utf8 || c.scan.hdr_8bit || (c.ret == DSN_RET_FULL && c.scan.body_8bit);
	dsn_header(&out, &c, boundary, eight);
	buf_str(&out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");
	buf_fmt(&out, "--%s\r\n", boundary);
	buf_add(&out, text.p, text.len);
	buf_fmt(&out, "--%s\r\n", boundary);
	buf_add(&out, report.p, report.len);
	if (c.ret != DSN_RET_NONE) {
		buf_fmt(&out, "--%s\r\n", boundary);
		buf_add(&out, ret.p, ret.len);
		buf_add_crlf(&out, c.orig, ret_len);
		if (ret_len == 0 || out.p[out.len - 1] != '\n')
			buf_add(&out, "\r\n", 2);
	}
	buf_fmt(&out, "--%s--\r\n", boundary);

	free(boundary);
	free(text.p);
	free(report.p);
	free(ret.p);
	dsn_ctx_free(&c);
	*out_len = out.len;
	return out.p;
}

bool
dsn_wanted(unsigned notify, enum dsn_action action)
{
	unsigned bits = notify & (SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE |
	                          SMTP_NOTIFY_DELAY);

	if (bits & SMTP_NOTIFY_NEVER)
		return false;
	if (bits == 0)
		return action == DSN_FAILED ||
		       (action == DSN_DELAYED && (notify & DSN_WANT_DEFAULT_DELAY) != 0);
	switch (action) {
	case DSN_FAILED:
		return (bits & SMTP_NOTIFY_FAILURE) != 0;
	case DSN_DELAYED:
		return (bits & SMTP_NOTIFY_DELAY) != 0;
	case DSN_DELIVERED:
	case DSN_RELAYED:
	case DSN_EXPANDED:
		return (bits & SMTP_NOTIFY_SUCCESS) != 0;
	}
	return false;
}
