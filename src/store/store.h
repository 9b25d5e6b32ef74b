/*
 * store.h - moat's database: message tracking, quarantine metadata, the
 * audit log, settings, policy (rules, allow/block lists), admin users and
 * API tokens (PRODUCT.md "Quarantine", "Storage").
 *
 * One interface, one backend file per database (STYLE.md 4): SQLite
 * (store_sqlite.c, the embedded default) now, PostgreSQL (store_pg.c)
 * later, with the same calls and each backend's SQL in its own file and
 * migrations (src/store/sql/<backend>/NNN_name.sql). store_open() picks
 * the backend from its argument: a path or "sqlite:PATH" is SQLite.
 *
 * Thread model: a struct store is one database connection and belongs to
 * one thread at a time; it is never shared between threads (SQLite
 * connections are not, and a PostgreSQL connection would not be either).
 * Each thread that needs the store opens its own; the database arbitrates
 * between them (SQLite in WAL mode: readers never wait, one writer at a
 * time, others wait up to a busy timeout). Every call is synchronous and
 * may wait on disk: keep it off the SMTP event loop's critical path.
 *
 * Errors: calls return an enum store_status; STORE_ERROR (the database
 * failed) leaves a message in store_errmsg(). Arguments over the limits
 * below are refused with STORE_INVALID before the database is touched.
 * Times are milliseconds since the epoch (UTC). Strings returned in
 * results are owned by the result and freed with its *_free() call.
 *
 * Searches are newest first and paged by a keyset cursor, (received time,
 * queue id) of the last row seen: a page never repeats or skips a row,
 * however many rows share a time stamp, and a deep page costs what the
 * first does.
 */
#ifndef MOAT_STORE_H
#define MOAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct rule_spec;

/* Limits (octets unless said otherwise); longer arguments: STORE_INVALID. */
#define STORE_ID_MAX           16   /* queue id: 16 lower-case hex digits */
#define STORE_ADDR_MAX         320  /* an address, or @domain (RFC 5321 path: 256) */
#define STORE_DOMAIN_MAX       255  /* a domain name */
#define STORE_IP_MAX           64   /* "2001:db8::1" */
#define STORE_HELO_MAX         255  /* HELO/EHLO argument */
#define STORE_HEADER_MAX       998  /* Subject, From, Message-ID (one line's worth) */
#define STORE_SYMBOLS_MAX      4096 /* the symbols line of a verdict */
#define STORE_REASON_MAX       256  /* a verdict's reason */
#define STORE_REPLY_MAX        512  /* a downstream's reply */
#define STORE_RCPTS_MAX        1000 /* recipients of one message */
#define STORE_EVENTS_MAX       1000 /* delivery events returned in one timeline */
#define STORE_PAGE_MAX         500  /* rows of one search page */
#define STORE_SUBJECT_MIN      3    /* octets of a subject search (trigram index) */
#define STORE_WHO_MAX          128  /* an actor: user name, "token:ID", "system" */
#define STORE_ACTION_MAX       64   /* an audit action: "release", "rule.put" */
#define STORE_TARGET_MAX       256  /* what an action was on: a queue id, a rule name */
#define STORE_KEY_MAX          128  /* a setting's name */
#define STORE_VALUE_MAX        8192 /* a setting's value */
#define STORE_PATTERN_MAX      320  /* an allow/block list pattern */
#define STORE_USER_MAX         64   /* an admin user name */
#define STORE_HASH_MAX         256  /* an argon2 encoded hash */
#define STORE_TOKEN_ID_MAX     32   /* an API token's public id */
#define STORE_SHA256_LEN       32
#define STORE_LIST_MAX         100000 /* entries returned by one list load */
#define STORE_THREAT_SCAN_MAX  100000 /* messages one threat count looks at */
#define STORE_SYMBOL_NAME_MAX  64     /* a symbol's name in a symbols line */
#define STORE_SYMBOL_NAMES_MAX 512    /* distinct names one threat count keeps */

