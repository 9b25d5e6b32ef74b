/*
 * m365_plan.c - what moat wants an Exchange Online tenant to look like and
 * the cmdlets that get it there (m365_plan.h; ../shared/M365.md 3; the
 * reference page's "disable Exchange protection" wizard and its
 * bypass-clutter mail-flow rule).
 *
 * One builder serves apply and check. Each item (one check entry:
 * "bypass-rule", "antispam", ...) compares the tenant snapshot with a list
 * of wanted properties, each with the way Exchange compares it (a set of
 * IPs, a case-insensitive enum, a case-sensitive header name), and adds a
 * step that changes only what differs, with a one-line why, an undo record
 * of the previous values, and one detail per difference for check. With
 * no snapshot (offline, for the script) the same builders emit steps
 * conditioned on what exists, so the script works on any tenant.
 *
 * What moat wants is data: the item, kind and protection tables below and
 * a wanted-property list per object. Transport rule priorities are played
 * through a small model of Exchange's renumbering (setting a used priority
 * shifts the others) so that the plan knows where the bypass rule ends up
 * relative to the relay rule.
 */
#include "m365_plan.h"
#include "m365_plan_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/cidr.h"
#include "../common/log.h"
#include "../common/util.h"

#define PLAN_STEPS_MAX 5000 /* steps of one plan (a tenant with more custom rules is refused) */
#define LINE_MAX_      512  /* one why, detail or note */
#define SHOW_MAX       200  /* one value shown inside a why */
#define WANT_MAX       16   /* wanted properties of one object */
#define IDENT_MAX      256  /* an identity in an undo record */
#define EGRESS_MAX     256  /* egress entries */

const char *const m365_read_kinds[] = {
        "AcceptedDomain",
        "OrganizationConfig",
        "TransportRule",
        "InboundConnector",
        "OutboundConnector",
        "HostedContentFilterPolicy",
        "HostedContentFilterRule",
        "AntiPhishPolicy",
        "AntiPhishRule",
        "MalwareFilterPolicy",
        "MalwareFilterRule",
        "EOPProtectionPolicyRule",
        /* Defender for Office 365: JSON null when not licensed */
        "SafeLinksPolicy",
        "SafeLinksRule",
        "SafeAttachmentPolicy",
        "SafeAttachmentRule",
        "ATPBuiltInProtectionRule",
        "ATPProtectionPolicyRule",
        NULL,
};

/* --- items: one check entry each, in the order a plan changes them --- */

enum item_id {
	IT_CUSTOMIZATION,
	IT_OUTBOUND,
	IT_INBOUND,
	IT_BYPASS,
	IT_NO_BYPASS,
	IT_RELAY,
	IT_RULE_ORDER,
	IT_ANTISPAM,
	IT_ANTIPHISH,
	IT_ANTIMALWARE,
	IT_SAFELINKS,
	IT_SAFEATTACH,
	IT_BUILTIN,
	IT_PRESETS,
	IT_UNDO,
	IT_N,
};

static const struct item_def {
	const char *name;
	const char *title;
} item_defs[IT_N] = {
        [IT_CUSTOMIZATION] = {"customization",
                              "Organization customization (needed to change protection policies)"},
        [IT_OUTBOUND] = {"outbound-connector", "Outbound connector to moat (relay mode)"},
        [IT_INBOUND] = {"inbound-connector", "Inbound connector from moat"},
        [IT_BYPASS] = {"bypass-rule", "Bypass-clutter rule for mail from moat (SCL -1)"},
        [IT_NO_BYPASS] = {"no-bypass-rule", "No SCL -1 bypass rule next to Enhanced Filtering"},
        [IT_RELAY] = {"relay-rule", "Relay rule routing inbound mail to moat"},
        [IT_RULE_ORDER] = {"rule-order", "Bypass rule ordered after the relay rule"},
        [IT_ANTISPAM] = {"antispam", "Anti-spam: custom rules off, default policy relaxed"},
        [IT_ANTIPHISH] = {"antiphish", "Anti-phishing: custom rules off, default policy relaxed"},
        [IT_ANTIMALWARE] = {"antimalware",
                            "Anti-malware: custom rules off, file filter and ZAP off"},
        [IT_SAFELINKS] = {"safelinks", "Safe Links: custom rules off"},
        [IT_SAFEATTACH] = {"safeattachments", "Safe Attachments: custom rules and policies off"},
        [IT_BUILTIN] = {"builtin-protection", "Built-in protection: moat's domains excepted"},
        [IT_PRESETS] = {"presets", "Standard and Strict preset security policies off"},
        [IT_UNDO] = {"undo", "Undo moat's changes"},
};

/* --- kinds --- */

enum {
	K_CUSTOM = 1u << 0,   /* changes need Enable-OrganizationCustomization first */
	K_DEFENDER = 1u << 1, /* Defender for Office 365 only */
	K_STATE = 1u << 2,    /* a rule: Enable-/Disable- */
	K_REMOVE = 1u << 3,   /* Remove- */
	K_SET = 1u << 4,      /* Set- */
};

static const struct kind_def {
	const char *kind;
	unsigned flags;
	enum item_id item; /* what an undo step on it serves */
} kind_defs[] = {
        {"AcceptedDomain", 0, IT_UNDO},
        {"OrganizationConfig", 0, IT_CUSTOMIZATION},
        {"TransportRule", K_STATE | K_REMOVE | K_SET, IT_UNDO},
        {"InboundConnector", K_REMOVE | K_SET, IT_INBOUND},
        {"OutboundConnector", K_REMOVE | K_SET, IT_OUTBOUND},
        {"HostedContentFilterPolicy", K_CUSTOM | K_REMOVE | K_SET, IT_ANTISPAM},
        {"HostedContentFilterRule", K_CUSTOM | K_STATE | K_REMOVE | K_SET, IT_ANTISPAM},
        {"AntiPhishPolicy", K_CUSTOM | K_REMOVE | K_SET, IT_ANTIPHISH},
        {"AntiPhishRule", K_CUSTOM | K_STATE | K_REMOVE | K_SET, IT_ANTIPHISH},
        {"MalwareFilterPolicy", K_CUSTOM | K_REMOVE | K_SET, IT_ANTIMALWARE},
        {"MalwareFilterRule", K_CUSTOM | K_STATE | K_REMOVE | K_SET, IT_ANTIMALWARE},
        {"EOPProtectionPolicyRule", K_STATE | K_SET, IT_PRESETS},
        {"SafeLinksPolicy", K_CUSTOM | K_DEFENDER | K_REMOVE | K_SET, IT_SAFELINKS},
        {"SafeLinksRule", K_CUSTOM | K_DEFENDER | K_STATE | K_REMOVE | K_SET, IT_SAFELINKS},
        {"SafeAttachmentPolicy", K_CUSTOM | K_DEFENDER | K_REMOVE | K_SET, IT_SAFEATTACH},
        {"SafeAttachmentRule", K_CUSTOM | K_DEFENDER | K_STATE | K_REMOVE | K_SET, IT_SAFEATTACH},
        {"ATPBuiltInProtectionRule", K_DEFENDER | K_SET, IT_BUILTIN},
        {"ATPProtectionPolicyRule", K_DEFENDER | K_STATE | K_SET, IT_PRESETS},
};

static const struct kind_def *
kind_find(const char *kind)
{
	for (size_t i = 0; kind && i < nitems(kind_defs); i++)
		if (strcmp(kind_defs[i].kind, kind) == 0)
			return &kind_defs[i];
	return NULL;
}

static unsigned
kind_flags(const char *kind)
{
	const struct kind_def *k = kind_find(kind);

	return k ? k->flags : 0;
}

bool
m365_kind_defender(const char *kind)
{
	return (kind_flags(kind) & K_DEFENDER) != 0;
}

bool
m365_kind_stateful(const char *kind)
{
	return (kind_flags(kind) & K_STATE) != 0;
}

/* --- protections: what "disable" means for each (M365.md 3) --- */

/* A wanted setting of a default policy: a string enum, or the boolean flag when str is NULL. */
struct prop_def {
	const char *param;
	const char *str;
	bool flag;
};

static const struct prop_def antispam_props[] = {
        {"SpamAction", "MoveToJmf", false},     {"HighConfidenceSpamAction", "MoveToJmf", false},
        {"BulkSpamAction", "MoveToJmf", false}, {"MarkAsSpamBulkMail", "Off", false},
        {"SpamZapEnabled", NULL, false},        {"PhishZapEnabled", NULL, false},
};

static const struct prop_def antiphish_props[] = {
        {"EnableSpoofIntelligence", NULL, false},
        {"HonorDmarcPolicy", NULL, false},
        {"EnableUnauthenticatedSender", NULL, false},
        {"EnableFirstContactSafetyTips", NULL, false},
};

static const struct prop_def antimalware_props[] = {
        {"EnableFileFilter", NULL, false},
        {"ZapEnabled", NULL, false},
};

#define EOP_PRESETS "EOPProtectionPolicyRule"
#define ATP_PRESETS "ATPProtectionPolicyRule"
#define ATP_BUILTIN "ATP Built-In Protection Rule"

static const struct prot_def {
	unsigned bit;
	const char *name;
	enum item_id item;
	const char *label; /* for whys and notes */
	const char *policy_kind, *rule_kind;
	const char *default_identity; /* offline: the default policy's well-known identity */
	const struct prop_def *props; /* wanted on the default policy */
	size_t nprops;
	bool custom_policies_off; /* also Set- -Enable $false on custom policies */
	const char *preset_kind;
	const char *note; /* what Microsoft does not allow switching off, plainly */
} prot_defs[] = {
        {M365_P_ANTISPAM, "antispam", IT_ANTISPAM, "anti-spam", "HostedContentFilterPolicy",
         "HostedContentFilterRule", "Default", antispam_props, nitems(antispam_props), false,
         EOP_PRESETS,
         "Anti-spam: Microsoft's default anti-spam policy cannot be switched off. moat turns off "
         "custom anti-spam rules and relaxes the default policy (spam to Junk, bulk mail not "
         "marked, "
         "no zero-hour auto purge); the real bypass is an SCL -1 rule such as moat's "
         "bypass-clutter "
         "rule."},
        {M365_P_ANTIPHISH, "antiphish", IT_ANTIPHISH, "anti-phishing", "AntiPhishPolicy",
         "AntiPhishRule", "Office365 AntiPhish Default", antiphish_props, nitems(antiphish_props),
         false, EOP_PRESETS,
         "Anti-phishing: the default policy cannot be switched off. moat turns off custom "
         "anti-phishing rules and, on the default policy, spoof intelligence (Microsoft: only when "
         "another service filters the domain, which moat does), honouring DMARC, unauthenticated-"
         "sender marks and first-contact tips."},
        {M365_P_ANTIMALWARE, "antimalware", IT_ANTIMALWARE, "anti-malware", "MalwareFilterPolicy",
         "MalwareFilterRule", "Default", antimalware_props, nitems(antimalware_props), false,
         EOP_PRESETS,
         "Anti-malware: Microsoft always quarantines malware and this cannot be switched off, not "
         "even for mail moat has scanned or released. moat only turns off custom anti-malware "
         "rules, "
         "the common-attachments filter and zero-hour auto purge of malware."},
        {M365_P_SAFELINKS, "safelinks", IT_SAFELINKS, "Safe Links", "SafeLinksPolicy",
         "SafeLinksRule", NULL, NULL, 0, false, ATP_PRESETS,
         "Safe Links: moat turns off custom Safe Links rules, so links are not wrapped twice."},
        {M365_P_SAFEATTACH, "safeattachments", IT_SAFEATTACH, "Safe Attachments",
         "SafeAttachmentPolicy", "SafeAttachmentRule", NULL, NULL, 0, true, ATP_PRESETS,
         "Safe Attachments: moat turns off custom Safe Attachments rules and policies."},
};

