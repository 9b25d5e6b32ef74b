/*
 * scan_pool.h - scan workers: messages go in from the event loop, run
 * scan_run() on a worker thread, and their verdict comes back to the loop.
 */
#ifndef MOAT_SCAN_POOL_H
#define MOAT_SCAN_POOL_H

#include "scan.h"

struct event_base;
struct scan_pool;
struct scan_job;

/* Called on the loop thread with the finished job; the callee frees it (scan_job_free). */
typedef void (*scan_done_fn)(void *arg, struct scan_job *job);

/* workers: 0 = one per CPU. env must outlive the pool. */
struct scan_pool *scan_pool_start(struct event_base *base, const struct scan_env *env,
                                  unsigned workers);
/* Stop the workers; jobs not started are finished as tempfail ("shutting down"). */
void scan_pool_stop(struct scan_pool *p);

/*
 * Queue a scan. in (and what it points to) must stay valid until fn runs;
 * cfg and pol are referenced by the job. fn always runs, later, on the
 * loop thread.
 */
struct scan_job *scan_pool_submit(struct scan_pool *p, struct config *cfg, struct policy *pol,
                                  const struct scan_input *in, scan_done_fn fn, void *arg);
struct scan_result *scan_job_result(struct scan_job *j);
/* CPU time the scan took on its worker, microseconds. */
uint64_t scan_job_cpu_us(const struct scan_job *j);
void scan_job_free(struct scan_job *j);

#endif
