"""Test harness: runs the real moatd on loopback with a config of the test's own.

Every test gets a fresh data directory under tests/out/. Nothing is mocked:
the daemon is the binary the build produced (or $MOATD, e.g. the sanitizer
build), clients talk to it over real sockets.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
MOATD = os.environ.get("MOATD", os.path.join(ROOT, "build", "moatd"))
SLOWSYNC = os.path.join(os.path.dirname(MOATD), "tests", "slowsync.so")


def slow_sync_env(ms):
    """Environment for Moatd.start(): every fdatasync() takes ms longer."""
    env = {"LD_PRELOAD": SLOWSYNC, "SLOW_SYNC_MS": str(ms)}
    if "ASAN_OPTIONS" in os.environ:  # a preloaded library comes before the ASan runtime
        env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
    return env


def free_ports(n, family=socket.AF_INET):
    """n distinct free ports: all bound at once, so the kernel cannot hand one out twice."""
    socks = []
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_port(family=socket.AF_INET):
    return free_ports(1, family)[0]


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class SMTPRaw:
    """A raw SMTP client: sends exactly the bytes a test gives it."""

    def __init__(self, host, port, timeout=10.0, family=socket.AF_INET, greet=True):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit():
                raise ValueError("malformed reply line %r" % line)
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), lines)

    def closed(self, timeout=5.0):
        """True when the server closes the connection (after any pending replies)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def starttls(self, cafile=None, server_hostname="mx.moat.test"):
        ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""
        return self.sock

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


DEFAULT_DOMAINS = """
[domain example.test]
recipients = any
route = maildir

[domain listed.test]
recipients = alice, bob@listed.test
route = maildir
"""


