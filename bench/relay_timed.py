"""bench/relay_timed.py - run a load generator and time it end to end, up to
the moment the downstream smtp-sink has counted the messages.

Usage: /usr/bin/python3 bench/relay_timed.py LOGFILE SERVER_PID SINK_PID \
           SINK_LOG TARGET TIMEOUT_S COMMAND [ARGS...]

Starts COMMAND (smtp-source) with stdout and stderr to LOGFILE and polls
SINK_LOG, the output of `smtp-sink -c` ("sess=.. quit=.. mesg=N", one
record per CR, written when "." is received), every POLL_S until its last
complete mesg= counter reaches TARGET.  Prints one line:

    SECONDS SOURCE_SECONDS SERVER_CPU_S CLIENT_CPU_S SINK_CPU_S OTHER_CPU_S \
        KTHREAD_CPU_S NCPU COUNT TOP_OTHERS

SECONDS: CLOCK_MONOTONIC from just before COMMAND starts until the sink's
counter was seen at TARGET (so up to POLL_S late); SOURCE_SECONDS: until
COMMAND exited (it has then had the server's 250 for each message).  CPU
times are user + system seconds used from the start until the sink reached
TARGET, as bench/timed.py counts them (reaped children included): SERVER_PID
and its descendants, COMMAND, SINK_PID, other user-space processes, kernel
threads.  COUNT is the sink's counter at the end.  TOP_OTHERS names the
three other user-space processes that used the most CPU in the window,
"comm[pid]=SECONDS,..." ("-" if none), to tell what disturbed a run.

With SINK_LOG "-" there is no counter to wait for (TARGET is ignored,
COUNT is 0): the window ends when COMMAND exits (the latency runs use this
to account for the CPU while bench/relay_lat.py sends).

Exit status: COMMAND's if it failed (the sink is not waited for then), 3 if
TARGET was not reached within TIMEOUT_S, else 0.
"""

import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timed import TICK, snapshot, tree  # noqa: E402


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip().replace(" ", "_").replace(",", "_")
    except OSError:
        return "?"

POLL_S = 0.002
COUNTER = re.compile(rb"mesg=(\d+)\r")


def sink_count(fd):
    size = os.fstat(fd).st_size
    tail = os.pread(fd, 256, max(0, size - 256))
    found = COUNTER.findall(tail)
    return int(found[-1]) if found else 0


def main():
    logf, server, sink, sink_log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    target, timeout, argv = int(sys.argv[5]), float(sys.argv[6]), sys.argv[7:]
    fd = os.open(sink_log, os.O_RDONLY) if sink_log != "-" else None
    rc = None
    count = 0
    with open(logf, "wb") as out:
        before = snapshot()
        t0 = time.monotonic()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        t_src = None
        status = 0
        while True:
            now = time.monotonic()
            if t_src is None:
                rc = child.poll()
                if rc is not None:
                    t_src = now
                    if rc != 0:
                        status = rc
                        break
            if fd is None:
                if t_src is not None:
                    break
            else:
                count = sink_count(fd)
                if count >= target:
                    break
            if now - t0 > timeout:
                status = 3
                break
            time.sleep(POLL_S)
        t1 = time.monotonic()
        after = snapshot()
        if t_src is None:
            if status == 3:
                child.kill()
            rc = child.wait()
            t_src = time.monotonic()
            if status == 0 and rc != 0:
                status = rc
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = ru.ru_utime + ru.ru_stime
    ours = tree(before, server) | tree(after, server)
    sinks = tree(before, sink) | tree(after, sink)
    me = {os.getpid(), child.pid}
    acc = {"server": 0, "sink": 0, "other": 0, "kthread": 0}
    others = {}

    def charge(pid, kthread, delta):
        if pid in ours:
            acc["server"] += delta
        elif pid in sinks:
            acc["sink"] += delta
        elif kthread:
            acc["kthread"] += delta
        else:
            acc["other"] += delta
            others[pid] = others.get(pid, 0) + delta

    for pid, (start, _, cpu, kthread) in after.items():
        if pid in me:
            continue
        b = before.get(pid)
        charge(pid, kthread, cpu - (b[2] if b and b[0] == start else 0))
    # A process that exited meanwhile was reaped by its parent, whose
    # cutime/cstime grew by all the CPU it ever used: take off the part used
    # before the window.  Kernel threads are reaped by nobody (no parent's
    # counters grow): what one used in the window before it exited is lost,
    # and nothing is taken off (timed.py takes it off, and can then report
    # negative kernel-thread time).
    for pid, (start, _, cpu, kthread) in before.items():
        a = after.get(pid)
        if (a is None or a[0] != start) and not kthread:
            charge(pid, kthread, -cpu)
    top = ",".join(f"{comm(pid)}[{pid}]={t / TICK:.2f}"
                   for pid, t in sorted(others.items(), key=lambda x: -x[1])[:3] if t > 0)
    print(f"{t1 - t0:.6f} {t_src - t0:.6f} {acc['server'] / TICK:.2f} {client:.2f} "
          f"{acc['sink'] / TICK:.2f} {acc['other'] / TICK:.2f} {acc['kthread'] / TICK:.2f} "
          f"{os.cpu_count()} {count} {top or '-'}")
    sys.exit(status)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
