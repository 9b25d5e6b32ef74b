/*
 * test_quarantine.c - src/quarantine/quarantine.c over a real spool and a
 * real SQLite store: release to all and to chosen recipients (the queue
 * file, its header section, the store's state, the audit log), the
 * refusals (already, conflict, unknown recipient, missing file), delete,
 * retention, and every case of the reconcile at start. The malware rescan
 * against a real clamd and the round trip through delivery are tested
 * over HTTP (tests/api/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"
#include "policy/policy.h"
#include "quarantine/quarantine.h"
#include "scan/scan.h"
#include "spool/spool.h"
#include "store/store.h"

static char dir[64];
static struct config *cfg;
static struct policy *pol;
static struct spool *sp;
static struct store *st;
static struct quarantine_ctx q;
static const struct quarantine_actor admin = {"user:admin", "127.0.0.1"};

static const char body_text[] =
        "Received: from mail.example.org ([192.0.2.1])\r\n"
        "\tby moat.test with ESMTP id x; Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        "From: Alice <alice@example.org>\r\n"
        "To: bob@corp.test, carol@corp.test\r\n"
        "Subject: =?UTF-8?Q?caf=C3=A9?= invoice\r\n"
        "Message-ID: <1@example.org>\r\n"
        "X-Moat-Verdict: forged\r\n"
        "\r\n"
        "Hello.\r\n";

static int
setup(void **state)
{
	char path[128], err[512];
	FILE *fp;

	scan_init();
	str_copy(dir, "/tmp/moat-quar-XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/moat.conf", dir);
	if ((fp = fopen(path, "w")) == NULL)
		return -1;
	fprintf(fp,
	        "data_dir = %s\nhostname = moat.test\nquarantine_retention = 1d\n"
	        "tracking_retention = 2d\n[domain corp.test]\nrecipients = any\n",
	        dir);
	fclose(fp);
	if ((cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	pol = policy_from_config(cfg);
	if ((sp = spool_open(dir, 0, err, sizeof(err))) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	if ((st = store_open(path, err, sizeof(err))) == NULL)
		return -1;
	q = (struct quarantine_ctx){.store = st, .spool = sp, .cfg = cfg, .pol = pol};
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	store_close(st);
	spool_close(sp);
	policy_unref(pol);
	config_unref(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Commit a message into quarantine/ as the SMTP side does; record it unless told not to. */
static void
hold(char id[SPOOL_ID_LEN + 1], int64_t received_ms, bool record)
{
	struct spool_msg *m = spool_msg_new(sp);
	struct spool_env env = {0};
	static const char *const rcpts[] = {"bob@corp.test", "carol@corp.test"};
	const char *head = "X-Moat-Verdict: quarantine; score=9.00\r\n";

	str_copy(id, spool_msg_id(m), SPOOL_ID_LEN + 1);
	env.received_at = received_ms / 1000;
	env.client_addr = xstrdup("192.0.2.1");
	env.helo = xstrdup("mail.example.org");
	env.protocol = xstrdup("ESMTP");
	env.sender = xstrdup("alice@example.org");
	spool_env_add_rcpt(&env, rcpts[0], 0, NULL);
	spool_env_add_rcpt(&env, rcpts[1], 0, NULL);
	spool_msg_set_env(m, &env);
	assert_int_equal(spool_msg_write(m, body_text, strlen(body_text)), 0);
	spool_msg_set_scan(m, xstrdup(head), strlen(head), 0,
	                   xstrdup("verdict=quarantine score=9.00 symbols=GTUBE(9.00)"), true);
	assert_int_equal(spool_msg_commit_sync(m), 0);
	if (record) {
		struct store_quar_in in = {
		        .id = id,
		        .domain = "corp.test",
		        .received_ms = received_ms,
		        .sender = "alice@example.org",
		        .rcpts = rcpts,
		        .nrcpts = 2,
		        .from = "alice@example.org",
		        .subject = "café invoice",
		        .message_id = "<1@example.org>",
		        .size = strlen(body_text),
		        .verdict = STORE_V_QUARANTINE,
		        .score = 9,
		        .symbols = "GTUBE(9.00)",
		};
		assert_int_equal(store_quarantine_add(st, &in), STORE_OK);
	}
}

