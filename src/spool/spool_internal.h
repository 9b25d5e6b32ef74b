/*
 * spool_internal.h - what spool.c and spool_commit.c share.
 */
#ifndef MOAT_SPOOL_INTERNAL_H
#define MOAT_SPOOL_INTERNAL_H

#include "spool.h"

#include <pthread.h>
#include <sys/queue.h>

#define SPOOL_MAGIC       "MOATQ1\r\n"
#define SPOOL_MAGIC_LEN   8
#define SPOOL_REC_HDR     5  /* type octet + 32-bit big-endian length */
#define SPOOL_END_LEN     12 /* 64-bit body length + CRC-32 */
#define SPOOL_WRITERS_MAX 64
#define SPOOL_REC_MAX     (1u << 20)  /* envelope records; the body has its own bound */
#define SPOOL_TAIL_MAX    (16u << 20) /* all envelope records of one message */
#define SPOOL_HEAD_MAX    (8u << 20)  /* the head record (smtp_max_header_size is below) */
#define SPOOL_READ_CHUNK  (64 * 1024)

/* Record types. Lower-case types are informational and may be added freely. */
enum {
	SPOOL_R_BODY = 'B',
	SPOOL_R_SENDER = 's',
	SPOOL_R_RCPT = 'R',
	SPOOL_R_NOTIFY = 'N',
	SPOOL_R_ORCPT = 'O',
	SPOOL_R_ID = 'i',
	SPOOL_R_TIME = 't',
	SPOOL_R_CLIENT = 'c',
	SPOOL_R_HELO = 'h',
	SPOOL_R_PROTO = 'p',
	SPOOL_R_BODYTYPE = 'b',
	SPOOL_R_UTF8 = 'u',
	SPOOL_R_RET = 'r',
	SPOOL_R_ENVID = 'e',
	SPOOL_R_HEAD = 'P',    /* 8-octet skip + moat's header section (scan) */
	SPOOL_R_VERDICT = 'v', /* the scan's summary line */
	SPOOL_R_END = 'E',
	/* status records, after END, each followed by its own CRC-32 */
	SPOOL_S_DELIVERED = 'D',
	SPOOL_S_FAILED = 'F',
	SPOOL_S_HOLD = 'H',
	SPOOL_S_DSN = 'X', /* reports sent: SPOOL_REPORT_* bits */
	SPOOL_S_DELAY_WARNED = 'W',
};
#define SPOOL_STATUS_MAX 2048 /* one status record's payload */

struct spool_msg {
	struct spool *spool;
	char id[SPOOL_ID_LEN + 1];
	int fd;    /* incoming file once spilled, else -1 */
	int err;   /* sticky errno */
	char *buf; /* body bytes not yet written */
	size_t len, cap;
	uint64_t size; /* body bytes so far */
	uint32_t crc;  /* CRC-32 over the body so far */
	struct spool_env env;
	bool quarantine;           /* commit into quarantine/, not queue/ */
	const unsigned char *body; /* the whole body, not ours (a release), or NULL */
	void *map;                 /* spool_msg_map() of a spilled body */
	size_t map_len;
	spool_commit_fn cb;
	void *cb_arg;
	TAILQ_ENTRY(spool_msg) entry;
};

TAILQ_HEAD(spool_msg_list, spool_msg);

struct spool {
	char *dir, *incoming, *queue, *corrupt, *quarantine;
	int queue_fd;      /* queue/ kept open for fsync */
	int quarantine_fd; /* quarantine/ likewise */
	uint64_t min_free;
	uint64_t room_checked_ms;
	bool room;
	uint32_t id_counter;

	/* commit threads (spool_commit.c) */
	pthread_t writers[SPOOL_WRITERS_MAX];
	unsigned nwriters, writers_alive;
	pthread_t dirsyncer;
	bool running, stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond_pending;   /* writers wait here */
	pthread_cond_t cond_renamed;   /* the directory syncer waits here */
	struct spool_msg_list pending; /* loop -> writers */
	struct spool_msg_list renamed; /* writers -> directory syncer */
	struct spool_msg_list done;    /* directory syncer -> loop */
	struct event *done_ev;
	spool_committed_fn committed_fn;
	void *committed_arg;
};

void spool_msg_free(struct spool_msg *m);
/* Serialise the envelope records and END into a malloc'd buffer. */
char *spool_env_serialise(const struct spool_msg *m, size_t *len);
void spool_put_rec_hdr(unsigned char *p, int type, uint32_t len);

#endif
