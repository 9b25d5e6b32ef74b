/*
 * moatctl.c - moat from the shell. The queue and stats commands talk to a
 * running moatd over its control socket (src/control/), on the host; the
 * rest (quarantine, tracking, lists, rules, users, tokens, audit, config)
 * go to the admin HTTP API (moatctl_api.c, moatctl_cmd.c), from anywhere
 * a token works; `--api` sends the queue commands there too. Answers are
 * text, or the JSON as it came (--json) for scripts.
 *
 * Exit status (the same for every command; enum moatctl_exit): 0 done;
 * 1 refused (unknown id, conflict, a 4xx); 2 bad usage; 3 moatd cannot be
 * reached (or a 5xx); 4 no token or not allowed (401, 403).
 */
#include "moatctl.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MOATCTL_REPLY_MAX (64 * 1024 * 1024)
#define MOATCTL_TIMEOUT   60 /* seconds to wait for moatd's answer */

struct moatctl_sockcmd {
	const char *words; /* "queue hold" */
	const char *args;  /* "ID" */
	const char *cmd;   /* control command */
	const char *help;
	void (*print)(json_t *resp);
};

static bool json_out;

/* A string member for printing; "" when missing. */
static const char *
jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

static void
print_time(json_int_t t)
{
	char buf[32];
	time_t tt = (time_t)t;
	struct tm tm;

	localtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%s", buf);
}

static void
print_rcpts(json_t *msg, bool full)
{
	size_t i;
	json_t *r;

	json_array_foreach (json_object_get(msg, "recipients"), i, r) {
		const char *reply = jstr(r, "last_reply");

		printf("    -> %-40s %-9s", jstr(r, "to"), jstr(r, "state"));
		if (reply)
			printf(" %s", reply);
		if (full && json_object_get(r, "remote"))
			printf(" (from %s)", jstr(r, "remote"));
		printf("\n");
	}
}

void
moatctl_queue_print_list(json_t *resp)
{
	size_t i;
	json_t *m;

	json_array_foreach (json_object_get(resp, "messages"), i, m) {
		printf("%s  %8lld  ", jstr(m, "id"),
		       (long long)json_integer_value(json_object_get(m, "size")));
		print_time(json_integer_value(json_object_get(m, "received")));
		printf("  <%s>%s\n", jstr(m, "from"),
		       json_is_true(json_object_get(m, "held")) ? "  HELD" : "");
		print_rcpts(m, false);
	}
	printf("%lld message(s) in the queue\n",
	       (long long)json_integer_value(json_object_get(resp, "total")));
}

void
moatctl_queue_print_show(json_t *resp)
{
	json_t *m = json_object_get(resp, "message");
	json_t *next = json_object_get(m, "next_attempt_in_s");

	printf("id:        %s\n", jstr(m, "id"));
	printf("from:      <%s>\n", jstr(m, "from"));
	printf("received:  ");
	print_time(json_integer_value(json_object_get(m, "received")));
	printf(" from %s (%s) with %s\n", jstr(m, "helo"), jstr(m, "client"), jstr(m, "protocol"));
	printf("size:      %lld\n", (long long)json_integer_value(json_object_get(m, "size")));
	printf("held:      %s\n", json_is_true(json_object_get(m, "held")) ? "yes" : "no");
	printf("attempts:  %lld", (long long)json_integer_value(json_object_get(m, "attempts")));
	if (next)
		printf(", next in %lld s", (long long)json_integer_value(next));
	printf("\nrecipients:\n");
	print_rcpts(m, true);
}

void
moatctl_queue_print_ok(json_t *resp)
{
	json_t *n = json_object_get(resp, "retried");

	if (n)
		printf("%lld message(s) scheduled now\n", (long long)json_integer_value(n));
	else
		printf("ok\n");
}

void
moatctl_queue_print_stats(json_t *resp)
{
	const char *k;
	json_t *v;

	printf("queue:\n");
	json_object_foreach (json_object_get(resp, "queue"), k, v)
		printf("  %-28s %lld\n", k, (long long)json_integer_value(v));
	printf("counters:\n");
	json_object_foreach (json_object_get(resp, "counters"), k, v)
		printf("  %-28s %lld\n", k, (long long)json_integer_value(v));
}

