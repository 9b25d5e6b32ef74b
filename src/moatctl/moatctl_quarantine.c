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

#define MOATCTL_BATCH_MAX 1000 /* ids of one batch request (the API's limit) */

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

/* GET path/ID(/tail): the answer in *out. */
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

/* The preview's members, then its texts as they are (several lines each). */
int
moatctl_quarantine_preview(struct moatctl_req *r)
{
	static const char *const texts[] = {"text", "html_text"};
	json_t *o, *rest;
	int rc;

	if ((rc = moatctl_quarantine_get(r, "quarantine", "/preview", &o)) != MOATCTL_EXIT_OK)
		return rc;
	if (moatctl_req_global(r)->json || !json_is_object(o)) {
		moatctl_print_json(o);
		json_decref(o);
		return MOATCTL_EXIT_OK;
	}
	rest = json_deep_copy(o);
	for (size_t i = 0; i < nitems(texts); i++)
		json_object_del(rest, texts[i]);
	moatctl_print_object(rest, 0);
	json_decref(rest);
	for (size_t i = 0; i < nitems(texts); i++) {
		json_t *v = json_object_get(o, texts[i]);
		size_t len = json_string_length(v);

		if (len == 0)
			continue;
		printf("\n--- %s ---\n%s%s", texts[i], json_string_value(v),
		       json_string_value(v)[len - 1] == '\n' ? "" : "\n");
	}
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

/* The exit status an HTTP status in a batch result stands for. */
static int
moatctl_quarantine_code_rc(json_int_t code)
{
	if (code >= 200 && code < 300)
		return MOATCTL_EXIT_OK;
	if (code == 401 || code == 403)
		return MOATCTL_EXIT_AUTH;
	if (code >= 500)
		return MOATCTL_EXIT_UNREACHABLE;
	return MOATCTL_EXIT_REFUSED;
}

/*
 * POST quarantine/batch for every ID (MOATCTL_BATCH_MAX at a time), body
 * completed with "ids"; each failed id printed, the worst exit status.
 */
static int
moatctl_quarantine_batch(struct moatctl_req *r, json_t *body, const char *done)
{
	size_t n = moatctl_req_nargs(r), i;
	struct moatctl_api *a;
	json_t *all = json_array(), *e;
	int rc, worst = MOATCTL_EXIT_OK;

	if ((a = moatctl_req_api(r, &rc)) == NULL) {
		json_decref(all);
		return rc;
	}
	for (size_t from = 0; from < n; from += MOATCTL_BATCH_MAX) {
		json_t *ids = json_array(), *out;

		for (i = from; i < n && i < from + MOATCTL_BATCH_MAX; i++)
			json_array_append_new(ids, json_string(moatctl_req_arg(r, i)));
		json_object_set_new(body, "ids", ids);
		if ((rc = moatctl_api_json(a, "POST", "quarantine/batch", NULL, body, &out)) !=
		    MOATCTL_EXIT_OK) {
			worst = moatctl_quarantine_worse(worst, rc);
			break;
		}
		json_array_extend(all, json_object_get(out, "results"));
		json_decref(out);
	}
	json_array_foreach (all, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *err = json_string_value(json_object_get(e, "error"));
		json_int_t code = json_integer_value(json_object_get(e, "code"));

		rc = moatctl_quarantine_code_rc(code);
		worst = moatctl_quarantine_worse(worst, rc);
		if (rc != MOATCTL_EXIT_OK)
			fprintf(stderr, "moatctl: %s %s: %" JSON_INTEGER_FORMAT " %s\n",
			        moatctl_req_words(r), id ? id : "?", code, err ? err : "failed");
		else if (!moatctl_req_global(r)->json)
			printf("%s: %s\n", id ? id : "?",
			       json_string_length(json_object_get(e, "message"))
			               ? json_string_value(json_object_get(e, "message"))
			               : done);
	}
	if (moatctl_req_global(r)->json && json_array_size(all) > 0) {
		json_t *o = json_pack("{s:O,s:O}", "action", json_object_get(body, "action"),
		                      "results", all);

		moatctl_print_json(o);
		json_decref(o);
	}
	json_decref(all);
	return worst;
}

/* POST quarantine/ID/verb with body for the one ID; prints its answer. */
static int
moatctl_quarantine_one(struct moatctl_req *r, const char *verb, const char *done, json_t *body)
{
	const char *id = moatctl_req_arg(r, 0), *msg, *k;
	char *eid = moatctl_api_escape(id), *p = xasprintf("quarantine/%s/%s", eid, verb);
	struct moatctl_api *a;
	json_t *out, *v;
	int rc;

	if ((a = moatctl_req_api(r, &rc)) != NULL &&
	    (rc = moatctl_api_json(a, "POST", p, NULL, body, &out)) == MOATCTL_EXIT_OK) {
		if (moatctl_req_global(r)->json) {
			moatctl_print_json(out);
		} else {
			/* the server's words ("released to 1 recipient"), else ours */
			msg = json_string_value(json_object_get(out, "message"));
			printf("%s: %s\n", id, msg && msg[0] ? msg : done);
			/* "allowed_sender": true, "blocked_sender": false */
			json_object_foreach (out, k, v)
				if (json_is_boolean(v))
					printf("%s %s: %s\n", id, k,
					       json_is_true(v) ? "yes" : "no");
		}
		json_decref(out);
	}
	free(p);
	free(eid);
	return rc;
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
	if (moatctl_req_nargs(r) == 1) {
		rc = moatctl_quarantine_one(r, "release", "released", body);
	} else if (nrcpts > 0) {
		fprintf(stderr, "moatctl: %s: --rcpt goes with one ID\n", moatctl_req_words(r));
		rc = MOATCTL_EXIT_USAGE;
	} else {
		json_object_set_new(body, "action", json_string("release"));
		rc = moatctl_quarantine_batch(r, body, "released");
	}
	json_decref(body);
	return rc;
}

int
moatctl_quarantine_delete(struct moatctl_req *r)
{
	json_t *body = json_pack("{s:b}", "block_sender", moatctl_req_flag(r, "--block-sender"));
	int rc;

	if (moatctl_req_nargs(r) == 1) {
		rc = moatctl_quarantine_one(r, "delete", "deleted", body);
	} else {
		json_object_set_new(body, "action", json_string("delete"));
		rc = moatctl_quarantine_batch(r, body, "deleted");
	}
	json_decref(body);
	return rc;
}
