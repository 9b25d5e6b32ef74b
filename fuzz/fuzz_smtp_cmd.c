/*
 * fuzz_smtp_cmd.c - libFuzzer target for the SMTP command line parser,
 * ESMTP parameters (RFC 5321 4.1, RFC 1870, RFC 3461, RFC 6531), BDAT and
 * HELO arguments and xtext. The first octet picks the offered extensions,
 * the rest is one command line without its CRLF.
 *
 * Invariants: every pointer handed back lies inside the line, every copy
 * is within its bound, and what parsed re-checks as valid.
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

/* p[0..n) lies within s[0..len). */
static int
inside(const char *s, size_t len, const char *p, size_t n)
{
	return p >= s && n <= len && (size_t)(p - s) <= len - n;
}

static void
check_params(const char *s, size_t len, unsigned ext, int mail)
{
	const char *bad = NULL;
	size_t bad_len = 0, n;
	enum smtp_param_status st;
	char dec[SMTP_ORCPT_MAX + 1];

	if (mail) {
		struct smtp_mail_params mp;

		st = smtp_mail_params_parse(s, len, ext, &mp, &bad, &bad_len);
		if (st == SMTP_PARAM_OK) {
			if (mp.has_envid) {
				CHECK(ext & SMTP_EXT_DSN);
				CHECK(strlen(mp.envid) <= SMTP_ENVID_MAX * 3);
				CHECK(smtp_xtext_decode(mp.envid, strlen(mp.envid), dec,
				                        SMTP_ENVID_MAX + 1, &n) == 0);
			}
			if (mp.has_size)
				CHECK(ext & SMTP_EXT_SIZE);
			if (mp.smtputf8)
				CHECK(ext & SMTP_EXT_SMTPUTF8);
			if (mp.body == SMTP_BODY_BINARYMIME)
				CHECK(ext & SMTP_EXT_BINARYMIME);
			if (mp.ret != SMTP_RET_UNSPEC)
				CHECK(ext & SMTP_EXT_DSN);
		}
	} else {
		struct smtp_rcpt_params rp;

		st = smtp_rcpt_params_parse(s, len, ext, &rp, &bad, &bad_len);
		if (st == SMTP_PARAM_OK) {
			CHECK(rp.notify == 0 || rp.notify == SMTP_NOTIFY_NEVER ||
			      (rp.notify & SMTP_NOTIFY_NEVER) == 0);
			if (rp.notify || rp.has_orcpt)
				CHECK(ext & SMTP_EXT_DSN);
			if (rp.has_orcpt)
				CHECK(strlen(rp.orcpt) <= SMTP_ORCPT_MAX && strchr(rp.orcpt, ';'));
		}
	}
	if (st != SMTP_PARAM_OK)
		CHECK(bad != NULL && inside(s, len, bad, bad_len));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd cmd;
	enum smtp_parse_status st;
	const char *line;
	size_t len, n;
	unsigned ext;
	uint64_t bsize;
	bool last;
	char helo[SMTP_HELO_MAX + 1], dec[64];

	if (size < 1)
		return 0;
	ext = data[0] & 0x3f;
	line = (const char *)data + 1;
	len = size - 1;

	st = smtp_cmd_parse(line, len, &cmd);
	CHECK(st >= SMTP_PARSE_OK && st <= SMTP_PARSE_SYNTAX);
	if (st == SMTP_PARSE_OK) {
		CHECK(cmd.verb < SMTP_VERB_COUNT);
		CHECK(cmd.verb_text == line && cmd.verb_len <= len);
		CHECK(inside(line, len, cmd.arg, cmd.arg_len));
		CHECK(memchr(line, '\0', len) == NULL && memchr(line, '\r', len) == NULL &&
		      memchr(line, '\n', len) == NULL);
		if (cmd.verb == SMTP_VERB_MAIL || cmd.verb == SMTP_VERB_RCPT) {
			struct mailaddr a;
			size_t used = 0;
			unsigned flags = (ext & SMTP_EXT_SMTPUTF8) ? MAILADDR_F_SMTPUTF8 : 0;

			if (cmd.verb == SMTP_VERB_MAIL)
				flags |= MAILADDR_F_NULL_OK;
			if (mailaddr_parse(cmd.arg, cmd.arg_len, flags, &a, &used) == MAILADDR_OK) {
				CHECK(used <= cmd.arg_len);
				check_params(cmd.arg + used, cmd.arg_len - used, ext,
				             cmd.verb == SMTP_VERB_MAIL);
			}
		}
	}
	/* the other parsers see the same octets as an argument */
	check_params(line, len, ext, 1);
	check_params(line, len, ext, 0);
	if (smtp_bdat_parse(line, len, &bsize, &last) == 0) {
		char num[32];

		n = (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)bsize);
		CHECK(len >= n && line[0] >= '0' && line[0] <= '9');
		CHECK(last == (len >= 5 && line[len - 5] == ' '));
	}
	if (smtp_helo_parse(line, len, helo, sizeof(helo)) == 0) {
		n = strlen(helo);
		CHECK(n >= 1 && n <= SMTP_HELO_MAX && n <= len && memcmp(helo, line, n) == 0);
		CHECK(n == len || line[n] == ' ');
	}
	if (smtp_xtext_decode(line, len, dec, sizeof(dec), &n) == 0)
		CHECK(n < sizeof(dec) && n <= len && dec[n] == '\0');
	return 0;
}
