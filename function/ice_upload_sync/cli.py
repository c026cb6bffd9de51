"""The operator's command line (contract section 10): ``python -m ice_upload_sync <command>``.

Configured by the same environment variables as the function (``RECORD_STORE``, ``ICE_*``,
``ALIBABA_CLOUD_*``, ...), on every store. Tables fit a 100-column terminal (job IDs are never
cut); ``--json`` (before or after the command) prints JSON for scripts. Exit codes: 0 success,
1 a failure (nothing found, a store or ICE error, a job ICE could not be asked about, an
unreadable record skipped, a handler that raised), 2 bad usage (an event the handler refuses
included).

    get JOB_ID                         one record
    list [--state S] [--since ISO] [--limit N] [--after JOB_ID]
    stats                              records per state, the backlog (tracked, not final) and its
                                       oldest job, completion events still owed
    check JOB_ID...                    look jobs up now (the handler's direct path), show what was recorded
    sweep [--shard i/K]                a sweep, as the timer runs it
    replay FILE                        an event, or a message from the failure destination, through the handler
    sign-callback --url U --key K BODY_FILE   a signed HTTP-trigger event, for testing by hand
    create-tables                      Tablestore's two tables (one-off set-up)
    ice-callback show                  ICE's callback setting in ICE_REGION (the AuthKey masked)
    ice-callback set (--url URL | --queue ice-callback-NAME) [--key KEY | --new-key] [--replace] [--dry-run]
                                       add UploadByURLComplete to that setting, keeping its other event
                                       types; another URL or queue is replaced only with --replace
    smoke --url MEDIA_URL [--via invoke|callback] [--invoke-command CMD] [--timeout S] [--interval S]
                                       prove a deployment: UploadMediaByURL, the job handed to the function
                                       (s invoke) or left to ICE's callback, then its record, awaited

The read commands (``get``, ``list``, ``stats``) create nothing and need no ICE credentials.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import re
import sys
import textwrap
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

from . import callback_auth, jsontext
from .config import Settings
from .errors import BadRequest, ConfigError, IceUploadSyncError, SyncIncomplete
from .events import EVENT_DEPTH, validate_job_ids
from .records import FINAL_STATES, STATES, JobRecord, format_time, parse_time, plain_ice_time
from .stores import RecordStore, check_store_setting, open_store

WIDTH = 100
LIST_COLUMNS = (("job_id", 32), ("state", 10), ("ice_status", 13), ("updated_at", 20), ("source", 8),
                ("media_id", 10))
JOB_COLUMNS = (("job_id", 32), ("state", 10), ("ice_status", 13), ("updated_at", 20), ("note", 20))


class Failure(Exception):
    """The command could not do what was asked (exit code 1)."""


# ---------------------------------------------------------------- the commands


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    job_id = validate_job_ids([args.job_id])[0]  # a path such as ../x is no job ID (exit 2)
    record = _read_store().load(job_id)
    if record is None:
        raise Failure(f"no record for job {job_id}")
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
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    since = _since(args.since) if args.since else None
    store = _read_store()
    unreadable = Unreadable()
    rows: List[JobRecord] = []
    more = False
    for record in store.records(after=args.after, unreadable=unreadable):
        if args.state and record.state != args.state:
            continue
        if since is not None:
            updated = _moment(record.updated_at)
            if updated is None or updated < since:
                continue
        if len(rows) == args.limit:
            more = True
            break
        rows.append(record)
    next_after = rows[-1].job_id if more and rows else None
    if args.json:
        _print_json({"records": [r.to_dict() for r in rows], "next_after": next_after,
                     **unreadable.to_dict()}, out)
    else:
        _print_table([r.to_dict() for r in rows], LIST_COLUMNS, out)
        tail = f"; more after this: --after {next_after}" if next_after else ""
        out.write(f"{len(rows)} record(s){tail}{unreadable.note()}\n")
    unreadable.check("listed as asked")
    return 0


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    store = _read_store()
    unreadable = Unreadable()
    counts: Dict[str, int] = dict.fromkeys(STATES, 0)
    first_seen: Dict[str, Optional[datetime]] = {}
    for record in store.records(unreadable=unreadable):
        counts[record.state] += 1  # one of STATES: JobRecord.from_dict refuses any other
        if record.state not in FINAL_STATES:
            first_seen[record.job_id] = _moment(record.first_seen_at)
    # The backlog: every job tracked and not final (what a sweep looks up), with or without a record.
    backlog = list(store.pending_job_ids())
    oldest: Optional[Tuple[str, datetime]] = None
    for job_id in backlog:
        since = first_seen.get(job_id)
        if since is None:  # not looked up yet, or a time we cannot read: the marker says since when
            marker = store.tracking(job_id)
            since = _moment(marker.first_seen_at) if marker else None
        if since is not None and (oldest is None or since < oldest[1]):
            oldest = (job_id, since)
    age_h = round((datetime.now(timezone.utc) - oldest[1]).total_seconds() / 3600, 1) if oldest else None
    owed, first_owed = 0, None  # completion events not yet taken by every NOTIFY_URL / the bus
    for entry in store.owed():  # streamed, like the records: an outbox after an outage can be long
        owed += 1
        if first_owed is None or entry.owed_since < first_owed.owed_since:
            first_owed = entry
    stats = {"records": sum(counts.values()), "by_state": counts, "backlog": len(backlog),
             "oldest_in_backlog": {"job_id": oldest[0], "since": format_time(oldest[1]), "age_hours": age_h}
             if oldest else None,
             "events_owed": owed,
             "oldest_owed": {"job_id": first_owed.job_id, "state": first_owed.state, "since": first_owed.owed_since,
                             "tries": first_owed.tries, "next_attempt_at": first_owed.next_attempt_at,
                             "last_error": first_owed.last_error} if first_owed else None,
             **unreadable.to_dict()}
    if args.json:
        _print_json(stats, out)
        unreadable.check("counted")
        return 0
    out.write(f"{stats['records']} record(s) in {store.describe()}{unreadable.note()}\n")
    for state, count in counts.items():
        out.write(f"  {state:11} {count:>8}\n")
    out.write(f"backlog: {len(backlog)} job(s) tracked and not final, swept until they are\n")
    if oldest:
        out.write(f"oldest in the backlog: {oldest[0]} since {format_time(oldest[1])} ({age_h} h)\n")
    out.write(f"events owed: {owed} (completion events not yet delivered everywhere)\n")
    if first_owed:
        out.write(f"oldest owed: {first_owed.job_id} {first_owed.state} since {first_owed.owed_since}, "
                  f"{first_owed.tries} tries\n")
        if first_owed.last_error:
            out.write(_fit(f"  last error: {first_owed.last_error}", WIDTH) + "\n")
    unreadable.check("counted")
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    job_ids = list(dict.fromkeys(args.job_ids))
    return _invoke({"JobIds": job_ids}, args, out, job_ids=job_ids)


def cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    payload = json.dumps({"Shard": args.shard}) if args.shard else ""
    return _invoke({"triggerTime": _now_iso(), "triggerName": "cli-sweep", "payload": payload}, args, out)


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open(args.file, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise Failure(f"cannot read {args.file}: {exc.strerror}") from None
    return _invoke(unwrap_failed_event(raw), args, out)


def cmd_sign_callback(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open(args.body_file, encoding="utf-8") as handle:
            body = handle.read()
    except OSError as exc:
        raise Failure(f"cannot read {args.body_file}: {exc.strerror}") from None
    _print_json(signed_callback_event(args.url, args.key, body, args.timestamp or int(time.time())), out)
    return 0


def cmd_create_tables(args: argparse.Namespace, out: TextIO) -> int:
    settings = Settings.from_env()
    if not settings.record_store.startswith("tablestore://"):
        raise UsageError(f"create-tables is for RECORD_STORE=tablestore://..., not {settings.record_store}")
    store = _read_store()
    for line in store.create_tables():  # type: ignore[attr-defined]  # TablestoreStore's set-up
        out.write(line + "\n")
    return 0


def cmd_ice_callback(args: argparse.Namespace, out: TextIO) -> int:
    """ICE's callback setting (callback_setting.py): ``show`` it, or ``set`` it merged into what ICE holds."""
    from . import callback_setting

    if args.callback_command == "show":
        return callback_setting.show(callback_setting.IceCallbackApi.from_env(), out, as_json=args.json)
    # checked before ICE is called: a key or a queue ICE would refuse exits 2
    request = callback_setting.SetRequest.from_options(url=args.url, queue=args.queue, key=args.key,
                                                       new_key=args.new_key, replace=args.replace)
    return callback_setting.apply(callback_setting.IceCallbackApi.from_env(), request, out, dry_run=args.dry_run,
                                  as_json=args.json)


