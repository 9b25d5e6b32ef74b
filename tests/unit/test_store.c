/*
 * test_store.c - the store (src/store/) on its SQLite backend, one
 * temporary database file per test: migrations from empty, re-open and a
 * refused newer schema; every call; search filters table by table (got
 * these ids, want those); keyset paging across equal time stamps (no row
 * twice, none missed); quarantine state changes (idempotent release) and
 * a release raced from two threads, each with its own connection.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/util.h"
#include "policy/rules.h"
#include "store/store.h"

#include "table.h"

struct fixture {
	char dir[64];
	char path[128];
	struct store *s;
};

static int
setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	char err[256];

	str_copy(fx->dir, "/tmp/moat-store-XXXXXX", sizeof(fx->dir));
	assert_non_null(mkdtemp(fx->dir));
	assert_true(path_fmt(fx->path, sizeof(fx->path), "%s/moat.db", fx->dir));
	fx->s = store_open(fx->path, err, sizeof(err));
	if (fx->s == NULL)
		fail_msg("store_open: %s", err);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char p[160];

	store_close(fx->s);
	for (size_t i = 0; i < 3; i++) {
		static const char *const sfx[] = {"", "-wal", "-shm"};
		if (path_fmt(p, sizeof(p), "%s%s", fx->path, sfx[i]))
			unlink(p);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* An id from a small number: "00000000000000NN" in hex. */
static const char *
qid(unsigned n)
{
	static char buf[8][STORE_ID_MAX + 1];
	static unsigned next;
	char *b = buf[next++ % 8];

	snprintf(b, STORE_ID_MAX + 1, "%016x", n);
	return b;
}

/* --- opening, migrations --- */

static void
test_open_reopen(void **state)
{
	struct fixture *fx = *state;
	unsigned in_db = 0, known = 0;
	char err[256], url[160];

	assert_int_equal(store_schema_version(fx->s, &in_db, &known), 0);
	assert_true(known >= 1);
	assert_int_equal(in_db, known);
	assert_string_equal(store_backend_name(fx->s), "sqlite");
	assert_int_equal(store_setting_set(fx->s, "k", "v"), STORE_OK);
	store_close(fx->s);

	/* Re-open (as "sqlite:PATH"): nothing applied twice, data kept. */
	assert_true(path_fmt(url, sizeof(url), "sqlite:%s", fx->path));
	fx->s = store_open(url, err, sizeof(err));
	if (fx->s == NULL)
		fail_msg("re-open: %s", err);
	assert_int_equal(store_schema_version(fx->s, &in_db, &known), 0);
	assert_int_equal(in_db, known);
	char v[16];
	assert_int_equal(store_setting_get(fx->s, "k", v, sizeof(v)), STORE_OK);
	assert_string_equal(v, "v");

	/* What store_open() refuses. */
	static const struct {
		const char *url, *want;
	} bad[] = {
	        {"", "no database"},
	        {"sqlite:", "no path"},
	        {"postgresql://db/moat", "not supported"},
	        {"mysql://db/moat", "unknown kind"},
	        {"/nonexistent/dir/moat.db", "open"},
	};
	table_reset();
	for (size_t i = 0; i < nitems(bad); i++) {
		struct store *s = store_open(bad[i].url, err, sizeof(err));
		if (s != NULL) {
			table_mismatch(bad[i].url, "opened, want an error");
			store_close(s);
		} else if (strstr(err, bad[i].want) == NULL) {
			table_mismatch(bad[i].url, "got '%s', want '%s'", err, bad[i].want);
		}
	}
	assert_int_equal(table_failures, 0);
}

static void
test_newer_schema(void **state)
{
	struct fixture *fx = *state;
	sqlite3 *db;
	char err[256];

	store_close(fx->s);
	fx->s = NULL;
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "INSERT INTO schema_version (version, name, applied) "
	                              "VALUES (999, 'future', 0)",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	struct store *s = store_open(fx->path, err, sizeof(err));
	assert_null(s);
	assert_non_null(strstr(err, "version 999, newer than this moat"));
	/* And nothing was changed: the row is still there, read back. */
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM schema_version WHERE version = 999", NULL,
	                              NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_close(db);
	fx->s = store_open(fx->path, err, sizeof(err));
	assert_non_null(fx->s);
}

/* --- tracking --- */

static void
track(struct store *s, const char *id, int64_t t, const char *sender, const char *r1,
      const char *r2, const char *subject, const char *msgid)
{
	const char *rcpts[2] = {r1, r2};
	struct store_track_in in = {
	        .id = id,
	        .received_ms = t,
	        .client_ip = "192.0.2.1",
	        .helo = "mx.example.org",
	        .sender = sender,
	        .rcpts = rcpts,
	        .nrcpts = r2 != NULL   ? 2
	                  : r1 != NULL ? 1
	                               : 0,
	        .subject = subject,
	        .from = "\"Alice\" <alice@example.org>",
	        .message_id = msgid,
	        .size = 1234,
	};
	assert_int_equal(store_track_received(s, &in), STORE_OK);
}

