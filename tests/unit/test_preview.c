/*
 * test_preview.c - table-driven tests of the safe preview of a held
 * message (src/quarantine/quarantine_preview.c): header fields (RFC 2047),
 * transfer encodings and charsets of text, HTML as text, attachment names
 * (RFC 2231, RFC 2047), limits, and what broken or hostile input gives.
 *
 * Messages are written here with LF line ends; the table rows run with LF
 * and again with CRLF and must give the same preview. Every preview is
 * checked for the shape and the invariants of quarantine_preview.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gmime/gmime.h>
#include <libxml/parser.h>

#include "common/util.h"
#include "quarantine/quarantine_preview.h"

#include "table.h"

/* --- helpers --- */

/* LF text to CRLF (crlf) or as it is, in a malloc()ed buffer. */
static unsigned char *
msg_make(const char *lf, size_t n, bool crlf, size_t *len)
{
	size_t k = 0;
	unsigned char *m = xmalloc(2 * n + 1);

	for (size_t i = 0; i < n; i++) {
		if (crlf && lf[i] == '\n')
			m[k++] = '\r';
		m[k++] = (unsigned char)lf[i];
	}
	*len = k;
	return m;
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "(missing)";
}

/* A string field without control characters (but \n and \t where allowed). */
static void
check_clean(const char *what, const json_t *s, bool multiline)
{
	const char *v = json_string_value(s);
	size_t n = json_string_length(s);

	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x20 || c == 0x7f) {
			if (multiline && (c == '\n' || c == '\t'))
				continue;
			fail_msg("%s: control character 0x%02x at %zu", what, c, i);
		}
		/* C1 controls, U+0080..U+009F as UTF-8 */
		if (c == 0xc2 && i + 1 < n && (unsigned char)v[i + 1] <= 0x9f)
			fail_msg("%s: C1 control at %zu", what, i);
	}
}

/* The shape quarantine_preview.h promises, and its invariants. */
static void
check_shape(const json_t *p)
{
	static const char *const strings[] = {"subject", "from", "to", "cc", "date", "message_id"};
	const json_t *v;
	size_t i;
	char *dump;

	assert_non_null(p);
	assert_true(json_is_object(p));
	for (i = 0; i < nitems(strings); i++)
		check_clean(strings[i], json_object_get(p, strings[i]), false);
	check_clean("text", json_object_get(p, "text"), true);
	check_clean("html_text", json_object_get(p, "html_text"), true);
	assert_true(json_string_length(json_object_get(p, "text")) <= QUARANTINE_PREVIEW_TEXT_MAX);
	assert_true(json_string_length(json_object_get(p, "html_text")) <=
	            QUARANTINE_PREVIEW_TEXT_MAX);
	assert_true(json_is_array(json_object_get(p, "headers")));
	assert_true(json_array_size(json_object_get(p, "headers")) <=
	            QUARANTINE_PREVIEW_HEADERS_MAX);
	json_array_foreach (json_object_get(p, "headers"), i, v) {
		check_clean("header name", json_object_get(v, "name"), false);
		check_clean("header value", json_object_get(v, "value"), false);
	}
	assert_true(json_is_array(json_object_get(p, "links")));
	assert_true(json_array_size(json_object_get(p, "links")) <= QUARANTINE_PREVIEW_LINKS_MAX);
	json_array_foreach (json_object_get(p, "links"), i, v) {
		check_clean("link text", json_object_get(v, "text"), false);
		check_clean("link href", json_object_get(v, "href"), false);
	}
	assert_true(json_is_array(json_object_get(p, "attachments")));
	assert_true(json_array_size(json_object_get(p, "attachments")) <=
	            QUARANTINE_PREVIEW_ATTACH_MAX);
	json_array_foreach (json_object_get(p, "attachments"), i, v) {
		check_clean("filename", json_object_get(v, "filename"), false);
		check_clean("content_type", json_object_get(v, "content_type"), false);
		assert_true(json_is_integer(json_object_get(v, "size")));
		assert_int_equal(strlen(jstr(v, "sha256")), 64);
	}
	assert_true(json_is_integer(json_object_get(p, "parts")));
	assert_true(json_is_boolean(json_object_get(p, "truncated")));
	v = json_object_get(p, "error");
	assert_true(v == NULL || json_is_string(v));
	/* jansson only holds valid UTF-8; the dump must work */
	dump = json_dumps(p, JSON_COMPACT);
	assert_non_null(dump);
	free(dump);
}

