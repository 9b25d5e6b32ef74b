#!/usr/bin/env bash
# bench/relay_backlog.sh - moatd's CPU per accepted message while its
# downstream stalls and deliveries pile up at one destination (a
# reproduction for bench/relay.sh's findings, not a benchmark).
#
# Usage (as root, from the repo root):
#   bench/relay_backlog.sh [N ...]          default: 5000 10000 20000 40000
#
# For each N: a fresh `smtp-sink -w 1000` (it answers DATA only after
# 1000 s, so moatd's delivery connections, 10 by default, hang there and
# every further message waits in the destination's task list), a fresh
# moatd routing example.test to it (tls = none), then
#   smtp-source -d -s 20 -m N -l 4096 ... into moatd
# and the CPU time of each moatd thread over that load, per accepted
# message (/proc/PID/task/*/stat), plus the acceptance rate.  The busiest
# thread besides the main (SMTP) loop is the delivery thread.  If its CPU
# per message grows with N, each arrival costs time proportional to the
# backlog.  Environment: BENCH_FS as for bench/accept.sh, BENCH_KEEP=1.
set -euo pipefail

SIZES=("$@")
((${#SIZES[@]} > 0)) || SIZES=(5000 10000 20000 40000)
for n in "${SIZES[@]}"; do
	if [[ ! $n =~ ^[0-9]+$ ]] || ((n == 0)); then echo "usage: $0 [N ...]" >&2; exit 2; fi
done

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init relay_backlog
moat_build
moat_user
moat_ident
bench_fs

# thread_cpu PID: "TID UTIME STIME" (clock ticks) per thread
thread_cpu() {
	local t f
	for t in /proc/"$1"/task/*; do
		f=$(cat "$t/stat" 2>/dev/null) || continue
		f=${f##*) }
		# shellcheck disable=SC2086 # split the stat fields
		set -- $f
		echo "${t##*/} ${12} ${13}"
	done
}

for n in "${SIZES[@]}"; do
	dir=$BENCH_DATA/n$n
	SINK_ARGS="-w 1000" sink_start "$BENCH_OUT/sink-n$n"
	MOAT_ROUTE="smtp:[127.0.0.1]:$SINK_PORT" MOAT_TLS=none moat_start "$dir"
	before=$(thread_cpu "$MOAT_PID")
	t0=$("$PY" -c 'import time; print(time.monotonic())')
	smtp-source -d -s 20 -m "$n" -l 4096 -f sender@bench.test -t rcpt@example.test \
		"127.0.0.1:$MOAT_PORT" >"$BENCH_OUT/smtp-source-n$n.log" 2>&1 ||
		{ cat "$BENCH_OUT/smtp-source-n$n.log" >&2; moat_diag; die "smtp-source failed (N=$n)"; }
	t1=$("$PY" -c 'import time; print(time.monotonic())')
	after=$(thread_cpu "$MOAT_PID")
	moat_alive || { moat_diag; die "moatd died (N=$n)"; }
	"$PY" - "$n" "$MOAT_PID" "$t0" "$t1" "$(sink_count)" "$before" "$after" <<'EOF'
import os, sys
n, pid, t0, t1, got = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
tick = os.sysconf("SC_CLK_TCK")
parse = lambda s: {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in s.splitlines()}
b, a = parse(sys.argv[6]), parse(sys.argv[7])
d = {t: (u - b.get(t, (0, 0))[0], s - b.get(t, (0, 0))[1]) for t, (u, s) in a.items()}
us = lambda ticks: ticks / tick * 1e6 / n
main = d.pop(pid)
deliv_tid = max(d, key=lambda t: sum(d[t]))
deliv = d.pop(deliv_tid)
rest = (sum(v[0] for v in d.values()), sum(v[1] for v in d.values()))
print(f"N={n:6d}: accepted at {n / (t1 - t0):5.0f} msg/s, sink got {got}; moatd CPU us/msg (user+sys): "
      f"delivery thread {us(deliv[0]):4.0f}+{us(deliv[1]):3.0f}, main loop {us(main[0]):3.0f}+{us(main[1]):3.0f}, "
      f"{len(d)} other threads {us(rest[0]):3.0f}+{us(rest[1]):3.0f}")
EOF
	moat_stop
	sink_stop
done
BENCH_OK=1
