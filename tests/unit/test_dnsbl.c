/*
 * test_dnsbl.c - table-driven tests of the DNS blocklists (RFC 5782)
 * against a fake DNS: client addresses (IPv4 octets, IPv6 nibbles,
 * skipped ranges), answer codes that list and those that must not,
 * zone weights and malformed zone settings; link domains (URIBL) by
 * registered domain, deduplicated and capped.
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
#define ADDR(n, d)     {'A', n, d, DNS_OK}
#define FAIL(t, n, st) {t, n, NULL, st}
/* clang-format on */

#define V6_DB8_1 "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"

/* clang-format off */
static const struct fake_rr dnsbl_zone[] = {
	ADDR("1.2.0.192.bl.test", "127.0.0.2"),
	ADDR("1.2.0.192.bl2.test", "127.0.0.4"),
	ADDR("2.2.0.192.bl.test", "127.0.0.2"),
	ADDR("2.2.0.192.bl.test", "127.0.0.11"),
	ADDR("3.2.0.192.bl.test", "127.255.255.254"),
	ADDR("4.2.0.192.bl.test", "127.0.1.255"),
	ADDR("5.2.0.192.bl.test", "127.0.0.1"),
	ADDR("6.2.0.192.bl.test", "10.0.0.2"),
	ADDR("7.2.0.192.bl.test", "127.255.255.252"),
	FAIL('A', "8.2.0.192.bl.test", DNS_TEMPFAIL),
	ADDR(V6_DB8_1 ".bl.test", "127.0.0.3"),
	ADDR("3.2.1.10.bl.test", "127.0.0.2"),
	ADDR("1.0.0.127.bl.test", "127.0.0.2"),
	ADDR("1.100.51.198.bl.test", "127.0.0.2"),
	/* domain lists */
	ADDR("bad.test.uribl.test", "127.0.1.2"),
	ADDR("evil.test.uribl.test", "127.0.0.2"),
	ADDR("example.co.uk.uribl.test", "127.0.0.2"),
	ADDR("xn--bcher-kva.test.uribl.test", "127.0.0.2"),
	ADDR("refused.test.uribl.test", "127.0.1.255"),
	{0, NULL, NULL, DNS_OK},
};
/* clang-format on */

struct dnsbl_case {
	const char *ip;
	const char *zones;
	double want_score; /* extra of DNSBL_IP; 0 with want_detail NULL: not listed */
	const char *want_detail;
	int want_queries; /* -1: not checked */
};

static const struct dnsbl_case dnsbl_cases[] = {
        {"192.0.2.1", "bl.test", 1.0, "bl.test=127.0.0.2", 1},
        {"192.0.2.1", "bl.test:4.5", 4.5, "bl.test=127.0.0.2", 1},
        {"192.0.2.1", "bl.test:-2", -2.0, "bl.test=127.0.0.2", 1},
        {"192.0.2.1", " bl.test:2 , bl2.test:3 ", 5.0, "bl.test=127.0.0.2,bl2.test=127.0.0.4", 2},
        {"192.0.2.1", "BL.Test.", 1.0, "bl.test=127.0.0.2", 1},
        {"192.0.2.2", "bl.test", 1.0, "bl.test=127.0.0.2/127.0.0.11", 1},
        {"192.0.2.9", "bl.test", 0, NULL, 1},
        /* answers that are not listings */
        {"192.0.2.3", "bl.test", 0, NULL, 1},
        {"192.0.2.4", "bl.test", 0, NULL, 1},
        {"192.0.2.5", "bl.test", 0, NULL, 1},
        {"192.0.2.6", "bl.test", 0, NULL, 1},
        {"192.0.2.7", "bl.test", 0, NULL, 1},
        {"192.0.2.8", "bl.test", 0, NULL, 1},
        /* malformed entries skipped */
        {"192.0.2.1", "bad zone:x,:3,bl.test:abc,bl.test:,bl.test:inf,bl.test:nan,,bl.test:2", 2.0,
         "bl.test=127.0.0.2", 1},
        {"192.0.2.1", "bl..test,a b,bl.test:1e9", 0, NULL, 0},
        {"192.0.2.1", "", 0, NULL, 0},
        /* address forms */
        {"2001:db8::1", "bl.test", 1.0, "bl.test=127.0.0.3", 1},
        {"::ffff:192.0.2.1", "bl.test", 1.0, "bl.test=127.0.0.2", 1},
        {"198.51.100.1", "bl.test", 1.0, "bl.test=127.0.0.2", 1},
        /* not looked up */
        {"10.1.2.3", "bl.test", 0, NULL, 0},
        {"127.0.0.1", "bl.test", 0, NULL, 0},
        {"192.168.1.1", "bl.test", 0, NULL, 0},
        {"172.16.5.4", "bl.test", 0, NULL, 0},
        {"169.254.1.1", "bl.test", 0, NULL, 0},
        {"100.64.0.1", "bl.test", 0, NULL, 0},
        {"::1", "bl.test", 0, NULL, 0},
        {"fe80::1", "bl.test", 0, NULL, 0},
        {"fd00::1", "bl.test", 0, NULL, 0},
        {"", "bl.test", 0, NULL, 0},
        {"garbage", "bl.test", 0, NULL, 0},
};

