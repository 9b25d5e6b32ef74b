"""Partial recipient failures: in one message, what is delivered stays
delivered (also across a restart: the outcome is in the queue file), what
is refused for good gets one DSN naming only it, and only what was deferred
is tried again."""
import time
import unittest

from dlvutil import (DSN, DeliveryCase, Sink, domain, log_lines, moat_conf, restart, smtp_route,
                     submit, wait_for, wait_removed)


class Policy:
    """bad* -> 550 5.1.1, tmp* -> 450 4.2.1 until allowed."""

    def __init__(self):
        self.allow_tmp = False

    def __call__(self, address):
        local = address.split("@")[0].lower()
        if local.startswith("bad"):
            return "550 5.1.1 <%s>: no such user" % address
        if local.startswith("tmp") and not self.allow_tmp:
            return "450 4.2.1 <%s>: mailbox busy, try later" % address
        return None


class TestPartialFailures(DeliveryCase):

    def setUp(self):
        self.policy = Policy()
        self.sink = self.start_sink(Sink(rcpt_policy=self.policy))
        self.dsn = self.start_sink(Sink())

    def dsns(self):
        return [DSN(t.content) for t in self.dsn.txns]

    def rcpt_attempts(self, addr):
        return [x for x in self.sink.rcpt_log if x[1].lower() == addr]

    def deliveries(self, addr):
        return [t for r, t in self.sink.deliveries() if r.lower() == addr]

    def test_partial_failure_across_restart(self):
        m = self.start_moatd(moat_conf(self.dsn.port),
                             domain("partial.test", smtp_route(self.sink.port)))
        rcpts = ["ok@partial.test", "bad@partial.test", "tmp@partial.test"]
        qid = submit(m, rcpts, sender="author@remote.test",
                     body=b"Subject: partial\r\n\r\nthree recipients\r\n")
        # first attempt: ok delivered, bad refused for good, tmp deferred
        m.wait_log(r"event=deferred id=%s to=tmp@partial.test" % qid)
        self.assertEqual(len(log_lines(m, "delivered", qid)), 1)
        self.assertEqual(len(log_lines(m, "bounced", qid)), 1)
        self.assertEqual(len(self.deliveries("ok@partial.test")), 1)
        # no report yet is fine (one per message, when all are final), but
        # never one that names tmp or ok
        # restart in between: the outcomes of ok and bad are in the queue file
        m.stop()
        self.assertEqual(m.queue_ids(), [qid], "the message left the queue with tmp pending")
        restart(m)
        # a few more rounds of tmp only
        wait_for(lambda: len(self.rcpt_attempts("tmp@partial.test")) >= 3, 15,
                 "tmp to be tried again after the restart")
        self.policy.allow_tmp = True
        wait_removed(m, qid, timeout=15)
        time.sleep(0.5)
        self.assertEqual(len(self.deliveries("ok@partial.test")), 1,
                         "ok was delivered again (after the restart?)")
        self.assertEqual(len(self.rcpt_attempts("ok@partial.test")), 1, "ok was tried again")
        self.assertEqual(len(self.rcpt_attempts("bad@partial.test")), 1, "bad was tried again")
        self.assertEqual(len(self.deliveries("tmp@partial.test")), 1)
        self.assertEqual(len(self.deliveries("bad@partial.test")), 0)
        # every transaction after the first carried tmp alone
        later = [t.rcpts for t in self.sink.txns[1:]]
        self.assertEqual([[r.lower() for r in x] for x in later], [["tmp@partial.test"]])
        # exactly one DSN, naming bad only
        reports = self.dsns()
        self.assertEqual(len(reports), 1, "want one DSN, got %d" % len(reports))
        d = reports[0]
        self.assertEqual(self.dsn.txns[0].mail_from, "<>")
        self.assertEqual(self.dsn.txns[0].rcpts, ["author@remote.test"])
        self.assertEqual(d.final_recipients(), ["bad@partial.test"])
        r = d.rcpt("bad@partial.test")
        self.assertEqual(r.get("action"), "failed")
        self.assertEqual(r.get("status"), "5.1.1")
        self.assertIn("550 5.1.1", r.get("diagnostic-code", ""))
        self.assertEqual(len(log_lines(m, "dsn", qid)), 1)

    def test_partial_failure_with_expiry_one_dsn(self):
        # tmp never gets in: at the lifetime it fails with 4.4.7, and the
        # message's failures (bad, tmp) make one DSN together.
        m = self.start_moatd(moat_conf(self.dsn.port, "delivery_queue_lifetime = 3s\n",
                                       idle_keep="300ms"),
                             domain("partial.test", smtp_route(self.sink.port)))
        rcpts = ["ok2@partial.test", "bad2@partial.test", "tmp2@partial.test"]
        qid = submit(m, rcpts, sender="author2@remote.test")
        wait_removed(m, qid, timeout=15)
        time.sleep(0.5)
        self.assertEqual(len(self.deliveries("ok2@partial.test")), 1)
        self.assertEqual(len(self.rcpt_attempts("ok2@partial.test")), 1)
        self.assertGreaterEqual(len(self.rcpt_attempts("tmp2@partial.test")), 2)
        reports = self.dsns()
        self.assertEqual(len(reports), 1)
        d = reports[0]
        self.assertEqual(sorted(d.final_recipients()), ["bad2@partial.test", "tmp2@partial.test"])
        self.assertEqual(d.rcpt("bad2@partial.test").get("status"), "5.1.1")
        self.assertEqual(d.rcpt("tmp2@partial.test").get("status"), "4.4.7")
        self.assertEqual(d.rcpt("tmp2@partial.test").get("action"), "failed")
        self.assertIn("450 4.2.1", d.rcpt("tmp2@partial.test").get("diagnostic-code", ""),
                      "the last error is not in the report")

    def success_report_case(self, do_restart):
        # ok (NOTIFY=SUCCESS) goes to a downstream without DSN at once, tmp
        # waits; when the message is done, the sender hears 'relayed' for ok,
        # also when moatd was restarted in between.
        m = self.start_moatd(moat_conf(self.dsn.port),
                             domain("partial.test", smtp_route(self.sink.port)))
        tag = "r" if do_restart else "n"
        ok, tmp = "ok-%s@partial.test" % tag, "tmp-%s@partial.test" % tag
        qid = submit(m, [ok, tmp], sender="succ-%s@remote.test" % tag,
                     rcpt_params={ok: " NOTIFY=SUCCESS"})
        m.wait_log(r"event=deferred id=%s to=%s" % (qid, tmp))
        self.assertEqual(len(self.deliveries(ok)), 1)
        if do_restart:
            m.stop()
            restart(m)
        wait_for(lambda: len(self.rcpt_attempts(tmp)) >= 2, 10, "tmp tried again")
        self.policy.allow_tmp = True
        wait_removed(m, qid, timeout=15)
        time.sleep(0.5)
        self.assertEqual(len(self.deliveries(ok)), 1)
        reports = [d for d in self.dsns() if d.rcpt(ok) is not None]
        self.assertEqual(len(reports), 1, "want one success report naming %s, got %d"
                         % (ok, len(reports)))
        self.assertIn(reports[0].rcpt(ok).get("action"), ("relayed", "delivered"))
        self.assertIsNone(reports[0].rcpt(tmp), "tmp asked for no success report")

    def test_success_report_when_others_were_deferred(self):
        self.success_report_case(do_restart=False)

    def test_success_report_survives_restart(self):
        self.success_report_case(do_restart=True)

    def test_transactions_split_by_rcpts_per_transaction(self):
        # 7 recipients, 3 per transaction, 2 of them refused: every good one
        # exactly once, the refused ones in one DSN.
        m = self.start_moatd(moat_conf(self.dsn.port, "delivery_rcpts_per_transaction = 3\n"),
                             domain("split.test", smtp_route(self.sink.port)))
        rcpts = ["s%d@split.test" % i for i in range(5)] + ["bad-a@split.test",
                                                              "bad-b@split.test"]
        qid = submit(m, rcpts, sender="splitter@remote.test")
        wait_removed(m, qid)
        time.sleep(0.3)
        for r in rcpts[:5]:
            self.assertEqual(len(self.deliveries(r)), 1, r)
        self.assertTrue(all(len(t.rcpts) <= 3 for t in self.sink.txns),
                        [t.rcpts for t in self.sink.txns])
        reports = self.dsns()
        self.assertEqual(len(reports), 1)
        self.assertEqual(sorted(reports[0].final_recipients()), ["bad-a@split.test",
                                                                 "bad-b@split.test"])


if __name__ == "__main__":
    unittest.main()
