/*
 * scan.c - the scan pipeline: the order of the checks, the verdict, and
 * the header fields moat puts on a message it passes.
 *
 * Stages, in order (each a function of struct scan_task, scan_internal.h):
 *   origin      relay mode, HELO, incoming fields claiming to be moat's
 *   mime        GMime model: parts, names, addresses; ambiguities
 *   rules       administrator rules that skip checks (scan_rules.c)
 *   urls        links of the text and HTML parts
 *   spf, dkim, arc, dmarc, dnsbl        sender authentication, blocklists
 *   attachments, phish, gtube, rspamd   content
 *   clamd       malware
 *   lists       allow and block lists of the recipients' domains
 *   rules       administrator rules: score, outcome, header fields
 * then the verdict (scan_decide) and the header section (scan_build_head).
 * A release from quarantine runs only mime, attachments-free malware
 * scanning (clamd): the administrator has judged the rest, rules included.
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

/*
 * moat's header section: its fields plus at most the original header
 * (4 MiB by SMTP); below the queue file's head record ceiling (8 MiB).
 */
#define SCAN_HEAD_MAX (6u << 20)

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

double
scan_task_score(const struct scan_task *t)
{
	double score = 0;

	for (size_t i = 0; i < t->nsyms; i++)
		score += scan_sym_total(t, t->order[i]);
	return score;
}

/*
 * The verdict; reason is a line safe to send (no attacker text, no rule
 * names). Precedence: tempfail, malware, reject (a rule's, then a block
 * list's), forced quarantine (a rule's or a check's), deliver (a rule's
 * or an allow list's), then the score.
 */
