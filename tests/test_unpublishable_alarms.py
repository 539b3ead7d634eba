"""An alarm message that can never be published must not vanish silently (issue 17):
its events are announced in a gap event (``count`` 0, one reason
``unpublishable_alarm:<event id>`` each) and logged at ERROR with their ids.

A real SQLite outbox; the Poison logic is the forwarder's own."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.config.schema import Retention
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.poison import Poison
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(value: float) -> Sample:
    return Sample("h2s-1", T0, (Reading("h2s-1", "gas", value, "ppm", Quality.GOOD, T0),))


def raised(value: float) -> AlarmEvent:
    return AlarmEvent(EventKind.RAISED, "h2s-1", "gas", "high", "high", 1, value, "ppm",
                      10.0, T0, True)


def claim(view: UplinkOutbox):
    return view.claim_batch(0, 10, 10, 100_000).messages


def test_an_unpublishable_alarm_message_is_announced_in_a_gap_event_naming_it(
        tmp_path: Path, caplog):
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    event = raised(12.0)
    try:
        box.append(sample(12.0), [event])
        view = UplinkOutbox(box, "default")
        alarm = [m for m in claim(view) if m.kind == "alarm"][0]
        view.forget_in_flight([m.msg_id for m in claim(view)])
        poison = Poison(view, ForwarderStats())
        with caplog.at_level(logging.ERROR):
            assert poison.refused(alarm.msg_id, "topic has a wildcard")
        view.release_in_flight()
        gaps = [m for m in claim(view) if m.kind == "gap"]
    finally:
        box.close()
    assert len(gaps) == 1
    body = json.loads(gaps[0].entries[0].body)
    assert body["reasons"] == [f"unpublishable_alarm:{event.id}"]
    assert body["count"] == 0
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(event.id in r.getMessage() and "alarm message" in r.getMessage()
               for r in logged), caplog.text


def test_an_uplink_that_gives_up_an_alarm_gets_the_gap_and_the_other_still_the_alarm(
        tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    event = raised(12.0)
    try:
        box.set_uplinks({"city": None, "province": None})
        box.append(sample(12.0), [event])
        province, city = UplinkOutbox(box, "province"), UplinkOutbox(box, "city")
        alarm = [m for m in claim(province) if m.kind == "alarm"][0]
        result = province.set_aside_unpublishable(alarm.msg_id)
        assert result.alarm_ids == (event.id,)
        province.release_in_flight()
        gaps = [m for m in claim(province) if m.kind == "gap"]
        city_kinds = {m.kind for m in claim(city)}
    finally:
        box.close()
    assert [json.loads(g.entries[0].body)["reasons"] for g in gaps] == \
        [[f"unpublishable_alarm:{event.id}"]]
    assert city_kinds == {"alarm", "sample"}  # city's alarm is untouched, and no gap