class Moatd:
    """One moatd process with its own config and data directory."""

    def __init__(self, conf="", domains=DEFAULT_DOMAINS, name=None, binary=None, ipv6=False,
                 tls=None):
        os.makedirs(OUT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=(name or "moatd") + "-", dir=OUT)
        os.chmod(self.dir, 0o755)  # moatd may run as the unprivileged 'moat' user
        self.data = os.path.join(self.dir, "data")
        # a port of its own for the admin API too: the default 8025 would be
        # shared by every moatd a suite runs (a conf's admin_listen wins)
        self.port, self.admin_port = free_ports(2)
        self.port6 = free_port(socket.AF_INET6) if ipv6 else None
        self.binary = binary or MOATD
        self.conf_path = os.path.join(self.dir, "moat.conf")
        self.log_path = os.path.join(self.dir, "moatd.log")
        self.proc = None
        self.write_conf(conf, domains, tls)

    def write_conf(self, conf="", domains=DEFAULT_DOMAINS, tls=None):
        listen = "127.0.0.1:%d" % self.port
        if self.port6:
            listen += ", [::1]:%d" % self.port6
        text = ("hostname = mx.moat.test\n"
                "smtp_listen = %s\n"
                "data_dir = %s\n"
                "user = moat\n"
                "log_level = debug\n"
                "smtp_greeting_delay = 0\n"
                "admin_listen = 127.0.0.1:%d\n" % (listen, self.data, self.admin_port))
        if tls:
            text += "tls_cert = %s\ntls_key = %s\n" % tls
        text += conf + "\n" + domains
        with open(self.conf_path, "w") as f:
            f.write(text)

    def start(self, wait=True, expect_fail=False, env=None):
        self.log_mark = len(self.log())  # wait_ready looks at this run's lines only
        self.logf = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path], env=full_env,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        if expect_fail:
            self.proc.wait(timeout=20)
            return self.proc.returncode
        if wait:
            self.wait_ready()
        return None

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moatd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            if "event=started" in self.log()[self.log_mark:]:
                return
            time.sleep(0.02)
        raise RuntimeError("moatd did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            m = rx.search(self.log())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError("log never matched %r:\n%s" % (pattern, self.log()[-4000:]))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.logf.close()
        self.proc = None

    def connect(self, **kw):
        return SMTPRaw("127.0.0.1", self.port, **kw)

    def queue_ids(self):
        q = os.path.join(self.data, "queue")
        return sorted(os.listdir(q)) if os.path.isdir(q) else []

    def incoming(self):
        d = os.path.join(self.data, "incoming")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    @staticmethod
    def maildir_component(part):
        """The directory name moatd's maildir route uses for an address part."""
        out = []
        for i, c in enumerate(part.encode()):
            c = c + 32 if 65 <= c <= 90 else c
            if (97 <= c <= 122 or 48 <= c <= 57 or chr(c) in "-_+=" or (c == 46 and i > 0)):
                out.append(chr(c))
            else:
                out.append("%%%02x" % c)
        return "".join(out)

    def maildir(self, rcpt):
        local, domain = rcpt.rsplit("@", 1)
        d = os.path.join(self.data, "maildir", self.maildir_component(domain),
                         self.maildir_component(local), "new")
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
        return out

    def wait_maildir(self, rcpt, count=1, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.maildir(rcpt)
            if len(msgs) >= count:
                return msgs
            time.sleep(0.02)
        raise AssertionError("%s has %d messages, want %d\n%s" %
                             (rcpt, len(self.maildir(rcpt)), count, self.log()[-3000:]))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def send_simple(conn, sender="sender@remote.test", rcpts=("user@example.test",),
                body=b"Subject: test\r\n\r\nhello\r\n"):
    """A whole transaction over an already greeted SMTPRaw; returns the final reply."""
    r = conn.cmd("EHLO client.test")
    assert r.code == 250, r
    r = conn.cmd("MAIL FROM:<%s>" % sender)
    assert r.code == 250, r
    for rc in rcpts:
        r = conn.cmd("RCPT TO:<%s>" % rc)
        assert r.code == 250, r
    r = conn.cmd("DATA")
    assert r.code == 354, r
    conn.send(body + b".\r\n")
    return conn.reply()


def make_cert(directory, cn="mx.moat.test"):
    """A CA and a server certificate signed by it, made with the openssl CLI."""
    ca_key = os.path.join(directory, "ca.key")
    ca = os.path.join(directory, "ca.pem")
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    cert = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "ext.cnf")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", "/CN=moat test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=" + cn)
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s\n" % cn)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    for p in (key, cert, ca):
        os.chmod(p, 0o644)  # readable by the 'moat' user after the privilege drop
    return ca, cert, key


def load_then_kill(m, rcpt, senders=20, seconds=1.5, lines=2, on_kill=None):
    """Send tagged messages from `senders` threads for `seconds`, then kill -9
    moatd. Returns the tags of the messages that got a 250 (Subject: tag).
    on_kill(m) runs just before the kill (to note what was delivered)."""
    import threading

    acked, lock, stop = [], threading.Lock(), threading.Event()

    def sender(n):
        i = 0
        while not stop.is_set():
            try:
                c = SMTPRaw("127.0.0.1", m.port, timeout=5)
                c.cmd("EHLO s%d.test" % n)
                while not stop.is_set():
                    tag = "load-%d-%d" % (n, i)
                    i += 1
                    if c.cmd("MAIL FROM:<s@remote.test>").code != 250:
                        break
                    if c.cmd("RCPT TO:<%s>" % rcpt).code != 250:
                        break
                    if c.cmd("DATA").code != 354:
                        break
                    c.send(("Subject: %s\r\n\r\n%s.\r\n" % (tag, ("z" * 500 + "\r\n") * lines))
                           .encode())
                    if c.reply().code == 250:
                        with lock:
                            acked.append(tag)
            except (OSError, EOFError, ValueError):
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    if on_kill:
        on_kill(m)
    m.kill9()
    stop.set()
    for t in threads:
        t.join()
    with lock:
        return list(acked)
