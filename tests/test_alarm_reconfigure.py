"""A reload's alarm part, pure: the engine takes new rules keeping what still exists
(``AlarmEngine.reconfigure``), the plan says which pollers stop around it
(edge_agent/alarms/changes.py), the outputs rebuilt switch off what nothing holds, and a
rate of rise is measured over its rule's ``window_s``. The process tests are in
tests/test_alarms_reload.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from support.station import write_station
from test_alarm_engine import HIGH, HIGH_HIGH, T0, engine, feed, sample

from edge_agent.alarms.action import LinkOutputs
from edge_agent.alarms.engine import RULE_REMOVED
from edge_agent.alarms.events import EventKind
from edge_agent.alarms.rules import ChannelAlarms, LimitRule, OnDelay, RuleKind
from edge_agent.config.alarm_settings import AlarmAction
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig
from edge_agent.reload import plan_reload

H2S_HIGH = ChannelAlarms("h2s", (LimitRule(HIGH, 10, deadband=1),))


def test_an_active_alarm_whose_limit_moves_is_judged_by_it_and_not_raised_again() -> None:
    alarms, sink = engine(H2S_HIGH)
    assert feed(alarms, [15]) == [["raised"]]
    cleared = alarms.reconfigure({"det-1": (ChannelAlarms(
        "h2s", (LimitRule(HIGH, 14, deadband=1),)),)}, [])
    assert cleared == []
    assert [e.kind.value for e in alarms.polled("det-1", sample(10, h2s=15), True, False)] == []
    assert [e.kind.value for e in alarms.polled("det-1", sample(12, h2s=12.5), True, False)] \
        == ["cleared"]  # below 14 - 1; the old limit (10 - 1) would have kept it
    assert [e.threshold for e in sink.got] == [10, 14]


def test_a_removed_rule_clears_its_active_alarm_with_the_reason_once_emitted() -> None:
    alarms, sink = engine(H2S_HIGH, ChannelAlarms("so2", (LimitRule(HIGH, 5),)))
    feed(alarms, [15])
    (cleared,) = alarms.reconfigure({"det-1": (ChannelAlarms("so2", (LimitRule(HIGH, 5),)),)},
                                    [])
    assert (cleared.kind, cleared.alarm, cleared.level) == (EventKind.CLEARED,
                                                            "det-1/h2s/high", 0)
    assert (cleared.reason, cleared.confirmed, cleared.value) == (RULE_REMOVED, False, None)
    assert (cleared.rule, cleared.threshold) == ("high", 10)
    assert [e.kind for e in sink.got] == [EventKind.RAISED]  # the caller commits, then emits
    alarms.emit([cleared])
    assert alarms.active() == [] and sink.got[-1] is cleared


def test_high_high_removed_from_an_escalated_alarm_lowers_it_on_the_next_sample() -> None:
    alarms, _ = engine(ChannelAlarms("h2s", (LimitRule(HIGH, 10), LimitRule(HIGH_HIGH, 20))))
    feed(alarms, [25])
    assert alarms.reconfigure({"det-1": (H2S_HIGH,)}, []) == []
    (event,) = alarms.polled("det-1", sample(10, h2s=25), True, False)
    assert (event.kind, event.level) == (EventKind.LOWERED, 1)


def test_a_device_whose_rules_stay_keeps_its_on_delay_counting() -> None:
    delayed = ChannelAlarms("h2s", (LimitRule(HIGH, 10, on_delay=OnDelay(3)),))
    alarms, _ = engine(delayed)
    feed(alarms, [12, 12])  # two of three samples met
    alarms.reconfigure({"det-1": (delayed,), "det-2": (H2S_HIGH,)}, ["det-2"])
    (event,) = alarms.polled("det-1", sample(10, h2s=12), True, False)
    assert event.kind is EventKind.RAISED


def test_switching_the_communication_alarm_off_clears_an_active_one() -> None:
    alarms, _ = engine(H2S_HIGH, communication=True)
    alarms.polled("det-1", None, False, True)
    (cleared,) = alarms.reconfigure({"det-1": (H2S_HIGH,)}, [])
    assert (cleared.alarm, cleared.reason) == ("det-1/communication/communication",
                                               RULE_REMOVED)


@pytest.mark.parametrize(("window_s", "raised_at_s", "rate"), [(60, 310, 0.5),
                                                             (300, 350, 0.5)])
def test_rate_of_rise_is_measured_over_its_window(window_s: float, raised_at_s: int,
                                                  rate: float) -> None:
    """Flat for five minutes, then +0.5 every 10 s. Over the default minute the first
    step is already 0.5/min (the limit); over five minutes the rise reaches it only at
    350 s: 2.5 over 300 s."""
    rule = LimitRule(RuleKind.RATE_OF_RISE, 0.5, window_s=window_s)
    alarms, sink = engine(ChannelAlarms("nmhc", (rule,)))
    values = [2.0] * 31 + [2.5, 3.0, 3.5, 4.0, 4.5, 5.0]  # every 10 s, up to 360 s
    feed(alarms, values, channel="nmhc", step_s=10)
    (raised,) = sink.got
    assert raised.at == T0 + timedelta(seconds=raised_at_s)
    assert raised.value == pytest.approx(rate) and raised.unit == "ppm/min"


def station(tmp_path: Path, *, comm: bool = True, beacon_coil: int | None = None,
            limit: float = 10) -> StationConfig:
    """Two links of one detector each; the beacon (when given) on link b's bus."""
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"a": {"type": "tcp", "host": "127.0.0.1", "port": 1502},
               "b": {"type": "tcp", "host": "127.0.0.1", "port": 1503}},
        devices=[{"id": f"det-{name}", "link": name, "unit_id": 1, "interval_s": 1,
                  "channels": [{"name": "h2s", "address": 0}],
                  "alarms": {"h2s": {"high": limit if name == "a" else 10}}}
                 for name in ("a", "b")])
    doc = json.loads(path.read_text())
    doc["alarms"] = {"communication": comm, "actions": [] if beacon_coil is None else [
        {"name": "beacon", "link": "b", "unit_id": 9, "coil": beacon_coil}]}
    path.write_text(json.dumps(doc))
    return load_config(path)


