"""Shared fixtures: the ICE emulator on loopback, the record store (a temp dir or OSS on moto), an FC driver.

``fc`` runs every test that uses it three times: against the file store, the OSS store
(the official oss2 SDK to moto's S3 server speaking OSS's dialect) and the Tablestore
store (the official tablestore SDK to the local Tablestore server).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Union

import pytest
from hypothesis import settings as hypothesis_settings
from ice_upload_sync.config import Settings
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores import RecordStore, open_store

from tests.scenario import seed_jobs
from tests.support.eventbridge import EventBridgeEmulator
from tests.support.ice import IceEmulator
from tests.support.oss_moto import OssMotoServer
from tests.support.tablestore import TablestoreServer

# No per-example deadline (hypothesis's default is 200 ms): on a busy CI machine one example of
# a property test can take longer without anything being wrong, and fail the run as flaky.
# Tests that bound time do it with their own clocks.
hypothesis_settings.register_profile("busy-machine", deadline=None)
hypothesis_settings.load_profile("busy-machine")



@pytest.fixture(autouse=True)
def no_handback_to_the_samples_trigger(monkeypatch):
    """CALLBACK_HANDBACK off unless a test turns it on: the sample callbacks name a public trigger
    (fcapp.run), and no test may hand a request back there. Hand-back tests set it on with a
    loopback CALLBACK_URL (tests/fc_runtime.py's instances get the same default)."""
    monkeypatch.setenv("CALLBACK_HANDBACK", "off")


ACCESS_KEY_ID = "LTAI-test-key-id"
ACCESS_KEY_SECRET = "test-secret-must-never-be-logged"
STS_KEY_ID = "STS.test-sts-key-id"
STS_SECRET = "sts-secret-must-never-be-logged"
STS_TOKEN = "sts-token-must-never-be-logged"


@pytest.fixture
def ice(request):
    """The emulator; parametrize indirectly with "stringified" for NonExists as ICE's example shows it."""
    emulator = IceEmulator(nonexists_style=getattr(request, "param", "list"))
    emulator.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    emulator.add_access_key(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN)
    with emulator:
        yield emulator


EVENTBRIDGE_BUS = "media-events"


@pytest.fixture
def eventbridge():
    """The EventBridge emulator with the test keys and one bus, ``EVENTBRIDGE_BUS``."""
    with EventBridgeEmulator() as emulator:
        emulator.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        emulator.add_access_key(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN)
        emulator.create_bus(EVENTBRIDGE_BUS)
        yield emulator


@pytest.fixture
def seeded(ice):
    for job in seed_jobs():
        fields = dict(job)
        ice.put_job(fields.pop("JobId"), **fields)
    return ice


class FileView:
    """What the file store holds, read from its folder."""

    kind = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def job_ids(self) -> List[str]:
        folder = self.root / "jobs"
        return [p.stem for p in folder.glob("*.json") if p.is_file()] if folder.exists() else []

    def record(self, job_id: str) -> Optional[dict]:
        path = self.root / "jobs" / f"{job_id}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def marker(self, job_id: str) -> Optional[dict]:
        path = self.root / "pending" / job_id
        return json.loads(path.read_text()) if path.is_file() else None

    def rewrite_marker(self, job_id: str, **fields: Any) -> None:
        path = self.root / "pending" / job_id
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))

    def make_unwritable(self, job_id: str) -> None:
        (self.root / "jobs" / f"{job_id}.json").mkdir(parents=True)  # the rename onto it fails

    def temp_files(self) -> List[Path]:
        return list(self.root.rglob("*.tmp")) if self.root.exists() else []


