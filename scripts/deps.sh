#!/bin/sh
# scripts/deps.sh - the one script that installs what moat needs on Debian 12.
#
#   scripts/deps.sh          build and run moatd (make run)
#   scripts/deps.sh --test   also everything the test suites use (make test),
#                            the portal's browser tests included: Debian's
#                            chromium, and playwright-core from
#                            tests/portal/package-lock.json (npm ci)
#
# Only missing packages are installed, so a second run costs a dpkg query.
# As root it also creates the unprivileged 'moat' user that moatd drops to.
set -eu

BUILD_PKGS="build-essential meson ninja-build pkg-config libevent-dev libssl-dev zlib1g-dev
 libunbound-dev libjansson-dev libgmime-3.0-dev libmagic-dev libarchive-dev libpsl-dev publicsuffix
 libxml2-dev libidn2-dev libcurl4-openssl-dev libsqlite3-dev libargon2-dev"
TEST_PKGS="libcmocka-dev clang clang-format libclang-rt-14-dev python3 swaks postfix openssl procps
 iproute2 libnet-ssleay-perl libio-socket-ssl-perl unbound python3-aiosmtpd
 clamav-daemon python3-dkim python3-nacl spamassassin rspamd python3-yaml python3-jsonschema
 chromium fonts-liberation"

pkgs=$BUILD_PKGS
if [ "${1:-}" = "--test" ]; then
	pkgs="$pkgs $TEST_PKGS"
	# node and npm may come from elsewhere (NodeSource): Debian's only if absent
	command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	# Postfix is only used for its smtp-sink/smtp-source tools and as the
	# benchmark baseline: install it unconfigured, never as the system MTA.
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# The portal's browser tests: playwright-core as the lock file pins it,
# again whenever the lock file is newer than what was installed.
if [ "${1:-}" = "--test" ]; then
	portal=$(dirname "$0")/../tests/portal
	if [ ! -d "$portal/node_modules" ] || [ "$portal/package-lock.json" -nt "$portal/node_modules" ]; then
		echo "deps: npm ci in tests/portal (playwright-core)"
		npm ci --prefix "$portal" --no-audit --no-fund
		touch "$portal/node_modules"
	fi
fi

if [ "$(id -u)" -eq 0 ] && ! getent passwd moat >/dev/null; then
	echo "deps: creating the system user 'moat' (moatd drops to it after binding)"
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin moat
fi
exit 0
