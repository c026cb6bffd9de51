"""Settings from the environment and the pure parts of the ICE gateway."""
import socket
import time
from types import SimpleNamespace

import pytest
from ice_upload_sync.config import IceEndpoint, Settings
from ice_upload_sync.errors import ConfigError, UpstreamError
from ice_upload_sync.ice import (
    MAX_ATTEMPTS,
    IceGateway,
    RateLimiter,
    _translate,
    batches,
    parse_non_exists,
    permanent_fix,
    resolve_credentials,
)


def test_defaults():
    settings = Settings.from_env({})
    assert settings.ice_endpoint == IceEndpoint("https", "ice.cn-shanghai.aliyuncs.com")
    assert settings.record_store == "file://./.records"
    assert (settings.ice_max_qps, settings.ice_concurrency, settings.max_track_age_hours) == (50, 8, 72)


@pytest.mark.parametrize("env, endpoint", [
    ({"ICE_REGION": "cn-beijing"}, IceEndpoint("https", "ice.cn-beijing.aliyuncs.com")),
    ({"ICE_ENDPOINT": "ice-vpc.cn-hangzhou.aliyuncs.com"}, IceEndpoint("https", "ice-vpc.cn-hangzhou.aliyuncs.com")),
    ({"ICE_ENDPOINT": "http://127.0.0.1:8080"}, IceEndpoint("http", "127.0.0.1:8080")),
    ({"ICE_ENDPOINT": "https://ice.example:8443/"}, IceEndpoint("https", "ice.example:8443")),
])
def test_endpoint_is_explicit_for_every_region(env, endpoint):
    assert Settings.from_env(env).ice_endpoint == endpoint


@pytest.mark.parametrize("env, name", [
    ({"ICE_REGION": "Shanghai!"}, "ICE_REGION"),
    ({"ICE_ENDPOINT": "ftp://x"}, "ICE_ENDPOINT"),
    ({"ICE_ENDPOINT": "http://x/path"}, "ICE_ENDPOINT"),
    ({"ICE_MAX_QPS": "fast"}, "ICE_MAX_QPS"),
    ({"ICE_CONCURRENCY": "0"}, "ICE_CONCURRENCY"),
    ({"MAX_TRACK_AGE_HOURS": "-1"}, "MAX_TRACK_AGE_HOURS"),
])
def test_bad_settings_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_callback_keys_are_comma_separated_for_rotation():
    assert Settings.from_env({"CALLBACK_AUTH_KEY": "old, new,"}).callback_auth_keys == ("old", "new")
    assert Settings.from_env({}).callback_auth_keys == ()  # unset: callbacks are not checked (initialize warns)


@pytest.mark.parametrize("value, message", [
    ("", "holds no key"), (" ", "holds no key"), (",", "holds no key"), (" , ,", "holds no key"),
    ("Key 2026", "key #1 contains whitespace"), ("old,new\tkey", "key #2 contains whitespace"),
    ("key\x00", "control character"), ("cl\u00e9", "non-ASCII"), ("old,\u200bnew", "key #2"),
])
def test_a_callback_key_that_is_set_but_unusable_stops_the_function(value, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({"CALLBACK_AUTH_KEY": value})
    for key in value.split(","):
        if key.strip():
            assert key.strip() not in str(raised.value)  # a secret never appears in an error


def test_context_credentials_win_over_the_environment():
    context = SimpleNamespace(credentials=SimpleNamespace(
        access_key_id="STS.ctx", access_key_secret="ctx-secret", security_token="ctx-token"))
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}
    creds = resolve_credentials(context, env)
    assert (creds.access_key_id, creds.security_token) == ("STS.ctx", "ctx-token")
    assert "ctx-secret" not in repr(creds) and "ctx-token" not in repr(creds)


def test_python312_context_without_credentials_uses_the_environment():
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "ak", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "sk",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "tok"}
    for context in (SimpleNamespace(credentials=None), SimpleNamespace(), None):
        assert resolve_credentials(context, env).security_token == "tok"
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        resolve_credentials(None, {})


def test_batches_of_ten():
    keys = [f"j{i}" for i in range(25)]
    assert [len(b) for b in batches(keys)] == [10, 10, 5]
    assert batches([]) == []


@pytest.mark.parametrize("value, expected", [
    (["a", "b"], ("a", "b")),
    (["['e3e71ae8e4a46e4893d8cadce50c3bd0']"], ("e3e71ae8e4a46e4893d8cadce50c3bd0",)),
    ("['a', 'b']", ("a", "b")),
    (["['a', 'b']", "c"], ("a", "b", "c")),
    (["[a, b]"], ("a", "b")),
    ([], ()), (None, ()), ("", ()),
])
def test_non_exists_in_every_shape(value, expected):
    assert parse_non_exists(value) == expected


