/*
 * config.c - load moatd's configuration file (see config.h).
 *
 * Grammar, one item per line (lines up to CONFIG_LINE_MAX octets):
 *   # comment                 (also after a value, when preceded by a space)
 *   key = value
 *   [domain example.test]     starts a protected-domain section
 *   [rule NAME]               starts an administrator rule (src/policy/rules.h)
 * Every error names file and line; moatd refuses to start on any.
 */
#include "config.h"
#include "cidr.h"
#include "mailaddr.h"
#include "util.h"
#include "../policy/rules.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_LINE_MAX 4096

enum config_type {
	CONFIG_T_STRING,
	CONFIG_T_PATH,
	CONFIG_T_BOOL,
	CONFIG_T_UINT,
	CONFIG_T_SIZE,
	CONFIG_T_DURATION,
	CONFIG_T_LISTEN,
	CONFIG_T_LOGLEVEL,
	CONFIG_T_LOGTARGET,
	CONFIG_T_SCORE,
};

static const char *const config_type_names[] = {
        [CONFIG_T_STRING] = "string",    [CONFIG_T_PATH] = "path",
        [CONFIG_T_BOOL] = "bool",        [CONFIG_T_UINT] = "integer",
        [CONFIG_T_SIZE] = "size",        [CONFIG_T_DURATION] = "duration",
        [CONFIG_T_LISTEN] = "addresses", [CONFIG_T_LOGLEVEL] = "level",
        [CONFIG_T_LOGTARGET] = "target", [CONFIG_T_SCORE] = "score",
};

struct config_option {
	const char *name;
	enum config_type type;
	const char *def;
	uint64_t min, max;
	const char *doc;
	size_t offset;
};

static const struct config_option config_options[] = {
#define CONFIG_ROW(n, t, d, lo, hi, doc)                                                           \
	{#n, CONFIG_T_##t, d, (uint64_t)(lo), (uint64_t)(hi), doc, offsetof(struct config, n)},
        CONFIG_OPTIONS(CONFIG_ROW)
#undef CONFIG_ROW
};

struct config_parser {
	const char *path;
	unsigned line;
	unsigned option_line[nitems(config_options)]; /* where each option was set */
	char *err;
	size_t errsize;
	struct config *c;
	struct config_domain *domain; /* current [domain] section, or NULL */
	struct config_rule *rule;     /* current [rule] section, or NULL */
};

__attribute__((format(printf, 2, 3))) static int
config_error(struct config_parser *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->line)
		snprintf(p->err, p->errsize, "%s:%u: %s", p->path, p->line, msg);
	else
		snprintf(p->err, p->errsize, "%s: %s", p->path, msg);
	return -1;
}

/* The next item of a list separated by commas and blanks, or NULL. */
static char *
config_next_item(char **cursor)
{
	char *p = *cursor, *item;

	while (*p == ',' || *p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return NULL;
	item = p;
	while (*p && *p != ',' && *p != ' ' && *p != '\t')
		p++;
	if (*p)
		*p++ = '\0';
	*cursor = p;
	return item;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* Absolute path for a value; relative ones are taken from the current directory. */
static char *
config_abspath(const char *v)
{
	char cwd[PATH_MAX];

	if (v[0] == '\0' || v[0] == '/')
		return xstrdup(v);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		fatal("getcwd");
	return xasprintf("%s/%s", cwd, v);
}

/* "127.0.0.1:25", "[::1]:25", "0.0.0.0:25", "[::]:25". */
static int
config_parse_listen_one(const char *s, struct config_listen *out)
{
	char host[64];
	const char *port;
	uint64_t pnum;
	size_t hl;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hl = (size_t)(close - s - 1);
		port = close + 2;
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl);
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - s);
		port = colon + 1;
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
	}
	host[hl] = '\0';
	if (parse_u64(port, strlen(port), 65535, &pnum) < 0 || pnum == 0)
		return -1;
	if (s[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)pnum);
		out->len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pnum);
		out->len = sizeof(*sin);
	}
	str_copy(out->text, s, sizeof(out->text));
	return 0;
}

static int
config_parse_listen(struct config_parser *p, const char *name, const char *v,
                    struct config_listen_list *out)
{
	char buf[CONFIG_LINE_MAX];
	char *cursor = buf, *tok;

	str_copy(buf, v, sizeof(buf));
	out->n = 0;
	while ((tok = config_next_item(&cursor)) != NULL) {
		if (out->n == CONFIG_LISTEN_MAX)
			return config_error(p, "%s: more than %d addresses", name,
			                    CONFIG_LISTEN_MAX);
		if (config_parse_listen_one(tok, &out->addr[out->n]) < 0)
			return config_error(p, "%s: '%s' is not ADDRESS:PORT or [IPv6]:PORT", name,
			                    tok);
		out->n++;
	}
	return 0; /* empty: only admin_listen may be (config_validate) */
}

