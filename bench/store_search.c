/*
 * store_search.c - benchmark of the store's searches (src/store/) on
 * SQLite: fills N tracking rows and N quarantine rows (default 1,000,000
 * each) through the store's own calls, then times typical admin searches
 * (first page of 50, with recipients) and prints p50/p95 per search.
 * Built and run by bench/store_search.sh.
 *
 *   store_search DB [N] [QUERIES]
 *
 * The data: 30 days of mail, several messages per second stamp (equal
 * times), 50,000 senders in 5,000 domains, 2,000 recipients in 20
 * protected domains, subjects of 3-6 words from 200 plus a number.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "store/store.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const char *const words[] = {
        "invoice", "payment",  "account",  "update",   "meeting",  "report",   "urgent",
        "order",   "delivery", "shipment", "password", "reset",    "security", "alert",
        "review",  "project",  "budget",   "contract", "offer",    "discount", "newsletter",
        "weekly",  "monthly",  "summary",  "welcome",  "verify",   "confirm",  "request",
        "quote",   "proposal", "agenda",   "minutes",  "schedule", "travel",   "booking",
        "receipt", "refund",   "claim",    "notice",   "reminder",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

#define T0      1700000000000LL
#define SPAN_MS (30LL * 86400 * 1000)

static void
sender_of(unsigned i, char *buf, size_t size)
{
	snprintf(buf, size, "user%u@sender%u.example", i, i % 5000);
}

static void
rcpt_of(unsigned i, char *buf, size_t size)
{
	snprintf(buf, size, "staff%u@tenant%u.test", i, i % 20);
}

static void
subject_of(char *buf, size_t size)
{
	struct dynbuf b;
	unsigned n = 3 + (unsigned)(rnd() % 4);

	dynbuf_init(&b, size - 1);
	for (unsigned i = 0; i < n; i++)
		dynbuf_printf(&b, "%s%s", i ? " " : "", words[rnd() % NWORDS]);
	dynbuf_printf(&b, " #%u", (unsigned)(rnd() % 1000000));
	str_copy(buf, b.p, size);
	free(b.p);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
fill(struct store *s, unsigned n)
{
	char id[STORE_ID_MAX + 1], sender[128], r1[128], r2[128], subject[256], msgid[64];
	static const enum store_verdict qv[] = {STORE_V_QUARANTINE, STORE_V_REJECT};
	double t0 = now_ms();

	for (unsigned i = 0; i < n; i++) {
		if (i % 10000 == 0 && store_batch_begin(s) != STORE_OK)
			goto fail;
		int64_t t = T0 + (int64_t)((double)i / n * SPAN_MS) / 1000 * 1000;
		snprintf(id, sizeof(id), "%016" PRIx64, (uint64_t)i * 2654435761u + 1);
		sender_of((unsigned)(rnd() % 50000), sender, sizeof(sender));
		rcpt_of((unsigned)(rnd() % 2000), r1, sizeof(r1));
		rcpt_of((unsigned)(rnd() % 2000), r2, sizeof(r2));
		subject_of(subject, sizeof(subject));
		snprintf(msgid, sizeof(msgid), "<%u.%u@mail.example>", i, (unsigned)(rnd() % 1000));
		const char *rc[] = {r1, r2};
		size_t nr = rnd() % 4 == 0 ? 2 : 1;
		struct store_track_in in = {
		        .id = id,
		        .received_ms = t,
		        .client_ip = "198.51.100.23",
		        .helo = "mail.sender.example",
		        .sender = sender,
		        .rcpts = rc,
		        .nrcpts = nr,
		        .subject = subject,
		        .from = sender,
		        .message_id = msgid,
		        .size = 2000 + rnd() % 100000,
		};
		unsigned r = (unsigned)(rnd() % 100);
		enum store_verdict v = r < 80   ? STORE_V_DELIVER
		                       : r < 90 ? STORE_V_QUARANTINE
		                       : r < 98 ? STORE_V_REJECT
		                                : STORE_V_TEMPFAIL;
		if (store_track_received(s, &in) != STORE_OK ||
		    store_track_verdict(s, id, v, (double)(rnd() % 200) / 10, "BAYES_SPAM(3.00)",
		                        "score", t + 200) != STORE_OK)
			goto fail;
		/* the quarantine: its own 1M rows, same shape */
		struct store_quar_in q = {
		        .id = id,
		        .domain = strchr(r1, '@') + 1,
		        .received_ms = t,
		        .sender = sender,
		        .rcpts = rc,
		        .nrcpts = nr,
		        .from = sender,
		        .subject = subject,
		        .message_id = msgid,
		        .size = in.size,
		        .verdict = qv[rnd() % 2],
		        .score = 9.5,
		        .symbols = "GTUBE(100.00)",
		};
		if (store_quarantine_add(s, &q) != STORE_OK)
			goto fail;
		if (rnd() % 10 == 0 && store_quarantine_set_state(s, id, STORE_Q_RELEASED, "admin",
		                                                  t + 1000, NULL) != STORE_OK)
			goto fail;
		if (i % 10000 == 9999 || i == n - 1) {
			if (store_batch_commit(s) != STORE_OK)
				goto fail;
			if (i % 100000 == 99999)
				fprintf(stderr, "filled %u rows (%.0f s)\n", i + 1,
				        (now_ms() - t0) / 1000);
		}
	}
	fprintf(stderr, "fill: %u tracking + %u quarantine rows in %.1f s (%.1f us per message)\n",
	        n, n, (now_ms() - t0) / 1000, (now_ms() - t0) * 1000 / n);
	return;
