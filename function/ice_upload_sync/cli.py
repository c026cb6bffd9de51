"""The operator's command line (CONTRACT section 10): ``python -m ice_upload_sync <command>``.

Configured by the same environment variables as the function (``RECORD_STORE``, ``ICE_*``,
``ALIBABA_CLOUD_*``, ...), on every store. Tables fit a 100-column terminal; ``--json``
prints JSON for scripts. Exit codes: 0 success, 1 a failure (nothing found, a store or ICE
error, a handler that raised), 2 bad usage.

    get JOB_ID                         one record
    list [--state S] [--since ISO] [--limit N] [--after JOB_ID]
    stats                              records per state, the oldest pending job, the backlog,
                                       completion events still owed
    check JOB_ID...                    look jobs up now (the handler's direct path)
    sweep [--shard i/K]                a sweep, as the timer runs it
    replay FILE                        an event, or a message from the failure destination, through the handler
    sign-callback --url U --key K BODY_FILE   a signed HTTP-trigger event, for testing by hand
    create-tables                      Tablestore's two tables (one-off set-up)
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import sys
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

from . import callback_auth
from .config import Settings
from .errors import IceUploadSyncError, SyncIncomplete
from .records import STATES, JobRecord
from .stores import RecordStore, open_store

WIDTH = 100
LIST_COLUMNS = (("job_id", 32), ("state", 10), ("ice_status", 13), ("updated_at", 20), ("source", 8),
                ("media_id", 10))


class Failure(Exception):
    """The command could not do what was asked (exit code 1)."""


# ---------------------------------------------------------------- the commands


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    record = _store().load(args.job_id)
    if record is None:
        raise Failure(f"no record for job {args.job_id}")
    data = record.to_dict()
    if args.json:
        _print_json(data, out)
    else:
        width = max(map(len, data))
        for name, value in data.items():
            text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else _text(value)
            out.write(f"{name.ljust(width)}  {_fit(text, WIDTH - width - 2)}\n")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    if args.state and args.state not in STATES:
        raise UsageError(f"--state must be one of {', '.join(STATES)}")
    since = _iso_time(args.since) if args.since else None
    rows: List[JobRecord] = []
    more = False
    for record in _store().records(after=args.after):
        if args.state and record.state != args.state:
            continue
        if since and (record.updated_at or "") < since:
            continue
        if len(rows) == args.limit:
            more = True
            break
        rows.append(record)
    if args.json:
        _print_json({"records": [r.to_dict() for r in rows],
                     "next_after": rows[-1].job_id if more and rows else None}, out)
        return 0
    _print_table([r.to_dict() for r in rows], LIST_COLUMNS, out)
    tail = f"; more after this: --after {rows[-1].job_id}" if more and rows else ""
    out.write(f"{len(rows)} record(s){tail}\n")
    return 0


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    store = _store()
    counts: Dict[str, int] = dict.fromkeys(STATES, 0)
    first_seen: Dict[str, str] = {}
    for record in store.records():
        counts[record.state] = counts.get(record.state, 0) + 1
        if not record.final:
            first_seen[record.job_id] = record.first_seen_at
    pending = list(store.pending_job_ids())
    oldest: Optional[Tuple[str, str]] = None
    for job_id in pending:
        since = first_seen.get(job_id)
        if since is None:  # tracked, not looked up yet: the marker says since when
            marker = store.tracking(job_id)
            since = marker.first_seen_at if marker else None
        if since and (oldest is None or since < oldest[1]):
            oldest = (job_id, since)
    age_h = None
    if oldest:
        started = datetime.strptime(oldest[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        age_h = round((datetime.now(timezone.utc) - started).total_seconds() / 3600, 1)
    owed, first_owed = 0, None  # completion events not yet taken by every NOTIFY_URL / the bus
    for entry in store.owed():  # streamed, like the records: an outbox after an outage can be long
        owed += 1
        if first_owed is None or entry.owed_since < first_owed.owed_since:
            first_owed = entry
    stats = {"records": sum(counts.values()), "by_state": counts, "pending": len(pending),
             "oldest_pending": {"job_id": oldest[0], "since": oldest[1], "age_hours": age_h} if oldest else None,
             "events_owed": owed,
             "oldest_owed": {"job_id": first_owed.job_id, "state": first_owed.state, "since": first_owed.owed_since,
                             "tries": first_owed.tries, "next_attempt_at": first_owed.next_attempt_at,
                             "last_error": first_owed.last_error} if first_owed else None}
    if args.json:
        _print_json(stats, out)
        return 0
    out.write(f"{stats['records']} record(s) in {store.describe()}\n")
    for state, count in counts.items():
        out.write(f"  {state:11} {count:>8}\n")
    out.write(f"backlog: {len(pending)} pending job(s) (tracked, not final)\n")
    if oldest:
        out.write(f"oldest pending: {oldest[0]} since {oldest[1]} ({age_h} h)\n")
    out.write(f"events owed: {owed} (completion events not yet delivered everywhere)\n")
    if first_owed:
        out.write(f"oldest owed: {first_owed.job_id} {first_owed.state} since {first_owed.owed_since}, "
                  f"{first_owed.tries} tries\n")
        if first_owed.last_error:
            out.write(_fit(f"  last error: {first_owed.last_error}", WIDTH) + "\n")
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    return _invoke({"JobIds": list(args.job_ids)}, args, out)


def cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    payload = json.dumps({"Shard": args.shard}) if args.shard else ""
    return _invoke({"triggerTime": _now_iso(), "triggerName": "cli-sweep", "payload": payload}, args, out)


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    try:
        raw = open(args.file, "rb").read()
    except OSError as exc:
        raise Failure(f"cannot read {args.file}: {exc.strerror}") from None
    return _invoke(unwrap_failed_event(raw), args, out)


def cmd_sign_callback(args: argparse.Namespace, out: TextIO) -> int:
    try:
        body = open(args.body_file, encoding="utf-8").read()
    except OSError as exc:
        raise Failure(f"cannot read {args.body_file}: {exc.strerror}") from None
    _print_json(signed_callback_event(args.url, args.key, body, args.timestamp or int(time.time())), out)
    return 0


def cmd_create_tables(args: argparse.Namespace, out: TextIO) -> int:
    store = _store()
    create = getattr(store, "create_tables", None)
    if create is None:
        raise UsageError(f"create-tables is for RECORD_STORE=tablestore://..., not {store.describe()}")
    for line in create():
        out.write(line + "\n")
    return 0


# ---------------------------------------------------------------- helpers others may use


def signed_callback_event(url: str, key: str, body: str, timestamp: int) -> Dict[str, Any]:
    """An FC3 HTTP-trigger event carrying ``body`` as ICE would send it, signed for ``url`` with ``key``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be the CallbackURL configured in ICE (http(s)://host/path), got {url!r}")
    stamp = str(timestamp)
    signature = callback_auth.sign(url, stamp, key)
    path = parts.path or "/"
    return {
        "version": "v1", "rawPath": path, "body": body, "isBase64Encoded": False, "queryParameters": {},
        "headers": {"Content-Type": "application/json", "User-Agent": "ICE-Callback",
                    "X-Ice-Timestamp": stamp, "X-Ice-Signature": signature},
        "requestContext": {"domainName": parts.netloc, "requestId": f"cli-{uuid.uuid4()}",
                           "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1"}},
    }