static int
config_parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < nitems(yes); i++) {
		if (str_ieq(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (str_ieq(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* A score: a finite decimal number within +-10000. */
static int
config_parse_score(const char *v, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (end == v || *end != '\0' || errno != 0 || !isfinite(d) || d < -10000 || d > 10000)
		return -1;
	*out = d;
	return 0;
}

/* Set one option from its text value. */
static int
config_set(struct config_parser *p, const struct config_option *o, const char *v)
{
	void *field = (char *)p->c + o->offset;
	uint64_t n = 0;
	int r = 0;

	switch (o->type) {
	case CONFIG_T_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	case CONFIG_T_PATH:
		free(*(char **)field);
		*(char **)field = config_abspath(v);
		return 0;
	case CONFIG_T_BOOL:
		if (config_parse_bool(v, field) < 0)
			return config_error(p, "%s: '%s' is not yes or no", o->name, v);
		return 0;
	case CONFIG_T_LISTEN:
		return config_parse_listen(p, o->name, v, field);
	case CONFIG_T_LOGLEVEL:
		if (log_level_parse(v, field) < 0)
			return config_error(p, "%s: '%s' is not error, warn, info or debug",
			                    o->name, v);
		return 0;
	case CONFIG_T_LOGTARGET:
		if (strcmp(v, "stderr") == 0)
			*(enum log_target *)field = LOG_TARGET_STDERR;
		else if (strcmp(v, "syslog") == 0)
			*(enum log_target *)field = LOG_TARGET_SYSLOG;
		else
			return config_error(p, "%s: '%s' is not stderr or syslog", o->name, v);
		return 0;
	case CONFIG_T_SCORE:
		if (config_parse_score(v, field) < 0)
			return config_error(p,
			                    "%s: '%s' is not a score (a number such as 6 or 7.5)",
			                    o->name, v);
		return 0;
	case CONFIG_T_UINT:
		r = parse_u64(v, strlen(v), UINT64_MAX, &n);
		break;
	case CONFIG_T_SIZE:
		r = parse_size(v, UINT64_MAX, &n);
		break;
	case CONFIG_T_DURATION:
		r = parse_duration_ms(v, &n);
		break;
	}
	if (r < 0) {
		static const char *const hint[] = {
		        [CONFIG_T_UINT] = "a whole number",
		        [CONFIG_T_SIZE] = "a size such as 4096, 64k, 50M or 1G",
		        [CONFIG_T_DURATION] = "a duration such as 500ms, 30s, 5m, 2h or 5d",
		};
		return config_error(p, "%s: '%s' is not %s", o->name, v, hint[o->type]);
	}
	if (n < o->min || n > o->max) {
		const char *unit = o->type == CONFIG_T_DURATION ? " ms"
		                   : o->type == CONFIG_T_SIZE   ? " bytes"
		                                                : "";
		return config_error(p, "%s: %s is out of range [%llu%s, %llu%s]", o->name, v,
		                    (unsigned long long)o->min, unit, (unsigned long long)o->max,
		                    unit);
	}
	*(uint64_t *)field = n;
	return 0;
}

static const struct config_option *
config_find(const char *name)
{
	for (size_t i = 0; i < nitems(config_options); i++)
		if (strcmp(config_options[i].name, name) == 0)
			return &config_options[i];
	return NULL;
}

/* "recipients = any" or a list of local parts or addresses in this domain. */
static int
config_domain_recipients(struct config_parser *p, struct config_domain *d, const char *v)
{
	char buf[CONFIG_LINE_MAX];
	char *cursor = buf, *tok;

	for (size_t i = 0; i < d->nrecipients; i++)
		free(d->recipients[i]);
	free(d->recipients);
	d->recipients = NULL;
	d->nrecipients = 0;
	d->any_recipient = false;
	if (strcmp(v, "any") == 0) {
		d->any_recipient = true;
		return 0;
	}
	str_copy(buf, v, sizeof(buf));
	while ((tok = config_next_item(&cursor)) != NULL) {
		struct mailaddr a;
		char *full = strchr(tok, '@') ? xstrdup(tok) : xasprintf("%s@%s", tok, d->name);

		if (mailaddr_parse(full, strlen(full), MAILADDR_F_NO_ANGLES | MAILADDR_F_SMTPUTF8,
		                   &a, NULL) != MAILADDR_OK) {
			config_error(p, "recipients: '%s' is not a valid address", tok);
			free(full);
			return -1;
		}
		free(full);
		if (strcmp(a.domain, d->name) != 0)
			return config_error(p, "recipients: '%s' is not in domain %s", tok,
			                    d->name);
		d->recipients =
		        xrealloc(d->recipients, (d->nrecipients + 1) * sizeof(*d->recipients));
		d->recipients[d->nrecipients++] = xstrdup(a.local);
	}
	if (d->nrecipients == 0)
		return config_error(p, "recipients: 'any' or a list of addresses is needed");
	return 0;
}

static int
config_domain_set(struct config_parser *p, const char *key, const char *v)
{
	struct config_domain *d = p->domain;

	if (strcmp(key, "recipients") == 0)
		return config_domain_recipients(p, d, v);
	if (strcmp(key, "quarantine_score") == 0 || strcmp(key, "reject_score") == 0) {
		double *f = key[0] == 'q' ? &d->quarantine_score : &d->reject_score;

		if (config_parse_score(v, f) < 0)
			return config_error(
			        p, "%s: '%s' is not a score (a number such as 6 or 7.5)", key, v);
		return 0;
	}
	if (strcmp(key, "relay_key") == 0) {
		if (strlen(v) < 16 || strlen(v) > 128 ||
		    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
		            strlen(v))
			return config_error(p, "relay_key: 16 to 128 letters, digits, '-' or '_'");
		free(d->relay_key);
		d->relay_key = xstrdup(v);
		return 0;
	}
	if (strcmp(key, "allow_senders") == 0 || strcmp(key, "block_senders") == 0) {
		char **f = key[0] == 'a' ? &d->allow_senders : &d->block_senders;

		free(*f);
		*f = xstrdup(v);
		return 0;
	}
	if (strcmp(key, "route") == 0) {
		char err[512];

		if (route_parse(v, &d->route, err, sizeof(err)) < 0)
			return config_error(p, "route: %s", err);
		d->route_line = p->line;
		return 0;
	}
	if (strcmp(key, "tls") == 0) {
		if (route_tls_parse(v, &d->route.tls) < 0)
			return config_error(p,
			                    "tls: '%s' is not none, opportunistic, required or "
			                    "verify",
			                    v);
		return 0;
	}
	if (strcmp(key, "tls_ca") == 0) {
		char *abs = config_abspath(v);
		size_t n = str_copy(d->route.tls_ca, abs, sizeof(d->route.tls_ca));

		free(abs);
		if (n >= sizeof(d->route.tls_ca))
			return config_error(p, "tls_ca: path too long");
		return 0;
	}
	if (strcmp(key, "tls_name") == 0) {
		if (str_copy(d->route.tls_name, v, sizeof(d->route.tls_name)) >=
		    sizeof(d->route.tls_name))
			return config_error(p, "tls_name: too long");
		return 0;
	}
	return config_error(p,
	                    "unknown key '%s' in [domain %s] (recipients, route, tls, tls_ca, "
	                    "tls_name, quarantine_score, reject_score, relay_key, allow_senders, "
	                    "block_senders)",
	                    key, d->name);
}

/* "[rule NAME]": a new rule, enabled, not stopping, with no lines yet. */
static int
config_rule_section(struct config_parser *p, const char *name)
{
	struct config_rule *r;

	if (!rule_name_ok(name))
		return config_error(
		        p,
		        "'%s' is not a rule name (1 to %d letters, digits, blanks, '-', "
		        "'_', '.')",
		        name, RULE_NAME_MAX);
	for (size_t i = 0; i < p->c->nrules; i++)
		if (str_ieq(p->c->rules[i].name, name))
			return config_error(p, "rule '%s' is already declared on line %u", name,
			                    p->c->rules[i].line);
	if (p->c->nrules == RULES_MAX)
		return config_error(p, "more than %d rules", RULES_MAX);
	p->c->rules = xrealloc(p->c->rules, (p->c->nrules + 1) * sizeof(*p->c->rules));
	r = &p->c->rules[p->c->nrules++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->line = p->line;
	r->enabled = true;
	p->rule = r;
	return 0;
}

/* Append one if/unless/then line, checked by the rule grammar now so the error names it. */
static int
config_rule_add(struct config_parser *p, const char *key, const char *v,
                struct config_rule_line **lines, size_t *n)
{
	char why[512];
	int r;

	if (*n == RULE_ITEMS_MAX)
		return config_error(p, "[rule %s] more than %d '%s' lines", p->rule->name,
		                    RULE_ITEMS_MAX, key);
	if (key[0] == 't') {
		struct rule_action a;

		if ((r = rule_action_parse(v, &a, why, sizeof(why))) == 0)
			rule_action_clear(&a);
	} else {
		struct rule_cond c;

		if ((r = rule_cond_parse(v, &c, why, sizeof(why))) == 0)
			rule_cond_clear(&c);
	}
	if (r < 0)
		return config_error(p, "%s: %s", key, why);
	*lines = xrealloc(*lines, (*n + 1) * sizeof(**lines));
	(*lines)[*n].text = xstrdup(v);
	(*lines)[*n].line = p->line;
	(*n)++;
	return 0;
}

static int
config_rule_set(struct config_parser *p, const char *key, const char *v)
{
	struct config_rule *r = p->rule;
	uint64_t n;

	if (strcmp(key, "priority") == 0) {
		if (parse_u64(v, strlen(v), RULE_PRIORITY_MAX, &n) < 0)
			return config_error(p, "priority: '%s' is not a whole number up to %d", v,
			                    RULE_PRIORITY_MAX);
		for (size_t i = 0; i < p->c->nrules; i++) {
			const struct config_rule *o = &p->c->rules[i];

			if (o != r && o->has_priority && o->priority == n)
				return config_error(p,
				                    "priority %llu is already used by rule '%s' on "
				                    "line %u",
				                    (unsigned long long)n, o->name,
				                    o->priority_line);
		}
		r->priority = (unsigned)n;
		r->has_priority = true;
		r->priority_line = p->line;
		return 0;
	}
	if (strcmp(key, "enabled") == 0 || strcmp(key, "stop") == 0) {
		if (config_parse_bool(v, key[0] == 'e' ? &r->enabled : &r->stop) < 0)
			return config_error(p, "%s: '%s' is not yes or no", key, v);
		return 0;
	}
	if (strcmp(key, "if") == 0)
		return config_rule_add(p, key, v, &r->ifs, &r->nifs);
	if (strcmp(key, "unless") == 0)
		return config_rule_add(p, key, v, &r->unless, &r->nunless);
	if (strcmp(key, "then") == 0)
		return config_rule_add(p, key, v, &r->then, &r->nthen);
	return config_error(p,
	                    "unknown key '%s' in [rule %s] (priority, enabled, stop, if, unless, "
	                    "then)",
	                    key, r->name);
}

/* Texts of n rule lines, for a struct rule_spec; free() the array. */
static const char **
config_rule_texts(const struct config_rule_line *l, size_t n)
{
	const char **t = xcalloc(n ? n : 1, sizeof(*t));

	for (size_t i = 0; i < n; i++)
		t[i] = l[i].text;
	return t;
}

void
config_rule_spec(const struct config_rule *cr, struct rule_spec *spec)
{
	*spec = (struct rule_spec){
	        .name = cr->name,
	        .priority = cr->priority,
	        .enabled = cr->enabled,
	        .stop = cr->stop,
	        .ifs = config_rule_texts(cr->ifs, cr->nifs),
	        .nifs = cr->nifs,
	        .unless = config_rule_texts(cr->unless, cr->nunless),
	        .nunless = cr->nunless,
	        .then = config_rule_texts(cr->then, cr->nthen),
	        .nthen = cr->nthen,
	};
}

void
config_rule_spec_free(struct rule_spec *spec)
{
	free((void *)(uintptr_t)spec->ifs);
	free((void *)(uintptr_t)spec->unless);
	free((void *)(uintptr_t)spec->then);
}

struct rule *
config_rule_build(const struct config_rule *cr, char *err, size_t errsize)
{
	struct rule_spec spec;
	struct rule *r;

	config_rule_spec(cr, &spec);
	r = rule_new(&spec, err, errsize);
	config_rule_spec_free(&spec);
	return r;
}

/* A whole rule: what single lines cannot tell (priority, actions that conflict). */
static int
config_validate_rule(struct config_parser *p, const struct config_rule *cr)
{
	struct rule *r = NULL;
	char why[512];
	int rc = -1;

	p->line = cr->line;
	if (!cr->has_priority) {
		config_error(p, "[rule %s] needs 'priority = N' (lowest runs first)", cr->name);
		goto done;
	}
	if ((r = config_rule_build(cr, why, sizeof(why))) == NULL) {
		config_error(p, "[rule %s] %s", cr->name, why);
		goto done;
	}
	for (size_t i = 0; i < r->nacts; i++) {
		if (r->acts[i].hdr_name && str_ieq(r->acts[i].hdr_name, p->c->relay_key_header)) {
			p->line = cr->then[i].line;
			config_error(p, "then: %s is the relay_key_header", r->acts[i].hdr_name);
			goto done;
		}
	}
	rc = 0;
done:
	rule_free(r);
	return rc;
}

static void
config_rule_lines_free(struct config_rule_line *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i].text);
	free(l);
}

static int
config_section(struct config_parser *p, char *s)
{
	char *end = strchr(s, ']');
	struct config_domain *d;
	struct mailaddr a;
	char *name, *probe;

	if (end == NULL || *trim(end + 1) != '\0')
		return config_error(p, "malformed section header");
	*end = '\0';
	s = trim(s + 1);
	p->domain = NULL;
	p->rule = NULL;
	if (strncmp(s, "rule", 4) == 0 && (s[4] == ' ' || s[4] == '\t'))
		return config_rule_section(p, trim(s + 4));
	if (strncmp(s, "domain", 6) != 0 || (s[6] != ' ' && s[6] != '\t'))
		return config_error(
		        p, "unknown section '[%s]' (expected [domain NAME] or [rule NAME])", s);
	name = trim(s + 6);
	probe = xasprintf("postmaster@%s", name);
	if (mailaddr_parse(probe, strlen(probe), MAILADDR_F_NO_ANGLES, &a, NULL) != MAILADDR_OK ||
	    a.literal) {
		free(probe);
		return config_error(p, "'%s' is not a valid domain name", name);
	}
	free(probe);
	for (size_t i = 0; i < p->c->ndomains; i++)
		if (strcmp(p->c->domains[i].name, a.domain) == 0)
			return config_error(p, "domain %s is already declared on line %u", a.domain,
			                    p->c->domains[i].line);
	p->c->domains = xrealloc(p->c->domains, (p->c->ndomains + 1) * sizeof(*p->c->domains));
	d = &p->c->domains[p->c->ndomains++];
	memset(d, 0, sizeof(*d));
	d->name = xstrdup(a.domain);
	d->line = p->line;
	d->route.type = ROUTE_MAILDIR;
	d->route.tls = ROUTE_TLS_OPPORTUNISTIC;
	d->quarantine_score = NAN;
	d->reject_score = NAN;
	p->domain = d;
	return 0;
}

static bool config_route_loops(const struct config *c, const struct route *r);

void
config_domain_clear(struct config_domain *d)
{
	for (size_t j = 0; j < d->nrecipients; j++)
		free(d->recipients[j]);
	free(d->recipients);
	free(d->name);
	free(d->relay_key);
	free(d->allow_senders);
	free(d->block_senders);
	memset(d, 0, sizeof(*d));
}

int
config_domain_parse(const struct config *c, const char *name, const char *body,
                    struct config_domain *out, char *err, size_t errsize)
{
	char where[CONFIG_DOMAIN_NAME_MAX + 16], *text = xstrdup(body), *cursor = text, *line;
	struct config_parser p = {.path = where,
	                          .err = err,
	                          .errsize = errsize,
	                          .c = (struct config *)(uintptr_t)c,
	                          .domain = out};
	struct mailaddr a;
	char *probe = xasprintf("postmaster@%s", name);
	int rc = -1;

	memset(out, 0, sizeof(*out));
	snprintf(where, sizeof(where), "[domain %.255s]", name);
	if (strlen(name) > CONFIG_DOMAIN_NAME_MAX ||
	    mailaddr_parse(probe, strlen(probe), MAILADDR_F_NO_ANGLES, &a, NULL) != MAILADDR_OK ||
	    a.literal) {
		snprintf(err, errsize, "'%.255s' is not a valid domain name", name);
		goto out;
	}
	out->name = xstrdup(a.domain);
	out->route.type = ROUTE_MAILDIR;
	out->route.tls = ROUTE_TLS_OPPORTUNISTIC;
	out->quarantine_score = NAN;
	out->reject_score = NAN;
	while ((line = strsep(&cursor, "\n")) != NULL) {
		char *eq, *key, *val;

		p.line++;
		if (strlen(line) >= CONFIG_LINE_MAX) {
			config_error(&p, "line longer than %d octets", CONFIG_LINE_MAX - 1);
			goto out;
		}
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			config_error(&p, "expected 'key = value'");
			goto out;
		}
		*eq = '\0';
		key = trim(line);
		val = trim(eq + 1);
		if (strcmp(key, "allow_senders") == 0 || strcmp(key, "block_senders") == 0) {
			config_error(&p,
			             "%s: the allow and block lists are kept apart (the lists "
			             "of the admin API)",
			             key);
			goto out;
		}
		if (config_domain_set(&p, key, val) < 0)
			goto out;
	}
	p.line = 0;
	if (!out->any_recipient && out->nrecipients == 0) {
		config_error(&p, "needs 'recipients = any' or a list");
		goto out;
	}
	if (config_route_loops(c, &out->route)) {
		config_error(&p, "route points back at moat's own smtp_listen (mail loop)");
		goto out;
	}
	if ((isnan(out->reject_score) ? c->scan_reject_score : out->reject_score) <
	    (isnan(out->quarantine_score) ? c->scan_quarantine_score : out->quarantine_score)) {
		config_error(&p, "reject_score is below quarantine_score");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		config_domain_clear(out);
	free(probe);
	free(text);
	return rc;
}

static int
config_line(struct config_parser *p, char *line)
{
	char *eq, *key, *val, *hash;
	const struct config_option *o;

	/* A comment starts at '#' at the start of the line or after a blank. */
	for (hash = line; (hash = strchr(hash, '#')) != NULL; hash++) {
		if (hash == line || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = '\0';
			break;
		}
	}
	line = trim(line);
	if (*line == '\0')
		return 0;
	if (*line == '[')
		return config_section(p, line);
	if ((eq = strchr(line, '=')) == NULL)
		return config_error(p, "expected 'key = value', '[domain NAME]' or '[rule NAME]'");
	*eq = '\0';
	key = trim(line);
	val = trim(eq + 1);
	if (*key == '\0')
		return config_error(p, "missing key before '='");
	if (p->domain)
		return config_domain_set(p, key, val);
	if (p->rule)
		return config_rule_set(p, key, val);
	if ((o = config_find(key)) == NULL)
		return config_error(p, "unknown key '%s'", key);
	p->option_line[o - config_options] = p->line;
	return config_set(p, o, val);
}

/* Point error messages at the line that set option `name` (0: defaults). */
static void
config_at_option(struct config_parser *p, const char *name)
{
	p->line = p->option_line[config_find(name) - config_options];
}

/* A host name moat can put in its greeting, Received header and file names. */
static bool
config_hostname_ok(const char *h)
{
	struct mailaddr a;
	char *probe;
	bool ok;

	if (strlen(h) > 253)
		return false;
	probe = xasprintf("postmaster@%s", h);
	ok = mailaddr_parse(probe, strlen(probe), MAILADDR_F_NO_ANGLES, &a, NULL) == MAILADDR_OK &&
	     !a.literal;
	free(probe);
	return ok;
}

static bool
config_hostname_ok_n(const char *h, size_t n)
{
	char *z = xstrndup(h, n);
	bool ok = config_hostname_ok(z);

	free(z);
	return ok;
}

/* Is ip (family fam) an address of this host? */
static bool
config_ip_is_local(int fam, const unsigned char *ip)
{
	struct ifaddrs *ifa, *it;
	bool local = false;

	if ((fam == AF_INET && ip[0] == 127) ||
	    (fam == AF_INET6 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)ip)))
		return true;
	if (getifaddrs(&ifa) < 0)
		return false;
	for (it = ifa; it && !local; it = it->ifa_next) {
		if (it->ifa_addr == NULL || it->ifa_addr->sa_family != fam)
			continue;
		if (fam == AF_INET)
			local = memcmp(&((struct sockaddr_in *)it->ifa_addr)->sin_addr, ip, 4) == 0;
		else
			local = memcmp(&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr, ip, 16) ==
			        0;
	}
	freeifaddrs(ifa);
	return local;
}

/*
 * Would this route deliver to moat itself? A smart host on a listening
 * port that is "localhost", moat's own hostname, one of the listening
 * addresses, or a local address under a wildcard listen. Other names are
 * not looked up here: a name that resolves to moat is caught by the
 * Received count.
 */
static bool
config_route_loops(const struct config *c, const struct route *r)
{
	for (size_t i = 0; r->type == ROUTE_SMTP && i < r->nhosts; i++) {
		const struct route_host *h = &r->host[i];
		unsigned char ip[16];
		int fam = inet_pton(AF_INET, h->name, ip) == 1    ? AF_INET
		          : inet_pton(AF_INET6, h->name, ip) == 1 ? AF_INET6
		                                                  : 0;
		bool self_name = strcmp(h->name, "localhost") == 0 ||
		                 strncmp(h->name, "localhost.", 10) == 0 ||
		                 str_ieq(h->name, c->hostname);

		/* ::ffff:a.b.c.d is a.b.c.d; 0.0.0.0 and :: connect to this host */
		if (fam == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)ip)) {
			memmove(ip, ip + 12, 4);
			fam = AF_INET;
		}
		if ((fam == AF_INET && memcmp(ip, "\0\0\0\0", 4) == 0) ||
		    (fam == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *)ip)))
			self_name = true;

		for (size_t j = 0; j < c->smtp_listen.n; j++) {
			const struct config_listen *l = &c->smtp_listen.addr[j];
			const unsigned char *lip;
			uint16_t lport;
			bool any;

			if (l->ss.ss_family == AF_INET) {
				const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->ss;
				lip = (const unsigned char *)&sin->sin_addr;
				lport = ntohs(sin->sin_port);
				any = sin->sin_addr.s_addr == htonl(INADDR_ANY);
			} else {
				const struct sockaddr_in6 *sin6 =
				        (const struct sockaddr_in6 *)&l->ss;
				lip = (const unsigned char *)&sin6->sin6_addr;
				lport = ntohs(sin6->sin6_port);
				any = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
			}
			if (h->port != lport)
				continue;
			if (self_name)
				return true;
			if (fam == 0)
				continue;
			if (fam == l->ss.ss_family && memcmp(ip, lip, fam == AF_INET ? 4 : 16) == 0)
				return true;
			if (any && config_ip_is_local(fam, ip))
				return true;
		}
	}
	return false;
}

