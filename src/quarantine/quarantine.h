/*
 * quarantine.h - what is done to a held message: release it to all or
 * chosen recipients through the delivery engine, delete it, expire it
 * when its retention ends, and bring quarantine/ and the store back into
 * agreement after a restart.
 *
 * The store decides (store_quarantine_set_state() is the one atomic gate:
 * of two concurrent releases of one message exactly one goes on), the
 * spool moves the file (quarantine/<id> becomes queue/<id> under the same
 * id, so tracking follows it), delivery sends it. A release runs the
 * malware check again unless told not to, and delivers with moat's header
 * section of the release: X-Moat-Released, X-Moat-Verdict, and the relay
 * key delivery stamps per transaction, so Exchange's bypass rule lets it
 * through.
 *
 * Crash safety: the state is changed first, then queue/<id> is written
 * and synced, then quarantine/<id> is removed. quarantine_reconcile() at
 * start finishes what a crash interrupted: a released entry whose
 * queue/<id> exists loses its quarantine copy; one whose queue file was
 * never written is held again (its chosen recipients were not durable)
 * and the audit log says so; deleted and expired entries lose their file;
 * a file whose record the store never got is recorded.
 *
 * Calls are synchronous (file syncs, a clamd rescan) and use the caller's
 * store connection: run them on a thread that may wait (the admin API's),
 * never on the SMTP loop. Every change of state is written to the audit
 * log with the actor.
 */
#ifndef MOAT_QUARANTINE_H
#define MOAT_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct delivery;
struct policy;
struct scan_env;
struct spool;
struct store;

#define QUARANTINE_READ_MAX (64u << 20) /* quarantine_read(): larger messages are refused */

struct quarantine_ctx {
	struct store *store; /* the calling thread's own connection */
	struct spool *spool;
	struct delivery *delivery;       /* released messages are enqueued here */
	const struct scan_env *scan_env; /* the malware rescan */
	const struct config *cfg;        /* the caller holds references to both */
	const struct policy *pol;
};

enum quarantine_status {
	QUAR_OK,
	QUAR_NOT_FOUND, /* no such entry */
	QUAR_ALREADY,   /* already in the asked state: nothing done */
	QUAR_CONFLICT,  /* in another final state (released, deleted, expired) */
	QUAR_INVALID,   /* a recipient the message does not have, a malformed id */
	QUAR_MALWARE,   /* the rescan found malware: nothing released */
	QUAR_TEMPFAIL,  /* the rescan could not run (clamd down): try again later */
	QUAR_GONE,      /* the store has the entry but its file is missing */
	QUAR_ERROR,     /* the store or the disk failed */
};
const char *quarantine_status_str(enum quarantine_status st);
/* The HTTP status for the admin API: 200, 404, 409, 409, 400, 409, 503, 410, 500. */
int quarantine_status_http(enum quarantine_status st);

/* Who acts: "user:NAME", "token:ID", "system"; addr the client's address or "". */
struct quarantine_actor {
	const char *who;
	const char *addr;
};

struct quarantine_release_req {
	const char *id;
	const char *const *rcpts; /* a subset of the message's recipients */
	size_t nrcpts;            /* 0: all of them */
	bool rescan;              /* malware check again first (the default) */
};

/*
 * Release: msg (may be NULL) gets one line for the administrator
 * ("released to 2 recipients", "malware found: Eicar-Signature").
 */
enum quarantine_status quarantine_release(const struct quarantine_ctx *q,
                                          const struct quarantine_release_req *r,
                                          const struct quarantine_actor *by, char *msg,
                                          size_t msgsize);
/*
 * Several releases sharing their syncs: the states change in one store
 * transaction and the queue files are synced together (in chunks of at
 * most QUARANTINE_BATCH_MAX messages or about QUARANTINE_BATCH_BYTES).
 * out[i] for r[i].
 */
#define QUARANTINE_BATCH_MAX   1000
#define QUARANTINE_BATCH_BYTES (64u << 20)
struct quarantine_result {
	enum quarantine_status status;
	char msg[256];
};
void quarantine_release_many(const struct quarantine_ctx *q, const struct quarantine_release_req *r,
                             size_t n, const struct quarantine_actor *by,
                             struct quarantine_result *out);
/* Delete: the state becomes deleted, then the file goes. */
enum quarantine_status quarantine_delete(const struct quarantine_ctx *q, const char *id,
                                         const struct quarantine_actor *by, char *msg,
                                         size_t msgsize);
/*
 * The held message as received (moat's Received field on top, without the
 * header fields the scan added) into a malloc'd buffer.
 */
enum quarantine_status quarantine_read(const struct quarantine_ctx *q, const char *id,
                                       unsigned char **data, size_t *len);

/*
 * Retention, in small steps so that no step holds the store long: held
 * entries received before now - quarantine_retention expire (state, then
 * file), at most max of them; tracking records and the records of
 * entries no longer held older than tracking_retention are forgotten, at
 * most max of each. *expired, *forgotten: how many (of the larger kind).
 * Call again while either equals max.
 */
enum quarantine_status quarantine_purge(const struct quarantine_ctx *q, int64_t now_ms,
                                        unsigned max, size_t *expired, size_t *forgotten);

struct quarantine_reconcile_report {
	size_t files;      /* files in quarantine/ */
	size_t finished;   /* released entries whose quarantine copy was removed */
	size_t reheld;     /* released entries without a queue file: held again */
	size_t removed;    /* deleted or expired entries whose file was removed */
	size_t recorded;   /* files the store had no record of: recorded */
	size_t unreadable; /* damaged files: set aside in corrupt/ */
};
/* At start, before serving the API. */
enum quarantine_status quarantine_reconcile(const struct quarantine_ctx *q,
                                            struct quarantine_reconcile_report *rep);

#endif
