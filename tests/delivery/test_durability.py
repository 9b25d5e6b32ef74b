"""Durability of the delivery queue: kill -9 under load loses nothing that
got a 250 (duplicates are the price of at-least-once, counted and printed);
a restart with thousands queued delivers each exactly once; SIGHUP that
ends delivery_paused schedules each message once."""
import collections
import signal
import threading
import time
import unittest

from dlvutil import (DeliveryCase, Sink, SMTPRaw, domain, log_lines, moat_conf, restart,
                     smtp_route, submit, wait_for, wait_queue_empty)
from moat_harness import load_then_kill  # noqa: E402 (dlvutil sets the path)


def subjects(sink):
    return collections.Counter(t.subject() for t in sink.txns)


def parallel_submit(m, n, senders, tag, rcpt):
    """n messages over `senders` connections; returns the queue ids."""
    out, lock = [], threading.Lock()
    errors = []

    def run(k):
        try:
            c = m.connect(timeout=30)
            c.cmd("EHLO s%d.test" % k)
            for i in range(k, n, senders):
                q = submit(m, [rcpt], conn=c, body=b"Subject: %s-%d\r\n\r\nx\r\n"
                           % (tag.encode(), i))
                with lock:
                    out.append(q)
            c.cmd("QUIT")
            c.close()
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError("submitting failed: %s" % errors[:3])
    return out


class TestKillUnderLoad(DeliveryCase):

    def test_kill9_under_load(self):
        sink = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port), domain("load.test", smtp_route(sink.port)))
        before = []
        tags = load_then_kill(m, "load@load.test",
                              on_kill=lambda _m: before.append(len(sink.txns)))
        delivered_before = before[0]
        self.assertGreater(len(tags), 50, "the load did not get going")
        restart(m)
        wait_queue_empty(m, timeout=90)
        time.sleep(0.5)
        got = subjects(sink)
        lost = [t for t in tags if t not in got]
        dups = {t: n for t, n in got.items() if n > 1}
        print("kill -9 under load: acked=%d delivered before the kill=%d delivered=%d "
              "duplicates=%d lost=%d" % (len(tags), delivered_before, len(got),
                                         sum(n - 1 for n in dups.values()), len(lost)))
        if dups:
            print("  duplicated: %s" % sorted(dups)[:20])
        self.assertEqual(lost, [], "messages that got a 250 were never delivered")
        self.assertEqual(dsn.txns, [], "DSNs after the crash")


class TestRestartWithManyQueued(DeliveryCase):

    def test_2000_queued_then_restart(self):
        sink = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        conf_on = moat_conf(dsn.port)
        doms = domain("many.test", smtp_route(sink.port))
        m = self.start_moatd(conf_on + "delivery_paused = yes\n", doms)
        qids = parallel_submit(m, 2000, 8, "many", "user@many.test")
        self.assertEqual(len(set(qids)), 2000)
        self.assertEqual(len(m.queue_ids()), 2000)
        self.assertEqual(sink.txns, [], "delivered while paused")
        m.stop()
        m.write_conf(conf_on, doms)
        t0 = time.time()
        restart(m)
        wait_queue_empty(m, timeout=120)
        time.sleep(0.5)
        print("2000 queued: drained in %.1f s after the restart over %d connections"
              % (time.time() - t0, len(sink.sessions_with_mail())))
        got = subjects(sink)
        self.assertEqual(len(got), 2000, "distinct messages delivered")
        dups = {t: n for t, n in got.items() if n > 1}
        self.assertEqual(dups, {}, "delivered more than once")
        lines = log_lines(m, "delivered")
        per = collections.Counter(l.split(" id=")[1].split()[0] for l in lines)
        self.assertEqual(sorted(per), sorted(qids))
        self.assertEqual({q: n for q, n in per.items() if n > 1}, {}, "scheduled twice")

    def test_sighup_unpause_schedules_once(self):
        sink = self.start_sink(Sink())
        dsn = self.start_sink(Sink())
        doms = domain("hup.test", smtp_route(sink.port))
        m = self.start_moatd(moat_conf(dsn.port) + "delivery_paused = yes\n", doms)
        qids = parallel_submit(m, 300, 4, "hup", "user@hup.test")
        self.assertEqual(len(m.queue_ids()), len(qids))
        time.sleep(0.3)
        self.assertEqual(sink.txns, [])
        m.write_conf(moat_conf(dsn.port), doms)
        m.signal(signal.SIGHUP)
        wait_queue_empty(m, timeout=60)
        time.sleep(0.5)
        got = subjects(sink)
        self.assertEqual(len(got), 300)
        self.assertEqual({t: n for t, n in got.items() if n > 1}, {}, "delivered more than once")
        # and messages that arrive after the reload go out as usual
        q = submit(m, ["late@hup.test"], body=b"Subject: hup-late\r\n\r\nx\r\n")
        wait_for(lambda: log_lines(m, "removed", q), 10, "the late message")
        self.assertEqual(subjects(sink)["hup-late"], 1)


if __name__ == "__main__":
    unittest.main()
