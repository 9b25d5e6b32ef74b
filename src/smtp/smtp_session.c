/*
 * smtp_session.c - one inbound SMTP session: a state machine driven by a
 * command table.
 *
 * RFC 5321 (SMTP), RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152
 * (8BITMIME), RFC 3030 (CHUNKING/BDAT), RFC 6531 (SMTPUTF8), RFC 2034 and
 * RFC 3463 (enhanced status codes), RFC 3207 (STARTTLS), RFC 3461 (DSN
 * parameters), RFC 3848 (Received "with" keywords).
 *
 * Design notes.
 * - The state changes only in smtp_enter_state(), which can trace every
 *   transition ("A -> B") at debug level.
 * - A session is reference counted: every libevent callback holds a
 *   reference while it runs, and smtp_session_close() only drops the
 *   session's own reference, so no handler ever frees the session under
 *   itself. Close is always safe to call; code after it must check
 *   s->closed and touch nothing else.
 * - Input is bounded: the bufferevent stops reading at SMTP_INPUT_MAX
 *   buffered octets; a command line over 512 octets (1138 for MAIL and
 *   RCPT, whose DSN parameters need the room) is refused without
 *   being stored; DATA and BDAT content streams through the data scanner
 *   into the spool; replies are not produced while more than
 *   SMTP_OUTPUT_MAX octets of them wait for a client that does not read.
 * - Message content is only ever ended by CRLF.CRLF (DATA) or by the BDAT
 *   count; bare CR and LF are refused at the end of the message (550
 *   5.5.2), see smtp_data.h and docs/SMTP.md.
 * - The 250 after DATA is sent from the spool's commit callback, i.e. only
 *   once the message is on disk.
 */
#include "smtp_internal.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/stats.h"
#include "../common/util.h"
#include "../policy/policy.h"
#include "../scan/scan_pool.h"
#include "../store/store_writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SMTP_INPUT_MAX    (64 * 1024)
#define SMTP_OUTPUT_MAX   (64 * 1024)
#define SMTP_CLOSE_LINGER 10000 /* ms to flush a last reply */
#define SMTP_REPLY_MAX    512
/*
 * Envelope octets one transaction may hold (recipient addresses and their
 * ORCPTs): 1000 ordinary recipients fit many times over, 1000 maximal ones
 * (821 octets each) do not. Over it: 452 4.5.3, like too many recipients.
 */
#define SMTP_ENVELOPE_MAX (128 * 1024)

static const char *const smtp_state_names[SMTP_S_COUNT] = {
        [SMTP_S_CONNECTED] = "CONNECTED", [SMTP_S_GREETED] = "GREETED", [SMTP_S_READY] = "READY",
        [SMTP_S_MAIL] = "MAIL",           [SMTP_S_RCPT] = "RCPT",       [SMTP_S_DATA] = "DATA",
        [SMTP_S_CHUNK] = "CHUNK",         [SMTP_S_BDAT] = "BDAT",       [SMTP_S_COMMIT] = "COMMIT",
        [SMTP_S_STARTTLS] = "STARTTLS",   [SMTP_S_CLOSING] = "CLOSING",
};

#define ST(x) (1u << SMTP_S_##x)
/* States in which the session waits for a command. */
#define SMTP_COMMAND_STATES (ST(GREETED) | ST(READY) | ST(MAIL) | ST(RCPT) | ST(BDAT))

struct smtp_command {
	enum smtp_verb verb;
	unsigned states; /* where the command is allowed (else 503) */
	bool ends_group; /* RFC 2920 3.1 / RFC 3207 4: nothing may follow it unseen */
	void (*proceed)(struct smtp_session *s, const struct smtp_cmd *cmd);
};

static void smtp_read_cb(struct bufferevent *bev, void *arg);
static void smtp_write_cb(struct bufferevent *bev, void *arg);
static void smtp_event_cb(struct bufferevent *bev, short what, void *arg);
static void smtp_timer_cb(evutil_socket_t fd, short what, void *arg);
static void smtp_input(struct smtp_session *s);
static void smtp_session_eof(struct smtp_session *s);

bool
smtp_state_in_transaction(enum smtp_state st)
{
	return (ST(MAIL) | ST(RCPT) | ST(DATA) | ST(CHUNK) | ST(BDAT) | ST(COMMIT)) & (1u << st);
}

static void
smtp_hold(struct smtp_session *s)
{
	s->refs++;
}

static void smtp_track_free(struct smtp_track *tr);

static void
smtp_release(struct smtp_session *s)
{
	if (--s->refs > 0)
		return;
	smtp_track_free(s->track);
	spool_env_clear(&s->env);
	config_unref(s->cfg);
	policy_unref(s->pol);
	free(s);
}

static void
smtp_timer_set(struct smtp_session *s, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(s->timer, &tv);
}

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state next)
{
	log_debug("event=state sid=%llu from=%s to=%s", (unsigned long long)s->sid,
	          smtp_state_names[s->state], smtp_state_names[next]);
	s->state = next;
	switch (next) {
	case SMTP_S_CONNECTED:
		smtp_timer_set(s, s->cfg->smtp_greeting_delay);
		break;
	case SMTP_S_DATA:
	case SMTP_S_CHUNK:
		smtp_timer_set(s, s->cfg->smtp_data_timeout);
		break;
	case SMTP_S_COMMIT:
		evtimer_del(s->timer);
		break;
	case SMTP_S_CLOSING:
		smtp_timer_set(s, SMTP_CLOSE_LINGER);
		break;
	default:
		smtp_timer_set(s, s->cfg->smtp_command_timeout);
		break;
	}
}

__attribute__((format(printf, 2, 3))) static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	if (line[0] == '4' || line[0] == '5')
		s->errors++;
	log_debug("event=reply sid=%llu reply=\"%.*s\"", (unsigned long long)s->sid, n, line);
	line[n++] = '\r';
	line[n++] = '\n';
	bufferevent_write(s->bev, line, (size_t)n);
}

/* Send a last reply, then close once it is written (or after SMTP_CLOSE_LINGER). */
static void
smtp_close_after(struct smtp_session *s, const char *reply, const char *reason)
{
	if (s->closed || s->state == SMTP_S_CLOSING)
		return;
	if (reply)
		smtp_reply(s, "%s", reply);
	log_debug("event=closing sid=%llu reason=\"%s\"", (unsigned long long)s->sid, reason);
	s->close_reason = reason;
	bufferevent_disable(s->bev, EV_READ);
	if (s->msg && !s->committing && !s->scanning) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
	}
	smtp_enter_state(s, SMTP_S_CLOSING);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_session_close(s, reason);
}

static void
smtp_tx_reset(struct smtp_session *s)
{
	if (s->msg) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
	}
	spool_env_clear(&s->env);
	s->env_bytes = 0;
	memset(&s->mp, 0, sizeof(s->mp));
	s->too_big = false;
	s->chunking = false;
	s->chunk_left = 0;
	s->chunk_discard = false;
	s->chunk_error = NULL;
	s->refused_id[0] = '\0';
}

