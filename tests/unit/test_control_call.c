/*
 * test_control_call.c - src/control/control.c's control_call(): commands
 * run on the control's own loop for callers on other threads, many at
 * once, each getting its own answer; errors come back with their code; a
 * loop that does not answer in time gives 504, and the call it later runs
 * (or control_free() drops) is freed by whoever lets go last (run under
 * ASan by tests/run.sh).
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
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include "common/util.h"
#include "control/control.h"

#define CALLERS 8
#define CALLS   200

static char dir[64];
static char path[96];

static int
setup(void **state)
{
	str_copy(dir, "/tmp/moat-ctlcall-XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/control.sock", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* echo: {"n": N} -> {"twice": 2N}; n < 0 -> 409 */
static int
cmd_echo(void *arg, json_t *req, json_t **result, char *err, size_t errsize)
{
	json_int_t n = json_integer_value(json_object_get(req, "n"));

	__atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
	if (n < 0) {
		snprintf(err, errsize, "negative: %lld", (long long)n);
		return 409;
	}
	*result = json_pack("{s:I}", "twice", 2 * n);
	return 0;
}

struct loop {
	struct event_base *base;
	struct event *keep; /* keeps the loop running until stopped */
	pthread_t thread;
};

static void
keep_cb(evutil_socket_t fd, short what, void *arg)
{
}

static void *
loop_main(void *arg)
{
	struct loop *l = arg;

	event_base_dispatch(l->base);
	return NULL;
}

static void
loop_start(struct loop *l)
{
	struct timeval hour = {3600, 0};

	l->keep = event_new(l->base, -1, EV_PERSIST, keep_cb, NULL);
	event_add(l->keep, &hour);
	assert_int_equal(pthread_create(&l->thread, NULL, loop_main, l), 0);
}

static void
loop_stop(struct loop *l)
{
	event_base_loopbreak(l->base);
	pthread_join(l->thread, NULL);
	event_free(l->keep);
}

struct caller {
	struct control *c;
	int id, failures;
};

static void *
caller_main(void *arg)
{
	struct caller *k = arg;

	for (int i = 0; i < CALLS; i++) {
		json_int_t n = k->id * 100000 + i;
		json_t *req = json_pack("{s:s, s:I}", "cmd", "echo", "n", n), *resp = NULL;
		char err[256];

		if (control_call(k->c, req, &resp, err, sizeof(err)) != 0 ||
		    json_integer_value(json_object_get(resp, "twice")) != 2 * n)
			k->failures++;
		json_decref(resp);
		json_decref(req);
	}
	return NULL;
}

static void
test_many_callers(void **state)
{
	struct loop l = {.base = event_base_new()};
	char err[256];
	struct control *c = control_new(l.base, path, err, sizeof(err));
	struct caller k[CALLERS];
	pthread_t t[CALLERS];
	int runs = 0;

	assert_non_null(c);
	control_register(c, "echo", "echo", cmd_echo, &runs);
	loop_start(&l);
	for (int i = 0; i < CALLERS; i++) {
		k[i] = (struct caller){.c = c, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, caller_main, &k[i]), 0);
	}
	for (int i = 0; i < CALLERS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(k[i].failures, 0);
	}
	assert_int_equal(runs, CALLERS * CALLS);
	{
		/* an error keeps its code and message; an unknown command is 404; help works */
		json_t *req = json_pack("{s:s, s:i}", "cmd", "echo", "n", -3), *resp = (json_t *)1;

		assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 409);
		assert_null(resp);
		assert_string_equal(err, "negative: -3");
		json_decref(req);
		req = json_pack("{s:s}", "cmd", "nothing");
		assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 404);
		json_decref(req);
		req = json_pack("{s:i}", "n", 1);
		assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 400);
		json_decref(req);
		req = json_pack("{s:s}", "cmd", "help");
		assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 0);
		assert_true(json_is_array(json_object_get(resp, "commands")));
		json_decref(resp);
		json_decref(req);
	}
	loop_stop(&l);
	control_free(c);
	event_base_free(l.base);
}

static void
test_timeout_then_late_run(void **state)
{
	struct loop l = {.base = event_base_new()};
	char err[256];
	struct control *c = control_new(l.base, path, err, sizeof(err));
	json_t *req = json_pack("{s:s, s:i}", "cmd", "echo", "n", 7), *resp = NULL;
	int runs = 0;

	assert_non_null(c);
	control_register(c, "echo", "echo", cmd_echo, &runs);
	/* nothing runs the loop yet: the caller gives up */
	assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 504);
	assert_null(resp);
	assert_int_equal(runs, 0);
	/* the loop runs the orphaned call later and frees it; then a fresh call works */
	loop_start(&l);
	assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(resp, "twice")), 14);
	assert_int_equal(runs, 2);
	json_decref(resp);
	loop_stop(&l);
	json_decref(req);
	control_free(c);
	event_base_free(l.base);
}

static void
test_free_drops_orphans(void **state)
{
	struct event_base *base = event_base_new();
	char err[256];
	struct control *c = control_new(base, path, err, sizeof(err));
	json_t *req = json_pack("{s:s}", "cmd", "help"), *resp = NULL;

	assert_non_null(c);
	assert_int_equal(control_call(c, req, &resp, err, sizeof(err)), 504);
	/* never run: control_free() lets go of it (ASan: no leak, no double free) */
	control_free(c);
	json_decref(req);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_many_callers, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_timeout_then_late_run, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_free_drops_orphans, setup, teardown),
	};

	if (evthread_use_pthreads() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
