/*
 * m365_plan.h - what moat wants an Exchange Online tenant to look like,
 * and the cmdlets that get it there (../shared/M365.md 3; the reference
 * page's wizard and bypass-clutter rule, shared/reference/000_*.txt).
 *
 * Pure functions of (moat's side, the admin's choice, the tenant as read):
 * no I/O, so the unit tests drive them with JSON fixtures. m365_job.c reads
 * the tenant, asks for a plan, runs its steps, and asks again to check.
 *
 * The tenant snapshot is a JSON object, one key per Get- kind of
 * m365_read_kinds[] ("TransportRule", "HostedContentFilterPolicy", ...),
 * each an array of the objects the Get- cmdlet answered (Name, Identity,
 * Guid, State, Priority and the other properties, as Exchange sends them).
 * A kind whose cmdlet answered 403 with an empty body (not available, e.g.
 * Safe Links without Defender for Office 365) is JSON null; a kind not
 * read at all is absent.
 *
 * Every object moat creates has one of the names below; those names are
 * how a later run finds them again (apply twice converges: nothing is
 * created twice, changed values are put back).
 */
#ifndef MOAT_M365_PLAN_H
#define MOAT_M365_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define M365_NAME_RELAY_RULE  "moat: route inbound mail to the gateway"
#define M365_NAME_BYPASS_RULE "moat: bypass clutter for gateway mail"
#define M365_NAME_OUTBOUND    "moat: to the gateway"
#define M365_NAME_INBOUND     "moat: from the gateway"
#define M365_BYPASS_HEADER    "X-MS-Exchange-Organization-BypassClutter"

/* The Get- kinds a plan or check reads, NULL-terminated, in reading order. */
extern const char *const m365_read_kinds[];

/* The protections the "disable Exchange protection" wizard offers. */
enum m365_prot {
	M365_P_ANTISPAM = 1u << 0,
	M365_P_ANTIPHISH = 1u << 1,
	M365_P_ANTIMALWARE = 1u << 2,
	M365_P_SAFELINKS = 1u << 3,  /* Defender for Office 365 only */
	M365_P_SAFEATTACH = 1u << 4, /* Defender for Office 365 only */
	M365_P_ALL = (1u << 5) - 1,
};
/* "antispam", "antiphish", "antimalware", "safelinks", "safeattachments". */
const char *m365_prot_name(unsigned bit);
/* Bit of a name, 0 if unknown. */
unsigned m365_prot_parse(const char *name);

enum m365_mode {
	M365_MODE_NONE,  /* connectors are not moat's business here */
	M365_MODE_RELAY, /* MX stays at Microsoft; a rule routes inbound mail to moat and back */
	M365_MODE_MX,    /* MX points at moat; an inbound connector receives from it */
};
const char *m365_mode_name(enum m365_mode m);               /* "none", "relay", "mx" */
int m365_mode_parse(const char *name, enum m365_mode *out); /* -1 if unknown */

/* moat's side of the configuration (config m365_* and the policy). */
struct m365_site {
	const char *const *egress; /* moat's sending addresses: IPs or CIDRs */
	size_t negress;
	const char *host;        /* relay mode: moat's host name (smart host, TLS domain) */
	const char *cert_name;   /* inbound connector's TlsSenderCertificateName; "" or NULL:
	                            restrict by SenderIPAddresses instead */
	const char *key_header;  /* relay_key_header, "X-Moat-Relay-Key" */
	const char *const *keys; /* the relay key of every protected domain of the tenant */
	size_t nkeys;
	const char *const *domains; /* moat's protected domains that the tenant accepts */
	size_t ndomains;
};

/* What the admin chose in the wizard. */
struct m365_choice {
	unsigned protections; /* M365_P_* */
	bool bypass_rule;     /* the SCL -1 bypass-clutter rule */
	enum m365_mode mode;
	bool enhanced_filtering; /* MX mode only: EFSkipIPs instead of the bypass rule (never both)
	                          */
};

/* A condition of an offline step (the tenant was not read). */
enum m365_when {
	M365_WHEN_ALWAYS,
	M365_WHEN_ABSENT,       /* only if when_kind/when_identity does not exist */
	M365_WHEN_PRESENT,      /* only if it exists */
	M365_WHEN_EACH_ENABLED, /* once per enabled custom rule of when_kind (Identity filled in) */
};

struct m365_step {
	char *item;     /* the check item it serves: "bypass-rule", "antispam", ... */
	char *cmdlet;   /* "New-TransportRule" */
	json_t *params; /* object, in the order the script writes them */
	enum m365_when when;
	char *when_kind; /* "TransportRule" */
	char *when_identity;
	char *why; /* one line for the summary: what changes and why */
	/*
	 * What undo needs once the step succeeded, or NULL:
	 *   {"op": "created", "kind": K, "identity": NAME}
	 *   {"op": "set", "kind": K, "identity": ID, "previous": {PARAM: old value, ...}}
	 *   {"op": "disabled", "kind": K, "identity": ID}
	 */
	json_t *undo;
};

struct m365_plan {
	struct m365_step *steps;
	size_t n;
	/*
	 * Plain sentences for the summary, in order: what Microsoft does not
	 * allow switching off and what moat does instead, advice (spoof-allow
	 * entries for moat's IPs in relay mode), choices dropped (Safe Links
	 * not licensed), what was already as wanted.
	 */
	json_t *notes; /* array of strings */
};

/*
 * Desired state against tenant (NULL: offline, every step conditioned so
 * the script works on any tenant). Choices the tenant cannot have (Safe
 * Links without Defender) are dropped with a note. 0, or -1 with err
 * (egress empty when a rule or connector needs it, EFSkipIPs of private
 * addresses, ...).
 */
int m365_plan_apply(const struct m365_site *site, const struct m365_choice *ch,
                    const json_t *tenant, struct m365_plan *out, char *err, size_t errsize);

/*
 * Read the tenant back. An array of {"item", "title", "status", "detail"}
 * with status "ok", "pending" (applied in this run, applied names it in
 * the array of item names, but not visible yet: Exchange can take ~30 min),
 * "missing", "drifted" (detail names the differing properties) or
 * "skipped" (not available in this tenant).
 */
json_t *m365_plan_check(const struct m365_site *site, const struct m365_choice *ch,
                        const json_t *tenant, const json_t *applied);

/*
 * Undo: changes is the array of undo records (m365_step.undo) moat made in
 * this tenant, oldest first; the steps put back the earliest recorded
 * value of each property, re-enable what moat disabled and remove what it
 * created (newest first; what is already gone from tenant is skipped).
 */
int m365_plan_undo(const json_t *changes, const json_t *tenant, struct m365_plan *out, char *err,
                   size_t errsize);

/*
 * What the wizard shows before choosing: {"defender": bool,
 * "accepted_domains": [...], "presets": [{"kind", "name", "state"}],
 * "dehydrated": bool, "moat_objects": [{"kind", "name", "state"}],
 * "custom_rules": {"HostedContentFilterRule": n, ...}}.
 */
json_t *m365_plan_detect(const json_t *tenant);

/* The plan as JSON: {"steps": [{item, cmdlet, params, when, ...}], "notes": [...]}. */
json_t *m365_plan_json(const struct m365_plan *p);
/*
 * The plan as a PowerShell script for Connect-ExchangeOnline users: a
 * header comment, then each step as the cmdlet with its parameters
 * quoted for PowerShell ('...' with '' inside, $true/$false, @('a','b')),
 * conditions as if/else and ForEach-Object. Caller frees.
 */
char *m365_plan_script(const struct m365_plan *p);
void m365_plan_free(struct m365_plan *p);

#endif
