/*
 * quarantine.c - release, delete, expire and reconcile held messages
 * (quarantine.h).
 *
 * Order of a release, each step making the next safe to repeat:
 *   1. read quarantine/<id> (CRC-checked) and rescan it for malware;
 *   2. the store's state held -> released: the one gate (a second,
 *      concurrent release stops here with "already released");
 *   3. queue/<id> written and synced (spool_quarantine_release), then
 *      quarantine/<id> removed;
 *   4. delivery_enqueue(): from here on it is an ordinary queued message.
 * A crash after 2 and before 3 leaves a released entry without a queue
 * file: quarantine_reconcile() holds it again rather than guess the
 * recipients the administrator chose. After 3 the queue file is
 * delivered by the spool's own recovery.
 */
#include "quarantine.h"
#include "quarantine_preview.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../delivery/delivery.h"
#include "../scan/scan.h"
#include "../spool/spool.h"
#include "../store/store.h"

static const struct {
	const char *text;
	int http;
} quar_status[] = {
        [QUAR_OK] = {"ok", 200},
        [QUAR_NOT_FOUND] = {"no such quarantined message", 404},
        [QUAR_ALREADY] = {"already done", 409},
        [QUAR_CONFLICT] = {"no longer held", 409},
        [QUAR_INVALID] = {"invalid request", 400},
        [QUAR_MALWARE] = {"malware found", 409},
        [QUAR_TEMPFAIL] = {"malware scanner unavailable, try again later", 503},
        [QUAR_GONE] = {"the message file is missing", 410},
        [QUAR_ERROR] = {"internal error", 500},
};

const char *
quarantine_status_str(enum quarantine_status st)
{
	return (unsigned)st < nitems(quar_status) ? quar_status[st].text : "?";
}

int
quarantine_status_http(enum quarantine_status st)
{
	return (unsigned)st < nitems(quar_status) ? quar_status[st].http : 500;
}

static enum store_status
quar_audit(const struct quarantine_ctx *q, const struct quarantine_actor *by, const char *action,
           const char *target)
{
	struct store_audit a = {
	        .time_ms = wall_ms(),
	        .who = by && by->who ? by->who : "system",
	        .action = action,
	        .target = target,
	        .addr = by && by->addr ? by->addr : "",
	};

	enum store_status st = store_audit_add(q->store, &a);

	if (st != STORE_OK)
		log_error("event=audit status=failed action=%s target=%s reason=\"%s\"", action,
		          target, store_errmsg(q->store));
	return st;
}

/* The state found by a failed gate, as the caller's status and message. */
static enum quarantine_status
quar_state_status(enum store_status st, enum store_qstate was, enum store_qstate want,
                  const struct quarantine_ctx *q, char *msg, size_t msgsize)
{
	switch (st) {
	case STORE_NOT_FOUND:
		snprintf(msg, msgsize, "no such quarantined message");
		return QUAR_NOT_FOUND;
	case STORE_ALREADY:
		snprintf(msg, msgsize, "already %s", store_qstate_str(was));
		return QUAR_ALREADY;
	case STORE_CONFLICT:
		snprintf(msg, msgsize, "cannot be %s: already %s", store_qstate_str(want),
		         store_qstate_str(was));
		return QUAR_CONFLICT;
	case STORE_INVALID:
		snprintf(msg, msgsize, "invalid id");
		return QUAR_INVALID;
	default:
		snprintf(msg, msgsize, "store: %s", store_errmsg(q->store));
		return QUAR_ERROR;
	}
}

/* Open the held file; QUAR_OK or the status to return. */
static enum quarantine_status
quar_open(const struct quarantine_ctx *q, const char *id, struct spool_file *f, char *msg,
          size_t msgsize)
{
	switch (spool_quarantine_open(q->spool, id, f)) {
	case SPOOL_OK:
		return QUAR_OK;
	case SPOOL_ENOENT:
		snprintf(msg, msgsize, "quarantine/%s is missing", id);
		return QUAR_GONE;
	case SPOOL_ECORRUPT:
		snprintf(msg, msgsize, "quarantine/%s is damaged", id);
		return QUAR_ERROR;
	default:
		snprintf(msg, msgsize, "quarantine/%s: read error", id);
		return QUAR_ERROR;
	}
}

