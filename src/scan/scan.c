/*
 * scan.c - the scan pipeline: the order of the checks, the verdict, and
 * the header fields moat puts on a message it passes.
 *
 * Stages, in order (each a function of struct scan_task, scan_internal.h):
 *   origin      relay mode, HELO, incoming fields claiming to be moat's
 *   mime        GMime model: parts, names, addresses; ambiguities
 *   urls        links of the text and HTML parts
 *   spf, dkim, arc, dmarc, dnsbl        sender authentication, blocklists
 *   attachments, phish, gtube, rspamd   content
 *   clamd       malware
 *   lists       allow and block lists of the recipients' domains
 * then the verdict (scan_decide) and the header section (scan_build_head).
 * A release from quarantine runs only mime, attachments-free malware
 * scanning (clamd): the administrator has judged the rest.
 *
 * RFC 8601 (Authentication-Results), RFC 2104 (HMAC, for relay keys).
 */
#include "scan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <gmime/gmime.h>
#include <libxml/parser.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../common/log.h"
#include "../common/util.h"

#define SCAN_RELAY_KEYS_MAX 16 /* relay-key fields: one per recipient domain */

void
scan_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	g_mime_init();
	xmlInitParser();
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *
scan_verdict_str(enum scan_verdict v)
{
	switch (v) {
	case SCAN_DELIVER:
		return "deliver";
	case SCAN_QUARANTINE:
		return "quarantine";
	case SCAN_REJECT:
		return "reject";
	case SCAN_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}

void
scan_print_symbols(FILE *fp)
{
	fprintf(fp, "| symbol | score | forces | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++) {
		const struct scan_sym_def *d = &scan_sym_defs[i];
		const char *forces = d->flags & SCAN_SF_MALWARE      ? "malware action"
		                     : d->flags & SCAN_SF_REJECT     ? "reject"
		                     : d->flags & SCAN_SF_QUARANTINE ? "quarantine"
		                     : d->flags & SCAN_SF_DELIVER    ? "deliver"
		                                                     : "";
		fprintf(fp, "| `%s` | %.1f | %s | %s |\n", d->name, d->score, forces, d->doc);
	}
}

/* The domain of a canonical address, or NULL. */
static const char *
scan_addr_domain(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	return at && at[1] ? at + 1 : NULL;
}

/* Was this sender address authenticated (SPF for the envelope, DMARC for From)? */
static bool
scan_sender_authenticated(const struct scan_task *t, const char *addr, bool envelope)
{
	const char *d = scan_addr_domain(addr);

	if (d == NULL)
		return false;
	if (envelope)
		return t->spf.result == SCAN_AUTH_PASS && !t->spf.helo &&
		       strcasecmp(t->spf.domain, d) == 0;
	return t->dmarc.result == SCAN_AUTH_PASS && strcasecmp(t->dmarc.domain, d) == 0;
}

/*
 * Allow and block lists of every recipient's domain, for the envelope
 * sender and the From address. A block entry always counts; an allow
 * entry only for an address that authenticated, so that a forged From
 * does not ride a partner's entry.
 */
static void
scan_check_lists(struct scan_task *t)
{
	const char *from = t->msg.nfrom == 1 ? t->msg.from[0].addr : NULL;
	const char *cand[2] = {t->in->sender, from};

	for (size_t r = 0; r < t->in->nrcpts; r++) {
		const char *rd = scan_addr_domain(t->in->rcpts[r]);

		for (size_t c = 0; c < 2; c++) {
			if (cand[c] == NULL || cand[c][0] == '\0')
				continue;
			switch (policy_sender_list(t->pol, rd, cand[c])) {
			case POLICY_LIST_BLOCK:
				scan_sym(t, SYM_MOAT_BLOCKLIST, "%s", c ? "from" : "envelope");
				break;
			case POLICY_LIST_ALLOW:
				if (scan_sender_authenticated(t, cand[c], c == 0))
					scan_sym(t, SYM_MOAT_ALLOWLIST, "%s",
					         c ? "from" : "envelope");
				break;
			case POLICY_LIST_NONE:
				break;
			}
		}
	}
}

static double
scan_sym_total(const struct scan_task *t, enum scan_sym_id id)
{
	return scan_sym_defs[id].score + t->extra[id];
}

/* The verdict; reason is a line safe to send (no attacker text). */
static enum scan_verdict
scan_decide(const struct scan_task *t, double score, char *reason, size_t size)
{
	double q = INFINITY, rj = INFINITY, dq, dr;
	unsigned flags = 0;
	const char *what = NULL;

	if (t->tempfail) {
		snprintf(reason, size, "%s", t->tempfail_reason);
		return SCAN_TEMPFAIL;
	}
	for (size_t i = 0; i < t->nsyms; i++) {
		unsigned f = scan_sym_defs[t->order[i]].flags;

		flags |= f;
		if ((f & (SCAN_SF_MALWARE | SCAN_SF_QUARANTINE)) && what == NULL)
			what = scan_sym_defs[t->order[i]].name;
	}
	if (flags & SCAN_SF_MALWARE) {
		snprintf(reason, size, "malware found");
		return strcmp(t->cfg->scan_malware_action, "reject") == 0 ? SCAN_REJECT
		                                                          : SCAN_QUARANTINE;
	}
	if (flags & SCAN_SF_REJECT) {
		snprintf(reason, size, "sender is on a block list");
		return SCAN_REJECT;
	}
	if (flags & SCAN_SF_QUARANTINE) {
		snprintf(reason, size, "%s", what);
		return SCAN_QUARANTINE;
	}
	if (flags & SCAN_SF_DELIVER) {
		snprintf(reason, size, "sender is on an allow list");
		return SCAN_DELIVER;
	}
	/* the strictest thresholds among the recipients' domains */
	for (size_t r = 0; r < t->in->nrcpts || r == 0; r++) {
		const char *rd = r < t->in->nrcpts ? scan_addr_domain(t->in->rcpts[r]) : NULL;

		if (t->pol)
			policy_scan_thresholds(t->pol, rd, &dq, &dr);
		else {
			dq = t->cfg->scan_quarantine_score;
			dr = t->cfg->scan_reject_score;
		}
		q = fmin(q, dq);
		rj = fmin(rj, dr);
	}
	if (score >= rj) {
		snprintf(reason, size, "spam score %.2f reaches %.2f", score, rj);
		return SCAN_REJECT;
	}
	if (score >= q) {
		snprintf(reason, size, "spam score %.2f reaches %.2f", score, q);
		return SCAN_QUARANTINE;
	}
	snprintf(reason, size, "score %.2f", score);
	return SCAN_DELIVER;
}

/* --- the header section --- */

struct scan_buf {
	char *p;
	size_t len, cap;
};

static void
scan_buf_add(struct scan_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void scan_buf_printf(struct scan_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void
scan_buf_printf(struct scan_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		scan_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A value from the message or DNS made safe for a header: domain-ish characters only. */
static const char *
scan_safe(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	for (; s && *s && o + 1 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-' || c == '_' || c == '+' || c == '/' || c == '=')
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return o ? buf : "unknown";
}

/* RFC 8601 Authentication-Results, one method per folded line. */
static void
scan_add_authres(struct scan_buf *b, const struct scan_task *t)
{
	char s1[DNS_NAME_MAX + 1], s2[DNS_NAME_MAX + 1], s3[64];

	scan_buf_printf(b, "Authentication-Results: %s",
	                scan_safe(scan_authserv_id(t->cfg), s1, sizeof(s1)));
	if (t->relayed)
		scan_buf_printf(b, " (relayed; client %s)",
		                scan_safe(t->client_ip, s1, sizeof(s1)));
	scan_buf_printf(b, ";\r\n\tspf=%s", scan_auth_str(t->spf.result));
	if (t->spf.domain[0])
		scan_buf_printf(b, " %s=%s", t->spf.helo ? "smtp.helo" : "smtp.mailfrom",
		                scan_safe(t->spf.domain, s1, sizeof(s1)));
	if (t->ndkim == 0)
		scan_buf_printf(b, ";\r\n\tdkim=none");
	for (size_t i = 0; i < t->ndkim; i++)
		scan_buf_printf(b, ";\r\n\tdkim=%s header.d=%s header.s=%s header.b=%s",
		                scan_auth_str(t->dkim[i].result),
		                scan_safe(t->dkim[i].domain, s1, sizeof(s1)),
		                scan_safe(t->dkim[i].selector, s2, sizeof(s2)),
		                scan_safe(t->dkim[i].b, s3, sizeof(s3)));
	scan_buf_printf(b, ";\r\n\tdmarc=%s", scan_auth_str(t->dmarc.result));
	if (t->dmarc.policy[0])
		scan_buf_printf(b, " (p=%s)", scan_safe(t->dmarc.policy, s2, sizeof(s2)));
	if (t->dmarc.domain[0])
		scan_buf_printf(b, " header.from=%s", scan_safe(t->dmarc.domain, s1, sizeof(s1)));
	scan_buf_printf(b, ";\r\n\tarc=%s", scan_auth_str(t->arc.result));
	if (t->arc.instances)
		scan_buf_printf(b, " (i=%u)", t->arc.instances);
	scan_buf_add(b, "\r\n", 2);
}

/* X-Moat-Verdict: symbol names only (details carry attacker text), folded. */
static void
scan_add_verdict(struct scan_buf *b, const struct scan_task *t, const struct scan_result *r)
{
	size_t col;

	scan_buf_printf(b, "X-Moat-Verdict: %s; score=%.2f; id=%s;\r\n\tsymbols=",
	                scan_verdict_str(r->verdict), r->score,
	                t->in->queue_id ? t->in->queue_id : "-");
	col = 9;
	for (size_t i = 0; i < t->nsyms; i++) {
		const char *n = scan_sym_defs[t->order[i]].name;
		size_t len = strlen(n);

		if (i > 0) {
			if (col + len > 76) {
				scan_buf_add(b, ",\r\n\t", 4);
				col = 1;
			} else {
				scan_buf_add(b, ",", 1);
				col++;
			}
		}
		scan_buf_add(b, n, len);
		col += len;
	}
	if (t->nsyms == 0)
		scan_buf_add(b, "none", 4);
	scan_buf_add(b, "\r\n", 2);
}

void
scan_relay_key(const struct scan_env *env, const struct policy *pol, const char *domain, char *out,
               size_t size)
{
	const char *k = pol ? policy_relay_key(pol, domain) : NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char msg[DNS_NAME_MAX + 32];
	int n;

	if (k) {
		str_copy(out, k, size);
		return;
	}
	n = snprintf(msg, sizeof(msg), "moat-relay-key:%s", domain);
	HMAC(EVP_sha256(), env->relay_secret, sizeof(env->relay_secret), (unsigned char *)msg,
	     (size_t)n, mac, &maclen);
	for (size_t i = 0; i < 16 && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* One relay-key field per protected recipient domain (PRODUCT.md: the bypass rule). */
static void
scan_add_relay_keys(struct scan_buf *b, const struct scan_task *t)
{
	const char *seen[SCAN_RELAY_KEYS_MAX];
	size_t nseen = 0;
	char key[160];

	if (t->pol == NULL || t->cfg->relay_key_header[0] == '\0')
		return;
	for (size_t r = 0; r < t->in->nrcpts && nseen < SCAN_RELAY_KEYS_MAX; r++) {
		const char *d = scan_addr_domain(t->in->rcpts[r]);
		bool dup = false;

		if (d == NULL || !policy_is_protected(t->pol, d))
			continue;
		for (size_t i = 0; i < nseen; i++)
			dup |= strcmp(seen[i], d) == 0;
		if (dup)
			continue;
		seen[nseen++] = d;
		scan_relay_key(t->env, t->pol, d, key, sizeof(key));
		scan_buf_printf(b, "%s: %s\r\n", t->cfg->relay_key_header, key);
	}
}

/*
 * moat's fields on top; when incoming fields are stripped, the whole
 * original header section follows without them and head_skip covers it.
 */
static void
scan_build_head(const struct scan_task *t, struct scan_result *r)
{
	struct scan_buf b = {0};
	bool strip = false;

	if (!t->in->release)
		scan_add_authres(&b, t);
	scan_add_verdict(&b, t, r);
	if (r->verdict == SCAN_DELIVER || t->in->release)
		scan_add_relay_keys(&b, t);
	for (size_t i = 0; i < t->hdrs.n && !strip; i++)
		strip = scan_hdr_strip(t, &t->hdrs.h[i]);
	if (strip) {
		for (size_t i = 0; i < t->hdrs.n; i++) {
			const struct scan_hdr *h = &t->hdrs.h[i];

			if (!scan_hdr_strip(t, h))
				scan_buf_add(&b, (const char *)t->in->msg + h->offset, h->len);
		}
		r->head_skip = t->hdrs.h[t->hdrs.n - 1].offset + t->hdrs.h[t->hdrs.n - 1].len;
	}
	r->head = b.p;
	r->head_len = b.len;
}

void
scan_result_symbols(const struct scan_result *r, char *buf, size_t size)
{
	size_t o = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < r->nsyms; i++) {
		const struct scan_symbol *s = &r->syms[i];
		int n = snprintf(buf + o, size - o, "%s%s(%.2f)%s%s%s", i ? "," : "",
		                 scan_sym_defs[s->id].name, s->score, s->detail ? "[" : "",
		                 s->detail ? s->detail : "", s->detail ? "]" : "");

		if (n < 0 || (size_t)n >= size - o) {
			if (size > 4)
				memcpy(buf + size - 4, "...", 4);
			return;
		}
		o += (size_t)n;
	}
}

static void
scan_task_free(struct scan_task *t)
{
	scan_mime_free(&t->msg);
	scan_hdrs_free(&t->hdrs);
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		free(t->detail[i]);
	free(t);
}

void
scan_run(const struct scan_env *env, const struct config *cfg, const struct policy *pol,
         const struct scan_input *in, struct scan_result *out)
{
	struct scan_task *t = xcalloc(1, sizeof(*t));
	double score = 0;
	char syms[512];

	memset(out, 0, sizeof(*out));
	t->env = env;
	t->cfg = cfg;
	t->pol = pol;
	t->in = in;
	t->deadline_ms = in->deadline_ms;

	scan_hdrs_split(in->msg, in->len, &t->hdrs);
	scan_check_origin(t);
	scan_mime_parse(t);
	if (in->release) {
		scan_sym(t, SYM_MOAT_RELEASED, NULL);
	} else {
		scan_url_extract(t);
		scan_check_spf(t);
		scan_check_dkim(t);
		scan_check_arc(t);
		scan_check_dmarc(t);
		scan_check_dnsbl(t);
		scan_check_attachments(t);
		scan_check_phish(t);
		scan_check_gtube(t);
		scan_check_rspamd(t);
	}
	scan_check_clamd(t);
	if (!in->release)
		scan_check_lists(t);
	if (in->deadline_ms > 0 && scan_remaining_ms(t) == 0)
		scan_tempfail(t, "scan deadline passed");

	out->syms = xcalloc(t->nsyms ? t->nsyms : 1, sizeof(*out->syms));
	for (size_t i = 0; i < t->nsyms; i++) {
		enum scan_sym_id id = t->order[i];
		struct scan_symbol *s = &out->syms[out->nsyms++];

		s->id = id;
		s->score = scan_sym_total(t, id);
		s->detail = t->detail[id];
		t->detail[id] = NULL;
		score += s->score;
	}
	out->score = score;
	out->verdict = scan_decide(t, score, out->reason, sizeof(out->reason));
	if (out->verdict != SCAN_TEMPFAIL && out->verdict != SCAN_REJECT)
		scan_build_head(t, out);
	scan_result_symbols(out, syms, sizeof(syms));
	out->summary = xasprintf("verdict=%s score=%.2f symbols=%s", scan_verdict_str(out->verdict),
	                         out->score, syms);
	scan_task_free(t);
}

void
scan_result_free(struct scan_result *r)
{
	for (size_t i = 0; i < r->nsyms; i++)
		free(r->syms[i].detail);
	free(r->syms);
	free(r->head);
	free(r->summary);
	memset(r, 0, sizeof(*r));
}
