"""``ice-upload-sync smoke``: a deployment proved end to end, from a real upload job to its record.

1. ``UploadMediaByURL`` through the official SDK, on the ICE gateway's client (``ICE_REGION``,
   ``ICE_ENDPOINT``, the ``ALIBABA_CLOUD_*`` credentials), for the user's media URL: ICE makes a job.
2. ``--via invoke`` (the default): ICE's answer ``{"RequestId", "UploadJobs": [...]}`` (a forwarded
   response, a direct event of contract section 2) goes into a file, handed to the deployed function the
   way the README's direct invocation does: ``s invoke -t template.yml --event-file FILE``, or any
   ``--invoke-command`` (split into words, ``{event_file}`` replaced, no shell). ``--via callback``:
   nothing is invoked; ICE's ``UploadByURLComplete`` callback must reach the function by itself.
3. The record store (``RECORD_STORE``) is read as ``get`` reads it (opened read-only: nothing is ever
   created) every ``--interval`` seconds until the job's record is final or ``--timeout`` has passed;
   each state seen is printed with the time since ICE made the job, and the time to the final record.

Exit 0 only for a final ``succeeded`` record. Every other end is a :class:`SmokeFailed` that says what
to check. The wires (ICE, the invoke command, the store) come in as :class:`Steps`, and the clock and
the sleep are arguments, so each decision here is testable without them.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple
from urllib.parse import quote, urlsplit

from . import jsontext
from .clients import unwrapped
from .config import Settings
from .errors import BadRequest, ConfigError, StoreError
from .events import validate_job_ids
from .ice import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, Credentials, IceGateway, Refusal, permanent_fix, resolve_credentials
from .records import JobRecord
from .redact import first_line
from .stores import RecordStore, check_store_setting

VIA_INVOKE, VIA_CALLBACK = "invoke", "callback"
VIAS = (VIA_INVOKE, VIA_CALLBACK)
EVENT_FILE = "{event_file}"
DEFAULT_INVOKE_COMMAND = "s invoke -t template.yml --event-file {event_file}"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_INTERVAL_S = 2.0
INVOKE_TIMEOUT_S = 900.0  # the invoke command's bound when --timeout is shorter: a cold start and a slow invocation
OUTPUT_LINES = 40  # of the invoke command's output, the last ones are shown

# what the store holds for the job, besides a record's own state
ABSENT = "absent"  # neither a record nor a pending marker
TRACKED = "tracked"  # a pending marker (the function has the job), no record yet
UNREADABLE = "unreadable"  # the store could not be read this time (a fresh store may not exist yet)

UPLOAD_PERMISSION = ("the caller may not upload: grant ice:UploadMediaByURL to the RAM user of "
                     "ALIBABA_CLOUD_ACCESS_KEY_ID (docs: the operator's policy)")
SERVERLESS_DEVS = ("install Serverless Devs (npm install -g @serverless-devs/s), add the deploying account's keys "
                   "(s config add), and run smoke from the folder holding template.yml")


class BadUsage(ValueError):
    """The command line asks for something smoke cannot do (exit 2); nothing was sent anywhere."""


class SmokeFailed(Exception):
    """The smoke test failed (exit 1); the message says what to check."""


# ---------------------------------------------------------------- what the command is asked


@dataclass(frozen=True)
class SmokeOptions:
    media_url: str
    via: str = VIA_INVOKE
    invoke_command: str = DEFAULT_INVOKE_COMMAND
    timeout_s: float = DEFAULT_TIMEOUT_S
    interval_s: float = DEFAULT_INTERVAL_S
    user_data: Optional[str] = None  # UploadMediaByURL's UserData, a JSON object's text

    @classmethod
    def build(cls, media_url: Optional[str], *, via: str = VIA_INVOKE, invoke_command: Optional[str] = None,
              timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = DEFAULT_INTERVAL_S,
              user_data: Optional[str] = None) -> SmokeOptions:
        """The options, checked: ``BadUsage`` before any job is made."""
        if via not in VIAS:
            raise BadUsage(f"--via must be one of {', '.join(VIAS)}, not {via!r}")
        if invoke_command is not None and via != VIA_INVOKE:
            raise BadUsage("--invoke-command is for --via invoke: with --via callback nothing is invoked")
        command = DEFAULT_INVOKE_COMMAND if invoke_command is None else invoke_command
        invoke_argv(command, "event.json")  # a command that cannot be split is refused now
        for name, value in (("--timeout", timeout_s), ("--interval", interval_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BadUsage(f"{name} must be a positive number of seconds, got {value!r}")
        return cls(check_media_url(media_url), via, command, float(timeout_s), float(interval_s),
                   check_user_data(user_data))


def check_media_url(url: Optional[str]) -> str:
    text = url.strip() if isinstance(url, str) else ""
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadUsage(f"--url must be the http(s) URL of an audio or video file that ICE can download, got {url!r}")
    return text


def check_user_data(text: Optional[str]) -> Optional[str]:
    """UploadMediaByURL's UserData: ICE takes a JSON object (``{"Extend": {...}}``); sent as given."""
    if text is None:
        return None
    try:
        value = jsontext.loads(text)
    except ValueError as exc:
        raise BadUsage(f"--user-data must be a JSON object, such as '{{\"Extend\": {{\"test\": \"smoke\"}}}}': "
                       f"{exc}") from None
    if not isinstance(value, dict):
        raise BadUsage(f"--user-data must be a JSON object, not {type(value).__name__}")
    return text


