"""bench/relay_lat.py - relay latency: from the relay's 250 to the sink's receipt.

Usage (Debian's /usr/bin/python3, standard library only):

  relay_lat.py sink --port PORT --out FILE
      A minimal SMTP sink on 127.0.0.1:PORT (EHLO with PIPELINING and
      8BITMIME; MAIL, RCPT, RSET, NOOP: 250; DATA: 354; QUIT: 221).  For
      each message it records the CLOCK_MONOTONIC time at which the read
      that brought its final "." returned, and the message's tag (Subject:
      lat-N; "-" if none): "TAG SECONDS" lines, written to FILE every 0.2 s
      and at SIGTERM/SIGINT, then it exits.

  relay_lat.py send --port PORT --rate R --messages N [--sessions S]
                    [--size BYTES] [--out FILE]
      N messages of BYTES (4096) octets of body into the relay on
      127.0.0.1:PORT over S (10) reused sessions, MAIL/RCPT/DATA pipelined,
      paced by an open-loop schedule: message i may start at t0 + i/R (a
      token bucket without burst).  Message i carries Subject: lat-i and a
      unique Message-ID.  Records "I T_START T_250 CODE" per message
      (CLOCK_MONOTONIC seconds; T_250 when the reply to the end of data was
      read) and prints the achieved rate and how far the schedule slipped.
      Exits 1 if a message was not accepted with 250.

  relay_lat.py report SENDER_FILE SINK_FILE [--skip K]
      Joins both by tag: latency = sink receipt - relay's 250.  Checks that
      every accepted message arrived exactly once and that nothing else
      arrived (exit 1 otherwise).  Statistics leave out the first K
      messages (a warm-up).  Last line:
        lat: n=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. accept_p50_ms=.. accept_p99_ms=..

Both ends take their time stamps in user space with the same system-wide
clock (CLOCK_MONOTONIC); a busy event loop delays the sender's stamp
(latency looks shorter) or the sink's (longer) by its turn time.
"""

import argparse
import asyncio
import math
import re
import signal
import sys
import time

TAG = re.compile(rb"\r\nSubject: lat-(\d+)\r\n")
mono = time.monotonic


# ------------------------------------------------------------------ sink --

class SinkSession(asyncio.Protocol):
    def __init__(self, sink):
        self.sink = sink
        self.buf = bytearray()
        self.in_data = False
        self.scan = 0
        self.tr = None

    def connection_made(self, tr):
        self.tr = tr
        tr.write(b"220 lat-sink ESMTP\r\n")

    def data_received(self, data):
        now = mono()
        self.buf += data
        out = []
        while True:
            if self.in_data:
                # the message is buf[:i+2]; "\r\n.\r\n" ends it (the DATA
                # line's CRLF counts as the line start of an empty message)
                i = self.buf.find(b"\r\n.\r\n", self.scan)
                if i < 0:
                    self.scan = max(0, len(self.buf) - 4)
                    break
                m = TAG.search(self.buf, 0, min(i + 2, 8192))
                self.sink.records.append((m.group(1).decode() if m else "-", now))
                del self.buf[:i + 5]
                self.in_data = False
                self.scan = 0
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            verb = bytes(self.buf[:4]).upper()
            del self.buf[:i + 2]
            if verb == b"EHLO":
                out.append(b"250-lat-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                           b"250 SIZE 104857600\r\n")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                out.append(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.in_data = True
                # the CRLF that ended DATA starts the first line
                self.buf[0:0] = b"\r\n"
                self.scan = 0
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                self.tr.write(b"".join(out))
                self.tr.close()
                return
            else:
                out.append(b"502 5.5.2 Error: command not recognized\r\n")
        if out:
            self.tr.write(b"".join(out))


class Sink:
    def __init__(self, path):
        self.path = path
        self.records = []
        self.f = open(path, "w")

    def flush(self):
        if self.records:
            self.f.write("".join(f"{t} {s:.6f}\n" for t, s in self.records))
            self.records = []
            self.f.flush()


async def run_sink(args):
    loop = asyncio.get_running_loop()
    sink = Sink(args.out)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: SinkSession(sink), "127.0.0.1", args.port,
                                      backlog=1024, reuse_address=True)

    async def flusher():
        while True:
            await asyncio.sleep(0.2)
            sink.flush()

    ft = loop.create_task(flusher())
    await stop
    ft.cancel()
    server.close()
    sink.flush()
    sink.f.close()


# ---------------------------------------------------------------- sender --

def make_body(size):
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiu\r\n"
    n = size // len(line)
    body = line * n
    rest = size - len(body)
    if rest >= 2:
        body += b"x" * (rest - 2) + b"\r\n"
    return body