/*
 * keep[i] for the message's i-th recipient: the chosen ones (any case), or
 * all; QUAR_INVALID names a chosen address the message does not have.
 */
static enum quarantine_status
quar_choose(const struct spool_env *env, const struct quarantine_release_req *r, bool *keep,
            const char **addrs, size_t *naddrs, char *msg, size_t msgsize)
{
	*naddrs = 0;
	for (size_t i = 0; i < env->nrcpts; i++)
		keep[i] = r->nrcpts == 0;
	for (size_t j = 0; j < r->nrcpts; j++) {
		size_t i;

		for (i = 0; i < env->nrcpts; i++)
			if (str_ieq(env->rcpts[i].addr, r->rcpts[j]))
				break;
		if (i == env->nrcpts) {
			snprintf(msg, msgsize, "%.200s is not a recipient of this message",
			         r->rcpts[j]);
			return QUAR_INVALID;
		}
		keep[i] = true;
	}
	for (size_t i = 0; i < env->nrcpts; i++)
		if (keep[i])
			addrs[(*naddrs)++] = env->rcpts[i].addr;
	return QUAR_OK;
}

/* One message of a release batch, from its checks to its queue file. */
struct quar_rel {
	const struct quarantine_release_req *req;
	struct quarantine_result *out;
	struct spool_file f;
	bool open;
	unsigned char *body;
	bool *keep;
	const char **addrs;
	size_t naddrs;
	struct scan_result res;
	bool scanned;
	bool pending; /* every check passed so far */
};

static void
quar_rel_free(struct quar_rel *x)
{
	if (x->scanned)
		scan_result_free(&x->res);
	if (x->open)
		spool_file_close(&x->f);
	free(x->body);
	free(x->keep);
	free(x->addrs);
}

static void
quar_rel_fail(struct quar_rel *x, enum quarantine_status st)
{
	x->out->status = st;
	x->pending = false;
}

/* 1. the cheap refusals, the file, the recipients, the malware check again */
static void
quar_rel_check(const struct quarantine_ctx *q, struct quar_rel *x,
               const struct quarantine_actor *by)
{
	const struct quarantine_release_req *r = x->req;
	char *msg = x->out->msg;
	size_t msgsize = sizeof(x->out->msg);
	struct store_quar entry;
	struct scan_input in;
	enum store_status st;
	enum quarantine_status ret;
	enum store_qstate was;

	x->pending = true;
	if (!spool_id_valid(r->id)) {
		snprintf(msg, msgsize, "invalid id");
		quar_rel_fail(x, QUAR_INVALID);
		return;
	}
	/* the gate (quar_rel_gate) decides races; these are the plain cases */
	if ((st = store_quarantine_get(q->store, r->id, &entry)) != STORE_OK) {
		quar_rel_fail(
		        x, quar_state_status(st, STORE_Q_HELD, STORE_Q_RELEASED, q, msg, msgsize));
		return;
	}
	was = entry.state;
	store_quar_free(&entry);
	if (was == STORE_Q_RELEASED && r->nrcpts > 0) {
		/* not "already": these recipients may not be the ones it went to */
		snprintf(msg, msgsize,
		         "already released: the message has left the quarantine, a "
		         "release reaches its recipients once");
		quar_rel_fail(x, QUAR_CONFLICT);
		return;
	}
	if (was != STORE_Q_HELD) {
		quar_rel_fail(x, quar_state_status(was == STORE_Q_RELEASED ? STORE_ALREADY
		                                                           : STORE_CONFLICT,
		                                   was, STORE_Q_RELEASED, q, msg, msgsize));
		return;
	}
	if ((ret = quar_open(q, r->id, &x->f, msg, msgsize)) != QUAR_OK) {
		quar_rel_fail(x, ret);
		return;
	}
	x->open = true;
	x->keep = xcalloc(x->f.env.nrcpts ? x->f.env.nrcpts : 1, sizeof(*x->keep));
	x->addrs = xcalloc(x->f.env.nrcpts ? x->f.env.nrcpts : 1, sizeof(*x->addrs));
	if ((ret = quar_choose(&x->f.env, r, x->keep, x->addrs, &x->naddrs, msg, msgsize)) !=
	    QUAR_OK) {
		quar_rel_fail(x, ret);
		return;
	}
	if (spool_quarantine_read(&x->f, &x->body) < 0) {
		snprintf(msg, msgsize, "quarantine/%s: %s", r->id, strerror(errno));
		quar_rel_fail(x, QUAR_ERROR);
		return;
	}
	memset(&in, 0, sizeof(in));
	in.msg = x->body;
	in.len = (size_t)x->f.body_len;
	in.queue_id = r->id;
	in.client_ip = x->f.env.client_addr;
	in.helo = x->f.env.helo;
	in.sender = x->f.env.sender;
	in.rcpts = x->addrs;
	in.nrcpts = x->naddrs;
	in.tls = x->f.env.protocol && strchr(x->f.env.protocol, 'S') != NULL;
	in.deadline_ms = (int64_t)(clock_ms() + q->cfg->scan_timeout);
	in.release = true;
	in.skip_malware = !r->rescan;
	scan_run(q->scan_env, q->cfg, q->pol, &in, &x->res);
	x->scanned = true;
	if (x->res.verdict == SCAN_TEMPFAIL) {
		snprintf(msg, msgsize, "not released: %.200s; try again later", x->res.reason);
		quar_rel_fail(x, QUAR_TEMPFAIL);
	} else if (x->res.verdict != SCAN_DELIVER) {
		snprintf(msg, msgsize, "not released: %.200s", x->res.reason);
		quar_audit(q, by, "quarantine.release_refused", r->id);
		quar_rel_fail(x, QUAR_MALWARE);
	}
}

