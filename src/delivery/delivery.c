/*
 * delivery.c - the delivery engine (see delivery.h): the in-memory queue,
 * destinations, scheduling, retries, outcomes and delivery reports.
 *
 * RFC 5321 4.5.4 (retry strategy), 4.5.5 (no reports to the null sender),
 * 5.1 (routing); RFC 3461 and RFC 3464 (delivery status notifications).
 *
 * Data model, all on the delivery thread:
 *   dq_msg   one queued message: its envelope, per-recipient state, retry
 *            timer; found by id through a hash table.
 *   dq_task  the recipients of one message bound for one destination, at
 *            most delivery_rcpts_per_transaction: one SMTP transaction.
 *   dest     a destination (the route key: smart hosts and TLS policy; an
 *            MX route per domain): the tasks waiting for it and its
 *            connections, up to delivery_max_connections_per_dest.
 * A message is scheduled when it arrives and whenever its retry timer
 * fires: its pending recipients become tasks, which wait at their
 * destinations until a connection is free. When all tasks of a message
 * are back, it is settled: final outcomes are recorded, then it either
 * leaves the queue or waits for its next retry.
 */
#include "delivery.h"
#include "delivery_internal.h"
#include "dsn.h"
#include "../common/config.h"
#include "../control/control.h"
#include "../dns/dns.h"
#include "../common/log.h"
#include "../common/stats.h"
#include "../common/mailaddr.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../scan/scan.h"
#include "../store/store_writer.h"
#include "../smtp/smtp_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DQ_BUCKETS       65536
#define DEST_RESOLVE_TTL (5 * 60 * 1000) /* re-resolve a destination after this */

struct delivery_tls_ctx {
	char ca[1024];
	SSL_CTX *ctx;
	struct delivery_tls_ctx *next;
};

/* The id hash: buckets of chained nodes pointing at the messages. */
struct dq_hash_node {
	struct dq_msg *msg;
	struct dq_hash_node *next;
};
static struct dq_hash_node *dq_hash[DQ_BUCKETS];

static void dq_settle(struct delivery *d, struct dq_msg *m, bool retry_now);

const struct config *
delivery_config(const struct delivery *d)
{
	return d->cfg;
}

/* --- the id table --- */

static uint32_t
dq_hash_id(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % DQ_BUCKETS;
}

struct dq_msg *
dq_find(const char *id)
{
	for (struct dq_hash_node *n = dq_hash[dq_hash_id(id)]; n; n = n->next)
		if (strcmp(n->msg->id, id) == 0)
			return n->msg;
	return NULL;
}

static void
dq_hash_add(struct dq_msg *m)
{
	struct dq_hash_node *n = xmalloc(sizeof(*n));
	uint32_t h = dq_hash_id(m->id);

	n->msg = m;
	n->next = dq_hash[h];
	dq_hash[h] = n;
}

static void
dq_hash_del(struct dq_msg *m)
{
	for (struct dq_hash_node **pp = &dq_hash[dq_hash_id(m->id)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->msg == m) {
			struct dq_hash_node *dead = *pp;
			*pp = dead->next;
			free(dead);
			return;
		}
	}
}

/* --- messages --- */

static void
dq_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dq_msg *m = arg;

	dq_schedule(m->d, m);
}

/* Schedule m on the next loop turn (never from inside the caller). */
void
dq_schedule_soon(struct delivery *d, struct dq_msg *m)
{
	struct timeval now = {0, 0};

	if (d->stopping)
		return;
	m->retry_at_ms = 0;
	evtimer_add(m->retry_ev, &now);
}

void
dq_free(struct delivery *d, struct dq_msg *m)
{
	TAILQ_REMOVE(&d->msgs, m, entry);
	dq_hash_del(m);
	d->nmsgs--;
	if (m->retry_ev)
		event_free(m->retry_ev);
	spool_env_clear(&m->env);
	free(m->state);
	free(m->recorded);
	free(m->success);
	free(m);
}

static const char *
dq_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/* The enhanced status code in a reply ("550 5.1.1 ..."), or a default by class. */
static void
dq_status_of(const char *reply, int code, char *buf, size_t size)
{
	const char *p = reply && strlen(reply) > 4 ? reply + 4 : "";
	size_t n = strspn(p, "0123456789.");

	if (n >= 5 && n < size && p[0] == '0' + code / 100 && p[1] == '.') {
		memcpy(buf, p, n);
		buf[n] = '\0';
		return;
	}
	snprintf(buf, size, "%d.0.0", code / 100 == 2 ? 2 : code / 100 == 5 ? 5 : 4);
}

static void
dq_set_outcome(struct dq_msg *m, size_t i, enum dq_rcpt_state st, const char *status,
               const char *remote, const char *diag)
{
	struct spool_rcpt *r = &m->env.rcpts[i];
	/* the arguments may be r's own strings: copy before freeing */
	char *nstatus = status ? xstrdup(status) : NULL;
	char *nremote = remote && *remote ? xstrdup(remote) : NULL;
	char *ndiag = diag ? xstrdup(diag) : NULL;

	m->state[i] = st;
	free(r->status);
	free(r->remote);
	free(r->diag);
	r->status = nstatus;
	r->remote = nremote;
	r->diag = ndiag;
	r->when = (int64_t)time(NULL);
	if (st == DQ_DELIVERED || st == DQ_FAILED || st == DQ_PENDING) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		store_writer_delivery(m->d->store, m->id, r->addr,
		                      st == DQ_DELIVERED ? STORE_OUT_DELIVERED
		                      : st == DQ_FAILED  ? STORE_OUT_BOUNCED
		                                         : STORE_OUT_DEFERRED,
		                      ndiag ? ndiag : "",
		                      (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	}
}

struct dq_reload {
	struct delivery *d;
	char id[SPOOL_ID_LEN + 1];
};

static void dq_load(struct delivery *d, const char *id);

static void
dq_reload_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dq_reload *r = arg;

	dq_load(r->d, r->id);
	free(r);
}

