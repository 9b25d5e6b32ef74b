/*
 * cidr.h - address ranges: "192.0.2.0/24, 2001:db8::/32, 198.51.100.7"
 * (RFC 4632 prefixes, RFC 4291 2.3 for IPv6).
 */
#ifndef MOAT_CIDR_H
#define MOAT_CIDR_H

#include <stdbool.h>
#include <stddef.h>

#define CIDR_LIST_MAX 256

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;
};

struct cidr_list {
	size_t n;
	struct cidr c[CIDR_LIST_MAX];
};

/* One "ADDR[/BITS]". 0, or -1 when malformed. */
int cidr_parse(const char *s, size_t len, struct cidr *out);
/* A comma or space separated list; -1 with the bad entry in err. */
int cidr_list_parse(const char *s, struct cidr_list *out, char *err, size_t errsize);
/* Is ip (text) inside one of the ranges? IPv4-mapped IPv6 counts as IPv4. */
bool cidr_list_match(const struct cidr_list *l, const char *ip);

#endif
