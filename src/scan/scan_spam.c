/*
 * scan_spam.c - the spam checks: the GTUBE test string and rspamd.
 *
 * GTUBE: the Generic Test for Unsolicited Bulk Email (SpamAssassin's, also
 * rspamd's): the string anywhere in the raw message marks it as spam, to
 * test how spam is handled end to end.
 *
 * rspamd: its HTTP protocol ("/checkv2", rspamd's protocol.md): the raw
 * message is POSTed over HTTP/1.1 (RFC 9110, 9112) with the envelope as
 * request headers (IP, Helo, From, Rcpt once per recipient, Queue-Id);
 * the reply is a JSON object (RFC 8259) of which moat reads "score",
 * "action" and "symbols" (name -> {"score": n}). rspamd's score becomes
 * RSPAMD_SCORE's score, its strongest symbols the detail. An rspamd that
 * is down, slow, answers other than 200 or with something unreadable
 * fails the check: a tempfail when rspamd_required, a log line otherwise.
 *
 * Both are spam checks: a release from quarantine skips them.
 *
 * libcurl: one easy handle per call (scans run on several threads; a
 * handle is never shared), CURLOPT_NOSIGNAL for threads, every wait
 * bounded by CURLOPT_TIMEOUT_MS. curl_global_init() is called once, by
 * scan_init(), before the workers start.
 */
#include "scan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../common/log.h"
#include "../common/util.h"

static const char scan_gtube[] =
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#define RSPAMD_REPLY_MAX  (1024 * 1024) /* octets of reply read; more fails the check */
#define RSPAMD_HEADER_MAX 1024          /* octets of one request header */
#define RSPAMD_RCPT_MAX   1000          /* Rcpt headers sent */
#define RSPAMD_TOP_SYMS   5             /* rspamd symbols named in the detail */
#define RSPAMD_SYM_MAX    64            /* octets of one symbol name kept */
#define RSPAMD_SCORE_MAX  1000.0        /* rspamd's score is clamped to +-this */

void
scan_check_gtube(struct scan_task *t)
{
	if (t->in->release || t->in->msg == NULL)
		return;
	if (memmem(t->in->msg, t->in->len, scan_gtube, sizeof(scan_gtube) - 1) != NULL)
		scan_sym(t, SYM_GTUBE, NULL);
}

/* The reply body, growing up to RSPAMD_REPLY_MAX. */
struct rspamd_buf {
	char *data;
	size_t len, cap;
	bool toobig;
};

static size_t
rspamd_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct rspamd_buf *b = arg;
	size_t n = size * nmemb;

	if (n > RSPAMD_REPLY_MAX - b->len) {
		b->toobig = true;
		return 0; /* curl aborts the transfer */
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/*
 * Append "Name: value" to the request headers. Values come from the SMTP
 * session: one with a control character (a header injection), longer
 * than RSPAMD_HEADER_MAX or empty is left out.
 */
static struct curl_slist *
rspamd_header(struct curl_slist *list, const char *name, const char *value)
{
	char line[RSPAMD_HEADER_MAX];
	struct curl_slist *l;
	int n;

	if (value == NULL || value[0] == '\0') /* the null sender: no From */
		return list;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return list;
	n = snprintf(line, sizeof(line), "%s: %s", name, value);
	if (n < 0 || (size_t)n >= sizeof(line))
		return list;
	if ((l = curl_slist_append(list, line)) == NULL)
		fatalx("curl_slist_append: out of memory");
	return l;
}

/* A symbol of rspamd's reply, for the top-N list. */
struct rspamd_sym {
	const char *name;
	double score;
};

/* Insert (name, score) into top[] (best first, n of RSPAMD_TOP_SYMS used). */
static void
rspamd_top_add(struct rspamd_sym *top, size_t *n, const char *name, double score)
{
	size_t i = *n;

	if (i == RSPAMD_TOP_SYMS) {
		if (score <= top[i - 1].score)
			return;
		i--;
	} else
		(*n)++;
	for (; i > 0 && top[i - 1].score < score; i--)
		top[i] = top[i - 1];
	top[i].name = name;
	top[i].score = score;
}

/* "NAME1,NAME2,..." of the strongest positive symbols, printable ASCII. */
static void
rspamd_top_symbols(json_t *syms, char *buf, size_t size)
{
	struct rspamd_sym top[RSPAMD_TOP_SYMS];
	size_t n = 0, o = 0;
	const char *key;
	json_t *v;

	buf[0] = '\0';
	if (!json_is_object(syms))
		return;
	json_object_foreach (syms, key, v) {
		json_t *s = json_object_get(v, "score");
		double score = json_is_number(s) ? json_number_value(s) : 0.0;

		if (isfinite(score) && score > 0.0)
			rspamd_top_add(top, &n, key, score);
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		if (i > 0 && o + 1 < size)
			buf[o++] = ',';
		for (const char *p = top[i].name; *p != '\0' && k < RSPAMD_SYM_MAX && o + 1 < size;
		     p++, k++)
			buf[o++] = *p > ' ' && *p < 0x7f && *p != ',' ? *p : '?';
	}
	buf[o] = '\0';
}

/* Read rspamd's JSON reply into symbols; -1 with why when it is unusable. */
static int
rspamd_parse(struct scan_task *t, const char *body, size_t len, char *why, size_t whysize)
{
	char names[SCAN_SYM_DETAIL_MAX];
	json_error_t err;
	json_t *root, *score, *action;
	double s;

	if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err)) == NULL) {
		snprintf(why, whysize, "bad JSON: %s", err.text);
		return -1;
	}
	score = json_object_get(root, "score");
	if (!json_is_object(root) || !json_is_number(score) ||
	    !isfinite(s = json_number_value(score))) {
		snprintf(why, whysize, "reply without a score");
		json_decref(root);
		return -1;
	}
	if (s > RSPAMD_SCORE_MAX)
		s = RSPAMD_SCORE_MAX;
	if (s < -RSPAMD_SCORE_MAX)
		s = -RSPAMD_SCORE_MAX;
	rspamd_top_symbols(json_object_get(root, "symbols"), names, sizeof(names));
	scan_sym_score(t, SYM_RSPAMD_SCORE, s, "%s", names);
	action = json_object_get(root, "action");
	if (json_is_string(action) && strcmp(json_string_value(action), "reject") == 0)
		scan_sym(t, SYM_RSPAMD_ACTION_REJECT, NULL);
	json_decref(root);
	return 0;
}

