"""The whole scan pipeline, end to end, with real peers: moatd over SMTP and
`moatctl scan` on the same messages, a real unbound serving SPF, DKIM,
DMARC and blocklist records that this file writes, a real clamd with an
EICAR signature, messages DKIM-signed here with dkimpy (python3-dkim).

The corpus is the table CORPUS below: each message is built by this file
(EICAR is assembled, never stored), sent over SMTP and scanned with
moatctl; the verdict, the SMTP reply and the symbols must be the ones the
table names, and quarantined or rejected mail must never reach a mailbox.

Run: /usr/bin/python3 tests/lib/runner.py scan tests/scan
"""
import base64
import email.utils
import hashlib
import hmac
import io
import json
import os
import quopri
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "delivery"))

from clamd_server import EICAR, Clamd  # noqa: E402
from moat_harness import OUT, ROOT, Moatd  # noqa: E402
from unbound_server import Unbound  # noqa: E402

import dkim  # noqa: E402

MOATCTL = os.environ.get("MOATCTL", os.path.join(ROOT, "build", "moatctl"))
SAMPLE_NONSPAM = "/usr/share/doc/spamassassin/examples/sample-nonspam.txt"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
QID = re.compile(r"queued as ([0-9a-f]{16})")
REF = re.compile(r"\(ref ([0-9a-f]{16})\)")

# Protected domains: example.test (any recipient) and strict.test (low thresholds).
DOMAINS = """
[domain example.test]
recipients = any
route = maildir
allow_senders = @partner.example

[domain strict.test]
recipients = any
route = maildir
quarantine_score = 0.05
reject_score = 1
block_senders = spammer@bad.example
"""

KEYDIR = None
DKIM_KEY = None  # PEM of the signing key of good.example / partner.example


