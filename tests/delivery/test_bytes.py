"""What arrives downstream is moat's Received header plus the client's bytes,
exactly: CRLF only, no line over 998 octets (long lines folded, never cut),
dot-stuffed on the wire, 8BITMIME and SMTPUTF8 passed on, and refused
honestly where the downstream cannot take them (RFC 5321 4.5.2, 4.5.3.1.6;
RFC 6152; RFC 6531 3.2)."""
import re
import unittest

from dlvutil import (DSN, DeliveryCase, Moatd, Refused, Sink, WireSink, domain, log_lines, moat_conf,
                     smtp_route, submit, wait_for, wait_removed)

SUBJ = "Subject: %s\r\nFrom: a@remote.test\r\nTo: b@example.test\r\n"


def scan_fields_and_rest(content):
    """Split moat's scan fields (Authentication-Results, X-Moat-*, each with
    its continuation lines) off the top; they must be there."""
    i = 0
    while content.startswith((b"Authentication-Results: ", b"X-Moat-"), i):
        i = content.index(b"\r\n", i) + 2
        while content[i:i + 1] in (b"\t", b" "):
            i = content.index(b"\r\n", i) + 2
    if b"Authentication-Results: " not in content[:i] or b"X-Moat-Verdict: " not in content[:i]:
        raise AssertionError("content does not start with moat's scan fields: %r"
                             % content[:200])
    return content[:i], content[i:]


def received_and_rest(content):
    """Split moat's scan fields and its Received header (with its continuation
    lines) off."""
    content = scan_fields_and_rest(content)[1]
    if not content.startswith(b"Received: from "):
        raise AssertionError("content does not start with moat's Received header: %r"
                             % content[:120])
    i = content.index(b"\r\n") + 2
    while content[i:i + 1] in (b"\t", b" "):
        i = content.index(b"\r\n", i) + 2
    return content[:i], content[i:]


def bad_line_ends(data):
    """Offsets of a bare CR or a bare LF."""
    out = []
    for m in re.finditer(rb"\r(?!\n)|(?<!\r)\n", data):
        out.append(m.start())
    return out


def longest_line(data):
    return max(len(l) for l in data.split(b"\r\n"))


