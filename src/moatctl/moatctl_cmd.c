/*
 * moatctl_cmd.c - the commands moatctl runs against the admin API (and
 * `token create`, which opens the store): one table of their words,
 * arguments and options, from which the parser, `COMMAND --help` and the
 * lines of `moatctl --help` all come; and the helpers that print answers
 * as text.
 *
 * Every command takes --json (print the server's JSON as it is), --url
 * and --token-file, before or after its words.
 */
#include "moatctl.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/util.h"

#define MOATCTL_OPT_REPEAT   0x1u /* may be given several times */
#define MOATCTL_OPT_REQUIRED 0x2u
#define MOATCTL_OPT_NUMBER   0x4u /* its value is a decimal number */
#define MOATCTL_OPT_TIME     0x8u /* a time, sent as milliseconds since the epoch */
#define MOATCTL_MANY         SIZE_MAX
#define MOATCTL_CELL_MAX     1024 /* octets of one printed value */
#define MOATCTL_TIME_HELP                                                                          \
	"  TIME: YYYY-MM-DD[THH:MM[:SS]] (local time; a final Z: UTC), 2h, 3d (ago), now,\n"       \
	"  or seconds or milliseconds since the epoch.\n"
#define MOATCTL_HELP_WIDTH 100     /* columns of a synopsis before it wraps */
#define MOATCTL_ALL_MAX    1000000 /* items --all gathers at most */

struct moatctl_opt {
	const char *name;  /* "--limit" */
	const char *arg;   /* "N"; NULL: a flag */
	const char *query; /* the query parameter it becomes; NULL: none */
	unsigned flags;
	const char *help;
};

struct moatctl_cmd {
	const char *words; /* "quarantine release" */
	const char *args;  /* "ID..." */
	size_t min_args, max_args;
	const struct moatctl_opt *opts; /* ends with {0} */
	const char *help;               /* one line */
	const char *more;               /* further help, NULL: none */
	int (*run)(struct moatctl_req *r);
};

struct moatctl_optval {
	const char **v;
	size_t n;
};

struct moatctl_req {
	const struct moatctl_cmd *cmd;
	struct moatctl_global g;
	char **args;
	size_t nargs;
	struct moatctl_optval *vals; /* one per cmd->opts entry */
	char **owned;                /* values made here (times in ms), freed at the end */
	size_t nowned;
	struct moatctl_api *api;
};

#define FILTERS_COMMON                                                                             \
	{"--sender", "ADDR", "sender", 0, "envelope sender, or @domain"},                          \
	        {"--rcpt", "ADDR", "rcpt", 0, "a recipient, or @domain"},                          \
	        {"--subject", "TEXT", "subject", 0,                                                \
	         "words of the subject (3 characters or more)"},                                   \
	        {"--message-id", "ID", "message_id", 0, "the Message-ID, exactly"},                \
	        {"--id", "ID", "id", 0, "moat's queue id"},                                        \
	        {"--since", "TIME", "since", MOATCTL_OPT_TIME, "received at or after TIME"},       \
	        {"--until", "TIME", "until", MOATCTL_OPT_TIME, "received before TIME"},            \
	        {"--verdict", "V", "verdict", 0, "deliver, quarantine, reject or tempfail"},       \
	        {"--limit", "N", "limit", MOATCTL_OPT_NUMBER, "rows per page"},                    \
	        {"--after", "CURSOR", "after", 0,                                                  \
	         "the page after this one (\"next\" of the last)"},                                \
	{                                                                                          \
		"--all", NULL, NULL, 0, "every page, not just the first"                           \
	}

static const struct moatctl_opt opts_none[] = {{0}};