enum store_status {
	STORE_OK,
	STORE_NOT_FOUND,
	STORE_ALREADY,  /* already in that state / already there: nothing changed */
	STORE_CONFLICT, /* not allowed from the current state (release a deleted entry) */
	STORE_INVALID,  /* an argument is empty, malformed or over its limit */
	STORE_ERROR,    /* the database failed: store_errmsg() */
};
const char *store_status_str(enum store_status st);

/*
 * Open (creating it if needed) and bring the schema up to date:
 * migrations are applied in order in one transaction. A database with a
 * newer schema than this binary knows is refused. NULL with a message in
 * err on failure.
 */
struct store *store_open(const char *url_or_path, char *err, size_t errsize);
void store_close(struct store *s);
/* The last STORE_ERROR's message. */
const char *store_errmsg(const struct store *s);
/* "sqlite" */
const char *store_backend_name(const struct store *s);
/* The schema version in the database and the newest this binary knows. */
int store_schema_version(struct store *s, unsigned *in_db, unsigned *known);

/*
 * Group many writes in one transaction (one disk sync at the commit):
 * each call inside still succeeds or fails as a whole (a savepoint), but
 * nothing is durable before store_batch_commit(). Other connections wait
 * for the write lock meanwhile: keep batches short (a few ms of writes).
 */
enum store_status store_batch_begin(struct store *s);
enum store_status store_batch_commit(struct store *s);
void store_batch_rollback(struct store *s);

/* --- verdicts, outcomes, states (stored by name) --- */

enum store_verdict {
	STORE_V_NONE, /* not scanned (yet) */
	STORE_V_DELIVER,
	STORE_V_QUARANTINE,
	STORE_V_REJECT,
	STORE_V_TEMPFAIL,
	STORE_V_ANY = -1, /* in filters: any */
};
enum store_outcome {
	STORE_OUT_PENDING, /* accepted, no outcome yet */
	STORE_OUT_DELIVERED,
	STORE_OUT_DEFERRED,
	STORE_OUT_BOUNCED,
	STORE_OUT_REJECTED,
};
enum store_qstate {
	STORE_Q_HELD,
	STORE_Q_RELEASED,
	STORE_Q_DELETED,
	STORE_Q_EXPIRED,
	STORE_Q_ANY = -1, /* in filters: any */
};
const char *store_verdict_str(enum store_verdict v);
const char *store_outcome_str(enum store_outcome o);
const char *store_qstate_str(enum store_qstate q);
/* By name ("deliver", "released", ...); -1 if unknown. */
int store_verdict_parse(const char *s);
int store_outcome_parse(const char *s);
int store_qstate_parse(const char *s);

/* --- searches: filters and keyset paging (tracking and quarantine) --- */

struct store_cursor {
	int64_t time_ms;
	char id[STORE_ID_MAX + 1]; /* "": before the first page */
};

struct store_filter {
	const char *sender;        /* envelope sender, "@domain", or "" (<>); NULL: any */
	const char *rcpt;          /* a recipient address, or "@domain"; NULL: any */
	const char *subject;       /* substring (>= STORE_SUBJECT_MIN), any case; NULL: any */
	const char *message_id;    /* exact Message-ID; NULL: any */
	const char *id;            /* queue id; NULL: any */
	const char *domain;        /* quarantine only: the entry's domain; NULL: any */
	int64_t since_ms;          /* received >= since; 0: open */
	int64_t until_ms;          /* received < until; 0: open */
	int verdict;               /* enum store_verdict, STORE_V_ANY */
	int state;                 /* quarantine only: enum store_qstate, STORE_Q_ANY */
	struct store_cursor after; /* rows older than this one; id "": from the newest */
	unsigned limit;            /* 1..STORE_PAGE_MAX */
};
/* A filter that matches everything, first page, limit 50. */
void store_filter_init(struct store_filter *f);