def long_line_body(tag, n, first=b"x"):
    line = (first + (b"abcdefghij" * (n // 10 + 1)))[:n]
    return (SUBJ % tag).encode() + b"\r\nbefore\r\n" + line + b"\r\nafter\r\n"


# (name, MAIL parameters, recipients, body)
CASES = [
    ("plain", "", ["plain@example.test"],
     (SUBJ % "plain").encode() + b"\r\nhello\r\nworld\r\n"),
    ("dot lines", "", ["dots@example.test"],
     (SUBJ % "dots").encode() + b"\r\n.\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend.\r\n"
     b".\r\n"),
    ("empty lines and spaces", "", ["blank@example.test"],
     (SUBJ % "blank").encode() + b"\r\n\r\n\r\n  indented\r\ntrailing  \r\n\t\r\n\r\n"),
    ("8-bit body with BODY=8BITMIME", " BODY=8BITMIME", ["eight@example.test"],
     (SUBJ % "eight").encode() + b"Content-Type: text/plain; charset=latin1\r\n"
     b"Content-Transfer-Encoding: 8bit\r\n\r\n\xe4\xf6\xfc \xff\x80\x01\x7f\r\n"),
    ("1 MB message", "", ["big@example.test"],
     (SUBJ % "big").encode() + b"\r\n" +
     b"".join(b"%07d %s\r\n" % (i, b"y" * 66) for i in range(13800))),
    ("998-octet line", "", ["l998@example.test"],
     (SUBJ % "l998").encode() + b"\r\n" + b"z" * 998 + b"\r\n"),
    ("998-octet line starting with a dot", "", ["d998@example.test"],
     (SUBJ % "d998").encode() + b"\r\n." + b"z" * 997 + b"\r\n"),
    ("SMTPUTF8 message", " SMTPUTF8 BODY=8BITMIME",
     ["j\u00fcrgen@example.test", "\u7528\u6237@example.test"],
     "Subject: gr\u00fc\u00dfe \u2603\r\nFrom: s\u00e9nder@remote.test\r\n"
     "To: j\u00fcrgen@example.test\r\n\r\nk\u00f6rper \u2603\r\n".encode()),
    ("many recipients", "", ["r%02d@example.test" % i for i in range(12)],
     (SUBJ % "many").encode() + b"\r\nto twelve\r\n"),
]


class TestByteExact(DeliveryCase):
    """aiosmtpd (which un-dot-stuffs) sees Received + the original octets."""

    @classmethod
    def setUpClass(cls):
        cls.sink = Sink().start()
        cls.dsn = Sink().start()
        cls.moatd = Moatd(conf=moat_conf(cls.dsn.port, "smtp_max_line_length = 20000\n"),
                          domains=domain("example.test", smtp_route(cls.sink.port)),
                          name=cls.__name__)
        cls.moatd.start()

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()
        cls.sink.stop()
        cls.dsn.stop()

    def delivered(self, qid, rcpts):
        wait_removed(self.moatd, qid)
        got = [t for t in self.sink.txns if ("id " + qid).encode() in t.content[:400]]
        self.assertEqual(len(got), 1, "transactions carrying %s: %r" % (qid, got))
        self.assertEqual(sorted(got[0].rcpts), sorted(rcpts))
        return got[0]

    def test_bytes_arrive_exactly(self):
        for name, params, rcpts, body in CASES:
            with self.subTest(name):
                qid = submit(self.moatd, rcpts, body=body, mail_params=params,
                             sender="s\u00e9nder@remote.test" if "SMTPUTF8" in params
                             else "sender@remote.test")
                t = self.delivered(qid, rcpts)
                rec, rest = received_and_rest(t.content)
                self.assertIn(("id " + qid).encode(), rec)
                self.assertEqual(bad_line_ends(t.content), [], "bare CR or LF delivered")
                self.assertLessEqual(longest_line(t.content), 998)
                if rest != body:
                    # the first difference, for the report
                    i = next((k for k in range(min(len(rest), len(body)))
                              if rest[k] != body[k]), min(len(rest), len(body)))
                    self.fail("%s: content differs at octet %d (len %d vs %d): got %r want %r"
                              % (name, i, len(rest), len(body), rest[max(0, i - 20):i + 40],
                                 body[max(0, i - 20):i + 40]))
                opts = [o.upper() for o in t.mail_options]
                if "8BITMIME" in params:
                    self.assertIn("BODY=8BITMIME", opts)
                if "SMTPUTF8" in params:
                    self.assertIn("SMTPUTF8", opts)
                    self.assertEqual(t.mail_from, "s\u00e9nder@remote.test")
                else:
                    self.assertNotIn("SMTPUTF8", opts)
                    self.assertEqual(t.mail_from, "sender@remote.test")
                size = [o for o in opts if o.startswith("SIZE=")]
                if size:
                    # RFC 1870: the size moat declares is at least what it sends
                    self.assertGreaterEqual(int(size[0][5:]), len(t.content))

    def test_long_lines_folded_never_cut(self):
        # smtp_max_line_length = 20000 lets such lines in; on the way out they
        # are folded (CRLF SP inserted), nothing is lost.
        for n in (999, 1000, 1500, 2997, 5000, 19990):
            for first in (b"x", b"."):
                tag = "fold-%d-%s" % (n, "dot" if first == b"." else "x")
                with self.subTest(tag):
                    body = long_line_body(tag, n, first)
                    qid = submit(self.moatd, ["fold@example.test"], body=body)
                    t = self.delivered(qid, ["fold@example.test"])
                    _, rest = received_and_rest(t.content)
                    self.assertEqual(bad_line_ends(rest), [])
                    self.assertLessEqual(longest_line(rest), 998, "a line over 998 octets")
                    self.assertGreater(rest.count(b"\r\n"), body.count(b"\r\n"),
                                       "the long line was not folded")
                    self.assertEqual(rest.replace(b"\r\n ", b""), body,
                                     "folded content minus the inserted CRLF SP differs from "
                                     "the original (cut or changed)")


class TestWire(DeliveryCase):
    """The octets on the wire: dot-stuffing, CRLF, line length, BDAT."""

    def run_wire(self, ext, bodies):
        sink = self.start_sink(WireSink(ext=ext))
        dsn = self.start_sink(Sink())
        m = self.start_moatd(moat_conf(dsn.port, "smtp_max_line_length = 20000\n"),
                             domain("example.test", smtp_route(sink.port)))
        qids = [submit(m, ["wire@example.test"], body=b) for b in bodies]
        for q in qids:
            wait_removed(m, q)
        txns = sink.txns()
        self.assertEqual(len(txns), len(bodies))
        # in the order of the queue ids (several connections may have carried them)
        ordered = []
        for q in qids:
            got = [t for t in txns if ("id " + q).encode() in t.content[:400]]
            self.assertEqual(len(got), 1, "transactions carrying %s" % q)
            ordered.append(got[0])
        return ordered, qids

    BODIES = [
        b"Subject: w1\r\n\r\n.\r\nx\r\n..\r\n.a\r\n",
        b"Subject: w2\r\n\r\n" + b"." + b"q" * 997 + b"\r\n" + b"q" * 2500 + b"\r\n",
        b"Subject: w3\r\n\r\n" + b"".join(b".%d\r\n" % i for i in range(30000)),  # > 64 KiB
    ]

    def test_data_dot_stuffed_on_the_wire(self):
        txns, qids = self.run_wire(("8BITMIME", "SIZE 104857600", "ENHANCEDSTATUSCODES"),
                                   self.BODIES)
        for t, body, qid in zip(txns, self.BODIES, qids):
            self.assertEqual(t.via, "DATA")
            for l in t.wire_lines:
                self.assertTrue(l.endswith(b"\r\n") and b"\r" not in l[:-2] and b"\n" not in l[:-2],
                                "bad line end on the wire: %r" % l[:80])
                # a line that starts with "." carries the transparency dot
                # (1000 octets with CRLF, + 1 for that dot)
                limit = 1001 if l.startswith(b".") else 1000
                self.assertLessEqual(len(l), limit, "wire line of %d octets" % len(l))
            lines = [l for l in t.wire_lines if l.startswith(b".")]
            self.assertTrue(all(l.startswith(b"..") for l in lines),
                            "a line starting with '.' was not dot-stuffed: %r"
                            % [l for l in lines if not l.startswith(b"..")][:3])
            _, rest = received_and_rest(t.content)
            self.assertEqual(rest.replace(b"\r\n ", b""), body)

    def test_bdat_when_chunking_and_pipelining_offered(self):
        txns, qids = self.run_wire(("PIPELINING", "CHUNKING", "8BITMIME", "SIZE 104857600",
                                    "ENHANCEDSTATUSCODES"), self.BODIES)
        for t, body in zip(txns, self.BODIES):
            self.assertEqual(t.via, "BDAT", "moat used DATA although CHUNKING was offered")
            self.assertEqual(bad_line_ends(t.content), [])
            self.assertLessEqual(longest_line(t.content), 998)
            _, rest = received_and_rest(t.content)
            # BDAT: no dot-stuffing, octets as they are
            self.assertEqual(rest.replace(b"\r\n ", b""), body)


class TestHonesty(DeliveryCase):
    """SMTPUTF8 and 8-bit mail towards downstreams that cannot take it: refused
    with 5.6.7 / 5.6.3 and a DSN, never delivered mangled."""

    @classmethod
    def setUpClass(cls):
        cls.plain = Sink(smtputf8=False).start()              # no SMTPUTF8
        cls.seven = Sink(ehlo_drop=["8BITMIME"]).start()      # no 8BITMIME
        cls.dsn = Sink().start()
        cls.moatd = Moatd(conf=moat_conf(cls.dsn.port),
                          domains=domain("ascii.test", smtp_route(cls.plain.port)) +
                          domain("seven.test", smtp_route(cls.seven.port)),
                          name=cls.__name__)
        cls.moatd.start()

    @classmethod
    def tearDownClass(cls):
        cls.moatd.stop()
        for s in (cls.plain, cls.seven, cls.dsn):
            s.stop()

    def dsn_for(self, rcpt, timeout=10):
        def find():
            for t in self.dsn.txns:
                d = DSN(t.content)
                if d.rcpt(rcpt) is not None:
                    return t, d
            return None
        return wait_for(find, timeout, "a DSN naming %s" % rcpt)

    def test_smtputf8_to_downstream_without_it_bounces_5_6_7(self):
        rcpt = "j\u00fcrgen@ascii.test"
        qid = submit(self.moatd, [rcpt], sender="sender@remote.test", mail_params=" SMTPUTF8",
                     body="Subject: \u2603\r\n\r\nutf8\r\n".encode())
        wait_removed(self.moatd, qid)
        b = log_lines(self.moatd, "bounced", qid)
        self.assertEqual(len(b), 1, log_lines(self.moatd, "deferred", qid))
        self.assertIn("5.6.7", b[0])
        self.assertEqual(self.plain.txns, [], "delivered to a server without SMTPUTF8")
        t, d = self.dsn_for(rcpt)
        self.assertEqual(t.mail_from, "<>")
        self.assertEqual(t.rcpts, ["sender@remote.test"])
        self.assertEqual(d.rcpt(rcpt).get("action"), "failed")
        self.assertEqual(d.rcpt(rcpt).get("status"), "5.6.7")

    def test_8bit_to_downstream_without_8bitmime_bounces_5_6_3(self):
        qid = submit(self.moatd, ["eight@seven.test"], mail_params=" BODY=8BITMIME",
                     body=b"Subject: 8bit\r\n\r\n\xe4\xf6\xfc\r\n")
        wait_removed(self.moatd, qid)
        b = log_lines(self.moatd, "bounced", qid)
        self.assertEqual(len(b), 1)
        self.assertIn("5.6.3", b[0])
        self.assertEqual([t for t in self.seven.txns if b"8bit" in t.content], [])
        t, d = self.dsn_for("eight@seven.test")
        self.assertEqual(d.rcpt("eight@seven.test").get("status"), "5.6.3")

    def test_undeclared_8bit_never_leaves_unlabelled(self):
        # A client sends 8-bit octets without BODY=8BITMIME. moat may refuse
        # that at the door; what it passes on must be labelled BODY=8BITMIME
        # and go only to a downstream that offers 8BITMIME (RFC 6152 3).
        body = b"Subject: undeclared 8bit\r\n\r\n\xe4\xf6\xfc\r\n"
        for rcpt, sink in (("u8@ascii.test", self.plain), ("u8@seven.test", self.seven)):
            with self.subTest(rcpt):
                try:
                    qid = submit(self.moatd, [rcpt], body=body)
                except Refused:
                    continue  # refused at the door: honest too
                wait_removed(self.moatd, qid)
                got = [t for t in sink.txns if ("id " + qid).encode() in t.content]
                for t in got:
                    self.assertIn("BODY=8BITMIME", [o.upper() for o in t.mail_options],
                                  "8-bit octets sent without BODY=8BITMIME")
                    self.assertNotIn("8BITMIME", sink.ehlo_drop,
                                     "8-bit octets sent to a downstream without 8BITMIME")

    def test_7bit_to_downstream_without_8bitmime_is_delivered(self):
        for params in ("", " BODY=7BIT"):
            with self.subTest(params or "no BODY"):
                qid = submit(self.moatd, ["seven@seven.test"], mail_params=params,
                             body=b"Subject: 7bit%s\r\n\r\nascii\r\n" % params.encode())
                wait_removed(self.moatd, qid)
                self.assertEqual(len(log_lines(self.moatd, "delivered", qid)), 1,
                                 log_lines(self.moatd, "bounced", qid))
                got = [t for t in self.seven.txns if ("id " + qid).encode() in t.content]
                self.assertEqual(len(got), 1)
                self.assertNotIn("BODY=8BITMIME", [o.upper() for o in got[0].mail_options])


if __name__ == "__main__":
    unittest.main()
