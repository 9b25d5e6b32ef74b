/*
 * store.c - the store's front: picks the backend from the URL, checks
 * every argument against the limits of store.h (so that no backend sees
 * an unbounded string, page or list) and hands the call to the backend's
 * vtable; the names of verdicts, outcomes and states; freeing results.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../policy/rules.h"
#include "../spool/spool.h"
#include "store_internal.h"

/* --- names --- */

static const char *const status_names[] = {
        [STORE_OK] = "ok",
        [STORE_NOT_FOUND] = "not found",
        [STORE_ALREADY] = "already done",
        [STORE_CONFLICT] = "conflict",
        [STORE_INVALID] = "invalid argument",
        [STORE_ERROR] = "database error",
};
static const char *const verdict_names[] = {
        [STORE_V_NONE] = "none",
        [STORE_V_DELIVER] = "deliver",
        [STORE_V_QUARANTINE] = "quarantine",
        [STORE_V_REJECT] = "reject",
        [STORE_V_TEMPFAIL] = "tempfail",
};
static const char *const outcome_names[] = {
        [STORE_OUT_PENDING] = "pending",   [STORE_OUT_DELIVERED] = "delivered",
        [STORE_OUT_DEFERRED] = "deferred", [STORE_OUT_BOUNCED] = "bounced",
        [STORE_OUT_REJECTED] = "rejected",
};
static const char *const qstate_names[] = {
        [STORE_Q_HELD] = "held",
        [STORE_Q_RELEASED] = "released",
        [STORE_Q_DELETED] = "deleted",
        [STORE_Q_EXPIRED] = "expired",
};

static const char *
name_of(const char *const *names, size_t n, int v)
{
	return v >= 0 && (size_t)v < n ? names[v] : "?";
}

static int
name_parse(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

const char *
store_status_str(enum store_status st)
{
	return name_of(status_names, nitems(status_names), (int)st);
}

const char *
store_verdict_str(enum store_verdict v)
{
	return name_of(verdict_names, nitems(verdict_names), (int)v);
}

const char *
store_outcome_str(enum store_outcome o)
{
	return name_of(outcome_names, nitems(outcome_names), (int)o);
}

const char *
store_qstate_str(enum store_qstate q)
{
	return name_of(qstate_names, nitems(qstate_names), (int)q);
}

int
store_verdict_parse(const char *s)
{
	return name_parse(verdict_names, nitems(verdict_names), s);
}

int
store_outcome_parse(const char *s)
{
	return name_parse(outcome_names, nitems(outcome_names), s);
}

int
store_qstate_parse(const char *s)
{
	return name_parse(qstate_names, nitems(qstate_names), s);
}

/* --- opening --- */

struct store *
store_open(const char *url, char *err, size_t errsize)
{
	struct store *s = NULL;
	const char *path = url;

	if (url == NULL || url[0] == '\0') {
		snprintf(err, errsize, "store: no database given");
		goto fail;
	}
	s = xcalloc(1, sizeof(*s));
	if (strncmp(url, "sqlite:", 7) == 0) {
		path = url + 7;
		s->be = &store_backend_sqlite;
	} else if (strncmp(url, "postgresql:", 11) == 0 || strncmp(url, "postgres:", 9) == 0) {
		snprintf(err, errsize, "store: PostgreSQL is not supported yet");
		goto fail;
	} else if (strstr(url, "://") != NULL) {
		snprintf(err, errsize, "store: '%.64s': unknown kind of database", url);
		goto fail;
	} else {
		s->be = &store_backend_sqlite;
	}
	if (path[0] == '\0') {
		snprintf(err, errsize, "store: '%.64s': no path", url);
		goto fail;
	}
	if (s->be->open(s, path) != STORE_OK) {
		snprintf(err, errsize, "store: %s: %s", path, s->err);
		goto fail;
	}
	return s;
fail:
	free(s);
	return NULL;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	s->be->close(s);
	free(s);
}

const char *
store_errmsg(const struct store *s)
{
	return s->err;
}

const char *
store_backend_name(const struct store *s)
{
	return s->be->name;
}

int
store_schema_version(struct store *s, unsigned *in_db, unsigned *known)
{
	return s->be->schema_version(s, in_db, known) == STORE_OK ? 0 : -1;
}

enum store_status
store_batch_begin(struct store *s)
{
	return s->be->batch_begin(s);
}

enum store_status
store_batch_commit(struct store *s)
{
	return s->be->batch_end(s, true);
}

void
store_batch_rollback(struct store *s)
{
	s->be->batch_end(s, false);
}

enum store_status
store_fail(struct store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return STORE_ERROR;
}

const char *
store_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/* --- argument checks --- */

/* s is set and at most max octets (and not empty unless empty_ok). */
static bool
str_ok(const char *s, size_t max, bool empty_ok)
{
	if (s == NULL)
		return false;
	size_t n = strnlen(s, max + 1);
	return n <= max && (empty_ok || n > 0);
}

static bool
opt_ok(const char *s, size_t max)
{
	return s == NULL || str_ok(s, max, false);
}

static bool
id_ok(const char *id)
{
	return id != NULL && spool_id_valid(id);
}

static bool
rcpts_ok(const char *const *rcpts, size_t n, size_t min)
{
	if (n < min || n > STORE_RCPTS_MAX || (n > 0 && rcpts == NULL))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!str_ok(rcpts[i], STORE_ADDR_MAX, false))
			return false;
	return true;
}

