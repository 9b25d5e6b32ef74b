/*
 * dns.c - asynchronous DNS on libevent through libunbound (see dns.h).
 *
 * RFC 1035 sections 2.3.4, 3.1, 3.3.9, 3.3.14 (name limits, wire names,
 * MX, TXT), RFC 3596 (AAAA), RFC 2181 section 10.3 (MX targets are host
 * names, not aliases or addresses), RFC 5321 section 5.1 (MX ordering,
 * random order among equal preferences, implicit MX), RFC 7505 (null
 * MX), RFC 7208 section 3.3 (a TXT record's strings are concatenated),
 * RFC 8305 section 4 (address family interleaving).
 *
 * libunbound resolves in a thread of its own (ub_ctx_async) and hands
 * answers back through a pipe, ub_fd(), watched by a persistent EV_READ
 * event that calls ub_process(). Three rules keep this re-entrant:
 *
 *  - ub_process() only runs dns_ub_cb(), which files the answer in its
 *    query and queues the query on d->ready; no state changes and no
 *    user code run inside libunbound.
 *  - After ub_process() returns, ready queries advance: a finished
 *    stage is decoded and either the next stage starts (the address
 *    lookups of MX hosts) or the query moves to d->done.
 *  - User callbacks run only from d->dispatch, an event of its own, so
 *    never inside a dns_* call, the ub_fd handler or a timer. While it
 *    runs, dns_free() only cancels and marks the resolver dying; the
 *    dispatcher frees it once the callback has returned.
 *
 * libunbound has no per-query time limit, so each stage of a query has
 * an evtimer; on expiry the stage's outstanding lookups are cancelled
 * (ub_cancel: their ub callbacks will not run) and count as TEMPFAIL.
 *
 * ub_cancel() only fails for a lookup libunbound has already answered,
 * and answers are only delivered by our own ub_process() call, after
 * which the lookup is no longer pending here: a failure is a broken
 * invariant (fatalx).
 */
#include "dns.h"
#include "../common/log.h"
#include "../common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <unbound.h>

#define DNS_TYPE_A    1
#define DNS_TYPE_PTR  12
#define DNS_TYPE_MX   15
#define DNS_TYPE_TXT  16
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN  1

#define DNS_RCODE_NOERROR  0
#define DNS_RCODE_FORMERR  1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP   4
#define DNS_RCODE_REFUSED  5

#define DNS_WIRE_NAME_MAX 255                         /* octets, RFC 1035 3.1 */
#define DNS_SUB_MAX       (2 * DNS_MX_MAX)            /* lookups of one stage: A + AAAA per host */
#define DNS_TEXT_MAX      (4 * DNS_WIRE_NAME_MAX + 1) /* a wire name as text, \DDD escaped */

enum dns_kind {
	DNS_KIND_MX,
	DNS_KIND_ADDR,
	DNS_KIND_TXT,
	DNS_KIND_PTR,
};

enum dns_stage {
	DNS_STAGE_MX,   /* the MX RRset */
	DNS_STAGE_ADDR, /* A and AAAA of each host */
	DNS_STAGE_TXT,
	DNS_STAGE_PTR,
	DNS_STAGE_DONE, /* on d->done, callback pending */
};

/* One libunbound lookup. */
struct dns_sub {
	struct dns_query *q;
	int id; /* libunbound's async id, while pending */
	int rrtype;
	size_t host; /* index of the host it is for */
	bool pending;
	bool timedout;
	int err;               /* libunbound error, 0 = res is the answer */
	struct ub_result *res; /* owned until the stage is decoded */
};

/* The addresses of one host, per family, as the answers come in. */
struct dns_addrs {
	enum dns_status st4, st6;
	size_t n4, n6;
	struct sockaddr_in v4[DNS_ADDR_MAX];
	struct sockaddr_in6 v6[DNS_ADDR_MAX];
};

/* An MX record being considered. */
struct dns_mx_rr {
	unsigned pref;
	uint32_t key;       /* random: orders equal preferences */
	enum dns_status st; /* DNS_OK: a host name to look up; PERMFAIL: never */
	char name[DNS_TEXT_MAX];
};

struct dns_mx_state {
	struct dns_mx_result r;
	struct dns_addrs addrs[DNS_MX_MAX];
};

TAILQ_HEAD(dns_qlist, dns_query);

