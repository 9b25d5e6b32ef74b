/*
 * mta_session.c - one outbound SMTP connection: moat as a client,
 * delivering to a route's host.
 *
 * RFC 5321 (SMTP; 4.5.3.2 client timeouts; 4.5.2 dot-stuffing; 4.5.3.1.6
 * line length), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING), RFC 1870
 * (SIZE), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN
 * parameters passed on), RFC 3207 (STARTTLS), RFC 6125 (certificate
 * names).
 *
 * One state machine per connection; every state change goes through
 * mta_enter_state(). A session walks the route's hosts in order until one
 * greets it, then takes tasks from the engine (delivery.c): one message
 * and its recipients for this destination per transaction, several
 * transactions per connection (reuse) within the age and message caps.
 *
 * Outcomes per recipient: the RCPT reply, then the reply to the end of
 * the data for those accepted. A 421 or a dropped connection defers what
 * was in hand; if it happens before MAIL was answered on a connection that
 * had already carried mail (Exchange Online ends long sessions with
 * "4.4.1 ... Total session duration"), the task goes back to the engine
 * untried: a reconnect, not a failed attempt.
 *
 * TLS never falls back to plaintext for "required" and "verify"; for
 * "opportunistic", a failed handshake is retried once in plaintext on the
 * same host, as a sender that cares would rather deliver than not.
 *
 * The message goes out as it is in the spool (CRLF only, moat refused
 * bare CR and LF at the door), dot-stuffed for DATA, and with any line
 * longer than 998 octets folded by inserting CRLF SP (as Postfix does)
 * rather than truncated; only a raised smtp_max_line_length lets such
 * lines in.
 */
#include "delivery_internal.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../smtp/smtp_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MTA_OUTPUT_HIGH (256 * 1024) /* stop reading the body above this */
#define MTA_BODY_CHUNK  (64 * 1024)
#define MTA_LINE_MAX    998 /* octets before CRLF (RFC 5321 4.5.3.1.6) */
#define MTA_QUIT_LINGER 5000

static const char *const mta_state_names[MTA_STATE_COUNT] = {
        [MTA_CONNECT] = "CONNECT", [MTA_BANNER] = "BANNER",     [MTA_EHLO] = "EHLO",
        [MTA_HELO] = "HELO",       [MTA_STARTTLS] = "STARTTLS", [MTA_TLS] = "TLS",
        [MTA_READY] = "READY",     [MTA_MAIL] = "MAIL",         [MTA_RCPT] = "RCPT",
        [MTA_DATA] = "DATA",       [MTA_BODY] = "BODY",         [MTA_EOM] = "EOM",
        [MTA_RSET] = "RSET",       [MTA_QUIT] = "QUIT",         [MTA_CLOSED] = "CLOSED",
};

static void mta_read_cb(struct bufferevent *bev, void *arg);
static void mta_write_cb(struct bufferevent *bev, void *arg);
static void mta_event_cb(struct bufferevent *bev, short what, void *arg);
static void mta_timer_cb(evutil_socket_t fd, short what, void *arg);
static void mta_connect_host(struct mta_session *s);
static void mta_close(struct mta_session *s, const char *why);

static void mta_timer_set(struct mta_session *s, uint64_t ms);
static void mta_enter_state(struct mta_session *s, enum mta_state next);

/* READY, and offered to the engine on the next loop turn (not from inside a task). */
static void
mta_idle_soon(struct mta_session *s)
{
	mta_enter_state(s, MTA_READY);
	s->idle_pending = true;
	mta_timer_set(s, 0);
}

static void
mta_timer_set(struct mta_session *s, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(s->timer, &tv);
}

static void
mta_enter_state(struct mta_session *s, enum mta_state next)
{
	const struct config *c = delivery_config(s->d);

	log_debug("event=mta_state msid=%llu host=\"%s\" from=%s to=%s", (unsigned long long)s->sid,
	          s->host, mta_state_names[s->state], mta_state_names[next]);
	s->state = next;
	s->reply_len = 0;
	switch (next) {
	case MTA_CONNECT:
	case MTA_BANNER:
		mta_timer_set(s, c->delivery_connect_timeout);
		break;
	case MTA_EOM:
		mta_timer_set(s, c->delivery_data_timeout);
		break;
	case MTA_READY:
		s->ready_once = true;
		mta_timer_set(s, c->delivery_idle_keep);
		break;
	case MTA_QUIT:
		mta_timer_set(s, MTA_QUIT_LINGER);
		break;
	case MTA_CLOSED:
		evtimer_del(s->timer);
		break;
	default:
		mta_timer_set(s, c->delivery_command_timeout);
		break;
	}
}

