/*
 * scan_hdr.c - the raw header fields of a message, and where it came
 * from: relay mode (the last untrusted hop of the Received chain), HELO
 * checks, and incoming fields that claim to be moat's.
 *
 * RFC 5322 2.2 (header fields, folding), RFC 5321 4.4 (Received: the
 * "from" clause names the client and its address literal), RFC 8601
 * section 5 (a border MTA removes Authentication-Results fields carrying
 * its own authserv-id).
 */
#include "scan_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/cidr.h"
#include "../common/util.h"

void
scan_hdrs_split(const unsigned char *msg, size_t len, struct scan_hdrs *out)
{
	const char *p = (const char *)msg;
	size_t off = 0, cap = 0;

	memset(out, 0, sizeof(*out));
	out->body_offset = len;
	while (off < len) {
		const char *line = p + off, *colon, *eol;
		size_t end;

		if (len - off >= 2 && line[0] == '\r' && line[1] == '\n') {
			out->body_offset = off + 2;
			return;
		}
		/* a field: its first line, then every line that starts with WSP */
		end = off;
		do {
			eol = memchr(p + end, '\n', len - end);
			end = eol ? (size_t)(eol - p) + 1 : len;
		} while (end < len && (p[end] == ' ' || p[end] == '\t'));
		colon = memchr(line, ':', end - off);
		if (colon == NULL || colon == line || line[0] == ' ' || line[0] == '\t') {
			/* not a field: the header section ends here (readers disagree) */
			out->body_offset = off;
			return;
		}
		if (out->n == SCAN_HDR_MAX) {
			out->truncated = true;
			off = end;
			continue;
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 32;
			out->h = xrealloc(out->h, cap * sizeof(*out->h));
		}
		struct scan_hdr *h = &out->h[out->n++];
		h->name = line;
		h->name_len = (size_t)(colon - line);
		while (h->name_len > 0 &&
		       (line[h->name_len - 1] == ' ' || line[h->name_len - 1] == '\t'))
			h->name_len--; /* obsolete "Name :" form (RFC 5322 4.5) */
		h->value = colon + 1;
		h->value_len = (size_t)(p + end - h->value);
		if (h->value_len >= 2 && h->value[h->value_len - 2] == '\r' &&
		    h->value[h->value_len - 1] == '\n')
			h->value_len -= 2;
		else if (h->value_len >= 1 && h->value[h->value_len - 1] == '\n')
			h->value_len -= 1;
		h->offset = off;
		h->len = end - off;
		off = end;
	}
}

void
scan_hdrs_free(struct scan_hdrs *h)
{
	free(h->h);
	memset(h, 0, sizeof(*h));
}

bool
scan_hdr_is(const struct scan_hdr *h, const char *name)
{
	size_t n = strlen(name);

	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/* The authserv-id moat writes: authserv_id, else hostname. */
const char *
scan_authserv_id(const struct config *cfg)
{
	return cfg->authserv_id && cfg->authserv_id[0] ? cfg->authserv_id : cfg->hostname;
}

/* Skip RFC 5322 CFWS (comments nest, bounded). */
static const char *
scan_skip_cfws(const char *p, const char *end)
{
	unsigned depth = 0;

	while (p < end) {
		if (*p == '(' && depth < 64)
			depth++;
		else if (*p == ')' && depth > 0)
			depth--;
		else if (*p == '\\' && depth > 0 && p + 1 < end)
			p++;
		else if (depth == 0 && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			break;
		p++;
	}
	return p;
}

/* Does this Authentication-Results field carry authserv-id id? */
static bool
scan_hdr_claims_id(const struct scan_hdr *h, const char *id)
{
	const char *end = h->value + h->value_len;
	const char *p = scan_skip_cfws(h->value, end), *q;
	size_t n = strlen(id);

	/* a value (RFC 2045 token or quoted-string), a trailing dot ignored */
	if (p < end && *p == '"') {
		p++;
		for (q = p; q < end && *q != '"';)
			q++;
	} else {
		for (q = p; q < end && *q != ';' && *q != ' ' && *q != '\t' && *q != '\r' &&
		            *q != '\n' && *q != '(';)
			q++;
	}
	if (q > p && q[-1] == '.')
		q--;
	if (n > 0 && id[n - 1] == '.')
		n--;
	return n > 0 && (size_t)(q - p) == n && strncasecmp(p, id, n) == 0;
}

bool
scan_hdr_strip(const struct scan_task *t, const struct scan_hdr *h)
{
	if (scan_hdr_is(h, "Authentication-Results"))
		return scan_hdr_claims_id(h, scan_authserv_id(t->cfg));
	if (t->cfg->relay_key_header[0] && scan_hdr_is(h, t->cfg->relay_key_header))
		return true;
	/* moat's own fields: a forged verdict could steer downstream rules */
	return h->name_len > 7 && strncasecmp(h->name, "X-Moat-", 7) == 0;
}

/*
 * The client of a Received field: the name after "from" and the first
 * address literal of the from clause. false when the field has neither.
 */
static bool
scan_received_from(const struct scan_hdr *h, char *ip, size_t ipsize, char *helo, size_t helosize)
{
	const char *p = h->value, *end = h->value + h->value_len, *name, *by, *lb, *rb;
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char a[16];
	size_t n;

	p = scan_skip_cfws(p, end);
	if (end - p < 5 || strncasecmp(p, "from", 4) != 0 || (p[4] != ' ' && p[4] != '\t'))
		return false;
	p = scan_skip_cfws(p + 4, end);
	name = p;
	while (p < end && *p != ' ' && *p != '\t' && *p != '\r' && *p != '(' && *p != ';')
		p++;
	n = (size_t)(p - name);
	/* the from clause ends at " by " */
	by = p;
	while (by + 4 <= end &&
	       !((by[0] == ' ' || by[0] == '\t' || by[0] == '\n') &&
	         strncasecmp(by + 1, "by", 2) == 0 && (by[3] == ' ' || by[3] == '\t')))
		by++;
	/*
	 * The address: an address literal "[192.0.2.1]" / "[IPv6:...]"
	 * (Postfix, sendmail, moat), else a bare one in a comment
	 * "(192.0.2.1)" (Exchange Online).
	 */
	buf[0] = '\0';
	for (int pass = 0; pass < 2 && buf[0] == '\0'; pass++) {
		const char open = pass == 0 ? '[' : '(';

		for (lb = name; lb < by && buf[0] == '\0'; lb = rb) {
			if ((lb = memchr(lb, open, (size_t)(by - lb))) == NULL)
				break;
			lb++;
			for (rb = lb;
			     rb < by && *rb != ']' && *rb != ')' && *rb != ' ' && *rb != '\t';)
				rb++;
			if ((size_t)(rb - lb) > 5 && strncasecmp(lb, "IPv6:", 5) == 0)
				lb += 5;
			if (rb - lb <= 0 || (size_t)(rb - lb) >= sizeof(buf))
				continue;
			memcpy(buf, lb, (size_t)(rb - lb));
			buf[rb - lb] = '\0';
			if (inet_pton(AF_INET, buf, a) != 1 && inet_pton(AF_INET6, buf, a) != 1)
				buf[0] = '\0';
		}
	}
	if (buf[0] == '\0')
		return false;
	str_copy(ip, buf, ipsize);
	if (n >= helosize)
		n = helosize - 1;
	memcpy(helo, name, n);
	helo[n] = '\0';
	/* a name as written by a relay: keep what a HELO may hold */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)helo[i] < 0x21 || (unsigned char)helo[i] > 0x7e)
			helo[i] = '?';
	return true;
}

