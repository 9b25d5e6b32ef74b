/*
 * delivery.h - hands queued messages to their routes.
 *
 * One delivery thread takes queue ids (from commits and from recovery at
 * start), opens each queue file, delivers every recipient along the route
 * of its domain, and removes the file once all recipients have it. A
 * message that cannot be delivered now is retried later; recipients that
 * already have it are remembered and not delivered again (until a
 * restart: delivery is at-least-once, see docs/ARCHITECTURE.md).
 *
 * Routes today: maildir (delivery_maildir.c). SMTP routes arrive with the
 * delivery engine.
 */
#ifndef MOAT_DELIVERY_H
#define MOAT_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>

struct delivery;
struct policy;
struct spool;

struct delivery *delivery_new(struct spool *spool, const char *data_dir, const char *hostname,
                              struct policy *pol, bool paused, uint64_t retry_ms);
int delivery_start(struct delivery *d);
/* Queue a message id (any thread). */
void delivery_enqueue(struct delivery *d, const char *id);
/* New policy for messages from now on (SIGHUP). */
void delivery_set_policy(struct delivery *d, struct policy *pol, bool paused);
/* Finish the message in hand and stop; what is left stays in the spool. */
void delivery_stop(struct delivery *d);
void delivery_free(struct delivery *d);

#endif
