/*
 * m365_job.c - Microsoft 365 jobs (m365.h): one thread per job, which
 * signs in with the device authorization grant (RFC 8628; M365.md 1),
 * reads the tenant through Exchange's InvokeCommand (M365.md 2), asks
 * m365_plan.c what to change, runs it and reads it back.
 *
 * A job is a JSON document, the one thing the API shows: kept under the
 * manager's lock while the job runs (the API thread copies it), written
 * to the store at every state change, and answered from the store once
 * the job has ended. Its steps are rows of their own, written as they
 * run, and every change made in a tenant leaves an undo record.
 *
 * States: starting -> signin (the code and the URL are shown) -> reading
 * -> one of planned/applying/checking/undoing -> waiting (applied; read
 * back every m365_check_every or on request while Exchange catches up)
 * -> done, pending (the sign-in ended before every change showed),
 * failed or cancelled.
 */
#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../store/store.h"
#include "m365.h"
#include "m365_client.h"
#include "m365_plan_internal.h"

#define M365_KEY_MAX    256       /* one relay key (config allows 128 characters) */
#define M365_PENDING_MS 3600000LL /* Exchange may take this long to show a change */

enum job_state {
	JOB_STARTING,
	JOB_SIGNIN,
	JOB_READING,
	JOB_PLANNED,
	JOB_APPLYING,
	JOB_CHECKING,
	JOB_UNDOING,
	JOB_WAITING,
	JOB_DONE,
	JOB_PENDING,
	JOB_FAILED,
	JOB_CANCELLED,
};

static const char *const job_state_names[] = {
        [JOB_STARTING] = "starting", [JOB_SIGNIN] = "signin",     [JOB_READING] = "reading",
        [JOB_PLANNED] = "planned",   [JOB_APPLYING] = "applying", [JOB_CHECKING] = "checking",
        [JOB_UNDOING] = "undoing",   [JOB_WAITING] = "waiting",   [JOB_DONE] = "done",
        [JOB_PENDING] = "pending",   [JOB_FAILED] = "failed",     [JOB_CANCELLED] = "cancelled",
};

static const char *const job_kind_names[] = {
        [M365_JOB_CONNECT] = "connect", [M365_JOB_PLAN] = "plan", [M365_JOB_APPLY] = "apply",
        [M365_JOB_CHECK] = "check",     [M365_JOB_UNDO] = "undo",
};

struct m365_job {
	struct m365 *m;
	char id[M365_JOB_ID_LEN + 1];
	struct m365_job_req req;
	char *tenant;
	char *who;
	struct config *cfg;
	struct policy *pol;

	/* under m->lock */
	json_t *doc;
	enum job_state state;
	bool cancel, check_now, ended;
	bool stopping;       /* cancelled because moatd stops */
	pthread_cond_t cond; /* CLOCK_MONOTONIC; cancel, check_now */

	/* the job thread's own */
	pthread_t thread;
	struct store *store;
	unsigned seq;
	struct m365_endpoint ep;
	struct m365_token tok;
	struct m365_exo exo;
	char tenant_key[STORE_M365_NAME_MAX + 1]; /* the tenant's id, else its name */
	struct m365_job *next;
};

struct m365 {
	struct m365_deps deps;
	char *store_url;
	pthread_mutex_t lock;
	struct config *cfg;
	struct policy *pol;
	struct m365_job *jobs; /* running, and ended ones not yet joined */
};

const char *
m365_job_kind_name(enum m365_job_kind k)
{
	return (unsigned)k < sizeof(job_kind_names) / sizeof(job_kind_names[0]) ? job_kind_names[k]
	                                                                        : "?";
}

int
m365_job_kind_parse(const char *s, enum m365_job_kind *out)
{
	for (size_t i = 0; i < sizeof(job_kind_names) / sizeof(job_kind_names[0]); i++)
		if (strcmp(s, job_kind_names[i]) == 0) {
			*out = (enum m365_job_kind)i;
			return 0;
		}
	return -1;
}

static bool
job_state_final(enum job_state s)
{
	return s == JOB_DONE || s == JOB_PENDING || s == JOB_FAILED || s == JOB_CANCELLED ||
	       s == JOB_PLANNED;
}

/* --- the manager --- */

struct m365 *
m365_new(const struct m365_deps *deps, struct config *cfg, struct policy *pol)
{
	struct m365 *m = xcalloc(1, sizeof(*m));

	m->deps = *deps;
	m->store_url = xstrdup(deps->store_url);
	m->deps.store_url = m->store_url;
	pthread_mutex_init(&m->lock, NULL);
	m->cfg = config_ref(cfg);
	m->pol = pol ? policy_ref(pol) : NULL;
	return m;
}

void
m365_reconfigure(struct m365 *m, struct config *cfg, struct policy *pol)
{
	struct config *oc;
	struct policy *op;

	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	oc = m->cfg;
	op = m->pol;
	m->cfg = config_ref(cfg);
	m->pol = pol ? policy_ref(pol) : NULL;
	pthread_mutex_unlock(&m->lock);
	config_unref(oc);
	policy_unref(op);
}

static void
job_free(struct m365_job *j)
{
	json_decref(j->doc);
	pthread_cond_destroy(&j->cond);
	free(j->tenant);
	free(j->who);
	config_unref(j->cfg);
	policy_unref(j->pol);
	free(j);
}

/* Join and free the jobs that have ended. Called with m->lock held. */
static void
m365_reap(struct m365 *m)
{
	struct m365_job **pp = &m->jobs;

	while (*pp) {
		struct m365_job *j = *pp;

		if (j->ended) {
			*pp = j->next;
			pthread_join(j->thread, NULL);
			job_free(j);
		} else
			pp = &j->next;
	}
}

