"""bench/scan.sh's inputs: the two messages whose scan cost is measured, and
a private unbound answering the sender's SPF, DKIM key and DMARC records.

  scan_msgs.py msgs DIR        write DIR/text4k.eml and DIR/mixed100k.eml
  scan_msgs.py dns DIR         start unbound, print its IP@PORT and the DKIM
                               key path, run until stdin closes

text4k.eml: 4 KiB of plain text with two links, DKIM-signed (rsa-sha256).
mixed100k.eml: ~100 KiB: a text part, an HTML part, a PDF (a small real
one, padded with a content stream) and a zip of three text files, all
base64, DKIM-signed.
"""
import base64
import io
import os
import subprocess
import sys
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "lib"))
import dkim  # noqa: E402

HDR = ("From: Alice Example <alice@bench.example>\r\nTo: user@example.test\r\n"
       "Subject: quarterly numbers\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
       "Message-ID: <bench-%s@bench.example>\r\nMIME-Version: 1.0\r\n")


def key(d):
    path = os.path.join(d, "dkim.key")
    if not os.path.exists(path):
        subprocess.run(["openssl", "genrsa", "-out", path, "2048"], check=True,
                       capture_output=True)
    return path


def sign(d, msg):
    with open(key(d), "rb") as f:
        k = f.read()
    sig = dkim.sign(msg, b"b1", b"bench.example", k,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


def text(n):
    line = "The numbers for the quarter are in; see https://www.bench.example/q3 and reply.\r\n"
    out = ""
    while len(out) < n:
        out += line
    return out[:n - 2] + "\r\n"


def pdf(n):
    stream = b"BT /F1 12 Tf 72 712 Td (quarterly numbers) Tj ET\n" * (n // 48)
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"]
    out = b"%PDF-1.4\n"
    offs = []
    for i, o in enumerate(objs, 1):
        offs.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for o in offs:
        out += b"%010d 00000 n \n" % o
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


def b64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def msgs(d):
    os.makedirs(d, exist_ok=True)
    m = (HDR % "t").encode() + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    m += text(4096 - len(m)).encode()
    with open(os.path.join(d, "text4k.eml"), "wb") as f:
        f.write(sign(d, m))
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr("sheet%d.csv" % i, ("q%d,%d\n" % (i, i * 7)) * 800)
    parts = [
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text(3000).encode(),
        b"Content-Type: text/html; charset=us-ascii\r\n\r\n<html><body><p>Numbers: "
        b"<a href=\"https://www.bench.example/q3\">https://www.bench.example/q3</a></p>"
        b"</body></html>\r\n",
        b"Content-Type: application/pdf; name=\"q3.pdf\"\r\nContent-Disposition: attachment; "
        b"filename=\"q3.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(pdf(45000)),
        b"Content-Type: application/zip; name=\"q3.zip\"\r\nContent-Disposition: attachment; "
        b"filename=\"q3.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(z.getvalue()),
    ]
    body = b"".join(b"--=_b\r\n" + p + b"\r\n" for p in parts) + b"--=_b--\r\n"
    pad = max(0, 100 * 1024 - len(body) - 600)
    body = b"--=_b\r\nContent-Type: text/plain\r\n\r\n" + (b"x" * 76 + b"\r\n") * (pad // 78) \
        + b"\r\n" + body
    m = (HDR % "m").encode() + b"Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n" + body
    with open(os.path.join(d, "mixed100k.eml"), "wb") as f:
        f.write(sign(d, m))


def dns(d):
    from unbound_server import Unbound
    der = subprocess.run(["openssl", "rsa", "-in", key(d), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    split = " ".join('"%s"' % txt[i:i + 200] for i in range(0, len(txt), 200))
    u = Unbound([("bench.example.", "TXT", '"v=spf1 ip4:127.0.0.0/8 ip4:192.0.2.0/24 -all"'),
                 ("b1._domainkey.bench.example.", "TXT", split),
                 ("_dmarc.bench.example.", "TXT", '"v=DMARC1; p=reject"'),
                 ("www.bench.example.", "A", "192.0.2.80")],
                zones=("example.",))
    print(u.upstream, flush=True)
    try:
        sys.stdin.read()
    finally:
        u.stop()


if __name__ == "__main__":
    {"msgs": msgs, "dns": dns}[sys.argv[1]](sys.argv[2])
