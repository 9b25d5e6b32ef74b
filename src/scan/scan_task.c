/*
 * scan_task.c - the primitives every check uses: symbols, the deadline,
 * DNS bounded by it, tempfail. Kept apart from the pipeline (scan.c) so
 * that a unit test of one check links only that check and this file.
 */
#include "scan_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

const struct scan_sym_def scan_sym_defs[SCAN_SYM_COUNT] = {
#define SCAN_SYM(name, score, flags, doc) [SYM_##name] = {#name, score, flags, doc},
#include "symbols/all.def"
#undef SCAN_SYM
};

static const char *const scan_auth_names[] = {
        [SCAN_AUTH_NONE] = "none",           [SCAN_AUTH_PASS] = "pass",
        [SCAN_AUTH_FAIL] = "fail",           [SCAN_AUTH_SOFTFAIL] = "softfail",
        [SCAN_AUTH_NEUTRAL] = "neutral",     [SCAN_AUTH_TEMPERROR] = "temperror",
        [SCAN_AUTH_PERMERROR] = "permerror", [SCAN_AUTH_POLICY] = "policy",
};

const char *
scan_auth_str(enum scan_auth a)
{
	return (size_t)a < nitems(scan_auth_names) ? scan_auth_names[a] : "none";
}

static void scan_sym_detail(struct scan_task *t, enum scan_sym_id id, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
static void
scan_sym_detail(struct scan_task *t, enum scan_sym_id id, const char *fmt, va_list ap)
{
	char buf[SCAN_SYM_DETAIL_MAX];
	size_t have = t->detail[id] ? strlen(t->detail[id]) : 0;
	int n;

	if (fmt == NULL || have >= SCAN_SYM_DETAIL_MAX - 4)
		return;
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1;
	/* details carry the sender's text (names, file names): no controls */
	for (int i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	/* one detail per occurrence, comma separated, bounded */
	if (have + 1 + (size_t)n >= SCAN_SYM_DETAIL_MAX)
		n = (int)(SCAN_SYM_DETAIL_MAX - have - 5);
	if (n <= 0) {
		if (have + 4 < SCAN_SYM_DETAIL_MAX && !strstr(t->detail[id], "...")) {
			t->detail[id] = xrealloc(t->detail[id], have + 5);
			memcpy(t->detail[id] + have, ",...", 5);
		}
		return;
	}
	t->detail[id] = xrealloc(t->detail[id], have + 1 + (size_t)n + 1);
	if (have)
		t->detail[id][have++] = ',';
	memcpy(t->detail[id] + have, buf, (size_t)n);
	t->detail[id][have + (size_t)n] = '\0';
}

static void scan_sym_add(struct scan_task *t, enum scan_sym_id id, double add, const char *fmt,
                         va_list ap) __attribute__((format(printf, 4, 0)));
static void
scan_sym_add(struct scan_task *t, enum scan_sym_id id, double add, const char *fmt, va_list ap)
{
	if ((size_t)id >= SCAN_SYM_COUNT)
		return;
	if (!t->has[id]) {
		t->has[id] = true;
		t->order[t->nsyms++] = id;
	}
	if (isfinite(add))
		t->extra[id] += add;
	scan_sym_detail(t, id, fmt, ap);
}

void
scan_sym(struct scan_task *t, enum scan_sym_id id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	scan_sym_add(t, id, 0.0, fmt, ap);
	va_end(ap);
}

void
scan_sym_score(struct scan_task *t, enum scan_sym_id id, double add, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	scan_sym_add(t, id, add, fmt, ap);
	va_end(ap);
}

bool
scan_has(const struct scan_task *t, enum scan_sym_id id)
{
	return (size_t)id < SCAN_SYM_COUNT && t->has[id];
}

void
scan_tempfail(struct scan_task *t, const char *fmt, ...)
{
	va_list ap;

	if (t->tempfail)
		return; /* the first reason is the one reported */
	t->tempfail = true;
	va_start(ap, fmt);
	vsnprintf(t->tempfail_reason, sizeof(t->tempfail_reason), fmt, ap);
	va_end(ap);
}

static bool scan_aborted; /* scan_abort_all() */

void
scan_abort_all(void)
{
	__atomic_store_n(&scan_aborted, true, __ATOMIC_RELEASE);
}

int64_t
scan_remaining_ms(const struct scan_task *t)
{
	int64_t now;

	if (__atomic_load_n(&scan_aborted, __ATOMIC_ACQUIRE))
		return 0;
	if (t->deadline_ms <= 0)
		return INT64_MAX;
	now = (int64_t)clock_ms();
	return now >= t->deadline_ms ? 0 : t->deadline_ms - now;
}

int64_t
scan_deadline_in(const struct scan_task *t, uint64_t ms)
{
	int64_t d = (int64_t)clock_ms() + (int64_t)ms;

	if (t->deadline_ms > 0 && t->deadline_ms < d)
		d = t->deadline_ms;
	return d;
}

static int64_t
scan_dns_deadline(const struct scan_task *t)
{
	return scan_deadline_in(t, t->cfg ? t->cfg->dns_timeout : 5000);
}

void
scan_dns_txt_free(struct dns_txt_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->txt[i]);
		r->txt[i] = NULL;
	}
	r->n = 0;
}

enum dns_status
scan_dns_txt(struct scan_task *t, const char *name, struct dns_txt_result *out)
{
	memset(out, 0, sizeof(*out));
	if (t->env == NULL || t->env->dns.txt == NULL || scan_remaining_ms(t) == 0)
		return out->status = DNS_TEMPFAIL;
	return out->status = t->env->dns.txt(t->env->dns.ctx, name, scan_dns_deadline(t), out);
}

enum dns_status
scan_dns_addr(struct scan_task *t, const char *name, int family, struct dns_addr_result *out)
{
	memset(out, 0, sizeof(*out));
	if (t->env == NULL || t->env->dns.addr == NULL || scan_remaining_ms(t) == 0)
		return out->status = DNS_TEMPFAIL;
	return out->status =
	               t->env->dns.addr(t->env->dns.ctx, name, family, scan_dns_deadline(t), out);
}

enum dns_status
scan_dns_mx(struct scan_task *t, const char *domain, struct dns_mx_result *out)
{
	memset(out, 0, sizeof(*out));
	if (t->env == NULL || t->env->dns.mx == NULL || scan_remaining_ms(t) == 0)
		return out->status = DNS_TEMPFAIL;
	return out->status = t->env->dns.mx(t->env->dns.ctx, domain, scan_dns_deadline(t), out);
}

enum dns_status
scan_dns_ptr(struct scan_task *t, const char *ip, struct dns_ptr_result *out)
{
	memset(out, 0, sizeof(*out));
	if (t->env == NULL || t->env->dns.ptr == NULL || scan_remaining_ms(t) == 0)
		return out->status = DNS_TEMPFAIL;
	return out->status = t->env->dns.ptr(t->env->dns.ctx, ip, scan_dns_deadline(t), out);
}

bool
scan_domain_protected(const struct scan_task *t, const char *domain)
{
	return t->pol != NULL && domain != NULL && policy_is_protected(t->pol, domain);
}