void
m365_free(struct m365 *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	for (struct m365_job *j = m->jobs; j; j = j->next) {
		j->cancel = true;
		j->stopping = true;
		pthread_cond_broadcast(&j->cond);
	}
	while (m->jobs) {
		struct m365_job *j = m->jobs;

		m->jobs = j->next;
		pthread_mutex_unlock(&m->lock);
		pthread_join(j->thread, NULL);
		pthread_mutex_lock(&m->lock);
		job_free(j);
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_destroy(&m->lock);
	config_unref(m->cfg);
	policy_unref(m->pol);
	free(m->store_url);
	free(m);
}

static struct m365_job *
m365_find(struct m365 *m, const char *id)
{
	for (struct m365_job *j = m->jobs; j; j = j->next)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

/* --- the job document --- */

/* Write the document to the store. The job thread only. */
static void
job_save(struct m365_job *j)
{
	struct store_m365_job row;
	json_t *saved;
	char *text;
	enum store_status st;

	pthread_mutex_lock(&j->m->lock);
	/* the steps are rows of their own (store_m365_step_add) */
	saved = json_copy(j->doc);
	json_object_del(saved, "steps");
	text = json_dumps(saved, JSON_COMPACT);
	json_decref(saved);
	row = (struct store_m365_job){
	        .id = j->id,
	        .tenant = j->tenant_key[0] ? j->tenant_key : j->tenant,
	        .kind = m365_job_kind_name(j->req.kind),
	        .state = job_state_names[j->state],
	        .created_ms = json_integer_value(json_object_get(j->doc, "created")),
	        .updated_ms = json_integer_value(json_object_get(j->doc, "updated")),
	};
	pthread_mutex_unlock(&j->m->lock);
	row.data = text;
	if (j->store && text && (st = store_m365_job_put(j->store, &row)) != STORE_OK)
		log_warn("m365 job %s: not saved: %s", j->id,
		         st == STORE_ERROR ? store_errmsg(j->store) : store_status_str(st));
	free(text);
}

/* Set a member of the document (steals v; NULL removes it). */
static void
job_set(struct m365_job *j, const char *key, json_t *v)
{
	pthread_mutex_lock(&j->m->lock);
	if (v)
		json_object_set_new(j->doc, key, v);
	else
		json_object_del(j->doc, key);
	json_object_set_new(j->doc, "updated", json_integer(wall_ms()));
	pthread_mutex_unlock(&j->m->lock);
}

static void
job_enter_state(struct m365_job *j, enum job_state s)
{
	pthread_mutex_lock(&j->m->lock);
	log_info("m365 job %s (%s): %s -> %s", j->id, m365_job_kind_name(j->req.kind),
	         job_state_names[j->state], job_state_names[s]);
	j->state = s;
	json_object_set_new(j->doc, "state", json_string(job_state_names[s]));
	if (s == JOB_CANCELLED)
		json_object_set_new(j->doc, "note",
		                    json_string(j->stopping
		                                        ? "moatd stopped while this job ran, and "
		                                          "its sign-in ended with it: start it "
		                                          "again"
		                                        : "cancelled by an administrator"));
	json_object_set_new(j->doc, "calls",
	                    json_pack("{s:I, s:I}", "calls", (json_int_t)j->exo.calls, "throttled",
	                              (json_int_t)j->exo.throttled));
	json_object_set_new(j->doc, "updated", json_integer(wall_ms()));
	pthread_mutex_unlock(&j->m->lock);
	job_save(j);
}

static json_t *
job_error_json(const struct m365_error *e)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "kind", m365_err_kind_name(e->kind), "explain",
	                      e->explain, "action", e->action);

	if (e->text[0])
		json_object_set_new(o, "text", json_string(e->text));
	if (e->code[0])
		json_object_set_new(o, "code", json_string(e->code));
	if (e->cmdlet[0])
		json_object_set_new(o, "cmdlet", json_string(e->cmdlet));
	if (e->errid[0])
		json_object_set_new(o, "error_id", json_string(e->errid));
	if (e->aadsts)
		json_object_set_new(o, "aadsts", json_integer(e->aadsts));
	if (e->http_status)
		json_object_set_new(o, "http_status", json_integer(e->http_status));
	return o;
}

/* End in failed (or cancelled) with e explained. */
static void
job_fail(struct m365_job *j, struct m365_error *e)
{
	if (e->kind == M365_E_CANCELLED) {
		job_enter_state(j, JOB_CANCELLED);
		return;
	}
	if (e->explain[0] == '\0')
		m365_error_explain(e);
	log_warn("m365 job %s: %s%s%s", j->id, e->explain, e->text[0] ? ": " : "", e->text);
	job_set(j, "error", job_error_json(e));
	job_enter_state(j, JOB_FAILED);
}

/* A failure of moat's own (configuration, the tenant lacks what the choice needs). */
static void
job_fail_text(struct m365_job *j, const char *explain, const char *action)
{
	struct m365_error e = {.kind = M365_E_PROTOCOL};

	str_copy(e.explain, explain, sizeof(e.explain));
	str_copy(e.action, action, sizeof(e.action));
	job_set(j, "error",
	        json_pack("{s:s, s:s, s:s}", "kind", "moat", "explain", e.explain, "action",
	                  e.action));
	log_warn("m365 job %s: %s", j->id, explain);
	job_enter_state(j, JOB_FAILED);
}

/* --- waits --- */