/* An address, "" (the null sender) if empty_ok, or "@domain". */
static bool
addr_filter_ok(const char *s, bool empty_ok)
{
	return s == NULL || (str_ok(s, STORE_ADDR_MAX, empty_ok) && strcmp(s, "@") != 0);
}

static bool
filter_ok(const struct store_filter *f)
{
	if (f == NULL || f->limit == 0 || f->limit > STORE_PAGE_MAX)
		return false;
	if (!addr_filter_ok(f->sender, true) || !addr_filter_ok(f->rcpt, false) ||
	    !opt_ok(f->subject, STORE_HEADER_MAX) || !opt_ok(f->message_id, STORE_HEADER_MAX) ||
	    (f->subject != NULL && strlen(f->subject) < STORE_SUBJECT_MIN) ||
	    !opt_ok(f->domain, STORE_DOMAIN_MAX))
		return false;
	if (f->id != NULL && !id_ok(f->id))
		return false;
	if (f->since_ms < 0 || f->until_ms < 0)
		return false;
	if (f->verdict != STORE_V_ANY && store_verdict_parse(store_verdict_str(f->verdict)) < 0)
		return false;
	if (f->state != STORE_Q_ANY && store_qstate_parse(store_qstate_str(f->state)) < 0)
		return false;
	if (f->after.id[0] != '\0' && !id_ok(f->after.id))
		return false;
	return true;
}

void
store_filter_init(struct store_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->verdict = STORE_V_ANY;
	f->state = STORE_Q_ANY;
	f->limit = 50;
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			return STORE_INVALID;                                                      \
	} while (0)

/* --- tracking --- */

enum store_status
store_track_received(struct store *s, const struct store_track_in *in)
{
	CHECK(in != NULL && id_ok(in->id) && in->received_ms >= 0);
	CHECK(str_ok(in->client_ip, STORE_IP_MAX, true) && str_ok(in->helo, STORE_HELO_MAX, true));
	CHECK(str_ok(in->sender, STORE_ADDR_MAX, true) && rcpts_ok(in->rcpts, in->nrcpts, 0));
	CHECK(str_ok(in->subject, STORE_HEADER_MAX, true) &&
	      str_ok(in->from, STORE_HEADER_MAX, true));
	CHECK(str_ok(in->message_id, STORE_HEADER_MAX, true) && in->size <= INT64_MAX);
	return s->be->track_received(s, in);
}

enum store_status
store_track_verdict(struct store *s, const char *id, enum store_verdict v, double score,
                    const char *symbols, const char *reason, int64_t time_ms)
{
	CHECK(id_ok(id) && v >= STORE_V_NONE && v <= STORE_V_TEMPFAIL && time_ms >= 0);
	CHECK(str_ok(symbols, STORE_SYMBOLS_MAX, true) && str_ok(reason, STORE_REASON_MAX, true));
	return s->be->track_verdict(s, id, v, score, symbols, reason, time_ms);
}

enum store_status
store_track_delivery(struct store *s, const char *id, const char *rcpt, enum store_outcome outcome,
                     const char *reply, int64_t time_ms)
{
	CHECK(id_ok(id) && str_ok(rcpt, STORE_ADDR_MAX, false) && time_ms >= 0);
	CHECK(outcome >= STORE_OUT_PENDING && outcome <= STORE_OUT_REJECTED);
	CHECK(str_ok(reply, STORE_REPLY_MAX, true));
	return s->be->track_delivery(s, id, rcpt, outcome, reply, time_ms);
}

