/*
 * scan_dkim.c - DKIM signature verification and ARC chain validation,
 * on OpenSSL's EVP interface.
 *
 * RFC 6376 (DKIM), RFC 8301 (cryptographic algorithm and key usage
 * update: no rsa-sha1, RSA keys of at least 1024 bits), RFC 8463
 * (ed25519-sha256), RFC 8617 (ARC, section 5.2 validation), RFC 6008
 * (header.b: the first 8 characters of b=).
 *
 * Design:
 * - Keys are looked up through moat's one resolver (scan_dns_txt(), which
 *   bounds each query by dns_timeout and the task deadline), never by a
 *   library of its own.
 * - The body is canonicalized as a stream into the digest, through one
 *   small buffer: a 50 MB message is read, never copied. Body hashes are
 *   cached per (canonicalization, hash, l=) within one check, so eight
 *   signatures with the same parameters read the body once. ARC keeps its
 *   own cache: the AMS costs at most one more pass.
 * - One code path verifies a DKIM-Signature and an ARC-Message-Signature
 *   (they differ only in their tags); an ARC-Seal has its own header
 *   hash (RFC 8617 5.1.1) and shares the key and crypto steps.
 * Results, chosen where the RFCs leave room:
 * - x= passed: permerror "signature expired" (RFC 6376 6.1.1 "PERMFAIL").
 *   t= more than DKIM_CLOCK_SLACK_S in the future: permerror.
 * - rsa-sha1, or an RSA key under 1024 bits, that otherwise verifies:
 *   "policy" (RFC 8301: never valid; RFC 8601 2.7.1: refused by local
 *   policy). One that does not verify is "fail" like any other.
 * - An empty p= (revoked key): fail. No key record: permerror. A DNS
 *   temporary failure or the deadline: temperror.
 * - l= is honoured; the detail "l=N" goes on the symbol so that scoring
 *   can weigh content appended after the signed part.
 * - ARC has no temperror (RFC 8617 only knows none, pass, fail): a key
 *   lookup that fails temporarily fails the chain, with that reason.
 */
#include "scan_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../common/log.h"
#include "../common/util.h"

#define DKIM_TAGS_MAX      32   /* tags in one tag-list (signature or key record) */
#define DKIM_HDRS_MAX      128  /* names in h= (oversigning repeats them) */
#define DKIM_SIG_MAX       1024 /* octets of b= (RSA 8192) */
#define DKIM_KEY_MAX       2048 /* octets of p= decoded */
#define DKIM_BODY_CACHE    4    /* distinct body hashes kept per check */
#define DKIM_CLOCK_SLACK_S 900  /* t= in the future, x= in the past, tolerated */
#define DKIM_RSA_MIN_BITS  1024 /* RFC 8301 3.2 */
#define DKIM_TIME_MAX      UINT64_C(999999999999) /* 12 digits (RFC 6376 3.5) */
#define DKIM_L_MAX         UINT64_C(999999999999999)
#define ARC_INSTANCE_MAX   50 /* RFC 8617 4.2.1 */
#define DKIM_CANON_BUF     8192

/* --- tag-lists (RFC 6376 3.2) --- */

struct dkim_tag {
	const unsigned char *name;
	size_t name_len;
	const unsigned char *val; /* trailing FWS removed, inner FWS kept */
	size_t val_len;
	const unsigned char *eq;  /* the '=' after the name */
	const unsigned char *end; /* the ';' after the value, or the end of the list */
};

struct dkim_tags {
	struct dkim_tag tag[DKIM_TAGS_MAX];
	size_t n;
};

static bool
dkim_is_fws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
dkim_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
dkim_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Parse a tag-list; NULL on success, else why not. Duplicate tags are an error. */
static const char *
dkim_tags_parse(const unsigned char *s, size_t len, struct dkim_tags *out)
{
	size_t i = 0;

	out->n = 0;
	for (;;) {
		struct dkim_tag tg;

		while (i < len && dkim_is_fws(s[i]))
			i++;
		if (i == len)
			return NULL; /* the list may end with ';' */
		if (!dkim_is_alpha(s[i]))
			return "bad tag name";
		tg.name = s + i;
		while (i < len && (dkim_is_alpha(s[i]) || dkim_is_digit(s[i]) || s[i] == '_'))
			i++;
		tg.name_len = (size_t)(s + i - tg.name);
		while (i < len && dkim_is_fws(s[i]))
			i++;
		if (i == len || s[i] != '=')
			return "tag without '='";
		tg.eq = s + i++;
		while (i < len && dkim_is_fws(s[i]))
			i++;
		tg.val = s + i;
		while (i < len && s[i] != ';') {
			if (!dkim_is_fws(s[i]) && (s[i] < 0x21 || s[i] > 0x7e))
				return "bad character in a tag value";
			i++;
		}
		tg.end = s + i;
		tg.val_len = (size_t)(s + i - tg.val);
		while (tg.val_len > 0 && dkim_is_fws(tg.val[tg.val_len - 1]))
			tg.val_len--;
		for (size_t k = 0; k < out->n; k++)
			if (out->tag[k].name_len == tg.name_len &&
			    memcmp(out->tag[k].name, tg.name, tg.name_len) == 0)
				return "duplicate tag";
		if (out->n == DKIM_TAGS_MAX)
			return "too many tags";
		out->tag[out->n++] = tg;
		if (i == len)
			return NULL;
		i++; /* ';' */
	}
}

static const struct dkim_tag *
dkim_tag_get(const struct dkim_tags *tags, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < tags->n; i++)
		if (tags->tag[i].name_len == n && memcmp(tags->tag[i].name, name, n) == 0)
			return &tags->tag[i];
	return NULL;
}

static bool
dkim_val_is(const struct dkim_tag *tg, const char *want)
{
	size_t n = strlen(want);

	return tg->val_len == n && mem_ieq((const char *)tg->val, want, n);
}

/* Copy a value that must be one token (no FWS inside); false if not, or too long. */
static bool
dkim_val_token(const struct dkim_tag *tg, char *dst, size_t size)
{
	if (tg->val_len >= size)
		return false;
	for (size_t i = 0; i < tg->val_len; i++)
		if (dkim_is_fws(tg->val[i]))
			return false;
	memcpy(dst, tg->val, tg->val_len);
	dst[tg->val_len] = '\0';
	return true;
}

/* Does the colon-separated list in tg hold item (case-insensitive, FWS around items)? */
static bool
dkim_list_has(const struct dkim_tag *tg, const char *item)
{
	size_t n = strlen(item), i = 0;

	while (i < tg->val_len) {
		size_t start, end;

		while (i < tg->val_len && dkim_is_fws(tg->val[i]))
			i++;
		start = i;
		while (i < tg->val_len && tg->val[i] != ':')
			i++;
		end = i;
		while (end > start && dkim_is_fws(tg->val[end - 1]))
			end--;
		if (end - start == n && mem_ieq((const char *)tg->val + start, item, n))
			return true;
		i++; /* ':' */
	}
	return false;
}

