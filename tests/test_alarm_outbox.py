"""Alarm events kept like data (issue 17 item 3), on a real SQLite outbox: committed in
the transaction of their sample, claimed ahead of live and backlog rows with the event
id as message id, deleted per uplink like samples, never dropped by retention, their
last state kept in ``alarm_state`` after delivery (the engine restored from it), and
the v4 -> v5 migration."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.olderoutbox import older_outbox

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.events import AlarmEvent
from edge_agent.alarms.rules import ChannelAlarms, LimitRule, RuleKind
from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.payload import encode_message
from edge_agent.store import schema
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RULES = {"h2s-1": (ChannelAlarms("gas", (LimitRule(RuleKind.HIGH, 10, deadband=1),)),)}


class Kept:
    """A sink that keeps what it was given (the runtime's logs and drives outputs)."""

    def __init__(self) -> None:
        self.got: list[AlarmEvent] = []

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        self.got.extend(events)


def sample(value: float, second: float = 0, device: str = "h2s-1") -> Sample:
    at = T0 + timedelta(seconds=second)
    return Sample(device, at, (Reading(device, "gas", value, "ppm", Quality.GOOD, at),))


def poll(engine: AlarmEngine, box: Outbox, value: float, second: float = 0,
         ) -> list[AlarmEvent]:
    """What the poller does: decide, commit sample and events together, then emit."""
    polled = sample(value, second)
    events = engine.decide("h2s-1", polled, True, False)
    box.append(polled, events)
    engine.emit(events)
    return events


def table(box: Outbox, sql: str) -> list[tuple]:
    conn = sqlite3.connect(box.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def box(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    yield outbox
    outbox.close()


def test_alarm_rows_are_committed_with_the_sample_that_raised_them(box: Outbox) -> None:
    engine = AlarmEngine(RULES, Kept())
    assert poll(engine, box, 2.0) == []
    (raised,) = poll(engine, box, 15.0, 1)
    rows = table(box, "SELECT kind, device_id, seq, entry_id FROM outbox ORDER BY id")
    assert rows == [("sample", "h2s-1", 1, rows[0][3]), ("sample", "h2s-1", 2, rows[1][3]),
                    ("alarm", "h2s-1", None, raised.id)]
    (state,) = table(box, "SELECT device_id, channel, alarm_group, event FROM alarm_state")
    assert state[:3] == ("h2s-1", "gas", "high")
    assert json.loads(state[3])["event"] == "raised"


def test_alarms_are_claimed_before_backlog_and_live_samples(box: Outbox) -> None:
    """Ten samples wait (five backlog, five live); the alarm of the last one is the first
    message, alone, its message id the event's id, on the alarm envelope."""
    engine = AlarmEngine(RULES, Kept())
    for second in range(9):
        poll(engine, box, 2.0, second)
    (raised,) = poll(engine, box, 15.0, 9)
    messages = box.claim_batch(5, 3, 50, 100_000).messages
    assert [m.kind for m in messages] == ["alarm", "sample", "sample"]
    first = messages[0]
    assert (first.msg_id, first.historical, len(first.entries)) == (raised.id, False, 1)
    assert messages[1].historical is False and messages[2].historical is True
    payload = json.loads(encode_message(first, "cp-east-03"))
    assert (payload["type"], payload["id"], payload["v"]) == ("alarm", raised.id, 1)
    assert payload["alarms"][0]["event"] == "raised" and payload["alarms"][0]["value"] == 15.0
    assert box.ack_many([first.msg_id]) == 1
    assert table(box, "SELECT COUNT(*) FROM outbox WHERE kind = 'alarm'") == [(0,)]
    assert table(box, "SELECT COUNT(*) FROM outbox WHERE kind = 'sample'") == [(10,)]


def test_a_new_alarm_goes_ahead_of_sample_messages_waiting_to_be_resent(box: Outbox) -> None:
    """Two sample messages were in flight when the connection dropped; the alarm raised
    meanwhile is offered before they are sent again."""
    engine = AlarmEngine(RULES, Kept())
    for second in range(4):
        poll(engine, box, 2.0, second)
    waiting = box.claim_batch(0, 2, 2, 100_000).messages
    box.release_in_flight()
    (raised,) = poll(engine, box, 15.0, 4)
    messages = box.claim_batch(0, 3, 2, 100_000).messages
    assert [m.msg_id for m in messages] == [raised.id, *(m.msg_id for m in waiting)]


def test_an_unacknowledged_alarm_is_resent_with_the_same_id(box: Outbox) -> None:
    engine = AlarmEngine(RULES, Kept())
    (raised,) = poll(engine, box, 15.0)
    (first,) = box.claim_batch(0, 1, 50, 100_000).messages
    box.release_in_flight()  # the connection was lost before the PUBACK
    (again,) = box.claim_batch(0, 1, 50, 100_000).messages
    assert (again.msg_id, again.kind) == (raised.id, "alarm")
    assert encode_message(again, "s") == encode_message(first, "s")


def test_each_uplink_gets_every_alarm_and_the_row_leaves_after_both(box: Outbox) -> None:
    box.set_uplinks({"default": None, "city": None})
    engine = AlarmEngine(RULES, Kept())
    poll(engine, box, 2.0)
    (raised,) = poll(engine, box, 15.0, 1)
    default, city = UplinkOutbox(box, "default"), UplinkOutbox(box, "city")
    (first_default, _) = default.claim_batch(0, 2, 50, 100_000).messages
    assert (first_default.kind, first_default.msg_id) == ("alarm", raised.id)
    default.ack_many([first_default.msg_id])
    assert table(box, "SELECT COUNT(*) FROM outbox WHERE kind = 'alarm'") == [(1,)]
    (first_city, _) = city.claim_batch(0, 2, 50, 100_000).messages
    assert (first_city.kind, first_city.msg_id) == ("alarm", raised.id)
    city.ack_many([first_city.msg_id])
    assert table(box, "SELECT COUNT(*) FROM outbox WHERE kind = 'alarm'") == [(0,)]


def test_retention_drops_samples_and_never_alarms(tmp_path: Path) -> None:
    """max_rows 5 with 20 samples and their alarms waiting: samples go (announced as a
    gap), every alarm row stays; with only alarms left, they stay too."""
    box = Outbox(tmp_path / "outbox.sqlite3", Retention(max_rows=5, max_bytes=None,
                                                       max_age_s=None))
    try:
        engine = AlarmEngine(RULES, Kept())
        events = [e for second in range(20)
                  for e in poll(engine, box, 15.0 if second % 4 < 2 else 2.0, second)]
        assert len(events) == 10
        counts = dict(table(box, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
        assert counts == {"sample": 5, "alarm": 10, "gap": 1}
        while messages := box.claim_batch(0, 20, 50, 100_000).messages:
            box.ack_many([m.msg_id for m in messages if m.kind != "alarm"])
            box.release_in_flight()
            if all(m.kind == "alarm" for m in messages):
                break
        box.append(sample(2.0, 30))  # a sixth row: nothing to drop but samples
        counts = dict(table(box, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
        assert counts == {"sample": 1, "alarm": 10}
    finally:
        box.close()


def test_an_active_alarm_is_not_raised_again_after_a_restart_and_still_clears(
        tmp_path: Path) -> None:
    """Raised and delivered (its row deleted): the next run restores it from alarm_state;
    the same high value raises nothing, a low one clears it."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    (raised,) = poll(AlarmEngine(RULES, Kept()), box, 15.0)
    box.ack_many([m.msg_id for m in box.claim_batch(0, 5, 50, 100_000).messages])
    assert table(box, "SELECT COUNT(*) FROM outbox") == [(0,)]
    box.close()
    box = Outbox(path, UNLIMITED)
    try:
        engine = AlarmEngine(RULES, Kept())
        assert engine.restore(box.alarm_state()) == 1
        assert engine.active()[0].id == raised.id
        assert poll(engine, box, 16.0, 1) == []
        (cleared,) = poll(engine, box, 5.0, 2)
        assert cleared.kind.value == "cleared" and cleared.alarm == raised.alarm
        assert AlarmEngine(RULES, Kept()).restore(box.alarm_state()) == 0
    finally:
        box.close()


def test_v4_outbox_is_migrated_to_v5_taking_its_alarm_rows_as_alarm_state(
        tmp_path: Path) -> None:

    path = tmp_path / "outbox.sqlite3"
    conn = older_outbox(path, 4)
    engine = AlarmEngine(RULES, Kept())
    raised = engine.decide("h2s-1", sample(15.0), True, False)[0]
    escalated_body = {**raised.as_dict(), "event": "escalated", "level": 2,
                      "id": "e" * 32}
    for number, body in enumerate((raised.as_dict(), escalated_body), start=1):
        conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                     "VALUES ('alarm', 'h2s-1', NULL, ?, ?, ?)",
                     [body["id"], number, json.dumps(body)])
    conn.execute("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                 "VALUES ('alarm', 'h2s-1', NULL, 'x', 3, 'not json')")
    conn.execute("COMMIT")
    conn.close()
    box = Outbox(path, UNLIMITED)
    try:
        (state,) = box.alarm_state()
        assert (state.id, state.kind.value, state.level) == ("e" * 32, "escalated", 2)
        assert table(box, "SELECT value FROM meta WHERE key = 'schema_version'") \
            == [(str(schema.SCHEMA_VERSION),)]
        plan = table(box, "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE kind = 'alarm' "
                          "AND (uplink IS NULL OR uplink = 'x') ORDER BY id")
        assert "outbox_alarms" in " ".join(str(step) for step in plan)
    finally:
        box.close()


def test_export_rows_leave_alarm_events_out(box: Outbox) -> None:
    """``edge-agent export`` writes samples and gaps; an alarm row (its own topic, not a
    sample's shape) must not reach the sample writers."""
    from edge_agent.store.readonly import iter_rows

    poll(AlarmEngine(RULES, Kept()), box, 15.0)
    conn = sqlite3.connect(box.path)
    try:
        assert [row.kind for row in iter_rows(conn, None, None)] == ["sample"]
    finally:
        conn.close()
