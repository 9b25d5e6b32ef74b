"""Shared helpers for the delivery suite (tests/delivery/).

moatd (the real daemon, tests/lib/moat_harness.py) delivers to downstream
SMTP servers that the tests run on loopback:

  Sink      aiosmtpd (Debian's python3-aiosmtpd) in a thread: records every
            connection (TLS or not, the commands it saw), every transaction
            (envelope, MAIL and RCPT parameters, the exact content bytes,
            un-dot-stuffed by aiosmtpd), and can refuse what a test says.
  WireSink  a small raw SMTP server: records the octets on the wire
            (dot-stuffing, line lengths, pipelining, BDAT, RSET) and can
            answer MAIL with 421 on a reused connection (Exchange Online).
  SmtpSink  Postfix's smtp-sink with its switches (-f/-r/-q/-Q/-w/-W/-p/-e/
            -E/-N/-8), optionally dumping each transaction (-d).

Run the suite with Debian's interpreter:
    /usr/bin/python3 tests/lib/runner.py delivery tests/delivery
"""
import email
import email.policy
import os
import re
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

from moat_harness import OUT, Moatd, SMTPRaw, free_port, make_cert  # noqa: E402,F401

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402

# aiosmtpd logs every failed handshake and reset connection with a traceback:
# the tests provoke those on purpose and look at what was delivered instead.
import logging  # noqa: E402
logging.getLogger("mail.log").setLevel(logging.CRITICAL + 1)

QID = re.compile(r"queued as ([0-9a-f]{16})")


# --------------------------------------------------------------------------
# moatd configuration
# --------------------------------------------------------------------------

def moat_conf(dsn_port, extra="", idle_keep="2s"):
    """Global options: fast retries, DSNs to outside senders go to dsn_port."""
    return ("delivery_retry_min = 1s\n"
            "delivery_retry_max = 2s\n"
            "delivery_idle_keep = %s\n"
            "delivery_default_route = smtp:[127.0.0.1]:%d\n"
            "delivery_default_tls = none\n" % (idle_keep, dsn_port)) + extra


def domain(name, route, tls="none", **keys):
    text = "[domain %s]\nrecipients = any\nroute = %s\ntls = %s\n" % (name, route, tls)
    for k, v in keys.items():
        text += "%s = %s\n" % (k, v)
    return text + "\n"


def smtp_route(*ports):
    return "smtp:" + ", ".join("[127.0.0.1]:%d" % p for p in ports)


def scratch_dir(name):
    """A fresh directory under tests/out/ that the postfix and moat users can enter."""
    import tempfile
    os.makedirs(OUT, exist_ok=True)
    d = tempfile.mkdtemp(prefix=name + "-", dir=OUT)
    os.chmod(d, 0o755)
    return d


# --------------------------------------------------------------------------
# sending into moatd
# --------------------------------------------------------------------------

class Refused(AssertionError):
    pass


def submit(moatd, rcpts, body=b"Subject: test\r\n\r\nhello\r\n", sender="sender@remote.test",
           mail_params="", rcpt_params=None, ehlo="client.test", conn=None):
    """One whole transaction into moatd; returns the queue id of its 250."""
    own = conn is None
    c = conn or moatd.connect()
    try:
        if own:
            r = c.cmd("EHLO " + ehlo)
            assert r.code == 250, r
        r = c.cmd("MAIL FROM:<%s>%s" % (sender, mail_params))
        if r.code != 250:
            raise Refused("MAIL: %r" % r)
        for rc in rcpts:
            p = (rcpt_params or {}).get(rc, "")
            r = c.cmd("RCPT TO:<%s>%s" % (rc, p))
            if r.code != 250:
                raise Refused("RCPT %s: %r" % (rc, r))
        r = c.cmd("DATA")
        if r.code != 354:
            raise Refused("DATA: %r" % r)
        stuffed = re.sub(rb"(?m)^\.", b"..", body)
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        c.send(stuffed + b".\r\n")
        r = c.reply()
        if r.code != 250:
            raise Refused("end of data: %r" % r)
        return QID.search(r.text).group(1)
    finally:
        if own:
            try:
                c.cmd("QUIT")
            except Exception:
                pass
            c.close()


def log_lines(moatd, event, qid=None):
    out = []
    for line in moatd.log().splitlines():
        if ("event=%s " % event) not in line and not line.endswith("event=%s" % event):
            continue
        if qid is not None and ("id=%s" % qid) not in line.split("dsn_id=")[0]:
            continue
        out.append(line)
    return out


