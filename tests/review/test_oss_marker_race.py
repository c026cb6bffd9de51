"""OSS: a sweep's unchanged answer settles the marker without the job's lock. If a callback makes
the job final between the sweep's record read and its marker check, the sweep re-creates the
pending marker of a job that is now final (wrong state until a later sweep spends a lookup on it)."""
import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.ice import Credentials
from ice_upload_sync.records import JobRecord
from ice_upload_sync.stores import Tracking, open_store

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET

JOB = "dd00000000000000000000000000d001"
T = "2026-11-25T03:00:00Z"


def rec(state, **kw):
    return JobRecord(job_id=JOB, state=state, source="timer", ice_request_id="r", first_seen_at=T, updated_at=T,
                     ice_status={"processing": "UPLOADING", "succeeded": "Normal"}[state], **kw)


def test_unlocked_unchanged_save_recreates_the_marker_of_a_job_just_made_final(fc):
    if fc.store_kind != "oss":
        pytest.skip("OSS only")
    sweep_store = fc.store
    callback_store = open_store(Settings.from_env(), Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    sweep_store.track(Tracking(JOB, T, "callback"))
    sweep_store.save(rec("processing"))
    real_tracking = type(sweep_store).tracking
    fired = []

    def tracking_after_a_concurrent_final_write(self, job_id):
        if self is sweep_store and not fired:
            fired.append(1)
            callback_store.save(rec("succeeded", completed_at=T))  # another instance, meanwhile
        return real_tracking(self, job_id)

    fc.monkeypatch.setattr(type(sweep_store), "tracking", tracking_after_a_concurrent_final_write)
    result = sweep_store.save(rec("processing"))  # the sweep's stale, unchanged answer
    assert not result.changed and fired
    print("record:", fc.record(JOB)["state"], "marker:", fc.marker(JOB))
    assert fc.record(JOB)["state"] == "succeeded"
    assert fc.marker(JOB) is None, "pending marker re-created for a final job"
