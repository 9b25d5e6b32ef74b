/*
 * policy.c - protected domains and recipient policy built from the
 * configuration file's [domain] sections (see policy.h).
 */
#include "policy.h"
#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

struct policy_domain {
	char *name;
	bool any_recipient;
	char **recipients; /* sorted, lower-case local parts */
	size_t nrecipients;
	struct route route;
};

struct policy {
	int refs;
	struct route default_route;
	struct policy_domain *domains; /* sorted by name */
	size_t ndomains;
};

static int
policy_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
policy_cmp_domain(const void *a, const void *b)
{
	return strcmp(((const struct policy_domain *)a)->name,
	              ((const struct policy_domain *)b)->name);
}

struct policy *
policy_from_config(const struct config *c)
{
	struct policy *p = xcalloc(1, sizeof(*p));

	p->refs = 1;
	p->ndomains = c->ndomains;
	p->domains = xcalloc(c->ndomains, sizeof(*p->domains));
	for (size_t i = 0; i < c->ndomains; i++) {
		const struct config_domain *cd = &c->domains[i];
		struct policy_domain *d = &p->domains[i];

		d->name = xstrdup(cd->name);
		d->any_recipient = cd->any_recipient;
		d->nrecipients = cd->nrecipients;
		d->recipients = xcalloc(cd->nrecipients, sizeof(char *));
		for (size_t j = 0; j < cd->nrecipients; j++) {
			d->recipients[j] = xstrdup(cd->recipients[j]);
			str_lower(d->recipients[j]);
		}
		qsort(d->recipients, d->nrecipients, sizeof(char *), policy_cmp_str);
		d->route = cd->route;
	}
	qsort(p->domains, p->ndomains, sizeof(*p->domains), policy_cmp_domain);
	p->default_route = c->default_route;
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
	}
	free(p->domains);
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
