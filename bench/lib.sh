# shellcheck shell=bash
# bench/lib.sh - helpers shared by bench/accept.sh, bench/idle.sh and
# bench/relay.sh.
# Sourced, not run.  Needs root, Debian's /usr/bin/python3 and Postfix 3.7.
#
# Everything a script starts is recorded here and torn down by bench_cleanup
# (installed as an EXIT trap by bench_init): moatd by its pid, each private
# Postfix instance with `postfix -c DIR stop` (then `abort`, then a kill of
# its master pid), and any other background pid registered with
# bench_track_pid (smtp-sink started by sink_start, for one).

PY=/usr/bin/python3
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
MOATD=$REPO_DIR/build/moatd
MOATD_RUN=$MOATD   # the copy that is run: see moat_build

BENCH_PIDS=()      # background pids we started (moatd, helpers)
BENCH_POSTFIX=()   # config dirs of Postfix instances we started
BENCH_OUT=""       # the per-invocation temp dir under bench/out/
BENCH_DATA=""      # where daemons keep their queues: BENCH_OUT or a loop mount
BENCH_MOUNT=""     # the loop-mounted file system we made, if any
BENCH_OK=0         # set to 1 by a script that finished cleanly

log() { printf '%s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

bench_init() { # bench_init NAME
	[[ $(id -u) -eq 0 ]] || die "run as root (the private Postfix instance needs it)"
	[[ -x $PY ]] || die "$PY not found"
	command -v postfix >/dev/null || die "postfix is not installed"
	command -v smtp-source >/dev/null || die "smtp-source is not installed"
	mkdir -p "$REPO_DIR/bench/out"
	BENCH_OUT=$(mktemp -d "$REPO_DIR/bench/out/$1.XXXXXX")
	# moatd drops to user moat, Postfix daemons run as postfix: both
	# must be able to reach the directories below.
	chmod 755 "$REPO_DIR/bench/out" "$BENCH_OUT"
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	log "bench: work dir $BENCH_OUT"
}

bench_track_pid() { BENCH_PIDS+=("$1"); }

bench_untrack_pid() {
	local p keep=()
	for p in "${BENCH_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	BENCH_PIDS=("${keep[@]}")
}

# Stop a pid we started: TERM, wait up to ~5 s, then KILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "bench: pid $pid ignored SIGTERM for 5 s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done
	for p in "${BENCH_POSTFIX[@]}"; do pf_stop "$p"; done
	if [[ -n $BENCH_MOUNT ]] && mountpoint -q "$BENCH_MOUNT"; then
		if [[ $BENCH_OK -eq 1 && ${BENCH_KEEP:-0} != 1 ]]; then
			umount "$BENCH_MOUNT" 2>/dev/null || umount -l "$BENCH_MOUNT" || true
		else
			log "bench: $BENCH_MOUNT is still mounted; umount it before removing $BENCH_OUT"
		fi
	fi
	if [[ -n $BENCH_OUT && -d $BENCH_OUT ]]; then
		if [[ $BENCH_OK -eq 1 ]]; then
			[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$BENCH_OUT"
		else
			log "bench: failed or interrupted; kept $BENCH_OUT (configs, logs, queues)"
		fi
	fi
	exit "$rc"
}

# bench_fs: choose where the queues live (sets BENCH_DATA) and describe it.
#   BENCH_FS unset or "dir": directories under BENCH_OUT, on whatever file
#     system holds bench/out.
#   BENCH_FS=loop[:SIZE]: a fresh ext4 file system (mkfs.ext4 defaults, so
#     with a journal) in a sparse image BENCH_OUT/fs.img, loop-mounted on
#     BENCH_OUT/fs; SIZE as for truncate(1), default 8G.  Unmounted at exit.
bench_fs() {
	local mode=${BENCH_FS:-dir} size dev fstype note=""
	case $mode in
	dir)
		BENCH_DATA=$BENCH_OUT
		;;
	loop | loop:*)
		size=${mode#loop}
		size=${size#:}
		size=${size:-8G}
		truncate -s "$size" "$BENCH_OUT/fs.img"
		mkfs.ext4 -q -F "$BENCH_OUT/fs.img" || die "mkfs.ext4 $BENCH_OUT/fs.img failed"
		mkdir -p "$BENCH_OUT/fs"
		mount -o loop "$BENCH_OUT/fs.img" "$BENCH_OUT/fs" || die "cannot loop-mount $BENCH_OUT/fs.img (BENCH_FS=loop needs mount and loop devices)"
		BENCH_MOUNT=$BENCH_OUT/fs
		chmod 755 "$BENCH_MOUNT"
		BENCH_DATA=$BENCH_MOUNT
		;;
	*) die "BENCH_FS must be dir or loop[:SIZE]" ;;
	esac
	read -r dev fstype < <(findmnt -n -o SOURCE,FSTYPE -T "$BENCH_DATA")
	if [[ $fstype == ext4 && -r /sys/fs/ext4/${dev##*/}/journal_task ]] &&
		[[ $(cat "/sys/fs/ext4/${dev##*/}/journal_task") == "<none>" ]]; then
		note=" WITHOUT a journal: creating files is slow for minutes after many files were deleted nearby (ext4 skips recently deleted inodes only when there is no journal); BENCH_FS=loop avoids it"
	fi
	echo "queues on: $BENCH_DATA ($fstype on $dev$note)"
}

# A free TCP port on 127.0.0.1 (asked from the kernel; there is a tiny race
# until the daemon binds it, which is fine for a benchmark).
free_port() {
	"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_220 PORT TIMEOUT_S [PID]: wait until the SMTP server on 127.0.0.1:PORT
# sends a greeting starting with 220.  If PID is given and dies, fail early.
wait_220() {
	local port=$1 timeout=$2 pid=${3:-} deadline line
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		# shellcheck disable=SC2016 # the inner script is single-quoted on purpose
		line=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$port"' || exit 1
			IFS= read -r l <&3 && printf "%s" "$l"; printf "QUIT\r\n" >&3' 2>/dev/null) || line=""
		[[ $line == 220* ]] && return 0
		sleep 0.1
	done
	return 1
}

# Number of regular files below a directory (0 if it does not exist).
count_files() {
	if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi
}

# ---------------------------------------------------------------- moatd --

moat_build() {
	if [[ ! -d $REPO_DIR/build ]]; then
		(cd "$REPO_DIR" && meson setup build) >&2 || die "meson setup build failed"
	fi
	ninja -C "$REPO_DIR/build" >&2 || die "ninja -C build failed"
	[[ -x $MOATD ]] || die "$MOATD was not built"
	# Run a copy, so that every run measures the same binary even if
	# build/moatd is rebuilt meanwhile.
	MOATD_RUN=$BENCH_OUT/moatd
	cp "$MOATD" "$MOATD_RUN"
}

# One line saying which moatd is measured (the tree may be dirty).
moat_ident() {
	local rev sum built
	rev=$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null) || rev="no git"
	sum=$(sha256sum "$MOATD_RUN" | cut -c1-12)
	built=$(date -r "$MOATD" '+%F %T')
	echo "moatd: $MOATD (run as a copy, sha256 $sum) built $built, tree $rev"
}

moat_user() {
	if ! id moat >/dev/null 2>&1; then
		log "bench: creating system user moat"
		useradd --system --no-create-home --shell /usr/sbin/nologin moat
	fi
}

# moat_conf DIR PORT > DIR/moatd.conf ; the data dir is DIR/data.
# By default moatd accepts and holds (delivery_paused, route = maildir).
# With MOAT_ROUTE set (e.g. "smtp:[127.0.0.1]:2526") it delivers instead:
# example.test goes to that route with `tls = ${MOAT_TLS:-none}`.
# MOAT_EXTRA_CONF (if set) is added to the global options.
moat_conf() {
	local dir=$1 port=$2
	cat <<EOF
# written by bench/$(basename "$0")
hostname = bench.moat.test
smtp_listen = 127.0.0.1:$port
data_dir = $dir/data
user = moat
log_level = warn
smtp_greeting_delay = 0
smtp_max_sessions_per_ip = ${MOAT_MAX_PER_IP:-10000}
smtp_max_sessions = ${MOAT_MAX_SESSIONS:-20000}
# no admin listener (the default 127.0.0.1:8025 would clash with a test's or
# another bench's moatd); a bench that needs it sets it in MOAT_EXTRA_CONF
admin_listen =
EOF
	if [[ -z ${MOAT_ROUTE:-} ]]; then
		cat <<EOF
# accept and hold: nothing is delivered during the bench
delivery_paused = yes
${MOAT_EXTRA_CONF:-}

[domain example.test]
recipients = any
route = maildir
EOF
	else
		cat <<EOF
# accept and deliver to the route below
${MOAT_EXTRA_CONF:-}

[domain example.test]
recipients = any
route = $MOAT_ROUTE
tls = ${MOAT_TLS:-none}
EOF
	fi
}

MOAT_PID=""
MOAT_PORT=""
MOAT_DIR=""

# moat_start DIR: write DIR/moatd.conf, start moatd in the foreground (as a
# background job of this script), wait for its 220.  Sets MOAT_PID,
# MOAT_PORT, MOAT_DIR.
moat_start() {
	MOAT_DIR=$1
	mkdir -p "$MOAT_DIR"
	chmod 755 "$MOAT_DIR"
	MOAT_PORT=$(free_port)
	moat_conf "$MOAT_DIR" "$MOAT_PORT" >"$MOAT_DIR/moatd.conf"
	"$MOATD_RUN" -c "$MOAT_DIR/moatd.conf" >"$MOAT_DIR/moatd.log" 2>&1 &
	MOAT_PID=$!
	bench_track_pid "$MOAT_PID"
	if ! wait_220 "$MOAT_PORT" 30 "$MOAT_PID"; then
		log "---- $MOAT_DIR/moatd.log:"
		tail -n 30 "$MOAT_DIR/moatd.log" >&2 || true
		if kill -0 "$MOAT_PID" 2>/dev/null; then
			die "moatd (pid $MOAT_PID) did not answer 220 on 127.0.0.1:$MOAT_PORT within 30 s"
		fi
		local rc=0
		wait "$MOAT_PID" || rc=$?
		bench_untrack_pid "$MOAT_PID"
		die "moatd exited with status $rc before answering 220 (config $MOAT_DIR/moatd.conf)"
	fi
}

moat_alive() { kill -0 "$MOAT_PID" 2>/dev/null; }

# After a failure: is moatd still running, and if not, how did it end?
moat_diag() {
	local rc=0 pid=$MOAT_PID
	sleep 1 # a moatd that is shutting down gets a moment to finish
	if moat_alive; then
		log "bench: moatd (pid $pid) is still running"
	else
		wait "$pid" || rc=$?
		bench_untrack_pid "$pid"
		MOAT_PID=""
		if ((rc > 128)); then
			log "bench: moatd (pid $pid) was killed by signal $((rc - 128)) ($(kill -l $((rc - 128))))"
		else
			log "bench: moatd (pid $pid) exited with status $rc; this script sent it no signal" \
				"(a 421 4.3.2 'Service shutting down' with status 0 means a SIGTERM/SIGINT from elsewhere)"
		fi
	fi
	log "---- $MOAT_DIR/moatd.log (last 30 lines):"
	tail -n 30 "$MOAT_DIR/moatd.log" >&2 || true
}

moat_stop() {
	[[ -n $MOAT_PID ]] || return 0
	stop_pid "$MOAT_PID"
	bench_untrack_pid "$MOAT_PID"
	MOAT_PID=""
}

moat_queue_count() { count_files "$MOAT_DIR/data/queue"; }

# -------------------------------------------------------------- Postfix --

PF_PORT=""
PF_DIR=""

# pf_setup DIR PORT PROCESS_LIMIT: a private Postfix instance that accepts
# mail for example.test from 127.0.0.0/8 and puts it on hold; with
# PF_RELAY_PORT set, a plain relay instead: no HOLD, example.test is
# delivered by the smtp client to 127.0.0.1:PF_RELAY_PORT (queue, fsync and
# scheduling as shipped).
#   DIR/etc    main.cf, master.cf (root-owned, apart from the queue)
#   DIR/queue  queue_directory (hold queue: DIR/queue/hold)
#   DIR/data   data_directory
#   DIR/log    maillog
# PF_EXTRA_MAINCF (if set) is appended to main.cf.
pf_setup() {
	local dir=$1 port=$2 plimit=$3 what transport restrictions
	if [[ -n ${PF_RELAY_PORT:-} ]]; then
		what="relay to 127.0.0.1:$PF_RELAY_PORT"
		transport="inline:{ example.test=smtp:[127.0.0.1]:$PF_RELAY_PORT }"
		restrictions="permit_mynetworks, reject"
	else
		what="accept and hold"
		# held mail would go to the discard port, where nothing listens
		transport="inline:{ example.test=smtp:[127.0.0.1]:9 }"
		restrictions="check_client_access static:HOLD, permit_mynetworks, reject"
	fi
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/log"
	chmod 755 "$dir" "$dir/etc" "$dir/queue" "$dir/log"
	chown postfix: "$dir/data"
	chmod 700 "$dir/data"
	cat >"$dir/etc/main.cf" <<EOF
# written by bench/$(basename "$0"): private instance, $what
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
transport_maps = $transport
# like moat's [domain example.test]: only example.test is accepted
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = $restrictions
biff = no
append_dot_mydomain = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
# no DNS
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
# no anvil rate/count limits
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
default_process_limit = $plimit
in_flow_delay = 0
# no /dev/log here: log to a file through postlogd
maillog_file = $dir/log/maillog
maillog_file_prefixes = /var, /dev/stdout, $dir/log
${PF_EXTRA_MAINCF:-}
EOF
	# No chroot anywhere ("n" in the 5th column).
	cat >"$dir/etc/master.cf" <<EOF
# written by bench/$(basename "$0")
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

# pf_start DIR [PROCESS_LIMIT]: set up and start a fresh instance in DIR,
# wait for its 220.  Sets PF_DIR and PF_PORT.
pf_start() {
	PF_DIR=$1
	PF_PORT=$(free_port)
	pf_setup "$PF_DIR" "$PF_PORT" "${2:-500}"
	BENCH_POSTFIX+=("$PF_DIR/etc")
	postfix -c "$PF_DIR/etc" start >"$PF_DIR/start.log" 2>&1 || {
		cat "$PF_DIR/start.log" >&2
		die "postfix -c $PF_DIR/etc start failed"
	}
	if ! wait_220 "$PF_PORT" 30; then
		cat "$PF_DIR/start.log" >&2
		tail -n 30 "$PF_DIR/log/maillog" >&2 2>/dev/null || true
		die "private Postfix did not answer 220 on 127.0.0.1:$PF_PORT"
	fi
}

# pid of the instance's master process
pf_master_pid() {
	local f=$1/queue/pid/master.pid
	[[ -r $f ]] && tr -d ' \n' <"$f"
}

pf_stop() { # pf_stop CONFIG_DIR
	local cfg=$1 dir pid i
	dir=$(dirname "$cfg")
	pid=$(pf_master_pid "$dir") || pid=""
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	postfix -c "$cfg" stop >/dev/null 2>&1 || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	postfix -c "$cfg" abort >/dev/null 2>&1 || true
	sleep 0.5
	kill -KILL "$pid" 2>/dev/null || true
}

pf_hold_count() { count_files "$PF_DIR/queue/hold"; }

# Files anywhere else in the queue (incoming, active, deferred, ...): a
# held message must not be there.
pf_other_count() {
	local d n=0 c
	for d in incoming active deferred defer maildrop corrupt; do
		c=$(count_files "$PF_DIR/queue/$d")
		n=$((n + c))
	done
	echo "$n"
}

# Messages anywhere in the queue (held or not).
pf_queue_count() {
	local h o
	h=$(pf_hold_count)
	o=$(pf_other_count)
	echo $((h + o))
}

# ----------------------------------------------------------- smtp-sink --

SINK_PID=""
SINK_PORT=""
SINK_LOG=""

# sink_start DIR: Postfix's smtp-sink on a free port of 127.0.0.1, with -c
# (running counters "sess=.. quit=.. mesg=N", one per CR, in DIR/sink.log;
# smtp-sink updates them at each end of data, session end and QUIT).  Sets
# SINK_PID, SINK_PORT, SINK_LOG.  SINK_ARGS (if set) adds options.
sink_start() {
	local dir=$1
	mkdir -p "$dir"
	SINK_PORT=$(free_port)
	SINK_LOG=$dir/sink.log
	# shellcheck disable=SC2086 # SINK_ARGS is a list of options
	smtp-sink -u postfix -c -m 1000 ${SINK_ARGS:-} "127.0.0.1:$SINK_PORT" 1024 >"$SINK_LOG" 2>&1 &
	SINK_PID=$!
	bench_track_pid "$SINK_PID"
	wait_220 "$SINK_PORT" 10 "$SINK_PID" || {
		cat "$SINK_LOG" >&2
		die "smtp-sink did not answer 220 on 127.0.0.1:$SINK_PORT"
	}
}

# Messages smtp-sink has received so far (its last complete mesg= counter:
# each ends with a CR).
sink_count() {
	local n
	n=$(tail -c 200 "$SINK_LOG" 2>/dev/null | grep -a -o $'mesg=[0-9]*\r' | tail -n 1 | tr -dc 0-9)
	echo "${n:-0}"
}

sink_stop() {
	[[ -n $SINK_PID ]] || return 0
	stop_pid "$SINK_PID"
	bench_untrack_pid "$SINK_PID"
	SINK_PID=""
}