static json_t *
preview_of(const char *lf, bool crlf)
{
	size_t len;
	unsigned char *m = msg_make(lf, strlen(lf), crlf, &len);
	json_t *p = quarantine_preview(m, len);

	free(m);
	check_shape(p);
	return p;
}

/* --- header fields and text parts --- */

static void
test_plain(void **state)
{
	static const char msg[] = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\n"
	                          "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.test>\n"
	                          "To: a@example.test,\n"
	                          " b@example.test\n"
	                          "Cc: c@example.test\n"
	                          "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and\n"
	                          "\tmore\n"
	                          "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
	                          "Message-ID: <1@example.test>\n"
	                          "\n"
	                          "Hello,\n"
	                          "\ttabbed line\n"
	                          "bye\n";

	(void)state;
	for (int crlf = 0; crlf < 2; crlf++) {
		json_t *p = preview_of(msg, crlf);
		const json_t *h = json_object_get(p, "headers");

		assert_string_equal(jstr(p, "subject"), "Grüße and more");
		assert_string_equal(jstr(p, "from"), "Jürgen <j@example.test>");
		assert_string_equal(jstr(p, "to"), "a@example.test, b@example.test");
		assert_string_equal(jstr(p, "cc"), "c@example.test");
		assert_string_equal(jstr(p, "date"), "Mon, 1 Jan 2024 00:00:00 +0000");
		assert_string_equal(jstr(p, "message_id"), "<1@example.test>");
		assert_string_equal(jstr(p, "text"), "Hello,\n\ttabbed line\nbye\n");
		assert_string_equal(jstr(p, "html_text"), "");
		assert_int_equal(json_array_size(h), 7);
		assert_string_equal(jstr(json_array_get(h, 0), "name"), "Received");
		assert_string_equal(jstr(json_array_get(h, 4), "name"), "Subject");
		assert_string_equal(jstr(json_array_get(h, 4), "value"), "Grüße and more");
		assert_string_equal(jstr(json_array_get(h, 6), "name"), "Message-ID");
		assert_int_equal(json_array_size(json_object_get(p, "attachments")), 0);
		assert_int_equal(json_integer_value(json_object_get(p, "parts")), 1);
		assert_false(json_is_true(json_object_get(p, "truncated")));
		assert_null(json_object_get(p, "error"));
		json_decref(p);
	}
}

struct text_case {
	const char *name;
	const char *msg;
	const char *want; /* "text" */
	size_t len;       /* of msg when it holds a NUL; 0: strlen() */
};

#define HDR "From: a@example.test\nSubject: t\n"

static const struct text_case text_cases[] = {
        {"quoted-printable",
         HDR "Content-Type: text/plain; charset=utf-8\n"
             "Content-Transfer-Encoding: quoted-printable\n\n"
             "caf=C3=A9 with a soft=\n break and =3D\n",
         "café with a soft break and =\n", 0},
        {"base64",
         HDR "Content-Type: text/plain; charset=utf-8\n"
             "Content-Transfer-Encoding: base64\n\n"
             "SGVsbG8gd8O2cmxkCg==\n",
         "Hello wörld\n", 0},
        {"iso-8859-1", HDR "Content-Type: text/plain; charset=\"ISO-8859-1\"\n\ncaf\xe9 \xbd\n",
         "café ½\n", 0},
        {"latin1 alias, quoted-printable",
         HDR "Content-Type: text/plain; charset=latin1\n"
             "Content-Transfer-Encoding: quoted-printable\n\n"
             "na=EFve\n",
         "naïve\n", 0},
        {"windows-1252",
         HDR "Content-Type: text/plain; charset=windows-1252\n\n"
             "\x80 5, \x93quoted\x94 \x96 dash\n",
         "€ 5, “quoted” – dash\n", 0},
        {"windows-1252 undefined octet",
         HDR "Content-Type: text/plain; charset=windows-1252\n\na\x81z\n", "a\xef\xbf\xbdz\n", 0},
        {"no charset, 8-bit: Windows-1252", HDR "\ncaf\xe9\n", "café\n", 0},
        {"no charset, valid UTF-8 kept", HDR "\ncaf\xc3\xa9\n", "café\n", 0},
        {"unknown charset, valid UTF-8",
         HDR "Content-Type: text/plain; charset=x-no-such\n\n\xe2\x82\xac\n", "€\n", 0},
        {"utf-8 declared, invalid sequences",
         HDR "Content-Type: text/plain; charset=utf-8\n\n"
             "a\xff\xfe b\xc3 c\xed\xa0\x80 d\xf4\x90\x80\x80 e\xc0\xaf\n",
         "a\xef\xbf\xbd b\xef\xbf\xbd c\xef\xbf\xbd d\xef\xbf\xbd e\xef\xbf\xbd\n", 0},
        {"control characters",
         HDR "Content-Type: text/plain; charset=utf-8\n\n"
             "a\x01"
             "b\x1b[31mc\x7f"
             "d\xc2\x85"
             "e\x00"
             "f\tg\rh\n",
         "ab[31mcdef\tg\nh\n", sizeof(HDR) - 1 + 62},
        {"iso-2022-jp", HDR "Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s\x1b(B\n",
         "こん\n", 0},
        {"no body", HDR "\n", "", 0},
        {"no empty line", HDR, "", 0},
};

