"""The server side of Alibaba Cloud's V3 request signature (``ACS3-HMAC-SHA256``), shared by the emulators.

The official OpenAPI SDKs (tea-openapi 0.4.x, ``Client.do_request``) sign every request with
``Utils.get_authorization``. :class:`Acs3Verifier` recomputes that canonical request byte for byte and
checks what the real gateway checks: a known access key, the STS security token that goes with it, the
timestamp window, nonce reuse, the payload hash, that every ``host``/``x-acs-*`` header is signed, and
finally the signature. A check that fails raises :class:`ApiError` with the gateway's HTTP status and code,
so an emulator can answer it like any other error.

Standard library only.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
TIMESTAMP_WINDOW_S = 15 * 60
MAX_REMEMBERED_NONCES = 10000


class ApiError(Exception):
    """An error answer: HTTP status plus the service's error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def first(headers: Dict[str, List[str]], name: str) -> Optional[str]:
    """The first value of a header; ``headers`` maps lower-case names to every value received."""
    values = headers.get(name)
    return values[0] if values else None


# ------------------------------------------------------------------ the canonical request


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


def credential_of(headers: Dict[str, List[str]]) -> Optional[str]:
    """The access key ID a request claims, or None when its Authorization header cannot be read.

    For the call records: it names the caller even when the signature then fails.
    """
    try:
        return parse_authorization(first(headers, "authorization"))[1]
    except ApiError:
        return None


# ------------------------------------------------------------------ the verifier


class Acs3Verifier:
    """Access keys and the nonces already seen; :meth:`authenticate` checks one request. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.keys: Dict[str, Tuple[str, Optional[str]]] = {}  # access key ID -> (secret, STS token or None)
        self._nonces: Dict[str, float] = {}

    def add_access_key(self, access_key_id: str, access_key_secret: str, security_token: Optional[str] = None) -> None:
        """A key with a ``security_token`` is an STS key: its requests must carry that token."""
        with self._lock:
            self.keys[access_key_id] = (access_key_secret, security_token)

    def access_key_ids(self) -> List[str]:
        with self._lock:
            return sorted(self.keys)

    def authenticate(self, method: str, path: str, query: Dict[str, str], headers: Dict[str, List[str]],
                     body: bytes) -> str:
        """Check the V3 signature like the real gateway does; the access key ID, or ApiError when it does not hold.

        ``path`` and ``query`` are the request target split and decoded (the query as a dict);
        ``headers`` maps lower-case names to their values; ``body`` is the raw request body.
        """
        _, access_key_id, signed, signature = parse_authorization(first(headers, "authorization"))
        with self._lock:
            key = self.keys.get(access_key_id)
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
        self._remember(nonce)
        return access_key_id

    def _remember(self, nonce: str) -> None:
        """Marks a nonce used once its request proved genuine; forgets nonces too old to replay anyway."""
        now = time.time()
        with self._lock:
            if nonce in self._nonces:  # a concurrent replay won the race
                raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces[nonce] = now
            if len(self._nonces) > MAX_REMEMBERED_NONCES:
                horizon = now - 2 * TIMESTAMP_WINDOW_S
                self._nonces = {n: t for n, t in self._nonces.items() if t >= horizon}
