/*
 * test_m365_plan.c - tests of the Exchange Online plans (src/m365/m365_plan.c)
 * and their PowerShell form (m365_script.c).
 *
 * Tenant snapshots are JSON fixtures shaped like the seed of
 * tests/m365/emulator.py (accepted domains contoso.onmicrosoft.com and
 * contoso.com, the default policies, the built-in Safe Links / Safe
 * Attachments policies and rule, the Standard preset on and Strict off).
 * A small simulator below plays a plan's steps on a snapshot under the
 * emulator's rules (names up to 64, parameter pairs, SetSCL range, no
 * -Enabled on Set-TransportRule, EFSkipIPs without RFC 1918, IPv4
 * SenderIPAddresses /24 to /32, built-in and default policies untouchable,
 * priorities that shift, customization first), so "apply, then plan
 * again" must give no step at all. The script is read back by a
 * tokenizer of PowerShell's single-quoted strings and comments, so that a
 * cmdlet outside a string can only be one the plan asked for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/cidr.h"
#include "common/util.h"
#include "m365/m365_plan.h"

#include "table.h"

/* --- fixtures --- */

/* JSON written with ' for " (no fixture text holds an apostrophe). */
static json_t *
js(const char *text)
{
	char *s = xstrdup(text);
	json_error_t e;
	json_t *j;

	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	j = json_loads(s, 0, &e);
	if (j == NULL)
		fail_msg("fixture: %s at %d: %.60s", e.text, e.position, s + e.position);
	free(s);
	return j;
}

#define PRESETS_OF(g)                                                                              \
	"[{'Name': 'Strict Preset Security Policy', 'Identity': 'Strict Preset Security Policy', " \
	"'Guid': '" g "-1', 'State': 'Disabled', 'Priority': 0}, "                                 \
	"{'Name': 'Standard Preset Security Policy', 'Identity': 'Standard Preset Security "       \
	"Policy', 'Guid': '" g "-2', 'State': 'Enabled', 'Priority': 1}]"

/* A tenant as the emulator seeds it. */
static json_t *
tenant_fresh(void)
{
	return js(
	        "{'AcceptedDomain': ["
	        " {'Name': 'contoso.onmicrosoft.com', 'Identity': 'contoso.onmicrosoft.com', "
	        "  'DomainName': 'contoso.onmicrosoft.com', 'DomainType': 'Authoritative', "
	        "  'Default': false, 'Guid': 'ad-1'},"
	        " {'Name': 'contoso.com', 'Identity': 'contoso.com', 'DomainName': 'contoso.com', "
	        "  'DomainType': 'Authoritative', 'Default': true, 'Guid': 'ad-2'}],"
	        "'OrganizationConfig': [{'Name': 'Contoso', 'Identity': 'contoso.onmicrosoft.com', "
	        " 'IsDehydrated': false, 'Guid': 'org-1'}],"
	        "'TransportRule': [], 'InboundConnector': [], 'OutboundConnector': [],"
	        "'HostedContentFilterPolicy': [{'Name': 'Default', 'Identity': 'Default', "
	        " 'Guid': 'hcf-1', 'IsDefault': true, 'SpamAction': 'MoveToJmf', "
	        " 'HighConfidenceSpamAction': 'MoveToJmf', 'BulkSpamAction': 'MoveToJmf', "
	        " 'PhishSpamAction': 'MoveToJmf', 'MarkAsSpamBulkMail': 'On', "
	        " 'SpamZapEnabled': true, 'PhishZapEnabled': true}],"
	        "'HostedContentFilterRule': [],"
	        "'AntiPhishPolicy': [{'Name': 'Office365 AntiPhish Default', "
	        " 'Identity': 'Office365 AntiPhish Default', 'Guid': 'ap-1', 'IsDefault': true, "
	        " 'Enabled': true, 'EnableSpoofIntelligence': true, 'HonorDmarcPolicy': true, "
	        " 'EnableUnauthenticatedSender': true, 'EnableFirstContactSafetyTips': false}],"
	        "'AntiPhishRule': [],"
	        "'MalwareFilterPolicy': [{'Name': 'Default', 'Identity': 'Default', 'Guid': "
	        "'mf-1', "
	        " 'IsDefault': true, 'EnableFileFilter': true, 'ZapEnabled': true, "
	        " 'QuarantineTag': 'AdminOnlyAccessPolicy'}],"
	        "'MalwareFilterRule': [],"
	        "'EOPProtectionPolicyRule': " PRESETS_OF(
	                "eop") ","
	                       "'SafeLinksPolicy': [{'Name': 'Built-In Protection Policy', "
	                       " 'Identity': 'Built-In Protection Policy', 'Guid': 'sl-1', "
	                       " 'IsBuiltInProtection': true, 'EnableSafeLinksForEmail': true, "
	                       "'TrackClicks': true}],"
	                       "'SafeLinksRule': [],"
	                       "'SafeAttachmentPolicy': [{'Name': 'Built-In Protection Policy', "
	                       " 'Identity': 'Built-In Protection Policy', 'Guid': 'sa-1', "
	                       " 'IsBuiltInProtection': true, 'Enable': true, 'Action': 'Block'}],"
	                       "'SafeAttachmentRule': [],"
	                       "'ATPBuiltInProtectionRule': [{'Name': 'ATP Built-In Protection "
	                       "Rule', "
	                       " 'Identity': 'ATP Built-In Protection Rule', 'Guid': 'bi-1', "
	                       "'State': 'Enabled', "
	                       " 'Priority': 2147483647, 'SafeLinksPolicy': 'Built-In Protection "
	                       "Policy', "
	                       " 'SafeAttachmentPolicy': 'Built-In Protection Policy', "
	                       " 'ExceptIfRecipientDomainIs': null}],"
	                       "'ATPProtectionPolicyRule': " PRESETS_OF("atp") "}");
}

/* Without Defender for Office 365: its Get- cmdlets answer 403, so null. */
static json_t *
tenant_no_defender(void)
{
	json_t *t = tenant_fresh();
	static const char *const kinds[] = {"SafeLinksPolicy",          "SafeLinksRule",
	                                    "SafeAttachmentPolicy",     "SafeAttachmentRule",
	                                    "ATPBuiltInProtectionRule", "ATPProtectionPolicyRule"};

	for (size_t i = 0; i < nitems(kinds); i++)
		json_object_set_new(t, kinds[i], json_null());
	return t;
}

static void
tenant_add(json_t *t, const char *kind, const char *obj)
{
	json_array_append_new(json_object_get(t, kind), js(obj));
}

/* Custom policies and rules an admin made: one enabled and one disabled rule of each kind. */
static json_t *
tenant_custom(void)
{
	static const char *const rules[] = {"HostedContentFilterRule", "AntiPhishRule",
	                                    "MalwareFilterRule", "SafeLinksRule",
	                                    "SafeAttachmentRule"};
	json_t *t = tenant_fresh();

	for (size_t i = 0; i < nitems(rules); i++) {
		char obj[512];

		snprintf(obj, sizeof(obj),
		         "{'Name': 'Contoso %s', 'Identity': 'Contoso %s', 'Guid': 'c-%zu', "
		         "'State': 'Enabled', 'Priority': 0}",
		         rules[i], rules[i], i);
		tenant_add(t, rules[i], obj);
		snprintf(obj, sizeof(obj),
		         "{'Name': 'Old %s', 'Identity': 'Old %s', 'Guid': 'o-%zu', "
		         "'State': 'Disabled', 'Priority': 1}",
		         rules[i], rules[i], i);
		tenant_add(t, rules[i], obj);
	}
	tenant_add(t, "SafeAttachmentPolicy",
	           "{'Name': 'Contoso SA', 'Identity': 'Contoso SA', 'Guid': 'csa', "
	           "'IsDefault': false, 'Enable': true, 'Action': 'Block'}");
	tenant_add(t, "HostedContentFilterPolicy",
	           "{'Name': 'Contoso spam', 'Identity': 'Contoso spam', 'Guid': 'chcf', "
	           "'IsDefault': false, 'SpamZapEnabled': true}");
	return t;
}

static json_t *
find(json_t *t, const char *kind, const char *name)
{
	json_t *a = json_object_get(t, kind);

	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *o = json_array_get(a, i);
		const char *n = json_string_value(json_object_get(o, "Name"));
		const char *id = json_string_value(json_object_get(o, "Identity"));
		const char *g = json_string_value(json_object_get(o, "Guid"));

		if ((n && str_ieq(n, name)) || (id && str_ieq(id, name)) || (g && str_ieq(g, name)))
			return o;
	}
	return NULL;
}

/* --- moat's side --- */

#define KEY1 "0123456789abcdef0123456789abcdef"
#define KEY2 "fedcba9876543210fedcba9876543210"
#define HOST "mx.moat.example"

static const char *const egress_pub[] = {"192.0.2.10", "198.51.100.0/24"};
static const char *const keys1[] = {KEY1};
static const char *const doms1[] = {"contoso.com"};

static const struct m365_site site_std = {
        .egress = egress_pub,
        .negress = 2,
        .host = HOST,
        .cert_name = NULL,
        .key_header = "X-Moat-Relay-Key",
        .keys = keys1,
        .nkeys = 1,
        .domains = doms1,
        .ndomains = 1,
};

static const struct m365_choice choice_relay_all = {M365_P_ALL, true, M365_MODE_RELAY, false};

/* --- a simulator of the emulator's cmdlets --- */

static const char *const custom_kinds[] = {
        "HostedContentFilterPolicy", "HostedContentFilterRule", "AntiPhishPolicy", "AntiPhishRule",
        "MalwareFilterPolicy",       "MalwareFilterRule",       "SafeLinksPolicy", "SafeLinksRule",
        "SafeAttachmentPolicy",      "SafeAttachmentRule",
};

static bool
is_rule_kind(const char *kind)
{
	size_t n = strlen(kind);

	return n > 4 && strcmp(kind + n - 4, "Rule") == 0;
}

static json_int_t
prio(const json_t *o)
{
	return json_integer_value(json_object_get(o, "Priority"));
}

/* Sort rules by priority and number them 0, 1, ... (stable). */
static void
sim_renumber(json_t *rules)
{
	size_t n = json_array_size(rules);

	for (size_t i = 1; i < n; i++)
		for (size_t j = i;
		     j > 0 && prio(json_array_get(rules, j - 1)) > prio(json_array_get(rules, j));
		     j--) {
			json_t *a = json_incref(json_array_get(rules, j - 1));

			json_array_remove(rules, j - 1);
			json_array_insert_new(rules, j, a);
		}
	for (size_t i = 0; i < n; i++)
		json_object_set_new(json_array_get(rules, i), "Priority",
		                    json_integer((json_int_t)i));
}

static const json_t *
merged(const json_t *params, const json_t *existing, const char *k)
{
	const json_t *v = json_object_get(params, k);

	if (v == NULL && existing)
		v = json_object_get(existing, k);
	return json_is_null(v) ? NULL : v;
}

static bool
rfc1918(const char *ip)
{
	struct cidr_list l;
	char err[64], addr[64];

	cidr_list_parse("10.0.0.0/8 172.16.0.0/12 192.168.0.0/16", &l, err, sizeof(err));
	str_copy(addr, ip, sizeof(addr));
	addr[strcspn(addr, "/")] = '\0';
	return cidr_list_match(&l, addr);
}

/* The emulator's _validate_props: NULL, or what it refuses. */
static const char *
sim_validate(const char *kind, const json_t *params, const json_t *existing)
{
	static const char *const pairs[][2] = {
	        {"SetHeaderName", "SetHeaderValue"},
	        {"HeaderMatchesMessageHeader", "HeaderMatchesPatterns"},
	        {"ExceptIfHeaderContainsMessageHeader", "ExceptIfHeaderContainsWords"},
	};

	if (strcmp(kind, "TransportRule") == 0) {
		const json_t *scl = json_object_get(params, "SetSCL");

		if (scl && (!json_is_integer(scl) || json_integer_value(scl) < -1 ||
		            json_integer_value(scl) > 9))
			return "SetSCL must be -1 or between 0 and 9";
		for (size_t i = 0; i < nitems(pairs); i++)
			if (!merged(params, existing, pairs[i][0]) !=
			    !merged(params, existing, pairs[i][1]))
				return "parameters must be specified together";
	}
	if (strcmp(kind, "InboundConnector") == 0) {
		const json_t *ef = json_object_get(params, "EFSkipIPs");
		const json_t *sip = json_object_get(params, "SenderIPAddresses");
		struct cidr c;

		for (size_t i = 0; i < json_array_size(ef); i++) {
			const char *ip = json_string_value(json_array_get(ef, i));

			if (cidr_parse(ip, strlen(ip), &c) < 0)
				return "not a valid IP address or range for EFSkipIPs";
			if (rfc1918(ip))
				return "EFSkipIPs can't contain private (RFC 1918) addresses";
		}
		for (size_t i = 0; i < json_array_size(sip); i++) {
			const char *ip = json_string_value(json_array_get(sip, i));

			if (cidr_parse(ip, strlen(ip), &c) < 0)
				return "not a valid IP address for SenderIPAddresses";
			if (c.bits < 24 && strchr(ip, ':') == NULL)
				return "SenderIPAddresses accepts IPv4 ranges from /24 to /32";
		}
	}
	if (strcmp(kind, "MalwareFilterPolicy") == 0 && json_object_get(params, "Action"))
		return "A parameter cannot be found that matches parameter name 'Action'";
	return NULL;
}