def cmd_smoke(args: argparse.Namespace, out: TextIO) -> int:
    """A deployment proved end to end (smoke.py): exit 0 only when the job's record is final and succeeded."""
    from . import smoke

    try:  # checked before ICE is called: bad usage exits 2 with no job made
        options = smoke.SmokeOptions.build(args.url, via=args.via, invoke_command=args.invoke_command,
                                           timeout_s=args.timeout, interval_s=args.interval, user_data=args.user_data)
    except smoke.BadUsage as exc:
        raise UsageError(str(exc)) from None
    try:
        return smoke.run(options, smoke.Steps.from_env(_read_store), out, as_json=args.json)
    except smoke.SmokeFailed as exc:
        raise Failure(str(exc)) from None


class Unreadable:
    """The records a read command could not read or parse (the stores' ``unreadable`` callback).

    They are skipped, so that one never hides the others, then named on stderr and counted, and
    the command exits 1 after printing the rest (``check``)."""

    SHOWN = 20  # named one per line; the count is the total

    def __init__(self) -> None:
        self.count = 0
        self.errors: List[Tuple[str, str]] = []  # (job ID, what went wrong)

    def __call__(self, job_id: str, error: Exception) -> None:
        self.count += 1
        if len(self.errors) < self.SHOWN:
            self.errors.append((job_id, str(error)))

    def to_dict(self) -> Dict[str, Any]:
        return {"unreadable": [{"job_id": job_id, "error": error} for job_id, error in self.errors],
                "unreadable_count": self.count}

    def note(self) -> str:
        return f"; {self.count} unreadable record(s) skipped (named on stderr)" if self.count else ""

    def check(self, done: str) -> None:
        """Exit 1, naming what was skipped, when anything was."""
        if not self.count:
            return
        lines = [f"{self.count} unreadable record(s) skipped; the others are {done}:"]
        lines += [f"  {error}" if job_id in error else f"  {job_id}: {error}" for job_id, error in self.errors]
        if self.count > len(self.errors):
            lines.append(f"  ... and {self.count - len(self.errors)} more")
        raise Failure("\n".join(lines))


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
    read from the queue (``_mns_message_body``). Each layer is peeled while one is recognized;
    an ICE callback (which has a ``MessageBody`` too) is an event and is left whole.
    """
    value: Any = raw
    for _ in range(6):
        if isinstance(value, (bytes, str)):
            value = _json_or_base64(value)
        if isinstance(value, dict) and "requestPayload" in value and "requestContext" in value:
            value = value["requestPayload"]
            continue
        body = _mns_message_body(value)
        if body is not None:
            value = body
            continue
        break
    return value


# what marks an MNS message: ReceiveMessage's fields, or the messageId of an MNS trigger's event data
_MNS_MESSAGE_KEYS = frozenset({"MessageId", "messageId", "ReceiptHandle", "MessageBodyMD5"})


def _mns_message_body(value: Any) -> Optional[str]:
    """The body of an MNS message, or None when ``value`` is not one.

    An MNS message is what ``ReceiveMessage`` returns (``MessageId``, ``ReceiptHandle``,
    ``MessageBodyMD5``, ``MessageBody``, ``EnqueueTime``, ``NextVisibleTime``,
    ``FirstDequeueTime``, ``DequeueCount``, ``Priority``) or an MNS trigger's event data
    (``requestId``, ``messageId``, ``messageBody``): a message ID beside a body that is text.
    An ICE callback names its ``EventType``: it is the event itself, never a wrapper.
    """
    if not isinstance(value, dict):
        return None
    keys = {key.strip() for key in value if isinstance(key, str)}
    if "EventType" in keys or not keys & _MNS_MESSAGE_KEYS:
        return None
    body = value.get("MessageBody", value.get("messageBody"))
    return body if isinstance(body, str) else None


# ---------------------------------------------------------------- plumbing


class UsageError(Exception):
    """Bad usage (exit code 2)."""


def _read_store() -> RecordStore:
    """The store, to read it: nothing is created, and a store that does not exist is an error naming it.

    ``RECORD_STORE`` is checked before credentials are asked for; a folder needs none, and no
    store needs ICE's (only its own: the ``ALIBABA_CLOUD_*`` variables).
    """
    settings = Settings.from_env()
    store = open_store(settings, None, create=False)
    if not settings.record_store.startswith("file://"):
        from .ice import resolve_credentials  # imports no SDK

        try:
            credentials = resolve_credentials(None)
        except ConfigError:
            raise ConfigError(f"reading {store.describe()} needs credentials allowed to read it: set "
                              "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (and "
                              "ALIBABA_CLOUD_SECURITY_TOKEN with STS credentials)") from None
        store.bind(credentials)
    return store


def _invoke(event: Any, args: argparse.Namespace, out: TextIO, *, job_ids: Sequence[str] = ()) -> int:
    """The event through the function's own handler, as a local invocation.

    A command-line process is not a cold FC instance: the ICE client is built first, so an HTTP
    callback is looked up at once (not left to the sweep, nor handed back to a trigger). Exit 1
    when the handler raised, answered an HTTP error, or could not reach ICE for a job
    (``unreached_count``); 2 when it refused the event (``BadRequest``, HTTP 400).
    """
    import index  # the FC edge: function/index.py, beside this package

    check_store_setting(Settings.from_env())  # a malformed RECORD_STORE is named before credentials are asked for
    context = SimpleNamespace(request_id=f"cli-{uuid.uuid4()}", credentials=None,
                              function=SimpleNamespace(name="ice-upload-sync", handler="index.handler",
                                                       timeout="300"))
    raw = event if isinstance(event, (bytes, str)) else json.dumps(event)
    with _function_logs(args.verbose, index):
        index.initialize(context)
        if not args.verbose:
            logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
        app = index._app
        app.gateway.prepare()
        try:
            answer = index.handler(raw.encode() if isinstance(raw, str) else raw, context)
        except SyncIncomplete as exc:
            _show_answer(exc.summary, args, out, _job_states(app.store, job_ids, exc.summary))
            raise Failure(_with_ice_error(str(exc), exc.summary)) from None
    status = answer.get("statusCode") if isinstance(answer, dict) else None
    summary = answer if isinstance(answer, dict) else {}
    if isinstance(status, int):
        try:
            summary = json.loads(answer.get("body") or "{}")
        except ValueError:
            summary = {}
        summary = summary if isinstance(summary, dict) else {}
    _show_answer(answer, args, out, _job_states(app.store, job_ids, summary))
    if isinstance(status, int) and status >= 400:
        reason = f"the handler answered HTTP {status}: {summary.get('error') or 'see the answer above'}"
        if status in (400, 405, 413):  # the event was refused, nothing was written: bad input
            raise BadRequest(reason)
        raise Failure(reason)
    unreached = summary.get("unreached_count") or 0
    if unreached:
        shown = ", ".join(map(str, (summary.get("unreached") or [])[:10])) + (" ..." if unreached > 10 else "")
        raise Failure(_with_ice_error(f"{unreached} job(s) could not be looked up in ICE: {shown}", summary))
    return 0


def _with_ice_error(message: str, summary: Dict[str, Any]) -> str:
    """The message, and the first error ICE gave this invocation when the message does not say it already."""
    ice_error = summary.get("ice_error")
    return f"{message}; ICE: {ice_error}" if ice_error and str(ice_error) not in message else message


def _job_states(store: RecordStore, job_ids: Sequence[str], summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """What the store holds now for each job ``check`` was asked about, and why when it holds nothing new."""
    # why a job may hold nothing new, most telling first (a job ICE did not answer is failed or deferred too)
    reasons = [("unreached", "ICE not reached"), ("failed", "not recorded"), ("deferred", "left to the sweep"),
               ("not_found", "unknown to ICE")]
    listed = {key: set(map(str, summary.get(key) or ())) for key, _ in reasons}
    states = []
    for job_id in job_ids:
        try:
            record = store.load(job_id)
        except IceUploadSyncError:  # named by the handler's own failure for this job
            states.append({"job_id": job_id, "state": None, "ice_status": None, "updated_at": None,
                           "note": "unreadable record"})
            continue
        note = next((text for key, text in reasons if job_id in listed[key]), None if record else "no record")
        states.append({"job_id": job_id, "state": record.state if record else None,
                       "ice_status": record.ice_status if record else None,
                       "updated_at": record.updated_at if record else None, "note": note})
    return states


class _NotTheHandlersLines(logging.Filter):
    """The handler's own JSON lines (its summary, a refused event): the command prints the answer
    and the error itself, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not isinstance(getattr(record, "fields", None), dict)


