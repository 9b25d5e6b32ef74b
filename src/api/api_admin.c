/*
 * api_admin.c - the rest of /api/v1/ and /metrics: health, counters and
 * the dashboard's statistics (with the last day's top threats and
 * senders), the scan symbols' table, protected domains (read-only: they come
 * from the policy), allow/block lists and rules (kept in the store; every
 * change tells moatd to rebuild its policy), the delivery queue (through
 * the delivery loop's control commands), API tokens, admin users, the
 * audit log, settings, and the policy's export and import.
 *
 * Rules are checked with the one grammar (src/policy/rules.h) before the
 * store sees them: each line alone first, so that a 400 names the line
 * ("if[1]"), then the whole rule with rule_new().
 */
#include "api_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/crypto.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/route.h"
#include "../common/stats.h"
#include "../common/util.h"
#include "../control/control.h"
#include "../policy/policy.h"
#include "../policy/rules.h"
#include "../scan/scan.h"
#include "../store/store_writer.h"
#include "api_token.h"

#define API_AUDIT_PAGE_MAX 500
#define API_QUEUE_LIST_MAX 10000
#define API_TOP_N          10       /* rows of the dashboard's top threats and senders */
#define API_TOP_SCAN       20000    /* newest quarantined or rejected messages they look at */
#define API_TOP_WINDOW_MS  86400000 /* over the last day */

/* Flags that make a symbol a threat whatever its score. */
#define API_SF_THREAT (SCAN_SF_QUARANTINE | SCAN_SF_MALWARE | SCAN_SF_REJECT)

/* --- control commands of the delivery loop --- */

/*
 * Run cmd (with id if not NULL) on the delivery loop: 0 and *res, or an
 * error reply is sent (mapped to HTTP) and -1.
 */
static int
api_control(struct api_req *r, const char *cmd, const char *id, json_int_t limit, json_t **res)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd);
	char err[512] = "";
	int code;

	*res = NULL;
	if (r->a->deps.control == NULL) {
		json_decref(req);
		api_error(r, 503, NULL, "the delivery queue is not reachable");
		return -1;
	}
	if (id != NULL)
		json_object_set_new(req, "id", json_string(id));
	if (limit > 0)
		json_object_set_new(req, "limit", json_integer(limit));
	code = control_call(r->a->deps.control, req, res, err, sizeof(err));
	json_decref(req);
	if (code == 0)
		return 0;
	if (code == 504)
		api_error(r, 503, NULL, "%s", err);
	else
		api_error(r, code >= 400 && code < 600 ? code : 500,
		          code == 400 || code == 404 ? "id" : NULL, "%s", err);
	return -1;
}

/* --- health, metrics, stats --- */

void
api_h_health(struct api_req *r)
{
	unsigned in_db = 0, known = 0;
	bool store_ok = store_schema_version(r->a->store, &in_db, &known) == 0;
	json_t *o;

	o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "status", store_ok ? "ok" : "degraded",
	              "version", MOAT_VERSION, "store", store_ok ? "ok" : "error", "schema",
	              (json_int_t)in_db, "uptime_s",
	              (json_int_t)((api_now_ms() - r->a->started_ms) / 1000), "tls",
	              r->a->tls != NULL);
	api_reply(r, store_ok ? 200 : 503, o);
}

static void
api_metric(struct evbuffer *b, const char *name, const char *type, const char *help, uint64_t v)
{
	evbuffer_add_printf(b, "# HELP moat_%s %s\n# TYPE moat_%s %s\nmoat_%s %llu\n", name, help,
	                    name, type, name, (unsigned long long)v);
}

void
api_h_metrics(struct api_req *r)
{
	struct evbuffer *b = evbuffer_new();
	json_t *res = NULL;
	char err[256];

#define API_COUNTER(name, doc) api_metric(b, #name "_total", "counter", doc, stats_get(name));
	STATS_COUNTERS(API_COUNTER)
#undef API_COUNTER
	if (r->a->deps.writer != NULL)
		api_metric(b, "store_dropped_total", "counter",
		           "tracking events the store writer dropped",
		           store_writer_dropped(r->a->deps.writer));
	if (r->a->deps.control != NULL) {
		json_t *req = json_pack("{s:s}", "cmd", "stats");

		if (control_call(r->a->deps.control, req, &res, err, sizeof(err)) == 0) {
			json_t *q = json_object_get(res, "queue");
			static const struct {
				const char *key, *name, *help;
			} g[] = {
			        {"messages", "queue_messages", "messages in the delivery queue"},
			        {"recipients_pending", "queue_recipients_pending",
			         "recipients not delivered yet"},
			        {"held", "queue_held", "queued messages on hold"},
			        {"deferred", "queue_deferred",
			         "queued messages with at least one failed attempt"},
			        {"connections", "delivery_connections",
			         "outbound SMTP connections"},
			};

			for (size_t i = 0; i < nitems(g); i++)
				api_metric(
				        b, g[i].name, "gauge", g[i].help,
				        (uint64_t)json_integer_value(json_object_get(q, g[i].key)));
		}
		json_decref(req);
		json_decref(res);
	}
	api_metric(b, "up", "gauge", "the admin API answers", 1);
	{
		size_t len = evbuffer_get_length(b);
		char *text = xmalloc(len + 1);

		evbuffer_remove(b, text, len);
		api_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
		free(text);
	}
	evbuffer_free(b);
}

struct api_hourly {
	json_t *hours; /* hour_ms (as text) -> {verdict: count} */
};

static int
api_hourly_cb(void *arg, int64_t hour_ms, enum store_verdict v, uint64_t count)
{
	struct api_hourly *h = arg;
	char key[32];
	json_t *o;

	snprintf(key, sizeof(key), "%" PRId64, hour_ms);
	if ((o = json_object_get(h->hours, key)) == NULL) {
		o = json_pack("{s:I}", "hour_ms", (json_int_t)hour_ms);
		json_object_set_new(h->hours, key, o);
	}
	json_object_set_new(o, store_verdict_str(v), json_integer((json_int_t)count));
	return 0;
}

/* The definition of a symbol named in the store, or NULL (not one of this moat's). */
static const struct scan_sym_def *
api_sym_find(const char *name)
{
	for (size_t i = 0; i < SCAN_SYM_COUNT; i++)
		if (strcmp(scan_sym_defs[i].name, name) == 0)
			return &scan_sym_defs[i];
	return NULL;
}

struct api_threat {
	const struct scan_sym_def *def;
	uint64_t count;
};

struct api_threats {
	struct api_threat rows[SCAN_SYM_COUNT]; /* known symbols only: each at most once */
	size_t n;
};