static void
task_init(struct scan_task *t, struct scan_env *env, struct fake_dns *f, struct config *cfg)
{
	fake_dns_env(env, f, dnsbl_zone);
	memset(t, 0, sizeof(*t));
	t->env = env;
	t->cfg = cfg;
}

static void
task_free_details(struct scan_task *t)
{
	for (size_t k = 0; k < SCAN_SYM_COUNT; k++)
		free(t->detail[k]);
}

static void
cfg_set(char **field, const char *v)
{
	free(*field);
	*field = xstrdup(v);
}

static void
test_dnsbl_table(void **state)
{
	struct config *cfg = config_defaults();

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(dnsbl_cases); i++) {
		const struct dnsbl_case *c = &dnsbl_cases[i];
		struct scan_task t;
		struct scan_env env;
		struct fake_dns f;
		char row[200];

		snprintf(row, sizeof(row), "%s on \"%s\"", c->ip, c->zones);
		cfg_set(&cfg->dnsbl_zones, c->zones);
		task_init(&t, &env, &f, cfg);
		snprintf(t.client_ip, sizeof(t.client_ip), "%s", c->ip);
		scan_check_dnsbl(&t);
		if (t.has[SYM_DNSBL_IP] != (c->want_detail != NULL))
			table_mismatch(row, "listed: got %d, want %d", t.has[SYM_DNSBL_IP],
			               c->want_detail != NULL);
		if (t.extra[SYM_DNSBL_IP] != c->want_score)
			table_mismatch(row, "score: got %g, want %g", t.extra[SYM_DNSBL_IP],
			               c->want_score);
		if (c->want_detail && (t.detail[SYM_DNSBL_IP] == NULL ||
		                       strcmp(t.detail[SYM_DNSBL_IP], c->want_detail) != 0))
			table_mismatch(row, "detail: got \"%s\", want \"%s\"",
			               t.detail[SYM_DNSBL_IP] ? t.detail[SYM_DNSBL_IP] : "(null)",
			               c->want_detail);
		if (c->want_queries >= 0 && f.queries != (unsigned)c->want_queries)
			table_mismatch(row, "queries: got %u, want %d (last %s)", f.queries,
			               c->want_queries, f.last);
		if (t.nsyms > 1 || t.tempfail)
			table_mismatch(row, "got %zu symbols, tempfail %d", t.nsyms, t.tempfail);
		task_free_details(&t);
	}
	config_unref(cfg);
	assert_int_equal(table_failures, 0);
}

struct uribl_case {
	const char *name;
	const char *hosts[4]; /* NULL-terminated; a leading '!' marks an IP literal */
	const char *zones;
	double want_score;
	const char *want_detail; /* NULL: not listed */
	int want_queries;
};

