/*
 * store_sqlite.c - the SQLite backend of the store (store.h): moat's
 * embedded default, one database file in data_dir.
 *
 * A struct store here is one SQLite connection, used by one thread at a
 * time (opened SQLITE_OPEN_NOMUTEX). The file is in WAL mode: readers see
 * a snapshot and never wait, writers take the one write lock in turn and
 * wait for it up to STORE_SQLITE_BUSY_MS. synchronous=FULL: a committed
 * quarantine state change survives a power cut, so a release is never
 * repeated after one; callers that write a lot of tracking rows group them
 * with store_batch_begin()/store_batch_commit() to pay one sync per batch.
 *
 * Every statement is prepared once per connection and kept (SQLITE_PREPARE_
 * PERSISTENT): the fixed ones in sq->stmt[], search statements (whose text
 * depends on which filters are set) in a small cache keyed by that set.
 * Statements are reset right after use so that no read transaction stays
 * open between calls (it would pin the WAL and hide later commits).
 *
 * The schema is src/store/sql/sqlite/NNN_name.sql, embedded at build time
 * (sql/embed.py) and applied in order in one BEGIN IMMEDIATE transaction,
 * each version recorded in schema_version. A database whose version is
 * newer than the newest migration here is refused: an older moat must not
 * write to a schema it does not know.
 *
 * Searches: one index per filter, each ending in (received, qid), so the
 * filter that drives the query walks its index newest first from the
 * keyset cursor and stops after limit + 1 rows. Recipient filters drive
 * from the recipient tables (CROSS JOIN fixes that order). A subject
 * substring (3 octets at least: what a trigram index can look up) is first
 * counted in an FTS5 trigram index of the subjects (at most FTS_RARE_MAX +
 * 1 matches): a rare one is searched through that index (its matches
 * fetched, then sorted by time), a common one by a LIKE test along the
 * driving index, which finds a page within a few thousand rows. LIKE folds
 * ASCII case only, the trigram index all of Unicode: a common non-ASCII
 * word is matched case-sensitively beyond ASCII.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "../common/util.h"
#include "../policy/rules.h"
#include "store_internal.h"

#include "store_sqlite_sql.h" /* generated: store_sqlite_migrations[] */

#define STORE_SQLITE_BUSY_MS 10000 /* how long a writer waits for the lock */
#define SQ_SEARCH_CACHE      32    /* search statements kept per connection */
#define SQ_SQL_MAX           4096  /* octets of a search statement's text */

enum sq_id {
	SQ_BEGIN,
	SQ_COMMIT,
	SQ_ROLLBACK,
	SQ_SAVEPOINT,
	SQ_RELEASE,
	SQ_ROLLBACK_TO,
	SQ_MSG_INS,
	SQ_MSG_RCPT_INS,
	SQ_MSG_DOM_INS,
	SQ_MSG_VERDICT,
	SQ_MSG_FIND,
	SQ_MSG_RCPT_UPSERT,
	SQ_MSG_EVENT_INS,
	SQ_MSG_GET,
	SQ_MSG_RCPTS,
	SQ_MSG_EVENTS,
	SQ_MSG_PURGE,
	SQ_MSG_HOURLY,
	SQ_MSG_THREAT_LINES,
	SQ_MSG_THREAT_SENDERS,
	SQ_MSG_SUBJ_COUNT,
	SQ_Q_SUBJ_COUNT,
	SQ_Q_INS,
	SQ_Q_RCPT_INS,
	SQ_Q_DOM_INS,
	SQ_Q_GET,
	SQ_Q_RCPTS,
	SQ_Q_SET,
	SQ_Q_STATE,
	SQ_Q_UNRELEASE,
	SQ_Q_QUEUED,
	SQ_Q_PURGE,
	SQ_Q_EXPIRED,
	SQ_AUDIT_INS,
	SQ_AUDIT_ALL,
	SQ_AUDIT_TARGET,
	SQ_SET_PUT,
	SQ_SET_GET,
	SQ_SET_DEL,
	SQ_SET_LIST,
	SQ_RULE_FIND,
	SQ_RULE_INS,
	SQ_RULE_UPD,
	SQ_RULE_LINES_DEL,
	SQ_RULE_LINE_INS,
	SQ_RULE_DEL,
	SQ_RULE_LIST,
	SQ_RULE_LINES,
	SQ_DOMAIN_PUT,
	SQ_DOMAIN_DEL,
	SQ_DOMAIN_ALL,
	SQ_LIST_INS,
	SQ_LIST_DEL,
	SQ_LIST_ALL,
	SQ_LIST_SCOPE,
	SQ_USER_INS,
	SQ_USER_GET,
	SQ_USER_SET_HASH,
	SQ_USER_DEL,
	SQ_USER_LIST,
	SQ_TOK_INS,
	SQ_TOK_FIND,
	SQ_TOK_TOUCH,
	SQ_TOK_DEL,
	SQ_TOK_LIST,
	SQ_M365_JOB_PUT,
	SQ_M365_JOB_GET,
	SQ_M365_JOB_LIST,
	SQ_M365_STEP_ADD,
	SQ_M365_STEP_LIST,
	SQ_M365_CHANGE_ADD,
	SQ_M365_CHANGE_LIST,
	SQ_M365_CHANGE_UNDONE,
	SQ_COUNT
};

#define MSG_COLS                                                                                   \
	"m.qid, m.received, m.client_ip, m.helo, m.sender, m.subject, m.hdr_from, m.message_id, "  \
	"m.size, m.verdict, m.score, m.symbols, m.reason, m.verdict_at, m.rid"
#define QUAR_COLS                                                                                  \
	"m.qid, m.received, m.domain, m.sender, m.hdr_from, m.subject, m.message_id, m.size, "     \
	"m.verdict, m.score, m.symbols, m.state, m.state_by, m.state_at, m.rid, m.queued"

/*
 * The newest ?2 quarantined or rejected messages received at or after ?1:
 * each verdict walks msg_verdict backwards from its newest row and stops
 * after ?2, so the work is bounded however much mail a day brings.
 */
#define THREAT_MSGS                                                                                \
	"SELECT * FROM (SELECT * FROM (SELECT received, qid, sender, symbols FROM msg "            \
	"WHERE verdict = 'quarantine' AND received >= ?1 "                                         \
	"ORDER BY received DESC, qid DESC LIMIT ?2) "                                              \
	"UNION ALL SELECT * FROM (SELECT received, qid, sender, symbols FROM msg "                 \
	"WHERE verdict = 'reject' AND received >= ?1 "                                             \
	"ORDER BY received DESC, qid DESC LIMIT ?2)) "                                             \
	"ORDER BY received DESC, qid DESC LIMIT ?2"