/* After a transaction or a command: the state to wait in. */
static enum smtp_state
smtp_idle_state(const struct smtp_session *s)
{
	return s->helo[0] ? SMTP_S_READY : SMTP_S_GREETED;
}

static void
smtp_tx_end(struct smtp_session *s)
{
	smtp_tx_reset(s);
	smtp_enter_state(s, smtp_idle_state(s));
}

static const char *
smtp_protocol(const struct smtp_session *s)
{
	static const char *const names[2][2][2] = {
	        /* [utf8][esmtp][tls] */
	        {{"SMTP", "SMTPS"}, {"ESMTP", "ESMTPS"}},
	        {{"UTF8SMTP", "UTF8SMTPS"}, {"UTF8SMTP", "UTF8SMTPS"}},
	};
	return names[s->mp.smtputf8][s->esmtp][s->tls_done];
}

static void smtp_session_eof(struct smtp_session *s);

/* --- the message: Received header, content, end-of-data checks --- */

static void
smtp_emit(void *arg, const char *p, size_t n)
{
	struct smtp_session *s = arg;

	if (s->too_big || s->msg == NULL)
		return;
	/* The client's octets (RFC 1870), not counting moat's Received header. */
	if (s->scan.size > s->cfg->smtp_max_message_size) {
		s->too_big = true;
		return;
	}
	/* An error is sticky in the message and reported at the end. */
	spool_msg_write(s->msg, p, n);
}

static void
smtp_message_begin(struct smtp_session *s, enum smtp_data_mode mode)
{
	char hdr[2048], date[64], tls[160] = "", forclause[MAILADDR_FORMAT_MAX + 16] = "";
	time_t now = time(NULL);
	struct tm tm;
	int n;

	s->msg = spool_msg_new(s->srv->spool);
	smtp_data_init(&s->scan, mode, (size_t)s->cfg->smtp_max_header_size,
	               (size_t)s->cfg->smtp_max_line_length);
	s->too_big = false;
	s->data_start_ms = clock_ms();
	s->data_wire = 0;
	s->env.received_at = now;

	/* RFC 5321 4.4; everything here is validated or produced by moat. */
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (s->ssl)
		snprintf(tls, sizeof(tls), "\r\n\t(using %s with cipher %s)",
		         SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
	if (s->env.nrcpts == 1)
		snprintf(forclause, sizeof(forclause), "\r\n\tfor <%s>", s->env.rcpts[0].addr);
	n = snprintf(hdr, sizeof(hdr),
	             "Received: from %s (%s%s%s)\r\n"
	             "\tby %s (moat) with %s id %s%s%s;\r\n"
	             "\t%s\r\n",
	             s->helo[0] ? s->helo : "unknown", strchr(s->addr, ':') ? "[IPv6:" : "[",
	             s->addr, "]", s->cfg->hostname, smtp_protocol(s), spool_msg_id(s->msg), tls,
	             forclause, date);
	/* Every part is bounded (hostname and HELO 255, address, TLS names). */
	if (n < 0 || (size_t)n >= sizeof(hdr))
		fatalx("Received header does not fit in %zu octets", sizeof(hdr));
	spool_msg_write(s->msg, hdr, (size_t)n);
}

/* The reply refusing a finished message, or NULL when it may be committed. */
static const char *
smtp_message_check(struct smtp_session *s, char *buf, size_t bufsize)
{
	const struct smtp_data_scan *ds = &s->scan;

	if (ds->flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF))
		return "550 5.5.2 Message refused: bare CR or LF in message data; lines must end "
		       "in CRLF (RFC 5321 2.3.8)";
	if (ds->flags & SMTP_DATA_LONG_LINE) {
		snprintf(buf, bufsize,
		         "500 5.5.2 Message refused: line longer than %llu octets "
		         "(RFC 5321 4.5.3.1.6)",
		         (unsigned long long)s->cfg->smtp_max_line_length);
		return buf;
	}
	if (s->too_big)
		return "552 5.3.4 Message size exceeds fixed maximum message size";
	if (ds->flags & SMTP_DATA_HEADER_TOO_BIG) {
		snprintf(buf, bufsize, "552 5.3.4 Message header exceeds %llu octets",
		         (unsigned long long)s->cfg->smtp_max_header_size);
		return buf;
	}
	if (ds->received > s->cfg->smtp_max_received) {
		snprintf(buf, bufsize, "554 5.4.6 Too many hops (%u Received headers): mail loop",
		         ds->received);
		return buf;
	}
	return NULL;
}

/* --- tracking (src/store/store_writer.c: written off the mail path) --- */

static void
smtp_track_free(struct smtp_track *tr)
{
	if (tr == NULL)
		return;
	free(tr->symbols);
	free(tr->reason);
	free(tr->subject);
	free(tr->from);
	free(tr->message_id);
	free(tr);
}

/* The scan's outcome, for the store. */
static struct smtp_track *
smtp_track_new(const struct scan_result *r)
{
	static const int verdicts[] = {
	        [SCAN_DELIVER] = STORE_V_DELIVER,
	        [SCAN_QUARANTINE] = STORE_V_QUARANTINE,
	        [SCAN_REJECT] = STORE_V_REJECT,
	        [SCAN_TEMPFAIL] = STORE_V_TEMPFAIL,
	};
	struct smtp_track *tr = xcalloc(1, sizeof(*tr));
	char syms[2048];

	scan_result_symbols(r, syms, sizeof(syms));
	tr->verdict = verdicts[r->verdict];
	tr->score = r->score;
	tr->symbols = xstrdup(syms);
	tr->reason = xstrdup(r->reason);
	tr->subject = xstrdup(r->subject ? r->subject : "");
	tr->from = xstrdup(r->from ? r->from : "");
	tr->message_id = xstrdup(r->message_id ? r->message_id : "");
	return tr;
}

/*
 * Tell the store about a message: its envelope, the scan's outcome (tr,
 * or not scanned), and its quarantine record when it is held; refused
 * (reply not NULL: moat's 5xx or 4xx to the client), every recipient's
 * outcome is that reply.
 */
