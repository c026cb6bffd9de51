"""A local stand-in for the ICE (Intelligent Cloud Editing, 2020-11-09) OpenAPI endpoint.

The unmodified official SDK (``alibabacloud_ice20201109``) talks to it over plain HTTP on
loopback. It authenticates every request the way the real service does for the SDK's default
V3 signature (``ACS3-HMAC-SHA256``), with :class:`tests.emulators.acs3.Acs3Verifier`: it recomputes
the canonical request exactly like ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` and
compares signatures, checks the timestamp window, nonce reuse, the payload hash and STS security
tokens. It answers ``GetUrlUploadInfos`` from jobs seeded with :meth:`IceEmulator.put_job` and
creates jobs for ``UploadMediaByURL``. Faults (throttling, 5xx) and latency can be injected; every call is
recorded in :attr:`IceEmulator.calls`.

Standard library only. Run it on its own for local work::

    python -m tests.emulators.ice --port 8080 --seed jobs.json
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from tests.emulators.acs3 import ApiError
from tests.emulators.openapi import OpenApiEmulator

API_VERSION = "2020-11-09"
MAX_JOB_QUERY = 10
MAX_UPLOAD_URLS = 20
DEFAULT_HOST_ID = "ice.cn-shanghai.aliyuncs.com"
ICE_FIELDS = ("UploadURL", "Status", "MediaId", "CreationTime", "CompleteTime", "ErrorCode", "ErrorMessage",
              "UserData", "FileSize")
ACTIONS = ("GetUrlUploadInfos", "UploadMediaByURL")
NONEXISTS_STYLES = ("list", "stringified")


@dataclass(frozen=True)
class ApiCall:
    """One request the emulator answered (authentication failures included)."""

    action: str
    access_key_id: Optional[str]
    security_token: Optional[str]
    job_ids: Tuple[str, ...]
    upload_urls: Tuple[str, ...]
    status: int
    error_code: Optional[str]
    request_id: str


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def split_list(value: Optional[str]) -> List[str]:
    """ICE's comma-separated list parameters: items trimmed, empty items dropped."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def dedupe(items: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(items))


# ------------------------------------------------------------------ the emulator