/* Load a committed message into the queue. */
static void
dq_load(struct delivery *d, const char *id)
{
	struct spool_file f;
	struct dq_msg *m;
	bool pending = false;

	if (dq_find(id) != NULL)
		return; /* already queued */
	if (d->stopping)
		return; /* it stays in the spool for the next start */
	switch (spool_file_open(d->spool, id, &f)) {
	case SPOOL_OK:
		break;
	case SPOOL_ENOENT:
		return;
	case SPOOL_ECORRUPT:
		log_error("event=spool_corrupt id=%s action=set_aside", id);
		if (spool_set_aside(d->spool, id) < 0)
			log_error("event=spool_corrupt id=%s error=\"%s\"", id, strerror(errno));
		return;
	case SPOOL_EIO: {
		struct timeval tv = {.tv_sec = (time_t)(d->cfg->delivery_retry_min / 1000)};
		struct dq_reload *r = xcalloc(1, sizeof(*r));

		log_error("event=spool_read_error id=%s reason=\"%s\" action=retry", id,
		          strerror(errno));
		r->d = d;
		str_copy(r->id, id, sizeof(r->id));
		event_base_once(d->base, -1, EV_TIMEOUT, dq_reload_cb, r, &tv);
		return;
	}
	}
	if (f.env.status_torn) {
		/* a crash tore the last append: cut it off before appending again */
		log_warn("event=spool_status_torn id=%s action=cut offset=%zu", id,
		         f.env.status_end);
		if (spool_cut_torn(d->spool, id, f.env.status_end) < 0)
			log_error("event=spool_status_torn id=%s error=\"%s\"", id,
			          strerror(errno));
	}
	m = xcalloc(1, sizeof(*m));
	m->d = d;
	str_copy(m->id, id, sizeof(m->id));
	m->env = f.env;
	memset(&f.env, 0, sizeof(f.env));
	m->body_len = spool_env_delivered_len(&m->env, f.body_len);
	spool_file_close(&f);
	m->state = xcalloc(m->env.nrcpts, sizeof(*m->state));
	m->recorded = xcalloc(m->env.nrcpts, sizeof(*m->recorded));
	m->success = xcalloc(m->env.nrcpts, sizeof(*m->success));
	for (size_t i = 0; i < m->env.nrcpts; i++)
		m->success[i] = -1;

	for (size_t i = 0; i < m->env.nrcpts; i++) {
		switch (m->env.rcpts[i].state) {
		case SPOOL_RCPT_DELIVERED:
			m->state[i] = DQ_DELIVERED;
			m->recorded[i] = true;
			if (m->env.rcpts[i].report == 'D')
				m->success[i] = DSN_DELIVERED;
			else if (m->env.rcpts[i].report == 'R')
				m->success[i] = DSN_RELAYED;
			break;
		case SPOOL_RCPT_FAILED:
			m->state[i] = DQ_FAILED;
			m->recorded[i] = true;
			break;
		default:
			m->state[i] = DQ_PENDING;
			pending = true;
			break;
		}
	}
	m->retry_ev = evtimer_new(d->base, dq_retry_cb, m);
	TAILQ_INSERT_TAIL(&d->msgs, m, entry);
	dq_hash_add(m);
	d->nmsgs++;
	/* all final already (a crash came before its removal): settling removes it */
	(void)pending;
	dq_schedule_soon(d, m);
}

/* --- destinations --- */

static struct dest *
dest_get(struct delivery *d, const struct route *r, const char *domain)
{
	char key[ROUTE_KEY_MAX + 300];
	struct dest *dest;

	route_key(r, domain, key, sizeof(key));
	TAILQ_FOREACH (dest, &d->dests, entry) {
		if (strcmp(dest->key, key) == 0)
			return dest;
	}
	dest = xcalloc(1, sizeof(*dest));
	dest->d = d;
	dest->key = xstrdup(key);
	dest->route = *r;
	str_copy(dest->domain, domain, sizeof(dest->domain));
	TAILQ_INIT(&dest->tasks);
	TAILQ_INIT(&dest->sessions);
	TAILQ_INIT(&dest->idle);
	TAILQ_INSERT_TAIL(&d->dests, dest, entry);
	return dest;
}

static void
dest_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *dest = arg;
	struct delivery *d = dest->d;

	dest->free_pending = false;
	if (dest->nsessions > 0 || !TAILQ_EMPTY(&dest->tasks) || dest->lookups > 0)
		return;
	TAILQ_REMOVE(&d->dests, dest, entry);
	if (dest->kick_ev)
		event_free(dest->kick_ev);
	free(dest->addrs);
	free(dest->key);
	free(dest);
}

/* An unused destination goes, on the next loop turn (callers may still hold it). */
static void
dest_maybe_free(struct delivery *d, struct dest *dest)
{
	if (dest->free_pending || dest->nsessions > 0 || !TAILQ_EMPTY(&dest->tasks) ||
	    dest->lookups > 0)
		return;
	dest->free_pending = true;
	event_base_once(d->base, -1, EV_TIMEOUT, dest_free_cb, dest, NULL);
}

/* Take the first waiting task off dest (the count stays exact: O(1) scheduling). */
static struct dq_task *
dest_task_pop(struct dest *dest)
{
	struct dq_task *t = TAILQ_FIRST(&dest->tasks);

	if (t != NULL) {
		TAILQ_REMOVE(&dest->tasks, t, entry);
		dest->ntasks--;
	}
	return t;
}

/* Every waiting task of dest gets this reply (a resolution failure). */
static void
dest_fail_waiting(struct delivery *d, struct dest *dest, int code, const char *reply)
{
	struct dq_task *t;

	while ((t = dest_task_pop(dest)) != NULL) {
		for (size_t i = 0; i < t->n; i++) {
			t->code[i] = code;
			free(t->reply[i]);
			t->reply[i] = xstrdup(reply);
		}
		delivery_task_done(d, t);
	}
}

static void dest_kick(struct delivery *d, struct dest *dest);

static void
dest_add_addr(struct dest *dest, const char *name, uint16_t port, const struct sockaddr_storage *ss)
{
	struct dest_addr *a;

	dest->addrs = xrealloc(dest->addrs, (dest->naddrs + 1) * sizeof(*dest->addrs));
	a = &dest->addrs[dest->naddrs++];
	memset(a, 0, sizeof(*a));
	str_copy(a->name, name, sizeof(a->name));
	a->port = port;
	a->ss = *ss;
	if (ss->ss_family == AF_INET) {
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
		a->len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
		a->len = sizeof(struct sockaddr_in6);
	}
}

/* Resolution is over: go on with the addresses, or fail what waits. */
static void
dest_resolved(struct delivery *d, struct dest *dest)
{
	char reply[sizeof(dest->resolve_error) + 16];

	dest->resolve = DEST_RESOLVED;
	dest->resolved_ms = clock_ms();
	if (dest->naddrs > 0) {
		dest->resolve_code = 0;
		dest_kick(d, dest);
		return;
	}
	if (dest->resolve_code == 0) {
		dest->resolve_code = 451;
		str_copy(dest->resolve_error, "4.4.3 no address for the destination",
		         sizeof(dest->resolve_error));
	}
	snprintf(reply, sizeof(reply), "%d %s", dest->resolve_code, dest->resolve_error);
	log_info("event=dest_unresolved dest=\"%s\" reason=\"%s\"", dest->key, reply);
	dest_fail_waiting(d, dest, dest->resolve_code, reply);
	/* try again next time instead of remembering the failure */
	dest->resolve = DEST_UNRESOLVED;
	dest_maybe_free(d, dest);
}

