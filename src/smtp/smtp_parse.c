/*
 * smtp_parse.c - SMTP command lines and ESMTP parameters (see smtp_parse.h).
 *
 * RFC 5321 sections 4.1.1 and 4.1.2 (commands, Mail-parameters,
 * esmtp-keyword, esmtp-value), RFC 1870 (SIZE), RFC 6152 (8BITMIME),
 * RFC 3030 (BDAT, BINARYMIME), RFC 6531 (SMTPUTF8), RFC 3461 sections 4
 * to 4.4 (xtext, NOTIFY, ORCPT, RET, ENVID).
 *
 * Leniency is limited to what real clients need: one optional SP after
 * "FROM:" / "TO:" (as Postfix accepts) and runs of SP between parameters.
 * NUL, CR and LF are refused anywhere in a command line, not only in the
 * verb: no conforming client sends them and no later stage should see them.
 *
 * Beyond the grammar, decoded ENVID octets must be printable ASCII and
 * decoded ORCPT octets must not be controls: both end up in DSNs.
 */
#include "smtp_parse.h"
#include "../common/util.h"

#include <string.h>

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
        {"HELO", SMTP_VERB_HELO},         {"EHLO", SMTP_VERB_EHLO},    {"MAIL", SMTP_VERB_MAIL},
        {"RCPT", SMTP_VERB_RCPT},         {"DATA", SMTP_VERB_DATA},    {"BDAT", SMTP_VERB_BDAT},
        {"RSET", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP},    {"QUIT", SMTP_VERB_QUIT},
        {"VRFY", SMTP_VERB_VRFY},         {"EXPN", SMTP_VERB_EXPN},    {"HELP", SMTP_VERB_HELP},
        {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},    {"GET", SMTP_VERB_HTTP},
        {"POST", SMTP_VERB_HTTP},         {"CONNECT", SMTP_VERB_HTTP}, {"HEAD", SMTP_VERB_HTTP},
        {"PUT", SMTP_VERB_HTTP},
};

/* Case-insensitive comparison of s (n octets) with the NUL-terminated word. */
static bool
word_ieq(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && mem_ieq(s, word, n);
}

enum smtp_parse_status
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
	const char *arg, *kw;
	size_t vlen, alen, kwlen;

	memset(out, 0, sizeof(*out));
	out->verb = SMTP_VERB_UNKNOWN;
	out->verb_text = out->arg = line;
	if (len == 0)
		return SMTP_PARSE_EMPTY;
	for (size_t i = 0; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
			return SMTP_PARSE_BADCHAR;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		if ((unsigned char)line[vlen] >= 0x80)
			return SMTP_PARSE_BADCHAR;

	out->verb_len = vlen;
	for (size_t i = 0; i < nitems(smtp_verbs); i++) {
		if (word_ieq(line, vlen, smtp_verbs[i].name)) {
			out->verb = smtp_verbs[i].verb;
			break;
		}
	}
	arg = line + vlen;
	alen = len - vlen;
	if (alen > 0) { /* the SP after the verb */
		arg++;
		alen--;
	}

	if (out->verb == SMTP_VERB_MAIL || out->verb == SMTP_VERB_RCPT) {
		kw = out->verb == SMTP_VERB_MAIL ? "FROM:" : "TO:";
		kwlen = strlen(kw);
		if (vlen == len || alen < kwlen || !mem_ieq(arg, kw, kwlen))
			return SMTP_PARSE_SYNTAX;
		arg += kwlen;
		alen -= kwlen;
		if (alen > 0 && arg[0] == ' ') {
			arg++;
			alen--;
		}
	}
	out->arg = arg;
	out->arg_len = alen;
	return SMTP_PARSE_OK;
}

/* One "keyword[=value]" of a parameter list. */
struct smtp_param {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
	bool has_val;
};

/*
 * The next parameter from *sp (after any SPs); 1 when there is one, 0 at
 * the end, -1 on bad syntax (p->key then names the offending word).
 */