static int
dkim_val_u64(const struct dkim_tag *tg, uint64_t max, uint64_t *out)
{
	return parse_u64((const char *)tg->val, tg->val_len, max, out);
}

/* Base64 (RFC 2045 alphabet), FWS ignored; -1 if malformed or over size. */
static int
dkim_b64_decode(const unsigned char *s, size_t len, unsigned char *out, size_t size, size_t *outlen)
{
	uint32_t acc = 0;
	size_t o = 0, nchars = 0, pad = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		unsigned v;

		if (dkim_is_fws(c))
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad > 0)
			return -1; /* data after padding */
		if (c >= 'A' && c <= 'Z')
			v = (unsigned)(c - 'A');
		else if (c >= 'a' && c <= 'z')
			v = (unsigned)(c - 'a' + 26);
		else if (c >= '0' && c <= '9')
			v = (unsigned)(c - '0' + 52);
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | v;
		if (++nchars % 4 == 0) {
			if (o + 3 > size)
				return -1;
			out[o++] = (unsigned char)(acc >> 16);
			out[o++] = (unsigned char)(acc >> 8);
			out[o++] = (unsigned char)acc;
			acc = 0;
		}
	}
	switch (nchars % 4) {
	case 0:
		break;
	case 2:
		if (o + 1 > size)
			return -1;
		out[o++] = (unsigned char)(acc >> 4);
		break;
	case 3:
		if (o + 2 > size)
			return -1;
		out[o++] = (unsigned char)(acc >> 10);
		out[o++] = (unsigned char)(acc >> 2);
		break;
	default:
		return -1;
	}
	if (pad > 2 || (pad > 0 && (nchars + pad) % 4 != 0))
		return -1;
	*outlen = o;
	return 0;
}

/* A domain name or selector: letters, digits, '-', '_', dots between labels. */
static bool
dkim_name_ok(const char *s)
{
	size_t label = 0, n = 0;

	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!dkim_is_alpha(c) && !dkim_is_digit(c) && c != '-' && c != '_')
			return false;
		if (++label > DNS_LABEL_MAX)
			return false;
	}
	return n > 0 && label > 0 && n <= DNS_NAME_MAX;
}

/* --- the header fields of the message --- */

/* A raw field: name, colon, value with its folding; without the final CRLF. */
struct dkim_field {
	const unsigned char *p;
	size_t len;
};

static bool
dkim_field_of(const struct scan_task *t, const struct scan_hdr *h, struct dkim_field *f)
{
	if (h->offset > t->in->len || h->len > t->in->len - h->offset)
		return false;
	f->p = t->in->msg + h->offset;
	f->len = h->len;
	if (f->len > 0 && f->p[f->len - 1] == '\n')
		f->len--;
	if (f->len > 0 && f->p[f->len - 1] == '\r')
		f->len--;
	return true;
}

/* The field's name as written before the colon, trailing WSP trimmed. */
static bool
dkim_field_name(const struct dkim_field *f, size_t *name_len, size_t *colon)
{
	const unsigned char *c = memchr(f->p, ':', f->len);
	size_t n;

	if (c == NULL)
		return false;
	*colon = (size_t)(c - f->p);
	n = *colon;
	while (n > 0 && (f->p[n - 1] == ' ' || f->p[n - 1] == '\t'))
		n--;
	*name_len = n;
	return true;
}

static bool
dkim_field_is(const struct dkim_field *f, const unsigned char *name, size_t len)
{
	size_t n, colon;

	return dkim_field_name(f, &n, &colon) && n == len &&
	       mem_ieq((const char *)f->p, (const char *)name, len);
}

static bool
dkim_hdr_is(const struct scan_task *t, const struct scan_hdr *h, const char *name)
{
	struct dkim_field f;

	return dkim_field_of(t, h, &f) &&
	       dkim_field_is(&f, (const unsigned char *)name, strlen(name));
}

/* --- hashing through a small buffer --- */

struct dkim_sink {
	EVP_MD_CTX *md;
	unsigned char buf[DKIM_CANON_BUF];
	size_t n;
};

static void
dkim_sink_flush(struct dkim_sink *k)
{
	if (k->n > 0 && EVP_DigestUpdate(k->md, k->buf, k->n) != 1)
		fatalx("dkim: EVP_DigestUpdate failed");
	k->n = 0;
}

static inline void
dkim_sink_byte(struct dkim_sink *k, unsigned char c)
{
	k->buf[k->n++] = c;
	if (k->n == sizeof(k->buf))
		dkim_sink_flush(k);
}

static void
dkim_sink_mem(struct dkim_sink *k, const unsigned char *p, size_t n)
{
	dkim_sink_flush(k);
	if (n > 0 && EVP_DigestUpdate(k->md, p, n) != 1)
		fatalx("dkim: EVP_DigestUpdate failed");
}

/* Append n octets: copied while they fit the buffer, hashed in place when large. */
static void
dkim_sink_put(struct dkim_sink *k, const unsigned char *p, size_t n)
{
	if (n >= sizeof(k->buf)) {
		dkim_sink_mem(k, p, n);
		return;
	}
	if (n > sizeof(k->buf) - k->n)
		dkim_sink_flush(k);
	memcpy(k->buf + k->n, p, n);
	k->n += n;
}

static EVP_MD_CTX *
dkim_md_new(const EVP_MD *type)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (md == NULL || EVP_DigestInit_ex(md, type, NULL) != 1)
		fatalx("dkim: cannot start a digest");
	return md;
}

/*
 * Hash one header field (raw, without its final CRLF), canonicalized
 * (RFC 6376 3.4.1 simple, 3.4.2 relaxed), followed by CRLF if crlf.
 */
static void
dkim_hash_field(struct dkim_sink *k, const unsigned char *p, size_t len, bool relaxed, bool crlf)
{
	if (!relaxed) {
		dkim_sink_mem(k, p, len);
	} else {
		const unsigned char *c = memchr(p, ':', len);
		size_t colon = c ? (size_t)(c - p) : len, name = colon;
		bool sp = false, any = false;

		while (name > 0 && (p[name - 1] == ' ' || p[name - 1] == '\t'))
			name--;
		for (size_t i = 0; i < name; i++)
			dkim_sink_byte(k, (p[i] >= 'A' && p[i] <= 'Z') ? (unsigned char)(p[i] + 32)
			                                               : p[i]);
		dkim_sink_byte(k, ':');
		for (size_t i = colon + 1; i < len; i++) {
			if (p[i] == '\r' || p[i] == '\n')
				continue; /* unfold */
			if (p[i] == ' ' || p[i] == '\t') {
				sp = any;
				continue;
			}
			if (sp)
				dkim_sink_byte(k, ' ');
			sp = false;
			any = true;
			dkim_sink_byte(k, p[i]);
		}
	}
	if (crlf) {
		dkim_sink_byte(k, '\r');
		dkim_sink_byte(k, '\n');
	}
}

/* --- body canonicalization (RFC 6376 3.4.3, 3.4.4), streamed --- */

