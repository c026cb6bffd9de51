"""RECORD_STORE=oss://..., the OSS endpoint choice, and that only the chosen store's SDK is imported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import ConfigError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores import open_store
from ice_upload_sync.stores.oss import OssStore, endpoint_region, parse_location, resolve_endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("location,expected", [
    ("my-bucket/records", ("my-bucket", "records")),
    ("my-bucket", ("my-bucket", "")),
    ("my-bucket/", ("my-bucket", "")),
    ("my-bucket//a/b/c/", ("my-bucket", "a/b/c")),
    ("abc/x", ("abc", "x")),
    ("a" * 63 + "/x", ("a" * 63, "x")),
])
def test_bucket_and_prefix(location, expected):
    assert parse_location(location) == expected


@pytest.mark.parametrize("location", [
    "ab/x", "a" * 64 + "/x", "My-Bucket/x", "my_bucket/x", "-bucket/x", "bucket-/x", "/x", "", "bu.cket/x",
    "bucket/a/../b",
])
def test_bad_bucket_names_and_prefixes_are_config_errors(location):
    with pytest.raises(ConfigError, match="RECORD_STORE"):
        parse_location(location)


@pytest.mark.parametrize("env,expected", [
    ({}, "https://oss-cn-hangzhou.aliyuncs.com"),
    ({"FC_FUNCTION_NAME": "ice-upload-sync"}, "https://oss-cn-hangzhou-internal.aliyuncs.com"),
    ({"FC_REGION": "cn-hangzhou"}, "https://oss-cn-hangzhou-internal.aliyuncs.com"),
    # the internal endpoint answers only within its region
    ({"FC_FUNCTION_NAME": "f", "FC_REGION": "cn-beijing"}, "https://oss-cn-hangzhou.aliyuncs.com"),
])
def test_endpoint_is_internal_inside_fc_in_the_same_region(env, expected):
    assert resolve_endpoint(Settings(ice_region="cn-hangzhou"), env) == expected


@pytest.mark.parametrize("value,expected", [
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("oss-cn-shanghai.aliyuncs.com", "https://oss-cn-shanghai.aliyuncs.com"),
    ("https://oss-cn-shanghai-internal.aliyuncs.com/", "https://oss-cn-shanghai-internal.aliyuncs.com"),
])
def test_oss_endpoint_overrides(value, expected):
    assert resolve_endpoint(Settings(oss_endpoint=value), {"FC_REGION": "cn-shanghai"}) == expected


@pytest.mark.parametrize("value", ["ftp://host", "https://user:pw@host", "https://host/path", "http://"])
def test_bad_oss_endpoints_are_config_errors(value):
    with pytest.raises(ConfigError, match="OSS_ENDPOINT"):
        resolve_endpoint(Settings(oss_endpoint=value), {})


@pytest.mark.parametrize("endpoint,region", [
    ("https://oss-cn-beijing.aliyuncs.com", "cn-beijing"),
    ("https://oss-ap-southeast-1-internal.aliyuncs.com", "ap-southeast-1"),
    ("http://127.0.0.1:9000", "cn-shanghai"),
    ("https://records.example.com", "cn-shanghai"),
])
def test_the_signing_region_follows_the_endpoint(endpoint, region):
    assert endpoint_region(endpoint, "cn-shanghai") == region


def test_open_store_builds_the_oss_store_without_a_request():
    settings = Settings.from_env({"RECORD_STORE": "oss://ice-records/prod/uploads/", "ICE_REGION": "cn-beijing",
                                  "OSS_ENDPOINT": "http://127.0.0.1:9"})
    store = open_store(settings, Credentials("ak", "sk"))
    assert isinstance(store, OssStore)
    assert (store.describe(), store.endpoint, store.region) == ("oss://ice-records/prod/uploads",
                                                                "http://127.0.0.1:9", "cn-beijing")


def test_malformed_store_locations_are_refused_clearly():
    with pytest.raises(ConfigError, match="instance name"):
        open_store(Settings(record_store="tablestore://x/table"))
    with pytest.raises(ConfigError, match="table name"):
        open_store(Settings(record_store="tablestore://my-inst/9table"))
    with pytest.raises(ConfigError, match="unknown"):
        open_store(Settings(record_store="s3://bucket/x"))
    with pytest.raises(ConfigError, match="RECORD_STORE"):
        open_store(Settings(record_store="oss://Bad_Bucket/x"))


def test_importing_index_imports_no_store_sdk():
    probe = "import sys, index; print(sorted(m for m in ('oss2', 'tablestore', 'moto') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={"PYTHONPATH": str(ROOT / "function")},
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