__attribute__((format(printf, 2, 3))) static void
mta_send(struct mta_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* --- outcomes --- */

static void
mta_task_set(struct mta_session *s, size_t i, int code, const char *reply)
{
	struct dq_task *t = s->task;

	t->code[i] = code;
	free(t->reply[i]);
	t->reply[i] = xstrdup(reply);
}

/* Every recipient of the task not yet decided gets this outcome. */
static void
mta_task_set_rest(struct mta_session *s, int code, const char *reply)
{
	for (size_t i = 0; s->task && i < s->task->n; i++)
		if (s->task->code[i] == 0 || (s->task->code[i] / 100 == 2 && code / 100 != 2))
			mta_task_set(s, i, code, reply);
}

/* Hand the task back to the engine. */
static void
mta_task_finish(struct mta_session *s)
{
	struct dq_task *t = s->task;

	if (t == NULL)
		return;
	s->task = NULL;
	if (s->body_fd >= 0) {
		close(s->body_fd);
		s->body_fd = -1;
	}
	/* RFC 3464 Remote-MTA names the host; logs get s->host with its address */
	str_copy(t->remote, s->naddrs ? s->addrs[s->addr_i].name : "", sizeof(t->remote));
	delivery_task_done(s->d, t);
}

/* The connection ended with a task in hand. */
static void
mta_task_abandon(struct mta_session *s, const char *why)
{
	char buf[DELIVERY_REPLY_MAX];

	if (s->task == NULL)
		return;
	if (s->state == MTA_MAIL && s->transactions > 1 && !s->mail_ok) {
		/* A reused connection closed on us before this transaction began. */
		s->task->no_attempt = true;
	}
	snprintf(buf, sizeof(buf), "451 4.4.2 %s", why);
	for (size_t i = 0; i < s->task->n; i++) {
		/* only a reply to the end of data makes a recipient final */
		if (s->task->code[i] == 0 || s->task->code[i] / 100 == 2)
			mta_task_set(s, i, 451, buf);
	}
	mta_task_finish(s);
}

/* --- connecting --- */

static bool
mta_is_ip(const char *name)
{
	unsigned char b[16];

	return inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1;
}

/* This address did not work out: note why and try the next one. */
static void mta_host_failed(struct mta_session *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
mta_host_failed(struct mta_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
	log_info("event=mta_host_failed msid=%llu dest=\"%s\" host=\"%s\" reason=\"%s\"",
	         (unsigned long long)s->sid, s->dest->key, s->host, s->last_error);
	if (s->bev) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->ssl = NULL;
	s->ext = 0;
	s->addr_i++;
	s->tls_failed_here = false;
	if (s->addr_i >= s->naddrs) {
		s->addr_i = s->naddrs - 1;
		mta_close(s, s->last_error);
		return;
	}
	mta_connect_host(s);
}

static void
mta_connect_host(struct mta_session *s)
{
	const struct dest_addr *a = &s->addrs[s->addr_i];

	if (s->naddrs == 0) {
		mta_close(s, "no address to connect to");
		return;
	}
	char addr[INET6_ADDRSTRLEN] = "?";

	if (a->ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, addr,
		          sizeof(addr));
	else if (a->ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, addr,
		          sizeof(addr));
	snprintf(s->host, sizeof(s->host), "%s[%s]:%u", a->name, addr, a->port);
	s->bev = bufferevent_socket_new(s->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		mta_host_failed(s, "out of resources");
		return;
	}
	bufferevent_setcb(s->bev, mta_read_cb, mta_write_cb, mta_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 64 * 1024);
	mta_enter_state(s, MTA_CONNECT);
	if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
		mta_host_failed(s, "connect: %s", strerror(errno));
		return;
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* --- TLS --- */

static void
mta_tls_start(struct mta_session *s)
{
	const struct route *r = &s->dest->route;
	const struct dest_addr *h = &s->addrs[s->addr_i];
	SSL_CTX *ctx = delivery_tls_ctx(s->d, r);
	struct bufferevent *tls;
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		mta_host_failed(s, "TLS setup failed (tls_ca %s?)", r->tls_ca[0] ? r->tls_ca : "");
		return;
	}
	if (!mta_is_ip(h->name)) {
		char sni[sizeof(h->name)]; /* the macro takes a char * */

		str_copy(sni, h->name, sizeof(sni));
		SSL_set_tlsext_host_name(ssl, sni);
	}
	if (r->tls == ROUTE_TLS_VERIFY) {
		const char *want = r->tls_name[0] ? r->tls_name : h->name;

		/* "*.example.com": the certificate must be valid for the host, which
		 * must itself be under example.com. */
		if (strncmp(want, "*.", 2) == 0) {
			size_t hl = strlen(h->name), dl = strlen(want + 1);
			if (hl <= dl || !str_ieq(h->name + hl - dl, want + 1)) {
				SSL_free(ssl);
				mta_host_failed(s, "4.7.5 host %s is not under tls_name %s",
				                h->name, want);
				return;
			}
			want = h->name;
		}
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, want) != 1) {
			SSL_free(ssl);
			mta_host_failed(s, "4.7.5 bad tls_name %s", want);
			return;
		}
	}
	tls = bufferevent_openssl_filter_new(s->d->base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		mta_host_failed(s, "TLS setup failed");
		return;
	}
	s->bev = tls;
	s->ssl = ssl;
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_setcb(tls, mta_read_cb, mta_write_cb, mta_event_cb, s);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	mta_enter_state(s, MTA_TLS);
}