struct dkim_canon {
	struct dkim_sink k;
	bool relaxed;
	uint64_t limit; /* canonical octets hashed: l=, or UINT64_MAX */
	uint64_t out;   /* canonical octets produced (hashed or not) */
	uint64_t crlfs; /* empty lines held back: trailing ones are dropped */
	bool wsp;       /* relaxed: whitespace pending inside the line */
	bool cr;        /* a CR waiting for its LF */
	bool content;   /* the current line has content */
};

static inline void
dkim_canon_emit(struct dkim_canon *c, unsigned char ch)
{
	if (c->out++ < c->limit)
		dkim_sink_byte(&c->k, ch);
}

static void
dkim_canon_content(struct dkim_canon *c, unsigned char ch)
{
	for (; c->crlfs > 0; c->crlfs--) {
		dkim_canon_emit(c, '\r');
		dkim_canon_emit(c, '\n');
	}
	if (c->wsp)
		dkim_canon_emit(c, ' ');
	c->wsp = false;
	dkim_canon_emit(c, ch);
	c->content = true;
}

/* n octets of line content without CR (nor WSP when relaxed), the first one at p. */
static void
dkim_canon_run(struct dkim_canon *c, const unsigned char *p, size_t n)
{
	uint64_t room;

	dkim_canon_content(c, p[0]);
	p++;
	n--;
	room = c->out < c->limit ? c->limit - c->out : 0;
	dkim_sink_put(&c->k, p, n < room ? n : (size_t)room);
	c->out += n;
}

static void
dkim_canon_feed(struct dkim_canon *c, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = p[i];

		if (!c->cr && ch != '\r' && !(c->relaxed && (ch == ' ' || ch == '\t'))) {
			/* the common case: a run of plain content, copied as a whole */
			size_t j = i + 1;

			if (!c->relaxed) {
				const unsigned char *cr = memchr(p + j, '\r', n - j);

				j = cr ? (size_t)(cr - p) : n;
			} else {
				while (j < n && p[j] != '\r' && p[j] != ' ' && p[j] != '\t')
					j++;
			}
			dkim_canon_run(c, p + i, j - i);
			i = j - 1;
			continue;
		}

		if (c->cr) {
			c->cr = false;
			if (ch == '\n') {
				c->wsp = false;
				if (c->content) {
					dkim_canon_emit(c, '\r');
					dkim_canon_emit(c, '\n');
				} else {
					c->crlfs++;
				}
				c->content = false;
				continue;
			}
			dkim_canon_content(c, '\r');
		}
		if (ch == '\r')
			c->cr = true;
		else if (c->relaxed && (ch == ' ' || ch == '\t'))
			c->wsp = true;
		else
			dkim_canon_content(c, ch);
	}
}

static void
dkim_canon_end(struct dkim_canon *c)
{
	if (c->cr) {
		c->cr = false;
		dkim_canon_content(c, '\r');
	}
	if (c->content || (!c->relaxed && c->out == 0)) {
		/* a last line without CRLF gets one; simple: an empty body is CRLF */
		dkim_canon_emit(c, '\r');
		dkim_canon_emit(c, '\n');
	}
	dkim_sink_flush(&c->k);
}

struct dkim_body_hash {
	bool relaxed;
	const EVP_MD *type;
	uint64_t limit;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen;
	uint64_t total; /* canonical body length */
};

struct dkim_body_cache {
	struct dkim_body_hash e[DKIM_BODY_CACHE];
	size_t n;
};

/* The body hash for these parameters, computed or from the cache. */
static const struct dkim_body_hash *
dkim_body_hash(const struct scan_task *t, struct dkim_body_cache *cache, bool relaxed,
               const EVP_MD *type, uint64_t limit, struct dkim_body_hash *tmp)
{
	struct dkim_body_hash *e;
	struct dkim_canon *c;
	size_t off = t->hdrs.body_offset;

	for (size_t i = 0; i < cache->n; i++) {
		e = &cache->e[i];
		if (e->relaxed == relaxed && e->type == type && e->limit == limit)
			return e;
	}
	e = cache->n < DKIM_BODY_CACHE ? &cache->e[cache->n++] : tmp;
	c = xcalloc(1, sizeof(*c));
	c->k.md = dkim_md_new(type);
	c->relaxed = relaxed;
	c->limit = limit;
	if (off < t->in->len)
		dkim_canon_feed(c, t->in->msg + off, t->in->len - off);
	dkim_canon_end(c);
	e->relaxed = relaxed;
	e->type = type;
	e->limit = limit;
	e->total = c->out;
	if (EVP_DigestFinal_ex(c->k.md, e->digest, &e->dlen) != 1)
		fatalx("dkim: EVP_DigestFinal_ex failed");
	EVP_MD_CTX_free(c->k.md);
	free(c);
	return e;
}

/* --- signatures --- */

enum dkim_kind {
	DKIM_KIND_SIG,  /* DKIM-Signature */
	DKIM_KIND_AMS,  /* ARC-Message-Signature */
	DKIM_KIND_SEAL, /* ARC-Seal */
};

enum dkim_alg {
	DKIM_ALG_RSA_SHA256,
	DKIM_ALG_RSA_SHA1,
	DKIM_ALG_ED25519_SHA256,
};

struct dkim_name {
	const unsigned char *p;
	size_t len;
};

struct dkim_sig {
	enum dkim_kind kind;
	const struct scan_hdr *hdr; /* the signature field itself */
	struct dkim_field f;
	enum dkim_alg alg;
	bool hdr_relaxed, body_relaxed;
	char d[DNS_NAME_MAX + 1];
	char s[64];
	char a[32];
	char b8[16];
	unsigned instance; /* ARC i= */
	char cv[8];        /* ARC-Seal cv= */
	unsigned char b[DKIM_SIG_MAX];
	size_t blen;
	unsigned char bh[EVP_MAX_MD_SIZE];
	size_t bhlen;
	char auid[DNS_NAME_MAX + 1]; /* domain of i= (DKIM), lower case */
	struct dkim_name h[DKIM_HDRS_MAX];
	size_t nh;
	bool has_l;
	uint64_t l;
	size_t bdel_start, bdel_end; /* the b= value in f, deleted when hashing */
};

static const EVP_MD *
dkim_alg_md(enum dkim_alg a)
{
	return a == DKIM_ALG_RSA_SHA1 ? EVP_sha1() : EVP_sha256();
}