static void
test_track_timeline(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct store_timeline t;

	track(s, qid(1), 1000, "alice@example.org", "bob@example.com", "carol@example.com", "Hello",
	      "<m1@example.org>");
	assert_int_equal(store_track_verdict(s, qid(1), STORE_V_DELIVER, 1.5,
	                                     "SPF_PASS(-0.10),DKIM_PASS(-0.10)", "clean", 1100),
	                 STORE_OK);
	assert_int_equal(store_track_delivery(s, qid(1), "bob@example.com", STORE_OUT_DEFERRED,
	                                      "451 4.3.0 try later", 1200),
	                 STORE_OK);
	assert_int_equal(store_track_delivery(s, qid(1), "carol@example.com", STORE_OUT_DELIVERED,
	                                      "250 2.0.0 OK", 1200),
	                 STORE_OK);
	assert_int_equal(store_track_delivery(s, qid(1), "bob@example.com", STORE_OUT_DELIVERED,
	                                      "250 2.0.0 OK queued", 5000),
	                 STORE_OK);
	/* A late report older than the outcome recorded does not replace it. */
	assert_int_equal(store_track_delivery(s, qid(1), "bob@example.com", STORE_OUT_DEFERRED,
	                                      "421 late", 4000),
	                 STORE_OK);
	/* A recipient refused at RCPT: added with its outcome. */
	assert_int_equal(store_track_delivery(s, qid(1), "nobody@example.com", STORE_OUT_REJECTED,
	                                      "550 5.1.1 unknown", 1050),
	                 STORE_OK);

	assert_int_equal(store_track_get(s, qid(1), &t), STORE_OK);
	assert_string_equal(t.msg.id, qid(1));
	assert_int_equal(t.msg.received_ms, 1000);
	assert_string_equal(t.msg.sender, "alice@example.org");
	assert_string_equal(t.msg.subject, "Hello");
	assert_string_equal(t.msg.message_id, "<m1@example.org>");
	assert_string_equal(t.msg.helo, "mx.example.org");
	assert_int_equal(t.msg.size, 1234);
	assert_int_equal(t.msg.verdict, STORE_V_DELIVER);
	assert_true(t.msg.score == 1.5);
	assert_string_equal(t.msg.symbols, "SPF_PASS(-0.10),DKIM_PASS(-0.10)");
	assert_int_equal(t.msg.nrcpts, 3);
	assert_string_equal(t.msg.rcpts[0].addr, "bob@example.com");
	assert_int_equal(t.msg.rcpts[0].outcome, STORE_OUT_DELIVERED);
	assert_string_equal(t.msg.rcpts[0].reply, "250 2.0.0 OK queued");
	assert_int_equal(t.msg.rcpts[0].time_ms, 5000);
	assert_int_equal(t.msg.rcpts[2].outcome, STORE_OUT_REJECTED);

	/* received 1000, rejected 1050, verdict 1100, 1200 x2, 4000, 5000 */
	static const struct {
		int64_t t;
		enum store_event_kind kind;
		const char *text;
	} want[] = {
	        {1000, STORE_EV_RECEIVED, ""},
	        {1050, STORE_EV_DELIVERY, "550 5.1.1 unknown"},
	        {1100, STORE_EV_VERDICT, "clean"},
	        {1200, STORE_EV_DELIVERY, "451 4.3.0 try later"},
	        {1200, STORE_EV_DELIVERY, "250 2.0.0 OK"},
	        {4000, STORE_EV_DELIVERY, "421 late"},
	        {5000, STORE_EV_DELIVERY, "250 2.0.0 OK queued"},
	};
	assert_int_equal(t.nevents, nitems(want));
	table_reset();
	for (size_t i = 0; i < nitems(want); i++) {
		const struct store_event *e = &t.events[i];
		if (e->time_ms != want[i].t || e->kind != want[i].kind ||
		    strcmp(e->text, want[i].text) != 0)
			table_mismatch(want[i].text, "event %zu: got %lld/%d/'%s'", i,
			               (long long)e->time_ms, (int)e->kind, e->text);
	}
	assert_int_equal(table_failures, 0);
	store_timeline_free(&t);

	/* Errors. */
	assert_int_equal(store_track_get(s, qid(2), &t), STORE_NOT_FOUND);
	assert_int_equal(store_track_verdict(s, qid(2), STORE_V_REJECT, 9, "", "", 1),
	                 STORE_NOT_FOUND);
	assert_int_equal(store_track_delivery(s, qid(2), "a@b", STORE_OUT_BOUNCED, "", 1),
	                 STORE_NOT_FOUND);
	assert_int_equal(store_track_get(s, "0123", &t), STORE_INVALID);
	assert_int_equal(store_track_get(s, "000000000000000G", &t), STORE_INVALID);
	const char *r[] = {"x@y"};
	struct store_track_in in = {.id = qid(1),
	                            .client_ip = "",
	                            .helo = "",
	                            .sender = "",
	                            .rcpts = r,
	                            .nrcpts = 1,
	                            .subject = "",
	                            .from = "",
	                            .message_id = ""};
	assert_int_equal(store_track_received(s, &in), STORE_ALREADY);
	char big[STORE_HEADER_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	in.id = qid(3);
	in.subject = big;
	assert_int_equal(store_track_received(s, &in), STORE_INVALID);
	big[STORE_HEADER_MAX] = '\0'; /* exactly the limit: fine */
	assert_int_equal(store_track_received(s, &in), STORE_OK);
	in.id = qid(4);
	in.subject = "";
	in.nrcpts = STORE_RCPTS_MAX + 1;
	assert_int_equal(store_track_received(s, &in), STORE_INVALID);
}

/* The data the search tables run on (tracking and, with domain, quarantine). */
static const struct smsg {
	unsigned id;
	int64_t t;
	const char *sender, *r1, *r2, *subject, *msgid;
	enum store_verdict v;
	enum store_qstate q;
} smsgs[] = {
        {1, 100, "alice@example.org", "bob@example.com", NULL, "Invoice 42", "<a@x>",
         STORE_V_DELIVER, STORE_Q_HELD},
        {2, 200, "ALICE@Example.org", "carol@example.com", "bob@example.com", "Re: invoice",
         "<b@x>", STORE_V_QUARANTINE, STORE_Q_RELEASED},
        {3, 200, "mallory@evil.test", "bob@example.com", NULL, "Your account", "<c@x>",
         STORE_V_REJECT, STORE_Q_HELD},
        {4, 300, "", "dave@example.net", NULL, "Delivery Status 100%", "<d@x>", STORE_V_DELIVER,
         STORE_Q_DELETED},
        {5, 400, "news@lists.example.org", "carol@example.com", "dave@example.net", "ab_c", "<e@x>",
         STORE_V_QUARANTINE, STORE_Q_HELD},
        {6, 500, "mallory@evil.test", "Bob@Example.com", NULL, "\"quoted\" subject", "<f@x>",
         STORE_V_NONE, STORE_Q_HELD},
};

struct scase {
	const char *name;
	struct store_filter f; /* limit 0: 50; verdict/state 0 mean any here */
	bool set_verdict, set_state;
	const char *want; /* ids in order, newest first, "" for none */
};

#define F(...)                                                                                     \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}

static const struct scase scases[] = {
        {"all", F(0), false, false, "6 5 4 3 2 1"},
        {"sender exact, any case", F(.sender = "alice@EXAMPLE.org"), false, false, "2 1"},
        {"sender domain", F(.sender = "@evil.test"), false, false, "6 3"},
        {"null sender", F(.sender = ""), false, false, "4"},
        {"rcpt exact", F(.rcpt = "bob@example.com"), false, false, "6 3 2 1"},
        {"rcpt domain", F(.rcpt = "@example.net"), false, false, "5 4"},
        {"rcpt domain once per message", F(.rcpt = "@EXAMPLE.com"), false, false, "6 5 3 2 1"},
        {"subject substring, any case", F(.subject = "INVOICE"), false, false, "2 1"},
        {"subject with %", F(.subject = "100%"), false, false, "4"},
        {"subject _ literal", F(.subject = "b_c"), false, false, "5"},
        {"subject 3 octets", F(.subject = "cou"), false, false, "3"},
        {"subject with quote", F(.subject = "\"quoted\""), false, false, "6"},
        {"subject none", F(.subject = "zzzz"), false, false, ""},
        {"message-id", F(.message_id = "<c@x>"), false, false, "3"},
        {"queue id", F(.id = "0000000000000004"), false, false, "4"},
        {"since", F(.since_ms = 300), false, false, "6 5 4"},
        {"until", F(.until_ms = 300), false, false, "3 2 1"},
        {"range", F(.since_ms = 200, .until_ms = 400), false, false, "4 3 2"},
        {"verdict", F(.verdict = STORE_V_QUARANTINE), true, false, "5 2"},
        {"verdict none", F(.verdict = STORE_V_NONE), true, false, "6"},
        {"range + verdict", F(.since_ms = 150, .verdict = STORE_V_DELIVER), true, false, "4"},
        {"sender + rcpt", F(.sender = "@evil.test", .rcpt = "bob@example.com"), false, false,
         "6 3"},
        {"rcpt + subject + range", F(.rcpt = "@example.com", .subject = "invoice", .until_ms = 150),
         false, false, "1"},
        {"after a cursor", F(.after = {200, "0000000000000003"}), false, false, "2 1"},
        {"after a cursor, rcpt", F(.rcpt = "bob@example.com", .after = {200, "0000000000000003"}),
         false, false, "2 1"},
        {"limit", F(.limit = 2), false, false, "6 5"},
};

/* quarantine-only cases (domain and state) */
static const struct scase qcases[] = {
        {"domain", F(.domain = "EXAMPLE.net"), false, false, "4"},
        {"state held", F(.state = STORE_Q_HELD), false, true, "6 5 3 1"},
        {"state released", F(.state = STORE_Q_RELEASED), false, true, "2"},
        {"domain + state", F(.domain = "example.com", .state = STORE_Q_HELD), false, true,
         "6 5 3 1"},
        {"rcpt + state", F(.rcpt = "bob@example.com", .state = STORE_Q_HELD), false, true, "6 3 1"},
};

static void
ids_of(char *buf, size_t size, const char (*ids)[STORE_ID_MAX + 1], size_t n)
{
	struct dynbuf b;

	dynbuf_init(&b, size - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned long v = strtoul(ids[i], NULL, 16);
		dynbuf_printf(&b, "%s%lu", i ? " " : "", v);
	}
	str_copy(buf, b.p != NULL ? b.p : "", size);
	free(b.p);
}

static void
filter_of(const struct scase *c, struct store_filter *f)
{
	store_filter_init(f);
	*f = c->f;
	if (f->limit == 0)
		f->limit = 50;
	if (!c->set_verdict)
		f->verdict = STORE_V_ANY;
	if (!c->set_state)
		f->state = STORE_Q_ANY;
}

static void
run_track_cases(struct store *s, const struct scase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct store_filter f;
		struct store_msg_page p;
		char ids[STORE_PAGE_MAX][STORE_ID_MAX + 1], got[256];

		filter_of(&cases[i], &f);
		enum store_status st = store_track_search(s, &f, &p);
		if (st != STORE_OK) {
			table_mismatch(cases[i].name, "got %s (%s)", store_status_str(st),
			               store_errmsg(s));
			continue;
		}
		for (size_t j = 0; j < p.n; j++)
			str_copy(ids[j], p.rows[j].id, sizeof(ids[j]));
		ids_of(got, sizeof(got), (const char(*)[STORE_ID_MAX + 1]) ids, p.n);
		if (strcmp(got, cases[i].want) != 0)
			table_mismatch(cases[i].name, "got '%s', want '%s'", got, cases[i].want);
		store_msg_page_free(&p);
	}
}