/* clang-format off */
static const struct uribl_case uribl_cases[] = {
	{"listed registered domain", {"www.bad.test"}, "uribl.test:3", 3.0,
	 "uribl.test:bad.test=127.0.1.2", 1},
	{"clean", {"www.good.test"}, "uribl.test", 0, NULL, 1},
	{"psl", {"x.y.example.co.uk"}, "uribl.test", 1.0,
	 "uribl.test:example.co.uk=127.0.0.2", 1},
	{"dedup", {"a.bad.test", "b.bad.test", "bad.test"}, "uribl.test", 1.0,
	 "uribl.test:bad.test=127.0.1.2", 1},
	{"weight once per zone", {"bad.test", "evil.test"}, "uribl.test:2", 2.0,
	 "uribl.test:bad.test=127.0.1.2,uribl.test:evil.test=127.0.0.2", 2},
	{"ip literal skipped", {"!192.0.2.1"}, "uribl.test", 0, NULL, 0},
	{"suffix only skipped", {"co.uk"}, "uribl.test", 0, NULL, 0},
	{"idn", {"www.b\xc3\xbc" "cher.test"}, "uribl.test", 1.0,
	 "uribl.test:xn--bcher-kva.test=127.0.0.2", 1},
	{"refused code", {"refused.test"}, "uribl.test", 0, NULL, 1},
	{"bad host", {"exa mple.test", "-", ""}, "uribl.test", 0, NULL, 0},
	{"no zones", {"bad.test"}, "", 0, NULL, 0},
};
/* clang-format on */

static void
test_uribl_table(void **state)
{
	struct config *cfg = config_defaults();

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(uribl_cases); i++) {
		const struct uribl_case *c = &uribl_cases[i];
		struct scan_task t;
		struct scan_env env;
		struct fake_dns f;
		struct scan_url urls[4];

		cfg_set(&cfg->uribl_zones, c->zones);
		task_init(&t, &env, &f, cfg);
		memset(urls, 0, sizeof(urls));
		for (size_t k = 0; k < 4 && c->hosts[k]; k++) {
			urls[k].ip_literal = c->hosts[k][0] == '!';
			urls[k].host = (char *)(uintptr_t)(c->hosts[k] + urls[k].ip_literal);
			t.msg.nurls++;
		}
		t.msg.urls = urls;
		scan_check_dnsbl(&t); /* client_ip empty: only links */
		if (t.has[SYM_URIBL_DOMAIN] != (c->want_detail != NULL))
			table_mismatch(c->name, "listed: got %d", t.has[SYM_URIBL_DOMAIN]);
		if (t.extra[SYM_URIBL_DOMAIN] != c->want_score)
			table_mismatch(c->name, "score: got %g, want %g", t.extra[SYM_URIBL_DOMAIN],
			               c->want_score);
		if (c->want_detail && (t.detail[SYM_URIBL_DOMAIN] == NULL ||
		                       strcmp(t.detail[SYM_URIBL_DOMAIN], c->want_detail) != 0))
			table_mismatch(c->name, "detail: got \"%s\", want \"%s\"",
			               t.detail[SYM_URIBL_DOMAIN] ? t.detail[SYM_URIBL_DOMAIN]
			                                          : "(null)",
			               c->want_detail);
		if (f.queries != (unsigned)c->want_queries)
			table_mismatch(c->name, "queries: got %u, want %d", f.queries,
			               c->want_queries);
		task_free_details(&t);
	}
	config_unref(cfg);
	assert_int_equal(table_failures, 0);
}

/* More distinct link domains than the cap: only the first 20 are asked. */
static void
test_uribl_cap(void **state)
{
	struct config *cfg = config_defaults();
	struct scan_task t;
	struct scan_env env;
	struct fake_dns f;
	struct scan_url urls[30];
	char hosts[30][32];

	(void)state;
	cfg_set(&cfg->uribl_zones, "uribl.test");
	task_init(&t, &env, &f, cfg);
	memset(urls, 0, sizeof(urls));
	for (int i = 0; i < 30; i++) {
		snprintf(hosts[i], sizeof(hosts[i]), "www.d%d.test", i);
		urls[i].host = hosts[i];
	}
	t.msg.urls = urls;
	t.msg.nurls = 30;
	scan_check_dnsbl(&t);
	assert_int_equal(f.queries, 20);
	assert_false(t.has[SYM_URIBL_DOMAIN]);
	task_free_details(&t);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dnsbl_table),
	        cmocka_unit_test(test_uribl_table),
	        cmocka_unit_test(test_uribl_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
