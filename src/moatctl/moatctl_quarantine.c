/*
 * moatctl_quarantine.c - `moatctl quarantine ...` and `moatctl track ...`:
 * search, show, preview, download, release and delete held messages, and
 * follow any message moat saw, over the admin API (docs/openapi.yaml).
 */
#include "moatctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"

static const struct moatctl_col quar_cols[] = {
        {"id", "ID", 16},          {"received_ms", "RECEIVED", 19}, {"verdict", "VERDICT", 10},
        {"score", "SCORE", 6},     {"state", "STATE", 8},           {"sender", "SENDER", 32},
        {"subject", "SUBJECT", 0},
};
static const struct moatctl_col track_cols[] = {
        {"id", "ID", 16},         {"received_ms", "RECEIVED", 19}, {"verdict", "VERDICT", 10},
        {"sender", "SENDER", 32}, {"rcpts", "RECIPIENTS", 40},     {"subject", "SUBJECT", 0},
};

/* Print a search's page as a table, and how to get the next one. */
static int
moatctl_quarantine_print_page(struct moatctl_req *r, const char *path,
                              const struct moatctl_col *cols, size_t ncols)
{
	json_t *page;
	const char *next;
	int rc;

	if ((rc = moatctl_req_pages(r, path, &page)) != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json) {
		moatctl_print_json(page);
	} else {
		json_t *items = json_object_get(page, "items");

		if (json_array_size(items) == 0)
			printf("nothing found\n");
		else
			moatctl_print_table(items, cols, ncols);
		if ((next = json_string_value(json_object_get(page, "next"))) != NULL && next[0])
			printf("more: --after %s (or --all)\n", next);
	}
	json_decref(page);
	return MOATCTL_EXIT_OK;
}

/* GET path/ID(/tail) and print it as an object. */
static int
moatctl_quarantine_get(struct moatctl_req *r, const char *path, const char *tail, json_t **out)
{
	struct moatctl_api *a;
	char *id, *p;
	int rc;

	*out = NULL;
	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	id = moatctl_api_escape(moatctl_req_arg(r, 0));
	p = xasprintf("%s/%s%s", path, id, tail);
	rc = moatctl_api_json(a, "GET", p, NULL, NULL, out);
	free(p);
	free(id);
	return rc;
}

int
moatctl_quarantine_list(struct moatctl_req *r)
{
	return moatctl_quarantine_print_page(r, "quarantine", quar_cols, nitems(quar_cols));
}

int
moatctl_track_list(struct moatctl_req *r)
{
	return moatctl_quarantine_print_page(r, "tracking", track_cols, nitems(track_cols));
}

static int
moatctl_quarantine_show_at(struct moatctl_req *r, const char *path, const char *tail)
{
	json_t *o;
	int rc;

	if ((rc = moatctl_quarantine_get(r, path, tail, &o)) != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json)
		moatctl_print_json(o);
	else if (json_is_object(o))
		moatctl_print_object(o, 0);
	json_decref(o);
	return MOATCTL_EXIT_OK;
}

int
moatctl_quarantine_show(struct moatctl_req *r)
{
	return moatctl_quarantine_show_at(r, "quarantine", "");
}

int
moatctl_track_show(struct moatctl_req *r)
{
	return moatctl_quarantine_show_at(r, "tracking", "");
}

int
moatctl_quarantine_preview(struct moatctl_req *r)
{
	json_t *o, *v;
	const char *k;
	int rc;

	if ((rc = moatctl_quarantine_get(r, "quarantine", "/preview", &o)) != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json || !json_is_object(o)) {
		moatctl_print_json(o);
		json_decref(o);
		return MOATCTL_EXIT_OK;
	}
	/* the members, then the text as it is (several lines) */
	{
		json_t *rest = json_deep_copy(o);

		json_object_del(rest, "text");
		moatctl_print_object(rest, 0);
		json_decref(rest);
	}
	json_object_foreach(o, k, v) if (strcmp(k, "text") == 0 && json_is_string(v)) printf(
	        "\n%s%s", json_string_value(v),
	        json_string_length(v) && json_string_value(v)[json_string_length(v) - 1] == '\n'
	                ? ""
	                : "\n");
	json_decref(o);
	return MOATCTL_EXIT_OK;
}

int
moatctl_quarantine_download(struct moatctl_req *r)
{
	const char *path = moatctl_req_opt(r, "-o");
	struct moatctl_api *a;
	FILE *fp = stdout;
	char *id, *p;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	if (path != NULL && strcmp(path, "-") != 0) {
		/* held mail may be someone's secrets: owner only */
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
			fprintf(stderr, "moatctl: %s: %s: %s\n", moatctl_req_words(r), path,
			        strerror(errno));
			if (fd >= 0)
				close(fd);
			return MOATCTL_EXIT_REFUSED;
		}
	} else {
		path = NULL;
	}
	id = moatctl_api_escape(moatctl_req_arg(r, 0));
	p = xasprintf("quarantine/%s/download", id);
	rc = moatctl_api_fetch(a, p, NULL, fp);
	free(p);
	free(id);
	if (path != NULL) {
		if (fclose(fp) != 0 && rc == MOATCTL_EXIT_OK) {
			fprintf(stderr, "moatctl: %s: %s: %s\n", moatctl_req_words(r), path,
			        strerror(errno));
			rc = MOATCTL_EXIT_REFUSED;
		}
		if (rc != MOATCTL_EXIT_OK)
			unlink(path);
	}
	return rc;
}