/* Relay mode: the last untrusted hop, from the Received fields below moat's own. */
static void
scan_origin_relayed(struct scan_task *t, const struct cidr_list *trusted)
{
	char ip[INET6_ADDRSTRLEN + 8], helo[256];
	bool first = true;

	for (size_t i = 0; i < t->hdrs.n; i++) {
		const struct scan_hdr *h = &t->hdrs.h[i];

		if (!scan_hdr_is(h, "Received"))
			continue;
		if (first) {
			first = false; /* moat's own: the trusted client itself */
			continue;
		}
		/*
		 * A field a trusted hop wrote but that names no client: the chain
		 * cannot be followed further, and what lies below may be forged.
		 */
		if (!scan_received_from(h, ip, sizeof(ip), helo, sizeof(helo)))
			break;
		if (cidr_list_match(trusted, ip))
			continue;
		str_copy(t->client_ip, ip, sizeof(t->client_ip));
		str_copy(t->helo, helo, sizeof(t->helo));
		t->relayed = true;
		scan_sym(t, SYM_MOAT_RELAYED, "%s via %s", ip, t->in->client_ip);
		return;
	}
	scan_sym(t, SYM_MOAT_RELAY_NO_HOP, "%s", t->in->client_ip);
}

static void
scan_check_helo(struct scan_task *t)
{
	unsigned char a[16];
	const char *h = t->helo;

	if (h[0] == '\0' || h[0] == '[')
		return; /* none, or an address literal */
	if (inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1)
		scan_sym(t, SYM_HELO_BARE_IP, "%s", h);
	else if (strchr(h, '.') == NULL)
		scan_sym(t, SYM_HELO_NOT_FQDN, "%s", h);
}

void
scan_check_origin(struct scan_task *t)
{

	str_copy(t->client_ip, t->in->client_ip ? t->in->client_ip : "", sizeof(t->client_ip));
	str_copy(t->helo, t->in->helo ? t->in->helo : "", sizeof(t->helo));
	if (t->cfg->trusted_relays && t->cfg->trusted_relays->n > 0 && t->client_ip[0]) {
		if (cidr_list_match(t->cfg->trusted_relays, t->client_ip))
			scan_origin_relayed(t, t->cfg->trusted_relays);
	}
	scan_check_helo(t);
	/* fields past SCAN_HDR_MAX were neither checked nor could be removed */
	if (t->hdrs.truncated)
		scan_sym(t, SYM_MIME_TOO_MANY_HEADERS, "more than %d", SCAN_HDR_MAX);
	for (size_t i = 0; i < t->hdrs.n; i++) {
		const struct scan_hdr *h = &t->hdrs.h[i];

		if (!scan_hdr_strip(t, h))
			continue;
		if (scan_hdr_is(h, "Authentication-Results"))
			scan_sym(t, SYM_MOAT_FAKE_AUTHRES, NULL);
		else if (scan_hdr_is(h, t->cfg->relay_key_header))
			scan_sym(t, SYM_MOAT_FAKE_RELAY_KEY, NULL);
	}
}
