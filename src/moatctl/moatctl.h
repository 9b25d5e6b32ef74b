/*
 * moatctl.h - what moatctl's files share.
 *
 * moatctl.c: main(), the global options, and the commands over moatd's
 * control socket (queue, stats). moatctl_scan.c: the scan pipeline on a
 * file. moatctl_api.c: the HTTP client of the admin API. moatctl_cmd.c:
 * the table of API commands, their arguments, help and output helpers;
 * the commands themselves in moatctl_quarantine.c (quarantine, track),
 * moatctl_policy.c (domains, lists, rules, config) and moatctl_admin.c
 * (token, users, audit, health, metrics, queue over the API), moatctl_m365.c
 * (the Microsoft 365 wizard).
 */
#ifndef MOAT_MOATCTL_H
#define MOAT_MOATCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* The exit status of every command (moatctl --help lists them). */
enum moatctl_exit {
	MOATCTL_EXIT_OK = 0,
	MOATCTL_EXIT_REFUSED = 1,     /* the server said no (4xx), moatd refused */
	MOATCTL_EXIT_USAGE = 2,       /* bad command line */
	MOATCTL_EXIT_UNREACHABLE = 3, /* cannot connect, timed out, 5xx, garbled answer */
	MOATCTL_EXIT_AUTH = 4,        /* no token, or a token without the scope (401, 403) */
};

#define MOATCTL_DEFAULT_CONFIG "/etc/moat/moat.conf"

/* Options given before the command (and most of them after it too). */
struct moatctl_global {
	const char *config;     /* -c */
	const char *url;        /* --url; NULL: MOAT_URL, else from the config */
	const char *token_file; /* --token-file; NULL: MOAT_TOKEN, then MOAT_TOKEN_FILE */
	bool json;              /* --json */
	bool api;               /* --api: the queue commands over HTTP */
};

/* The control socket's answers as text (moatctl.c); the API's queue answers are the same. */
void moatctl_queue_print_list(json_t *resp);  /* {"messages", "total"} */
void moatctl_queue_print_show(json_t *resp);  /* {"message"} */
void moatctl_queue_print_stats(json_t *resp); /* {"queue", "counters"} */
void moatctl_queue_print_ok(json_t *resp);    /* {"retried"} or anything */

/* `moatctl scan ...` (moatctl_scan.c): argv after the word "scan". */
int moatctl_scan(const char *config, int argc, char **argv, bool json);

/* --- the admin API client (moatctl_api.c) --- */

struct moatctl_api;

/*
 * A client for the base URL and token that the options, the environment
 * and the config give; what names the command in error messages. NULL
 * after printing why, with the exit status in *rc.
 */
struct moatctl_api *moatctl_api_open(const struct moatctl_global *g, const char *what, int *rc);
void moatctl_api_close(struct moatctl_api *a);
/* What error messages name from now on ("quarantine release 0123..."). */
void moatctl_api_set_what(struct moatctl_api *a, const char *what);
/*
 * One request: path under /api/v1 (or from the root when it starts with
 * "/"), query "a=1&b=2" already escaped (NULL: none), body JSON (NULL:
 * none). On 2xx the parsed answer in *out (NULL when the body is empty)
 * and MOATCTL_EXIT_OK; otherwise the server's error printed and the exit
 * status returned.
 */
int moatctl_api_json(struct moatctl_api *a, const char *method, const char *path, const char *query,
                     json_t *body, json_t **out);
/* GET path; on 2xx its body is written to fp as it arrives. Errors as above. */
int moatctl_api_fetch(struct moatctl_api *a, const char *path, const char *query, FILE *fp);
/* s percent-encoded for a path segment or a query value (malloc'd). */
char *moatctl_api_escape(const char *s);

/* --- API commands (moatctl_cmd.c) --- */

struct moatctl_req;

/* True if words (one or two argv words joined by a space) name an API command. */
bool moatctl_cmd_known(const char *words);
/*
 * Run the API command whose words start argv (argc of them with its
 * arguments); returns the exit status.
 */
int moatctl_cmd_main(const struct moatctl_global *g, int argc, char **argv);
/* The API commands' lines of moatctl --help. */
void moatctl_cmd_usage(FILE *fp, bool queue);

/* An invocation: its arguments and options. */
const struct moatctl_global *moatctl_req_global(const struct moatctl_req *r);
const char *moatctl_req_words(const struct moatctl_req *r);
size_t moatctl_req_nargs(const struct moatctl_req *r);
const char *moatctl_req_arg(const struct moatctl_req *r, size_t i);
/* The last value of an option with an argument, NULL if not given. */
const char *moatctl_req_opt(const struct moatctl_req *r, const char *name);
/* Every value of a repeatable option, *n of them. */
const char *const *moatctl_req_optv(const struct moatctl_req *r, const char *name, size_t *n);
bool moatctl_req_flag(const struct moatctl_req *r, const char *name);
/*
 * The options that are query parameters, as "name=value&..." (malloc'd,
 * "" if none), but for the parameter skip (NULL: none).
 */