struct dns_query {
	struct dns *d;
	enum dns_kind kind;
	enum dns_stage stage;
	char name[DNS_NAME_MAX + 1];
	union {
		dns_mx_fn mx;
		dns_addr_fn addr;
		dns_txt_fn txt;
		dns_ptr_fn ptr;
	} cb;
	int family; /* DNS_KIND_ADDR: AF_UNSPEC, AF_INET or AF_INET6 */
	void *arg;
	struct event *timer;
	bool ready;   /* on d->ready */
	bool calling; /* its callback is running */
	uint64_t seq; /* order of completion, for the dispatcher */
	size_t nsubs, npending;
	struct dns_sub sub[DNS_SUB_MAX];
	TAILQ_ENTRY(dns_query) entry; /* d->running or d->done */
	TAILQ_ENTRY(dns_query) ready_entry;
	struct dns_mx_state *mx; /* DNS_KIND_MX only: large */
	union {
		struct {
			struct dns_addrs a;
			struct dns_addr_result r;
		} addr;
		struct dns_txt_result txt;
		struct dns_ptr_result ptr;
	} u;
};

struct dns {
	struct event_base *base;
	struct ub_ctx *ctx;
	struct event *ub_ev;    /* ub_fd() readable */
	struct event *dispatch; /* runs the callbacks of d->done */
	struct timeval timeout;
	bool broken;      /* libunbound's pipe failed: every lookup fails */
	bool dispatching; /* inside a user callback */
	bool dying;       /* dns_free() was called from a callback */
	uint64_t seq;
	struct dns_qlist running, done, ready;
};

const char *
dns_status_str(enum dns_status st)
{
	switch (st) {
	case DNS_OK:
		return "ok";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NODATA:
		return "nodata";
	case DNS_TEMPFAIL:
		return "tempfail";
	case DNS_PERMFAIL:
		return "permfail";
	}
	return "unknown";
}

static const char *
dns_kind_str(enum dns_kind kind)
{
	switch (kind) {
	case DNS_KIND_MX:
		return "mx";
	case DNS_KIND_ADDR:
		return "addr";
	case DNS_KIND_TXT:
		return "txt";
	case DNS_KIND_PTR:
		return "ptr";
	}
	return "unknown";
}

static bool
dns_host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/*
 * Check a name given to a lookup and copy it to out without its trailing
 * dot: 1 to 253 octets, labels of 1 to 63 letters, digits, '-' or '_'.
 */
size_t
dns_name_labels(const char *name)
{
	size_t len = strnlen(name, DNS_NAME_MAX + 2), label = 0, labels = 1;

	if (len > 1 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '.') {
			if (label == 0)
				return 0;
			label = 0;
			labels++;
		} else if (!dns_host_char((unsigned char)name[i]) || ++label > DNS_LABEL_MAX)
			return 0;
	}
	return label > 0 ? labels : 0;
}

static bool
dns_name_check(const char *name, char out[DNS_NAME_MAX + 1])
{
	size_t len = strnlen(name, DNS_NAME_MAX + 2);

	if (dns_name_labels(name) == 0)
		return false;
	if (name[len - 1] == '.')
		len--;
	memcpy(out, name, len);
	out[len] = '\0';
	return true;
}

/*
 * Decode the uncompressed wire name filling p[0..len) (RDATA names reach
 * us decompressed) into text without the trailing dot; the root is "".
 * Octets that are not host name characters are written \DDD and make
 * *is_host false. Returns -1 when malformed.
 */
static int
dns_name_from_wire(const uint8_t *p, size_t len, char out[DNS_TEXT_MAX], bool *is_host)
{
	size_t i = 0, o = 0;

	*is_host = true;
	for (;;) {
		if (i >= len || i >= DNS_WIRE_NAME_MAX)
			return -1;
		size_t l = p[i++];
		if (l == 0)
			break;
		if (l > DNS_LABEL_MAX || l > len - i) /* compression pointer or overrun */
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t k = 0; k < l; k++) {
			unsigned char c = p[i + k];
			if (dns_host_char(c))
				out[o++] = (char)c;
			else {
				*is_host = false;
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			}
		}
		i += l;
	}
	if (i != len) /* trailing octets in the RDATA */
		return -1;
	out[o] = '\0';
	return 0;
}

/* A target that is an address, or whose last label is numeric: no host name. */
static bool
dns_name_numeric(const char *name)
{
	const char *last = strrchr(name, '.');

	last = last ? last + 1 : name;
	return *last != '\0' && strspn(last, "0123456789") == strlen(last);
}

/* The outcome of one lookup. */
static enum dns_status
dns_sub_status(const struct dns_sub *s)
{
	const struct ub_result *r = s->res;

	if (s->timedout || s->err != 0 || r == NULL || r->bogus)
		return DNS_TEMPFAIL;
	switch (r->rcode) {
	case DNS_RCODE_NOERROR:
		return r->havedata ? DNS_OK : DNS_NODATA;
	case DNS_RCODE_NXDOMAIN:
		return DNS_NXDOMAIN;
	case DNS_RCODE_FORMERR:
	case DNS_RCODE_NOTIMP:
	case DNS_RCODE_REFUSED:
		return DNS_PERMFAIL;
	case DNS_RCODE_SERVFAIL:
	default:
		return DNS_TEMPFAIL;
	}
}

