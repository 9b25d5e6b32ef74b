"""Limits (RFC 5321 4.5.3): command and text line lengths, address sizes,
recipients, message and header size, mail loops, sessions per client and in
total, timeouts, the error limit, early talkers, HTTP probes, bounded memory."""
import os
import time
import unittest

from sessutil import BODY, DaemonCase, queued_id, read_queue_file, send_simple


def received_headers(n):
    return b"".join(b"Received: from h%d.test by mx%d.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                    % (i, i) for i in range(n))


class TestSizeLimits(DaemonCase):
    CONF = ("delivery_paused = yes\n"
            "smtp_max_recipients = 5\n"
            "smtp_max_message_size = 64k\n"
            "smtp_max_header_size = 8k\n")

    def data(self, c, content, what, rcpts=("user@example.test",)):
        """DATA with content (before the final '.'); returns the final reply."""
        self.start_tx(c, rcpts=rcpts)
        self.assertReply(c.cmd("DATA"), 354, None, what + ": DATA")
        c.send(content + b".\r\n")
        return c.reply()

    def test_command_line_length(self):
        # NOOP takes any argument; the limit is 512 octets including CRLF.
        rows = [
            ("511 octets", 511, 250, "2.0.0"),
            ("512 octets", 512, 250, "2.0.0"),
            ("513 octets", 513, 500, "5.5.2"),
            ("1000 octets", 1000, 500, "5.5.2"),
            ("100000 octets", 100000, 500, "5.5.2"),
        ]
        c = self.connect()
        self.ehlo(c)
        for name, total, code, e in rows:
            with self.subTest(name):
                line = b"NOOP " + b"x" * (total - 7) + b"\r\n"
                self.assertEqual(len(line), total)
                c.send(line)
                self.assertReply(c.reply(), code, e, "command line of " + name)
                self.assert_in_sync(c, name)
        # the session goes on: a message still works
        self.send_message(c, ehlo=False)

    def test_long_mail_line_refused_not_executed(self):
        c = self.connect()
        self.ehlo(c)
        # MAIL and RCPT may exceed 512 octets by what DSN and SIZE add (RFC 3461
        # 4.1: 600 + 26); past that the line is refused unread.
        c.send(b"MAIL FROM:<a@remote.test> " + b"X" * 1200 + b"\r\n")
        self.assertReply(c.reply(), 500, "5.5.2", "1200-octet MAIL line")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1",
                         "RCPT after the refused MAIL line")
        # Other commands keep the plain 512-octet limit.
        self.assertReply(c.cmd("NOOP " + "n" * 600), 500, "5.5.2", "600-octet NOOP line")

    def test_long_orcpt_accepted(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test> RET=HDRS ENVID=" + "e" * 90), 250,
                         "2.1.0", "MAIL with a 90-octet ENVID")
        orcpt = "rfc822;" + "+2B" * 90 + "@" + ".".join(["d" * 60] * 3)
        line = "RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=" + orcpt
        self.assertGreater(len(line) + 2, 512)
        self.assertReply(c.cmd(line), 250, "2.1.5", "RCPT with a %d-octet ORCPT" % len(orcpt))

    def test_address_lengths(self):
        dom255 = ".".join(["a" * 63] * 4)  # 4*63 + 3 = 255 octets
        dom256 = dom255 + "b"
        rows = [
            ("local part 64", "RCPT TO:<%s@example.test>" % ("l" * 64), 250, "2.1.5"),
            ("local part 65", "RCPT TO:<%s@example.test>" % ("l" * 65), 501, "5.1.3"),
            ("quoted local part 65", 'RCPT TO:<"%s"@example.test>' % ("q" * 63), 501, "5.1.3"),
            ("domain 256", "RCPT TO:<u@%s>" % dom256, 501, "5.1.3"),
            ("domain label 64", "RCPT TO:<u@%s.example.test>" % ("d" * 64), 501, "5.1.3"),
            ("sender local part 65", None, 501, "5.1.7"),
        ]
        for name, line, code, e in rows:
            with self.subTest(name):
                c = self.connect()
                self.ehlo(c)
                if line is None:
                    self.assertReply(c.cmd("MAIL FROM:<%s@remote.test>" % ("s" * 65)), code, e,
                                     name)
                else:
                    self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
                    self.assertReply(c.cmd(line), code, e, name)
                c.close()

    def test_max_recipients(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        for i in range(5):
            self.assertReply(c.cmd("RCPT TO:<r%d@example.test>" % i), 250, "2.1.5",
                             "recipient %d" % (i + 1))
        self.assertReply(c.cmd("RCPT TO:<r5@example.test>"), 452, "4.5.3", "recipient 6")
        self.assertReply(c.cmd("RCPT TO:<r6@example.test>"), 452, "4.5.3", "recipient 7")
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "message to the first 5")
        _, recs = read_queue_file("%s/queue/%s" % (self.moatd.data, queued_id(r)))
        rcpts = [v for t, v in recs if t == "R"]
        self.assertEqual(rcpts, [b"r%d@example.test" % i for i in range(5)])

    def test_message_over_max_size(self):
        before = self.snapshot()
        c = self.connect()
        content = b"Subject: big\r\n\r\n" + (b"Z" * 98 + b"\r\n") * 700  # 70 kB
        r = self.data(c, content, "70 kB message")
        self.assertReply(r, 552, "5.3.4", "70 kB message, 64k maximum, no SIZE")
        self.assertNothingQueued(before, "after the refused message")
        self.assert_in_sync(c)
        # the session goes on
        self.send_message(c, ehlo=False)

    def test_message_of_exactly_max_size(self):
        # RFC 1870: the size is the client's message (after unstuffing, without the final
        # "."); a message of exactly the advertised SIZE fits, one octet more does not.
        for extra, code, e in ((0, 250, "2.0.0"), (1, 552, "5.3.4")):
            size = 65536 + extra
            with self.subTest(size=size):
                head = b"Subject: exact\r\n\r\n"
                line = b"E" * 98 + b"\r\n"
                n = (size - len(head)) // len(line)
                rest = size - len(head) - n * len(line)
                content = head + line * n + b"R" * (rest - 2) + b"\r\n"
                self.assertEqual(len(content), size)
                c = self.connect()
                self.ehlo(c)
                mail = "MAIL FROM:<a@remote.test>" + (" SIZE=%d" % size if extra == 0 else "")
                self.assertReply(c.cmd(mail), 250, "2.1.0", mail)
                self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5", "RCPT")
                self.assertReply(c.cmd("DATA"), 354, None, "DATA")
                c.send(content + b".\r\n")
                self.assertReply(c.reply(), code, e, "message of %d octets, 64k (65536) maximum"
                                 % size)
                c.close()

    def test_message_at_max_size_accepted(self):
        # 60 kB plus moat's Received header stays under 64 KiB.
        c = self.connect()
        content = b"Subject: fits\r\n\r\n" + (b"F" * 98 + b"\r\n") * 600
        self.assertReply(self.data(c, content, "60 kB"), 250, "2.0.0", "60 kB message")

    def test_header_over_max(self):
        before = self.snapshot()
        c = self.connect()
        hdr = b"".join(b"X-Pad-%03d: %s\r\n" % (i, b"p" * 100) for i in range(80))  # ~9.5 kB
        r = self.data(c, b"Subject: h\r\n" + hdr + b"\r\nbody\r\n", "big header")
        self.assertReply(r, 552, "5.3.4", "9.5 kB header block, 8k maximum")
        self.assertNothingQueued(before)
        # the same bytes in the body are fine
        r = self.data(c, b"Subject: h\r\n\r\n" + hdr, "big body")
        self.assertReply(r, 250, "2.0.0", "9.5 kB body after a small header")

    def test_received_hops(self):
        rows = [("50 Received headers", 50, 250, "2.0.0"),
                ("51 Received headers", 51, 554, "5.4.6"),
                ("51, folded case", -51, 554, "5.4.6")]
        for name, n, code, e in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                hdrs = received_headers(abs(n))
                if n < 0:
                    hdrs = hdrs.replace(b"Received: ", b"RECEIVED : ", 20)
                r = self.data(c, hdrs + b"Subject: loop\r\n\r\nbody\r\n", name)
                self.assertReply(r, code, e, name)
                if code != 250:
                    self.assertNothingQueued(before, name)
                c.close()

    def test_received_in_body_not_counted(self):
        c = self.connect()
        r = self.data(c, b"Subject: x\r\n\r\n" + received_headers(60), "Received in body")
        self.assertReply(r, 250, "2.0.0", "60 Received lines in the body")

    def test_text_line_length(self):
        # (name, the line on the wire without CRLF, want code, want enhanced code)
        rows = [
            ("998 + CRLF", b"L" * 998, 250, "2.0.0"),
            ("999 + CRLF", b"L" * 999, 500, "5.5.2"),
            ("5000 + CRLF", b"L" * 5000, 500, "5.5.2"),
            # RFC 5321 4.5.3.1.6: the stuffing dot does not count
            ("dot-stuffed, 998 + CRLF after unstuffing", b".." + b"L" * 997, 250, "2.0.0"),
            ("dot-stuffed, 999 + CRLF after unstuffing", b".." + b"L" * 998, 500, "5.5.2"),
        ]
        for name, line, code, e in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                r = self.data(c, b"Subject: l\r\n\r\n" + line + b"\r\n", name)
                self.assertReply(r, code, e, "text line of " + name)
                if code != 250:
                    self.assertNothingQueued(before, name)
                self.assert_in_sync(c, name)
                c.close()

    def test_long_header_line(self):
        c = self.connect()
        r = self.data(c, b"Subject: " + b"S" * 1000 + b"\r\n\r\nbody\r\n", "long header line")
        self.assertReply(r, 500, "5.5.2", "1011-octet header line")