static void
smtp_track(struct smtp_session *s, const struct spool_env *env, uint64_t size,
           const struct smtp_track *tr, bool quarantined, const char *reply)
{
	const char **rcpts;
	struct store_track_in in = {0};
	struct store_quar_in q = {0};
	const char *at;

	if (s->srv->store == NULL)
		return;
	rcpts = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof(*rcpts));
	for (size_t i = 0; i < env->nrcpts; i++)
		rcpts[i] = env->rcpts[i].addr;
	in.id = env->id;
	in.received_ms = env->received_at * 1000;
	in.client_ip = env->client_addr;
	in.helo = env->helo;
	in.sender = env->sender;
	in.rcpts = rcpts;
	in.nrcpts = env->nrcpts;
	in.subject = tr ? tr->subject : "";
	in.from = tr ? tr->from : "";
	in.message_id = tr ? tr->message_id : "";
	in.size = size;
	/* the domain it is held for: its first recipient's (one quarantine entry per message) */
	if (quarantined && env->nrcpts > 0 && (at = strrchr(env->rcpts[0].addr, '@')) != NULL)
		q.domain = at + 1;
	store_writer_message(s->srv->store, &in,
	                     tr ? (enum store_verdict)tr->verdict : STORE_V_NONE,
	                     tr ? tr->score : 0, tr ? tr->symbols : "", tr ? tr->reason : "",
	                     q.domain ? &q : NULL);
	for (size_t i = 0; reply != NULL && i < env->nrcpts; i++)
		store_writer_delivery(s->srv->store, env->id, env->rcpts[i].addr,
		                      reply[0] == '5' ? STORE_OUT_REJECTED : STORE_OUT_DEFERRED,
		                      reply, wall_ms());
	free(rcpts);
}

/*
 * A recipient refused at RCPT, for tracking: the transaction's refusals
 * share one record under an id of their own (no message exists yet).
 */
static void
smtp_track_refused(struct smtp_session *s, const char *rcpt, const char *reply)
{
	int64_t now = wall_ms();

	if (s->srv->store == NULL)
		return;
	if (s->refused_id[0] == '\0') {
		struct store_track_in in = {0};

		spool_new_id(s->srv->spool, s->refused_id);
		in.id = s->refused_id;
		in.received_ms = now;
		in.client_ip = s->addr;
		in.helo = s->helo;
		in.sender = s->env.sender ? s->env.sender : "";
		in.subject = in.from = in.message_id = "";
		store_writer_message(s->srv->store, &in, STORE_V_NONE, 0, "", "", NULL);
	}
	store_writer_delivery(s->srv->store, s->refused_id, rcpt, STORE_OUT_REJECTED, reply, now);
}

/* The transaction is over (answered): take the next command, or close after EOF. */
static void
smtp_tx_next(struct smtp_session *s)
{
	smtp_tx_end(s);
	if (s->peer_eof) {
		smtp_session_eof(s);
	} else {
		bufferevent_enable(s->bev, EV_READ);
		smtp_input(s);
	}
}

static void
smtp_commit_cb(void *arg, struct spool_msg *m, int err)
{
	struct smtp_session *s = arg;
	const struct spool_env *env = spool_msg_env(m);
	char fromq[256];

	s->msg = NULL;
	s->committing = false;
	if (err && s->track) { /* nothing was kept: the client was told to try again */
		free(s->track->reason);
		s->track->reason = xasprintf("spool error: %s", strerror(err));
		s->track->verdict = STORE_V_TEMPFAIL;
		smtp_track(s, env, spool_msg_size(m), s->track, false,
		           err == ENOSPC || err == EDQUOT ? "452 4.3.1 Insufficient system storage"
		                                          : "451 4.3.0 Local error writing the "
		                                            "message; try again later");
	} else if (!err) {
		/* durable: tracked even if the client is gone meanwhile */
		smtp_track(s, env, spool_msg_size(m), s->track, spool_msg_quarantined(m), NULL);
	}
	smtp_track_free(s->track);
	s->track = NULL;
	if (!s->closed) {
		if (err) {
			if (err == ENOSPC || err == EDQUOT)
				smtp_reply(s, "452 4.3.1 Insufficient system storage");
			else
				smtp_reply(s,
				           "451 4.3.0 Local error writing the message; try again "
				           "later");
			log_error("event=spool_error sid=%llu id=%s reason=\"%s\"",
			          (unsigned long long)s->sid, spool_msg_id(m), strerror(err));
		} else {
			smtp_reply(s, "250 2.0.0 Ok: queued as %s", spool_msg_id(m));
			s->messages++;
			stats_inc(smtp_messages_accepted);
			log_info("event=accepted sid=%llu id=%s client=%s from=<%s> nrcpt=%zu "
			         "size=%llu proto=%s",
			         (unsigned long long)s->sid, spool_msg_id(m), s->addr,
			         log_quote(fromq, sizeof(fromq), env->sender, strlen(env->sender)),
			         env->nrcpts, (unsigned long long)spool_msg_size(m),
			         smtp_protocol(s));
		}
		smtp_tx_next(s);
	}
	smtp_release(s); /* the reference taken for the commit */
}

static void
smtp_commit(struct smtp_session *s)
{
	smtp_hold(s);
	s->committing = true;
	smtp_enter_state(s, SMTP_S_COMMIT);
	spool_msg_commit(s->msg, smtp_commit_cb, s);
}

/* A reply text from the scan: one line of printable ASCII. */
static void
smtp_reply_text(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = ' ';
}

static void
smtp_scan_done(void *arg, struct scan_job *job)
{
	struct smtp_session *s = arg;
	struct scan_result *r = scan_job_result(job);
	const char *id = spool_msg_id(s->msg);
	char sq[1024], reply[512];

	s->scanning = false;
	free((void *)(uintptr_t)s->scan_in.rcpts); /* allocated by smtp_scan_start() */
	memset(&s->scan_in, 0, sizeof(s->scan_in));
	if (s->closed) {
		/* the connection is gone and had no reply: nothing is kept */
		spool_msg_abort(s->msg);
		s->msg = NULL;
		goto out;
	}
	/*
	 * A client that only closed its sending side (peer_eof) may still read
	 * its reply, as after any commit: answer it. One that closed outright
	 * before its reply broke RFC 5321's 10-minute wait for it (4.5.3.2.6),
	 * longer than any scan_timeout: it may get the message twice (RFC
	 * 1047), like from any MTA.
	 */
	smtp_reply_text(r->reason);
	log_info("event=scanned sid=%llu id=%s client=%s verdict=%s score=%.2f cpu_us=%llu "
	         "symbols=%s",
	         (unsigned long long)s->sid, id, s->addr, scan_verdict_str(r->verdict), r->score,
	         (unsigned long long)scan_job_cpu_us(job),
	         log_quote(sq, sizeof(sq), r->summary, strlen(r->summary)));
	switch (r->verdict) {
	case SCAN_TEMPFAIL:
	case SCAN_REJECT:
		if (r->verdict == SCAN_TEMPFAIL) {
			stats_inc(scan_tempfailed);
			snprintf(reply, sizeof(reply),
			         "451 4.7.1 Message not scanned (%s); try again later", r->reason);
		} else {
			stats_inc(scan_rejected);
			snprintf(reply, sizeof(reply), "550 5.7.1 Message rejected: %s (ref %s)",
			         r->reason, id);
		}
		s->track = smtp_track_new(r);
		smtp_track(s, spool_msg_env(s->msg), spool_msg_size(s->msg), s->track, false,
		           reply);
		smtp_track_free(s->track);
		s->track = NULL;
		smtp_reply(s, "%s", reply);
		smtp_tx_next(s);
		break;
	case SCAN_QUARANTINE:
	case SCAN_DELIVER:
		if (r->verdict == SCAN_QUARANTINE)
			stats_inc(scan_quarantined);
		else
			stats_inc(scan_delivered);
		spool_msg_set_scan(s->msg, r->head, r->head_len, r->head_skip, r->summary,
		                   r->verdict == SCAN_QUARANTINE);
		s->track = smtp_track_new(r); /* told to the store once the commit is durable */
		r->head = NULL;
		r->summary = NULL;
		smtp_commit(s);
		break;
	}
out:
	scan_job_free(job);
	smtp_release(s); /* the reference taken for the scan */
}

