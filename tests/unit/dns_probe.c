/*
 * dns_probe.c - drive src/dns/dns.c from the command line, for
 * tests/dns/test_dns.py (which runs a real unbound server with the zones).
 *
 * usage: dns_probe [-v] [-u IP[@PORT]|system] [-t timeout_ms] MODE ARGS...
 *
 *   mx NAME...      MX of each name, in parallel
 *   addr NAME...    A + AAAA of each name, in parallel
 *   txt NAME...     TXT of each name, in parallel
 *   cancel NAME     queries cancelled at once and after 50 ms never call back
 *   free NAME       dns_free() with queries outstanding calls nothing back
 *   reenter FAST SLOW   callbacks that cancel, start queries and dns_free()
 *   new             dns_new() then dns_free(), no query
 *
 * Output, one line per result:
 *   mx NAME STATUS null=0|1 implicit=0|1 n=N, then per host:
 *   host PREF NAME STATUS ADDR,ADDR|-
 *   addr NAME STATUS ADDR,ADDR|-
 *   txt NAME STATUS truncated=0|1 n=N, then per record: rec HEX
 * A callback that runs inside the dns_* call that started it prints
 * "SYNC" and exits 3; a run longer than 15 s prints "HANG" and exits 2.
 */
#include "common/log.h"
#include "common/util.h"
#include "dns/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#define PROBE_DEADLINE_MS 15000
#define PROBE_QUERIES_MAX 512

static struct event_base *base;
static struct dns *dns;
static size_t outstanding; /* callbacks still expected */
static bool starting;      /* inside a dns_* call */
static bool unexpected;    /* a cancelled query called back */

static void
probe_check_async(void)
{
	if (starting) {
		printf("SYNC\n");
		fflush(stdout);
		_exit(3);
	}
}

static void
probe_done(void)
{
	if (--outstanding == 0)
		event_base_loopbreak(base);
}

/* A name as given on the command line, %XX for octets that would break the line up. */
static const char *
probe_name(const char *name)
{
	static char buf[4 * 256 + 1];
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p != '\0' && o < 4 * 256; p++) {
		if (*p <= ' ' || *p >= 0x7f || *p == '%')
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%%%02X", *p);
		else
			buf[o++] = (char)*p;
	}
	buf[o] = '\0';
	return buf;
}

static void
probe_addrs(const struct sockaddr_storage *addr, size_t n)
{
	char buf[INET6_ADDRSTRLEN];

	if (n == 0)
		printf(" -");
	for (size_t i = 0; i < n; i++) {
		const void *a =
		        addr[i].ss_family == AF_INET
		                ? (const void *)&((const struct sockaddr_in *)&addr[i])->sin_addr
		                : (const void *)&((const struct sockaddr_in6 *)&addr[i])->sin6_addr;
		inet_ntop(addr[i].ss_family, a, buf, sizeof(buf));
		printf("%c%s", i == 0 ? ' ' : ',', buf);
	}
	printf("\n");
}

static void
probe_mx_cb(void *arg, const struct dns_mx_result *r)
{
	probe_check_async();
	printf("mx %s %s null=%d implicit=%d n=%zu\n", probe_name(arg), dns_status_str(r->status),
	       r->null_mx, r->implicit, r->nhosts);
	for (size_t i = 0; i < r->nhosts; i++) {
		const struct dns_mx_host *h = &r->host[i];
		printf("host %u %s %s", h->pref, h->name, dns_status_str(h->addr_status));
		probe_addrs(h->addr, h->naddrs);
	}
	fflush(stdout);
	probe_done();
}

static void
probe_addr_cb(void *arg, const struct dns_addr_result *r)
{
	probe_check_async();
	printf("addr %s %s", probe_name(arg), dns_status_str(r->status));
	probe_addrs(r->addr, r->naddrs);
	fflush(stdout);
	probe_done();
}