def test_reload_plan_restarts_only_the_pollers_an_alarm_change_concerns(
        tmp_path: Path) -> None:
    base = station(tmp_path)
    limit = plan_reload(base, station(tmp_path, limit=12))
    assert (limit.pollers_stopped, limit.pollers_started) == (("a",), ("a",))
    assert limit.alarms == ("alarm rules changed on det-a",)
    assert "alarm rules changed on det-a" in limit.summary()
    comm = plan_reload(base, station(tmp_path, comm=False))
    assert comm.pollers_restarted == ("a", "b")
    assert comm.alarms == ("communication alarm off for det-a, det-b",)
    outputs = plan_reload(base, station(tmp_path, beacon_coil=3))
    assert outputs.pollers_restarted == ("b",)
    assert outputs.alarms == ("alarm outputs rebuilt: beacon",)
    assert plan_reload(base, station(tmp_path)).unchanged


def test_rebuilt_outputs_switch_off_once_unless_an_active_alarm_holds_them(
        tmp_path: Path) -> None:
    config = station(tmp_path, beacon_coil=0)
    link = config.links["b"]
    old = AlarmAction("beacon", "b", 9, coil=0)
    moved = AlarmAction("beacon", "b", 9, coil=3)
    rebuilt = LinkOutputs(link, [moved], retired=[old])
    assert rebuilt.pending() and rebuilt.maybe_on() == [old]  # the old coil: off once
    alarms, _ = engine(H2S_HIGH)
    (raised,) = alarms.polled("det-1", sample(0, h2s=15), True, False)
    held = LinkOutputs(link, [old], retired=[old])
    held.alarm_events([raised])
    assert held.maybe_on() == [old]  # on again, not off: the alarm still holds it