static struct timespec
mono_after(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* Wait ms unless cancelled (false) or, when wake_on_check, asked to check. */
static bool
job_wait(struct m365_job *j, int64_t ms, bool wake_on_check)
{
	struct timespec until = mono_after(ms > 0 ? ms : 0);
	bool ok;

	pthread_mutex_lock(&j->m->lock);
	while (!j->cancel && !(wake_on_check && j->check_now))
		if (pthread_cond_timedwait(&j->cond, &j->m->lock, &until) == ETIMEDOUT)
			break;
	ok = !j->cancel;
	pthread_mutex_unlock(&j->m->lock);
	return ok;
}

static bool
job_sleep(void *arg, int64_t ms)
{
	return job_wait(arg, ms, false);
}

/* m365_endpoint.aborted: the job was cancelled (or moatd is stopping). */
static bool
job_aborted(void *arg)
{
	struct m365_job *j = arg;
	bool c;

	pthread_mutex_lock(&j->m->lock);
	c = j->cancel;
	pthread_mutex_unlock(&j->m->lock);
	return c;
}

/* --- steps and records --- */

/* Record step seq: what was asked and what came back. */
static void
job_step_record(struct m365_job *j, const struct m365_step *s, const char *status,
                const struct m365_error *e, json_t *warnings)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:I}", "seq", (json_int_t)++j->seq,
	                      "item", s->item, "cmdlet", s->cmdlet, "params",
	                      s->params ? json_deep_copy(s->params) : json_object(), "why",
	                      s->why ? s->why : "", "status", status, "at", (json_int_t)wall_ms());
	json_t *steps;
	char *text;

	if (e)
		json_object_set_new(o, "error", job_error_json(e));
	if (warnings && json_array_size(warnings))
		json_object_set(o, "warnings", warnings);
	text = json_dumps(o, JSON_COMPACT);
	if (text && store_m365_step_add(j->store, j->id, j->seq, wall_ms(), text) != STORE_OK)
		log_warn("m365 job %s: step %u not recorded: %s", j->id, j->seq,
		         store_errmsg(j->store));
	free(text);
	pthread_mutex_lock(&j->m->lock);
	steps = json_object_get(j->doc, "steps");
	if (!json_is_array(steps)) {
		steps = json_array();
		json_object_set_new(j->doc, "steps", steps);
	}
	json_array_append_new(steps, o);
	pthread_mutex_unlock(&j->m->lock);
}

/* --- reading the tenant --- */

/*
 * Every kind of m365_read_kinds[] into one snapshot. The first read
 * (Get-AcceptedDomain) is the harmless call every admin may make: when it
 * is refused, the account lacks the role or its API access is disabled.
 * A Defender kind answering 403 with an empty body is null (not licensed).
 */
static json_t *
job_read_tenant(struct m365_job *j, struct m365_error *e)
{
	json_t *snap = json_object();

	for (size_t i = 0; m365_read_kinds[i]; i++) {
		const char *kind = m365_read_kinds[i];
		char cmdlet[80];
		json_t *values = NULL;

		snprintf(cmdlet, sizeof(cmdlet), "Get-%s", kind);
		if (m365_invoke(&j->exo, cmdlet, NULL, &values, NULL, e) == 0) {
			json_object_set_new(snap, kind, values);
			continue;
		}
		if (e->kind == M365_E_UNAVAILABLE && m365_kind_defender(kind)) {
			json_object_set_new(snap, kind, json_null());
			*e = (struct m365_error){0};
			continue;
		}
		if (i == 0 && e->kind == M365_E_UNAVAILABLE) {
			/*
			 * M365.md 2: the first, harmless call refused means no role
			 * or no API access, not a cmdlet the tenant lacks.
			 */
			e->kind = M365_E_NOT_ALLOWED;
			e->explain[0] = '\0';
			m365_error_explain(e);
		}
		json_decref(snap);
		return NULL;
	}
	return snap;
}

/* --- moat's side --- */

struct job_site {
	struct m365_site site;
	char **egress;
	char **domains;
	char **keys;
	size_t n; /* domains and keys */
	char host[256];
};

static void
job_site_free(struct job_site *js)
{
	for (size_t i = 0; i < js->site.negress; i++)
		free(js->egress[i]);
	for (size_t i = 0; i < js->n; i++) {
		free(js->domains[i]);
		free(js->keys[i]);
	}
	free(js->egress);
	free(js->domains);
	free(js->keys);
}

/* Split m365_egress ("a, b c") into its entries. */
static void
job_site_egress(struct job_site *js, const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n;

		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n == 0)
			break;
		js->egress = xrealloc(js->egress, (js->site.negress + 1) * sizeof(char *));
		js->egress[js->site.negress++] = xstrndup(p, n);
		p += n;
	}
	js->site.egress = (const char *const *)js->egress;
}

/*
 * moat's side of the plan: the configuration, and the protected domains
 * the tenant accepts (accepted may be NULL: offline, every protected
 * domain) with their relay keys.
 */
static void
job_site_build(struct m365 *m, struct config *cfg, struct policy *pol, const json_t *accepted,
               struct job_site *js)
{
	size_t nd = pol ? policy_domain_count(pol) : 0;

	memset(js, 0, sizeof(*js));
	job_site_egress(js, cfg->m365_egress);
	str_copy(js->host, cfg->m365_host[0] ? cfg->m365_host : cfg->hostname, sizeof(js->host));
	js->site.host = js->host;
	js->site.cert_name = cfg->m365_cert_name;
	js->site.key_header = cfg->relay_key_header;
	js->domains = xcalloc(nd + 1, sizeof(char *));
	js->keys = xcalloc(nd + 1, sizeof(char *));
	for (size_t i = 0; i < nd; i++) {
		const char *d = policy_domain_name(pol, i);
		bool take = accepted == NULL;
		size_t k;
		json_t *a;
		char key[M365_KEY_MAX];

		json_array_foreach (accepted, k, a) {
			const char *name = json_string_value(json_object_get(a, "DomainName"));

			if (name == NULL)
				name = json_string_value(json_object_get(a, "Name"));
			if (name && str_ieq(name, d))
				take = true;
		}
		if (!take)
			continue;
		key[0] = '\0';
		m->deps.relay_key(m->deps.arg, pol, d, key, sizeof(key));
		if (strlen(key) + 1 >= sizeof(key))
			fatalx("m365: the relay key of %s does not fit %zu octets", d, sizeof(key));
		js->domains[js->n] = xstrdup(d);
		js->keys[js->n++] = xstrdup(key);
	}
	js->site.domains = (const char *const *)js->domains;
	js->site.ndomains = js->n;
	js->site.keys = (const char *const *)js->keys;
	js->site.nkeys = js->n;
}