/*
 * A symbol counts as a threat in the messages where its score was above
 * 0, or in all of them when it forces quarantine, malware or reject.
 */
static int
api_threat_cb(void *arg, const char *name, uint64_t messages, uint64_t positive)
{
	struct api_threats *t = arg;
	const struct scan_sym_def *d = api_sym_find(name);
	uint64_t count;

	if (d == NULL || t->n == nitems(t->rows))
		return 0;
	count = (d->flags & API_SF_THREAT) ? messages : positive;
	if (count > 0)
		t->rows[t->n++] = (struct api_threat){d, count};
	return 0;
}

/* Most frequent first, then by name. */
static int
api_threat_cmp(const void *a, const void *b)
{
	const struct api_threat *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->def->name, y->def->name);
}

static int
api_sender_cb(void *arg, const char *sender, uint64_t count)
{
	json_array_append_new(arg, json_pack("{s:o, s:I}", "sender", api_str(sender), "count",
	                                     (json_int_t)count));
	return 0;
}

/* top_threats and top_senders of the last day into o; a store failure is answered. */
static bool
api_stats_top(struct api_req *r, json_t *o, int64_t now)
{
	struct api_threats *t = xcalloc(1, sizeof(*t));
	json_t *threats = json_array(), *senders = json_array();
	int64_t since = now > API_TOP_WINDOW_MS ? now - API_TOP_WINDOW_MS : 0;
	enum store_status st;

	st = store_track_threat_symbols(r->a->store, since, API_TOP_SCAN, api_threat_cb, t);
	if (st == STORE_OK)
		st = store_track_threat_senders(r->a->store, since, API_TOP_SCAN, API_TOP_N,
		                                api_sender_cb, senders);
	if (st != STORE_OK) {
		free(t);
		json_decref(threats);
		json_decref(senders);
		api_store_error(r, st);
		return false;
	}
	qsort(t->rows, t->n, sizeof(t->rows[0]), api_threat_cmp);
	for (size_t i = 0; i < t->n && i < API_TOP_N; i++)
		json_array_append_new(threats, json_pack("{s:s, s:I}", "name", t->rows[i].def->name,
		                                         "count", (json_int_t)t->rows[i].count));
	free(t);
	json_object_set_new(o, "top_threats", threats);
	json_object_set_new(o, "top_senders", senders);
	return true;
}