/* Per smart-host name lookup: its results go to slot host_i. */
struct dest_lookup {
	struct dest *dest;
	size_t host_i;
	struct dns_addr_result res;
	bool done;
};

static void
dest_host_cb(void *arg, const struct dns_addr_result *r)
{
	struct dest_lookup *lk = arg;
	struct dest *dest = lk->dest;
	struct dest_lookup *all = dest->lookup_slots;

	lk->res = *r;
	lk->done = true;
	if (--dest->lookups > 0)
		return;
	/* All names are in: addresses in the route's fallback order. */
	for (size_t h = 0; h < dest->route.nhosts; h++) {
		const struct route_host *rh = &dest->route.host[h];
		unsigned char ip[16];
		struct sockaddr_storage ss = {0};

		if (inet_pton(AF_INET, rh->name, ip) == 1) {
			ss.ss_family = AF_INET;
			memcpy(&((struct sockaddr_in *)&ss)->sin_addr, ip, 4);
			dest_add_addr(dest, rh->name, rh->port, &ss);
		} else if (inet_pton(AF_INET6, rh->name, ip) == 1) {
			ss.ss_family = AF_INET6;
			memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, ip, 16);
			dest_add_addr(dest, rh->name, rh->port, &ss);
		} else if (all[h].done) {
			for (size_t k = 0; k < all[h].res.naddrs; k++)
				dest_add_addr(dest, rh->name, rh->port, &all[h].res.addr[k]);
			if (all[h].res.naddrs == 0) {
				dest->resolve_code = 451;
				snprintf(dest->resolve_error, sizeof(dest->resolve_error),
				         "4.4.3 smart host %s: %s", rh->name,
				         dns_status_str(all[h].res.status));
			}
		}
	}
	free(dest->lookup_slots);
	dest->lookup_slots = NULL;
	dest_resolved(dest->d, dest);
}

static void
dest_mx_cb(void *arg, const struct dns_mx_result *r)
{
	struct dest *dest = arg;
	struct delivery *d = dest->d;
	bool tempfail = false;

	dest->lookups--;
	if (r->status == DNS_NXDOMAIN) {
		dest->resolve_code = 550;
		snprintf(dest->resolve_error, sizeof(dest->resolve_error),
		         "5.1.2 domain %s does not exist", dest->domain);
	} else if (r->status != DNS_OK) {
		dest->resolve_code = r->status == DNS_PERMFAIL ? 550 : 451;
		snprintf(dest->resolve_error, sizeof(dest->resolve_error),
		         "%s MX lookup for %s: %s", r->status == DNS_PERMFAIL ? "5.4.4" : "4.4.3",
		         dest->domain, dns_status_str(r->status));
	} else if (r->null_mx) {
		dest->resolve_code = 556;
		snprintf(dest->resolve_error, sizeof(dest->resolve_error),
		         "5.1.10 domain %s accepts no mail (null MX, RFC 7505)", dest->domain);
	} else {
		for (size_t h = 0; h < r->nhosts; h++) {
			for (size_t k = 0; k < r->host[h].naddrs; k++)
				dest_add_addr(dest, r->host[h].name,
				              (uint16_t)d->cfg->delivery_mx_port,
				              &r->host[h].addr[k]);
			tempfail |= r->host[h].addr_status == DNS_TEMPFAIL;
		}
		if (dest->naddrs == 0) {
			dest->resolve_code = tempfail ? 451 : 550;
			snprintf(dest->resolve_error, sizeof(dest->resolve_error),
			         "%s no MX host of %s has an address", tempfail ? "4.4.3" : "5.4.4",
			         dest->domain);
		}
	}
	dest_resolved(d, dest);
}

/* Look up the destination's addresses (MX, or the smart hosts' names). */
static void
dest_resolve(struct delivery *d, struct dest *dest)
{
	size_t names = 0;

	free(dest->addrs);
	dest->addrs = NULL;
	dest->naddrs = 0;
	dest->resolve_code = 0;
	dest->resolve_error[0] = '\0';
	dest->resolve = DEST_RESOLVING;
	if (d->dns == NULL) {
		dest->resolve_code = 451;
		str_copy(dest->resolve_error, "4.4.3 no DNS resolver", sizeof(dest->resolve_error));
	}
	if (dest->route.type == ROUTE_MX) {
		if (d->dns == NULL) {
			dest_resolved(d, dest);
			return;
		}
		dest->lookups++;
		dns_mx(d->dns, dest->domain, dest_mx_cb, dest);
		return;
	}
	dest->lookup_slots = xcalloc(dest->route.nhosts + 1, sizeof(struct dest_lookup));
	for (size_t h = 0; h < dest->route.nhosts; h++) {
		unsigned char ip[16];
		const char *name = dest->route.host[h].name;

		if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
			continue;
		names++;
	}
	if (names == 0 || d->dns == NULL) {
		/* only addresses: no lookup; run the completion directly */
		struct dest_lookup *lk =
		        &((struct dest_lookup *)dest->lookup_slots)[dest->route.nhosts];

		lk->dest = dest;
		dest->lookups = 1;
		dest_host_cb(lk, &(struct dns_addr_result){.status = DNS_NODATA});
		return;
	}
	dest->lookups = (unsigned)names;
	for (size_t h = 0; h < dest->route.nhosts; h++) {
		struct dest_lookup *lk = &((struct dest_lookup *)dest->lookup_slots)[h];
		unsigned char ip[16];
		const char *name = dest->route.host[h].name;

		lk->dest = dest;
		lk->host_i = h;
		if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
			continue;
		dns_addr(d->dns, name, dest_host_cb, lk);
	}
}

/* The next task of dest that may run now; held or paused work goes back to its message. */
static struct dq_task *
dest_next_task(struct delivery *d, struct dest *dest)
{
	struct dq_task *t;

	while ((t = dest_task_pop(dest)) != NULL) {
		if (!t->msg->env.held && !d->cfg->delivery_paused && !d->stopping)
			return t;
		dq_task_return(d, t);
	}
	return NULL;
}

