/*
 * scan.h - the scan pipeline: one message in, one verdict out.
 *
 * The SMTP session hands a finished message (before its final reply) to
 * a pool of scan workers (scan_pool.c); each worker runs scan_run() on it
 * and the verdict picks the reply: deliver (250), quarantine (250, the
 * message is committed to quarantine/), reject (550 5.7.1 with a
 * reference id: no backscatter), tempfail (451 4.7.1: a required scanner
 * is unavailable or the deadline passed; never deliver unscanned).
 * `moatctl scan` runs the same scan_run() on a file.
 *
 * Every check emits named symbols with scores (the symbols/ files, documented
 * in docs/SCAN.md); the score against the recipient domains' thresholds,
 * plus symbols that force an outcome (malware, an ambiguous MIME
 * structure, a blocked attachment), make the verdict.
 */
#ifndef MOAT_SCAN_H
#define MOAT_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../dns/dns.h"

struct config;
struct policy;
struct event_base;

enum scan_verdict {
	SCAN_DELIVER,
	SCAN_QUARANTINE,
	SCAN_REJECT,
	SCAN_TEMPFAIL,
};

/* Symbol ids: one per line of the symbols/ files. */
enum scan_sym_id {
#define SCAN_SYM(name, score, flags, doc) SYM_##name,
#include "symbols/all.def"
#undef SCAN_SYM
	SCAN_SYM_COUNT
};

/* Flags of a symbol: outcomes it forces whatever the score. */
#define SCAN_SF_QUARANTINE 0x1 /* at least quarantine (ambiguous MIME, blocked attachment) */
#define SCAN_SF_MALWARE    0x2 /* the malware_action (quarantine or reject) */
#define SCAN_SF_REJECT     0x4 /* reject (a block list) */
#define SCAN_SF_DELIVER    0x8 /* deliver despite the score (an allow list) */

struct scan_sym_def {
	const char *name;
	double score;
	unsigned flags;
	const char *doc;
};
extern const struct scan_sym_def scan_sym_defs[SCAN_SYM_COUNT];

/* Synchronous DNS for scan workers; each call ends by deadline_ms (clock_ms()). */
struct scan_dns_ops {
	/* out->txt[] strings are malloc()ed: free with scan_dns_txt_free(). */
	enum dns_status (*txt)(void *ctx, const char *name, int64_t deadline_ms,
	                       struct dns_txt_result *out);
	/* family: AF_INET or AF_INET6; only addresses of that family. */
	enum dns_status (*addr)(void *ctx, const char *name, int family, int64_t deadline_ms,
	                        struct dns_addr_result *out);
	enum dns_status (*mx)(void *ctx, const char *domain, int64_t deadline_ms,
	                      struct dns_mx_result *out);
	enum dns_status (*ptr)(void *ctx, const char *ip, int64_t deadline_ms,
	                       struct dns_ptr_result *out);
	void *ctx;
};
void scan_dns_txt_free(struct dns_txt_result *r);

/* What outlives a configuration: the resolver, moat's secret. */
struct scan_env {
	struct scan_dns_ops dns;
	unsigned char relay_secret[32]; /* per-tenant relay keys are HMACs of it */
};

struct scan_input {
	const unsigned char *msg; /* the whole message as spooled, moat's Received on top */
	size_t len;
	const char *queue_id;
	const char *client_ip; /* "192.0.2.1", "2001:db8::1" */
	const char *helo;
	const char *sender; /* canonical envelope sender, "" for <> */
	const char *const *rcpts;
	size_t nrcpts;
	bool tls;
	int64_t deadline_ms; /* clock_ms() by which the verdict must be known; 0 = none */
	/*
	 * A release from quarantine: only the MIME parse and the malware check
	 * (unless skip_malware) run; the verdict is deliver unless malware is
	 * found (quarantine) or clamd cannot answer (tempfail), and the header
	 * section carries X-Moat-Released.
	 */
	bool release;
	bool skip_malware;
};

struct scan_symbol {
	enum scan_sym_id id;
	double score;
	char *detail; /* what triggered it, e.g. the file name; NULL */
};

struct scan_result {
	enum scan_verdict verdict;
	double score;
	struct scan_symbol *syms; /* in the order emitted */
	size_t nsyms;
	/*
	 * The header section to send instead of the first head_skip octets of
	 * the message: moat's fields (Authentication-Results, X-Moat-Verdict,
	 * the relay key) followed by the original fields it keeps. head_skip
	 * is 0 when nothing is stripped (head is only moat's fields).
	 */
	char *head;
	size_t head_len;
	size_t head_skip;
	char reason[256]; /* one line for the reply and the log */
	/* for tracking and the quarantine: decoded, one line each, "" if none */
	char *subject, *from, *message_id;
	/* verdict line as in X-Moat-Verdict, for logs and the quarantine */
	char *summary;
};

/* Once per process, before the first scan_run(): GMime, libxml2, libcurl. */
void scan_init(void);

/*
 * The long-lived part (scan_env.c): calls scan_init(), starts the resolver
 * thread (dns_resolver, dns_timeout) and reads data_dir/relay.secret,
 * making it when create_secret. Create it after dropping privileges.
 */
struct scan_env *scan_env_new(const struct config *cfg, bool create_secret, char *err,
                              size_t errsize);
void scan_env_free(struct scan_env *env);

/* The relay key of domain: configured, or derived from env's secret (hex). */
void scan_relay_key(const struct scan_env *env, const struct policy *pol, const char *domain,
                    char *out, size_t size);

/*
 * Run every check on in and decide. cfg and pol are the ones the session
 * started with; env the long-lived parts. Never fails: trouble becomes a
 * tempfail verdict with a reason.
 */
void scan_run(const struct scan_env *env, const struct config *cfg, const struct policy *pol,
              const struct scan_input *in, struct scan_result *out);
void scan_result_free(struct scan_result *r);

/*
 * Shutting down: every scan in progress sees its deadline as passed, so
 * its remaining waits end at once (its verdict is tempfail).
 */
void scan_abort_all(void);

const char *scan_verdict_str(enum scan_verdict v);
/* The symbols as "NAME(score)[detail],..." into buf (truncated with "..."). */
void scan_result_symbols(const struct scan_result *r, char *buf, size_t size);

/* Print the symbols table as Markdown (docs/SCAN.md). */
void scan_print_symbols(FILE *fp);

#endif
