/*
 * fuzz_mailaddr.c - libFuzzer target for the envelope address parser
 * (RFC 5321 4.1.2). The first octet picks the flags, the rest is the path.
 *
 * Invariants: the result stays within its limits, holds no relay trick,
 * no control and (without SMTPUTF8) no 8-bit octet, and its canonical
 * form parses back to itself.
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mailaddr.h"

/* Octets of s that no parsed address may hold. */
static void
check_text(const char *s, unsigned flags)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		CHECK(c >= 0x20 && c != 0x7f);
		CHECK(c < 0x80 || (flags & MAILADDR_F_SMTPUTF8));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailaddr a, b;
	char path[MAILADDR_FORMAT_MAX + 2], fmt[MAILADDR_FORMAT_MAX];
	const char *s;
	size_t len, consumed = 0, consumed2 = 0, n;
	unsigned flags;
	enum mailaddr_status st;

	if (size < 1)
		return 0;
	flags = data[0] & (MAILADDR_F_NULL_OK | MAILADDR_F_SMTPUTF8 | MAILADDR_F_NO_ANGLES);
	s = (const char *)data + 1;
	len = size - 1;

	st = mailaddr_parse(s, len, flags, &a, &consumed);
	CHECK(st >= MAILADDR_OK && st <= MAILADDR_EROUTING);
	CHECK(mailaddr_strerror(st) != NULL);
	if (st != MAILADDR_OK)
		return 0;

	CHECK(consumed <= len);
	if (flags & MAILADDR_F_NO_ANGLES)
		CHECK(consumed == len);
	else
		CHECK(consumed >= 2 && s[0] == '<' && s[consumed - 1] == '>' &&
		      consumed <= MAILADDR_PATH_MAX);
	if (a.is_null) {
		CHECK(flags & MAILADDR_F_NULL_OK);
		CHECK(a.local[0] == '\0' && a.domain[0] == '\0' && consumed == 2);
		return 0;
	}
	CHECK(strlen(a.local) <= MAILADDR_LOCAL_MAX);
	CHECK(strlen(a.domain) >= 1 && strlen(a.domain) <= MAILADDR_DOMAIN_MAX);
	check_text(a.local, flags);
	check_text(a.domain, flags);
	/* relay tricks never survive, even quoted */
	CHECK(strpbrk(a.local, "@%!") == NULL);
	for (const char *p = a.domain; *p; p++)
		CHECK(!(*p >= 'A' && *p <= 'Z'));
	CHECK(a.literal == (a.domain[0] == '['));
	CHECK(strchr(a.domain, '@') == NULL);
	if (!(flags & MAILADDR_F_SMTPUTF8))
		CHECK(!a.utf8);

	/* the canonical form parses back to the same address */
	mailaddr_format(&a, fmt, sizeof(fmt));
	n = (size_t)snprintf(path, sizeof(path), "<%s>", fmt);
	CHECK(n < sizeof(path));
	st = mailaddr_parse(path, n, flags & MAILADDR_F_SMTPUTF8, &b, &consumed2);
	CHECK(st == MAILADDR_OK);
	CHECK(consumed2 == n);
	CHECK(strcmp(a.local, b.local) == 0);
	CHECK(strcmp(a.domain, b.domain) == 0);
	CHECK(a.literal == b.literal && a.utf8 == b.utf8 && !b.is_null);
	return 0;
}
