"""kill -9 at the worst moments: a 250 means the message survives; no 250
means nothing half-written is ever picked up; torn queue files are set aside."""
import os
import re
import shutil
import time
import unittest

from moat_harness import Moatd, load_then_kill, send_simple

QID = re.compile(r"queued as ([0-9a-f]{16})")


class CrashTest(unittest.TestCase):
    def test_kill_right_after_250(self):
        m = Moatd(name="crash-250", conf="delivery_paused = yes\n")
        m.start()
        c = m.connect()
        r = send_simple(c, rcpts=("after250@example.test",),
                        body=b"Subject: survive\r\n\r\nkilled right after the 250\r\n")
        m.kill9()  # before anything else: no QUIT, no flush
        self.assertEqual(r.code, 250, r)
        qid = QID.search(r.text).group(1)
        self.assertEqual(m.queue_ids(), [qid])
        # Restart with delivery on: the message is recovered and delivered once.
        m.write_conf("")
        m.start()
        msgs = m.wait_maildir("after250@example.test")
        time.sleep(0.3)
        self.assertEqual(len(m.maildir("after250@example.test")), 1)
        self.assertIn(b"killed right after the 250", msgs[0])
        self.assertIn(("id " + qid).encode(), msgs[0])
        m.wait_log(r"event=spool_recover queued=1 ")
        m.stop()

    def test_kill_mid_data(self):
        m = Moatd(name="crash-mid")
        m.start()
        c = m.connect()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("MAIL FROM:<a@remote.test>").code, 250)
        self.assertEqual(c.cmd("RCPT TO:<middata@example.test>").code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        # More than the in-memory limit, so that an incoming file exists.
        c.send(b"Subject: torn\r\n\r\n" + b"x" * 998 + b"\r\n" * 1 + (b"y" * 900 + b"\r\n") * 200)
        deadline = time.time() + 5
        while not m.incoming() and time.time() < deadline:
            time.sleep(0.01)
        self.assertTrue(m.incoming(), "expected a half-written file in incoming/")
        m.kill9()
        c.close()
        m.start()
        m.wait_log(r"event=spool_recover queued=0 incomplete_removed=1")
        self.assertEqual(m.incoming(), [])
        self.assertEqual(m.queue_ids(), [])
        time.sleep(0.3)
        self.assertEqual(m.maildir("middata@example.test"), [])
        m.stop()

    def test_torn_queue_file_set_aside(self):
        m = Moatd(name="crash-torn", conf="delivery_paused = yes\n")
        m.start()
        r = send_simple(m.connect(), rcpts=("torn@example.test",))
        self.assertEqual(r.code, 250)
        m.stop()
        qid = m.queue_ids()[0]
        path = os.path.join(m.data, "queue", qid)
        size = os.path.getsize(path)
        # Every truncation point is refused; keep the shortest and longest cut.
        with open(path, "rb") as f:
            whole = f.read()
        with open(path, "wb") as f:
            f.write(whole[: size - 3])
        # A second torn file: a body byte flipped (CRC must catch it).
        flipped = bytearray(whole)
        flipped[40] ^= 0x01
        qid2 = qid[:-1] + ("0" if qid[-1] != "0" else "1")
        with open(os.path.join(m.data, "queue", qid2), "wb") as f:
            f.write(flipped)
        m.write_conf("")
        m.start()
        m.wait_log(r"event=spool_corrupt id=%s action=set_aside" % qid)
        m.wait_log(r"event=spool_corrupt id=%s action=set_aside" % qid2)
        self.assertEqual(sorted(os.listdir(os.path.join(m.data, "corrupt"))), sorted([qid, qid2]))
        self.assertEqual(m.maildir("torn@example.test"), [])
        m.stop()

    def test_kill_under_load(self):
        """20 senders, kill -9 in the middle: every 250 is delivered after restart."""
        m = Moatd(name="crash-load")
        m.start()
        tags = load_then_kill(m, "load@example.test")
        self.assertGreater(len(tags), 50, "the load did not get going")
        m.start()
        deadline = time.time() + 60
        while time.time() < deadline and m.queue_ids():
            time.sleep(0.1)
        self.assertEqual(m.queue_ids(), [])
        got = {}
        for msg in m.maildir("load@example.test"):
            subj = re.search(rb"Subject: (load-\d+-\d+)", msg).group(1).decode()
            got[subj] = got.get(subj, 0) + 1
        lost = [t for t in tags if t not in got]
        dups = sum(n - 1 for n in got.values() if n > 1)
        print("crash under load: acked=%d delivered=%d duplicates=%d lost=%d"
              % (len(tags), len(got), dups, len(lost)))
        self.assertEqual(lost, [])
        m.stop()


if __name__ == "__main__":
    unittest.main()