/*
 * Release a chunk: checks, then the store's gate for all of them in one
 * transaction (one sync), then their queue files together (one syncfs),
 * then delivery.
 */
static void
quar_release_chunk(const struct quarantine_ctx *q, struct quar_rel *x, size_t n,
                   const struct quarantine_actor *by)
{
	const char *who = by && by->who ? by->who : "system";
	struct spool_release *rel = xcalloc(n, sizeof(*rel));
	size_t *idx = xcalloc(n, sizeof(*idx)), nrel = 0;
	bool ok;

	for (size_t i = 0; i < n; i++)
		quar_rel_check(q, &x[i], by);

	/*
	 * 2. the gate: held -> released, exactly once however many ask, in one
	 * transaction with the audit entries. A store error anywhere undoes
	 * the whole chunk (after one, SQLite may have rolled back already and
	 * later statements would commit on their own).
	 */
	ok = store_batch_begin(q->store) == STORE_OK;
	for (size_t i = 0; i < n && ok; i++) {
		enum store_qstate was;
		enum store_status st;

		if (!x[i].pending)
			continue;
		st = store_quarantine_set_state(q->store, x[i].req->id, STORE_Q_RELEASED, who,
		                                wall_ms(), &was);
		if (st == STORE_ERROR || (st == STORE_OK && quar_audit(q, by, "quarantine.release",
		                                                       x[i].req->id) != STORE_OK)) {
			ok = false;
		} else if (st != STORE_OK) {
			quar_rel_fail(&x[i],
			              quar_state_status(st, was, STORE_Q_RELEASED, q, x[i].out->msg,
			                                sizeof(x[i].out->msg)));
		}
	}
	if (!ok || store_batch_commit(q->store) != STORE_OK) {
		store_batch_rollback(q->store);
		for (size_t i = 0; i < n; i++)
			if (x[i].pending) {
				snprintf(x[i].out->msg, sizeof(x[i].out->msg), "store: %s",
				         store_errmsg(q->store));
				quar_rel_fail(&x[i], QUAR_ERROR);
			}
	}

	/* 3. queue/<id> for each, synced together; the quarantine copies go */
	for (size_t i = 0; i < n; i++) {
		if (!x[i].pending)
			continue;
		rel[nrel] = (struct spool_release){
		        .env = &x[i].f.env,
		        .body = x[i].body,
		        .len = (size_t)x[i].f.body_len,
		        .keep = x[i].keep,
		        .head = x[i].res.head,
		        .head_len = x[i].res.head_len,
		        .head_skip = x[i].res.head_skip,
		        .summary = x[i].res.summary,
		};
		idx[nrel++] = i;
	}
	if (nrel > 0)
		spool_quarantine_release(q->spool, rel, nrel);
	/* durable in queue/: a quarantine copy left behind is never held again */
	if (nrel > 0 && store_batch_begin(q->store) == STORE_OK) {
		for (size_t k = 0; k < nrel; k++)
			if (rel[k].err == 0)
				store_quarantine_queued(q->store, x[idx[k]].req->id);
		if (store_batch_commit(q->store) != STORE_OK) {
			store_batch_rollback(q->store);
			log_warn("event=quarantine_release warning=\"queued, but not recorded as "
			         "such: %s\"",
			         store_errmsg(q->store));
		}
	}

	/* 4. delivery */
	for (size_t k = 0; k < nrel; k++) {
		struct quar_rel *y = &x[idx[k]];
		const char *id = y->req->id;

		if (rel[k].err) {
			snprintf(y->out->msg, sizeof(y->out->msg),
			         "not released: cannot queue it: %s", strerror(rel[k].err));
			log_error("event=quarantine_release id=%s status=failed reason=\"%s\"", id,
			          strerror(rel[k].err));
			if (store_quarantine_unrelease(q->store, id, "system", wall_ms()) !=
			    STORE_OK)
				log_error("event=quarantine_release id=%s warning=\"still marked "
				          "released: %s; the next start holds it again\"",
				          id, store_errmsg(q->store));
			quar_audit(q, by, "quarantine.release_failed", id);
			quar_rel_fail(y, QUAR_ERROR);
			continue;
		}
		if (q->delivery)
			delivery_enqueue(q->delivery, id);
		log_info("event=quarantine_release id=%s by=%s rcpts=%zu rescan=%s", id, who,
		         y->naddrs, y->req->rescan ? "yes" : "no");
		snprintf(y->out->msg, sizeof(y->out->msg), "released to %zu recipient%s", y->naddrs,
		         y->naddrs == 1 ? "" : "s");
		y->out->status = QUAR_OK;
	}
	free(rel);
	free(idx);
}

