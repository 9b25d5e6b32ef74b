/*
 * test_dkim.c - table-driven tests of DKIM verification (RFC 6376, RFC
 * 8301, RFC 8463) and ARC validation (RFC 8617) in src/scan/scan_dkim.c.
 *
 * The signed messages come from another implementation: dkimpy signed
 * them (tests/data/dkim/make_fixtures.py), and cases.txt says what each
 * must give. Keys are served by a fake resolver reading dns.txt, so the
 * tests are hermetic. Hand-written rows cover what a signer would not
 * produce: broken tag-lists, absurd instances, a passed deadline, more
 * signatures than are verified. MOAT_TEST_DATA names tests/data.
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

#include "common/config.h"
#include "common/util.h"
#include "scan/scan_internal.h"

#include "table.h"

#define DNS_ROWS_MAX  256
#define CASES_MAX     256
#define MSG_MAX       (4u << 20)
#define FIELDS_MAX    8
#define LINE_MAX_TEST 8192

/* ---- the fake resolver: name, status, one TXT record per row ---- */

struct dns_row {
	char name[DNS_NAME_MAX + 1];
	enum dns_status status;
	char *txt;
};

struct fake_dns {
	struct dns_row rows[DNS_ROWS_MAX];
	size_t n;
	unsigned lookups;
};

static enum dns_status
fake_txt(void *ctx, const char *name, int64_t deadline_ms, struct dns_txt_result *out)
{
	struct fake_dns *d = ctx;
	enum dns_status st = DNS_NXDOMAIN;

	d->lookups++;
	for (size_t i = 0; i < d->n; i++) {
		if (strcasecmp(d->rows[i].name, name) != 0)
			continue;
		st = d->rows[i].status;
		if (st == DNS_OK && out->n < DNS_TXT_MAX)
			out->txt[out->n++] = xstrdup(d->rows[i].txt);
	}
	return out->status = st;
}

static char *
data_path(const char *rel)
{
	const char *dir = getenv("MOAT_TEST_DATA");

	return xasprintf("%s/dkim/%s", dir ? dir : "tests/data", rel);
}

static unsigned char *
read_file(const char *rel, size_t *len)
{
	char *path = data_path(rel);
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;

	if (fp == NULL) {
		print_error("cannot open %s (set MOAT_TEST_DATA)\n", path);
		free(path);
		fail();
	}
	buf = xmalloc(MSG_MAX);
	*len = fread(buf, 1, MSG_MAX, fp);
	fclose(fp);
	free(path);
	return buf;
}

/* Split a line on tabs into at most max fields; returns the count. */
static size_t
split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *p = line;

	line[strcspn(line, "\r\n")] = '\0';
	while (n < max) {
		char *tab = strchr(p, '\t');

		f[n++] = p;
		if (tab == NULL || n == max)
			break; /* the last field keeps its tabs */
		*tab = '\0';
		p = tab + 1;
	}
	return n;
}

static void
dns_load(struct fake_dns *d)
{
	char *path = data_path("dns.txt");
	FILE *fp = fopen(path, "r");
	char line[LINE_MAX_TEST];

	assert_non_null(fp);
	memset(d, 0, sizeof(*d));
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *f[FIELDS_MAX];
		struct dns_row *r;

		if (line[0] == '#' || split_tabs(line, f, 3) < 3)
			continue;
		assert_true(d->n < DNS_ROWS_MAX);
		r = &d->rows[d->n++];
		str_copy(r->name, f[0], sizeof(r->name));
		r->status = strcmp(f[1], "ok") == 0         ? DNS_OK
		            : strcmp(f[1], "tempfail") == 0 ? DNS_TEMPFAIL
		                                            : DNS_NXDOMAIN;
		r->txt = xstrdup(f[2]);
	}
	fclose(fp);
	free(path);
}

static void
dns_free_rows(struct fake_dns *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->rows[i].txt);
}

/* ---- running the checks on one message ---- */

struct run {
	struct scan_env env;
	struct scan_input in;
	struct scan_task t;
	struct config *cfg;
};

static void
run_start(struct run *r, struct fake_dns *dns, const unsigned char *msg, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->env.dns.txt = fake_txt;
	r->env.dns.ctx = dns;
	r->cfg = config_defaults();
	r->in.msg = msg;
	r->in.len = len;
	r->in.queue_id = "0123456789AB";
	r->t.env = &r->env;
	r->t.cfg = r->cfg;
	r->t.in = &r->in;
	scan_hdrs_split(msg, len, &r->t.hdrs);
}

