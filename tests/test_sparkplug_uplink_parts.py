"""The pure parts of the Sparkplug uplink: the station file's ``kind: sparkplug`` as
edge-node settings and Sparkplug devices, a stored sample body read back, when a device
is dead for the host (the poller's own rule, on samples), and a bdSeq given back when no
CONNECT was sent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent import poller
from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.model import Quality, Reading, Sample
from edge_agent.payload import encode_sample_body
from edge_agent.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.sparkplug.bdseq import BdSeqFile
from edge_agent.sparkplug.bodies import BodyError, sample_from_body
from edge_agent.sparkplug.liveness import DOWN_AFTER_FAILED_POLLS, DeviceLiveness, failed_poll

T0 = datetime(2026, 12, 3, 8, 0, 0, 123000, tzinfo=UTC)
STATION = """\
station:
  id: ST01
links:
  gw: {type: tcp, host: 192.168.1.10}
  com1: {type: serial, port: /dev/ttyUSB0, protocol: text}
devices:
  - id: gc-1
    link: gw
    unit_id: 1
    interval_s: 60
    channels:
      - {name: benzene, address: 0, type: float32, unit: mg/m3}
      - {name: cycle, address: 2, type: uint16}
      - {name: h2s, address: 3, type: int16, scale: 0.1, unit: ppm}
  - id: ftir-1
    link: com1
    driver: serial-text
    interval_s: 2
    text:
      mode: stream
      framing: {type: line, start: "$", terminator: CRLF}
      pattern: '^NH3,(?P<nh3>[^,]*)$'
      channels:
        - {name: nh3, unit: ppm}
uplinks:
  scada:
    kind: sparkplug
    group_id: chem-park
    edge_node_id: ST01
    host: scada.example
    devices: [gc-1]
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={}, for_agent=False)


def test_a_sparkplug_uplink_reads_as_an_edge_node_with_its_carried_devices(tmp_path):
    config = _load(tmp_path, STATION)
    (uplink,) = config.uplinks
    settings = uplink.sparkplug
    assert (uplink.kind, settings.group_id, settings.edge_node_id) == (
        "sparkplug", "chem-park", "ST01")
    assert settings.primary_host_id is None
    assert settings.broker.client_id == "edge-agent-ST01-scada"
    assert [str(a) for a in settings.addresses] == ["scada.example:1883"]
    (device,) = settings.node_devices  # only the carried one
    assert device.device_id == "gc-1"
    assert [(c.name, c.unit, c.datatype) for c in device.channels] == [
        ("benzene", "mg/m3", pb.Float), ("cycle", "", pb.UInt16),
        ("h2s", "ppm", pb.Double)]  # a scaled int16 yields fractions: Double


def test_a_text_device_becomes_double_metrics(tmp_path):
    config = _load(tmp_path, STATION.replace("devices: [gc-1]", "devices: [ftir-1]"))
    (device,) = config.uplinks[0].sparkplug.node_devices
    assert [(c.name, c.unit, c.datatype) for c in device.channels] == [
        ("nh3", "ppm", pb.Double)]


@pytest.mark.parametrize(("field", "written"), [
    ("group_id", "chem/park"), ("edge_node_id", "ST+01"), ("primary_host_id", "scada#1")])
def test_an_id_with_a_topic_separator_or_wildcard_is_refused_with_its_field(
        tmp_path, field, written):
    text = STATION.replace("    host: scada.example\n",
                           f"    host: scada.example\n    {field}: \"{written}\"\n")
    text = text.replace("    group_id: chem-park\n", "") if field == "group_id" else text
    text = text.replace("    edge_node_id: ST01\n", "") if field == "edge_node_id" else text
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    (issue,) = caught.value.issues
    assert issue.path == f"uplinks.scada.{field}"
    assert "expected text without / + #" in issue.message


def test_a_stored_body_reads_back_as_the_sample_it_was_made_from():
    analysis = datetime(2026, 12, 3, 7, 58, tzinfo=UTC)
    sample = Sample("gc-1", T0, (
        Reading("gc-1", "benzene", 0.61, "mg/m3", Quality.GOOD, T0, None, analysis),
        Reading("gc-1", "toluene", None, "mg/m3", Quality.BAD, T0, "timeout", analysis)),
        analysis, {"stream": "S2"})
    back = sample_from_body("gc-1", encode_sample_body(sample, 7, "id-7"))
    assert back == sample


@pytest.mark.parametrize("body", ["", "[]", '{"values": {}}',
                                  '{"acquired_at": "yesterday", "values": {}}',
                                  '{"acquired_at": "2026-12-03T08:00:00Z", "values": '
                                  '{"x": {"value": 1, "quality": "GREAT"}}}'])
def test_a_garbled_body_is_a_body_error_not_a_crash(body):
    with pytest.raises(BodyError):
        sample_from_body("gc-1", body)


def _poll(value: float | None, reason: str | None = None) -> Sample:
    quality = Quality.GOOD if reason is None else Quality.BAD
    return Sample("dev-1", T0, (Reading("dev-1", "v", value, "", quality, T0, reason),))


def test_a_device_is_dead_after_as_many_failed_polls_as_the_poller_counts():
    assert DOWN_AFTER_FAILED_POLLS == poller.DOWN_AFTER_FAILED_POLLS
    liveness = DeviceLiveness()
    for _ in range(DOWN_AFTER_FAILED_POLLS - 1):
        liveness.observe(_poll(None, "timeout"))
        assert not liveness.dead("dev-1")
    liveness.observe(_poll(None, "exception_02"))
    assert liveness.dead("dev-1")
    liveness.observe(_poll(1.0))
    assert not liveness.dead("dev-1")


@pytest.mark.parametrize(("sample", "failed"), [
    (_poll(None, "no_connection"), True),
    (_poll(None, "sentinel"), False),  # the device answered: a broken loop, not a dead link
    (_poll(2.0), False),
    (Sample("dev-1", T0, ()), False),
])
def test_only_what_the_poller_stores_for_a_failed_poll_counts_as_one(sample, failed):
    assert failed_poll(sample) is failed


def test_a_bdseq_given_back_is_used_by_the_next_connect(tmp_path):
    numbers = BdSeqFile(tmp_path / "bdseq")
    assert numbers.next_for_connect() == 0
    attempt = numbers.next_for_connect()
    numbers.give_back(attempt)  # the broker's port refused: no CONNECT carried it
    assert numbers.next_for_connect() == attempt
    numbers.give_back(attempt - 1)  # not the last one taken: nothing changes
    assert numbers.next_for_connect() == attempt + 1


def test_the_station_file_example_of_docs_sparkplug_loads(tmp_path):
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in ("sparkplug.md", "sparkplug.zh.md"):
        text = (docs / page).read_text(encoding="utf-8")
        example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
        station = STATION.split("uplinks:\n")[0].replace("id: ftir-1", "id: h2s-1")
        config = load_config(_write(tmp_path, station + example), env={"SCADA_MQTT_PW": "pw"},
                             for_agent=False)
        settings = config.uplinks[0].sparkplug
        assert (settings.group_id, settings.edge_node_id, settings.primary_host_id) == (
            "chem-park", "cp-east-03", "ignition-1"), page
        assert [d.device_id for d in settings.node_devices] == ["gc-1", "h2s-1"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.yaml"
    path.write_text(text, encoding="utf-8")
    return path
