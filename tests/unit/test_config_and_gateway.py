"""Settings from the environment and the pure parts of the ICE gateway."""
from types import SimpleNamespace

import pytest
from ice_upload_sync.config import IceEndpoint, Settings
from ice_upload_sync.errors import ConfigError
from ice_upload_sync.ice import RateLimiter, batches, parse_non_exists, resolve_credentials


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
    clock = [0.0]
    limiter = RateLimiter(10, burst=1, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    assert limiter.acquire(deadline=10)
    assert limiter.acquire(deadline=10)
    assert clock[0] == pytest.approx(0.1)
    assert not limiter.acquire(deadline=clock[0] + 0.05)