static const char *const preset_names[] = {
        "Standard Preset Security Policy",
        "Strict Preset Security Policy",
};

const char *
m365_prot_name(unsigned bit)
{
	for (size_t i = 0; i < nitems(prot_defs); i++)
		if (prot_defs[i].bit == bit)
			return prot_defs[i].name;
	return NULL;
}

unsigned
m365_prot_parse(const char *name)
{
	for (size_t i = 0; name && i < nitems(prot_defs); i++)
		if (strcmp(prot_defs[i].name, name) == 0)
			return prot_defs[i].bit;
	return 0;
}

static const char *const mode_names[] = {
        [M365_MODE_NONE] = "none",
        [M365_MODE_RELAY] = "relay",
        [M365_MODE_MX] = "mx",
};

const char *
m365_mode_name(enum m365_mode m)
{
	return (unsigned)m < nitems(mode_names) ? mode_names[m] : NULL;
}

int
m365_mode_parse(const char *name, enum m365_mode *out)
{
	for (size_t i = 0; name && i < nitems(mode_names); i++) {
		if (strcmp(mode_names[i], name) == 0) {
			*out = (enum m365_mode)i;
			return 0;
		}
	}
	return -1;
}

/* --- text --- */

/*
 * Make s one line, in place: each control character and each Unicode line
 * break (U+0085, U+2028, U+2029) becomes one space.
 */
static void
text_clean(char *s)
{
	unsigned char *r = (unsigned char *)s, *w = r;

	while (*r) {
		if (*r < 0x20 || *r == 0x7f) {
			r++;
		} else if (r[0] == 0xc2 && r[1] == 0x85) {
			r += 2;
		} else if (r[0] == 0xe2 && r[1] == 0x80 && (r[2] == 0xa8 || r[2] == 0xa9)) {
			r += 3;
		} else {
			*w++ = *r++;
			continue;
		}
		*w++ = ' ';
	}
	*w = '\0';
}

static bool
text_is_clean(const char *s)
{
	char buf[IDENT_MAX + 1];

	if (strlen(s) > IDENT_MAX)
		return false;
	str_copy(buf, s, sizeof(buf));
	text_clean(buf);
	return strcmp(buf, s) == 0;
}

/* A bounded line that says "..." where it was cut. */
struct line {
	char s[LINE_MAX_];
	size_t len;
};

static void
line_add(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->s) - 1 - l->len;

	if (n > room) {
		n = room > 3 ? room - 3 : 0;
		memcpy(l->s + l->len, s, n);
		l->len += n;
		while (l->len < sizeof(l->s) - 1)
			l->s[l->len++] = '.';
	} else {
		memcpy(l->s + l->len, s, n);
		l->len += n;
	}
	l->s[l->len] = '\0';
}

static void line_printf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
line_printf(struct line *l, const char *fmt, ...)
{
	char tmp[LINE_MAX_];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	line_add(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A value as the admin reads it: lists joined with ", ", null as "not set". */
static void
show_value(struct line *l, const json_t *v)
{
	struct line one = {.len = 0};

	if (v == NULL || json_is_null(v)) {
		line_printf(&one, "not set");
	} else if (json_is_string(v)) {
		line_printf(&one, "%s", json_string_length(v) ? json_string_value(v) : "empty");
	} else if (json_is_boolean(v)) {
		line_printf(&one, "%s", json_is_true(v) ? "true" : "false");
	} else if (json_is_integer(v)) {
		line_printf(&one, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_array(v)) {
		if (json_array_size(v) == 0)
			line_printf(&one, "none");
		for (size_t i = 0; i < json_array_size(v); i++) {
			struct line e = {.len = 0};

			show_value(&e, json_array_get(v, i));
			line_printf(&one, "%s%s", i ? ", " : "", e.s);
		}
	} else {
		line_printf(&one, "(a value)");
	}
	if (one.len > SHOW_MAX) {
		one.len = SHOW_MAX - 3;
		memcpy(one.s + one.len, "...", 4);
		one.len += 3;
	}
	line_add(l, one.s, one.len);
}

/* --- the snapshot --- */

/* The objects of kind: an array, or NULL when not read (absent) or not available (null). */
static const json_t *
kind_objs(const json_t *tenant, const char *kind)
{
	const json_t *a = tenant ? json_object_get(tenant, kind) : NULL;

	return json_is_array(a) ? a : NULL;
}

/* Did kind's Get- answer 403 with an empty body (JSON null)? */
static bool
kind_unavailable(const json_t *tenant, const char *kind)
{
	return tenant && json_is_null(json_object_get(tenant, kind));
}

static const char *
obj_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool
json_to_bool(const json_t *v, bool *out)
{
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return true;
	}
	if (json_is_string(v) &&
	    (str_ieq(json_string_value(v), "true") || str_ieq(json_string_value(v), "false"))) {
		*out = str_ieq(json_string_value(v), "true");
		return true;
	}
	return false;
}

static bool
obj_true(const json_t *o, const char *key)
{
	bool b;

	return json_to_bool(json_object_get(o, key), &b) && b;
}

static bool
json_to_int(const json_t *v, long long *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		bool neg = s[0] == '-';
		uint64_t u;

		if (parse_u64(s + neg, strlen(s + neg), (uint64_t)1 << 40, &u) < 0)
			return false;
		*out = neg ? -(long long)u : (long long)u;
		return true;
	}
	return false;
}

/* The name an admin knows an object by. */
static const char *
obj_label(const json_t *o)
{
	const char *s = obj_str(o, "Name");

	if (s == NULL)
		s = obj_str(o, "Identity");
	if (s == NULL)
		s = obj_str(o, "Guid");
	return s ? s : "?";
}

/*
 * The identity a cmdlet should be given for o: its Identity or Name, or
 * its Guid when those carry line breaks (so the script can name it too).
 */
static const char *
obj_identity(const json_t *o)
{
	const char *id = obj_str(o, "Identity");
	const char *guid = obj_str(o, "Guid");

	if (id == NULL || id[0] == '\0')
		id = obj_str(o, "Name");
	if (id && id[0] && text_is_clean(id))
		return id;
	if (guid && guid[0] && text_is_clean(guid))
		return guid;
	return id ? id : obj_label(o);
}

static bool
obj_is(const json_t *o, const char *name)
{
	static const char *const keys[] = {"Name", "Identity", "Guid"};

	for (size_t i = 0; i < nitems(keys); i++) {
		const char *s = obj_str(o, keys[i]);

		if (s && str_ieq(s, name))
			return true;
	}
	return false;
}

static const json_t *
find_obj(const json_t *tenant, const char *kind, const char *name)
{
	const json_t *a = kind_objs(tenant, kind);

	for (size_t i = 0; a && i < json_array_size(a); i++)
		if (obj_is(json_array_get(a, i), name))
			return json_array_get(a, i);
	return NULL;
}

static bool
rule_enabled(const json_t *o)
{
	const char *st = obj_str(o, "State");

	return st && str_ieq(st, "Enabled");
}

static bool
tenant_dehydrated(const json_t *tenant)
{
	const json_t *org = kind_objs(tenant, "OrganizationConfig");

	return org && obj_true(json_array_get(org, 0), "IsDehydrated");
}

/* --- moat's egress addresses --- */

/* An address range as [lo, hi] in IPv6 space (IPv4 as ::ffff:a.b.c.d). */
struct range {
	unsigned char lo[16], hi[16];
	bool v4;       /* IPv4, or IPv4-mapped IPv6 */
	unsigned bits; /* prefix length in its own family; 0 for a-b ranges */
};

/* c as a range: host bits cleared in lo, set in hi ("198.51.100.5/24" is .0 to .255). */
static void
cidr_to_range(const struct cidr *c, struct range *r)
{
	unsigned bits = c->bits;

	memset(r->lo, 0, sizeof(r->lo));
	if (c->family == AF_INET) {
		r->lo[10] = r->lo[11] = 0xff;
		memcpy(r->lo + 12, c->addr, 4);
		bits += 96;
	} else {
		memcpy(r->lo, c->addr, 16);
	}
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
		unsigned char mask = (unsigned char)(0xff00u >> keep);

		r->hi[i] = (unsigned char)(r->lo[i] | (unsigned char)~mask);
		r->lo[i] &= mask;
	}
	r->v4 = bits >= 96 && memcmp(r->lo, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
	r->bits = r->v4 ? bits - 96 : bits;
}

/* "192.0.2.1", "192.0.2.0/24" or "2001:db8::/48", as config's cidr_list_parse takes them. */
static int
range_parse(const char *s, struct range *r)
{
	struct cidr a;

	if (cidr_parse(s, strlen(s), &a) < 0)
		return -1;
	cidr_to_range(&a, r);
	return 0;
}

/*
 * A value read from the tenant: also "192.0.2.1-192.0.2.9", which
 * SenderIpRanges and ExceptIfSenderIpRanges accept (an admin may have
 * edited moat's rule so); moat's own egress list never has one.
 */
static int
range_parse_tenant(const char *s, struct range *r)
{
	const char *dash = strchr(s, '-');
	struct cidr a, z;
	struct range rz;

	if (dash == NULL)
		return range_parse(s, r);
	if (strchr(s, '/') || cidr_parse(s, (size_t)(dash - s), &a) < 0 ||
	    cidr_parse(dash + 1, strlen(dash + 1), &z) < 0 || a.family != z.family)
		return -1;
	cidr_to_range(&a, r);
	cidr_to_range(&z, &rz);
	if (memcmp(r->lo, rz.hi, 16) > 0)
		return -1;
	memcpy(r->hi, rz.hi, 16);
	r->bits = 0;
	return 0;
}

/* Address space that is not on the Internet (RFC 1918, RFC 6598, RFC 4193, ...). */
static const char *const nonpublic_nets[] = {
        "0.0.0.0/8",      "10.0.0.0/8",    "100.64.0.0/10",  "127.0.0.0/8",
        "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "::/128",
        "::1/128",        "fc00::/7",      "fe80::/10",
};

static bool
range_public(const struct range *r)
{
	for (size_t i = 0; i < nitems(nonpublic_nets); i++) {
		struct range n;

		if (range_parse(nonpublic_nets[i], &n) < 0)
			fatalx("m365_plan: bad built-in network %s", nonpublic_nets[i]);
		if (memcmp(r->lo, n.hi, 16) <= 0 && memcmp(n.lo, r->hi, 16) <= 0)
			return false;
	}
	return true;
}

struct egress {
	bool all_public;  /* no entry touches private space: EFSkipIPs accepts them */
	const char *wide; /* the first IPv4 entry wider than /24, or NULL */
};

/*
 * Check moat's egress list (needed by what): 0, or -1 with err. It comes
 * from config's m365_egress (cidr_list_parse): addresses and CIDR ranges,
 * host bits and case as the admin wrote them.
 */
static int
egress_check(const struct m365_site *site, const char *what, struct egress *e, char *err,
             size_t errsize)
{
	memset(e, 0, sizeof(*e));
	e->all_public = true;
	if (site->negress == 0 || site->egress == NULL) {
		snprintf(err, errsize, "no egress addresses: %s needs moat's sending IPs", what);
		return -1;
	}
	if (site->negress > EGRESS_MAX) {
		snprintf(err, errsize, "more than %d egress addresses", EGRESS_MAX);
		return -1;
	}
	for (size_t i = 0; i < site->negress; i++) {
		struct range r;

		if (site->egress[i] == NULL || range_parse(site->egress[i], &r) < 0) {
			snprintf(err, errsize,
			         "egress '%.64s' is not an IP address or a CIDR range",
			         site->egress[i] ? site->egress[i] : "");
			return -1;
		}
		if (!range_public(&r))
			e->all_public = false;
		if (r.v4 && r.bits < 24 && e->wide == NULL)
			e->wide = site->egress[i];
	}
	return 0;
}

/* A relay key goes into a regex and a header: 16 to 128 letters, digits, '-' or '_' (config.c). */
static bool
key_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;

	return n >= 16 && n <= 128 &&
	       strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

static bool
header_name_ok(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	return n >= 1 && n <= 64 &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

static bool
host_ok(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	return n >= 1 && n <= 253 &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

static json_t *
json_strings(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* --- wanted properties and how Exchange compares them --- */

enum cmp {
	CMP_STR,      /* string, case-sensitive (header names and values of SetHeader*) */
	CMP_ISTR,     /* string, case-insensitive (enums, host names) */
	CMP_INT,      /* a number (Exchange may answer "-1") */
	CMP_BOOL,     /* a boolean (or "True") */
	CMP_SET,      /* a multi-valued property: same members, any order, any case */
	CMP_IPSET,    /* a set of address ranges: same ranges, however written */
	CMP_SUPERSET, /* a multi-valued property that must hold these (others kept) */
	CMP_CLEAR,    /* must be unset/false/empty; not sent to New- */
};

struct want {
	const char *param;
	json_t *value;
	enum cmp cmp;
};

struct wantlist {
	struct want w[WANT_MAX];
	size_t n;
};

static void
want_add(struct wantlist *l, const char *param, json_t *value, enum cmp cmp)
{
	if (l->n == WANT_MAX)
		fatalx("m365_plan: more than %d wanted properties", WANT_MAX);
	l->w[l->n++] = (struct want){param, value, cmp};
}

static void
wantlist_free(struct wantlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		json_decref(l->w[i].value);
	l->n = 0;
}

static const struct want *
want_get(const struct wantlist *l, const char *param)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->w[i].param, param) == 0)
			return &l->w[i];
	return NULL;
}

/* Parameters Exchange wants together: changing one sends both. */
static const char *const param_pairs[][2] = {
        {"SetHeaderName", "SetHeaderValue"},
        {"HeaderMatchesMessageHeader", "HeaderMatchesPatterns"},
        {"ExceptIfHeaderContainsMessageHeader", "ExceptIfHeaderContainsWords"},
};

/* Does the multi-valued have (array, one string, or nothing) hold s, case-insensitively? */
static bool
set_has(const json_t *have, const char *s)
{
	if (json_is_string(have))
		return str_ieq(json_string_value(have), s);
	for (size_t i = 0; json_is_array(have) && i < json_array_size(have); i++) {
		const char *e = json_string_value(json_array_get(have, i));

		if (e && str_ieq(e, s))
			return true;
	}
	return false;
}

static bool
set_has_all(const json_t *have, const json_t *want)
{
	if (json_is_string(want))
		return set_has(have, json_string_value(want));
	for (size_t i = 0; json_is_array(want) && i < json_array_size(want); i++) {
		const char *e = json_string_value(json_array_get(want, i));

		if (e && !set_has(have, e))
			return false;
	}
	return true;
}

/*
 * Are a and b the same address range? "198.51.100.5/24" is
 * "198.51.100.0/24", "2001:DB8::1" is "2001:db8:0:0:0:0:0:1" and
 * "192.0.2.10/32" is "192.0.2.10"; what does not parse is compared as text.
 */
static bool
range_same(const char *a, const char *b)
{
	struct range ra, rb;

	if (range_parse_tenant(a, &ra) == 0 && range_parse_tenant(b, &rb) == 0)
		return memcmp(ra.lo, rb.lo, 16) == 0 && memcmp(ra.hi, rb.hi, 16) == 0;
	return str_ieq(a, b);
}

static bool
ipset_has(const json_t *have, const char *s)
{
	if (json_is_string(have))
		return range_same(json_string_value(have), s);
	for (size_t i = 0; json_is_array(have) && i < json_array_size(have); i++) {
		const char *e = json_string_value(json_array_get(have, i));

		if (e && range_same(e, s))
			return true;
	}
	return false;
}

static bool
ipset_has_all(const json_t *have, const json_t *want)
{
	if (json_is_string(want))
		return ipset_has(have, json_string_value(want));
	for (size_t i = 0; json_is_array(want) && i < json_array_size(want); i++) {
		const char *e = json_string_value(json_array_get(want, i));

		if (e && !ipset_has(have, e))
			return false;
	}
	return true;
}

static bool
value_empty(const json_t *v)
{
	return v == NULL || json_is_null(v) || json_is_false(v) ||
	       (json_is_string(v) &&
	        (json_string_length(v) == 0 || str_ieq(json_string_value(v), "false"))) ||
	       (json_is_array(v) && json_array_size(v) == 0);
}

static bool
want_differs(const struct want *w, const json_t *have)
{
	long long a, b;
	bool hb;

	switch (w->cmp) {
	case CMP_STR:
		return !(json_is_string(have) &&
		         strcmp(json_string_value(have), json_string_value(w->value)) == 0);
	case CMP_ISTR:
		return !(json_is_string(have) &&
		         str_ieq(json_string_value(have), json_string_value(w->value)));
	case CMP_INT:
		return !(json_to_int(have, &a) && json_to_int(w->value, &b) && a == b);
	case CMP_BOOL:
		return !(json_to_bool(have, &hb) && hb == json_is_true(w->value));
	case CMP_SET:
		return !(set_has_all(have, w->value) && set_has_all(w->value, have));
	case CMP_IPSET:
		return !(ipset_has_all(have, w->value) && ipset_has_all(w->value, have));
	case CMP_SUPERSET:
		return !set_has_all(have, w->value);
	case CMP_CLEAR:
		return !value_empty(have);
	}
	return true;
}

/* What to send for w given have: a superset keeps what is there and adds the rest. */
static json_t *
want_send(const struct want *w, const json_t *have)
{
	json_t *u;

	if (w->cmp != CMP_SUPERSET)
		return json_deep_copy(w->value);
	u = json_array();
	if (json_is_string(have))
		json_array_append_new(u, json_string(json_string_value(have)));
	for (size_t i = 0; json_is_array(have) && i < json_array_size(have); i++)
		if (json_is_string(json_array_get(have, i)))
			json_array_append_new(u, json_deep_copy(json_array_get(have, i)));
	for (size_t i = 0; i < json_array_size(w->value); i++) {
		const char *e = json_string_value(json_array_get(w->value, i));

		if (e && !set_has(u, e))
			json_array_append_new(u, json_string(e));
	}
	return u;
}

/* "SetSCL is 0, want -1" (check) and "SetSCL -1 (now 0)" (why). */
static void
want_describe(const struct want *w, const json_t *have, struct line *detail, struct line *fix)
{
	if (w->cmp == CMP_SUPERSET) {
		json_t *lack = json_array();

		for (size_t i = 0; i < json_array_size(w->value); i++) {
			const char *e = json_string_value(json_array_get(w->value, i));

			if (e && !set_has(have, e))
				json_array_append_new(lack, json_string(e));
		}
		line_printf(detail, "%s lacks ", w->param);
		show_value(detail, lack);
		line_printf(fix, "add ");
		show_value(fix, lack);
		line_printf(fix, " to %s", w->param);
		json_decref(lack);
		return;
	}
	line_printf(detail, "%s is ", w->param);
	show_value(detail, have);
	if (w->cmp == CMP_CLEAR) {
		line_printf(detail, ", want it cleared");
		line_printf(fix, "clear %s (now ", w->param);
	} else {
		line_printf(detail, ", want ");
		show_value(detail, w->value);
		line_printf(fix, "%s ", w->param);
		show_value(fix, w->value);
		line_printf(fix, " (now ");
	}
	show_value(fix, have);
	line_printf(fix, ")");
}

/* --- transport rule order, as Exchange renumbers it --- */

struct order {
	const char **names;
	size_t n, cap;
};

static void
order_insert(struct order *o, const char *name, size_t pos)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 16;
		o->names = xrealloc(o->names, o->cap * sizeof(*o->names));
	}
	if (pos > o->n)
		pos = o->n;
	memmove(o->names + pos + 1, o->names + pos, (o->n - pos) * sizeof(*o->names));
	o->names[pos] = name;
	o->n++;
}

