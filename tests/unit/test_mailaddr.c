/*
 * test_mailaddr.c - table-driven tests of the envelope address parser
 * (RFC 5321 4.1.2, 4.5.3.1; RFC 6531), relay tricks first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/mailaddr.h"

#include "table.h"

static const char *
status_name(enum mailaddr_status st)
{
	static const char *const names[] = {
	        "OK",    "ESYNTAX", "ELOCAL_TOO_LONG", "EDOMAIN_TOO_LONG", "EPATH_TOO_LONG",
	        "E8BIT", "ENUL",    "EROUTING",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

#define NUL_OK   MAILADDR_F_NULL_OK
#define UTF8     MAILADDR_F_SMTPUTF8
#define NOANGLES MAILADDR_F_NO_ANGLES

struct addr_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	unsigned flags;
	enum mailaddr_status want;
	const char *local; /* checked when want is OK */
	const char *domain;
	size_t consumed; /* 0: the whole input */
	bool is_null, literal, utf8;
};

/* Rows: a failure, a failure of an input holding NUL, a plain success. */
/* clang-format off */
#define BAD(in, flags, st)       {in, 0, flags, st, NULL, NULL, 0, false, false, false}
#define BADN(in, len, flags, st) {in, len, flags, st, NULL, NULL, 0, false, false, false}
#define GOOD(in, flags, local, domain) \
	{in, 0, flags, MAILADDR_OK, local, domain, 0, false, false, false}
/* clang-format on */

