/*
 * delivery_internal.h - what the delivery engine (delivery.c), its SMTP
 * client sessions (mta_session.c) and route back ends share.
 *
 * Everything here lives on the delivery thread and its event loop; no
 * locks are needed below this line except where delivery.c says so.
 */
#ifndef MOAT_DELIVERY_INTERNAL_H
#define MOAT_DELIVERY_INTERNAL_H

#include "delivery.h"
#include "../common/route.h"
#include "../spool/spool.h"

#include <netdb.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct event;
struct event_base;
struct bufferevent;
struct config;
struct dest;
struct mta_session;

#define DELIVERY_REPLY_MAX 8192 /* a downstream reply kept (EHLO lists, logs, DSNs) */

/* Per-recipient state in memory; final ones are also in the queue file. */
enum dq_rcpt_state {
	DQ_PENDING,   /* waiting for an attempt (first, or a retry) */
	DQ_INFLIGHT,  /* part of a task a session is working on */
	DQ_DELIVERED, /* final: accepted downstream */
	DQ_FAILED,    /* final: refused for good, or expired */
};

struct dq_msg {
	struct delivery *d;
	char id[SPOOL_ID_LEN + 1];
	TAILQ_ENTRY(dq_msg) entry;
	struct spool_env env;      /* rcpts[i].state/status/remote/diag as in the file */
	enum dq_rcpt_state *state; /* per recipient */
	bool *recorded;            /* final outcome already appended to the queue file */
	/*
	 * Success reports (NOTIFY=SUCCESS): DSN_DELIVERED (maildir),
	 * DSN_RELAYED (a downstream without DSN), or -1: the downstream got
	 * NOTIFY and reports itself, or nothing to report.
	 */
	int *success;
	uint64_t body_len;
	unsigned attempts; /* rounds that ended with something deferred */
	unsigned inflight; /* tasks out with sessions */
	struct event *retry_ev;
	uint64_t retry_at_ms; /* monotonic, 0 = not waiting */
	bool round_attempted; /* some task of this round really tried (not no_attempt) */
};

/* A message's recipients for one destination: what one transaction carries. */
struct dq_task {
	struct dq_msg *msg;
	struct dest *dest;
	size_t n;
	size_t *rcpt; /* indices into msg->env.rcpts */
	/* filled by the session */
	int *code;        /* per recipient: final SMTP code, 0 = none */
	char **reply;     /* per recipient: the reply that decided it */
	char remote[300]; /* host [address] that answered */
	/*
	 * What is sent before the body, when it is not the message's recorded
	 * head: the relay key of this task's recipient domain on top of it.
	 * Tasks never mix recipient domains with different keys.
	 */
	char *head;
	size_t head_len;
	const char *key_domain; /* the domain whose key head carries, or NULL */
	bool no_attempt;        /* not tried at all (session ended before MAIL): no penalty */
	bool dsn_passed;        /* the downstream offered DSN: NOTIFY and ORCPT went with RCPT */
	TAILQ_ENTRY(dq_task) entry;
};
TAILQ_HEAD(dq_task_list, dq_task);

enum mta_state {
	MTA_CONNECT, /* connecting to addrs[addr_i] */
	MTA_BANNER,  /* waiting for the 220 */
	MTA_EHLO,
	MTA_HELO,
	MTA_STARTTLS, /* waiting for the 220 to STARTTLS */
	MTA_TLS,      /* handshake */
	MTA_READY,    /* idle, may take a task */
	MTA_MAIL,     /* MAIL (and pipelined RCPTs) sent */
	MTA_RCPT,
	MTA_DATA, /* DATA sent, waiting for 354 */
	MTA_BODY, /* sending the message */
	MTA_EOM,  /* waiting for the final reply */
	MTA_RSET,
	MTA_QUIT,
	MTA_CLOSED,
	MTA_STATE_COUNT
};

/* Extensions the downstream offered (EHLO). */
#define MTA_EXT_PIPELINING 0x01
#define MTA_EXT_SIZE       0x02
#define MTA_EXT_8BITMIME   0x04
#define MTA_EXT_SMTPUTF8   0x08
#define MTA_EXT_DSN        0x10
#define MTA_EXT_CHUNKING   0x20
#define MTA_EXT_STARTTLS   0x40

struct mta_session {
	struct delivery *d;
	struct dest *dest;
	TAILQ_ENTRY(mta_session) entry;      /* dest->sessions */
	TAILQ_ENTRY(mta_session) idle_entry; /* dest->idle, while READY and unused */
	bool in_idle;
	uint64_t sid;
	enum mta_state state;
	struct bufferevent *bev;
	SSL *ssl;
	struct event *timer;
	struct dest_addr *addrs; /* a copy of the destination's list, in order */
	size_t naddrs, addr_i;   /* the one being tried */
	char host[320];          /* "name [address]" for logs and DSNs */
	char last_error[DELIVERY_REPLY_MAX];
	unsigned ext;
	uint64_t size_max;
	bool tls_failed_here; /* opportunistic TLS failed: retry this host in plaintext */
	bool ready_once;      /* reached READY at least once */
	bool connect_pending; /* the timer starts the connection */
	bool idle_pending;    /* the timer offers the session to the engine */
	uint64_t started_ms;
	unsigned messages; /* transactions completed on this connection */
	/* reply being read */
	char reply[DELIVERY_REPLY_MAX];
	size_t reply_len;
	/* the task in hand */
	struct dq_task *task;
	size_t rcpt_sent, rcpt_replied, rcpt_ok;
	bool mail_ok;
	unsigned transactions; /* begun on this connection (RSET before the 2nd on) */
	bool rset_pending;     /* an RSET before this MAIL awaits its reply */
	char *mail_params;     /* MAIL parameters waiting for that reply (no PIPELINING) */
	unsigned bdat_pending; /* BDAT chunks sent and not yet answered */
	/* the body being sent */
	int body_fd;            /* body.fd while sending, else -1 */
	struct spool_body body; /* what is sent: moat's head, then the body */
	uint64_t body_pos;      /* next octet of body to send */
	uint64_t body_left;
	bool at_line_start;
	size_t line_len;
	bool body_done;
};