static const struct moatctl_opt opts_quar_list[] = {
        FILTERS_COMMON,
        {"--domain", "DOMAIN", "domain", 0, "the protected domain it is held for"},
        {"--state", "S", "state", 0, "held, released, deleted or expired"},
        {0},
};
static const struct moatctl_opt opts_track_list[] = {FILTERS_COMMON, {0}};
static const struct moatctl_opt opts_download[] = {
        {"-o", "FILE", NULL, 0, "write the message to FILE (default: standard output)"},
        {0},
};
static const struct moatctl_opt opts_release[] = {
        {"--rcpt", "ADDR", NULL, MOATCTL_OPT_REPEAT,
         "only to this recipient (repeatable; default: all of them)"},
        {"--no-rescan", NULL, NULL, 0, "do not run the malware check again before releasing"},
        {"--allow-sender", NULL, NULL, 0, "also add the sender to the domain's allow list"},
        {0},
};
static const struct moatctl_opt opts_delete[] = {
        {"--block-sender", NULL, NULL, 0, "also add the sender to the domain's block list"},
        {0},
};
static const struct moatctl_opt opts_lists[] = {
        {"--scope", "DOMAIN", "scope", 0,
         "one protected domain's entries, \"\" the global ones (default: all)"},
        {"--kind", "allow|block", "kind", 0, "one list (default: both)"},
        {0},
};
static const struct moatctl_opt opts_lists_edit[] = {
        {"--kind", "allow|block", NULL, MOATCTL_OPT_REQUIRED, "which list"},
        {"--scope", "DOMAIN", NULL, 0, "a protected domain's list (default: global)"},
        {0},
};
static const struct moatctl_opt opts_rules_put[] = {
        {"--priority", "N", NULL, MOATCTL_OPT_NUMBER, "order of evaluation, lowest first"},
        {"--disabled", NULL, NULL, 0, "store it switched off"},
        {"--stop", NULL, NULL, 0, "when it matches, no later rule is evaluated"},
        {"--if", "TEXT", NULL, MOATCTL_OPT_REPEAT, "a condition (all must hold; repeatable)"},
        {"--unless", "TEXT", NULL, MOATCTL_OPT_REPEAT, "a condition that vetoes (repeatable)"},
        {"--then", "TEXT", NULL, MOATCTL_OPT_REPEAT, "an action (repeatable)"},
        {"--file", "FILE", NULL, 0, "the rule as JSON instead ('-': standard input)"},
        {0},
};
static const struct moatctl_opt opts_domains_put[] = {
        {"--recipients", "LIST", NULL, MOATCTL_OPT_REQUIRED,
         "any, or addresses / local parts, comma separated"},
        {"--route", "ROUTE", NULL, 0, "maildir, mx, or smtp:[host]:port (docs/CONFIG.md)"},
        {"--tls", "POLICY", NULL, 0, "none, opportunistic, required or verify"},
        {"--tls-name", "NAME", NULL, 0, "the name the downstream's certificate must carry"},
        {"--quarantine-score", "SCORE", NULL, 0, "this domain's quarantine threshold"},
        {"--reject-score", "SCORE", NULL, 0, "this domain's reject threshold"},
        {0},
};
static const struct moatctl_opt opts_token_create[] = {
        {"--scope", "SCOPES", NULL, MOATCTL_OPT_REQUIRED, "read, operate, admin, comma separated"},
        {0},
};
static const struct moatctl_opt opts_audit[] = {
        {"--limit", "N", "limit", MOATCTL_OPT_NUMBER, "entries (newest first; default 100)"},
        {"--target", "WHAT", "target", 0, "only entries about this (an id, a rule, a user)"},
        {"--before", "N", "before", MOATCTL_OPT_NUMBER,
         "entries older than entry N (\"more:\" of the last page)"},
        {0},
};
#define M365_PROTECT_HELP                                                                          \
	"protections to switch off: antispam, antiphish, antimalware, safelinks, "                 \
	"safeattachments, all or none, comma separated"
#define M365_REST_OPTS                                                                             \
	{"--no-bypass-rule", NULL, NULL, 0, "no SCL -1 bypass-clutter rule"},                      \
	        {"--mode", "none|relay|mx", NULL, 0,                                               \
	         "connectors: none (default), relay (MX stays at Microsoft) or mx (MX is moat)"},  \
	        {"--enhanced-filtering", NULL, NULL, 0,                                            \
	         "mx mode: Enhanced Filtering for Connectors instead of the bypass rule"},         \
	{                                                                                          \
		"--tenant", "TENANT", NULL, 0, "the tenant's domain or id (default: m365_tenant)"  \
	}
static const struct moatctl_opt opts_m365_apply[] = {
        {"--protect", "LIST", NULL, MOATCTL_OPT_REQUIRED, M365_PROTECT_HELP},
        M365_REST_OPTS,
        {"--no-wait", NULL, NULL, 0, "return once applied, without waiting for Exchange"},
        {0},
};
static const struct moatctl_opt opts_m365_check[] = {
        {"--protect", "LIST", NULL, 0, M365_PROTECT_HELP " (default: what the last apply chose)"},
        M365_REST_OPTS,
        {0},
};
static const struct moatctl_opt opts_m365_plan[] = {
        {"--protect", "LIST", NULL, MOATCTL_OPT_REQUIRED, M365_PROTECT_HELP},
        M365_REST_OPTS,
        {"--offline", NULL, NULL, 0, "without signing in: conditioned steps for any tenant"},
        {0},
};
static const struct moatctl_opt opts_m365_script[] = {
        {"--protect", "LIST", NULL, 0, M365_PROTECT_HELP " (needed without --job)"},
        M365_REST_OPTS,
        {"--job", "ID", NULL, 0, "the plan of that plan or apply job instead"},
        {0},
};
static const struct moatctl_opt opts_m365_tenant[] = {
        {"--tenant", "TENANT", NULL, 0, "the tenant's domain or id (default: m365_tenant)"},
        {0},
};
static const struct moatctl_opt opts_export[] = {
        {"-o", "FILE", NULL, 0, "write to FILE (default: standard output)"},
        {0},
};

#define M365_SIGNIN_HELP                                                                           \
	"  Signs in to Microsoft 365 with a one-time code: open the URL shown and\n"               \
	"  enter the code as an Exchange or Global Administrator.\n"