static int
param_next(const char **sp, const char *end, struct smtp_param *p)
{
	const char *s = *sp;

	while (s < end && *s == ' ')
		s++;
	if (s == end)
		return 0;
	memset(p, 0, sizeof(*p));
	p->key = s;
	while (s < end && *s != ' ' && *s != '=')
		s++;
	p->key_len = (size_t)(s - p->key);
	if (s < end && *s == '=') {
		p->has_val = true;
		p->val = ++s;
		while (s < end && *s != ' ')
			s++;
		p->val_len = (size_t)(s - p->val);
	}
	*sp = s;

	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	for (size_t i = 0; i < p->key_len; i++) {
		unsigned char c = (unsigned char)p->key[i];
		bool alnum =
		        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || c != '-'))
			return -1;
	}
	if (p->key_len == 0)
		return -1;
	/* esmtp-value = 1*(%d33-60 / %d62-126) */
	if (p->has_val && p->val_len == 0)
		return -1;
	for (size_t i = 0; i < p->val_len; i++) {
		unsigned char c = (unsigned char)p->val[i];

		if (c < 33 || c > 126 || c == '=')
			return -1;
	}
	return 1;
}

struct param_def {
	const char *name;
	unsigned ext; /* offered when any of these extensions is */
	enum smtp_param_status (*parse)(const struct smtp_param *p, unsigned ext, void *out);
};

static enum smtp_param_status
mail_param_size(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_mail_params *out = arg;

	(void)ext;
	if (!p->has_val || parse_u64(p->val, p->val_len, UINT64_MAX, &out->size) < 0)
		return SMTP_PARAM_SYNTAX;
	out->has_size = true;
	return SMTP_PARAM_OK;
}

/* BODY=7BIT / 8BITMIME need 8BITMIME; BINARYMIME needs BINARYMIME and CHUNKING. */
static enum smtp_param_status
mail_param_body(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_mail_params *out = arg;
	const unsigned binary = SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING;

	if (!p->has_val)
		return SMTP_PARAM_SYNTAX;
	if (word_ieq(p->val, p->val_len, "7BIT"))
		out->body = SMTP_BODY_7BIT;
	else if (word_ieq(p->val, p->val_len, "8BITMIME"))
		out->body = SMTP_BODY_8BITMIME;
	else if (word_ieq(p->val, p->val_len, "BINARYMIME"))
		out->body = SMTP_BODY_BINARYMIME;
	else
		return SMTP_PARAM_SYNTAX;
	if (out->body == SMTP_BODY_BINARYMIME ? (ext & binary) != binary
	                                      : !(ext & SMTP_EXT_8BITMIME))
		return SMTP_PARAM_UNKNOWN;
	return SMTP_PARAM_OK;
}

static enum smtp_param_status
mail_param_smtputf8(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_mail_params *out = arg;

	(void)ext;
	if (p->has_val)
		return SMTP_PARAM_SYNTAX;
	out->smtputf8 = true;
	return SMTP_PARAM_OK;
}

static enum smtp_param_status
mail_param_ret(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_mail_params *out = arg;

	(void)ext;
	if (!p->has_val)
		return SMTP_PARAM_SYNTAX;
	if (word_ieq(p->val, p->val_len, "FULL"))
		out->ret = SMTP_RET_FULL;
	else if (word_ieq(p->val, p->val_len, "HDRS"))
		out->ret = SMTP_RET_HDRS;
	else
		return SMTP_PARAM_SYNTAX;
	return SMTP_PARAM_OK;
}