/* --- the dialogue --- */

static void
mta_parse_ehlo(struct mta_session *s)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} kws[] = {{"PIPELINING", MTA_EXT_PIPELINING},
	           {"SIZE", MTA_EXT_SIZE},
	           {"8BITMIME", MTA_EXT_8BITMIME},
	           {"SMTPUTF8", MTA_EXT_SMTPUTF8},
	           {"DSN", MTA_EXT_DSN},
	           {"CHUNKING", MTA_EXT_CHUNKING},
	           {"STARTTLS", MTA_EXT_STARTTLS}};
	const char *line = s->reply;

	s->ext = 0;
	s->size_max = 0;
	/* the first line is the greeting; each further line one keyword */
	while ((line = strchr(line, '\n')) != NULL) {
		const char *kw;
		size_t n;

		if (strnlen(++line, 5) < 5)
			break; /* "250" alone, or truncated: no keyword */
		kw = line + 4;
		n = strcspn(kw, " \n");
		for (size_t i = 0; i < nitems(kws); i++) {
			if (n == strlen(kws[i].kw) && mem_ieq(kw, kws[i].kw, n))
				s->ext |= kws[i].bit;
		}
		if (n == 4 && mem_ieq(kw, "SIZE", 4) && kw[4] == ' ') {
			uint64_t v;
			size_t m = strcspn(kw + 5, " \n");
			if (parse_u64(kw + 5, m, UINT64_MAX, &v) == 0)
				s->size_max = v;
		}
	}
}

/* After EHLO/HELO: STARTTLS if the policy wants it, else ready. */
static void
mta_after_hello(struct mta_session *s)
{
	enum route_tls tls = s->dest->route.tls;

	if (s->ssl == NULL && tls != ROUTE_TLS_NONE && !s->tls_failed_here) {
		if (s->ext & MTA_EXT_STARTTLS) {
			mta_send(s, "STARTTLS");
			mta_enter_state(s, MTA_STARTTLS);
			return;
		}
		if (tls != ROUTE_TLS_OPPORTUNISTIC) {
			mta_host_failed(s, "4.7.5 STARTTLS not offered (route tls=%s)",
			                route_tls_name(tls));
			return;
		}
	}
	mta_enter_state(s, MTA_READY);
	delivery_session_idle(s->d, s);
}