static const struct moatctl_cmd moatctl_cmds[] = {
        {"quarantine list", "", 0, 0, opts_quar_list, "search the quarantine, newest first",
         MOATCTL_TIME_HELP
         "  With --all, pages are fetched until the last; --json then prints one\n"
         "  object with every item.\n",
         moatctl_quarantine_list},
        {"quarantine show", "ID", 1, 1, opts_none, "one held message: envelope, verdict, state",
         NULL, moatctl_quarantine_show},
        {"quarantine preview", "ID", 1, 1, opts_none,
         "its headers and text, safe to read (no links followed, no HTML run)", NULL,
         moatctl_quarantine_preview},
        {"quarantine download", "ID", 1, 1, opts_download, "the message itself (.eml)", NULL,
         moatctl_quarantine_download},
        {"quarantine release", "ID...", 1, MOATCTL_MANY, opts_release,
         "deliver held messages to their recipients",
         "  Each ID is released on its own; the exit status is the worst of them.\n",
         moatctl_quarantine_release},
        {"quarantine delete", "ID...", 1, MOATCTL_MANY, opts_delete,
         "delete held messages (several IDs: one batch request)", NULL, moatctl_quarantine_delete},
        {"track list", "", 0, 0, opts_track_list, "search every message moat saw, newest first",
         MOATCTL_TIME_HELP, moatctl_track_list},
        {"track show", "ID", 1, 1, opts_none, "one message and its timeline", NULL,
         moatctl_track_show},
        {"domains", "", 0, 0, opts_none, "the protected domains", NULL, moatctl_policy_domains},
        {"domains put", "DOMAIN", 1, 1, opts_domains_put,
         "protect a domain, or change one added this way",
         "  Kept in the store; domains of the config file are changed there.\n",
         moatctl_policy_domains_put},
        {"domains delete", "DOMAIN", 1, 1, opts_none, "stop protecting a domain added this way",
         NULL, moatctl_policy_domains_delete},
        {"lists", "", 0, 0, opts_lists, "the allow and block lists", NULL, moatctl_policy_lists},
        {"lists add", "PATTERN", 1, 1, opts_lists_edit, "add an address or @domain to a list", NULL,
         moatctl_policy_lists_add},
        {"lists delete", "PATTERN", 1, 1, opts_lists_edit, "remove an entry from a list", NULL,
         moatctl_policy_lists_delete},
        {"rules", "", 0, 0, opts_none, "the administrator rules", NULL, moatctl_policy_rules},
        {"rules show", "NAME", 1, 1, opts_none, "one rule", NULL, moatctl_policy_rules_show},
        {"rules put", "NAME", 1, 1, opts_rules_put, "create or replace a rule",
         "  Either --priority and the --if/--unless/--then lines (the grammar of\n"
         "  docs/SCAN.md, \"Rules\"), or --file with the JSON `rules show --json`\n"
         "  prints.\n",
         moatctl_policy_rules_put},
        {"rules delete", "NAME", 1, 1, opts_none, "delete a rule", NULL,
         moatctl_policy_rules_delete},
        {"config export", "", 0, 0, opts_export, "rules and lists as JSON (to keep in git)", NULL,
         moatctl_policy_config_export},
        {"config import", "FILE", 1, 1, opts_none,
         "replace rules and lists with an export ('-': standard input)",
         "  The server checks the whole file first; an error names its field and\n"
         "  nothing is changed.\n",
         moatctl_policy_config_import},
        {"token create", "", 0, 0, opts_token_create,
         "mint an API token (on the host: opens the store directly)",
         "  Run where moatd's store is, as root or the moat user. The token is\n"
         "  printed once; only its hash is kept. Audit: system:moatctl token.create.\n"
         "  With --api or --url, an admin token mints it over the API instead.\n",
         moatctl_admin_token_create},
        {"token list", "", 0, 0, opts_none, "the API tokens (never their secrets)", NULL,
         moatctl_admin_token_list},
        {"token delete", "ID", 1, 1, opts_none, "revoke a token", NULL, moatctl_admin_token_delete},
        {"users list", "", 0, 0, opts_none, "the portal's admin users", NULL,
         moatctl_admin_users_list},
        {"users add", "NAME", 1, 1, opts_none,
         "add an admin user (password from the terminal or standard input)", NULL,
         moatctl_admin_users_add},
        {"users delete", "NAME", 1, 1, opts_none, "delete an admin user", NULL,
         moatctl_admin_users_delete},
        {"users password", "NAME", 1, 1, opts_none,
         "set a user's password (from the terminal or standard input)", NULL,
         moatctl_admin_users_password},
        {"audit", "", 0, 0, opts_audit, "who did what, newest first", NULL, moatctl_admin_audit},
        {"settings", "", 0, 0, opts_none, "the settings kept in the store", NULL,
         moatctl_admin_settings},
        {"settings set", "KEY VALUE", 2, 2, opts_none, "set one", NULL, moatctl_admin_settings_set},
        {"settings delete", "KEY", 1, 1, opts_none, "delete one", NULL,
         moatctl_admin_settings_delete},
        {"health", "", 0, 0, opts_none, "is moatd up and its store reachable", NULL,
         moatctl_admin_health},
        {"whoami", "", 0, 0, opts_none, "the token moatctl presents, and its scopes", NULL,
         moatctl_admin_whoami},
        {"metrics", "", 0, 0, opts_none, "the Prometheus metrics, as text", NULL,
         moatctl_admin_metrics},
        /* the control socket serves these; with --api or --url, the API does */
        {
                "queue list",
                "",
                0,
                0,
                opts_none,
                "list the messages waiting for delivery",
                NULL,
                moatctl_admin_queue,
        },
        {
                "queue show",
                "ID",
                1,
                1,
                opts_none,
                "show one message and each recipient's state",
                NULL,
                moatctl_admin_queue,
        },
        {
                "queue retry",
                "ID",
                1,
                1,
                opts_none,
                "try to deliver now instead of waiting",
                NULL,
                moatctl_admin_queue,
        },
        {
                "queue hold",
                "ID",
                1,
                1,
                opts_none,
                "stop delivering a message until released",
                NULL,
                moatctl_admin_queue,
        },
        {
                "queue release",
                "ID",
                1,
                1,
                opts_none,
                "deliver a held message again",
                NULL,
                moatctl_admin_queue,
        },
        {
                "queue delete",
                "ID",
                1,
                1,
                opts_none,
                "remove a message from the queue",
                NULL,
                moatctl_admin_queue,
        },
        {
                "stats",
                "",
                0,
                0,
                opts_none,
                "counters and queue depth",
                NULL,
                moatctl_admin_stats,
        },
        {"m365 connect", "", 0, 0, opts_m365_tenant,
         "sign in to Microsoft 365 and show what the tenant has", M365_SIGNIN_HELP,
         moatctl_m365_connect},
        {"m365 plan", "", 0, 0, opts_m365_plan,
         "the cmdlets an apply would run, in order; nothing is changed", M365_SIGNIN_HELP,
         moatctl_m365_plan},
        {"m365 apply", "", 0, 0, opts_m365_apply,
         "switch off Exchange protections, add the bypass-clutter rule and connectors",
         M365_SIGNIN_HELP "  Then reads the tenant back until every change shows (Exchange\n"
                          "  can take up to 30 minutes).\n",
         moatctl_m365_apply},
        {"m365 check", "[JOB]", 0, 1, opts_m365_check,
         "read the tenant back: ok, pending, missing or drifted per item",
         "  With JOB, a running apply job reads back now; without, a new sign-in\n"
         "  checks what the last apply chose (or the options given).\n",
         moatctl_m365_check},
        {"m365 undo", "", 0, 0, opts_m365_tenant,
         "remove what moat created in the tenant and put back what it changed", M365_SIGNIN_HELP,
         moatctl_m365_undo},
        {"m365 script", "", 0, 0, opts_m365_script,
         "the plan as a PowerShell script to run after Connect-ExchangeOnline", NULL,
         moatctl_m365_script},
        {"m365 jobs", "", 0, 0, opts_none, "the Microsoft 365 jobs, newest first", NULL,
         moatctl_m365_jobs},
        {"m365 show", "JOB", 1, 1, opts_none, "one job: its steps, read-back and error", NULL,
         moatctl_m365_show},
        {"m365 cancel", "JOB", 1, 1, opts_none, "stop a running job", NULL, moatctl_m365_cancel},
};