/* ub_process() calls this: file the answer, decode it later (see top). */
static void
dns_ub_cb(void *arg, int err, struct ub_result *res)
{
	struct dns_sub *s = arg;
	struct dns_query *q = s->q;

	s->pending = false;
	s->err = err;
	s->res = res;
	if (--q->npending == 0 && !q->ready) {
		q->ready = true;
		TAILQ_INSERT_TAIL(&q->d->ready, q, ready_entry);
	}
}

/* Start one lookup of the current stage; a failure to start is its answer. */
static void
dns_sub_start(struct dns_query *q, int rrtype, const char *name, size_t host)
{
	struct dns_sub *s;
	int r;

	if (q->nsubs >= DNS_SUB_MAX)
		fatalx("dns: too many lookups for one query");
	s = &q->sub[q->nsubs++];
	memset(s, 0, sizeof(*s));
	s->q = q;
	s->rrtype = rrtype;
	s->host = host;
	if (q->d->broken) {
		s->err = UB_PIPE;
		return;
	}
	r = ub_resolve_async(q->d->ctx, name, rrtype, DNS_CLASS_IN, s, dns_ub_cb, &s->id);
	if (r != 0) {
		log_warn("event=dns_error op=resolve name=%s error=\"%s\"", name, ub_strerror(r));
		s->err = r;
		return;
	}
	s->pending = true;
	q->npending++;
}

static void
dns_sub_cancel(struct dns_query *q, struct dns_sub *s)
{
	int r;

	if (!s->pending)
		return;
	if ((r = ub_cancel(q->d->ctx, s->id)) != 0)
		fatalx("dns: ub_cancel: %s", ub_strerror(r));
	s->pending = false;
	q->npending--;
}

/* Cancel what is outstanding, free the answers of the current stage. */
static void
dns_stage_clear(struct dns_query *q)
{
	for (size_t i = 0; i < q->nsubs; i++) {
		dns_sub_cancel(q, &q->sub[i]);
		if (q->sub[i].res != NULL)
			ub_resolve_free(q->sub[i].res);
		q->sub[i].res = NULL;
	}
	q->nsubs = 0;
	q->npending = 0;
}

static void
dns_stage_begin(struct dns_query *q, enum dns_stage stage)
{
	dns_stage_clear(q);
	q->stage = stage;
	evtimer_add(q->timer, &q->d->timeout);
}

static void
dns_query_log(const struct dns_query *q)
{
	enum dns_status st;
	size_t n;

	switch (q->kind) {
	case DNS_KIND_MX:
		st = q->mx->r.status;
		n = q->mx->r.nhosts;
		break;
	case DNS_KIND_ADDR:
		st = q->u.addr.r.status;
		n = q->u.addr.r.naddrs;
		break;
	case DNS_KIND_PTR:
		st = q->u.ptr.status;
		n = q->u.ptr.n;
		break;
	case DNS_KIND_TXT:
	default:
		st = q->u.txt.status;
		n = q->u.txt.n;
		break;
	}
	log_debug("event=dns_answer type=%s name=%s status=%s n=%zu", dns_kind_str(q->kind),
	          q->name, dns_status_str(st), n);
}

/* The result is complete: queue the callback. */
static void
dns_query_finish(struct dns_query *q)
{
	struct dns *d = q->d;

	dns_stage_clear(q);
	evtimer_del(q->timer);
	q->stage = DNS_STAGE_DONE;
	q->seq = ++d->seq;
	TAILQ_REMOVE(&d->running, q, entry);
	TAILQ_INSERT_TAIL(&d->done, q, entry);
	event_active(d->dispatch, EV_TIMEOUT, 0);
	dns_query_log(q);
}

/* Finish with nothing but a status. */
static void
dns_query_fail(struct dns_query *q, enum dns_status st)
{
	switch (q->kind) {
	case DNS_KIND_MX:
		memset(&q->mx->r, 0, sizeof(q->mx->r));
		q->mx->r.status = st;
		break;
	case DNS_KIND_ADDR:
		q->u.addr.r.status = st;
		q->u.addr.r.naddrs = 0;
		break;
	case DNS_KIND_TXT:
		q->u.txt.status = st;
		break;
	case DNS_KIND_PTR:
		q->u.ptr.status = st;
		q->u.ptr.n = 0;
		break;
	}
	dns_query_finish(q);
}