/* The one-line form of a reply, for logs, DSNs and the queue file. */
static const char *
mta_reply_line(struct mta_session *s, char *buf, size_t size)
{
	size_t o = 0;

	for (const char *p = s->reply; *p && o + 1 < size; p++) {
		if (*p == '\n') {
			/* continuation: drop its code, keep its text */
			if (o + 2 < size)
				buf[o++] = ' ';
			p += p[1] && p[2] && p[3] && (p[4] == '-' || p[4] == ' ') ? 4 : 0;
			continue;
		}
		buf[o++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
	}
	buf[o] = '\0';
	return buf;
}

static void mta_send_body(struct mta_session *s);
static void mta_send_rcpt(struct mta_session *s);

/* Send MAIL and (pipelined if offered) the RCPTs. */
static void
mta_start_transaction(struct mta_session *s)
{
	struct dq_task *t = s->task;
	const struct spool_env *e = &t->msg->env;
	char params[512] = "";
	size_t o = 0;

	if (e->smtputf8 && !(s->ext & MTA_EXT_SMTPUTF8)) {
		/* RFC 6531 3.2: refused, never downgraded by moat. */
		mta_task_set_rest(
		        s, 550,
		        "550 5.6.7 The message needs SMTPUTF8 and the downstream does not "
		        "support it");
		mta_task_finish(s);
		mta_idle_soon(s);
		return;
	}
	if (e->body_type && strcmp(e->body_type, "8BITMIME") == 0 && !(s->ext & MTA_EXT_8BITMIME)) {
		mta_task_set_rest(
		        s, 550,
		        "550 5.6.3 The message is 8-bit and the downstream does not support "
		        "8BITMIME");
		mta_task_finish(s);
		mta_idle_soon(s);
		return;
	}
	if (s->ext & MTA_EXT_SIZE)
		o += (size_t)snprintf(
		        params + o, sizeof(params) - o, " SIZE=%llu",
		        (unsigned long long)(t->msg->body_len +
		                             (t->head ? t->head_len - e->head_len : 0)));
	if (e->body_type && (s->ext & MTA_EXT_8BITMIME) && o < sizeof(params))
		o += (size_t)snprintf(params + o, sizeof(params) - o, " BODY=%s", e->body_type);
	if (e->smtputf8 && o < sizeof(params))
		o += (size_t)snprintf(params + o, sizeof(params) - o, " SMTPUTF8");
	if ((s->ext & MTA_EXT_DSN) && e->ret && o < sizeof(params))
		o += (size_t)snprintf(params + o, sizeof(params) - o, " RET=%s", e->ret);
	if ((s->ext & MTA_EXT_DSN) && e->envid && o < sizeof(params))
		snprintf(params + o, sizeof(params) - o, " ENVID=%s", e->envid);
	s->rcpt_sent = s->rcpt_replied = s->rcpt_ok = 0;
	t->dsn_passed = (s->ext & MTA_EXT_DSN) != 0;
	s->mail_ok = false;
	s->bdat_pending = 0;
	/*
	 * On a reused connection, RSET first: it proves the connection is
	 * alive and the server's state clean before a message is risked on it
	 * (a 421 there is a reconnect, not an attempt). Pipelined when offered.
	 */
	s->rset_pending = s->transactions > 0;
	if (s->rset_pending)
		mta_send(s, "RSET");
	s->transactions++;
	if (s->rset_pending && !(s->ext & MTA_EXT_PIPELINING)) {
		s->mail_params = xstrdup(params);
		mta_enter_state(s, MTA_MAIL);
		return; /* MAIL goes when the RSET is answered */
	}
	mta_send(s, "MAIL FROM:<%s>%s", e->sender, params);
	mta_enter_state(s, MTA_MAIL);
	if (!(s->ext & MTA_EXT_PIPELINING))
		return;
	for (; s->rcpt_sent < t->n;)
		mta_send_rcpt(s);
}

/* RCPT for the next recipient; NOTIFY and ORCPT go along when offered (RFC 3461). */
static void
mta_send_rcpt(struct mta_session *s)
{
	const struct spool_env *e = &s->task->msg->env;
	const struct spool_rcpt *r = &e->rcpts[s->task->rcpt[s->rcpt_sent++]];
	char rp[SMTP_ORCPT_MAX + 64] = "";
	size_t n = 0;

	if ((s->ext & MTA_EXT_DSN) && r->notify) {
		n += (size_t)snprintf(rp + n, sizeof(rp) - n, " NOTIFY=%s%s%s%s",
		                      (r->notify & SMTP_NOTIFY_NEVER) ? "NEVER," : "",
		                      (r->notify & SMTP_NOTIFY_SUCCESS) ? "SUCCESS," : "",
		                      (r->notify & SMTP_NOTIFY_FAILURE) ? "FAILURE," : "",
		                      (r->notify & SMTP_NOTIFY_DELAY) ? "DELAY," : "");
		rp[--n] = '\0'; /* the last comma */
	}
	if ((s->ext & MTA_EXT_DSN) && r->orcpt)
		snprintf(rp + n, sizeof(rp) - n, " ORCPT=%s", r->orcpt);
	mta_send(s, "RCPT TO:<%s>%s", r->addr, rp);
}

/* All RCPT replies are in: send the data, or give up on this one. */
static void
mta_rcpts_done(struct mta_session *s)
{
	if (!s->mail_ok || s->rcpt_ok == 0) {
		mta_task_finish(s);
		mta_send(s, "RSET");
		mta_enter_state(s, MTA_RSET);
		return;
	}
	if ((s->ext & MTA_EXT_CHUNKING) && (s->ext & MTA_EXT_PIPELINING)) {
		mta_enter_state(s, MTA_BODY);
		mta_send_body(s);
		return;
	}
	mta_send(s, "DATA");
	mta_enter_state(s, MTA_DATA);
}

/* Copy n octets of the message into out, dot-stuffing (DATA) and folding. */
static void
mta_transform(struct mta_session *s, const char *in, size_t n, struct evbuffer *out, bool dot)
{
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		char c = in[i];

		if (s->at_line_start && dot && c == '.') {
			evbuffer_add(out, in + run, i - run);
			evbuffer_add(out, ".", 1);
			run = i;
		}
		s->at_line_start = false;
		if (c == '\n') {
			s->at_line_start = true;
			s->line_len = 0;
			continue;
		}
		if (c == '\r')
			continue;
		if (++s->line_len > MTA_LINE_MAX) {
			/* fold: never a line the downstream must refuse, never a cut */
			evbuffer_add(out, in + run, i - run);
			evbuffer_add(out, "\r\n ", 3);
			run = i;
			s->line_len = 2;
		}
	}
	evbuffer_add(out, in + run, n - run);
}

