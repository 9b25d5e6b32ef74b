"""src/dns/dns.c against a real DNS server: Debian's unbound daemon on
loopback, serving local zones this file writes, plus two tiny servers of
our own on UDP sockets: one that never answers (timeouts) and one that
answers SERVFAIL to everything. Nothing is mocked; the resolver under
test is driven through build/tests/unit/dns_probe ($DNS_PROBE to test
another build, e.g. the sanitizer one).

Run: python3 tests/lib/runner.py dns tests/dns
"""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from unbound_server import Unbound, dns_query, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
PROBE = os.environ.get("DNS_PROBE", os.path.join(ROOT, "build", "tests", "unit", "dns_probe"))
UNBOUND = shutil.which("unbound", path="/usr/sbin:/usr/bin:/sbin:/bin")
CHECKCONF = shutil.which("unbound-checkconf", path="/usr/sbin:/usr/bin:/sbin:/bin")

# The zone: (owner, type, rdata). "example." resolves normally in every
# resolver (RFC 6761 6.5), unlike "test." which libunbound answers itself.
RECORDS = [
    ("a.example.", "MX", "10 mx1.a.example."),
    ("a.example.", "MX", "20 mx2.a.example."),
    ("mx1.a.example.", "A", "127.0.0.2"),
    ("mx2.a.example.", "A", "127.0.0.3"),
    ("mx2.a.example.", "AAAA", "::3"),
    ("implicit.example.", "A", "127.0.0.5"),
    ("implicit6.example.", "AAAA", "::5"),
    ("empty.example.", "TXT", '"no mail here"'),
    ("nullmx.example.", "MX", "0 ."),
    ("mixed-null.example.", "MX", "0 ."),
    ("mixed-null.example.", "MX", "10 mx1.a.example."),
    ("noaddr.example.", "MX", "10 mx.noaddr.example."),
    ("noaddr.example.", "MX", "20 missing.noaddr.example."),
    ("noaddr.example.", "MX", "30 mx1.a.example."),
    ("mx.noaddr.example.", "TXT", '"a host without an address"'),
    ("dangling.example.", "MX", "10 missing.dangling.example."),
    ("ip.example.", "MX", "10 192.0.2.1."),
    ("ip.example.", "MX", "20 mx1.a.example."),
    ("dup.example.", "MX", "10 mx1.a.example."),
    ("dup.example.", "MX", "20 MX1.a.example."),
    ("dup.example.", "MX", "5 mx2.a.example."),
    ("slowmx.example.", "MX", "10 mx1.a.example."),
    ("slowmx.example.", "MX", "20 mx.slow."),
    ("sfmx.example.", "MX", "10 mx.sf."),
    ("sfmx.example.", "MX", "20 mx1.a.example."),
    ("alias.example.", "CNAME", "mx1.a.example."),
    ("chain.example.", "CNAME", "alias.example."),
    ("mxalias.example.", "CNAME", "a.example."),
    ("dual.example.", "A", "127.0.0.7"),
    ("dual.example.", "AAAA", "::7"),
    ("v6.example.", "AAAA", "2001:db8::1"),
    ("txt.example.", "TXT", '"v=spf1 " "ip4:192.0.2.0/24" " -all"'),
    ("multi.example.", "TXT", '"one"'),
    ("multi.example.", "TXT", '"two" "three"'),
    ("nul.example.", "TXT", '"ok"'),
    ("nul.example.", "TXT", '"bad\\000x"'),
    ("_dmarc.dkim.example.", "TXT", '"v=DMARC1; p=reject"'),
]
EQ_HOSTS = ["h%d.eq.example" % i for i in range(1, 5)]
for i, h in enumerate(EQ_HOSTS):
    RECORDS.append(("eq.example.", "MX", "10 %s." % h))
    RECORDS.append((h + ".", "A", "127.0.1.%d" % (i + 1)))
