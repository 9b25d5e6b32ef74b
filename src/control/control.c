/*
 * control.c - the control socket (see control.h): accept, read bounded
 * lines, parse JSON with jansson, dispatch through the command table,
 * answer.
 */
#include "control.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
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

struct control {
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

static void
control_request(struct control_client *cl, const char *line, size_t len)
{
	struct control *c = cl->c;
	json_error_t jerr;
	json_t *req, *result = NULL, *resp;
	const char *name;
	char err[512] = "";
	int code = 404;

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
	if (strcmp(name, "help") == 0) {
		control_help(c, &result);
		code = 0;
	} else {
		snprintf(err, sizeof(err), "unknown command '%.100s' (try 'help')", name);
		for (size_t i = 0; i < c->ncmds; i++) {
			if (strcmp(c->cmds[i].name, name) == 0) {
				err[0] = '\0';
				code = c->cmds[i].fn(c->cmds[i].arg, req, &result, err,
				                     sizeof(err));
				break;
			}
		}
	}
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
	unlink(path);
	old = umask(0077);
	c->lev = evconnlistener_new_bind(base, control_accept_cb, c,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	                                 (struct sockaddr *)&sun, (int)sizeof(sun));
	umask(old);
	if (c->lev == NULL) {
		snprintf(err, errsize, "control socket %s: %s", path, strerror(errno));
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
	if (c == NULL)
		return;
	while (c->clients)
		control_client_free(c->clients);
	evconnlistener_free(c->lev);
	unlink(c->path);
	for (size_t i = 0; i < c->ncmds; i++) {
		free(c->cmds[i].name);
		free(c->cmds[i].help);
	}
	free(c->cmds);
	free(c->path);
	free(c);
}
