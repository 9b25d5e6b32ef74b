"""The admin API's policy and housekeeping endpoints against the real moatd:
domains, allow/block lists, rules (checked by the one rule grammar),
settings, the policy's export and import, the audit log; and every error
class: 400 naming the field, 404, 405 with Allow, 413, malformed input
that must never produce a 500.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_endpoints.py
"""
import http.client
import json
import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd, Client  # noqa: E402

DOMAINS = """
[domain example.test]
recipients = any
route = maildir
quarantine_score = 4.5

[domain listed.test]
recipients = alice, bob
route = maildir

[rule seeded]
priority = 5
if = sender @seed.example
then = score 2
"""


class TestEndpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = AdminMoatd(conf="admin_request_max = 4k\n", domains=DOMAINS, name="api-ep")
        cls.m.start()
        cls.a = cls.m.admin()
        cls.t = Client(cls.m.admin_port, token=cls.m.token(["read", "operate", "admin"]))
        # before any test replaces them (the import test does)
        cls.first_rules = [x["name"] for x in cls.t.get("/api/v1/rules").json["items"]]

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def audited(self, action, target):
        items = self.t.get("/api/v1/audit?limit=500").json["items"]
        return [e for e in items if e["action"] == action and e["target"] == target]

    def test_domains(self):
        r = self.t.get("/api/v1/domains")
        self.assertEqual(r.status, 200, r)
        d = {x["name"]: x for x in r.json["items"]}
        self.assertEqual(set(d), {"example.test", "listed.test"})
        self.assertTrue(d["example.test"]["any_recipient"])
        self.assertEqual(d["example.test"]["quarantine_score"], 4.5)
        self.assertEqual(sorted(d["listed.test"]["recipients"]), ["alice", "bob"])
        self.assertEqual(d["listed.test"]["route"], "maildir")
        self.assertEqual(self.t.post("/api/v1/domains").status, 405)

    def test_lists(self):
        t = self.t
        e = {"scope": "example.test", "kind": "block", "pattern": "@spam.example"}
        r = t.post("/api/v1/lists", e)
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.json["added"])
        r = t.post("/api/v1/lists", e)
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json["added"])
        self.m.wait_log(r"event=policy_rebuild status=ok")
        got = t.get("/api/v1/lists?scope=example.test").json["items"]
        self.assertIn(("example.test", "block", "@spam.example"),
                      [(x["scope"], x["kind"], x["pattern"]) for x in got])
        self.assertEqual(t.get("/api/v1/lists?kind=allow&scope=example.test").json["items"], [])
        # delete through the query string as well as a body
        r = t.delete("/api/v1/lists?scope=example.test&kind=block&pattern=@spam.example")
        self.assertEqual(r.status, 200, r)
        r = t.delete("/api/v1/lists", e)
        self.assertEqual(r.status, 404, r)
        self.assertTrue(self.audited("list.add", "example.test block @spam.example"))
        self.assertTrue(self.audited("list.delete", "example.test block @spam.example"))
        for body, field in [({"kind": "allow", "pattern": "not an address"}, "pattern"),
                            ({"kind": "allow", "pattern": "a@[192.0.2.1]"}, "pattern"),
                            ({"kind": "allow", "pattern": ""}, "pattern"),
                            ({"kind": "allow"}, "pattern"),
                            ({"kind": "maybe", "pattern": "a@b.example"}, "kind"),
                            ({"scope": "other.example", "kind": "allow",
                              "pattern": "a@b.example"}, "scope"),
                            ({"scope": 7, "kind": "allow", "pattern": "a@b.example"}, "scope")]:
            with self.subTest(body=body):
                r = t.post("/api/v1/lists", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)
        self.assertEqual(t.get("/api/v1/lists?kind=x").json["field"], "kind")

    def test_rules(self):
        t = self.t
        rule = {"priority": 100, "enabled": True, "stop": False,
                "if": ["sender @bad.example"], "unless": ["header Subject ^ok"],
                "then": ["score 5", "set-header X-Flag: bad"]}
        r = t.put("/api/v1/rules/flag-bad", rule)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["name"], "flag-bad")
        r = t.get("/api/v1/rules/flag-bad")
        self.assertEqual(r.status, 200, r)
        for k, v in rule.items():
            self.assertEqual(r.json[k], v)
        rule["enabled"] = False
        self.assertEqual(t.put("/api/v1/rules/flag-bad", rule).status, 200)
        self.assertFalse(t.get("/api/v1/rules/flag-bad").json["enabled"])
        self.assertEqual(self.first_rules, ["seeded"])  # the config file's seed
        self.assertIn("flag-bad", [x["name"] for x in t.get("/api/v1/rules").json["items"]])
        # errors name the field: the rule grammar's message for a bad line
        cases = [
            ({"priority": 101, "if": ["sender-ip 300.1.2.3/8"], "then": ["score 1"]}, "if[0]"),
            ({"priority": 101, "if": ["sender @x.example", "colour red"], "then": ["score 1"]},
             "if[1]"),
            ({"priority": 101, "unless": ["header"], "then": ["score 1"]}, "unless[0]"),
            ({"priority": 101, "then": ["explode"]}, "then[0]"),
            ({"priority": 101, "if": ["sender @x.example"]}, "then"),
            ({"then": ["score 1"]}, "priority"),
            ({"priority": -1, "then": ["score 1"]}, "priority"),
            ({"priority": 101, "enabled": "yes", "then": ["score 1"]}, "enabled"),
            ({"priority": 101, "if": "sender @x.example", "then": ["score 1"]}, "if"),
            ({"priority": 101, "then": [5]}, "then[0]"),
        ]
        for body, field in cases:
            with self.subTest(field=field, body=body):
                r = t.put("/api/v1/rules/new-rule", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)
                self.assertTrue(r.json["error"])
        r = t.put("/api/v1/rules/bad%21name", {"priority": 101, "then": ["score 1"]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["field"], "name")
        r = t.put("/api/v1/rules/other", dict(rule, priority=100))
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["field"], "priority")
        self.assertEqual(t.delete("/api/v1/rules/flag-bad").status, 200)
        self.assertEqual(t.get("/api/v1/rules/flag-bad").status, 404)
        self.assertEqual(t.delete("/api/v1/rules/flag-bad").status, 404)
        for act in ("rule.create", "rule.update", "rule.delete"):
            self.assertTrue(self.audited(act, "flag-bad"), act)

    def test_settings(self):
        t = self.t
        r = t.put("/api/v1/settings/portal.banner", {"value": "Welcome"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(t.get("/api/v1/settings").json["settings"]["portal.banner"], "Welcome")
        self.assertEqual(t.delete("/api/v1/settings/portal.banner").status, 200)
        self.assertEqual(t.delete("/api/v1/settings/portal.banner").status, 404)
        self.assertEqual(t.put("/api/v1/settings/x", {"value": 1}).json["field"], "value")
        self.assertEqual(t.put("/api/v1/settings/a%20b", {"value": "1"}).json["field"], "key")
        self.assertTrue(self.audited("setting.set", "portal.banner"))

    def test_config_export_import(self):
        t = self.t
        policy = {
            "rules": [{"name": "imp-one", "priority": 7, "if": ["recipient @example.test"],
                       "then": ["score 1"]},
                      {"name": "imp-two", "priority": 8, "enabled": False, "stop": True,
                       "then": ["remove-header X-Junk"]}],
            "lists": [{"scope": "", "kind": "allow", "pattern": "boss@partner.example"},
                      {"scope": "listed.test", "kind": "block", "pattern": "@junk.example"}],
        }
        r = t.post("/api/v1/config/import", policy)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["rules"], r.json["lists"]), (2, 2))
        ex = t.get("/api/v1/config/export")
        self.assertEqual(ex.status, 200, ex)
        self.assertEqual([x["name"] for x in ex.json["rules"]], ["imp-one", "imp-two"])
        self.assertEqual(sorted((x["scope"], x["kind"], x["pattern"]) for x in ex.json["lists"]),
                         [("", "allow", "boss@partner.example"),
                          ("listed.test", "block", "@junk.example")])
        self.assertTrue(ex.json["rules"][1]["stop"])
        # what an export gives, an import takes back unchanged
        r = t.post("/api/v1/config/import", {"rules": ex.json["rules"], "lists": ex.json["lists"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(t.get("/api/v1/config/export").json["rules"], ex.json["rules"])
        # nothing is replaced when anything is wrong
        bad = [
            ({"rules": [policy["rules"][0], {"name": "x", "priority": 9, "then": ["nope"]}],
              "lists": []}, "rules[1].then[0]"),
            ({"rules": [policy["rules"][0], dict(policy["rules"][1], priority=7)],
              "lists": []}, "rules[1].priority"),
            ({"rules": [policy["rules"][0], dict(policy["rules"][1], name="imp-one")],
              "lists": []}, "rules[1].name"),
            ({"rules": [], "lists": [{"kind": "allow", "pattern": "nope"}]}, "lists[0].pattern"),
            ({"rules": [], "lists": [{"kind": "deny", "pattern": "a@b.example"}]},
             "lists[0].kind"),
            ({"lists": []}, "rules"),
            ({"rules": []}, "lists"),
        ]
        for body, field in bad:
            with self.subTest(field=field):
                r = t.post("/api/v1/config/import", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)
        self.assertEqual(t.get("/api/v1/config/export").json["rules"], ex.json["rules"])
        self.assertTrue([e for e in t.get("/api/v1/audit").json["items"]
                         if e["action"] == "config.import"])

    def test_audit_paging_and_filter(self):
        t = self.t
        for i in range(3):
            t.put("/api/v1/settings/audit-probe", {"value": str(i)})
        r = t.get("/api/v1/audit?target=audit-probe&limit=2")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["items"]), 2)
        self.assertIsNotNone(r.json["next"])
        r2 = t.get("/api/v1/audit?target=audit-probe&limit=2&before=%d" % r.json["next"])
        self.assertEqual(len(r2.json["items"]), 1)
        ids = [e["id"] for e in r.json["items"] + r2.json["items"]]
        self.assertEqual(ids, sorted(ids, reverse=True))
        e = r.json["items"][0]
        self.assertTrue(e["who"].startswith("token:"))
        self.assertEqual(e["addr"], "127.0.0.1")
        self.assertGreater(e["time_ms"], 0)
        self.assertEqual(t.get("/api/v1/audit?limit=x").json["field"], "limit")
        self.assertEqual(t.get("/api/v1/audit?before=-1").json["field"], "before")

    def test_404_405(self):
        t = self.t
        for path in ("/api", "/api/v1", "/api/v1/nothing", "/api/v2/health",
                     "/api/v1/quarantine/0123456789abcdef/explode",
                     "/api/v1/rules/a/b/c/d/e/f/g/h/i"):
            with self.subTest(path=path):
                r = t.get(path)
                self.assertEqual(r.status, 404, r)
                self.assertIn("error", r.json)
        # outside /api/ it is the portal's (none here): a text 404
        for path in ("/", "/metrics/x", "/nothing.html"):
            with self.subTest(path=path):
                r = t.get(path)
                self.assertEqual(r.status, 404, r)
                self.assertTrue(r.header("Content-Type").startswith("text/plain"), r.headers)
        for method, path, allow in [("DELETE", "/api/v1/quarantine", "GET"),
                                    ("PATCH", "/api/v1/queue", "GET"),
                                    ("GET", "/api/v1/auth/login", "POST"),
                                    ("POST", "/api/v1/rules/x", "GET, PUT, DELETE"),
                                    ("PUT", "/api/v1/lists", "GET, POST, DELETE")]:
            with self.subTest(method=method, path=path):
                r = t.req(method, path, raw=b"{}")
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header("Allow"), allow)
                self.assertIn("error", r.json)

    def test_bad_bodies(self):
        t = self.t
        for raw, why in [(b"{", "truncated"), (b"[]", "an array"), (b"\"x\"", "a string"),
                         (b"{\"a\":1,\"a\":2}", "duplicate key"), (b"\xff\xfe", "not UTF-8"),
                         (b"{\"scopes\": [\"read\"]} trailing", "trailing garbage")]:
            with self.subTest(why=why):
                r = t.req("POST", "/api/v1/tokens", raw=raw)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], "body")

    def test_413(self):
        r = self.t.req("POST", "/api/v1/config/import", raw=b"{\"x\": \"" + b"a" * 8192 + b"\"}")
        self.assertEqual(r.status, 413, r)
        # the daemon goes on
        self.assertEqual(self.t.get("/api/v1/health").status, 200)

    def test_garbage_never_500(self):
        """Odd paths, queries and headers: 4xx answers, never a 500 or a crash."""
        t = self.t
        paths = ["/api/v1/quarantine?%zz", "/api/v1/quarantine?sender=%00",
                 "/api/v1/quarantine/%00", "/api/v1/rules/%2F", "/api/v1/users/%00/password",
                 "/api/v1/quarantine?after=1.", "/api/v1/quarantine?after=.0123456789abcdef",
                 "/api/v1/quarantine?since=99999999999999999999999",
                 "/api/v1/tracking?id=" + "a" * 600, "/api/v1/queue/" + "f" * 600,
                 "/api/v1/audit?target=" + "t" * 300, "/api/v1/quarantine?rcpt=",
                 "//api//v1//health", "/api/v1/rules/" + "%41" * 200]
        for p in paths:
            with self.subTest(path=p[:60]):
                r = t.get(p)
                self.assertLess(r.status, 500, r)
        for headers in ({"Authorization": "Bearer " + "x" * 5000},
                        {"Authorization": "bearer"}, {"Cookie": "moat_session"},
                        {"Cookie": "a=b; moat_session=; c"}, {"X-CSRF-Token": ""}):
            with self.subTest(headers=str(headers)[:40]):
                r = Client(self.m.admin_port).get("/api/v1/quarantine", headers=headers)
                self.assertEqual(r.status, 401, r)
        # a raw request that is not HTTP at all
        s = socket.create_connection(("127.0.0.1", self.m.admin_port), timeout=10)
        s.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
        s.recv(4096)
        s.close()
        self.assertEqual(t.get("/api/v1/health").status, 200)

    def test_random_input_never_500(self):
        """Every described operation with seeded random bodies and path values:
        always an answer below 500 (or 503 for a queue the loop could not
        reach), and the daemon stays up."""
        import random
        import yaml
        from moat_harness import ROOT
        with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
            spec = yaml.safe_load(f)
        rnd = random.Random(5)
        names = ["scopes", "user", "password", "name", "priority", "if", "unless", "then",
                 "enabled", "stop", "rcpts", "rescan", "allow_sender", "block_sender",
                 "action", "ids", "scope", "kind", "pattern", "value", "rules", "lists"]

        def value(depth=0):
            kinds = ["s", "i", "f", "b", "n", "l", "o"] if depth < 2 else ["s", "i", "b", "n"]
            k = rnd.choice(kinds)
            if k == "s":
                return rnd.choice(["", "x", "@", "a@b.example", "\u0000", "é" * 3,
                                   "read", "release", "allow", "score 1", "0123456789abcdef",
                                   "x" * rnd.choice([1, 70, 300, 5000])])
            if k == "i":
                return rnd.choice([0, -1, 1, 2 ** 31, 2 ** 63 - 1, -2 ** 63])
            if k == "f":
                return rnd.choice([0.5, -1e308, 1e308])
            if k == "b":
                return rnd.choice([True, False])
            if k == "n":
                return None
            if k == "l":
                return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
            return {rnd.choice(names): value(depth + 1) for _ in range(rnd.randint(0, 4))}

        segs = ["0123456789abcdef", "x", "%00", "..", "a" * 100, "all", "retry", "%2F",
                "probe", "admin"]
        ops = [(m.upper(), p) for p, item in spec["paths"].items()
               for m in ("get", "post", "put", "delete") if m in item]
        for i in range(400):
            method, path = ops[i % len(ops)]
            url = re.sub(r"\{[^}]*\}", lambda _: rnd.choice(segs), path)
            body = {rnd.choice(names): value() for _ in range(rnd.randint(0, 5))}
            if path == "/api/v1/users/{name}" and method == "DELETE":
                continue  # the one user this daemon's admin session needs
            r = self.t.req(method, url, body=body if method != "GET" else None)
            self.assertTrue(r.status < 500 or r.status == 503, (method, url, body, r))
        self.assertEqual(self.t.get("/api/v1/health").status, 200)

    def test_json_everywhere(self):
        """Every error is JSON with an error message, whatever produced it."""
        c = http.client.HTTPConnection("127.0.0.1", self.m.admin_port, timeout=10)
        c.request("GET", "/api/v1/tokens")
        r = c.getresponse()
        self.assertEqual(r.status, 401)
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertIn("error", json.loads(r.read()))
        self.assertEqual(r.getheader("Cache-Control"), "no-store")
        c.close()


if __name__ == "__main__":
    unittest.main()