/* Match waiting tasks with idle connections; open connections if useful. */
static void
dest_kick_now(struct delivery *d, struct dest *dest)
{
	const struct config *c = d->cfg;
	struct mta_session *s;
	unsigned connecting = 0;

	if (d->stopping || dest->resolve == DEST_RESOLVING)
		return;
	if (dest->resolve == DEST_UNRESOLVED ||
	    (dest->nsessions == 0 && clock_ms() - dest->resolved_ms > DEST_RESOLVE_TTL)) {
		if (!TAILQ_EMPTY(&dest->tasks))
			dest_resolve(d, dest);
		else
			dest_maybe_free(d, dest);
		return;
	}
	while (dest->ntasks > 0 && (s = TAILQ_FIRST(&dest->idle)) != NULL) {
		struct dq_task *t;

		TAILQ_REMOVE(&dest->idle, s, idle_entry);
		s->in_idle = false;
		if (!mta_session_reusable(s)) {
			mta_session_quit(s); /* too old, or at its message cap */
			continue;
		}
		if ((t = dest_next_task(d, dest)) == NULL) {
			TAILQ_INSERT_HEAD(&dest->idle, s, idle_entry);
			s->in_idle = true;
			break;
		}
		mta_session_run(s, t);
	}
	TAILQ_FOREACH (s, &dest->sessions, entry) {
		if (s->state < MTA_READY)
			connecting++;
	}
	/* After a failed connection, no new one before the backoff is over. */
	if (clock_ms() < dest->connect_backoff_until_ms)
		goto out;
	/* New connections connect on the next loop turn: nothing fails in here. */
	while (dest->ntasks > connecting &&
	       dest->nsessions < c->delivery_max_connections_per_dest &&
	       d->nsessions < c->delivery_max_connections &&
	       !(dest->connect_failures > 0 && connecting > 0)) {
		mta_session_new(d, dest);
		connecting++;
	}
out:
	dest_maybe_free(d, dest);
}

static void
dest_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *dest = arg;

	dest_kick_now(dest->d, dest);
}

/*
 * Ask for a kick on the next loop turn. Kicks never run inside the callers
 * (sessions, settling, control commands): nothing re-enters the engine.
 */
static void
dest_kick(struct delivery *d, struct dest *dest)
{
	if (dest->kick_ev == NULL)
		dest->kick_ev = event_new(d->base, -1, 0, dest_kick_cb, dest);
	event_active(dest->kick_ev, 0, 0);
}

static void
dest_push(struct delivery *d, struct dest *dest, struct dq_task *t)
{
	TAILQ_INSERT_TAIL(&dest->tasks, t, entry);
	dest->ntasks++;
	dest_kick(d, dest);
}

void
delivery_session_leaving(struct delivery *d, struct mta_session *s)
{
	if (s->in_idle) {
		TAILQ_REMOVE(&s->dest->idle, s, idle_entry);
		s->in_idle = false;
	}
}

void
delivery_session_idle(struct delivery *d, struct mta_session *s)
{
	struct dest *dest = s->dest;
	struct dq_task *t;

	dest->connect_failures = 0;
	dest->connect_backoff_until_ms = 0;
	if (!mta_session_reusable(s)) {
		mta_session_quit(s);
		return;
	}
	if (d->stopping) {
		mta_session_quit(s);
		return;
	}
	if ((t = dest_next_task(d, dest)) != NULL) {
		mta_session_run(s, t);
		return;
	}
	if (d->nsessions >= d->cfg->delivery_max_connections) {
		struct dest *o;

		TAILQ_FOREACH (o, &d->dests, entry) {
			if (o != dest && !TAILQ_EMPTY(&o->tasks)) {
				/* the global cap is reached and others wait: free the slot */
				mta_session_quit(s);
				return;
			}
		}
	}
	if (!s->in_idle) {
		TAILQ_INSERT_TAIL(&dest->idle, s, idle_entry);
		s->in_idle = true;
	}
}

static void dq_task_free(struct dq_task *t);

void
delivery_session_gone(struct delivery *d, struct mta_session *s)
{
	struct dest *dest = s->dest;
	bool never_ready = !s->ready_once;

	TAILQ_REMOVE(&dest->sessions, s, entry);
	if (s->in_idle)
		TAILQ_REMOVE(&dest->idle, s, idle_entry);
	s->in_idle = false;
	dest->nsessions--;
	d->nsessions--;
	if (never_ready)
		dest->connect_failures++;
	if (never_ready && dest->nsessions > 0) {
		/*
		 * Others still work for this destination: wait before opening
		 * another connection (1 s, doubling, at most a minute) instead of
		 * failing again at once. With no connection left, the waiting
		 * work is deferred below and the messages' retries pace it.
		 */
		unsigned shift = dest->connect_failures < 6 ? dest->connect_failures : 6;
		uint64_t wait = 1000ULL << shift;
		struct timeval tv;

		if (wait > 60000)
			wait = 60000;
		dest->connect_backoff_until_ms = clock_ms() + wait;
		tv.tv_sec = (time_t)(wait / 1000);
		tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
		if (dest->kick_ev == NULL)
			dest->kick_ev = event_new(d->base, -1, 0, dest_kick_cb, dest);
		event_add(dest->kick_ev, &tv);
	} else if (dest->nsessions == 0) {
		dest->connect_backoff_until_ms = 0;
	}
	if (dest->connect_failures > 0 && dest->nsessions == 0) {
		/* Nobody can reach this destination now: its waiting work is deferred. */
		char reply[DELIVERY_REPLY_MAX + 32];

		snprintf(reply, sizeof(reply), "451 4.4.1 %s", s->last_error);
		dest_fail_waiting(d, dest, 451, reply);
		dest->resolve = DEST_UNRESOLVED; /* addresses may have changed */
	} else if (!d->stopping) {
		dest_kick(d, dest);
	}
	/* A connection is free under delivery_max_connections: others may wait for one. */
	if (!d->stopping && d->nsessions < d->cfg->delivery_max_connections) {
		struct dest *o;

		TAILQ_FOREACH (o, &d->dests, entry) {
			if (o != dest && !TAILQ_EMPTY(&o->tasks) && o->nsessions == 0)
				dest_kick(d, o);
		}
	}
	dest_maybe_free(d, dest);
}

/* --- scheduling --- */

static struct dq_task *
dq_task_new(struct dq_msg *m, struct dest *dest, size_t cap)
{
	struct dq_task *t = xcalloc(1, sizeof(*t));

	t->msg = m;
	t->dest = dest;
	t->rcpt = xcalloc(cap, sizeof(*t->rcpt));
	t->code = xcalloc(cap, sizeof(*t->code));
	t->reply = xcalloc(cap, sizeof(*t->reply));
	return t;
}

static void
dq_task_free(struct dq_task *t)
{
	free(t->head);
	for (size_t i = 0; i < t->n; i++)
		free(t->reply[i]);
	free(t->reply);
	free(t->code);
	free(t->rcpt);
	free(t);
}

/*
 * A task that never reached a session goes back to its message: its
 * recipients are pending again, nothing was attempted. (Held, paused,
 * stopping, or withdrawn by moatctl.)
 */
