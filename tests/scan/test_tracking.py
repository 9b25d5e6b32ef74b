"""Message tracking and quarantine records (src/store/, written by the
tracking writer thread off the mail path): every message moat saw, its
verdict and symbols, each recipient's outcome, and a quarantine entry for
what it holds, read back from the SQLite store moatd keeps in data_dir.

Run: /usr/bin/python3 tests/lib/runner.py scan tests/scan test_tracking.py
"""
import os
import sqlite3
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "delivery"))

from moat_harness import Moatd  # noqa: E402
from test_pipeline import GTUBE, QID, REF, eml, hdrs, multipart, part, smtp_send  # noqa: E402


class TestTracking(unittest.TestCase):
    def test_every_outcome_is_tracked(self):
        from dlvutil import Sink, domain, moat_conf, smtp_route
        down = Sink(rcpt_policy=lambda a: "450 4.2.1 try later" if a.startswith("later@") else None)
        down.start()
        domains = ("[domain example.test]\nrecipients = any\nroute = maildir\n\n"
                   + domain("relay.test", smtp_route(down.port)))
        m = Moatd(conf=moat_conf(down.port), domains=domains, name="track")
        m.start()
        try:
            code, text = smtp_send(m.port, eml(hdrs("a@remote.test", subject="hello there"),
                                               "hi\n"), "a@remote.test", ["u@example.test"])
            self.assertEqual(code, 250, text)
            ok = QID.search(text).group(1)
            code, text = smtp_send(m.port, eml(hdrs("b@remote.test", subject="test"),
                                               GTUBE + b"\n"), "b@remote.test", ["u@example.test"])
            self.assertEqual(code, 550, text)
            rej = REF.search(text).group(1)
            msg = multipart(hdrs("c@remote.test", subject="invoice"), [
                part('application/octet-stream; name="a.exe"', b"MZ\0\0",
                     ['Content-Disposition: attachment; filename="a.exe"'], "base64")])
            code, text = smtp_send(m.port, msg, "c@remote.test", ["u@example.test"])
            self.assertEqual(code, 250, text)
            quar = QID.search(text).group(1)
            code, text = smtp_send(m.port, eml(hdrs("d@remote.test"), "relayed\n"),
                                   "d@remote.test", ["now@relay.test", "later@relay.test"])
            self.assertEqual(code, 250, text)
            relayed = QID.search(text).group(1)
            m.wait_maildir("u@example.test")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not down.txns:
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            m.stop()  # the writer writes what is queued before moatd exits
            down.stop()

        db = sqlite3.connect(os.path.join(m.data, "moat.db"))
        rows = {r[0]: r for r in db.execute(
            "SELECT qid, verdict, score, symbols, subject, sender, client_ip FROM msg")}
        self.assertEqual(set(rows), {ok, rej, quar, relayed})
        self.assertEqual(rows[ok][1], "deliver")
        self.assertEqual(rows[ok][4], "hello there")
        self.assertEqual(rows[ok][6], "127.0.0.1")
        self.assertEqual(rows[rej][1], "reject")
        self.assertIn("GTUBE(100.00)", rows[rej][3])
        self.assertEqual(rows[quar][1], "quarantine")
        self.assertIn("ATTACH_BLOCKED_EXT", rows[quar][3])
        outcome = dict(((q, r), o) for q, r, o in db.execute(
            "SELECT qid, rcpt, outcome FROM msg_rcpt"))
        self.assertEqual(outcome[(ok, "u@example.test")], "delivered")
        self.assertEqual(outcome[(quar, "u@example.test")], "pending")
        # refused at the end of the data: moat's reply is the outcome
        self.assertEqual(outcome[(rej, "u@example.test")], "rejected")
        reply = db.execute("SELECT reply FROM msg_rcpt WHERE qid = ?", (rej,)).fetchone()[0]
        self.assertTrue(reply.startswith("550 5.7.1 Message rejected: ") and rej in reply, reply)
        self.assertEqual(outcome[(relayed, "now@relay.test")], "delivered")
        self.assertEqual(outcome[(relayed, "later@relay.test")], "deferred")
        q = db.execute("SELECT qid, domain, state, sender FROM quar").fetchall()
        self.assertEqual(q, [(quar, "example.test", "held", "c@remote.test")])
        # the quarantined message itself is where the record says
        self.assertTrue(os.path.exists(os.path.join(m.data, "quarantine", quar)))


if __name__ == "__main__":
    unittest.main()


class TestRefusedAtRcpt(unittest.TestCase):
    def test_refused_recipients_are_tracked(self):
        import smtplib
        m = Moatd(domains="[domain example.test]\nrecipients = u\nroute = maildir\n",
                  name="track-rcpt")
        m.start()
        try:
            c = smtplib.SMTP("127.0.0.1", m.port, timeout=30)
            c.ehlo("client.remote.test")
            c.mail("x@remote.test")
            self.assertEqual(c.rcpt("nobody@example.test")[0], 550)
            self.assertEqual(c.rcpt("someone@elsewhere.test")[0], 550)
            self.assertEqual(c.rcpt("u@example.test")[0], 250)
            code, text = c.data(eml(hdrs("x@remote.test"), "hi\n"))
            self.assertEqual(code, 250, text)
            accepted = QID.search(text.decode()).group(1)
            c.rset()
            c.mail("y@remote.test")
            self.assertEqual(c.rcpt("ghost@example.test")[0], 550)
            c.quit()
            m.wait_maildir("u@example.test")
        finally:
            m.stop()
        db = sqlite3.connect(os.path.join(m.data, "moat.db"))
        refused = db.execute(
            "SELECT m.qid, m.sender, m.helo, r.rcpt, r.outcome, r.reply FROM msg m "
            "JOIN msg_rcpt r ON r.qid = m.qid WHERE r.outcome = 'rejected' "
            "ORDER BY r.rcpt").fetchall()
        self.assertEqual([(r[1], r[3], r[4]) for r in refused], [
            ("y@remote.test", "ghost@example.test", "rejected"),
            ("x@remote.test", "nobody@example.test", "rejected"),
            ("x@remote.test", "someone@elsewhere.test", "rejected")])
        self.assertEqual(refused[1][5], "550 5.1.1 Recipient address rejected: user unknown")
        self.assertEqual(refused[2][5], "550 5.7.1 Relaying denied")
        self.assertEqual(refused[1][2], "client.remote.test")
        # one record per transaction, apart from the message accepted in it
        self.assertEqual(refused[1][0], refused[2][0])
        self.assertNotEqual(refused[0][0], refused[1][0])
        self.assertNotIn(accepted, {r[0] for r in refused})
        self.assertEqual(db.execute("SELECT outcome FROM msg_rcpt WHERE qid = ?",
                                    (accepted,)).fetchall(), [("delivered",)])