/* --- message tracking --- */

/* What is known of a message when its last octet arrived. */
struct store_track_in {
	const char *id; /* queue id */
	int64_t received_ms;
	const char *client_ip;
	const char *helo;
	const char *sender; /* canonical envelope sender, "" for <> */
	const char *const *rcpts;
	size_t nrcpts;          /* 0..STORE_RCPTS_MAX (0: rejected before any RCPT) */
	const char *subject;    /* decoded Subject, "" if none */
	const char *from;       /* From field, "" if none */
	const char *message_id; /* Message-ID, "" if none */
	uint64_t size;
};

struct store_rcpt {
	char *addr;
	enum store_outcome outcome;
	char *reply;     /* the downstream's reply to the last attempt, "" */
	int64_t time_ms; /* of the outcome; 0 while pending */
};

struct store_msg {
	char id[STORE_ID_MAX + 1];
	int64_t received_ms;
	char *client_ip, *helo, *sender, *subject, *from, *message_id;
	uint64_t size;
	enum store_verdict verdict; /* STORE_V_NONE until scanned */
	double score;
	char *symbols, *reason;
	int64_t verdict_ms;
	struct store_rcpt *rcpts;
	size_t nrcpts;
};

struct store_msg_page {
	struct store_msg *rows;
	size_t n;
	bool more;                /* there are older rows: ask again with after = next */
	struct store_cursor next; /* the last row's key */
};

enum store_event_kind {
	STORE_EV_RECEIVED,
	STORE_EV_VERDICT,
	STORE_EV_DELIVERY,
};
struct store_event {
	int64_t time_ms;
	enum store_event_kind kind;
	enum store_outcome outcome; /* delivery */
	char *rcpt;                 /* delivery: the recipient, else "" */
	char *text;                 /* verdict: its reason; delivery: the reply */
};

/* One message and what happened to it, oldest event first. */
struct store_timeline {
	struct store_msg msg;
	struct store_event *events;
	size_t nevents;
	bool truncated; /* more than STORE_EVENTS_MAX delivery events */
};

/* A message arrived (or was refused at RCPT: nrcpts 0). STORE_ALREADY if known. */
enum store_status store_track_received(struct store *s, const struct store_track_in *in);
/* Its verdict: symbols as scan_result_symbols() writes them, reason one line. */
enum store_status store_track_verdict(struct store *s, const char *id, enum store_verdict v,
                                      double score, const char *symbols, const char *reason,
                                      int64_t time_ms);
/*
 * An outcome for one recipient (added if the message did not list it, e.g.
 * refused at RCPT): becomes its current outcome and an event of its
 * timeline. reply: the downstream's (or moat's) reply line.
 */
enum store_status store_track_delivery(struct store *s, const char *id, const char *rcpt,
                                       enum store_outcome outcome, const char *reply,
                                       int64_t time_ms);
/* f->domain and f->state are ignored. */
enum store_status store_track_search(struct store *s, const struct store_filter *f,
                                     struct store_msg_page *out);
enum store_status store_track_get(struct store *s, const char *id, struct store_timeline *out);
/* Forget messages received before before_ms, at most max_rows of them; *n deleted. */
enum store_status store_track_purge(struct store *s, int64_t before_ms, unsigned max_rows,
                                    size_t *n);
/*
 * Messages per hour and verdict received at or after since_ms (a
 * dashboard's last day): fn per (hour start, verdict) with a count, oldest
 * hour first, stopping early if it returns non-zero.
 */
enum store_status store_track_hourly(struct store *s, int64_t since_ms,
                                     int (*fn)(void *arg, int64_t hour_ms, enum store_verdict v,
                                               uint64_t count),
                                     void *arg);
