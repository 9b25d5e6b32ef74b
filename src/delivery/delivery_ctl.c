/*
 * delivery_ctl.c - the queue as the control socket shows it: queue.list,
 * queue.show, queue.retry, queue.hold, queue.release, queue.delete and
 * stats. These run on the delivery thread (the control socket lives on
 * its loop), so they read and change the queue directly.
 */
#include "delivery_internal.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/stats.h"
#include "../common/util.h"
#include "../control/control.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const dq_state_names[] = {
        [DQ_PENDING] = "pending",
        [DQ_INFLIGHT] = "sending",
        [DQ_DELIVERED] = "delivered",
        [DQ_FAILED] = "failed",
};

/*
 * A JSON string for text that may not be UTF-8 (a downstream's reply, an
 * address as received): invalid octets become '?' rather than dropping
 * the field.
 */
static json_t *
ctl_str(const char *v)
{
	json_t *j = json_string(v);

	if (j == NULL) {
		char *copy = xstrdup(v);

		for (char *p = copy; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		j = json_string(copy);
		free(copy);
	}
	return j;
}

static json_t *
ctl_msg_json(const struct dq_msg *m, bool full)
{
	json_t *o = json_object(), *rcpts = json_array();
	uint64_t now = clock_ms();
	size_t pending = 0;

	json_object_set_new(o, "id", ctl_str(m->id));
	json_object_set_new(o, "from", ctl_str(m->env.sender ? m->env.sender : ""));
	json_object_set_new(o, "received", json_integer(m->env.received_at));
	json_object_set_new(o, "size", json_integer((json_int_t)m->body_len));
	json_object_set_new(o, "held", json_boolean(m->env.held));
	json_object_set_new(o, "attempts", json_integer(m->attempts));
	if (m->retry_at_ms > now)
		json_object_set_new(
		        o, "next_attempt_in_s",
		        json_integer((json_int_t)((m->retry_at_ms - now + 999) / 1000)));
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		json_t *ro = json_pack("{s:o, s:s}", "to", ctl_str(r->addr), "state",
		                       dq_state_names[m->state[i]]);

		if (m->state[i] == DQ_PENDING || m->state[i] == DQ_INFLIGHT)
			pending++;
		if (r->diag)
			json_object_set_new(ro, "last_reply", ctl_str(r->diag));
		if (full) {
			if (r->status)
				json_object_set_new(ro, "status", ctl_str(r->status));
			if (r->remote)
				json_object_set_new(ro, "remote", ctl_str(r->remote));
			if (r->when)
				json_object_set_new(ro, "when", json_integer(r->when));
		}
		json_array_append_new(rcpts, ro);
	}
	json_object_set_new(o, "pending", json_integer((json_int_t)pending));
	json_object_set_new(o, "recipients", rcpts);
	if (full) {
		json_object_set_new(o, "client",
		                    ctl_str(m->env.client_addr ? m->env.client_addr : ""));
		json_object_set_new(o, "helo", ctl_str(m->env.helo ? m->env.helo : ""));
		json_object_set_new(o, "protocol", ctl_str(m->env.protocol ? m->env.protocol : ""));
	}
	return o;
}

/* The message named by req's "id", or NULL with a 400/404 in err. */
static struct dq_msg *
ctl_msg(json_t *req, int *code, char *err, size_t errsize)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	struct dq_msg *m;

	if (id == NULL) {
		*code = 400;
		snprintf(err, errsize, "field 'id' (a queue id) is missing");
		return NULL;
	}
	if (!spool_id_valid(id)) {
		*code = 400;
		snprintf(err, errsize, "'%.40s' is not a queue id (16 hex digits)", id);
		return NULL;
	}
	if ((m = dq_find(id)) == NULL) {
		*code = 404;
		snprintf(err, errsize, "no message %s in the queue", id);
	}
	return m;
}

static int
ctl_list(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	json_t *list = json_array();
	json_int_t limit = json_integer_value(json_object_get(req, "limit"));
	const struct dq_msg *m;
	size_t n = 0;

	if (limit <= 0)
		limit = 1000;
	TAILQ_FOREACH (m, &d->msgs, entry) {
		if ((json_int_t)n++ >= limit)
			continue;
		json_array_append_new(list, ctl_msg_json(m, false));
	}
	*result = json_pack("{s:o, s:I}", "messages", list, "total", (json_int_t)d->nmsgs);
	return 0;
}

static int
ctl_show(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	int code = 0;
	struct dq_msg *m = ctl_msg(req, &code, err, errsize);

	if (m == NULL)
		return code;
	*result = json_pack("{s:o}", "message", ctl_msg_json(m, true));
	return 0;
}

