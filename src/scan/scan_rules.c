/*
 * scan_rules.c - administrator rules in the scan pipeline: two passes over
 * the policy's enabled rules (policy_rules(), lowest priority first).
 *
 * Before the checks (after the MIME parse), only rules whose conditions
 * are all known by then (sender-ip, sender, recipient, header, attachment)
 * are evaluated, and only for their skip actions: a skipped check is never
 * run (MOAT_RULE_SKIP says so in the log). A matching rule with stop ends
 * the pass; so does any stopping rule that needs the checks' results, since
 * it might match: a skip never applies past a rule that could have stopped
 * it.
 *
 * After the checks and the lists, every rule is evaluated in order: the
 * conditions see the symbols and score so far, and the verdict the checks
 * alone give (asked of scan_decide() once, before any rule acts). Outcome
 * actions are symbols whose flags scan_decide() honours with a fixed
 * precedence (docs/SCAN.md "The verdict"), so that no rule can deliver
 * malware or an ambiguous MIME structure; header actions are recorded for
 * scan_build_head().
 */
#include "scan_internal.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/cidr.h"
#include "../common/util.h"

/* Scratch space for one pass: unfolded header values. */
struct rules_ctx {
	char *buf;
	size_t cap;
};

/* Does addr (any case) match an item: an address, or @domain and its subdomains? */
static bool
rules_addr_match(char *const *items, size_t n, const char *addr)
{
	char a[MAILADDR_PATH_MAX + 1];
	const char *at, *dom;
	size_t dlen;

	if (addr == NULL || addr[0] == '\0' || str_copy(a, addr, sizeof(a)) >= sizeof(a))
		return false;
	str_lower(a);
	if ((at = strrchr(a, '@')) == NULL)
		return false;
	dom = at + 1;
	dlen = strlen(dom);
	for (size_t i = 0; i < n; i++) {
		const char *e = items[i];
		size_t elen;

		if (e[0] != '@') {
			if (strcmp(e, a) == 0)
				return true;
			continue;
		}
		e++;
		elen = strlen(e);
		if (strcmp(e, dom) == 0 || (dlen > elen && dom[dlen - elen - 1] == '.' &&
		                            strcmp(dom + dlen - elen, e) == 0))
			return true;
	}
	return false;
}

/* The envelope sender, or the From address when there is exactly one (as the lists do). */
static bool
rules_sender_match(const struct scan_task *t, const struct rule_cond *c)
{
	if (rules_addr_match(c->items, c->nitems, t->in->sender))
		return true;
	return t->msg.nfrom == 1 && rules_addr_match(c->items, c->nitems, t->msg.from[0].addr);
}

static bool
rules_rcpt_match(const struct scan_task *t, const struct rule_cond *c)
{
	for (size_t i = 0; i < t->in->nrcpts; i++)
		if (rules_addr_match(c->items, c->nitems, t->in->rcpts[i]))
			return true;
	return false;
}

/*
 * What a header condition's pattern is matched against: at most this
 * many octets of the field. glibc's regexec() is quadratic on some
 * patterns (a 250 KB Subject took 16 s with "invoice.*overdue"), and no
 * field a rule means is longer.
 */
#define RULES_HEADER_MATCH_MAX 4096

/* The value of h unfolded (CR and LF dropped, NUL as a blank), leading blanks skipped. */
static const char *
rules_unfold(struct rules_ctx *x, const struct scan_hdr *h)
{
	size_t o = 0, i = 0;

	if (x->cap < h->value_len + 1) {
		x->cap = h->value_len + 1;
		x->buf = xrealloc(x->buf, x->cap);
	}
	while (i < h->value_len && (h->value[i] == ' ' || h->value[i] == '\t'))
		i++;
	for (; i < h->value_len && o < RULES_HEADER_MATCH_MAX; i++) {
		char ch = h->value[i];

		if (ch == '\r' || ch == '\n')
			continue;
		x->buf[o++] = ch == '\0' ? ' ' : ch;
	}
	x->buf[o] = '\0';
	return x->buf;
}

static bool
rules_header_match(const struct scan_task *t, const struct rule_cond *c, struct rules_ctx *x)
{
	for (size_t i = 0; i < t->hdrs.n; i++) {
		const struct scan_hdr *h = &t->hdrs.h[i];

		if (scan_hdr_is(h, c->hdr_name) &&
		    regexec(c->re, rules_unfold(x, h), 0, NULL, 0) == 0)
			return true;
	}
	return false;
}

static bool
rules_attachment_match(const struct scan_task *t, const struct rule_cond *c)
{
	for (size_t i = 0; i < t->msg.nparts; i++) {
		const struct scan_part *p = &t->msg.parts[i];

		for (size_t j = 0; j < p->nnames; j++)
			for (size_t k = 0; k < c->nitems; k++)
				if (fnmatch(c->items[k], p->names[j], FNM_CASEFOLD) == 0)
					return true;
	}
	return false;
}

static bool
rules_verdict_is(enum scan_verdict v, enum rule_verdict want)
{
	switch (want) {
	case RULE_V_DELIVER:
		return v == SCAN_DELIVER;
	case RULE_V_QUARANTINE:
		return v == SCAN_QUARANTINE;
	case RULE_V_REJECT:
		return v == SCAN_REJECT;
	}
	return false;
}

