"""The HJ 212 real-time send path (issue 13, issue 17 item 3), with real parts: a real
SQLite outbox, the uplink's own thread and session over real TCP to the platform
simulator's server on a free port. Samples are appended to the outbox with chosen
acquisition times, so what the platform must receive is known exactly.

Proves: one 2011 per device per real-time interval, the first sample at or after the
interval's start, a backlog thinned to the same spacing and marked ``RF=1``, every
sample still leaving the outbox; the platform's 1062 changes the interval and the
change survives a restart of the uplink; a 120-channel device's 2011 is split into
PNUM/PNO pieces with consecutive QNs, each acknowledged by its own 9014, and a sample
whose piece is never answered stays in the outbox until every piece is; a platform that
insists on the Modbus CRC low byte first gets it and is understood; alarm rows are
acknowledged unsent and counted while the alarm's sample goes out as ordinary data.
Every wait is for an observable state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.hj212platforms import RunningPlatform, running_platforms
from support.waiting import wait_until

from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention, UplinkConfig
from edge_agent.forward.hj212uplink import Hj212Uplink
from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.packet import ParseOptions, qn_time
from edge_agent.hj212.realtime import local_time
from edge_agent.model import Quality, Reading, Sample, iso_utc
from edge_agent.store.outbox import Outbox
from edge_agent.tools.hj212platform.requests import Command

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 3, 15, 2, 0, 0, tzinfo=UTC)  # on the hour in every whole-hour zone
DEADLINE_S = 60


@pytest.fixture
def platform(tmp_path: Path) -> Iterator:
    """Starts a platform simulator with the given ``Behaviour`` fields (support)."""
    yield from running_platforms(tmp_path)


def uplink_config(tmp_path: Path, port: int, channels: int = 2, extra: str = "") -> UplinkConfig:
    """The ``prov`` uplink of a station whose device ``gc-1`` has ``channels`` channels
    ``c1``..., sent as the station's own codes ``x90001``... (mg/m3)."""
    names = [f"c{n}" for n in range(1, channels + 1)]
    device = "".join(f"      - {{name: {name}, address: {2 * i}, type: float32}}\n"
                     for i, name in enumerate(names))
    codes = "".join(f"      x9{n:04d}: {{zh: 物质{n}, en: substance {n}, unit: mg/m3, "
                    f"versions: [2025]}}\n" for n in range(1, channels + 1))
    mapped = "".join(f"      - {{device: gc-1, channel: c{n}, code: x9{n:04d}}}\n"
                     for n in range(1, channels + 1))
    text = f"""\
station:
  id: ST01
links:
  plc-gw: {{type: tcp, host: 127.0.0.1}}
devices:
  - id: gc-1
    link: plc-gw
    unit_id: 1
    interval_s: 10
    channels:
{device}store:
  path: outbox.sqlite3
uplinks:
  prov:
    kind: hj212
    host: 127.0.0.1
    port: {port}
    mn: {MN}
    st: "27"
    password_env: PROV_PW
    encrypt: false
    timeout_s: 1
    retries: 1
    heartbeat_s: 0
{extra}    codes:
{codes}    channels:
{mapped}"""
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    [uplink] = load_config(path, env={"PROV_PW": "123456"}).uplinks
    return uplink


def sample(at: datetime, channels: int = 2, value: float = 1.5) -> Sample:
    readings = tuple(Reading("gc-1", f"c{n}", value + n, "mg/m3", Quality.GOOD, at)
                     for n in range(1, channels + 1))
    return Sample("gc-1", at, readings)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    box.set_uplinks({"prov": None})
    yield box
    box.close()


@pytest.fixture
def uplinks(tmp_path: Path, outbox: Outbox) -> Iterator:
    started: list[Hj212Uplink] = []

    def start(config: UplinkConfig) -> Hj212Uplink:
        one = Hj212Uplink("ST01", config, outbox, state_dir=tmp_path)
        one.start()
        started.append(one)
        return one

    yield start
    for one in started:
        one.stop(grace_s=1)


def rows(outbox: Outbox, kind: str = "sample") -> int:
    conn = sqlite3.connect(f"file:{outbox.path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = ?", [kind]).fetchone()[0]
    finally:
        conn.close()


def stamp(moment: datetime) -> str:
    """The DataTime the platform must see for an acquisition time (local, as HJ 212)."""
    return local_time(iso_utc(moment)).strftime("%Y%m%d%H%M%S")


