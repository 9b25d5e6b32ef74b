/*
 * moatd.c - the moat daemon: configuration, privileges, signals and the
 * start-up order that makes "250 means on disk" true from the first
 * message on.
 *
 * Start-up: load the config (any error names file and line and stops
 * here) -> bind the listeners, SMTP and admin (as root, if started as
 * root) -> drop to the configured user -> open the store, seed it, build
 * the policy -> open the spool, reconcile quarantine/ with the store,
 * recover the queue (incoming/ is emptied, queue/ goes to delivery) ->
 * start the commit and delivery threads -> start the admin API -> accept
 * connections.
 *
 * Signals (handled on the event loop): SIGHUP reloads the config file and
 * the TLS certificate; live sessions keep what they started with, and a
 * bad file leaves everything as it was. SIGTERM/SIGINT stop accepting,
 * let transactions in progress finish for up to smtp_shutdown_timeout,
 * then wait for pending commits and exit.
 */
#include "../api/api.h"
#include "../quarantine/quarantine.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../delivery/delivery.h"
#include "../policy/policy.h"
#include "../scan/scan_pool.h"
#include "../store/store.h"
#include "../store/store_writer.h"
#include "../smtp/smtp.h"
#include "../smtp/smtp_tls.h"
#include "../spool/spool.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOATD_DEFAULT_CONFIG "/etc/moat/moat.conf"

struct moatd {
	const char *config_path;
	struct event_base *base;
	struct config *cfg;
	struct policy *pol;
	struct spool *spool;
	struct smtp_server *smtp;
	struct delivery *delivery;
	struct scan_env *scan_env;
	struct scan_pool *scan;
	struct store_writer *store;
	char *store_url;
	struct store *pstore; /* the main thread's connection: policy (rules, lists) */
	struct api *api;
	struct event *ev_hup, *ev_term, *ev_int;
	struct event *ev_policy; /* the admin API changed rules or lists in the store */
};

static void
usage(void)
{
	fprintf(stderr, "usage: moatd [-c config] [-t] [--options] [--symbols]\n"
	                "  -c FILE    configuration file (default " MOATD_DEFAULT_CONFIG ")\n"
	                "  -t         check the configuration and exit\n"
	                "  --options  print the table of configuration options (Markdown)\n"
	                "  --symbols  print the table of scan symbols (Markdown)\n");
	exit(2);
}

static void
moatd_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (geteuid() == 0 && rl.rlim_max < 65536)
		rl.rlim_max = 65536;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* As root: make data_dir belong to the user, then become that user. */
static void
moatd_drop_privileges(const struct config *c)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	if ((pw = getpwnam(c->user)) == NULL)
		fatalx("user '%s' does not exist: create it (useradd --system --no-create-home "
		       "--shell /usr/sbin/nologin %s) or set 'user' in %s",
		       c->user, c->user, c->path);
	if (pw->pw_uid == 0)
		fatalx("user '%s' is root: moatd will not run as root after binding", c->user);
	if (mkdir(c->data_dir, 0700) < 0 && errno != EEXIST)
		fatal("mkdir %s", c->data_dir);
	if (chown(c->data_dir, pw->pw_uid, pw->pw_gid) < 0)
		fatal("chown %s", c->data_dir);
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		fatal("cannot drop privileges to %s", c->user);
	if (setuid(0) == 0)
		fatalx("privileges were not dropped");
	log_info("event=privileges_dropped user=%s uid=%u", c->user, (unsigned)pw->pw_uid);
}

static void
moatd_recovered(void *arg, const char *id)
{
	delivery_enqueue(arg, id);
}

static void
moatd_committed(void *arg, const char *id)
{
	delivery_enqueue(arg, id);
}

/*
 * Hand a new config and policy (both references taken over) to every part
 * that holds them; -1 with err, and both dropped, if SMTP refuses them
 * (a TLS certificate that does not load): then nothing changed.
 */