void
quarantine_release_many(const struct quarantine_ctx *q, const struct quarantine_release_req *r,
                        size_t n, const struct quarantine_actor *by, struct quarantine_result *out)
{
	struct quar_rel *x = xcalloc(n ? n : 1, sizeof(*x));

	for (size_t i = 0; i < n; i++) {
		out[i].status = QUAR_ERROR;
		out[i].msg[0] = '\0';
		x[i].req = &r[i];
		x[i].out = &out[i];
	}
	/* in chunks whose messages fit in memory together */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		uint64_t bytes = 0;
		struct store_quar e;

		/* at least one; then while the sizes so far stay within the budget */
		for (; j < n && j - i < QUARANTINE_BATCH_MAX; j++) {
			if (spool_id_valid(r[j].id) &&
			    store_quarantine_get(q->store, r[j].id, &e) == STORE_OK) {
				bytes += e.size;
				store_quar_free(&e);
			}
			if (bytes > QUARANTINE_BATCH_BYTES && j > i)
				break;
		}
		quar_release_chunk(q, &x[i], j - i, by);
		for (size_t k = i; k < j; k++)
			quar_rel_free(&x[k]);
		i = j;
	}
	free(x);
}

enum quarantine_status
quarantine_release(const struct quarantine_ctx *q, const struct quarantine_release_req *r,
                   const struct quarantine_actor *by, char *msg, size_t msgsize)
{
	struct quarantine_result res;

	quarantine_release_many(q, r, 1, by, &res);
	if (msg)
		str_copy(msg, res.msg, msgsize);
	return res.status;
}