def test_a_backlog_goes_out_one_sample_per_interval_marked_rf_and_all_leave_the_outbox(
        tmp_path, platform, outbox, uplinks):
    """Five minutes of 10 s samples, interval 60 s: the platform gets the sample on each
    minute, re-sent (RF=1: they are long past), and none of the 30 stays in the outbox."""
    running = platform()
    for index in range(30):
        outbox.append(sample(T0 + timedelta(seconds=10 * index)))
    one = uplinks(uplink_config(tmp_path, running.port, extra="    realtime_interval_s: 60\n"))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "every sample to leave the outbox")
    assert running.data_times() == [stamp(T0 + timedelta(minutes=m)) for m in range(5)]
    assert all(packet["rf"] for packet in running.packets("2011"))
    assert one.counts()["rtd_thinned"] == 25
    assert one.health().acknowledged == 30


def test_the_first_sample_at_or_after_each_interval_start_is_the_one_sent(
        tmp_path, platform, outbox, uplinks):
    """Samples off the boundaries: 00:05 opens the first minute, 01:05 the second (00:45
    and 01:25 are in minutes already sent), 03:00 the fourth: a silent minute sends none."""
    running = platform()
    offsets = (5, 45, 65, 85, 180, 190)
    for seconds in offsets:
        outbox.append(sample(T0 + timedelta(seconds=seconds)))
    one = uplinks(uplink_config(tmp_path, running.port, extra="    realtime_interval_s: 60\n"))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "every sample to leave the outbox")
    assert running.data_times() == [stamp(T0 + timedelta(seconds=s)) for s in (5, 65, 180)]
    assert one.counts()["rtd_thinned"] == 3


def test_interval_zero_the_default_sends_every_sample(tmp_path, platform, outbox, uplinks):
    running = platform()
    for index in range(4):
        outbox.append(sample(T0 + timedelta(seconds=10 * index)))
    one = uplinks(uplink_config(tmp_path, running.port))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "every sample to leave the outbox")
    assert running.data_times() == [stamp(T0 + timedelta(seconds=10 * i)) for i in range(4)]
    assert one.counts()["rtd_thinned"] == 0


def test_the_platforms_1062_sets_the_interval_and_a_restarted_uplink_keeps_it(
        tmp_path, platform, outbox, uplinks):
    setter = platform(commands=(Command("1062", "RtdInterval=120"),))
    config = uplink_config(tmp_path, setter.port, extra="    realtime_interval_s: 60\n")
    first = uplinks(config)
    state = tmp_path / "hj212-prov.json"
    wait_until(lambda: any(p["cp"] == "ExeRtn=1" for p in setter.packets("9012")),
               DEADLINE_S, "the station to carry out the platform's 1062")
    assert json.loads(state.read_text())["rtd_interval_s"] == 120
    first.stop(grace_s=1)
    plain = platform()  # the same station file, another platform: no command this time
    for index in range(24):  # four minutes of 10 s samples
        outbox.append(sample(T0 + timedelta(seconds=10 * index)))
    uplinks(replace(config, hj212=replace(config.hj212, port=plain.port)))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "every sample to leave the outbox")
    assert plain.data_times() == [stamp(T0), stamp(T0 + timedelta(minutes=2))]


def pieces_of(running: RunningPlatform) -> list[dict]:
    return [p for p in running.packets("2011") if p["pnum"] is not None]


def test_a_120_channel_sample_is_split_each_piece_acknowledged_by_its_own_qn(
        tmp_path, platform, outbox, uplinks):
    running = platform()
    outbox.append(sample(T0, channels=120))
    uplinks(uplink_config(tmp_path, running.port, channels=120))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "the sample to leave the outbox")
    pieces = pieces_of(running)
    count = pieces[0]["pnum"]
    assert count >= 4 and len(pieces) == count == len(running.packets("2011"))
    assert [p["pno"] for p in pieces] == list(range(1, count + 1))
    assert {p["flag"] for p in pieces} == {11}  # 2025, split, answer requested
    assert all(int(p["raw"][2:6]) <= 1024 for p in pieces)
    times = [qn_time(p["qn"]) for p in pieces]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == \
        [timedelta(milliseconds=1)] * (count - 1)  # consecutive QNs
    wait_until(lambda: len(running.events("sent")) >= count + 1, DEADLINE_S, "the answers")
    answered = {e["qn"] for e in running.events("sent") if e["cn"] == "9014"}
    assert {p["qn"] for p in pieces} <= answered
    [whole] = running.events("reassembled")
    region = parse_region(whole["cp"])
    assert region.get("DataTime") == stamp(T0)
    assert [f.code for f in region.factors()] == [f"x9{n:04d}" for n in range(1, 121)]


