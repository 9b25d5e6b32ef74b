"""src/m365's client (m365_http.c, m365_auth.c, m365_exo.c) against the
Microsoft 365 emulator (emulator.py, in-process), driven through
build/tests/m365/m365_probe ($M365_PROBE to test another build).

The emulator serves HTTPS with a certificate of a throwaway CA made here
with the openssl command, which the probe trusts by --ca-file only; one
class runs it over plain http://127.0.0.1. The device-code interval is 1 s
so sign-ins are quick. Every run checks that no access token and no device
code the emulator issued appears in the probe's output.

    /usr/bin/python3 -m unittest discover -s tests/m365 -v
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulator import EXO_APP_NAME, EXO_CLIENT_ID, EXO_SCOPE, Emulator  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.environ.get("M365_PROBE", os.path.join(ROOT, "build", "tests", "m365", "m365_probe"))
DOMAIN = "contoso.onmicrosoft.com"
ADMIN = "admin@" + DOMAIN
READER = "reader@" + DOMAIN
NOAPI = "noapi@" + DOMAIN
RUN_LIMIT = 60  # seconds one probe run may take before it is killed

CERTS = {}  # "ca", "cert", "key", "other_cert", "other_key": paths


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def _leaf(d, name, san):
    """A server certificate signed by the test CA -> (cert, key)."""
    key, csr, cert, ext = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem", ".ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=" + name, "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", CERTS["ca"], "-CAkey", CERTS["ca_key"],
             "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert)
    return cert, key


def setUpModule():
    if not os.access(PROBE, os.X_OK):
        raise RuntimeError("no probe at %s (build first)" % PROBE)
    if not shutil.which("openssl"):
        raise RuntimeError("the openssl command is needed for the test CA")
    d = tempfile.mkdtemp(prefix="m365-client-")
    CERTS["dir"] = d
    CERTS["ca"], CERTS["ca_key"] = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "1", "-subj", "/CN=moat test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", CERTS["ca_key"], "-out", CERTS["ca"])
    CERTS["cert"], CERTS["key"] = _leaf(d, "127.0.0.1", "IP:127.0.0.1")
    CERTS["other_cert"], CERTS["other_key"] = _leaf(d, "other.example", "DNS:other.example")


def tearDownModule():
    if "dir" in CERTS:
        shutil.rmtree(CERTS["dir"], ignore_errors=True)


class Base(unittest.TestCase):
    tls = True         # serve HTTPS with the test CA's certificate
    emulator = {}      # more Emulator() arguments

    def setUp(self):
        tls = (CERTS["cert"], CERTS["key"]) if self.tls else None
        self.emu = Emulator(tls=tls, interval=1, **self.emulator).start()
        self.addCleanup(self.emu.stop)
        self.tmp = tempfile.mkdtemp(prefix="m365-run-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def probe(self, cmdlets=None, account=ADMIN, decline=False, args=(), authority=None,
              exo=None, client_id=EXO_CLIENT_ID, ca_file=True):
        """Run the probe; play the admin when the code shows (approve as
        `account`, decline, or nothing when account is None).
        -> (exit status, [events])."""
        cmd = [PROBE, "signin", "--authority", authority or self.emu.url, "--tenant",
               "organizations", "--client-id", client_id, "--exo", exo or self.emu.exo_url,
               "--timeout", "10"]
        if self.tls and ca_file:
            cmd += ["--ca-file", CERTS["ca"]]
        if cmdlets is not None:
            path = os.path.join(self.tmp, "cmdlets.json")
            with open(path, "w") as f:
                json.dump([{"cmdlet": c, "parameters": p or {}} for c, p in cmdlets], f)
            cmd += ["--cmdlets", path]
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        killer = threading.Timer(RUN_LIMIT, p.kill)
        killer.start()
        try:
            first = p.stdout.readline()
            events = [json.loads(first)] if first else []
            if events and events[0]["event"] == "code":
                if decline:
                    self.emu.decline(events[0]["user_code"])
                elif account:
                    self.emu.approve(events[0]["user_code"], account)
            out, err = p.communicate()
        finally:
            killer.cancel()
        events += [json.loads(line) for line in out.splitlines()]
        self.assert_no_secret(first + out + err)
        return p.returncode, events

    def assert_no_secret(self, text):
        for tok in self.emu.tokens:
            self.assertNotIn(tok, text, "the probe printed an access token")
        for dc in self.emu.devices:
            self.assertNotIn(dc, text, "the probe printed a device code")

    def signed_in(self, cmdlets, **kw):
        """Sign in as ADMIN, run cmdlets -> {cmdlet: its event} (later ones win)."""
        rc, events = self.probe(cmdlets, **kw)
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[:2], ["code", "token"], events)
        self.assertEqual(len(events), 2 + len(cmdlets), events)
        return {e["cmdlet"]: e for e in events[2:]}

    def assert_error(self, ev, kind, explain=(), action=()):
        self.assertEqual(ev["event"], "error", ev)
        self.assertEqual(ev["kind"], kind, ev)
        for words in explain:
            self.assertIn(words, ev["explain"])
        for words in action:
            self.assertIn(words, ev["action"])
        self.assertTrue(ev["explain"] and ev["action"], ev)


class TestSignIn(Base):
    def test_code_then_token(self):
        rc, events = self.probe()
        self.assertEqual(rc, 0, events)
        code, token = events
        d = self.emu.device(code["user_code"])
        self.assertIsNotNone(d)
        self.assertEqual(code["verification_uri"], self.emu.url + "/devicelogin")
        self.assertEqual(code["interval"], 1)
        self.assertIn(code["expires_in"], range(895, 901))
        self.assertEqual((token["event"], token["upn"], token["tenant_id"]),
                         ("token", ADMIN, self.emu.tenant.tenant_id))
        self.assertIn(token["expires_in"], range(3590, 3600))
        self.assertNotIn("access_token", token)
        # what was asked: the form fields of M365.md 1
        dc = [r for r in self.emu.requests if r["kind"] == "devicecode"]
        self.assertEqual(dc[0]["form"], {"client_id": EXO_CLIENT_ID,
                                         "scope": EXO_SCOPE + " openid profile"})
        polls = [r for r in self.emu.requests if r["kind"] == "token"]
        self.assertEqual(polls[-1]["form"]["grant_type"],
                         "urn:ietf:params:oauth:grant-type:device_code")
        self.assertEqual(polls[-1]["status"], 200)

    def test_other_account(self):
        rc, events = self.probe(account=READER)
        self.assertEqual(events[1]["upn"], READER)

    def test_failures(self):
        cases = [  # (switches, admin does, kind, aadsts, explain words, action words)
            ({"code_expired": True}, "approve", "expired", 70019,
             ["not used within its lifetime"], ["Start again"]),
            ({"declined": True}, "nothing", "declined", 0, ["Decline"], ["Start again"]),
            ({}, "decline", "declined", 0, ["Decline"], ["Start again", "Continue"]),
            ({"conditional_access": True}, "approve", "conditional_access", 53003,
             ["Conditional Access", "Microsoft recommends", "block the device code"],
             ["exception", "excluding the admin account", "device code flow", "start again"]),
            ({"mfa": True}, "approve", "mfa", 50076, ["multi-factor"],
             ["complete the MFA", "compliant", "exception"]),
            ({"consent": True}, "approve", "consent", 65001, ["consent"],
             ["Global Administrator", EXO_APP_NAME, EXO_CLIENT_ID, "m365_client_id"]),
        ]
        for switches, does, kind, aadsts, explain, action in cases:
            with self.subTest(kind=kind, switches=switches, does=does):
                self.emu.set(code_expired=False, declined=False, conditional_access=False,
                             mfa=False, consent=False)
                self.emu.set(**switches)
                rc, events = self.probe(account=ADMIN if does == "approve" else None,
                                        decline=does == "decline")
                self.assertEqual(rc, 1, events)
                self.assertEqual([e["event"] for e in events], ["code", "error"])
                ev = events[1]
                self.assert_error(ev, kind, explain, action)
                self.assertEqual(ev["aadsts"], aadsts)
                self.assertEqual(ev["http_status"], 400)
                # Microsoft's first line only: no trace lines
                for noise in ("Trace ID", "Correlation ID", "Timestamp", "\n"):
                    self.assertNotIn(noise, ev["text"])
                if aadsts:
                    self.assertTrue(ev["text"].startswith("AADSTS%d: " % aadsts), ev["text"])
                if kind in ("conditional_access", "mfa", "consent"):
                    self.assertIn(ev["text"], ev["explain"])  # Microsoft's words, quoted

    def test_code_runs_out(self):
        """Nobody signs in: the code's lifetime ends the wait."""
        self.emu.set(expires_in=2)
        rc, events = self.probe(account=None)
        self.assertEqual(rc, 1)
        self.assert_error(events[1], "expired", ["lifetime"], ["new code"])

    def test_slow_down(self):
        """RFC 8628 3.5: after slow_down the client waits 5 s more, every time."""
        self.emu.set(slow_down=1)
        rc, events = self.probe()
        self.assertEqual(rc, 0, events)
        polls = [r for r in self.emu.requests if r["kind"] == "token"]
        self.assertEqual([p["response"].get("error", "token") for p in polls],
                         ["slow_down", "token"])
        code = polls[0]["form"]["device_code"]
        self.assertEqual(self.emu.devices[code]["interval"], 6)
        # the emulator recorded the polls 1 + 5 s apart at least (its own
        # check would have answered slow_down again otherwise)
        self.assertGreaterEqual(polls[1]["time"] - polls[0]["time"], 6)

    def test_bad_client_id(self):
        other = str(uuid.uuid4())
        rc, events = self.probe(client_id=other)
        self.assertEqual(rc, 1)
        self.assertEqual(len(events), 1, events)
        ev = events[0]
        self.assert_error(ev, "signin", ["Microsoft refused the sign-in", other], ["AADSTS"])
        self.assertEqual((ev["aadsts"], ev["code"]), (700016, "unauthorized_client"))
        self.assertTrue(ev["text"].startswith("AADSTS700016: Application with identifier"))
        self.assertNotIn("Trace ID", ev["text"])