static void
test_text_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(text_cases); i++) {
		const struct text_case *c = &text_cases[i];

		for (int crlf = 0; crlf < 2; crlf++) {
			size_t len;
			unsigned char *m =
			        msg_make(c->msg, c->len ? c->len : strlen(c->msg), crlf, &len);
			json_t *p;

			p = quarantine_preview(m, len);
			check_shape(p);
			if (strcmp(jstr(p, "text"), c->want) != 0)
				table_mismatch(c->name, "%s: got \"%s\", want \"%s\"",
				               crlf ? "CRLF" : "LF",
				               table_esc(jstr(p, "text"), 200),
				               table_esc(c->want, 200));
			if (json_object_get(p, "error") != NULL)
				table_mismatch(c->name, "error %s", jstr(p, "error"));
			json_decref(p);
			free(m);
		}
	}
	assert_int_equal(table_failures, 0);
}

/* --- HTML --- */

struct html_case {
	const char *name;
	const char *html;
	const char *want;
	const char *links; /* "text|href" each, separated by ';' */
};

static const struct html_case html_cases[] = {
        {"head, script, style, comments",
         "<html><head><title>Title</title><style>p{color:red}</style>"
         "<script>alert('x')</script></head><body><!-- hidden <b>comment</b> -->"
         "<p>Hello &amp; welcome&nbsp;&lt;b&gt;</p><p>Second</p>"
         "<script type=\"text/javascript\">document.write('<p>evil</p>')</script></body></html>",
         "Hello & welcome\xc2\xa0<b>\n\nSecond", ""},
        {"entities", "<p>&eacute;&#233;&#x263a; &quot;q&quot; &copy; &bogus; &#0;x</p>", NULL, ""},
        {"link", "<p>Click <a href=\"https://evil.example/login\">here</a> now</p>",
         "Click here <https://evil.example/login> now", "here|https://evil.example/login"},
        {"link text is the target", "<a href=\"https://a.test/\">https://a.test/</a>",
         "https://a.test/", "https://a.test/|https://a.test/"},
        {"link target with newlines and spaces around",
         "<a href=\"  https://a.test/x\n?y=1 \">Go\n  there</a>", "Go there <https://a.test/x?y=1>",
         "Go there|https://a.test/x?y=1"},
        {"link that shows another target",
         "<a href=\"http://phish.example/\">https://bank.example/</a>",
         "https://bank.example/ <http://phish.example/>",
         "https://bank.example/|http://phish.example/"},
        {"javascript link", "<a href=\"javascript:alert(1)\" onclick=\"x()\">x</a>",
         "x <javascript:alert(1)>", "x|javascript:alert(1)"},
        {"anchor without href", "<a name=\"top\">Top</a>", "Top", ""},
        {"image", "<p>Logo: <img src=\"http://track.example/p.gif\" alt=\"ACME  Corp\"></p>",
         "Logo: [image: ACME Corp]", ""},
        {"image without alt", "a<img src=\"cid:x\">b", "a [image] b", ""},
        {"image link",
         "<a href=\"https://a.test/\"><img src=\"https://a.test/i.png\" alt=\"Pay\"></a>",
         "[image: Pay] <https://a.test/>", "[image: Pay]|https://a.test/"},
        {"lists", "<ul><li>one</li><li>two<ol><li>inner</li></ol></li></ul><p>after</p>",
         "- one\n- two\n  - inner\n\nafter", ""},
        {"line breaks", "a<br>b<br/><br><br><br>c<div>d</div>e", "a\nb\n\nc\n\nd\ne", ""},
        {"white space", "  lots   of \n\n  space\t here  ", "lots of space here", ""},
        {"pre", "<pre>  keep\n    this</pre>after", "  keep\n    this\n\nafter", ""},
        {"table", "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>x", "a b\nc\n\nx",
         ""},
        {"headings and hr", "<h1>Title</h1>text<hr>more", "Title\n\ntext\n---\nmore", ""},
        {"unclosed script", "<p>x</p><script>document.write(\"<p>y</p>\")", "x", ""},
        {"unclosed tags", "<p>a<b>b<i>c", "abc", ""},
        {"broken markup", "<p <a href=x>t</a> <<>> <scr<script>ipt>z</script>q", NULL, NULL},
        {"area", "<map><area href=\"https://m.test/\" alt=\"Map\"></map>", "Map <https://m.test/>",
         "Map|https://m.test/"},
        {"iframe and object content",
         "a<iframe src=\"https://x.test/\">fallback</iframe><object>obj</object>b", "ab", ""},
        {"textarea and noscript shown", "<noscript>ns</noscript> <textarea>ta</textarea>", "ns ta",
         ""},
        {"cdata and processing instruction", "<?php echo 1 ?>a<![CDATA[b]]>c", NULL, NULL},
        {"meta charset ignored", "<meta charset=\"iso-8859-1\"><p>caf\xc3\xa9</p>", "café", ""},
        {"form",
         "<form action=\"https://f.test/\"><input name=p value=secret>"
         "<button>Send</button></form>",
         "Send", ""},
        {"svg text", "<svg><text>s</text><script>x</script></svg>", "s", ""},
        {"duplicate links kept once",
         "<a href=\"https://d.test/\">d</a> <a href=\"https://d.test/\">d</a>",
         "d <https://d.test/> d <https://d.test/>", "d|https://d.test/"},
        {"empty", "", "", ""},
};

