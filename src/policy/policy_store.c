/*
 * policy_store.c - the administrator rules and allow/block lists kept in
 * the store (policy.h: policy_from_store, policy_seed). Apart from
 * policy.c so that what only reads the config (the fuzz targets) does not
 * need the store.
 */
#include "policy_internal.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- rules and lists kept in the store --- */

/* The protected domain of a list's scope, any case (the domains are sorted). */
static struct policy_domain *
policy_scope_domain(struct policy *p, const char *scope)
{
	char name[STORE_DOMAIN_MAX + 1];
	struct policy_domain key = {.name = name};

	if (str_copy(name, scope, sizeof(name)) >= sizeof(name))
		return NULL;
	str_lower(name);
	return bsearch(&key, p->domains, p->ndomains, sizeof(*p->domains), policy_cmp_domain);
}

static void
policy_list_push(char ***l, size_t *n, const char *pattern)
{
	char *e = xstrdup(pattern);

	str_lower(e);
	*l = xrealloc(*l, (*n + 1) * sizeof(char *));
	(*l)[(*n)++] = e;
}

static int
policy_load_list(void *arg, const struct store_list_entry *e)
{
	struct policy *p = arg;
	struct policy_domain *d = NULL;

	if (e->scope[0] != '\0' && (d = policy_scope_domain(p, e->scope)) == NULL)
		return 0; /* a domain no longer protected: its entries wait */
	if (e->kind == STORE_LIST_ALLOW)
		policy_list_push(d ? &d->allow : &p->allow, d ? &d->nallow : &p->nallow,
		                 e->pattern);
	else
		policy_list_push(d ? &d->block : &p->block, d ? &d->nblock : &p->nblock,
		                 e->pattern);
	return 0;
}

struct policy_rule_load {
	struct policy *p;
	const struct config *c;
	size_t cap;
};

static int
policy_load_rule(void *arg, const struct rule_spec *spec)
{
	struct policy_rule_load *l = arg;
	struct rule *r;
	char err[512];

	if (!spec->enabled)
		return 0;
	if ((r = rule_new(spec, err, sizeof(err))) == NULL) {
		log_error("event=policy rule=\"%s\" status=skipped reason=\"%s\"", spec->name, err);
		return 0;
	}
	if (l->p->nrules == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->p->rules = xrealloc(l->p->rules, l->cap * sizeof(*l->p->rules));
	}
	l->p->rules[l->p->nrules++] = r;
	return 0;
}

struct policy_domain_load {
	struct policy *p;
	const struct config *c;
	bool strict;
	char err[1024]; /* the first stored domain that failed, strict */
};

/* A stored domain the config file does not declare (the file wins). */
static int
policy_load_domain(void *arg, const struct store_domain *sd)
{
	struct policy_domain_load *l = arg;
	struct config_domain cd;
	char err[512];

	for (size_t i = 0; i < l->c->ndomains; i++)
		if (str_ieq(l->c->domains[i].name, sd->name))
			return 0;
	if (config_domain_parse(l->c, sd->name, sd->body, &cd, err, sizeof(err)) < 0) {
		if (l->strict) {
			snprintf(l->err, sizeof(l->err),
			         "domain %.255s (added through the API) no longer passes: %.400s; "
			         "change it "
			         "with PUT /api/v1/domains/%.255s or delete it",
			         sd->name, err, sd->name);
			return 1;
		}
		log_error("event=policy domain=%s status=not_protected reason=\"%s\" "
		          "action=\"fix it through the API (PUT or DELETE /api/v1/domains/%s)\"",
		          sd->name, err, sd->name);
		return 0;
	}
	l->p->domains = xrealloc(l->p->domains, (l->p->ndomains + 1) * sizeof(*l->p->domains));
	memset(&l->p->domains[l->p->ndomains], 0, sizeof(*l->p->domains));
	policy_domain_set(&l->p->domains[l->p->ndomains], &cd, false);
	l->p->domains[l->p->ndomains++].stored = true;
	config_domain_clear(&cd);
	return 0;
}

