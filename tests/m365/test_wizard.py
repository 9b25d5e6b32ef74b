"""The Microsoft 365 wizard end to end: moatd's admin API and moatctl drive
jobs against the Microsoft emulator (tests/m365/emulator.py), which plays
both the sign-in authority and Exchange Online with a stateful tenant.

Each test plays the admin: it starts a job, reads the one-time code the job
shows, approves it at the emulator (what the admin does in the browser) and
follows the job to its end; then it looks at the tenant itself.
"""
import copy
import glob
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))

from apiutil import AdminMoatd, wait_for  # noqa: E402
from moat_harness import Moatd  # noqa: E402
from emulator import Emulator  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
MOATCTL = os.environ.get("MOATCTL", os.path.join(ROOT, "build", "moatctl"))
DOMAINS = """
[domain contoso.com]
recipients = any
route = maildir
"""
EGRESS = ["203.0.113.10", "198.51.100.0/28"]
FINAL = ("done", "pending", "failed", "cancelled", "planned")
ALL = ["antispam", "antiphish", "antimalware", "safelinks", "safeattachments"]


def moatd_conf(emu, extra=""):
    return ("m365_authority = %s\nm365_exo_url = %s\nm365_egress = %s\n"
            "m365_host = mx.moat.test\nm365_timeout = 10s\nm365_check_every = 1s\n%s"
            % (emu.url, emu.exo_url, ", ".join(EGRESS), extra))


def tenant_state(emu, kinds=None):
    """The tenant's objects without their GUIDs (a re-created object gets a new one)."""
    out = {}
    for k, objs in emu.tenant.objects.items():
        if kinds and k not in kinds:
            continue
        out[k] = sorted(({a: b for a, b in o.items() if a != "Guid"} for o in objs),
                        key=lambda o: (o.get("Priority", 0), o.get("Name", o.get("Identity"))))
    return out


class WizardBase(unittest.TestCase):
    emu_kw = {}
    conf = ""
    domains = DOMAINS

    def setUp(self):
        self.emu = Emulator(interval=1, **self.emu_kw).start()
        self.addCleanup(self.emu.stop)
        self.m = AdminMoatd(conf=moatd_conf(self.emu, self.conf), domains=self.domains, name="m365")
        self.m.start()
        self.addCleanup(self.m.stop)
        self.a = self.m.admin()

    def relay_key(self, domain="contoso.com"):
        with open(os.path.join(self.m.data, "relay.secret"), "rb") as f:
            secret = f.read()
        return hmac.new(secret, b"moat-relay-key:" + domain.encode(), hashlib.sha256).hexdigest()[:32]

    def start(self, kind, expect=201, **choice):
        body = dict(choice, kind=kind)
        r = self.a.post("/api/v1/m365/jobs", body)
        self.assertEqual(r.status, expect, r)
        return r.json

    def job(self, jid):
        r = self.a.get("/api/v1/m365/jobs/" + jid)
        self.assertEqual(r.status, 200, r)
        return r.json

    def signin(self, jid, account=None):
        """Wait for the code, then sign in at the emulator as the admin would."""
        j = wait_for(lambda: (lambda d: d if d.get("signin") or d["state"] in FINAL else None)(
            self.job(jid)), "the sign-in code of job " + jid)
        self.assertIn("signin", j, j)
        s = j["signin"]
        self.assertRegex(s["user_code"], r"^[A-Z0-9]{6,}$")
        self.assertEqual(s["verification_uri"], self.emu.url + "/devicelogin")
        self.emu.approve(s["user_code"], account)
        return s

    def wait_end(self, jid, states=FINAL, timeout=60):
        return wait_for(lambda: (lambda d: d if d["state"] in states else None)(self.job(jid)),
                        "job %s in %s" % (jid, states), timeout)

    def run_job(self, kind, account=None, states=FINAL, **choice):
        jid = self.start(kind, **choice)["id"]
        self.signin(jid, account)
        return self.wait_end(jid, states)

    def apply(self, **choice):
        choice.setdefault("protections", ALL)
        choice.setdefault("mode", "relay")
        j = self.run_job("apply", **choice)
        self.assertEqual(j["state"], "done", j)
        return j