void
api_h_stats(struct api_req *r)
{
	json_t *counters = json_object(), *res = NULL, *hourly = json_array(), *o;
	struct api_hourly h = {.hours = json_object()};
	int64_t now = api_now_ms(), since = (now / 3600000 - 23) * 3600000;
	enum store_status st;

#define API_STAT(name, doc)                                                                        \
	json_object_set_new(counters, #name, json_integer((json_int_t)stats_get(name)));
	STATS_COUNTERS(API_STAT)
#undef API_STAT
	if ((st = store_track_hourly(r->a->store, since, api_hourly_cb, &h)) != STORE_OK) {
		json_decref(counters);
		json_decref(hourly);
		json_decref(h.hours);
		api_store_error(r, st);
		return;
	}
	/* every hour of the last day, oldest first, zeros included: a chart needs no gaps */
	for (int64_t t = since; t <= now; t += 3600000) {
		char k[32];
		json_t *row;

		snprintf(k, sizeof(k), "%" PRId64, t);
		row = json_object_get(h.hours, k);
		row = row ? json_incref(row) : json_pack("{s:I}", "hour_ms", (json_int_t)t);
		for (int vv = STORE_V_NONE; vv <= STORE_V_TEMPFAIL; vv++)
			if (json_object_get(row, store_verdict_str(vv)) == NULL)
				json_object_set_new(row, store_verdict_str(vv), json_integer(0));
		json_array_append_new(hourly, row);
	}
	json_decref(h.hours);
	o = json_pack("{s:o, s:o}", "counters", counters, "hourly", hourly);
	if (!api_stats_top(r, o, now)) {
		json_decref(o);
		return;
	}
	if (r->a->deps.control != NULL) {
		json_t *req = json_pack("{s:s}", "cmd", "stats");
		char err[256];

		if (control_call(r->a->deps.control, req, &res, err, sizeof(err)) == 0 &&
		    json_is_object(json_object_get(res, "queue")))
			json_object_set(o, "queue", json_object_get(res, "queue"));
		json_decref(req);
		json_decref(res);
	}
	if (json_object_get(o, "queue") == NULL)
		json_object_set_new(o, "queue", json_null());
	api_reply(r, 200, o);
}

/* Every scan symbol: what `moatd --symbols` prints (docs/SCAN.md), for the portal. */
void
api_h_symbols(struct api_req *r)
{
	static const struct {
		unsigned flag;
		const char *word;
	} words[] = {
	        {SCAN_SF_QUARANTINE, "quarantine"},
	        {SCAN_SF_MALWARE, "malware"},
	        {SCAN_SF_REJECT, "reject"},
	        {SCAN_SF_DELIVER, "deliver"},
	};
	json_t *items = json_array();

	for (size_t i = 0; i < SCAN_SYM_COUNT; i++) {
		const struct scan_sym_def *d = &scan_sym_defs[i];
		json_t *flags = json_array();

		for (size_t w = 0; w < nitems(words); w++)
			if (d->flags & words[w].flag)
				json_array_append_new(flags, json_string(words[w].word));
		json_array_append_new(items,
		                      json_pack("{s:s, s:f, s:o, s:s}", "name", d->name, "score",
		                                d->score, "flags", flags, "description", d->doc));
	}
	api_reply(r, 200, json_pack("{s:o}", "symbols", items));
}

/*
 * The answer to a deletion from the store: 404 naming field with missing
 * when nothing was there, the store's error, else the change audited
 * (action, target), the policy rebuilt if it holds it, and 200
 * {"deleted": true}. True when it was deleted.
 */
static bool
api_deleted(struct api_req *r, enum store_status st, const char *field, const char *missing,
            const char *action, const char *target, bool policy)
{
	if (st == STORE_NOT_FOUND) {
		api_error(r, 404, field, "%s", missing);
		return false;
	}
	if (st != STORE_OK) {
		api_store_error(r, st);
		return false;
	}
	api_audit(r, action, target);
	if (policy)
		api_policy_changed(r);
	api_reply(r, 200, json_pack("{s:b}", "deleted", 1));
	return true;
}

/* --- domains --- */

/* The config file's [domain] of name, or NULL: the file stays its source. */
static const struct config_domain *
api_domain_in_config(struct api_req *r, const char *name)
{
	for (size_t i = 0; i < r->cfg->ndomains; i++)
		if (str_ieq(r->cfg->domains[i].name, name))
			return &r->cfg->domains[i];
	return NULL;
}

void
api_h_domains(struct api_req *r)
{
	json_t *items = json_array();

	for (size_t i = 0; i < policy_domain_count(r->pol); i++) {
		const char *name = policy_domain_name(r->pol, i);
		size_t n;
		const char *const *rcpts = policy_domain_recipients(r->pol, i, &n);
		json_t *rl = json_array();
		char route[1024];
		double q, rj;

		for (size_t j = 0; j < n; j++)
			json_array_append_new(rl, api_str(rcpts[j]));
		const struct route *rt = policy_route_for(r->pol, name);
		const struct config_domain *cd = api_domain_in_config(r, name);
		json_t *o;

		route_format(rt, route, sizeof(route));
		policy_scan_thresholds(r->pol, name, &q, &rj);
		o = json_pack("{s:o, s:b, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:b, s:s}", "name",
		              api_str(name), "any_recipient", n == 0, "recipients", rl, "route",
		              api_str(route), "tls", route_tls_name(rt->tls), "tls_name",
		              api_str(rt->tls_name), "tls_ca", api_str(rt->tls_ca),
		              "quarantine_score", isfinite(q) ? json_real(q) : json_null(),
		              "reject_score", isfinite(rj) ? json_real(rj) : json_null(),
		              "relay_key_configured", policy_relay_key(r->pol, name) != NULL,
		              "source", policy_domain_stored(r->pol, i) ? "api" : "config");
		/* where the config file declares it (the file wins over a stored domain) */
		if (cd != NULL) {
			json_object_set_new(o, "file", api_str(r->cfg->path));
			json_object_set_new(o, "line", json_integer(cd->line));
		}
		json_array_append_new(items, o);
	}
	api_reply(r, 200, json_pack("{s:o}", "items", items));
}

/*
 * PUT /api/v1/domains/{name}: the body's fields become the lines of a
 * [domain] section, checked by the config file's own parser; its error
 * names a line, which names the field.
 */
void
api_h_domain_put(struct api_req *r)
{
	static const char *const strs[] = {"route", "tls", "tls_name", "tls_ca", "relay_key"};
	static const char *const known[] = {"recipients",       "route",       "tls",
	                                    "tls_name",         "tls_ca",      "relay_key",
	                                    "quarantine_score", "reject_score"};
	const char *fields[16], *key;
	const struct config_domain *fd;
	struct config_domain cd;
	struct store_domain sd;
	struct dynbuf b;
	json_t *v, *it;
	size_t nf = 0, i;
	char err[512];
	bool existed = false;
	enum store_status st;
	unsigned line;
	int berr = 0;

	if (!json_is_object(r->body)) {
		api_error(r, 400, "body", "a JSON object is needed");
		return;
	}
	json_object_foreach (r->body, key, v) {
		for (i = 0; i < nitems(known) && strcmp(key, known[i]) != 0; i++)
			;
		if (i == nitems(known)) {
			api_error(r, 400, key,
			          "unknown field '%.64s' (recipients, route, tls, "
			          "tls_name, tls_ca, relay_key, quarantine_score, "
			          "reject_score)",
			          key);
			return;
		}
	}
	if ((fd = api_domain_in_config(r, r->args[0])) != NULL) {
		api_error(r, 409, "name", "%s is declared in %s (line %u): change it there",
		          fd->name, r->cfg->path, fd->line);
		return;
	}
	dynbuf_init(&b, STORE_DOMAIN_BODY_MAX);
	v = json_object_get(r->body, "recipients");
	if (json_is_string(v) && strcmp(json_string_value(v), "any") == 0) {
		berr |= dynbuf_printf(&b, "recipients = any\n");
	} else if (json_is_array(v) && json_array_size(v) > 0) {
		berr |= dynbuf_printf(&b, "recipients = ");
		json_array_foreach (v, i, it) {
			if (!json_is_string(it) || strpbrk(json_string_value(it), ", \t\r\n#") ||
			    json_string_length(it) == 0) {
				free(b.p);
				api_error(r, 400, "recipients",
				          "'recipients' holds addresses or local "
				          "parts (strings without blanks or commas)");
				return;
			}
			berr |= dynbuf_printf(&b, "%s%s", i ? ", " : "", json_string_value(it));
		}
		berr |= dynbuf_printf(&b, "\n");
	} else {
		free(b.p);
		api_error(r, 400, "recipients",
		          "'recipients' must be \"any\" or a list of addresses");
		return;
	}
	fields[nf++] = "recipients";
	for (i = 0; i < nitems(strs); i++) {
		if ((v = json_object_get(r->body, strs[i])) == NULL)
			continue;
		if (!json_is_string(v) || strpbrk(json_string_value(v), "\r\n") ||
		    json_string_length(v) == 0) {
			free(b.p);
			api_error(r, 400, strs[i], "'%s' must be a one-line string", strs[i]);
			return;
		}
		berr |= dynbuf_printf(&b, "%s = %s\n", strs[i], json_string_value(v));
		fields[nf++] = strs[i];
	}
	for (i = 0; i < 2; i++) {
		const char *k = i ? "reject_score" : "quarantine_score";

		if ((v = json_object_get(r->body, k)) == NULL || json_is_null(v))
			continue;
		if (!json_is_number(v)) {
			free(b.p);
			api_error(r, 400, k, "'%s' must be a number", k);
			return;
		}
		berr |= dynbuf_printf(&b, "%s = %.4f\n", k, json_number_value(v));
		fields[nf++] = k;
	}
	if (berr) {
		free(b.p);
		api_error(r, 400, "recipients",
		          "the domain is over %d octets as a [domain] section: list fewer "
		          "recipients, or accept any and let the downstream refuse unknown ones",
		          STORE_DOMAIN_BODY_MAX);
		return;
	}
	if (b.p == NULL ||
	    config_domain_parse(r->cfg, r->args[0], b.p, &cd, err, sizeof(err)) < 0) {
		const char *f = "name";
		const char *colon = strstr(err, "]:");

		if (colon && sscanf(colon + 2, "%u:", &line) == 1 && line >= 1 && line <= nf)
			f = fields[line - 1];
		else if (strstr(err, "recipients"))
			f = "recipients";
		else if (strstr(err, "score"))
			f = "reject_score";
		else if (strstr(err, "route"))
			f = "route";
		free(b.p);
		api_error(r, 400, f, "%s", err);
		return;
	}
	for (i = 0; i < policy_domain_count(r->pol); i++)
		if (str_ieq(policy_domain_name(r->pol, i), cd.name))
			existed = true;
	sd = (struct store_domain){.name = cd.name,
	                           .body = b.p,
	                           .created_ms = api_now_ms(),
	                           .updated_ms = api_now_ms()};
	st = store_domain_put(r->a->store, &sd);
	free(b.p);
	if (st != STORE_OK) {
		config_domain_clear(&cd);
		api_store_error(r, st);
		return;
	}
	api_audit(r, existed ? "domain.update" : "domain.create", cd.name);
	api_policy_changed(r);
	{
		char route[1024];

		route_format(&cd.route, route, sizeof(route));
		api_reply(r, existed ? 200 : 201,
		          json_pack("{s:s, s:b, s:s, s:s}", "name", cd.name, "any_recipient",
		                    cd.any_recipient, "route", route, "source", "api"));
	}
	config_domain_clear(&cd);
}

void
api_h_domain_delete(struct api_req *r)
{
	char missing[320];
	const struct config_domain *fd;
	enum store_status st;

	if (strlen(r->args[0]) > STORE_DOMAIN_MAX) {
		api_error(r, 400, "name", "not a domain name");
		return;
	}
	/* a stored row the file's declaration hides goes too, so it cannot come back later */
	st = store_domain_delete(r->a->store, r->args[0]);
	if (st == STORE_NOT_FOUND && (fd = api_domain_in_config(r, r->args[0])) != NULL) {
		api_error(r, 409, "name", "%s is declared in %s (line %u): remove it there",
		          fd->name, r->cfg->path, fd->line);
		return;
	}
	snprintf(missing, sizeof(missing), "no domain %.255s was added through the API",
	         r->args[0]);
	api_deleted(r, st, "name", missing, "domain.delete", r->args[0], true);
}

/* --- lists --- */

static const char *
api_kind_str(enum store_list_kind k)
{
	return k == STORE_LIST_ALLOW ? "allow" : "block";
}

static int
api_kind_parse(const char *s, enum store_list_kind *k)
{
	if (s != NULL && strcmp(s, "allow") == 0)
		*k = STORE_LIST_ALLOW;
	else if (s != NULL && strcmp(s, "block") == 0)
		*k = STORE_LIST_BLOCK;
	else
		return -1;
	return 0;
}

static json_t *
api_list_json(const struct store_list_entry *e)
{
	return json_pack("{s:o, s:s, s:o, s:I}", "scope", api_str(e->scope), "kind",
	                 api_kind_str(e->kind), "pattern", api_str(e->pattern), "created_ms",
	                 (json_int_t)e->created_ms);
}

struct api_list_load {
	json_t *items;
	int kind; /* -1: both */
};

static int
api_list_cb(void *arg, const struct store_list_entry *e)
{
	struct api_list_load *l = arg;

	if (l->kind < 0 || (int)e->kind == l->kind)
		json_array_append_new(l->items, api_list_json(e));
	return 0;
}

void
api_h_lists_get(struct api_req *r)
{
	const char *scope = api_query(r, "scope"), *kind = api_query(r, "kind");
	struct api_list_load l = {.items = json_array(), .kind = -1};
	enum store_list_kind k;
	enum store_status st;

	if (kind != NULL) {
		if (api_kind_parse(kind, &k) < 0) {
			json_decref(l.items);
			api_error(r, 400, "kind", "'kind' must be allow or block");
			return;
		}
		l.kind = (int)k;
	}
	if (scope != NULL && strlen(scope) > STORE_DOMAIN_MAX) {
		json_decref(l.items);
		api_error(r, 400, "scope", "'scope' is too long");
		return;
	}
	if ((st = store_list_load(r->a->store, scope, api_list_cb, &l)) != STORE_OK) {
		json_decref(l.items);
		api_store_error(r, st);
		return;
	}
	api_reply(r, 200, json_pack("{s:o}", "items", l.items));
}

/* scope, kind and pattern of a list entry, from the body or the query; false: 400 sent. */
static bool
api_list_args(struct api_req *r, struct store_list_entry *e)
{
	const char *scope = api_query(r, "scope"), *kind = api_query(r, "kind"),
	           *pattern = api_query(r, "pattern"), *why;

	if (api_body_str(r, "scope", &scope) < 0 || api_body_str(r, "kind", &kind) < 0 ||
	    api_body_str(r, "pattern", &pattern) < 0)
		return false;
	e->scope = scope ? scope : "";
	if (e->scope[0] != '\0' && !policy_is_protected(r->pol, e->scope)) {
		api_error(r, 400, "scope", "'scope' must be \"\" (global) or a protected domain");
		return false;
	}
	if (api_kind_parse(kind, &e->kind) < 0) {
		api_error(r, 400, "kind", "'kind' must be allow or block");
		return false;
	}
	if ((why = api_pattern_check(pattern)) != NULL) {
		api_error(r, 400, "pattern", "'pattern' %s", why);
		return false;
	}
	e->pattern = pattern;
	return true;
}

void
api_h_lists_add(struct api_req *r)
{
	struct store_list_entry e = {.created_ms = api_now_ms()};
	enum store_status st;
	char target[STORE_TARGET_MAX + 1];

	if (!api_list_args(r, &e))
		return;
	st = store_list_add(r->a->store, &e);
	if (st != STORE_OK && st != STORE_ALREADY) {
		api_store_error(r, st);
		return;
	}
	if (st == STORE_OK) {
		snprintf(target, sizeof(target), "%s %s %s", e.scope[0] ? e.scope : "*",
		         api_kind_str(e.kind), e.pattern);
		api_audit(r, "list.add", target);
		api_policy_changed(r);
	}
	api_reply(r, st == STORE_OK ? 201 : 200,
	          json_pack("{s:o, s:b}", "entry", api_list_json(&e), "added", st == STORE_OK));
}

void
api_h_lists_delete(struct api_req *r)
{
	struct store_list_entry e = {0};
	enum store_status st;
	char target[STORE_TARGET_MAX + 1];

	if (!api_list_args(r, &e))
		return;
	st = store_list_delete(r->a->store, e.scope, e.kind, e.pattern);
	snprintf(target, sizeof(target), "%s %s %s", e.scope[0] ? e.scope : "*",
	         api_kind_str(e.kind), e.pattern);
	api_deleted(r, st, "pattern", "no such list entry", "list.delete", target, true);
}

/* --- rules --- */

static json_t *
api_lines_json(const char *const *lines, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, api_str(lines[i]));
	return a;
}

