"""The reload diff as a table: running config, one edit, what restarts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings

from edge_agent.config.schema import (
    Device,
    HealthConfig,
    Hj212Config,
    MqttConfig,
    PollingPolicy,
    Retention,
    SerialLink,
    StationConfig,
    StoreConfig,
    Synchronous,
    TcpLink,
    UplinkConfig,
)
from edge_agent.reload import ReloadPlan, plan_reload

H2S = Channel("h2s", 0, scale=0.1, unit="ppm")


def device(device_id: str, link: str, unit_id: int, **changes) -> Device:
    return replace(Device(device_id, link, unit_id, 2.0, ModbusSettings((H2S,))), **changes)


BASE = StationConfig(
    station_id="st-1",
    links={"gw": TcpLink("gw", "10.0.0.5"), "bus": SerialLink("bus", "/dev/ttyUSB0"),
           "spare": TcpLink("spare", "10.0.0.9")},
    devices=(device("gc-1", "gw", 1), device("det-1", "bus", 1), device("det-2", "bus", 2)),
    store=StoreConfig(Path("/var/lib/edge-agent/outbox.sqlite3")),
    mqtt=MqttConfig("mqtt.example.net"),
)


def with_devices(*devices: Device) -> StationConfig:
    return replace(BASE, devices=devices)


def with_links(**links) -> StationConfig:
    return replace(BASE, links={**BASE.links, **links})


GC, DET1, DET2 = BASE.devices

CASES = {
    "identical": (BASE, ReloadPlan()),
    "an equal but separately built file": (
        replace(BASE, devices=tuple(replace(d) for d in BASE.devices),
                links=dict(BASE.links)), ReloadPlan()),
    "device interval changed: only its link restarts": (
        with_devices(GC, replace(DET1, interval_s=5.0), DET2),
        ReloadPlan(("bus",), ("bus",), devices_changed=("det-1",))),
    "channel scale changed": (
        with_devices(replace(GC, settings=ModbusSettings((replace(H2S, scale=1.0),))), DET1, DET2),
        ReloadPlan(("gw",), ("gw",), devices_changed=("gc-1",))),
    "device added on a bus": (
        with_devices(GC, DET1, DET2, device("det-3", "bus", 3)),
        ReloadPlan(("bus",), ("bus",), devices_added=("det-3",))),
    "device removed from a bus": (
        with_devices(GC, DET1),
        ReloadPlan(("bus",), ("bus",), devices_removed=("det-2",))),
    "polling order on a bus changed": (
        with_devices(GC, DET2, DET1), ReloadPlan(("bus",), ("bus",))),
    "last device of a link removed: its poller stops": (
        with_devices(DET1, DET2), ReloadPlan(pollers_stopped=("gw",),
                                             devices_removed=("gc-1",))),
    "device on a link that had none: a poller starts": (
        with_devices(GC, DET1, DET2, device("ftir-1", "spare", 1)),
        ReloadPlan(pollers_started=("spare",), devices_added=("ftir-1",))),
    "device moved to another link: both restart": (
        with_devices(GC, DET1, replace(DET2, link="gw")),
        ReloadPlan(("bus", "gw"), ("bus", "gw"), devices_changed=("det-2",))),
    "link settings changed: the link restarts, its devices are unchanged": (
        with_links(bus=SerialLink("bus", "/dev/ttyUSB0", baudrate=19200)),
        ReloadPlan(("bus",), ("bus",))),
    "unused link changed: nothing restarts": (
        with_links(spare=TcpLink("spare", "10.0.0.10")), ReloadPlan()),
    "mqtt host changed: forwarder reconnects": (
        replace(BASE, mqtt=MqttConfig("mqtt2.example.net")),
        ReloadPlan(uplinks_reconfigured=("default",))),
    "station id changed: forwarder reconnects": (
        replace(BASE, station_id="st-2"), ReloadPlan(uplinks_reconfigured=("default",))),
    "polling policy changed: applied in place": (
        replace(BASE, polling=PollingPolicy(retries=3)), ReloadPlan(polling=True)),
    "retention changed: applied in place": (
        replace(BASE, store=replace(BASE.store, retention=Retention(max_rows=10))),
        ReloadPlan(retention=True)),
    "synchronous changed: applied in place": (
        replace(BASE, store=replace(BASE.store, synchronous=Synchronous.NORMAL)),
        ReloadPlan(synchronous=True)),
}


@pytest.mark.parametrize("new, expected", CASES.values(), ids=CASES.keys())
def test_plan(new, expected):
    assert plan_reload(BASE, new) == expected


def test_outbox_path_change_refuses_the_whole_reload():
    new = replace(BASE, store=replace(BASE.store, path=Path("/data/outbox.sqlite3")),
                  devices=(GC, DET1), mqtt=MqttConfig("other"))
    plan = plan_reload(BASE, new)
    assert (plan.pollers_stopped, plan.forwarder, plan.devices_removed) == ((), False, ())
    assert len(plan.refused) == 1
    assert "store.path changed from /var/lib/edge-agent/outbox.sqlite3 to " \
           "/data/outbox.sqlite3" in plan.refused[0]
    assert "restart the service" in plan.refused[0]


def test_health_endpoint_change_refuses_the_whole_reload():
    plan = plan_reload(BASE, replace(BASE, health=HealthConfig(port=9200)))
    assert plan.refused == ("health changed from 127.0.0.1:9108 to 127.0.0.1:9200: the "
                            "endpoint cannot move while the agent runs; restart the "
                            "service to use it",)


@pytest.mark.parametrize("plan, line", [
    (ReloadPlan(), "nothing changed"),
    (ReloadPlan(("bus",), ("bus",), devices_changed=("det-1",),
                uplinks_reconfigured=("default",)),
     "devices changed: det-1; pollers restarted: bus; mqtt: reconnecting with the new "
     "settings"),
    (ReloadPlan(("gw",), ("spare",), devices_added=("ftir-1",), devices_removed=("gc-1",),
                retention=True),
     "devices added: ftir-1; devices removed: gc-1; pollers started: spare; pollers "
     "stopped: gw; retention limits updated"),
])
def test_summary_is_one_line_naming_every_change(plan, line):
    assert plan.summary() == line


CITY = UplinkConfig("city", "mqtt", None, MqttConfig("city.example.net"))
WITH_CITY = replace(BASE, uplinks=(CITY,))
PROVINCE = UplinkConfig("province", "hj212", None, None,
                        Hj212Config("platform.example", 9010, "MN0001", "22"))
UPLINK_CASES = {
    "uplink added: it starts, the others are not touched": (
        BASE, WITH_CITY, ReloadPlan(uplinks_started=("city",), routes=True)),
    "uplink removed: it stops": (
        WITH_CITY, BASE, ReloadPlan(uplinks_stopped=("city",), routes=True)),
    "one uplink's broker changed: only it reconnects": (
        WITH_CITY, replace(BASE, uplinks=(replace(CITY, mqtt=MqttConfig("city2.example")),)),
        ReloadPlan(uplinks_reconfigured=("city",))),
    "an uplink's devices changed: routes only, no reconnect": (
        WITH_CITY, replace(BASE, uplinks=(replace(CITY, devices=("gc-1",)),)),
        ReloadPlan(uplinks_rerouted=("city",), routes=True)),
    "an uplink's kind changed: a new uplink under that name": (
        WITH_CITY, replace(BASE, uplinks=(replace(CITY, kind="hj212"),)),
        ReloadPlan(uplinks_started=("city",), uplinks_stopped=("city",))),
    "an HJ 212 platform's settings changed: only it reconnects": (
        replace(BASE, uplinks=(PROVINCE,)),
        replace(BASE, uplinks=(replace(PROVINCE, hj212=replace(PROVINCE.hj212, port=9011)),)),
        ReloadPlan(uplinks_reconfigured=("province",))),
    "station id changed: every uplink reconnects": (
        WITH_CITY, replace(WITH_CITY, station_id="st-2"),
        ReloadPlan(uplinks_reconfigured=("default", "city"))),
}


@pytest.mark.parametrize("old, new, expected", UPLINK_CASES.values(), ids=UPLINK_CASES.keys())
def test_plan_names_the_uplinks_it_starts_stops_or_reconnects(old, new, expected):
    assert plan_reload(old, new) == expected


def test_summary_names_each_uplink_that_changes():
    plan = ReloadPlan(uplinks_started=("province",), uplinks_reconfigured=("default", "city"))
    assert plan.summary() == ("mqtt: reconnecting with the new settings; uplink city: "
                              "reconnecting with the new settings; uplinks started: province")


def test_summary_names_an_uplink_whose_devices_changed_instead_of_nothing_changed():
    """Only ``devices:`` of an uplink changed: the reload applies it (new routes), and its
    one log line must say so, not "nothing changed" (as it did)."""
    plan = plan_reload(WITH_CITY, replace(BASE, uplinks=(replace(CITY, devices=("gc-1",)),)))
    assert plan.summary() == "uplinks carrying other devices: city"