static const char *
sim_step(json_t *t, const struct m365_step *s, int *guid)
{
	char verb[16];
	const char *dash = strchr(s->cmdlet, '-'), *kind, *err, *k;
	json_t *org = json_array_get(json_object_get(t, "OrganizationConfig"), 0);
	bool dehydrated = json_is_true(json_object_get(org, "IsDehydrated"));
	json_t *objs, *obj, *v;

	if (s->when != M365_WHEN_ALWAYS)
		return "a conditioned step on a tenant that was read";
	if (strcmp(s->cmdlet, "Enable-OrganizationCustomization") == 0) {
		if (!dehydrated)
			return "Organization is already enabled for customization";
		json_object_set_new(org, "IsDehydrated", json_false());
		return NULL;
	}
	if (dash == NULL || (size_t)(dash - s->cmdlet) >= sizeof(verb))
		return "not a cmdlet";
	memcpy(verb, s->cmdlet, (size_t)(dash - s->cmdlet));
	verb[dash - s->cmdlet] = '\0';
	kind = dash + 1;
	objs = json_object_get(t, kind);
	if (!json_is_array(objs))
		return "403: the cmdlet is not available";
	for (size_t i = 0; dehydrated && i < nitems(custom_kinds); i++)
		if (strcmp(kind, custom_kinds[i]) == 0)
			return "you first need to run the command: "
			       "Enable-OrganizationCustomization";
	if (strcmp(verb, "New") == 0) {
		const char *name = json_string_value(json_object_get(s->params, "Name"));
		char g[32];

		if (name == NULL || strlen(name) > 64)
			return "The Name parameter is empty or too long";
		if (find(t, kind, name))
			return "already exists";
		if ((err = sim_validate(kind, s->params, NULL)) != NULL)
			return err;
		obj = json_deep_copy(s->params);
		json_object_set_new(obj, "Identity", json_string(name));
		snprintf(g, sizeof(g), "sim-%d", ++*guid);
		json_object_set_new(obj, "Guid", json_string(g));
		if (is_rule_kind(kind)) {
			json_t *en = json_object_get(obj, "Enabled");
			json_t *p = json_object_get(obj, "Priority");

			json_object_set_new(
			        obj, "State",
			        json_string(en && json_is_false(en) ? "Disabled" : "Enabled"));
			json_object_del(obj, "Enabled");
			if (strcmp(kind, "TransportRule") == 0)
				json_object_set_new(obj, "Mode", json_string("Enforce"));
			if (p) {
				if (json_integer_value(p) > (json_int_t)json_array_size(objs))
					return "Priority out of range";
				for (size_t i = 0; i < json_array_size(objs); i++) {
					json_t *r = json_array_get(objs, i);

					if (prio(r) >= json_integer_value(p))
						json_object_set_new(r, "Priority",
						                    json_integer(prio(r) + 1));
				}
			} else {
				json_object_set_new(
				        obj, "Priority",
				        json_integer((json_int_t)json_array_size(objs)));
			}
		} else if (json_object_get(obj, "Enabled") == NULL) {
			json_object_set_new(obj, "Enabled", json_true());
		}
		json_array_append_new(objs, obj);
		if (is_rule_kind(kind))
			sim_renumber(objs);
		return NULL;
	}
	obj = find(t, kind, json_string_value(json_object_get(s->params, "Identity")));
	if (obj == NULL)
		return "404: couldn't be found";
	if (strcmp(verb, "Set") == 0) {
		json_t *copy;

		if (strcmp(kind, "TransportRule") == 0 && json_object_get(s->params, "Enabled"))
			return "A parameter cannot be found that matches parameter name 'Enabled'";
		if (json_is_true(json_object_get(obj, "IsBuiltInProtection")))
			return "The built-in protection policy can't be modified";
		if (strcmp(kind, "ATPBuiltInProtectionRule") == 0 &&
		    json_object_get(s->params, "State"))
			return "A parameter cannot be found that matches parameter name 'State'";
		if ((err = sim_validate(kind, s->params, obj)) != NULL)
			return err;
		copy = json_deep_copy(s->params);
		json_object_foreach (copy, k, v) {
			if (strcmp(k, "Identity") == 0)
				continue;
			if (strcmp(k, "Priority") == 0 && is_rule_kind(kind)) {
				json_int_t p = json_integer_value(v), old = prio(obj);

				if (p < 0 || p >= (json_int_t)json_array_size(objs)) {
					json_decref(copy);
					return "Priority out of range";
				}
				for (size_t i = 0; i < json_array_size(objs); i++) {
					json_t *r = json_array_get(objs, i);

					if (r == obj)
						continue;
					if (old < p && prio(r) > old && prio(r) <= p)
						json_object_set_new(r, "Priority",
						                    json_integer(prio(r) - 1));
					if (p < old && prio(r) >= p && prio(r) < old)
						json_object_set_new(r, "Priority",
						                    json_integer(prio(r) + 1));
				}
			}
			json_object_set(obj, k, v);
		}
		json_decref(copy);
		if (is_rule_kind(kind) && json_object_get(s->params, "Priority"))
			sim_renumber(objs);
		return NULL;
	}
	if (strcmp(verb, "Enable") == 0 || strcmp(verb, "Disable") == 0) {
		json_object_set_new(
		        obj, "State",
		        json_string(strcmp(verb, "Enable") == 0 ? "Enabled" : "Disabled"));
		return NULL;
	}
	if (strcmp(verb, "Remove") == 0) {
		if (json_is_true(json_object_get(obj, "IsDefault")))
			return "The default policy can't be removed";
		for (size_t i = 0; i < json_array_size(objs); i++)
			if (json_array_get(objs, i) == obj)
				json_array_remove(objs, i);
		if (is_rule_kind(kind))
			sim_renumber(objs);
		return NULL;
	}
	return "not a cmdlet the emulator serves";
}

/* Run every step of p on t; fails the test on the first refusal. */
static void
sim_apply(json_t *t, const struct m365_plan *p)
{
	static int guid;

	for (size_t i = 0; i < p->n; i++) {
		const char *err = sim_step(t, &p->steps[i], &guid);

		if (err)
			fail_msg("step %zu %s (%s): %s", i, p->steps[i].cmdlet, p->steps[i].why,
			         err);
	}
}

/* --- helpers --- */

static void
plan_ok(const struct m365_site *site, const struct m365_choice *ch, const json_t *t,
        struct m365_plan *p)
{
	char err[512] = "";

	if (m365_plan_apply(site, ch, t, p, err, sizeof(err)) != 0)
		fail_msg("m365_plan_apply: %s", err);
}

/* The plan's cmdlets, space-separated. */
static const char *
cmdlets(const struct m365_plan *p)
{
	static char buf[4096];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n && len < sizeof(buf); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? " " : "",
		                        p->steps[i].cmdlet);
	return buf;
}

static bool
has_note(const struct m365_plan *p, const char *sub)
{
	for (size_t i = 0; i < json_array_size(p->notes); i++)
		if (strstr(json_string_value(json_array_get(p->notes, i)), sub))
			return true;
	return false;
}

static const struct m365_step *
step_of(const struct m365_plan *p, const char *cmdlet, const char *identity)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct m365_step *s = &p->steps[i];
		const char *id = json_string_value(json_object_get(s->params, "Identity"));

		if (id == NULL)
			id = json_string_value(json_object_get(s->params, "Name"));
		if (strcmp(s->cmdlet, cmdlet) == 0 &&
		    (identity == NULL || (id && strcmp(id, identity) == 0)))
			return s;
	}
	return NULL;
}

static void
assert_json(const char *what, const json_t *got, const char *want_text)
{
	json_t *want = js(want_text);

	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);

		fail_msg("%s:\n got  %s\n want %s", what, g ? g : "(null)", w);
	}
	json_decref(want);
}

/* The check entry of item, or NULL. */
static const json_t *
check_of(const json_t *check, const char *item)
{
	for (size_t i = 0; i < json_array_size(check); i++) {
		const json_t *e = json_array_get(check, i);

		if (strcmp(json_string_value(json_object_get(e, "item")), item) == 0)
			return e;
	}
	return NULL;
}

static const char *
check_status(const json_t *check, const char *item)
{
	const json_t *e = check_of(check, item);

	return e ? json_string_value(json_object_get(e, "status")) : "(absent)";
}

static const char *
check_detail(const json_t *check, const char *item)
{
	const json_t *e = check_of(check, item);

	return e ? json_string_value(json_object_get(e, "detail")) : "";
}

/* Every step's why is one non-empty line; every step has an undo record online. */
static void
assert_steps_explained(const struct m365_plan *p, bool online)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct m365_step *s = &p->steps[i];

		if (s->why == NULL || s->why[0] == '\0' || strpbrk(s->why, "\r\n"))
			fail_msg("step %zu %s: why '%s'", i, s->cmdlet, s->why ? s->why : "(null)");
		if (!online && s->undo)
			fail_msg("step %zu %s: an offline step with an undo record", i, s->cmdlet);
		if (online && s->undo == NULL && strncmp(s->cmdlet, "Enable-", 7) != 0 &&
		    strncmp(s->cmdlet, "Remove-", 7) != 0)
			fail_msg("step %zu %s: no undo record", i, s->cmdlet);
	}
}

static void assert_script_matches(const struct m365_plan *p, const char *script);

/* The undo records of a plan, oldest first, appended to changes. */
static void
collect_undo(json_t *changes, const struct m365_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->steps[i].undo)
			json_array_append(changes, p->steps[i].undo);
}

/* --- names --- */

static void
test_names(void **state)
{
	static const struct {
		unsigned bit;
		const char *name;
	} prots[] = {
	        {M365_P_ANTISPAM, "antispam"},          {M365_P_ANTIPHISH, "antiphish"},
	        {M365_P_ANTIMALWARE, "antimalware"},    {M365_P_SAFELINKS, "safelinks"},
	        {M365_P_SAFEATTACH, "safeattachments"},
	};
	enum m365_mode m;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < nitems(prots); i++) {
		assert_string_equal(m365_prot_name(prots[i].bit), prots[i].name);
		assert_int_equal(m365_prot_parse(prots[i].name), prots[i].bit);
	}
	assert_int_equal(m365_prot_parse("antivirus"), 0);
	assert_null(m365_prot_name(1u << 9));
	assert_int_equal(m365_mode_parse("relay", &m), 0);
	assert_int_equal(m, M365_MODE_RELAY);
	assert_string_equal(m365_mode_name(M365_MODE_MX), "mx");
	assert_int_equal(m365_mode_parse("smtp", &m), -1);
	while (m365_read_kinds[n])
		n++;
	assert_int_equal(n, 18);
	assert_string_equal(m365_read_kinds[0], "AcceptedDomain");
	/* the Defender kinds come last: without the licence they are null */
	for (size_t i = 12; i < n; i++)
		assert_true(strstr(m365_read_kinds[i], "Safe") ||
		            strstr(m365_read_kinds[i], "ATP"));
	for (size_t i = 0; i < 12; i++)
		assert_false(strstr(m365_read_kinds[i], "Safe") ||
		             strstr(m365_read_kinds[i], "ATP"));
}

/* --- apply on a fresh tenant --- */

