"""A real DNS server for tests: Debian's unbound, on loopback, serving local
zones the test writes (no internet, no mocks)."""
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
UNBOUND = shutil.which("unbound", path="/usr/sbin:/usr/bin:/sbin:/bin")
CHECKCONF = shutil.which("unbound-checkconf", path="/usr/sbin:/usr/bin:/sbin:/bin")


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


def dns_query(name, qtype=1, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


class Unbound:
    """unbound serving records [(owner, type, rdata)] in static local zones.

    zones: the zones to serve ("example." by default; libunbound itself
    answers "test." with NXDOMAIN, RFC 6761, so tests use other names).
    extra: more lines for the server: section; tail: more sections.
    probe: a name that exists, to know when the server answers.
    """

    def __init__(self, records, zones=("example.",), extra=(), tail=(), probe=None, port=None):
        os.makedirs(OUT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="dns-", dir=OUT)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "unbound.conf")
        lines = [
            "server:",
            "\tinterface: 127.0.0.1",
            "\tport: %d" % self.port,
            "\tdo-daemonize: no",
            '\tusername: ""',
            '\tchroot: ""',
            '\tdirectory: "%s"' % self.dir,
            '\tpidfile: ""',
            "\tuse-syslog: no",
            '\tlogfile: ""',
            "\tverbosity: 1",
            "\tnum-threads: 1",
            "\tdo-ip6: no",
            '\tmodule-config: "iterator"',
            "\tdo-not-query-localhost: no",
            "\taccess-control: 127.0.0.0/8 allow",
        ]
        lines += ['\tlocal-zone: "%s" static' % z for z in zones]
        lines += ["\t" + l for l in extra]
        for owner, rtype, rdata in records:
            lines.append("\tlocal-data: '%s %s %s'" % (owner, rtype, rdata))
        lines += list(tail)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([CHECKCONF, self.conf], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("unbound-checkconf: " + r.stdout + r.stderr)
        self.log = open(os.path.join(self.dir, "unbound.log"), "w")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.wait_ready(probe or records[0][0])

    def wait_ready(self, name, timeout=10.0):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("unbound exited; see %s" % self.dir)
                s.sendto(dns_query(name), ("127.0.0.1", self.port))
                try:
                    data = s.recv(4096)
                except OSError:
                    continue
                if data[:2] == b"\x12\x34":
                    return
            raise RuntimeError("unbound did not answer; see %s" % self.dir)
        finally:
            s.close()

    @property
    def upstream(self):
        return "127.0.0.1@%d" % self.port

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
