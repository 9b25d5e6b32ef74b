"""Administrator rules end to end: moatd with [rule] sections over SMTP,
one message per action (quarantine, reject, deliver over a GTUBE score,
set-header, remove-header, score, skip), `moatctl scan` showing the
MOAT_RULE symbols, and a config error naming its line.

A real unbound serves the one SPF record the skip test needs; everything
else uses .test/.example names it answers NXDOMAIN. No clamd: rules never
touch malware scanning (the unit tests cover that precedence).

Run: /usr/bin/python3 tests/lib/runner.py scan tests/scan test_rules.py
"""
import email.utils
import json
import os
import re
import smtplib
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

from moat_harness import MOATD, OUT, ROOT, Moatd  # noqa: E402
from unbound_server import Unbound  # noqa: E402

MOATCTL = os.environ.get("MOATCTL", os.path.join(ROOT, "build", "moatctl"))
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
QID = re.compile(r"queued as ([0-9a-f]{16})")
REF = re.compile(r"\(ref ([0-9a-f]{16})\)")

DOMAINS = """
[domain example.test]
recipients = any
route = maildir
"""

RULES = """
[rule tag-partner]
priority = 10
if = sender @partner.example
then = set-header X-Partner: yes
then = remove-header X-Spam-Flag

[rule skip-spf]
priority = 20
if = header Subject ^skip-spf$
then = skip spf

[rule hold]
priority = 30
if = header Subject ^hold me$
then = quarantine
stop = yes

[rule refuse]
priority = 40
if = recipient blocked@example.test
then = reject

[rule let-gtube]
priority = 50
if = header X-Test-Deliver ^yes$
unless = recipient blocked@example.test
then = deliver

[rule penalize]
priority = 60
if = sender @penalty.example
then = score 10

[rule disabled]
priority = 70
enabled = no
then = reject
"""