static void
test_fresh_relay_all(void **state)
{
	json_t *t = tenant_fresh();
	struct m365_plan p;
	const struct m365_step *s;

	(void)state;
	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_string_equal(cmdlets(&p),
	                    "New-OutboundConnector New-InboundConnector New-TransportRule "
	                    "New-TransportRule Set-HostedContentFilterPolicy Set-AntiPhishPolicy "
	                    "Set-MalwareFilterPolicy Set-ATPBuiltInProtectionRule "
	                    "Disable-EOPProtectionPolicyRule Disable-ATPProtectionPolicyRule");
	assert_json("outbound", p.steps[0].params,
	            "{'Name': 'moat: to the gateway', 'ConnectorType': 'Partner', "
	            "'IsTransportRuleScoped': true, 'UseMxRecord': false, "
	            "'SmartHosts': ['" HOST "'], 'TlsSettings': 'DomainValidation', "
	            "'TlsDomain': '" HOST "', 'Enabled': true}");
	assert_json("inbound", p.steps[1].params,
	            "{'Name': 'moat: from the gateway', 'ConnectorType': 'Partner', "
	            "'SenderDomains': ['*'], 'RequireTls': true, "
	            "'SenderIPAddresses': ['192.0.2.10', '198.51.100.0/24'], "
	            "'RestrictDomainsToIPAddresses': true, 'Enabled': true}");
	assert_json("bypass", p.steps[2].params,
	            "{'Name': 'moat: bypass clutter for gateway mail', "
	            "'SenderIpRanges': ['192.0.2.10', '198.51.100.0/24'], "
	            "'HeaderMatchesMessageHeader': 'X-Moat-Relay-Key', "
	            "'HeaderMatchesPatterns': ['^" KEY1 "$'], 'SetSCL': -1, "
	            "'SetHeaderName': 'X-MS-Exchange-Organization-BypassClutter', "
	            "'SetHeaderValue': 'true', 'StopRuleProcessing': true, 'Enabled': true}");
	assert_json("relay", p.steps[3].params,
	            "{'Name': 'moat: route inbound mail to the gateway', "
	            "'FromScope': 'NotInOrganization', 'SentToScope': 'InOrganization', "
	            "'RouteMessageOutboundConnector': 'moat: to the gateway', "
	            "'ExceptIfHeaderContainsMessageHeader': 'X-Moat-Relay-Key', "
	            "'ExceptIfHeaderContainsWords': ['" KEY1 "'], "
	            "'ExceptIfSenderIpRanges': ['192.0.2.10', '198.51.100.0/24'], "
	            "'StopRuleProcessing': true, 'Priority': 0, 'Enabled': true}");
	assert_json("antispam", p.steps[4].params,
	            "{'Identity': 'Default', 'MarkAsSpamBulkMail': 'Off', 'SpamZapEnabled': false, "
	            "'PhishZapEnabled': false}");
	assert_json("antiphish", p.steps[5].params,
	            "{'Identity': 'Office365 AntiPhish Default', 'EnableSpoofIntelligence': false, "
	            "'HonorDmarcPolicy': false, 'EnableUnauthenticatedSender': false}");
	assert_json("antimalware", p.steps[6].params,
	            "{'Identity': 'Default', 'EnableFileFilter': false, 'ZapEnabled': false}");
	assert_json("builtin", p.steps[7].params,
	            "{'Identity': 'ATP Built-In Protection Rule', "
	            "'ExceptIfRecipientDomainIs': ['contoso.com']}");
	assert_json("eop preset", p.steps[8].params,
	            "{'Identity': 'Standard Preset Security Policy'}");
	assert_json("atp preset", p.steps[9].params,
	            "{'Identity': 'Standard Preset Security Policy'}");
	/* the items the steps serve */
	assert_string_equal(p.steps[0].item, "outbound-connector");
	assert_string_equal(p.steps[1].item, "inbound-connector");
	assert_string_equal(p.steps[2].item, "bypass-rule");
	assert_string_equal(p.steps[3].item, "relay-rule");
	assert_string_equal(p.steps[7].item, "builtin-protection");
	assert_string_equal(p.steps[9].item, "presets");
	/* the parameters in the order the script writes them: the name first */
	assert_string_equal(json_object_iter_key(json_object_iter(p.steps[3].params)), "Name");
	/* undo records: what was created, the previous values, what was disabled */
	assert_json("undo new", p.steps[2].undo,
	            "{'op': 'created', 'kind': 'TransportRule', "
	            "'identity': 'moat: bypass clutter for gateway mail'}");
	assert_json("undo set", p.steps[4].undo,
	            "{'op': 'set', 'kind': 'HostedContentFilterPolicy', 'identity': 'Default', "
	            "'previous': {'MarkAsSpamBulkMail': 'On', 'SpamZapEnabled': true, "
	            "'PhishZapEnabled': true}}");
	assert_json("undo builtin", p.steps[7].undo,
	            "{'op': 'set', 'kind': 'ATPBuiltInProtectionRule', "
	            "'identity': 'ATP Built-In Protection Rule', "
	            "'previous': {'ExceptIfRecipientDomainIs': null}}");
	assert_json("undo preset", p.steps[8].undo,
	            "{'op': 'disabled', 'kind': 'EOPProtectionPolicyRule', "
	            "'identity': 'Standard Preset Security Policy'}");
	assert_steps_explained(&p, true);
	s = step_of(&p, "Set-HostedContentFilterPolicy", "Default");
	assert_non_null(strstr(s->why, "SpamZapEnabled false (now true)"));
	/* what Microsoft does not allow, said plainly; relay-mode advice */
	assert_true(has_note(&p, "default anti-spam policy cannot be switched off"));
	assert_true(has_note(&p, "always quarantines malware and this cannot be switched off"));
	assert_true(has_note(&p, "Built-in protection"));
	assert_true(has_note(&p, "cannot be turned off"));
	assert_true(has_note(&p, "moat turns off the presets whose protections were all chosen"));
	assert_true(has_note(&p, "turning off a preset turns off every protection it holds"));
	assert_true(has_note(&p, "counted twice"));
	assert_true(has_note(&p, "spoof-allow entries"));
	assert_true(has_note(&p, "192.0.2.10, 198.51.100.0/24"));
	m365_plan_free(&p);
	json_decref(t);
}

