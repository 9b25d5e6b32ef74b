/*
 * api_m365.c - the Microsoft 365 wizard over the admin API (src/m365/m365.h):
 * start a job, show its sign-in code, follow it, check, cancel; plans and
 * PowerShell scripts without signing in; what the tenant was last seen to
 * have. Each wizard step of the portal is one of these calls:
 *   start     POST /api/v1/m365/jobs
 *   code      GET  /api/v1/m365/jobs/{id}   (signin.user_code, verification_uri)
 *   status    GET  /api/v1/m365/jobs/{id}   (state, steps, error)
 *   summary   GET  /api/v1/m365/jobs/{id}   (plan.steps[].why, plan.notes)
 *   check     POST /api/v1/m365/jobs/{id}/check
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "../common/config.h"
#include "../common/util.h"
#include "../m365/m365.h"
#include "api_internal.h"

#define API_M365_LIST_MAX 100

/*
 * The admin's choice from a JSON object (the body, or the query turned
 * into one). Plans and applies must say which protections to switch off
 * ([] for none): the portal ticks them all, as the reference page
 * recommends, but the API does not guess. -1 after a 400.
 */
static int
api_m365_parse(struct api_req *r, const json_t *o, bool need_protections, struct m365_choice *ch,
               bool *given)
{
	const char *field;
	char err[256];

	if (m365_choice_parse(o, ch, given, &field, err, sizeof(err)) < 0) {
		api_error(r, 400, field, "%s", err);
		return -1;
	}
	if (need_protections && json_object_get(o, "protections") == NULL) {
		api_error(r, 400, "protections",
		          "say which protections to switch off: 'protections' is an array of "
		          "antispam, antiphish, antimalware, safelinks, safeattachments ([] for "
		          "none)");
		return -1;
	}
	return 0;
}

static const struct {
	enum m365_job_kind kind;
	const char *audit;
} api_m365_audit[] = {
        {M365_JOB_CONNECT, "m365.connect"}, {M365_JOB_PLAN, "m365.plan"},
        {M365_JOB_APPLY, "m365.apply"},     {M365_JOB_CHECK, "m365.check"},
        {M365_JOB_UNDO, "m365.undo"},
};

void
api_h_m365_job_start(struct api_req *r)
{
	struct m365_job_req q = {.who = r->auth.who};
	const char *kind = NULL, *tenant = NULL;
	char id[M365_JOB_ID_LEN + 1], err[512], target[64];
	json_t *doc;

	if (api_body_str(r, "kind", &kind) < 0 || api_body_str(r, "tenant", &tenant) < 0)
		return;
	if (kind == NULL || m365_job_kind_parse(kind, &q.kind) < 0) {
		api_error(r, 400, "kind", "'kind' must be connect, plan, apply, check or undo");
		return;
	}
	if (tenant && (strlen(tenant) > STORE_M365_NAME_MAX ||
	               strspn(tenant, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                              "0123456789.-") != strlen(tenant))) {
		api_error(r, 400, "tenant", "'tenant' must be a domain name or a tenant id");
		return;
	}
	q.tenant = tenant;
	if (api_m365_parse(r, r->body, q.kind == M365_JOB_PLAN || q.kind == M365_JOB_APPLY,
	                   &q.choice, &q.has_choice) < 0)
		return;
	if (m365_job_start(r->a->m365, &q, id, err, sizeof(err)) < 0) {
		api_error(r, 409, NULL, "%s", err);
		return;
	}
	snprintf(target, sizeof(target), "m365:%s", id);
	for (size_t i = 0; i < sizeof(api_m365_audit) / sizeof(api_m365_audit[0]); i++)
		if (api_m365_audit[i].kind == q.kind)
			api_audit(r, api_m365_audit[i].audit, target);
	doc = m365_job_get(r->a->m365, r->a->store, id);
	api_reply(r, 201, doc ? doc : json_pack("{s:s}", "id", id));
}

void
api_h_m365_jobs(struct api_req *r)
{
	json_t *items = m365_job_list(r->a->m365, r->a->store, API_M365_LIST_MAX);

	if (items == NULL) {
		api_store_error(r, STORE_ERROR);
		return;
	}
	api_reply(r, 200, json_pack("{s:o}", "items", items));
}

void
api_h_m365_job_get(struct api_req *r)
{
	json_t *doc = m365_job_get(r->a->m365, r->a->store, r->args[0]);

	if (doc == NULL) {
		api_error(r, 404, "job", "no Microsoft 365 job %s", r->args[0]);
		return;
	}
	api_reply(r, 200, doc);
}

void
api_h_m365_job_action(struct api_req *r)
{
	char err[256];
	json_t *doc;
	int rc;

	if ((doc = m365_job_get(r->a->m365, r->a->store, r->args[0])) == NULL) {
		api_error(r, 404, "job", "no Microsoft 365 job %s", r->args[0]);
		return;
	}
	json_decref(doc);
	bool cancel = strcmp(r->args[1], "cancel") == 0;

	if (strcmp(r->args[1], "check") == 0)
		rc = m365_job_check(r->a->m365, r->args[0], err, sizeof(err));
	else if (cancel)
		rc = m365_job_cancel(r->a->m365, r->args[0], err, sizeof(err));
	else {
		api_error(r, 404, "action", "no action %s: check or cancel", r->args[1]);
		return;
	}
	if (rc < 0) {
		api_error(r, 409, NULL, "%s", err);
		return;
	}
	if (cancel)
		api_audit(r, "m365.cancel", r->args[0]);
	api_reply(r, 202, m365_job_get(r->a->m365, r->a->store, r->args[0]));
}

