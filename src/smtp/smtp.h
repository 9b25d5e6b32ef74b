/*
 * smtp.h - moat's inbound SMTP server: listeners, connection limits and
 * the set of live sessions (one state machine each, smtp_session.c).
 */
#ifndef MOAT_SMTP_H
#define MOAT_SMTP_H

#include <stddef.h>

struct event_base;
struct config;
struct policy;
struct spool;
struct smtp_server;

/* pol may be NULL until smtp_server_set_policy() (the store opens after binding). */
struct smtp_server *smtp_server_new(struct event_base *base, struct config *cfg,
                                    struct policy *pol);
/* The policy, before accepting (later changes go through smtp_server_reload()). */
void smtp_server_set_policy(struct smtp_server *srv, struct policy *pol);
/* The spool, opened after privileges are dropped, before accepting. */
void smtp_server_set_spool(struct smtp_server *srv, struct spool *spool);
struct scan_pool;
/* The scan workers (NULL: messages are committed unscanned, as with scan = no). */
void smtp_server_set_scan(struct smtp_server *srv, struct scan_pool *pool);
struct store_writer;
/* Where messages are tracked (NULL: nowhere). */
void smtp_server_set_store(struct smtp_server *srv, struct store_writer *w);
/* Bind every smtp_listen address (before privileges are dropped). */
int smtp_server_listen(struct smtp_server *srv, char *err, size_t errsize);
/* Load the TLS certificate (after binding, before accepting). */
int smtp_server_tls_load(struct smtp_server *srv, char *err, size_t errsize);
/* Start accepting connections. */
void smtp_server_enable(struct smtp_server *srv);
/*
 * SIGHUP: new sessions use cfg and pol; the TLS certificate is reloaded
 * (on failure the old one stays and -1 is returned with err). Live
 * sessions keep what they started with.
 */
int smtp_server_reload(struct smtp_server *srv, struct config *cfg, struct policy *pol, char *err,
                       size_t errsize);
/*
 * SIGTERM: stop accepting, say 421 to idle sessions, let transactions in
 * progress finish for up to smtp_shutdown_timeout, then close the rest.
 * done(arg) runs once no session is left.
 */
void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *arg), void *arg);
void smtp_server_free(struct smtp_server *srv);

#endif
