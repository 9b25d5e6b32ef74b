/*
 * api_quar.c - the quarantine and message tracking under /api/v1/:
 * searches (filters and keyset paging over the store), one entry, the
 * held message itself (.eml download, preview), release and delete (one
 * or a batch, optionally allowing or blocking the sender), and the
 * retention timer's steps.
 *
 * Release and delete are src/quarantine/'s: it decides atomically in the
 * store, moves the file, and writes the audit entry of the state change
 * itself; this file adds the audit entries of the list changes it makes.
 *
 * Paging: "next" is an opaque string, "TIME_MS.ID" of the last row, given
 * back as ?after=; null when there is nothing older.
 */
#include "api_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../quarantine/quarantine.h"
#include "../spool/spool.h"

#if defined(__has_include)
#if __has_include("../quarantine/quarantine_preview.h")
#include "../quarantine/quarantine_preview.h"
#define API_HAVE_PREVIEW 1
#endif
#endif

/* Each status as a token for clients to test ("already"), beside quarantine_status_str()'s text. */
static const char *const api_quar_tokens[] = {
        [QUAR_OK] = "ok",
        [QUAR_NOT_FOUND] = "not_found",
        [QUAR_ALREADY] = "already",
        [QUAR_CONFLICT] = "conflict",
        [QUAR_INVALID] = "invalid",
        [QUAR_MALWARE] = "malware",
        [QUAR_TEMPFAIL] = "tempfail",
        [QUAR_GONE] = "gone",
        [QUAR_ERROR] = "error",
};

/*
 * The HTTP status of a release or delete: quarantine_status_http(), except
 * that asking again for what is done is a success ("status": "already"),
 * so that a client may repeat a request whose answer it lost.
 */
static int
api_quar_http(enum quarantine_status qs)
{
	return qs == QUAR_ALREADY ? 200 : quarantine_status_http(qs);
}

static void
api_quar_ctx(struct api_req *r, struct quarantine_ctx *q)
{
	q->store = r->a->store;
	q->spool = r->a->deps.spool;
	q->delivery = r->a->deps.delivery;
	q->scan_env = r->a->deps.scan_env;
	q->cfg = r->cfg;
	q->pol = r->pol;
}

/* --- filters --- */

static int
api_parse_ms(struct api_req *r, const char *name, const char *v, int64_t *out)
{
	uint64_t n;

	if (parse_u64(v, strlen(v), (uint64_t)INT64_MAX, &n) < 0) {
		api_error(r, 400, name, "'%s' must be a time in milliseconds since the epoch",
		          name);
		return -1;
	}
	*out = (int64_t)n;
	return 0;
}

static int
api_parse_cursor(struct api_req *r, const char *v, struct store_cursor *c)
{
	const char *dot = strchr(v, '.');
	uint64_t t;

	if (dot == NULL || parse_u64(v, (size_t)(dot - v), (uint64_t)INT64_MAX, &t) < 0 ||
	    !spool_id_valid(dot + 1)) {
		api_error(r, 400, "after", "'after' must be a 'next' value of an earlier page");
		return -1;
	}
	c->time_ms = (int64_t)t;
	str_copy(c->id, dot + 1, sizeof(c->id));
	return 0;
}

static json_t *
api_cursor_json(bool more, const struct store_cursor *c)
{
	char buf[64];

	if (!more)
		return json_null();
	snprintf(buf, sizeof(buf), "%" PRId64 ".%s", c->time_ms, c->id);
	return json_string(buf);
}