static void
test_html_table(void **state)
{
	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(html_cases); i++) {
		const struct html_case *c = &html_cases[i];
		char *msg =
		        xasprintf(HDR "Content-Type: text/html; charset=utf-8\n\n%s\n", c->html);

		for (int crlf = 0; crlf < 2; crlf++) {
			json_t *p = preview_of(msg, crlf);
			const char *got = jstr(p, "html_text");
			const json_t *v;
			size_t k;
			char links[2048] = "";

			if (c->want != NULL && strcmp(got, c->want) != 0)
				table_mismatch(c->name, "%s: got \"%s\", want \"%s\"",
				               crlf ? "CRLF" : "LF", table_esc(got, strlen(got)),
				               table_esc(c->want, strlen(c->want)));
			json_array_foreach (json_object_get(p, "links"), k, v) {
				char *one = xasprintf("%s%s|%s", k ? ";" : "", jstr(v, "text"),
				                      jstr(v, "href"));
				strncat(links, one, sizeof(links) - strlen(links) - 1);
				free(one);
			}
			if (c->links != NULL && strcmp(links, c->links) != 0)
				table_mismatch(c->name, "links: got \"%s\", want \"%s\"", links,
				               c->links);
			/* no markup of the message comes out, and never the image source */
			if (strstr(got, "<script") || strstr(got, "<p") ||
			    strstr(got, "track.example") || strstr(got, "color:red") ||
			    strstr(got, "alert('x')") || strstr(got, "comment") ||
			    strstr(got, "evil</p>"))
				table_mismatch(c->name, "markup in \"%s\"",
				               table_esc(got, strlen(got)));
			if (strcmp(jstr(p, "text"), "") != 0)
				table_mismatch(c->name, "text \"%s\"", jstr(p, "text"));
			json_decref(p);
		}
		free(msg);
	}
	assert_int_equal(table_failures, 0);
}

/* HTML in a legacy charset, quoted-printable, with a text/plain part before it. */
static void
test_html_charset(void **state)
{
	static const char msg[] = HDR "MIME-Version: 1.0\n"
	                              "Content-Type: multipart/alternative; boundary=b\n\n"
	                              "--b\n"
	                              "Content-Type: text/plain; charset=iso-8859-1\n\n"
	                              "Gr\xfc\xdf\x65\n"
	                              "--b\n"
	                              "Content-Type: text/html; charset=windows-1252\n"
	                              "Content-Transfer-Encoding: quoted-printable\n\n"
	                              "<p>Gr=FC=DFe =80 &euro;</p>\n"
	                              "--b--\n";
	json_t *p;

	(void)state;
	p = preview_of(msg, true);
	/* the line end before a boundary belongs to the boundary (RFC 2046 5.1.1) */
	assert_string_equal(jstr(p, "text"), "Grüße");
	assert_string_equal(jstr(p, "html_text"), "Grüße € €");
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 0);
	assert_int_equal(json_integer_value(json_object_get(p, "parts")), 3);
	json_decref(p);
}

