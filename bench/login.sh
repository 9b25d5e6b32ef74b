#!/bin/sh
# bench/login.sh - what a portal login costs: moatd with its admin API on
# loopback, N logins in a row (each an argon2id verification on the API
# thread), the median and the slowest in ms. No baseline: the figure is
# compared with the argon2 costs in docs/PERFORMANCE.md.
#
#   bench/login.sh [N]     (default 20; uses $MOATD or build/moatd)
set -eu
cd "$(dirname "$0")/.."
N=${1:-20}
MOATD=${MOATD:-$PWD/build/moatd} N=$N /usr/bin/python3 - <<'PY'
import os, statistics, sys, time
sys.path.insert(0, "tests/lib")
sys.path.insert(0, "tests/api")
from apiutil import AdminMoatd
m = AdminMoatd(name="bench-login")
m.start()
try:
    c = m.client()
    times = []
    for _ in range(int(os.environ["N"])):
        t = time.monotonic()
        r = c.login("admin", m.password)
        times.append((time.monotonic() - t) * 1000)
        assert r.status == 200, r
    print("login: n=%d median_ms=%.1f max_ms=%.1f" % (len(times), statistics.median(times),
                                                      max(times)))
finally:
    m.stop()
PY
