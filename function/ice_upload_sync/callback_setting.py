"""ICE's event callback setting, read and merged, never overwritten by surprise (``ice-callback show|set``).

ICE keeps one callback setting per region (contract section 7): one destination (an HTTP(S) URL or an MNS
queue named ``ice-callback-...``), one event list, one AuthKey, and ``SetEventCallback`` replaces all of it.
An account that already sends, say, ``ProduceMediaComplete`` somewhere would lose it to a plain
``SetEventCallback``. So ``set`` reads the setting first and plans from it (:func:`plan`, pure):
``UploadByURLComplete`` joins the existing event list, every other event type stays, the destination stays
when it is ours already; another destination is replaced only when asked (``replace``), after naming what
would be lost. After writing, the setting is read back and compared with the plan.

An AuthKey is a secret: it is never printed by ``show`` (:func:`masked_key`), never logged, never in an error
message; a key made here (:func:`new_auth_key`) is printed once, for ``CALLBACK_AUTH_KEY``. ICE's rule for a
key (the SetEventCallback reference): at most 32 characters, upper- and lower-case letters and digits, and
nothing else (:func:`auth_key_problem`).

The pure part imports no SDK; :class:`IceCallbackApi` calls ``GetEventCallback`` / ``SetEventCallback``
through the official SDK with the function's own ICE client (``ICE_REGION``, ``ICE_ENDPOINT``,
``ALIBABA_CLOUD_*``).
"""
from __future__ import annotations

import json
import secrets
import string
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TextIO, Tuple
from urllib.parse import urlsplit

from .clients import unwrapped
from .config import Settings
from .errors import BadRequest, IceUploadSyncError, UpstreamError

URL_UPLOAD_EVENT = "UploadByURLComplete"  # the event this function records
HTTP, MNS = "HTTP", "MNS"
QUEUE_PREFIX = "ice-callback-"
MAX_AUTH_KEY_LENGTH = 32
MAX_URL_BYTES = 256  # ICE: "The callback URL cannot exceed 256 bytes"
_KEY_ALPHABET = string.ascii_letters + string.digits
WIDTH = 100  # the command line's terminal width


class BadCallbackRequest(BadRequest):
    """What was asked cannot be set (a key or queue ICE refuses, a URL that is none): exit 2, nothing called."""


class CallbackRefused(IceUploadSyncError):
    """The plan would replace another destination, and ``--replace`` was not given: nothing was written."""


# ---------------------------------------------------------------- ICE's rules, locally


def auth_key_problem(key: str) -> Optional[str]:
    """Why ICE refuses ``key`` as an AuthKey, or None. The text never quotes the key."""
    if not key:
        return "the AuthKey is empty"
    if len(key) > MAX_AUTH_KEY_LENGTH:
        return f"an AuthKey has at most {MAX_AUTH_KEY_LENGTH} characters, this one has {len(key)}"
    if any(char not in _KEY_ALPHABET for char in key):
        return "an AuthKey holds only letters (A-Z, a-z) and digits"
    if not (any(c in string.ascii_uppercase for c in key) and any(c in string.ascii_lowercase for c in key)
            and any(c in string.digits for c in key)):
        return "an AuthKey must contain upper-case letters, lower-case letters and digits"
    return None


def new_auth_key(length: int = MAX_AUTH_KEY_LENGTH) -> str:
    """A random key ICE accepts: ``length`` letters and digits, at least one of each kind."""
    while True:
        key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))
        if auth_key_problem(key) is None:
            return key


def masked_key(key: Optional[str]) -> str:
    """What may be shown of a key: whether there is one, and its length."""
    return f"set ({len(key)} characters)" if key else "not set"


