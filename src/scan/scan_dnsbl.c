/*
 * scan_dnsbl.c - DNS blocklists: the client address (DNSBL) and the
 * registered domains of the message's links (URIBL / domain blocklists).
 *
 * RFC 5782: an IPv4 address is queried as its octets reversed, an IPv6
 * address as its 32 nibbles reversed, under the zone; a domain as itself
 * under the zone; an A record in 127.0.0.0/8 means listed. RFC 1918,
 * RFC 6598, RFC 3927, RFC 4193, RFC 4291 (the address ranges skipped);
 * RFC 5737 / RFC 3849 (documentation ranges, looked up like public ones
 * so that tests can list them). RFC 5891 (a U-label link host is looked
 * up as its A-label form).
 *
 * Choices:
 *  - Zones are "zone[:weight]" comma separated (weight 1.0 by default);
 *    malformed entries are skipped here (config load reports them).
 *  - What counts as listed: an answer in 127.0.0.0/8, except the codes
 *    lists use to say "not answered": 127.255.255.0/24 (Spamhaus: query
 *    through a public resolver, over the free limit, typo in the zone),
 *    a last octet of 255 (Spamhaus DBL 127.0.1.255: IP queries refused)
 *    and 127.0.0.1 (URIBL.com: query refused; never a listing code in
 *    RFC 5782). Answers outside 127/8 (a resolver that rewrites NXDOMAIN)
 *    never list.
 *  - Loopback, private, shared (CGNAT), link-local, unspecified and
 *    multicast clients are not looked up: no list knows them.
 *  - A zone's weight is added once per message: further listed link
 *    domains on the same zone add their detail only.
 *  - Lookup failures (timeouts included) are ignored: a blocklist is
 *    never a required service. Every lookup is bounded by dns_timeout
 *    and the task's deadline.
 */
#include "scan_internal.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

#define DNSBL_ZONES_MAX    16  /* zones of one setting used */
#define DNSBL_ENTRY_MAX    300 /* octets of one "zone:weight" entry */
#define DNSBL_WEIGHT_LIMIT 1000.0
#define URIBL_DOMAINS_MAX  20 /* distinct link domains looked up per message */
#define DNSBL_CODES_MAX    4  /* answer codes quoted in a detail */

struct dnsbl_zone {
	char name[DNS_NAME_MAX + 1];
	double weight;
};

static bool
dnsbl_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A lower-case name of labels of 1 to 63 label characters (no trailing dot). */
static bool
dnsbl_name_ok(const char *s)
{
	size_t label = 0, len = strnlen(s, DNS_NAME_MAX + 1);

	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (!dnsbl_label_char(s[i]) || ++label > DNS_LABEL_MAX) {
			return false;
		}
	}
	return label > 0;
}

/* One "zone[:weight]" entry (trimmed) into z; false when malformed. */
static bool
dnsbl_parse_entry(const char *s, size_t len, struct dnsbl_zone *z)
{
	char buf[DNSBL_ENTRY_MAX + 1], *colon, *end;

	while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len > DNSBL_ENTRY_MAX)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	z->weight = 1.0;
	colon = strchr(buf, ':');
	if (colon != NULL) {
		*colon = '\0';
		if (colon[1] == '\0')
			return false;
		z->weight = strtod(colon + 1, &end);
		if (*end != '\0' || !isfinite(z->weight) || fabs(z->weight) > DNSBL_WEIGHT_LIMIT)
			return false;
	}
	len = strlen(buf);
	if (len > 1 && buf[len - 1] == '.')
		buf[--len] = '\0';
	str_lower(buf);
	if (!dnsbl_name_ok(buf))
		return false;
	str_copy(z->name, buf, sizeof(z->name));
	return true;
}

/* The zones of a setting, malformed entries skipped; returns how many. */
static size_t
dnsbl_parse_zones(const char *spec, struct dnsbl_zone *z, size_t max)
{
	size_t n = 0;

	if (spec == NULL)
		return 0;
	while (*spec && n < max) {
		size_t len = strcspn(spec, ",");

		if (dnsbl_parse_entry(spec, len, &z[n]))
			n++;
		spec += len;
		if (*spec == ',')
			spec++;
	}
	return n;
}

