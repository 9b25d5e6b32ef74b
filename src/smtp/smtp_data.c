/*
 * smtp_data.c - the DATA / BDAT content scanner (see smtp_data.h).
 *
 * RFC 5321 sections 2.3.8 (CRLF is the only line end), 4.1.1.4 and 4.5.2
 * (CRLF "." CRLF ends the data; a leading "." is removed from any other
 * line), 4.5.3.1.6 (1000-octet text lines); RFC 3030 (BDAT: raw octets);
 * RFC 5322 sections 2.2 and 3.6.7 (header fields, Received:).
 *
 * One byte-level state machine, which only a line start, a CR, an LF, and
 * (until the first of each is flagged) a NUL or an 8-bit octet ever visit
 * one octet at a time. Inside a line a word-at-a-time scan skips ordinary
 * octets, and everything between two octets that are not emitted goes to
 * the callback as one run.
 *
 * A CR inside a line goes out with its run straight away: what follows it
 * only decides whether it ended the line or was bare (which is why
 * smtp_data_finish(), which has no callback, only has to classify it).
 * The octets that might be the terminator, a "." at a line start and the
 * CR after it, are held back; once the next octet shows they are not, the
 * dot is dropped (it was stuffing) and the CR is emitted as a bare CR.
 * A bare CR or LF never returns the machine to a line start, so only
 * CR LF "." CR LF ends DATA.
 */
#include "smtp_data.h"

#include <string.h>

enum data_state {
	DATA_LINE_START, /* DOT mode: at the first octet of a line */
	DATA_TEXT,       /* inside a line */
	DATA_CR,         /* after a CR (already emitted); LF would end the line */
	DATA_DOT,        /* DOT mode: "." at a line start, held back */
	DATA_DOT_CR,     /* DOT mode: "." CR at a line start, both held back */
	DATA_DONE,       /* the terminator has been consumed */
};

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Non-zero iff some octet of v is zero (exact: no false positive without one). */
static inline uint64_t
word_haszero(uint64_t v)
{
	return (v - ONES) & ~v & HIGHS;
}

/*
 * First octet in [p, end) that needs the state machine: CR, LF and, while
 * their flags are not yet set, NUL and octets >= 0x80.
 */
static inline const unsigned char *
data_scan(const unsigned char *p, const unsigned char *end, unsigned flags)
{
	const uint64_t nul = (flags & SMTP_DATA_NUL) ? 0 : ~0ULL;
	const uint64_t high = (flags & SMTP_DATA_8BIT) ? 0 : HIGHS;

	while (end - p >= 8) {
		uint64_t x, m;

		memcpy(&x, p, sizeof(x));
		m = word_haszero(x ^ (ONES * '\r')) | word_haszero(x ^ (ONES * '\n')) |
		    (word_haszero(x) & nul) | (x & high);
		if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			/* borrows only carry upwards: the lowest hit is a real one */
			return p + (__builtin_ctzll(m) >> 3);
#else
			break;
#endif
		}
		p += 8;
	}
	for (; p < end; p++) {
		unsigned char c = *p;

		if (c == '\r' || c == '\n' || (c == 0 && nul) || (c >= 0x80 && high))
			break;
	}
	return p;
}

/* Account n more wire octets of the current line. */
static inline void
data_grow(struct smtp_data_scan *ds, size_t n)
{
	ds->line_len += n;
	if (ds->line_len > ds->line_max - 2)
		ds->flags |= SMTP_DATA_LONG_LINE;
	if (ds->in_header) {
		ds->header_bytes += n;
		if (ds->header_bytes > ds->header_max)
			ds->flags |= SMTP_DATA_HEADER_TOO_BIG;
	}
}

/* A CR LF has ended the current line. */
static void
data_line_end(struct smtp_data_scan *ds)
{
	if (ds->in_header) {
		if (ds->line_len == 0)
			ds->in_header = false; /* the empty line ends the header block */
		else {
			ds->header_bytes += 2;
			if (ds->header_bytes > ds->header_max)
				ds->flags |= SMTP_DATA_HEADER_TOO_BIG;
		}
	}
	ds->line_len = 0;
	ds->hdr_match = ds->in_header ? 1 : 0;
	ds->state = ds->mode == SMTP_DATA_MODE_DOT ? DATA_LINE_START : DATA_TEXT;
}

/*
 * Match "received" *WSP ":" at the start of a header line, one octet at a
 * time; hdr_match is 1 + the number of letters matched, 0 once it failed.
 */
