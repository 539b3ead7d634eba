"""Profiles as a technician uses them: name a model, override what differs at this
station, and get exactly the profile plus those changes."""

from __future__ import annotations

from pathlib import Path

from edge_agent_drivers.modbus.settings import DataType, RegisterKind, TriggerKind

from edge_agent.config.loader import load_config

STATION = """\
station: {id: ST01}
links:
  lan: {type: tcp, host: 10.0.0.5}
  bus: {type: serial, port: /dev/ttyUSB0}
devices:
%s
mqtt: {host: broker.local}
"""


def load_devices(tmp_path: Path, devices: str):
    path = tmp_path / "station.yaml"
    path.write_text(STATION % devices)
    return {device.id: device for device in load_config(path, env={}).devices}


def test_override_changes_only_the_settings_written(tmp_path):
    devices = load_devices(tmp_path, """\
  - id: gc
    link: lan
    unit_id: 1
    profile: generic-gc
    channels:
      - {name: benzene, unit: ug/m3, scale: 3.19}
      - {name: xylenes, enabled: false}
      - {name: oven_temp, number: 40041, type: float32, unit: degC}
""")
    gc = devices["gc"]
    by_name = {ch.name: ch for ch in gc.settings.channels}
    assert "xylenes" not in by_name
    benzene = by_name["benzene"]
    assert (benzene.unit, benzene.scale, benzene.address, benzene.data_type.value,
            benzene.word_order.value) == ("ug/m3", 3.19, 12, "float32", "CDAB")
    assert benzene.valid_range is not None and benzene.valid_range.high == 100000
    oven = by_name["oven_temp"]
    assert (oven.address, oven.register, oven.word_order.value) == (40, RegisterKind.HOLDING,
                                                                    "CDAB")
    assert gc.interval_s == 5 and gc.settings.trigger is not None
    assert gc.settings.trigger.kind is TriggerKind.COUNTER
    assert gc.settings.stream_channel == "stream"
    assert gc.profile == "generic-gc"


def test_blocks_are_merged_key_by_key(tmp_path):
    devices = load_devices(tmp_path, """\
  - id: gc
    link: lan
    unit_id: 1
    profile: generic-gc
    read: {max_registers: 10}
    clock: {utc_offset: "+08:00"}
""")
    gc = devices["gc"]
    limits = gc.settings.limits
    assert (limits.max_registers, limits.max_gap) == (10, 4)  # max_gap: the profile's
    assert gc.settings.clock is not None and gc.settings.clock.utc_offset_min == 480
    assert gc.settings.clock.channels == ("year", "month", "day", "hour", "minute", "second")


def test_device_word_order_applies_to_profile_channels_without_their_own(tmp_path):
    devices = load_devices(tmp_path, """\
  - {id: gc, link: lan, unit_id: 1, profile: generic-gc, word_order: ABCD}
""")
    benzene = next(ch for ch in devices["gc"].settings.channels if ch.name == "benzene")
    assert benzene.word_order.value == "ABCD"


def test_switching_off_a_sensor_drops_the_status_rules_that_name_only_it(tmp_path):
    devices = load_devices(tmp_path, """\
  - id: det
    link: bus
    unit_id: 1
    profile: generic-gas-detector
    channels:
      - {name: h2s, enabled: false}
""")
    det = devices["det"]
    faults = next(ch for ch in det.settings.channels if ch.name == "sensor_faults")
    targets = {bit: rule.channels for bit, rule in faults.quality_bits}
    assert targets == {0: ("o2",), 1: ("co",), 3: ("lel",)}
    assert "h2s" not in {ch.name for ch in det.settings.channels}


def test_shipped_profiles_all_load_and_fit_their_reads(tmp_path):
    devices = load_devices(tmp_path, """\
  - {id: gc, link: lan, unit_id: 1, profile: generic-gc}
  - {id: ng, link: lan, unit_id: 2, profile: daniel-enron-gc}
  - {id: ftir, link: lan, unit_id: 3, profile: generic-ftir}
  - {id: det, link: bus, unit_id: 1, profile: generic-gas-detector}
""")
    from edge_agent_drivers.modbus.plan import plan

    reads = {device_id: plan(device.settings.channels, device.settings.limits)
             for device_id, device in devices.items()}
    # A GC's and an FTIR's result block is read in one request, so a poll never mixes
    # two analyses (see drivers/gc/README.md).
    assert len(reads["gc"]) == 1 and len(reads["ftir"]) == 1
    assert all(ch.data_type is DataType.FLOAT32 for ch in devices["ng"].settings.channels
               if ch.enron and ch.address >= 7001)
