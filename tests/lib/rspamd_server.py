"""A real rspamd for tests: Debian's rspamd package, private, on loopback.

Debian's stock configuration (/etc/rspamd) is used with the local
configuration directory moved to a temp dir, which binds the normal
worker to a free port, turns the controller and proxy off, logs there,
points DNS at a dead loopback port (nothing leaves the host; DNS-based
rules fail fast) and shortens the public suffix list (the full list takes
~15 s to compile at start). No redis: the modules that need it disable
themselves.

rspamd.local.lua adds one symbol per envelope header moat sends (IP,
Helo, From, Rcpt, Queue-Id), each scoring ENV_SCORE when the header
carried ENVELOPE's value, so a test can see what reached rspamd.

    r = Rspamd()       # returns once /ping answers
    r.url              # "http://127.0.0.1:PORT/checkv2"
    r.stop()
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
RSPAMD = shutil.which("rspamd", path="/usr/bin:/usr/sbin:/bin:/sbin")

ENV_SCORE = 10.0
ENVELOPE = {
    "ip": "198.51.100.7",
    "helo": "mail.sender.example",
    "from": "alice@sender.example",
    "rcpts": ["bob@example.com", "carol@example.com"],
    "queue_id": "Q0MOATTEST1",
}

LOCAL_LUA = """
local env = {
  ip = %(ip)s, helo = %(helo)s, from = %(from)s,
  rcpt1 = %(rcpt1)s, rcpt2 = %(rcpt2)s, qid = %(qid)s,
}
rspamd_config.MOAT_ENV_IP = {
  callback = function(task)
    local ip = task:get_from_ip()
    return ip ~= nil and ip:is_valid() and tostring(ip) == env.ip
  end,
  score = %(score)f, description = 'IP header reached rspamd',
}
rspamd_config.MOAT_ENV_HELO = {
  callback = function(task) return task:get_helo() == env.helo end,
  score = %(score)f, description = 'Helo header reached rspamd',
}
rspamd_config.MOAT_ENV_FROM = {
  callback = function(task)
    local f = task:get_from('smtp')
    return f ~= nil and f[1] ~= nil and f[1].addr == env.from
  end,
  score = %(score)f, description = 'From header reached rspamd',
}
rspamd_config.MOAT_ENV_RCPT = {
  callback = function(task)
    local r = task:get_recipients('smtp')
    return r ~= nil and #r == 2 and r[1].addr == env.rcpt1 and r[2].addr == env.rcpt2
  end,
  score = %(score)f, description = 'Rcpt headers reached rspamd',
}
rspamd_config.MOAT_ENV_QID = {
  callback = function(task) return task:get_queue_id() == env.qid end,
  score = %(score)f, description = 'Queue-Id header reached rspamd',
}
"""


def lua_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rspamd:
    def __init__(self, timeout=30.0):
        if RSPAMD is None:
            raise RuntimeError("rspamd is not installed")
        os.makedirs(OUT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="rspamd-", dir=OUT)
        self.port = free_tcp_port()
        self.dead_dns = free_tcp_port()  # nothing listens there
        d = self.dir
        for sub in ("override.d", "local.d"):
            os.mkdir(os.path.join(d, sub))
        files = {
            "override.d/worker-normal.inc": 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n'
            % self.port,
            "override.d/worker-controller.inc": "count = -1;\n",
            "override.d/worker-proxy.inc": "count = -1;\n",
            "override.d/logging.inc": 'type = "file";\nfilename = "%s";\nlevel = "info";\n'
            % os.path.join(d, "rspamd.log"),
            "local.d/options.inc": (
                'dns { nameserver = ["127.0.0.1:%d"]; timeout = 0.2s; retransmits = 1; }\n'
                'url_tld = "%s";\n' % (self.dead_dns, os.path.join(d, "tld.dat"))),
            "tld.dat": "com\norg\nnet\nexample\n",
            "rspamd.local.lua": LOCAL_LUA % {
                "ip": lua_str(ENVELOPE["ip"]), "helo": lua_str(ENVELOPE["helo"]),
                "from": lua_str(ENVELOPE["from"]), "rcpt1": lua_str(ENVELOPE["rcpts"][0]),
                "rcpt2": lua_str(ENVELOPE["rcpts"][1]), "qid": lua_str(ENVELOPE["queue_id"]),
                "score": ENV_SCORE},
        }
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        self.log = open(os.path.join(d, "rspamd.out"), "w")
        args = [RSPAMD, "-f", "-i", "-c", "/etc/rspamd/rspamd.conf"]
        for var in ("LOCAL_CONFDIR", "RUNDIR", "DBDIR", "LOGDIR"):
            args.append("--var=%s=%s" % (var, d))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise

    @property
    def url(self):
        return "http://127.0.0.1:%d/checkv2" % self.port

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rspamd exited (%d); see %s" % (self.proc.returncode, self.dir))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/ping" % self.port,
                                            timeout=1) as r:
                    if r.read().strip() == b"pong":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("rspamd did not answer /ping; see %s" % self.dir)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()