/* The worse of two exit statuses: unreachable > auth > refused > ok (usage does not occur). */
static int
moatctl_quarantine_worse(int a, int b)
{
	static const int rank[] = {
	        [MOATCTL_EXIT_OK] = 0,   [MOATCTL_EXIT_REFUSED] = 1,     [MOATCTL_EXIT_USAGE] = 2,
	        [MOATCTL_EXIT_AUTH] = 3, [MOATCTL_EXIT_UNREACHABLE] = 4,
	};

	return rank[b] > rank[a] ? b : a;
}

/* POST quarantine/ID/verb with body for each ID; prints each answer. */
static int
moatctl_quarantine_each(struct moatctl_req *r, const char *verb, const char *done, json_t *body)
{
	struct moatctl_api *a;
	size_t n = moatctl_req_nargs(r);
	json_t *answers = json_array();
	int rc, worst = MOATCTL_EXIT_OK;

	if ((a = moatctl_req_api(r, &rc)) == NULL) {
		json_decref(answers);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const char *id = moatctl_req_arg(r, i);
		char *eid = moatctl_api_escape(id), *p = xasprintf("quarantine/%s/%s", eid, verb);
		char *what = xasprintf("%s %s", moatctl_req_words(r), id);
		json_t *out;

		moatctl_api_set_what(a, what);
		rc = moatctl_api_json(a, "POST", p, NULL, body, &out);
		if (rc == MOATCTL_EXIT_OK) {
			if (!moatctl_req_global(r)->json)
				printf("%s %s\n", id, done);
			json_array_append_new(answers, out ? out : json_object());
		}
		worst = moatctl_quarantine_worse(worst, rc);
		free(what);
		free(p);
		free(eid);
		if (rc == MOATCTL_EXIT_UNREACHABLE || rc == MOATCTL_EXIT_AUTH)
			break; /* the next would fail the same way */
	}
	if (moatctl_req_global(r)->json && json_array_size(answers) > 0)
		moatctl_print_json(n == 1 ? json_array_get(answers, 0) : answers);
	json_decref(answers);
	return worst;
}

int
moatctl_quarantine_release(struct moatctl_req *r)
{
	const char *const *rcpts;
	size_t nrcpts;
	json_t *body;
	int rc;

	rcpts = moatctl_req_optv(r, "--rcpt", &nrcpts);
	body = json_pack("{s:b,s:b}", "rescan", !moatctl_req_flag(r, "--no-rescan"), "allow_sender",
	                 moatctl_req_flag(r, "--allow-sender"));
	if (nrcpts > 0) {
		json_t *arr = json_array();

		for (size_t i = 0; i < nrcpts; i++)
			json_array_append_new(arr, json_string(rcpts[i]));
		json_object_set_new(body, "rcpts", arr);
	}
	rc = moatctl_quarantine_each(r, "release", "released", body);
	json_decref(body);
	return rc;
}

int
moatctl_quarantine_delete(struct moatctl_req *r)
{
	size_t n = moatctl_req_nargs(r);
	struct moatctl_api *a;
	json_t *body, *out, *ids, *res, *e;
	size_t i;
	int rc;

	if (n == 1 || moatctl_req_flag(r, "--block-sender")) {
		body = json_pack("{s:b}", "block_sender", moatctl_req_flag(r, "--block-sender"));
		rc = moatctl_quarantine_each(r, "delete", "deleted", body);
		json_decref(body);
		return rc;
	}
	if ((a = moatctl_req_api(r, &rc)) == NULL)
		return rc;
	ids = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(ids, json_string(moatctl_req_arg(r, i)));
	body = json_pack("{s:s,s:o}", "action", "delete", "ids", ids);
	rc = moatctl_api_json(a, "POST", "quarantine/batch", NULL, body, &out);
	json_decref(body);
	if (rc != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json)
		moatctl_print_json(out);
	/* each id's outcome: a failed one makes the exit status 1 */
	res = json_object_get(out, "results");
	json_array_foreach(res, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *err = json_string_value(json_object_get(e, "error"));

		if (err != NULL) {
			fprintf(stderr, "moatctl: %s %s: %s\n", moatctl_req_words(r), id ? id : "?",
			        err);
			rc = MOATCTL_EXIT_REFUSED;
		} else if (!moatctl_req_global(r)->json) {
			printf("%s deleted\n", id ? id : "?");
		}
	}
	if (!json_is_array(res) && !moatctl_req_global(r)->json && json_is_object(out))
		moatctl_print_object(out, 0);
	json_decref(out);
	return rc;
}