static json_t *
api_rule_json(const struct rule_spec *s)
{
	return json_pack("{s:o, s:I, s:b, s:b, s:o, s:o, s:o}", "name", api_str(s->name),
	                 "priority", (json_int_t)s->priority, "enabled", s->enabled, "stop",
	                 s->stop, "if", api_lines_json(s->ifs, s->nifs), "unless",
	                 api_lines_json(s->unless, s->nunless), "then",
	                 api_lines_json(s->then, s->nthen));
}

struct api_rule_load {
	json_t *items;
	const char *name; /* only this one; NULL: all */
};

static int
api_rule_cb(void *arg, const struct rule_spec *spec)
{
	struct api_rule_load *l = arg;

	if (l->name == NULL || strcmp(l->name, spec->name) == 0)
		json_array_append_new(l->items, api_rule_json(spec));
	return 0;
}

static json_t *
api_rules_load(struct api_req *r, const char *name)
{
	struct api_rule_load l = {.items = json_array(), .name = name};
	enum store_status st;

	if ((st = store_rule_load(r->a->store, api_rule_cb, &l)) != STORE_OK) {
		json_decref(l.items);
		api_store_error(r, st);
		return NULL;
	}
	return l.items;
}

void
api_h_rules_list(struct api_req *r)
{
	json_t *items = api_rules_load(r, NULL);

	if (items != NULL)
		api_reply(r, 200, json_pack("{s:o}", "items", items));
}