class TestApply(WizardBase):
    def test_apply_sets_the_tenant_as_the_reference_page_describes(self):
        j = self.apply()
        self.assertEqual(j["account"], "admin@contoso.onmicrosoft.com")
        self.assertTrue(all(s["status"] == "done" for s in j["steps"]), j["steps"])
        self.assertTrue(j["check"] and all(c["status"] == "ok" for c in j["check"]), j["check"])
        t = self.emu.tenant
        rule = t.find("TransportRule", "moat: bypass clutter for gateway mail")
        self.assertIsNotNone(rule, t.rules())
        self.assertEqual(sorted(rule["SenderIpRanges"]), sorted(EGRESS))
        self.assertEqual(int(rule["SetSCL"]), -1)
        self.assertEqual(rule["SetHeaderName"], "X-MS-Exchange-Organization-BypassClutter")
        self.assertEqual(rule["SetHeaderValue"], "true")
        self.assertIs(rule["StopRuleProcessing"], True)
        self.assertEqual(rule["State"], "Enabled")
        self.assertEqual(rule["HeaderMatchesMessageHeader"], "X-Moat-Relay-Key")
        pats = rule["HeaderMatchesPatterns"]
        pats = pats if isinstance(pats, list) else [pats]
        self.assertEqual(pats, ["^%s$" % self.relay_key()])
        relay = t.find("TransportRule", "moat: route inbound mail to the gateway")
        self.assertEqual(relay["Priority"], 0)
        self.assertGreater(rule["Priority"], relay["Priority"])
        self.assertEqual(relay["RouteMessageOutboundConnector"], "moat: to the gateway")
        self.assertEqual(relay["FromScope"], "NotInOrganization")
        self.assertEqual(relay["SentToScope"], "InOrganization")
        out = t.find("OutboundConnector", "moat: to the gateway")
        self.assertEqual(out["SmartHosts"] if isinstance(out["SmartHosts"], str)
                         else out["SmartHosts"][0], "mx.moat.test")
        self.assertIs(out["IsTransportRuleScoped"], True)
        self.assertIsNotNone(t.find("InboundConnector", "moat: from the gateway"))
        # the protections
        spam = t.find("HostedContentFilterPolicy", "Default")
        self.assertIs(spam["SpamZapEnabled"], False)
        self.assertEqual(spam["MarkAsSpamBulkMail"], "Off")
        phish = t.find("AntiPhishPolicy", "Office365 AntiPhish Default")
        self.assertIs(phish["EnableSpoofIntelligence"], False)
        mal = t.find("MalwareFilterPolicy", "Default")
        self.assertIs(mal["ZapEnabled"], False)
        self.assertEqual(t.find("EOPProtectionPolicyRule", "Standard Preset Security Policy")["State"],
                         "Disabled")
        self.assertEqual(t.find("ATPProtectionPolicyRule", "Standard Preset Security Policy")["State"],
                         "Disabled")
        exc = t.find("ATPBuiltInProtectionRule", "ATP Built-In Protection Rule")["ExceptIfRecipientDomainIs"]
        self.assertIn("contoso.com", exc if isinstance(exc, list) else [exc])
        # the summary says what Microsoft does not allow switching off
        notes = " ".join(j["plan"]["notes"])
        self.assertIn("malware", notes.lower())
        # every cmdlet went with the headers of M365.md 2
        for rq in self.emu.calls():
            self.assertEqual(rq["headers"]["x-anchormailbox"], "UPN:admin@contoso.onmicrosoft.com")
            self.assertTrue(rq["headers"]["authorization"].startswith("Bearer "))

    def test_apply_twice_converges(self):
        self.apply()
        first = tenant_state(self.emu)
        news = len([c for c in self.emu.calls() if c["cmdlet"].startswith("New-")])
        j = self.apply()
        self.assertEqual(tenant_state(self.emu), first)
        self.assertEqual(len([c for c in self.emu.calls() if c["cmdlet"].startswith("New-")]), news)
        self.assertEqual(j["plan"]["steps"], [], j["plan"])
        names = [n for _, n in self.emu.tenant.rules()]
        self.assertEqual(len(names), len(set(names)), names)

    def test_changed_values_are_put_back(self):
        self.apply()
        t = self.emu.tenant
        rule = t.find("TransportRule", "moat: bypass clutter for gateway mail")
        rule["SetSCL"] = 0
        rule["State"] = "Disabled"
        rule["SenderIpRanges"] = ["192.0.2.99"]
        t.find("HostedContentFilterPolicy", "Default")["SpamZapEnabled"] = True
        c = self.run_job("check")
        self.assertEqual(c["state"], "done", c)
        by = {x["item"]: x for x in c["check"]}
        self.assertEqual(by["bypass-rule"]["status"], "drifted", by)
        self.assertIn("SetSCL", by["bypass-rule"]["detail"])
        self.assertEqual(by["antispam"]["status"], "drifted", by)
        j = self.apply()
        sets = [s for s in j["steps"] if s["item"] == "bypass-rule"]
        self.assertTrue(any(s["cmdlet"] == "Enable-TransportRule" for s in sets), sets)
        self.assertTrue(any(s["cmdlet"] == "Set-TransportRule" and "SetSCL" in s["params"]
                            and "SetHeaderName" not in s["params"] for s in sets), sets)
        self.assertEqual(int(rule["SetSCL"]), -1)
        self.assertEqual(rule["State"], "Enabled")
        self.assertEqual(sorted(rule["SenderIpRanges"]), sorted(EGRESS))

    def test_rule_priorities(self):
        t = self.emu.tenant
        for n in ("Disclaimer", "Journal to archive", "Block executables"):
            t.add("TransportRule", n)
        self.apply()
        order = [n for _, n in t.rules()]
        self.assertEqual(order[0], "moat: route inbound mail to the gateway", order)
        self.assertGreater(order.index("moat: bypass clutter for gateway mail"), 0)
        others = [n for n in order if not n.startswith("moat:")]
        self.assertEqual(others, ["Disclaimer", "Journal to archive", "Block executables"])
        self.assertEqual([p for p, _ in t.rules()], list(range(len(order))))
        # the admin moves the bypass rule above the relay rule: drifted, then put back
        rule = t.find("TransportRule", "moat: bypass clutter for gateway mail")
        relay = t.find("TransportRule", "moat: route inbound mail to the gateway")
        rule["Priority"], relay["Priority"] = relay["Priority"], rule["Priority"]
        self.apply()
        self.assertLess(relay["Priority"], rule["Priority"], t.rules())

    def test_changes_pending_until_exchange_shows_them(self):
        self.emu.set(apply_delay=40)
        jid = self.start("apply", protections=["antispam"], mode="none")["id"]
        self.signin(jid)
        j = self.wait_end(jid, ("waiting",) + FINAL)
        self.assertEqual(j["state"], "waiting", j)
        self.assertTrue(any(c["status"] == "pending" for c in j["check"]), j["check"])
        r = self.a.post("/api/v1/m365/jobs/%s/check" % jid, {})
        self.assertEqual(r.status, 202, r)
        j = self.wait_end(jid, timeout=90)
        self.assertEqual(j["state"], "done", j)
        by = {c["item"]: c["status"] for c in j["check"]}
        # anti-spam alone does not turn off the Standard preset (it holds more): skipped
        self.assertEqual(by.pop("presets"), "skipped", j["check"])
        self.assertTrue(all(v == "ok" for v in by.values()), j["check"])

    def test_mx_mode_with_enhanced_filtering_has_no_bypass_rule(self):
        self.apply(mode="relay")
        self.assertIsNotNone(self.emu.tenant.find("TransportRule", "moat: bypass clutter for gateway mail"))
        r = self.a.post("/api/v1/m365/jobs", {"kind": "apply", "mode": "relay",
                                               "enhanced_filtering": True})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["field"], "enhanced_filtering")
        self.apply(mode="mx", enhanced_filtering=True, protections=[])
        self.assertIsNone(self.emu.tenant.find("TransportRule", "moat: bypass clutter for gateway mail"))
        conn = self.emu.tenant.find("InboundConnector", "moat: from the gateway")
        # moat's egress is public: Enhanced Filtering skips exactly those addresses
        self.assertEqual(sorted(conn["EFSkipIPs"]), sorted(EGRESS), conn)
        # back to the bypass rule, in any mode: Enhanced Filtering goes (never both)
        self.apply(mode="none", protections=[])
        self.assertIsNotNone(self.emu.tenant.find("TransportRule", "moat: bypass clutter for gateway mail"))
        conn = self.emu.tenant.find("InboundConnector", "moat: from the gateway")
        self.assertFalse(conn.get("EFSkipIPs"), conn)
        self.assertFalse(conn.get("EFSkipLastIP"), conn)

    def test_undo_puts_the_tenant_back(self):
        before = tenant_state(self.emu)
        self.apply()
        self.assertNotEqual(tenant_state(self.emu), before)
        j = self.run_job("undo")
        self.assertEqual(j["state"], "done", j)
        after = tenant_state(self.emu)
        self.assertEqual(after, before)
        # nothing left to undo
        j = self.run_job("undo")
        self.assertEqual(j["state"], "done", j)
        self.assertEqual(j["plan"]["steps"], [])