/* What a choice needs from the configuration: NULL, or what is missing. */
static const char *
job_choice_lacks(const struct config *cfg, const struct m365_choice *ch)
{
	bool rule = ch->bypass_rule && !(ch->mode == M365_MODE_MX && ch->enhanced_filtering);

	if ((rule || ch->mode != M365_MODE_NONE) && cfg->m365_egress[0] == '\0')
		return "m365_egress is not set: the bypass-clutter rule and the connectors trust "
		       "the public addresses moat sends from; set them in the configuration";
	if (ch->mode == M365_MODE_RELAY && cfg->m365_host[0] == '\0' && cfg->hostname[0] == '\0')
		return "relay mode needs the name Exchange sends inbound mail to: set m365_host";
	if (ch->enhanced_filtering && ch->mode != M365_MODE_MX)
		return "Enhanced Filtering is for MX mode (mode \"mx\")";
	return NULL;
}

json_t *
m365_choice_json(const struct m365_choice *ch)
{
	json_t *p = json_array();

	for (unsigned bit = 1; bit & M365_P_ALL; bit <<= 1)
		if (ch->protections & bit)
			json_array_append_new(p, json_string(m365_prot_name(bit)));
	return json_pack("{s:o, s:b, s:s, s:b}", "protections", p, "bypass_rule", ch->bypass_rule,
	                 "mode", m365_mode_name(ch->mode), "enhanced_filtering",
	                 ch->enhanced_filtering);
}

#define CHOICE_FAIL(f, ...)                                                                        \
	do {                                                                                       \
		*field = (f);                                                                      \
		snprintf(err, errsize, __VA_ARGS__);                                               \
		return -1;                                                                         \
	} while (0)

int
m365_choice_parse(const json_t *o, struct m365_choice *ch, bool *given, const char **field,
                  char *err, size_t errsize)
{
	json_t *v, *it;
	size_t i;

	*ch = (struct m365_choice){.bypass_rule = true};
	*given = false;
	if ((v = json_object_get(o, "protections")) != NULL) {
		*given = true;
		if (!json_is_array(v))
			CHOICE_FAIL("protections",
			            "'protections' must be an array of antispam, "
			            "antiphish, antimalware, safelinks, safeattachments");
		json_array_foreach (v, i, it) {
			unsigned bit =
			        json_is_string(it) ? m365_prot_parse(json_string_value(it)) : 0;

			if (bit == 0)
				CHOICE_FAIL(
				        "protections",
				        "'protections' must be an array of antispam, antiphish, "
				        "antimalware, safelinks, safeattachments");
			ch->protections |= bit;
		}
	}
	if ((v = json_object_get(o, "bypass_rule")) != NULL) {
		*given = true;
		if (!json_is_boolean(v))
			CHOICE_FAIL("bypass_rule", "'bypass_rule' must be true or false");
		ch->bypass_rule = json_is_true(v);
	}
	if ((v = json_object_get(o, "enhanced_filtering")) != NULL) {
		*given = true;
		if (!json_is_boolean(v))
			CHOICE_FAIL("enhanced_filtering",
			            "'enhanced_filtering' must be true or false");
		ch->enhanced_filtering = json_is_true(v);
	}
	if ((v = json_object_get(o, "mode")) != NULL) {
		*given = true;
		if (!json_is_string(v) || m365_mode_parse(json_string_value(v), &ch->mode) < 0)
			CHOICE_FAIL("mode", "'mode' must be none, relay or mx");
	}
	if (ch->enhanced_filtering && ch->mode != M365_MODE_MX)
		CHOICE_FAIL("enhanced_filtering",
		            "Enhanced Filtering is for MX mode: set 'mode' to \"mx\"");
	if (ch->enhanced_filtering)
		ch->bypass_rule = false; /* never both (M365.md 3) */
	return 0;
}

/* --- the kinds of job --- */

/* Keep what undo needs of step s, which ran (or may have run). */
static void
job_change_record(struct m365_job *j, const struct m365_step *s)
{
	char *text = json_dumps(s->undo, JSON_COMPACT);

	if (text == NULL ||
	    store_m365_change_add(j->store, j->tenant_key, j->id, wall_ms(), text) != STORE_OK)
		log_error("m365 job %s: the undo record of %s was not kept: %s", j->id, s->cmdlet,
		          store_errmsg(j->store));
	free(text);
}

/*
 * A failure after which Exchange may still have run the cmdlet: no answer,
 * a garbled one, or a cancel in the middle of the exchange.
 */
static bool
job_failure_unclear(enum m365_err_kind k)
{
	return k == M365_E_NETWORK || k == M365_E_PROTOCOL || k == M365_E_CANCELLED;
}

