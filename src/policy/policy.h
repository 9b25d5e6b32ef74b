/*
 * policy.h - which domains moat protects, who may receive mail there, and
 * where that mail goes.
 *
 * This is the seam between the SMTP front door and wherever policy lives.
 * Today a policy is built from the [domain] sections of the config file;
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

struct policy;

enum policy_rcpt {
	POLICY_RCPT_OK,           /* protected domain, known (or any) recipient */
	POLICY_RCPT_UNKNOWN_USER, /* protected domain, recipient not listed: 550 5.1.1 */
	POLICY_RCPT_RELAY_DENIED, /* not a protected domain: 550 5.7.1 */
};

struct policy *policy_from_config(const struct config *c);
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

#endif
