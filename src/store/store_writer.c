/*
 * store_writer.c - the tracking writer thread (see store_writer.h).
 *
 * Events are deep copies on a list under a mutex; the thread takes all
 * that are waiting, writes them in one transaction (store_batch_begin/
 * commit: one fsync for many messages), and sleeps until the next event
 * or STORE_WRITER_FLUSH_MS.
 */
#include "store_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "../common/log.h"
#include "../common/util.h"

#define STORE_WRITER_BATCH_MAX 2000 /* events in one transaction */

enum store_ev { STORE_EV_MSG, STORE_EV_DLV };

struct store_job {
	enum store_ev kind;
	/* STORE_EV_MSG */
	struct store_track_in in;
	char **rcpts;
	enum store_verdict verdict;
	double score;
	char *symbols, *reason;
	bool quarantined;
	struct store_quar_in quar;
	/* STORE_EV_DLV */
	char *id, *rcpt, *reply;
	enum store_outcome outcome;
	int64_t time_ms;
	TAILQ_ENTRY(store_job) entry;
};

TAILQ_HEAD(store_job_list, store_job);

struct store_writer {
	struct store *st; /* the thread's connection */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct store_job_list jobs; /* under lock */
	size_t njobs;               /* under lock */
	bool stopping;              /* under lock */
	uint64_t dropped;           /* atomic */
	uint64_t logged_ms;         /* last drop log line, under lock */
};

static char *
sdup(const char *s)
{
	return xstrdup(s ? s : "");
}

static void
store_job_free(struct store_job *j)
{
	if (j->kind == STORE_EV_MSG) {
		free((char *)(uintptr_t)j->in.id);
		free((char *)(uintptr_t)j->in.client_ip);
		free((char *)(uintptr_t)j->in.helo);
		free((char *)(uintptr_t)j->in.sender);
		free((char *)(uintptr_t)j->in.subject);
		free((char *)(uintptr_t)j->in.from);
		free((char *)(uintptr_t)j->in.message_id);
		for (size_t i = 0; i < j->in.nrcpts; i++)
			free(j->rcpts[i]);
		free(j->rcpts);
		free(j->symbols);
		free(j->reason);
		free((char *)(uintptr_t)j->quar.domain);
	} else {
		free(j->id);
		free(j->rcpt);
		free(j->reply);
	}
	free(j);
}