/* --- the part tree and attachments --- */

static void
test_nested(void **state)
{
	static const unsigned char pdf[] = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n";
	gchar *pdf64 = g_base64_encode(pdf, sizeof(pdf) - 1);
	gchar *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, pdf, sizeof(pdf) - 1);
	gchar *empty = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)"", 0);
	char *msg = xasprintf("From: a@example.test\n"
	                      "Subject: nested\n"
	                      "MIME-Version: 1.0\n"
	                      "Content-Type: multipart/mixed; boundary=\"outer\"\n"
	                      "\n"
	                      "preamble\n"
	                      "--outer\n"
	                      "Content-Type: multipart/alternative; boundary=\"inner\"\n"
	                      "\n"
	                      "--inner\n"
	                      "Content-Type: text/plain; charset=utf-8\n"
	                      "\n"
	                      "plain body\n"
	                      "--inner\n"
	                      "Content-Type: text/html; charset=utf-8\n"
	                      "\n"
	                      "<p>html <b>body</b></p>\n"
	                      "--inner--\n"
	                      "--outer\n"
	                      "Content-Type: application/pdf\n"
	                      "Content-Disposition: attachment;\n"
	                      " filename*=utf-8''r%%C3%%A9sum%%C3%%A9.pdf\n"
	                      "Content-Transfer-Encoding: base64\n"
	                      "\n"
	                      "%s\n"
	                      "--outer\n"
	                      "Content-Type: application/octet-stream;\n"
	                      " name=\"=?UTF-8?B?w7xiZXIuZXhl?=\"\n"
	                      "\n"
	                      "--outer\n"
	                      "Content-Type: application/x-msdownload\n"
	                      "Content-Disposition: attachment; filename*0*=iso-8859-1''long%%E9;\n"
	                      " filename*1=\"-name\"; filename*2=\".exe\"\n"
	                      "\n"
	                      "MZ\n"
	                      "--outer\n"
	                      "Content-Type: text/plain; charset=utf-8\n"
	                      "Content-Disposition: attachment\n"
	                      "\n"
	                      "not the body\n"
	                      "--outer\n"
	                      "Content-Type: text/plain\n"
	                      "\n"
	                      "a second text part\n"
	                      "--outer\n"
	                      "Content-Type: message/rfc822\n"
	                      "Content-Disposition: attachment; filename=\"fwd.eml\"\n"
	                      "\n"
	                      "From: b@example.test\n"
	                      "Subject: inner\n"
	                      "Content-Type: multipart/mixed; boundary=x\n"
	                      "\n"
	                      "--x\n"
	                      "Content-Type: text/plain\n"
	                      "\n"
	                      "inner text\n"
	                      "--x\n"
	                      "Content-Type: text/html\n"
	                      "\n"
	                      "<p>inner html</p>\n"
	                      "--x--\n"
	                      "--outer--\n"
	                      "epilogue\n",
	                      pdf64);
	static const struct {
		const char *filename, *ctype;
	} want[] = {
	        {"résumé.pdf", "application/pdf"},
	        {"über.exe", "application/octet-stream"},
	        {"longé-name.exe", "application/x-msdownload"},
	        {"", "text/plain"},
	        {"", "text/plain"},
	        {"fwd.eml", "message/rfc822"},
	        {"", "text/plain"},
	        {"", "text/html"},
	};

	(void)state;
	for (int crlf = 0; crlf < 2; crlf++) {
		json_t *p = preview_of(msg, crlf);
		const json_t *att = json_object_get(p, "attachments");
		const json_t *h = json_object_get(p, "headers");

		/* the top-level Content-Type is a header field like the others, in its place */
		assert_int_equal(json_array_size(h), 4);
		assert_string_equal(jstr(json_array_get(h, 2), "name"), "MIME-Version");
		assert_string_equal(jstr(json_array_get(h, 3), "name"), "Content-Type");
		assert_string_equal(jstr(json_array_get(h, 3), "value"),
		                    "multipart/mixed; boundary=\"outer\"");
		assert_string_equal(jstr(p, "text"), "plain body");
		assert_string_equal(jstr(p, "html_text"), "html body");
		assert_int_equal(json_array_size(att), nitems(want));
		for (size_t i = 0; i < nitems(want) && i < json_array_size(att); i++) {
			const json_t *a = json_array_get(att, i);

			assert_string_equal(jstr(a, "filename"), want[i].filename);
			assert_string_equal(jstr(a, "content_type"), want[i].ctype);
		}
		assert_int_equal(
		        json_integer_value(json_object_get(json_array_get(att, 0), "size")),
		        sizeof(pdf) - 1);
		assert_string_equal(jstr(json_array_get(att, 0), "sha256"), sum);
		assert_int_equal(
		        json_integer_value(json_object_get(json_array_get(att, 1), "size")), 0);
		assert_string_equal(jstr(json_array_get(att, 1), "sha256"), empty);
		assert_int_equal(
		        json_integer_value(json_object_get(json_array_get(att, 2), "size")),
		        2); /* "MZ": the line end goes with the boundary */
		/* mixed, alternative, plain, html, pdf, exe, exe, text, text, rfc822, mixed, 2 */
		assert_int_equal(json_integer_value(json_object_get(p, "parts")), 13);
		assert_false(json_is_true(json_object_get(p, "truncated")));
		assert_int_equal(json_array_size(json_object_get(p, "links")), 0);
		json_decref(p);
	}
	free(msg);
	g_free(pdf64);
	g_free(sum);
	g_free(empty);
}

