#!/usr/bin/env bash
# bench/accept.sh - acceptance throughput of moatd vs. a private Postfix 3.7.
#
# Usage (as root, from the repo root):
#   bench/accept.sh [messages] [sessions] [runs]      defaults: 20000 20 3
#
# Both servers accept mail for example.test from 127.0.0.1 and HOLD it:
#   - moatd with `delivery_paused = yes` (accepted messages stay in
#     DATA_DIR/queue/, one file each);
#   - Postfix with `check_client_access static:HOLD` (messages go to the hold
#     queue, QUEUE/hold/, one file each); fsync as shipped (on).
# Each round benchmarks both, alternating which goes first (round 1: moat
# first, round 2: Postfix first, ...).  Every run gets a freshly started
# daemon with an empty queue, then an untimed warm-up of BENCH_WARMUP
# messages (default 500; 0 disables it), then the timed load:
#   smtp-source -c -d -s SESSIONS -m MESSAGES -l 4096 \
#       -f sender@bench.test -t rcpt@example.test 127.0.0.1:PORT
# timed with CLOCK_MONOTONIC; msg/s = MESSAGES / seconds.  Each run also
# reports the server's CPU time per message and how busy the CPUs were with
# kernel threads and with unrelated processes (bench/timed.py); a run where
# other processes took > 10% of the CPUs is flagged DISTURBED.  moatd is
# run from a copy of build/moatd taken after the build, so that all runs
# measure the same binary.  After each run
# the script checks that smtp-source succeeded and counted MESSAGES, that
# the daemon is still alive, and that the queue holds exactly
# BENCH_WARMUP + MESSAGES files; any mismatch is an error (exit 1, work dir
# kept).
#
# Output: one line per run, then the medians, then as the last line
#   accept: moat=<msg/s> postfix=<msg/s> ratio=<moat/postfix>
# The queues of all runs are kept until the end (about 1 GB with the
# defaults): deleting tens of thousands of files just before a run slows
# file creation in it on ext4 without a journal, which this machine's root
# file system is.  BENCH_FS=loop puts the queues on a fresh, journaled ext4
# image instead (loop-mounted in the work dir), which also isolates the
# runs from other processes' file churn.
#
# Environment: BENCH_WARMUP (500), BENCH_FS=dir|loop[:SIZE] (dir),
# BENCH_KEEP=1 keeps the work dir
# bench/out/accept.XXXXXX (configs, logs, queues) even on success,
# BENCH_ONLY=moat|postfix benchmarks one side only (a debugging aid: the
# other side and the ratio are then printed as n/a).
set -euo pipefail

MESSAGES=${1:-20000}
SESSIONS=${2:-20}
RUNS=${3:-3}
WARMUP=${BENCH_WARMUP:-500}
ONLY=${BENCH_ONLY:-}
MSG_LEN=4096
FROM=sender@bench.test
RCPT=rcpt@example.test

for v in "$MESSAGES" "$SESSIONS" "$RUNS" "$WARMUP"; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "usage: $0 [messages] [sessions] [runs]" >&2; exit 2; }
done
((MESSAGES > 0 && SESSIONS > 0 && RUNS > 0)) || { echo "usage: $0 [messages] [sessions] [runs] (all > 0)" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case $ONLY in "" | moat | postfix) ;; *) echo "BENCH_ONLY must be moat or postfix" >&2; exit 2 ;; esac

bench_init accept
if [[ $ONLY != postfix ]]; then
	moat_build
	moat_user
fi

# smtp_source LOGFILE COUNT PORT SERVER_PID: run smtp-source; print
# "SECONDS SERVER_CPU CLIENT_CPU OTHER_CPU KTHREAD_CPU NCPU" (see bench/timed.py: the
# time is CLOCK_MONOTONIC around the process).  Fails if smtp-source fails.
smtp_source() {
	local logf=$1 count=$2 port=$3 server=$4
	"$PY" "$BENCH_DIR/timed.py" "$logf" "$server" \
		smtp-source -c -d -s "$SESSIONS" -m "$count" -l "$MSG_LEN" \
		-f "$FROM" -t "$RCPT" "127.0.0.1:$port"
}

# last value of smtp-source's -c counter in its log
source_count() {
	tr '\r' '\n' <"$1" | grep -E '^[0-9]+$' | tail -n 1 || true
}

MOAT_RATES=()
PF_RATES=()
MOAT_CPU=()     # server CPU microseconds per message
PF_CPU=()
DISTURBED=0     # runs during which other processes used > 10% of the CPUs

