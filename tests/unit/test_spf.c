/*
 * test_spf.c - table-driven tests of SPF (RFC 7208) against a fake DNS:
 * each mechanism and qualifier, include / redirect semantics, macros,
 * the processing limits, IPv6, syntax errors and DNS failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"
#include "scan/scan_internal.h"

#include "scan_fake_dns.h"
#include "table.h"

/* clang-format off */
#define TXT(n, d)      {'T', n, d, DNS_OK}
#define ADDR(n, d)     {'A', n, d, DNS_OK}
#define MX(n, d)       {'M', n, d, DNS_OK}
#define PTR(n, d)      {'P', n, d, DNS_OK}
#define FAIL(t, n, st) {t, n, NULL, st}
/* clang-format on */

/* clang-format off */
static const struct fake_rr spf_zone[] = {
	TXT("ip4.test", "v=spf1 ip4:192.0.2.0/24 -all"),
	TXT("soft.test", "v=spf1 ~all"),
	TXT("neutral.test", "v=spf1 ?all"),
	TXT("plus.test", "v=spf1 +all"),
	TXT("nomatch.test", "v=spf1 ip4:10.0.0.1"),
	TXT("upper.test", "V=SPF1 IP4:192.0.2.1 -ALL"),
	TXT("zero.test", "v=spf1 ip4:0.0.0.0/0 -all"),
	TXT("other.test", "some other text"),
	TXT("other.test", "v=spf10 +all"),
	TXT("two.test", "v=spf1 +all"),
	TXT("two.test", "v=spf1 -all"),
	TXT("spaces.test", "v=spf1   ip4:192.0.2.1    -all   "),
	/* a */
	TXT("a.test", "v=spf1 a -all"),
	ADDR("a.test", "192.0.2.20"),
	ADDR("a.test", "2001:db8:a::20"),
	TXT("acidr.test", "v=spf1 a:host.acidr.test/28 -all"),
	ADDR("host.acidr.test", "192.0.2.33"),
	TXT("a6.test", "v=spf1 a//64 -all"),
	ADDR("a6.test", "2001:db8:1::1"),
	TXT("amacro.test", "v=spf1 a:%{d} -all"),
	ADDR("amacro.test", "192.0.2.21"),
	/* mx */
	TXT("mx.test", "v=spf1 mx -all"),
	MX("mx.test", "10 mail.mx.test"),
	ADDR("mail.mx.test", "192.0.2.50"),
	TXT("mxcidr.test", "v=spf1 mx/24 -all"),
	MX("mxcidr.test", "10 mail.mxcidr.test"),
	ADDR("mail.mxcidr.test", "198.51.100.200"),
	TXT("mximplicit.test", "v=spf1 mx -all"),
	ADDR("mximplicit.test", "192.0.2.60"),
	TXT("mxmany.test", "v=spf1 mx -all"),
	MX("mxmany.test", "1 m1.test"), MX("mxmany.test", "2 m2.test"),
	MX("mxmany.test", "3 m3.test"), MX("mxmany.test", "4 m4.test"),
	MX("mxmany.test", "5 m5.test"), MX("mxmany.test", "6 m6.test"),
	MX("mxmany.test", "7 m7.test"), MX("mxmany.test", "8 m8.test"),
	MX("mxmany.test", "9 m9.test"), MX("mxmany.test", "10 m10.test"),
	MX("mxmany.test", "11 m11.test"),
	TXT("mxtemp.test", "v=spf1 mx -all"),
	MX("mxtemp.test", "10 mail.mxtemp.test"),
	FAIL('A', "mail.mxtemp.test", DNS_TEMPFAIL),
	/* ptr */
	TXT("ptr.test", "v=spf1 ptr -all"),
	PTR("192.0.2.70", "host.ptr.test"),
	ADDR("host.ptr.test", "192.0.2.70"),
	PTR("192.0.2.71", "host.ptr.test"),
	TXT("ptrother.test", "v=spf1 ptr:elsewhere.test -all"),
	/* ip6 */
	TXT("ip6.test", "v=spf1 ip6:2001:db8::/32 -all"),
	/* include */
	TXT("inc.test", "v=spf1 include:inner.test -all"),
	TXT("inner.test", "v=spf1 ip4:192.0.2.80 -all"),
	TXT("incnone.test", "v=spf1 include:nxdomain.test -all"),
	TXT("inctemp.test", "v=spf1 include:temp.test -all"),
	FAIL('T', "temp.test", DNS_TEMPFAIL),
	TXT("incsoft.test", "v=spf1 include:soft.test ?all"),
	TXT("incperm.test", "v=spf1 include:two.test +all"),
	TXT("incexp.test", "v=spf1 include:withexp.test ~all"),
	TXT("withexp.test", "v=spf1 -all exp=explain.test"),
	/* redirect */
	TXT("redir.test", "v=spf1 redirect=target.test"),
	TXT("target.test", "v=spf1 ip4:192.0.2.90 -all"),
	TXT("redirnone.test", "v=spf1 redirect=nxdomain.test"),
	TXT("redirall.test", "v=spf1 ?all redirect=target.test"),
	/* exists and macros */
	TXT("exists.test", "v=spf1 exists:%{i}.ex.exists.test -all"),
	ADDR("192.0.2.100.ex.exists.test", "127.0.0.2"),
	TXT("macro.test", "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all"),
	ADDR("3.2.0.192.in-addr._spf.macro.test", "127.0.0.2"),
	TXT("local.test", "v=spf1 exists:%{l}.%{o}.users.test -all"),
	ADDR("john.local.test.users.test", "127.0.0.2"),
	TXT("delim.test", "v=spf1 exists:%{lr-}.delim.test -all"),
	ADDR("c.b.a.delim.test", "127.0.0.2"),
	TXT("digits.test", "v=spf1 exists:%{d1r}.%{s1}.d.test -all"),
	ADDR("digits.test.d.test", "127.0.0.2"),
	TXT("sender.test", "v=spf1 exists:%{s}.s.test -all"),
	ADDR("x.y@sender.test.s.test", "127.0.0.2"),
	TXT("six.test", "v=spf1 exists:%{ir}.six.test -all"),
	ADDR("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.six.test",
	     "127.0.0.2"),
	TXT("sixfwd.test", "v=spf1 exists:%{i}.f.test -all"),
	ADDR("2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.f.test",
	     "127.0.0.2"),
	TXT("pmacro.test", "v=spf1 exists:%{p}.pm.test -all"),
	PTR("192.0.2.110", "mail.pname.test"),
	ADDR("mail.pname.test", "192.0.2.110"),
	ADDR("mail.pname.test.pm.test", "127.0.0.2"),
	ADDR("unknown.pm.test", "127.0.0.2"),
	TXT("mta.hmacro.test", "v=spf1 exists:%{l}.%{h}.h.test -all"),
	ADDR("postmaster.mta.hmacro.test.h.test", "127.0.0.2"),
	TXT("helo.test", "v=spf1 ip4:192.0.2.120 -all"),
	TXT("explain.test", "v=spf1 -all exp=exp.%{d}"),
	TXT("exp.explain.test", "%{L} not allowed from %{c} %{r}%_%%%-"),
	/* limits */
	TXT("n.test", "v=spf1 ?all"),
	TXT("ten.test", "v=spf1 include:n.test include:n.test include:n.test include:n.test "
	                "include:n.test include:n.test include:n.test include:n.test "
	                "include:n.test include:n.test -all"),
	TXT("eleven.test", "v=spf1 include:n.test include:n.test include:n.test include:n.test "
	                   "include:n.test include:n.test include:n.test include:n.test "
	                   "include:n.test include:n.test include:n.test -all"),
	TXT("loop.test", "v=spf1 include:loop.test -all"),
	TXT("redirloop.test", "v=spf1 redirect=redirloop.test"),
	TXT("void2.test", "v=spf1 a:x1.void.test a:x2.void.test -all"),
	TXT("void3.test", "v=spf1 a:x1.void.test a:x2.void.test a:x3.void.test -all"),
	/* syntax */
	TXT("bad1.test", "v=spf1 foo -all"),
	TXT("bad2.test", "v=spf1 ip4:192.0.2.300 -all"),
	TXT("bad3.test", "v=spf1 ip4:192.0.2.1/33 -all"),
	TXT("bad4.test", "v=spf1 a:example -all"),
	TXT("bad5.test", "v=spf1 redirect=a.test redirect=b.test"),
	TXT("bad6.test", "v=spf1 exists:%{x}.test -all"),
	TXT("bad7.test", "v=spf1 exists:%{d0}.test -all"),
	TXT("bad8.test", "v=spf1 include -all"),
	TXT("bad9.test", "v=spf1 all:foo"),
	TXT("bad10.test", "v=spf1 ip4:010.0.0.1 -all"),
	TXT("bad11.test", "v=spf1 -all moo=%"),
	TXT("bad12.test", "v=spf1 exists:%{c}.test -all"),
	TXT("bad13.test", "v=spf1 +all bogus"),
	TXT("bad14.test", "v=spf1 ip6:2001:db8::/129 -all"),
	TXT("bad15.test", "v=spf1 a/024 -all"),
	TXT("bad16.test", "v=spf1 ip4:192.0.2.1\t-all"),
	TXT("tab.test", "v=spf1\t-all"),
	TXT("unknownmod.test", "v=spf1 moo=bar.%{d} -all"),
	/* DNS failures */
	FAIL('T', "txttemp.test", DNS_TEMPFAIL),
	FAIL('T', "txtrefused.test", DNS_PERMFAIL),
	TXT("atemp.test", "v=spf1 a:host.atemp.test -all"),
	FAIL('A', "host.atemp.test", DNS_TEMPFAIL),
	{0, NULL, NULL, DNS_OK},
};
/* clang-format on */

