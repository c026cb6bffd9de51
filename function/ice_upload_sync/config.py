"""Environment -> one immutable Settings object, read once per instance."""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .records import STATES

_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


@dataclass(frozen=True)
class ServiceEndpoint:
    """An Alibaba Cloud OpenAPI endpoint as the SDKs take it (ICE, EventBridge)."""

    protocol: str  # "https" or "http"
    host: str  # host[:port], what the SDK calls endpoint

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"


IceEndpoint = ServiceEndpoint  # the name it had before EventBridge needed one too


@dataclass(frozen=True)
class NotifyEndpoint:
    """One ``NOTIFY_URL`` endpoint. Its query may carry a token, so only ``shown`` (query
    redacted) and ``host`` go into logs and errors, and only ``key`` into the store."""

    url: str = field(repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def shown(self) -> str:
        return _shown_url(urlsplit(self.url))

    @property
    def key(self) -> str:
        """What the outbox records for an endpoint that needs nothing more: a digest, not the URL."""
        return hashlib.sha256(self.url.encode("ascii")).hexdigest()[:16]

    @property
    def loopback(self) -> bool:
        return is_loopback(urlsplit(self.url).hostname or "")

    def __repr__(self) -> str:
        return f"NotifyEndpoint({self.shown!r})"


@dataclass(frozen=True)
class WebhookSecret:
    """One ``NOTIFY_SECRET`` key, decoded. Its repr never shows it; ``number`` is its position."""

    key: bytes = field(repr=False)
    number: int = 1


DEFAULT_NOTIFY_STATES = ("succeeded", "failed", "expired")


@dataclass(frozen=True)
class Settings:
    ice_region: str = "cn-shanghai"
    ice_endpoint: IceEndpoint = IceEndpoint("https", "ice.cn-shanghai.aliyuncs.com")
    record_store: str = "file://./.records"
    oss_endpoint: Optional[str] = None
    tablestore_endpoint: Optional[str] = None
    callback_auth_keys: Tuple[str, ...] = ()  # empty: CALLBACK_AUTH_KEY unset, callbacks are not checked
    callback_url: Optional[str] = None
    callback_max_skew_s: int = 300
    # How long the HTTP callback path may spend on its lookup; ICE waits 3 s in all.
    callback_deadline_s: float = 1.5
    # A cold instance hands a signed callback back to its own HTTP trigger as an asynchronous
    # invocation (handback.py); False (CALLBACK_HANDBACK=off): the lookup waits for the sweep.
    callback_handback: bool = True
    max_track_age_hours: float = 72.0
    # A tracked job that ICE has never known stops being swept this long after tracking began
    # (recorded as expired): ICE signs a callback's URL and time, not its body, so one captured
    # signature could otherwise fill the sweep with made-up job IDs for MAX_TRACK_AGE_HOURS.
    unknown_job_grace_minutes: float = 30.0
    ice_max_qps: float = 50.0
    ice_concurrency: int = 8
    # A sweep stops taking new jobs after this many seconds (None: the invocation's own
    # time); the rest wait for the next run, which resumes where this one stopped.
    sweep_budget_s: Optional[float] = None
    # Completion events (contract section 9): where to POST them, the Standard Webhooks keys
    # to sign them with (several while rotating), which states are announced, and an
    # EventBridge bus.
    notify_endpoints: Tuple[NotifyEndpoint, ...] = ()
    notify_secrets: Tuple[WebhookSecret, ...] = ()
    notify_states: Tuple[str, ...] = DEFAULT_NOTIFY_STATES
    notify_eventbridge_bus: Optional[str] = None
    eventbridge_endpoint: ServiceEndpoint = ServiceEndpoint("https", "eventbridge-console.cn-shanghai.aliyuncs.com")

    @property
    def notifies(self) -> bool:
        """True when completion events go anywhere."""
        return bool(self.notify_endpoints or self.notify_eventbridge_bus)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str) -> Optional[str]:
            value = env.get(name, "").strip()
            return value or None

        region = text("ICE_REGION") or cls.ice_region
        if not _REGION.match(region):
            raise ConfigError(f"ICE_REGION {region!r} is not a region ID such as 'cn-shanghai'")
        return cls(
            ice_region=region,
            ice_endpoint=parse_ice_endpoint(text("ICE_ENDPOINT"), region),
            eventbridge_endpoint=parse_service_endpoint(
                "EVENTBRIDGE_ENDPOINT", text("EVENTBRIDGE_ENDPOINT"), f"eventbridge-console.{region}.aliyuncs.com"),
            record_store=text("RECORD_STORE") or cls.record_store,
            oss_endpoint=text("OSS_ENDPOINT"),
            tablestore_endpoint=text("TABLESTORE_ENDPOINT"),
            callback_auth_keys=parse_callback_keys(env.get("CALLBACK_AUTH_KEY")),
            callback_url=text("CALLBACK_URL"),
            callback_max_skew_s=_number(env, "CALLBACK_MAX_SKEW_S", cls.callback_max_skew_s, int, 1),
            callback_deadline_s=_number(env, "CALLBACK_DEADLINE_S", cls.callback_deadline_s, float, 0.1),
            callback_handback=_switch(env, "CALLBACK_HANDBACK", cls.callback_handback),
            max_track_age_hours=_number(env, "MAX_TRACK_AGE_HOURS", cls.max_track_age_hours, float, 0.0001),
            unknown_job_grace_minutes=_number(env, "UNKNOWN_JOB_GRACE_MINUTES", cls.unknown_job_grace_minutes,
                                              float, 0.001),
            ice_max_qps=_number(env, "ICE_MAX_QPS", cls.ice_max_qps, float, 0.1),
            ice_concurrency=_number(env, "ICE_CONCURRENCY", cls.ice_concurrency, int, 1),
            sweep_budget_s=_number(env, "SWEEP_BUDGET_S", cls.sweep_budget_s, float, 0.1),
            **parse_notify_settings(env),
        )


