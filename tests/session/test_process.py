"""The process: privilege drop, configuration errors, SIGHUP reload, SIGTERM
shutdown. Every test here has its own daemon (they signal and stop it)."""
import os
import pwd
import signal
import time
import unittest

from sessutil import (BODY, DEFAULT_DOMAINS, Conn, Moatd, describe, enh, queued_id)

NEW_DOMAINS = DEFAULT_DOMAINS + """
[domain new.test]
recipients = any
route = maildir
"""


class ProcessCase(unittest.TestCase):

    def daemon(self, conf="", domains=DEFAULT_DOMAINS, start=True):
        m = Moatd(conf=conf, domains=domains, name=type(self).__name__)
        self.addCleanup(m.stop)
        if start:
            m.start()
        return m

    def connect(self, m, greet=True):
        c = Conn("127.0.0.1", m.port, timeout=5, greet=greet)
        self.addCleanup(c.close)
        if greet:
            self.assertEqual(c.greeting.code, 220, "greeting %r" % c.greeting)
        return c

    def assertReply(self, reply, code, enhanced=None, what=""):
        if reply is None:
            self.fail("%s: got no reply, want %s %s" % (what, code, enhanced or ""))
        if reply.code != code or (enhanced is not None and enh(reply) != enhanced):
            self.fail("%s: got %s, want %d %s" % (what, describe(reply), code, enhanced or ""))

    def tx(self, c, rcpt="user@example.test", ehlo=True):
        if ehlo:
            self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO")
        self.assertReply(c.cmd("MAIL FROM:<sender@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5", "RCPT " + rcpt)

    def wait_exit(self, m, timeout=10):
        try:
            return m.proc.wait(timeout=timeout)
        except Exception:
            self.fail("moatd did not exit within %ds after SIGTERM:\n%s"
                      % (timeout, m.log()[-2000:]))


class TestPrivileges(ProcessCase):

    def test_runs_as_moat(self):
        self.assertEqual(os.geteuid(), 0, "this test must run as root")
        m = self.daemon()
        pw = pwd.getpwnam("moat")
        with open("/proc/%d/status" % m.proc.pid) as f:
            status = dict(l.split(":", 1) for l in f if ":" in l)
        uids = status["Uid"].split()
        gids = status["Gid"].split()
        self.assertEqual(uids, [str(pw.pw_uid)] * 4, "Uid line %r, want moat's %d everywhere"
                         % (uids, pw.pw_uid))
        self.assertEqual(gids, [str(pw.pw_gid)] * 4, "Gid line %r" % gids)
        groups = status.get("Groups", "").split()
        self.assertNotIn("0", groups, "still in group root: %r" % groups)
        # and it still works after the drop
        c = self.connect(m)
        self.tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "message")
        self.assertEqual(os.stat(m.data).st_uid, pw.pw_uid, "data_dir not owned by moat")


class TestConfigErrors(ProcessCase):

    def test_errors_name_file_and_line(self):
        # (name, conf text, domains text, the offending line's text, message regex)
        rows = [
            ("unknown key", "bogus_option = 1\n", DEFAULT_DOMAINS, "bogus_option = 1",
             r"unknown key 'bogus_option'"),
            ("below the minimum", "smtp_command_timeout = 10ms\n", DEFAULT_DOMAINS,
             "smtp_command_timeout = 10ms", r"smtp_command_timeout"),
            ("above the maximum", "smtp_max_recipients = 100001\n", DEFAULT_DOMAINS,
             "smtp_max_recipients = 100001", r"smtp_max_recipients"),
            ("bad boolean", "delivery_paused = perhaps\n", DEFAULT_DOMAINS,
             "delivery_paused = perhaps", r"delivery_paused"),
            ("bad size", "smtp_max_message_size = lots\n", DEFAULT_DOMAINS,
             "smtp_max_message_size = lots", r"smtp_max_message_size"),
            ("no '='", "smtp_max_errors 3\n", DEFAULT_DOMAINS, "smtp_max_errors 3", r"."),
            ("unknown key in a domain", "", DEFAULT_DOMAINS + "[domain x.test]\ncolour = red\n",
             "colour = red", r"unknown key 'colour'"),
            ("duplicate domain", "", DEFAULT_DOMAINS + "[domain EXAMPLE.test]\n",
             "[domain EXAMPLE.test]", r"example.test"),
            ("unknown route", "", "[domain a.test]\nrecipients = any\nroute = pigeon\n",
             "route = pigeon", r"route"),

            ("hostname not a domain", "hostname = mx/moat.test\n", DEFAULT_DOMAINS,
             "hostname = mx/moat.test", r"hostname 'mx/moat.test' is not a domain name"),
            ("empty data_dir", "data_dir =\n", DEFAULT_DOMAINS, "data_dir =",
             r"data_dir must not be empty"),
            ("tls_cert without tls_key", "tls_cert = /etc/ssl/x.pem\n", DEFAULT_DOMAINS,
             "tls_cert = /etc/ssl/x.pem", r"tls_cert and tls_key must be set together"),
        ]
        for name, conf, domains, bad, rx in rows:
            with self.subTest(name):
                m = self.daemon(conf=conf, domains=domains, start=False)
                rc = m.start(expect_fail=True)
                log = m.log()
                self.assertNotEqual(rc, 0, "%s: moatd exited 0:\n%s" % (name, log))
                with open(m.conf_path) as f:
                    lines = f.read().split("\n")
                lineno = lines.index(bad) + 1
                want = "%s:%d: " % (m.conf_path, lineno)
                self.assertIn(want, log, "%s: log does not name %s:\n%s" % (name, want, log))
                msg = log[log.index(want) + len(want):].split("\n")[0]
                self.assertRegex(msg, rx, "%s: message %r" % (name, msg))
                self.assertNotIn("event=started", log, "%s: started anyway" % name)


