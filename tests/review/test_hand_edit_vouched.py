"""A record edited in the store by another writer (a console UpdateRow, a script) while ICE's
answer stays the same. File and OSS: the next sweep compares the stored record with ICE's answer
and writes ICE's truth back. Tablestore: the row's `answer` digest and `info` fingerprint columns
are left as they were by a partial update, so the sweep vouches for the edited row and it stays
wrong (RecordStore.answer_digests: vouching requires that no write "by anyone (... a hand edit ...)"
happened since)."""
import json
from datetime import datetime, timedelta, timezone

from tests.scenario import load_event

JOB = "cc00000000000000000000000000c001"
URL = "https://media.example.com/c.mp4"


def test_a_record_edited_behind_the_function_is_repaired_by_the_next_sweep(fc, ice):
    created = (datetime.now(timezone.utc) - timedelta(minutes=20)).strftime("%Y-%m-%d %H:%M:%S")
    ice.put_job(JOB, Status="UPLOADING", CreationTime=created, UploadURL=URL, MediaId="m-real")
    fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})
    fc.invoke(load_event("timer-sweep.json"))  # a second look binds the answer digest everywhere
    assert fc.record(JOB)["media_id"] == "m-real"
    # another writer changes the record (media_id and state) behind the function's back
    if fc.store_kind == "tablestore":
        fc.view.server.set_columns(fc.view.table, [("job_id", JOB)], media_id="m-wrong", state="pending")
    elif fc.store_kind == "file":
        path = fc.view.root / "jobs" / f"{JOB}.json"
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "media_id": "m-wrong", "state": "pending"}, indent=1))
    else:
        data = fc.view.record(JOB)
        fc.view.bucket.put_object(f"{fc.view.prefix}/jobs/{JOB}.json",
                                  json.dumps({**data, "media_id": "m-wrong", "state": "pending"}).encode())
    answer = fc.invoke(load_event("timer-sweep.json"))
    print(fc.store_kind, "sweep written/unchanged:", answer["written"], answer["unchanged"], "->",
          fc.record(JOB)["media_id"])
    assert fc.record(JOB)["media_id"] == "m-real" and fc.record(JOB)["state"] == "processing"