static const struct addr_case addr_cases[] = {
        /* plain addresses */
        GOOD("<user@example.com>", 0, "user", "example.com"),
        GOOD("<User.Name+tag@Example.COM>", 0, "User.Name+tag", "example.com"),
        GOOD("<a-b_c=d?e^f{g}|~`'*/#$&@x-y.example>", 0, "a-b_c=d?e^f{g}|~`'*/#$&", "x-y.example"),
        GOOD("<1@2.3a>", 0, "1", "2.3a"),
        GOOD("<u@3com.example>", 0, "u", "3com.example"),
        BAD("<u@192.0.2.1>", 0, MAILADDR_ESYNTAX),
        BAD("<u@example.123>", 0, MAILADDR_ESYNTAX),
        BAD("<u@123>", 0, MAILADDR_ESYNTAX),
        BAD("<@192.0.2.1:u@example.com>", 0, MAILADDR_ESYNTAX),
        GOOD("<postmaster@localhost>", 0, "postmaster", "localhost"),
        {"<u@d.test> SIZE=10", 0, 0, MAILADDR_OK, "u", "d.test", 10, false, false, false},
        {"<u@d.test>>", 0, 0, MAILADDR_OK, "u", "d.test", 10, false, false, false},
        GOOD("user@example.com", NOANGLES, "user", "example.com"),
        BAD("<user@example.com>", NOANGLES, MAILADDR_ESYNTAX),
        BAD("user@example.com", 0, MAILADDR_ESYNTAX),
        BAD("<user@example.com", 0, MAILADDR_ESYNTAX),
        BAD("", 0, MAILADDR_ESYNTAX),
        BAD("", NOANGLES, MAILADDR_ESYNTAX),
        BAD("<", 0, MAILADDR_ESYNTAX),

        /* the null path */
        {"<>", 0, NUL_OK, MAILADDR_OK, "", "", 2, true, false, false},
        {"<> BODY=8BITMIME", 0, NUL_OK, MAILADDR_OK, "", "", 2, true, false, false},
        BAD("<>", 0, MAILADDR_ESYNTAX),
        BAD("<@a.test:>", NUL_OK, MAILADDR_ESYNTAX),

        /* source routes: parsed, validated and dropped */
        GOOD("<@relay.test:user@example.com>", 0, "user", "example.com"),
        GOOD("<@other.test:user@protected.test>", 0, "user", "protected.test"),
        GOOD("<@a.test,@B.test:user@example.com>", 0, "user", "example.com"),
        BAD("<@a.test:user@example.com>", NOANGLES, MAILADDR_ESYNTAX),
        BAD("<@a.test,user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@a.test,b.test:user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@a.test:@b.test:user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@[192.0.2.1]:user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@a.test.:user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@:user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<@example.com>", 0, MAILADDR_ESYNTAX),

        /* relay tricks in the local part */
        BAD("<user%other.test@example.com>", 0, MAILADDR_EROUTING),
        BAD("<user%other.test@example.com>", NOANGLES, MAILADDR_ESYNTAX),
        BAD("user%other.test@example.com", NOANGLES, MAILADDR_EROUTING),
        BAD("<other.test!user@example.com>", 0, MAILADDR_EROUTING),
        BAD("<a!b!user@example.com>", 0, MAILADDR_EROUTING),
        BAD("<\"user@other.test\"@example.com>", 0, MAILADDR_EROUTING),
        BAD("<\"user%other.test\"@example.com>", 0, MAILADDR_EROUTING),
        BAD("<\"other.test!user\"@example.com>", 0, MAILADDR_EROUTING),
        BAD("<\"user\\@other.test\"@example.com>", 0, MAILADDR_EROUTING),
        BAD("<@relay.test:user%other.test@example.com>", 0, MAILADDR_EROUTING),
        BAD("<user@other.test@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user@other.test%example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user@example.com@>", 0, MAILADDR_ESYNTAX),

        /* quoted local parts */
        GOOD("<\"john\"@example.com>", 0, "john", "example.com"),
        GOOD("<\"john.smith\"@example.com>", 0, "john.smith", "example.com"),
        GOOD("<\"\\j\\o\\h\\n\"@example.com>", 0, "john", "example.com"),
        GOOD("<\"john..smith\"@example.com>", 0, "\"john..smith\"", "example.com"),
        GOOD("<\".john\"@example.com>", 0, "\".john\"", "example.com"),
        GOOD("<\"john.\"@example.com>", 0, "\"john.\"", "example.com"),
        GOOD("<\"a b\"@example.com>", 0, "\"a b\"", "example.com"),
        GOOD("<\"a\\ b\"@example.com>", 0, "\"a b\"", "example.com"),
        GOOD("<\"a\\\"b\"@example.com>", 0, "\"a\\\"b\"", "example.com"),
        GOOD("<\"a\\\\b\"@example.com>", 0, "\"a\\\\b\"", "example.com"),
        GOOD("<\"a,b\"@example.com>", 0, "\"a,b\"", "example.com"),
        GOOD("<\"a>b\"@example.com>", 0, "\"a>b\"", "example.com"),
        GOOD("<\"\"@example.com>", 0, "\"\"", "example.com"),
        BAD("<\"john\"smith@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<john\"smith\"@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<\"john@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<\"john\\\"@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<\"john\\", 0, MAILADDR_ESYNTAX),
        BAD("user@example.com>", NOANGLES, MAILADDR_ESYNTAX),
        BAD("user@example.com x", NOANGLES, MAILADDR_ESYNTAX),

        /* dot-string local parts */
        BAD("<.user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user.@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<us..er@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<.@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<a(b)@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<a[b@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<a\\b@example.com>", 0, MAILADDR_ESYNTAX),

        /* domains */
        BAD("<user@example.com.>", 0, MAILADDR_ESYNTAX),
        BAD("user@example.com.", NOANGLES, MAILADDR_ESYNTAX),
        BAD("<user@.example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user@example..com>", 0, MAILADDR_ESYNTAX),
        BAD("<user@>", 0, MAILADDR_ESYNTAX),
        BAD("<user>", 0, MAILADDR_ESYNTAX),
        BAD("<user@->", 0, MAILADDR_ESYNTAX),
        BAD("<user@-x.test>", 0, MAILADDR_ESYNTAX),
        BAD("<user@x-.test>", 0, MAILADDR_ESYNTAX),
        GOOD("<user@x--y.test>", 0, "user", "x--y.test"),
        BAD("<user@x_y.test>", 0, MAILADDR_ESYNTAX),
        GOOD("<user@EXAMPLE.Com>", 0, "user", "example.com"),

        /* whitespace is never part of a path */
        BAD("<user @example.com>", 0, MAILADDR_ESYNTAX),
        BAD("< user@example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user@example.com >", 0, MAILADDR_ESYNTAX),
        BAD("<user@ example.com>", 0, MAILADDR_ESYNTAX),
        BAD("<user\t@example.com>", 0, MAILADDR_ENUL),

        /* address literals: parsed and flagged */
        {"<user@[192.0.2.1]>", 0, 0, MAILADDR_OK, "user", "[192.0.2.1]", 0, false, true, false},
        {"<user@[0.0.0.0]>", 0, 0, MAILADDR_OK, "user", "[0.0.0.0]", 0, false, true, false},
        {"<user@[255.255.255.255]>", 0, 0, MAILADDR_OK, "user", "[255.255.255.255]", 0, false, true,
         false},
        {"<user@[IPv6:2001:DB8::1]>", 0, 0, MAILADDR_OK, "user", "[ipv6:2001:db8::1]", 0, false,
         true, false},
        {"<user@[ipv6:::1]>", 0, 0, MAILADDR_OK, "user", "[ipv6:::1]", 0, false, true, false},
        {"<user@[IPv6:::]>", 0, 0, MAILADDR_OK, "user", "[ipv6:::]", 0, false, true, false},
        {"<user@[IPv6:1:2:3:4:5:6:7:8]>", 0, 0, MAILADDR_OK, "user", "[ipv6:1:2:3:4:5:6:7:8]", 0,
         false, true, false},
        {"<user@[IPv6:1:2:3:4:5:6:192.0.2.1]>", 0, 0, MAILADDR_OK, "user",
         "[ipv6:1:2:3:4:5:6:192.0.2.1]", 0, false, true, false},
        {"<user@[IPv6:::ffff:192.0.2.1]>", 0, 0, MAILADDR_OK, "user", "[ipv6:::ffff:192.0.2.1]", 0,
         false, true, false},
        {"<user@[IPv6:1:2:3:4:5:6::]>", 0, 0, MAILADDR_OK, "user", "[ipv6:1:2:3:4:5:6::]", 0, false,
         true, false},
        BAD("<user@[x-tag:any.thing]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[x:a@evil.test]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[256.0.0.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[1.2.3]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[1.2.3.4.5]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[1.2.3.]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[010.0.0.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[1234.0.0.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[example.com]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[192.0.2.1>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[192.0.2.1]x>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[192.0.2.1].test>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:2:3:4:5:6:7]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:2:3:4:5:6:7::]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1::2::3]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:12345::]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6::1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:g::1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:192.0.2.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:2:3:4:5:6:7:192.0.2.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:1:2:3:4:5::192.0.2.1]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[tag:]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[tag-:x]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[:x]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[a:b[c]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[a:b\\c]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[1.2.3.4 ]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:::ffff:1.2.3]>", 0, MAILADDR_ESYNTAX),
        BAD("<user@[IPv6:::ffff:1.2.3.4:5]>", 0, MAILADDR_ESYNTAX),

        /* NUL and controls */
        BADN("<us\0er@example.com>", 19, 0, MAILADDR_ENUL),
        BADN("<user@example.com\0>", 19, 0, MAILADDR_ENUL),
        BAD("<user@exa\rmple.com>", 0, MAILADDR_ENUL),
        BAD("<user@example.com\r\n>", 0, MAILADDR_ENUL),
        BAD("<\"a\x01\"@example.com>", 0, MAILADDR_ENUL),
        BAD("<\"a\\\x01\"@example.com>", 0, MAILADDR_ENUL),
        BAD("<us\x7f"
            "er@example.com>",
            0, MAILADDR_ENUL),
        BADN("<a b\0@example.com>", 18, 0, MAILADDR_ENUL),
        BADN("user\0@example.com", 17, NOANGLES, MAILADDR_ENUL),
        {"<u@x.test>\0", 11, 0, MAILADDR_OK, "u", "x.test", 10, false, false, false},
        BADN("<\"a>b\0\"@example.com>", 20, 0, MAILADDR_ENUL),

        /* 8-bit without SMTPUTF8 */
        BAD("<j\xc3\xb6rg@example.com>", 0, MAILADDR_E8BIT),
        BAD("<user@b\xc3\xbc"
            "cher.test>",
            0, MAILADDR_E8BIT),
        BAD("<\"j\xc3\xb6rg\"@example.com>", 0, MAILADDR_E8BIT),
        BAD("<user@[1.2.3.4]\xc3\xb6>", 0, MAILADDR_E8BIT),
        BAD("<j\xff@example.com>", 0, MAILADDR_E8BIT),
        /* 8-bit after a '>' inside the path */
        BAD("<\"a>\xc3\xb6\"@example.com>", 0, MAILADDR_E8BIT),
        BAD("<\"a>b\"@[1.2.3.4\xc3\xb6]>", 0, MAILADDR_E8BIT),

        /* UTF-8 with SMTPUTF8 (RFC 6531) */
        {"<j\xc3\xb6rg@example.com>", 0, UTF8, MAILADDR_OK, "j\xc3\xb6rg", "example.com", 0, false,
         false, true},
        {"<user@B\xc3\x9c"
         "CHER.test>",
         0, UTF8, MAILADDR_OK, "user",
         "b\xc3\x9c"
         "cher.test",
         0, false, false, true},
        {"<\"j\xc3\xb6rg\"@example.com>", 0, UTF8, MAILADDR_OK, "j\xc3\xb6rg", "example.com", 0,
         false, false, true},
        {"<\"j\xc3\xb6 rg\"@example.com>", 0, UTF8, MAILADDR_OK, "\"j\xc3\xb6 rg\"", "example.com",
         0, false, false, true},
        {"<\xe2\x82\xac@\xf0\x9f\x98\x80.test>", 0, UTF8, MAILADDR_OK, "\xe2\x82\xac",
         "\xf0\x9f\x98\x80.test", 0, false, false, true},
        GOOD("<user@example.com>", UTF8, "user", "example.com"),
        BAD("<\xc0\xaf@example.com>", UTF8, MAILADDR_ESYNTAX),         /* overlong '/' */
        BAD("<\xe0\x80\xaf@example.com>", UTF8, MAILADDR_ESYNTAX),     /* overlong, 3 octets */
        BAD("<\xf0\x80\x80\xaf@example.com>", UTF8, MAILADDR_ESYNTAX), /* overlong, 4 octets */
        BAD("<\xed\xa0\x80@example.com>", UTF8, MAILADDR_ESYNTAX),     /* surrogate */
        BAD("<\xf4\x90\x80\x80@example.com>", UTF8, MAILADDR_ESYNTAX), /* above U+10FFFF */
        BAD("<\xf5\x80\x80\x80@example.com>", UTF8, MAILADDR_ESYNTAX),
        BAD("<\xc3@example.com>", UTF8, MAILADDR_ESYNTAX), /* truncated */
        BAD("<\xe2\x82"
            "A@example.com>",
            UTF8, MAILADDR_ESYNTAX), /* bad continuation */
        BAD("<\"\xc0\xaf\"@example.com>", UTF8, MAILADDR_ESYNTAX),
        BAD("<\x80@example.com>", UTF8, MAILADDR_ESYNTAX), /* lone continuation */
        BAD("<\xff@example.com>", UTF8, MAILADDR_ESYNTAX),
        BAD("<user@\xc3.test>", UTF8, MAILADDR_ESYNTAX),
        BAD("<\xc2\x85@example.com>", UTF8, MAILADDR_ENUL), /* C1 control NEL */
        BAD("<\"a\\\xc3\xb6\"@example.com>", UTF8, MAILADDR_ESYNTAX),
        BAD("<user@[1.2.3.4\xc3\xb6]>", UTF8, MAILADDR_ESYNTAX),
        BAD("<j\xc3\xb6rg%x@example.com>", UTF8, MAILADDR_EROUTING),
};