class OssView:
    """What the OSS store holds, read with oss2 from the bucket on the moto-backed server."""

    kind = "oss"

    def __init__(self, server: OssMotoServer, bucket: str, prefix: str) -> None:
        import oss2

        self.server = server
        self.bucket_name = bucket
        self.prefix = prefix
        self.bucket = oss2.Bucket(oss2.Auth(ACCESS_KEY_ID, ACCESS_KEY_SECRET), server.endpoint, bucket)

    def _get(self, key: str) -> Optional[dict]:
        import oss2

        try:
            return json.loads(self.bucket.get_object(key).read())
        except oss2.exceptions.NoSuchKey:
            return None

    def job_ids(self) -> List[str]:
        import oss2

        folder = f"{self.prefix}/jobs/"
        return [info.key[len(folder):-len(".json")] for info in oss2.ObjectIteratorV2(self.bucket, prefix=folder)]

    def record(self, job_id: str) -> Optional[dict]:
        return self._get(f"{self.prefix}/jobs/{job_id}.json")

    def marker(self, job_id: str) -> Optional[dict]:
        """What the marker says: a bound marker's body (answer, record) with ``first_seen_at`` and
        ``source`` from its metadata; a marker of the version before, its body."""
        import oss2

        try:
            found = self.bucket.get_object(f"{self.prefix}/pending/{job_id}")
        except oss2.exceptions.NoSuchKey:
            return None
        data = json.loads(found.read())
        meta = {name.lower(): value for name, value in found.headers.items()}
        for field, header in (("first_seen_at", "x-oss-meta-first-seen-at"), ("source", "x-oss-meta-source")):
            if field not in data and header in meta:
                data[field] = meta[header]
        return data

    def rewrite_marker(self, job_id: str, **fields: Any) -> None:
        """Change what the marker says, where it says it (a bound marker keeps its body: only its metadata changes)."""
        key = f"{self.prefix}/pending/{job_id}"
        found = self.bucket.get_object(key)
        body = json.loads(found.read())
        if "first_seen_at" in body:  # a marker of the version before
            self.bucket.put_object(key, json.dumps({**body, **fields}).encode())
            return
        headers = {name: value for name, value in found.headers.items() if name.lower().startswith("x-oss-meta-")}
        headers.update({f"x-oss-meta-{name.replace('_', '-')}": str(value) for name, value in fields.items()})
        self.bucket.put_object(key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                               headers=headers)

    def make_unwritable(self, job_id: str) -> None:
        """Every write of this record is refused (as OSS does without oss:PutObject on it)."""
        self.server.inject_fault(403, "AccessDenied", "You have no right to access this object.", method="PUT",
                                 path_contains=f"/{self.bucket_name}/{self.prefix}/jobs/{job_id}.json", count=None)

    def temp_files(self) -> List[Path]:
        return []  # an OSS put is atomic: there are no temporary objects


class TablestoreView:
    """What the Tablestore store holds, read straight from the local server's tables."""

    kind = "tablestore"
    FIELDS = ("schema_version", "job_id", "upload_url", "media_id", "state", "ice_status", "final", "file_size",
              "created_at", "completed_at", "error_code", "error_message", "user_data", "source",
              "ice_request_id", "first_seen_at", "updated_at")

    def __init__(self, server: TablestoreServer, table: str) -> None:
        self.server = server
        self.table = table
        self.pending_table = f"{table}_pending"

    def job_ids(self) -> List[str]:
        return [primary_key[0][1] for primary_key in self.server.primary_keys(self.table)]

    def record(self, job_id: str) -> Optional[dict]:
        columns = self.server.row(self.table, [("job_id", job_id)])
        if columns is None:
            return None
        data = {name: columns.get(name) for name in self.FIELDS}
        data["job_id"] = job_id
        if data["user_data"] is not None:
            data["user_data"] = json.loads(data["user_data"])
        return data

    def marker(self, job_id: str) -> Optional[dict]:
        columns = self.server.row(self.pending_table, [("job_id", job_id)])
        return None if columns is None else {"job_id": job_id, **columns}

    def rewrite_marker(self, job_id: str, **fields: Any) -> None:
        self.server.set_columns(self.pending_table, [("job_id", job_id)], **fields)

    def make_unwritable(self, job_id: str) -> None:
        self.server.deny_writes(self.table, [("job_id", job_id)])

    def temp_files(self) -> List[Path]:
        return []  # a row write is atomic

    def add_access_key(self, key_id: str, secret: str, token: Optional[str]) -> None:
        self.server.add_access_key(key_id, secret, security_token=token)


