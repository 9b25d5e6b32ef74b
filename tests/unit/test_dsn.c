/*
 * test_dsn.c - tests of the DSN builder (RFC 3464, RFC 6522, RFC 6533,
 * RFC 3461 NOTIFY): every output is parsed back here, independently of
 * dsn.c: CRLF only, no line over 998 octets, the multipart/report split on
 * its boundary, each part's type, every per-message and per-recipient
 * field, header injection through a remote reply, which form of the
 * original comes back and why, long and many inputs, dsn_wanted().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "delivery/dsn.h"
#include "smtp/smtp_parse.h"

#include "table.h"

#define NOW       INT64_C(1700000000) /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define NOW_STR   "Tue, 14 Nov 2023 22:13:20 +0000"
#define MAXF      32 /* fields in one parsed block */
#define NITEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a small parser of our own output ---- */

struct field {
	char name[64];
	char *value; /* unfolded: the CRLFs of folding removed, nothing else */
};

struct block {
	struct field f[MAXF];
	size_t n;
};

struct part {
	struct block h;
	const char *body; /* up to, not including, the CRLF before the next delimiter */
	size_t body_len;
};

struct parsed {
	struct block top;
	char boundary[128];
	struct part parts[4];
	size_t nparts;
	struct block *status; /* the blocks of the delivery-status part */
	size_t nstatus;
	char err[256];
};

static void
block_free(struct block *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->f[i].value);
	b->n = 0;
}

static void
parsed_free(struct parsed *p)
{
	block_free(&p->top);
	for (size_t i = 0; i < p->nparts; i++)
		block_free(&p->parts[i].h);
	for (size_t i = 0; i < p->nstatus; i++)
		block_free(&p->status[i]);
	free(p->status);
	memset(p, 0, sizeof(*p));
}

static const char *
block_get(const struct block *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (strcasecmp(b->f[i].name, name) == 0)
			return b->f[i].value;
	return NULL;
}

static size_t
block_count(const struct block *b, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < b->n; i++)
		n += strcasecmp(b->f[i].name, name) == 0;
	return n;
}

/* Every line ends in CRLF, no CR or LF elsewhere, none over 998 octets. */
static bool
lines_ok(const char *s, size_t n, char *err, size_t errsize)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n') {
			snprintf(err, errsize, "bare LF at %zu", i);
			return false;
		}
		if (s[i] != '\r')
			continue;
		if (i + 1 >= n || s[i + 1] != '\n') {
			snprintf(err, errsize, "bare CR at %zu", i);
			return false;
		}
		if (i - start > 998) {
			snprintf(err, errsize, "line at %zu has %zu octets", start, i - start);
			return false;
		}
		i++;
		start = i + 1;
	}
	if (start != n) {
		snprintf(err, errsize, "no CRLF at the end (%zu octets after the last)", n - start);
		return false;
	}
	return true;
}

/*
 * Header fields from s[0..n) up to an empty line or the end; the end of
 * the input ends a line. Returns the octets used, or SIZE_MAX when a line
 * is neither a field nor a continuation.
 */
static size_t
block_parse(const char *s, size_t n, struct block *b, char *err, size_t errsize)
{
	size_t i = 0;

	b->n = 0;
	while (i < n) {
		const char *e = memchr(s + i, '\r', n - i);
		size_t j = e != NULL ? (size_t)(e - s) : n, next = e != NULL ? j + 2 : n;
		const char *line = s + i, *colon;
		size_t len = j - i;

		if (len == 0)
			return next;
		if (line[0] == ' ' || line[0] == '\t') {
			struct field *f;
			size_t old;

			if (b->n == 0) {
				snprintf(err, errsize, "continuation before any field");
				return SIZE_MAX;
			}
			f = &b->f[b->n - 1];
			old = strlen(f->value);
			f->value = realloc(f->value, old + len + 1);
			assert_non_null(f->value);
			memcpy(f->value + old, line, len);
			f->value[old + len] = '\0';
		} else {
			size_t nlen, vstart;

			colon = memchr(line, ':', len);
			if (colon == NULL || colon == line || (size_t)(colon - line) >= 64) {
				snprintf(err, errsize, "not a field: %s", table_esc(line, len));
				return SIZE_MAX;
			}
			nlen = (size_t)(colon - line);
			for (size_t k = 0; k < nlen; k++)
				if (line[k] <= ' ' || line[k] >= 0x7f) {
					snprintf(err, errsize, "bad field name: %s",
					         table_esc(line, nlen));
					return SIZE_MAX;
				}
			if (b->n == MAXF) {
				snprintf(err, errsize, "over %d fields", MAXF);
				return SIZE_MAX;
			}
			memcpy(b->f[b->n].name, line, nlen);
			b->f[b->n].name[nlen] = '\0';
			vstart = nlen + 1;
			while (vstart < len && line[vstart] == ' ')
				vstart++;
			b->f[b->n].value = strndup(line + vstart, len - vstart);
			assert_non_null(b->f[b->n].value);
			b->n++;
		}
		i = next;
	}
	return n;
}

/* The octets of the line at s[i..), without CRLF, and where the next starts. */
static size_t
line_at(const char *s, size_t n, size_t i, size_t *next)
{
	const char *e = memchr(s + i, '\r', n - i);
	size_t j = e != NULL ? (size_t)(e - s) : n;

	*next = e != NULL ? j + 2 : n;
	return j - i;
}

static bool
line_is(const char *s, size_t len, const char *a, const char *b)
{
	size_t al = strlen(a), bl = strlen(b);

	return len == al + bl && memcmp(s, a, al) == 0 && memcmp(s + al, b, bl) == 0;
}

/* Split the DSN: header, boundary, parts, the delivery-status blocks. */
static bool
dsn_parse(const char *s, size_t n, struct parsed *p)
{
	char delim[140], close[140];
	const char *ct, *bp, *q;
	size_t i, body_start = 0;
	bool in_part = false, closed = false;

	memset(p, 0, sizeof(*p));
	if (!lines_ok(s, n, p->err, sizeof(p->err)))
		return false;
	i = block_parse(s, n, &p->top, p->err, sizeof(p->err));
	if (i == SIZE_MAX)
		return false;
	ct = block_get(&p->top, "Content-Type");
	if (ct == NULL || (bp = strstr(ct, "boundary=\"")) == NULL ||
	    (q = strchr(bp + 10, '"')) == NULL || (size_t)(q - bp - 10) >= sizeof(p->boundary)) {
		snprintf(p->err, sizeof(p->err), "no boundary in Content-Type %s", ct ? ct : "");
		return false;
	}
	memcpy(p->boundary, bp + 10, (size_t)(q - bp - 10));
	p->boundary[q - bp - 10] = '\0';
	snprintf(delim, sizeof(delim), "--%s", p->boundary);
	snprintf(close, sizeof(close), "--%s--", p->boundary);

	while (i < n) {
		size_t next, len = line_at(s, n, i, &next);
		bool is_delim = line_is(s + i, len, delim, "");
		bool is_close = line_is(s + i, len, close, "");

		if (is_delim || is_close) {
			if (in_part) {
				struct part *pt = &p->parts[p->nparts - 1];
				size_t end = i - 2, used;

				used = block_parse(s + body_start, end - body_start, &pt->h, p->err,
				                   sizeof(p->err));
				if (used == SIZE_MAX)
					return false;
				pt->body = s + body_start + used;
				pt->body_len = end - body_start - used;
			}
			if (is_close) {
				closed = true;
				if (next != n) {
					snprintf(p->err, sizeof(p->err), "%zu octets after the end",
					         n - next);
					return false;
				}
				break;
			}
			if (p->nparts == 4) {
				snprintf(p->err, sizeof(p->err), "over 4 parts");
				return false;
			}
			p->nparts++;
			in_part = true;
			body_start = next;
		}
		i = next;
	}
	if (!closed) {
		snprintf(p->err, sizeof(p->err), "no closing delimiter");
		return false;
	}

	/* the delivery-status part: blocks separated by empty lines */
	if (p->nparts >= 2) {
		const struct part *st = &p->parts[1];
		size_t off = 0, cap = 0;

		while (off < st->body_len) {
			size_t used;

			if (p->nstatus == cap) {
				cap = cap ? cap * 2 : 16;
				p->status = realloc(p->status, cap * sizeof(*p->status));
				assert_non_null(p->status);
			}
			used = block_parse(st->body + off, st->body_len - off,
			                   &p->status[p->nstatus], p->err, sizeof(p->err));
			if (used == SIZE_MAX)
				return false;
			p->nstatus++;
			off += used;
		}
	}
	return true;
}