def unwrap_failed_event(raw: bytes) -> Any:
    """The original event of a failure-destination message, or ``raw`` itself when it is an event.

    FC sends ``{"timestamp", "requestContext", "requestPayload": "<the event>", ...}`` to the
    destination; MNS wraps that as a message body (``MessageBody``, possibly base64) when it is
    read from the queue. Each layer is peeled while one is recognized.
    """
    value: Any = raw
    for _ in range(4):
        if isinstance(value, (bytes, str)):
            value = _json_or_base64(value)
        if isinstance(value, dict) and "requestPayload" in value and "requestContext" in value:
            value = value["requestPayload"]
            continue
        if isinstance(value, dict) and len(value) <= 8 and ("MessageBody" in value or "messageBody" in value):
            value = value.get("MessageBody", value.get("messageBody"))
            continue
        break
    return value


# ---------------------------------------------------------------- plumbing


class UsageError(Exception):
    """Bad usage (exit code 2)."""


def _store() -> RecordStore:
    from .ice import resolve_credentials

    settings = Settings.from_env()
    if settings.record_store.startswith("file://"):  # a folder needs no credentials
        return open_store(settings, None)
    return open_store(settings, resolve_credentials(None))


def _invoke(event: Any, args: argparse.Namespace, out: TextIO) -> int:
    """The event through the function's own handler, as a local invocation."""
    import index  # the FC edge: function/index.py, beside this package

    context = SimpleNamespace(request_id=f"cli-{uuid.uuid4()}", credentials=None,
                              function=SimpleNamespace(name="ice-upload-sync", handler="index.handler",
                                                       timeout="300"))
    index.initialize(context)
    if not args.verbose:
        logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
    raw = event if isinstance(event, (bytes, str)) else json.dumps(event)
    try:
        answer = index.handler(raw.encode() if isinstance(raw, str) else raw, context)
    except SyncIncomplete as exc:
        _show_answer(exc.summary, args, out)
        raise Failure(str(exc)) from None
    _show_answer(answer, args, out)
    if isinstance(answer, dict) and isinstance(answer.get("statusCode"), int) and answer["statusCode"] >= 400:
        return 1
    return 0


