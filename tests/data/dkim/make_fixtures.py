#!/usr/bin/python3
"""make_fixtures.py - DKIM (RFC 6376, 8301, 8463) and ARC (RFC 8617) fixtures
for tests/unit/test_dkim.c, signed by dkimpy (python3-dkim), an independent
implementation, so that moat's verifier is checked against someone else's
signer.

Run with Debian's /usr/bin/python3 (python3-dkim, python3-nacl, openssl):
    /usr/bin/python3 tests/data/dkim/make_fixtures.py
It writes, next to itself:
    keys/      test-only private keys (made once with openssl, then reused)
    msg/*.eml  the messages, CRLF, moat's Received field on top
    dns.txt    the fake resolver's table: name <TAB> ok|nxdomain|tempfail <TAB> TXT
    cases.txt  name <TAB> DKIM results top-down ("-": none) <TAB> ARC result
               <TAB> ARC instances <TAB> a word the reasons must hold ("-": any)
The clock of the signer is pinned (T0), so the output is reproducible.
"""
import base64
import os
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1750000000  # 2025-06-15: every t= in the fixtures


# dkimpy's arc_sign() wants the authres package only to read the
# Authentication-Results field it seals (its authserv-id and arc= result).
# A stub of that much keeps the generator on Debian's packages alone.
class _Res:
    def __init__(self, method, result):
        self.method, self.result = method, result


class _Header:
    def __init__(self, authserv_id, results):
        self.authserv_id, self.results = authserv_id, results

    @staticmethod
    def parse(text):
        value = text.split(':', 1)[1]
        parts = [p.strip() for p in value.replace('\r\n', ' ').split(';')]
        results = []
        for p in parts[1:]:
            if '=' in p:
                m, r = p.split('=', 1)
                results.append(_Res(m.strip(), r.split()[0] if r.split() else ''))
        return _Header(parts[0], results)


_authres = types.ModuleType('authres')
_authres.AuthenticationResultsHeader = _Header
_authres.core = types.SimpleNamespace(SyntaxError=ValueError)
_authres.AuthresNotFoundError = ImportError
sys.modules['authres'] = _authres

import dkim  # noqa: E402
import nacl.encoding  # noqa: E402
import nacl.signing  # noqa: E402

dkim.time = types.SimpleNamespace(time=lambda: T0)

RECEIVED = (b"Received: from mail.sender.test (mail.sender.test [192.0.2.10])\r\n"
            b"\tby mx.moat.test (moat) with ESMTPS id 0123456789AB\r\n"
            b"\tfor <bob@rcpt.test>; Sun, 15 Jun 2025 12:00:00 +0000\r\n")

BASE = (b"From: Alice Example <alice@example.test>\r\n"
        b"To: Bob <bob@rcpt.test>\r\n"
        b"Subject: Quarterly report\r\n"
        b"Date: Sun, 15 Jun 2025 11:59:00 +0000\r\n"
        b"Message-ID: <fixture-1@example.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Hello Bob,\r\n"
        b"\r\n"
        b"the numbers  are\tin.   \r\n"
        b"\r\n"
        b"Alice\r\n")

# folded fields, odd spacing and case: what relaxed canonicalization is for
FOLDED = (b"from: Alice Example\r\n <alice@example.test>\r\n"
          b"To:   Bob <bob@rcpt.test>  \r\n"
          b"SUBJECT:  A   folded\r\n\t subject   line \r\n"
          b"Date: Sun, 15 Jun 2025 11:59:00 +0000\r\n"
          b"Message-ID: <fixture-2@example.test>\r\n"
          b"\r\n"
          b"  leading space, trailing tabs\t\t\r\n"
          b"a  b \t c\r\n"
          b"\r\n"
          b"\r\n")

EMPTY_BODY = (b"From: alice@example.test\r\n"
              b"To: bob@rcpt.test\r\n"
              b"Subject: nothing\r\n"
              b"\r\n")


def key_path(name):
    return os.path.join(HERE, 'keys', name)


def rsa_key(name, bits):
    """A PKCS#1 PEM private key (what dkimpy reads), made once."""
    path = key_path(name + '.pem')
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(['openssl', 'genrsa', '-traditional', '-out', path, str(bits)],
                       check=True, capture_output=True)
    return open(path, 'rb').read()