struct spf_case {
	const char *ip;
	const char *sender;
	const char *helo;
	enum scan_auth want;
	const char *want_domain;
	const char *want_reason; /* a substring of t->spf.reason, or NULL */
};

#define C(ip, sender, want)                                                                        \
	{                                                                                          \
		ip, sender, "mta.example", want, NULL, NULL                                        \
	}
#define CR(ip, sender, want, rs)                                                                   \
	{                                                                                          \
		ip, sender, "mta.example", want, NULL, rs                                          \
	}

static const struct spf_case spf_cases[] = {
        /* qualifiers and all */
        C("192.0.2.10", "u@ip4.test", SCAN_AUTH_PASS),
        C("192.0.2.255", "u@ip4.test", SCAN_AUTH_PASS),
        C("198.51.100.1", "u@ip4.test", SCAN_AUTH_FAIL),
        C("198.51.100.1", "u@soft.test", SCAN_AUTH_SOFTFAIL),
        C("198.51.100.1", "u@neutral.test", SCAN_AUTH_NEUTRAL),
        C("198.51.100.1", "u@plus.test", SCAN_AUTH_PASS),
        C("198.51.100.1", "u@nomatch.test", SCAN_AUTH_NEUTRAL),
        C("192.0.2.1", "u@upper.test", SCAN_AUTH_PASS),
        C("203.0.113.9", "u@zero.test", SCAN_AUTH_PASS),
        C("192.0.2.1", "u@spaces.test", SCAN_AUTH_PASS),
        C("192.0.2.10", "u@IP4.Test", SCAN_AUTH_PASS),
        /* record selection */
        C("192.0.2.1", "u@other.test", SCAN_AUTH_NONE),
        C("192.0.2.1", "u@nxdomain.test", SCAN_AUTH_NONE),
        C("192.0.2.1", "u@two.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@localhost", SCAN_AUTH_NONE),
        C("192.0.2.1", "u@[192.0.2.1]", SCAN_AUTH_NONE),
        /* a */
        C("192.0.2.20", "u@a.test", SCAN_AUTH_PASS),
        C("192.0.2.21", "u@a.test", SCAN_AUTH_FAIL),
        C("2001:db8:a::20", "u@a.test", SCAN_AUTH_PASS),
        C("192.0.2.40", "u@acidr.test", SCAN_AUTH_PASS),
        C("192.0.2.48", "u@acidr.test", SCAN_AUTH_FAIL),
        C("2001:db8:1::ffff", "u@a6.test", SCAN_AUTH_PASS),
        C("2001:db8:2::1", "u@a6.test", SCAN_AUTH_FAIL),
        C("192.0.2.21", "u@amacro.test", SCAN_AUTH_PASS),
        /* mx */
        C("192.0.2.50", "u@mx.test", SCAN_AUTH_PASS),
        C("192.0.2.51", "u@mx.test", SCAN_AUTH_FAIL),
        C("198.51.100.7", "u@mxcidr.test", SCAN_AUTH_PASS),
        C("192.0.2.60", "u@mximplicit.test", SCAN_AUTH_FAIL),
        C("192.0.2.1", "u@mxmany.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@mxtemp.test", SCAN_AUTH_TEMPERROR),
        /* ptr */
        C("192.0.2.70", "u@ptr.test", SCAN_AUTH_PASS),
        C("192.0.2.71", "u@ptr.test", SCAN_AUTH_FAIL),
        C("192.0.2.70", "u@ptrother.test", SCAN_AUTH_FAIL),
        /* ip6 and address families */
        C("2001:db8::1", "u@ip6.test", SCAN_AUTH_PASS),
        C("2001:db9::1", "u@ip6.test", SCAN_AUTH_FAIL),
        C("192.0.2.1", "u@ip6.test", SCAN_AUTH_FAIL),
        C("2001:db8::1", "u@ip4.test", SCAN_AUTH_FAIL),
        C("::ffff:192.0.2.10", "u@ip4.test", SCAN_AUTH_PASS),
        /* include */
        C("192.0.2.80", "u@inc.test", SCAN_AUTH_PASS),
        C("192.0.2.81", "u@inc.test", SCAN_AUTH_FAIL),
        C("192.0.2.1", "u@incnone.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@inctemp.test", SCAN_AUTH_TEMPERROR),
        C("192.0.2.1", "u@incsoft.test", SCAN_AUTH_NEUTRAL),
        C("192.0.2.1", "u@incperm.test", SCAN_AUTH_PERMERROR),
        CR("192.0.2.1", "u@incexp.test", SCAN_AUTH_SOFTFAIL, "~all matched"),
        /* redirect */
        C("192.0.2.90", "u@redir.test", SCAN_AUTH_PASS),
        C("192.0.2.91", "u@redir.test", SCAN_AUTH_FAIL),
        C("192.0.2.90", "u@redirnone.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.90", "u@redirall.test", SCAN_AUTH_NEUTRAL),
        /* exists and macros */
        C("192.0.2.100", "u@exists.test", SCAN_AUTH_PASS),
        C("192.0.2.101", "u@exists.test", SCAN_AUTH_FAIL),
        C("192.0.2.3", "u@macro.test", SCAN_AUTH_PASS),
        C("192.0.2.4", "u@macro.test", SCAN_AUTH_FAIL),
        C("192.0.2.1", "john@local.test", SCAN_AUTH_PASS),
        C("192.0.2.1", "jane@local.test", SCAN_AUTH_FAIL),
        C("192.0.2.1", "a-b-c@delim.test", SCAN_AUTH_PASS),
        C("192.0.2.1", "x.y@digits.test", SCAN_AUTH_PASS), /* %{d1r}: digits, %{s1}: test */
        C("192.0.2.1", "x.y@sender.test", SCAN_AUTH_FAIL), /* '@' is no host character */
        C("2001:db8::1", "u@six.test", SCAN_AUTH_PASS),
        C("2001:db8::1", "u@sixfwd.test", SCAN_AUTH_PASS),
        C("192.0.2.110", "u@pmacro.test", SCAN_AUTH_PASS),
        C("192.0.2.111", "u@pmacro.test", SCAN_AUTH_PASS), /* %{p} is "unknown" */
        {"192.0.2.1", "", "mta.hmacro.test", SCAN_AUTH_PASS, "mta.hmacro.test", NULL},
        CR("192.0.2.1", "A+b@explain.test", SCAN_AUTH_FAIL,
           "A%2Bb not allowed from 192.0.2.1 unknown %%20"),
        /* the HELO identity */
        {"192.0.2.120", "", "helo.test", SCAN_AUTH_PASS, "helo.test", NULL},
        {"192.0.2.121", "", "HELO.test", SCAN_AUTH_FAIL, "helo.test", NULL},
        {"192.0.2.1", "", "[192.0.2.1]", SCAN_AUTH_NONE, NULL, NULL},
        {"192.0.2.1", "", "", SCAN_AUTH_NONE, NULL, NULL},
        /* limits */
        C("192.0.2.1", "u@ten.test", SCAN_AUTH_FAIL),
        CR("192.0.2.1", "u@eleven.test", SCAN_AUTH_PERMERROR, "DNS-querying terms"),
        C("192.0.2.1", "u@loop.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@redirloop.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@void2.test", SCAN_AUTH_FAIL),
        CR("192.0.2.1", "u@void3.test", SCAN_AUTH_PERMERROR, "void lookups"),
        /* syntax errors: the whole record is parsed first */
        C("192.0.2.1", "u@bad1.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad2.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad3.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad4.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad5.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad6.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad7.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad8.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad9.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad10.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad11.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad12.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad13.test", SCAN_AUTH_PERMERROR),
        C("2001:db8::1", "u@bad14.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad15.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@bad16.test", SCAN_AUTH_PERMERROR),
        C("192.0.2.1", "u@tab.test", SCAN_AUTH_NONE),
        C("192.0.2.1", "u@unknownmod.test", SCAN_AUTH_FAIL),
        /* DNS failures */
        C("192.0.2.1", "u@txttemp.test", SCAN_AUTH_TEMPERROR),
        C("192.0.2.1", "u@txtrefused.test", SCAN_AUTH_TEMPERROR),
        C("192.0.2.1", "u@atemp.test", SCAN_AUTH_TEMPERROR),
        /* no usable client */
        C("not-an-ip", "u@ip4.test", SCAN_AUTH_NONE),
};

