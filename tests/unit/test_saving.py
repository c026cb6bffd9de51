"""``saving.plan_save``: what every store does for one save, as one table.

Each row: what is stored (record, marker), what arrives, and the plan expected: the record
written (or none), the event owed, the marker opened or removed, the digest bound.
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple, Optional, Tuple

import pytest
from ice_upload_sync.records import JobRecord
from ice_upload_sync.saving import plan_save
from ice_upload_sync.stores import Tracking

from tests.store_records import LATER, NOW, final, record

EARLIER = "2026-11-25T01:00:00Z"
TRACKED = Tracking("job00001", EARLIER, "direct")
ANNOUNCED = ("succeeded", "failed")

OPEN = replace(record(), answer_digest="d-open")
MOVED = replace(record(ice_status="UPLOADING", file_size=7), answer_digest="d-moved")
DONE = replace(final(), answer_digest="d-done")
DONE_LATER = final(completed_at=LATER)
EXPIRED = record(state="expired")
NO_DIGEST = record()


class Row(NamedTuple):
    stored: Optional[JobRecord]
    marker: Optional[Tracking]
    fresh: JobRecord
    written: Optional[str]  # the state written, or None: the stored record stands
    opens: bool = False
    removes: bool = False
    bind: Optional[str] = None
    owes: bool = False
    notify: Tuple[str, ...] = ()
    marker_known: bool = True
    bound: Optional[str] = None


TABLE = {
    # a job seen for the first time
    "new open job: written, marker opened first, digest bound": Row(None, None, OPEN, "processing", opens=True,
                                                                     bind="d-open"),
    "new open job already tracked: first_seen_at from the marker": Row(None, TRACKED, OPEN, "processing",
                                                                       bind="d-open"),
    "new final job, tracked: written, marker removed after": Row(None, TRACKED, DONE, "succeeded", removes=True),
    "new final job, never tracked: nothing to remove": Row(None, None, DONE, "succeeded"),
    "new final job, marker unknown: removed all the same": Row(None, None, DONE, "succeeded", removes=True,
                                                               marker_known=False),
    "new final job in an announced state: owed": Row(None, TRACKED, DONE, "succeeded", removes=True, owes=True,
                                                     notify=ANNOUNCED),
    "a record without a digest binds nothing": Row(None, TRACKED, NO_DIGEST, "processing"),
    # an open job looked at again
    "same answer, bound already: nothing at all": Row(OPEN, TRACKED, OPEN, None, bound="d-open"),
    "same answer, not bound: bound, not written": Row(OPEN, TRACKED, OPEN, None, bind="d-open"),
    "same answer, bound to another: bound again": Row(OPEN, TRACKED, OPEN, None, bind="d-open", bound="other"),
    "same answer, marker lost in a crash: opened again": Row(OPEN, None, OPEN, None, opens=True, bind="d-open"),
    "same answer, marker unknown: opened (create-only)": Row(OPEN, None, OPEN, None, opens=True,
                                                             marker_known=False, bound="d-open"),
    "new information: written and bound": Row(OPEN, TRACKED, MOVED, "processing", bind="d-moved", bound="d-open"),
    "an open record in an announced state owes nothing new": Row(OPEN, TRACKED, MOVED, "processing",
                                                                  bind="d-moved", notify=("processing",)),
    "completed: written, owed, marker removed": Row(OPEN, TRACKED, DONE, "succeeded", removes=True, owes=True,
                                                    notify=ANNOUNCED),
    "completed, nobody listening: not owed": Row(OPEN, TRACKED, DONE, "succeeded", removes=True),
    "our verdict expired: written, marker removed": Row(OPEN, TRACKED, EXPIRED, "expired", removes=True),
    # a final job
    "final stays final against a stale open answer": Row(DONE, None, OPEN, None),
    "final, its marker left by a crash: removed": Row(DONE, TRACKED, OPEN, None, removes=True),
    "the same final answer again: nothing": Row(DONE, None, DONE, None),
    "an earlier completion loses": Row(DONE_LATER, None, DONE, None),
    "the later completion wins, owing nothing new": Row(DONE, None, DONE_LATER, "succeeded", notify=ANNOUNCED),
    "expired never replaces a final record": Row(DONE, None, EXPIRED, None),
    "a real outcome replaces expired, and is owed": Row(EXPIRED, TRACKED, DONE, "succeeded", removes=True,
                                                        owes=True, notify=ANNOUNCED),
    "expired again after expired: nothing": Row(EXPIRED, None, EXPIRED, None),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=list(TABLE))
def test_plan_save(row: Row):
    plan = plan_save(row.stored, row.marker, row.fresh, row.notify, marker_known=row.marker_known, bound=row.bound)
    assert (plan.write.state if plan.write else None) == row.written
    assert plan.result.changed == (row.written is not None)
    assert (plan.open_marker is not None, plan.remove_marker) == (row.opens, row.removes)
    assert plan.bind == row.bind
    assert (plan.owe is not None, plan.result.owed) == (row.owes, row.owes)
    assert plan.idle == (row.written is None and not (row.opens or row.removes or row.bind or row.owes))


def test_what_is_kept_is_what_merge_keeps_with_the_first_sighting():
    plan = plan_save(None, TRACKED, OPEN)
    assert plan.result.record.first_seen_at == EARLIER and plan.open_marker is None
    assert plan_save(OPEN, TRACKED, MOVED).result.record.first_seen_at == OPEN.first_seen_at
    assert plan_save(DONE, TRACKED, OPEN).result.record is DONE


def test_an_opened_marker_carries_the_records_first_sighting_and_the_fresh_source():
    fresh = replace(OPEN, source="callback")
    marker = plan_save(None, None, fresh).open_marker
    assert marker == Tracking("job00001", NOW, "callback")


def test_the_entry_owed_is_the_event_of_the_record_written():
    plan = plan_save(OPEN, TRACKED, DONE, ANNOUNCED)
    assert plan.owe is not None
    assert (plan.owe.job_id, plan.owe.state, plan.owe.owed_since) == ("job00001", "succeeded", DONE.updated_at)