async def read_reply(reader):
    """One (possibly multi-line) reply: (code, text)."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the relay")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    return int(lines[-1][:3]), b"".join(lines)


async def send_session(args, state, body, records, errors):
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    code, text = await read_reply(reader)
    if code != 220:
        raise RuntimeError(f"greeting: {text!r}")
    writer.write(b"EHLO lat-sender.bench.test\r\n")
    code, text = await read_reply(reader)
    if code != 250:
        raise RuntimeError(f"EHLO: {text!r}")
    pipelining = b"PIPELINING" in text.upper()
    env = (f"MAIL FROM:<lat@bench.test>\r\nRCPT TO:<{args.rcpt}>\r\nDATA\r\n").encode()
    while True:
        i = state["next"]
        if i >= args.messages:
            break
        state["next"] = i + 1
        due = state["t0"] + i / args.rate
        delay = due - mono()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            state["late"] = max(state["late"], -delay)
        t_start = mono()
        hdr = (f"From: <lat@bench.test>\r\nTo: <{args.rcpt}>\r\nSubject: lat-{i}\r\n"
               f"Message-ID: <lat-{i}.{state['run']}@bench.test>\r\n\r\n").encode()
        if pipelining:
            writer.write(env)
            replies = [await read_reply(reader) for _ in range(3)]
        else:
            replies = []
            for cmd in env.split(b"\r\n")[:3]:
                writer.write(cmd + b"\r\n")
                replies.append(await read_reply(reader))
                if replies[-1][0] >= 400:
                    break
        if [r[0] for r in replies] != [250, 250, 354]:
            errors.append((i, b" | ".join(r[1].strip() for r in replies)))
            if len(replies) == 3 and replies[2][0] == 354:
                writer.write(b".\r\n")
                await read_reply(reader)
            writer.write(b"RSET\r\n")
            await read_reply(reader)
            records.append((i, t_start, mono(), replies[-1][0]))
            continue
        writer.write(hdr + body + b".\r\n")
        code, text = await read_reply(reader)
        t_250 = mono()
        if code != 250:
            errors.append((i, text.strip()))
        records.append((i, t_start, t_250, code))
    writer.write(b"QUIT\r\n")
    try:
        await read_reply(reader)
    except ConnectionError:
        pass
    writer.close()


async def run_send(args):
    body = make_body(args.size)
    records, errors = [], []
    state = {"next": 0, "t0": mono() + 0.05, "late": 0.0, "run": int(time.time())}
    results = await asyncio.gather(
        *(send_session(args, state, body, records, errors) for _ in range(args.sessions)),
        return_exceptions=True)
    t_end = mono()
    for r in results:
        if isinstance(r, BaseException):
            errors.append((-1, repr(r).encode()))
    with open(args.out, "w") as f:
        for i, a, b, c in sorted(records):
            f.write(f"{i} {a:.6f} {b:.6f} {c}\n")
    dur = t_end - state["t0"]
    print(f"sender: {len(records)} of {args.messages} messages in {dur:.2f} s = "
          f"{len(records) / dur:.0f} msg/s (target {args.rate:.0f} msg/s over {args.sessions} "
          f"sessions); the schedule slipped by up to {state['late'] * 1000:.1f} ms")
    for i, e in errors[:10]:
        print(f"sender: message {i}: {e.decode(errors='replace')}", file=sys.stderr)
    return 1 if errors or len(records) != args.messages else 0


# ---------------------------------------------------------------- report --

def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)
    return sorted_vals[k]


def report(args):
    sent = {}
    for line in open(args.sender):
        i, a, b, c = line.split()
        sent[i] = (float(a), float(b), int(c))
    got = {}
    for line in open(args.sink):
        tag, t = line.split()
        got.setdefault(tag, []).append(float(t))
    accepted = {i for i, v in sent.items() if v[2] == 250}
    missing = sorted((i for i in accepted if i not in got), key=int)
    dups = sorted((i for i, ts in got.items() if len(ts) > 1), key=lambda x: (x == "-", x))
    extra = sorted((i for i in got if i not in accepted), key=lambda x: (x == "-", x))
    bad = 0
    if missing:
        print(f"ERROR: {len(missing)} accepted message(s) never reached the sink, e.g. lat-"
              + ", lat-".join(missing[:5]))
        bad = 1
    if dups:
        print(f"ERROR: {len(dups)} message(s) reached the sink more than once, e.g. "
              + ", ".join(f"{t} x{len(got[t])}" for t in dups[:5]))
        bad = 1
    if extra:
        print(f"ERROR: {len(extra)} tag(s) at the sink that were not accepted: "
              + ", ".join(extra[:5]))
        bad = 1
    lat, acc = [], []
    for i in accepted:
        if int(i) < args.skip or i not in got:
            continue
        t_start, t_250, _ = sent[i]
        lat.append((got[i][0] - t_250) * 1000)
        acc.append((t_250 - t_start) * 1000)
    lat.sort()
    acc.sort()
    neg = sum(1 for x in lat if x < 0)
    print(f"latency 250 -> sink over {len(lat)} messages (first {args.skip} left out): "
          f"min {lat[0]:.2f} p50 {pct(lat, 50):.2f} p90 {pct(lat, 90):.2f} "
          f"p99 {pct(lat, 99):.2f} p99.9 {pct(lat, 99.9):.2f} max {lat[-1]:.2f} ms"
          + (f" ({neg} negative: the sink had it before the sender read the 250)" if neg else ""))
    print(f"acceptance (start of MAIL -> 250 after the data): p50 {pct(acc, 50):.2f} "
          f"p99 {pct(acc, 99):.2f} max {acc[-1]:.2f} ms")
    print(f"lat: n={len(lat)} p50_ms={pct(lat, 50):.2f} p90_ms={pct(lat, 90):.2f} "
          f"p99_ms={pct(lat, 99):.2f} max_ms={lat[-1]:.2f} accept_p50_ms={pct(acc, 50):.2f} "
          f"accept_p99_ms={pct(acc, 99):.2f}")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("send")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--messages", type=int, required=True)
    s.add_argument("--sessions", type=int, default=10)
    s.add_argument("--size", type=int, default=4096)
    s.add_argument("--rcpt", default="rcpt@example.test")
    s.add_argument("--out", default="/dev/null")
    s = sub.add_parser("report")
    s.add_argument("sender")
    s.add_argument("sink")
    s.add_argument("--skip", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "sink":
        asyncio.run(run_sink(args))
        return 0
    if args.cmd == "send":
        return asyncio.run(run_send(args))
    return report(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