def url_problem(url: str) -> Optional[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url must be an http(s) URL with a host (the function's HTTP trigger), got {url!r}"
    if len(url.encode("utf-8")) > MAX_URL_BYTES:
        return f"ICE takes a CallbackURL of at most {MAX_URL_BYTES} bytes, this one has {len(url.encode('utf-8'))}"
    return None


def queue_problem(name: str) -> Optional[str]:
    if not name.startswith(QUEUE_PREFIX) or name == QUEUE_PREFIX:
        return f"ICE calls back only to an MNS queue whose name starts with {QUEUE_PREFIX}, got {name!r}"
    if len(name) > 120 or any(char not in _KEY_ALPHABET + "-" for char in name):
        return f"an MNS queue name has at most 120 letters, digits and hyphens, got {name!r}"
    return None


def parse_event_types(value: Optional[str]) -> Tuple[str, ...]:
    """ICE's comma-separated EventTypeList: items trimmed, empty ones and repeats dropped."""
    return tuple(dict.fromkeys(item.strip() for item in (value or "").split(",") if item.strip()))


# ---------------------------------------------------------------- the setting and the plan


@dataclass(frozen=True)
class CallbackSetting:
    """One region's setting as GetEventCallback answers it (``callback_type`` None: nothing is set).

    The key is kept for writing it back and comparing, and never shown: see :meth:`to_dict`.
    """

    callback_type: Optional[str] = None  # HTTP | MNS
    url: Optional[str] = None
    queue: Optional[str] = None
    event_types: Tuple[str, ...] = ()
    auth_switch: Optional[str] = None  # on | off (HTTP only)
    auth_key: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_sdk(cls, body: Any) -> CallbackSetting:
        """From the SDK's GetEventCallbackResponseBody; empty strings are absent values."""
        def text(name: str) -> Optional[str]:
            value = getattr(body, name, None) if body is not None else None
            if value is None:
                return None
            return str(value).strip() or None

        callback_type = text("callback_type")
        return cls(callback_type=callback_type.upper() if callback_type else None, url=text("callback_url"),
                   queue=text("callback_queue_name"), event_types=parse_event_types(text("event_type_list")),
                   auth_switch=(text("auth_switch") or "").lower() or None, auth_key=text("auth_key"))

    @property
    def destination(self) -> Optional[str]:
        """Where callbacks go: the URL (HTTP) or the queue (MNS); None when nothing is set."""
        return self.queue if self.callback_type == MNS else self.url

    @property
    def configured(self) -> bool:
        return self.destination is not None

    @property
    def described(self) -> str:
        if not self.configured:
            return "nothing (no callback is set)"
        kind = "the MNS queue" if self.callback_type == MNS else self.callback_type or HTTP
        return f"{kind} {self.destination}"

    @property
    def subscribed(self) -> bool:
        """True when ICE sends this function's event here."""
        return self.configured and URL_UPLOAD_EVENT in self.event_types

    def to_dict(self) -> Dict[str, Any]:
        """For people and scripts: everything but the key, which is masked."""
        return {"callback_type": self.callback_type, "callback_url": self.url, "callback_queue_name": self.queue,
                "event_types": list(self.event_types), "auth_switch": self.auth_switch,
                "auth_key": masked_key(self.auth_key), "upload_by_url_complete": self.subscribed}

    def same_as(self, other: CallbackSetting) -> bool:
        """Equal as ICE means it: the event list in any order, the AuthSwitch and AuthKey for HTTP only
        (they "take effect only if CallbackType is HTTP")."""
        return self._essence() == other._essence()

    def _essence(self) -> Tuple[Any, ...]:
        kind = self.callback_type or (HTTP if self.url else None)
        auth = (self.auth_switch or "off", self.auth_key) if kind == HTTP else ()
        return (kind, self.destination, tuple(sorted(self.event_types)), *auth)


@dataclass(frozen=True)
class SetRequest:
    """What ``ice-callback set`` was asked: one destination, maybe a key. Checked when made (exit 2)."""

    url: Optional[str] = None
    queue: Optional[str] = None
    key: Optional[str] = field(default=None, repr=False)
    new_key: bool = False  # ``key`` was made here (--new-key): printed once after it is set
    replace: bool = False

    def __post_init__(self) -> None:
        if (self.url is None) == (self.queue is None):
            raise BadCallbackRequest("give one destination: --url URL (HTTP) or --queue ice-callback-NAME (MNS)")
        problem = url_problem(self.url) if self.url is not None else queue_problem(self.queue or "")
        if problem:
            raise BadCallbackRequest(problem)
        if self.key is not None:
            if self.queue is not None:
                raise BadCallbackRequest("an AuthKey signs HTTP callbacks only: --key and --new-key go with --url")
            problem = auth_key_problem(self.key)
            if problem:
                raise BadCallbackRequest(f"ICE would refuse this --key: {problem}; --new-key makes one it accepts")

    @classmethod
    def from_options(cls, *, url: Optional[str], queue: Optional[str], key: Optional[str], new_key: bool,
                     replace: bool) -> SetRequest:
        if key is not None and new_key:
            raise BadCallbackRequest("--key and --new-key exclude each other")
        return cls(url=url, queue=queue, key=new_auth_key() if new_key else key, new_key=new_key, replace=replace)

    @property
    def callback_type(self) -> str:
        return HTTP if self.url is not None else MNS


@dataclass(frozen=True)
class Plan:
    """What SetEventCallback will write (``wanted``) from ``current``, and what it changes or loses."""

    current: CallbackSetting
    wanted: CallbackSetting
    changes: Tuple[str, ...]  # what happens, one line each
    lost: Tuple[str, ...]  # what another integration loses (non-empty only when the destination changes)
    notes: Tuple[str, ...]  # what the operator must know (the key kept, callbacks left unsigned)
    new_key: bool = False

    @property
    def replaces(self) -> bool:
        return bool(self.lost)

    @property
    def needed(self) -> bool:
        """False when ICE holds the wanted setting already."""
        return not self.current.same_as(self.wanted)

    def to_dict(self) -> Dict[str, Any]:
        return {"current": self.current.to_dict(), "wanted": self.wanted.to_dict(), "changes": list(self.changes),
                "lost": list(self.lost), "notes": list(self.notes), "write_needed": self.needed}


def plan(current: CallbackSetting, request: SetRequest) -> Plan:
    """The setting to write: ``current`` with our destination, ``UploadByURLComplete`` added to its event list
    (every other event type kept, in its order), and its key kept unless another one is given. Pure.

    Another destination (a URL, a queue, the other callback type) is named in ``lost``, with the event
    types that would now come to us instead; whether that may go ahead is the caller's ``replace``.
    """
    ours = request.url if request.url is not None else request.queue
    kind = request.callback_type
    others = tuple(event for event in current.event_types if event != URL_UPLOAD_EVENT)
    events = current.event_types if URL_UPLOAD_EVENT in current.event_types else \
        (*current.event_types, URL_UPLOAD_EVENT)
    changes: List[str] = []
    lost: List[str] = []
    notes: List[str] = []
    same_place = current.configured and current.destination == ours and (current.callback_type or HTTP) == kind
    if same_place:
        changes.append(f"keep the destination: {kind} {ours}")
    elif not current.configured:
        changes.append(f"set the destination: {kind} {ours} (none was set)")
    else:
        changes.append(f"replace the destination {current.described} with {kind} {ours}")
        lost.append(f"callbacks to {current.described} stop: ICE keeps one setting per region")
        if others:
            lost.append(f"these event types would come to {ours} instead: {', '.join(others)}")
    if URL_UPLOAD_EVENT in current.event_types:
        changes.append(f"keep the event list: {', '.join(current.event_types)}")
    else:
        kept = f" (kept: {', '.join(current.event_types)})" if current.event_types else ""
        changes.append(f"add {URL_UPLOAD_EVENT} to the event list{kept}")

    if kind == MNS:
        wanted = CallbackSetting(MNS, None, ours, events)
        if current.auth_key or current.auth_switch == "on":
            notes.append("MNS callbacks are not signed: the AuthKey and AuthSwitch are not sent")
        return Plan(current, wanted, tuple(changes), tuple(lost), tuple(notes))

    if request.key is not None:
        switch, key = "on", request.key
        if request.new_key:
            changes.append(f"set a new AuthKey ({len(key)} characters, made here, shown once it is set) "
                           "and AuthSwitch on")
        elif current.auth_key == key and current.auth_switch == "on":
            changes.append("keep the AuthKey: ICE holds the one given (AuthSwitch on)")
        else:
            changes.append(f"set the AuthKey given ({len(key)} characters) and AuthSwitch on")
    elif current.auth_key and current.callback_type in (HTTP, None):
        switch, key = current.auth_switch or "on", current.auth_key
        changes.append(f"keep the AuthKey ICE holds ({masked_key(key)}) and AuthSwitch {switch}")
        notes.append("the function's CALLBACK_AUTH_KEY must be the AuthKey ICE holds; --new-key makes a new one")
        if switch != "on":
            notes.append("AuthSwitch is off: ICE does not sign callbacks; --new-key turns signing on")
    else:
        switch, key = "off", None
        changes.append("AuthSwitch off: no AuthKey is set")
        notes.append("callbacks will not be signed, and anyone who finds the URL can call it: "
                     "use --new-key (then set CALLBACK_AUTH_KEY)")
    wanted = CallbackSetting(HTTP, ours, None, events, switch, key)
    return Plan(current, wanted, tuple(changes), tuple(lost), tuple(notes), new_key=request.new_key)


# ---------------------------------------------------------------- ICE, through the official SDK


class IceCallbackApi:
    """GetEventCallback / SetEventCallback with the function's ICE client (one attempt each, no retries)."""

    def __init__(self, settings: Settings, credentials: Any) -> None:
        from .ice import IceGateway  # imports no SDK: the client below does

        self.settings = settings
        gateway = IceGateway(settings)
        gateway.bind(credentials)
        self._gateway = gateway

    @classmethod
    def from_env(cls) -> IceCallbackApi:
        from .ice import resolve_credentials

        return cls(Settings.from_env(), resolve_credentials(None))

    @property
    def where(self) -> str:
        return f"{self.settings.ice_region} ({self.settings.ice_endpoint.host})"

    def get(self) -> CallbackSetting:
        client, sdk = self._client()
        try:
            response = client.get_event_callback_with_options(sdk.runtime())
        except Exception as exc:  # the SDK's errors, translated at this boundary
            raise self._translate(exc, "GetEventCallback", sdk) from None
        return CallbackSetting.from_sdk(response.body)

    def set(self, wanted: CallbackSetting) -> Optional[str]:
        """Write ``wanted`` (the whole setting, as ICE replaces it); ICE's RequestId."""
        client, sdk = self._client()
        if wanted.callback_type == MNS:
            request = sdk.models.SetEventCallbackRequest(callback_type=MNS, callback_queue_name=wanted.queue,
                                                         event_type_list=",".join(wanted.event_types))
        else:
            request = sdk.models.SetEventCallbackRequest(callback_type=HTTP, callback_url=wanted.url,
                                                         event_type_list=",".join(wanted.event_types),
                                                         auth_switch=wanted.auth_switch or "off",
                                                         auth_key=wanted.auth_key)
        try:
            response = client.set_event_callback_with_options(request, sdk.runtime())
        except Exception as exc:
            raise self._translate(exc, "SetEventCallback", sdk, secret=wanted.auth_key) from None
        body = response.body
        if body is not None and body.success is False:
            raise UpstreamError(f"ICE answered SetEventCallback with Success false (request {body.request_id})",
                                code="NotSuccess")
        return body.request_id if body is not None else None

    def _client(self) -> Tuple[Any, _Sdk]:
        from alibabacloud_ice20201109 import models
        from alibabacloud_tea_openapi import exceptions
        from darabonba.runtime import RuntimeOptions

        # the gateway builds the client as the function does (endpoint, region, credentials, timeouts)
        client = self._gateway.client()
        return client, _Sdk(models, exceptions, RuntimeOptions)

    def _translate(self, exc: Exception, action: str, sdk: _Sdk, secret: Optional[str] = None) -> UpstreamError:
        """ICE's refusal with its code, or the transport failure; the AuthKey (sent in the query) never shows."""
        from .ice import Refusal

        if isinstance(exc, sdk.exceptions.AlibabaCloudException):
            refusal = Refusal.of(exc)
            fix = _fix(refusal.code, refusal.status, action)
            text = f"ICE refused {action} in {self.where}: {refusal.described()}{'; ' + fix if fix else ''}"
            return UpstreamError(_scrub(text, secret), code=refusal.code or None, permanent=fix is not None)
        _inner, detail = unwrapped(exc)
        return UpstreamError(_scrub(f"ICE at {self.where} could not be reached for {action}: {detail}", secret),
                             code="NetworkError", retryable=True)


@dataclass(frozen=True)
class _Sdk:
    models: Any
    exceptions: Any
    RuntimeOptions: Any

    def runtime(self) -> Any:
        return self.RuntimeOptions(connect_timeout=2000, read_timeout=10000, autoretry=False)


def _fix(code: str, status: int, action: str) -> Optional[str]:
    if code.startswith(("Forbidden", "NoPermission")) or status in (401, 403):
        return f"the caller may not do this: grant ice:{action} to the RAM user of ALIBABA_CLOUD_ACCESS_KEY_ID"
    from .ice import permanent_fix

    return permanent_fix(code, status)


def _scrub(text: str, secret: Optional[str]) -> str:
    return text.replace(secret, "<AuthKey>") if secret else text


# ---------------------------------------------------------------- the two commands


def show(api: IceCallbackApi, out: TextIO, *, as_json: bool = False) -> int:
    """``ice-callback show``: the region's setting, its AuthKey masked."""
    current = api.get()
    if as_json:
        _print_json({"region": api.settings.ice_region, "endpoint": api.settings.ice_endpoint.host,
                     **current.to_dict()}, out)
        return 0
    out.write(f"ICE's event callback in {api.where}:\n")
    _write_setting(current, out)
    if not current.subscribed:
        out.write(_wrapped(f"{URL_UPLOAD_EVENT} is not subscribed: this function gets no callbacks "
                           "(ice-upload-sync ice-callback set --url URL adds it)"))
    return 0


def apply(api: IceCallbackApi, request: SetRequest, out: TextIO, *, dry_run: bool = False,
          as_json: bool = False) -> int:
    """``ice-callback set``: read, plan, refuse or write, read back and verify."""
    current = api.get()
    the_plan = plan(current, request)
    result: Dict[str, Any] = {"region": api.settings.ice_region, **the_plan.to_dict(), "dry_run": dry_run,
                              "written": False, "verified": False}
    refused = the_plan.replaces and not request.replace
    if not as_json:
        out.write(f"ICE's event callback in {api.where} now:\n")
        _write_setting(current, out)
        out.write("The plan:\n" + "".join(_wrapped(line, "  ") for line in the_plan.changes))
        if the_plan.lost:
            out.write(("Lost if it goes ahead:\n" if refused or dry_run else "Lost:\n")
                      + "".join(_wrapped(line, "  ") for line in the_plan.lost))
        out.write("".join(_wrapped(f"Note: {line}") for line in the_plan.notes))
    if refused:
        if as_json:
            _print_json({**result, "refused": True}, out)
        raise CallbackRefused(f"not written: it would replace {current.described}; nothing was changed. "
                              "Add --replace to replace it, or point the function at that destination")
    if dry_run or not the_plan.needed:
        if as_json:
            _print_json(result, out)
        else:
            out.write("Dry run: nothing was written.\n" if dry_run else "ICE holds this setting already: "
                      "nothing was written.\n")
        return 0
    request_id = api.set(the_plan.wanted)
    after = api.get()
    if not after.same_as(the_plan.wanted):
        if as_json:
            _print_json({**result, "written": True, "read_back": after.to_dict()}, out)
        raise UpstreamError(f"SetEventCallback was accepted (request {request_id}), but ICE reads back "
                            f"{after.described} with events {', '.join(after.event_types) or 'none'}, "
                            f"AuthSwitch {after.auth_switch}, AuthKey {masked_key(after.auth_key)}: "
                            "not what was written")
    result.update(written=True, verified=True, request_id=request_id)
    if as_json:
        if the_plan.new_key:
            result["new_auth_key"] = the_plan.wanted.auth_key
        _print_json(result, out)
        return 0
    out.write(f"Written and read back (request {request_id}):\n")
    _write_setting(after, out)
    if the_plan.new_key:
        out.write("The new AuthKey, shown this once (ICE's console shows it too; keep it like a password):\n"
                  f"  {the_plan.wanted.auth_key}\n"
                  "Give it to the function, then redeploy (s deploy), or its callbacks are refused as unsigned:\n"
                  f"  export CALLBACK_AUTH_KEY={the_plan.wanted.auth_key}\n")
    return 0


def _write_setting(setting: CallbackSetting, out: TextIO) -> None:
    if not setting.configured:
        out.write("  nothing is set" + (f" (event types: {', '.join(setting.event_types)})"
                                        if setting.event_types else "") + "\n")
        return
    rows = [("type", setting.callback_type or "-"),
            ("queue" if setting.callback_type == MNS else "URL", setting.destination or "-"),
            ("event types", ", ".join(setting.event_types) or "none")]
    if setting.callback_type != MNS:
        rows += [("AuthSwitch", setting.auth_switch or "-"), ("AuthKey", masked_key(setting.auth_key))]
    out.write("".join(_wrapped(f"{name:12} {value}", "  ", 15) for name, value in rows))


def _wrapped(text: str, indent: str = "", hang: int = 4) -> str:
    """``text`` as lines of at most ``WIDTH`` columns; a word (a URL) is never cut."""
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=" " * hang,
                         break_long_words=False, break_on_hyphens=False) + "\n"


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
