/*
 * test_rules.c - table-driven tests of administrator rules: the grammar
 * (src/policy/rules.c: every condition and action, every error), the
 * [rule] sections of the config file (errors name their line), and the
 * evaluation in the scan pipeline (src/scan/scan_rules.c) on hand-built
 * tasks and through scan_run() with a fake DNS: each condition, exceptions,
 * priority, stop, disabled rules, each action, and the precedence of rule
 * outcomes against malware and the allow and block lists.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "policy/rules.h"
#include "scan/scan_internal.h"
#include "store/store.h"

#include "scan_fake_dns.h"
#include "table.h"

/* --- the grammar, one line at a time --- */

struct line_case {
	bool action; /* an action line, else a condition */
	const char *text;
	const char *want; /* NULL: parses; else a substring of the error */
	int kind;         /* when it parses: enum rule_cond_kind / rule_action_kind */
};

#define COND(t, k)                                                                                 \
	{                                                                                          \
		false, t, NULL, k                                                                  \
	}
#define COND_BAD(t, e)                                                                             \
	{                                                                                          \
		false, t, e, 0                                                                     \
	}
#define ACTION(t, k)                                                                               \
	{                                                                                          \
		true, t, NULL, k                                                                   \
	}
#define ACTION_BAD(t, e)                                                                           \
	{                                                                                          \
		true, t, e, 0                                                                      \
	}

static const struct line_case line_cases[] = {
        COND("sender-ip 192.0.2.0/24", RULE_C_SENDER_IP),
        COND("sender-ip 192.0.2.1, 2001:db8::/32 198.51.100.0/24", RULE_C_SENDER_IP),
        COND("  SENDER-IP\t10.0.0.0/8  ", RULE_C_SENDER_IP),
        COND_BAD("sender-ip 300.1.1.1", "'300.1.1.1' is not an address"),
        COND_BAD("sender-ip 192.0.2.0/33", "is not an address"),
        COND_BAD("sender-ip ,", "at least one range"),
        COND_BAD("sender-ip", "needs a value"),
        COND("sender alice@Example.TEST", RULE_C_SENDER),
        COND("sender @partner.example, bob@x.test", RULE_C_SENDER),
        COND_BAD("sender alice", "'alice' is not an address or @domain"),
        COND_BAD("sender @", "not an address or @domain"),
        COND_BAD("sender @a@b.test", "not an address or @domain"),
        COND_BAD("sender a%b@c.test", "not an address"),
        COND_BAD("sender u@[192.0.2.1]", "not an address"),
        COND("recipient ceo@example.test", RULE_C_RECIPIENT),
        COND_BAD("recipient ceo@", "not an address"),
        COND("header Subject ^(invoice|statement)", RULE_C_HEADER),
        COND("header X-Mailer [a-z]{1,10}x{2}", RULE_C_HEADER),
        COND("header List-Id [[:alpha:]]+ [{]", RULE_C_HEADER),
        COND_BAD("header Subject", "no pattern"),
        COND_BAD("header Sub:ject x", "not a header field name"),
        COND_BAD("header Subject (a", "bad pattern"),
        COND_BAD("header Subject (a)\\1", "back-references"),
        COND_BAD("header Subject (a{1,100}){1,100}", "multiply to more than 1000"),
        COND_BAD("header Subject a{99999}", "multiply to more than 1000"),
        COND_BAD("header Subject a++", "repetition of a repetition"),
        COND_BAD("header Subject a*{2}", "repetition of a repetition"),
        COND_BAD("header Subject a{2}*", "repetition of a repetition"),
        COND("header Subject [+*]+ (a*)* \\** a?b+", RULE_C_HEADER),
        COND_BAD("header Subject ((((((((((a))))))))))", "nested deeper than 8"),
        COND("header Subject (a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", RULE_C_HEADER),
        COND("attachment *.exe", RULE_C_ATTACHMENT),
        COND("attachment *.exe, my file?.pdf ,[ab]*.js", RULE_C_ATTACHMENT),
        COND_BAD("attachment ,,", "at least one item"),
        COND("verdict quarantine", RULE_C_VERDICT),
        COND("verdict Reject", RULE_C_VERDICT),
        COND_BAD("verdict tempfail", "not deliver, quarantine or reject"),
        COND("score >= 5", RULE_C_SCORE_GE),
        COND("score >=-2.5", RULE_C_SCORE_GE),
        COND("score < 0", RULE_C_SCORE_LT),
        COND_BAD("score > 5", "'>= N' or '< N'"),
        COND_BAD("score <= 5", "'>= N' or '< N'"),
        COND_BAD("score >= lots", "not a number"),
        COND_BAD("score >= 1e9", "not a number"),
        COND_BAD("score >= nan", "not a number"),
        COND("symbol GTUBE", RULE_C_SYMBOL),
        COND("symbol dkim_pass", RULE_C_SYMBOL),
        COND_BAD("symbol NOPE", "not a scan symbol"),
        COND_BAD("from x@y.test", "unknown condition 'from'"),
        COND_BAD("", "empty condition"),
        COND_BAD("sender a@b.test\x01", "control character"),
        ACTION("score 3", RULE_A_SCORE),
        ACTION("score -2.5", RULE_A_SCORE),
        ACTION_BAD("score", "not a number"),
        ACTION_BAD("score 10001", "not a number"),
        ACTION("quarantine", RULE_A_QUARANTINE),
        ACTION("REJECT", RULE_A_REJECT),
        ACTION("deliver", RULE_A_DELIVER),
        ACTION_BAD("deliver now", "takes no value"),
        ACTION("set-header X-Partner: yes", RULE_A_SET_HEADER),
        ACTION("set-header X-MS-Exchange-Organization-SCL:-1", RULE_A_SET_HEADER),
        ACTION_BAD("set-header X-Partner", "NAME: VALUE expected"),
        ACTION_BAD("set-header X-Partner:", "value is empty"),
        ACTION_BAD("set-header : v", "NAME: VALUE expected"),
        ACTION_BAD("set-header X-A: caf\xc3\xa9", "printable ASCII"),
        ACTION_BAD("set-header X-Moat-Verdict: deliver", "moat's or MIME's"),
        ACTION_BAD("set-header Content-Type: text/plain", "moat's or MIME's"),
        ACTION("remove-header X-Spam-Flag", RULE_A_REMOVE_HEADER),
        ACTION_BAD("remove-header Received", "moat's or MIME's"),
        ACTION_BAD("remove-header authentication-results", "moat's or MIME's"),
        ACTION_BAD("remove-header X-Moat-Relay-Key", "moat's or MIME's"),
        ACTION_BAD("remove-header MIME-Version", "moat's or MIME's"),
        ACTION_BAD("remove-header", "not a header field name"),
        ACTION_BAD("remove-header A B", "not a header field name"),
        ACTION("skip spf", RULE_A_SKIP),
        ACTION("skip RSPAMD", RULE_A_SKIP),
        ACTION_BAD("skip clamd", "never skipped"),
        ACTION_BAD("skip everything", "is not spf, dkim"),
        ACTION_BAD("route smtp:[192.0.2.1]:25", "route is not supported"),
        ACTION_BAD("drop", "unknown action 'drop'"),
};