static const struct moatctl_sockcmd moatctl_sockcmds[] = {
        {"queue list", "", "queue.list", "list the messages waiting for delivery",
         moatctl_queue_print_list},
        {"queue show", "ID", "queue.show", "show one message and each recipient's state",
         moatctl_queue_print_show},
        {"queue retry", "ID|all", "queue.retry", "try to deliver now instead of waiting",
         moatctl_queue_print_ok},
        {"queue hold", "ID", "queue.hold", "stop delivering a message until released",
         moatctl_queue_print_ok},
        {"queue release", "ID", "queue.release", "deliver a held message again",
         moatctl_queue_print_ok},
        {"queue delete", "ID", "queue.delete",
         "remove a message from the queue, without a report to its sender", moatctl_queue_print_ok},
        {"stats", "", "stats", "counters and queue depth", moatctl_queue_print_stats},
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: moatctl [-c CONFIG] [-s SOCKET] [--url URL] [--token-file FILE] [--json]\n"
	        "               COMMAND [ARG]... [--help]\n\n"
	        "On the host, over moatd's control socket (with --api: the admin API):\n");
	for (size_t i = 0; i < nitems(moatctl_sockcmds); i++)
		fprintf(fp, "  %-20s %-9s %s\n", moatctl_sockcmds[i].words,
		        moatctl_sockcmds[i].args, moatctl_sockcmds[i].help);
	fprintf(fp, "  %-20s %-9s %s\n", "scan", "FILE",
	        "run the scan pipeline on a message file (scan --help)");
	fprintf(fp, "\nOver the admin API (a token; token create opens the store):\n");
	moatctl_cmd_usage(fp, false);
	fprintf(fp,
	        "\n  -c CONFIG          moatd's configuration: the control socket, the store, "
	        "admin_listen\n"
	        "                     (default " MOATCTL_DEFAULT_CONFIG ")\n"
	        "  -s SOCKET          the control socket itself\n"
	        "  --url URL          the admin API (default: MOAT_URL, else "
	        "http(s)://admin_listen)\n"
	        "  --token-file FILE  the API token (default: MOAT_TOKEN, else MOAT_TOKEN_FILE);\n"
	        "                     never on the command line, where ps shows it\n"
	        "  --api              queue and stats over the admin API, not the socket\n"
	        "  --json             print the JSON answer as it is\n"
	        "  COMMAND --help     help for one command\n"
	        "\nExit status: 0 done; 1 refused (4xx: unknown id, conflict, invalid); 2 bad "
	        "usage;\n"
	        "3 cannot reach moatd (connection, timeout, 5xx); 4 no token or not allowed "
	        "(401, 403).\n");
}

/* Send one request, read one line back. */
static json_t *
moatctl_call(const char *sock, json_t *req)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *text = json_dumps(req, JSON_COMPACT), *line = NULL;
	size_t cap = 0;
	json_error_t jerr;
	json_t *resp;
	FILE *fp;
	int fd;

	if (str_copy(sun.sun_path, sock, sizeof(sun.sun_path)) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "moatctl: socket path too long: %s\n", sock);
		exit(3);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){MOATCTL_TIMEOUT, 0},
	               sizeof(struct timeval)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr,
		        "moatctl: cannot reach moatd at %s: %s (is it running? are you root or "
		        "the moat user?)\n",
		        sock, strerror(errno));
		exit(3);
	}
	if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0) {
		fprintf(stderr, "moatctl: write to %s: %s\n", sock, strerror(errno));
		exit(3);
	}
	free(text);
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		fprintf(stderr, "moatctl: fdopen: %s\n", strerror(errno));
		exit(3);
	}
	/* one line, bounded */
	for (size_t len = 0;;) {
		int ch = getc(fp);

		if (ch == EOF || ch == '\n') {
			if (ch == EOF && len == 0) {
				fprintf(stderr, "moatctl: no answer from moatd%s\n",
				        errno == EAGAIN ? " (timed out)" : "");
				exit(3);
			}
			break;
		}
		if (len + 2 > cap) {
			if (cap >= MOATCTL_REPLY_MAX) {
				fprintf(stderr, "moatctl: moatd's answer is over %d bytes\n",
				        MOATCTL_REPLY_MAX);
				exit(3);
			}
			cap = cap ? cap * 2 : 4096;
			line = xrealloc(line, cap);
		}
		line[len++] = (char)ch;
		line[len] = '\0';
	}
	fclose(fp);
	resp = json_loads(line, 0, &jerr);
	free(line);
	if (resp == NULL) {
		fprintf(stderr, "moatctl: moatd's answer is not JSON: %s\n", jerr.text);
		exit(3);
	}
	return resp;
}

