"""src/scan/scan_spam.c: GTUBE, and the rspamd client against a real rspamd
(Debian's package, private, tests/lib/rspamd_server.py) plus an HTTP
server of our own that answers /checkv2 badly on purpose (errors,
hostile JSON, too much, never). Driven through build/tests/unit/scan_probe
($SCAN_PROBE for another build).

Run: python3 tests/lib/runner.py scan tests/scan
"""
import http.server
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from rspamd_server import ENV_SCORE, ENVELOPE, Rspamd, free_tcp_port  # noqa: E402
from test_clamd import message, probe  # noqa: E402

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
PLAIN = message(b"Content-Type: text/plain\r\n\r\nHello Bob,\r\n\r\nlunch on Friday?\r\n")


def envelope_args(env=ENVELOPE):
    args = ["-i", env["ip"], "-H", env["helo"], "-f", env["from"], "-q", env["queue_id"]]
    for r in env["rcpts"]:
        args += ["-r", r]
    return args


class GtubeTest(unittest.TestCase):
    def test_gtube(self):
        cases = [
            ("in the body", message(b"\r\n" + GTUBE + b"\r\n"), [], True),
            ("in a header", b"Subject: " + GTUBE + b"\r\n\r\nhi\r\n", [], True),
            ("inside a line", message(b"\r\nabc" + GTUBE + b"def\r\n"), [], True),
            ("at the very end", message(b"\r\n") + GTUBE, [], True),
            ("released", message(b"\r\n" + GTUBE + b"\r\n"), ["-R"], False),
            ("one octet off", message(b"\r\n" + GTUBE[:-1] + b"Y\r\n"), [], False),
            ("cut short", message(b"\r\n") + GTUBE[:-1], [], False),
            ("folded", message(b"\r\n" + GTUBE[:30] + b"\r\n" + GTUBE[30:] + b"\r\n"), [], False),
            ("base64 encoded", message(b"Content-Transfer-Encoding: base64\r\n\r\n"
                                       b"WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJE"
                                       b"LUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=\r\n"), [], False),
            ("clean", PLAIN, [], False),
            ("empty", b"", [], False),
        ]
        for name, data, args, found in cases:
            with self.subTest(case=name):
                syms, tempfail, _, _ = probe("gtube", {}, data, args)
                self.assertIsNone(tempfail)
                self.assertEqual(syms, {"GTUBE": (100.0, "-")} if found else {})


class RspamdRealTest(unittest.TestCase):
    """The client against a real rspamd."""

    @classmethod
    def setUpClass(cls):
        cls.rspamd = Rspamd()

    @classmethod
    def tearDownClass(cls):
        cls.rspamd.stop()

    def scan(self, data, args=(), **config):
        config.setdefault("rspamd_url", self.rspamd.url)
        return probe("rspamd", config, data, args)

    def test_envelope_reaches_rspamd(self):
        syms, tempfail, _, _ = self.scan(PLAIN, envelope_args())
        self.assertIsNone(tempfail)
        score, detail = syms["RSPAMD_SCORE"]
        self.assertEqual(sorted(detail.split(",")), ["MOAT_ENV_FROM", "MOAT_ENV_HELO",
                                                      "MOAT_ENV_IP", "MOAT_ENV_QID",
                                                      "MOAT_ENV_RCPT"])
        self.assertGreaterEqual(score, 5 * ENV_SCORE - 5)
        self.assertLess(score, 5 * ENV_SCORE + 10)

    def test_other_envelope(self):
        """Different values reach rspamd as such: none of the envelope rules fire."""
        env = dict(ip="203.0.113.9", helo="other.example", from_="x@other.example",
                   rcpts=["bob@example.com"], queue_id="OTHER1")
        env["from"] = env.pop("from_")
        syms, tempfail, _, _ = self.scan(PLAIN, envelope_args(env))
        self.assertIsNone(tempfail)
        self.assertIn("RSPAMD_SCORE", syms)
        self.assertNotIn("MOAT_ENV", syms["RSPAMD_SCORE"][1])
        self.assertLess(syms["RSPAMD_SCORE"][0], 15.0)
        self.assertNotIn("RSPAMD_ACTION_REJECT", syms)

    def test_gtube_rejected_by_rspamd(self):
        syms, tempfail, _, _ = self.scan(message(b"\r\n" + GTUBE + b"\r\n"))
        self.assertIsNone(tempfail)
        self.assertEqual(syms["RSPAMD_ACTION_REJECT"], (0.0, "-"))
        self.assertGreaterEqual(syms["RSPAMD_SCORE"][0], 15.0)

    def test_large_message(self):
        body = b"\r\n" + b"".join(b"line %07d of a long newsletter\r\n" % i for i in range(60000))
        syms, tempfail, _, _ = self.scan(message(body))
        self.assertIsNone(tempfail)
        self.assertIn("RSPAMD_SCORE", syms)

    def test_released_skipped(self):
        syms, tempfail, _, err = self.scan(message(b"\r\n" + GTUBE + b"\r\n"), ["-R"],
                                           rspamd_required="yes")
        self.assertEqual((syms, tempfail), ({}, None))

    def test_parallel(self):
        results = [None] * 8

        def one(i):
            results[i] = self.scan(PLAIN, envelope_args())[:2]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r in results:
            self.assertIsNone(r[1])
            self.assertGreaterEqual(r[0]["RSPAMD_SCORE"][0], 5 * ENV_SCORE - 5)


