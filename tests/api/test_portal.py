"""The web portal's side of the admin listener: its static files from
portal_dir (content types, ETag and 304, HEAD, 404s as text, no
credentials), what is refused (traversal in every spelling, dot files,
symbolic links to files and directories, FIFOs, directories, oversized
files, unknown extensions), the security header fields on every answer
(files, errors, API JSON, /metrics, the quarantine download), and the
API the portal needs beyond the rest: GET /api/v1/symbols and the
dashboard's top threats and senders in GET /api/v1/stats.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_portal.py
"""
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd, Client, wait_for  # noqa: E402
from moat_harness import MOATD, OUT  # noqa: E402
from unbound_server import Unbound  # noqa: E402

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

DOMAINS = """
[domain example.test]
recipients = any
route = maildir

[rule hold]
priority = 10
if = header Subject ^hold
then = quarantine

[rule refuse]
priority = 20
if = header Subject ^refuse
then = reject
"""

# name -> (content, Content-Type wanted)
FILES = {
    "index.html": (b"<!doctype html><title>moat</title>\n", "text/html; charset=utf-8"),
    "app.css": (b"body { margin: 0 }\n", "text/css; charset=utf-8"),
    "js/app.js": (b"export const x = 1;\n", "text/javascript; charset=utf-8"),
    "js/lib/deep.js": (b"// deep\n", "text/javascript; charset=utf-8"),
    "img/logo.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>\n", "image/svg+xml"),
    "img/logo.png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "favicon.ico": (b"\x00\x00\x01\x00", "image/x-icon"),
    "i18n/en.json": (b"{\"hello\": \"Hello\"}\n", "application/json"),
    "fonts/a-b_c.1.woff2": (b"wOF2", "font/woff2"),
    "a/b/c/d/e/f/g/h.js": (b"// eight segments\n", "text/javascript; charset=utf-8"),
}


def send(port, sender, rcpt, subject):
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@remote.example>\r\n"
           "Date: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\nhello\r\n"
           % (sender, rcpt, subject, subject.replace(" ", ".")))
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.remote.example", timeout=60)
    try:
        s.sendmail(sender, [rcpt], msg.encode())
    finally:
        s.quit()


def make_portal(root):
    """A portal directory with FILES and every kind of thing that must not be served."""
    os.chmod(root, 0o755)  # moatd runs as 'moat'
    for name, (data, _) in FILES.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for name, data in ((".git/config", b"[core]\n"), (".hidden.html", b"hidden"),
                       ("js/.secret.js", b"secret"), ("notes.txt", b"text"),
                       ("app.js.map", b"{}"), ("README", b"readme"),
                       ("a/b/c/d/e/f/g/h/i.js", b"// nine segments"),
                       ("big.js", b"x" * (4 * 1024 * 1024 + 1)),
                       ("max.js", b"y" * (4 * 1024 * 1024))):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    outside = os.path.join(os.path.dirname(root), "outside.html")
    with open(outside, "wb") as f:
        f.write(b"outside the portal")
    os.symlink(outside, os.path.join(root, "link-out.html"))
    os.symlink(os.path.join(root, "index.html"), os.path.join(root, "link-in.html"))
    os.symlink(os.path.join(root, "js"), os.path.join(root, "jslink"))
    os.symlink("/etc", os.path.join(root, "etc"))
    os.mkfifo(os.path.join(root, "fifo.html"))
    os.makedirs(os.path.join(root, "dir.html"))


class PortalBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(OUT, exist_ok=True)
        cls.top = tempfile.mkdtemp(prefix="portal-files-", dir=OUT)
        os.chmod(cls.top, 0o755)
        cls.portal = os.path.join(cls.top, "portal")
        os.makedirs(cls.portal)
        make_portal(cls.portal)
        cls.dns = Unbound([("probe.example.", "A", "192.0.2.1")], zones=("example.",),
                          probe="probe.example.")
        cls.m = AdminMoatd(conf="portal_dir = %s\ndns_resolver = %s\nscan_timeout = 60s\n"
                           % (cls.portal, cls.dns.upstream),
                           domains=DOMAINS, name="api-portal")
        cls.m.start()
        cls.c = Client(cls.m.admin_port)  # no credentials at all

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.dns.stop()
        shutil.rmtree(cls.top, ignore_errors=True)

    def assertSecure(self, r, sandbox=False):
        for name, want in SECURITY.items():
            if sandbox and name == "Content-Security-Policy":
                want = CSP + "; sandbox"
            self.assertEqual(r.headers.get(name.lower()), [want], "%s of %r" % (name, r))


