"""No open relay: every address trick is refused at RCPT and nothing reaches a
Maildir that policy did not allow (RFC 5321 4.1.1.3, 4.1.2, 4.1.3; RFC 6531)."""
import unittest

from sessutil import BODY, DaemonCase, maildir_tree

# (name, RCPT TO argument bytes, want code, want enhanced code)
REFUSED = [
    ("percent hack", b"<user%evil.test@example.test>", 550, "5.7.1"),
    ("percent hack, two hops", b"<user%evil.test%other.test@example.test>", 550, "5.7.1"),
    ("bang path", b"<evil.test!user@example.test>", 550, "5.7.1"),
    ("source route to another domain", b"<@example.test:user@evil.test>", 550, "5.7.1"),
    ("source route, two hops", b"<@example.test,@listed.test:user@evil.test>", 550, "5.7.1"),
    ("quoted local part with @", b'<"user@evil.test"@example.test>', 550, "5.7.1"),
    ("quoted local part with %", b'<"user%evil.test"@example.test>', 550, "5.7.1"),
    ("quoted local part with !", b'<"evil.test!user"@example.test>', 550, "5.7.1"),
    ("quoted-pair @", b'<"user\\@evil.test"@example.test>', 550, "5.7.1"),
    ("address literal", b"<user@[127.0.0.1]>", 550, "5.7.1"),
    ("IPv6 address literal", b"<user@[IPv6:::1]>", 550, "5.7.1"),
    ("trailing dot", b"<user@example.test.>", 501, "5.1.3"),
    # A NUL anywhere in a command line is refused by the command parser.
    ("NUL byte in local part", b"<us\x00er@example.test>", 500, "5.5.2"),
    ("8-bit local part without SMTPUTF8", "<j\u00fcrgen@example.test>".encode(), 553, "5.6.7"),
    ("8-bit domain without SMTPUTF8", "<user@ex\u00e4mple.test>".encode(), 553, "5.6.7"),
    ("non-protected domain", b"<user@evil.test>", 550, "5.7.1"),
    ("subdomain of a protected domain", b"<user@sub.example.test>", 550, "5.7.1"),
    ("protected domain as a prefix", b"<user@example.test.evil.test>", 550, "5.7.1"),
    ("protected domain as a suffix", b"<user@evilexample.test>", 550, "5.7.1"),
    ("two @", b"<user@evil.test@example.test>", 501, "5.1.3"),
    ("no domain", b"<user>", 501, "5.1.3"),
    ("no angle brackets", b"user@example.test", 501, "5.1.3"),
    ("null path as recipient", b"<>", 501, "5.1.3"),
    ("listed domain, unknown user", b"<carol@listed.test>", 550, "5.1.1"),
    ("listed domain, unknown user, upper case", b"<CAROL@LISTED.TEST>", 550, "5.1.1"),
]

# (name, RCPT TO argument, canonical recipient "domain/local" of the Maildir)
ACCEPTED = [
    ("plain", b"<plain@example.test>", "example.test/plain"),
    ("upper-case domain", b"<case1@EXAMPLE.TEST>", "example.test/case1"),
    ("upper-case address", b"<CASE2@EXAMPLE.TEST>", "example.test/case2"),
    ("mixed-case domain", b"<case3@Example.Test>", "example.test/case3"),
    ("source route to a protected domain is dropped", b"<@evil.test:routed@example.test>",
     "example.test/routed"),
    ("listed user", b"<alice@listed.test>", "listed.test/alice"),
    ("listed user, upper case", b"<ALICE@Listed.Test>", "listed.test/alice"),
    ("listed as a full address", b"<bob@listed.test>", "listed.test/bob"),
]


class TestNoOpenRelay(DaemonCase):

    def test_relay_tricks_refused_and_nothing_delivered(self):
        before = maildir_tree(self.moatd)
        for name, arg, code, e in REFUSED:
            with self.subTest(name):
                c = self.connect()
                self.ehlo(c)
                self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250, "2.1.0", "MAIL")
                c.send(b"RCPT TO:" + arg + b"\r\n")
                self.assertReply(c.reply(), code, e, "%s RCPT TO:%r" % (name, arg))
                # The refused recipient was not kept: the transaction has none.
                self.assertReply(c.cmd("DATA"), 503, "5.5.1", "%s: DATA after it" % name)
                c.close()
        # Trigger delivery of something legitimate and wait for it, then look.
        c = self.connect()
        self.send_message(c, rcpts=("marker@example.test",))
        self.moatd.wait_maildir("marker@example.test")
        self.assertEqual(maildir_tree(self.moatd) - before, {"example.test/marker"},
                         "Maildirs created by refused recipients")
        self.assertEqual(self.moatd.queue_ids(), [], "queue not empty after delivery")

    def test_refused_rcpt_does_not_poison_transaction(self):
        # In one transaction: good, bad, good; only the good ones get the message.
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(c.cmd("RCPT TO:<mix1@example.test>"), 250, "2.1.5", "RCPT mix1")
        self.assertReply(c.cmd("RCPT TO:<mix%evil.test@example.test>"), 550, "5.7.1",
                         "RCPT percent hack")
        self.assertReply(c.cmd("RCPT TO:<mix@evil.test>"), 550, "5.7.1", "RCPT evil.test")
        self.assertReply(c.cmd("RCPT TO:<mix2@listed.test>"), 550, "5.1.1", "RCPT unknown")
        self.assertReply(c.cmd("RCPT TO:<alice@listed.test>"), 250, "2.1.5", "RCPT alice")
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        self.moatd.wait_maildir("mix1@example.test")
        self.moatd.wait_maildir("alice@listed.test")
        tree = maildir_tree(self.moatd)
        for bad in ("evil.test/mix", "listed.test/mix2"):
            self.assertNotIn(bad, tree, "refused recipient %s got a Maildir" % bad)
        self.assertFalse([d for d in tree if d.startswith("evil.test/")],
                         "a Maildir for evil.test exists: %s" % sorted(tree))

    def test_accepted_variants(self):
        for name, arg, box in ACCEPTED:
            with self.subTest(name):
                c = self.connect()
                self.ehlo(c)
                self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250, "2.1.0", "MAIL")
                c.send(b"RCPT TO:" + arg + b"\r\n")
                self.assertReply(c.reply(), 250, "2.1.5", "%s RCPT TO:%r" % (name, arg))
                self.assertReply(c.cmd("DATA"), 354, None, name)
                c.send(BODY + b".\r\n")
                self.assertReply(c.reply(), 250, "2.0.0", name)
                local, dom = box.split("/")[1], box.split("/")[0]
                self.moatd.wait_maildir("%s@%s" % (local, dom))
                c.close()
        tree = maildir_tree(self.moatd)
        self.assertFalse([d for d in tree if d.startswith("evil.test/")],
                         "a Maildir for evil.test exists: %s" % sorted(tree))

    def test_smtputf8_allows_utf8_recipient(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<sender@remote.test> SMTPUTF8"), 250, "2.1.0", "MAIL")
        c.send("RCPT TO:<j\u00fcrgen@example.test>\r\n".encode())
        self.assertReply(c.reply(), 250, "2.1.5", "UTF-8 local part with SMTPUTF8")

    def test_utf8_sender_without_smtputf8(self):
        c = self.connect()
        self.ehlo(c)
        c.send("MAIL FROM:<j\u00fcrgen@remote.test>\r\n".encode())
        self.assertReply(c.reply(), 553, "5.6.7", "UTF-8 sender without SMTPUTF8")


if __name__ == "__main__":
    unittest.main()