/* Parse a= c= and the h= list, for DKIM-Signature and AMS. */
static const char *
dkim_sig_parse_hc(struct dkim_sig *sig, const struct dkim_tags *tags)
{
	const struct dkim_tag *c = dkim_tag_get(tags, "c"), *h = dkim_tag_get(tags, "h");
	size_t i = 0;

	sig->hdr_relaxed = sig->body_relaxed = false;
	if (c != NULL) {
		const unsigned char *slash = memchr(c->val, '/', c->val_len);
		size_t hl = slash ? (size_t)(slash - c->val) : c->val_len;
		size_t bl = slash ? c->val_len - hl - 1 : 0;

		if (hl == 7 && mem_ieq((const char *)c->val, "relaxed", 7))
			sig->hdr_relaxed = true;
		else if (!(hl == 6 && mem_ieq((const char *)c->val, "simple", 6)))
			return "unknown header canonicalization";
		if (slash != NULL) {
			if (bl == 7 && mem_ieq((const char *)slash + 1, "relaxed", 7))
				sig->body_relaxed = true;
			else if (!(bl == 6 && mem_ieq((const char *)slash + 1, "simple", 6)))
				return "unknown body canonicalization";
		}
	}
	if (h == NULL)
		return "no h= tag";
	sig->nh = 0;
	while (i < h->val_len) {
		size_t start, end;

		while (i < h->val_len && dkim_is_fws(h->val[i]))
			i++;
		start = i;
		while (i < h->val_len && h->val[i] != ':')
			i++;
		end = i;
		while (end > start && dkim_is_fws(h->val[end - 1]))
			end--;
		if (end == start)
			return "empty name in h=";
		for (size_t k = start; k < end; k++)
			if (h->val[k] <= 0x20 || h->val[k] >= 0x7f)
				return "bad name in h=";
		if (sig->nh == DKIM_HDRS_MAX)
			return "too many names in h=";
		sig->h[sig->nh].p = h->val + start;
		sig->h[sig->nh++].len = end - start;
		i++; /* ':' */
	}
	if (sig->nh == 0)
		return "empty h=";
	return NULL;
}

static bool
dkim_sig_signs(const struct dkim_sig *sig, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < sig->nh; i++)
		if (sig->h[i].len == n && mem_ieq((const char *)sig->h[i].p, name, n))
			return true;
	return false;
}

/* Is sub equal to dom or a subdomain of it? Both lower case. */
static bool
dkim_domain_within(const char *sub, const char *dom)
{
	size_t ls = strlen(sub), ld = strlen(dom);

	if (ls == ld)
		return strcmp(sub, dom) == 0;
	return ls > ld && sub[ls - ld - 1] == '.' && strcmp(sub + ls - ld, dom) == 0;
}

/* Parse and check a signature field's tags; NULL on success, else why (permerror). */
static const char *
dkim_sig_parse(const struct scan_task *t, const struct scan_hdr *hdr, enum dkim_kind kind,
               struct dkim_sig *sig)
{
	struct dkim_tags tags;
	const struct dkim_tag *tg, *btag;
	size_t name_len, colon;
	const char *err;
	uint64_t ts = 0, x = 0, n;
	bool has_t = false;

	memset(sig, 0, sizeof(*sig));
	sig->kind = kind;
	sig->hdr = hdr;
	if (!dkim_field_of(t, hdr, &sig->f) || !dkim_field_name(&sig->f, &name_len, &colon))
		return "unparsable field";
	if ((err = dkim_tags_parse(sig->f.p + colon + 1, sig->f.len - colon - 1, &tags)) != NULL)
		return err;

	if (kind == DKIM_KIND_SIG) {
		if ((tg = dkim_tag_get(&tags, "v")) == NULL)
			return "no v= tag";
		if (!(tg->val_len == 1 && tg->val[0] == '1'))
			return "v= is not 1";
	} else {
		if ((tg = dkim_tag_get(&tags, "i")) == NULL)
			return "no i= tag";
		if (dkim_val_u64(tg, ARC_INSTANCE_MAX, &n) < 0 || n < 1)
			return "bad i= instance";
		sig->instance = (unsigned)n;
	}

	if ((tg = dkim_tag_get(&tags, "a")) == NULL)
		return "no a= tag";
	if (!dkim_val_token(tg, sig->a, sizeof(sig->a)))
		return "a= too long";
	str_lower(sig->a);
	if (strcmp(sig->a, "rsa-sha256") == 0)
		sig->alg = DKIM_ALG_RSA_SHA256;
	else if (strcmp(sig->a, "rsa-sha1") == 0)
		sig->alg = DKIM_ALG_RSA_SHA1;
	else if (strcmp(sig->a, "ed25519-sha256") == 0)
		sig->alg = DKIM_ALG_ED25519_SHA256;
	else
		return "unknown algorithm in a=";

	if ((btag = dkim_tag_get(&tags, "b")) == NULL)
		return "no b= tag";
	for (size_t i = 0, o = 0; i < btag->val_len && o < 8; i++)
		if (!dkim_is_fws(btag->val[i]))
			sig->b8[o++] = (char)btag->val[i];
	if (dkim_b64_decode(btag->val, btag->val_len, sig->b, sizeof(sig->b), &sig->blen) < 0 ||
	    sig->blen == 0)
		return "bad b= value";
	/* the deleted part: everything between "b=" and the next ';' (or the end) */
	sig->bdel_start = (size_t)(btag->eq + 1 - sig->f.p);
	sig->bdel_end = (size_t)(btag->end - sig->f.p);

	if ((tg = dkim_tag_get(&tags, "d")) == NULL)
		return "no d= tag";
	if (!dkim_val_token(tg, sig->d, sizeof(sig->d)) || !dkim_name_ok(sig->d))
		return "bad d= domain";
	str_lower(sig->d);
	if ((tg = dkim_tag_get(&tags, "s")) == NULL)
		return "no s= tag";
	if (!dkim_val_token(tg, sig->s, sizeof(sig->s)) || !dkim_name_ok(sig->s))
		return "bad s= selector";
	if (strlen(sig->s) + strlen("._domainkey.") + strlen(sig->d) > DNS_NAME_MAX)
		return "key name too long";

	if ((tg = dkim_tag_get(&tags, "t")) != NULL) {
		if (dkim_val_u64(tg, DKIM_TIME_MAX, &ts) < 0)
			return "bad t= timestamp";
		has_t = true;
	}
	if (kind == DKIM_KIND_SEAL) {
		if (dkim_tag_get(&tags, "h") != NULL)
			return "h= in an ARC-Seal";
		if ((tg = dkim_tag_get(&tags, "cv")) == NULL)
			return "no cv= tag";
		if (!dkim_val_token(tg, sig->cv, sizeof(sig->cv)))
			return "bad cv= value";
		str_lower(sig->cv);
		return NULL;
	}

	if ((tg = dkim_tag_get(&tags, "bh")) == NULL)
		return "no bh= tag";
	if (dkim_b64_decode(tg->val, tg->val_len, sig->bh, sizeof(sig->bh), &sig->bhlen) < 0)
		return "bad bh= value";
	if ((err = dkim_sig_parse_hc(sig, &tags)) != NULL)
		return err;
	if ((tg = dkim_tag_get(&tags, "l")) != NULL) {
		if (dkim_val_u64(tg, DKIM_L_MAX, &sig->l) < 0)
			return "bad l= length";
		sig->has_l = true;
	}
	if ((tg = dkim_tag_get(&tags, "q")) != NULL && !dkim_list_has(tg, "dns/txt"))
		return "q= without dns/txt";
	if ((tg = dkim_tag_get(&tags, "x")) != NULL) {
		time_t now = time(NULL);

		if (dkim_val_u64(tg, DKIM_TIME_MAX, &x) < 0)
			return "bad x= expiry";
		if (has_t && x < ts)
			return "x= before t=";
		if (now > 0 && x + DKIM_CLOCK_SLACK_S < (uint64_t)now)
			return "signature expired (x=)";
	}
	if (has_t && ts > (uint64_t)time(NULL) + DKIM_CLOCK_SLACK_S)
		return "t= in the future";