/* The control socket serves these; with --api or --url, the API does. */
static bool
moatctl_cmd_is_socket(const struct moatctl_cmd *c)
{
	return c->run == moatctl_admin_queue || c->run == moatctl_admin_stats;
}

static const struct moatctl_cmd *
moatctl_cmd_find(const char *words)
{
	for (size_t i = 0; i < nitems(moatctl_cmds); i++)
		if (strcmp(moatctl_cmds[i].words, words) == 0)
			return &moatctl_cmds[i];
	return NULL;
}

bool
moatctl_cmd_known(const char *words)
{
	return moatctl_cmd_find(words) != NULL;
}

/* "usage: moatctl quarantine release ID... [--rcpt ADDR]... [--no-rescan]", wrapped. */
static void
moatctl_cmd_synopsis(FILE *fp, const struct moatctl_cmd *c)
{
	int col, indent;

	col = fprintf(fp, "usage: moatctl [--json] %s", c->words);
	indent = col + 1;
	if (c->args[0])
		col += fprintf(fp, " %s", c->args);
	for (const struct moatctl_opt *o = c->opts; o->name; o++) {
		bool req = o->flags & MOATCTL_OPT_REQUIRED;
		char item[96];
		int len;

		len = snprintf(item, sizeof(item), "%s%s%s%s%s%s", req ? "" : "[", o->name,
		               o->arg ? " " : "", o->arg ? o->arg : "", req ? "" : "]",
		               o->flags & MOATCTL_OPT_REPEAT ? "..." : "");
		if (col + 1 + len > MOATCTL_HELP_WIDTH) {
			fprintf(fp, "\n%*s", indent - 1, "");
			col = indent - 1;
		}
		col += fprintf(fp, " %s", item);
	}
	fprintf(fp, "\n");
}

static void
moatctl_cmd_help(const struct moatctl_cmd *c)
{
	moatctl_cmd_synopsis(stdout, c);
	printf("  %s\n", c->help);
	if (c->more)
		printf("%s", c->more);
	if (c->opts[0].name)
		printf("\n");
	for (const struct moatctl_opt *o = c->opts; o->name; o++) {
		char left[64];

		snprintf(left, sizeof(left), "%s%s%s", o->name, o->arg ? " " : "",
		         o->arg ? o->arg : "");
		printf("  %-22s %s\n", left, o->help);
	}
	printf("\n  --json                 print the server's JSON answer as it is\n"
	       "  --url URL              the API (default: MOAT_URL, else admin_listen of the "
	       "config)\n"
	       "  --token-file FILE      the token (default: MOAT_TOKEN, else MOAT_TOKEN_FILE)\n");
	if (moatctl_cmd_is_socket(c))
		printf("  --api                  over the admin API, not moatd's control socket\n");
}

void
moatctl_cmd_usage(FILE *fp, bool queue)
{
	for (size_t i = 0; i < nitems(moatctl_cmds); i++) {
		const struct moatctl_cmd *c = &moatctl_cmds[i];

		if (moatctl_cmd_is_socket(c) == queue)
			fprintf(fp, "  %-20s %-9s %s\n", c->words, c->args, c->help);
	}
}

