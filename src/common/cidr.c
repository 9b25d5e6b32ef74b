/*
 * cidr.c - address ranges (see cidr.h).
 */
#include "cidr.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int
cidr_parse(const char *s, size_t len, struct cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	uint64_t bits;
	size_t alen;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	alen = slash ? (size_t)(slash - buf) : len;
	buf[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->bits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		out->bits = 128;
	} else {
		return -1;
	}
	if (slash) {
		if (parse_u64(slash + 1, strlen(slash + 1), out->bits, &bits) < 0)
			return -1;
		out->bits = (unsigned)bits;
	}
	return 0;
}

int
cidr_list_parse(const char *s, struct cidr_list *out, char *err, size_t errsize)
{
	out->n = 0;
	while (s && *s) {
		size_t len;

		s += strspn(s, " \t,");
		len = strcspn(s, " \t,");
		if (len == 0)
			break;
		if (out->n == CIDR_LIST_MAX) {
			snprintf(err, errsize, "more than %d ranges", CIDR_LIST_MAX);
			return -1;
		}
		if (cidr_parse(s, len, &out->c[out->n]) < 0) {
			snprintf(err, errsize, "'%.*s' is not an address or ADDRESS/BITS",
			         (int)(len > 64 ? 64 : len), s);
			return -1;
		}
		out->n++;
		s += len;
	}
	return 0;
}

static bool
cidr_contains(const struct cidr *c, int family, const unsigned char *a)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (c->family != family)
		return false;
	if (memcmp(c->addr, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (a[full] & mask);
}

bool
cidr_list_match(const struct cidr_list *l, const char *ip)
{
	unsigned char a[16];
	int family;

	if (inet_pton(AF_INET, ip, a) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		family = AF_INET6;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, mapped, 12) == 0) {
			memmove(a, a + 12, 4);
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n; i++)
		if (cidr_contains(&l->c[i], family, a))
			return true;
	return false;
}