void
dq_task_return(struct delivery *d, struct dq_task *t)
{
	struct dq_msg *m = t->msg;

	for (size_t k = 0; k < t->n; k++)
		m->state[t->rcpt[k]] = DQ_PENDING;
	dq_task_free(t);
	if (--m->inflight == 0 && !m->env.held && !d->cfg->delivery_paused)
		dq_schedule_soon(d, m);
}

/* Pull m's tasks that wait at destinations back (hold, delete). Returns how many run still. */
unsigned
dq_withdraw(struct delivery *d, struct dq_msg *m)
{
	struct dest *dest;

	TAILQ_FOREACH (dest, &d->dests, entry) {
		struct dq_task *t, *next;

		for (t = TAILQ_FIRST(&dest->tasks); t; t = next) {
			next = TAILQ_NEXT(t, entry);
			if (t->msg != m)
				continue;
			TAILQ_REMOVE(&dest->tasks, t, entry);
			dest->ntasks--;
			dq_task_return(d, t);
		}
	}
	evtimer_del(m->retry_ev);
	m->retry_at_ms = 0;
	return m->inflight;
}

/*
 * The head to send for recipients in domain: the relay key field of that
 * protected domain on top of the message's recorded head (scanned mail
 * only), or NULL when no key applies (the recorded head is sent as is).
 */
static char *
dq_keyed_head(struct delivery *d, const struct dq_msg *m, const char *domain, size_t *len)
{
	const char *name = d->cfg->relay_key_header;
	char key[160], *h;
	int n;

	*len = 0;
	if (d->scan_env == NULL || m->env.head == NULL || name[0] == '\0' || domain == NULL ||
	    !policy_is_protected(d->pol, domain))
		return NULL;
	scan_relay_key(d->scan_env, d->pol, domain, key, sizeof(key));
	h = xmalloc(strlen(name) + strlen(key) + 4 + m->env.head_len + 1);
	n = snprintf(h, strlen(name) + strlen(key) + 5, "%s: %s\r\n", name, key);
	memcpy(h + n, m->env.head, m->env.head_len);
	*len = (size_t)n + m->env.head_len;
	h[*len] = '\0';
	return h;
}

void
delivery_set_scan_env(struct delivery *d, const struct scan_env *env)
{
	d->scan_env = env;
}

void
delivery_set_store(struct delivery *d, struct store_writer *w)
{
	d->store = w;
}

/* Deliver recipient i to its local Maildir, now. */
static void
dq_deliver_maildir(struct delivery *d, struct dq_msg *m, size_t i)
{
	const char *rcpt = m->env.rcpts[i].addr;
	char path[4096], q[MAILADDR_FORMAT_MAX * 4 + 3], why[300];
	struct spool_body b;
	size_t hlen;
	char *head = dq_keyed_head(d, m, dq_domain(rcpt), &hlen);
	int r;

	log_quote(q, sizeof(q), rcpt, strlen(rcpt));
	if ((r = spool_body_open(d->spool, m->id, &m->env, &b)) == 0) {
		if (head)
			spool_body_set_head(&b, head, hlen);
		r = delivery_maildir(d->data_dir, d->hostname, &b, &m->env, rcpt, path,
		                     sizeof(path));
	}
	free(head);
	if (r < 0) {
		snprintf(why, sizeof(why), "451 4.3.0 maildir: %s", strerror(errno));
		if (b.fd >= 0)
			close(b.fd);
		dq_set_outcome(m, i, DQ_PENDING, "4.3.0", "maildir", why);
		log_warn("event=deferred id=%s to=%s route=maildir reason=\"%s\"", m->id, q, why);
		return;
	}
	close(b.fd);
	m->success[i] = DSN_DELIVERED;
	stats_inc(delivery_delivered);
	dq_set_outcome(m, i, DQ_DELIVERED, "2.0.0", "maildir", "250 2.0.0 delivered to maildir");
	log_info("event=delivered id=%s to=%s route=maildir", m->id, q);
}

/* Turn a message's pending recipients into tasks at their destinations. */
void
dq_schedule(struct delivery *d, struct dq_msg *m)
{
	const struct config *c = d->cfg;
	struct dq_task **open = NULL;
	size_t nopen = 0, maildir = 0;
	int64_t now = (int64_t)time(NULL);

	evtimer_del(m->retry_ev);
	m->retry_at_ms = 0;
	if (m->env.held || c->delivery_paused || m->inflight > 0 || d->stopping)
		return;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		const char *domain;
		const struct route *r;
		struct dest *dest;
		struct dq_task *t = NULL;
		bool keyed;

		if (m->state[i] != DQ_PENDING)
			continue;
		if (now - m->env.received_at >= (int64_t)(c->delivery_queue_lifetime / 1000)) {
			char why[DELIVERY_REPLY_MAX + 64];
			const char *last = m->env.rcpts[i].diag;

			snprintf(why, sizeof(why), "Message expired after %llu s in the queue%s%s",
			         (unsigned long long)(c->delivery_queue_lifetime / 1000),
			         last ? "; last error: " : "", last ? last : "");
			dq_set_outcome(m, i, DQ_FAILED, "4.4.7", m->env.rcpts[i].remote, why);
			continue;
		}
		domain = dq_domain(m->env.rcpts[i].addr);
		r = policy_route_for(d->pol, domain);
		if (r->type == ROUTE_MAILDIR) {
			dq_deliver_maildir(d, m, i);
			maildir++;
			continue;
		}
		dest = dest_get(d, r, domain);
		/* a relay key is per tenant: one transaction per keyed domain */
		keyed = d->scan_env && m->env.head && c->relay_key_header[0] &&
		        policy_is_protected(d->pol, domain);
		for (size_t k = 0; k < nopen; k++) {
			if (open[k]->dest == dest &&
			    open[k]->n < c->delivery_rcpts_per_transaction &&
			    (keyed ? open[k]->key_domain && strcmp(open[k]->key_domain, domain) == 0
			           : open[k]->key_domain == NULL)) {
				t = open[k];
				break;
			}
		}
		if (t == NULL) {
			t = dq_task_new(m, dest, c->delivery_rcpts_per_transaction);
			if (keyed) {
				t->key_domain = domain;
				t->head = dq_keyed_head(d, m, domain, &t->head_len);
			}
			open = xrealloc(open, (nopen + 1) * sizeof(*open));
			open[nopen++] = t;
		}
		t->rcpt[t->n++] = i;
		m->state[i] = DQ_INFLIGHT;
	}
	m->inflight = (unsigned)nopen;
	for (size_t k = 0; k < nopen; k++)
		dest_push(d, open[k]->dest, open[k]);
	free(open);
	if (nopen == 0)
		dq_settle(d, m, false);
}

/* --- outcomes --- */