/* Run the plan's steps; false when one failed (the job has failed then). */
static bool
job_run_steps(struct m365_job *j, const struct m365_plan *p, json_t *applied, bool record_undo)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct m365_step *s = &p->steps[i];
		struct m365_error e = {0};
		json_t *values = NULL, *warnings = NULL;

		if (m365_invoke(&j->exo, s->cmdlet, s->params, &values, &warnings, &e) < 0) {
			/* Disabling or removing what is already gone: nothing to do. */
			if (e.kind == M365_E_NOT_FOUND &&
			    (strncmp(s->cmdlet, "Remove-", 7) == 0 ||
			     strncmp(s->cmdlet, "Disable-", 8) == 0)) {
				job_step_record(j, s, "skipped", &e, NULL);
				continue;
			}
			job_step_record(j, s, "failed", &e, NULL);
			if (record_undo && s->undo && job_failure_unclear(e.kind))
				job_change_record(j, s);
			job_fail(j, &e);
			return false;
		}
		json_decref(values);
		job_step_record(j, s, "done", NULL, warnings);
		json_decref(warnings);
		if (applied)
			json_array_append_new(applied, json_string(s->item));
		if (record_undo && s->undo)
			job_change_record(j, s);
	}
	return true;
}

/* How many check items have status st. */
static size_t
check_count(const json_t *check, const char *st)
{
	size_t i, n = 0;
	json_t *c;

	json_array_foreach (check, i, c)
		if (strcmp(json_string_value(json_object_get(c, "status")) ?: "", st) == 0)
			n++;
	return n;
}

/*
 * Read back until nothing is pending ("Check configuration"): at once,
 * then every m365_check_every or when asked, while the token lasts.
 */
static void
job_check_loop(struct m365_job *j, const struct m365_site *site, const struct m365_choice *ch,
               const json_t *applied)
{
	for (;;) {
		struct m365_error e = {0};
		json_t *snap, *check;
		int64_t left;

		job_enter_state(j, JOB_CHECKING);
		pthread_mutex_lock(&j->m->lock);
		j->check_now = false;
		pthread_mutex_unlock(&j->m->lock);
		if ((snap = job_read_tenant(j, &e)) == NULL) {
			job_fail(j, &e);
			return;
		}
		check = m365_plan_check(site, ch, snap, applied);
		json_decref(snap);
		job_set(j, "checked", json_integer(wall_ms()));
		job_set(j, "check", check);
		if (check_count(check, "pending") == 0) {
			job_enter_state(j, JOB_DONE);
			return;
		}
		left = j->tok.expires_at_ms - wall_ms() - 60000;
		if (left <= 0) {
			job_set(j, "note",
			        json_string("Exchange had not shown every change when the sign-in "
			                    "ended; it can take up to 30 minutes. Run a check "
			                    "again later."));
			job_enter_state(j, JOB_PENDING);
			return;
		}
		job_enter_state(j, JOB_WAITING);
		if (!job_wait(j,
		              (int64_t)j->cfg->m365_check_every < left
		                      ? (int64_t)j->cfg->m365_check_every
		                      : left,
		              true)) {
			job_enter_state(j, JOB_CANCELLED);
			return;
		}
	}
}

static int
change_collect(void *arg, int64_t id, const char *undo)
{
	json_t *a = arg, *o = json_loads(undo, 0, NULL);

	if (o) {
		json_object_set_new(o, "_id", json_integer(id));
		json_array_append_new(a, o);
	}
	return 0;
}

/* The last apply job in a tenant: its choice, what it applied, when. */
struct last_choice {
	const char *tenant;
	json_t *choice, *applied;
	int64_t updated_ms;
};

static int
last_choice_fn(void *arg, const struct store_m365_job *row)
{
	struct last_choice *lc = arg;
	json_t *doc;

	if (strcmp(row->kind, "apply") != 0 || !str_ieq(row->tenant, lc->tenant))
		return 0;
	if ((doc = json_loads(row->data, 0, NULL)) == NULL)
		return 0;
	lc->choice = json_incref(json_object_get(doc, "choice"));
	lc->updated_ms = row->updated_ms;
	/*
	 * Still pending: what its last read-back had not seen yet, or all it
	 * applied if it never read back. What it saw as wanted and differs
	 * now has drifted since.
	 */
	if (json_is_array(json_object_get(doc, "check"))) {
		size_t i;
		json_t *c;

		lc->applied = json_array();
		json_array_foreach (json_object_get(doc, "check"), i, c) {
			if (strcmp(json_string_value(json_object_get(c, "status")) ?: "",
			           "pending") == 0)
				json_array_append(lc->applied, json_object_get(c, "item"));
		}
	} else
		lc->applied = json_incref(json_object_get(doc, "applied"));
	json_decref(doc);
	return lc->choice != NULL;
}

static void
job_undo(struct m365_job *j, const json_t *snap)
{
	json_t *changes = json_array();
	struct m365_plan plan = {0};
	char err[256];
	size_t i;
	json_t *c;

	if (store_m365_change_list(j->store, j->tenant_key, change_collect, changes) != STORE_OK) {
		job_fail_text(j, "the store could not list what moat changed in this tenant",
		              "see moatd's log");
		goto out;
	}
	if (m365_plan_undo(changes, snap, &plan, err, sizeof(err)) < 0) {
		job_fail_text(j, err, "see moatd's log");
		goto out;
	}
	job_set(j, "plan", m365_plan_json(&plan));
	job_enter_state(j, JOB_UNDOING);
	if (!job_run_steps(j, &plan, NULL, false))
		goto out;
	json_array_foreach (changes, i, c)
		store_m365_change_undone(j->store, json_integer_value(json_object_get(c, "_id")),
		                         wall_ms());
	job_set(j, "summary",
	        json_sprintf("%zu change(s) of moat undone with %zu cmdlet(s)",
	                     json_array_size(changes), plan.n));
	job_enter_state(j, JOB_DONE);
out:
	m365_plan_free(&plan);
	json_decref(changes);
}