/* A single-part message that is an attachment has no body. */
static void
test_single_attachment(void **state)
{
	json_t *p;

	(void)state;
	p = preview_of(HDR
	               "Content-Type: application/zip; name=\"a.zip\"\n"
	               "Content-Transfer-Encoding: base64\n\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n",
	               true);
	assert_string_equal(jstr(p, "text"), "");
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 1);
	assert_string_equal(jstr(json_array_get(json_object_get(p, "attachments"), 0), "filename"),
	                    "a.zip");
	assert_int_equal(json_integer_value(json_object_get(
	                         json_array_get(json_object_get(p, "attachments"), 0), "size")),
	                 22);
	json_decref(p);
}

/* Bidi overrides in a file name cannot reorder what the administrator reads. */
static void
test_bidi_filename(void **state)
{
	json_t *p;

	(void)state;
	p = preview_of(HDR "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n--b\n"
	                   "Content-Type: application/octet-stream\n"
	                   "Content-Disposition: attachment; filename*=utf-8''inv%E2%80%AEfdp.exe\n"
	                   "\nMZ\n--b--\n",
	               false);
	assert_string_equal(jstr(json_array_get(json_object_get(p, "attachments"), 0), "filename"),
	                    "inv\xef\xbf\xbd"
	                    "fdp.exe");
	assert_string_equal(jstr(p, "text"), "body");
	json_decref(p);
}

/* --- hostile and broken input --- */

static void
test_script_subject(void **state)
{
	json_t *p;

	(void)state;
	p = preview_of("From: \"<img src=x onerror=alert(1)>\" <a@example.test>\n"
	               "Subject: <script>alert(1)</script>\n\nbody\n",
	               true);
	assert_string_equal(jstr(p, "subject"), "<script>alert(1)</script>");
	assert_string_equal(jstr(p, "from"), "\"<img src=x onerror=alert(1)>\" <a@example.test>");
	assert_string_equal(jstr(p, "text"), "body\n");
	assert_string_equal(jstr(p, "html_text"), "");
	assert_int_equal(json_array_size(json_object_get(p, "links")), 0);
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 0);
	json_decref(p);
}

static void
test_invalid_utf8(void **state)
{
	json_t *p;

	(void)state;
	p = preview_of(
	        "From: \xff\xfe <a@example.test>\n"
	        "Subject: =?UTF-8?B?/w==?= raw \xc3\x28 \xe2\x82\n"
	        "X-Bin\xff: v\n"
	        "Content-Type: multipart/mixed; boundary=b\n\n"
	        "--b\nContent-Type: text/plain; charset=utf-8\n\nok \xf8\x88\x80\x80\x80 ok\n"
	        "--b\nContent-Type: text/html; charset=utf-8\n\n"
	        "<a href=\"https://x.test/\xff\">\xfe</a>\n"
	        "--b\nContent-Type: application/octet-stream\n"
	        "Content-Disposition: attachment; filename=\"\xff.bin\"\n\nx\n--b--\n",
	        true);
	/* every string was made valid; what was valid is kept */
	assert_non_null(strstr(jstr(p, "subject"), "raw"));
	assert_non_null(strstr(jstr(p, "text"), "ok \xef\xbf\xbd ok"));
	assert_non_null(strstr(jstr(p, "html_text"), "<https://x.test/"));
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 1);
	assert_non_null(strstr(
	        jstr(json_array_get(json_object_get(p, "attachments"), 0), "filename"), ".bin"));
	json_decref(p);
}

