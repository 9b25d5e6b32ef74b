"""moatctl against a running moatd: every queue command, stats, and the
errors a script relies on (exit codes 1 refused, 2 usage, 3 unreachable)."""
import json
import os
import socket
import subprocess
import unittest

from moat_harness import MOATD, Moatd, free_port, send_simple

MOATCTL = os.path.join(os.path.dirname(MOATD), "moatctl")


class MoatctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dead = free_port()  # nothing listens there: messages stay deferred
        cls.m = Moatd(name="moatctl", conf="delivery_retry_min = 1h\ndelivery_retry_max = 1h\n",
                      domains="[domain relay.test]\nrecipients = any\n"
                              "route = smtp:[127.0.0.1]:%d\ntls = none\n" % cls.dead)
        cls.m.start()
        cls.ids = []
        for i in range(2):
            r = send_simple(cls.m.connect(), rcpts=("r%d@relay.test" % i, "x%d@relay.test" % i))
            cls.ids.append(r.text.split()[-1])
        cls.m.wait_log(r"event=deferred id=%s" % cls.ids[1])

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def ctl(self, *args, want=0):
        r = subprocess.run([MOATCTL, "-c", self.m.conf_path] + list(args), capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, want, "moatctl %s: rc %d, want %d\n%s%s"
                         % (" ".join(args), r.returncode, want, r.stdout, r.stderr))
        return r

    def jctl(self, *args, want=0):
        return json.loads(self.ctl("--json", *args, want=want).stdout)

    def test_list_and_show(self):
        out = self.jctl("queue", "list")
        self.assertTrue(out["ok"])
        self.assertEqual(sorted(m["id"] for m in out["messages"]), sorted(self.ids))
        text = self.ctl("queue", "list").stdout
        self.assertIn("2 message(s) in the queue", text)
        show = self.jctl("queue", "show", self.ids[0])["message"]
        self.assertEqual([r["to"] for r in show["recipients"]], ["r0@relay.test", "x0@relay.test"])
        for r in show["recipients"]:
            self.assertEqual(r["state"], "pending")
            self.assertIn("4.4.1", r["last_reply"])
        self.assertEqual(show["from"], "sender@remote.test")
        self.assertGreater(show["next_attempt_in_s"], 60)

    def test_hold_survives_restart_then_release(self):
        mid = self.ids[1]
        self.assertEqual(self.ctl("queue", "hold", mid).stdout.strip(), "ok")
        self.assertTrue(self.jctl("queue", "show", mid)["message"]["held"])
        # a held message is not retried
        self.assertIn("is held", self.ctl("queue", "retry", mid, want=1).stderr)
        self.m.stop()
        self.m.start()
        self.assertTrue(self.jctl("queue", "show", mid)["message"]["held"], "hold was not kept")
        self.ctl("queue", "release", mid)
        self.assertFalse(self.jctl("queue", "show", mid)["message"]["held"])
        self.m.wait_log(r"event=deferred id=%s.*\n(.*\n)*.*event=deferred id=%s" % (mid, mid))

    def test_retry_all(self):
        out = self.jctl("queue", "retry", "all")
        self.assertGreaterEqual(out["retried"], 1)

    def test_delete(self):
        r = send_simple(self.m.connect(), rcpts=("gone@relay.test",))
        mid = r.text.split()[-1]
        self.m.wait_log(r"event=deferred id=%s" % mid)
        self.assertIn(mid, self.m.queue_ids())
        self.ctl("queue", "delete", mid)
        self.assertNotIn(mid, self.m.queue_ids())
        self.assertIn("no message", self.ctl("queue", "show", mid, want=1).stderr)

    def test_stats(self):
        before = self.jctl("stats")["counters"]["smtp_messages_accepted"]
        send_simple(self.m.connect(), rcpts=("stats@relay.test",))
        s = self.jctl("stats")
        self.assertEqual(s["counters"]["smtp_messages_accepted"], before + 1)
        self.assertGreaterEqual(s["counters"]["delivery_deferred"], 2)
        self.assertGreaterEqual(s["queue"]["messages"], 2)
        self.assertIn("recipients_pending", self.ctl("stats").stdout)

    def test_errors(self):
        rows = [
            (("queue", "show", "nothex"), 1, "not a queue id"),
            (("queue", "show", "0123456789abcdef"), 1, "no message"),
            (("queue", "frobnicate"), 2, "unknown command"),
            (("queue", "hold"), 2, "usage: moatctl queue hold ID"),
            (("stats", "extra"), 2, "takes no argument"),
        ]
        for args, rc, text in rows:
            with self.subTest(args):
                r = self.ctl(*args, want=rc)
                self.assertIn(text, r.stderr)
        r = subprocess.run([MOATCTL, "-s", "/nonexistent/control.sock", "stats"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot reach moatd", r.stderr)
        self.assertIn("usage: moatctl queue retry ID|all", self.ctl("queue", "retry", "--help").stdout)

    def test_raw_protocol_errors(self):
        path = os.path.join(self.m.data, "control.sock")
        for line, code in ((b"not json\n", 400), (b"[1,2]\n", 400), (b"{\"x\":1}\n", 400),
                           (b"{\"cmd\":\"nope\"}\n", 404), (b"{\"cmd\":\"queue.show\"}\n", 400)):
            with self.subTest(line):
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                s.sendall(line)
                resp = json.loads(s.makefile().readline())
                s.close()
                self.assertFalse(resp["ok"])
                self.assertEqual(resp["code"], code, resp)
                self.assertTrue(resp["error"])


if __name__ == "__main__":
    unittest.main()
