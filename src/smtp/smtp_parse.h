/*
 * smtp_parse.h - the one parser for SMTP command lines and their ESMTP
 * parameters.
 *
 * RFC 5321 section 4.1 (command syntax), RFC 1870 (SIZE), RFC 6152
 * (8BITMIME), RFC 3030 (CHUNKING/BDAT, BINARYMIME), RFC 6531 (SMTPUTF8),
 * RFC 3461 (DSN: RET, ENVID, NOTIFY, ORCPT; xtext). The session's command
 * table is indexed by enum smtp_verb; nothing else in moat looks at a raw
 * command line.
 */
#ifndef MOAT_SMTP_PARSE_H
#define MOAT_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/mailaddr.h"

#define SMTP_CMD_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, octets incl. CRLF */
/* MAIL and RCPT may be longer by what their parameters add (RFC 3461 4.1:
 * ENVID/RET 100, ORCPT/NOTIFY 500; RFC 1870: SIZE 26). */
#define SMTP_CMD_LINE_PARAMS_MAX (SMTP_CMD_LINE_MAX + 500 + 100 + 26)
#define SMTP_ENVID_MAX           100 /* RFC 3461 4.4, decoded octets */
#define SMTP_ORCPT_MAX           500 /* RFC 3461 4.2, xtext-encoded octets */
#define SMTP_HELO_MAX            255

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_HTTP, /* GET, POST, CONNECT, HEAD, PUT: a proxy probe, drop */
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *verb_text; /* the verb as sent (points into the line) */
	size_t verb_len;
	/* Everything after the verb and one SP, or after "FROM:"/"TO:" for
	 * MAIL/RCPT (one optional SP before '<' is skipped); may be empty. */
	const char *arg;
	size_t arg_len;
};

enum smtp_parse_status {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_EMPTY,   /* empty line: 500 5.5.2 */
	SMTP_PARSE_BADCHAR, /* NUL, CR or LF anywhere, 8-bit in the verb: 500 5.5.2 */
	SMTP_PARSE_SYNTAX,  /* MAIL without FROM:, RCPT without TO: etc.: 501 5.5.4 */
};

/*
 * Split a command line (without its CRLF) into verb and argument. Verbs are
 * matched case-insensitively; an unknown verb returns SMTP_PARSE_OK with
 * SMTP_VERB_UNKNOWN (500 5.5.1). For MAIL and RCPT the "FROM:" / "TO:"
 * keyword is required and consumed.
 */
enum smtp_parse_status smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

enum smtp_body { SMTP_BODY_UNSPEC = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_UNSPEC = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_NOTIFY_NEVER   0x01
#define SMTP_NOTIFY_SUCCESS 0x02
#define SMTP_NOTIFY_FAILURE 0x04
#define SMTP_NOTIFY_DELAY   0x08

struct smtp_mail_params {
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX * 3 + 1]; /* as received, still xtext-encoded */
	bool has_envid;
};

struct smtp_rcpt_params {
	unsigned notify;                /* SMTP_NOTIFY_* bits, 0 = unspecified */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* "rfc822;xtext" as received */
	bool has_orcpt;
};

enum smtp_param_status {
	SMTP_PARAM_OK = 0,
	SMTP_PARAM_UNKNOWN,   /* parameter not recognised or not offered: 555 5.5.4 */
	SMTP_PARAM_SYNTAX,    /* malformed parameter list or value: 501 5.5.4 */
	SMTP_PARAM_DUPLICATE, /* the same keyword twice: 501 5.5.4 */
};

/* Which extensions the session offered; a parameter of an extension not
 * offered is SMTP_PARAM_UNKNOWN. */
#define SMTP_EXT_SIZE       0x01
#define SMTP_EXT_8BITMIME   0x02
#define SMTP_EXT_SMTPUTF8   0x04
#define SMTP_EXT_DSN        0x08
#define SMTP_EXT_CHUNKING   0x10 /* allows BODY=BINARYMIME only with BINARYMIME too */
#define SMTP_EXT_BINARYMIME 0x20

/*
 * Parse the ESMTP parameters after a MAIL FROM path / RCPT TO path. s is
 * the text after the closing '>' (may be empty or start with SP). Keywords
 * are case-insensitive; values are checked (SIZE digits within uint64, BODY
 * one of 7BIT/8BITMIME/BINARYMIME, RET FULL/HDRS, ENVID and ORCPT valid
 * xtext with ORCPT's addr-type "rfc822" or "utf-8", NOTIFY NEVER alone or a
 * comma list of SUCCESS, FAILURE, DELAY). On error, *bad_param (if not
 * NULL) names the offending keyword for the reply text (points into s, and
 * *bad_len its length).
 */
enum smtp_param_status smtp_mail_params_parse(const char *s, size_t len, unsigned ext,
                                              struct smtp_mail_params *out, const char **bad_param,
                                              size_t *bad_len);
enum smtp_param_status smtp_rcpt_params_parse(const char *s, size_t len, unsigned ext,
                                              struct smtp_rcpt_params *out, const char **bad_param,
                                              size_t *bad_len);

/*
 * Parse the argument of BDAT: "<chunk-size> [SP LAST]". chunk-size is
 * 1*DIGIT within uint64 (overflow is SYNTAX). Returns 0 or -1.
 */
int smtp_bdat_parse(const char *s, size_t len, uint64_t *size, bool *last);

/*
 * Parse the argument of EHLO/HELO: a domain or address literal, optionally
 * followed by garbage that many clients send; the first word is copied to
 * out (bounded, 8-bit and controls refused). Returns 0 or -1.
 */
int smtp_helo_parse(const char *s, size_t len, char *out, size_t outsize);

/* Decode xtext (RFC 3461 4) into out; -1 on bad xtext or overflow. */
int smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsize, size_t *outlen);

#endif
