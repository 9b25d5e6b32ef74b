/*
 * test_mime.c - table-driven tests of the MIME model (src/scan/scan_mime.c:
 * RFC 2045-2049, 2047, 2183, 2231, 5322 addresses) and of the attachment
 * checks (src/scan/scan_attach.c: names, types, archives, macros).
 *
 * Messages are written here with LF line ends and sent as CRLF; binary
 * attachments (PE, PDF, OLE2, zip, tar.gz, 7z) are built in the test, the
 * archives with libarchive's writer, and sent base64-encoded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <gmime/gmime.h>

#include "common/config.h"
#include "common/util.h"
#include "scan/scan_internal.h"

#include "table.h"

static struct config *cfg;

/* --- helpers --- */

/* A growable byte buffer for the messages and files the tests build. */
struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void
buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* LF text to CRLF. */
static void
buf_crlf(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\n')
			buf_add(b, "\r", 1);
		buf_add(b, s, 1);
	}
}

/* Base64 in lines of 76, CRLF. */
static void
buf_base64(struct buf *b, const unsigned char *d, size_t n)
{
	gchar *enc = g_base64_encode(d, n);
	size_t len = strlen(enc);

	for (size_t i = 0; i < len; i += 76) {
		buf_add(b, enc + i, len - i < 76 ? len - i : 76);
		buf_add(b, "\r\n", 2);
	}
	g_free(enc);
}

/* TEST_MIME_DUMP=dir: write every message built here there (a fuzz seed corpus). */
static void
dump(const unsigned char *msg, size_t len)
{
	static unsigned n;
	const char *dir = getenv("TEST_MIME_DUMP");
	char path[512];
	FILE *fp;

	if (dir == NULL ||
	    (size_t)snprintf(path, sizeof(path), "%s/seed%03u", dir, n++) >= sizeof(path))
		return;
	if ((fp = fopen(path, "wb")) != NULL) {
		fwrite(msg, 1, len, fp);
		fclose(fp);
	}
}

/* Parse and check msg (len octets) into t. */
static void
run(struct scan_task *t, struct scan_input *in, const unsigned char *msg, size_t len)
{
	memset(t, 0, sizeof(*t));
	memset(in, 0, sizeof(*in));
	in->msg = msg;
	in->len = len;
	t->in = in;
	t->cfg = cfg;
	dump(msg, len);
	scan_mime_parse(t);
	scan_check_attachments(t);
}

static void
done(struct scan_task *t)
{
	scan_mime_free(&t->msg);
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(t->detail[i]);
}

/* The symbols of t as "A B C". */
static const char *
syms_str(const struct scan_task *t)
{
	static char s[1024];
	size_t o = 0;

	s[0] = '\0';
	for (size_t i = 0; i < t->nsyms && o + 64 < sizeof(s); i++)
		o += (size_t)snprintf(s + o, sizeof(s) - o, "%s%s", i ? " " : "",
		                      scan_sym_defs[t->order[i]].name);
	return s;
}

static bool
sym_named(const struct scan_task *t, const char *name, size_t len)
{
	for (size_t i = 0; i < t->nsyms; i++) {
		const char *n = scan_sym_defs[t->order[i]].name;

		if (strlen(n) == len && memcmp(n, name, len) == 0)
			return true;
	}
	return false;
}

/*
 * Check the symbols of t: every name of want ("A B") present, every name
 * of absent missing; absent "ALL": no symbol at all besides want.
 */
static void
check_syms(const char *row, const struct scan_task *t, const char *want, const char *absent)
{
	for (int pass = 0; pass < 2; pass++) {
		const char *list = pass == 0 ? want : absent;

		if (list == NULL || strcmp(list, "ALL") == 0)
			continue;
		for (const char *p = list; *p != '\0';) {
			size_t n = strcspn(p, " ");

			if (n > 0 && sym_named(t, p, n) != (pass == 0))
				table_mismatch(row, "%s %.*s: got symbols [%s]",
				               pass == 0 ? "missing" : "unexpected", (int)n, p,
				               syms_str(t));
			p += n;
			while (*p == ' ')
				p++;
		}
	}
	if (absent != NULL && strcmp(absent, "ALL") == 0) {
		for (size_t i = 0; i < t->nsyms; i++) {
			const char *n = scan_sym_defs[t->order[i]].name;
			const char *hit = want ? strstr(want, n) : NULL;

			if (hit == NULL)
				table_mismatch(row, "unexpected %s: got symbols [%s], want [%s]", n,
				               syms_str(t), want ? want : "");
		}
	}
}

static const char head[] =
        "Received: from client.test by moat.test; Mon, 1 Jan 2024 00:00:00 +0000\n"
        "From: Alice <alice@example.test>\n"
        "To: bob@example.test\n"
        "Subject: test\n"
        "Message-ID: <m1@example.test>\n"
        "MIME-Version: 1.0\n";

/* --- 1. structure: GMime's warnings and our own checks --- */