enum store_status
store_track_search(struct store *s, const struct store_filter *f, struct store_msg_page *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(filter_ok(f));
	return s->be->track_search(s, f, out);
}

enum store_status
store_track_get(struct store *s, const char *id, struct store_timeline *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(id_ok(id));
	return s->be->track_get(s, id, out);
}

enum store_status
store_track_purge(struct store *s, int64_t before_ms, unsigned max_rows, size_t *n)
{
	*n = 0;
	CHECK(before_ms >= 0 && max_rows > 0);
	return s->be->track_purge(s, before_ms, max_rows, n);
}

enum store_status
store_track_hourly(struct store *s, int64_t since_ms,
                   int (*fn)(void *arg, int64_t hour_ms, enum store_verdict v, uint64_t count),
                   void *arg)
{
	CHECK(since_ms >= 0 && fn != NULL);
	return s->be->track_hourly(s, since_ms, fn, arg);
}

/* --- threat counts: the symbols lines of quarantined and rejected mail --- */

#define SYM_SLOTS (2 * STORE_SYMBOL_NAMES_MAX) /* open addressing, at most half full */

struct sym_count {
	char name[STORE_SYMBOL_NAME_MAX + 1]; /* "": a free slot */
	uint64_t messages, positive;
	uint64_t seen, seen_positive; /* the last line that counted it */
};

struct sym_table {
	struct sym_count *slot; /* SYM_SLOTS of them */
	size_t n;
	uint64_t line; /* lines seen so far: the current one's serial */
};

static bool
sym_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/*
 * Does s start with NAME(SCORE)? Its length (name into name, whether the
 * score is above 0 into *positive), else 0. The score is "%.2f" of a
 * double: digits and a point after an optional '-' ("inf" and "nan" too).
 */
static size_t
sym_head(const char *s, char name[STORE_SYMBOL_NAME_MAX + 1], bool *positive)
{
	size_t n = 0, i, start;
	bool neg = false, nonzero = false;

	while (n <= STORE_SYMBOL_NAME_MAX && sym_name_char(s[n]))
		n++;
	if (n == 0 || n > STORE_SYMBOL_NAME_MAX || s[n] != '(')
		return 0;
	i = n + 1;
	if (s[i] == '-') {
		neg = true;
		i++;
	}
	for (start = i; (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || (s[i] >= 'a' && s[i] <= 'z');
	     i++)
		if ((s[i] >= '1' && s[i] <= '9') || s[i] == 'i')
			nonzero = true;
	if (i == start || s[i] != ')')
		return 0;
	memcpy(name, s, n);
	name[n] = '\0';
	*positive = !neg && nonzero;
	return i + 1;
}

/* Count name (positive: its score was above 0) for the current line, once per line. */
static void
sym_count_add(struct sym_table *t, const char *name, bool positive)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	struct sym_count *c;

	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (size_t i = h % SYM_SLOTS;; i = (i + 1) % SYM_SLOTS) {
		c = &t->slot[i];
		if (c->name[0] == '\0') {
			if (t->n == STORE_SYMBOL_NAMES_MAX)
				return; /* full: further names are not counted */
			str_copy(c->name, name, sizeof(c->name));
			t->n++;
			break;
		}
		if (strcmp(c->name, name) == 0)
			break;
	}
	if (c->seen != t->line) {
		c->seen = t->line;
		c->messages++;
	}
	if (positive && c->seen_positive != t->line) {
		c->seen_positive = t->line;
		c->positive++;
	}
}

/*
 * One symbols line: NAME(SCORE)[DETAIL],... A detail ends at the first ']'
 * followed by the line's end or by ",NAME(SCORE)"; anything malformed (a
 * line cut short ends in "...") ends the line there.
 */
static int
sym_line(void *arg, const char *line)
{
	struct sym_table *t = arg;
	char name[STORE_SYMBOL_NAME_MAX + 1], scratch[STORE_SYMBOL_NAME_MAX + 1];
	const char *p = line;
	bool positive, ignored;
	size_t n;

	t->line++;
	while ((n = sym_head(p, name, &positive)) > 0) {
		const char *q = p + n;

		if (*q == '[') {
			for (q++;; q++) {
				if ((q = strchr(q, ']')) == NULL)
					return 0;
				if (q[1] == '\0' ||
				    (q[1] == ',' && sym_head(q + 2, scratch, &ignored) > 0))
					break;
			}
			q++;
		}
		if (*q != ',' && *q != '\0')
			return 0;
		sym_count_add(t, name, positive);
		if (*q == '\0')
			return 0;
		p = q + 1;
	}
	return 0;
}