static bool
exists(const char *sub, const char *id)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, id);
	return stat(path, &sb) == 0;
}

static enum store_qstate
state_of(const char *id)
{
	struct store_quar e;
	enum store_qstate s;

	assert_int_equal(store_quarantine_get(st, id, &e), STORE_OK);
	s = e.state;
	store_quar_free(&e);
	return s;
}

static int
count_action(void *arg, const struct store_audit *a)
{
	struct {
		const char *action;
		int n;
	} *c = arg;

	if (strcmp(a->action, c->action) == 0)
		c->n++;
	return 0;
}

static int
audited(const char *id, const char *action)
{
	struct {
		const char *action;
		int n;
	} c = {action, 0};

	assert_int_equal(store_audit_list(st, id, 0, 100, count_action, &c), STORE_OK);
	return c.n;
}

/* What delivery would send: the release's header section, then the body after it. */
static char *
delivered(const char *id, struct spool_file *f)
{
	struct spool_body b;
	char *buf;
	ssize_t n;

	assert_int_equal(spool_file_open(sp, id, f), SPOOL_OK);
	assert_int_equal(spool_body_open(sp, id, &f->env, &b), 0);
	buf = xmalloc(b.len + 1);
	n = spool_body_pread(&b, buf, b.len, 0);
	assert_int_equal(n, (ssize_t)b.len);
	buf[n] = '\0';
	close(b.fd);
	return buf;
}

static void
test_release_all(void **state)
{
	struct quarantine_release_req r = {.rescan = true};
	struct spool_file f;
	char id[SPOOL_ID_LEN + 1], msg[256], *text;

	hold(id, wall_ms(), true);
	r.id = id;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_OK);
	assert_string_equal(msg, "released to 2 recipients");
	assert_false(exists("quarantine", id));
	assert_true(exists("queue", id));
	assert_int_equal(state_of(id), STORE_Q_RELEASED);
	assert_int_equal(audited(id, "quarantine.release"), 1);

	text = delivered(id, &f);
	assert_int_equal(f.env.nrcpts, 2);
	assert_string_equal(f.env.sender, "alice@example.org");
	assert_non_null(strstr(text, "X-Moat-Released: "));
	assert_non_null(strstr(text, id));
	assert_non_null(strstr(text, "X-Moat-Verdict: deliver"));
	assert_non_null(strstr(text, "MOAT_RELEASED"));
	assert_null(strstr(text, "X-Moat-Verdict: forged")); /* incoming X-Moat-* removed */
	assert_non_null(strstr(text, "Subject: =?UTF-8?Q?caf=C3=A9?= invoice\r\n"));
	assert_non_null(strstr(text, "\r\n\r\nHello.\r\n"));
	free(text);
	spool_file_close(&f);

	/* a second release changes nothing */
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_ALREADY);
	assert_string_equal(msg, "already released");
	assert_int_equal(audited(id, "quarantine.release"), 1);
}

static void
test_release_chosen(void **state)
{
	static const char *const carol[] = {"Carol@CORP.test"};
	static const char *const stranger[] = {"bob@corp.test", "eve@corp.test"};
	struct quarantine_release_req r = {.rescan = false};
	struct spool_file f;
	char id[SPOOL_ID_LEN + 1], msg[256], *text;

	hold(id, wall_ms(), true);
	r.id = id;
	r.rcpts = stranger;
	r.nrcpts = 2;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_INVALID);
	assert_string_equal(msg, "eve@corp.test is not a recipient of this message");
	assert_true(exists("quarantine", id));
	assert_int_equal(state_of(id), STORE_Q_HELD);

	r.rcpts = carol;
	r.nrcpts = 1;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_OK);
	assert_string_equal(msg, "released to 1 recipient");
	text = delivered(id, &f);
	assert_int_equal(f.env.nrcpts, 1);
	assert_string_equal(f.env.rcpts[0].addr, "carol@corp.test");
	assert_non_null(strstr(text, "; rescan=no"));
	free(text);
	spool_file_close(&f);
}

