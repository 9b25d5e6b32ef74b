"""bench/timed.py - run a load generator, timed, and account for the CPU.

Usage: /usr/bin/python3 bench/timed.py LOGFILE SERVER_PID COMMAND [ARGS...]

Runs COMMAND with stdout and stderr to LOGFILE and prints one line:

    SECONDS SERVER_CPU_S CLIENT_CPU_S OTHER_CPU_S KTHREAD_CPU_S NCPU

SECONDS is measured with CLOCK_MONOTONIC around the command.  CPU times are
user + system seconds used while the command ran, from /proc/PID/stat of
every process, counting what each process used itself and what its reaped
children used (a Postfix master reaps its smtpd and cleanup processes, a
make reaps its compilers):
  SERVER_CPU_S   SERVER_PID and its descendants;
  CLIENT_CPU_S   COMMAND;
  OTHER_CPU_S    every other user-space process on the machine: load that
                 does not belong to the benchmark and disturbs it;
  KTHREAD_CPU_S  kernel threads (I/O completion, writeback, softirqs...),
                 mostly work the benchmark itself causes.
Exits with the command's status.
"""

import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000


def snapshot():
    """{pid: (starttime, ppid, cpu ticks incl. reaped children, is_kthread)}"""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fl = st[st.rindex(")") + 2:].split()
        # fields after comm: state ppid ... flags(9) ... utime(14) stime cutime cstime ... starttime(22)
        ppid, flags = int(fl[1]), int(fl[6])
        cpu = sum(int(x) for x in fl[11:15])
        procs[int(name)] = (int(fl[19]), ppid, cpu, bool(flags & PF_KTHREAD) or int(name) == 2)
    return procs


def tree(procs, root):
    kids = {}
    for pid, (_, ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(kids.get(pid, []))
    return out


def main():
    logf, server, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with open(logf, "wb") as out:
        before = snapshot()
        t0 = time.monotonic()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        rc = child.wait()
        t1 = time.monotonic()
        after = snapshot()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = ru.ru_utime + ru.ru_stime
    ours = tree(before, server) | tree(after, server)
    me = {os.getpid(), child.pid}
    server_t = other_t = kthread_t = 0

    def charge(pid, kthread, delta):
        nonlocal server_t, other_t, kthread_t
        if pid in ours:
            server_t += delta
        elif kthread:
            kthread_t += delta
        else:
            other_t += delta

    for pid, (start, _, cpu, kthread) in after.items():
        if pid in me:
            continue
        b = before.get(pid)
        charge(pid, kthread, cpu - (b[2] if b and b[0] == start else 0))
    # A process that exited meanwhile was reaped by its parent, whose
    # cutime/cstime grew by all the CPU it ever used: take off the part
    # used before the window.
    for pid, (start, _, cpu, kthread) in before.items():
        a = after.get(pid)
        if a is None or a[0] != start:
            charge(pid, kthread, -cpu)
    print(f"{t1 - t0:.6f} {server_t / TICK:.2f} {client:.2f} {other_t / TICK:.2f} "
          f"{kthread_t / TICK:.2f} {os.cpu_count()}")
    sys.exit(rc)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