/* File an A or AAAA answer with the host's other addresses. */
static void
dns_addrs_add(struct dns_addrs *a, const struct dns_sub *s)
{
	enum dns_status st = dns_sub_status(s);
	size_t valid = 0;

	for (size_t i = 0; st == DNS_OK && s->res->data[i] != NULL; i++) {
		const void *p = s->res->data[i];
		int len = s->res->len[i];

		if (s->rrtype == DNS_TYPE_A && len == 4) {
			valid++;
			if (a->n4 < DNS_ADDR_MAX) {
				struct sockaddr_in *sin = &a->v4[a->n4++];
				sin->sin_family = AF_INET;
				memcpy(&sin->sin_addr, p, 4);
			}
		} else if (s->rrtype == DNS_TYPE_AAAA && len == 16) {
			valid++;
			if (a->n6 < DNS_ADDR_MAX) {
				struct sockaddr_in6 *sin6 = &a->v6[a->n6++];
				sin6->sin6_family = AF_INET6;
				memcpy(&sin6->sin6_addr, p, 16);
			}
		}
	}
	if (st == DNS_OK && valid == 0)
		st = DNS_TEMPFAIL; /* records, none usable: a broken server */
	if (s->rrtype == DNS_TYPE_A)
		a->st4 = st;
	else
		a->st6 = st;
}

/*
 * Merge a host's addresses, IPv6 and IPv4 alternating, and say what the
 * lookups came to: OK with an address, else TEMPFAIL if either failed,
 * PERMFAIL if either was refused, NXDOMAIN if both said so, else NODATA.
 */
static enum dns_status
dns_addrs_merge(const struct dns_addrs *a, struct sockaddr_storage out[DNS_ADDR_MAX], size_t *nout)
{
	size_t n = 0, i4 = 0, i6 = 0;

	while (n < DNS_ADDR_MAX && (i4 < a->n4 || i6 < a->n6)) {
		if (i6 < a->n6) {
			memset(&out[n], 0, sizeof(out[n]));
			memcpy(&out[n++], &a->v6[i6++], sizeof(a->v6[0]));
		}
		if (n < DNS_ADDR_MAX && i4 < a->n4) {
			memset(&out[n], 0, sizeof(out[n]));
			memcpy(&out[n++], &a->v4[i4++], sizeof(a->v4[0]));
		}
	}
	*nout = n;
	if (n > 0)
		return DNS_OK;
	if (a->st4 == DNS_TEMPFAIL || a->st6 == DNS_TEMPFAIL)
		return DNS_TEMPFAIL;
	if (a->st4 == DNS_PERMFAIL || a->st6 == DNS_PERMFAIL)
		return DNS_PERMFAIL;
	if (a->st4 == DNS_NXDOMAIN && a->st6 == DNS_NXDOMAIN)
		return DNS_NXDOMAIN;
	return DNS_NODATA;
}

/*
 * Keep rr among the DNS_MX_MAX best of best[0..*n): ordered by preference
 * then random key, each host once at its lowest preference.
 */
static void
dns_mx_keep(struct dns_mx_rr *best, size_t *n, const struct dns_mx_rr *rr)
{
	size_t pos;

	for (size_t i = 0; i < *n; i++) {
		if (!str_ieq(best[i].name, rr->name))
			continue;
		if (best[i].pref <= rr->pref)
			return;
		memmove(&best[i], &best[i + 1], (*n - i - 1) * sizeof(best[0]));
		(*n)--;
		break;
	}
	for (pos = 0; pos < *n; pos++)
		if (best[pos].pref > rr->pref ||
		    (best[pos].pref == rr->pref && best[pos].key > rr->key))
			break;
	if (pos >= DNS_MX_MAX)
		return;
	if (*n == DNS_MX_MAX)
		(*n)--;
	memmove(&best[pos + 1], &best[pos], (*n - pos) * sizeof(best[0]));
	best[pos] = *rr;
	(*n)++;
}

/* Start the address stage for the hosts of r that have a host name. */
static void
dns_mx_lookup_hosts(struct dns_query *q)
{
	struct dns_mx_result *r = &q->mx->r;

	dns_stage_begin(q, DNS_STAGE_ADDR);
	for (size_t i = 0; i < r->nhosts; i++) {
		if (r->host[i].addr_status != DNS_OK)
			continue;
		dns_sub_start(q, DNS_TYPE_A, r->host[i].name, i);
		dns_sub_start(q, DNS_TYPE_AAAA, r->host[i].name, i);
	}
}

