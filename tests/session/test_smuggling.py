"""SMTP smuggling: only CR LF "." CR LF ends DATA (RFC 5321 2.3.8, 4.1.1.4).
A message carrying a bare-CR/LF end-of-data look-alike followed by a second
transaction gets exactly one reply (550 5.5.2), nothing is delivered, and
the session stays in sync."""
import time
import unittest

from sessutil import DaemonCase

SMUGGLED = (b"MAIL FROM:<smuggled@evil.test>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"From: smuggled@evil.test\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"you have been smuggled\r\n")

# (name, bytes put after "hello" in the body, before the smuggled transaction)
SEQUENCES = [
    ("LF . LF", b"\n.\n"),
    ("CR . CR", b"\r.\r"),
    ("CRLF . LF (\".\\n\" after a line)", b"\r\n.\n"),
    ("LF . CRLF", b"\n.\r\n"),
    ("CR . CRLF", b"\r.\r\n"),
    ("CRLF . CR", b"\r\n.\r"),
    ("CRLF . CR CRLF", b"\r\n.\r\r\n"),
    ("LF . LF with CR before", b"\r\n\n.\n"),
]

# (name, the last BDAT chunk's content) for BDAT LAST messages
BDAT_ROWS = [
    ("bare LF", b"Subject: b\r\n\r\nhello\n.\n" + SMUGGLED),
    ("bare CR", b"Subject: b\r\n\r\nhello\r.\r" + SMUGGLED),
    ("LF . CRLF", b"Subject: b\r\n\r\nhello\n.\r\n" + SMUGGLED),
    ("bare LF in the header", b"Subject: b\nX: y\r\n\r\nhello\r\n"),
    ("bare CR at the very end", b"Subject: b\r\n\r\nhello\r"),
]


class TestSmuggling(DaemonCase):
    """Delivery on: a smuggled message would reach victim@example.test."""

    def sync_message(self, c, what):
        """A normal message on the same session succeeds and is delivered."""
        n = len(self.moatd.maildir("sync@example.test"))
        qid = self.send_message(c, rcpts=("sync@example.test",), ehlo=False)
        self.moatd.wait_maildir("sync@example.test", n + 1)
        return qid

    def assert_no_victim(self, what, before=0):
        got = self.moatd.maildir("victim@example.test")
        self.assertEqual(len(got), before, "%s: victim@example.test received mail: %r"
                         % (what, got[before:]))

    def test_dot_sequences_in_data(self):
        for name, seq in SEQUENCES:
            with self.subTest(name):
                accepted = self.moatd.log().count("event=accepted")
                victims = len(self.moatd.maildir("victim@example.test"))
                targets = len(self.moatd.maildir("target@example.test"))
                c = self.connect()
                self.start_tx(c, rcpts=("target@example.test",))
                self.assertReply(c.cmd("DATA"), 354, None, "DATA")
                c.send(b"Subject: smuggle\r\n\r\nhello" + seq + SMUGGLED + b".\r\n")
                self.assertReply(c.reply(), 550, "5.5.2", "%s: end of data" % name)
                # exactly one reply for the whole thing
                self.assertIsNone(c.reply_or_none(0.3), "%s: a second reply" % name)
                self.assert_in_sync(c, name)
                self.assertEqual(self.moatd.log().count("event=accepted"), accepted,
                                 "%s: a message was accepted" % name)
                self.sync_message(c, name)
                self.assert_no_victim(name, victims)
                self.assertEqual(len(self.moatd.maildir("target@example.test")), targets,
                                 "%s: the refused message was delivered" % name)
                c.close()

    def test_dot_sequences_pipelined_with_real_end(self):
        # The smuggled commands and the real end arrive in separate sends.
        for name, seq in SEQUENCES[:3]:
            with self.subTest(name):
                victims = len(self.moatd.maildir("victim@example.test"))
                c = self.connect()
                self.start_tx(c, rcpts=("target2@example.test",))
                self.assertReply(c.cmd("DATA"), 354, None, "DATA")
                c.send(b"Subject: smuggle\r\n\r\nhello" + seq)
                time.sleep(0.05)
                c.send(SMUGGLED)
                time.sleep(0.05)
                self.assertIsNone(c.reply_or_none(0.2), "%s: reply before the real end" % name)
                c.send(b".\r\n")
                self.assertReply(c.reply(), 550, "5.5.2", "%s: end of data" % name)
                self.assertIsNone(c.reply_or_none(0.3), "%s: a second reply" % name)
                self.sync_message(c, name)
                self.assert_no_victim(name, victims)
                c.close()

    def test_bdat_bare_cr_lf(self):
        for name, chunk in BDAT_ROWS:
            with self.subTest(name):
                accepted = self.moatd.log().count("event=accepted")
                victims = len(self.moatd.maildir("victim@example.test"))
                targets = len(self.moatd.maildir("target3@example.test"))
                c = self.connect()
                self.start_tx(c, rcpts=("target3@example.test",))
                c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
                self.assertReply(c.reply(), 550, "5.5.2", "%s: BDAT LAST" % name)
                self.assertIsNone(c.reply_or_none(0.3), "%s: a second reply" % name)
                self.assert_in_sync(c, name)
                self.assertEqual(self.moatd.log().count("event=accepted"), accepted,
                                 "%s: a message was accepted" % name)
                self.sync_message(c, name)
                self.assert_no_victim(name, victims)
                self.assertEqual(len(self.moatd.maildir("target3@example.test")), targets,
                                 "%s: the refused message was delivered" % name)
                c.close()

    def test_bdat_bare_lf_in_middle_chunk(self):
        # Refused at that chunk or at LAST; either way 550 5.5.2 and nothing queued.
        accepted = self.moatd.log().count("event=accepted")
        victims = len(self.moatd.maildir("victim@example.test"))
        c = self.connect()
        self.start_tx(c, rcpts=("target4@example.test",))
        one = b"Subject: b\r\n\r\nhello\n.\n" + SMUGGLED
        c.send(b"BDAT %d\r\n" % len(one) + one)
        r = c.reply()
        if r.code == 250:
            self.assertReply(r, 250, "2.0.0", "middle chunk")
            c.send(b"BDAT 7 LAST\r\nbye\r\n\r\n")
            r = c.reply()
        self.assertReply(r, 550, "5.5.2", "message with a bare LF in a middle chunk")
        self.assertIsNone(c.reply_or_none(0.3), "a second reply")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        self.sync_message(c, "middle chunk")
        self.assertEqual(self.moatd.log().count("event=accepted"), accepted + 1)
        self.assert_no_victim("middle chunk", victims)
        self.assertEqual(self.moatd.maildir("target4@example.test"), [])

    def test_dot_stuffing_is_not_an_end(self):
        # "..\r\n" and ". \r\n" lines are content; CRLF.CRLF is the only end.
        c = self.connect()
        self.start_tx(c, rcpts=("dots@example.test",))
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: dots\r\n\r\n..\r\n. \r\n.x\r\n...\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        self.assertIsNone(c.reply_or_none(0.3), "a second reply")
        msg = self.moatd.wait_maildir("dots@example.test")[0]
        self.assertTrue(msg.endswith(b"Subject: dots\n\n.\n \nx\n..\n"), "got %r" % msg[-60:])


if __name__ == "__main__":
    unittest.main()