enum quarantine_status
quarantine_delete(const struct quarantine_ctx *q, const char *id, const struct quarantine_actor *by,
                  char *msg, size_t msgsize)
{
	enum store_status st;
	enum store_qstate was;
	char dummy[8];

	if (msg == NULL) {
		msg = dummy;
		msgsize = sizeof(dummy);
	}
	msg[0] = '\0';
	if (!spool_id_valid(id)) {
		snprintf(msg, msgsize, "invalid id");
		return QUAR_INVALID;
	}
	st = store_quarantine_set_state(q->store, id, STORE_Q_DELETED,
	                                by && by->who ? by->who : "system", wall_ms(), &was);
	if (st != STORE_OK)
		return quar_state_status(st, was, STORE_Q_DELETED, q, msg, msgsize);
	/* the state says deleted: a file left by a failure here goes at the next start */
	if (spool_quarantine_remove(q->spool, id) < 0 && errno != ENOENT)
		log_warn("event=quarantine_delete id=%s warning=\"file stays until the next start: "
		         "%s\"",
		         id, strerror(errno));
	quar_audit(q, by, "quarantine.delete", id);
	log_info("event=quarantine_delete id=%s by=%s", id, by && by->who ? by->who : "system");
	snprintf(msg, msgsize, "deleted");
	return QUAR_OK;
}

enum quarantine_status
quarantine_read(const struct quarantine_ctx *q, const char *id, unsigned char **data, size_t *len)
{
	struct spool_file f;
	enum quarantine_status ret;
	char msg[128];

	*data = NULL;
	*len = 0;
	if (!spool_id_valid(id))
		return QUAR_INVALID;
	if ((ret = quar_open(q, id, &f, msg, sizeof(msg))) != QUAR_OK) {
		if (ret == QUAR_GONE) {
			struct store_quar e;

			/* released, deleted or expired entries have no file: say which */
			if (store_quarantine_get(q->store, id, &e) != STORE_OK)
				return QUAR_NOT_FOUND;
			store_quar_free(&e);
		}
		return ret;
	}
	if (f.body_len > QUARANTINE_READ_MAX) {
		spool_file_close(&f);
		return QUAR_INVALID;
	}
	if (spool_quarantine_read(&f, data) < 0)
		ret = QUAR_ERROR;
	else
		*len = (size_t)f.body_len;
	spool_file_close(&f);
	return ret;
}

enum quarantine_status
quarantine_purge(const struct quarantine_ctx *q, int64_t now_ms, unsigned max, size_t *expired,
                 size_t *forgotten)
{
	char(*ids)[STORE_ID_MAX + 1] = xcalloc(max ? max : 1, sizeof(*ids));
	const struct quarantine_actor sys = {"system", ""};
	enum quarantine_status ret = QUAR_OK;
	size_t n = 0;

	*expired = *forgotten = 0;
	if (max == 0)
		goto out;
	if (store_quarantine_expired(q->store, now_ms - (int64_t)q->cfg->quarantine_retention, ids,
	                             max, &n) != STORE_OK) {
		ret = QUAR_ERROR;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		enum store_qstate was;
		enum store_status st = store_quarantine_set_state(q->store, ids[i], STORE_Q_EXPIRED,
		                                                  "system", now_ms, &was);

		if (st == STORE_OK) {
			if (spool_quarantine_remove(q->spool, ids[i]) < 0 && errno != ENOENT)
				log_warn("event=quarantine_expire id=%s warning=\"file stays until "
				         "the next start: %s\"",
				         ids[i], strerror(errno));
			quar_audit(q, &sys, "quarantine.expire", ids[i]);
			(*expired)++;
		} else if (st == STORE_ERROR) {
			ret = QUAR_ERROR;
			goto out;
		}
		/* released or deleted meanwhile: nothing to expire */
	}
	{
		int64_t before = now_ms - (int64_t)q->cfg->tracking_retention;
		size_t nq = 0;

		/* what moat saw, and the records of what left the quarantine, go together */
		if (store_track_purge(q->store, before, max, forgotten) != STORE_OK ||
		    store_quarantine_purge(q->store, before, max, &nq) != STORE_OK)
			ret = QUAR_ERROR;
		if (nq > *forgotten)
			*forgotten = nq; /* "call again while it equals max" holds for both */
	}
out:
	if (ret == QUAR_ERROR)
		log_error("event=quarantine_purge status=failed reason=\"%s\"",
		          store_errmsg(q->store));
	else if (*expired || *forgotten)
		log_info("event=quarantine_purge expired=%zu tracking_forgotten=%zu", *expired,
		         *forgotten);
	free(ids);
	return ret;
}

