/*
 * fuzz_smtp_data.c - libFuzzer target for the DATA / BDAT scanner
 * (RFC 5321 4.1.1.4, 4.5.2, 4.5.3.1.6; RFC 3030).
 *
 * Octet 0 picks a split point, octet 1 the header limit; the rest is fed
 * in DOT and in RAW mode, whole, split in two, and octet by octet.
 * Invariants: every way of feeding gives the same result; consumed <= len;
 * size is the sum of the emitted runs; done only right after a real
 * CR LF "." CR LF; the payload and flags match a naive whole-buffer model;
 * and a done message without bare CR/LF re-stuffs to the input.
 */
#include "fuzz_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_data.h"

#define MODEL_FLAGS                                                                                \
	(SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF | SMTP_DATA_LONG_LINE | SMTP_DATA_NUL |             \
	 SMTP_DATA_8BIT)

struct buf {
	char *p;
	size_t len, cap;
	uint64_t emitted; /* sum of the n of every emit() */
};

static void
buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
emit(void *ctx, const char *p, size_t n)
{
	struct buf *b = ctx;

	CHECK(n > 0);
	b->emitted += n;
	buf_add(b, p, n);
}

struct outcome {
	bool done;
	size_t consumed;
	struct buf out;
	struct smtp_data_scan ds;
};

/* Feed in[0..len) cut at cuts[0..ncuts), as a session would. */
static void
feed(struct outcome *o, enum smtp_data_mode mode, size_t header_max, const char *in, size_t len,
     const size_t *cuts, size_t ncuts)
{
	size_t start = 0;

	memset(o, 0, sizeof(*o));
	smtp_data_init(&o->ds, mode, header_max, SMTP_TEXT_LINE_MAX);
	for (size_t k = 0; k <= ncuts && !o->done; k++) {
		size_t end = k < ncuts ? cuts[k] : len, n;

		n = smtp_data_feed(&o->ds, in + start, end - start, emit, &o->out, &o->done);
		CHECK(n <= end - start);
		CHECK(o->done || n == end - start);
		o->consumed += n;
		start = end;
	}
	if (mode == SMTP_DATA_MODE_RAW)
		smtp_data_finish(&o->ds);
	CHECK(o->ds.size == o->out.emitted && o->out.emitted == o->out.len);
}

static void
same(const struct outcome *a, const struct outcome *b)
{
	CHECK(a->done == b->done && a->consumed == b->consumed);
	CHECK(a->out.len == b->out.len);
	CHECK(a->out.len == 0 || memcmp(a->out.p, b->out.p, a->out.len) == 0);
	CHECK(a->ds.flags == b->ds.flags && a->ds.received == b->ds.received);
	CHECK(a->ds.header_bytes == b->ds.header_bytes && a->ds.size == b->ds.size);
}

/*
 * The naive model of DATA over a whole buffer, with look-ahead instead of
 * states: payload, done/consumed and the MODEL_FLAGS.
 */
static void
model_dot(const char *in, size_t n, struct buf *out, bool *done, size_t *consumed, unsigned *flags)
{
	size_t i = 0, line_len = 0;
	bool at_start = true;

	*done = false;
	*flags = 0;
	while (i < n) {
		unsigned char c;

		if (at_start) {
			at_start = false;
			if (in[i] == '.') {
				if (i + 1 >= n || (in[i + 1] == '\r' && i + 2 >= n))
					break; /* held back, undecided */
				if (in[i + 1] == '\r' && in[i + 2] == '\n') {
					*done = true;
					*consumed = i + 3;
					return;
				}
				i++; /* the stuffing dot: not counted (RFC 5321 4.5.3.1.6) */
			}
		}
		c = (unsigned char)in[i];
		if (c == '\r' && i + 1 < n && in[i + 1] == '\n') {
			buf_add(out, "\r\n", 2);
			i += 2;
			at_start = true;
			line_len = 0;
			continue;
		}
		if (c == '\r' && i + 1 < n)
			*flags |= SMTP_DATA_BARE_CR;
		if (c == '\n')
			*flags |= SMTP_DATA_BARE_LF;
		if (c == 0)
			*flags |= SMTP_DATA_NUL;
		if (c >= 0x80)
			*flags |= SMTP_DATA_8BIT;
		if (c != '\r' || i + 1 < n) /* a CR at the very end is not counted yet */
			line_len++;
		if (line_len > SMTP_TEXT_LINE_MAX - 2)
			*flags |= SMTP_DATA_LONG_LINE;
		buf_add(out, (const char *)&in[i], 1);
		i++;
	}
	*consumed = n;
}

/*
 * The naive model of a RAW message (after finish()): flags, Received:
 * fields and header octets, from lines split at CR LF.
 */