/* Most messages first, then by name. */
static int
sym_count_cmp(const void *a, const void *b)
{
	const struct sym_count *x = a, *y = b;

	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->name, y->name);
}

enum store_status
store_track_threat_symbols(struct store *s, int64_t since_ms, unsigned max_msgs,
                           int (*fn)(void *arg, const char *name, uint64_t messages,
                                     uint64_t positive),
                           void *arg)
{
	struct sym_table t = {0};
	struct sym_count *sorted;
	enum store_status st;
	size_t n = 0;

	CHECK(since_ms >= 0 && max_msgs >= 1 && max_msgs <= STORE_THREAT_SCAN_MAX && fn != NULL);
	t.slot = xcalloc(SYM_SLOTS, sizeof(*t.slot));
	if ((st = s->be->track_threat_lines(s, since_ms, max_msgs, sym_line, &t)) != STORE_OK) {
		free(t.slot);
		return st;
	}
	/* compact the used slots to the front, then order them */
	sorted = t.slot;
	for (size_t i = 0; i < SYM_SLOTS; i++)
		if (t.slot[i].name[0] != '\0')
			sorted[n++] = t.slot[i];
	qsort(sorted, n, sizeof(*sorted), sym_count_cmp);
	for (size_t i = 0; i < n; i++)
		if (fn(arg, sorted[i].name, sorted[i].messages, sorted[i].positive) != 0)
			break;
	free(t.slot);
	return STORE_OK;
}

enum store_status
store_track_threat_senders(struct store *s, int64_t since_ms, unsigned max_msgs, unsigned limit,
                           int (*fn)(void *arg, const char *sender, uint64_t count), void *arg)
{
	CHECK(since_ms >= 0 && max_msgs >= 1 && max_msgs <= STORE_THREAT_SCAN_MAX && fn != NULL);
	CHECK(limit >= 1 && limit <= STORE_PAGE_MAX);
	return s->be->track_threat_senders(s, since_ms, max_msgs, limit, fn, arg);
}

static void
msg_clear(struct store_msg *m)
{
	free(m->client_ip);
	free(m->helo);
	free(m->sender);
	free(m->subject);
	free(m->from);
	free(m->message_id);
	free(m->symbols);
	free(m->reason);
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].reply);
	}
	free(m->rcpts);
	memset(m, 0, sizeof(*m));
}

void
store_msg_page_free(struct store_msg_page *p)
{
	for (size_t i = 0; i < p->n; i++)
		msg_clear(&p->rows[i]);
	free(p->rows);
	memset(p, 0, sizeof(*p));
}

void
store_timeline_free(struct store_timeline *t)
{
	msg_clear(&t->msg);
	for (size_t i = 0; i < t->nevents; i++) {
		free(t->events[i].rcpt);
		free(t->events[i].text);
	}
	free(t->events);
	memset(t, 0, sizeof(*t));
}

/* --- quarantine --- */

enum store_status
store_quarantine_add(struct store *s, const struct store_quar_in *in)
{
	CHECK(in != NULL && id_ok(in->id) && str_ok(in->domain, STORE_DOMAIN_MAX, false));
	CHECK(in->received_ms >= 0 && str_ok(in->sender, STORE_ADDR_MAX, true));
	CHECK(rcpts_ok(in->rcpts, in->nrcpts, 1) && str_ok(in->from, STORE_HEADER_MAX, true));
	CHECK(str_ok(in->subject, STORE_HEADER_MAX, true) &&
	      str_ok(in->message_id, STORE_HEADER_MAX, true));
	CHECK(in->size <= INT64_MAX && in->verdict >= STORE_V_NONE &&
	      in->verdict <= STORE_V_TEMPFAIL);
	CHECK(str_ok(in->symbols, STORE_SYMBOLS_MAX, true));
	return s->be->quarantine_add(s, in);
}

enum store_status
store_quarantine_search(struct store *s, const struct store_filter *f, struct store_quar_page *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(filter_ok(f));
	return s->be->quarantine_search(s, f, out);
}