class TestPlanAndScript(WizardBase):
    def test_plan_changes_nothing_and_the_script_matches_it(self):
        before = tenant_state(self.emu)
        j = self.run_job("plan", protections=ALL, mode="relay")
        self.assertEqual(j["state"], "planned", j)
        self.assertEqual(tenant_state(self.emu), before)
        self.assertFalse([c for c in self.emu.calls() if not c["cmdlet"].startswith("Get-")])
        steps = j["plan"]["steps"]
        self.assertTrue(steps)
        r = self.a.get("/api/v1/m365/jobs/%s/script" % j["id"])
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("text/plain"))
        script = r.data.decode()
        calls = ps_calls(script)
        self.assertEqual([c for c, _ in calls], [s["cmdlet"] for s in steps])
        for (cmdlet, params), s in zip(calls, steps):
            self.assertEqual(params, norm(s["params"]), cmdlet)

    def test_offline_plan_and_script(self):
        r = self.a.get("/api/v1/m365/plan?protections=antispam,safelinks&mode=relay")
        self.assertEqual(r.status, 200, r)
        steps = r.json["steps"]
        self.assertIn("New-TransportRule", [s["cmdlet"] for s in steps])
        self.assertTrue(any(s.get("when") for s in steps), steps)
        s = self.a.get("/api/v1/m365/script?protections=antispam,safelinks&mode=relay")
        self.assertEqual(s.status, 200, s)
        text = s.data.decode()
        cmdlets = [c for c, _ in ps_calls(text)]
        pos = 0
        for st in steps:  # every step, in order
            pos = cmdlets.index(st["cmdlet"], pos) + 1
        self.assertIn(self.relay_key(), text)
        for bad in ("protections=bogus", "mode=sideways", "bypass_rule=maybe"):
            r = self.a.get("/api/v1/m365/plan?" + bad)
            self.assertEqual(r.status, 400, (bad, r))