static void
run_checks(struct run *r)
{
	scan_check_dkim(&r->t);
	scan_check_arc(&r->t);
}

static void
run_end(struct run *r)
{
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(r->t.detail[i]);
	scan_hdrs_free(&r->t.hdrs);
	config_unref(r->cfg);
}

/* "pass,fail": the DKIM results, top-down; "-" when there are none. */
static void
dkim_results(const struct scan_task *t, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->ndkim && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "",
		                      scan_auth_str(t->dkim[i].result));
	if (t->ndkim == 0)
		str_copy(buf, "-", size);
}

/* Every reason and symbol detail, for "the reason says why" checks. */
static bool
reasons_hold(const struct scan_task *t, const char *word)
{
	if (strcmp(word, "-") == 0)
		return true;
	for (size_t i = 0; i < t->ndkim; i++)
		if (strstr(t->dkim[i].reason, word))
			return true;
	if (strstr(t->arc.reason, word))
		return true;
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		if (t->detail[i] && strstr(t->detail[i], word))
			return true;
	return false;
}

/* The symbols must agree with the results. */
static void
check_symbols(const char *row, const struct scan_task *t)
{
	static const struct {
		enum scan_auth a;
		enum scan_sym_id sym;
	} map[] = {
	        {SCAN_AUTH_PASS, SYM_DKIM_PASS},
	        {SCAN_AUTH_FAIL, SYM_DKIM_FAIL},
	        {SCAN_AUTH_TEMPERROR, SYM_DKIM_TEMPERROR},
	        {SCAN_AUTH_PERMERROR, SYM_DKIM_PERMERROR},
	        {SCAN_AUTH_POLICY, SYM_DKIM_POLICY},
	};

	for (size_t m = 0; m < nitems(map); m++) {
		bool want = false;

		for (size_t i = 0; i < t->ndkim; i++)
			want |= t->dkim[i].result == map[m].a;
		if (scan_has(t, map[m].sym) != want)
			table_mismatch(row, "symbol %s: got %d, want %d",
			               scan_sym_defs[map[m].sym].name, scan_has(t, map[m].sym),
			               want);
	}
	if (scan_has(t, SYM_DKIM_NONE) != (t->ndkim == 0))
		table_mismatch(row, "DKIM_NONE: got %d, want %d", scan_has(t, SYM_DKIM_NONE),
		               t->ndkim == 0);
	if (scan_has(t, SYM_ARC_PASS) != (t->arc.result == SCAN_AUTH_PASS) ||
	    scan_has(t, SYM_ARC_FAIL) != (t->arc.result == SCAN_AUTH_FAIL) ||
	    scan_has(t, SYM_ARC_NONE) != (t->arc.result == SCAN_AUTH_NONE))
		table_mismatch(row, "ARC symbols do not match the result %s",
		               scan_auth_str(t->arc.result));
}

/* ---- the dkimpy fixtures: one row of cases.txt each ---- */

static void
test_dkim_fixtures(void **state)
{
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));
	char *path = data_path("cases.txt");
	FILE *fp = fopen(path, "r");
	char line[LINE_MAX_TEST];
	size_t rows = 0;

	(void)state;
	assert_non_null(fp);
	dns_load(dns);
	table_reset();
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *f[FIELDS_MAX], file[128], got[256];
		const char *row;
		unsigned char *msg;
		size_t len;
		struct run r;

		if (line[0] == '#' || split_tabs(line, f, FIELDS_MAX) < 5)
			continue;
		row = f[0];
		rows++;
		snprintf(file, sizeof(file), "msg/%s.eml", row);
		msg = read_file(file, &len);
		run_start(&r, dns, msg, len);
		run_checks(&r);

		dkim_results(&r.t, got, sizeof(got));
		if (strcmp(got, f[1]) != 0)
			table_mismatch(row, "dkim: got %s, want %s (%s)", got, f[1],
			               r.t.ndkim ? r.t.dkim[0].reason : "");
		if (strcmp(scan_auth_str(r.t.arc.result), f[2]) != 0)
			table_mismatch(row, "arc: got %s, want %s (%s)",
			               scan_auth_str(r.t.arc.result), f[2], r.t.arc.reason);
		snprintf(got, sizeof(got), "%u", r.t.arc.instances);
		if (strcmp(got, f[3]) != 0)
			table_mismatch(row, "arc instances: got %s, want %s", got, f[3]);
		if (!reasons_hold(&r.t, f[4]))
			table_mismatch(row, "no reason holds \"%s\" (dkim: %s; arc: %s)", f[4],
			               r.t.ndkim ? r.t.dkim[0].reason : "-", r.t.arc.reason);
		check_symbols(row, &r.t);
		for (size_t i = 0; i < r.t.ndkim; i++)
			if (r.t.dkim[i].result == SCAN_AUTH_PASS &&
			    (strlen(r.t.dkim[i].b) != 8 || r.t.dkim[i].domain[0] == '\0' ||
			     r.t.dkim[i].selector[0] == '\0' || r.t.dkim[i].algo[0] == '\0'))
				table_mismatch(row, "pass without d=, s=, a= or 8 chars of b=");
		run_end(&r);
		free(msg);
	}
	fclose(fp);
	free(path);
	dns_free_rows(dns);
	free(dns);
	if (rows < 70)
		table_mismatch("cases.txt", "got %zu rows, want at least 70", rows);
	assert_int_equal(table_failures, 0);
}

