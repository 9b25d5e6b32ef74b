"""What one portal page test needs, on loopback, until its stdin closes.

Starts a real unbound (every name NXDOMAIN but probe.example: no test
waits on the internet), Postfix's smtp-sink keeping each message it
receives (-d) in a directory, the Microsoft 365 emulator
(tests/m365/emulator.py), and a moatd (the build's, or $MOATD) whose admin
listener serves the portal from <repo>/portal, with:

  - the protected domain contoso.com (any recipient) routed to the sink;
  - administrator rules: a Subject starting with "hold" is quarantined,
    one starting with "refuse" is rejected (550);
  - the Microsoft 365 wizard pointed at the emulator (egress 203.0.113.10,
    host mx.moat.test, read back every second).

Then prints ONE JSON line on stdout and waits until stdin closes (or
SIGTERM), and stops everything:

  {"url": "http://127.0.0.1:ADMINPORT", "smtp_port": N, "user": "admin",
   "password": "<first-run password>", "sink_dir": "...",
   "emulator": "http://127.0.0.1:EPORT", "data_dir": "...",
   "domain": "contoso.com", "hold_prefix": "hold", "reject_prefix": "refuse",
   "log": "<moatd's log file>"}

The emulator's failure switches: POST {"set": {...}} to
EMULATOR/_emulator/control (tests/m365/emulator.py SWITCHES). On failure
to start, the one line is {"error": "..."} and the exit status 1.

usage: fixture.py [--conf LINES]   (more moatd.conf lines, before the domains)
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for d in ("lib", "api", "delivery", "m365"):
    sys.path.insert(0, os.path.join(TESTS, d))

from apiutil import AdminMoatd  # noqa: E402
from dlvutil import SmtpSink  # noqa: E402
from emulator import Emulator  # noqa: E402
from moat_harness import OUT, ROOT  # noqa: E402
from unbound_server import Unbound  # noqa: E402

DOMAIN = "contoso.com"
HOLD = "hold"
REJECT = "refuse"

DOMAINS = """
[domain %(domain)s]
recipients = any
route = smtp:[127.0.0.1]:%(port)d
tls = none

[rule portal-hold]
priority = 10
if = header Subject ^%(hold)s
then = quarantine

[rule portal-refuse]
priority = 20
if = header Subject ^%(reject)s
then = reject
"""

CONF = """portal_dir = %(portal)s
dns_resolver = %(dns)s
scan_timeout = 30s
delivery_retry_min = 1s
delivery_retry_max = 2s
m365_authority = %(emu)s
m365_exo_url = %(emu)s
m365_egress = 203.0.113.10
m365_host = mx.moat.test
m365_timeout = 10s
m365_check_every = 1s
"""


class Fixture:
    def __init__(self, extra_conf=""):
        self.extra_conf = extra_conf
        self.dns = self.sink = self.emu = self.moatd = None

    def start(self):
        os.makedirs(OUT, exist_ok=True)
        self.dns = Unbound([("probe.example.", "A", "192.0.2.1")], zones=(".",),
                           probe="probe.example.")
        sink_dir = tempfile.mkdtemp(prefix="portal-sink-", dir=OUT)
        self.sink = SmtpSink(dump_dir=sink_dir).start()
        self.emu = Emulator(interval=1).start()
        conf = CONF % {"portal": os.path.join(ROOT, "portal"), "dns": self.dns.upstream,
                       "emu": self.emu.url}
        self.moatd = AdminMoatd(conf=conf + self.extra_conf,
                                domains=DOMAINS % {"domain": DOMAIN, "port": self.sink.port,
                                                   "hold": HOLD, "reject": REJECT},
                                name="portal")
        self.moatd.start()
        return {
            "url": "http://127.0.0.1:%d" % self.moatd.admin_port,
            "smtp_port": self.moatd.port,
            "user": "admin",
            "password": self.moatd.password,
            "sink_dir": sink_dir,
            "emulator": self.emu.url,
            "data_dir": self.moatd.data,
            "domain": DOMAIN,
            "hold_prefix": HOLD,
            "reject_prefix": REJECT,
            "log": self.moatd.log_path,
        }

    def stop(self):
        for what in (self.moatd, self.emu, self.sink, self.dns):
            if what is None:
                continue
            try:
                what.stop()
            except Exception:  # stop the rest whatever one of them does
                traceback.print_exc()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conf", default="", help="more moatd.conf lines")
    args = ap.parse_args()
    extra = args.conf.replace("\\n", "\n")
    if extra and not extra.endswith("\n"):
        extra += "\n"

    def on_term(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, on_term)
    fx = Fixture(extra)
    try:
        try:
            info = fx.start()
        except Exception as e:
            traceback.print_exc()
            print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}), flush=True)
            return 1
        print(json.dumps(info), flush=True)
        while sys.stdin.buffer.read(65536):
            pass  # until the test closes our stdin (or goes away)
        return 0
    finally:
        fx.stop()


if __name__ == "__main__":
    sys.exit(main())
