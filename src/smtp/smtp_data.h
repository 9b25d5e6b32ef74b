/*
 * smtp_data.h - the message-content state machine for DATA and BDAT.
 *
 * RFC 5321 sections 2.3.8 (lines end in CRLF only), 4.1.1.4 and 4.5.2
 * (end of data, dot-stuffing), 4.5.3.1.6 (text line 1000 octets incl.
 * CRLF); RFC 3030 (BDAT chunks carry raw octets, no stuffing, no
 * terminator).
 *
 * SMTP smuggling is impossible by construction here: in DATA mode the only
 * terminator is CR LF "." CR LF, where the first CR LF is the end of the
 * previous line (or of the DATA command). A bare CR or bare LF anywhere
 * sets SMTP_DATA_BARE_CR / SMTP_DATA_BARE_LF and never starts a line, so
 * "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n" and the like are message text
 * (and the message is refused by the session), never an end of data.
 *
 * The scanner also watches the header block (up to the first empty line):
 * its size and the number of Received: fields (RFC 5321 6.3 loop
 * detection). It keeps no copy of the data: payload bytes (dot-unstuffed)
 * go to the caller's emit callback in runs.
 */
#ifndef MOAT_SMTP_DATA_H
#define MOAT_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_TEXT_LINE_MAX 1000 /* RFC 5321 4.5.3.1.6, octets incl. CRLF */

enum smtp_data_mode {
	SMTP_DATA_MODE_DOT, /* DATA: dot-stuffed, ends at CRLF.CRLF */
	SMTP_DATA_MODE_RAW, /* BDAT: raw octets, the caller knows the length */
};

/* Flags accumulated over the message (struct smtp_data_scan.flags). */
#define SMTP_DATA_BARE_CR        0x01
#define SMTP_DATA_BARE_LF        0x02
#define SMTP_DATA_LONG_LINE      0x04 /* a line over line_max incl. CRLF */
#define SMTP_DATA_HEADER_TOO_BIG 0x08 /* header block over header_max */
#define SMTP_DATA_NUL            0x10 /* a NUL octet */
#define SMTP_DATA_8BIT           0x20 /* an octet >= 0x80 */

typedef void (*smtp_data_emit_fn)(void *ctx, const char *p, size_t n);

struct smtp_data_scan {
	/* private state, see smtp_data.c */
	int state;
	enum smtp_data_mode mode;
	size_t line_len;     /* wire octets in the current line, excl. CRLF */
	bool in_header;      /* still in the header block */
	size_t header_bytes; /* octets of the header block so far */
	size_t header_max;   /* limit for SMTP_DATA_HEADER_TOO_BIG */
	size_t line_max;     /* limit for SMTP_DATA_LONG_LINE, octets incl. CRLF */
	unsigned hdr_match;  /* progress matching "received:" at line start */
	/* results */
	unsigned flags;    /* SMTP_DATA_* */
	unsigned received; /* Received: header fields seen in the header block */
	uint64_t size;     /* payload octets emitted (after unstuffing) */
};

/*
 * line_max: longest text line in octets including CRLF and not counting a
 * stuffing dot (RFC 5321 4.5.3.1.6: SMTP_TEXT_LINE_MAX unless configured
 * higher); header_max: largest header block in octets.
 */
void smtp_data_init(struct smtp_data_scan *ds, enum smtp_data_mode mode, size_t header_max,
                    size_t line_max);

/*
 * Feed len input octets. Payload goes to emit(ctx, ...) (possibly several
 * calls, never for zero bytes). Returns the number of input octets
 * consumed. In DOT mode, when the terminating CRLF.CRLF has been consumed,
 * *done is set true and the return value counts up to and including that
 * terminator: any following octets are left for the caller (pipelined
 * commands). The CRLF before the "." belongs to the message and is
 * emitted. In RAW mode all octets are consumed and *done stays false.
 */
size_t smtp_data_feed(struct smtp_data_scan *ds, const char *in, size_t len, smtp_data_emit_fn emit,
                      void *ctx, bool *done);

/*
 * End of a RAW (BDAT LAST) message: settles a pending CR at the very end
 * (a bare CR). Has no effect in DOT mode.
 */
void smtp_data_finish(struct smtp_data_scan *ds);

#endif
