"""The jobs behind the sample events in ``events/``: one scenario for the local run and the tests.

Each sample event names jobs seeded here, in the states a real account shows: done,
failed, in flight, queued, unknown to ICE, plus the reference answer's quirks.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, Optional

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"

JOB = {
    "succeeded": "3829500c0fef429fa4ec1680b122d001",
    "failed": "5b2f0a8e6c3d4e1f9a7b8c6d5e4f3a02",
    "processing": "9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b03",
    "pending": "a1b2c3d4e5f60718293a4b5c6d7e8f04",
    "unknown": "e3e71ae8e4a46e4893d8cadce50c3bd0",  # never seeded: ICE answers NonExists
    "http": "c0ffee00c0ffee00c0ffee00c0ffee05",
    "eventbridge": "7e57ab1e7e57ab1e7e57ab1e7e57ab06",
    "mns1": "0a0b0c0d0e0f10111213141516171807",
    "mns2": "1a1b1c1d1e1f20212223242526272808",
    "vod": "4c815bd0e3f74c2ab3b1e2f3a4b5c609",
    "upload1": "b0a1c2d3e4f5a6b7c8d9e0f1a2b3c410",
    "upload2": "b0a1c2d3e4f5a6b7c8d9e0f1a2b3c411",
    "by_url": "d00dfeedd00dfeedd00dfeedd00dfe12",
}
URL_WITH_COMMA = "https://media.example.com/videos/a,b%20c%C3%A9.mp4"

# What the HTTP sample event was signed for; the local run re-signs it with a fresh timestamp.
CALLBACK_AUTH_KEY = "LocalCallbackKey1"
CALLBACK_URL = "https://1234567890123456.cn-shanghai.fcapp.run/ice-callback"

# The reference example's UserData, badly escaped nested JSON included.
QUIRKY_USER_DATA = ('{"MessageCallback":"{"CallbackURL":"http://example.aliyundoc.com"}", '
                    '"Extend":"{"localId":"***", "test":"www"}"}')


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ice_plain(moment: datetime) -> str:  # the other format ICE uses for CompleteTime
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def seed_jobs(now: Optional[datetime] = None) -> List[Dict[str, str]]:
    """ICE-shaped jobs (all strings), created within the last hour so none is expired."""
    now = now or datetime.now(timezone.utc)
    created = _iso(now - timedelta(minutes=50))
    done = _ice_plain(now - timedelta(minutes=5))

    def job(key: str, status: str, **fields: str) -> Dict[str, str]:
        base = {"JobId": JOB[key], "Status": status, "CreationTime": created,
                "UploadURL": f"https://media.example.com/videos/{key}.mp4"}
        base.update(fields)
        return base

    return [
        job("succeeded", "Normal", CompleteTime=done, ErrorCode="200", ErrorMessage="Success",
            MediaId="5014ca70f08171ecbf940764a0fd6001", FileSize="64610", UserData=QUIRKY_USER_DATA),
        job("failed", "UPLOAD_FAIL", CompleteTime=done, ErrorCode="URLInvalidError",
            ErrorMessage="download the video from url failed"),
        job("processing", "UPLOADING", UserData='{"Extend": "{\\"localId\\": \\"clip-7\\"}"}'),
        job("pending", "PENDING"),
        job("http", "SUCCESS", CompleteTime=done, MediaId="f1e2d3c4b5a6978867564534231201a5",
            FileSize="1048576", UploadURL="https://media.example.com/videos/launch.mp4"),
        job("eventbridge", "DOWNLOAD_FAIL", CompleteTime=done, ErrorCode="URLInvalidError",
            ErrorMessage="download the video from url failed",
            UploadURL="https://media.example.com/videos/missing.mp4"),
        job("mns1", "UploadSucc", CompleteTime=done, MediaId="aa11bb22cc33dd44ee55ff6677889900", FileSize="2048"),
        job("mns2", "DOWNLOADING"),
        job("vod", "Success", CompleteTime=done, MediaId="43a9fd0e3f5c4b2a8d7e6f5a4b3c2d1e", FileSize="123456"),
        job("upload1", "PENDING", MediaId="5014ca70f08171ecbf940764a0fd6010"),
        job("upload2", "TRANSCODING_QUEUED", MediaId="5014ca70f08171ecbf940764a0fd6011"),
        job("by_url", "Success", CompleteTime=done, MediaId="0badc0de0badc0de0badc0de0badc0de",
            FileSize="777", UploadURL=URL_WITH_COMMA),
    ]


def load_event(name: str):
    return json.loads((EVENTS_DIR / name).read_text())


def signed_http_event(name: str = "http-callback.json", *, key: str = CALLBACK_AUTH_KEY,
                      url: str = CALLBACK_URL, timestamp: Optional[int] = None, body: Optional[dict] = None) -> dict:
    """The HTTP sample event (with ``body`` as its body, if given), a fresh ``X-ICE-TIMESTAMP`` and a
    signature made with ``key``."""
    event = load_event(name)
    if body is not None:
        event["body"] = json.dumps(body)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    event["headers"]["X-Ice-Timestamp"] = stamp
    event["headers"]["X-Ice-Signature"] = hashlib.md5(f"{url}|{stamp}|{key}".encode()).hexdigest()
    return event