class TestTransport(Base):
    def test_untrusted_certificate(self):
        """Without --ca-file the system's CAs do not trust the test CA: refused."""
        rc, events = self.probe(ca_file=False)
        self.assertEqual(rc, 1)
        self.assert_error(events[0], "network", ["could not talk to Microsoft"],
                          ["HTTPS", "proxy", "CA"])
        self.assertIn("certificate", events[0]["text"])
        self.assertEqual([r for r in self.emu.requests if r["kind"] == "devicecode"], [])

    def test_wrong_name(self):
        """A certificate of the test CA for another name: refused too."""
        with Emulator(tls=(CERTS["other_cert"], CERTS["other_key"]), interval=1) as other:
            rc, events = self.probe(authority=other.url)
            self.assertEqual(rc, 1)
            self.assert_error(events[0], "network")
            self.assertEqual(other.requests, [])

    def test_plain_http_refused(self):
        cases = [("http://login.microsoftonline.com", "refusing http://login.microsoftonline.com"),
                 ("http://10.0.0.1:8365", "refusing http://10.0.0.1"),
                 ("http://127.0.0.2", "refusing http://127.0.0.2"),
                 ("ftp://127.0.0.1", "refusing ftp://127.0.0.1"),
                 ("login.microsoftonline.com", "not a URL")]
        for url, text in cases:
            with self.subTest(url=url):
                rc, events = self.probe(authority=url)
                self.assertEqual(rc, 1)
                self.assert_error(events[0], "network", [], ["HTTPS"])
                self.assertIn(text, events[0]["text"])
        # an Exchange URL too: signed in, the cmdlet is refused before any request
        out = self.signed_in([("Get-AcceptedDomain", None)], exo="http://outlook.office365.com")
        ev = out["Get-AcceptedDomain"]
        self.assert_error(ev, "network")
        self.assertIn("refusing http://outlook.office365.com", ev["text"])
        self.assertEqual(self.emu.calls(), [])