class TestSignInFailures(WizardBase):
    def failed(self, kind="connect", approve=True, account=None, **choice):
        jid = self.start(kind, **choice)["id"]
        if approve:
            self.signin(jid, account)
        j = self.wait_end(jid)
        self.assertEqual(j["state"], "failed", j)
        e = j["error"]
        self.assertTrue(e["explain"] and e["action"], e)
        return e

    def test_each_switch_has_its_message(self):
        cases = [
            ({"code_expired": True}, "expired", "new code"),
            ({"declined": True}, "declined", "declin"),
            ({"conditional_access": True}, "conditional_access", "Conditional Access"),
            ({"mfa": True}, "mfa", "multi-factor"),
            ({"consent": True}, "consent", "consent"),
        ]
        for switches, kind, words in cases:
            with self.subTest(kind=kind):
                self.emu.set(code_expired=False, declined=False, conditional_access=False,
                             mfa=False, consent=False)
                self.emu.set(**switches)
                e = self.failed(approve=kind not in ("expired", "declined"))
                self.assertEqual(e["kind"], kind, e)
                self.assertIn(words.lower(), (e["explain"] + " " + e["action"]).lower(), e)

    def test_slow_down_is_honoured(self):
        self.emu.set(slow_down=1)
        jid = self.start("connect")["id"]
        self.signin(jid)
        j = self.wait_end(jid)
        self.assertEqual(j["state"], "done", j)
        polls = [r["time"] for r in self.emu.requests if r["kind"] == "token"]
        gaps = [b - a for a, b in zip(polls, polls[1:])]
        self.assertTrue(gaps and min(gaps[1:] or gaps) >= 5.5, gaps)

    def test_role_missing(self):
        e = self.failed(account="reader@contoso.onmicrosoft.com", kind="apply",
                        protections=["antispam"])
        self.assertEqual(e["kind"], "not_allowed", e)
        self.assertIn("role", e["explain"].lower() + e["action"].lower())
        self.emu.set(role_missing=True)
        e = self.failed()
        self.assertEqual(e["kind"], "not_allowed", e)
        self.assertIn("Get-AcceptedDomain", e["explain"] + e.get("text", ""))
        self.assertIn("EXOModuleEnabled", e["explain"] + e["action"])

    def test_cmdlet_not_available(self):
        self.emu.set(unavailable=["Get-TransportRule"])
        e = self.failed()
        self.assertEqual(e["kind"], "unavailable", e)
        self.assertIn("Get-TransportRule", e["explain"])