def _show_answer(answer: Any, args: argparse.Namespace, out: TextIO) -> None:
    if args.json or not isinstance(answer, dict):
        _print_json(answer, out)
        return
    if "statusCode" in answer:
        out.write(f"HTTP {answer['statusCode']}\n")
        try:
            answer = json.loads(answer.get("body") or "{}")
        except ValueError:
            return
    for key, value in answer.items():
        if value in (None, [], 0, False) and key not in ("checked", "written", "complete"):
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else _text(value)
        out.write(_fit(f"{key}: {text}", WIDTH) + "\n")


def _json_or_base64(value: Any) -> Any:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Failure("the file is neither an event nor a failure-destination message (not JSON, "
                      "nor base64 of JSON)") from None


def _iso_time(value: str) -> str:
    from .records import normalize_time

    normalized = normalize_time(value)
    if normalized is None:
        raise UsageError(f"--since must be a time such as 2026-12-01T00:00:00Z, got {value!r}")
    return normalized


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _print_table(rows: Iterable[Dict[str, Any]], columns: Sequence[Tuple[str, int]], out: TextIO) -> None:
    out.write(" ".join(name.ljust(width) for name, width in columns).rstrip() + "\n")
    out.write(" ".join("-" * width for _, width in columns) + "\n")
    for row in rows:
        out.write(" ".join(_fit(_text(row.get(name)), width).ljust(width) for name, width in columns).rstrip()
                  + "\n")


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ice-upload-sync", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")
    common.add_argument("--verbose", action="store_true", help="show the function's log lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace, TextIO], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    command("get", cmd_get, "one job's record").add_argument("job_id")
    listing = command("list", cmd_list, "records in job_id order, a page at a time")
    listing.add_argument("--state", help="only this state (" + ", ".join(STATES) + ")")
    listing.add_argument("--since", help="only records updated at or after this time (ISO 8601, UTC)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--after", help="start after this job ID (the previous page's last)")
    command("stats", cmd_stats, "records per state, the backlog and its oldest job")
    command("check", cmd_check, "look jobs up in ICE now and record them").add_argument("job_ids", nargs="+")
    command("sweep", cmd_sweep, "sweep every pending job, as the timer does").add_argument(
        "--shard", help="only shard i/K, e.g. 0/4")
    command("replay", cmd_replay, "run an event file, or a failure-destination message, through the handler"
            ).add_argument("file")
    sign = command("sign-callback", cmd_sign_callback, "print a signed HTTP-trigger event for an ICE callback body")
    sign.add_argument("--url", required=True, help="the CallbackURL configured in ICE")
    sign.add_argument("--key", required=True, help="the callback AuthKey")
    sign.add_argument("--timestamp", type=int, help="Unix seconds (default: now)")
    sign.add_argument("body_file", help="a file holding the callback's JSON body")
    command("create-tables", cmd_create_tables, "create the Tablestore tables RECORD_STORE names")
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args, out)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except (Failure, IceUploadSyncError) as exc:
        print(f"ice-upload-sync {args.command}: {exc}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
