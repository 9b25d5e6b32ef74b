"""Outcome per recipient, against Postfix's smtp-sink and its switches:
2xx delivered, 5xx failed with one RFC 3464 DSN from <> to the sender, 4xx
and connection trouble retried until delivery_queue_lifetime, then failed
with 4.4.7 and a DSN; never a DSN for the null sender; RFC 3461 NOTIFY
honoured, and passed on to a downstream that offers DSN."""
import os
import time
import unittest

from dlvutil import (DSN, DeliveryCase, Moatd, Sink, SmtpSink, domain, log_lines, moat_conf,
                     scratch_dir, smtp_route, submit, wait_for, wait_removed)

LIFETIME = 5  # seconds

# (case, smtp-sink switches, MAIL parameters, body, outcome, Status, in Diagnostic-Code)
#   outcome: "bounced"  refused for good at once: 5xx, no retry
#            "expired"  deferred, retried, failed with 4.4.7 at the queue lifetime
#            "delivered"
PLAIN = b"Subject: outcome test\r\n\r\nbody\r\n"
EIGHT = b"Subject: outcome test 8bit\r\n\r\n\xe4\xf6\xfc\r\n"
CASES = [
    ("5xx at RCPT", ["-f", "RCPT"], "", PLAIN, "bounced", "5.3.0", "500 5.3.0"),
    ("4xx at RCPT", ["-r", "RCPT"], "", PLAIN, "expired", "4.4.7", "450 4.3.0"),
    ("5xx at end of data", ["-f", "."], "", PLAIN, "bounced", "5.3.0", "500 5.3.0"),
    ("4xx at end of data", ["-r", "."], "", PLAIN, "expired", "4.4.7", "450 4.3.0"),
    ("5xx at MAIL", ["-f", "MAIL"], "", PLAIN, "bounced", "5.3.0", "500 5.3.0"),
    ("4xx at MAIL", ["-r", "MAIL"], "", PLAIN, "expired", "4.4.7", "450 4.3.0"),
    ("5xx at DATA", ["-f", "DATA"], "", PLAIN, "bounced", "5.3.0", "500 5.3.0"),
    ("4xx at DATA", ["-r", "DATA"], "", PLAIN, "expired", "4.4.7", "450 4.3.0"),
    ("dropped at DATA", ["-q", "DATA"], "", PLAIN, "expired", "4.4.7", None),
    ("dropped at end of data", ["-q", "."], "", PLAIN, "expired", "4.4.7", None),
    ("421 at MAIL", ["-Q", "MAIL"], "", PLAIN, "expired", "4.4.7", "421"),
    ("421 at RCPT", ["-Q", "RCPT"], "", PLAIN, "expired", "4.4.7", "421"),
    ("421 at connect", ["-Q", "CONNECT"], "", PLAIN, "expired", "4.4.7", "421"),
    ("4xx greeting", ["-r", "CONNECT"], "", PLAIN, "expired", "4.4.7", None),
    ("no reply to the end of data (delivery_data_timeout)", ["-W", ".:60"], "", PLAIN,
     "expired", "4.4.7", "timeout"),
    ("no reply to DATA (-w)", ["-w", "60"], "", PLAIN, "expired", "4.4.7", "timeout"),
    ("5xx at RCPT without ENHANCEDSTATUSCODES", ["-E", "-f", "RCPT", "-B", "554 no way"], "",
     PLAIN, "bounced", "5.0.0", "554 no way"),
    ("no ESMTP: HELO", ["-e"], "", PLAIN, "delivered", None, None),
    ("no PIPELINING", ["-p"], "", PLAIN, "delivered", None, None),
    ("8-bit message, no 8BITMIME", ["-8"], " BODY=8BITMIME", EIGHT, "bounced", "5.6.3", None),
    ("8-bit message, no ESMTP", ["-e"], " BODY=8BITMIME", EIGHT, "bounced", "5.6.3", None),
]


def dom(i):
    return "case%d.test" % i