/* POST the message; 0 and the body in b, or -1 with why. */
static int
rspamd_post(struct scan_task *t, long timeout_ms, struct rspamd_buf *b, char *why, size_t whysize)
{
	const struct scan_input *in = t->in;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	CURLcode rc;
	long status = 0;
	CURL *c;
	int ret = -1;

	if ((c = curl_easy_init()) == NULL) {
		snprintf(why, whysize, "curl_easy_init failed");
		return -1;
	}
	if ((hdrs = curl_slist_append(hdrs, "Expect:")) == NULL) /* no 100-continue wait */
		fatalx("curl_slist_append: out of memory");
	hdrs = rspamd_header(hdrs, "IP", t->client_ip[0] ? t->client_ip : in->client_ip);
	hdrs = rspamd_header(hdrs, "Helo", t->helo[0] ? t->helo : in->helo);
	hdrs = rspamd_header(hdrs, "From", in->sender);
	for (size_t i = 0; i < in->nrcpts && i < RSPAMD_RCPT_MAX; i++)
		hdrs = rspamd_header(hdrs, "Rcpt", in->rcpts[i]);
	hdrs = rspamd_header(hdrs, "Queue-Id", in->queue_id);

	curl_easy_setopt(c, CURLOPT_URL, t->cfg->rspamd_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* rspamd is reached directly: no proxy from the environment sees the mail */
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)in->msg);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in->len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "moat/" MOAT_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, rspamd_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)RSPAMD_REPLY_MAX);

	rc = curl_easy_perform(c);
	if (b->toobig || rc == CURLE_FILESIZE_EXCEEDED)
		snprintf(why, whysize, "reply longer than %d octets", RSPAMD_REPLY_MAX);
	else if (rc != CURLE_OK)
		snprintf(why, whysize, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	else if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
		snprintf(why, whysize, "HTTP status %ld", status);
	else
		ret = 0;
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}

void
scan_check_rspamd(struct scan_task *t)
{
	const struct config *cfg = t->cfg;
	struct rspamd_buf b = {0};
	char why[CURL_ERROR_SIZE + 64] = "", qwhy[2 * sizeof(why)], qurl[256];
	int64_t ms;

	if (cfg == NULL || cfg->rspamd_url == NULL || cfg->rspamd_url[0] == '\0' || t->in->release)
		return;
	ms = scan_remaining_ms(t);
	if (ms > (int64_t)cfg->rspamd_timeout)
		ms = (int64_t)cfg->rspamd_timeout;
	if (ms <= 0)
		snprintf(why, sizeof(why), "scan deadline passed");
	else if (rspamd_post(t, (long)ms, &b, why, sizeof(why)) == 0 &&
	         rspamd_parse(t, b.data ? b.data : "", b.len, why, sizeof(why)) == 0) {
		free(b.data);
		return;
	}
	free(b.data);
	for (char *p = why; *p != '\0'; p++) /* it may quote the reply: one printable line */
		if (*p < 0x20 || *p >= 0x7f)
			*p = '?';
	log_quote(qurl, sizeof(qurl), cfg->rspamd_url, strlen(cfg->rspamd_url));
	log_quote(qwhy, sizeof(qwhy), why, strlen(why));
	log_warn("event=rspamd_failed queue_id=%s url=%s required=%s reason=%s",
	         t->in->queue_id ? t->in->queue_id : "-", qurl, cfg->rspamd_required ? "yes" : "no",
	         qwhy);
	if (cfg->rspamd_required)
		scan_tempfail(t, "rspamd unavailable: %s", why);
}
