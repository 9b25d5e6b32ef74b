"""Release from quarantine end to end, into Postfix's smtp-sink: a message
the scan pipeline holds (an administrator rule, or a real clamd finding
EICAR) is released over the admin API and arrives exactly once with moat's
release header fields and the relay key; concurrent releases deliver once;
the malware rescan refuses a release (and can be skipped on request); a
restart between the quarantine and the release changes nothing; held mail
expires when quarantine_retention ends.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_release.py
"""
import hashlib
import hmac
import os
import re
import smtplib
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "delivery"))

from apiutil import AdminMoatd, Client, wait_for  # noqa: E402
from clamd_server import EICAR, Clamd  # noqa: E402
from dlvutil import SmtpSink  # noqa: E402
from moat_harness import OUT, Moatd  # noqa: E402

DOMAINS = """
[domain corp.test]
recipients = any
route = smtp:[127.0.0.1]:%d
tls = none

[rule hold]
priority = 10
if = header Subject ^hold
then = quarantine
"""


def send(port, subject, rcpts=("a@corp.test",), body="hello\r\n", sender="s@remote.example"):
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@remote.example>\r\n"
           "Date: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\n%s"
           % (sender, rcpts[0], subject, subject.replace(" ", "."), body))
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.remote.example", timeout=60)
    try:
        s.sendmail(sender, list(rcpts), msg.encode())
    finally:
        s.quit()


def fields(raw, name):
    """Values of a header field of a dumped transaction (smtp-sink's own lines come first)."""
    # smtp-sink writes LF line ends
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    out = []
    for m in re.finditer(r"^%s: ?(.*(?:\n[ \t].*)*)" % re.escape(name), head, re.M | re.I):
        out.append(re.sub(r"\n[ \t]+", " ", m.group(1)))
    return out