void
delivery_task_done(struct delivery *d, struct dq_task *t)
{
	struct dq_msg *m = t->msg;
	bool no_attempt = t->no_attempt;

	for (size_t k = 0; k < t->n; k++) {
		size_t i = t->rcpt[k];
		int code = t->code[k];
		const char *reply = t->reply[k] ? t->reply[k] : "451 4.4.2 no reply";
		char status[16], q[MAILADDR_FORMAT_MAX * 4 + 3], rq[DELIVERY_REPLY_MAX * 4 + 3];

		if (code == 0)
			code = 451;
		dq_status_of(reply, code, status, sizeof(status));
		log_quote(q, sizeof(q), m->env.rcpts[i].addr, strlen(m->env.rcpts[i].addr));
		log_quote(rq, sizeof(rq), reply, strlen(reply));
		if (code / 100 == 2) {
			stats_inc(delivery_delivered);
			m->success[i] = t->dsn_passed ? -1 : DSN_RELAYED;
			dq_set_outcome(m, i, DQ_DELIVERED, status, t->remote, reply);
			log_info("event=delivered id=%s to=%s relay=\"%s\" reply=%s", m->id, q,
			         t->remote, rq);
		} else if (code / 100 == 5) {
			stats_inc(delivery_bounced);
			dq_set_outcome(m, i, DQ_FAILED, status, t->remote, reply);
			log_info("event=bounced id=%s to=%s relay=\"%s\" reply=%s", m->id, q,
			         t->remote, rq);
		} else {
			stats_inc(delivery_deferred);
			dq_set_outcome(m, i, DQ_PENDING, status, t->remote, reply);
			log_info("event=deferred id=%s to=%s relay=\"%s\" reply=%s%s", m->id, q,
			         t->remote, rq, no_attempt ? " attempt=none" : "");
		}
	}
	if (!no_attempt)
		m->round_attempted = true;
	dq_task_free(t);
	if (--m->inflight == 0) {
		/* a round where nothing was really tried is repeated at once */
		bool retry_now = !m->round_attempted;

		m->round_attempted = false;
		dq_settle(d, m, retry_now);
	}
}

/*
 * Write a delivery report about m for the recipients with this action.
 * 1: written; 0: nobody to tell; -1: it could not be written (try later).
 */
static int
dq_send_dsn(struct delivery *d, struct dq_msg *m, enum dsn_action action)
{
	const struct config *c = d->cfg;
	struct dsn_rcpt *dr = xcalloc(m->env.nrcpts, sizeof(*dr));
	struct dsn_msg dm = {0};
	struct spool_body b;
	struct spool_env env = {0};
	struct spool_msg *out;
	char *orig = NULL, *text;
	size_t n = 0, olen = 0, tlen;
	uint64_t want;
	int64_t now = (int64_t)time(NULL);

	for (size_t i = 0; i < m->env.nrcpts; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		enum dq_rcpt_state st = m->state[i];
		bool match = (action == DSN_FAILED && st == DQ_FAILED) ||
		             (action == DSN_DELAYED && st == DQ_PENDING) ||
		             (action == DSN_DELIVERED && st == DQ_DELIVERED && m->success[i] >= 0);

		/* with a delay warning configured, a sender who said nothing hears of delays */
		if (!match ||
		    !dsn_wanted(r->notify | (action == DSN_DELAYED ? DSN_WANT_DEFAULT_DELAY : 0),
		                action))
			continue;
		dr[n].addr = r->addr;
		dr[n].orcpt = r->orcpt;
		dr[n].action = action == DSN_DELIVERED ? (enum dsn_action)m->success[i] : action;
		dr[n].status = r->status;
		dr[n].remote_mta = r->remote;
		dr[n].diagnostic = r->diag;
		dr[n].last_attempt = r->when;
		if (action == DSN_DELAYED)
			dr[n].will_retry_until =
			        m->env.received_at + (int64_t)(c->delivery_queue_lifetime / 1000);
		n++;
	}
	if (n == 0 || m->env.sender == NULL || m->env.sender[0] == '\0') {
		free(dr);
		return 0; /* nobody asked, or the null sender (RFC 5321 4.5.5) */
	}
	/*
	 * Read as much of the original as the report may carry; past that, at
	 * least a whole header block (bounded by smtp_max_header_size) so that
	 * a headers-only report is never cut inside the header.
	 */
	want = c->delivery_dsn_max_original + 1;
	if (want < c->smtp_max_header_size + 1024)
		want = c->smtp_max_header_size + 1024;
	/*
	 * The message as it was received, without moat's scan fields: a
	 * report goes to an outside sender, who must never see a relay key.
	 */
	if (spool_body_open(d->spool, m->id, NULL, &b) == 0) {
		if (want > b.len)
			want = b.len;
		orig = xmalloc((size_t)want + 1);
		ssize_t r = spool_body_pread(&b, orig, (size_t)want, 0);
		olen = r > 0 ? (size_t)r : 0;
		close(b.fd);
	}
	dm.reporting_mta = d->hostname;
	dm.queue_id = m->id;
	dm.envid = m->env.envid;
	dm.sender = m->env.sender;
	dm.client_addr = m->env.client_addr;
	dm.client_helo = m->env.helo;
	dm.arrival = m->env.received_at;
	dm.now = now;
	dm.ret_hdrs = m->env.ret && strcmp(m->env.ret, "HDRS") == 0;
	dm.max_original = (size_t)c->delivery_dsn_max_original;
	dm.rcpts = dr;
	dm.nrcpts = n;
	/* Over the limit (olen > max_original), dsn_build returns the header block only. */
	text = dsn_build(&dm, orig ? orig : "", olen, &tlen);
	free(orig);
	free(dr);
	out = spool_msg_new(d->spool);
	spool_msg_write(out, text, tlen);
	env.received_at = now;
	env.client_addr = xstrdup("127.0.0.1");
	env.helo = xstrdup(d->hostname);
	env.protocol = xstrdup("local");
	env.sender = xstrdup("");
	/* 8BITMIME only when the report holds 8-bit octets (an 8-bit original) */
	for (size_t k = 0; k < tlen; k++) {
		if ((unsigned char)text[k] >= 0x80) {
			env.body_type = xstrdup("8BITMIME");
			break;
		}
	}
	free(text);
	{
		struct mailaddr a;
		env.smtputf8 = mailaddr_parse(m->env.sender, strlen(m->env.sender),
		                              MAILADDR_F_NO_ANGLES | MAILADDR_F_SMTPUTF8, &a,
		                              NULL) == MAILADDR_OK &&
		               a.utf8;
	}
	spool_env_add_rcpt(&env, m->env.sender, SMTP_NOTIFY_NEVER, NULL);
	spool_msg_set_env(out, &env);
	{
		char id[SPOOL_ID_LEN + 1];
		int err;

		str_copy(id, spool_msg_id(out), sizeof(id));
		err = spool_msg_commit_sync(out);
		if (err) {
			log_error("event=dsn_failed id=%s reason=\"%s\" action=retry", m->id,
			          strerror(err));
			return -1;
		}
		stats_inc(delivery_dsn);
		log_info("event=dsn id=%s dsn_id=%s action=%s to=<%s> rcpts=%zu", m->id, id,
		         action == DSN_FAILED    ? "failed"
		         : action == DSN_DELAYED ? "delayed"
		                                 : "delivered",
		         m->env.sender, n);
		dq_load(d, id);
	}
	return 1;
}

