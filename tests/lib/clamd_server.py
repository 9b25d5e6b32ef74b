"""A real clamd for tests: Debian's clamav-daemon, private, in a temp dir.

It listens on a unix socket and on a TCP loopback port, with a database
of one signature of our own (EICAR, named "Eicar-Test-Signature"; clamd
reports it as "Eicar-Test-Signature.UNOFFICIAL"), mail and archive
scanning on, alerts for exceeded limits and encrypted content, and small
limits so that tests can exceed them (max_file_size, max_scan_size,
stream_max_length). No freshclam, no internet.

    c = Clamd()        # returns once PING answers PONG
    c.unix_spec        # "unix:/.../clamd.sock"
    c.tcp_spec         # "tcp:127.0.0.1:PORT"
    c.stop()
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "out")
CLAMD = shutil.which("clamd", path="/usr/sbin:/usr/bin:/sbin:/bin")

# The EICAR test file (eicar.org), assembled so that this source is not itself
# a test file that a scanner would flag.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-" + b"TEST-FILE!$H+H*")
SIGNATURE = "Eicar-Test-Signature"


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Clamd:
    def __init__(self, max_file_size="1M", max_scan_size="2M", stream_max_length="4M",
                 timeout=30.0):
        if CLAMD is None:
            raise RuntimeError("clamd is not installed (clamav-daemon)")
        os.makedirs(OUT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="clamd-", dir=OUT)
        os.chmod(self.dir, 0o755)
        self.db = os.path.join(self.dir, "db")
        self.tmp = os.path.join(self.dir, "tmp")
        os.mkdir(self.db)
        os.mkdir(self.tmp)
        # .ndb body signature: NAME:TARGET(0 = any file):OFFSET(* = anywhere):HEX
        with open(os.path.join(self.db, "moat-test.ndb"), "w") as f:
            f.write("%s:0:*:%s\n" % (SIGNATURE, EICAR.hex()))
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.port = free_tcp_port()
        self.conf = os.path.join(self.dir, "clamd.conf")
        lines = [
            "LocalSocket %s" % self.socket,
            "LocalSocketMode 666",
            "TCPSocket %d" % self.port,
            "TCPAddr 127.0.0.1",
            "Foreground yes",
            "DatabaseDirectory %s" % self.db,
            "TemporaryDirectory %s" % self.tmp,
            "LogFile %s" % os.path.join(self.dir, "clamd.log"),
            "LogTime yes",
            "LogVerbose yes",
            "PidFile %s" % os.path.join(self.dir, "clamd.pid"),
            "MaxThreads 4",
            "ScanMail yes",
            "ScanArchive yes",
            "AlertExceedsMax yes",
            "AlertEncrypted yes",
            "MaxFileSize %s" % max_file_size,
            "MaxScanSize %s" % max_scan_size,
            "StreamMaxLength %s" % stream_max_length,
            "Bytecode no",
            "OfficialDatabaseOnly no",
        ]
        if os.geteuid() == 0:
            lines.append("User root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(self.dir, "clamd.out"), "w")
        self.proc = subprocess.Popen([CLAMD, "--foreground", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise

    @property
    def unix_spec(self):
        return "unix:" + self.socket

    @property
    def tcp_spec(self):
        return "tcp:127.0.0.1:%d" % self.port

    def ping(self, family="unix"):
        """True when clamd answers zPING with PONG."""
        if family == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = self.socket
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = ("127.0.0.1", self.port)
        s.settimeout(1.0)
        try:
            s.connect(addr)
            s.sendall(b"zPING\0")
            return s.recv(64).rstrip(b"\0\n") == b"PONG"
        except OSError:
            return False
        finally:
            s.close()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited (%d); see %s" % (self.proc.returncode, self.dir))
            if self.ping("unix") and self.ping("tcp"):
                return
            time.sleep(0.1)
        raise RuntimeError("clamd did not answer PING; see %s" % self.dir)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
