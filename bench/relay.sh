#!/usr/bin/env bash
# bench/relay.sh - relay throughput and latency: moatd vs. a private Postfix 3.7.
#
# Usage (as root, from the repo root):
#   bench/relay.sh [messages] [sessions] [runs]       defaults: 20000 20 3
#
# 1. Throughput, end to end, in rounds (round 1: moat first, round 2:
#    Postfix first, ...):
#      smtp-source -c -d -s SESSIONS -m MESSAGES -l 4096 \
#          -f sender@bench.test -t rcpt@example.test 127.0.0.1:PORT
#    into
#      - moatd, [domain example.test] route = smtp:[127.0.0.1]:SINKPORT,
#        tls = none (delivery defaults: up to 10 connections to the
#        destination, reused, PIPELINING); or
#      - a private Postfix as a plain relay: relay_domains = example.test,
#        transport_maps = inline:{ example.test=smtp:[127.0.0.1]:SINKPORT },
#        no HOLD, queue and fsync as shipped (bench/lib.sh pf_setup);
#    both delivering to `smtp-sink -c` on SINKPORT (a fresh one per run).
#    Every run gets a fresh daemon with an empty queue and a fresh sink,
#    then an untimed warm-up of BENCH_WARMUP messages (default 500; 0: none)
#    that is waited for until it has reached the sink and left the queue,
#    then the timed load.  msg/s = MESSAGES / seconds from just before
#    smtp-source starts until the sink's counter shows every message
#    (bench/relay_timed.py polls it every 2 ms).  Also printed: when
#    smtp-source had all its 250s (the acceptance rate under relay load),
#    the CPU per message of the server (moatd; Postfix's master and all its
#    children), of the sink and of smtp-source, kernel threads, and other
#    processes (a run where they took > 10% of the CPUs is flagged
#    DISTURBED: the machine may be shared).  After each run the script
#    waits until the queue is empty, gives the relay BENCH_SETTLE seconds
#    (default 2) to deliver anything more, and requires that the sink
#    counted exactly BENCH_WARMUP + MESSAGES messages; any mismatch, a failed
#    smtp-source or a dead moatd is an error (exit 1, work dir kept).
#    smtp-sink only counts, so "exactly once" is checked as "as many as
#    were sent, with the queue empty"; the latency run checks it per message.
#
# 2. Latency, a lighter run per server at half its median throughput from
#    step 1 (moat's rate decides the last line): bench/relay_lat.py sends
#    BENCH_LAT_SECONDS (default 10) worth of 4 KiB messages over
#    BENCH_LAT_SESSIONS (10) sessions, paced by an open-loop schedule, each
#    tagged (Subject: lat-N); it stamps the time it read each 250.  A small
#    Python SMTP sink (relay_lat.py sink, standard library only) stamps the
#    time each tagged message arrived.  Latency = receipt - 250, p50/p99 in
#    ms, over all but the first second's messages.  Every accepted tag
#    must arrive exactly once, and nothing else (otherwise: error).
#    BENCH_LAT_POSTFIX=0 skips Postfix's latency run.
#
# Output: one line per run, the medians, the latency lines, then as the
# last line
#   relay: moat=<msg/s> postfix=<msg/s> ratio=<moat/postfix> p99_ms=<moat p99>
#
# Where the queues live matters more than for bench/accept.sh: a relay
# deletes every file it creates, and on ext4 without a journal (this
# machine's root file system) creating files gets slow for minutes after
# many deletions nearby, so with the default BENCH_FS=dir the runs after the
# first one measure that (bench/lib.sh bench_fs warns).  BENCH_FS=loop
# (a fresh journaled ext4 image) is the representative setting.
#
# Environment: BENCH_WARMUP (500), BENCH_SETTLE (2), BENCH_LAT_SECONDS (10),
# BENCH_LAT_SESSIONS (10), BENCH_LAT_POSTFIX (1), BENCH_FS=dir|loop[:SIZE]
# (dir; loop puts the queues on a fresh journaled ext4 image, see
# bench/lib.sh bench_fs), BENCH_KEEP=1 keeps the work dir
# bench/out/relay.XXXXXX (configs, logs, queues, latency records),
# BENCH_ONLY=moat|postfix runs one side only (the rest prints n/a),
# BENCH_TIMEOUT (600: seconds a run may take to reach the sink).
set -euo pipefail