def wait_for(cond, timeout, what, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def restart(moatd):
    """Start a stopped (or killed) moatd again; the harness waits for this
    run's own 'event=started' line."""
    moatd.start()


def wait_removed(moatd, qid, timeout=20.0):
    """Wait until the message left the queue; else fail with its own log lines."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log_lines(moatd, "removed", qid):
            return
        time.sleep(0.05)
    mine = [l for l in moatd.log().splitlines()
            if ("id=%s" % qid) in l and "event=retry" not in l and "level=debug" not in l]
    raise AssertionError("message %s still queued after %.0f s; its last log lines:\n  %s"
                         % (qid, timeout, "\n  ".join(l[:300] for l in mine[-4:])))


def wait_queue_empty(moatd, timeout=60.0):
    wait_for(lambda: not moatd.queue_ids(), timeout,
             "an empty queue (left: %d)" % len(moatd.queue_ids()))


# --------------------------------------------------------------------------
# aiosmtpd sink
# --------------------------------------------------------------------------

class ConnRec:
    def __init__(self, n):
        self.n = n
        self.tls = False
        self.cipher = None
        self.events = []  # command names in order ("EHLO", "MAIL", "RCPT", "DATA", "RSET", ...)
        self.txns = []
        self.open = True
        self.t_open = time.monotonic()
        self.t_close = None


class Txn:
    def __init__(self, conn, mail_from, mail_options, rcpts, rcpt_options, content, tls):
        self.conn = conn
        self.mail_from = mail_from
        self.mail_options = mail_options
        self.rcpts = rcpts
        self.rcpt_options = rcpt_options
        self.content = content
        self.tls = tls

    def subject(self):
        m = re.search(rb"(?m)^Subject: ([^\r\n]*)", self.content)
        return m.group(1).decode("utf-8", "replace") if m else None

    def __repr__(self):
        return "Txn(conn=%d, from=%r, to=%r, %d octets)" % (self.conn, self.mail_from, self.rcpts,
                                                         len(self.content))


class _RecSMTP(SMTP):
    def __init__(self, handler, sink, **kw):
        super().__init__(handler, **kw)
        self._sink = sink
        self._rec = None
        self._lost = False

    def connection_made(self, transport):
        upgrade = self._original_transport is not None
        super().connection_made(transport)
        if upgrade:
            if self._rec is not None:
                self._rec.tls = True
                try:
                    self._rec.cipher = transport.get_extra_info("cipher")
                except Exception:
                    pass
        else:
            self._rec = self._sink._conn_open()

    def connection_lost(self, error):
        if not self._lost and self._rec is not None:
            self._lost = True
            self._sink._conn_close(self._rec)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, sink, handler, **kw):
        self._sink = sink
        super().__init__(handler, **kw)

    def factory(self):
        return _RecSMTP(self.handler, self._sink, **self.SMTP_kwargs)


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    @staticmethod
    def _rec(server):
        return server._rec

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self._rec(server).events.append("EHLO")
        return self.sink.ehlo_filter(responses)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self._rec(server).events.append("MAIL")
        if self.sink.mail_policy:
            r = self.sink.mail_policy(address, mail_options)
            if r:
                return r
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rec = self._rec(server)
        rec.events.append("RCPT")
        r = self.sink.rcpt_policy(address) if self.sink.rcpt_policy else None
        with self.sink.lock:
            self.sink.rcpt_log.append((rec.n, address, r or "250"))
        if r:
            return r
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(list(rcpt_options))
        return "250 2.1.5 OK"

    async def handle_RSET(self, server, session, envelope):
        self._rec(server).events.append("RSET")
        return "250 2.0.0 OK"

    async def handle_NOOP(self, server, session, envelope, arg):
        self._rec(server).events.append("NOOP")
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server, session, envelope):
        self._rec(server).events.append("QUIT")
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server, session, envelope):
        rec = self._rec(server)
        rec.events.append("DATA")
        t = Txn(rec.n, envelope.mail_from, list(envelope.mail_options), list(envelope.rcpt_tos),
                list(envelope.rcpt_options), bytes(envelope.original_content), rec.tls)
        if self.sink.data_delay:
            import asyncio
            await asyncio.sleep(self.sink.data_delay)
        r = self.sink.data_policy(t) if self.sink.data_policy else None
        if r and not r.startswith("2"):
            return r
        with self.sink.lock:
            rec.txns.append(t)
            self.sink.txns.append(t)
        return r or "250 2.0.0 OK queued"


class Sink:
    """aiosmtpd on 127.0.0.1:port that records everything (see module doc)."""

    def __init__(self, port=None, tls_context=None, require_starttls=False, smtputf8=True,
                 ehlo_add=(), ehlo_drop=(), rcpt_policy=None, mail_policy=None,
                 data_policy=None, data_delay=0.0):
        self.port = port or free_port()
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.smtputf8 = smtputf8
        self.ehlo_add = list(ehlo_add)
        self.ehlo_drop = [x.upper() for x in ehlo_drop]
        self.rcpt_policy = rcpt_policy
        self.mail_policy = mail_policy
        self.data_policy = data_policy
        self.data_delay = data_delay
        self.lock = threading.Lock()
        self.controller = None
        self._reset()

    def _reset(self):
        with self.lock:
            self.conns = []
            self.txns = []
            self.rcpt_log = []  # (connection number, address, reply) for every RCPT
            self.live = 0
            self.max_live = 0

    def _conn_open(self):
        with self.lock:
            rec = ConnRec(len(self.conns))
            self.conns.append(rec)
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            return rec

    def _conn_close(self, rec):
        with self.lock:
            rec.open = False
            rec.t_close = time.monotonic()
            self.live -= 1

    def ehlo_filter(self, responses):
        last = responses[-1]
        body = [r[4:] for r in responses[1:-1]]
        body = [b for b in body if b.split(" ")[0].upper() not in self.ehlo_drop]
        body += self.ehlo_add
        out = [responses[0]] + ["250-" + b for b in body]
        out.append("250 " + last[4:])
        return out

    def start(self):
        kw = dict(hostname="127.0.0.1", port=self.port, server_hostname="sink.test",
                  enable_SMTPUTF8=self.smtputf8, decode_data=False,
                  data_size_limit=64 * 1024 * 1024, ready_timeout=10)
        if self.tls_context is not None:
            kw["tls_context"] = self.tls_context
            kw["require_starttls"] = self.require_starttls
        self._reset()
        self.controller = _Controller(self, _Handler(self), **kw)
        self.controller.start()
        # the controller's own readiness probe (it reads the banner and
        # closes, sending nothing) is not a client; a client already waiting
        # for the port (moat retrying) may connect and deliver before or
        # after it, so only the probe's record is dropped
        def probe():
            return next((c for c in self.conns if not c.open and not c.events and not c.txns),
                        None)
        wait_for(lambda: probe() is not None, 5, "the controller's probe to go")
        with self.lock:
            self.conns.remove(probe())
            self.live = sum(1 for c in self.conns if c.open)
            self.max_live = max(self.live, 1 if self.conns else 0)
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_txns(self, n, timeout=20.0):
        wait_for(lambda: len(self.txns) >= n, timeout,
                 "%d transactions at the sink (have %d)" % (n, len(self.txns)))
        return list(self.txns)

    def deliveries(self):
        """(rcpt, txn) for every recipient of every transaction."""
        with self.lock:
            return [(r, t) for t in self.txns for r in t.rcpts]

    def sessions_with_mail(self):
        with self.lock:
            return [c for c in self.conns if c.txns]


def max_concurrent(*sinks, lag=0.05):
    """The most connections that were open at once over all these sinks.

    A sink notices a close a moment after moat has closed (its event loop
    runs in another thread): closes count lag seconds earlier, far less
    than any transaction takes in the tests that use this."""
    ev = []
    for s in sinks:
        with s.lock:
            for c in s.conns:
                ev.append((c.t_open, 1))
                ev.append((c.t_close - lag if c.t_close is not None else float("inf"), -1))
    best = cur = 0
    for _, d in sorted(ev, key=lambda x: (x[0], x[1])):
        cur += d
        best = max(best, cur)
    return best


def tls_server_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# --------------------------------------------------------------------------
# raw wire sink
# --------------------------------------------------------------------------

class WireConn:
    def __init__(self, n):
        self.n = n
        self.cmds = []       # command lines as received (bytes, without CRLF)
        self.txns = []
        self.pipelined = []  # per MAIL: RCPT already on the wire before MAIL was answered
        self.after_quit = b""  # what the client sent after QUIT (before the 221)
        self.closed = False


class WireTxn:
    def __init__(self):
        self.mail = None
        self.rcpts = []
        self.wire_lines = []  # DATA: lines as on the wire, with CRLF
        self.content = b""
        self.bdat_chunks = []
        self.via = None  # "DATA" or "BDAT"


class WireSink:
    """A raw SMTP server recording the octets moat sends.

    ext: EHLO keywords offered. mail_delay: seconds to wait before answering
    MAIL (then it looks whether the RCPTs are already there). on_mail(conn,
    index of this MAIL on the connection) may return a reply; a 421 closes.
    quit_delay: seconds before the 221 to QUIT (a slow or far-away server).
    """

    def __init__(self, ext=("PIPELINING", "8BITMIME", "SIZE 104857600", "ENHANCEDSTATUSCODES"),
                 port=None, mail_delay=0.0, on_mail=None, quit_delay=0.0):
        self.port = port or free_port()
        self.quit_delay = quit_delay
        self.ext = list(ext)
        self.mail_delay = mail_delay
        self.on_mail = on_mail
        self.lock = threading.Lock()
        self.conns = []
        self.server = None

    def start(self):
        sink = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    sink._serve(self.request)
                except (OSError, ValueError):
                    pass

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = S(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def txns(self):
        with self.lock:
            return [t for c in self.conns for t in c.txns]

    def wait_txns(self, n, timeout=20.0):
        wait_for(lambda: len(self.txns()) >= n, timeout, "%d transactions at the wire sink" % n)
        return self.txns()

    def _serve(self, sock):
        sock.settimeout(30)
        with self.lock:
            conn = WireConn(len(self.conns))
            self.conns.append(conn)
        buf = bytearray()

        def fill(block=True):
            if not block:
                r, _, _ = select.select([sock], [], [], 0)
                if not r:
                    return True
            d = sock.recv(65536)
            if not d:
                return False
            buf.extend(d)
            return True

        def readline():
            while b"\n" not in buf:
                if not fill():
                    return None
            i = buf.index(b"\n") + 1
            line = bytes(buf[:i])
            del buf[:i]
            return line

        def read(n):
            while len(buf) < n:
                if not fill():
                    return None
            d = bytes(buf[:n])
            del buf[:n]
            return d

        def send(s):
            sock.sendall(s.encode() + b"\r\n")

        send("220 wire.test ESMTP")
        txn = None
        try:
            while True:
                line = readline()
                if line is None:
                    return
                cmd = line.rstrip(b"\r\n")
                conn.cmds.append(cmd)
                verb = cmd.split(b" ", 1)[0].upper()
                if verb in (b"EHLO",):
                    lines = ["wire.test"] + self.ext
                    for i, l in enumerate(lines):
                        send("250%s%s" % (" " if i == len(lines) - 1 else "-", l))
                elif verb == b"HELO":
                    send("250 wire.test")
                elif verb == b"MAIL":
                    idx = sum(1 for c in conn.cmds if c[:4].upper() == b"MAIL") - 1
                    if self.mail_delay:
                        time.sleep(self.mail_delay)
                        fill(block=False)
                        conn.pipelined.append(b"RCPT" in bytes(buf).upper())
                    r = self.on_mail(conn, idx) if self.on_mail else None
                    if r:
                        send(r)
                        if r.startswith("421"):
                            return
                        continue
                    txn = WireTxn()
                    txn.mail = cmd
                    send("250 2.1.0 Ok")
                elif verb == b"RCPT":
                    if txn is not None:
                        txn.rcpts.append(cmd)
                    send("250 2.1.5 Ok")
                elif verb == b"DATA":
                    send("354 go ahead")
                    lines = []
                    while True:
                        l = readline()
                        if l is None:
                            return
                        if l == b".\r\n":
                            break
                        lines.append(l)
                    txn.wire_lines = lines
                    txn.content = b"".join(l[1:] if l.startswith(b".") else l for l in lines)
                    txn.via = "DATA"
                    with self.lock:
                        conn.txns.append(txn)
                    txn = None
                    send("250 2.0.0 Ok queued")
                elif verb == b"BDAT":
                    parts = cmd.split()
                    n = int(parts[1])
                    data = read(n)
                    if data is None:
                        return
                    txn.bdat_chunks.append(n)
                    txn.content += data
                    if len(parts) > 2 and parts[2].upper() == b"LAST":
                        txn.via = "BDAT"
                        with self.lock:
                            conn.txns.append(txn)
                        txn = None
                        send("250 2.0.0 Ok queued")
                    else:
                        send("250 2.0.0 %d octets" % n)
                elif verb == b"RSET":
                    txn = None
                    send("250 2.0.0 Ok")
                elif verb == b"NOOP":
                    send("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    if self.quit_delay:
                        time.sleep(self.quit_delay)
                    fill(block=False)
                    conn.after_quit = bytes(buf)
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 unknown command")
        finally:
            conn.closed = True
            try:
                sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# Postfix smtp-sink
# --------------------------------------------------------------------------

class SmtpSink:
    """smtp-sink ARGS 127.0.0.1:port; dump=True keeps each transaction (-d)."""

    def __init__(self, args=(), port=None, dump_dir=None):
        self.port = port or free_port()
        self.args = list(args)
        self.dump_dir = dump_dir
        self.proc = None

    def start(self):
        cmd = ["smtp-sink", "-u", "postfix"] + self.args
        if self.dump_dir:
            os.makedirs(self.dump_dir, exist_ok=True)
            shutil.chown(self.dump_dir, "postfix", "postfix")
            cmd += ["-d", os.path.join(self.dump_dir, "%H%M%S.")]
        cmd += ["127.0.0.1:%d" % self.port, "128"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("smtp-sink exited: %s" % cmd)
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink does not listen: %s" % cmd)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def dumps(self):
        """[(headers dict of lists, raw bytes)] for each dumped transaction."""
        out = []
        if not self.dump_dir or not os.path.isdir(self.dump_dir):
            return out
        for name in sorted(os.listdir(self.dump_dir)):
            with open(os.path.join(self.dump_dir, name), "rb") as f:
                raw = f.read()
            hdrs = {}
            for line in raw.split(b"\n"):
                m = re.match(rb"^(X-[A-Za-z-]+): ?(.*)$", line.rstrip(b"\r"))
                if not m:
                    if line.startswith(b"Received:"):
                        break
                    continue
                hdrs.setdefault(m.group(1).decode(), []).append(m.group(2).decode("utf-8",
                                                                                  "replace"))
            out.append((hdrs, raw))
        return out


# --------------------------------------------------------------------------
# delivery reports
# --------------------------------------------------------------------------

def _fields(text):
    """RFC 822-style field blocks separated by blank lines -> [dict name.lower() -> value]."""
    blocks, cur, last = [], {}, None
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "":
            if cur:
                blocks.append(cur)
            cur, last = {}, None
            continue
        if line[0] in " \t" and last:
            cur[last] += " " + line.strip()
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            last = k.strip().lower()
            cur[last] = v.strip()
    if cur:
        blocks.append(cur)
    return blocks


class DSN:
    """A parsed delivery report: .msg (email.message, headers), .per_message,
    .rcpts (one dict per recipient block, lower-case names), .parts
    [(content type, header bytes, body bytes)] taken from the raw octets (the
    report may hold UTF-8, which the email package does not give back as it
    came)."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.per_message = {}
        self.rcpts = []
        self.parts = []
        self.report_type = None
        self.original_type = None
        self.original = None
        if self.msg.get_content_type() != "multipart/report":
            return
        boundary = self.msg.get_boundary().encode()
        chunks = raw.split(b"\r\n--" + boundary)
        for chunk in chunks[1:]:
            if chunk.startswith(b"--"):
                break
            chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
            head, _, body = chunk.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^Content-Type:\s*([^;\s]+)", head)
            ct = m.group(1).decode().lower() if m else "text/plain"
            self.parts.append((ct, head, body))
            if ct in ("message/delivery-status", "message/global-delivery-status"):
                self.report_type = ct
                blocks = _fields(body.decode("utf-8", "replace"))
                if blocks:
                    self.per_message = blocks[0]
                    self.rcpts = blocks[1:]
            elif ct in ("message/rfc822", "text/rfc822-headers", "message/global",
                        "message/global-headers"):
                self.original_type = ct
                self.original = body

    def final_recipients(self):
        return [r.get("final-recipient", "").split(";", 1)[-1].strip().lower()
                for r in self.rcpts]

    def rcpt(self, addr):
        for r in self.rcpts:
            if r.get("final-recipient", "").split(";", 1)[-1].strip().lower() == addr.lower():
                return r
        return None


# --------------------------------------------------------------------------
# a TestCase base
# --------------------------------------------------------------------------

class DeliveryCase(unittest.TestCase):
    """Helpers; subclasses start their own sinks and daemons."""

    def start_sink(self, sink):
        sink.start()
        self.addCleanup(sink.stop)
        return sink

    def start_moatd(self, conf, domains, name=None, start=True):
        m = Moatd(conf=conf, domains=domains, name=name or type(self).__name__)
        if start:
            m.start()
        self.addCleanup(m.stop)
        return m
