/*
 * smtp_internal.h - what the SMTP manager (smtp.c) and the session state
 * machine (smtp_session.c) share. Nothing outside src/smtp/ includes it.
 */
#ifndef MOAT_SMTP_INTERNAL_H
#define MOAT_SMTP_INTERNAL_H

#include "../scan/scan.h"
#include "smtp.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "../common/config.h"
#include "../spool/spool.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct bufferevent;
struct evconnlistener;
struct event;

/* Session states; smtp_enter_state() is the only place that changes them. */
enum smtp_state {
	SMTP_S_CONNECTED, /* greeting delay: the client must not talk yet */
	SMTP_S_GREETED,   /* 220 sent, waiting for EHLO/HELO */
	SMTP_S_READY,     /* EHLO/HELO done, no transaction */
	SMTP_S_MAIL,      /* MAIL accepted, no recipient yet */
	SMTP_S_RCPT,      /* at least one recipient accepted */
	SMTP_S_DATA,      /* reading DATA content up to CRLF.CRLF */
	SMTP_S_CHUNK,     /* reading the octets of one BDAT chunk */
	SMTP_S_BDAT,      /* between BDAT chunks of one message */
	SMTP_S_COMMIT,    /* message handed to the spool, waiting for it */
	SMTP_S_STARTTLS,  /* 220 for STARTTLS going out, then the handshake */
	SMTP_S_CLOSING,   /* last reply going out, then close */
	SMTP_S_COUNT
};

/* Concurrent sessions per client address. */
struct smtp_ip_count {
	unsigned char key[16]; /* IPv4 mapped into IPv6 */
	unsigned count;
	struct smtp_ip_count *next;
};

#define SMTP_IP_BUCKETS 1024

struct smtp_listener {
	struct evconnlistener *lev;
	char text[64];
};

struct smtp_session;

struct smtp_server {
	struct event_base *base;
	struct config *cfg;
	struct policy *pol;
	struct spool *spool;
	struct scan_pool *scan;
	struct store_writer *store; /* tracking; NULL: none */
	SSL_CTX *tls;
	struct smtp_listener listeners[CONFIG_LISTEN_MAX];
	size_t nlisteners;
	TAILQ_HEAD(, smtp_session) sessions;
	unsigned nsessions;
	uint64_t next_sid;
	struct smtp_ip_count *ip_counts[SMTP_IP_BUCKETS];
	bool shutting_down;
	bool accept_paused; /* out of descriptors: listeners off for a moment */
	struct event *accept_timer;
	uint64_t accept_pauses;    /* how often, for the log line */
	uint64_t accept_logged_ms; /* last accept_paused log line (at most one per 10 s) */
	struct event *shutdown_timer;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

/* What the store is told of a message the session scanned (smtp_session.c). */
struct smtp_track {
	int verdict; /* enum store_verdict */
	double score;
	char *symbols, *reason, *subject, *from, *message_id;
};

struct store_writer;

struct smtp_session {
	struct smtp_server *srv;
	TAILQ_ENTRY(smtp_session) entry;
	uint64_t sid;
	int fd;
	int refs;    /* held around callbacks; freed when it drops to zero */
	bool closed; /* smtp_session_close() ran */
	struct bufferevent *bev;
	SSL *ssl;
	struct event *timer;
	struct config *cfg;
	struct policy *pol;
	enum smtp_state state;
	unsigned char ipkey[16];
	char addr[INET6_ADDRSTRLEN];
	uint64_t started_ms;

	/* from EHLO/HELO */
	char helo[SMTP_HELO_MAX + 1];
	bool esmtp;
	bool tls_done;
	unsigned errors;
	unsigned messages;
	const char *close_reason; /* static text, for the disconnect log line */
	bool skip_line;           /* discarding the rest of an over-long command line */
	bool quit_after_reply;    /* shutting down: 421 after the transaction */

	/* the transaction */
	struct smtp_mail_params mp;
	struct spool_env env;
	size_t env_bytes; /* recipient octets in env, bounded by SMTP_ENVELOPE_MAX */
	struct spool_msg *msg;
	struct smtp_data_scan scan;
	bool too_big;
	bool chunking;       /* the transaction uses BDAT */
	uint64_t chunk_left; /* octets of the current BDAT chunk still to read */
	bool chunk_last;
	bool chunk_discard;           /* the chunk is read and thrown away */
	enum smtp_state chunk_return; /* where a discarded chunk returns to */
	bool committing;              /* msg is with the spool; its callback holds a reference */
	bool scanning;             /* msg is with a scan worker; its callback holds a reference */
	struct scan_input scan_in; /* what the worker reads (valid while scanning) */
	struct smtp_track *track;  /* the scan's outcome, tracked once the commit is durable */
	char refused_id[SPOOL_ID_LEN + 1]; /* the transaction's record of refused RCPTs, "" */
	bool peer_eof;                     /* the client closed its sending side */
	const char *chunk_error;           /* reply after a discarded chunk */
	uint64_t data_start_ms;
	uint64_t data_wire; /* octets read in DATA/BDAT, for the rate check */
};

void smtp_session_new(struct smtp_server *srv, int fd, const struct sockaddr *sa);
void smtp_session_shutdown(struct smtp_session *s);
void smtp_session_close(struct smtp_session *s, const char *reason);
void smtp_server_session_gone(struct smtp_server *srv, struct smtp_session *s);
bool smtp_state_in_transaction(enum smtp_state st);

#endif