@contextlib.contextmanager
def _function_logs(verbose: bool, index: Any) -> Iterator[None]:
    """The function's log lines that say what the command prints anyway, left out unless ``--verbose``:
    the handler's JSON lines, and the set-up warnings meant for an FC instance (CALLBACK_AUTH_KEY)."""
    if verbose:
        yield
        return
    package, setup = logging.getLogger("ice_upload_sync"), index.setup_logger
    level = package.level
    handlers_lines = _NotTheHandlersLines()
    package.addFilter(handlers_lines)
    setup.addFilter(_drop_every_record)
    try:
        yield
    finally:
        package.removeFilter(handlers_lines)
        setup.removeFilter(_drop_every_record)
        package.setLevel(level)


def _drop_every_record(record: logging.LogRecord) -> bool:
    return False


def _show_answer(answer: Any, args: argparse.Namespace, out: TextIO,
                 jobs: Sequence[Dict[str, Any]] = ()) -> None:
    if args.json or not isinstance(answer, dict):
        _print_json({**answer, "jobs": list(jobs)} if jobs and isinstance(answer, dict) else answer, out)
        return
    if "statusCode" in answer:
        out.write(f"HTTP {answer['statusCode']}\n")
        try:
            answer = json.loads(answer.get("body") or "{}")
        except ValueError:
            return
        if not isinstance(answer, dict):
            return
    for key, value in answer.items():
        # ``complete`` says whether a sweep got through its listing: worth a line only when it did not
        # (a "complete: True" beside a job ICE never answered reads as all is well)
        if key == "complete":
            if value is not False:
                continue
        elif value in (None, [], 0, False) and key not in ("checked", "written"):
            continue
        if key == "ice_error":  # the command's error line says it (`_with_ice_error`)
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else _text(value)
        out.write(_wrap(f"{key}: {text}") + "\n")
    if jobs:
        _print_table(jobs, JOB_COLUMNS, out)


