/*
 * moatctl_policy.c - `moatctl domains`, `lists`, `rules` and `config
 * export|import`: what decides the fate of mail, over the admin API
 * (docs/openapi.yaml). Rules are text in the grammar of
 * src/policy/rules.h; the server checks them, moatctl only carries them.
 */
#include "moatctl.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

int
moatctl_policy_domains(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "domains", NULL, NULL, NULL);
}

int
moatctl_policy_domains_put(struct moatctl_req *r)
{
	static const struct {
		const char *opt, *field;
	} strs[] = {{"--route", "route"}, {"--tls", "tls"}, {"--tls-name", "tls_name"}};
	const char *rcpts = moatctl_req_opt(r, "--recipients");
	json_t *body = json_object();
	char *p;
	int rc;

	if (strcmp(rcpts, "any") == 0) {
		json_object_set_new(body, "recipients", json_string("any"));
	} else {
		json_t *l = json_array();
		char *copy = xstrdup(rcpts), *cursor = copy, *tok;

		while ((tok = strsep(&cursor, ", ")) != NULL)
			if (*tok)
				json_array_append_new(l, json_string(tok));
		free(copy);
		json_object_set_new(body, "recipients", l);
	}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (moatctl_req_opt(r, strs[i].opt))
			json_object_set_new(body, strs[i].field,
			                    json_string(moatctl_req_opt(r, strs[i].opt)));
	for (int i = 0; i < 2; i++) {
		const char *v = moatctl_req_opt(r, i ? "--reject-score" : "--quarantine-score");
		char *end;
		double d;

		if (v == NULL)
			continue;
		d = strtod(v, &end);
		if (end == v || *end) {
			fprintf(stderr, "moatctl: %s: '%s' is not a score\n", moatctl_req_words(r),
			        v);
			json_decref(body);
			return MOATCTL_EXIT_USAGE;
		}
		json_object_set_new(body, i ? "reject_score" : "quarantine_score", json_real(d));
	}
	p = moatctl_req_path(r, "domains");
	rc = moatctl_req_call(r, "PUT", p, NULL, body, NULL);
	free(p);
	json_decref(body);
	return rc;
}

int
moatctl_policy_domains_delete(struct moatctl_req *r)
{
	return moatctl_req_delete(r, "domains");
}

int
moatctl_policy_lists(struct moatctl_req *r)
{
	char *q = moatctl_req_query(r, NULL);
	int rc = moatctl_req_call(r, "GET", "lists", q, NULL, NULL);

	free(q);
	return rc;
}

/* {"scope", "kind", "pattern"} of lists add|delete; NULL after a usage error. */
static json_t *
moatctl_policy_list_entry(struct moatctl_req *r)
{
	const char *kind = moatctl_req_opt(r, "--kind"), *scope = moatctl_req_opt(r, "--scope");

	if (strcmp(kind, "allow") != 0 && strcmp(kind, "block") != 0) {
		fprintf(stderr, "moatctl: %s: --kind is allow or block, not '%s'\n",
		        moatctl_req_words(r), kind);
		return NULL;
	}
	return json_pack("{s:s,s:s,s:s}", "scope", scope ? scope : "", "kind", kind, "pattern",
	                 moatctl_req_arg(r, 0));
}

int
moatctl_policy_lists_add(struct moatctl_req *r)
{
	json_t *e = moatctl_policy_list_entry(r);
	int rc;

	struct moatctl_api *a;
	json_t *out;

	if (e == NULL)
		return MOATCTL_EXIT_USAGE;
	if ((a = moatctl_req_api(r, &rc)) != NULL &&
	    (rc = moatctl_api_json(a, "POST", "lists", NULL, e, &out)) == MOATCTL_EXIT_OK) {
		if (moatctl_req_global(r)->json)
			moatctl_print_json(out);
		else
			printf("%s\n", json_is_false(json_object_get(out, "added"))
			                       ? "already there"
			                       : "added");
		json_decref(out);
	}
	json_decref(e);
	return rc;
}

int
moatctl_policy_lists_delete(struct moatctl_req *r)
{
	json_t *e = moatctl_policy_list_entry(r);
	char *scope, *kind, *pattern, *q;
	int rc;

	if (e == NULL)
		return MOATCTL_EXIT_USAGE;
	scope = moatctl_api_escape(json_string_value(json_object_get(e, "scope")));
	kind = moatctl_api_escape(json_string_value(json_object_get(e, "kind")));
	pattern = moatctl_api_escape(json_string_value(json_object_get(e, "pattern")));
	q = xasprintf("scope=%s&kind=%s&pattern=%s", scope, kind, pattern);
	rc = moatctl_req_call(r, "DELETE", "lists", q, NULL, "deleted");
	free(q);
	free(pattern);
	free(kind);
	free(scope);
	json_decref(e);
	return rc;
}

int
moatctl_policy_rules(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "rules", NULL, NULL, NULL);
}

int
moatctl_policy_rules_show(struct moatctl_req *r)
{
	char *p = moatctl_req_path(r, "rules");
	int rc = moatctl_req_call(r, "GET", p, NULL, NULL, NULL);

	free(p);
	return rc;
}

