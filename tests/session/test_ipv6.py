"""IPv6: a listener on [::1] accepts mail like the IPv4 one."""
import socket
import unittest

from sessutil import Conn, DaemonCase, strip_delivery_headers


class TestIPv6(DaemonCase):
    IPV6 = True

    def test_message_over_ipv6(self):
        c = Conn("::1", self.moatd.port6, timeout=5, family=socket.AF_INET6)
        self.addCleanup(c.close)
        self.assertReply(c.greeting, 220, None, "greeting over IPv6")
        r = c.cmd("EHLO client6.test")
        self.assertReply(r, 250, None, "EHLO over IPv6")
        self.assertIn("[::1]", r.lines[0], "EHLO greeting line %r" % r.lines[0])
        qid = self.send_message(c, rcpts=("six@example.test",), ehlo=False)
        msg = self.moatd.wait_maildir("six@example.test")[0]
        self.assertIn(b"Received: from client6.test ([IPv6:::1])\n\tby mx.moat.test (moat) with "
                      b"ESMTP id " + qid.encode(), msg, "Received header: %r" % msg[:300])
        self.assertEqual(strip_delivery_headers(msg), b"Subject: test\n\nhello\n")

    def test_ipv4_listener_still_works(self):
        c = self.connect()
        self.send_message(c, rcpts=("four@example.test",))
        self.moatd.wait_maildir("four@example.test")


if __name__ == "__main__":
    unittest.main()