/* The MX RRset is in: decode it, then look up the hosts' addresses. */
static void
dns_mx_on_mx(struct dns_query *q)
{
	const struct dns_sub *s = &q->sub[0];
	struct dns_mx_result *r = &q->mx->r;
	struct dns_mx_rr *best = NULL, rr;
	size_t nbest = 0, nrr = 0, nroot = 0;
	enum dns_status st = dns_sub_status(s);
	char qb[DNS_TEXT_MAX + 8];

	memset(r, 0, sizeof(*r));
	if (st == DNS_NODATA) {
		/*
		 * RFC 5321 5.1: the domain is its own, implicit, MX; an
		 * alias is processed as the name it stands for.
		 */
		r->implicit = true;
		r->nhosts = 1;
		if (s->res->canonname == NULL ||
		    !dns_name_check(s->res->canonname, r->host[0].name))
			str_copy(r->host[0].name, q->name, sizeof(r->host[0].name));
		dns_mx_lookup_hosts(q);
		return;
	}
	if (st != DNS_OK) {
		dns_query_fail(q, st);
		return;
	}

	best = xcalloc(DNS_MX_MAX, sizeof(*best));
	for (size_t i = 0; s->res->data[i] != NULL; i++) {
		const uint8_t *p = (const uint8_t *)s->res->data[i];
		int len = s->res->len[i];
		bool is_host;

		if (len < 3 || dns_name_from_wire(p + 2, (size_t)len - 2, rr.name, &is_host) == -1)
			continue; /* malformed */
		nrr++;
		rr.pref = (unsigned)p[0] << 8 | p[1];
		rr.key = arc4random();
		if (rr.name[0] == '\0') {
			nroot++; /* RFC 7505 null MX */
			continue;
		}
		rr.st = DNS_OK;
		if (!is_host || dns_name_numeric(rr.name)) {
			rr.st = DNS_PERMFAIL;
			log_warn("event=dns_bad_mx domain=%s target=%s", q->name,
			         log_quote(qb, sizeof(qb), rr.name, strlen(rr.name)));
		}
		dns_mx_keep(best, &nbest, &rr);
	}
	if (nrr == 0) {
		free(best);
		dns_query_fail(q, DNS_TEMPFAIL); /* records, none usable */
		return;
	}
	if (nroot == nrr) {
		free(best);
		r->null_mx = true;
		dns_query_finish(q);
		return;
	}
	if (nroot > 0)
		log_warn("event=dns_bad_mx domain=%s target=. reason=\"null MX among other MX\"",
		         q->name);
	for (size_t i = 0; i < nbest; i++) {
		struct dns_mx_host *h = &r->host[i];

		str_copy(h->name, best[i].name, sizeof(h->name));
		h->pref = best[i].pref;
		h->addr_status = best[i].st;
	}
	r->nhosts = nbest;
	free(best);
	dns_mx_lookup_hosts(q);
}

/* The hosts' addresses are in (or timed out). */
static void
dns_mx_on_addr(struct dns_query *q)
{
	struct dns_mx_result *r = &q->mx->r;

	memset(q->mx->addrs, 0, sizeof(q->mx->addrs));
	for (size_t i = 0; i < q->nsubs; i++)
		dns_addrs_add(&q->mx->addrs[q->sub[i].host], &q->sub[i]);
	for (size_t i = 0; i < r->nhosts; i++) {
		struct dns_mx_host *h = &r->host[i];

		if (h->addr_status == DNS_OK)
			h->addr_status = dns_addrs_merge(&q->mx->addrs[i], h->addr, &h->naddrs);
	}
	r->status = DNS_OK;
	if (r->implicit && r->host[0].addr_status != DNS_OK) {
		r->status = r->host[0].addr_status;
		r->implicit = false;
		r->nhosts = 0;
	}
	dns_query_finish(q);
}

/* The smallest TTL of the stage's answers; 0 when one is missing (not to be kept). */
static uint32_t
dns_stage_ttl(const struct dns_query *q)
{
	uint32_t ttl = UINT32_MAX;

	for (size_t i = 0; i < q->nsubs; i++) {
		const struct dns_sub *s = &q->sub[i];

		if (s->err || s->res == NULL || s->timedout || s->res->ttl <= 0)
			return 0;
		if ((uint32_t)s->res->ttl < ttl)
			ttl = (uint32_t)s->res->ttl;
	}
	return ttl == UINT32_MAX ? 0 : ttl;
}

static void
dns_addr_on_addr(struct dns_query *q)
{
	struct dns_addr_result *r = &q->u.addr.r;

	memset(&q->u.addr.a, 0, sizeof(q->u.addr.a));
	r->ttl = dns_stage_ttl(q);
	for (size_t i = 0; i < q->nsubs; i++)
		dns_addrs_add(&q->u.addr.a, &q->sub[i]);
	r->status = dns_addrs_merge(&q->u.addr.a, r->addr, &r->naddrs);
	dns_query_finish(q);
}