class TestStatic(PortalBase):
    def test_files_and_types(self):
        for name, (data, ctype) in FILES.items():
            with self.subTest(name=name):
                r = self.c.get("/" + name)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.data, data)
                self.assertEqual(r.header("Content-Type"), ctype)
                self.assertEqual(r.header("Cache-Control"), "no-cache")
                self.assertTrue(r.header("ETag"))
                self.assertSecure(r)
        r = self.c.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.data, FILES["index.html"][0])
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertSecure(r)
        # the largest size served
        r = self.c.get("/max.js")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.data), 4 * 1024 * 1024)

    def test_refused(self):
        """Every one a text/plain 404 with the security fields, nothing of the file."""
        paths = [
            "/../outside.html", "/js/../index.html", "/js/../../outside.html",
            "/%2e%2e/outside.html", "/%2E%2E/outside.html", "/js/%2e%2e/index.html",
            "/..%2foutside.html", "/%2e%2e%2foutside.html", "/js%2fapp.js", "/%69ndex.html",
            "/./index.html", "/js/./app.js", "//index.html", "/js//app.js",
            "/.git/config", "/.git/", "/.hidden.html", "/js/.secret.js",
            "/link-out.html", "/link-in.html", "/jslink/app.js", "/etc/passwd",
            "/etc/hostname.json", "/fifo.html", "/dir.html", "/js", "/js/", "/index.html/",
            "/notes.txt", "/app.js.map", "/README", "/big.js", "/nothing.html",
            "/a/b/c/d/e/f/g/h/i.js", "/index.html%00.js", "/index.html;.js", "/in%20dex.html",
            "/\\index.html", "/" + "a" * 300 + ".js",
            "/metrics.html", "/metrics/x",
        ]
        for p in paths:
            with self.subTest(path=p):
                r = self.c.get(p)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
                self.assertEqual(r.data, b"404 not found\n")
                self.assertSecure(r)
        # a FIFO was not opened for reading (that would have hung the API thread)
        self.assertEqual(self.c.get("/api/v1/health").status, 200)
        self.assertIn("event=portal_refused path=/link-out.html", self.m.log())

    def test_raw_traversal(self):
        """Request lines no client library would send as is."""
        for target in (b"/../../../../etc/passwd", b"/..", b"/js/..", b"..", b"index.html",
                       b"http://127.0.0.1/../outside.html", b"/%2e%2e/%2e%2e/etc/passwd",
                       b"*"):
            with self.subTest(target=target):
                s = socket.create_connection(("127.0.0.1", self.m.admin_port), timeout=10)
                s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                status = int(data.split(b" ", 2)[1])
                self.assertIn(status, (400, 404), data[:300])
                self.assertNotIn(b"root:", data)
                self.assertNotIn(b"outside the portal", data)

    def test_etag_304(self):
        r = self.c.get("/js/app.js")
        etag = r.header("ETag")
        self.assertRegex(etag, r'^"[0-9a-f]+-[0-9a-f]+"$')
        for inm in (etag, "W/" + etag, '"nope", ' + etag, '"a",%s ,"b"' % etag, "*"):
            with self.subTest(inm=inm):
                r = self.c.get("/js/app.js", headers={"If-None-Match": inm})
                self.assertEqual(r.status, 304, r)
                self.assertEqual(r.data, b"")
                self.assertEqual(r.header("ETag"), etag)
                self.assertSecure(r)
        for inm in ('"nope"', etag[:-2] + '"', "", etag + "x"):
            with self.subTest(inm=inm):
                r = self.c.get("/js/app.js", headers={"If-None-Match": inm})
                self.assertEqual(r.status, 200, r)
        # a changed file: a new tag, the old one no longer matches
        path = os.path.join(self.portal, "changing.css")
        with open(path, "wb") as f:
            f.write(b"body { margin: 0 }\n")
        old = self.c.get("/changing.css").header("ETag")
        with open(path, "ab") as f:
            f.write(b"p { color: red }\n")
        r = self.c.get("/changing.css", headers={"If-None-Match": old})
        self.assertEqual(r.status, 200, r)
        etag = r.header("ETag")
        self.assertNotEqual(etag, old)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        r = self.c.get("/changing.css", headers={"If-None-Match": etag})
        self.assertEqual(r.status, 200, r)  # same size, new time: a new tag
        self.assertIn(b"color: red", r.data)

    def test_head(self):
        for p in ("/", "/js/app.js", "/img/logo.png"):
            with self.subTest(path=p):
                g = self.c.get(p)
                h = self.c.req("HEAD", p)
                self.assertEqual(h.status, 200, h)
                self.assertEqual(h.data, b"")
                self.assertEqual(h.header("Content-Length"), str(len(g.data)))
                self.assertEqual(h.header("Content-Type"), g.header("Content-Type"))
                self.assertEqual(h.header("ETag"), g.header("ETag"))
                self.assertSecure(h)
        h = self.c.req("HEAD", "/nothing.html")
        self.assertEqual(h.status, 404, h)
        self.assertEqual(h.data, b"")
        h = self.c.req("HEAD", "/", headers={"If-None-Match": self.c.get("/").header("ETag")})
        self.assertEqual(h.status, 304, h)

    def test_other_methods(self):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method=method):
                r = self.c.req(method, "/index.html", raw=b"")
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header("Allow"), "GET, HEAD")
                self.assertTrue(r.header("Content-Type").startswith("text/plain"))
                self.assertSecure(r)

    def test_api_stays_json(self):
        """Under /api/ nothing is the portal's: JSON errors, credentials needed."""
        for p in ("/api", "/api/", "/api/index.html", "/api/v1/x.js", "/api/v1/nothing"):
            with self.subTest(path=p):
                r = self.c.get(p)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.header("Content-Type"), "application/json")
                self.assertIn("error", r.json)
                self.assertSecure(r)
        r = self.c.get("/api/v1/stats")
        self.assertEqual(r.status, 401, r)
        self.assertSecure(r)