/* Many at once: each answered on its own, the good ones queued together. */
static void
test_release_many(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1], c[SPOOL_ID_LEN + 1];
	struct quarantine_release_req r[5] = {{.rescan = true},
	                                      {.rescan = true},
	                                      {.rescan = true},
	                                      {.rescan = true},
	                                      {.rescan = true}};
	struct quarantine_result out[5];
	char msg[256];

	hold(a, wall_ms(), true);
	hold(b, wall_ms(), true);
	hold(c, wall_ms(), true);
	assert_int_equal(quarantine_delete(&q, c, &admin, msg, sizeof(msg)), QUAR_OK);
	r[0].id = a;
	r[1].id = "0123456789abcdef";
	r[2].id = b;
	r[3].id = c;
	r[4].id = a; /* twice in one batch: once */
	quarantine_release_many(&q, r, 5, &admin, out);
	assert_int_equal(out[0].status, QUAR_OK);
	assert_int_equal(out[1].status, QUAR_NOT_FOUND);
	assert_int_equal(out[2].status, QUAR_OK);
	assert_int_equal(out[3].status, QUAR_CONFLICT);
	assert_int_equal(out[4].status, QUAR_ALREADY);
	assert_string_equal(out[4].msg, "already released");
	assert_true(exists("queue", a) && exists("queue", b));
	assert_false(exists("quarantine", a) || exists("quarantine", b));
	assert_int_equal(state_of(a), STORE_Q_RELEASED);
	assert_int_equal(audited(a, "quarantine.release"), 1);
	assert_int_equal(audited(b, "quarantine.release"), 1);
}

static void
test_delete_and_conflicts(void **state)
{
	struct quarantine_release_req r = {.rescan = true};
	char id[SPOOL_ID_LEN + 1], msg[256];
	unsigned char *data;
	size_t len;

	hold(id, wall_ms(), true);
	assert_int_equal(quarantine_read(&q, id, &data, &len), QUAR_OK);
	assert_int_equal(len, strlen(body_text));
	assert_memory_equal(data, body_text, len);
	free(data);

	assert_int_equal(quarantine_delete(&q, id, &admin, msg, sizeof(msg)), QUAR_OK);
	assert_false(exists("quarantine", id));
	assert_int_equal(state_of(id), STORE_Q_DELETED);
	assert_int_equal(audited(id, "quarantine.delete"), 1);
	assert_int_equal(quarantine_delete(&q, id, &admin, msg, sizeof(msg)), QUAR_ALREADY);
	r.id = id;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_CONFLICT);
	assert_string_equal(msg, "cannot be released: already deleted");
	assert_int_equal(quarantine_read(&q, id, &data, &len), QUAR_GONE);

	/* unknown and malformed ids */
	r.id = "0123456789abcdef";
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_NOT_FOUND);
	assert_int_equal(quarantine_read(&q, r.id, &data, &len), QUAR_NOT_FOUND);
	r.id = "../../etc/passwd";
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_INVALID);
	assert_int_equal(quarantine_delete(&q, "x", &admin, msg, sizeof(msg)), QUAR_INVALID);

	/* the store has it, the file is gone: said, and nothing queued */
	hold(id, wall_ms(), true);
	assert_true(spool_quarantine_remove(sp, id) == 0);
	r.id = id;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_GONE);
	assert_int_equal(state_of(id), STORE_Q_HELD);
	assert_false(exists("queue", id));
	assert_int_equal(quarantine_status_http(QUAR_GONE), 410);
	assert_int_equal(quarantine_status_http(QUAR_ALREADY), 409);
}