static const char *const sq_sql[SQ_COUNT] = {
        [SQ_BEGIN] = "BEGIN IMMEDIATE",
        [SQ_COMMIT] = "COMMIT",
        [SQ_ROLLBACK] = "ROLLBACK",
        [SQ_SAVEPOINT] = "SAVEPOINT store_call",
        [SQ_RELEASE] = "RELEASE store_call",
        [SQ_ROLLBACK_TO] = "ROLLBACK TO store_call",
        [SQ_MSG_INS] = "INSERT INTO msg (qid, received, client_ip, helo, sender, sender_dom, "
                       "subject, hdr_from, message_id, size) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [SQ_MSG_RCPT_INS] = "INSERT OR IGNORE INTO msg_rcpt (msg, rcpt, received, qid) "
                            "VALUES (?1, ?2, ?3, ?4)",
        [SQ_MSG_DOM_INS] = "INSERT OR IGNORE INTO msg_dom (dom, received, qid, msg) "
                           "VALUES (?1, ?2, ?3, ?4)",
        [SQ_MSG_VERDICT] = "UPDATE msg SET verdict = ?2, score = ?3, symbols = ?4, reason = ?5, "
                           "verdict_at = ?6 WHERE qid = ?1",
        [SQ_MSG_FIND] = "SELECT rid, received FROM msg WHERE qid = ?1",
        [SQ_MSG_RCPT_UPSERT] =
                "INSERT INTO msg_rcpt (msg, rcpt, received, qid, outcome, reply, outcome_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (msg, rcpt) DO UPDATE SET "
                "outcome = excluded.outcome, reply = excluded.reply, "
                "outcome_at = excluded.outcome_at WHERE excluded.outcome_at >= outcome_at",
        [SQ_MSG_EVENT_INS] = "INSERT INTO msg_event (msg, at, rcpt, outcome, reply) "
                             "VALUES (?1, ?2, ?3, ?4, ?5)",
        [SQ_MSG_GET] = "SELECT " MSG_COLS " FROM msg m WHERE m.qid = ?1",
        [SQ_MSG_RCPTS] = "SELECT rcpt, outcome, reply, outcome_at FROM msg_rcpt WHERE msg = ?1 "
                         "ORDER BY rid LIMIT ?2",
        [SQ_MSG_EVENTS] = "SELECT at, rcpt, outcome, reply FROM msg_event WHERE msg = ?1 "
                          "ORDER BY at, rid LIMIT ?2",
        [SQ_MSG_PURGE] = "DELETE FROM msg WHERE rid IN (SELECT rid FROM msg WHERE received < ?1 "
                         "ORDER BY received LIMIT ?2)",
        [SQ_MSG_HOURLY] = "SELECT received / 3600000 * 3600000 AS h, verdict, count(*) FROM msg "
                          "WHERE received >= ?1 GROUP BY h, verdict ORDER BY h LIMIT ?2",
        [SQ_MSG_THREAT_LINES] = "SELECT symbols FROM (" THREAT_MSGS ")",
        [SQ_MSG_THREAT_SENDERS] = "SELECT sender, count(*) AS n FROM (" THREAT_MSGS ") "
                                  "GROUP BY sender ORDER BY n DESC, sender LIMIT ?3",
        [SQ_MSG_SUBJ_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM msg_subject "
                              "WHERE msg_subject MATCH ?1 LIMIT ?2)",
        [SQ_Q_SUBJ_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM quar_subject "
                            "WHERE quar_subject MATCH ?1 LIMIT ?2)",
        [SQ_Q_INS] = "INSERT INTO quar (qid, domain, received, sender, sender_dom, hdr_from, "
                     "subject, message_id, size, verdict, score, symbols) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        [SQ_Q_RCPT_INS] = "INSERT OR IGNORE INTO quar_rcpt (quar, rcpt, received, qid) "
                          "VALUES (?1, ?2, ?3, ?4)",
        [SQ_Q_DOM_INS] = "INSERT OR IGNORE INTO quar_dom (dom, received, qid, quar) "
                         "VALUES (?1, ?2, ?3, ?4)",
        [SQ_Q_GET] = "SELECT " QUAR_COLS " FROM quar m WHERE m.qid = ?1",
        [SQ_Q_RCPTS] = "SELECT rcpt FROM quar_rcpt WHERE quar = ?1 LIMIT ?2",
        [SQ_Q_SET] = "UPDATE quar SET state = ?2, state_by = ?3, state_at = ?4 "
                     "WHERE qid = ?1 AND state = 'held'",
        [SQ_Q_STATE] = "SELECT state FROM quar WHERE qid = ?1",
        [SQ_Q_PURGE] = "DELETE FROM quar WHERE rid IN (SELECT rid FROM quar WHERE state != 'held' "
                       "AND received < ?1 ORDER BY received LIMIT ?2)",
        [SQ_Q_QUEUED] = "UPDATE quar SET queued = 1 WHERE qid = ?1 AND state = 'released'",
        [SQ_Q_UNRELEASE] = "UPDATE quar SET state = 'held', state_by = ?2, state_at = ?3 "
                           "WHERE qid = ?1 AND state = 'released'",
        [SQ_Q_EXPIRED] = "SELECT qid FROM quar WHERE state = 'held' AND received < ?1 "
                         "ORDER BY received, qid LIMIT ?2",
        [SQ_AUDIT_INS] = "INSERT INTO audit (at, who, action, target, addr) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)",
        [SQ_AUDIT_ALL] = "SELECT rid, at, who, action, target, addr FROM audit WHERE rid < ?1 "
                         "ORDER BY rid DESC LIMIT ?2",
        [SQ_AUDIT_TARGET] = "SELECT rid, at, who, action, target, addr FROM audit "
                            "WHERE target = ?3 AND rid < ?1 ORDER BY rid DESC LIMIT ?2",
        [SQ_SET_PUT] = "INSERT INTO setting (key, value) VALUES (?1, ?2) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SQ_SET_GET] = "SELECT value FROM setting WHERE key = ?1",
        [SQ_SET_DEL] = "DELETE FROM setting WHERE key = ?1",
        [SQ_SET_LIST] = "SELECT key, value FROM setting ORDER BY key LIMIT ?1",
        [SQ_RULE_FIND] = "SELECT rid FROM rule WHERE name = ?1",
        [SQ_RULE_INS] = "INSERT INTO rule (name, priority, enabled, stop) VALUES (?1, ?2, ?3, ?4)",
        [SQ_RULE_UPD] = "UPDATE rule SET priority = ?2, enabled = ?3, stop = ?4 WHERE rid = ?1",
        [SQ_RULE_LINES_DEL] = "DELETE FROM rule_line WHERE rule = ?1",
        [SQ_RULE_LINE_INS] = "INSERT INTO rule_line (rule, kind, pos, text) "
                             "VALUES (?1, ?2, ?3, ?4)",
        [SQ_RULE_DEL] = "DELETE FROM rule WHERE name = ?1",
        [SQ_RULE_LIST] = "SELECT rid, name, priority, enabled, stop FROM rule "
                         "ORDER BY priority LIMIT ?1",
        [SQ_RULE_LINES] = "SELECT kind, text FROM rule_line WHERE rule = ?1 ORDER BY kind, pos "
                          "LIMIT ?2",
        [SQ_DOMAIN_PUT] =
                "INSERT INTO domain (name, body, created, updated) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT (name) DO UPDATE SET body = ?2, updated = ?4",
        [SQ_DOMAIN_DEL] = "DELETE FROM domain WHERE name = ?1",
        [SQ_DOMAIN_ALL] = "SELECT name, body, created, updated FROM domain ORDER BY name",
        [SQ_LIST_INS] = "INSERT INTO list_entry (scope, kind, pattern, created) "
                        "VALUES (?1, ?2, ?3, ?4)",
        [SQ_LIST_DEL] = "DELETE FROM list_entry WHERE scope = ?1 AND kind = ?2 AND pattern = ?3",
        [SQ_LIST_ALL] = "SELECT scope, kind, pattern, created FROM list_entry "
                        "ORDER BY scope, kind, pattern LIMIT ?1",
        [SQ_LIST_SCOPE] = "SELECT scope, kind, pattern, created FROM list_entry WHERE scope = ?2 "
                          "ORDER BY kind, pattern LIMIT ?1",
        [SQ_USER_INS] = "INSERT INTO admin_user (name, hash, created) VALUES (?1, ?2, ?3)",
        [SQ_USER_GET] = "SELECT name, hash, created FROM admin_user WHERE name = ?1",
        [SQ_USER_SET_HASH] = "UPDATE admin_user SET hash = ?2 WHERE name = ?1",
        [SQ_USER_DEL] = "DELETE FROM admin_user WHERE name = ?1",
        [SQ_USER_LIST] = "SELECT name, created FROM admin_user ORDER BY name LIMIT ?1",
        [SQ_TOK_INS] = "INSERT INTO api_token (id, hash, scopes, created) VALUES (?1, ?2, ?3, ?4)",
        [SQ_TOK_FIND] = "SELECT id, hash, scopes, created, last_used FROM api_token "
                        "WHERE hash = ?1",
        [SQ_TOK_TOUCH] = "UPDATE api_token SET last_used = ?2 WHERE id = ?1",
        [SQ_TOK_DEL] = "DELETE FROM api_token WHERE id = ?1",
        [SQ_TOK_LIST] = "SELECT id, hash, scopes, created, last_used FROM api_token "
                        "ORDER BY id LIMIT ?1",
        [SQ_M365_JOB_PUT] =
                "INSERT INTO m365_job (id, tenant, kind, state, created, updated, data) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET "
                "tenant = ?2, kind = ?3, state = ?4, updated = ?6, data = ?7",
        [SQ_M365_JOB_GET] = "SELECT id, tenant, kind, state, created, updated, data FROM m365_job "
                            "WHERE id = ?1",
        [SQ_M365_JOB_LIST] = "SELECT id, tenant, kind, state, created, updated, data FROM m365_job "
                             "ORDER BY created DESC, id DESC LIMIT ?1",
        [SQ_M365_STEP_ADD] = "INSERT INTO m365_step (job, seq, at, data) VALUES (?1, ?2, ?3, ?4)",
        [SQ_M365_STEP_LIST] = "SELECT seq, at, data FROM m365_step WHERE job = ?1 ORDER BY seq",
        [SQ_M365_CHANGE_ADD] = "INSERT INTO m365_change (tenant, job, at, undo) "
                               "VALUES (?1, ?2, ?3, ?4)",
        [SQ_M365_CHANGE_LIST] = "SELECT id, undo FROM m365_change WHERE tenant = ?1 AND undone = 0 "
                                "ORDER BY id",
        [SQ_M365_CHANGE_UNDONE] = "UPDATE m365_change SET undone = ?2 WHERE id = ?1",
};

struct sq_search {
	unsigned key; /* SF_* bits */
	sqlite3_stmt *st;
};

struct sq {
	sqlite3 *db;
	sqlite3_stmt *stmt[SQ_COUNT];
	struct sq_search search[SQ_SEARCH_CACHE];
	size_t nsearch, evict;
	bool batch; /* inside store_batch_begin(): calls use savepoints */
	bool ready; /* opened and migrated */
};

#define SQ(s) ((struct sq *)(s)->db)

static enum store_status
sq_fail(struct store *s, const char *what)
{
	return store_fail(s, "%s: %s", what, sqlite3_errmsg(SQ(s)->db));
}

/* The cached statement id, reset and unbound; NULL (error set) if it does not prepare. */
static sqlite3_stmt *
sq_stmt(struct store *s, enum sq_id id)
{
	struct sq *q = SQ(s);

	if (q->stmt[id] == NULL) {
		if (sqlite3_prepare_v3(q->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                       &q->stmt[id], NULL) != SQLITE_OK) {
			sq_fail(s, "prepare");
			return NULL;
		}
	}
	sqlite3_reset(q->stmt[id]);
	sqlite3_clear_bindings(q->stmt[id]);
	return q->stmt[id];
}

/*
 * Run a statement that returns no rows and reset it: STORE_OK, STORE_ALREADY
 * on a uniqueness violation, else STORE_ERROR.
 */
static enum store_status
sq_run(struct store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	enum store_status ret = STORE_OK;

	if (rc == SQLITE_ROW)
		rc = SQLITE_DONE;
	if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		ret = STORE_ALREADY;
	else if (rc != SQLITE_DONE)
		ret = sq_fail(s, what);
	sqlite3_reset(st);
	return ret;
}

static enum store_status
sq_run_id(struct store *s, enum sq_id id, const char *what)
{
	sqlite3_stmt *st = sq_stmt(s, id);

	return st == NULL ? STORE_ERROR : sq_run(s, st, what);
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return xstrdup(t != NULL ? (const char *)t : "");
}

static const char *
col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t != NULL ? (const char *)t : "";
}

/* --- transactions --- */

/* One call's transaction: its own, or a savepoint inside a batch. */
static enum store_status
tx_begin(struct store *s)
{
	return sq_run_id(s, SQ(s)->batch ? SQ_SAVEPOINT : SQ_BEGIN, "begin");
}

static enum store_status
tx_commit(struct store *s)
{
	return sq_run_id(s, SQ(s)->batch ? SQ_RELEASE : SQ_COMMIT, "commit");
}

static void
tx_rollback(struct store *s)
{
	if (SQ(s)->batch) {
		sq_run_id(s, SQ_ROLLBACK_TO, "rollback");
		sq_run_id(s, SQ_RELEASE, "rollback");
	} else if (!sqlite3_get_autocommit(SQ(s)->db)) {
		sq_run_id(s, SQ_ROLLBACK, "rollback");
	}
}

static enum store_status
sq_batch_begin(struct store *s)
{
	enum store_status st = sq_run_id(s, SQ_BEGIN, "begin");

	if (st == STORE_OK)
		SQ(s)->batch = true;
	return st;
}

static enum store_status
sq_batch_end(struct store *s, bool commit)
{
	SQ(s)->batch = false;
	if (commit) {
		enum store_status st = sq_run_id(s, SQ_COMMIT, "commit");
		if (st == STORE_OK)
			return STORE_OK;
	}
	if (!sqlite3_get_autocommit(SQ(s)->db))
		sq_run_id(s, SQ_ROLLBACK, "rollback");
	return commit ? STORE_ERROR : STORE_OK;
}

/* --- opening and migrations --- */

static const unsigned sq_known = nitems(store_sqlite_migrations);

static enum store_status
sq_exec(struct store *s, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(SQ(s)->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		store_fail(s, "%s: %s", what, msg != NULL ? msg : sqlite3_errmsg(SQ(s)->db));
		sqlite3_free(msg);
		return STORE_ERROR;
	}
	return STORE_OK;
}

/* One integer from a query, or -1 (error set). */
static int64_t
sq_int(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(SQ(s)->db, sql, -1, &st, NULL) != SQLITE_OK) {
		sq_fail(s, sql);
		return -1;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		sq_fail(s, sql);
	sqlite3_finalize(st);
	return v;
}

static enum store_status
sq_migrate(struct store *s)
{
	int64_t cur;

	if (sq_exec(s, "BEGIN IMMEDIATE", "begin") != STORE_OK)
		return STORE_ERROR;
	if (sq_exec(s,
	            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
	            "name TEXT NOT NULL, applied INTEGER NOT NULL)",
	            "schema_version") != STORE_OK)
		goto fail;
	cur = sq_int(s, "SELECT coalesce(max(version), 0) FROM schema_version");
	if (cur < 0)
		goto fail;
	if (cur > (int64_t)sq_known) {
		store_fail(s,
		           "the database's schema is version %" PRId64 ", newer than this moat "
		           "knows (%u): it was written by a newer moat; run that one or restore a "
		           "backup",
		           cur, sq_known);
		goto fail;
	}
	for (unsigned i = (unsigned)cur; i < sq_known; i++) {
		const struct store_migration *m = &store_sqlite_migrations[i];
		char sql[256];

		if (sq_exec(s, m->sql, m->name) != STORE_OK)
			goto fail;
		snprintf(sql, sizeof(sql),
		         "INSERT INTO schema_version (version, name, applied) "
		         "VALUES (%u, '%s', %lld)",
		         m->version, m->name, (long long)time(NULL) * 1000);
		if (sq_exec(s, sql, "schema_version") != STORE_OK)
			goto fail;
	}
	if (sq_exec(s, "COMMIT", "commit") != STORE_OK)
		goto fail;
	return STORE_OK;
fail:
	sqlite3_exec(SQ(s)->db, "ROLLBACK", NULL, NULL, NULL);
	return STORE_ERROR;
}

static enum store_status
sq_schema_version(struct store *s, unsigned *in_db, unsigned *known)
{
	int64_t v = sq_int(s, "SELECT coalesce(max(version), 0) FROM schema_version");

	if (v < 0)
		return STORE_ERROR;
	*in_db = (unsigned)v;
	*known = sq_known;
	return STORE_OK;
}

static void
sq_close(struct store *s)
{
	struct sq *q = SQ(s);

	if (q == NULL)
		return;
	for (size_t i = 0; i < SQ_COUNT; i++)
		sqlite3_finalize(q->stmt[i]);
	for (size_t i = 0; i < q->nsearch; i++)
		sqlite3_finalize(q->search[i].st);
	if (q->db != NULL && q->ready) {
		/* Keep the planner's statistics fresh (cheap: only what changed). */
		sqlite3_exec(q->db, "PRAGMA optimize", NULL, NULL, NULL);
	}
	sqlite3_close(q->db);
	free(q);
	s->db = NULL;
}

static enum store_status
sq_open(struct store *s, const char *path)
{
	struct sq *q = xcalloc(1, sizeof(*q));
	sqlite3_stmt *st = NULL;
	int rc;

	s->db = q;
	rc = sqlite3_open_v2(path, &q->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                     NULL);
	if (rc != SQLITE_OK) {
		if (q->db != NULL)
			sq_fail(s, "open");
		else
			store_fail(s, "open: %s", sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(q->db, 1);
	sqlite3_busy_timeout(q->db, STORE_SQLITE_BUSY_MS);
	/* WAL is a property of the file: check that it took. */
	if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sq_fail(s, "journal_mode");
		goto fail;
	}
	if (strcmp(col_str(st, 0), "wal") != 0) {
		store_fail(s, "journal_mode: WAL refused (%s)", col_str(st, 0));
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sq_exec(s,
	            "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; "
	            "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384",
	            "pragma") != STORE_OK)
		goto fail;
	if (sq_int(s, "PRAGMA foreign_keys") != 1) {
		store_fail(s, "foreign keys are not supported by this SQLite");
		goto fail;
	}
	if (sq_migrate(s) != STORE_OK)
		goto fail;
	q->ready = true;
	return STORE_OK;
fail:
	sqlite3_finalize(st);
	sq_close(s);
	return STORE_ERROR;
}

/* --- tracking --- */

static enum store_status
sq_track_received(struct store *s, const struct store_track_in *in)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int64_t rid;

	if ((ret = tx_begin(s)) != STORE_OK)
		return ret;
	if ((st = sq_stmt(s, SQ_MSG_INS)) == NULL)
		goto fail;
	bind_text(st, 1, in->id);
	sqlite3_bind_int64(st, 2, in->received_ms);
	bind_text(st, 3, in->client_ip);
	bind_text(st, 4, in->helo);
	bind_text(st, 5, in->sender);
	bind_text(st, 6, store_addr_domain(in->sender));
	bind_text(st, 7, in->subject);
	bind_text(st, 8, in->from);
	bind_text(st, 9, in->message_id);
	sqlite3_bind_int64(st, 10, (int64_t)in->size);
	if ((ret = sq_run(s, st, "insert msg")) != STORE_OK)
		goto fail;
	rid = sqlite3_last_insert_rowid(SQ(s)->db);
	for (size_t i = 0; i < in->nrcpts; i++) {
		if ((st = sq_stmt(s, SQ_MSG_RCPT_INS)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, rid);
		bind_text(st, 2, in->rcpts[i]);
		sqlite3_bind_int64(st, 3, in->received_ms);
		bind_text(st, 4, in->id);
		if ((ret = sq_run(s, st, "insert msg_rcpt")) != STORE_OK)
			goto fail;
		if ((st = sq_stmt(s, SQ_MSG_DOM_INS)) == NULL)
			goto fail;
		bind_text(st, 1, store_addr_domain(in->rcpts[i]));
		sqlite3_bind_int64(st, 2, in->received_ms);
		bind_text(st, 3, in->id);
		sqlite3_bind_int64(st, 4, rid);
		if ((ret = sq_run(s, st, "insert msg_dom")) != STORE_OK)
			goto fail;
	}
	if ((ret = tx_commit(s)) != STORE_OK)
		goto fail;
	return STORE_OK;
fail:
	tx_rollback(s);
	return ret == STORE_OK ? STORE_ERROR : ret;
}

static enum store_status
sq_track_verdict(struct store *s, const char *id, enum store_verdict v, double score,
                 const char *symbols, const char *reason, int64_t time_ms)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_VERDICT);
	enum store_status ret;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	bind_text(st, 2, store_verdict_str(v));
	sqlite3_bind_double(st, 3, score);
	bind_text(st, 4, symbols);
	bind_text(st, 5, reason);
	sqlite3_bind_int64(st, 6, time_ms);
	if ((ret = sq_run(s, st, "verdict")) != STORE_OK)
		return ret;
	return sqlite3_changes(SQ(s)->db) == 1 ? STORE_OK : STORE_NOT_FOUND;
}

