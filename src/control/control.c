/*
 * control.c - the control socket (see control.h): accept, read bounded
 * lines, parse JSON with jansson, dispatch through the command table,
 * answer.
 *
 * control_call() brings a command from another thread onto the control's
 * loop: the call is queued under a mutex, an event wakes the loop, and the
 * caller waits on a condition variable. A call is shared by the caller
 * and the loop and freed by whichever lets go last, so a caller that gave
 * up (timeout) never leaves the loop writing into freed memory.
 */
#include "control.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct control_cmd {
	char *name;
	char *help;
	control_fn fn;
	void *arg;
};

struct control_client;

/* One control_call() in flight: the caller's and the loop's. */
struct control_pending {
	TAILQ_ENTRY(control_pending) entry;
	json_t *req, *result;
	int code;
	bool done;
	int refs; /* under control->lock */
	char err[512];
};

struct control {
	pthread_mutex_t lock; /* calls, and each call's done/refs */
	pthread_cond_t cond;  /* a call is done */
	TAILQ_HEAD(, control_pending) calls;
	struct event *ev_call; /* wakes the loop for calls */
	struct evconnlistener *lev;
	struct control_client *clients; /* all of them, for control_free */
	char *path;
	struct control_cmd *cmds;
	size_t ncmds;
	unsigned nclients;
};

struct control_client {
	struct control *c;
	struct bufferevent *bev;
	struct control_client *next, **prevp;
	bool closing; /* answered its last request: close when the output is out */
};

#define CONTROL_OUTPUT_MAX (4 * 1024 * 1024) /* answers waiting for a client that does not read */
#define CONTROL_IDLE_SECS  60

static void
control_client_free(struct control_client *cl)
{
	cl->c->nclients--;
	*cl->prevp = cl->next;
	if (cl->next)
		cl->next->prevp = cl->prevp;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Close once what was answered is written (or at once if nothing is waiting). */
static void
control_client_close(struct control_client *cl)
{
	cl->closing = true;
	bufferevent_disable(cl->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(cl->bev)) == 0)
		control_client_free(cl);
}

static void
control_answer(struct control_client *cl, json_t *resp)
{
	char *text = json_dumps(resp, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (text != NULL) {
		bufferevent_write(cl->bev, text, strlen(text));
		bufferevent_write(cl->bev, "\n", 1);
		free(text);
	}
	json_decref(resp);
}

static void
control_error(struct control_client *cl, int code, const char *msg)
{
	control_answer(cl, json_pack("{s:b, s:i, s:s}", "ok", 0, "code", code, "error", msg));
}

static void
control_help(struct control *c, json_t **result)
{
	json_t *list = json_array();

	for (size_t i = 0; i < c->ncmds; i++)
		json_array_append_new(list, json_pack("{s:s, s:s}", "cmd", c->cmds[i].name, "help",
		                                      c->cmds[i].help));
	*result = json_pack("{s:o}", "commands", list);
}

/* Run the command name with req: 0 and *result, or an error code and err. */
static int
control_dispatch(struct control *c, const char *name, json_t *req, json_t **result, char *err,
                 size_t errsize)
{
	if (strcmp(name, "help") == 0) {
		control_help(c, result);
		return 0;
	}
	for (size_t i = 0; i < c->ncmds; i++) {
		if (strcmp(c->cmds[i].name, name) == 0) {
			err[0] = '\0';
			return c->cmds[i].fn(c->cmds[i].arg, req, result, err, errsize);
		}
	}
	snprintf(err, errsize, "unknown command '%.100s' (try 'help')", name);
	return 404;
}

static void
control_request(struct control_client *cl, const char *line, size_t len)
{
	struct control *c = cl->c;
	json_error_t jerr;
	json_t *req, *result = NULL, *resp;
	const char *name;
	char err[512] = "";
	int code;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL || !json_is_object(req)) {
		snprintf(err, sizeof(err), "request is not a JSON object: %s",
		         req ? "wrong type" : jerr.text);
		json_decref(req);
		control_error(cl, 400, err);
		return;
	}
	if ((name = json_string_value(json_object_get(req, "cmd"))) == NULL) {
		json_decref(req);
		control_error(cl, 400, "field 'cmd' (a string) is missing");
		return;
	}
	code = control_dispatch(c, name, req, &result, err, sizeof(err));
	log_debug("event=control cmd=%.100s code=%d", name, code);
	json_decref(req);
	if (code != 0) {
		json_decref(result);
		control_error(cl, code, err[0] ? err : "failed");
		return;
	}
	resp = result && json_is_object(result) ? result : json_object();
	if (result && !json_is_object(result))
		json_decref(result);
	json_object_set_new(resp, "ok", json_true());
	control_answer(cl, resp);
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > CONTROL_LINE_MAX) {
			free(line);
			control_error(cl, 400, "request line too long");
			control_client_close(cl);
			return;
		}
		control_request(cl, line, len);
		free(line);
		if (evbuffer_get_length(bufferevent_get_output(bev)) > CONTROL_OUTPUT_MAX) {
			/* it asks without reading the answers: stop listening to it */
			control_client_close(cl);
			return;
		}
	}
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX) {
		control_error(cl, 400, "request line too long");
		control_client_close(cl);
	}
}

static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_client *cl = arg;

	if (cl->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_client_free(cl);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_client *cl = arg;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !cl->closing) {
		/* the client is done sending: finish writing its answers, then close */
		control_client_close(cl);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		control_client_free(cl);
}

