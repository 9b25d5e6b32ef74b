"""Admin API authentication against the real moatd: the first run's one-time
password, sessions (cookie attributes, CSRF, idle and absolute expiry,
logout), API tokens and their scopes, login throttling, HTTPS, and the
audit entries all of these leave.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_auth.py
"""
import os
import re
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd, Client  # noqa: E402
from moat_harness import OUT, make_cert  # noqa: E402


def audit(c, action, target=None):
    r = c.get("/api/v1/audit?limit=500")
    assert r.status == 200, r
    return [e for e in r.json["items"]
            if e["action"] == action and (target is None or e["target"] == target)]


class TestAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = AdminMoatd(name="api-auth")
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def test_first_run_password_shown_once(self):
        log = self.m.log()
        self.assertEqual(len(re.findall(r"event=first_run user=admin", log)), 1)
        self.assertIn("shown once", log)
        self.assertRegex(log, r"moatd: first run: admin user 'admin', password \S+")
        # at least 128 random bits: 24 characters of 64 symbols
        self.assertGreaterEqual(len(self.m.password), 22)

    def test_health_needs_no_credentials(self):
        r = self.m.client().get("/api/v1/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ok")
        self.assertEqual(r.json["store"], "ok")
        self.assertIn("version", r.json)

    def test_401_without_or_with_bad_credentials(self):
        c = self.m.client()
        cases = [
            ({}, "none"),
            ({"Authorization": "Basic YWRtaW46eA=="}, "basic"),
            ({"Authorization": "Bearer nonsense"}, "not a moat token"),
            ({"Authorization": "Bearer moat_0123456789abcdef_" + "A" * 43}, "unknown token"),
            ({"Cookie": "moat_session=" + "x" * 43}, "unknown session"),
        ]
        for headers, what in cases:
            with self.subTest(what):
                r = c.get("/api/v1/quarantine", headers=headers)
                self.assertEqual(r.status, 401, r)
                self.assertIn("error", r.json)
                self.assertTrue(r.header("WWW-Authenticate").startswith("Bearer"))

    def test_login_cookie_attributes_and_session(self):
        c = self.m.client()
        r = c.login("admin", self.m.password)
        self.assertEqual(r.status, 200, r)
        cookie = r.header("Set-Cookie")
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
            self.assertIn(attr, cookie)
        self.assertNotIn("Secure", cookie)  # plain HTTP on loopback
        self.assertGreaterEqual(len(c.cookie), 43)  # 256 random bits
        self.assertGreaterEqual(len(r.json["csrf_token"]), 43)
        s = c.get("/api/v1/auth/session")
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json["user"], "admin")
        self.assertEqual(s.json["csrf_token"], c.csrf)
        self.assertEqual(sorted(s.json["scopes"]), ["admin", "operate", "read"])
        self.assertTrue(audit(c, "auth.login", "admin"))

    def test_wrong_password_is_401_and_audited(self):
        c = self.m.client()
        r = c.login("admin", "not the password")
        self.assertEqual(r.status, 401, r)
        r = c.login("nobody-at-all", "not the password")
        self.assertEqual(r.status, 401, r)
        a = self.m.admin()
        self.assertTrue(audit(a, "auth.login_failed", "admin"))
        self.assertTrue(audit(a, "auth.login_failed", "nobody-at-all"))

    def test_login_bad_requests(self):
        c = self.m.client()
        for body, field in [({}, "user"), ({"user": "admin"}, "password"),
                            ({"user": 5, "password": "x"}, "user"),
                            ({"user": "admin", "password": ["x"]}, "password")]:
            with self.subTest(body=body):
                r = c.post("/api/v1/auth/login", body, auth=False)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)

    def test_csrf_on_every_change(self):
        c = self.m.admin()
        body = {"scope": "", "kind": "allow", "pattern": "csrf@partner.example"}
        r = c.post("/api/v1/lists", body, csrf=False)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["field"], "X-CSRF-Token")
        r = c.post("/api/v1/lists", body, csrf=False, headers={"X-CSRF-Token": "x" * 43})
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["field"], "X-CSRF-Token")
        # another session's token is wrong too
        other = self.m.admin()
        r = c.post("/api/v1/lists", body, csrf=False, headers={"X-CSRF-Token": other.csrf})
        self.assertEqual(r.status, 403, r)
        for method in ("PUT", "DELETE"):
            r = c.req(method, "/api/v1/settings/csrf-probe", body={"value": "1"}, csrf=False)
            self.assertEqual(r.status, 403, r)
        r = c.post("/api/v1/lists", body)
        self.assertEqual(r.status, 201, r)
        # reads need none
        self.assertEqual(c.get("/api/v1/lists", csrf=False).status, 200)
        # a token needs none
        t = Client(self.m.admin_port, token=self.m.token(["operate"]))
        r = t.delete("/api/v1/lists", body)
        self.assertEqual(r.status, 200, r)

    def test_logout_invalidates(self):
        c = self.m.admin()
        cookie = c.cookie
        r = c.post("/api/v1/auth/logout")
        self.assertEqual(r.status, 200, r)
        self.assertIn("Max-Age=0", r.header("Set-Cookie"))
        again = Client(self.m.admin_port)
        again.cookie = cookie
        r = again.get("/api/v1/auth/session")
        self.assertEqual(r.status, 401, r)
        self.assertTrue(audit(self.m.admin(), "auth.logout", "admin"))

    def test_token_scopes(self):
        read = Client(self.m.admin_port, token=self.m.token(["read"]))
        operate = Client(self.m.admin_port, token=self.m.token(["read", "operate"]))
        admin_only = Client(self.m.admin_port, token=self.m.token(["admin"]))
        entry = {"kind": "block", "pattern": "@scopes.example"}
        cases = [
            (read, "GET", "/api/v1/quarantine", None, 200, None),
            (read, "GET", "/metrics", None, 200, None),
            (read, "POST", "/api/v1/lists", entry, 403, "operate"),
            (read, "GET", "/api/v1/tokens", None, 403, "admin"),
            (read, "GET", "/api/v1/audit", None, 403, "admin"),
            (operate, "POST", "/api/v1/lists", entry, 201, None),
            (operate, "DELETE", "/api/v1/lists", entry, 200, None),
            (operate, "PUT", "/api/v1/rules/x", {"priority": 1, "then": ["score 1"]}, 403,
             "admin"),
            (operate, "GET", "/api/v1/users", None, 403, "admin"),
            (admin_only, "GET", "/api/v1/users", None, 200, None),
            (admin_only, "GET", "/api/v1/quarantine", None, 403, "read"),
        ]
        for c, method, path, body, want, scope in cases:
            with self.subTest(method=method, path=path, want=want):
                r = c.req(method, path, body=body)
                self.assertEqual(r.status, want, r)
                if scope:
                    self.assertEqual(r.json["field"], "scope")
                    self.assertIn(scope, r.json["error"])
        r = read.get("/api/v1/auth/session")
        self.assertEqual(r.json["kind"], "token")
        self.assertEqual(r.json["scopes"], ["read"])

    def test_token_lifecycle(self):
        a = self.m.admin()
        r = a.post("/api/v1/tokens", {"scopes": ["read"]})
        self.assertEqual(r.status, 201, r)
        tok, tid = r.json["token"], r.json["id"]
        self.assertRegex(tok, r"^moat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
        t = Client(self.m.admin_port, token=tok)
        self.assertEqual(t.get("/api/v1/quarantine").status, 200)
        listed = {x["id"]: x for x in a.get("/api/v1/tokens").json["items"]}
        self.assertIn(tid, listed)
        self.assertNotIn("token", listed[tid])  # the secret is never shown again
        self.assertGreater(listed[tid]["last_used_ms"], 0)
        self.assertEqual(a.delete("/api/v1/tokens/" + tid).status, 200)
        self.assertEqual(t.get("/api/v1/quarantine").status, 401)
        self.assertEqual(a.delete("/api/v1/tokens/" + tid).status, 404)
        self.assertTrue(audit(a, "token.create", tid))
        self.assertTrue(audit(a, "token.delete", tid))
        for body in ({}, {"scopes": []}, {"scopes": ["root"]}, {"scopes": "read"}):
            with self.subTest(body=body):
                r = a.post("/api/v1/tokens", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], "scopes")

    def test_users(self):
        a = self.m.admin()
        r = a.post("/api/v1/users", {"name": "carol", "password": "correct horse battery"})
        self.assertEqual(r.status, 201, r)
        r = a.post("/api/v1/users", {"name": "carol", "password": "correct horse battery"})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["field"], "name")
        for body, field in [({"name": "dave", "password": "short"}, "password"),
                            ({"name": "bad name!", "password": "long enough pw"}, "name"),
                            ({"password": "long enough pw"}, "name")]:
            with self.subTest(body=body):
                r = a.post("/api/v1/users", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)
        names = [u["name"] for u in a.get("/api/v1/users").json["items"]]
        self.assertIn("carol", names)
        self.assertNotIn("hash", a.get("/api/v1/users").json["items"][0])
        carol = self.m.client()
        self.assertEqual(carol.login("carol", "correct horse battery").status, 200)
        # a new password ends carol's sessions
        r = a.post("/api/v1/users/carol/password", {"password": "another long secret"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(carol.get("/api/v1/auth/session").status, 401)
        self.assertEqual(self.m.client().login("carol", "correct horse battery").status, 401)
        self.assertEqual(carol.login("carol", "another long secret").status, 200)
        self.assertEqual(a.post("/api/v1/users/nobody/password",
                                {"password": "another long secret"}).status, 404)
        self.assertEqual(a.delete("/api/v1/users/carol").status, 200)
        self.assertEqual(carol.get("/api/v1/auth/session").status, 401)
        self.assertEqual(a.delete("/api/v1/users/carol").status, 404)
        self.assertTrue(audit(a, "user.create", "carol"))
        self.assertTrue(audit(a, "user.password", "carol"))
        self.assertTrue(audit(a, "user.delete", "carol"))

    def test_last_user_cannot_be_deleted(self):
        a = self.m.admin()
        names = [u["name"] for u in a.get("/api/v1/users").json["items"]]
        if names == ["admin"]:
            r = a.delete("/api/v1/users/admin")
            self.assertEqual(r.status, 409, r)
            self.assertEqual(r.json["field"], "name")


class TestSessionExpiry(unittest.TestCase):
    """Short configured lifetimes; the tests wait past them, never race them."""

    def expired(self, conf, keep_busy):
        m = AdminMoatd(conf=conf, name="api-expiry")
        m.start()
        try:
            c = m.admin()
            deadline = time.time() + 30
            while time.time() < deadline:
                r = c.get("/api/v1/auth/session")
                if r.status == 401:
                    break
                self.assertEqual(r.status, 200, r)
                time.sleep(0.2 if keep_busy else 1.5)
            self.assertEqual(r.status, 401, r)
            return m.log()
        finally:
            m.stop()

    def test_idle_expiry(self):
        log = self.expired("admin_session_idle = 1s\nadmin_session_max = 1h\n", False)
        self.assertIn("event=session_expired user=admin reason=idle", log)

    def test_absolute_expiry(self):
        # requests every 0.2 s keep it from idling out: the absolute limit ends it
        log = self.expired("admin_session_idle = 3s\nadmin_session_max = 3s\n", True)
        self.assertIn("event=session_expired user=admin reason=max", log)

    def test_sighup_reaches_the_api(self):
        """A reload hands the API the new config and policy: new domains show,
        and a shorter idle limit applies to the sessions already open."""
        m = AdminMoatd(name="api-hup")
        m.start()
        try:
            c = m.admin()
            t = Client(m.admin_port, token=m.token(["read"]))
            self.assertEqual(len(t.get("/api/v1/domains").json["items"]), 2)
            m.write_conf(conf="admin_listen = 127.0.0.1:%d\nadmin_session_idle = 1s\n"
                         "admin_session_max = 1h\n" % m.admin_port,
                         domains="[domain only.test]\nrecipients = any\nroute = maildir\n")
            m.signal(signal.SIGHUP)
            m.wait_log(r"event=reload status=ok domains=1")
            r = t.get("/api/v1/domains")
            self.assertEqual([d["name"] for d in r.json["items"]], ["only.test"])
            time.sleep(1.5)
            self.assertEqual(c.get("/api/v1/auth/session").status, 401)
        finally:
            m.stop()

    def test_restart_ends_sessions_not_tokens(self):
        m = AdminMoatd(name="api-restart")
        m.start()
        try:
            c = m.admin()
            t = Client(m.admin_port, token=m.token(["read"]))
            m.stop()
            m.start()
            self.assertEqual(c.get("/api/v1/auth/session").status, 401)
            self.assertEqual(t.get("/api/v1/quarantine").status, 200)
            self.assertEqual(len(re.findall(r"event=first_run", m.log())), 1)
        finally:
            m.stop()


class TestThrottle(unittest.TestCase):
    def test_login_throttling(self):
        m = AdminMoatd(name="api-throttle")
        m.start()
        try:
            a = m.admin()
            r = a.post("/api/v1/users", {"name": "erin", "password": "erin's long password"})
            self.assertEqual(r.status, 201, r)
            c = m.client()
            for _ in range(5):
                self.assertEqual(c.login("admin", "wrong password").status, 401)
            # the name is throttled, even with the right password
            r = c.login("admin", m.password)
            self.assertEqual(r.status, 429, r)
            self.assertGreater(int(r.header("Retry-After")), 0)
            self.assertIn("error", r.json)
            # another name from the same address is not (yet)
            self.assertEqual(m.client().login("erin", "erin's long password").status, 200)
            # the address is, after enough failures under any names
            for i in range(20):
                c.login("guess%d" % i, "wrong password")
            r = m.client().login("erin", "erin's long password")
            self.assertEqual(r.status, 429, r)
            # what was refused is audited (the session from before still works)
            self.assertTrue(audit(a, "auth.login_throttled", "admin"))
            self.assertTrue(audit(a, "auth.login_throttled", "erin"))
        finally:
            m.stop()


class TestTLS(unittest.TestCase):
    def test_https_and_secure_cookie(self):
        certs = tempfile.mkdtemp(prefix="api-certs-", dir=OUT)
        os.chmod(certs, 0o755)
        ca, cert, key = make_cert(certs, cn="localhost")
        m2 = AdminMoatd(name="api-tls", admin_tls=(cert, key))
        m2.start()
        try:
            ctx_client = Client(m2.admin_port, https=True)
            r = ctx_client.get("/api/v1/health")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json["tls"])
            r = ctx_client.login("admin", m2.password)
            self.assertEqual(r.status, 200, r)
            self.assertIn("Secure", r.header("Set-Cookie"))
            self.assertEqual(ctx_client.get("/api/v1/auth/session").status, 200)
            # plain HTTP on the TLS listener gets nothing useful
            plain = Client(m2.admin_port)
            with self.assertRaises(Exception):
                plain.get("/api/v1/health")
        finally:
            m2.stop()


if __name__ == "__main__":
    unittest.main()
