/*
 * dsn.h - builds delivery status notifications ("bounces"): a pure
 * function from what the delivery engine knows to the bytes of one
 * message, no I/O.
 *
 * RFC 3464 (message/delivery-status), RFC 6522 (multipart/report),
 * RFC 3461 (NOTIFY, RET, ENVID, ORCPT), RFC 3463 (status codes),
 * RFC 6533 and RFC 6532 (UTF-8 addresses, message/global-*), RFC 5322
 * (header fields, folding, the 998-octet line), RFC 2045/2046 (MIME),
 * RFC 3834 (Auto-Submitted).
 *
 * The caller decides who gets a DSN (dsn_wanted(), and never one for the
 * null sender: RFC 5321 4.5.5) and sends it with MAIL FROM:<>, with
 * BODY=8BITMIME when the result holds 8-bit octets and SMTPUTF8 when the
 * sender address is not ASCII.
 */
#ifndef MOAT_DSN_H
#define MOAT_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DSN_LINE_MAX  998   /* RFC 5322 2.1.1, octets without CRLF: never exceeded */
#define DSN_FOLD      78    /* RFC 5322 2.1.1: header fields fold here when they can */
#define DSN_DIAG_MAX  16384 /* octets of one diagnostic shown; the rest is cut, visibly */
#define DSN_FIELD_MAX 1024  /* octets of an address, ORCPT, host name, ENVID shown */
#define DSN_RCPTS_MAX 10000 /* recipients in one DSN; more are counted in the text, not listed */

/*
 * dsn_wanted(): OR this into notify to warn of delays when the sender gave
 * no NOTIFY (the default policy then is FAILURE and DELAY instead of
 * FAILURE alone). It never overrides an explicit NOTIFY.
 */
#define DSN_WANT_DEFAULT_DELAY 0x100

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED, DSN_EXPANDED };

struct dsn_rcpt {
	const char *addr;  /* final recipient, canonical local@domain (may be UTF-8) */
	const char *orcpt; /* RFC 3461 ORCPT as received ("rfc822;xtext"), or NULL */
	enum dsn_action action;
	const char *status;     /* RFC 3463 "5.1.1"; NULL or malformed: X.0.0 by action */
	const char *remote_mta; /* downstream host name (may be "name [address]"), or NULL */
	/* The downstream reply "550 5.1.1 User unknown", or NULL: may be multi-line and
	 * hold anything the remote sent. */
	const char *diagnostic;
	int64_t last_attempt;     /* Unix time, 0 = unknown */
	int64_t will_retry_until; /* DELAYED only, 0 = omit */
};

struct dsn_msg {
	const char *reporting_mta; /* moat's hostname */
	const char *queue_id;      /* for X-Moat-Queue-Id, Message-ID and the boundary */
	const char *envid;         /* RFC 3461 ENVID, xtext as received, or NULL */
	const char *sender;        /* the original envelope sender = the DSN's recipient */
	const char *client_addr;   /* Received-From-MTA: the client's address, or NULL */
	const char *client_helo;   /* and its HELO/EHLO name, or NULL */
	int64_t arrival;           /* Arrival-Date, Unix time, 0 = omit */
	int64_t now;               /* Date of the DSN (tests pass a fixed time) */
	bool ret_hdrs;             /* RET=HDRS: return only the headers */
	size_t max_original;       /* the whole original only up to this size */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
};

/*
 * Build the whole DSN message (header + body), CRLF line ends, no line over
 * DSN_LINE_MAX octets. Returns a malloc'd buffer (NUL-terminated, for
 * convenience) and its length; never NULL. The original message is
 * orig[0..orig_len) (CRLF lines, as received, may lack a final CRLF; bare
 * CR or LF are sent as CRLF). A caller that passes only the start of a big
 * message must pass its whole header block and more than max_original
 * octets, so that the part is not taken for the whole.
 *
 * The original comes back whole (message/rfc822, or message/global when
 * its header holds 8-bit octets) only when some recipient FAILED, RET is
 * not HDRS, orig_len <= max_original and no line exceeds DSN_LINE_MAX;
 * otherwise its header block alone (text/rfc822-headers or
 * message/global-headers), and the text part says why when the reason is
 * size or line length. A header block with a line over DSN_LINE_MAX is not
 * returned at all (the text part says so). Delay and success reports carry
 * headers only (as Postfix does).
 *
 * The report part is message/global-delivery-status, with "utf-8;"
 * addresses, when an address, an ORCPT, the sender or the original header
 * is not ASCII; otherwise message/delivery-status and US-ASCII only.
 * Every value that came from elsewhere (replies, addresses, host names) is
 * made one line of printable text before it goes into a field; a token too
 * long for one line is split there (a space appears once unfolded).
 */
char *dsn_build(const struct dsn_msg *m, const char *orig, size_t orig_len, size_t *out_len);

/*
 * Should a DSN be sent for this recipient? notify holds the RFC 3461
 * NOTIFY bits as parsed (SMTP_NOTIFY_* in smtp/smtp_parse.h), optionally
 * with DSN_WANT_DEFAULT_DELAY. NEVER: no. Unspecified (no SMTP_NOTIFY_*
 * bit): failures, and delays only with DSN_WANT_DEFAULT_DELAY. Otherwise
 * FAILURE -> failed, DELAY -> delayed, SUCCESS -> delivered, relayed and
 * expanded.
 */
bool dsn_wanted(unsigned notify, enum dsn_action action);

#endif
