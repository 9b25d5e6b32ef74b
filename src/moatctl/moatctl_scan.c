/*
 * moatctl_scan.c - `moatctl scan FILE.eml`: the scan pipeline moatd runs
 * at the end of DATA, run here on a file, with moatd's configuration
 * (resolver, clamd, rspamd, domains, thresholds). The message gets the
 * Received field moatd would put on it, so relay mode reads the same
 * chain; LF line ends are taken as CRLF.
 */
#include "moatctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/mailaddr.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../scan/scan.h"
#include "../store/store.h"

#define MOATCTL_SCAN_MAX_RCPTS 100

static void
moatctl_scan_usage(FILE *fp)
{
	fprintf(fp,
	        "usage: moatctl [-c CONFIG] [--json] scan FILE.eml [--client-ip IP] [--helo NAME]\n"
	        "              [--from ADDR] [--rcpt ADDR]... [--repeat N]\n"
	        "  Run moatd's scan pipeline on a message file and print the verdict and\n"
	        "  its symbols. FILE '-' reads standard input. Defaults: client 127.0.0.1,\n"
	        "  HELO localhost, the null sender, no recipient (global thresholds).\n"
	        "  --repeat N scans N times and prints the CPU time per scan (all of\n"
	        "  moatctl's threads; DNS answers are cached after the first).\n"
	        "  Exit status: 0 scanned (whatever the verdict), 1 the file could not be\n"
	        "  read or the configuration loaded, 2 usage.\n");
}

/* The file as moatd would spool it: its Received field, then CRLF lines. */
static unsigned char *
moatctl_scan_read(const char *path, const struct config *cfg, const char *ip, const char *helo,
                  size_t *outlen)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t len = 0, cap = 0;
	unsigned char *out = NULL;
	char hdr[1024], date[64];
	time_t now = time(NULL);
	struct tm tm;
	int c, prev = 0, n;

	if (fp == NULL)
		return NULL;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	n = snprintf(hdr, sizeof(hdr),
	             "Received: from %s (%s%s])\r\n\tby %s (moat) with ESMTP id moatctl-scan;\r\n"
	             "\t%s\r\n",
	             helo, strchr(ip, ':') ? "[IPv6:" : "[", ip, cfg->hostname, date);
	if (n < 0 || (size_t)n >= sizeof(hdr))
		n = 0;
	cap = 65536;
	out = xmalloc(cap);
	memcpy(out, hdr, (size_t)n);
	len = (size_t)n;
	while ((c = getc(fp)) != EOF) {
		if (len + 3 > cap) {
			if (cap >= cfg->smtp_max_message_size * 2 + 65536) {
				errno = EFBIG;
				goto fail;
			}
			cap *= 2;
			out = xrealloc(out, cap);
		}
		if (c == '\n' && prev != '\r')
			out[len++] = '\r';
		out[len++] = (unsigned char)c;
		prev = c;
	}
	if (ferror(fp))
		goto fail;
	if (fp != stdin)
		fclose(fp);
	*outlen = len;
	return out;
fail:
	if (fp != stdin)
		fclose(fp);
	free(out);
	return NULL;
}