static void
test_broken_mime(void **state)
{
	static const char *const msgs[] = {
	        /* the closing boundary never comes */
	        HDR "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n"
	            "Content-Type: application/pdf; name=x.pdf\n\n%PDF-1.4 cut",
	        /* no boundary parameter */
	        HDR "Content-Type: multipart/mixed\n\n--b\n\ntext\n--b--\n",
	        /* the boundary never appears */
	        HDR "Content-Type: multipart/alternative; boundary=zzz\n\nonly text\n",
	        /* a bad base64 body and a bad transfer encoding */
	        HDR "Content-Transfer-Encoding: base64\n\n!!!not base64***\n",
	        HDR "Content-Transfer-Encoding: x-unknown\n\nplain\n",
	        /* header lines without colon, and a body only */
	        "no header here\nat all\n\nbody\n",
	        "\n\nbody after an empty header section\n",
	        /* header continuation first */
	        " continued\nSubject: s\n\nb\n",
	        /* a content type that is not one */
	        HDR "Content-Type: ;;;=\n\nb\n",
	        HDR "Content-Type: text/html; charset=\"\n\n<p>x\n",
	};

	(void)state;
	for (size_t i = 0; i < nitems(msgs); i++)
		for (int crlf = 0; crlf < 2; crlf++) {
			json_t *p = preview_of(msgs[i], crlf);

			json_decref(p);
		}
	/* the unterminated one still shows its first part and lists the second */
	json_t *p = preview_of(msgs[0], true);
	assert_string_equal(jstr(p, "text"), "first");
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 1);
	assert_string_equal(jstr(json_array_get(json_object_get(p, "attachments"), 0), "filename"),
	                    "x.pdf");
	assert_null(json_object_get(p, "error"));
	json_decref(p);
}

static void
test_empty(void **state)
{
	static const unsigned char one[] = "x";
	json_t *p;

	(void)state;
	p = quarantine_preview(NULL, 0);
	check_shape(p);
	assert_non_null(json_object_get(p, "error"));
	assert_string_equal(jstr(p, "subject"), "");
	assert_int_equal(json_integer_value(json_object_get(p, "parts")), 0);
	json_decref(p);
	p = quarantine_preview(one, 0);
	check_shape(p);
	assert_non_null(json_object_get(p, "error"));
	json_decref(p);
	for (size_t i = 0; i < 4; i++) {
		static const char *const tiny[] = {"x", "\n", "\r\n", "\0"};

		p = quarantine_preview((const unsigned char *)tiny[i],
		                       i == 3 ? 1 : strlen(tiny[i]));
		check_shape(p);
		json_decref(p);
	}
}

/* A text part over the limit: cut at a character boundary. */
static void
test_huge_text(void **state)
{
	struct dynbuf b;
	json_t *p;
	const char *t;
	size_t n;

	(void)state;
	dynbuf_init(&b, 4u << 20);
	assert_int_equal(dynbuf_printf(&b, HDR "Content-Type: text/plain; charset=utf-8\n\n"), 0);
	for (size_t i = 0; i < 100000; i++) /* 3 * 100000 + ... octets of "€ab\n" */
		assert_int_equal(dynbuf_add(&b,
		                            "\xe2\x82\xac"
		                            "ab\n",
		                            6),
		                 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	t = jstr(p, "text");
	n = strlen(t);
	assert_true(n <= QUARANTINE_PREVIEW_TEXT_MAX);
	assert_true(n > QUARANTINE_PREVIEW_TEXT_MAX - 4);
	assert_true(g_utf8_validate(t, (gssize)n, NULL));
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);

	/* the same as HTML */
	b.len = 0;
	assert_int_equal(dynbuf_printf(&b, HDR "Content-Type: text/html; charset=utf-8\n\n"), 0);
	for (size_t i = 0; i < 100000; i++)
		assert_int_equal(dynbuf_add(&b, "<p>\xe2\x82\xac</p>", 10), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	t = jstr(p, "html_text");
	n = strlen(t);
	assert_true(n <= QUARANTINE_PREVIEW_TEXT_MAX && n > QUARANTINE_PREVIEW_TEXT_MAX - 8);
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);
	free(b.p);
}

