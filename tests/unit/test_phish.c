/*
 * test_phish.c - table-driven tests of link extraction (scan_url.c:
 * RFC 3986 hosts, userinfo, IDN, IPv4 in any notation, IPv6, HTML links)
 * and the phishing checks (scan_phish.c: display names, lookalike
 * domains, link mismatches, Reply-To, spoofed protected domains).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "scan/scan_internal.h"

#include "table.h"

/* scan_url.c; to be declared in scan_internal.h */

/* --- a task built by hand --- */

static struct config *test_cfg;
static struct policy *test_pol;

/* Protected: contoso.com (listed recipients), paypal.com, microsoft.com (any). */
static int
setup(void **state)
{
	static const char *const contoso_rcpts[] = {"john.smith", "ceo", "support", "jdoe"};
	static const char *const names[] = {"contoso.com", "paypal.com", "microsoft.com"};
	struct config *c = config_defaults();

	(void)state;
	c->ndomains = nitems(names);
	c->domains = xcalloc(c->ndomains, sizeof(*c->domains));
	for (size_t i = 0; i < c->ndomains; i++) {
		struct config_domain *d = &c->domains[i];
		d->name = xstrdup(names[i]);
		d->quarantine_score = d->reject_score = NAN;
		d->any_recipient = i != 0;
	}
	c->domains[0].nrecipients = nitems(contoso_rcpts);
	c->domains[0].recipients = xcalloc(nitems(contoso_rcpts), sizeof(char *));
	for (size_t j = 0; j < nitems(contoso_rcpts); j++)
		c->domains[0].recipients[j] = xstrdup(contoso_rcpts[j]);
	test_cfg = c;
	test_pol = policy_from_config(c);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	policy_unref(test_pol);
	config_unref(test_cfg);
	return 0;
}

/* One text/plain or text/html body part holding body. */
static void
task_add_part(struct scan_task *t, const char *body, bool html)
{
	struct scan_part *p;

	t->msg.parts = xrealloc(t->msg.parts, (t->msg.nparts + 1) * sizeof(*p));
	p = &t->msg.parts[t->msg.nparts++];
	memset(p, 0, sizeof(*p));
	p->text = !html;
	p->html = html;
	p->text_utf8 = xstrdup(body);
	p->data = (unsigned char *)xstrdup(body);
	p->len = strlen(body);
	str_copy(p->ctype, html ? "text/html" : "text/plain", sizeof(p->ctype));
}

static void
task_set_mbox(struct scan_mbox **list, size_t *n, const char *display, const char *addr)
{
	const char *at = strrchr(addr, '@');

	*list = xcalloc(1, sizeof(**list));
	*n = 1;
	(*list)->display = display ? xstrdup(display) : NULL;
	(*list)->addr = xstrdup(addr);
	if (at != NULL) {
		(*list)->domain = xstrdup(at + 1);
		str_lower((*list)->domain);
	}
}

static void
task_free(struct scan_task *t)
{
	for (size_t i = 0; i < t->msg.nparts; i++) {
		free(t->msg.parts[i].text_utf8);
		free(t->msg.parts[i].data);
	}
	free(t->msg.parts);
	for (size_t i = 0; i < t->msg.nfrom; i++) {
		free(t->msg.from[i].display);
		free(t->msg.from[i].addr);
		free(t->msg.from[i].domain);
	}
	free(t->msg.from);
	for (size_t i = 0; i < t->msg.nreply_to; i++) {
		free(t->msg.reply_to[i].display);
		free(t->msg.reply_to[i].addr);
		free(t->msg.reply_to[i].domain);
	}
	free(t->msg.reply_to);
	scan_url_free(&t->msg);
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(t->detail[i]);
}

/* --- link extraction --- */

struct url_case {
	const char *name;
	bool html;
	const char *body;
	/* the links found: "host" each, "[text]" after a link text, "#ip" after an address */
	const char *want;
	const char *want_url0; /* url of the first link, when set */
};

