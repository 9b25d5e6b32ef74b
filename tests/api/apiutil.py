"""Helpers for the admin API suite: a moatd with its admin listener, and an
HTTP client (http.client, so that a test controls every header and byte).
"""
import http.client
import json
import os
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

from moat_harness import Moatd  # noqa: E402


def wait_for(fn, what, timeout=30.0):
    """fn()'s first true value, polled until timeout; else an AssertionError naming what."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("never: " + what)


class Resp:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers  # lower-case name -> list of values
        self.data = data

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    @property
    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return "Resp(%d, %r)" % (self.status, self.data[:400])


class Client:
    """One client: optionally a bearer token or a portal session (cookie + CSRF token)."""

    def __init__(self, port, token=None, https=False, cafile=None):
        self.port = port
        self.token = token
        self.https = https
        self.cafile = cafile
        self.cookie = None
        self.csrf = None

    def conn(self):
        if self.https:
            # the test certificate names localhost; the listener is 127.0.0.1
            ctx = ssl._create_unverified_context()
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=60)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def req(self, method, path, body=None, raw=None, headers=None, csrf=True, auth=True):
        h = dict(headers or {})
        if auth and self.token:
            h.setdefault("Authorization", "Bearer " + self.token)
        if auth and self.cookie:
            h.setdefault("Cookie", "moat_session=" + self.cookie)
            if csrf and self.csrf and method not in ("GET", "HEAD"):
                h.setdefault("X-CSRF-Token", self.csrf)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self.conn()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            hdrs = {}
            for k, v in r.getheaders():
                hdrs.setdefault(k.lower(), []).append(v)
            return Resp(r.status, hdrs, r.read())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body=body if body is not None else {}, **kw)

    def put(self, path, body=None, **kw):
        return self.req("PUT", path, body=body if body is not None else {}, **kw)

    def delete(self, path, body=None, **kw):
        return self.req("DELETE", path, body=body, **kw)

    def login(self, user, password):
        r = self.req("POST", "/api/v1/auth/login", body={"user": user, "password": password},
                     auth=False)
        if r.status == 200:
            cookie = r.header("Set-Cookie")
            self.cookie = cookie.split(";")[0].split("=", 1)[1]
            self.csrf = r.json["csrf_token"]
        return r


class AdminMoatd(Moatd):
    """moatd with an admin listener; knows the first run's admin password."""

    def __init__(self, conf="", tls=None, admin_tls=None, **kw):
        # the harness gives every moatd its own admin_port
        extra = ""
        if admin_tls:
            extra += "admin_tls_cert = %s\nadmin_tls_key = %s\n" % admin_tls
        super().__init__(conf=extra + conf, tls=tls, **kw)
        self.password = None

    def start(self, *a, **kw):
        rc = super().start(*a, **kw)
        m = self.wait_log(r"event=first_run user=admin password=(\S+)")
        self.password = m.group(1)
        return rc

    def client(self, **kw):
        return Client(self.admin_port, **kw)

    def admin(self):
        """A client logged in as admin."""
        c = self.client()
        r = c.login("admin", self.password)
        assert r.status == 200, r
        return c

    def token(self, scopes):
        """A new API token with scopes (list), minted by the admin."""
        r = self.admin().post("/api/v1/tokens", {"scopes": scopes})
        assert r.status == 201, r
        return r.json["token"]