/* Fill the output with more of the message, up to MTA_OUTPUT_HIGH. */
static void
mta_send_body(struct mta_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	bool bdat = (s->ext & MTA_EXT_CHUNKING) && (s->ext & MTA_EXT_PIPELINING);
	char *chunk = NULL;

	if (s->body_fd < 0) {
		struct spool_body b;

		if (spool_body_open(s->d->spool, s->task->msg->id, &s->task->msg->env, &b) < 0) {
			mta_task_set_rest(s, 451,
			                  "451 4.3.0 moat could not read the queued message");
			mta_close(s, "spool read error");
			return;
		}
		if (s->task->head)
			spool_body_set_head(&b, s->task->head, s->task->head_len);
		s->body_fd = b.fd;
		s->body = b;
		s->body_pos = 0;
		s->body_left = b.len;
		s->at_line_start = true;
		s->line_len = 0;
		s->body_done = false;
	}
	while (!s->body_done && evbuffer_get_length(out) < MTA_OUTPUT_HIGH) {
		size_t want = s->body_left < MTA_BODY_CHUNK ? (size_t)s->body_left : MTA_BODY_CHUNK;
		ssize_t n = 0;

		if (chunk == NULL)
			chunk = xmalloc(MTA_BODY_CHUNK);
		if (want > 0 && (n = spool_body_pread(&s->body, chunk, want, s->body_pos)) <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			free(chunk);
			mta_task_set_rest(s, 451,
			                  "451 4.3.0 moat could not read the queued message");
			mta_close(s, "spool read error");
			return;
		}
		s->body_pos += (uint64_t)n;
		s->body_left -= (uint64_t)n;
		if (bdat) {
			struct evbuffer *tmp = evbuffer_new();
			bool last = s->body_left == 0;

			mta_transform(s, chunk, (size_t)n, tmp, false);
			evbuffer_add_printf(out, "BDAT %zu%s\r\n", evbuffer_get_length(tmp),
			                    last ? " LAST" : "");
			evbuffer_add_buffer(out, tmp);
			evbuffer_free(tmp);
			s->bdat_pending++;
			if (last) {
				s->body_done = true;
				mta_enter_state(s, MTA_EOM);
			}
			continue;
		}
		mta_transform(s, chunk, (size_t)n, out, true);
		if (s->body_left == 0) {
			if (!s->at_line_start)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			s->body_done = true;
			mta_enter_state(s, MTA_EOM);
		}
	}
	free(chunk);
}

