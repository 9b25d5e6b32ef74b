/*
 * policy.c - protected domains, recipient policy and administrator rules
 * built from the configuration file's [domain] and [rule] sections (see
 * policy.h). Rules are built from their text with rule_new(), as the store
 * will build them from its rows.
 */
#include "policy_internal.h"
#include "../common/log.h"
#include "../common/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
policy_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
policy_cmp_domain(const void *a, const void *b)
{
	return strcmp(((const struct policy_domain *)a)->name,
	              ((const struct policy_domain *)b)->name);
}

/* "a@b.example, @c.example" into lower-case entries; bad entries are skipped. */
void
policy_list_parse(const char *v, char ***out, size_t *n)
{
	const char *p = v ? v : "";

	*out = NULL;
	*n = 0;
	while (*p) {
		size_t len;
		char *e;

		p += strspn(p, " \t,");
		len = strcspn(p, " \t,");
		if (len == 0)
			break;
		if (len <= MAILADDR_PATH_MAX && memchr(p, '@', len)) {
			e = xstrndup(p, len);
			str_lower(e);
			*out = xrealloc(*out, (*n + 1) * sizeof(char *));
			(*out)[(*n)++] = e;
		}
		p += len;
	}
}

void
policy_list_free(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

/* The config's [rule] sections, validated at load: a rule that fails here is a bug. */
static void
policy_rules_from_config(struct policy *p, const struct config *c)
{
	p->rules = xcalloc(c->nrules ? c->nrules : 1, sizeof(*p->rules));
	for (size_t i = 0; i < c->nrules; i++) {
		const struct config_rule *cr = &c->rules[i];
		struct rule *r;
		char err[512];

		if ((r = config_rule_build(cr, err, sizeof(err))) == NULL)
			fatalx("rule %s: %s", cr->name, err);
		if (!r->enabled) {
			rule_free(r);
			continue;
		}
		p->rules[p->nrules++] = r;
	}
	qsort(p->rules, p->nrules, sizeof(*p->rules), rule_cmp_priority);
}

void
policy_domain_set(struct policy_domain *d, const struct config_domain *cd, bool lists)
{
	d->name = xstrdup(cd->name);
	d->any_recipient = cd->any_recipient;
	d->nrecipients = cd->nrecipients;
	d->recipients = xcalloc(cd->nrecipients ? cd->nrecipients : 1, sizeof(char *));
	for (size_t j = 0; j < cd->nrecipients; j++) {
		d->recipients[j] = xstrdup(cd->recipients[j]);
		str_lower(d->recipients[j]);
	}
	qsort(d->recipients, d->nrecipients, sizeof(char *), policy_cmp_str);
	d->route = cd->route;
	d->quarantine_score = cd->quarantine_score;
	d->reject_score = cd->reject_score;
	d->relay_key = cd->relay_key ? xstrdup(cd->relay_key) : NULL;
	if (lists) {
		policy_list_parse(cd->allow_senders, &d->allow, &d->nallow);
		policy_list_parse(cd->block_senders, &d->block, &d->nblock);
	}
}

struct policy *
policy_new_base(const struct config *c, bool lists)
{
	struct policy *p = xcalloc(1, sizeof(*p));

	p->refs = 1;
	p->ndomains = c->ndomains;
	p->domains = xcalloc(c->ndomains ? c->ndomains : 1, sizeof(*p->domains));
	for (size_t i = 0; i < c->ndomains; i++)
		policy_domain_set(&p->domains[i], &c->domains[i], lists);
	p->quarantine_score = c->scan_quarantine_score;
	p->reject_score = c->scan_reject_score;
	if (lists) {
		policy_list_parse(c->scan_allow_senders, &p->allow, &p->nallow);
		policy_list_parse(c->scan_block_senders, &p->block, &p->nblock);
	}
	qsort(p->domains, p->ndomains, sizeof(*p->domains), policy_cmp_domain);
	p->default_route = c->default_route;
	return p;
}

struct policy *
policy_from_config(const struct config *c)
{
	struct policy *p = policy_new_base(c, true);

	policy_rules_from_config(p, c);
	return p;
}

struct policy *
policy_ref(struct policy *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void
policy_unref(struct policy *p)
{
	if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < p->ndomains; i++) {
		for (size_t j = 0; j < p->domains[i].nrecipients; j++)
			free(p->domains[i].recipients[j]);
		free(p->domains[i].recipients);
		free(p->domains[i].name);
		free(p->domains[i].relay_key);
		policy_list_free(p->domains[i].allow, p->domains[i].nallow);
		policy_list_free(p->domains[i].block, p->domains[i].nblock);
	}
	free(p->domains);
	policy_list_free(p->allow, p->nallow);
	policy_list_free(p->block, p->nblock);
	for (size_t i = 0; i < p->nrules; i++)
		rule_free(p->rules[i]);
	free(p->rules);
	free(p);
}

static const struct policy_domain *
policy_find_domain(const struct policy *p, const char *domain)
{
	struct policy_domain key = {.name = (char *)(uintptr_t)domain};

	return bsearch(&key, p->domains, p->ndomains, sizeof(*p->domains), policy_cmp_domain);
}

enum policy_rcpt
policy_check_rcpt(const struct policy *p, const struct mailaddr *rcpt)
{
	const struct policy_domain *d;
	char local[MAILADDR_LOCAL_MAX + 1];
	const char *key = local;

	if (rcpt->is_null || rcpt->literal)
		return POLICY_RCPT_RELAY_DENIED;
	if ((d = policy_find_domain(p, rcpt->domain)) == NULL)
		return POLICY_RCPT_RELAY_DENIED;
	if (d->any_recipient)
		return POLICY_RCPT_OK;
	str_copy(local, rcpt->local, sizeof(local));
	str_lower(local);
	if (bsearch(&key, d->recipients, d->nrecipients, sizeof(char *), policy_cmp_str))
		return POLICY_RCPT_OK;
	return POLICY_RCPT_UNKNOWN_USER;
}

const struct route *
policy_route_for(const struct policy *p, const char *domain)
{
	const struct policy_domain *d = policy_find_domain(p, domain);

	return d ? &d->route : &p->default_route;
}

size_t
policy_domain_count(const struct policy *p)
{
	return p->ndomains;
}

bool
policy_is_protected(const struct policy *p, const char *domain)
{
	return policy_find_domain(p, domain) != NULL;
}

bool
policy_domain_stored(const struct policy *p, size_t i)
{
	return p->domains[i].stored;
}

const char *
policy_domain_name(const struct policy *p, size_t i)
{
	return i < p->ndomains ? p->domains[i].name : NULL;
}

const char *const *
policy_domain_recipients(const struct policy *p, size_t i, size_t *n)
{
	*n = 0;
	if (i >= p->ndomains || p->domains[i].any_recipient)
		return NULL;
	*n = p->domains[i].nrecipients;
	return (const char *const *)p->domains[i].recipients;
}

void
policy_scan_thresholds(const struct policy *p, const char *domain, double *quarantine,
                       double *reject)
{
	const struct policy_domain *d = domain ? policy_find_domain(p, domain) : NULL;

	*quarantine = d && !isnan(d->quarantine_score) ? d->quarantine_score : p->quarantine_score;
	*reject = d && !isnan(d->reject_score) ? d->reject_score : p->reject_score;
}

/* Does entry (address or @domain) match sender (lower case)? @domain covers subdomains. */
static bool
policy_list_match(char *const *l, size_t n, const char *sender, const char *domain)
{
	size_t dlen = strlen(domain);

	for (size_t i = 0; i < n; i++) {
		const char *e = l[i];

		if (e[0] != '@') {
			if (strcmp(e, sender) == 0)
				return true;
			continue;
		}
		e++;
		size_t elen = strlen(e);
		if (strcmp(e, domain) == 0 || (dlen > elen && domain[dlen - elen - 1] == '.' &&
		                               strcmp(domain + dlen - elen, e) == 0))
			return true;
	}
	return false;
}

enum policy_list
policy_sender_list(const struct policy *p, const char *rcpt_domain, const char *sender)
{
	const struct policy_domain *d = rcpt_domain ? policy_find_domain(p, rcpt_domain) : NULL;
	char s[MAILADDR_PATH_MAX + 1];
	const char *at;

	if (sender == NULL || sender[0] == '\0' || str_copy(s, sender, sizeof(s)) >= sizeof(s))
		return POLICY_LIST_NONE;
	str_lower(s);
	if ((at = strrchr(s, '@')) == NULL)
		return POLICY_LIST_NONE;
	if (policy_list_match(p->block, p->nblock, s, at + 1) ||
	    (d && policy_list_match(d->block, d->nblock, s, at + 1)))
		return POLICY_LIST_BLOCK;
	if (policy_list_match(p->allow, p->nallow, s, at + 1) ||
	    (d && policy_list_match(d->allow, d->nallow, s, at + 1)))
		return POLICY_LIST_ALLOW;
	return POLICY_LIST_NONE;
}

const char *
policy_relay_key(const struct policy *p, const char *domain)
{
	const struct policy_domain *d = policy_find_domain(p, domain);

	return d ? d->relay_key : NULL;
}

const struct rule *const *
policy_rules(const struct policy *p, size_t *n)
{
	*n = p->nrules;
	return (const struct rule *const *)p->rules;
}