MESSAGES=${1:-20000}
SESSIONS=${2:-20}
RUNS=${3:-3}
WARMUP=${BENCH_WARMUP:-500}
SETTLE=${BENCH_SETTLE:-2}
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}
LAT_SESSIONS=${BENCH_LAT_SESSIONS:-10}
LAT_POSTFIX=${BENCH_LAT_POSTFIX:-1}
TIMEOUT=${BENCH_TIMEOUT:-600}
ONLY=${BENCH_ONLY:-}
MSG_LEN=4096
FROM=sender@bench.test
RCPT=rcpt@example.test

for v in "$MESSAGES" "$SESSIONS" "$RUNS" "$WARMUP" "$SETTLE" "$LAT_SECONDS" "$LAT_SESSIONS" "$TIMEOUT"; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "usage: $0 [messages] [sessions] [runs] (integers; see the BENCH_* variables)" >&2; exit 2; }
done
((MESSAGES > 0 && SESSIONS > 0 && RUNS > 0)) || { echo "usage: $0 [messages] [sessions] [runs] (all > 0)" >&2; exit 2; }
case $ONLY in "" | moat | postfix) ;; *) echo "BENCH_ONLY must be moat or postfix" >&2; exit 2 ;; esac

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init relay
if [[ $ONLY != postfix ]]; then
	moat_build
	moat_user
fi

# queued KIND: messages still in the server's queue
queued() {
	if [[ $1 == moat ]]; then
		local a b
		a=$(count_files "$MOAT_DIR/data/queue")
		b=$(count_files "$MOAT_DIR/data/incoming")
		echo $((a + b))
	else
		pf_queue_count
	fi
}

# drain KIND WANT TIMEOUT_S [latency]: wait until the queue is empty and (for
# smtp-sink) the sink has counted WANT; fails on timeout.
drain() {
	local kind=$1 want=$2 timeout=$3 lat=${4:-} deadline q n=-1
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		q=$(queued "$kind")
		[[ -n $lat ]] || n=$(sink_count)
		if ((q == 0)) && [[ -n $lat || $n -ge $want ]]; then
			return 0
		fi
		if [[ $kind == moat ]] && ! moat_alive; then
			moat_diag
			die "moatd stopped while its queue drained"
		fi
		sleep 0.05
	done
	if [[ -n $lat ]]; then
		log "bench: after $timeout s: $q message(s) still queued"
	else
		log "bench: after $timeout s: $q message(s) still queued, the sink counted $n of $want"
	fi
	[[ $kind != moat ]] || moat_diag
	return 1
}

# start_server KIND DIR SINKPORT: sets PORT and SERVER (pid whose process
# tree is the server)
start_server() {
	local kind=$1 dir=$2 sinkport=$3
	if [[ $kind == moat ]]; then
		MOAT_ROUTE="smtp:[127.0.0.1]:$sinkport" MOAT_TLS=none moat_start "$dir"
		PORT=$MOAT_PORT
		SERVER=$MOAT_PID
	else
		PF_RELAY_PORT=$sinkport pf_start "$dir"
		PORT=$PF_PORT
		SERVER=$(pf_master_pid "$dir")
	fi
}

stop_server() {
	if [[ $1 == moat ]]; then
		moat_stop
	else
		pf_stop "$2/etc"
	fi
}