/* Apply, then plan again: nothing left to do, and check says ok everywhere. */
static void
test_converges(void **state)
{
	static const char *const egress_private[] = {"10.1.2.3"};
	static const struct m365_site site_cert = {
	        .egress = egress_private,
	        .negress = 1,
	        .host = HOST,
	        .cert_name = "mx.moat.example",
	        .key_header = "X-Moat-Relay-Key",
	        .keys = keys1,
	        .nkeys = 1,
	        .domains = doms1,
	        .ndomains = 1,
	};
	static const struct {
		const char *row;
		json_t *(*tenant)(void);
		const struct m365_site *site;
		struct m365_choice ch;
	} rows[] = {
	        {"relay all", tenant_fresh, &site_std, {M365_P_ALL, true, M365_MODE_RELAY, false}},
	        {"mx bypass", tenant_fresh, &site_std, {M365_P_ALL, true, M365_MODE_MX, false}},
	        {"mx ef", tenant_fresh, &site_std, {M365_P_ALL, false, M365_MODE_MX, true}},
	        {"mx ef cert private", tenant_fresh, &site_cert, {0, true, M365_MODE_MX, true}},
	        {"custom rules",
	         tenant_custom,
	         &site_std,
	         {M365_P_ALL, true, M365_MODE_NONE, false}},
	        {"no defender",
	         tenant_no_defender,
	         &site_std,
	         {M365_P_ALL, true, M365_MODE_RELAY, false}},
	        {"bypass only", tenant_fresh, &site_std, {0, true, M365_MODE_NONE, false}},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		json_t *t = rows[i].tenant(), *check;
		struct m365_plan p, again;

		plan_ok(rows[i].site, &rows[i].ch, t, &p);
		if (p.n == 0)
			table_mismatch(rows[i].row, "nothing to do on a fresh tenant");
		sim_apply(t, &p);
		plan_ok(rows[i].site, &rows[i].ch, t, &again);
		if (again.n)
			table_mismatch(rows[i].row, "after applying: %zu steps: %s (%s)", again.n,
			               cmdlets(&again), again.steps[0].why);
		if (!has_note(&again, "already as wanted"))
			table_mismatch(rows[i].row, "no 'already as wanted' note");
		check = m365_plan_check(rows[i].site, &rows[i].ch, t, NULL);
		for (size_t j = 0; j < json_array_size(check); j++) {
			const json_t *e = json_array_get(check, j);
			const char *st = json_string_value(json_object_get(e, "status"));

			if (strcmp(st, "ok") != 0 && strcmp(st, "skipped") != 0)
				table_mismatch(rows[i].row, "check %s: %s (%s)",
				               json_string_value(json_object_get(e, "item")), st,
				               json_string_value(json_object_get(e, "detail")));
		}
		json_decref(check);
		m365_plan_free(&p);
		m365_plan_free(&again);
		json_decref(t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* moat's objects drifted: only what differs is Set, and the why says so. */
static void
test_drifted(void **state)
{
	json_t *t = tenant_fresh(), *check, *bypass, *relay;
	struct m365_plan p;
	const struct m365_step *s;

	(void)state;
	plan_ok(&site_std, &choice_relay_all, t, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);
	/* an admin edits moat's rules: SCL 0, off, one IP gone, moved first */
	bypass = find(t, "TransportRule", M365_NAME_BYPASS_RULE);
	relay = find(t, "TransportRule", M365_NAME_RELAY_RULE);
	json_object_set_new(bypass, "SetSCL", json_integer(0));
	json_object_set_new(bypass, "State", json_string("Disabled"));
	json_object_set_new(bypass, "SenderIpRanges", js("['192.0.2.10']"));
	json_object_set_new(bypass, "Priority", json_integer(0));
	json_object_set_new(relay, "Priority", json_integer(1));
	/* case differences Exchange ignores are not drift; the header value's case is */
	json_object_set_new(bypass, "HeaderMatchesMessageHeader", json_string("x-moat-relay-key"));

	check = m365_plan_check(&site_std, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "bypass-rule"), "drifted");
	assert_non_null(strstr(check_detail(check, "bypass-rule"), "SetSCL is 0, want -1"));
	assert_non_null(strstr(check_detail(check, "bypass-rule"),
	                       "SenderIpRanges is 192.0.2.10, want 192.0.2.10, 198.51.100.0/24"));
	assert_non_null(
	        strstr(check_detail(check, "bypass-rule"), "State is Disabled, want Enabled"));
	assert_null(strstr(check_detail(check, "bypass-rule"), "HeaderMatchesMessageHeader"));
	assert_string_equal(check_status(check, "relay-rule"), "drifted");
	assert_non_null(strstr(check_detail(check, "relay-rule"), "Priority is 1, want 0"));
	assert_string_equal(check_status(check, "rule-order"), "drifted");
	assert_string_equal(check_status(check, "antispam"), "ok");
	assert_string_equal(check_status(check, "outbound-connector"), "ok");
	json_decref(check);

	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_string_equal(cmdlets(&p),
	                    "Set-TransportRule Enable-TransportRule Set-TransportRule");
	assert_json("bypass set", p.steps[0].params,
	            "{'Identity': 'moat: bypass clutter for gateway mail', "
	            "'SenderIpRanges': ['192.0.2.10', '198.51.100.0/24'], 'SetSCL': -1}");
	assert_non_null(strstr(p.steps[0].why, "put back"));
	assert_non_null(strstr(p.steps[0].why, "SetSCL -1 (now 0)"));
	assert_json("bypass undo", p.steps[0].undo,
	            "{'op': 'set', 'kind': 'TransportRule', "
	            "'identity': 'moat: bypass clutter for gateway mail', "
	            "'previous': {'SenderIpRanges': ['192.0.2.10'], 'SetSCL': 0}}");
	assert_json("enable", p.steps[1].params,
	            "{'Identity': 'moat: bypass clutter for gateway mail'}");
	assert_json("relay first", p.steps[2].params,
	            "{'Identity': 'moat: route inbound mail to the gateway', 'Priority': 0}");
	assert_non_null(strstr(p.steps[2].why, "Priority 0 (now 1)"));
	sim_apply(t, &p);
	m365_plan_free(&p);
	/* relay rule first, the bypass rule after it */
	assert_int_equal(prio(find(t, "TransportRule", M365_NAME_RELAY_RULE)), 0);
	assert_int_equal(prio(find(t, "TransportRule", M365_NAME_BYPASS_RULE)), 1);
	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_int_equal(p.n, 0);
	m365_plan_free(&p);

	/* a header value of another case is drift (SetHeaderValue is case-sensitive): both sent */
	json_object_set_new(find(t, "TransportRule", M365_NAME_BYPASS_RULE), "SetHeaderValue",
	                    json_string("True"));
	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_int_equal(p.n, 1);
	assert_json("header pair", p.steps[0].params,
	            "{'Identity': 'moat: bypass clutter for gateway mail', "
	            "'SetHeaderName': 'X-MS-Exchange-Organization-BypassClutter', "
	            "'SetHeaderValue': 'true'}");
	s = &p.steps[0];
	assert_non_null(strstr(s->why, "SetHeaderValue true (now True)"));
	m365_plan_free(&p);

	/* a new relay key: the patterns and the relay rule's words change, as sets */
	{
		static const char *const keys2[] = {KEY2, KEY1};
		struct m365_site site2 = site_std;

		site2.keys = keys2;
		site2.nkeys = 2;
		plan_ok(&site2, &choice_relay_all, t, &p);
		assert_string_equal(cmdlets(&p), "Set-TransportRule Set-TransportRule");
		assert_json("patterns", p.steps[0].params,
		            "{'Identity': 'moat: bypass clutter for gateway mail', "
		            "'HeaderMatchesMessageHeader': 'X-Moat-Relay-Key', "
		            "'HeaderMatchesPatterns': ['^" KEY2 "$', '^" KEY1 "$'], "
		            "'SetHeaderName': 'X-MS-Exchange-Organization-BypassClutter', "
		            "'SetHeaderValue': 'true'}");
		m365_plan_free(&p);
	}
	json_decref(t);
}

/* Relay rule at 0, the bypass rule after it, whatever other rules exist. */
static void
test_priorities(void **state)
{
	json_t *t = tenant_fresh(), *rules;
	struct m365_plan p;

	(void)state;
	tenant_add(t, "TransportRule",
	           "{'Name': 'CEO disclaimer', 'Identity': 'CEO disclaimer', 'Guid': 'r1', "
	           "'State': 'Enabled', 'Priority': 0}");
	tenant_add(t, "TransportRule",
	           "{'Name': 'Block exe', 'Identity': 'Block exe', 'Guid': 'r2', "
	           "'State': 'Enabled', 'Priority': 1}");
	plan_ok(&site_std, &choice_relay_all, t, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);
	rules = json_object_get(t, "TransportRule");
	assert_int_equal(json_array_size(rules), 4);
	assert_int_equal(prio(find(t, "TransportRule", M365_NAME_RELAY_RULE)), 0);
	assert_int_equal(prio(find(t, "TransportRule", "CEO disclaimer")), 1);
	assert_int_equal(prio(find(t, "TransportRule", "Block exe")), 2);
	assert_int_equal(prio(find(t, "TransportRule", M365_NAME_BYPASS_RULE)), 3);

	/* the bypass rule from an earlier MX-mode run is first; relay mode comes later */
	json_decref(t);
	t = tenant_fresh();
	{
		struct m365_choice mx = {0, true, M365_MODE_NONE, false};
		struct m365_choice relay = {0, true, M365_MODE_RELAY, false};
		json_t *check;

		plan_ok(&site_std, &mx, t, &p);
		sim_apply(t, &p);
		m365_plan_free(&p);
		plan_ok(&site_std, &relay, t, &p);
		assert_string_equal(cmdlets(&p),
		                    "New-OutboundConnector New-InboundConnector New-TransportRule");
		assert_true(json_is_integer(json_object_get(p.steps[2].params, "Priority")));
		assert_int_equal(json_integer_value(json_object_get(p.steps[2].params, "Priority")),
		                 0);
		check = m365_plan_check(&site_std, &relay, t, NULL);
		assert_string_equal(check_status(check, "rule-order"), "missing");
		json_decref(check);
		sim_apply(t, &p);
		m365_plan_free(&p);
		assert_int_equal(prio(find(t, "TransportRule", M365_NAME_RELAY_RULE)), 0);
		assert_int_equal(prio(find(t, "TransportRule", M365_NAME_BYPASS_RULE)), 1);
		check = m365_plan_check(&site_std, &relay, t, NULL);
		assert_string_equal(check_status(check, "rule-order"), "ok");
		json_decref(check);
	}
	json_decref(t);
}

/* Without Defender for Office 365: Safe Links / Safe Attachments dropped, said so. */
static void
test_no_defender(void **state)
{
	json_t *t = tenant_no_defender(), *check, *det;
	struct m365_plan p;

	(void)state;
	plan_ok(&site_std, &choice_relay_all, t, &p);
	for (size_t i = 0; i < p.n; i++)
		if (strstr(p.steps[i].cmdlet, "Safe") || strstr(p.steps[i].cmdlet, "ATP"))
			fail_msg("a Defender cmdlet without Defender: %s", p.steps[i].cmdlet);
	assert_non_null(step_of(&p, "Disable-EOPProtectionPolicyRule", NULL));
	assert_true(has_note(&p, "Safe Links is left out: the tenant has no Defender"));
	assert_true(has_note(&p, "Safe Attachments is left out"));
	m365_plan_free(&p);
	check = m365_plan_check(&site_std, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "safelinks"), "skipped");
	assert_string_equal(check_status(check, "safeattachments"), "skipped");
	assert_string_equal(check_status(check, "builtin-protection"), "skipped");
	assert_string_equal(check_status(check, "antispam"), "drifted");
	json_decref(check);
	det = m365_plan_detect(t);
	assert_false(json_is_true(json_object_get(det, "defender")));
	json_decref(det);
	json_decref(t);
}

/* MX mode with Enhanced Filtering: no bypass rule, an old one removed. */
static void
test_enhanced_filtering(void **state)
{
	static const char *const egress_private[] = {"192.0.2.10", "10.1.2.3"};
	struct m365_choice ef = {0, true, M365_MODE_MX, true};
	struct m365_site site_priv = site_std;
	json_t *t = tenant_fresh();
	struct m365_plan p;

	(void)state;
	/* an earlier run made the bypass rule */
	{
		struct m365_choice bypass = {0, true, M365_MODE_NONE, false};

		plan_ok(&site_std, &bypass, t, &p);
		sim_apply(t, &p);
		m365_plan_free(&p);
	}
	plan_ok(&site_std, &ef, t, &p);
	assert_string_equal(cmdlets(&p), "New-InboundConnector Remove-TransportRule");
	assert_json("ef", p.steps[0].params,
	            "{'Name': 'moat: from the gateway', 'ConnectorType': 'Partner', "
	            "'SenderDomains': ['*'], 'RequireTls': true, "
	            "'SenderIPAddresses': ['192.0.2.10', '198.51.100.0/24'], "
	            "'RestrictDomainsToIPAddresses': true, "
	            "'EFSkipIPs': ['192.0.2.10', '198.51.100.0/24'], 'Enabled': true}");
	assert_json("remove", p.steps[1].params,
	            "{'Identity': 'moat: bypass clutter for gateway mail'}");
	assert_string_equal(p.steps[1].item, "no-bypass-rule");
	assert_true(has_note(&p, "never both"));
	{
		json_t *check = m365_plan_check(&site_std, &ef, t, NULL);

		assert_string_equal(check_status(check, "no-bypass-rule"), "drifted");
		assert_null(check_of(check, "bypass-rule"));
		json_decref(check);
	}
	sim_apply(t, &p);
	m365_plan_free(&p);
	assert_null(find(t, "TransportRule", M365_NAME_BYPASS_RULE));

	/* a private egress address: EFSkipIPs would be refused, so EFSkipLastIP */
	json_decref(t);
	t = tenant_fresh();
	site_priv.egress = egress_private;
	site_priv.cert_name = "mx.moat.example";
	plan_ok(&site_priv, &ef, t, &p);
	assert_string_equal(cmdlets(&p), "New-InboundConnector");
	assert_json("ef last ip", p.steps[0].params,
	            "{'Name': 'moat: from the gateway', 'ConnectorType': 'Partner', "
	            "'SenderDomains': ['*'], 'RequireTls': true, "
	            "'RestrictDomainsToCertificate': true, "
	            "'TlsSenderCertificateName': 'mx.moat.example', 'EFSkipLastIP': true, "
	            "'Enabled': true}");
	assert_true(has_note(&p, "EFSkipLastIP"));
	sim_apply(t, &p);
	m365_plan_free(&p);

	/* back to the bypass rule: Enhanced Filtering is cleared from the connector */
	{
		struct m365_choice bypass = {0, true, M365_MODE_MX, false};

		plan_ok(&site_priv, &bypass, t, &p);
		assert_string_equal(cmdlets(&p), "Set-InboundConnector New-TransportRule");
		assert_json("ef off", p.steps[0].params,
		            "{'Identity': 'moat: from the gateway', 'EFSkipLastIP': false}");
		assert_non_null(strstr(p.steps[0].why, "clear EFSkipLastIP (now true)"));
		m365_plan_free(&p);
	}
	json_decref(t);
}

/*
 * Never both, across runs and modes: after MX mode with Enhanced
 * Filtering, choosing the bypass rule in any mode clears Enhanced
 * Filtering from moat's inbound connector before the rule is made.
 */
static void
test_ef_then_bypass(void **state)
{
	static const char *const egress_private[] = {"192.0.2.10", "10.1.2.3"};
	static const struct {
		const char *row;
		bool last_ip; /* EFSkipLastIP (a private egress) rather than EFSkipIPs */
		enum m365_mode mode;
		const char *cmdlets;
		const char *params; /* the Set-InboundConnector */
		const char *previous;
	} rows[] = {
	        {"none", false, M365_MODE_NONE, "Set-InboundConnector New-TransportRule",
	         "{'Identity': 'moat: from the gateway', 'EFSkipIPs': null}",
	         "{'EFSkipIPs': ['192.0.2.10', '198.51.100.0/24']}"},
	        {"none, last ip", true, M365_MODE_NONE, "Set-InboundConnector New-TransportRule",
	         "{'Identity': 'moat: from the gateway', 'EFSkipLastIP': false}",
	         "{'EFSkipLastIP': true}"},
	        {"mx", false, M365_MODE_MX, "Set-InboundConnector New-TransportRule",
	         "{'Identity': 'moat: from the gateway', 'EFSkipIPs': null}",
	         "{'EFSkipIPs': ['192.0.2.10', '198.51.100.0/24']}"},
	        {"relay", false, M365_MODE_RELAY,
	         "New-OutboundConnector Set-InboundConnector New-TransportRule New-TransportRule",
	         "{'Identity': 'moat: from the gateway', 'EFSkipIPs': null}",
	         "{'EFSkipIPs': ['192.0.2.10', '198.51.100.0/24']}"},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		struct m365_site site = site_std;
		struct m365_choice ef = {0, false, M365_MODE_MX, true};
		struct m365_choice bypass = {0, true, rows[i].mode, false};
		json_t *t = tenant_fresh(), *check, *want;
		const struct m365_step *s;
		struct m365_plan p;

		if (rows[i].last_ip) {
			site.egress = egress_private;
			site.cert_name = "mx.moat.example";
		}
		plan_ok(&site, &ef, t, &p);
		sim_apply(t, &p);
		m365_plan_free(&p);

		check = m365_plan_check(&site, &bypass, t, NULL);
		if (strcmp(check_status(check, "inbound-connector"), "drifted") != 0 ||
		    !strstr(check_detail(check, "inbound-connector"),
		            rows[i].last_ip ? "EFSkipLastIP is true, want it cleared"
		                            : "EFSkipIPs is 192.0.2.10, 198.51.100.0/24, want it "
		                              "cleared"))
			table_mismatch(rows[i].row, "check before: %s (%s)",
			               check_status(check, "inbound-connector"),
			               check_detail(check, "inbound-connector"));
		json_decref(check);

		plan_ok(&site, &bypass, t, &p);
		if (strcmp(cmdlets(&p), rows[i].cmdlets) != 0)
			table_mismatch(rows[i].row, "got '%s', want '%s'", cmdlets(&p),
			               rows[i].cmdlets);
		s = step_of(&p, "Set-InboundConnector", NULL);
		if (s == NULL) {
			table_mismatch(rows[i].row, "no Set-InboundConnector");
		} else {
			want = js(rows[i].params);
			if (!json_equal(s->params, want))
				table_mismatch(rows[i].row, "params %s",
				               json_dumps(s->params, JSON_COMPACT));
			json_decref(want);
			want = js(rows[i].previous);
			if (!json_equal(json_object_get(s->undo, "previous"), want) ||
			    strcmp(json_string_value(json_object_get(s->undo, "op")), "set") != 0)
				table_mismatch(rows[i].row, "undo %s",
				               json_dumps(s->undo, JSON_COMPACT));
			json_decref(want);
			if (strcmp(s->item, "inbound-connector") != 0 ||
			    !strstr(s->why,
			            rows[i].mode == M365_MODE_NONE ? "never both" : "clear EF"))
				table_mismatch(rows[i].row, "item %s, why %s", s->item, s->why);
			if (!has_note(&p, "moat's inbound connector has Enhanced Filtering on from "
			                  "an earlier run; moat turns it off because the bypass "
			                  "rule is used"))
				table_mismatch(rows[i].row, "no note");
		}
		/* cleared before the rule exists */
		if (step_of(&p, "New-TransportRule", M365_NAME_BYPASS_RULE) <
		    step_of(&p, "Set-InboundConnector", NULL))
			table_mismatch(rows[i].row,
			               "the bypass rule before the connector is clear");
		sim_apply(t, &p);
		m365_plan_free(&p);

		plan_ok(&site, &bypass, t, &p);
		if (p.n)
			table_mismatch(rows[i].row, "after applying: %s", cmdlets(&p));
		m365_plan_free(&p);
		check = m365_plan_check(&site, &bypass, t, NULL);
		if (strcmp(check_status(check, "inbound-connector"), "ok") != 0 ||
		    strcmp(check_status(check, "bypass-rule"), "ok") != 0)
			table_mismatch(rows[i].row, "check after: %s, %s",
			               check_status(check, "inbound-connector"),
			               check_status(check, "bypass-rule"));
		json_decref(check);
		json_decref(t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);

	/* no connector of moat's: nothing about it */
	{
		struct m365_choice bypass = {0, true, M365_MODE_NONE, false};
		json_t *t = tenant_fresh(), *check;
		struct m365_plan p;
		char *script;

		plan_ok(&site_std, &bypass, t, &p);
		assert_string_equal(cmdlets(&p), "New-TransportRule");
		m365_plan_free(&p);
		check = m365_plan_check(&site_std, &bypass, t, NULL);
		assert_null(check_of(check, "inbound-connector"));
		json_decref(check);
		json_decref(t);

		/* offline: only if the connector exists, before the rule */
		plan_ok(&site_std, &bypass, NULL, &p);
		assert_string_equal(p.steps[0].cmdlet, "Set-InboundConnector");
		assert_int_equal(p.steps[0].when, M365_WHEN_PRESENT);
		assert_json("offline", p.steps[0].params,
		            "{'Identity': 'moat: from the gateway', 'EFSkipIPs': null, "
		            "'EFSkipLastIP': false}");
		script = m365_plan_script(&p);
		assert_non_null(script);
		assert_script_matches(&p, script);
		assert_non_null(strstr(script, "if (Get-InboundConnector -Identity 'moat: from the "
		                               "gateway' -ErrorAction SilentlyContinue) {\n"));
		assert_non_null(strstr(script,
		                       "\tSet-InboundConnector -Identity 'moat: from the "
		                       "gateway' -EFSkipIPs $null -EFSkipLastIP $false\n}\n"));
		free(script);
		m365_plan_free(&p);
	}
}

/* Config allows relay keys of 16 to 128 characters: the longest one works whole. */
static void
test_relay_key_128(void **state)
{
	char key[129], pattern[131], *script;
	const char *keys[1] = {key};
	struct m365_site site = site_std;
	json_t *t = tenant_fresh(), *check;
	struct m365_plan p;
	const struct m365_step *s;

	(void)state;
	for (size_t i = 0; i < 128; i++)
		key[i] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[i % 64];
	key[128] = '\0';
	snprintf(pattern, sizeof(pattern), "^%s$", key);
	site.keys = keys;
	plan_ok(&site, &choice_relay_all, t, &p);
	s = step_of(&p, "New-TransportRule", M365_NAME_BYPASS_RULE);
	assert_non_null(s);
	assert_int_equal(json_array_size(json_object_get(s->params, "HeaderMatchesPatterns")), 1);
	assert_string_equal(json_string_value(json_array_get(
	                            json_object_get(s->params, "HeaderMatchesPatterns"), 0)),
	                    pattern);
	assert_int_equal(strlen(pattern), 130);
	s = step_of(&p, "New-TransportRule", M365_NAME_RELAY_RULE);
	assert_string_equal(json_string_value(json_array_get(
	                            json_object_get(s->params, "ExceptIfHeaderContainsWords"), 0)),
	                    key);
	script = m365_plan_script(&p);
	assert_non_null(strstr(script, pattern));
	free(script);
	sim_apply(t, &p);
	m365_plan_free(&p);
	plan_ok(&site, &choice_relay_all, t, &p);
	assert_int_equal(p.n, 0);
	m365_plan_free(&p);
	check = m365_plan_check(&site, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "bypass-rule"), "ok");
	json_decref(check);
	json_decref(t);
}

/*
 * moat's egress as the admin wrote it (config takes host bits and any
 * case) against what Exchange keeps: the same addresses are no drift.
 */
static void
test_egress_as_addresses(void **state)
{
	static const char *const egress[] = {"198.51.100.5/24", "2001:DB8::1"};
	static const char *const props[][2] = {
	        {"TransportRule", "SenderIpRanges"},
	        {"TransportRule", "ExceptIfSenderIpRanges"},
	        {"InboundConnector", "SenderIPAddresses"},
	        {"InboundConnector", "EFSkipIPs"},
	};
	struct m365_site site = site_std;
	struct m365_choice relay = choice_relay_all;
	struct m365_choice ef = {0, false, M365_MODE_MX, true};
	json_t *t, *check;
	struct m365_plan p;

	(void)state;
	site.egress = egress;
	for (int pass = 0; pass < 2; pass++) {
		const struct m365_choice *ch = pass == 0 ? &relay : &ef;

		t = tenant_fresh();
		plan_ok(&site, ch, t, &p);
		/* what moat sends stays as configured */
		assert_json("sent",
		            json_object_get(step_of(&p, "New-InboundConnector", NULL)->params,
		                            "SenderIPAddresses"),
		            "['198.51.100.5/24', '2001:DB8::1']");
		sim_apply(t, &p);
		m365_plan_free(&p);
		/* Exchange keeps them in its own form */
		for (size_t i = 0; i < nitems(props); i++) {
			json_t *a = json_object_get(t, props[i][0]);

			for (size_t j = 0; j < json_array_size(a); j++) {
				json_t *o = json_array_get(a, j);

				if (json_object_get(o, props[i][1]))
					json_object_set_new(
					        o, props[i][1],
					        js(i == 1 ? "['198.51.100.0-198.51.100.255', "
					                    "'2001:db8:0:0:0:0:0:1/128']"
					                  : "['198.51.100.0/24', "
					                    "'2001:db8:0:0:0:0:0:1']"));
			}
		}
		plan_ok(&site, ch, t, &p);
		if (p.n)
			fail_msg("pass %d: %zu steps: %s (%s)", pass, p.n, cmdlets(&p),
			         p.steps[0].why);
		m365_plan_free(&p);
		check = m365_plan_check(&site, ch, t, NULL);
		for (size_t j = 0; j < json_array_size(check); j++) {
			const json_t *e = json_array_get(check, j);
			const char *st = json_string_value(json_object_get(e, "status"));

			if (strcmp(st, "ok") != 0 && strcmp(st, "skipped") != 0)
				fail_msg("pass %d: check %s: %s (%s)", pass,
				         json_string_value(json_object_get(e, "item")), st,
				         json_string_value(json_object_get(e, "detail")));
		}
		json_decref(check);
		/* other addresses still are */
		json_object_set_new(find(t, "InboundConnector", M365_NAME_INBOUND),
		                    "SenderIPAddresses", js("['198.51.100.0/25', '2001:db8::1']"));
		check = m365_plan_check(&site, ch, t, NULL);
		assert_string_equal(check_status(check, "inbound-connector"), "drifted");
		assert_non_null(strstr(check_detail(check, "inbound-connector"),
		                       "SenderIPAddresses is 198.51.100.0/25, 2001:db8::1, want "
		                       "198.51.100.5/24, 2001:DB8::1"));
		json_decref(check);
		json_decref(t);
	}
}

/* check: ok / pending / missing / drifted / skipped, with titles. */
static void
test_check(void **state)
{
	json_t *t = tenant_fresh(), *check, *applied;
	struct m365_plan p;
	struct m365_choice nodef = choice_relay_all;

	(void)state;
	check = m365_plan_check(&site_std, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "outbound-connector"), "missing");
	assert_string_equal(check_status(check, "inbound-connector"), "missing");
	assert_string_equal(check_status(check, "bypass-rule"), "missing");
	assert_string_equal(check_status(check, "relay-rule"), "missing");
	assert_string_equal(check_status(check, "rule-order"), "missing");
	assert_string_equal(check_status(check, "antispam"), "drifted");
	assert_non_null(
	        strstr(check_detail(check, "antispam"), "SpamZapEnabled is true, want false"));
	assert_string_equal(check_status(check, "antiphish"), "drifted");
	assert_string_equal(check_status(check, "antimalware"), "drifted");
	assert_string_equal(check_status(check, "safelinks"), "ok");
	assert_string_equal(check_status(check, "safeattachments"), "ok");
	assert_string_equal(check_status(check, "builtin-protection"), "drifted");
	assert_non_null(strstr(check_detail(check, "builtin-protection"),
	                       "ExceptIfRecipientDomainIs lacks contoso.com"));
	assert_string_equal(check_status(check, "presets"), "drifted");
	assert_null(check_of(check, "customization"));
	assert_null(check_of(check, "no-bypass-rule"));
	assert_int_equal(json_array_size(check), 12);
	for (size_t i = 0; i < json_array_size(check); i++) {
		const char *title =
		        json_string_value(json_object_get(json_array_get(check, i), "title"));

		assert_true(title && strlen(title) > 10);
	}
	json_decref(check);

	/* applied in this run, not visible yet (Exchange takes its time): pending */
	applied = js("['bypass-rule', 'antispam', 'presets']");
	check = m365_plan_check(&site_std, &choice_relay_all, t, applied);
	assert_string_equal(check_status(check, "bypass-rule"), "pending");
	assert_string_equal(check_status(check, "antispam"), "pending");
	assert_string_equal(check_status(check, "presets"), "pending");
	assert_string_equal(check_status(check, "relay-rule"), "missing");
	json_decref(check);

	plan_ok(&site_std, &choice_relay_all, t, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);
	check = m365_plan_check(&site_std, &choice_relay_all, t, applied);
	for (size_t i = 0; i < json_array_size(check); i++)
		assert_string_equal(
		        json_string_value(json_object_get(json_array_get(check, i), "status")),
		        "ok");
	json_decref(check);
	json_decref(applied);

	/* a disabled moat rule is drifted */
	json_object_set_new(find(t, "TransportRule", M365_NAME_RELAY_RULE), "State",
	                    json_string("Disabled"));
	check = m365_plan_check(&site_std, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "relay-rule"), "drifted");
	json_decref(check);

	/* the tenant not read: nothing can be said */
	check = m365_plan_check(&site_std, &choice_relay_all, NULL, NULL);
	assert_string_equal(check_status(check, "bypass-rule"), "skipped");
	json_decref(check);

	/* no Defender */
	json_decref(t);
	t = tenant_no_defender();
	nodef.protections = M365_P_SAFELINKS;
	check = m365_plan_check(&site_std, &nodef, t, NULL);
	assert_string_equal(check_status(check, "safelinks"), "skipped");
	assert_null(check_of(check, "presets"));
	json_decref(check);

	/* moat's side incomplete: the item says what is missing */
	{
		struct m365_site noegress = site_std;

		noegress.negress = 0;
		check = m365_plan_check(&noegress, &choice_relay_all, t, NULL);
		assert_string_equal(check_status(check, "bypass-rule"), "missing");
		assert_non_null(strstr(check_detail(check, "bypass-rule"), "no egress addresses"));
		json_decref(check);
	}
	json_decref(t);
}

