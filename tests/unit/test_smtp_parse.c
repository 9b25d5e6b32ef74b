/*
 * test_smtp_parse.c - table-driven tests of the SMTP command parser and
 * ESMTP parameters (RFC 5321 4.1, RFC 1870, RFC 6152, RFC 3030, RFC 6531,
 * RFC 3461).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_parse.h"

#include "table.h"

/* ---- command lines ---- */

struct cmd_case {
	const char *line;
	size_t len; /* 0: strlen(line) */
	enum smtp_parse_status want;
	enum smtp_verb verb;
	const char *arg; /* checked when want is OK or verb is not UNKNOWN */
};

static const struct cmd_case cmd_cases[] = {
        {"HELO mx.example.com", 0, SMTP_PARSE_OK, SMTP_VERB_HELO, "mx.example.com"},
        {"ehlo mx.example.com", 0, SMTP_PARSE_OK, SMTP_VERB_EHLO, "mx.example.com"},
        {"EhLo [192.0.2.1]", 0, SMTP_PARSE_OK, SMTP_VERB_EHLO, "[192.0.2.1]"},
        {"EHLO", 0, SMTP_PARSE_OK, SMTP_VERB_EHLO, ""},
        {"MAIL FROM:<a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, "<a@b.test>"},
        {"mail from:<a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, "<a@b.test>"},
        {"MAIL From:<>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, "<>"},
        {"MAIL FROM: <a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, "<a@b.test>"},
        {"MAIL FROM:  <a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, " <a@b.test>"},
        {"MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL,
         "<a@b.test> SIZE=100 BODY=8BITMIME"},
        {"MAIL FROM:", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL, ""},
        {"MAIL FROM:<j\xc3\xb6rg@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_MAIL,
         "<j\xc3\xb6rg@b.test>"},
        {"MAIL TO:<a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL FROM <a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL FROM", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL ", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL  FROM:<a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"MAIL FROM :<a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, NULL},
        {"RCPT TO:<a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_RCPT, "<a@b.test>"},
        {"rcpt to: <a@b.test> NOTIFY=NEVER", 0, SMTP_PARSE_OK, SMTP_VERB_RCPT,
         "<a@b.test> NOTIFY=NEVER"},
        {"RCPT FROM:<a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_RCPT, NULL},
        {"RCPT TO <a@b.test>", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_RCPT, NULL},
        {"RCPT", 0, SMTP_PARSE_SYNTAX, SMTP_VERB_RCPT, NULL},
        {"DATA", 0, SMTP_PARSE_OK, SMTP_VERB_DATA, ""},
        {"data", 0, SMTP_PARSE_OK, SMTP_VERB_DATA, ""},
        {"DATA extra", 0, SMTP_PARSE_OK, SMTP_VERB_DATA, "extra"},
        {"BDAT 100 LAST", 0, SMTP_PARSE_OK, SMTP_VERB_BDAT, "100 LAST"},
        {"RSET", 0, SMTP_PARSE_OK, SMTP_VERB_RSET, ""},
        {"NOOP", 0, SMTP_PARSE_OK, SMTP_VERB_NOOP, ""},
        {"NOOP anything at all", 0, SMTP_PARSE_OK, SMTP_VERB_NOOP, "anything at all"},
        {"NOOP \xc3\xa9t\xc3\xa9", 0, SMTP_PARSE_OK, SMTP_VERB_NOOP, "\xc3\xa9t\xc3\xa9"},
        {"QUIT", 0, SMTP_PARSE_OK, SMTP_VERB_QUIT, ""},
        {"VRFY user", 0, SMTP_PARSE_OK, SMTP_VERB_VRFY, "user"},
        {"EXPN list", 0, SMTP_PARSE_OK, SMTP_VERB_EXPN, "list"},
        {"HELP", 0, SMTP_PARSE_OK, SMTP_VERB_HELP, ""},
        {"STARTTLS", 0, SMTP_PARSE_OK, SMTP_VERB_STARTTLS, ""},
        {"starttls", 0, SMTP_PARSE_OK, SMTP_VERB_STARTTLS, ""},
        {"AUTH PLAIN AGFAYg==", 0, SMTP_PARSE_OK, SMTP_VERB_AUTH, "PLAIN AGFAYg=="},
        {"GET / HTTP/1.1", 0, SMTP_PARSE_OK, SMTP_VERB_HTTP, "/ HTTP/1.1"},
        {"POST /cgi HTTP/1.0", 0, SMTP_PARSE_OK, SMTP_VERB_HTTP, "/cgi HTTP/1.0"},
        {"CONNECT mx.example.com:25 HTTP/1.1", 0, SMTP_PARSE_OK, SMTP_VERB_HTTP,
         "mx.example.com:25 HTTP/1.1"},
        {"HEAD /", 0, SMTP_PARSE_OK, SMTP_VERB_HTTP, "/"},
        {"put /x", 0, SMTP_PARSE_OK, SMTP_VERB_HTTP, "/x"},
        {"FOO bar", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, "bar"},
        {"DATAX", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
        {"MAILFROM:<a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
        {"HEL", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
        {" MAIL FROM:<a@b.test>", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, "MAIL FROM:<a@b.test>"},
        {"NOOP\tx", 0, SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
        {"", 0, SMTP_PARSE_EMPTY, SMTP_VERB_UNKNOWN, NULL},
        {"MA\0L FROM:<a@b.test>", 20, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"\0", 1, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"DATA\r", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"DA\rTA", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"DATA\n", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"\nDATA", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"NO\x80OP", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"\xc3\x89HLO x", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"NOOP a\0b", 8, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"RCPT TO:<a@b.test>\rDATA", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
        {"RCPT TO:<a@b.test>\nDATA", 0, SMTP_PARSE_BADCHAR, SMTP_VERB_UNKNOWN, NULL},
};

static void
test_cmd_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		size_t len = c->len ? c->len : strlen(c->line);
		const char *row = table_esc(c->line, len);
		struct smtp_cmd cmd;
		enum smtp_parse_status st;

		st = smtp_cmd_parse(c->line, len, &cmd);
		if (st != c->want) {
			table_mismatch(row, "status got %d, want %d", st, c->want);
			continue;
		}
		if (st != SMTP_PARSE_OK && st != SMTP_PARSE_SYNTAX)
			continue;
		if (cmd.verb != c->verb)
			table_mismatch(row, "verb got %d, want %d", cmd.verb, c->verb);
		if (cmd.verb_text != c->line)
			table_mismatch(row, "verb_text does not point at the line");
		if (st != SMTP_PARSE_OK)
			continue;
		if (cmd.arg_len != strlen(c->arg) || memcmp(cmd.arg, c->arg, cmd.arg_len) != 0)
			table_mismatch(row, "arg got '%s', want '%s'",
			               table_esc(cmd.arg, cmd.arg_len),
			               table_esc(c->arg, strlen(c->arg)));
		if (cmd.arg < c->line || cmd.arg + cmd.arg_len > c->line + len)
			table_mismatch(row, "arg points outside the line");
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_cmd_verb_text(void **state)
{
	struct smtp_cmd cmd;

	(void)state;
	assert_int_equal(smtp_cmd_parse("xyzzy plugh", 11, &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(cmd.verb_len, 5);
	assert_memory_equal(cmd.verb_text, "xyzzy", 5);
	assert_int_equal(smtp_cmd_parse("StartTLS", 8, &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.verb_len, 8);
	assert_int_equal(cmd.arg_len, 0);
}

/* ---- MAIL parameters ---- */

#define EXT_ALL                                                                                    \
	(SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN |                    \
	 SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME)

struct mail_case {
	const char *s;
	unsigned ext;
	enum smtp_param_status want;
	const char *bad; /* the keyword named on error */
	/* checked when want is OK */
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	const char *envid; /* NULL: none */
};

/* A row that fails, naming the keyword bad. */
/* clang-format off */
#define BAD(s, ext, st, bad) \
	{s, ext, st, bad, false, 0, SMTP_BODY_UNSPEC, false, SMTP_RET_UNSPEC, NULL}
/* clang-format on */

static const struct mail_case mail_cases[] = {
        {"", 0, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, false, SMTP_RET_UNSPEC, NULL},
        {" ", 0, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, false, SMTP_RET_UNSPEC, NULL},
        {" SIZE=1000", SMTP_EXT_SIZE, SMTP_PARAM_OK, NULL, true, 1000, SMTP_BODY_UNSPEC, false,
         SMTP_RET_UNSPEC, NULL},
        {" size=0", SMTP_EXT_SIZE, SMTP_PARAM_OK, NULL, true, 0, SMTP_BODY_UNSPEC, false,
         SMTP_RET_UNSPEC, NULL},
        {" SIZE=18446744073709551615", SMTP_EXT_SIZE, SMTP_PARAM_OK, NULL, true, UINT64_MAX,
         SMTP_BODY_UNSPEC, false, SMTP_RET_UNSPEC, NULL},
        BAD(" SIZE=18446744073709551616", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=99999999999999999999", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=1000", EXT_ALL & ~SMTP_EXT_SIZE, SMTP_PARAM_UNKNOWN, "SIZE"),
        BAD(" SIZE=", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=-1", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=+1", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=1k", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE==1", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=1=2", SMTP_EXT_SIZE, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=1 SIZE=2", SMTP_EXT_SIZE, SMTP_PARAM_DUPLICATE, "SIZE"),
        BAD(" SIZE=1 size=1", SMTP_EXT_SIZE, SMTP_PARAM_DUPLICATE, "size"),
        {" BODY=8BITMIME", SMTP_EXT_8BITMIME, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_8BITMIME,
         false, SMTP_RET_UNSPEC, NULL},
        {" body=7bit", SMTP_EXT_8BITMIME, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_7BIT, false,
         SMTP_RET_UNSPEC, NULL},
        {" BODY=8bitmime", SMTP_EXT_8BITMIME, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_8BITMIME,
         false, SMTP_RET_UNSPEC, NULL},
        {" BODY=BINARYMIME", SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING, SMTP_PARAM_OK, NULL, false, 0,
         SMTP_BODY_BINARYMIME, false, SMTP_RET_UNSPEC, NULL},
        BAD(" BODY=8BITMIME", 0, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" BODY=7BIT", SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" BODY=BINARYMIME", SMTP_EXT_8BITMIME, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" BODY=BINARYMIME", SMTP_EXT_8BITMIME | SMTP_EXT_CHUNKING, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" BODY=BINARYMIME", SMTP_EXT_BINARYMIME, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" BODY=9BIT", SMTP_EXT_8BITMIME, SMTP_PARAM_SYNTAX, "BODY"),
        BAD(" BODY=8BITMIMEX", SMTP_EXT_8BITMIME, SMTP_PARAM_SYNTAX, "BODY"),
        BAD(" BODY", SMTP_EXT_8BITMIME, SMTP_PARAM_SYNTAX, "BODY"),
        BAD(" BODY=7BIT BODY=7BIT", SMTP_EXT_8BITMIME, SMTP_PARAM_DUPLICATE, "BODY"),
        {" SMTPUTF8", SMTP_EXT_SMTPUTF8, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, true,
         SMTP_RET_UNSPEC, NULL},
        {" smtputf8", SMTP_EXT_SMTPUTF8, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, true,
         SMTP_RET_UNSPEC, NULL},
        BAD(" SMTPUTF8", EXT_ALL & ~SMTP_EXT_SMTPUTF8, SMTP_PARAM_UNKNOWN, "SMTPUTF8"),
        BAD(" SMTPUTF8=yes", SMTP_EXT_SMTPUTF8, SMTP_PARAM_SYNTAX, "SMTPUTF8"),
        BAD(" SMTPUTF8 SMTPUTF8", SMTP_EXT_SMTPUTF8, SMTP_PARAM_DUPLICATE, "SMTPUTF8"),
        {" RET=FULL", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, false,
         SMTP_RET_FULL, NULL},
        {" ret=hdrs", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, false,
         SMTP_RET_HDRS, NULL},
        BAD(" RET=BOTH", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "RET"),
        BAD(" RET", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "RET"),
        BAD(" RET=FULL", EXT_ALL & ~SMTP_EXT_DSN, SMTP_PARAM_UNKNOWN, "RET"),
        {" ENVID=QQ314159", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC, false,
         SMTP_RET_UNSPEC, "QQ314159"},
        {" ENVID=a+2Bb+3Dc+20d", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, false, 0, SMTP_BODY_UNSPEC,
         false, SMTP_RET_UNSPEC, "a+2Bb+3Dc+20d"},
        BAD(" ENVID=QQ314159", EXT_ALL & ~SMTP_EXT_DSN, SMTP_PARAM_UNKNOWN, "ENVID"),
        BAD(" ENVID=a+2bb", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a+2", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a+", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a+0Db", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a+00b", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a+C3b", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        BAD(" ENVID=a\xc3\xa9", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ENVID"),
        {" SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x", EXT_ALL, SMTP_PARAM_OK, NULL, true,
         100, SMTP_BODY_8BITMIME, true, SMTP_RET_HDRS, "x"},
        {" SIZE=100 BODY=8BITMIME ", EXT_ALL, SMTP_PARAM_OK, NULL, true, 100, SMTP_BODY_8BITMIME,
         false, SMTP_RET_UNSPEC, NULL},
        BAD("SIZE=100", EXT_ALL, SMTP_PARAM_SYNTAX, "SIZE=100"),
        BAD(" SIZE=100\tBODY=8BITMIME", EXT_ALL, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=1\x01", EXT_ALL, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" SIZE=\x7f", EXT_ALL, SMTP_PARAM_SYNTAX, "SIZE"),
        BAD(" FOO=bar", EXT_ALL, SMTP_PARAM_UNKNOWN, "FOO"),
        BAD(" X-FOO", EXT_ALL, SMTP_PARAM_UNKNOWN, "X-FOO"),
        BAD(" AUTH=<>", EXT_ALL, SMTP_PARAM_UNKNOWN, "AUTH"),
        BAD(" NOTIFY=NEVER", EXT_ALL, SMTP_PARAM_UNKNOWN, "NOTIFY"),
        BAD(" -FOO", EXT_ALL, SMTP_PARAM_SYNTAX, "-FOO"),
        BAD(" SI_ZE=1", EXT_ALL, SMTP_PARAM_SYNTAX, "SI_ZE"),
        BAD(" =1", EXT_ALL, SMTP_PARAM_SYNTAX, ""),
        BAD(" SIZE=1 =1", EXT_ALL, SMTP_PARAM_SYNTAX, ""),
        BAD(" SIZ\xc3\x89=1", EXT_ALL, SMTP_PARAM_SYNTAX, "SIZ\xc3\x89"),
        BAD(" SIZE=1 FOO BODY=NONSENSE", EXT_ALL, SMTP_PARAM_UNKNOWN, "FOO"),
};

static void
test_mail_params(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		const struct mail_case *c = &mail_cases[i];
		const char *row = table_esc(c->s, strlen(c->s)), *bad = NULL;
		struct smtp_mail_params mp;
		enum smtp_param_status st;
		size_t bad_len = 0;

		st = smtp_mail_params_parse(c->s, strlen(c->s), c->ext, &mp, &bad, &bad_len);
		if (st != c->want) {
			table_mismatch(row, "ext %#x: status got %d, want %d", c->ext, st, c->want);
			continue;
		}
		if (st != SMTP_PARAM_OK) {
			if (bad == NULL || bad_len != strlen(c->bad) ||
			    memcmp(bad, c->bad, bad_len))
				table_mismatch(row, "bad_param got '%s', want '%s'",
				               bad ? table_esc(bad, bad_len) : "(null)", c->bad);
			continue;
		}
		if (mp.has_size != c->has_size || mp.size != c->size)
			table_mismatch(row, "size got %d/%llu, want %d/%llu", mp.has_size,
			               (unsigned long long)mp.size, c->has_size,
			               (unsigned long long)c->size);
		if (mp.body != c->body)
			table_mismatch(row, "body got %d, want %d", mp.body, c->body);
		if (mp.smtputf8 != c->smtputf8)
			table_mismatch(row, "smtputf8 got %d, want %d", mp.smtputf8, c->smtputf8);
		if (mp.ret != c->ret)
			table_mismatch(row, "ret got %d, want %d", mp.ret, c->ret);
		if (mp.has_envid != (c->envid != NULL) ||
		    (c->envid != NULL && strcmp(mp.envid, c->envid) != 0))
			table_mismatch(row, "envid got %d/'%s', want '%s'", mp.has_envid, mp.envid,
			               c->envid ? c->envid : "(none)");
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ENVID: 100 decoded octets pass, 101 fail, however they are encoded. */
static void
test_mail_envid_limit(void **state)
{
	static const struct {
		size_t n;
		bool hex;
		enum smtp_param_status want;
	} cases[] = {
	        {100, false, SMTP_PARAM_OK}, {101, false, SMTP_PARAM_SYNTAX},
	        {100, true, SMTP_PARAM_OK},  {101, true, SMTP_PARAM_SYNTAX},
	        {1, false, SMTP_PARAM_OK},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char s[512], row[64];
		struct smtp_mail_params mp;
		enum smtp_param_status st;
		size_t n = (size_t)snprintf(s, sizeof(s), " ENVID=");

		for (size_t k = 0; k < cases[i].n; k++)
			n += (size_t)snprintf(s + n, sizeof(s) - n, "%s",
			                      cases[i].hex ? "+2B" : "e");
		snprintf(row, sizeof(row), "ENVID of %zu%s", cases[i].n,
		         cases[i].hex ? " hexchars" : " octets");
		st = smtp_mail_params_parse(s, n, SMTP_EXT_DSN, &mp, NULL, NULL);
		if (st != cases[i].want)
			table_mismatch(row, "status got %d, want %d", st, cases[i].want);
		else if (st == SMTP_PARAM_OK && strlen(mp.envid) != n - 7)
			table_mismatch(row, "envid length got %zu, want %zu", strlen(mp.envid),
			               n - 7);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- RCPT parameters ---- */

struct rcpt_case {
	const char *s;
	unsigned ext;
	enum smtp_param_status want;
	const char *bad;
	unsigned notify;
	const char *orcpt; /* NULL: none */
};

#undef BAD
/* clang-format off */
#define BAD(s, ext, st, bad) {s, ext, st, bad, 0, NULL}
/* clang-format on */

static const struct rcpt_case rcpt_cases[] = {
        {"", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, 0, NULL},
        {" NOTIFY=NEVER", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, SMTP_NOTIFY_NEVER, NULL},
        {" notify=never", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, SMTP_NOTIFY_NEVER, NULL},
        {" NOTIFY=SUCCESS", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, SMTP_NOTIFY_SUCCESS, NULL},
        {" NOTIFY=SUCCESS,FAILURE", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL,
         SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, NULL},
        {" NOTIFY=delay,Success,FAILURE", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL,
         SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, NULL},
        BAD(" NOTIFY=NEVER,SUCCESS", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCESS,NEVER", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCESS,SUCCESS", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCESS,FAILURE,success", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCESS,", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=,SUCCESS", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCESS,,DELAY", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=NEVERX", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=SUCCES", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY"),
        BAD(" NOTIFY=NEVER", EXT_ALL & ~SMTP_EXT_DSN, SMTP_PARAM_UNKNOWN, "NOTIFY"),
        BAD(" NOTIFY=NEVER NOTIFY=NEVER", SMTP_EXT_DSN, SMTP_PARAM_DUPLICATE, "NOTIFY"),
        {" ORCPT=rfc822;bob@example.com", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, 0,
         "rfc822;bob@example.com"},
        {" ORCPT=RFC822;a+2Bb@example.com", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, 0,
         "RFC822;a+2Bb@example.com"},
        {" ORCPT=utf-8;j\\x{F6}rg@example.com", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, 0,
         "utf-8;j\\x{F6}rg@example.com"},
        {" ORCPT=UTF-8;bob@example.com", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, 0,
         "UTF-8;bob@example.com"},
        BAD(" ORCPT=x400;bob", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=;bob@example.com", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;a+zzb", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;a+0Ab", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;a+", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;b\xc3\xb6"
            "b",
            SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "ORCPT"),
        BAD(" ORCPT=rfc822;bob@example.com", EXT_ALL & ~SMTP_EXT_DSN, SMTP_PARAM_UNKNOWN, "ORCPT"),
        BAD(" ORCPT=rfc822;a ORCPT=rfc822;b", SMTP_EXT_DSN, SMTP_PARAM_DUPLICATE, "ORCPT"),
        {" NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.com", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL,
         SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, "rfc822;bob@example.com"},
        {" ORCPT=rfc822;x NOTIFY=NEVER ", SMTP_EXT_DSN, SMTP_PARAM_OK, NULL, SMTP_NOTIFY_NEVER,
         "rfc822;x"},
        BAD("NOTIFY=NEVER", SMTP_EXT_DSN, SMTP_PARAM_SYNTAX, "NOTIFY=NEVER"),
        BAD(" SIZE=100", EXT_ALL, SMTP_PARAM_UNKNOWN, "SIZE"),
        BAD(" BODY=8BITMIME", EXT_ALL, SMTP_PARAM_UNKNOWN, "BODY"),
        BAD(" FOO", EXT_ALL, SMTP_PARAM_UNKNOWN, "FOO"),
        BAD(" NOTIFY=NEVER\x01", EXT_ALL, SMTP_PARAM_SYNTAX, "NOTIFY"),
};

static void
test_rcpt_params(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		const char *row = table_esc(c->s, strlen(c->s)), *bad = NULL;
		struct smtp_rcpt_params rp;
		enum smtp_param_status st;
		size_t bad_len = 0;

		st = smtp_rcpt_params_parse(c->s, strlen(c->s), c->ext, &rp, &bad, &bad_len);
		if (st != c->want) {
			table_mismatch(row, "ext %#x: status got %d, want %d", c->ext, st, c->want);
			continue;
		}
		if (st != SMTP_PARAM_OK) {
			if (bad == NULL || bad_len != strlen(c->bad) ||
			    memcmp(bad, c->bad, bad_len))
				table_mismatch(row, "bad_param got '%s', want '%s'",
				               bad ? table_esc(bad, bad_len) : "(null)", c->bad);
			continue;
		}
		if (rp.notify != c->notify)
			table_mismatch(row, "notify got %#x, want %#x", rp.notify, c->notify);
		if (rp.has_orcpt != (c->orcpt != NULL) ||
		    (c->orcpt != NULL && strcmp(rp.orcpt, c->orcpt) != 0))
			table_mismatch(row, "orcpt got %d/'%s', want '%s'", rp.has_orcpt, rp.orcpt,
			               c->orcpt ? c->orcpt : "(none)");
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ORCPT: a value of 500 octets passes, 501 fails. */
static void
test_rcpt_orcpt_limit(void **state)
{
	static const struct {
		size_t total;
		enum smtp_param_status want;
	} cases[] = {
	        {SMTP_ORCPT_MAX - 1, SMTP_PARAM_OK},
	        {SMTP_ORCPT_MAX, SMTP_PARAM_OK},
	        {SMTP_ORCPT_MAX + 1, SMTP_PARAM_SYNTAX},
	        {SMTP_ORCPT_MAX + 100, SMTP_PARAM_SYNTAX},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char s[1024], row[64];
		struct smtp_rcpt_params rp;
		enum smtp_param_status st;
		size_t n = (size_t)snprintf(s, sizeof(s), " ORCPT=rfc822;");

		while (n - 7 < cases[i].total)
			s[n++] = 'o';
		snprintf(row, sizeof(row), "ORCPT value of %zu octets", cases[i].total);
		st = smtp_rcpt_params_parse(s, n, SMTP_EXT_DSN, &rp, NULL, NULL);
		if (st != cases[i].want)
			table_mismatch(row, "status got %d, want %d", st, cases[i].want);
		else if (st == SMTP_PARAM_OK && strlen(rp.orcpt) != cases[i].total)
			table_mismatch(row, "orcpt length got %zu, want %zu", strlen(rp.orcpt),
			               cases[i].total);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* ---- BDAT, HELO, xtext ---- */

static void
test_bdat(void **state)
{
	static const struct {
		const char *s;
		int want;
		uint64_t size;
		bool last;
	} cases[] = {
	        {"10", 0, 10, false},
	        {"10 LAST", 0, 10, true},
	        {"10 last", 0, 10, true},
	        {"0 LaSt", 0, 0, true},
	        {"0", 0, 0, false},
	        {"007", 0, 7, false},
	        {"18446744073709551615", 0, UINT64_MAX, false},
	        {"18446744073709551615 LAST", 0, UINT64_MAX, true},
	        {"18446744073709551616", -1, 0, false},
	        {"99999999999999999999 LAST", -1, 0, false},
	        {"000000000000000000001", -1, 0, false},
	        {"", -1, 0, false},
	        {"LAST", -1, 0, false},
	        {" 10", -1, 0, false},
	        {"10 ", -1, 0, false},
	        {"10  LAST", -1, 0, false},
	        {"10 LAST ", -1, 0, false},
	        {"10 LASTX", -1, 0, false},
	        {"10 LAS", -1, 0, false},
	        {"10 FIRST", -1, 0, false},
	        {"10\tLAST", -1, 0, false},
	        {"10x", -1, 0, false},
	        {"-1", -1, 0, false},
	        {"+1", -1, 0, false},
	        {"1 0", -1, 0, false},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t size = 12345;
		bool last = false;
		int r = smtp_bdat_parse(cases[i].s, strlen(cases[i].s), &size, &last);

		if (r != cases[i].want)
			table_mismatch(cases[i].s, "got %d, want %d", r, cases[i].want);
		else if (r == 0 && (size != cases[i].size || last != cases[i].last))
			table_mismatch(cases[i].s, "got %llu/%d, want %llu/%d",
			               (unsigned long long)size, last,
			               (unsigned long long)cases[i].size, cases[i].last);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_helo(void **state)
{
	static const struct {
		const char *s;
		size_t outsize;
		int want;
		const char *out;
	} cases[] = {
	        {"mx.example.com", 256, 0, "mx.example.com"},
	        {"mx.example.com (the mail server) \xc3\xa9", 256, 0, "mx.example.com"},
	        {"[192.0.2.1]", 256, 0, "[192.0.2.1]"},
	        {"[IPv6:2001:db8::1]", 256, 0, "[IPv6:2001:db8::1]"},
	        {"x", 2, 0, "x"},
	        {"xy", 2, -1, NULL},
	        {"", 256, -1, NULL},
	        {" mx.example.com", 256, -1, NULL},
	        {"mx\texample", 256, -1, NULL},
	        {"mx.ex\x01mple.com", 256, -1, NULL},
	        {"mx.ex\x7fmple.com", 256, -1, NULL},
	        {"h\xc3\xa9.example", 256, -1, NULL},
	};
	char big[300], out[SMTP_HELO_MAX + 1], wide[300];

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		memset(out, 'Z', sizeof(out));
		r = smtp_helo_parse(cases[i].s, strlen(cases[i].s), out, cases[i].outsize);
		if (r != cases[i].want)
			table_mismatch(table_esc(cases[i].s, strlen(cases[i].s)), "got %d, want %d",
			               r, cases[i].want);
		else if (r == 0 && strcmp(out, cases[i].out) != 0)
			table_mismatch(cases[i].s, "out got '%s', want '%s'", out, cases[i].out);
	}
	memset(big, 'h', sizeof(big));
	if (smtp_helo_parse(big, SMTP_HELO_MAX, out, sizeof(out)) != 0 ||
	    strlen(out) != SMTP_HELO_MAX)
		table_mismatch("HELO of 255 octets", "got an error, want it copied");
	if (smtp_helo_parse(big, SMTP_HELO_MAX + 1, wide, sizeof(wide)) != -1)
		table_mismatch("HELO of 256 octets", "got 0, want -1");
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_xtext(void **state)
{
	static const struct {
		const char *s;
		size_t outsize;
		int want;
		const char *out;
		size_t outlen;
	} cases[] = {
	        {"abc", 16, 0, "abc", 3},       {"", 16, 0, "", 0},
	        {"a+2Bb", 16, 0, "a+b", 3},     {"+3D", 16, 0, "=", 1},
	        {"+41+42", 16, 0, "AB", 2},     {"+7E+21", 16, 0, "~!", 2},
	        {"!~", 16, 0, "!~", 2},         {"+00x", 16, 0, "\0x", 2},
	        {"+FF", 16, 0, "\xff", 1},      {"a=b", 16, -1, NULL, 0},
	        {"a b", 16, -1, NULL, 0},       {"a\x7f", 16, -1, NULL, 0},
	        {"a\xc3\xa9", 16, -1, NULL, 0}, {"+2b", 16, -1, NULL, 0},
	        {"+g0", 16, -1, NULL, 0},       {"+2", 16, -1, NULL, 0},
	        {"+", 16, -1, NULL, 0},         {"a++2B", 16, -1, NULL, 0},
	        {"abc", 4, 0, "abc", 3},        {"abc", 3, -1, NULL, 0},
	        {"a+2B", 3, 0, "a+", 2},        {"", 0, -1, NULL, 0},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[16];
		size_t outlen = 999;
		int r;

		r = smtp_xtext_decode(cases[i].s, strlen(cases[i].s), out, cases[i].outsize,
		                      &outlen);
		if (r != cases[i].want)
			table_mismatch(table_esc(cases[i].s, strlen(cases[i].s)), "got %d, want %d",
			               r, cases[i].want);
		else if (r == 0 &&
		         (outlen != cases[i].outlen || memcmp(out, cases[i].out, outlen + 1) != 0))
			table_mismatch(cases[i].s, "out got '%s' (%zu), want '%s' (%zu)",
			               table_esc(out, outlen), outlen,
			               table_esc(cases[i].out, cases[i].outlen), cases[i].outlen);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cmd_table),   cmocka_unit_test(test_cmd_verb_text),
	        cmocka_unit_test(test_mail_params), cmocka_unit_test(test_mail_envid_limit),
	        cmocka_unit_test(test_rcpt_params), cmocka_unit_test(test_rcpt_orcpt_limit),
	        cmocka_unit_test(test_bdat),        cmocka_unit_test(test_helo),
	        cmocka_unit_test(test_xtext),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
