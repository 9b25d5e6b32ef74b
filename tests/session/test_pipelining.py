"""PIPELINING (RFC 2920): groups after EHLO get their replies in order;
pipelining without it, or past a command that must end a group, is refused
with 554 5.5.0 and the connection is closed."""
import unittest

from sessutil import BODY, DaemonCase, describe, queued_id


class TestPipelining(DaemonCase):
    CONF = "delivery_paused = yes\n"  # anything wrongly accepted stays in queue/

    def test_group_replies_in_order(self):
        c = self.connect()
        self.ehlo(c)
        c.send(b"MAIL FROM:<sender@remote.test>\r\n"
               b"RCPT TO:<p1@example.test>\r\n"
               b"RCPT TO:<p@evil.test>\r\n"
               b"RCPT TO:<p2@example.test>\r\n"
               b"DATA\r\n")
        want = [(250, "2.1.0"), (250, "2.1.5"), (550, "5.7.1"), (250, "2.1.5"), (354, None)]
        for i, (code, e) in enumerate(want):
            self.assertReply(c.reply(), code, e, "pipelined reply %d" % (i + 1))
        c.send(BODY + b".\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        body = open("%s/queue/%s" % (self.moatd.data, queued_id(r)), "rb").read()
        self.assertIn(b"p1@example.test", body)
        self.assertIn(b"p2@example.test", body)
        self.assertNotIn(b"p@evil.test", body)

    def test_group_with_rset_and_noop(self):
        c = self.connect()
        self.ehlo(c)
        c.send(b"MAIL FROM:<a@remote.test>\r\nRSET\r\nNOOP\r\nMAIL FROM:<b@remote.test>\r\n"
               b"RCPT TO:<user@example.test>\r\nRSET\r\n")
        want = [(250, "2.1.0"), (250, "2.0.0"), (250, "2.0.0"), (250, "2.1.0"), (250, "2.1.5"),
                (250, "2.0.0")]
        for i, (code, e) in enumerate(want):
            self.assertReply(c.reply(), code, e, "pipelined reply %d" % (i + 1))
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA after pipelined RSET")

    def test_refused(self):
        # (name, what is sent after the greeting in separate steps, the last step pipelined)
        rows = [
            ("pipelining after HELO", [b"HELO client.test\r\n"],
             b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\n"),
            ("pipelining after HELO, NOOPs", [b"HELO client.test\r\n"], b"NOOP\r\nNOOP\r\n"),
            ("pipelining before EHLO", [], b"NOOP\r\nEHLO client.test\r\n"),
            ("commands pipelined behind EHLO", [],
             b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\n"),
            ("message content behind DATA",
             [b"EHLO client.test\r\n", b"MAIL FROM:<a@remote.test>\r\n",
              b"RCPT TO:<user@example.test>\r\n"],
             b"DATA\r\n" + BODY + b".\r\n"),
            ("whole transaction in one send", [b"EHLO client.test\r\n"],
             b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
             + BODY + b".\r\nQUIT\r\n"),
            ("message pipelined after HELO",
             [b"HELO client.test\r\n", b"MAIL FROM:<a@remote.test>\r\n",
              b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n"],
             BODY + b".\r\nQUIT\r\n"),
        ]
        for name, steps, last in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                for s in steps:
                    c.send(s)
                    r = c.reply()
                    self.assertLess(r.code, 400, "%s: setup %r got %s" % (name, s, describe(r)))
                c.send(last)
                # Replies to commands before the offending one may come first; none may be
                # a 250 for end of data, and the last must be 554 5.5.0 before the close.
                got = []
                while True:
                    r = c.reply_or_none(5)
                    if r is None:
                        break
                    got.append(r)
                    if r.code >= 400:
                        break
                self.assertTrue(got, "%s: no reply, want 554 5.5.0" % name)
                self.assertReply(got[-1], 554, "5.5.0", name)
                for r in got[:-1]:
                    self.assertIsNone(queued_id(r), "%s: message accepted: %s" % (name, describe(r)))
                self.assertClosed(c, name)
                self.assertNothingQueued(before, name)

    def test_end_of_data_then_quit(self):
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\nQUIT\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        self.assertIsNotNone(queued_id(r))
        self.assertReply(c.reply(), 221, "2.0.0", "QUIT pipelined after the message")
        self.assertClosed(c, "after QUIT")
        self.assertIn(queued_id(r), self.moatd.queue_ids())

    def test_end_of_data_then_next_transaction(self):
        c = self.connect()
        self.start_tx(c, rcpts=("first@example.test",))
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<second@example.test>\r\n"
               b"DATA\r\n")
        r1 = c.reply()
        self.assertReply(r1, 250, "2.0.0", "end of first message")
        self.assertReply(c.reply(), 250, "2.1.0", "pipelined MAIL")
        self.assertReply(c.reply(), 250, "2.1.5", "pipelined RCPT")
        self.assertReply(c.reply(), 354, None, "pipelined DATA")
        c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\n")
        r2 = c.reply()
        self.assertReply(r2, 250, "2.0.0", "end of second message")
        self.assertNotEqual(queued_id(r1), queued_id(r2))


if __name__ == "__main__":
    unittest.main()