/* After the sign-in: read, then what the kind asks. */
static void
job_work(struct m365_job *j)
{
	struct m365_error e = {0};
	struct job_site js;
	struct m365_choice ch = j->req.choice, lc_ch;
	struct m365_plan plan = {0};
	json_t *snap, *applied = json_array();
	char err[512], *script;

	job_enter_state(j, JOB_READING);
	if ((snap = job_read_tenant(j, &e)) == NULL) {
		json_decref(applied);
		job_fail(j, &e);
		return;
	}
	job_set(j, "detect", m365_plan_detect(snap));
	job_set(j, "detected", json_integer(wall_ms())); /* before this job's own changes */
	job_site_build(j->m, j->cfg, j->pol, json_object_get(snap, "AcceptedDomain"), &js);
	if (j->req.kind == M365_JOB_CHECK) {
		struct last_choice lc = {.tenant = j->tenant_key};
		const char *field;
		bool given, none;

		store_m365_job_list(j->store, STORE_PAGE_MAX, last_choice_fn, &lc);
		none = lc.choice == NULL ||
		       m365_choice_parse(lc.choice, &lc_ch, &given, &field, err, sizeof(err)) < 0;
		/* what the last apply changed may not show yet (M365.md 2: up to ~30 min) */
		if (!none && json_is_array(lc.applied) &&
		    wall_ms() - lc.updated_ms < M365_PENDING_MS)
			json_array_extend(applied, lc.applied);
		if (!j->req.has_choice && none) {
			json_decref(lc.choice);
			json_decref(lc.applied);
			job_fail_text(j, "moat has applied nothing to this tenant yet",
			              "run an apply first, or say what to check");
			goto out;
		}
		if (!j->req.has_choice) {
			ch = lc_ch;
			job_set(j, "choice", json_incref(lc.choice));
		}
		json_decref(lc.choice);
		json_decref(lc.applied);
	}
	switch (j->req.kind) {
	case M365_JOB_CONNECT:
		job_enter_state(j, JOB_DONE);
		break;
	case M365_JOB_CHECK:
		job_set(j, "check", m365_plan_check(&js.site, &ch, snap, applied));
		job_set(j, "checked", json_integer(wall_ms()));
		job_enter_state(j, JOB_DONE);
		break;
	case M365_JOB_UNDO:
		job_undo(j, snap);
		break;
	case M365_JOB_PLAN:
	case M365_JOB_APPLY:
		if ((ch.bypass_rule || ch.mode != M365_MODE_NONE) && js.n == 0) {
			job_fail_text(
			        j,
			        "none of moat's protected domains is an accepted domain of this "
			        "tenant, so there is no relay key for the rule to require",
			        "add the tenant's domains to moat (or sign in to the tenant "
			        "whose mail moat protects)");
			break;
		}
		if (m365_plan_apply(&js.site, &ch, snap, &plan, err, sizeof(err)) < 0) {
			job_fail_text(j, err, "change moat's m365_* settings or the choice");
			break;
		}
		job_set(j, "plan", m365_plan_json(&plan));
		if ((script = m365_plan_script(&plan)) != NULL)
			job_set(j, "script", json_string(script));
		free(script);
		if (j->req.kind == M365_JOB_PLAN) {
			job_enter_state(j, JOB_PLANNED);
			break;
		}
		job_enter_state(j, JOB_APPLYING);
		if (!job_run_steps(j, &plan, applied, true))
			break;
		job_set(j, "applied", json_incref(applied));
		job_check_loop(j, &js.site, &ch, applied);
		break;
	}
out:
	m365_plan_free(&plan);
	job_site_free(&js);
	json_decref(snap);
	json_decref(applied);
}

static bool
job_kind_changes(enum m365_job_kind k)
{
	return k == M365_JOB_APPLY || k == M365_JOB_UNDO;
}

/*
 * Take the signed-in tenant as this job's: NULL, or the id of another
 * running job that changes the same tenant when this one would too (two
 * applies at once would race each other's New- cmdlets).
 */
static char *
job_tenant_claim(struct m365_job *j)
{
	char *other = NULL;

	pthread_mutex_lock(&j->m->lock);
	if (job_kind_changes(j->req.kind))
		for (struct m365_job *o = j->m->jobs; o; o = o->next)
			if (o != j && !o->ended && !job_state_final(o->state) &&
			    job_kind_changes(o->req.kind) &&
			    str_ieq(o->tenant_key, j->tok.tenant_id)) {
				other = xstrdup(o->id);
				break;
			}
	if (other == NULL)
		str_copy(j->tenant_key, j->tok.tenant_id, sizeof(j->tenant_key));
	pthread_mutex_unlock(&j->m->lock);
	return other;
}

static void *
job_main(void *arg)
{
	struct m365_job *j = arg;
	struct m365_device dev = {0};
	struct m365_error e = {0};
	char err[256], *other;

	if ((j->store = store_open(j->m->store_url, err, sizeof(err))) == NULL) {
		log_error("m365 job %s: store: %s", j->id, err);
		pthread_mutex_lock(&j->m->lock);
		j->state = JOB_FAILED;
		json_object_set_new(j->doc, "state", json_string("failed"));
		json_object_set_new(j->doc, "error",
		                    json_pack("{s:s, s:s, s:s}", "kind", "moat", "explain",
		                              "moat could not open its store", "action", err));
		goto end;
	}
	job_save(j);
	if (m365_device_start(&j->ep, &dev, &e) < 0) {
		job_fail(j, &e);
		goto done;
	}
	job_set(j, "signin",
	        json_pack("{s:s, s:s, s:s, s:I, s:i}", "user_code", dev.user_code,
	                  "verification_uri", dev.verification_uri, "message", dev.message,
	                  "expires_at", (json_int_t)dev.expires_at_ms, "interval", dev.interval_s));
	job_enter_state(j, JOB_SIGNIN);
	if (m365_device_wait(&j->ep, &dev, &j->exo.cancel, &j->tok, &e) < 0) {
		m365_device_clear(&dev);
		job_set(j, "signin", NULL);
		job_fail(j, &e);
		goto done;
	}
	m365_device_clear(&dev);
	job_set(j, "signin", NULL);
	if (j->tok.upn[0] == '\0' || j->tok.tenant_id[0] == '\0') {
		job_fail_text(j,
		              "the sign-in did not say which account and tenant signed in (no "
		              "id_token)",
		              "sign in again; if it persists, check m365_client_id");
		goto done;
	}
	if ((other = job_tenant_claim(j)) != NULL) {
		char explain[256];

		snprintf(explain, sizeof(explain), "job %s is changing this tenant right now",
		         other);
		free(other);
		job_fail_text(j, explain, "wait for it to end (or cancel it), then start again");
		goto done;
	}
	job_set(j, "account", json_string(j->tok.upn));
	job_set(j, "tenant_id", json_string(j->tenant_key));
	j->exo.tenant = j->tenant_key;
	j->exo.upn = j->tok.upn;
	j->exo.token = j->tok.access;
	job_work(j);
done:
	m365_token_clear(&j->tok);
	j->exo.token = NULL;
	if (!job_state_final(j->state))
		job_enter_state(j, JOB_FAILED);
	else
		job_save(j);
	store_close(j->store);
	j->store = NULL;
	pthread_mutex_lock(&j->m->lock);
end:
	j->ended = true;
	pthread_mutex_unlock(&j->m->lock);
	return NULL;
}

