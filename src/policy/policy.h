/*
 * policy.h - which domains moat protects, who may receive mail there, and
 * where that mail goes.
 *
 * This is the seam between the SMTP front door and wherever policy lives.
 * Today a policy is built from the [domain] and [rule] sections of the
 * config file;
 * once the store exists it is built from the store (seeded from the file),
 * with the same calls. Nothing outside src/policy/ reads config domains.
 *
 * A policy is immutable and reference counted, like struct config: a
 * session keeps the one it started with.
 */
#ifndef MOAT_POLICY_H
#define MOAT_POLICY_H

#include "../common/config.h"
#include "../common/mailaddr.h"
#include "../common/route.h"
#include "rules.h"

struct policy;

enum policy_rcpt {
	POLICY_RCPT_OK,           /* protected domain, known (or any) recipient */
	POLICY_RCPT_UNKNOWN_USER, /* protected domain, recipient not listed: 550 5.1.1 */
	POLICY_RCPT_RELAY_DENIED, /* not a protected domain: 550 5.7.1 */
};

struct policy *policy_from_config(const struct config *c);

struct store;
/*
 * The policy with the administrator rules and the allow/block lists kept
 * in the store (src/store; changed through the admin API), domains,
 * routes and thresholds from the config file, plus the domains added
 * through the API. A stored rule that no longer builds is left out and
 * logged. A stored domain that no longer passes the file's checks (say
 * the thresholds or smtp_listen changed) makes it fail with
 * POLICY_STRICT (a reload then keeps the running policy), else it is left
 * out and logged (a start goes on). NULL with err when the store cannot
 * be read.
 */
#define POLICY_STRICT 0x1u
struct policy *policy_from_store(const struct config *c, struct store *s, unsigned flags, char *err,
                                 size_t errsize);
/*
 * The first start with a store writes the config file's [rule] sections
 * and allow/block lists into it, once (the setting "policy.seeded" says
 * when); after that the store is where they live, and a config file that
 * still declares some gets a notice in the log. -1 with err on failure.
 */
int policy_seed(const struct config *c, struct store *s, char *err, size_t errsize);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* Decide a recipient. Address literals and the null path are never protected. */
enum policy_rcpt policy_check_rcpt(const struct policy *p, const struct mailaddr *rcpt);

/*
 * The route for a recipient's domain: the domain's own when it is
 * protected, else delivery_default_route (reports to outside senders).
 */
const struct route *policy_route_for(const struct policy *p, const char *domain);

size_t policy_domain_count(const struct policy *p);

/* --- what the scan pipeline asks (src/scan/) --- */

/* Is domain (lower case) protected? */
bool policy_is_protected(const struct policy *p, const char *domain);
/* The i-th protected domain (sorted by name), i < policy_domain_count(). */
const char *policy_domain_name(const struct policy *p, size_t i);
/* Was it added through the admin API (the store) rather than the config file? */
bool policy_domain_stored(const struct policy *p, size_t i);
/*
 * The listed recipients of the i-th domain (lower-case local parts);
 * n = 0 when it accepts any recipient.
 */
const char *const *policy_domain_recipients(const struct policy *p, size_t i, size_t *n);

/* Thresholds for mail to domain: its own, else the global ones. */
void policy_scan_thresholds(const struct policy *p, const char *domain, double *quarantine,
                            double *reject);

enum policy_list {
	POLICY_LIST_NONE,
	POLICY_LIST_ALLOW,
	POLICY_LIST_BLOCK, /* a block entry wins over an allow entry */
};
/*
 * Is sender (local@domain, any case) on the allow or block list of
 * rcpt_domain or on the global ones? Entries are addresses or @domain
 * (that domain and its subdomains).
 */
enum policy_list policy_sender_list(const struct policy *p, const char *rcpt_domain,
                                    const char *sender);

/* The relay key configured for domain, or NULL (then derived from moat's secret). */
const char *policy_relay_key(const struct policy *p, const char *domain);

/*
 * The enabled administrator rules (rules.h), lowest priority number
 * first. They belong to the policy and live as long as it does.
 */
const struct rule *const *policy_rules(const struct policy *p, size_t *n);

#endif
