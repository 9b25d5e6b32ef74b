#!/usr/bin/env bash
# bench/idle.sh - memory per idle SMTP session: moatd vs. a private Postfix.
#
# Usage (as root, from the repo root):
#   bench/idle.sh [sessions]          default 5000
#
# 1. Starts moatd as bench/accept.sh does (smtp_greeting_delay = 0,
#    smtp_max_sessions_per_ip and smtp_max_sessions >= sessions), runs
#    bench/idle.py against it: VmRSS of the moatd pid before and after
#    `sessions` idle connections have each read their 220 greeting.
# 2. Starts a private Postfix 3.7 (same configuration as accept.sh) with
#    default_process_limit = sessions + 50, so that every connection gets
#    its own smtpd process, and runs idle.py with --tree: the RSS summed
#    over the master and all its children before and after.  Summed RSS
#    counts the pages the smtpd processes share once per process; idle.py
#    also prints the Pss sum, which counts them once.  smtpd_timeout is
#    raised to 3600 s for this instance (Postfix needs ~2 minutes to fork
#    5000 smtpd processes here).
#
# Last line: idle: moat_per_session_kib=.. postfix_per_session_kib=..
# Environment: BENCH_KEEP=1 keeps the work dir bench/out/idle.XXXXXX,
# BENCH_ONLY=moat|postfix measures one side only (the other prints n/a).
set -euo pipefail

SESSIONS=${1:-5000}
ONLY=${BENCH_ONLY:-}
if [[ ! $SESSIONS =~ ^[0-9]+$ ]] || ((SESSIONS == 0)); then echo "usage: $0 [sessions]" >&2; exit 2; fi
case $ONLY in "" | moat | postfix) ;; *) echo "BENCH_ONLY must be moat or postfix" >&2; exit 2 ;; esac

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init idle
MOAT_PER=n/a
PF_PER=n/a

# run_idle LOGFILE PORT PID [idle.py options]: prints per_session_kib
run_idle() {
	local logf=$1 port=$2 pid=$3 rc=0
	shift 3
	"$PY" "$BENCH_DIR/idle.py" -n "$SESSIONS" "$@" 127.0.0.1 "$port" "$pid" >"$logf" || rc=$?
	cat "$logf"
	((rc == 0)) || return "$rc"
	tail -n 1 "$logf" | sed -n 's/.*per_session_kib=\([0-9.-]*\).*/\1/p'
}

if [[ $ONLY != postfix ]]; then
	moat_build
	moat_user
	moat_ident
	MOAT_MAX_PER_IP=$((SESSIONS > 10000 ? SESSIONS : 10000))
	MOAT_MAX_SESSIONS=$((SESSIONS > 20000 ? SESSIONS : 20000))
	moat_start "$BENCH_OUT/moat"
	log "bench: moatd pid $MOAT_PID on 127.0.0.1:$MOAT_PORT, $SESSIONS idle sessions"
	echo "== moat (moatd pid $MOAT_PID)"
	out=$(run_idle "$BENCH_OUT/moat/idle.log" "$MOAT_PORT" "$MOAT_PID") || {
		cat "$BENCH_OUT/moat/idle.log"
		log "---- $BENCH_OUT/moat/moatd.log:"; tail -n 30 "$BENCH_OUT/moat/moatd.log" >&2
		moat_alive || die "moatd died during the idle test"
		die "idle.py failed against moatd"
	}
	printf '%s\n' "$out" | sed '$d'
	MOAT_PER=$(printf '%s\n' "$out" | tail -n 1)
	moat_alive || die "moatd died during the idle test"
	moat_stop
fi

if [[ $ONLY != moat ]]; then
	PLIMIT=$((SESSIONS + 50))
	# Postfix forks its smtpd processes one after the other (~30-70/s
	# here), so the first sessions wait minutes for the last: keep smtpd
	# from timing them out (default smtpd_timeout is 300 s).
	PF_EXTRA_MAINCF="smtpd_timeout = 3600s"
	pf_start "$BENCH_OUT/postfix" "$PLIMIT"
	PF_MASTER=$(pf_master_pid "$BENCH_OUT/postfix")
	log "bench: Postfix master pid $PF_MASTER on 127.0.0.1:$PF_PORT, default_process_limit $PLIMIT, $SESSIONS idle sessions"
	# let the processes started by the 220 probe settle: an smtpd that
	# served the probe stays around idle, and is counted in "before"
	sleep 1
	echo "== postfix (master pid $PF_MASTER, default_process_limit $PLIMIT, RSS summed over the master's process tree)"
	out=$(run_idle "$BENCH_OUT/postfix/idle.log" "$PF_PORT" "$PF_MASTER" --tree) || {
		cat "$BENCH_OUT/postfix/idle.log"
		die "idle.py failed against Postfix"
	}
	printf '%s\n' "$out" | sed '$d'
	PF_PER=$(printf '%s\n' "$out" | tail -n 1)
	pf_stop "$BENCH_OUT/postfix/etc"
fi

echo "idle: moat_per_session_kib=$MOAT_PER postfix_per_session_kib=$PF_PER"
BENCH_OK=1
