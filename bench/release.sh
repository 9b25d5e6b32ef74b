#!/usr/bin/env bash
# bench/release.sh - a batch release from quarantine: moatd vs. a private
# Postfix 3.7 releasing the same number of held messages.
#
# Usage (as root, from the repo root):
#   bench/release.sh [messages] [runs]       defaults: 1000 3
#
# Per run and server, with a fresh daemon and a fresh smtp-sink -c:
#   - moatd: example.test routed to the sink, an administrator rule
#     "[rule hold] then = quarantine" holding every message, a real clamd
#     (tests/lib/clamd_server.py: Debian's clamav-daemon with a one-line
#     signature database) for the release's malware rescan, the admin API
#     on a free loopback port; an API token from `moatctl token create`.
#     MESSAGES messages of 4 KiB go in with smtp-source (10 sessions);
#     once quarantine/ holds them all, the clock starts and ONE request
#       POST /api/v1/quarantine/batch {"action":"release","ids":[...]}
#     releases them (each: CRC-checked read, clamd rescan, the store's
#     held -> released gate, queue file written and synced, quarantine
#     copy removed, handed to delivery); the clock stops when the sink
#     has counted every message.
#   - Postfix as the baseline: the same messages put on hold by
#     "check_client_access static:HOLD" (no content scanning: Postfix has
#     none), released by `postsuper -H ALL` + `postqueue -f` (held mail
#     goes to the deferred queue; the flush has it delivered now, as an
#     administrator releasing a batch would), delivered by its smtp client
#     to the sink; same clock.
# Checked after every run: the sink counted exactly MESSAGES, moat's
# quarantine/ and queue/ are empty, every entry is "released" in the
# store (a mismatch is an error: exit 1, work dir kept).
#
# Output: one line per run, then as the last line
#   release: n=<messages> moat_s=<median> api_s=<median> postfix_s=<median> ratio=<postfix/moat>
# (api_s: until the batch request answered; ratio > 1: moat was faster).
#
# Environment: BENCH_FS=dir|loop[:SIZE] (see bench/lib.sh bench_fs),
# BENCH_KEEP=1 keeps the work dir, BENCH_RESCAN=0 releases without the
# malware rescan (then no clamd is started).
set -euo pipefail

MESSAGES=${1:-1000}
RUNS=${2:-3}
RESCAN=${BENCH_RESCAN:-1}
MSG_LEN=4096
FROM=sender@bench.test
RCPT=rcpt@example.test

for v in "$MESSAGES" "$RUNS"; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "usage: $0 [messages] [runs]" >&2; exit 2; }
done
((MESSAGES > 0 && MESSAGES <= 1000 && RUNS > 0)) ||
	{ echo "usage: $0 [messages (1..1000, one batch)] [runs]" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init release
moat_build
moat_user
MOATCTL=$REPO_DIR/build/moatctl
[[ -x $MOATCTL ]] || die "$MOATCTL was not built"
bench_fs

CLAMD_PID=""
CLAMD_SPEC=""
if ((RESCAN)); then
	# A real clamd for the rescan, reachable by user moat.
	mkdir -p "$REPO_DIR/tests/out"
	chmod 755 "$REPO_DIR/tests/out"
	"$PY" -c '
import os, signal, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "lib"))
from clamd_server import Clamd
c = Clamd()
os.chmod(os.path.dirname(c.unix_spec[5:]), 0o755)
os.chmod(c.unix_spec[5:], 0o777)
print(c.unix_spec, flush=True)
signal.signal(signal.SIGTERM, lambda *a: (c.stop(), sys.exit(0)))
signal.pause()
' "$REPO_DIR" >"$BENCH_OUT/clamd.spec" 2>"$BENCH_OUT/clamd.log" &
	CLAMD_PID=$!
	bench_track_pid "$CLAMD_PID"
	for ((i = 0; i < 600; i++)); do
		[[ -s $BENCH_OUT/clamd.spec ]] && break
		kill -0 "$CLAMD_PID" 2>/dev/null || { cat "$BENCH_OUT/clamd.log" >&2; die "clamd did not start"; }
		sleep 0.1
	done
	CLAMD_SPEC=$(head -n 1 "$BENCH_OUT/clamd.spec")
	[[ $CLAMD_SPEC == unix:* ]] || die "clamd did not start (see $BENCH_OUT/clamd.log)"
	log "bench: clamd at $CLAMD_SPEC"
fi

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: until COMMAND succeeds
wait_for() {
	local what=$1 timeout=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@"; do
		((SECONDS < deadline)) || { log "bench: timed out waiting for $what"; return 1; }
		sleep 0.02
	done
}

now() { date +%s.%N; }
held_moat() { (($(count_files "$MOAT_DIR/data/quarantine") == MESSAGES)); }
held_pf() { (($(pf_hold_count) == MESSAGES)); }
sunk() { (($(sink_count) >= MESSAGES)); }

MOAT_TIMES=()
API_TIMES=()
PF_TIMES=()