class TestOutcomes(DeliveryCase):
    """One moatd, one smtp-sink per case (each case its own domain), all at once."""

    @classmethod
    def setUpClass(cls):
        cls.sinks = []
        domains = ""
        for i, case in enumerate(CASES):
            s = SmtpSink(case[1]).start()
            cls.sinks.append(s)
            domains += domain(dom(i), smtp_route(s.port))
        cls.dsn = Sink().start()
        cls.moatd = Moatd(
            conf=moat_conf(cls.dsn.port,
                           "delivery_queue_lifetime = %ds\n"
                           "delivery_data_timeout = 1s\n"
                           "delivery_command_timeout = 1500ms\n"
                           "delivery_connect_timeout = 1500ms\n" % LIFETIME,
                           # an idle connection is gone before the next retry
                           # (the reuse race has its own test in test_connections)
                           idle_keep="300ms"),
            domains=domains, name=cls.__name__)
        cls.moatd.start()
        cls.qids = {}
        for i, case in enumerate(CASES):
            rcpt = "rcpt%d@%s" % (i, dom(i))
            cls.qids[i] = submit(cls.moatd, [rcpt], body=case[3], mail_params=case[2],
                                 sender="sender%d@remote.test" % i,
                                 rcpt_params={rcpt: " ORCPT=rfc822;orig%d@elsewhere.test" % i})
        cls.t0 = time.time()
        cls.wait_all()

    @classmethod
    def wait_all(cls):
        deadline = cls.t0 + LIFETIME + 15
        while time.time() < deadline:
            if all(log_lines(cls.moatd, "removed", q) for q in cls.qids.values()):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the DSNs' own delivery

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()
        for s in cls.sinks:
            s.stop()
        cls.dsn.stop()

    def dsns_for(self, rcpt):
        out = []
        for t in self.dsn.txns:
            d = DSN(t.content)
            if d.rcpt(rcpt) is not None:
                out.append((t, d))
        return out

    def test_outcomes(self):
        for i, (name, args, params, body, outcome, status, diag) in enumerate(CASES):
            with self.subTest("%s (smtp-sink %s)" % (name, " ".join(args))):
                qid = self.qids[i]
                rcpt = "rcpt%d@%s" % (i, dom(i))
                removed = log_lines(self.moatd, "removed", qid)
                deferred = log_lines(self.moatd, "deferred", qid)
                bounced = log_lines(self.moatd, "bounced", qid)
                delivered = log_lines(self.moatd, "delivered", qid)
                self.assertEqual(len(removed), 1, "message not settled in time; deferred: %s"
                                 % deferred[-1:])
                if outcome == "delivered":
                    self.assertEqual(len(delivered), 1, deferred[-1:] + bounced)
                    self.assertEqual(self.dsns_for(rcpt), [])
                    continue
                self.assertEqual(delivered, [])
                if outcome == "bounced":
                    self.assertEqual(len(bounced), 1, "want one bounce; deferred: %s" % deferred)
                    self.assertEqual(deferred, [], "a 5xx was retried")
                else:
                    self.assertEqual(bounced, [])
                    self.assertGreaterEqual(len(deferred), 2,
                                            "want at least two deferred attempts before expiry")
                dsns = self.dsns_for(rcpt)
                self.assertEqual(len(dsns), 1, "want exactly one DSN naming %s, got %d"
                                 % (rcpt, len(dsns)))
                self.assertEqual(len(log_lines(self.moatd, "dsn", qid)), 1)
                t, d = dsns[0]
                self.assertEqual(t.mail_from, "<>", "a DSN comes from the null sender")
                self.assertEqual(t.rcpts, ["sender%d@remote.test" % i])
                self.assertEqual(d.msg.get_content_type(), "multipart/report")
                self.assertEqual(d.msg.get_param("report-type"), "delivery-status")
                self.assertEqual(d.final_recipients(), [rcpt])
                r = d.rcpt(rcpt)
                self.assertEqual(r.get("action"), "failed")
                self.assertEqual(r.get("status"), status, r)
                self.assertEqual(r.get("original-recipient", "").lower(),
                                 "rfc822;orig%d@elsewhere.test" % i)
                self.assertTrue(d.per_message.get("reporting-mta", "").startswith("dns;"),
                                d.per_message)
                if outcome == "bounced":
                    # the host that answered (Remote-MTA after an expiry: its own test)
                    self.assertEqual(r.get("remote-mta", "").replace(" ", ""), "dns;127.0.0.1",
                                     "Remote-MTA: %r" % r.get("remote-mta"))
                    self.assertTrue(r.get("diagnostic-code", "").startswith("smtp;"), r)
                if diag:
                    self.assertIn(diag, r.get("diagnostic-code", ""), r)
                # the original comes back
                self.assertIsNotNone(d.original, "no original message part")
                self.assertIn(b"outcome test", d.original)
                self.assertIn(("id " + qid).encode(), d.original)

    def test_remote_mta_after_expiry(self):
        # An expired recipient's report names the host that answered last
        # (or has no Remote-MTA at all), never anything else.
        wrong = []
        for i, (name, args, params, body, outcome, status, diag) in enumerate(CASES):
            if outcome != "expired":
                continue
            rcpt = "rcpt%d@%s" % (i, dom(i))
            dsns = self.dsns_for(rcpt)
            if len(dsns) != 1:
                continue  # test_outcomes says so
            r = dsns[0][1].rcpt(rcpt)
            if "remote-mta" in r and r["remote-mta"].replace(" ", "") != "dns;127.0.0.1":
                wrong.append("%s: Remote-MTA: %r" % (name, r["remote-mta"]))
        self.assertEqual(wrong, [], "expired recipients' Remote-MTA is garbage")

    def test_retries_back_off(self):
        # retry_min 1 s doubling to retry_max 2 s: over a 5 s lifetime a
        # deferred message is tried a handful of times, not in a tight loop,
        # for a 4xx reply and for a connection failure alike.
        for name in ("4xx at RCPT", "dropped at DATA", "421 at connect"):
            with self.subTest(name):
                q = self.qids[[c[0] for c in CASES].index(name)]
                n = len(log_lines(self.moatd, "deferred", q))
                self.assertTrue(2 <= n <= LIFETIME + 1, "%d attempts in %d s" % (n, LIFETIME))
                waits = [int(l.split("in_ms=")[1].split()[0])
                         for l in self.moatd.log().splitlines()
                         if "event=retry id=%s " % q in l]
                self.assertTrue(waits, "no event=retry lines")
                self.assertEqual(waits[0], 1000, "first retry after delivery_retry_min")
                if len(waits) >= 3:
                    self.assertEqual(waits[1], 2000, "the wait doubles: %s" % waits)
                self.assertLessEqual(max(waits), 2000, "over delivery_retry_max: %s" % waits)


