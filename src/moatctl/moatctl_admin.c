/*
 * moatctl_admin.c - `moatctl token`, `users`, `audit`, `health`,
 * `metrics`, and the queue and stats over the API (--api).
 *
 * `token create` is the one command that does not go through the API: it
 * is how the first token comes to exist, so it opens the store itself
 * (the config's store, else data_dir/moat.db), as the user moatd runs as
 * when started as root (so that the database and its WAL files stay
 * moatd's), mints with api_token_mint() and writes the audit entry.
 *
 * Passwords are read from the terminal without echo, or from the first
 * line of standard input, never from the command line.
 */
#include "moatctl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../api/api_token.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../store/store.h"

#define MOATCTL_PASSWORD_MAX 1024

static int64_t
moatctl_admin_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* As root: become the config's user, as moatd does, before touching its files. */
static int
moatctl_admin_become(const struct config *cfg)
{
	struct passwd *pw;

	if (geteuid() != 0 || (pw = getpwnam(cfg->user)) == NULL || pw->pw_uid == 0)
		return 0;
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		fprintf(stderr, "moatctl: cannot become %s: %s\n", cfg->user, strerror(errno));
		return -1;
	}
	return 0;
}

/* Print a new token: alone on standard output (for $(...)), or the JSON. */
static void
moatctl_admin_token_print(struct moatctl_req *r, json_t *o)
{
	const char *token = json_string_value(json_object_get(o, "token"));
	const char *id = json_string_value(json_object_get(o, "id"));
	char scopes[256];

	if (moatctl_req_global(r)->json) {
		moatctl_print_json(o);
		return;
	}
	moatctl_value_str(json_object_get(o, "scopes"), NULL, scopes, sizeof(scopes));
	printf("%s\n", token ? token : "");
	fprintf(stderr,
	        "moatctl: token %s (%s) created; it is shown only this once. Scripts take "
	        "it from MOAT_TOKEN or a file (--token-file, MOAT_TOKEN_FILE; chmod 600).\n",
	        id ? id : "?", scopes);
}

/* token create --api: POST /api/v1/tokens with an admin token. */
static int
moatctl_admin_token_create_api(struct moatctl_req *r, unsigned scopes)
{
	char names[64], *cursor = names, *one;
	struct moatctl_api *a;
	json_t *body, *out;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	api_token_scopes_str(scopes, names, sizeof(names));
	body = json_pack("{s:[]}", "scopes");
	while ((one = strsep(&cursor, ",")) != NULL)
		json_array_append_new(json_object_get(body, "scopes"), json_string(one));
	rc = moatctl_api_json(a, "POST", "tokens", NULL, body, &out);
	json_decref(body);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	moatctl_admin_token_print(r, out);
	json_decref(out);
	return MOATCTL_EXIT_OK;
}