static const enum scan_sym_id spf_want_sym[] = {
        [SCAN_AUTH_NONE] = SYM_SPF_NONE,           [SCAN_AUTH_PASS] = SYM_SPF_PASS,
        [SCAN_AUTH_FAIL] = SYM_SPF_FAIL,           [SCAN_AUTH_SOFTFAIL] = SYM_SPF_SOFTFAIL,
        [SCAN_AUTH_NEUTRAL] = SYM_SPF_NEUTRAL,     [SCAN_AUTH_TEMPERROR] = SYM_SPF_TEMPERROR,
        [SCAN_AUTH_PERMERROR] = SYM_SPF_PERMERROR,
};

static void
task_free_details(struct scan_task *t)
{
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(t->detail[i]);
}

/* Run SPF for one row; the task is left for the caller to inspect. */
static void
spf_run(struct scan_task *t, struct scan_env *env, struct fake_dns *f, struct config *cfg,
        struct scan_input *in, const struct spf_case *c)
{
	fake_dns_env(env, f, spf_zone);
	memset(in, 0, sizeof(*in));
	in->sender = c->sender;
	memset(t, 0, sizeof(*t));
	t->env = env;
	t->cfg = cfg;
	t->in = in;
	snprintf(t->client_ip, sizeof(t->client_ip), "%s", c->ip);
	snprintf(t->helo, sizeof(t->helo), "%s", c->helo);
	scan_check_spf(t);
}