class TestNullSenderAndNotify(DeliveryCase):
    """No DSN for <>, none with NOTIFY=NEVER; NOTIFY=SUCCESS: a report when the
    downstream has no DSN, the parameters passed on when it has."""

    @classmethod
    def setUpClass(cls):
        cls.out = scratch_dir(cls.__name__ + "-dumps")
        cls.fail5 = SmtpSink(["-f", "RCPT"]).start()
        cls.fail4 = SmtpSink(["-r", "RCPT"]).start()
        cls.nodsn = SmtpSink(["-N"]).start()
        cls.withdsn = SmtpSink([], dump_dir=os.path.join(cls.out, "withdsn")).start()
        cls.withdsn_nopipe = SmtpSink(["-p"], dump_dir=os.path.join(cls.out, "nopipe")).start()
        cls.dsn = Sink().start()
        cls.moatd = Moatd(
            conf=moat_conf(cls.dsn.port, "delivery_queue_lifetime = 3s\n"),
            domains=domain("fail5.test", smtp_route(cls.fail5.port)) +
            domain("fail4.test", smtp_route(cls.fail4.port)) +
            domain("nodsn.test", smtp_route(cls.nodsn.port)) +
            domain("withdsn.test", smtp_route(cls.withdsn.port)) +
            domain("nopipe.test", smtp_route(cls.withdsn_nopipe.port)),
            name=cls.__name__)
        cls.moatd.start()

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()
        for s in (cls.fail5, cls.fail4, cls.nodsn, cls.withdsn, cls.withdsn_nopipe, cls.dsn):
            s.stop()

    def dsns_naming(self, rcpt):
        return [DSN(t.content) for t in self.dsn.txns if DSN(t.content).rcpt(rcpt) is not None]

    def test_no_dsn_for_the_null_sender(self):
        qids = [submit(self.moatd, ["null5@fail5.test"], sender=""),
                submit(self.moatd, ["null4@fail4.test"], sender="")]
        for q in qids:
            wait_removed(self.moatd, q, timeout=15)
        time.sleep(0.5)
        self.assertEqual(len(log_lines(self.moatd, "bounced", qids[0])), 1)
        for q in qids:
            self.assertEqual(log_lines(self.moatd, "dsn", q), [], "a DSN for a <> message")
        self.assertEqual([t for t in self.dsn.txns
                          if b"null5@" in t.content or b"null4@" in t.content], [],
                         "the DSN sink got a report about a message from <>")

    def test_notify_never(self):
        q = submit(self.moatd, ["never@fail5.test"], sender="nv@remote.test",
                   rcpt_params={"never@fail5.test": " NOTIFY=NEVER"})
        wait_removed(self.moatd, q)
        time.sleep(0.5)
        self.assertEqual(len(log_lines(self.moatd, "bounced", q)), 1)
        self.assertEqual(log_lines(self.moatd, "dsn", q), [])
        self.assertEqual(self.dsns_naming("never@fail5.test"), [])

    def test_notify_delay_only_no_failure_report(self):
        q = submit(self.moatd, ["delayonly@fail5.test"], sender="do@remote.test",
                   rcpt_params={"delayonly@fail5.test": " NOTIFY=DELAY"})
        wait_removed(self.moatd, q)
        time.sleep(0.5)
        self.assertEqual(self.dsns_naming("delayonly@fail5.test"), [])

    def test_notify_success_downstream_without_dsn(self):
        rcpt = "succ@nodsn.test"
        q = submit(self.moatd, [rcpt], sender="succ@remote.test",
                   rcpt_params={rcpt: " NOTIFY=SUCCESS ORCPT=rfc822;succ-orig@remote.test"})
        wait_removed(self.moatd, q)
        d = wait_for(lambda: self.dsns_naming(rcpt), 10, "a success report")
        self.assertEqual(len(d), 1)
        r = d[0].rcpt(rcpt)
        # RFC 3461 6.2.6.2 / 4.1: handed to a non-DSN MTA: "relayed" (a final
        # delivery would be "delivered"); either says it went on.
        self.assertIn(r.get("action"), ("relayed", "delivered"), r)
        self.assertTrue(r.get("status", "").startswith("2."), r)
        self.assertEqual(r.get("original-recipient", "").lower(), "rfc822;succ-orig@remote.test")
        time.sleep(0.5)
        self.assertEqual(len(self.dsns_naming(rcpt)), 1, "more than one success report")

    def test_ret_hdrs_envid_and_size_limit(self):
        # RET=HDRS: the header block only; ENVID comes back as
        # Original-Envelope-Id; over delivery_dsn_max_original (100k by
        # default) the original is cut to its headers, never sent whole.
        big = b"Subject: big bounce\r\nX-Big: yes\r\n\r\n" + (b"b" * 70 + b"\r\n") * 3000
        cases = [("ret-hdrs", " RET=HDRS ENVID=envid-hdrs",
                  b"Subject: ret hdrs\r\nX-Mark: hdr\r\n\r\nSECRET BODY\r\n", "envid-hdrs"),
                 ("ret-full", " RET=FULL",
                  b"Subject: ret full\r\nX-Mark: full\r\n\r\nFULL BODY\r\n", None),
                 ("too-big", "", big, None)]
        qids = {}
        for name, params, body, envid in cases:
            qids[name] = submit(self.moatd, ["%s@fail5.test" % name], sender="%s@remote.test" % name,
                                mail_params=params, body=body)
        for name, params, body, envid in cases:
            with self.subTest(name):
                wait_removed(self.moatd, qids[name])
                d = wait_for(lambda: self.dsns_naming("%s@fail5.test" % name), 10, "the DSN")
                self.assertEqual(len(d), 1)
                d = d[0]
                if envid:
                    self.assertEqual(d.per_message.get("original-envelope-id"), envid)
                self.assertIsNotNone(d.original)
                if name == "ret-full":
                    self.assertEqual(d.original_type, "message/rfc822")
                    self.assertIn(b"FULL BODY", d.original)
                else:
                    self.assertEqual(d.original_type, "text/rfc822-headers")
                    self.assertNotIn(b"SECRET BODY", d.original)
                    self.assertNotIn(b"b" * 70, d.original)
                    self.assertIn(b"Subject:", d.original)
                self.assertLessEqual(len(d.raw), 200 * 1024)

    def check_passed_on(self, sink, rcpt, sender):
        q = submit(self.moatd, [rcpt], sender=sender, mail_params=" RET=HDRS ENVID=env-" + rcpt[:4],
                   rcpt_params={rcpt: " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;o-%s" % rcpt})
        wait_removed(self.moatd, q)
        self.assertEqual(len(log_lines(self.moatd, "delivered", q)), 1)
        dumps = [h for h, raw in sink.dumps() if ("id " + q).encode() in raw]
        self.assertEqual(len(dumps), 1, "the sink's dump of %s" % q)
        h = dumps[0]
        rargs = " ".join(h.get("X-Rcpt-Args", [])).upper()
        margs = " ".join(h.get("X-Mail-Args", [])).upper()
        problems = []
        if "NOTIFY=SUCCESS,FAILURE" not in rargs and "NOTIFY=FAILURE,SUCCESS" not in rargs:
            problems.append("RCPT lacks NOTIFY: %r" % rargs)
        if ("ORCPT=RFC822;O-" + rcpt.upper()) not in rargs:
            problems.append("RCPT lacks ORCPT: %r" % rargs)
        if "RET=HDRS" not in margs or ("ENVID=ENV-" + rcpt[:4].upper()) not in margs:
            problems.append("MAIL lacks RET/ENVID: %r" % margs)
        time.sleep(0.5)
        if self.dsns_naming(rcpt):
            problems.append("moat sent its own success report although the downstream "
                            "offers DSN and got NOTIFY (RFC 3461 4.1: the downstream reports)")
        self.assertEqual(problems, [])

    def test_notify_passed_on_to_dsn_downstream(self):
        self.check_passed_on(self.withdsn, "pass@withdsn.test", "pass@remote.test")

    def test_notify_passed_on_without_pipelining(self):
        # smtp-sink -p: DSN offered, PIPELINING not: RCPTs go one by one
        self.check_passed_on(self.withdsn_nopipe, "nopi@nopipe.test", "nopi@remote.test")