/*
 * What a dashboard's "top threats" and "top senders" look at: the newest
 * max_msgs (1..STORE_THREAT_SCAN_MAX) messages received at or after
 * since_ms whose verdict was quarantine or reject.
 *
 * store_track_threat_symbols(): their symbols, counted by name from the
 * symbols lines (as scan_result_symbols() writes them: NAME(SCORE),
 * optionally followed by [DETAIL], comma separated; a last symbol cut by
 * truncation is not counted): fn per name, most messages first (then by
 * name), with how many of those messages carry it and in how many its
 * score was above 0. At most STORE_SYMBOL_NAMES_MAX names are counted. A
 * detail is the sender's text: one that imitates the line's format can
 * add a name to its own message (each message counts a name once).
 */
enum store_status store_track_threat_symbols(struct store *s, int64_t since_ms, unsigned max_msgs,
                                             int (*fn)(void *arg, const char *name,
                                                       uint64_t messages, uint64_t positive),
                                             void *arg);
/*
 * The envelope senders of the same messages, compared without case: the
 * limit (1..STORE_PAGE_MAX) most frequent, fn per sender ("" for <>) with
 * its count, most first (then by sender).
 */
enum store_status
store_track_threat_senders(struct store *s, int64_t since_ms, unsigned max_msgs, unsigned limit,
                           int (*fn)(void *arg, const char *sender, uint64_t count), void *arg);
void store_msg_page_free(struct store_msg_page *p);
void store_timeline_free(struct store_timeline *t);

/* --- quarantine metadata (the message itself: spool quarantine/<id>) --- */

struct store_quar_in {
	const char *id;
	const char *domain; /* the protected domain it is held for */
	int64_t received_ms;
	const char *sender;
	const char *const *rcpts;
	size_t nrcpts; /* 1..STORE_RCPTS_MAX */
	const char *from, *subject, *message_id;
	uint64_t size;
	enum store_verdict verdict;
	double score;
	const char *symbols;
};

struct store_quar {
	char id[STORE_ID_MAX + 1];
	char *domain;
	int64_t received_ms;
	char *sender;
	char **rcpts;
	size_t nrcpts;
	char *from, *subject, *message_id;
	uint64_t size;
	enum store_verdict verdict;
	double score;
	char *symbols;
	enum store_qstate state;
	char *state_by;   /* who changed the state, "" while held */
	int64_t state_ms; /* when; 0 while held */
	bool queued;      /* released, and its queue file was written and synced */
};

struct store_quar_page {
	struct store_quar *rows;
	size_t n;
	bool more;
	struct store_cursor next;
};

/* Record a held message. STORE_ALREADY if the id is known. */
enum store_status store_quarantine_add(struct store *s, const struct store_quar_in *in);
enum store_status store_quarantine_search(struct store *s, const struct store_filter *f,
                                          struct store_quar_page *out);
enum store_status store_quarantine_get(struct store *s, const char *id, struct store_quar *out);
/*
 * held -> released, deleted or expired, recording who and when. Atomic:
 * of two concurrent calls (any threads or nodes) exactly one gets STORE_OK
 * and may act (deliver, unlink); setting the state it already has is
 * STORE_ALREADY ("already released"), another final state STORE_CONFLICT;
 * *was (may be NULL) gets the state found.
 */
enum store_status store_quarantine_set_state(struct store *s, const char *id, enum store_qstate to,
                                             const char *who, int64_t time_ms,
                                             enum store_qstate *was);
/*
 * released -> held: a release whose queue file was never written (moatd
 * stopped in between; quarantine_reconcile). STORE_CONFLICT from any
 * other state.
 */
enum store_status store_quarantine_unrelease(struct store *s, const char *id, const char *who,
                                             int64_t time_ms);
/*
 * Forget entries no longer held (released, deleted, expired) received
 * before before_ms, at most max_rows; *n forgotten.
 */
enum store_status store_quarantine_purge(struct store *s, int64_t before_ms, unsigned max_rows,
                                         size_t *n);
