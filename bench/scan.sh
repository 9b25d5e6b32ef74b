#!/usr/bin/env bash
# bench/scan.sh - what scanning costs: CPU per message, and the relay rate
# with scanning on and off against Postfix relaying without any scan.
#
# Usage (as root, from the repo root):
#   bench/scan.sh [scans] [relay messages] [relay runs]     defaults: 5000 20000 3
#
# 1. CPU per scan: `moatctl scan --repeat N` runs moatd's pipeline (every
#    check but clamd: SPF, DKIM, ARC, DMARC, MIME, links, attachments with
#    libmagic and libarchive, phishing, GTUBE) N times in one process on
#    each of two messages made by bench/scan_msgs.py, DKIM-signed, whose
#    SPF, key and DMARC records a private unbound serves:
#      text4k     4 KiB of plain text with links
#      mixed100k  ~100 KiB: text, HTML, a PDF and a zip of three files
#    and prints getrusage(RUSAGE_SELF) CPU time / scans, after one untimed
#    scan (so libunbound's cache and libmagic are warm: the steady state of
#    a gateway receiving from the same senders; every DNS lookup still
#    crosses to the resolver thread and back). unbound's own CPU is not
#    counted.
# 2. Relay: bench/relay.sh twice in the same invocation, with its own
#    defaults and BENCH_* settings (BENCH_FS=loop recommended):
#      - moat with `scan = no`, moat only (BENCH_ONLY=moat);
#      - moat with scanning on (the default), and Postfix as a plain relay.
#    smtp-source's messages come from sender@bench.test, a name libunbound
#    answers itself (RFC 6761), so the relay's scans run SPF/DMARC lookups
#    without network traffic.
#
# Output, last lines:
#   scan: text4k_cpu_us=... mixed100k_cpu_us=...
#   relay: moat_scan_off=... moat_scan_on=... postfix=... ratio_on_vs_postfix=...
set -euo pipefail

SCANS=${1:-5000}
MESSAGES=${2:-20000}
RUNS=${3:-3}
for v in "$SCANS" "$MESSAGES" "$RUNS"; do
	[[ $v =~ ^[0-9]+$ ]] && ((v > 0)) || { echo "usage: $0 [scans] [relay messages] [relay runs]" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init scan
moat_build
MOATCTL=$REPO_DIR/build/moatctl

# 1. CPU per scan
"$PY" "$BENCH_DIR/scan_msgs.py" msgs "$BENCH_OUT"
coproc DNS { "$PY" "$BENCH_DIR/scan_msgs.py" dns "$BENCH_OUT"; }
DNS_SERVER_PID=$DNS_PID # bash unsets DNS_PID when the coprocess ends
bench_track_pid "$DNS_SERVER_PID"
read -r UPSTREAM <&"${DNS[0]}"
cat >"$BENCH_OUT/scan.conf" <<EOC
hostname = bench.moat.test
data_dir = $BENCH_OUT/data
dns_resolver = $UPSTREAM
log_level = error
[domain example.test]
recipients = any
EOC
mkdir -p "$BENCH_OUT/data"
declare -A CPU
for m in text4k mixed100k; do
	out=$("$MOATCTL" -c "$BENCH_OUT/scan.conf" scan "$BENCH_OUT/$m.eml" --client-ip 192.0.2.25 \
		--helo mail.bench.example --from alice@bench.example --rcpt user@example.test \
		--repeat "$SCANS" 2>&1 >"$BENCH_OUT/$m.out")
	log "$m: $out"
	grep -q "^verdict: deliver" "$BENCH_OUT/$m.out" || { cat "$BENCH_OUT/$m.out" >&2; die "$m was not delivered"; }
	grep -q "DKIM_PASS" "$BENCH_OUT/$m.out" || { cat "$BENCH_OUT/$m.out" >&2; die "$m: DKIM did not pass"; }
	CPU[$m]=$(grep -o 'cpu_us_per_scan=[0-9.]*' <<<"$out" | cut -d= -f2)
	[[ -n ${CPU[$m]} ]] || die "$m: no CPU figure from moatctl: $out"
done
log "symbols (mixed100k):"
sed -n '/^symbols:/,/^headers:/p' "$BENCH_OUT/mixed100k.out" >&2
eval "exec ${DNS[1]}>&-"
wait "$DNS_SERVER_PID" 2>/dev/null || true
bench_untrack_pid "$DNS_SERVER_PID"

# 2. relay, scanning off then on, against Postfix
relay_line() { grep -E '^relay: ' | tail -n 1; }
log "bench: relay with scan = no (moat only)"
# relay.sh's own report goes to stderr as it runs (per run: msg/s, CPU per message)
BENCH_ONLY=moat MOAT_EXTRA_CONF="scan = no" BENCH_LAT_POSTFIX=0 \
	"$BENCH_DIR/relay.sh" "$MESSAGES" 20 "$RUNS" 2>&1 | tee "$BENCH_OUT/relay-off.log" >&2
OFF=$(relay_line <"$BENCH_OUT/relay-off.log")
log "bench: relay with scanning on, and Postfix"
"$BENCH_DIR/relay.sh" "$MESSAGES" 20 "$RUNS" 2>&1 | tee "$BENCH_OUT/relay-on.log" >&2
ON=$(relay_line <"$BENCH_OUT/relay-on.log")
off=$(sed -E 's/.*moat=([0-9.]+).*/\1/' <<<"$OFF")
on=$(sed -E 's/.*moat=([0-9.]+).*/\1/' <<<"$ON")
pf=$(sed -E 's/.*postfix=([0-9.]+).*/\1/' <<<"$ON")
BENCH_OK=1
echo "scan: text4k_cpu_us=${CPU[text4k]} mixed100k_cpu_us=${CPU[mixed100k]}"
echo "relay: moat_scan_off=$off moat_scan_on=$on postfix=$pf ratio_on_vs_postfix=$(awk -v a="$on" -v b="$pf" 'BEGIN { printf "%.2f", a / b }')"