class TestSecurityHeaders(PortalBase):
    def test_every_answer(self):
        """Files, text errors, API JSON of every kind, /metrics and downloads."""
        a = self.m.admin()
        tok = self.m.token(["read"])
        t = Client(self.m.admin_port, token=tok)
        send(self.m.port, "h@remote.example", "u@example.test", "hold for download")
        held = wait_for(lambda: a.get("/api/v1/quarantine?state=held").json["items"], "held")
        qid = held[0]["id"]
        cases = [
            (self.c, "GET", "/", None, 200),
            (self.c, "GET", "/nothing", None, 404),
            (self.c, "POST", "/", None, 405),
            (self.c, "GET", "/api/v1/health", None, 200),
            (self.c, "GET", "/api/v1/quarantine", None, 401),
            (self.c, "POST", "/api/v1/auth/login", {"user": "admin", "password": "x"}, 401),
            (self.c, "POST", "/api/v1/auth/login", {"user": 1}, 400),
            (a, "GET", "/api/v1/stats", None, 200),
            (a, "GET", "/api/v1/symbols", None, 200),
            (a, "GET", "/api/v1/quarantine/ffffffffffffffff", None, 404),
            (a, "DELETE", "/api/v1/stats", None, 405),
            (a, "POST", "/api/v1/tokens", {"scopes": ["read"]}, 201),
            (t, "GET", "/api/v1/tokens", None, 403),
            (t, "GET", "/metrics", None, 200),
            (a, "GET", "/api/v1/quarantine/%s/preview" % qid, None, 200),
            (a, "GET", "/api/v1/quarantine/%s/download" % qid, None, 200),
        ]
        for c, method, path, body, status in cases:
            with self.subTest(op="%s %s" % (method, path)):
                r = c.req(method, path, body=body)
                self.assertEqual(r.status, status, r)
                self.assertSecure(r, sandbox=path.endswith("/download"))
        # the download is an attachment, never something a browser renders as a page
        r = a.get("/api/v1/quarantine/%s/download" % qid)
        self.assertEqual(r.header("Content-Type"), "message/rfc822")
        self.assertEqual(r.header("Content-Disposition"),
                         'attachment; filename="%s.eml"' % qid)
        self.assertIn(b"hold for download", r.data)