/* Hand the finished message to a scan worker; the reply waits for the verdict. */
static void
smtp_scan_start(struct smtp_session *s)
{
	const struct spool_env *env = spool_msg_env(s->msg);
	struct scan_input *in = &s->scan_in;
	const char **rcpts;

	memset(in, 0, sizeof(*in));
	if ((in->msg = spool_msg_map(s->msg, &in->len)) == NULL) {
		log_error("event=spool_error sid=%llu id=%s reason=\"%s\"",
		          (unsigned long long)s->sid, spool_msg_id(s->msg), strerror(errno));
		smtp_reply(s, "451 4.3.0 Local error reading the message; try again later");
		smtp_tx_end(s);
		return;
	}
	rcpts = xcalloc(env->nrcpts, sizeof(*rcpts));
	for (size_t i = 0; i < env->nrcpts; i++)
		rcpts[i] = env->rcpts[i].addr;
	in->rcpts = rcpts;
	in->nrcpts = env->nrcpts;
	in->queue_id = spool_msg_id(s->msg);
	in->client_ip = env->client_addr;
	in->helo = env->helo;
	in->sender = env->sender;
	in->tls = s->ssl != NULL;
	in->deadline_ms = (int64_t)(clock_ms() + s->cfg->scan_timeout);
	smtp_hold(s);
	s->scanning = true;
	smtp_enter_state(s, SMTP_S_COMMIT);
	scan_pool_submit(s->srv->scan, s->cfg, s->pol, in, smtp_scan_done, s);
}

/* End of DATA or of the last BDAT chunk. */
static void
smtp_message_end(struct smtp_session *s)
{
	char buf[SMTP_REPLY_MAX];
	const char *refuse = smtp_message_check(s, buf, sizeof(buf));

	if (refuse) {
		log_info("event=refused sid=%llu client=%s size=%llu reason=\"%s\"",
		         (unsigned long long)s->sid, s->addr, (unsigned long long)s->scan.size,
		         refuse + 10);
		smtp_reply(s, "%s", refuse);
		smtp_tx_end(s);
		stats_inc(smtp_messages_refused);
		return;
	}
	s->env.client_addr = xstrdup(s->addr);
	s->env.helo = xstrdup(s->helo);
	s->env.protocol = xstrdup(smtp_protocol(s));
	/* 8-bit octets are labelled as such downstream, declared or not (RFC 6152) */
	if (s->mp.body == SMTP_BODY_8BITMIME || (s->scan.flags & SMTP_DATA_8BIT))
		s->env.body_type = xstrdup("8BITMIME");
	else if (s->mp.body == SMTP_BODY_7BIT)
		s->env.body_type = xstrdup("7BIT");
	s->env.smtputf8 = s->mp.smtputf8;
	if (s->mp.ret != SMTP_RET_UNSPEC)
		s->env.ret = xstrdup(s->mp.ret == SMTP_RET_FULL ? "FULL" : "HDRS");
	if (s->mp.has_envid)
		s->env.envid = xstrdup(s->mp.envid);
	spool_msg_set_env(s->msg, &s->env);
	if (s->srv->scan && s->cfg->scan) {
		smtp_scan_start(s);
		return;
	}
	smtp_commit(s);
}

/* --- input --- */

static void
smtp_rate_check(struct smtp_session *s, size_t n)
{
	uint64_t elapsed;

	s->data_wire += n;
	if (n)
		smtp_timer_set(s, s->cfg->smtp_data_timeout);
	if (s->cfg->smtp_min_data_rate == 0)
		return;
	elapsed = clock_ms() - s->data_start_ms;
	if (elapsed > s->cfg->smtp_min_data_rate_after && elapsed > 0 &&
	    s->data_wire * 1000 / elapsed < s->cfg->smtp_min_data_rate)
		smtp_close_after(s, "421 4.4.2 Data rate too low, closing connection",
		                 "min data rate");
}

/* Feed the scanner from the input buffer, at most max octets; returns octets used. */
static size_t
smtp_feed(struct smtp_session *s, struct evbuffer *in, size_t max, bool *done)
{
	struct evbuffer_iovec v[16];
	size_t used = 0;

	*done = false;
	/* evbuffer_peek() shows at most nitems(v) chunks: go round until done. */
	while (used < max && !*done) {
		size_t round = 0;
		int n = evbuffer_peek(in, (ev_ssize_t)(max - used), NULL, v, (int)nitems(v));

		if (n > (int)nitems(v))
			n = (int)nitems(v);
		for (int i = 0; i < n && !*done && used + round < max; i++) {
			size_t len = v[i].iov_len;
			if (len > max - used - round)
				len = max - used - round;
			round += smtp_data_feed(&s->scan, v[i].iov_base, len, smtp_emit, s, done);
		}
		evbuffer_drain(in, round);
		used += round;
		if (round == 0)
			break;
	}
	return used;
}

static void
smtp_input_data(struct smtp_session *s, struct evbuffer *in)
{
	bool done;
	size_t used = smtp_feed(s, in, evbuffer_get_length(in), &done);

	smtp_rate_check(s, used);
	if (s->closed || s->state == SMTP_S_CLOSING)
		return;
	if (!done)
		return;
	if (!s->esmtp && evbuffer_get_length(in) > 0) {
		smtp_close_after(s, "554 5.5.0 Improper use of SMTP command pipelining",
		                 "pipelining without PIPELINING");
		return;
	}
	smtp_message_end(s);
}

static void
smtp_chunk_end(struct smtp_session *s)
{
	char buf[SMTP_REPLY_MAX];
	const char *refuse;

	if (s->chunk_discard) {
		/* Nothing of this chunk counted: back to where the BDAT found us. */
		smtp_reply(s, "%s", s->chunk_error);
		smtp_enter_state(s, s->chunk_return);
		return;
	}
	if (s->chunk_last) {
		smtp_data_finish(&s->scan);
		smtp_message_end(s);
		return;
	}
	/* Refuse as early as possible; the client must not send more chunks. */
	if ((refuse = smtp_message_check(s, buf, sizeof(buf))) != NULL) {
		smtp_reply(s, "%s", refuse);
		smtp_tx_end(s);
		return;
	}
	smtp_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->scan.size);
	smtp_enter_state(s, SMTP_S_BDAT);
}