static enum store_status
sq_track_delivery(struct store *s, const char *id, const char *rcpt, enum store_outcome outcome,
                  const char *reply, int64_t time_ms)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int64_t rid, received;
	int rc;

	if ((ret = tx_begin(s)) != STORE_OK)
		return ret;
	if ((st = sq_stmt(s, SQ_MSG_FIND)) == NULL)
		goto fail;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "find msg");
		sqlite3_reset(st);
		goto fail;
	}
	rid = sqlite3_column_int64(st, 0);
	received = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);

	if ((st = sq_stmt(s, SQ_MSG_RCPT_UPSERT)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, rid);
	bind_text(st, 2, rcpt);
	sqlite3_bind_int64(st, 3, received);
	bind_text(st, 4, id);
	bind_text(st, 5, store_outcome_str(outcome));
	bind_text(st, 6, reply);
	sqlite3_bind_int64(st, 7, time_ms);
	if ((ret = sq_run(s, st, "outcome")) != STORE_OK)
		goto fail;
	if ((st = sq_stmt(s, SQ_MSG_DOM_INS)) == NULL)
		goto fail;
	bind_text(st, 1, store_addr_domain(rcpt));
	sqlite3_bind_int64(st, 2, received);
	bind_text(st, 3, id);
	sqlite3_bind_int64(st, 4, rid);
	if ((ret = sq_run(s, st, "insert msg_dom")) != STORE_OK)
		goto fail;
	if ((st = sq_stmt(s, SQ_MSG_EVENT_INS)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, rid);
	sqlite3_bind_int64(st, 2, time_ms);
	bind_text(st, 3, rcpt);
	bind_text(st, 4, store_outcome_str(outcome));
	bind_text(st, 5, reply);
	if ((ret = sq_run(s, st, "insert msg_event")) != STORE_OK)
		goto fail;
	if ((ret = tx_commit(s)) != STORE_OK)
		goto fail;
	return STORE_OK;
fail:
	tx_rollback(s);
	return ret == STORE_OK ? STORE_ERROR : ret;
}

/* --- searches --- */

/* Which filters a search has: the key of its cached statement. */
enum {
	SF_QUAR = 1u << 0,
	SF_SENDER = 1u << 1,
	SF_SENDER_DOM = 1u << 2,
	SF_RCPT = 1u << 3,
	SF_RCPT_DOM = 1u << 4,
	SF_SUBJ_FTS = 1u << 5,
	SF_SUBJ_LIKE = 1u << 6,
	SF_MSGID = 1u << 7,
	SF_QID = 1u << 8,
	SF_DOMAIN = 1u << 9,
	SF_SINCE = 1u << 10,
	SF_UNTIL = 1u << 11,
	SF_VERDICT = 1u << 12,
	SF_STATE = 1u << 13,
	SF_AFTER = 1u << 14,
};

/*
 * A subject substring matching more rows than this is looked for along the
 * time index (LIKE), stopping when the page is full; a rarer one through
 * the trigram index (its matches fetched, then sorted by time).
 */
#define FTS_RARE_MAX 5000

static unsigned
search_key(const struct store_filter *f, bool quar, bool subj_common)
{
	unsigned k = quar ? SF_QUAR : 0;

	if (f->sender != NULL)
		k |= f->sender[0] == '@' ? SF_SENDER_DOM : SF_SENDER;
	if (f->rcpt != NULL)
		k |= f->rcpt[0] == '@' ? SF_RCPT_DOM : SF_RCPT;
	if (f->subject != NULL)
		k |= subj_common ? SF_SUBJ_LIKE : SF_SUBJ_FTS;
	if (f->message_id != NULL)
		k |= SF_MSGID;
	if (f->id != NULL)
		k |= SF_QID;
	if (quar && f->domain != NULL)
		k |= SF_DOMAIN;
	if (f->since_ms > 0)
		k |= SF_SINCE;
	if (f->until_ms > 0)
		k |= SF_UNTIL;
	if (f->verdict != STORE_V_ANY)
		k |= SF_VERDICT;
	if (quar && f->state != STORE_Q_ANY)
		k |= SF_STATE;
	if (f->after.id[0] != '\0')
		k |= SF_AFTER;
	return k;
}

/* The text of the search statement for key k. */
static int
search_sql(unsigned k, struct dynbuf *b)
{
	bool quar = k & SF_QUAR;
	const char *t = quar ? "quar" : "msg";
	const char *key = "m"; /* the table whose (received, qid) orders the rows */
	int r = 0;

	r |= dynbuf_printf(b, "SELECT %s FROM ", quar ? QUAR_COLS : MSG_COLS);
	if (k & (SF_RCPT | SF_RCPT_DOM)) {
		/* Drive from the recipient index, in its order. */
		key = "k";
		r |= dynbuf_printf(b, "%s_%s k CROSS JOIN %s m ON m.rid = k.%s WHERE ", t,
		                   k & SF_RCPT ? "rcpt" : "dom", t, t);
		r |= dynbuf_printf(b, "k.%s = :rcpt", k & SF_RCPT ? "rcpt" : "dom");
	} else {
		r |= dynbuf_printf(b, "%s m WHERE 1", t);
	}
	if (k & SF_SENDER)
		r |= dynbuf_printf(b, " AND m.sender = :sender");
	if (k & SF_SENDER_DOM)
		r |= dynbuf_printf(b, " AND m.sender_dom = :sender");
	if (k & SF_SUBJ_FTS)
		r |= dynbuf_printf(b,
		                   " AND m.rid IN (SELECT rowid FROM %s_subject "
		                   "WHERE %s_subject MATCH :subject)",
		                   t, t);
	if (k & SF_SUBJ_LIKE)
		r |= dynbuf_printf(b, " AND m.subject LIKE :subject ESCAPE '\\'");
	if (k & SF_MSGID)
		r |= dynbuf_printf(b, " AND m.message_id = :message_id");
	if (k & SF_QID)
		r |= dynbuf_printf(b, " AND m.qid = :qid");
	if (k & SF_DOMAIN)
		r |= dynbuf_printf(b, " AND m.domain = :domain");
	if (k & SF_SINCE)
		r |= dynbuf_printf(b, " AND %s.received >= :since", key);
	if (k & SF_UNTIL)
		r |= dynbuf_printf(b, " AND %s.received < :until", key);
	if (k & SF_VERDICT)
		r |= dynbuf_printf(b, " AND m.verdict = :verdict");
	if (k & SF_STATE)
		r |= dynbuf_printf(b, " AND m.state = :state");
	if (k & SF_AFTER)
		r |= dynbuf_printf(b, " AND (%s.received, %s.qid) < (:after_t, :after_id)", key,
		                   key);
	r |= dynbuf_printf(b, " ORDER BY %s.received DESC, %s.qid DESC LIMIT :limit", key, key);
	return r;
}

/* The search statement for key k, prepared once per connection. */
static sqlite3_stmt *
search_stmt(struct store *s, unsigned k)
{
	struct sq *q = SQ(s);
	struct sq_search *e = NULL;
	struct dynbuf b;

	for (size_t i = 0; i < q->nsearch; i++) {
		if (q->search[i].key == k) {
			sqlite3_reset(q->search[i].st);
			sqlite3_clear_bindings(q->search[i].st);
			return q->search[i].st;
		}
	}
	dynbuf_init(&b, SQ_SQL_MAX);
	if (search_sql(k, &b) != 0) {
		free(b.p);
		store_fail(s, "search statement too long");
		return NULL;
	}
	if (q->nsearch < SQ_SEARCH_CACHE) {
		e = &q->search[q->nsearch++];
	} else { /* replace in turn */
		e = &q->search[q->evict];
		q->evict = (q->evict + 1) % SQ_SEARCH_CACHE;
		sqlite3_finalize(e->st);
	}
	e->key = k;
	e->st = NULL;
	if (sqlite3_prepare_v3(q->db, b.p, -1, SQLITE_PREPARE_PERSISTENT, &e->st, NULL) !=
	    SQLITE_OK) {
		sq_fail(s, "prepare search");
		free(b.p);
		*e = q->search[--q->nsearch]; /* drop the entry */
		return NULL;
	}
	free(b.p);
	return e->st;
}

static void
bind_named(sqlite3_stmt *st, const char *name, const char *v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

static void
bind_named_int(sqlite3_stmt *st, const char *name, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_int64(st, i, v);
}

/* FTS5 query for a substring: one phrase of its trigrams ('"' doubled). */
static char *
fts_phrase(const char *sub)
{
	struct dynbuf b;

	dynbuf_init(&b, 2 * STORE_HEADER_MAX + 3);
	dynbuf_add(&b, "\"", 1);
	for (const char *p = sub; *p != '\0'; p++) {
		if (*p == '"')
			dynbuf_add(&b, "\"\"", 2);
		else
			dynbuf_add(&b, p, 1);
	}
	dynbuf_add(&b, "\"", 1);
	return b.p;
}

/* LIKE pattern for a substring: '%', '_' and '\' escaped with '\'. */
static char *
like_pattern(const char *sub)
{
	struct dynbuf b;

	dynbuf_init(&b, 2 * STORE_HEADER_MAX + 3);
	dynbuf_add(&b, "%", 1);
	for (const char *p = sub; *p != '\0'; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			dynbuf_add(&b, "\\", 1);
		dynbuf_add(&b, p, 1);
	}
	dynbuf_add(&b, "%", 1);
	return b.p;
}

/* Does the subject substring (as an FTS phrase) match more than FTS_RARE_MAX rows? */
static int
subject_common(struct store *s, const char *phrase, bool quar)
{
	sqlite3_stmt *st = sq_stmt(s, quar ? SQ_Q_SUBJ_COUNT : SQ_MSG_SUBJ_COUNT);
	int64_t n;
	int rc;

	if (st == NULL)
		return -1;
	bind_text(st, 1, phrase);
	sqlite3_bind_int(st, 2, FTS_RARE_MAX + 1);
	rc = sqlite3_step(st);
	n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		sq_fail(s, "subject");
		return -1;
	}
	return n > FTS_RARE_MAX;
}

static sqlite3_stmt *
search_prepare(struct store *s, const struct store_filter *f, bool quar)
{
	int common = 0;

	if (f->subject != NULL) {
		char *phrase = fts_phrase(f->subject);
		common = subject_common(s, phrase, quar);
		free(phrase);
		if (common < 0)
			return NULL;
	}
	unsigned k = search_key(f, quar, common);
	sqlite3_stmt *st = search_stmt(s, k);

	if (st == NULL)
		return NULL;
	if (f->sender != NULL)
		bind_named(st, ":sender", f->sender[0] == '@' ? f->sender + 1 : f->sender);
	if (f->rcpt != NULL)
		bind_named(st, ":rcpt", f->rcpt[0] == '@' ? f->rcpt + 1 : f->rcpt);
	if (k & (SF_SUBJ_FTS | SF_SUBJ_LIKE)) {
		char *p = k & SF_SUBJ_FTS ? fts_phrase(f->subject) : like_pattern(f->subject);
		bind_named(st, ":subject", p);
		free(p);
	}
	if (f->message_id != NULL)
		bind_named(st, ":message_id", f->message_id);
	if (f->id != NULL)
		bind_named(st, ":qid", f->id);
	if (k & SF_DOMAIN)
		bind_named(st, ":domain", f->domain);
	bind_named_int(st, ":since", f->since_ms);
	bind_named_int(st, ":until", f->until_ms);
	if (k & SF_VERDICT)
		bind_named(st, ":verdict", store_verdict_str(f->verdict));
	if (k & SF_STATE)
		bind_named(st, ":state", store_qstate_str(f->state));
	if (k & SF_AFTER) {
		bind_named_int(st, ":after_t", f->after.time_ms);
		bind_named(st, ":after_id", f->after.id);
	}
	bind_named_int(st, ":limit", (int64_t)f->limit + 1); /* one more: is there a next page? */
	return st;
}

/* The recipients of tracked message rid into m. */
static enum store_status
msg_rcpts(struct store *s, int64_t rid, struct store_msg *m)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_RCPTS);
	size_t cap = 0;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, rid);
	sqlite3_bind_int(st, 2, STORE_RCPTS_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (m->nrcpts == cap) {
			cap = cap ? 2 * cap : 4;
			m->rcpts = xrealloc(m->rcpts, cap * sizeof(*m->rcpts));
		}
		struct store_rcpt *r = &m->rcpts[m->nrcpts++];
		r->addr = col_dup(st, 0);
		int o = store_outcome_parse(col_str(st, 1));
		r->outcome = o < 0 ? STORE_OUT_PENDING : (enum store_outcome)o;
		r->reply = col_dup(st, 2);
		r->time_ms = sqlite3_column_int64(st, 3);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "recipients");
}

