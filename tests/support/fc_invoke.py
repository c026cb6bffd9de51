"""``s invoke --event-file FILE`` for the local FC front end (tests/support/fc.py): FC3's InvokeFunction.

Sends the file's bytes, as they are, to ``POST {url}/2023-03-30/functions/{function}/invocations``
(synchronous unless ``--invocation-type async``), prints what the function returned, and exits as a
careful caller of ``s invoke`` would want: 0 when the function returned (or FC took the asynchronous
invocation), 1 on a function error (``X-Fc-Error-Type``) or any other answer, 2 on bad usage::

    python -m tests.support.fc_invoke --url http://127.0.0.1:9000 --event-file events/direct-job-ids.json

Standard library only, so it also runs by its path (``python tests/support/fc_invoke.py ...``) from any
folder: ``ice-upload-sync smoke --invoke-command`` runs it that way in the tests.
"""
from __future__ import annotations

import argparse
import http.client
import sys
from typing import List, Optional, Sequence
from urllib.parse import quote, urlsplit

API_VERSION = "2023-03-30"
DEFAULT_FUNCTION = "ice-upload-sync"


def invocation_path(function_name: str) -> str:
    return f"/{API_VERSION}/functions/{quote(function_name, safe='')}/invocations"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fc_invoke", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the front end's URL, http://127.0.0.1:<port>")
    parser.add_argument("--event-file", required=True, help="the event to send, as it is")
    parser.add_argument("--function", default=DEFAULT_FUNCTION, help=f"its name (default {DEFAULT_FUNCTION})")
    parser.add_argument("--invocation-type", choices=("sync", "async"), default="sync")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or not parts.hostname:
        parser.error(f"--url must be the front end's http://host:port, not {args.url!r}")
    try:
        with open(args.event_file, "rb") as handle:
            event = handle.read()
    except OSError as exc:
        parser.error(f"cannot read {args.event_file}: {exc.strerror}")
    headers = {"Content-Type": "application/octet-stream",
               "X-Fc-Invocation-Type": "Async" if args.invocation_type == "async" else "Sync"}
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=args.timeout)
    try:
        connection.request("POST", invocation_path(args.function), body=event, headers=headers)
        response = connection.getresponse()
        body = response.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        print(f"fc_invoke: no answer from {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    request_id = response.getheader("X-Fc-Request-Id") or "-"
    error_type = response.getheader("X-Fc-Error-Type")
    lines: List[str] = [f"request {request_id}: HTTP {response.status}" + (f", {error_type}" if error_type else "")]
    if body:
        lines.append(body)
    print("\n".join(lines))
    expected = 202 if args.invocation_type == "async" else 200
    return 0 if response.status == expected and not error_type else 1


if __name__ == "__main__":
    sys.exit(main())