static const struct url_case url_cases[] = {
        {"plain, trailing dot", false, "see https://example.com/path.", "example.com",
         "https://example.com/path"},
        {"plain, www. and port", false, "Go to www.Example.COM, or http://a.test:8080/x",
         "www.example.com a.test", "www.Example.COM"},
        {"plain, parenthesis", false, "(see http://example.com/a)", "example.com",
         "http://example.com/a"},
        {"plain, balanced parenthesis kept", false, "http://w.test/Foo_(bar)!", "w.test",
         "http://w.test/Foo_(bar)"},
        {"plain, quotes and angles", false, "<http://a.test/x> \"https://b.test\"", "a.test b.test",
         "http://a.test/x"},
        {"userinfo trick", false, "http://paypal.com@evil.example/login", "evil.example", NULL},
        {"userinfo with colon and at", false, "https://user:p@ss@evil.example:443/", "evil.example",
         NULL},
        {"IDN A-label to U-label", false, "https://xn--pypal-4ve.com/", "p\xd0\xb0ypal.com", NULL},
        {"IDN U-label upper case", false, "https://P\xd0\x90YPAL.com/", "p\xd0\xb0ypal.com", NULL},
        {"invalid A-label kept", false, "http://xn--zz.test/", "xn--zz.test", NULL},
        {"integer IPv4", false, "http://3232235777/", "192.168.1.1#ip", NULL},
        {"hex IPv4", false, "http://0xC0A80101/x", "192.168.1.1#ip", NULL},
        {"octal IPv4", false, "http://0300.0250.1.1/", "192.168.1.1#ip", NULL},
        {"short IPv4", false, "http://127.1/", "127.0.0.1#ip", NULL},
        {"dotted quad", false, "http://192.0.2.1:80/", "192.0.2.1#ip", NULL},
        {"IPv4 out of range is a name", false, "http://1.2.3.256/ http://1.2.3.com/",
         "1.2.3.256 1.2.3.com", NULL},
        {"IPv6", false, "http://[2001:DB8::1]:443/", "2001:db8::1#ip", NULL},
        {"bad IPv6", false, "http://[2001:zz::1]/", "", NULL},
        {"percent-encoded host", false, "http://%65vil.example/", "evil.example", NULL},
        {"ideographic full stop", false, "http://paypal.com%E3%80%82evil.example/",
         "paypal.com.evil.example", NULL},
        {"not links", false, "wwwfoo.com mailto:a@b.example ftp.x.test x.www.y.test http://", "",
         NULL},
        {"duplicates kept once", false, "http://a.test/ http://a.test/ http://a.test/", "a.test",
         NULL},
        {"html link and its text", true,
         "<p><a href=\"https://evil.example/login\">https://contoso.com</a></p>",
         "evil.example[https://contoso.com] contoso.com", "https://evil.example/login"},
        {"html skipped schemes", true,
         "<a href=\"mailto:x@y.example\">m</a><a href=\"tel:+1\">t</a><a href=\"cid:a@b\">c</a>"
         "<a href=\"#top\">t</a><a href=\"/rel\">r</a><a href=\"javascript:x()\">j</a>",
         "", NULL},
        {"html whitespace collapsed", true,
         "<a href=\" http://a.test/\n\">  Click\n  <b>here</b>\tnow </a>", "a.test[Click here now]",
         "http://a.test/"},
        {"html area and form", true,
         "<map><area href=\"http://b.test/\" alt=\"B\"></map><form action=\"http://c.test/p\">"
         "</form>",
         "b.test[B] c.test", NULL},
        {"html entity in href", true, "<a href=\"http://a.test/?x=1&amp;y=2\">x</a>", "a.test[x]",
         "http://a.test/?x=1&y=2"},
        {"html broken", true, "<a href=http://a.test/>unclosed <div", "a.test[unclosed]", NULL},
        {"html style not text", true, "<style>a{background:url(http://s.test/)}</style>x", "",
         NULL},
        {"html image alt as text", true, "<a href=\"http://a.test/\"><img alt=\"PayPal\"></a>",
         "a.test[PayPal]", NULL},
        {"html same link twice", true,
         "<a href=\"http://a.test/\">x</a><a href=\"http://a.test/\">x</a>"
         "<a href=\"http://a.test/\">y</a>",
         "a.test[x] a.test[y]", NULL},
};