# ---------------------------------------------------------------- step 1: the upload job


@dataclass(frozen=True)
class UploadJob:
    """The job ICE made, as UploadMediaByURL answered it."""

    job_id: str
    media_id: Optional[str]
    source_url: str
    request_id: str

    def direct_event(self) -> Dict[str, Any]:
        """ICE's answer, as the README forwards it to the function (the sample upload-media-by-url-response.json)."""
        job: Dict[str, Any] = {"JobId": self.job_id, "SourceURL": self.source_url}
        if self.media_id:
            job["MediaId"] = self.media_id
        return {"RequestId": self.request_id, "UploadJobs": [job]}


class IceUploader:
    """UploadMediaByURL through the official SDK, on the gateway's client: one construction (endpoint,
    region, credentials, timeouts) for every ICE call this package makes."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self._gateway = IceGateway(settings)
        self._gateway.bind(credentials)

    def upload(self, media_url: str, user_data: Optional[str]) -> UploadJob:
        client = self._gateway.client()  # imports the SDK, as the gateway's first lookup does
        from alibabacloud_ice20201109 import models
        from alibabacloud_tea_openapi import exceptions
        from darabonba.runtime import RuntimeOptions

        # the URL is URL-encoded: UploadURLs is a comma-separated list
        request = models.UploadMediaByURLRequest(upload_urls=quote(media_url, safe=""), user_data=user_data)
        # never retried: a call that reached ICE made a job, and a second call would make another
        runtime = RuntimeOptions(autoretry=False, connect_timeout=int(CONNECT_TIMEOUT_S * 1000),
                                 read_timeout=int(READ_TIMEOUT_S * 1000))
        try:
            response = client.upload_media_by_urlwith_options(request, runtime)
        except Exception as exc:  # the SDK's errors, translated at this boundary
            raise SmokeFailed(self._refusal(exc, exceptions)) from None
        body = response.body
        request_id = str(getattr(body, "request_id", None) or "")
        jobs = [job for job in (getattr(body, "upload_jobs", None) or ()) if job is not None and job.job_id]
        if not jobs:
            raise SmokeFailed(f"ICE answered UploadMediaByURL with no job (request {request_id or '-'}): "
                              "check --url (an audio or video file ICE can download)")
        job = jobs[0]
        return UploadJob(str(job.job_id), str(job.media_id) if job.media_id else None,
                         str(job.source_url or media_url), request_id)

    def _refusal(self, exc: Exception, exceptions: Any) -> str:
        where = f"ICE in {self.settings.ice_region} ({self.settings.ice_endpoint.host})"
        if isinstance(exc, exceptions.AlibabaCloudException):
            refusal = Refusal.of(exc)
            return refused_message(refusal.code, refusal.status,
                                   refusal.said or first_line(getattr(exc, "message", "") or ""),
                                   refusal.request_id, where)
        _inner, detail = unwrapped(exc)
        return f"UploadMediaByURL got no answer from {where} ({detail}): check ICE_REGION / ICE_ENDPOINT"


def refused_message(code: str, status: int, said: str, request_id: Optional[str], where: str) -> str:
    """ICE's refusal of UploadMediaByURL in words: its code and message, and what to fix when that is known."""
    text = f"{where} refused UploadMediaByURL: HTTP {status} {code or '(no code)'}"
    text += f": {said}" if said else ""
    text += f" (request {request_id})" if request_id else ""
    hint = refusal_hint(code, status)
    return f"{text}; {hint}" if hint else text


