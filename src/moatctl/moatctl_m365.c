/*
 * moatctl_m365.c - `moatctl m365 ...`: the Microsoft 365 wizard from the
 * shell, over the admin API (/api/v1/m365/...). A job that signs in shows
 * the one-time code and the URL to enter it at, then is followed until it
 * ends: its steps, what was read back, or the error in plain words with
 * what to do.
 */
#include "moatctl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"

#define MOATCTL_M365_POLL_US 1000000 /* between two looks at a running job */

/* The choice options as the body of a job (or the query of a plan). */
static json_t *
m365_choice_body(struct moatctl_req *r, int *rc)
{
	json_t *body = json_object();
	const char *v;

	if ((v = moatctl_req_opt(r, "--protect")) != NULL) {
		json_t *a = json_array();
		char *copy = xstrdup(v), *cursor = copy, *tok;

		while ((tok = strsep(&cursor, ", ")) != NULL) {
			if (strcmp(tok, "all") == 0) {
				static const char *const all[] = {"antispam", "antiphish",
				                                  "antimalware", "safelinks",
				                                  "safeattachments"};

				for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
					json_array_append_new(a, json_string(all[i]));
			} else if (*tok && strcmp(tok, "none") != 0)
				json_array_append_new(a, json_string(tok));
		}
		free(copy);
		json_object_set_new(body, "protections", a);
	}
	if (moatctl_req_flag(r, "--no-bypass-rule"))
		json_object_set_new(body, "bypass_rule", json_false());
	if (moatctl_req_flag(r, "--enhanced-filtering"))
		json_object_set_new(body, "enhanced_filtering", json_true());
	if ((v = moatctl_req_opt(r, "--mode")) != NULL)
		json_object_set_new(body, "mode", json_string(v));
	if ((v = moatctl_req_opt(r, "--tenant")) != NULL)
		json_object_set_new(body, "tenant", json_string(v));
	*rc = MOATCTL_EXIT_OK;
	return body;
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static bool
m365_state_final(const char *st)
{
	static const char *const finals[] = {"done", "pending", "failed", "cancelled", "planned"};

	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
		if (strcmp(st, finals[i]) == 0)
			return true;
	return false;
}

/* The job's result as text. */
static void
m365_print_job(const json_t *job)
{
	const json_t *plan = json_object_get(job, "plan"), *v, *err;
	size_t i;

	printf("job %s (%s): %s\n", jstr(job, "id"), jstr(job, "kind"), jstr(job, "state"));
	if (json_object_get(job, "account"))
		printf("signed in as %s (tenant %s)\n", jstr(job, "account"),
		       jstr(job, "tenant_id"));
	if ((v = json_object_get(job, "detect")) != NULL) {
		char line[2048];

		printf("Defender for Office 365: %s\n",
		       json_is_true(json_object_get(v, "defender")) ? "yes" : "no");
		moatctl_value_str(json_object_get(v, "accepted_domains"), "accepted_domains", line,
		                  sizeof(line));
		printf("accepted domains: %s\n", line);
		json_array_foreach (json_object_get(v, "presets"), i, err)
			printf("preset %s (%s): %s\n", jstr(err, "name"), jstr(err, "kind"),
			       jstr(err, "state"));
		json_array_foreach (json_object_get(v, "moat_objects"), i, err)
			printf("made by moat: %s %s (%s)\n", jstr(err, "kind"), jstr(err, "name"),
			       jstr(err, "state"));
	}
	if (plan) {
		const json_t *steps = json_object_get(plan, "steps");

		if (json_array_size(steps) == 0)
			printf("nothing to change\n");
		json_array_foreach (steps, i, v) {
			char params[4096];

			moatctl_value_str(json_object_get(v, "params"), "params", params,
			                  sizeof(params));
			printf("%3zu. %s %s\n     %s\n", i + 1, jstr(v, "cmdlet"), params,
			       jstr(v, "why"));
		}
		json_array_foreach (json_object_get(plan, "notes"), i, v)
			printf("note: %s\n", json_string_value(v));
	}
	json_array_foreach (json_object_get(job, "steps"), i, v) {
		if (strcmp(jstr(v, "status"), "done") != 0)
			printf("step %s %s: %s\n", jstr(v, "cmdlet"), jstr(v, "item"),
			       jstr(v, "status"));
	}
	if (json_array_size(json_object_get(job, "check"))) {
		static const struct moatctl_col cols[] = {
		        {"status", "STATUS", 8}, {"title", "ITEM", 44}, {"detail", "DETAIL", 0}};

		moatctl_print_table(json_object_get(job, "check"), cols, 3);
	}
	if (json_object_get(job, "note"))
		printf("%s\n", jstr(job, "note"));
	if (json_object_get(job, "summary"))
		printf("%s\n", jstr(job, "summary"));
	if ((err = json_object_get(job, "error")) != NULL) {
		printf("error: %s\n", jstr(err, "explain"));
		if (json_object_get(err, "text"))
			printf("Microsoft said: %s\n", jstr(err, "text"));
		printf("what to do: %s\n", jstr(err, "action"));
	}
}

/*
 * Follow job id until it ends (or, with until_waiting, until it has
 * applied and waits for Exchange): the sign-in code on standard error as
 * soon as it is there, state changes too; the end as text or JSON.
 */
static int
m365_follow(struct moatctl_req *r, struct moatctl_api *a, const char *id, bool until_waiting)
{
	char *e = moatctl_api_escape(id), *path = xasprintf("m365/jobs/%s", e), last[64] = "";
	bool code_shown = false;
	json_t *job = NULL;
	int rc;

	for (;;) {
		const char *st;

		json_decref(job);
		job = NULL;
		if ((rc = moatctl_api_json(a, "GET", path, NULL, NULL, &job)) != MOATCTL_EXIT_OK)
			goto out;
		st = jstr(job, "state");
		if (!code_shown && json_object_get(job, "signin")) {
			const json_t *s = json_object_get(job, "signin");

			fprintf(stderr,
			        "To sign in to Microsoft 365, open %s and enter the code %s\n"
			        "(sign in with an Exchange or Global Administrator account).\n",
			        jstr(s, "verification_uri"), jstr(s, "user_code"));
			code_shown = true;
		}
		if (strcmp(st, last) != 0) {
			fprintf(stderr, "moatctl: m365 job %s: %s\n", id, st);
			str_copy(last, st, sizeof(last));
		}
		if (m365_state_final(st) || (until_waiting && strcmp(st, "waiting") == 0))
			break;
		usleep(MOATCTL_M365_POLL_US);
	}
	if (moatctl_req_global(r)->json)
		moatctl_print_json(job);
	else
		m365_print_job(job);
	rc = strcmp(jstr(job, "state"), "failed") == 0 ||
	                     strcmp(jstr(job, "state"), "cancelled") == 0
	             ? MOATCTL_EXIT_REFUSED
	             : MOATCTL_EXIT_OK;
out:
	json_decref(job);
	free(path);
	free(e);
	return rc;
}

/* Start a job of kind with the choice options, and follow it. */
static int
m365_job(struct moatctl_req *r, const char *kind, bool choice)
{
	struct moatctl_api *a;
	json_t *body, *job = NULL;
	char id[64];
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if (choice) {
		if ((body = m365_choice_body(r, &rc)) == NULL)
			return rc;
	} else {
		body = json_object();
		if (moatctl_req_opt(r, "--tenant"))
			json_object_set_new(body, "tenant",
			                    json_string(moatctl_req_opt(r, "--tenant")));
	}
	json_object_set_new(body, "kind", json_string(kind));
	rc = moatctl_api_json(a, "POST", "m365/jobs", NULL, body, &job);
	json_decref(body);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	str_copy(id, jstr(job, "id"), sizeof(id));
	json_decref(job);
	return m365_follow(r, a, id,
	                   strcmp(kind, "apply") == 0 && moatctl_req_flag(r, "--no-wait"));
}

int
moatctl_m365_connect(struct moatctl_req *r)
{
	return m365_job(r, "connect", false);
}

int
moatctl_m365_apply(struct moatctl_req *r)
{
	return m365_job(r, "apply", true);
}

int
moatctl_m365_undo(struct moatctl_req *r)
{
	return m365_job(r, "undo", false);
}

/* The choice options as a plan's query. */
static char *
m365_choice_query(struct moatctl_req *r, int *rc)
{
	json_t *body = m365_choice_body(r, rc), *v;
	struct dynbuf b;
	const char *k;
	char *out;

	dynbuf_init(&b, 4096);
	json_object_foreach (body, k, v) {
		char *e;

		if (strcmp(k, "tenant") == 0)
			continue;
		if (json_is_array(v)) {
			size_t i;
			json_t *it;

			dynbuf_printf(&b, "%s%s=", b.len ? "&" : "", k);
			json_array_foreach (v, i, it) {
				e = moatctl_api_escape(json_string_value(it));
				dynbuf_printf(&b, "%s%s", i ? "," : "", e);
				free(e);
			}
			continue;
		}
		e = moatctl_api_escape(json_is_string(v) ? json_string_value(v)
		                       : json_is_true(v) ? "true"
		                                         : "false");
		dynbuf_printf(&b, "%s%s=%s", b.len ? "&" : "", k, e);
		free(e);
	}
	json_decref(body);
	out = b.p ? b.p : xstrdup("");
	return out;
}

int
moatctl_m365_plan(struct moatctl_req *r)
{
	char *q;
	int rc;

	if (!moatctl_req_flag(r, "--offline"))
		return m365_job(r, "plan", true);
	q = m365_choice_query(r, &rc);
	rc = moatctl_req_call(r, "GET", "m365/plan", q, NULL, NULL);
	free(q);
	return rc;
}

int
moatctl_m365_check(struct moatctl_req *r)
{
	struct moatctl_api *a;
	json_t *out = NULL;
	char *path;
	int rc;

	if (moatctl_req_nargs(r) == 0)
		return m365_job(r, "check",
		                moatctl_req_opt(r, "--protect") || moatctl_req_opt(r, "--mode") ||
		                        moatctl_req_flag(r, "--no-bypass-rule") ||
		                        moatctl_req_flag(r, "--enhanced-filtering"));
	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	{
		char *e = moatctl_api_escape(moatctl_req_arg(r, 0));

		path = xasprintf("m365/jobs/%s/check", e);
		free(e);
	}
	rc = moatctl_api_json(a, "POST", path, NULL, NULL, &out);
	free(path);
	json_decref(out);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	return m365_follow(r, a, moatctl_req_arg(r, 0), false);
}

int
moatctl_m365_script(struct moatctl_req *r)
{
	struct moatctl_api *a;
	const char *job = moatctl_req_opt(r, "--job");
	char *path, *q = NULL;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if (job) {
		char *e = moatctl_api_escape(job);

		path = xasprintf("m365/jobs/%s/script", e);
		free(e);
	} else if (moatctl_req_opt(r, "--protect") == NULL) {
		fprintf(stderr, "moatctl: m365 script: say which protections with --protect (all, "
		                "none or a list), or give --job\n");
		return MOATCTL_EXIT_USAGE;
	} else {
		path = xstrdup("m365/script");
		q = m365_choice_query(r, &rc);
	}
	rc = moatctl_api_fetch(a, path, q, stdout);
	free(path);
	free(q);
	return rc;
}

int
moatctl_m365_jobs(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "m365/jobs", NULL, NULL, NULL);
}

int
moatctl_m365_show(struct moatctl_req *r)
{
	struct moatctl_api *a;
	json_t *job = NULL;
	char *path;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	path = moatctl_req_path(r, "m365/jobs");
	rc = moatctl_api_json(a, "GET", path, NULL, NULL, &job);
	free(path);
	if (rc == MOATCTL_EXIT_OK) {
		if (moatctl_req_global(r)->json)
			moatctl_print_json(job);
		else
			m365_print_job(job);
	}
	json_decref(job);
	return rc;
}

int
moatctl_m365_cancel(struct moatctl_req *r)
{
	char *e = moatctl_api_escape(moatctl_req_arg(r, 0));
	char *path = xasprintf("m365/jobs/%s/cancel", e);
	int rc = moatctl_req_call(r, "POST", path, NULL, NULL, "cancelled");

	free(e);
	free(path);
	return rc;
}
