"""A driver kind is a folder and one registry line (drivers/README.md).

Proof: a third kind written here (settings, reader and driver, nothing else) is
registered, a station file using it goes through the real loader, and one poll over a
real pseudo-terminal gives its reading. The loader's own messages then know the kind.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edge_agent_drivers import registry
from edge_agent_drivers.serialtext.protocol.client import TextLinkClient
from edge_agent_drivers.serialtext.protocol.framing import Deframer, Frame, FrameEvent
from edge_agent_drivers.serialtext.protocol.settings import Framing
from support.station import write_station

from edge_agent.config.errors import ConfigError
from edge_agent.config.fields import Section
from edge_agent.config.loader import load_config
from edge_agent.config.schema import Device, LinkProtocol
from edge_agent.driver import load_driver
from edge_agent.driverkind import DeviceEntry, DriverKind
from edge_agent.link import DeviceTimeout
from edge_agent.model import Quality, Reading, Sample
from edge_agent.tools.sim.ptypair import PtyPair

# -- the third kind: a thermometer that answers "T?<CR>" with "21.5<CR><LF>" ----------------


@dataclass(frozen=True)
class ThermoSettings:
    command: bytes
    unit: str


def read_thermo_unit_id(sec: Section, link_type: str | None) -> int | None:
    return 0


def read_thermo_settings(entry: DeviceEntry) -> ThermoSettings | None:
    command = entry.layers.pick("command").text("command", what="the question, e.g. T?")
    unit = entry.layers.pick("unit").text("unit", "degC")
    if command is None or unit is None:
        return None
    return ThermoSettings(command.encode("ascii") + b"\r", unit)


class ThermoDriver:
    def __init__(self, device: Device) -> None:
        assert isinstance(device.settings, ThermoSettings)
        self.device = device
        self.settings = device.settings
        self.deframer = Deframer(Framing())

    def poll(self, link: TextLinkClient, now: datetime) -> Sample:
        events = link.ask(self.settings.command, self.deframer, self._answer)
        frames = [event for event in events if isinstance(event, Frame)]
        if not frames:
            raise DeviceTimeout(f"{self.device.id}: no answer")
        value = float(frames[-1].body)
        return Sample(self.device.id, now, (self._reading(now, value, Quality.GOOD),))

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        return Sample(self.device.id, now, (self._reading(now, None, Quality.BAD, reason),))

    def _reading(self, now: datetime, value: float | None, quality: Quality,
                 reason: str | None = None) -> Reading:
        return Reading(self.device.id, "temperature", value, self.settings.unit, quality, now,
                       reason)

    @staticmethod
    def _answer(event: FrameEvent) -> bool:
        return isinstance(event, Frame)


THERMO = DriverKind("thermo", ThermoSettings, ("command", "unit"), read_thermo_unit_id,
                    read_thermo_settings, ThermoDriver, frozenset({LinkProtocol.TEXT}))

# -------------------------------------------------------------------------------------------


@pytest.fixture
def thermo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registry line a new kind adds (undone after the test)."""
    monkeypatch.setitem(registry.KINDS, THERMO.name, THERMO)


@pytest.fixture
def thermometer() -> Iterator[str]:
    """A thermometer on the device side of a pseudo-terminal pair: answers one T? with
    21.5; yields the path the agent opens."""
    with PtyPair() as pty:
        port = os.open(pty.device_path, os.O_RDWR | os.O_NOCTTY)

        def answer() -> None:
            asked = b""
            while not asked.endswith(b"\r"):
                try:
                    asked += os.read(port, 64)
                except OSError:  # the pair closed: this test polled nothing
                    return
            if asked == b"T?\r":
                os.write(port, b"21.5\r\n")

        responder = threading.Thread(target=answer, daemon=True)
        responder.start()
        try:
            yield pty.agent_path
        finally:
            responder.join(timeout=5)
            os.close(port)


def station(path: Path, port: str, device: dict[str, object],
            protocol: str = "text") -> Path:
    return write_station(path, broker_port=1883, links={
        "rs232": {"type": "serial", "port": port, "protocol": protocol, "timeout_ms": 2000},
    }, devices=[{"id": "thermo-1", "link": "rs232", "interval_s": 5, **device}])


