"""What one save does, decided once for every store: ``plan_save``.

A save takes a fresh record (what ICE answers now) to what the store holds. Four things
follow from what is stored, and they are the same rules on every store:

- the record kept: ``records.merge`` (final never replaced by non-final, the later completion
  wins, the same information is not written);
- the completion event owed (contract section 9): written before the record, when the record
  is taken into an announced state;
- the pending marker: opened before a non-final record is written (so a crash never hides an
  open job from the sweep), removed after a final one is (so no final job stays swept);
- the answer digest bound to the record left stored (``RecordStore.answer_digests``): only to
  a non-final record that holds the fresh answer's information.

A store reads what it has, asks ``plan_save``, and carries the plan out in that order with its
own atomicity (file locks, OSS leases, Tablestore row conditions). Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Optional

from .notify import Owed, owes_notification
from .records import JobRecord, MergeResult, merge
from .stores.base import Tracking


@dataclass(frozen=True)
class SavePlan:
    """What a store does for one save, in this order: ``owe``, ``open_marker``, ``write``, ``bind``,
    ``remove_marker``. ``result`` is what the save returns."""

    result: MergeResult  # what the store holds afterwards, whether it changed, whether an event is owed
    owe: Optional[Owed] = None  # the outbox entry to write first (replacing the job's entry)
    open_marker: Optional[Tracking] = None  # the marker to create before the record (create-only)
    bind: Optional[str] = None  # the answer digest to bind to the record left stored (not final)
    remove_marker: bool = False  # after the record: the job is final and its marker may exist

    @property
    def write(self) -> Optional[JobRecord]:
        """The record to write, or None when the stored one stands."""
        return self.result.record if self.result.changed else None

    @property
    def idle(self) -> bool:
        """Nothing to write at all: the save is settled by what was read."""
        return (not self.result.changed and self.owe is None and self.open_marker is None
                and self.bind is None and not self.remove_marker)


def plan_save(stored: Optional[JobRecord], marker: Optional[Tracking], fresh: JobRecord,
              notify_states: Collection[str] = (), *, marker_known: bool = True,
              bound: Optional[str] = None) -> SavePlan:
    """The plan for saving ``fresh`` over ``stored`` (None: no record) with the job's ``marker``.

    ``marker_known=False``: the store does not know whether the marker exists (OSS: it spares the
    request when a record exists, and ``track`` creates markers without its lock); ``marker``, if
    given, only supplies ``first_seen_at``. The plan then opens a marker for any non-final record
    (create-only, so an existing one stays) and removes it for any final one.

    ``bound``: the digest the store can vouch is bound to ``stored`` now (None: none, or none it
    can vouch for); the plan binds ``fresh``'s digest when the record is rewritten or ``bound``
    differs.
    """
    tracked_since = marker.first_seen_at if marker is not None else None
    result = merge(stored, fresh, tracked_since=tracked_since)
    record = result.record
    owe = None
    if result.changed and notify_states and owes_notification(stored, record, notify_states):
        owe = Owed.for_record(record, record.updated_at)
        result = replace(result, owed=True)
    known = marker is not None if marker_known else None  # whether the marker exists, if the store knows
    open_marker = None
    if not record.final and known is not True:
        open_marker = Tracking(record.job_id, record.first_seen_at, fresh.source)
    # a non-final record left stored holds fresh's information (merge keeps it only when it is the same)
    digest = fresh.answer_digest if not record.final else None
    bind = digest if digest is not None and (result.changed or bound != digest) else None
    return SavePlan(result, owe, open_marker, bind, remove_marker=record.final and known is not False)
