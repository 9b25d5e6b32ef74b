/*
 * smtp.c - the SMTP manager: listeners, connection limits per client
 * address and in total (421 4.7.0, RFC 5321 4.2.3), reload and shutdown.
 * Each accepted connection becomes a session (smtp_session.c).
 */
#include "smtp_internal.h"
#include "smtp_tls.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/stats.h"
#include "../common/util.h"
#include "../policy/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SMTP_ACCEPT_PAUSE_MS 250 /* after EMFILE/ENFILE/ENOBUFS/ENOMEM */

struct smtp_server *
smtp_server_new(struct event_base *base, struct config *cfg, struct policy *pol)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->pol = pol ? policy_ref(pol) : NULL;
	TAILQ_INIT(&srv->sessions);
	return srv;
}

void
smtp_server_set_policy(struct smtp_server *srv, struct policy *pol)
{
	policy_unref(srv->pol);
	srv->pol = policy_ref(pol);
}

void
smtp_server_set_spool(struct smtp_server *srv, struct spool *spool)
{
	srv->spool = spool;
}

void
smtp_server_set_scan(struct smtp_server *srv, struct scan_pool *pool)
{
	srv->scan = pool;
}

void
smtp_server_set_store(struct smtp_server *srv, struct store_writer *w)
{
	srv->store = w;
}

static void smtp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg);

static void
smtp_listeners_enable(struct smtp_server *srv, bool on)
{
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (on)
			evconnlistener_enable(srv->listeners[i].lev);
		else
			evconnlistener_disable(srv->listeners[i].lev);
	}
}

static void
smtp_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;

	srv->accept_paused = false;
	if (!srv->shutting_down)
		smtp_listeners_enable(srv, true);
}

/*
 * accept() failed. Out of descriptors or memory, the pending connection
 * stays in the backlog and the listener stays readable: without a pause
 * the loop would spin on it. Stop accepting for SMTP_ACCEPT_PAUSE_MS (or
 * until a session ends and frees a descriptor), say so once.
 */
static void
smtp_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct smtp_server *srv = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, SMTP_ACCEPT_PAUSE_MS * 1000};

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_warn("event=accept_error reason=\"%s\"", evutil_socket_error_to_string(e));
		return;
	}
	if (srv->accept_paused)
		return;
	srv->accept_paused = true;
	smtp_listeners_enable(srv, false);
	srv->accept_pauses++;
	if (srv->accept_logged_ms == 0 || clock_ms() - srv->accept_logged_ms >= 10000) {
		log_warn("event=accept_paused reason=\"%s\" sessions=%u pause_ms=%d pauses=%llu",
		         evutil_socket_error_to_string(e), srv->nsessions, SMTP_ACCEPT_PAUSE_MS,
		         (unsigned long long)srv->accept_pauses);
		srv->accept_logged_ms = clock_ms();
	}
	if (srv->accept_timer == NULL)
		srv->accept_timer = evtimer_new(srv->base, smtp_accept_resume_cb, srv);
	evtimer_add(srv->accept_timer, &tv);
}

