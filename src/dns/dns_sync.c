/*
 * dns_sync.c - blocking lookups over the asynchronous resolver (see
 * dns_sync.h).
 *
 * A request lives on the heap with two owners: the caller, until it has
 * its answer or gives up at its deadline, and the resolver thread, until
 * the query's callback has run. Whoever lets go last frees it, so a
 * caller that times out never leaves the resolver writing into freed
 * memory, and the resolver never blocks on a caller.
 *
 * Answers (TXT, addresses, PTR; not MX) are kept in a small cache for
 * their TTL (at most DNS_SYNC_TTL_MAX): a scan asks the same few names as
 * the one before it (SPF, DKIM key and DMARC records of a sender), and
 * libunbound's own cache sits behind two thread hand-offs per lookup,
 * which cost more than the rest of a small message's scan. Temporary
 * failures are never kept.
 */
#include "dns_sync.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

enum dns_sync_kind { DNS_SYNC_TXT, DNS_SYNC_ADDR, DNS_SYNC_MX, DNS_SYNC_PTR };

#define DNS_SYNC_CACHE   4096 /* slots, direct-mapped by name: a collision replaces */
#define DNS_SYNC_TTL_MAX 3600 /* seconds an answer is kept at most */

struct dns_sync_cached {
	enum dns_sync_kind kind;
	int family;
	char name[DNS_NAME_MAX + 8];
	uint64_t expires_ms; /* clock_ms() */
	union {
		struct dns_txt_result txt; /* strings owned */
		struct dns_addr_result addr;
		struct dns_ptr_result ptr;
	} r;
};

struct dns_sync_req {
	enum dns_sync_kind kind;
	char name[DNS_NAME_MAX + 8];
	int family;
	int owners; /* under ds->lock */
	bool done;  /* under ds->lock */
	pthread_cond_t cond;
	struct dns_sync_cb *cb; /* while in flight */
	union {
		struct dns_txt_result txt;
		struct dns_addr_result addr;
		struct dns_mx_result mx;
		struct dns_ptr_result ptr;
	} r;
	TAILQ_ENTRY(dns_sync_req) entry;
};

TAILQ_HEAD(dns_sync_list, dns_sync_req);

struct dns_sync {
	pthread_t thread;
	pthread_mutex_t lock;
	struct dns_sync_list pending;  /* to start, under lock */
	struct dns_sync_list inflight; /* started, not answered, under lock */
	bool stopping;                 /* under lock */
	struct event_base *base;
	struct event *wake;
	struct dns *dns;
	pthread_mutex_t cache_lock;
	struct dns_sync_cached *cache[DNS_SYNC_CACHE];
};

static size_t
dns_sync_slot(enum dns_sync_kind kind, int family, const char *name)
{
	uint32_t h = 2166136261u ^ (uint32_t)kind ^ ((uint32_t)family << 8);

	for (; *name; name++) /* FNV-1a, case-folded: DNS names are not case-sensitive */
		h = (h ^ (unsigned char)(*name | ((*name >= 'A' && *name <= 'Z') ? 0x20 : 0))) *
		    16777619u;
	return h % DNS_SYNC_CACHE;
}

static void
dns_sync_cached_free(struct dns_sync_cached *c)
{
	if (c == NULL)
		return;
	if (c->kind == DNS_SYNC_TXT)
		for (size_t i = 0; i < c->r.txt.n; i++)
			free(c->r.txt.txt[i]);
	free(c);
}

/* A fresh cached answer into out (strings copied); false when there is none. */
static bool
dns_sync_cache_get(struct dns_sync *ds, enum dns_sync_kind kind, int family, const char *name,
                   void *out)
{
	size_t slot = dns_sync_slot(kind, family, name);
	struct dns_sync_cached *c;
	bool hit = false;

	pthread_mutex_lock(&ds->cache_lock);
	c = ds->cache[slot];
	if (c && c->kind == kind && c->family == family && strcasecmp(c->name, name) == 0 &&
	    c->expires_ms > clock_ms()) {
		hit = true;
		switch (kind) {
		case DNS_SYNC_TXT: {
			struct dns_txt_result *t = out;

			*t = c->r.txt;
			for (size_t i = 0; i < t->n; i++)
				t->txt[i] = xstrdup(c->r.txt.txt[i]);
			break;
		}
		case DNS_SYNC_ADDR:
			*(struct dns_addr_result *)out = c->r.addr;
			break;
		case DNS_SYNC_PTR:
			*(struct dns_ptr_result *)out = c->r.ptr;
			break;
		case DNS_SYNC_MX:
			hit = false;
			break;
		}
	}
	pthread_mutex_unlock(&ds->cache_lock);
	return hit;
}

