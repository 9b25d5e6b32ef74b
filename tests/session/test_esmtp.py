"""ESMTP basics: greeting, EHLO keywords, the simple commands, bad sequences,
MAIL/RCPT parameters (SIZE, DSN), the Received header (RFC 5321, 1870, 2034,
3461, 2920, 3030, 6152, 6531)."""
import os
import unittest

from sessutil import (BODY, DaemonCase, describe, enh, queued_id, read_queue_file,
                      split_scan_fields,
                      strip_delivery_headers)

EHLO_KEYWORDS = ["PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                 "DSN", "CHUNKING"]


def ehlo_keywords(reply):
    return [l[4:] for l in reply.lines[1:]]


class TestBasics(DaemonCase):
    """Default limits, delivery on, no certificate."""

    def test_greeting(self):
        c = self.connect()
        self.assertEqual(c.greeting.lines, ["220 mx.moat.test ESMTP moat"],
                         "got greeting %r" % c.greeting.lines)

    def test_ehlo_keywords(self):
        c = self.connect()
        r = c.cmd("EHLO client.test")
        self.assertReply(r, 250, None, "EHLO")
        self.assertTrue(r.lines[0].startswith("250-mx.moat.test"),
                        "first EHLO line %r, want the hostname" % r.lines[0])
        kws = ehlo_keywords(r)
        for kw in EHLO_KEYWORDS:
            self.assertIn(kw, kws, "EHLO lacks %s: got %r" % (kw, kws))
        self.assertNotIn("STARTTLS", kws, "STARTTLS advertised without a certificate")
        for banned in ("AUTH", "VRFY", "EXPN", "BINARYMIME"):
            self.assertFalse([k for k in kws if k.split()[0] == banned],
                             "EHLO advertises %s: %r" % (banned, kws))

    def test_starttls_without_cert(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("STARTTLS"), 502, "5.5.1", "STARTTLS without a certificate")
        self.assert_in_sync(c)

    def test_helo(self):
        c = self.connect()
        r = c.cmd("HELO client.test")
        self.assertEqual(r.lines, ["250 mx.moat.test"], "HELO: got %r" % r.lines)
        # After HELO no ESMTP extension is offered: ESMTP parameters are unknown.
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SIZE=10"), 555, "5.5.4",
                         "SIZE= after HELO")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL after HELO")

    def test_simple_commands(self):
        # (name, command, want code, want enhanced code); in one session, after EHLO
        rows = [
            ("NOOP", "NOOP", 250, "2.0.0"),
            ("NOOP with argument", "NOOP hello", 250, "2.0.0"),
            ("lower-case verb", "noop", 250, "2.0.0"),
            ("RSET", "RSET", 250, "2.0.0"),
            ("VRFY", "VRFY user@example.test", 252, "2.5.2"),
            ("EXPN", "EXPN staff", 502, "5.5.1"),
            ("HELP", "HELP", 214, "2.0.0"),
            ("HELP with topic", "HELP MAIL", 214, "2.0.0"),
            ("AUTH", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", 502, "5.5.1"),
            ("unknown verb", "XYZZY", 500, "5.5.1"),
            ("unknown verb TURN", "TURN", 500, "5.5.1"),
            ("empty line", "", 500, "5.5.2"),
            ("MAIL without FROM:", "MAIL <a@remote.test>", 501, "5.5.4"),
            ("EHLO without a name", "EHLO", 501, "5.5.4"),
            ("HELO without a name", "HELO", 501, "5.5.4"),
            ("EHLO with an address literal", "EHLO [127.0.0.1]", 250, None),
            ("RCPT without TO:", "RCPT <user@example.test>", 501, "5.5.4"),
            ("DATA with argument", "DATA now", 503, "5.5.1"),
        ]
        c = self.connect()
        self.ehlo(c)
        for name, line, code, e in rows:
            with self.subTest(name):
                self.assertReply(c.cmd(line), code, e, "%s (%r)" % (name, line))
        self.assert_in_sync(c)

    def test_quit(self):
        c = self.connect()
        self.ehlo(c)
        r = c.cmd("QUIT")
        self.assertReply(r, 221, "2.0.0", "QUIT")
        self.assertClosed(c, "after QUIT")

    def test_quit_before_ehlo(self):
        c = self.connect()
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", "QUIT before EHLO")
        self.assertClosed(c, "after QUIT")

    def test_bad_sequences(self):
        # (name, setup commands, command, want code, want enhanced)
        rows = [
            ("MAIL before EHLO", [], "MAIL FROM:<a@remote.test>", 503, "5.5.1"),
            ("RCPT before EHLO", [], "RCPT TO:<user@example.test>", 503, "5.5.1"),
            ("DATA before EHLO", [], "DATA", 503, "5.5.1"),
            ("RCPT before MAIL", ["EHLO c.test"], "RCPT TO:<user@example.test>", 503, "5.5.1"),
            ("DATA before MAIL", ["EHLO c.test"], "DATA", 503, "5.5.1"),
            ("DATA before RCPT", ["EHLO c.test", "MAIL FROM:<a@remote.test>"], "DATA", 503,
             "5.5.1"),
            ("nested MAIL", ["EHLO c.test", "MAIL FROM:<a@remote.test>"],
             "MAIL FROM:<b@remote.test>", 503, "5.5.1"),
            ("nested MAIL after RCPT",
             ["EHLO c.test", "MAIL FROM:<a@remote.test>", "RCPT TO:<user@example.test>"],
             "MAIL FROM:<b@remote.test>", 503, "5.5.1"),
            ("RCPT after RSET",
             ["EHLO c.test", "MAIL FROM:<a@remote.test>", "RSET"],
             "RCPT TO:<user@example.test>", 503, "5.5.1"),
            ("DATA after RSET",
             ["EHLO c.test", "MAIL FROM:<a@remote.test>", "RCPT TO:<user@example.test>",
              "RSET"], "DATA", 503, "5.5.1"),
            ("DATA after a second EHLO",
             ["EHLO c.test", "MAIL FROM:<a@remote.test>", "RCPT TO:<user@example.test>",
              "EHLO c.test"], "DATA", 503, "5.5.1"),
        ]
        for name, setup, line, code, e in rows:
            with self.subTest(name):
                c = self.connect()
                for s in setup:
                    r = c.cmd(s)
                    self.assertLess(r.code, 400, "%s: setup %r got %s" % (name, s, describe(r)))
                self.assertReply(c.cmd(line), code, e, name)
                self.assert_in_sync(c, name)
                c.close()

    def test_mail_rcpt_parameters(self):
        # (name, MAIL line, RCPT line or None, want code, want enhanced) for the last command
        rows = [
            ("null sender", "MAIL FROM:<>", None, 250, "2.1.0"),
            ("space before path", "MAIL FROM: <a@remote.test>", None, 250, "2.1.0"),
            ("SIZE", "MAIL FROM:<a@remote.test> SIZE=1000", None, 250, "2.1.0"),
            ("BODY=8BITMIME", "MAIL FROM:<a@remote.test> BODY=8BITMIME", None, 250, "2.1.0"),
            ("BODY=7BIT", "MAIL FROM:<a@remote.test> BODY=7BIT", None, 250, "2.1.0"),
            ("SMTPUTF8", "MAIL FROM:<a@remote.test> SMTPUTF8", None, 250, "2.1.0"),
            ("RET=FULL ENVID", "MAIL FROM:<a@remote.test> RET=FULL ENVID=x+2By", None, 250,
             "2.1.0"),
            ("lower-case keyword", "MAIL FROM:<a@remote.test> size=10", None, 250, "2.1.0"),
            ("unknown MAIL parameter", "MAIL FROM:<a@remote.test> FOO=bar", None, 555, "5.5.4"),
            ("unknown MAIL keyword alone", "MAIL FROM:<a@remote.test> XFOO", None, 555, "5.5.4"),
            ("BODY=BINARYMIME not offered", "MAIL FROM:<a@remote.test> BODY=BINARYMIME", None,
             555, "5.5.4"),
            ("AUTH= not offered", "MAIL FROM:<a@remote.test> AUTH=<>", None, 555, "5.5.4"),
            ("SIZE not a number", "MAIL FROM:<a@remote.test> SIZE=abc", None, 501, "5.5.4"),
            ("SIZE empty", "MAIL FROM:<a@remote.test> SIZE=", None, 501, "5.5.4"),
            ("SIZE overflow", "MAIL FROM:<a@remote.test> SIZE=99999999999999999999999", None,
             501, "5.5.4"),
            ("SIZE twice", "MAIL FROM:<a@remote.test> SIZE=1 SIZE=2", None, 501, "5.5.4"),
            ("BODY bad value", "MAIL FROM:<a@remote.test> BODY=9BIT", None, 501, "5.5.4"),
            ("RET bad value", "MAIL FROM:<a@remote.test> RET=SOME", None, 501, "5.5.4"),
            ("ENVID bad xtext", "MAIL FROM:<a@remote.test> ENVID=a+zz", None, 501, "5.5.4"),
            ("SMTPUTF8 with a value", "MAIL FROM:<a@remote.test> SMTPUTF8=yes", None, 501,
             "5.5.4"),
            ("SIZE over the maximum", "MAIL FROM:<a@remote.test> SIZE=52428801", None, 552,
             "5.3.4"),
            ("SIZE at the maximum", "MAIL FROM:<a@remote.test> SIZE=52428800", None, 250,
             "2.1.0"),
            ("NOTIFY", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE,DELAY", 250, "2.1.5"),
            ("NOTIFY=NEVER", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> NOTIFY=NEVER", 250, "2.1.5"),
            ("ORCPT", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> ORCPT=rfc822;user@example.test", 250, "2.1.5"),
            ("unknown RCPT parameter", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> FOO=bar", 555, "5.5.4"),
            ("SIZE on RCPT", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> SIZE=10", 555, "5.5.4"),
            ("NOTIFY=NEVER,SUCCESS", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
            ("NOTIFY bad value", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> NOTIFY=SOMETIMES", 501, "5.5.4"),
            ("ORCPT without type", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> ORCPT=user@example.test", 501, "5.5.4"),
            ("ORCPT unknown type", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> ORCPT=x400;foo", 501, "5.5.4"),
            ("NOTIFY twice", "MAIL FROM:<a@remote.test>",
             "RCPT TO:<user@example.test> NOTIFY=NEVER NOTIFY=NEVER", 501, "5.5.4"),
        ]
        for name, mail, rcpt, code, e in rows:
            with self.subTest(name):
                c = self.connect()  # one session per row: errors stay under smtp_max_errors
                self.ehlo(c)
                if rcpt is None:
                    self.assertReply(c.cmd(mail), code, e, "%s (%r)" % (name, mail))
                else:
                    self.assertReply(c.cmd(mail), 250, "2.1.0", "%s: MAIL" % name)
                    self.assertReply(c.cmd(rcpt), code, e, "%s (%r)" % (name, rcpt))
                self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET after " + name)
                c.close()

    def test_rejected_mail_keeps_no_transaction(self):
        # A MAIL refused for a parameter starts no transaction: RCPT is out of sequence.
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> FOO=bar"), 555, "5.5.4", "MAIL FOO=")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1",
                         "RCPT after a refused MAIL")

    def test_received_header_has_queue_id(self):
        c = self.connect()
        qid = self.send_message(c, rcpts=("recv@example.test",),
                                body=b"Subject: received\r\n\r\nbody line\r\n")
        msgs = self.moatd.wait_maildir("recv@example.test")
        self.assertEqual(len(msgs), 1)
        msg = msgs[0]
        self.assertTrue(split_scan_fields(msg)[1].startswith(
                                       b"Return-Path: <sender@remote.test>\nDelivered-To: "
                                       b"recv@example.test\nReceived: from client.test "
                                       b"([127.0.0.1])\n\tby mx.moat.test (moat) with ESMTP id "
                                       + qid.encode()),
                        "maildir file starts %r, want our Received header with id %s"
                        % (msg[:250], qid))
        self.assertEqual(strip_delivery_headers(msg), b"Subject: received\n\nbody line\n")

    def test_rset_aborts_transaction(self):
        c = self.connect()
        before = self.snapshot()
        self.start_tx(c, rcpts=("rset@example.test",))
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA after RSET")
        # A full message afterwards goes only where the new transaction says.
        self.send_message(c, rcpts=("rset2@example.test",), ehlo=False)
        self.moatd.wait_maildir("rset2@example.test")
        self.assertEqual(self.moatd.maildir("rset@example.test"), [],
                         "the RSET transaction's recipient got mail")


class TestDSNKept(DaemonCase):
    """delivery_paused = yes: the queue file stays and shows the envelope."""

    CONF = "delivery_paused = yes\n"

    def test_dsn_parameters_in_queue_file(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<dsn@remote.test> RET=HDRS ENVID=QQ+2Bmoat-env-1"),
                         250, "2.1.0", "MAIL with RET/ENVID")
        self.assertReply(c.cmd("RCPT TO:<one@example.test> NOTIFY=SUCCESS,FAILURE "
                               "ORCPT=rfc822;orig+2Bone@example.test"), 250, "2.1.5",
                         "RCPT with NOTIFY/ORCPT")
        self.assertReply(c.cmd("RCPT TO:<two@example.test> NOTIFY=NEVER"), 250, "2.1.5",
                         "RCPT NOTIFY=NEVER")
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        qid = queued_id(r)
        path = os.path.join(self.moatd.data, "queue", qid)
        self.assertTrue(os.path.exists(path), "queue/%s missing; queue=%s"
                        % (qid, self.moatd.queue_ids()))
        with open(path, "rb") as f:
            raw = f.read()
        for s in (b"HDRS", b"QQ+2Bmoat-env-1", b"rfc822;orig+2Bone@example.test",
                  b"one@example.test", b"two@example.test", b"dsn@remote.test"):
            self.assertIn(s, raw, "queue file lacks %r" % s)
        body, recs = read_queue_file(path)
        rec = {}
        for t, v in recs:
            rec.setdefault(t, []).append(v)
        self.assertEqual(rec.get("r"), [b"HDRS"], "RET record: %r" % rec.get("r"))
        self.assertEqual(rec.get("e"), [b"QQ+2Bmoat-env-1"], "ENVID record: %r" % rec.get("e"))
        self.assertEqual(rec.get("R"), [b"one@example.test", b"two@example.test"])
        # NOTIFY is kept per recipient, as SMTP_NOTIFY_* bits (smtp_parse.h)
        self.assertEqual(rec.get("N"), [b"6", b"1"], "NOTIFY records: %r" % rec.get("N"))
        self.assertEqual(rec.get("O"), [b"rfc822;orig+2Bone@example.test"])
        self.assertIn(b"id " + qid.encode(), body, "Received header lacks the queue id")


class TestSizeAdvertised(DaemonCase):
    CONF = "smtp_max_message_size = 64k\n"

    def test_size_follows_config(self):
        c = self.connect()
        kws = ehlo_keywords(self.ehlo(c))
        self.assertIn("SIZE 65536", kws, "EHLO: got %r, want SIZE 65536" % kws)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SIZE=65537"), 552, "5.3.4",
                         "SIZE over the configured max")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> SIZE=65536"), 250, "2.1.0",
                         "SIZE at the configured max")


if __name__ == "__main__":
    unittest.main()