static int
moatd_apply(struct moatd *m, struct config *c, struct policy *p, char *err, size_t errsize)
{
	if (smtp_server_reload(m->smtp, c, p, err, errsize) < 0) {
		policy_unref(p);
		config_unref(c);
		return -1;
	}
	delivery_reconfigure(m->delivery, c, p);
	api_reconfigure(m->api, c, p);
	config_unref(m->cfg);
	policy_unref(m->pol);
	m->cfg = c;
	m->pol = p;
	return 0;
}

static bool
moatd_same_listen(const struct config_listen_list *a, const struct config_listen_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->addr[i].text, b->addr[i].text) != 0)
			return false;
	return true;
}

static void
moatd_reload(struct moatd *m)
{
	char err[1024];
	struct config *c = config_load(m->config_path, err, sizeof(err));
	struct policy *p;

	if (c == NULL) {
		log_error("event=reload status=failed reason=\"%s\" action=\"kept the running "
		          "configuration\"",
		          err);
		return;
	}
	if (strcmp(c->data_dir, m->cfg->data_dir) != 0 || strcmp(c->user, m->cfg->user) != 0 ||
	    c->spool_min_free != m->cfg->spool_min_free ||
	    c->spool_writers != m->cfg->spool_writers || c->log_target != m->cfg->log_target ||
	    strcmp(c->hostname, m->cfg->hostname) != 0)
		log_warn(
		        "event=reload warning=\"data_dir, user, spool_min_free, spool_writers, "
		        "log_target and (for delivery) hostname take effect at the next restart\"");
	if (!moatd_same_listen(&c->admin_listen, &m->cfg->admin_listen) ||
	    strcmp(c->admin_tls_cert, m->cfg->admin_tls_cert) != 0 ||
	    strcmp(c->admin_tls_key, m->cfg->admin_tls_key) != 0)
		log_warn("event=reload warning=\"admin_listen, admin_tls_cert and admin_tls_key "
		         "take "
		         "effect at the next restart (the admin listener is bound as root)\"");
	if ((p = policy_from_store(c, m->pstore, POLICY_STRICT, err, sizeof(err))) == NULL) {
		log_error("event=reload status=failed reason=\"%s\" action=\"kept the running "
		          "configuration\"",
		          err);
		config_unref(c);
		return;
	}
	if (moatd_apply(m, c, p, err, sizeof(err)) < 0) {
		log_error("event=reload status=failed reason=\"%s\" action=\"kept the running "
		          "configuration\"",
		          err);
		return;
	}
	log_set_level(c->log_level);
	log_info("event=reload status=ok domains=%zu", policy_domain_count(p));
}

/*
 * Rules or lists changed in the store (the admin API): the policy is
 * built again from the store with the running configuration, as a
 * SIGHUP would.
 */
static void
moatd_policy_rebuild(struct moatd *m)
{
	char err[1024];
	/* every change asked for so far is in the store this reads */
	uint64_t gen = api_policy_rebuild_begin(m->api);
	struct policy *p = policy_from_store(m->cfg, m->pstore, POLICY_STRICT, err, sizeof(err));

	if (p == NULL || moatd_apply(m, config_ref(m->cfg), p, err, sizeof(err)) < 0) {
		log_error("event=policy_rebuild status=failed reason=\"%s\" action=\"kept the "
		          "running policy\"",
		          err);
		api_policy_rebuild_end(m->api, gen);
		return;
	}
	log_info("event=policy_rebuild status=ok domains=%zu", policy_domain_count(p));
	api_policy_rebuild_end(m->api, gen);
}

static void
moatd_policy_cb(evutil_socket_t fd, short what, void *arg)
{
	moatd_policy_rebuild(arg);
}

/* The admin API's hook, on its thread: rebuild on the main loop (requests coalesce). */
static void
moatd_policy_changed(void *arg)
{
	struct moatd *m = arg;

	event_active(m->ev_policy, EV_READ, 0);
}

static void
moatd_stopped(void *arg)
{
	struct moatd *m = arg;

	event_base_loopexit(m->base, NULL);
}

