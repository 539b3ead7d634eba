"""The serial-text driver replays its recorded fixtures (drivers/serialtext/fixtures):
every poll's bytes, fed whole, in halves and byte by byte, give the golden readings; the
request the driver sends is exactly the recorded one; and the request/response fixtures
play the same over a real pseudo-terminal pair."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from edge_agent_drivers.serialtext.protocol.client import TextLinkClient
from edge_agent_drivers.serialtext.protocol.escapes import show
from edge_agent_drivers.serialtext.protocol.settings import TextMode
from support.splits import SPLITS, pieces
from support.textreplay import (
    ReplayInstrument,
    fixture_device,
    fixture_files,
    load_fixture,
    sample_values,
)

from edge_agent.driver import load_driver
from edge_agent.link import LinkError
from edge_agent.model import iso_utc
from edge_agent.tools.sim.ptypair import PtyPair

NOW = datetime(2024, 5, 6, 6, 31, tzinfo=UTC)
FIXTURES = fixture_files()


def outcome(driver, events) -> dict:
    """What a poll gives, in the fixture's terms: values and time, or the error reason."""
    try:
        sample = driver.sample_from(events, NOW)
    except LinkError as err:
        return {"error": err.reason}
    result = {"values": sample_values(sample)}
    if sample.instrument_time is not None:
        result["instrument_time"] = iso_utc(sample.instrument_time)
    return result


def expected(poll: dict) -> dict:
    want = dict(poll["expect"])
    if "values" in want:
        want["values"] = {name: {**value, "value": pytest.approx(value["value"])}
                          if value["value"] is not None else value
                          for name, value in want["values"].items()}
    return want


def test_every_fixture_is_found_and_documents_itself():
    assert {path.name for path in FIXTURES} >= {"nox_request.json", "h2s_stream.json",
                                                  "dust_crc_raw.json"}
    for path in FIXTURES:
        fixture = load_fixture(path)
        for poll in fixture["polls"]:
            assert show(bytes.fromhex(poll["rx"]), limit=10_000) == poll["rx_shown"], poll
            assert poll["note"] and poll["expect"]


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.stem)
def test_fixture_bytes_give_the_golden_readings(path, how, tmp_path):
    fixture = load_fixture(path)
    device, _ = fixture_device(fixture, tmp_path)
    driver = load_driver(device)
    for poll in fixture["polls"]:
        if device.settings.mode is TextMode.REQUEST:
            assert device.settings.request == bytes.fromhex(poll["tx"]), poll["note"]
            driver.deframer.reset()  # the client drops stale input before each request
        else:
            assert poll["tx"] == "", "a stream instrument is never sent anything"
        events = []
        for piece in pieces(bytes.fromhex(poll["rx"]), how):
            events += driver.deframer.feed(piece)
        assert outcome(driver, events) == expected(poll), poll["note"]


REQUEST_FIXTURES = [path for path in FIXTURES if load_fixture(path)["polls"][0]["tx"]]


@pytest.mark.parametrize("path", REQUEST_FIXTURES, ids=lambda path: path.stem)
def test_request_fixture_replays_over_a_pty_pair(path, tmp_path):
    fixture = load_fixture(path)
    with PtyPair() as pty:
        device, link = fixture_device(fixture, tmp_path, pty.agent_path, timeout_ms=2000)
        driver = load_driver(device)
        instrument = ReplayInstrument(pty.device_path, fixture["polls"]).start()
        client = TextLinkClient(link)
        try:
            results = []
            for _ in fixture["polls"]:
                try:
                    sample = driver.poll(client, NOW)
                except LinkError as err:
                    results.append({"error": err.reason})
                    continue
                result = {"values": sample_values(sample)}
                if sample.instrument_time is not None:
                    result["instrument_time"] = iso_utc(sample.instrument_time)
                results.append(result)
        finally:
            client.close()
            instrument.stop()
    assert instrument.mismatches == []
    assert results == [expected(poll) for poll in fixture["polls"]]