/* A listing code (see the top of the file) of one answer, into code. */
static bool
dnsbl_listed(const struct sockaddr_storage *ss, char *code, size_t size)
{
	const unsigned char *a;

	if (ss->ss_family != AF_INET)
		return false;
	a = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
	if (a[0] != 127 || a[3] == 255 || (a[1] == 255 && a[2] == 255) ||
	    (a[1] == 0 && a[2] == 0 && a[3] == 1))
		return false;
	snprintf(code, size, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	return true;
}

/*
 * Look name up; when listed, the codes ("127.0.0.2/127.0.0.4") into
 * codes. Failures are "not listed".
 */
static bool
dnsbl_query(struct scan_task *t, const char *name, char *codes, size_t size)
{
	struct dns_addr_result r;
	size_t used = 0, ncodes = 0;

	codes[0] = '\0';
	if (scan_dns_addr(t, name, AF_INET, &r) != DNS_OK)
		return false;
	for (size_t i = 0; i < r.naddrs && ncodes < DNSBL_CODES_MAX; i++) {
		char code[16];
		size_t l;

		if (!dnsbl_listed(&r.addr[i], code, sizeof(code)))
			continue;
		l = strlen(code);
		if (used + l + 2 > size)
			break;
		if (ncodes++ > 0)
			codes[used++] = '/';
		memcpy(codes + used, code, l + 1);
		used += l;
	}
	return ncodes > 0;
}

/* Is a (IPv4, network order) an address no list knows? */
static bool
dnsbl_v4_skip(const unsigned char *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224 ||
	       (a[0] == 100 && (a[1] & 0xc0) == 64) || /* 100.64.0.0/10 */
	       (a[0] == 169 && a[1] == 254) || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	       (a[0] == 192 && a[1] == 168);
}

static bool
dnsbl_v6_skip(const unsigned char *a)
{
	static const unsigned char zero[15];

	if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
		return true; /* :: and ::1 */
	return a[0] == 0xff || (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/*
 * The query name of the client under zone into out (reversed octets or
 * nibbles); false when the client is not to be looked up.
 */
static bool
dnsbl_ip_name(const char *ip, const char *zone, char *out, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned char a[16];
	char rev[80];
	size_t used = 0;

	if (inet_pton(AF_INET, ip, a) == 1) {
		/* v4 */
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			memmove(a, a + 12, 4);
		} else {
			if (dnsbl_v6_skip(a))
				return false;
			for (int i = 15; i >= 0; i--) {
				rev[used++] = hex[a[i] & 0xf];
				rev[used++] = '.';
				rev[used++] = hex[a[i] >> 4];
				rev[used++] = '.';
			}
			rev[used - 1] = '\0';
			return path_fmt(out, size, "%s.%s", rev, zone);
		}
	} else {
		return false;
	}
	if (dnsbl_v4_skip(a))
		return false;
	return path_fmt(out, size, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], zone);
}

static void
dnsbl_check_ip(struct scan_task *t)
{
	struct dnsbl_zone zones[DNSBL_ZONES_MAX];
	size_t nzones = dnsbl_parse_zones(t->cfg->dnsbl_zones, zones, DNSBL_ZONES_MAX);
	char name[DNS_NAME_MAX + 1], codes[80];

	for (size_t i = 0; i < nzones && scan_remaining_ms(t) > 0; i++) {
		if (!dnsbl_ip_name(t->client_ip, zones[i].name, name, sizeof(name)))
			return;
		if (dnsbl_query(t, name, codes, sizeof(codes)))
			scan_sym_score(t, SYM_DNSBL_IP, zones[i].weight, "%s=%s", zones[i].name,
			               codes);
	}
}

/* The registered domain of a link host (A-label form) into out. */
static bool
dnsbl_link_domain(const char *host, char *out, size_t size)
{
	char buf[DNS_NAME_MAX + 2], *ace = NULL;
	size_t len = strnlen(host, sizeof(buf));
	bool ascii = true;

	if (len == 0 || len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)host[i] >= 0x80)
			ascii = false;
	if (ascii) {
		memcpy(buf, host, len + 1);
	} else {
		if (idn2_to_ascii_8z(host, &ace, IDN2_NONTRANSITIONAL) != IDN2_OK)
			return false;
		len = str_copy(buf, ace, sizeof(buf));
		idn2_free(ace);
		if (len >= sizeof(buf))
			return false;
	}
	if (len > 1 && buf[len - 1] == '.')
		buf[--len] = '\0';
	str_lower(buf);
	if (!dnsbl_name_ok(buf))
		return false;
	return scan_org_domain(buf, out, size);
}

static void
dnsbl_check_links(struct scan_task *t)
{
	struct dnsbl_zone zones[DNSBL_ZONES_MAX];
	size_t nzones = dnsbl_parse_zones(t->cfg->uribl_zones, zones, DNSBL_ZONES_MAX);
	char domains[URIBL_DOMAINS_MAX][DNS_NAME_MAX + 1], name[DNS_NAME_MAX + 1], codes[80];
	size_t ndomains = 0, nurls = t->msg.nurls < SCAN_URL_MAX ? t->msg.nurls : SCAN_URL_MAX;
	bool zone_hit[DNSBL_ZONES_MAX] = {false};

	if (nzones == 0 || t->msg.urls == NULL)
		return;
	for (size_t i = 0; i < nurls; i++) {
		const struct scan_url *u = &t->msg.urls[i];
		char d[DNS_NAME_MAX + 1];
		bool seen = false;

		if (u->ip_literal || u->host == NULL || !dnsbl_link_domain(u->host, d, sizeof(d)))
			continue;
		for (size_t k = 0; k < ndomains && !seen; k++)
			seen = strcmp(domains[k], d) == 0;
		if (seen)
			continue;
		if (ndomains == URIBL_DOMAINS_MAX) {
			/* harmless domains first must not hide a listed one */
			scan_sym(t, SYM_URL_LIMIT, "more than %d link domains", URIBL_DOMAINS_MAX);
			break;
		}
		str_copy(domains[ndomains++], d, sizeof(domains[0]));
	}
	for (size_t k = 0; k < ndomains; k++) {
		for (size_t i = 0; i < nzones && scan_remaining_ms(t) > 0; i++) {
			if (!path_fmt(name, sizeof(name), "%s.%s", domains[k], zones[i].name))
				continue;
			if (!dnsbl_query(t, name, codes, sizeof(codes)))
				continue;
			scan_sym_score(t, SYM_URIBL_DOMAIN, zone_hit[i] ? 0.0 : zones[i].weight,
			               "%s:%s=%s", zones[i].name, domains[k], codes);
			zone_hit[i] = true;
		}
	}
}

void
scan_check_dnsbl(struct scan_task *t)
{
	if (t->cfg == NULL)
		return;
	dnsbl_check_ip(t);
	dnsbl_check_links(t);
}