static long
order_index(const struct order *o, const char *name)
{
	for (size_t i = 0; i < o->n; i++)
		if (str_ieq(o->names[i], name))
			return (long)i;
	return -1;
}

static void
order_remove(struct order *o, const char *name)
{
	long i = order_index(o, name);

	if (i < 0)
		return;
	memmove(o->names + i, o->names + i + 1, (o->n - (size_t)i - 1) * sizeof(*o->names));
	o->n--;
}

/* Set-TransportRule -Priority: the rule moves there, the others shift. */
static void
order_move(struct order *o, const char *name, size_t pos)
{
	order_remove(o, name);
	order_insert(o, name, pos);
}

static void
order_init(struct order *o, const json_t *tenant)
{
	const json_t *rules = kind_objs(tenant, "TransportRule");
	size_t n = rules ? json_array_size(rules) : 0;
	long long *pri;

	memset(o, 0, sizeof(*o));
	if (n == 0)
		return;
	pri = xcalloc(n, sizeof(*pri));
	for (size_t i = 0; i < n; i++) {
		const json_t *r = json_array_get(rules, i);
		long long p;
		size_t at = o->n;

		if (!json_to_int(json_object_get(r, "Priority"), &p))
			p = (long long)i;
		while (at > 0 && pri[at - 1] > p) { /* stable insertion by priority */
			pri[at] = pri[at - 1];
			at--;
		}
		order_insert(o, obj_label(r), at);
		pri[at] = p;
	}
	free(pri);
}

/* --- the builder --- */

struct item_state {
	bool wanted;     /* the choice asks for it */
	bool skipped;    /* not available in this tenant */
	bool missing;    /* its object does not exist */
	bool failed;     /* moat's side lacks what it needs (check mode) */
	json_t *details; /* the differences */
	json_t *skips;   /* left alone on purpose (a preset partly chosen): skipped, unless
	                    something differs */
};

struct build {
	const struct m365_site *site;
	const struct m365_choice *ch;
	const json_t *tenant; /* NULL: offline */
	bool check;           /* keep going past an item's error */
	bool defender;
	bool want_bypass; /* the bypass rule, unless Enhanced Filtering replaces it */
	bool ef;          /* Enhanced Filtering on moat's inbound connector */
	struct m365_plan *out;
	size_t cap;
	struct item_state items[IT_N];
	struct order order;
	char *err;
	size_t errsize;
};

static void
build_init(struct build *b, const struct m365_site *site, const struct m365_choice *ch,
           const json_t *tenant, struct m365_plan *out, char *err, size_t errsize)
{
	memset(b, 0, sizeof(*b));
	memset(out, 0, sizeof(*out));
	out->notes = json_array();
	b->site = site;
	b->ch = ch;
	b->tenant = tenant;
	b->out = out;
	b->err = err;
	b->errsize = errsize;
	for (size_t i = 0; i < IT_N; i++) {
		b->items[i].details = json_array();
		b->items[i].skips = json_array();
	}
	order_init(&b->order, tenant);
}

static void
build_free(struct build *b)
{
	for (size_t i = 0; i < IT_N; i++) {
		json_decref(b->items[i].details);
		json_decref(b->items[i].skips);
	}
	free(b->order.names);
}