static void
moatctl_scan_print(const struct scan_result *r, bool json)
{
	if (json) {
		json_t *o = json_object(), *syms = json_array();

		for (size_t i = 0; i < r->nsyms; i++) {
			const struct scan_symbol *s = &r->syms[i];
			json_t *js = json_pack("{s:s, s:f}", "name", scan_sym_defs[s->id].name,
			                       "score", s->score);
			if (s->detail)
				json_object_set_new(js, "detail", json_string(s->detail));
			json_array_append_new(syms, js);
		}
		json_object_set_new(o, "verdict", json_string(scan_verdict_str(r->verdict)));
		json_object_set_new(o, "score", json_real(r->score));
		json_object_set_new(o, "reason", json_string(r->reason));
		json_object_set_new(o, "symbols", syms);
		if (r->head)
			json_object_set_new(o, "headers", json_stringn(r->head, r->head_len));
		char *text = json_dumps(o, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		printf("%s\n", text);
		free(text);
		json_decref(o);
		return;
	}
	printf("verdict: %s\nscore:   %.2f\nreason:  %s\nsymbols:\n", scan_verdict_str(r->verdict),
	       r->score, r->reason);
	for (size_t i = 0; i < r->nsyms; i++) {
		const struct scan_symbol *s = &r->syms[i];

		/* details hold no control characters (scan_sym) */
		printf("  %-26s %7.2f  %s\n", scan_sym_defs[s->id].name, s->score,
		       s->detail ? s->detail : "");
	}
	if (r->head) {
		printf("headers:\n");
		fwrite(r->head, 1, r->head_len, stdout);
	}
}

/*
 * moatd's policy: the rules and lists of its store once moatd has seeded
 * it, else the config file's (moatd has not run yet; nothing is created).
 */
static struct policy *
moatctl_scan_policy(const struct config *cfg)
{
	char *path = cfg->store[0] ? xstrdup(cfg->store) : xasprintf("%s/moat.db", cfg->data_dir);
	struct policy *pol = NULL;
	struct store *st;
	char err[512], when[64];

	if (access(path, R_OK) == 0 && (st = store_open(path, err, sizeof(err))) != NULL) {
		if (store_setting_get(st, "policy.seeded", when, sizeof(when)) == STORE_OK &&
		    (pol = policy_from_store(cfg, st, 0, err, sizeof(err))) == NULL)
			fprintf(stderr, "moatctl: %s: %s; using the config file's rules\n", path,
			        err);
		store_close(st);
	}
	free(path);
	return pol ? pol : policy_from_config(cfg);
}

int
moatctl_scan(const char *config, int argc, char **argv, bool json)
{
	const char *file = NULL, *ip = "127.0.0.1", *helo = "localhost", *from = "";
	const char *rcpts[MOATCTL_SCAN_MAX_RCPTS];
	size_t nrcpts = 0, len;
	struct scan_input in = {0};
	struct scan_result r;
	struct scan_env *env;
	struct config *cfg;
	struct policy *pol;
	unsigned char *msg;
	char err[1024];
	uint64_t repeat = 1;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0) {
			moatctl_scan_usage(stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--client-ip") == 0 && v) {
			ip = v;
			i++;
		} else if (strcmp(a, "--helo") == 0 && v) {
			helo = v;
			i++;
		} else if (strcmp(a, "--from") == 0 && v) {
			from = v;
			i++;
		} else if (strcmp(a, "--repeat") == 0 && v) {
			if (parse_u64(v, strlen(v), 10000000, &repeat) < 0 || repeat == 0) {
				fprintf(stderr, "moatctl: --repeat '%s' is not a count\n", v);
				return 2;
			}
			i++;
		} else if (strcmp(a, "--rcpt") == 0 && v && nrcpts < MOATCTL_SCAN_MAX_RCPTS) {
			rcpts[nrcpts++] = v;
			i++;
		} else if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (file) {
				moatctl_scan_usage(stderr);
				return 2;
			}
			file = a;
		} else {
			moatctl_scan_usage(stderr);
			return 2;
		}
	}
	if (file == NULL) {
		moatctl_scan_usage(stderr);
		return 2;
	}
	{
		unsigned char probe[16];
		if (inet_pton(AF_INET, ip, probe) != 1 && inet_pton(AF_INET6, ip, probe) != 1) {
			fprintf(stderr, "moatctl: --client-ip '%s' is not an IP address\n", ip);
			return 2;
		}
	}
	log_init("moatctl", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
	if ((cfg = config_load(config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "moatctl: %s (use -c CONFIG)\n", err);
		return 1;
	}
	if ((msg = moatctl_scan_read(file, cfg, ip, helo, &len)) == NULL) {
		fprintf(stderr, "moatctl: %s: %s\n", file, strerror(errno));
		config_unref(cfg);
		return 1;
	}
	if ((env = scan_env_new(cfg, false, err, sizeof(err))) == NULL) {
		fprintf(stderr, "moatctl: %s\n", err);
		free(msg);
		config_unref(cfg);
		return 1;
	}
	pol = moatctl_scan_policy(cfg);
	in.msg = msg;
	in.len = len;
	in.queue_id = "moatctl-scan";
	in.client_ip = ip;
	in.helo = helo;
	in.sender = from;
	in.rcpts = rcpts;
	in.nrcpts = nrcpts;
	in.deadline_ms = (int64_t)(clock_ms() + cfg->scan_timeout);
	scan_run(env, cfg, pol, &in, &r);
	if (repeat > 1) {
		/* the first scan warmed the caches (DNS, libmagic); time the others */
		struct rusage r0, r1;
		uint64_t t0 = clock_ms();

		getrusage(RUSAGE_SELF, &r0);
		for (uint64_t k = 1; k < repeat; k++) {
			struct scan_result rr;

			in.deadline_ms = (int64_t)(clock_ms() + cfg->scan_timeout);
			scan_run(env, cfg, pol, &in, &rr);
			scan_result_free(&rr);
		}
		getrusage(RUSAGE_SELF, &r1);
		double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
		                      r0.ru_stime.tv_sec) *
		                     1e6 +
		             (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec +
		                      r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
		fprintf(stderr,
		        "scan: %llu scans of %zu octets: cpu_us_per_scan=%.1f wall_ms=%llu\n",
		        (unsigned long long)(repeat - 1), len, cpu / (double)(repeat - 1),
		        (unsigned long long)(clock_ms() - t0));
	}
	moatctl_scan_print(&r, json);
	scan_result_free(&r);
	scan_env_free(env);
	policy_unref(pol);
	config_unref(cfg);
	free(msg);
	return 0;
}
