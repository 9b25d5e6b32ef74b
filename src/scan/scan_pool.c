/*
 * scan_pool.c - the scan workers (see scan_pool.h).
 *
 * Jobs wait on one list under a mutex; each worker takes the oldest,
 * scans it without any lock held, and puts it on the done list, which an
 * event on the loop drains (the same shape as the spool's commit
 * threads). The deadline of each message is inside scan_run(): every wait
 * of every check is bounded by it, so a worker always comes back.
 */
#include "scan_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../policy/policy.h"

#define SCAN_WORKERS_MAX  256
#define SCAN_WORKER_STACK (8u << 20)

struct scan_job {
	struct config *cfg;
	struct policy *pol;
	const struct scan_input *in;
	scan_done_fn fn;
	void *arg;
	struct scan_result result;
	uint64_t cpu_us;
	TAILQ_ENTRY(scan_job) entry;
};

TAILQ_HEAD(scan_job_list, scan_job);

struct scan_pool {
	const struct scan_env *env;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct scan_job_list pending, done; /* under lock */
	bool stopping;                      /* under lock */
	struct event *done_ev;
	pthread_t threads[SCAN_WORKERS_MAX];
	unsigned nthreads;
};

static uint64_t
scan_thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void *
scan_worker(void *arg)
{
	struct scan_pool *p = arg;
	struct scan_job *j;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (TAILQ_EMPTY(&p->pending) && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if ((j = TAILQ_FIRST(&p->pending)) == NULL)
			break; /* stopping, nothing left */
		TAILQ_REMOVE(&p->pending, j, entry);
		pthread_mutex_unlock(&p->lock);

		uint64_t t0 = scan_thread_cpu_us();
		scan_run(p->env, j->cfg, j->pol, j->in, &j->result);
		j->cpu_us = scan_thread_cpu_us() - t0;

		pthread_mutex_lock(&p->lock);
		TAILQ_INSERT_TAIL(&p->done, j, entry);
		event_active(p->done_ev, EV_TIMEOUT, 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Loop thread: hand finished jobs to their owners. */
static void
scan_pool_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct scan_pool *p = arg;
	struct scan_job_list done = TAILQ_HEAD_INITIALIZER(done);
	struct scan_job *j;

	pthread_mutex_lock(&p->lock);
	TAILQ_CONCAT(&done, &p->done, entry);
	pthread_mutex_unlock(&p->lock);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		j->fn(j->arg, j);
	}
}

struct scan_pool *
scan_pool_start(struct event_base *base, const struct scan_env *env, unsigned workers)
{
	struct scan_pool *p = xcalloc(1, sizeof(*p));
	pthread_attr_t attr;

	if (workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (unsigned)n : 4;
	}
	if (workers > SCAN_WORKERS_MAX)
		workers = SCAN_WORKERS_MAX;
	p->env = env;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	TAILQ_INIT(&p->pending);
	TAILQ_INIT(&p->done);
	if ((p->done_ev = event_new(base, -1, 0, scan_pool_on_done, p)) == NULL)
		fatalx("scan: event_new");
	/* GMime recurses once per nesting level (up to its own limit of 1024) */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SCAN_WORKER_STACK);
	for (p->nthreads = 0; p->nthreads < workers; p->nthreads++)
		if ((errno = pthread_create(&p->threads[p->nthreads], &attr, scan_worker, p)) != 0)
			fatal("scan: pthread_create");
	pthread_attr_destroy(&attr);
	log_info("event=scan_started workers=%u", p->nthreads);
	return p;
}

void
scan_pool_stop(struct scan_pool *p)
{
	struct scan_job *j;

	if (p == NULL)
		return;
	scan_abort_all(); /* scans in progress stop waiting */
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	/* what no worker has taken is answered without a scan */
	while ((j = TAILQ_FIRST(&p->pending)) != NULL) {
		TAILQ_REMOVE(&p->pending, j, entry);
		j->result.verdict = SCAN_TEMPFAIL;
		snprintf(j->result.reason, sizeof(j->result.reason), "shutting down");
		TAILQ_INSERT_TAIL(&p->done, j, entry);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	scan_pool_on_done(-1, 0, p);
	event_free(p->done_ev);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

struct scan_job *
scan_pool_submit(struct scan_pool *p, struct config *cfg, struct policy *pol,
                 const struct scan_input *in, scan_done_fn fn, void *arg)
{
	struct scan_job *j = xcalloc(1, sizeof(*j));

	j->cfg = config_ref(cfg);
	j->pol = policy_ref(pol);
	j->in = in;
	j->fn = fn;
	j->arg = arg;
	pthread_mutex_lock(&p->lock);
	TAILQ_INSERT_TAIL(&p->pending, j, entry);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return j;
}

struct scan_result *
scan_job_result(struct scan_job *j)
{
	return &j->result;
}

uint64_t
scan_job_cpu_us(const struct scan_job *j)
{
	return j->cpu_us;
}

void
scan_job_free(struct scan_job *j)
{
	if (j == NULL)
		return;
	scan_result_free(&j->result);
	config_unref(j->cfg);
	policy_unref(j->pol);
	free(j);
}
