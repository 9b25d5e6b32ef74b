/*
 * fuzz_preview.c - libFuzzer target for the safe preview of a held
 * message (src/quarantine/quarantine_preview.c): GMime's MIME model,
 * RFC 2047 / 2231 decoding, charset conversion, libxml2's HTML parser and
 * the HTML-to-text walk, over any octets (CRLF or LF, as stored).
 *
 * Invariants: a JSON object, never NULL, with every field of its type;
 * every string valid UTF-8 (jansson holds no other) without control
 * characters (text and html_text keep \n and \t), within its limit;
 * arrays within theirs; an attachment's sha256 is 64 hex digits; the
 * object serialises.
 */
#include "fuzz_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <libxml/parser.h>

#include "common/log.h"
#include "quarantine/quarantine_preview.h"

static void
fuzz_check_str(const json_t *s, bool multiline, size_t max)
{
	const char *v = json_string_value(s);
	size_t n = json_string_length(s);

	CHECK(v != NULL);
	CHECK(n <= max);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		CHECK(c >= 0x20 || (multiline && (c == '\n' || c == '\t')));
		CHECK(c != 0x7f);
		CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char)v[i + 1] <= 0x9f)); /* C1 */
	}
}

static void
fuzz_check_array(const json_t *a, size_t max, const char *const *keys, size_t nkeys)
{
	const json_t *v;
	size_t i;

	CHECK(json_is_array(a));
	CHECK(json_array_size(a) <= max);
	json_array_foreach (a, i, v) {
		CHECK(json_is_object(v));
		for (size_t k = 0; k < nkeys; k++)
			fuzz_check_str(json_object_get(v, keys[k]), false, SIZE_MAX);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const strings[] = {"subject", "from", "to", "cc", "date", "message_id"};
	static const char *const hdr_keys[] = {"name", "value"};
	static const char *const link_keys[] = {"text", "href"};
	static const char *const att_keys[] = {"filename", "content_type", "sha256"};
	static bool init;
	const json_t *v, *e;
	json_t *p;
	size_t i;
	char *dump;

	if (!init) {
		log_init("fuzz", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
		g_mime_init();
		xmlInitParser();
		init = true;
	}
	p = quarantine_preview(data, size);
	CHECK(json_is_object(p));
	for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		fuzz_check_str(json_object_get(p, strings[i]), false, SIZE_MAX);
	fuzz_check_str(json_object_get(p, "text"), true, QUARANTINE_PREVIEW_TEXT_MAX);
	fuzz_check_str(json_object_get(p, "html_text"), true, QUARANTINE_PREVIEW_TEXT_MAX);
	fuzz_check_array(json_object_get(p, "headers"), QUARANTINE_PREVIEW_HEADERS_MAX, hdr_keys,
	                 2);
	fuzz_check_array(json_object_get(p, "links"), QUARANTINE_PREVIEW_LINKS_MAX, link_keys, 2);
	fuzz_check_array(json_object_get(p, "attachments"), QUARANTINE_PREVIEW_ATTACH_MAX, att_keys,
	                 3);
	json_array_foreach (json_object_get(p, "attachments"), i, e) {
		const char *h = json_string_value(json_object_get(e, "sha256"));

		CHECK(json_is_integer(json_object_get(e, "size")));
		CHECK(json_integer_value(json_object_get(e, "size")) >= 0);
		CHECK(strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64);
	}
	CHECK(json_is_integer(json_object_get(p, "parts")));
	CHECK(json_is_boolean(json_object_get(p, "truncated")));
	v = json_object_get(p, "error");
	CHECK(v == NULL || json_is_string(v));
	CHECK(size > 0 || v != NULL);
	dump = json_dumps(p, JSON_COMPACT);
	CHECK(dump != NULL);
	free(dump);
	json_decref(p);
	return 0;
}
