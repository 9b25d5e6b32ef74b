"""Shared helpers for the scripted SMTP session tests (tests/session/).

Every test talks to the real moatd (tests/lib/moat_harness.py) over real
sockets. This module adds: a TestCase base that runs one daemon per class,
reply assertions on the code *and* the enhanced status code, a reader for
the binary queue file (src/spool/spool.c), and small socket helpers.

Run the suite with Debian's interpreter:
    /usr/bin/python3 tests/lib/runner.py session tests/session
"""
import os
import re
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

from moat_harness import (DEFAULT_DOMAINS, Moatd, Reply, SMTPRaw,  # noqa: E402,F401
                          make_cert, send_simple)

ENH_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$")

# A body that is a complete, well-formed message (CRLF line ends).
BODY = b"Subject: test\r\n\r\nhello\r\n"


def enh(reply):
    """The enhanced status code of a reply's last line (RFC 2034), or None."""
    words = reply.lines[-1][4:].split(" ", 1)
    return words[0] if words and ENH_RE.match(words[0]) else None


def describe(reply):
    if reply is None:
        return "no reply"
    return "%d %s (%r)" % (reply.code, enh(reply), reply.lines[-1])


def queued_id(reply):
    """The queue id of a '250 2.0.0 Ok: queued as ID' reply, or None."""
    m = QUEUED_RE.match(reply.lines[-1]) if reply is not None else None
    return m.group(1) if m else None


