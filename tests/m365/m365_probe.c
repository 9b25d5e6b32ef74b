/*
 * m365_probe.c - drive src/m365's client (m365_client.h) from the command
 * line, for tests/m365/test_client.py (which runs tests/m365/emulator.py).
 *
 * usage: m365_probe signin --authority URL --tenant T --client-id ID
 *                   [--ca-file F] [--exo URL] [--upn UPN] [--cmdlets FILE]
 *                   [--timeout S] [--retries N] [--wait-max-ms MS]
 *
 * Signs in with the device code flow (polling with real sleeps), then runs
 * each {"cmdlet": ..., "parameters": {...}} of the JSON array in FILE.
 * Output, one JSON object a line, flushed:
 *   {"event":"code","user_code","verification_uri","interval","expires_in"}
 *   {"event":"token","upn","tenant_id","expires_in"}   (never the token)
 *   {"event":"result","cmdlet","ok":true,"values","warnings","calls","throttled"}
 *   {"event":"error","cmdlet"?,"kind","http_status","aadsts","code","errid",
 *    "extype","text","explain","action","calls"?,"throttled"?}
 * Exit: 0, 1 when the sign-in failed, 3 when a cmdlet failed, 64 on usage.
 */
#include "common/log.h"
#include "common/util.h"
#include "m365/m365_client.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static void
usage(void)
{
	fprintf(stderr, "usage: m365_probe signin --authority URL --tenant T --client-id ID "
	                "[--ca-file F] [--exo URL] [--upn UPN] [--cmdlets FILE] [--timeout S] "
	                "[--retries N] [--wait-max-ms MS]\n");
	exit(64);
}

/* Print one event (stolen) as a line. */
static void
probe_emit(json_t *ev)
{
	char *s = json_dumps(ev, JSON_COMPACT);

	if (s == NULL)
		fatalx("json_dumps failed");
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(ev);
}

static void
probe_error(const struct m365_error *e, const struct m365_exo *x)
{
	json_t *ev =
	        json_pack("{s:s,s:s,s:I,s:i,s:s,s:s,s:s,s:s,s:s,s:s}", "event", "error", "kind",
	                  m365_err_kind_name(e->kind), "http_status", (json_int_t)e->http_status,
	                  "aadsts", e->aadsts, "code", e->code, "errid", e->errid, "extype",
	                  e->extype, "text", e->text, "explain", e->explain, "action", e->action);

	if (ev == NULL)
		fatalx("json_pack failed");
	if (e->cmdlet[0] != '\0')
		json_object_set_new(ev, "cmdlet", json_string(e->cmdlet));
	if (x != NULL) {
		json_object_set_new(ev, "calls", json_integer(x->calls));
		json_object_set_new(ev, "throttled", json_integer(x->throttled));
	}
	probe_emit(ev);
}

static long
probe_number(const char *s)
{
	uint64_t v;

	if (parse_u64(s, strlen(s), 1000000000, &v) < 0)
		usage();
	return (long)v;
}

/* Run each {"cmdlet", "parameters"} of the file; false if one failed. */
static bool
probe_cmdlets(const char *path, struct m365_exo *x)
{
	json_t *list = json_load_file(path, 0, NULL), *item;
	bool ok = true;
	size_t i;

	if (!json_is_array(list))
		fatalx("%s: not a JSON array", path);
	json_array_foreach (list, i, item) {
		const char *cmdlet = json_string_value(json_object_get(item, "cmdlet"));
		json_t *values, *warnings;
		struct m365_error e;

		x->calls = x->throttled = 0;
		if (m365_invoke(x, cmdlet, json_object_get(item, "parameters"), &values, &warnings,
		                &e) < 0) {
			probe_error(&e, x);
			ok = false;
			continue;
		}
		probe_emit(json_pack("{s:s,s:s,s:b,s:o,s:o,s:i,s:i}", "event", "result", "cmdlet",
		                     cmdlet, "ok", 1, "values", values, "warnings", warnings,
		                     "calls", (int)x->calls, "throttled", (int)x->throttled));
	}
	json_decref(list);
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"authority", required_argument, NULL, 'a'},
	        {"tenant", required_argument, NULL, 't'},
	        {"client-id", required_argument, NULL, 'c'},
	        {"ca-file", required_argument, NULL, 'C'},
	        {"exo", required_argument, NULL, 'x'},
	        {"upn", required_argument, NULL, 'u'},
	        {"cmdlets", required_argument, NULL, 'f'},
	        {"timeout", required_argument, NULL, 'T'},
	        {"retries", required_argument, NULL, 'r'},
	        {"wait-max-ms", required_argument, NULL, 'w'},
	        {NULL, 0, NULL, 0},
	};
	struct m365_endpoint ep = {.timeout_s = 10};
	struct m365_exo x = {.ep = &ep};
	const char *cmdlets = NULL, *upn = NULL;
	struct m365_device d;
	struct m365_token tok = {0};
	struct m365_error e;
	int c, rc = 1;

	log_init("m365_probe", LOG_TARGET_STDERR, LOG_LEVEL_WARN);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			ep.authority = optarg;
			break;
		case 't':
			ep.tenant = optarg;
			break;
		case 'c':
			ep.client_id = optarg;
			break;
		case 'C':
			ep.ca_file = optarg;
			break;
		case 'x':
			ep.exo = optarg;
			break;
		case 'u':
			upn = optarg;
			break;
		case 'f':
			cmdlets = optarg;
			break;
		case 'T':
			ep.timeout_s = probe_number(optarg);
			break;
		case 'r':
			x.retries_429 = (int)probe_number(optarg);
			break;
		case 'w':
			x.wait_max_ms = probe_number(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || strcmp(argv[optind], "signin") != 0)
		usage();
	curl_global_init(CURL_GLOBAL_DEFAULT);

	if (m365_device_start(&ep, &d, &e) < 0) {
		probe_error(&e, NULL);
		goto done;
	}
	probe_emit(json_pack("{s:s,s:s,s:s,s:i,s:I}", "event", "code", "user_code", d.user_code,
	                     "verification_uri", d.verification_uri, "interval", d.interval_s,
	                     "expires_in",
	                     (json_int_t)((d.expires_at_ms - wall_ms() + 500) / 1000)));
	if (m365_device_wait(&ep, &d, NULL, &tok, &e) < 0) {
		probe_error(&e, NULL);
		goto done;
	}
	probe_emit(json_pack("{s:s,s:s,s:s,s:I}", "event", "token", "upn", tok.upn, "tenant_id",
	                     tok.tenant_id, "expires_in",
	                     (json_int_t)((tok.expires_at_ms - wall_ms() + 500) / 1000)));
	rc = 0;
	if (cmdlets != NULL) {
		x.tenant = tok.tenant_id;
		x.upn = upn ? upn : tok.upn;
		x.token = tok.access;
		if (!probe_cmdlets(cmdlets, &x))
			rc = 3;
	}
done:
	m365_device_clear(&d);
	m365_token_clear(&tok);
	curl_global_cleanup();
	return rc;
}