/* A whole reply has arrived: code and text in s->reply. */
static void
mta_reply(struct mta_session *s, int code)
{
	char line[DELIVERY_REPLY_MAX];

	mta_reply_line(s, line, sizeof(line));
	log_debug("event=mta_reply msid=%llu state=%s reply=\"%s\"", (unsigned long long)s->sid,
	          mta_state_names[s->state], line);
	if (code == 421 && s->state < MTA_READY) {
		/* this host does not want us now: the next one may */
		mta_host_failed(s, "%s", line);
		return;
	}
	if (code == 421 && s->state != MTA_QUIT) {
		/* The server is closing: whatever is in hand is deferred. */
		mta_task_abandon(s, line);
		mta_close(s, line);
		return;
	}
	switch (s->state) {
	case MTA_BANNER:
		if (code / 100 != 2) {
			mta_host_failed(s, "greeting: %s", line);
			return;
		}
		mta_send(s, "EHLO %s", s->d->hostname);
		mta_enter_state(s, MTA_EHLO);
		return;
	case MTA_EHLO:
		if (code / 100 != 2) {
			mta_send(s, "HELO %s", s->d->hostname);
			mta_enter_state(s, MTA_HELO);
			return;
		}
		mta_parse_ehlo(s);
		mta_after_hello(s);
		return;
	case MTA_HELO:
		if (code / 100 != 2) {
			mta_host_failed(s, "HELO: %s", line);
			return;
		}
		s->ext = 0;
		mta_after_hello(s);
		return;
	case MTA_STARTTLS:
		if (code != 220) {
			if (s->dest->route.tls == ROUTE_TLS_OPPORTUNISTIC) {
				mta_enter_state(s, MTA_READY);
				delivery_session_idle(s->d, s);
				return;
			}
			mta_host_failed(s, "4.7.5 STARTTLS refused: %s", line);
			return;
		}
		if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
			mta_host_failed(s, "4.7.5 plaintext after the 220 to STARTTLS");
			return;
		}
		mta_tls_start(s);
		return;
	case MTA_MAIL:
		if (s->rset_pending) {
			/* the answer to the RSET that went before MAIL */
			s->rset_pending = false;
			if (code / 100 != 2) {
				mta_task_abandon(s, line);
				mta_close(s, "RSET refused");
				return;
			}
			if (s->mail_params != NULL) {
				/* not pipelined: now the MAIL */
				mta_send(s, "MAIL FROM:<%s>%s", s->task->msg->env.sender,
				         s->mail_params);
				free(s->mail_params);
				s->mail_params = NULL;
				mta_enter_state(s, MTA_MAIL);
			}
			return;
		}
		if (code / 100 != 2) {
			mta_task_set_rest(s, code, line);
		} else {
			s->mail_ok = true;
		}
		if (!(s->ext & MTA_EXT_PIPELINING)) {
			if (!s->mail_ok) {
				mta_rcpts_done(s);
				return;
			}
			mta_send_rcpt(s);
		}
		mta_enter_state(s, MTA_RCPT);
		return;
	case MTA_RCPT: {
		size_t i = s->rcpt_replied++;

		if (s->mail_ok) {
			mta_task_set(s, i, code, line);
			if (code / 100 == 2) {
				s->task->code[i] = 0; /* accepted for now: the data decides */
				s->rcpt_ok++;
			}
		}
		if (s->rcpt_replied < s->task->n) {
			if (!(s->ext & MTA_EXT_PIPELINING))
				mta_send_rcpt(s);
			mta_enter_state(s, MTA_RCPT);
			return;
		}
		mta_rcpts_done(s);
		return;
	}
	case MTA_DATA:
		if (code / 100 == 2) {
			/* a 2xx is not "go ahead": nothing was sent, nothing delivered */
			mta_task_abandon(s, "protocol error: 2xx instead of 354 to DATA");
			mta_close(s, "2xx to DATA");
			return;
		}
		if (code != 354) {
			mta_task_set_rest(s, code, line);
			mta_task_finish(s);
			mta_send(s, "RSET");
			mta_enter_state(s, MTA_RSET);
			return;
		}
		mta_enter_state(s, MTA_BODY);
		mta_send_body(s);
		return;
	case MTA_BODY:
	case MTA_EOM:
		if (s->bdat_pending > 0) {
			s->bdat_pending--;
			if (code / 100 != 2) {
				/*
				 * RFC 3030: a failed chunk fails the transaction. The
				 * server still answers the chunks already sent: rather
				 * than count them through an RSET, close and reconnect.
				 */
				mta_task_set_rest(s, code, line);
				mta_task_finish(s);
				mta_close(s, "BDAT chunk refused");
				return;
			}
			if (s->bdat_pending > 0 || !s->body_done)
				return;
		} else if (!s->body_done) {
			/*
			 * DATA: a reply before the end of the data is no final reply.
			 * (One that arrives after the last octet went to the kernel
			 * cannot be told from a final reply by any client.)
			 */
			mta_task_abandon(s, "protocol error: reply before the end of the data");
			mta_close(s, "early reply");
			return;
		}
		mta_task_set_rest(s, code, line);
		s->messages++;
		mta_task_finish(s);
		mta_enter_state(s, MTA_READY);
		delivery_session_idle(s->d, s);
		return;
	case MTA_RSET:
		if (code / 100 != 2) {
			mta_close(s, "RSET refused");
			return;
		}
		mta_enter_state(s, MTA_READY);
		delivery_session_idle(s->d, s);
		return;
	case MTA_QUIT:
		mta_close(s, NULL);
		return;
	default:
		mta_close(s, "unexpected reply");
		return;
	}
}