static void
moatd_signal(evutil_socket_t sig, short what, void *arg)
{
	struct moatd *m = arg;

	if (sig == SIGHUP) {
		moatd_reload(m);
		return;
	}
	log_info("event=signal signal=%s", sig == SIGTERM ? "TERM" : "INT");
	smtp_server_shutdown(m->smtp, moatd_stopped, m);
}

int
main(int argc, char **argv)
{
	struct moatd m = {.config_path = MOATD_DEFAULT_CONFIG};
	bool check_only = false;
	char err[1024];
	long queued;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			m.config_path = argv[++i];
		} else if (strcmp(argv[i], "-t") == 0) {
			check_only = true;
		} else if (strcmp(argv[i], "--options") == 0) {
			config_print_options(stdout);
			return 0;
		} else if (strcmp(argv[i], "--symbols") == 0) {
			scan_print_symbols(stdout);
			return 0;
		} else {
			usage();
		}
	}
	log_init("moatd", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
	if ((m.cfg = config_load(m.config_path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "moatd: %s\n", err);
		return 1;
	}
	if (check_only) {
		SSL_CTX *tls = smtp_tls_ctx_new(m.cfg, err, sizeof(err));

		if (tls == NULL && err[0] != '\0') {
			fprintf(stderr, "moatd: %s: %s\n", m.config_path, err);
			return 1;
		}
		SSL_CTX_free(tls);
		printf("moatd: %s: configuration ok (%zu domains)\n", m.config_path,
		       m.cfg->ndomains);
		return 0;
	}
	log_init("moatd", m.cfg->log_target, m.cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	moatd_raise_nofile();
	{
		struct rlimit rl;
		/* a session needs its socket, and a file while a large message spills */
		uint64_t want = m.cfg->smtp_max_sessions * 2 + m.cfg->spool_writers + 64;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
			log_warn(
			        "event=fd_limit limit=%llu wanted=%llu warning=\"smtp_max_sessions "
			        "cannot all be served; raise RLIMIT_NOFILE or lower it\"",
			        (unsigned long long)rl.rlim_cur, (unsigned long long)want);
	}
	if (evthread_use_pthreads() < 0)
		fatalx("libevent has no pthreads support");
	if ((m.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	/* 1. bind, 2. drop privileges, 3. store and policy, 4. spool, 5. accept. */
	m.smtp = smtp_server_new(m.base, m.cfg, NULL);
	if (smtp_server_listen(m.smtp, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if ((m.api = api_new(m.cfg, NULL, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	moatd_drop_privileges(m.cfg);
	m.store_url =
	        m.cfg->store[0] ? xstrdup(m.cfg->store) : xasprintf("%s/moat.db", m.cfg->data_dir);
	if ((m.pstore = store_open(m.store_url, err, sizeof(err))) == NULL)
		fatalx("store %s: %s", m.store_url, err);
	if (policy_seed(m.cfg, m.pstore, err, sizeof(err)) < 0 ||
	    (m.pol = policy_from_store(m.cfg, m.pstore, 0, err, sizeof(err))) == NULL)
		fatalx("store %s: %s", m.store_url, err);
	smtp_server_set_policy(m.smtp, m.pol);
	if (smtp_server_tls_load(m.smtp, err, sizeof(err)) < 0)
		fatalx("%s: %s", m.config_path, err);
	if ((m.spool = spool_open(m.cfg->data_dir, m.cfg->spool_min_free, err, sizeof(err))) ==
	    NULL)
		fatalx("spool: %s", err);
	smtp_server_set_spool(m.smtp, m.spool);
	/* scanning is set up even with scan = no, so that a SIGHUP can turn it on */
	if ((m.scan_env = scan_env_new(m.cfg, true, err, sizeof(err))) == NULL)
		fatalx("scan: %s", err);
	m.scan = scan_pool_start(m.base, m.scan_env, (unsigned)m.cfg->scan_workers);
	smtp_server_set_scan(m.smtp, m.scan);
	/* tracking and quarantine records, written off the mail path */
	if ((m.store = store_writer_start(m.store_url, err, sizeof(err))) == NULL)
		fatalx("store %s: %s", m.store_url, err);
	log_info("event=store path=%s", m.store_url);
	smtp_server_set_store(m.smtp, m.store);
	m.delivery = delivery_new(m.spool, m.cfg, m.pol);
	delivery_set_scan_env(m.delivery, m.scan_env);
	delivery_set_store(m.delivery, m.store);
	{
		char *path = m.cfg->control_socket[0]
		                     ? xstrdup(m.cfg->control_socket)
		                     : xasprintf("%s/control.sock", m.cfg->data_dir);

		if (delivery_control_open(m.delivery, path, err, sizeof(err)) < 0)
			fatalx("%s", err);
		log_info("event=control path=%s", path);
		free(path);
	}
	{
		/*
		 * Before delivery runs: a released message still in quarantine/
		 * is told apart by its queue file, which delivery could otherwise
		 * deliver and remove first (and the release be undone).
		 */
		struct quarantine_ctx q = {
		        .store = m.pstore, .spool = m.spool, .cfg = m.cfg, .pol = m.pol};
		struct quarantine_reconcile_report rep;

		if (quarantine_reconcile(&q, &rep) != QUAR_OK)
			log_warn("event=quarantine_reconcile warning=\"incomplete; the quarantine "
			         "still serves what it has\"");
	}
	if ((queued = spool_recover(m.spool, moatd_recovered, m.delivery)) < 0)
		fatal("spool recovery in %s", m.cfg->data_dir);
	if (spool_start(m.spool, m.base, (unsigned)m.cfg->spool_writers, moatd_committed,
	                m.delivery) < 0)
		fatalx("cannot start the spool commit threads");
	if (delivery_start(m.delivery) < 0)
		fatalx("cannot start the delivery thread");
	m.ev_policy = event_new(m.base, -1, 0, moatd_policy_cb, &m);
	{
		struct api_deps deps = {
		        .store_url = m.store_url,
		        .spool = m.spool,
		        .delivery = m.delivery,
		        .control = delivery_control(m.delivery),
		        .scan_env = m.scan_env,
		        .policy_changed = moatd_policy_changed,
		        .arg = &m,
		        .writer = m.store,
		};

		api_reconfigure(m.api, m.cfg, m.pol);
		if (api_start(m.api, &deps, err, sizeof(err)) < 0)
			fatalx("admin API: %s", err);
	}

	m.ev_hup = evsignal_new(m.base, SIGHUP, moatd_signal, &m);
	m.ev_term = evsignal_new(m.base, SIGTERM, moatd_signal, &m);
	m.ev_int = evsignal_new(m.base, SIGINT, moatd_signal, &m);
	evsignal_add(m.ev_hup, NULL);
	evsignal_add(m.ev_term, NULL);
	evsignal_add(m.ev_int, NULL);

	smtp_server_enable(m.smtp);
	log_info("event=started version=" MOAT_VERSION " hostname=%s domains=%zu queued=%ld "
	         "delivery=%s",
	         m.cfg->hostname, policy_domain_count(m.pol), queued,
	         m.cfg->delivery_paused ? "paused" : "on");
	event_base_dispatch(m.base);

	/* Sessions are gone; scans end by their deadline; commits finish, then delivery. */
	scan_pool_stop(m.scan);
	spool_stop(m.spool);
	api_free(m.api); /* it calls into delivery and the main loop's policy event */
	event_free(m.ev_policy);
	delivery_free(m.delivery);
	smtp_server_free(m.smtp);
	event_free(m.ev_hup);
	event_free(m.ev_term);
	event_free(m.ev_int);
	spool_close(m.spool);
	store_writer_stop(m.store); /* after delivery: it writes what is queued */
	store_close(m.pstore);
	free(m.store_url);
	scan_env_free(m.scan_env);
	policy_unref(m.pol);
	config_unref(m.cfg);
	event_base_free(m.base);
	log_info("event=stopped");
	return 0;
}
