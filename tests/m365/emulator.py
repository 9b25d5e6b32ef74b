"""A Microsoft 365 emulator for moat's tests: Entra ID sign-in and Exchange Online.

Follows the shapes of /work/shared/M365.md (section numbers below refer to
it). Standard library only; one ThreadingHTTPServer on 127.0.0.1 serves both
the sign-in authority and the Exchange endpoint, so `url` and `exo_url` are the
same origin.

  - Sign-in (M365.md 1): the OAuth 2.0 device authorization grant (RFC 8628):
    POST /{tenant}/oauth2/v2.0/devicecode and /token, form-encoded, JSON
    answers and AADSTS error bodies; polling faster than `interval` answers
    slow_down and adds 5 s to the interval this code must keep from then on.
  - A device-login page (GET /devicelogin) so a browser test can play the
    admin: enter the code, pick an account, Continue or Decline.
  - Exchange (M365.md 2, 3): POST /adminapi/beta/{tenant}/InvokeCommand over a
    stateful fake tenant (accepted domains, transport rules with priorities,
    connectors, the protection policies and rules, presets, ARC), with
    @odata.nextLink paging and @adminapi.warnings.
  - Switches for every failure (Emulator.set(), or POST /_emulator/control).

Design choices where Microsoft's behaviour is not documented are marked
"emulator:" in comments; the tests pin them.

    emu = Emulator(page_size=2).start()
    emu.url, emu.exo_url           # "http://127.0.0.1:PORT"
    emu.set(throttle=2)            # the next two InvokeCommand calls get 429
    emu.approve(user_code, "admin@contoso.onmicrosoft.com")
    emu.tenant.find("TransportRule", "x"), emu.requests
    emu.stop()

Emulator(tls=(certfile, keyfile)) serves HTTPS instead (url becomes https://).

Run standalone: python3 tests/m365/emulator.py --port 8365 [--cert c.pem --key k.pem]
"""
import argparse
import base64
import copy
import datetime
import html
import ipaddress
import json
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXO_CLIENT_ID = "fb78d390-0c51-40cd-8e17-fdbfab77341b"
EXO_APP_NAME = "Microsoft Exchange REST API Based Powershell"
EXO_SCOPE = "https://outlook.office365.com/.default"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DC_NAME = "AM0PR01A01DC001.EURPR01A001.PROD.OUTLOOK.COM"
NAME_MAX = 64
RFC1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]

# The switches and their defaults; Emulator.set() refuses any other name.
SWITCHES = {
    "interval": 5,               # devicecode `interval`, seconds
    "expires_in": 900,           # devicecode `expires_in`, seconds
    "poll_slack": 0.0,           # tolerance on the interval check, seconds
    "code_expired": False,       # every poll answers expired_token (70019)
    "declined": False,           # every poll answers authorization_declined
    "slow_down": 0,              # the next N polls answer slow_down (+5 s)
    "conditional_access": False, # redeeming an approved code: AADSTS53003
    "mfa": False,                # redeeming an approved code: AADSTS50076
    "consent": False,            # redeeming an approved code: AADSTS65001
    "token_lifetime": 3599,      # access token expires_in, seconds
    "throttle": 0,               # the next N InvokeCommand calls answer 429
    "throttle_reset": 30,        # seconds until Rate-Limit-Reset
    "role_missing": False,       # True (every cmdlet) or a list of cmdlet names: 401
    "unavailable": [],           # cmdlet names answering 403 with an empty body
    "defender": True,            # Defender for Office 365 licensed
    "customization_needed": False,  # tenant dehydrated until Enable-OrganizationCustomization
    "apply_delay": 0,            # a change shows in Get- only after N Get- calls
    "page_size": 1000,           # server-side page size (Prefer may lower it)
}

ADMIN_ROLES_FULL = {"Global Administrator", "Exchange Administrator"}
ADMIN_ROLES_SECURITY = {"Security Administrator"}
ADMIN_ROLES_READ = {"Global Reader", "Security Reader"}


def _utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


class CmdletError(Exception):
    """A cmdlet failure: HTTP status plus the error id, exception type and text
    that go into details[].message as "id|type|text" (M365.md 2)."""

    def __init__(self, status, errid, extype, text, code=None):
        super().__init__(text)
        self.status = status
        self.errid = errid
        self.extype = extype
        self.text = text
        self.code = code or ("NotFound" if status == 404 else "BadRequest")


def _not_found(identity):
    return CmdletError(
        404, "Ex6F9304",
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        "The operation couldn't be performed because object '%s' couldn't be "
        "found on '%s'." % (identity, DC_NAME))


# emulator: error ids other than Ex6F9304 are not documented; these are fixed
# made-up values of the same shape so tests can split on '|'.
def _already_exists(kind, name):
    return CmdletError(
        400, "ExB2D5C1",
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAlreadyExistsException",
        "A %s with the name '%s' already exists. Specify a different name."
        % (kind, name))


def _invalid(text):
    return CmdletError(
        400, "Ex0E7A2F", "Microsoft.Exchange.Data.DataValidationException", text)


def _invalid_op(text):
    return CmdletError(
        400, "Ex9C41B0",
        "Microsoft.Exchange.Configuration.Tasks.InvalidOperationException", text)


def _no_param(name):
    return CmdletError(
        400, "ExA3F861",
        "System.Management.Automation.ParameterBindingException",
        "A parameter cannot be found that matches parameter name '%s'." % name)


def _customization_needed():
    return CmdletError(
        400, "Ex5D8E17",
        "Microsoft.Exchange.Management.Tasks.OrganizationCustomizationRequiredException",
        "The command you tried to run isn't currently allowed in your "
        "organization. To run this command, you first need to run the command: "
        "Enable-OrganizationCustomization.")