/* Fields of a pass: header.d, s, a, header.b (RFC 6008) and the l= detail. */
static void
test_dkim_recorded_fields(void **state)
{
	static const struct {
		const char *file, *domain, *selector, *algo, *detail;
	} rows[] = {
	        {"msg/rr_pass.eml", "example.test", "sel", "rsa-sha256", "d=example.test"},
	        {"msg/ed25519_pass.eml", "example.test", "ed", "ed25519-sha256", "d=example.test"},
	        {"msg/l_exact_pass.eml", "example.test", "sel", "rsa-sha256", " l="},
	        {"msg/l_appended_pass.eml", "example.test", "sel", "rsa-sha256", "+"},
	};
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));

	(void)state;
	dns_load(dns);
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		size_t len;
		unsigned char *msg = read_file(rows[i].file + 0, &len);
		struct run r;
		const struct scan_dkim_sig *s;
		const char *det;

		run_start(&r, dns, msg, len);
		run_checks(&r);
		s = &r.t.dkim[0];
		det = r.t.detail[SYM_DKIM_PASS] ? r.t.detail[SYM_DKIM_PASS] : "";
		if (r.t.ndkim != 1 || strcmp(s->domain, rows[i].domain) != 0 ||
		    strcmp(s->selector, rows[i].selector) != 0 ||
		    strcmp(s->algo, rows[i].algo) != 0)
			table_mismatch(rows[i].file, "got d=%s s=%s a=%s, want d=%s s=%s a=%s",
			               s->domain, s->selector, s->algo, rows[i].domain,
			               rows[i].selector, rows[i].algo);
		if (strstr(det, rows[i].detail) == NULL)
			table_mismatch(rows[i].file, "detail: got \"%s\", want it to hold \"%s\"",
			               det, rows[i].detail);
		/* header.b: the signature's first 8 characters */
		if (strstr((const char *)msg, s->b) == NULL || strlen(s->b) != 8)
			table_mismatch(rows[i].file, "header.b: got \"%s\"", s->b);
		run_end(&r);
		free(msg);
	}
	dns_free_rows(dns);
	free(dns);
	assert_int_equal(table_failures, 0);
}

/* ---- hand-written messages: what no signer makes ---- */

#define HDRS      "From: a@example.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n"
#define BODY      "\r\nbody\r\n"
#define SIG(tags) "DKIM-Signature: " tags "\r\n"
#define GOODB     "b=dGVzdA==; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

struct hand_case {
	const char *name;
	const char *msg;
	const char *dkim; /* results top-down, "-" for none */
	const char *arc;
	const char *word; /* a word of the reasons, "-" for any */
};

