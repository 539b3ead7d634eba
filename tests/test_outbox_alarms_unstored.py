"""Alarm rows in the outbox's counts, and alarm events whose transaction failed (issue 17
loose ends), on a real SQLite outbox. The failure is SQLite's own: a trigger refuses
every insert into the outbox, as a full disk refuses every commit."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(value: float, at: datetime = T0) -> Sample:
    return Sample("h2s-1", at, (Reading("h2s-1", "gas", value, "ppm", Quality.GOOD, at),))


def event(kind: EventKind, level: int, at: datetime = T0) -> AlarmEvent:
    return AlarmEvent(kind, "h2s-1", "gas", "high", "high", level, 12.0, "ppm", 10.0, at,
                      True)


def refuse_inserts(path: Path) -> None:
    with sqlite3.connect(path) as other:
        other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN "
                      "SELECT RAISE(ABORT, 'disk full, injected'); END")


def allow_inserts(path: Path) -> None:
    with sqlite3.connect(path) as other:
        other.execute("DROP TRIGGER refuse")


def test_alarm_rows_waiting_are_counted_by_depth_and_stats(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    try:
        box.append(sample(12.0), [event(EventKind.RAISED, 1)])
        box.append_alarms([event(EventKind.CONFIRMED, 1)])
        depth, stats = box.depth(), box.stats()
    finally:
        box.close()
    assert (depth.alarms, stats.alarms) == (2, 2)
    assert (depth.rows, depth.samples) == (1, 1)  # rows: samples and gap events, as before


def test_alarm_events_whose_append_failed_are_counted_and_stored_with_the_next_commit(
        tmp_path: Path, caplog):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    lost = event(EventKind.RAISED, 1)
    try:
        refuse_inserts(path)
        with caplog.at_level(logging.ERROR), pytest.raises(OutboxError):
            box.append(sample(12.0), [lost])
        waiting = box.depth()
        allow_inserts(path)
        box.append(sample(13.0, T0 + timedelta(seconds=1)))
        stored = box.depth()
        view = UplinkOutbox(box, "default")
        alarms = [m for m in view.claim_batch(0, 10, 10, 100_000).messages
                  if m.kind == "alarm"]
        saved = box.alarm_state()
    finally:
        box.close()
    assert "alarm events not stored: 1 event(s)" in caplog.text
    assert lost.id in caplog.text
    assert (waiting.alarm_events_not_stored_total, waiting.alarm_events_waiting_to_store,
            waiting.alarms) == (1, 1, 0)
    assert (stored.alarm_events_not_stored_total, stored.alarm_events_waiting_to_store,
            stored.alarms) == (1, 0, 1)
    assert [json.loads(e.body)["id"] for m in alarms for e in m.entries] == [lost.id]
    assert [e.id for e in saved] == [lost.id]  # restored after a restart: not raised anew


def test_a_late_alarm_event_does_not_overwrite_a_newer_saved_state(tmp_path: Path):
    """The engine moved on (a newer event of the same alarm was stored by a sample-less
    transaction before the late one could be): the saved state stays the newer."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    older = event(EventKind.RAISED, 1)
    newer = event(EventKind.CLEARED, 0, T0 + timedelta(seconds=5))
    try:
        refuse_inserts(path)
        with pytest.raises(OutboxError):
            box.append(sample(12.0), [older])
        allow_inserts(path)
        box.append_alarms([newer])  # the late one goes in this same transaction, after
        saved = box.alarm_state()
        rows = box.stats().alarms
    finally:
        box.close()
    assert [e.id for e in saved] == [newer.id]
    assert rows == 2
