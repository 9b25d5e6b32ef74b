/*
 * store_writer.h - message tracking and quarantine records written off
 * the mail path: the SMTP loop and the delivery thread hand events to a
 * thread that owns its own store connection and writes them in batches.
 *
 * Mail never waits for the store. The queue is bounded: when the store
 * cannot keep up (or fails), events past STORE_WRITER_QUEUE_MAX are
 * dropped, counted and logged; tracking is then incomplete, mail is not
 * affected. Quarantine records are written the same way; a message in
 * quarantine/ whose record was lost is still on disk, and findable there
 * by its id.
 */
#ifndef MOAT_STORE_WRITER_H
#define MOAT_STORE_WRITER_H

#include <stdint.h>

#include "store.h"

struct store_writer;

#define STORE_WRITER_QUEUE_MAX 100000 /* events waiting; more are dropped */

/* Open url (as store_open) on the writer's thread; NULL with err. */
struct store_writer *store_writer_start(const char *url, char *err, size_t errsize);
/* Write what is queued, then stop and close. */
void store_writer_stop(struct store_writer *w);

/*
 * A message moat saw and its verdict (STORE_V_NONE when not scanned);
 * quar: its quarantine record when it was held, else NULL. Everything is
 * copied; any thread.
 */
void store_writer_message(struct store_writer *w, const struct store_track_in *in,
                          enum store_verdict v, double score, const char *symbols,
                          const char *reason, const struct store_quar_in *quar);
/* An outcome for one recipient; any thread. */
void store_writer_delivery(struct store_writer *w, const char *id, const char *rcpt,
                           enum store_outcome o, const char *reply, int64_t time_ms);
/* Events dropped so far (queue full or store errors). */
uint64_t store_writer_dropped(const struct store_writer *w);

#endif