/* One address to try, with the host name it belongs to (for TLS and logs). */
struct dest_addr {
	char name[256];
	uint16_t port;
	struct sockaddr_storage ss;
	socklen_t len;
};

enum dest_resolve { DEST_UNRESOLVED, DEST_RESOLVING, DEST_RESOLVED };

/* Where tasks go: one per route key (an MX route: one per domain). */
struct dest {
	struct delivery *d;
	bool free_pending;
	struct event *kick_ev; /* dest_kick: deferred to the next loop turn */
	char *key;
	char domain[256];
	struct route route;
	struct dq_task_list tasks;          /* waiting */
	unsigned ntasks;                    /* how many */
	TAILQ_HEAD(, mta_session) sessions; /* all of this destination */
	TAILQ_HEAD(, mta_session) idle;
	unsigned nsessions;
	unsigned connect_failures;         /* in a row; limits new sessions */
	uint64_t connect_backoff_until_ms; /* no new connection before this */
	/* addresses, from the MX records or the smart hosts' names */
	enum dest_resolve resolve;
	uint64_t resolved_ms;
	struct dest_addr *addrs;
	size_t naddrs;
	unsigned lookups; /* outstanding DNS queries */
	int resolve_code; /* 0, or the SMTP code of a resolution failure */
	char resolve_error[400];
	void *lookup_slots; /* struct dest_lookup[], while names resolve */
	TAILQ_ENTRY(dest) entry;
};

struct delivery {
	struct spool *spool;
	char *data_dir;
	char *hostname;
	struct event_base *base;
	struct dns *dns; /* created on the delivery thread */
	pthread_t thread;
	bool running;

	/* shared with other threads, under lock */
	pthread_mutex_t lock;
	char (*incoming)[SPOOL_ID_LEN + 1]; /* ids from commits and recovery */
	size_t nincoming, capincoming;
	struct policy *next_pol; /* SIGHUP */
	struct config *next_cfg;
	bool stop_requested;
	struct event *wake_ev; /* event_active() from other threads */

	/* delivery thread only */
	struct policy *pol;
	struct config *cfg;
	TAILQ_HEAD(, dq_msg) msgs;
	size_t nmsgs;
	TAILQ_HEAD(, dest) dests;
	unsigned nsessions;
	SSL_CTX *tls_any;                    /* opportunistic / required */
	struct delivery_tls_ctx *tls_verify; /* verify, one per CA file */
	uint64_t next_sid;
	bool stopping;                   /* nothing new starts: no connection, no schedule */
	struct control *control;         /* the control socket, on this loop */
	const struct scan_env *scan_env; /* for relay keys; NULL: none are stamped */
	struct store_writer *store;      /* tracking; NULL: none */
};

/* delivery.c, for the control commands (delivery_ctl.c) */
struct dq_msg *dq_find(const char *id);
void dq_schedule(struct delivery *d, struct dq_msg *m);
void dq_schedule_soon(struct delivery *d, struct dq_msg *m);
struct dq_task;
void dq_task_return(struct delivery *d, struct dq_task *t);
unsigned dq_withdraw(struct delivery *d, struct dq_msg *m);
void dq_free(struct delivery *d, struct dq_msg *m);

/* delivery_ctl.c: register queue.* and stats on the control socket */
struct control;
void delivery_ctl_register(struct delivery *d, struct control *c);

/* delivery.c, called by sessions */
void delivery_task_done(struct delivery *d, struct dq_task *t);
void delivery_session_idle(struct delivery *d, struct mta_session *s);
void delivery_session_gone(struct delivery *d, struct mta_session *s);
/* The session will take no more tasks (it is quitting). */
void delivery_session_leaving(struct delivery *d, struct mta_session *s);
SSL_CTX *delivery_tls_ctx(struct delivery *d, const struct route *r);
const struct config *delivery_config(const struct delivery *d);

/* mta_session.c */
struct mta_session *mta_session_new(struct delivery *d, struct dest *dest);
/* Hand an idle session its next task. */
void mta_session_run(struct mta_session *s, struct dq_task *t);
/* Close an idle session (QUIT) or abandon a busy one (engine stopping). */
void mta_session_quit(struct mta_session *s);
void mta_session_abort(struct mta_session *s);
/* May the session take another message (age and message caps)? */
bool mta_session_reusable(const struct mta_session *s);

/* delivery_maildir.c */
int delivery_maildir(const char *root, const char *hostname, const struct spool_body *b,
                     const struct spool_env *env, const char *rcpt, char *path, size_t pathsize);

#endif