# Object kinds. rule_of: the policy kind a rule points to and its parameter.
KINDS = {
    "TransportRule": {"rule": True},
    "InboundConnector": {},
    "OutboundConnector": {},
    "HostedContentFilterPolicy": {"custom": True},
    "HostedContentFilterRule": {"rule": True, "custom": True,
                                "policy": ("HostedContentFilterPolicy", "HostedContentFilterPolicy")},
    "AntiPhishPolicy": {"custom": True},
    "AntiPhishRule": {"rule": True, "custom": True, "policy": ("AntiPhishPolicy", "AntiPhishPolicy")},
    "MalwareFilterPolicy": {"custom": True},
    "MalwareFilterRule": {"rule": True, "custom": True,
                          "policy": ("MalwareFilterPolicy", "MalwareFilterPolicy")},
    "SafeLinksPolicy": {"custom": True, "defender": True},
    "SafeLinksRule": {"rule": True, "custom": True, "defender": True,
                      "policy": ("SafeLinksPolicy", "SafeLinksPolicy")},
    "SafeAttachmentPolicy": {"custom": True, "defender": True},
    "SafeAttachmentRule": {"rule": True, "custom": True, "defender": True,
                           "policy": ("SafeAttachmentPolicy", "SafeAttachmentPolicy")},
    "ATPBuiltInProtectionRule": {"defender": True, "fixed": True},
    "EOPProtectionPolicyRule": {"fixed": True},
    "ATPProtectionPolicyRule": {"defender": True, "fixed": True},
    "AcceptedDomain": {"fixed": True},
    "OrganizationConfig": {"fixed": True},
    "ArcConfig": {"fixed": True},
}

# The cmdlets served, verb by kind (M365.md 3).
VERBS = {
    "TransportRule": ("Get", "New", "Set", "Remove", "Enable", "Disable"),
    "InboundConnector": ("Get", "New", "Set", "Remove"),
    "OutboundConnector": ("Get", "New", "Set", "Remove"),
    "ATPBuiltInProtectionRule": ("Get", "Set"),
    "EOPProtectionPolicyRule": ("Get", "Set", "Enable", "Disable"),
    "ATPProtectionPolicyRule": ("Get", "Set", "Enable", "Disable"),
    "AcceptedDomain": ("Get",),
    "OrganizationConfig": ("Get",),
    "ArcConfig": ("Get", "Set"),
}
for _k in ("HostedContentFilter", "AntiPhish", "MalwareFilter", "SafeLinks", "SafeAttachment"):
    VERBS[_k + "Policy"] = ("Get", "New", "Set", "Remove")
    VERBS[_k + "Rule"] = ("Get", "New", "Set", "Remove", "Enable", "Disable")

COMMON_PARAMS = {"Identity", "Confirm", "Force", "WhatIf", "ErrorAction", "Verbose"}

RULE_KINDS = [k for k, v in KINDS.items() if v.get("rule")]


class Tenant:
    """The fake tenant: accounts and objects. `objects` is the truth every
    write is checked against; with apply_delay a lagging copy serves Get-."""

    def __init__(self, domain="contoso.onmicrosoft.com", tenant_id=None,
                 org_name="Contoso", extra_domains=("contoso.com",)):
        self.domain = domain
        self.tenant_id = tenant_id or str(uuid.UUID("3f6a1c2e-8d4b-4e0a-9b7c-5a1d2e3f4a5b"))
        self.org_name = org_name
        self.domains = [domain] + list(extra_domains)
        # upn -> {"name", "roles": [...], "exo_enabled": bool}
        self.accounts = {
            "admin@" + domain: {"name": "Ada Admin", "roles": ["Global Administrator"],
                                "exo_enabled": True},
            "reader@" + domain: {"name": "Rea Reader", "roles": ["Global Reader"],
                                 "exo_enabled": True},
            "noapi@" + domain: {"name": "Noa NoApi", "roles": ["Global Administrator"],
                                "exo_enabled": False},
            "user@" + domain: {"name": "Uma User", "roles": [], "exo_enabled": True},
        }
        self.objects = {k: [] for k in KINDS}
        self._seed()

    def names(self):
        """Every identifier the tenant answers to in a URL path."""
        return {self.tenant_id.lower(), "organizations", "common"} | {d.lower() for d in self.domains}

    def admins(self):
        return [u for u, a in self.accounts.items() if a["roles"]]

    def _seed(self):
        o = self.objects
        for d in self.domains:
            o["AcceptedDomain"].append({
                "Name": d, "Identity": d, "DomainName": d,
                "DomainType": "Authoritative", "Default": d == self.domains[-1],
                "Guid": str(uuid.uuid4())})
        o["OrganizationConfig"].append({
            "Name": self.org_name, "Identity": self.domain, "IsDehydrated": False,
            "Guid": str(uuid.uuid4())})
        o["ArcConfig"].append({"Identity": "Default", "ArcTrustedSealers": ""})
        o["HostedContentFilterPolicy"].append(self._obj("Default", {
            "IsDefault": True, "SpamAction": "MoveToJmf",
            "HighConfidenceSpamAction": "MoveToJmf", "BulkSpamAction": "MoveToJmf",
            "PhishSpamAction": "MoveToJmf", "MarkAsSpamBulkMail": "On",
            "SpamZapEnabled": True, "PhishZapEnabled": True}))
        o["AntiPhishPolicy"].append(self._obj("Office365 AntiPhish Default", {
            "IsDefault": True, "Enabled": True, "EnableSpoofIntelligence": True,
            "HonorDmarcPolicy": True, "EnableUnauthenticatedSender": True,
            "EnableFirstContactSafetyTips": False}))
        o["MalwareFilterPolicy"].append(self._obj("Default", {
            "IsDefault": True, "EnableFileFilter": True, "ZapEnabled": True,
            "QuarantineTag": "AdminOnlyAccessPolicy"}))
        o["SafeLinksPolicy"].append(self._obj("Built-In Protection Policy", {
            "IsBuiltInProtection": True, "EnableSafeLinksForEmail": True,
            "TrackClicks": True}))
        o["SafeAttachmentPolicy"].append(self._obj("Built-In Protection Policy", {
            "IsBuiltInProtection": True, "Enable": True, "Action": "Block"}))
        o["ATPBuiltInProtectionRule"].append(self._obj("ATP Built-In Protection Rule", {
            "State": "Enabled", "Priority": 2147483647,
            "SafeLinksPolicy": "Built-In Protection Policy",
            "SafeAttachmentPolicy": "Built-In Protection Policy",
            "ExceptIfRecipientDomainIs": None}))
        for preset, state in (("Standard Preset Security Policy", "Enabled"),
                              ("Strict Preset Security Policy", "Disabled")):
            o["EOPProtectionPolicyRule"].append(self._obj(preset, {
                "State": state, "Priority": 0 if preset.startswith("Strict") else 1}))
            o["ATPProtectionPolicyRule"].append(self._obj(preset, {
                "State": state, "Priority": 0 if preset.startswith("Strict") else 1}))

    @staticmethod
    def _obj(name, props, guid=None):
        obj = {"Name": name, "Identity": name, "Guid": guid or str(uuid.uuid4())}
        obj.update(props)
        return obj

    def find(self, kind, identity):
        """The object of `kind` named (case-insensitively), GUID'd or identified `identity`."""
        return _find(self.objects, kind, identity)

    def add(self, kind, name, **props):
        """Seed an object directly (a test's setup); rules go last."""
        if KINDS[kind].get("rule"):
            props.setdefault("Priority", len(self.objects[kind]))
            props.setdefault("State", "Enabled")
        obj = self._obj(name, props)
        self.objects[kind].append(obj)
        if KINDS[kind].get("rule"):
            _renumber(self.objects[kind])
        return obj

    def rules(self, kind="TransportRule"):
        """The rules of `kind` in priority order, as (priority, name) pairs."""
        return [(r["Priority"], r["Name"]) for r in sorted(self.objects[kind], key=lambda r: r["Priority"])]