/* "zone[:weight], ..." (dnsbl_zones, uribl_zones). */
static int
config_check_zones(struct config_parser *p, const char *name, const char *v)
{
	while (*v) {
		size_t len, zl;
		const char *colon;
		char w[32];
		double d;

		v += strspn(v, " \t,");
		len = strcspn(v, " \t,");
		if (len == 0)
			break;
		colon = memchr(v, ':', len);
		zl = colon ? (size_t)(colon - v) : len;
		if (zl == 0 || zl > 253 || !config_hostname_ok_n(v, zl))
			return config_error(p, "%s: '%.*s' is not a DNS zone", name,
			                    (int)(len > 80 ? 80 : len), v);
		if (colon) {
			size_t wl = len - zl - 1;

			if (wl == 0 || wl >= sizeof(w))
				return config_error(p, "%s: bad weight in '%.*s'", name,
				                    (int)(len > 80 ? 80 : len), v);
			memcpy(w, colon + 1, wl);
			w[wl] = '\0';
			if (config_parse_score(w, &d) < 0)
				return config_error(p, "%s: '%s' is not a weight (a number)", name,
				                    w);
		}
		v += len;
	}
	return 0;
}

/*
 * Microsoft's endpoints: https://, or http:// to a loopback address (a
 * test's emulator); no user, query or fragment.
 */