class TestPlainLoopback(Base):
    tls = False

    def test_sign_in_and_call(self):
        self.assertTrue(self.emu.url.startswith("http://127.0.0.1:"))
        out = self.signed_in([("Get-AcceptedDomain", None)])
        ev = out["Get-AcceptedDomain"]
        self.assertTrue(ev["ok"])
        self.assertEqual({v["Name"] for v in ev["values"]}, {DOMAIN, "contoso.com"})


class TestExchange(Base):
    def test_request_headers(self):
        self.signed_in([("Get-AcceptedDomain", None), ("Get-TransportRule", {"Identity": None})])
        calls = self.emu.calls()
        self.assertEqual(len(calls), 2)
        ids = set()
        for r in calls:
            h = r["headers"]
            self.assertTrue(h["authorization"].startswith("Bearer "))
            self.assertIn(h["authorization"][7:], self.emu.tokens)
            self.assertEqual(h["content-type"], "application/json")
            self.assertEqual(h["accept"], "application/json")
            self.assertEqual(h["x-anchormailbox"], "UPN:" + ADMIN)
            self.assertEqual(h["prefer"], "odata.maxpagesize=1000")
            rid = uuid.UUID(h["client-request-id"])
            self.assertEqual((rid.version, str(rid)), (4, h["client-request-id"]))
            ids.add(rid)
            self.assertEqual(r["path"], "/adminapi/beta/%s/InvokeCommand" % self.emu.tenant.tenant_id)
        self.assertEqual(len(ids), 2, "a fresh client-request-id per request")
        self.assertEqual(json.loads(calls[0]["raw"]),
                         {"CmdletInput": {"CmdletName": "Get-AcceptedDomain", "Parameters": {}}})
        self.assertEqual(json.loads(calls[1]["raw"]),
                         {"CmdletInput": {"CmdletName": "Get-TransportRule",
                                          "Parameters": {"Identity": None}}})

    def test_create_and_warnings(self):
        rule = {"Name": "moat test", "SetSCL": -1, "SenderIpRanges": ["192.0.2.1", "198.51.100.0/24"],
                "StopRuleProcessing": True}
        out = self.signed_in([("New-TransportRule", rule),
                              ("Set-TransportRule", {"Identity": "moat test", "SetSCL": -1}),
                              ("New-TransportRule", dict(rule, Name="bad", SetSCL=12))])
        self.assertEqual(out["Set-TransportRule"]["warnings"],
                         ["The command completed successfully but no settings of 'moat test' "
                          "have been modified."])
        obj = self.emu.tenant.find("TransportRule", "moat test")
        self.assertEqual(obj["SenderIpRanges"], ["192.0.2.1", "198.51.100.0/24"])
        self.assertIs(obj["StopRuleProcessing"], True)
        ev = out["New-TransportRule"]
        self.assert_error(ev, "cmdlet", ["New-TransportRule failed", "SetSCL must be -1"])
        self.assertEqual((ev["http_status"], ev["errid"]), (400, "Ex0E7A2F"))
        self.assertEqual(ev["extype"], "Microsoft.Exchange.Data.DataValidationException")

    def test_paging(self):
        emu = self.emu
        emu.set(page_size=2)
        for i in range(5):
            emu.tenant.add("TransportRule", "rule %d" % i)
        out = self.signed_in([("Get-TransportRule", None)])
        ev = out["Get-TransportRule"]
        self.assertEqual([v["Name"] for v in ev["values"]], ["rule %d" % i for i in range(5)])
        self.assertEqual((ev["calls"], ev["throttled"]), (3, 0))
        calls = emu.calls("Get-TransportRule")
        self.assertEqual(len(calls), 3)
        self.assertEqual(calls[0]["query"], "")
        for r in calls[1:]:
            self.assertIn("%24skiptoken=", r["query"])
            self.assertEqual(r["raw"], calls[0]["raw"], "the same body to every page")
            self.assertEqual(r["status"], 200)

    def test_throttle_then_success(self):
        self.emu.set(throttle=2, throttle_reset=1)
        ev = self.signed_in([("Get-AcceptedDomain", None)])["Get-AcceptedDomain"]
        self.assertTrue(ev["ok"], ev)
        self.assertEqual((ev["calls"], ev["throttled"]), (3, 2))
        self.assertEqual([r["status"] for r in self.emu.calls()], [429, 429, 200])

    def test_throttle_too_long(self):
        # a 30 s Rate-Limit-Reset capped at 100 ms per wait; 2 retries allowed
        self.emu.set(throttle=10, throttle_reset=30)
        ev = self.signed_in([("Get-AcceptedDomain", None)],
                            args=["--retries", "2", "--wait-max-ms", "100"])["Get-AcceptedDomain"]
        self.assert_error(ev, "throttled", ["limiting"], ["Wait a few minutes"])
        self.assertEqual((ev["http_status"], ev["calls"], ev["throttled"]), (429, 3, 3))

    def test_role_missing(self):
        self.emu.set(role_missing=True)
        ev = self.signed_in([("Get-TransportRule", None)])["Get-TransportRule"]
        self.assert_error(ev, "not_allowed",
                          ["The account %s is not allowed to run Get-TransportRule" % ADMIN,
                           "Exchange Administrator or Global Administrator",
                           "Security Administrator", "Set-User -EXOModuleEnabled $false"],
                          ["role", "-EXOModuleEnabled $true"])
        self.assertEqual(ev["http_status"], 401)
        self.assertEqual(ev["text"], "User is not allowed to call Get-TransportRule")

    def test_api_access_disabled(self):
        out = self.signed_in([("Get-AcceptedDomain", None)], account=NOAPI)
        self.assert_error(out["Get-AcceptedDomain"], "not_allowed",
                          ["The account %s is not allowed" % NOAPI, "EXOModuleEnabled"])

    def test_unavailable(self):
        self.emu.set(unavailable=["Get-TransportRule"])
        ev = self.signed_in([("Get-TransportRule", None)])["Get-TransportRule"]
        self.assert_error(ev, "unavailable",
                          ["Get-TransportRule is not available to this tenant or account"])
        self.assertEqual(ev["http_status"], 403)

    def test_without_defender(self):
        self.emu.set(defender=False)
        out = self.signed_in([("Get-AcceptedDomain", None), ("Get-SafeLinksPolicy", None),
                              ("Get-SafeAttachmentPolicy", None)])
        self.assertTrue(out["Get-AcceptedDomain"]["ok"])
        for c in ("Get-SafeLinksPolicy", "Get-SafeAttachmentPolicy"):
            self.assert_error(out[c], "unavailable", [c, "Defender for Office 365 is not licensed"])

    def test_not_found(self):
        ev = self.signed_in([("Remove-TransportRule", {"Identity": "no such rule"})])[
            "Remove-TransportRule"]
        self.assert_error(ev, "not_found", ["Remove-TransportRule did not find"])
        self.assertEqual((ev["http_status"], ev["code"], ev["errid"]), (404, "NotFound", "Ex6F9304"))
        self.assertEqual(ev["extype"],
                         "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException")
        self.assertTrue(ev["text"].startswith(
            "The operation couldn't be performed because object 'no such rule' couldn't be found"))

    def test_customization_needed(self):
        self.emu.set(customization_needed=True)
        rc, events = self.probe([("New-HostedContentFilterPolicy", {"Name": "moat"}),
                                 ("Enable-OrganizationCustomization", None),
                                 ("New-HostedContentFilterPolicy", {"Name": "moat"})])
        first, enable, again = events[2:]
        self.assert_error(first, "customization", ["never been customised"],
                          ["Enable-OrganizationCustomization", "up to an hour", "again"])
        self.assertEqual(first["errid"], "Ex5D8E17")
        self.assertTrue(enable["ok"] and again["ok"], events)

    def test_sign_in_expired(self):
        """A token Exchange no longer accepts: 401 without a body."""
        self.emu.set(token_lifetime=0)
        ev = self.signed_in([("Get-AcceptedDomain", None)])["Get-AcceptedDomain"]
        self.assert_error(ev, "token", ["expired"], ["sign in"])
        self.assertEqual(ev["http_status"], 401)


if __name__ == "__main__":
    unittest.main()