/* --- reconcile --- */

/* A header field of a preview (decoded, one line), cut to what the store keeps; "" if absent. */
static char *
quar_header(json_t *preview, const char *key)
{
	const char *v = json_string_value(json_object_get(preview, key));
	char *out = xstrdup(v ? v : "");

	if (strlen(out) > STORE_HEADER_MAX)
		out[STORE_HEADER_MAX] =
		        '\0'; /* may cut a character: the store refuses, see below */
	return out;
}

/* "verdict=quarantine score=7.50 symbols=A(1.00),B(2.00)" as the scan wrote it */
static void
quar_summary(const char *summary, enum store_verdict *v, double *score, const char **symbols)
{
	const char *p;

	*v = STORE_V_QUARANTINE;
	*score = 0;
	*symbols = "";
	if (summary == NULL)
		return;
	if ((p = strstr(summary, "score=")) != NULL)
		*score = strtod(p + 6, NULL);
	if ((p = strstr(summary, "symbols=")) != NULL)
		*symbols = p + 8;
}

/* Record a held file the store has no entry for (its record was dropped). */
static int
quar_record(const struct quarantine_ctx *q, const struct spool_file *f)
{
	const char **rcpts = xcalloc(f->env.nrcpts ? f->env.nrcpts : 1, sizeof(*rcpts));
	unsigned char *body = NULL;
	char *subject = NULL, *from = NULL, *mid = NULL;
	json_t *preview;
	struct store_quar_in in;
	const char *at;
	int ret = -1;

	for (size_t i = 0; i < f->env.nrcpts; i++)
		rcpts[i] = f->env.rcpts[i].addr;
	if (spool_quarantine_read(f, &body) < 0 || f->env.nrcpts == 0)
		goto out;
	/* the preview's parse: decoded, one line each, valid UTF-8 */
	preview = quarantine_preview(body, (size_t)f->body_len);
	subject = quar_header(preview, "subject");
	from = quar_header(preview, "from");
	mid = quar_header(preview, "message_id");
	json_decref(preview);
	memset(&in, 0, sizeof(in));
	in.id = f->env.id;
	at = strrchr(rcpts[0], '@');
	in.domain = at ? at + 1 : rcpts[0];
	in.received_ms = f->env.received_at * 1000;
	in.sender = f->env.sender ? f->env.sender : "";
	in.rcpts = rcpts;
	in.nrcpts = f->env.nrcpts < STORE_RCPTS_MAX ? f->env.nrcpts : STORE_RCPTS_MAX;
	in.from = from;
	in.subject = subject;
	in.message_id = mid;
	in.size = f->body_len;
	quar_summary(f->env.verdict, &in.verdict, &in.score, &in.symbols);
	switch (store_quarantine_add(q->store, &in)) {
	case STORE_OK:
	case STORE_ALREADY:
		ret = 0;
		break;
	case STORE_INVALID:
		/* a header too odd for the store: keep it findable by id and envelope */
		in.subject = in.from = in.message_id = "";
		ret = store_quarantine_add(q->store, &in) == STORE_ERROR ? -1 : 0;
		break;
	default:
		break;
	}
out:
	free(body);
	free(subject);
	free(from);
	free(mid);
	free(rcpts);
	return ret;
}

struct quar_ids {
	char (*ids)[SPOOL_ID_LEN + 1];
	size_t n, cap;
};

static void
quar_collect(void *arg, const char *id)
{
	struct quar_ids *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->ids = xrealloc(l->ids, l->cap * sizeof(*l->ids));
	}
	str_copy(l->ids[l->n++], id, SPOOL_ID_LEN + 1);
}