def _json_or_base64(value: Any) -> Any:
    """JSON, else base64 of JSON, nested no deeper than the function takes an event (``EVENT_DEPTH``)."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    try:
        return jsontext.loads(text, max_depth=EVENT_DEPTH)
    except jsontext.TooDeep as exc:
        raise BadRequest(f"the file is JSON {exc}: no event is") from None
    except ValueError:
        pass
    try:
        return jsontext.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"), max_depth=EVENT_DEPTH)
    except jsontext.TooDeep as exc:
        raise BadRequest(f"the file is base64 of JSON {exc}: no event is") from None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("the file is neither an event nor a failure-destination message (not JSON, "
                         "nor base64 of JSON)") from None


_FRACTION = re.compile(r"(:[0-9]{2})[.,][0-9]+")


def _moment(value: Any) -> Optional[datetime]:
    """A time as this function or ICE writes it, or in ISO 8601 (a date alone is that day's start;
    no offset means UTC); None for anything else, quietly: a read command reports, it does not warn."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    plain = plain_ice_time(text)
    if plain is not None:
        return parse_time(plain)
    text = _FRACTION.sub(r"\1", text, count=1)  # Python 3.9 reads only 3 or 6 digits of a second's fraction
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _since(value: str) -> datetime:
    moment = _moment(value)
    if moment is None:
        raise UsageError(f"--since must be a date or a time in ISO 8601 (UTC unless it has an offset), such as "
                         f"2026-12-01 or 2026-12-01T08:00:00Z, got {value!r}")
    return moment


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _wrap(text: str) -> str:
    """``text`` over lines of at most ``WIDTH`` columns, continued with an indent; a word (a job ID,
    a URL) is never cut, even when it alone is longer than a line."""
    return textwrap.fill(text, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False)