int
moatctl_admin_token_create(struct moatctl_req *r)
{
	const char *scope = moatctl_req_opt(r, "--scope");
	const char *words = moatctl_req_words(r);
	char token[API_TOKEN_LEN + 1], id[API_TOKEN_ID_LEN + 1], names[64], err[1024];
	struct store_audit au = {0};
	enum store_status st;
	struct config *cfg;
	struct store *s;
	unsigned scopes;
	int64_t now = moatctl_admin_now_ms();
	char *path;
	int rc = MOATCTL_EXIT_OK;

	if (api_token_scopes_parse(scope, &scopes) < 0) {
		fprintf(stderr,
		        "moatctl: %s: --scope is read, operate or admin (comma separated), "
		        "not '%s'\n",
		        words, scope);
		return MOATCTL_EXIT_USAGE;
	}
	if (moatctl_req_global(r)->api)
		return moatctl_admin_token_create_api(r, scopes);
	log_init("moatctl", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
	if ((cfg = config_load(moatctl_req_global(r)->config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "moatctl: %s: %s (use -c CONFIG)\n", words, err);
		return MOATCTL_EXIT_UNREACHABLE;
	}
	path = cfg->store[0] ? xstrdup(cfg->store) : xasprintf("%s/moat.db", cfg->data_dir);
	if (moatctl_admin_become(cfg) < 0) {
		rc = MOATCTL_EXIT_UNREACHABLE;
		goto done;
	}
	if ((s = store_open(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "moatctl: %s: %s (run it where moatd's store is, as root or %s)\n",
		        words, err, cfg->user);
		rc = MOATCTL_EXIT_UNREACHABLE;
		goto done;
	}
	if ((st = api_token_mint(s, scopes, now, token, id)) != STORE_OK) {
		fprintf(stderr, "moatctl: %s: %s: %s\n", words, store_status_str(st),
		        st == STORE_ERROR ? store_errmsg(s) : "no token made");
		rc = MOATCTL_EXIT_UNREACHABLE;
		store_close(s);
		goto done;
	}
	au.time_ms = now;
	au.who = "system:moatctl";
	au.action = "token.create";
	au.target = id;
	au.addr = "";
	if ((st = store_audit_add(s, &au)) != STORE_OK)
		fprintf(stderr, "moatctl: %s: warning: no audit entry: %s\n", words,
		        st == STORE_ERROR ? store_errmsg(s) : store_status_str(st));
	store_close(s);
	api_token_scopes_str(scopes, names, sizeof(names));
	{
		/* shaped as what POST /api/v1/tokens answers */
		json_t *o = json_pack("{s:s,s:s,s:[]}", "id", id, "token", token, "scopes");
		char *cursor = names, *one;

		while ((one = strsep(&cursor, ",")) != NULL)
			json_array_append_new(json_object_get(o, "scopes"), json_string(one));
		moatctl_admin_token_print(r, o);
		json_decref(o);
	}
	OPENSSL_cleanse(token, sizeof(token));
done:
	free(path);
	config_unref(cfg);
	return rc;
}

int
moatctl_admin_token_list(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "tokens", NULL, NULL, NULL);
}

int
moatctl_admin_token_delete(struct moatctl_req *r)
{
	return moatctl_req_delete(r, "tokens");
}

/* One line from fp into buf without its line end; -1 at EOF or if too long. */
static int
moatctl_admin_line(FILE *fp, char *buf, size_t size)
{
	size_t len;

	if (fgets(buf, (int)size, fp) == NULL)
		return -1;
	len = strcspn(buf, "\r\n");
	if (buf[len] == '\0' && len == size - 1)
		return -1; /* no line end within the limit */
	buf[len] = '\0';
	return 0;
}

/* Ask on the terminal, without echo (turned off before the prompt, as getpass() does). */
static int
moatctl_admin_ask(FILE *tty, const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	int fd = fileno(tty), rc;
	bool restore = tcgetattr(fd, &old) == 0;

	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	/* the prompt by the descriptor: tty's stream is only read */
	(void)write_all(fd, prompt, strlen(prompt));
	rc = moatctl_admin_line(tty, buf, size);
	if (restore)
		tcsetattr(fd, TCSANOW, &old);
	return rc;
}

/* A new password: asked twice on a terminal, else standard input's first line. */
static int
moatctl_admin_password(const char *words, const char *user, char *buf, size_t size)
{
	FILE *tty = NULL;
	int fd;

	if (isatty(STDIN_FILENO) && (fd = open("/dev/tty", O_RDWR | O_CLOEXEC)) >= 0 &&
	    (tty = fdopen(fd, "r")) == NULL)
		close(fd);
	if (tty == NULL) {
		if (moatctl_admin_line(stdin, buf, size) < 0 || buf[0] == '\0') {
			fprintf(stderr, "moatctl: %s: no password on standard input (one line)\n",
			        words);
			return -1;
		}
		return 0;
	}
	{
		char again[MOATCTL_PASSWORD_MAX + 2], prompt[128];
		int ok;

		snprintf(prompt, sizeof(prompt), "New password for %s: ", user);
		ok = moatctl_admin_ask(tty, prompt, buf, size) == 0 &&
		     moatctl_admin_ask(tty, "Again: ", again, sizeof(again)) == 0;
		fclose(tty);
		if (!ok || strcmp(buf, again) != 0 || buf[0] == '\0') {
			fprintf(stderr, "moatctl: %s: %s\n", words,
			        ok && buf[0] ? "the passwords differ" : "no password");
			OPENSSL_cleanse(again, sizeof(again));
			return -1;
		}
		OPENSSL_cleanse(again, sizeof(again));
	}
	return 0;
}

int
moatctl_admin_users_list(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "users", NULL, NULL, NULL);
}

/* users add (POST users) and users password (POST users/NAME/password). */
static int
moatctl_admin_users_set(struct moatctl_req *r, bool add)
{
	const char *name = moatctl_req_arg(r, 0);
	char pw[MOATCTL_PASSWORD_MAX + 2];
	json_t *body;
	char *p = NULL, *e;
	int rc;

	if (moatctl_req_api(r, &rc) == NULL)
		return rc;
	if (moatctl_admin_password(moatctl_req_words(r), name, pw, sizeof(pw)) < 0)
		return MOATCTL_EXIT_USAGE;
	if (add) {
		body = json_pack("{s:s,s:s}", "name", name, "password", pw);
	} else {
		e = moatctl_api_escape(name);
		p = xasprintf("users/%s/password", e);
		free(e);
		body = json_pack("{s:s}", "password", pw);
	}
	OPENSSL_cleanse(pw, sizeof(pw));
	if (body == NULL) {
		fprintf(stderr, "moatctl: %s: the name and password must be UTF-8\n",
		        moatctl_req_words(r));
		free(p);
		return MOATCTL_EXIT_USAGE;
	}
	rc = moatctl_req_call(r, "POST", add ? "users" : p, NULL, body,
	                      add ? "added" : "password set");
	json_decref(body);
	free(p);
	return rc;
}

int
moatctl_admin_users_add(struct moatctl_req *r)
{
	return moatctl_admin_users_set(r, true);
}

int
moatctl_admin_users_password(struct moatctl_req *r)
{
	return moatctl_admin_users_set(r, false);
}

int
moatctl_admin_users_delete(struct moatctl_req *r)
{
	return moatctl_req_delete(r, "users");
}

static const struct moatctl_col audit_cols[] = {
        {"id", "ID", 10},         {"time_ms", "TIME", 19}, {"who", "WHO", 24},
        {"action", "ACTION", 20}, {"addr", "FROM", 40},    {"target", "TARGET", 0},
};

int
moatctl_admin_audit(struct moatctl_req *r)
{
	char *q = moatctl_req_query(r, NULL);
	struct moatctl_api *a;
	json_t *out, *next;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL) {
		free(q);
		return rc;
	}
	rc = moatctl_api_json(a, "GET", "audit", q, NULL, &out);
	free(q);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json) {
		moatctl_print_json(out);
	} else {
		if (json_array_size(json_object_get(out, "items")) == 0)
			printf("nothing found\n");
		else
			moatctl_print_table(json_object_get(out, "items"), audit_cols,
			                    nitems(audit_cols));
		if (json_is_integer(next = json_object_get(out, "next")))
			printf("more: --before %" JSON_INTEGER_FORMAT "\n",
			       json_integer_value(next));
	}
	json_decref(out);
	return MOATCTL_EXIT_OK;
}