enum store_status
store_quarantine_get(struct store *s, const char *id, struct store_quar *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(id_ok(id));
	return s->be->quarantine_get(s, id, out);
}

enum store_status
store_quarantine_set_state(struct store *s, const char *id, enum store_qstate to, const char *who,
                           int64_t time_ms, enum store_qstate *was)
{
	enum store_qstate dummy;

	if (was == NULL)
		was = &dummy;
	CHECK(id_ok(id) && to > STORE_Q_HELD && to <= STORE_Q_EXPIRED);
	CHECK(str_ok(who, STORE_WHO_MAX, false) && time_ms >= 0);
	return s->be->quarantine_set_state(s, id, to, who, time_ms, was);
}

enum store_status
store_quarantine_purge(struct store *s, int64_t before_ms, unsigned max_rows, size_t *n)
{
	*n = 0;
	CHECK(before_ms >= 0 && max_rows > 0);
	return s->be->quarantine_purge(s, before_ms, max_rows, n);
}

enum store_status
store_quarantine_queued(struct store *s, const char *id)
{
	CHECK(id_ok(id));
	return s->be->quarantine_queued(s, id);
}

enum store_status
store_quarantine_unrelease(struct store *s, const char *id, const char *who, int64_t time_ms)
{
	CHECK(id_ok(id) && str_ok(who, STORE_WHO_MAX, false) && time_ms >= 0);
	return s->be->quarantine_unrelease(s, id, who, time_ms);
}

enum store_status
store_quarantine_expired(struct store *s, int64_t before_ms, char (*ids)[STORE_ID_MAX + 1],
                         size_t max, size_t *n)
{
	*n = 0;
	CHECK(ids != NULL && max > 0 && max <= STORE_LIST_MAX && before_ms >= 0);
	return s->be->quarantine_expired(s, before_ms, ids, max, n);
}

void
store_quar_free(struct store_quar *q)
{
	free(q->domain);
	free(q->sender);
	for (size_t i = 0; i < q->nrcpts; i++)
		free(q->rcpts[i]);
	free(q->rcpts);
	free(q->from);
	free(q->subject);
	free(q->message_id);
	free(q->symbols);
	free(q->state_by);
	memset(q, 0, sizeof(*q));
}

void
store_quar_page_free(struct store_quar_page *p)
{
	for (size_t i = 0; i < p->n; i++)
		store_quar_free(&p->rows[i]);
	free(p->rows);
	memset(p, 0, sizeof(*p));
}

/* --- audit, settings --- */

enum store_status
store_audit_add(struct store *s, const struct store_audit *a)
{
	CHECK(a != NULL && a->time_ms >= 0 && str_ok(a->who, STORE_WHO_MAX, false));
	CHECK(str_ok(a->action, STORE_ACTION_MAX, false) &&
	      str_ok(a->target, STORE_TARGET_MAX, true));
	CHECK(str_ok(a->addr, STORE_IP_MAX, true));
	return s->be->audit_add(s, a);
}

enum store_status
store_audit_list(struct store *s, const char *target, int64_t before_id, unsigned limit,
                 int (*fn)(void *arg, const struct store_audit *a), void *arg)
{
	CHECK(opt_ok(target, STORE_TARGET_MAX) && before_id >= 0 && limit > 0 &&
	      limit <= STORE_PAGE_MAX && fn != NULL);
	return s->be->audit_list(s, target, before_id, limit, fn, arg);
}

enum store_status
store_setting_set(struct store *s, const char *key, const char *value)
{
	CHECK(str_ok(key, STORE_KEY_MAX, false) && str_ok(value, STORE_VALUE_MAX, true));
	return s->be->setting_set(s, key, value);
}

enum store_status
store_setting_get(struct store *s, const char *key, char *value, size_t size)
{
	CHECK(str_ok(key, STORE_KEY_MAX, false) && value != NULL && size > 0);
	value[0] = '\0';
	return s->be->setting_get(s, key, value, size);
}

enum store_status
store_setting_delete(struct store *s, const char *key)
{
	CHECK(str_ok(key, STORE_KEY_MAX, false));
	return s->be->setting_delete(s, key);
}

enum store_status
store_setting_list(struct store *s, int (*fn)(void *arg, const char *key, const char *value),
                   void *arg)
{
	CHECK(fn != NULL);
	return s->be->setting_list(s, fn, arg);
}