char *moatctl_req_query(const struct moatctl_req *r, const char *skip);
/* "COLLECTION/ARG" for the first argument, escaped (malloc'd). */
char *moatctl_req_path(const struct moatctl_req *r, const char *collection);
/* DELETE COLLECTION/ARG: the exit status, "deleted" when done. */
int moatctl_req_delete(struct moatctl_req *r, const char *collection);
/*
 * GET a search ({"items", "next"}) with the query options: one page, or
 * with --all every page, gathered into one {"items", "next": null}.
 */
int moatctl_req_pages(struct moatctl_req *r, const char *path, json_t **out);
/*
 * One request, its answer printed: the JSON with --json, else done (a
 * line such as "deleted"), or with done NULL the answer as a table or
 * "key: value" lines.
 */
int moatctl_req_call(struct moatctl_req *r, const char *method, const char *path, const char *query,
                     json_t *body, const char *done);
/* The API client, opened on first use; NULL with the exit status in *rc. */
struct moatctl_api *moatctl_req_api(struct moatctl_req *r, int *rc);

/* Output helpers. */
void moatctl_print_json(const json_t *v);
/* v as one line of text: strings as they are, arrays joined by ", ", null "-". */
void moatctl_value_str(const json_t *v, const char *key, char *buf, size_t size);
struct moatctl_col {
	const char *key;    /* member of each row */
	const char *header; /* column title */
	int max;            /* widest the column gets; 0: no limit (the last column) */
};
/* rows (an array of objects) as a table with a header line. */
void moatctl_print_table(const json_t *rows, const struct moatctl_col *cols, size_t ncols);
/* An object as "key: value" lines, nested arrays of objects indented. */
void moatctl_print_object(json_t *o, int indent);
/* An array (or an object's "items") as a table, any other object as moatctl_print_object(). */
void moatctl_print_any(json_t *v);
/* A JSON file ('-': standard input); NULL after printing why, *rc the exit status. */
json_t *moatctl_read_json(const char *what, const char *path, int *rc);

/* --- the commands --- */

int moatctl_quarantine_list(struct moatctl_req *r);
int moatctl_quarantine_show(struct moatctl_req *r);
int moatctl_quarantine_preview(struct moatctl_req *r);
int moatctl_quarantine_download(struct moatctl_req *r);
int moatctl_quarantine_release(struct moatctl_req *r);
int moatctl_quarantine_delete(struct moatctl_req *r);
int moatctl_track_list(struct moatctl_req *r);
int moatctl_track_show(struct moatctl_req *r);

int moatctl_policy_domains(struct moatctl_req *r);
int moatctl_policy_domains_put(struct moatctl_req *r);
int moatctl_policy_domains_delete(struct moatctl_req *r);
int moatctl_policy_lists(struct moatctl_req *r);
int moatctl_policy_lists_add(struct moatctl_req *r);
int moatctl_policy_lists_delete(struct moatctl_req *r);
int moatctl_policy_rules(struct moatctl_req *r);
int moatctl_policy_rules_show(struct moatctl_req *r);
int moatctl_policy_rules_put(struct moatctl_req *r);
int moatctl_policy_rules_delete(struct moatctl_req *r);
int moatctl_policy_config_export(struct moatctl_req *r);
int moatctl_policy_config_import(struct moatctl_req *r);

int moatctl_admin_token_create(struct moatctl_req *r);
int moatctl_admin_token_list(struct moatctl_req *r);
int moatctl_admin_token_delete(struct moatctl_req *r);
int moatctl_admin_users_list(struct moatctl_req *r);
int moatctl_admin_users_add(struct moatctl_req *r);
int moatctl_admin_users_delete(struct moatctl_req *r);
int moatctl_admin_users_password(struct moatctl_req *r);
int moatctl_admin_audit(struct moatctl_req *r);
int moatctl_admin_health(struct moatctl_req *r);
int moatctl_admin_whoami(struct moatctl_req *r);
int moatctl_admin_metrics(struct moatctl_req *r);
int moatctl_admin_stats(struct moatctl_req *r);
int moatctl_admin_queue(struct moatctl_req *r);
int moatctl_admin_settings(struct moatctl_req *r);
int moatctl_admin_settings_set(struct moatctl_req *r);
int moatctl_admin_settings_delete(struct moatctl_req *r);

int moatctl_m365_connect(struct moatctl_req *r);
int moatctl_m365_plan(struct moatctl_req *r);
int moatctl_m365_apply(struct moatctl_req *r);
int moatctl_m365_check(struct moatctl_req *r);
int moatctl_m365_undo(struct moatctl_req *r);
int moatctl_m365_script(struct moatctl_req *r);
int moatctl_m365_jobs(struct moatctl_req *r);
int moatctl_m365_show(struct moatctl_req *r);
int moatctl_m365_cancel(struct moatctl_req *r);

#endif