/* A row of MSG_COLS into m; its rid. */
static int64_t
msg_row(sqlite3_stmt *st, struct store_msg *m)
{
	str_copy(m->id, col_str(st, 0), sizeof(m->id));
	m->received_ms = sqlite3_column_int64(st, 1);
	m->client_ip = col_dup(st, 2);
	m->helo = col_dup(st, 3);
	m->sender = col_dup(st, 4);
	m->subject = col_dup(st, 5);
	m->from = col_dup(st, 6);
	m->message_id = col_dup(st, 7);
	m->size = (uint64_t)sqlite3_column_int64(st, 8);
	int v = store_verdict_parse(col_str(st, 9));
	m->verdict = v < 0 ? STORE_V_NONE : (enum store_verdict)v;
	m->score = sqlite3_column_double(st, 10);
	m->symbols = col_dup(st, 11);
	m->reason = col_dup(st, 12);
	m->verdict_ms = sqlite3_column_int64(st, 13);
	return sqlite3_column_int64(st, 14);
}

/*
 * One page of a search, for tracking and quarantine alike: rows are read
 * by kind->row (which returns the row's rid), their recipients by
 * kind->rcpts, the keyset cursor taken from the last row.
 */
struct search_kind {
	bool quarantine;
	size_t row_size;
	int64_t (*row)(sqlite3_stmt *st, void *row);
	enum store_status (*rcpts)(struct store *s, int64_t rid, void *row);
	void (*key)(const void *row, struct store_cursor *c);
};