int
main(int argc, char **argv)
{
	struct moatctl_global g = {.config = MOATCTL_DEFAULT_CONFIG};
	const char *config = MOATCTL_DEFAULT_CONFIG, *sock = NULL;
	char words[64] = "", err[1024], *sockbuf = NULL;
	const struct moatctl_sockcmd *c = NULL;
	const char *arg = NULL;
	bool help = false;
	json_t *req, *resp;
	int i, rc;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			g.config = config = argv[++i];
		else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			sock = argv[++i];
		else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			g.url = argv[++i];
		else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc)
			g.token_file = argv[++i];
		else if (strcmp(argv[i], "--api") == 0)
			g.api = true;
		else if (strcmp(argv[i], "--json") == 0)
			g.json = json_out = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--token") == 0) {
			fprintf(stderr,
			        "moatctl: a token is not taken as an argument (ps shows "
			        "arguments to every user): set MOAT_TOKEN or use --token-file\n");
			return 2;
		} else {
			usage(stderr);
			return 2;
		}
	}
	/* scan runs here, not in moatd */
	if (i < argc && strcmp(argv[i], "scan") == 0)
		return moatctl_scan(config, argc - i - 1, argv + i + 1, json_out);
	/* the socket's commands, unless --api or --url asks for the API */
	for (int k = i; k < argc; k++)
		if (strcmp(argv[k], "--api") == 0 || strcmp(argv[k], "--url") == 0 ||
		    strncmp(argv[k], "--url=", 6) == 0)
			g.api = true;
	if (g.url != NULL)
		g.api = true;
	if (i < argc) {
		bool sockcmd = false;

		snprintf(words, sizeof(words), "%s%s%s", argv[i], i + 1 < argc ? " " : "",
		         i + 1 < argc ? argv[i + 1] : "");
		for (size_t k = 0; k < nitems(moatctl_sockcmds); k++)
			if (strcmp(argv[i], moatctl_sockcmds[k].words) == 0 ||
			    strcmp(words, moatctl_sockcmds[k].words) == 0)
				sockcmd = true;
		words[0] = '\0';
		if ((!sockcmd || g.api) &&
		    (moatctl_cmd_known(argv[i]) ||
		     (i + 1 < argc &&
		      snprintf(words, sizeof(words), "%s %s", argv[i], argv[i + 1]) > 0 &&
		      moatctl_cmd_known(words))))
			return moatctl_cmd_main(&g, argc - i, argv + i);
		words[0] = '\0';
	}
	/* the command is one or two words; then its argument; --help anywhere */
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			help = true;
			continue;
		}
		if (strcmp(argv[i], "--json") == 0) {
			json_out = true;
			continue;
		}
		if (c == NULL) {
			if (words[0])
				strncat(words, " ", sizeof(words) - strlen(words) - 1);
			strncat(words, argv[i], sizeof(words) - strlen(words) - 1);
			for (size_t k = 0; k < nitems(moatctl_sockcmds); k++)
				if (strcmp(words, moatctl_sockcmds[k].words) == 0)
					c = &moatctl_sockcmds[k];
			continue;
		}
		if (arg != NULL) {
			fprintf(stderr, "moatctl: %s takes one argument\n", c->words);
			return 2;
		}
		arg = argv[i];
	}
	if (c == NULL) {
		if (words[0])
			fprintf(stderr, "moatctl: unknown command '%s'\n\n", words);
		usage(stderr);
		return 2;
	}
	if (help) {
		printf("usage: moatctl %s %s\n  %s\n"
		       "  Over moatd's control socket (-c CONFIG or -s SOCKET); with --api, over\n"
		       "  the admin API (moatctl %s --api --help).\n",
		       c->words, c->args, c->help, c->words);
		return 0;
	}
	if (c->args[0] && arg == NULL) {
		fprintf(stderr, "usage: moatctl %s %s\n", c->words, c->args);
		return 2;
	}
	if (!c->args[0] && arg != NULL) {
		fprintf(stderr, "moatctl: %s takes no argument\n", c->words);
		return 2;
	}
	if (sock == NULL) {
		struct config *cfg;

		log_init("moatctl", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
		if ((cfg = config_load(config, err, sizeof(err))) == NULL) {
			fprintf(stderr, "moatctl: %s (use -c CONFIG or -s SOCKET)\n", err);
			return 3;
		}
		sockbuf = cfg->control_socket[0] ? xstrdup(cfg->control_socket)
		                                 : xasprintf("%s/control.sock", cfg->data_dir);
		config_unref(cfg);
		sock = sockbuf;
	}
	req = json_pack("{s:s}", "cmd", c->cmd);
	if (arg)
		json_object_set_new(req, "id", json_string(arg));
	resp = moatctl_call(sock, req);
	json_decref(req);
	rc = json_is_true(json_object_get(resp, "ok")) ? 0 : 1;
	if (json_out) {
		char *text = json_dumps(resp, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", text);
		free(text);
	} else if (rc == 0) {
		c->print(resp);
	} else {
		fprintf(stderr, "moatctl: %s\n", jstr(resp, "error"));
	}
	json_decref(resp);
	free(sockbuf);
	return rc;
}