# --- an HTTP server of our own: the path picks the behaviour ---

def reply_json(obj):
    return 200, json.dumps(obj).encode()


BEHAVIOURS = {
    "/ok": lambda: reply_json({"score": 3.5, "action": "no action", "symbols": {}}),
    "/reject": lambda: reply_json({"score": 22.0, "action": "reject", "symbols": {}}),
    "/negative": lambda: reply_json({"score": -4.25, "action": "no action"}),
    "/integer": lambda: reply_json({"score": 7, "action": "add header"}),
    "/huge-score": lambda: (200, b'{"score": 1e300, "action": "reject"}'),
    "/tiny-score": lambda: (200, b'{"score": -1e300}'),
    "/top": lambda: reply_json({"score": 9.0, "symbols": {
        "F": {"score": 0.5}, "A": {"score": 5}, "G": {"score": -3}, "C": {"score": 3},
        "E": {"score": 1}, "B": {"score": 4}, "Z": {"score": 0}, "D": {"score": 2},
        "N": {"name": "N"}, "S": {"score": "9"}, "X": 17}}),
    "/evil-names": lambda: reply_json({"score": 1.0, "symbols": {
        "X\u0001Y,Z\r\nW": {"score": 2}, "\u00e9t\u00e9": {"score": 1}, "L" * 300: {"score": 0.5}}}),
    "/action-not-string": lambda: reply_json({"score": 1.0, "action": ["reject"]}),
    "/symbols-not-object": lambda: reply_json({"score": 1.0, "symbols": ["A", "B"]}),
    # failures
    "/500": lambda: (500, b'{"error": "internal"}'),
    "/404": lambda: (404, b"not found"),
    "/garbage": lambda: (200, b"<html>not json</html>"),
    "/empty": lambda: (200, b""),
    "/no-score": lambda: reply_json({"action": "reject", "symbols": {}}),
    "/string-score": lambda: reply_json({"score": "15", "action": "reject"}),
    "/null-score": lambda: reply_json({"score": None}),
    "/array": lambda: (200, b"[1, 2, 3]"),
    "/nan": lambda: (200, b'{"score": NaN}'),
    "/duplicate": lambda: (200, b'{"score": 1, "score": 100}'),
    "/deep": lambda: (200, b'{"score": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
    "/too-big": lambda: (200, b'{"score": 1, "pad": "' + b"x" * (2 << 20) + b'"}'),
    "/redirect": lambda: (302, b""),
}


class FakeRspamdHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.server.requests.append((self.path, self.headers, body))
        if self.path == "/hang":
            self.server.stopping.wait(30)
            return
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"score": 1')
            self.wfile.flush()
            self.close_connection = True
            return
        status, data = BEHAVIOURS.get(self.path, lambda: (404, b""))()
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:%d/ok" % self.server.server_port)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeRspamd(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeRspamdHandler)
        self.requests = []
        self.stopping = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address):
        pass  # moat hanging up on a reply too long is expected

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server_port, path)

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class RspamdFakeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = FakeRspamd()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def scan(self, path, data=PLAIN, args=(), **config):
        config.setdefault("rspamd_url", self.srv.url(path))
        return probe("rspamd", config, data, args)

    def test_request(self):
        """The message as the body, the envelope as headers, nothing else of note."""
        self.srv.requests.clear()
        syms, tempfail, _, _ = self.scan("/ok", args=envelope_args())
        self.assertEqual((syms, tempfail), ({"RSPAMD_SCORE": (3.5, "-")}, None))
        path, headers, body = self.srv.requests[-1]
        self.assertEqual(path, "/ok")
        self.assertEqual(body, PLAIN)
        self.assertEqual(headers["IP"], ENVELOPE["ip"])
        self.assertEqual(headers["Helo"], ENVELOPE["helo"])
        self.assertEqual(headers["From"], ENVELOPE["from"])
        self.assertEqual(headers.get_all("Rcpt"), ENVELOPE["rcpts"])
        self.assertEqual(headers["Queue-Id"], ENVELOPE["queue_id"])
        self.assertIsNone(headers["Expect"])

    def test_null_sender(self):
        self.srv.requests.clear()
        syms, tempfail, _, _ = self.scan("/ok", args=["-f", ""])
        self.assertEqual((syms, tempfail), ({"RSPAMD_SCORE": (3.5, "-")}, None))
        _, headers, _ = self.srv.requests[-1]
        self.assertIsNone(headers["From"])
        self.assertEqual(headers["Rcpt"], "rcpt@example.com")

    def test_header_injection(self):
        """Envelope values with control characters are left out, never sent raw."""
        self.srv.requests.clear()
        args = ["-H", "evil.example\r\nX-Injected: 1", "-f", "a@b.example\nRcpt: x@y.example",
                "-r", "ok@example.com", "-r", "bad\x7f@example.com"]
        syms, tempfail, _, _ = self.scan("/ok", args=args)
        self.assertEqual((syms, tempfail), ({"RSPAMD_SCORE": (3.5, "-")}, None))
        _, headers, _ = self.srv.requests[-1]
        self.assertIsNone(headers["Helo"])
        self.assertIsNone(headers["From"])
        self.assertIsNone(headers["X-Injected"])
        self.assertEqual(headers.get_all("Rcpt"), ["ok@example.com"])

    def test_replies(self):
        cases = [
            ("/ok", {"RSPAMD_SCORE": (3.5, "-")}),
            ("/reject", {"RSPAMD_SCORE": (22.0, "-"), "RSPAMD_ACTION_REJECT": (0.0, "-")}),
            ("/negative", {"RSPAMD_SCORE": (-4.25, "-")}),
            ("/integer", {"RSPAMD_SCORE": (7.0, "-")}),
            ("/huge-score", {"RSPAMD_SCORE": (1000.0, "-"), "RSPAMD_ACTION_REJECT": (0.0, "-")}),
            ("/tiny-score", {"RSPAMD_SCORE": (-1000.0, "-")}),
            ("/top", {"RSPAMD_SCORE": (9.0, "A,B,C,D,E")}),
            ("/evil-names", {"RSPAMD_SCORE": (1.0, "X?Y?Z??W,??t??," + "L" * 64)}),
            ("/action-not-string", {"RSPAMD_SCORE": (1.0, "-")}),
            ("/symbols-not-object", {"RSPAMD_SCORE": (1.0, "-")}),
        ]
        for path, want in cases:
            with self.subTest(path=path):
                syms, tempfail, _, _ = self.scan(path, rspamd_required="yes")
                self.assertEqual((syms, tempfail), (want, None))

    def check_fails(self, url, why, max_seconds=5.0, args=(), raw=False, **config):
        """raw: set rspamd_url past the configuration parser (which refuses bad URLs)."""
        for required in ("yes", "no"):
            with self.subTest(url=url, required=required):
                cfg = dict(rspamd_required=required, **config)
                if raw:
                    run_args = list(args) + ["-U", url]
                else:
                    run_args = args
                    cfg["rspamd_url"] = url
                syms, tempfail, took, err = probe("rspamd", cfg, PLAIN, run_args)
                self.assertEqual(syms, {})
                self.assertLess(took, max_seconds)
                self.assertIn("event=rspamd_failed", err)
                if required == "yes":
                    self.assertIsNotNone(tempfail)
                    self.assertTrue(tempfail.startswith("rspamd unavailable: "), tempfail)
                    self.assertIn(why, tempfail)
                    self.assertTrue(all(" " <= c < "\x7f" for c in tempfail), tempfail)
                else:
                    self.assertIsNone(tempfail)

    def test_failures(self):
        cases = [
            ("/500", "HTTP status 500"),
            ("/404", "HTTP status 404"),
            ("/redirect", "HTTP status 302"),
            ("/garbage", "bad JSON"),
            ("/empty", "bad JSON"),
            ("/no-score", "without a score"),
            ("/string-score", "without a score"),
            ("/null-score", "without a score"),
            ("/array", "without a score"),
            ("/nan", "bad JSON"),
            ("/duplicate", "bad JSON"),
            ("/deep", "bad JSON"),
            ("/too-big", "reply longer than"),
            ("/truncated", ""),
        ]
        for path, why in cases:
            self.check_fails(self.srv.url(path), why)

    def test_down(self):
        self.check_fails("http://127.0.0.1:%d/checkv2" % free_tcp_port(), "connect")

    def test_bad_urls(self):
        for url in ("not a url", "ftp://127.0.0.1/checkv2", "file:///etc/passwd",
                    "gopher://127.0.0.1:70/"):
            self.check_fails(url, "", raw=True)

    def test_hang(self):
        t0 = time.monotonic()
        self.check_fails(self.srv.url("/hang"), "imed out", 3.0, rspamd_timeout="1s")
        self.assertGreaterEqual(time.monotonic() - t0, 1.8)  # each of the two waited 1 s

    def test_scan_deadline(self):
        self.check_fails(self.srv.url("/hang"), "imed out", 2.5, args=["-d", "700"],
                         rspamd_timeout="60s")
        self.check_fails(self.srv.url("/hang"), "deadline passed", 1.0, args=["-d", "0"])

    def test_released_or_off(self):
        self.srv.requests.clear()
        for config, args in [(dict(rspamd_url=self.srv.url("/reject")), ["-R"]),
                             (dict(rspamd_url=""), [])]:
            with self.subTest(config=config, args=args):
                syms, tempfail, _, _ = probe("rspamd", dict(config, rspamd_required="yes"),
                                             PLAIN, args)
                self.assertEqual((syms, tempfail), ({}, None))
        self.assertEqual(self.srv.requests, [])


if __name__ == "__main__":
    unittest.main()