/* One TXT RDATA as a NUL-terminated string, or NULL if malformed or holding a NUL. */
static char *
dns_txt_decode(const uint8_t *p, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t i = 0, o = 0;

	while (i < len) {
		size_t l = p[i++];
		if (l > len - i || memchr(p + i, '\0', l) != NULL) {
			free(out);
			return NULL;
		}
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return out;
}

static void
dns_txt_on_txt(struct dns_query *q)
{
	const struct dns_sub *s = &q->sub[0];
	struct dns_txt_result *r = &q->u.txt;
	char *t;

	r->status = dns_sub_status(s);
	r->ttl = dns_stage_ttl(q);
	for (size_t i = 0; r->status == DNS_OK && s->res->data[i] != NULL; i++) {
		if (r->n == DNS_TXT_MAX) {
			r->truncated = true;
			break;
		}
		t = dns_txt_decode((const uint8_t *)s->res->data[i], (size_t)s->res->len[i]);
		if (t != NULL)
			r->txt[r->n++] = t;
	}
	dns_query_finish(q);
}

/* PTR targets: host names only (RFC 1035 3.3.12); others are skipped. */
static void
dns_ptr_on_ptr(struct dns_query *q)
{
	const struct dns_sub *s = &q->sub[0];
	struct dns_ptr_result *r = &q->u.ptr;
	char name[DNS_TEXT_MAX];
	bool is_host;

	r->status = dns_sub_status(s);
	r->ttl = dns_stage_ttl(q);
	for (size_t i = 0; r->status == DNS_OK && s->res->data[i] != NULL && r->n < DNS_PTR_MAX;
	     i++) {
		if (dns_name_from_wire((const uint8_t *)s->res->data[i], (size_t)s->res->len[i],
		                       name, &is_host) == -1 ||
		    !is_host || name[0] == '\0' || strlen(name) > DNS_NAME_MAX)
			continue;
		str_copy(r->name[r->n++], name, sizeof(r->name[0]));
	}
	dns_query_finish(q);
}

/* Decode finished stages until the query waits for answers again or is done. */
static void
dns_query_advance(struct dns_query *q)
{
	while (q->npending == 0) {
		switch (q->stage) {
		case DNS_STAGE_MX:
			dns_mx_on_mx(q);
			break;
		case DNS_STAGE_ADDR:
			if (q->kind == DNS_KIND_MX)
				dns_mx_on_addr(q);
			else
				dns_addr_on_addr(q);
			break;
		case DNS_STAGE_TXT:
			dns_txt_on_txt(q);
			break;
		case DNS_STAGE_PTR:
			dns_ptr_on_ptr(q);
			break;
		case DNS_STAGE_DONE:
			return;
		}
	}
}

/* A stage ran out of time: what has not come counts as TEMPFAIL. */
static void
dns_on_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct dns_query *q = arg;

	for (size_t i = 0; i < q->nsubs; i++) {
		struct dns_sub *s = &q->sub[i];

		if (!s->pending)
			continue;
		dns_sub_cancel(q, s);
		s->timedout = true;
		log_debug("event=dns_timeout type=%s name=%s host=%s rrtype=%d",
		          dns_kind_str(q->kind), q->name,
		          q->kind == DNS_KIND_MX && q->stage == DNS_STAGE_ADDR
		                  ? q->mx->r.host[s->host].name
		                  : q->name,
		          s->rrtype);
	}
	dns_query_advance(q);
}

/* ub_fd() is readable: collect answers, then advance the queries they finish. */
static void
dns_on_readable(evutil_socket_t fd, short events, void *arg)
{
	struct dns *d = arg;
	struct dns_query *q;
	int r;

	if ((r = ub_process(d->ctx)) != 0) {
		/* the resolver thread is gone: stop polling, let timers fail what is left */
		log_error("event=dns_error op=process error=\"%s\"", ub_strerror(r));
		event_del(d->ub_ev);
		d->broken = true;
	}
	while ((q = TAILQ_FIRST(&d->ready)) != NULL) {
		TAILQ_REMOVE(&d->ready, q, ready_entry);
		q->ready = false;
		dns_query_advance(q);
	}
}

/* Free a query taken off its list, cancelling its outstanding lookups. */
static void
dns_query_free(struct dns_query *q)
{
	dns_stage_clear(q);
	event_free(q->timer);
	if (q->kind == DNS_KIND_TXT)
		for (size_t i = 0; i < q->u.txt.n; i++)
			free(q->u.txt.txt[i]);
	free(q->mx);
	free(q);
}

static void
dns_destroy(struct dns *d)
{
	event_free(d->ub_ev);
	event_free(d->dispatch);
	ub_ctx_delete(d->ctx);
	free(d);
}

static void
dns_query_call(struct dns_query *q)
{
	switch (q->kind) {
	case DNS_KIND_MX:
		q->cb.mx(q->arg, &q->mx->r);
		break;
	case DNS_KIND_ADDR:
		q->cb.addr(q->arg, &q->u.addr.r);
		break;
	case DNS_KIND_TXT:
		q->cb.txt(q->arg, &q->u.txt);
		break;
	case DNS_KIND_PTR:
		q->cb.ptr(q->arg, &q->u.ptr);
		break;
	}
}