static enum store_status
search_page(struct store *s, const struct store_filter *f, const struct search_kind *kind,
            void **rows, size_t *n, bool *more, struct store_cursor *next)
{
	sqlite3_stmt *st = search_prepare(s, f, kind->quarantine);
	int64_t *rids;
	char *base;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	base = xcalloc(f->limit, kind->row_size);
	*rows = base;
	rids = xcalloc(f->limit, sizeof(*rids));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == f->limit) {
			*more = true;
			break;
		}
		rids[*n] = kind->row(st, base + *n * kind->row_size);
		(*n)++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sq_fail(s, "search");
		goto fail;
	}
	for (size_t i = 0; i < *n; i++)
		if (kind->rcpts(s, rids[i], base + i * kind->row_size) != STORE_OK)
			goto fail;
	if (*n > 0)
		kind->key(base + (*n - 1) * kind->row_size, next);
	free(rids);
	return STORE_OK;
fail:
	free(rids);
	return STORE_ERROR;
}

static int64_t
search_msg_row(sqlite3_stmt *st, void *row)
{
	return msg_row(st, row);
}

static enum store_status
search_msg_rcpts(struct store *s, int64_t rid, void *row)
{
	return msg_rcpts(s, rid, row);
}

static void
search_msg_key(const void *row, struct store_cursor *c)
{
	const struct store_msg *m = row;

	c->time_ms = m->received_ms;
	str_copy(c->id, m->id, sizeof(c->id));
}

static enum store_status
sq_track_search(struct store *s, const struct store_filter *f, struct store_msg_page *out)
{
	static const struct search_kind kind = {false, sizeof(struct store_msg), search_msg_row,
	                                        search_msg_rcpts, search_msg_key};
	void *rows = NULL;
	enum store_status r = search_page(s, f, &kind, &rows, &out->n, &out->more, &out->next);

	out->rows = rows;
	if (r != STORE_OK)
		store_msg_page_free(out);
	return r;
}

static void
event_add(struct store_timeline *t, size_t *cap, int64_t time_ms, enum store_event_kind kind,
          enum store_outcome outcome, const char *rcpt, const char *text)
{
	if (t->nevents == *cap) {
		*cap = *cap ? 2 * *cap : 8;
		t->events = xrealloc(t->events, *cap * sizeof(*t->events));
	}
	struct store_event *e = &t->events[t->nevents++];
	e->time_ms = time_ms;
	e->kind = kind;
	e->outcome = outcome;
	e->rcpt = xstrdup(rcpt);
	e->text = xstrdup(text);
}

static enum store_status
sq_track_get(struct store *s, const char *id, struct store_timeline *out)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_GET);
	size_t cap = 0;
	int64_t rid;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "get msg");
	}
	rid = msg_row(st, &out->msg);
	sqlite3_reset(st);
	if (msg_rcpts(s, rid, &out->msg) != STORE_OK)
		goto fail;

	event_add(out, &cap, out->msg.received_ms, STORE_EV_RECEIVED, STORE_OUT_PENDING, "", "");
	if ((st = sq_stmt(s, SQ_MSG_EVENTS)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, rid);
	sqlite3_bind_int(st, 2, STORE_EVENTS_MAX + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out->nevents > STORE_EVENTS_MAX) {
			out->truncated = true;
			break;
		}
		int o = store_outcome_parse(col_str(st, 2));
		event_add(out, &cap, sqlite3_column_int64(st, 0), STORE_EV_DELIVERY,
		          o < 0 ? STORE_OUT_PENDING : (enum store_outcome)o, col_str(st, 1),
		          col_str(st, 3));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sq_fail(s, "events");
		goto fail;
	}
	if (out->msg.verdict != STORE_V_NONE) {
		/* In time order, after the events of the same time (stable). */
		event_add(out, &cap, out->msg.verdict_ms, STORE_EV_VERDICT, STORE_OUT_PENDING, "",
		          out->msg.reason);
		struct store_event v = out->events[out->nevents - 1];
		size_t i = out->nevents - 1;
		while (i > 1 && out->events[i - 1].time_ms > v.time_ms) {
			out->events[i] = out->events[i - 1];
			i--;
		}
		out->events[i] = v;
	}
	return STORE_OK;
fail:
	store_timeline_free(out);
	return STORE_ERROR;
}

static enum store_status
sq_track_purge(struct store *s, int64_t before_ms, unsigned max_rows, size_t *n)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_PURGE);
	enum store_status ret;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, before_ms);
	sqlite3_bind_int64(st, 2, max_rows);
	if ((ret = sq_run(s, st, "purge")) != STORE_OK)
		return ret;
	*n = (size_t)sqlite3_changes(SQ(s)->db);
	return STORE_OK;
}

/* One pass over msg_time from since_ms on: a day of mail, grouped as it is read. */
static enum store_status
sq_track_hourly(struct store *s, int64_t since_ms,
                int (*fn)(void *arg, int64_t hour_ms, enum store_verdict v, uint64_t count),
                void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_HOURLY);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, since_ms);
	sqlite3_bind_int(st, 2, STORE_LIST_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int v = store_verdict_parse(col_str(st, 1));

		if (v < 0)
			continue;
		if (fn(arg, sqlite3_column_int64(st, 0), (enum store_verdict)v,
		       (uint64_t)sqlite3_column_int64(st, 2)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "hourly");
}

static enum store_status
sq_track_threat_lines(struct store *s, int64_t since_ms, unsigned max_msgs,
                      int (*fn)(void *arg, const char *symbols), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_THREAT_LINES);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, since_ms);
	sqlite3_bind_int64(st, 2, max_msgs);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(arg, col_str(st, 0)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "threat symbols");
}

