"""Protected domains added through the admin API: checked by the config
file's [domain] parser (errors name the field), stored, live at once for
SMTP and delivery (mail is accepted and routed to smtp-sink), kept across
a restart, removed again; the config file's domains stay the file's.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_domains.py
"""
import os
import json
import smtplib
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "delivery"))

from apiutil import AdminMoatd, Client, wait_for  # noqa: E402
from dlvutil import SmtpSink  # noqa: E402
from moat_harness import MOATD, OUT, Moatd  # noqa: E402

MOATCTL = os.environ.get("MOATCTL", os.path.join(os.path.dirname(MOATD), "moatctl"))

DOMAINS = """
[domain example.test]
recipients = any
route = maildir
"""


def rcpt_code(port, rcpt):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.remote.example", timeout=30)
    try:
        s.ehlo()
        s.mail("s@remote.example")
        return s.rcpt(rcpt)[0]
    finally:
        s.quit()


class TestDomains(unittest.TestCase):
    def setUp(self):
        self.sink = SmtpSink(dump_dir=os.path.join(OUT, "domains-sink-%d" % os.getpid()))
        self.sink.start()
        self.m = AdminMoatd(domains=DOMAINS, name="api-domains")
        self.m.start()
        self.a = self.m.admin()

    def tearDown(self):
        self.m.stop()
        self.sink.stop()

    def domains(self):
        r = self.a.get("/api/v1/domains")
        self.assertEqual(r.status, 200, r)
        return {d["name"]: d for d in r.json["items"]}

    def test_add_use_restart_remove(self):
        self.assertEqual(rcpt_code(self.m.port, "bob@new.test"), 550)
        r = self.a.put("/api/v1/domains/New.Test",
                       {"recipients": ["bob", "carol@new.test"],
                        "route": "smtp:[127.0.0.1]:%d" % self.sink.port, "tls": "none"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["name"], "new.test")
        self.assertEqual(r.json["source"], "api")
        d = wait_for(lambda: self.domains().get("new.test"), "new.test listed")
        self.assertEqual(d["source"], "api")
        self.assertEqual(sorted(d["recipients"]), ["bob", "carol"])
        self.assertEqual(self.domains()["example.test"]["source"], "config")
        wait_for(lambda: rcpt_code(self.m.port, "bob@new.test") == 250, "bob accepted")
        self.assertEqual(rcpt_code(self.m.port, "dave@new.test"), 550)
        s = smtplib.SMTP("127.0.0.1", self.m.port, local_hostname="mail.remote.example")
        s.sendmail("s@remote.example", ["bob@new.test"],
                   b"From: <s@remote.example>\r\nTo: <bob@new.test>\r\nSubject: routed\r\n"
                   b"Message-ID: <routed@remote.example>\r\n\r\nhi\r\n")
        s.quit()
        wait_for(lambda: [x for x in self.sink.dumps() if b"Subject: routed" in x[1]],
                 "delivered to the domain's route")
        audit = self.a.get("/api/v1/audit?target=new.test").json["items"]
        self.assertIn("domain.create", [e["action"] for e in audit])

        # replaced: any recipient now
        r = self.a.put("/api/v1/domains/new.test",
                       {"recipients": "any", "route": "smtp:[127.0.0.1]:%d" % self.sink.port,
                        "tls": "none", "quarantine_score": 4, "reject_score": 9})
        self.assertEqual(r.status, 200, r)
        wait_for(lambda: rcpt_code(self.m.port, "dave@new.test") == 250, "any accepted")

        # kept across a restart (the store), sessions end: log in again
        self.m.stop()
        Moatd.start(self.m)
        a = Client(self.m.admin_port)
        self.assertEqual(a.login("admin", self.m.password).status, 200)
        self.assertEqual(rcpt_code(self.m.port, "dave@new.test"), 250)
        d = {x["name"]: x for x in a.get("/api/v1/domains").json["items"]}["new.test"]
        self.assertEqual((d["quarantine_score"], d["reject_score"]), (4, 9))

        r = a.delete("/api/v1/domains/new.test")
        self.assertEqual(r.status, 200, r)
        wait_for(lambda: rcpt_code(self.m.port, "dave@new.test") == 550, "refused again")
        self.assertEqual(a.delete("/api/v1/domains/new.test").status, 404)

    def test_a_change_is_read_back_at_once(self):
        """The answer to a change comes after the policy rebuild: the next
        read sees it, without polling (the portal lists right after saving)."""
        for i in range(10):
            name = "rw%d.test" % i
            r = self.a.put("/api/v1/domains/" + name,
                           {"recipients": "any", "route": "smtp:[127.0.0.1]:%d" % (2000 + i)})
            self.assertEqual(r.status, 201, r)
            d = self.domains().get(name)
            self.assertIsNotNone(d, name)
            self.assertEqual(d["route"], "smtp:[127.0.0.1]:%d" % (2000 + i))
            r = self.a.delete("/api/v1/domains/" + name)
            self.assertEqual(r.status, 200, r)
            self.assertNotIn(name, self.domains())
        self.assertEqual(rcpt_code(self.m.port, "x@rw9.test"), 550)

    def test_refusals(self):
        a = self.a
        cases = [
            ("example.test", {"recipients": "any"}, 409, "name"),
            ("x.test", {"recipients": "any", "route": "smtp:nowhere:99999"}, 400, "route"),
            ("x.test", {"recipients": "any", "tls": "sometimes"}, 400, "tls"),
            ("x.test", {"recipients": "any", "quarantine_score": 9, "reject_score": 3}, 400,
             "reject_score"),
            ("x.test", {"recipients": "any", "relay_key": "short"}, 400, "relay_key"),
            ("x.test", {"recipients": []}, 400, "recipients"),
            ("x.test", {"recipients": ["a@other.test"]}, 400, "recipients"),
            ("x.test", {"recipients": ["a, b"]}, 400, "recipients"),
            ("x.test", {}, 400, "recipients"),
            ("x.test", {"recipients": "any", "route": "maildir\nrecipients = x"}, 400, "route"),
            ("x.test", {"recipients": "any", "colour": "red"}, 400, "colour"),
            ("x.test", {"recipients": "any", "quarantine_score": "high"}, 400,
             "quarantine_score"),
            ("not a domain", {"recipients": "any"}, 400, "name"),
            ("x.test", {"recipients": "any", "route": "smtp:[127.0.0.1]:%d" % self.m.port},
             400, "route"),  # a mail loop
        ]
        for name, body, want, field in cases:
            with self.subTest(name=name, body=body):
                r = a.put("/api/v1/domains/" + name.replace(" ", "%20"), body)
                self.assertEqual(r.status, want, r)
                self.assertEqual(r.json.get("field"), field, r)
        self.assertEqual(a.delete("/api/v1/domains/example.test").status, 409)
        # too big to keep as one [domain] section: refused, not cut
        many = ["u%04d" % i for i in range(1200)]
        r = a.put("/api/v1/domains/big.test", {"recipients": many, "route": "maildir"})
        self.assertEqual((r.status, r.json.get("field")), (400, "recipients"), r)
        r = a.put("/api/v1/domains/big.test", {"recipients": many[:700], "route": "maildir"})
        self.assertEqual((r.status, r.json.get("field")), (400, "recipients"), r)
        self.assertNotIn("x.test", self.domains())
        # scopes: a read token may look, not change
        ro = Client(self.m.admin_port, token=self.m.token(["read"]))
        self.assertEqual(ro.get("/api/v1/domains").status, 200)
        self.assertEqual(ro.put("/api/v1/domains/y.test", {"recipients": "any"}).status, 403)

    def test_moatctl(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
        env["MOAT_TOKEN"] = self.m.token(["read", "admin"])

        def ctl(*args, want=0):
            r = subprocess.run([MOATCTL, "-c", self.m.conf_path] + list(args),
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(r.returncode, want, (args, r.stdout, r.stderr))
            return r
        ctl("domains", "put", "cli.test", "--recipients", "any", "--route",
            "smtp:[127.0.0.1]:%d" % self.sink.port, "--tls", "none", "--reject-score", "12")
        d = wait_for(lambda: {x["name"]: x for x in json.loads(
            ctl("--json", "domains").stdout)["items"]}.get("cli.test"), "cli.test listed")
        self.assertEqual((d["source"], d["reject_score"]), ("api", 12))
        r = ctl("domains", "put", "cli.test", "--recipients", "any", "--route", "nowhere",
                want=1)
        self.assertIn("route", r.stderr)
        r = ctl("domains", "delete", "example.test", want=1)
        self.assertIn("409", r.stderr)
        ctl("domains", "delete", "cli.test")
        ctl("domains", "delete", "cli.test", want=1)
        ctl("domains", "put", "x.test", want=2)  # --recipients is required

    def test_reload_that_would_drop_a_stored_domain_is_refused(self):
        r = self.a.put("/api/v1/domains/kept.test", {"recipients": "any", "reject_score": 8})
        self.assertEqual(r.status, 201, r)
        wait_for(lambda: rcpt_code(self.m.port, "x@kept.test") == 250, "kept.test accepted")
        with open(self.m.conf_path) as f:
            text = f.read()
        with open(self.m.conf_path, "w") as f:
            f.write("scan_quarantine_score = 9\n" + text)
        self.m.signal(1)
        self.m.wait_log(r"event=reload status=failed reason=\"domain kept.test \(added "
                        r"through the API\) no longer passes")
        self.assertEqual(rcpt_code(self.m.port, "x@kept.test"), 250)


if __name__ == "__main__":
    unittest.main()