static void
probe_txt_cb(void *arg, const struct dns_txt_result *r)
{
	probe_check_async();
	printf("txt %s %s truncated=%d n=%zu\n", probe_name(arg), dns_status_str(r->status),
	       r->truncated, r->n);
	for (size_t i = 0; i < r->n; i++) {
		printf("rec ");
		for (const char *p = r->txt[i]; *p != '\0'; p++)
			printf("%02x", (unsigned char)*p);
		printf("\n");
	}
	fflush(stdout);
	probe_done();
}

/* Callbacks of queries that were cancelled or freed: must never run. */
static void
probe_never_mx(void *arg, const struct dns_mx_result *r)
{
	printf("CALLED mx %s\n", probe_name(arg));
	unexpected = true;
}

static void
probe_never_addr(void *arg, const struct dns_addr_result *r)
{
	printf("CALLED addr %s\n", probe_name(arg));
	unexpected = true;
}

static void
probe_never_txt(void *arg, const struct dns_txt_result *r)
{
	printf("CALLED txt %s\n", probe_name(arg));
	unexpected = true;
}

static void
probe_deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	printf("HANG\n");
	fflush(stdout);
	_exit(2);
}

static void
probe_break_cb(evutil_socket_t fd, short ev, void *arg)
{
	event_base_loopbreak(base);
}

/* Run the loop for ms milliseconds. */
static void
probe_run_for(unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *ev = evtimer_new(base, probe_break_cb, NULL);

	evtimer_add(ev, &tv);
	event_base_dispatch(base);
	event_free(ev);
}

static int
probe_lookups(const char *mode, char **names, int n)
{
	if (n > PROBE_QUERIES_MAX)
		return 1;
	for (int i = 0; i < n; i++) {
		outstanding++;
		starting = true;
		if (strcmp(mode, "mx") == 0)
			dns_mx(dns, names[i], probe_mx_cb, names[i]);
		else if (strcmp(mode, "addr") == 0)
			dns_addr(dns, names[i], probe_addr_cb, names[i]);
		else
			dns_txt(dns, names[i], probe_txt_cb, names[i]);
		starting = false;
	}
	if (outstanding > 0)
		event_base_dispatch(base);
	return outstanding == 0 ? 0 : 1;
}

static struct dns_query *late[2];

static void
probe_cancel_late_cb(evutil_socket_t fd, short ev, void *arg)
{
	for (size_t i = 0; i < nitems(late); i++)
		dns_cancel(late[i]);
	printf("cancelled late\n");
}

/* Cancel one query at once, two once libunbound works on them. */
static int
probe_cancel(char *name, unsigned timeout_ms)
{
	struct timeval tv = {0, 50 * 1000};
	struct event *ev = evtimer_new(base, probe_cancel_late_cb, NULL);
	struct dns_query *q;

	starting = true;
	q = dns_mx(dns, name, probe_never_mx, name);
	late[0] = dns_addr(dns, name, probe_never_addr, name);
	late[1] = dns_txt(dns, name, probe_never_txt, name);
	dns_cancel(q);
	printf("cancelled early\n");
	/* a query for a bad name, failed but not yet called back, can be cancelled too */
	dns_cancel(dns_mx(dns, "bad..name", probe_never_mx, "bad..name"));
	starting = false;
	evtimer_add(ev, &tv);
	probe_run_for(2 * timeout_ms + 500);
	event_free(ev);
	if (unexpected)
		return 1;
	printf("cancel ok\n");
	return 0;
}

/*
 * dns_free() at once, then with the queries in libunbound's hands (and
 * perhaps their answers in its pipe, not yet read: the loop does not run).
 */
static int
probe_free(char *name, const char *upstream, unsigned timeout_ms)
{
	char err[256];

	for (int round = 0; round < 2; round++) {
		struct dns *d = dns_new(base, upstream, timeout_ms, err, sizeof(err));

		if (d == NULL) {
			printf("dns_new: %s\n", err);
			return 1;
		}
		dns_mx(d, name, probe_never_mx, name);
		dns_addr(d, name, probe_never_addr, name);
		dns_txt(d, name, probe_never_txt, name);
		dns_mx(d, "", probe_never_mx, "");
		if (round == 1)
			usleep(100 * 1000);
		dns_free(d);
		probe_run_for(timeout_ms + 200);
	}
	if (unexpected)
		return 1;
	printf("free ok\n");
	return 0;
}