	if (kind == DKIM_KIND_AMS)
		return dkim_sig_signs(sig, "arc-seal") ? "h= signs ARC-Seal" : NULL;

	if (!dkim_sig_signs(sig, "from"))
		return "h= does not sign From";
	if ((tg = dkim_tag_get(&tags, "i")) != NULL) {
		char auid[DNS_NAME_MAX + 80];
		const char *at;

		if (!dkim_val_token(tg, auid, sizeof(auid)) || (at = strrchr(auid, '@')) == NULL)
			return "bad i= identity";
		if (str_copy(sig->auid, at + 1, sizeof(sig->auid)) >= sizeof(sig->auid))
			return "bad i= identity";
		str_lower(sig->auid);
		if (!dkim_domain_within(sig->auid, sig->d))
			return "i= domain not within d=";
	} else {
		str_copy(sig->auid, sig->d, sizeof(sig->auid));
	}
	return NULL;
}

/* --- keys (RFC 6376 3.6.1) --- */

struct dkim_key {
	EVP_PKEY *pk;
	bool strict; /* t=s: i= must be in d= itself */
	int bits;
};

/*
 * Decoded keys, per scan thread: OpenSSL 3's DER decoding costs more than
 * the RSA verification itself, and a gateway sees the same few hundred
 * keys over and over. Keyed by the exact p= octets and type, so a changed
 * record is a different entry; replaced round-robin; freed when the
 * thread ends.
 */
#define DKIM_KEY_CACHE 32

struct dkim_key_cache {
	unsigned next;
	struct {
		bool ed;
		size_t len;
		unsigned char der[DKIM_KEY_MAX];
		EVP_PKEY *pk;
	} e[DKIM_KEY_CACHE];
};

static pthread_key_t dkim_cache_key;
static pthread_once_t dkim_cache_once = PTHREAD_ONCE_INIT;

static void
dkim_cache_free(void *arg)
{
	struct dkim_key_cache *c = arg;

	for (size_t i = 0; i < DKIM_KEY_CACHE; i++)
		EVP_PKEY_free(c->e[i].pk);
	free(c);
}

static void
dkim_cache_init(void)
{
	if (pthread_key_create(&dkim_cache_key, dkim_cache_free) != 0)
		fatalx("dkim: pthread_key_create");
}

static struct dkim_key_cache *
dkim_cache_get(void)
{
	struct dkim_key_cache *c;

	pthread_once(&dkim_cache_once, dkim_cache_init);
	if ((c = pthread_getspecific(dkim_cache_key)) == NULL) {
		c = xcalloc(1, sizeof(*c));
		pthread_setspecific(dkim_cache_key, c);
	}
	return c;
}

/* A new reference to the decoded key (der, len), from the cache or decoded now; NULL if unusable.
 */
static EVP_PKEY *
dkim_key_decode(bool ed, const unsigned char *der, size_t len)
{
	struct dkim_key_cache *c = dkim_cache_get();
	const unsigned char *dp = der;
	EVP_PKEY *pk;
	unsigned slot;

	for (size_t i = 0; i < DKIM_KEY_CACHE; i++)
		if (c->e[i].pk && c->e[i].ed == ed && c->e[i].len == len &&
		    memcmp(c->e[i].der, der, len) == 0) {
			EVP_PKEY_up_ref(c->e[i].pk);
			return c->e[i].pk;
		}
	if (ed) {
		pk = len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, len)
		               : NULL;
	} else {
		pk = d2i_PUBKEY(NULL, &dp, (long)len);
		if (pk == NULL) { /* some publish a bare PKCS#1 RSAPublicKey */
			dp = der;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &dp, (long)len);
		}
		if (pk != NULL && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
	}
	ERR_clear_error();
	if (pk == NULL)
		return NULL;
	slot = c->next++ % DKIM_KEY_CACHE;
	EVP_PKEY_free(c->e[slot].pk);
	c->e[slot].ed = ed;
	c->e[slot].len = len;
	memcpy(c->e[slot].der, der, len);
	c->e[slot].pk = pk;
	EVP_PKEY_up_ref(pk);
	return pk;
}

/* Parse one key record for sig; SCAN_AUTH_PASS with key->pk, else the result. */
static enum scan_auth
dkim_key_parse(const struct dkim_sig *sig, const char *txt, struct dkim_key *key, char *reason,
               size_t rsize)
{
	struct dkim_tags tags;
	const struct dkim_tag *tg;
	unsigned char der[DKIM_KEY_MAX];
	size_t len;
	const char *err;
	bool ed = sig->alg == DKIM_ALG_ED25519_SHA256;

	if ((err = dkim_tags_parse((const unsigned char *)txt, strlen(txt), &tags)) != NULL) {
		snprintf(reason, rsize, "key record: %s", err);
		return SCAN_AUTH_PERMERROR;
	}
	if ((tg = dkim_tag_get(&tags, "v")) != NULL &&
	    (tg != &tags.tag[0] || !dkim_val_is(tg, "DKIM1"))) {
		snprintf(reason, rsize, "key record: bad v=");
		return SCAN_AUTH_PERMERROR;
	}
	tg = dkim_tag_get(&tags, "k");
	if (tg != NULL ? !dkim_val_is(tg, ed ? "ed25519" : "rsa") : ed) {
		snprintf(reason, rsize, "key type does not match a=%s", sig->a);
		return SCAN_AUTH_PERMERROR;
	}
	if ((tg = dkim_tag_get(&tags, "h")) != NULL &&
	    !dkim_list_has(tg, sig->alg == DKIM_ALG_RSA_SHA1 ? "sha1" : "sha256")) {
		snprintf(reason, rsize, "key h= does not allow a=%s", sig->a);
		return SCAN_AUTH_PERMERROR;
	}
	if ((tg = dkim_tag_get(&tags, "s")) != NULL && !dkim_list_has(tg, "email") &&
	    !dkim_list_has(tg, "*")) {
		snprintf(reason, rsize, "key not for email (s=)");
		return SCAN_AUTH_PERMERROR;
	}
	if ((tg = dkim_tag_get(&tags, "t")) != NULL)
		key->strict = dkim_list_has(tg, "s");
	if ((tg = dkim_tag_get(&tags, "p")) == NULL) {
		snprintf(reason, rsize, "key record without p=");
		return SCAN_AUTH_PERMERROR;
	}
	if (dkim_b64_decode(tg->val, tg->val_len, der, sizeof(der), &len) < 0) {
		snprintf(reason, rsize, "key record: bad p=");
		return SCAN_AUTH_PERMERROR;
	}
	if (len == 0) {
		snprintf(reason, rsize, "key revoked (empty p=)");
		return SCAN_AUTH_FAIL;
	}
	key->pk = dkim_key_decode(ed, der, len);
	if (key->pk == NULL) {
		snprintf(reason, rsize, "key record: unusable p=");
		return SCAN_AUTH_PERMERROR;
	}
	key->bits = EVP_PKEY_get_bits(key->pk);
	return SCAN_AUTH_PASS;
}

