/*
 * m365.h - Microsoft 365 jobs: the "disable Exchange protection" wizard,
 * the bypass-clutter rule and the connectors, run against an Exchange
 * Online tenant after a single-use device-code sign-in (../shared/M365.md;
 * the reference page shared/reference/000_*.txt).
 *
 * A job is one run: sign in (the admin enters the code shown at the URL
 * shown), read the tenant, then by kind:
 *   connect  what the tenant has (Defender for Office 365, accepted
 *            domains, presets in force, what moat made before)
 *   plan     the cmdlets an apply would run here, nothing changed
 *   apply    run them, then read back until every change shows
 *   check    read back what the last apply (or the given choice) wants
 *   undo     remove what moat created, put back the values it changed
 * Each job has its own thread, which alone makes HTTP calls to Microsoft;
 * the access token lives in that thread's memory and is cleansed when the
 * job ends. The job, its steps and what undo needs are kept in the store
 * (never a secret); a running job is also answered from memory.
 */
#ifndef MOAT_M365_H
#define MOAT_M365_H

#include <jansson.h>
#include <stddef.h>

#include "m365_plan.h"

struct config;
struct policy;
struct store;
struct m365;

#define M365_JOBS_MAX   4  /* jobs running at once */
#define M365_JOB_ID_LEN 16 /* hex digits */

struct m365_deps {
	const char *store_url; /* each job thread opens its own connection */
	/* The relay key of a protected domain of pol (scan_relay_key()); any thread. */
	void (*relay_key)(void *arg, const struct policy *pol, const char *domain, char *out,
	                  size_t size);
	void *arg;
};

struct m365 *m365_new(const struct m365_deps *deps, struct config *cfg, struct policy *pol);
/* At start: jobs a stopped moatd left unfinished in store become failed. */
void m365_recover(struct m365 *m, struct store *store);
/* New config and policy (takes references); jobs already running keep theirs. */
void m365_reconfigure(struct m365 *m, struct config *cfg, struct policy *pol);
/* Cancel every job, wait for their threads, free. */
void m365_free(struct m365 *m);

enum m365_job_kind {
	M365_JOB_CONNECT,
	M365_JOB_PLAN,
	M365_JOB_APPLY,
	M365_JOB_CHECK,
	M365_JOB_UNDO,
};
const char *m365_job_kind_name(enum m365_job_kind k);
int m365_job_kind_parse(const char *s, enum m365_job_kind *out);

/*
 * A choice from JSON ({"protections": [...], "bypass_rule", "mode",
 * "enhanced_filtering"}: the API's body, and what a job keeps). Absent
 * members: no protection, the bypass rule, mode none, no Enhanced
 * Filtering (which, when chosen, replaces the bypass rule). *given: was
 * any member there. 0, or -1 with the member at fault in *field and why
 * in err.
 */
int m365_choice_parse(const json_t *o, struct m365_choice *ch, bool *given, const char **field,
                      char *err, size_t errsize);
json_t *m365_choice_json(const struct m365_choice *ch);

struct m365_job_req {
	enum m365_job_kind kind;
	struct m365_choice choice;
	bool has_choice;    /* check: false = what the last apply in the tenant chose */
	const char *tenant; /* NULL or "": config m365_tenant, else the admin's own */
	const char *who;    /* who asked (the audit's actor) */
};

/*
 * Start a job: 0 with its id in id (M365_JOB_ID_LEN + 1 octets), or -1
 * with err: the choice needs what the configuration lacks (m365_egress,
 * m365_host), too many jobs running.
 */
int m365_job_start(struct m365 *m, const struct m365_job_req *r, char *id, char *err,
                   size_t errsize);
/*
 * The job as JSON (new reference): a running one from memory, else from
 * store (the caller's connection); NULL if there is no such job.
 */
json_t *m365_job_get(struct m365 *m, struct store *store, const char *id);
/* The newest jobs, newest first, without their steps. NULL on a store error. */
json_t *m365_job_list(struct m365 *m, struct store *store, unsigned limit);
/* Read the tenant back now ("Check configuration"): 0, or -1 with err (not waiting). */
int m365_job_check(struct m365 *m, const char *id, char *err, size_t errsize);
/* Stop a running job: 0, or -1 with err (not running). */
int m365_job_cancel(struct m365 *m, const char *id, char *err, size_t errsize);
/*
 * A plan without signing in (every step conditioned, for any tenant) for
 * the choice and moat's configuration: the plan as JSON (new reference),
 * and the PowerShell script in *script (caller frees) if script is not
 * NULL. NULL with err when the choice needs what the configuration lacks.
 */
json_t *m365_offline_plan(struct m365 *m, const struct m365_choice *ch, char **script, char *err,
                          size_t errsize);
/* The script of a job's plan (plan or apply jobs), caller frees; NULL if none. */
char *m365_job_script(struct m365 *m, struct store *store, const char *id);

#endif
