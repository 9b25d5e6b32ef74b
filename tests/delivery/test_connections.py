"""Connections: smart hosts in fallback order, a downstream that is down for
a while (the queue holds, moat keeps accepting, it drains when the
downstream is back), connection reuse with RSET between, the caps on
connections per destination, messages per session and session age,
PIPELINING, and a reused connection closed with 421 4.4.1 (Exchange
Online's session limit) being a reconnect, not a failed attempt."""
import socket
import time
import unittest

from dlvutil import (DeliveryCase, Sink, SmtpSink, WireSink, domain, free_port, log_lines,
                     max_concurrent, moat_conf, smtp_route, submit, wait_for, wait_queue_empty,
                     wait_removed)


class SilentListener:
    """Accepts TCP connections (the kernel does) and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.sock.close()


class TestFallback(DeliveryCase):
    """route = smtp:[first]:P1, [live]:P2 -> the message reaches live."""

    def test_fallback_to_the_next_host(self):
        live = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        silent = SilentListener()
        self.addCleanup(silent.stop)
        firsts = [
            ("nothing listening", free_port()),
            ("4xx greeting", self.start_sink(SmtpSink(["-r", "CONNECT"])).port),
            ("421 greeting", self.start_sink(SmtpSink(["-Q", "CONNECT"])).port),
            ("421 to EHLO and HELO", self.start_sink(SmtpSink(["-Q", "EHLO,HELO"])).port),
            ("closes at once", self.start_sink(SmtpSink(["-q", "CONNECT"])).port),
            ("EHLO and HELO refused", self.start_sink(SmtpSink(["-f", "EHLO,HELO"])).port),
            ("no greeting (delivery_connect_timeout)", silent.port),
        ]
        domains = "".join(domain("fb%d.test" % i, smtp_route(p, live.port))
                          for i, (_, p) in enumerate(firsts))
        m = self.start_moatd(moat_conf(dsn.port, "delivery_connect_timeout = 1s\n"), domains)
        qids = [submit(m, ["x@fb%d.test" % i]) for i in range(len(firsts))]
        for i, (name, port) in enumerate(firsts):
            with self.subTest(name):
                wait_removed(m, qids[i], timeout=6)
                self.assertEqual(len(log_lines(m, "delivered", qids[i])), 1,
                                 log_lines(m, "deferred", qids[i]))
                self.assertEqual(log_lines(m, "deferred", qids[i]), [],
                                 "deferred although the second host was up")
                self.assertIn("x@fb%d.test" % i, [r for r, _ in live.deliveries()])
                self.assertTrue([l for l in log_lines(m, "mta_host_failed")
                                 if ":%d" % port in l], "no mta_host_failed for the first host")

    def test_all_hosts_down_then_back(self):
        # The downstream is down for a while: moat keeps accepting, the queue
        # holds, and when one of the hosts comes back everything drains,
        # each message exactly once.
        dsn = self.start_sink(Sink())
        p1, p2 = free_port(), free_port()
        m = self.start_moatd(moat_conf(dsn.port),
                             domain("down.test", smtp_route(p1, p2)))
        c = m.connect()
        c.cmd("EHLO client.test")
        qids = []
        for i in range(50):
            qids.append(submit(m, ["user@down.test"], conn=c,
                               body=b"Subject: down-%d\r\n\r\nwhile down\r\n" % i))
        c.close()
        self.assertEqual(len(qids), 50)
        wait_for(lambda: all(log_lines(m, "deferred", q) for q in qids), 15,
                 "every message to be deferred once")
        time.sleep(1.0)
        self.assertEqual(sorted(m.queue_ids()), sorted(qids), "the queue does not hold them all")
        self.assertEqual(log_lines(m, "bounced"), [])
        d = log_lines(m, "deferred", qids[0])[0]
        self.assertIn("4.4.1", d)
        # moat still accepts while the downstream is down
        qids.append(submit(m, ["user@down.test"], body=b"Subject: down-50\r\n\r\nlate\r\n"))
        sink = self.start_sink(Sink(port=p2))
        wait_queue_empty(m, timeout=30)
        time.sleep(0.5)
        subjects = sorted(t.subject() for t in sink.txns)
        want = sorted("down-%d" % i for i in range(51))
        self.assertEqual(subjects, want, "lost or duplicated while draining")
        self.assertEqual(dsn.txns, [], "a DSN while the downstream was only down")


class TestReuse(DeliveryCase):
    """20 messages: few connections, never more than the cap at once, RSET
    between transactions on one connection, the per-session caps."""

    def send_many(self, m, n, tag):
        c = m.connect()
        c.cmd("EHLO client.test")
        qids = [submit(m, ["r%d@reuse.test" % (i % 3)], conn=c,
                       body=b"Subject: %s-%d\r\n\r\nreuse\r\n" % (tag.encode(), i))
                for i in range(n)]
        c.close()
        for q in qids:
            wait_removed(m, q)
        return qids

    def test_reuse_and_connection_cap(self):
        sink = self.start_sink(Sink(data_delay=0.1))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_max_connections_per_dest = 3\n",
                                       idle_keep="5s"),
                             domain("reuse.test", smtp_route(sink.port)))
        self.send_many(m, 20, "reuse")
        self.assertEqual(sorted(t.subject() for t in sink.txns),
                         sorted("reuse-%d" % i for i in range(20)))
        used = sink.sessions_with_mail()
        print("reuse: 20 messages over %d connections, at most %d at once"
              % (len(used), sink.max_live))
        self.assertLess(len(used), 20, "no connection reuse")
        self.assertLessEqual(len(sink.conns), 3,
                             "more connections than delivery_max_connections_per_dest in all, "
                             "although idle ones were kept")
        self.assertLessEqual(max_concurrent(sink), 3, "over delivery_max_connections_per_dest")

    def test_rset_between_transactions(self):
        sink = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        # one connection to the destination: the messages must share it
        m = self.start_moatd(moat_conf(dsn.port, "delivery_max_connections_per_dest = 1\n",
                                       idle_keep="5s"),
                             domain("reuse.test", smtp_route(sink.port)))
        self.send_many(m, 4, "rset")
        reused = [c for c in sink.conns if len(c.txns) >= 2]
        self.assertTrue(reused, "no connection carried two messages")
        for c in reused:
            ev = [e for e in c.events if e in ("MAIL", "DATA", "RSET")]
            # every MAIL after the first follows an RSET
            for k in range(1, len(ev)):
                if ev[k] == "MAIL" and "MAIL" in ev[:k]:
                    self.assertEqual(ev[k - 1], "RSET",
                                     "connection %d: MAIL without RSET before it: %s"
                                     % (c.n, c.events))

    def test_session_max_messages(self):
        sink = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_session_max_messages = 3\n"
                                       "delivery_max_connections_per_dest = 1\n",
                                       idle_keep="5s"),
                             domain("reuse.test", smtp_route(sink.port)))
        self.send_many(m, 10, "cap")
        per = [len(c.txns) for c in sink.sessions_with_mail()]
        self.assertEqual(sum(per), 10)
        self.assertTrue(all(n <= 3 for n in per), "a session carried more than 3: %s" % per)
        self.assertGreaterEqual(len(per), 4, per)

    def test_session_max_age(self):
        # A connection older than delivery_session_max_age takes no new
        # message, even when it is idle and the next one comes along.
        sink = self.start_sink(WireSink())
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_session_max_age = 1s\n",
                                       idle_keep="10s"),
                             domain("age.test", smtp_route(sink.port)))
        q1 = submit(m, ["a@age.test"])
        wait_removed(m, q1)
        time.sleep(1.5)
        q2 = submit(m, ["a@age.test"])
        wait_removed(m, q2)
        self.assertEqual(len(log_lines(m, "delivered", q2)), 1)
        with sink.lock:
            carried = [len(c.txns) for c in sink.conns]
        self.assertEqual([n for n in carried if n], [1, 1],
                         "the second message went over the first, older connection")


class TestGlobalCap(DeliveryCase):
    """delivery_max_connections caps all destinations together; a destination
    that had to wait for a free connection gets one when another closes."""

    def test_waiting_destination_gets_a_connection(self):
        a = self.start_sink(Sink(data_delay=0.2))
        b = self.start_sink(Sink(data_delay=0.2))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_max_connections = 1\n",
                                       idle_keep="500ms"),
                             domain("a.test", smtp_route(a.port)) +
                             domain("b.test", smtp_route(b.port)))
        qa = [submit(m, ["x@a.test"]) for _ in range(3)]
        qb = [submit(m, ["x@b.test"]) for _ in range(3)]
        for q in qa + qb:
            wait_removed(m, q, timeout=10)
        self.assertEqual(len(a.txns), 3)
        self.assertEqual(len(b.txns), 3)
        self.assertEqual(max_concurrent(a, b), 1, "over delivery_max_connections")
        self.assertEqual(log_lines(m, "deferred"), [])


class TestProtocol(DeliveryCase):

    def test_pipelining_when_offered(self):
        pipe = self.start_sink(WireSink(ext=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"),
                                        mail_delay=0.3))
        nopipe = self.start_sink(WireSink(ext=("8BITMIME", "ENHANCEDSTATUSCODES"),
                                          mail_delay=0.3))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port),
                             domain("pipe.test", smtp_route(pipe.port)) +
                             domain("nopipe.test", smtp_route(nopipe.port)))
        for sink, dom, want in ((pipe, "pipe.test", True), (nopipe, "nopipe.test", False)):
            with self.subTest(dom):
                q = submit(m, ["a@" + dom, "b@" + dom, "c@" + dom])
                wait_removed(m, q)
                t = sink.txns()
                self.assertEqual(len(t), 1)
                self.assertEqual(len(t[0].rcpts), 3)
                conn = [c for c in sink.conns if c.txns][0]
                self.assertEqual(conn.pipelined, [want],
                                 "RCPT sent before MAIL was answered: %s, want %s"
                                 % (conn.pipelined, want))

    def test_421_on_reused_connection_is_a_reconnect(self):
        # Exchange Online ends long sessions: the next MAIL gets "421 4.4.1
        # ... Total session duration" and the connection closes. The message
        # goes out at once on a new connection; it is not a failed attempt
        # (retry_min is 60 s here: a deferral would show).
        def on_mail(conn, idx):
            if idx >= 1:
                return "421 4.4.1 Connection timed out. Total session duration: 00:20:00.123"
            return None

        sink = self.start_sink(WireSink(on_mail=on_mail))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_retry_min = 60s\n"
                                       "delivery_retry_max = 60s\n", idle_keep="10s"),
                             domain("exo.test", smtp_route(sink.port)))
        q1 = submit(m, ["a@exo.test"])
        wait_removed(m, q1)
        q2 = submit(m, ["a@exo.test"])
        wait_removed(m, q2, timeout=8)
        self.assertEqual(len(log_lines(m, "delivered", q2)), 1)
        d = log_lines(m, "deferred", q2)
        self.assertTrue(all("attempt=none" in l for l in d), d)
        self.assertEqual(len(sink.conns), 2)

    def test_no_mail_after_quit(self):
        # An idle connection times out (delivery_idle_keep) and moat sends
        # QUIT; the server is slow to answer it. A message arriving then must
        # not be sent over that closing connection.
        sink = self.start_sink(WireSink(quit_delay=2.0))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, idle_keep="300ms"),
                             domain("quit.test", smtp_route(sink.port)))
        q1 = submit(m, ["a@quit.test"])
        wait_removed(m, q1)
        time.sleep(0.8)  # QUIT is out, the 221 comes at 2.3 s
        q2 = submit(m, ["a@quit.test"])
        wait_removed(m, q2, timeout=10)
        time.sleep(2.0)
        after = [(c.n, c.after_quit) for c in sink.conns if c.after_quit]
        self.assertEqual(after, [], "commands sent after QUIT")
        self.assertEqual(log_lines(m, "deferred", q2), [],
                         "the message was deferred: it was handed to the closing connection")


if __name__ == "__main__":
    unittest.main()