/*
 * Reentrancy: the first of two identical queries to call back cancels
 * the other and starts one with a bad name; that one starts an MX
 * query, whose callback frees the resolver while a slow query is
 * outstanding. Nothing else may call back.
 */
static struct dns_query *twin[2];
static char *fast_name;

static void
reenter_last_cb(void *arg, const struct dns_mx_result *r)
{
	probe_check_async();
	printf("last %s\n", dns_status_str(r->status));
	dns_free(dns);
	dns = NULL;
	printf("freed in callback\n");
	fflush(stdout);
	event_base_loopbreak(base);
}

static void
reenter_bad_cb(void *arg, const struct dns_addr_result *r)
{
	probe_check_async();
	printf("bad %s\n", dns_status_str(r->status));
	starting = true;
	dns_mx(dns, fast_name, reenter_last_cb, NULL);
	starting = false;
}

static void
reenter_twin_cb(void *arg, const struct dns_addr_result *r)
{
	size_t me = (size_t)(uintptr_t)arg;

	probe_check_async();
	printf("twin %s\n", dns_status_str(r->status));
	dns_cancel(twin[me]); /* itself: a no-op */
	dns_cancel(twin[1 - me]);
	twin[0] = twin[1] = NULL;
	starting = true;
	dns_addr(dns, "bad name", reenter_bad_cb, NULL);
	starting = false;
}

static int
probe_reenter(char *fast, char *slow, unsigned timeout_ms)
{
	fast_name = fast;
	starting = true;
	dns_mx(dns, slow, probe_never_mx, slow);
	twin[0] = dns_addr(dns, fast, reenter_twin_cb, (void *)(uintptr_t)0);
	twin[1] = dns_addr(dns, fast, reenter_twin_cb, (void *)(uintptr_t)1);
	starting = false;
	event_base_dispatch(base);
	if (dns != NULL) {
		printf("not freed\n");
		return 1;
	}
	probe_run_for(timeout_ms + 200);
	if (unexpected)
		return 1;
	printf("reenter ok\n");
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: dns_probe [-v] [-u IP[@PORT]|system] [-t timeout_ms] "
	                "mx|addr|txt|cancel|free|reenter|new ARGS...\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *upstream = NULL, *mode;
	unsigned timeout_ms = 2000;
	uint64_t v;
	char err[256];
	struct event *deadline;
	struct timeval tv = {PROBE_DEADLINE_MS / 1000, 0};
	int c, rc = 1;

	log_init("dns_probe", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
	while ((c = getopt(argc, argv, "t:u:v")) != -1) {
		switch (c) {
		case 't':
			if (parse_u64(optarg, strlen(optarg), 60000, &v) == -1)
				usage();
			timeout_ms = (unsigned)v;
			break;
		case 'u':
			upstream = strcmp(optarg, "system") == 0 ? NULL : optarg;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	mode = argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);

	base = event_base_new();
	deadline = evtimer_new(base, probe_deadline_cb, NULL);
	evtimer_add(deadline, &tv);
	if ((dns = dns_new(base, upstream, timeout_ms, err, sizeof(err))) == NULL) {
		printf("dns_new: %s\n", err);
		goto out;
	}
	if (strcmp(mode, "mx") == 0 || strcmp(mode, "addr") == 0 || strcmp(mode, "txt") == 0)
		rc = probe_lookups(mode, argv + 1, argc - 1);
	else if (strcmp(mode, "cancel") == 0 && argc == 2)
		rc = probe_cancel(argv[1], timeout_ms);
	else if (strcmp(mode, "free") == 0 && argc == 2)
		rc = probe_free(argv[1], upstream, timeout_ms);
	else if (strcmp(mode, "reenter") == 0 && argc == 3)
		rc = probe_reenter(argv[1], argv[2], timeout_ms);
	else if (strcmp(mode, "new") == 0 && argc == 1) {
		printf("new ok\n");
		rc = 0;
	} else
		usage();

out:
	dns_free(dns);
	event_free(deadline);
	event_base_free(base);
	return rc;
}