struct msg_case {
	const char *name;
	const char *msg; /* LF; head[] is prepended unless it starts with "!" */
	const char *want;
	const char *absent;
};

static const struct msg_case msg_cases[] = {
        {"plain text, clean", "Content-Type: text/plain; charset=us-ascii\n\nHello.\n", "", "ALL"},
        {"multipart with text and html, clean",
         "Content-Type: multipart/alternative; boundary=\"b\"\n\n--b\n"
         "Content-Type: text/plain\n\nhi\n--b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n",
         "", "ALL"},
        {"conflicting boundary parameters",
         "Content-Type: multipart/mixed; boundary=\"a\"; boundary=\"b\"\n\n--a\n"
         "Content-Type: text/plain\n\nA\n--a--\n",
         "MIME_CONFLICTING_PARAMETER", NULL},
        {"multipart without boundary",
         "Content-Type: multipart/mixed\n\n--a\nContent-Type: text/plain\n\nA\n--a--\n",
         "MIME_MULTIPART_NO_BOUNDARY", NULL},
        {"part without headers or content",
         "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n--b\n"
         "Content-Type: text/plain\n\nA\n--b--\n",
         "MIME_PART_NO_HEADERS", NULL},
        {"invalid header name", "Content-Type: text/plain\nBad Header: x\n\nbody\n",
         "MIME_BAD_HEADER_NAME", NULL},
        {"duplicate Content-Type, different values",
         "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n"
         "Content-Type: application/octet-stream\n\nA\n--b--\n",
         "MIME_CONFLICTING_HEADER", NULL},
        {"duplicate Content-Transfer-Encoding, different values",
         "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n"
         "Content-Transfer-Encoding: quoted-printable\n\naGk=\n",
         "MIME_CONFLICTING_HEADER", NULL},
        {"duplicate Content-Type, same value folded differently",
         "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain;\n"
         " charset=utf-8\nContent-Type: text/plain; charset=utf-8\n\nA\n--b--\n",
         "", "MIME_CONFLICTING_HEADER"},
        {"truncated multipart",
         "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
         "Content-Type: text/plain\n\nA\n",
         "MIME_MALFORMED", "MIME_CONFLICTING_HEADER"},
        {"no From", "!Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: s\n\nbody\n",
         "MIME_NO_FROM", "MIME_MULTIPLE_FROM"},
        {"two From fields", "!From: a@x.test\nFrom: b@y.test\nSubject: s\n\nbody\n",
         "MIME_MULTIPLE_FROM MIME_CONFLICTING_HEADER", "MIME_NO_FROM"},
        {"two mailboxes in one From", "!From: a@x.test, b@y.test\nSubject: s\n\nbody\n",
         "MIME_MULTIPLE_FROM", "MIME_NO_FROM"},
        {"empty input", "!", "MIME_UNPARSABLE", NULL},
};

