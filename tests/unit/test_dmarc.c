/*
 * test_dmarc.c - table-driven tests of DMARC (RFC 7489) against a fake
 * DNS: policy discovery (From domain, then organizational domain with
 * sp=), record selection and tags, strict and relaxed alignment through
 * the public suffix list, pct, the From header cases, DNS failures; and
 * scan_org_domain().
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
#define FAIL(t, n, st) {t, n, NULL, st}
/* clang-format on */

/* clang-format off */
static const struct fake_rr dmarc_zone[] = {
	TXT("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:d@example.com"),
	TXT("_dmarc.strict.test", "v=DMARC1; p=quarantine; adkim=s; aspf=s"),
	TXT("_dmarc.org.test", "v=DMARC1; p=reject; sp=quarantine"),
	TXT("_dmarc.nosp.test", "v=DMARC1; p=reject"),
	TXT("_dmarc.badsp.test", "v=DMARC1; p=reject; sp=bogus"),
	TXT("_dmarc.subrec.org.test", "v=DMARC1; p=none"),
	TXT("_dmarc.nop.test", "v=DMARC1; rua=mailto:d@nop.test"),
	TXT("_dmarc.nop2.test", "v=DMARC1; adkim=s"),
	TXT("_dmarc.badp.test", "v=DMARC1; p=maybe"),
	TXT("_dmarc.multi.test", "v=DMARC1; p=reject"),
	TXT("_dmarc.multi.test", "v=DMARC1; p=none"),
	TXT("_dmarc.mixed.test", "some verification token"),
	TXT("_dmarc.mixed.test", "v=DMARC1; p=reject"),
	FAIL('T', "_dmarc.temp.test", DNS_TEMPFAIL),
	FAIL('T', "_dmarc.sub.orgtemp.test", DNS_NXDOMAIN),
	FAIL('T', "_dmarc.orgtemp.test", DNS_TEMPFAIL),
	TXT("_dmarc.pct0.test", "v=DMARC1; p=reject; pct=0"),
	TXT("_dmarc.pct0q.test", "v=DMARC1; p=quarantine; pct=0"),
	TXT("_dmarc.pct100.test", "v=DMARC1; p=reject; pct=100"),
	TXT("_dmarc.notfirst.test", "p=reject; v=DMARC1"),
	TXT("_dmarc.case.test", "v=dmarc1; p=reject"),
	TXT("_dmarc.spaces.test", "  v = DMARC1 ;p = Reject ; pct = 100 ;"),
	TXT("_dmarc.unknown.test", "v=DMARC1; p=reject; foo=bar; pct=abc; adkim=x"),
	TXT("_dmarc.example.co.uk", "v=DMARC1; p=reject"),
	TXT("_dmarc.xn--bcher-kva.test", "v=DMARC1; p=reject"),
	{0, NULL, NULL, DNS_OK},
};
/* clang-format on */

struct dmarc_case {
	const char *name;
	const char *from[2]; /* From domains; NULL: none / the end; "": a From without domain */
	enum scan_auth spf;
	const char *spf_domain;
	bool spf_helo;
	enum scan_auth dkim;
	const char *dkim_domain; /* NULL: no signature */
	enum scan_auth want;
	enum scan_sym_id want_sym;
	const char *want_policy;
	const char *want_domain; /* NULL: from[0] */
};

#define PASS  SCAN_AUTH_PASS
#define FAILR SCAN_AUTH_FAIL
#define NONE  SCAN_AUTH_NONE