def refusal_hint(code: str, status: int) -> Optional[str]:
    if code.startswith(("Forbidden", "NoPermission")):
        return UPLOAD_PERMISSION
    fix = permanent_fix(code, 0)  # what the code alone says: credentials, the clock, activation
    if fix is not None:
        return fix
    if status in (401, 403):
        return UPLOAD_PERMISSION
    if code.startswith(("InvalidParameter", "MissingParameter")):
        return "check --url: ICE downloads it from the Internet (an audio or video file, its extension in the URL)"
    if code.startswith("Throttling") or status >= 500:
        return "ICE is busy or failing now: try again in a minute (nothing was uploaded)"
    return None


# ---------------------------------------------------------------- step 2: the job handed to the function


@dataclass(frozen=True)
class CommandResult:
    argv: Tuple[str, ...]
    exit_status: int
    output: str  # stdout and stderr, interleaved as the command wrote them


def invoke_argv(template: str, event_file: str) -> List[str]:
    """``--invoke-command`` split into words as a shell would (no shell runs it), ``{event_file}`` replaced in
    each word: a path with spaces stays one argument."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise BadUsage(f"--invoke-command cannot be split into words ({exc}): {template!r}") from None
    if not words:
        raise BadUsage("--invoke-command is empty")
    return [word.replace(EVENT_FILE, event_file) for word in words]


def run_command(argv: Sequence[str], timeout_s: float) -> CommandResult:
    """Runs the command, its output captured; ``SmokeFailed`` when it cannot run or does not end in time."""
    try:
        done = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise CommandMissing(argv[0]) from None
    except PermissionError:
        raise CommandMissing(argv[0], "is not executable") from None
    except subprocess.TimeoutExpired:
        raise SmokeFailed(f"the invoke command did not end within {timeout_s:g} s: {shlex.join(argv)}") from None
    return CommandResult(tuple(argv), done.returncode, done.stdout.decode("utf-8", errors="replace"))


class CommandMissing(SmokeFailed):
    """The invoke command's program could not be run."""

    def __init__(self, program: str, why: str = "was not found") -> None:
        super().__init__(program, why)
        self.program, self.why = program, why


def missing_program_message(program: str, why: str, job_id: Optional[str]) -> str:
    """``job_id`` None: found missing before UploadMediaByURL, so no job was made."""
    fix = SERVERLESS_DEVS if os.path.basename(program) == "s" else "check --invoke-command"
    left = _job_left(job_id) if job_id is not None else "No job was made in ICE."
    return (f"the invoke command's program {program!r} {why}: {fix}; or pass --invoke-command, or --via callback to "
            f"wait for ICE's callback instead. {left}")


def invoke_failed_message(result: CommandResult, job_id: str) -> str:
    return (f"the invoke command exited with status {result.exit_status} ({shlex.join(result.argv)}; its output is "
            f"above): check that Serverless Devs has the deploying account's keys (s config get), that you run "
            f"it from the folder holding template.yml and that the function is deployed (s info -t template.yml). "
            f"{_job_left(job_id)}")