def _renumber(rules):
    rules.sort(key=lambda r: r["Priority"])
    for i, r in enumerate(rules):
        r["Priority"] = i


def _as_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "$true"):
        return True
    if isinstance(v, str) and v.lower() in ("false", "$false"):
        return False
    raise _invalid("Cannot convert value '%s' to type System.Boolean." % v)


def _as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _check_ip_ranges(param, values):
    for v in _as_list(values):
        try:
            if "-" in v:
                a, b = v.split("-", 1)
                if ipaddress.ip_address(a.strip()) > ipaddress.ip_address(b.strip()):
                    raise ValueError
            else:
                ipaddress.ip_network(v, strict=False)
        except (ValueError, TypeError):
            raise _invalid("The value '%s' of parameter %s is not a valid IP address, "
                           "IP address range or CIDR range." % (v, param))


# ---------------------------------------------------------------------------
# Cmdlet logic. Every write is a function of (objects, params, ctx) so it can
# run on the truth now and be replayed on the lagging view later.

def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise _invalid("The Name parameter can't be empty.")
    if len(name) > NAME_MAX:
        raise _invalid("The length of the property is too long. The maximum length is "
                       "%d and the length of the value provided is %d." % (NAME_MAX, len(name)))


def _validate_props(kind, params, existing=None):
    """Parameter rules of M365.md 3 that real Exchange enforces."""
    merged = dict(existing or {})
    merged.update(params)
    if kind == "TransportRule":
        if "SetSCL" in params:
            try:
                scl = int(params["SetSCL"])
            except (TypeError, ValueError):
                scl = None
            if scl is None or not (-1 <= scl <= 9):
                raise _invalid("SetSCL must be -1 or between 0 and 9; '%s' is not valid."
                               % params["SetSCL"])
        for a, b in (("SetHeaderName", "SetHeaderValue"),
                     ("HeaderMatchesMessageHeader", "HeaderMatchesPatterns"),
                     ("ExceptIfHeaderContainsMessageHeader", "ExceptIfHeaderContainsWords")):
            if (merged.get(a) is None) != (merged.get(b) is None):
                raise _invalid("The parameters %s and %s must be specified together." % (a, b))
        for p in ("SenderIpRanges", "ExceptIfSenderIpRanges"):
            if p in params:
                _check_ip_ranges(p, params[p])
        for p in ("FromScope", "SentToScope"):
            if p in params and params[p] not in ("InOrganization", "NotInOrganization"):
                raise _invalid("Cannot bind parameter '%s': '%s' is not InOrganization "
                               "or NotInOrganization." % (p, params[p]))
        if "Mode" in params and params["Mode"] not in ("Enforce", "Audit", "AuditAndNotify"):
            raise _invalid("Cannot bind parameter 'Mode': '%s' is not a valid mode." % params["Mode"])
    if kind == "InboundConnector":
        for ip in _as_list(params.get("EFSkipIPs")):
            try:
                net = ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise _invalid("'%s' is not a valid IP address or range for EFSkipIPs." % ip)
            if any(net.subnet_of(r) for r in RFC1918 if r.version == net.version):
                raise _invalid("EFSkipIPs can't contain private (RFC 1918) addresses: '%s'." % ip)
        for ip in _as_list(params.get("SenderIPAddresses")):
            try:
                net = ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise _invalid("'%s' is not a valid IP address for SenderIPAddresses." % ip)
            if net.version == 4 and net.prefixlen < 24:
                raise _invalid("SenderIPAddresses accepts IPv4 ranges from /24 to /32; "
                               "'%s' is too large." % ip)
    if kind == "MalwareFilterPolicy":
        # Malware is always quarantined (M365.md 3): the old Action parameter
        # is gone and a quarantine policy cannot be removed.
        if "Action" in params:
            raise _no_param("Action")
        if "QuarantineTag" in params and not params["QuarantineTag"]:
            raise _invalid_op("Malware is always quarantined; QuarantineTag can't be empty.")


def _priority(params, upper):
    try:
        p = int(params["Priority"])
    except (TypeError, ValueError):
        raise _invalid("Cannot convert value '%s' to type System.Int32." % params["Priority"])
    if not (0 <= p <= upper):
        raise _invalid("The value of Priority must be between 0 and %d; '%d' was given." % (upper, p))
    return p