static int moatctl_cmd_usage_error(const struct moatctl_cmd *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* "moatctl: WORDS: what went wrong" and the synopsis; the usage exit status. */
static int
moatctl_cmd_usage_error(const struct moatctl_cmd *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "moatctl: %s: ", c->words);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	moatctl_cmd_synopsis(stderr, c);
	return MOATCTL_EXIT_USAGE;
}

/*
 * A time for --since/--until as milliseconds since the epoch: a date
 * (local time, or UTC with a final Z), a duration ago, "now", or a number
 * of seconds (below 10^11) or milliseconds.
 */
static int
moatctl_cmd_time(const char *s, int64_t *ms)
{
	static const char *const formats[] = {
	        "%Y-%m-%d",          "%Y-%m-%dT%H:%M",    "%Y-%m-%d %H:%M",
	        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
	};
	struct timespec now;
	size_t len = strlen(s);
	uint64_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	if (strcmp(s, "now") == 0) {
		*ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
		return 0;
	}
	if (len > 0 && strspn(s, "0123456789") == len) {
		if (parse_u64(s, len, INT64_MAX / 1000, &n) < 0)
			return -1;
		*ms = (int64_t)(n < 100000000000ull ? n * 1000 : n);
		return 0;
	}
	if (len > 1 && s[len - 1] >= 'a' && s[len - 1] <= 'z' && strchr(s, '-') == NULL) {
		if (parse_duration_ms(s, &n) < 0 || n > (uint64_t)now.tv_sec * 1000)
			return -1;
		*ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - (int64_t)n;
		return 0;
	}
	for (size_t i = 0; i < nitems(formats); i++) {
		struct tm tm = {.tm_isdst = -1};
		const char *end = strptime(s, formats[i], &tm);
		time_t t;

		if (end == NULL || (end[0] != '\0' && strcmp(end, "Z") != 0))
			continue;
		t = end[0] == 'Z' ? timegm(&tm) : mktime(&tm);
		if (t == (time_t)-1)
			return -1;
		*ms = (int64_t)t * 1000;
		return 0;
	}
	return -1;
}

static int
moatctl_cmd_parse(struct moatctl_req *r, int argc, char **argv, bool *help)
{
	const struct moatctl_cmd *c = r->cmd;
	bool dashdash = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const struct moatctl_opt *o;
		size_t namelen;

		if (dashdash || a[0] != '-' || strcmp(a, "-") == 0) {
			if (r->nargs == c->max_args)
				return moatctl_cmd_usage_error(c, "unexpected argument '%s'", a);
			r->args[r->nargs++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
			continue;
		}
		if (strcmp(a, "--json") == 0) {
			r->g.json = true;
			continue;
		}
		if (strcmp(a, "--api") == 0) {
			r->g.api = true;
			continue;
		}
		if (strcmp(a, "--token") == 0 || strncmp(a, "--token=", 8) == 0)
			return moatctl_cmd_usage_error(
			        c,
			        "--token: a token is not taken as an argument (ps shows arguments "
			        "to every user): set MOAT_TOKEN or use --token-file");
		namelen = strcspn(a, "=");
		if (a[namelen] == '=')
			val = a + namelen + 1;
		if ((namelen == 5 && strncmp(a, "--url", 5) == 0) ||
		    (namelen == 12 && strncmp(a, "--token-file", 12) == 0)) {
			if (val == NULL && (val = (i + 1 < argc ? argv[++i] : NULL)) == NULL)
				return moatctl_cmd_usage_error(c, "%s needs a value", a);
			if (namelen == 5)
				r->g.url = val;
			else
				r->g.token_file = val;
			continue;
		}
		for (o = c->opts; o->name; o++)
			if (strlen(o->name) == namelen && strncmp(o->name, a, namelen) == 0)
				break;
		if (o->name == NULL)
			return moatctl_cmd_usage_error(c, "unknown option %s", a);
		if (o->arg == NULL) {
			if (val != NULL)
				return moatctl_cmd_usage_error(c, "%s takes no value", o->name);
			val = "";
		} else if (val == NULL && (val = (i + 1 < argc ? argv[++i] : NULL)) == NULL) {
			return moatctl_cmd_usage_error(c, "%s needs a value", o->name);
		}
		if (o->flags & MOATCTL_OPT_NUMBER) {
			uint64_t n;

			if (parse_u64(val, strlen(val), INT64_MAX, &n) < 0)
				return moatctl_cmd_usage_error(c, "%s takes a number", o->name);
		}
		if (o->flags & MOATCTL_OPT_TIME) {
			int64_t ms;

			if (moatctl_cmd_time(val, &ms) < 0)
				return moatctl_cmd_usage_error(c, "%s: '%s' is not a time", o->name,
				                               val);
			r->owned = xrealloc(r->owned, (r->nowned + 1) * sizeof(*r->owned));
			val = r->owned[r->nowned++] = xasprintf("%" PRId64, ms);
		}
		struct moatctl_optval *ov = &r->vals[o - c->opts];

		if (ov->n > 0 && !(o->flags & MOATCTL_OPT_REPEAT) && o->arg != NULL)
			return moatctl_cmd_usage_error(c, "%s given twice", o->name);
		ov->v = xrealloc(ov->v, (ov->n + 1) * sizeof(*ov->v));
		ov->v[ov->n++] = val;
	}
	return MOATCTL_EXIT_OK;
}

