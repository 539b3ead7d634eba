"""One table through both drivers: the same raw number and the same channel settings
(scale, offset, valid_range, sentinels, a status flag) give the same value, quality and
reason whether a Modbus register or a serial-text record carried it.

Both sides are built by the real loader from one station file. The Modbus side decodes
the register words (encoded here with struct, independently of the agent) with the
driver's decode path and applies its status word; the serial-text side feeds one record
through ``SerialTextDriver.sample_from``, the path the driver takes for every frame.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.status import apply_status
from edge_agent_drivers.modbus.values import judge_words
from edge_agent_drivers.serialtext.driver import SerialTextDriver
from edge_agent_drivers.serialtext.protocol.framing import Frame

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Device
from edge_agent.model import Quality, Reading
from edge_agent.values import ValidRange, flagged, judge_number, scale_value

NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
BAD, SUSPECT, GOOD = Quality.BAD, Quality.SUSPECT, Quality.GOOD
_STRUCT = {"int32": ">i", "uint16": ">H", "float64": ">d"}


@dataclass(frozen=True)
class Row:
    """``raw`` is what the instrument sends: as a Modbus ``data_type`` and, written out,
    as the ``token`` of a text record (default: the number as Python writes it)."""

    name: str
    raw: float
    settings: dict
    expected: tuple[object, Quality, str | None]
    data_type: str = "int32"
    token: str | None = None
    flag: bool = False  # the status says "calibrating" (SUSPECT) for this channel
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.token if self.token is not None else repr(self.raw)


ROWS = [
    # scale and offset, decimal-clean
    Row("decimal_clean", 189, {"scale": 0.1}, (18.9, GOOD, None)),
    Row("three_tenths", 3, {"scale": 0.1}, (0.3, GOOD, None)),
    Row("scale_and_offset", 650, {"scale": 0.1, "offset": -40}, (25.0, GOOD, None)),
    Row("negative", -100, {"scale": 0.1, "offset": -40}, (-50.0, GOOD, None)),
    Row("float_scaled", 1.1, {"scale": 3}, (3.3, GOOD, None), "float64"),
    Row("whole_stays_whole", 1234, {}, (1234, GOOD, None)),
    Row("float_unscaled", 2.5, {}, (2.5, GOOD, None), "float64"),
    # sentinels: raw numbers, compared before scaling, before the range
    Row("sentinel", -9999, {"scale": 0.1, "sentinels": [-9999]}, (None, BAD, "sentinel")),
    Row("sentinel_float", -9999.0, {"sentinels": [-9999]}, (None, BAD, "sentinel"),
        "float64"),
    Row("sentinel_is_raw", 100, {"scale": 0.1, "sentinels": [10]}, (10.0, GOOD, None)),
    Row("sentinel_before_range", 65535,
        {"sentinels": [65535], "valid_range": {"max": 100}}, (None, BAD, "sentinel"),
        "uint16"),
    # valid range: after scaling, the value is kept
    Row("above_max", 600, {"valid_range": {"min": 0, "max": 500}},
        (600, BAD, "out_of_range")),
    Row("below_min", -1, {"valid_range": {"min": 0}}, (-1, BAD, "out_of_range")),
    Row("at_max", 500, {"valid_range": {"min": 0, "max": 500}}, (500, GOOD, None)),
    Row("range_after_scaling", 6000,
        {"scale": 0.1, "valid_range": {"max": 500, "quality": "SUSPECT"}},
        (600.0, SUSPECT, "out_of_range")),
    # non-finite
    Row("overflow_once_scaled", 1e308, {"scale": 10}, (None, BAD, "infinite"), "float64"),
    Row("infinite", math.inf, {}, (None, BAD, "infinite"), "float64", token="1e999"),
    Row("not_a_number", math.nan, {"valid_range": {"max": 1}},
        (None, BAD, "not_a_number"), "float64", token="nan"),
    # status flags only lower a quality; the reading's own reason comes first
    Row("flagged", 42, {}, (42, SUSPECT, "calibrating"), flag=True),
    Row("flagged_out_of_range", 600, {"valid_range": {"max": 500, "quality": "SUSPECT"}},
        (600, SUSPECT, "out_of_range+calibrating"), flag=True),
    Row("flag_under_bad", 600, {"valid_range": {"max": 500}},
        (600, BAD, "out_of_range"), flag=True),
    Row("flag_under_sentinel", -9999, {"sentinels": [-9999]}, (None, BAD, "sentinel"),
        flag=True),
]
STATUS_ADDRESS = 900


def words_of(row: Row) -> list[int]:
    """The row's raw number as big-endian register words (ABCD)."""
    raw = row.raw if row.data_type == "float64" else int(row.raw)
    packed = struct.pack(_STRUCT[row.data_type], raw)
    return [packed[i] << 8 | packed[i + 1] for i in range(0, len(packed), 2)]