enum scan_verdict
scan_decide(const struct scan_task *t, double score, char *reason, size_t size)
{
	double q = INFINITY, rj = INFINITY, dq, dr;
	unsigned flags = 0;
	const char *what = NULL;

	if (t->tempfail) {
		snprintf(reason, size, "%s", t->tempfail_reason);
		return SCAN_TEMPFAIL;
	}
	if (t->in->release) {
		/* the administrator judged everything but malware */
		for (size_t i = 0; i < t->nsyms; i++)
			if (scan_sym_defs[t->order[i]].flags & SCAN_SF_MALWARE) {
				const char *d = t->detail[t->order[i]];

				snprintf(reason, size, "malware found: %s",
				         d ? d : scan_sym_defs[t->order[i]].name);
				return SCAN_QUARANTINE;
			}
		snprintf(reason, size, "released");
		return SCAN_DELIVER;
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
		snprintf(reason, size, "%s",
		         scan_has(t, SYM_MOAT_RULE_REJECT) ? "refused by an administrator rule"
		                                           : "sender is on a block list");
		return SCAN_REJECT;
	}
	if (flags & SCAN_SF_QUARANTINE) {
		snprintf(reason, size, "%s", what);
		return SCAN_QUARANTINE;
	}
	if (flags & SCAN_SF_DELIVER) {
		snprintf(reason, size, "%s",
		         scan_has(t, SYM_MOAT_RULE_DELIVER) ? "delivered by an administrator rule"
		                                            : "sender is on an allow list");
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

/*
 * A value from the message or DNS made safe for a header: letters,
 * digits and ".-_+/=:" only; quoted (RFC 8601 2.2: a value is a token or
 * a quoted-string) when it holds a character a token may not ("/=:").
 */
static const char *
scan_safe(const char *s, char *buf, size_t size)
{
	size_t o = 1;
	bool quote = false;

	for (; s && *s && o + 2 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-' || c == '_' || c == '+') {
			buf[o++] = (char)c;
		} else if (c == '/' || c == '=' || c == ':') {
			buf[o++] = (char)c;
			quote = true;
		}
	}
	if (o == 1)
		return "unknown";
	if (!quote) {
		buf[o] = '\0';
		return buf + 1;
	}
	buf[0] = '"';
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* RFC 8601 Authentication-Results, one method per folded line. */
static void
scan_add_authres(struct dynbuf *b, const struct scan_task *t)
{
	char s1[DNS_NAME_MAX + 3], s2[DNS_NAME_MAX + 3], s3[64];

	dynbuf_printf(b, "Authentication-Results: %s",
	              scan_safe(scan_authserv_id(t->cfg), s1, sizeof(s1)));
	if (t->relayed)
		dynbuf_printf(b, " (relayed; client %s)", scan_safe(t->client_ip, s1, sizeof(s1)));
	dynbuf_printf(b, ";\r\n\tspf=%s", scan_auth_str(t->spf.result));
	if (t->spf.domain[0])
		dynbuf_printf(b, " %s=%s", t->spf.helo ? "smtp.helo" : "smtp.mailfrom",
		              scan_safe(t->spf.domain, s1, sizeof(s1)));
	if (t->ndkim == 0)
		dynbuf_printf(b, ";\r\n\tdkim=none");
	for (size_t i = 0; i < t->ndkim; i++)
		dynbuf_printf(b, ";\r\n\tdkim=%s header.d=%s header.s=%s header.b=%s",
		              scan_auth_str(t->dkim[i].result),
		              scan_safe(t->dkim[i].domain, s1, sizeof(s1)),
		              scan_safe(t->dkim[i].selector, s2, sizeof(s2)),
		              scan_safe(t->dkim[i].b, s3, sizeof(s3)));
	dynbuf_printf(b, ";\r\n\tdmarc=%s", scan_auth_str(t->dmarc.result));
	if (t->dmarc.policy[0])
		dynbuf_printf(b, " (p=%s)", scan_safe(t->dmarc.policy, s2, sizeof(s2)));
	if (t->dmarc.domain[0])
		dynbuf_printf(b, " header.from=%s", scan_safe(t->dmarc.domain, s1, sizeof(s1)));
	dynbuf_printf(b, ";\r\n\tarc=%s", scan_auth_str(t->arc.result));
	if (t->arc.instances)
		dynbuf_printf(b, " (i=%u)", t->arc.instances);
	dynbuf_add(b, "\r\n", 2);
}

/* X-Moat-Verdict: symbol names only (details carry attacker text), folded. */
static void
scan_add_verdict(struct dynbuf *b, const struct scan_task *t, const struct scan_result *r)
{
	size_t col;

	dynbuf_printf(b, "X-Moat-Verdict: %s; score=%.2f; id=%s;\r\n\tsymbols=",
	              scan_verdict_str(r->verdict), r->score,
	              t->in->queue_id ? t->in->queue_id : "-");
	col = 9;
	for (size_t i = 0; i < t->nsyms; i++) {
		const char *n = scan_sym_defs[t->order[i]].name;
		size_t len = strlen(n);

		if (i > 0) {
			if (col + len > 76) {
				dynbuf_add(b, ",\r\n\t", 4);
				col = 1;
			} else {
				dynbuf_add(b, ",", 1);
				col++;
			}
		}
		dynbuf_add(b, n, len);
		col += len;
	}
	if (t->nsyms == 0)
		dynbuf_add(b, "none", 4);
	dynbuf_add(b, "\r\n", 2);
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

/*
 * moat's fields on top, then the fields rules set; when incoming fields
 * are stripped (moat's own, or by a rule), the whole original header
 * section follows without them and head_skip covers it.
 */
static void
scan_build_head(const struct scan_task *t, struct scan_result *r)
{
	struct dynbuf b;
	bool strip = false;
	int err = 0;

	dynbuf_init(&b, SCAN_HEAD_MAX);
	if (t->in->release) {
		char date[64];
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
		dynbuf_printf(&b, "X-Moat-Released: %s; %s%s\r\n",
		              t->in->queue_id ? t->in->queue_id : "-", date,
		              t->in->skip_malware ? "; rescan=no" : "");
	} else {
		scan_add_authres(&b, t);
	}
	scan_add_verdict(&b, t, r);
	for (size_t i = 0; i < t->nhdr_set; i++)
		err |= dynbuf_printf(&b, "%s: %s\r\n", t->hdr_set[i]->hdr_name,
		                     t->hdr_set[i]->hdr_value);
	/* the relay key is not here: delivery stamps it per transaction and tenant */
	for (size_t i = 0; i < t->hdrs.n && !strip; i++)
		strip = scan_hdr_strip(t, &t->hdrs.h[i]) || scan_rules_strip(t, &t->hdrs.h[i]);
	if (strip) {
		for (size_t i = 0; i < t->hdrs.n; i++) {
			const struct scan_hdr *h = &t->hdrs.h[i];

			if (!scan_hdr_strip(t, h) && !scan_rules_strip(t, h))
				err |= dynbuf_add(&b, (const char *)t->in->msg + h->offset, h->len);
		}
		r->head_skip = t->hdrs.h[t->hdrs.n - 1].offset + t->hdrs.h[t->hdrs.n - 1].len;
	}
	if (err) {
		/*
		 * Over the ceiling: only a file given to moatctl can get here (SMTP
		 * bounds the header section at smtp_max_header_size, 4 MiB at most).
		 */
		log_warn("event=scan_head_too_big id=%s", t->in->queue_id ? t->in->queue_id : "-");
		free(b.p);
		b.p = NULL;
		b.len = 0;
		r->head_skip = 0;
	}
	r->head = b.p;
	r->head_len = b.len;
}

/* A copy of s (attacker text) for the store: controls become blanks, at most 998 octets. */
static char *
scan_one_line(const char *s)
{
	size_t n = s ? strnlen(s, 998) : 0;
	char *o = xmalloc(n + 1);

	for (size_t i = 0; i < n; i++)
		o[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	o[n] = '\0';
	return o;
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

/* The checks between the MIME parse and clamd, in order; skip: a rule may skip it (or -1). */
static const struct {
	void (*run)(struct scan_task *t);
	int skip;
} scan_stages[] = {
        {scan_url_extract, -1},
        {scan_check_spf, RULE_CHECK_SPF},
        {scan_check_dkim, RULE_CHECK_DKIM},
        {scan_check_arc, RULE_CHECK_ARC},
        {scan_check_dmarc, RULE_CHECK_DMARC},
        {scan_check_dnsbl, RULE_CHECK_DNSBL},
        {scan_check_attachments, RULE_CHECK_ATTACHMENTS},
        {scan_check_phish, RULE_CHECK_PHISH},
        {scan_check_gtube, RULE_CHECK_GTUBE},
        {scan_check_rspamd, RULE_CHECK_RSPAMD},
};

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
		scan_rules_before(t);
		for (size_t i = 0; i < nitems(scan_stages); i++)
			if (scan_stages[i].skip < 0 || !t->skip[scan_stages[i].skip])
				scan_stages[i].run(t);
	}
	if (!(in->release && in->skip_malware))
		scan_check_clamd(t);
	if (!in->release)
		scan_check_lists(t);
	if (in->deadline_ms > 0 && scan_remaining_ms(t) == 0)
		scan_tempfail(t, "scan deadline passed");
	if (!in->release)
		scan_rules_after(t);

	out->syms = xcalloc(t->nsyms ? t->nsyms : 1, sizeof(*out->syms));
	for (size_t i = 0; i < t->nsyms; i++) {
		enum scan_sym_id id = t->order[i];
		struct scan_symbol *s = &out->syms[out->nsyms++];

		s->id = id;
		s->score = scan_sym_total(t, id);
		s->detail =
		        t->detail[id] ? xstrdup(t->detail[id]) : NULL; /* scan_decide reads it */
		score += s->score;
	}
	out->score = score;
	out->verdict = scan_decide(t, score, out->reason, sizeof(out->reason));
	if (out->verdict != SCAN_TEMPFAIL && out->verdict != SCAN_REJECT)
		scan_build_head(t, out);
	out->subject = scan_one_line(t->msg.subject);
	out->from =
	        scan_one_line(t->msg.nfrom > 0 && t->msg.from[0].addr ? t->msg.from[0].addr : NULL);
	out->message_id = scan_one_line(t->msg.message_id);
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
	free(r->subject);
	free(r->from);
	free(r->message_id);
	memset(r, 0, sizeof(*r));
}