static bool
rules_cond_match(const struct scan_task *t, const struct rule_cond *c, struct rules_ctx *x)
{
	switch (c->kind) {
	case RULE_C_SENDER_IP:
		return t->client_ip[0] && cidr_list_match(c->ips, t->client_ip);
	case RULE_C_SENDER:
		return rules_sender_match(t, c);
	case RULE_C_RECIPIENT:
		return rules_rcpt_match(t, c);
	case RULE_C_HEADER:
		return rules_header_match(t, c, x);
	case RULE_C_ATTACHMENT:
		return rules_attachment_match(t, c);
	case RULE_C_VERDICT:
		return rules_verdict_is(t->checks_verdict, c->verdict);
	case RULE_C_SCORE_GE:
		return scan_task_score(t) >= c->score;
	case RULE_C_SCORE_LT:
		return scan_task_score(t) < c->score;
	case RULE_C_SYMBOL:
		return c->symbol < SCAN_SYM_COUNT && scan_has(t, (enum scan_sym_id)c->symbol);
	}
	return false;
}

/* Every condition matches and no exception does. */
static bool
rules_match(const struct scan_task *t, const struct rule *r, struct rules_ctx *x)
{
	for (size_t i = 0; i < r->nconds; i++)
		if (!rules_cond_match(t, &r->conds[i], x))
			return false;
	for (size_t i = 0; i < r->nexcept; i++)
		if (rules_cond_match(t, &r->except[i], x))
			return false;
	return true;
}

void
scan_rules_before(struct scan_task *t)
{
	const struct rule *const *rules;
	struct rules_ctx x = {0};
	size_t n;

	if (t->pol == NULL)
		return;
	rules = policy_rules(t->pol, &n);
	for (size_t i = 0; i < n; i++) {
		const struct rule *r = rules[i];

		if (!r->early) {
			if (r->stop)
				break; /* it might match once the checks ran */
			continue;
		}
		if ((!r->skips && !r->stop) || !rules_match(t, r, &x))
			continue;
		for (size_t j = 0; j < r->nacts; j++) {
			const struct rule_action *a = &r->acts[j];

			if (a->kind != RULE_A_SKIP)
				continue;
			t->skip[a->check] = true;
			scan_sym(t, SYM_MOAT_RULE_SKIP, "%s: %s", r->name,
			         rule_check_name(a->check));
		}
		if (r->stop)
			break;
	}
	free(x.buf);
}

/* Record a set-header; a later rule setting the same field replaces it. */
static void
rules_set_header(struct scan_task *t, const struct rule_action *a)
{
	if (str_ieq(a->hdr_name, t->cfg->relay_key_header))
		return; /* moat's: the config refuses it, the store must too */
	for (size_t i = 0; i < t->nhdr_set; i++) {
		if (str_ieq(t->hdr_set[i]->hdr_name, a->hdr_name)) {
			t->hdr_set[i] = a;
			return;
		}
	}
	if (t->nhdr_set < SCAN_RULE_HDRS_MAX)
		t->hdr_set[t->nhdr_set++] = a;
}

static void
rules_remove_header(struct scan_task *t, const char *name)
{
	for (size_t i = 0; i < t->nhdr_remove; i++)
		if (str_ieq(t->hdr_remove[i], name))
			return;
	if (t->nhdr_remove < SCAN_RULE_HDRS_MAX)
		t->hdr_remove[t->nhdr_remove++] = name;
}

static void
rules_act(struct scan_task *t, const struct rule *r, const struct rule_action *a)
{
	switch (a->kind) {
	case RULE_A_SCORE:
		scan_sym_score(t, SYM_MOAT_RULE, a->score, "%s", r->name);
		break;
	case RULE_A_QUARANTINE:
		scan_sym(t, SYM_MOAT_RULE_QUARANTINE, "%s", r->name);
		break;
	case RULE_A_REJECT:
		scan_sym(t, SYM_MOAT_RULE_REJECT, "%s", r->name);
		break;
	case RULE_A_DELIVER:
		scan_sym(t, SYM_MOAT_RULE_DELIVER, "%s", r->name);
		break;
	case RULE_A_SET_HEADER:
		rules_set_header(t, a);
		break;
	case RULE_A_REMOVE_HEADER:
		rules_remove_header(t, a->hdr_name);
		break;
	case RULE_A_SKIP:
		break; /* done before the checks */
	}
}

void
scan_rules_after(struct scan_task *t)
{
	const struct rule *const *rules;
	struct rules_ctx x = {0};
	char reason[256];
	size_t n;

	if (t->pol == NULL || t->tempfail)
		return;
	rules = policy_rules(t->pol, &n);
	if (n == 0)
		return;
	t->checks_verdict = scan_decide(t, scan_task_score(t), reason, sizeof(reason));
	for (size_t i = 0; i < n; i++) {
		const struct rule *r = rules[i];

		if (!rules_match(t, r, &x))
			continue;
		for (size_t j = 0; j < r->nacts; j++)
			rules_act(t, r, &r->acts[j]);
		if (r->stop)
			break;
	}
	free(x.buf);
}

bool
scan_rules_strip(const struct scan_task *t, const struct scan_hdr *h)
{
	for (size_t i = 0; i < t->nhdr_remove; i++)
		if (scan_hdr_is(h, t->hdr_remove[i]))
			return true;
	for (size_t i = 0; i < t->nhdr_set; i++)
		if (scan_hdr_is(h, t->hdr_set[i]->hdr_name))
			return true;
	return false;
}