/* The query's filters into f; false: a 400 was sent. quar: domain and state allowed. */
static bool
api_filter(struct api_req *r, struct store_filter *f, bool quar)
{
	struct evkeyval *kv;

	store_filter_init(f);
	TAILQ_FOREACH (kv, r->query, next) {
		const char *k = kv->key, *v = kv->value;
		size_t vlen = strlen(v);

		if (strcmp(k, "sender") == 0) {
			if (vlen > STORE_ADDR_MAX)
				goto toolong;
			f->sender = v;
		} else if (strcmp(k, "rcpt") == 0) {
			if (vlen == 0 || vlen > STORE_ADDR_MAX)
				goto bad;
			f->rcpt = v;
		} else if (strcmp(k, "subject") == 0) {
			if (vlen < STORE_SUBJECT_MIN || vlen > STORE_HEADER_MAX) {
				api_error(r, 400, k, "'subject' must be %d to %d octets",
				          STORE_SUBJECT_MIN, STORE_HEADER_MAX);
				return false;
			}
			f->subject = v;
		} else if (strcmp(k, "message_id") == 0) {
			if (vlen == 0 || vlen > STORE_HEADER_MAX)
				goto bad;
			f->message_id = v;
		} else if (strcmp(k, "id") == 0) {
			if (!spool_id_valid(v))
				goto bad;
			f->id = v;
		} else if (quar && strcmp(k, "domain") == 0) {
			if (vlen == 0 || vlen > STORE_DOMAIN_MAX)
				goto bad;
			f->domain = v;
		} else if (strcmp(k, "since") == 0) {
			if (api_parse_ms(r, k, v, &f->since_ms) < 0)
				return false;
		} else if (strcmp(k, "until") == 0) {
			if (api_parse_ms(r, k, v, &f->until_ms) < 0)
				return false;
		} else if (strcmp(k, "verdict") == 0) {
			if ((f->verdict = store_verdict_parse(v)) < 0) {
				api_error(r, 400, k,
				          "'verdict' must be none, deliver, quarantine, reject or "
				          "tempfail");
				return false;
			}
		} else if (quar && strcmp(k, "state") == 0) {
			if ((f->state = store_qstate_parse(v)) < 0) {
				api_error(r, 400, k,
				          "'state' must be held, released, deleted or expired");
				return false;
			}
		} else if (strcmp(k, "limit") == 0) {
			uint64_t n;

			if (parse_u64(v, vlen, STORE_PAGE_MAX, &n) < 0 || n == 0) {
				api_error(r, 400, k, "'limit' must be 1 to %d", STORE_PAGE_MAX);
				return false;
			}
			f->limit = (unsigned)n;
		} else if (strcmp(k, "after") == 0) {
			if (api_parse_cursor(r, v, &f->after) < 0)
				return false;
		} else {
			api_error(r, 400, k, "unknown parameter '%.64s'", k);
			return false;
		}
		continue;
	bad:
		api_error(r, 400, k, "'%s' is malformed", k);
		return false;
	toolong:
		api_error(r, 400, k, "'%s' is too long", k);
		return false;
	}
	return true;
}

/* --- quarantine --- */

static json_t *
api_quar_json(const struct store_quar *e)
{
	json_t *o = json_object(), *rcpts = json_array();

	for (size_t i = 0; i < e->nrcpts; i++)
		json_array_append_new(rcpts, api_str(e->rcpts[i]));
	json_object_set_new(o, "id", json_string(e->id));
	json_object_set_new(o, "domain", api_str(e->domain));
	json_object_set_new(o, "received_ms", json_integer(e->received_ms));
	json_object_set_new(o, "sender", api_str(e->sender));
	json_object_set_new(o, "rcpts", rcpts);
	json_object_set_new(o, "from", api_str(e->from));
	json_object_set_new(o, "subject", api_str(e->subject));
	json_object_set_new(o, "message_id", api_str(e->message_id));
	json_object_set_new(o, "size", json_integer((json_int_t)e->size));
	json_object_set_new(o, "verdict", json_string(store_verdict_str(e->verdict)));
	json_object_set_new(o, "score", json_real(e->score));
	json_object_set_new(o, "symbols", api_str(e->symbols));
	json_object_set_new(o, "state", json_string(store_qstate_str(e->state)));
	json_object_set_new(o, "state_by", api_str(e->state_by));
	json_object_set_new(o, "state_ms", json_integer(e->state_ms));
	return o;
}

