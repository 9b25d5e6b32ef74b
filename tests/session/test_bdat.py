"""CHUNKING / BDAT (RFC 3030): chunks are raw octets counted by the client;
refusals keep the session in sync, and nothing is queued from a broken or
abandoned transfer."""
import time
import unittest

from sessutil import DaemonCase, describe, queued_id, read_queue_file, strip_delivery_headers


class TestBdatDelivery(DaemonCase):
    """Delivery on: byte-exact content in the Maildir."""

    def test_chunks_delivered_byte_exact(self):
        chunks = [b"Subject: bdat\r\nX-Chunk: one\r\n\r\nline one\r\n",
                  b"line two\r\n.\r\n..two dots, not stuffed\r\n",
                  "8-bit: gr\u00fc\u00dfe\r\n".encode(),
                  b"last line\r\n"]
        c = self.connect()
        self.start_tx(c, rcpts=("bdat@example.test",))
        for i, ch in enumerate(chunks[:-1]):
            c.send(b"BDAT %d\r\n" % len(ch) + ch)
            r = c.reply()
            self.assertReply(r, 250, "2.0.0", "chunk %d" % (i + 1))
        c.send(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "LAST chunk")
        qid = queued_id(r)
        self.assertIsNotNone(qid, "no queue id in %s" % describe(r))
        msg = self.moatd.wait_maildir("bdat@example.test")[0]
        self.assertIn(b"id " + qid.encode(), msg)
        self.assertEqual(strip_delivery_headers(msg), b"".join(chunks).replace(b"\r\n", b"\n"))

    def test_crlf_split_across_chunks(self):
        # A CR at the end of one chunk and the LF at the start of the next are one CRLF.
        c = self.connect()
        self.start_tx(c, rcpts=("split@example.test",))
        one, two = b"Subject: split\r\n\r\nab\r", b"\ncd\r\n"
        c.send(b"BDAT %d\r\n" % len(one) + one)
        self.assertReply(c.reply(), 250, "2.0.0", "chunk ending in CR")
        c.send(b"BDAT %d LAST\r\n" % len(two) + two)
        self.assertReply(c.reply(), 250, "2.0.0", "LAST chunk starting with LF")
        msg = self.moatd.wait_maildir("split@example.test")[0]
        self.assertEqual(strip_delivery_headers(msg), b"Subject: split\n\nab\ncd\n")

    def test_pipelined_bdat_transaction(self):
        c = self.connect()
        self.ehlo(c)
        data = b"Subject: piped\r\n\r\npiped body\r\n"
        c.send(b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<piped@example.test>\r\n"
               b"BDAT 10\r\n" + data[:10] + b"BDAT %d LAST\r\n" % (len(data) - 10) + data[10:]
               + b"NOOP\r\n")
        for i, (code, e) in enumerate([(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0"),
                                       (250, "2.0.0"), (250, "2.0.0")]):
            self.assertReply(c.reply(), code, e, "pipelined reply %d" % (i + 1))
        msg = self.moatd.wait_maildir("piped@example.test")[0]
        self.assertEqual(strip_delivery_headers(msg), data.replace(b"\r\n", b"\n"))

    def test_bdat_zero_last(self):
        c = self.connect()
        self.start_tx(c, rcpts=("zero@example.test",))
        c.send(b"BDAT 12\r\nSubject: z\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk")
        c.send(b"BDAT 0 LAST\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "BDAT 0 LAST ending the message")
        msg = self.moatd.wait_maildir("zero@example.test")[0]
        self.assertEqual(strip_delivery_headers(msg), b"Subject: z\n")


class TestBdat(DaemonCase):
    """Delivery paused: whatever is wrongly accepted stays in queue/."""

    CONF = "delivery_paused = yes\nsmtp_max_message_size = 64k\n"

    def test_bdat_zero_last_alone(self):
        c = self.connect()
        self.start_tx(c)
        c.send(b"BDAT 0 LAST\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "BDAT 0 LAST right after RCPT")
        qid = queued_id(r)
        self.assertIn(qid, self.moatd.queue_ids())
        body, _ = read_queue_file("%s/queue/%s" % (self.moatd.data, qid))
        self.assertTrue(body.startswith(b"Received: "), "queued body %r" % body[:80])
        self.assertTrue(body.endswith(b"\r\n"), "queued body %r" % body[-80:])
        self.assertEqual(body.count(b"\r\n\t"), body.count(b"\r\n") - 1,
                         "queued body holds more than moat's Received header: %r" % body)

    def test_bdat_out_of_sequence_consumes_chunk(self):
        # The chunk content would close the session if it were read as commands.
        payload = b"HELP\r\nQUIT\r\n"
        rows = [
            ("before EHLO", [], 503, "5.5.1"),
            ("before MAIL", ["EHLO client.test"], 503, "5.5.1"),
            ("after HELO", ["HELO client.test", "MAIL FROM:<a@remote.test>",
                            "RCPT TO:<user@example.test>"], 503, "5.5.1"),
        ]
        for name, setup, code, e in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                for s in setup:
                    r = c.cmd(s)
                    self.assertLess(r.code, 400, "%s: %r got %s" % (name, s, describe(r)))
                c.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
                self.assertReply(c.reply(), code, e, "BDAT " + name)
                self.assert_in_sync(c, "BDAT " + name)
                self.assertOpen(c, "BDAT " + name)
                self.assertNothingQueued(before, name)
                c.close()

    def test_bdat_without_valid_recipient(self):
        before = self.snapshot()
        c = self.connect()
        self.ehlo(c)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250, "2.1.0", "MAIL")
        self.assertReply(c.cmd("RCPT TO:<user@evil.test>"), 550, "5.7.1", "RCPT")
        c.send(b"BDAT 12 LAST\r\nHELP\r\nQUIT\r\n")
        self.assertReply(c.reply(), 554, "5.5.1", "BDAT with no valid recipient")
        self.assert_in_sync(c, "after BDAT")
        self.assertOpen(c, "after BDAT")
        self.assertNothingQueued(before)

    def test_bdat_size_syntax(self):
        rows = [
            ("letters", b"BDAT abc\r\n"),
            ("negative", b"BDAT -1\r\n"),
            ("overflow", b"BDAT 99999999999999999999999\r\n"),
            ("no size", b"BDAT\r\n"),
            ("bad keyword", b"BDAT 5 NOTLAST\r\nhello"),
            ("plus sign", b"BDAT +5\r\nhello"),
        ]
        for name, line in rows:
            with self.subTest(name):
                before = self.snapshot()
                c = self.connect()
                self.start_tx(c)
                c.send(line)
                self.assertReply(c.reply(), 501, "5.5.4", "%s: %r" % (name, line))
                self.assertClosed(c, name)
                self.assertNothingQueued(before, name)

    def test_bdat_over_max_size(self):
        # 64k max: a 100000-octet chunk is read and thrown away, then 552.
        for last in (True, False):
            with self.subTest(last=last):
                before = self.snapshot()
                c = self.connect()
                self.start_tx(c)
                data = (b"X" * 78 + b"\r\n") * 1250
                c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
                self.assertReply(c.reply(), 552, "5.3.4", "chunk over the maximum size")
                self.assert_in_sync(c, "after the oversized chunk")
                c.send(b"BDAT 3 LAST\r\nabc")
                self.assertReply(c.reply(), 503, "5.5.1", "BDAT after the refused message")
                self.assertNothingQueued(before)
                c.close()

    def test_bdat_over_max_size_in_second_chunk(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        c.send(b"BDAT 40000\r\n" + (b"Y" * 38 + b"\r\n") * 1000)
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk, under the maximum")
        c.send(b"BDAT 40000 LAST\r\n" + (b"Z" * 38 + b"\r\n") * 1000)
        self.assertReply(c.reply(), 552, "5.3.4", "second chunk over the maximum")
        self.assert_in_sync(c)
        self.assertNothingQueued(before)

    def test_data_during_bdat(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        c.send(b"BDAT 5\r\nhello")
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA during BDAT")
        self.assertReply(c.cmd("MAIL FROM:<x@remote.test>"), 503, "5.5.1", "MAIL during BDAT")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET ends the BDAT transfer")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA after RSET")
        self.assertNothingQueued(before)

    def test_bdat_during_data_transaction(self):
        # BDAT after DATA was accepted is content, not a command.
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: x\r\n\r\nBDAT 3 LAST\r\nabc\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 250, "2.0.0", "end of data")
        self.assertIsNone(c.reply_or_none(0.3), "a second reply after the message")
        body, _ = read_queue_file("%s/queue/%s" % (self.moatd.data, queued_id(r)))
        self.assertIn(b"BDAT 3 LAST\r\nabc\r\n", body)


class TestBdatDisconnect(DaemonCase):
    """A client that goes away mid-chunk leaves nothing in incoming/ or queue/."""

    CONF = "delivery_paused = yes\n"

    def _disconnect_mid_chunk(self, first, total, spilled):
        before = self.snapshot()
        n = self.moatd.log().count("event=disconnect")
        c = self.connect()
        self.start_tx(c)
        c.send(b"BDAT %d LAST\r\n" % total + first)
        if spilled:
            # Past SPOOL_MEM_MAX (64 KiB) the body is in incoming/ while it arrives.
            deadline = time.time() + 5
            while not self.moatd.incoming() and time.time() < deadline:
                time.sleep(0.02)
            self.assertTrue(self.moatd.incoming(), "the body never spilled to incoming/")
        else:
            time.sleep(0.2)
        c.close()
        self.wait_disconnects(n + 1)
        self.assertNothingQueued(before, "after a disconnect mid-chunk")

    def test_disconnect_mid_chunk_small(self):
        self._disconnect_mid_chunk(b"Subject: x\r\n\r\n" + b"A" * 998 + b"\r\n", 60000, False)

    def test_disconnect_mid_chunk_spilled(self):
        self._disconnect_mid_chunk(b"Subject: x\r\n\r\n" + (b"B" * 98 + b"\r\n") * 2000, 300000,
                                   True)

    def test_disconnect_mid_data_spilled(self):
        before = self.snapshot()
        n = self.moatd.log().count("event=disconnect")
        c = self.connect()
        self.start_tx(c)
        self.assertReply(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: x\r\n\r\n" + (b"F" * 98 + b"\r\n") * 2000)
        deadline = time.time() + 5
        while not self.moatd.incoming() and time.time() < deadline:
            time.sleep(0.02)
        self.assertTrue(self.moatd.incoming(), "200 kB of DATA did not spill to incoming/")
        c.close()
        self.wait_disconnects(n + 1)
        self.assertNothingQueued(before, "after a disconnect mid-DATA")

    def test_rset_between_chunks_spilled(self):
        before = self.snapshot()
        c = self.connect()
        self.start_tx(c)
        chunk = (b"G" * 98 + b"\r\n") * 1000
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk")
        self.assertTrue(self.moatd.incoming(), "100 kB chunk did not spill to incoming/")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "RSET between chunks")
        self.assertNothingQueued(before, "after RSET between chunks")

    def test_disconnect_between_chunks_spilled(self):
        before = self.snapshot()
        n = self.moatd.log().count("event=disconnect")
        c = self.connect()
        self.start_tx(c)
        chunk = (b"C" * 98 + b"\r\n") * 1000
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 250, "2.0.0", "first chunk")
        self.assertTrue(self.moatd.incoming(), "100 kB chunk did not spill to incoming/")
        c.close()
        self.wait_disconnects(n + 1)
        self.assertNothingQueued(before, "after a disconnect between chunks")


if __name__ == "__main__":
    unittest.main()