def make_key():
    """An RSA key (openssl CLI) and its DKIM TXT record."""
    global KEYDIR, DKIM_KEY
    KEYDIR = tempfile.mkdtemp(prefix="dkim-", dir=OUT)
    key = os.path.join(KEYDIR, "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(key, "rb") as f:
        DKIM_KEY = f.read()
    txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    # TXT character-strings are at most 255 octets (RFC 1035 3.3.14)
    return " ".join('"%s"' % txt[i:i + 200] for i in range(0, len(txt), 200))


def records(dkim_txt):
    return [
        # SPF: loopback (moatd's client here) and TEST-NET hosts
        ("good.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 ip4:192.0.2.0/24 -all"'),
        ("partner.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'),
        ("hardfail.example.", "TXT", '"v=spf1 ip4:198.51.100.1 -all"'),
        ("soft.example.", "TXT", '"v=spf1 ~all"'),
        ("neutral.example.", "TXT", '"v=spf1 ?all"'),
        ("broken.example.", "TXT", '"v=spf1 ip4:not-an-address -all"'),
        ("reject.example.", "TXT", '"v=spf1 ip4:198.51.100.1 -all"'),
        ("bad.example.", "TXT", '"v=spf1 +all"'),
        # DKIM keys
        ("sel._domainkey.good.example.", "TXT", dkim_txt),
        ("sel._domainkey.partner.example.", "TXT", dkim_txt),
        # DMARC
        ("_dmarc.good.example.", "TXT", '"v=DMARC1; p=reject"'),
        ("_dmarc.reject.example.", "TXT", '"v=DMARC1; p=reject"'),
        ("_dmarc.partner.example.", "TXT", '"v=DMARC1; p=none"'),
        # the blocklist: 192.0.2.66 listed, as zones answer 127.0.0.2
        ("66.2.0.192.bl.example.", "A", "127.0.0.2"),
        ("66.2.0.192.bl.example.", "TXT", '"listed for testing"'),
        ("listed-domain.example.bl.example.", "A", "127.0.0.2"),
        # public-resolver refusal codes must not list anybody (Spamhaus)
        ("99.2.0.192.bl.example.", "A", "127.255.255.254"),
        ("probe.example.", "A", "192.0.2.1"),
    ]


def eml(headers, body, ctype="text/plain; charset=us-ascii"):
    """A message from (name, value) pairs and a body, CRLF line ends."""
    h = list(headers)
    names = {n.lower() for n, _ in h}
    if "date" not in names:
        h.append(("Date", email.utils.formatdate()))
    if "message-id" not in names:
        h.append(("Message-ID", email.utils.make_msgid(domain="corpus.example")))
    if "mime-version" not in names and ctype:
        h.append(("MIME-Version", "1.0"))
    if "content-type" not in names and ctype:
        h.append(("Content-Type", ctype))
    text = "".join("%s: %s\r\n" % (n, v) for n, v in h).encode() + b"\r\n"
    if isinstance(body, str):
        body = body.encode()
    return text + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sign(msg, domain="good.example"):
    sig = dkim.sign(msg, b"sel", domain.encode(), DKIM_KEY,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


def multipart(headers, parts, boundary="=_b1"):
    body = b""
    for p in parts:
        body += b"--" + boundary.encode() + b"\r\n" + p + b"\r\n"
    body += b"--" + boundary.encode() + b"--\r\n"
    return eml(headers, body, 'multipart/mixed; boundary="%s"' % boundary)


def part(ctype, data, extra=(), cte=None):
    h = "Content-Type: %s\r\n" % ctype
    for e in extra:
        h += e + "\r\n"
    if cte == "base64":
        h += "Content-Transfer-Encoding: base64\r\n"
        data = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":
        h += "Content-Transfer-Encoding: quoted-printable\r\n"
        data = quopri.encodestring(data).replace(b"\n", b"\r\n")
    return h.encode() + b"\r\n" + data


def zipped(name, data):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return b.getvalue()


def hdrs(frm, to="user@example.test", subject="corpus", **more):
    h = [("From", frm), ("To", to), ("Subject", subject)]
    h += [(k.replace("_", "-"), v) for k, v in more.items()]
    return h


DATA = os.path.join(ROOT, "tests", "data", "scan")


def corpus():
    """tests/data/scan/corpus.tsv: name -> (message, envelope sender,
    recipients, want verdict, symbols that must appear, that must not)."""
    fill = {
        b"@@EICAR@@": EICAR,
        b"@@EICAR_BASE64@@": base64.encodebytes(EICAR).replace(b"\n", b"\r\n").rstrip(),
        # every octet encoded, soft line breaks: nothing of the string is left as is
        b"@@EICAR_QP@@": b"=\r\n".join(
            b"".join(b"=%02X" % o for o in EICAR[i:i + 24]) for i in range(0, len(EICAR), 24)),
        b"@@EICAR_ZIP_BASE64@@": base64.encodebytes(zipped("readme.txt", EICAR))
        .replace(b"\n", b"\r\n").rstrip(),
    }
    c = {}
    with open(os.path.join(DATA, "corpus.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, sender, rcpts, dk, want, need, never = line.rstrip("\n").split("\t")
            if name == "sa_sample_nonspam":
                if not os.path.exists(SAMPLE_NONSPAM):
                    raise AssertionError("%s is missing (package spamassassin)" % SAMPLE_NONSPAM)
                path = SAMPLE_NONSPAM
            else:
                path = os.path.join(DATA, name + ".eml")
            with open(path, "rb") as m:
                msg = m.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            for k, v in fill.items():
                msg = msg.replace(k, v)
            if dk != "-":
                domain, _, change = dk.partition("|")
                msg = sign(msg, domain)
                if change:
                    old, new = change.split("=>")
                    msg = msg.replace(old.encode(), new.encode())
            c[name] = (msg, sender, rcpts.split(","), want,
                       [] if need == "-" else need.split(","),
                       [] if never == "-" else never.split(","))
    return c


def smtp_send(port, msg, sender, rcpts, helo="mail.client.example"):
    """One transaction with Python's smtplib; (code, text) of the final reply."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=60)
    try:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        code, text = s.data(msg)
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def moatctl_scan(conf, msg, sender, rcpts, client_ip="127.0.0.1", helo="mail.client.example"):
    with tempfile.NamedTemporaryFile(dir=OUT, suffix=".eml", delete=False) as f:
        f.write(msg)
    try:
        args = [MOATCTL, "-c", conf, "scan", f.name, "--json", "--client-ip", client_ip,
                "--helo", helo, "--from", sender]
        for r in rcpts:
            args += ["--rcpt", r]
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)
    finally:
        os.unlink(f.name)


class PipelineCase(unittest.TestCase):
    """One unbound, one clamd, one moatd for the whole class."""

    extra_conf = ""

    @classmethod
    def setUpClass(cls):
        txt = make_key()
        cls.dns = Unbound(records(txt), zones=("example.", "in-addr.arpa."),
                          probe="probe.example.")
        cls.clamd = Clamd()
        conf = ("dns_resolver = %s\nclamd = %s\ndnsbl_zones = bl.example:3\n"
                "uribl_zones = bl.example:2\nscan_timeout = 60s\n%s"
                % (cls.dns.upstream, cls.clamd.unix_spec, cls.extra_conf))
        cls.m = Moatd(conf=conf, domains=DOMAINS, name="scan")
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.clamd.stop()
        cls.dns.stop()

    def maildir_count(self, rcpt):
        return len(self.m.maildir(rcpt))

    def quarantined(self, qid):
        return os.path.exists(os.path.join(self.m.data, "quarantine", qid))


class TestCorpus(PipelineCase):
    """Every corpus message, over SMTP and through moatctl scan."""

    def test_corpus_over_smtp(self):
        for name, (msg, sender, rcpts, want, need, never) in corpus().items():
            with self.subTest(corpus=name):
                before = {r: self.maildir_count(r) for r in rcpts}
                code, text = smtp_send(self.m.port, msg, sender, rcpts)
                if want == "reject":
                    self.assertEqual(code, 550, text)
                    self.assertTrue(text.startswith("5.7.1"), text)
                    qid = REF.search(text).group(1)
                elif want == "tempfail":
                    self.assertEqual(code, 451, text)
                    continue
                else:
                    self.assertEqual(code, 250, text)
                    qid = QID.search(text).group(1)
                line = self.m.wait_log(r"event=scanned sid=\d+ id=%s .*" % qid).group(0)
                self.assertIn("verdict=%s " % want, line)
                for sym in need:
                    self.assertRegex(line, r"[=,]%s\(" % sym, "%s: %s" % (name, line))
                for sym in never:
                    self.assertNotRegex(line, r"[=,]%s\(" % sym, "%s: %s" % (name, line))
                if want == "deliver":
                    for r in rcpts:
                        self.m.wait_maildir(r, count=before[r] + 1)
                    self.assertFalse(self.quarantined(qid))
                elif want == "quarantine":
                    self.assertTrue(self.quarantined(qid), "%s not in quarantine/" % qid)
                    self.assertFalse(os.path.exists(os.path.join(self.m.data, "queue", qid)))
                if want != "deliver":
                    time.sleep(0.2)  # delivery would be immediate: nothing must arrive
                    for r in rcpts:
                        self.assertEqual(self.maildir_count(r), before[r],
                                         "%s reached %s" % (name, r))

    def test_corpus_through_moatctl(self):
        for name, (msg, sender, rcpts, want, need, never) in corpus().items():
            with self.subTest(corpus=name):
                r = moatctl_scan(self.m.conf_path, msg, sender, rcpts)
                got = [s["name"] for s in r["symbols"]]
                self.assertEqual(r["verdict"], want, "%s: %s" % (name, got))
                for sym in need:
                    self.assertIn(sym, got, name)
                for sym in never:
                    self.assertNotIn(sym, got, name)

    def test_moatctl_text_output_and_usage(self):
        msg = eml(hdrs("x@nothing.example", subject="test"), GTUBE + b"\n")
        path = os.path.join(self.m.dir, "gtube.eml")
        with open(path, "wb") as f:
            f.write(msg.replace(b"\r\n", b"\n"))  # LF files are read as CRLF
        p = subprocess.run([MOATCTL, "-c", self.m.conf_path, "scan", path, "--from",
                            "x@nothing.example"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^verdict: reject\n")
        self.assertRegex(p.stdout, r"\n  GTUBE +100\.00")
        p = subprocess.run([MOATCTL, "-c", self.m.conf_path, "scan"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([MOATCTL, "-c", self.m.conf_path, "scan", path, "--client-ip",
                            "not-an-ip"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not an IP address", p.stderr)
        p = subprocess.run([MOATCTL, "-c", self.m.conf_path, "scan", "/nonexistent.eml"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)


class TestHeaders(PipelineCase):
    """What moat writes on delivered mail, and what it removes."""

    def delivered(self, msg, sender, rcpt="user@example.test"):
        before = self.maildir_count(rcpt)
        code, text = smtp_send(self.m.port, msg, sender, [rcpt])
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        files = self.m.wait_maildir(rcpt, count=before + 1)
        got = [f for f in files if qid.encode() in f]
        self.assertEqual(len(got), 1)
        return qid, got[0]

    def test_authentication_results_and_verdict(self):
        msg = sign(eml(hdrs("Alice <alice@good.example>"), "headers\n"))
        qid, got = self.delivered(msg, "alice@good.example")
        head = got.split(b"\n\n", 1)[0].decode()
        self.assertRegex(head, r"\nAuthentication-Results: mx\.moat\.test;\n"
                               r"\tspf=pass smtp\.mailfrom=good\.example;\n"
                               r"\tdkim=pass header\.d=good\.example header\.s=sel "
                               r"header\.b=(?:[A-Za-z0-9+]{8}|\"[A-Za-z0-9+/]{8}\");\n"
                               r"\tdmarc=pass \(p=reject\) header\.from=good\.example;\n"
                               r"\tarc=none\n")
        self.assertRegex(head, r"\nX-Moat-Verdict: deliver; score=-?\d+\.\d\d; id=%s;\n"
                               r"\tsymbols=[A-Z_,\n\t]*SPF_PASS" % qid)
        # the fields come before moat's Received, which comes before the message's own
        self.assertLess(head.index("Authentication-Results:"), head.index("Received: from"))
        self.assertLess(head.index("X-Moat-Verdict:"), head.index("Received: from"))
        # the DKIM signature still verifies after moat's fields (they are on top)
        self.assertIn("DKIM-Signature:", head)

    def test_relay_key_is_the_domain_hmac(self):
        with open(os.path.join(self.m.data, "relay.secret"), "rb") as f:
            secret = f.read()
        self.assertEqual(len(secret), 32)
        want = hmac.new(secret, b"moat-relay-key:example.test", hashlib.sha256).hexdigest()[:32]
        _, got = self.delivered(eml(hdrs("x@nothing.example"), "key\n"), "x@nothing.example")
        self.assertIn(b"\nX-Moat-Relay-Key: " + want.encode() + b"\n", got)
        st = os.stat(os.path.join(self.m.data, "relay.secret"))
        self.assertEqual(st.st_mode & 0o077, 0, "relay.secret must be owner-only")

    def test_forged_fields_are_removed(self):
        msg = eml(hdrs("x@nothing.example") + [
            ("Authentication-Results", "mx.moat.test; spf=pass smtp.mailfrom=paypal.example"),
            ("Authentication-Results", "other.example; spf=fail smtp.mailfrom=x"),
            ("X-Moat-Relay-Key", "0123456789abcdef0123456789abcdef"),
            ("X-Moat-Verdict", "deliver; score=-100"),
            ("X-Moat-Released", "yes")], "forged\n")
        _, got = self.delivered(msg, "x@nothing.example")
        head = got.split(b"\n\n", 1)[0]
        self.assertNotIn(b"paypal.example", head)
        self.assertNotIn(b"0123456789abcdef0123456789abcdef", head)
        self.assertNotIn(b"score=-100", head)
        self.assertNotIn(b"X-Moat-Released", head)
        # another server's results stay (RFC 8601 section 5)
        self.assertIn(b"Authentication-Results: other.example; spf=fail", head)
        self.assertEqual(head.count(b"X-Moat-Verdict:"), 1)
        self.assertEqual(head.count(b"X-Moat-Relay-Key:"), 1)
        self.assertTrue(got.endswith(b"\n\nforged\n"))

    def test_large_message_spilled_to_disk_keeps_its_body(self):
        body = ("line %06d of a long message that spills to the incoming file\n" * 1
                ).join([""] * 1) + "".join("line %06d of a long message that spills\n" % i
                                           for i in range(8000))
        msg = eml(hdrs("x@nothing.example",
                       Authentication_Results="mx.moat.test; dkim=pass"), body)
        self.assertGreater(len(msg), 200000)
        _, got = self.delivered(msg, "x@nothing.example")
        self.assertNotIn(b"mx.moat.test; dkim=pass", got)
        self.assertTrue(got.endswith(body.encode()), "the body arrived changed")


class TestRelayMode(PipelineCase):
    """Relay mode: the client (127.0.0.1) is a trusted relay; checks use the
    last untrusted hop of the Received chain."""

    extra_conf = "scan_trusted_relays = 127.0.0.0/8, 10.0.0.0/8\n"

    def relayed(self, origin_ip, origin_helo, sender, extra_hop=True):
        msg = eml(hdrs("Bob <%s>" % sender), "relayed\n")
        hops = "Received: from %s (%s [%s])\r\n\tby edge.tenant.example with ESMTPS;\r\n" \
               "\t%s\r\n" % (origin_helo, origin_helo, origin_ip, email.utils.formatdate())
        if extra_hop:
            hops = ("Received: from internal (internal [10.1.2.3])\r\n\tby mx.tenant.example;"
                    "\r\n\t%s\r\n" % email.utils.formatdate()) + hops
        return hops.encode() + msg

    def test_spf_and_dnsbl_use_the_origin(self):
        msg = self.relayed("192.0.2.66", "mail.good.example", "bob@good.example")
        code, text = smtp_send(self.m.port, msg, "bob@good.example", ["user@example.test"])
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        line = self.m.wait_log(r"event=scanned sid=\d+ id=%s .*" % qid).group(0)
        self.assertIn("MOAT_RELAYED(0.00)[192.0.2.66 via 127.0.0.1]", line)
        self.assertIn("SPF_PASS", line)  # 192.0.2.0/24 is in good.example's record
        self.assertRegex(line, r"DNSBL_IP\(3\.00\)\[bl\.example")

    def test_origin_not_authorised_fails_spf(self):
        msg = self.relayed("198.51.100.200", "mail.evil.example", "bob@good.example",
                           extra_hop=False)
        code, text = smtp_send(self.m.port, msg, "bob@good.example", ["user@example.test"])
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        line = self.m.wait_log(r"event=scanned sid=\d+ id=%s .*" % qid).group(0)
        self.assertIn("SPF_FAIL", line)
        self.assertNotIn("DNSBL_IP", line)

    def test_refusal_codes_do_not_list(self):
        r = moatctl_scan(self.m.conf_path, eml(hdrs("x@nothing.example"), "hi\n"),
                         "x@nothing.example", ["user@example.test"], client_ip="192.0.2.99")
        self.assertNotIn("DNSBL_IP", [s["name"] for s in r["symbols"]])
        r = moatctl_scan(self.m.conf_path, eml(hdrs("x@nothing.example"), "hi\n"),
                         "x@nothing.example", ["user@example.test"], client_ip="192.0.2.66")
        self.assertIn("DNSBL_IP", [s["name"] for s in r["symbols"]])

    def test_no_untrusted_hop(self):
        code, text = smtp_send(self.m.port, eml(hdrs("x@nothing.example"), "direct\n"),
                               "x@nothing.example", ["user@example.test"])
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        line = self.m.wait_log(r"event=scanned sid=\d+ id=%s .*" % qid).group(0)
        self.assertIn("MOAT_RELAY_NO_HOP", line)


class TestReviewCases(unittest.TestCase):
    """Relay keys never cross tenants or reach outside senders; forged
    fields cannot hide; a client that leaves during the scan gets nothing
    kept."""

    def test_each_domain_gets_only_its_own_key(self):
        two = ("[domain example.test]\nrecipients = any\nroute = maildir\n"
               "[domain strict.test]\nrecipients = any\nroute = maildir\n")
        m = Moatd(domains=two, name="scankeys")
        m.start()
        try:
            code, text = smtp_send(m.port, eml(hdrs("x@remote.test"), "two tenants\n"),
                                   "x@remote.test", ["a@example.test", "b@strict.test"])
            self.assertIn(code, (250,), text)
            with open(os.path.join(m.data, "relay.secret"), "rb") as f:
                secret = f.read()
            keys = {d: hmac.new(secret, b"moat-relay-key:" + d.encode(),
                                hashlib.sha256).hexdigest()[:32].encode()
                    for d in ("example.test", "strict.test")}
            a = m.wait_maildir("a@example.test")[0]
            b = m.wait_maildir("b@strict.test")[0]
            self.assertIn(keys["example.test"], a)
            self.assertNotIn(keys["strict.test"], a)
            self.assertIn(keys["strict.test"], b)
            self.assertNotIn(keys["example.test"], b)
            self.assertEqual(a.count(b"X-Moat-Relay-Key:"), 1)
        finally:
            m.stop()

    def test_report_to_outside_sender_carries_no_key(self):
        from dlvutil import Sink, domain, moat_conf, smtp_route
        down = Sink(rcpt_policy=lambda a: "550 5.1.1 no such user")
        dsn = Sink()
        down.start()
        dsn.start()
        m = Moatd(conf=moat_conf(dsn.port), name="scandsn",
                  domains=domain("example.test", smtp_route(down.port)))
        m.start()
        try:
            code, text = smtp_send(m.port, eml(hdrs("x@remote.test"), "bounce me\n"),
                                   "x@remote.test", ["gone@example.test"])
            self.assertEqual(code, 250, text)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not dsn.txns:
                time.sleep(0.05)
            self.assertEqual(len(dsn.txns), 1, "no report reached the sender")
            report = dsn.txns[0].content
            self.assertIn(b"bounce me", report)
            self.assertNotIn(b"X-Moat-Relay-Key", report)
        finally:
            m.stop()
            down.stop()
            dsn.stop()

    def test_exchange_style_received_chain(self):
        conf = "scan_trusted_relays = 127.0.0.0/8, 40.92.0.0/15\n"
        m = Moatd(conf=conf, domains=DOMAINS, name="scanexo")
        m.start()
        try:
            def origin(hops):
                msg = "".join("Received: %s\r\n" % h for h in hops).encode() + \
                    eml(hdrs("x@remote.test"), "hi\n")
                r = moatctl_scan(m.conf_path, msg, "x@remote.test", ["user@example.test"])
                return {s["name"]: s.get("detail") for s in r["symbols"]}

            # Exchange Online writes "(IP)" without brackets
            got = origin(["from AM6PR.prod.outlook.com (40.92.1.1) by DB8PR.prod.outlook.com "
                          "(40.93.2.2) with Microsoft SMTP Server; Thu, 26 Nov 2026 10:00:00 +0000",
                          "from mail-ed1-f41.google.example (209.85.208.41) by "
                          "AM6PR.prod.outlook.com (40.92.1.1) with Microsoft SMTP Server; "
                          "Thu, 26 Nov 2026 10:00:00 +0000",
                          "from forged.example ([198.51.100.7]) by mail-ed1-f41; date"])
            self.assertIn("209.85.208.41 via", got.get("MOAT_RELAYED") or "", got)
            # a trusted hop's field without a client: stop, do not read below it
            got = origin(["by internal.example with local; date",
                          "from forged.example ([198.51.100.7]) by x; date"])
            self.assertIn("MOAT_RELAY_NO_HOP", got)
            self.assertNotIn("MOAT_RELAYED", got)
        finally:
            m.stop()

    def test_forged_authres_spellings_and_many_fields(self):
        m = Moatd(domains=DOMAINS, name="scanforge")
        m.start()
        try:
            for v in ('"mx.moat.test"; spf=pass', "mx.moat.test.; spf=pass",
                      "MX.MOAT.TEST (comment); dkim=pass"):
                msg = eml(hdrs("x@remote.test") + [("Authentication-Results", v)], "hi\n")
                r = moatctl_scan(m.conf_path, msg, "x@remote.test", ["user@example.test"])
                names = [x["name"] for x in r["symbols"]]
                self.assertIn("MOAT_FAKE_AUTHRES", names, v)
                self.assertNotIn(v.encode(), r.get("headers", "").encode())
            pad = [("X-Pad-%d" % i, "x") for i in range(1001)]
            msg = eml(hdrs("x@remote.test") + pad +
                      [("Authentication-Results", "mx.moat.test; spf=pass")], "hi\n")
            r = moatctl_scan(m.conf_path, msg, "x@remote.test", ["user@example.test"])
            self.assertEqual(r["verdict"], "quarantine")
            self.assertIn("MIME_TOO_MANY_HEADERS", [x["name"] for x in r["symbols"]])
        finally:
            m.stop()

    def test_client_leaving_during_the_scan(self):
        """A half-close during the scan still gets its 250 (the client may
        still read); a connection reset gets nothing kept."""
        import socket
        import struct
        import threading
        slow = socket.socket()
        slow.bind(("127.0.0.1", 0))
        slow.listen(8)

        def clamd():  # answers after 2 s
            while True:
                try:
                    c, _ = slow.accept()
                except OSError:
                    return

                def serve(c=c):
                    c.settimeout(10)
                    data = b""
                    while not data.endswith(b"\0\0\0\0"):
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    time.sleep(2)
                    c.sendall(b"stream: OK\0")
                    c.close()
                threading.Thread(target=serve, daemon=True).start()

        threading.Thread(target=clamd, daemon=True).start()
        m = Moatd(conf="clamd = tcp:127.0.0.1:%d\nclamd_timeout = 20s\n" % slow.getsockname()[1],
                  domains=DOMAINS, name="scanleave")
        m.start()
        try:
            def start(rcpt):
                s = socket.create_connection(("127.0.0.1", m.port), timeout=30)
                f = s.makefile("rb")
                f.readline()
                s.sendall(b"EHLO c.example\r\n")
                while f.readline()[3:4] == b"-":
                    pass
                s.sendall(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt)
                for _ in range(3):
                    f.readline()
                s.sendall(eml(hdrs("x@remote.test"), "leaving\n") + b".\r\n")
                return s, f

            s, f = start(b"half@example.test")
            s.shutdown(socket.SHUT_WR)  # still reading
            self.assertTrue(f.readline().startswith(b"250 "))
            f.close()
            s.close()
            m.wait_maildir("half@example.test")

            s, f = start(b"reset@example.test")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            f.close()  # (the file object holds the socket open too)
            s.close()  # RST: the connection is gone
            m.wait_log(r"event=scanned .*", timeout=15)
            time.sleep(2.5)
            self.assertEqual(len(m.maildir("reset@example.test")), 0)
            self.assertEqual(os.listdir(os.path.join(m.data, "incoming")), [])
        finally:
            m.stop()
            slow.close()


class TestLimits(unittest.TestCase):
    """Hostile sizes are refused early or marked, never silently skipped."""

    def setUp(self):
        self.m = Moatd(domains=DOMAINS, name="scanlimits")  # its config; no daemon needed

    def scan(self, body, ctype="text/plain"):
        r = moatctl_scan(self.m.conf_path, eml(hdrs("x@remote.test"), body, ctype),
                         "x@remote.test", ["user@example.test"])
        return r["verdict"], [s["name"] for s in r["symbols"]]

    def test_a_million_parts_are_not_parsed(self):
        body = "--b\r\n\r\n" * 3000 + "--b--\r\n"
        t0 = time.monotonic()
        verdict, syms = self.scan(body, 'multipart/mixed; boundary="b"')
        self.assertEqual(verdict, "quarantine")
        self.assertIn("MIME_TOO_MANY_PARTS", syms)
        self.assertLess(time.monotonic() - t0, 30)

    def test_links_past_the_limit_are_marked(self):
        body = "".join("http://l%d.example/x\n" % i for i in range(700))
        verdict, syms = self.scan(body)
        self.assertIn("URL_LIMIT", syms)

    def test_rule_regex_sees_a_bounded_field(self):
        m = Moatd(domains=DOMAINS + "\n[rule slow]\npriority = 1\n"
                  "if = header Subject invoice.*overdue\nthen = score 1\n", name="scanre")
        msg = eml(hdrs("x@remote.test", subject="invoice " + "a" * 250000), "hi\n")
        t0 = time.monotonic()
        r = moatctl_scan(m.conf_path, msg, "x@remote.test", ["user@example.test"])
        self.assertLess(time.monotonic() - t0, 10)
        self.assertNotIn("MOAT_RULE", [s["name"] for s in r["symbols"]])


class TestDnsCache(unittest.TestCase):
    """The scan's answer cache keeps answers for their TTL and never keeps a
    temporary failure."""

    def scanned_line(self, m, sender):
        code, text = smtp_send(m.port, eml(hdrs(sender), "dns\n"), sender, ["user@example.test"])
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        return m.wait_log(r"event=scanned sid=\d+ id=%s .*" % qid, timeout=30).group(0)

    def test_ttl_and_no_tempfail_caching(self):
        from unbound_server import free_port
        port = free_port()
        m = Moatd(conf="dns_resolver = 127.0.0.1@%d\ndns_timeout = 1s\n" % port,
                  domains=DOMAINS, name="scandns")
        m.start()
        dns = None
        try:
            # no server yet: a temporary error, which must not be remembered
            self.assertIn("SPF_TEMPERROR", self.scanned_line(m, "x@ttl.example"))
            dns = Unbound([("ttl.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'),
                           ("probe.example.", "A", "192.0.2.1")],
                          zones=("example.",), probe="probe.example.", port=port)
            self.assertIn("SPF_PASS", self.scanned_line(m, "x@ttl.example"))
            # a new answer behind a 2-second TTL: the old one until it expires
            dns.stop()
            dns = Unbound([("ttl.example. 2", "TXT", '"v=spf1 -all"'),
                           ("probe.example.", "A", "192.0.2.1")],
                          zones=("example.",), probe="probe.example.", port=port)
            # (the cached answer had unbound's default TTL, 3600 s: still a pass)
            self.assertIn("SPF_PASS", self.scanned_line(m, "x@ttl.example"))
        finally:
            m.stop()
            if dns:
                dns.stop()

    def test_short_ttl_expires(self):
        from unbound_server import free_port
        port = free_port()
        dns = Unbound([("short.example. 1", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'),
                       ("probe.example.", "A", "192.0.2.1")],
                      zones=("example.",), probe="probe.example.", port=port)
        m = Moatd(conf="dns_resolver = 127.0.0.1@%d\n" % port, domains=DOMAINS, name="scanttl")
        m.start()
        try:
            self.assertIn("SPF_PASS", self.scanned_line(m, "x@short.example"))
            dns.stop()
            dns = Unbound([("short.example. 1", "TXT", '"v=spf1 -all"'),
                           ("probe.example.", "A", "192.0.2.1")],
                          zones=("example.",), probe="probe.example.", port=port)
            time.sleep(2.5)  # past the 1-second TTL (and libunbound's own cache)
            self.assertIn("SPF_FAIL", self.scanned_line(m, "x@short.example"))
        finally:
            m.stop()
            dns.stop()


class TestFailClosed(unittest.TestCase):
    """A required scanner that is down or hung: 451 4.7.1, nothing delivered."""

    def run_with(self, clamd_spec, extra=""):
        m = Moatd(conf="clamd = %s\nclamd_timeout = 1s\n%s" % (clamd_spec, extra),
                  domains=DOMAINS, name="scanfail")
        m.start()
        try:
            msg = eml(hdrs("x@remote.test"), "hello\n")
            code, text = smtp_send(m.port, msg, "x@remote.test", ["user@example.test"])
            time.sleep(0.2)
            return code, text, len(m.maildir("user@example.test"))
        finally:
            m.stop()

    def test_clamd_down_tempfails(self):
        code, text, n = self.run_with("unix:/nonexistent/clamd.sock")
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith("4.7.1"), text)
        self.assertEqual(n, 0)

    def test_clamd_hung_tempfails_after_its_timeout(self):
        import socket
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        held = []
        threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
        try:
            t0 = time.monotonic()
            code, text, n = self.run_with("tcp:127.0.0.1:%d" % srv.getsockname()[1])
            self.assertEqual(code, 451, text)
            self.assertEqual(n, 0)
            self.assertLess(time.monotonic() - t0, 30)
        finally:
            srv.close()

    def test_clamd_down_not_required_delivers(self):
        code, text, n = self.run_with("unix:/nonexistent/clamd.sock", "clamd_required = no\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(n, 1)

    def test_malware_action_reject(self):
        c = Clamd()
        m = Moatd(conf="clamd = %s\nscan_malware_action = reject\n" % c.unix_spec,
                  domains=DOMAINS, name="scanrej")
        m.start()
        try:
            code, text = smtp_send(m.port, eml(hdrs("x@remote.test"), EICAR + b"\n"),
                                   "x@remote.test", ["user@example.test"])
            self.assertEqual(code, 550, text)
            self.assertRegex(text, r"^5\.7\.1 Message rejected: malware found \(ref [0-9a-f]{16}\)")
            self.assertEqual(len(m.maildir("user@example.test")), 0)
        finally:
            m.stop()
            c.stop()


class TestQuarantineDurability(unittest.TestCase):
    """A quarantined message survives kill -9 and is never delivered after restart."""

    def test_restart_keeps_quarantine(self):
        m = Moatd(domains=DOMAINS, name="scanq")
        m.start()
        try:
            msg = multipart(hdrs("x@remote.test"), [
                part('application/octet-stream; name="a.exe"', b"MZ\0\0",
                     ['Content-Disposition: attachment; filename="a.exe"'], "base64")])
            code, text = smtp_send(m.port, msg, "x@remote.test", ["user@example.test"])
            self.assertEqual(code, 250, text)
            qid = QID.search(text).group(1)
            m.kill9()
            m.start()
            time.sleep(0.5)
            self.assertTrue(os.path.exists(os.path.join(m.data, "quarantine", qid)))
            self.assertEqual(len(m.maildir("user@example.test")), 0)
            with open(os.path.join(m.data, "quarantine", qid), "rb") as f:
                data = f.read()
            self.assertIn(b"verdict=quarantine", data)
            self.assertIn(b"ATTACH_BLOCKED_EXT", data)
        finally:
            m.stop()


if __name__ == "__main__":
    unittest.main()