static void note_add(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
note_add(struct build *b, const char *fmt, ...)
{
	char buf[2 * LINE_MAX_];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	text_clean(buf);
	json_array_append_new(b->out->notes, json_string(buf));
}

static void detail_add(struct build *b, enum item_id it, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
detail_add(struct build *b, enum item_id it, const char *fmt, ...)
{
	char buf[LINE_MAX_];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	text_clean(buf);
	json_array_append_new(b->items[it].details, json_string(buf));
}

static void
item_skip(struct build *b, enum item_id it, const char *why)
{
	b->items[it].skipped = true;
	detail_add(b, it, "%s", why);
}

static struct m365_step *step_add(struct build *b, enum item_id item, const char *cmdlet,
                                  json_t *params, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* Append a step (params is taken over); why is fmt. */
static struct m365_step *
step_add(struct build *b, enum item_id item, const char *cmdlet, json_t *params, const char *fmt,
         ...)
{
	struct m365_plan *p = b->out;
	struct m365_step *s;
	char why[LINE_MAX_];
	va_list ap;

	if (p->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		p->steps = xrealloc(p->steps, b->cap * sizeof(*p->steps));
	}
	s = &p->steps[p->n++];
	memset(s, 0, sizeof(*s));
	s->item = xstrdup(item_defs[item].name);
	s->cmdlet = xstrdup(cmdlet);
	s->params = params;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	text_clean(why);
	s->why = xstrdup(why);
	return s;
}

static void
step_when(struct m365_step *s, enum m365_when when, const char *kind, const char *identity)
{
	s->when = when;
	s->when_kind = kind ? xstrdup(kind) : NULL;
	s->when_identity = identity ? xstrdup(identity) : NULL;
}

static json_t *
undo_rec(const char *op, const char *kind, const char *identity)
{
	return json_pack("{s:s, s:s, s:s}", "op", op, "kind", kind, "identity", identity);
}

static const char *
cmdlet_name(char *buf, size_t size, const char *verb, const char *kind)
{
	snprintf(buf, size, "%s-%s", verb, kind);
	return buf;
}

/*
 * Set- on an existing object only what differs from wl: one step (or
 * none), its undo the previous values, one detail per difference. verb
 * opens each change in the why ("put back" on moat's own objects).
 */
static void
plan_set(struct build *b, enum item_id item, const char *kind, const char *identity,
         const json_t *obj, const struct wantlist *wl, const char *label, const char *verb)
{
	bool differs[WANT_MAX] = {false}, send[WANT_MAX] = {false};
	json_t *params, *prev;
	struct line why = {.len = 0};
	struct m365_step *s;
	char cmd[96];
	size_t ndiff = 0;

	for (size_t i = 0; i < wl->n; i++) {
		differs[i] = send[i] =
		        want_differs(&wl->w[i], json_object_get(obj, wl->w[i].param));
		ndiff += differs[i];
	}
	if (ndiff == 0)
		return;
	for (size_t p = 0; p < nitems(param_pairs); p++) {
		for (size_t i = 0; i < wl->n; i++) {
			for (int k = 0; k < 2; k++) {
				if (!differs[i] || strcmp(wl->w[i].param, param_pairs[p][k]) != 0)
					continue;
				for (size_t j = 0; j < wl->n; j++)
					if (strcmp(wl->w[j].param, param_pairs[p][1 - k]) == 0)
						send[j] = true;
			}
		}
	}
	params = json_pack("{s:s}", "Identity", identity);
	prev = json_object();
	line_printf(&why, "%s: %s ", label, verb);
	ndiff = 0;
	for (size_t i = 0; i < wl->n; i++) {
		const struct want *w = &wl->w[i];
		const json_t *have = json_object_get(obj, w->param);

		if (!send[i])
			continue;
		json_object_set_new(params, w->param, want_send(w, have));
		json_object_set_new(prev, w->param, have ? json_deep_copy(have) : json_null());
		if (differs[i]) {
			struct line detail = {.len = 0}, fix = {.len = 0};

			want_describe(w, have, &detail, &fix);
			detail_add(b, item, "%s", detail.s);
			line_printf(&why, "%s%s", ndiff++ ? "; " : "", fix.s);
		}
		if (strcmp(kind, "TransportRule") == 0 && strcmp(w->param, "Priority") == 0) {
			long long p;

			if (json_to_int(w->value, &p) && p >= 0)
				order_move(&b->order, identity, (size_t)p);
		}
	}
	s = step_add(b, item, cmdlet_name(cmd, sizeof(cmd), "Set", kind), params, "%s", why.s);
	if (b->tenant) {
		s->undo = undo_rec("set", kind, identity);
		json_object_set_new(s->undo, "previous", prev);
	} else {
		json_decref(prev);
	}
}

/* One of moat's own objects (a connector or a transport rule), found by its name. */
struct moat_obj {
	enum item_id item;
	const char *kind;
	const char *name;
	const char *label; /* "the bypass-clutter rule" */
	const char *create_why;
	bool rule; /* has a State: created enabled, re-enabled if disabled */
};

static json_t *
moat_new_params(const struct moat_obj *o, const struct wantlist *wl)
{
	json_t *params = json_pack("{s:s}", "Name", o->name);

	for (size_t i = 0; i < wl->n; i++)
		if (wl->w[i].cmp != CMP_CLEAR)
			json_object_set_new(params, wl->w[i].param, json_deep_copy(wl->w[i].value));
	if (o->rule)
		json_object_set_new(params, "Enabled", json_true());
	return params;
}

static void
plan_object(struct build *b, const struct moat_obj *o, const struct wantlist *wl)
{
	const json_t *obj;
	struct m365_step *s;
	char cmd[96];

	b->items[o->item].wanted = true;
	if (b->tenant == NULL) {
		json_t *params = json_pack("{s:s}", "Identity", o->name);

		s = step_add(b, o->item, cmdlet_name(cmd, sizeof(cmd), "New", o->kind),
		             moat_new_params(o, wl), "%s", o->create_why);
		step_when(s, M365_WHEN_ABSENT, o->kind, o->name);
		for (size_t i = 0; i < wl->n; i++)
			json_object_set_new(params, wl->w[i].param, json_deep_copy(wl->w[i].value));
		s = step_add(b, o->item, cmdlet_name(cmd, sizeof(cmd), "Set", o->kind), params,
		             "if it exists already: put back every setting of %s", o->label);
		step_when(s, M365_WHEN_PRESENT, o->kind, o->name);
		if (o->rule) {
			s = step_add(b, o->item, cmdlet_name(cmd, sizeof(cmd), "Enable", o->kind),
			             json_pack("{s:s}", "Identity", o->name),
			             "if it exists already: make sure %s is on", o->label);
			step_when(s, M365_WHEN_PRESENT, o->kind, o->name);
		}
		return;
	}
	obj = find_obj(b->tenant, o->kind, o->name);
	if (obj == NULL) {
		const struct want *pw = want_get(wl, "Priority");
		long long p;

		s = step_add(b, o->item, cmdlet_name(cmd, sizeof(cmd), "New", o->kind),
		             moat_new_params(o, wl), "%s", o->create_why);
		s->undo = undo_rec("created", o->kind, o->name);
		b->items[o->item].missing = true;
		detail_add(b, o->item, "%s does not exist", o->label);
		if (strcmp(o->kind, "TransportRule") == 0) {
			if (pw && json_to_int(pw->value, &p) && p >= 0)
				order_insert(&b->order, o->name, (size_t)p);
			else
				order_insert(&b->order, o->name, b->order.n);
		}
		return;
	}
	plan_set(b, o->item, o->kind, o->name, obj, wl, o->label, "put back");
	if (o->rule && !rule_enabled(obj)) {
		const char *st = obj_str(obj, "State");

		detail_add(b, o->item, "State is %s, want Enabled", st ? st : "not set");
		step_add(b, o->item, cmdlet_name(cmd, sizeof(cmd), "Enable", o->kind),
		         json_pack("{s:s}", "Identity", o->name), "turn %s back on (it is %s)",
		         o->label, st ? st : "not enabled");
	}
}

/* Fail the item: apply stops, check reports it and goes on. */
static int
item_fail(struct build *b, enum item_id it)
{
	if (!b->check)
		return -1;
	b->items[it].failed = true;
	detail_add(b, it, "%s", b->err);
	return 0;
}

static json_t *
key_patterns(const struct m365_site *site)
{
	json_t *a = json_array();

	for (size_t i = 0; i < site->nkeys; i++) {
		char *p = xasprintf("^%s$", site->keys[i]);

		json_array_append_new(a, json_string(p));
		free(p);
	}
	return a;
}

static int
keys_check(const struct m365_site *site, const char *what, char *err, size_t errsize)
{
	if (!header_name_ok(site->key_header)) {
		snprintf(err, errsize, "%s needs moat's relay key header name (relay_key_header)",
		         what);
		return -1;
	}
	for (size_t i = 0; i < site->nkeys; i++) {
		if (!key_ok(site->keys[i])) {
			snprintf(err, errsize,
			         "relay key %zu is not 16 to 128 letters, digits, '-' or '_'",
			         i + 1);
			return -1;
		}
	}
	return 0;
}

/* The reference page's bypass-clutter rule, keyed on moat's per-tenant header. */
static int
plan_bypass(struct build *b)
{
	static const struct moat_obj o = {
	        IT_BYPASS,
	        "TransportRule",
	        M365_NAME_BYPASS_RULE,
	        "the bypass-clutter rule",
	        "create the bypass-clutter rule: mail from moat's IPs that carries moat's key "
	        "header gets SCL -1 and " M365_BYPASS_HEADER ": true",
	        true,
	};
	const struct m365_site *site = b->site;
	struct wantlist wl = {.n = 0};
	struct egress e;

	b->items[IT_BYPASS].wanted = true;
	if (egress_check(site, "the bypass rule", &e, b->err, b->errsize) < 0)
		return item_fail(b, IT_BYPASS);
	if (site->nkeys == 0 || site->keys == NULL) {
		snprintf(b->err, b->errsize,
		         "no relay keys: the bypass rule matches only mail carrying moat's "
		         "per-tenant "
		         "key, so every protected domain needs a relay_key");
		return item_fail(b, IT_BYPASS);
	}
	if (keys_check(site, "the bypass rule", b->err, b->errsize) < 0)
		return item_fail(b, IT_BYPASS);
	want_add(&wl, "SenderIpRanges", json_strings(site->egress, site->negress), CMP_IPSET);
	want_add(&wl, "HeaderMatchesMessageHeader", json_string(site->key_header), CMP_ISTR);
	want_add(&wl, "HeaderMatchesPatterns", key_patterns(site), CMP_SET);
	want_add(&wl, "SetSCL", json_integer(-1), CMP_INT);
	want_add(&wl, "SetHeaderName", json_string(M365_BYPASS_HEADER), CMP_STR);
	want_add(&wl, "SetHeaderValue", json_string("true"), CMP_STR);
	want_add(&wl, "StopRuleProcessing", json_true(), CMP_BOOL);
	plan_object(b, &o, &wl);
	wantlist_free(&wl);
	return 0;
}

/* Enhanced Filtering replaces the bypass rule: one from an earlier run goes. */
static void
plan_no_bypass(struct build *b)
{
	struct m365_step *s;

	b->items[IT_NO_BYPASS].wanted = true;
	if (b->tenant == NULL) {
		s = step_add(b, IT_NO_BYPASS, "Remove-TransportRule",
		             json_pack("{s:s}", "Identity", M365_NAME_BYPASS_RULE),
		             "remove moat's bypass rule if an earlier run made it: Enhanced "
		             "Filtering is used instead (never both)");
		step_when(s, M365_WHEN_PRESENT, "TransportRule", M365_NAME_BYPASS_RULE);
		return;
	}
	if (find_obj(b->tenant, "TransportRule", M365_NAME_BYPASS_RULE) == NULL)
		return;
	detail_add(b, IT_NO_BYPASS, "moat's bypass rule exists next to Enhanced Filtering");
	step_add(b, IT_NO_BYPASS, "Remove-TransportRule",
	         json_pack("{s:s}", "Identity", M365_NAME_BYPASS_RULE),
	         "remove moat's bypass rule from an earlier run: Enhanced Filtering is used "
	         "instead (never both)");
	order_remove(&b->order, M365_NAME_BYPASS_RULE);
	note_add(b,
	         "moat's bypass rule from an earlier run is removed: with Enhanced Filtering on, "
	         "Microsoft says an SCL -1 rule must not be used.");
}

static int
plan_outbound(struct build *b)
{
	static const struct moat_obj o = {
	        IT_OUTBOUND,
	        "OutboundConnector",
	        M365_NAME_OUTBOUND,
	        "the outbound connector to moat",
	        "create the outbound connector that the relay rule routes inbound mail through "
	        "to moat",
	        false,
	};
	const char *host = b->site->host;
	struct wantlist wl = {.n = 0};

	b->items[IT_OUTBOUND].wanted = true;
	if (!host_ok(host)) {
		snprintf(b->err, b->errsize,
		         "relay mode needs moat's host name (the smart host and TLS domain)");
		return item_fail(b, IT_OUTBOUND);
	}
	want_add(&wl, "ConnectorType", json_string("Partner"), CMP_ISTR);
	want_add(&wl, "IsTransportRuleScoped", json_true(), CMP_BOOL);
	want_add(&wl, "UseMxRecord", json_false(), CMP_BOOL);
	want_add(&wl, "SmartHosts", json_pack("[s]", host), CMP_SET);
	want_add(&wl, "TlsSettings", json_string("DomainValidation"), CMP_ISTR);
	want_add(&wl, "TlsDomain", json_string(host), CMP_ISTR);
	want_add(&wl, "Enabled", json_true(), CMP_BOOL);
	plan_object(b, &o, &wl);
	wantlist_free(&wl);
	return 0;
}

static int
plan_relay(struct build *b)
{
	static const struct moat_obj o = {
	        IT_RELAY,
	        "TransportRule",
	        M365_NAME_RELAY_RULE,
	        "the relay rule",
	        "create the relay rule: inbound mail from outside goes to moat first, except mail "
	        "coming back from moat",
	        true,
	};
	const struct m365_site *site = b->site;
	struct wantlist wl = {.n = 0};
	struct egress e;

	b->items[IT_RELAY].wanted = true;
	if (egress_check(site, "the relay rule", &e, b->err, b->errsize) < 0)
		return item_fail(b, IT_RELAY);
	if (site->nkeys && keys_check(site, "the relay rule", b->err, b->errsize) < 0)
		return item_fail(b, IT_RELAY);
	want_add(&wl, "FromScope", json_string("NotInOrganization"), CMP_ISTR);
	want_add(&wl, "SentToScope", json_string("InOrganization"), CMP_ISTR);
	want_add(&wl, "RouteMessageOutboundConnector", json_string(M365_NAME_OUTBOUND), CMP_ISTR);
	if (site->nkeys) {
		want_add(&wl, "ExceptIfHeaderContainsMessageHeader", json_string(site->key_header),
		         CMP_ISTR);
		want_add(&wl, "ExceptIfHeaderContainsWords", json_strings(site->keys, site->nkeys),
		         CMP_SET);
	}
	want_add(&wl, "ExceptIfSenderIpRanges", json_strings(site->egress, site->negress),
	         CMP_IPSET);
	want_add(&wl, "StopRuleProcessing", json_true(), CMP_BOOL);
	want_add(&wl, "Priority", json_integer(0), CMP_INT);
	plan_object(b, &o, &wl);
	wantlist_free(&wl);
	return 0;
}

/* Never both: with the bypass rule, Enhanced Filtering on moat's inbound connector stays off. */
static void
ef_clear_wants(struct wantlist *wl)
{
	want_add(wl, "EFSkipIPs", json_null(), CMP_CLEAR);
	want_add(wl, "EFSkipLastIP", json_false(), CMP_CLEAR);
}

/* Say so when moat's inbound connector in the tenant has Enhanced Filtering to clear. */
static void
ef_clear_note(struct build *b)
{
	const json_t *obj = find_obj(b->tenant, "InboundConnector", M365_NAME_INBOUND);

	if (obj && (!value_empty(json_object_get(obj, "EFSkipIPs")) ||
	            !value_empty(json_object_get(obj, "EFSkipLastIP"))))
		note_add(b, "moat's inbound connector has Enhanced Filtering on from an earlier "
		            "run; moat turns it off because the bypass rule is used, and Microsoft "
		            "says an SCL -1 rule must not be used with it (never both).");
}

static int
plan_inbound(struct build *b)
{
	static const struct moat_obj o = {
	        IT_INBOUND,
	        "InboundConnector",
	        M365_NAME_INBOUND,
	        "the inbound connector from moat",
	        "create the inbound connector that accepts mail from moat (TLS, Partner)",
	        false,
	};
	const struct m365_site *site = b->site;
	bool cert = site->cert_name && site->cert_name[0];
	struct wantlist wl = {.n = 0};
	struct egress e = {.all_public = false};
	bool have_egress = false;

	b->items[IT_INBOUND].wanted = true;
	if (!cert || b->ef) {
		if (egress_check(site, "the inbound connector", &e, b->err, b->errsize) < 0) {
			if (!cert)
				return item_fail(b, IT_INBOUND);
		} else {
			have_egress = true;
		}
	}
	if (!cert && e.wide) {
		snprintf(b->err, b->errsize,
		         "egress '%.64s' is wider than /24: the inbound connector's "
		         "SenderIPAddresses "
		         "takes IPv4 ranges from /24 to /32; list narrower ranges or give a "
		         "certificate name instead",
		         e.wide);
		return item_fail(b, IT_INBOUND);
	}
	want_add(&wl, "ConnectorType", json_string("Partner"), CMP_ISTR);
	want_add(&wl, "SenderDomains", json_pack("[s]", "*"), CMP_SET);
	want_add(&wl, "RequireTls", json_true(), CMP_BOOL);
	if (cert) {
		want_add(&wl, "RestrictDomainsToCertificate", json_true(), CMP_BOOL);
		want_add(&wl, "TlsSenderCertificateName", json_string(site->cert_name), CMP_ISTR);
		want_add(&wl, "RestrictDomainsToIPAddresses", json_false(), CMP_CLEAR);
	} else {
		want_add(&wl, "SenderIPAddresses", json_strings(site->egress, site->negress),
		         CMP_IPSET);
		want_add(&wl, "RestrictDomainsToIPAddresses", json_true(), CMP_BOOL);
		want_add(&wl, "RestrictDomainsToCertificate", json_false(), CMP_CLEAR);
	}
	if (b->ef && have_egress && e.all_public) {
		want_add(&wl, "EFSkipIPs", json_strings(site->egress, site->negress), CMP_IPSET);
		want_add(&wl, "EFSkipLastIP", json_false(), CMP_CLEAR);
	} else if (b->ef) {
		want_add(&wl, "EFSkipLastIP", json_true(), CMP_BOOL);
		want_add(&wl, "EFSkipIPs", json_null(), CMP_CLEAR);
	} else if (b->want_bypass) {
		ef_clear_wants(&wl);
		ef_clear_note(b);
	}
	want_add(&wl, "Enabled", json_true(), CMP_BOOL);
	plan_object(b, &o, &wl);
	if (b->ef && want_get(&wl, "EFSkipLastIP")->cmp == CMP_BOOL)
		note_add(b, "Enhanced Filtering skips the last hop (EFSkipLastIP) because moat's "
		            "egress addresses are not all public (or not set), and EFSkipIPs takes "
		            "only public addresses.");
	wantlist_free(&wl);
	return 0;
}

/*
 * The bypass rule without relay or MX mode: moat's inbound connector may
 * still be there from an earlier MX-mode run, with Enhanced Filtering on.
 * Never both, so its Enhanced Filtering is turned off (nothing else of
 * it is moat's business in this mode).
 */
static void
plan_inbound_no_ef(struct build *b)
{
	struct wantlist wl = {.n = 0};
	const json_t *obj;
	struct m365_step *s;

	ef_clear_wants(&wl);
	if (b->tenant == NULL) {
		json_t *params = json_pack("{s:s}", "Identity", M365_NAME_INBOUND);

		for (size_t i = 0; i < wl.n; i++)
			json_object_set_new(params, wl.w[i].param, json_deep_copy(wl.w[i].value));
		s = step_add(b, IT_INBOUND, "Set-InboundConnector", params,
		             "if moat's inbound connector exists from an earlier MX-mode run: turn "
		             "off its Enhanced Filtering, the bypass rule is used instead (never "
		             "both)");
		step_when(s, M365_WHEN_PRESENT, "InboundConnector", M365_NAME_INBOUND);
	} else if ((obj = find_obj(b->tenant, "InboundConnector", M365_NAME_INBOUND)) != NULL) {
		b->items[IT_INBOUND].wanted = true;
		plan_set(b, IT_INBOUND, "InboundConnector", M365_NAME_INBOUND, obj, &wl,
		         "the inbound connector from moat",
		         "turn off Enhanced Filtering, the bypass rule is used instead (never "
		         "both):");
		ef_clear_note(b);
	}
	wantlist_free(&wl);
}

/* The bypass rule after the relay rule: fix it when the plan leaves it before. */
static void
plan_rule_order(struct build *b)
{
	long ir = order_index(&b->order, M365_NAME_RELAY_RULE);
	long ib = order_index(&b->order, M365_NAME_BYPASS_RULE);
	const json_t *old;
	struct m365_step *s;

	b->items[IT_RULE_ORDER].wanted = true;
	if (b->tenant == NULL || ir < 0 || ib < 0 || ib > ir)
		return;
	s = step_add(b, IT_RULE_ORDER, "Set-TransportRule",
	             json_pack("{s:s, s:I}", "Identity", M365_NAME_BYPASS_RULE, "Priority",
	                       (json_int_t)ir),
	             "move the bypass rule after the relay rule (priority %ld, now %ld)", ir, ib);
	old = find_obj(b->tenant, "TransportRule", M365_NAME_BYPASS_RULE);
	if (old) {
		s->undo = undo_rec("set", "TransportRule", M365_NAME_BYPASS_RULE);
		json_object_set_new(
		        s->undo, "previous",
		        json_pack("{s:O?}", "Priority", json_object_get(old, "Priority")));
	}
	order_move(&b->order, M365_NAME_BYPASS_RULE, (size_t)ir);
}

/* Custom (non-default) objects of kind that are on: rules by State, policies by Enable. */
static bool
custom_on(const json_t *o, bool rule)
{
	if (obj_true(o, "IsDefault") || obj_true(o, "IsBuiltInProtection"))
		return false;
	return rule ? rule_enabled(o) : obj_true(o, "Enable");
}

static void
plan_protection(struct build *b, const struct prot_def *p)
{
	enum item_id it = p->item;
	const json_t *rules, *pols;
	struct m365_step *s;
	char cmd[96];

	b->items[it].wanted = true;
	if (m365_kind_defender(p->policy_kind) && !b->defender) {
		item_skip(b, it, "the tenant has no Defender for Office 365");
		note_add(b,
		         "%s is left out: the tenant has no Defender for Office 365 "
		         "(Get-SafeLinksPolicy is not available), so there is none to turn off.",
		         p->label);
		return;
	}
	if (b->tenant == NULL) {
		s = step_add(b, it, cmdlet_name(cmd, sizeof(cmd), "Disable", p->rule_kind),
		             json_object(), "turn off every enabled custom %s rule", p->label);
		step_when(s, M365_WHEN_EACH_ENABLED, p->rule_kind, NULL);
		if (p->nprops) {
			json_t *params = json_pack("{s:s}", "Identity", p->default_identity);

			for (size_t i = 0; i < p->nprops; i++)
				json_object_set_new(params, p->props[i].param,
				                    p->props[i].str
				                            ? json_string(p->props[i].str)
				                            : json_boolean(p->props[i].flag));
			step_add(b, it, cmdlet_name(cmd, sizeof(cmd), "Set", p->policy_kind),
			         params, "relax the default %s policy", p->label);
		}
		if (p->custom_policies_off) {
			s = step_add(b, it, cmdlet_name(cmd, sizeof(cmd), "Set", p->policy_kind),
			             json_pack("{s:b}", "Enable", 0),
			             "turn off every custom %s policy", p->label);
			step_when(s, M365_WHEN_EACH_ENABLED, p->policy_kind, NULL);
		}
		note_add(b, "%s", p->note);
		return;
	}
	if (kind_unavailable(b->tenant, p->policy_kind)) {
		char why[128];

		snprintf(why, sizeof(why), "Get-%s is not available to this account",
		         p->policy_kind);
		item_skip(b, it, why);
		note_add(b, "%s is left out: %s.", p->label, why);
		return;
	}
	rules = kind_objs(b->tenant, p->rule_kind);
	for (size_t i = 0; rules && i < json_array_size(rules); i++) {
		const json_t *r = json_array_get(rules, i);
		const char *id = obj_identity(r);

		if (!custom_on(r, true))
			continue;
		detail_add(b, it, "custom rule '%.64s' is on", obj_label(r));
		s = step_add(b, it, cmdlet_name(cmd, sizeof(cmd), "Disable", p->rule_kind),
		             json_pack("{s:s}", "Identity", id),
		             "turn off the custom %s rule '%.64s'", p->label, obj_label(r));
		s->undo = undo_rec("disabled", p->rule_kind, id);
	}
	pols = kind_objs(b->tenant, p->policy_kind);
	if (p->nprops) {
		const json_t *def = NULL;
		struct wantlist wl = {.n = 0};
		char label[128];

		for (size_t i = 0; pols && i < json_array_size(pols) && !def; i++)
			if (obj_true(json_array_get(pols, i), "IsDefault"))
				def = json_array_get(pols, i);
		if (def == NULL) {
			detail_add(b, it, "no default %s policy found", p->label);
		} else {
			for (size_t i = 0; i < p->nprops; i++)
				want_add(&wl, p->props[i].param,
				         p->props[i].str ? json_string(p->props[i].str)
				                         : json_boolean(p->props[i].flag),
				         p->props[i].str ? CMP_ISTR : CMP_BOOL);
			snprintf(label, sizeof(label), "default %s policy '%.64s'", p->label,
			         obj_label(def));
			plan_set(b, it, p->policy_kind, obj_identity(def), def, &wl, label, "set");
			wantlist_free(&wl);
		}
	}
	for (size_t i = 0; p->custom_policies_off && pols && i < json_array_size(pols); i++) {
		const json_t *pol = json_array_get(pols, i);
		const char *id = obj_identity(pol);

		if (!custom_on(pol, false))
			continue;
		detail_add(b, it, "custom policy '%.64s' is on", obj_label(pol));
		s = step_add(b, it, cmdlet_name(cmd, sizeof(cmd), "Set", p->policy_kind),
		             json_pack("{s:s, s:b}", "Identity", id, "Enable", 0),
		             "turn off the custom %s policy '%.64s'", p->label, obj_label(pol));
		s->undo = undo_rec("set", p->policy_kind, id);
		json_object_set_new(s->undo, "previous",
		                    json_pack("{s:O}", "Enable", json_object_get(pol, "Enable")));
	}
	note_add(b, "%s", p->note);
}

/* Built-in protection (Defender) cannot be turned off, only given exceptions. */
static void
plan_builtin(struct build *b)
{
	const struct m365_site *site = b->site;
	struct wantlist wl = {.n = 0};
	const json_t *rule;
	struct m365_step *s;

	b->items[IT_BUILTIN].wanted = true;
	if (!b->defender) {
		item_skip(b, IT_BUILTIN, "the tenant has no Defender for Office 365");
		return;
	}
	note_add(b, "Built-in protection (Safe Links and Safe Attachments for everyone) cannot be "
	            "turned off; moat adds its protected domains to the exceptions of the "
	            "'" ATP_BUILTIN "'.");
	if (site->ndomains == 0 || site->domains == NULL) {
		item_skip(b, IT_BUILTIN, "no protected domain of moat is accepted by the tenant");
		note_add(b, "No protected domain of moat is accepted by the tenant, so built-in "
		            "protection gets no exceptions.");
		return;
	}
	want_add(&wl, "ExceptIfRecipientDomainIs", json_strings(site->domains, site->ndomains),
	         CMP_SUPERSET);
	if (b->tenant == NULL) {
		s = step_add(b, IT_BUILTIN, "Set-ATPBuiltInProtectionRule",
		             json_pack("{s:s, s:O}", "Identity", ATP_BUILTIN,
		                       "ExceptIfRecipientDomainIs", wl.w[0].value),
		             "except moat's domains from built-in protection (it cannot be turned "
		             "off)");
		step_when(s, M365_WHEN_PRESENT, "ATPBuiltInProtectionRule", ATP_BUILTIN);
		note_add(b, "Offline, the script sets the built-in protection exceptions to moat's "
		            "domains only; add back any other exceptions the tenant had.");
	} else if (kind_unavailable(b->tenant, "ATPBuiltInProtectionRule")) {
		item_skip(b, IT_BUILTIN, "Get-ATPBuiltInProtectionRule is not available");
	} else if ((rule = find_obj(b->tenant, "ATPBuiltInProtectionRule", ATP_BUILTIN)) == NULL) {
		b->items[IT_BUILTIN].missing = true;
		detail_add(b, IT_BUILTIN, "the '" ATP_BUILTIN "' was not found");
	} else {
		plan_set(b, IT_BUILTIN, "ATPBuiltInProtectionRule", obj_identity(rule), rule, &wl,
		         "built-in protection rule", "except moat's domains:");
	}
	wantlist_free(&wl);
}

/* The labels of the protections in bits: "anti-spam, anti-phishing and anti-malware". */
static void
prots_text(unsigned bits, struct line *l, size_t *count)
{
	size_t n = 0, total = 0;

	for (size_t i = 0; i < nitems(prot_defs); i++)
		total += (bits & prot_defs[i].bit) != 0;
	for (size_t i = 0; i < nitems(prot_defs); i++) {
		if ((bits & prot_defs[i].bit) == 0)
			continue;
		n++;
		line_printf(l, "%s%s",
		            n == 1       ? ""
		            : n == total ? " and "
		                         : ", ",
		            prot_defs[i].label);
	}
	if (count)
		*count = total;
}

/*
 * Standard and Strict presets win over custom and default policies. A
 * preset holds several protections (kind's, in prot_defs): moat turns it
 * off only when all of them were chosen, since turning it off turns them
 * all off. Partly chosen, an enabled preset is left alone and said so;
 * the check item is skipped for it. Steps made.
 */
static size_t
plan_presets(struct build *b, const char *kind, const char *what)
{
	unsigned family = 0, chosen;
	struct line all = {.len = 0}, part = {.len = 0};
	size_t npart = 0;
	const json_t *rules;
	struct m365_step *s;
	char cmd[96];
	size_t n = 0;

	for (size_t i = 0; i < nitems(prot_defs); i++)
		if (strcmp(prot_defs[i].preset_kind, kind) == 0)
			family |= prot_defs[i].bit;
	chosen = b->ch->protections & family;
	if (chosen == 0)
		return 0;
	b->items[IT_PRESETS].wanted = true;
	cmdlet_name(cmd, sizeof(cmd), "Disable", kind);
	prots_text(family, &all, NULL);
	prots_text(chosen, &part, &npart);
	if (chosen != family && b->tenant == NULL) {
		note_add(b,
		         "If a Standard or Strict preset security policy (%s) is on, the script "
		         "leaves it alone: its %s protection%s, chosen here, stay%s in force for "
		         "the users the preset covers until the preset is turned off. Choosing %s "
		         "together lets moat turn it off.",
		         what, part.s, npart > 1 ? "s" : "", npart > 1 ? "" : "s", all.s);
		return 0;
	}
	if (b->tenant == NULL) {
		for (size_t i = 0; i < nitems(preset_names); i++) {
			s = step_add(
			        b, IT_PRESETS, cmd, json_pack("{s:s}", "Identity", preset_names[i]),
			        "turn off the %s '%s': presets win over the policies moat relaxes",
			        what, preset_names[i]);
			step_when(s, M365_WHEN_PRESENT, kind, preset_names[i]);
		}
		return nitems(preset_names);
	}
	rules = kind_objs(b->tenant, kind);
	for (size_t i = 0; rules && i < json_array_size(rules); i++) {
		const json_t *r = json_array_get(rules, i);
		const char *name = NULL;

		for (size_t j = 0; j < nitems(preset_names); j++)
			if (obj_is(r, preset_names[j]))
				name = preset_names[j];
		if (name == NULL || !rule_enabled(r))
			continue;
		if (chosen != family) {
			struct line why = {.len = 0};

			line_printf(&why,
			            "the %s '%s' is on and left alone: only %s of its protections "
			            "%s chosen, and %s stay%s in force for the users the preset "
			            "covers; choose %s to let moat turn it off",
			            what, name, part.s, npart > 1 ? "were" : "was", part.s,
			            npart > 1 ? "" : "s", all.s);
			json_array_append_new(b->items[IT_PRESETS].skips, json_string(why.s));
			note_add(b,
			         "The %s (%s) is on and moat leaves it alone: its %s protection%s, "
			         "chosen here, stay%s in force for the users the preset covers "
			         "until the preset is turned off. Choosing %s together lets moat "
			         "turn it off.",
			         name, what, part.s, npart > 1 ? "s" : "", npart > 1 ? "" : "s",
			         all.s);
			continue;
		}
		detail_add(b, IT_PRESETS, "the %s '%s' is on", what, name);
		s = step_add(b, IT_PRESETS, cmd, json_pack("{s:s}", "Identity", obj_identity(r)),
		             "turn off the %s '%s': presets win over the policies moat relaxes",
		             what, name);
		s->undo = undo_rec("disabled", kind, obj_identity(r));
		n++;
	}
	return n;
}

/* Any step on a kind that needs Enable-OrganizationCustomization first? */
static bool
plan_needs_customization(const struct m365_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct m365_step *s = &p->steps[i];
		const char *kind = strchr(s->cmdlet, '-');

		if (s->when == M365_WHEN_EACH_ENABLED)
			kind = s->when_kind;
		else if (kind)
			kind++;
		if (kind_flags(kind) & K_CUSTOM)
			return true;
	}
	return false;
}

static void
plan_customization(struct build *b)
{
	struct m365_plan *p = b->out;
	struct m365_step first;

	if (!plan_needs_customization(p))
		return;
	if (b->tenant && !tenant_dehydrated(b->tenant))
		return;
	b->items[IT_CUSTOMIZATION].wanted = true;
	if (b->tenant) {
		b->items[IT_CUSTOMIZATION].missing = true;
		detail_add(b, IT_CUSTOMIZATION, "IsDehydrated is true");
	}
	/* first: the protection changes fail until it has been done */
	step_add(b, IT_CUSTOMIZATION, "Enable-OrganizationCustomization", json_object(), "%s",
	         b->tenant ? "enable organization customization: the tenant was never "
	                     "customised, and protection policies cannot change until it is"
	                   : "enable organization customization if the tenant was never "
	                     "customised: protection policies cannot change until it is");
	first = p->steps[p->n - 1];
	memmove(p->steps + 1, p->steps, (p->n - 1) * sizeof(*p->steps));
	p->steps[0] = first;
	note_add(b,
	         "%sMicrosoft can take up to an hour to finish Enable-OrganizationCustomization; "
	         "until then the protection steps fail, so run them again later.",
	         b->tenant ? "The tenant was never customised. "
	                   : "If the tenant was never customised, the script first runs "
	                     "Enable-OrganizationCustomization. ");
}

static void
plan_relay_notes(struct build *b)
{
	struct line ips = {.len = 0};
	json_t *a = json_strings(b->site->egress, b->site->negress);

	show_value(&ips, a);
	json_decref(a);
	note_add(b,
	         "Relay mode: Microsoft discourages routing inbound mail out to a gateway and back "
	         "in: each message is counted twice and returning mail can look spoofed. If you "
	         "use it, add spoof-allow entries (Tenant Allow/Block List, spoofed senders) for "
	         "moat's egress IPs: %s.",
	         ips.s);
}

/* Objects of another mode left by an earlier run: said, not removed. */
static void
plan_leftover_notes(struct build *b)
{
	if (b->tenant == NULL || b->ch->mode == M365_MODE_RELAY)
		return;
	if (find_obj(b->tenant, "TransportRule", M365_NAME_RELAY_RULE) ||
	    find_obj(b->tenant, "OutboundConnector", M365_NAME_OUTBOUND))
		note_add(b, "moat's relay rule or outbound connector from relay mode still exists; "
		            "undo the earlier run or remove them if relay mode is no longer used.");
}

static int
build_all(struct build *b)
{
	const struct m365_choice *ch = b->ch;
	bool relay = ch->mode == M365_MODE_RELAY, mx = ch->mode == M365_MODE_MX;
	unsigned prots = ch->protections;
	size_t presets = 0;

	if (m365_mode_name(ch->mode) == NULL) {
		snprintf(b->err, b->errsize, "unknown mode %d", (int)ch->mode);
		return -1;
	}
	if (prots & ~(unsigned)M365_P_ALL) {
		snprintf(b->err, b->errsize, "unknown protections 0x%x",
		         prots & ~(unsigned)M365_P_ALL);
		return -1;
	}
	b->defender = b->tenant == NULL || !kind_unavailable(b->tenant, "SafeLinksPolicy");
	b->ef = mx && ch->enhanced_filtering;
	b->want_bypass = ch->bypass_rule && !b->ef;
	if (ch->bypass_rule && b->ef)
		note_add(b,
		         "No bypass rule: Enhanced Filtering is on, and Microsoft says an SCL -1 "
		         "rule must not be used with it (never both).");
	if (ch->enhanced_filtering && !mx)
		note_add(b, "%s",
		         b->want_bypass
		                 ? "Enhanced Filtering is only set in MX mode (on moat's inbound "
		                   "connector); with the bypass rule it is kept off (never both)."
		                 : "Enhanced Filtering is only set in MX mode (on moat's inbound "
		                   "connector); it is left alone here.");

	/* mail flow first: it works even while protection changes wait for customization */
	if (relay && plan_outbound(b) < 0)
		return -1;
	if ((relay || mx) && plan_inbound(b) < 0)
		return -1;
	if (!relay && !mx && b->want_bypass)
		plan_inbound_no_ef(b);
	if (b->want_bypass && plan_bypass(b) < 0)
		return -1;
	if (b->ef)
		plan_no_bypass(b);
	if (relay && plan_relay(b) < 0)
		return -1;
	if (relay && b->want_bypass)
		plan_rule_order(b);
	if (b->want_bypass)
		note_add(
		        b,
		        "The bypass rule only matches mail from moat's IPs that carries moat's "
		        "per-tenant key header, so others sending from the same IPs cannot use it. "
		        "SCL -1 does not skip Microsoft's malware or high-confidence phishing "
		        "verdicts.");

	for (size_t i = 0; i < nitems(prot_defs); i++)
		if (prots & prot_defs[i].bit)
			plan_protection(b, &prot_defs[i]);
	if (prots & (M365_P_SAFELINKS | M365_P_SAFEATTACH))
		plan_builtin(b);
	presets += plan_presets(b, EOP_PRESETS, "Exchange Online Protection preset");
	if (b->defender)
		presets += plan_presets(b, ATP_PRESETS, "Defender for Office 365 preset");
	if (presets)
		note_add(
		        b,
		        "The Standard and Strict preset security policies win over the default and "
		        "custom policies, so moat turns off the presets whose protections were all "
		        "chosen (anti-spam, anti-phishing and anti-malware for the Exchange Online "
		        "Protection presets; Safe Links and Safe Attachments for the Defender "
		        "ones): turning off a preset turns off every protection it holds.");
	plan_customization(b);
	if (relay)
		plan_relay_notes(b);
	plan_leftover_notes(b);
	if (b->out->n > PLAN_STEPS_MAX) {
		snprintf(b->err, b->errsize, "more than %d steps", PLAN_STEPS_MAX);
		return -1;
	}
	return 0;
}

int
m365_plan_apply(const struct m365_site *site, const struct m365_choice *ch, const json_t *tenant,
                struct m365_plan *out, char *err, size_t errsize)
{
	struct build b;
	int rc;

	build_init(&b, site, ch, tenant, out, err, errsize);
	rc = build_all(&b);
	if (rc == 0 && tenant) {
		for (size_t i = 0; i < IT_N; i++) {
			const struct item_state *it = &b.items[i];

			if (it->wanted && !it->skipped && !it->missing &&
			    json_array_size(it->details) == 0 && json_array_size(it->skips) == 0)
				note_add(&b, "%s: already as wanted.", item_defs[i].title);
		}
	}
	build_free(&b);
	if (rc < 0)
		m365_plan_free(out);
	return rc;
}

/* --- check --- */

static bool
names_has(const json_t *names, const char *name)
{
	for (size_t i = 0; json_is_array(names) && i < json_array_size(names); i++) {
		const char *s = json_string_value(json_array_get(names, i));

		if (s && strcmp(s, name) == 0)
			return true;
	}
	return false;
}

/* Is the bypass rule after the relay rule in the tenant as read? */
static void
check_rule_order(struct build *b)
{
	struct item_state *it = &b->items[IT_RULE_ORDER];
	const json_t *r = find_obj(b->tenant, "TransportRule", M365_NAME_RELAY_RULE);
	const json_t *y = find_obj(b->tenant, "TransportRule", M365_NAME_BYPASS_RULE);
	long long pr, py;

	json_array_clear(it->details);
	it->missing = false;
	if (r == NULL || y == NULL) {
		it->missing = true;
		detail_add(b, IT_RULE_ORDER, "the %s does not exist",
		           r == NULL ? "relay rule" : "bypass rule");
		return;
	}
	if (!json_to_int(json_object_get(r, "Priority"), &pr) ||
	    !json_to_int(json_object_get(y, "Priority"), &py))
		detail_add(b, IT_RULE_ORDER, "the rules have no priorities");
	else if (py <= pr)
		detail_add(
		        b, IT_RULE_ORDER,
		        "the bypass rule has priority %lld, the relay rule %lld: want the bypass "
		        "rule after it",
		        py, pr);
}

static void
details_join(const json_t *details, struct dynbuf *d)
{
	for (size_t i = 0; i < json_array_size(details); i++) {
		const char *s = json_string_value(json_array_get(details, i));

		if (dynbuf_printf(d, "%s%s", i ? "; " : "", s) < 0) {
			dynbuf_add(d, "...", 3);
			break;
		}
	}
}

json_t *
m365_plan_check(const struct m365_site *site, const struct m365_choice *ch, const json_t *tenant,
                const json_t *applied)
{
	struct m365_plan plan;
	struct build b;
	char err[LINE_MAX_] = "";
	json_t *out = json_array();

	build_init(&b, site, ch, tenant, &plan, err, sizeof(err));
	b.check = true;
	if (build_all(&b) < 0 && b.out->n == 0 && err[0])
		json_array_append_new(out,
		                      json_pack("{s:s, s:s, s:s, s:s}", "item", "choice", "title",
		                                "The choice", "status", "missing", "detail", err));
	if (tenant && b.items[IT_RULE_ORDER].wanted)
		check_rule_order(&b);
	if (tenant && names_has(applied, "customization") && (ch->protections & M365_P_ALL))
		b.items[IT_CUSTOMIZATION].wanted = true;
	for (size_t i = 0; i < IT_UNDO; i++) {
		const struct item_state *it = &b.items[i];
		const char *status;
		struct dynbuf d;

		if (!it->wanted)
			continue;
		dynbuf_init(&d, 2048);
		if (tenant == NULL) {
			status = "skipped";
			dynbuf_printf(&d, "the tenant was not read");
		} else if (it->failed) {
			status = "missing";
		} else if (it->skipped) {
			status = "skipped";
		} else if (json_array_size(it->details) == 0 && !it->missing) {
			status = json_array_size(it->skips) ? "skipped" : "ok";
		} else if (names_has(applied, item_defs[i].name)) {
			status = "pending";
		} else {
			status = it->missing ? "missing" : "drifted";
		}
		if (tenant) {
			details_join(it->details, &d);
			if (json_array_size(it->details) && json_array_size(it->skips))
				dynbuf_add(&d, "; ", 2);
			details_join(it->skips, &d);
		}
		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s}", "item",
		                                     item_defs[i].name, "title", item_defs[i].title,
		                                     "status", status, "detail", d.p ? d.p : ""));
		free(d.p);
	}
	build_free(&b);
	m365_plan_free(&plan);
	return out;
}

