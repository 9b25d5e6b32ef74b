/*
 * test_smtp_data.c - table-driven tests of the DATA / BDAT scanner:
 * the terminator (RFC 5321 4.1.1.4), dot-stuffing (4.5.2), every SMTP
 * smuggling sequence, line length (4.5.3.1.6), the header block and
 * Received: counting; each row also fed split at every offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_data.h"

#define ALL     SIZE_MAX /* want_consumed: the whole input */
#define HDR_MAX 65536

#include "table.h"

/* Collects what the scanner emits. */
struct sink {
	char *buf;
	size_t len, cap;
	size_t calls;
	bool empty_call; /* emit() was called for zero octets */
};

static void
sink_emit(void *ctx, const char *p, size_t n)
{
	struct sink *s = ctx;

	s->calls++;
	if (n == 0)
		s->empty_call = true;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2 + 64;
		s->buf = realloc(s->buf, s->cap);
		assert_non_null(s->buf);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* a[0..an) and b[0..bn) hold the same octets (either may be NULL when empty). */
static bool
same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

struct result {
	bool done;
	size_t consumed; /* over all pieces, up to done */
	struct sink out;
	struct smtp_data_scan ds;
};

/*
 * Feed in[0..len) as pieces cut at the ascending offsets cuts[0..ncuts),
 * as a session would: stop at done, call finish() at the end of RAW data.
 */
static void
run(struct result *r, enum smtp_data_mode mode, size_t header_max, const char *in, size_t len,
    const size_t *cuts, size_t ncuts)
{
	size_t start = 0;

	memset(r, 0, sizeof(*r));
	smtp_data_init(&r->ds, mode, header_max, SMTP_TEXT_LINE_MAX);
	for (size_t k = 0; k <= ncuts && !r->done; k++) {
		size_t end = k < ncuts ? cuts[k] : len, n;

		n = smtp_data_feed(&r->ds, in + start, end - start, sink_emit, &r->out, &r->done);
		if (n > end - start || (!r->done && n != end - start))
			table_mismatch(table_esc(in, len),
			               "feed of %zu octets consumed %zu, done %d", end - start, n,
			               r->done);
		r->consumed += n;
		start = end;
	}
	if (mode == SMTP_DATA_MODE_RAW)
		smtp_data_finish(&r->ds);
}

/* Compare two runs of the same input; all results must agree. */
static void
same_result(const char *row, const char *how, const struct result *a, const struct result *b)
{
	if (a->done != b->done || a->consumed != b->consumed)
		table_mismatch(row, "%s: done/consumed got %d/%zu, want %d/%zu", how, b->done,
		               b->consumed, a->done, a->consumed);
	if (!same_bytes(a->out.buf, a->out.len, b->out.buf, b->out.len))
		table_mismatch(row, "%s: payload got '%s', want '%s'", how,
		               table_esc(b->out.buf, b->out.len),
		               table_esc(a->out.buf, a->out.len));
	if (a->ds.flags != b->ds.flags || a->ds.received != b->ds.received ||
	    a->ds.size != b->ds.size || a->ds.header_bytes != b->ds.header_bytes ||
	    a->ds.in_header != b->ds.in_header)
		table_mismatch(row,
		               "%s: flags/received/size/header_bytes got %#x/%u/%llu/%zu, "
		               "want %#x/%u/%llu/%zu",
		               how, b->ds.flags, b->ds.received, (unsigned long long)b->ds.size,
		               b->ds.header_bytes, a->ds.flags, a->ds.received,
		               (unsigned long long)a->ds.size, a->ds.header_bytes);
}

/* The input fed whole, then at every single cut, then octet by octet. */
static void
run_all_splits(struct result *whole, const char *row, enum smtp_data_mode mode, size_t header_max,
               const char *in, size_t len)
{
	struct result r;
	size_t *cuts = calloc(len + 1, sizeof(*cuts));

	assert_non_null(cuts);
	run(whole, mode, header_max, in, len, NULL, 0);
	if (whole->out.empty_call)
		table_mismatch(row, "emit() called for zero octets");
	if (whole->ds.size != whole->out.len)
		table_mismatch(row, "size got %llu, want the %zu octets emitted",
		               (unsigned long long)whole->ds.size, whole->out.len);
	for (size_t i = 0; i <= len; i++) {
		char how[64];

		snprintf(how, sizeof(how), "split at %zu", i);
		cuts[0] = i;
		run(&r, mode, header_max, in, len, cuts, 1);
		same_result(row, how, whole, &r);
		free(r.out.buf);
	}
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(&r, mode, header_max, in, len, cuts, len > 0 ? len - 1 : 0);
	same_result(row, "octet by octet", whole, &r);
	free(r.out.buf);
	free(cuts);
}

struct data_case {
	const char *name;
	const char *in;
	size_t len; /* 0: strlen(in) */
	bool done;
	size_t consumed; /* ALL: len */
	const char *payload;
	size_t payload_len; /* 0: strlen(payload) */
	unsigned flags;
	unsigned received;
};

#define MAILCMD "MAIL FROM:<x@y.test>\r\n"

static const struct data_case dot_cases[] = {
        /* the terminator */
        {"empty message", ".\r\n", 0, true, ALL, "", 0, 0, 0},
        {"simple", "Subject: hi\r\n\r\nbody\r\n.\r\n", 0, true, ALL, "Subject: hi\r\n\r\nbody\r\n",
         0, 0, 0},
        {"leftover not consumed", "a\r\n.\r\n" MAILCMD, 0, true, 6, "a\r\n", 0, 0, 0},
        {"leftover dot line", "a\r\n.\r\n.\r\n", 0, true, 6, "a\r\n", 0, 0, 0},
        {"leftover after empty", ".\r\nQUIT\r\n", 0, true, 3, "", 0, 0, 0},
        {"no terminator yet", "a\r\nb\r\n", 0, false, ALL, "a\r\nb\r\n", 0, 0, 0},
        {"held dot", "a\r\n.", 0, false, ALL, "a\r\n", 0, 0, 0},
        {"held dot CR", "a\r\n.\r", 0, false, ALL, "a\r\n", 0, 0, 0},
        {"trailing CR", "a\r", 0, false, ALL, "a\r", 0, 0, 0},
        {"empty line then end", "\r\n.\r\n", 0, true, ALL, "\r\n", 0, 0, 0},
        {"dot CR CR LF", "a\r\n.\r\r\n.\r\n", 0, true, ALL, "a\r\n\r\r\n", 0, SMTP_DATA_BARE_CR, 0},
        {"dot CR x", "a\r\n.\rx\r\n.\r\n", 0, true, ALL, "a\r\n\rx\r\n", 0, SMTP_DATA_BARE_CR, 0},

        /* dot-stuffing */
        {"stuffed dot", "..\r\n.\r\n", 0, true, ALL, ".\r\n", 0, 0, 0},
        {"stuffed lines", "..x\r\n...y\r\n.\r\n", 0, true, ALL, ".x\r\n..y\r\n", 0, 0, 0},
        {"unstuffed leading dot", ".x\r\n.\r\n", 0, true, ALL, "x\r\n", 0, 0, 0},
        {"dot space", "a\r\n. \r\n.\r\n", 0, true, ALL, "a\r\n \r\n", 0, 0, 0},
        {"dot inside lines", "a.\r\n.b\r\na.b\r\n.\r\n", 0, true, ALL, "a.\r\nb\r\na.b\r\n", 0, 0,
         0},
        {"dot after empty line", "\r\n..\r\n\r\n.\r\n", 0, true, ALL, "\r\n.\r\n\r\n", 0, 0, 0},

        /* SMTP smuggling: none of these end the data */
        {"LF . LF", "hello\n.\n" MAILCMD, 0, false, ALL, "hello\n.\n" MAILCMD, 0, SMTP_DATA_BARE_LF,
         0},
        {"CR . CR", "hello\r.\r" MAILCMD, 0, false, ALL, "hello\r.\r" MAILCMD, 0, SMTP_DATA_BARE_CR,
         0},
        {"CRLF . LF", "hello\r\n.\n" MAILCMD, 0, false, ALL, "hello\r\n\n" MAILCMD, 0,
         SMTP_DATA_BARE_LF, 0},
        {"LF . CRLF", "hello\n.\r\n" MAILCMD, 0, false, ALL, "hello\n.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_LF, 0},
        {"CRLF . CR", "hello\r\n.\r" MAILCMD, 0, false, ALL, "hello\r\n\r" MAILCMD, 0,
         SMTP_DATA_BARE_CR, 0},
        {"CR . CRLF", "hello\r.\r\n" MAILCMD, 0, false, ALL, "hello\r.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_CR, 0},
        {"LF . LF first", "\n.\n" MAILCMD, 0, false, ALL, "\n.\n" MAILCMD, 0, SMTP_DATA_BARE_LF, 0},
        {"LF . CRLF first", "\n.\r\n" MAILCMD, 0, false, ALL, "\n.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_LF, 0},
        {"CR . CRLF first", "\r.\r\n" MAILCMD, 0, false, ALL, "\r.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_CR, 0},
        {". LF first", ".\n" MAILCMD, 0, false, ALL, "\n" MAILCMD, 0, SMTP_DATA_BARE_LF, 0},
        {". CR first", ".\r" MAILCMD, 0, false, ALL, "\r" MAILCMD, 0, SMTP_DATA_BARE_CR, 0},
        {"CRLF LF . CRLF", "a\r\n\n.\r\n" MAILCMD, 0, false, ALL, "a\r\n\n.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_LF, 0},
        {"CRLF . LF CRLF", "a\r\n.\n\r\n" MAILCMD, 0, false, ALL, "a\r\n\n\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_LF, 0},
        {"CR CR . CR LF", "a\r\r.\r\n" MAILCMD, 0, false, ALL, "a\r\r.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_CR, 0},
        {"LF CR . CR LF", "a\n\r.\r\n" MAILCMD, 0, false, ALL, "a\n\r.\r\n" MAILCMD, 0,
         SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF, 0},
        {"CRLF . NUL CRLF", "a\r\n.\0\r\n.\r\n", 10, true, ALL, "a\r\n\0\r\n", 6, SMTP_DATA_NUL, 0},
        /* a real CRLF . CRLF after a bare one does end the data (flagged) */
        {"LF then real end", "a\n\r\n.\r\n" MAILCMD, 0, true, 7, "a\n\r\n", 0, SMTP_DATA_BARE_LF,
         0},
        {"CR then real end", "a\r\r\n.\r\n" MAILCMD, 0, true, 7, "a\r\r\n", 0, SMTP_DATA_BARE_CR,
         0},

        /* octet classes */
        {"NUL", "a\0b\r\n.\r\n", 8, true, ALL, "a\0b\r\n", 5, SMTP_DATA_NUL, 0},
        {"8-bit", "caf\xc3\xa9\r\n.\r\n", 0, true, ALL, "caf\xc3\xa9\r\n", 0, SMTP_DATA_8BIT, 0},
        {"NUL and 8-bit", "\xff\0\r\n.\r\n", 7, true, ALL, "\xff\0\r\n", 4,
         SMTP_DATA_NUL | SMTP_DATA_8BIT, 0},

        /* Received: counting, header block only */
        {"received fields",
         "Received: from a\r\n\tby b\r\nreceived : from c\r\nRECEIVED\t:d\r\n"
         "Received-SPF: pass\r\nX-Received: x\r\n Received: folded\r\nReceived\r\n"
         "Receive: x\r\nReceivedx: y\r\nSubject: s\r\n\r\nReceived: in body\r\n.\r\n",
         0, true, ALL,
         "Received: from a\r\n\tby b\r\nreceived : from c\r\nRECEIVED\t:d\r\n"
         "Received-SPF: pass\r\nX-Received: x\r\n Received: folded\r\nReceived\r\n"
         "Receive: x\r\nReceivedx: y\r\nSubject: s\r\n\r\nReceived: in body\r\n",
         0, 0, 3},
        {"folded received",
         "Received: from a.test\r\n\tby b.test;\r\n Mon, 1 Jan 2024\r\n"
         "Received: from c.test\r\n by d.test\r\n\r\n.\r\n",
         0, true, ALL,
         "Received: from a.test\r\n\tby b.test;\r\n Mon, 1 Jan 2024\r\n"
         "Received: from c.test\r\n by d.test\r\n\r\n",
         0, 0, 2},
        {"received after stuffing dot", ".Received: x\r\n\r\n.\r\n", 0, true, ALL,
         "Received: x\r\n\r\n", 0, 0, 1},
        {"received after bare LF", "Subject: a\nReceived: x\r\n\r\n.\r\n", 0, true, ALL,
         "Subject: a\nReceived: x\r\n\r\n", 0, SMTP_DATA_BARE_LF, 0},
        {"received with NUL", "Recei\0ved: x\r\n\r\n.\r\n", 19, true, ALL, "Recei\0ved: x\r\n\r\n",
         16, SMTP_DATA_NUL, 0},
        {"received in body only", "\r\nReceived: x\r\n.\r\n", 0, true, ALL, "\r\nReceived: x\r\n",
         0, 0, 0},
        {"received body after bare CR line", "Subject: a\r\n\r\r\nReceived: x\r\n\r\n.\r\n", 0,
         true, ALL, "Subject: a\r\n\r\r\nReceived: x\r\n\r\n", 0, SMTP_DATA_BARE_CR, 1},
};

static void
test_data_dot_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(dot_cases) / sizeof(dot_cases[0]); i++) {
		const struct data_case *c = &dot_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		size_t plen = c->payload_len ? c->payload_len : strlen(c->payload);
		size_t consumed = c->consumed == ALL ? len : c->consumed;
		struct result r;

		run_all_splits(&r, c->name, SMTP_DATA_MODE_DOT, HDR_MAX, c->in, len);
		if (r.done != c->done || r.consumed != consumed)
			table_mismatch(c->name, "done/consumed got %d/%zu, want %d/%zu", r.done,
			               r.consumed, c->done, consumed);
		if (!same_bytes(r.out.buf, r.out.len, c->payload, plen))
			table_mismatch(c->name, "payload got '%s', want '%s'",
			               table_esc(r.out.buf, r.out.len),
			               table_esc(c->payload, plen));
		if (r.ds.flags != c->flags)
			table_mismatch(c->name, "flags got %#x, want %#x", r.ds.flags, c->flags);
		if (r.ds.received != c->received)
			table_mismatch(c->name, "received got %u, want %u", r.ds.received,
			               c->received);
		free(r.out.buf);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Each smuggling sequence inside a message: never an end; the real one later is. */
static void
test_data_smuggling(void **state)
{
	static const struct {
		const char *seq;
		const char *payload; /* what seq becomes */
		unsigned flag;
	} seqs[] = {
	        {"\n.\n", "\n.\n", SMTP_DATA_BARE_LF},
	        {"\r.\r", "\r.\r", SMTP_DATA_BARE_CR},
	        {"\r\n.\n", "\r\n\n", SMTP_DATA_BARE_LF},
	        {"\n.\r\n", "\n.\r\n", SMTP_DATA_BARE_LF},
	        {"\r\n.\r", "\r\n\r", SMTP_DATA_BARE_CR},
	        {"\r.\r\n", "\r.\r\n", SMTP_DATA_BARE_CR},
	        {"\n\n.\n\n", "\n\n.\n\n", SMTP_DATA_BARE_LF},
	        {"\r\n.\r\r\n", "\r\n\r\r\n", SMTP_DATA_BARE_CR},
	        {"\r\r\n.\n", "\r\r\n\n", SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF},
	};
	static const char head[] = "Subject: t\r\n\r\nhello";
	static const char smuggled[] = "RCPT TO:<v@x.test>\r\nDATA\r\n";

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		char in[256], want[256], row[64];
		size_t n, wn;
		struct result r;

		snprintf(row, sizeof(row), "sequence '%s'",
		         table_esc(seqs[i].seq, strlen(seqs[i].seq)));
		n = (size_t)snprintf(in, sizeof(in), "%s%s%s", head, seqs[i].seq, smuggled);
		run_all_splits(&r, row, SMTP_DATA_MODE_DOT, HDR_MAX, in, n);
		if (r.done || r.consumed != n)
			table_mismatch(row, "done/consumed got %d/%zu, want 0/%zu", r.done,
			               r.consumed, n);
		if (r.ds.flags != seqs[i].flag)
			table_mismatch(row, "flags got %#x, want %#x", r.ds.flags, seqs[i].flag);
		free(r.out.buf);

		/* now the real end: everything before ".\r\n" is the message */
		n += (size_t)snprintf(in + n, sizeof(in) - n, ".\r\n");
		wn = (size_t)snprintf(want, sizeof(want), "%s%s%s", head, seqs[i].payload,
		                      smuggled);
		run_all_splits(&r, row, SMTP_DATA_MODE_DOT, HDR_MAX, in, n);
		if (!r.done || r.consumed != n)
			table_mismatch(row, "with terminator: done/consumed got %d/%zu, want 1/%zu",
			               r.done, r.consumed, n);
		if (!same_bytes(r.out.buf, r.out.len, want, wn))
			table_mismatch(row, "payload got '%s', want '%s'",
			               table_esc(r.out.buf, r.out.len), table_esc(want, wn));
		if (r.ds.flags != seqs[i].flag)
			table_mismatch(row, "with terminator: flags got %#x, want %#x", r.ds.flags,
			               seqs[i].flag);
		free(r.out.buf);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* The terminator split across two and three feed() calls at every offset. */
static void
test_data_terminator_splits(void **state)
{
	static const char in[] = "Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n";
	static const char want[] = "Subject: x\r\n\r\nbody\r\n.dot\r\n";
	const size_t len = sizeof(in) - 1, end = len - 6;

	(void)state;
	table_reset();
	for (size_t i = 0; i <= len; i++) {
		for (size_t j = i; j <= len; j++) {
			size_t cuts[2] = {i, j};
			struct result r;
			char row[64];

			snprintf(row, sizeof(row), "cuts %zu,%zu", i, j);
			run(&r, SMTP_DATA_MODE_DOT, HDR_MAX, in, len, cuts, 2);
			if (!r.done || r.consumed != end)
				table_mismatch(row, "done/consumed got %d/%zu, want 1/%zu", r.done,
				               r.consumed, end);
			if (!same_bytes(r.out.buf, r.out.len, want, sizeof(want) - 1))
				table_mismatch(row, "payload got '%s', want '%s'",
				               table_esc(r.out.buf, r.out.len), want);
			if (r.ds.flags != 0 || r.ds.size != sizeof(want) - 1)
				table_mismatch(row, "flags/size got %#x/%llu, want 0/%zu",
				               r.ds.flags, (unsigned long long)r.ds.size,
				               sizeof(want) - 1);
			free(r.out.buf);
		}
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Line length: 998 octets excl. CRLF are fine, 999 are not (wire octets). */
static void
test_data_line_length(void **state)
{
	static const struct {
		const char *name;
		enum smtp_data_mode mode;
		const char *prefix; /* then fill 'x' up to n octets, then suffix */
		size_t n;
		const char *suffix;
		unsigned flags;
	} cases[] = {
	        {"998", SMTP_DATA_MODE_DOT, "", 998, "\r\n.\r\n", 0},
	        {"999", SMTP_DATA_MODE_DOT, "", 999, "\r\n.\r\n", SMTP_DATA_LONG_LINE},
	        {"997", SMTP_DATA_MODE_DOT, "", 997, "\r\n.\r\n", 0},
	        {"stuffed 998", SMTP_DATA_MODE_DOT, "..", 998, "\r\n.\r\n", 0},
	        /* the stuffing dot does not count (RFC 5321 4.5.3.1.6) */
	        {"stuffed 999", SMTP_DATA_MODE_DOT, "..", 999, "\r\n.\r\n", 0},
	        {"stuffed 1000", SMTP_DATA_MODE_DOT, "..", 1000, "\r\n.\r\n", SMTP_DATA_LONG_LINE},
	        {"second line 999", SMTP_DATA_MODE_DOT, "a\r\n", 1002, "\r\n.\r\n",
	         SMTP_DATA_LONG_LINE},
	        {"bare CR counts", SMTP_DATA_MODE_DOT, "\r", 999, "\r\n.\r\n",
	         SMTP_DATA_LONG_LINE | SMTP_DATA_BARE_CR},
	        {"bare LF counts", SMTP_DATA_MODE_DOT, "\n", 999, "\r\n.\r\n",
	         SMTP_DATA_LONG_LINE | SMTP_DATA_BARE_LF},
	        {"bare CR 998", SMTP_DATA_MODE_DOT, "\r", 998, "\r\n.\r\n", SMTP_DATA_BARE_CR},
	        {"last line unterminated 999", SMTP_DATA_MODE_DOT, "", 999, "",
	         SMTP_DATA_LONG_LINE},
	        {"raw 998", SMTP_DATA_MODE_RAW, "", 998, "\r\n", 0},
	        {"raw 999", SMTP_DATA_MODE_RAW, "", 999, "\r\n", SMTP_DATA_LONG_LINE},
	        {"raw dot 999", SMTP_DATA_MODE_RAW, ".", 999, "\r\n", SMTP_DATA_LONG_LINE},
	        {"raw 998 no CRLF", SMTP_DATA_MODE_RAW, "", 998, "", 0},
	        {"raw 998 then CR", SMTP_DATA_MODE_RAW, "", 998, "\r",
	         SMTP_DATA_LONG_LINE | SMTP_DATA_BARE_CR},
	        {"long line in body", SMTP_DATA_MODE_DOT, "H: v\r\n\r\n", 1008,
	         "\r\nshort\r\n.\r\n", SMTP_DATA_LONG_LINE},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[2100];
		size_t n = (size_t)snprintf(in, sizeof(in), "%s", cases[i].prefix);
		struct result r;

		while (n < cases[i].n)
			in[n++] = 'x';
		n += (size_t)snprintf(in + n, sizeof(in) - n, "%s", cases[i].suffix);
		run_all_splits(&r, cases[i].name, cases[i].mode, HDR_MAX, in, n);
		if (r.ds.flags != cases[i].flags)
			table_mismatch(cases[i].name, "flags got %#x, want %#x", r.ds.flags,
			               cases[i].flags);
		free(r.out.buf);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* The header block: counted up to the empty line, flagged over the limit, never cut. */
static void
test_data_header_block(void **state)
{
	static const struct {
		const char *name;
		const char *in;
		size_t header_max;
		size_t header_bytes;
		unsigned flags;
	} cases[] = {
	        {"at the limit", "Subject: 0123456789\r\n\r\nbody\r\n.\r\n", 21, 21, 0},
	        {"one over", "Subject: 0123456789\r\n\r\nbody\r\n.\r\n", 20, 21,
	         SMTP_DATA_HEADER_TOO_BIG},
	        {"body not counted", "A: b\r\n\r\n0123456789012345678901234567890\r\n.\r\n", 6, 6,
	         0},
	        {"two fields", "A: b\r\nC: d\r\n\r\n.\r\n", 12, 12, 0},
	        {"no empty line", "A: b\r\nC: d\r\n.\r\n", 11, 12, SMTP_DATA_HEADER_TOO_BIG},
	        {"stuffing dot not counted", "..A: b\r\n\r\n.\r\n", 7, 7, 0},
	        {"empty header", "\r\nA: b\r\n.\r\n", 0, 0, 0},
	        {"bare LF line is not empty", "A: b\r\n\n\r\nC: d\r\n\r\n.\r\n", 100, 15,
	         SMTP_DATA_BARE_LF},
	        {"mid-line over the limit", "Subject: 0123456789012345678901234567890123456789", 10,
	         49, SMTP_DATA_HEADER_TOO_BIG},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);
		struct result r;

		run_all_splits(&r, cases[i].name, SMTP_DATA_MODE_DOT, cases[i].header_max,
		               cases[i].in, len);
		if (r.ds.header_bytes != cases[i].header_bytes)
			table_mismatch(cases[i].name, "header_bytes got %zu, want %zu",
			               r.ds.header_bytes, cases[i].header_bytes);
		if (r.ds.flags != cases[i].flags)
			table_mismatch(cases[i].name, "flags got %#x, want %#x", r.ds.flags,
			               cases[i].flags);
		if (strstr(cases[i].in, ".\r\n") != NULL && r.consumed != len)
			table_mismatch(cases[i].name,
			               "consumed got %zu, want %zu: never stop early", r.consumed,
			               len);
		free(r.out.buf);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* BDAT: raw octets, no terminator, a trailing CR settled by finish(). */
static void
test_data_raw(void **state)
{
	static const struct {
		const char *name;
		const char *in;
		size_t len;
		unsigned flags;
		unsigned received;
	} cases[] = {
	        {"terminator is data", "a\r\n.\r\nb\r\n", 0, 0, 0},
	        {"dots are data", "..\r\n.x\r\n.", 0, 0, 0},
	        {"trailing CR", "a\r\nb\r", 0, SMTP_DATA_BARE_CR, 0},
	        {"bare CR", "a\rb\r\n", 0, SMTP_DATA_BARE_CR, 0},
	        {"bare LF", "a\nb\r\n", 0, SMTP_DATA_BARE_LF, 0},
	        {"smuggling", "a\r\n.\n" MAILCMD ".\r\n", 0, SMTP_DATA_BARE_LF, 0},
	        {"NUL", "a\0b", 3, SMTP_DATA_NUL, 0},
	        {"8-bit", "\x80", 0, SMTP_DATA_8BIT, 0},
	        {"received", "Received: a\r\nReceived: b\r\n\r\nReceived: c\r\n", 0, 0, 2},
	        {"empty", "", 0, 0, 0},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		struct result r;

		run_all_splits(&r, cases[i].name, SMTP_DATA_MODE_RAW, HDR_MAX, cases[i].in, len);
		if (r.done || r.consumed != len)
			table_mismatch(cases[i].name, "done/consumed got %d/%zu, want 0/%zu",
			               r.done, r.consumed, len);
		if (!same_bytes(r.out.buf, r.out.len, cases[i].in, len))
			table_mismatch(cases[i].name, "payload got '%s', want the input",
			               table_esc(r.out.buf, r.out.len));
		if (r.ds.flags != cases[i].flags)
			table_mismatch(cases[i].name, "flags got %#x, want %#x", r.ds.flags,
			               cases[i].flags);
		if (r.ds.received != cases[i].received)
			table_mismatch(cases[i].name, "received got %u, want %u", r.ds.received,
			               cases[i].received);
		free(r.out.buf);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* A CR at the end of one BDAT chunk and LF at the start of the next is a CRLF. */
static void
test_data_raw_chunks(void **state)
{
	struct smtp_data_scan ds;
	struct sink out = {0};
	bool done = true;

	(void)state;
	smtp_data_init(&ds, SMTP_DATA_MODE_RAW, HDR_MAX, SMTP_TEXT_LINE_MAX);
	assert_int_equal(smtp_data_feed(&ds, "a\r", 2, sink_emit, &out, &done), 2);
	assert_false(done);
	assert_int_equal(smtp_data_feed(&ds, "\nb\r", 3, sink_emit, &out, &done), 3);
	assert_int_equal(ds.flags, 0);
	smtp_data_finish(&ds);
	assert_int_equal(ds.flags, SMTP_DATA_BARE_CR);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.buf, "a\r\nb\r", 5);
	assert_int_equal(ds.size, 5);
	free(out.buf);

	/* finish() has no effect in DOT mode */
	memset(&out, 0, sizeof(out));
	smtp_data_init(&ds, SMTP_DATA_MODE_DOT, HDR_MAX, SMTP_TEXT_LINE_MAX);
	assert_int_equal(smtp_data_feed(&ds, "a\r", 2, sink_emit, &out, &done), 2);
	smtp_data_finish(&ds);
	assert_int_equal(ds.flags, 0);
	free(out.buf);
}

/* After the terminator the scanner consumes nothing more. */
static void
test_data_after_done(void **state)
{
	struct smtp_data_scan ds;
	struct sink out = {0};
	bool done = false;

	(void)state;
	smtp_data_init(&ds, SMTP_DATA_MODE_DOT, HDR_MAX, SMTP_TEXT_LINE_MAX);
	assert_int_equal(smtp_data_feed(&ds, "x\r\n.\r\nNOOP\r\n", 12, sink_emit, &out, &done), 6);
	assert_true(done);
	done = false;
	assert_int_equal(smtp_data_feed(&ds, "NOOP\r\n", 6, sink_emit, &out, &done), 0);
	assert_true(done);
	assert_int_equal(out.len, 3);
	assert_int_equal(smtp_data_feed(&ds, "", 0, sink_emit, &out, NULL), 0);
	free(out.buf);
}

/* Payload goes out in runs: a plain message is one emit() call, not one per octet. */
static void
test_data_runs(void **state)
{
	static char in[100 * 80 + 3];
	struct smtp_data_scan ds;
	struct sink out = {0};
	size_t n = 0;
	bool done = false;

	(void)state;
	for (int line = 0; line < 100; line++) {
		n += (size_t)snprintf(in + n, sizeof(in) - n, "%s%03d ", line < 5 ? "X-H: " : "",
		                      line);
		while (n % 80 < 78) {
			in[n] = (char)('a' + n % 26);
			n++;
		}
		in[n++] = '\r';
		in[n++] = '\n';
	}
	memcpy(in + n, ".\r\n", 3);
	smtp_data_init(&ds, SMTP_DATA_MODE_DOT, HDR_MAX, SMTP_TEXT_LINE_MAX);
	assert_int_equal(smtp_data_feed(&ds, in, n + 3, sink_emit, &out, &done), n + 3);
	assert_true(done);
	assert_int_equal(out.calls, 1);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.buf, in, n);
	assert_int_equal(ds.size, n);
	free(out.buf);

	/* no callback at all is allowed: the scan still counts */
	smtp_data_init(&ds, SMTP_DATA_MODE_DOT, HDR_MAX, SMTP_TEXT_LINE_MAX);
	assert_int_equal(smtp_data_feed(&ds, in, n + 3, NULL, NULL, &done), n + 3);
	assert_int_equal(ds.size, n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_data_dot_table),
	        cmocka_unit_test(test_data_smuggling),
	        cmocka_unit_test(test_data_terminator_splits),
	        cmocka_unit_test(test_data_line_length),
	        cmocka_unit_test(test_data_header_block),
	        cmocka_unit_test(test_data_raw),
	        cmocka_unit_test(test_data_raw_chunks),
	        cmocka_unit_test(test_data_after_done),
	        cmocka_unit_test(test_data_runs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