static void
control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg)
{
	struct control *c = arg;
	struct control_client *cl;

	if (c->nclients >= CONTROL_CLIENTS_MAX) {
		close(fd);
		return;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->c = c;
	cl->bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd, BEV_OPT_CLOSE_ON_FREE);
	if (cl->bev == NULL) {
		close(fd);
		free(cl);
		return;
	}
	{
		struct timeval idle = {CONTROL_IDLE_SECS, 0};

		c->nclients++;
		cl->next = c->clients;
		if (cl->next)
			cl->next->prevp = &cl->next;
		cl->prevp = &c->clients;
		c->clients = cl;
		bufferevent_setcb(cl->bev, control_read_cb, control_write_cb, control_event_cb, cl);
		bufferevent_setwatermark(cl->bev, EV_READ, 0, CONTROL_LINE_MAX + 1);
		bufferevent_set_timeouts(cl->bev, &idle, &idle);
		bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
	}
}

static void
control_pending_unref(struct control_pending *p)
{
	/* under control->lock */
	if (--p->refs == 0) {
		json_decref(p->req);
		json_decref(p->result);
		free(p);
	}
}

/* On the loop: run every queued call, then wake the callers. */
static void
control_call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;
	struct control_pending *p;

	pthread_mutex_lock(&c->lock);
	while ((p = TAILQ_FIRST(&c->calls)) != NULL) {
		const char *name = json_string_value(json_object_get(p->req, "cmd"));
		json_t *result = NULL;
		char err[sizeof(p->err)] = "";
		int code;

		TAILQ_REMOVE(&c->calls, p, entry);
		/* a command may take a while: callers queue more meanwhile */
		pthread_mutex_unlock(&c->lock);
		if (name == NULL) {
			snprintf(err, sizeof(err), "field 'cmd' (a string) is missing");
			code = 400;
		} else {
			code = control_dispatch(c, name, p->req, &result, err, sizeof(err));
		}
		pthread_mutex_lock(&c->lock);
		p->code = code;
		if (code == 0)
			p->result = result && json_is_object(result) ? json_incref(result)
			                                             : json_object();
		str_copy(p->err, err[0] ? err : "failed", sizeof(p->err));
		json_decref(result);
		p->done = true;
		control_pending_unref(p);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int
control_call(struct control *c, json_t *req, json_t **resp, char *err, size_t errsize)
{
	struct control_pending *p = xcalloc(1, sizeof(*p));
	struct timespec deadline;
	int code;

	*resp = NULL;
	p->req = json_incref(req);
	p->refs = 2;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += CONTROL_CALL_TIMEOUT_MS / 1000;
	deadline.tv_nsec += (long)(CONTROL_CALL_TIMEOUT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->lock);
	TAILQ_INSERT_TAIL(&c->calls, p, entry);
	event_active(c->ev_call, EV_READ, 0);
	while (!p->done)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT)
			break;
	if (!p->done) {
		/* the loop may still take it: let it, it frees what it finds orphaned */
		code = 504;
		snprintf(err, errsize, "the delivery loop did not answer in %d ms",
		         CONTROL_CALL_TIMEOUT_MS);
	} else {
		code = p->code;
		if (code == 0)
			*resp = json_incref(p->result);
		else
			str_copy(err, p->err, errsize);
	}
	control_pending_unref(p);
	pthread_mutex_unlock(&c->lock);
	return code;
}

struct control *
control_new(struct event_base *base, const char *path, char *err, size_t errsize)
{
	struct control *c;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	mode_t old;

	if (str_copy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path)) {
		snprintf(err, errsize, "control socket path too long: %s", path);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	pthread_mutex_init(&c->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	TAILQ_INIT(&c->calls);
	if ((c->ev_call = event_new(base, -1, 0, control_call_cb, c)) == NULL)
		fatalx("event_new failed");
	unlink(path);
	old = umask(0077);
	c->lev = evconnlistener_new_bind(base, control_accept_cb, c,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	                                 (struct sockaddr *)&sun, (int)sizeof(sun));
	umask(old);
	if (c->lev == NULL) {
		snprintf(err, errsize, "control socket %s: %s", path, strerror(errno));
		event_free(c->ev_call);
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c->path);
		free(c);
		return NULL;
	}
	return c;
}

void
control_register(struct control *c, const char *name, const char *help, control_fn fn, void *arg)
{
	c->cmds = xrealloc(c->cmds, (c->ncmds + 1) * sizeof(*c->cmds));
	c->cmds[c->ncmds].name = xstrdup(name);
	c->cmds[c->ncmds].help = xstrdup(help);
	c->cmds[c->ncmds].fn = fn;
	c->cmds[c->ncmds].arg = arg;
	c->ncmds++;
}

void
control_free(struct control *c)
{
	struct control_pending *p;

	if (c == NULL)
		return;
	while (c->clients)
		control_client_free(c->clients);
	evconnlistener_free(c->lev);
	event_free(c->ev_call);
	/* calls nobody will run: their callers see the timeout (or gave up already) */
	pthread_mutex_lock(&c->lock);
	while ((p = TAILQ_FIRST(&c->calls)) != NULL) {
		TAILQ_REMOVE(&c->calls, p, entry);
		control_pending_unref(p);
	}
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	unlink(c->path);
	for (size_t i = 0; i < c->ncmds; i++) {
		free(c->cmds[i].name);
		free(c->cmds[i].help);
	}
	free(c->cmds);
	free(c->path);
	free(c);
}