/* --- rules --- */

static bool
lines_ok(const char *const *lines, size_t n)
{
	if (n > RULE_ITEMS_MAX || (n > 0 && lines == NULL))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!str_ok(lines[i], RULE_TEXT_MAX, false))
			return false;
	return true;
}

enum store_status
store_rule_put(struct store *s, const struct rule_spec *spec)
{
	CHECK(spec != NULL && spec->name != NULL && rule_name_ok(spec->name));
	CHECK(spec->priority <= RULE_PRIORITY_MAX);
	CHECK(lines_ok(spec->ifs, spec->nifs) && lines_ok(spec->unless, spec->nunless) &&
	      lines_ok(spec->then, spec->nthen));
	return s->be->rule_put(s, spec);
}

enum store_status
store_rule_delete(struct store *s, const char *name)
{
	CHECK(name != NULL && rule_name_ok(name));
	return s->be->rule_delete(s, name);
}

enum store_status
store_rule_load(struct store *s, int (*fn)(void *arg, const struct rule_spec *spec), void *arg)
{
	CHECK(fn != NULL);
	return s->be->rule_load(s, fn, arg);
}

/* --- lists --- */

enum store_status
store_domain_put(struct store *s, const struct store_domain *d)
{
	CHECK(str_ok(d->name, STORE_DOMAIN_MAX, false) && d->body != NULL &&
	      strlen(d->body) <= STORE_DOMAIN_BODY_MAX && d->created_ms >= 0 && d->updated_ms >= 0);
	return s->be->domain_put(s, d);
}

enum store_status
store_domain_delete(struct store *s, const char *name)
{
	CHECK(str_ok(name, STORE_DOMAIN_MAX, false));
	return s->be->domain_delete(s, name);
}

enum store_status
store_domain_load(struct store *s, int (*fn)(void *arg, const struct store_domain *d), void *arg)
{
	return s->be->domain_load(s, fn, arg);
}

enum store_status
store_list_add(struct store *s, const struct store_list_entry *e)
{
	CHECK(e != NULL && str_ok(e->scope, STORE_DOMAIN_MAX, true));
	CHECK(e->kind == STORE_LIST_ALLOW || e->kind == STORE_LIST_BLOCK);
	CHECK(str_ok(e->pattern, STORE_PATTERN_MAX, false) && e->created_ms >= 0);
	return s->be->list_add(s, e);
}

enum store_status
store_list_delete(struct store *s, const char *scope, enum store_list_kind kind,
                  const char *pattern)
{
	CHECK(str_ok(scope, STORE_DOMAIN_MAX, true) && str_ok(pattern, STORE_PATTERN_MAX, false));
	CHECK(kind == STORE_LIST_ALLOW || kind == STORE_LIST_BLOCK);
	return s->be->list_delete(s, scope, kind, pattern);
}

enum store_status
store_list_load(struct store *s, const char *scope,
                int (*fn)(void *arg, const struct store_list_entry *e), void *arg)
{
	CHECK((scope == NULL || str_ok(scope, STORE_DOMAIN_MAX, true)) && fn != NULL);
	return s->be->list_load(s, scope, fn, arg);
}

/* --- users, tokens --- */

enum store_status
store_user_add(struct store *s, const struct store_user *u)
{
	CHECK(u != NULL && str_ok(u->name, STORE_USER_MAX, false));
	CHECK(str_ok(u->hash, STORE_HASH_MAX, false) && u->created_ms >= 0);
	return s->be->user_add(s, u);
}

enum store_status
store_user_get(struct store *s, const char *name, struct store_user *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(str_ok(name, STORE_USER_MAX, false));
	return s->be->user_get(s, name, out);
}

enum store_status
store_user_set_hash(struct store *s, const char *name, const char *hash)
{
	CHECK(str_ok(name, STORE_USER_MAX, false) && str_ok(hash, STORE_HASH_MAX, false));
	return s->be->user_set_hash(s, name, hash);
}

enum store_status
store_user_delete(struct store *s, const char *name)
{
	CHECK(str_ok(name, STORE_USER_MAX, false));
	return s->be->user_delete(s, name);
}

enum store_status
store_user_list(struct store *s, int (*fn)(void *arg, const struct store_user *u), void *arg)
{
	CHECK(fn != NULL);
	return s->be->user_list(s, fn, arg);
}