class TestSpilledMessageLimit(DaemonCase):
    """A refused message that had spilled to incoming/ leaves nothing behind."""

    CONF = "delivery_paused = yes\nsmtp_max_message_size = 256k\n"

    def test_over_max_after_spill(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: big\r\n\r\n" + (b"S" * 98 + b"\r\n") * 1000)  # 100 kB
        deadline = time.time() + 5
        while not self.moatd.incoming() and time.time() < deadline:
            time.sleep(0.02)
        self.assertTrue(self.moatd.incoming(), "100 kB body never spilled to incoming/")
        c.send((b"T" * 98 + b"\r\n") * 3000 + b".\r\n")  # 400 kB in all
        self.assertReply(c.reply(), 552, "5.3.4", "400 kB message, 256k maximum")
        self.assertNothingQueued(before, "after the refused message")
        self.assert_in_sync(c)


class TestLineLengthOption(DaemonCase):
    """smtp_max_line_length (config.h) raises the text line limit."""

    CONF = "delivery_paused = yes\nsmtp_max_line_length = 2000\n"

    def test_configured_text_line_length(self):
        rows = [("1500 octets", 1498, 250, "2.0.0"),
                ("2000 octets", 1998, 250, "2.0.0"),
                ("2001 octets", 1999, 500, "5.5.2")]
        for name, n, code, e in rows:
            with self.subTest(name):
                c = self.connect()
                self.start_tx(c)
                self.assertReply(c.cmd("DATA"), 354, None, "DATA")
                c.send(b"Subject: l\r\n\r\n" + b"L" * n + b"\r\n.\r\n")
                self.assertReply(c.reply(), code, e, "text line of %s with the limit at 2000"
                                 % name)
                c.close()


class TestSessionsPerIP(DaemonCase):
    CONF = "smtp_max_sessions_per_ip = 3\n"

    def test_fourth_connection_refused(self):
        n = self.moatd.log().count("event=disconnect")
        conns = [self.connect() for _ in range(3)]
        for i, c in enumerate(conns):
            self.ehlo(c)
        c4 = self.connect(greet=False)
        r = c4.reply()
        self.assertReply(r, 421, "4.7.0", "4th connection from one address")
        self.assertClosed(c4, "4th connection")
        # another address is not affected
        c5 = self.connect(source="127.0.0.2")
        self.ehlo(c5)
        # the first three still work
        for c in conns:
            self.assert_in_sync(c, "earlier session")
        # one goes away: a new one from the same address is accepted
        conns[0].cmd("QUIT")
        conns[0].close()
        self.wait_disconnects(n + 1)
        c6 = self.connect()
        self.ehlo(c6)


    def test_every_way_out_releases_the_slot(self):
        # Sessions that end in all sorts of ways must not leak their per-address count.
        n = self.moatd.log().count("event=disconnect")
        ends = [
            [b"QUIT\r\n"],
            [],  # the client just closes
            [b"GET / HTTP/1.1\r\n\r\n"],
            [b"NOOP\r\nNOOP\r\n"],  # pipelining before EHLO
            [b"EHLO c.test\r\n", b"BDAT x\r\n"],
            [b"EHLO c.test\r\n", b"MAIL FROM:<a@remote.test>\r\n",
             b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n", b"Subject: x\r\n"],
        ] * 2
        for steps in ends:
            c = self.connect()
            for s in steps:
                c.send(s)
                c.reply_or_none(0.5)
            c.close()
        self.wait_disconnects(n + len(ends))
        conns = [self.connect() for _ in range(3)]
        for c in conns:
            self.ehlo(c)


class TestSessionsTotal(DaemonCase):
    CONF = "smtp_max_sessions = 3\n"

    def test_total_limit(self):
        conns = [self.connect(source="127.0.0.%d" % (i + 1)) for i in range(3)]
        c4 = self.connect(greet=False, source="127.0.0.4")
        self.assertReply(c4.reply(), 421, "4.7.0", "4th session in total")
        self.assertClosed(c4, "4th session")
        for c in conns:
            self.assert_in_sync(c, "earlier session")


class TestCommandTimeout(DaemonCase):
    CONF = "smtp_command_timeout = 1s\nsmtp_data_timeout = 20s\n"

    def test_idle_after_greeting(self):
        c = self.connect()
        t0 = time.time()
        r = c.reply_or_none(5)
        took = time.time() - t0
        self.assertReply(r, 421, "4.4.2", "idle session")
        self.assertGreater(took, 0.8, "timed out after %.2fs, want about 1s" % took)
        self.assertClosed(c, "after the timeout")

    def test_idle_in_transaction(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        t0 = time.time()
        r = c.reply_or_none(5)
        self.assertReply(r, 421, "4.4.2", "idle after RCPT")
        # well under smtp_command_timeout (20 s): it was the data/command timeout that fired
        self.assertLess(time.time() - t0, 10)
        self.assertClosed(c)
        self.assertNothingQueued(before)

    def test_trickled_command(self):
        # The timeout bounds a whole command: one octet every 0.3 s does not extend it.
        c = self.connect()
        self.ehlo(c)
        t0 = time.time()
        got = None
        for ch in b"NOOP NOOP NOOP NOOP":
            got = c.reply_or_none(0.3)
            if got is not None:
                break
            try:
                c.send(bytes([ch]))
            except OSError:
                got = c.reply_or_none(1)
                break
        took = time.time() - t0
        self.assertReply(got, 421, "4.4.2", "trickled command line")
        self.assertLess(took, 2.5, "timeout after %.2fs, want about 1s" % took)

    def test_activity_resets_timer(self):
        c = self.connect()
        for i in range(4):
            time.sleep(0.5)
            self.assert_in_sync(c, "NOOP %d" % i)


class TestDataTimeout(DaemonCase):
    CONF = "smtp_data_timeout = 1s\nsmtp_command_timeout = 20s\ndelivery_paused = yes\n"

    def test_stall_in_data(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: stall\r\n\r\n" + b"x" * 70000 + b"\r\n")  # spills to incoming/
        t0 = time.time()
        r = c.reply_or_none(5)
        self.assertReply(r, 421, "4.4.2", "stalled DATA")
        # well under smtp_command_timeout (20 s): it was the data/command timeout that fired
        self.assertLess(time.time() - t0, 10)
        self.assertClosed(c)
        self.assertNothingQueued(before, "after the data timeout")

    def test_stall_in_bdat_chunk(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        c.send(b"BDAT 1000 LAST\r\nSubject: stall\r\n")
        r = c.reply_or_none(5)
        self.assertReply(r, 421, "4.4.2", "stalled BDAT chunk")
        self.assertClosed(c)
        self.assertNothingQueued(before, "after the data timeout")

    def test_slow_but_steady_data(self):
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        for i in range(4):
            c.send(b"line %d\r\n" % i)
            time.sleep(0.4)
        c.send(b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "message sent in 1.6 s, 0.4 s apart")


class TestErrorLimit(DaemonCase):
    CONF = "smtp_max_errors = 3\n"

    def test_three_errors_close(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("XFOO"), 500, "5.5.1", "error 1")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1", "error 2")
        self.assertReply(c.cmd("XBAR"), 500, "5.5.1", "error 3")
        self.assertReply(c.reply_or_none(2), 421, "4.7.0", "after the third error")
        self.assertClosed(c, "after the error limit")

    def test_rejected_recipients_count(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        for i in range(3):
            self.assertReply(c.cmd("RCPT TO:<u%d@evil.test>" % i), 550, "5.7.1", "RCPT %d" % i)
        self.assertReply(c.reply_or_none(2), 421, "4.7.0", "after three refused RCPTs")
        self.assertClosed(c)

    def test_two_errors_keep_session(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("XFOO"), 500, "5.5.1", "error 1")
        self.assertReply(c.cmd("XBAR"), 500, "5.5.1", "error 2")
        self.send_message(c, ehlo=False)
        self.assertOpen(c)


class TestEarlyTalker(DaemonCase):
    CONF = "smtp_greeting_delay = 500ms\n"

    def test_early_talker_dropped(self):
        c = self.connect(greet=False)
        c.send(b"EHLO early.test\r\n")
        r = c.reply()
        self.assertReply(r, 554, "5.5.0", "EHLO before the greeting")
        self.assertClosed(c, "early talker")

    def test_patient_client(self):
        t0 = time.time()
        c = self.connect()
        took = time.time() - t0
        self.assertGreater(took, 0.4, "greeting after %.2fs, want the 500 ms delay" % took)
        self.send_message(c)


class TestProbes(DaemonCase):
    CONF = "delivery_paused = yes\n"

    def test_http_requests_dropped(self):
        rows = [
            ("GET", b"GET / HTTP/1.1\r\nHost: mx.moat.test\r\n\r\n"),
            ("POST", b"POST /submit HTTP/1.1\r\nHost: mx.moat.test\r\nContent-Length: 5\r\n"
                     b"\r\nhello"),
            ("CONNECT", b"CONNECT mx.moat.test:25 HTTP/1.1\r\n\r\n"),
            ("POST carrying SMTP", b"POST / HTTP/1.0\r\nHost: x\r\n\r\nHELO x\r\n"
                                   b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<user@example.test>\r\n"
                                   b"DATA\r\nSubject: x\r\n\r\nspam\r\n.\r\nQUIT\r\n"),
        ]
        for name, req in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                c.send(req)
                data, closed = c.read_all(5)
                self.assertTrue(closed, "%s: connection still open" % name)
                self.assertNotIn(b"250", data, "%s: got %r" % (name, data))
                self.assertNothingQueued(before, name)

    def test_garbage_without_newline_bounded(self):
        c = self.connect()
        self.ehlo(c)
        rss0 = self.moatd.rss_kib()
        block = b"g" * 65536
        for _ in range(160):  # 10 MiB
            c.send(block)
        rss1 = self.moatd.rss_kib()
        c.send(b"\r\nNOOP\r\n")
        r1 = c.reply()
        self.assertReply(r1, 500, "5.5.2", "10 MiB line")
        self.assertReply(c.reply(), 250, "2.0.0", "NOOP after the long line (one 500 only)")
        self.assertLess(rss1 - rss0, 20 * 1024, "RSS grew by %d KiB" % (rss1 - rss0))


if __name__ == "__main__":
    unittest.main()


class TestMinDataRate(DaemonCase):
    CONF = ("smtp_min_data_rate = 100000\nsmtp_min_data_rate_after = 1s\n"
            "smtp_data_timeout = 30s\ndelivery_paused = yes\n")

    def test_trickle_is_dropped(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        reply = None
        for i in range(40):  # ~30 bytes every 0.1 s: far below 100000 bytes/s
            try:
                c.send(b"trickle line %02d of a slow sender\r\n" % i)
            except OSError:
                break
            reply = c.reply_or_none(0.1)
            if reply is not None:
                break
        self.assertReply(reply, 421, "4.4.2", "a DATA transfer far below smtp_min_data_rate")
        self.assertClosed(c)
        self.assertNothingQueued(before, "after the data-rate drop")

    def test_fast_transfer_passes(self):
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: fast\r\n\r\n" + (b"y" * 998 + b"\r\n") * 500 + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "a fast 500 KB message")


class TestDiskFull(DaemonCase):
    # More free space than any disk has: the spool counts as full.
    CONF = "spool_min_free = 1000000G\n"

    def test_mail_refused_when_spool_full(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 452, "4.3.1",
                         "MAIL with the spool below spool_min_free")
        self.assertIn("event=spool_full", self.moatd.log())


class TestWriteError(DaemonCase):
    CONF = "delivery_paused = yes\n"

    def test_rename_failure_gives_451_and_keeps_nothing(self):
        queue = os.path.join(self.moatd.data, "queue")
        os.chmod(queue, 0o500)  # the 'moat' user can no longer add files there
        try:
            c = self.connect()
            r = send_simple(c, rcpts=("werr@example.test",))
            self.assertReply(r, 451, "4.3.0", "commit that cannot be renamed into queue/")
            self.assertEqual(self.moatd.incoming(), [], "half-written file left in incoming/")
            self.assertEqual(self.moatd.queue_ids(), [])
        finally:
            os.chmod(queue, 0o700)
        c = self.connect()
        r = send_simple(c, rcpts=("werr@example.test",))
        self.assertReply(r, 250, "2.0.0", "the same message once the spool is writable")