/* Keep an answer for its TTL: definite ones only (found, no such name, no such record). */
static void
dns_sync_cache_put(struct dns_sync *ds, enum dns_sync_kind kind, int family, const char *name,
                   enum dns_status st, uint32_t ttl, const void *r)
{
	struct dns_sync_cached *c, *old;
	size_t slot;

	if (ttl == 0 || (st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA))
		return;
	c = xcalloc(1, sizeof(*c));
	c->kind = kind;
	c->family = family;
	str_copy(c->name, name, sizeof(c->name));
	c->expires_ms =
	        clock_ms() + 1000 * (uint64_t)(ttl < DNS_SYNC_TTL_MAX ? ttl : DNS_SYNC_TTL_MAX);
	switch (kind) {
	case DNS_SYNC_TXT:
		c->r.txt = *(const struct dns_txt_result *)r;
		for (size_t i = 0; i < c->r.txt.n; i++)
			c->r.txt.txt[i] = xstrdup(c->r.txt.txt[i]);
		break;
	case DNS_SYNC_ADDR:
		c->r.addr = *(const struct dns_addr_result *)r;
		break;
	case DNS_SYNC_PTR:
		c->r.ptr = *(const struct dns_ptr_result *)r;
		break;
	case DNS_SYNC_MX:
		free(c);
		return;
	}
	slot = dns_sync_slot(kind, family, name);
	pthread_mutex_lock(&ds->cache_lock);
	old = ds->cache[slot];
	ds->cache[slot] = c;
	pthread_mutex_unlock(&ds->cache_lock);
	dns_sync_cached_free(old);
}

static void
dns_sync_req_free(struct dns_sync_req *q)
{
	if (q->kind == DNS_SYNC_TXT)
		for (size_t i = 0; i < q->r.txt.n; i++)
			free(q->r.txt.txt[i]);
	pthread_cond_destroy(&q->cond);
	free(q);
}

/* Drop one owner under ds->lock; free when it was the last. */
static void
dns_sync_req_put(struct dns_sync_req *q)
{
	if (--q->owners == 0)
		dns_sync_req_free(q);
}

/* Resolver thread: an answer is in. */
static void
dns_sync_answer(struct dns_sync *ds, struct dns_sync_req *q)
{
	pthread_mutex_lock(&ds->lock);
	TAILQ_REMOVE(&ds->inflight, q, entry);
	q->cb = NULL;
	q->done = true;
	pthread_cond_signal(&q->cond);
	dns_sync_req_put(q);
	pthread_mutex_unlock(&ds->lock);
}

struct dns_sync_cb {
	struct dns_sync *ds;
	struct dns_sync_req *q;
};

/* The callbacks free their context: c is gone once they return. */

static void
dns_sync_on_txt(void *arg, const struct dns_txt_result *r)
{
	struct dns_sync_cb *c = arg;
	struct dns_txt_result *out = &c->q->r.txt;

	out->status = r->status;
	out->ttl = r->ttl;
	out->truncated = r->truncated;
	for (size_t i = 0; i < r->n; i++)
		out->txt[out->n++] = xstrdup(r->txt[i]); /* r is valid only in here */
	dns_sync_answer(c->ds, c->q);
	free(c);
}

static void
dns_sync_on_addr(void *arg, const struct dns_addr_result *r)
{
	struct dns_sync_cb *c = arg;

	c->q->r.addr = *r;
	dns_sync_answer(c->ds, c->q);
	free(c);
}

static void
dns_sync_on_mx(void *arg, const struct dns_mx_result *r)
{
	struct dns_sync_cb *c = arg;

	c->q->r.mx = *r;
	dns_sync_answer(c->ds, c->q);
	free(c);
}

static void
dns_sync_on_ptr(void *arg, const struct dns_ptr_result *r)
{
	struct dns_sync_cb *c = arg;

	c->q->r.ptr = *r;
	dns_sync_answer(c->ds, c->q);
	free(c);
}

