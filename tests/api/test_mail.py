"""The admin API over real mail: messages sent over SMTP to moatd, held by
a rule, then found, downloaded, previewed, released (to all or chosen
recipients, again, with the sender allowed), deleted (with the sender
blocked) and batch-released through the API; tracking timelines; the
delivery queue's actions through the delivery loop; stats and /metrics.
A real unbound answers DNS (NXDOMAIN for the senders' domains).

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_mail.py
"""
import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd, wait_for  # noqa: E402
from moat_harness import free_port  # noqa: E402
from unbound_server import Unbound  # noqa: E402

DOMAINS = """
[domain example.test]
recipients = any
route = maildir

[domain relay.test]
recipients = any
route = smtp:[127.0.0.1]:%d
tls = none

[rule hold]
priority = 10
if = header Subject ^hold
then = quarantine
"""


def send(port, sender, rcpts, subject, body="hello\r\n"):
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@remote.example>\r\n"
           "Date: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\n%s"
           % (sender, rcpts[0], subject, subject.replace(" ", "."), body))
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.remote.example", timeout=60)
    try:
        s.sendmail(sender, rcpts, msg.encode())
    finally:
        s.quit()


class TestMail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = Unbound([("probe.example.", "A", "192.0.2.1")], zones=("example.",),
                          probe="probe.example.")
        cls.m = AdminMoatd(conf="dns_resolver = %s\nscan_timeout = 60s\n"
                           "delivery_retry_min = 1s\ndelivery_retry_max = 2s\n"
                           % cls.dns.upstream,
                           domains=DOMAINS % free_port(), name="api-mail")
        cls.m.start()
        cls.a = cls.m.admin()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()
        cls.dns.stop()

    def held(self, n, **filters):
        """Wait until the quarantine search with filters finds n entries; the items."""
        q = "&".join("%s=%s" % kv for kv in filters.items())

        def found():
            r = self.a.get("/api/v1/quarantine?" + q)
            self.assertEqual(r.status, 200, r)
            return r.json["items"] if len(r.json["items"]) >= n else None
        return wait_for(found, "%d held with %s" % (n, q))

    def test_quarantine_round_trip(self):
        a = self.a
        send(self.m.port, "qa@remote.example", ["u1@example.test"], "hold qa")
        send(self.m.port, "qb@remote.example", ["u1@example.test"], "hold qb")
        send(self.m.port, "qc@remote.example", ["u1@example.test", "v1@example.test"],
             "hold qc")
        items = self.held(3, subject="hold%20q")
        ids = {i["sender"]: i["id"] for i in items}
        qa, qb, qc = ids["qa@remote.example"], ids["qb@remote.example"], ids["qc@remote.example"]

        # filters
        for q, want in [("sender=qa@remote.example", {qa}), ("rcpt=v1@example.test", {qc}),
                        ("id=" + qb, {qb}), ("subject=hold%20qc", {qc}),
                        ("domain=example.test&subject=hold%20q", {qa, qb, qc}),
                        ("verdict=quarantine&subject=hold%20q", {qa, qb, qc}),
                        ("state=held&sender=@remote.example&subject=hold%20q", {qa, qb, qc}),
                        ("state=released&sender=qa@remote.example", set())]:
            with self.subTest(filter=q):
                r = a.get("/api/v1/quarantine?" + q)
                self.assertEqual(r.status, 200, r)
                self.assertEqual({i["id"] for i in r.json["items"]}, want)
        # paging: one at a time, newest first, nothing repeated or skipped
        seen, after = [], None
        for _ in range(3):
            r = a.get("/api/v1/quarantine?subject=hold%20q&limit=1" +
                      ("&after=" + after if after else ""))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(len(r.json["items"]), 1)
            seen.append(r.json["items"][0]["id"])
            after = r.json["next"]
        self.assertEqual(sorted(seen), sorted([qa, qb, qc]))
        self.assertEqual([qc, qb, qa], seen)
        self.assertIsNone(after)

        # one entry, the message, its preview
        r = a.get("/api/v1/quarantine/" + qc)
        self.assertEqual(r.status, 200, r)
        e = r.json
        self.assertEqual(e["state"], "held")
        self.assertEqual(e["domain"], "example.test")
        self.assertEqual(sorted(e["rcpts"]), ["u1@example.test", "v1@example.test"])
        self.assertEqual(e["subject"], "hold qc")
        r = a.get("/api/v1/quarantine/%s/download" % qc)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "message/rfc822")
        self.assertIn('attachment; filename="%s.eml"' % qc, r.header("Content-Disposition"))
        self.assertIn(b"Subject: hold qc", r.data)
        r = a.get("/api/v1/quarantine/%s/preview" % qc)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["subject"], "hold qc")

        # release to chosen recipients; a recipient the message lacks is a 400
        r = a.post("/api/v1/quarantine/%s/release" % qc, {"rcpts": ["nobody@example.test"]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["field"], "rcpts")
        r = a.post("/api/v1/quarantine/%s/release" % qc, {"rcpts": ["v1@example.test"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ok")
        got = self.m.wait_maildir("v1@example.test")
        self.assertIn(b"hold qc", got[0])
        self.assertEqual(self.m.maildir("u1@example.test"), [])

        # release and allow the sender; again is a success that did nothing
        r = a.post("/api/v1/quarantine/%s/release" % qa, {"allow_sender": True})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["allowed_sender"])
        self.m.wait_maildir("u1@example.test")
        r = a.post("/api/v1/quarantine/%s/release" % qa)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "already")
        lists = a.get("/api/v1/lists?scope=example.test&kind=allow").json["items"]
        self.assertIn("qa@remote.example", [x["pattern"] for x in lists])
        self.m.wait_log(r"event=policy_rebuild status=ok")
        self.assertEqual(a.get("/api/v1/quarantine/" + qa).json["state"], "released")

        # delete and block the sender; a deleted message is not released
        r = a.post("/api/v1/quarantine/%s/delete" % qb, {"block_sender": True})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["blocked_sender"])
        r = a.post("/api/v1/quarantine/%s/release" % qb)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["status"], "conflict")
        self.assertNotEqual(a.get("/api/v1/quarantine/%s/download" % qb).status, 200)
        lists = a.get("/api/v1/lists?kind=block").json["items"]
        self.assertIn("qb@remote.example", [x["pattern"] for x in lists])

        # every state change is in the audit log, with who and from where
        log = a.get("/api/v1/audit?limit=500").json["items"]
        acts = {(e["action"], e["target"]) for e in log}
        for want in [("quarantine.release", qc), ("quarantine.release", qa),
                     ("quarantine.delete", qb)]:
            self.assertIn(want, acts)
        rel = [e for e in log if e["action"] == "quarantine.release" and e["target"] == qa][0]
        self.assertEqual(rel["who"], "user:admin")
        self.assertEqual(rel["addr"], "127.0.0.1")
        self.assertTrue([e for e in log if e["action"] == "list.add"
                         and "qa@remote.example" in e["target"]])

    def test_batch(self):
        a = self.a
        send(self.m.port, "ba@remote.example", ["u2@example.test"], "hold batch a")
        send(self.m.port, "bb@remote.example", ["u2@example.test"], "hold batch b")
        items = self.held(2, subject="hold%20batch")
        ids = [i["id"] for i in items]
        r = a.post("/api/v1/quarantine/batch",
                   {"action": "release", "ids": ids + ["0123456789abcdef", "bad id"]})
        self.assertEqual(r.status, 200, r)
        codes = {x["id"]: x["code"] for x in r.json["results"]}
        self.assertEqual(codes, {ids[0]: 200, ids[1]: 200, "0123456789abcdef": 404,
                                 "bad id": 400})
        self.m.wait_maildir("u2@example.test", count=2)
        r = a.post("/api/v1/quarantine/batch", {"action": "delete", "ids": ids})
        self.assertEqual([x["code"] for x in r.json["results"]], [409, 409])
        for body, field in [({"ids": ids}, "action"), ({"action": "x", "ids": ids}, "action"),
                            ({"action": "delete"}, "ids"), ({"action": "delete", "ids": []}, "ids"),
                            ({"action": "delete", "ids": ["a"] * 1001}, "ids"),
                            ({"action": "delete", "ids": [1]}, "ids")]:
            with self.subTest(body=str(body)[:60]):
                r = a.post("/api/v1/quarantine/batch", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json["field"], field)

    def test_file_gone_is_410(self):
        a = self.a
        send(self.m.port, "gone@remote.example", ["u3@example.test"], "hold gone")
        qid = self.held(1, sender="gone@remote.example")[0]["id"]
        os.unlink(os.path.join(self.m.data, "quarantine", qid))
        for path, body in [("/api/v1/quarantine/%s/download" % qid, None),
                           ("/api/v1/quarantine/%s/preview" % qid, None),
                           ("/api/v1/quarantine/%s/release" % qid, {})]:
            with self.subTest(path=path):
                r = a.req("GET" if body is None else "POST", path, body=body)
                self.assertEqual(r.status, 410, r)
                self.assertIn("error", r.json)
        # what cannot be released can still be deleted
        r = a.post("/api/v1/quarantine/%s/delete" % qid)
        self.assertIn(r.status, (200, 410), r)

    def test_quarantine_errors(self):
        a = self.a
        cases = [
            ("GET", "/api/v1/quarantine/0123456789abcdef", None, 404, "id"),
            ("GET", "/api/v1/quarantine/xyz", None, 400, "id"),
            ("GET", "/api/v1/quarantine/0123456789abcdef/download", None, 404, "id"),
            ("GET", "/api/v1/quarantine/0123456789abcdef/preview", None, 404, "id"),
            ("POST", "/api/v1/quarantine/0123456789abcdef/release", {}, 404, "id"),
            ("POST", "/api/v1/quarantine/0123456789abcdef/delete", {}, 404, "id"),
            ("POST", "/api/v1/quarantine/nothex/release", {}, 400, "id"),
            ("POST", "/api/v1/quarantine/0123456789abcdef/release", {"rescan": "yes"}, 400,
             "rescan"),
            ("POST", "/api/v1/quarantine/0123456789abcdef/release", {"rcpts": "a@b.test"},
             400, "rcpts"),
            ("POST", "/api/v1/quarantine/0123456789abcdef/delete", {"block_sender": 1}, 400,
             "block_sender"),
            ("GET", "/api/v1/quarantine?limit=0", None, 400, "limit"),
            ("GET", "/api/v1/quarantine?limit=501", None, 400, "limit"),
            ("GET", "/api/v1/quarantine?since=yesterday", None, 400, "since"),
            ("GET", "/api/v1/quarantine?verdict=maybe", None, 400, "verdict"),
            ("GET", "/api/v1/quarantine?state=lost", None, 400, "state"),
            ("GET", "/api/v1/quarantine?subject=ab", None, 400, "subject"),
            ("GET", "/api/v1/quarantine?after=garbage", None, 400, "after"),
            ("GET", "/api/v1/quarantine?colour=red", None, 400, "colour"),
            ("GET", "/api/v1/tracking?state=held", None, 400, "state"),
            ("GET", "/api/v1/tracking/0123456789abcdef", None, 404, "id"),
            ("GET", "/api/v1/tracking/zz", None, 400, "id"),
        ]
        for method, path, body, want, field in cases:
            with self.subTest(method=method, path=path):
                r = a.req(method, path, body=body)
                self.assertEqual(r.status, want, r)
                self.assertEqual(r.json.get("field"), field)
                self.assertIn("error", r.json)

    def test_tracking(self):
        a = self.a
        send(self.m.port, "tr@remote.example", ["t1@example.test"], "tracked one")
        self.m.wait_maildir("t1@example.test")

        def delivered():
            r = a.get("/api/v1/tracking?sender=tr@remote.example")
            self.assertEqual(r.status, 200, r)
            it = r.json["items"]
            return it if it and it[0]["rcpts"][0]["outcome"] == "delivered" else None
        it = wait_for(delivered, "tracked and delivered")[0]
        self.assertEqual(it["subject"], "tracked one")
        self.assertEqual(it["verdict"], "deliver")
        self.assertEqual(it["client_ip"], "127.0.0.1")
        r = a.get("/api/v1/tracking/" + it["id"])
        self.assertEqual(r.status, 200, r)
        kinds = [e["kind"] for e in r.json["events"]]
        self.assertEqual(kinds[:2], ["received", "verdict"])
        self.assertIn("delivery", kinds)
        self.assertFalse(r.json["truncated"])
        r = a.get("/api/v1/tracking?rcpt=t1@example.test&verdict=deliver")
        self.assertEqual([i["id"] for i in r.json["items"]], [it["id"]])

    def test_queue(self):
        a = self.a
        send(self.m.port, "qq@remote.example", ["r@relay.test"], "queued")

        def queued():
            r = a.get("/api/v1/queue")
            self.assertEqual(r.status, 200, r)
            return [x for x in r.json["messages"] if x["from"] == "qq@remote.example"]
        qid = wait_for(queued, "in the queue")[0]["id"]
        r = a.get("/api/v1/queue/" + qid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["recipients"][0]["to"], "r@relay.test")
        self.assertEqual(a.post("/api/v1/queue/%s/hold" % qid).status, 200)
        self.assertTrue(a.get("/api/v1/queue/" + qid).json["held"])
        r = a.post("/api/v1/queue/%s/retry" % qid)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(a.post("/api/v1/queue/%s/release" % qid).status, 200)
        self.assertEqual(a.post("/api/v1/queue/%s/retry" % qid).status, 200)
        self.assertEqual(a.post("/api/v1/queue/%s/hold" % qid).status, 200)
        self.assertEqual(a.post("/api/v1/queue/%s/delete" % qid).status, 200)
        r = a.get("/api/v1/queue/" + qid)
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json["field"], "id")
        self.assertEqual(a.post("/api/v1/queue/%s/delete" % qid).status, 404)
        self.assertEqual(a.post("/api/v1/queue/nothex/retry").status, 400)
        self.assertEqual(a.post("/api/v1/queue/%s/explode" % qid).status, 404)
        r = a.get("/api/v1/queue?limit=0")
        self.assertEqual(r.json["field"], "limit")
        acts = {(e["action"], e["target"]) for e in a.get("/api/v1/audit").json["items"]}
        for act in ("hold", "release", "retry", "delete"):
            self.assertIn(("queue." + act, qid), acts)

    def test_stats_and_metrics(self):
        a = self.a
        send(self.m.port, "st@remote.example", ["s1@example.test"], "stats one")
        self.m.wait_maildir("s1@example.test")

        def counted():
            r = a.get("/api/v1/stats")
            self.assertEqual(r.status, 200, r)
            return r.json if sum(h["deliver"] for h in r.json["hourly"]) >= 1 else None
        s = wait_for(counted, "an hour with a delivered message")
        self.assertEqual(len(s["hourly"]), 24)
        self.assertGreaterEqual(s["counters"]["smtp_messages_accepted"], 1)
        self.assertIn("messages", s["queue"])
        hours = [h["hour_ms"] for h in s["hourly"]]
        self.assertEqual(hours, sorted(hours))
        r = a.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        text = r.data.decode()
        for name in ("moat_smtp_messages_accepted_total", "moat_scan_quarantined_total",
                     "moat_queue_messages", "moat_store_dropped_total", "moat_up"):
            self.assertRegex(text, r"(?m)^%s \d+$" % name)
            self.assertIn("# TYPE %s " % name, text)


if __name__ == "__main__":
    unittest.main()