/* --- undo --- */

struct undo_obj {
	const char *kind;
	const char *identity;
	size_t seen;    /* first record naming it */
	size_t created; /* 1 + the last "created" record, 0 if none */
	bool disabled;
	json_t *previous; /* the earliest recorded value of each parameter */
};

static bool
param_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == n &&
	       strcmp(s, "Identity") != 0 && strcmp(s, "Name") != 0;
}

static bool
moat_name(const char *s)
{
	static const char *const names[] = {M365_NAME_RELAY_RULE, M365_NAME_BYPASS_RULE,
	                                    M365_NAME_OUTBOUND, M365_NAME_INBOUND};

	for (size_t i = 0; i < nitems(names); i++)
		if (str_ieq(s, names[i]))
			return true;
	return false;
}

/* Check one undo record: 0, or -1 with err. */
static int
undo_rec_check(const json_t *r, size_t i, char *err, size_t errsize)
{
	const char *op = obj_str(r, "op"), *kind = obj_str(r, "kind");
	const char *id = obj_str(r, "identity");
	unsigned need;

	if (!json_is_object(r) || op == NULL || kind == NULL || id == NULL || id[0] == '\0' ||
	    strlen(id) > IDENT_MAX) {
		snprintf(err, errsize, "change %zu: not an {op, kind, identity} record", i + 1);
		return -1;
	}
	if (strcmp(op, "created") == 0) {
		need = K_REMOVE;
		if (!moat_name(id)) {
			snprintf(err, errsize, "change %zu: moat only removes the objects it names",
			         i + 1);
			return -1;
		}
	} else if (strcmp(op, "set") == 0) {
		const json_t *prev = json_object_get(r, "previous");
		json_t *copy;
		const char *k;
		json_t *v;

		need = K_SET;
		if (!json_is_object(prev) || json_object_size(prev) == 0) {
			snprintf(err, errsize, "change %zu: a set without previous values", i + 1);
			return -1;
		}
		copy = json_deep_copy(prev);
		json_object_foreach (copy, k, v) {
			if (!param_name_ok(k)) {
				snprintf(err, errsize, "change %zu: '%.64s' is not a parameter",
				         i + 1, k);
				json_decref(copy);
				return -1;
			}
		}
		json_decref(copy);
	} else if (strcmp(op, "disabled") == 0) {
		need = K_STATE;
	} else {
		snprintf(err, errsize, "change %zu: unknown op '%.32s'", i + 1, op);
		return -1;
	}
	if ((kind_flags(kind) & need) == 0) {
		snprintf(err, errsize, "change %zu: moat does not %s a %.64s", i + 1,
		         need == K_REMOVE ? "create"
		         : need == K_SET  ? "set"
		                          : "disable",
		         kind);
		return -1;
	}
	return 0;
}