run_moat() {
	local round=$1 dir api_port token ids t0 t1 t2 code released
	dir=$BENCH_DATA/moat-run$round
	sink_start "$BENCH_OUT/moat-run$round.logs"
	api_port=$(free_port)
	MOAT_ROUTE="smtp:[127.0.0.1]:$SINK_PORT" MOAT_TLS=none MOAT_EXTRA_CONF="
admin_listen = 127.0.0.1:$api_port
${CLAMD_SPEC:+clamd = $CLAMD_SPEC}

[rule hold]
priority = 1
then = quarantine
" moat_start "$dir"
	smtp-source -c -d -s 10 -m "$MESSAGES" -l "$MSG_LEN" -f "$FROM" -t "$RCPT" \
		"127.0.0.1:$MOAT_PORT" >"$dir/smtp-source.log" 2>&1 || die "smtp-source into moatd failed"
	wait_for "$MESSAGES messages in quarantine/" 120 held_moat || { moat_diag; die "not all held"; }
	# the store writer records them off the mail path: wait for the records too
	token=$("$MOATCTL" -c "$dir/moatd.conf" token create --scope read,operate --json |
		"$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	ids=$(find "$dir/data/quarantine" -type f -printf '%f\n' |
		"$PY" -c 'import json,sys; print(json.dumps({"action":"release","rescan":sys.argv[1]=="1","ids":sys.stdin.read().split()}))' "$RESCAN")
	wait_for "the quarantine records" 60 bash -c "[[ \$(curl -s -H 'Authorization: Bearer $token' \
		'http://127.0.0.1:$api_port/api/v1/quarantine?state=held&limit=500' | \
		$PY -c 'import json,sys; print(len(json.load(sys.stdin)[\"items\"]))') -ge $((MESSAGES < 500 ? MESSAGES : 500)) ]]"
	sleep 1
	t0=$(now)
	code=$(curl -s -o "$dir/batch.json" -w '%{http_code}' -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' --data-binary "$ids" \
		"http://127.0.0.1:$api_port/api/v1/quarantine/batch")
	t1=$(now)
	[[ $code == 200 ]] || { cat "$dir/batch.json" >&2; die "batch release: HTTP $code"; }
	wait_for "the sink to count $MESSAGES" 300 sunk || { moat_diag; die "released mail did not arrive"; }
	t2=$(now)
	sleep 1
	(($(sink_count) == MESSAGES)) || die "the sink counted $(sink_count) messages, expected $MESSAGES"
	(($(count_files "$dir/data/quarantine") == 0)) || die "quarantine/ is not empty"
	wait_for "an empty queue" 30 bash -c "(( \$(find '$dir/data/queue' -type f | wc -l) == 0 ))"
	released=$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for x in r["results"] if x.get("status")=="ok"))' "$dir/batch.json")
	((released == MESSAGES)) || die "the batch answer says $released released, expected $MESSAGES"
	moat_stop
	sink_stop
	MOAT_TIMES+=("$(echo "$t2 - $t0" | bc)")
	API_TIMES+=("$(echo "$t1 - $t0" | bc)")
	log "run $round moat:    released $MESSAGES in $(echo "$t2 - $t0" | bc) s (API answered after $(echo "$t1 - $t0" | bc) s)"
}

run_pf() {
	local round=$1 dir t0 t2
	dir=$BENCH_DATA/postfix-run$round
	sink_start "$BENCH_OUT/postfix-run$round.logs"
	PF_RELAY_PORT=$SINK_PORT \
		PF_EXTRA_MAINCF="smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject" \
		pf_start "$dir"
	smtp-source -c -d -s 10 -m "$MESSAGES" -l "$MSG_LEN" -f "$FROM" -t "$RCPT" \
		"127.0.0.1:$PF_PORT" >"$dir/smtp-source.log" 2>&1 || die "smtp-source into Postfix failed"
	wait_for "$MESSAGES messages on hold" 120 held_pf || die "Postfix did not hold them all"
	sleep 1
	t0=$(now)
	# held mail goes to the deferred queue; a flush makes the queue manager take it now
	postsuper -c "$dir/etc" -H ALL 2>/dev/null
	postqueue -c "$dir/etc" -f
	wait_for "the sink to count $MESSAGES" 300 sunk || die "Postfix's released mail did not arrive"
	t2=$(now)
	sleep 1
	(($(sink_count) == MESSAGES)) || die "the sink counted $(sink_count) messages, expected $MESSAGES"
	pf_stop "$dir/etc"
	sink_stop
	PF_TIMES+=("$(echo "$t2 - $t0" | bc)")
	log "run $round postfix: released $MESSAGES in $(echo "$t2 - $t0" | bc) s"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

log "$(moat_ident)"
for ((r = 1; r <= RUNS; r++)); do
	if ((r % 2)); then run_moat "$r"; run_pf "$r"; else run_pf "$r"; run_moat "$r"; fi
done
m=$(median "${MOAT_TIMES[@]}")
a=$(median "${API_TIMES[@]}")
p=$(median "${PF_TIMES[@]}")
BENCH_OK=1
echo "release: n=$MESSAGES rescan=$RESCAN moat_s=$m api_s=$a postfix_s=$p ratio=$(echo "scale=2; $p / $m" | bc)"