def test_a_sample_stays_in_the_outbox_until_every_piece_is_acknowledged(
        tmp_path, platform, outbox, uplinks):
    running = platform(unanswered_pno=2)
    outbox.append(sample(T0, channels=120))
    one = uplinks(uplink_config(tmp_path, running.port, channels=120))
    wait_until(lambda: one.counts()["not_delivered"] >= 1, DEADLINE_S,
               "the upload to be given up when piece 2 stays unanswered")
    assert rows(outbox) == 1, "a sample left the outbox with a piece unacknowledged"
    assert one.health().acknowledged == 0
    running.platform.behaviour = replace(running.platform.behaviour, unanswered_pno=0)
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "the sample to leave the outbox")
    last = pieces_of(running)[-pieces_of(running)[0]["pnum"]:]
    assert [p["pno"] for p in last] == list(range(1, len(last) + 1))
    assert all(p["rf"] for p in last), "the complete re-send was not marked RF=1"


def test_a_platform_insisting_on_the_modbus_crc_low_first_gets_it_and_is_understood(
        tmp_path, platform, outbox, uplinks):
    variant = CrcVariant.MODBUS_LOW_FIRST
    running = platform(crc=variant, options=ParseOptions(accept_crc=frozenset({variant})))
    outbox.append(sample(T0))
    outbox.append(sample(T0 + timedelta(seconds=10)))
    config = uplink_config(tmp_path, running.port, extra="    crc: modbus-low-first\n")
    one = uplinks(config)
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "the samples to leave the outbox")
    received = [p for p in running.events("packet") if p["cn"] in ("2011", "2081")]
    assert {p["crc_variant"] for p in received} == {"modbus-low-first"}
    assert not running.events("rejected")
    # the platform's 9014s carry the same variant; the station took them as answers
    assert one.counts()["acknowledged"] >= 2 and one.counts()["bad_packets"] == 0


def test_alarm_rows_are_acknowledged_unsent_and_counted_the_sample_goes_as_data(
        tmp_path, platform, outbox, uplinks):
    running = platform()
    high = sample(T0, value=40.0)
    raised = AlarmEvent(EventKind.RAISED, "gc-1", "c1", "high", "high", 1, 41.0, "mg/m3",
                        30.0, T0, True)
    cleared = replace(raised, kind=EventKind.CLEARED, level=0, value=2.5,
                      at=T0 + timedelta(seconds=10), id="cleared-1")
    outbox.append(high, alarms=[raised])
    outbox.append(sample(T0 + timedelta(seconds=10)), alarms=[cleared])
    one = uplinks(uplink_config(tmp_path, running.port))
    wait_until(lambda: rows(outbox) + rows(outbox, "alarm") == 0, DEADLINE_S,
               "samples and alarm rows to leave the outbox")
    assert one.counts()["alarms_skipped"] == 2
    assert {p["cn"] for p in running.events("packet")} <= {"2081", "2011"}
    first = parse_region(running.packets("2011")[0]["cp"])
    assert first.get("DataTime") == stamp(T0)
    [c1] = [factor for factor in first.factors() if factor.code == "x90001"]
    assert (c1.number("Rtd"), c1.get("Flag")) == (41.0, "N")  # as any value: flag N


def test_live_samples_interleaved_with_the_backlog_keep_one_2011_per_interval(
        tmp_path, platform, outbox, uplinks):
    """After an outage the uplink takes the live lane before the backlog, so the two
    interleave; a live sample in the interval of the last live one sent stays unsent
    even when backlog samples went out between them (one pointer per device would have
    jumped to the backlog's last DataTime and let it through)."""
    running = platform()
    now = datetime.now()  # naive local, as HJ 212 times
    start = now.replace(second=0, microsecond=0)
    start += timedelta(seconds=30 * ((now - start - timedelta(seconds=1)).seconds // 30))
    live_1, live_2 = start, start + timedelta(milliseconds=500)  # one 30 s interval
    outbox.append(sample(T0))  # backlog: acquired long before the session began
    outbox.append(sample(T0 + timedelta(minutes=5)))
    outbox.append(sample(live_1.astimezone(UTC)))  # live: within the last minute
    one = uplinks(uplink_config(tmp_path, running.port, extra="    realtime_interval_s: 30\n"))
    wait_until(lambda: rows(outbox) == 0, DEADLINE_S, "the first three samples to go")
    assert running.data_times() == [stamp(live_1.astimezone(UTC)), stamp(T0),
                                    stamp(T0 + timedelta(minutes=5))]  # live first
    outbox.append(sample(live_2.astimezone(UTC)))
    one.wake()
    wait_until(lambda: one.counts()["rtd_thinned"] == 1, DEADLINE_S, "the live sample taken")
    assert rows(outbox) == 0 and len(running.data_times()) == 3
