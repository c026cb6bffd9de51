"""A local stand-in for the ICE (Intelligent Cloud Editing, 2020-11-09) OpenAPI endpoint.

The unmodified official SDK (``alibabacloud_ice20201109``) talks to it over plain HTTP on
loopback. It authenticates every request the way the real service does for the SDK's default
V3 signature (``ACS3-HMAC-SHA256``): it recomputes the canonical request exactly like
``alibabacloud_tea_openapi.utils.Utils.get_authorization`` and compares signatures, checks
the timestamp window, nonce reuse, the payload hash and STS security tokens. It answers
``GetUrlUploadInfos`` from jobs seeded with :meth:`IceEmulator.put_job` and creates jobs for
``UploadMediaByURL``. Faults (throttling, 5xx) and latency can be injected; every call is
recorded in :attr:`IceEmulator.calls`.

Standard library only. Run it on its own for local work::

    python -m tests.emulators.ice --port 8080 --seed jobs.json
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote

from tests.emulators.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

API_VERSION = "2020-11-09"
SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
TIMESTAMP_WINDOW_S = 15 * 60
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


class ApiError(Exception):
    """An error answer: HTTP status plus the service's error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def split_list(value: Optional[str]) -> List[str]:
    """ICE's comma-separated list parameters: items trimmed, empty items dropped."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def dedupe(items: List[str]) -> List[str]:
    return list(dict.fromkeys(items))


# ------------------------------------------------------------------ the V3 signature, server side


def canonical_query_string(params: Dict[str, str]) -> str:
    """Same bytes as ``alibabacloud_tea_openapi.utils.get_canonical_query_string``."""
    return "&".join(f"{key}={quote(params[key], safe='~', encoding='utf-8')}" for key in sorted(params))


def canonical_headers(signed: List[str], header_values: Dict[str, List[str]]) -> str:
    """Same bytes as ``get_canonicalized_headers`` for the headers listed in SignedHeaders."""
    lines = []
    for name in signed:
        values = sorted(value.strip() for value in header_values.get(name, []))
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def string_to_sign(method: str, path: str, params: Dict[str, str], signed: List[str],
                   header_values: Dict[str, List[str]], payload_hash: str) -> str:
    canonical_request = (f"{method}\n{path or '/'}\n{canonical_query_string(params)}\n"
                         f"{canonical_headers(signed, header_values)}\n{';'.join(signed)}\n{payload_hash}")
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{SIGNATURE_ALGORITHM}\n{digest}"


def sign(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_authorization(value: Optional[str]) -> Tuple[str, str, List[str], str]:
    """``ACS3-HMAC-SHA256 Credential=<ak>,SignedHeaders=a;b,Signature=<hex>`` -> its parts."""
    incomplete = ApiError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
    if not value:
        raise incomplete
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != SIGNATURE_ALGORITHM:
        raise ApiError(400, "IncompleteSignature",
                       f"The signature algorithm {algorithm or '(none)'} is not supported; use {SIGNATURE_ALGORITHM}.")
    parts: Dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    credential, signed, signature = parts.get("Credential"), parts.get("SignedHeaders"), parts.get("Signature")
    if not credential or not signed or not signature:
        raise incomplete
    return algorithm, credential, [name.strip().lower() for name in signed.split(";") if name.strip()], signature


# ------------------------------------------------------------------ the emulator


class IceEmulator(LoopbackServer):
    """ICE's OpenAPI on loopback. ``with IceEmulator() as ice: ...`` or ``start()`` / ``stop()``."""

    thread_name = "ice-emulator"
    poll_interval_s = 0.01

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, nonexists_style: str = "list") -> None:
        if nonexists_style not in NONEXISTS_STYLES:
            raise ValueError(f"nonexists_style must be one of {NONEXISTS_STYLES}, not {nonexists_style!r}")
        super().__init__(host, port)
        self.nonexists_style = nonexists_style
        self.latency_s: float = 0.0
        self._lock = threading.Lock()
        self._keys: Dict[str, Tuple[str, Optional[str]]] = {}
        self._jobs: Dict[str, Dict[str, Any]] = {}
        self._calls: List[ApiCall] = []
        self._faults: List[Tuple[int, str, str]] = []
        self._nonces: Dict[str, float] = {}
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- lifecycle (LoopbackServer)

    def _make_server(self) -> _Server:
        self._stopping.clear()
        server = _Server((self.host, self._port), _Handler)
        server.emulator = self
        return server

    def _stopping_server(self, server: _Server) -> None:
        self._stopping.set()  # wakes handlers sleeping on latency

    def _stopped_server(self, server: _Server) -> None:
        server.close_connections()  # keep-alive connections would otherwise outlive the server

    # ---------------------------------------------------------------- state

    def add_access_key(self, access_key_id: str, access_key_secret: str, security_token: Optional[str] = None) -> None:
        """A key with a ``security_token`` is an STS key: its requests must carry that token."""
        with self._lock:
            self._keys[access_key_id] = (access_key_secret, security_token)

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
        with self._lock:
            self._faults.extend([(status, code, message)] * count)

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
        with self._lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # ---------------------------------------------------------------- request handling

    def _handle(self, method: str, raw_path: str, headers: Dict[str, List[str]],
                body: bytes) -> Tuple[int, Dict[str, Any], str]:
        """Answer one request: (HTTP status, JSON body, request id). Records the call."""
        request_id = new_request_id()
        path, _, raw_query = raw_path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        params = dict(query)
        content_type = (first(headers, "content-type") or "").lower()
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(key, value)
        action = first(headers, "x-acs-action") or params.get("Action") or ""
        job_ids = split_list(params.get("JobIds"))
        upload_urls = [unquote(item) for item in split_list(params.get("UploadURLs"))]
        access_key_id: Optional[str] = None
        try:
            authorization = parse_authorization(first(headers, "authorization"))
            access_key_id = authorization[1]
            self._authenticate(authorization, method, path, query, headers, body)
            version = first(headers, "x-acs-version") or params.get("Version")
            if action not in ACTIONS:
                raise ApiError(404, "InvalidAction.NotFound",
                               f"Specified api is not found, please check your url and method. Action: {action}")
            if version != API_VERSION:
                raise ApiError(400, "InvalidVersion", f"Specified parameter Version is not valid: {version}")
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault is not None:
                raise ApiError(*fault)
            if action == "GetUrlUploadInfos":
                status, answer = 200, self._get_url_upload_infos(job_ids, upload_urls)
            else:
                status, answer = 200, self._upload_media_by_url(upload_urls, params.get("UserData"))
            error_code = None
        except ApiError as error:
            status, error_code = error.status, error.code
            answer = {"HostId": first(headers, "host") or DEFAULT_HOST_ID, "Code": error.code,
                      "Message": error.message,
                      "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=ICE"
                                   f"&requestId={request_id}"}
        answer = {"RequestId": request_id, **answer}
        latency = self.latency_s
        if latency > 0:
            self._stopping.wait(latency)
        call = ApiCall(action=action, access_key_id=access_key_id,
                       security_token=first(headers, "x-acs-security-token"), job_ids=tuple(job_ids),
                       upload_urls=tuple(upload_urls), status=status, error_code=error_code, request_id=request_id)
        with self._lock:
            self._calls.append(call)
        return status, answer, request_id

    def _authenticate(self, authorization: Tuple[str, str, List[str], str], method: str, path: str,
                      query: Dict[str, str], headers: Dict[str, List[str]], body: bytes) -> None:
        """Check the V3 signature like the real gateway does; raises ApiError when it does not hold."""
        _, access_key_id, signed, signature = authorization
        with self._lock:
            key = self._keys.get(access_key_id)
        if key is None:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        secret, expected_token = key
        token = first(headers, "x-acs-security-token")
        header_key_id = first(headers, "x-acs-accesskey-id")
        if expected_token is not None:
            if not token:
                raise ApiError(400, "MissingSecurityToken", "SecurityToken is mandatory for this action.")
            if not hmac.compare_digest(token.encode("utf-8"), expected_token.encode("utf-8")):
                raise ApiError(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken mismatch.")
        elif token:
            raise ApiError(400, "InvalidSecurityToken.MismatchWithAccessKey",
                           "The security token you provided does not match the access key.")
        if header_key_id is not None and header_key_id != access_key_id:
            raise ApiError(400, "InvalidSecurityToken.MismatchWithAccessKey",
                           "x-acs-accesskey-id does not match the Credential of the Authorization header.")

        stamp = first(headers, "x-acs-date")
        try:
            moment = datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise ApiError(400, "InvalidTimeStamp.Format",
                           f"Specified time stamp or date value is not well formatted: {stamp}") from None
        if abs(time.time() - moment.timestamp()) > TIMESTAMP_WINDOW_S:
            raise ApiError(400, "InvalidTimeStamp.Expired",
                           f"Specified time stamp or date value is expired: {stamp}")

        nonce = first(headers, "x-acs-signature-nonce")
        if not nonce:
            raise ApiError(400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action.")
        with self._lock:
            used = nonce in self._nonces
        if used:
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

        payload_hash = hashlib.sha256(body).hexdigest()
        claimed = first(headers, "x-acs-content-sha256")
        if not claimed:
            raise ApiError(400, "IncompleteSignature", "The x-acs-content-sha256 header is missing.")
        if claimed.strip().lower() != payload_hash:
            raise ApiError(400, "IncompleteSignature",
                           "The request body does not match the x-acs-content-sha256 header (content mismatch).")

        unsigned = sorted(name for name in headers
                          if (name == "host" or name.startswith("x-acs-")) and name not in signed)
        if unsigned:
            raise ApiError(400, "IncompleteSignature",
                           f"The request signature does not conform to Aliyun standards: headers {unsigned} "
                           "must be signed.")
        missing = sorted(name for name in signed if name not in headers)
        if missing:
            raise ApiError(400, "IncompleteSignature",
                           f"SignedHeaders lists headers the request does not carry: {missing}.")

        to_sign = string_to_sign(method, path, query, signed, headers, payload_hash)
        if not hmac.compare_digest(sign(secret, to_sign), signature.strip().lower()):
            server_side = to_sign.replace("\n", "\\n")
            raise ApiError(400, "SignatureDoesNotMatch",
                           f"Specified signature does not match our calculation. The server string to sign is: "
                           f"{server_side}")
        now = time.time()
        with self._lock:
            if nonce in self._nonces:  # a concurrent replay won the race
                raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces[nonce] = now
            if len(self._nonces) > 10000:
                horizon = now - 2 * TIMESTAMP_WINDOW_S
                self._nonces = {n: t for n, t in self._nonces.items() if t >= horizon}

    # ---------------------------------------------------------------- actions

    def _get_url_upload_infos(self, job_ids: List[str], upload_urls: List[str]) -> Dict[str, Any]:
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

    def _upload_media_by_url(self, upload_urls: List[str], user_data: Optional[str]) -> Dict[str, Any]:
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


def first(headers: Dict[str, List[str]], name: str) -> Optional[str]:
    values = headers.get(name)
    return values[0] if values else None


# ------------------------------------------------------------------ HTTP plumbing


class _Server(TrackingHTTPServer):
    emulator: IceEmulator


class _Handler(KeepAliveHandler):
    server_version = "IceEmulator/1.0"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers: Dict[str, List[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        try:
            status, answer, request_id = self.server.emulator._handle(self.command, self.path, headers, body)
        except Exception as error:  # an emulator bug still answers like the service would
            request_id = new_request_id()
            status, answer = 500, {"RequestId": request_id, "Code": "InternalError",
                                   "Message": f"emulator error: {type(error).__name__}: {error}"}
        # \u escapes for anything not ASCII: valid JSON for any text, lone surrogates included
        payload = json.dumps(answer).encode("ascii")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-acs-request-id", request_id)
        self.end_headers()
        self.wfile.write(payload)


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
    keys = ", ".join(sorted(emulator._keys))
    emulator.serve_until_interrupted(f"ICE emulator listening on {{endpoint}} (access keys: {keys}; "
                                     f"{len(emulator._jobs)} jobs)")

if __name__ == "__main__":
    main()