# run_one moat|postfix ROUND
run_one() {
	local kind=$1 round=$2 dir port server secs scpu ccpu ocpu kcpu ncpu timing counted queued
	local other="" want rate srclog rc cpumsg otherpct kpct note=""
	[[ -z $ONLY || $ONLY == "$kind" ]] || return 0
	dir=$BENCH_DATA/$kind-run$round
	if [[ $kind == moat ]]; then
		moat_start "$dir"
		port=$MOAT_PORT
		server=$MOAT_PID
	else
		pf_start "$dir"
		port=$PF_PORT
		server=$(pf_master_pid "$dir")
	fi
	if ((WARMUP > 0)); then
		rc=0
		smtp_source "$dir/warmup.log" "$WARMUP" "$port" "$server" >/dev/null || rc=$?
		if ((rc != 0)); then
			log "---- $dir/warmup.log:"; tail -c 2000 "$dir/warmup.log" >&2
			[[ $kind != moat ]] || moat_diag
			die "run $round $kind: warm-up smtp-source failed (status $rc)"
		fi
	fi
	srclog=$dir/smtp-source.log
	rc=0
	timing=$(smtp_source "$srclog" "$MESSAGES" "$port" "$server") || rc=$?
	read -r secs scpu ccpu ocpu kcpu ncpu <<<"$timing"
	counted=$(source_count "$srclog")
	want=$((WARMUP + MESSAGES))
	if [[ $kind == moat ]]; then
		moat_alive || { moat_diag; die "run $round moat: moatd stopped during the run"; }
		queued=$(moat_queue_count)
	else
		queued=$(pf_hold_count)
		other=$(pf_other_count)
	fi
	if ((rc != 0)); then
		log "---- $srclog (tail):"; tr '\r' '\n' <"$srclog" | tail -n 5 >&2
		[[ $kind != moat ]] || moat_diag
		die "run $round $kind: smtp-source failed (status $rc) after ${counted:-0} of $MESSAGES messages; queue has $queued files"
	fi
	read -r rate cpumsg otherpct kpct <<<"$("$PY" -c "print(f'{$MESSAGES / $secs:.1f} {$scpu * 1e6 / $MESSAGES:.0f} {100 * $ocpu / ($secs * $ncpu):.0f} {100 * $kcpu / ($secs * $ncpu):.0f}')")"
	if ((otherpct > 10)); then
		note="; DISTURBED: other processes used $otherpct% of the CPUs"
		DISTURBED=$((DISTURBED + 1))
	fi
	if [[ $kind == moat ]]; then
		printf 'run %d moat:    %6d msgs in %7.3f s = %7.0f msg/s; server CPU %s us/msg, client %.1f s, kthreads %s%%, other %s%%; moat queue files %d (expect %d = %d warm-up + %d)%s\n' \
			"$round" "$MESSAGES" "$secs" "$rate" "$cpumsg" "$ccpu" "$kpct" "$otherpct" "$queued" "$want" "$WARMUP" "$MESSAGES" "$note"
	else
		printf 'run %d postfix: %6d msgs in %7.3f s = %7.0f msg/s; server CPU %s us/msg, client %.1f s, kthreads %s%%, other %s%%; postfix hold queue files %d (expect %d = %d warm-up + %d), other queues %d%s\n' \
			"$round" "$MESSAGES" "$secs" "$rate" "$cpumsg" "$ccpu" "$kpct" "$otherpct" "$queued" "$want" "$WARMUP" "$MESSAGES" "$other" "$note"
	fi
	[[ $counted == "$MESSAGES" ]] || die "run $round $kind: smtp-source counted ${counted:-nothing}, expected $MESSAGES"
	((queued == want)) || die "run $round $kind: $queued files queued, expected $want (config and logs in $dir)"
	[[ -z $other || $other -eq 0 ]] || die "run $round postfix: $other messages outside the hold queue"
	if [[ $kind == moat ]]; then
		MOAT_RATES+=("$rate")
		MOAT_CPU+=("$cpumsg")
		moat_stop
	else
		PF_RATES+=("$rate")
		PF_CPU+=("$cpumsg")
		pf_stop "$dir/etc"
	fi
	# The queues stay until the script ends: deleting them between runs
	# would slow down file creation in the next runs (see bench_fs).
}

[[ $ONLY == postfix ]] || moat_ident
bench_fs
log "bench: $RUNS round(s) of $MESSAGES messages x $MSG_LEN bytes over $SESSIONS reused sessions (+ $WARMUP warm-up), moatd vs Postfix $(postconf -h -d mail_version)"
for ((r = 1; r <= RUNS; r++)); do
	if ((r % 2 == 1)); then
		run_one moat "$r"
		run_one postfix "$r"
	else
		run_one postfix "$r"
		run_one moat "$r"
	fi
done

if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "bench: keeping $BENCH_OUT"; fi
if ((DISTURBED > 0)); then
	echo "note: $DISTURBED run(s) shared the CPUs with other load (> 10%); the numbers are less reliable"
fi
# medians, then the last line
"$PY" - "${MOAT_RATES[*]:-}" "${PF_RATES[*]:-}" "${MOAT_CPU[*]:-}" "${PF_CPU[*]:-}" <<'EOF'
import statistics, sys
moat = [float(x) for x in sys.argv[1].split()]
pf = [float(x) for x in sys.argv[2].split()]
moat_cpu = [float(x) for x in sys.argv[3].split()]
pf_cpu = [float(x) for x in sys.argv[4].split()]
m = statistics.median(moat) if moat else None
p = statistics.median(pf) if pf else None
fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
for name, rates, med, cpu in (("moat   ", moat, m, moat_cpu), ("postfix", pf, p, pf_cpu)):
    if rates:
        print(f"{name} msg/s: " + " ".join(f"{x:.0f}" for x in rates) + f"  median {med:.0f}"
              + f"; server CPU us/msg median {statistics.median(cpu):.0f}")
ratio = f"{m / p:.2f}" if m is not None and p is not None else "n/a"
if moat_cpu and pf_cpu:
    print(f"server CPU per message, postfix/moat: {statistics.median(pf_cpu) / statistics.median(moat_cpu):.2f}")
print(f"accept: moat={fmt(m)} postfix={fmt(p)} ratio={ratio}")
EOF
BENCH_OK=1