/*
 * Run the callbacks of the queries done so far; those that finish while
 * this runs wait for the next round, so a callback that starts a query
 * failing at once cannot keep the loop here.
 */
static void
dns_on_dispatch(evutil_socket_t fd, short events, void *arg)
{
	struct dns *d = arg;
	struct dns_query *q;
	uint64_t last = d->seq;

	d->dispatching = true;
	while (!d->dying && (q = TAILQ_FIRST(&d->done)) != NULL && q->seq <= last) {
		TAILQ_REMOVE(&d->done, q, entry);
		q->calling = true;
		dns_query_call(q); /* may cancel others, start queries, dns_free(d) */
		dns_query_free(q);
	}
	d->dispatching = false;
	if (d->dying)
		dns_destroy(d);
	else if (!TAILQ_EMPTY(&d->done))
		event_active(d->dispatch, EV_TIMEOUT, 0);
}

/* Check "IP[@PORT]" before libunbound sees it. */
static bool
dns_upstream_check(const char *s)
{
	char ip[INET6_ADDRSTRLEN];
	const char *at = strchr(s, '@');
	size_t iplen = at ? (size_t)(at - s) : strlen(s);
	struct in6_addr a6;
	uint64_t port;

	if (iplen == 0 || iplen >= sizeof(ip))
		return false;
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, &a6) != 1 && inet_pton(AF_INET6, ip, &a6) != 1)
		return false;
	if (at != NULL && (parse_u64(at + 1, strlen(at + 1), 65535, &port) == -1 || port == 0))
		return false;
	return true;
}

struct dns *
dns_new(struct event_base *base, const char *upstream, unsigned timeout_ms, char *err,
        size_t errsize)
{
	struct dns *d = xcalloc(1, sizeof(*d));
	int r, fd;

	d->base = base;
	TAILQ_INIT(&d->running);
	TAILQ_INIT(&d->done);
	TAILQ_INIT(&d->ready);
	if (timeout_ms == 0) {
		snprintf(err, errsize, "DNS timeout must be positive");
		goto fail;
	}
	d->timeout.tv_sec = timeout_ms / 1000;
	d->timeout.tv_usec = (timeout_ms % 1000) * 1000;
	if (upstream != NULL && !dns_upstream_check(upstream)) {
		snprintf(err, errsize, "DNS server \"%s\": want IP or IP@PORT", upstream);
		goto fail;
	}
	if ((d->ctx = ub_ctx_create()) == NULL) {
		snprintf(err, errsize, "ub_ctx_create failed");
		goto fail;
	}
	/*
	 * A thread, not a forked process; loopback servers are fine (a
	 * local resolver, or a test's); the reverse zones of private
	 * addresses are the upstream's to answer (a site's resolver knows
	 * its relays' PTRs), not libunbound's default local NXDOMAIN.
	 */
	if ((r = ub_ctx_async(d->ctx, 1)) != 0 ||
	    (r = ub_ctx_set_option(d->ctx, "do-not-query-localhost:", "no")) != 0 ||
	    (r = ub_ctx_set_option(d->ctx, "unblock-lan-zones:", "yes")) != 0) {
		snprintf(err, errsize, "libunbound setup: %s", ub_strerror(r));
		goto fail;
	}
	if (upstream == NULL) {
		if ((r = ub_ctx_resolvconf(d->ctx, NULL)) != 0) {
			snprintf(err, errsize, "/etc/resolv.conf: %s", ub_strerror(r));
			goto fail;
		}
	} else if ((r = ub_ctx_set_fwd(d->ctx, upstream)) != 0) {
		snprintf(err, errsize, "DNS server \"%s\": %s", upstream, ub_strerror(r));
		goto fail;
	}
	if ((fd = ub_fd(d->ctx)) == -1) {
		snprintf(err, errsize, "ub_fd failed");
		goto fail;
	}
	d->ub_ev = event_new(base, fd, EV_READ | EV_PERSIST, dns_on_readable, d);
	d->dispatch = event_new(base, -1, 0, dns_on_dispatch, d);
	if (d->ub_ev == NULL || d->dispatch == NULL || event_add(d->ub_ev, NULL) == -1) {
		snprintf(err, errsize, "libevent: cannot watch the resolver");
		goto fail;
	}
	return d;

fail:
	if (d->ub_ev != NULL)
		event_free(d->ub_ev);
	if (d->dispatch != NULL)
		event_free(d->dispatch);
	if (d->ctx != NULL)
		ub_ctx_delete(d->ctx);
	free(d);
	return NULL;
}

void
dns_free(struct dns *d)
{
	struct dns_query *q;

	if (d == NULL)
		return;
	while ((q = TAILQ_FIRST(&d->running)) != NULL)
		dns_cancel(q);
	while ((q = TAILQ_FIRST(&d->done)) != NULL)
		dns_cancel(q);
	if (d->dispatching) {
		d->dying = true; /* dns_on_dispatch() finishes the job */
		return;
	}
	dns_destroy(d);
}