enum quarantine_status
quarantine_reconcile(const struct quarantine_ctx *q, struct quarantine_reconcile_report *rep)
{
	const struct quarantine_actor sys = {"system", ""};
	struct quar_ids l = {0};
	enum quarantine_status ret = QUAR_OK;

	memset(rep, 0, sizeof(*rep));
	if (spool_quarantine_list(q->spool, quar_collect, &l) < 0) {
		log_error("event=quarantine_reconcile status=failed reason=\"cannot list "
		          "quarantine/: %s\"",
		          strerror(errno));
		return QUAR_ERROR;
	}
	rep->files = l.n;
	for (size_t i = 0; i < l.n && ret == QUAR_OK; i++) {
		const char *id = l.ids[i];
		struct store_quar e;
		struct spool_file f;
		int queued;

		switch (store_quarantine_get(q->store, id, &e)) {
		case STORE_OK:
			break;
		case STORE_NOT_FOUND:
			switch (spool_quarantine_open(q->spool, id, &f)) {
			case SPOOL_OK:
				if (quar_record(q, &f) == 0)
					rep->recorded++;
				else
					log_warn("event=quarantine_reconcile id=%s warning=\"held "
					         "but not recorded: %s\"",
					         id, store_errmsg(q->store));
				spool_file_close(&f);
				break;
			case SPOOL_ECORRUPT:
				if (spool_quarantine_set_aside(q->spool, id) == 0) {
					log_warn(
					        "event=quarantine_reconcile id=%s action=set_aside "
					        "file=corrupt/q-%s reason=damaged",
					        id, id);
					rep->unreadable++;
				}
				break;
			default:
				break;
			}
			continue;
		default:
			ret = QUAR_ERROR;
			continue;
		}
		queued = spool_queued(q->spool, id);
		if (queued < 0) {
			/* cannot tell: leave both alone rather than risk a second delivery */
			log_error("event=quarantine_reconcile id=%s status=skipped "
			          "reason=\"queue/%s: "
			          "%s\"",
			          id, id, strerror(errno));
			store_quar_free(&e);
			continue;
		}
		switch (e.state) {
		case STORE_Q_HELD:
			/*
			 * A queue file under a held id can only come from a release
			 * whose store change was undone (a failed fsync of queue/) and
			 * whose rename survived: it is delivered by the recovery, so it
			 * is released.
			 */
			if (queued &&
			    store_quarantine_set_state(q->store, id, STORE_Q_RELEASED, "system",
			                               wall_ms(), NULL) == STORE_OK &&
			    spool_quarantine_remove(q->spool, id) == 0) {
				quar_audit(q, &sys, "quarantine.release_recovered", id);
				rep->finished++;
			}
			break;
		case STORE_Q_RELEASED:
			if (queued || e.queued) {
				/* queued before the stop (maybe delivered since): the copy goes */
				if (spool_quarantine_remove(q->spool, id) == 0)
					rep->finished++;
			} else if (store_quarantine_unrelease(q->store, id, "system", wall_ms()) ==
			           STORE_OK) {
				log_warn("event=quarantine_reconcile id=%s action=held_again "
				         "reason=\"the release was interrupted before the message "
				         "was queued; release it again\"",
				         id);
				quar_audit(q, &sys, "quarantine.release_interrupted", id);
				rep->reheld++;
			}
			break;
		case STORE_Q_DELETED:
		case STORE_Q_EXPIRED:
			if (spool_quarantine_remove(q->spool, id) == 0)
				rep->removed++;
			break;
		default:
			break;
		}
		store_quar_free(&e);
	}
	free(l.ids);
	if (ret != QUAR_OK)
		log_error("event=quarantine_reconcile status=failed reason=\"%s\"",
		          store_errmsg(q->store));
	log_info("event=quarantine_reconcile files=%zu finished=%zu held_again=%zu removed=%zu "
	         "recorded=%zu set_aside=%zu",
	         rep->files, rep->finished, rep->reheld, rep->removed, rep->recorded,
	         rep->unreadable);
	return ret;
}