int
moatctl_cmd_main(const struct moatctl_global *g, int argc, char **argv)
{
	struct moatctl_req r = {.g = *g};
	char words[64];
	bool help = false;
	size_t nopts = 0, skip = 1;
	int rc;

	if (argc >= 2 && snprintf(words, sizeof(words), "%s %s", argv[0], argv[1]) > 0 &&
	    (r.cmd = moatctl_cmd_find(words)) != NULL)
		skip = 2;
	else if ((r.cmd = moatctl_cmd_find(argv[0])) == NULL) {
		fprintf(stderr, "moatctl: unknown command '%s'\n", argv[0]);
		return MOATCTL_EXIT_USAGE;
	}
	while (r.cmd->opts[nopts].name)
		nopts++;
	r.vals = xcalloc(nopts + 1, sizeof(*r.vals));
	r.args = xcalloc((size_t)argc + 1, sizeof(*r.args));
	rc = moatctl_cmd_parse(&r, argc - (int)skip, argv + skip, &help);
	if (rc == MOATCTL_EXIT_OK && help) {
		moatctl_cmd_help(r.cmd);
		goto done;
	}
	if (rc != MOATCTL_EXIT_OK)
		goto done;
	if (r.nargs < r.cmd->min_args) {
		rc = moatctl_cmd_usage_error(r.cmd, "%s missing", r.cmd->args);
		goto done;
	}
	for (size_t i = 0; i < nopts; i++)
		if ((r.cmd->opts[i].flags & MOATCTL_OPT_REQUIRED) && r.vals[i].n == 0) {
			rc = moatctl_cmd_usage_error(r.cmd, "%s is required", r.cmd->opts[i].name);
			goto done;
		}
	rc = r.cmd->run(&r);
done:
	moatctl_api_close(r.api);
	for (size_t i = 0; i < nopts; i++)
		free(r.vals[i].v);
	for (size_t i = 0; i < r.nowned; i++)
		free(r.owned[i]);
	free(r.owned);
	free(r.vals);
	free(r.args);
	return rc;
}

/* --- the invocation --- */

const struct moatctl_global *
moatctl_req_global(const struct moatctl_req *r)
{
	return &r->g;
}

const char *
moatctl_req_words(const struct moatctl_req *r)
{
	return r->cmd->words;
}

size_t
moatctl_req_nargs(const struct moatctl_req *r)
{
	return r->nargs;
}

const char *
moatctl_req_arg(const struct moatctl_req *r, size_t i)
{
	return i < r->nargs ? r->args[i] : NULL;
}