/* --- libevent callbacks --- */

static void
mta_read_cb(struct bufferevent *bev, void *arg)
{
	struct mta_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	/* Data can be read before the connect event is seen: it is the greeting. */
	if (s->state == MTA_CONNECT)
		mta_enter_state(s, MTA_BANNER);
	while (s->state != MTA_CLOSED && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
		int code;

		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			free(line);
			mta_task_abandon(s, "malformed reply from the downstream");
			mta_close(s, "malformed reply");
			return;
		}
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (s->reply_len + len + 2 < sizeof(s->reply)) {
			if (s->reply_len)
				s->reply[s->reply_len++] = '\n';
			memcpy(s->reply + s->reply_len, line, len);
			s->reply_len += len;
			s->reply[s->reply_len] = '\0';
		}
		if (len > 3 && line[3] == '-') {
			free(line);
			continue;
		}
		free(line);
		if (s->state == MTA_READY) {
			/* nothing was asked */
			if (code == 421) {
				mta_close(s, "421 while idle");
				return;
			}
			s->reply_len = 0;
			continue;
		}
		mta_reply(s, code);
		s->reply_len = 0;
		if (s->state != MTA_CLOSED)
			s->reply[0] = '\0';
		if (s->bev != bev)
			return; /* a new connection, or TLS: what was buffered is not for it */
	}
	if (s->state != MTA_CLOSED && evbuffer_get_length(in) > DELIVERY_REPLY_MAX * 4) {
		mta_task_abandon(s, "reply line too long");
		mta_close(s, "reply line too long");
	}
}

static void
mta_write_cb(struct bufferevent *bev, void *arg)
{
	struct mta_session *s = arg;

	if (s->state == MTA_BODY || (s->state == MTA_EOM && !s->body_done)) {
		/* a block went out: the timeout is per block, not per message */
		mta_timer_set(s, delivery_config(s->d)->delivery_command_timeout);
		mta_send_body(s);
	}
}

static void
mta_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mta_session *s = arg;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == MTA_CONNECT) {
			mta_enter_state(s, MTA_BANNER);
			return;
		}
		if (s->state == MTA_TLS) {
			log_debug("event=mta_tls msid=%llu host=\"%s\" version=%s cipher=%s",
			          (unsigned long long)s->sid, s->host, SSL_get_version(s->ssl),
			          SSL_get_cipher_name(s->ssl));
			mta_send(s, "EHLO %s", s->d->hostname);
			mta_enter_state(s, MTA_EHLO);
		}
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (s->state == MTA_TLS) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		long v = s->ssl ? SSL_get_verify_result(s->ssl) : X509_V_OK;

		if (v != X509_V_OK)
			snprintf(why, sizeof(why), "certificate: %s",
			         X509_verify_cert_error_string(v));
		else if (e)
			ERR_error_string_n(e, why, sizeof(why));
		else
			str_copy(why, "connection closed during the handshake", sizeof(why));
		if (s->dest->route.tls == ROUTE_TLS_OPPORTUNISTIC) {
			/* once more on this host, in plaintext */
			log_info("event=mta_tls_failed msid=%llu host=\"%s\" reason=\"%s\" "
			         "action=plaintext",
			         (unsigned long long)s->sid, s->host, why);
			s->tls_failed_here = true;
			bufferevent_free(s->bev);
			s->bev = NULL;
			s->ssl = NULL;
			mta_connect_host(s);
			return;
		}
		mta_host_failed(s, "4.7.5 TLS handshake failed: %s", why);
		return;
	}
	snprintf(why, sizeof(why), "%s",
	         (what & BEV_EVENT_EOF) ? "connection closed by the downstream"
	                                : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (s->state == MTA_CONNECT || s->state == MTA_BANNER) {
		mta_host_failed(s, "%s", why);
		return;
	}
	mta_task_abandon(s, why);
	mta_close(s, why);
}