def test_rate_limiter_spaces_calls_and_gives_up_at_the_deadline():
    """More in test_rate_limiter.py: the limit is a ceiling per one-second window."""
    clock = [0.0]
    limiter = RateLimiter(1, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with limiter.slot(deadline=10) as granted:
        assert granted
    with limiter.slot(deadline=10) as granted:
        assert granted
    assert clock[0] == pytest.approx(1.0)
    assert not limiter.acquire(deadline=clock[0] + 0.5)


# ---------------------------------------------------------------- retries: bounded in count, fast where futile


class ScriptedGateway(IceGateway):
    """The production retry loop over a scripted ``_call``; sleeps are recorded, never slept."""

    def __init__(self, failure: UpstreamError) -> None:
        self.sleeps: list = []
        super().__init__(Settings(), sleep=self.sleeps.append)
        self.failure = failure
        self.calls = 0

    def client(self):
        return object()

    def _call(self, client, kind, keys, remaining_s):
        self.calls += 1
        raise self.failure


def test_retries_stop_after_max_attempts_however_much_time_is_left():
    scripted = ScriptedGateway(UpstreamError("ICE answered HTTP 500 InternalError", code="InternalError",
                                             retryable=True))
    outcome = scripted.query("JobIds", ("job0001",), deadline=time.monotonic() + 3600)
    assert MAX_ATTEMPTS == 4  # the first call and at most 3 retries
    assert scripted.calls == outcome.api_calls == MAX_ATTEMPTS and len(scripted.sleeps) == MAX_ATTEMPTS - 1
    assert outcome.error is scripted.failure


def test_an_error_that_retrying_cannot_fix_is_tried_once():
    scripted = ScriptedGateway(UpstreamError("ICE endpoint x does not resolve", code="NameNotResolved"))
    outcome = scripted.query("JobIds", ("job0001",), deadline=time.monotonic() + 3600)
    assert scripted.calls == outcome.api_calls == 1 and scripted.sleeps == []


def _chained(*links: BaseException) -> BaseException:
    """``links[0]`` raised while handling ``links[1]``, raised while handling ``links[2]``..., as the SDK does."""
    for outer, inner in zip(links, links[1:]):
        outer.__context__ = inner
    return links[0]


SDK_TEXT = ("HTTPSConnectionPool(host='ice.cn-shanghia.aliyuncs.com', port=443): Max retries exceeded with url: "
            "/?UploadURLs=https%253A%252F%252Fb%252Fa.mp4%253FSignature%253Dsecret-sig (Caused by {cause})")


@pytest.mark.parametrize("error, code, retryable", [
    # the exception chain decides (the text names no cause)...
    (_chained(RuntimeError(SDK_TEXT.format(cause="...")), socket.gaierror(-2, "Name or service not known")),
     "NameNotResolved", False),
    (_chained(RuntimeError(SDK_TEXT.format(cause="...")), ConnectionRefusedError(111, "Connection refused")),
     "ConnectionRefused", False),
    (_chained(RuntimeError(SDK_TEXT.format(cause="...")), ConnectionResetError(104, "Connection reset by peer")),
     "NetworkError", True),
    (_chained(RuntimeError(SDK_TEXT.format(cause="...")), TimeoutError("timed out")), "NetworkError", True),
    # ...or, when the SDK kept only the text, the text does
    (RuntimeError(SDK_TEXT.format(cause="NameResolutionError(\"Failed to resolve 'ice.cn-shanghia.aliyuncs.com'\")")),
     "NameNotResolved", False),
    (RuntimeError(SDK_TEXT.format(cause="NewConnectionError('[Errno 111] Connection refused')")),
     "ConnectionRefused", False),
])
def test_network_failures_are_told_apart_and_never_quote_the_query(error, code, retryable):
    translated = _translate(error, SimpleNamespace(AlibabaCloudException=LookupError), "ice.cn-shanghia.aliyuncs.com")
    assert (translated.code, translated.retryable) == (code, retryable)
    assert "secret-sig" not in str(translated) and "Signature" not in str(translated)
    # what no retry fixes is permanent (the invocation fails loudly); the rest is worth another try
    assert translated.permanent == (not retryable)


@pytest.mark.parametrize("code, status, names", [
    ("SignatureDoesNotMatch", 400, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("IncompleteSignature", 400, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("InvalidAccessKeyId.NotFound", 404, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("InvalidAccessKeyId.Inactive", 400, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("InvalidSecurityToken.Expired", 400, "ALIBABA_CLOUD_SECURITY_TOKEN"),
    ("MissingSecurityToken", 400, "ALIBABA_CLOUD_SECURITY_TOKEN"),
    ("InvalidTimeStamp.Expired", 400, "clock"),
    ("Forbidden.RAM", 403, "ice:GetUrlUploadInfos"),
    ("NoPermission", 403, "ice:GetUrlUploadInfos"),
    ("SomethingNew", 403, "ice:GetUrlUploadInfos"),  # any 401/403: a permission
    ("InvalidApi.NotPurchase", 400, "activate"),
])
def test_refusals_that_will_not_pass_by_themselves_name_what_to_fix(code, status, names):
    assert names in (permanent_fix(code, status) or "")


@pytest.mark.parametrize("code, status", [
    ("InvalidParameter", 400), ("Throttling.User", 400), ("MissingJobIds", 400), ("", 404), ("", 500),
])
def test_other_refusals_are_not_permanent(code, status):
    assert permanent_fix(code, status) is None