static void
test_purge(void **state)
{
	char old[SPOOL_ID_LEN + 1], fresh[SPOOL_ID_LEN + 1];
	int64_t now = wall_ms();
	size_t expired, forgotten;

	hold(old, now - 2 * 86400000LL, true);
	hold(fresh, now - 3600000LL, true);
	assert_int_equal(quarantine_purge(&q, now, 100, &expired, &forgotten), QUAR_OK);
	assert_int_equal(expired, 1);
	assert_int_equal(state_of(old), STORE_Q_EXPIRED);
	assert_false(exists("quarantine", old));
	assert_int_equal(state_of(fresh), STORE_Q_HELD);
	assert_true(exists("quarantine", fresh));
	assert_int_equal(audited(old, "quarantine.expire"), 1);
	assert_int_equal(quarantine_purge(&q, now, 100, &expired, &forgotten), QUAR_OK);
	assert_int_equal(expired, 0);

	/* past tracking_retention (2d here), entries no longer held are forgotten */
	{
		char gone[SPOOL_ID_LEN + 1], kept[SPOOL_ID_LEN + 1], msg[256];
		struct store_quar e;

		hold(gone, now - 3 * 86400000LL, true);
		hold(kept, now - 3 * 86400000LL, true);
		assert_int_equal(quarantine_delete(&q, gone, &admin, msg, sizeof(msg)), QUAR_OK);
		assert_int_equal(quarantine_purge(&q, now, 100, &expired, &forgotten), QUAR_OK);
		/* kept: expired first (its file goes), then forgotten like the rest */
		assert_int_equal(expired, 1);
		assert_int_equal(store_quarantine_get(st, gone, &e), STORE_NOT_FOUND);
		assert_int_equal(store_quarantine_get(st, kept, &e), STORE_NOT_FOUND);
		assert_false(exists("quarantine", kept));
		assert_int_equal(audited(kept, "quarantine.expire"), 1);
		assert_int_equal(state_of(old), STORE_Q_EXPIRED); /* within tracking_retention */
	}
}

static void
test_reconcile(void **state)
{
	char reheld[SPOOL_ID_LEN + 1], finished[SPOOL_ID_LEN + 1], deleted[SPOOL_ID_LEN + 1];
	char unrecorded[SPOOL_ID_LEN + 1], held[SPOOL_ID_LEN + 1], damaged[SPOOL_ID_LEN + 1];
	struct quarantine_reconcile_report rep;
	struct spool_file f;
	struct store_quar e;
	char path[512];

	/* released in the store, stopped before queue/ was written */
	hold(reheld, wall_ms(), true);
	assert_int_equal(store_quarantine_set_state(st, reheld, STORE_Q_RELEASED, "user:admin",
	                                            wall_ms(), NULL),
	                 STORE_OK);
	/* released and queued, stopped before the quarantine copy went */
	hold(finished, wall_ms(), true);
	snprintf(path, sizeof(path), "cp -p %s/quarantine/%s %s/copy", dir, finished, dir);
	assert_int_equal(system(path), 0);
	assert_int_equal(spool_quarantine_open(sp, finished, &f), SPOOL_OK);
	{
		unsigned char *body;

		assert_int_equal(spool_quarantine_read(&f, &body), 0);
		struct spool_release rel = {
		        .env = &f.env, .body = body, .len = (size_t)f.body_len, .head = ""};

		assert_int_equal(spool_quarantine_release(sp, &rel, 1), 0);
		assert_int_equal(rel.err, 0);
		free(body);
	}
	spool_file_close(&f);
	snprintf(path, sizeof(path), "mv %s/copy %s/quarantine/%s", dir, dir, finished);
	assert_int_equal(system(path), 0);
	assert_int_equal(store_quarantine_set_state(st, finished, STORE_Q_RELEASED, "user:admin",
	                                            wall_ms(), NULL),
	                 STORE_OK);
	/* deleted in the store, file still there */
	hold(deleted, wall_ms(), true);
	assert_int_equal(store_quarantine_set_state(st, deleted, STORE_Q_DELETED, "user:admin",
	                                            wall_ms(), NULL),
	                 STORE_OK);
	/* the store writer dropped its record */
	hold(unrecorded, wall_ms(), false);
	hold(held, wall_ms(), true);
	/* torn */
	hold(damaged, wall_ms(), false);
	snprintf(path, sizeof(path), "%s/quarantine/%s", dir, damaged);
	assert_int_equal(truncate(path, 40), 0);

	assert_int_equal(quarantine_reconcile(&q, &rep), QUAR_OK);
	assert_int_equal(rep.files, 6);
	assert_int_equal(rep.reheld, 1);
	assert_int_equal(rep.finished, 1);
	assert_int_equal(rep.removed, 1);
	assert_int_equal(rep.recorded, 1);
	assert_int_equal(rep.unreadable, 1);
	assert_int_equal(state_of(reheld), STORE_Q_HELD);
	assert_true(exists("quarantine", reheld));
	assert_int_equal(audited(reheld, "quarantine.release_interrupted"), 1);
	assert_false(exists("quarantine", deleted));
	assert_true(exists("quarantine", held));
	assert_int_equal(state_of(held), STORE_Q_HELD);
	assert_false(exists("quarantine", damaged));
	{
		char qname[SPOOL_ID_LEN + 3];

		snprintf(qname, sizeof(qname), "q-%s", damaged);
		assert_true(exists("corrupt", qname));
	}
	assert_int_equal(store_quarantine_get(st, unrecorded, &e), STORE_OK);
	assert_string_equal(e.subject, "café invoice");
	assert_string_equal(e.from, "Alice <alice@example.org>");
	assert_string_equal(e.message_id, "<1@example.org>");
	assert_string_equal(e.domain, "corp.test");
	assert_int_equal(e.nrcpts, 2);
	assert_true(e.score > 8.99 && e.score < 9.01);
	assert_string_equal(e.symbols, "GTUBE(9.00)");
	store_quar_free(&e);
	assert_false(exists("quarantine", finished));
	assert_true(exists("queue", finished));

	/* a second pass finds nothing to do */
	assert_int_equal(quarantine_reconcile(&q, &rep), QUAR_OK);
	assert_int_equal(rep.files, 3);
	assert_int_equal(rep.reheld + rep.removed + rep.recorded + rep.unreadable + rep.finished,
	                 0);
}

