/*
 * route.c - parse and name delivery routes (see route.h).
 */
#include "route.h"
#include "mailaddr.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const char *const route_tls_names[] = {
        [ROUTE_TLS_NONE] = "none",
        [ROUTE_TLS_OPPORTUNISTIC] = "opportunistic",
        [ROUTE_TLS_REQUIRED] = "required",
        [ROUTE_TLS_VERIFY] = "verify",
};

int
route_tls_parse(const char *v, enum route_tls *out)
{
	for (size_t i = 0; i < nitems(route_tls_names); i++) {
		if (strcmp(v, route_tls_names[i]) == 0) {
			*out = (enum route_tls)i;
			return 0;
		}
	}
	return -1;
}

const char *
route_tls_name(enum route_tls t)
{
	return route_tls_names[t];
}

/* A host name (LDH labels) or an IPv4/IPv6 address. */
static bool
route_host_ok(const char *h)
{
	unsigned char buf[16];
	struct mailaddr a;
	char probe[ROUTE_NAME_MAX + 16];

	if (inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1)
		return true;
	if (!path_fmt(probe, sizeof(probe), "postmaster@%s", h))
		return false;
	return mailaddr_parse(probe, strlen(probe), MAILADDR_F_NO_ANGLES, &a, NULL) ==
	               MAILADDR_OK &&
	       !a.literal;
}

/* "[host]:port", "[host]", "host:port", "host", "[2001:db8::1]:25" */
static int
route_parse_host(const char *s, struct route_host *h, char *err, size_t errsize)
{
	const char *end, *port = NULL;
	size_t n;
	uint64_t p = 25;

	if (*s == '[') {
		if ((end = strchr(s, ']')) == NULL)
			goto bad;
		n = (size_t)(end - s - 1);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			goto bad;
		s++;
	} else {
		const char *colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			goto bad; /* IPv6 needs brackets */
		n = colon ? (size_t)(colon - s) : strlen(s);
		port = colon ? colon + 1 : NULL;
	}
	if (n == 0 || n > ROUTE_NAME_MAX)
		goto bad;
	memcpy(h->name, s, n);
	h->name[n] = '\0';
	str_lower(h->name);
	if (port != NULL && (parse_u64(port, strlen(port), 65535, &p) < 0 || p == 0))
		goto bad;
	h->port = (uint16_t)p;
	if (!route_host_ok(h->name))
		goto bad;
	return 0;
bad:
	snprintf(err, errsize, "'%s' is not [host]:port", s);
	return -1;
}

int
route_parse(const char *spec, struct route *out, char *err, size_t errsize)
{
	char buf[4096], *p, *item;

	out->nhosts = 0;
	if (strcmp(spec, "maildir") == 0) {
		out->type = ROUTE_MAILDIR;
		return 0;
	}
	if (strcmp(spec, "mx") == 0) {
		out->type = ROUTE_MX;
		return 0;
	}
	if (strncmp(spec, "smtp:", 5) != 0) {
		snprintf(err, errsize, "'%s' is not maildir, mx or smtp:[host]:port,...", spec);
		return -1;
	}
	out->type = ROUTE_SMTP;
	str_copy(buf, spec + 5, sizeof(buf));
	for (p = buf; (item = strsep(&p, ",")) != NULL;) {
		while (*item == ' ' || *item == '\t')
			item++;
		for (char *e = item + strlen(item); e > item && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		if (*item == '\0')
			continue;
		if (out->nhosts == ROUTE_HOSTS_MAX) {
			snprintf(err, errsize, "more than %d smart hosts", ROUTE_HOSTS_MAX);
			return -1;
		}
		if (route_parse_host(item, &out->host[out->nhosts], err, errsize) < 0)
			return -1;
		out->nhosts++;
	}
	if (out->nhosts == 0) {
		snprintf(err, errsize, "smtp: needs at least one [host]:port");
		return -1;
	}
	return 0;
}

void
route_format(const struct route *r, char *buf, size_t bufsize)
{
	size_t o;

	switch (r->type) {
	case ROUTE_MAILDIR:
		str_copy(buf, "maildir", bufsize);
		return;
	case ROUTE_MX:
		str_copy(buf, "mx", bufsize);
		return;
	case ROUTE_SMTP:
		break;
	}
	o = str_copy(buf, "smtp:", bufsize);
	for (size_t i = 0; i < r->nhosts && o < bufsize; i++) {
		int n = snprintf(buf + o, bufsize - o, "%s[%s]:%u", i ? ", " : "", r->host[i].name,
		                 r->host[i].port);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

void
route_key(const struct route *r, const char *domain, char *buf, size_t bufsize)
{
	char hosts[ROUTE_KEY_MAX];

	route_format(r, hosts, sizeof(hosts));
	snprintf(buf, bufsize, "%s%s%s tls=%s ca=%s name=%s", hosts, r->type == ROUTE_MX ? ":" : "",
	         r->type == ROUTE_MX ? domain : "", route_tls_name(r->tls), r->tls_ca, r->tls_name);
}
