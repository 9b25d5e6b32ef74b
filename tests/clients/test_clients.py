"""Real SMTP clients against the real daemon: swaks and Python's smtplib,
plain and with STARTTLS (certificate verified against a CA made by the test)."""
import os
import smtplib
import ssl
import subprocess
import unittest
from email.message import EmailMessage

from moat_harness import Moatd, make_cert


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = Moatd(name="clients")
        cls.ca, cert, key = make_cert(cls.m.dir)
        cls.m.write_conf(tls=(cert, key))
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def swaks(self, *args):
        cmd = ["swaks", "--server", "127.0.0.1:%d" % self.m.port, "--helo", "client.test",
               "--from", "sender@remote.test", "--timeout", "20"] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def test_swaks_plain(self):
        r = self.swaks("--to", "swaks-plain@example.test", "--h-Subject", "swaks plain")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("250 2.0.0 Ok: queued as", r.stdout)
        msgs = self.m.wait_maildir("swaks-plain@example.test")
        self.assertIn(b"Subject: swaks plain", msgs[0])

    def test_swaks_pipelining(self):
        r = self.swaks("--pipeline", "--to", "swaks-pipe@example.test")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.m.wait_maildir("swaks-pipe@example.test")

    def test_swaks_starttls_verified(self):
        r = self.swaks("--tls", "--tls-verify", "--tls-ca-path", self.ca, "--tls-sni",
                       "mx.moat.test", "--to", "swaks-tls@example.test")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("TLS started", r.stdout)
        msg = self.m.wait_maildir("swaks-tls@example.test")[0]
        self.assertRegex(msg, rb"with ESMTPS id [0-9a-f]{16}")
        self.assertRegex(msg, rb"\(using TLSv1\.[23] with cipher ")

    def test_swaks_relay_refused(self):
        r = self.swaks("--to", "victim@elsewhere.test")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("550 5.7.1", r.stdout)

    def test_smtplib_plain(self):
        msg = EmailMessage()
        msg["From"] = "sender@remote.test"
        msg["To"] = "smtplib@example.test"
        msg["Subject"] = "smtplib plain"
        msg.set_content("hello from smtplib\n.leading dot line\n")
        with smtplib.SMTP("127.0.0.1", self.m.port, timeout=20) as s:
            refused = s.send_message(msg)
        self.assertEqual(refused, {})
        got = self.m.wait_maildir("smtplib@example.test")[0]
        self.assertIn(b"\n.leading dot line\n", got)

    def test_smtplib_starttls_verified(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        with smtplib.SMTP("127.0.0.1", self.m.port, local_hostname="client.test",
                          timeout=20) as s:
            s._host = "mx.moat.test"  # the name the certificate is for
            s.starttls(context=ctx)
            self.assertIn(s.sock.version(), ("TLSv1.2", "TLSv1.3"))
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail("sender@remote.test", ["smtplib-tls@example.test"],
                       b"Subject: tls\r\n\r\nover TLS\r\n")
        self.m.wait_maildir("smtplib-tls@example.test")

    def test_smtplib_smtputf8(self):
        with smtplib.SMTP("127.0.0.1", self.m.port, timeout=20) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("smtputf8"))
            s.sendmail("expéditeur@remote.test", ["jürgen@example.test"],
                       "Subject: UTF-8\r\n\r\ngrüße\r\n".encode(),
                       mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        self.m.wait_maildir("jürgen@example.test")

    def test_smtplib_refused_recipients(self):
        with smtplib.SMTP("127.0.0.1", self.m.port, timeout=20) as s:
            refused = s.sendmail("sender@remote.test",
                                 ["ok@example.test", "x@elsewhere.test", "carol@listed.test"],
                                 b"Subject: partial\r\n\r\nbody\r\n")
        self.assertEqual(sorted(refused), ["carol@listed.test", "x@elsewhere.test"])
        self.assertEqual(refused["x@elsewhere.test"][0], 550)
        self.m.wait_maildir("ok@example.test")


if __name__ == "__main__":
    unittest.main()
