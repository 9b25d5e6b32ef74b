/*
 * fuzz_scan.c - libFuzzer target for the whole scan pipeline (src/scan/):
 * raw header fields, GMime's MIME model, links and HTML, SPF/DKIM/ARC/
 * DMARC over a resolver that answers every name from the input's first
 * line, attachments and archives, phishing, GTUBE, the verdict and the
 * header section.
 *
 * The message gets what the SMTP layer guarantees: CRLF line ends only
 * (a bare LF becomes CRLF, a bare CR is dropped); any octet otherwise.
 *
 * Invariants: a verdict from the enum; every symbol once, with a finite
 * score; the header section ends in CRLF (unless it is the whole
 * message), has no bare CR or LF, and
 * replaces at most the message's own header section; reject and tempfail
 * build no header section.
 */
#include "fuzz_check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/policy.h"
#include "scan/scan_internal.h"

/* The TXT answer for every name: the input's first line (SPF, DMARC, DKIM key records). */
static char fuzz_txt[512];

static enum dns_status
fuzz_dns_txt(void *ctx, const char *name, int64_t deadline_ms, struct dns_txt_result *out)
{
	if (fuzz_txt[0] == '\0')
		return DNS_NXDOMAIN;
	out->txt[0] = xstrdup(fuzz_txt);
	out->n = 1;
	return DNS_OK;
}

static enum dns_status
fuzz_dns_addr(void *ctx, const char *name, int family, int64_t deadline_ms,
              struct dns_addr_result *out)
{
	return DNS_NXDOMAIN;
}

static enum dns_status
fuzz_dns_mx(void *ctx, const char *domain, int64_t deadline_ms, struct dns_mx_result *out)
{
	return DNS_TEMPFAIL;
}

static enum dns_status
fuzz_dns_ptr(void *ctx, const char *ip, int64_t deadline_ms, struct dns_ptr_result *out)
{
	return DNS_NXDOMAIN;
}

static struct config *fuzz_cfg;
static struct policy *fuzz_pol;
static struct scan_env fuzz_env = {
        .dns = {fuzz_dns_txt, fuzz_dns_addr, fuzz_dns_mx, fuzz_dns_ptr, NULL},
};

static void
fuzz_init(void)
{
	char err[256], path[] = "/tmp/fuzz_scan_XXXXXX";
	static const char conf[] = "hostname = mx.moat.test\n"
	                           "scan_trusted_relays = 127.0.0.0/8\n"
	                           "scan_allow_senders = @partner.example\n"
	                           "[domain example.test]\nrecipients = ceo, alice.smith\n";
	int fd = mkstemp(path);

	log_init("fuzz", LOG_TARGET_STDERR, LOG_LEVEL_ERROR);
	if (fd < 0 || write(fd, conf, sizeof(conf) - 1) != (ssize_t)(sizeof(conf) - 1))
		abort();
	close(fd);
	if ((fuzz_cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	unlink(path);
	fuzz_pol = policy_from_config(fuzz_cfg);
	scan_init();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *rcpts[] = {"ceo@example.test", "x@other.test"};
	struct scan_input in = {0};
	struct scan_result r;
	const uint8_t *nl = memchr(data, '\n', size < 511 ? size : 511);
	bool seen[SCAN_SYM_COUNT] = {0};

	if (fuzz_cfg == NULL)
		fuzz_init();
	fuzz_txt[0] = '\0';
	if (nl) {
		size_t n = (size_t)(nl - data);
		memcpy(fuzz_txt, data, n);
		fuzz_txt[n] = '\0';
		if (strlen(fuzz_txt) != n)
			fuzz_txt[0] = '\0'; /* the resolver drops records with a NUL */
		size -= n + 1;
		data = nl + 1;
	}
	/* CRLF only, as the SMTP layer delivers it */
	unsigned char *msg = xmalloc(2 * size + 1);
	size_t len = 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n'))
			continue;
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			msg[len++] = '\r';
		msg[len++] = data[i];
	}
	in.msg = msg;
	in.len = len;
	in.queue_id = "0123456789abcdef";
	in.client_ip = "127.0.0.1";
	in.helo = "client.example";
	in.sender = "a@partner.example";
	in.rcpts = rcpts;
	in.nrcpts = 2;
	scan_run(&fuzz_env, fuzz_cfg, fuzz_pol, &in, &r);
	CHECK(r.verdict >= SCAN_DELIVER && r.verdict <= SCAN_TEMPFAIL);
	CHECK(isfinite(r.score));
	for (size_t i = 0; i < r.nsyms; i++) {
		CHECK(r.syms[i].id < SCAN_SYM_COUNT && !seen[r.syms[i].id]);
		seen[r.syms[i].id] = true;
		CHECK(isfinite(r.syms[i].score));
	}
	if (r.verdict == SCAN_REJECT || r.verdict == SCAN_TEMPFAIL)
		CHECK(r.head == NULL);
	if (r.head) {
		/* (the message's last field may end without CRLF at the end of the input) */
		CHECK(r.head_skip == len ||
		      (r.head_len >= 2 && memcmp(r.head + r.head_len - 2, "\r\n", 2) == 0));
		for (size_t i = 0; i < r.head_len; i++) {
			if (r.head[i] == '\r')
				CHECK(i + 1 < r.head_len && r.head[i + 1] == '\n');
			if (r.head[i] == '\n')
				CHECK(i > 0 && r.head[i - 1] == '\r');
		}
		CHECK(r.head_skip <= len);
	}
	CHECK(r.summary != NULL);
	scan_result_free(&r);
	free(msg);
	return 0;
}