/* ENVID=xtext, at most SMTP_ENVID_MAX printable octets once decoded. */
static enum smtp_param_status
mail_param_envid(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_mail_params *out = arg;
	char dec[SMTP_ENVID_MAX + 1];
	size_t n;

	(void)ext;
	if (!p->has_val || p->val_len >= sizeof(out->envid) ||
	    smtp_xtext_decode(p->val, p->val_len, dec, sizeof(dec), &n) < 0)
		return SMTP_PARAM_SYNTAX;
	for (size_t i = 0; i < n; i++)
		if (dec[i] < 32 || dec[i] > 126)
			return SMTP_PARAM_SYNTAX;
	memcpy(out->envid, p->val, p->val_len);
	out->envid[p->val_len] = '\0';
	out->has_envid = true;
	return SMTP_PARAM_OK;
}

/* NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE and DELAY, each once. */
static enum smtp_param_status
rcpt_param_notify(const struct smtp_param *p, unsigned ext, void *arg)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
	        {"SUCCESS", SMTP_NOTIFY_SUCCESS},
	        {"FAILURE", SMTP_NOTIFY_FAILURE},
	        {"DELAY", SMTP_NOTIFY_DELAY},
	};
	struct smtp_rcpt_params *out = arg;
	const char *s, *end, *comma;

	(void)ext;
	if (!p->has_val)
		return SMTP_PARAM_SYNTAX;
	if (word_ieq(p->val, p->val_len, "NEVER")) {
		out->notify = SMTP_NOTIFY_NEVER;
		return SMTP_PARAM_OK;
	}
	s = p->val;
	end = s + p->val_len;
	for (;;) {
		unsigned bit = 0;

		if ((comma = memchr(s, ',', (size_t)(end - s))) == NULL)
			comma = end;
		for (size_t i = 0; i < nitems(words); i++)
			if (word_ieq(s, (size_t)(comma - s), words[i].name))
				bit = words[i].bit;
		if (bit == 0 || (out->notify & bit))
			return SMTP_PARAM_SYNTAX;
		out->notify |= bit;
		if (comma == end)
			return SMTP_PARAM_OK;
		s = comma + 1;
	}
}

/* ORCPT=addr-type;xtext, addr-type "rfc822" or "utf-8", at most SMTP_ORCPT_MAX octets. */
static enum smtp_param_status
rcpt_param_orcpt(const struct smtp_param *p, unsigned ext, void *arg)
{
	struct smtp_rcpt_params *out = arg;
	char dec[SMTP_ORCPT_MAX + 1];
	const char *semi;
	size_t tlen, n;

	(void)ext;
	if (!p->has_val || p->val_len > SMTP_ORCPT_MAX ||
	    (semi = memchr(p->val, ';', p->val_len)) == NULL)
		return SMTP_PARAM_SYNTAX;
	tlen = (size_t)(semi - p->val);
	if (!word_ieq(p->val, tlen, "rfc822") && !word_ieq(p->val, tlen, "utf-8"))
		return SMTP_PARAM_SYNTAX;
	if (tlen + 1 == p->val_len ||
	    smtp_xtext_decode(semi + 1, p->val_len - tlen - 1, dec, sizeof(dec), &n) < 0)
		return SMTP_PARAM_SYNTAX;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dec[i] < 32 || dec[i] == 127)
			return SMTP_PARAM_SYNTAX;
	memcpy(out->orcpt, p->val, p->val_len);
	out->orcpt[p->val_len] = '\0';
	out->has_orcpt = true;
	return SMTP_PARAM_OK;
}

static const struct param_def mail_params[] = {
        {"SIZE", SMTP_EXT_SIZE, mail_param_size},
        {"BODY", SMTP_EXT_8BITMIME | SMTP_EXT_BINARYMIME, mail_param_body},
        {"SMTPUTF8", SMTP_EXT_SMTPUTF8, mail_param_smtputf8},
        {"RET", SMTP_EXT_DSN, mail_param_ret},
        {"ENVID", SMTP_EXT_DSN, mail_param_envid},
};

static const struct param_def rcpt_params[] = {
        {"NOTIFY", SMTP_EXT_DSN, rcpt_param_notify},
        {"ORCPT", SMTP_EXT_DSN, rcpt_param_orcpt},
};