/* Resolver thread: start what callers queued. */
static void
dns_sync_on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct dns_sync *ds = arg;
	struct dns_sync_list todo = TAILQ_HEAD_INITIALIZER(todo);
	struct dns_sync_req *q;
	bool stopping;

	pthread_mutex_lock(&ds->lock);
	stopping = ds->stopping;
	if (!stopping)
		TAILQ_CONCAT(&todo, &ds->pending, entry); /* left for dns_sync_stop() otherwise */
	pthread_mutex_unlock(&ds->lock);
	if (stopping) {
		event_base_loopbreak(ds->base);
		return;
	}
	while ((q = TAILQ_FIRST(&todo)) != NULL) {
		struct dns_sync_cb *c = xmalloc(sizeof(*c));

		TAILQ_REMOVE(&todo, q, entry);
		c->ds = ds;
		c->q = q;
		pthread_mutex_lock(&ds->lock);
		q->cb = c;
		TAILQ_INSERT_TAIL(&ds->inflight, q, entry);
		pthread_mutex_unlock(&ds->lock);
		switch (q->kind) {
		case DNS_SYNC_TXT:
			dns_txt(ds->dns, q->name, dns_sync_on_txt, c);
			break;
		case DNS_SYNC_ADDR:
			dns_addr_family(ds->dns, q->name, q->family, dns_sync_on_addr, c);
			break;
		case DNS_SYNC_MX:
			dns_mx(ds->dns, q->name, dns_sync_on_mx, c);
			break;
		case DNS_SYNC_PTR:
			dns_ptr(ds->dns, q->name, dns_sync_on_ptr, c);
			break;
		}
	}
}

static void *
dns_sync_main(void *arg)
{
	struct dns_sync *ds = arg;

	event_base_dispatch(ds->base);
	return NULL;
}

struct dns_sync *
dns_sync_start(const char *upstream, unsigned timeout_ms, char *err, size_t errsize)
{
	struct dns_sync *ds = xcalloc(1, sizeof(*ds));

	if (evthread_use_pthreads() < 0 || (ds->base = event_base_new()) == NULL) {
		snprintf(err, errsize, "cannot create an event loop");
		free(ds);
		return NULL;
	}
	if ((ds->dns = dns_new(ds->base, upstream, timeout_ms, err, errsize)) == NULL) {
		event_base_free(ds->base);
		free(ds);
		return NULL;
	}
	pthread_mutex_init(&ds->lock, NULL);
	pthread_mutex_init(&ds->cache_lock, NULL);
	TAILQ_INIT(&ds->pending);
	TAILQ_INIT(&ds->inflight);
	if ((ds->wake = event_new(ds->base, -1, EV_PERSIST, dns_sync_on_wake, ds)) == NULL)
		fatalx("dns_sync: event_new");
	/* keep the loop alive while it has nothing to do */
	event_add(ds->wake, NULL);
	if ((errno = pthread_create(&ds->thread, NULL, dns_sync_main, ds)) != 0)
		fatal("dns_sync: pthread_create");
	return ds;
}

void
dns_sync_stop(struct dns_sync *ds)
{
	struct dns_sync_req *q;

	if (ds == NULL)
		return;
	pthread_mutex_lock(&ds->lock);
	ds->stopping = true;
	pthread_mutex_unlock(&ds->lock);
	event_active(ds->wake, EV_TIMEOUT, 0);
	pthread_join(ds->thread, NULL);
	/* queries in flight are cancelled without their callbacks: drop the resolver's share */
	dns_free(ds->dns);
	pthread_mutex_lock(&ds->lock);
	while ((q = TAILQ_FIRST(&ds->inflight)) != NULL) {
		TAILQ_REMOVE(&ds->inflight, q, entry);
		free(q->cb);
		dns_sync_req_put(q);
	}
	while ((q = TAILQ_FIRST(&ds->pending)) != NULL) {
		TAILQ_REMOVE(&ds->pending, q, entry);
		dns_sync_req_put(q);
	}
	pthread_mutex_unlock(&ds->lock);
	event_free(ds->wake);
	event_base_free(ds->base);
	pthread_mutex_destroy(&ds->lock);
	for (size_t i = 0; i < DNS_SYNC_CACHE; i++)
		dns_sync_cached_free(ds->cache[i]);
	pthread_mutex_destroy(&ds->cache_lock);
	free(ds);
}

/*
 * Queue q and wait until it is answered or deadline_ms passes. Returns
 * true with ds->lock held (answered or not: the caller looks at q->done),
 * false when the resolver is stopping (q was not queued).
 */
static bool
dns_sync_wait(struct dns_sync *ds, struct dns_sync_req *q, int64_t deadline_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_ms / 1000);
	ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000;
	pthread_mutex_lock(&ds->lock);
	if (ds->stopping) {
		pthread_mutex_unlock(&ds->lock);
		return false;
	}
	q->owners = 2;
	TAILQ_INSERT_TAIL(&ds->pending, q, entry);
	pthread_mutex_unlock(&ds->lock);
	event_active(ds->wake, EV_TIMEOUT, 0);

	pthread_mutex_lock(&ds->lock);
	while (!q->done && (int64_t)clock_ms() < deadline_ms)
		if (pthread_cond_timedwait(&q->cond, &ds->lock, &ts) == ETIMEDOUT)
			break;
	return true; /* locked */
}

