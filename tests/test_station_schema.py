"""The JSON Schema of the station file (edge_agent/schema/station-v1.schema.json): it is
generated from the settings' declarations, the checked-in copy is current, and every
station file and profile the project ships passes it, so an editor using it never flags
a file ``edge-agent check`` accepts."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_agent.config import jsonschema as station_schema

ROOT = Path(__file__).resolve().parent.parent
STATION_FILES = sorted(path for path in (ROOT / "config").glob("*.yaml")
                       if path.name != "simulate.example.yaml")  # the simulator's own file
PROFILE_FILES = sorted(path for path in (ROOT / "drivers").rglob("*.yaml")
                       if "fixtures" not in path.parts)


def _schema() -> dict[str, Any]:
    return json.loads(station_schema.SCHEMA_PATH.read_text(encoding="utf-8"))


def _validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    """A validator for ``schema``, which is first checked against the Draft 7 meta-schema.
    Checking costs 0.1-0.2 s and the tests ask for the same two schemas (the station's,
    the profile's) about 40 times, so each distinct schema is checked once per process."""
    return _checked_validator(json.dumps(schema, sort_keys=True))


@functools.cache
def _checked_validator(schema_text: str) -> jsonschema.Draft7Validator:
    schema = json.loads(schema_text)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _problems(validator: jsonschema.Draft7Validator, document: object) -> list[str]:
    return [f"{list(err.absolute_path)}: {err.message}"
            for err in validator.iter_errors(document)]


def test_the_checked_in_schema_is_current() -> None:
    assert station_schema.SCHEMA_PATH.read_text(encoding="utf-8") == station_schema.render(), \
        "stale: run .venv/bin/python scripts/station-schema"


def test_the_check_option_tells_a_stale_copy(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "station.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(station_schema, "SCHEMA_PATH", stale)
    assert station_schema.main(["--check"]) == 1
    assert station_schema.main([]) == 0
    assert station_schema.main(["--check"]) == 0


@pytest.mark.parametrize("path", STATION_FILES, ids=lambda path: path.name)
def test_every_shipped_station_file_passes(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _problems(_validator(_schema()), document) == []


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_shipped_profile_passes_the_profile_definition(path: Path) -> None:
    schema = {**_schema(), "$ref": "#/definitions/profile"}
    for key in ("required", "properties", "additionalProperties", "type"):
        schema.pop(key)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _problems(_validator(schema), document) == []


def test_there_are_files_to_check() -> None:
    assert len(STATION_FILES) >= 3 and len(PROFILE_FILES) >= 4


def _minimal(**mqtt: object) -> dict[str, Any]:
    return {"station": {"id": "ST01"}, "links": {"bus": {"type": "tcp", "host": "h"}},
            "devices": [{"id": "d1", "link": "bus", "unit_id": 1, "interval_s": 1,
                         "channels": [{"name": "a", "address": 0}]}],
            "mqtt": {"host": "broker", **mqtt}}


def test_declared_ranges_choices_and_keys_reach_the_schema() -> None:
    validator = _validator(_schema())
    assert _problems(validator, _minimal()) == []
    assert _problems(validator, _minimal(max_message_bytes=100))  # declared 1024..
    assert _problems(validator, _minimal(protocol="4"))
    assert _problems(validator, _minimal(password="secret"))
    assert _problems(validator, _minimal(portt=1883))
    assert _problems(validator, _minimal(protocol="5.0", tls=True, port=8883)) == []


def test_a_device_is_checked_against_the_keys_of_its_driver_kind() -> None:
    validator = _validator(_schema())
    text_device = _minimal()
    text_device["devices"][0]["driver"] = "serial-text"
    assert any("channels" in problem for problem in _problems(validator, text_device))
    unknown = _minimal()
    unknown["devices"][0]["driver"] = "snmp"
    assert _problems(validator, unknown)


def test_the_station_and_a_devices_common_keys_are_checked_as_declared() -> None:
    validator = _validator(_schema())
    slow = _minimal()
    slow["devices"][0]["interval_s"] = 0  # declared 0.001..86400
    assert any("'interval_s']" in problem and "minimum" in problem
               for problem in _problems(validator, slow))
    fractional = _minimal()
    fractional["devices"][0]["unit_id"] = 1.5
    assert _problems(validator, fractional)
    assert _schema()["properties"]["station"]["properties"]["id"]["description"] == \
        "the station's id, e.g. ST01"


def test_a_channel_is_checked_as_declared() -> None:
    validator = _validator(_schema())

    def with_channel(**channel: object) -> dict[str, Any]:
        document = _minimal()
        document["devices"][0]["channels"] = [{"name": "a", "address": 0, **channel}]
        return document

    good = with_channel(type="float32", word_order="CDAB", scale=0.1, register="input",
                        valid_range={"min": 0, "max": 100}, sentinels=[65535])
    assert _problems(validator, good) == []
    assert _problems(validator, with_channel(address=70000))  # declared 0..65535
    assert _problems(validator, with_channel(type="float"))
    assert _problems(validator, with_channel(type="string", length=200))  # 1..125
    assert _problems(validator, with_channel(type="bool", bit=16))  # 0..15
    assert _problems(validator, with_channel(scale="ten"))


def test_read_trigger_and_clock_are_checked_as_declared() -> None:
    validator = _validator(_schema())

    def with_device(**keys: object) -> dict[str, Any]:
        document = _minimal()
        document["devices"][0].update(keys)
        return document

    good = with_device(read={"max_registers": 60, "forbidden": [{"first": 90, "last": 99}]},
                       trigger={"kind": "counter", "channel": "a"},
                       clock={"format": "unix", "channels": ["a"], "utc_offset": "+08:00"})
    assert _problems(validator, good) == []
    assert _problems(validator, with_device(read={"max_registers": 126}))  # 1..125
    assert _problems(validator, with_device(read={"forbidden": [{"first": -1}]}))
    assert _problems(validator, with_device(trigger={"kind": "edge", "channel": "a"}))
    assert _problems(validator, with_device(clock={"format": "iso", "channels": ["a"]}))
    assert _problems(validator, with_device(enron="yes"))
    assert _problems(validator, with_device(word_order="ABDC"))
    assert _problems(validator, with_device(stream_channel=["a"]))


def _text_device(**text: object) -> dict[str, Any]:
    document = _minimal()
    document["devices"][0] = {"id": "d1", "link": "bus", "interval_s": 1,
                              "driver": "serial-text",
                              "text": {"request": "RD<CR>", "channels": [], **text}}
    return document


def test_a_text_blocks_framing_and_checksum_are_checked_as_declared() -> None:
    validator = _validator(_schema())
    good = _text_device(framing={"type": "stx-etx", "max_bytes": 512},
                        checksum={"type": "xor8", "covers": "body+end"})
    assert _problems(validator, good) == []
    assert _problems(validator, _text_device(framing="stx-etx", checksum="crc16-modbus")) == []
    assert _problems(validator, _text_device(framing={"max_bytes": 8}))  # declared 16..65536
    assert _problems(validator, _text_device(framing="ring"))
    assert _problems(validator, _text_device(checksum="crc16"))
    assert _problems(validator, _text_device(checksum={"type": "xor8", "covers": "all"}))
    channel = {"name": "no2", "field": 2, "scale": 0.1, "sentinels": [-9999]}
    assert _problems(validator, _text_device(channels=[channel],
                                             time={"field": [1, 2], "format": "%Y"})) == []
    assert _problems(validator, _text_device(channels=[{**channel, "scale": "x"}]))
    assert _problems(validator, _text_device(time={"field": 1, "format": "%Y", "zone": 8}))


def test_links_are_checked_as_declared_for_their_type() -> None:
    validator = _validator(_schema())
    serial = _minimal()
    serial["links"]["bus"] = {"type": "Serial", "port": "/dev/ttyUSB0", "baudrate": 9600,
                              "parity": "E", "protocol": "modbus-rtu"}
    assert _problems(validator, serial) == []
    serial["links"]["bus"]["baudrate"] = 12345
    assert _problems(validator, serial)
    serial["links"]["bus"] = {"type": "serial", "port": "/dev/ttyUSB0", "host": "h"}
    assert _problems(validator, serial)  # a TCP setting on a serial link
    tcp = _minimal()
    tcp["links"]["bus"] = {"type": "tcp", "port": 502}
    assert any("'host' is a required property" in problem
               for problem in _problems(validator, tcp))


def test_an_empty_section_is_accepted_where_the_loader_reads_it_as_absent() -> None:
    validator = _validator(_schema())
    document = {**_minimal(), "polling": None, "store": None, "health": None}
    assert _problems(validator, document) == []
    assert _problems(validator, {**_minimal(), "mqtt": None})


def test_a_channels_valid_range_is_checked_as_declared() -> None:
    validator = _validator(_schema())

    def with_range(valid_range: object) -> dict[str, Any]:
        document = _minimal()
        document["devices"][0]["channels"][0]["valid_range"] = valid_range
        return document

    assert _problems(validator, with_range({"min": 0, "max": 50, "quality": "SUSPECT"})) == []
    assert _problems(validator, with_range({"min": 0, "maximum": 50}))  # not a declared key
    assert _problems(validator, with_range({"min": 0, "quality": "GOOD"}))  # BAD or SUSPECT
    assert _problems(validator, with_range({"min": "low"}))