/* Look the key of sig up: "<s>._domainkey.<d>" TXT. */
static enum scan_auth
dkim_key_get(struct scan_task *t, const struct dkim_sig *sig, struct dkim_key *key, char *reason,
             size_t rsize)
{
	char name[DNS_NAME_MAX + 1];
	struct dns_txt_result r;
	enum scan_auth res = SCAN_AUTH_PERMERROR;

	memset(key, 0, sizeof(*key));
	if (!path_fmt(name, sizeof(name), "%s._domainkey.%s", sig->s, sig->d)) {
		snprintf(reason, rsize, "key name too long");
		return SCAN_AUTH_PERMERROR;
	}
	switch (scan_dns_txt(t, name, &r)) {
	case DNS_OK:
		break;
	case DNS_TEMPFAIL:
		scan_dns_txt_free(&r);
		snprintf(reason, rsize, "key lookup failed temporarily");
		return SCAN_AUTH_TEMPERROR;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		scan_dns_txt_free(&r);
		str_copy(reason, "no key record", rsize);
		return SCAN_AUTH_PERMERROR;
	default:
		scan_dns_txt_free(&r);
		snprintf(reason, rsize, "key lookup refused");
		return SCAN_AUTH_PERMERROR;
	}
	str_copy(reason, "no key record", rsize);
	/* RFC 6376 3.6.2.2 leaves several records undefined: the first usable one wins */
	for (size_t i = 0; i < r.n && i < DNS_TXT_MAX; i++) {
		char why[160];
		enum scan_auth k = dkim_key_parse(sig, r.txt[i], key, why, sizeof(why));

		if (i == 0 || k == SCAN_AUTH_PASS) {
			res = k;
			str_copy(reason, why, rsize);
		}
		if (k == SCAN_AUTH_PASS)
			break;
	}
	scan_dns_txt_free(&r);
	return res;
}

/* Verify a signature over the digest of the header hash input. */
static bool
dkim_crypto_verify(const struct dkim_sig *sig, EVP_PKEY *pk, const unsigned char *dg, size_t dglen)
{
	bool ok = false;

	if (sig->alg == DKIM_ALG_ED25519_SHA256) {
		EVP_MD_CTX *mc = EVP_MD_CTX_new();

		if (mc == NULL)
			fatalx("dkim: out of memory");
		ok = EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pk) == 1 &&
		     EVP_DigestVerify(mc, sig->b, sig->blen, dg, dglen) == 1;
		EVP_MD_CTX_free(mc);
	} else {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pk, NULL);

		if (pc == NULL)
			fatalx("dkim: out of memory");
		ok = EVP_PKEY_verify_init(pc) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pc, dkim_alg_md(sig->alg)) == 1 &&
		     EVP_PKEY_verify(pc, sig->b, sig->blen, dg, dglen) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	ERR_clear_error();
	return ok;
}

/* Hash the signature field itself, its b= value deleted, without a final CRLF. */
static void
dkim_hash_self(struct dkim_sink *k, const struct dkim_sig *sig, bool relaxed)
{
	size_t n = sig->f.len - (sig->bdel_end - sig->bdel_start);
	unsigned char *copy = xmalloc(n > 0 ? n : 1);

	memcpy(copy, sig->f.p, sig->bdel_start);
	memcpy(copy + sig->bdel_start, sig->f.p + sig->bdel_end, sig->f.len - sig->bdel_end);
	dkim_hash_field(k, copy, n, relaxed, false);
	free(copy);
}

/* Digest of the signed header fields (RFC 6376 5.4.2): bottom-up, then the signature. */
static void
dkim_header_digest(const struct scan_task *t, const struct dkim_sig *sig, unsigned char *dg,
                   unsigned *dlen)
{
	struct dkim_sink *k = xcalloc(1, sizeof(*k));
	bool *used = xcalloc(t->hdrs.n + 1, sizeof(*used));

	k->md = dkim_md_new(dkim_alg_md(sig->alg));
	for (size_t i = 0; i < t->hdrs.n; i++)
		if (&t->hdrs.h[i] == sig->hdr)
			used[i] = true;
	for (size_t j = 0; j < sig->nh; j++) {
		for (size_t i = t->hdrs.n; i-- > 0;) {
			struct dkim_field f;

			if (used[i] || !dkim_field_of(t, &t->hdrs.h[i], &f) ||
			    !dkim_field_is(&f, sig->h[j].p, sig->h[j].len))
				continue;
			used[i] = true;
			dkim_hash_field(k, f.p, f.len, sig->hdr_relaxed, true);
			break;
		}
		/* a name without (another) field contributes nothing: oversigning */
	}
	dkim_hash_self(k, sig, sig->hdr_relaxed);
	dkim_sink_flush(k);
	if (EVP_DigestFinal_ex(k->md, dg, dlen) != 1)
		fatalx("dkim: EVP_DigestFinal_ex failed");
	EVP_MD_CTX_free(k->md);
	free(k);
	free(used);
}

/* Key checks shared by every kind; SCAN_AUTH_PASS when the key may be used. */
static enum scan_auth
dkim_key_check(const struct dkim_sig *sig, const struct dkim_key *key, char *reason, size_t rsize)
{
	if (sig->kind == DKIM_KIND_SIG && key->strict && strcmp(sig->auid, sig->d) != 0) {
		snprintf(reason, rsize, "key t=s: i= must be in d= itself");
		return SCAN_AUTH_PERMERROR;
	}
	return SCAN_AUTH_PASS;
}

/* After the crypto passed: RFC 8301's refusals. */
static enum scan_auth
dkim_weak(const struct dkim_sig *sig, const struct dkim_key *key, char *reason, size_t rsize)
{
	if (sig->alg == DKIM_ALG_RSA_SHA1) {
		snprintf(reason, rsize, "rsa-sha1 refused (RFC 8301)");
		return SCAN_AUTH_POLICY;
	}
	if (sig->alg != DKIM_ALG_ED25519_SHA256 && key->bits < DKIM_RSA_MIN_BITS) {
		snprintf(reason, rsize, "%d-bit RSA key refused (RFC 8301)", key->bits);
		return SCAN_AUTH_POLICY;
	}
	return SCAN_AUTH_PASS;
}

/*
 * Verify a parsed DKIM-Signature or ARC-Message-Signature (RFC 6376 6.1.2,
 * 6.1.3). *unsigned_octets gets the body octets after l=.
 */
