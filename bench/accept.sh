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
# timed with CLOCK_MONOTONIC; msg/s = MESSAGES / seconds.  After each run
# the script checks that smtp-source succeeded and counted MESSAGES, that
# the daemon is still alive, and that the queue holds exactly
# BENCH_WARMUP + MESSAGES files; any mismatch is an error (exit 1, work dir
# kept).
#
# Output: one line per run, then the medians, then as the last line
#   accept: moat=<msg/s> postfix=<msg/s> ratio=<moat/postfix>
# Environment: BENCH_WARMUP (500), BENCH_KEEP=1 keeps the work dir
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

# smtp_source LOGFILE COUNT PORT: run smtp-source, print the elapsed seconds
# (CLOCK_MONOTONIC, measured around the process by Python).  Fails if
# smtp-source fails.
smtp_source() {
	local logf=$1 count=$2 port=$3
	"$PY" - "$logf" smtp-source -c -d -s "$SESSIONS" -m "$count" -l "$MSG_LEN" \
		-f "$FROM" -t "$RCPT" "127.0.0.1:$port" <<'EOF'
import subprocess, sys, time
logf, argv = sys.argv[1], sys.argv[2:]
with open(logf, "wb") as out:
    t0 = time.monotonic()
    rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode
    t1 = time.monotonic()
print(f"{t1 - t0:.6f}")
sys.exit(rc)
EOF
}

# last value of smtp-source's -c counter in its log
source_count() {
	tr '\r' '\n' <"$1" | grep -E '^[0-9]+$' | tail -n 1 || true
}

MOAT_RATES=()
PF_RATES=()

# run_one moat|postfix ROUND
run_one() {
	local kind=$1 round=$2 dir port secs counted queued other="" want rate srclog rc
	[[ -z $ONLY || $ONLY == "$kind" ]] || return 0
	dir=$BENCH_OUT/$kind-run$round
	if [[ $kind == moat ]]; then
		moat_start "$dir"
		port=$MOAT_PORT
	else
		pf_start "$dir"
		port=$PF_PORT
	fi
	if ((WARMUP > 0)); then
		rc=0
		smtp_source "$dir/warmup.log" "$WARMUP" "$port" >/dev/null || rc=$?
		if ((rc != 0)); then
			log "---- $dir/warmup.log:"; tail -c 2000 "$dir/warmup.log" >&2
			[[ $kind == moat ]] && { log "---- $dir/moatd.log:"; tail -n 30 "$dir/moatd.log" >&2; }
			die "run $round $kind: warm-up smtp-source failed (status $rc)"
		fi
	fi
	srclog=$dir/smtp-source.log
	rc=0
	secs=$(smtp_source "$srclog" "$MESSAGES" "$port") || rc=$?
	counted=$(source_count "$srclog")
	want=$((WARMUP + MESSAGES))
	if [[ $kind == moat ]]; then
		moat_alive || { log "---- $dir/moatd.log:"; tail -n 30 "$dir/moatd.log" >&2; die "run $round moat: moatd (pid $MOAT_PID) died during the run"; }
		queued=$(moat_queue_count)
	else
		queued=$(pf_hold_count)
		other=$(pf_other_count)
	fi
	if ((rc != 0)); then
		log "---- $srclog (tail):"; tr '\r' '\n' <"$srclog" | tail -n 5 >&2
		[[ $kind == moat ]] && { log "---- $dir/moatd.log:"; tail -n 30 "$dir/moatd.log" >&2; }
		die "run $round $kind: smtp-source failed (status $rc) after ${counted:-0} of $MESSAGES messages; queue has $queued files"
	fi
	rate=$("$PY" -c "print(f'{$MESSAGES / $secs:.1f}')")
	if [[ $kind == moat ]]; then
		printf 'run %d moat:    %6d msgs in %7.3f s = %7.0f msg/s; moat queue files %d (expect %d = %d warm-up + %d)\n' \
			"$round" "$MESSAGES" "$secs" "$rate" "$queued" "$want" "$WARMUP" "$MESSAGES"
	else
		printf 'run %d postfix: %6d msgs in %7.3f s = %7.0f msg/s; postfix hold queue files %d (expect %d = %d warm-up + %d), other queues %d\n' \
			"$round" "$MESSAGES" "$secs" "$rate" "$queued" "$want" "$WARMUP" "$MESSAGES" "$other"
	fi
	[[ $counted == "$MESSAGES" ]] || die "run $round $kind: smtp-source counted ${counted:-nothing}, expected $MESSAGES"
	((queued == want)) || die "run $round $kind: $queued files queued, expected $want (config and logs in $dir)"
	[[ -z $other || $other -eq 0 ]] || die "run $round postfix: $other messages outside the hold queue"
	if [[ $kind == moat ]]; then
		MOAT_RATES+=("$rate")
		moat_stop
	else
		PF_RATES+=("$rate")
		pf_stop "$dir/etc"
	fi
	# The queues have been counted; free the disk space now.
	[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$dir/data" "$dir/queue"
}

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
# medians, then the last line
"$PY" - "${MOAT_RATES[*]:-}" "${PF_RATES[*]:-}" <<'EOF'
import statistics, sys
moat = [float(x) for x in sys.argv[1].split()]
pf = [float(x) for x in sys.argv[2].split()]
m = statistics.median(moat) if moat else None
p = statistics.median(pf) if pf else None
fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
for name, rates, med in (("moat   ", moat, m), ("postfix", pf, p)):
    if rates:
        print(f"{name} msg/s: " + " ".join(f"{x:.0f}" for x in rates) + f"  median {med:.0f}")
ratio = f"{m / p:.2f}" if m is not None and p is not None else "n/a"
print(f"accept: moat={fmt(m)} postfix={fmt(p)} ratio={ratio}")
EOF
BENCH_OK=1
