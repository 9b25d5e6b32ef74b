"""moatctl against the admin API of a running moatd: `token create` on the
host (straight into the store), then every API command with that token,
text and --json, and the exit statuses scripts rely on: 0 done, 1 the
server refused (4xx), 2 usage, 3 unreachable (connection refused, 5xx),
4 no token or not allowed (401, 403). The token never travels in argv.

Run: /usr/bin/python3 tests/lib/runner.py api tests/api test_moatctl_api.py
"""
import base64
import email.utils
import hashlib
import http.server
import json
import os
import pty
import re
import select
import signal
import smtplib
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))

from moat_harness import MOATD, OUT, Moatd, free_port, make_cert  # noqa: E402

MOATCTL = os.environ.get("MOATCTL", os.path.join(os.path.dirname(MOATD), "moatctl"))
TOKEN_RX = re.compile(r"^moat_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")
QID = re.compile(r"queued as ([0-9a-f]{16})")
PASSWORD = "correct horse battery"


def held_message(sender, subject):
    """A message moat quarantines: an .exe attachment."""
    exe = base64.encodebytes(b"MZ\0\0").decode().replace("\n", "\r\n")
    return ("From: %s\r\nTo: u@example.test\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            "--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b1\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\n"
            "Content-Disposition: attachment; filename=\"a.exe\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b1--\r\n"
            % (sender, subject, email.utils.formatdate(),
               email.utils.make_msgid(domain="remote.test"), exe)).encode()


def send(port, sender, subject, rcpts=("u@example.test", "v@example.test")):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60)
    try:
        s.ehlo()
        s.mail(sender)
        for r in rcpts:
            s.rcpt(r)
        code, text = s.data(held_message(sender, subject))
    finally:
        s.quit()
    assert code == 250, (code, text)
    return QID.search(text.decode()).group(1)


class MoatctlBase(unittest.TestCase):
    m = None

    @classmethod
    def ctl_env(cls, token=None, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
        if token:
            env["MOAT_TOKEN"] = token
        env.update(extra or {})
        return env

    def ctl(self, *args, want=0, token=None, env=None, stdin=None, conf=None):
        """moatctl -c CONF ARGS with the token in MOAT_TOKEN; asserts the exit status."""
        argv = [MOATCTL, "-c", conf or self.m.conf_path] + list(args)
        if token is not None:
            self.assertNotIn(token, " ".join(argv))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, input=stdin,
                           env=self.ctl_env(token, env))
        self.assertEqual(r.returncode, want, "moatctl %s: rc %d, want %d\n%s%s"
                         % (" ".join(args), r.returncode, want, r.stdout, r.stderr))
        return r

    def jctl(self, *args, **kw):
        return json.loads(self.ctl("--json", *args, **kw).stdout)

    def mint(self, scope="read,operate,admin"):
        out = self.ctl("token", "create", "--scope", scope).stdout.strip()
        self.assertRegex(out, TOKEN_RX)
        return out