static enum scan_auth
dkim_verify(struct scan_task *t, const struct dkim_sig *sig, struct dkim_body_cache *cache,
            uint64_t *unsigned_octets, char *reason, size_t rsize)
{
	struct dkim_key key;
	struct dkim_body_hash tmp;
	const struct dkim_body_hash *bh;
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned dlen;
	enum scan_auth res;

	*unsigned_octets = 0;
	if ((res = dkim_key_get(t, sig, &key, reason, rsize)) != SCAN_AUTH_PASS)
		return res;
	if ((res = dkim_key_check(sig, &key, reason, rsize)) != SCAN_AUTH_PASS)
		goto out;
	if (scan_remaining_ms(t) == 0) {
		snprintf(reason, rsize, "deadline passed");
		res = SCAN_AUTH_TEMPERROR;
		goto out;
	}
	bh = dkim_body_hash(t, cache, sig->body_relaxed, dkim_alg_md(sig->alg),
	                    sig->has_l ? sig->l : UINT64_MAX, &tmp);
	if (sig->has_l && sig->l > bh->total) {
		snprintf(reason, rsize, "l= longer than the body");
		res = SCAN_AUTH_FAIL;
		goto out;
	}
	if (sig->has_l)
		*unsigned_octets = bh->total - sig->l;
	if (bh->dlen != sig->bhlen || memcmp(bh->digest, sig->bh, bh->dlen) != 0) {
		snprintf(reason, rsize, "body hash mismatch");
		res = SCAN_AUTH_FAIL;
		goto out;
	}
	dkim_header_digest(t, sig, dg, &dlen);
	if (!dkim_crypto_verify(sig, key.pk, dg, dlen)) {
		snprintf(reason, rsize, "signature does not verify");
		res = SCAN_AUTH_FAIL;
		goto out;
	}
	res = dkim_weak(sig, &key, reason, rsize);
	if (res == SCAN_AUTH_PASS)
		snprintf(reason, rsize, "valid signature");
out:
	EVP_PKEY_free(key.pk);
	return res;
}

static void
dkim_emit(struct scan_task *t, const struct scan_dkim_sig *r, uint64_t unsigned_octets, bool has_l,
          uint64_t l)
{
	const char *d = r->domain[0] ? r->domain : "?";
	char lbuf[48] = "";

	if (has_l)
		snprintf(lbuf, sizeof(lbuf), " l=%" PRIu64 "%s", l, unsigned_octets ? "+" : "");
	switch (r->result) {
	case SCAN_AUTH_PASS:
		scan_sym(t, SYM_DKIM_PASS, "d=%s%s", d, lbuf);
		break;
	case SCAN_AUTH_TEMPERROR:
		scan_sym(t, SYM_DKIM_TEMPERROR, "d=%s: %s", d, r->reason);
		break;
	case SCAN_AUTH_PERMERROR:
		scan_sym(t, SYM_DKIM_PERMERROR, "d=%s: %s", d, r->reason);
		break;
	case SCAN_AUTH_POLICY:
		scan_sym(t, SYM_DKIM_POLICY, "d=%s: %s", d, r->reason);
		break;
	default:
		scan_sym(t, SYM_DKIM_FAIL, "d=%s: %s", d, r->reason);
		break;
	}
}

void
scan_check_dkim(struct scan_task *t)
{
	struct dkim_body_cache *cache = xcalloc(1, sizeof(*cache));
	struct dkim_sig *sig = xmalloc(sizeof(*sig));
	size_t seen = 0;

	t->ndkim = 0;
	for (size_t i = 0; i < t->hdrs.n; i++) {
		struct scan_dkim_sig *r;
		const char *err;
		uint64_t unsigned_octets = 0;

		if (!dkim_hdr_is(t, &t->hdrs.h[i], "DKIM-Signature"))
			continue;
		if (seen++ >= SCAN_DKIM_MAX)
			continue;
		r = &t->dkim[t->ndkim++];
		memset(r, 0, sizeof(*r));
		err = dkim_sig_parse(t, &t->hdrs.h[i], DKIM_KIND_SIG, sig);
		str_copy(r->domain, sig->d, sizeof(r->domain));
		str_copy(r->selector, sig->s, sizeof(r->selector));
		str_copy(r->algo, sig->a, sizeof(r->algo));
		str_copy(r->b, sig->b8, sizeof(r->b));
		if (err != NULL) {
			r->result = SCAN_AUTH_PERMERROR;
			str_copy(r->reason, err, sizeof(r->reason));
		} else {
			r->result = dkim_verify(t, sig, cache, &unsigned_octets, r->reason,
			                        sizeof(r->reason));
		}
		dkim_emit(t, r, unsigned_octets, err == NULL && sig->has_l, sig->l);
	}
	if (seen == 0)
		scan_sym(t, SYM_DKIM_NONE, NULL);
	else if (seen > SCAN_DKIM_MAX)
		scan_sym(t, SYM_DKIM_TOO_MANY, "%zu signatures, %zu ignored", seen,
		         seen - SCAN_DKIM_MAX);
	free(sig);
	free(cache);
}

/* --- ARC (RFC 8617) --- */

struct arc_set {
	const struct scan_hdr *aar, *ams, *as;
};

/* i= of an ARC-Authentication-Results field: "i=N;" at its start (RFC 8617 4.1.1). */
static bool
arc_aar_instance(const struct scan_task *t, const struct scan_hdr *h, unsigned *inst)
{
	struct dkim_field f;
	size_t nl, colon, i, start;
	uint64_t v;

	if (!dkim_field_of(t, h, &f) || !dkim_field_name(&f, &nl, &colon))
		return false;
	i = colon + 1;
	while (i < f.len && dkim_is_fws(f.p[i]))
		i++;
	if (i >= f.len || f.p[i] != 'i')
		return false;
	i++;
	while (i < f.len && dkim_is_fws(f.p[i]))
		i++;
	if (i >= f.len || f.p[i] != '=')
		return false;
	i++;
	while (i < f.len && dkim_is_fws(f.p[i]))
		i++;
	start = i;
	while (i < f.len && dkim_is_digit(f.p[i]) && i - start < 4)
		i++;
	if (parse_u64((const char *)f.p + start, i - start, ARC_INSTANCE_MAX, &v) < 0 || v < 1)
		return false;
	while (i < f.len && dkim_is_fws(f.p[i]))
		i++;
	if (i >= f.len || f.p[i] != ';')
		return false;
	*inst = (unsigned)v;
	return true;
}

/* i= of an AMS or AS: the tag-list's i= tag. */
static bool
arc_sig_instance(const struct scan_task *t, const struct scan_hdr *h, unsigned *inst)
{
	struct dkim_field f;
	struct dkim_tags tags;
	const struct dkim_tag *tg;
	size_t nl, colon;
	uint64_t v;

	if (!dkim_field_of(t, h, &f) || !dkim_field_name(&f, &nl, &colon) ||
	    dkim_tags_parse(f.p + colon + 1, f.len - colon - 1, &tags) != NULL ||
	    (tg = dkim_tag_get(&tags, "i")) == NULL || dkim_val_u64(tg, ARC_INSTANCE_MAX, &v) < 0 ||
	    v < 1)
		return false;
	*inst = (unsigned)v;
	return true;
}