/* The links of t as the want column writes them. */
static void
url_render(const struct scan_task *t, char *buf, size_t size)
{
	size_t k = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->msg.nurls && k < size; i++) {
		const struct scan_url *u = &t->msg.urls[i];
		int n = snprintf(buf + k, size - k, "%s%s%s%s%s%s", i ? " " : "", u->host,
		                 u->text ? "[" : "", u->text ? u->text : "", u->text ? "]" : "",
		                 u->ip_literal ? "#ip" : "");
		if (n < 0)
			break;
		k += (size_t)n;
	}
}

static void
test_url_table(void **state)
{
	char row[96], got[2048];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(url_cases); i++) {
		const struct url_case *c = &url_cases[i];
		struct scan_task t = {.cfg = test_cfg, .pol = test_pol};

		snprintf(row, sizeof(row), "url %zu (%s)", i, c->name);
		task_add_part(&t, c->body, c->html);
		scan_url_extract(&t);
		url_render(&t, got, sizeof(got));
		if (strcmp(got, c->want) != 0)
			table_mismatch(row, "links got '%s', want '%s'", got, c->want);
		if (c->want_url0 != NULL &&
		    (t.msg.nurls == 0 || strcmp(t.msg.urls[0].url, c->want_url0) != 0))
			table_mismatch(row, "url got '%s', want '%s'",
			               t.msg.nurls ? t.msg.urls[0].url : "(none)", c->want_url0);
		for (size_t j = 0; j < t.msg.nurls; j++)
			if (t.msg.urls[j].from_html != c->html)
				table_mismatch(row, "link %zu: from_html got %d, want %d", j,
				               t.msg.urls[j].from_html, c->html);
		task_free(&t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* More distinct links than SCAN_URL_MAX, in text and in HTML: the list stops there; large HTML. */
static void
test_url_bounded(void **state)
{
	const size_t n = SCAN_URL_MAX + 100;
	size_t size = n * 64 + 1, k = 0;
	char *text = xmalloc(size), *html = xmalloc(size);
	struct scan_task t = {.cfg = test_cfg, .pol = test_pol};

	(void)state;
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(text + k, size - k, "http://h%zu.test/ ", i);
	task_add_part(&t, text, false);
	scan_url_extract(&t);
	assert_int_equal(t.msg.nurls, SCAN_URL_MAX);
	assert_string_equal(t.msg.urls[SCAN_URL_MAX - 1].host, "h499.test");
	task_free(&t);

	memset(&t, 0, sizeof(t));
	k = 0;
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(html + k, size - k, "<a href=\"//h%zu.test/\">%zu</a>", i, i);
	task_add_part(&t, html, true);
	scan_url_extract(&t);
	assert_int_equal(t.msg.nurls, SCAN_URL_MAX);
	task_free(&t);

	/* a link past the octets parsed as HTML is still found as written */
	const size_t big = 3 * 1024 * 1024;
	char *pad = xmalloc(big + 64);
	memset(&t, 0, sizeof(t));
	memset(pad, ' ', big);
	snprintf(pad + big, 64, "<a href=\"http://late.test/\">x</a>");
	task_add_part(&t, pad, true);
	scan_url_extract(&t);
	assert_int_equal(t.msg.nurls, 1);
	assert_string_equal(t.msg.urls[0].host, "late.test");
	task_free(&t);
	free(pad);
	free(text);
	free(html);
}

/* Inputs that must neither crash nor leak (run under ASan). */
static void
test_url_hostile(void **state)
{
	static const char *const bodies[] = {
	        "http://[",
	        "http://[::1",
	        "http://@",
	        "http://a@",
	        "http://%",
	        "http://%4",
	        "http://%00.test/",
	        "www.",
	        "http://0x/",
	        "http://99999999999999999999999/",
	        "http://1.2.3.4.5/",
	        "https://\xff\xfe.test/",
	        "http://xn--/",
	        "<a href=\"http://\">",
	        "<a href='http://a.test'><a href='http://b.test'>x</a>",
	        "<<<<a href=",
	        "<a href=\"http://a.test/\"><script>x</script>y</a>",
	};
	char deep[20000];
	size_t k = 0;

	(void)state;
	for (size_t i = 0; i < nitems(bodies); i++)
		for (int html = 0; html < 2; html++) {
			struct scan_task t = {.cfg = test_cfg, .pol = test_pol};
			task_add_part(&t, bodies[i], html);
			scan_url_extract(&t);
			scan_check_phish(&t);
			task_free(&t);
		}
	/* deep nesting: the walk is not recursive */
	while (k + 16 < sizeof(deep) / 2)
		k += (size_t)snprintf(deep + k, sizeof(deep) - k, "<div>");
	snprintf(deep + k, sizeof(deep) - k, "<a href=\"http://deep.test/\">d</a>");
	struct scan_task t = {.cfg = test_cfg, .pol = test_pol};
	task_add_part(&t, deep, true);
	scan_url_extract(&t);
	task_free(&t);
}

/* --- the phishing checks --- */

struct phish_case {
	const char *name;
	const char *display, *from; /* From: display name (or NULL) and address */
	const char *reply_to;       /* or NULL */
	const char *sender;         /* envelope sender, or NULL */
	const char *html;           /* an HTML body part, or NULL */
	const char *text;           /* a text/plain body part, or NULL */
	enum scan_auth dmarc, spf, dkim;
	const char *spf_domain, *dkim_domain;
	enum scan_sym_id sym;
	bool want;
	const char *detail; /* when want: a substring of the symbol's detail */
};

/* clang-format off */
#define FROM(d, a) .display = d, .from = a
/* clang-format on */

static const struct phish_case phish_cases[] = {
        /* PHISH_DISPLAY_ADDR */
        {"display holds another address", FROM("ceo@contoso.com", "x@evil.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR, .want = true, .detail = "'ceo@contoso.com' from"},
        {"display holds the same address", FROM("John@Evil.example", "john@evil.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR},
        {"display address in parentheses", FROM("PayPal (service@paypal.com)", "a@b.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR, .want = true, .detail = "service@paypal.com"},
        {"display fullwidth at",
         FROM("ceo\xef\xbc\xa0"
              "contoso.com",
              "a@b.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR, .want = true, .detail = "ceo@contoso.com"},
        {"display names another domain", FROM("paypal.com", "x@evil.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR, .want = true, .detail = "'paypal.com' from"},
        {"display names its own domain", FROM("Shop.example.com News", "n@mail.example.com"),
         .sym = SYM_PHISH_DISPLAY_ADDR},
        {"display with initials", FROM("Dr. J.R. Smith", "jr@evil.example"),
         .sym = SYM_PHISH_DISPLAY_ADDR},
        {"ordinary display", FROM("John", "john@evil.example"), .sym = SYM_PHISH_DISPLAY_ADDR},

        /* PHISH_DISPLAY_PROTECTED */
        {"display is a protected user", FROM("John Smith", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true, .detail = "john.smith@contoso.com"},
        {"display is a protected user, reversed", FROM("Smith, John", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true},
        {"display with accents", FROM("J\xc3\xb6hn Sm\xc3\xadth", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true},
        {"display with a Cyrillic letter", FROM("J\xd0\xbehn Smith", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true},
        {"display in fullwidth letters",
         FROM("\xef\xbc\xaa\xef\xbd\x8f\xef\xbd\x88\xef\xbd\x8e Smith", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true},
        {"display with a line break, detail made safe", FROM("John\r\nSmith", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true, .detail = "'John??Smith' ~"},
        {"ordinary first name", FROM("John", "john@evil.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED},
        {"another John", FROM("John Smithers", "js@mail.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED},
        {"protected user from inside", FROM("John Smith", "john.smith@contoso.com"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED},
        {"protected domain in display", FROM("Contoso.com IT Desk", "it@evil.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true, .detail = "'contoso.com'"},
        {"protected subdomain in display", FROM("hr.contoso.com", "it@evil.example"),
         .sym = SYM_PHISH_DISPLAY_PROTECTED, .want = true},
        {"short local part", FROM("CEO", "boss@evil.example"), .sym = SYM_PHISH_DISPLAY_PROTECTED},
        {"role name", FROM("Support", "help@vendor.example"), .sym = SYM_PHISH_DISPLAY_PROTECTED},

        /* PHISH_LOOKALIKE_DOMAIN */
        {"digit for a letter", FROM(NULL, "x@paypa1.com"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN,
         .want = true, .detail = "paypa1.com ~ paypal.com"},
        {"rn for m", FROM(NULL, "x@rnicrosoft.com"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN,
         .want = true, .detail = "rnicrosoft.com ~ microsoft.com"},
        {"Cyrillic a, U-label", FROM(NULL, "x@p\xd0\xb0ypal.com"),
         .sym = SYM_PHISH_LOOKALIKE_DOMAIN, .want = true, .detail = "(mixed scripts)"},
        {"Cyrillic a, A-label link", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"https://xn--pypal-4ve.com/\">log in</a>",
         .sym = SYM_PHISH_LOOKALIKE_DOMAIN, .want = true, .detail = "~ paypal.com"},
        {"protected as subdomain labels", FROM(NULL, "x@mail.example"),
         .text = "https://contoso.com.evil.example/login", .sym = SYM_PHISH_LOOKALIKE_DOMAIN,
         .want = true, .detail = "contoso.com.evil.example ~ contoso.com"},
        {"lookalike Reply-To", FROM(NULL, "x@mail.example"), .reply_to = "y@cont0so.com",
         .sym = SYM_PHISH_LOOKALIKE_DOMAIN, .want = true, .detail = "cont0so.com ~ contoso.com"},
        {"lookalike envelope sender", FROM(NULL, "x@mail.example"), .sender = "bounce@paypai.com",
         .sym = SYM_PHISH_LOOKALIKE_DOMAIN, .want = true},
        {"transposition", FROM(NULL, "x@cnotoso.com"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN,
         .want = true},
        {"the protected domain itself", FROM(NULL, "x@paypal.com"),
         .sym = SYM_PHISH_LOOKALIKE_DOMAIN},
        {"a protected subdomain", FROM(NULL, "x@mail.paypal.com"),
         .text = "https://www.contoso.com/", .sym = SYM_PHISH_LOOKALIKE_DOMAIN},
        {"unrelated domain", FROM(NULL, "x@example.org"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN},
        {"same name, other suffix", FROM(NULL, "x@contoso.net"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN},
        {"three edits away", FROM(NULL, "x@paxxxl.com"), .sym = SYM_PHISH_LOOKALIKE_DOMAIN},

        /* PHISH_LINK_MISMATCH */
        {"text URL names another domain", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"https://evil.example/\">https://contoso.com</a>",
         .sym = SYM_PHISH_LINK_MISMATCH, .want = true,
         .detail = "text contoso.com -> evil.example"},
        {"text www. names another domain", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"http://evil.example/\">www.paypal.com</a>",
         .sym = SYM_PHISH_LINK_MISMATCH, .want = true},
        {"text bare domain with path", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"http://evil.example/\">PayPal.com/login</a>",
         .sym = SYM_PHISH_LINK_MISMATCH, .want = true, .detail = "text paypal.com"},
        {"text to an IP", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"http://192.0.2.7/\">contoso.com</a>", .sym = SYM_PHISH_LINK_MISMATCH,
         .want = true},
        {"same registered domain, other subdomain", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"https://login.contoso.com/a\">https://www.contoso.com</a>",
         .sym = SYM_PHISH_LINK_MISMATCH},
        {"plain words", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"https://evil.example/\">Click here</a>",
         .sym = SYM_PHISH_LINK_MISMATCH},
        {"words with a dot", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"https://evil.example/\">Read more.</a>",
         .sym = SYM_PHISH_LINK_MISMATCH},
        {"userinfo names another domain", FROM(NULL, "x@mail.example"),
         .text = "http://paypal.com@evil.example/", .sym = SYM_PHISH_LINK_MISMATCH, .want = true,
         .detail = "userinfo paypal.com@ -> evil.example"},
        {"userinfo with an encoded slash", FROM(NULL, "x@mail.example"),
         .text = "http://www.paypal.com%2Flogin@evil.example/", .sym = SYM_PHISH_LINK_MISMATCH,
         .want = true, .detail = "userinfo www.paypal.com@ -> evil.example"},
        {"userinfo is a user name", FROM(NULL, "x@mail.example"),
         .text = "ftp://anonymous@ftp.example.org/", .sym = SYM_PHISH_LINK_MISMATCH},

        /* PHISH_IP_LINK */
        {"integer IP link", FROM(NULL, "x@mail.example"), .text = "http://3232235777/",
         .sym = SYM_PHISH_IP_LINK, .want = true, .detail = "192.168.1.1"},
        {"IPv6 link", FROM(NULL, "x@mail.example"),
         .html = "<a href=\"http://[2001:db8::1]/\">x</a>", .sym = SYM_PHISH_IP_LINK, .want = true,
         .detail = "2001:db8::1"},
        {"name link", FROM(NULL, "x@mail.example"), .text = "http://a.example/",
         .sym = SYM_PHISH_IP_LINK},

        /* PHISH_REPLYTO_DOMAIN */
        {"Reply-To elsewhere", FROM(NULL, "a@x.example"), .reply_to = "b@y.example",
         .sym = SYM_PHISH_REPLYTO_DOMAIN, .want = true,
         .detail = "reply-to y.example, from x.example"},
        {"Reply-To same registered domain", FROM(NULL, "a@x.example"),
         .reply_to = "b@mail.x.example", .sym = SYM_PHISH_REPLYTO_DOMAIN},

        /* PHISH_SPOOFED_PROTECTED */
        {"protected From, nothing passed", FROM("CEO", "ceo@contoso.com"), .dmarc = SCAN_AUTH_FAIL,
         .spf = SCAN_AUTH_FAIL, .spf_domain = "contoso.com", .sym = SYM_PHISH_SPOOFED_PROTECTED,
         .want = true, .detail = "contoso.com: dmarc fail"},
        {"protected From, DMARC passed", FROM(NULL, "ceo@contoso.com"), .dmarc = SCAN_AUTH_PASS,
         .sym = SYM_PHISH_SPOOFED_PROTECTED},
        {"protected From, SPF passed", FROM(NULL, "ceo@contoso.com"), .dmarc = SCAN_AUTH_NONE,
         .spf = SCAN_AUTH_PASS, .spf_domain = "bounce.contoso.com",
         .sym = SYM_PHISH_SPOOFED_PROTECTED},
        {"protected From, aligned DKIM passed", FROM(NULL, "ceo@contoso.com"),
         .dmarc = SCAN_AUTH_FAIL, .dkim = SCAN_AUTH_PASS, .dkim_domain = "contoso.com",
         .sym = SYM_PHISH_SPOOFED_PROTECTED},
        {"protected From, other DKIM passed", FROM(NULL, "ceo@contoso.com"),
         .dmarc = SCAN_AUTH_FAIL, .spf = SCAN_AUTH_PASS, .spf_domain = "evil.example",
         .dkim = SCAN_AUTH_PASS, .dkim_domain = "evil.example", .sym = SYM_PHISH_SPOOFED_PROTECTED,
         .want = true},
        {"protected From, temporary error", FROM(NULL, "ceo@contoso.com"),
         .dmarc = SCAN_AUTH_TEMPERROR, .sym = SYM_PHISH_SPOOFED_PROTECTED},
        {"outside From", FROM(NULL, "ceo@evil.example"), .dmarc = SCAN_AUTH_FAIL,
         .sym = SYM_PHISH_SPOOFED_PROTECTED},
};

static void
phish_run(const struct phish_case *c, struct scan_task *t, struct scan_input *in)
{
	memset(in, 0, sizeof(*in));
	in->sender = c->sender ? c->sender : "";
	memset(t, 0, sizeof(*t));
	t->cfg = test_cfg;
	t->pol = test_pol;
	t->in = in;
	task_set_mbox(&t->msg.from, &t->msg.nfrom, c->display, c->from);
	if (c->reply_to != NULL)
		task_set_mbox(&t->msg.reply_to, &t->msg.nreply_to, NULL, c->reply_to);
	if (c->html != NULL)
		task_add_part(t, c->html, true);
	if (c->text != NULL)
		task_add_part(t, c->text, false);
	t->dmarc.result = c->dmarc;
	t->spf.result = c->spf;
	if (c->spf_domain != NULL)
		str_copy(t->spf.domain, c->spf_domain, sizeof(t->spf.domain));
	if (c->dkim_domain != NULL) {
		t->dkim[0].result = c->dkim;
		str_copy(t->dkim[0].domain, c->dkim_domain, sizeof(t->dkim[0].domain));
		t->ndkim = 1;
	}
	scan_url_extract(t);
	scan_check_phish(t);
}

static void
test_phish_table(void **state)
{
	char row[96];

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(phish_cases); i++) {
		const struct phish_case *c = &phish_cases[i];
		const char *name = scan_sym_defs[c->sym].name;
		struct scan_input in;
		struct scan_task t;

		snprintf(row, sizeof(row), "phish %zu (%s)", i, c->name);
		phish_run(c, &t, &in);
		if (scan_has(&t, c->sym) != c->want)
			table_mismatch(row, "%s got %s [%s], want %s", name,
			               scan_has(&t, c->sym) ? "fired" : "quiet",
			               t.detail[c->sym] ? t.detail[c->sym] : "",
			               c->want ? "fired" : "quiet");
		else if (c->want && c->detail != NULL &&
		         (t.detail[c->sym] == NULL || strstr(t.detail[c->sym], c->detail) == NULL))
			table_mismatch(row, "%s detail got '%s', want it to hold '%s'", name,
			               t.detail[c->sym] ? t.detail[c->sym] : "", c->detail);
		task_free(&t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* No policy at all (a scan without protected domains): nothing imitated, no crash. */
static void
test_phish_no_policy(void **state)
{
	struct scan_task t = {.cfg = test_cfg};

	(void)state;
	task_set_mbox(&t.msg.from, &t.msg.nfrom, "ceo@contoso.com", "x@paypa1.com");
	task_add_part(&t, "http://3232235777/", false);
	scan_url_extract(&t);
	scan_check_phish(&t);
	assert_false(scan_has(&t, SYM_PHISH_LOOKALIKE_DOMAIN));
	assert_false(scan_has(&t, SYM_PHISH_DISPLAY_PROTECTED));
	assert_true(scan_has(&t, SYM_PHISH_DISPLAY_ADDR));
	assert_true(scan_has(&t, SYM_PHISH_IP_LINK));
	task_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_url_table),       cmocka_unit_test(test_url_bounded),
	        cmocka_unit_test(test_url_hostile),     cmocka_unit_test(test_phish_table),
	        cmocka_unit_test(test_phish_no_policy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