# last value of smtp-source's -c counter in its log
source_count() {
	tr '\r' '\n' <"$1" | grep -E '^[0-9]+$' | tail -n 1 || true
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

MOAT_RATES=()
PF_RATES=()
MOAT_CPU=()
PF_CPU=()
DISTURBED=0
PORT=""
SERVER=""

# run_one moat|postfix ROUND
run_one() {
	local kind=$1 round=$2 dir logdir srclog rc timing secs ssecs scpu ccpu kcpu sinkcpu ocpu ncpu count top
	local want counted left final rate arate cpumsg sinkmsg srcmsg otherpct kpct busy note=""
	[[ -z $ONLY || $ONLY == "$kind" ]] || return 0
	dir=$BENCH_DATA/$kind-run$round
	logdir=$BENCH_OUT/$kind-run$round.logs
	mkdir -p "$logdir"
	sink_start "$logdir"
	start_server "$kind" "$dir" "$SINK_PORT"
	if ((WARMUP > 0)); then
		rc=0
		"$PY" "$BENCH_DIR/timed.py" "$logdir/warmup.log" "$SERVER" \
			smtp-source -c -d -s "$SESSIONS" -m "$WARMUP" -l "$MSG_LEN" \
			-f "$FROM" -t "$RCPT" "127.0.0.1:$PORT" >/dev/null || rc=$?
		if ((rc != 0)); then
			log "---- $logdir/warmup.log:"; tail -c 2000 "$logdir/warmup.log" >&2
			[[ $kind != moat ]] || moat_diag
			die "run $round $kind: warm-up smtp-source failed (status $rc)"
		fi
		drain "$kind" "$WARMUP" 120 || die "run $round $kind: the warm-up did not drain to the sink"
		counted=$(sink_count)
		((counted == WARMUP)) || die "run $round $kind: the sink counted $counted warm-up messages, expected $WARMUP"
	fi
	want=$((WARMUP + MESSAGES))
	srclog=$logdir/smtp-source.log
	rc=0
	timing=$("$PY" "$BENCH_DIR/relay_timed.py" "$srclog" "$SERVER" "$SINK_PID" "$SINK_LOG" "$want" "$TIMEOUT" \
		smtp-source -c -d -s "$SESSIONS" -m "$MESSAGES" -l "$MSG_LEN" \
		-f "$FROM" -t "$RCPT" "127.0.0.1:$PORT") || rc=$?
	read -r secs ssecs scpu ccpu sinkcpu ocpu kcpu ncpu count top <<<"$timing"
	counted=$(source_count "$srclog")
	if ((rc != 0)); then
		log "---- $srclog (tail):"; tr '\r' '\n' <"$srclog" | tail -n 5 >&2
		[[ $kind != moat ]] || moat_diag
		if ((rc == 3)); then
			die "run $round $kind: the sink counted ${count:-?} of $want messages after $TIMEOUT s; queue has $(queued "$kind")"
		fi
		die "run $round $kind: smtp-source failed (status $rc) after ${counted:-0} of $MESSAGES messages"
	fi
	[[ $counted == "$MESSAGES" ]] || die "run $round $kind: smtp-source counted ${counted:-nothing}, expected $MESSAGES"
	if [[ $kind == moat ]]; then
		moat_alive || { moat_diag; die "run $round moat: moatd stopped during the run"; }
	fi
	# Everything must leave the queue, and nothing more may arrive.
	drain "$kind" "$want" 120 || die "run $round $kind: the queue did not drain"
	sleep "$SETTLE"
	left=$(queued "$kind")
	final=$(sink_count)
	read -r rate arate cpumsg sinkmsg srcmsg otherpct kpct busy <<<"$("$PY" -c "print(f'{$MESSAGES / $secs:.1f} {$MESSAGES / $ssecs:.0f} {$scpu * 1e6 / $MESSAGES:.0f} {$sinkcpu * 1e6 / $MESSAGES:.0f} {$ccpu * 1e6 / $MESSAGES:.0f} {100 * $ocpu / ($secs * $ncpu):.0f} {100 * $kcpu / ($secs * $ncpu):.0f} {100 * ($scpu + $ccpu + $sinkcpu + $ocpu + $kcpu) / ($secs * $ncpu):.0f}')")"
	if ((otherpct > 10)); then
		note="; DISTURBED: other processes used $otherpct% of the CPUs (most: $top)"
		DISTURBED=$((DISTURBED + 1))
	fi
	printf 'run %d %-8s %6d msgs in %7.3f s = %6.0f msg/s end to end (all 250s after %.3f s = %s msg/s); CPU us/msg: server %s, sink %s, smtp-source %s; kthreads %s%%, other %s%%, CPUs busy %s%%; sink got %d (expect %d = %d warm-up + %d), queue left %d%s\n' \
		"$round" "$kind:" "$MESSAGES" "$secs" "$rate" "$ssecs" "$arate" "$cpumsg" "$sinkmsg" "$srcmsg" \
		"$kpct" "$otherpct" "$busy" "$final" "$want" "$WARMUP" "$MESSAGES" "$left" "$note"
	((final == want)) || die "run $round $kind: the sink counted $final messages, expected $want (logs in $logdir)"
	((left == 0)) || die "run $round $kind: $left messages left in the queue"
	if [[ $kind == moat ]]; then
		moat_alive || { moat_diag; die "run $round moat: moatd stopped after the run"; }
		MOAT_RATES+=("$rate")
		MOAT_CPU+=("$cpumsg")
	else
		PF_RATES+=("$rate")
		PF_CPU+=("$cpumsg")
	fi
	stop_server "$kind" "$dir"
	sink_stop
}

LAT_LINE_moat=""
LAT_LINE_postfix=""

# run_latency KIND RATE
run_latency() {
	local kind=$1 rate=$2 dir logdir sport spid n skip rc=0 out timing secs scpu ccpu sinkcpu ocpu kcpu ncpu top
	dir=$BENCH_DATA/$kind-lat
	logdir=$BENCH_OUT/$kind-lat.logs
	mkdir -p "$logdir"
	n=$("$PY" -c "print(max(1, round($rate * $LAT_SECONDS)))")
	skip=$("$PY" -c "print(min($n // 2, round($rate)))")
	sport=$(free_port)
	"$PY" "$BENCH_DIR/relay_lat.py" sink --port "$sport" --out "$logdir/sink.tsv" 2>"$logdir/sink.err" &
	spid=$!
	bench_track_pid "$spid"
	wait_220 "$sport" 10 "$spid" || { cat "$logdir/sink.err" >&2; die "the latency sink did not start"; }
	start_server "$kind" "$dir" "$sport"
	echo "latency $kind: $n messages at $rate msg/s over $LAT_SESSIONS sessions (first $skip left out)"
	timing=$("$PY" "$BENCH_DIR/relay_timed.py" "$logdir/sender.log" "$SERVER" "$spid" - 0 "$TIMEOUT" \
		"$PY" "$BENCH_DIR/relay_lat.py" send --port "$PORT" --rate "$rate" --messages "$n" \
		--sessions "$LAT_SESSIONS" --out "$logdir/sender.tsv") || rc=$?
	cat "$logdir/sender.log"
	read -r secs _ scpu ccpu sinkcpu ocpu kcpu ncpu _ top <<<"$timing"
	"$PY" -c "print(f'latency $kind: CPU us/msg: server {$scpu * 1e6 / $n:.0f}, sink {$sinkcpu * 1e6 / $n:.0f}, sender {$ccpu * 1e6 / $n:.0f}; kthreads {100 * $kcpu / ($secs * $ncpu):.0f}%, other {100 * $ocpu / ($secs * $ncpu):.0f}% (most: $top), CPUs busy {100 * ($scpu + $ccpu + $sinkcpu + $ocpu + $kcpu) / ($secs * $ncpu):.0f}%')"
	if ((rc != 0)); then
		[[ $kind != moat ]] || moat_diag
		die "latency $kind: the sender failed"
	fi
	drain "$kind" 0 120 latency || die "latency $kind: the queue did not drain"
	sleep "$SETTLE"
	stop_pid "$spid" # writes the last records
	bench_untrack_pid "$spid"
	if [[ $kind == moat ]]; then
		moat_alive || { moat_diag; die "latency moat: moatd stopped"; }
	fi
	stop_server "$kind" "$dir"
	rc=0
	out=$("$PY" "$BENCH_DIR/relay_lat.py" report "$logdir/sender.tsv" "$logdir/sink.tsv" --skip "$skip") || rc=$?
	printf '%s\n' "$out" | sed '$d' | sed "s/^/latency $kind: /"
	((rc == 0)) || die "latency $kind: not every message arrived exactly once (records in $logdir)"
	printf -v "LAT_LINE_$kind" '%s' "$(printf '%s\n' "$out" | tail -n 1)"
}

[[ $ONLY == postfix ]] || moat_ident
bench_fs
echo "machine: $(nproc) CPUs, load average at start $(loadavg)"
log "bench: $RUNS round(s) of $MESSAGES messages x $MSG_LEN bytes over $SESSIONS reused sessions (+ $WARMUP warm-up), relayed to smtp-sink: moatd vs Postfix $(postconf -h -d mail_version)"
for ((r = 1; r <= RUNS; r++)); do
	if ((r % 2 == 1)); then
		run_one moat "$r"
		run_one postfix "$r"
	else
		run_one postfix "$r"
		run_one moat "$r"
	fi
done

median() { "$PY" -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.0f}")' "$@"; }

if ((${#MOAT_RATES[@]} > 0)); then
	run_latency moat "$(median "${MOAT_RATES[@]}" | "$PY" -c 'import sys; print(max(1, round(float(sys.stdin.read()) / 2)))')"
fi
if ((${#PF_RATES[@]} > 0)) && [[ $LAT_POSTFIX == 1 ]]; then
	run_latency postfix "$(median "${PF_RATES[@]}" | "$PY" -c 'import sys; print(max(1, round(float(sys.stdin.read()) / 2)))')"
fi

if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "bench: keeping $BENCH_OUT"; fi
if ((DISTURBED > 0)); then
	echo "note: $DISTURBED run(s) shared the CPUs with other load (> 10%); the numbers are less reliable"
fi
echo "machine: load average at the end $(loadavg)"
"$PY" - "${MOAT_RATES[*]:-}" "${PF_RATES[*]:-}" "${MOAT_CPU[*]:-}" "${PF_CPU[*]:-}" "$LAT_LINE_moat" "$LAT_LINE_postfix" <<'EOF'
import re, statistics, sys
moat = [float(x) for x in sys.argv[1].split()]
pf = [float(x) for x in sys.argv[2].split()]
moat_cpu = [float(x) for x in sys.argv[3].split()]
pf_cpu = [float(x) for x in sys.argv[4].split()]
m = statistics.median(moat) if moat else None
p = statistics.median(pf) if pf else None
fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
for name, rates, med, cpu in (("moat   ", moat, m, moat_cpu), ("postfix", pf, p, pf_cpu)):
    if rates:
        print(f"{name} relayed msg/s: " + " ".join(f"{x:.0f}" for x in rates) + f"  median {med:.0f}"
              + f"; server CPU us/msg median {statistics.median(cpu):.0f}")
if moat_cpu and pf_cpu:
    print(f"server CPU per relayed message, postfix/moat: {statistics.median(pf_cpu) / statistics.median(moat_cpu):.2f}")
def p99(line):
    mm = re.search(r"p99_ms=([-0-9.]+)", line)
    return mm.group(1) if mm else "n/a"
for name, line in (("moat", sys.argv[5]), ("postfix", sys.argv[6])):
    if line:
        print(f"latency {name} (half its median rate): {line.split(': ', 1)[1]}")
ratio = f"{m / p:.2f}" if m is not None and p is not None else "n/a"
print(f"relay: moat={fmt(m)} postfix={fmt(p)} ratio={ratio} p99_ms={p99(sys.argv[5])}")
EOF
BENCH_OK=1