static json_t *
moatctl_policy_strings(struct moatctl_req *r, const char *opt)
{
	const char *const *v;
	json_t *arr = json_array();
	size_t n;

	v = moatctl_req_optv(r, opt, &n);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_string(v[i]));
	return arr;
}

int
moatctl_policy_rules_put(struct moatctl_req *r)
{
	const char *file = moatctl_req_opt(r, "--file"), *prio = moatctl_req_opt(r, "--priority");
	size_t nif, nunless, nthen;
	json_t *rule;
	char *p;
	int rc;

	moatctl_req_optv(r, "--if", &nif);
	moatctl_req_optv(r, "--unless", &nunless);
	moatctl_req_optv(r, "--then", &nthen);
	if (file != NULL) {
		const char *name;

		if (prio || nif || nunless || nthen || moatctl_req_flag(r, "--disabled") ||
		    moatctl_req_flag(r, "--stop")) {
			fprintf(stderr,
			        "moatctl: %s: --file is the whole rule: no other option with "
			        "it\n",
			        moatctl_req_words(r));
			return MOATCTL_EXIT_USAGE;
		}
		if ((rule = moatctl_read_json(moatctl_req_words(r), file, &rc)) == NULL)
			return rc;
		if (!json_is_object(rule)) {
			fprintf(stderr, "moatctl: %s: %s: not a JSON object\n",
			        moatctl_req_words(r), file);
			json_decref(rule);
			return MOATCTL_EXIT_USAGE;
		}
		/* a file saved from `rules show --json` names its rule: it must be this one */
		name = json_string_value(json_object_get(rule, "name"));
		if (name != NULL && strcmp(name, moatctl_req_arg(r, 0)) != 0) {
			fprintf(stderr, "moatctl: %s: %s is the rule '%s', not '%s'\n",
			        moatctl_req_words(r), file, name, moatctl_req_arg(r, 0));
			json_decref(rule);
			return MOATCTL_EXIT_USAGE;
		}
		json_object_del(rule, "name");
	} else {
		uint64_t n;

		if (prio == NULL || nthen == 0) {
			fprintf(stderr,
			        "moatctl: %s: --priority and at least one --then (or --file) "
			        "are needed\n",
			        moatctl_req_words(r));
			return MOATCTL_EXIT_USAGE;
		}
		parse_u64(prio, strlen(prio), UINT32_MAX, &n); /* checked by the parser */
		rule = json_pack("{s:I,s:b,s:b,s:o,s:o,s:o}", "priority", (json_int_t)n, "enabled",
		                 !moatctl_req_flag(r, "--disabled"), "stop",
		                 moatctl_req_flag(r, "--stop"), "if",
		                 moatctl_policy_strings(r, "--if"), "unless",
		                 moatctl_policy_strings(r, "--unless"), "then",
		                 moatctl_policy_strings(r, "--then"));
	}
	p = moatctl_req_path(r, "rules");
	rc = moatctl_req_call(r, "PUT", p, NULL, rule, "saved");
	free(p);
	json_decref(rule);
	return rc;
}

int
moatctl_policy_rules_delete(struct moatctl_req *r)
{
	return moatctl_req_delete(r, "rules");
}

int
moatctl_policy_config_export(struct moatctl_req *r)
{
	const char *path = moatctl_req_opt(r, "-o");
	struct moatctl_api *a;
	json_t *out;
	char *text;
	FILE *fp = stdout;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if ((rc = moatctl_api_json(a, "GET", "config/export", NULL, NULL, &out)) != MOATCTL_EXIT_OK)
		return rc;
	/* stable text for diffs: the server's order, two spaces, a final newline */
	text = json_dumps(out, JSON_INDENT(2));
	json_decref(out);
	if (text == NULL) {
		fprintf(stderr, "moatctl: %s: the answer is empty\n", moatctl_req_words(r));
		return MOATCTL_EXIT_UNREACHABLE;
	}
	if (path != NULL && strcmp(path, "-") != 0 && (fp = fopen(path, "w")) == NULL) {
		fprintf(stderr, "moatctl: %s: %s: %s\n", moatctl_req_words(r), path,
		        strerror(errno));
		free(text);
		return MOATCTL_EXIT_REFUSED;
	}
	fprintf(fp, "%s\n", text);
	free(text);
	if ((fp != stdout ? fclose(fp) : fflush(fp)) != 0) {
		fprintf(stderr, "moatctl: %s: %s: %s\n", moatctl_req_words(r),
		        path ? path : "stdout", strerror(errno));
		return MOATCTL_EXIT_REFUSED;
	}
	return MOATCTL_EXIT_OK;
}

int
moatctl_policy_config_import(struct moatctl_req *r)
{
	json_t *in;
	int rc;

	if ((in = moatctl_read_json(moatctl_req_words(r), moatctl_req_arg(r, 0), &rc)) == NULL)
		return rc;
	rc = moatctl_req_call(r, "POST", "config/import", NULL, in, NULL);
	json_decref(in);
	return rc;
}