/* A released entry's queue file is durable (quarantine_reconcile trusts it). */
enum store_status store_quarantine_queued(struct store *s, const char *id);
/*
 * Up to max ids of held entries received before before_ms (retention),
 * oldest first, into ids[] (each STORE_ID_MAX + 1 octets); *n found.
 */
enum store_status store_quarantine_expired(struct store *s, int64_t before_ms,
                                           char (*ids)[STORE_ID_MAX + 1], size_t max, size_t *n);
void store_quar_free(struct store_quar *q);
void store_quar_page_free(struct store_quar_page *p);

/* --- audit log --- */

struct store_audit {
	int64_t id; /* increasing; 0 on input */
	int64_t time_ms;
	const char *who, *action, *target, *addr; /* addr: the client's address, "" */
};
enum store_status store_audit_add(struct store *s, const struct store_audit *a);
/*
 * The newest entries first, with id < before_id (0: from the newest),
 * target NULL for all; fn called per entry (strings valid during the
 * call), stopping early if it returns non-zero. At most limit entries.
 */
enum store_status store_audit_list(struct store *s, const char *target, int64_t before_id,
                                   unsigned limit,
                                   int (*fn)(void *arg, const struct store_audit *a), void *arg);

/* --- settings --- */

enum store_status store_setting_set(struct store *s, const char *key, const char *value);
/* STORE_NOT_FOUND, or STORE_INVALID if value does not fit in size. */
enum store_status store_setting_get(struct store *s, const char *key, char *value, size_t size);
enum store_status store_setting_delete(struct store *s, const char *key);
/* Every setting in key order. */
enum store_status store_setting_list(struct store *s,
                                     int (*fn)(void *arg, const char *key, const char *value),
                                     void *arg);

/* --- rules (the text of src/policy/rules.h; the grammar is checked by rule_new()) --- */

/* Insert or replace the rule of spec->name. Another rule's priority: STORE_CONFLICT. */
enum store_status store_rule_put(struct store *s, const struct rule_spec *spec);
enum store_status store_rule_delete(struct store *s, const char *name);
/* Every rule, lowest priority first; the spec is valid during the call. */
enum store_status store_rule_load(struct store *s,
                                  int (*fn)(void *arg, const struct rule_spec *spec), void *arg);

/* --- allow/block lists --- */

enum store_list_kind {
	STORE_LIST_ALLOW,
	STORE_LIST_BLOCK,
};
struct store_list_entry {
	const char *scope; /* "" global, else a protected domain */
	enum store_list_kind kind;
	const char *pattern; /* an address or @domain, as policy reads it */
	int64_t created_ms;
};
/* STORE_ALREADY if the same (scope, kind, pattern) is there. */
enum store_status store_list_add(struct store *s, const struct store_list_entry *e);
enum store_status store_list_delete(struct store *s, const char *scope, enum store_list_kind kind,
                                    const char *pattern);
/* Entries of scope (NULL: every scope), by scope, kind, pattern. */
enum store_status store_list_load(struct store *s, const char *scope,
                                  int (*fn)(void *arg, const struct store_list_entry *e),
                                  void *arg);

/* --- protected domains added through the API (the config file's are not here) --- */

#define STORE_DOMAIN_BODY_MAX 8192 /* the text of its [domain] section */

struct store_domain {
	const char *name; /* lower case */
	const char *body; /* "key = value" lines, as in a [domain] section */
	int64_t created_ms, updated_ms;
};
/* Insert or replace (created is kept on replace). */
enum store_status store_domain_put(struct store *s, const struct store_domain *d);
enum store_status store_domain_delete(struct store *s, const char *name);
/* Every stored domain by name; strings valid during the call. */
enum store_status store_domain_load(struct store *s,
                                    int (*fn)(void *arg, const struct store_domain *d), void *arg);

/* --- admin users and API tokens: storage only, no cryptography --- */