static void
test_msg_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(msg_cases); i++) {
		const struct msg_case *c = &msg_cases[i];
		struct buf b = {0};
		struct scan_task t;
		struct scan_input in;

		if (c->msg[0] == '!')
			buf_crlf(&b, c->msg + 1);
		else {
			buf_crlf(&b, head);
			buf_crlf(&b, c->msg);
		}
		run(&t, &in, b.p ? b.p : (const unsigned char *)"", b.n);
		check_syms(c->name, &t, c->want, c->absent);
		done(&t);
		free(b.p);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Nesting: ours (scan_mime_max_depth) and GMime's own (1024 levels). */
static void
test_nesting(void **state)
{
	static const struct {
		const char *name;
		unsigned levels;
		bool rfc822;
		bool want;
	} cases[] = {
	        {"multipart nested 10", 10, false, false},
	        {"multipart nested 25 (> 20)", 25, false, true},
	        {"message/rfc822 nested 25", 25, true, true},
	        {"message/rfc822 nested 1100 (GMime's limit)", 1100, true, true},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(cases); i++) {
		struct buf b = {0};
		struct scan_task t;
		struct scan_input in;
		char line[128];

		buf_crlf(&b, head);
		for (unsigned l = 0; l < cases[i].levels; l++) {
			if (cases[i].rfc822)
				snprintf(line, sizeof(line), "Content-Type: message/rfc822\n\n");
			else
				snprintf(line, sizeof(line),
				         "Content-Type: multipart/mixed; "
				         "boundary=\"b%u\"\n\n--b%u\n",
				         l, l);
			buf_crlf(&b, line);
		}
		buf_crlf(&b, "Content-Type: text/plain\n\ninner\n");
		for (unsigned l = cases[i].levels; !cases[i].rfc822 && l-- > 0;) {
			snprintf(line, sizeof(line), "--b%u--\n", l);
			buf_crlf(&b, line);
		}
		run(&t, &in, b.p, b.n);
		if (scan_has(&t, SYM_MIME_NESTING_OVERFLOW) != cases[i].want)
			table_mismatch(cases[i].name, "MIME_NESTING_OVERFLOW got %d, want %d",
			               scan_has(&t, SYM_MIME_NESTING_OVERFLOW), cases[i].want);
		for (size_t k = 0; k < t.msg.nparts; k++)
			if (t.msg.parts[k].depth > cfg->scan_mime_max_depth)
				table_mismatch(cases[i].name, "part %zu at depth %u", k,
				               t.msg.parts[k].depth);
		done(&t);
		free(b.p);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_too_many_parts(void **state)
{
	struct buf b = {0};
	struct scan_task t;
	struct scan_input in;
	unsigned saved = cfg->scan_mime_max_parts;

	(void)state;
	buf_crlf(&b, head);
	buf_crlf(&b, "Content-Type: multipart/mixed; boundary=\"b\"\n\n");
	for (int i = 0; i < 10; i++)
		buf_crlf(&b, "--b\nContent-Type: text/plain\n\nx\n");
	buf_crlf(&b, "--b--\n");

	cfg->scan_mime_max_parts = 4;
	run(&t, &in, b.p, b.n);
	cfg->scan_mime_max_parts = saved;
	assert_true(scan_has(&t, SYM_MIME_TOO_MANY_PARTS));
	assert_int_equal(t.msg.nparts, 4);
	done(&t);

	run(&t, &in, b.p, b.n);
	assert_false(scan_has(&t, SYM_MIME_TOO_MANY_PARTS));
	assert_int_equal(t.msg.nparts, 11);
	done(&t);
	free(b.p);
}

/* --- 2. the model: names, addresses, parts --- */

struct name_case {
	const char *name;
	const char *hdrs; /* the attachment part's header fields, LF */
	const char *want; /* candidate names joined by '|', in order */
	const char *syms;
};

static const struct name_case name_cases[] = {
        {"RFC 2231 continuation with charset",
         "Content-Type: application/pdf\nContent-Disposition: attachment;\n"
         " filename*0*=UTF-8''r%C3%A9sum; filename*1*=%C3%A9.pdf\n",
         "résumé.pdf", ""},
        {"RFC 2231 single with latin-1 charset and language",
         "Content-Type: text/plain\nContent-Disposition: attachment; "
         "filename*=iso-8859-1'fr'caf%E9.txt\n",
         "café.txt", ""},
        {"RFC 2231 continuation without charset",
         "Content-Type: application/zip\nContent-Disposition: attachment;\n"
         " filename*0=\"long\"; filename*1=\"name\"; filename*2=\".zip\"\n",
         "longname.zip", ""},
        {"RFC 2047 B in filename",
         "Content-Type: application/pdf\nContent-Disposition: attachment; "
         "filename=\"=?UTF-8?B?w6l0w6kucGRm?=\"\n",
         "été.pdf", ""},
        {"RFC 2047 Q in Content-Type name",
         "Content-Type: application/msword; name=\"=?iso-8859-1?Q?na=EFve.doc?=\"\n", "naïve.doc",
         ""},
        {"name and filename agree",
         "Content-Type: application/pdf; name=\"a.pdf\"\nContent-Disposition: attachment; "
         "filename=\"a.pdf\"\n",
         "a.pdf", ""},
        {"name vs filename conflict",
         "Content-Type: application/pdf; name=\"a.pdf\"\nContent-Disposition: attachment; "
         "filename=\"b.exe\"\n",
         "b.exe|a.pdf", "ATTACH_NAME_AMBIGUOUS ATTACH_BLOCKED_EXT"},
        {"filename twice in one field",
         "Content-Type: application/pdf\nContent-Disposition: attachment; "
         "filename=\"a.pdf\"; filename=\"b.exe\"\n",
         NULL, "MIME_CONFLICTING_PARAMETER ATTACH_NAME_AMBIGUOUS ATTACH_BLOCKED_EXT"},
        {"two Content-Disposition fields",
         "Content-Type: application/pdf\nContent-Disposition: attachment; filename=\"a.pdf\"\n"
         "Content-Disposition: attachment; filename=\"b.exe\"\n",
         NULL, "MIME_CONFLICTING_HEADER ATTACH_NAME_AMBIGUOUS ATTACH_BLOCKED_EXT"},
        {"RFC 2231 name with a right-to-left override",
         "Content-Type: application/octet-stream\nContent-Disposition: attachment;\n"
         " filename*=UTF-8''photo%E2%80%AEgpj.scr\n",
         "photo\xe2\x80\xaegpj.scr", "ATTACH_RTLO ATTACH_BLOCKED_EXT"},
};

static void
test_names(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(name_cases); i++) {
		const struct name_case *c = &name_cases[i];
		struct buf b = {0};
		struct scan_task t;
		struct scan_input in;
		const struct scan_part *att = NULL;
		char got[512] = "";

		buf_crlf(&b, head);
		buf_crlf(&b, "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
		             "Content-Type: text/plain\n\nsee attached\n--b\n");
		buf_crlf(&b, c->hdrs);
		buf_crlf(&b, "\nhello\n--b--\n");
		run(&t, &in, b.p, b.n);
		for (size_t k = 0; k < t.msg.nparts; k++)
			if (t.msg.parts[k].nnames > 0)
				att = &t.msg.parts[k];
		if (att == NULL)
			table_mismatch(c->name, "no part with names");
		else {
			size_t o = 0;

			for (size_t k = 0; k < att->nnames; k++)
				o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s",
				                      k ? "|" : "", att->names[k]);
			if (c->want != NULL && strcmp(got, c->want) != 0)
				table_mismatch(c->name, "names got [%s], want [%s]",
				               table_esc(got, strlen(got)),
				               table_esc(c->want, strlen(c->want)));
			if (c->want == NULL &&
			    (strstr(got, "a.pdf") == NULL || strstr(got, "b.exe") == NULL))
				table_mismatch(c->name, "names got [%s], want a.pdf and b.exe",
				               got);
			if (!att->attachment)
				table_mismatch(c->name, "attachment flag not set");
		}
		check_syms(c->name, &t, c->syms,
		           c->syms[0] ? NULL
		                      : "ATTACH_NAME_AMBIGUOUS ATTACH_BLOCKED_EXT ATTACH_RTLO "
		                        "MIME_CONFLICTING_PARAMETER MIME_CONFLICTING_HEADER "
		                        "MIME_MALFORMED");
		done(&t);
		free(b.p);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

struct from_case {
	const char *name;
	const char *from; /* the From field(s), LF */
	const char *want; /* "display<addr>domain;..." with - for NULL */
};

static const struct from_case from_cases[] = {
        {"display name with an encoded word", "From: =?UTF-8?B?UGF5UGFs?= <service@PayPal.COM>\n",
         "PayPal<service@PayPal.COM>paypal.com;"},
        {"bare address", "From: a@x.test\n", "-<a@x.test>x.test;"},
        {"quoted display name", "From: \"Doe, John\" <jd@Example.Test>\n",
         "Doe, John<jd@Example.Test>example.test;"},
        {"two mailboxes", "From: a@x.test, B <b@y.test>\n", "-<a@x.test>x.test;B<b@y.test>y.test;"},
        {"group", "From: Team: a@x.test, b@y.test;\n", "-<a@x.test>x.test;-<b@y.test>y.test;"},
        {"empty group", "From: undisclosed-recipients:;\n", "undisclosed-recipients<->-;"},
        {"two From fields", "From: a@x.test\nFrom: b@y.test\n",
         "-<a@x.test>x.test;-<b@y.test>y.test;"},
        {"unparsable: an empty address", "From: <>\n", "<><->-;"},
        {"unparsable: no address", "From: Your Bank\n", "Your Bank<->-;"},
        {"unparsable: no domain", "From: Bank <bank@>\n", "Bank <bank@><->-;"},
};

static void
test_from(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(from_cases); i++) {
		const struct from_case *c = &from_cases[i];
		struct buf b = {0};
		struct scan_task t;
		struct scan_input in;
		char got[512] = "";
		size_t o = 0;

		buf_crlf(&b, "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\n");
		buf_crlf(&b, c->from);
		buf_crlf(&b, "Subject: =?UTF-8?Q?Caf=C3=A9?=\nReply-To: r@z.test\n"
		             "Message-ID: <id1@x.test>\n\nbody\n");
		run(&t, &in, b.p, b.n);
		for (size_t k = 0; k < t.msg.nfrom && o < sizeof(got); k++) {
			const struct scan_mbox *m = &t.msg.from[k];

			o += (size_t)snprintf(got + o, sizeof(got) - o, "%s<%s>%s;",
			                      m->display ? m->display : "-",
			                      m->addr ? m->addr : "-", m->domain ? m->domain : "-");
		}
		if (strcmp(got, c->want) != 0)
			table_mismatch(c->name, "from got [%s], want [%s]", got, c->want);
		if (scan_has(&t, SYM_MIME_MULTIPLE_FROM) != (t.msg.nfrom > 1))
			table_mismatch(c->name, "MIME_MULTIPLE_FROM with %zu mailboxes",
			               t.msg.nfrom);
		if (t.msg.subject == NULL || strcmp(t.msg.subject, "Café") != 0)
			table_mismatch(c->name, "subject got [%s]",
			               t.msg.subject ? t.msg.subject : "NULL");
		if (t.msg.message_id == NULL || strcmp(t.msg.message_id, "id1@x.test") != 0)
			table_mismatch(c->name, "message-id got [%s]",
			               t.msg.message_id ? t.msg.message_id : "NULL");
		if (t.msg.nreply_to != 1 || strcmp(t.msg.reply_to[0].addr, "r@z.test") != 0)
			table_mismatch(c->name, "reply-to wrong");
		done(&t);
		free(b.p);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Depths, flags, decoded data, charset conversion, message/rfc822. */
static void
test_parts(void **state)
{
	static const char body[] =
	        "Content-Type: multipart/mixed; boundary=\"o\"\n\n"
	        "--o\nContent-Type: text/plain; charset=iso-8859-1\n"
	        "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9\n"
	        "--o\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
	        "PHA+aGk8L3A+\n"
	        "--o\nContent-Type: message/rfc822\n\n"
	        "From: inner@x.test\nSubject: inner\n\ninner body\n"
	        "--o--\n";
	struct buf b = {0};
	struct scan_task t;
	struct scan_input in;
	const struct scan_part *p;

	(void)state;
	buf_crlf(&b, head);
	buf_crlf(&b, body);
	run(&t, &in, b.p, b.n);
	assert_int_equal(t.msg.nparts, 5);
	p = t.msg.parts;
	assert_string_equal(p[0].ctype, "multipart/mixed");
	assert_int_equal(p[0].depth, 0);
	assert_int_equal(p[1].depth, 1);
	assert_true(p[1].text);
	assert_false(p[1].html);
	assert_non_null(p[1].text_utf8);
	assert_string_equal(p[1].text_utf8, "café");
	assert_int_equal(p[1].len, 4);
	assert_memory_equal(p[1].data, "caf\xe9", 4);
	assert_true(p[2].html);
	assert_int_equal(p[2].len, 9);
	assert_memory_equal(p[2].data, "<p>hi</p>", 9);
	assert_true(p[3].is_message);
	assert_string_equal(p[3].ctype, "message/rfc822");
	assert_int_equal(p[3].depth, 1);
	assert_int_equal(p[4].depth, 2);
	assert_string_equal(p[4].ctype, "");
	assert_true(p[4].text);
	assert_string_equal(p[4].text_utf8, "inner body");
	/* libmagic runs on attachments and non-text parts only (its cost) */
	assert_string_equal(p[1].magic_type, "");
	assert_int_equal(t.nsyms, 0);
	done(&t);
	free(b.p);
}

/* --- 3. attachments: builders --- */

static void
make_pe(struct buf *b)
{
	unsigned char pe[1024] = {0};

	pe[0] = 'M';
	pe[1] = 'Z';
	pe[0x3c] = 0x80;
	memcpy(pe + 0x80, "PE\0\0", 4);
	pe[0x84] = 0x4c; /* i386 */
	pe[0x85] = 0x01;
	pe[0x86] = 1;    /* one section */
	pe[0x94] = 0xe0; /* optional header size */
	pe[0x96] = 0x02; /* executable image */
	pe[0x98] = 0x0b; /* PE32 */
	pe[0x99] = 0x01;
	buf_add(b, pe, sizeof(pe));
}

static void
make_pdf(struct buf *b)
{
	buf_str(b, "%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
	           "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
	           "trailer\n<< /Root 1 0 R >>\n%%EOF\n");
}

static void
make_text(struct buf *b)
{
	buf_str(b, "Meeting notes.\nNothing to see here.\n");
}

/* A minimal OLE2 file: header, one FAT sector, one directory sector. */
static void
make_ole(struct buf *b, bool macros)
{
	unsigned char f[1536];
	static const char *const names[] = {"Root Entry", "WordDocument", "Macros"};
	static const unsigned char types[] = {5, 2, 1};

	memset(f, 0, sizeof(f));
	memcpy(f, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8);
	f[0x18] = 0x3e;
	f[0x1a] = 3;
	f[0x1c] = 0xfe;
	f[0x1d] = 0xff;
	f[0x1e] = 9; /* 512-octet sectors */
	f[0x20] = 6;
	f[0x2c] = 1;    /* one FAT sector */
	f[0x30] = 1;    /* directory at sector 1 */
	f[0x39] = 0x10; /* mini stream cutoff 4096 */
	memset(f + 0x3c, 0xff, 4);
	f[0x3c] = 0xfe;
	memset(f + 0x44, 0xff, 4);
	f[0x44] = 0xfe;
	memset(f + 0x4c, 0xff, 109 * 4);
	memset(f + 0x4c, 0, 4); /* FAT sector 0 */
	memset(f + 512, 0xff, 512);
	memcpy(f + 512, "\xfd\xff\xff\xff\xfe\xff\xff\xff", 8);
	for (size_t i = 0; i < (macros ? 3u : 2u); i++) {
		unsigned char *e = f + 1024 + i * 128;
		size_t n = strlen(names[i]);

		for (size_t k = 0; k < n; k++)
			e[2 * k] = (unsigned char)names[i][k];
		e[0x40] = (unsigned char)(2 * (n + 1));
		e[0x42] = types[i];
		memset(e + 0x44, 0xff, 12); /* no siblings, no child */
		memset(e + 0x74, 0xfe, 1);
		memset(e + 0x75, 0xff, 3);
	}
	buf_add(b, f, sizeof(f));
}

struct entry {
	const char *name;
	const struct buf *data; /* or NULL: text */
	size_t zeros;           /* or this many zero octets */
};

static la_ssize_t
arch_write_cb(struct archive *a, void *ctx, const void *d, size_t n)
{
	(void)a;
	buf_add(ctx, d, n);
	return (la_ssize_t)n;
}

/* An archive of entries in format (ARCHIVE_FORMAT_*), filter, optionally encrypted. */
static void
make_archive(struct buf *out, int format, int filter, const struct entry *e, size_t n,
             const char *passphrase)
{
	struct archive *a = archive_write_new();
	static const char text[] = "hello\n";

	assert_int_equal(archive_write_set_format(a, format), ARCHIVE_OK);
	if (filter != ARCHIVE_FILTER_NONE)
		assert_int_equal(archive_write_add_filter(a, filter), ARCHIVE_OK);
	if (passphrase != NULL) {
		assert_int_equal(archive_write_set_options(a, "zip:encryption=zipcrypt"),
		                 ARCHIVE_OK);
		assert_int_equal(archive_write_set_passphrase(a, passphrase), ARCHIVE_OK);
	}
	archive_write_set_bytes_in_last_block(a, 1);
	assert_int_equal(archive_write_open(a, out, NULL, arch_write_cb, NULL), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		size_t len = e[i].data ? e[i].data->n : e[i].zeros ? e[i].zeros : sizeof(text) - 1;

		archive_entry_set_pathname(ae, e[i].name);
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_perm(ae, 0644);
		archive_entry_set_size(ae, (la_int64_t)len);
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (e[i].data)
			archive_write_data(a, e[i].data->p, e[i].data->n);
		else if (e[i].zeros) {
			static const unsigned char zero[65536];

			for (size_t w = 0; w < e[i].zeros; w += sizeof(zero))
				archive_write_data(a, zero,
				                   e[i].zeros - w < sizeof(zero) ? e[i].zeros - w
				                                                 : sizeof(zero));
		} else
			archive_write_data(a, text, sizeof(text) - 1);
		archive_entry_free(ae);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static void
make_zip(struct buf *out, const struct entry *e, size_t n)
{
	make_archive(out, ARCHIVE_FORMAT_ZIP, ARCHIVE_FILTER_NONE, e, n, NULL);
}

static void
make_zip_exe(struct buf *b)
{
	const struct entry e[] = {{"readme.txt", NULL, 0}, {"setup.exe", NULL, 0}};

	make_zip(b, e, nitems(e));
}

static void
make_zip_clean(struct buf *b)
{
	struct buf pdf = {0};
	const struct entry e[] = {{"readme.txt", NULL, 0}, {"docs/report.pdf", &pdf, 0}};

	make_pdf(&pdf);
	make_zip(b, e, nitems(e));
	free(pdf.p);
}

static void
make_zip_encrypted(struct buf *b)
{
	const struct entry e[] = {{"invoice.txt", NULL, 0}};

	make_archive(b, ARCHIVE_FORMAT_ZIP, ARCHIVE_FILTER_NONE, e, 1, "secret");
}

static void
make_zip_bomb(struct buf *b)
{
	const struct entry e[] = {{"zeros.bin", NULL, 20u << 20}};

	make_zip(b, e, 1);
}

static void
make_zip_many(struct buf *b)
{
	struct entry e[30];
	char names[30][16];

	for (size_t i = 0; i < nitems(e); i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu.txt", i);
		e[i] = (struct entry){names[i], NULL, 0};
	}
	make_zip(b, e, nitems(e));
}

/* levels zips inside each other around a text file. */
static void
make_zip_nested(struct buf *b, unsigned levels)
{
	struct buf cur = {0};

	make_text(&cur);
	for (unsigned l = 0; l < levels; l++) {
		struct buf next = {0};
		struct entry e = {l == 0 ? "notes.txt" : "inner.zip", &cur, 0};

		make_zip(&next, &e, 1);
		free(cur.p);
		cur = next;
	}
	*b = cur;
}

static void
make_zip_nested3(struct buf *b)
{
	make_zip_nested(b, 3);
}

static void
make_zip_nested5(struct buf *b)
{
	make_zip_nested(b, 5);
}

static void
make_zip_pe_inside_txt(struct buf *b)
{
	struct buf pe = {0};
	const struct entry e[] = {{"notes.txt", &pe, 0}};

	make_pe(&pe);
	make_zip(b, e, 1);
	free(pe.p);
}

static void
make_docm(struct buf *b)
{
	const struct entry e[] = {
	        {"[Content_Types].xml", NULL, 0},
	        {"word/document.xml", NULL, 0},
	        {"word/vbaProject.bin", NULL, 0},
	};

	make_zip(b, e, nitems(e));
}

static void
make_ole_macros(struct buf *b)
{
	make_ole(b, true);
}

static void
make_ole_clean(struct buf *b)
{
	make_ole(b, false);
}

static void
make_tgz_exe(struct buf *b)
{
	const struct entry e[] = {{"dir/run.bat", NULL, 0}};

	make_archive(b, ARCHIVE_FORMAT_TAR_USTAR, ARCHIVE_FILTER_GZIP, e, 1, NULL);
}

static void
make_7z_exe(struct buf *b)
{
	const struct entry e[] = {{"payload.scr", NULL, 0}};

	make_archive(b, ARCHIVE_FORMAT_7ZIP, ARCHIVE_FILTER_NONE, e, 1, NULL);
}

static void
make_gz_pe(struct buf *b)
{
	struct buf pe = {0};
	const struct entry e[] = {{"data", &pe, 0}};

	make_pe(&pe);
	make_archive(b, ARCHIVE_FORMAT_RAW, ARCHIVE_FILTER_GZIP, e, 1, NULL);
	free(pe.p);
}

static void
make_zip_broken(struct buf *b)
{
	buf_add(b, "PK\x03\x04\x14\x00\x00\x00\x08\x00garbage that is not deflate", 38);
}

struct att_case {
	const char *name;
	const char *filename; /* as it goes into filename="..." */
	const char *ctype;
	void (*make)(struct buf *);
	const char *want;
	const char *absent; /* or "ALL" */
};

static const struct att_case att_cases[] = {
        /* clean */
        {"clean PDF", "report.pdf", "application/pdf", make_pdf, "", "ALL"},
        {"clean PDF as octet-stream", "report.pdf", "application/octet-stream", make_pdf, "",
         "ALL"},
        {"clean text", "notes.txt", "text/plain", make_text, "", "ALL"},
        {"clean zip", "docs.zip", "application/zip", make_zip_clean, "", "ALL"},
        {"clean OLE2 document", "letter.doc", "application/msword", make_ole_clean, "", "ALL"},
        {"zip nested within the limit", "n.zip", "application/zip", make_zip_nested3, "", "ALL"},
        /* names */
        {"blocked extension", "invoice.exe", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT", "ATTACH_DOUBLE_EXT"},
        {"blocked extension, upper case", "INVOICE.JS", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT", NULL},
        {"double extension", "invoice.pdf.exe", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT ATTACH_DOUBLE_EXT", NULL},
        {"double extension with a space", "invoice.docx .exe", "application/octet-stream",
         make_text, "ATTACH_BLOCKED_EXT ATTACH_DOUBLE_EXT", NULL},
        {"double extension with many spaces", "invoice.pdf                              .scr",
         "application/octet-stream", make_text, "ATTACH_BLOCKED_EXT ATTACH_DOUBLE_EXT", NULL},
        {"trailing dot", "invoice.exe.", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT", NULL},
        {"trailing spaces and dots", "invoice.vbs . . ", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT", NULL},
        {"Windows path", "C:\\Temp\\run.bat", "application/octet-stream", make_text,
         "ATTACH_BLOCKED_EXT", NULL},
        {"harmless double extension", "archive.tar.gz.txt", "text/plain", make_text, "", "ALL"},
        {"right-to-left override", "invoice\xe2\x80\xaetxt.exe", "application/octet-stream",
         make_text, "ATTACH_RTLO ATTACH_BLOCKED_EXT", NULL},
        {"left-to-right override",
         "a\xe2\x80\xad"
         "b.txt",
         "text/plain", make_text, "ATTACH_RTLO", NULL},
        {"bidi isolate", "report\xe2\x81\xa6.txt", "text/plain", make_text, "ATTACH_RTLO", NULL},
        {"override hiding the real end", "photo\xe2\x80\xaegnp.js", "image/png", make_text,
         "ATTACH_RTLO ATTACH_BLOCKED_EXT", NULL},
        /* content */
        {"PE named .pdf", "invoice.pdf", "application/pdf", make_pe,
         "ATTACH_EXECUTABLE ATTACH_TYPE_MISMATCH", NULL},
        {"PE named .txt as octet-stream", "notes.txt", "application/octet-stream", make_pe,
         "ATTACH_EXECUTABLE ATTACH_TYPE_MISMATCH", NULL},
        {"text named .pdf", "invoice.pdf", "application/pdf", make_text, "ATTACH_TYPE_MISMATCH",
         "ATTACH_EXECUTABLE"},
        {"PDF declared as image", "scan.jpg", "image/jpeg", make_pdf, "ATTACH_TYPE_MISMATCH", NULL},
        /* archives */
        {"zip with an .exe inside", "files.zip", "application/zip", make_zip_exe,
         "ARCHIVE_BLOCKED_EXT", "ATTACH_BLOCKED_EXT ARCHIVE_UNREADABLE"},
        {"zip holding a PE named .txt", "files.zip", "application/zip", make_zip_pe_inside_txt,
         "ATTACH_EXECUTABLE", "ARCHIVE_BLOCKED_EXT"},
        {"tar.gz with a .bat inside", "files.tar.gz", "application/gzip", make_tgz_exe,
         "ARCHIVE_BLOCKED_EXT", "ARCHIVE_UNREADABLE"},
        {"7z with a .scr inside", "files.7z", "application/x-7z-compressed", make_7z_exe,
         "ARCHIVE_BLOCKED_EXT", "ARCHIVE_UNREADABLE"},
        {"gzip of a PE", "data.gz", "application/gzip", make_gz_pe, "ATTACH_EXECUTABLE",
         "ARCHIVE_UNREADABLE"},
        {"encrypted zip", "secret.zip", "application/zip", make_zip_encrypted, "ARCHIVE_ENCRYPTED",
         NULL},
        {"zip bomb", "zeros.zip", "application/zip", make_zip_bomb, "ARCHIVE_BOMB", NULL},
        {"zips nested beyond the limit", "n.zip", "application/zip", make_zip_nested5,
         "ARCHIVE_NESTING", NULL},
        {"broken zip", "broken.zip", "application/zip", make_zip_broken, "ARCHIVE_UNREADABLE",
         NULL},
        {"docm with vbaProject.bin", "report.docx",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document", make_docm,
         "OFFICE_MACRO", NULL},
        {"macro-enabled name", "report.xlsm", "application/octet-stream", make_text, "OFFICE_MACRO",
         NULL},
        {"OLE2 with a Macros storage", "letter.doc", "application/msword", make_ole_macros,
         "OFFICE_MACRO", "ATTACH_TYPE_MISMATCH"},
};

static void
attach_msg(struct buf *b, const struct att_case *c)
{
	struct buf data = {0};

	c->make(&data);
	buf_crlf(b, head);
	buf_crlf(b, "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
	            "Content-Type: text/plain\n\nsee attached\n--b\n");
	buf_str(b, "Content-Type: ");
	buf_str(b, c->ctype);
	buf_str(b, "\r\nContent-Disposition: attachment; filename=\"");
	buf_str(b, c->filename);
	buf_str(b, "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	buf_base64(b, data.p, data.n);
	buf_str(b, "--b--\r\n");
	free(data.p);
}

static void
test_attachments(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(att_cases); i++) {
		const struct att_case *c = &att_cases[i];
		struct buf b = {0};
		struct scan_task t;
		struct scan_input in;

		attach_msg(&b, c);
		run(&t, &in, b.p, b.n);
		if (getenv("TEST_MIME_VERBOSE") != NULL)
			print_message("%s: [%s] magic %s\n", c->name, syms_str(&t),
			              t.msg.nparts > 2 ? t.msg.parts[2].magic_type : "?");
		check_syms(c->name, &t, c->want, c->absent);
		done(&t);
		free(b.p);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_archive_too_many_files(void **state)
{
	const struct att_case c = {"30 files",    "many.zip", "application/zip",
	                           make_zip_many, NULL,       NULL};
	unsigned saved = cfg->scan_archive_max_files;
	struct buf b = {0};
	struct scan_task t;
	struct scan_input in;

	(void)state;
	attach_msg(&b, &c);
	cfg->scan_archive_max_files = 10;
	run(&t, &in, b.p, b.n);
	cfg->scan_archive_max_files = saved;
	assert_true(scan_has(&t, SYM_ARCHIVE_TOO_MANY_FILES));
	done(&t);
	run(&t, &in, b.p, b.n);
	assert_false(scan_has(&t, SYM_ARCHIVE_TOO_MANY_FILES));
	done(&t);
	free(b.p);
}

/* The decoded attachment and libmagic's view of it. */
static void
test_attachment_model(void **state)
{
	const struct att_case c = {"pdf", "report.pdf", "application/pdf", make_pdf, NULL, NULL};
	struct buf b = {0}, pdf = {0};
	struct scan_task t;
	struct scan_input in;

	(void)state;
	attach_msg(&b, &c);
	make_pdf(&pdf);
	run(&t, &in, b.p, b.n);
	assert_int_equal(t.msg.nparts, 3);
	assert_true(t.msg.parts[2].attachment);
	assert_false(t.msg.parts[2].text);
	assert_string_equal(t.msg.parts[2].ctype, "application/pdf");
	assert_string_equal(t.msg.parts[2].magic_type, "application/pdf");
	assert_int_equal(t.msg.parts[2].len, pdf.n);
	assert_memory_equal(t.msg.parts[2].data, pdf.p, pdf.n);
	assert_null(t.msg.parts[2].text_utf8);
	done(&t);
	free(b.p);
	free(pdf.p);
}

static int
setup(void **state)
{
	(void)state;
	g_mime_init();
	cfg = config_defaults();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	config_unref(cfg);
	g_mime_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_msg_table),
	        cmocka_unit_test(test_nesting),
	        cmocka_unit_test(test_too_many_parts),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_from),
	        cmocka_unit_test(test_parts),
	        cmocka_unit_test(test_attachments),
	        cmocka_unit_test(test_archive_too_many_files),
	        cmocka_unit_test(test_attachment_model),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
