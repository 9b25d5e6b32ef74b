"""Tests of the Microsoft 365 emulator itself (emulator.py), over HTTP with urllib.

The clock is injected (FakeClock), so the polling-interval arithmetic of
RFC 8628 is checked without sleeping.

    /usr/bin/python3 -m unittest discover -s tests/m365 -v
"""
import base64
import html
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import sys
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulator import DEVICE_GRANT, EXO_CLIENT_ID, EXO_SCOPE, Emulator  # noqa: E402

DOMAIN = "contoso.onmicrosoft.com"
ADMIN = "admin@" + DOMAIN
READER = "reader@" + DOMAIN


class FakeClock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


def http(method, url, data=None, headers=None, context=None):
    """-> (status, headers, body bytes); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Base(unittest.TestCase):
    switches = {}

    def setUp(self):
        self.clock = FakeClock()
        self.emu = Emulator(clock=self.clock, **self.switches).start()
        self.addCleanup(self.emu.stop)

    # sign-in
    def form(self, path, **fields):
        st, _, body = http("POST", self.emu.url + path, urllib.parse.urlencode(fields).encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        return st, json.loads(body)

    def devicecode(self, tenant="organizations", **over):
        fields = {"client_id": EXO_CLIENT_ID, "scope": EXO_SCOPE}
        fields.update(over)
        return self.form("/%s/oauth2/v2.0/devicecode" % tenant, **fields)

    def poll(self, device_code, tenant="organizations", **over):
        fields = {"grant_type": DEVICE_GRANT, "client_id": EXO_CLIENT_ID, "device_code": device_code}
        fields.update(over)
        return self.form("/%s/oauth2/v2.0/token" % tenant, **fields)

    def sign_in(self, account=ADMIN):
        st, dc = self.devicecode()
        self.assertEqual(st, 200)
        self.emu.approve(dc["user_code"], account)
        self.clock.advance(dc["interval"])
        st, tok = self.poll(dc["device_code"])
        self.assertEqual(st, 200, tok)
        return tok["access_token"]

    # Exchange
    def headers(self, token, account=ADMIN):
        return {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                "Accept": "application/json", "X-AnchorMailbox": "UPN:" + account,
                "Prefer": "odata.maxpagesize=1000", "client-request-id": str(uuid.uuid4())}

    def invoke_raw(self, cmdlet, params=None, token=None, url=None, headers=None, account=ADMIN):
        body = json.dumps({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}}).encode()
        if headers is None:
            headers = self.headers(token or self.token, account)
        url = url or "%s/adminapi/beta/%s/InvokeCommand" % (self.emu.exo_url, DOMAIN)
        st, h, raw = http("POST", url, body, headers)
        return st, h, raw

    def invoke(self, cmdlet, params=None, **kw):
        st, h, raw = self.invoke_raw(cmdlet, params, **kw)
        return st, (json.loads(raw) if raw else None)

    def ok(self, cmdlet, params=None, **kw):
        st, body = self.invoke(cmdlet, params, **kw)
        self.assertEqual(st, 200, body)
        return body

    def get_all(self, cmdlet, params=None):
        """Follow @odata.nextLink, sending the same body (M365.md 2)."""
        body = self.ok(cmdlet, params)
        items, pages = list(body["value"]), 1
        while "@odata.nextLink" in body:
            body = self.ok(cmdlet, params, url=body["@odata.nextLink"])
            items += body["value"]
            pages += 1
        return items, pages

    def cmdlet_error(self, body):
        """details[].message split on '|' -> (id, type, text)."""
        self.assertEqual(body["error"]["message"], "Error executing cmdlet")
        self.assertEqual(body["error"]["details"][0]["code"], "Client")
        return tuple(body["error"]["details"][0]["message"].split("|", 2))


class TestDeviceCode(Base):
    def test_devicecode_answer(self):
        st, dc = self.devicecode()
        self.assertEqual(st, 200)
        self.assertEqual(set(dc), {"device_code", "user_code", "verification_uri",
                                   "expires_in", "interval", "message"})
        self.assertEqual((dc["expires_in"], dc["interval"]), (900, 5))
        self.assertEqual(dc["verification_uri"], self.emu.url + "/devicelogin")
        self.assertIn(dc["user_code"], dc["message"])
        self.assertIn(dc["verification_uri"], dc["message"])
        self.assertNotIn("verification_uri_complete", dc)

    def test_tenant_forms(self):
        for tenant in ("organizations", DOMAIN, "contoso.com", self.emu.tenant.tenant_id):
            with self.subTest(tenant=tenant):
                self.assertEqual(self.devicecode(tenant)[0], 200)

    def test_request_errors(self):
        cases = [  # (what, call, want error, want code)
            ("unknown tenant", lambda: self.devicecode("fabrikam.com"), "invalid_request", 90002),
            ("no client_id", lambda: self.devicecode(client_id=""), "invalid_request", 900144),
            ("unknown client", lambda: self.devicecode(client_id=str(uuid.uuid4())),
             "unauthorized_client", 700016),
            ("no scope", lambda: self.devicecode(scope=""), "invalid_request", 900144),
            ("wrong scope", lambda: self.devicecode(scope="https://graph.microsoft.com/.default"),
             "invalid_scope", 70011),
            ("wrong grant", lambda: self.poll("x", grant_type="authorization_code"),
             "unsupported_grant_type", 70003),
            ("no device_code", lambda: self.poll(""), "invalid_request", 900144),
            ("unknown device_code", lambda: self.poll("nope"), "bad_verification_code", 70018),
        ]
        for what, call, error, code in cases:
            with self.subTest(what):
                st, body = call()
                self.assertEqual(st, 400)
                self.assertEqual(body["error"], error)
                self.assertEqual(body["error_codes"], [code])
                self.assertTrue(body["error_description"].startswith("AADSTS%d: " % code))
                for k in ("timestamp", "trace_id", "correlation_id"):
                    self.assertIn(k, body)

    def test_not_form_encoded(self):
        st, _, raw = http("POST", self.emu.url + "/organizations/oauth2/v2.0/devicecode",
                          json.dumps({"client_id": EXO_CLIENT_ID}).encode(),
                          {"Content-Type": "application/json"})
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(raw)["error"], "invalid_request")

    def test_pending_then_success(self):
        st, dc = self.devicecode()
        self.clock.advance(5)
        st, body = self.poll(dc["device_code"])
        self.assertEqual((st, body["error"], body["error_codes"]), (400, "authorization_pending", [70016]))
        self.assertTrue(body["error_description"].startswith(
            "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."))
        self.emu.approve(dc["user_code"].lower(), ADMIN)  # codes are case-insensitive
        self.clock.advance(5)
        st, tok = self.poll(dc["device_code"])
        self.assertEqual(st, 200)
        self.assertEqual(tok["token_type"], "Bearer")
        self.assertEqual(tok["scope"], EXO_SCOPE)
        self.assertEqual(tok["expires_in"], 3599)
        self.assertNotIn("refresh_token", tok)
        self.assertEqual(self.emu.tokens[tok["access_token"]]["account"], ADMIN)
        # single use
        self.clock.advance(5)
        st, body = self.poll(dc["device_code"])
        self.assertEqual((st, body["error"]), (400, "bad_verification_code"))

    def test_offline_access_gives_refresh_token(self):
        st, dc = self.devicecode(scope=EXO_SCOPE + " offline_access")
        self.assertEqual(st, 200)
        self.emu.approve(dc["user_code"])
        self.clock.advance(5)
        st, tok = self.poll(dc["device_code"])
        self.assertIn("refresh_token", tok)

    def test_id_token_with_openid(self):
        def claims(segment):
            return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

        st, dc = self.devicecode(scope=EXO_SCOPE + " openid profile")
        self.assertEqual(st, 200)
        self.emu.approve(dc["user_code"], ADMIN)
        self.clock.advance(5)
        st, tok = self.poll(dc["device_code"])
        self.assertEqual(st, 200, tok)
        parts = tok["id_token"].split(".")
        self.assertEqual(len(parts), 3)
        self.assertTrue(all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts))
        self.assertEqual(claims(parts[0]), {"typ": "JWT", "alg": "RS256", "kid": "emulator"})
        c = claims(parts[1])
        tid = self.emu.tenant.tenant_id
        self.assertEqual((c["aud"], c["tid"], c["preferred_username"], c["name"]),
                         (EXO_CLIENT_ID, tid, ADMIN, "Ada Admin"))
        self.assertEqual(c["iss"], "https://login.microsoftonline.com/%s/v2.0" % tid)
        self.assertEqual(c["exp"] - c["iat"], 3599)
        uuid.UUID(c["oid"])
        # without openid in the scope there is none
        st, dc = self.devicecode()
        self.emu.approve(dc["user_code"], ADMIN)
        self.clock.advance(5)
        self.assertNotIn("id_token", self.poll(dc["device_code"])[1])

    def test_declined(self):
        st, dc = self.devicecode()
        self.emu.decline(dc["user_code"])
        self.clock.advance(5)
        st, body = self.poll(dc["device_code"])
        self.assertEqual((st, body["error"], body["error_codes"]), (400, "authorization_declined", []))

    def test_declined_switch(self):
        self.emu.set(declined=True)
        st, dc = self.devicecode()
        self.clock.advance(5)
        self.assertEqual(self.poll(dc["device_code"])[1]["error"], "authorization_declined")

    def test_expired_by_time(self):
        st, dc = self.devicecode()
        self.clock.advance(899)
        self.assertEqual(self.poll(dc["device_code"])[1]["error"], "authorization_pending")
        self.clock.advance(1)
        st, body = self.poll(dc["device_code"])
        self.assertEqual((st, body["error"], body["error_codes"]), (400, "expired_token", [70019]))
        self.assertTrue(body["error_description"].startswith("AADSTS70019: "))
        # stays expired, even if the admin approves late
        with self.assertRaises(KeyError):
            self.emu.approve("NOSUCHCODE")
        self.clock.advance(5)
        self.assertEqual(self.poll(dc["device_code"])[1]["error"], "expired_token")

    def test_expired_switch(self):
        st, dc = self.devicecode()
        self.emu.set(code_expired=True)
        self.clock.advance(5)
        self.assertEqual(self.poll(dc["device_code"])[1]["error_codes"], [70019])

    def test_sign_in_policies(self):
        cases = [("conditional_access", 53003, "Access has been blocked by Conditional Access"),
                 ("mfa", 50076, "you must use multi-factor authentication"),
                 ("consent", 65001, "has not consented to use the application")]
        for switch, code, text in cases:
            with self.subTest(switch):
                self.emu.set(conditional_access=False, mfa=False, consent=False)
                self.emu.set(**{switch: True})
                st, dc = self.devicecode()
                self.clock.advance(5)
                # pending until the admin signs in; the policy bites at redemption
                self.assertEqual(self.poll(dc["device_code"])[1]["error"], "authorization_pending")
                self.emu.approve(dc["user_code"], ADMIN)
                self.clock.advance(5)
                st, body = self.poll(dc["device_code"])
                self.assertEqual((st, body["error"], body["error_codes"]), (400, "invalid_grant", [code]))
                self.assertTrue(body["error_description"].startswith("AADSTS%d: " % code))
                self.assertIn(text, body["error_description"])


class TestSlowDown(Base):
    """RFC 8628 3.5 arithmetic: the interval is kept per code; each slow_down
    adds 5 s for that poll and every later one."""

    def test_interval_arithmetic(self):
        st, dc = self.devicecode()
        code = dc["device_code"]
        steps = [  # (advance, want error, interval after)
            (2, "slow_down", 10),              # first poll measured from issue: 2 < 5
            (10, "authorization_pending", 10),
            (9.5, "slow_down", 15),            # 9.5 < 10
            (14, "slow_down", 20),             # 14 < 15: the +5 s is remembered
            (20, "authorization_pending", 20),
            (20, "authorization_pending", 20),
        ]
        for i, (adv, want, interval) in enumerate(steps):
            with self.subTest(step=i):
                self.clock.advance(adv)
                st, body = self.poll(code)
                self.assertEqual((st, body["error"]), (400, want))
                self.assertEqual(self.emu.devices[code]["interval"], interval)
        self.emu.approve(dc["user_code"])
        self.clock.advance(20)
        self.assertEqual(self.poll(code)[0], 200)

    def test_forced_slow_down(self):
        st, dc = self.devicecode()
        self.emu.set(slow_down=2)
        got = []
        for adv in (5, 10, 15):
            self.clock.advance(adv)
            got.append(self.poll(dc["device_code"])[1]["error"])
        self.assertEqual(got, ["slow_down", "slow_down", "authorization_pending"])
        self.assertEqual(self.emu.devices[dc["device_code"]]["interval"], 15)
        self.assertEqual(self.emu.switches["slow_down"], 0)

    def test_slow_down_body(self):
        st, dc = self.devicecode()
        st, body = self.poll(dc["device_code"])
        self.assertEqual(body["error"], "slow_down")
        self.assertEqual(body["error_codes"], [])
        for k in ("error_description", "timestamp", "trace_id", "correlation_id"):
            self.assertIn(k, body)


class TestLoginPage(Base):
    def page(self, method="GET", **fields):
        data = urllib.parse.urlencode(fields).encode() if method == "POST" else None
        st, h, raw = http(method, self.emu.url + "/devicelogin", data,
                          {"Content-Type": "application/x-www-form-urlencoded"} if data else {})
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith("text/html"))
        self.assertNotIn("<script", raw.decode().lower())
        return raw.decode()

    def test_browser_flow_continue(self):
        st, dc = self.devicecode()
        self.assertIn('name="otc"', self.page())
        self.assertIn("didn&#x27;t work", self.page("POST", otc="WRONGCODE", step="code"))
        pick = self.page("POST", otc=dc["user_code"], step="code")
        self.assertIn("Pick an account", pick)
        admins = re.findall(r'name="account" value="([^"]+)"', pick)
        self.assertEqual(admins, [ADMIN, READER, "noapi@" + DOMAIN])  # not user@ (no role)
        confirm = self.page("POST", otc=dc["user_code"], step="account", account=ADMIN)
        self.assertIn(">Continue<", confirm)
        self.assertIn(">Decline<", confirm)
        done = self.page("POST", otc=dc["user_code"], step="confirm", account=ADMIN, action="continue")
        self.assertIn("You may now close this window", done)
        self.clock.advance(5)
        st, tok = self.poll(dc["device_code"])
        self.assertEqual(st, 200)
        self.assertEqual(self.emu.tokens[tok["access_token"]]["account"], ADMIN)
        # the code cannot be entered again
        self.assertIn("didn&#x27;t work", self.page("POST", otc=dc["user_code"], step="code"))

    def test_browser_flow_decline(self):
        st, dc = self.devicecode()
        self.page("POST", otc=dc["user_code"], step="confirm", account=ADMIN, action="decline")
        self.clock.advance(5)
        self.assertEqual(self.poll(dc["device_code"])[1]["error"], "authorization_declined")

    def test_escaped(self):
        evil = '<b>"Eve" & co</b>'
        self.emu.tenant.accounts["eve@" + DOMAIN] = {"name": evil, "roles": ["Exchange Administrator"],
                                                     "exo_enabled": True}
        st, dc = self.devicecode()
        pick = self.page("POST", otc=dc["user_code"], step="code")
        self.assertIn(html.escape(evil), pick)
        self.assertNotIn(evil, pick)
        self.assertNotIn("<img", self.page("POST", otc="<img src=x>", step="code"))
        unknown = self.page("POST", otc=dc["user_code"], step="account", account="<i>x</i>")
        self.assertIn("&lt;i&gt;x&lt;/i&gt;", unknown)


class Signed(Base):
    def setUp(self):
        super().setUp()
        self.token = self.sign_in()


class TestInvoke(Signed):
    def test_headers_required(self):
        good = self.headers(self.token)
        cases = [("Authorization", None, 401), ("Content-Type", "text/plain", 400),
                 ("Accept", "text/html", 400), ("X-AnchorMailbox", ADMIN, 400),
                 ("X-AnchorMailbox", None, 400), ("client-request-id", None, 400),
                 ("client-request-id", "not-a-guid", 400), ("Authorization", "Bearer forged", 401)]
        for name, value, want in cases:
            with self.subTest(header=name, value=value):
                h = dict(good)
                if value is None:
                    del h[name]
                else:
                    h[name] = value
                st, _, raw = self.invoke_raw("Get-AcceptedDomain", headers=h)
                self.assertEqual(st, want)
                if want == 401:
                    self.assertEqual(raw, b"")

    def test_expired_token(self):
        self.clock.advance(3599)
        st, _, raw = self.invoke_raw("Get-AcceptedDomain")
        self.assertEqual((st, raw), (401, b""))

    def test_bad_body(self):
        st, _, raw = http("POST", "%s/adminapi/beta/%s/InvokeCommand" % (self.emu.exo_url, DOMAIN),
                          b'{"CmdletName": "Get-AcceptedDomain"}', self.headers(self.token))
        self.assertEqual(st, 400)

    def test_answer_and_log(self):
        h = self.headers(self.token)
        st, rh, raw = self.invoke_raw("Get-AcceptedDomain", headers=h)
        body = json.loads(raw)
        self.assertEqual(st, 200)
        self.assertEqual(body["@odata.context"],
                         "%s/adminapi/beta/%s/$metadata#AcceptedDomain" % (self.emu.exo_url, DOMAIN))
        self.assertEqual([d["DomainName"] for d in body["value"]], [DOMAIN, "contoso.com"])
        self.assertNotIn("@odata.nextLink", body)
        self.assertEqual(rh["client-request-id"], h["client-request-id"])
        rec = self.emu.calls("Get-AcceptedDomain")[-1]
        self.assertEqual(rec["headers"]["x-anchormailbox"], "UPN:" + ADMIN)
        self.assertEqual(rec["headers"]["client-request-id"], h["client-request-id"])
        self.assertEqual(rec["parameters"], {})
        self.assertEqual(rec["account"], ADMIN)
        self.assertEqual(rec["status"], 200)

    def test_tenant_by_guid(self):
        url = "%s/adminapi/beta/%s/InvokeCommand" % (self.emu.exo_url, self.emu.tenant.tenant_id)
        self.assertEqual(self.invoke("Get-AcceptedDomain", url=url)[0], 200)

    def test_paging(self):
        self.emu.set(page_size=2)
        for i in range(5):
            self.ok("New-TransportRule", {"Name": "r%d" % i})
        items, pages = self.get_all("Get-TransportRule")
        self.assertEqual([r["Name"] for r in items], ["r0", "r1", "r2", "r3", "r4"])
        self.assertEqual(pages, 3)
        first = self.ok("Get-TransportRule")
        self.assertIn("$skiptoken", urllib.parse.unquote(first["@odata.nextLink"]))
        # the nextLink takes the same body
        st, body = self.invoke("Get-AcceptedDomain", url=first["@odata.nextLink"])
        self.assertEqual(st, 400)
        # Prefer lowers the page size further
        h = self.headers(self.token)
        h["Prefer"] = "odata.maxpagesize=1"
        st, _, raw = self.invoke_raw("Get-TransportRule", headers=h)
        self.assertEqual(len(json.loads(raw)["value"]), 1)

    def test_not_found_shape(self):
        st, body = self.invoke("Get-TransportRule", {"Identity": "nope"})
        self.assertEqual(st, 404)
        errid, extype, text = self.cmdlet_error(body)
        self.assertEqual(errid, "Ex6F9304")
        self.assertEqual(extype, "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException")
        self.assertRegex(text, r"^The operation couldn't be performed because object 'nope' "
                               r"couldn't be found on '[^']+'\.$")
        self.assertIn("innererror", body["error"])

    def test_unknown_cmdlet_is_not_available(self):
        st, _, raw = self.invoke_raw("Get-Mailbox")
        self.assertEqual((st, raw), (403, b""))


class TestTransportRules(Signed):
    def names(self):
        return [(r["Priority"], r["Name"]) for r in self.get_all("Get-TransportRule")[0]]

    def test_priorities(self):
        for n in ("a", "b", "c"):
            self.ok("New-TransportRule", {"Name": n})
        self.assertEqual(self.names(), [(0, "a"), (1, "b"), (2, "c")])
        self.ok("New-TransportRule", {"Name": "first", "Priority": 0})
        self.assertEqual(self.names(), [(0, "first"), (1, "a"), (2, "b"), (3, "c")])
        self.ok("New-TransportRule", {"Name": "mid", "Priority": 2})
        self.assertEqual(self.names(), [(0, "first"), (1, "a"), (2, "mid"), (3, "b"), (4, "c")])
        self.ok("Set-TransportRule", {"Identity": "c", "Priority": 1})
        self.assertEqual(self.names(), [(0, "first"), (1, "c"), (2, "a"), (3, "mid"), (4, "b")])
        self.ok("Set-TransportRule", {"Identity": "first", "Priority": 4})
        self.assertEqual(self.names(), [(0, "c"), (1, "a"), (2, "mid"), (3, "b"), (4, "first")])
        self.ok("Remove-TransportRule", {"Identity": "a", "Confirm": False})
        self.assertEqual(self.names(), [(0, "c"), (1, "mid"), (2, "b"), (3, "first")])
        self.assertEqual(self.emu.tenant.rules(), self.names())
        for params in ({"Identity": "b", "Priority": 4}, {"Identity": "b", "Priority": -1}):
            st, body = self.invoke("Set-TransportRule", params)
            self.assertEqual(st, 400)
        st, body = self.invoke("New-TransportRule", {"Name": "far", "Priority": 9})
        self.assertEqual(st, 400)

    def test_seeded_rules(self):
        self.emu.tenant.add("TransportRule", "seeded relay", StopRuleProcessing=True)
        self.emu.tenant.add("TransportRule", "seeded other", State="Disabled")
        self.ok("New-TransportRule", {"Name": "new", "Priority": 1})
        self.assertEqual(self.names(), [(0, "seeded relay"), (1, "new"), (2, "seeded other")])
        self.assertEqual(self.ok("Get-TransportRule", {"Identity": "seeded other"})["value"][0]["State"],
                         "Disabled")

    def test_bypass_rule_kept_as_given(self):
        params = {"Name": "moat bypass clutter", "SenderIpRanges": ["192.0.2.10", "198.51.100.0/24",
                                                                     "203.0.113.1-203.0.113.9"],
                  "SetSCL": -1, "SetHeaderName": "X-MS-Exchange-Organization-BypassClutter",
                  "SetHeaderValue": "true", "StopRuleProcessing": True, "Enabled": True}
        new = self.ok("New-TransportRule", params)["value"][0]
        got = self.ok("Get-TransportRule", {"Identity": "MOAT BYPASS CLUTTER"})["value"][0]
        self.assertEqual(new, got)
        for k in ("SenderIpRanges", "SetSCL", "SetHeaderName", "SetHeaderValue", "StopRuleProcessing"):
            self.assertEqual(got[k], params[k])
        self.assertEqual((got["State"], got["Mode"], got["Priority"]), ("Enabled", "Enforce", 0))
        self.ok("Disable-TransportRule", {"Identity": got["Guid"]})
        self.assertEqual(self.emu.tenant.find("TransportRule", "moat bypass clutter")["State"], "Disabled")
        self.ok("Enable-TransportRule", {"Identity": "moat bypass clutter"})
        self.assertEqual(self.emu.tenant.find("TransportRule", "moat bypass clutter")["State"], "Enabled")

    def test_rule_errors(self):
        self.ok("New-TransportRule", {"Name": "taken"})
        cases = [
            ({"Name": "x" * 65}, "The maximum length is 64"),
            ({"Name": "TAKEN"}, "already exists"),
            ({"Name": "h", "SetHeaderName": "X-A"}, "must be specified together"),
            ({"Name": "s", "SetSCL": 10}, "SetSCL"),
            ({"Name": "i", "SenderIpRanges": ["300.1.1.1"]}, "not a valid IP"),
            ({"Name": "f", "FromScope": "Anywhere"}, "FromScope"),
        ]
        for params, text in cases:
            with self.subTest(params=params):
                st, body = self.invoke("New-TransportRule", params)
                self.assertEqual(st, 400)
                self.assertIn(text, self.cmdlet_error(body)[2])
        self.assertEqual(self.ok("New-TransportRule", {"Name": "x" * 64})["value"][0]["Priority"], 1)
        st, body = self.invoke("Set-TransportRule", {"Identity": "taken", "Enabled": False})
        self.assertEqual(self.cmdlet_error(body)[2],
                         "A parameter cannot be found that matches parameter name 'Enabled'.")
        st, body = self.invoke("Remove-TransportRule", {"Identity": "gone"})
        self.assertEqual((st, self.cmdlet_error(body)[0]), (404, "Ex6F9304"))

    def test_no_change_warns(self):
        self.ok("New-TransportRule", {"Name": "w", "SetSCL": -1})
        body = self.ok("Set-TransportRule", {"Identity": "w", "SetSCL": -1})
        self.assertEqual(body["@adminapi.warnings"],
                         ["The command completed successfully but no settings of 'w' have been modified."])
        body = self.ok("Set-TransportRule", {"Identity": "w", "SetSCL": 0})
        self.assertNotIn("@adminapi.warnings", body)


class TestProtections(Signed):
    def test_connectors(self):
        self.ok("New-InboundConnector", {"Name": "moat in", "ConnectorType": "Partner",
                                         "SenderDomains": ["*"], "RequireTls": True,
                                         "RestrictDomainsToCertificate": True,
                                         "TlsSenderCertificateName": "mx.moat.example",
                                         "EFSkipIPs": ["192.0.2.10"]})
        self.ok("New-OutboundConnector", {"Name": "moat out", "ConnectorType": "Partner",
                                          "IsTransportRuleScoped": True, "UseMxRecord": False,
                                          "SmartHosts": ["mx.moat.example"],
                                          "TlsSettings": "DomainValidation", "TlsDomain": "mx.moat.example"})
        self.assertEqual(self.ok("Get-OutboundConnector")["value"][0]["SmartHosts"], ["mx.moat.example"])
        for params, text in (({"Name": "p", "EFSkipIPs": ["10.1.2.3"]}, "RFC 1918"),
                             ({"Name": "q", "SenderIPAddresses": ["192.0.2.0/23"]}, "/24 to /32")):
            st, body = self.invoke("New-InboundConnector", params)
            self.assertEqual(st, 400)
            self.assertIn(text, self.cmdlet_error(body)[2])
        self.ok("Set-InboundConnector", {"Identity": "moat in", "EFSkipLastIP": True})
        self.assertTrue(self.emu.tenant.find("InboundConnector", "moat in")["EFSkipLastIP"])
        self.ok("Remove-OutboundConnector", {"Identity": "moat out"})
        self.assertEqual(self.ok("Get-OutboundConnector")["value"], [])

    def test_default_policy_cannot_be_disabled(self):
        for cmdlet, ident in (("Disable-HostedContentFilterRule", "Default"),
                              ("Disable-AntiPhishRule", "Office365 AntiPhish Default"),
                              ("Disable-MalwareFilterRule", "Default")):
            with self.subTest(cmdlet):
                st, body = self.invoke(cmdlet, {"Identity": ident})
                self.assertEqual(st, 400)
                self.assertIn("can't be disabled", self.cmdlet_error(body)[2])
        st, body = self.invoke("Remove-HostedContentFilterPolicy", {"Identity": "Default"})
        self.assertIn("can't be removed", self.cmdlet_error(body)[2])

    def test_custom_policy_and_rule(self):
        self.ok("New-HostedContentFilterPolicy", {"Name": "moat", "SpamAction": "MoveToJmf"})
        self.ok("New-HostedContentFilterRule", {"Name": "moat", "HostedContentFilterPolicy": "moat",
                                                "RecipientDomainIs": ["contoso.com"]})
        self.ok("Disable-HostedContentFilterRule", {"Identity": "moat"})
        rule = self.ok("Get-HostedContentFilterRule", {"Identity": "moat"})["value"][0]
        self.assertEqual((rule["State"], rule["Priority"]), ("Disabled", 0))
        st, body = self.invoke("Remove-HostedContentFilterPolicy", {"Identity": "moat"})
        self.assertIn("used by the rule", self.cmdlet_error(body)[2])
        st, body = self.invoke("New-HostedContentFilterRule", {"Name": "x", "HostedContentFilterPolicy": "none"})
        self.assertEqual(st, 404)
        self.ok("Set-HostedContentFilterPolicy", {"Identity": "Default", "MarkAsSpamBulkMail": "Off",
                                                  "SpamZapEnabled": False})
        self.assertEqual(self.emu.tenant.find("HostedContentFilterPolicy", "Default")["MarkAsSpamBulkMail"], "Off")
        self.ok("Set-AntiPhishPolicy", {"Identity": "Office365 AntiPhish Default",
                                        "EnableSpoofIntelligence": False, "HonorDmarcPolicy": False})

    def test_malware_always_quarantined(self):
        st, body = self.invoke("Set-MalwareFilterPolicy", {"Identity": "Default", "Action": "DeleteMessage"})
        self.assertEqual(self.cmdlet_error(body)[2],
                         "A parameter cannot be found that matches parameter name 'Action'.")
        st, body = self.invoke("Set-MalwareFilterPolicy", {"Identity": "Default", "QuarantineTag": ""})
        self.assertIn("always quarantined", self.cmdlet_error(body)[2])
        self.ok("Set-MalwareFilterPolicy", {"Identity": "Default", "EnableFileFilter": False,
                                            "ZapEnabled": False})

    def test_defender_present(self):
        sl = self.ok("Get-SafeLinksPolicy")["value"]
        self.assertTrue(any(p["IsBuiltInProtection"] for p in sl))
        st, body = self.invoke("Set-SafeLinksPolicy", {"Identity": "Built-In Protection Policy",
                                                       "EnableSafeLinksForEmail": False})
        self.assertIn("can't be modified", self.cmdlet_error(body)[2])
        self.ok("Set-ATPBuiltInProtectionRule", {"Identity": "ATP Built-In Protection Rule",
                                                 "ExceptIfRecipientDomainIs": ["contoso.com"]})
        self.assertEqual(self.emu.tenant.find("ATPBuiltInProtectionRule", "ATP Built-In Protection Rule")
                         ["ExceptIfRecipientDomainIs"], ["contoso.com"])
        self.ok("New-SafeAttachmentPolicy", {"Name": "moat", "Enable": True})
        self.ok("Set-SafeAttachmentPolicy", {"Identity": "moat", "Enable": False})
        self.ok("New-SafeAttachmentRule", {"Name": "moat", "SafeAttachmentPolicy": "moat",
                                           "RecipientDomainIs": ["contoso.com"]})
        self.ok("Disable-SafeAttachmentRule", {"Identity": "moat"})
        for cmdlet in ("Disable-EOPProtectionPolicyRule", "Disable-ATPProtectionPolicyRule"):
            self.ok(cmdlet, {"Identity": "Standard Preset Security Policy"})
        states = {r["Name"]: r["State"] for r in self.ok("Get-EOPProtectionPolicyRule")["value"]}
        self.assertEqual(states, {"Standard Preset Security Policy": "Disabled",
                                  "Strict Preset Security Policy": "Disabled"})
        body = self.ok("Disable-EOPProtectionPolicyRule", {"Identity": "Strict Preset Security Policy"})
        self.assertIn("@adminapi.warnings", body)

    def test_arc_and_org(self):
        self.ok("Set-ArcConfig", {"Identity": "Default", "ArcTrustedSealers": "moat.example"})
        self.assertEqual(self.ok("Get-ArcConfig")["value"][0]["ArcTrustedSealers"], "moat.example")
        self.assertFalse(self.ok("Get-OrganizationConfig")["value"][0]["IsDehydrated"])
        st, body = self.invoke("Enable-OrganizationCustomization")
        self.assertIn("already enabled", self.cmdlet_error(body)[2])


class TestSwitches(Signed):
    def test_throttle(self):
        self.emu.set(throttle=2, throttle_reset=30)
        for _ in range(2):
            st, h, raw = self.invoke_raw("Get-AcceptedDomain")
            self.assertEqual(st, 429)
            self.assertEqual(h["Rate-Limit-Remaining"], "0")
            self.assertEqual(h["Retry-After"], "30")
            self.assertRegex(h["Rate-Limit-Reset"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")
        self.assertEqual(self.invoke("Get-AcceptedDomain")[0], 200)

    def test_role_missing(self):
        for value in (True, ["Get-TransportRule"]):
            self.emu.set(role_missing=value)
            st, _, raw = self.invoke_raw("Get-TransportRule")
            self.assertEqual(st, 401)
            self.assertEqual(json.loads(raw), {"error": {
                "code": "Unauthorized", "message": "User is not allowed to call Get-TransportRule"}})
        self.assertEqual(self.invoke("Get-AcceptedDomain")[0], 200)

    def test_roles_of_accounts(self):
        reader = self.sign_in(READER)
        self.assertEqual(self.invoke("Get-TransportRule", token=reader, account=READER)[0], 200)
        st, body = self.invoke("New-TransportRule", {"Name": "x"}, token=reader, account=READER)
        self.assertEqual((st, body["error"]["message"]), (401, "User is not allowed to call New-TransportRule"))
        noapi = self.sign_in("noapi@" + DOMAIN)
        st, body = self.invoke("Get-AcceptedDomain", token=noapi, account="noapi@" + DOMAIN)
        self.assertEqual((st, body["error"]["code"]), (401, "Unauthorized"))

    def test_unavailable(self):
        self.emu.set(unavailable=["Get-HostedContentFilterPolicy"])
        st, h, raw = self.invoke_raw("Get-HostedContentFilterPolicy")
        self.assertEqual((st, raw), (403, b""))

    def test_defender_off(self):
        self.emu.set(defender=False)
        for cmdlet in ("Get-SafeLinksPolicy", "Get-SafeAttachmentPolicy", "Disable-SafeLinksRule",
                       "Set-ATPBuiltInProtectionRule", "Disable-ATPProtectionPolicyRule"):
            with self.subTest(cmdlet):
                st, _, raw = self.invoke_raw(cmdlet, {"Identity": "x"})
                self.assertEqual((st, raw), (403, b""))
        self.assertEqual(self.invoke("Get-AcceptedDomain")[0], 200)
        self.assertEqual(self.invoke("Get-EOPProtectionPolicyRule")[0], 200)

    def test_customization_needed(self):
        self.emu.set(customization_needed=True)
        self.assertTrue(self.ok("Get-OrganizationConfig")["value"][0]["IsDehydrated"])
        for cmdlet, params in (("New-HostedContentFilterPolicy", {"Name": "moat"}),
                               ("Set-HostedContentFilterPolicy", {"Identity": "Default", "SpamZapEnabled": False}),
                               ("New-AntiPhishPolicy", {"Name": "moat"}),
                               ("Disable-MalwareFilterRule", {"Identity": "x"})):
            with self.subTest(cmdlet):
                st, body = self.invoke(cmdlet, params)
                self.assertEqual(st, 400)
                self.assertTrue(self.cmdlet_error(body)[2].endswith(
                    "you first need to run the command: Enable-OrganizationCustomization."))
        self.assertEqual(self.invoke("New-TransportRule", {"Name": "not custom"})[0], 200)
        self.ok("Enable-OrganizationCustomization")
        self.assertFalse(self.ok("Get-OrganizationConfig")["value"][0]["IsDehydrated"])
        self.ok("New-HostedContentFilterPolicy", {"Name": "moat"})

    def test_customization_applies_late(self):
        self.emu.set(customization_needed=True, apply_delay=2)
        self.ok("Enable-OrganizationCustomization")
        self.assertEqual(self.invoke("New-AntiPhishPolicy", {"Name": "m"})[0], 400)
        self.assertTrue(self.ok("Get-OrganizationConfig")["value"][0]["IsDehydrated"])   # read 1
        self.assertFalse(self.ok("Get-OrganizationConfig")["value"][0]["IsDehydrated"])  # read 2
        self.ok("New-AntiPhishPolicy", {"Name": "m"})

    def test_apply_delay(self):
        self.emu.set(apply_delay=3)
        self.ok("New-TransportRule", {"Name": "late"})
        self.assertIsNotNone(self.emu.tenant.find("TransportRule", "late"))  # the truth has it
        seen = [len(self.ok("Get-TransportRule")["value"]) for _ in range(4)]
        self.assertEqual(seen, [0, 0, 1, 1])
        # a second change lags on its own; writes see the truth meanwhile
        self.ok("Set-TransportRule", {"Identity": "late", "SetSCL": -1})
        st, body = self.invoke("New-TransportRule", {"Name": "late"})
        self.assertIn("already exists", self.cmdlet_error(body)[2])
        got = [self.ok("Get-TransportRule")["value"][0].get("SetSCL") for _ in range(3)]
        self.assertEqual(got, [None, None, -1])
        self.assertIsNone(self.emu.view)

    def test_control_endpoint(self):
        st, _, raw = http("POST", self.emu.url + "/_emulator/control",
                          json.dumps({"throttle": 1, "set": {"defender": False}}).encode(),
                          {"Content-Type": "application/json"})
        self.assertEqual(st, 200)
        self.assertEqual((self.emu.switches["throttle"], self.emu.switches["defender"]), (1, False))
        st, _, raw = http("POST", self.emu.url + "/_emulator/control", b'{"no_such": 1}',
                          {"Content-Type": "application/json"})
        self.assertEqual(st, 400)
        st, dc = self.devicecode()
        st, _, raw = http("POST", self.emu.url + "/_emulator/control",
                          json.dumps({"approve": {"user_code": dc["user_code"], "account": ADMIN}}).encode(),
                          {"Content-Type": "application/json"})
        self.assertEqual(self.emu.device(dc["user_code"])["state"], "approved")
        st, _, raw = http("GET", self.emu.url + "/_emulator/state")
        self.assertIn("TransportRule", json.loads(raw)["objects"])
        st, _, raw = http("GET", self.emu.url + "/_emulator/requests")
        self.assertTrue(any(r["kind"] == "devicecode" for r in json.loads(raw)))
        with self.assertRaises(KeyError):
            self.emu.set(nonsense=True)


@unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
class TestTLS(unittest.TestCase):
    def test_https(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], check=True, capture_output=True)
            with Emulator(tls=(cert, key)) as emu:
                self.assertTrue(emu.url.startswith("https://127.0.0.1:"))
                st, _, raw = http("POST", emu.url + "/organizations/oauth2/v2.0/devicecode",
                                  urllib.parse.urlencode({"client_id": EXO_CLIENT_ID,
                                                          "scope": EXO_SCOPE}).encode(),
                                  {"Content-Type": "application/x-www-form-urlencoded"},
                                  context=ssl.create_default_context(cafile=cert))
                self.assertEqual(st, 200)
                self.assertTrue(json.loads(raw)["verification_uri"].startswith("https://"))


if __name__ == "__main__":
    unittest.main()
