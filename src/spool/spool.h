/*
 * spool.h - the durable message spool.
 *
 * A message accepted by moat lives in one queue file, data_dir/queue/<id>,
 * holding the message (with moat's Received header) and its envelope as
 * typed, length-prefixed records that end with an END record carrying the
 * body length and a CRC-32 of everything before it. A file without a
 * valid END is torn and is never delivered.
 *
 * Commit protocol (what a 250 means): the file is written under
 * data_dir/incoming/, fdatasync()ed, renamed into data_dir/queue/ and the
 * queue directory fsync()ed; only then does the commit callback run and
 * the session send its 250. Commits from many sessions run in parallel on
 * a pool of writer threads and share directory fsyncs (group commit, see
 * spool_commit.c). On start, incoming/ is emptied (nothing there was ever
 * acknowledged) and every file in queue/ is handed to delivery.
 *
 * Small messages are kept in memory until the commit and written by a
 * commit thread; past SPOOL_MEM_MAX the body spills to the incoming file
 * as it arrives. Those spill writes happen on the event loop (a write()
 * to the page cache per 64 KiB); a disk so slow that the kernel throttles
 * them would stall every session, a trade-off taken for simplicity until
 * measurements say otherwise.
 */
#ifndef MOAT_SPOOL_H
#define MOAT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct spool;
struct spool_msg;

#define SPOOL_ID_LEN  16 /* hex: 11 digits of ms since the epoch + 5 of a counter */
#define SPOOL_MEM_MAX (64 * 1024)

/* A recipient's final outcome, appended to the queue file as it happens. */
enum spool_rcpt_state {
	SPOOL_RCPT_PENDING = 0,
	SPOOL_RCPT_DELIVERED,
	SPOOL_RCPT_FAILED,
};

struct spool_rcpt {
	char *addr;      /* canonical local@domain */
	unsigned notify; /* RFC 3461 NOTIFY bits (SMTP_NOTIFY_*), 0 = unspecified */
	char *orcpt;     /* RFC 3461 ORCPT as received, or NULL */
	/* from the status records after END */
	enum spool_rcpt_state state;
	char *status; /* RFC 3463 code of the outcome, or NULL */
	char *remote; /* the downstream that answered, or NULL */
	char *diag;   /* its reply (one line), or NULL */
	int64_t when; /* Unix time of the outcome */
	char report;  /* a success report still owed: 'D' delivered, 'R' relayed, 0 none */
};

/* The envelope kept with a message. Strings are owned by the struct. */
struct spool_env {
	char id[SPOOL_ID_LEN + 1];
	int64_t received_at; /* Unix time */
	char *client_addr;   /* "192.0.2.1" / "2001:db8::1" */
	char *helo;
	char *protocol;  /* ESMTP, ESMTPS, UTF8SMTPS, ... (RFC 3848) */
	char *sender;    /* canonical, "" for <> */
	char *body_type; /* "7BIT", "8BITMIME", or NULL */
	bool smtputf8;
	char *ret;   /* RFC 3461 RET: "FULL", "HDRS" or NULL */
	char *envid; /* RFC 3461 ENVID (xtext) or NULL */
	/*
	 * The scan's header section: sent instead of the first head_skip
	 * octets of the body (moat's fields, the original ones it keeps).
	 */
	char *head;
	size_t head_len;
	uint64_t head_skip;
	char *verdict; /* the scan's summary (informational), or NULL */
	struct spool_rcpt *rcpts;
	size_t nrcpts;
	/* from the status records after END */
	bool held;             /* moatctl queue hold */
	unsigned reports_sent; /* SPOOL_REPORT_* already written to the spool */
	bool delay_warned;     /* the "delayed" report went out */
	size_t status_end;     /* file offset after the last good status record */
	bool status_torn;      /* bytes after it: a crash tore an append */
};

#define SPOOL_REPORT_FAILED  0x1 /* the report about failed recipients */
#define SPOOL_REPORT_SUCCESS 0x2 /* the report about NOTIFY=SUCCESS recipients */