void
api_h_quar_list(struct api_req *r)
{
	struct store_filter f;
	struct store_quar_page p = {0};
	enum store_status st;
	json_t *items;

	if (!api_filter(r, &f, true))
		return;
	if ((st = store_quarantine_search(r->a->store, &f, &p)) != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	items = json_array();
	for (size_t i = 0; i < p.n; i++)
		json_array_append_new(items, api_quar_json(&p.rows[i]));
	api_reply(
	        r, 200,
	        json_pack("{s:o, s:o}", "items", items, "next", api_cursor_json(p.more, &p.next)));
	store_quar_page_free(&p);
}

/* The entry named by the path into e; false: 400/404 sent. */
static bool
api_quar_entry(struct api_req *r, struct store_quar *e)
{
	enum store_status st;

	if (!spool_id_valid(r->args[0])) {
		api_error(r, 400, "id", "'%.40s' is not a quarantine id (16 hex digits)",
		          r->args[0]);
		return false;
	}
	st = store_quarantine_get(r->a->store, r->args[0], e);
	if (st == STORE_NOT_FOUND) {
		api_error(r, 404, "id", "no quarantined message %s", r->args[0]);
		return false;
	}
	if (st != STORE_OK) {
		api_store_error(r, st);
		return false;
	}
	return true;
}

void
api_h_quar_get(struct api_req *r)
{
	struct store_quar e;

	if (!api_quar_entry(r, &e))
		return;
	api_reply(r, 200, api_quar_json(&e));
	store_quar_free(&e);
}

/* An error reply for a quarantine status other than QUAR_OK. */
static void
api_quar_fail(struct api_req *r, enum quarantine_status qs, const char *field, const char *msg)
{
	api_error(r, quarantine_status_http(qs), field, "%s%s%s", quarantine_status_str(qs),
	          msg && msg[0] ? ": " : "", msg ? msg : "");
}

static bool
api_quar_read(struct api_req *r, unsigned char **data, size_t *len)
{
	struct quarantine_ctx q;
	struct store_quar e;
	enum quarantine_status qs;

	if (!api_quar_entry(r, &e))
		return false;
	store_quar_free(&e);
	api_quar_ctx(r, &q);
	if ((qs = quarantine_read(&q, r->args[0], data, len)) != QUAR_OK) {
		api_quar_fail(r, qs, "id", NULL);
		return false;
	}
	return true;
}

void
api_h_quar_download(struct api_req *r)
{
	unsigned char *data;
	size_t len;
	char disp[64];

	if (!api_quar_read(r, &data, &len))
		return;
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s.eml\"", r->args[0]);
	api_reply_raw(r, 200, "message/rfc822", data, len, disp);
	free(data);
}

void
api_h_quar_preview(struct api_req *r)
{
#ifdef API_HAVE_PREVIEW
	unsigned char *data;
	size_t len;
	json_t *o;

	if (!api_quar_read(r, &data, &len))
		return;
	o = quarantine_preview(data, len);
	free(data);
	if (o == NULL) {
		api_error(r, 500, NULL, "the message cannot be previewed");
		return;
	}
	api_reply(r, 200, o);
#else
	api_error(r, 501, NULL, "previews are not in this build yet");
#endif
}

