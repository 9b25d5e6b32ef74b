/*
 * mailaddr.h - the one parser for envelope addresses.
 *
 * RFC 5321 section 4.1.2 (Path, Mailbox, Local-part, Domain,
 * address-literal), section 4.5.3.1 (size limits), RFC 6531 (SMTPUTF8:
 * UTF-8 in local parts and domains). Every decision about an envelope
 * address (relay control, recipient lookup, routing, DSN) is taken on the
 * struct this parser fills, never on the raw text.
 *
 * Relay tricks are refused here, by construction, so that no caller can
 * forget them: the percent hack (`a%b@c`), bang paths (`b!a@c`), quoted
 * local parts hiding an `@` (`"a@b"@c`), and any of those inside a quoted
 * string, come back as MAILADDR_EROUTING. Source routes (`<@a,@b:u@d>`)
 * are parsed and discarded as RFC 5321 section 4.1.1.3 says: the address
 * is u@d and nothing else. Address literals parse (`u@[192.0.2.1]`) and are
 * flagged, so that policy never mistakes one for a protected domain.
 */
#ifndef MOAT_MAILADDR_H
#define MOAT_MAILADDR_H

#include <stdbool.h>
#include <stddef.h>

#define MAILADDR_LOCAL_MAX  64  /* RFC 5321 4.5.3.1.1, octets, wire form */
#define MAILADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2, octets */
#define MAILADDR_PATH_MAX   256 /* RFC 5321 4.5.3.1.3, octets incl. < > */

enum mailaddr_status {
	MAILADDR_OK = 0,
	MAILADDR_ESYNTAX,          /* not a Path/Mailbox: 501 5.1.3 (5.1.7 for a sender) */
	MAILADDR_ELOCAL_TOO_LONG,  /* local part over 64 octets: 501 5.1.3 */
	MAILADDR_EDOMAIN_TOO_LONG, /* domain over 255 octets: 501 5.1.3 */
	MAILADDR_EPATH_TOO_LONG,   /* path over 256 octets: 501 5.1.3 */
	MAILADDR_E8BIT,            /* non-ASCII without SMTPUTF8: 553 5.6.7 */
	MAILADDR_ENUL,             /* NUL or a control character: 501 5.1.3 */
	MAILADDR_EROUTING,         /* %, ! or a quoted @ in the local part: 550 5.7.1 */
};

/* Flags for mailaddr_parse(). */
#define MAILADDR_F_NULL_OK   0x01 /* `<>` is allowed (MAIL FROM) */
#define MAILADDR_F_SMTPUTF8  0x02 /* UTF-8 allowed (RFC 6531) */
#define MAILADDR_F_NO_ANGLES 0x04 /* a bare Mailbox, no < > (config files, lists) */

struct mailaddr {
	/*
	 * Local part in canonical wire form: a dot-string as given, or, when
	 * the quoted form was needed, the quoted-string with the minimum of
	 * escapes. A quoted string whose content is a valid dot-string is
	 * unquoted ("john"@x -> john@x). Case is preserved.
	 */
	char local[MAILADDR_LOCAL_MAX + 1];
	/* Domain: ASCII letters lower-cased; an address literal keeps its brackets. */
	char domain[MAILADDR_DOMAIN_MAX + 1];
	bool is_null; /* the null path <> */
	bool literal; /* domain is an address literal [..] */
	bool utf8;    /* local part or domain holds non-ASCII (needs SMTPUTF8 downstream) */
};

/*
 * Parse an address at s (len bytes, not NUL-terminated). Unless
 * MAILADDR_F_NO_ANGLES is given, s must start with '<' and the path ends
 * at the matching '>'; *consumed (if not NULL) is set to the number of
 * bytes used, so the caller can parse ESMTP parameters after it. With
 * MAILADDR_F_NO_ANGLES the whole of s must be the mailbox. On error *out
 * is unspecified.
 */
enum mailaddr_status mailaddr_parse(const char *s, size_t len, unsigned flags, struct mailaddr *out,
                                    size_t *consumed);

/* "local@domain" (or "" for the null path) into buf; returns buf. */
const char *mailaddr_format(const struct mailaddr *a, char *buf, size_t bufsize);
#define MAILADDR_FORMAT_MAX (MAILADDR_LOCAL_MAX + 1 + MAILADDR_DOMAIN_MAX + 1)

/* Human text for a status ("syntax error in address", ...). */
const char *mailaddr_strerror(enum mailaddr_status st);

#endif