static const struct hand_case hand_cases[] = {
        {"unsigned", HDRS BODY, "-", "none", "-"},
        {"empty message", "", "-", "none", "-"},
        {"header only, no body", HDRS, "-", "none", "-"},
        {"empty tag-list", SIG("") HDRS BODY, "permerror", "none", "v="},
        {"only semicolons", SIG(";;;") HDRS BODY, "permerror", "none", "tag"},
        {"no value at all", SIG("v") HDRS BODY, "permerror", "none", "="},
        {"8-bit in a value", SIG("v=1; a=rsa-sha256; d=ex\xc3\xa9.test") HDRS BODY, "permerror",
         "none", "character"},
        {"NUL in a value", "DKIM-Signature: v=1; a=rsa\0sha256\r\n" HDRS BODY, "permerror", "none",
         "-"},
        {"v=1 twice", SIG("v=1; v=1; a=rsa-sha256") HDRS BODY, "permerror", "none", "duplicate"},
        {"missing a=", SIG("v=1; d=example.test; s=sel; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "a="},
        {"missing d=", SIG("v=1; a=rsa-sha256; s=sel; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "d="},
        {"missing s=", SIG("v=1; a=rsa-sha256; d=example.test; h=from; " GOODB) HDRS BODY,
         "permerror", "none", "s="},
        {"missing h=", SIG("v=1; a=rsa-sha256; d=example.test; s=sel; " GOODB) HDRS BODY,
         "permerror", "none", "h="},
        {"missing b=", SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; bh=AAAA") HDRS BODY,
         "permerror", "none", "b="},
        {"empty b=", SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; b=; bh=AAAA") HDRS BODY,
         "permerror", "none", "b="},
        {"b= padding inside",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; b=AA=A; bh=AAAA") HDRS BODY,
         "permerror", "none", "b="},
        {"empty name in h=",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from::to; " GOODB) HDRS BODY, "permerror",
         "none", "h="},
        {"d= with a space in a label",
         SIG("v=1; a=rsa-sha256; d=exa mple.test; s=sel; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "d="},
        {"d= with an empty label",
         SIG("v=1; a=rsa-sha256; d=example..test; s=sel; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "d="},
        {"s= with a slash",
         SIG("v=1; a=rsa-sha256; d=example.test; s=a/b; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "s="},
        {"l= not a number",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; l=-1; " GOODB) HDRS BODY,
         "permerror", "none", "l="},
        {"l= huge",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; l=99999999999999999999; " GOODB)
                 HDRS BODY,
         "permerror", "none", "l="},
        {"t= not a number",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; t=soon; " GOODB) HDRS BODY,
         "permerror", "none", "t="},
        {"q= other than dns/txt",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; q=http; " GOODB) HDRS BODY,
         "permerror", "none", "q="},
        {"i= without @",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; i=example.test; " GOODB) HDRS BODY,
         "permerror", "none", "i="},
        {"i= in a parent of d=",
         SIG("v=1; a=rsa-sha256; d=mail.example.test; s=sel; h=from; i=@example.test; " GOODB)
                 HDRS BODY,
         "permerror", "none", "i="},
        {"i= in a lookalike of d=",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; i=@badexample.test; " GOODB)
                 HDRS BODY,
         "permerror", "none", "i="},
        {"no key (nxdomain)",
         SIG("v=1; a=rsa-sha256; d=example.test; s=nokey; h=from; " GOODB) HDRS BODY, "permerror",
         "none", "no key"},
        {"key lookup tempfail",
         SIG("v=1; a=rsa-sha256; d=example.test; s=temp; h=from; " GOODB) HDRS BODY, "temperror",
         "none", "temporarily"},
        {"bh= of the wrong length",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; b=dGVzdA==; bh=AAAA") HDRS BODY,
         "fail", "none", "body"},
        {"l= longer than the body",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; l=1000; " GOODB) HDRS BODY, "fail",
         "none", "l="},
        {"garbage signature of the right shape",
         SIG("v=1; a=rsa-sha256; d=example.test; s=sel; h=from; l=0; " GOODB) HDRS BODY, "fail",
         "none", "verify"},
        {"two signatures, garbage first", SIG("v=1") SIG("v=1; a=x") HDRS BODY,
         "permerror,permerror", "none", "-"},
        /* ARC structure */
        {"ARC: an AAR alone", "ARC-Authentication-Results: i=1; x.test; none\r\n" HDRS BODY, "-",
         "fail", "incomplete"},
        {"ARC: AAR without i=", "ARC-Authentication-Results: x.test; none\r\n" HDRS BODY, "-",
         "fail", "i="},
        {"ARC: i=0", "ARC-Seal: i=0; cv=none\r\n" HDRS BODY, "-", "fail", "i="},
        {"ARC: i=99999999999999999999", "ARC-Seal: i=99999999999999999999; cv=none\r\n" HDRS BODY,
         "-", "fail", "i="},
        {"ARC: seal of broken tags", "ARC-Seal: i=1; i=1\r\n" HDRS BODY, "-", "fail", "i="},
        {"ARC: a full set of garbage",
         "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=hop1.test; s=arc; b=dGVzdA==\r\n"
         "ARC-Message-Signature: i=1; a=rsa-sha256; d=hop1.test; s=arc; h=from; " GOODB "\r\n"
         "ARC-Authentication-Results: i=1; hop1.test; none\r\n" HDRS BODY,
         "-", "fail", "ARC-Message-Signature"},
        {"ARC: set with cv=fail",
         "ARC-Seal: i=1; cv=fail; a=rsa-sha256; d=hop1.test; s=arc; b=dGVzdA==\r\n"
         "ARC-Message-Signature: i=1; a=rsa-sha256; d=hop1.test; s=arc; h=from; " GOODB "\r\n"
         "ARC-Authentication-Results: i=1; hop1.test; none\r\n" HDRS BODY,
         "-", "fail", "cv=fail"},
        {"ARC: AMS signs ARC-Seal",
         "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=hop1.test; s=arc; b=dGVzdA==\r\n"
         "ARC-Message-Signature: i=1; a=rsa-sha256; d=hop1.test; s=arc; h=from:arc-seal; " GOODB
         "\r\n"
         "ARC-Authentication-Results: i=1; hop1.test; none\r\n" HDRS BODY,
         "-", "fail", "ARC-Seal"},
};

static void
check_hand(struct fake_dns *dns, const struct hand_case *c, size_t len)
{
	struct run r;
	char got[256];

	run_start(&r, dns, (const unsigned char *)c->msg, len);
	run_checks(&r);
	dkim_results(&r.t, got, sizeof(got));
	if (strcmp(got, c->dkim) != 0)
		table_mismatch(c->name, "dkim: got %s, want %s (%s)", got, c->dkim,
		               r.t.ndkim ? r.t.dkim[0].reason : "");
	if (strcmp(scan_auth_str(r.t.arc.result), c->arc) != 0)
		table_mismatch(c->name, "arc: got %s, want %s (%s)", scan_auth_str(r.t.arc.result),
		               c->arc, r.t.arc.reason);
	if (!reasons_hold(&r.t, c->word))
		table_mismatch(c->name, "no reason holds \"%s\" (dkim: %s; arc: %s)", c->word,
		               r.t.ndkim ? r.t.dkim[0].reason : "-", r.t.arc.reason);
	check_symbols(c->name, &r.t);
	run_end(&r);
}

static void
test_dkim_hand_table(void **state)
{
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));

	(void)state;
	dns_load(dns);
	table_reset();
	for (size_t i = 0; i < nitems(hand_cases); i++) {
		const struct hand_case *c = &hand_cases[i];
		/* the one row holding a NUL: its length is that of the literal */
		size_t len =
		        strstr(c->name, "NUL")
		                ? sizeof("DKIM-Signature: v=1; a=rsa\0sha256\r\n" HDRS BODY) - 1
		                : strlen(c->msg);

		check_hand(dns, c, len);
	}
	dns_free_rows(dns);
	free(dns);
	assert_int_equal(table_failures, 0);
}

/* A passed deadline: no lookup, temperror, and no wait. */
static void
test_dkim_deadline(void **state)
{
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));
	size_t len;
	unsigned char *msg;
	struct run r;

	(void)state;
	dns_load(dns);
	msg = read_file("msg/arc_dkim_and_arc.eml", &len);
	run_start(&r, dns, msg, len);
	r.t.deadline_ms = 1; /* long past */
	run_checks(&r);
	assert_int_equal(dns->lookups, 0);
	assert_int_equal(r.t.ndkim, 1);
	assert_int_equal(r.t.dkim[0].result, SCAN_AUTH_TEMPERROR);
	assert_true(scan_has(&r.t, SYM_DKIM_TEMPERROR));
	assert_int_equal(r.t.arc.result, SCAN_AUTH_FAIL);
	assert_non_null(strstr(r.t.arc.reason, "temperror"));
	run_end(&r);
	free(msg);
	dns_free_rows(dns);
	free(dns);
}

/* More signatures than SCAN_DKIM_MAX: the first ones verified, the rest counted. */
static void
test_dkim_too_many(void **state)
{
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));
	size_t len, siglen, n = SCAN_DKIM_MAX + 3;
	unsigned char *one = NULL, *msg;
	const char *end;
	struct run r;

	(void)state;
	dns_load(dns);
	one = read_file("msg/rr_pass.eml", &len);
	/* rr_pass: Received (3 lines), then the signature up to "From:" */
	end = strstr((const char *)one, "\r\nFrom:");
	assert_non_null(end);
	{
		const char *sig = strstr((const char *)one, "DKIM-Signature:");
		size_t off = (size_t)(sig - (const char *)one), o = 0;

		siglen = (size_t)(end + 2 - sig);
		msg = xmalloc(len + n * siglen);
		memcpy(msg, one, off);
		o = off;
		for (size_t i = 0; i < n; i++, o += siglen)
			memcpy(msg + o, sig, siglen);
		memcpy(msg + o, one + off + siglen, len - off - siglen);
		o += len - off - siglen;
		len = o;
	}
	run_start(&r, dns, msg, len);
	run_checks(&r);
	assert_int_equal(r.t.ndkim, SCAN_DKIM_MAX);
	for (size_t i = 0; i < r.t.ndkim; i++)
		assert_int_equal(r.t.dkim[i].result, SCAN_AUTH_PASS);
	assert_true(scan_has(&r.t, SYM_DKIM_TOO_MANY));
	assert_non_null(strstr(r.t.detail[SYM_DKIM_TOO_MANY], "3 ignored"));
	run_end(&r);
	free(msg);
	free(one);
	dns_free_rows(dns);
	free(dns);
}

/* Every prefix of signed messages: never a crash, never a pass of a cut body. */
static void
test_dkim_truncations(void **state)
{
	static const char *const files[] = {"msg/arc2_pass.eml", "msg/ss_pass.eml"};
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));

	(void)state;
	dns_load(dns);
	table_reset();
	for (size_t f = 0; f < nitems(files); f++) {
		size_t len;
		unsigned char *msg = read_file(files[f], &len);

		for (size_t cut = 0; cut < len; cut += 7) {
			unsigned char *copy = xmalloc(cut + 1); /* exactly cut octets for ASan */
			struct run r;

			memcpy(copy, msg, cut);
			run_start(&r, dns, copy, cut);
			run_checks(&r);
			/* the body is "...\r\nAlice\r\n": cut within it, nothing can pass */
			if (cut < len - 2 && cut > len - 20 &&
			    (r.t.arc.result == SCAN_AUTH_PASS ||
			     (r.t.ndkim > 0 && r.t.dkim[0].result == SCAN_AUTH_PASS)))
				table_mismatch(files[f], "a cut at %zu of %zu passes", cut, len);
			run_end(&r);
			free(copy);
		}
		free(msg);
	}
	dns_free_rows(dns);
	free(dns);
	assert_int_equal(table_failures, 0);
}

/* Octets of signed messages overwritten at pseudo-random places: never a crash. */
static void
test_dkim_mutations(void **state)
{
	static const char *const files[] = {"msg/arc2_pass.eml", "msg/signs_earlier_signature.eml",
	                                    "msg/ed25519_pass.eml"};
	static const unsigned char octets[] = {';', '=', ':', ' ',  '\r', '\n', '\t', '\0',
	                                       'i', '1', '9', 0xff, '/',  '+',  'b',  'h'};
	struct fake_dns *dns = xcalloc(1, sizeof(*dns));
	uint32_t seed = 12345;

	(void)state;
	dns_load(dns);
	for (size_t f = 0; f < nitems(files); f++) {
		size_t len;
		unsigned char *msg = read_file(files[f], &len);

		for (int round = 0; round < 300; round++) {
			unsigned char *copy = xmalloc(len);
			struct run r;

			memcpy(copy, msg, len);
			for (int k = 0; k < 1 + round % 4; k++) {
				seed = seed * 1103515245u + 12345u;
				copy[(seed >> 8) % len] = octets[(seed >> 4) % nitems(octets)];
			}
			run_start(&r, dns, copy, len);
			run_checks(&r);
			assert_true(r.t.ndkim <= SCAN_DKIM_MAX);
			assert_true(r.t.arc.instances <= 50);
			run_end(&r);
			free(copy);
		}
		free(msg);
	}
	dns_free_rows(dns);
	free(dns);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dkim_fixtures),   cmocka_unit_test(test_dkim_recorded_fields),
	        cmocka_unit_test(test_dkim_hand_table), cmocka_unit_test(test_dkim_deadline),
	        cmocka_unit_test(test_dkim_too_many),   cmocka_unit_test(test_dkim_truncations),
	        cmocka_unit_test(test_dkim_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
