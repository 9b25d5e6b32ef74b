/*
 * api.h - the admin HTTP API (JSON under /api/v1/, /metrics) and the web
 * portal's files (portal_dir, every other path), on moatd's admin listener
 * (admin_listen, default 127.0.0.1:8025). The contract is docs/openapi.yaml.
 *
 * Thread model: the API runs on its own thread with its own libevent loop
 * (evhttp) and its own store connection, so that store calls and
 * quarantine releases (file syncs, a clamd rescan) never stall SMTP or
 * delivery. It reaches the rest of moatd only through thread-safe calls:
 * delivery_enqueue(), the control commands of the delivery loop
 * (control_call()), stats counters, and the policy_changed hook.
 */
#ifndef MOAT_API_H
#define MOAT_API_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct control;
struct delivery;
struct policy;
struct scan_env;
struct spool;
struct store_writer;

struct api_deps {
	const char *store_url; /* as store_open() takes it */
	struct spool *spool;
	struct delivery *delivery;
	struct control *control; /* the delivery loop's commands (queue.*, stats) */
	const struct scan_env *scan_env;
	/*
	 * Rules or allow/block lists changed in the store: moatd rebuilds
	 * its policy (on its own loop) and hands it back with
	 * api_reconfigure(). Called on the API thread.
	 */
	void (*policy_changed)(void *arg);
	void *arg;
	const struct store_writer *writer; /* /metrics: its drop count; may be NULL */
};

struct api;

/*
 * Bind admin_listen (as root, before privileges are dropped). NULL with
 * err on failure; a struct with no listener when admin_listen is empty.
 */
struct api *api_new(struct config *cfg, struct policy *pol, char *err, size_t errsize);
/*
 * Open the store (moatd has reconciled the quarantine), create the first admin user
 * (printing its one-time password) if there is none, then serve on the
 * API thread. -1 with err on failure.
 */
int api_start(struct api *a, const struct api_deps *deps, char *err, size_t errsize);
/*
 * New config and policy (SIGHUP, policy_changed); any thread; takes
 * references. Session limits, admin_request_max and retention apply at
 * once; admin_listen and the admin certificate at the next start.
 */
void api_reconfigure(struct api *a, struct config *cfg, struct policy *pol);
/*
 * The main loop rebuilds the policy (policy_changed): begin returns the
 * generation of changes it covers (call it before reading the store), end
 * says that rebuild is over, done or refused. An API change waits for it
 * (up to a few seconds) before answering, so the next read sees it.
 */
uint64_t api_policy_rebuild_begin(struct api *a);
void api_policy_rebuild_end(struct api *a, uint64_t gen);
/* Stop serving (requests in progress finish), join the thread, free. */
void api_free(struct api *a);

#endif