static void
test_spf_table(void **state)
{
	struct config *cfg = config_defaults();

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(spf_cases); i++) {
		const struct spf_case *c = &spf_cases[i];
		struct scan_task t;
		struct scan_env env;
		struct fake_dns f;
		struct scan_input in;
		char row[200];
		const char *at = strrchr(c->sender, '@');
		char want_domain[300];

		snprintf(row, sizeof(row), "%s from %s helo %s", c->sender, c->ip, c->helo);
		if (c->want_domain)
			snprintf(want_domain, sizeof(want_domain), "%s", c->want_domain);
		else
			snprintf(want_domain, sizeof(want_domain), "%s", at ? at + 1 : "");
		for (char *p = want_domain; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		spf_run(&t, &env, &f, cfg, &in, c);
		if (t.spf.result != c->want)
			table_mismatch(row, "got %s, want %s (%s)", scan_auth_str(t.spf.result),
			               scan_auth_str(c->want), t.spf.reason);
		if (c->want != SCAN_AUTH_NONE && strcmp(t.spf.domain, want_domain) != 0)
			table_mismatch(row, "domain: got %s, want %s", t.spf.domain, want_domain);
		if (t.spf.helo != (c->sender[0] == '\0'))
			table_mismatch(row, "helo flag: got %d", t.spf.helo);
		if (t.nsyms != 1 || !t.has[spf_want_sym[c->want]])
			table_mismatch(row, "got %zu symbols, first %s; want %s", t.nsyms,
			               t.nsyms ? scan_sym_defs[t.order[0]].name : "-",
			               scan_sym_defs[spf_want_sym[c->want]].name);
		if (c->want_reason && !strstr(t.spf.reason, c->want_reason))
			table_mismatch(row, "reason: got \"%s\", want it to hold \"%s\"",
			               t.spf.reason, c->want_reason);
		task_free_details(&t);
	}
	config_unref(cfg);
	assert_int_equal(table_failures, 0);
}

