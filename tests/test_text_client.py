"""The text link client against simulated instruments on real pseudo-terminals and TCP
sockets: lazy connection, typed errors, late answers, a serial-device server that drops
the connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from edge_agent_drivers.serialtext.protocol.client import BadFrame, TextLinkClient
from edge_agent_drivers.serialtext.protocol.framing import Deframer
from edge_agent_drivers.serialtext.protocol.settings import Framing
from support.textreplay import sample_values
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import SerialLink, TcpLink
from edge_agent.driver import load_driver
from edge_agent.link import DeviceTimeout, LinkDown
from edge_agent.model import utc_now
from edge_agent.tools.sim.broker import free_port
from edge_agent.tools.sim.ptypair import PtyPair
from edge_agent.tools.sim.textdevice import H2sStreamSim, NoxAnalyzerSim, TextDeviceSim

FIXED = datetime(2024, 5, 6, 14, 30, tzinfo=timezone(timedelta(hours=8)))


def nox_driver(tmp_path, link: dict):
    """The profile's analyzer at address 1, loaded like a station file would be."""
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {id: ST01}\n"
        f"links: {{line: {link}}}\n"
        "devices:\n"
        "  - {id: nox-1, link: line, profile: generic-text-analyzer, unit_id: 1}\n"
        "mqtt: {host: 127.0.0.1}\n", encoding="utf-8")
    config = load_config(path, env={})
    return load_driver(config.devices[0]), TextLinkClient(config.links["line"])


def values(sample) -> dict:
    return {name: (v["value"], v["quality"]) for name, v in sample_values(sample).items()}


@pytest.fixture
def pty():
    with PtyPair() as pair:
        yield pair


def test_client_opens_nothing_until_first_used_and_names_a_missing_port(tmp_path):
    client = TextLinkClient(SerialLink("rs232", str(tmp_path / "ttyUSB9"), timeout_ms=100))
    with pytest.raises(LinkDown, match="ttyUSB9 does not exist") as caught:
        client.ask(b"RD\r", Deframer(Framing()), lambda event: True)
    assert caught.value.reason == "no_connection"
    client.close()


def test_unreachable_serial_device_server_is_no_connection():
    client = TextLinkClient(TcpLink("moxa", "127.0.0.1", free_port(), timeout_ms=200))
    with pytest.raises(LinkDown):
        client.listen(Deframer(Framing()), lambda event: True)


def test_request_gets_the_instrument_answer_on_a_pty(tmp_path, pty):
    sim = TextDeviceSim(NoxAnalyzerSim(clock=lambda: FIXED), pty.device_path).start()
    driver, client = nox_driver(tmp_path, f"{{type: serial, port: {pty.agent_path}, "
                                          "protocol: text, timeout_ms: 1000}")
    try:
        sample = driver.poll(client, utc_now())
    finally:
        client.close()
        sim.stop()
    assert values(sample) == {"no": (12.3, "GOOD"), "no2": (4.5, "GOOD"),
                              "nox": (16.8, "GOOD"), "so2": (3.1, "GOOD")}
    assert sample.instrument_time == datetime(2024, 5, 6, 6, 30, tzinfo=UTC)
    assert sim.requests == [b"\x02DA01\x03"]


def test_late_answer_is_discarded_not_taken_for_the_next_one(tmp_path, pty):
    model = NoxAnalyzerSim(clock=lambda: FIXED)
    sim = TextDeviceSim(model, pty.device_path).start()
    driver, client = nox_driver(tmp_path, f"{{type: serial, port: {pty.agent_path}, "
                                          "protocol: text, timeout_ms: 300}")
    try:
        sim.queue("silent")
        with pytest.raises(DeviceTimeout):
            driver.poll(client, utc_now())
        model.values["no"] = 99.9
        sim.send_raw(model.record(corrupt=False))  # the answer arrives after the timeout
        model.values["no"] = 12.3
        assert values(driver.poll(client, utc_now()))["no"] == (12.3, "GOOD")
    finally:
        client.close()
        sim.stop()


def test_bad_checksum_and_a_reset_are_typed_errors_then_answers_resume(tmp_path, pty):
    sim = TextDeviceSim(NoxAnalyzerSim(clock=lambda: FIXED), pty.device_path).start()
    driver, client = nox_driver(tmp_path, f"{{type: serial, port: {pty.agent_path}, "
                                          "protocol: text, timeout_ms: 300}")
    outcomes = []
    try:
        sim.queue("bad_checksum", "reset", "noise")
        for _ in range(4):
            try:
                outcomes.append(values(driver.poll(client, utc_now()))["no"])
            except (BadFrame, DeviceTimeout) as err:
                outcomes.append(err.reason)
    finally:
        client.close()
        sim.stop()
    assert outcomes == ["bad_checksum", "timeout", (12.3, "GOOD"), (12.3, "GOOD")]
    assert driver.events["bad_checksum"] == 1


def test_dropped_tcp_connection_is_no_connection_then_reconnects(tmp_path):
    sim = TextDeviceSim(NoxAnalyzerSim(clock=lambda: FIXED)).start()
    driver, client = nox_driver(tmp_path, f"{{type: tcp, host: 127.0.0.1, port: "
                                          f"{sim.tcp_port}, protocol: text, timeout_ms: 1000}}")
    try:
        assert values(driver.poll(client, utc_now()))["no"] == (12.3, "GOOD")
        sim.drop_connection()
        with pytest.raises(LinkDown):
            for _ in range(3):  # the close may land before or during the next exchange
                driver.poll(client, utc_now())
        assert values(driver.poll(client, utc_now()))["no"] == (12.3, "GOOD")
    finally:
        client.close()
        sim.stop()


def test_stream_poll_takes_what_arrived_and_keeps_a_partial_record(tmp_path, pty):
    model = H2sStreamSim(period_s=None)  # sends only when told to
    sim = TextDeviceSim(model, pty.device_path).start()
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {id: ST01}\n"
        f"links: {{line: {{type: serial, port: {pty.agent_path}, protocol: text, "
        "timeout_ms: 300}}\n"
        "devices:\n"
        "  - id: h2s-1\n    link: line\n    driver: serial-text\n    interval_s: 1\n"
        "    text:\n      mode: stream\n"
        "      framing: {type: line, start: $, terminator: CRLF}\n"
        "      checksum: {type: xor8, separator: '*'}\n"
        "      pattern: '^H2S,(?P<h2s>[^,]*),ppm,(?P<status>\\w+)$'\n"
        "      channels: [{name: h2s, unit: ppm}]\n"
        "mqtt: {host: 127.0.0.1}\n", encoding="utf-8")
    config = load_config(path, env={})
    driver, client = load_driver(config.devices[0]), TextLinkClient(config.links["line"])
    try:
        with pytest.raises(DeviceTimeout):  # opens the port; nothing was sent yet
            driver.poll(client, utc_now())
        model.value = 0.021
        first = model.record(False)
        model.value = 0.022
        second = model.record(False)
        sim.send_raw(first + second[:5])
        assert values(driver.poll(client, utc_now())) == {"h2s": (0.021, "GOOD")}
        sim.send_raw(second[5:])
        assert values(driver.poll(client, utc_now())) == {"h2s": (0.022, "GOOD")}
    finally:
        client.close()
        sim.stop()


def test_stream_instrument_sim_keeps_sending_until_stopped(pty):
    model = H2sStreamSim(period_s=0.01)
    sim = TextDeviceSim(model, pty.device_path).start()
    try:
        wait_until(lambda: model.sent >= 5, 10, "five streamed records")
    finally:
        sim.stop()
