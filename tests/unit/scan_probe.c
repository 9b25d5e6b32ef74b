/*
 * scan_probe.c - run one check of the scan pipeline on a file, for
 * tests/scan/test_clamd.py (which runs a real clamd, a real rspamd and
 * small misbehaving servers of its own).
 *
 * usage: scan_probe [-R] [-i IP] [-H HELO] [-f SENDER] [-r RCPT]... [-q QUEUE_ID]
 *                   [-d DEADLINE_MS] [-C CLAMD] [-U RSPAMD_URL]
 *                   clamd|gtube|rspamd [KEY=VALUE]... FILE
 *
 * KEY=VALUE are configuration options (clamd=unix:/path, clamd_timeout=2s,
 * rspamd_url=..., rspamd_required=yes), parsed as moatd parses its file,
 * over the defaults. -R marks the message as released from quarantine;
 * -d sets the scan deadline that many milliseconds from now. -C and -U
 * set clamd and rspamd_url after the configuration is checked, to test
 * the checks with values the configuration parser would refuse.
 *
 * Output, one line each:
 *   sym NAME SCORE DETAIL      (DETAIL "-" when none), in the order emitted
 *   tempfail REASON
 *   done
 */
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "scan/scan_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#define PROBE_FILE_MAX (64 * 1024 * 1024)
#define PROBE_RCPT_MAX 1000

static void
usage(void)
{
	fprintf(stderr, "usage: scan_probe [-R] [-i IP] [-H HELO] [-f SENDER] [-r RCPT]... "
	                "[-q QUEUE_ID] [-d DEADLINE_MS] [-C CLAMD] [-U RSPAMD_URL] "
	                "clamd|gtube|rspamd [KEY=VALUE]... FILE\n");
	exit(64);
}

/* The whole file, at most PROBE_FILE_MAX octets. */
static unsigned char *
probe_read(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf = xmalloc(PROBE_FILE_MAX);
	size_t n;

	if (fp == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		exit(1);
	}
	n = fread(buf, 1, PROBE_FILE_MAX, fp);
	if (ferror(fp) || !feof(fp)) {
		fprintf(stderr, "%s: unreadable or larger than %d octets\n", path, PROBE_FILE_MAX);
		exit(1);
	}
	fclose(fp);
	*len = n;
	return buf;
}

/* Defaults plus the KEY=VALUE lines, through the configuration parser. */
static struct config *
probe_config(char **kv, int n)
{
	char path[] = "/tmp/scan_probe.XXXXXX", err[512];
	struct config *cfg;
	FILE *fp;
	int fd;

	if ((fd = mkstemp(path)) == -1 || (fp = fdopen(fd, "w")) == NULL)
		fatal("mkstemp");
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(kv[i], '=');

		if (eq == NULL)
			usage();
		fprintf(fp, "%.*s = %s\n", (int)(eq - kv[i]), kv[i], eq + 1);
	}
	fclose(fp);
	cfg = config_load(path, err, sizeof(err));
	unlink(path);
	if (cfg == NULL) {
		fprintf(stderr, "config: %s\n", err);
		exit(1);
	}
	return cfg;
}

int
main(int argc, char **argv)
{
	static const char *rcpts[PROBE_RCPT_MAX];
	struct scan_input in = {.queue_id = "PROBE1",
	                        .client_ip = "192.0.2.1",
	                        .helo = "probe.example",
	                        .sender = "sender@example.org",
	                        .rcpts = rcpts};
	struct scan_task *t = xcalloc(1, sizeof(*t));
	unsigned char *msg;
	struct config *cfg;
	const char *check, *clamd = NULL, *rspamd_url = NULL;
	uint64_t v;
	int c;

	log_init("scan_probe", LOG_TARGET_STDERR, LOG_LEVEL_INFO);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	while ((c = getopt(argc, argv, "C:Rd:f:H:i:q:r:U:")) != -1) {
		switch (c) {
		case 'C':
			clamd = optarg;
			break;
		case 'U':
			rspamd_url = optarg;
			break;
		case 'R':
			in.release = true;
			break;
		case 'd':
			if (parse_u64(optarg, strlen(optarg), 3600000, &v) == -1)
				usage();
			in.deadline_ms = (int64_t)(clock_ms() + v);
			break;
		case 'f':
			in.sender = optarg;
			break;
		case 'H':
			in.helo = optarg;
			break;
		case 'i':
			in.client_ip = optarg;
			break;
		case 'q':
			in.queue_id = optarg;
			break;
		case 'r':
			if (in.nrcpts == PROBE_RCPT_MAX)
				usage();
			rcpts[in.nrcpts++] = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2)
		usage();
	check = argv[0];
	cfg = probe_config(argv + 1, argc - 2);
	if (clamd != NULL) {
		free(cfg->clamd);
		cfg->clamd = xstrdup(clamd);
	}
	if (rspamd_url != NULL) {
		free(cfg->rspamd_url);
		cfg->rspamd_url = xstrdup(rspamd_url);
	}
	msg = probe_read(argv[argc - 1], &in.len);
	in.msg = msg;
	if (in.nrcpts == 0)
		rcpts[in.nrcpts++] = "rcpt@example.com";
	setvbuf(stdout, NULL, _IOLBF, 0);

	t->cfg = cfg;
	t->in = &in;
	t->deadline_ms = in.deadline_ms;
	str_copy(t->client_ip, in.client_ip, sizeof(t->client_ip));
	str_copy(t->helo, in.helo, sizeof(t->helo));

	if (strcmp(check, "clamd") == 0)
		scan_check_clamd(t);
	else if (strcmp(check, "gtube") == 0)
		scan_check_gtube(t);
	else if (strcmp(check, "rspamd") == 0)
		scan_check_rspamd(t);
	else
		usage();

	for (size_t i = 0; i < t->nsyms; i++) {
		enum scan_sym_id id = t->order[i];

		printf("sym %s %.2f %s\n", scan_sym_defs[id].name,
		       scan_sym_defs[id].score + t->extra[id], t->detail[id] ? t->detail[id] : "-");
		free(t->detail[id]);
	}
	if (t->tempfail)
		printf("tempfail %s\n", t->tempfail_reason);
	printf("done\n");

	free(t);
	free(msg);
	config_unref(cfg);
	curl_global_cleanup();
	return 0;
}