static void
smtp_input_chunk(struct smtp_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);
	size_t n = avail < s->chunk_left ? avail : (size_t)s->chunk_left;
	bool done;

	if (s->chunk_discard)
		evbuffer_drain(in, n);
	else
		n = smtp_feed(s, in, n, &done);
	s->chunk_left -= n;
	smtp_rate_check(s, n);
	if (s->closed || s->state == SMTP_S_CLOSING)
		return;
	if (s->chunk_left == 0)
		smtp_chunk_end(s);
}

static const struct smtp_command *smtp_command_find(enum smtp_verb verb);

static const char *
smtp_bad_sequence(const struct smtp_session *s, enum smtp_verb verb)
{
	if (s->state == SMTP_S_GREETED)
		return "503 5.5.1 Send EHLO or HELO first";
	if (s->state == SMTP_S_BDAT)
		return "503 5.5.1 Only BDAT, RSET, EHLO, NOOP or QUIT during a BDAT transfer";
	switch (verb) {
	case SMTP_VERB_MAIL:
		return "503 5.5.1 Nested MAIL command";
	case SMTP_VERB_RCPT:
		return "503 5.5.1 Need MAIL before RCPT";
	case SMTP_VERB_DATA:
		return s->state == SMTP_S_MAIL ? "503 5.5.1 Need RCPT before DATA"
		                               : "503 5.5.1 Need MAIL before DATA";
	case SMTP_VERB_STARTTLS:
		return "503 5.5.1 STARTTLS only outside a mail transaction";
	default:
		return "503 5.5.1 Bad sequence of commands";
	}
}

/* Handle one command line (without CRLF); more: input follows it unseen. */
static void
smtp_command(struct smtp_session *s, const char *line, size_t len, bool more)
{
	const struct smtp_command *c;
	struct smtp_cmd cmd;
	char q[128];

	switch (smtp_cmd_parse(line, len, &cmd)) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_EMPTY:
	case SMTP_PARSE_BADCHAR:
		smtp_reply(s, "500 5.5.2 Syntax error, command unrecognized");
		return;
	case SMTP_PARSE_SYNTAX:
		smtp_reply(s, "501 5.5.4 Syntax error in parameters or arguments");
		return;
	}
	log_debug("event=command sid=%llu line=%s", (unsigned long long)s->sid,
	          log_quote(q, sizeof(q), line, len));
	if (cmd.verb == SMTP_VERB_HTTP) {
		log_info("event=proxy_probe sid=%llu client=%s verb=%s", (unsigned long long)s->sid,
		         s->addr, log_quote(q, sizeof(q), cmd.verb_text, cmd.verb_len));
		smtp_session_close(s, "HTTP request");
		return;
	}
	if ((c = smtp_command_find(cmd.verb)) == NULL) {
		smtp_reply(s, "500 5.5.1 Command unrecognized");
		return;
	}
	/* RFC 2920: without PIPELINING offered, or after a command that must end a
	 * group, nothing may be waiting. BDAT's own octets follow BDAT legitimately. */
	if (more && cmd.verb != SMTP_VERB_BDAT && cmd.verb != SMTP_VERB_QUIT &&
	    (!s->esmtp || c->ends_group)) {
		if (cmd.verb != SMTP_VERB_STARTTLS) {
			log_info("event=pipelining_violation sid=%llu client=%s",
			         (unsigned long long)s->sid, s->addr);
			smtp_close_after(s, "554 5.5.0 Improper use of SMTP command pipelining",
			                 "pipelining violation");
			return;
		}
		/* STARTTLS: the plaintext after it is dropped below (CVE-2011-0411). */
	}
	if (!(c->states & (1u << s->state)) && cmd.verb != SMTP_VERB_BDAT) {
		smtp_reply(s, "%s", smtp_bad_sequence(s, cmd.verb));
		return;
	}
	c->proceed(s, &cmd);
}

/* Read and handle one command line; false when no complete line is there. */
static bool
smtp_input_line(struct smtp_session *s, struct evbuffer *in)
{
	char line[SMTP_CMD_LINE_PARAMS_MAX];
	struct evbuffer_ptr eol;
	size_t eol_len = 0, avail = evbuffer_get_length(in), len;

	/* RFC 5321 2.3.8: only CRLF ends a line; a bare LF is refused below. */
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (avail < SMTP_CMD_LINE_PARAMS_MAX)
			return false;
		/* Too long and no end in sight: drop it up to its end, reply once. */
		evbuffer_drain(in, avail);
		if (!s->skip_line) {
			s->skip_line = true;
			smtp_reply(s, "500 5.5.2 Line too long");
		}
		return false;
	}
	len = (size_t)eol.pos;
	if (len > 0 && !s->skip_line) {
		char cr;
		struct evbuffer_ptr before;

		evbuffer_ptr_set(in, &before, len - 1, EVBUFFER_PTR_SET);
		if (evbuffer_copyout_from(in, &before, &cr, 1) == 1 && cr == '\r') {
			len--;
			eol_len++;
		} else {
			evbuffer_drain(in, len + eol_len);
			smtp_reply(s, "500 5.5.2 Bare LF in command; SMTP lines end in CRLF");
			return true;
		}
	} else if (len == 0 && !s->skip_line) {
		evbuffer_drain(in, eol_len);
		smtp_reply(s, "500 5.5.2 Bare LF in command; SMTP lines end in CRLF");
		return true;
	}
	if (s->skip_line) {
		evbuffer_drain(in, len + eol_len);
		s->skip_line = false;
		return true;
	}
	if (len + 2 > SMTP_CMD_LINE_PARAMS_MAX) {
		evbuffer_drain(in, len + eol_len);
		smtp_reply(s, "500 5.5.2 Line too long");
		return true;
	}
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, eol_len);
	/* Only MAIL and RCPT get the room their parameters need. */
	if (len + 2 > SMTP_CMD_LINE_MAX &&
	    !(len >= 4 && (mem_ieq(line, "MAIL", 4) || mem_ieq(line, "RCPT", 4)))) {
		smtp_reply(s, "500 5.5.2 Line too long");
		return true;
	}
	smtp_command(s, line, len, evbuffer_get_length(in) > 0);
	if (!s->closed && s->state != SMTP_S_CLOSING && s->state != SMTP_S_STARTTLS &&
	    (1u << s->state) & SMTP_COMMAND_STATES)
		smtp_timer_set(s, s->cfg->smtp_command_timeout);
	return true;
}

