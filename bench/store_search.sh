#!/bin/sh
# bench/store_search.sh - the store's search latency at scale (issue 5:
# quarantine and tracking search over 1,000,000 messages, p95 < 100 ms).
#
#   bench/store_search.sh [ROWS] [QUERIES]     (default 1000000 and 200)
#
# Compiles bench/store_search.c against build/libmoat.a (run `ninja -C
# build` first), fills a fresh SQLite database in bench/out/ with ROWS
# tracking and ROWS quarantine rows through the store's own calls, and
# prints p50/p95/max of each typical search (first page of 50, with the
# recipients of each row). STORE_BENCH_DB=path reuses a filled database.
set -eu

ROWS=${1:-1000000}
QUERIES=${2:-200}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$REPO/bench/out
mkdir -p "$OUT"
BIN=$OUT/store_search
[ -f "$REPO/build/libmoat.a" ] || { echo "build first: ninja -C build" >&2; exit 1; }

# shellcheck disable=SC2046
cc -std=c17 -O2 -D_GNU_SOURCE -I"$REPO/src" -o "$BIN" "$REPO/bench/store_search.c" \
	"$REPO/build/libmoat.a" \
	$(pkg-config --libs sqlite3 libevent_core libevent_openssl libevent_pthreads openssl \
		zlib libunbound jansson gmime-3.0 libarchive libpsl libxml-2.0 libidn2 libcurl) \
	-lmagic -lm -pthread

DB=${STORE_BENCH_DB:-}
if [ -z "$DB" ]; then
	DB=$OUT/store_search.$$.db
	trap 'rm -f "$DB" "$DB-wal" "$DB-shm"' EXIT
fi
echo "store_search: $ROWS rows, $QUERIES queries per search, $(nproc) CPUs, $(date -u +%F)"
"$BIN" "$DB" "$ROWS" "$QUERIES"
ls -l "$DB" | awk '{ printf "database: %.0f MB\n", $5 / 1048576 }'