void
api_h_rule_get(struct api_req *r)
{
	json_t *items = api_rules_load(r, r->args[0]);

	if (items == NULL)
		return;
	if (json_array_size(items) == 0) {
		json_decref(items);
		api_error(r, 404, "name", "no rule named '%.64s'", r->args[0]);
		return;
	}
	api_reply(r, 200, json_incref(json_array_get(items, 0)));
	json_decref(items);
}

/* A rule's text from a JSON object, its lines pointing into obj. */
struct api_rule_in {
	struct rule_spec spec;
	const char *lines[3][RULE_ITEMS_MAX];
};

/*
 * Check obj as a rule named name (NULL: obj's "name"): each line, then the
 * rule; 0, or -1 with the field and message of the first error.
 */
static int
api_rule_parse(json_t *obj, const char *name, struct api_rule_in *in, char *field, size_t fieldsize,
               char *err, size_t errsize)
{
	static const char *const keys[3] = {"if", "unless", "then"};
	json_t *v;
	struct rule *rule;

	memset(in, 0, sizeof(*in));
	if (!json_is_object(obj)) {
		snprintf(field, fieldsize, "rule");
		snprintf(err, errsize, "a rule must be a JSON object");
		return -1;
	}
	if (name == NULL)
		name = json_string_value(json_object_get(obj, "name"));
	if (name == NULL || !rule_name_ok(name)) {
		snprintf(field, fieldsize, "name");
		snprintf(err, errsize,
		         "a rule name is 1 to %d letters, digits, blanks, '-', '_' or '.'",
		         RULE_NAME_MAX);
		return -1;
	}
	in->spec.name = name;
	v = json_object_get(obj, "priority");
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > RULE_PRIORITY_MAX) {
		snprintf(field, fieldsize, "priority");
		snprintf(err, errsize, "'priority' must be an integer from 0 to %d",
		         RULE_PRIORITY_MAX);
		return -1;
	}
	in->spec.priority = (unsigned)json_integer_value(v);
	in->spec.enabled = true;
	if ((v = json_object_get(obj, "enabled")) != NULL) {
		if (!json_is_boolean(v)) {
			snprintf(field, fieldsize, "enabled");
			snprintf(err, errsize, "'enabled' must be true or false");
			return -1;
		}
		in->spec.enabled = json_is_true(v);
	}
	if ((v = json_object_get(obj, "stop")) != NULL) {
		if (!json_is_boolean(v)) {
			snprintf(field, fieldsize, "stop");
			snprintf(err, errsize, "'stop' must be true or false");
			return -1;
		}
		in->spec.stop = json_is_true(v);
	}
	for (int k = 0; k < 3; k++) {
		size_t i, n = 0;
		json_t *it;

		v = json_object_get(obj, keys[k]);
		if (v != NULL && (!json_is_array(v) || json_array_size(v) > RULE_ITEMS_MAX)) {
			snprintf(field, fieldsize, "%s", keys[k]);
			snprintf(err, errsize, "'%s' must be an array of at most %d lines", keys[k],
			         RULE_ITEMS_MAX);
			return -1;
		}
		json_array_foreach (v, i, it) {
			const char *text = json_string_value(it);
			char why[512] = "";
			int bad;

			snprintf(field, fieldsize, "%s[%zu]", keys[k], i);
			if (text == NULL || strlen(text) > RULE_TEXT_MAX) {
				snprintf(err, errsize,
				         "a line must be a string of at most %d octets",
				         RULE_TEXT_MAX);
				return -1;
			}
			if (k < 2) {
				struct rule_cond c;

				bad = rule_cond_parse(text, &c, why, sizeof(why));
				if (bad == 0)
					rule_cond_clear(&c);
			} else {
				struct rule_action a;

				bad = rule_action_parse(text, &a, why, sizeof(why));
				if (bad == 0)
					rule_action_clear(&a);
			}
			if (bad != 0) {
				snprintf(err, errsize, "%s", why);
				return -1;
			}
			in->lines[k][n++] = text;
		}
		if (k == 0) {
			in->spec.ifs = in->lines[0];
			in->spec.nifs = n;
		} else if (k == 1) {
			in->spec.unless = in->lines[1];
			in->spec.nunless = n;
		} else {
			in->spec.then = in->lines[2];
			in->spec.nthen = n;
		}
	}
	if ((rule = rule_new(&in->spec, err, errsize)) == NULL) {
		snprintf(field, fieldsize, "%s", in->spec.nthen == 0 ? "then" : "rule");
		return -1;
	}
	rule_free(rule);
	return 0;
}

void
api_h_rule_put(struct api_req *r)
{
	struct api_rule_in in;
	char field[32], err[512];
	enum store_status st;
	json_t *old;

	if (api_rule_parse(r->body, r->args[0], &in, field, sizeof(field), err, sizeof(err)) < 0) {
		api_error(r, 400, field, "%s", err);
		return;
	}
	if ((old = api_rules_load(r, in.spec.name)) == NULL)
		return;
	st = store_rule_put(r->a->store, &in.spec);
	if (st == STORE_CONFLICT) {
		json_decref(old);
		api_error(r, 409, "priority", "another rule has priority %u", in.spec.priority);
		return;
	}
	if (st != STORE_OK) {
		json_decref(old);
		api_store_error(r, st);
		return;
	}
	api_audit(r, json_array_size(old) ? "rule.update" : "rule.create", in.spec.name);
	api_policy_changed(r);
	api_reply(r, json_array_size(old) ? 200 : 201, api_rule_json(&in.spec));
	json_decref(old);
}