/* Custom rules and policies: only enabled custom ones are turned off. */
static void
test_custom_rules(void **state)
{
	json_t *t = tenant_custom();
	struct m365_choice ch = {M365_P_ALL, false, M365_MODE_NONE, false};
	struct m365_plan p;
	const struct m365_step *s;

	(void)state;
	plan_ok(&site_std, &ch, t, &p);
	assert_string_equal(
	        cmdlets(&p),
	        "Disable-HostedContentFilterRule Set-HostedContentFilterPolicy "
	        "Disable-AntiPhishRule Set-AntiPhishPolicy Disable-MalwareFilterRule "
	        "Set-MalwareFilterPolicy Disable-SafeLinksRule Disable-SafeAttachmentRule "
	        "Set-SafeAttachmentPolicy Set-ATPBuiltInProtectionRule "
	        "Disable-EOPProtectionPolicyRule Disable-ATPProtectionPolicyRule");
	s = step_of(&p, "Disable-HostedContentFilterRule", NULL);
	assert_json("custom rule", s->params, "{'Identity': 'Contoso HostedContentFilterRule'}");
	assert_json("custom undo", s->undo,
	            "{'op': 'disabled', 'kind': 'HostedContentFilterRule', "
	            "'identity': 'Contoso HostedContentFilterRule'}");
	s = step_of(&p, "Set-SafeAttachmentPolicy", NULL);
	assert_json("custom policy", s->params, "{'Identity': 'Contoso SA', 'Enable': false}");
	assert_json("custom policy undo", s->undo,
	            "{'op': 'set', 'kind': 'SafeAttachmentPolicy', 'identity': 'Contoso SA', "
	            "'previous': {'Enable': true}}");
	/* the custom anti-spam policy is not the default one: untouched */
	s = step_of(&p, "Set-HostedContentFilterPolicy", NULL);
	assert_string_equal(json_string_value(json_object_get(s->params, "Identity")), "Default");
	assert_steps_explained(&p, true);
	m365_plan_free(&p);
	json_decref(t);
}

/*
 * Each protection alone: the concrete cmdlets of M365.md 3. The Standard
 * preset (on in the fixture) holds others too, so it is left alone.
 */
