/*
 * dns.h - moat's DNS resolver: asynchronous lookups on a libevent loop,
 * backed by libunbound (a validating, caching resolver library).
 *
 * RFC 1035 (names, MX, TXT), RFC 3596 (AAAA), RFC 2181 (CNAME chains,
 * RRsets), RFC 5321 section 5.1 (MX: ordering, implicit MX), RFC 7505
 * (null MX), RFC 7208 section 3.3 (TXT strings are concatenated).
 *
 * One struct dns per event_base; it is not thread-safe and every call
 * and every callback happens on the loop's thread. Callbacks never run
 * inside the dns_* call that started the query, even when the query
 * fails at once (bad name syntax): they run from the loop later. A
 * callback may start new queries, cancel others, and call dns_free();
 * the result it gets is valid only until it returns, and the query
 * handle is invalid from the moment the callback starts.
 *
 * Time: each stage of a query (the MX lookup, then the address lookups
 * of its hosts; an A+AAAA pair; a TXT lookup) is bounded by timeout_ms,
 * so dns_mx() answers within twice that. A stage that runs out of time
 * reports DNS_TEMPFAIL for what it did not get, never a hard failure.
 */
#ifndef MOAT_DNS_H
#define MOAT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_query;

#define DNS_NAME_MAX  253 /* presentation form, no trailing dot (RFC 1035 2.3.4) */
#define DNS_LABEL_MAX 63
#define DNS_MX_MAX    16 /* MX hosts kept, lowest preferences first */
#define DNS_ADDR_MAX  8  /* addresses kept per host */
#define DNS_TXT_MAX   32 /* TXT records kept per name */

enum dns_status {
	DNS_OK,
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_NODATA,   /* the name exists, without records of the type asked */
	DNS_TEMPFAIL, /* SERVFAIL, timeout, network, resolver trouble: try later */
	DNS_PERMFAIL, /* bad name syntax, REFUSED, FORMERR, NOTIMP */
};

/*
 * upstream: NULL to use the servers in /etc/resolv.conf, or "IP[@PORT]"
 * to forward every query to that server. timeout_ms (> 0) bounds each
 * stage of a query (see above). Create it where it will run: libunbound
 * starts a thread at the first query, which does not survive fork().
 * Returns NULL with err set on failure.
 */
struct dns *dns_new(struct event_base *base, const char *upstream, unsigned timeout_ms, char *err,
                    size_t errsize);
/* Cancels the outstanding queries without calling their callbacks. */
void dns_free(struct dns *d);

/*
 * The labels of a name a lookup takes (1 to 253 octets, labels of 1 to 63
 * letters, digits, '-' or '_', one trailing dot allowed); 0 if invalid.
 */
size_t dns_name_labels(const char *name);

/* "ok", "nxdomain", "nodata", "tempfail", "permfail". */
const char *dns_status_str(enum dns_status st);

/*
 * Addresses have port 0. When a name has both, IPv4 and IPv6 addresses
 * alternate, IPv6 first (RFC 8305 section 4), so that DNS_ADDR_MAX keeps
 * some of each.
 */
struct dns_mx_host {
	char name[DNS_NAME_MAX + 1]; /* no trailing dot */
	unsigned pref;
	size_t naddrs;
	struct sockaddr_storage addr[DNS_ADDR_MAX];
	/*
	 * DNS_OK when naddrs > 0. Otherwise why: TEMPFAIL when a lookup
	 * failed or timed out, NXDOMAIN / NODATA when the name has no
	 * address, PERMFAIL when the target is not a host name (an IP
	 * address or a numeric last label, RFC 5321 5.1 and RFC 2181 10.3;
	 * octets other than letters, digits, '-' and '_'; escaped as \DDD
	 * in name): such a target is never looked up.
	 */
	enum dns_status addr_status;
};

/*
 * status is DNS_OK whenever the domain's MX RRset was obtained, whatever
 * became of its hosts: the caller decides (e.g. defer when no host has
 * an address and one of them is TEMPFAIL, bounce when none has one).
 * Without MX records (NODATA), the domain (its canonical name if it is
 * an alias) is its own host with preference 0 (implicit) when it has an
 * address, else status is that of its address lookup. A null MX (RFC
 * 7505: MX records whose only target is ".") gives null_mx with no
 * hosts; a "." among other MX targets is ignored. Hosts appear once, at
 * their lowest preference; of more than DNS_MX_MAX, those with the
 * lowest preferences are kept.
 */
struct dns_mx_result {
	enum dns_status status;
	bool null_mx;  /* RFC 7505: the domain accepts no mail */
	bool implicit; /* no MX records: the domain itself is the only host */
	size_t nhosts; /* sorted by preference; equal preferences in random order */
	struct dns_mx_host host[DNS_MX_MAX];
};
typedef void (*dns_mx_fn)(void *arg, const struct dns_mx_result *r);

/* MX for domain, then A and AAAA of each host in parallel. */
struct dns_query *dns_mx(struct dns *d, const char *domain, dns_mx_fn cb, void *arg);

/* status: DNS_OK when naddrs > 0, else as dns_mx_host.addr_status. */
struct dns_addr_result {
	enum dns_status status;
	uint32_t ttl; /* seconds the answer may be kept (the smallest of its lookups'), 0 unknown */
	size_t naddrs;
	struct sockaddr_storage addr[DNS_ADDR_MAX];
};
typedef void (*dns_addr_fn)(void *arg, const struct dns_addr_result *r);

/* A and AAAA of name, in parallel. */
struct dns_query *dns_addr(struct dns *d, const char *name, dns_addr_fn cb, void *arg);

/*
 * Each record's character-strings concatenated (RFC 7208 3.3), NUL
 * terminated. Records holding a NUL octet are skipped, so status can be
 * DNS_OK with n == 0. truncated: the name had more than DNS_TXT_MAX
 * records and the rest were dropped (SPF and DMARC callers should treat
 * a missing record as an error then, not as "none").
 */
struct dns_txt_result {
	enum dns_status status;
	uint32_t ttl; /* as in dns_addr_result */
	bool truncated;
	size_t n;
	char *txt[DNS_TXT_MAX];
};
typedef void (*dns_txt_fn)(void *arg, const struct dns_txt_result *r);

struct dns_query *dns_txt(struct dns *d, const char *name, dns_txt_fn cb, void *arg);

/* PTR names of an address (RFC 1035 3.5, RFC 3596 2.5), no trailing dot. */
#define DNS_PTR_MAX 8
struct dns_ptr_result {
	enum dns_status status;
	uint32_t ttl; /* as in dns_addr_result */
	size_t n;
	char name[DNS_PTR_MAX][DNS_NAME_MAX + 1];
};
typedef void (*dns_ptr_fn)(void *arg, const struct dns_ptr_result *r);

/* ip: "192.0.2.1" or "2001:db8::1"; a bad address gives DNS_PERMFAIL. */
struct dns_query *dns_ptr(struct dns *d, const char *ip, dns_ptr_fn cb, void *arg);

/*
 * Address family of the A/AAAA lookups of dns_addr(): AF_UNSPEC (both,
 * the default), AF_INET or AF_INET6. For callers that need one family
 * (SPF's a and mx mechanisms, DNS blocklists).
 */
struct dns_query *dns_addr_family(struct dns *d, const char *name, int family, dns_addr_fn cb,
                                  void *arg);

/*
 * Cancel a query whose callback has not started: the callback will not
 * run. A no-op from within the query's own callback.
 */
void dns_cancel(struct dns_query *q);

#endif