static struct dns_sync_req *
dns_sync_req_new(enum dns_sync_kind kind, const char *name, int family)
{
	struct dns_sync_req *q = xcalloc(1, sizeof(*q));
	pthread_condattr_t ca;

	q->kind = kind;
	q->family = family;
	str_copy(q->name, name, sizeof(q->name));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

/* Run q; true when answered (result in q), the caller then calls dns_sync_done(). */
static bool
dns_sync_run(struct dns_sync *ds, struct dns_sync_req *q, int64_t deadline_ms)
{
	if (strlen(q->name) > DNS_NAME_MAX + 1 || !dns_sync_wait(ds, q, deadline_ms)) {
		dns_sync_req_free(q);
		return false;
	}
	if (!q->done) {
		dns_sync_req_put(q); /* the resolver frees it when its answer comes */
		pthread_mutex_unlock(&ds->lock);
		return false;
	}
	pthread_mutex_unlock(&ds->lock);
	return true;
}

/* After a successful dns_sync_run(): the resolver has let go; free q. */
static void
dns_sync_done(struct dns_sync *ds, struct dns_sync_req *q)
{
	pthread_mutex_lock(&ds->lock);
	dns_sync_req_put(q);
	pthread_mutex_unlock(&ds->lock);
}

enum dns_status
dns_sync_txt(struct dns_sync *ds, const char *name, int64_t deadline_ms, struct dns_txt_result *out)
{
	struct dns_sync_req *q;

	memset(out, 0, sizeof(*out));
	if (dns_sync_cache_get(ds, DNS_SYNC_TXT, 0, name, out))
		return out->status;
	q = dns_sync_req_new(DNS_SYNC_TXT, name, 0);
	out->status = DNS_TEMPFAIL;
	if (!dns_sync_run(ds, q, deadline_ms))
		return out->status;
	*out = q->r.txt; /* the strings move to the caller */
	q->r.txt.n = 0;
	dns_sync_done(ds, q);
	dns_sync_cache_put(ds, DNS_SYNC_TXT, 0, name, out->status, out->ttl, out);
	return out->status;
}

enum dns_status
dns_sync_addr(struct dns_sync *ds, const char *name, int family, int64_t deadline_ms,
              struct dns_addr_result *out)
{
	struct dns_sync_req *q;

	memset(out, 0, sizeof(*out));
	if (dns_sync_cache_get(ds, DNS_SYNC_ADDR, family, name, out))
		return out->status;
	q = dns_sync_req_new(DNS_SYNC_ADDR, name, family);
	out->status = DNS_TEMPFAIL;
	if (!dns_sync_run(ds, q, deadline_ms))
		return out->status;
	*out = q->r.addr;
	dns_sync_done(ds, q);
	dns_sync_cache_put(ds, DNS_SYNC_ADDR, family, name, out->status, out->ttl, out);
	return out->status;
}

enum dns_status
dns_sync_mx(struct dns_sync *ds, const char *domain, int64_t deadline_ms, struct dns_mx_result *out)
{
	struct dns_sync_req *q = dns_sync_req_new(DNS_SYNC_MX, domain, 0);

	memset(out, 0, sizeof(*out));
	out->status = DNS_TEMPFAIL;
	if (!dns_sync_run(ds, q, deadline_ms))
		return out->status;
	*out = q->r.mx;
	dns_sync_done(ds, q);
	return out->status;
}

enum dns_status
dns_sync_ptr(struct dns_sync *ds, const char *ip, int64_t deadline_ms, struct dns_ptr_result *out)
{
	struct dns_sync_req *q;

	memset(out, 0, sizeof(*out));
	if (dns_sync_cache_get(ds, DNS_SYNC_PTR, 0, ip, out))
		return out->status;
	q = dns_sync_req_new(DNS_SYNC_PTR, ip, 0);
	out->status = DNS_TEMPFAIL;
	if (!dns_sync_run(ds, q, deadline_ms))
		return out->status;
	*out = q->r.ptr;
	dns_sync_done(ds, q);
	dns_sync_cache_put(ds, DNS_SYNC_PTR, 0, ip, out->status, out->ttl, out);
	return out->status;
}