/* Is the object gone (or its kind not available)? Says so in a note. */
static bool
undo_gone(struct build *b, const struct undo_obj *o)
{
	if (b->tenant == NULL)
		return false;
	if (kind_unavailable(b->tenant, o->kind)) {
		note_add(b, "%s '%.64s' is skipped: Get-%s is not available in this tenant.",
		         o->kind, o->identity, o->kind);
		return true;
	}
	if (kind_objs(b->tenant, o->kind) && !find_obj(b->tenant, o->kind, o->identity)) {
		note_add(b, "%s '%.64s' is already gone; nothing to undo there.", o->kind,
		         o->identity);
		return true;
	}
	return false;
}

static enum item_id
undo_item(const char *kind, const char *identity)
{
	const struct kind_def *k = kind_find(kind);

	if (strcmp(kind, "TransportRule") == 0)
		return str_ieq(identity, M365_NAME_RELAY_RULE)    ? IT_RELAY
		       : str_ieq(identity, M365_NAME_BYPASS_RULE) ? IT_BYPASS
		                                                  : IT_UNDO;
	return k ? k->item : IT_UNDO;
}

int
m365_plan_undo(const json_t *changes, const json_t *tenant, struct m365_plan *out, char *err,
               size_t errsize)
{
	static const struct m365_site nosite = {.negress = 0};
	static const struct m365_choice nochoice = {.mode = M365_MODE_NONE};
	struct undo_obj *objs = NULL;
	size_t nobjs = 0, n = json_array_size(changes);
	struct build b;
	char cmd[96];
	int rc = -1;

	build_init(&b, &nosite, &nochoice, tenant, out, err, errsize);
	if (!json_is_array(changes)) {
		snprintf(err, errsize, "changes is not an array");
		goto fail;
	}
	objs = xcalloc(n ? n : 1, sizeof(*objs));
	for (size_t i = 0; i < n; i++) {
		const json_t *r = json_array_get(changes, i);
		const char *op, *kind, *id;
		struct undo_obj *o = NULL;

		if (undo_rec_check(r, i, err, errsize) < 0)
			goto fail;
		op = obj_str(r, "op");
		kind = obj_str(r, "kind");
		id = obj_str(r, "identity");
		for (size_t j = 0; j < nobjs && !o; j++)
			if (strcmp(objs[j].kind, kind) == 0 && str_ieq(objs[j].identity, id))
				o = &objs[j];
		if (o == NULL) {
			o = &objs[nobjs++];
			*o = (struct undo_obj){kind, id, i, 0, false, json_object()};
		}
		if (strcmp(op, "created") == 0) {
			o->created = i + 1;
		} else if (strcmp(op, "disabled") == 0) {
			o->disabled = true;
		} else {
			json_t *prev = json_deep_copy(json_object_get(r, "previous"));
			const char *k;
			json_t *v;

			json_object_foreach (prev, k, v)
				if (json_object_get(o->previous, k) == NULL)
					json_object_set(o->previous, k, v);
			json_decref(prev);
		}
	}
	/* put back the earliest values, then re-enable, on what moat did not create */
	for (size_t i = 0; i < nobjs; i++) {
		struct undo_obj *o = &objs[i];
		struct line why = {.len = 0};
		const char *k;
		json_t *v, *params;

		if (o->created || json_object_size(o->previous) == 0 || undo_gone(&b, o))
			continue;
		params = json_pack("{s:s}", "Identity", o->identity);
		line_printf(&why, "put back ");
		json_object_foreach (o->previous, k, v) {
			json_object_set(params, k, v);
			line_printf(&why, "%s%s ", json_object_size(params) > 2 ? ", " : "", k);
			show_value(&why, v);
		}
		line_printf(&why, " on %s '%.64s'", o->kind, o->identity);
		step_add(&b, undo_item(o->kind, o->identity),
		         cmdlet_name(cmd, sizeof(cmd), "Set", o->kind), params, "%s", why.s);
	}
	for (size_t i = 0; i < nobjs; i++) {
		struct undo_obj *o = &objs[i];

		if (o->created || !o->disabled || undo_gone(&b, o))
			continue;
		step_add(&b, undo_item(o->kind, o->identity),
		         cmdlet_name(cmd, sizeof(cmd), "Enable", o->kind),
		         json_pack("{s:s}", "Identity", o->identity),
		         "turn %s '%.64s' back on (moat turned it off)", o->kind, o->identity);
	}
	/* remove what moat created, newest first, rules before what they point to */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t seq = n; seq > 0; seq--) {
			for (size_t i = 0; i < nobjs; i++) {
				struct undo_obj *o = &objs[i];
				bool rule = m365_kind_stateful(o->kind);

				if (o->created != seq || rule != (pass == 0) || undo_gone(&b, o))
					continue;
				step_add(&b, undo_item(o->kind, o->identity),
				         cmdlet_name(cmd, sizeof(cmd), "Remove", o->kind),
				         json_pack("{s:s}", "Identity", o->identity),
				         "remove %s '%.64s' (moat created it)", o->kind,
				         o->identity);
			}
		}
	}
	if (out->n > PLAN_STEPS_MAX) {
		snprintf(err, errsize, "more than %d steps", PLAN_STEPS_MAX);
		goto fail;
	}
	rc = 0;