/* Put the entry's sender on its domain's allow or block list (after a release or delete). */
static bool
api_quar_list_sender(struct api_req *r, const struct store_quar *e, enum store_list_kind kind,
                     json_t *out)
{
	struct store_list_entry le = {
	        .scope = e->domain,
	        .kind = kind,
	        .pattern = e->sender,
	        .created_ms = api_now_ms(),
	};
	const char *key = kind == STORE_LIST_ALLOW ? "allowed_sender" : "blocked_sender";
	enum store_status st;
	char target[STORE_TARGET_MAX + 1];

	if (e->sender[0] == '\0' || api_pattern_check(e->sender) != NULL) {
		/* <> cannot be listed: the report itself is what was held */
		json_object_set_new(out, key, json_false());
		return false;
	}
	st = store_list_add(r->a->store, &le);
	json_object_set_new(out, key, json_boolean(st == STORE_OK || st == STORE_ALREADY));
	if (st != STORE_OK)
		return false;
	snprintf(target, sizeof(target), "%s %s %s", e->domain,
	         kind == STORE_LIST_ALLOW ? "allow" : "block", e->sender);
	api_audit(r, "list.add", target);
	return true;
}

struct api_act {
	bool release;
	bool rescan;
	bool list_sender; /* allow_sender / block_sender */
	const char *const *rcpts;
	size_t nrcpts;
};

/* The result object of one release or delete, its HTTP status in *code; e: the entry or NULL. */
static json_t *
api_quar_result(struct api_req *r, const char *id, enum quarantine_status qs, const char *msg,
                const struct api_act *act, const struct store_quar *e, int *code, bool *listed)
{
	json_t *o = json_pack("{s:o}", "id", api_str(id));

	if (e && (qs == QUAR_OK || qs == QUAR_ALREADY) && act->list_sender &&
	    api_quar_list_sender(r, e, act->release ? STORE_LIST_ALLOW : STORE_LIST_BLOCK, o))
		*listed = true;
	*code = api_quar_http(qs);
	json_object_set_new(o, "status",
	                    json_string((unsigned)qs < nitems(api_quar_tokens) ? api_quar_tokens[qs]
	                                                                       : "error"));
	json_object_set_new(o, "code", json_integer(*code));
	json_object_set_new(o, "message", api_str(msg[0] ? msg : quarantine_status_str(qs)));
	if (*code >= 400)
		json_object_set_new(o, "error", api_str(msg[0] ? msg : quarantine_status_str(qs)));
	return o;
}

/* Look an entry up for an action: QUAR_OK with *e filled, else the status and msg. */
static enum quarantine_status
api_quar_lookup(struct api_req *r, const char *id, struct store_quar *e, char *msg, size_t msgsize)
{
	enum store_status st;

	if (!spool_id_valid(id)) {
		snprintf(msg, msgsize, "not a quarantine id");
		return QUAR_INVALID;
	}
	if ((st = store_quarantine_get(r->a->store, id, e)) != STORE_OK)
		return st == STORE_NOT_FOUND ? QUAR_NOT_FOUND : QUAR_ERROR;
	return QUAR_OK;
}

/* Release or delete one entry; the result object, and its HTTP status in *code. */
static json_t *
api_quar_act(struct api_req *r, const char *id, const struct api_act *act, int *code, bool *listed)
{
	struct quarantine_ctx q;
	struct quarantine_actor by = {.who = r->auth.who, .addr = r->addr};
	struct store_quar e;
	enum quarantine_status qs;
	char msg[256] = "";
	json_t *o;

	if ((qs = api_quar_lookup(r, id, &e, msg, sizeof(msg))) != QUAR_OK)
		return api_quar_result(r, id, qs, msg, act, NULL, code, listed);
	api_quar_ctx(r, &q);
	if (act->release) {
		struct quarantine_release_req rr = {
		        .id = id,
		        .rcpts = act->rcpts,
		        .nrcpts = act->nrcpts,
		        .rescan = act->rescan,
		};
		qs = quarantine_release(&q, &rr, &by, msg, sizeof(msg));
	} else {
		qs = quarantine_delete(&q, id, &by, msg, sizeof(msg));
	}
	o = api_quar_result(r, id, qs, msg, act, &e, code, listed);
	store_quar_free(&e);
	return o;
}

/*
 * Release many: the ones that exist go to quarantine_release_many()
 * together (one store transaction, one sync of their queue files).
 */