/* --- what the API calls --- */

int
m365_job_start(struct m365 *m, const struct m365_job_req *r, char *id, char *err, size_t errsize)
{
	struct m365_job *j;
	const char *lacks;
	unsigned char rnd[M365_JOB_ID_LEN / 2];
	size_t running = 0;
	pthread_condattr_t ca;
	int64_t now = wall_ms();
	int rc;

	pthread_mutex_lock(&m->lock);
	m365_reap(m);
	for (j = m->jobs; j; j = j->next)
		running++;
	if (running >= M365_JOBS_MAX) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errsize,
		         "%d Microsoft 365 jobs are running already; wait or cancel one",
		         M365_JOBS_MAX);
		return -1;
	}
	if ((r->kind == M365_JOB_PLAN || r->kind == M365_JOB_APPLY ||
	     (r->kind == M365_JOB_CHECK && r->has_choice)) &&
	    (lacks = job_choice_lacks(m->cfg, &r->choice)) != NULL) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errsize, "%s", lacks);
		return -1;
	}
	j = xcalloc(1, sizeof(*j));
	j->m = m;
	j->req = *r;
	j->cfg = config_ref(m->cfg);
	j->pol = m->pol ? policy_ref(m->pol) : NULL;
	pthread_mutex_unlock(&m->lock);

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		fatalx("RAND_bytes failed");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(j->id + 2 * i, 3, "%02x", rnd[i]);
	j->tenant = xstrdup(r->tenant && r->tenant[0] ? r->tenant
	                    : j->cfg->m365_tenant[0]  ? j->cfg->m365_tenant
	                                              : "organizations");
	j->who = xstrdup(r->who ? r->who : "");
	j->req.tenant = j->tenant;
	j->req.who = j->who;
	j->ep = (struct m365_endpoint){
	        .authority = j->cfg->m365_authority,
	        .tenant = j->tenant,
	        .client_id = j->cfg->m365_client_id,
	        .exo = j->cfg->m365_exo_url,
	        .ca_file = j->cfg->m365_ca_file,
	        .timeout_s = (long)(j->cfg->m365_timeout / 1000),
	        .aborted = job_aborted,
	        .abort_arg = j,
	};
	j->exo.ep = &j->ep;
	j->exo.cancel = (struct m365_cancel){.sleep = job_sleep, .arg = j};
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cond, &ca);
	pthread_condattr_destroy(&ca);
	j->doc = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "id", j->id, "kind",
	                   m365_job_kind_name(r->kind), "state", "starting", "tenant", j->tenant,
	                   "created", (json_int_t)now, "updated", (json_int_t)now, "who", j->who);
	if (r->kind != M365_JOB_CONNECT && r->kind != M365_JOB_UNDO &&
	    (r->kind != M365_JOB_CHECK || r->has_choice))
		json_object_set_new(j->doc, "choice", m365_choice_json(&r->choice));

	pthread_mutex_lock(&m->lock);
	if ((rc = pthread_create(&j->thread, NULL, job_main, j)) != 0) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errsize, "cannot start a thread: %s", strerror(rc));
		job_free(j);
		return -1;
	}
	j->next = m->jobs;
	m->jobs = j;
	pthread_mutex_unlock(&m->lock);
	str_copy(id, j->id, M365_JOB_ID_LEN + 1);
	log_info("m365 job %s (%s) started by %s for %s", j->id, m365_job_kind_name(r->kind),
	         j->who, j->tenant);
	return 0;
}

/* A job row left unfinished by a moatd that stopped: failed, saying so. */
static int
job_recover_fn(void *arg, const struct store_m365_job *row)
{
	static const char *const live[] = {"starting", "signin",  "reading", "applying",
	                                   "checking", "undoing", "waiting"};
	json_t *list = arg, *doc;

	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (strcmp(row->state, live[i]) != 0)
			continue;
		if ((doc = json_loads(row->data, 0, NULL)) == NULL)
			return 0;
		json_object_del(doc, "signin");
		json_object_set_new(doc, "state", json_string("failed"));
		json_object_set_new(doc, "updated", json_integer(wall_ms()));
		json_object_set_new(
		        doc, "error",
		        json_pack("{s:s, s:s, s:s}", "kind", "moat", "explain",
		                  "moatd stopped while this job ran; its sign-in ended with it",
		                  "action",
		                  "run a check to see what the tenant has, then apply again if "
		                  "needed"));
		json_array_append_new(list,
		                      json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", row->id,
		                                "tenant", row->tenant, "kind", row->kind, "created",
		                                (json_int_t)row->created_ms, "doc", doc));
		return 0;
	}
	return 0;
}