static void
test_protection_cmdlets(void **state)
{
	static const struct {
		unsigned bit;
		const char *want;
		const char *note;
	} rows[] = {
	        {M365_P_ANTISPAM, "Disable-HostedContentFilterRule Set-HostedContentFilterPolicy",
	         "the real bypass is an SCL -1 rule"},
	        {M365_P_ANTIPHISH, "Disable-AntiPhishRule Set-AntiPhishPolicy",
	         "spoof intelligence"},
	        {M365_P_ANTIMALWARE, "Disable-MalwareFilterRule Set-MalwareFilterPolicy",
	         "Microsoft always quarantines malware"},
	        {M365_P_SAFELINKS, "Disable-SafeLinksRule Set-ATPBuiltInProtectionRule",
	         "Built-in protection (Safe Links and Safe Attachments for everyone) cannot be "
	         "turned off"},
	        {M365_P_SAFEATTACH,
	         "Disable-SafeAttachmentRule Set-SafeAttachmentPolicy Set-ATPBuiltInProtectionRule",
	         "custom Safe Attachments rules and policies"},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		struct m365_choice ch = {rows[i].bit, false, M365_MODE_NONE, false};
		const char *row = m365_prot_name(rows[i].bit);
		json_t *t = tenant_custom();
		struct m365_plan p;

		json_t *check;
		char label[64];

		plan_ok(&site_std, &ch, t, &p);
		if (strcmp(cmdlets(&p), rows[i].want) != 0)
			table_mismatch(row, "got '%s', want '%s'", cmdlets(&p), rows[i].want);
		if (!has_note(&p, rows[i].note))
			table_mismatch(row, "no note '%s'", rows[i].note);
		if (!has_note(&p, "The Standard Preset Security Policy (") ||
		    !has_note(&p, "is on and moat leaves it alone"))
			table_mismatch(row, "no note on the Standard preset left on");
		check = m365_plan_check(&site_std, &ch, t, NULL);
		if (strcmp(check_status(check, "presets"), "skipped") != 0 ||
		    !strstr(check_detail(check, "presets"),
		            "'Standard Preset Security Policy' is on and left alone"))
			table_mismatch(row, "presets: %s (%s)", check_status(check, "presets"),
			               check_detail(check, "presets"));
		json_decref(check);
		/* the note and the check name what was chosen */
		snprintf(label, sizeof(label), "only %s of its protections was chosen",
		         rows[i].bit == M365_P_ANTISPAM      ? "anti-spam"
		         : rows[i].bit == M365_P_ANTIPHISH   ? "anti-phishing"
		         : rows[i].bit == M365_P_ANTIMALWARE ? "anti-malware"
		         : rows[i].bit == M365_P_SAFELINKS   ? "Safe Links"
		                                             : "Safe Attachments");
		check = m365_plan_check(&site_std, &ch, t, NULL);
		if (!strstr(check_detail(check, "presets"), label))
			table_mismatch(row, "presets detail lacks '%s': %s", label,
			               check_detail(check, "presets"));
		json_decref(check);
		for (size_t j = 0; j < p.n; j++)
			if (strcmp(p.steps[j].item, row) != 0 &&
			    strcmp(p.steps[j].item, "presets") != 0 &&
			    strcmp(p.steps[j].item, "builtin-protection") != 0)
				table_mismatch(row, "step %s serves %s", p.steps[j].cmdlet,
				               p.steps[j].item);
		sim_apply(t, &p);
		m365_plan_free(&p);
		json_decref(t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/*
 * Presets hold several protections: turned off only when all of theirs
 * were chosen; otherwise an enabled one is left alone, said in a note,
 * and its check item is skipped rather than ok or drifted.
 */
static void
test_presets(void **state)
{
	const unsigned eop = M365_P_ANTISPAM | M365_P_ANTIPHISH | M365_P_ANTIMALWARE;
	const unsigned atp = M365_P_SAFELINKS | M365_P_SAFEATTACH;
	json_t *t, *check;
	struct m365_plan p;

	(void)state;
	/* two of three: nothing disabled, the note names the preset and what stays */
	t = tenant_fresh();
	{
		struct m365_choice ch = {M365_P_ANTISPAM | M365_P_ANTIPHISH, false, M365_MODE_NONE,
		                         false};

		plan_ok(&site_std, &ch, t, &p);
		assert_string_equal(cmdlets(&p),
		                    "Set-HostedContentFilterPolicy Set-AntiPhishPolicy");
		assert_true(has_note(
		        &p, "The Standard Preset Security Policy (Exchange Online Protection "
		            "preset) is on and moat leaves it alone: its anti-spam and "
		            "anti-phishing protections, chosen here, stay in force for the users "
		            "the preset covers until the preset is turned off. Choosing anti-spam, "
		            "anti-phishing and anti-malware together lets moat turn it off."));
		assert_false(has_note(&p, "Strict Preset Security Policy"));
		assert_false(has_note(&p, "moat turns off the presets"));
		sim_apply(t, &p);
		m365_plan_free(&p);
		check = m365_plan_check(&site_std, &ch, t, NULL);
		assert_string_equal(check_status(check, "presets"), "skipped");
		assert_non_null(strstr(check_detail(check, "presets"),
		                       "only anti-spam and anti-phishing of its protections were "
		                       "chosen, and anti-spam and anti-phishing stay in force"));
		json_decref(check);
		/* nothing left to do: the left-alone preset is not a step */
		plan_ok(&site_std, &ch, t, &p);
		assert_int_equal(p.n, 0);
		m365_plan_free(&p);
		/* with the presets off, nothing is left alone: ok */
		json_object_set_new(find(t, "EOPProtectionPolicyRule",
		                         "Standard Preset Security "
		                         "Policy"),
		                    "State", json_string("Disabled"));
		check = m365_plan_check(&site_std, &ch, t, NULL);
		assert_string_equal(check_status(check, "presets"), "ok");
		json_decref(check);
	}
	json_decref(t);

	/* all three EOP ones and Safe Links: the EOP preset off, the Defender one left alone */
	t = tenant_fresh();
	{
		struct m365_choice ch = {eop | M365_P_SAFELINKS, false, M365_MODE_NONE, false};
		const struct m365_step *s;

		plan_ok(&site_std, &ch, t, &p);
		assert_null(step_of(&p, "Disable-ATPProtectionPolicyRule", NULL));
		s = step_of(&p, "Disable-EOPProtectionPolicyRule", NULL);
		assert_non_null(s);
		assert_json("eop off", s->params,
		            "{'Identity': 'Standard Preset Security Policy'}");
		assert_true(has_note(&p, "moat turns off the presets whose protections were all "
		                         "chosen"));
		assert_true(has_note(&p,
		                     "The Standard Preset Security Policy (Defender for "
		                     "Office 365 preset) is on and moat leaves it alone: its Safe "
		                     "Links protection, chosen here, stays in force"));
		check = m365_plan_check(&site_std, &ch, t, NULL);
		/* what moat must still do shows as drift, with what it leaves alone */
		assert_string_equal(check_status(check, "presets"), "drifted");
		assert_non_null(strstr(check_detail(check, "presets"),
		                       "the Exchange Online Protection preset 'Standard Preset "
		                       "Security Policy' is on; the Defender for Office 365 preset "
		                       "'Standard Preset Security Policy' is on and left alone"));
		json_decref(check);
		sim_apply(t, &p);
		m365_plan_free(&p);
		check = m365_plan_check(&site_std, &ch, t, NULL);
		assert_string_equal(check_status(check, "presets"), "skipped");
		json_decref(check);
	}
	json_decref(t);

	/* both Defender ones: the Defender preset off, the EOP one not touched */
	t = tenant_fresh();
	{
		struct m365_choice ch = {atp, false, M365_MODE_NONE, false};

		plan_ok(&site_std, &ch, t, &p);
		assert_non_null(step_of(&p, "Disable-ATPProtectionPolicyRule", NULL));
		assert_null(step_of(&p, "Disable-EOPProtectionPolicyRule", NULL));
		assert_false(has_note(&p, "leaves it alone"));
		sim_apply(t, &p);
		m365_plan_free(&p);
		check = m365_plan_check(&site_std, &ch, t, NULL);
		assert_string_equal(check_status(check, "presets"), "ok");
		json_decref(check);
	}
	json_decref(t);

	/* offline: no preset step for a partial choice, a conditional note instead */
	{
		struct m365_choice ch = {M365_P_ANTIMALWARE | atp, false, M365_MODE_NONE, false};

		plan_ok(&site_std, &ch, NULL, &p);
		assert_null(step_of(&p, "Disable-EOPProtectionPolicyRule", NULL));
		assert_non_null(step_of(&p, "Disable-ATPProtectionPolicyRule", NULL));
		assert_true(has_note(&p,
		                     "If a Standard or Strict preset security policy (Exchange "
		                     "Online Protection preset) is on, the script leaves it "
		                     "alone: its anti-malware protection, chosen here, stays in "
		                     "force"));
		m365_plan_free(&p);
	}
}

/* A never-customised tenant: Enable-OrganizationCustomization first, said so. */
static void
test_dehydrated(void **state)
{
	json_t *t = tenant_fresh(), *check;
	struct m365_choice bypass = {0, true, M365_MODE_NONE, false};
	struct m365_plan p;

	(void)state;
	json_object_set_new(json_array_get(json_object_get(t, "OrganizationConfig"), 0),
	                    "IsDehydrated", json_true());
	/* the bypass rule alone needs no customization */
	plan_ok(&site_std, &bypass, t, &p);
	assert_string_equal(cmdlets(&p), "New-TransportRule");
	m365_plan_free(&p);

	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_string_equal(p.steps[0].cmdlet, "Enable-OrganizationCustomization");
	assert_string_equal(p.steps[0].item, "customization");
	assert_json("no params", p.steps[0].params, "{}");
	assert_true(has_note(&p, "up to an hour"));
	assert_true(has_note(&p, "run them again"));
	check = m365_plan_check(&site_std, &choice_relay_all, t, NULL);
	assert_string_equal(check_status(check, "customization"), "missing");
	json_decref(check);
	sim_apply(t, &p);
	m365_plan_free(&p);
	{
		json_t *applied = js("['customization']");

		check = m365_plan_check(&site_std, &choice_relay_all, t, applied);
		assert_string_equal(check_status(check, "customization"), "ok");
		json_decref(check);
		json_decref(applied);
	}
	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_int_equal(p.n, 0);
	m365_plan_free(&p);
	json_decref(t);
}

/* --- undo --- */

static void
test_undo(void **state)
{
	json_t *fresh = tenant_fresh(), *t = tenant_fresh(), *changes = json_array();
	struct m365_plan p, u;
	char err[256];

	(void)state;
	plan_ok(&site_std, &choice_relay_all, t, &p);
	collect_undo(changes, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);
	/* a second run later that changed a value moat had already set */
	json_object_set_new(find(t, "HostedContentFilterPolicy", "Default"), "SpamZapEnabled",
	                    json_string("True"));
	plan_ok(&site_std, &choice_relay_all, t, &p);
	assert_string_equal(cmdlets(&p), "Set-HostedContentFilterPolicy");
	collect_undo(changes, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);

	assert_int_equal(m365_plan_undo(changes, t, &u, err, sizeof(err)), 0);
	assert_string_equal(
	        cmdlets(&u),
	        "Set-HostedContentFilterPolicy Set-AntiPhishPolicy Set-MalwareFilterPolicy "
	        "Set-ATPBuiltInProtectionRule Enable-EOPProtectionPolicyRule "
	        "Enable-ATPProtectionPolicyRule Remove-TransportRule Remove-TransportRule "
	        "Remove-InboundConnector Remove-OutboundConnector");
	/* the earliest recorded value: true, not the "True" of the second run */
	assert_json("earliest", u.steps[0].params,
	            "{'Identity': 'Default', 'MarkAsSpamBulkMail': 'On', 'SpamZapEnabled': true, "
	            "'PhishZapEnabled': true}");
	/* a previous null is sent as null */
	assert_json(
	        "null", u.steps[3].params,
	        "{'Identity': 'ATP Built-In Protection Rule', 'ExceptIfRecipientDomainIs': null}");
	/* newest first: the relay rule was created after the bypass rule */
	assert_json("newest", u.steps[6].params,
	            "{'Identity': 'moat: route inbound mail to the gateway'}");
	assert_json("rules before connectors", u.steps[9].params,
	            "{'Identity': 'moat: to the gateway'}");
	for (size_t i = 0; i < u.n; i++) {
		assert_null(u.steps[i].undo);
		assert_true(u.steps[i].why && u.steps[i].why[0]);
	}
	sim_apply(t, &u);
	m365_plan_free(&u);
	/* the tenant is as it was before moat */
	if (!json_equal(t, fresh)) {
		char *g = json_dumps(t, JSON_COMPACT);

		fail_msg("after undo: %s", g);
	}

	/* what is gone already is skipped; offline nothing is */
	json_decref(t);
	t = tenant_fresh();
	{
		json_t *some =
		        js("[{'op': 'created', 'kind': 'TransportRule', "
		           " 'identity': 'moat: bypass clutter for gateway mail'},"
		           " {'op': 'disabled', 'kind': 'AntiPhishRule', 'identity': 'gone rule'},"
		           " {'op': 'disabled', 'kind': 'EOPProtectionPolicyRule', "
		           "  'identity': 'Standard Preset Security Policy'}]");

		assert_int_equal(m365_plan_undo(some, t, &u, err, sizeof(err)), 0);
		assert_string_equal(cmdlets(&u), "Enable-EOPProtectionPolicyRule");
		assert_true(has_note(&u, "already gone"));
		m365_plan_free(&u);
		assert_int_equal(m365_plan_undo(some, NULL, &u, err, sizeof(err)), 0);
		assert_string_equal(cmdlets(&u),
		                    "Enable-AntiPhishRule Enable-EOPProtectionPolicyRule "
		                    "Remove-TransportRule");
		m365_plan_free(&u);
		json_decref(some);
	}
	/* no Defender any more: its objects are skipped */
	{
		json_t *nodef = tenant_no_defender();
		json_t *some = js("[{'op': 'disabled', 'kind': 'ATPProtectionPolicyRule', "
		                  "  'identity': 'Standard Preset Security Policy'}]");

		assert_int_equal(m365_plan_undo(some, nodef, &u, err, sizeof(err)), 0);
		assert_int_equal(u.n, 0);
		assert_true(has_note(&u, "not available"));
		m365_plan_free(&u);
		json_decref(some);
		json_decref(nodef);
	}
	json_decref(changes);
	json_decref(fresh);
	json_decref(t);
}

/* Undo records that moat did not write are refused. */
static void
test_undo_refused(void **state)
{
	static const struct {
		const char *changes;
		const char *err;
	} rows[] = {
	        {"{}", "not an array"},
	        {"[{'op': 'created', 'kind': 'TransportRule', 'identity': 'CEO disclaimer'}]",
	         "only removes the objects it names"},
	        {"[{'op': 'set', 'kind': 'AcceptedDomain', 'identity': 'contoso.com', "
	         "  'previous': {'DomainType': 'Authoritative'}}]",
	         "does not set"},
	        {"[{'op': 'set', 'kind': 'TransportRule', 'identity': 'x', "
	         "  'previous': {'Set SCL; Remove-Mailbox': 1}}]",
	         "is not a parameter"},
	        {"[{'op': 'set', 'kind': 'TransportRule', 'identity': 'x', 'previous': {}}]",
	         "without previous values"},
	        {"[{'op': 'renamed', 'kind': 'TransportRule', 'identity': 'x'}]", "unknown op"},
	        {"[{'op': 'disabled', 'kind': 'InboundConnector', 'identity': 'x'}]",
	         "does not disable"},
	        {"[{'op': 'disabled', 'kind': 'TransportRule'}]", "not an {op, kind, identity}"},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		json_t *c = js(rows[i].changes);
		struct m365_plan u;
		char err[256] = "";

		if (m365_plan_undo(c, NULL, &u, err, sizeof(err)) != -1)
			table_mismatch(rows[i].changes, "accepted");
		else if (strstr(err, rows[i].err) == NULL)
			table_mismatch(rows[i].changes, "err '%s', want '%s'", err, rows[i].err);
		else if (u.n != 0 || u.steps != NULL)
			table_mismatch(rows[i].changes, "a plan left behind");
		json_decref(c);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* --- errors --- */

static void
test_errors(void **state)
{
	static const char *const wide[] = {"192.0.2.0/23"};
	static const char *const dash[] = {"192.0.2.1-192.0.2.9"};
	static const char *const bad[] = {"192.0.2.300"};
	static const char *const badkey[] = {"abc$def0123456789"};
	static const char *const shortkey[] = {"0123456789abcde"};      /* 15: config wants 16 */
	static const char *const longkey[] = {KEY1 KEY1 KEY1 KEY1 "0"}; /* 129: config allows 128 */
	static const struct {
		const char *row;
		const char *const *egress;
		size_t negress;
		const char *host;
		const char *cert;
		size_t nkeys;
		const char *const *keys;
		struct m365_choice ch;
		const char *err; /* NULL: accepted */
	} rows[] = {
	        {"bypass without egress",
	         NULL,
	         0,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, true, M365_MODE_NONE, false},
	         "no egress addresses: the bypass rule"},
	        {"relay without egress",
	         NULL,
	         0,
	         HOST,
	         "c",
	         1,
	         keys1,
	         {0, false, M365_MODE_RELAY, false},
	         "no egress addresses: the relay rule"},
	        {"mx by IP without egress",
	         NULL,
	         0,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, false, M365_MODE_MX, false},
	         "no egress addresses: the inbound connector"},
	        {"mx by certificate, no egress",
	         NULL,
	         0,
	         HOST,
	         "mx.moat.example",
	         1,
	         keys1,
	         {0, false, M365_MODE_MX, false},
	         NULL},
	        {"relay without host",
	         egress_pub,
	         2,
	         "",
	         NULL,
	         1,
	         keys1,
	         {0, false, M365_MODE_RELAY, false},
	         "relay mode needs moat's host name"},
	        {"bypass without keys",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         0,
	         NULL,
	         {0, true, M365_MODE_NONE, false},
	         "no relay keys"},
	        {"bad key",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         1,
	         badkey,
	         {0, true, M365_MODE_NONE, false},
	         "relay key 1 is not 16 to 128 letters"},
	        {"short key",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         1,
	         shortkey,
	         {0, true, M365_MODE_NONE, false},
	         "relay key 1 is not 16 to 128 letters"},
	        {"long key",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         1,
	         longkey,
	         {0, true, M365_MODE_NONE, false},
	         "relay key 1 is not 16 to 128 letters"},
	        {"wider than /24",
	         wide,
	         1,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, false, M365_MODE_MX, false},
	         "egress '192.0.2.0/23' is wider than /24"},
	        {"wider than /24, certificate",
	         wide,
	         1,
	         HOST,
	         "mx.moat.example",
	         1,
	         keys1,
	         {0, true, M365_MODE_MX, false},
	         NULL},
	        {"a-b range by IP",
	         dash,
	         1,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, false, M365_MODE_MX, false},
	         "egress '192.0.2.1-192.0.2.9' is not an IP address or a CIDR range"},
	        {"a-b range in the rule (config's m365_egress has none)",
	         dash,
	         1,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, true, M365_MODE_NONE, false},
	         "is not an IP address or a CIDR range"},
	        {"not an address",
	         bad,
	         1,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, true, M365_MODE_NONE, false},
	         "egress '192.0.2.300' is not an IP address"},
	        {"unknown mode",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {0, true, 7, false},
	         "unknown mode"},
	        {"unknown protection",
	         egress_pub,
	         2,
	         HOST,
	         NULL,
	         1,
	         keys1,
	         {1u << 7, false, M365_MODE_NONE, false},
	         "unknown protections"},
	};

	(void)state;
	table_reset();
	for (size_t i = 0; i < nitems(rows); i++) {
		struct m365_site site = site_std;
		json_t *t = tenant_fresh();
		struct m365_plan p;
		char err[512] = "";
		int rc;

		site.egress = rows[i].egress;
		site.negress = rows[i].negress;
		site.host = rows[i].host;
		site.cert_name = rows[i].cert;
		site.keys = rows[i].keys;
		site.nkeys = rows[i].nkeys;
		rc = m365_plan_apply(&site, &rows[i].ch, t, &p, err, sizeof(err));
		if (rows[i].err == NULL && rc != 0)
			table_mismatch(rows[i].row, "refused: %s", err);
		else if (rows[i].err && rc != -1)
			table_mismatch(rows[i].row, "accepted, want '%s'", rows[i].err);
		else if (rows[i].err && strstr(err, rows[i].err) == NULL)
			table_mismatch(rows[i].row, "err '%s', want '%s'", err, rows[i].err);
		if (rc == 0) {
			sim_apply(t, &p);
			m365_plan_free(&p);
		} else if (p.n || p.steps || p.notes) {
			table_mismatch(rows[i].row, "a plan left behind");
		}
		json_decref(t);
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
}