static int
ctl_set_held(struct delivery *d, struct dq_msg *m, bool held, char *err, size_t errsize)
{
	struct spool_mark mark = {.what = SPOOL_MARK_HOLD, .held = held};

	if (spool_mark(d->spool, m->id, &mark, 1) < 0) {
		snprintf(err, errsize, "cannot record the change: %s", strerror(errno));
		return 500;
	}
	m->env.held = held;
	log_info("event=%s id=%s", held ? "held" : "released", m->id);
	return 0;
}

static int
ctl_hold(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	int code = 0;
	struct dq_msg *m = ctl_msg(req, &code, err, errsize);

	if (m == NULL)
		return code;
	if ((code = ctl_set_held(d, m, true, err, errsize)) != 0)
		return code;
	/* what waits for a connection comes back; only a transaction under way finishes */
	dq_withdraw(d, m);
	return 0;
}

static int
ctl_release(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	int code = 0;
	struct dq_msg *m = ctl_msg(req, &code, err, errsize);

	if (m == NULL)
		return code;
	if ((code = ctl_set_held(d, m, false, err, errsize)) != 0)
		return code;
	if (m->inflight == 0)
		dq_schedule_soon(d, m);
	return 0;
}

static int
ctl_retry(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	const char *id = json_string_value(json_object_get(req, "id"));
	struct dq_msg *m, *next;
	int code = 0, n = 0;

	if (id != NULL && strcmp(id, "all") == 0) {
		for (m = TAILQ_FIRST(&d->msgs); m; m = next) {
			next = TAILQ_NEXT(m, entry);
			if (m->inflight == 0 && !m->env.held) {
				n++;
				dq_schedule_soon(d, m);
			}
		}
		*result = json_pack("{s:i}", "retried", n);
		return 0;
	}
	if ((m = ctl_msg(req, &code, err, errsize)) == NULL)
		return code;
	if (m->env.held) {
		snprintf(err, errsize, "%s is held: release it", m->id);
		return 409;
	}
	if (m->inflight == 0)
		dq_schedule_soon(d, m);
	*result = json_pack("{s:i}", "retried", 1);
	return 0;
}

static int
ctl_delete(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	int code = 0;
	struct dq_msg *m = ctl_msg(req, &code, err, errsize);

	if (m == NULL)
		return code;
	if (dq_withdraw(d, m) > 0) {
		snprintf(err, errsize, "%s is being sent right now; try again in a moment", m->id);
		return 409;
	}
	if (spool_remove(d->spool, m->id) < 0 && errno != ENOENT) {
		snprintf(err, errsize, "cannot remove %s: %s", m->id, strerror(errno));
		return 500;
	}
	log_info("event=deleted id=%s by=control", m->id);
	dq_free(d, m);
	return 0;
}

static int
ctl_stats(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	struct delivery *d = arg;
	json_t *counters = json_object(), *queue;
	const struct dq_msg *m;
	size_t held = 0, pending = 0, deferred = 0;

	TAILQ_FOREACH (m, &d->msgs, entry) {
		if (m->env.held)
			held++;
		if (m->attempts > 0)
			deferred++;
		for (size_t i = 0; i < m->env.nrcpts; i++)
			if (m->state[i] == DQ_PENDING || m->state[i] == DQ_INFLIGHT)
				pending++;
	}
#define CTL_COUNTER(name, doc)                                                                     \
	json_object_set_new(counters, #name, json_integer((json_int_t)stats_get(name)));
	STATS_COUNTERS(CTL_COUNTER)
#undef CTL_COUNTER
	queue = json_pack("{s:I, s:I, s:I, s:I, s:I}", "messages", (json_int_t)d->nmsgs,
	                  "recipients_pending", (json_int_t)pending, "held", (json_int_t)held,
	                  "deferred", (json_int_t)deferred, "connections",
	                  (json_int_t)d->nsessions);
	*result = json_pack("{s:o, s:o}", "counters", counters, "queue", queue);
	return 0;
}

void
delivery_ctl_register(struct delivery *d, struct control *c)
{
	control_register(c, "queue.list", "messages in the queue (limit: how many)", ctl_list, d);
	control_register(c, "queue.show", "one message, every recipient (id)", ctl_show, d);
	control_register(c, "queue.retry", "try now (id, or \"all\")", ctl_retry, d);
	control_register(c, "queue.hold", "stop delivering a message (id)", ctl_hold, d);
	control_register(c, "queue.release", "deliver a held message again (id)", ctl_release, d);
	control_register(c, "queue.delete", "remove a message, no report (id)", ctl_delete, d);
	control_register(c, "stats", "counters and queue depth", ctl_stats, d);
}