static const struct moatctl_optval *
moatctl_req_val(const struct moatctl_req *r, const char *name)
{
	for (const struct moatctl_opt *o = r->cmd->opts; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return &r->vals[o - r->cmd->opts];
	fprintf(stderr, "moatctl: %s has no option %s\n", r->cmd->words, name);
	abort();
}

const char *
moatctl_req_opt(const struct moatctl_req *r, const char *name)
{
	const struct moatctl_optval *v = moatctl_req_val(r, name);

	return v->n ? v->v[v->n - 1] : NULL;
}

const char *const *
moatctl_req_optv(const struct moatctl_req *r, const char *name, size_t *n)
{
	const struct moatctl_optval *v = moatctl_req_val(r, name);

	*n = v->n;
	return v->v;
}

bool
moatctl_req_flag(const struct moatctl_req *r, const char *name)
{
	return moatctl_req_val(r, name)->n > 0;
}

char *
moatctl_req_path(const struct moatctl_req *r, const char *collection)
{
	char *arg = moatctl_api_escape(moatctl_req_arg(r, 0));
	char *p = xasprintf("%s/%s", collection, arg);

	free(arg);
	return p;
}

int
moatctl_req_delete(struct moatctl_req *r, const char *collection)
{
	char *p = moatctl_req_path(r, collection);
	int rc = moatctl_req_call(r, "DELETE", p, NULL, NULL, "deleted");

	free(p);
	return rc;
}

char *
moatctl_req_query(const struct moatctl_req *r, const char *skip)
{
	struct dynbuf q;

	dynbuf_init(&q, SIZE_MAX);
	dynbuf_add(&q, "", 0);
	for (const struct moatctl_opt *o = r->cmd->opts; o->name; o++) {
		const struct moatctl_optval *v = &r->vals[o - r->cmd->opts];

		if (o->query == NULL || (skip && strcmp(o->query, skip) == 0))
			continue;
		for (size_t i = 0; i < v->n; i++) {
			char *e = moatctl_api_escape(v->v[i]);

			dynbuf_printf(&q, "%s%s=%s", q.len ? "&" : "", o->query, e);
			free(e);
		}
	}
	return q.p;
}

struct moatctl_api *
moatctl_req_api(struct moatctl_req *r, int *rc)
{
	if (r->api == NULL)
		r->api = moatctl_api_open(&r->g, r->cmd->words, rc);
	return r->api;
}

int
moatctl_req_pages(struct moatctl_req *r, const char *path, json_t **out)
{
	bool all = false;
	struct moatctl_api *a;
	json_t *items = NULL;
	char *query, *next = NULL;
	int rc;

	*out = NULL;
	for (const struct moatctl_opt *o = r->cmd->opts; o->name; o++)
		if (strcmp(o->name, "--all") == 0)
			all = moatctl_req_flag(r, "--all");
	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	query = moatctl_req_query(r, all ? "after" : NULL);
	for (;;) {
		json_t *page;
		const char *cursor;
		char *q;

		if (next != NULL) {
			char *e = moatctl_api_escape(next);

			q = xasprintf("%s%safter=%s", query, query[0] ? "&" : "", e);
			free(e);
		} else if (all && moatctl_req_opt(r, "--after") != NULL) {
			char *e = moatctl_api_escape(moatctl_req_opt(r, "--after"));

			q = xasprintf("%s%safter=%s", query, query[0] ? "&" : "", e);
			free(e);
		} else {
			q = xstrdup(query);
		}
		rc = moatctl_api_json(a, "GET", path, q, NULL, &page);
		free(q);
		if (rc != MOATCTL_EXIT_OK)
			break;
		if (!all) {
			*out = page;
			break;
		}
		if (!json_is_array(json_object_get(page, "items"))) {
			fprintf(stderr, "moatctl: %s: the answer has no \"items\"\n",
			        r->cmd->words);
			json_decref(page);
			rc = MOATCTL_EXIT_UNREACHABLE;
			break;
		}
		if (items == NULL)
			items = json_array();
		json_array_extend(items, json_object_get(page, "items"));
		cursor = json_string_value(json_object_get(page, "next"));
		if (cursor == NULL || cursor[0] == '\0' || (next && strcmp(cursor, next) == 0) ||
		    json_array_size(json_object_get(page, "items")) == 0 ||
		    json_array_size(items) >= MOATCTL_ALL_MAX) {
			if (cursor != NULL && cursor[0] != '\0' &&
			    json_array_size(items) >= MOATCTL_ALL_MAX)
				fprintf(stderr, "moatctl: %s: stopped after %zu items\n",
				        r->cmd->words, json_array_size(items));
			json_decref(page);
			*out = json_pack("{s:o,s:n}", "items", items, "next");
			items = NULL;
			break;
		}
		free(next);
		next = xstrdup(cursor);
		json_decref(page);
	}
	json_decref(items);
	free(next);
	free(query);
	return rc;
}

int
moatctl_req_call(struct moatctl_req *r, const char *method, const char *path, const char *query,
                 json_t *body, const char *done)
{
	struct moatctl_api *a;
	json_t *out;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if ((rc = moatctl_api_json(a, method, path, query, body, &out)) != MOATCTL_EXIT_OK)
		return rc;
	if (r->g.json) {
		if (out != NULL)
			moatctl_print_json(out);
	} else if (done != NULL) {
		printf("%s\n", done);
	} else {
		moatctl_print_any(out);
	}
	json_decref(out);
	return MOATCTL_EXIT_OK;
}

/* --- output --- */

void
moatctl_print_json(const json_t *v)
{
	char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	printf("%s\n", text ? text : "null");
	free(text);
}

/* Is this member a time in milliseconds since the epoch? */
static bool
moatctl_is_time_ms(const char *key)
{
	size_t len = key ? strlen(key) : 0;

	return len > 3 && strcmp(key + len - 3, "_ms") == 0 && strcmp(key, "elapsed_ms") != 0;
}

/* An object inside a list, briefly: its first string, the second in brackets. */
static void
moatctl_value_brief(json_t *o, char *buf, size_t size)
{
	const char *k, *first = NULL, *second = NULL;
	json_t *v;

	json_object_foreach (o, k, v) {
		if (!json_is_string(v) || json_string_length(v) == 0)
			continue;
		if (first == NULL)
			first = json_string_value(v);
		else if (second == NULL)
			second = json_string_value(v);
	}
	snprintf(buf, size, "%s%s%s%s", first ? first : "{}", second ? " (" : "",
	         second ? second : "", second ? ")" : "");
}

void
moatctl_value_str(const json_t *v, const char *key, char *buf, size_t size)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		str_copy(buf, json_string_value(v), size);
		break;
	case JSON_INTEGER:
		if (moatctl_is_time_ms(key)) {
			time_t t = (time_t)(json_integer_value(v) / 1000);
			struct tm tm;

			if (json_integer_value(v) <= 0 || localtime_r(&t, &tm) == NULL)
				str_copy(buf, "-", size);
			else
				strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
		} else {
			snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		}
		break;
	case JSON_REAL:
		snprintf(buf, size, "%g", json_real_value(v));
		break;
	case JSON_TRUE:
		str_copy(buf, "yes", size);
		break;
	case JSON_FALSE:
		str_copy(buf, "no", size);
		break;
	case JSON_ARRAY: {
		size_t i, len = 0;
		json_t *e;

		buf[0] = '\0';
		json_array_foreach (v, i, e) {
			char one[MOATCTL_CELL_MAX];

			if (json_is_object(e))
				moatctl_value_brief(e, one, sizeof(one));
			else
				moatctl_value_str(e, key, one, sizeof(one));
			if (len < size)
				len += (size_t)snprintf(buf + len, size - len, "%s%s",
				                        i ? ", " : "", one);
		}
		break;
	}
	case JSON_OBJECT: {
		char *text = json_dumps(v, JSON_COMPACT);

		str_copy(buf, text ? text : "", size);
		free(text);
		break;
	}
	default:
		str_copy(buf, "-", size);
	}
	/* one line: a value's line breaks and tabs become spaces */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
}