class Fc:
    """Invokes the deployed handler the way FC does (bytes in, a fresh instance per test).

    ``records()``, ``record()`` and ``pending()`` read what the store under test holds,
    whichever it is; the few helpers below it stand in for poking at files directly.
    """

    def __init__(self, view: Union[FileView, OssView, TablestoreView], store: RecordStore, monkeypatch) -> None:
        import index

        self.index = index
        self.view = view
        self.store_kind = view.kind
        self.store = store  # a store object of its own, like another FC instance's
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(index, "_app", None)

    def context(self, credentials: Optional[Any] = None, timeout: float = 60) -> SimpleNamespace:
        """FC3's python3.10 context; ``function.timeout`` is text there, as FC gives it."""
        return SimpleNamespace(
            request_id=f"fc-{uuid.uuid4()}", region="cn-shanghai", credentials=credentials,
            function=SimpleNamespace(name="ice-upload-sync", handler="index.handler", memory=256,
                                     timeout=str(timeout)),
        )

    def invoke(self, event: Any, context: Optional[SimpleNamespace] = None) -> Any:
        raw = event if isinstance(event, (bytes, str)) else json.dumps(event).encode()
        return self.index.handler(raw, context or self.context())

    def restart(self) -> None:
        """A new FC instance: settings are read again and clients rebuilt."""
        self.monkeypatch.setattr(self.index, "_app", None)

    def warm(self) -> Fc:
        """An instance that has already looked jobs up (its ICE client is ready): callbacks are looked up at once."""
        self.index.initialize(self.context())
        self.index._app.gateway.prepare()
        return self

    def records(self) -> Dict[str, dict]:
        return {job_id: self.view.record(job_id) for job_id in self.view.job_ids()}

    def record(self, job_id: str) -> Optional[dict]:
        return self.view.record(job_id)

    def pending(self) -> set:
        return set(self.store.pending_job_ids())

    def owed(self) -> dict:
        """The outbox: job ID -> ``notify.Owed``, every event still owed."""
        return {entry.job_id: entry for entry in self.store.owed()}

    def make_due(self) -> None:
        """Time passes: every owed event's next attempt is now (the backoff is minutes long)."""
        for entry in self.store.owed():
            assert self.store.reschedule(replace(entry, next_attempt_at="2000-01-01T00:00:00Z"))

    # store-agnostic stand-ins for editing the store by hand

    def marker(self, job_id: str) -> Optional[dict]:
        """The pending marker's content (``{job_id, first_seen_at, source}``), None when untracked."""
        return self.view.marker(job_id)

    def rewrite_marker(self, job_id: str, **fields: Any) -> None:
        self.view.rewrite_marker(job_id, **fields)

    def make_unwritable(self, job_id: str) -> None:
        """Writing this job's record fails from now on (the file store: a folder in its place)."""
        self.view.make_unwritable(job_id)

    def temp_files(self) -> list:
        return self.view.temp_files()

    def add_access_key(self, key_id: str, secret: str, token: Optional[str] = None) -> None:
        """Make a new key valid for the store, where the store checks keys (Tablestore's server does)."""
        add = getattr(self.view, "add_access_key", None)
        if add is not None:
            add(key_id, secret, token)


@pytest.fixture(scope="session")
def oss_server():
    """One moto-backed OSS endpoint per session (moto costs about a second to start); a bucket per test."""
    with OssMotoServer() as server:
        yield server


@pytest.fixture
def bucket_name(oss_server):
    """A fresh bucket on the session's OSS server; faults injected into it are cleared afterwards."""
    name = f"st-{uuid.uuid4().hex[:24]}"
    oss_server.create_bucket(name)
    yield name
    oss_server.clear_faults()


TABLESTORE_INSTANCE = "test-instance"


@pytest.fixture(scope="session")
def tablestore_server():
    """One local Tablestore server per session; a table pair per test."""
    server = TablestoreServer(instance=TABLESTORE_INSTANCE)
    server.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    server.add_access_key(STS_KEY_ID, STS_SECRET, security_token=STS_TOKEN)
    with server:
        yield server


@pytest.fixture(params=["file", "oss", "tablestore"])
def fc(request, ice, tmp_path, monkeypatch):
    """The handler against the ICE emulator, recording in the file store, OSS (moto) or Tablestore."""
    for name in ("ALIBABA_CLOUD_SECURITY_TOKEN", "CALLBACK_AUTH_KEY", "CALLBACK_URL", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "OSS_ENDPOINT", "TABLESTORE_ENDPOINT",
                 "FC_FUNCTION_NAME", "FC_REGION", "NOTIFY_URL", "NOTIFY_SECRET", "NOTIFY_STATES",
                 "NOTIFY_EVENTBRIDGE", "EVENTBRIDGE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ICE_ENDPOINT", ice.endpoint)
    monkeypatch.setenv("ICE_REGION", "cn-shanghai")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    server = None
    if request.param == "file":
        root = tmp_path / "records"
        monkeypatch.setenv("RECORD_STORE", f"file://{root}")
        view: Union[FileView, OssView, TablestoreView] = FileView(root)
    elif request.param == "tablestore":
        server = request.getfixturevalue("tablestore_server")
        table = f"records_{uuid.uuid4().hex[:16]}"
        monkeypatch.setenv("RECORD_STORE", f"tablestore://{TABLESTORE_INSTANCE}/{table}")
        monkeypatch.setenv("TABLESTORE_ENDPOINT", server.endpoint)
        view = TablestoreView(server, table)
    else:
        server = request.getfixturevalue("oss_server")
        bucket = f"fc-{uuid.uuid4().hex[:24]}"
        server.create_bucket(bucket)
        monkeypatch.setenv("RECORD_STORE", f"oss://{bucket}/records/ice")
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        view = OssView(server, bucket, "records/ice")
    store = open_store(Settings.from_env(), Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    if request.param == "tablestore":
        store.create_tables()  # the one-off set-up a user runs before deploying
    yield Fc(view, store, monkeypatch)
    if server is not None:
        server.clear_faults()