static void
store_writer_push(struct store_writer *w, struct store_job *j)
{
	pthread_mutex_lock(&w->lock);
	if (w->stopping || w->njobs >= STORE_WRITER_QUEUE_MAX) {
		uint64_t now = clock_ms(), n = __atomic_add_fetch(&w->dropped, 1, __ATOMIC_RELAXED);
		bool say = now - w->logged_ms >= 10000;

		if (say)
			w->logged_ms = now;
		pthread_mutex_unlock(&w->lock);
		if (say)
			log_warn("event=store_dropped total=%llu reason=\"queue full\"",
			         (unsigned long long)n);
		store_job_free(j);
		return;
	}
	TAILQ_INSERT_TAIL(&w->jobs, j, entry);
	w->njobs++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void
store_writer_message(struct store_writer *w, const struct store_track_in *in, enum store_verdict v,
                     double score, const char *symbols, const char *reason,
                     const struct store_quar_in *quar)
{
	struct store_job *j;

	if (w == NULL)
		return;
	j = xcalloc(1, sizeof(*j));
	j->kind = STORE_EV_MSG;
	j->in = *in;
	j->in.id = sdup(in->id);
	j->in.client_ip = sdup(in->client_ip);
	j->in.helo = sdup(in->helo);
	j->in.sender = sdup(in->sender);
	j->in.subject = sdup(in->subject);
	j->in.from = sdup(in->from);
	j->in.message_id = sdup(in->message_id);
	j->rcpts = xcalloc(in->nrcpts ? in->nrcpts : 1, sizeof(char *));
	for (size_t i = 0; i < in->nrcpts; i++)
		j->rcpts[i] = sdup(in->rcpts[i]);
	j->in.rcpts = (const char *const *)j->rcpts;
	j->verdict = v;
	j->score = score;
	j->symbols = sdup(symbols);
	j->reason = sdup(reason);
	if (quar) {
		j->quarantined = true;
		j->quar = *quar;
		j->quar.domain = sdup(quar->domain);
	}
	store_writer_push(w, j);
}

void
store_writer_delivery(struct store_writer *w, const char *id, const char *rcpt,
                      enum store_outcome o, const char *reply, int64_t time_ms)
{
	struct store_job *j;

	if (w == NULL)
		return;
	j = xcalloc(1, sizeof(*j));
	j->kind = STORE_EV_DLV;
	j->id = sdup(id);
	j->rcpt = sdup(rcpt);
	j->reply = sdup(reply);
	j->outcome = o;
	j->time_ms = time_ms;
	store_writer_push(w, j);
}

uint64_t
store_writer_dropped(const struct store_writer *w)
{
	return w ? __atomic_load_n(&w->dropped, __ATOMIC_RELAXED) : 0;
}

/* Write one event; false on a database error. */
static bool
store_writer_apply(struct store_writer *w, const struct store_job *j)
{
	enum store_status r;

	if (j->kind == STORE_EV_DLV) {
		r = store_track_delivery(w->st, j->id, j->rcpt, j->outcome, j->reply, j->time_ms);
		return r != STORE_ERROR;
	}
	r = store_track_received(w->st, &j->in);
	if (r == STORE_ERROR)
		return false;
	if (j->verdict != STORE_V_NONE &&
	    store_track_verdict(w->st, j->in.id, j->verdict, j->score, j->symbols, j->reason,
	                        j->in.received_ms) == STORE_ERROR)
		return false;
	if (j->quarantined) {
		struct store_quar_in q = j->quar;

		q.id = j->in.id;
		q.received_ms = j->in.received_ms;
		q.sender = j->in.sender;
		q.rcpts = j->in.rcpts;
		q.nrcpts = j->in.nrcpts;
		q.from = j->in.from;
		q.subject = j->in.subject;
		q.message_id = j->in.message_id;
		q.size = j->in.size;
		q.verdict = j->verdict;
		q.score = j->score;
		q.symbols = j->symbols;
		if (store_quarantine_add(w->st, &q) == STORE_ERROR)
			return false;
	}
	return true;
}

static void *
store_writer_main(void *arg)
{
	struct store_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct store_job_list batch = TAILQ_HEAD_INITIALIZER(batch);
		struct store_job *j;
		size_t n = 0;

		while (TAILQ_EMPTY(&w->jobs) && !w->stopping)
			pthread_cond_wait(&w->cond, &w->lock);
		if (TAILQ_EMPTY(&w->jobs))
			break; /* stopping, and everything is written */
		while (n < STORE_WRITER_BATCH_MAX && (j = TAILQ_FIRST(&w->jobs)) != NULL) {
			TAILQ_REMOVE(&w->jobs, j, entry);
			TAILQ_INSERT_TAIL(&batch, j, entry);
			n++;
		}
		w->njobs -= n;
		pthread_mutex_unlock(&w->lock);

		bool ok = store_batch_begin(w->st) == STORE_OK;
		size_t failed = 0;

		TAILQ_FOREACH (j, &batch, entry)
			if (ok && !store_writer_apply(w, j))
				failed++;
		if (!ok || store_batch_commit(w->st) != STORE_OK) {
			store_batch_rollback(w->st);
			failed = n;
		}
		if (failed) {
			__atomic_add_fetch(&w->dropped, failed, __ATOMIC_RELAXED);
			log_error("event=store_error dropped=%zu reason=\"%s\"", failed,
			          store_errmsg(w->st));
		}
		while ((j = TAILQ_FIRST(&batch)) != NULL) {
			TAILQ_REMOVE(&batch, j, entry);
			store_job_free(j);
		}
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct store_writer *
store_writer_start(const char *url, char *err, size_t errsize)
{
	struct store_writer *w = xcalloc(1, sizeof(*w));

	if ((w->st = store_open(url, err, errsize)) == NULL) {
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	TAILQ_INIT(&w->jobs);
	if ((errno = pthread_create(&w->thread, NULL, store_writer_main, w)) != 0)
		fatal("store: pthread_create");
	return w;
}

void
store_writer_stop(struct store_writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	store_close(w->st);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