struct store_user {
	char name[STORE_USER_MAX + 1];
	char hash[STORE_HASH_MAX + 1]; /* argon2 encoded string */
	int64_t created_ms;
};
/* STORE_ALREADY if the name is taken. */
enum store_status store_user_add(struct store *s, const struct store_user *u);
enum store_status store_user_get(struct store *s, const char *name, struct store_user *out);
enum store_status store_user_set_hash(struct store *s, const char *name, const char *hash);
enum store_status store_user_delete(struct store *s, const char *name);
/* Every user by name; hash is left empty. */
enum store_status store_user_list(struct store *s, int (*fn)(void *arg, const struct store_user *u),
                                  void *arg);

#define STORE_SCOPE_READ    0x1u
#define STORE_SCOPE_OPERATE 0x2u
#define STORE_SCOPE_ADMIN   0x4u
#define STORE_SCOPE_ALL     0x7u

struct store_token {
	char id[STORE_TOKEN_ID_MAX + 1];
	unsigned char hash[STORE_SHA256_LEN]; /* SHA-256 of the secret */
	unsigned scopes;                      /* STORE_SCOPE_* */
	int64_t created_ms, last_used_ms;     /* last_used 0: never */
};
/* STORE_ALREADY if the id or the hash is taken. */
enum store_status store_token_add(struct store *s, const struct store_token *t);
/* The token whose secret hashes to hash (authentication). */
enum store_status store_token_find(struct store *s, const unsigned char hash[STORE_SHA256_LEN],
                                   struct store_token *out);
enum store_status store_token_touch(struct store *s, const char *id, int64_t time_ms);
enum store_status store_token_delete(struct store *s, const char *id);
/* Every token by id. */
enum store_status store_token_list(struct store *s,
                                   int (*fn)(void *arg, const struct store_token *t), void *arg);

/* --- Microsoft 365 jobs (src/m365/m365_job.c): no secret is ever stored --- */

#define STORE_M365_ID_MAX   32         /* a job id */
#define STORE_M365_NAME_MAX 255        /* a tenant (domain or GUID), a kind, a state */
#define STORE_M365_DATA_MAX (4u << 20) /* one JSON document */

struct store_m365_job {
	const char *id, *tenant, *kind, *state;
	int64_t created_ms, updated_ms;
	const char *data; /* the job as JSON */
};
/* Insert or replace (created is kept on replace). */
enum store_status store_m365_job_put(struct store *s, const struct store_m365_job *j);
/* fn called once with the job (strings valid during the call); STORE_NOT_FOUND. */
enum store_status store_m365_job_get(struct store *s, const char *id,
                                     int (*fn)(void *arg, const struct store_m365_job *j),
                                     void *arg);
/* The newest limit jobs, newest first. */
enum store_status store_m365_job_list(struct store *s, unsigned limit,
                                      int (*fn)(void *arg, const struct store_m365_job *j),
                                      void *arg);
/* Step seq (1, 2, ...) of job: what was asked and what came back, as JSON. */
enum store_status store_m365_step_add(struct store *s, const char *job, unsigned seq,
                                      int64_t time_ms, const char *data);
/* The steps of job in order. */
enum store_status store_m365_step_list(struct store *s, const char *job,
                                       int (*fn)(void *arg, unsigned seq, int64_t time_ms,
                                                 const char *data),
                                       void *arg);
/* A change moat made in tenant, as the undo record m365_plan.h describes. */
enum store_status store_m365_change_add(struct store *s, const char *tenant, const char *job,
                                        int64_t time_ms, const char *undo);
/* The changes of tenant not undone yet, oldest first. */
enum store_status store_m365_change_list(struct store *s, const char *tenant,
                                         int (*fn)(void *arg, int64_t id, const char *undo),
                                         void *arg);
/* Change id was undone (or found already gone) at time_ms. */
enum store_status store_m365_change_undone(struct store *s, int64_t id, int64_t time_ms);

#endif
