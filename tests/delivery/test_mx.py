"""MX routing (RFC 5321 5.1, RFC 7505) through moat's resolver against a real
unbound serving zones the test writes: preference order and fallback, the
implicit MX, null MX and non-existent domains."""
import unittest

from dlvutil import Moatd, Sink, domain, log_lines, moat_conf, submit, wait_for, wait_removed
from unbound_server import Unbound


class MxRouting(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink().start()      # on 127.0.0.1:port: every MX host "lives" there
        cls.dsn = Sink().start()       # reports to outside senders
        p = cls.sink.port
        records = [
            ("good.example.", "MX", "10 mx1.good.example."),
            ("mx1.good.example.", "A", "127.0.0.1"),
            # preference 10 refuses connections (nothing on 127.0.0.2:port), 20 works
            ("fall.example.", "MX", "10 dead.fall.example."),
            ("fall.example.", "MX", "20 live.fall.example."),
            ("dead.fall.example.", "A", "127.0.0.2"),
            ("live.fall.example.", "A", "127.0.0.1"),
            ("imp.example.", "A", "127.0.0.1"),                 # no MX: implicit
            ("null.example.", "MX", "0 ."),                     # RFC 7505
            ("noaddr.example.", "MX", "10 nowhere.noaddr.example."),
            ("exists.example.", "TXT", '"x"'),
        ]
        cls.dns = Unbound(records, probe="mx1.good.example")
        domains = "".join(domain(d, "mx", tls="opportunistic")
                          for d in ("good.example", "fall.example", "imp.example",
                                    "null.example", "nope.example", "noaddr.example"))
        cls.m = Moatd(name="mx", conf=moat_conf(cls.dsn.port,
                                                 "dns_resolver = %s\ndelivery_mx_port = %d\n"
                                                 "dns_timeout = 2s\ndelivery_queue_lifetime = 4s\n"
                                                 % (cls.dns.upstream, p)),
                      domains=domains)
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.dns.stop()
        cls.sink.stop()
        cls.dsn.stop()

    def delivered_to(self, rcpt):
        return [t for r, t in self.sink.deliveries() if r == rcpt]

    def test_delivered_by_mx(self):
        qid = submit(self.m, ["a@good.example"])
        wait_removed(self.m, qid)
        self.assertEqual(len(self.delivered_to("a@good.example")), 1)
        self.assertRegex(log_lines(self.m, "delivered", qid)[0], r'relay="mx1.good.example"')

    def test_fallback_to_next_preference(self):
        qid = submit(self.m, ["b@fall.example"])
        wait_removed(self.m, qid)
        self.assertEqual(len(self.delivered_to("b@fall.example")), 1)
        self.assertRegex(log_lines(self.m, "delivered", qid)[0], r'relay="live.fall.example"')
        self.assertRegex(self.m.log(), r"event=mta_host_failed .*dead.fall.example\[127.0.0.2\]")

    def test_implicit_mx(self):
        qid = submit(self.m, ["c@imp.example"])
        wait_removed(self.m, qid)
        self.assertEqual(len(self.delivered_to("c@imp.example")), 1)

    def test_failures_bounce_with_the_right_status(self):
        rows = [("d@null.example", "5.1.10"), ("e@nope.example", "5.1.2"),
                ("f@noaddr.example", "5.4.4")]
        for rcpt, status in rows:
            with self.subTest(rcpt):
                qid = submit(self.m, [rcpt])
                wait_removed(self.m, qid)
                self.assertEqual(self.delivered_to(rcpt), [])
                bounced = log_lines(self.m, "bounced", qid)
                self.assertEqual(len(bounced), 1, self.m.log()[-2000:])
                self.assertIn(status, bounced[0])
                wait_for(lambda: any(("Final-Recipient: rfc822;" + rcpt).encode() in t.content
                                     for t in self.dsn.txns), 10, "the DSN for " + rcpt)


if __name__ == "__main__":
    unittest.main()