class TestTenants(WizardBase):
    def test_without_defender_safe_links_is_dropped(self):
        self.emu.set(defender=False)
        j = self.run_job("connect")
        self.assertFalse(j["detect"]["defender"], j["detect"])
        t = self.a.get("/api/v1/m365/tenant").json
        self.assertNotIn("safelinks", t["offer"])
        self.assertNotIn("safeattachments", t["offer"])
        j = self.apply(protections=ALL)
        self.assertFalse([c for c in self.emu.calls() if "Safe" in c["cmdlet"] and
                          not c["cmdlet"].startswith("Get-")])
        self.assertTrue(any("Defender" in n for n in j["plan"]["notes"]), j["plan"]["notes"])

    def test_throttled_then_through(self):
        self.emu.set(throttle=2, throttle_reset=1)
        j = self.run_job("connect")
        self.assertEqual(j["state"], "done", j)
        self.assertEqual(j["calls"]["throttled"], 2, j["calls"])

    def test_customization_needed(self):
        self.emu.set(customization_needed=True)
        j = self.apply(protections=["antispam", "antiphish"], mode="none")
        cmdlets = [s["cmdlet"] for s in j["steps"]]
        self.assertEqual(cmdlets[0], "Enable-OrganizationCustomization", cmdlets)

    def test_detect(self):
        self.emu.tenant.add("HostedContentFilterRule", "Strict for finance",
                            HostedContentFilterPolicy="Default")
        j = self.run_job("connect")
        d = j["detect"]
        self.assertTrue(d["defender"])
        self.assertEqual(sorted(d["accepted_domains"]), ["contoso.com", "contoso.onmicrosoft.com"])
        self.assertIn("Standard Preset Security Policy", [p["name"] for p in d["presets"]])
        self.assertEqual(d["moat_objects"], [])
        self.apply()
        d = self.run_job("connect")["detect"]
        self.assertEqual(len(d["moat_objects"]), 4, d["moat_objects"])