def _job_left(job_id: str) -> str:
    return (f"Job {job_id} exists in ICE all the same: ICE's callback may still record it "
            f"(ice-upload-sync get {job_id}).")


# ---------------------------------------------------------------- step 3: the record


@dataclass(frozen=True)
class Seen:
    """What the store held for the job at one look: ``state`` is ABSENT, TRACKED, UNREADABLE or the record's."""

    state: str
    record: Optional[JobRecord] = None
    error: Optional[str] = None

    @property
    def final(self) -> bool:
        return self.record is not None and self.record.final

    @property
    def change_key(self) -> Tuple[str, Optional[str], Optional[str]]:
        """What makes two looks different enough to print: the state, ICE's word, the store's error."""
        return self.state, self.record.ice_status if self.record else None, self.error

    def describe(self) -> str:
        if self.state == ABSENT:
            return "no record yet, not tracked"
        if self.state == TRACKED:
            return "tracked (the function has the job), no record yet"
        if self.state == UNREADABLE:
            return f"the store cannot be read (yet): {self.error}"
        record = self.record
        assert record is not None
        details = [f"ICE status {record.ice_status}"] if record.ice_status else []
        if record.error_code or record.error_message:
            details.append(f"error {record.error_code or '-'}: {record.error_message or '-'}")
        if record.state == "succeeded" and record.media_id:
            details.append(f"media {record.media_id}")
        details.append(f"source {record.source}")
        return f"{record.state} ({', '.join(details)})"

    def to_dict(self, elapsed_s: float) -> Dict[str, Any]:
        return {"elapsed_s": round(elapsed_s, 3), "state": self.state,
                "ice_status": self.record.ice_status if self.record else None, "error": self.error}


class StoreReader:
    """The job's state in the store, read as ``get`` reads it. The store is opened (read-only) at the first
    look, and at every look until it opens: a store no job was ever recorded in may not exist yet."""

    def __init__(self, open_store: Callable[[], RecordStore], job_id: str) -> None:
        self._open_store = open_store
        self._store: Optional[RecordStore] = None
        self.job_id = job_id

    def __call__(self) -> Seen:
        try:
            if self._store is None:
                self._store = self._open_store()
            record = self._store.load(self.job_id)
            if record is not None:
                return Seen(record.state, record)
            return Seen(TRACKED if self._store.tracking(self.job_id) is not None else ABSENT)
        except StoreError as exc:
            return Seen(UNREADABLE, error=str(exc))


