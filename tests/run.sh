#!/bin/bash
# tests/run.sh - build moat and run every suite; the last line is the tally
# "N passed, N failed" over all of them (CI reads it). `make test` runs this
# after scripts/deps.sh --test.
#
# Suites: unit (cmocka), session (scripted SMTP over raw sockets), clients
# (swaks, smtplib), crash (kill -9), dns, control, delivery, scan, api (the
# admin HTTP API and docs/openapi.yaml), m365 (the Microsoft 365 client and
# wizard against tests/m365/emulator.py), portal (the web portal in headless
# Chromium, tests/portal/), style (clang-format), docs
# (generated docs are current), then
# unit+session again under AddressSanitizer+UBSan, then every libFuzzer
# target over its seed corpus plus a short fuzzing run.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
OUT=$ROOT/tests/out
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 755 "$OUT"

PASSED=0
FAILED=0
SUMMARY=()

note() { # suite passed failed
	PASSED=$((PASSED + $2))
	FAILED=$((FAILED + $3))
	SUMMARY+=("$(printf '%-14s %5d passed, %d failed' "$1" "$2" "$3")")
}

# Run a python suite; take its "suite X: N passed, M failed" line.
py_suite() { # name dir [env...]
	local name=$1 dir=$2 log
	shift 2
	log=$OUT/$name.log
	echo "== suite $name"
	env "$@" "$PY" tests/lib/runner.py "$name" "$dir" >"$log" 2>&1
	tail -n 1 "$log"
	local line p f
	line=$(grep -E "^suite $name: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "suite $name did not finish; see $log"
		tail -n 30 "$log"
		note "$name" 0 1
		return
	fi
	p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
	f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
	if [ "$f" -gt 0 ]; then
		grep -E "^(FAIL|ERROR):" "$log" | head -n 40
	fi
	note "$name" "$p" "$f"
}

# Run the cmocka binaries of a build dir, counting test cases (TAP output).
unit_suite() { # name builddir
	local name=$1 dir=$2 p=0 f=0 t out
	echo "== suite $name"
	for t in "$dir"/tests/unit/test_*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		out=$(CMOCKA_MESSAGE_OUTPUT=TAP "$t" 2>&1)
		local rc=$?
		p=$((p + $(echo "$out" | grep -cE '^ok ')))
		f=$((f + $(echo "$out" | grep -cE '^not ok ')))
		if [ $rc -ne 0 ] && ! echo "$out" | grep -qE '^not ok '; then
			f=$((f + 1)) # crashed or sanitizer report without a failed case
		fi
		if [ $rc -ne 0 ]; then
			echo "$out" | grep -vE '^ok ' | head -n 40
		fi
	done
	echo "suite $name: $p passed, $f failed"
	note "$name" "$p" "$f"
}

build() { # dir [meson setup options...]
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$OUT/setup-$(basename "$dir").log" 2>&1 ||
			{ cat "$OUT/setup-$(basename "$dir").log"; return 1; }
	fi
	ninja -C "$dir" >"$OUT/ninja-$(basename "$dir").log" 2>&1 ||
		{ tail -n 40 "$OUT/ninja-$(basename "$dir").log"; return 1; }
}

echo "== build"
if ! build build; then
	note build 0 1
	echo "0 passed, 1 failed"
	exit 1
fi
note build 1 0

unit_suite unit build
py_suite session tests/session
py_suite clients tests/clients
py_suite crash tests/crash
py_suite dns tests/dns
py_suite control tests/control
py_suite delivery tests/delivery
py_suite scan tests/scan
py_suite api tests/api
py_suite m365 tests/m365

# The portal in headless Chromium (tests/portal/run.mjs; it fails, never
# skips, when Chromium or playwright-core is missing).
echo "== suite portal"
if ! command -v node >/dev/null; then
	echo "no node: install what the tests need with scripts/deps.sh --test"
	note portal 0 1
else
	node tests/portal/run.mjs >"$OUT/portal.log" 2>&1
	tail -n 1 "$OUT/portal.log"
	line=$(grep -E "^suite portal: [0-9]+ passed, [0-9]+ failed" "$OUT/portal.log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "suite portal did not finish; see $OUT/portal.log"
		tail -n 30 "$OUT/portal.log"
		note portal 0 1
	else
		p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
		f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
		if [ "$f" -gt 0 ]; then
			grep -E "^portal: |^✖" "$OUT/portal.log" | head -n 40
		fi
		note portal "$p" "$f"
	fi
fi

echo "== suite style"
if clang-format --dry-run --Werror src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c tests/m365/*.c \
	>"$OUT/style.log" 2>&1; then
	note style 1 0
else
	head -n 30 "$OUT/style.log"
	echo "clang-format disagrees with the code: run clang-format -i on the files above"
	note style 0 1
fi

echo "== suite docs"
if ./build/moatd --options | diff -u - <(sed -n '/^| name |/,/^$/p' docs/CONFIG.md | sed '/^$/d'); then
	note docs 1 0
else
	echo "docs/CONFIG.md is out of date: regenerate the table with build/moatd --options"
	note docs 0 1
fi
if ./build/moatd --symbols | diff -u - <(sed -n '/^| symbol |/,/^$/p' docs/SCAN.md | sed '/^$/d'); then
	note docs 1 0
else
	echo "docs/SCAN.md is out of date: regenerate the table with build/moatd --symbols"
	note docs 0 1
fi

echo "== build asan+ubsan"
if build build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug; then
	SAN_ENV=(ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:log_path=$OUT/asan
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$OUT/ubsan)
	unit_suite unit-asan build-asan
	py_suite session-asan tests/session MOATD="$ROOT/build-asan/moatd" "${SAN_ENV[@]}"
	py_suite delivery-asan tests/delivery MOATD="$ROOT/build-asan/moatd" "${SAN_ENV[@]}"
	py_suite dns-asan tests/dns DNS_PROBE="$ROOT/build-asan/tests/unit/dns_probe" "${SAN_ENV[@]}"
	py_suite scan-asan tests/scan MOATD="$ROOT/build-asan/moatd" MOATCTL="$ROOT/build-asan/moatctl" \
		SCAN_PROBE="$ROOT/build-asan/tests/unit/scan_probe" "${SAN_ENV[@]}"
	py_suite api-asan tests/api MOATD="$ROOT/build-asan/moatd" "${SAN_ENV[@]}"
	py_suite m365-asan tests/m365 MOATD="$ROOT/build-asan/moatd" MOATCTL="$ROOT/build-asan/moatctl" \
		M365_PROBE="$ROOT/build-asan/tests/m365/m365_probe" "${SAN_ENV[@]}"
	if ls "$OUT"/asan.* "$OUT"/ubsan.* >/dev/null 2>&1; then
		echo "sanitizer reports:"
		head -n 60 "$OUT"/asan.* "$OUT"/ubsan.* 2>/dev/null
		note sanitizers 0 1
	else
		note sanitizers 1 0
	fi
else
	note build-asan 0 1
fi

echo "== fuzz"
if command -v clang >/dev/null && CC=clang build build-fuzz -Dfuzz=true --buildtype=debugoptimized; then
	fp=0
	ff=0
	for t in build-fuzz/fuzz/fuzz_*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		name=$(basename "$t")
		corpus=fuzz/corpus/$name
		work=$OUT/fuzz-$name
		mkdir -p "$work"
		cp -r "$corpus"/. "$work"/ 2>/dev/null
		if "$t" -max_total_time="$FUZZ_SECONDS" -timeout=5 -rss_limit_mb=1024 \
			-artifact_prefix="$work/" "$work" >"$OUT/$name.log" 2>&1; then
			fp=$((fp + 1))
		else
			ff=$((ff + 1))
			echo "$name failed:"
			tail -n 30 "$OUT/$name.log"
		fi
	done
	echo "suite fuzz: $fp passed, $ff failed"
	note fuzz "$fp" "$ff"
else
	note build-fuzz 0 1
fi

echo
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