class IceEmulator(OpenApiEmulator):
    """ICE's OpenAPI on loopback. ``with IceEmulator() as ice: ...`` or ``start()`` / ``stop()``."""

    thread_name = "ice-emulator"
    server_version = "IceEmulator/1.0"
    api_version = API_VERSION
    actions = ACTIONS
    default_host_id = DEFAULT_HOST_ID
    product = "ICE"
    call_type = ApiCall

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, nonexists_style: str = "list") -> None:
        if nonexists_style not in NONEXISTS_STYLES:
            raise ValueError(f"nonexists_style must be one of {NONEXISTS_STYLES}, not {nonexists_style!r}")
        super().__init__(host, port)
        self.nonexists_style = nonexists_style
        self._jobs: Dict[str, Dict[str, Any]] = {}
        self._calls: List[ApiCall] = []
        self._faults: List[Tuple[int, str, str]] = []

    # ---------------------------------------------------------------- state

    def put_job(self, job_id: str, *, raw: bool = False, **fields: Any) -> None:
        """Create or replace a job. Fields use ICE's response names; fields not given are omitted.

        ICE sends every field as a string, so values are turned into strings; with ``raw``
        they are served exactly as given (any JSON value: a hostile answer for the fuzzers).
        """
        job = self._check_fields(fields, raw=raw)
        with self._lock:
            self._jobs.pop(job_id, None)  # a replaced job moves to the end, like a new one
            self._jobs[job_id] = job

    def update_job(self, job_id: str, **fields: str) -> None:
        job = self._check_fields(fields)
        with self._lock:
            if job_id not in self._jobs:
                raise KeyError(job_id)
            self._jobs[job_id].update(job)

    def job(self, job_id: str) -> Dict[str, str]:
        with self._lock:
            return dict(self._jobs[job_id])

    @staticmethod
    def _check_fields(fields: Dict[str, Any], *, raw: bool = False) -> Dict[str, Any]:
        unknown = set(fields) - set(ICE_FIELDS)
        if unknown:
            raise ValueError(f"unknown ICE job fields {sorted(unknown)}; use {ICE_FIELDS}")
        return dict(fields) if raw else {name: str(value) for name, value in fields.items()}

    # ---------------------------------------------------------------- faults and records

    def fail_next(self, count: int, *, status: int = 400, code: str = "Throttling.User",
                  message: str = "Request was denied due to user flow control.") -> None:
        """The next ``count`` API calls (after authentication) answer this error."""
        self._add_faults(count, (status, code, message))

    def throttle_next(self, count: int) -> None:
        self.fail_next(count)

    def server_error_next(self, count: int, status: int = 503) -> None:
        if status == 500:
            code, message = "InternalError", "The request processing has failed due to some unknown error."
        else:
            code, message = "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
        self.fail_next(count, status=status, code=code, message=message)

    @property
    def calls(self) -> List[ApiCall]:
        return self._recorded_calls()

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # ---------------------------------------------------------------- request handling (OpenApiEmulator)

    def _call_fields(self, params: Dict[str, str]) -> Dict[str, Any]:
        return {"job_ids": tuple(split_list(params.get("JobIds"))),
                "upload_urls": tuple(unquote(item) for item in split_list(params.get("UploadURLs")))}

    def _call(self, action: str, params: Dict[str, str],
              fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
        fault = self._next_fault()
        if fault is not None:
            raise ApiError(*fault)
        if action == "GetUrlUploadInfos":
            return self._get_url_upload_infos(fields["job_ids"], fields["upload_urls"]), None
        return self._upload_media_by_url(fields["upload_urls"], params.get("UserData")), None

    # ---------------------------------------------------------------- actions

    def _get_url_upload_infos(self, job_ids: Sequence[str], upload_urls: Sequence[str]) -> Dict[str, Any]:
        if job_ids:
            keys, by_url = job_ids, False
        elif upload_urls:
            keys, by_url = upload_urls, True
        else:
            raise ApiError(400, "MissingParameter", "The input parameter \"JobIds or UploadURLs\" that is "
                           "mandatory for processing this request is not supplied.")
        if len(keys) > MAX_JOB_QUERY:
            name = "UploadURLs" if by_url else "JobIds"
            raise ApiError(400, "InvalidParameter",
                           f"The parameter {name} is invalid: at most {MAX_JOB_QUERY} items, got {len(keys)}.")
        infos: List[Dict[str, str]] = []
        missing: List[str] = []
        with self._lock:
            for key in dedupe(keys):
                if by_url:
                    found = [(job_id, job) for job_id, job in self._jobs.items() if job.get("UploadURL") == key]
                else:
                    found = [(key, self._jobs[key])] if key in self._jobs else []
                if not found:
                    missing.append(key)
                infos.extend({"JobId": job_id, **job} for job_id, job in found)
        if self.nonexists_style == "stringified" and missing:
            non_exists: List[str] = [repr(missing)]
        else:
            non_exists = missing
        return {"NonExists": non_exists, "URLUploadInfoList": infos}

    def _upload_media_by_url(self, upload_urls: Sequence[str], user_data: Optional[str]) -> Dict[str, Any]:
        if not upload_urls:
            raise ApiError(400, "MissingParameter", "The input parameter \"UploadURLs\" that is mandatory for "
                           "processing this request is not supplied.")
        if len(upload_urls) > MAX_UPLOAD_URLS:
            raise ApiError(400, "InvalidParameter",
                           f"The parameter UploadURLs is invalid: at most {MAX_UPLOAD_URLS} URLs, "
                           f"got {len(upload_urls)}.")
        created = utc_now_iso()
        upload_jobs = []
        with self._lock:
            for url in upload_urls:
                job_id, media_id = uuid.uuid4().hex, uuid.uuid4().hex
                job = {"UploadURL": url, "Status": "PENDING", "CreationTime": created, "MediaId": media_id}
                if user_data:
                    job["UserData"] = user_data
                self._jobs[job_id] = job
                upload_jobs.append({"JobId": job_id, "SourceURL": url, "MediaId": media_id})
        return {"UploadJobs": upload_jobs}


# ------------------------------------------------------------------ command line


def build(argv: Optional[List[str]] = None) -> IceEmulator:
    """The emulator the command line describes, seeded and keyed, not yet started."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.ice", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--access-key-id", default="local-ak")
    parser.add_argument("--access-key-secret", default="local-secret")
    parser.add_argument("--security-token", default=None, help="makes the key an STS key")
    parser.add_argument("--seed", default=None, help="JSON list of jobs: {\"JobId\": ..., ICE fields...}")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--nonexists-style", choices=NONEXISTS_STYLES, default="list")
    args = parser.parse_args(argv)
    emulator = IceEmulator(args.host, args.port, nonexists_style=args.nonexists_style)
    emulator.add_access_key(args.access_key_id, args.access_key_secret, args.security_token)
    emulator.latency_s = args.latency_ms / 1000.0
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            jobs = json.load(handle)
        if not isinstance(jobs, list):
            parser.error("the seed file must hold a JSON list of jobs")
        for job in jobs:
            fields = {name: str(value) for name, value in job.items() if name != "JobId"}
            emulator.put_job(str(job["JobId"]), **fields)
    return emulator


def main(argv: Optional[List[str]] = None) -> None:
    emulator = build(argv).start()
    keys = ", ".join(emulator.auth.access_key_ids())
    emulator.serve_until_interrupted(f"ICE emulator listening on {{endpoint}} (access keys: {keys}; "
                                     f"{len(emulator._jobs)} jobs)")

if __name__ == "__main__":
    main()
