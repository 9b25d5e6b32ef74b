"""Robustness: what a careful client, a sloppy one and a slow disk do to a
session. Each test here pins down a fault found in review."""
import os
import socket
import subprocess
import time
import unittest

from moat_harness import slow_sync_env
from sessutil import BODY, DaemonCase, queued_id, send_simple


class TestHalfClose(DaemonCase):
    CONF = "delivery_paused = yes\n"

    def test_message_quit_then_shutdown_gets_every_reply(self):
        # The client sends its last message and QUIT, then closes its side
        # (it still reads). It must get the 250 for a message moat keeps.
        c = self.connect()
        self.ehlo(c)
        c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<halfclose@example.test>\r\nDATA\r\n")
        self.assertReply(c.reply(), 250, "2.1.0", "MAIL")
        self.assertReply(c.reply(), 250, "2.1.5", "RCPT")
        self.assertReply(c.reply(), 354, None, "DATA")
        c.send(BODY + b".\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "message before the half-close")
        self.assertIn(queued_id(r), self.moatd.queue_ids())
        self.assertReply(c.reply(), 221, "2.0.0", "QUIT before the half-close")

    def test_pipelined_commands_then_shutdown(self):
        c = self.connect()
        c.send(b"EHLO client.test\r\n")
        self.assertReply(c.reply(), 250, None, "EHLO")
        c.send(b"NOOP\r\nNOOP\r\nRSET\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        for what in ("NOOP", "NOOP", "RSET"):
            self.assertReply(c.reply(), 250, "2.0.0", what + " before the half-close")
        self.assertClosed(c)

    def test_unfinished_message_then_shutdown_is_dropped(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: cut\r\n\r\nno end of data")
        c.sock.shutdown(socket.SHUT_WR)
        data, closed = c.read_all(5)
        self.assertTrue(closed)
        self.assertNotIn(b"250 2.0.0", data)
        self.assertNothingQueued(before, "message without its end")


class TestCommandLineEnds(DaemonCase):
    def test_bare_lf_command_refused(self):
        c = self.connect()
        c.send(b"EHLO client.test\n")
        self.assertReply(c.reply(), 500, "5.5.2", "EHLO ending in a bare LF")
        self.ehlo(c)  # the session goes on
        c.send(b"\n")
        self.assertReply(c.reply(), 500, "5.5.2", "an empty bare-LF line")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "NOOP afterwards")


class TestEnvelopeLimit(DaemonCase):
    CONF = "smtp_max_recipients = 5000\nsmtp_max_errors = 10000\n"

    def test_envelope_octets_bounded(self):
        # 200 recipients with maximal ORCPTs exceed the 128 KiB envelope bound.
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        orcpt = "rfc822;" + "+2B" * 90 + "@" + ".".join(["d" * 60] * 3)
        codes = []
        for i in range(400):
            r = c.cmd("RCPT TO:<u%d@example.test> ORCPT=%s" % (i, orcpt))
            codes.append(r.code)
            if r.code != 250:
                self.assertReply(r, 452, "4.5.3", "RCPT over the envelope bound")
                break
        self.assertIn(452, codes, "no bound on envelope octets")
        self.assertGreater(codes.count(250), 100)
        # The transaction still works with the recipients it has.
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "message to the accepted recipients")


class TestSlowDisk(DaemonCase):
    """fdatasync() slowed to 1.5 s: input piles up while a message commits."""

    CONF = "delivery_paused = yes\nsmtp_data_timeout = 20s\n"

    @classmethod
    def setUpClass(cls):
        from moat_harness import Moatd
        cls.moatd = Moatd(conf=cls.CONF, name=cls.__name__)
        cls.moatd.start(env=slow_sync_env(1500))

    def test_pipelined_bdat_piled_up_during_commit(self):
        c = self.connect(timeout=30)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ehlo(c)
        c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<u@example.test>\r\n"
               b"BDAT 12 LAST\r\nSubject: x\r\n")
        self.assertReply(c.reply(), 250, "2.1.0", "MAIL")
        self.assertReply(c.reply(), 250, "2.1.5", "RCPT")
        # While the first message commits, the next one arrives in many pieces.
        body = (b"x" * 98 + b"\r\n") * 400
        c.send(b"MAIL FROM:<b@remote.test>\r\nRCPT TO:<u@example.test>\r\nBDAT %d LAST\r\n"
               % len(body))
        for i in range(0, len(body), 500):
            c.send(body[i:i + 500])
            time.sleep(0.002)
        self.assertReply(c.reply(), 250, "2.0.0", "first message")
        self.assertReply(c.reply(), 250, "2.1.0", "second MAIL")
        self.assertReply(c.reply(), 250, "2.1.5", "second RCPT")
        self.assertReply(c.reply(), 250, "2.0.0", "second message, %d octets" % len(body))


class TestFullDisk(unittest.TestCase):
    """A real ENOSPC: a 4 MiB tmpfs as the data directory."""

    def setUp(self):
        from moat_harness import Moatd
        self.moatd = Moatd(conf="spool_min_free = 0\n", name="FullDisk")
        os.makedirs(self.moatd.data)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                            self.moatd.data], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, "cannot mount a tmpfs (tests run as root): " + r.stderr)
        self.addCleanup(subprocess.run, ["umount", "-l", self.moatd.data])
        self.moatd.start()
        self.addCleanup(self.moatd.stop)

    def test_enospc_leaves_nothing_and_recovers(self):
        c = self.moatd.connect()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("MAIL FROM:<a@remote.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<big@example.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        line = b"z" * 998 + b"\r\n"
        c.send(b"Subject: too big for the disk\r\n\r\n" + line * 6000 + b".\r\n")  # 6 MB
        r = c.reply()
        self.assertIn(r.code, (451, 452), r)
        self.assertEqual(self.moatd.incoming(), [], "partial file left in incoming/")
        self.assertEqual(self.moatd.queue_ids(), [])
        # The space is free again: an ordinary message goes through.
        r = send_simple(self.moatd.connect(), rcpts=("small@example.test",))
        self.assertEqual(r.code, 250, r)
        self.moatd.wait_maildir("small@example.test")


if __name__ == "__main__":
    unittest.main()