# 20 MX, listed in a random order: the 16 lowest preferences are kept
MANY = [("many.example.", "MX", "%d h%d.many.example." % (i * 10, i)) for i in range(1, 21)]
random.Random(7).shuffle(MANY)
RECORDS += MANY
for i in range(1, 11):
    RECORDS.append(("manyaddr.example.", "A", "127.0.2.%d" % i))
    RECORDS.append(("manyaddr.example.", "AAAA", "::2:%d" % i))
for i in range(40):
    RECORDS.append(("txtmany.example.", "TXT", '"record %02d"' % i))
# 4 KiB of TXT (a DKIM key or two): more than a UDP answer holds, so over TCP
BIG = [("%d" % i) * 200 + "." + ("%d" % i) * 200 for i in range(10)]
for b in BIG:
    RECORDS.append(("big.example.", "TXT", '"%s" "%s"' % tuple(b.split("."))))
# a private reverse zone: libunbound must ask the upstream, not answer itself
RECORDS.append(("1.0.0.10.in-addr.arpa.", "TXT", '"private"'))


NAME_253 = ".".join(["x" * 63] * 3 + ["x" * 53, "example"])
assert len(NAME_253) == 253


class ServfailServer:
    """Answers every UDP query with SERVFAIL."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(data) < 12:
                continue
            qid, flags = struct.unpack("!HH", data[:4])
            # QR, opcode and RD copied, RA, rcode 2; the question echoed
            end = 12
            while end < len(data) and data[end] != 0:
                end += data[end] + 1
            question = data[12:end + 5]
            hdr = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0080 | 2, 1, 0, 0, 0)
            try:
                self.sock.sendto(hdr + question, peer)
            except OSError:
                return

    def close(self):
        self.sock.close()


def start_unbound(blackhole_port, servfail_port):
    """unbound serving RECORDS; "slow." goes to a socket that never answers,
    "sf." to the SERVFAIL server."""
    return Unbound(RECORDS, zones=("example.",),
                   extra=('local-zone: "refused.example." refuse',
                          'local-zone: "10.in-addr.arpa." static'),
                   tail=("stub-zone:", '\tname: "slow."', "\tstub-addr: 127.0.0.1@%d" % blackhole_port,
                         "stub-zone:", '\tname: "sf."', "\tstub-addr: 127.0.0.1@%d" % servfail_port),
                   probe="mx1.a.example")


class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        self.lines = out.splitlines()

    def __repr__(self):
        return "rc=%d elapsed=%.2f\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.elapsed, self.out,
                                                                   self.err[-3000:])


def parse_addrs(field):
    return [] if field == "-" else field.split(",")


def parse_mx(lines):
    """{name: {status, null, implicit, hosts: [(pref, name, status, [addrs])]}}"""
    res, cur = {}, None
    for line in lines:
        f = line.split(" ")
        if f[0] == "mx":
            cur = {"status": f[2], "null": f[3] == "null=1", "implicit": f[4] == "implicit=1",
                   "n": int(f[5][2:]), "hosts": []}
            res.setdefault(urllib.parse.unquote(f[1]), []).append(cur)
        elif f[0] == "host":
            cur["hosts"].append((int(f[1]), f[2], f[3], parse_addrs(f[4])))
    return res


def parse_addr(lines):
    res = {}
    for line in lines:
        f = line.split(" ")
        if f[0] == "addr":
            res.setdefault(urllib.parse.unquote(f[1]), []).append((f[2], parse_addrs(f[3])))
    return res


def parse_txt(lines):
    res, cur = {}, None
    for line in lines:
        f = line.split(" ")
        if f[0] == "txt":
            cur = {"status": f[2], "truncated": f[3] == "truncated=1", "recs": []}
            res.setdefault(urllib.parse.unquote(f[1]), []).append(cur)
        elif f[0] == "rec":
            cur["recs"].append(bytes.fromhex(f[1]) if len(f) > 1 else b"")
    return res


class DnsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.access(PROBE, os.X_OK):
            raise RuntimeError("no probe at %s (build first)" % PROBE)
        if UNBOUND is None or CHECKCONF is None:
            raise RuntimeError("unbound is not installed (apt-get install unbound)")
        cls.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.blackhole.bind(("127.0.0.1", 0))  # never read: queries go unanswered
        cls.bh_port = cls.blackhole.getsockname()[1]
        cls.servfail = ServfailServer()
        cls.server = start_unbound(cls.bh_port, cls.servfail.port)
        cls.upstream = "127.0.0.1@%d" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.servfail.close()
        cls.blackhole.close()

    def probe(self, *args, upstream=None, timeout_ms=2000, expect_rc=0):
        cmd = [PROBE, "-u", upstream or self.upstream, "-t", str(timeout_ms)] + list(args)
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        r = Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
        self.assertEqual(r.rc, expect_rc, r)
        self.assertNotIn("Sanitizer", r.err, r)
        self.assertNotIn("runtime error", r.err, r)
        return r

    def mx(self, *names, **kw):
        r = self.probe("mx", *names, **kw)
        return parse_mx(r.lines), r

    # --- MX ----------------------------------------------------------------

    def test_mx_table(self):
        """got the MX result of each domain, want the hosts in order."""
        ok = "ok"
        cases = [
            # domain, status, null, implicit, [(pref, host, addr_status, addrs)]
            ("a.example", ok, False, False,
             [(10, "mx1.a.example", ok, ["127.0.0.2"]),
              (20, "mx2.a.example", ok, ["::3", "127.0.0.3"])]),
            ("a.example.", ok, False, False,
             [(10, "mx1.a.example", ok, ["127.0.0.2"]),
              (20, "mx2.a.example", ok, ["::3", "127.0.0.3"])]),
            ("implicit.example", ok, False, True, [(0, "implicit.example", ok, ["127.0.0.5"])]),
            ("implicit6.example", ok, False, True, [(0, "implicit6.example", ok, ["::5"])]),
            # an alias without MX: its canonical name is the implicit MX
            ("alias.example", ok, False, True, [(0, "mx1.a.example", ok, ["127.0.0.2"])]),
            # an alias of a domain with MX records: those records
            ("mxalias.example", ok, False, False,
             [(10, "mx1.a.example", ok, ["127.0.0.2"]),
              (20, "mx2.a.example", ok, ["::3", "127.0.0.3"])]),
            ("empty.example", "nodata", False, False, []),
            ("nx.example", "nxdomain", False, False, []),
            ("nullmx.example", ok, True, False, []),
            ("mixed-null.example", ok, False, False, [(10, "mx1.a.example", ok, ["127.0.0.2"])]),
            ("noaddr.example", ok, False, False,
             [(10, "mx.noaddr.example", "nodata", []),
              (20, "missing.noaddr.example", "nxdomain", []),
              (30, "mx1.a.example", ok, ["127.0.0.2"])]),
            ("dangling.example", ok, False, False,
             [(10, "missing.dangling.example", "nxdomain", [])]),
            ("ip.example", ok, False, False,
             [(10, "192.0.2.1", "permfail", []), (20, "mx1.a.example", ok, ["127.0.0.2"])]),
            ("dup.example", ok, False, False,
             [(5, "mx2.a.example", ok, ["::3", "127.0.0.3"]),
              (10, "mx1.a.example", ok, ["127.0.0.2"])]),
            ("sfmx.example", ok, False, False,
             [(10, "mx.sf", "tempfail", []), (20, "mx1.a.example", ok, ["127.0.0.2"])]),
            ("x.sf", "tempfail", False, False, []),
            ("x.refused.example", "tempfail", False, False, []),
        ]
        got, r = self.mx(*[c[0] for c in cases])
        for name, status, null, implicit, hosts in cases:
            with self.subTest(domain=name):
                self.assertIn(name, got, r)
                res = got[name][0]
                # names keep the case the server sent
                hosts_lc = [(p, h.lower(), s, a) for p, h, s, a in res["hosts"]]
                self.assertEqual((res["status"], res["null"], res["implicit"], hosts_lc),
                                 (status, null, implicit, hosts), r)

    def test_mx_preference_order_and_random_ties(self):
        got, r = self.mx(*(["eq.example"] * 40 + ["a.example"] * 10))
        orders = set()
        for res in got["eq.example"]:
            self.assertEqual(res["status"], "ok")
            self.assertEqual([h[0] for h in res["hosts"]], [10] * 4)
            self.assertEqual(sorted(h[1] for h in res["hosts"]), EQ_HOSTS)
            orders.add(tuple(h[1] for h in res["hosts"]))
        # 40 draws of 24 orders: a single one means no shuffling
        self.assertGreater(len(orders), 1, r)
        for res in got["a.example"]:
            self.assertEqual([h[1] for h in res["hosts"]], ["mx1.a.example", "mx2.a.example"])

    def test_mx_limit(self):
        got, r = self.mx("many.example")
        res = got["many.example"][0]
        self.assertEqual(res["status"], "ok")
        self.assertEqual(res["n"], 16)  # DNS_MX_MAX
        self.assertEqual([h[0] for h in res["hosts"]], [i * 10 for i in range(1, 17)], r)

    def test_mx_slow_host_counts_as_tempfail(self):
        """A host whose address lookups time out is TEMPFAIL; the others count."""
        got, r = self.mx("slowmx.example", timeout_ms=500)
        res = got["slowmx.example"][0]
        self.assertEqual(res["status"], "ok", r)
        self.assertEqual(res["hosts"], [(10, "mx1.a.example", "ok", ["127.0.0.2"]),
                                        (20, "mx.slow", "tempfail", [])], r)
        self.assertLess(r.elapsed, 3.0, r)

    def test_mx_whole_lookup_times_out(self):
        got, r = self.mx("x.slow", timeout_ms=300)
        self.assertEqual(got["x.slow"][0]["status"], "tempfail", r)
        self.assertLess(r.elapsed, 2.0, r)

    # --- A + AAAA ----------------------------------------------------------

    def test_addr_table(self):
        cases = [
            ("mx1.a.example", "ok", ["127.0.0.2"]),
            ("v6.example", "ok", ["2001:db8::1"]),
            ("dual.example", "ok", ["::7", "127.0.0.7"]),
            ("alias.example", "ok", ["127.0.0.2"]),
            ("chain.example", "ok", ["127.0.0.2"]),
            ("a.example", "nodata", []),
            ("nx.example", "nxdomain", []),
            ("x.sf", "tempfail", []),
            # 63-octet label, 253-octet name: still valid
            ("x" * 63 + ".example", "nxdomain", []),
            (NAME_253, "nxdomain", []),
            (NAME_253 + ".", "nxdomain", []),
        ]
        r = self.probe("addr", *[c[0] for c in cases])
        got = parse_addr(r.lines)
        for name, status, addrs in cases:
            with self.subTest(name=name):
                self.assertEqual(got.get(name), [(status, addrs)], r)

    def test_addr_limit_interleaves_families(self):
        r = self.probe("addr", "manyaddr.example")
        status, addrs = parse_addr(r.lines)["manyaddr.example"][0]
        self.assertEqual(status, "ok")
        self.assertEqual(len(addrs), 8, r)  # DNS_ADDR_MAX
        self.assertEqual([":" in a for a in addrs], [True, False] * 4, r)

    def test_addr_many_in_parallel(self):
        names = ["dual.example", "nx.example", "mx1.a.example", "v6.example"] * 75
        r = self.probe("addr", *names)
        got = parse_addr(r.lines)
        want = {"dual.example": ("ok", ["::7", "127.0.0.7"]), "nx.example": ("nxdomain", []),
                "mx1.a.example": ("ok", ["127.0.0.2"]), "v6.example": ("ok", ["2001:db8::1"])}
        for name, res in want.items():
            self.assertEqual(got[name], [res] * 75, r)

    # --- TXT ---------------------------------------------------------------

    def test_txt_table(self):
        cases = [
            ("txt.example", "ok", False, [b"v=spf1 ip4:192.0.2.0/24 -all"]),
            ("multi.example", "ok", False, [b"one", b"twothree"]),
            ("nul.example", "ok", False, [b"ok"]),  # the record with a NUL is skipped
            ("_dmarc.dkim.example", "ok", False, [b"v=DMARC1; p=reject"]),
            ("big.example", "ok", False, [b.replace(".", "").encode() for b in BIG]),
            ("1.0.0.10.in-addr.arpa", "ok", False, [b"private"]),
            ("a.example", "nodata", False, []),
            ("nx.example", "nxdomain", False, []),
            ("x.sf", "tempfail", False, []),
        ]
        r = self.probe("txt", *[c[0] for c in cases])
        got = parse_txt(r.lines)
        for name, status, truncated, recs in cases:
            with self.subTest(name=name):
                res = got[name][0]
                self.assertEqual((res["status"], res["truncated"], sorted(res["recs"])),
                                 (status, truncated, sorted(recs)), r)

    def test_txt_limit(self):
        r = self.probe("txt", "txtmany.example")
        res = parse_txt(r.lines)["txtmany.example"][0]
        self.assertEqual((res["status"], res["truncated"], len(res["recs"])), ("ok", True, 32), r)
        self.assertTrue(all(x.startswith(b"record ") for x in res["recs"]), r)

    # --- failures ----------------------------------------------------------

    def test_bad_names_fail_permanently_later(self):
        """Bad syntax: PERMFAIL, from the loop, never inside the call (the probe exits 3 then)."""
        bad = ["", ".", "..", "a..b", ".a.example", "x" * 64 + ".example",
               "x" + NAME_253, "x" + NAME_253 + ".", "exa mple.example", "a.example\n",
               "a.example;x", "[192.0.2.1]", "\u00fcnicode.example", "a/b.example"]
        for mode in ("mx", "addr", "txt"):
            r = self.probe(mode, *bad)
            for line in r.lines:
                with self.subTest(mode=mode, line=line):
                    if line.startswith(mode + " "):
                        self.assertIn(" permfail", line)
            self.assertEqual(sum(1 for x in r.lines if x.startswith(mode + " ")), len(bad), r)

    def test_upstream_never_answers(self):
        bh = "127.0.0.1@%d" % self.bh_port
        for mode, name in (("mx", "a.example"), ("addr", "mx1.a.example"), ("txt", "txt.example")):
            with self.subTest(mode=mode):
                r = self.probe(mode, name, upstream=bh, timeout_ms=300)
                self.assertTrue(r.lines and r.lines[0].startswith("%s %s tempfail" % (mode, name)),
                                r)
                self.assertLess(r.elapsed, 2.0, r)

    def test_upstream_servfail(self):
        r = self.probe("addr", "mx1.a.example", upstream="127.0.0.1@%d" % self.servfail.port)
        self.assertEqual(parse_addr(r.lines)["mx1.a.example"], [("tempfail", [])], r)

    def test_bad_settings(self):
        for up in ("300.1.1.1", "127.0.0.1@0", "127.0.0.1@70000", "127.0.0.1@", "@53",
                   "mx.example", "127.0.0.1@53x"):
            with self.subTest(upstream=up):
                r = self.probe("new", upstream=up, expect_rc=1)
                self.assertIn("dns_new: DNS server", r.out)
        r = self.probe("new", timeout_ms=0, expect_rc=1)
        self.assertIn("timeout", r.out)
        self.probe("new", upstream="::1@53")
        r = self.probe("new", upstream="system",
                       expect_rc=0 if os.path.exists("/etc/resolv.conf") else 1)

    # --- lifetimes ---------------------------------------------------------

    def test_cancel(self):
        r = self.probe("cancel", "x.slow", timeout_ms=300)
        self.assertEqual(r.lines[-1], "cancel ok", r)
        self.assertNotIn("CALLED", r.out)

    def test_free_with_queries_outstanding(self):
        for name in ("x.slow", "a.example"):
            with self.subTest(name=name):
                r = self.probe("free", name, timeout_ms=300)
                self.assertEqual(r.lines[-1], "free ok", r)

    def test_callbacks_reenter(self):
        r = self.probe("reenter", "mx1.a.example", "x.slow", timeout_ms=300)
        self.assertEqual(r.lines, ["twin ok", "bad permfail", "last ok", "freed in callback",
                                   "reenter ok"], r)


if __name__ == "__main__":
    unittest.main()
