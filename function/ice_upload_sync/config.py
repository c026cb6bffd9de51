"""Environment -> one immutable Settings object, read once per instance."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ConfigError

_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


@dataclass(frozen=True)
class IceEndpoint:
    protocol: str  # "https" or "http"
    host: str  # host[:port], what the SDK calls endpoint

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"


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
            record_store=text("RECORD_STORE") or cls.record_store,
            oss_endpoint=text("OSS_ENDPOINT"),
            tablestore_endpoint=text("TABLESTORE_ENDPOINT"),
            callback_auth_keys=parse_callback_keys(env.get("CALLBACK_AUTH_KEY")),
            callback_url=text("CALLBACK_URL"),
            callback_max_skew_s=_number(env, "CALLBACK_MAX_SKEW_S", cls.callback_max_skew_s, int, 1),
            callback_deadline_s=_number(env, "CALLBACK_DEADLINE_S", cls.callback_deadline_s, float, 0.1),
            max_track_age_hours=_number(env, "MAX_TRACK_AGE_HOURS", cls.max_track_age_hours, float, 0.0001),
            unknown_job_grace_minutes=_number(env, "UNKNOWN_JOB_GRACE_MINUTES", cls.unknown_job_grace_minutes,
                                              float, 0.001),
            ice_max_qps=_number(env, "ICE_MAX_QPS", cls.ice_max_qps, float, 0.1),
            ice_concurrency=_number(env, "ICE_CONCURRENCY", cls.ice_concurrency, int, 1),
            sweep_budget_s=_number(env, "SWEEP_BUDGET_S", cls.sweep_budget_s, float, 0.1),
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


def parse_ice_endpoint(value: Optional[str], region: str) -> IceEndpoint:
    """``host[:port]`` means HTTPS; a full URL keeps its scheme (the emulator is http)."""
    if not value:
        # The SDK's own region table sends most regions to ice.aliyuncs.com: never rely on it.
        return IceEndpoint("https", f"ice.{region}.aliyuncs.com")
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(f"ICE_ENDPOINT {value!r} must be host[:port] or http(s)://host[:port]")
    return IceEndpoint(parts.scheme, parts.netloc)


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