/* Characters (not octets) of UTF-8 text. */
static size_t
moatctl_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Cut s to at most max characters, the last of them '~' when cut. */
static void
moatctl_cut(char *s, size_t max)
{
	size_t n = 0;

	for (char *p = s; *p; p++)
		if (((unsigned char)*p & 0xC0) != 0x80 && n++ == max - 1) {
			if (moatctl_width(p) > 1) {
				p[0] = '~';
				p[1] = '\0';
			}
			return;
		}
}

static void
moatctl_print_table_at(const json_t *rows, const struct moatctl_col *cols, size_t ncols, int indent)
{
	size_t *w = xcalloc(ncols, sizeof(*w)), i;
	char cell[MOATCTL_CELL_MAX];
	json_t *row;

	for (size_t c = 0; c < ncols; c++)
		w[c] = moatctl_width(cols[c].header);
	json_array_foreach (rows, i, row) {
		for (size_t c = 0; c < ncols; c++) {
			moatctl_value_str(json_object_get(row, cols[c].key), cols[c].key, cell,
			                  sizeof(cell));
			if (cols[c].max > 0)
				moatctl_cut(cell, (size_t)cols[c].max);
			if (moatctl_width(cell) > w[c])
				w[c] = moatctl_width(cell);
		}
	}
	printf("%*s", indent, "");
	for (size_t c = 0; c < ncols; c++)
		if (c + 1 < ncols)
			printf("%s%*s  ", cols[c].header,
			       (int)(w[c] - moatctl_width(cols[c].header)), "");
		else
			printf("%s\n", cols[c].header);
	json_array_foreach (rows, i, row) {
		printf("%*s", indent, "");
		for (size_t c = 0; c < ncols; c++) {
			moatctl_value_str(json_object_get(row, cols[c].key), cols[c].key, cell,
			                  sizeof(cell));
			if (cols[c].max > 0)
				moatctl_cut(cell, (size_t)cols[c].max);
			if (c + 1 < ncols)
				printf("%s%*s  ", cell, (int)(w[c] - moatctl_width(cell)), "");
			else
				printf("%s\n", cell);
		}
	}
	free(w);
}

void
moatctl_print_table(const json_t *rows, const struct moatctl_col *cols, size_t ncols)
{
	moatctl_print_table_at(rows, cols, ncols, 0);
}

/* An array of objects as a table whose columns are the first object's members. */
static void
moatctl_print_rows(const json_t *rows, int indent)
{
	json_t *first = json_array_get(rows, 0), *v;
	struct moatctl_col *cols;
	const char *k;
	size_t n = 0;

	cols = xcalloc(json_object_size(first) + 1, sizeof(*cols));
	json_object_foreach (first, k, v) {
		cols[n].key = k;
		cols[n].header = k;
		cols[n].max = 40;
		n++;
	}
	if (n > 0)
		cols[n - 1].max = 0;
	moatctl_print_table_at(rows, cols, n, indent);
	free(cols);
}

static bool
moatctl_is_rows(const json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v) || json_array_size(v) == 0)
		return false;
	json_array_foreach (v, i, e)
		if (!json_is_object(e))
			return false;
	return true;
}

void
moatctl_print_object(json_t *o, int indent)
{
	char cell[MOATCTL_CELL_MAX];
	size_t w = 0;
	const char *k;
	json_t *v;

	json_object_foreach (o, k, v)
		if (strlen(k) > w)
			w = strlen(k);
	json_object_foreach (o, k, v) {
		if (json_is_object(v) && json_object_size(v) > 0) {
			printf("%*s%s:\n", indent, "", k);
			moatctl_print_object(v, indent + 2);
		} else if (moatctl_is_rows(v)) {
			printf("%*s%s:\n", indent, "", k);
			moatctl_print_rows(v, indent + 2);
		} else {
			moatctl_value_str(v, k, cell, sizeof(cell));
			printf("%*s%s:%*s %s\n", indent, "", k, (int)(w - strlen(k)), "", cell);
		}
	}
}

void
moatctl_print_any(json_t *v)
{
	const json_t *rows = json_is_array(v) ? v : json_object_get(v, "items");

	if (json_is_array(rows)) {
		if (json_array_size(rows) == 0)
			printf("none\n");
		else if (moatctl_is_rows(rows))
			moatctl_print_rows(rows, 0);
		else
			for (size_t i = 0; i < json_array_size(rows); i++) {
				char cell[MOATCTL_CELL_MAX];

				moatctl_value_str(json_array_get(rows, i), NULL, cell,
				                  sizeof(cell));
				printf("%s\n", cell);
			}
	} else if (json_is_object(v)) {
		moatctl_print_object(v, 0);
	} else if (v != NULL) {
		moatctl_print_json(v);
	}
}

json_t *
moatctl_read_json(const char *what, const char *path, int *rc)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	json_error_t jerr;
	json_t *v;

	if (fp == NULL) {
		fprintf(stderr, "moatctl: %s: %s: %s\n", what, path, strerror(errno));
		*rc = MOATCTL_EXIT_USAGE;
		return NULL;
	}
	v = json_loadf(fp, 0, &jerr);
	if (fp != stdin)
		fclose(fp);
	if (v == NULL) {
		fprintf(stderr, "moatctl: %s: %s:%d: not JSON: %s\n", what, path, jerr.line,
		        jerr.text);
		*rc = MOATCTL_EXIT_USAGE;
	}
	return v;
}
