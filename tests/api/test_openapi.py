"""docs/openapi.yaml against the implementation: every path and method the
description names is served (neither 405 nor a 404 for an unknown route),
every route in src/api/api.c's table is described, and the answers of a
sample of endpoints (with real data: one delivered and one held message)
validate against the described schemas.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_openapi.py
"""
import os
import re
import sys
import unittest

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd, Client  # noqa: E402
from moat_harness import ROOT  # noqa: E402
from test_mail import DOMAINS, send, wait_for  # noqa: E402
from moat_harness import free_port  # noqa: E402
from unbound_server import Unbound  # noqa: E402

SPEC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
ROUTES_C = os.path.join(ROOT, "src", "api", "api.c")
METHODS = ("get", "post", "put", "delete", "patch")
PARAM_VALUES = {"id": "0123456789abcdef", "name": "probe", "key": "probe", "action": "retry",
                "job": "0123456789abcdef"}


def load_spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def shape(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


def resolve(spec, node):
    """Inline every $ref and turn OpenAPI 3.0's nullable into JSON Schema."""
    if isinstance(node, list):
        return [resolve(spec, x) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return resolve(spec, target)
    out = {k: resolve(spec, v) for k, v in node.items()
           if k not in ("nullable", "description", "example", "default")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class TestOpenAPI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spec = load_spec()
        cls.dns = Unbound([("probe.example.", "A", "192.0.2.1")], zones=("example.",),
                          probe="probe.example.")
        cls.m = AdminMoatd(conf="dns_resolver = %s\n" % cls.dns.upstream,
                           domains=DOMAINS % free_port(), name="api-openapi")
        cls.m.start()
        cls.a = cls.m.admin()
        cls.t = Client(cls.m.admin_port, token=cls.m.token(["read", "operate", "admin"]))

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.dns.stop()

    def operations(self):
        for path, item in self.spec["paths"].items():
            for method in METHODS:
                if method in item:
                    yield method.upper(), path, item[method]

    def test_spec_is_openapi_3(self):
        self.assertTrue(self.spec["openapi"].startswith("3.0"))
        for method, path, op in self.operations():
            with self.subTest(op="%s %s" % (method, path)):
                self.assertIn("responses", op)
                self.assertTrue(op.get("summary"))

    def test_routes_match_the_description(self):
        with open(ROUTES_C) as f:
            served = set((m, shape(p)) for m, p in
                         re.findall(r'\{M_(GET|POST|PUT|DELETE|PATCH), "([^"]+)"', f.read()))
        described = set((m, shape(p)) for m, p, _ in self.operations())
        self.assertTrue(served)
        self.assertEqual(served - described, set(), "served but not described")
        self.assertEqual(described - served, set(), "described but not served")

    def test_every_described_operation_is_served(self):
        for method, path, op in self.operations():
            url = path
            for name, value in PARAM_VALUES.items():
                url = url.replace("{%s}" % name, value)
            with self.subTest(op="%s %s" % (method, path)):
                self.assertNotIn("{", url)
                r = self.t.req(method, url, body=None if method == "GET" else {})
                self.assertNotEqual(r.status, 405, r)
                self.assertLess(r.status, 500, r)
                if r.status == 404:
                    # a resource that does not exist names its field; an unknown route does not
                    self.assertIn("field", r.json, r)
                self.assertIn(str(r.status), op["responses"],
                              "%s %s answered %d, not described" % (method, path, r.status))

    def check(self, method, path, r):
        """r's body validates against the schema described for its status."""
        op = self.spec["paths"][path][method.lower()]
        self.assertIn(str(r.status), op["responses"], r)
        resp = resolve(self.spec, op["responses"][str(r.status)])
        schema = resp["content"]["application/json"]["schema"]
        jsonschema.validate(r.json, schema)

    def test_sample_responses_validate(self):
        a, t = self.a, self.t
        send(self.m.port, "oa@remote.example", ["o1@example.test"], "plain one")
        send(self.m.port, "ob@remote.example", ["o1@example.test"], "hold one")
        self.m.wait_maildir("o1@example.test")
        held = wait_for(lambda: t.get("/api/v1/quarantine?state=held").json["items"], "held")
        qid = held[0]["id"]
        tracked = wait_for(lambda: t.get("/api/v1/tracking?sender=oa@remote.example")
                           .json["items"], "tracked")
        t.put("/api/v1/rules/sample", {"priority": 50, "then": ["score 1"]})
        t.post("/api/v1/lists", {"kind": "allow", "pattern": "@sample.example"})
        t.put("/api/v1/settings/sample", {"value": "x"})
        samples = [
            (t, "GET", "/api/v1/health", "/api/v1/health", None),
            (a, "GET", "/api/v1/auth/session", "/api/v1/auth/session", None),
            (t, "GET", "/api/v1/auth/session", "/api/v1/auth/session", None),
            (t, "GET", "/api/v1/quarantine", "/api/v1/quarantine", None),
            (t, "GET", "/api/v1/quarantine/" + qid, "/api/v1/quarantine/{id}", None),
            (t, "GET", "/api/v1/quarantine/%s/preview" % qid, "/api/v1/quarantine/{id}/preview",
             None),
            (t, "GET", "/api/v1/quarantine/ffffffffffffffff", "/api/v1/quarantine/{id}", None),
            (t, "GET", "/api/v1/quarantine?limit=x", "/api/v1/quarantine", None),
            (t, "GET", "/api/v1/tracking", "/api/v1/tracking", None),
            (t, "GET", "/api/v1/tracking/" + tracked[0]["id"], "/api/v1/tracking/{id}", None),
            (t, "GET", "/api/v1/domains", "/api/v1/domains", None),
            (t, "GET", "/api/v1/lists", "/api/v1/lists", None),
            (t, "POST", "/api/v1/lists", "/api/v1/lists",
             {"kind": "block", "pattern": "x@sample.example"}),
            (t, "GET", "/api/v1/rules", "/api/v1/rules", None),
            (t, "GET", "/api/v1/rules/sample", "/api/v1/rules/{name}", None),
            (t, "PUT", "/api/v1/rules/sample", "/api/v1/rules/{name}",
             {"priority": 51, "then": ["quarantine"]}),
            (t, "PUT", "/api/v1/rules/sample", "/api/v1/rules/{name}", {"priority": 51}),
            (t, "GET", "/api/v1/queue", "/api/v1/queue", None),
            (t, "GET", "/api/v1/stats", "/api/v1/stats", None),
            (t, "GET", "/api/v1/symbols", "/api/v1/symbols", None),
            (t, "GET", "/api/v1/tokens", "/api/v1/tokens", None),
            (t, "POST", "/api/v1/tokens", "/api/v1/tokens", {"scopes": ["read"]}),
            (t, "GET", "/api/v1/users", "/api/v1/users", None),
            (t, "POST", "/api/v1/users", "/api/v1/users",
             {"name": "sampler", "password": "a sample password"}),
            (t, "GET", "/api/v1/audit", "/api/v1/audit", None),
            (t, "GET", "/api/v1/settings", "/api/v1/settings", None),
            (t, "PUT", "/api/v1/settings/sample", "/api/v1/settings/{key}", {"value": "y"}),
            (t, "GET", "/api/v1/config/export", "/api/v1/config/export", None),
            (t, "POST", "/api/v1/quarantine/%s/release" % qid, "/api/v1/quarantine/{id}/release",
             {}),
            (t, "POST", "/api/v1/quarantine/%s/release" % qid, "/api/v1/quarantine/{id}/release",
             {}),
            (t, "POST", "/api/v1/quarantine/%s/delete" % qid, "/api/v1/quarantine/{id}/delete",
             {}),
            (t, "POST", "/api/v1/quarantine/batch", "/api/v1/quarantine/batch",
             {"action": "delete", "ids": [qid, "ffffffffffffffff"]}),
            (Client(self.m.admin_port), "GET", "/api/v1/tokens", "/api/v1/tokens", None),
            (Client(self.m.admin_port, token=self.m.token(["read"])), "GET", "/api/v1/tokens",
             "/api/v1/tokens", None),
        ]
        for c, method, url, path, body in samples:
            with self.subTest(op="%s %s" % (method, url)):
                r = c.req(method, url, body=body)
                self.check(method, path, r)
        # the export validates, and is what the import takes
        ex = t.get("/api/v1/config/export").json
        r = t.post("/api/v1/config/import", {"rules": ex["rules"], "lists": ex["lists"]})
        self.check("POST", "/api/v1/config/import", r)
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main()