def station(tmp_path: Path, rows: list[Row]) -> tuple[Device, Device]:
    """The Modbus device and the serial-text device of one station file, as loaded."""
    flagged_names = [row.name for row in rows if row.flag]
    modbus_channels = [
        {"name": row.name, "address": index * 4, "type": row.data_type, **row.settings}
        for index, row in enumerate(rows)]
    text_channels = [{"name": row.name, "field": index + 1, **row.settings}
                     for index, row in enumerate(rows)]
    text_status = []
    if flagged_names:
        modbus_channels.append({
            "name": "state", "address": STATUS_ADDRESS, "type": "uint16",
            "quality_values": {1: {"quality": "SUSPECT", "reason": "calibrating",
                                   "channels": flagged_names}}})
        text_status.append({"field": len(rows) + 1, "channels": flagged_names,
                            "values": {"OK": "GOOD", "C": "SUSPECT calibrating"}})
    doc = {
        "station": {"id": "ST01"},
        "links": {"lan": {"type": "tcp", "host": "127.0.0.1", "port": 502},
                  "rs232": {"type": "serial", "port": "/dev/ttyS0", "protocol": "text"}},
        "devices": [
            {"id": "mb", "link": "lan", "unit_id": 1, "interval_s": 10,
             "channels": modbus_channels},
            {"id": "txt", "link": "rs232", "driver": "serial-text", "interval_s": 10,
             "text": {"mode": "stream", "delimiter": ",", "channels": text_channels,
                      "status": text_status}},
        ],
        "mqtt": {"host": "broker.local"},
    }
    path = tmp_path / "station.yaml"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    config = load_config(path, env={})
    return config.devices[0], config.devices[1]


def modbus_outcomes(device: Device, rows: list[Row], status: int) -> dict[str, tuple]:
    """Each row's words decoded and judged, then the status word applied, as the Modbus
    driver does in one poll."""
    words = {row.name: words_of(row) for row in rows}
    judged = {ch.name: judge_words(ch, words.get(ch.name, [status]))
              for ch in device.settings.channels}
    readings = [Reading(device.id, ch.name, judged[ch.name].value, ch.unit,
                        judged[ch.name].quality, NOW, judged[ch.name].reason)
                for ch in device.settings.channels]
    raw = {name: result.raw for name, result in judged.items()}
    return {r.channel: (r.value, r.quality, r.reason)
            for r in apply_status(readings, device.settings.channels, raw) if r.channel != "state"}


def text_outcomes(device: Device, rows: list[Row], status: str) -> dict[str, tuple]:
    """One record holding every row's number and the status, through the driver."""
    body = ",".join([*(row.text for row in rows), status]).encode("ascii")
    sample = SerialTextDriver(device).sample_from([Frame(body)], NOW)
    return {r.channel: (r.value, r.quality, r.reason) for r in sample.readings}


def same(left: tuple, right: tuple) -> bool:
    """Equal outcomes, a whole number and its float (600 and 600.0) being different."""
    return left == right and type(left[0]) is type(right[0])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> tuple[dict, dict]:
    modbus, text = station(tmp_path_factory.mktemp("values"), ROWS)
    return modbus_outcomes(modbus, ROWS, status=1), text_outcomes(text, ROWS, "C")


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_modbus_and_serial_text_judge_a_number_alike(row, outcomes):
    modbus, text = outcomes
    assert same(modbus[row.name], row.expected), f"modbus: {modbus[row.name]}"
    assert same(text[row.name], row.expected), f"serial-text: {text[row.name]}"


