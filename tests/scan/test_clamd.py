"""src/scan/scan_clamd.c against a real clamd (Debian's clamav-daemon with a
one-signature database, tests/lib/clamd_server.py), over its unix socket
and TCP, plus small servers of our own for what a real clamd will not do
on demand: hang, never read, answer garbage or a hostile signature name.
The check is driven through build/tests/unit/scan_probe ($SCAN_PROBE to
test another build, e.g. the sanitizer one).

Run: python3 tests/lib/runner.py scan tests/scan
"""
import base64
import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zipfile
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from clamd_server import EICAR, SIGNATURE, Clamd, free_tcp_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
PROBE = os.environ.get("SCAN_PROBE", os.path.join(ROOT, "build", "tests", "unit", "scan_probe"))
FOUND = SIGNATURE + ".UNOFFICIAL"  # clamd's name for a signature of an unofficial database


def probe(check, config, data, args=(), timeout=60):
    """Run scan_probe; returns (symbols {NAME: (score, detail)}, tempfail reason or None,
    seconds, stderr)."""
    os.makedirs(OUT, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=OUT, prefix="msg-", suffix=".eml") as f:
        f.write(data)
        f.flush()
        cmd = [PROBE] + list(args) + [check] + ["%s=%s" % kv for kv in config.items()] + [f.name]
        start = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
        took = time.monotonic() - start
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0 or not out.endswith("done\n"):
        raise AssertionError("scan_probe failed (%d): %s %s" % (r.returncode, out,
                                                               r.stderr.decode()))
    syms, tempfail = {}, None
    for line in out.splitlines():
        if line.startswith("sym "):
            _, name, score, detail = line.split(" ", 3)
            syms[name] = (float(score), detail)
        elif line.startswith("tempfail "):
            tempfail = line[len("tempfail "):]
    return syms, tempfail, took, r.stderr.decode("utf-8", "replace")


# --- messages ---

HEAD = (b"From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\n"
        b"Subject: test\r\nMessage-ID: <1@sender.example>\r\nMIME-Version: 1.0\r\n")


def b64(data):
    s = base64.b64encode(data)
    return b"\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def qp_all(data):
    """Quoted-printable with every octet encoded (legal, RFC 2045 6.7), soft breaks at 75."""
    enc = "".join("=%02X" % b for b in data)
    lines, line = [], ""
    for i in range(0, len(enc), 3):
        if len(line) + 3 > 72:
            lines.append(line + "=")
            line = ""
        line += enc[i:i + 3]
    lines.append(line)
    return "\r\n".join(lines).encode()


def multipart(parts, boundary=b"b1", subtype=b"mixed"):
    out = b"Content-Type: multipart/%s; boundary=\"%s\"\r\n\r\nThis is MIME.\r\n" % (subtype,
                                                                                boundary)
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


TEXT_PART = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello, see attached.\r\n"


def attachment(data, name=b"file.bin", ctype=b"application/octet-stream", disp=None):
    disp = disp or b'attachment; filename="%s"' % name
    return (b"Content-Type: %s\r\nContent-Disposition: %s\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n" % (ctype, disp, b64(data)))


def message(body):
    return HEAD + body