/* Verify the ARC-Seal of instance n over the sets 1..n (RFC 8617 5.1.1). */
static enum scan_auth
arc_seal_verify(struct scan_task *t, const struct arc_set *sets, unsigned n,
                const struct dkim_sig *seal, char *reason, size_t rsize)
{
	struct dkim_key key;
	struct dkim_sink *k;
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned dlen;
	enum scan_auth res;

	if ((res = dkim_key_get(t, seal, &key, reason, rsize)) != SCAN_AUTH_PASS)
		return res;
	k = xcalloc(1, sizeof(*k));
	k->md = dkim_md_new(dkim_alg_md(seal->alg));
	for (unsigned i = 1; i <= n; i++) {
		const struct scan_hdr *hs[3] = {sets[i].aar, sets[i].ams, sets[i].as};

		for (size_t j = 0; j < 3; j++) {
			struct dkim_field f;

			if (i == n && j == 2)
				dkim_hash_self(k, seal, true);
			else if (dkim_field_of(t, hs[j], &f))
				dkim_hash_field(k, f.p, f.len, true, true);
		}
	}
	dkim_sink_flush(k);
	if (EVP_DigestFinal_ex(k->md, dg, &dlen) != 1)
		fatalx("dkim: EVP_DigestFinal_ex failed");
	EVP_MD_CTX_free(k->md);
	free(k);
	if (!dkim_crypto_verify(seal, key.pk, dg, dlen)) {
		snprintf(reason, rsize, "signature does not verify");
		res = SCAN_AUTH_FAIL;
	} else {
		res = dkim_weak(seal, &key, reason, rsize);
	}
	EVP_PKEY_free(key.pk);
	return res;
}

static void arc_result(struct scan_task *t, enum scan_auth res, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
arc_result(struct scan_task *t, enum scan_auth res, const char *fmt, ...)
{
	va_list ap;

	t->arc.result = res;
	va_start(ap, fmt);
	vsnprintf(t->arc.reason, sizeof(t->arc.reason), fmt, ap);
	va_end(ap);
	if (res == SCAN_AUTH_PASS)
		scan_sym(t, SYM_ARC_PASS, "i=%u", t->arc.instances);
	else
		scan_sym(t, SYM_ARC_FAIL, "%s", t->arc.reason);
}

/* Validate the chain (RFC 8617 5.2) and its sets' structure (4.2). */
static void
arc_validate(struct scan_task *t, struct arc_set *sets, struct dkim_sig *sig,
             struct dkim_body_cache *cache)
{
	unsigned n = 0;
	bool any = false;
	const char *err;
	char why[160];
	uint64_t unused;
	enum scan_auth res;

	for (size_t i = 0; i < t->hdrs.n; i++) {
		const struct scan_hdr *h = &t->hdrs.h[i];
		const struct scan_hdr **slot;
		unsigned inst = 0;
		bool ok;

		if (dkim_hdr_is(t, h, "ARC-Seal")) {
			ok = arc_sig_instance(t, h, &inst);
			slot = &sets[inst].as;
		} else if (dkim_hdr_is(t, h, "ARC-Message-Signature")) {
			ok = arc_sig_instance(t, h, &inst);
			slot = &sets[inst].ams;
		} else if (dkim_hdr_is(t, h, "ARC-Authentication-Results")) {
			ok = arc_aar_instance(t, h, &inst);
			slot = &sets[inst].aar;
		} else {
			continue;
		}
		any = true;
		if (!ok) {
			arc_result(t, SCAN_AUTH_FAIL, "an ARC field without a valid i= (1..%d)",
			           ARC_INSTANCE_MAX);
			return;
		}
		if (*slot != NULL) {
			arc_result(t, SCAN_AUTH_FAIL, "two ARC fields of one kind with i=%u", inst);
			return;
		}
		*slot = h;
		if (inst > n)
			n = inst;
	}
	if (!any) {
		t->arc.result = SCAN_AUTH_NONE;
		str_copy(t->arc.reason, "no ARC sets", sizeof(t->arc.reason));
		scan_sym(t, SYM_ARC_NONE, NULL);
		return;
	}
	t->arc.instances = n;
	for (unsigned i = 1; i <= n; i++)
		if (sets[i].aar == NULL || sets[i].ams == NULL || sets[i].as == NULL) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC set i=%u incomplete or missing", i);
			return;
		}
	/* the seals' tags and cv= values, the latest first */
	for (unsigned i = n; i >= 1; i--) {
		if ((err = dkim_sig_parse(t, sets[i].as, DKIM_KIND_SEAL, sig)) != NULL) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC-Seal i=%u: %s", i, err);
			return;
		}
		if (strcmp(sig->cv, "fail") == 0) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC-Seal i=%u says cv=fail", i);
			return;
		}
		if (strcmp(sig->cv, i == 1 ? "none" : "pass") != 0) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC-Seal i=%u has cv=%s", i, sig->cv);
			return;
		}
	}
	/* the most recent AMS, like a DKIM signature */
	if ((err = dkim_sig_parse(t, sets[n].ams, DKIM_KIND_AMS, sig)) != NULL) {
		arc_result(t, SCAN_AUTH_FAIL, "ARC-Message-Signature i=%u: %s", n, err);
		return;
	}
	res = dkim_verify(t, sig, cache, &unused, why, sizeof(why));
	if (res != SCAN_AUTH_PASS) {
		arc_result(t, SCAN_AUTH_FAIL, "ARC-Message-Signature i=%u: %s%s", n,
		           res == SCAN_AUTH_TEMPERROR ? "temperror: " : "", why);
		return;
	}
	/* every seal, the latest first */
	for (unsigned i = n; i >= 1; i--) {
		if ((err = dkim_sig_parse(t, sets[i].as, DKIM_KIND_SEAL, sig)) != NULL) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC-Seal i=%u: %s", i, err);
			return;
		}
		res = arc_seal_verify(t, sets, i, sig, why, sizeof(why));
		if (res != SCAN_AUTH_PASS) {
			arc_result(t, SCAN_AUTH_FAIL, "ARC-Seal i=%u: %s%s", i,
			           res == SCAN_AUTH_TEMPERROR ? "temperror: " : "", why);
			return;
		}
	}
	arc_result(t, SCAN_AUTH_PASS, "chain of %u valid", n);
}

void
scan_check_arc(struct scan_task *t)
{
	struct arc_set *sets = xcalloc(ARC_INSTANCE_MAX + 1, sizeof(*sets));
	struct dkim_sig *sig = xmalloc(sizeof(*sig));
	struct dkim_body_cache *cache = xcalloc(1, sizeof(*cache));

	memset(&t->arc, 0, sizeof(t->arc));
	arc_validate(t, sets, sig, cache);
	free(cache);
	free(sig);
	free(sets);
}