static void
run_quar_cases(struct store *s, const struct scase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct store_filter f;
		struct store_quar_page p;
		char ids[STORE_PAGE_MAX][STORE_ID_MAX + 1], got[256];

		filter_of(&cases[i], &f);
		enum store_status st = store_quarantine_search(s, &f, &p);
		if (st != STORE_OK) {
			table_mismatch(cases[i].name, "got %s (%s)", store_status_str(st),
			               store_errmsg(s));
			continue;
		}
		for (size_t j = 0; j < p.n; j++)
			str_copy(ids[j], p.rows[j].id, sizeof(ids[j]));
		ids_of(got, sizeof(got), (const char(*)[STORE_ID_MAX + 1]) ids, p.n);
		if (strcmp(got, cases[i].want) != 0)
			table_mismatch(cases[i].name, "quarantine: got '%s', want '%s'", got,
			               cases[i].want);
		store_quar_page_free(&p);
	}
}

static void
quar_add(struct store *s, const char *id, int64_t t, const char *domain, const char *sender,
         const char *r1, const char *r2, const char *subject, const char *msgid,
         enum store_verdict v)
{
	const char *rcpts[2] = {r1, r2};
	struct store_quar_in in = {
	        .id = id,
	        .domain = domain,
	        .received_ms = t,
	        .sender = sender,
	        .rcpts = rcpts,
	        .nrcpts = r2 != NULL ? 2 : 1,
	        .from = "From <f@example.org>",
	        .subject = subject,
	        .message_id = msgid,
	        .size = 4321,
	        .verdict = v,
	        .score = 7.5,
	        .symbols = "GTUBE(100.00)",
	};
	assert_int_equal(store_quarantine_add(s, &in), STORE_OK);
}

static void
test_search_filters(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;

	for (size_t i = 0; i < nitems(smsgs); i++) {
		const struct smsg *m = &smsgs[i];
		track(s, qid(m->id), m->t, m->sender, m->r1, m->r2, m->subject, m->msgid);
		if (m->v != STORE_V_NONE)
			assert_int_equal(store_track_verdict(s, qid(m->id), m->v, 1, "", "", m->t),
			                 STORE_OK);
		quar_add(s, qid(m->id), m->t, strchr(m->r1, '@') + 1, m->sender, m->r1, m->r2,
		         m->subject, m->msgid, m->v);
		if (m->q != STORE_Q_HELD)
			assert_int_equal(store_quarantine_set_state(s, qid(m->id), m->q, "admin",
			                                            m->t + 1, NULL),
			                 STORE_OK);
	}
	table_reset();
	run_track_cases(s, scases, nitems(scases));
	run_quar_cases(s, scases, nitems(scases));
	run_quar_cases(s, qcases, nitems(qcases));
	assert_int_equal(table_failures, 0);

	/* Bad filters. */
	struct store_filter f;
	struct store_msg_page p;
	store_filter_init(&f);
	f.subject = "ab"; /* below STORE_SUBJECT_MIN */
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	f.sender = "@";
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	f.limit = STORE_PAGE_MAX + 1;
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	f.limit = 0;
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	f.id = "nothex";
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	f.verdict = 42;
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
	store_filter_init(&f);
	str_copy(f.after.id, "xyz", sizeof(f.after.id));
	assert_int_equal(store_track_search(s, &f, &p), STORE_INVALID);
}