def test_without_the_status_flag_both_keep_their_own_judgement(tmp_path):
    rows = [row for row in ROWS if row.flag]
    modbus, text = station(tmp_path, rows)
    by_modbus = modbus_outcomes(modbus, rows, status=0)
    by_text = text_outcomes(text, rows, "OK")
    assert by_modbus == by_text
    assert by_text["flagged"] == (42, GOOD, None)
    assert by_text["flagged_out_of_range"] == (600, SUSPECT, "out_of_range")


def test_text_record_of_189_tenths_publishes_18_9_not_binary_noise(tmp_path):
    """The regression of issue 10: the serial-text path computed float * scale and
    published 18.900000000000002 where the Modbus path gave 18.9."""
    _, text = station(tmp_path, [ROWS[0]])
    assert text_outcomes(text, [ROWS[0]], "OK")["decimal_clean"] == (18.9, GOOD, None)


@dataclass(frozen=True)
class Rules:
    scale: float = 1.0
    offset: float = 0.0
    valid_range: ValidRange | None = None
    sentinels: tuple[float, ...] = ()


@pytest.mark.parametrize(("raw", "scale", "offset", "expected"), [
    (189, 0.1, 0.0, 18.9), (650, 0.1, -40.0, 25.0), (7, 1.0, 0.0, 7), (1.5, 1.0, 0.0, 1.5),
    (1, 0.1, 0.2, 0.3), (123456789, 1e-6, 0.0, 123.456789),
])
def test_scale_value_is_decimal_clean(raw, scale, offset, expected):
    value = scale_value(raw, scale, offset)
    assert value == expected and type(value) is type(expected)


def test_scaled_overflow_is_infinite_not_a_value():
    judged = judge_number(Rules(scale=1e10), 1e300)
    assert (judged.value, judged.quality, judged.reason, judged.raw) == (
        None, BAD, "infinite", 1e300)


@pytest.mark.parametrize(("quality", "reason", "flags", "expected"), [
    (GOOD, None, [], (GOOD, None)),
    (GOOD, None, [(GOOD, None)], (GOOD, None)),
    (GOOD, None, [(SUSPECT, "warmup"), (BAD, "fault")], (BAD, "warmup+fault")),
    (SUSPECT, "out_of_range", [(SUSPECT, "warmup")], (SUSPECT, "out_of_range+warmup")),
    (SUSPECT, "out_of_range", [(BAD, "fault")], (BAD, "out_of_range+fault")),
    (BAD, "sentinel", [(SUSPECT, "warmup")], (BAD, "sentinel")),
    (GOOD, None, [(SUSPECT, "warmup"), (SUSPECT, "warmup")], (SUSPECT, "warmup")),
])
def test_flags_only_lower_quality_and_keep_every_reason(quality, reason, flags, expected):
    assert flagged(quality, reason, flags) == expected


# -- the station file: the same keys, the same messages ----------------------------------

BAD_SETTINGS = [
    ({"valid_range": {"min": 5, "max": 1}}, "min 5 is above max 1"),
    ({"valid_range": {}}, "expected min, max or both"),
    ({"valid_range": {"max": 5, "quality": "GOOD"}}, "expected SUSPECT or BAD"),
    ({"valid_range": {"max": 5, "low": 1}}, "known settings here: min, max, quality"),
    ({"sentinels": ["broken"]}, "expected raw numbers such as [65535, -9999]"),
]


@pytest.mark.parametrize(("settings", "words"), BAD_SETTINGS, ids=str)
def test_text_channel_settings_are_checked_with_the_modbus_messages(tmp_path, settings,
                                                                    words):
    row = Row("gas", 1, settings, (1, GOOD, None), "float64")
    with pytest.raises(ConfigError) as caught:
        station(tmp_path, [row])
    by_path = {}
    for issue in caught.value.issues:
        kind = "text" if ".text." in issue.path else "modbus"
        by_path.setdefault(kind, []).append(issue.message)
    assert by_path["modbus"] == by_path["text"], caught.value
    assert any(words in message for message in by_path["text"]), caught.value


def test_text_channel_reads_range_and_sentinels(tmp_path):
    row = Row("gas", 1, {"valid_range": {"min": -5, "quality": "suspect"},
                         "sentinels": [-9999, 9999.9]}, (1, GOOD, None), "float64")
    _, text = station(tmp_path, [row])
    channel = text.settings.record.channels[0]
    assert channel.valid_range == ValidRange(-5, None, SUSPECT)
    assert channel.sentinels == (-9999.0, 9999.9)