def wait_for_record(read: Callable[[], Seen], *, since: float, timeout_s: float, interval_s: float,
                    report: Callable[[float, Seen], None], clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> Tuple[Seen, float]:
    """Looks every ``interval_s`` until the record is final or ``timeout_s`` have passed since the first look.

    ``report(elapsed, seen)`` hears the first look and every change; elapsed times count from ``since``
    (when ICE answered). Returns the last look and its elapsed time.
    """
    deadline = clock() + timeout_s
    last: Optional[Tuple[str, Optional[str], Optional[str]]] = None
    while True:
        seen = read()
        now = clock()
        if seen.change_key != last:
            report(now - since, seen)
            last = seen.change_key
        if seen.final or now >= deadline:
            return seen, now - since
        sleep(max(0.0, min(interval_s, deadline - now)))


def verdict(seen: Seen, job_id: str, *, via: str, timeout_s: float, store: str, region: str) -> Optional[str]:
    """None when the smoke test passed (a final ``succeeded`` record); otherwise why not, and what to check."""
    record = seen.record
    if record is not None and record.final:
        if record.state == "succeeded":
            return None
        error = f"{record.error_code or '-'}: {record.error_message or '-'}"
        if record.state == "failed":
            return (f"job {job_id} failed in ICE ({error}; ICE status {record.ice_status or '-'}): the function "
                    f"recorded it, but ICE could not upload the media: check --url (ICE downloads it from the "
                    f"Internet) and try again")
        return (f"the function recorded job {job_id} as {record.state} ({error}): ICE did not finish it within "
                f"MAX_TRACK_AGE_HOURS")
    if record is not None and record.state == "not_found":
        return (f"ICE told the function it knows no job {job_id} (the record says not_found after {timeout_s:g} s), "
                f"although this command made it in {region}: the function's ICE_REGION / ICE_ENDPOINT and its "
                f"account must be this command's")
    if record is not None:  # pending or processing
        return (f"job {job_id} is still {record.state} (ICE status {record.ice_status or '-'}) after {timeout_s:g} s: "
                f"ICE has not finished the upload, or the function has not heard that it has: check the callback "
                f"setting (ice-upload-sync ice-callback show) and the sweep timer (s logs -t template.yml); a large "
                f"file may need a longer --timeout; ice-upload-sync check {job_id} looks it up now")
    why = {TRACKED: " (it tracks the job: its lookups did not answer, see its logs)",
           UNREADABLE: f" (the store could not be read: {seen.error})"}.get(seen.state, "")
    if via == VIA_INVOKE and seen.state == ABSENT:
        why += " (the invocation above did not even track it)"
    local = ", a folder on this machine: only a function running here writes there" if store.startswith(
        "file://") else ""
    return (f"the function never wrote the record of job {job_id} in {timeout_s:g} s{why}: check s logs -t "
            f"template.yml, the callback setting (ice-upload-sync ice-callback show: ICE's CallbackURL must be the "
            f"function's HTTP trigger, with UploadByURLComplete among its events), and that RECORD_STORE here "
            f"({store}{local}) is the function's")


# ---------------------------------------------------------------- the three steps, in order


@dataclass(frozen=True)
class Steps:
    """The wires: ICE's UploadMediaByURL, the invoke command, the store's reader (one per job)."""

    upload: Callable[[str, Optional[str]], UploadJob]
    run_command: Callable[[Sequence[str], float], CommandResult]
    reader: Callable[[str], Callable[[], Seen]]
    ice: str  # where UploadMediaByURL goes, for people
    store: str  # RECORD_STORE
    region: str  # ICE_REGION
    find_program: Callable[[str], Optional[str]] = shutil.which  # the invoke command's program, before any job

    @classmethod
    def from_env(cls, open_store: Callable[[], RecordStore]) -> Steps:
        """The real wires, configured like the function (``ICE_*``, ``ALIBABA_CLOUD_*``, ``RECORD_STORE``).

        ``open_store`` opens the store to read it (the ``get`` command's way). A malformed ``RECORD_STORE``
        or missing credentials are named here, before any job is made."""
        settings = Settings.from_env()
        check_store_setting(settings)
        try:
            credentials = resolve_credentials(None)
        except ConfigError:
            raise ConfigError("smoke calls UploadMediaByURL and reads RECORD_STORE: set ALIBABA_CLOUD_ACCESS_KEY_ID "
                              "and ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN with STS "
                              "credentials)") from None
        uploader = IceUploader(settings, credentials)
        return cls(uploader.upload, run_command, lambda job_id: StoreReader(open_store, job_id),
                   f"{settings.ice_region} ({settings.ice_endpoint.url})", settings.record_store, settings.ice_region)


@dataclass
class _Report:
    """What the command prints: lines as it goes, or one JSON object at the end (``--json``)."""

    out: TextIO
    as_json: bool
    summary: Dict[str, Any] = field(default_factory=dict)

    def line(self, text: str = "") -> None:
        if not self.as_json:
            self.out.write(text + "\n")
            self.out.flush()

    def end(self, error: Optional[str]) -> None:
        if self.as_json:
            self.summary.update(ok=error is None, error=error)
            self.out.write(json.dumps(self.summary, ensure_ascii=False, indent=2) + "\n")


def run(options: SmokeOptions, steps: Steps, out: TextIO, *, as_json: bool = False,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """The three steps; 0 for a final ``succeeded`` record, ``SmokeFailed`` for anything else."""
    report = _Report(out, as_json, {"via": options.via, "media_url": options.media_url})
    try:
        if options.via == VIA_INVOKE:  # a job made for a command that cannot run is an upload for nothing
            program = invoke_argv(options.invoke_command, "")[0]
            if steps.find_program(program) is None:
                raise SmokeFailed(missing_program_message(program, "was not found", None))
        job = make_job(options, steps, report)
        created = clock()
        if options.via == VIA_INVOKE:
            hand_over(job, options, steps, report)
        else:
            report.line("2. nothing invoked: waiting for ICE's UploadByURLComplete callback to reach the function")
        seen, elapsed = watch(job, options, steps, report, since=created, clock=clock, sleep=sleep)
    except SmokeFailed as failure:
        report.end(str(failure))
        raise
    problem = verdict(seen, job.job_id, via=options.via, timeout_s=options.timeout_s, store=steps.store,
                      region=steps.region)
    report.summary.update(record=seen.record.to_dict() if seen.record else None,
                          time_to_record_s=round(elapsed, 3) if problem is None else None)
    if problem is None:
        report.line(f"time to record: {elapsed:.1f} s from UploadMediaByURL's answer to the final record (succeeded)")
    report.end(problem)
    if problem is not None:
        raise SmokeFailed(problem)
    return 0


def make_job(options: SmokeOptions, steps: Steps, report: _Report) -> UploadJob:
    report.line(f"1. UploadMediaByURL, ICE {steps.ice}: {options.media_url}")
    job = steps.upload(options.media_url, options.user_data)
    try:
        validate_job_ids([job.job_id])  # it names a file or an object in the store
    except BadRequest as exc:
        raise SmokeFailed(f"ICE answered a job ID no store can hold: {exc}") from None
    report.summary.update(job_id=job.job_id, media_id=job.media_id, ice_request_id=job.request_id)
    report.line(f"   JobId    {job.job_id}")
    report.line(f"   MediaId  {job.media_id or '-'}   (request {job.request_id or '-'})")
    return job


def hand_over(job: UploadJob, options: SmokeOptions, steps: Steps, report: _Report) -> CommandResult:
    """The job, as ICE's answer, to the function: the event in a temporary file, the invoke command run on it."""
    handle, event_file = tempfile.mkstemp(prefix="ice-upload-sync-smoke-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as writer:
            json.dump(job.direct_event(), writer)
        argv = invoke_argv(options.invoke_command, event_file)
        report.line(f"2. the job handed to the function: {shlex.join(argv)}")
        report.line(f"   event    {json.dumps(job.direct_event())}")
        try:
            result = steps.run_command(argv, max(options.timeout_s, INVOKE_TIMEOUT_S))
        except CommandMissing as missing:
            raise SmokeFailed(missing_program_message(missing.program, missing.why, job.job_id)) from None
    finally:
        os.unlink(event_file)
    report.summary["invoke"] = {"argv": list(result.argv), "exit_status": result.exit_status, "output": result.output}
    lines = result.output.rstrip("\n").splitlines()
    if len(lines) > OUTPUT_LINES:
        report.line(f"   | ... {len(lines) - OUTPUT_LINES} line(s) before these")
    for text in lines[-OUTPUT_LINES:]:
        report.line(f"   | {text}")
    report.line(f"   exit status {result.exit_status}")
    if result.exit_status != 0:
        raise SmokeFailed(invoke_failed_message(result, job.job_id))
    return result


def watch(job: UploadJob, options: SmokeOptions, steps: Steps, report: _Report, *, since: float,
          clock: Callable[[], float], sleep: Callable[[float], None]) -> Tuple[Seen, float]:
    report.line(f"3. waiting for the record of job {job.job_id} in {steps.store} "
                f"(a look every {options.interval_s:g} s, up to {options.timeout_s:g} s)")
    states: List[Dict[str, Any]] = report.summary.setdefault("states", [])

    def seen_now(elapsed: float, seen: Seen) -> None:
        states.append(seen.to_dict(elapsed))
        report.line(f"   +{elapsed:7.1f} s  {seen.describe()}")

    return wait_for_record(steps.reader(job.job_id), since=since, timeout_s=options.timeout_s,
                           interval_s=options.interval_s, report=seen_now, clock=clock, sleep=sleep)