/* One status record to append (spool_mark). */
struct spool_mark {
	enum { SPOOL_MARK_RCPT, SPOOL_MARK_HOLD, SPOOL_MARK_REPORTS, SPOOL_MARK_DELAY_WARNED } what;
	size_t rcpt;                        /* index into env.rcpts (SPOOL_MARK_RCPT) */
	enum spool_rcpt_state state;        /* SPOOL_MARK_RCPT */
	const char *status, *remote, *diag; /* SPOOL_MARK_RCPT, may be NULL */
	int64_t when;
	char report;      /* SPOOL_MARK_RCPT: success report owed ('D', 'R' or 0) */
	bool held;        /* SPOOL_MARK_HOLD */
	unsigned reports; /* SPOOL_MARK_REPORTS: SPOOL_REPORT_* bits now sent */
};

void spool_env_add_rcpt(struct spool_env *env, const char *addr, unsigned notify,
                        const char *orcpt);
void spool_env_clear(struct spool_env *env);

enum spool_status {
	SPOOL_OK = 0,
	SPOOL_ENOENT,   /* no such queue file */
	SPOOL_ECORRUPT, /* torn or damaged: set it aside */
	SPOOL_EIO,      /* read error */
};

/*
 * Open (creating incoming/, queue/, corrupt/ under data_dir). Returns NULL
 * and a message in err on failure.
 */
struct spool *spool_open(const char *data_dir, uint64_t min_free, char *err, size_t errsize);
void spool_close(struct spool *s);

/* Called on the loop thread for each committed message (delivery hook). */
typedef void (*spool_committed_fn)(void *arg, const char *id);
/*
 * Start the commit threads (writers of them, plus one directory syncer);
 * completions are delivered on base's loop.
 */
int spool_start(struct spool *s, struct event_base *base, unsigned writers, spool_committed_fn fn,
                void *arg);
/* Finish pending commits and stop the commit threads. */
void spool_stop(struct spool *s);

/*
 * Recovery, before anything is accepted: empty incoming/ and call fn for
 * every queue file name. Returns the number found, -1 on a directory error.
 */
long spool_recover(struct spool *s, void (*fn)(void *arg, const char *id), void *arg);

/* Is there room for another message (free space >= min_free)? Cached ~1 s. */
bool spool_has_room(struct spool *s);

/* --- writing (loop thread) --- */

struct spool_msg *spool_msg_new(struct spool *s);
/* A fresh id, as messages get (tracking records of refused recipients use one too). */
void spool_new_id(struct spool *s, char id[SPOOL_ID_LEN + 1]);
const char *spool_msg_id(const struct spool_msg *m);
/* Append body bytes. -1 with errno on a write error (sticky: the commit fails). */
int spool_msg_write(struct spool_msg *m, const void *p, size_t n);
uint64_t spool_msg_size(const struct spool_msg *m);
/* The envelope: moved into the message (env is left empty). */
void spool_msg_set_env(struct spool_msg *m, struct spool_env *env);
const struct spool_env *spool_msg_env(const struct spool_msg *m);

/*
 * Commit. Ownership of m passes to the spool. cb runs later on the loop
 * thread with err 0 (durable: reply 250) or an errno value (nothing was
 * kept: reply 4xx), then m is freed. spool_msg_forget() cancels the
 * callback (the session went away); the commit itself still completes.
 */
typedef void (*spool_commit_fn)(void *arg, struct spool_msg *m, int err);
void spool_msg_commit(struct spool_msg *m, spool_commit_fn cb, void *arg);
void spool_msg_forget(struct spool_msg *m);
/*
 * Commit in the calling thread, for the rare writer that is not a session
 * (delivery reports): the same protocol, no batching. Frees m; returns 0
 * or an errno value.
 */
int spool_msg_commit_sync(struct spool_msg *m);
/* Drop an uncommitted message and its incoming file. */
void spool_msg_abort(struct spool_msg *m);
/*
 * The body written so far, readable from any thread until the message is
 * committed or aborted (the scan reads it there). NULL with errno on
 * failure; an empty body gives a valid pointer with len 0.
 */
const unsigned char *spool_msg_map(struct spool_msg *m, size_t *len);
/*
 * The scan's outcome: the header section to deliver (head, taking the
 * place of the first head_skip body octets), its summary, and whether the
 * message goes to quarantine/. head and summary are taken over (freed
 * with the message).
 */
void spool_msg_set_scan(struct spool_msg *m, char *head, size_t head_len, uint64_t head_skip,
                        char *summary, bool quarantine);