/* All tasks of m are back: record, report, retry or remove. */
static void
dq_settle(struct delivery *d, struct dq_msg *m, bool retry_now)
{
	const struct config *c = d->cfg;
	struct spool_mark *marks = xcalloc(m->env.nrcpts, sizeof(*marks));
	size_t nmarks = 0, pending = 0, failed = 0;
	int64_t now = (int64_t)time(NULL);

	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (m->state[i] == DQ_PENDING || m->state[i] == DQ_INFLIGHT) {
			pending++;
			continue;
		}
		if (m->state[i] == DQ_FAILED)
			failed++;
		if (m->recorded[i])
			continue;
		marks[nmarks].what = SPOOL_MARK_RCPT;
		marks[nmarks].rcpt = i;
		marks[nmarks].state =
		        m->state[i] == DQ_DELIVERED ? SPOOL_RCPT_DELIVERED : SPOOL_RCPT_FAILED;
		marks[nmarks].status = m->env.rcpts[i].status;
		marks[nmarks].remote = m->env.rcpts[i].remote;
		marks[nmarks].diag = m->env.rcpts[i].diag;
		marks[nmarks].when = m->env.rcpts[i].when;
		/* a success report owed only if the sender asked for it */
		if (m->success[i] >= 0 && (m->env.rcpts[i].notify & SMTP_NOTIFY_SUCCESS))
			marks[nmarks].report = m->success[i] == DSN_DELIVERED ? 'D' : 'R';
		nmarks++;
	}
	if (pending == 0) {
		/*
		 * Done. Reports first, each recorded as sent before the next step;
		 * then the message leaves. Anything that fails keeps it queued
		 * (with its outcomes recorded) and is tried again later.
		 */
		static const struct {
			unsigned bit;
			enum dsn_action action;
		} reports[] = {{SPOOL_REPORT_FAILED, DSN_FAILED},
		               {SPOOL_REPORT_SUCCESS, DSN_DELIVERED}};
		bool stuck = false;

		for (size_t k = 0; k < nitems(reports) && !stuck; k++) {
			struct spool_mark sent = {.what = SPOOL_MARK_REPORTS};

			if (m->env.reports_sent & reports[k].bit)
				continue;
			if (reports[k].action == DSN_FAILED && failed == 0)
				continue;
			switch (dq_send_dsn(d, m, reports[k].action)) {
			case -1:
				stuck = true;
				continue;
			case 0:
				continue; /* nothing to report: nothing to record */
			}
			m->env.reports_sent |= reports[k].bit;
			sent.reports = m->env.reports_sent;
			if (spool_mark(d->spool, m->id, &sent, 1) < 0)
				log_warn("event=spool_mark id=%s reason=\"%s\" risk=\"a report may "
				         "be sent "
				         "again after a restart\"",
				         m->id, strerror(errno));
		}
		if (!stuck && spool_remove(d->spool, m->id) < 0 && errno != ENOENT) {
			log_error("event=spool_remove id=%s reason=\"%s\" action=retry", m->id,
			          strerror(errno));
			stuck = true;
		}
		if (!stuck) {
			free(marks);
			log_info("event=removed id=%s", m->id);
			dq_free(d, m);
			return;
		}
		/* keep it: record what is final, come back after delivery_retry_min */
		retry_now = false;
		m->attempts = 0;
	}
	if (nmarks > 0) {
		if (spool_mark(d->spool, m->id, marks, nmarks) < 0) {
			log_error("event=spool_mark id=%s reason=\"%s\" action=\"outcomes kept in "
			          "memory\"",
			          m->id, strerror(errno));
		} else {
			for (size_t k = 0; k < nmarks; k++)
				m->recorded[marks[k].rcpt] = true;
		}
	}
	free(marks);
	if (pending > 0 && c->delivery_delay_warning && !m->env.delay_warned &&
	    now - m->env.received_at >= (int64_t)(c->delivery_delay_warning / 1000) &&
	    dq_send_dsn(d, m, DSN_DELAYED) >= 0) {
		struct spool_mark warned = {.what = SPOOL_MARK_DELAY_WARNED};

		m->env.delay_warned = true;
		if (spool_mark(d->spool, m->id, &warned, 1) < 0)
			log_warn("event=spool_mark id=%s reason=\"%s\"", m->id, strerror(errno));
	}
	{
		uint64_t delay;
		int64_t expire = m->env.received_at + (int64_t)(c->delivery_queue_lifetime / 1000);
		struct timeval tv;

		if (retry_now) {
			delay = 0;
		} else {
			unsigned shift = m->attempts < 20 ? m->attempts : 20;
			delay = c->delivery_retry_min << shift;
			if (delay > c->delivery_retry_max)
				delay = c->delivery_retry_max;
			m->attempts++;
		}
		/* never wait past the expiry: it must be noticed on time */
		if (expire > now && (uint64_t)(expire - now) * 1000 < delay)
			delay = (uint64_t)(expire - now) * 1000;
		tv.tv_sec = (time_t)(delay / 1000);
		tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
		m->retry_at_ms = clock_ms() + delay;
		evtimer_add(m->retry_ev, &tv);
		log_debug("event=retry id=%s pending=%zu in_ms=%llu", m->id, pending,
		          (unsigned long long)delay);
	}
}

/* --- TLS contexts for the client side --- */