/* A new query, running; a bad name fails it (the callback comes later). */
static struct dns_query *
dns_query_new(struct dns *d, enum dns_kind kind, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->d = d;
	q->kind = kind;
	q->arg = arg;
	if (kind == DNS_KIND_MX)
		q->mx = xcalloc(1, sizeof(*q->mx));
	if ((q->timer = evtimer_new(d->base, dns_on_timeout, q)) == NULL)
		fatal("dns: evtimer_new");
	TAILQ_INSERT_TAIL(&d->running, q, entry);
	return q;
}

/* Start the first stage, or fail on a bad name. */
static struct dns_query *
dns_query_start(struct dns_query *q, const char *name)
{
	char qb[DNS_NAME_MAX + 8];

	if (!dns_name_check(name, q->name)) {
		log_debug("event=dns_bad_name type=%s name=%s", dns_kind_str(q->kind),
		          log_quote(qb, sizeof(qb), name, strnlen(name, DNS_NAME_MAX + 1)));
		str_copy(q->name, "-", sizeof(q->name));
		dns_query_fail(q, DNS_PERMFAIL);
		return q;
	}
	switch (q->kind) {
	case DNS_KIND_MX:
		dns_stage_begin(q, DNS_STAGE_MX);
		dns_sub_start(q, DNS_TYPE_MX, q->name, 0);
		break;
	case DNS_KIND_ADDR:
		dns_stage_begin(q, DNS_STAGE_ADDR);
		if (q->family != AF_INET6)
			dns_sub_start(q, DNS_TYPE_A, q->name, 0);
		if (q->family != AF_INET)
			dns_sub_start(q, DNS_TYPE_AAAA, q->name, 0);
		break;
	case DNS_KIND_PTR:
		dns_stage_begin(q, DNS_STAGE_PTR);
		dns_sub_start(q, DNS_TYPE_PTR, q->name, 0);
		break;
	case DNS_KIND_TXT:
		dns_stage_begin(q, DNS_STAGE_TXT);
		dns_sub_start(q, DNS_TYPE_TXT, q->name, 0);
		break;
	}
	dns_query_advance(q); /* when every lookup failed to start */
	return q;
}

struct dns_query *
dns_mx(struct dns *d, const char *domain, dns_mx_fn cb, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_KIND_MX, arg);

	q->cb.mx = cb;
	return dns_query_start(q, domain);
}

struct dns_query *
dns_addr(struct dns *d, const char *name, dns_addr_fn cb, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_KIND_ADDR, arg);

	q->cb.addr = cb;
	return dns_query_start(q, name);
}

struct dns_query *
dns_addr_family(struct dns *d, const char *name, int family, dns_addr_fn cb, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_KIND_ADDR, arg);

	q->cb.addr = cb;
	q->family = family == AF_INET || family == AF_INET6 ? family : AF_UNSPEC;
	return dns_query_start(q, name);
}

/* The reverse name of an address: d.c.b.a.in-addr.arpa or 32 nibbles.ip6.arpa. */
static bool
dns_ptr_name(const char *ip, char *out, size_t size)
{
	unsigned char a[16];
	size_t o = 0;

	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(out, size, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
		return true;
	}
	if (inet_pton(AF_INET6, ip, a) != 1 || size < 64 + 9)
		return false;
	for (int i = 15; i >= 0; i--) {
		static const char hex[] = "0123456789abcdef";

		out[o++] = hex[a[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[a[i] >> 4];
		out[o++] = '.';
	}
	memcpy(out + o, "ip6.arpa", 9);
	return true;
}

struct dns_query *
dns_ptr(struct dns *d, const char *ip, dns_ptr_fn cb, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_KIND_PTR, arg);
	char name[DNS_NAME_MAX + 1];

	q->cb.ptr = cb;
	if (!dns_ptr_name(ip, name, sizeof(name)))
		name[0] = '\0'; /* fails the name check: PERMFAIL */
	return dns_query_start(q, name);
}

struct dns_query *
dns_txt(struct dns *d, const char *name, dns_txt_fn cb, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_KIND_TXT, arg);

	q->cb.txt = cb;
	return dns_query_start(q, name);
}

void
dns_cancel(struct dns_query *q)
{
	struct dns *d;

	if (q == NULL || q->calling)
		return;
	d = q->d;
	if (q->ready)
		TAILQ_REMOVE(&d->ready, q, ready_entry);
	if (q->stage == DNS_STAGE_DONE)
		TAILQ_REMOVE(&d->done, q, entry);
	else
		TAILQ_REMOVE(&d->running, q, entry);
	dns_query_free(q);
}