static bool
config_url_ok(const char *u)
{
	const char *h;

	static const char *const loopback[] = {"http://127.0.0.1", "http://[::1]",
	                                       "http://localhost"};

	h = NULL;
	if (strncmp(u, "https://", 8) == 0)
		h = u + 8;
	for (size_t i = 0; h == NULL && i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		size_t n = strlen(loopback[i]);

		/* the whole host: not http://localhost.example.com */
		if (strncmp(u, loopback[i], n) == 0 && strchr(":/", u[n]) != NULL)
			h = u + 7;
	}
	if (h == NULL)
		return false;
	return h[0] != '\0' && h[0] != '/' && strpbrk(h, "@?# \t") == NULL && strlen(u) < 1024;
}

/* Scan settings that need more than their type. */
static int
config_validate_scan(struct config_parser *p)
{
	struct config *c = p->c;
	struct cidr_list *l;
	char err[160];
	int r;

	config_at_option(p, "scan_malware_action");
	if (strcmp(c->scan_malware_action, "quarantine") != 0 &&
	    strcmp(c->scan_malware_action, "reject") != 0)
		return config_error(p, "scan_malware_action: '%s' is not quarantine or reject",
		                    c->scan_malware_action);
	config_at_option(p, "scan_reject_score");
	if (c->scan_reject_score < c->scan_quarantine_score)
		return config_error(p, "scan_reject_score is below scan_quarantine_score");
	config_at_option(p, "scan_trusted_relays");
	l = xmalloc(sizeof(*l));
	r = cidr_list_parse(c->scan_trusted_relays, l, err, sizeof(err));
	free(c->trusted_relays);
	c->trusted_relays = l; /* parsed once, read by every scan */
	if (r < 0)
		return config_error(p, "scan_trusted_relays: %s", err);
	config_at_option(p, "dnsbl_zones");
	if (config_check_zones(p, "dnsbl_zones", c->dnsbl_zones) < 0)
		return -1;
	config_at_option(p, "uribl_zones");
	if (config_check_zones(p, "uribl_zones", c->uribl_zones) < 0)
		return -1;
	config_at_option(p, "clamd");
	if (c->clamd[0] &&
	    !(strncmp(c->clamd, "unix:/", 6) == 0 ||
	      (strncmp(c->clamd, "tcp:", 4) == 0 && strrchr(c->clamd, ':') > c->clamd + 4)))
		return config_error(p, "clamd: '%s' is not unix:/PATH or tcp:HOST:PORT", c->clamd);
	config_at_option(p, "rspamd_url");
	if (c->rspamd_url[0] && strncmp(c->rspamd_url, "http://", 7) != 0 &&
	    strncmp(c->rspamd_url, "https://", 8) != 0)
		return config_error(p, "rspamd_url: '%s' is not an http:// or https:// URL",
		                    c->rspamd_url);
	config_at_option(p, "relay_key_header");
	if (c->relay_key_header[0] == '\0' || strlen(c->relay_key_header) > 64 ||
	    strspn(c->relay_key_header,
	           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") !=
	            strlen(c->relay_key_header))
		return config_error(p, "relay_key_header: '%s' is not a header field name",
		                    c->relay_key_header);
	config_at_option(p, "m365_authority");
	if (!config_url_ok(c->m365_authority))
		return config_error(p, "m365_authority: '%s' is not an https:// URL",
		                    c->m365_authority);
	config_at_option(p, "m365_exo_url");
	if (!config_url_ok(c->m365_exo_url))
		return config_error(p, "m365_exo_url: '%s' is not an https:// URL",
		                    c->m365_exo_url);
	config_at_option(p, "m365_egress");
	l = xmalloc(sizeof(*l));
	r = cidr_list_parse(c->m365_egress, l, err, sizeof(err));
	free(l);
	if (r < 0)
		return config_error(p, "m365_egress: %s", err);
	config_at_option(p, "m365_host");
	if (c->m365_host[0] && !config_hostname_ok(c->m365_host))
		return config_error(p, "m365_host: '%s' is not a host name", c->m365_host);
	config_at_option(p, "authserv_id");
	if (c->authserv_id[0] && !config_hostname_ok(c->authserv_id))
		return config_error(p, "authserv_id: '%s' is not a domain name", c->authserv_id);
	for (size_t i = 0; i < c->ndomains; i++) {
		struct config_domain *d = &c->domains[i];
		double q =
		        isnan(d->quarantine_score) ? c->scan_quarantine_score : d->quarantine_score;
		double rj = isnan(d->reject_score) ? c->scan_reject_score : d->reject_score;

		if (rj < q) {
			p->line = d->line;
			return config_error(p, "[domain %s] reject_score is below quarantine_score",
			                    d->name);
		}
	}
	return 0;
}

/* Checks that involve several values, after the whole file is read. */
static int
config_validate(struct config_parser *p)
{
	struct config *c = p->c;

	config_at_option(p, c->tls_cert[0] ? "tls_cert" : "tls_key");
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0'))
		return config_error(p, "tls_cert and tls_key must be set together");
	config_at_option(p, "smtp_listen");
	if (c->smtp_listen.n == 0)
		return config_error(p, "smtp_listen: at least one address is needed");
	config_at_option(p, "admin_tls_cert");
	if ((c->admin_tls_cert[0] == '\0') != (c->admin_tls_key[0] == '\0'))
		return config_error(p, "admin_tls_cert and admin_tls_key must be set together");
	config_at_option(p, "admin_session_max");
	if (c->admin_session_max < c->admin_session_idle)
		return config_error(p, "admin_session_max is shorter than admin_session_idle");
	config_at_option(p, "data_dir");
	if (c->data_dir[0] == '\0')
		return config_error(p, "data_dir must not be empty");
	config_at_option(p, "user");
	if (c->user[0] == '\0')
		return config_error(p, "user must not be empty");
	config_at_option(p, "hostname");
	if (c->hostname[0] == '\0') {
		char h[256];
		if (gethostname(h, sizeof(h)) < 0)
			return config_error(p, "hostname is empty and gethostname failed");
		h[sizeof(h) - 1] = '\0';
		free(c->hostname);
		c->hostname = xstrdup(h);
	}
	if (!config_hostname_ok(c->hostname))
		return config_error(p,
		                    "hostname '%s' is not a domain name (letters, digits, "
		                    "hyphens and dots, at most 253 octets)",
		                    c->hostname);
	config_at_option(p, "delivery_default_route");
	{
		char err[512];
		if (route_parse(c->delivery_default_route, &c->default_route, err, sizeof(err)) < 0)
			return config_error(p, "delivery_default_route: %s", err);
		if (c->default_route.type == ROUTE_MAILDIR)
			return config_error(p,
			                    "delivery_default_route: maildir is only for protected "
			                    "domains");
	}
	config_at_option(p, "delivery_default_tls");
	if (route_tls_parse(c->delivery_default_tls, &c->default_route.tls) < 0)
		return config_error(p,
		                    "delivery_default_tls: '%s' is not none, opportunistic, "
		                    "required or verify",
		                    c->delivery_default_tls);
	config_at_option(p, "delivery_default_route");
	if (config_route_loops(c, &c->default_route))
		return config_error(p, "delivery_default_route points back at moat's own "
		                       "smtp_listen (mail loop)");
	config_at_option(p, "delivery_retry_max");
	if (c->delivery_retry_max < c->delivery_retry_min)
		return config_error(p, "delivery_retry_max is shorter than delivery_retry_min");
	if (config_validate_scan(p) < 0)
		return -1;
	for (size_t i = 0; i < c->nrules; i++)
		if (config_validate_rule(p, &c->rules[i]) < 0)
			return -1;
	for (size_t i = 0; i < c->ndomains; i++) {
		struct config_domain *d = &c->domains[i];
		if (!d->any_recipient && d->nrecipients == 0) {
			p->line = d->line;
			return config_error(p, "[domain %s] needs 'recipients = any' or a list",
			                    d->name);
		}
		if (config_route_loops(c, &d->route)) {
			p->line = d->route_line;
			return config_error(p,
			                    "[domain %s] route points back at moat's own "
			                    "smtp_listen (mail loop)",
			                    d->name);
		}
	}
	return 0;
}

static struct config *
config_new_defaults(struct config_parser *p)
{
	struct config *c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	p->c = c;
	for (size_t i = 0; i < nitems(config_options); i++)
		if (config_set(p, &config_options[i], config_options[i].def) < 0)
			fatalx("built-in default of %s is invalid: %s", config_options[i].name,
			       p->err);
	return c;
}

struct config *
config_defaults(void)
{
	char err[512];
	struct config_parser p = {.path = "(defaults)", .err = err, .errsize = sizeof(err)};
	struct config *c = config_new_defaults(&p);

	c->path = xstrdup(p.path);
	if (config_validate(&p) < 0)
		fatalx("%s", err);
	return c;
}

struct config *
config_load(const char *path, char *err, size_t errsize)
{
	struct config_parser p = {.path = path, .err = err, .errsize = errsize};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;

	if ((fp = fopen(path, "re")) == NULL) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return NULL;
	}
	config_new_defaults(&p);
	p.c->path = xstrdup(path);
	while ((n = getline(&line, &cap, fp)) >= 0) {
		p.line++;
		if (n > CONFIG_LINE_MAX) {
			config_error(&p, "line longer than %d bytes", CONFIG_LINE_MAX);
			goto fail;
		}
		if (strlen(line) != (size_t)n) {
			config_error(&p, "NUL byte in line");
			goto fail;
		}
		if (config_line(&p, line) < 0)
			goto fail;
	}
	if (ferror(fp)) {
		config_error(&p, "read error: %s", strerror(errno));
		goto fail;
	}
	free(line);
	fclose(fp);
	if (config_validate(&p) < 0) {
		config_unref(p.c);
		return NULL;
	}
	return p.c;
fail:
	free(line);
	fclose(fp);
	config_unref(p.c);
	return NULL;
}

struct config *
config_ref(struct config *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void
config_unref(struct config *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < nitems(config_options); i++) {
		const struct config_option *o = &config_options[i];
		if (o->type == CONFIG_T_STRING || o->type == CONFIG_T_PATH)
			free(*(char **)((char *)c + o->offset));
	}
	for (size_t i = 0; i < c->ndomains; i++)
		config_domain_clear(&c->domains[i]);
	free(c->domains);
	free(c->trusted_relays);
	for (size_t i = 0; i < c->nrules; i++) {
		struct config_rule *r = &c->rules[i];

		free(r->name);
		config_rule_lines_free(r->ifs, r->nifs);
		config_rule_lines_free(r->unless, r->nunless);
		config_rule_lines_free(r->then, r->nthen);
	}
	free(c->rules);
	free(c->path);
	free(c);
}

void
config_print_options(FILE *fp)
{
	fprintf(fp, "| name | type | default | description |\n");
	fprintf(fp, "|---|---|---|---|\n");
	for (size_t i = 0; i < nitems(config_options); i++) {
		const struct config_option *o = &config_options[i];
		fprintf(fp, "| `%s` | %s | `%s` | %s |\n", o->name, config_type_names[o->type],
		        o->def, o->doc);
	}
}