static enum store_status
sq_track_threat_senders(struct store *s, int64_t since_ms, unsigned max_msgs, unsigned limit,
                        int (*fn)(void *arg, const char *sender, uint64_t count), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_MSG_THREAT_SENDERS);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, since_ms);
	sqlite3_bind_int64(st, 2, max_msgs);
	sqlite3_bind_int64(st, 3, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(arg, col_str(st, 0), (uint64_t)sqlite3_column_int64(st, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "threat senders");
}

/* --- quarantine --- */

static enum store_status
sq_quarantine_add(struct store *s, const struct store_quar_in *in)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int64_t rid;

	if ((ret = tx_begin(s)) != STORE_OK)
		return ret;
	if ((st = sq_stmt(s, SQ_Q_INS)) == NULL)
		goto fail;
	bind_text(st, 1, in->id);
	bind_text(st, 2, in->domain);
	sqlite3_bind_int64(st, 3, in->received_ms);
	bind_text(st, 4, in->sender);
	bind_text(st, 5, store_addr_domain(in->sender));
	bind_text(st, 6, in->from);
	bind_text(st, 7, in->subject);
	bind_text(st, 8, in->message_id);
	sqlite3_bind_int64(st, 9, (int64_t)in->size);
	bind_text(st, 10, store_verdict_str(in->verdict));
	sqlite3_bind_double(st, 11, in->score);
	bind_text(st, 12, in->symbols);
	if ((ret = sq_run(s, st, "insert quar")) != STORE_OK)
		goto fail;
	rid = sqlite3_last_insert_rowid(SQ(s)->db);
	for (size_t i = 0; i < in->nrcpts; i++) {
		if ((st = sq_stmt(s, SQ_Q_RCPT_INS)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, rid);
		bind_text(st, 2, in->rcpts[i]);
		sqlite3_bind_int64(st, 3, in->received_ms);
		bind_text(st, 4, in->id);
		if ((ret = sq_run(s, st, "insert quar_rcpt")) != STORE_OK)
			goto fail;
		if ((st = sq_stmt(s, SQ_Q_DOM_INS)) == NULL)
			goto fail;
		bind_text(st, 1, store_addr_domain(in->rcpts[i]));
		sqlite3_bind_int64(st, 2, in->received_ms);
		bind_text(st, 3, in->id);
		sqlite3_bind_int64(st, 4, rid);
		if ((ret = sq_run(s, st, "insert quar_dom")) != STORE_OK)
			goto fail;
	}
	if ((ret = tx_commit(s)) != STORE_OK)
		goto fail;
	return STORE_OK;
fail:
	tx_rollback(s);
	return ret == STORE_OK ? STORE_ERROR : ret;
}

/* A row of QUAR_COLS into e; its rid. */
static int64_t
quar_row(sqlite3_stmt *st, struct store_quar *e)
{
	int v;

	str_copy(e->id, col_str(st, 0), sizeof(e->id));
	e->received_ms = sqlite3_column_int64(st, 1);
	e->domain = col_dup(st, 2);
	e->sender = col_dup(st, 3);
	e->from = col_dup(st, 4);
	e->subject = col_dup(st, 5);
	e->message_id = col_dup(st, 6);
	e->size = (uint64_t)sqlite3_column_int64(st, 7);
	v = store_verdict_parse(col_str(st, 8));
	e->verdict = v < 0 ? STORE_V_NONE : (enum store_verdict)v;
	e->score = sqlite3_column_double(st, 9);
	e->symbols = col_dup(st, 10);
	v = store_qstate_parse(col_str(st, 11));
	e->state = v < 0 ? STORE_Q_HELD : (enum store_qstate)v;
	e->state_by = col_dup(st, 12);
	e->state_ms = sqlite3_column_int64(st, 13);
	e->queued = sqlite3_column_int(st, 15) != 0;
	return sqlite3_column_int64(st, 14);
}

static enum store_status
quar_rcpts(struct store *s, int64_t rid, struct store_quar *e)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_Q_RCPTS);
	size_t cap = 0;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, rid);
	sqlite3_bind_int(st, 2, STORE_RCPTS_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (e->nrcpts == cap) {
			cap = cap ? 2 * cap : 4;
			e->rcpts = xrealloc(e->rcpts, cap * sizeof(*e->rcpts));
		}
		e->rcpts[e->nrcpts++] = col_dup(st, 0);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "recipients");
}

static int64_t
search_quar_row(sqlite3_stmt *st, void *row)
{
	return quar_row(st, row);
}

static enum store_status
search_quar_rcpts(struct store *s, int64_t rid, void *row)
{
	return quar_rcpts(s, rid, row);
}

static void
search_quar_key(const void *row, struct store_cursor *c)
{
	const struct store_quar *q = row;

	c->time_ms = q->received_ms;
	str_copy(c->id, q->id, sizeof(c->id));
}

static enum store_status
sq_quarantine_search(struct store *s, const struct store_filter *f, struct store_quar_page *out)
{
	static const struct search_kind kind = {true, sizeof(struct store_quar), search_quar_row,
	                                        search_quar_rcpts, search_quar_key};
	void *rows = NULL;
	enum store_status r = search_page(s, f, &kind, &rows, &out->n, &out->more, &out->next);

	out->rows = rows;
	if (r != STORE_OK)
		store_quar_page_free(out);
	return r;
}

static enum store_status
sq_quarantine_get(struct store *s, const char *id, struct store_quar *out)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_Q_GET);
	int64_t rid;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "get quar");
	}
	rid = quar_row(st, out);
	sqlite3_reset(st);
	if (quar_rcpts(s, rid, out) != STORE_OK) {
		store_quar_free(out);
		return STORE_ERROR;
	}
	return STORE_OK;
}

static enum store_status
sq_quarantine_set_state(struct store *s, const char *id, enum store_qstate to, const char *who,
                        int64_t time_ms, enum store_qstate *was)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int rc, v;

	/* The update itself decides: only a held entry changes, under the write lock. */
	if ((ret = tx_begin(s)) != STORE_OK)
		return ret;
	if ((st = sq_stmt(s, SQ_Q_SET)) == NULL)
		goto fail;
	bind_text(st, 1, id);
	bind_text(st, 2, store_qstate_str(to));
	bind_text(st, 3, who);
	sqlite3_bind_int64(st, 4, time_ms);
	if ((ret = sq_run(s, st, "set state")) != STORE_OK)
		goto fail;
	if (sqlite3_changes(SQ(s)->db) == 1) {
		*was = STORE_Q_HELD;
		ret = STORE_OK;
	} else {
		if ((st = sq_stmt(s, SQ_Q_STATE)) == NULL)
			goto fail;
		bind_text(st, 1, id);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			v = store_qstate_parse(col_str(st, 0));
			*was = v < 0 ? STORE_Q_HELD : (enum store_qstate)v;
			ret = *was == to ? STORE_ALREADY : STORE_CONFLICT;
		} else {
			ret = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "state");
		}
		sqlite3_reset(st);
		if (ret == STORE_ERROR)
			goto fail;
	}
	if (tx_commit(s) != STORE_OK) {
		ret = STORE_ERROR;
		goto fail;
	}
	return ret;
fail:
	tx_rollback(s);
	return ret == STORE_OK ? STORE_ERROR : ret;
}

/* Run a DELETE or UPDATE of one row: STORE_NOT_FOUND if it touched none. */
static enum store_status
sq_run_one(struct store *s, sqlite3_stmt *st, const char *what)
{
	enum store_status ret = sq_run(s, st, what);

	if (ret == STORE_OK && sqlite3_changes(SQ(s)->db) == 0)
		ret = STORE_NOT_FOUND;
	return ret;
}

static enum store_status
sq_quarantine_purge(struct store *s, int64_t before_ms, unsigned max_rows, size_t *n)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_Q_PURGE);
	enum store_status ret;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, before_ms);
	sqlite3_bind_int64(st, 2, max_rows);
	if ((ret = sq_run(s, st, "purge")) != STORE_OK)
		return ret;
	*n = (size_t)sqlite3_changes(SQ(s)->db);
	return STORE_OK;
}

static enum store_status
sq_quarantine_queued(struct store *s, const char *id)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_Q_QUEUED);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	return sq_run_one(s, st, "queued");
}

static enum store_status
sq_quarantine_unrelease(struct store *s, const char *id, const char *who, int64_t time_ms)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int rc;

	if ((st = sq_stmt(s, SQ_Q_UNRELEASE)) == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	bind_text(st, 2, who);
	sqlite3_bind_int64(st, 3, time_ms);
	if ((ret = sq_run(s, st, "unrelease")) != STORE_OK)
		return ret;
	if (sqlite3_changes(SQ(s)->db) == 1)
		return STORE_OK;
	if ((st = sq_stmt(s, SQ_Q_STATE)) == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	ret = rc == SQLITE_ROW    ? STORE_CONFLICT
	      : rc == SQLITE_DONE ? STORE_NOT_FOUND
	                          : sq_fail(s, "state");
	sqlite3_reset(st);
	return ret;
}

static enum store_status
sq_quarantine_expired(struct store *s, int64_t before_ms, char (*ids)[STORE_ID_MAX + 1], size_t max,
                      size_t *n)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_Q_EXPIRED);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, before_ms);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		str_copy(ids[(*n)++], col_str(st, 0), STORE_ID_MAX + 1);
	if (*n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "expired");
}