struct policy *
policy_from_store(const struct config *c, struct store *s, unsigned flags, char *err,
                  size_t errsize)
{
	/* the store's rules and lists take the place of the file's (policy_seed) */
	struct policy *p = policy_new_base(c, false);
	struct policy_rule_load rl = {.p = p, .c = c};
	struct policy_domain_load dl = {.p = p, .c = c, .strict = flags & POLICY_STRICT};

	/* protected domains added through the API join the file's */
	if (store_domain_load(s, policy_load_domain, &dl) != STORE_OK) {
		snprintf(err, errsize, "cannot read domains from the store: %s", store_errmsg(s));
		policy_unref(p);
		return NULL;
	}
	if (dl.err[0]) {
		snprintf(err, errsize, "%s", dl.err);
		policy_unref(p);
		return NULL;
	}
	qsort(p->domains, p->ndomains, sizeof(*p->domains), policy_cmp_domain);

	if (store_list_load(s, NULL, policy_load_list, p) != STORE_OK ||
	    store_rule_load(s, policy_load_rule, &rl) != STORE_OK) {
		snprintf(err, errsize, "cannot read rules and lists from the store: %s",
		         store_errmsg(s));
		policy_unref(p);
		return NULL;
	}
	if (p->rules == NULL)
		p->rules = xcalloc(1, sizeof(*p->rules));
	qsort(p->rules, p->nrules, sizeof(*p->rules), rule_cmp_priority);
	return p;
}

static int
policy_seed_list(struct store *s, const char *scope, enum store_list_kind kind, const char *v)
{
	char **l;
	size_t n;
	int rc = 0;

	policy_list_parse(v, &l, &n);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct store_list_entry e = {
		        .scope = scope, .kind = kind, .pattern = l[i], .created_ms = wall_ms()};
		enum store_status st = store_list_add(s, &e);

		if (st != STORE_OK && st != STORE_ALREADY)
			rc = -1;
	}
	policy_list_free(l, n);
	return rc;
}

int
policy_seed(const struct config *c, struct store *s, char *err, size_t errsize)
{
	char when[64];
	bool declares = c->nrules > 0 || c->scan_allow_senders[0] || c->scan_block_senders[0];
	int rc = 0;

	for (size_t i = 0; i < c->ndomains; i++)
		if ((c->domains[i].allow_senders && c->domains[i].allow_senders[0]) ||
		    (c->domains[i].block_senders && c->domains[i].block_senders[0]))
			declares = true;
	switch (store_setting_get(s, "policy.seeded", when, sizeof(when))) {
	case STORE_OK:
		if (declares)
			log_info("event=policy_seed status=skipped reason=\"the store holds the "
			         "rules "
			         "and allow/block lists since %s; the file's [rule] sections and "
			         "*_senders lists are not read again: change them with moatctl or "
			         "the admin API\"",
			         when);
		return 0;
	case STORE_NOT_FOUND:
		break;
	default:
		snprintf(err, errsize, "store: %s", store_errmsg(s));
		return -1;
	}
	if (store_batch_begin(s) != STORE_OK) {
		snprintf(err, errsize, "store: %s", store_errmsg(s));
		return -1;
	}
	for (size_t i = 0; i < c->nrules && rc == 0; i++) {
		struct rule_spec spec;

		config_rule_spec(&c->rules[i], &spec);
		if (store_rule_put(s, &spec) != STORE_OK)
			rc = -1;
		config_rule_spec_free(&spec);
	}
	if (rc == 0)
		rc = policy_seed_list(s, "", STORE_LIST_ALLOW, c->scan_allow_senders);
	if (rc == 0)
		rc = policy_seed_list(s, "", STORE_LIST_BLOCK, c->scan_block_senders);
	for (size_t i = 0; i < c->ndomains && rc == 0; i++) {
		rc = policy_seed_list(s, c->domains[i].name, STORE_LIST_ALLOW,
		                      c->domains[i].allow_senders);
		if (rc == 0)
			rc = policy_seed_list(s, c->domains[i].name, STORE_LIST_BLOCK,
			                      c->domains[i].block_senders);
	}
	{
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (rc == 0 && store_setting_set(s, "policy.seeded", when) != STORE_OK)
		rc = -1;
	if (rc < 0 || store_batch_commit(s) != STORE_OK) {
		snprintf(err, errsize, "seeding the store's rules and lists: %s", store_errmsg(s));
		store_batch_rollback(s);
		return -1;
	}
	log_info("event=policy_seed status=ok rules=%zu", c->nrules);
	return 0;
}