int
moatctl_admin_health(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "health", NULL, NULL, NULL);
}

int
moatctl_admin_whoami(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "auth/session", NULL, NULL, NULL);
}

int
moatctl_admin_metrics(struct moatctl_req *r)
{
	struct moatctl_api *a;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	return moatctl_api_fetch(a, "/metrics", NULL, stdout);
}

/* GET path, printed by print (the control socket's printer) unless --json; wrap: the member
 * print expects the answer under. */
static int
moatctl_admin_get_print(struct moatctl_req *r, const char *path, const char *wrap,
                        void (*print)(json_t *resp))
{
	struct moatctl_api *a;
	json_t *out;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if ((rc = moatctl_api_json(a, "GET", path, NULL, NULL, &out)) != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json) {
		moatctl_print_json(out);
	} else if (wrap != NULL) {
		json_t *w = json_pack("{s:O}", wrap, out ? out : json_null());

		print(w);
		json_decref(w);
	} else {
		print(out);
	}
	json_decref(out);
	return MOATCTL_EXIT_OK;
}

int
moatctl_admin_stats(struct moatctl_req *r)
{
	return moatctl_admin_get_print(r, "stats", NULL, moatctl_queue_print_stats);
}

/* queue list|show|retry|hold|release|delete over the API: the socket's answers, relayed. */
int
moatctl_admin_queue(struct moatctl_req *r)
{
	const char *verb = moatctl_req_words(r) + strlen("queue ");
	char *id, *p;
	int rc;

	if (strcmp(verb, "list") == 0)
		return moatctl_admin_get_print(r, "queue", NULL, moatctl_queue_print_list);
	id = moatctl_api_escape(moatctl_req_arg(r, 0));
	if (strcmp(verb, "show") == 0) {
		p = xasprintf("queue/%s", id);
		rc = moatctl_admin_get_print(r, p, "message", moatctl_queue_print_show);
	} else {
		struct moatctl_api *a;
		json_t *out;

		p = xasprintf("queue/%s/%s", id, verb);
		if ((a = moatctl_req_api(r, &rc)) != NULL &&
		    (rc = moatctl_api_json(a, "POST", p, NULL, NULL, &out)) == MOATCTL_EXIT_OK) {
			if (moatctl_req_global(r)->json)
				moatctl_print_json(out);
			else
				moatctl_queue_print_ok(out);
			json_decref(out);
		}
	}
	free(p);
	free(id);
	return rc;
}

int
moatctl_admin_settings(struct moatctl_req *r)
{
	return moatctl_req_call(r, "GET", "settings", NULL, NULL, NULL);
}

int
moatctl_admin_settings_set(struct moatctl_req *r)
{
	char *p = moatctl_req_path(r, "settings");
	json_t *body = json_pack("{s:s}", "value", moatctl_req_arg(r, 1));
	int rc;

	if (body == NULL) {
		fprintf(stderr, "moatctl: %s: the value must be UTF-8\n", moatctl_req_words(r));
		rc = MOATCTL_EXIT_USAGE;
	} else {
		rc = moatctl_req_call(r, "PUT", p, NULL, body, "saved");
	}
	json_decref(body);
	free(p);
	return rc;
}

int
moatctl_admin_settings_delete(struct moatctl_req *r)
{
	return moatctl_req_delete(r, "settings");
}