static void
model_raw(const char *in, size_t n, unsigned *flags, unsigned *received, size_t *header_bytes)
{
	size_t start = 0;
	bool header = true;

	*flags = 0;
	*received = 0;
	*header_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '\r' && (i + 1 == n || in[i + 1] != '\n'))
			*flags |= SMTP_DATA_BARE_CR;
		if (c == '\n' && (i == 0 || in[i - 1] != '\r'))
			*flags |= SMTP_DATA_BARE_LF;
		if (c == 0)
			*flags |= SMTP_DATA_NUL;
		if (c >= 0x80)
			*flags |= SMTP_DATA_8BIT;
	}
	while (start < n) {
		size_t end = start, ll;

		while (end < n && !(in[end] == '\r' && end + 1 < n && in[end + 1] == '\n'))
			end++;
		ll = end - start;
		if (ll > SMTP_TEXT_LINE_MAX - 2)
			*flags |= SMTP_DATA_LONG_LINE;
		if (header && ll == 0 && end < n)
			header = false;
		else if (header) {
			size_t k = 8;

			*header_bytes += ll + (end < n ? 2 : 0);
			if (ll >= 8 && strncasecmp(in + start, "received", 8) == 0) {
				while (k < ll && (in[start + k] == ' ' || in[start + k] == '\t'))
					k++;
				if (k < ll && in[start + k] == ':')
					(*received)++;
			}
		}
		start = end + 2;
	}
}

/* Dot-stuff a payload again: a line starting with '.' gets one more. */
static void
restuff(const char *p, size_t n, struct buf *out)
{
	bool at_start = true;

	for (size_t i = 0; i < n; i++) {
		if (at_start && p[i] == '.')
			buf_add(out, ".", 1);
		at_start = p[i] == '\n' && i > 0 && p[i - 1] == '\r';
		buf_add(out, p + i, 1);
	}
}

/* Does some line of in[0..n) start with a single '.' (legal, but not canonical)? */
static bool
has_lone_dot(const char *in, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (in[i] == '.' && in[i + 1] != '.' &&
		    (i == 0 || (i >= 2 && in[i - 1] == '\n' && in[i - 2] == '\r')))
			return true;
	return false;
}

static void
check_mode(enum smtp_data_mode mode, size_t header_max, const char *in, size_t len, size_t cut)
{
	struct outcome whole, split, bytewise;
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));

	CHECK(cuts != NULL);
	feed(&whole, mode, header_max, in, len, NULL, 0);
	cuts[0] = cut;
	feed(&split, mode, header_max, in, len, cuts, 1);
	same(&whole, &split);
	for (size_t i = 0; i + 1 < len; i++)
		cuts[i] = i + 1;
	feed(&bytewise, mode, header_max, in, len, cuts, len > 1 ? len - 1 : 0);
	same(&whole, &bytewise);

	CHECK(whole.consumed <= len);
	CHECK(((whole.ds.flags & SMTP_DATA_HEADER_TOO_BIG) != 0) ==
	      (whole.ds.header_bytes > header_max));

	if (mode == SMTP_DATA_MODE_RAW) {
		unsigned flags, received;
		size_t header_bytes;

		CHECK(!whole.done && whole.consumed == len);
		CHECK(whole.out.len == len && (len == 0 || memcmp(whole.out.p, in, len) == 0));
		model_raw(in, len, &flags, &received, &header_bytes);
		CHECK((whole.ds.flags & MODEL_FLAGS) == flags);
		CHECK(whole.ds.received == received);
		CHECK(whole.ds.header_bytes == header_bytes);
	} else {
		struct buf model = {0}, again = {0};
		bool done;
		size_t consumed;
		unsigned flags, received;
		size_t hb;

		model_dot(in, len, &model, &done, &consumed, &flags);
		CHECK(whole.done == done && whole.consumed == consumed);
		CHECK(whole.out.len == model.len &&
		      (model.len == 0 || memcmp(whole.out.p, model.p, model.len) == 0));
		CHECK((whole.ds.flags & MODEL_FLAGS) == flags);
		/* Received: is counted on the unstuffed header lines */
		model_raw(whole.out.p, whole.out.len, &flags, &received, &hb);
		CHECK(whole.ds.received == received);
		if (whole.done) {
			/* only a real CR LF "." CR LF ends the data */
			CHECK(whole.consumed >= 3 &&
			      memcmp(in + whole.consumed - 3, ".\r\n", 3) == 0);
			CHECK(whole.consumed == 3 ||
			      (whole.consumed >= 5 &&
			       memcmp(in + whole.consumed - 5, "\r\n", 2) == 0));
			if (!(whole.ds.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF))) {
				restuff(whole.out.p, whole.out.len, &again);
				CHECK((again.len == whole.consumed - 3 &&
				       (again.len == 0 || memcmp(again.p, in, again.len) == 0)) ||
				      has_lone_dot(in, whole.consumed - 3));
			}
		}
		free(model.p);
		free(again.p);
	}
	free(whole.out.p);
	free(split.out.p);
	free(bytewise.out.p);
	free(cuts);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in;
	size_t len, cut, header_max;

	if (size < 2)
		return 0;
	in = (const char *)data + 2;
	len = size - 2;
	cut = len * data[0] / 255;
	header_max = data[1];
	check_mode(SMTP_DATA_MODE_DOT, header_max, in, len, cut);
	check_mode(SMTP_DATA_MODE_RAW, header_max, in, len, cut);
	return 0;
}