/* --- offline --- */

static void
test_offline(void **state)
{
	struct m365_plan p;
	json_t *j;
	const struct m365_step *s;
	static const struct {
		const char *cmdlet;
		enum m365_when when;
		const char *kind;
	} want[] = {
	        {"Enable-OrganizationCustomization", M365_WHEN_ALWAYS, NULL},
	        {"New-OutboundConnector", M365_WHEN_ABSENT, "OutboundConnector"},
	        {"Set-OutboundConnector", M365_WHEN_PRESENT, "OutboundConnector"},
	        {"New-InboundConnector", M365_WHEN_ABSENT, "InboundConnector"},
	        {"Set-InboundConnector", M365_WHEN_PRESENT, "InboundConnector"},
	        {"New-TransportRule", M365_WHEN_ABSENT, "TransportRule"},
	        {"Set-TransportRule", M365_WHEN_PRESENT, "TransportRule"},
	        {"Enable-TransportRule", M365_WHEN_PRESENT, "TransportRule"},
	        {"New-TransportRule", M365_WHEN_ABSENT, "TransportRule"},
	        {"Set-TransportRule", M365_WHEN_PRESENT, "TransportRule"},
	        {"Enable-TransportRule", M365_WHEN_PRESENT, "TransportRule"},
	        {"Disable-HostedContentFilterRule", M365_WHEN_EACH_ENABLED,
	         "HostedContentFilterRule"},
	        {"Set-HostedContentFilterPolicy", M365_WHEN_ALWAYS, NULL},
	        {"Disable-AntiPhishRule", M365_WHEN_EACH_ENABLED, "AntiPhishRule"},
	        {"Set-AntiPhishPolicy", M365_WHEN_ALWAYS, NULL},
	        {"Disable-MalwareFilterRule", M365_WHEN_EACH_ENABLED, "MalwareFilterRule"},
	        {"Set-MalwareFilterPolicy", M365_WHEN_ALWAYS, NULL},
	        {"Disable-SafeLinksRule", M365_WHEN_EACH_ENABLED, "SafeLinksRule"},
	        {"Disable-SafeAttachmentRule", M365_WHEN_EACH_ENABLED, "SafeAttachmentRule"},
	        {"Set-SafeAttachmentPolicy", M365_WHEN_EACH_ENABLED, "SafeAttachmentPolicy"},
	        {"Set-ATPBuiltInProtectionRule", M365_WHEN_PRESENT, "ATPBuiltInProtectionRule"},
	        {"Disable-EOPProtectionPolicyRule", M365_WHEN_PRESENT, "EOPProtectionPolicyRule"},
	        {"Disable-EOPProtectionPolicyRule", M365_WHEN_PRESENT, "EOPProtectionPolicyRule"},
	        {"Disable-ATPProtectionPolicyRule", M365_WHEN_PRESENT, "ATPProtectionPolicyRule"},
	        {"Disable-ATPProtectionPolicyRule", M365_WHEN_PRESENT, "ATPProtectionPolicyRule"},
	};

	(void)state;
	plan_ok(&site_std, &choice_relay_all, NULL, &p);
	assert_int_equal(p.n, nitems(want));
	table_reset();
	for (size_t i = 0; i < p.n; i++) {
		const struct m365_step *st = &p.steps[i];

		if (strcmp(st->cmdlet, want[i].cmdlet) != 0 || st->when != want[i].when ||
		    (want[i].kind &&
		     (st->when_kind == NULL || strcmp(st->when_kind, want[i].kind))))
			table_mismatch(want[i].cmdlet, "step %zu: got %s when %d kind %s", i,
			               st->cmdlet, (int)st->when,
			               st->when_kind ? st->when_kind : "(none)");
	}
	if (table_failures)
		fail_msg("%d mismatches", table_failures);
	assert_steps_explained(&p, false);
	/* the default policies by their well-known identities */
	s = step_of(&p, "Set-AntiPhishPolicy", "Office365 AntiPhish Default");
	assert_non_null(s);
	assert_json("all settings", s->params,
	            "{'Identity': 'Office365 AntiPhish Default', 'EnableSpoofIntelligence': false, "
	            "'HonorDmarcPolicy': false, 'EnableUnauthenticatedSender': false, "
	            "'EnableFirstContactSafetyTips': false}");
	assert_string_equal(p.steps[6].when_identity, M365_NAME_BYPASS_RULE);
	assert_true(has_note(&p, "run them again"));
	assert_true(has_note(&p, "add back any other exceptions"));

	j = m365_plan_json(&p);
	assert_json("json absent", json_array_get(json_object_get(j, "steps"), 1),
	            "{'item': 'outbound-connector', 'cmdlet': 'New-OutboundConnector', "
	            "'params': {'Name': 'moat: to the gateway', 'ConnectorType': 'Partner', "
	            " 'IsTransportRuleScoped': true, 'UseMxRecord': false, "
	            " 'SmartHosts': ['" HOST "'], 'TlsSettings': 'DomainValidation', "
	            " 'TlsDomain': '" HOST "', 'Enabled': true}, "
	            "'when': 'absent', 'when_kind': 'OutboundConnector', "
	            "'when_identity': 'moat: to the gateway', "
	            "'why': 'create the outbound connector that the relay rule routes inbound mail "
	            "through to moat'}");
	assert_json(
	        "json each", json_array_get(json_object_get(j, "steps"), 11),
	        "{'item': 'antispam', 'cmdlet': 'Disable-HostedContentFilterRule', 'params': {}, "
	        "'when': 'each_enabled', 'when_kind': 'HostedContentFilterRule', "
	        "'why': 'turn off every enabled custom anti-spam rule'}");
	assert_null(json_object_get(json_array_get(json_object_get(j, "steps"), 0), "when"));
	assert_true(json_equal(json_object_get(j, "notes"), p.notes));
	json_decref(j);
	m365_plan_free(&p);
}