def zip_of(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


class ZipCrypto:
    """PKWARE traditional encryption (APPNOTE.TXT 6.1), which Python's zipfile only reads."""

    def __init__(self, password):
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for c in password:
            self.update(c)

    @staticmethod
    def crc(c, b):
        return zlib.crc32(bytes([b]), c ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def update(self, b):
        k = self.k
        k[0] = self.crc(k[0], b)
        k[1] = (k[1] + (k[0] & 0xFF)) & 0xFFFFFFFF
        k[1] = (k[1] * 134775813 + 1) & 0xFFFFFFFF
        k[2] = self.crc(k[2], k[1] >> 24)

    def encrypt(self, data):
        out = bytearray()
        for b in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(b ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self.update(b)
        return bytes(out)


def encrypted_zip(name, data, password=b"infected"):
    """A one-entry stored zip encrypted with ZipCrypto."""
    crc = zlib.crc32(data)
    header12 = os.urandom(11) + bytes([crc >> 24])
    payload = ZipCrypto(password).encrypt(header12 + data)
    fname = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0, crc, len(payload),
                        len(data), len(fname), 0) + fname + payload
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0, crc,
                          len(payload), len(data), len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end


def clean_message():
    return message(multipart([TEXT_PART, attachment(b"%PDF-1.4\n% harmless\n" * 20,
                                                    b"report.pdf", b"application/pdf")]))


def eicar_messages():
    """(name, message) that each carry EICAR in a different wrapping."""
    nested_inner = (b"From: x@y.example\r\nSubject: inner\r\nMIME-Version: 1.0\r\n" +
                    multipart([TEXT_PART, attachment(EICAR, b"eicar.com")], b"inner"))
    return [
        ("plain", message(b"Content-Type: text/plain\r\n\r\n" + EICAR + b"\r\n")),
        ("base64", message(multipart([TEXT_PART, attachment(EICAR, b"eicar.com")]))),
        ("quoted-printable", message(multipart([
            TEXT_PART, b"Content-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"eicar.txt\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp_all(EICAR) + b"\r\n"]))),
        ("zip", message(multipart([TEXT_PART, attachment(zip_of("eicar.com", EICAR * 3),
                                                          b"invoice.zip",
                                                          b"application/zip")]))),
        ("nested multipart", message(multipart([
            multipart([TEXT_PART, b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n"], b"alt",
                      b"alternative"),
            multipart([b"Content-Type: message/rfc822\r\n\r\n" + nested_inner], b"deeper"),
        ], b"outer"))),
        ("rfc2231 name", message(multipart([TEXT_PART, attachment(
            EICAR, disp=b"attachment; filename*0*=UTF-8''%E2%82%AC%20r%C3%A9;"
                        b" filename*1*=sum%C3%A9.com")]))),
    ]


# --- servers of our own ---

def read_instream(conn):
    """Read "zINSTREAM\\0" and the chunks; returns (command, data, chunk sizes)."""
    f = conn.makefile("rb")
    cmd = b""
    while not cmd.endswith(b"\0"):
        c = f.read(1)
        if not c:
            return cmd, None, []
        cmd += c
    data, sizes = b"", []
    while True:
        h = f.read(4)
        if len(h) < 4:
            return cmd, None, sizes
        n = struct.unpack("!I", h)[0]
        sizes.append(n)
        if n == 0:
            return cmd, data, sizes
        chunk = f.read(n)
        if len(chunk) < n:
            return cmd, None, sizes
        data += chunk


class FakeClamd:
    """A listener on a unix socket, 127.0.0.1 or ::1; handler(conn, server) per connection.
    accept=False: listen but never accept (the kernel completes TCP handshakes)."""

    def __init__(self, handler, family="unix", accept=True):
        self.handler = handler
        self.stopping = threading.Event()
        self.received = []  # (command, data, sizes) of each stream read by a handler
        if family == "unix":
            self.dir = tempfile.mkdtemp(prefix="fakeclamd-", dir=OUT)
            path = os.path.join(self.dir, "s")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.spec = "unix:" + path
        elif family == "tcp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.spec = "tcp:127.0.0.1:%d" % self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            self.sock.bind(("::1", 0))
            self.spec = "tcp:[::1]:%d" % self.sock.getsockname()[1]
        self.sock.listen(8)
        self.conns = []
        if accept:
            threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.run, args=(conn,), daemon=True).start()

    def run(self, conn):
        try:
            self.handler(conn, self)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def replies(reply):
    """A handler that reads the whole stream, then answers reply and closes."""
    def handler(conn, server):
        server.received.append(read_instream(conn))
        conn.sendall(reply)
    return handler


def hangs(conn, server):
    """Reads the whole stream and never answers."""
    server.received.append(read_instream(conn))
    server.stopping.wait(30)


def early_limit(conn, server):
    """Answers like clamd past StreamMaxLength: after the first chunk, then closes."""
    conn.recv(16)
    conn.sendall(b"INSTREAM size limit exceeded. ERROR\0")
    conn.shutdown(socket.SHUT_WR)
    time.sleep(0.2)


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class ClamdRealTest(unittest.TestCase):
    """The check against a real clamd."""

    @classmethod
    def setUpClass(cls):
        cls.clamd = Clamd(max_file_size="1M", max_scan_size="2M", stream_max_length="4M")

    @classmethod
    def tearDownClass(cls):
        cls.clamd.stop()

    def scan(self, data, spec=None, args=(), **config):
        config.setdefault("clamd", spec or self.clamd.unix_spec)
        return probe("clamd", config, data, args)

    def test_eicar_found(self):
        for name, msg in eicar_messages():
            for spec in (self.clamd.unix_spec, self.clamd.tcp_spec):
                with self.subTest(message=name, clamd=spec.split(":")[0]):
                    syms, tempfail, _, _ = self.scan(msg, spec)
                    self.assertIsNone(tempfail)
                    self.assertEqual(syms, {"CLAM_VIRUS": (0.0, FOUND)})

    def test_clean(self):
        cases = [
            ("text and pdf", clean_message()),
            ("zip of text", message(multipart([TEXT_PART, attachment(
                zip_of("a.txt", b"just text\n" * 100), b"a.zip", b"application/zip")]))),
            ("empty", b""),
            ("almost eicar", message(b"\r\n" + EICAR[:-1] + b"\r\n")),
        ]
        for name, msg in cases:
            with self.subTest(message=name):
                syms, tempfail, _, _ = self.scan(msg)
                self.assertEqual((syms, tempfail), ({}, None))

    def test_host_name(self):
        """A name: every address is tried (localhost may be ::1 first; clamd has 127.0.0.1)."""
        syms, tempfail, _, _ = self.scan(eicar_messages()[0][1],
                                         "tcp:localhost:%d" % self.clamd.port)
        self.assertEqual((syms, tempfail), ({"CLAM_VIRUS": (0.0, FOUND)}, None))

    def test_release_still_scanned(self):
        syms, tempfail, _, _ = self.scan(eicar_messages()[1][1], args=["-R"])
        self.assertEqual((syms, tempfail), ({"CLAM_VIRUS": (0.0, FOUND)}, None))

    def test_encrypted_zip(self):
        z = encrypted_zip("secret.doc", b"nothing to see here\n" * 50)
        with zipfile.ZipFile(io.BytesIO(z)) as check:  # the archive is well formed
            self.assertEqual(check.read("secret.doc", pwd=b"infected"),
                             b"nothing to see here\n" * 50)
        msg = message(multipart([TEXT_PART, attachment(z, b"secret.zip", b"application/zip")]))
        syms, tempfail, _, _ = self.scan(msg)
        self.assertIsNone(tempfail)
        self.assertEqual(list(syms), ["CLAM_ENCRYPTED"])
        self.assertTrue(syms["CLAM_ENCRYPTED"][1].startswith("Heuristics.Encrypted"), syms)
        self.assertEqual(syms["CLAM_ENCRYPTED"][0], 4.0)

    def test_limits_exceeded(self):
        # 1.5 MB of incompressible data: over MaxFileSize (1M), under StreamMaxLength (4M)
        big = os.urandom(1536 * 1024)
        msg = message(multipart([TEXT_PART, attachment(big, b"big.bin")]))
        syms, tempfail, _, _ = self.scan(msg)
        self.assertIsNone(tempfail)
        self.assertEqual(list(syms), ["CLAM_LIMITS_EXCEEDED"])
        self.assertTrue(syms["CLAM_LIMITS_EXCEEDED"][1].startswith("Heuristics.Limits.Exceeded"),
                        syms)

    def test_stream_too_long(self):
        # 5 MB: clamd stops reading at StreamMaxLength (4M) and says so
        msg = message(b"\r\n" + (b"x" * 998 + b"\r\n") * 5000)
        for spec in (self.clamd.unix_spec, self.clamd.tcp_spec):
            with self.subTest(clamd=spec.split(":")[0]):
                syms, tempfail, _, _ = self.scan(msg, spec)
                self.assertIsNone(tempfail)
                self.assertEqual(syms, {"CLAM_LIMITS_EXCEEDED": (4.0,
                                                                 "INSTREAM size limit exceeded")})

    def test_parallel(self):
        """Several scans at once, as the worker threads do."""
        msgs = [m for _, m in eicar_messages()] + [clean_message()] * 4
        results = [None] * len(msgs)

        def one(i):
            results[i] = self.scan(msgs[i])[:2]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(msgs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, r in enumerate(results):
            want = ({"CLAM_VIRUS": (0.0, FOUND)}, None) if i < 6 else ({}, None)
            self.assertEqual(r, want, i)


class ClamdUnavailableTest(unittest.TestCase):
    """clamd down, hung, slow to read or broken: tempfail when required, else nothing."""

    def check_fails(self, spec, reason_part, max_seconds=5.0, args=(), data=None, raw=False,
                    **config):
        """raw: set clamd past the configuration parser (which refuses bad specs)."""
        data = data if data is not None else clean_message()
        for required in ("yes", "no"):
            with self.subTest(clamd=spec, required=required):
                cfg = dict(clamd_required=required, **config)
                if raw:
                    run_args = list(args) + ["-C", spec]
                else:
                    run_args = args
                    cfg["clamd"] = spec
                syms, tempfail, took, err = probe("clamd", cfg, data, run_args)
                self.assertEqual(syms, {})
                self.assertLess(took, max_seconds)
                self.assertIn("event=clamd_failed", err)
                if required == "yes":
                    self.assertIsNotNone(tempfail)
                    self.assertTrue(tempfail.startswith("clamd unavailable: "), tempfail)
                    self.assertIn(reason_part, tempfail)
                else:
                    self.assertIsNone(tempfail)

    def test_socket_missing(self):
        self.check_fails("unix:" + os.path.join(OUT, "no-such-dir", "clamd.sock"),
                         "No such file")

    def test_connection_refused(self):
        self.check_fails("tcp:127.0.0.1:%d" % free_tcp_port(), "refused")

    def test_bad_spec(self):
        for spec, why in [("clamd.sock", "not unix:PATH"), ("tcp:127.0.0.1", "no port"),
                          ("tcp:[::1]", "bad [address]"), ("unix:", "path"),
                          ("unix:/" + "x" * 200, "too long"), ("tcp::3310", "bad host")]:
            self.check_fails(spec, why, raw=True)

    def test_hung(self):
        """Accepts, reads everything, never answers: clamd_timeout ends the wait."""
        for family in ("unix", "tcp"):
            srv = FakeClamd(hangs, family)
            try:
                self.check_fails(srv.spec, "timed out waiting for the reply", 3.0,
                                 clamd_timeout="1s")
                _, tempfail, took, _ = probe("clamd", dict(clamd=srv.spec, clamd_timeout="1s"),
                                             clean_message())
                self.assertIsNotNone(tempfail)
                self.assertGreaterEqual(took, 0.9)  # it did wait clamd_timeout
            finally:
                srv.stop()

    def test_scan_deadline(self):
        """The scan's deadline is nearer than clamd_timeout: it wins."""
        srv = FakeClamd(hangs, "unix")
        try:
            self.check_fails(srv.spec, "timed out", 2.5, args=["-d", "600"], clamd_timeout="60s")
            # already past: no connection at all
            self.check_fails(srv.spec, "deadline passed", 1.0, args=["-d", "0"])
        finally:
            srv.stop()

    def test_never_reads(self):
        """A clamd that never accepts: sending 3 MB blocks, clamd_timeout ends it."""
        srv = FakeClamd(None, "tcp", accept=False)
        try:
            self.check_fails(srv.spec, "timed out sending", 3.5,
                             data=message(b"\r\n" + os.urandom(3 << 20).hex().encode()),
                             clamd_timeout="1s")
        finally:
            srv.stop()

    def test_bad_replies(self):
        cases = [
            (b"stream: lstat() failed: No such file. ERROR\0", "error"),
            (b"stream: Can't allocate memory ERROR\0", "error"),
            (b"garbage\0", "unexpected reply"),
            (b"\0", "unexpected reply"),
            (b" FOUND\0", "unexpected reply"),
            (b"stream: FOUND\0", "unexpected reply"),
            (b"stream: OKAY\0", "unexpected reply"),
            (b"UNKNOWN COMMAND\n", "unexpected reply"),
            (b"", "closed without a reply"),
            (b"x" * 5000, "too long"),
            (b"stream: \x00OK\0", "unexpected reply"),
        ]
        for reply, why in cases:
            srv = FakeClamd(replies(reply), "unix")
            try:
                self.check_fails(srv.spec, why)
            finally:
                srv.stop()


class ClamdProtocolTest(unittest.TestCase):
    """What moat sends, and how it reads answers a real clamd gives only rarely."""

    def test_framing(self):
        srv = FakeClamd(replies(b"stream: OK\0"), "unix")
        try:
            for size in (0, 1, 65535, 65536, 65537, 300000):
                with self.subTest(size=size):
                    data = os.urandom(size)
                    syms, tempfail, _, _ = probe("clamd", dict(clamd=srv.spec), data)
                    self.assertEqual((syms, tempfail), ({}, None))
                    cmd, got, sizes = srv.received[-1]
                    self.assertEqual(cmd, b"zINSTREAM\0")
                    self.assertEqual(got, data)
                    self.assertEqual(sizes[-1], 0)
                    self.assertTrue(all(0 < n <= 65536 for n in sizes[:-1]), sizes)
        finally:
            srv.stop()

    def test_found_names(self):
        long_name = "A" * 1000
        cases = [
            (b"stream: Win.Trojan.Agent-123 FOUND\0", "CLAM_VIRUS", 0.0, "Win.Trojan.Agent-123"),
            (b"Win.Trojan.Agent-123 FOUND\0", "CLAM_VIRUS", 0.0, "Win.Trojan.Agent-123"),
            (b"stream: Heuristics.Encrypted.PDF FOUND\0", "CLAM_ENCRYPTED", 4.0,
             "Heuristics.Encrypted.PDF"),
            (b"stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND\0", "CLAM_LIMITS_EXCEEDED",
             4.0, "Heuristics.Limits.Exceeded.MaxRecursion"),
            (b"stream: Heuristics.OLE2.Exceeded.MaxFiles FOUND\0", "CLAM_LIMITS_EXCEEDED", 4.0,
             "Heuristics.OLE2.Exceeded.MaxFiles"),
            (b"stream: Evil\x1b[31m\r\nX\xff\xfeY FOUND\0", "CLAM_VIRUS", 0.0, "Evil?[31m??X??Y"),
            (b"stream: Bad Name With Spaces FOUND\0", "CLAM_VIRUS", 0.0, "Bad?Name?With?Spaces"),
            (b"stream: " + long_name.encode() + b" FOUND\0", "CLAM_VIRUS", 0.0, "A" * 128),
            (b"stream: Eicar FOUND\0stream: Other FOUND\0", "CLAM_VIRUS", 0.0, "Eicar"),
            (b"stream: Eicar FOUND", "CLAM_VIRUS", 0.0, "Eicar"),  # EOF without NUL
            (b"stream: Eicar FOUND\n\0", "CLAM_VIRUS", 0.0, "Eicar"),
            (b"INSTREAM size limit exceeded. ERROR\0", "CLAM_LIMITS_EXCEEDED", 4.0,
             "INSTREAM size limit exceeded"),
        ]
        for reply, sym, score, detail in cases:
            with self.subTest(reply=reply[:60]):
                srv = FakeClamd(replies(reply), "unix")
                try:
                    syms, tempfail, _, _ = probe("clamd", dict(clamd=srv.spec), clean_message())
                    self.assertEqual((syms, tempfail), ({sym: (score, detail)}, None))
                finally:
                    srv.stop()

    def test_early_reply(self):
        """clamd answers before the stream ends (size limit) and closes: moat reads it."""
        data = message(b"\r\n" + os.urandom(3 << 20).hex().encode())
        for family in ("unix", "tcp"):
            with self.subTest(family=family):
                srv = FakeClamd(early_limit, family)
                try:
                    syms, tempfail, _, _ = probe("clamd", dict(clamd=srv.spec), data)
                    self.assertIsNone(tempfail)
                    self.assertEqual(list(syms), ["CLAM_LIMITS_EXCEEDED"])
                finally:
                    srv.stop()

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6(self):
        srv = FakeClamd(replies(b"stream: Test.Sig FOUND\0"), "tcp6")
        try:
            syms, tempfail, _, _ = probe("clamd", dict(clamd=srv.spec), clean_message())
            self.assertEqual((syms, tempfail), ({"CLAM_VIRUS": (0.0, "Test.Sig")}, None))
        finally:
            srv.stop()

    def test_not_configured(self):
        syms, tempfail, _, err = probe("clamd", dict(clamd_required="yes"),
                                       message(b"\r\n" + EICAR))
        self.assertEqual((syms, tempfail), ({}, None))
        self.assertNotIn("clamd_failed", err)


if __name__ == "__main__":
    unittest.main()