def op_new(objects, kind, params, ctx):
    name = params.get("Name")
    _check_name(name)
    if _find(objects, kind, name):
        raise _already_exists(kind, name)
    _validate_props(kind, params)
    props = {k: v for k, v in params.items() if k not in COMMON_PARAMS and k != "Name"}
    info = KINDS[kind]
    if "policy" in info:
        pkind, pparam = info["policy"]
        if pparam not in params:
            raise _invalid("The %s parameter is required." % pparam)
        pol = _find(objects, pkind, params[pparam])
        if not pol:
            raise _not_found(params[pparam])
        props[pparam] = pol["Name"]
    if info.get("rule"):
        rules = objects[kind]
        enabled = _as_bool(props.pop("Enabled", True))
        props["State"] = "Enabled" if enabled else "Disabled"
        if kind == "TransportRule":
            props.setdefault("Mode", "Enforce")
        if "Priority" in params:
            pri = _priority(params, len(rules))
            for r in rules:
                if r["Priority"] >= pri:
                    r["Priority"] += 1
            props["Priority"] = pri
        else:
            props["Priority"] = len(rules)
    elif kind in ("InboundConnector", "OutboundConnector"):
        props["Enabled"] = _as_bool(props.get("Enabled", True))
        props.setdefault("ConnectorType", "OnPremises")
    else:
        props.setdefault("IsDefault", False)
    obj = Tenant._obj(name, props, ctx["guid"])
    objects[kind].append(obj)
    if info.get("rule"):
        _renumber(objects[kind])
    return [copy.deepcopy(obj)]


def op_set(objects, kind, params, ctx):
    obj = _find(objects, kind, params.get("Identity"))
    if not obj:
        raise _not_found(params.get("Identity"))
    info = KINDS[kind]
    if kind == "TransportRule" and "Enabled" in params:
        raise _no_param("Enabled")  # Enable-/Disable-TransportRule do that
    if obj.get("IsBuiltInProtection"):
        raise _invalid_op("The built-in protection policy '%s' can't be modified; add "
                          "exceptions with Set-ATPBuiltInProtectionRule." % obj["Name"])
    if kind == "ATPBuiltInProtectionRule" and "State" in params:
        raise _no_param("State")
    _validate_props(kind, params, obj)
    changes = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
    if "Name" in changes:
        _check_name(changes["Name"])
        other = _find(objects, kind, changes["Name"])
        if other and other is not obj:
            raise _already_exists(kind, changes["Name"])
    if "Enabled" in changes and kind in ("InboundConnector", "OutboundConnector"):
        changes["Enabled"] = _as_bool(changes["Enabled"])
    modified = False
    if "Priority" in changes and info.get("rule"):
        rules = objects[kind]
        pri = _priority(changes, len(rules) - 1)
        modified = obj["Priority"] != pri
        rules.remove(obj)
        rules.sort(key=lambda r: r["Priority"])
        rules.insert(pri, obj)
        for i, r in enumerate(rules):
            r["Priority"] = i
        changes.pop("Priority")
    for k, v in changes.items():
        if obj.get(k) != v:
            modified = True
        obj[k] = v
        if k == "Name":
            obj["Identity"] = v
    ctx["modified"] = modified
    return []


def op_remove(objects, kind, params, ctx):
    obj = _find(objects, kind, params.get("Identity"))
    if not obj:
        raise _not_found(params.get("Identity"))
    if obj.get("IsDefault"):
        raise _invalid_op("The default policy '%s' can't be removed." % obj["Name"])
    if obj.get("IsBuiltInProtection"):
        raise _invalid_op("The built-in protection policy '%s' can't be removed." % obj["Name"])
    for rkind in RULE_KINDS:
        pol = KINDS[rkind].get("policy")
        if pol and pol[0] == kind:
            for r in objects[rkind]:
                if r.get(pol[1], "").lower() == obj["Name"].lower():
                    raise _invalid_op("The policy '%s' is used by the rule '%s'; remove the "
                                      "rule first." % (obj["Name"], r["Name"]))
    objects[kind].remove(obj)
    if KINDS[kind].get("rule"):
        _renumber(objects[kind])
    return []


def op_state(objects, kind, params, ctx, enable):
    ident = params.get("Identity")
    obj = _find(objects, kind, ident)
    if not obj:
        info = KINDS[kind]
        if not enable and "policy" in info:
            pol = _find(objects, info["policy"][0], ident)
            if pol and pol.get("IsDefault"):
                raise _invalid_op("The default policy '%s' can't be disabled; it applies to "
                                  "everyone no other policy covers. Only custom rules can be "
                                  "turned off." % pol["Name"])
        raise _not_found(ident)
    want = "Enabled" if enable else "Disabled"
    ctx["modified"] = obj.get("State") != want
    obj["State"] = want
    return []


def op_enable_customization(objects, kind, params, ctx):
    org = objects["OrganizationConfig"][0]
    if not org["IsDehydrated"]:
        raise _invalid_op("This operation is not required. Organization is already "
                          "enabled for customization.")
    org["IsDehydrated"] = False
    return []


def _find(objects, kind, identity):
    if identity is None:
        return None
    want = str(identity).lower()
    for obj in objects[kind]:
        if want in (str(obj.get("Name", "")).lower(), str(obj.get("Guid", "")).lower(),
                    str(obj.get("Identity", "")).lower()):
            return obj
    return None


def parse_cmdlet(name):
    """'Set-TransportRule' -> ('Set', 'TransportRule') or None if not served."""
    if name == "Enable-OrganizationCustomization":
        return ("Enable", "OrganizationCustomization")
    verb, _, kind = str(name).partition("-")
    if kind in VERBS and verb in VERBS[kind]:
        return (verb, kind)
    return None


# ---------------------------------------------------------------------------