class ReleaseBase(unittest.TestCase):
    conf = ""

    @classmethod
    def setUpClass(cls):
        cls.clamd = Clamd()
        cls.sink = SmtpSink(dump_dir=os.path.join(OUT, "release-sink-%d" % os.getpid()))
        cls.sink.start()
        cls.m = AdminMoatd(conf="clamd = %s\ndelivery_retry_min = 1s\ndelivery_retry_max = 2s\n"
                           % cls.clamd.unix_spec + cls.conf,
                           domains=DOMAINS % cls.sink.port, name="api-release")
        cls.m.start()
        cls.token = cls.m.token(["read", "operate"])
        cls.a = Client(cls.m.admin_port, token=cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.sink.stop()
        cls.clamd.stop()

    def held(self, subject):
        """The id of the held entry with this subject, once the store has it."""
        def found():
            r = self.a.get("/api/v1/quarantine?state=held&subject=" + subject.replace(" ", "%20"))
            self.assertEqual(r.status, 200, r)
            return r.json["items"][0]["id"] if r.json["items"] else None
        return wait_for(found, "held: " + subject)

    def arrived(self, subject, count=1, settle=1.0):
        """The sink's transactions carrying this subject, once count arrived (and no more)."""
        def got():
            d = [x for x in self.sink.dumps() if ("Subject: " + subject).encode() in x[1]]
            return d if len(d) >= count else None
        d = wait_for(got, "%d x %s at the sink" % (count, subject))
        time.sleep(settle)  # a second copy would come now: there must be none
        d = [x for x in self.sink.dumps() if ("Subject: " + subject).encode() in x[1]]
        self.assertEqual(len(d), count, [x[1][:300] for x in d])
        return [({n: fields(raw, n) for n in ("X-Moat-Released", "X-Moat-Verdict",
                                              "X-Moat-Relay-Key")}, raw) for _, raw in d]


class TestRelease(ReleaseBase):
    def test_round_trip_once_with_headers(self):
        send(self.m.port, "hold round trip", rcpts=("a@corp.test", "b@corp.test"))
        qid = self.held("hold round trip")
        self.assertTrue(os.path.exists(os.path.join(self.m.data, "quarantine", qid)))
        self.assertEqual(self.arrived_none("hold round trip"), 0)
        r = self.a.post("/api/v1/quarantine/%s/release" % qid, {})
        self.assertEqual(r.status, 200, r)
        (hdrs, raw), = self.arrived("hold round trip")
        self.assertEqual(len(hdrs["X-Moat-Released"]), 1)
        self.assertTrue(hdrs["X-Moat-Released"][0].startswith(qid + "; "), hdrs)
        self.assertTrue(hdrs["X-Moat-Verdict"][0].startswith("deliver;"), hdrs)
        # the relay key of corp.test: HMAC-SHA256 of moat's secret and the domain
        with open(os.path.join(self.m.data, "relay.secret"), "rb") as f:
            secret = f.read()
        key = hmac.new(secret, b"moat-relay-key:corp.test", hashlib.sha256).hexdigest()[:32]
        self.assertEqual(hdrs["X-Moat-Relay-Key"], [key], hdrs)
        self.assertTrue(raw.replace(b"\r\n", b"\n").endswith(b"\n\nhello\n\n"), raw)
        self.assertFalse(os.path.exists(os.path.join(self.m.data, "quarantine", qid)))
        wait_for(lambda: not os.path.exists(os.path.join(self.m.data, "queue", qid)),
                 "queue file removed after delivery")
        e = self.a.get("/api/v1/quarantine/" + qid).json
        self.assertEqual(e["state"], "released")
        # tracking: both recipients delivered, under the same id
        t = wait_for(lambda: (lambda j: j if all(x["outcome"] == "delivered"
                                                 for x in j["rcpts"]) else None)(
            self.a.get("/api/v1/tracking/" + qid).json), "tracked as delivered")
        self.assertEqual(sorted(x["addr"] for x in t["rcpts"]), ["a@corp.test", "b@corp.test"])

    def arrived_none(self, subject):
        return len([x for x in self.sink.dumps() if ("Subject: " + subject).encode() in x[1]])

    def test_concurrent_releases_deliver_once(self):
        send(self.m.port, "hold race")
        qid = self.held("hold race")
        results = []
        go = threading.Event()

        def release():
            go.wait()
            results.append(self.a.post("/api/v1/quarantine/%s/release" % qid, {}))
        threads = [threading.Thread(target=release) for _ in range(8)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join()
        # idempotent: every answer is 200, exactly one of them did it
        self.assertEqual([r.status for r in results], [200] * 8, results)
        self.assertEqual(sorted(r.json["status"] for r in results), ["already"] * 7 + ["ok"])
        for r in results:
            if r.json["status"] == "already":
                self.assertEqual(r.json["message"], "already released")
        self.arrived("hold race", settle=2.0)

    def test_release_to_one_recipient(self):
        send(self.m.port, "hold chosen", rcpts=("a@corp.test", "b@corp.test"))
        qid = self.held("hold chosen")
        r = self.a.post("/api/v1/quarantine/%s/release" % qid, {"rcpts": ["B@corp.test"]})
        self.assertEqual(r.status, 200, r)
        (hdrs, raw), = self.arrived("hold chosen")
        again = self.a.post("/api/v1/quarantine/%s/release" % qid, {})
        self.assertEqual((again.status, again.json["status"]), (200, "already"), again)
        # to someone else now: the message has left; not a silent success
        other = self.a.post("/api/v1/quarantine/%s/release" % qid, {"rcpts": ["a@corp.test"]})
        self.assertEqual(other.status, 409, other)
        self.assertIn("has left the quarantine", other.json["error"])

    def test_malware_rescan(self):
        # held by clamd this time, not by a rule
        body = "see attached\r\n" + EICAR.decode() + "\r\n"
        send(self.m.port, "virus inside", body=body)
        qid = self.held("virus inside")
        e = self.a.get("/api/v1/quarantine/" + qid).json
        self.assertIn("CLAM_VIRUS", e["symbols"])
        r = self.a.post("/api/v1/quarantine/%s/release" % qid, {})
        self.assertEqual(r.status, 409, r)
        self.assertIn("malware found", r.json["error"])
        self.assertIn("Eicar-Test-Signature", r.json["error"])
        self.assertEqual(self.a.get("/api/v1/quarantine/" + qid).json["state"], "held")
        time.sleep(1)
        self.assertEqual(self.arrived_none("virus inside"), 0)
        # the administrator insists: no rescan, stamped as such
        r = self.a.post("/api/v1/quarantine/%s/release" % qid, {"rescan": False})
        self.assertEqual(r.status, 200, r)
        (hdrs, raw), = self.arrived("virus inside")
        self.assertIn("rescan=no", hdrs["X-Moat-Released"][0])

    def test_clamd_down_is_503_and_nothing_changes(self):
        send(self.m.port, "hold clamd down")
        qid = self.held("hold clamd down")
        self.clamd.stop()
        try:
            r = self.a.post("/api/v1/quarantine/%s/release" % qid, {})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(self.a.get("/api/v1/quarantine/" + qid).json["state"], "held")
        finally:
            type(self).clamd = Clamd()
            with open(self.m.conf_path) as f:
                text = f.read()
            text = re.sub(r"clamd = \S+", "clamd = " + self.clamd.unix_spec, text)
            with open(self.m.conf_path, "w") as f:
                f.write(text)
            self.m.signal(1)  # SIGHUP: the new clamd
            self.m.wait_log("event=reload status=ok", timeout=10)
            time.sleep(0.5)
        r = self.a.post("/api/v1/quarantine/%s/release" % qid, {})
        self.assertEqual(r.status, 200, r)
        self.arrived("hold clamd down")


class TestRestart(unittest.TestCase):
    def test_restart_between_quarantine_and_release(self):
        sink = SmtpSink(dump_dir=os.path.join(OUT, "release-restart-sink-%d" % os.getpid()))
        sink.start()
        m = AdminMoatd(domains=DOMAINS % sink.port, name="api-restart")
        m.start()
        try:
            token = m.token(["operate", "read"])
            send(m.port, "hold across restart")
            a = Client(m.admin_port, token=token)
            qid = wait_for(lambda: (a.get("/api/v1/quarantine?state=held").json["items"]
                                    or [{}])[0].get("id"), "held")
            m.stop()
            Moatd.start(m)  # the same data_dir; sessions end, tokens stay
            r = a.post("/api/v1/quarantine/%s/release" % qid, {})
            self.assertEqual(r.status, 200, r)
            got = wait_for(lambda: [x for x in sink.dumps()
                                    if b"Subject: hold across restart" in x[1]], "arrived")
            time.sleep(1.5)
            got = [x for x in sink.dumps() if b"Subject: hold across restart" in x[1]]
            self.assertEqual(len(got), 1)
            self.assertTrue(fields(got[0][1], "X-Moat-Released")[0].startswith(qid))
            # and again after another restart: nothing is delivered twice
            m.stop()
            Moatd.start(m)
            time.sleep(1.5)
            self.assertEqual(len([x for x in sink.dumps()
                                  if b"Subject: hold across restart" in x[1]]), 1)
            self.assertIn("event=quarantine_reconcile files=0", m.log())
        finally:
            m.stop()
            sink.stop()


class TestHeldLongerThanTheQueueLifetime(unittest.TestCase):
    def test_release_after_the_queue_lifetime_is_delivered(self):
        # held longer than delivery_queue_lifetime: the queue's clock starts at the release
        sink = SmtpSink(dump_dir=os.path.join(OUT, "release-old-sink-%d" % os.getpid()))
        sink.start()
        m = AdminMoatd(conf="delivery_queue_lifetime = 2s\n", domains=DOMAINS % sink.port,
                       name="api-old")
        m.start()
        try:
            a = Client(m.admin_port, token=m.token(["read", "operate"]))
            send(m.port, "hold old one")
            qid = wait_for(lambda: (a.get("/api/v1/quarantine?state=held").json["items"]
                                    or [{}])[0].get("id"), "held")
            time.sleep(3)
            r = a.post("/api/v1/quarantine/%s/release" % qid, {})
            self.assertEqual(r.status, 200, r)
            wait_for(lambda: [x for x in sink.dumps() if b"Subject: hold old one" in x[1]],
                     "delivered, not expired")
            self.assertNotIn("action=failed", m.log())
        finally:
            m.stop()
            sink.stop()


class TestRetention(unittest.TestCase):
    def test_held_mail_expires(self):
        sink = SmtpSink(dump_dir=os.path.join(OUT, "release-expire-sink-%d" % os.getpid()))
        sink.start()
        m = AdminMoatd(conf="quarantine_retention = 2s\n", domains=DOMAINS % sink.port,
                       name="api-expire")
        m.start()
        try:
            a = Client(m.admin_port, token=m.token(["read"]))
            send(m.port, "hold then expire")
            qid = wait_for(lambda: (a.get("/api/v1/quarantine?state=held").json["items"]
                                    or [{}])[0].get("id"), "held")
            # the purge runs in the background: first 10 s after the start, then every minute
            wait_for(lambda: a.get("/api/v1/quarantine/" + qid).json["state"] == "expired",
                     "expired", timeout=40)
            self.assertFalse(os.path.exists(os.path.join(m.data, "quarantine", qid)))
            self.assertRegex(m.log(), r"event=quarantine_purge expired=1")
            self.assertEqual(len(sink.dumps()), 0)
        finally:
            m.stop()
            sink.stop()


if __name__ == "__main__":
    unittest.main()