class TestDsnDelivery(DeliveryCase):
    """How the reports themselves travel."""

    def test_report_that_bounces_makes_no_report(self):
        # The sender's server refuses the DSN: that is the end of it (a report
        # about a report would go to <>, which gets none: no loop).
        fail = self.start_sink(SmtpSink(["-f", "RCPT"]))
        m = self.start_moatd(moat_conf(fail.port), domain("fail.test", smtp_route(fail.port)))
        q = submit(m, ["who@fail.test"], sender="gone@remote.test")
        wait_removed(m, q)
        dsn_id = m.wait_log(r"event=dsn id=%s dsn_id=([0-9a-f]+)" % q).group(1)
        wait_removed(m, dsn_id)
        time.sleep(1.0)
        self.assertEqual(len(log_lines(m, "bounced", dsn_id)), 1)
        self.assertEqual(len(log_lines(m, "dsn")), 1, "a report about the report")
        self.assertEqual(m.queue_ids(), [])

    def test_dsn_reaches_downstream_without_8bitmime(self):
        # A DSN about an ASCII message is 7-bit: a downstream without
        # 8BITMIME (smtp-sink -8) where the sender's mail goes must get it.
        fail = self.start_sink(SmtpSink(["-f", "RCPT"]))
        scratch = scratch_dir("dsn7-dumps")
        dsn7 = self.start_sink(SmtpSink(["-8"], dump_dir=os.path.join(scratch, "d")))
        m = self.start_moatd(moat_conf(dsn7.port), domain("fail.test", smtp_route(fail.port)))
        q = submit(m, ["who@fail.test"], sender="ascii@remote.test",
                   body=b"Subject: seven bit only\r\n\r\nplain ascii\r\n")
        wait_removed(m, q)
        dsn_id = m.wait_log(r"event=dsn id=%s dsn_id=([0-9a-f]+)" % q).group(1)
        wait_removed(m, dsn_id)
        self.assertEqual(log_lines(m, "bounced", dsn_id), [],
                         "the DSN itself was refused: %s" % log_lines(m, "bounced", dsn_id))
        self.assertEqual(len(log_lines(m, "delivered", dsn_id)), 1)
        self.assertEqual(len(dsn7.dumps()), 1)



