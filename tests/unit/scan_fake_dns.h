/*
 * scan_fake_dns.h - a table-driven fake of struct scan_dns_ops for unit
 * tests of the scan checks (SPF, DMARC, DNS blocklists): no network.
 *
 * A zone is an array of rows ended by a row of type 0:
 *   {'T', name, "text"}       a TXT record (one row per record)
 *   {'A', name, "192.0.2.1"}  an A or AAAA record (by the address syntax)
 *   {'M', name, "10 host"}    an MX record; the hosts' addresses are the
 *                             'A' rows of the host
 *   {'P', ip, "name"}         a PTR record of an address ("192.0.2.1")
 *   {type, name, NULL, st}    the lookup of that type answers st
 *                             (DNS_TEMPFAIL, DNS_NODATA, ...)
 * A name with no row of the type asked is NODATA when it has rows of
 * another type, else NXDOMAIN. Names compare case-insensitively.
 */
#ifndef MOAT_TEST_SCAN_FAKE_DNS_H
#define MOAT_TEST_SCAN_FAKE_DNS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "scan/scan.h"

struct fake_rr {
	char type;
	const char *name;
	const char *data;
	enum dns_status st;
};

struct fake_dns {
	const struct fake_rr *zone;
	unsigned queries; /* lookups asked */
	char last[DNS_NAME_MAX + 1];
};

static bool
fake_name_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* The status of (type, name) when it has no data rows to give. */
static enum dns_status
fake_status(const struct fake_dns *f, char type, const char *name, bool *has_data)
{
	bool other = false;

	*has_data = false;
	for (const struct fake_rr *r = f->zone; r->type; r++) {
		if (!fake_name_eq(r->name, name))
			continue;
		if (r->type != type) {
			other = true;
			continue;
		}
		if (r->data == NULL)
			return r->st;
		*has_data = true;
	}
	return other ? DNS_NODATA : DNS_NXDOMAIN;
}

static void
fake_note(struct fake_dns *f, const char *name)
{
	f->queries++;
	snprintf(f->last, sizeof(f->last), "%s", name);
}

static enum dns_status
fake_txt(void *ctx, const char *name, int64_t deadline_ms, struct dns_txt_result *out)
{
	struct fake_dns *f = ctx;
	bool has;
	enum dns_status st;

	(void)deadline_ms;
	fake_note(f, name);
	memset(out, 0, sizeof(*out));
	st = fake_status(f, 'T', name, &has);
	if (!has)
		return out->status = st;
	for (const struct fake_rr *r = f->zone; r->type; r++)
		if (r->type == 'T' && r->data && fake_name_eq(r->name, name) &&
		    out->n < DNS_TXT_MAX)
			out->txt[out->n++] = strdup(r->data);
	return out->status = DNS_OK;
}

/* The addresses of name in family (AF_UNSPEC: both) into addr[]. */
static size_t
fake_addrs(const struct fake_dns *f, const char *name, int family, struct sockaddr_storage *addr)
{
	size_t n = 0;

	for (const struct fake_rr *r = f->zone; r->type; r++) {
		struct sockaddr_storage ss;

		if (r->type != 'A' || r->data == NULL || !fake_name_eq(r->name, name) ||
		    n == DNS_ADDR_MAX)
			continue;
		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, r->data, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
			ss.ss_family = AF_INET;
		else if (inet_pton(AF_INET6, r->data, &((struct sockaddr_in6 *)&ss)->sin6_addr) ==
		         1)
			ss.ss_family = AF_INET6;
		else
			continue;
		if (family != AF_UNSPEC && ss.ss_family != family)
			continue;
		addr[n++] = ss;
	}
	return n;
}

static enum dns_status
fake_addr(void *ctx, const char *name, int family, int64_t deadline_ms, struct dns_addr_result *out)
{
	struct fake_dns *f = ctx;
	bool has;
	enum dns_status st;

	(void)deadline_ms;
	fake_note(f, name);
	memset(out, 0, sizeof(*out));
	st = fake_status(f, 'A', name, &has);
	if (!has)
		return out->status = st;
	out->naddrs = fake_addrs(f, name, family, out->addr);
	return out->status = out->naddrs > 0 ? DNS_OK : DNS_NODATA;
}

static enum dns_status
fake_mx(void *ctx, const char *domain, int64_t deadline_ms, struct dns_mx_result *out)
{
	struct fake_dns *f = ctx;
	bool has;
	enum dns_status st;

	(void)deadline_ms;
	fake_note(f, domain);
	memset(out, 0, sizeof(*out));
	st = fake_status(f, 'M', domain, &has);
	if (!has) {
		if (st != DNS_NODATA)
			return out->status = st;
		/* no MX records: the domain is its own host when it has an address */
		out->host[0].naddrs = fake_addrs(f, domain, AF_UNSPEC, out->host[0].addr);
		if (out->host[0].naddrs == 0)
			return out->status = DNS_NODATA;
		snprintf(out->host[0].name, sizeof(out->host[0].name), "%s", domain);
		out->nhosts = 1;
		out->implicit = true;
		return out->status = DNS_OK;
	}
	for (const struct fake_rr *r = f->zone; r->type; r++) {
		struct dns_mx_host *h;
		const char *sp;
		bool host_has;

		if (r->type != 'M' || r->data == NULL || !fake_name_eq(r->name, domain))
			continue;
		sp = strchr(r->data, ' ');
		if (sp == NULL || strcmp(sp + 1, ".") == 0) {
			out->null_mx = true;
			continue;
		}
		if (out->nhosts == DNS_MX_MAX)
			continue;
		h = &out->host[out->nhosts++];
		snprintf(h->name, sizeof(h->name), "%s", sp + 1);
		h->pref = (unsigned)strtoul(r->data, NULL, 10);
		h->naddrs = fake_addrs(f, h->name, AF_UNSPEC, h->addr);
		h->addr_status = fake_status(f, 'A', h->name, &host_has);
		if (host_has)
			h->addr_status = h->naddrs > 0 ? DNS_OK : DNS_NODATA;
	}
	if (out->nhosts > 0)
		out->null_mx = false;
	return out->status = DNS_OK;
}

static enum dns_status
fake_ptr(void *ctx, const char *ip, int64_t deadline_ms, struct dns_ptr_result *out)
{
	struct fake_dns *f = ctx;
	bool has;
	enum dns_status st;

	(void)deadline_ms;
	fake_note(f, ip);
	memset(out, 0, sizeof(*out));
	st = fake_status(f, 'P', ip, &has);
	if (!has)
		return out->status = st;
	for (const struct fake_rr *r = f->zone; r->type; r++)
		if (r->type == 'P' && r->data && fake_name_eq(r->name, ip) && out->n < DNS_PTR_MAX)
			snprintf(out->name[out->n++], sizeof(out->name[0]), "%s", r->data);
	return out->status = DNS_OK;
}

/* An environment whose DNS answers from zone. */
static void
fake_dns_env(struct scan_env *env, struct fake_dns *f, const struct fake_rr *zone)
{
	memset(f, 0, sizeof(*f));
	f->zone = zone;
	memset(env, 0, sizeof(*env));
	env->dns.txt = fake_txt;
	env->dns.addr = fake_addr;
	env->dns.mx = fake_mx;
	env->dns.ptr = fake_ptr;
	env->dns.ctx = f;
}

#endif