class TestJobs(WizardBase):
    def test_second_change_of_one_tenant_waits_for_the_first(self):
        self.emu.set(apply_delay=1000)  # the first apply stays waiting
        first = self.start("apply", protections=["antispam"])["id"]
        self.signin(first)
        self.wait_end(first, ("waiting",) + FINAL)
        j = self.run_job("apply", protections=["antiphish"])
        self.assertEqual(j["state"], "failed", j)
        self.assertIn(first, j["error"]["explain"])
        self.assertEqual(self.a.post("/api/v1/m365/jobs/%s/cancel" % first, {}).status, 202)
        self.assertEqual(self.wait_end(first)["state"], "cancelled")
        self.assertFalse([c for c in self.emu.calls() if c["cmdlet"] == "Set-AntiPhishPolicy"])

    def test_a_job_cut_short_by_a_stop_is_failed_after_the_start(self):
        jid = self.start("apply", protections=["antispam"])["id"]
        wait_for(lambda: self.job(jid).get("signin"), "code shown")
        self.m.proc.kill()  # no orderly stop: the row stays "signin" in the store
        self.m.proc.wait()
        self.m.start()
        a = self.m.admin()
        j = a.get("/api/v1/m365/jobs/" + jid).json
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("stopped", j["error"]["explain"])
        self.assertNotIn("signin", j)

    def test_a_job_stopped_with_moatd_says_so(self):
        jid = self.start("apply", protections=["antispam"])["id"]
        wait_for(lambda: self.job(jid).get("signin"), "code shown")
        self.m.stop()
        self.m.start()
        j = self.m.admin().get("/api/v1/m365/jobs/" + jid).json
        self.assertEqual(j["state"], "cancelled", j)
        self.assertIn("moatd stopped", j["note"])
        self.assertNotIn("signin", j)
        # the admin's own cancel says that instead
        a = self.m.admin()
        r = a.post("/api/v1/m365/jobs", {"kind": "connect"})
        wait_for(lambda: a.get("/api/v1/m365/jobs/" + r.json["id"]).json.get("signin"), "code")
        a.post("/api/v1/m365/jobs/%s/cancel" % r.json["id"], {})
        j = wait_for(lambda: (lambda d: d if d["state"] == "cancelled" else None)(
            a.get("/api/v1/m365/jobs/" + r.json["id"]).json), "cancelled")
        self.assertEqual(j["note"], "cancelled by an administrator")

    def test_first_call_refused_without_a_body_means_no_role_or_no_api_access(self):
        self.emu.set(unavailable=["Get-AcceptedDomain"])
        j = self.run_job("connect")
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual(j["error"]["kind"], "not_allowed", j["error"])
        self.assertIn("EXOModuleEnabled", j["error"]["explain"] + j["error"]["action"])

    def test_later_check_reports_pending_not_missing(self):
        self.emu.set(apply_delay=1000)
        jid = self.start("apply", protections=["antispam"], mode="none")["id"]
        self.signin(jid)
        self.wait_end(jid, ("waiting",) + FINAL)
        self.a.post("/api/v1/m365/jobs/%s/cancel" % jid, {})
        self.wait_end(jid)
        c = self.run_job("check")
        self.assertEqual(c["state"], "done", c)
        by = {x["item"]: x["status"] for x in c["check"]}
        self.assertEqual(by["bypass-rule"], "pending", by)
        self.assertEqual(by["antispam"], "pending", by)


class TestLongKey(WizardBase):
    key = "k" * 128
    domains = DOMAINS + "relay_key = %s\n" % key

    def test_a_128_character_relay_key_is_matched_whole(self):
        self.apply(protections=[], mode="relay")
        rule = self.emu.tenant.find("TransportRule", "moat: bypass clutter for gateway mail")
        pats = rule["HeaderMatchesPatterns"]
        self.assertEqual(pats if isinstance(pats, list) else [pats], ["^%s$" % self.key])
        relay = self.emu.tenant.find("TransportRule", "moat: route inbound mail to the gateway")
        words = relay["ExceptIfHeaderContainsWords"]
        self.assertEqual(words if isinstance(words, list) else [words], [self.key])