def test_a_registered_third_kind_loads_and_polls_once(tmp_path, thermo_registered, thermometer):
    path = station(tmp_path / "station.yaml", thermometer,
                   {"driver": "thermo", "command": "T?", "timeout_ms": 2000})
    device = load_config(path, env={}).devices[0]
    assert device.driver == "thermo"
    assert device.settings == ThermoSettings(b"T?\r", "degC")
    driver = load_driver(device)
    assert isinstance(driver, ThermoDriver)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    client = TextLinkClient(load_config(path, env={}).links["rs232"])
    try:
        sample = driver.poll(client, now)
    finally:
        client.close()
    assert [(r.channel, r.value, r.unit, r.quality) for r in sample.readings] == \
        [("temperature", 21.5, "degC", Quality.GOOD)]


def test_the_loader_names_a_registered_kind_and_its_link_protocols(tmp_path,
                                                                   thermo_registered):
    path = station(tmp_path / "wrong.yaml", "/dev/ttyUSB0", {"driver": "thermos", "unit_id": 1})
    with pytest.raises(ConfigError) as unknown:
        load_config(path, env={})
    assert ("devices[0].driver: expected modbus, serial-text or thermo, found 'thermos'"
            in str(unknown.value))
    path = station(tmp_path / "rtu.yaml", "/dev/ttyUSB0", {"driver": "thermo", "command": "T?"},
                   protocol="modbus-rtu")
    with pytest.raises(ConfigError) as wrong_link:
        load_config(path, env={})
    assert ("devices[0].link: link 'rs232' speaks modbus-rtu; driver thermo needs a link "
            "with protocol: text") in str(wrong_link.value)


def test_keys_of_other_kinds_are_refused_on_a_third_kind_device(tmp_path, thermo_registered):
    path = station(tmp_path / "station.yaml", "/dev/ttyUSB0", {
        "driver": "thermo", "command": "T?", "channels": [{"name": "t", "address": 0}],
        "text": {"request": "T?"}})
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={})
    message = str(refused.value)
    assert ("devices[0].channels: channels is a setting of driver modbus; driver thermo "
            "does not read it") in message
    assert ("devices[0].text: text is a setting of driver serial-text; driver thermo "
            "does not read it") in message


def test_a_reader_returning_another_type_than_registered_is_a_programming_error(
        tmp_path, monkeypatch):
    """Caught at load, naming the kind, instead of a driver failing on its first poll."""
    monkeypatch.setitem(registry.KINDS, "thermo", replace(THERMO, settings_type=Device))
    path = station(tmp_path / "station.yaml", "/dev/ttyUSB0",
                   {"driver": "thermo", "command": "T?"})
    with pytest.raises(TypeError, match="driver kind thermo: its reader returned "
                                        "ThermoSettings, not Device"):
        load_config(path, env={})


def test_an_unregistered_kind_is_refused(tmp_path):
    path = station(tmp_path / "station.yaml", "/dev/ttyUSB0",
                   {"driver": "thermo", "command": "T?"})
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={})
    assert "devices[0].driver" in str(refused.value)
    assert "devices[0].command: unknown setting" in str(refused.value)


def test_a_text_or_modbus_device_refuses_a_third_kinds_keys_naming_it(tmp_path,
                                                                       thermo_registered):
    """Each kind's own refusal takes the owners of other keys from the registry, so a
    key of a newly registered kind is refused, not silently ignored."""
    path = station(tmp_path / "text.yaml", "/dev/ttyUSB0", {
        "driver": "serial-text", "command": "T?",
        "text": {"request": "RD<CR>", "delimiter": ",", "channels": [{"name": "a", "field": 1}]}})
    with pytest.raises(ConfigError) as text:
        load_config(path, env={})
    assert ("devices[0].command: for driver serial-text, command is a Thermo setting; it "
            "does not apply to a text protocol") in str(text.value)
    path = station(tmp_path / "modbus.yaml", "/dev/ttyUSB0", {
        "unit_id": 1, "command": "T?", "channels": [{"name": "a", "address": 0}]},
        protocol="modbus-rtu")
    with pytest.raises(ConfigError) as modbus:
        load_config(path, env={})
    assert "devices[0].command: command: is only for driver: thermo" in str(modbus.value)


def test_a_modbus_device_on_a_text_link_is_sent_to_the_kind_registered_for_it(
        tmp_path, monkeypatch):
    monkeypatch.delitem(registry.KINDS, "serial-text")
    monkeypatch.setitem(registry.KINDS, THERMO.name, THERMO)
    path = station(tmp_path / "station.yaml", "/dev/ttyUSB0", {
        "unit_id": 1, "channels": [{"name": "a", "address": 0}]})
    with pytest.raises(ConfigError) as wrong_link:
        load_config(path, env={})
    assert ("devices[0].link: link 'rs232' has protocol: text (an instrument's own ASCII "
            "protocol); use driver: thermo for this device, or a Modbus protocol on the "
            "link") in str(wrong_link.value)