static void
test_rules_lines(void **state)
{
	char row[64], err[512];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(line_cases); i++) {
		const struct line_case *c = &line_cases[i];
		struct rule_cond cond;
		struct rule_action act;
		int r, kind;

		snprintf(row, sizeof(row), "row %zu", i);
		err[0] = '\0';
		if (c->action) {
			r = rule_action_parse(c->text, &act, err, sizeof(err));
			kind = (int)act.kind;
		} else {
			r = rule_cond_parse(c->text, &cond, err, sizeof(err));
			kind = (int)cond.kind;
		}
		if (c->want == NULL && r < 0)
			table_mismatch(row, "'%s': got error '%s', want it parsed",
			               table_esc(c->text, strlen(c->text)), err);
		else if (c->want == NULL && kind != c->kind)
			table_mismatch(row, "'%s': kind got %d, want %d", c->text, kind, c->kind);
		else if (c->want && r == 0)
			table_mismatch(row, "'%s': parsed, want error '%s'",
			               table_esc(c->text, strlen(c->text)), c->want);
		else if (c->want && strstr(err, c->want) == NULL)
			table_mismatch(row, "'%s': error got '%s', want '%s'",
			               table_esc(c->text, strlen(c->text)), err, c->want);
		if (r == 0 && c->action)
			rule_action_clear(&act);
		else if (r == 0)
			rule_cond_clear(&cond);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Parsed values, not just the kind. */
static void
test_rules_values(void **state)
{
	struct rule_cond c;
	struct rule_action a;
	char err[256];

	(void)state;
	assert_int_equal(
	        rule_cond_parse("sender Bob@Partner.Example, @Sub.Example", &c, err, sizeof(err)),
	        0);
	assert_int_equal(c.nitems, 2);
	assert_string_equal(c.items[0], "bob@partner.example");
	assert_string_equal(c.items[1], "@sub.example");
	rule_cond_clear(&c);
	assert_int_equal(rule_cond_parse("attachment  a b.pdf , *.js", &c, err, sizeof(err)), 0);
	assert_int_equal(c.nitems, 2);
	assert_string_equal(c.items[0], "a b.pdf");
	assert_string_equal(c.items[1], "*.js");
	rule_cond_clear(&c);
	assert_int_equal(rule_cond_parse("score < -1.5", &c, err, sizeof(err)), 0);
	assert_true(c.score == -1.5);
	rule_cond_clear(&c);
	assert_int_equal(rule_cond_parse("header subject x", &c, err, sizeof(err)), 0);
	assert_string_equal(c.hdr_name, "subject");
	assert_string_equal(c.text, "header subject x");
	rule_cond_clear(&c);
	assert_int_equal(rule_action_parse("set-header X-A :  a b  ", &a, err, sizeof(err)), 0);
	assert_string_equal(a.hdr_name, "X-A");
	assert_string_equal(a.hdr_value, "a b");
	rule_action_clear(&a);
	assert_int_equal(rule_action_parse("skip dnsbl", &a, err, sizeof(err)), 0);
	assert_int_equal(a.check, RULE_CHECK_DNSBL);
	assert_string_equal(rule_check_name(a.check), "dnsbl");
	rule_action_clear(&a);
}

/* Bounds: list items, line length, pattern length. */
static void
test_rules_bounds(void **state)
{
	char *line = xcalloc(1, RULE_TEXT_MAX + 64), err[256];
	struct rule_cond c;
	size_t o;

	(void)state;
	o = (size_t)snprintf(line, RULE_TEXT_MAX, "attachment ");
	for (size_t i = 0; i <= RULE_LIST_MAX; i++)
		o += (size_t)snprintf(line + o, RULE_TEXT_MAX - o, "%zu,", i);
	assert_int_equal(rule_cond_parse(line, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 256 items"));
	memset(line, 'a', RULE_TEXT_MAX + 1);
	memcpy(line, "sender ", 7);
	line[RULE_TEXT_MAX + 1] = '\0';
	assert_int_equal(rule_cond_parse(line, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than"));
	memset(line, 0, RULE_TEXT_MAX + 64);
	o = (size_t)snprintf(line, 64, "header Subject ");
	memset(line + o, 'x', RULE_REGEX_MAX + 1);
	assert_int_equal(rule_cond_parse(line, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than 512"));
	line[o + RULE_REGEX_MAX] = '\0';
	assert_int_equal(rule_cond_parse(line, &c, err, sizeof(err)), 0);
	rule_cond_clear(&c);
	free(line);
}

/* --- whole rules --- */

struct spec_case {
	const char *name;
	const char *ifs[3], *unless[2], *then[3];
	const char *want; /* NULL: builds */
	bool early, skips;
};

static const struct spec_case spec_cases[] = {
        {"ok", {"sender @a.test"}, {"recipient b@c.test"}, {"score 1"}, NULL, true, false},
        {"no conditions", {NULL}, {NULL}, {"set-header X-A: b"}, NULL, true, false},
        {"skip early",
         {"sender-ip 192.0.2.0/24"},
         {NULL},
         {"skip spf", "score -1"},
         NULL,
         true,
         true},
        {"late", {"score >= 3"}, {"symbol DKIM_PASS"}, {"quarantine"}, NULL, false, false},
        {"skip late",
         {"verdict quarantine"},
         {NULL},
         {"skip dkim"},
         "skip runs before",
         false,
         false},
        {"skip late exception",
         {NULL},
         {"symbol SPF_PASS"},
         {"skip dkim"},
         "skip runs before",
         false,
         false},
        {"conflict", {NULL}, {NULL}, {"deliver", "reject"}, "conflicting actions", false, false},
        {"no action", {"sender @a.test"}, {NULL}, {NULL}, "at least one 'then'", false, false},
        {"bad name!", {NULL}, {NULL}, {"score 1"}, "is not a rule name", false, false},
        {"", {NULL}, {NULL}, {"score 1"}, "is not a rule name", false, false},
        {"bad if", {"sender x"}, {NULL}, {"score 1"}, "if: sender: 'x'", false, false},
        {"bad unless", {NULL}, {"verdict x"}, {"score 1"}, "unless: verdict", false, false},
        {"bad then", {NULL}, {NULL}, {"score x"}, "then: score", false, false},
};

static size_t
spec_count(const char *const *l, size_t max)
{
	size_t n = 0;

	while (n < max && l[n])
		n++;
	return n;
}

static void
test_rules_specs(void **state)
{
	char row[64], err[512];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(spec_cases); i++) {
		const struct spec_case *c = &spec_cases[i];
		struct rule_spec s = {
		        .name = c->name,
		        .priority = (unsigned)i,
		        .enabled = true,
		        .ifs = c->ifs,
		        .nifs = spec_count(c->ifs, 3),
		        .unless = c->unless,
		        .nunless = spec_count(c->unless, 2),
		        .then = c->then,
		        .nthen = spec_count(c->then, 3),
		};
		struct rule *r;

		snprintf(row, sizeof(row), "rule '%s'", c->name);
		err[0] = '\0';
		r = rule_new(&s, err, sizeof(err));
		if (c->want == NULL && r == NULL)
			table_mismatch(row, "got error '%s', want a rule", err);
		else if (c->want && r)
			table_mismatch(row, "built, want error '%s'", c->want);
		else if (c->want && strstr(err, c->want) == NULL)
			table_mismatch(row, "error got '%s', want '%s'", err, c->want);
		else if (r && (r->early != c->early || r->skips != c->skips))
			table_mismatch(row, "early/skips got %d/%d, want %d/%d", r->early, r->skips,
			               c->early, c->skips);
		rule_free(r);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* Too many lines, too high a priority. */
static void
test_rules_spec_bounds(void **state)
{
	const char *lines[RULE_ITEMS_MAX + 1];
	struct rule_spec s = {.name = "big", .then = lines, .nthen = 1};
	char err[256];

	(void)state;
	for (size_t i = 0; i < nitems(lines); i++)
		lines[i] = "score 1";
	s.nthen = RULE_ITEMS_MAX + 1;
	assert_null(rule_new(&s, err, sizeof(err)));
	assert_non_null(strstr(err, "more than 32 'then'"));
	s.nthen = 1;
	s.ifs = lines; /* "score 1" is not a condition, but the count is checked first */
	s.nifs = RULE_ITEMS_MAX + 1;
	assert_null(rule_new(&s, err, sizeof(err)));
	assert_non_null(strstr(err, "more than 32 'if'"));
	s.nifs = 0;
	s.priority = RULE_PRIORITY_MAX + 1;
	assert_null(rule_new(&s, err, sizeof(err)));
	assert_non_null(strstr(err, "priority"));
}

/* --- the config file --- */

/* The body starts on line 2; the domain comes after it. */
static const char conf_head[] = "hostname = mx.moat.test\n";
static const char conf_tail[] = "\n[domain example.test]\nrecipients = any\n";

/* Load conf_head + body + conf_tail from a temporary file; NULL with err. */
static struct config *
conf_load(const char *body, char *err, size_t errsize)
{
	char path[] = "/tmp/moat-test-rules-XXXXXX";
	int fd = mkstemp(path);
	struct config *c;
	FILE *fp = NULL;

	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL)
		fail_msg("mkstemp");
	fputs(conf_head, fp);
	fputs(body, fp);
	fputs(conf_tail, fp);
	fclose(fp);
	c = config_load(path, err, errsize);
	unlink(path);
	return c;
}

struct conf_case {
	const char *body;
	const char *want; /* NULL: loads; else ":LINE: message" substring */
};

static const struct conf_case conf_cases[] = {
        {"[rule a]\npriority = 1\nif = sender @x.test\nthen = score 1\n", NULL},
        {"[rule a b.c-d_e]\npriority = 0\nenabled = no\nstop = yes\nthen = deliver\n", NULL},
        {"[rule a]\npriority = 1\nthen = score 1\n[rule A]\npriority = 2\nthen = score 1\n",
         ":5: rule 'A' is already declared on line 2"},
        {"[rule a]\npriority = 1\nthen = score 1\n[rule b]\npriority = 1\nthen = score 1\n",
         ":6: priority 1 is already used by rule 'a' on line 3"},
        {"[rule a]\nthen = score 1\n", ":2: [rule a] needs 'priority = N'"},
        {"[rule a]\npriority = 1\n", ":2: [rule a] a rule needs at least one 'then'"},
        {"[rule a]\npriority = 1\nif = sender-ip 300.1.1.1\nthen = reject\n",
         ":4: if: sender-ip: '300.1.1.1'"},
        {"[rule a]\npriority = 1\nunless = header Subject (\nthen = reject\n",
         ":4: unless: header: bad pattern"},
        {"[rule a]\npriority = 1\nthen = route smtp:[192.0.2.1]:25\n",
         ":4: then: route is not supported"},
        {"[rule a]\npriority = 1\nthen = skip clamd\n", ":4: then: skip: malware scanning"},
        {"[rule a]\npriority = x\nthen = score 1\n", ":3: priority: 'x' is not a whole number"},
        {"[rule a]\npriority = 1000001\n", ":3: priority: '1000001'"},
        {"[rule a]\npriority = 1\nenabled = maybe\n", ":4: enabled: 'maybe' is not yes or no"},
        {"[rule a]\npriority = 1\nfrom = x\n", ":4: unknown key 'from' in [rule a]"},
        {"[rule a!]\n", ":2: 'a!' is not a rule name"},
        {"[rule a]\npriority = 1\nif = score >= 1\nthen = skip spf\n",
         ":2: [rule a] skip runs before the checks"},
        {"[rule a]\npriority = 1\nthen = quarantine\nthen = deliver\n",
         ":2: [rule a] conflicting actions"},
        {"relay_key_header = X-Relay\n[rule a]\npriority = 1\nthen = score 1\n"
         "then = set-header X-Relay: k\n",
         ":6: then: X-Relay is the relay_key_header"},
        {"[rules a]\n", ":2: unknown section '[rules a]'"},
        /* a [domain] after a [rule] takes its keys back */
        {"[rule a]\npriority = 1\nthen = score 1\n[domain b.test]\nrecipients = any\n", NULL},
};

static void
test_rules_config(void **state)
{
	char row[64], err[512];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(conf_cases); i++) {
		const struct conf_case *c = &conf_cases[i];
		struct config *cfg;

		snprintf(row, sizeof(row), "row %zu", i);
		err[0] = '\0';
		cfg = conf_load(c->body, err, sizeof(err));
		if (c->want == NULL && cfg == NULL)
			table_mismatch(row, "got error '%s', want it loaded", err);
		else if (c->want && cfg)
			table_mismatch(row, "loaded, want error '%s'", c->want);
		else if (c->want && strstr(err, c->want) == NULL)
			table_mismatch(row, "error got '%s', want '%s'", err, c->want);
		config_unref(cfg);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* The policy keeps enabled rules only, sorted by priority. */
static void
test_rules_policy(void **state)
{
	char err[512];
	struct config *c = conf_load("[rule c]\npriority = 30\nthen = score 1\n"
	                             "[rule a]\npriority = 10\nthen = score 1\n"
	                             "[rule off]\npriority = 5\nenabled = no\nthen = score 1\n"
	                             "[rule b]\npriority = 20\nthen = score 1\n",
	                             err, sizeof(err));
	const struct rule *const *r;
	struct policy *p;
	size_t n;

	(void)state;
	if (c == NULL)
		fail_msg("%s", err);
	p = policy_from_config(c);
	r = policy_rules(p, &n);
	assert_int_equal(n, 3);
	assert_string_equal(r[0]->name, "a");
	assert_string_equal(r[1]->name, "b");
	assert_string_equal(r[2]->name, "c");
	policy_unref(p);
	config_unref(c);
}

/* The store seeds once from the file, then is where rules and lists live. */
static void
test_rules_store(void **state)
{
	char err[512], dir[] = "/tmp/moat-test-policy-XXXXXX", path[64], cmd[96];
	struct config *c = conf_load("scan_allow_senders = friend@partner.test\n"
	                             "scan_block_senders = @spam.test\n"
	                             "[rule b]\npriority = 20\nthen = score 1\n"
	                             "[rule a]\npriority = 10\nif = sender @x.test\n"
	                             "then = score 2\n",
	                             err, sizeof(err));
	struct config *c2;
	const char *const then[] = {"quarantine"};
	struct rule_spec z = {
	        .name = "z", .priority = 5, .enabled = true, .then = then, .nthen = 1};
	struct store_list_entry e = {
	        .scope = "Example.TEST", .kind = STORE_LIST_BLOCK, .pattern = "bad@partner.test"};
	const struct rule *const *r;
	struct store *st;
	struct policy *p;
	size_t n;

	(void)state;
	if (c == NULL)
		fail_msg("%s", err);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	assert_non_null(st = store_open(path, err, sizeof(err)));
	assert_int_equal(policy_seed(c, st, err, sizeof(err)), 0);
	assert_non_null(p = policy_from_store(c, st, POLICY_STRICT, err, sizeof(err)));
	r = policy_rules(p, &n);
	assert_int_equal(n, 2);
	assert_string_equal(r[0]->name, "a");
	assert_string_equal(r[1]->name, "b");
	assert_int_equal(policy_sender_list(p, "example.test", "friend@partner.test"),
	                 POLICY_LIST_ALLOW);
	assert_int_equal(policy_sender_list(p, "example.test", "x@SPAM.test"), POLICY_LIST_BLOCK);
	policy_unref(p);

	/* changed in the store (as the API does); the file's sections are not read again */
	assert_int_equal(store_rule_put(st, &z), STORE_OK);
	assert_int_equal(store_rule_delete(st, "b"), STORE_OK);
	assert_int_equal(store_list_add(st, &e), STORE_OK);
	assert_int_equal(store_list_delete(st, "", STORE_LIST_ALLOW, "friend@partner.test"),
	                 STORE_OK);
	c2 = conf_load("[rule other]\npriority = 1\nthen = reject\n", err, sizeof(err));
	assert_non_null(c2);
	assert_int_equal(policy_seed(c2, st, err, sizeof(err)), 0);
	assert_non_null(p = policy_from_store(c2, st, POLICY_STRICT, err, sizeof(err)));
	r = policy_rules(p, &n);
	assert_int_equal(n, 2);
	assert_string_equal(r[0]->name, "z");
	assert_string_equal(r[1]->name, "a");
	assert_int_equal(policy_sender_list(p, "example.test", "friend@partner.test"),
	                 POLICY_LIST_NONE);
	assert_int_equal(policy_sender_list(p, "example.test", "bad@partner.test"),
	                 POLICY_LIST_BLOCK);
	assert_int_equal(policy_sender_list(p, "other.test", "bad@partner.test"), POLICY_LIST_NONE);
	policy_unref(p);

	/* domains added through the API join the file's; the file's win */
	{
		struct store_domain d1 = {.name = "new.test",
		                          .body = "recipients = any\nroute = smtp:[192.0.2.7]:25\n"
		                                  "tls = none\n"};
		struct store_domain d2 = {.name = "example.test", .body = "recipients = x\n"};
		struct store_domain d3 = {.name = "broken.test", .body = "route = nowhere\n"};
		struct store_list_entry e2 = {.scope = "new.test",
		                              .kind = STORE_LIST_ALLOW,
		                              .pattern = "ok@partner.test"};
		struct config_domain cd;
		struct mailaddr a;
		size_t i, n2;

		assert_int_equal(store_domain_put(st, &d1), STORE_OK);
		assert_int_equal(store_domain_put(st, &d2), STORE_OK);
		assert_int_equal(store_domain_put(st, &d3), STORE_OK);
		assert_int_equal(store_list_add(st, &e2), STORE_OK);
		/* one that no longer passes: a reload refuses, a start leaves it out */
		assert_null(policy_from_store(c2, st, POLICY_STRICT, err, sizeof(err)));
		assert_non_null(strstr(err, "domain broken.test (added through the API)"));
		assert_non_null(p = policy_from_store(c2, st, 0, err, sizeof(err)));
		assert_int_equal(policy_domain_count(p), 2);
		assert_true(policy_is_protected(p, "new.test"));
		assert_false(policy_is_protected(p, "broken.test"));
		for (i = 0; i < 2 && strcmp(policy_domain_name(p, i), "new.test") != 0; i++)
			;
		assert_true(policy_domain_stored(p, i));
		assert_false(policy_domain_stored(p, 1 - i));
		assert_int_equal(policy_route_for(p, "new.test")->type, ROUTE_SMTP);
		/* example.test is still the file's: any recipient */
		assert_int_equal(
		        mailaddr_parse("anyone@example.test", 19, MAILADDR_F_NO_ANGLES, &a, NULL),
		        MAILADDR_OK);
		assert_int_equal(policy_check_rcpt(p, &a), POLICY_RCPT_OK);
		assert_int_equal(policy_sender_list(p, "new.test", "ok@partner.test"),
		                 POLICY_LIST_ALLOW);
		(void)policy_domain_recipients(p, i, &n2);
		assert_int_equal(n2, 0);
		policy_unref(p);

		/* the parser's errors name the line, as the file's do */
		assert_int_equal(config_domain_parse(c2, "x.test",
		                                     "recipients = any\nroute = nowhere\n", &cd,
		                                     err, sizeof(err)),
		                 -1);
		assert_non_null(strstr(err, "[domain x.test]:2: route:"));
		assert_int_equal(config_domain_parse(c2, "x.test", "route = maildir\n", &cd, err,
		                                     sizeof(err)),
		                 -1);
		assert_non_null(strstr(err, "needs 'recipients = any' or a list"));
		assert_int_equal(config_domain_parse(c2, "x.test",
		                                     "recipients = any\nallow_senders = a@b.c\n",
		                                     &cd, err, sizeof(err)),
		                 -1);
		assert_int_equal(config_domain_parse(c2, "no domain", "recipients = any\n", &cd,
		                                     err, sizeof(err)),
		                 -1);
		assert_int_equal(config_domain_parse(c2, "X.Test", "recipients = a, b\n", &cd, err,
		                                     sizeof(err)),
		                 0);
		assert_string_equal(cd.name, "x.test");
		assert_int_equal(cd.nrecipients, 2);
		config_domain_clear(&cd);
	}
	store_close(st);
	config_unref(c);
	config_unref(c2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* --- evaluation on a hand-built task --- */

struct eval_case {
	const char *name;
	const char *rules;     /* [rule] sections */
	const char *client_ip; /* default 203.0.113.5 */
	const char *sender;    /* default someone@outside.test */
	const char *rcpt;      /* default user@example.test */
	const char *from;      /* the From address, or NULL */
	const char *hdrs;      /* extra raw header fields */
	const char *attach;    /* a part's name, or NULL */
	const char *syms;      /* symbols the checks emitted, blank separated */
	bool tempfail;
	const char *skips; /* checks skipped, blank separated, "" none */
	enum scan_verdict want;
	/* "NAME" present, "NAME[detail]" present with that detail, "!NAME" absent */
	const char *want_syms;
};

#define R1(conds, acts) "[rule r1]\npriority = 10\n" conds acts
#define SCORE3          "then = score 3\n"

static const struct eval_case eval_cases[] = {
        /* each condition, matching and not */
        {"sender-ip match", R1("if = sender-ip 192.0.2.0/24\n", SCORE3), "192.0.2.7",
         .want_syms = "MOAT_RULE[r1]"},
        {"sender-ip no match", R1("if = sender-ip 192.0.2.0/24\n", SCORE3), "198.51.100.1",
         .want_syms = "!MOAT_RULE"},
        {"sender-ip v6", R1("if = sender-ip 2001:db8::/32\n", SCORE3), "2001:db8::25",
         .want_syms = "MOAT_RULE"},
        {"sender-ip mapped v4", R1("if = sender-ip 192.0.2.0/24\n", SCORE3), "::ffff:192.0.2.9",
         .want_syms = "MOAT_RULE"},
        {"sender domain", R1("if = sender @partner.example\n", SCORE3),
         .sender = "a@partner.example", .want_syms = "MOAT_RULE"},
        {"sender subdomain", R1("if = sender @partner.example\n", SCORE3),
         .sender = "a@mx.Partner.Example", .want_syms = "MOAT_RULE"},
        {"sender suffix is not a subdomain", R1("if = sender @partner.example\n", SCORE3),
         .sender = "a@notpartner.example", .want_syms = "!MOAT_RULE"},
        {"sender address any case", R1("if = sender Bob@x.test\n", SCORE3), .sender = "BOB@X.TEST",
         .want_syms = "MOAT_RULE"},
        {"sender by From", R1("if = sender @partner.example\n", SCORE3),
         .from = "ceo@partner.example", .want_syms = "MOAT_RULE"},
        {"sender null path", R1("if = sender @partner.example\n", SCORE3), .sender = "",
         .want_syms = "!MOAT_RULE"},
        {"recipient match", R1("if = recipient @example.test\n", SCORE3), .want_syms = "MOAT_RULE"},
        {"recipient no match", R1("if = recipient ceo@example.test\n", SCORE3),
         .want_syms = "!MOAT_RULE"},
        {"header match, folded", R1("if = header subject ^hello world$\n", SCORE3),
         .hdrs = "Subject: Hello\r\n World\r\n", .want_syms = "MOAT_RULE"},
        {"header second occurrence", R1("if = header X-Tag b\n", SCORE3),
         .hdrs = "X-Tag: a\r\nX-Tag: b\r\n", .want_syms = "MOAT_RULE"},
        {"header no match", R1("if = header Subject ^hello$\n", SCORE3),
         .hdrs = "Subject: hello there\r\n", .want_syms = "!MOAT_RULE"},
        {"header absent", R1("if = header X-None .\n", SCORE3), .want_syms = "!MOAT_RULE"},
        {"attachment match", R1("if = attachment *.EXE, *.scr\n", SCORE3), .attach = "invoice.exe",
         .want_syms = "MOAT_RULE"},
        {"attachment no match", R1("if = attachment *.exe\n", SCORE3), .attach = "invoice.pdf",
         .want_syms = "!MOAT_RULE"},
        {"verdict match", R1("if = verdict quarantine\n", SCORE3), .syms = "ATTACH_BLOCKED_EXT",
         .want = SCAN_QUARANTINE, .want_syms = "MOAT_RULE"},
        {"verdict no match", R1("if = verdict deliver\n", SCORE3), .syms = "ATTACH_BLOCKED_EXT",
         .want = SCAN_QUARANTINE, .want_syms = "!MOAT_RULE"},
        {"score >= match", R1("if = score >= 5\n", "then = quarantine\n"),
         .syms = "DMARC_FAIL_REJECT", .want = SCAN_QUARANTINE,
         .want_syms = "MOAT_RULE_QUARANTINE[r1]"},
        {"score >= no match", R1("if = score >= 7\n", "then = reject\n"),
         .syms = "DMARC_FAIL_REJECT", .want = SCAN_QUARANTINE, .want_syms = "!MOAT_RULE_REJECT"},
        {"score < match", R1("if = score < 1\n", SCORE3), .want_syms = "MOAT_RULE"},
        {"symbol match", R1("if = symbol DKIM_PASS\n", SCORE3), .syms = "DKIM_PASS",
         .want_syms = "MOAT_RULE"},
        {"symbol no match", R1("if = symbol DKIM_PASS\n", SCORE3), .syms = "DKIM_FAIL",
         .want_syms = "!MOAT_RULE"},
        /* exceptions, priority, stop, disabled */
        {"exception excludes",
         R1("if = sender-ip 0.0.0.0/0\nunless = recipient user@example.test\n", SCORE3),
         .want_syms = "!MOAT_RULE"},
        {"exception not matching",
         R1("if = sender-ip 0.0.0.0/0\nunless = recipient ceo@example.test\n", SCORE3),
         .want_syms = "MOAT_RULE[r1]"},
        {"exceptions: any excludes",
         R1("unless = recipient ceo@example.test\nunless = symbol DKIM_PASS\n", SCORE3),
         .syms = "DKIM_PASS", .want_syms = "!MOAT_RULE"},
        {"priority order",
         "[rule late]\npriority = 20\nthen = score 1\n[rule early]\npriority = 10\nthen = score "
         "2\n",
         .want_syms = "MOAT_RULE[early,late]"},
        {"stop",
         "[rule late]\npriority = 20\nthen = score 1\n[rule early]\npriority = 10\nstop = "
         "yes\nthen = score 2\n",
         .want_syms = "MOAT_RULE[early]"},
        {"stop only when matching",
         "[rule late]\npriority = 20\nthen = score 1\n[rule early]\npriority = 10\nstop = yes\nif "
         "= symbol GTUBE\nthen = score 2\n",
         .want_syms = "MOAT_RULE[late]"},
        {"disabled", "[rule off]\npriority = 10\nenabled = no\nthen = reject\n",
         .want_syms = "!MOAT_RULE_REJECT"},
        {"later rules see earlier scores",
         "[rule a]\npriority = 1\nthen = score 5\n[rule b]\npriority = 2\nif = score >= 5\nthen = "
         "quarantine\n",
         .want = SCAN_QUARANTINE, .want_syms = "MOAT_RULE[a] MOAT_RULE_QUARANTINE[b]"},
        {"verdict is the checks' alone",
         "[rule a]\npriority = 1\nthen = score 50\n[rule b]\npriority = 2\nif = verdict "
         "deliver\nthen = set-header X-A: b\n",
         .want = SCAN_REJECT, .want_syms = "MOAT_RULE"},
        /* each action */
        {"score raises", R1("", "then = score 7\n"), .want = SCAN_QUARANTINE,
         .want_syms = "MOAT_RULE[r1]"},
        {"score lowers", R1("", "then = score -10\n"),
         .syms = "PHISH_LOOKALIKE_DOMAIN PHISH_LINK_MISMATCH", .want = SCAN_DELIVER},
        {"quarantine", R1("", "then = quarantine\n"), .want = SCAN_QUARANTINE,
         .want_syms = "MOAT_RULE_QUARANTINE[r1]"},
        {"reject", R1("", "then = reject\n"), .want = SCAN_REJECT,
         .want_syms = "MOAT_RULE_REJECT[r1]"},
        {"deliver beats the score", R1("", "then = deliver\n"), .syms = "GTUBE",
         .want = SCAN_DELIVER, .want_syms = "MOAT_RULE_DELIVER[r1] GTUBE"},
        /* precedence */
        {"malware beats deliver", R1("", "then = deliver\n"), .syms = "CLAM_VIRUS",
         .want = SCAN_QUARANTINE},
        {"malware beats reject", R1("", "then = reject\n"), .syms = "CLAM_VIRUS",
         .want = SCAN_QUARANTINE},
        {"rule reject beats allow list", R1("", "then = reject\n"), .syms = "MOAT_ALLOWLIST",
         .want = SCAN_REJECT},
        {"block list beats rule deliver", R1("", "then = deliver\n"), .syms = "MOAT_BLOCKLIST",
         .want = SCAN_REJECT},
        {"rule quarantine beats allow list", R1("", "then = quarantine\n"),
         .syms = "MOAT_ALLOWLIST", .want = SCAN_QUARANTINE},
        {"forced quarantine beats rule deliver", R1("", "then = deliver\n"),
         .syms = "MIME_CONFLICTING_HEADER", .want = SCAN_QUARANTINE},
        {"rule quarantine beats rule deliver",
         "[rule d]\npriority = 1\nthen = deliver\n[rule q]\npriority = 2\nthen = quarantine\n",
         .want = SCAN_QUARANTINE},
        {"tempfail: no rules", R1("", "then = deliver\n"), .tempfail = true, .want = SCAN_TEMPFAIL,
         .want_syms = "!MOAT_RULE_DELIVER"},
        /* skips, before the checks */
        {"skip", R1("if = sender-ip 203.0.113.0/24\n", "then = skip spf\nthen = skip dkim\n"),
         .skips = "spf dkim", .want_syms = "MOAT_RULE_SKIP[r1: spf,r1: dkim]"},
        {"skip no match", R1("if = sender-ip 192.0.2.0/24\n", "then = skip spf\n"), .skips = "",
         .want_syms = "!MOAT_RULE_SKIP"},
        {"skip after a stop rule that matched",
         "[rule s]\npriority = 1\nstop = yes\nthen = score 1\n[rule k]\npriority = 2\nthen = skip "
         "phish\n",
         .skips = "", .want_syms = "!MOAT_RULE_SKIP"},
        {"skip after a stop rule that did not match",
         "[rule s]\npriority = 1\nstop = yes\nif = sender @x.test\nthen = score 1\n[rule "
         "k]\npriority = 2\nthen = skip phish\n",
         .skips = "phish"},
        {"skip after a late stop rule",
         "[rule s]\npriority = 1\nstop = yes\nif = symbol GTUBE\nthen = score 1\n[rule "
         "k]\npriority = 2\nthen = skip gtube\n",
         .skips = ""},
        {"skip before a late stop rule",
         "[rule s]\npriority = 2\nstop = yes\nif = symbol GTUBE\nthen = score 1\n[rule "
         "k]\npriority = 1\nthen = skip gtube\nthen = skip rspamd\n",
         .skips = "gtube rspamd"},
};

static void
task_free(struct scan_task *t)
{
	for (size_t i = 0; i < t->msg.nparts; i++) {
		for (size_t j = 0; j < t->msg.parts[i].nnames; j++)
			free(t->msg.parts[i].names[j]);
		free(t->msg.parts[i].names);
	}
	free(t->msg.parts);
	for (size_t i = 0; i < t->msg.nfrom; i++)
		free(t->msg.from[i].addr);
	free(t->msg.from);
	scan_hdrs_free(&t->hdrs);
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(t->detail[i]);
}

static int
sym_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		if (strlen(scan_sym_defs[i].name) == len &&
		    strncmp(scan_sym_defs[i].name, name, len) == 0)
			return (int)i;
	fail_msg("no symbol %.*s", (int)len, name);
	return -1;
}

/* Check want ("NAME", "NAME[detail]", "!NAME", blank separated) against t. */
static void
want_syms(const char *row, const struct scan_task *t, const char *want)
{
	for (const char *p = want ? want : ""; *p;) {
		size_t len;
		bool absent;
		const char *br;
		int id;

		p += strspn(p, " ");
		if (*p == '\0')
			break;
		absent = *p == '!';
		p += absent;
		len = strcspn(p, " [");
		id = sym_by_name(p, len);
		br = p[len] == '[' ? p + len + 1 : NULL;
		if (absent && scan_has(t, (enum scan_sym_id)id))
			table_mismatch(row, "%.*s present, want it absent", (int)len, p);
		else if (!absent && !scan_has(t, (enum scan_sym_id)id))
			table_mismatch(row, "%.*s absent, want it", (int)len, p);
		else if (br) {
			size_t dl = strcspn(br, "]");
			const char *d = t->detail[id] ? t->detail[id] : "";

			if (strlen(d) != dl || strncmp(d, br, dl) != 0)
				table_mismatch(row, "%.*s detail got '%s', want '%.*s'", (int)len,
				               p, d, (int)dl, br);
			p = br + dl + 1;
			continue;
		}
		p += len;
	}
}

static void
test_rules_eval(void **state)
{
	char row[96], err[512], reason[256];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(eval_cases); i++) {
		const struct eval_case *c = &eval_cases[i];
		struct config *cfg = conf_load(c->rules, err, sizeof(err));
		const char *rcpts[1] = {c->rcpt ? c->rcpt : "user@example.test"};
		struct scan_input in = {
		        .client_ip = c->client_ip ? c->client_ip : "203.0.113.5",
		        .sender = c->sender ? c->sender : "someone@outside.test",
		        .rcpts = rcpts,
		        .nrcpts = 1,
		};
		struct scan_task t = {0};
		struct policy *pol;
		char *msg, skips[128] = "";
		enum scan_verdict v;

		snprintf(row, sizeof(row), "'%s'", c->name);
		if (cfg == NULL) {
			table_mismatch(row, "config: %s", err);
			continue;
		}
		pol = policy_from_config(cfg);
		msg = xasprintf("Received: from x by y; now\r\nFrom: <%s>\r\n%s\r\nbody\r\n",
		                c->from ? c->from : "x@y.test", c->hdrs ? c->hdrs : "");
		in.msg = (const unsigned char *)msg;
		in.len = strlen(msg);
		t.cfg = cfg;
		t.pol = pol;
		t.in = &in;
		str_copy(t.client_ip, in.client_ip, sizeof(t.client_ip));
		scan_hdrs_split(in.msg, in.len, &t.hdrs);
		if (c->from) {
			t.msg.from = xcalloc(1, sizeof(*t.msg.from));
			t.msg.from->addr = xstrdup(c->from);
			t.msg.nfrom = 1;
		}
		if (c->attach) {
			t.msg.parts = xcalloc(2, sizeof(*t.msg.parts));
			t.msg.nparts = 2;
			t.msg.parts[1].names = xcalloc(1, sizeof(char *));
			t.msg.parts[1].names[0] = xstrdup(c->attach);
			t.msg.parts[1].nnames = 1;
		}
		scan_rules_before(&t);
		for (size_t k = 0; k < RULE_CHECK_COUNT; k++)
			if (t.skip[k])
				snprintf(skips + strlen(skips), sizeof(skips) - strlen(skips),
				         "%s%s", skips[0] ? " " : "",
				         rule_check_name((enum rule_check)k));
		if (c->skips && strcmp(skips, c->skips) != 0)
			table_mismatch(row, "skipped got '%s', want '%s'", skips, c->skips);
		for (const char *p = c->syms ? c->syms : ""; *p;) {
			size_t len = strcspn(p, " ");

			scan_sym(&t, (enum scan_sym_id)sym_by_name(p, len), NULL);
			p += len;
			p += strspn(p, " ");
		}
		if (c->tempfail)
			scan_tempfail(&t, "test");
		scan_rules_after(&t);
		v = scan_decide(&t, scan_task_score(&t), reason, sizeof(reason));
		if (v != c->want)
			table_mismatch(row, "verdict got %s (%s), want %s", scan_verdict_str(v),
			               reason, scan_verdict_str(c->want));
		want_syms(row, &t, c->want_syms);
		task_free(&t);
		free(msg);
		policy_unref(pol);
		config_unref(cfg);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* The reasons: a rule's name is never sent to the sender. */
static void
test_rules_reasons(void **state)
{
	struct config *cfg = config_defaults();
	struct scan_input in = {.sender = ""};
	struct scan_task t = {.cfg = cfg, .in = &in};
	char reason[256];

	(void)state;
	scan_sym(&t, SYM_MOAT_RULE_REJECT, "secret-rule");
	assert_int_equal(scan_decide(&t, 0, reason, sizeof(reason)), SCAN_REJECT);
	assert_string_equal(reason, "refused by an administrator rule");
	free(t.detail[SYM_MOAT_RULE_REJECT]);
	memset(&t, 0, sizeof(t));
	t.cfg = cfg;
	t.in = &in;
	scan_sym(&t, SYM_MOAT_RULE_DELIVER, "x");
	assert_int_equal(scan_decide(&t, 100, reason, sizeof(reason)), SCAN_DELIVER);
	assert_string_equal(reason, "delivered by an administrator rule");
	free(t.detail[SYM_MOAT_RULE_DELIVER]);
	config_unref(cfg);
}

/* --- through scan_run(): skipped checks, header fields --- */

static const struct fake_rr empty_zone[] = {{0, NULL, NULL, 0}};

struct run_case {
	const char *name;
	const char *rules;
	const char *hdrs; /* raw fields after From/To/Subject */
	const char *body;
	enum scan_verdict want;
	const char *want_syms;
	const char *head_has; /* substrings of the head, '|' separated */
	const char *head_lacks;
};

#define GTUBE_BODY "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"

static const struct run_case run_cases[] = {
        {"no rules", "", "", "hi\r\n", SCAN_DELIVER, "SPF_NONE DKIM_NONE !MOAT_RULE_SKIP",
         "X-Moat-Verdict: deliver", NULL},
        {"skip spf", R1("", "then = skip spf\n"), "", "hi\r\n", SCAN_DELIVER,
         "!SPF_NONE DKIM_NONE MOAT_RULE_SKIP[r1: spf]", "spf=none", NULL},
        {"skip gtube", R1("if = sender @outside.test\n", "then = skip gtube\n"), "", GTUBE_BODY,
         SCAN_DELIVER, "!GTUBE", NULL, NULL},
        {"gtube without rules", "", "", GTUBE_BODY, SCAN_REJECT, "GTUBE", NULL, NULL},
        {"deliver beats gtube", R1("", "then = deliver\n"), "", GTUBE_BODY, SCAN_DELIVER,
         "GTUBE MOAT_RULE_DELIVER", "X-Moat-Verdict: deliver", NULL},
        {"set-header", R1("", "then = set-header X-Partner: yes\n"), "X-Partner: forged\r\n",
         "hi\r\n", SCAN_DELIVER, NULL, "symbols=|X-Partner: yes\r\n|Subject: s\r\n", "forged"},
        {"later set-header wins",
         "[rule a]\npriority = 1\nthen = set-header X-A: first\n[rule b]\npriority = 2\nthen = "
         "set-header x-a: second\n",
         "", "hi\r\n", SCAN_DELIVER, NULL, "x-a: second\r\n", "first"},
        {"remove-header", R1("", "then = remove-header X-Spam-Flag\n"),
         "X-Spam-Flag: YES\r\nx-spam-flag: maybe\r\nX-Keep: 1\r\n", "hi\r\n", SCAN_DELIVER, NULL,
         "X-Keep: 1\r\n|Subject: s\r\n", "YES|maybe"},
        {"quarantine keeps header actions", R1("", "then = quarantine\nthen = set-header X-Q: 1\n"),
         "", "hi\r\n", SCAN_QUARANTINE, "MOAT_RULE_QUARANTINE[r1]",
         "X-Moat-Verdict: quarantine|X-Q: 1\r\n", NULL},
};

static void
test_rules_run(void **state)
{
	struct scan_env env;
	struct fake_dns fake;
	char row[96], err[512];

	(void)state;
	scan_init();
	fake_dns_env(&env, &fake, empty_zone);
	table_reset();
	for (size_t i = 0; i < nitems(run_cases); i++) {
		const struct run_case *c = &run_cases[i];
		struct config *cfg = conf_load(c->rules, err, sizeof(err));
		const char *rcpts[1] = {"user@example.test"};
		struct scan_input in = {
		        .queue_id = "0123456789abcdef",
		        .client_ip = "203.0.113.5",
		        .helo = "mail.outside.test",
		        .sender = "someone@outside.test",
		        .rcpts = rcpts,
		        .nrcpts = 1,
		};
		struct scan_result res;
		struct scan_task t = {0};
		struct policy *pol;
		char *msg, *head;

		snprintf(row, sizeof(row), "'%s'", c->name);
		if (cfg == NULL) {
			table_mismatch(row, "config: %s", err);
			continue;
		}
		pol = policy_from_config(cfg);
		msg = xasprintf("Received: from mail.outside.test ([203.0.113.5]) by mx.moat.test; "
		                "now\r\nFrom: <someone@outside.test>\r\nTo: <user@example.test>\r\n"
		                "Subject: s\r\n%s\r\n%s",
		                c->hdrs, c->body);
		in.msg = (const unsigned char *)msg;
		in.len = strlen(msg);
		scan_run(&env, cfg, pol, &in, &res);
		if (res.verdict != c->want)
			table_mismatch(row, "verdict got %s (%s), want %s",
			               scan_verdict_str(res.verdict), res.reason,
			               scan_verdict_str(c->want));
		/* the symbols, back into a task for want_syms() */
		for (size_t k = 0; k < res.nsyms; k++) {
			t.has[res.syms[k].id] = true;
			t.detail[res.syms[k].id] = res.syms[k].detail;
		}
		want_syms(row, &t, c->want_syms);
		head = res.head ? xstrndup(res.head, res.head_len) : xstrdup("");
		for (const char *p = c->head_has ? c->head_has : ""; *p;) {
			size_t len = strcspn(p, "|");
			char *s = xstrndup(p, len);

			if (strstr(head, s) == NULL)
				table_mismatch(row, "head lacks '%s': %s", table_esc(s, len),
				               table_esc(head, strlen(head)));
			free(s);
			p += len + (p[len] == '|');
		}
		for (const char *p = c->head_lacks ? c->head_lacks : ""; *p;) {
			size_t len = strcspn(p, "|");
			char *s = xstrndup(p, len);

			if (strstr(head, s) != NULL)
				table_mismatch(row, "head has '%s': %s", s,
				               table_esc(head, strlen(head)));
			free(s);
			p += len + (p[len] == '|');
		}
		if (c->hdrs[0] && c->head_lacks && res.head_skip == 0)
			table_mismatch(row,
			               "head_skip is 0: the original fields were not replaced");
		free(head);
		scan_result_free(&res);
		free(msg);
		policy_unref(pol);
		config_unref(cfg);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rules_lines),       cmocka_unit_test(test_rules_values),
	        cmocka_unit_test(test_rules_bounds),      cmocka_unit_test(test_rules_specs),
	        cmocka_unit_test(test_rules_spec_bounds), cmocka_unit_test(test_rules_config),
	        cmocka_unit_test(test_rules_policy),      cmocka_unit_test(test_rules_store),
	        cmocka_unit_test(test_rules_eval),        cmocka_unit_test(test_rules_reasons),
	        cmocka_unit_test(test_rules_run),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