class TestRouteLoop(ProcessCase):
    def test_route_to_own_listener_refused(self):
        for host in ("127.0.0.1", "localhost", "mx.moat.test", "127.0.0.1, [127.0.0.2]"):
            with self.subTest(host):
                m = self.daemon(start=False)
                hosts = ", ".join("[%s]:%d" % (h.strip(" []"), m.port) for h in host.split(","))
                route = "route = smtp:" + hosts
                m.write_conf(domains="[domain a.test]\nrecipients = any\n" + route + "\n")
                self.assertNotEqual(m.start(expect_fail=True), 0, m.log())
                self.assertRegex(m.log(), r"moat.conf:\d+: \[domain a.test\] route points back "
                                          r"at moat's own smtp_listen \(mail loop\)")

    def test_route_elsewhere_accepted(self):
        m = self.daemon(start=False)
        m.write_conf(domains="[domain a.test]\nrecipients = any\n"
                             "route = smtp:[127.0.0.1]:%d\n" % (m.port + 1))
        m.start()


class TestReload(ProcessCase):

    def test_sighup_new_domain(self):
        m = self.daemon()
        old = self.connect(m)
        self.tx(old)  # a transaction open across the reload
        c = self.connect(m)
        self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(c.cmd("RCPT TO:<user@new.test>"), 550, "5.7.1", "new.test before reload")
        c.close()
        m.write_conf(domains=NEW_DOMAINS)
        m.signal(signal.SIGHUP)
        m.wait_log(r"event=reload status=ok")
        # a new session sees the new domain
        c = self.connect(m)
        self.tx(c, rcpt="user@new.test")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5", "old domain")
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "message to new.test")
        m.wait_maildir("user@new.test")
        # the session opened before the reload was not dropped and can finish
        self.assertReply(old.cmd("DATA"), 354, None, "DATA on the pre-reload session")
        old.send(BODY + b".\r\n")
        self.assertReply(old.reply(), 250, "2.0.0", "message on the pre-reload session")
        self.assertReply(old.cmd("NOOP"), 250, "2.0.0", "pre-reload session after its message")
        self.assertEqual(m.proc.poll(), None, "moatd exited")

    def test_sighup_session_keeps_its_config(self):
        # config.h: "sessions keep the one they started with until they end".
        m = self.daemon()
        old = self.connect(m)
        self.assertReply(old.cmd("EHLO client.test"), 250, None, "EHLO")
        m.write_conf(domains=NEW_DOMAINS)
        m.signal(signal.SIGHUP)
        m.wait_log(r"event=reload status=ok")
        self.assertReply(old.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(old.cmd("RCPT TO:<user@new.test>"), 550, "5.7.1",
                         "new.test in a session opened before the reload")

    def test_sighup_broken_config_keeps_old(self):
        m = self.daemon()
        m.write_conf(conf="this is not a config line\n", domains=NEW_DOMAINS)
        m.signal(signal.SIGHUP)
        m.wait_log(r"event=reload status=failed")
        time.sleep(0.1)
        self.assertIsNone(m.proc.poll(), "moatd exited on a broken config:\n" + m.log()[-2000:])
        self.assertRegex(m.log(), r"event=reload status=failed reason=\"[^\"]*moat\.conf:\d+:",
                         "the reload error does not name file and line")
        c = self.connect(m)
        self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(c.cmd("RCPT TO:<user@new.test>"), 550, "5.7.1",
                         "new.test from the broken file")
        self.assertReply(c.cmd("RCPT TO:<carol@listed.test>"), 550, "5.1.1", "old listed.test")
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5", "old domain")
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(BODY + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "message after the failed reload")
        m.wait_maildir("user@example.test")


class TestShutdown(ProcessCase):

    def test_sigterm_mid_data(self):
        m = self.daemon(conf="delivery_paused = yes\n")
        busy = self.connect(m)
        self.tx(busy)
        self.assertReply(busy.cmd("DATA"), 354, None, "DATA")
        busy.send(b"Subject: shutdown\r\n\r\nfirst half\r\n")
        idle = self.connect(m)
        self.assertReply(idle.cmd("EHLO client.test"), 250, None, "EHLO idle")
        m.signal(signal.SIGTERM)
        m.wait_log(r"event=shutdown")
        # the idle session is told at once
        self.assertReply(idle.reply_or_none(2), 421, "4.3.2", "idle session at SIGTERM")
        self.assertTrue(idle.closed(2), "idle session not closed")
        # the busy one finishes its message
        time.sleep(0.2)
        busy.send(b"second half\r\n.\r\n")
        r = busy.reply()
        self.assertReply(r, 250, "2.0.0", "end of data during shutdown")
        qid = queued_id(r)
        self.assertReply(busy.reply_or_none(2), 421, "4.3.2", "after the message")
        self.assertTrue(busy.closed(2), "busy session not closed after its message")
        self.assertEqual(self.wait_exit(m), 0, "exit status")
        self.assertIn(qid, m.queue_ids(), "the acknowledged message is not in queue/")
        self.assertEqual(m.incoming(), [])

    def test_sigterm_mid_bdat(self):
        m = self.daemon(conf="delivery_paused = yes\n")
        c = self.connect(m)
        self.tx(c)
        first = b"Subject: bdat\r\n\r\nab"
        c.send(b"BDAT %d\r\n" % len(first) + first)
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk")
        m.signal(signal.SIGTERM)
        m.wait_log(r"event=shutdown")
        self.assertIsNone(c.reply_or_none(0.3), "reply before the transfer ended")
        c.send(b"BDAT 4 LAST\r\ncd\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "LAST chunk during shutdown")
        self.assertReply(c.reply_or_none(2), 421, "4.3.2", "after the message")
        self.assertTrue(c.closed(2), "not closed after its message")
        self.assertEqual(self.wait_exit(m), 0, "exit status")
        self.assertIn(queued_id(r), m.queue_ids())

    def test_sigterm_idle(self):
        m = self.daemon()
        c = self.connect(m)
        self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO")
        t0 = time.time()
        m.signal(signal.SIGTERM)
        self.assertReply(c.reply_or_none(2), 421, "4.3.2", "idle session at SIGTERM")
        self.assertTrue(c.closed(2), "not closed")
        self.assertEqual(self.wait_exit(m), 0, "exit status")

    def test_sigterm_greeted_only(self):
        m = self.daemon()
        c = self.connect(m)
        m.signal(signal.SIGTERM)
        self.assertReply(c.reply_or_none(2), 421, "4.3.2", "session before EHLO at SIGTERM")
        self.assertTrue(c.closed(2), "not closed")
        self.assertEqual(self.wait_exit(m), 0, "exit status")

    def test_sigterm_shutdown_timeout(self):
        # A transaction that does not finish within smtp_shutdown_timeout is dropped
        # without a 250, and nothing of it is kept.
        m = self.daemon(conf="delivery_paused = yes\nsmtp_shutdown_timeout = 1s\n")
        c = self.connect(m)
        self.tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: never finished\r\n\r\nhalf\r\n")
        t0 = time.time()
        m.signal(signal.SIGTERM)
        data, closed = c.read_all(5)
        self.assertTrue(closed, "session still open after the shutdown timeout")
        self.assertNotIn(b"250", data)
        self.assertLess(time.time() - t0, 15)  # the 1 s bound, not the 30 s default
        self.assertEqual(self.wait_exit(m), 0, "exit status")
        self.assertEqual(m.queue_ids(), [])
        self.assertEqual(m.incoming(), [])


if __name__ == "__main__":
    unittest.main()