/* The cases a failed unlink or fsync leaves behind: never held again, never delivered twice. */
static void
test_reconcile_after_failures(void **state)
{
	char delivered[SPOOL_ID_LEN + 1], revived[SPOOL_ID_LEN + 1], path[512];
	struct quarantine_release_req r = {.rescan = true};
	struct quarantine_reconcile_report rep;
	struct spool_file f;
	char msg[256];

	/* released, queued (recorded), delivered and gone; the copy's unlink was lost */
	hold(delivered, wall_ms(), true);
	snprintf(path, sizeof(path), "cp -p %s/quarantine/%s %s/copy", dir, delivered, dir);
	assert_int_equal(system(path), 0);
	r.id = delivered;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_OK);
	assert_int_equal(spool_remove(sp, delivered), 0); /* delivery finished */
	snprintf(path, sizeof(path), "mv %s/copy %s/quarantine/%s", dir, dir, delivered);
	assert_int_equal(system(path), 0);
	{
		struct store_quar e;

		assert_int_equal(store_quarantine_get(st, delivered, &e), STORE_OK);
		assert_true(e.queued);
		store_quar_free(&e);
	}

	/* held in the store (the release was undone), but its queue file survived */
	hold(revived, wall_ms(), true);
	assert_int_equal(spool_quarantine_open(sp, revived, &f), SPOOL_OK);
	{
		unsigned char *body;
		struct spool_release rel = {
		        .env = &f.env, .body = NULL, .len = (size_t)f.body_len, .head = ""};

		assert_int_equal(spool_quarantine_read(&f, &body), 0);
		rel.body = body;
		snprintf(path, sizeof(path), "cp -p %s/quarantine/%s %s/copy", dir, revived, dir);
		assert_int_equal(system(path), 0);
		assert_int_equal(spool_quarantine_release(sp, &rel, 1), 0);
		snprintf(path, sizeof(path), "mv %s/copy %s/quarantine/%s", dir, dir, revived);
		assert_int_equal(system(path), 0);
		free(body);
	}
	spool_file_close(&f);

	assert_int_equal(quarantine_reconcile(&q, &rep), QUAR_OK);
	assert_int_equal(rep.reheld, 0);
	assert_int_equal(rep.finished, 2);
	assert_false(exists("quarantine", delivered));
	assert_int_equal(state_of(delivered), STORE_Q_RELEASED);
	assert_false(exists("quarantine", revived));
	assert_true(exists("queue", revived));
	assert_int_equal(state_of(revived), STORE_Q_RELEASED);
	assert_int_equal(audited(revived, "quarantine.release_recovered"), 1);
	/* and nothing more to release */
	r.id = revived;
	assert_int_equal(quarantine_release(&q, &r, &admin, msg, sizeof(msg)), QUAR_ALREADY);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_release_all, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_release_chosen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_release_many, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_delete_and_conflicts, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reconcile_after_failures, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