static json_t *
api_quar_release_batch(struct api_req *r, json_t *ids, const struct api_act *act, bool *listed)
{
	size_t n = json_array_size(ids), nreq = 0;
	struct store_quar *e = xcalloc(n, sizeof(*e));
	enum quarantine_status *qs = xcalloc(n, sizeof(*qs));
	char(*msg)[256] = xcalloc(n, sizeof(*msg));
	struct quarantine_release_req *req = xcalloc(n, sizeof(*req));
	struct quarantine_result *out = xcalloc(n, sizeof(*out));
	size_t *idx = xcalloc(n, sizeof(*idx));
	struct quarantine_actor by = {.who = r->auth.who, .addr = r->addr};
	struct quarantine_ctx q;
	json_t *results = json_array();

	for (size_t i = 0; i < n; i++) {
		const char *id = json_string_value(json_array_get(ids, i));

		if ((qs[i] = api_quar_lookup(r, id, &e[i], msg[i], sizeof(msg[i]))) != QUAR_OK)
			continue;
		req[nreq] = (struct quarantine_release_req){.id = id, .rescan = act->rescan};
		idx[nreq++] = i;
	}
	api_quar_ctx(r, &q);
	if (nreq > 0)
		quarantine_release_many(&q, req, nreq, &by, out);
	for (size_t k = 0; k < nreq; k++) {
		qs[idx[k]] = out[k].status;
		str_copy(msg[idx[k]], out[k].msg, sizeof(msg[idx[k]]));
	}
	for (size_t i = 0; i < n; i++) {
		int code;
		bool found = e[i].id[0] != '\0';

		json_array_append_new(results,
		                      api_quar_result(r, json_string_value(json_array_get(ids, i)),
		                                      qs[i], msg[i], act, found ? &e[i] : NULL,
		                                      &code, listed));
		if (found)
			store_quar_free(&e[i]);
	}
	free(e);
	free(qs);
	free(msg);
	free(req);
	free(out);
	free(idx);
	return results;
}

/* rcpts: an array of addresses, at most STORE_RCPTS_MAX; false: 400 sent. */
static bool
api_rcpts(struct api_req *r, const char ***out, size_t *n)
{
	json_t *v = json_object_get(r->body, "rcpts"), *it;
	size_t i;

	*out = NULL;
	*n = 0;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_array(v) || json_array_size(v) > STORE_RCPTS_MAX) {
		api_error(r, 400, "rcpts", "'rcpts' must be an array of at most %d addresses",
		          STORE_RCPTS_MAX);
		return false;
	}
	*out = xcalloc(json_array_size(v) + 1, sizeof(**out));
	json_array_foreach (v, i, it) {
		if (!json_is_string(it) || json_string_length(it) == 0 ||
		    json_string_length(it) > STORE_ADDR_MAX) {
			free(*out);
			*out = NULL;
			api_error(r, 400, "rcpts", "'rcpts' must hold addresses (strings)");
			return false;
		}
		(*out)[(*n)++] = json_string_value(it);
	}
	return true;
}

void
api_h_quar_release(struct api_req *r)
{
	struct api_act act = {.release = true, .rescan = true};
	const char **rcpts = NULL;
	bool listed = false;
	json_t *o;
	int code;

	if (api_body_bool(r, "rescan", &act.rescan) < 0 ||
	    api_body_bool(r, "allow_sender", &act.list_sender) < 0 ||
	    !api_rcpts(r, &rcpts, &act.nrcpts))
		return;
	act.rcpts = rcpts;
	if (!spool_id_valid(r->args[0])) {
		free(rcpts);
		api_error(r, 400, "id", "'%.40s' is not a quarantine id (16 hex digits)",
		          r->args[0]);
		return;
	}
	o = api_quar_act(r, r->args[0], &act, &code, &listed);
	free(rcpts);
	if (code == 400 && act.nrcpts > 0)
		json_object_set_new(o, "field", json_string("rcpts"));
	else if (code == 404)
		json_object_set_new(o, "field", json_string("id"));
	if (listed)
		api_policy_changed(r);
	api_reply(r, code, o);
}