/* Process buffered input as far as the state allows. */
static void
smtp_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->closed) {
		size_t avail = evbuffer_get_length(in);

		if (s->errors >= s->cfg->smtp_max_errors) {
			smtp_close_after(s, "421 4.7.0 Too many errors, closing connection",
			                 "error limit");
			return;
		}
		if (s->quit_after_reply && !smtp_state_in_transaction(s->state) &&
		    s->state != SMTP_S_CLOSING) {
			smtp_close_after(s, "421 4.3.2 Service shutting down", "shutdown");
			return;
		}
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SMTP_OUTPUT_MAX) {
			/* The client does not read its replies: wait for it (write cb). */
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case SMTP_S_CONNECTED:
			if (avail == 0)
				return;
			log_info("event=early_talker sid=%llu client=%s",
			         (unsigned long long)s->sid, s->addr);
			smtp_close_after(s,
			                 "554 5.5.0 SMTP protocol violation: talked before "
			                 "the greeting",
			                 "early talker");
			return;
		case SMTP_S_COMMIT:
		case SMTP_S_STARTTLS:
		case SMTP_S_CLOSING:
			return;
		case SMTP_S_DATA:
			if (avail == 0)
				return;
			smtp_input_data(s, in);
			if (s->state == SMTP_S_DATA)
				return; /* everything consumed, no terminator yet */
			break;
		case SMTP_S_CHUNK:
			if (avail == 0 && s->chunk_left > 0)
				return;
			smtp_input_chunk(s, in);
			if (s->state == SMTP_S_CHUNK)
				return;
			break;
		default:
			if (!smtp_input_line(s, in))
				return;
			break;
		}
	}
}

/* --- commands --- */

static void
smtp_cmd_helo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	char helo[SMTP_HELO_MAX + 1];
	bool ehlo = cmd->verb == SMTP_VERB_EHLO;
	struct evbuffer *out;

	if (smtp_helo_parse(cmd->arg, cmd->arg_len, helo, sizeof(helo)) < 0) {
		smtp_reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		return;
	}
	smtp_tx_reset(s);
	memcpy(s->helo, helo, sizeof(helo));
	s->esmtp = ehlo;
	smtp_enter_state(s, SMTP_S_READY);
	if (!ehlo) {
		smtp_reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out,
	                    "250-%s Hello [%s]\r\n"
	                    "250-PIPELINING\r\n"
	                    "250-SIZE %llu\r\n"
	                    "250-8BITMIME\r\n"
	                    "250-SMTPUTF8\r\n"
	                    "250-ENHANCEDSTATUSCODES\r\n"
	                    "250-DSN\r\n"
	                    "%s"
	                    "250 CHUNKING\r\n",
	                    s->cfg->hostname, s->addr,
	                    (unsigned long long)s->cfg->smtp_max_message_size,
	                    s->srv->tls && !s->tls_done ? "250-STARTTLS\r\n" : "");
}

static unsigned
smtp_extensions(const struct smtp_session *s)
{
	if (!s->esmtp)
		return 0;
	return SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN |
	       SMTP_EXT_CHUNKING;
}

static bool
smtp_param_error(struct smtp_session *s, enum smtp_param_status st, const char *bad, size_t badlen)
{
	char q[64];

	switch (st) {
	case SMTP_PARAM_OK:
		return false;
	case SMTP_PARAM_UNKNOWN:
		smtp_reply(s, "555 5.5.4 Unsupported parameter %s",
		           log_quote(q, sizeof(q), bad ? bad : "", bad ? badlen : 0));
		return true;
	case SMTP_PARAM_SYNTAX:
	case SMTP_PARAM_DUPLICATE:
		smtp_reply(s, "501 5.5.4 Invalid parameter %s",
		           log_quote(q, sizeof(q), bad ? bad : "", bad ? badlen : 0));
		return true;
	}
	return true;
}