void
api_h_rule_delete(struct api_req *r)
{
	char missing[320];
	enum store_status st;

	if (!rule_name_ok(r->args[0])) {
		api_error(r, 400, "name", "not a rule name");
		return;
	}
	st = store_rule_delete(r->a->store, r->args[0]);
	snprintf(missing, sizeof(missing), "no rule named '%.64s'", r->args[0]);
	api_deleted(r, st, "name", missing, "rule.delete", r->args[0], true);
}

/* --- queue --- */

void
api_h_queue_list(struct api_req *r)
{
	const char *ls = api_query(r, "limit");
	uint64_t limit = 1000;
	json_t *res;

	if (ls != NULL &&
	    (parse_u64(ls, strlen(ls), API_QUEUE_LIST_MAX, &limit) < 0 || limit == 0)) {
		api_error(r, 400, "limit", "'limit' must be 1 to %d", API_QUEUE_LIST_MAX);
		return;
	}
	if (api_control(r, "queue.list", NULL, (json_int_t)limit, &res) < 0)
		return;
	api_reply(r, 200, res);
}

void
api_h_queue_get(struct api_req *r)
{
	json_t *res;

	if (api_control(r, "queue.show", r->args[0], 0, &res) < 0)
		return;
	api_reply(r, 200, json_incref(json_object_get(res, "message")));
	json_decref(res);
}

void
api_h_queue_action(struct api_req *r)
{
	static const char *const actions[] = {"retry", "hold", "release", "delete"};
	char cmd[32], action[32];
	json_t *res;
	size_t i;

	for (i = 0; i < nitems(actions); i++)
		if (strcmp(r->args[1], actions[i]) == 0)
			break;
	if (i == nitems(actions)) {
		api_error(r, 404, NULL, "no such queue action (retry, hold, release, delete)");
		return;
	}
	snprintf(cmd, sizeof(cmd), "queue.%s", actions[i]);
	if (api_control(r, cmd, r->args[0], 0, &res) < 0)
		return;
	snprintf(action, sizeof(action), "queue.%s", actions[i]);
	api_audit(r, action, r->args[0]);
	json_object_set_new(res, "id", api_str(r->args[0]));
	json_object_set_new(res, "action", json_string(actions[i]));
	api_reply(r, 200, res);
}

/* --- tokens --- */

static json_t *
api_scopes_json(unsigned scopes)
{
	json_t *a = json_array();

	if (scopes & STORE_SCOPE_READ)
		json_array_append_new(a, json_string("read"));
	if (scopes & STORE_SCOPE_OPERATE)
		json_array_append_new(a, json_string("operate"));
	if (scopes & STORE_SCOPE_ADMIN)
		json_array_append_new(a, json_string("admin"));
	return a;
}

static int
api_token_cb(void *arg, const struct store_token *t)
{
	json_array_append_new(arg, json_pack("{s:s, s:o, s:I, s:I}", "id", t->id, "scopes",
	                                     api_scopes_json(t->scopes), "created_ms",
	                                     (json_int_t)t->created_ms, "last_used_ms",
	                                     (json_int_t)t->last_used_ms));
	return 0;
}

void
api_h_tokens_list(struct api_req *r)
{
	json_t *items = json_array();
	enum store_status st;

	if ((st = store_token_list(r->a->store, api_token_cb, items)) != STORE_OK) {
		json_decref(items);
		api_store_error(r, st);
		return;
	}
	api_reply(r, 200, json_pack("{s:o}", "items", items));
}

void
api_h_token_create(struct api_req *r)
{
	json_t *v = json_object_get(r->body, "scopes"), *it;
	unsigned scopes = 0;
	char token[API_TOKEN_LEN + 1], id[API_TOKEN_ID_LEN + 1];
	enum store_status st;
	size_t i;

	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 3) {
		api_error(r, 400, "scopes", "'scopes' must be an array of read, operate, admin");
		return;
	}
	json_array_foreach (v, i, it) {
		unsigned bit;

		if (!json_is_string(it) ||
		    api_token_scopes_parse(json_string_value(it), &bit) < 0) {
			api_error(r, 400, "scopes",
			          "'scopes' must be an array of read, operate, admin");
			return;
		}
		scopes |= bit;
	}
	if ((st = api_token_mint(r->a->store, scopes, api_now_ms(), token, id)) != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	api_audit(r, "token.create", id);
	api_reply(r, 201,
	          json_pack("{s:s, s:s, s:o, s:s}", "id", id, "token", token, "scopes",
	                    api_scopes_json(scopes), "note",
	                    "the token is shown once: store it now"));
	OPENSSL_cleanse(token, sizeof(token));
}

void
api_h_token_delete(struct api_req *r)
{
	char missing[320];
	enum store_status st;

	if (strlen(r->args[0]) > STORE_TOKEN_ID_MAX) {
		api_error(r, 400, "id", "not a token id");
		return;
	}
	st = store_token_delete(r->a->store, r->args[0]);
	snprintf(missing, sizeof(missing), "no token %.40s", r->args[0]);
	api_deleted(r, st, "id", missing, "token.delete", r->args[0], false);
}

/* --- users --- */

static bool
api_user_name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > STORE_USER_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-@", *p))
			return false;
	return true;
}

static int
api_user_cb(void *arg, const struct store_user *u)
{
	json_array_append_new(arg, json_pack("{s:o, s:I}", "name", api_str(u->name), "created_ms",
	                                     (json_int_t)u->created_ms));
	return 0;
}

static json_t *
api_users(struct api_req *r)
{
	json_t *items = json_array();
	enum store_status st;

	if ((st = store_user_list(r->a->store, api_user_cb, items)) != STORE_OK) {
		json_decref(items);
		api_store_error(r, st);
		return NULL;
	}
	return items;
}

void
api_h_users_list(struct api_req *r)
{
	json_t *items = api_users(r);

	if (items != NULL)
		api_reply(r, 200, json_pack("{s:o}", "items", items));
}