def read_queue_file(path):
    """Parse a queue file (MOATQ1): returns (body bytes, [(type char, value bytes)])."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"MOATQ1\r\n":
        raise AssertionError("%s: bad magic %r" % (path, data[:8]))
    off = 8
    if data[off:off + 1] != b"B":
        raise AssertionError("%s: first record is not the body" % path)
    blen = int.from_bytes(data[off + 1:off + 5], "big")
    body = data[off + 5:off + 5 + blen]
    off += 5 + blen
    recs = []
    while off < len(data):
        typ = chr(data[off])
        rlen = int.from_bytes(data[off + 1:off + 5], "big")
        recs.append((typ, data[off + 5:off + 5 + rlen]))
        off += 5 + rlen
    return body, recs


def maildir_tree(moatd):
    """Every 'domain/local' that has a Maildir under data/maildir."""
    root = os.path.join(moatd.data, "maildir")
    out = set()
    if not os.path.isdir(root):
        return out
    for dom in os.listdir(root):
        for local in os.listdir(os.path.join(root, dom)):
            out.add("%s/%s" % (dom, local))
    return out


def maildir_count(moatd):
    """Number of delivered messages in all Maildirs."""
    root = os.path.join(moatd.data, "maildir")
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) == "new":
            n += len(filenames)
    return n


def split_scan_fields(msg):
    """(moat's scan fields, the rest) of a maildir file after Return-Path and
    Delivered-To: Authentication-Results, X-Moat-* and the relay key, each
    with its continuation lines."""
    lines = msg.split(b"\n")
    if not lines[0].startswith(b"Return-Path: ") or not lines[1].startswith(b"Delivered-To: "):
        raise AssertionError("maildir file does not start with Return-Path/Delivered-To: %r"
                             % msg[:200])
    i = 2
    while i < len(lines) and (lines[i].startswith(b"Authentication-Results: ")
                              or lines[i].startswith(b"X-Moat-")):
        i += 1
        while i < len(lines) and lines[i].startswith(b"\t"):
            i += 1
    return b"\n".join(lines[2:i]), b"\n".join(lines[:2] + lines[i:])


def strip_delivery_headers(msg):
    """A maildir file without Return-Path, Delivered-To, moat's scan fields
    (Authentication-Results, X-Moat-Verdict, the relay key) and its Received
    header."""
    fields, msg = split_scan_fields(msg)
    if b"Authentication-Results: " not in fields or b"X-Moat-Verdict: " not in fields:
        raise AssertionError("moat's scan fields are missing: %r" % fields[:300])
    lines = msg.split(b"\n")
    if not lines[2].startswith(b"Received: from "):
        raise AssertionError("the line after moat's fields is not its Received header: %r"
                             % msg[:300])
    i = 3
    while i < len(lines) and lines[i].startswith(b"\t"):
        i += 1
    return b"\n".join(lines[i:])


class Conn(SMTPRaw):
    """SMTPRaw that can bind a source address (127.0.0.x) before connecting."""

    def __init__(self, host, port, timeout=10.0, family=socket.AF_INET, greet=True, source=None):
        if source is None:
            SMTPRaw.__init__(self, host, port, timeout=timeout, family=family, greet=greet)
            return
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def reply_or_none(self, timeout):
        """The next reply if one arrives within timeout, else None (connection kept)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.reply()
        except (socket.timeout, EOFError, ConnectionResetError):
            return None
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def read_all(self, timeout=5.0):
        """Everything the server sends until it closes (or timeout); (bytes, closed)."""
        self.sock.settimeout(timeout)
        data, closed = self.buf, False
        self.buf = b""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            pass
        return data, closed


class DaemonCase(unittest.TestCase):
    """One moatd for the whole class (setUpClass/tearDownClass)."""

    CONF = ""
    DOMAINS = DEFAULT_DOMAINS
    IPV6 = False
    TLS = False  # True: make_cert() in the daemon's dir, cls.ca / cls.cert / cls.key

    @classmethod
    def setUpClass(cls):
        cls.moatd = Moatd(conf=cls.CONF, domains=cls.DOMAINS, name=cls.__name__, ipv6=cls.IPV6)
        if cls.TLS:
            cls.ca, cls.cert, cls.key = make_cert(cls.moatd.dir)
            cls.moatd.write_conf(cls.CONF, cls.DOMAINS, tls=(cls.cert, cls.key))
        cls.moatd.start()

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()

    def tearDown(self):
        # This machine is shared: make a daemon that was stopped by someone else obvious,
        # instead of reporting the 421 4.3.2 it sends as a protocol failure.
        proc = self.moatd.proc
        if proc is not None and ("event=signal" in self.moatd.log() or proc.poll() is not None):
            self.fail("moatd (pid %d) got a signal or exited during the test, not sent by the "
                      "test: %s" % (proc.pid, [l for l in self.moatd.log().splitlines()
                                               if "event=signal" in l or "event=stopped" in l]))

    # --- connections ---

    def connect(self, greet=True, timeout=5.0, source=None):
        c = Conn("127.0.0.1", self.moatd.port, timeout=timeout, greet=greet, source=source)
        self.addCleanup(c.close)
        if greet:
            self.assertReply(c.greeting, 220, None, "greeting")
        return c

    def ehlo(self, c, name="client.test"):
        r = c.cmd("EHLO " + name)
        self.assertReply(r, 250, None, "EHLO")
        return r

    def start_tx(self, c, sender="sender@remote.test", rcpts=("user@example.test",), ehlo=True):
        if ehlo:
            self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250, "2.1.0", "MAIL")
        for rc in rcpts:
            self.assertReply(c.cmd("RCPT TO:<%s>" % rc), 250, "2.1.5", "RCPT " + rc)

    def send_message(self, c, body=BODY, **kw):
        """A whole DATA transaction; returns the queue id from the 250."""
        self.start_tx(c, **kw)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(body + b".\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        qid = queued_id(r)
        self.assertIsNotNone(qid, "250 without a queue id: %s" % describe(r))
        return qid

    def assert_in_sync(self, c, what="session"):
        """The next reply is NOOP's own 250 2.0.0: nothing else was pending."""
        r = c.cmd("NOOP")
        self.assertReply(r, 250, "2.0.0", "%s: NOOP after it (session out of sync?)" % what)

    # --- assertions ---

    def assertReply(self, reply, code, enhanced=None, what=""):
        if reply is None:
            self.fail("%s: got no reply, want %s %s" % (what, code, enhanced or ""))
        if reply.code != code or (enhanced is not None and enh(reply) != enhanced):
            self.fail("%s: got %s, want %d %s" % (what, describe(reply), code, enhanced or ""))

    def assertClosed(self, c, what="", timeout=5.0):
        self.assertTrue(c.closed(timeout), "%s: connection still open, want it closed" % what)

    def assertOpen(self, c, what=""):
        self.assertFalse(c.closed(0.3), "%s: connection closed, want it open" % what)

    def snapshot(self):
        return set(self.moatd.queue_ids())

    def assertNothingQueued(self, before, what=""):
        new = set(self.moatd.queue_ids()) - before
        self.assertEqual(new, set(), "%s: new queue files %s, want none" % (what, sorted(new)))
        self.assertEqual(self.moatd.incoming(), [],
                         "%s: incoming/ holds %s, want it empty" % (what, self.moatd.incoming()))

    def wait_disconnects(self, n, timeout=5.0):
        """Wait until the log shows at least n 'event=disconnect' lines."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.moatd.log().count("event=disconnect") >= n:
                return
            time.sleep(0.02)
        self.fail("log shows %d disconnects, want %d" %
                  (self.moatd.log().count("event=disconnect"), n))