fail:
	fprintf(stderr, "fill: %s\n", store_errmsg(s));
	exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

enum qkind {
	Q_FIRST,
	Q_DEEP,
	Q_SENDER,
	Q_SENDER_DOM,
	Q_RCPT,
	Q_RCPT_DOM,
	Q_SUBJ_WORD,
	Q_SUBJ_RARE,
	Q_SUBJ_SHORT,
	Q_MSGID,
	Q_RANGE_VERDICT,
	Q_DOMAIN_HELD,
	Q_COUNT
};
static const char *const qnames[] = {
        [Q_FIRST] = "first page, no filter",
        [Q_DEEP] = "deep page (random cursor)",
        [Q_SENDER] = "sender address",
        [Q_SENDER_DOM] = "sender @domain",
        [Q_RCPT] = "recipient address",
        [Q_RCPT_DOM] = "recipient @domain",
        [Q_SUBJ_WORD] = "subject word (~10% rows)",
        [Q_SUBJ_RARE] = "subject rare (#number)",
        [Q_SUBJ_SHORT] = "subject 3 random letters",
        [Q_MSGID] = "message-id",
        [Q_RANGE_VERDICT] = "1-day range + verdict",
        [Q_DOMAIN_HELD] = "domain + held (quarantine)",
};

static void
run(struct store *s, bool quar, enum qkind k, unsigned nq, bool print)
{
	double *lat = xcalloc(nq, sizeof(*lat));
	char buf[128], buf2[32];
	size_t rows = 0;

	for (unsigned i = 0; i < nq; i++) {
		struct store_filter f;
		store_filter_init(&f);
		f.limit = 50;
		switch (k) {
		case Q_FIRST:
			break;
		case Q_DEEP:
			f.after.time_ms = T0 + (int64_t)(rnd() % SPAN_MS);
			str_copy(f.after.id, "ffffffffffffffff", sizeof(f.after.id));
			break;
		case Q_SENDER:
			sender_of((unsigned)(rnd() % 50000), buf, sizeof(buf));
			f.sender = buf;
			break;
		case Q_SENDER_DOM:
			snprintf(buf, sizeof(buf), "@sender%u.example", (unsigned)(rnd() % 5000));
			f.sender = buf;
			break;
		case Q_RCPT:
			rcpt_of((unsigned)(rnd() % 2000), buf, sizeof(buf));
			f.rcpt = buf;
			break;
		case Q_RCPT_DOM:
			snprintf(buf, sizeof(buf), "@tenant%u.test", (unsigned)(rnd() % 20));
			f.rcpt = buf;
			break;
		case Q_SUBJ_WORD:
			f.subject = words[rnd() % NWORDS];
			break;
		case Q_SUBJ_RARE:
			snprintf(buf, sizeof(buf), "#%u", (unsigned)(rnd() % 1000000));
			f.subject = buf;
			break;
		case Q_SUBJ_SHORT:
			snprintf(buf2, sizeof(buf2), "%c%c%c", 'a' + (int)(rnd() % 26),
			         'a' + (int)(rnd() % 26), 'a' + (int)(rnd() % 26));
			f.subject = buf2;
			break;
		case Q_MSGID:
			snprintf(buf, sizeof(buf), "<%u.%u@mail.example>",
			         (unsigned)(rnd() % 1000000), (unsigned)(rnd() % 1000));
			f.message_id = buf;
			break;
		case Q_RANGE_VERDICT:
			f.since_ms = T0 + (int64_t)(rnd() % (SPAN_MS - 86400000));
			f.until_ms = f.since_ms + 86400000;
			f.verdict = quar ? STORE_V_REJECT : STORE_V_QUARANTINE;
			break;
		case Q_DOMAIN_HELD:
			snprintf(buf, sizeof(buf), "tenant%u.test", (unsigned)(rnd() % 20));
			f.domain = buf;
			f.state = STORE_Q_HELD;
			break;
		case Q_COUNT:
			break;
		}
		double t0 = now_ms();
		enum store_status st;
		if (quar) {
			struct store_quar_page p;
			st = store_quarantine_search(s, &f, &p);
			rows += p.n;
			store_quar_page_free(&p);
		} else {
			struct store_msg_page p;
			st = store_track_search(s, &f, &p);
			rows += p.n;
			store_msg_page_free(&p);
		}
		lat[i] = now_ms() - t0;
		if (st != STORE_OK) {
			fprintf(stderr, "%s: %s %s\n", qnames[k], store_status_str(st),
			        store_errmsg(s));
			exit(1);
		}
	}
	qsort(lat, nq, sizeof(*lat), cmp_double);
	if (print)
		printf("%-10s %-30s p50 %8.2f ms  p95 %8.2f ms  max %8.2f ms  rows/page %5.1f\n",
		       quar ? "quarantine" : "tracking", qnames[k], lat[nq / 2], lat[nq * 95 / 100],
		       lat[nq - 1], (double)rows / nq);
	free(lat);
}