void
api_h_m365_job_script(struct api_req *r)
{
	char *script = m365_job_script(r->a->m365, r->a->store, r->args[0]);

	if (script == NULL) {
		api_error(r, 404, "job", "job %s has no plan (only plan and apply jobs have one)",
		          r->args[0]);
		return;
	}
	api_reply_raw(r, 200, "text/plain; charset=utf-8", script, strlen(script),
	              "attachment; filename=\"moat-m365.ps1\"");
	free(script);
}

/* The query of a plan or script request as the object a job's body is. */
static json_t *
api_m365_query(struct api_req *r)
{
	json_t *o = json_object();
	const char *v;

	if ((v = api_query(r, "protections")) != NULL) {
		json_t *a = json_array();
		const char *p = v;

		while (*p) {
			size_t n = strcspn(p, ",");

			if (n)
				json_array_append_new(a, json_stringn(p, n));
			p += n;
			p += *p == ',';
		}
		json_object_set_new(o, "protections", a);
	}
	if ((v = api_query(r, "mode")) != NULL)
		json_object_set_new(o, "mode", json_string(v));
	for (const char *const *b =
	             (const char *const[]){"bypass_rule", "enhanced_filtering", NULL};
	     *b; b++)
		if ((v = api_query(r, *b)) != NULL)
			json_object_set_new(o, *b,
			                    strcmp(v, "true") == 0    ? json_true()
			                    : strcmp(v, "false") == 0 ? json_false()
			                                              : json_string(v));
	return o;
}

static void
api_m365_offline(struct api_req *r, bool script)
{
	json_t *q = api_m365_query(r), *plan;
	struct m365_choice ch;
	bool given;
	char err[512], *text = NULL;

	if (api_m365_parse(r, q, true, &ch, &given) < 0) {
		json_decref(q);
		return;
	}
	json_decref(q);
	if ((plan = m365_offline_plan(r->a->m365, &ch, script ? &text : NULL, err, sizeof(err))) ==
	    NULL) {
		api_error(r, 409, NULL, "%s", err);
		return;
	}
	if (script) {
		json_decref(plan);
		if (text == NULL) {
			api_error(r, 500, NULL, "the script could not be written");
			return;
		}
		api_reply_raw(r, 200, "text/plain; charset=utf-8", text, strlen(text),
		              "attachment; filename=\"moat-m365.ps1\"");
		free(text);
		return;
	}
	api_reply(r, 200, plan);
}

void
api_h_m365_plan(struct api_req *r)
{
	api_m365_offline(r, false);
}

void
api_h_m365_script(struct api_req *r)
{
	api_m365_offline(r, true);
}

/* The newest job that read the tenant: what it was seen to have. */
static int
api_m365_seen(void *arg, const struct store_m365_job *row)
{
	json_t **out = arg, *doc = json_loads(row->data, 0, NULL);
	json_t *detect = json_object_get(doc, "detect");

	if (detect) {
		json_t *at = json_object_get(doc, "detected");

		*out = json_pack("{s:O, s:s, s:I, s:O}", "detect", detect, "tenant", row->tenant,
		                 "seen",
		                 (json_int_t)(json_is_integer(at) ? json_integer_value(at)
		                                                  : row->updated_ms),
		                 "account", json_object_get(doc, "account") ?: json_null());
	}
	json_decref(doc);
	return *out != NULL;
}

void
api_h_m365_tenant(struct api_req *r)
{
	json_t *seen = NULL, *offer = json_array(), *o;
	const struct config *c = r->cfg;
	bool defender = true;

	if (store_m365_job_list(r->a->store, STORE_PAGE_MAX, api_m365_seen, &seen) != STORE_OK) {
		json_decref(offer);
		json_decref(seen);
		api_store_error(r, STORE_ERROR);
		return;
	}
	if (seen)
		defender =
		        json_is_true(json_object_get(json_object_get(seen, "detect"), "defender"));
	for (unsigned bit = 1; bit & M365_P_ALL; bit <<= 1)
		if (defender || !(bit & (M365_P_SAFELINKS | M365_P_SAFEATTACH)))
			json_array_append_new(offer, json_string(m365_prot_name(bit)));
	o = json_pack("{s:o, s:o, s:{s:s, s:s, s:s, s:s, s:s, s:s}}", "seen", seen ?: json_null(),
	              "offer", offer, "config", "tenant", c->m365_tenant, "egress", c->m365_egress,
	              "host", c->m365_host[0] ? c->m365_host : c->hostname, "cert_name",
	              c->m365_cert_name, "authority", c->m365_authority, "exo", c->m365_exo_url);
	api_reply(r, 200, o);
}