fail:
	for (size_t i = 0; i < nobjs; i++)
		json_decref(objs[i].previous);
	free(objs);
	build_free(&b);
	if (rc < 0)
		m365_plan_free(out);
	return rc;
}

/* --- detect --- */

json_t *
m365_plan_detect(const json_t *tenant)
{
	static const struct {
		const char *kind, *name;
	} moat_objs[] = {
	        {"TransportRule", M365_NAME_RELAY_RULE},
	        {"TransportRule", M365_NAME_BYPASS_RULE},
	        {"OutboundConnector", M365_NAME_OUTBOUND},
	        {"InboundConnector", M365_NAME_INBOUND},
	};
	static const char *const preset_kinds[] = {EOP_PRESETS, ATP_PRESETS};
	const json_t *a;
	json_t *doms = json_array(), *presets = json_array(), *moat = json_array();
	json_t *custom = json_object();
	bool defender =
	        kind_objs(tenant, "SafeLinksPolicy") || kind_objs(tenant, "SafeAttachmentPolicy");

	a = kind_objs(tenant, "AcceptedDomain");
	for (size_t i = 0; a && i < json_array_size(a); i++) {
		const json_t *d = json_array_get(a, i);
		const char *name = obj_str(d, "DomainName");

		if (name == NULL)
			name = obj_label(d);
		json_array_append_new(doms, json_string(name));
	}
	for (size_t k = 0; k < nitems(preset_kinds); k++) {
		a = kind_objs(tenant, preset_kinds[k]);
		for (size_t i = 0; a && i < json_array_size(a); i++) {
			const json_t *r = json_array_get(a, i);

			for (size_t j = 0; j < nitems(preset_names); j++) {
				const char *st = obj_str(r, "State");

				if (obj_is(r, preset_names[j]))
					json_array_append_new(presets,
					                      json_pack("{s:s, s:s, s:s}", "kind",
					                                preset_kinds[k], "name",
					                                preset_names[j], "state",
					                                st ? st : "Unknown"));
			}
		}
	}
	for (size_t i = 0; i < nitems(moat_objs); i++) {
		const json_t *o = find_obj(tenant, moat_objs[i].kind, moat_objs[i].name);
		const char *st;

		if (o == NULL)
			continue;
		st = obj_str(o, "State");
		if (st == NULL)
			st = json_is_false(json_object_get(o, "Enabled")) ? "Disabled" : "Enabled";
		json_array_append_new(moat, json_pack("{s:s, s:s, s:s}", "kind", moat_objs[i].kind,
		                                      "name", moat_objs[i].name, "state", st));
	}
	/* custom rules that the wizard would turn off: the enabled, non-default ones */
	for (size_t p = 0; p < nitems(prot_defs); p++) {
		json_int_t on = 0;

		a = kind_objs(tenant, prot_defs[p].rule_kind);
		if (a == NULL)
			continue;
		for (size_t i = 0; i < json_array_size(a); i++)
			on += custom_on(json_array_get(a, i), true);
		json_object_set_new(custom, prot_defs[p].rule_kind, json_integer(on));
	}
	return json_pack("{s:b, s:o, s:o, s:b, s:o, s:o}", "defender", defender, "accepted_domains",
	                 doms, "presets", presets, "dehydrated", tenant_dehydrated(tenant),
	                 "moat_objects", moat, "custom_rules", custom);
}

