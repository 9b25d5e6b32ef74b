"""Downstreams that break the protocol, and the queue's own failures: each
case pins down a fault found in review. A broken reply never counts as a
delivery; a report or a removal that fails keeps the message."""
import os
import socket
import struct
import threading
import time
import unittest
import zlib

from dlvutil import (DeliveryCase, Sink, domain, log_lines, moat_conf, smtp_route, submit,
                     wait_for, wait_removed)


class RawServer:
    """A scriptable SMTP server: script(conn, rfile) plays one connection."""

    def __init__(self, script):
        self.script = script
        self.log = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.script(self, c, c.makefile("rb"))
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def stop(self):
        self.ls.close()


def send(c, *lines):
    c.sendall(b"".join(l.encode() + b"\r\n" for l in lines))


def dialogue(on_data):
    """A server that answers everything with 250 and plays on_data at DATA."""
    def script(srv, c, f):
        send(c, "220 raw")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                send(c, "250-raw", "250-PIPELINING", "250 8BITMIME")
            elif verb == b"DATA":
                on_data(srv, c, f)
            elif verb == b"QUIT":
                send(c, "221 bye")
                return
            else:
                send(c, "250 ok")
    return script


class TestBrokenDownstream(DeliveryCase):

    def run_against(self, script):
        srv = RawServer(script)
        self.addCleanup(srv.stop)
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_retry_min = 1h\n"
                                       "delivery_retry_max = 1h\n"),
                             domain("d.test", smtp_route(srv.port)))
        q = submit(m, ["a@d.test"], body=b"Subject: x\r\n\r\n" + (b"z" * 76 + b"\r\n") * 200000)
        m.wait_log(r"event=(deferred|delivered|bounced) id=%s" % q, timeout=20)
        return m, q, srv

    def test_reply_before_end_of_data_is_not_delivery(self):
        def on_data(srv, c, f):
            send(c, "354 go")
            f.readline()
            send(c, "250 2.0.0 early")
            # Stop reading for a while, as a server that gave up would: moat
            # still has data to send when the reply comes. (A reply that comes
            # after moat handed its last octet to the kernel looks like a final
            # one; no client can tell the two apart.)
            time.sleep(1.0)
            while f.readline() not in (b".\r\n", b""):
                pass
            send(c, "554 5.7.1 rejected after all")
        m, q, _ = self.run_against(dialogue(on_data))
        self.assertEqual(log_lines(m, "delivered", q), [], "an early reply counted as delivery")
        self.assertIn(q, m.queue_ids())

    def test_2xx_to_data_is_not_delivery(self):
        def on_data(srv, c, f):
            send(c, "250 2.0.0 fine, whatever")
        m, q, _ = self.run_against(dialogue(on_data))
        self.assertEqual(log_lines(m, "delivered", q), [], "a 2xx to DATA counted as delivery")
        self.assertIn(q, m.queue_ids())


class TestHoldStopsWaitingWork(DeliveryCase):

    def test_hold_while_waiting_for_a_connection(self):
        # One connection, a slow sink: B waits behind A; holding B must keep it.
        sink = self.start_sink(Sink(data_delay=3.0))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_max_connections_per_dest = 1\n"),
                             domain("d.test", smtp_route(sink.port)))
        submit(m, ["a@d.test"], body=b"Subject: A\r\n\r\nA\r\n")
        qb = submit(m, ["b@d.test"], body=b"Subject: B\r\n\r\nB\r\n")
        ctl = self.moatctl(m, "queue", "hold", qb)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        time.sleep(5)
        self.assertEqual([t.subject() for t in sink.txns], ["A"], "a held message was sent")
        self.assertIn(qb, m.queue_ids())
        self.assertEqual(self.moatctl(m, "queue", "delete", qb).returncode, 0)
        self.assertNotIn(qb, m.queue_ids())

    def moatctl(self, m, *args):
        import subprocess
        from moat_harness import MOATD
        return subprocess.run([os.path.join(os.path.dirname(MOATD), "moatctl"), "-c", m.conf_path]
                              + list(args), capture_output=True, text=True, timeout=20)


class TestQueueFailures(DeliveryCase):

    def test_torn_status_record_is_cut(self):
        # a@ delivered, b@ deferred: the outcome of a@ is recorded; a torn record
        # appended after it (a crash mid-append) must not hide it after restarts.
        def rcpt_policy(addr):
            return "450 4.2.0 later" if addr.startswith("b@") else None
        sink = self.start_sink(Sink(rcpt_policy=rcpt_policy))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_retry_min = 1h\n"
                                       "delivery_retry_max = 1h\n"),
                             domain("d.test", smtp_route(sink.port)))
        q = submit(m, ["a@d.test", "b@d.test"])
        m.wait_log(r"event=deferred id=%s" % q)
        path = os.path.join(m.data, "queue", q)
        hdr = b"D" + struct.pack(">I", 40)
        with open(path, "ab") as f:  # a record cut short: header and part of its payload
            f.write(hdr + b"0\t2.0.0\tx")
        for _ in range(2):
            m.stop()
            m.start()
            time.sleep(1.0)
        self.assertEqual(len([r for r, t in sink.deliveries() if r == "a@d.test"]), 1,
                         "a@ delivered again after the torn record")
        self.assertIn("event=spool_status_torn id=%s" % q, m.log())

    def test_report_that_cannot_be_written_keeps_the_message(self):
        import signal

        def rcpt_policy(addr):
            return "550 5.1.1 no such user"
        sink = self.start_sink(Sink(rcpt_policy=rcpt_policy))
        dsn = self.start_sink(Sink())
        conf = moat_conf(dsn.port, "delivery_retry_min = 1s\ndelivery_retry_max = 1s\n")
        doms = domain("d.test", smtp_route(sink.port))
        m = self.start_moatd(conf + "delivery_paused = yes\n", doms)
        q = submit(m, ["x@d.test"])           # accepted while delivery is paused
        incoming = os.path.join(m.data, "incoming")
        os.chmod(incoming, 0o500)             # now the report cannot be spooled
        try:
            m.write_conf(conf, doms)
            m.signal(signal.SIGHUP)           # deliver: x@ bounces, its report fails
            m.wait_log(r"event=dsn_failed id=%s" % q)
            time.sleep(0.5)
            self.assertIn(q, m.queue_ids(), "the message left without its report")
        finally:
            os.chmod(incoming, 0o700)
        wait_removed(m, q, timeout=10)
        wait_for(lambda: any(b"Final-Recipient: rfc822;x@d.test" in t.content for t in dsn.txns),
                 10, "the report after the spool recovered")

if __name__ == "__main__":
    unittest.main()