def rsa_pub(name, pkcs1=False):
    """p= value: SubjectPublicKeyInfo DER (or a bare RSAPublicKey), base64."""
    form = '-RSAPublicKey_out' if pkcs1 else '-pubout'
    der = subprocess.run(['openssl', 'rsa', '-in', key_path(name + '.pem'), form,
                          '-outform', 'DER'], check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


def ed_key(name):
    """(private seed base64 for dkimpy, public key base64 for p=)."""
    path = key_path(name + '.key')
    if not os.path.exists(path):
        seed = nacl.signing.SigningKey.generate().encode(encoder=nacl.encoding.Base64Encoder)
        open(path, 'wb').write(seed + b'\n')
    seed = open(path, 'rb').read().strip()
    sk = nacl.signing.SigningKey(seed, encoder=nacl.encoding.Base64Encoder)
    return seed, sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()


RSA = rsa_key('rsa2048', 2048)
RSA1024 = rsa_key('rsa1024', 1024)
RSA512 = rsa_key('rsa512', 512)
OTHER = rsa_key('other2048', 2048)
ED, ED_PUB = ed_key('ed25519')
P = rsa_pub('rsa2048')

DNS = [
    ('sel._domainkey.example.test', 'ok', 'v=DKIM1; k=rsa; p=' + P),
    ('k1024._domainkey.example.test', 'ok', 'v=DKIM1; k=rsa; p=' + rsa_pub('rsa1024')),
    ('k512._domainkey.example.test', 'ok', 'v=DKIM1; k=rsa; p=' + rsa_pub('rsa512')),
    ('ed._domainkey.example.test', 'ok', 'v=DKIM1; k=ed25519; p=' + ED_PUB),
    ('pkcs1._domainkey.example.test', 'ok', 'v=DKIM1; p=' + rsa_pub('rsa2048', True)),
    ('spaced._domainkey.example.test', 'ok',
     'v=DKIM1 ; k = rsa ;\tp= ' + ' '.join(P[i:i + 64] for i in range(0, len(P), 64)) + ' ;'),
    ('revoked._domainkey.example.test', 'ok', 'v=DKIM1; k=rsa; p='),
    ('temp._domainkey.example.test', 'tempfail', ''),
    ('strict._domainkey.example.test', 'ok', 'v=DKIM1; t=s; p=' + P),
    ('sha1only._domainkey.example.test', 'ok', 'v=DKIM1; h=sha1; p=' + P),
    ('edtype._domainkey.example.test', 'ok', 'v=DKIM1; k=ed25519; p=' + P),
    ('notmail._domainkey.example.test', 'ok', 'v=DKIM1; s=tlsrpt; p=' + P),
    ('vlate._domainkey.example.test', 'ok', 'k=rsa; v=DKIM1; p=' + P),
    ('badp._domainkey.example.test', 'ok', 'v=DKIM1; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'),
    ('two._domainkey.example.test', 'ok', 'not a key record at all'),
    ('two._domainkey.example.test', 'ok', 'v=DKIM1; p=' + P),
    ('other._domainkey.other.test', 'ok', 'v=DKIM1; p=' + rsa_pub('other2048')),
    ('arc._domainkey.hop1.test', 'ok', 'v=DKIM1; k=rsa; p=' + P),
    ('arc._domainkey.hop2.test', 'ok', 'v=DKIM1; k=rsa; p=' + rsa_pub('other2048')),
    ('temp._domainkey.hop1.test', 'tempfail', ''),
]

CASES = []


def sign(msg, key=RSA, sel=b'sel', dom=b'example.test', canon=(b'relaxed', b'relaxed'),
         alg=b'rsa-sha256', **kw):
    return dkim.sign(msg, sel, dom, key, canonicalize=canon, signature_algorithm=alg, **kw) + msg


def sign_tags(msg, tags, key=RSA, include=(b'from', b'to', b'subject'),
              canon=b'relaxed/relaxed', alg=b'rsa-sha256'):
    """Sign with the tags given, in that order (b= and bh= computed): for x=, t=, i=."""
    d = dkim.DKIM(msg)
    d.signature_algorithm = alg
    d.hasher = dkim.HASH_ALGORITHMS[alg]
    policy = dkim.CanonicalizationPolicy.from_c_value(canon)
    h = d.hasher()
    h.update(policy.canonicalize_body(d.body))
    fields = [(b'v', b'1'), (b'a', alg), (b'c', canon)] + list(tags) + [
        (b'h', b':'.join(include)), (b'bh', base64.b64encode(h.digest())), (b'b', b'0' * 60)]
    pk = dkim.parse_pem_private_key(key)
    return b'DKIM-Signature: ' + d.gen_header(fields, include, policy, b'DKIM-Signature',
                                               pk) + msg


def arc(msg, hop, cv, key=RSA, sel=b'arc'):
    """One ARC hop: the hop's Authentication-Results (arc=cv), then its ARC set."""
    srv = hop.encode()
    ar = b'Authentication-Results: ' + srv + b'; spf=pass smtp.mailfrom=example.test'
    if cv != 'none':
        ar += b'; arc=' + cv.encode()
    msg = ar + b'\r\n' + msg
    sets = dkim.arc_sign(msg, sel, srv, key, srv, timestamp=T0,
                         include_headers=[b'from', b'to', b'subject', b'date'])
    assert sets, 'arc_sign refused'
    return b''.join(sets) + msg


def case(name, msg, dkim_results, arc_result='none', arc_n=0, word='-'):
    path = os.path.join(HERE, 'msg', name + '.eml')
    with open(path, 'wb') as f:
        f.write(RECEIVED + msg)
    CASES.append((name, ','.join(dkim_results) or '-', arc_result, str(arc_n), word))


def replace(msg, old, new):
    assert old in msg, old
    return msg.replace(old, new, 1)


def main():
    os.makedirs(os.path.join(HERE, 'msg'), exist_ok=True)
    for f in os.listdir(os.path.join(HERE, 'msg')):
        os.unlink(os.path.join(HERE, 'msg', f))

    # --- canonicalizations and algorithms that pass ---
    case('rr_pass', sign(BASE), ['pass'])
    case('ss_pass', sign(BASE, canon=(b'simple', b'simple')), ['pass'])
    case('rs_pass', sign(BASE, canon=(b'relaxed', b'simple')), ['pass'])
    case('sr_pass', sign(BASE, canon=(b'simple', b'relaxed')), ['pass'])
    case('ed25519_pass', sign(BASE, key=ED, sel=b'ed', alg=b'ed25519-sha256'), ['pass'])
    case('rsa1024_pass', sign(BASE, key=RSA1024, sel=b'k1024'), ['pass'])
    case('pkcs1_key_pass', sign(BASE, sel=b'pkcs1'), ['pass'])
    case('spaced_key_pass', sign(BASE, sel=b'spaced'), ['pass'])
    case('second_record_pass', sign(BASE, sel=b'two'), ['pass'])
    case('folded_rr_pass', sign(FOLDED), ['pass'])
    case('folded_ss_pass', sign(FOLDED, canon=(b'simple', b'simple')), ['pass'])
    case('empty_body_simple', sign(EMPTY_BODY, canon=(b'simple', b'simple')), ['pass'])
    case('empty_body_relaxed', sign(EMPTY_BODY), ['pass'])
    case('no_crlf_at_end', sign(BASE + b'no final CRLF'), ['pass'])
    # relaxed tolerates whitespace changes and trailing empty lines; simple does not
    ws = sign(BASE)
    ws = replace(ws, b'the numbers  are\tin.   \r\n', b'the numbers \t are in. \r\n')
    case('relaxed_ws_tolerated', ws + b'\r\n\r\n', ['pass'])
    ws = sign(BASE, canon=(b'simple', b'simple'))
    case('simple_ws_fails', replace(ws, b'numbers  are', b'numbers are'), ['fail'], word='body')
    case('simple_trailing_lines', sign(BASE, canon=(b'simple', b'simple')) + b'\r\n\r\n', ['pass'])

    # a body larger than the verifier's buffer, whitespace across its edges
    big = BASE + b''.join(b'line %d \t with  runs of   space%s\r\n' % (i, b' ' * (i % 7))
                          for i in range(1500)) + b'\r\n' * 5
    case('big_body_relaxed', sign(big), ['pass'])
    case('big_body_simple', sign(big, canon=(b'simple', b'simple')), ['pass'])
    case('big_body_altered', replace(sign(big), b'line 1000 ', b'line 1001 '), ['fail'], word='body')

    # --- identities and oversigning ---
    case('auid_sub_pass', sign(BASE, identity=b'alice@mail.example.test'), ['pass'])
    case('oversign_pass', sign(BASE, include_headers=[b'from', b'subject', b'subject',
                                                      b'reply-to', b'from']), ['pass'])
    over = sign(BASE, include_headers=[b'from', b'subject', b'subject'])
    case('oversign_added_subject', replace(over, b'MIME-Version', b'Subject: injected\r\nMIME-Version'),
         ['fail'], word='verify')
    plain = sign(BASE, include_headers=[b'from', b'subject'])
    case('unsigned_added_subject_bottomup',
         replace(plain, b'MIME-Version', b'Subject: injected\r\nMIME-Version'), ['fail'])
    case('unsigned_header_changed', replace(plain, b'To: Bob', b'To: Eve'), ['pass'])
    case('unsigned_header_added', replace(sign(BASE), b'MIME-Version', b'X-Added: 1\r\nMIME-Version'),
         ['pass'])

    # --- l= ---
    case('l_exact_pass', sign(BASE, length=True), ['pass'])
    case('l_appended_pass', sign(BASE, length=True) + b'appended advert\r\n', ['pass'], word='l=')

    # --- what fails ---
    case('body_altered', replace(sign(BASE), b'Alice\r\n', b'Mallory\r\n'), ['fail'], word='body')
    case('header_altered', replace(sign(BASE), b'Quarterly', b'Urgent'), ['fail'], word='verify')
    case('from_altered', replace(sign(BASE), b'alice@example', b'alicia@example'), ['fail'])
    case('wrong_key', sign(BASE, key=OTHER), ['fail'], word='verify')
    case('revoked_key', sign(BASE, sel=b'revoked'), ['fail'], word='revoked')
    case('ed25519_altered', replace(sign(BASE, key=ED, sel=b'ed', alg=b'ed25519-sha256'),
                                    b'Quarterly', b'Monthly'), ['fail'])
    good_bad = sign(sign(BASE), key=OTHER, sel=b'sel')
    case('two_sigs_bad_good', good_bad, ['fail', 'pass'])
    # a signature that signs an earlier one (and oversigns it): never its own field
    case('signs_earlier_signature',
         sign_tags(sign(BASE), [(b'd', b'example.test'), (b's', b'sel')],
                   include=(b'from', b'dkim-signature', b'dkim-signature')),
         ['pass', 'pass'])
    case('two_sigs_other_domain', sign(sign(BASE), key=OTHER, sel=b'other', dom=b'other.test'),
         ['pass', 'pass'])

    # --- errors ---
    case('missing_key', sign(BASE, sel=b'nokey'), ['permerror'], word='no key')
    case('dns_tempfail', sign(BASE, sel=b'temp'), ['temperror'], word='temporarily')
    case('strict_key_sub_auid', sign(BASE, sel=b'strict', identity=b'a@sub.example.test'),
         ['permerror'], word='t=s')
    case('strict_key_pass', sign(BASE, sel=b'strict'), ['pass'])
    case('key_h_sha1_only', sign(BASE, sel=b'sha1only'), ['permerror'], word='h=')
    case('key_type_mismatch', sign(BASE, sel=b'edtype'), ['permerror'], word='type')
    case('key_not_email', sign(BASE, sel=b'notmail'), ['permerror'], word='s=')
    case('key_v_not_first', sign(BASE, sel=b'vlate'), ['permerror'], word='v=')
    case('key_bad_p', sign(BASE, sel=b'badp'), ['permerror'], word='p=')
    sig = sign(BASE)
    case('dup_tag', replace(sig, b'; s=sel', b'; s=sel; d=example.test'), ['permerror'],
         word='duplicate')
    case('no_bh', replace(sig, b' bh=', b' xh='), ['permerror'], word='bh=')
    case('v2', replace(sig, b'v=1;', b'v=2;'), ['permerror'], word='v=')
    case('bad_tag_name', replace(sig, b'v=1;', b'v=1; 9x=1;'), ['permerror'], word='tag')
    case('no_equals', replace(sig, b'v=1;', b'v=1; novalue;'), ['permerror'], word='=')
    case('unknown_algo', replace(sig, b'a=rsa-sha256', b'a=rsa-sha512'), ['permerror'],
         word='algorithm')
    case('unknown_canon', replace(sig, b'c=relaxed/relaxed', b'c=fancy/relaxed'),
         ['permerror'], word='canonicalization')
    case('bad_b64', replace(sig, b' b=', b' b=*'), ['permerror'], word='b=')
    case('h_without_from', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel')],
                                     include=(b'to', b'subject')), ['permerror'], word='From')
    case('auid_outside_d', sign_tags(BASE, [(b'd', b'example.test'), (b'i', b'@evil.test'),
                                            (b's', b'sel')]), ['permerror'], word='i=')
    case('expired_x', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel'),
                                       (b't', b'1500000000'), (b'x', b'1500000100')]),
         ['permerror'], word='expired')
    case('x_before_t', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel'),
                                        (b't', b'4000000000'), (b'x', b'3999999999')]),
         ['permerror'], word='x=')
    case('future_t', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel'),
                                      (b't', b'4000000000')]), ['permerror'], word='future')
    case('x_future_pass', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel'),
                                           (b't', b'%d' % T0), (b'x', b'9999999999')]), ['pass'])
    case('q_dns_txt_pass', sign_tags(BASE, [(b'd', b'example.test'), (b's', b'sel'),
                                            (b'q', b'dns/txt')]), ['pass'])

    # --- RFC 8301 ---
    case('rsa_sha1_policy', sign(BASE, alg=b'rsa-sha1'), ['policy'], word='rsa-sha1')
    case('rsa_sha1_altered', replace(sign(BASE, alg=b'rsa-sha1'), b'Alice\r\n', b'Eve\r\n'),
         ['fail'], word='body')
    case('rsa512_policy', sign(BASE, key=RSA512, sel=b'k512'), ['policy'], word='512')

    # --- unsigned ---
    case('unsigned', BASE, [])

    # --- ARC ---
    a1 = arc(BASE, 'hop1.test', 'none')
    case('arc1_pass', a1, [], 'pass', 1)
    a2 = arc(a1, 'hop2.test', 'pass', key=OTHER)
    case('arc2_pass', a2, [], 'pass', 2)
    case('arc_dkim_and_arc', arc(sign(BASE), 'hop1.test', 'none'), ['pass'], 'pass', 1)
    case('arc_body_altered', replace(a2, b'Alice\r\n', b'Mallory\r\n'), [], 'fail', 2, 'body')
    case('arc_ams_tampered', replace(a2, b'd=hop2.test;\r\n s=arc; t=1750000000; h=from : to : subject : date',
                                     b'd=hop2.test;\r\n s=arc; t=1750000000; h=from : to : subject'),
         [], 'fail', 2, 'ARC-Message-Signature')
    case('arc_old_ams_tampered', replace(a2, b'ARC-Message-Signature: i=1; a=rsa-sha256;',
                                         b'ARC-Message-Signature: i=1; a=rsa-sha256; z=y;'),
         [], 'fail', 2, 'ARC-Seal')
    case('arc_aar_tampered', replace(a2, b'ARC-Authentication-Results: i=1; hop1.test;',
                                     b'ARC-Authentication-Results: i=1; hop1.test; dkim=pass;'),
         [], 'fail', 2, 'ARC-Seal')
    broken = replace(a1, b'Alice\r\n', b'Mallory\r\n')
    case('arc_cv_fail', arc(broken, 'hop2.test', 'fail', key=OTHER), [], 'fail', 2, 'cv=fail')
    lines = a2.split(b'\r\n')
    drop = [i for i, l in enumerate(lines) if l.startswith(b'ARC-Authentication-Results: i=1')][0]
    case('arc_missing_aar', b'\r\n'.join(lines[:drop] + lines[drop + 1:]), [], 'fail', 2,
         'incomplete')
    case('arc_cv_pass_at_1', replace(a1, b'cv=none', b'cv=pass'), [], 'fail', 1, 'cv=')
    case('arc_dup_aar', replace(a1, b'MIME-Version',
                                b'ARC-Authentication-Results: i=1; x.test; none\r\nMIME-Version'),
         [], 'fail', 0, 'two')
    case('arc_i2_only', replace(replace(replace(a1, b'ARC-Seal: i=1', b'ARC-Seal: i=2'),
                                        b'ARC-Message-Signature: i=1',
                                        b'ARC-Message-Signature: i=2'),
                                b'ARC-Authentication-Results: i=1',
                                b'ARC-Authentication-Results: i=2'), [], 'fail', 2, 'i=1')
    case('arc_i51', replace(a1, b'ARC-Authentication-Results: i=1', b'ARC-Authentication-Results: i=51'),
         [], 'fail', 0, 'i=')
    case('arc_key_tempfail', arc(BASE, 'hop1.test', 'none', sel=b'temp'), [], 'fail', 1,
         'temperror')
    case('arc_seal_with_h', replace(a1, b'ARC-Seal: i=1;', b'ARC-Seal: i=1; h=from;'), [], 'fail',
         1, 'h=')

    with open(os.path.join(HERE, 'dns.txt'), 'w') as f:
        f.write('# generated by make_fixtures.py: name\tstatus\tTXT\n')
        for name, status, txt in DNS:
            f.write('%s\t%s\t%s\n' % (name, status, txt))
    with open(os.path.join(HERE, 'cases.txt'), 'w') as f:
        f.write('# generated by make_fixtures.py: name\tdkim\tarc\tarc_instances\treason_word\n')
        for c in CASES:
            f.write('\t'.join(c) + '\n')
    print('%d cases' % len(CASES))


if __name__ == '__main__':
    main()