class TestSecrets(WizardBase):
    def test_token_appears_nowhere(self):
        self.apply()
        self.run_job("check")
        tokens = list(self.emu.tokens)
        codes = list(self.emu.devices)
        self.assertTrue(tokens and codes)
        answers = [self.a.get("/api/v1/m365/jobs").data, self.a.get("/api/v1/m365/tenant").data,
                   self.a.get("/api/v1/audit").data]
        for j in self.a.get("/api/v1/m365/jobs").json["items"]:
            answers.append(self.a.get("/api/v1/m365/jobs/" + j["id"]).data)
            answers.append(self.a.get("/api/v1/m365/jobs/%s/script" % j["id"]).data)
        self.m.stop()
        blobs = [("log", open(self.m.log_path, "rb").read())]
        for p in glob.glob(os.path.join(self.m.dir, "**"), recursive=True):
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    blobs.append((p, f.read()))
        blobs += [("api", a) for a in answers]
        for secret in tokens + codes:
            for name, data in blobs:
                self.assertNotIn(secret.encode(), data, name)
                self.assertNotIn(secret[:24].encode(), data, name)


class TestApiErrors(WizardBase):
    def test_refusals(self):
        for body, field in (({"kind": "nonsense"}, "kind"),
                            ({"kind": "apply"}, "protections"),
                            ({"kind": "plan", "mode": "relay"}, "protections"),
                            ({"kind": "apply", "protections": ["antivirus"]}, "protections"),
                            ({"kind": "apply", "protections": "antispam"}, "protections"),
                            ({"kind": "apply", "mode": "sideways"}, "mode"),
                            ({"kind": "apply", "bypass_rule": "yes"}, "bypass_rule"),
                            ({"kind": "connect", "tenant": "a b"}, "tenant")):
            r = self.a.post("/api/v1/m365/jobs", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertEqual(r.json["field"], field, r.json)
        self.assertEqual(self.a.get("/api/v1/m365/jobs/0123456789abcdef").status, 404)
        self.assertEqual(self.a.post("/api/v1/m365/jobs/0123456789abcdef/check", {}).status, 404)
        j = self.run_job("connect")
        r = self.a.post("/api/v1/m365/jobs/%s/check" % j["id"], {})
        self.assertEqual(r.status, 409, r)
        self.assertIn("not running", r.json["error"])
        ro = self.m.client(token=self.m.token(["read", "operate"]))
        self.assertEqual(ro.post("/api/v1/m365/jobs", {"kind": "connect"}).status, 403)

    def test_cancel_while_signing_in(self):
        jid = self.start("apply", protections=["antispam"])["id"]
        wait_for(lambda: self.job(jid).get("signin"), "code shown")
        r = self.a.post("/api/v1/m365/jobs/%s/cancel" % jid, {})
        self.assertEqual(r.status, 202, r)
        j = self.wait_end(jid)
        self.assertEqual(j["state"], "cancelled", j)
        self.assertNotIn("signin", j)


class TestNoEgress(unittest.TestCase):
    def test_choice_needing_egress_is_refused_before_sign_in(self):
        emu = Emulator(interval=1).start()
        self.addCleanup(emu.stop)
        m = AdminMoatd(conf="m365_authority = %s\nm365_exo_url = %s\n" % (emu.url, emu.url),
                       domains=DOMAINS, name="m365")
        m.start()
        self.addCleanup(m.stop)
        a = m.admin()
        r = a.post("/api/v1/m365/jobs", {"kind": "apply", "protections": ["antispam"]})
        self.assertEqual(r.status, 409, r)
        self.assertIn("m365_egress", r.json["error"])
        self.assertFalse([x for x in emu.requests if x["kind"] == "devicecode"])
        # protections alone need no egress
        r = a.post("/api/v1/m365/jobs", {"kind": "plan", "protections": ["antispam"],
                                          "bypass_rule": False})
        self.assertEqual(r.status, 201, r)


class TestConfig(unittest.TestCase):
    def test_bad_m365_options_name_file_and_line(self):
        for line, words in (("m365_authority = http://login.example.com", "https://"),
                            ("m365_exo_url = ftp://outlook.office365.com", "https://"),
                            ("m365_egress = 203.0.113.10, not-an-ip", "not-an-ip"),
                            ("m365_host = bad host", "host name")):
            with self.subTest(line=line):
                m = Moatd(conf=line + "\n", domains=DOMAINS, name="m365conf")
                self.assertNotEqual(m.start(expect_fail=True), 0)
                log = m.log()
                n = open(m.conf_path).read().splitlines().index(line) + 1
                self.assertIn("%s:%d" % (m.conf_path, n), log)
                self.assertIn(line.split(" =")[0], log)
                self.assertIn(words, log)


class TestMoatctl(WizardBase):
    def moatctl(self, *args, token=None):
        env = dict(os.environ, MOAT_TOKEN=token or self.tok,
                   MOAT_URL="http://127.0.0.1:%d" % self.m.admin_port)
        return subprocess.Popen([MOATCTL] + list(args), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def setUp(self):
        super().setUp()
        self.tok = self.m.token(["read", "operate", "admin"])

    def run_signed_in(self, *args):
        p = self.moatctl(*args)
        code = None
        err = ""
        while code is None:
            line = p.stderr.readline()
            self.assertTrue(line, "moatctl ended before showing a code: " + err)
            err += line
            mt = re.search(r"enter the code (\S+)", line)
            if mt:
                code = mt.group(1)
        self.assertIn(self.emu.url + "/devicelogin", err)
        self.emu.approve(code)
        out, rest = p.communicate(timeout=60)
        return p.returncode, out, err + rest

    def test_apply_check_script(self):
        rc, out, err = self.run_signed_in("m365", "apply", "--protect", "antispam,antiphish",
                                          "--mode", "relay")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("done", out)
        self.assertIsNotNone(self.emu.tenant.find("TransportRule", "moat: bypass clutter for gateway mail"))
        rc, out, err = self.run_signed_in("m365", "check", "--json")
        self.assertEqual(rc, 0, out + err)
        import json
        j = json.loads(out)
        self.assertTrue(all(c["status"] == ("skipped" if c["item"] == "presets" else "ok")
                            for c in j["check"]), j["check"])
        p = self.moatctl("m365", "script", "--protect", "antispam", "--mode", "mx")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("New-InboundConnector", out)
        p = self.moatctl("m365", "jobs")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.count("apply"), 1, out)

    def test_failure_exit_status_and_words(self):
        self.emu.set(conditional_access=True)
        rc, out, err = self.run_signed_in("m365", "connect")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("Conditional Access", out)
        self.assertIn("what to do:", out)


# --- a small reader of the PowerShell the script has -------------------------

TOKEN = re.compile(r"""\s*(?:(-[A-Za-z]+)|('(?:[^']|'')*')|(@\((?:[^()'"]|'(?:[^']|'')*')*\))|(\$true|\$false|\$null)|(-?\d+)(?![\w.])|(\S+))""")


def ps_value(tok):
    if tok.startswith("'"):
        return tok[1:-1].replace("''", "'")
    if tok.startswith("@("):
        return [ps_value(t.strip()) for t in re.findall(r"'(?:[^']|'')*'|[^,\s]+", tok[2:-1])]
    if tok in ("$true", "$false"):
        return tok == "$true"
    if tok == "$null":
        return None
    if tok.startswith("$"):
        return tok  # a variable: $_.Identity
    return int(tok)


def ps_calls(script):
    """Each cmdlet line (Verb-Noun -Param value ...) as (cmdlet, params), in order."""
    out = []
    for line in script.splitlines():
        line = line.strip()
        for m in re.finditer(r"\b((?:New|Set|Remove|Enable|Disable)-[A-Za-z]+)((?:\s+-[A-Za-z]+(?:\s+(?:'(?:[^']|'')*'|@\((?:[^()']|'(?:[^']|'')*')*\)|\$\w+|-?\d+|[^\s{}-][^\s{}]*))?)*)", line):
            params, name = {}, None
            for t in TOKEN.finditer(m.group(2)):
                if t.group(1):
                    name = t.group(1)[1:]
                    params[name] = True
                elif name is not None:
                    params[name] = ps_value(t.group(0).strip())
                    name = None
            params.pop("Confirm", None)  # -Confirm:$false: PowerShell's prompt, not Exchange's
            out.append((m.group(1), params))
    return out


def norm(params):
    out = {}
    for k, v in params.items():
        if isinstance(v, list):
            v = [str(x) if not isinstance(x, str) else x for x in v]
        out[k] = v
    return copy.deepcopy(out)


if __name__ == "__main__":
    unittest.main()