/* Page through a filter with a small limit: every row once, in order. */
static void
page_all(struct store *s, bool quar, const char *rcpt, const char *subject, unsigned limit,
         size_t want_n)
{
	struct store_filter f;
	size_t seen = 0, pages = 0;
	int64_t last_t = INT64_MAX;
	char last_id[STORE_ID_MAX + 1] = "gggggggggggggggg"; /* above every hex id */
	unsigned char *hit = xcalloc(1u << 16, 1);           /* ids seen */

	store_filter_init(&f);
	f.limit = limit;
	f.rcpt = rcpt;
	f.subject = subject;
	for (;;) {
		size_t n;
		bool more;
		struct store_msg_page mp = {0};
		struct store_quar_page qp = {0};

		if (quar) {
			assert_int_equal(store_quarantine_search(s, &f, &qp), STORE_OK);
			n = qp.n;
			more = qp.more;
		} else {
			assert_int_equal(store_track_search(s, &f, &mp), STORE_OK);
			n = mp.n;
			more = mp.more;
		}
		pages++;
		for (size_t i = 0; i < n; i++) {
			const char *id = quar ? qp.rows[i].id : mp.rows[i].id;
			int64_t t = quar ? qp.rows[i].received_ms : mp.rows[i].received_ms;
			unsigned long v = strtoul(id, NULL, 16);
			/* strictly decreasing (time, id) */
			if (!(t < last_t || (t == last_t && strcmp(id, last_id) < 0)))
				fail_msg("page %zu row %zu: %lld/%s after %lld/%s", pages, i,
				         (long long)t, id, (long long)last_t, last_id);
			assert_true(v >= 1 && v < (1u << 16));
			assert_int_equal(hit[v], 0);
			hit[v] = 1;
			last_t = t;
			str_copy(last_id, id, sizeof(last_id));
			seen++;
		}
		if (quar) {
			f.after = qp.next;
			store_quar_page_free(&qp);
		} else {
			f.after = mp.next;
			store_msg_page_free(&mp);
		}
		if (!more)
			break;
		assert_true(n == limit);
	}
	assert_int_equal(seen, want_n);
	free(hit);
}

static void
test_keyset_paging(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	const size_t n = 257;

	/* Groups of 7 messages share a time stamp; ids not in time order. */
	assert_int_equal(store_batch_begin(s), STORE_OK);
	for (size_t i = 1; i <= n; i++) {
		int64_t t = 1000 + (int64_t)((n - i) / 7);
		track(s, qid((unsigned)i), t, "a@example.org", "r@example.com", NULL, "s", "");
		quar_add(s, qid((unsigned)i), t, "example.com", "a@example.org", "r@example.com",
		         NULL, "s", "", STORE_V_QUARANTINE);
	}
	assert_int_equal(store_batch_commit(s), STORE_OK);
	static const unsigned limits[] = {1, 6, 7, 10, 256, 257, 500};
	for (size_t i = 0; i < nitems(limits); i++) {
		page_all(s, false, NULL, NULL, limits[i], n);
		page_all(s, false, "r@example.com", NULL, limits[i], n);
		page_all(s, false, "@example.com", NULL, limits[i], n);
		page_all(s, true, NULL, NULL, limits[i], n);
		page_all(s, true, "@EXAMPLE.com", NULL, limits[i], n);
	}
}

/*
 * A subject matching more rows than the trigram index is asked for
 * (FTS_RARE_MAX, 5000) is found along the time index instead: the same
 * rows, in the same order, either way.
 */
static void
test_subject_common(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	const unsigned common = 5200, all = 6000;
	char subj[64];

	assert_int_equal(store_batch_begin(s), STORE_OK);
	for (unsigned i = 1; i <= all; i++) {
		int64_t t = 1000 + (i * 7919) % 1500; /* shuffled, many equal */
		if (i <= common)
			snprintf(subj, sizeof(subj), "Weekly REPORT %u", i);
		else
			snprintf(subj, sizeof(subj), "something else %u", i);
		track(s, qid(i), t, "a@example.org", "r@example.com", NULL, subj, "");
		quar_add(s, qid(i), t, "example.com", "a@example.org", "r@example.com", NULL, subj,
		         "", STORE_V_QUARANTINE);
	}
	assert_int_equal(store_batch_commit(s), STORE_OK);
	page_all(s, false, NULL, "report", 500, common); /* common: LIKE along time */
	page_all(s, true, NULL, "report", 97, common);
	page_all(s, false, "r@example.com", "rePort", 500, common);
	page_all(s, false, NULL, "REPORT 1", 50, 1 + 10 + 100 + 1000); /* rare: FTS */
}