/* --- the plan as JSON, and freeing it --- */

static const char *const when_names[] = {
        [M365_WHEN_ALWAYS] = "always",
        [M365_WHEN_ABSENT] = "absent",
        [M365_WHEN_PRESENT] = "present",
        [M365_WHEN_EACH_ENABLED] = "each_enabled",
};

json_t *
m365_plan_json(const struct m365_plan *p)
{
	json_t *steps = json_array();

	for (size_t i = 0; i < p->n; i++) {
		const struct m365_step *s = &p->steps[i];
		json_t *j = json_pack("{s:s, s:s, s:o}", "item", s->item, "cmdlet", s->cmdlet,
		                      "params", s->params ? json_incref(s->params) : json_object());

		if (s->when != M365_WHEN_ALWAYS && (unsigned)s->when < nitems(when_names)) {
			json_object_set_new(j, "when", json_string(when_names[s->when]));
			if (s->when_kind)
				json_object_set_new(j, "when_kind", json_string(s->when_kind));
			if (s->when_identity)
				json_object_set_new(j, "when_identity",
				                    json_string(s->when_identity));
		}
		json_object_set_new(j, "why", json_string(s->why ? s->why : ""));
		json_array_append_new(steps, j);
	}
	return json_pack("{s:o, s:o}", "steps", steps, "notes",
	                 p->notes ? json_deep_copy(p->notes) : json_array());
}

void
m365_plan_free(struct m365_plan *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		struct m365_step *s = &p->steps[i];

		free(s->item);
		free(s->cmdlet);
		free(s->when_kind);
		free(s->when_identity);
		free(s->why);
		json_decref(s->params);
		json_decref(s->undo);
	}
	free(p->steps);
	json_decref(p->notes);
	memset(p, 0, sizeof(*p));
}