def eml(frm, subject, body="hello\n", extra=()):
    h = [("From", frm), ("To", "user@example.test"), ("Subject", subject),
         ("Date", email.utils.formatdate()),
         ("Message-ID", email.utils.make_msgid(domain="rules.example"))]
    h += list(extra)
    text = "".join("%s: %s\r\n" % (n, v) for n, v in h) + "\r\n"
    return (text + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode()


def smtp_send(port, msg, sender, rcpts):
    """One transaction; (code, text) of the final reply, 5xx included."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.client.example", timeout=60)
    try:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (code, text)
        try:
            code, text = s.data(msg)
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


class RulesCase(unittest.TestCase):
    """One unbound and one moatd with RULES for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.dns = Unbound([("good.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'),
                           ("probe.example.", "A", "192.0.2.1")],
                          zones=("example.",), probe="probe.example.")
        conf = "dns_resolver = %s\nscan_timeout = 60s\n" % cls.dns.upstream
        cls.m = Moatd(conf=conf, domains=DOMAINS + RULES, name="rules")
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.dns.stop()

    def send(self, msg, sender, rcpts=("user@example.test",)):
        """Send; (code, text, the event=scanned log line)."""
        code, text = smtp_send(self.m.port, msg, sender, list(rcpts))
        m = QID.search(text) or REF.search(text)
        self.assertIsNotNone(m, text)
        line = self.m.wait_log(r"event=scanned sid=\d+ id=%s .*" % m.group(1)).group(0)
        return code, text, line

    def wait_delivered(self, rcpt, marker, timeout=10.0):
        """The one maildir message of rcpt holding marker (others may arrive meanwhile)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [x for x in self.m.maildir(rcpt) if marker in x]
            if got:
                self.assertEqual(len(got), 1)
                return got[0]
            time.sleep(0.02)
        raise AssertionError("no message with %r for %s\n%s" % (marker, rcpt, self.m.log()[-3000:]))

    def quarantined(self, qid):
        return os.path.exists(os.path.join(self.m.data, "quarantine", qid))

    def test_quarantine(self):
        code, text, line = self.send(eml("a@nowhere.example", "hold me", "held mail\n"),
                                     "a@nowhere.example")
        self.assertEqual(code, 250, text)
        qid = QID.search(text).group(1)
        self.assertTrue(self.quarantined(qid), "%s not in quarantine/" % qid)
        self.assertIn("MOAT_RULE_QUARANTINE(0.00)[hold]", line)
        self.assertIn("verdict=quarantine", line)
        self.assertFalse(any(b"held mail" in x for x in self.m.maildir("user@example.test")))

    def test_reject(self):
        code, text, line = self.send(eml("a@nowhere.example", "hi"), "a@nowhere.example",
                                     rcpts=("blocked@example.test",))
        self.assertEqual(code, 550, text)
        self.assertRegex(text, r"^5\.7\.1 .*refused by an administrator rule \(ref [0-9a-f]{16}\)")
        self.assertNotIn("refuse", text.replace("refused", ""))  # the rule's name stays here
        self.assertIn("MOAT_RULE_REJECT(0.00)[refuse]", line)
        self.assertEqual(self.m.maildir("blocked@example.test"), [])

    def test_deliver_overrides_gtube(self):
        code, text, line = self.send(eml("a@nowhere.example", "spam?", GTUBE + "\n"),
                                     "a@nowhere.example")
        self.assertEqual(code, 550, text)  # GTUBE alone: rejected
        self.assertIn("GTUBE", line)
        code, text, line = self.send(eml("a@nowhere.example", "spam?", GTUBE + "\n",
                                         [("X-Test-Deliver", "yes")]), "a@nowhere.example")
        self.assertEqual(code, 250, text)
        self.assertIn("GTUBE(100.00)", line)
        self.assertIn("MOAT_RULE_DELIVER(0.00)[let-gtube]", line)
        self.wait_delivered("user@example.test", GTUBE.encode())

    def test_set_and_remove_header(self):
        msg = eml("bob@partner.example", "tagged", "partner mail\n",
                  [("X-Spam-Flag", "YES"), ("X-Partner", "forged"), ("X-Keep", "kept")])
        code, text, _ = self.send(msg, "bob@partner.example")
        self.assertEqual(code, 250, text)
        got = self.wait_delivered("user@example.test", b"partner mail")
        head = re.split(rb"\r?\n\r?\n", got, maxsplit=1)[0]
        self.assertRegex(head, rb"(?m)^X-Partner: yes\r?$")
        self.assertNotIn(b"forged", head)
        self.assertNotIn(b"X-Spam-Flag", head)
        self.assertIn(b"X-Keep: kept", head)
        self.assertIn(b"X-Moat-Verdict: deliver", head)
        # the set field follows moat's verdict
        self.assertLess(head.index(b"X-Moat-Verdict"), head.index(b"X-Partner: yes"))

    def test_score_changes_verdict(self):
        code, text, line = self.send(eml("a@penalty.example", "hi"), "a@penalty.example")
        self.assertEqual(code, 250, text)
        self.assertIn("MOAT_RULE(10.00)[penalize]", line)
        self.assertIn("verdict=quarantine", line)
        self.assertTrue(self.quarantined(QID.search(text).group(1)))
        code, text, line = self.send(eml("a@other.example", "hi"), "a@other.example")
        self.assertIn("verdict=deliver", line)
        self.assertNotIn("MOAT_RULE", line)

    def test_skip_spf(self):
        _, _, line = self.send(eml("bob@good.example", "not skipped"), "bob@good.example")
        self.assertIn("SPF_PASS", line)
        _, _, line = self.send(eml("bob@good.example", "skip-spf"), "bob@good.example")
        self.assertNotIn("SPF_", line)
        self.assertIn("MOAT_RULE_SKIP(0.00)[skip-spf: spf]", line)
        self.assertIn("DKIM_NONE", line)  # the other checks still ran

    def test_moatctl_scan(self):
        with tempfile.NamedTemporaryFile(dir=OUT, suffix=".eml", delete=False) as f:
            f.write(eml("a@penalty.example", "hold me"))
        try:
            p = subprocess.run([MOATCTL, "-c", self.m.conf_path, "--json", "scan", f.name,
                                "--from", "a@penalty.example", "--rcpt", "user@example.test"],
                               capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(f.name)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        syms = {s["name"]: s.get("detail") for s in r["symbols"]}
        self.assertEqual(syms.get("MOAT_RULE_QUARANTINE"), "hold")
        # 'hold' stops processing: 'penalize' (priority 60) never ran
        self.assertNotIn("MOAT_RULE", syms)
        self.assertEqual(r["verdict"], "quarantine")


class TestRuleConfigErrors(unittest.TestCase):
    """moatd -t refuses a bad rule with FILE:LINE: message."""

    CASES = [
        ("[rule a]\npriority = 1\nif = sender-ip 300.1.1.1\nthen = reject\n", 3,
         "if: sender-ip: '300.1.1.1' is not an address"),
        ("[rule a]\npriority = 1\nthen = skip clamd\n", 3,
         "then: skip: malware scanning (clamd) is never skipped"),
        ("[rule a]\npriority = 1\nthen = score 1\n[rule b]\npriority = 1\nthen = score 1\n", 5,
         "priority 1 is already used by rule 'a' on line 4"),  # line 2 of the body
        ("[rule a]\npriority = 1\nthen = route smtp:[192.0.2.1]:25\n", 3,
         "then: route is not supported yet"),
    ]

    def test_errors_name_the_line(self):
        for body, line, msg in self.CASES:
            with self.subTest(msg=msg):
                d = tempfile.mkdtemp(prefix="rules-conf-", dir=OUT)
                path = os.path.join(d, "moat.conf")
                head = "hostname = mx.moat.test\ndata_dir = %s\n" % os.path.join(d, "data")
                with open(path, "w") as f:
                    f.write(head + body + DOMAINS)
                p = subprocess.run([MOATD, "-t", "-c", path], capture_output=True, text=True,
                                   timeout=30)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn("%s:%d: %s" % (path, line + 2, msg), p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main()