static void
smtp_cmd_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_mail_params mp;
	struct mailaddr a;
	const char *bad = NULL;
	size_t used = 0, badlen = 0;
	char buf[MAILADDR_FORMAT_MAX];

	switch (mailaddr_parse(cmd->arg, cmd->arg_len, MAILADDR_F_NULL_OK | MAILADDR_F_SMTPUTF8, &a,
	                       &used)) {
	case MAILADDR_OK:
		break;
	case MAILADDR_E8BIT:
		smtp_reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	case MAILADDR_EROUTING:
		smtp_reply(s, "553 5.1.7 Sender address with routing characters refused");
		return;
	default:
		smtp_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (smtp_param_error(s,
	                     smtp_mail_params_parse(cmd->arg + used, cmd->arg_len - used,
	                                            smtp_extensions(s), &mp, &bad, &badlen),
	                     bad, badlen))
		return;
	if (a.utf8 && !mp.smtputf8) {
		smtp_reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	if (mp.has_size && mp.size > s->cfg->smtp_max_message_size) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	if (!spool_has_room(s->srv->spool)) {
		log_warn("event=spool_full sid=%llu", (unsigned long long)s->sid);
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	smtp_tx_reset(s);
	s->mp = mp;
	s->env.sender = xstrdup(mailaddr_format(&a, buf, sizeof(buf)));
	smtp_enter_state(s, SMTP_S_MAIL);
	smtp_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_rcpt_params rp;
	struct mailaddr a;
	const char *bad = NULL, *why = NULL, *reply;
	size_t used = 0, badlen = 0;
	char buf[MAILADDR_FORMAT_MAX], q[MAILADDR_FORMAT_MAX * 4 + 3];
	unsigned flags = s->mp.smtputf8 ? MAILADDR_F_SMTPUTF8 : 0;

	if (s->env.nrcpts >= s->cfg->smtp_max_recipients) {
		smtp_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	switch (mailaddr_parse(cmd->arg, cmd->arg_len, flags, &a, &used)) {
	case MAILADDR_OK:
		break;
	case MAILADDR_E8BIT:
		smtp_reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	case MAILADDR_EROUTING:
		why = "routing characters";
		reply = "550 5.7.1 Relaying denied";
		/* no address to record: the argument as given, bounded */
		str_copy(buf, cmd->arg,
		         cmd->arg_len + 1 < sizeof(buf) ? cmd->arg_len + 1 : sizeof(buf));
		goto rejected;
	default:
		smtp_reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (smtp_param_error(s,
	                     smtp_rcpt_params_parse(cmd->arg + used, cmd->arg_len - used,
	                                            smtp_extensions(s), &rp, &bad, &badlen),
	                     bad, badlen))
		return;
	mailaddr_format(&a, buf, sizeof(buf));
	switch (policy_check_rcpt(s->pol, &a)) {
	case POLICY_RCPT_OK:
		break;
	case POLICY_RCPT_UNKNOWN_USER:
		why = "unknown user";
		reply = "550 5.1.1 Recipient address rejected: user unknown";
		goto rejected;
	case POLICY_RCPT_RELAY_DENIED:
		why = "relay denied";
		reply = "550 5.7.1 Relaying denied";
		goto rejected;
	}
	for (size_t i = 0; i < s->env.nrcpts; i++) {
		if (str_ieq(s->env.rcpts[i].addr, buf)) {
			smtp_reply(s, "250 2.1.5 Ok");
			return; /* the same recipient twice gets one copy */
		}
	}
	if (s->env_bytes + strlen(buf) + (rp.has_orcpt ? strlen(rp.orcpt) : 0) >
	    SMTP_ENVELOPE_MAX) {
		smtp_reply(s, "452 4.5.3 Too many recipients (envelope over %d octets)",
		           SMTP_ENVELOPE_MAX);
		return;
	}
	s->env_bytes += strlen(buf) + (rp.has_orcpt ? strlen(rp.orcpt) : 0);
	spool_env_add_rcpt(&s->env, buf, rp.notify, rp.has_orcpt ? rp.orcpt : NULL);
	smtp_enter_state(s, SMTP_S_RCPT);
	smtp_reply(s, "250 2.1.5 Ok");
	return;
rejected:
	smtp_reply(s, "%s", reply);
	smtp_track_refused(s, buf, reply);
	stats_inc(smtp_rcpt_rejected);
	log_info("event=rcpt_rejected sid=%llu client=%s to=%s reason=\"%s\"",
	         (unsigned long long)s->sid, s->addr,
	         log_quote(q, sizeof(q), cmd->arg, cmd->arg_len), why);
}

static void
smtp_cmd_data(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (cmd->arg_len) {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	smtp_message_begin(s, SMTP_DATA_MODE_DOT);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_enter_state(s, SMTP_S_DATA);
}

static void
smtp_cmd_bdat(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	uint64_t size;
	bool last;

	if (smtp_bdat_parse(cmd->arg, cmd->arg_len, &size, &last) < 0) {
		/* Without a size there is no telling where the next command starts. */
		smtp_close_after(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]", "bad BDAT");
		return;
	}
	s->chunk_left = size;
	s->chunk_last = last;
	s->chunk_discard = false;
	/* The data rate is measured per chunk, not over the client's pauses. */
	s->data_start_ms = clock_ms();
	s->data_wire = 0;
	if (!s->esmtp) {
		s->chunk_discard = true;
		s->chunk_return = s->state;
		s->chunk_error = s->state == SMTP_S_GREETED ? "503 5.5.1 Send EHLO first"
		                                            : "503 5.5.1 BDAT needs EHLO";
	} else if (s->state == SMTP_S_RCPT) {
		s->chunking = true;
		smtp_message_begin(s, SMTP_DATA_MODE_RAW);
	} else if (s->state == SMTP_S_BDAT) {
		/* next chunk of the same message */
	} else {
		s->chunk_discard = true;
		s->chunk_return = s->state;
		s->chunk_error = s->state == SMTP_S_MAIL
		                         ? "554 5.5.1 No valid recipients"
		                         : "503 5.5.1 Need MAIL and RCPT before BDAT";
	}
	smtp_enter_state(s, SMTP_S_CHUNK);
	if (s->chunk_left == 0)
		smtp_chunk_end(s);
}

static void
smtp_cmd_rset(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_tx_end(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_noop(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_quit(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_close_after(s, "221 2.0.0 Bye", "quit");
}

static void
smtp_cmd_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static void
smtp_cmd_expn(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_reply(s, "502 5.5.1 EXPN not available");
}

static void
smtp_cmd_help(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_reply(s, "214 2.0.0 moat accepts mail for the domains it protects; see RFC 5321");
}

static void
smtp_cmd_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_reply(s, "502 5.5.1 AUTH not available");
}

static void smtp_tls_begin(struct smtp_session *s);

static void
smtp_cmd_starttls(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t junk = evbuffer_get_length(in);

	if (s->tls_done) {
		smtp_reply(s, "503 5.5.1 TLS already active");
		return;
	}
	if (s->srv->tls == NULL || !s->esmtp) {
		smtp_reply(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (cmd->arg_len) {
		smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	/* RFC 3207 4, CVE-2011-0411: plaintext sent after STARTTLS is dropped. */
	if (junk) {
		log_info("event=starttls_injection sid=%llu client=%s discarded=%zu",
		         (unsigned long long)s->sid, s->addr, junk);
		evbuffer_drain(in, junk);
	}
	bufferevent_disable(s->bev, EV_READ);
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_enter_state(s, SMTP_S_STARTTLS);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_tls_begin(s);
}

static const struct smtp_command smtp_commands[] = {
        {SMTP_VERB_HELO, SMTP_COMMAND_STATES, true, smtp_cmd_helo},
        {SMTP_VERB_EHLO, SMTP_COMMAND_STATES, true, smtp_cmd_helo},
        {SMTP_VERB_MAIL, ST(READY), false, smtp_cmd_mail},
        {SMTP_VERB_RCPT, ST(MAIL) | ST(RCPT), false, smtp_cmd_rcpt},
        {SMTP_VERB_DATA, ST(RCPT), true, smtp_cmd_data},
        {SMTP_VERB_BDAT, SMTP_COMMAND_STATES, false, smtp_cmd_bdat},
        {SMTP_VERB_RSET, SMTP_COMMAND_STATES, false, smtp_cmd_rset},
        {SMTP_VERB_NOOP, SMTP_COMMAND_STATES, false, smtp_cmd_noop},
        {SMTP_VERB_QUIT, SMTP_COMMAND_STATES, true, smtp_cmd_quit},
        {SMTP_VERB_VRFY, SMTP_COMMAND_STATES & ~ST(BDAT), false, smtp_cmd_vrfy},
        {SMTP_VERB_EXPN, SMTP_COMMAND_STATES & ~ST(BDAT), false, smtp_cmd_expn},
        {SMTP_VERB_HELP, SMTP_COMMAND_STATES, false, smtp_cmd_help},
        {SMTP_VERB_STARTTLS, ST(READY), true, smtp_cmd_starttls},
        {SMTP_VERB_AUTH, SMTP_COMMAND_STATES, false, smtp_cmd_auth},
};

static const struct smtp_command *
smtp_command_find(enum smtp_verb verb)
{
	for (size_t i = 0; i < nitems(smtp_commands); i++)
		if (smtp_commands[i].verb == verb)
			return &smtp_commands[i];
	return NULL;
}

/* --- TLS --- */

static void
smtp_tls_begin(struct smtp_session *s)
{
	SSL *ssl = SSL_new(s->srv->tls);
	struct bufferevent *bev;

	if (ssl == NULL) {
		smtp_session_close(s, "SSL_new failed");
		return;
	}
	/* Anything read before the switch is plaintext: gone with the old buffer. */
	bufferevent_free(s->bev);
	s->bev = NULL;
	bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		/* libevent has freed ssl already (BEV_OPT_CLOSE_ON_FREE). */
		smtp_session_close(s, "TLS setup failed");
		return;
	}
	s->fd = -1; /* owned by the TLS bufferevent now */
	s->bev = bev;
	s->ssl = ssl;
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, SMTP_INPUT_MAX);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	smtp_timer_set(s, s->cfg->smtp_command_timeout);
}

static void
smtp_tls_done(struct smtp_session *s)
{
	s->tls_done = true;
	/* RFC 3207 4.2: forget everything; the client starts again with EHLO. */
	s->helo[0] = '\0';
	s->esmtp = false;
	smtp_tx_reset(s);
	log_info("event=starttls sid=%llu client=%s version=%s cipher=%s",
	         (unsigned long long)s->sid, s->addr, SSL_get_version(s->ssl),
	         SSL_get_cipher_name(s->ssl));
	smtp_enter_state(s, SMTP_S_GREETED);
}

/* After the client's EOF: handle what it sent before it, then close. */
static void
smtp_session_eof(struct smtp_session *s)
{
	smtp_input(s);
	if (s->closed || s->state == SMTP_S_CLOSING || s->committing || s->scanning)
		return;
	/* Whatever is left is incomplete (a command without its CRLF, a
	 * message without its end): it is dropped, never committed. */
	smtp_close_after(s, NULL, "client closed");
}

/* --- libevent callbacks --- */

static void
smtp_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	smtp_hold(s);
	smtp_input(s);
	smtp_release(s);
}

static void
smtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
		return;
	smtp_hold(s);
	switch (s->state) {
	case SMTP_S_CLOSING:
		smtp_session_close(s, NULL);
		break;
	case SMTP_S_STARTTLS:
		if (s->ssl == NULL)
			smtp_tls_begin(s);
		break;
	default:
		/* A client that had stopped reading caught up: go on. */
		if (!(bufferevent_get_enabled(bev) & EV_READ) && s->state != SMTP_S_COMMIT &&
		    !s->peer_eof) {
			bufferevent_enable(bev, EV_READ);
			smtp_input(s);
		}
		break;
	}
	smtp_release(s);
}

static void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	char reason[160];

	smtp_hold(s);
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SMTP_S_STARTTLS)
			smtp_tls_done(s);
	} else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	           s->state != SMTP_S_STARTTLS) {
		/*
		 * The client closed its side (it may still read): answer what it
		 * sent, including a message being committed, then close.
		 */
		s->peer_eof = true;
		bufferevent_disable(bev, EV_READ);
		if (!s->committing && !s->scanning)
			smtp_session_eof(s);
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		unsigned long e = s->ssl ? bufferevent_get_openssl_error(bev) : 0;

		if (e) {
			ERR_error_string_n(e, reason, sizeof(reason));
		} else if (what & BEV_EVENT_EOF) {
			str_copy(reason, "client closed", sizeof(reason));
		} else {
			snprintf(reason, sizeof(reason), "%s",
			         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		}
		if (s->state == SMTP_S_STARTTLS)
			log_info("event=tls_failed sid=%llu client=%s reason=\"%s\"",
			         (unsigned long long)s->sid, s->addr, reason);
		smtp_session_close(s, reason);
	}
	smtp_release(s);
}

static void
smtp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	smtp_hold(s);
	switch (s->state) {
	case SMTP_S_CONNECTED:
		smtp_reply(s, "220 %s ESMTP moat", s->cfg->hostname);
		smtp_enter_state(s, SMTP_S_GREETED);
		smtp_input(s);
		break;
	case SMTP_S_CLOSING:
		smtp_session_close(s, "close linger expired");
		break;
	case SMTP_S_DATA:
	case SMTP_S_CHUNK:
		smtp_close_after(s, "421 4.4.2 Timeout waiting for data, closing connection",
		                 "data timeout");
		break;
	default:
		smtp_close_after(s, "421 4.4.2 Timeout waiting for command, closing connection",
		                 "command timeout");
		break;
	}
	smtp_release(s);
}

/* --- lifetime --- */

void
smtp_session_new(struct smtp_server *srv, int fd, const struct sockaddr *sa)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->srv = srv;
	s->refs = 1;
	s->fd = fd;
	s->sid = ++srv->next_sid;
	s->cfg = config_ref(srv->cfg);
	s->pol = policy_ref(srv->pol);
	s->started_ms = clock_ms();
	memset(s->ipkey, 0, sizeof(s->ipkey));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, s->addr, sizeof(s->addr));
		s->ipkey[10] = s->ipkey[11] = 0xff;
		memcpy(s->ipkey + 12, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, s->addr, sizeof(s->addr));
		memcpy(s->ipkey, &sin6->sin6_addr, 16);
	}
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	s->bev = bufferevent_socket_new(srv->base, fd, 0);
	s->timer = evtimer_new(srv->base, smtp_timer_cb, s);
	if (s->bev == NULL || s->timer == NULL) {
		smtp_session_close(s, "out of resources");
		return;
	}
	bufferevent_setcb(s->bev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_INPUT_MAX);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_info("event=connect sid=%llu client=%s", (unsigned long long)s->sid, s->addr);
	s->state = SMTP_S_CONNECTED;
	if (s->cfg->smtp_greeting_delay == 0) {
		smtp_reply(s, "220 %s ESMTP moat", s->cfg->hostname);
		smtp_enter_state(s, SMTP_S_GREETED);
	} else {
		smtp_enter_state(s, SMTP_S_CONNECTED);
	}
}