SSL_CTX *
delivery_tls_ctx(struct delivery *d, const struct route *r)
{
	struct delivery_tls_ctx *t;
	SSL_CTX *ctx;

	if (r->tls != ROUTE_TLS_VERIFY) {
		if (d->tls_any == NULL) {
			d->tls_any = SSL_CTX_new(TLS_client_method());
			if (d->tls_any == NULL)
				return NULL;
			SSL_CTX_set_min_proto_version(d->tls_any, TLS1_2_VERSION);
			SSL_CTX_set_verify(d->tls_any, SSL_VERIFY_NONE, NULL);
			SSL_CTX_set_mode(d->tls_any, SSL_MODE_RELEASE_BUFFERS);
		}
		return d->tls_any;
	}
	for (t = d->tls_verify; t; t = t->next)
		if (strcmp(t->ca, r->tls_ca) == 0)
			return t->ctx;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if ((r->tls_ca[0] ? SSL_CTX_load_verify_locations(ctx, r->tls_ca, NULL)
	                  : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		log_error("event=tls_ca_error file=\"%s\"", r->tls_ca);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	str_copy(t->ca, r->tls_ca, sizeof(t->ca));
	t->ctx = ctx;
	t->next = d->tls_verify;
	d->tls_verify = t;
	return ctx;
}

/* --- the thread and what other threads may call --- */

static void
delivery_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;
	char(*ids)[SPOOL_ID_LEN + 1];
	size_t nids;
	struct policy *pol;
	struct config *cfg;
	bool stop;

	pthread_mutex_lock(&d->lock);
	ids = d->incoming;
	nids = d->nincoming;
	d->incoming = NULL;
	d->nincoming = d->capincoming = 0;
	pol = d->next_pol;
	cfg = d->next_cfg;
	d->next_pol = NULL;
	d->next_cfg = NULL;
	stop = d->stop_requested;
	pthread_mutex_unlock(&d->lock);

	if (pol != NULL) {
		bool was_paused = d->cfg->delivery_paused;
		struct dq_msg *m;

		policy_unref(d->pol);
		config_unref(d->cfg);
		d->pol = pol;
		d->cfg = cfg;
		if (was_paused && !cfg->delivery_paused) {
			TAILQ_FOREACH (m, &d->msgs, entry) {
				if (m->inflight == 0 && m->retry_at_ms == 0)
					dq_schedule_soon(d, m);
			}
		}
	}
	for (size_t i = 0; i < nids; i++)
		dq_load(d, ids[i]);
	free(ids);
	if (stop) {
		struct dest *dest, *next;

		d->stopping = true;
		for (dest = TAILQ_FIRST(&d->dests); dest; dest = next) {
			struct mta_session *s, *sn;

			next = TAILQ_NEXT(dest, entry);
			for (s = TAILQ_FIRST(&dest->sessions); s; s = sn) {
				sn = TAILQ_NEXT(s, entry);
				mta_session_abort(s);
			}
		}
		event_base_loopexit(d->base, NULL);
	}
}

static void *
delivery_main(void *arg)
{
	struct delivery *d = arg;
	char err[256];

	/* libunbound's own thread belongs with the loop that uses it */
	d->dns = dns_new(d->base, d->cfg->dns_resolver[0] ? d->cfg->dns_resolver : NULL,
	                 (unsigned)d->cfg->dns_timeout, err, sizeof(err));
	if (d->dns == NULL)
		log_error("event=dns_error reason=\"%s\" action=\"MX routes and smart host names "
		          "are deferred\"",
		          err);
	event_base_loop(d->base, EVLOOP_NO_EXIT_ON_EMPTY);
	control_free(d->control);
	d->control = NULL;
	if (d->dns)
		dns_free(d->dns);
	d->dns = NULL;
	return NULL;
}

struct delivery *
delivery_new(struct spool *spool, struct config *cfg, struct policy *pol)
{
	struct delivery *d = xcalloc(1, sizeof(*d));

	d->spool = spool;
	d->cfg = config_ref(cfg);
	d->pol = policy_ref(pol);
	d->data_dir = xstrdup(cfg->data_dir);
	d->hostname = xstrdup(cfg->hostname);
	pthread_mutex_init(&d->lock, NULL);
	TAILQ_INIT(&d->msgs);
	TAILQ_INIT(&d->dests);
	if ((d->base = event_base_new()) == NULL)
		fatalx("delivery: event_base_new failed");
	d->wake_ev = event_new(d->base, -1, 0, delivery_wake_cb, d);
	return d;
}

int
delivery_control_open(struct delivery *d, const char *path, char *err, size_t errsize)
{
	if ((d->control = control_new(d->base, path, err, errsize)) == NULL)
		return -1;
	delivery_ctl_register(d, d->control);
	return 0;
}

struct control *
delivery_control(struct delivery *d)
{
	return d->control;
}

int
delivery_start(struct delivery *d)
{
	if (pthread_create(&d->thread, NULL, delivery_main, d) != 0)
		return -1;
	d->running = true;
	return 0;
}

void
delivery_enqueue(struct delivery *d, const char *id)
{
	pthread_mutex_lock(&d->lock);
	if (d->nincoming == d->capincoming) {
		d->capincoming = d->capincoming ? d->capincoming * 2 : 256;
		d->incoming = xrealloc(d->incoming, d->capincoming * sizeof(*d->incoming));
	}
	str_copy(d->incoming[d->nincoming++], id, SPOOL_ID_LEN + 1);
	pthread_mutex_unlock(&d->lock);
	event_active(d->wake_ev, 0, 0);
}

void
delivery_reconfigure(struct delivery *d, struct config *cfg, struct policy *pol)
{
	pthread_mutex_lock(&d->lock);
	if (d->next_pol) {
		policy_unref(d->next_pol);
		config_unref(d->next_cfg);
	}
	d->next_pol = policy_ref(pol);
	d->next_cfg = config_ref(cfg);
	pthread_mutex_unlock(&d->lock);
	event_active(d->wake_ev, 0, 0);
}

void
delivery_stop(struct delivery *d)
{
	if (!d->running)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop_requested = true;
	pthread_mutex_unlock(&d->lock);
	event_active(d->wake_ev, 0, 0);
	pthread_join(d->thread, NULL);
	d->running = false;
}

void
delivery_free(struct delivery *d)
{
	struct dq_msg *m;
	struct dest *dest;
	struct delivery_tls_ctx *t;

	delivery_stop(d);
	/* sessions closed at stop free themselves on the next loop turn */
	event_base_loop(d->base, EVLOOP_NONBLOCK);
	while ((dest = TAILQ_FIRST(&d->dests)) != NULL) {
		struct dq_task *task;

		TAILQ_REMOVE(&d->dests, dest, entry);
		while ((task = dest_task_pop(dest)) != NULL)
			dq_task_free(task);
		if (dest->kick_ev)
			event_free(dest->kick_ev);
		free(dest->lookup_slots);
		free(dest->addrs);
		free(dest->key);
		free(dest);
	}
	while ((m = TAILQ_FIRST(&d->msgs)) != NULL)
		dq_free(d, m);
	while ((t = d->tls_verify) != NULL) {
		d->tls_verify = t->next;
		SSL_CTX_free(t->ctx);
		free(t);
	}
	if (d->tls_any)
		SSL_CTX_free(d->tls_any);
	free(d->incoming);
	if (d->next_pol) {
		policy_unref(d->next_pol);
		config_unref(d->next_cfg);
	}
	event_free(d->wake_ev);
	event_base_free(d->base);
	policy_unref(d->pol);
	config_unref(d->cfg);
	free(d->data_dir);
	free(d->hostname);
	free(d);
}