int
main(int argc, char **argv)
{
	char err[256];
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 1000000;
	unsigned nq = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 200;

	if (argc < 2) {
		fprintf(stderr, "usage: store_search DB [ROWS] [QUERIES]\n");
		return 2;
	}
	struct store *s = store_open(argv[1], err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct store_filter f;
	struct store_msg_page p;
	store_filter_init(&f);
	f.limit = 1;
	if (store_track_search(s, &f, &p) != STORE_OK)
		return 1;
	if (p.n == 0)
		fill(s, n);
	else
		fprintf(stderr, "using the rows already in %s\n", argv[1]);
	store_msg_page_free(&p);
	/* What moatd does at close, so the planner has statistics. */
	store_close(s);
	s = store_open(argv[1], err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}

	printf("%u queries each, page of 50 with recipients, after one warm-up pass\n", nq);
	/* Pass 0 warms the page cache, as a running moatd's would be. */
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < Q_COUNT; k++)
			if (k != Q_DOMAIN_HELD)
				run(s, false, (enum qkind)k, pass == 0 ? 20 : nq, pass == 1);
		for (int k = 0; k < Q_COUNT; k++)
			if (k != Q_MSGID)
				run(s, true, (enum qkind)k, pass == 0 ? 20 : nq, pass == 1);
	}
	store_close(s);
	return 0;
}