/* --- audit --- */

static enum store_status
sq_audit_add(struct store *s, const struct store_audit *a)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_AUDIT_INS);

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, a->time_ms);
	bind_text(st, 2, a->who);
	bind_text(st, 3, a->action);
	bind_text(st, 4, a->target);
	bind_text(st, 5, a->addr);
	return sq_run(s, st, "audit");
}

static enum store_status
sq_audit_list(struct store *s, const char *target, int64_t before_id, unsigned limit,
              int (*fn)(void *arg, const struct store_audit *a), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, target != NULL ? SQ_AUDIT_TARGET : SQ_AUDIT_ALL);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, before_id > 0 ? before_id : INT64_MAX);
	sqlite3_bind_int(st, 2, (int)limit);
	if (target != NULL)
		bind_text(st, 3, target);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_audit a = {
		        .id = sqlite3_column_int64(st, 0),
		        .time_ms = sqlite3_column_int64(st, 1),
		        .who = col_str(st, 2),
		        .action = col_str(st, 3),
		        .target = col_str(st, 4),
		        .addr = col_str(st, 5),
		};
		if (fn(arg, &a) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "audit list");
}

/* --- settings --- */

static enum store_status
sq_setting_set(struct store *s, const char *key, const char *value)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_SET_PUT);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, key);
	bind_text(st, 2, value);
	return sq_run(s, st, "setting");
}

static enum store_status
sq_setting_get(struct store *s, const char *key, char *value, size_t size)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_SET_GET);
	enum store_status ret;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = str_copy(value, col_str(st, 0), size) < size ? STORE_OK : STORE_INVALID;
	else
		ret = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "setting");
	sqlite3_reset(st);
	return ret;
}

static enum store_status
sq_setting_delete(struct store *s, const char *key)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_SET_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, key);
	return sq_run_one(s, st, "setting");
}

static enum store_status
sq_setting_list(struct store *s, int (*fn)(void *arg, const char *key, const char *value),
                void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_SET_LIST);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int(st, 1, STORE_LIST_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(arg, col_str(st, 0), col_str(st, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "settings");
}

/* --- rules --- */

static const char *const rule_kinds[] = {"if", "unless", "then"};

static enum store_status
rule_lines_put(struct store *s, int64_t rid, const char *kind, const char *const *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = sq_stmt(s, SQ_RULE_LINE_INS);
		enum store_status ret;

		if (st == NULL)
			return STORE_ERROR;
		sqlite3_bind_int64(st, 1, rid);
		bind_text(st, 2, kind);
		sqlite3_bind_int64(st, 3, (int64_t)i);
		bind_text(st, 4, lines[i]);
		if ((ret = sq_run(s, st, "rule line")) != STORE_OK)
			return ret;
	}
	return STORE_OK;
}

static enum store_status
sq_rule_put(struct store *s, const struct rule_spec *spec)
{
	sqlite3_stmt *st;
	enum store_status ret;
	int64_t rid = 0;
	int rc;

	if ((ret = tx_begin(s)) != STORE_OK)
		return ret;
	if ((st = sq_stmt(s, SQ_RULE_FIND)) == NULL)
		goto fail;
	bind_text(st, 1, spec->name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rid = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		ret = sq_fail(s, "rule");
		goto fail;
	}
	if ((st = sq_stmt(s, rid != 0 ? SQ_RULE_UPD : SQ_RULE_INS)) == NULL)
		goto fail;
	if (rid != 0)
		sqlite3_bind_int64(st, 1, rid);
	else
		bind_text(st, 1, spec->name);
	sqlite3_bind_int64(st, 2, spec->priority);
	sqlite3_bind_int(st, 3, spec->enabled);
	sqlite3_bind_int(st, 4, spec->stop);
	ret = sq_run(s, st, "rule");
	if (ret == STORE_ALREADY) { /* the name is ours: the priority is another rule's */
		store_fail(s, "priority %u is taken by another rule", spec->priority);
		ret = STORE_CONFLICT;
	}
	if (ret != STORE_OK)
		goto fail;
	if (rid == 0) {
		rid = sqlite3_last_insert_rowid(SQ(s)->db);
	} else {
		if ((st = sq_stmt(s, SQ_RULE_LINES_DEL)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, rid);
		if ((ret = sq_run(s, st, "rule lines")) != STORE_OK)
			goto fail;
	}
	if ((ret = rule_lines_put(s, rid, "if", spec->ifs, spec->nifs)) != STORE_OK ||
	    (ret = rule_lines_put(s, rid, "unless", spec->unless, spec->nunless)) != STORE_OK ||
	    (ret = rule_lines_put(s, rid, "then", spec->then, spec->nthen)) != STORE_OK)
		goto fail;
	if ((ret = tx_commit(s)) != STORE_OK)
		goto fail;
	return STORE_OK;
fail:
	tx_rollback(s);
	return ret == STORE_OK ? STORE_ERROR : ret;
}

static enum store_status
sq_rule_delete(struct store *s, const char *name)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_RULE_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, name);
	return sq_run_one(s, st, "rule");
}

/* The lines of one rule, grouped by kind (each at most RULE_ITEMS_MAX). */
struct rule_text {
	char *lines[3][RULE_ITEMS_MAX];
	size_t n[3];
};

static void
rule_text_clear(struct rule_text *t)
{
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < t->n[k]; i++)
			free(t->lines[k][i]);
	memset(t, 0, sizeof(*t));
}

static enum store_status
sq_rule_load(struct store *s, int (*fn)(void *arg, const struct rule_spec *spec), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_RULE_LIST), *ls;
	struct rule_text t = {0};
	enum store_status ret = STORE_OK;
	int rc, lrc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int(st, 1, RULES_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((ls = sq_stmt(s, SQ_RULE_LINES)) == NULL) {
			ret = STORE_ERROR;
			break;
		}
		sqlite3_bind_int64(ls, 1, sqlite3_column_int64(st, 0));
		sqlite3_bind_int(ls, 2, 3 * RULE_ITEMS_MAX);
		while ((lrc = sqlite3_step(ls)) == SQLITE_ROW) {
			const char *kind = col_str(ls, 0);
			for (size_t k = 0; k < 3; k++)
				if (strcmp(kind, rule_kinds[k]) == 0 && t.n[k] < RULE_ITEMS_MAX)
					t.lines[k][t.n[k]++] = col_dup(ls, 1);
		}
		sqlite3_reset(ls);
		if (lrc != SQLITE_DONE) {
			ret = sq_fail(s, "rule lines");
			break;
		}
		struct rule_spec spec = {
		        .name = col_str(st, 1),
		        .priority = (unsigned)sqlite3_column_int64(st, 2),
		        .enabled = sqlite3_column_int(st, 3) != 0,
		        .stop = sqlite3_column_int(st, 4) != 0,
		        .ifs = (const char *const *)t.lines[0],
		        .nifs = t.n[0],
		        .unless = (const char *const *)t.lines[1],
		        .nunless = t.n[1],
		        .then = (const char *const *)t.lines[2],
		        .nthen = t.n[2],
		};
		int stop = fn(arg, &spec);
		rule_text_clear(&t);
		if (stop != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	rule_text_clear(&t);
	sqlite3_reset(st);
	if (ret == STORE_OK && rc != SQLITE_DONE)
		ret = sq_fail(s, "rules");
	return ret;
}

/* --- lists --- */

static const char *
list_kind_str(enum store_list_kind k)
{
	return k == STORE_LIST_BLOCK ? "block" : "allow";
}

static enum store_status
sq_list_add(struct store *s, const struct store_list_entry *e)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_LIST_INS);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, e->scope);
	bind_text(st, 2, list_kind_str(e->kind));
	bind_text(st, 3, e->pattern);
	sqlite3_bind_int64(st, 4, e->created_ms);
	return sq_run(s, st, "list");
}

static enum store_status
sq_list_delete(struct store *s, const char *scope, enum store_list_kind kind, const char *pattern)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_LIST_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, scope);
	bind_text(st, 2, list_kind_str(kind));
	bind_text(st, 3, pattern);
	return sq_run_one(s, st, "list");
}

static enum store_status
sq_list_load(struct store *s, const char *scope,
             int (*fn)(void *arg, const struct store_list_entry *e), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, scope != NULL ? SQ_LIST_SCOPE : SQ_LIST_ALL);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int(st, 1, STORE_LIST_MAX);
	if (scope != NULL)
		bind_text(st, 2, scope);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_list_entry e = {
		        .scope = col_str(st, 0),
		        .kind = strcmp(col_str(st, 1), "block") == 0 ? STORE_LIST_BLOCK
		                                                     : STORE_LIST_ALLOW,
		        .pattern = col_str(st, 2),
		        .created_ms = sqlite3_column_int64(st, 3),
		};
		if (fn(arg, &e) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "lists");
}

/* --- domains --- */

static enum store_status
sq_domain_put(struct store *s, const struct store_domain *d)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_DOMAIN_PUT);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, d->name);
	bind_text(st, 2, d->body);
	sqlite3_bind_int64(st, 3, d->created_ms);
	sqlite3_bind_int64(st, 4, d->updated_ms);
	return sq_run(s, st, "domain");
}

static enum store_status
sq_domain_delete(struct store *s, const char *name)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_DOMAIN_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, name);
	return sq_run_one(s, st, "domain");
}