class Emulator:
    """The emulator: state, switches, and the HTTP server around them."""

    def __init__(self, tenant=None, clock=None, client_ids=(EXO_CLIENT_ID,),
                 scopes=(EXO_SCOPE,), host="127.0.0.1", port=0, tls=None, **switches):
        """tls: optional (certfile, keyfile) to serve HTTPS instead of HTTP."""
        self.tls = tls
        self.tenant = tenant or Tenant()
        self.clock = clock or time.time
        self.client_ids = set(client_ids)
        self.scopes = set(scopes)
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.view = None
        self.switches = dict(SWITCHES)
        self.set(**switches)
        # every request but control ones: dict(kind, method, path, query,
        # headers (names lower-cased), raw, form | cmdlet + parameters, status, response)
        self.requests = []
        self.devices = {}      # device_code -> device state
        self.tokens = {}       # access_token -> {"account", "scope", "expires", "tenant"}
        self.pages = {}        # skiptoken -> {"body", "items", "offset", "context"}
        self.pending = []      # [reads_left, verb, kind, params, ctx] not yet in the view
        # self.view: the lagging copy of tenant.objects while changes are pending
        self.server = None
        self.thread = None

    # --- test API ----------------------------------------------------------

    def start(self):
        handler = type("Handler", (_Handler,), {"emu": self})
        self.server = _Server((self.host, self.port), handler)
        self.port = self.server.server_address[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            # the handshake happens on first read, in the request's thread,
            # so a client that stalls in it cannot block accept()
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        """The sign-in authority (M365.md 1: {authority}/{tenant}/oauth2/...)."""
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    @property
    def exo_url(self):
        """The Exchange endpoint root (M365.md 2: {exo}/adminapi/beta/...)."""
        return self.url

    def set(self, **switches):
        """Change failure switches (see SWITCHES); unknown names raise."""
        unknown = set(switches) - set(SWITCHES)
        if unknown:
            raise KeyError("unknown emulator switch %s" % ", ".join(sorted(unknown)))
        with self.lock:
            for k, v in switches.items():
                if k == "customization_needed":
                    # the tenant's IsDehydrated, now, in the truth and the lagging view
                    for objs in (self.tenant.objects, self.view):
                        if objs is not None:
                            objs["OrganizationConfig"][0]["IsDehydrated"] = bool(v)
                self.switches[k] = v

    def device(self, user_code):
        """The device-code record of `user_code` (case-insensitive), or None."""
        want = user_code.strip().upper().replace("-", "")
        for d in self.devices.values():
            if d["user_code"] == want:
                return d
        return None

    def approve(self, user_code, account=None):
        """What the admin does in the browser: sign in as `account` and Continue."""
        with self.lock:
            d = self.device(user_code)
            if d is None:
                raise KeyError("no such user code %r" % user_code)
            account = account or self.tenant.admins()[0]
            if account not in self.tenant.accounts:
                raise KeyError("no such account %r" % account)
            d["state"] = "approved"
            d["account"] = account

    def decline(self, user_code):
        with self.lock:
            d = self.device(user_code)
            if d is None:
                raise KeyError("no such user code %r" % user_code)
            d["state"] = "declined"

    def calls(self, cmdlet=None):
        """The InvokeCommand requests (optionally of one cmdlet) in order."""
        return [r for r in self.requests if r["kind"] == "invoke"
                and (cmdlet is None or r.get("cmdlet") == cmdlet)]

    def visible(self):
        """The objects Get- cmdlets see now (lags tenant.objects with apply_delay)."""
        return self.view if self.view is not None else self.tenant.objects

    # --- sign-in (M365.md 1) -------------------------------------------------

    def aad_error(self, status, error, code, text):
        now = self.clock()
        ts = _utc(now).strftime("%Y-%m-%d %H:%M:%SZ")
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        desc = ("AADSTS%d: %s" % (code, text)) if code else text
        body = {
            "error": error,
            "error_description": "%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s"
                                 % (desc, trace, corr, ts),
            "error_codes": [code] if code else [],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
        }
        if code:
            body["error_uri"] = "https://login.microsoftonline.com/error?code=%d" % code
        return status, body

    def _check_tenant(self, tenant):
        if tenant.lower() not in self.tenant.names():
            return self.aad_error(400, "invalid_request", 90002,
                                  "Tenant '%s' not found. Check to make sure you have the "
                                  "correct tenant ID and are signing into the correct cloud." % tenant)
        return None

    def _check_client(self, form):
        if not form.get("client_id"):
            return self.aad_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'client_id'.")
        if form["client_id"] not in self.client_ids:
            return self.aad_error(400, "unauthorized_client", 700016,
                                  "Application with identifier '%s' was not found in the "
                                  "directory '%s'." % (form["client_id"], self.tenant.org_name))
        return None

    def devicecode(self, tenant, form):
        err = self._check_tenant(tenant) or self._check_client(form)
        if err:
            return err
        scope = form.get("scope", "")
        if not scope:
            return self.aad_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'scope'.")
        extra = {"offline_access", "openid", "profile"}
        parts = scope.split()
        if not any(p in self.scopes for p in parts) or any(
                p not in self.scopes and p not in extra for p in parts):
            return self.aad_error(400, "invalid_scope", 70011,
                                  "The provided request must include a 'scope' input parameter. "
                                  "The provided value for the input parameter 'scope' is not valid.")
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        user_code = "".join(secrets.choice(alphabet) for _ in range(9))
        device_code = "DAQABAAEAAAD" + secrets.token_urlsafe(96)
        now = self.clock()
        sw = self.switches
        self.devices[device_code] = {
            "device_code": device_code, "user_code": user_code, "client_id": form["client_id"],
            "scope": scope, "issued": now, "expires_in": int(sw["expires_in"]),
            "interval": int(sw["interval"]), "last_poll": None, "polls": 0,
            "state": "pending", "account": None,
        }
        verification_uri = self.url + "/devicelogin"
        return 200, {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification_uri,
            "expires_in": int(sw["expires_in"]),
            "interval": int(sw["interval"]),
            "message": "To sign in, use a web browser to open the page %s and enter the code "
                       "%s to authenticate." % (verification_uri, user_code),
        }

    def token(self, tenant, form):
        err = self._check_tenant(tenant)
        if err:
            return err
        gt = form.get("grant_type")
        if not gt:
            return self.aad_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'grant_type'.")
        if gt != DEVICE_GRANT:
            return self.aad_error(400, "unsupported_grant_type", 70003,
                                  "The app requested an unsupported grant type '%s'." % gt)
        err = self._check_client(form)
        if err:
            return err
        dc = form.get("device_code")
        if not dc:
            return self.aad_error(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'device_code'.")
        d = self.devices.get(dc)
        if d is None or d["state"] == "redeemed" or d["client_id"] != form["client_id"]:
            return self.aad_error(400, "bad_verification_code", 70018,
                                  "The provided value for the input parameter 'device_code' is not valid.")
        now = self.clock()
        sw = self.switches
        d["polls"] += 1
        last, d["last_poll"] = d["last_poll"], now
        if sw["code_expired"] or now - d["issued"] >= d["expires_in"]:
            d["state"] = "expired"
        if d["state"] == "expired":
            return self.aad_error(400, "expired_token", 70019, "Verification code expired.")
        if sw["declined"] or d["state"] == "declined":
            d["state"] = "declined"
            # emulator: Microsoft documents no AADSTS number for a declined
            # sign-in; error_codes is empty and the text has no prefix.
            return self.aad_error(400, "authorization_declined", 0,
                                  "authorization_declined: the user declined the sign-in request.")
        # RFC 8628 3.5: too fast (measured from the code's issue for the first
        # poll) or a forced slow_down: add 5 s for this and every later poll.
        since = now - (last if last is not None else d["issued"])
        if sw["slow_down"] or since + sw["poll_slack"] < d["interval"]:
            if sw["slow_down"]:
                sw["slow_down"] = int(sw["slow_down"]) - 1
            d["interval"] += 5
            # emulator: slow_down has no AADSTS number either (not in Microsoft's docs).
            return self.aad_error(400, "slow_down", 0,
                                  "slow_down: polling faster than the interval; wait %d seconds "
                                  "between requests." % d["interval"])
        if d["state"] == "pending":
            return self.aad_error(400, "authorization_pending", 70016,
                                  "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
        # Approved: sign-in policy is evaluated when the code is redeemed.
        if sw["conditional_access"]:
            return self.aad_error(400, "invalid_grant", 53003,
                                  "Access has been blocked by Conditional Access policies. "
                                  "The access policy does not allow token issuance.")
        if sw["mfa"]:
            return self.aad_error(400, "invalid_grant", 50076,
                                  "Due to a configuration change made by your administrator, or "
                                  "because you moved to a new location, you must use multi-factor "
                                  "authentication to access '00000002-0000-0ff1-ce00-000000000000'.")
        if sw["consent"]:
            return self.aad_error(400, "invalid_grant", 65001,
                                  "The user or administrator has not consented to use the "
                                  "application with ID '%s' named '%s'. Send an interactive "
                                  "authorization request for this user and resource."
                                  % (d["client_id"], EXO_APP_NAME))
        d["state"] = "redeemed"
        tok = secrets.token_urlsafe(48)
        life = int(sw["token_lifetime"])
        self.tokens[tok] = {"account": d["account"], "scope": d["scope"],
                            "expires": now + life, "client_id": d["client_id"]}
        body = {"token_type": "Bearer", "scope": d["scope"], "expires_in": life,
                "ext_expires_in": life, "access_token": tok}
        if "offline_access" in d["scope"].split():
            body["refresh_token"] = secrets.token_urlsafe(48)
        if "openid" in d["scope"].split():
            body["id_token"] = self.id_token(d["account"], d["client_id"], now, life)
        return 200, body

    def id_token(self, account, client_id, now, life):
        """The OpenID Connect id_token naming the admin and the tenant.

        emulator: it looks like Microsoft's (a JWT of RS256 with v2.0 claims)
        but the signature segment is random bytes: a client reading an
        id_token straight from the token endpoint over TLS need not check it
        (OpenID Connect Core 3.1.3.7 (6)), and must not rely on it here."""
        acct = self.tenant.accounts[account]
        tid = self.tenant.tenant_id
        header = {"typ": "JWT", "alg": "RS256", "kid": "emulator"}
        payload = {
            "aud": client_id,
            "iss": "https://login.microsoftonline.com/%s/v2.0" % tid,
            "iat": int(now), "nbf": int(now), "exp": int(now + life),
            "tid": tid,
            "oid": str(uuid.uuid5(uuid.UUID(tid), account)),
            "name": acct["name"],
            "preferred_username": account,
            "ver": "2.0",
        }
        return ".".join(_b64url(s) for s in (_json(header), _json(payload), secrets.token_bytes(256)))

    # --- InvokeCommand (M365.md 2) -------------------------------------------

    def invoke(self, tenant, query, headers, raw, rec):
        """One InvokeCommand request -> (status, extra headers, body bytes)."""
        h = {k.lower(): v for k, v in headers.items()}
        auth = h.get("authorization", "")
        tok = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if tok is None or tok["expires"] <= self.clock():
            return 401, {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}, b""
        rec["account"] = tok["account"]
        if tenant.lower() not in self.tenant.names() - {"common"}:
            return self._bad("Tenant '%s' is not known." % tenant)
        # emulator: real Exchange may be lenient about these; the client must send them.
        if not h.get("content-type", "").lower().startswith("application/json"):
            return self._bad("Content-Type must be application/json.")
        if "application/json" not in h.get("accept", "").lower():
            return self._bad("Accept must be application/json.")
        anchor = h.get("x-anchormailbox", "")
        if not re.fullmatch(r"UPN:[^@\s]+@[^@\s]+", anchor):
            return self._bad("X-AnchorMailbox must be 'UPN:<admin upn>'.")
        try:
            uuid.UUID(h.get("client-request-id", ""))
        except ValueError:
            return self._bad("client-request-id must be a GUID.")
        try:
            body = json.loads(raw.decode("utf-8"))
            ci = body["CmdletInput"]
            cmdlet = ci["CmdletName"]
            params = ci.get("Parameters") or {}
            if not isinstance(cmdlet, str) or not isinstance(params, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return self._bad("The body must be {\"CmdletInput\": {\"CmdletName\": ..., \"Parameters\": {...}}}.")
        rec["cmdlet"], rec["parameters"] = cmdlet, params
        sw = self.switches
        if sw["throttle"] > 0:
            sw["throttle"] -= 1
            reset = _utc(self.clock() + sw["throttle_reset"])
            return 429, {"Rate-Limit-Remaining": "0",
                         "Rate-Limit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                         "Retry-After": str(int(sw["throttle_reset"]))}, _json(
                {"error": {"code": "TooManyRequests",
                           "message": "Too many requests. Retry after %d seconds." % sw["throttle_reset"]}})
        parsed = parse_cmdlet(cmdlet)
        if cmdlet in sw["unavailable"] or parsed is None:
            return 403, {}, b""
        verb, kind = parsed
        if KINDS.get(kind, {}).get("defender") and not sw["defender"]:
            return 403, {}, b""
        if not self._allowed(tok["account"], verb, kind, cmdlet):
            return 401, {}, _json({"error": {"code": "Unauthorized",
                                             "message": "User is not allowed to call %s" % cmdlet}})
        skip = query.get("$skiptoken", [None])[0]
        if skip is not None:
            page = self.pages.get(skip)
            if page is None or page["body"] != body:
                return self._bad("The nextLink must be sent the same body as the first request.")
            return self._page(tenant, page["context"], page["items"], page["offset"], body, h, [])
        try:
            items, warnings = self._run(verb, kind, cmdlet, params)
        except CmdletError as e:
            return e.status, {}, _json({"error": {
                "code": e.code, "message": "Error executing cmdlet",
                "details": [{"code": "Client",
                             "message": "%s|%s|%s" % (e.errid, e.extype, e.text)}],
                "innererror": {"message": e.text, "type": e.extype,
                               "@Microsoft.Exchange.Admin.OData.Core.ODataServiceException.RequestId":
                                   h.get("client-request-id")}}})
        context = kind if kind in KINDS else "Object"
        return self._page(tenant, context, items, 0, body, h, warnings)

    def _bad(self, text):
        return 400, {}, _json({"error": {"code": "BadRequest", "message": text}})

    def _page(self, tenant, context, items, offset, body, h, warnings):
        size = int(self.switches["page_size"])
        m = re.search(r"odata\.maxpagesize=(\d+)", h.get("prefer", ""))
        if m:
            size = min(size, int(m.group(1)))
        size = max(size, 1)
        out = {"@odata.context": "%s/adminapi/beta/%s/$metadata#%s" % (self.exo_url, tenant, context),
               "value": items[offset:offset + size]}
        if offset + size < len(items):
            skip = secrets.token_urlsafe(16)
            self.pages[skip] = {"body": body, "items": items, "offset": offset + size,
                                "context": context}
            out["@odata.nextLink"] = "%s/adminapi/beta/%s/InvokeCommand?%s" % (
                self.exo_url, tenant, urllib.parse.urlencode({"$skiptoken": skip}))
        if warnings:
            out["@adminapi.warnings"] = warnings
        return 200, {}, _json(out)

    def _allowed(self, account, verb, kind, cmdlet):
        rm = self.switches["role_missing"]
        if rm is True or (isinstance(rm, (list, tuple, set)) and cmdlet in rm):
            return False
        acct = self.tenant.accounts.get(account)
        if acct is None or not acct["exo_enabled"]:
            # emulator: the real body for a user whose API access is disabled
            # is not documented; it looks like a missing role here.
            return False
        roles = set(acct["roles"])
        if roles & ADMIN_ROLES_FULL:
            return True
        if verb == "Get" and roles & (ADMIN_ROLES_READ | ADMIN_ROLES_SECURITY):
            return True
        if roles & ADMIN_ROLES_SECURITY and kind not in (
                "TransportRule", "InboundConnector", "OutboundConnector", "ArcConfig",
                "OrganizationCustomization"):
            return True
        return False

    def _run(self, verb, kind, cmdlet, params):
        """Run one cmdlet on the tenant -> (items, warnings)."""
        with self.lock:
            if verb == "Get":
                return self._get(kind, params), []
            dehydrated = self.visible()["OrganizationConfig"][0]["IsDehydrated"]
            if dehydrated and KINDS.get(kind, {}).get("custom") and verb in (
                    "New", "Set", "Remove", "Enable", "Disable"):
                raise _customization_needed()
            ctx = {"guid": str(uuid.uuid4())}
            delay = int(self.switches["apply_delay"])
            lag = delay > 0 or bool(self.pending)
            before = copy.deepcopy(self.tenant.objects) if lag and self.view is None else None
            out = self._apply(verb, kind, params, ctx, self.tenant.objects)
            if lag:
                # The change is made; Get- keeps seeing the old state until it
                # has been read `delay` times, then it is replayed on the view.
                if self.view is None:
                    self.view = before
                self.pending.append([delay, verb, kind, params, {"guid": ctx["guid"]}])
            warnings = []
            if verb in ("Set", "Enable", "Disable") and not ctx.get("modified", True):
                warnings.append("The command completed successfully but no settings of '%s' "
                                "have been modified." % params.get("Identity"))
            return out, warnings

    def _apply(self, verb, kind, params, ctx, objects):
        if verb == "New":
            return op_new(objects, kind, params, ctx)
        if verb == "Set":
            return op_set(objects, kind, params, ctx)
        if verb == "Remove":
            return op_remove(objects, kind, params, ctx)
        if kind == "OrganizationCustomization":
            return op_enable_customization(objects, kind, params, ctx)
        return op_state(objects, kind, params, ctx, verb == "Enable")

    def _get(self, kind, params):
        # One read: every pending change comes one read closer to showing.
        if self.pending:
            for p in self.pending:
                p[0] -= 1
            while self.pending and self.pending[0][0] <= 0:
                _, verb, pkind, pparams, pctx = self.pending.pop(0)
                try:
                    self._apply(verb, pkind, pparams, pctx, self.view)
                except CmdletError:
                    pass
            if not self.pending:
                self.view = None
        objs = self.visible()[kind]
        if kind in KINDS and KINDS[kind].get("rule"):
            objs = sorted(objs, key=lambda r: r["Priority"])
        ident = params.get("Identity")
        if ident is not None:
            obj = _find(self.visible(), kind, ident)
            if obj is None:
                raise _not_found(ident)
            objs = [obj]
        return copy.deepcopy(objs)

    # --- device-login page -----------------------------------------------------

    def login_page(self, method, path, form):
        """The browser side of the device flow -> (status, html)."""
        if method == "GET":
            return 200, _page("Enter code", _code_form(""))
        code = form.get("otc", "")
        d = self.device(code) if code else None
        now = self.clock()
        if d is None or d["state"] != "pending" or now - d["issued"] >= d["expires_in"] \
                or self.switches["code_expired"]:
            return 200, _page("Enter code", _code_form(
                "That code didn't work. Check the code and try again."))
        step = form.get("step", "code")
        if step == "code":
            items = "".join(
                '<li><button type="submit" name="account" value="%s">%s<br>%s</button></li>'
                % (_e(u), _e(self.tenant.accounts[u]["name"]), _e(u)) for u in self.tenant.admins())
            return 200, _page("Pick an account", (
                '<h1>Pick an account</h1><form method="post" action="/devicelogin">'
                '<input type="hidden" name="otc" value="%s"><input type="hidden" name="step" '
                'value="account"><ul>%s</ul></form>') % (_e(d["user_code"]), items))
        account = form.get("account", "")
        if account not in self.tenant.admins():
            return 200, _page("Pick an account", "<p>Unknown account %s.</p>" % _e(account))
        if step == "account":
            return 200, _page("Are you trying to sign in?", (
                "<h1>Are you trying to sign in to %s?</h1><p>Signed in as %s.</p>"
                "<p>Only continue if you downloaded the app from a store or website that you "
                'trust.</p><form method="post" action="/devicelogin">'
                '<input type="hidden" name="otc" value="%s"><input type="hidden" name="account" '
                'value="%s"><input type="hidden" name="step" value="confirm">'
                '<button type="submit" name="action" value="continue">Continue</button> '
                '<button type="submit" name="action" value="decline">Decline</button></form>')
                % (_e(EXO_APP_NAME), _e(account), _e(d["user_code"]), _e(account)))
        if form.get("action") == "continue":
            self.approve(d["user_code"], account)
            return 200, _page("Signed in", (
                "<h1>%s</h1><p>You have signed in to the %s application on your device. "
                "You may now close this window.</p>") % (_e(EXO_APP_NAME), _e(EXO_APP_NAME)))
        self.decline(d["user_code"])
        return 200, _page("Declined", "<h1>Sign-in declined</h1><p>You declined the sign-in "
                                      "to %s. You may now close this window.</p>" % _e(EXO_APP_NAME))

    # --- control -----------------------------------------------------------

    def control(self, body):
        """POST /_emulator/control: {"set": {...}} or switches directly, plus
        {"approve": {"user_code", "account"}}, {"decline": {"user_code"}}."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        body = dict(body)
        ap = body.pop("approve", None)
        dc = body.pop("decline", None)
        sw = body.pop("set", {})
        sw.update(body)
        self.set(**sw)
        if ap:
            self.approve(ap["user_code"], ap.get("account"))
        if dc:
            self.decline(dc["user_code"])
        return {"switches": self.switches}


def _e(s):
    return html.escape(str(s), quote=True)


def _json(obj):
    return json.dumps(obj).encode("utf-8")


def _b64url(raw):
    """base64url without padding (RFC 7515 2), as JWT segments are written."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _page(title, body):
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title></head>'
            "<body>%s</body></html>" % (_e(title), body))


def _code_form(error):
    err = '<p class="error">%s</p>' % _e(error) if error else ""
    return ('<h1>Enter code</h1><p>Enter the code displayed on your app or device.</p>%s'
            '<form method="post" action="/devicelogin"><input type="hidden" name="step" '
            'value="code"><input type="text" name="otc" autocomplete="off">'
            '<button type="submit">Next</button></form>') % err


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client refusing the certificate is what tests of certificate
        # checks expect, not an emulator bug worth a traceback.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emu = None  # set by Emulator.start()

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body=b"", ctype="application/json; charset=utf-8", headers=None):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method):
        emu = self.emu
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        query = urllib.parse.parse_qs(u.query)
        raw = self._read() if method == "POST" else b""
        rec = {"kind": "other", "method": method, "path": path, "query": u.query,
               "headers": {k.lower(): v for k, v in self.headers.items()}, "raw": raw, "time": emu.clock()}
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        status, headers, body, ctype = 404, {}, b"", "application/json; charset=utf-8"
        try:
            with emu.lock:
                if method == "POST" and len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"] \
                        and parts[3] in ("devicecode", "token"):
                    rec["kind"] = parts[3]
                    form = {k: v[0] for k, v in urllib.parse.parse_qs(
                        raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
                    rec["form"] = form
                    ct = self.headers.get("Content-Type", "")
                    if not ct.startswith("application/x-www-form-urlencoded"):
                        status, obj = emu.aad_error(400, "invalid_request", 900144,
                                                    "The request body must be form-encoded.")
                    elif parts[3] == "devicecode":
                        status, obj = emu.devicecode(parts[0], form)
                    else:
                        status, obj = emu.token(parts[0], form)
                    body = _json(obj)
                    rec["response"] = obj
                elif len(parts) == 4 and parts[0] == "adminapi" and parts[1] == "beta" \
                        and parts[3] == "InvokeCommand" and method == "POST":
                    rec["kind"] = "invoke"
                    status, headers, body = emu.invoke(parts[2], query, dict(self.headers.items()),
                                                       raw, rec)
                    rec["response"] = json.loads(body) if body else None
                elif parts[:1] == ["devicelogin"]:
                    rec["kind"] = "login"
                    form = {k: v[0] for k, v in urllib.parse.parse_qs(
                        raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
                    status, page = emu.login_page(method, path, form)
                    body, ctype = page.encode("utf-8"), "text/html; charset=utf-8"
                elif parts == ["_emulator", "control"] and method == "POST":
                    rec["kind"] = "control"
                    try:
                        status, body = 200, _json(emu.control(json.loads(raw or b"{}")))
                    except (ValueError, KeyError, TypeError) as e:
                        status, body = 400, _json({"error": str(e)})
                elif parts == ["_emulator", "state"] and method == "GET":
                    rec["kind"] = "control"
                    status, body = 200, _json({"objects": emu.tenant.objects,
                                               "visible": emu.visible(),
                                               "switches": emu.switches})
                elif parts == ["_emulator", "requests"] and method == "GET":
                    rec["kind"] = "control"
                    status, body = 200, _json([{k: v for k, v in r.items() if k != "raw"}
                                               for r in emu.requests])
                rec["status"] = status
                if rec["kind"] != "control":
                    emu.requests.append(rec)
        except Exception as e:  # a bug in the emulator must show, not hang the client
            status, body = 500, _json({"error": {"code": "EmulatorBug", "message": repr(e)}})
        if rec["kind"] == "invoke" and "client-request-id" in {k.lower() for k in self.headers}:
            headers = dict(headers)
            headers["client-request-id"] = self.headers.get("client-request-id")
        self._send(status, body, ctype, headers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8365)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    ap.add_argument("--key", help="PEM private key of --cert")
    args = ap.parse_args()
    tls = (args.cert, args.key or args.cert) if args.cert else None
    emu = Emulator(host=args.host, port=args.port, page_size=args.page_size, tls=tls).start()
    print("emulator on %s (tenant %s, %s); Ctrl-C to stop" % (
        emu.url, emu.tenant.domain, emu.tenant.tenant_id), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emu.stop()


if __name__ == "__main__":
    main()
