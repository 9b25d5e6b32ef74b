/*
 * policy_internal.h - what policy.c and policy_store.c share.
 */
#ifndef MOAT_POLICY_INTERNAL_H
#define MOAT_POLICY_INTERNAL_H

#include "policy.h"

struct policy_domain {
	char *name;
	bool any_recipient;
	char **recipients; /* sorted, lower-case local parts */
	size_t nrecipients;
	struct route route;
	double quarantine_score, reject_score; /* NAN: the global ones */
	char *relay_key;
	char **allow, **block; /* lower-case addresses or @domains */
	size_t nallow, nblock;
	bool stored; /* added through the API (the store), not the config file */
};

struct policy {
	int refs;
	struct route default_route;
	double quarantine_score, reject_score;
	char **allow, **block; /* global lists */
	size_t nallow, nblock;
	struct policy_domain *domains; /* sorted by name */
	size_t ndomains;
	struct rule **rules; /* enabled only, sorted by priority */
	size_t nrules;
};

/* "a@b.example, @c.example" into lower-case entries; bad entries are skipped. */
void policy_list_parse(const char *v, char ***out, size_t *n);
void policy_list_free(char **l, size_t n);
int policy_cmp_domain(const void *a, const void *b);
/* d from a config file's (or a stored) [domain] section; lists: its *_senders too. */
void policy_domain_set(struct policy_domain *d, const struct config_domain *cd, bool lists);
/* Domains, routes and thresholds of c, no rules; lists: c's allow/block lists too. */
struct policy *policy_new_base(const struct config *c, bool lists);

#endif