int
smtp_server_listen(struct smtp_server *srv, char *err, size_t errsize)
{
	const struct config_listen_list *l = &srv->cfg->smtp_listen;

	for (size_t i = 0; i < l->n && i < nitems(srv->listeners); i++) {
		const struct config_listen *a = &l->addr[i];
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
		                 LEV_OPT_DISABLED;
		struct evconnlistener *lev;

		if (a->ss.ss_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		lev = evconnlistener_new_bind(srv->base, smtp_accept_cb, srv, flags, 511,
		                              (const struct sockaddr *)&a->ss, (int)a->len);
		if (lev == NULL) {
			snprintf(err, errsize, "smtp_listen %s: %s", a->text, strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(lev, smtp_accept_error_cb);
		srv->listeners[srv->nlisteners].lev = lev;
		str_copy(srv->listeners[srv->nlisteners].text, a->text,
		         sizeof(srv->listeners[0].text));
		srv->nlisteners++;
		log_info("event=listen proto=smtp addr=%s", a->text);
	}
	return 0;
}

int
smtp_server_tls_load(struct smtp_server *srv, char *err, size_t errsize)
{
	SSL_CTX *ctx = smtp_tls_ctx_new(srv->cfg, err, errsize);

	if (ctx == NULL && err[0] != '\0')
		return -1;
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	srv->tls = ctx;
	return 0;
}

void
smtp_server_enable(struct smtp_server *srv)
{
	smtp_listeners_enable(srv, true);
}

int
smtp_server_reload(struct smtp_server *srv, struct config *cfg, struct policy *pol, char *err,
                   size_t errsize)
{
	SSL_CTX *ctx = smtp_tls_ctx_new(cfg, err, errsize);
	const struct config_listen_list *a = &srv->cfg->smtp_listen, *b = &cfg->smtp_listen;
	bool same = a->n == b->n;

	for (size_t i = 0; same && i < a->n; i++)
		same = a->addr[i].len == b->addr[i].len &&
		       memcmp(&a->addr[i].ss, &b->addr[i].ss, a->addr[i].len) == 0;
	if (!same)
		log_warn("event=reload warning=\"smtp_listen changed; restart moatd to apply it\"");
	if (ctx == NULL && err[0] != '\0')
		return -1;
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	srv->tls = ctx;
	config_unref(srv->cfg);
	policy_unref(srv->pol);
	srv->cfg = config_ref(cfg);
	srv->pol = policy_ref(pol);
	return 0;
}

/* --- per-address session counts --- */

static void
smtp_ip_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	}
}

static struct smtp_ip_count **
smtp_ip_slot(struct smtp_server *srv, const unsigned char key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	struct smtp_ip_count **pp;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	for (pp = &srv->ip_counts[h % SMTP_IP_BUCKETS]; *pp; pp = &(*pp)->next)
		if (memcmp((*pp)->key, key, 16) == 0)
			break;
	return pp;
}

static unsigned
smtp_ip_get(struct smtp_server *srv, const unsigned char key[16])
{
	struct smtp_ip_count **pp = smtp_ip_slot(srv, key);

	return *pp ? (*pp)->count : 0;
}

static void
smtp_ip_add(struct smtp_server *srv, const unsigned char key[16], int delta)
{
	struct smtp_ip_count **pp = smtp_ip_slot(srv, key);

	if (*pp == NULL) {
		if (delta <= 0)
			return;
		*pp = xcalloc(1, sizeof(**pp));
		memcpy((*pp)->key, key, 16);
	}
	(*pp)->count = (unsigned)((int)(*pp)->count + delta);
	if ((*pp)->count == 0) {
		struct smtp_ip_count *dead = *pp;
		*pp = dead->next;
		free(dead);
	}
}

static void
smtp_refuse(int fd, const char *addr, const char *why)
{
	static const char msg[] = "421 4.7.0 Too many connections, try again later\r\n";
	ssize_t n;

	/* Best effort, non-blocking: a client that does not read gets nothing. */
	stats_inc(smtp_refused_connections);
	n = write(fd, msg, sizeof(msg) - 1);
	(void)n;
	close(fd);
	log_warn("event=refused client=%s reason=%s", addr, why);
}

static void
smtp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
               void *arg)
{
	struct smtp_server *srv = arg;
	const struct config *c = srv->cfg;
	unsigned char key[16];
	char addr[INET6_ADDRSTRLEN] = "?";

	if (srv->shutting_down) {
		close(fd);
		return;
	}
	smtp_ip_key(sa, key);
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	if (srv->nsessions >= c->smtp_max_sessions) {
		smtp_refuse(fd, addr, "smtp_max_sessions");
		return;
	}
	if (smtp_ip_get(srv, key) >= c->smtp_max_sessions_per_ip) {
		smtp_refuse(fd, addr, "smtp_max_sessions_per_ip");
		return;
	}
	smtp_ip_add(srv, key, 1);
	srv->nsessions++;
	stats_inc(smtp_connections);
	smtp_session_new(srv, fd, sa);
}

static void
smtp_shutdown_check(struct smtp_server *srv)
{
	if (srv->shutting_down && srv->nsessions == 0 && srv->shutdown_done) {
		void (*done)(void *) = srv->shutdown_done;
		srv->shutdown_done = NULL;
		done(srv->shutdown_arg);
	}
}

void
smtp_server_session_gone(struct smtp_server *srv, struct smtp_session *s)
{
	smtp_ip_add(srv, s->ipkey, -1);
	srv->nsessions--;
	if (srv->accept_paused) {
		/* A descriptor is free again: try accepting now. */
		evtimer_del(srv->accept_timer);
		smtp_accept_resume_cb(-1, 0, srv);
	}
	smtp_shutdown_check(srv);
}

static void
smtp_shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	struct smtp_session *s, *next;

	log_warn("event=shutdown_timeout sessions=%u action=close", srv->nsessions);
	for (s = TAILQ_FIRST(&srv->sessions); s; s = next) {
		next = TAILQ_NEXT(s, entry);
		/* A message with the spool is moments from its 250: let it have it
		 * (its session then says 421), rather than cause a duplicate. */
		if (s->committing)
			continue;
		/* a scan is not: no 250 was given, the client will try again */
		smtp_session_close(s, "shutdown timeout");
	}
}

void
smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *arg), void *arg)
{
	struct smtp_session *s, *next;
	struct timeval tv;

	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv->shutdown_done = done;
	srv->shutdown_arg = arg;
	smtp_listeners_enable(srv, false);
	log_info("event=shutdown sessions=%u timeout_ms=%llu", srv->nsessions,
	         (unsigned long long)srv->cfg->smtp_shutdown_timeout);
	for (s = TAILQ_FIRST(&srv->sessions); s; s = next) {
		next = TAILQ_NEXT(s, entry);
		smtp_session_shutdown(s);
	}
	tv.tv_sec = (time_t)(srv->cfg->smtp_shutdown_timeout / 1000);
	tv.tv_usec = (suseconds_t)(srv->cfg->smtp_shutdown_timeout % 1000) * 1000;
	srv->shutdown_timer = evtimer_new(srv->base, smtp_shutdown_timeout_cb, srv);
	evtimer_add(srv->shutdown_timer, &tv);
	smtp_shutdown_check(srv);
}

void
smtp_server_free(struct smtp_server *srv)
{
	struct smtp_session *s;

	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		smtp_session_close(s, "server stopped");
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i].lev);
	if (srv->shutdown_timer)
		event_free(srv->shutdown_timer);
	if (srv->accept_timer)
		event_free(srv->accept_timer);
	for (size_t i = 0; i < SMTP_IP_BUCKETS; i++) {
		while (srv->ip_counts[i]) {
			struct smtp_ip_count *n = srv->ip_counts[i]->next;
			free(srv->ip_counts[i]);
			srv->ip_counts[i] = n;
		}
	}
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	config_unref(srv->cfg);
	policy_unref(srv->pol);
	free(srv);
}
