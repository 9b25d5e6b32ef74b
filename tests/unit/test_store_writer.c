/*
 * test_store_writer.c - src/store/store_writer.c: events from other
 * threads reach the store, in order, across batches; stopping writes what
 * is queued; a writer on a store that cannot be opened is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "store/store_writer.h"

static char dir[64];
static char path[96];

static int
setup(void **state)
{
	str_copy(dir, "/tmp/moat-writer-XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
msg_in(struct store_track_in *in, const char *id, const char *const *rcpts, size_t n)
{
	memset(in, 0, sizeof(*in));
	in->id = id;
	in->received_ms = 1790000000000;
	in->client_ip = "192.0.2.1";
	in->helo = "mail.example.org";
	in->sender = "a@example.org";
	in->rcpts = rcpts;
	in->nrcpts = n;
	in->subject = "hello";
	in->from = "a@example.org";
	in->message_id = "<1@example.org>";
	in->size = 1234;
}

/* Messages, verdicts, a quarantine record and deliveries, then read back. */
static void
test_writer_roundtrip(void **state)
{
	const char *rcpts[] = {"u@example.test", "v@example.test"};
	struct store_writer *w;
	struct store_track_in in;
	struct store_timeline tl;
	struct store_quar q;
	struct store *s;
	char err[256], id[17];

	w = store_writer_start(path, err, sizeof(err));
	assert_non_null(w);
	/* more than one batch */
	for (unsigned i = 0; i < 2500; i++) {
		snprintf(id, sizeof(id), "%016x", i + 1);
		msg_in(&in, id, rcpts, 2);
		store_writer_message(w, &in, STORE_V_DELIVER, 0.5, "SPF_PASS(0.00)", "score 0.50",
		                     NULL);
		store_writer_delivery(w, id, "u@example.test", STORE_OUT_DELIVERED, "250 ok",
		                      1790000000100);
	}
	msg_in(&in, "00000000000fffff", rcpts, 1);
	store_writer_message(w, &in, STORE_V_QUARANTINE, 9.0, "GTUBE(100.00)", "spam",
	                     &(struct store_quar_in){.domain = "example.test"});
	store_writer_stop(w); /* writes what is queued */

	s = store_open(path, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(store_track_get(s, "00000000000009c4", &tl), STORE_OK);
	assert_int_equal(tl.msg.verdict, STORE_V_DELIVER);
	assert_string_equal(tl.msg.subject, "hello");
	assert_int_equal(tl.msg.nrcpts, 2);
	assert_int_equal(tl.msg.rcpts[0].outcome, STORE_OUT_DELIVERED);
	assert_int_equal(tl.msg.rcpts[1].outcome, STORE_OUT_PENDING);
	store_timeline_free(&tl);
	assert_int_equal(store_quarantine_get(s, "00000000000fffff", &q), STORE_OK);
	assert_string_equal(q.domain, "example.test");
	assert_int_equal(q.state, STORE_Q_HELD);
	assert_int_equal(q.verdict, STORE_V_QUARANTINE);
	assert_int_equal(q.nrcpts, 1);
	store_quar_free(&q);
	assert_int_equal(store_quarantine_get(s, "0000000000000001", &q), STORE_NOT_FOUND);
	store_close(s);
}

static void
test_writer_bad_store(void **state)
{
	char err[256] = "";

	assert_null(store_writer_start("/nonexistent-dir/x/moat.db", err, sizeof(err)));
	assert_true(err[0] != '\0');
	/* a missing writer is a no-op, as when tracking is off */
	store_writer_delivery(NULL, "0123456789abcdef", "u@example.test", STORE_OUT_DEFERRED, "",
	                      0);
	assert_int_equal(store_writer_dropped(NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_writer_roundtrip, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_writer_bad_store, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