static void
test_track_purge(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct store_timeline t;
	size_t n;

	for (unsigned i = 1; i <= 10; i++) {
		track(s, qid(i), i * 100, "a@x.test", "b@y.test", NULL, "purge me", "");
		assert_int_equal(store_track_delivery(s, qid(i), "b@y.test", STORE_OUT_DELIVERED,
		                                      "250 ok", i * 100 + 1),
		                 STORE_OK);
	}
	assert_int_equal(store_track_purge(s, 501, 3, &n), STORE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(store_track_purge(s, 501, 100, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_track_get(s, qid(5), &t), STORE_NOT_FOUND);
	assert_int_equal(store_track_get(s, qid(6), &t), STORE_OK);
	store_timeline_free(&t);

	struct store_filter f;
	struct store_msg_page p;
	store_filter_init(&f);
	f.subject = "purge";
	assert_int_equal(store_track_search(s, &f, &p), STORE_OK);
	assert_int_equal(p.n, 5); /* the FTS index forgot them too */
	store_msg_page_free(&p);
	f.subject = NULL;
	f.rcpt = "b@y.test";
	assert_int_equal(store_track_search(s, &f, &p), STORE_OK);
	assert_int_equal(p.n, 5); /* and the recipient rows (cascade) */
	store_msg_page_free(&p);
}

/* --- threat counts (the dashboard's top threats and senders) --- */

/* Collects what store_track_threat_*() report, as "NAME=messages/positive" or "sender=n". */
struct got {
	char text[1024];
	size_t calls, stop_after; /* stop_after 0: never stop */
};

static int
got_symbol(void *arg, const char *name, uint64_t messages, uint64_t positive)
{
	struct got *g = arg;
	size_t len = strlen(g->text);

	snprintf(g->text + len, sizeof(g->text) - len, "%s%s=%llu/%llu", len ? " " : "", name,
	         (unsigned long long)messages, (unsigned long long)positive);
	return ++g->calls == g->stop_after;
}

static int
got_sender(void *arg, const char *sender, uint64_t count)
{
	struct got *g = arg;
	size_t len = strlen(g->text);

	snprintf(g->text + len, sizeof(g->text) - len, "%s%s=%llu", len ? " " : "",
	         sender[0] ? sender : "<>", (unsigned long long)count);
	return ++g->calls == g->stop_after;
}

static void
test_threats(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	/* id, received, verdict, sender, symbols line */
	static const struct {
		int64_t t;
		enum store_verdict v;
		const char *sender, *symbols;
	} msgs[] = {
	        /* before since (1000): never counted */
	        {900, STORE_V_QUARANTINE, "old@x.test", "OLD_ONE(9.00)"},
	        /* delivered and tempfailed mail: never counted */
	        {1100, STORE_V_DELIVER, "ok@x.test", "SPF_PASS(-0.10),BAYES(3.00)"},
	        {1150, STORE_V_TEMPFAIL, "t@x.test", "CLAMD_DOWN(0.00)"},
	        {1200, STORE_V_QUARANTINE, "Spam@Bad.test", "SPF_FAIL(2.00),BAYES(3.00)"},
	        /* details with commas, brackets and parentheses; a score of 0 and a negative one */
	        {1300, STORE_V_REJECT, "spam@bad.test",
	         "ATTACH_BLOCKED(0.00)[a.exe,b](c).exe],SPF_FAIL(2.00)[x],DKIM_PASS(-0.50)"},
	        /* a detail imitating the format adds its name (once), a repeated name counts once
	         */
	        {1400, STORE_V_QUARANTINE, "",
	         "PHISH(4.00)[evil],FAKE(9.00)[z],SPF_FAIL(1.00),SPF_FAIL(0.00),BAYES(-1.00)"},
	        /* cut short: the last symbol is not counted; malformed heads end the line */
	        {1500, STORE_V_QUARANTINE, "spam@bad.test", "BAYES(5.00),GTUBE(100.0..."},
	        {1600, STORE_V_REJECT, "other@else.test", "BAYES(5.00)[never closed"},
	        {1700, STORE_V_REJECT, "other@else.test", "lower_case(1.00),bad name(1.00)"},
	        {1800, STORE_V_QUARANTINE, "third@else.test", "(1.00),X(1.00)"},
	        {1900, STORE_V_QUARANTINE, "third@else.test", ""},
	};
	struct got g = {0};

	for (size_t i = 0; i < nitems(msgs); i++) {
		track(s, qid(100 + (unsigned)i), msgs[i].t, msgs[i].sender, "a@y.test", NULL, "s",
		      "");
		assert_int_equal(store_track_verdict(s, qid(100 + (unsigned)i), msgs[i].v, 1,
		                                     msgs[i].symbols, "", msgs[i].t + 1),
		                 STORE_OK);
	}

	assert_int_equal(store_track_threat_symbols(s, 1000, 1000, got_symbol, &g), STORE_OK);
	/* messages first, then by name */
	assert_string_equal(g.text, "BAYES=3/2 SPF_FAIL=3/3 ATTACH_BLOCKED=1/0 DKIM_PASS=1/0 "
	                            "FAKE=1/1 PHISH=1/1 lower_case=1/1");

	/* the newest 4 only: 1600 (not counted: unclosed detail), 1700, 1800, 1900 */
	memset(&g, 0, sizeof(g));
	assert_int_equal(store_track_threat_symbols(s, 1000, 4, got_symbol, &g), STORE_OK);
	assert_string_equal(g.text, "lower_case=1/1");
	/* the newest 6 mix both verdicts: 1400..1900 */
	memset(&g, 0, sizeof(g));
	assert_int_equal(store_track_threat_symbols(s, 1000, 6, got_symbol, &g), STORE_OK);
	assert_string_equal(g.text, "BAYES=2/1 FAKE=1/1 PHISH=1/1 SPF_FAIL=1/1 lower_case=1/1");
	/* fn stops it */
	memset(&g, 0, sizeof(g));
	g.stop_after = 2;
	assert_int_equal(store_track_threat_symbols(s, 1000, 1000, got_symbol, &g), STORE_OK);
	assert_string_equal(g.text, "BAYES=3/2 SPF_FAIL=3/3");

	/* senders: case-insensitive, "" for <>, most first then by sender, limit */
	memset(&g, 0, sizeof(g));
	assert_int_equal(store_track_threat_senders(s, 1000, 1000, 10, got_sender, &g), STORE_OK);
	assert_true(strncmp(g.text, "spam@bad.test=3 ", 16) == 0 ||
	            strncmp(g.text, "Spam@Bad.test=3 ", 16) == 0);
	assert_string_equal(g.text + 16, "other@else.test=2 third@else.test=2 <>=1");
	memset(&g, 0, sizeof(g));
	assert_int_equal(store_track_threat_senders(s, 1000, 3, 1, got_sender, &g), STORE_OK);
	assert_string_equal(g.text, "third@else.test=2");
	memset(&g, 0, sizeof(g));
	assert_int_equal(store_track_threat_senders(s, 2000, 1000, 10, got_sender, &g), STORE_OK);
	assert_string_equal(g.text, "");

	/* limits */
	assert_int_equal(store_track_threat_symbols(s, 0, 0, got_symbol, &g), STORE_INVALID);
	assert_int_equal(
	        store_track_threat_symbols(s, 0, STORE_THREAT_SCAN_MAX + 1, got_symbol, &g),
	        STORE_INVALID);
	assert_int_equal(store_track_threat_symbols(s, -1, 10, got_symbol, &g), STORE_INVALID);
	assert_int_equal(store_track_threat_senders(s, 0, 10, 0, got_sender, &g), STORE_INVALID);
	assert_int_equal(store_track_threat_senders(s, 0, 10, STORE_PAGE_MAX + 1, got_sender, &g),
	                 STORE_INVALID);
}

/* More distinct names than a count keeps: the first STORE_SYMBOL_NAMES_MAX are counted. */
static void
test_threats_many_names(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct got g = {0};
	char line[STORE_SYMBOLS_MAX + 1];
	unsigned id = 1, name = 0;

	while (name < STORE_SYMBOL_NAMES_MAX + 100) {
		size_t len = 0;

		line[0] = '\0';
		for (unsigned k = 0; k < 100; k++, name++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%sS%u(1.00)",
			                        k ? "," : "", name);
		track(s, qid(id), 5000 + id, "x@y.test", "a@y.test", NULL, "s", "");
		assert_int_equal(
		        store_track_verdict(s, qid(id), STORE_V_REJECT, 1, line, "", 6000 + id),
		        STORE_OK);
		id++;
	}
	g.stop_after = STORE_SYMBOL_NAMES_MAX + 1000;
	assert_int_equal(store_track_threat_symbols(s, 0, 1000, got_symbol, &g), STORE_OK);
	assert_int_equal(g.calls, STORE_SYMBOL_NAMES_MAX);
}

/* --- quarantine --- */

static void
test_quarantine_state(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct store_quar q;
	enum store_qstate was;

	quar_add(s, qid(1), 1000, "example.com", "spam@evil.test", "bob@example.com",
	         "carol@example.com", "Buy now", "<q1@evil>", STORE_V_QUARANTINE);
	quar_add(s, qid(2), 2000, "example.com", "spam@evil.test", "bob@example.com", NULL,
	         "Buy later", "<q2@evil>", STORE_V_QUARANTINE);
	quar_add(s, qid(3), 3000, "example.com", "spam@evil.test", "bob@example.com", NULL,
	         "Buy never", "<q3@evil>", STORE_V_QUARANTINE);
	const char *r[] = {"x@y"};
	struct store_quar_in dup = {.id = qid(1),
	                            .domain = "d",
	                            .sender = "",
	                            .rcpts = r,
	                            .nrcpts = 1,
	                            .from = "",
	                            .subject = "",
	                            .message_id = "",
	                            .symbols = ""};
	assert_int_equal(store_quarantine_add(s, &dup), STORE_ALREADY);
	dup.id = qid(9);
	dup.nrcpts = 0;
	assert_int_equal(store_quarantine_add(s, &dup), STORE_INVALID);

	assert_int_equal(store_quarantine_get(s, qid(1), &q), STORE_OK);
	assert_string_equal(q.domain, "example.com");
	assert_string_equal(q.sender, "spam@evil.test");
	assert_int_equal(q.nrcpts, 2);
	assert_string_equal(q.subject, "Buy now");
	assert_string_equal(q.symbols, "GTUBE(100.00)");
	assert_int_equal(q.verdict, STORE_V_QUARANTINE);
	assert_int_equal(q.state, STORE_Q_HELD);
	assert_int_equal(q.size, 4321);
	store_quar_free(&q);

	static const struct {
		unsigned id;
		enum store_qstate to;
		enum store_status want;
		enum store_qstate was;
	} steps[] = {
	        {1, STORE_Q_RELEASED, STORE_OK, STORE_Q_HELD},
	        {1, STORE_Q_RELEASED, STORE_ALREADY, STORE_Q_RELEASED}, /* "already released" */
	        {1, STORE_Q_DELETED, STORE_CONFLICT, STORE_Q_RELEASED},
	        {2, STORE_Q_DELETED, STORE_OK, STORE_Q_HELD},
	        {2, STORE_Q_RELEASED, STORE_CONFLICT, STORE_Q_DELETED},
	        {2, STORE_Q_DELETED, STORE_ALREADY, STORE_Q_DELETED},
	        {7, STORE_Q_RELEASED, STORE_NOT_FOUND, STORE_Q_HELD},
	};
	table_reset();
	for (size_t i = 0; i < nitems(steps); i++) {
		was = STORE_Q_HELD;
		enum store_status st = store_quarantine_set_state(s, qid(steps[i].id), steps[i].to,
		                                                  "admin", 5000, &was);
		if (st != steps[i].want || was != steps[i].was)
			table_mismatch(store_qstate_str(steps[i].to), "step %zu: got %s/%s", i,
			               store_status_str(st), store_qstate_str(was));
	}
	assert_int_equal(table_failures, 0);
	assert_int_equal(store_quarantine_set_state(s, qid(3), STORE_Q_HELD, "admin", 1, NULL),
	                 STORE_INVALID);
	assert_int_equal(store_quarantine_set_state(s, qid(3), STORE_Q_RELEASED, "", 1, NULL),
	                 STORE_INVALID);

	assert_int_equal(store_quarantine_get(s, qid(1), &q), STORE_OK);
	assert_int_equal(q.state, STORE_Q_RELEASED);
	assert_string_equal(q.state_by, "admin");
	assert_int_equal(q.state_ms, 5000);
	store_quar_free(&q);
	assert_int_equal(store_quarantine_get(s, qid(8), &q), STORE_NOT_FOUND);

	/* Retention: only held entries older than the limit, oldest first. */
	quar_add(s, qid(4), 500, "example.com", "a@b.test", "bob@example.com", NULL, "", "",
	         STORE_V_QUARANTINE);
	char ids[8][STORE_ID_MAX + 1];
	size_t n;
	assert_int_equal(store_quarantine_expired(s, 3500, ids, 8, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0], qid(4));
	assert_string_equal(ids[1], qid(3));
	assert_int_equal(store_quarantine_expired(s, 3500, ids, 1, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(
	        store_quarantine_set_state(s, qid(4), STORE_Q_EXPIRED, "system", 6000, NULL),
	        STORE_OK);
	assert_int_equal(store_quarantine_expired(s, 3500, ids, 8, &n), STORE_OK);
	assert_int_equal(n, 1);
}

/* Two threads, two connections, one entry: exactly one release wins. */
struct racer {
	const char *path;
	pthread_barrier_t *barrier;
	unsigned rounds;
	unsigned won, already, other;
	const char *who;
};

static void *
race(void *arg)
{
	struct racer *r = arg;
	char err[256];
	struct store *s = store_open(r->path, err, sizeof(err));

	if (s == NULL)
		return NULL;
	for (unsigned i = 1; i <= r->rounds; i++) {
		pthread_barrier_wait(r->barrier);
		enum store_status st =
		        store_quarantine_set_state(s, qid(i), STORE_Q_RELEASED, r->who, 1000, NULL);
		if (st == STORE_OK)
			r->won++;
		else if (st == STORE_ALREADY)
			r->already++;
		else
			r->other++;
	}
	store_close(s);
	return NULL;
}

static void
test_concurrent_release(void **state)
{
	struct fixture *fx = *state;
	const unsigned rounds = 50;
	pthread_barrier_t barrier;
	pthread_t th[2];
	struct racer r[2];

	assert_int_equal(store_batch_begin(fx->s), STORE_OK);
	for (unsigned i = 1; i <= rounds; i++)
		quar_add(fx->s, qid(i), i, "example.com", "a@b.test", "bob@example.com", NULL, "",
		         "", STORE_V_QUARANTINE);
	assert_int_equal(store_batch_commit(fx->s), STORE_OK);
	pthread_barrier_init(&barrier, NULL, 2);
	for (size_t i = 0; i < 2; i++) {
		r[i] = (struct racer){.path = fx->path,
		                      .barrier = &barrier,
		                      .rounds = rounds,
		                      .who = i ? "api:node-b" : "api:node-a"};
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (size_t i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&barrier);
	assert_int_equal(r[0].other + r[1].other, 0);
	assert_int_equal(r[0].won + r[1].won, rounds);
	assert_int_equal(r[0].already + r[1].already, rounds);
	/* And the winner is recorded. */
	struct store_quar q;
	assert_int_equal(store_quarantine_get(fx->s, qid(1), &q), STORE_OK);
	assert_int_equal(q.state, STORE_Q_RELEASED);
	assert_true(strncmp(q.state_by, "api:node-", 9) == 0);
	store_quar_free(&q);
}

/* --- audit, settings --- */

static int
audit_collect(void *arg, const struct store_audit *a)
{
	struct dynbuf *b = arg;

	dynbuf_printf(b, "%lld:%s:%s:%s:%s;", (long long)a->time_ms, a->who, a->action, a->target,
	              a->addr);
	return 0;
}

static void
test_audit(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct dynbuf b;
	static const struct store_audit in[] = {
	        {0, 1, "admin", "release", "00000000000000a1", "192.0.2.7"},
	        {0, 2, "token:ci", "rule.put", "block exe", "::1"},
	        {0, 3, "admin", "delete", "00000000000000a1", ""},
	};

	for (size_t i = 0; i < nitems(in); i++)
		assert_int_equal(store_audit_add(s, &in[i]), STORE_OK);
	dynbuf_init(&b, 4096);
	assert_int_equal(store_audit_list(s, NULL, 0, 10, audit_collect, &b), STORE_OK);
	assert_string_equal(b.p, "3:admin:delete:00000000000000a1:;2:token:ci:rule.put:block "
	                         "exe:::1;1:admin:release:00000000000000a1:192.0.2.7;");
	free(b.p);
	dynbuf_init(&b, 4096);
	assert_int_equal(store_audit_list(s, "00000000000000a1", 0, 10, audit_collect, &b),
	                 STORE_OK);
	assert_string_equal(b.p, "3:admin:delete:00000000000000a1:;1:admin:release:"
	                         "00000000000000a1:192.0.2.7;");
	free(b.p);
	dynbuf_init(&b, 4096);
	assert_int_equal(store_audit_list(s, NULL, 3, 1, audit_collect, &b), STORE_OK);
	assert_string_equal(b.p, "2:token:ci:rule.put:block exe:::1;");
	free(b.p);
	struct store_audit bad = {0, 1, "", "x", "", ""};
	assert_int_equal(store_audit_add(s, &bad), STORE_INVALID);
}

static int
settings_collect(void *arg, const char *key, const char *value)
{
	dynbuf_printf(arg, "%s=%s;", key, value);
	return 0;
}

static void
test_settings(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	char v[8];
	struct dynbuf b;

	assert_int_equal(store_setting_get(s, "retention", v, sizeof(v)), STORE_NOT_FOUND);
	assert_int_equal(store_setting_set(s, "retention", "30d"), STORE_OK);
	assert_int_equal(store_setting_set(s, "retention", "14d"), STORE_OK);
	assert_int_equal(store_setting_set(s, "a.first", ""), STORE_OK);
	assert_int_equal(store_setting_get(s, "retention", v, sizeof(v)), STORE_OK);
	assert_string_equal(v, "14d");
	assert_int_equal(store_setting_set(s, "long", "12345678"), STORE_OK);
	assert_int_equal(store_setting_get(s, "long", v, sizeof(v)), STORE_INVALID);
	dynbuf_init(&b, 1024);
	assert_int_equal(store_setting_list(s, settings_collect, &b), STORE_OK);
	assert_string_equal(b.p, "a.first=;long=12345678;retention=14d;");
	free(b.p);
	assert_int_equal(store_setting_delete(s, "long"), STORE_OK);
	assert_int_equal(store_setting_delete(s, "long"), STORE_NOT_FOUND);
	assert_int_equal(store_setting_set(s, "", "x"), STORE_INVALID);
}

/* --- rules, lists --- */

static int
rules_collect(void *arg, const struct rule_spec *r)
{
	struct dynbuf *b = arg;
	char err[256];
	struct rule *built = rule_new(r, err, sizeof(err)); /* what was stored still parses */

	dynbuf_printf(b, "[%s p=%u e=%d s=%d%s]", r->name, r->priority, r->enabled, r->stop,
	              built != NULL ? "" : " BAD");
	for (size_t i = 0; i < r->nifs; i++)
		dynbuf_printf(b, " if %s;", r->ifs[i]);
	for (size_t i = 0; i < r->nunless; i++)
		dynbuf_printf(b, " unless %s;", r->unless[i]);
	for (size_t i = 0; i < r->nthen; i++)
		dynbuf_printf(b, " then %s;", r->then[i]);
	rule_free(built);
	return 0;
}

static void
test_rules(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	const char *ifs[] = {"sender @partner.example", "header Subject ^invoice"};
	const char *unless[] = {"sender-ip 192.0.2.0/24"};
	const char *then[] = {"score 5", "set-header X-Tag: partner"};
	const char *then2[] = {"reject"};
	struct rule_spec a = {.name = "partner invoices",
	                      .priority = 20,
	                      .enabled = true,
	                      .stop = true,
	                      .ifs = ifs,
	                      .nifs = 2,
	                      .unless = unless,
	                      .nunless = 1,
	                      .then = then,
	                      .nthen = 2};
	struct rule_spec b = {.name = "block-exe",
	                      .priority = 10,
	                      .enabled = false,
	                      .ifs = (const char *[]){"attachment *.exe"},
	                      .nifs = 1,
	                      .then = then2,
	                      .nthen = 1};
	struct dynbuf out;

	assert_int_equal(store_rule_put(s, &a), STORE_OK);
	assert_int_equal(store_rule_put(s, &b), STORE_OK);
	dynbuf_init(&out, 8192);
	assert_int_equal(store_rule_load(s, rules_collect, &out), STORE_OK);
	assert_string_equal(out.p, "[block-exe p=10 e=0 s=0] if attachment *.exe; then reject;"
	                           "[partner invoices p=20 e=1 s=1] if sender @partner.example; "
	                           "if header Subject ^invoice; unless sender-ip 192.0.2.0/24; "
	                           "then score 5; then set-header X-Tag: partner;");
	free(out.p);

	/* Replace by name: new priority and lines; another rule's priority conflicts. */
	a.priority = 5;
	a.nifs = 1;
	a.nunless = 0;
	a.nthen = 1;
	assert_int_equal(store_rule_put(s, &a), STORE_OK);
	b.priority = 5;
	assert_int_equal(store_rule_put(s, &b), STORE_CONFLICT);
	dynbuf_init(&out, 8192);
	assert_int_equal(store_rule_load(s, rules_collect, &out), STORE_OK);
	assert_string_equal(out.p, "[partner invoices p=5 e=1 s=1] if sender @partner.example; "
	                           "then score 5;[block-exe p=10 e=0 s=0] if attachment *.exe; "
	                           "then reject;");
	free(out.p);
	assert_int_equal(store_rule_delete(s, "block-exe"), STORE_OK);
	assert_int_equal(store_rule_delete(s, "block-exe"), STORE_NOT_FOUND);
	b.name = "bad/name";
	assert_int_equal(store_rule_put(s, &b), STORE_INVALID);
	b.name = "x";
	b.nthen = RULE_ITEMS_MAX + 1;
	assert_int_equal(store_rule_put(s, &b), STORE_INVALID);
}

static int
lists_collect(void *arg, const struct store_list_entry *e)
{
	dynbuf_printf(arg, "%s/%s/%s;", e->scope, e->kind == STORE_LIST_BLOCK ? "block" : "allow",
	              e->pattern);
	return 0;
}

static void
test_lists(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	static const struct store_list_entry in[] = {
	        {"", STORE_LIST_BLOCK, "@evil.test", 1},
	        {"example.com", STORE_LIST_ALLOW, "boss@partner.example", 2},
	        {"example.com", STORE_LIST_BLOCK, "@spam.test", 3},
	        {"example.net", STORE_LIST_ALLOW, "@partner.example", 4},
	};
	struct dynbuf b;

	for (size_t i = 0; i < nitems(in); i++)
		assert_int_equal(store_list_add(s, &in[i]), STORE_OK);
	struct store_list_entry dup = {"EXAMPLE.com", STORE_LIST_BLOCK, "@SPAM.test", 5};
	assert_int_equal(store_list_add(s, &dup), STORE_ALREADY);
	dynbuf_init(&b, 1024);
	assert_int_equal(store_list_load(s, NULL, lists_collect, &b), STORE_OK);
	assert_string_equal(b.p,
	                    "/block/@evil.test;example.com/allow/boss@partner.example;"
	                    "example.com/block/@spam.test;example.net/allow/@partner.example;");
	free(b.p);
	dynbuf_init(&b, 1024);
	assert_int_equal(store_list_load(s, "example.com", lists_collect, &b), STORE_OK);
	assert_string_equal(b.p, "example.com/allow/boss@partner.example;"
	                         "example.com/block/@spam.test;");
	free(b.p);
	assert_int_equal(store_list_delete(s, "example.com", STORE_LIST_BLOCK, "@spam.test"),
	                 STORE_OK);
	assert_int_equal(store_list_delete(s, "example.com", STORE_LIST_BLOCK, "@spam.test"),
	                 STORE_NOT_FOUND);
}

/* --- users, tokens --- */

static int
tokens_count(void *arg, const struct store_token *t)
{
	(*(int *)arg)++;
	return 0;
}

static void
test_users_tokens(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct store_user u = {.name = "admin",
	                       .hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
	                       .created_ms = 7},
	                  got;

	assert_int_equal(store_user_add(s, &u), STORE_OK);
	assert_int_equal(store_user_add(s, &u), STORE_ALREADY);
	assert_int_equal(store_user_get(s, "admin", &got), STORE_OK);
	assert_string_equal(got.hash, u.hash);
	assert_int_equal(got.created_ms, 7);
	assert_int_equal(store_user_set_hash(s, "admin", "$argon2id$new"), STORE_OK);
	assert_int_equal(store_user_get(s, "admin", &got), STORE_OK);
	assert_string_equal(got.hash, "$argon2id$new");
	assert_int_equal(store_user_set_hash(s, "nobody", "x"), STORE_NOT_FOUND);
	assert_int_equal(store_user_delete(s, "admin"), STORE_OK);
	assert_int_equal(store_user_get(s, "admin", &got), STORE_NOT_FOUND);

	struct store_token t = {.id = "tok1",
	                        .scopes = STORE_SCOPE_READ | STORE_SCOPE_OPERATE,
	                        .created_ms = 10},
	                   tg;
	memset(t.hash, 0xab, sizeof(t.hash));
	assert_int_equal(store_token_add(s, &t), STORE_OK);
	assert_int_equal(store_token_add(s, &t), STORE_ALREADY);
	str_copy(t.id, "tok2", sizeof(t.id));
	assert_int_equal(store_token_add(s, &t), STORE_ALREADY); /* same hash */
	t.hash[0] = 0;
	t.scopes = STORE_SCOPE_ADMIN;
	assert_int_equal(store_token_add(s, &t), STORE_OK);
	t.scopes = 8;
	str_copy(t.id, "tok3", sizeof(t.id));
	assert_int_equal(store_token_add(s, &t), STORE_INVALID);

	unsigned char h[STORE_SHA256_LEN];
	memset(h, 0xab, sizeof(h));
	assert_int_equal(store_token_find(s, h, &tg), STORE_OK);
	assert_string_equal(tg.id, "tok1");
	assert_int_equal(tg.scopes, STORE_SCOPE_READ | STORE_SCOPE_OPERATE);
	assert_int_equal(tg.last_used_ms, 0);
	assert_int_equal(store_token_touch(s, "tok1", 99), STORE_OK);
	assert_int_equal(store_token_find(s, h, &tg), STORE_OK);
	assert_int_equal(tg.last_used_ms, 99);
	h[1] = 0;
	assert_int_equal(store_token_find(s, h, &tg), STORE_NOT_FOUND);
	int n = 0;
	assert_int_equal(store_token_list(s, tokens_count, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_token_delete(s, "tok1"), STORE_OK);
	assert_int_equal(store_token_delete(s, "tok1"), STORE_NOT_FOUND);
	assert_int_equal(store_token_touch(s, "tok1", 100), STORE_NOT_FOUND);
}

/* A failed call inside a batch undoes only itself; a rolled-back batch leaves nothing. */
static void
test_batch(void **state)
{
	struct store *s = ((struct fixture *)*state)->s;
	struct store_timeline t;
	const char *r[] = {"a@b.test"};
	struct store_track_in in = {.id = qid(1),
	                            .client_ip = "",
	                            .helo = "",
	                            .sender = "",
	                            .rcpts = r,
	                            .nrcpts = 1,
	                            .subject = "",
	                            .from = "",
	                            .message_id = ""};

	assert_int_equal(store_batch_begin(s), STORE_OK);
	assert_int_equal(store_track_received(s, &in), STORE_OK);
	assert_int_equal(store_track_received(s, &in), STORE_ALREADY);
	in.id = qid(2);
	assert_int_equal(store_track_received(s, &in), STORE_OK);
	assert_int_equal(store_batch_commit(s), STORE_OK);
	assert_int_equal(store_track_get(s, qid(2), &t), STORE_OK);
	store_timeline_free(&t);

	assert_int_equal(store_batch_begin(s), STORE_OK);
	in.id = qid(3);
	assert_int_equal(store_track_received(s, &in), STORE_OK);
	store_batch_rollback(s);
	assert_int_equal(store_track_get(s, qid(3), &t), STORE_NOT_FOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_open_reopen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_track_timeline, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_search_filters, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_keyset_paging, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_subject_common, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_track_purge, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_threats, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_threats_many_names, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_quarantine_state, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_concurrent_release, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_users_tokens, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