static void
mta_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_session *s = arg;

	switch (s->state) {
	case MTA_READY:
		if (s->idle_pending) {
			s->idle_pending = false;
			mta_timer_set(s, delivery_config(s->d)->delivery_idle_keep);
			delivery_session_idle(s->d, s);
			return;
		}
		mta_session_quit(s);
		return;
	case MTA_QUIT:
		mta_close(s, NULL);
		return;
	case MTA_CONNECT:
		if (s->connect_pending) {
			s->connect_pending = false;
			mta_connect_host(s);
			return;
		}
		mta_host_failed(s, "timeout connecting or waiting for the greeting");
		return;
	case MTA_BANNER:
		mta_host_failed(s, "timeout connecting or waiting for the greeting");
		return;
	default: {
		char why[64];
		snprintf(why, sizeof(why), "timeout in state %s", mta_state_names[s->state]);
		mta_task_abandon(s, why);
		mta_close(s, why);
		return;
	}
	}
}

/* --- lifetime --- */

static void
mta_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_session *s = arg;

	event_free(s->timer);
	free(s->mail_params);
	free(s->addrs);
	free(s);
}

/* Close now; the engine hears of it; the memory goes on the next loop turn. */
static void
mta_close(struct mta_session *s, const char *why)
{
	if (s->state == MTA_CLOSED)
		return;
	if (why)
		str_copy(s->last_error, why, sizeof(s->last_error));
	log_debug("event=mta_close msid=%llu host=\"%s\" messages=%u reason=\"%s\"",
	          (unsigned long long)s->sid, s->host, s->messages, why ? why : "done");
	mta_task_abandon(s, why ? why : "connection closed");
	mta_enter_state(s, MTA_CLOSED);
	if (s->bev)
		bufferevent_free(s->bev);
	s->bev = NULL;
	if (s->body_fd >= 0)
		close(s->body_fd);
	s->body_fd = -1;
	delivery_session_gone(s->d, s);
	event_base_once(s->d->base, -1, EV_TIMEOUT, mta_free_cb, s, NULL);
}

struct mta_session *
mta_session_new(struct delivery *d, struct dest *dest)
{
	struct mta_session *s = xcalloc(1, sizeof(*s));

	s->d = d;
	s->dest = dest;
	s->sid = ++d->next_sid;
	s->body_fd = -1;
	s->started_ms = clock_ms();
	s->timer = evtimer_new(d->base, mta_timer_cb, s);
	s->state = MTA_CONNECT;
	s->naddrs = dest->naddrs;
	s->addrs = xcalloc(dest->naddrs ? dest->naddrs : 1, sizeof(*s->addrs));
	memcpy(s->addrs, dest->addrs, dest->naddrs * sizeof(*s->addrs));
	TAILQ_INSERT_TAIL(&dest->sessions, s, entry);
	dest->nsessions++;
	d->nsessions++;
	/* connect on the next loop turn: a failure must not re-enter the engine */
	s->connect_pending = true;
	mta_timer_set(s, 0);
	return s;
}

void
mta_session_run(struct mta_session *s, struct dq_task *t)
{
	s->task = t;
	mta_start_transaction(s);
}

bool
mta_session_reusable(const struct mta_session *s)
{
	const struct config *c = delivery_config(s->d);

	return s->state == MTA_READY && s->messages < c->delivery_session_max_messages &&
	       clock_ms() - s->started_ms < c->delivery_session_max_age;
}

void
mta_session_quit(struct mta_session *s)
{
	delivery_session_leaving(s->d, s);
	if (s->state != MTA_READY) {
		mta_close(s, NULL);
		return;
	}
	mta_send(s, "QUIT");
	mta_enter_state(s, MTA_QUIT);
}

void
mta_session_abort(struct mta_session *s)
{
	mta_close(s, "moat is stopping");
}