def parse_callback_keys(value: Optional[str]) -> Tuple[str, ...]:
    """``CALLBACK_AUTH_KEY``: unset means callbacks are not checked (``initialize`` warns); set
    means at least one usable key, comma-separated while rotating (``old,new``).

    A variable that is set but holds no key ("", " ", ",") or a key with whitespace, a control
    or a non-ASCII character inside (ICE's AuthKey is letters and digits) is a ConfigError:
    silently accepting unsigned callbacks because of a typo is the failure this prevents.
    The message names the key by position, never by value.
    """
    if value is None:
        return ()
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    if not keys:
        raise ConfigError("CALLBACK_AUTH_KEY is set but holds no key: set it to ICE's callback AuthKey "
                          "(comma-separated while rotating), or unset it to accept unsigned callbacks")
    for number, key in enumerate(keys, 1):
        if not all("!" <= char <= "~" for char in key):
            raise ConfigError(f"CALLBACK_AUTH_KEY key #{number} contains whitespace, a control character or a "
                              "non-ASCII character; ICE's AuthKey is letters and digits")
    return keys


def parse_notify_settings(env: Mapping[str, str]) -> dict:
    """``NOTIFY_URL``, ``NOTIFY_SECRET``, ``NOTIFY_STATES``, ``NOTIFY_EVENTBRIDGE`` -> Settings fields.

    Checked together: an endpoint other than loopback needs a secret, because an unsigned
    event reaching the user's systems over the internet is what this refuses to send.
    """
    endpoints = parse_notify_urls(env.get("NOTIFY_URL"))
    secrets = parse_notify_secrets(env.get("NOTIFY_SECRET"))
    remote = [endpoint for endpoint in endpoints if not endpoint.loopback]
    if remote and not secrets:
        raise ConfigError(f"NOTIFY_URL {remote[0].shown!r} needs NOTIFY_SECRET (whsec_ + a base64 key of "
                          "at least 24 bytes): events to any address other than loopback are signed")
    return {
        "notify_endpoints": endpoints,
        "notify_secrets": secrets,
        "notify_states": parse_notify_states(env.get("NOTIFY_STATES")),
        "notify_eventbridge_bus": parse_eventbridge_bus(env.get("NOTIFY_EVENTBRIDGE")),
    }


def parse_notify_urls(value: Optional[str]) -> Tuple[NotifyEndpoint, ...]:
    """``NOTIFY_URL``: comma-separated ``https://`` URLs; ``http://`` only for loopback hosts
    (127.0.0.0/8, ::1, ``localhost``), where tests and local receivers listen.

    Refused, with the URL shown without its query (it may hold a token) and without user
    info: another scheme, no host, a bad port, user info (credentials in a URL end up in
    logs: sign with ``NOTIFY_SECRET`` instead), whitespace, control or non-ASCII characters
    (percent-encode them; use the punycode form of a host). Repeats are sent once.
    """
    if value is None or not value.strip():
        return ()
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if not urls:
        raise ConfigError("NOTIFY_URL is set but holds no URL: set it to https:// endpoints "
                          "(comma-separated), or unset it")
    endpoints = []
    for url in dict.fromkeys(urls):
        parts = urlsplit(url) if url.isascii() else None
        shown = _shown_url(parts) if parts is not None else "the URL with non-ASCII characters"
        if parts is None or not all("!" <= char <= "~" for char in url):
            raise ConfigError(f"NOTIFY_URL {shown!r} contains whitespace, a control or a non-ASCII character: "
                              "percent-encode the path, use the punycode form of the host")
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"NOTIFY_URL {shown!r} must be https://host[:port]/path")
        if "@" in parts.netloc:
            raise ConfigError(f"NOTIFY_URL {shown!r} carries user info: remove it; events are signed "
                              "with NOTIFY_SECRET instead")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
        except ValueError:
            raise ConfigError(f"NOTIFY_URL {shown!r} has a port that is not a number from 0 to 65535") from None
        _https_unless_loopback("NOTIFY_URL", shown, parts)
        endpoints.append(NotifyEndpoint(url))
    return tuple(endpoints)


