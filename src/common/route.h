/*
 * route.h - where mail for a domain goes, and how it is protected on the way.
 *
 *   maildir                      local Maildirs under data_dir/maildir/
 *   mx                           the domain's MX hosts (RFC 5321 5.1)
 *   smtp:[host]:port, [h2]:port  smart hosts, tried in this order; brackets
 *                                (optional) say the name is a host, never
 *                                an MX domain, as in Postfix
 *
 * TLS policy per route: none (never STARTTLS), opportunistic (STARTTLS when
 * offered, any certificate), required (STARTTLS or no delivery, any
 * certificate), verify (STARTTLS, chain against tls_ca or the system
 * store, and the name: tls_name, e.g. *.mail.protection.outlook.com, or
 * the host's name). required and verify never fall back to plaintext.
 */
#ifndef MOAT_ROUTE_H
#define MOAT_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_HOSTS_MAX 8
#define ROUTE_NAME_MAX  255
#define ROUTE_KEY_MAX   (ROUTE_HOSTS_MAX * (ROUTE_NAME_MAX + 10) + 1400)

enum route_type {
	ROUTE_MAILDIR,
	ROUTE_MX,
	ROUTE_SMTP,
};

enum route_tls {
	ROUTE_TLS_NONE,
	ROUTE_TLS_OPPORTUNISTIC,
	ROUTE_TLS_REQUIRED,
	ROUTE_TLS_VERIFY,
};

struct route_host {
	char name[ROUTE_NAME_MAX + 1]; /* host name or IP address (no brackets) */
	uint16_t port;
};

struct route {
	enum route_type type;
	size_t nhosts;
	struct route_host host[ROUTE_HOSTS_MAX];
	enum route_tls tls;
	char tls_ca[1024];                 /* CA file for verify; "" = system store */
	char tls_name[ROUTE_NAME_MAX + 1]; /* expected name for verify; "" = the host */
};

/* Parse a route ("maildir", "mx", "smtp:..."); TLS fields are left alone. */
int route_parse(const char *spec, struct route *out, char *err, size_t errsize);
int route_tls_parse(const char *v, enum route_tls *out);
const char *route_tls_name(enum route_tls t);
/*
 * A string naming the destination: routes with the same key share
 * connections. For mx, the recipient domain is part of the key.
 */
void route_key(const struct route *r, const char *domain, char *buf, size_t bufsize);
/* "smtp:[a]:25, [b]:2525" etc., for logs and moatctl. */
void route_format(const struct route *r, char *buf, size_t bufsize);

#endif
