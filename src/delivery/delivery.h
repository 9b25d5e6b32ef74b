/*
 * delivery.h - the delivery engine: from the queue to every recipient's
 * downstream.
 *
 * One thread with its own event loop owns the in-memory queue: every
 * committed message (from the SMTP front door, from recovery at start,
 * from moat's own delivery reports), each recipient's state, the
 * destinations (a route, or an MX domain) with their waiting work and
 * their SMTP connections (mta_session.c), and the retry timers.
 *
 * Outcomes: 2xx delivered, 5xx failed, 4xx and connection trouble retried
 * with exponential backoff (delivery_retry_min doubling up to
 * delivery_retry_max) until delivery_queue_lifetime, then failed with
 * 4.4.7. Final outcomes are appended to the queue file (spool_mark) when
 * all of a message's transactions of a round are back, so that a restart
 * neither repeats nor forgets them; a
 * message whose recipients are all final produces at most one delivery
 * report (RFC 3464, dsn.c; never to the null sender) and leaves the queue.
 * Delivery is at-least-once: a crash between a downstream's 250 and the
 * record of it delivers that recipient again.
 */
#ifndef MOAT_DELIVERY_H
#define MOAT_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct delivery;
struct policy;
struct spool;

struct delivery *delivery_new(struct spool *spool, struct config *cfg, struct policy *pol);
struct scan_env;
/*
 * Stamp scanned mail with the relay key of each recipient's protected
 * domain (relay_key_header), per transaction, so that no tenant sees
 * another's key. Before delivery_start().
 */
void delivery_set_scan_env(struct delivery *d, const struct scan_env *env);
struct store_writer;
/* Tell the store every recipient's outcome (delivered, deferred, bounced). Before delivery_start().
 */
void delivery_set_store(struct delivery *d, struct store_writer *w);
/* Serve the control socket (moatctl) at path on the delivery loop. */
int delivery_control_open(struct delivery *d, const char *path, char *err, size_t errsize);
struct control;
/* The control socket's commands, for control_call() from another thread (the admin API). */
struct control *delivery_control(struct delivery *d);
int delivery_start(struct delivery *d);
/* Queue a committed message (any thread). */
void delivery_enqueue(struct delivery *d, const char *id);
/* New configuration and policy from now on (SIGHUP; any thread). */
void delivery_reconfigure(struct delivery *d, struct config *cfg, struct policy *pol);
/* Stop: connections are dropped, what is not delivered stays in the spool. */
void delivery_stop(struct delivery *d);
void delivery_free(struct delivery *d);

#endif