/* clang-format off */
static const struct dmarc_case dmarc_cases[] = {
	/* alignment */
	{"spf aligned", {"example.com"}, PASS, "example.com", false, NONE, NULL,
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"spf relaxed", {"example.com"}, PASS, "bounce.mail.example.com", false, NONE, NULL,
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"spf other domain", {"example.com"}, PASS, "other.test", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"spf softfail", {"example.com"}, SCAN_AUTH_SOFTFAIL, "example.com", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"spf helo identity", {"example.com"}, PASS, "example.com", true, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"spf strict", {"strict.test"}, PASS, "mail.strict.test", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_QUARANTINE, "quarantine", NULL},
	{"spf strict exact", {"strict.test"}, PASS, "strict.test", false, NONE, NULL,
	 PASS, SYM_DMARC_PASS, "quarantine", NULL},
	{"dkim aligned", {"example.com"}, NONE, "", false, PASS, "example.com",
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"dkim relaxed parent", {"news.example.com"}, NONE, "", false, PASS, "example.com",
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"dkim case", {"example.com"}, NONE, "", false, PASS, "Example.COM",
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"dkim failed", {"example.com"}, NONE, "", false, FAILR, "example.com",
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"dkim strict", {"strict.test"}, NONE, "", false, PASS, "sub.strict.test",
	 FAILR, SYM_DMARC_FAIL_QUARANTINE, "quarantine", NULL},
	{"dkim strict exact", {"strict.test"}, NONE, "", false, PASS, "strict.test",
	 PASS, SYM_DMARC_PASS, "quarantine", NULL},
	{"psl relaxed", {"sub.example.co.uk"}, NONE, "", false, PASS, "example.co.uk",
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"psl not the suffix", {"sub.example.co.uk"}, NONE, "", false, PASS, "other.co.uk",
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"psl suffix signer", {"example.co.uk"}, NONE, "", false, PASS, "co.uk",
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	/* policy discovery */
	{"sp at org", {"sub.org.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_QUARANTINE, "quarantine", NULL},
	{"p at org itself", {"org.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"own record wins", {"subrec.org.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_NONE, "none", NULL},
	{"no sp: p", {"a.b.nosp.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"invalid sp: p", {"x.badsp.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"no p, rua", {"nop.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_NONE, "none", NULL},
	{"no p, no rua", {"nop2.test"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"invalid p", {"badp.test"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"two records", {"multi.test"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"other TXT ignored", {"mixed.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"no record", {"nxdomain.test"}, PASS, "nxdomain.test", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"v not first", {"notfirst.test"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"v case", {"case.test"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"spaces", {"spaces.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"unknown tags", {"unknown.test"}, NONE, "", false, PASS, "x.unknown.test",
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	{"unknown tags fail", {"unknown.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"public suffix From", {"co.uk"}, NONE, "", false, NONE, NULL,
	 NONE, SYM_DMARC_NONE, "", NULL},
	{"IDN From", {"b\xc3\xbc" "cher.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", "xn--bcher-kva.test"},
	/* pct */
	{"pct=0 reject", {"pct0.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_QUARANTINE, "quarantine", NULL},
	{"pct=0 quarantine", {"pct0q.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_NONE, "none", NULL},
	{"pct=100", {"pct100.test"}, NONE, "", false, NONE, NULL,
	 FAILR, SYM_DMARC_FAIL_REJECT, "reject", NULL},
	{"pct=0 pass", {"pct0.test"}, PASS, "pct0.test", false, NONE, NULL,
	 PASS, SYM_DMARC_PASS, "reject", NULL},
	/* DNS failures */
	{"temperror", {"temp.test"}, PASS, "temp.test", false, NONE, NULL,
	 SCAN_AUTH_TEMPERROR, SYM_DMARC_TEMPERROR, "", NULL},
	{"org temperror", {"sub.orgtemp.test"}, NONE, "", false, NONE, NULL,
	 SCAN_AUTH_TEMPERROR, SYM_DMARC_TEMPERROR, "", NULL},
	/* the From header */
	{"no From", {NULL}, PASS, "example.com", false, NONE, NULL,
	 SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, "", ""},
	{"two From, one domain", {"example.com", "EXAMPLE.com"}, PASS, "example.com", false,
	 NONE, NULL, PASS, SYM_DMARC_PASS, "reject", NULL},
	{"two From, two domains", {"example.com", "other.test"}, PASS, "example.com", false,
	 NONE, NULL, SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, "", ""},
	{"From without domain", {""}, NONE, "", false, NONE, NULL,
	 SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, "", ""},
	{"From bad domain", {"exa mple.com"}, NONE, "", false, NONE, NULL,
	 SCAN_AUTH_PERMERROR, SYM_DMARC_PERMERROR, "", "exa?mple.com"},
};
/* clang-format on */

static void
test_dmarc_table(void **state)
{
	struct config *cfg = config_defaults();

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(dmarc_cases); i++) {
		const struct dmarc_case *c = &dmarc_cases[i];
		struct scan_task t;
		struct scan_env env;
		struct fake_dns f;
		struct scan_mbox from[2];
		const char *want_domain = c->want_domain ? c->want_domain : c->from[0];

		fake_dns_env(&env, &f, dmarc_zone);
		memset(&t, 0, sizeof(t));
		memset(from, 0, sizeof(from));
		t.env = &env;
		t.cfg = cfg;
		for (size_t k = 0; k < 2 && c->from[k]; k++) {
			/* "" is a From the MIME step could not take a domain from */
			from[k].domain = c->from[k][0] ? (char *)(uintptr_t)c->from[k] : NULL;
			t.msg.nfrom++;
		}
		t.msg.from = t.msg.nfrom ? from : NULL;
		t.spf.result = c->spf;
		snprintf(t.spf.domain, sizeof(t.spf.domain), "%s", c->spf_domain);
		t.spf.helo = c->spf_helo;
		if (c->dkim_domain) {
			t.ndkim = 1;
			t.dkim[0].result = c->dkim;
			snprintf(t.dkim[0].domain, sizeof(t.dkim[0].domain), "%s", c->dkim_domain);
		}
		scan_check_dmarc(&t);
		if (t.dmarc.result != c->want)
			table_mismatch(c->name, "got %s, want %s (%s)",
			               scan_auth_str(t.dmarc.result), scan_auth_str(c->want),
			               t.dmarc.reason);
		/* From addresses in several domains also force quarantine */
		if (t.has[SYM_DMARC_MULTIPLE_FROM] !=
		    (strcmp(c->name, "two From, two domains") == 0))
			table_mismatch(c->name, "DMARC_MULTIPLE_FROM: got %d",
			               t.has[SYM_DMARC_MULTIPLE_FROM]);
		if (t.nsyms - t.has[SYM_DMARC_MULTIPLE_FROM] != 1 || !t.has[c->want_sym])
			table_mismatch(c->name, "got %zu symbols, first %s; want %s", t.nsyms,
			               t.nsyms ? scan_sym_defs[t.order[0]].name : "-",
			               scan_sym_defs[c->want_sym].name);
		if (strcmp(t.dmarc.policy, c->want_policy) != 0)
			table_mismatch(c->name, "policy: got \"%s\", want \"%s\"", t.dmarc.policy,
			               c->want_policy);
		if (want_domain && strcmp(t.dmarc.domain, want_domain) != 0)
			table_mismatch(c->name, "domain: got \"%s\", want \"%s\"", t.dmarc.domain,
			               want_domain);
		for (size_t k = 0; k < SCAN_SYM_COUNT; k++)
			free(t.detail[k]);
	}
	config_unref(cfg);
	assert_int_equal(table_failures, 0);
}

/* pct=50 samples: over many messages both outcomes occur. */
static void
test_dmarc_pct_sample(void **state)
{
	static const struct fake_rr zone[] = {
	        TXT("_dmarc.half.test", "v=DMARC1; p=reject; pct=50"),
	        {0, NULL, NULL, DNS_OK},
	};
	struct config *cfg = config_defaults();
	unsigned reject = 0, quarantine = 0;

	(void)state;
	for (int i = 0; i < 200; i++) {
		struct scan_task t;
		struct scan_env env;
		struct fake_dns f;
		struct scan_mbox from = {NULL, NULL, (char *)(uintptr_t) "half.test"};

		fake_dns_env(&env, &f, zone);
		memset(&t, 0, sizeof(t));
		t.env = &env;
		t.cfg = cfg;
		t.msg.from = &from;
		t.msg.nfrom = 1;
		scan_check_dmarc(&t);
		reject += t.has[SYM_DMARC_FAIL_REJECT];
		quarantine += t.has[SYM_DMARC_FAIL_QUARANTINE];
		for (size_t k = 0; k < SCAN_SYM_COUNT; k++)
			free(t.detail[k]);
	}
	config_unref(cfg);
	if (reject + quarantine != 200 || reject < 40 || quarantine < 40)
		fail_msg("got %u reject, %u quarantine of 200; want about half each", reject,
		         quarantine);
}

struct org_case {
	const char *in;
	const char *want; /* NULL: none */
};

static const struct org_case org_cases[] = {
        {"example.com", "example.com"},
        {"a.b.example.com", "example.com"},
        {"Mail.Example.COM", "example.com"},
        {"example.com.", "example.com"},
        {"www.example.co.uk", "example.co.uk"},
        {"example.co.uk", "example.co.uk"},
        {"co.uk", NULL},
        {"com", NULL},
        {"x.y.example.test", "example.test"},
        {"", NULL},
        {".", NULL},
        {"a..example.com", NULL},
        {".example.com", NULL},
};

static void
test_org_domain(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(org_cases); i++) {
		char out[DNS_NAME_MAX + 1] = "";
		bool ok = scan_org_domain(org_cases[i].in, out, sizeof(out));

		if (ok != (org_cases[i].want != NULL) ||
		    (ok && strcmp(out, org_cases[i].want) != 0))
			table_mismatch(org_cases[i].in, "got %s \"%s\", want %s", ok ? "yes" : "no",
			               out, org_cases[i].want ? org_cases[i].want : "none");
	}
	assert_int_equal(table_failures, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dmarc_table),
	        cmocka_unit_test(test_dmarc_pct_sample),
	        cmocka_unit_test(test_org_domain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