class TestSymbolsAndTop(PortalBase):
    def test_symbols(self):
        a = self.m.admin()
        r = a.get("/api/v1/symbols")
        self.assertEqual(r.status, 200, r)
        syms = r.json["symbols"]
        # the same table as `moatd --symbols` (docs/SCAN.md)
        out = subprocess.run([MOATD, "--symbols"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
        self.assertEqual([s["name"] for s in syms],
                         [line.split("|")[1].strip().strip("`") for line in out])
        by = {s["name"]: s for s in syms}
        self.assertEqual(by["MOAT_BLOCKLIST"]["flags"], ["reject"])
        self.assertEqual(by["MOAT_BLOCKLIST"]["score"], 20.0)
        self.assertEqual(by["MOAT_ALLOWLIST"]["flags"], ["deliver"])
        self.assertEqual(by["MOAT_ALLOWLIST"]["score"], -20.0)
        self.assertEqual(by["MOAT_RULE_QUARANTINE"]["flags"], ["quarantine"])
        self.assertEqual(by["MOAT_RELAYED"]["flags"], [])
        self.assertIn("allow list", by["MOAT_ALLOWLIST"]["description"])
        for s in syms:
            self.assertTrue(s["description"], s)
        # read scope; credentials
        self.assertEqual(self.c.get("/api/v1/symbols").status, 401)
        self.assertEqual(Client(self.m.admin_port, token=self.m.token(["operate"]))
                         .get("/api/v1/symbols").status, 403)
        self.assertEqual(Client(self.m.admin_port, token=self.m.token(["read"]))
                         .get("/api/v1/symbols").status, 200)

    def test_top_threats_and_senders(self):
        a = self.m.admin()
        send(self.m.port, "Spam@Bad.example", "u@example.test", "hold one")
        send(self.m.port, "spam@bad.example", "u@example.test", "hold two")
        send(self.m.port, "spam@bad.example", "u@example.test", "hold three")
        for i in range(2):
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                send(self.m.port, "rej@bad.example", "u@example.test", "refuse %d" % i)
            self.assertEqual(cm.exception.smtp_code, 550)
        send(self.m.port, "ok@good.example", "u@example.test", "plain")

        def top():
            r = a.get("/api/v1/stats")
            self.assertEqual(r.status, 200, r)
            threats = {x["name"]: x["count"] for x in r.json["top_threats"]}
            if threats.get("MOAT_RULE_QUARANTINE", 0) >= 3 and \
               threats.get("MOAT_RULE_REJECT", 0) >= 2:
                return r.json
            return None
        st = wait_for(top, "the top threats")
        threats = {x["name"]: x["count"] for x in st["top_threats"]}
        senders = {x["sender"].lower(): x["count"] for x in st["top_senders"]}
        self.assertEqual(threats["MOAT_RULE_REJECT"], 2)
        self.assertGreaterEqual(threats["MOAT_RULE_QUARANTINE"], 3)
        self.assertGreaterEqual(senders["spam@bad.example"], 3)  # case folded together
        self.assertEqual(senders["rej@bad.example"], 2)
        self.assertNotIn("ok@good.example", senders)
        # most frequent first, and only symbols that are threats
        counts = [x["count"] for x in st["top_threats"]]
        self.assertEqual(counts, sorted(counts, reverse=True))
        self.assertLessEqual(len(st["top_threats"]), 10)
        self.assertLessEqual(len(st["top_senders"]), 10)
        syms = {s["name"]: s for s in a.get("/api/v1/symbols").json["symbols"]}
        for name in threats:
            self.assertIn(name, syms)
        self.assertNotIn("MOAT_ALLOWLIST", threats)


class TestNoPortal(unittest.TestCase):
    def test_empty_portal_dir(self):
        m = AdminMoatd(conf="portal_dir =\n", name="api-noportal")
        m.start()
        try:
            c = m.client()
            for p in ("/", "/index.html"):
                r = c.get(p)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.data, b"404 not found\n")
            self.assertEqual(c.get("/api/v1/health").status, 200)
        finally:
            m.stop()

    def test_default_portal_dir_missing(self):
        m = AdminMoatd(name="api-noportal")
        m.start()
        try:
            r = m.client().get("/")
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        finally:
            m.stop()


if __name__ == "__main__":
    unittest.main()