static bool
name_in(const char *name, const char *const *names)
{
	for (; *names != NULL; names++)
		if (strcasecmp(name, *names) == 0)
			return true;
	return false;
}

static const char *const top_names[] = {
        "From",         "To",           "Subject",
        "Date",         "Message-ID",   "Auto-Submitted",
        "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        NULL,
};
static const char *const msg_names[] = {
        "Original-Envelope-Id", "Reporting-MTA",   "Received-From-MTA",
        "Arrival-Date",         "X-Moat-Queue-Id", NULL,
};
static const char *const rcpt_names[] = {
        "Original-Recipient", "Final-Recipient",   "Action",           "Status", "Remote-MTA",
        "Diagnostic-Code",    "Last-Attempt-Date", "Will-Retry-Until", NULL,
};
static const char *const part_names[] = {
        "Content-Description",
        "Content-Type",
        "Content-Transfer-Encoding",
        NULL,
};

/*
 * Build, parse and check what every DSN must be: valid lines, only the
 * fields we write (each once), text part then report, the boundary in no
 * part, one status block per listed recipient. On success p holds the
 * parse and *out the DSN (free both); on failure the row is reported.
 */
static bool
build_check(const char *row, const struct dsn_msg *m, const char *orig, size_t orig_len,
            struct parsed *p, char **out, size_t *out_len)
{
	size_t n, listed = m->nrcpts < DSN_RCPTS_MAX ? m->nrcpts : DSN_RCPTS_MAX;
	char *s = dsn_build(m, orig, orig_len, &n);
	bool ok = false;

	if (s == NULL) {
		table_mismatch(row, "dsn_build returned NULL");
		return false;
	}
	if (strlen(s) != n) {
		table_mismatch(row, "length got %zu, strlen %zu", n, strlen(s));
		goto done;
	}
	if (!dsn_parse(s, n, p)) {
		table_mismatch(row, "parse: %s", p->err);
		goto done;
	}
	for (size_t i = 0; i < p->top.n; i++) {
		if (!name_in(p->top.f[i].name, top_names))
			table_mismatch(row, "top-level field %s: not one of ours",
			               p->top.f[i].name);
		if (block_count(&p->top, p->top.f[i].name) != 1)
			table_mismatch(row, "top-level field %s: got %zu, want 1", p->top.f[i].name,
			               block_count(&p->top, p->top.f[i].name));
	}
	if (p->top.n != 9)
		table_mismatch(row, "top-level fields got %zu, want 9", p->top.n);
	if (p->nparts < 2 || p->nparts > 3) {
		table_mismatch(row, "parts got %zu, want 2 or 3", p->nparts);
		goto done;
	}
	for (size_t k = 0; k < p->nparts; k++) {
		for (size_t i = 0; i < p->parts[k].h.n; i++)
			if (!name_in(p->parts[k].h.f[i].name, part_names))
				table_mismatch(row, "part %zu field %s: not one of ours", k + 1,
				               p->parts[k].h.f[i].name);
		if (memmem(p->parts[k].body, p->parts[k].body_len, p->boundary,
		           strlen(p->boundary)) != NULL)
			table_mismatch(row, "part %zu holds the boundary %s", k + 1, p->boundary);
	}
	if (strcmp(block_get(&p->parts[0].h, "Content-Type"), "text/plain; charset=utf-8") != 0)
		table_mismatch(row, "part 1 type got %s",
		               block_get(&p->parts[0].h, "Content-Type"));
	if (p->nstatus != listed + 1)
		table_mismatch(row, "status blocks got %zu, want %zu", p->nstatus, listed + 1);
	for (size_t b = 0; b < p->nstatus; b++)
		for (size_t i = 0; i < p->status[b].n; i++)
			if (!name_in(p->status[b].f[i].name, b == 0 ? msg_names : rcpt_names))
				table_mismatch(row, "status block %zu field %s: not one of ours", b,
				               p->status[b].f[i].name);
	ok = true;
done:
	if (!ok) {
		parsed_free(p);
		free(s);
		return false;
	}
	*out = s;
	if (out_len != NULL)
		*out_len = n;
	return true;
}

static void
want_field(const char *row, const struct block *b, const char *name, const char *want)
{
	const char *got = block_get(b, name);

	if (want == NULL && got != NULL)
		table_mismatch(row, "%s: got '%s', want none", name, table_esc(got, strlen(got)));
	else if (want != NULL && got == NULL)
		table_mismatch(row, "%s: got none, want '%s'", name, table_esc(want, strlen(want)));
	else if (want != NULL && strcmp(got, want) != 0)
		table_mismatch(row, "%s: got '%s', want '%s'", name, table_esc(got, strlen(got)),
		               table_esc(want, strlen(want)));
}

static bool
body_has(const struct part *pt, const char *needle)
{
	return memmem(pt->body, pt->body_len, needle, strlen(needle)) != NULL;
}

static struct dsn_msg
base_msg(const struct dsn_rcpt *rcpts, size_t n)
{
	struct dsn_msg m = {
	        .reporting_mta = "mx.moat.test",
	        .queue_id = "4F2A9C01",
	        .envid = NULL,
	        .sender = "alice@sender.test",
	        .client_addr = "192.0.2.1",
	        .client_helo = "mail.sender.test",
	        .arrival = NOW - 3600,
	        .now = NOW,
	        .ret_hdrs = false,
	        .max_original = 1 << 20,
	        .rcpts = rcpts,
	        .nrcpts = n,
	};

	return m;
}

static const struct dsn_rcpt rcpt_failed = {
        "bob@example.com",        NULL,     DSN_FAILED, "5.1.1", "mx.example.com",
        "550 5.1.1 User unknown", NOW - 60, 0,
};
static const struct dsn_rcpt rcpt_delayed = {
        "carol@example.com",   NULL,     DSN_DELAYED, "4.4.1", "mx.example.com",
        "421 4.4.1 Try later", NOW - 60, NOW + 86400,
};
static const struct dsn_rcpt rcpt_delivered = {
        "dave@example.com", NULL,           DSN_DELIVERED, "2.0.0",
        "mx.example.com",   "250 2.0.0 Ok", NOW - 60,      0,
};

