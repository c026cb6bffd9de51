"""Shared fixtures: the ICE emulator on loopback, a file store on a temp dir, and an FC driver."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Optional

import pytest

from tests.emulators.ice import IceEmulator
from tests.scenario import seed_jobs

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


@pytest.fixture
def seeded(ice):
    for job in seed_jobs():
        fields = dict(job)
        ice.put_job(fields.pop("JobId"), **fields)
    return ice


class Fc:
    """Invokes the deployed handler the way FC does (bytes in, a fresh instance per test)."""

    def __init__(self, root: Path, monkeypatch) -> None:
        import index

        self.index = index
        self.root = root
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(index, "_app", None)

    def context(self, credentials: Optional[Any] = None, timeout: float = 60) -> SimpleNamespace:
        return SimpleNamespace(
            request_id=f"fc-{uuid.uuid4()}", region="cn-shanghai", credentials=credentials,
            function=SimpleNamespace(name="ice-upload-sync", handler="index.handler", timeout=timeout),
        )

    def invoke(self, event: Any, context: Optional[SimpleNamespace] = None) -> Any:
        raw = event if isinstance(event, (bytes, str)) else json.dumps(event).encode()
        return self.index.handler(raw, context or self.context())

    def restart(self) -> None:
        """A new FC instance: settings are read again and clients rebuilt."""
        self.monkeypatch.setattr(self.index, "_app", None)

    def records(self) -> Dict[str, dict]:
        jobs = self.root / "jobs"
        if not jobs.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in jobs.glob("*.json")}

    def record(self, job_id: str) -> Optional[dict]:
        return self.records().get(job_id)

    def pending(self) -> set:
        folder = self.root / "pending"
        return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.exists() else set()


@pytest.fixture
def fc(ice, tmp_path, monkeypatch):
    root = tmp_path / "records"
    for name in ("ALIBABA_CLOUD_SECURITY_TOKEN", "CALLBACK_AUTH_KEY", "CALLBACK_URL", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ICE_ENDPOINT", ice.endpoint)
    monkeypatch.setenv("ICE_REGION", "cn-shanghai")
    monkeypatch.setenv("RECORD_STORE", f"file://{root}")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    return Fc(root, monkeypatch)
