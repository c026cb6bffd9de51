"""The Tablestore store and the local server under whichever tablestore SDK the interpreter has.

The suite pins 5.4.1 (FC's python3.10 runtime); run this by hand in a venv with another
version to check the store still works there, e.g. 6.x for python3.12:

    python3 -m venv /tmp/ts6 && /tmp/ts6/bin/pip install tablestore==6.4.8
    /tmp/ts6/bin/python tests/compat/check_tablestore_sdk.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-25T03:00:00Z"


def main() -> int:
    sys.path[:0] = [str(ROOT / "function"), str(ROOT)]
    import tablestore
    from ice_upload_sync.ice import Credentials
    from ice_upload_sync.records import JobRecord
    from ice_upload_sync.stores.base import Tracking
    from ice_upload_sync.stores.tablestore import TablestoreStore

    from tests.support.tablestore import TablestoreServer

    def record(job_id: str, state: str = "processing", **fields) -> JobRecord:
        return JobRecord(job_id=job_id, state=state, source="timer", ice_request_id="r", first_seen_at=NOW,
                         updated_at=NOW, **fields)

    server = TablestoreServer(instance="inst", page_rows=7)
    server.add_access_key("ak", "sk", "tok")
    with server:
        store = TablestoreStore("inst", "recs", server.endpoint, Credentials("ak", "sk", "tok"), page_size=5)
        assert store.create_tables() == ["created recs", "created recs_pending"]
        assert all(r.changed for r in store.save_many([record(f"j{n:03d}", user_data={"a": n}) for n in range(30)]))
        assert len(list(store.pending_job_ids())) == 30
        assert list(store.pending_job_ids(after="j027")) == ["j028", "j029"]
        assert store.save(record("j001", "succeeded", completed_at=NOW)).changed
        assert not store.save(record("j001", "uploading")).changed
        assert store.load("j001").state == "succeeded" and store.tracking("j001") is None
        assert store.track(Tracking("x1", NOW, "callback")) and not store.track(Tracking("x1", NOW, "callback"))
        store.save_cursor("sweep", "j010")
        assert store.load_cursor("sweep") == "j010"
        server.fail_rows_next(2)
        assert all(r.changed for r in store.save_many([record(f"k{n}", "failed", completed_at=NOW) for n in range(5)]))
        server.fail_next(1, code="OTSServerBusy")
        store.load("j002")
        print(f"tablestore {tablestore.__version__}: OK ({len(server.calls)} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