enum store_status
store_token_add(struct store *s, const struct store_token *t)
{
	CHECK(t != NULL && str_ok(t->id, STORE_TOKEN_ID_MAX, false));
	CHECK(t->scopes != 0 && (t->scopes & ~STORE_SCOPE_ALL) == 0 && t->created_ms >= 0);
	return s->be->token_add(s, t);
}

enum store_status
store_token_find(struct store *s, const unsigned char hash[STORE_SHA256_LEN],
                 struct store_token *out)
{
	memset(out, 0, sizeof(*out));
	CHECK(hash != NULL);
	return s->be->token_find(s, hash, out);
}

enum store_status
store_token_touch(struct store *s, const char *id, int64_t time_ms)
{
	CHECK(str_ok(id, STORE_TOKEN_ID_MAX, false) && time_ms >= 0);
	return s->be->token_touch(s, id, time_ms);
}

enum store_status
store_token_delete(struct store *s, const char *id)
{
	CHECK(str_ok(id, STORE_TOKEN_ID_MAX, false));
	return s->be->token_delete(s, id);
}

enum store_status
store_token_list(struct store *s, int (*fn)(void *arg, const struct store_token *t), void *arg)
{
	CHECK(fn != NULL);
	return s->be->token_list(s, fn, arg);
}

/* --- Microsoft 365 jobs --- */

static bool
m365_data_ok(const char *data)
{
	return data != NULL && strlen(data) <= STORE_M365_DATA_MAX;
}

enum store_status
store_m365_job_put(struct store *s, const struct store_m365_job *j)
{
	CHECK(j != NULL && str_ok(j->id, STORE_M365_ID_MAX, false));
	CHECK(str_ok(j->tenant, STORE_M365_NAME_MAX, false) &&
	      str_ok(j->kind, STORE_M365_NAME_MAX, false) &&
	      str_ok(j->state, STORE_M365_NAME_MAX, false));
	CHECK(m365_data_ok(j->data) && j->created_ms >= 0 && j->updated_ms >= 0);
	return s->be->m365_job_put(s, j);
}

enum store_status
store_m365_job_get(struct store *s, const char *id,
                   int (*fn)(void *arg, const struct store_m365_job *j), void *arg)
{
	CHECK(str_ok(id, STORE_M365_ID_MAX, false) && fn != NULL);
	return s->be->m365_job_get(s, id, fn, arg);
}

enum store_status
store_m365_job_list(struct store *s, unsigned limit,
                    int (*fn)(void *arg, const struct store_m365_job *j), void *arg)
{
	CHECK(fn != NULL && limit > 0 && limit <= STORE_PAGE_MAX);
	return s->be->m365_job_list(s, limit, fn, arg);
}

enum store_status
store_m365_step_add(struct store *s, const char *job, unsigned seq, int64_t time_ms,
                    const char *data)
{
	CHECK(str_ok(job, STORE_M365_ID_MAX, false) && seq > 0 && time_ms >= 0 &&
	      m365_data_ok(data));
	return s->be->m365_step_add(s, job, seq, time_ms, data);
}

enum store_status
store_m365_step_list(struct store *s, const char *job,
                     int (*fn)(void *arg, unsigned seq, int64_t time_ms, const char *data),
                     void *arg)
{
	CHECK(str_ok(job, STORE_M365_ID_MAX, false) && fn != NULL);
	return s->be->m365_step_list(s, job, fn, arg);
}

enum store_status
store_m365_change_add(struct store *s, const char *tenant, const char *job, int64_t time_ms,
                      const char *undo)
{
	CHECK(str_ok(tenant, STORE_M365_NAME_MAX, false) && str_ok(job, STORE_M365_ID_MAX, false));
	CHECK(time_ms >= 0 && m365_data_ok(undo) && undo[0] != '\0');
	return s->be->m365_change_add(s, tenant, job, time_ms, undo);
}

enum store_status
store_m365_change_list(struct store *s, const char *tenant,
                       int (*fn)(void *arg, int64_t id, const char *undo), void *arg)
{
	CHECK(str_ok(tenant, STORE_M365_NAME_MAX, false) && fn != NULL);
	return s->be->m365_change_list(s, tenant, fn, arg);
}

enum store_status
store_m365_change_undone(struct store *s, int64_t id, int64_t time_ms)
{
	CHECK(id > 0 && time_ms > 0);
	return s->be->m365_change_undone(s, id, time_ms);
}