/* ---- the per-message and per-recipient fields, field by field ---- */

#define REF "\r\nReference: 4F2A9C01"

static void
test_dsn_fields(void **state)
{
	static const struct dsn_rcpt rcpts[] = {
	        {"bob@example.com", "rfc822;Bob+2Bx@Example.com", DSN_FAILED, "5.1.1",
	         "mx.example.com [192.0.2.25]", "550 5.1.1 <bob@example.com>: User unknown",
	         NOW - 60, 0},
	        {"carol@example.com", "RFC822;carol@example.com", DSN_DELAYED, "4.4.1", NULL,
	         "421 4.4.1 Connection timed out", NOW - 120, NOW + 5 * 86400},
	        {"dave@example.com", NULL, DSN_DELIVERED, "2.0.0", "mx2.example.com",
	         "250 2.0.0 Ok: queued as 12345", 0, 0},
	        {"list@example.com", NULL, DSN_EXPANDED, "2.0.0", NULL, NULL, 0, 0},
	        {"old@example.com", NULL, DSN_RELAYED, "2.0.0", "legacy.example.com", NULL, 0, 0},
	        {"erin@example.com", NULL, DSN_FAILED, "5.1", NULL, "mailbox is full", 0, 0},
	        {"frank@example.com", NULL, DSN_DELAYED, NULL, NULL, NULL, 0, NOW + 60},
	};
	/* clang-format off */
	static const struct {
		const char *orcpt, *final, *action, *status, *remote, *diag, *last, *retry;
	} want[] = {
	        {"rfc822;Bob+2Bx@Example.com", "rfc822;bob@example.com", "failed", "5.1.1",
	         "dns; mx.example.com ([192.0.2.25])",
	         "smtp; 550 5.1.1 <bob@example.com>: User unknown",
	         "Tue, 14 Nov 2023 22:12:20 +0000", NULL},
	        {"rfc822;carol@example.com", "rfc822;carol@example.com", "delayed", "4.4.1", NULL,
	         "smtp; 421 4.4.1 Connection timed out", "Tue, 14 Nov 2023 22:11:20 +0000",
	         "Sun, 19 Nov 2023 22:13:20 +0000"},
	        {NULL, "rfc822;dave@example.com", "delivered", "2.0.0", "dns; mx2.example.com",
	         "smtp; 250 2.0.0 Ok: queued as 12345", NULL, NULL},
	        {NULL, "rfc822;list@example.com", "expanded", "2.0.0", NULL, NULL, NULL, NULL},
	        {NULL, "rfc822;old@example.com", "relayed", "2.0.0", "dns; legacy.example.com", NULL,
	         NULL, NULL},
	        {NULL, "rfc822;erin@example.com", "failed", "5.0.0", NULL, "X-Moat; mailbox is full",
	         NULL, NULL},
	        {NULL, "rfc822;frank@example.com", "delayed", "4.0.0", NULL, NULL, NULL,
	         "Tue, 14 Nov 2023 22:14:20 +0000"},
	};
	/* clang-format on */
	const char *orig = "From: alice@sender.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n";
	struct dsn_msg m = base_msg(rcpts, NITEMS(rcpts));
	struct parsed p;
	char *s, row[64];
	const struct block *mb;
	const struct part *text;

	(void)state;
	m.envid = "QQ+2B123";
	table_reset();
	if (!build_check("fields", &m, orig, strlen(orig), &p, &s, NULL))
		fail_msg("%d mismatches", table_failures);

	/* DSN header */
	want_field("header", &p.top, "From",
	           "\"Mail Delivery System\" <MAILER-DAEMON@mx.moat.test>");
	want_field("header", &p.top, "To", "<alice@sender.test>");
	want_field("header", &p.top, "Subject", "Undelivered Mail Returned to Sender");
	want_field("header", &p.top, "Date", NOW_STR);
	want_field("header", &p.top, "Auto-Submitted", "auto-replied");
	want_field("header", &p.top, "MIME-Version", "1.0");
	want_field("header", &p.top, "Content-Transfer-Encoding", "7bit");
	if (strncmp(block_get(&p.top, "Message-ID"), "<4F2A9C01.dsn-", 14) != 0 ||
	    strstr(block_get(&p.top, "Message-ID"), "@mx.moat.test>") == NULL)
		table_mismatch("header", "Message-ID got %s", block_get(&p.top, "Message-ID"));
	if (strncmp(block_get(&p.top, "Content-Type"),
	            "multipart/report; report-type=delivery-status;", 46) != 0)
		table_mismatch("header", "Content-Type got %s", block_get(&p.top, "Content-Type"));
	if (strcmp(p.boundary, "=_moat-dsn-4F2A9C01-0=") != 0)
		table_mismatch("header",
		               "boundary got %s, want =_moat-dsn-4F2A9C01-0=", p.boundary);

	/* per-message fields */
	want_field("part 2", &p.parts[1].h, "Content-Type", "message/delivery-status");
	mb = &p.status[0];
	want_field("per-message", mb, "Original-Envelope-Id", "QQ+2B123");
	want_field("per-message", mb, "Reporting-MTA", "dns; mx.moat.test");
	want_field("per-message", mb, "Received-From-MTA", "dns; mail.sender.test ([192.0.2.1])");
	want_field("per-message", mb, "Arrival-Date", "Tue, 14 Nov 2023 21:13:20 +0000");
	want_field("per-message", mb, "X-Moat-Queue-Id", "4F2A9C01");
	if (mb->n != 5)
		table_mismatch("per-message", "fields got %zu, want 5", mb->n);

	/* per-recipient fields */
	text = &p.parts[0];
	for (size_t i = 0; i < NITEMS(want) && i + 1 < p.nstatus; i++) {
		const struct block *b = &p.status[i + 1];
		char addr[128];

		snprintf(row, sizeof(row), "recipient %zu", i);
		want_field(row, b, "Original-Recipient", want[i].orcpt);
		want_field(row, b, "Final-Recipient", want[i].final);
		want_field(row, b, "Action", want[i].action);
		want_field(row, b, "Status", want[i].status);
		want_field(row, b, "Remote-MTA", want[i].remote);
		want_field(row, b, "Diagnostic-Code", want[i].diag);
		want_field(row, b, "Last-Attempt-Date", want[i].last);
		want_field(row, b, "Will-Retry-Until", want[i].retry);
		/* RFC 3464 2.3 order: Original-Recipient first when there, then Final-Recipient */
		if (strcasecmp(b->f[want[i].orcpt != NULL ? 1 : 0].name, "Final-Recipient") != 0)
			table_mismatch(row, "field order: got %s where Final-Recipient goes",
			               b->f[want[i].orcpt != NULL ? 1 : 0].name);
		snprintf(addr, sizeof(addr), "Recipient: <%s>", rcpts[i].addr);
		if (!body_has(text, addr))
			table_mismatch(row, "text part lacks '%s'", addr);
	}
	if (!body_has(text, "Reply:     550 5.1.1 <bob@example.com>: User unknown"))
		table_mismatch("text", "no reply line for bob");
	if (!body_has(text, "Server:    mx.example.com [192.0.2.25]"))
		table_mismatch("text", "no server line for bob");
	if (text->body_len < strlen(REF) ||
	    memcmp(text->body + text->body_len - strlen(REF), REF, strlen(REF)) != 0)
		table_mismatch("text", "does not end with the queue id reference");

	/* the original, whole */
	want_field("part 3", &p.parts[2].h, "Content-Type", "message/rfc822");
	if (p.parts[2].body_len != strlen(orig) - 2 ||
	    memcmp(p.parts[2].body, orig, strlen(orig) - 2) != 0)
		table_mismatch("part 3", "body got '%s'",
		               table_esc(p.parts[2].body, p.parts[2].body_len));
	parsed_free(&p);
	free(s);
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- which form of the original comes back, and what the text says ---- */

enum rc_set { RC_FAILED, RC_DELAYED, RC_DELIVERED, RC_MIXED, RC_NONE };
enum gen { GEN_NONE, GEN_BODY_998, GEN_BODY_999, GEN_HDR_999, GEN_BODY_100K };

#define NOTE_FULL  "A copy of your message is attached."
#define NOTE_HDRS  "The headers of your message are attached."
#define NOTE_BIG   "is larger than"
#define NOTE_LONG  "has a line longer than 998 characters"
#define NOTE_NOHDR "could not be attached"

struct ret_case {
	const char *name;
	enum rc_set rcpts;
	bool ret_hdrs;
	size_t max_original; /* 0: 1 MiB */
	const char *orig;    /* with gen: the header block before the generated lines */
	enum gen gen;
	const char *subject;
	const char *report; /* part 2 type */
	const char *part3;  /* part 3 type, NULL: no part 3 */
	const char *cte3;
	const char
	        *body3; /* part 3 body as parsed (without the delimiter's CRLF), NULL: unchecked */
	const char *note; /* the one note in the text part, NULL: none */
};

#define HDR "From: alice@sender.test\r\nSubject: hi\r\n"
#define HDR8                                                                                       \
	"From: alice@sender.test\r\nSubject: Gr\xc3\xbc\xc3\x9f"                                   \
	"e\r\n"
#define UND  "Undelivered Mail Returned to Sender"
#define DEL  "Delayed Mail (still being retried)"
#define OK   "Successful Mail Delivery Report"
#define DS   "message/delivery-status"
#define GDS  "message/global-delivery-status"
#define R822 "message/rfc822"
#define RHDR "text/rfc822-headers"

static const struct ret_case ret_cases[] = {
        {"full", RC_FAILED, false, 0, HDR "\r\nbody\r\n", GEN_NONE, UND, DS, R822, "7bit",
         HDR "\r\nbody", NOTE_FULL},
        {"RET=HDRS", RC_FAILED, true, 0, HDR "\r\nbody\r\n", GEN_NONE, UND, DS, RHDR, "7bit",
         "From: alice@sender.test\r\nSubject: hi", NOTE_HDRS},
        {"over max_original", RC_FAILED, false, 10, HDR "\r\nbody\r\n", GEN_NONE, UND, DS, RHDR,
         "7bit", "From: alice@sender.test\r\nSubject: hi", NOTE_BIG},
        {"at max_original", RC_FAILED, false, sizeof(HDR "\r\nbody\r\n") - 1, HDR "\r\nbody\r\n",
         GEN_NONE, UND, DS, R822, "7bit", HDR "\r\nbody", NOTE_FULL},
        {"max_original 1 under", RC_FAILED, false, sizeof(HDR "\r\nbody\r\n") - 2,
         HDR "\r\nbody\r\n", GEN_NONE, UND, DS, RHDR, "7bit", NULL, NOTE_BIG},
        {"body line 998", RC_FAILED, false, 0, HDR "\r\n", GEN_BODY_998, UND, DS, R822, "7bit",
         NULL, NOTE_FULL},
        {"body line 999", RC_FAILED, false, 0, HDR "\r\n", GEN_BODY_999, UND, DS, RHDR, "7bit",
         "From: alice@sender.test\r\nSubject: hi", NOTE_LONG},
        {"body line 999, RET=HDRS", RC_FAILED, true, 0, HDR "\r\n", GEN_BODY_999, UND, DS, RHDR,
         "7bit", NULL, NOTE_HDRS},
        {"header line 999", RC_FAILED, false, 0, HDR, GEN_HDR_999, UND, DS, NULL, NULL, NULL,
         NOTE_NOHDR},
        {"header line 999, RET=HDRS", RC_FAILED, true, 0, HDR, GEN_HDR_999, UND, DS, NULL, NULL,
         NULL, NOTE_NOHDR},
        {"big body, small limit", RC_FAILED, false, 4096, HDR "\r\n", GEN_BODY_100K, UND, DS, RHDR,
         "7bit", "From: alice@sender.test\r\nSubject: hi", NOTE_BIG},
        {"no final CRLF", RC_FAILED, false, 0, HDR "\r\nlast line", GEN_NONE, UND, DS, R822, "7bit",
         HDR "\r\nlast line", NOTE_FULL},
        {"header only, no final CRLF", RC_FAILED, true, 0, "From: a@b.test\r\nSubject: x", GEN_NONE,
         UND, DS, RHDR, "7bit", "From: a@b.test\r\nSubject: x", NOTE_HDRS},
        {"bare LF and CR made CRLF", RC_FAILED, false, 0, "Subject: x\n\nline1\rline2\n", GEN_NONE,
         UND, DS, R822, "7bit", "Subject: x\r\n\r\nline1\r\nline2", NOTE_FULL},
        {"no header at all", RC_FAILED, true, 0, "\r\nbody only\r\n", GEN_NONE, UND, DS, RHDR,
         "7bit", "", NOTE_HDRS},
        {"empty original", RC_FAILED, false, 0, "", GEN_NONE, UND, DS, NULL, NULL, NULL, NULL},
        {"8-bit header", RC_FAILED, false, 0, HDR8 "\r\nbody\r\n", GEN_NONE, UND, GDS,
         "message/global", "8bit", HDR8 "\r\nbody", NOTE_FULL},
        {"8-bit header, RET=HDRS", RC_FAILED, true, 0, HDR8 "\r\nbody\r\n", GEN_NONE, UND, GDS,
         "message/global-headers", "8bit",
         "From: alice@sender.test\r\nSubject: Gr\xc3\xbc\xc3\x9f"
         "e",
         NOTE_HDRS},
        {"8-bit body only", RC_FAILED, false, 0,
         HDR "\r\nGr\xc3\xbc\xc3\x9f"
             "e\r\n",
         GEN_NONE, UND, DS, R822, "8bit",
         HDR "\r\nGr\xc3\xbc\xc3\x9f"
             "e",
         NOTE_FULL},
        {"8-bit body, RET=HDRS: 7bit headers", RC_FAILED, true, 0,
         HDR "\r\nGr\xc3\xbc\xc3\x9f"
             "e\r\n",
         GEN_NONE, UND, DS, RHDR, "7bit", NULL, NOTE_HDRS},
        {"delay: headers only", RC_DELAYED, false, 0, HDR "\r\nbody\r\n", GEN_NONE, DEL, DS, RHDR,
         "7bit", "From: alice@sender.test\r\nSubject: hi", NOTE_HDRS},
        {"success: headers only", RC_DELIVERED, false, 0, HDR "\r\nbody\r\n", GEN_NONE, OK, DS,
         RHDR, "7bit", NULL, NOTE_HDRS},
        {"failed and delayed", RC_MIXED, false, 0, HDR "\r\nbody\r\n", GEN_NONE, UND, DS, R822,
         "7bit", NULL, NOTE_FULL},
        {"no recipients", RC_NONE, false, 0, HDR "\r\nbody\r\n", GEN_NONE, OK, DS, RHDR, "7bit",
         NULL, NOTE_HDRS},
};

static char *
ret_orig(const struct ret_case *c, size_t *len)
{
	size_t hl = strlen(c->orig), n = 0;
	char *s = malloc(hl + 200000);

	assert_non_null(s);
	memcpy(s, c->orig, hl);
	n = hl;
	switch (c->gen) {
	case GEN_NONE:
		break;
	case GEN_BODY_998:
	case GEN_BODY_999:
		memset(s + n, 'x', c->gen == GEN_BODY_998 ? 998 : 999);
		n += c->gen == GEN_BODY_998 ? 998 : 999;
		memcpy(s + n, "\r\nshort\r\n", 9);
		n += 9;
		break;
	case GEN_HDR_999:
		memcpy(s + n, "X-Long: ", 8);
		memset(s + n + 8, 'y', 991);
		n += 999;
		memcpy(s + n, "\r\n\r\nbody\r\n", 10);
		n += 10;
		break;
	case GEN_BODY_100K:
		for (int i = 0; i < 1000; i++) {
			memset(s + n, 'z', 98);
			memcpy(s + n + 98, "\r\n", 2);
			n += 100;
		}
		break;
	}
	*len = n;
	return s;
}

static void
test_dsn_returned_table(void **state)
{
	static const char *const notes[] = {NOTE_FULL, NOTE_HDRS, NOTE_BIG, NOTE_LONG, NOTE_NOHDR};
	const struct dsn_rcpt failed_delayed[] = {rcpt_failed, rcpt_delayed};

	(void)state;
	table_reset();
	for (size_t i = 0; i < NITEMS(ret_cases); i++) {
		const struct ret_case *c = &ret_cases[i];
		struct dsn_msg m;
		struct parsed p;
		size_t olen;
		char *orig = ret_orig(c, &olen), *s;

		switch (c->rcpts) {
		case RC_FAILED:
			m = base_msg(&rcpt_failed, 1);
			break;
		case RC_DELAYED:
			m = base_msg(&rcpt_delayed, 1);
			break;
		case RC_DELIVERED:
			m = base_msg(&rcpt_delivered, 1);
			break;
		case RC_MIXED:
			m = base_msg(failed_delayed, 2);
			break;
		case RC_NONE:
			m = base_msg(NULL, 0);
			break;
		}
		m.ret_hdrs = c->ret_hdrs;
		if (c->max_original != 0)
			m.max_original = c->max_original;
		if (!build_check(c->name, &m, orig, olen, &p, &s, NULL)) {
			free(orig);
			continue;
		}
		want_field(c->name, &p.top, "Subject", c->subject);
		want_field(c->name, &p.parts[1].h, "Content-Type", c->report);
		if (c->part3 == NULL && p.nparts != 2)
			table_mismatch(c->name, "parts got %zu, want 2", p.nparts);
		if (c->part3 != NULL && p.nparts != 3)
			table_mismatch(c->name, "parts got %zu, want 3", p.nparts);
		if (c->part3 != NULL && p.nparts == 3) {
			const struct part *pt = &p.parts[2];

			want_field(c->name, &pt->h, "Content-Type", c->part3);
			want_field(c->name, &pt->h, "Content-Transfer-Encoding", c->cte3);
			if (c->body3 != NULL && (pt->body_len != strlen(c->body3) ||
			                         memcmp(pt->body, c->body3, pt->body_len) != 0))
				table_mismatch(c->name, "part 3 body got '%s', want '%s'",
				               table_esc(pt->body, pt->body_len),
				               table_esc(c->body3, strlen(c->body3)));
			if (c->body3 == NULL && strcmp(c->part3, R822) == 0 &&
			    (pt->body_len + 2 != olen || memcmp(pt->body, orig, pt->body_len) != 0))
				table_mismatch(c->name, "part 3 is not the original (%zu of %zu)",
				               pt->body_len, olen);
		}
		for (size_t k = 0; k < NITEMS(notes); k++) {
			bool has = body_has(&p.parts[0], notes[k]);
			bool want = c->note != NULL && strcmp(c->note, notes[k]) == 0;

			if (has != want)
				table_mismatch(c->name, "text note '%s': got %s, want %s", notes[k],
				               has ? "present" : "absent",
				               want ? "present" : "absent");
		}
		parsed_free(&p);
		free(s);
		free(orig);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- what a remote server says cannot become a header field ---- */

struct diag_case {
	const char *name;
	const char *diag;
	bool utf8;        /* the DSN is a global one (the recipient address is UTF-8) */
	const char *want; /* Diagnostic-Code, unfolded; NULL: no field */
};

static const struct diag_case diag_cases[] = {
        {"plain", "550 5.1.1 User unknown", false, "smtp; 550 5.1.1 User unknown"},
        {"CRLF Bcc", "550 x\r\nBcc: victim@x", false, "smtp; 550 x Bcc: victim@x"},
        {"LF Bcc", "550 x\nBcc: victim@x", false, "smtp; 550 x Bcc: victim@x"},
        {"CR Bcc", "550 x\rBcc: victim@x", false, "smtp; 550 x Bcc: victim@x"},
        {"CRLF CRLF body", "550 x\r\n\r\nForged: body\r\n", false, "smtp; 550 x Forged: body"},
        {"multi-line reply",
         "550-5.1.1 No such user\r\n550-5.1.1 Check the address\r\n550 5.1.1 Bye", false,
         "smtp; 550-5.1.1 No such user 550-5.1.1 Check the address 550 5.1.1 Bye"},
        {"boundary in reply", "550 x\r\n--=_moat-dsn-4F2A9C01-0=\r\nContent-Type: text/html", false,
         "smtp; 550 x --=_moat-dsn-4F2A9C01-0= Content-Type: text/html"},
        {"tabs and controls", "550\tx\x01y\x1b[31mz\x7f", false, "smtp; 550 x y [31mz"},
        {"leading junk", "\r\n  \t 451 later  ", false, "smtp; 451 later"},
        {"only controls", "\r\n\r\n", false, NULL},
        {"empty", "", false, NULL},
        {"not SMTP", "local delivery: mailbox full", false, "X-Moat; local delivery: mailbox full"},
        {"UTF-8 in an ASCII report", "550 Benutzer unbekannt: J\xc3\xb6rg", false,
         "smtp; 550 Benutzer unbekannt: J?rg"},
        {"UTF-8 in a global report", "550 Benutzer unbekannt: J\xc3\xb6rg", true,
         "smtp; 550 Benutzer unbekannt: J\xc3\xb6rg"},
        {"invalid UTF-8", "550 a\xff\xfe b\xc3 c\xe2\x82", true, "smtp; 550 a?? b? c??"},
        {"overlong and surrogate", "550 \xc0\xaf \xed\xa0\x80", true, "smtp; 550 ?? ???"},
        {"C1 NEL",
         "550 a\xc2\x85"
         "Bcc: x",
         true, "smtp; 550 a?Bcc: x"},
        {"U+2028 line separator",
         "550 a\xe2\x80\xa8"
         "Bcc: x",
         true, "smtp; 550 a?Bcc: x"},
        {"bidi override",
         "550 \xe2\x80\xae"
         "kcab",
         true, "smtp; 550 ?kcab"},
};

static void
test_dsn_diagnostic_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < NITEMS(diag_cases); i++) {
		const struct diag_case *c = &diag_cases[i];
		struct dsn_rcpt r = rcpt_failed;
		struct dsn_msg m;
		struct parsed p;
		char *s;

		r.diagnostic = c->diag;
		if (c->utf8)
			r.addr = "j\xc3\xb6rg@example.com";
		m = base_msg(&r, 1);
		if (!build_check(c->name, &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, NULL))
			continue;
		want_field(c->name, &p.status[1], "Diagnostic-Code", c->want);
		want_field(c->name, &p.parts[1].h, "Content-Type", c->utf8 ? GDS : DS);
		/* the text part: the same text after "Reply:" on lines of its own */
		if (c->want != NULL && strncmp(c->want, "smtp; ", 6) == 0) {
			char line[256];

			snprintf(line, sizeof(line), "\r\nReply:     %.40s", c->want + 6);
			if (!body_has(&p.parts[0], line))
				table_mismatch(c->name, "text part lacks '%s'",
				               table_esc(line, strlen(line)));
		}
		if (block_get(&p.top, "Bcc") != NULL || block_get(&p.status[1], "Bcc") != NULL ||
		    block_get(&p.status[1], "Forged") != NULL)
			table_mismatch(c->name, "an injected field was parsed");
		if (c->utf8) {
			want_field(c->name, &p.status[1], "Final-Recipient",
			           "utf-8;j\xc3\xb6rg@example.com");
			want_field(c->name, &p.parts[0].h, "Content-Transfer-Encoding", "8bit");
		} else {
			for (size_t k = 0; k < strlen(s); k++)
				if ((unsigned char)s[k] >= 0x80) {
					table_mismatch(c->name,
					               "8-bit octet at %zu of an ASCII DSN", k);
					break;
				}
		}
		parsed_free(&p);
		free(s);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- long inputs: valid lines, nothing lost without a note ---- */

/* s without its spaces (what a split inserts when unfolded). */
static char *
unspace(const char *s)
{
	char *t = malloc(strlen(s) + 1), *o = t;

	assert_non_null(t);
	for (; *s != '\0'; s++)
		if (*s != ' ')
			*o++ = *s;
	*o = '\0';
	return t;
}

static void
test_dsn_long_fields(void **state)
{
	size_t alen = 5000, dlen = 3000, wlen = DSN_DIAG_MAX + 5000;
	char *addr = malloc(alen + 1), *tok = malloc(dlen + 1), *words = malloc(wlen + 1);
	char *want, *got, *tmp, *s;
	struct dsn_rcpt r = rcpt_failed;
	struct dsn_msg m;
	struct parsed p;
	size_t n;

	(void)state;
	assert_non_null(addr);
	assert_non_null(tok);
	assert_non_null(words);
	table_reset();

	/* a 5000-octet address: cut at DSN_FIELD_MAX with a note, split into lines */
	memset(addr, 'a', alen - 12);
	memcpy(addr + alen - 12, "@example.com", 13);
	/* a 3000-octet reply without a space: split, nothing lost */
	memcpy(tok, "550-", 4);
	for (size_t i = 4; i < dlen; i++)
		tok[i] = (char)('a' + i % 26);
	tok[dlen] = '\0';
	r.addr = addr;
	r.diagnostic = tok;
	r.remote_mta = addr;
	m = base_msg(&r, 1);
	m.sender = addr;
	m.client_helo = addr;
	m.envid = addr;
	if (build_check("long address", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, &n)) {
		want = malloc(DSN_FIELD_MAX + 64);
		assert_non_null(want);
		snprintf(want, DSN_FIELD_MAX + 64, "rfc822;%.*s[%zu more octets not shown]",
		         DSN_FIELD_MAX, addr, alen - DSN_FIELD_MAX);
		got = unspace(block_get(&p.status[1], "Final-Recipient"));
		tmp = unspace(want);
		free(want);
		want = tmp;
		if (strcmp(got, want) != 0)
			table_mismatch("long address",
			               "Final-Recipient got '%.60s...', want '%.60s...'", got,
			               want);
		free(got);
		free(want);
		got = unspace(block_get(&p.status[1], "Diagnostic-Code"));
		if (strncmp(got, "smtp;", 5) != 0 || strcmp(got + 5, tok) != 0)
			table_mismatch("long reply", "Diagnostic-Code lost octets: %zu, want %zu",
			               strlen(got), dlen + 5);
		free(got);
		parsed_free(&p);
		free(s);
	}

	/* a reply of many words over DSN_DIAG_MAX: folded at 78, cut with a note */
	for (size_t i = 0; i < wlen; i++)
		words[i] = i % 7 == 6 ? ' ' : 'w';
	memcpy(words, "451 ", 4);
	words[wlen] = '\0';
	r = rcpt_delayed;
	r.diagnostic = words;
	m = base_msg(&r, 1);
	if (build_check("long reply", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, &n)) {
		const char *d = block_get(&p.status[1], "Diagnostic-Code");
		char note[64];
		size_t over = 0, start = 0;

		snprintf(note, sizeof(note), "[%zu more octets not shown]", wlen - DSN_DIAG_MAX);
		if (strstr(d, note) == NULL)
			table_mismatch("long reply", "no note '%s'", note);
		if (strncmp(d, "smtp; ", 6) != 0 || strncmp(d + 6, words, DSN_DIAG_MAX - 1) != 0)
			table_mismatch("long reply",
			               "Diagnostic-Code does not start with the reply");
		/* folded: no header line of the status part over 78 */
		for (size_t i = 0; i + 1 < p.parts[1].body_len; i++)
			if (p.parts[1].body[i] == '\r') {
				if (i - start > 78)
					over++;
				start = i + 2;
			}
		if (over != 0)
			table_mismatch("long reply", "%zu status lines over 78 octets", over);
		parsed_free(&p);
		free(s);
	}
	free(addr);
	free(tok);
	free(words);
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- many recipients, each with a big reply ---- */

static void
test_dsn_many_recipients(void **state)
{
	const size_t nr = 1000, dlen = 10 * 1024;
	struct dsn_rcpt *r = calloc(DSN_RCPTS_MAX + 1, sizeof(*r));
	char **addrs = calloc(DSN_RCPTS_MAX + 1, sizeof(*addrs));
	char *diag = malloc(dlen + 1), *s;
	struct dsn_msg m;
	struct parsed p;
	size_t n;

	(void)state;
	assert_non_null(r);
	assert_non_null(addrs);
	assert_non_null(diag);
	table_reset();
	for (size_t i = 0; i < dlen; i++)
		diag[i] = i % 10 == 9 ? ' ' : (char)('a' + i % 26);
	memcpy(diag, "550 5.1.1 ", 10);
	diag[dlen - 1] = 'z';
	diag[dlen] = '\0';
	for (size_t i = 0; i <= DSN_RCPTS_MAX; i++) {
		addrs[i] = malloc(32);
		assert_non_null(addrs[i]);
		snprintf(addrs[i], 32, "user%zu@example.com", i);
		r[i] = rcpt_failed;
		r[i].addr = addrs[i];
		r[i].diagnostic = i < nr ? diag : "550 no";
	}

	m = base_msg(r, nr);
	if (build_check("1000 x 10 KiB", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, &n)) {
		for (size_t i = 0; i < nr; i++) {
			char want[40], row[32];
			const char *d = block_get(&p.status[i + 1], "Diagnostic-Code");

			snprintf(row, sizeof(row), "recipient %zu", i);
			snprintf(want, sizeof(want), "rfc822;user%zu@example.com", i);
			want_field(row, &p.status[i + 1], "Final-Recipient", want);
			if (d == NULL || strlen(d) != dlen + 6 || strcmp(d + 6, diag) != 0)
				table_mismatch(row, "Diagnostic-Code: got %zu octets, want %zu",
				               d ? strlen(d) : 0, dlen + 6);
			if (table_failures > 5)
				break;
		}
		if (n < nr * dlen * 2)
			table_mismatch("1000 x 10 KiB", "output %zu octets: replies missing?", n);
		parsed_free(&p);
		free(s);
	}

	/* over DSN_RCPTS_MAX: the first DSN_RCPTS_MAX listed, the rest counted */
	m = base_msg(r, DSN_RCPTS_MAX + 1);
	m.nrcpts = DSN_RCPTS_MAX + 1;
	for (size_t i = 0; i < nr; i++)
		r[i].diagnostic = "550 no";
	if (build_check("over DSN_RCPTS_MAX", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, &n)) {
		if (!body_has(&p.parts[0], "1 more recipient is not listed in this report."))
			table_mismatch("over DSN_RCPTS_MAX", "text part does not count the rest");
		want_field("over DSN_RCPTS_MAX", &p.status[DSN_RCPTS_MAX], "Final-Recipient",
		           "rfc822;user9999@example.com");
		parsed_free(&p);
		free(s);
	}
	for (size_t i = 0; i <= DSN_RCPTS_MAX; i++)
		free(addrs[i]);
	free(addrs);
	free(r);
	free(diag);
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- the boundary occurs nowhere in the content ---- */

struct boundary_case {
	const char *name;
	const char *orig;
	const char *diag;
	const char *want;
};

static const struct boundary_case boundary_cases[] = {
        {"plain", "Subject: x\r\n\r\nbody\r\n", "550 x", "=_moat-dsn-4F2A9C01-0="},
        {"taken by the original", "Subject: x\r\n\r\n--=_moat-dsn-4F2A9C01-0=\r\n", "550 x",
         "=_moat-dsn-4F2A9C01-1="},
        {"0, 1 and 3 taken",
         "Subject: =_moat-dsn-4F2A9C01-3=\r\n\r\n=_moat-dsn-4F2A9C01-0=\r\n"
         "x=_moat-dsn-4F2A9C01-1=x\r\n",
         "550 x", "=_moat-dsn-4F2A9C01-2="},
        {"taken by the reply", "Subject: x\r\n\r\nbody\r\n",
         "550 --=_moat-dsn-4F2A9C01-0=", "=_moat-dsn-4F2A9C01-1="},
        {"prefix without the '='", "Subject: x\r\n\r\n=_moat-dsn-4F2A9C01-0\r\n", "550 x",
         "=_moat-dsn-4F2A9C01-0="},
        {"10 taken, not 1", "Subject: x\r\n\r\n=_moat-dsn-4F2A9C01-10=\r\n", "550 x",
         "=_moat-dsn-4F2A9C01-0="},
        {"huge number", "Subject: x\r\n\r\n=_moat-dsn-4F2A9C01-99999999999999999999999=\r\n",
         "550 x", "=_moat-dsn-4F2A9C01-0="},
        {"prefix at the very end", "Subject: x\r\n\r\n=_moat-dsn-4F2A9C01-", "550 x",
         "=_moat-dsn-4F2A9C01-0="},
};

static void
test_dsn_boundary_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < NITEMS(boundary_cases); i++) {
		const struct boundary_case *c = &boundary_cases[i];
		struct dsn_rcpt r = rcpt_failed;
		struct dsn_msg m;
		struct parsed p;
		char *s;

		r.diagnostic = c->diag;
		m = base_msg(&r, 1);
		if (!build_check(c->name, &m, c->orig, strlen(c->orig), &p, &s, NULL))
			continue;
		if (strcmp(p.boundary, c->want) != 0)
			table_mismatch(c->name, "boundary got %s, want %s", p.boundary, c->want);
		if (p.nparts != 3)
			table_mismatch(c->name, "parts got %zu, want 3", p.nparts);
		parsed_free(&p);
		free(s);
	}

	/* every N from 0 to 300 taken: still found, N = 301 */
	{
		size_t cap = 301 * 40 + 64, off;
		char *orig = malloc(cap), *s;
		struct dsn_msg m = base_msg(&rcpt_failed, 1);
		struct parsed p;

		assert_non_null(orig);
		off = (size_t)snprintf(orig, cap, "Subject: x\r\n\r\n");
		for (int k = 0; k <= 300; k++)
			off += (size_t)snprintf(orig + off, cap - off,
			                        "=_moat-dsn-4F2A9C01-%d=\r\n", k);
		if (build_check("300 taken", &m, orig, off, &p, &s, NULL)) {
			if (strcmp(p.boundary, "=_moat-dsn-4F2A9C01-301=") != 0)
				table_mismatch("300 taken", "boundary got %s", p.boundary);
			parsed_free(&p);
			free(s);
		}
		free(orig);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- SMTPUTF8: message/global-* and the utf-8 address type (RFC 6533) ---- */

static void
test_dsn_utf8(void **state)
{
	struct dsn_rcpt r[2] = {rcpt_failed, rcpt_failed};
	struct dsn_msg m;
	struct parsed p;
	char *s;

	(void)state;
	table_reset();
	r[0].addr = "j\xc3\xb6rg@b\xc3\xbc"
	            "cher.example";
	r[0].orcpt = "utf-8;j\\x{00F6}rg@b\\x{00FC}cher.example";
	r[1].addr = "plain@example.com";
	m = base_msg(r, 2);
	m.sender = "s\xc3\xa9nder@exampl\xc3\xa9.test";
	if (build_check("utf8", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, NULL)) {
		want_field("utf8", &p.top, "To", "<s\xc3\xa9nder@exampl\xc3\xa9.test>");
		want_field("utf8", &p.top, "Content-Transfer-Encoding", "8bit");
		want_field("utf8", &p.parts[1].h, "Content-Type", GDS);
		want_field("utf8", &p.status[1], "Final-Recipient",
		           "utf-8;j\xc3\xb6rg@b\xc3\xbc"
		           "cher.example");
		want_field("utf8", &p.status[1], "Original-Recipient",
		           "utf-8;j\\x{00F6}rg@b\\x{00FC}cher.example");
		want_field("utf8", &p.status[2], "Final-Recipient", "rfc822;plain@example.com");
		want_field("utf8", &p.parts[2].h, "Content-Type", R822);
		if (!body_has(&p.parts[0], "Recipient: <j\xc3\xb6rg@b\xc3\xbc"
		                           "cher.example>"))
			table_mismatch("utf8", "text part lacks the UTF-8 address");
		parsed_free(&p);
		free(s);
	}

	/* an ASCII DSN holds no 8-bit octet, not even from a bad ORCPT */
	r[0] = rcpt_failed;
	r[0].orcpt = "rfc822;bad\x01orcpt";
	m = base_msg(r, 1);
	if (build_check("ascii", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, NULL)) {
		want_field("ascii", &p.top, "Content-Transfer-Encoding", "7bit");
		want_field("ascii", &p.status[1], "Original-Recipient", "rfc822;bad orcpt");
		parsed_free(&p);
		free(s);
	}
	/* a malformed ORCPT gives no Original-Recipient rather than a wrong one */
	r[0].orcpt = "no-semicolon";
	if (build_check("orcpt", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, NULL)) {
		want_field("orcpt", &p.status[1], "Original-Recipient", NULL);
		parsed_free(&p);
		free(s);
	}
	r[0].orcpt = "rfc 822;x@y";
	if (build_check("orcpt type", &m, "Subject: x\r\n\r\nx\r\n", 17, &p, &s, NULL)) {
		want_field("orcpt type", &p.status[1], "Original-Recipient", NULL);
		parsed_free(&p);
		free(s);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- odd inputs from the caller still make a valid DSN ---- */

static void
test_dsn_odd_inputs(void **state)
{
	struct dsn_rcpt r = rcpt_delayed;
	struct dsn_msg m;
	struct parsed p;
	char *s, *s2;
	size_t n;

	(void)state;
	table_reset();
	r.addr = NULL;
	r.remote_mta = "evil (host)\r\nBcc: x";
	r.status = "4.4.1\r\nBcc: x";
	r.action = DSN_DELAYED;
	r.will_retry_until = INT64_C(99999999999999);
	m = base_msg(&r, 1);
	m.reporting_mta = "bad host\r\nBcc: x..";
	m.queue_id = "../\r\n";
	m.sender = "";
	m.client_helo = NULL;
	m.client_addr = "2001:db8::1";
	m.arrival = 0;
	m.now = -5;
	if (build_check("odd", &m, NULL, 0, &p, &s, &n)) {
		want_field("odd", &p.top, "From",
		           "\"Mail Delivery System\" <MAILER-DAEMON@bad-host--Bcc--x>");
		want_field("odd", &p.top, "To", "undisclosed-recipients:;");
		want_field("odd", &p.top, "Date", "Thu, 01 Jan 1970 00:00:00 +0000");
		want_field("odd", &p.status[0], "Received-From-MTA", "dns; [2001:db8::1]");
		want_field("odd", &p.status[0], "Arrival-Date", NULL);
		want_field("odd", &p.status[0], "X-Moat-Queue-Id", "../??");
		want_field("odd", &p.status[1], "Final-Recipient", "rfc822;unknown");
		want_field("odd", &p.status[1], "Status", "4.0.0");
		want_field("odd", &p.status[1], "Remote-MTA", "dns; evil (?host? Bcc: x)");
		want_field("odd", &p.status[1], "Will-Retry-Until",
		           "Fri, 31 Dec 9999 23:59:59 +0000");
		if (strncmp(block_get(&p.top, "Message-ID"), "<noqueue.dsn--5.", 16) != 0)
			table_mismatch("odd", "Message-ID got %s", block_get(&p.top, "Message-ID"));
		if (p.nparts != 2)
			table_mismatch("odd", "parts got %zu, want 2 (no original)", p.nparts);
		parsed_free(&p);
		/* two DSNs of one message differ in their Message-ID */
		m.sender = "x@y.test";
		if (build_check("odd 2", &m, NULL, 0, &p, &s2, NULL)) {
			struct parsed p1;

			if (dsn_parse(s, n, &p1)) {
				if (strcmp(block_get(&p.top, "Message-ID"),
				           block_get(&p1.top, "Message-ID")) == 0)
					table_mismatch("odd", "Message-ID repeated: %s",
					               block_get(&p.top, "Message-ID"));
				parsed_free(&p1);
			}
			parsed_free(&p);
			free(s2);
		}
		free(s);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- dsn_wanted(): RFC 3461 NOTIFY ---- */

#define NEVER SMTP_NOTIFY_NEVER
#define SUCC  SMTP_NOTIFY_SUCCESS
#define FAIL  SMTP_NOTIFY_FAILURE
#define DELAY SMTP_NOTIFY_DELAY
#define DFLT  DSN_WANT_DEFAULT_DELAY

struct wanted_case {
	unsigned notify;
	bool want[5]; /* failed, delayed, delivered, relayed, expanded */
};

static const struct wanted_case wanted_cases[] = {
        {0, {true, false, false, false, false}},
        {DFLT, {true, true, false, false, false}},
        {NEVER, {false, false, false, false, false}},
        {NEVER | DFLT, {false, false, false, false, false}},
        {NEVER | FAIL | SUCC, {false, false, false, false, false}},
        {FAIL, {true, false, false, false, false}},
        {FAIL | DFLT, {true, false, false, false, false}},
        {DELAY, {false, true, false, false, false}},
        {SUCC, {false, false, true, true, true}},
        {SUCC | FAIL, {true, false, true, true, true}},
        {FAIL | DELAY, {true, true, false, false, false}},
        {SUCC | FAIL | DELAY, {true, true, true, true, true}},
        {SUCC | DFLT, {false, false, true, true, true}},
};

static void
test_dsn_wanted_table(void **state)
{
	static const char *const names[] = {"failed", "delayed", "delivered", "relayed",
	                                    "expanded"};
	char row[32];

	(void)state;
	table_reset();
	for (size_t i = 0; i < NITEMS(wanted_cases); i++) {
		const struct wanted_case *c = &wanted_cases[i];

		snprintf(row, sizeof(row), "row %zu notify 0x%x", i, c->notify);
		for (int a = DSN_FAILED; a <= DSN_EXPANDED; a++) {
			bool got = dsn_wanted(c->notify, (enum dsn_action)a);

			if (got != c->want[a])
				table_mismatch(row, "%s: got %d, want %d", names[a], got,
				               c->want[a]);
		}
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dsn_fields),
	        cmocka_unit_test(test_dsn_returned_table),
	        cmocka_unit_test(test_dsn_diagnostic_table),
	        cmocka_unit_test(test_dsn_long_fields),
	        cmocka_unit_test(test_dsn_many_recipients),
	        cmocka_unit_test(test_dsn_boundary_table),
	        cmocka_unit_test(test_dsn_utf8),
	        cmocka_unit_test(test_dsn_odd_inputs),
	        cmocka_unit_test(test_dsn_wanted_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