void
api_h_quar_delete(struct api_req *r)
{
	struct api_act act = {.release = false};
	bool listed = false;
	json_t *o;
	int code;

	if (api_body_bool(r, "block_sender", &act.list_sender) < 0)
		return;
	if (!spool_id_valid(r->args[0])) {
		api_error(r, 400, "id", "'%.40s' is not a quarantine id (16 hex digits)",
		          r->args[0]);
		return;
	}
	o = api_quar_act(r, r->args[0], &act, &code, &listed);
	if (code == 404)
		json_object_set_new(o, "field", json_string("id"));
	if (listed)
		api_policy_changed(r);
	api_reply(r, code, o);
}

void
api_h_quar_batch(struct api_req *r)
{
	struct api_act act = {.rescan = true};
	const char *action = NULL;
	json_t *ids = json_object_get(r->body, "ids"), *it, *results;
	bool listed = false, allow = false, block = false;
	size_t i;

	if (api_body_str(r, "action", &action) < 0 || api_body_bool(r, "rescan", &act.rescan) < 0 ||
	    api_body_bool(r, "allow_sender", &allow) < 0 ||
	    api_body_bool(r, "block_sender", &block) < 0)
		return;
	if (action == NULL || (strcmp(action, "release") != 0 && strcmp(action, "delete") != 0)) {
		api_error(r, 400, "action", "'action' must be \"release\" or \"delete\"");
		return;
	}
	act.release = strcmp(action, "release") == 0;
	act.list_sender = act.release ? allow : block;
	if (!json_is_array(ids) || json_array_size(ids) == 0 ||
	    json_array_size(ids) > API_BATCH_MAX) {
		api_error(r, 400, "ids", "'ids' must be an array of 1 to %d quarantine ids",
		          API_BATCH_MAX);
		return;
	}
	json_array_foreach (ids, i, it) {
		if (!json_is_string(it)) {
			api_error(r, 400, "ids", "'ids' must hold strings");
			return;
		}
	}
	if (act.release) {
		results = api_quar_release_batch(r, ids, &act, &listed);
	} else {
		results = json_array();
		json_array_foreach (ids, i, it) {
			int code;

			json_array_append_new(results, api_quar_act(r, json_string_value(it), &act,
			                                            &code, &listed));
		}
	}
	if (listed)
		api_policy_changed(r);
	api_reply(r, 200, json_pack("{s:s, s:o}", "action", action, "results", results));
}

/* --- tracking --- */

static json_t *
api_msg_json(const struct store_msg *m)
{
	json_t *o = json_object(), *rcpts = json_array();

	for (size_t i = 0; i < m->nrcpts; i++)
		json_array_append_new(rcpts, json_pack("{s:o, s:s, s:o, s:I}", "addr",
		                                       api_str(m->rcpts[i].addr), "outcome",
		                                       store_outcome_str(m->rcpts[i].outcome),
		                                       "reply", api_str(m->rcpts[i].reply),
		                                       "time_ms", (json_int_t)m->rcpts[i].time_ms));
	json_object_set_new(o, "id", json_string(m->id));
	json_object_set_new(o, "received_ms", json_integer(m->received_ms));
	json_object_set_new(o, "client_ip", api_str(m->client_ip));
	json_object_set_new(o, "helo", api_str(m->helo));
	json_object_set_new(o, "sender", api_str(m->sender));
	json_object_set_new(o, "subject", api_str(m->subject));
	json_object_set_new(o, "from", api_str(m->from));
	json_object_set_new(o, "message_id", api_str(m->message_id));
	json_object_set_new(o, "size", json_integer((json_int_t)m->size));
	json_object_set_new(o, "verdict", json_string(store_verdict_str(m->verdict)));
	json_object_set_new(o, "score", json_real(m->score));
	json_object_set_new(o, "symbols", api_str(m->symbols));
	json_object_set_new(o, "reason", api_str(m->reason));
	json_object_set_new(o, "verdict_ms", json_integer(m->verdict_ms));
	json_object_set_new(o, "rcpts", rcpts);
	return o;
}