void
api_h_user_create(struct api_req *r)
{
	const char *name = NULL, *password = NULL, *why;
	struct store_user u = {0};
	enum store_status st;

	if (api_body_str(r, "name", &name) < 0 || api_body_str(r, "password", &password) < 0)
		return;
	if (name == NULL || !api_user_name_ok(name)) {
		api_error(r, 400, "name",
		          "'name' must be 1 to %d letters, digits, '.', '_', '-' or '@'",
		          STORE_USER_MAX);
		return;
	}
	if (password == NULL || (why = api_password_check(password)) != NULL) {
		api_error(r, 400, "password", "'password' %s", password ? why : "is missing");
		return;
	}
	str_copy(u.name, name, sizeof(u.name));
	if (api_password_hash(password, u.hash, sizeof(u.hash)) < 0) {
		api_error(r, 500, NULL, "password hashing failed");
		return;
	}
	u.created_ms = api_now_ms();
	st = store_user_add(r->a->store, &u);
	if (st == STORE_ALREADY) {
		api_error(r, 409, "name", "user '%s' exists", name);
		return;
	}
	if (st != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	api_audit(r, "user.create", name);
	api_reply(r, 201,
	          json_pack("{s:s, s:I}", "name", u.name, "created_ms", (json_int_t)u.created_ms));
}

void
api_h_user_delete(struct api_req *r)
{
	char missing[320];
	json_t *users;
	enum store_status st;
	bool exists = false;
	size_t i;
	json_t *it;

	if (!api_user_name_ok(r->args[0])) {
		api_error(r, 400, "name", "not a user name");
		return;
	}
	if ((users = api_users(r)) == NULL)
		return;
	json_array_foreach (users, i, it) {
		if (strcmp(json_string_value(json_object_get(it, "name")), r->args[0]) == 0)
			exists = true;
	}
	if (exists && json_array_size(users) == 1) {
		json_decref(users);
		api_error(r, 409, "name", "'%s' is the last user: create another first",
		          r->args[0]);
		return;
	}
	json_decref(users);
	st = store_user_delete(r->a->store, r->args[0]);
	snprintf(missing, sizeof(missing), "no user '%.64s'", r->args[0]);
	if (api_deleted(r, st, "name", missing, "user.delete", r->args[0], false))
		api_sessions_drop_user(r->a, r->args[0], NULL);
}

void
api_h_user_password(struct api_req *r)
{
	const char *password = NULL, *why;
	char hash[STORE_HASH_MAX + 1];
	enum store_status st;

	if (api_body_str(r, "password", &password) < 0)
		return;
	if (!api_user_name_ok(r->args[0])) {
		api_error(r, 400, "name", "not a user name");
		return;
	}
	if (password == NULL || (why = api_password_check(password)) != NULL) {
		api_error(r, 400, "password", "'password' %s", password ? why : "is missing");
		return;
	}
	if (api_password_hash(password, hash, sizeof(hash)) < 0) {
		api_error(r, 500, NULL, "password hashing failed");
		return;
	}
	st = store_user_set_hash(r->a->store, r->args[0], hash);
	if (st == STORE_NOT_FOUND) {
		api_error(r, 404, "name", "no user '%.64s'", r->args[0]);
		return;
	}
	if (st != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	/* everyone logged in with the old password is out, but whoever changed it */
	api_sessions_drop_user(r->a, r->args[0], r->auth.session ? r->auth.sid : NULL);
	api_audit(r, "user.password", r->args[0]);
	api_reply(r, 200, json_pack("{s:b}", "changed", 1));
}

/* --- audit --- */

struct api_audit_load {
	json_t *items;
	int64_t last;
};

static int
api_audit_cb(void *arg, const struct store_audit *e)
{
	struct api_audit_load *l = arg;

	json_array_append_new(l->items,
	                      json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "id", (json_int_t)e->id,
	                                "time_ms", (json_int_t)e->time_ms, "who", api_str(e->who),
	                                "action", api_str(e->action), "target", api_str(e->target),
	                                "addr", api_str(e->addr)));
	l->last = e->id;
	return 0;
}

void
api_h_audit(struct api_req *r)
{
	const char *target = api_query(r, "target"), *before = api_query(r, "before"),
	           *ls = api_query(r, "limit");
	struct api_audit_load l = {0};
	uint64_t b = 0, limit = 100;
	enum store_status st;

	if (target != NULL && strlen(target) > STORE_TARGET_MAX) {
		api_error(r, 400, "target", "'target' is too long");
		return;
	}
	if (before != NULL && parse_u64(before, strlen(before), (uint64_t)INT64_MAX, &b) < 0) {
		api_error(r, 400, "before", "'before' must be an entry id");
		return;
	}
	if (ls != NULL &&
	    (parse_u64(ls, strlen(ls), API_AUDIT_PAGE_MAX, &limit) < 0 || limit == 0)) {
		api_error(r, 400, "limit", "'limit' must be 1 to %d", API_AUDIT_PAGE_MAX);
		return;
	}
	l.items = json_array();
	st = store_audit_list(r->a->store, target, (int64_t)b, (unsigned)limit, api_audit_cb, &l);
	if (st != STORE_OK) {
		json_decref(l.items);
		api_store_error(r, st);
		return;
	}
	api_reply(
	        r, 200,
	        json_pack("{s:o, s:o}", "items", l.items, "next",
	                  json_array_size(l.items) == limit ? json_integer(l.last) : json_null()));
}

/* --- settings --- */

static bool
api_setting_key_ok(const char *k)
{
	size_t len = strlen(k);

	if (len == 0 || len > STORE_KEY_MAX)
		return false;
	for (const char *p = k; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return true;
}

static int
api_setting_cb(void *arg, const char *key, const char *value)
{
	json_object_set_new(arg, key, api_str(value));
	return 0;
}

void
api_h_settings_list(struct api_req *r)
{
	json_t *o = json_object();
	enum store_status st;

	if ((st = store_setting_list(r->a->store, api_setting_cb, o)) != STORE_OK) {
		json_decref(o);
		api_store_error(r, st);
		return;
	}
	api_reply(r, 200, json_pack("{s:o}", "settings", o));
}

void
api_h_setting_put(struct api_req *r)
{
	const char *value = NULL;
	enum store_status st;

	if (!api_setting_key_ok(r->args[0])) {
		api_error(r, 400, "key",
		          "a setting's name is 1 to %d letters, digits, '.', '_', '-'",
		          STORE_KEY_MAX);
		return;
	}
	if (api_body_str(r, "value", &value) < 0)
		return;
	if (value == NULL || strlen(value) > STORE_VALUE_MAX) {
		api_error(r, 400, "value", "'value' must be a string of at most %d octets",
		          STORE_VALUE_MAX);
		return;
	}
	if ((st = store_setting_set(r->a->store, r->args[0], value)) != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	api_audit(r, "setting.set", r->args[0]);
	api_reply(r, 200, json_pack("{s:s, s:o}", "key", r->args[0], "value", api_str(value)));
}

void
api_h_setting_delete(struct api_req *r)
{
	char missing[320];
	enum store_status st;

	if (!api_setting_key_ok(r->args[0])) {
		api_error(r, 400, "key", "not a setting's name");
		return;
	}
	st = store_setting_delete(r->a->store, r->args[0]);
	snprintf(missing, sizeof(missing), "no setting '%.64s'", r->args[0]);
	api_deleted(r, st, "key", missing, "setting.delete", r->args[0], false);
}

/* --- the policy as JSON: export and import --- */

struct api_export {
	json_t *items;
};

static int
api_export_list_cb(void *arg, const struct store_list_entry *e)
{
	json_array_append_new(arg,
	                      json_pack("{s:o, s:s, s:o}", "scope", api_str(e->scope), "kind",
	                                api_kind_str(e->kind), "pattern", api_str(e->pattern)));
	return 0;
}

void
api_h_config_export(struct api_req *r)
{
	json_t *rules = api_rules_load(r, NULL), *lists;
	enum store_status st;

	if (rules == NULL)
		return;
	lists = json_array();
	if ((st = store_list_load(r->a->store, NULL, api_export_list_cb, lists)) != STORE_OK) {
		json_decref(rules);
		json_decref(lists);
		api_store_error(r, st);
		return;
	}
	api_reply(r, 200,
	          json_pack("{s:o, s:o, s:s}", "rules", rules, "lists", lists, "version",
	                    MOAT_VERSION));
}

static int
api_name_cb(void *arg, const struct rule_spec *spec)
{
	json_array_append_new(arg, json_string_nocheck(spec->name));
	return 0;
}

static int
api_list_all_cb(void *arg, const struct store_list_entry *e)
{
	/* kept as stored, whatever the octets: they name the rows to delete */
	json_array_append_new(arg, json_pack("{s:o, s:i, s:o}", "scope",
	                                     json_string_nocheck(e->scope), "kind", (int)e->kind,
	                                     "pattern", json_string_nocheck(e->pattern)));
	return 0;
}

/* Replace every rule and list entry in one batch; the inputs are checked. */
static enum store_status
api_import_apply(struct api_req *r, struct api_rule_in *rin, size_t nrules,
                 struct store_list_entry *lin, size_t nlists)
{
	struct store *s = r->a->store;
	json_t *names = json_array(), *entries = json_array(), *it;
	enum store_status st;
	size_t i;

	if ((st = store_rule_load(s, api_name_cb, names)) != STORE_OK ||
	    (st = store_list_load(s, NULL, api_list_all_cb, entries)) != STORE_OK)
		goto out;
	if ((st = store_batch_begin(s)) != STORE_OK)
		goto out;
	json_array_foreach (names, i, it) {
		if ((st = store_rule_delete(s, json_string_value(it))) != STORE_OK)
			goto fail;
	}
	json_array_foreach (entries, i, it) {
		st = store_list_delete(
		        s, json_string_value(json_object_get(it, "scope")),
		        (enum store_list_kind)json_integer_value(json_object_get(it, "kind")),
		        json_string_value(json_object_get(it, "pattern")));
		if (st != STORE_OK)
			goto fail;
	}
	for (i = 0; i < nrules; i++)
		if ((st = store_rule_put(s, &rin[i].spec)) != STORE_OK)
			goto fail;
	for (i = 0; i < nlists; i++)
		if ((st = store_list_add(s, &lin[i])) != STORE_OK && st != STORE_ALREADY)
			goto fail;
	st = store_batch_commit(s);
	goto out;
fail:
	store_batch_rollback(s);
out:
	json_decref(names);
	json_decref(entries);
	return st;
}

void
api_h_config_import(struct api_req *r)
{
	json_t *rules = json_object_get(r->body, "rules"),
	       *lists = json_object_get(r->body, "lists");
	struct api_rule_in *rin = NULL;
	struct store_list_entry *lin = NULL;
	size_t nr, nl, i, j;
	char field[64], sub[32], err[512];
	enum store_status st;
	json_t *it;

	if (!json_is_array(rules) || json_array_size(rules) > RULES_MAX) {
		api_error(r, 400, "rules", "'rules' must be an array of at most %d rules",
		          RULES_MAX);
		return;
	}
	if (!json_is_array(lists) || json_array_size(lists) > STORE_LIST_MAX) {
		api_error(r, 400, "lists", "'lists' must be an array of at most %d entries",
		          STORE_LIST_MAX);
		return;
	}
	nr = json_array_size(rules);
	nl = json_array_size(lists);
	rin = xcalloc(nr + 1, sizeof(*rin));
	lin = xcalloc(nl + 1, sizeof(*lin));
	/* everything is checked before anything is replaced */
	json_array_foreach (rules, i, it) {
		if (api_rule_parse(it, NULL, &rin[i], sub, sizeof(sub), err, sizeof(err)) < 0) {
			snprintf(field, sizeof(field), "rules[%zu].%s", i, sub);
			api_error(r, 400, field, "%s", err);
			goto out;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(rin[j].spec.name, rin[i].spec.name) == 0 ||
			    rin[j].spec.priority == rin[i].spec.priority) {
				bool same = strcmp(rin[j].spec.name, rin[i].spec.name) == 0;

				snprintf(field, sizeof(field), "rules[%zu].%s", i,
				         same ? "name" : "priority");
				api_error(r, 400, field, "rules[%zu] has the same %s", j,
				          same ? "name" : "priority");
				goto out;
			}
		}
	}
	json_array_foreach (lists, i, it) {
		const char *scope = json_string_value(json_object_get(it, "scope"));
		const char *pattern = json_string_value(json_object_get(it, "pattern"));
		const char *kind = json_string_value(json_object_get(it, "kind")), *why;

		if (scope == NULL)
			scope = "";
		if (!json_is_object(it) || (scope[0] && !policy_is_protected(r->pol, scope))) {
			snprintf(field, sizeof(field), "lists[%zu].scope", i);
			api_error(r, 400, field, "'scope' must be \"\" or a protected domain");
			goto out;
		}
		if (api_kind_parse(kind, &lin[i].kind) < 0) {
			snprintf(field, sizeof(field), "lists[%zu].kind", i);
			api_error(r, 400, field, "'kind' must be allow or block");
			goto out;
		}
		if ((why = api_pattern_check(pattern)) != NULL) {
			snprintf(field, sizeof(field), "lists[%zu].pattern", i);
			api_error(r, 400, field, "'pattern' %s", why);
			goto out;
		}
		lin[i].scope = scope;
		lin[i].pattern = pattern;
		lin[i].created_ms = api_now_ms();
	}
	if ((st = api_import_apply(r, rin, nr, lin, nl)) != STORE_OK) {
		api_store_error(r, st);
		goto out;
	}
	snprintf(err, sizeof(err), "%zu rules, %zu list entries", nr, nl);
	api_audit(r, "config.import", err);
	api_policy_changed(r);
	api_reply(r, 200,
	          json_pack("{s:I, s:I}", "rules", (json_int_t)nr, "lists", (json_int_t)nl));
out:
	free(rin);
	free(lin);
}