static void
test_addr_table(void **state)
{
	char row[64];

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		size_t len = c->len ? c->len : strlen(c->in), consumed = 12345;
		struct mailaddr a;
		enum mailaddr_status st;

		snprintf(row, sizeof(row), "row %zu", i);
		st = mailaddr_parse(c->in, len, c->flags, &a, &consumed);
		if (st != c->want) {
			table_mismatch(row, "%s flags %u: status got %s, want %s",
			               table_esc(c->in, len), c->flags, status_name(st),
			               status_name(c->want));
			continue;
		}
		if (st != MAILADDR_OK)
			continue;
		if (strcmp(a.local, c->local) != 0)
			table_mismatch(row, "%s: local got '%s', want '%s'", table_esc(c->in, len),
			               table_esc(a.local, strlen(a.local)),
			               table_esc(c->local, strlen(c->local)));
		if (strcmp(a.domain, c->domain) != 0)
			table_mismatch(row, "%s: domain got '%s', want '%s'", table_esc(c->in, len),
			               table_esc(a.domain, strlen(a.domain)),
			               table_esc(c->domain, strlen(c->domain)));
		if (consumed != (c->consumed ? c->consumed : len))
			table_mismatch(row, "%s: consumed got %zu, want %zu", table_esc(c->in, len),
			               consumed, c->consumed ? c->consumed : len);
		if (a.is_null != c->is_null || a.literal != c->literal || a.utf8 != c->utf8)
			table_mismatch(row, "%s: is_null/literal/utf8 got %d/%d/%d, want %d/%d/%d",
			               table_esc(c->in, len), a.is_null, a.literal, a.utf8,
			               c->is_null, c->literal, c->utf8);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* A domain of exactly n octets made of labels of at most 63 octets. */
static void
make_domain(char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (i % 64 == 63) ? '.' : (char)('a' + i % 26);
	if (n > 0 && buf[n - 1] == '.')
		buf[n - 1] = 'z';
	buf[n] = '\0';
}

struct len_case {
	const char *name;
	size_t local_len; /* octets of 'l', or of the quoted form when quoted */
	bool quoted;
	size_t domain_len; /* octets, from make_domain() */
	size_t label_len;  /* when set: a single label of this many octets */
	unsigned flags;
	enum mailaddr_status want;
};

static const struct len_case len_cases[] = {
        {"local 64", 64, false, 10, 0, 0, MAILADDR_OK},
        {"local 65", 65, false, 10, 0, 0, MAILADDR_ELOCAL_TOO_LONG},
        {"local 63", 63, false, 10, 0, 0, MAILADDR_OK},
        {"quoted local 64 on the wire", 64, true, 10, 0, 0, MAILADDR_OK},
        {"quoted local 65 on the wire", 65, true, 10, 0, 0, MAILADDR_ELOCAL_TOO_LONG},
        {"label 63", 1, false, 0, 63, 0, MAILADDR_OK},
        {"label 64", 1, false, 0, 64, 0, MAILADDR_ESYNTAX},
        {"path 256", 1, false, 252, 0, 0, MAILADDR_OK},
        {"path 257", 1, false, 253, 0, 0, MAILADDR_EPATH_TOO_LONG},
        {"path 255", 1, false, 251, 0, 0, MAILADDR_OK},
        {"bare mailbox 254", 1, false, 252, 0, NOANGLES, MAILADDR_OK},
        {"bare mailbox 255", 1, false, 253, 0, NOANGLES, MAILADDR_EPATH_TOO_LONG},
        {"domain 255", 1, false, 255, 0, 0, MAILADDR_EPATH_TOO_LONG},
        {"domain 256", 1, false, 256, 0, 0, MAILADDR_EDOMAIN_TOO_LONG},
        {"domain 256 bare", 1, false, 256, 0, NOANGLES, MAILADDR_EDOMAIN_TOO_LONG},
        {"domain 1000", 1, false, 1000, 0, 0, MAILADDR_EDOMAIN_TOO_LONG},
        {"local 64 + domain 189", 64, false, 189, 0, 0, MAILADDR_OK},
        {"local 64 + domain 190", 64, false, 190, 0, 0, MAILADDR_EPATH_TOO_LONG},
};

static void
test_addr_lengths(void **state)
{
	static char in[2048], domain[1100];
	struct mailaddr lit;

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(len_cases) / sizeof(len_cases[0]); i++) {
		const struct len_case *c = &len_cases[i];
		bool angles = !(c->flags & NOANGLES);
		size_t n = 0, consumed;
		struct mailaddr a;
		enum mailaddr_status st;

		if (c->label_len) {
			memset(domain, 'd', c->label_len);
			memcpy(domain + c->label_len, ".test", 6);
		} else
			make_domain(domain, c->domain_len);
		if (angles)
			in[n++] = '<';
		if (c->quoted) {
			in[n++] = '"';
			memset(in + n, 'q', c->local_len - 2);
			n += c->local_len - 2;
			in[n - 1] = ' '; /* keep it quoted */
			in[n++] = '"';
		} else {
			memset(in + n, 'l', c->local_len);
			n += c->local_len;
		}
		n += (size_t)snprintf(in + n, sizeof(in) - n, "@%s%s", domain, angles ? ">" : "");
		st = mailaddr_parse(in, n, c->flags, &a, &consumed);
		if (st != c->want)
			table_mismatch(c->name, "status got %s, want %s", status_name(st),
			               status_name(c->want));
		else if (st == MAILADDR_OK && (strlen(a.local) > MAILADDR_LOCAL_MAX ||
		                               strcmp(a.domain, domain) != 0 || consumed != n))
			table_mismatch(c->name,
			               "local %zu octets, domain ok %d, consumed %zu of %zu",
			               strlen(a.local), strcmp(a.domain, domain) == 0, consumed, n);
	}
	/* an address literal is bounded like a domain */
	memcpy(in, "<u@[1.2.3.4", 11);
	memset(in + 11, '5', 250);
	memcpy(in + 261, "]>", 2);
	if (mailaddr_parse(in, 263, 0, &lit, NULL) != MAILADDR_EDOMAIN_TOO_LONG)
		table_mismatch("literal of 258 octets", "want EDOMAIN_TOO_LONG");
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Every prefix of a valid path must fail cleanly, never read past len. */
static void
test_addr_prefixes(void **state)
{
	static const char *const paths[] = {
	        "<@a.test,@b.test:\"x y\"@[IPv6:2001:db8::1]>",
	        "<j\xc3\xb6rg@example.com>",
	        "<user@[192.0.2.1]>",
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		size_t len = strlen(paths[i]);

		for (size_t n = 0; n < len; n++) {
			char *copy = malloc(n ? n : 1); /* exact size, for ASan */
			struct mailaddr a;

			assert_non_null(copy);
			memcpy(copy, paths[i], n);
			if (mailaddr_parse(copy, n, UTF8, &a, NULL) == MAILADDR_OK)
				table_mismatch(table_esc(paths[i], len),
				               "prefix %zu parsed, want an error", n);
			free(copy);
		}
		{
			struct mailaddr a;

			if (mailaddr_parse(paths[i], len, UTF8, &a, NULL) != MAILADDR_OK)
				table_mismatch(table_esc(paths[i], len), "whole path: want OK");
		}
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_addr_format(void **state)
{
	static const struct {
		const char *in;
		unsigned flags;
		size_t bufsize;
		const char *want;
	} cases[] = {
	        {"<User@Example.COM>", 0, MAILADDR_FORMAT_MAX, "User@example.com"},
	        {"<\"a b\"@x.test>", 0, MAILADDR_FORMAT_MAX, "\"a b\"@x.test"},
	        {"<>", NUL_OK, MAILADDR_FORMAT_MAX, ""},
	        {"<u@[IPv6:::1]>", 0, MAILADDR_FORMAT_MAX, "u@[ipv6:::1]"},
	        {"<user@example.com>", 0, 5, "user"},
	        {"<user@example.com>", 0, 1, ""},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[MAILADDR_FORMAT_MAX];
		struct mailaddr a;
		const char *got;

		if (mailaddr_parse(cases[i].in, strlen(cases[i].in), cases[i].flags, &a, NULL) !=
		    MAILADDR_OK) {
			table_mismatch(cases[i].in, "did not parse");
			continue;
		}
		got = mailaddr_format(&a, buf, cases[i].bufsize);
		if (got != buf || strcmp(got, cases[i].want) != 0)
			table_mismatch(cases[i].in, "format got '%s', want '%s'", got,
			               cases[i].want);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

static void
test_addr_strerror(void **state)
{
	(void)state;
	for (int st = MAILADDR_OK; st <= MAILADDR_EROUTING; st++) {
		const char *s = mailaddr_strerror((enum mailaddr_status)st);

		(void)state;
		assert_non_null(s);
		assert_true(strlen(s) > 0);
	}
	assert_string_equal(mailaddr_strerror(MAILADDR_ESYNTAX), "syntax error in address");
}

/* A zero-sized buffer is left alone. */
static void
test_addr_format_empty(void **state)
{
	struct mailaddr a;
	char buf[4] = "xyz";

	(void)state;
	assert_int_equal(mailaddr_parse("<u@x.test>", 10, 0, &a, NULL), MAILADDR_OK);
	assert_ptr_equal(mailaddr_format(&a, buf, 0), buf);
	assert_string_equal(buf, "xyz");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_addr_table),    cmocka_unit_test(test_addr_lengths),
	        cmocka_unit_test(test_addr_prefixes), cmocka_unit_test(test_addr_format),
	        cmocka_unit_test(test_addr_strerror), cmocka_unit_test(test_addr_format_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
