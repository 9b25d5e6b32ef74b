"""TLS towards the downstream, per route: none, opportunistic, required,
verify (tls_ca, tls_name). required and verify never fall back to
plaintext: a wrong name, an untrusted certificate or a server without
STARTTLS defers, and the server gets nothing (RFC 3207, RFC 6125)."""
import ssl
import time
import unittest
import warnings

from dlvutil import (DeliveryCase, Moatd, Sink, domain, log_lines, make_cert, moat_conf,
                     scratch_dir, smtp_route, submit, tls_server_context)

CN = "mx.sink.test"


class TestTLSPolicy(DeliveryCase):

    @classmethod
    def setUpClass(cls):
        d1, d2, d3 = (scratch_dir("tls-ca%d" % i) for i in (1, 2, 3))
        cls.ca, cert, key = make_cert(d1, CN)
        cls.ca2, cert2, key2 = make_cert(d2, CN)          # same name, another CA
        cls.ca3, cert3, key3 = make_cert(d3, "localhost")
        cls.tls = Sink(tls_context=tls_server_context(cert, key)).start()
        # offers STARTTLS, but its handshake fails (TLS 1.1 at most; moat wants 1.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old_tls = tls_server_context(cert, key)
            old_tls.minimum_version = ssl.TLSVersion.TLSv1
            old_tls.maximum_version = ssl.TLSVersion.TLSv1_1
        cls.handshake = Sink(tls_context=old_tls).start()
        cls.untrusted = Sink(tls_context=tls_server_context(cert2, key2)).start()
        cls.local = Sink(tls_context=tls_server_context(cert3, key3)).start()
        cls.plain = Sink().start()
        # offers STARTTLS but cannot do it (no certificate): refuses the command
        cls.refuses = Sink(ehlo_add=["STARTTLS"]).start()
        cls.dsn = Sink().start()
        verify = dict(tls_ca=cls.ca, tls_name=CN)
        # (domain, route port, tls, extra keys, want: "tls" | "plain" | "deferred")
        cls.cases = [
            ("verify.test", cls.tls.port, "verify", verify, "tls"),
            ("verify-wrong-name.test", cls.tls.port, "verify",
             dict(tls_ca=cls.ca, tls_name="other.sink.test"), "deferred"),
            ("verify-untrusted.test", cls.untrusted.port, "verify", verify, "deferred"),
            ("verify-system-store.test", cls.tls.port, "verify", dict(tls_name=CN), "deferred"),
            ("verify-no-starttls.test", cls.plain.port, "verify", verify, "deferred"),
            ("verify-starttls-refused.test", cls.refuses.port, "verify", verify, "deferred"),
            ("required.test", cls.untrusted.port, "required", {}, "tls"),
            ("required-no-starttls.test", cls.plain.port, "required", {}, "deferred"),
            ("required-starttls-refused.test", cls.refuses.port, "required", {}, "deferred"),
            ("opportunistic.test", cls.untrusted.port, "opportunistic", {}, "tls"),
            ("opportunistic-no-starttls.test", cls.plain.port, "opportunistic", {}, "plain"),
            ("opportunistic-starttls-refused.test", cls.refuses.port, "opportunistic", {},
             "plain"),
            ("none.test", cls.tls.port, "none", {}, "plain"),
            ("opportunistic-handshake-fails.test", cls.handshake.port, "opportunistic", {},
             "plain"),
            ("required-handshake-fails.test", cls.handshake.port, "required", {}, "deferred"),
            ("verify-handshake-fails.test", cls.handshake.port, "verify", verify, "deferred"),
        ]
        doms = "".join(domain(d, smtp_route(p), tls, **kw) for d, p, tls, kw, _ in cls.cases)
        # verify with the host's own name: smtp:[localhost]:port, no tls_name
        doms += ("[domain verify-host-name.test]\nrecipients = any\n"
                 "route = smtp:[localhost]:%d\ntls = verify\ntls_ca = %s\n\n"
                 % (cls.local.port, cls.ca3))
        cls.cases.append(("verify-host-name.test", cls.local.port, "verify", {}, "tls"))
        cls.moatd = Moatd(conf=moat_conf(cls.dsn.port), domains=doms, name=cls.__name__)
        cls.moatd.start()
        cls.qids = {}
        for d, _, _, _, _ in cls.cases:
            cls.qids[d] = submit(cls.moatd, ["user@" + d],
                                 body=b"Subject: tls %s\r\n\r\nsecret\r\n" % d.encode())
        # the deferred ones: let them be tried a few times
        deadline = time.time() + 20
        while time.time() < deadline:
            done = True
            for d, _, _, _, want in cls.cases:
                q = cls.qids[d]
                if want == "deferred":
                    done &= len(log_lines(cls.moatd, "deferred", q)) >= 3
                else:
                    done &= bool(log_lines(cls.moatd, "removed", q))
            if done:
                break
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()
        for s in (cls.tls, cls.untrusted, cls.local, cls.plain, cls.refuses, cls.handshake,
                  cls.dsn):
            s.stop()

    def sinks(self):
        return (self.tls, self.untrusted, self.local, self.plain, self.refuses, self.handshake)

    def test_tls_policies(self):
        for d, port, tls, kw, want in self.cases:
            with self.subTest("%s (tls=%s)" % (d, tls)):
                q = self.qids[d]
                rcpt = "user@" + d
                got = [t for s in self.sinks() for r, t in s.deliveries() if r == rcpt]
                if want == "deferred":
                    self.assertEqual(got, [], "delivered (%s) although the policy forbids it"
                                     % ("over TLS" if got and got[0].tls else "in plaintext"))
                    n = len(log_lines(self.moatd, "deferred", q))
                    self.assertGreaterEqual(n, 3, "want it deferred and retried")
                    self.assertEqual(log_lines(self.moatd, "bounced", q), [])
                    continue
                self.assertEqual(len(got), 1, "want one delivery; deferred: %s"
                                 % log_lines(self.moatd, "deferred", q)[-1:])
                if want == "tls":
                    self.assertTrue(got[0].tls, "delivered in plaintext")
                else:
                    self.assertFalse(got[0].tls, "delivered over TLS")

    def test_no_plaintext_transaction_under_required_or_verify(self):
        # Not even a MAIL in plaintext on a connection of such a route: look
        # at every connection of the sinks that only those routes use.
        for s, name in ((self.plain, "server without STARTTLS"),
                        (self.refuses, "server refusing STARTTLS"),
                        (self.handshake, "server whose handshake fails")):
            with self.subTest(name):
                forbidden = {d for d, p, tls, kw, want in self.cases
                             if p == s.port and tls in ("required", "verify")}
                self.assertTrue(forbidden)
                bad = [x for x in s.rcpt_log if x[1].split("@")[1] in forbidden]
                self.assertEqual(bad, [], "RCPT sent in plaintext for a required/verify route")

    def test_tls_failure_reason_logged(self):
        # The deferral says why: a certificate problem, not a generic error.
        for d, why in (("verify-wrong-name.test", "certificate"),
                       ("verify-untrusted.test", "certificate"),
                       ("required-no-starttls.test", "STARTTLS"),
                       ("required-handshake-fails.test", "TLS")):
            with self.subTest(d):
                lines = log_lines(self.moatd, "deferred", self.qids[d])
                self.assertTrue(lines)
                self.assertIn(why, lines[-1])


if __name__ == "__main__":
    unittest.main()