/* Commit into quarantine/ instead of queue/: never handed to delivery. */
void spool_msg_set_quarantine(struct spool_msg *m, bool q);
bool spool_msg_quarantined(const struct spool_msg *m);

/* --- reading (any thread) --- */

struct spool_file {
	int fd;
	struct spool_env env;
	off_t body_offset;
	uint64_t body_len;
};

enum spool_status spool_file_open(struct spool *s, const char *id, struct spool_file *f);

/*
 * Just the body of a queue file already checked by spool_file_open():
 * an open descriptor (the caller closes it) and where the body is. -1 with
 * errno on failure.
 */
struct spool_body {
	int fd;
	off_t offset;     /* of the body in the file */
	uint64_t len;     /* what spool_body_pread() gives: head, then the body after skip */
	const char *head; /* env->head: valid while env is */
	size_t head_len;
	uint64_t skip;
	uint64_t body_len; /* of the body in the file */
};
/*
 * env: the message's envelope (its head record applies), or NULL for the
 * body as received.
 */
int spool_body_open(struct spool *s, const char *id, const struct spool_env *env,
                    struct spool_body *b);
/* Send head (head_len octets, valid while b is used) instead of env's head. */
void spool_body_set_head(struct spool_body *b, const char *head, size_t head_len);
/* Read n octets at pos of what is delivered (head, then body); like pread(). */
ssize_t spool_body_pread(const struct spool_body *b, void *buf, size_t n, uint64_t pos);
/* What is delivered of a body of body_len octets with env's head record. */
uint64_t spool_env_delivered_len(const struct spool_env *env, uint64_t body_len);
void spool_file_close(struct spool_file *f);
/*
 * Append status records to a committed queue file and fdatasync it. Each
 * record carries its own CRC: a record torn by a crash is ignored on
 * reading (the outcome is then not recorded: at-least-once). -1 and errno
 * on failure.
 */
int spool_mark(struct spool *s, const char *id, const struct spool_mark *marks, size_t n);
/* Cut a torn status record off the end (at env.status_end) before appending. */
int spool_cut_torn(struct spool *s, const char *id, size_t end);

/* Remove a delivered message from the queue. */
int spool_remove(struct spool *s, const char *id);
/* Move a damaged queue file to corrupt/ for a human to look at. */
int spool_set_aside(struct spool *s, const char *id);

/*
 * --- quarantine/ (src/quarantine): any thread, synchronous ---
 *
 * A held message is a queue file in quarantine/. A release writes a new
 * queue file under the same id into queue/ (through incoming/, synced, as
 * a commit) with the release's header section and the chosen recipients
 * (keep[i] for env->rcpts[i]; NULL: all), then removes the quarantine
 * copy. Many at once share their syncs (one syncfs, one fsync of each
 * directory); each r[i].err says how it went (0: queued). -1 if any
 * failed.
 */
struct spool_release {
	const struct spool_env *env; /* the held message's */
	const unsigned char *body;
	size_t len;
	const bool *keep;
	const char *head; /* the release's header section (scan_run with release) */
	size_t head_len;
	uint64_t head_skip;
	const char *summary;
	int err; /* out: 0, or an errno */
};
enum spool_status spool_quarantine_open(struct spool *s, const char *id, struct spool_file *f);
/* The body of an opened file into a malloc'd, NUL-terminated buffer. */
int spool_quarantine_read(const struct spool_file *f, unsigned char **body);
int spool_quarantine_release(struct spool *s, struct spool_release *r, size_t n);
/* Unlink quarantine/<id> and sync the directory. */
int spool_quarantine_remove(struct spool *s, const char *id);
/* Move a damaged quarantine file to corrupt/q-<id>. */
int spool_quarantine_set_aside(struct spool *s, const char *id);
/* Every id in quarantine/; how many, or -1. */
long spool_quarantine_list(struct spool *s, void (*fn)(void *arg, const char *id), void *arg);
/* Is queue/<id> there? 1 yes, 0 no, -1 cannot tell (errno). */
int spool_queued(struct spool *s, const char *id);

/* Validate a queue id (16 lower-case hex digits). */
bool spool_id_valid(const char *id);

/* Parse a queue file image (also the fuzz entry point). */
enum spool_status spool_parse(const unsigned char *p, size_t len, struct spool_env *env,
                              size_t *body_offset, uint64_t *body_len);

#endif