class TestTokenCreate(MoatctlBase):
    """`token create` needs only the store; moatd need not serve the API."""

    @classmethod
    def setUpClass(cls):
        cls.m = Moatd(name="ctl-token", conf="admin_listen =\n")
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def db(self):
        return sqlite3.connect(os.path.join(self.m.data, "moat.db"))

    def test_minted_token_is_found_by_its_hash(self):
        token = self.mint("read,admin")
        tid = TOKEN_RX.match(token).group(1)
        # what store_token_find() looks up: the SHA-256 of the whole string
        rows = self.db().execute("SELECT id, scopes FROM api_token WHERE hash = ?",
                                 (hashlib.sha256(token.encode()).digest(),)).fetchall()
        self.assertEqual(rows, [(tid, 1 | 4)])
        audit = self.db().execute("SELECT who, action, target FROM audit WHERE target = ?",
                                  (tid,)).fetchall()
        self.assertEqual(audit, [("system:moatctl", "token.create", tid)])
        # the secret is nowhere in the database
        for name in ("moat.db", "moat.db-wal"):
            path = os.path.join(self.m.data, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    self.assertNotIn(token.encode(), f.read())

    def test_json(self):
        out = self.jctl("token", "create", "--scope", "operate")
        self.assertRegex(out["token"], TOKEN_RX)
        self.assertEqual(out["id"], TOKEN_RX.match(out["token"]).group(1))
        self.assertEqual(out["scopes"], ["operate"])

    def test_store_stays_moats(self):
        """Run as root, moatctl becomes moatd's user: the database files stay moatd's."""
        self.mint()
        owner = os.stat(self.m.data).st_uid
        for name in os.listdir(self.m.data):
            if name.startswith("moat.db"):
                self.assertEqual(os.stat(os.path.join(self.m.data, name)).st_uid, owner, name)

    def test_usage(self):
        rows = [
            (("token", "create"), "--scope is required"),
            (("token", "create", "--scope", "root"), "read, operate or admin"),
            (("token", "create", "--scope", "read", "extra"), "unexpected argument"),
            (("token", "create", "--scope"), "needs a value"),
        ]
        for args, text in rows:
            with self.subTest(args):
                self.assertIn(text, self.ctl(*args, want=2).stderr)

    def test_no_store(self):
        d = tempfile.mkdtemp(prefix="ctl-nostore-", dir=OUT)
        conf = os.path.join(d, "moat.conf")
        with open(conf, "w") as f:
            f.write("data_dir = %s/missing/deeper\nuser = moat\n" % d)
        r = self.ctl("token", "create", "--scope", "read", conf=conf, want=3)
        self.assertIn("moatctl: token create:", r.stderr)

    def test_connection_refused(self):
        """admin_listen is empty here, and nothing listens on a free port."""
        r = self.ctl("health", want=3)
        self.assertIn("admin_listen is empty", r.stderr)
        dead = free_port()
        for env in ({"MOAT_URL": "http://127.0.0.1:%d" % dead}, None):
            with self.subTest(env=env):
                args = ("quarantine", "list") if env else ("--url", "http://127.0.0.1:%d" % dead,
                                                           "quarantine", "list")
                r = self.ctl(*args, want=3, env=env)
                self.assertIn("cannot reach moat at http://127.0.0.1:%d" % dead, r.stderr)


class TestApi(MoatctlBase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.m = Moatd(name="ctl-api", conf="admin_listen = 127.0.0.1:%d\n" % cls.port)
        cls.m.start()
        cls.ids = [send(cls.m.port, "s%d@remote.test" % i, "invoice %d" % i) for i in range(7)]
        out = subprocess.run([MOATCTL, "-c", cls.m.conf_path, "token", "create", "--scope",
                              "read,operate,admin"], capture_output=True, text=True, check=True)
        cls.admin = out.stdout.strip()
        out = subprocess.run([MOATCTL, "-c", cls.m.conf_path, "token", "create", "--scope",
                              "read"], capture_output=True, text=True, check=True)
        cls.reader = out.stdout.strip()
        # the quarantine records are written off the mail path: wait for them
        deadline = time.time() + 20
        while time.time() < deadline:
            r = subprocess.run([MOATCTL, "-c", cls.m.conf_path, "--json", "quarantine", "list",
                                "--limit", "100"], capture_output=True, text=True,
                               env=cls.ctl_env(cls.admin))
            if r.returncode == 0 and len(json.loads(r.stdout)["items"]) == len(cls.ids):
                break
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def a(self, *args, **kw):
        kw.setdefault("token", self.admin)
        return self.ctl(*args, **kw)

    def ja(self, *args, **kw):
        kw.setdefault("token", self.admin)
        return self.jctl(*args, **kw)

    # --- quarantine ---

    def test_quarantine_list_filters_and_pages(self):
        items = self.ja("quarantine", "list")["items"]
        self.assertEqual(sorted(i["id"] for i in items), sorted(self.ids))
        text = self.a("quarantine", "list").stdout
        self.assertRegex(text.splitlines()[0], r"^ID +RECEIVED +VERDICT")
        self.assertIn("invoice 3", text)
        rows = [
            (("--sender", "s2@remote.test"), [self.ids[2]]),
            (("--subject", "invoice 4"), [self.ids[4]]),
            (("--id", self.ids[1]), [self.ids[1]]),
            (("--verdict", "quarantine", "--since", "1h", "--until", "now", "--domain",
              "example.test"), None),
            (("--since", "2000-01-01", "--until", "2000-01-02T00:00Z"), []),
        ]
        for args, want in rows:
            with self.subTest(args):
                got = [i["id"] for i in self.ja("quarantine", "list", *args)["items"]]
                if want is None:
                    self.assertGreaterEqual(len(got), 1)
                else:
                    self.assertEqual(got, want)
        page = self.ja("quarantine", "list", "--limit", "2")
        self.assertEqual(len(page["items"]), 2)
        self.assertIsNotNone(page["next"])
        self.assertIn("more: --after %s" % page["next"],
                      self.a("quarantine", "list", "--limit", "2").stdout)
        page2 = self.ja("quarantine", "list", "--limit", "2", "--after", page["next"])
        self.assertFalse({i["id"] for i in page["items"]} & {i["id"] for i in page2["items"]})
        every = self.ja("quarantine", "list", "--limit", "2", "--all")
        self.assertIsNone(every["next"])
        self.assertEqual(sorted(i["id"] for i in every["items"]), sorted(self.ids))

    def test_show_preview_download(self):
        qid = self.ids[0]
        show = self.ja("quarantine", "show", qid)
        self.assertEqual(show["id"], qid)
        self.assertEqual(show["state"], "held")
        self.assertEqual(show["rcpts"], ["u@example.test", "v@example.test"])
        text = self.a("quarantine", "show", qid).stdout
        self.assertRegex(text, r"(?m)^subject: +invoice 0$")
        self.assertRegex(text, r"(?m)^rcpts: +u@example.test, v@example.test$")
        pv = self.ja("quarantine", "preview", qid)
        self.assertEqual(pv["subject"], "invoice 0")
        text = self.a("quarantine", "preview", qid).stdout
        self.assertIn("a.exe", text)
        self.assertIn("see attached", text)
        raw = self.a("quarantine", "download", qid).stdout
        self.assertIn("Subject: invoice 0", raw)
        path = os.path.join(self.m.dir, "held.eml")
        self.assertEqual(self.a("quarantine", "download", qid, "-o", path).stdout, "")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            self.assertIn(b"Subject: invoice 0", f.read())
        # a failed download leaves no file behind
        gone = os.path.join(self.m.dir, "none.eml")
        r = self.a("quarantine", "download", "0123456789abcdef", "-o", gone, want=1)
        self.assertIn("404", r.stderr)
        self.assertFalse(os.path.exists(gone))

    def test_release_one_recipient_then_conflict(self):
        qid = self.ids[1]
        out = self.a("quarantine", "release", qid, "--rcpt", "u@example.test", "--no-rescan")
        self.assertIn(qid, out.stdout)
        self.m.wait_maildir("u@example.test")
        # asking again for what is done succeeds (openapi.yaml: 200, status "already")
        again = self.ja("quarantine", "release", qid)
        self.assertEqual((again["code"], again["status"]), (200, "already"))
        self.assertIn("already", self.a("quarantine", "release", qid).stdout)
        self.assertEqual(self.ja("quarantine", "show", qid)["state"], "released")
        # a deleted message cannot be released: 409, exit 1
        self.a("quarantine", "delete", self.ids[6])
        r = self.a("quarantine", "release", self.ids[6], want=1)
        self.assertRegex(r.stderr, r"^moatctl: quarantine release: 409 ")
        tl = self.ja("track", "show", qid)
        self.assertIn("delivery", [e["kind"] for e in tl["events"]])

    def test_release_and_delete_several(self):
        a, b = self.ids[2], self.ids[3]
        out = self.ja("quarantine", "release", a, b, "--allow-sender")
        self.assertEqual(out["action"], "release")
        self.assertEqual([x["code"] for x in out["results"]], [200, 200])
        lists = self.ja("lists", "--scope", "example.test")["items"]
        self.assertIn(("allow", "s2@remote.test"), [(e["kind"], e["pattern"]) for e in lists])
        # one bad id in a batch: the others are done, exit 1 names it
        r = self.a("quarantine", "delete", self.ids[4], "0123456789abcdef", "--block-sender",
                   want=1)
        self.assertIn("%s: " % self.ids[4], r.stdout)
        self.assertIn("quarantine delete 0123456789abcdef: 404", r.stderr)
        self.assertEqual(self.ja("quarantine", "show", self.ids[4])["state"], "deleted")
        lists = self.ja("lists")["items"]
        self.assertIn(("block", "s4@remote.test"), [(e["kind"], e["pattern"]) for e in lists])
        self.assertIn("--rcpt goes with one ID",
                      self.a("quarantine", "release", a, b, "--rcpt", "x@example.test",
                             want=2).stderr)

    # --- tracking, domains, lists, rules, config ---

    def test_tracking(self):
        items = self.ja("track", "list", "--since", "1h", "--limit", "50")["items"]
        self.assertTrue(set(self.ids) <= {i["id"] for i in items})
        text = self.a("track", "list", "--sender", "s5@remote.test").stdout
        self.assertIn(self.ids[5], text)
        self.assertIn("u@example.test", text)
        tl = self.ja("track", "show", self.ids[5])
        self.assertEqual([e["kind"] for e in tl["events"]][:2], ["received", "verdict"])
        self.assertIn("events:", self.a("track", "show", self.ids[5]).stdout)

    def test_domains(self):
        names = [d["name"] for d in self.ja("domains")["items"]]
        self.assertEqual(sorted(names), ["example.test", "listed.test"])
        self.assertIn("listed.test", self.a("domains").stdout)

    def test_lists(self):
        self.assertEqual(self.a("lists", "add", "--kind", "block", "@spam.example").stdout,
                         "added\n")
        self.assertEqual(self.a("lists", "add", "--kind", "block", "@spam.example").stdout,
                         "already there\n")
        self.assertEqual({e["kind"] for e in self.ja("lists", "--kind", "block")["items"]},
                         {"block"})
        got = self.ja("lists", "--scope", "")["items"]
        self.assertIn({"scope": "", "kind": "block", "pattern": "@spam.example"},
                      [{k: e[k] for k in ("scope", "kind", "pattern")} for e in got])
        self.a("lists", "delete", "--kind", "block", "@spam.example")
        r = self.a("lists", "delete", "--kind", "block", "@spam.example", want=1)
        self.assertIn("404", r.stderr)
        r = self.a("lists", "add", "--kind", "maybe", "@x.example", want=2)
        self.assertIn("allow or block", r.stderr)
        r = self.a("lists", "add", "--kind", "allow", "--scope", "nowhere.test", "@x.example",
                   want=1)
        self.assertIn("(field scope)", r.stderr)

    def test_rules(self):
        self.assertIn("saved", self.a("rules", "put", "r-ctl", "--priority", "50", "--stop",
                                      "--if", "sender @bad.example", "--then", "reject").stdout)
        rule = self.ja("rules", "show", "r-ctl")
        self.assertEqual((rule["priority"], rule["stop"], rule["enabled"]), (50, True, True))
        self.assertEqual((rule["if"], rule["then"]), (["sender @bad.example"], ["reject"]))
        # the --json of show, edited, goes back with --file
        rule["enabled"] = False
        path = os.path.join(self.m.dir, "rule.json")
        with open(path, "w") as f:
            json.dump(rule, f)
        self.a("rules", "put", "r-ctl", "--file", path)
        self.assertFalse(self.ja("rules", "show", "r-ctl")["enabled"])
        self.assertIn("r-ctl", self.a("rules").stdout)
        r = self.a("rules", "put", "r-bad", "--priority", "51", "--if", "subject x", "--then",
                   "reject", want=1)
        self.assertRegex(r.stderr, r"^moatctl: rules put: 400 .*\(field if\[0\]\)")
        self.a("rules", "put", "other", "--file", path, want=2)  # the file names r-ctl
        self.a("rules", "put", "r-x", "--then", "reject", want=2)  # no --priority
        self.a("rules", "delete", "r-ctl")
        self.assertIn("404", self.a("rules", "show", "r-ctl", want=1).stderr)

    def test_config_export_import(self):
        self.a("rules", "put", "r-export", "--priority", "70", "--if", "recipient @example.test",
               "--then", "score 1")
        path = os.path.join(self.m.dir, "policy.json")
        self.a("config", "export", "-o", path)
        with open(path) as f:
            text = f.read()
        exported = json.loads(text)
        self.assertTrue(text.endswith("}\n"))
        self.assertIn("r-export", [r["name"] for r in exported["rules"]])
        self.a("rules", "delete", "r-export")
        out = self.ja("config", "import", path)
        self.assertEqual(out["rules"], len(exported["rules"]))
        self.assertEqual(self.ja("rules", "show", "r-export")["priority"], 70)
        bad = dict(exported, rules=[{"name": "b", "priority": 1, "then": ["explode"]}])
        with open(path, "w") as f:
            json.dump(bad, f)
        r = self.a("config", "import", path, want=1)
        self.assertRegex(r.stderr, r"^moatctl: config import: 400 .*\(field rules\[0\]\.then")
        r = self.a("config", "import", "-", stdin="{not json", want=2)
        self.assertIn("not JSON", r.stderr)
        self.a("rules", "delete", "r-export")

    # --- tokens, users, audit, health, metrics, queue, stats, settings ---

    def test_tokens_over_api(self):
        extra = self.mint("read")
        tid = TOKEN_RX.match(extra).group(1)
        self.assertIn(tid, [t["id"] for t in self.ja("token", "list")["items"]])
        self.a("health", token=extra)
        self.assertIn("deleted", self.a("token", "delete", tid).stdout)
        self.ctl("quarantine", "list", token=extra, want=4)
        self.assertIn("404", self.a("token", "delete", tid, want=1).stderr)
        # minted remotely with an admin token (POST /api/v1/tokens)
        out = self.ja("token", "create", "--scope", "read,operate", "--api")
        self.assertEqual(out["scopes"], ["read", "operate"])
        me = self.jctl("whoami", token=out["token"])
        self.assertEqual((me["kind"], me["token_id"]), ("token", out["id"]))
        self.ctl("token", "create", "--scope", "admin", "--api", token=out["token"], want=4)
        self.assertRegex(self.a("whoami").stdout, r"(?m)^scopes: +read, operate, admin$")

    def test_users(self):
        self.assertIn("added", self.a("users", "add", "ctl-user", stdin=PASSWORD + "\n").stdout)
        self.assertIn("ctl-user", [u["name"] for u in self.ja("users", "list")["items"]])
        self.a("users", "password", "ctl-user", stdin="another long password\n")
        r = self.a("users", "password", "ctl-user", stdin="short\n", want=1)
        self.assertIn("(field password)", r.stderr)
        self.assertIn("no password", self.a("users", "add", "x-user", stdin="", want=2).stderr)
        self.assertIn("409", self.a("users", "add", "ctl-user", stdin=PASSWORD + "\n",
                                    want=1).stderr)
        self.a("users", "delete", "ctl-user")
        self.assertNotIn("ctl-user", self.a("users", "list").stdout)

    def test_password_from_terminal(self):
        """On a terminal: asked twice, not echoed; a mismatch changes nothing."""
        for answers, rc in (((PASSWORD, PASSWORD), 0), ((PASSWORD, "something else"), 2)):
            with self.subTest(rc=rc):
                pid, fd = pty.fork()
                if pid == 0:
                    os.execve(MOATCTL, [MOATCTL, "-c", self.m.conf_path, "users", "add",
                                        "tty-user"], self.ctl_env(self.admin))
                out, deadline = b"", time.time() + 20

                def read():
                    if not select.select([fd], [], [], max(0, deadline - time.time()))[0]:
                        os.kill(pid, signal.SIGKILL)
                        self.fail("moatctl stopped answering: %r" % out)
                    try:
                        return os.read(fd, 1024)
                    except OSError:  # EIO: the child is gone
                        return b""

                for answer in answers:
                    while not out.rstrip().endswith(b":"):
                        out += read()
                    os.write(fd, answer.encode() + b"\n")
                    out += b"|"
                while True:
                    chunk = read()
                    if not chunk:
                        break
                    out += chunk
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                self.assertEqual(os.waitstatus_to_exitcode(status), rc, out)
                self.assertIn(b"New password for tty-user:", out)
                self.assertNotIn(PASSWORD.encode(), out)
        self.assertIn("tty-user", [u["name"] for u in self.ja("users", "list")["items"]])
        self.a("users", "delete", "tty-user")

    def test_audit(self):
        self.a("lists", "add", "--kind", "allow", "@audited.example")
        items = self.ja("audit", "--limit", "5")["items"]
        self.assertLessEqual(len(items), 5)
        self.assertIn("list.add", [i["action"] for i in items])
        text = self.a("audit", "--target", TOKEN_RX.match(self.admin).group(1)).stdout
        self.assertRegex(text.splitlines()[0], r"^ID +TIME +WHO +ACTION")
        self.assertIn("system:moatctl", text)
        one = self.ja("audit", "--limit", "1")
        self.assertIn("more: --before %d" % one["next"], self.a("audit", "--limit", "1").stdout)
        # token create wrote its entry too
        creates = self.ja("audit", "--target", TOKEN_RX.match(self.admin).group(1))["items"]
        self.assertIn(("system:moatctl", "token.create"),
                      [(i["who"], i["action"]) for i in creates])
        self.a("lists", "delete", "--kind", "allow", "@audited.example")

    def test_health_metrics(self):
        self.assertEqual(self.jctl("health")["status"], "ok")  # open: no token needed
        self.assertRegex(self.a("health").stdout, r"(?m)^status: +ok$")
        self.assertIn("moat_smtp_messages_accepted_total", self.a("metrics").stdout)
        self.ctl("metrics", want=4)

    def test_queue_and_stats_over_api(self):
        q = self.ja("queue", "list", "--api")
        self.assertIn("messages", q)
        self.assertIn("message(s) in the queue", self.a("--api", "queue", "list").stdout)
        r = self.a("queue", "show", "0123456789abcdef", "--api", want=1)
        self.assertIn("404", r.stderr)
        self.assertIn("counters", self.ja("stats", "--api"))
        self.assertRegex(self.a("queue", "retry", "all", "--api").stdout,
                         r"^\d+ message\(s\) scheduled now$")
        # without --api, the control socket as before (no token involved)
        self.assertIn("counters", self.jctl("stats"))

    def test_settings(self):
        self.a("settings", "set", "ctl.test", "42")
        self.assertEqual(self.ja("settings")["settings"]["ctl.test"], "42")
        self.a("settings", "delete", "ctl.test")
        self.a("settings", "delete", "ctl.test", want=1)

    # --- auth, errors, usage ---

    def test_auth_exit_4(self):
        r = self.ctl("quarantine", "list", want=4)
        self.assertIn("401", r.stderr)
        self.assertIn("MOAT_TOKEN", r.stderr)
        self.ctl("quarantine", "list", token="moat_0123456789abcdef_" + "A" * 43, want=4)
        # a read token cannot release (operate) nor list users (admin): 403
        for args in (("quarantine", "release", self.ids[5]), ("users", "list")):
            with self.subTest(args):
                r = self.ctl(*args, token=self.reader, want=4)
                self.assertRegex(r.stderr, r": 403 ")
        self.ctl("quarantine", "list", token=self.reader)

    def test_token_file(self):
        path = os.path.join(self.m.dir, "token")
        with open(path, "w") as f:
            f.write(self.admin + "\n")
        os.chmod(path, 0o600)
        for how in ("option", "env"):
            with self.subTest(how):
                if how == "option":
                    r = self.ctl("quarantine", "list", "--token-file", path)
                else:
                    r = self.ctl("quarantine", "list", env={"MOAT_TOKEN_FILE": path})
                self.assertNotIn("warning", r.stderr)
        os.chmod(path, 0o644)
        r = self.ctl("--token-file", path, "quarantine", "list")
        self.assertIn("readable by every user", r.stderr)
        self.ctl("quarantine", "list", "--token-file", "/nonexistent", want=2)

    def test_token_never_in_argv(self):
        for args in (("--token", self.admin, "quarantine", "list"),
                     ("quarantine", "list", "--token", self.admin),
                     ("quarantine", "list", "--token=" + self.admin)):
            with self.subTest(args[0]):
                r = self.ctl(*args, want=2)
                self.assertIn("not taken as an argument", r.stderr)
                self.assertNotIn(self.admin, r.stdout + r.stderr)

    def test_errors(self):
        rows = [
            (("quarantine", "show", "0123456789abcdef"), 1,
             "moatctl: quarantine show: 404 no quarantined message 0123456789abcdef (field id)"),
            (("quarantine", "show", "nothex"), 1, "400"),
            (("quarantine", "list", "--limit", "100000"), 1, "(field limit)"),
            (("quarantine", "list", "--limit", "ten"), 2, "--limit takes a number"),
            (("quarantine", "list", "--since", "yesterday-ish"), 2, "is not a time"),
            (("quarantine", "list", "--bogus"), 2, "unknown option --bogus"),
            (("quarantine", "show"), 2, "ID missing"),
            (("quarantine", "show", "a", "b"), 2, "unexpected argument 'b'"),
            (("quarantine", "frobnicate"), 2, "unknown command"),
            (("rules", "put", "x", "--if", "a", "--file", "f"), 2, "--file is the whole rule"),
            (("--url", "ftp://x", "health"), 2, "http:// or https://"),
        ]
        for args, rc, text in rows:
            with self.subTest(args):
                self.assertIn(text, self.a(*args, want=rc).stderr)

    def test_url(self):
        base = "http://127.0.0.1:%d" % self.port
        self.ctl("--url", base + "/api/v1/", "quarantine", "list", token=self.admin)
        self.ctl("quarantine", "list", token=self.admin, env={"MOAT_URL": base})
        self.ctl("quarantine", "list", "--url=" + base, token=self.admin)

    def test_help(self):
        top = self.ctl("--help").stdout
        self.assertIn("Exit status: 0 done; 1 refused", top)
        self.assertIn("4 no token or not allowed", top)
        words = re.findall(r"(?m)^  ((?:[a-z]+)(?: [a-z]+)?) {2,}", top)
        cmds = [w.strip() for w in words if w.strip() not in ("scan",)]
        self.assertIn("quarantine release", cmds)
        for c in cmds:
            with self.subTest(c):
                out = self.ctl(*c.split(), "--help").stdout
                self.assertIn("usage: moatctl", out)
                self.assertIn(c, out)


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Answers by path: the statuses and bodies moatd cannot be made to give on demand."""
    seen = []
    answers = {
        "/api/v1/health": (500, b'{"error": "internal error"}', "application/json"),
        "/api/v1/domains": (503, b'{"error": "store unavailable"}', "application/json"),
        "/api/v1/rules": (413, b"<html>too large</html>", "text/html"),
        "/api/v1/users": (302, b"", "text/plain"),
        "/api/v1/tokens": (200, b"not json", "application/json"),
        "/api/v1/audit": (200, b'{"items": [], "next": null}', "application/json"),
    }

    def do_GET(self):
        FakeApi.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path.startswith("/elsewhere"):
            code, body, ctype = 200, b'{"items": []}', "application/json"
        else:
            code, body, ctype = self.answers.get(self.path.split("?")[0],
                                                 (404, b'{"error": "no"}', "application/json"))
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://127.0.0.1:%d/elsewhere" % self.server.server_port)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class TestClientCore(MoatctlBase):
    """The HTTP client against a fake server: 5xx, bodies that are not JSON, redirects."""

    @classmethod
    def setUpClass(cls):
        cls.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
        cls.url = "http://127.0.0.1:%d" % cls.srv.server_port
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()
        d = tempfile.mkdtemp(prefix="ctl-fake-", dir=OUT)
        cls.conf = os.path.join(d, "moat.conf")
        with open(cls.conf, "w") as f:
            f.write("data_dir = %s\n" % d)

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()

    def f(self, *args, want=0):
        return self.ctl("--url", self.url, *args, want=want, conf=self.conf,
                        token="moat_0123456789abcdef_" + "B" * 43)

    def test_statuses(self):
        rows = [
            (("health",), 3, "moatctl: health: 500 internal error"),
            (("domains",), 3, "moatctl: domains: 503 store unavailable"),
            (("rules",), 1, "moatctl: rules: 413 request too large"),
            (("users", "list"), 1, "302 redirected to %s/elsewhere (not followed" % self.url),
            (("token", "list"), 3, "the answer is not JSON"),
            (("rules", "show", "a b/c"), 1, "moatctl: rules show: 404 no"),
        ]
        for args, rc, text in rows:
            with self.subTest(args):
                self.assertIn(text, self.f(*args, want=rc).stderr)
        self.assertFalse([p for _, p, _ in FakeApi.seen if p.startswith("/elsewhere")])
        # the token went as a bearer credential; names are escaped in the path
        bearer = "Bearer moat_0123456789abcdef_" + "B" * 43
        self.assertIn(("GET", "/api/v1/rules/a%20b%2Fc", bearer), FakeApi.seen)

    def test_query(self):
        self.f("audit", "--limit", "3", "--target", "a b&c=d")
        self.assertIn("/api/v1/audit?limit=3&target=a%20b%26c%3Dd",
                      [p for _, p, _ in FakeApi.seen])


class TestHttps(MoatctlBase):
    """admin_tls_cert set: moatctl derives https:// and trusts exactly that certificate."""

    @classmethod
    def setUpClass(cls):
        d = tempfile.mkdtemp(prefix="ctl-tls-", dir=OUT)
        os.chmod(d, 0o755)
        cls.ca, cert, key = make_cert(d, cn="admin.moat.test")
        cls.port = free_port()
        cls.m = Moatd(name="ctl-https", conf="admin_listen = 127.0.0.1:%d\n"
                      "admin_tls_cert = %s\nadmin_tls_key = %s\n" % (cls.port, cert, key))
        cls.m.start()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def test_https_from_config(self):
        self.assertEqual(self.jctl("health")["tls"], True)
        token = self.mint()
        self.ctl("quarantine", "list", token=token)
        # an explicit URL is verified the ordinary way: the test CA is not trusted
        r = self.ctl("--url", "https://127.0.0.1:%d" % self.port, "health", want=3)
        self.assertIn("cannot reach moat", r.stderr)


if __name__ == "__main__":
    unittest.main()