def _print_table(rows: Iterable[Dict[str, Any]], columns: Sequence[Tuple[str, int]], out: TextIO) -> None:
    """Columns cut to their width with ``~``, except the first, the job ID: it is printed whole."""
    out.write(" ".join(name.ljust(width) for name, width in columns).rstrip() + "\n")
    out.write(" ".join("-" * width for _, width in columns) + "\n")
    for row in rows:
        cells = [_text(row.get(name)) if index == 0 else _fit(_text(row.get(name)), width)
                 for index, (name, width) in enumerate(columns)]
        out.write(" ".join(cell.ljust(width) for cell, (_, width) in zip(cells, columns)).rstrip() + "\n")


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ice-upload-sync", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument("--verbose", action="store_true", help="show the function's log lines")
    # the same flags after the command; SUPPRESS keeps a flag given before it from being reset
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for scripts")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the function's log lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace, TextIO], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    command("get", cmd_get, "one job's record").add_argument("job_id")
    listing = command("list", cmd_list, "records in job_id order, a page at a time")
    listing.add_argument("--state", help="only this state (" + ", ".join(STATES) + ")")
    listing.add_argument("--since", help="only records updated at or after this time (ISO 8601, UTC unless it "
                         "has an offset; a date alone is that day's start)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--after", help="start after this job ID (the previous page's last)")
    command("stats", cmd_stats, "records per state, the backlog and its oldest job")
    command("check", cmd_check, "look jobs up in ICE now, record them and show what was recorded"
            ).add_argument("job_ids", nargs="+")
    command("sweep", cmd_sweep, "sweep every tracked job, as the timer does").add_argument(
        "--shard", help="only shard i/K, e.g. 0/4")
    command("replay", cmd_replay, "run an event file, or a failure-destination message, through the handler"
            ).add_argument("file")
    sign = command("sign-callback", cmd_sign_callback, "print a signed HTTP-trigger event for an ICE callback body")
    sign.add_argument("--url", required=True, help="the CallbackURL configured in ICE")
    sign.add_argument("--key", required=True, help="the callback AuthKey")
    sign.add_argument("--timestamp", type=int, help="Unix seconds (default: now)")
    sign.add_argument("body_file", help="a file holding the callback's JSON body")
    command("create-tables", cmd_create_tables, "create the Tablestore tables RECORD_STORE names")
    callback = command("ice-callback", cmd_ice_callback, "ICE's event callback setting in ICE_REGION: show it, "
                       "or set it merged into what ICE holds")
    callback_actions = callback.add_subparsers(dest="callback_command", required=True, metavar="ACTION")
    callback_actions.add_parser("show", parents=[common], help="the setting, its AuthKey masked",
                                description="ICE's callback setting (GetEventCallback), its AuthKey masked")
    setting = callback_actions.add_parser(
        "set", parents=[common], help="add UploadByURLComplete, keeping the other event types",
        description="Reads ICE's setting, adds UploadByURLComplete to its event list (every other event type is "
                    "kept), writes it with SetEventCallback and reads it back. Another URL or queue is replaced "
                    "only with --replace. Without --key or --new-key an AuthKey ICE holds is kept.")
    destination = setting.add_mutually_exclusive_group(required=True)
    destination.add_argument("--url", help="HTTP callbacks to this URL (the function's HTTP trigger, CALLBACK_URL)")
    destination.add_argument("--queue", metavar="ice-callback-NAME", help="MNS callbacks to this queue")
    key = setting.add_mutually_exclusive_group()
    key.add_argument("--key", help="the AuthKey ICE signs with (at most 32 letters and digits, upper- and "
                     "lower-case and digits); the function's CALLBACK_AUTH_KEY")
    key.add_argument("--new-key", action="store_true", help="make an AuthKey ICE accepts; it is printed once")
    setting.add_argument("--replace", action="store_true",
                         help="replace another URL or queue (what it loses is printed)")
    setting.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    from .smoke import DEFAULT_INTERVAL_S, DEFAULT_INVOKE_COMMAND, DEFAULT_TIMEOUT_S, VIAS  # imports no SDK

    smoke = command("smoke", cmd_smoke, "prove a deployment: UploadMediaByURL, the job handed to the deployed "
                    "function (or left to ICE's callback), then its record awaited in RECORD_STORE")
    smoke.add_argument("--url", required=True, help="an audio or video file ICE can download (http(s)://...)")
    smoke.add_argument("--via", choices=VIAS, default=VIAS[0], help="invoke: hand ICE's answer to the function "
                       "with --invoke-command (the default); callback: invoke nothing, wait for ICE's callback")
    smoke.add_argument("--invoke-command", metavar="CMD", help="run with {event_file} replaced by a file holding "
                       f"ICE's answer, split into words, no shell (default: {DEFAULT_INVOKE_COMMAND})")
    smoke.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds to wait for the final record (default {DEFAULT_TIMEOUT_S:g})")
    smoke.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                       help=f"seconds between looks at the store (default {DEFAULT_INTERVAL_S:g})")
    smoke.add_argument("--user-data", metavar="JSON", help="UploadMediaByURL's UserData, a JSON object")
    return parser


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args, out or sys.stdout)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except BadRequest as exc:  # the handler refused the event (or the file holds none): nothing was written
        print(f"ice-upload-sync {args.command}: {exc}", file=sys.stderr)
        return 2
    except (Failure, IceUploadSyncError) as exc:
        print(f"ice-upload-sync {args.command}: {exc}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
