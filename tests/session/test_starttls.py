"""STARTTLS (RFC 3207; RFC 8996): the handshake, the reset of the session
after it, no command injection across it (CVE-2011-0411), TLS 1.1 refused."""
import ssl
import time
import unittest
import warnings

from sessutil import DaemonCase, strip_delivery_headers


class TestStartTLS(DaemonCase):
    TLS = True

    def tls(self, c):
        """EHLO, STARTTLS, handshake verified against the test CA."""
        kws = [l[4:] for l in self.ehlo(c).lines[1:]]
        self.assertIn("STARTTLS", kws, "STARTTLS not advertised with a certificate: %r" % kws)
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        c.starttls(cafile=self.ca)
        return c.sock.version()

    def test_handshake_and_reset(self):
        c = self.connect()
        version = self.tls(c)
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        # RFC 3207 4.2: the session starts again; EHLO first.
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1", "MAIL before EHLO over TLS")
        # RSET does not bring back the EHLO from before TLS
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET over TLS before EHLO")
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1",
                         "MAIL after RSET, before EHLO over TLS")
        r = c.cmd("EHLO client.test")
        self.assertReply(r, 250, None, "EHLO over TLS")
        kws = [l[4:] for l in r.lines[1:]]
        self.assertNotIn("STARTTLS", kws, "STARTTLS advertised again after TLS: %r" % kws)
        for kw in ("PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "DSN"):
            self.assertIn(kw, kws)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", "second STARTTLS")
        self.assert_in_sync(c)

    def test_transaction_before_starttls_is_forgotten(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        # STARTTLS is refused inside a transaction ...
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", "STARTTLS inside a transaction")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        self.tls(c)
        self.ehlo(c)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1",
                         "RCPT right after STARTTLS+EHLO")

    def test_starttls_syntax(self):
        c = self.connect()
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", "STARTTLS before EHLO")
        self.ehlo(c)
        self.assertReply(c.cmd("STARTTLS now"), 501, "5.5.4", "STARTTLS with an argument")
        self.assert_in_sync(c)

    def test_injection_is_discarded(self):
        before = self.snapshot()
        c = self.connect()
        self.ehlo(c)
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<injected@example.test>\r\n")
        self.assertReply(c.reply(), 220, "2.0.0", "STARTTLS with injected commands")
        c.starttls(cafile=self.ca)
        # No reply to the injected plaintext may show up inside TLS.
        self.assertIsNone(c.reply_or_none(0.3), "a reply to injected plaintext came through TLS")
        self.ehlo(c)
        self.assertReply(c.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1",
                         "RCPT right after EHLO over TLS (injected MAIL kept?)")
        self.assertReply(c.cmd("MAIL FROM:<real@remote.test>"), 250, "2.1.0", "MAIL over TLS")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA with no RCPT (injected RCPT kept?)")
        self.assertNothingQueued(before)

    def test_received_header_mentions_tls(self):
        c = self.connect()
        version = self.tls(c)
        qid = self.send_message(c, rcpts=("tls@example.test",))
        msg = self.moatd.wait_maildir("tls@example.test")[0]
        head = msg[:msg.index(b"Subject: test")]
        self.assertIn(b"with ESMTPS id " + qid.encode(), head, "Received header: %r" % head)
        self.assertIn(("using %s" % version).encode(), head,
                      "Received header does not name %s: %r" % (version, head))
        self.assertEqual(strip_delivery_headers(msg), b"Subject: test\n\nhello\n")

    def test_tls11_refused(self):
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            # Without this the client itself (OpenSSL 3 security level) refuses TLS 1.1.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        n = self.moatd.log().count("event=tls_failed")
        with self.assertRaises((ssl.SSLError, OSError), msg="TLS 1.1 handshake succeeded"):
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.moat.test")
            self.fail("TLS 1.1 handshake succeeded: %s" % c.sock.version())
        # The refusal is the server's: it logged a failed handshake for the version.
        deadline = time.time() + 5
        while self.moatd.log().count("event=tls_failed") <= n and time.time() < deadline:
            time.sleep(0.02)
        tail = self.moatd.log().split("event=tls_failed")[-1].split("\n")[0]
        self.assertIn("protocol", tail, "tls_failed reason: %r" % tail)


if __name__ == "__main__":
    unittest.main()


class TestCertificateReload(DaemonCase):
    """SIGHUP reloads the certificate; TLS sessions already up keep theirs."""
    TLS = True

    def handshake(self, c, cafile):
        self.ehlo(c)
        self.assertReply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        c.starttls(cafile=cafile)

    def test_sighup_reloads_certificate(self):
        import os
        import shutil
        import signal
        from moat_harness import make_cert

        old = self.connect()
        self.handshake(old, self.ca)
        newdir = os.path.join(self.moatd.dir, "new")
        os.makedirs(newdir)
        ca2, cert2, key2 = make_cert(newdir)
        # Replace the files in place, as an ACME client renewing them would.
        shutil.copy(cert2, self.cert)
        shutil.copy(key2, self.key)
        self.moatd.signal(signal.SIGHUP)
        self.moatd.wait_log(r"event=reload status=ok")
        c = self.connect()
        self.handshake(c, ca2)  # verified against the new CA only
        self.assertReply(c.cmd("EHLO client.test"), 250, None, "EHLO over the new certificate")
        bad = self.connect()
        self.ehlo(bad)
        self.assertReply(bad.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        with self.assertRaises(ssl.SSLCertVerificationError):
            bad.starttls(cafile=self.ca)  # the old CA no longer vouches for it
        # The session that was in TLS before the reload goes on.
        self.assertReply(old.cmd("EHLO client.test"), 250, None, "EHLO on the old TLS session")
        self.assertReply(old.cmd("NOOP"), 250, "2.0.0", "NOOP on the old TLS session")