/* jansson's allocations while counting: what is still live. */
static long json_live;

static void *
count_malloc(size_t n)
{
	void *p = malloc(n);

	if (p)
		json_live++;
	return p;
}

static void
count_free(void *p)
{
	if (p)
		json_live--;
	free(p);
}

/* The plan as JSON owns what it makes: a step without params leaks nothing. */
static void
test_plan_json_frees(void **state)
{
	struct m365_step step = {.item = (char *)"undo",
	                         .cmdlet = (char *)"Enable-TransportRule",
	                         .params = NULL,
	                         .why = (char *)"why"};
	struct m365_plan p = {.steps = &step, .n = 1, .notes = NULL};
	json_t *j;

	(void)state;
	json_live = 0;
	json_set_alloc_funcs(count_malloc, count_free);
	j = m365_plan_json(&p);
	assert_non_null(j);
	assert_json("no params",
	            json_object_get(json_array_get(json_object_get(j, "steps"), 0), "params"),
	            "{}");
	json_decref(j);
	json_set_alloc_funcs(malloc, free);
	assert_int_equal(json_live, 0);
}

/* --- the script --- */

static bool
ps_quote_at(const unsigned char *s, size_t *len)
{
	if (s[0] == '\'') {
		*len = 1;
		return true;
	}
	if (s[0] == 0xe2 && s[1] == 0x80 && s[2] >= 0x98 && s[2] <= 0x9b) {
		*len = 3;
		return true;
	}
	return false;
}

/*
 * The cmdlets a script calls outside strings and comments, as PowerShell
 * reads single-quoted strings (any of ' U+2018..U+201B ends one, two in a
 * row stand for one) and # comments: New-/Set-/Remove-/Enable-/Disable-
 * words, space-separated. -1 when a string runs past the end of its line.
 */
static int
script_calls(const char *script, char *out, size_t outsize)
{
	static const char *const verbs[] = {"New-", "Set-", "Remove-", "Enable-", "Disable-"};
	const unsigned char *s = (const unsigned char *)script;
	size_t len = 0, q;

	out[0] = '\0';
	while (*s) {
		if (*s == '#') {
			while (*s && *s != '\n')
				s++;
		} else if (ps_quote_at(s, &q)) {
			s += q;
			for (;;) {
				if (*s == '\0' || *s == '\n' || *s == '\r')
					return -1;
				if (ps_quote_at(s, &q)) {
					size_t q2;

					s += q;
					if (!ps_quote_at(s, &q2))
						break;
					s += q2;
				} else {
					s++;
				}
			}
		} else if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')) {
			const unsigned char *w = s;

			while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
			       (*s >= '0' && *s <= '9') || *s == '-')
				s++;
			for (size_t i = 0; i < nitems(verbs); i++)
				if ((size_t)(s - w) > strlen(verbs[i]) &&
				    strncmp((const char *)w, verbs[i], strlen(verbs[i])) == 0)
					len += (size_t)snprintf(out + len, outsize - len, "%s%.*s",
					                        len ? " " : "", (int)(s - w), w);
			if (len >= outsize)
				return -1;
		} else {
			s++;
		}
	}
	return 0;
}

static void
assert_script_matches(const struct m365_plan *p, const char *script)
{
	char calls[8192];

	if (script_calls(script, calls, sizeof(calls)) < 0)
		fail_msg("a string runs past its line:\n%s", script);
	if (strcmp(calls, cmdlets(p)) != 0)
		fail_msg("script calls\n %s\nplan\n %s\n%s", calls, cmdlets(p), script);
	for (const char *c = script; *c; c++)
		if ((unsigned char)*c < 0x20 && *c != '\n' && *c != '\t')
			fail_msg("control character %02x in the script", (unsigned char)*c);
}

static void
test_script_online(void **state)
{
	json_t *t = tenant_custom();
	struct m365_plan p;
	char *script, *again;

	(void)state;
	/* an admin's rule named to break out of quoting; one with a quote and a line break */
	tenant_add(t, "AntiPhishRule",
	           "{'Name': 'x\\u0027; Remove-Mailbox -Identity *; \\u0027', "
	           "'State': 'Enabled', 'Priority': 2}");
	tenant_add(t, "MalwareFilterRule",
	           "{'Name': 'Bob\\u0027s\\nrule\\u2019s \\u2028end', 'State': 'Enabled', "
	           "'Priority': 2}");
	tenant_add(
	        t, "HostedContentFilterRule",
	        "{'Name': 'line\\nbreak', 'Guid': 'guid-77', 'State': 'Enabled', 'Priority': 2}");
	plan_ok(&site_std, &choice_relay_all, t, &p);
	script = m365_plan_script(&p);
	assert_non_null(script);
	assert_script_matches(&p, script);
	/* quoting: '' for ', the typographic quote doubled, line breaks as spaces */
	assert_non_null(strstr(script, "Disable-AntiPhishRule -Identity 'x''; Remove-Mailbox "
	                               "-Identity *; ''' -Confirm:$false\n"));
	assert_non_null(strstr(script,
	                       "Disable-MalwareFilterRule -Identity 'Bob''s rule\u2019\u2019s "
	                       " end' -Confirm:$false\n"));
	assert_non_null(strstr(script, "# turn off the custom anti-malware rule 'Bob's rule\u2019s "
	                               " end'\n"));
	/* a name with a line break is addressed by its Guid */
	assert_non_null(strstr(script, "Disable-HostedContentFilterRule -Identity 'guid-77'"));
	/* arrays, booleans, numbers */
	assert_non_null(strstr(script, "-SenderIpRanges @('192.0.2.10','198.51.100.0/24')"));
	assert_non_null(strstr(script, "-SetSCL -1 "));
	assert_non_null(strstr(script, "-StopRuleProcessing $true"));
	assert_non_null(strstr(script, "-UseMxRecord $false"));
	assert_non_null(strstr(script, "-Priority 0 -Enabled $true"));
	assert_non_null(strstr(script, "\n$ErrorActionPreference = 'Stop'\n"));
	assert_non_null(strstr(script, "Generated by moat"));
	assert_non_null(strstr(script, "Connect-ExchangeOnline"));
	assert_non_null(strstr(script, "# - Relay mode: Microsoft discourages"));
	{
		/* no date: not even this year */
		time_t now = time(NULL);
		struct tm tm;
		char year[8];

		gmtime_r(&now, &tm);
		strftime(year, sizeof(year), "%Y", &tm);
		assert_null(strstr(script, year));
	}
	/* deterministic */
	again = m365_plan_script(&p);
	assert_string_equal(script, again);
	free(again);
	free(script);
	m365_plan_free(&p);
	json_decref(t);
}

static void
test_script_offline(void **state)
{
	struct m365_plan p;
	char *script;

	(void)state;
	plan_ok(&site_std, &choice_relay_all, NULL, &p);
	script = m365_plan_script(&p);
	assert_non_null(script);
	assert_script_matches(&p, script);
	/* New-/Set-/Enable- of one object as one if/else */
	assert_non_null(strstr(
	        script,
	        "if (-not (Get-TransportRule -Identity 'moat: bypass clutter for gateway mail' "
	        "-ErrorAction SilentlyContinue)) {\n"
	        "\t# create the bypass-clutter rule: mail from moat's IPs that carries moat's key "
	        "header gets SCL -1 and X-MS-Exchange-Organization-BypassClutter: true\n"
	        "\tNew-TransportRule -Name 'moat: bypass clutter for gateway mail' "
	        "-SenderIpRanges @('192.0.2.10','198.51.100.0/24') "
	        "-HeaderMatchesMessageHeader 'X-Moat-Relay-Key' "
	        "-HeaderMatchesPatterns @('^" KEY1 "$') -SetSCL -1 "
	        "-SetHeaderName 'X-MS-Exchange-Organization-BypassClutter' -SetHeaderValue 'true' "
	        "-StopRuleProcessing $true -Enabled $true\n"
	        "} else {\n"
	        "\t# if it exists already: put back every setting of the bypass-clutter rule\n"
	        "\tSet-TransportRule -Identity 'moat: bypass clutter for gateway mail' "));
	assert_non_null(strstr(script, "\tEnable-TransportRule -Identity 'moat: bypass clutter for "
	                               "gateway mail'\n}\n"));
	/* every enabled custom rule */
	assert_non_null(strstr(
	        script, "Get-HostedContentFilterRule | Where-Object { $_.State -eq 'Enabled' "
	                "-and -not $_.IsDefault } | ForEach-Object { "
	                "Disable-HostedContentFilterRule -Identity $_.Identity "
	                "-Confirm:$false }\n"));
	assert_non_null(strstr(script, "ForEach-Object { Set-SafeAttachmentPolicy -Identity "
	                               "$_.Identity -Enable $false }"));
	/* Defender cmdlets only where they exist; customization only where it is needed */
	assert_non_null(strstr(script, "if (Get-Command Get-SafeLinksRule -ErrorAction "
	                               "SilentlyContinue) {\n\t# turn off every"));
	assert_non_null(strstr(script, "if ((Get-OrganizationConfig).IsDehydrated) {\n"
	                               "\tEnable-OrganizationCustomization\n}\n"));
	/* a present-only condition */
	assert_non_null(strstr(script, "if (Get-EOPProtectionPolicyRule -Identity 'Standard Preset "
	                               "Security Policy' -ErrorAction SilentlyContinue) {\n"));
	free(script);
	m365_plan_free(&p);

	/* an empty plan says so */
	{
		struct m365_plan empty = {.n = 0};

		script = m365_plan_script(&empty);
		assert_non_null(strstr(script, "# Nothing to change."));
		free(script);
	}
}

/* --- detect --- */

static void
test_detect(void **state)
{
	json_t *t = tenant_custom(), *d;
	struct m365_plan p;
	struct m365_choice bypass = {0, true, M365_MODE_NONE, false};

	(void)state;
	d = m365_plan_detect(t);
	assert_json(
	        "detect", d,
	        "{'defender': true, 'accepted_domains': ['contoso.onmicrosoft.com', "
	        "'contoso.com'], 'presets': ["
	        " {'kind': 'EOPProtectionPolicyRule', 'name': 'Strict Preset Security Policy', "
	        "  'state': 'Disabled'},"
	        " {'kind': 'EOPProtectionPolicyRule', 'name': 'Standard Preset Security Policy', "
	        "  'state': 'Enabled'},"
	        " {'kind': 'ATPProtectionPolicyRule', 'name': 'Strict Preset Security Policy', "
	        "  'state': 'Disabled'},"
	        " {'kind': 'ATPProtectionPolicyRule', 'name': 'Standard Preset Security Policy', "
	        "  'state': 'Enabled'}],"
	        "'dehydrated': false, 'moat_objects': [], "
	        "'custom_rules': {'HostedContentFilterRule': 1, 'AntiPhishRule': 1, "
	        " 'MalwareFilterRule': 1, 'SafeLinksRule': 1, 'SafeAttachmentRule': 1}}");
	json_decref(d);
	plan_ok(&site_std, &bypass, t, &p);
	sim_apply(t, &p);
	m365_plan_free(&p);
	json_object_set_new(find(t, "TransportRule", M365_NAME_BYPASS_RULE), "State",
	                    json_string("Disabled"));
	d = m365_plan_detect(t);
	assert_json("moat objects", json_object_get(d, "moat_objects"),
	            "[{'kind': 'TransportRule', 'name': 'moat: bypass clutter for gateway mail', "
	            "  'state': 'Disabled'}]");
	json_decref(d);
	json_decref(t);

	t = tenant_no_defender();
	d = m365_plan_detect(t);
	assert_false(json_is_true(json_object_get(d, "defender")));
	assert_json("no defender rules", json_object_get(d, "custom_rules"),
	            "{'HostedContentFilterRule': 0, 'AntiPhishRule': 0, 'MalwareFilterRule': 0}");
	json_decref(d);
	json_decref(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_fresh_relay_all),
	        cmocka_unit_test(test_converges),
	        cmocka_unit_test(test_drifted),
	        cmocka_unit_test(test_priorities),
	        cmocka_unit_test(test_no_defender),
	        cmocka_unit_test(test_enhanced_filtering),
	        cmocka_unit_test(test_ef_then_bypass),
	        cmocka_unit_test(test_relay_key_128),
	        cmocka_unit_test(test_egress_as_addresses),
	        cmocka_unit_test(test_check),
	        cmocka_unit_test(test_custom_rules),
	        cmocka_unit_test(test_protection_cmdlets),
	        cmocka_unit_test(test_presets),
	        cmocka_unit_test(test_dehydrated),
	        cmocka_unit_test(test_undo),
	        cmocka_unit_test(test_undo_refused),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_offline),
	        cmocka_unit_test(test_plan_json_frees),
	        cmocka_unit_test(test_script_online),
	        cmocka_unit_test(test_script_offline),
	        cmocka_unit_test(test_detect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