/* Header fields, attachments and links over their limits; far too many boundaries. */
static void
test_limits(void **state)
{
	struct dynbuf b;
	json_t *p;

	(void)state;
	dynbuf_init(&b, 16u << 20);
	for (int i = 0; i < 300; i++)
		assert_int_equal(dynbuf_printf(&b, "X-H%d: v%d\n", i, i), 0);
	assert_int_equal(dynbuf_printf(&b, "Subject: last\n\nbody\n"), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	assert_int_equal(json_array_size(json_object_get(p, "headers")),
	                 QUARANTINE_PREVIEW_HEADERS_MAX);
	assert_string_equal(jstr(p, "subject"), "last");
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);

	b.len = 0;
	assert_int_equal(dynbuf_printf(&b, HDR "Content-Type: multipart/mixed; boundary=b\n\n"), 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(
		        dynbuf_printf(&b, "--b\nContent-Type: application/x-%d\n\n%d\n", i, i), 0);
	assert_int_equal(dynbuf_printf(&b, "--b--\n"), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	assert_int_equal(json_array_size(json_object_get(p, "attachments")),
	                 QUARANTINE_PREVIEW_ATTACH_MAX);
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);

	b.len = 0;
	assert_int_equal(dynbuf_printf(&b, HDR "Content-Type: text/html\n\n"), 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(dynbuf_printf(&b, "<a href=\"https://l%d.test/\">l</a>\n", i), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	assert_int_equal(json_array_size(json_object_get(p, "links")),
	                 QUARANTINE_PREVIEW_LINKS_MAX);
	/* every link still shows its target in the text */
	assert_non_null(strstr(jstr(p, "html_text"), "<https://l299.test/>"));
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);

	b.len = 0;
	assert_int_equal(dynbuf_printf(&b, "Subject: many\nContent-Type: multipart/mixed; "
	                                   "boundary=b\n\n"),
	                 0);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(dynbuf_printf(&b, "--b\n\n"), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	assert_string_equal(jstr(p, "subject"), "many");
	assert_non_null(json_object_get(p, "error"));
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);

	/* nesting past the depth limit */
	b.len = 0;
	assert_int_equal(dynbuf_printf(&b, HDR), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(
		        dynbuf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n",
		                      i, i),
		        0);
	assert_int_equal(dynbuf_printf(&b, "\ndeep\n"), 0);
	p = quarantine_preview((const unsigned char *)b.p, b.len);
	check_shape(p);
	assert_string_equal(jstr(p, "text"), "");
	assert_true(json_is_true(json_object_get(p, "truncated")));
	json_decref(p);
	free(b.p);
}

/* 8-bit garbage, and garbage inside a plausible message: never NULL, always the shape. */
static void
test_garbage(void **state)
{
	static const char *const frames[] = {
	        "",
	        HDR "\n",
	        HDR "Content-Type: text/html\n\n",
	        HDR "Content-Type: multipart/mixed; boundary=b\n\n--b\n",
	        HDR "Content-Type: text/plain; charset=iso-2022-jp\n\n",
	        HDR "Content-Type: text/plain; charset=utf-16\n\n",
	        "Subject: ",
	};
	uint64_t seed = 0x9e3779b97f4a7c15u;
	unsigned char buf[4096 + 128];

	(void)state;
	for (int round = 0; round < 300; round++) {
		const char *f = frames[round % nitems(frames)];
		size_t flen = strlen(f), n;
		json_t *p;

		memcpy(buf, f, flen);
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		n = flen + seed % 4096;
		for (size_t i = flen; i < n; i++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			/* mostly 8-bit and markup-ish octets */
			buf[i] = (seed & 7) == 0 ? (unsigned char)"<>&;\n-=\""[(seed >> 8) % 8]
			                         : (unsigned char)(seed >> 16);
		}
		p = quarantine_preview(buf, n);
		check_shape(p);
		json_decref(p);
	}
}

static int
setup(void **state)
{
	(void)state;
	g_mime_init();
	xmlInitParser();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	g_mime_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_plain),         cmocka_unit_test(test_text_table),
	        cmocka_unit_test(test_html_table),    cmocka_unit_test(test_html_charset),
	        cmocka_unit_test(test_nested),        cmocka_unit_test(test_single_attachment),
	        cmocka_unit_test(test_bidi_filename), cmocka_unit_test(test_script_subject),
	        cmocka_unit_test(test_invalid_utf8),  cmocka_unit_test(test_broken_mime),
	        cmocka_unit_test(test_empty),         cmocka_unit_test(test_huge_text),
	        cmocka_unit_test(test_limits),        cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
