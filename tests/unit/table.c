/*
 * table.c - shared helpers of the table-driven unit tests (see table.h).
 */
#include "table.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

int table_failures;

void
table_reset(void)
{
	table_failures = 0;
}

void
table_mismatch(const char *row, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("%s: %s\n", row, msg);
	table_failures++;
}

const char *
table_esc(const char *s, size_t n)
{
	static char bufs[4][1200];
	static int which;
	char *b = bufs[which++ % 4];
	size_t o = 0;

	for (size_t i = 0; i < n && o + 8 < sizeof(bufs[0]); i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			b[o++] = (char)c;
		else if (c == '\r')
			o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "\\r");
		else if (c == '\n')
			o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "\\n");
		else
			o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "\\x%02x", c);
	}
	b[o] = '\0';
	return b;
}
