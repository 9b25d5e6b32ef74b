"""Retention on the admin API's timer: a held message expires once
quarantine_retention has passed (its state, its file, an audit entry by
"system"), and tracking records are forgotten after tracking_retention.
The retentions are seconds here, so the timer runs every second.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_retention.py
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apiutil import AdminMoatd  # noqa: E402
from moat_harness import free_port  # noqa: E402
from test_mail import DOMAINS, send, wait_for  # noqa: E402
from unbound_server import Unbound  # noqa: E402


class TestRetention(unittest.TestCase):
    def test_expiry_and_forgetting(self):
        dns = Unbound([("probe.example.", "A", "192.0.2.1")], zones=("example.",),
                      probe="probe.example.")
        m = AdminMoatd(conf="dns_resolver = %s\nquarantine_retention = 2s\n"
                       "tracking_retention = 4s\n" % dns.upstream,
                       domains=DOMAINS % free_port(), name="api-retention")
        m.start()
        try:
            a = m.admin()
            send(m.port, "old@remote.example", ["u@example.test"], "hold expiring")
            qid = wait_for(lambda: a.get("/api/v1/quarantine").json["items"], "held")[0]["id"]
            self.assertTrue(os.path.exists(os.path.join(m.data, "quarantine", qid)))
            e = wait_for(lambda: (lambda x: x if x["state"] == "expired" else None)(
                a.get("/api/v1/quarantine/" + qid).json), "expired", timeout=30)
            self.assertEqual(e["state_by"], "system")
            self.assertFalse(os.path.exists(os.path.join(m.data, "quarantine", qid)))
            self.assertNotEqual(a.post("/api/v1/quarantine/%s/release" % qid).status, 200)
            audit = a.get("/api/v1/audit?target=" + qid).json["items"]
            self.assertIn(("system", "quarantine.expire"),
                          [(x["who"], x["action"]) for x in audit])
            wait_for(lambda: a.get("/api/v1/tracking/" + qid).status == 404, "forgotten",
                     timeout=30)
            m.wait_log(r"event=purge expired=1")
        finally:
            m.stop()
            dns.stop()


if __name__ == "__main__":
    unittest.main()