/* The symbol's detail is the domain checked. */
static void
test_spf_detail(void **state)
{
	struct config *cfg = config_defaults();
	static const struct spf_case c = C("192.0.2.10", "u@ip4.test", SCAN_AUTH_PASS);
	struct scan_task t;
	struct scan_env env;
	struct fake_dns f;
	struct scan_input in;

	(void)state;
	spf_run(&t, &env, &f, cfg, &in, &c);
	assert_non_null(t.detail[SYM_SPF_PASS]);
	assert_string_equal(t.detail[SYM_SPF_PASS], "ip4.test");
	task_free_details(&t);
	config_unref(cfg);
}

/* Lookups stop at the limits: an include loop asks at most 11 TXT queries. */
static void
test_spf_query_bound(void **state)
{
	struct config *cfg = config_defaults();
	static const struct spf_case c = C("192.0.2.1", "u@loop.test", SCAN_AUTH_PERMERROR);
	struct scan_task t;
	struct scan_env env;
	struct fake_dns f;
	struct scan_input in;

	(void)state;
	spf_run(&t, &env, &f, cfg, &in, &c);
	assert_int_equal(t.spf.result, SCAN_AUTH_PERMERROR);
	if (f.queries > 11)
		fail_msg("got %u queries, want at most 11", f.queries);
	task_free_details(&t);
	config_unref(cfg);
}

/* A task past its deadline never waits: temperror. */
static void
test_spf_deadline(void **state)
{
	struct config *cfg = config_defaults();
	static const struct spf_case c = C("192.0.2.10", "u@ip4.test", SCAN_AUTH_TEMPERROR);
	struct scan_task t;
	struct scan_env env;
	struct fake_dns f;
	struct scan_input in;

	(void)state;
	fake_dns_env(&env, &f, spf_zone);
	memset(&in, 0, sizeof(in));
	in.sender = c.sender;
	memset(&t, 0, sizeof(t));
	t.env = &env;
	t.cfg = cfg;
	t.in = &in;
	t.deadline_ms = 1; /* long past */
	snprintf(t.client_ip, sizeof(t.client_ip), "%s", c.ip);
	scan_check_spf(&t);
	assert_int_equal(t.spf.result, SCAN_AUTH_TEMPERROR);
	assert_int_equal(f.queries, 0);
	task_free_details(&t);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_spf_table),
	        cmocka_unit_test(test_spf_detail),
	        cmocka_unit_test(test_spf_query_bound),
	        cmocka_unit_test(test_spf_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