/* Walk a parameter list, dispatching each keyword to its entry in defs. */
static enum smtp_param_status
params_parse(const char *s, size_t len, unsigned ext, const struct param_def *defs, size_t ndefs,
             void *out, const char **bad_param, size_t *bad_len)
{
	const char *p = s, *end = s + len;
	struct smtp_param prm;
	enum smtp_param_status st;
	unsigned seen = 0;
	int r;

	memset(&prm, 0, sizeof(prm));
	if (len > 0 && s[0] != ' ') { /* the path must be followed by SP */
		prm.key = s;
		while (prm.key_len < len && s[prm.key_len] != ' ')
			prm.key_len++;
		st = SMTP_PARAM_SYNTAX;
		goto fail;
	}
	while ((r = param_next(&p, end, &prm)) > 0) {
		size_t i;

		for (i = 0; i < ndefs; i++)
			if (word_ieq(prm.key, prm.key_len, defs[i].name))
				break;
		if (i == ndefs || !(ext & defs[i].ext)) {
			st = SMTP_PARAM_UNKNOWN;
			goto fail;
		}
		if (seen & (1u << i)) {
			st = SMTP_PARAM_DUPLICATE;
			goto fail;
		}
		seen |= 1u << i;
		if ((st = defs[i].parse(&prm, ext, out)) != SMTP_PARAM_OK)
			goto fail;
	}
	if (r < 0) {
		st = SMTP_PARAM_SYNTAX;
		goto fail;
	}
	return SMTP_PARAM_OK;

fail:
	if (bad_param != NULL)
		*bad_param = prm.key;
	if (bad_len != NULL)
		*bad_len = prm.key_len;
	return st;
}

enum smtp_param_status
smtp_mail_params_parse(const char *s, size_t len, unsigned ext, struct smtp_mail_params *out,
                       const char **bad_param, size_t *bad_len)
{
	memset(out, 0, sizeof(*out));
	return params_parse(s, len, ext, mail_params, nitems(mail_params), out, bad_param, bad_len);
}

enum smtp_param_status
smtp_rcpt_params_parse(const char *s, size_t len, unsigned ext, struct smtp_rcpt_params *out,
                       const char **bad_param, size_t *bad_len)
{
	memset(out, 0, sizeof(*out));
	return params_parse(s, len, ext, rcpt_params, nitems(rcpt_params), out, bad_param, bad_len);
}

int
smtp_bdat_parse(const char *s, size_t len, uint64_t *size, bool *last)
{
	size_t n = 0;
	uint64_t v;

	while (n < len && s[n] >= '0' && s[n] <= '9')
		n++;
	if (parse_u64(s, n, UINT64_MAX, &v) < 0)
		return -1;
	if (n == len)
		*last = false;
	else if (word_ieq(s + n, len - n, " LAST"))
		*last = true;
	else
		return -1;
	*size = v;
	return 0;
}

int
smtp_helo_parse(const char *s, size_t len, char *out, size_t outsize)
{
	size_t n = 0;

	while (n < len && s[n] != ' ') {
		unsigned char c = (unsigned char)s[n];

		if (c < 33 || c > 126)
			return -1;
		n++;
	}
	if (n == 0 || n > SMTP_HELO_MAX || n >= outsize)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* Value of an xtext hex digit (upper case only, RFC 3461 4), or -1. */
static int
xtext_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The result is NUL-terminated, so outsize must exceed the decoded length. */
int
smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsize, size_t *outlen)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			int hi, lo;

			if (len - i < 3 || (hi = xtext_hex(s[i + 1])) < 0 ||
			    (lo = xtext_hex(s[i + 2])) < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return -1;
		if (n + 1 >= outsize)
			return -1;
		out[n++] = (char)c;
	}
	if (outsize == 0)
		return -1;
	out[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return 0;
}
