#!/usr/bin/python3
"""bench/idle.py - memory cost of idle SMTP sessions.

Usage: /usr/bin/python3 bench/idle.py [-n N] [--tree] HOST PORT PID

Opens N (default 5000) plaintext TCP connections to HOST:PORT, reads each
greeting (must start with "220"), holds all of them open, and reports how the
server's resident memory grew:

    VmRSS of PID (from /proc/PID/status) before opening any connection,
    VmRSS after all N greetings were read (and --settle seconds passed).

With --tree the RSS is summed over PID and all its descendants (e.g. a
Postfix master and its smtpd processes).  Informational lines also give the
process-tree sum and the proportional set size (Pss, from smaps_rollup),
which counts shared pages once instead of once per process.

Last line:
    idle: sessions=N rss_before_kib=.. rss_after_kib=.. per_session_kib=..
Exit status 1 if not every connection got a 220 greeting in time.
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time


def read_kib(path, key):
    """Value in kB of 'key:' in a /proc status-like file, None if absent."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(root):
    """root and all its descendant pids (from /proc/*/stat)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def snapshot(pid):
    """Memory figures (KiB) of pid and of its process tree."""
    own = read_kib(f"/proc/{pid}/status", "VmRSS")
    if own is None:
        sys.exit(f"idle.py: cannot read VmRSS of pid {pid} (not running?)")
    pids = descendants(pid)
    rss = pss = 0
    for p in pids:
        rss += read_kib(f"/proc/{p}/status", "VmRSS") or 0
        pss += read_kib(f"/proc/{p}/smaps_rollup", "Pss") or 0
    avail = read_kib("/proc/meminfo", "MemAvailable")
    return {"own": own, "tree_rss": rss, "tree_pss": pss, "procs": len(pids),
            "avail": avail}


def raise_nofile(n):
    want = n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        try:  # root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            sys.exit(f"idle.py: need {want} file descriptors, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_sessions(host, port, n, inflight, greet_timeout, log):
    """Open n connections, at most `inflight` of them waiting for their
    greeting at any time.  Returns (greeted sockets, failures by reason)."""
    sel = selectors.DefaultSelector()
    greeted, failures = [], {}
    pending = 0
    opened = 0
    t0 = time.monotonic()
    last_report = t0

    def fail(sock, why):
        nonlocal pending
        failures[why] = failures.get(why, 0) + 1
        sel.unregister(sock)
        sock.close()
        pending -= 1

    while len(greeted) + sum(failures.values()) < n:
        while opened < n and pending < inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                failures[f"connect: {os.strerror(rc)}"] = failures.get(f"connect: {os.strerror(rc)}", 0) + 1
                s.close()
                opened += 1
                continue
            sel.register(s, selectors.EVENT_READ, [time.monotonic(), b""])
            opened += 1
            pending += 1
        now = time.monotonic()
        for key, _ in sel.select(timeout=0.2):
            sock, data = key.fileobj, key.data
            try:
                chunk = sock.recv(4096)
            except OSError as e:
                fail(sock, f"recv: {e.strerror}")
                continue
            if not chunk:
                fail(sock, "closed before greeting" if not data[1] else f"closed after {data[1][:40]!r}")
                continue
            data[1] += chunk
            if b"\n" not in data[1]:
                continue
            if data[1].startswith(b"220"):
                sel.unregister(sock)
                greeted.append(sock)
                pending -= 1
            else:
                fail(sock, "greeting " + data[1].split(b"\n")[0].decode(errors="replace").strip()[:60])
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data[0] > greet_timeout:
                fail(key.fileobj, f"no greeting within {greet_timeout:g} s")
        if now - last_report >= 5:
            log(f"idle.py: {len(greeted)} greeted, {pending} waiting, {sum(failures.values())} failed, {now - t0:.0f} s")
            last_report = now
    sel.close()
    return greeted, failures, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int, help="server process whose VmRSS is measured")
    ap.add_argument("-n", "--sessions", type=int, default=5000)
    ap.add_argument("--tree", action="store_true",
                    help="sum RSS over PID and all its descendants (Postfix)")
    ap.add_argument("--greet-timeout", type=float, default=60.0,
                    help="seconds each connection may wait for its 220 (default 60)")
    ap.add_argument("--inflight", type=int, default=500,
                    help="connections awaiting their greeting at once (default 500)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait after the last greeting before measuring (default 2)")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="extra seconds to keep the sessions open after measuring")
    args = ap.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    raise_nofile(args.sessions)
    before = snapshot(args.pid)
    greeted, failures, secs = open_sessions(args.host, args.port, args.sessions,
                                            args.inflight, args.greet_timeout, log)
    time.sleep(args.settle)
    after = snapshot(args.pid)
    # every session must still be open: a readable socket here means the
    # server closed it (or sent something unsolicited)
    sel = selectors.DefaultSelector()
    for s in greeted:
        sel.register(s, selectors.EVENT_READ)
    dropped = len(sel.select(timeout=0))
    sel.close()
    if args.hold > 0:
        time.sleep(args.hold)
    for s in greeted:
        s.close()

    n = len(greeted)
    print(f"idle: {n} of {args.sessions} sessions greeted in {secs:.2f} s"
          + (f"; failures: {failures}" if failures else "")
          + (f"; {dropped} closed by the server while idle" if dropped else ""))
    print(f"idle: pid {args.pid}: VmRSS {before['own']} -> {after['own']} KiB; "
          f"process tree {before['procs']} -> {after['procs']} processes, "
          f"RSS sum {before['tree_rss']} -> {after['tree_rss']} KiB, "
          f"Pss sum {before['tree_pss']} -> {after['tree_pss']} KiB "
          f"({(after['tree_pss'] - before['tree_pss']) / max(n, 1):.1f} KiB/session)")
    used = before["avail"] - after["avail"]
    print(f"idle: system MemAvailable dropped by {used} KiB "
          f"({used / max(n, 1):.1f} KiB/session, whole system: the server, kernel socket buffers, this client)")
    key = "tree_rss" if args.tree else "own"
    b, a = before[key], after[key]
    if n != args.sessions or dropped:
        print(f"idle.py: only {n - dropped} of {args.sessions} sessions were established and held",
              file=sys.stderr)
        sys.exit(1)
    print(f"idle: sessions={n} rss_before_kib={b} rss_after_kib={a} "
          f"per_session_kib={(a - b) / n:.1f}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