void
api_h_track_list(struct api_req *r)
{
	struct store_filter f;
	struct store_msg_page p = {0};
	enum store_status st;
	json_t *items;

	if (!api_filter(r, &f, false))
		return;
	if ((st = store_track_search(r->a->store, &f, &p)) != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	items = json_array();
	for (size_t i = 0; i < p.n; i++)
		json_array_append_new(items, api_msg_json(&p.rows[i]));
	api_reply(
	        r, 200,
	        json_pack("{s:o, s:o}", "items", items, "next", api_cursor_json(p.more, &p.next)));
	store_msg_page_free(&p);
}

void
api_h_track_get(struct api_req *r)
{
	static const char *const kinds[] = {
	        [STORE_EV_RECEIVED] = "received",
	        [STORE_EV_VERDICT] = "verdict",
	        [STORE_EV_DELIVERY] = "delivery",
	};
	struct store_timeline t;
	enum store_status st;
	json_t *o, *events;

	if (!spool_id_valid(r->args[0])) {
		api_error(r, 400, "id", "'%.40s' is not a queue id (16 hex digits)", r->args[0]);
		return;
	}
	st = store_track_get(r->a->store, r->args[0], &t);
	if (st == STORE_NOT_FOUND) {
		api_error(r, 404, "id", "no message %s is tracked", r->args[0]);
		return;
	}
	if (st != STORE_OK) {
		api_store_error(r, st);
		return;
	}
	o = api_msg_json(&t.msg);
	events = json_array();
	for (size_t i = 0; i < t.nevents; i++) {
		const struct store_event *ev = &t.events[i];
		json_t *e = json_pack("{s:I, s:s, s:o, s:o}", "time_ms", (json_int_t)ev->time_ms,
		                      "kind", kinds[ev->kind], "rcpt", api_str(ev->rcpt), "text",
		                      api_str(ev->text));

		if (ev->kind == STORE_EV_DELIVERY)
			json_object_set_new(e, "outcome",
			                    json_string(store_outcome_str(ev->outcome)));
		json_array_append_new(events, e);
	}
	json_object_set_new(o, "events", events);
	json_object_set_new(o, "truncated", json_boolean(t.truncated));
	store_timeline_free(&t);
	api_reply(r, 200, o);
}

/* --- retention --- */

static void
api_sys_ctx(struct api *a, struct quarantine_ctx *q, struct config **cfg, struct policy **pol)
{
	pthread_mutex_lock(&a->lock);
	*cfg = config_ref(a->cfg);
	*pol = policy_ref(a->pol);
	pthread_mutex_unlock(&a->lock);
	q->store = a->store;
	q->spool = a->deps.spool;
	q->delivery = a->deps.delivery;
	q->scan_env = a->deps.scan_env;
	q->cfg = *cfg;
	q->pol = *pol;
}

void
api_purge_step(struct api *a, bool *more)
{
	struct quarantine_ctx q;
	struct config *cfg;
	struct policy *pol;
	size_t expired = 0, forgotten = 0;
	enum quarantine_status qs;

	api_sys_ctx(a, &q, &cfg, &pol);
	qs = quarantine_purge(&q, api_now_ms(), API_PURGE_BATCH, &expired, &forgotten);
	if (qs != QUAR_OK)
		log_error("event=purge status=%s", quarantine_status_str(qs));
	else if (expired > 0 || forgotten > 0)
		log_info("event=purge expired=%zu forgotten=%zu", expired, forgotten);
	*more = qs == QUAR_OK && (expired == API_PURGE_BATCH || forgotten == API_PURGE_BATCH);
	policy_unref(pol);
	config_unref(cfg);
}