class TestDelayWarning(DeliveryCase):
    """delivery_delay_warning: one 'delayed' report while moat keeps trying
    (default policy with a warning configured; NOTIFY=DELAY; not for
    NOTIFY=FAILURE or NEVER), then the failure report at expiry."""

    def test_delay_warning(self):
        slow = self.start_sink(SmtpSink(["-r", "RCPT"]))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "delivery_delay_warning = 1s\n"
                                       "delivery_queue_lifetime = 4s\n", idle_keep="300ms"),
                             domain("slow.test", smtp_route(slow.port)))
        cases = [("default", "", ["delayed", "failed"]),
                 ("delay", " NOTIFY=DELAY", ["delayed"]),
                 ("failure", " NOTIFY=FAILURE", ["failed"]),
                 ("never", " NOTIFY=NEVER", [])]
        qids = {n: submit(m, ["%s@slow.test" % n], sender="%s-s@remote.test" % n,
                          rcpt_params={"%s@slow.test" % n: p}) for n, p, _ in cases}
        for q in qids.values():
            wait_removed(m, q, timeout=15)
        time.sleep(0.5)
        for name, params, want in cases:
            with self.subTest(name):
                rcpt = "%s@slow.test" % name
                got = []
                for t in dsn.txns:
                    d = DSN(t.content)
                    r = d.rcpt(rcpt)
                    if r is not None:
                        got.append((r.get("action"), r, t))
                self.assertEqual([a for a, _, _ in got], want)
                for action, r, t in got:
                    self.assertEqual(t.mail_from, "<>")
                    if action == "delayed":
                        self.assertTrue(r.get("status", "").startswith("4."), r)
                        self.assertIn("will-retry-until", r)


if __name__ == "__main__":
    unittest.main()