void
smtp_session_shutdown(struct smtp_session *s)
{
	if (smtp_state_in_transaction(s->state)) {
		s->quit_after_reply = true;
		return;
	}
	if (s->state == SMTP_S_STARTTLS || s->state == SMTP_S_CONNECTED) {
		smtp_session_close(s, "shutdown");
		return;
	}
	smtp_close_after(s, "421 4.3.2 Service shutting down", "shutdown");
}

void
smtp_session_close(struct smtp_session *s, const char *reason)
{
	if (s->closed)
		return;
	s->closed = true;
	if (s->msg && s->scanning) {
		/* the scan's callback aborts it: the worker may be reading it */
	} else if (s->msg) {
		if (s->committing) {
			/* The commit completes without us; drop its reference. */
			spool_msg_forget(s->msg);
			s->committing = false;
			s->refs--;
		} else {
			spool_msg_abort(s->msg);
		}
		s->msg = NULL;
	}
	log_info("event=disconnect sid=%llu client=%s messages=%u errors=%u duration_ms=%llu "
	         "reason=\"%s\"",
	         (unsigned long long)s->sid, s->addr, s->messages, s->errors,
	         (unsigned long long)(clock_ms() - s->started_ms),
	         reason            ? reason
	         : s->close_reason ? s->close_reason
	                           : "closed");
	if (s->timer)
		event_free(s->timer);
	s->timer = NULL;
	if (s->bev)
		bufferevent_free(s->bev);
	s->bev = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	TAILQ_REMOVE(&s->srv->sessions, s, entry);
	smtp_server_session_gone(s->srv, s);
	smtp_release(s);
}