def parse_notify_secrets(value: Optional[str]) -> Tuple[WebhookSecret, ...]:
    """``NOTIFY_SECRET``: Standard Webhooks keys, ``whsec_`` + base64 (padding optional) of at
    least 24 bytes (the scheme's minimum), comma-separated while rotating: every event is
    signed with each, so receivers holding either verify (``webhook-signature`` lists one
    signature per key). Messages name a key by position, never by value. Empty is unset (the
    template passes "" when it is not configured); a remote endpoint then still needs one.
    """
    if value is None or value == "":
        return ()
    texts = [text.strip() for text in value.split(",") if text.strip()]
    if not texts:
        raise ConfigError("NOTIFY_SECRET is set but holds no secret: set it to whsec_ + a base64 key "
                          "(comma-separated while rotating), or unset it")
    secrets = []
    for number, text in enumerate(texts, 1):
        if not text.startswith("whsec_"):
            raise ConfigError(f"NOTIFY_SECRET secret #{number} does not start with 'whsec_' (a Standard "
                              "Webhooks secret is whsec_ + a base64 key)")
        encoded = text[len("whsec_"):]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True) if encoded.isascii() else b""
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise ConfigError(f"NOTIFY_SECRET secret #{number} is not valid base64 after 'whsec_'")
        if len(key) < 24:
            raise ConfigError(f"NOTIFY_SECRET secret #{number} holds {len(key)} bytes; Standard Webhooks "
                              "keys are at least 24 random bytes (e.g. whsec_ + base64 of 32 bytes)")
        secrets.append(WebhookSecret(key, number))
    return tuple(secrets)


def parse_notify_states(value: Optional[str]) -> Tuple[str, ...]:
    """``NOTIFY_STATES``: comma-separated states of the record (section 4), exactly as spelled
    there; unset or blank means ``succeeded,failed,expired``."""
    if value is None or not value.strip():
        return DEFAULT_NOTIFY_STATES
    states = tuple(dict.fromkeys(state.strip() for state in value.split(",") if state.strip()))
    if not states:
        raise ConfigError(f"NOTIFY_STATES holds no state; use some of {', '.join(STATES)}")
    for state in states:
        if state not in STATES:
            raise ConfigError(f"NOTIFY_STATES {state[:40]!r} is not a state of the record; use some of "
                              f"{', '.join(STATES)}")
    return states


_EVENT_BUS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,126}")


def parse_eventbridge_bus(value: Optional[str]) -> Optional[str]:
    """``NOTIFY_EVENTBRIDGE``: an EventBridge bus name as EventBridge allows it (2-127 letters,
    digits and hyphens, starting with a letter or digit, not ``eventbridge-reserved-...``)."""
    if value is None or not value.strip():
        return None
    name = value.strip()
    if not _EVENT_BUS_NAME.fullmatch(name) or name.startswith("eventbridge-reserved-"):
        raise ConfigError(f"NOTIFY_EVENTBRIDGE {name[:140]!r} is not an event bus name (2-127 letters, digits "
                          "and hyphens, starting with a letter or digit)")
    return name


_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``on`` / ``off`` (also true/false, 1/0, yes/no, any case); unset or blank: ``default``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return _SWITCH[raw.lower()]
    except KeyError:
        raise ConfigError(f"{name} {raw[:40]!r} must be on or off") from None


def _https_unless_loopback(name: str, shown: str, parts: SplitResult) -> None:
    """Plain http:// only to this machine (tests, emulators, local receivers): anywhere else what
    travels with the request (an STS token, a signed record) is readable on the way."""
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname or ""):
        raise ConfigError(f"{name} {shown!r} must use https:// (http:// is only for loopback addresses: "
                          "127.0.0.1, ::1, localhost)")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown_url(parts: SplitResult) -> str:
    """A URL as logs and errors may show it: no user info, the query redacted."""
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?<redacted>" if parts.query else "")


def parse_ice_endpoint(value: Optional[str], region: str) -> ServiceEndpoint:
    # The SDK's own region table sends most regions to ice.aliyuncs.com: never rely on it.
    return parse_service_endpoint("ICE_ENDPOINT", value, f"ice.{region}.aliyuncs.com")


def parse_service_endpoint(name: str, value: Optional[str], default_host: str) -> ServiceEndpoint:
    """``host[:port]`` means HTTPS; a full URL keeps its scheme (the emulators are http).

    EventBridge's default is its OpenAPI endpoint, ``eventbridge-console.<region>.aliyuncs.com``
    (``PutEvents`` 2020-04-01 is served there; the VPC one is ``eventbridge-console-vpc...``),
    not the ``<account>.eventbridge.<region>`` endpoint of the older data-plane SDK.
    """
    if not value:
        return ServiceEndpoint("https", default_host)
    if "://" not in value:
        value = "https://" + value
    shape = f"{name} {value!r} must be host[:port] or http(s)://host[:port]"
    try:
        parts = urlsplit(value)
        port = parts.port  # checked only when asked for: "host:abc", "host:99999"
    except ValueError:
        raise ConfigError(shape) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc or port == 0:
        raise ConfigError(shape)
    _https_unless_loopback(name, value, parts)  # the SDKs send the STS token in a header
    return ServiceEndpoint(parts.scheme, parts.netloc)


def _number(env: Mapping[str, str], name: str, default, kind, minimum):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value