void
m365_recover(struct m365 *m, struct store *store)
{
	json_t *list = json_array(), *o;
	size_t i;

	(void)m;
	if (store_m365_job_list(store, STORE_PAGE_MAX, job_recover_fn, list) != STORE_OK)
		log_warn("m365: the jobs of an earlier run were not looked at: %s",
		         store_errmsg(store));
	json_array_foreach (list, i, o) {
		char *text = json_dumps(json_object_get(o, "doc"), JSON_COMPACT);
		struct store_m365_job row = {
		        .id = json_string_value(json_object_get(o, "id")),
		        .tenant = json_string_value(json_object_get(o, "tenant")),
		        .kind = json_string_value(json_object_get(o, "kind")),
		        .state = "failed",
		        .created_ms = json_integer_value(json_object_get(o, "created")),
		        .updated_ms = wall_ms(),
		        .data = text,
		};

		if (text == NULL || store_m365_job_put(store, &row) != STORE_OK)
			log_warn("m365 job %s: could not be marked failed", row.id);
		else
			log_info("m365 job %s (%s) was cut short by a stop of moatd: failed",
			         row.id, row.kind);
		free(text);
	}
	json_decref(list);
}

struct job_load {
	json_t *doc;
};

static int
step_collect(void *arg, unsigned seq, int64_t time_ms, const char *data)
{
	json_t *o = json_loads(data, 0, NULL);

	if (o)
		json_array_append_new(arg, o);
	return 0;
}

static int
job_load_fn(void *arg, const struct store_m365_job *row)
{
	struct job_load *l = arg;

	l->doc = json_loads(row->data, 0, NULL);
	return 1;
}

json_t *
m365_job_get(struct m365 *m, struct store *store, const char *id)
{
	struct m365_job *j;
	struct job_load l = {0};
	json_t *steps;

	pthread_mutex_lock(&m->lock);
	if ((j = m365_find(m, id)) != NULL && !j->ended) {
		json_t *doc = json_deep_copy(j->doc);

		pthread_mutex_unlock(&m->lock);
		return doc;
	}
	pthread_mutex_unlock(&m->lock);
	if (store_m365_job_get(store, id, job_load_fn, &l) != STORE_OK || l.doc == NULL)
		return NULL;
	steps = json_array();
	store_m365_step_list(store, id, step_collect, steps);
	json_object_set_new(l.doc, "steps", steps);
	return l.doc;
}

static int
job_list_fn(void *arg, const struct store_m365_job *row)
{
	json_t *doc = json_loads(row->data, 0, NULL);

	if (doc == NULL)
		return 0;
	json_object_del(doc, "steps");
	json_object_del(doc, "script");
	json_object_del(doc, "plan");
	json_array_append_new(arg, doc);
	return 0;
}

json_t *
m365_job_list(struct m365 *m, struct store *store, unsigned limit)
{
	json_t *a = json_array();

	(void)m;
	if (store_m365_job_list(store, limit, job_list_fn, a) != STORE_OK) {
		json_decref(a);
		return NULL;
	}
	return a;
}

int
m365_job_check(struct m365 *m, const char *id, char *err, size_t errsize)
{
	struct m365_job *j;
	int ret = -1;

	pthread_mutex_lock(&m->lock);
	if ((j = m365_find(m, id)) == NULL || j->ended || job_state_final(j->state))
		snprintf(err, errsize, "job %s is not running: start a check job instead", id);
	else if (j->req.kind != M365_JOB_APPLY || j->state == JOB_SIGNIN ||
	         j->state == JOB_STARTING)
		snprintf(err, errsize, "job %s has nothing to check yet (%s)", id,
		         job_state_names[j->state]);
	else {
		j->check_now = true;
		pthread_cond_broadcast(&j->cond);
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int
m365_job_cancel(struct m365 *m, const char *id, char *err, size_t errsize)
{
	struct m365_job *j;
	int ret = -1;

	pthread_mutex_lock(&m->lock);
	if ((j = m365_find(m, id)) == NULL || j->ended || job_state_final(j->state))
		snprintf(err, errsize, "job %s is not running", id);
	else {
		j->cancel = true;
		pthread_cond_broadcast(&j->cond);
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

json_t *
m365_offline_plan(struct m365 *m, const struct m365_choice *ch, char **script, char *err,
                  size_t errsize)
{
	struct config *cfg;
	struct policy *pol;
	struct job_site js;
	struct m365_plan plan = {0};
	const char *lacks;
	json_t *out = NULL;

	pthread_mutex_lock(&m->lock);
	cfg = config_ref(m->cfg);
	pol = m->pol ? policy_ref(m->pol) : NULL;
	pthread_mutex_unlock(&m->lock);
	if ((lacks = job_choice_lacks(cfg, ch)) != NULL) {
		snprintf(err, errsize, "%s", lacks);
		goto out;
	}
	job_site_build(m, cfg, pol, NULL, &js);
	if (m365_plan_apply(&js.site, ch, NULL, &plan, err, errsize) == 0) {
		out = m365_plan_json(&plan);
		if (script)
			*script = m365_plan_script(&plan);
	}
	m365_plan_free(&plan);
	job_site_free(&js);
out:
	config_unref(cfg);
	policy_unref(pol);
	return out;
}

char *
m365_job_script(struct m365 *m, struct store *store, const char *id)
{
	json_t *doc = m365_job_get(m, store, id);
	const char *s = json_string_value(json_object_get(doc, "script"));
	char *out = s && s[0] ? xstrdup(s) : NULL;

	json_decref(doc);
	return out;
}
