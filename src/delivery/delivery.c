/*
 * delivery.c - the delivery thread (see delivery.h).
 */
#include "delivery.h"
#include "delivery_internal.h"
#include "../common/log.h"
#include "../common/mailaddr.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../spool/spool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct delivery_item {
	char id[SPOOL_ID_LEN + 1];
	uint64_t not_before_ms; /* retry time, 0 = now */
	unsigned attempts;
	char **done; /* recipients already delivered */
	size_t ndone;
	struct delivery_item *next;
};

struct delivery {
	struct spool *spool;
	char *data_dir;
	char *hostname;
	uint64_t retry_ms;
	pthread_t thread;
	bool running, stopping, paused;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct policy *pol;
	struct delivery_item *head, *tail; /* ready, FIFO */
	struct delivery_item *later;       /* waiting for a retry */
};

struct delivery *
delivery_new(struct spool *spool, const char *data_dir, const char *hostname, struct policy *pol,
             bool paused, uint64_t retry_ms)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	pthread_condattr_t ca;

	d->spool = spool;
	d->data_dir = xstrdup(data_dir);
	d->hostname = xstrdup(hostname);
	d->pol = policy_ref(pol);
	d->paused = paused;
	d->retry_ms = retry_ms;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	return d;
}

static void
delivery_item_free(struct delivery_item *it)
{
	for (size_t i = 0; i < it->ndone; i++)
		free(it->done[i]);
	free(it->done);
	free(it);
}

static void
delivery_push(struct delivery *d, struct delivery_item *it)
{
	it->next = NULL;
	if (d->tail)
		d->tail->next = it;
	else
		d->head = it;
	d->tail = it;
}

void
delivery_enqueue(struct delivery *d, const char *id)
{
	struct delivery_item *it = xcalloc(1, sizeof(*it));

	str_copy(it->id, id, sizeof(it->id));
	pthread_mutex_lock(&d->lock);
	delivery_push(d, it);
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void
delivery_set_policy(struct delivery *d, struct policy *pol, bool paused)
{
	struct policy *old;

	pthread_mutex_lock(&d->lock);
	old = d->pol;
	d->pol = policy_ref(pol);
	d->paused = paused;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	policy_unref(old);
}

static bool
delivery_has_done(const struct delivery_item *it, const char *rcpt)
{
	for (size_t i = 0; i < it->ndone; i++)
		if (strcmp(it->done[i], rcpt) == 0)
			return true;
	return false;
}

/* Deliver one message; true when it is finished (delivered or set aside). */
static bool
delivery_one(struct delivery *d, struct delivery_item *it, struct policy *pol)
{
	struct spool_file f;
	enum spool_status st = spool_file_open(d->spool, it->id, &f);
	size_t failed = 0;
	char path[4096];

	switch (st) {
	case SPOOL_OK:
		break;
	case SPOOL_ENOENT:
		return true; /* already delivered and removed */
	case SPOOL_ECORRUPT:
		log_error("event=spool_corrupt id=%s action=set_aside", it->id);
		if (spool_set_aside(d->spool, it->id) < 0)
			log_error("event=spool_corrupt id=%s error=\"%s\"", it->id,
			          strerror(errno));
		return true;
	case SPOOL_EIO:
		log_error("event=spool_read_error id=%s reason=\"%s\"", it->id, strerror(errno));
		return false;
	}
	for (size_t i = 0; i < f.env.nrcpts; i++) {
		const char *rcpt = f.env.rcpts[i].addr;
		const char *at = strrchr(rcpt, '@');
		const struct policy_route *r = at ? policy_route_for(pol, at + 1) : NULL;

		char q[MAILADDR_FORMAT_MAX * 4 + 3];

		if (delivery_has_done(it, rcpt))
			continue;
		log_quote(q, sizeof(q), rcpt, strlen(rcpt));
		if (r == NULL) {
			log_warn("event=deferred id=%s to=%s reason=\"no route for domain\"",
			         it->id, q);
			failed++;
			continue;
		}
		if (delivery_maildir(d->data_dir, d->hostname, &f, rcpt, path, sizeof(path)) < 0) {
			log_warn("event=deferred id=%s to=%s route=maildir reason=\"%s\"", it->id,
			         q, strerror(errno));
			failed++;
			continue;
		}
		log_info("event=delivered id=%s to=%s route=maildir", it->id, q);
		it->done = xrealloc(it->done, (it->ndone + 1) * sizeof(char *));
		it->done[it->ndone++] = xstrdup(rcpt);
	}
	spool_file_close(&f);
	if (failed)
		return false;
	if (spool_remove(d->spool, it->id) < 0)
		log_error("event=spool_remove id=%s reason=\"%s\"", it->id, strerror(errno));
	return true;
}

static void *
delivery_main(void *arg)
{
	struct delivery *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		uint64_t now = clock_ms(), next = 0;
		struct delivery_item *it, **pp;
		struct policy *pol;

		/* Retries whose time has come go back to the ready queue. */
		for (pp = &d->later; (it = *pp) != NULL;) {
			if (it->not_before_ms <= now) {
				*pp = it->next;
				delivery_push(d, it);
			} else {
				if (next == 0 || it->not_before_ms < next)
					next = it->not_before_ms;
				pp = &it->next;
			}
		}
		if (d->head == NULL || d->paused) {
			if (next) {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				uint64_t wait = next - now;
				ts.tv_sec += (time_t)(wait / 1000);
				ts.tv_nsec += (long)(wait % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&d->cond, &d->lock, &ts);
			} else {
				pthread_cond_wait(&d->cond, &d->lock);
			}
			continue;
		}
		it = d->head;
		d->head = it->next;
		if (d->head == NULL)
			d->tail = NULL;
		pol = policy_ref(d->pol);
		pthread_mutex_unlock(&d->lock);

		bool finished = delivery_one(d, it, pol);
		policy_unref(pol);

		pthread_mutex_lock(&d->lock);
		if (finished) {
			delivery_item_free(it);
		} else {
			it->attempts++;
			it->not_before_ms = clock_ms() + d->retry_ms;
			it->next = d->later;
			d->later = it;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int
delivery_start(struct delivery *d)
{
	if (pthread_create(&d->thread, NULL, delivery_main, d) != 0)
		return -1;
	d->running = true;
	return 0;
}

void
delivery_stop(struct delivery *d)
{
	if (!d->running)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	d->running = false;
}

void
delivery_free(struct delivery *d)
{
	struct delivery_item *it;

	delivery_stop(d);
	while ((it = d->head) != NULL) {
		d->head = it->next;
		delivery_item_free(it);
	}
	while ((it = d->later) != NULL) {
		d->later = it->next;
		delivery_item_free(it);
	}
	policy_unref(d->pol);
	free(d->data_dir);
	free(d->hostname);
	free(d);
}