static void
data_hdr_step(struct smtp_data_scan *ds, unsigned char c)
{
	static const char name[] = "received";
	unsigned m = ds->hdr_match;

	if (m < sizeof(name)) {
		/* all of name is lower-case letters, so c | 0x20 folds only A-Z */
		ds->hdr_match = (c | 0x20) == name[m - 1] ? m + 1 : 0;
	} else if (c != ' ' && c != '\t') {
		if (c == ':')
			ds->received++;
		ds->hdr_match = 0;
	}
}

static inline void
data_emit(struct smtp_data_scan *ds, const unsigned char *p, size_t n, smtp_data_emit_fn emit,
          void *ctx)
{
	if (n == 0)
		return;
	ds->size += n;
	if (emit != NULL)
		emit(ctx, (const char *)p, n);
}

void
smtp_data_init(struct smtp_data_scan *ds, enum smtp_data_mode mode, size_t header_max,
               size_t line_max)
{
	memset(ds, 0, sizeof(*ds));
	ds->mode = mode;
	ds->header_max = header_max;
	ds->line_max = line_max < 3 ? 3 : line_max;
	ds->in_header = true;
	ds->hdr_match = 1;
	/* the CRLF of the DATA command counts as the previous line end */
	ds->state = mode == SMTP_DATA_MODE_DOT ? DATA_LINE_START : DATA_TEXT;
}

size_t
smtp_data_feed(struct smtp_data_scan *ds, const char *in, size_t len, smtp_data_emit_fn emit,
               void *ctx, bool *done)
{
	static const unsigned char cr = '\r';
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	const unsigned char *run = p; /* start of the octets not yet emitted */
	bool done_dummy;

	if (done == NULL)
		done = &done_dummy;
	*done = false;
	if (ds->state == DATA_DONE) {
		*done = true;
		return 0;
	}

	while (p < end) {
		unsigned char c;

		switch (ds->state) {
		case DATA_TEXT:
			if (ds->hdr_match == 0) {
				const unsigned char *q = data_scan(p, end, ds->flags);

				if (q != p) {
					data_grow(ds, (size_t)(q - p));
					if ((p = q) == end)
						break;
				}
			} else
				data_hdr_step(ds, *p);
			c = *p++;
			if (c == '\r')
				ds->state = DATA_CR;
			else {
				if (c == '\n')
					ds->flags |= SMTP_DATA_BARE_LF;
				else if (c == 0)
					ds->flags |= SMTP_DATA_NUL;
				else if (c >= 0x80)
					ds->flags |= SMTP_DATA_8BIT;
				data_grow(ds, 1);
			}
			break;
		case DATA_CR:
			if (*p == '\n') {
				p++;
				data_line_end(ds);
			} else {
				ds->flags |= SMTP_DATA_BARE_CR;
				data_grow(ds, 1);
				ds->state = DATA_TEXT;
			}
			break;
		case DATA_LINE_START:
			if (*p == '.') {
				data_emit(ds, run, (size_t)(p - run), emit, ctx);
				run = ++p;
				ds->state = DATA_DOT;
			} else
				ds->state = DATA_TEXT;
			break;
		case DATA_DOT:
			if (*p == '\r') {
				run = ++p;
				ds->state = DATA_DOT_CR;
			} else {
				/* the stuffing dot, dropped: not part of the line (4.5.3.1.6) */
				ds->state = DATA_TEXT;
			}
			break;
		case DATA_DOT_CR:
			if (*p == '\n') {
				run = ++p;
				ds->state = DATA_DONE;
				*done = true;
				goto out;
			}
			/* not the end: the dot was stuffing, the CR is bare */
			data_emit(ds, run, (size_t)(p - run), emit, ctx);
			data_emit(ds, &cr, 1, emit, ctx);
			ds->flags |= SMTP_DATA_BARE_CR;
			data_grow(ds, 1);
			ds->hdr_match = 0;
			ds->state = DATA_TEXT;
			break;
		default:
			goto out;
		}
	}
out:
	data_emit(ds, run, (size_t)(p - run), emit, ctx);
	return (size_t)(p - (const unsigned char *)in);
}

void
smtp_data_finish(struct smtp_data_scan *ds)
{
	if (ds->mode != SMTP_DATA_MODE_RAW || ds->state != DATA_CR)
		return;
	ds->flags |= SMTP_DATA_BARE_CR;
	data_grow(ds, 1);
	ds->state = DATA_TEXT;
}