static enum store_status
sq_domain_load(struct store *s, int (*fn)(void *arg, const struct store_domain *d), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_DOMAIN_ALL);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_domain d = {
		        .name = col_str(st, 0),
		        .body = col_str(st, 1),
		        .created_ms = sqlite3_column_int64(st, 2),
		        .updated_ms = sqlite3_column_int64(st, 3),
		};
		if (fn(arg, &d) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "domains");
}

/* --- Microsoft 365 jobs --- */

static enum store_status
sq_m365_job_put(struct store *s, const struct store_m365_job *j)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_JOB_PUT);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, j->id);
	bind_text(st, 2, j->tenant);
	bind_text(st, 3, j->kind);
	bind_text(st, 4, j->state);
	sqlite3_bind_int64(st, 5, j->created_ms);
	sqlite3_bind_int64(st, 6, j->updated_ms);
	bind_text(st, 7, j->data);
	return sq_run(s, st, "m365 job");
}

/* Rows of a job query to fn; *n counts them. */
static enum store_status
sq_m365_jobs(struct store *s, sqlite3_stmt *st,
             int (*fn)(void *arg, const struct store_m365_job *j), void *arg, size_t *n)
{
	int rc;

	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_m365_job j = {
		        .id = col_str(st, 0),
		        .tenant = col_str(st, 1),
		        .kind = col_str(st, 2),
		        .state = col_str(st, 3),
		        .created_ms = sqlite3_column_int64(st, 4),
		        .updated_ms = sqlite3_column_int64(st, 5),
		        .data = col_str(st, 6),
		};
		(*n)++;
		if (fn(arg, &j) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "m365 jobs");
}

static enum store_status
sq_m365_job_get(struct store *s, const char *id,
                int (*fn)(void *arg, const struct store_m365_job *j), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_JOB_GET);
	enum store_status ret;
	size_t n;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	ret = sq_m365_jobs(s, st, fn, arg, &n);
	return ret == STORE_OK && n == 0 ? STORE_NOT_FOUND : ret;
}

static enum store_status
sq_m365_job_list(struct store *s, unsigned limit,
                 int (*fn)(void *arg, const struct store_m365_job *j), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_JOB_LIST);
	size_t n;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, limit);
	return sq_m365_jobs(s, st, fn, arg, &n);
}

static enum store_status
sq_m365_step_add(struct store *s, const char *job, unsigned seq, int64_t time_ms, const char *data)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_STEP_ADD);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, job);
	sqlite3_bind_int64(st, 2, seq);
	sqlite3_bind_int64(st, 3, time_ms);
	bind_text(st, 4, data);
	return sq_run(s, st, "m365 step");
}

static enum store_status
sq_m365_step_list(struct store *s, const char *job,
                  int (*fn)(void *arg, unsigned seq, int64_t time_ms, const char *data), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_STEP_LIST);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, job);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(arg, (unsigned)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
		       col_str(st, 2)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "m365 steps");
}

static enum store_status
sq_m365_change_add(struct store *s, const char *tenant, const char *job, int64_t time_ms,
                   const char *undo)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_CHANGE_ADD);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, tenant);
	bind_text(st, 2, job);
	sqlite3_bind_int64(st, 3, time_ms);
	bind_text(st, 4, undo);
	return sq_run(s, st, "m365 change");
}

static enum store_status
sq_m365_change_list(struct store *s, const char *tenant,
                    int (*fn)(void *arg, int64_t id, const char *undo), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_CHANGE_LIST);
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, tenant);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn(arg, sqlite3_column_int64(st, 0), col_str(st, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "m365 changes");
}

static enum store_status
sq_m365_change_undone(struct store *s, int64_t id, int64_t time_ms)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_M365_CHANGE_UNDONE);

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, time_ms);
	return sq_run_one(s, st, "m365 change");
}

/* --- users and tokens --- */

static enum store_status
sq_user_add(struct store *s, const struct store_user *u)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_USER_INS);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, u->name);
	bind_text(st, 2, u->hash);
	sqlite3_bind_int64(st, 3, u->created_ms);
	return sq_run(s, st, "user");
}

static enum store_status
sq_user_get(struct store *s, const char *name, struct store_user *out)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_USER_GET);
	enum store_status ret = STORE_OK;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		str_copy(out->name, col_str(st, 0), sizeof(out->name));
		str_copy(out->hash, col_str(st, 1), sizeof(out->hash));
		out->created_ms = sqlite3_column_int64(st, 2);
	} else {
		ret = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "user");
	}
	sqlite3_reset(st);
	return ret;
}

static enum store_status
sq_user_set_hash(struct store *s, const char *name, const char *hash)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_USER_SET_HASH);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, name);
	bind_text(st, 2, hash);
	return sq_run_one(s, st, "user");
}

static enum store_status
sq_user_delete(struct store *s, const char *name)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_USER_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, name);
	return sq_run_one(s, st, "user");
}

static enum store_status
sq_user_list(struct store *s, int (*fn)(void *arg, const struct store_user *u), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_USER_LIST);
	struct store_user u;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int(st, 1, STORE_LIST_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&u, 0, sizeof(u));
		str_copy(u.name, col_str(st, 0), sizeof(u.name));
		u.created_ms = sqlite3_column_int64(st, 1);
		if (fn(arg, &u) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "users");
}

static enum store_status
sq_token_add(struct store *s, const struct store_token *t)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_TOK_INS);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, t->id);
	sqlite3_bind_blob(st, 2, t->hash, STORE_SHA256_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, t->scopes);
	sqlite3_bind_int64(st, 4, t->created_ms);
	return sq_run(s, st, "token");
}

static void
token_row(sqlite3_stmt *st, struct store_token *t)
{
	const void *h = sqlite3_column_blob(st, 1);

	memset(t, 0, sizeof(*t));
	str_copy(t->id, col_str(st, 0), sizeof(t->id));
	if (h != NULL && sqlite3_column_bytes(st, 1) == STORE_SHA256_LEN)
		memcpy(t->hash, h, STORE_SHA256_LEN);
	t->scopes = (unsigned)sqlite3_column_int64(st, 2) & STORE_SCOPE_ALL;
	t->created_ms = sqlite3_column_int64(st, 3);
	t->last_used_ms = sqlite3_column_int64(st, 4);
}

static enum store_status
sq_token_find(struct store *s, const unsigned char *hash, struct store_token *out)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_TOK_FIND);
	enum store_status ret = STORE_OK;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_blob(st, 1, hash, STORE_SHA256_LEN, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		token_row(st, out);
	else
		ret = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_fail(s, "token");
	sqlite3_reset(st);
	return ret;
}

static enum store_status
sq_token_touch(struct store *s, const char *id, int64_t time_ms)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_TOK_TOUCH);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, time_ms);
	return sq_run_one(s, st, "token");
}

static enum store_status
sq_token_delete(struct store *s, const char *id)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_TOK_DEL);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, id);
	return sq_run_one(s, st, "token");
}

static enum store_status
sq_token_list(struct store *s, int (*fn)(void *arg, const struct store_token *t), void *arg)
{
	sqlite3_stmt *st = sq_stmt(s, SQ_TOK_LIST);
	struct store_token t;
	int rc;

	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int(st, 1, STORE_LIST_MAX);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		token_row(st, &t);
		if (fn(arg, &t) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? STORE_OK : sq_fail(s, "tokens");
}

const struct store_backend store_backend_sqlite = {
        .name = "sqlite",
        .open = sq_open,
        .close = sq_close,
        .schema_version = sq_schema_version,
        .batch_begin = sq_batch_begin,
        .batch_end = sq_batch_end,
        .track_received = sq_track_received,
        .track_verdict = sq_track_verdict,
        .track_delivery = sq_track_delivery,
        .track_search = sq_track_search,
        .track_get = sq_track_get,
        .track_purge = sq_track_purge,
        .track_hourly = sq_track_hourly,
        .track_threat_lines = sq_track_threat_lines,
        .track_threat_senders = sq_track_threat_senders,
        .quarantine_add = sq_quarantine_add,
        .quarantine_search = sq_quarantine_search,
        .quarantine_get = sq_quarantine_get,
        .quarantine_set_state = sq_quarantine_set_state,
        .quarantine_unrelease = sq_quarantine_unrelease,
        .quarantine_queued = sq_quarantine_queued,
        .quarantine_purge = sq_quarantine_purge,
        .quarantine_expired = sq_quarantine_expired,
        .audit_add = sq_audit_add,
        .audit_list = sq_audit_list,
        .setting_set = sq_setting_set,
        .setting_get = sq_setting_get,
        .setting_delete = sq_setting_delete,
        .setting_list = sq_setting_list,
        .rule_put = sq_rule_put,
        .rule_delete = sq_rule_delete,
        .rule_load = sq_rule_load,
        .domain_put = sq_domain_put,
        .domain_delete = sq_domain_delete,
        .domain_load = sq_domain_load,
        .m365_job_put = sq_m365_job_put,
        .m365_job_get = sq_m365_job_get,
        .m365_job_list = sq_m365_job_list,
        .m365_step_add = sq_m365_step_add,
        .m365_step_list = sq_m365_step_list,
        .m365_change_add = sq_m365_change_add,
        .m365_change_list = sq_m365_change_list,
        .m365_change_undone = sq_m365_change_undone,
        .list_add = sq_list_add,
        .list_delete = sq_list_delete,
        .list_load = sq_list_load,
        .user_add = sq_user_add,
        .user_get = sq_user_get,
        .user_set_hash = sq_user_set_hash,
        .user_delete = sq_user_delete,
        .user_list = sq_user_list,
        .token_add = sq_token_add,
        .token_find = sq_token_find,
        .token_touch = sq_token_touch,
        .token_delete = sq_token_delete,
        .token_list = sq_token_list,
};
