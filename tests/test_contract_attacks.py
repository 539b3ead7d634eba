"""Attacks on the reliability contract (docs: architecture.md, "The reliability contract").

Real parts only: a private Mosquitto per test, pymodbus SimServers, the agent as a child
process (SIGKILL, SIGTERM), the outbox read from disk with plain sqlite3. Every test ends
by reconciling three sources:

* what the outbox accepted (``device_seq.last_seq``: samples 1..n were committed),
* what is still in the outbox (accepted, durable, not delivered yet: not lost),
* what a validating subscriber received, plus the gap events (samples dropped on purpose).

The broker used here lifts Mosquitto's per-client queue limits, so a subscriber that is
briefly slower than the agent cannot lose messages inside the broker and make the agent
look guilty.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.blackhole import BlackHoleProxy
from support.collector import Collector
from support.station import AgentProcess, accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.tools.sim.broker import Mosquitto
from edge_agent.tools.sim.simserver import SimServer, SimUnit

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Like conftest's broker, but Mosquitto never drops QoS 1 messages queued for a slow
    or reconnecting subscriber (default: 20 in flight + 1000 queued per client)."""
    server = Mosquitto(tmp_path / "broker", persistence=True,
                       listener_options="max_queued_messages 0\n"
                                        "max_inflight_messages 0\n").start()
    yield server
    server.stop()


@pytest.fixture
def gateway() -> Iterator[SimServer]:
    """A Modbus TCP gateway with 20 instruments behind it (unit ids 1..20)."""
    server = SimServer([SimUnit(unit, holding={0: unit, 1: 100 + unit, 2: 200 + unit,
                                               3: 300 + unit})
                        for unit in range(1, 21)]).start()
    yield server
    server.stop()


@pytest.fixture
def spawn() -> Iterator[Callable[[Path, Path], AgentProcess]]:
    """Start the agent as a child process and wait until it runs; whatever is still alive
    when the test ends (a failed assertion) is SIGKILLed, so no agent outlives its test."""
    started: list[AgentProcess] = []

    def start(config: Path, log_path: Path) -> AgentProcess:
        agent = AgentProcess(config, log_path).start()
        started.append(agent)
        return agent.wait_running()

    yield start
    for agent in started:
        if agent.alive():
            agent.kill()


# -- station files --------------------------------------------------------------------------


def station(tmp_path: Path, name: str, broker_port: int, gateway: SimServer, *,
            units: tuple[int, ...] = (1, 2), links: int = 1, interval_s: float = 0.05,
            unit_text: str = "", mqtt: dict | None = None, store: dict | None = None) -> Path:
    """A station file; every file in ``tmp_path`` shares one outbox (tmp_path/outbox.sqlite3),
    so a second file is the same station restarted with other settings."""
    link_names = [f"gw-{index}" for index in range(links)]
    links_doc = {link: {"type": "tcp", "host": "127.0.0.1", "port": gateway.tcp_port,
                        "timeout_ms": 500} for link in link_names}
    devices = [{"id": f"dev-{unit}", "link": link_names[index % links], "unit_id": unit,
                "interval_s": interval_s,
                "channels": [{"name": f"ch{address}", "address": address, "type": "uint16",
                              "unit": unit_text} for address in range(4)]}
               for index, unit in enumerate(units)]
    return write_station(tmp_path / name, links=links_doc, devices=devices,
                         broker_port=broker_port, mqtt=mqtt, store=store)


# -- reading the outbox from disk (read-only, while the agent may be running) ----------------


def query(outbox: Path, sql: str, args: tuple = ()) -> list[tuple]:
    if not outbox.exists():
        return []
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def committed(outbox: Path, device: str = "dev-1") -> int:
    rows = query(outbox, "SELECT last_seq FROM device_seq WHERE device_id = ?", (device,))
    return int(rows[0][0]) if rows else 0


def committed_total(outbox: Path) -> int:
    rows = query(outbox, "SELECT COALESCE(SUM(last_seq), 0) FROM device_seq")
    return int(rows[0][0]) if rows else 0


def dropped_total(outbox: Path) -> int:
    rows = query(outbox, "SELECT value FROM meta WHERE key = 'dropped_total'")
    return int(rows[0][0]) if rows else 0


def claimed_messages(outbox: Path) -> dict[str, list[tuple[str, int, str]]]:
    """Messages claimed (published or about to be) and not acknowledged: msg id -> rows."""
    claimed: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for msg_id, device, seq, entry_id in query(
            outbox, "SELECT c.msg_id, o.device_id, o.seq, o.entry_id FROM outbox o "
                    "JOIN claims c ON c.device_id = o.device_id "
                    "AND o.id BETWEEN c.first_row AND c.last_row "
                    "WHERE o.kind = 'sample' ORDER BY o.id"):
        claimed[msg_id].append((device, seq, entry_id))
    return dict(claimed)


def waiting_samples(outbox: Path) -> set[tuple[str, int]]:
    """Samples still in the outbox: accepted and durable, just not delivered yet."""
    return set(query(outbox, "SELECT device_id, seq FROM outbox WHERE kind = 'sample'"))


# -- reconciling ------------------------------------------------------------------------------


def gap_events(collector: Collector) -> list[dict]:
    """Gap events as received, a re-sent one (same id) counted once."""
    seen: dict[str, dict] = {}
    for gap in list(collector.gaps):
        seen.setdefault(gap["id"], gap)
    return list(seen.values())


def dropped_seqs(collector: Collector, device: str) -> set[int]:
    """Sequence numbers announced as dropped; each gap's range must be exactly its count
    (a range that also covers delivered samples does not say which ones were lost)."""
    dropped: set[int] = set()
    for gap in gap_events(collector):
        if gap["device"] != device or gap["first_seq"] is None:
            continue
        span = set(range(gap["first_seq"], gap["last_seq"] + 1))
        if len(span) != gap["count"]:
            inside = sorted((r.sample["seq"], r.historical)
                            for r in collector.first_deliveries(device) if r.sample["seq"] in span)
            raise AssertionError(
                f"{device}: gap event {gap['first_seq']}..{gap['last_seq']} ({gap['first_at']} "
                f"to {gap['last_at']}) announces {gap['count']} dropped samples but spans "
                f"{len(span)} sequence numbers; {len(inside)} samples inside it were delivered "
                f"(seq, historical): {inside[:3]} ... {inside[-3:]}; gap: {gap}")
        assert not dropped & span, f"{device}: two gap events announce the same samples"
        dropped |= span
    return dropped


def reconcile(collector: Collector, outbox: Path, *, timeout_s: float = 60) -> dict:
    """Every accepted sample arrived, is still waiting in the outbox, or was announced as
    dropped; one seq is one sample; a sample always travels in the same message."""
    accepted = accepted_seqs(outbox)
    assert accepted, "nothing was accepted"
    waiting = waiting_samples(outbox)
    for device, last in accepted.items():
        expected = set(range(1, last + 1)) - {s for d, s in waiting if d == device}

        def arrived(c: Collector, d: str = device, want: set[int] = expected) -> bool:
            return want <= set(c.seqs(d)) | dropped_seqs(c, d)

        collector.wait_for(arrived, timeout_s, f"{device}: {len(expected)} accepted samples "
                           f"delivered or announced as dropped")
    samples = list(collector.samples)
    sample_ids_by_seq: dict[tuple[str, int], set[str]] = defaultdict(set)
    msg_ids_by_sample: dict[str, set[str]] = defaultdict(set)
    for received in samples:
        sample_ids_by_seq[(received.device, received.sample["seq"])].add(received.sample["id"])
        msg_ids_by_sample[received.sample["id"]].add(received.msg_id)
    assert all(len(ids) == 1 for ids in sample_ids_by_seq.values()), \
        "one sequence number must always mean one sample"
    resent_in_new_message = {s: m for s, m in msg_ids_by_sample.items() if len(m) > 1}
    assert not resent_in_new_message, \
        f"a re-sent sample travelled in a different message: {list(resent_in_new_message)[:3]}"
    dropped_count = 0
    for device, last in accepted.items():
        received = set(collector.seqs(device))
        dropped = dropped_seqs(collector, device)
        dropped_count += len(dropped)
        both = sorted(received & dropped)
        assert not both, f"{device}: samples announced as dropped were delivered: {both[:10]}"
        assert received <= set(range(1, last + 1)), f"{device}: a sample nobody accepted"
    return {"accepted": sum(accepted.values()), "received": len(samples),
            "distinct": len(msg_ids_by_sample), "duplicates": len(samples) - len(msg_ids_by_sample),
            "waiting": len(waiting), "dropped": dropped_count}


def lanes_in_order(collector: Collector, device: str) -> dict[bool, list[int]]:
    """First deliveries of ``device`` per lane (historical or live); each must ascend."""
    lanes: dict[bool, list[int]] = defaultdict(list)
    for received in collector.first_deliveries(device):
        lanes[received.historical].append(received.sample["seq"])
    for historical, seqs in lanes.items():
        assert seqs == sorted(seqs), (
            f"{device} historical={historical}: first deliveries out of acquisition order, "
            f"e.g. {[(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b < a][:5]}")
    return lanes


def assert_no_crash(*agents: AgentProcess) -> None:
    for agent in agents:
        text = agent.log()
        assert "crashed" not in text and "Traceback" not in text, \
            f"{agent.log_path.name}: a thread died:\n{text[-4000:]}"


def stop(agent: AgentProcess, timeout_s: float = 30) -> None:
    code = agent.terminate(timeout_s)
    assert code == 0, f"exit status {code}:\n{agent.log()[-3000:]}"


def drain_leftovers(spawn: Callable, tmp_path: Path, broker: Mosquitto, gateway: SimServer,
                    units: tuple[int, ...], collector: Collector, outbox: Path) -> int:
    """What a stressed run left in the outbox must still arrive: run the station once more,
    calmly (1 s polling, default batching) on a healthy link, until every one of those
    samples has arrived or been announced as dropped. Returns how many there were."""
    left: dict[str, set[int]] = defaultdict(set)
    for device, seq in waiting_samples(outbox):
        left[device].add(seq)
    if left:
        # A short live window, like the stressed runs: rows that were backlog there must
        # not come back as live behind newer live samples (lanes are per session).
        calm = station(tmp_path, "leftovers.yaml", broker.port, gateway, units=units,
                       interval_s=1.0, mqtt={"live_window_s": 0.2})
        agent = spawn(calm, tmp_path / "agent-leftovers.log")
        collector.wait_for(
            lambda c: all(seqs <= set(c.seqs(d)) | dropped_seqs(c, d)
                          for d, seqs in left.items()),
            60, "the samples left in the outbox to arrive (or be announced as dropped)")
        stop(agent)
        assert_no_crash(agent)
    return sum(len(seqs) for seqs in left.values())


# -- 1. SIGKILL with messages stuck in a black-holed link -----------------------------------


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_sigkill_during_blackhole_resends_in_flight_with_same_ids(
        tmp_path, broker, collector, gateway, spawn, protocol):
    """The uplink goes silent with five messages in flight, the agent is SIGKILLed, the link
    comes back (delivering whatever the dead agent had left in it) and the agent restarts:
    every accepted sample arrives, and every duplicate is a sample that was in flight at
    the kill, carrying the message id it had then."""
    proxy = BlackHoleProxy(broker.port).start()
    config = station(tmp_path, "station.yaml", proxy.port, gateway,
                     mqtt={"max_inflight": 5, "max_samples_per_message": 3,
                           "protocol": protocol})
    outbox = tmp_path / "outbox.sqlite3"
    agents = []
    try:
        agents.append(spawn(config, tmp_path / "agent-1.log"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 10, 30, "data before the black hole")
        proxy.freeze()
        frozen_at = committed(outbox)
        # The window fills with messages the broker never sees, and polling goes on.
        wait_until(lambda: len(claimed_messages(outbox)) >= 5
                   and committed(outbox) >= frozen_at + 20, 30,
                   "five messages stuck in flight while polling goes on")
        agents[0].kill()
        stuck = claimed_messages(outbox)
        killed_at = committed(outbox)
        proxy.thaw()  # the dead agent's bytes still sitting in the link may arrive now
        agents.append(spawn(config, tmp_path / "agent-2.log"))
        stuck_samples = {sample_id: msg_id for msg_id, rows in stuck.items()
                         for _, _, sample_id in rows}
        collector.wait_for(lambda c: set(stuck_samples) <= {r.sample["id"] for r in c.samples},
                           60, "the samples stuck in flight at the kill")
        collector.wait_for(lambda c: max(c.seqs("dev-1")) > killed_at + 20, 60,
                           "live data after the restart")
        stop(agents[1])
    finally:
        proxy.stop()
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2), collector, outbox)
    numbers = reconcile(collector, outbox)
    for received in collector.samples:
        if received.sample["id"] in stuck_samples:
            assert received.msg_id == stuck_samples[received.sample["id"]], \
                "a sample in flight at the kill was re-sent under another message id"
    counts = Counter(r.sample["id"] for r in collector.samples)
    duplicated = {sample_id for sample_id, n in counts.items() if n > 1}
    assert duplicated <= set(stuck_samples), \
        "a duplicate arose from a message that was not in flight at the crash"
    for device in ("dev-1", "dev-2"):
        lanes_in_order(collector, device)
    assert_no_crash(*agents)
    print(f"\nMQTT {protocol}: stuck messages {len(stuck)} ({len(stuck_samples)} samples); "
          f"leftovers drained after a restart {leftovers}; {numbers}")


# -- 2. broker SIGKILLed again and again while a backlog drains -----------------------------

BROKER_KILLS = 4


def broker_flushed_to_collector(broker: Mosquitto, collector: Collector, tag: str) -> None:
    """Publish a marker through the broker and wait until the subscriber has it. Mosquitto
    hands a subscriber its messages in the order it received them, so then everything the
    broker received before the marker (and acknowledged) is out of its memory."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"probe-{tag}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        marker = {"v": 1, "station": "probe", "state": "online", "agent": tag}
        client.publish("edge/probe/status", json.dumps(marker), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    collector.wait_for(lambda c: any(s["agent"] == tag for s in c.status), 60,
                       f"marker {tag} to pass through the broker")


@pytest.mark.parametrize("max_inflight, per_message", [(1, 5), (100, 2)])
def test_broker_sigkilled_repeatedly_while_draining_backlog_loses_nothing(
        tmp_path, broker, collector, gateway, spawn, max_inflight, per_message):
    """The broker is SIGKILLed four times while the agent drains a backlog of 3000 samples
    in small messages, with messages in flight at every kill.

    Mosquitto loses what it acknowledged but had not yet passed to a lagging subscriber
    when it is SIGKILLed (seen: ~1800 samples with the subscriber 2000 messages behind):
    that is the broker's durability, not the agent's. So the link is frozen just before
    each kill (BlackHoleProxy), a marker pushed through the broker shows the subscriber
    has everything the broker received, and then the broker dies with the agent's
    in-flight messages unacknowledged (some received by the broker, their PUBACKs stuck
    in the link, so they come again as duplicates)."""
    units = (1, 2, 3, 4)
    outbox = tmp_path / "outbox.sqlite3"
    proxy = BlackHoleProxy(broker.port).start()
    filling = station(tmp_path, "filling.yaml", proxy.port, gateway, units=units,
                      links=4, interval_s=0.005)
    draining = station(tmp_path, "draining.yaml", proxy.port, gateway, units=units,
                       links=2, interval_s=0.5,
                       mqtt={"max_inflight": max_inflight,
                             "max_samples_per_message": per_message, "live_window_s": 0.5})
    # The collector's persistent session must be on disk before the first SIGKILL.
    wait_until(lambda: (broker.workdir / "mosquitto.db").exists(), 10,
               "the broker to save the collector's session")
    broker.kill()
    agents = [spawn(filling, tmp_path / "agent-fill.log")]
    try:
        wait_until(lambda: committed_total(outbox) >= 3000, 60, "a backlog of 3000 samples")
        stop(agents[0])
        backlog_end = accepted_seqs(outbox)
        backlog = sum(backlog_end.values())
        broker.start()
        agents.append(spawn(draining, tmp_path / "agent-drain.log"))
        at_kill = []
        for round_no in range(BROKER_KILLS):
            # The agent is connected again and drains: the outbox shrinks by a share of
            # what is left (a fixed step can outrun a fast drain: nothing left to kill in)
            left = len(waiting_samples(outbox))
            step = max(1, left // (BROKER_KILLS - round_no + 2))
            wait_until(lambda t=left - step: len(waiting_samples(outbox)) <= t, 180,
                       f"round {round_no}: {step} of {left} samples acknowledged",
                       poll_s=0.005)
            proxy.freeze()
            broker_flushed_to_collector(broker, collector, f"before-kill-{round_no}")
            wait_until(lambda: claimed_messages(outbox), 10, "a message in flight")
            at_kill.append((len(waiting_samples(outbox)), len(claimed_messages(outbox))))
            broker.kill()
            broker.start()
            proxy.thaw()
        collector.wait_for(lambda c: all(c.has_seqs(d, n) for d, n in backlog_end.items()),
                           120, "the whole backlog")
        stop(agents[1])
    finally:
        proxy.stop()
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, units, collector, outbox)
    numbers = reconcile(collector, outbox)
    for unit in units:
        lanes_in_order(collector, f"dev-{unit}")
    assert_no_crash(*agents)
    assert all(waiting > 0 and claimed > 0 for waiting, claimed in at_kill), \
        f"a kill came with no backlog or nothing in flight: {at_kill}"
    print(f"\nmax_inflight={max_inflight}, {per_message} per message: backlog {backlog}; "
          f"(samples waiting, messages in flight) at each broker kill {at_kill}; "
          f"leftovers drained after a restart {leftovers}; {numbers}")


# -- 3. retention by age and by bytes during an outage ---------------------------------------


@pytest.mark.parametrize("limit, reason", [
    ({"max_rows": None, "max_bytes": None, "max_age_s": 1.5}, "max_age"),
    ({"max_rows": None, "max_bytes": "1MB", "max_age_s": None}, "max_bytes"),
])
def test_retention_by_age_or_bytes_during_outage_announces_every_drop(
        tmp_path, broker, collector, gateway, spawn, limit, reason):
    """Retention by age or by database bytes (not rows) during an outage: after recovery
    the gap counts add up to meta.dropped_total, each gap names exactly its samples, and
    received + dropped == accepted. The episode is logged once."""
    outbox = tmp_path / "outbox.sqlite3"
    # Units as long as check allows (32 characters): about 0.5 KB per sample, so 1 MB of
    # database pages fills within seconds at 200 samples a second.
    config = station(tmp_path, "station.yaml", broker.port, gateway, links=2,
                     interval_s=0.01, unit_text="x" * 32, store={"retention": limit})
    agent = spawn(config, tmp_path / "agent.log")
    collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data before the outage")
    broker.stop()
    wait_until(lambda: dropped_total(outbox) >= 300, 60,
               f"retention ({reason}) to drop 300 samples during the outage")
    broker.start()
    collector.wait_for(lambda c: len(gap_events(c)) >= 1, 60, "a gap event")
    resumed_at = committed(outbox)
    collector.wait_for(lambda c: max(c.seqs("dev-1")) > resumed_at + 20, 60,
                       "live data after the outage")
    stop(agent)
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2), collector, outbox)
    total = dropped_total(outbox)
    collector.wait_for(lambda c: sum(g["count"] for g in gap_events(c)) == total, 60,
                       f"gap events counting all {total} drops")
    numbers = reconcile(collector, outbox)
    assert numbers["dropped"] == total
    assert {r for g in gap_events(collector) for r in g["reasons"]} == {reason}
    for device in ("dev-1", "dev-2"):
        lanes_in_order(collector, device)
    warnings = [line for line in agent.log().splitlines()
                if "retention limit reached" in line]
    assert len(warnings) == 1, f"a drop episode must be logged once, got {len(warnings)}"
    assert_no_crash(agent)
    print(f"\n{reason}: dropped_total {total}; "
          f"leftovers drained after a restart {leftovers}; {numbers}")


# -- 4. restart with a backlog while the devices keep producing ------------------------------


def test_restart_with_backlog_marks_it_historical_and_live_lane_never_waits(
        tmp_path, broker, collector, gateway, spawn):
    """1500 samples wait in the outbox (broker down, agent SIGKILLed); the agent restarts
    with the broker up behind a slow uplink (30 kB/s, so the drain takes seconds however
    fast the machine) and one message in flight at a time: the old backlog arrives marked
    historical, live samples keep arriving while it drains, each lane in seq order."""
    outbox = tmp_path / "outbox.sqlite3"
    filling = station(tmp_path, "filling.yaml", broker.port, gateway, links=2,
                      interval_s=0.005)
    live_window_s = 0.3
    uplink = BlackHoleProxy(broker.port, rate_bytes_per_s=30_000).start()
    running = station(tmp_path, "running.yaml", uplink.port, gateway, links=2,
                      interval_s=0.1,
                      mqtt={"max_inflight": 1, "max_samples_per_message": 10,
                            "live_window_s": live_window_s})
    broker.stop()
    first = spawn(filling, tmp_path / "agent-1.log")
    wait_until(lambda: committed_total(outbox) >= 1500, 60, "a backlog of 1500 samples")
    first.kill()
    backlog_end = accepted_seqs(outbox)
    broker.start()
    restarted_at = time.time()
    second = spawn(running, tmp_path / "agent-2.log")
    collector.wait_for(lambda c: all(c.has_seqs(d, n) for d, n in backlog_end.items()), 120,
                       "the whole backlog")
    collector.wait_for(lambda c: max(c.seqs("dev-1")) > backlog_end["dev-1"] + 20, 60,
                       "live data")
    stop(second)
    uplink.stop()
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2), collector, outbox)
    numbers = reconcile(collector, outbox)
    cutoff = restarted_at - live_window_s
    for device, last in backlog_end.items():
        lanes = lanes_in_order(collector, device)
        firsts = collector.first_deliveries(device)
        old = [r for r in firsts if r.sample["seq"] <= last
               and datetime.fromisoformat(r.sample["acquired_at"]).timestamp() < cutoff]
        assert len(old) >= 0.9 * last, "the backlog is too young for this test"
        live_marked = [r.sample["seq"] for r in old if not r.historical]
        assert not live_marked, f"{device}: backlog sent as live: {live_marked[:10]}"
        # The live lane runs while the backlog drains: live samples acquired after the
        # restart arrived before the backlog's last sample did.
        last_backlog_index = max(i for i, r in enumerate(firsts) if r.sample["seq"] <= last)
        live_before = [r for r in firsts[:last_backlog_index]
                       if not r.historical and r.sample["seq"] > last]
        assert len(live_before) >= 5, (
            f"{device}: only {len(live_before)} live samples arrived while the backlog "
            f"drained; the live lane waited for the backlog")
        assert lanes[True] and lanes[False]
    assert_no_crash(first, second)
    print(f"\nbacklog {sum(backlog_end.values())}; "
          f"leftovers drained after a restart {leftovers}; {numbers}")


# -- 5. many devices on one gateway through an outage ----------------------------------------


def test_twenty_devices_on_one_gateway_survive_outage_without_loss_or_dead_thread(
        tmp_path, broker, collector, gateway, spawn):
    """20 units behind one Modbus TCP gateway polled every 50 ms, broker down for 800+
    samples: nothing lost, no reading went bad, no thread died."""
    units = tuple(range(1, 21))
    outbox = tmp_path / "outbox.sqlite3"
    config = station(tmp_path, "station.yaml", broker.port, gateway, units=units,
                     interval_s=0.05, mqtt={"max_samples_per_message": 5})
    agent = spawn(config, tmp_path / "agent.log")
    collector.wait_for(lambda c: all(c.seqs(f"dev-{u}") for u in units), 30,
                       "every device delivering")
    broker.stop()
    before = committed_total(outbox)
    wait_until(lambda: all(committed(outbox, f"dev-{u}") >= 20 for u in units)
               and committed_total(outbox) >= before + 800, 60,
               "800 samples committed from all 20 devices during the outage")
    outage_end = accepted_seqs(outbox)
    broker.start()
    collector.wait_for(lambda c: all(c.has_seqs(d, n) for d, n in outage_end.items()), 60,
                       "everything acquired during the outage")
    collector.wait_for(lambda c: all(max(c.seqs(d)) > n + 3 for d, n in outage_end.items()),
                       60, "live data from all 20 devices after the outage")
    assert agent.alive()
    stop(agent)
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, units, collector, outbox)
    numbers = reconcile(collector, outbox)
    for unit in units:
        lanes_in_order(collector, f"dev-{unit}")
        bad = [r for r in collector.samples if r.device == f"dev-{unit}"
               and any(v["quality"] != "GOOD" for v in r.sample["values"].values())]
        assert not bad, f"dev-{unit}: readings went bad: {bad[0].sample}"
    assert_no_crash(agent)
    print(f"\n20 devices: leftovers drained after a restart {leftovers}; {numbers}")


# -- 6. SIGTERM in the middle of a large backlog drain --------------------------------------


def test_sigterm_during_large_backlog_drain_exits_cleanly_and_loses_nothing(
        tmp_path, broker, collector, gateway, spawn):
    """SIGTERM while a 3000-sample backlog drains: exit 0 well within shutdown_grace_s plus
    a margin, offline status published, and after a restart every sample arrives."""
    outbox = tmp_path / "outbox.sqlite3"
    grace_s = 2.0
    filling = station(tmp_path, "filling.yaml", broker.port, gateway, units=(1, 2, 3, 4),
                      links=4, interval_s=0.005)
    draining = station(tmp_path, "draining.yaml", broker.port, gateway, units=(1, 2, 3, 4),
                       interval_s=0.1,
                       mqtt={"max_inflight": 5, "max_samples_per_message": 1,
                             "live_window_s": 0.5, "shutdown_grace_s": grace_s})
    broker.stop()
    agents = [spawn(filling, tmp_path / "agent-fill.log")]
    wait_until(lambda: committed_total(outbox) >= 3000, 60, "a backlog of 3000 samples")
    stop(agents[0])
    backlog_end = accepted_seqs(outbox)
    broker.start()
    agents.append(spawn(draining, tmp_path / "agent-drain.log"))
    # Measured on the outbox, not at the subscriber: the subscriber lags behind the agent,
    # and by the time it had 300 samples a fast drain had once already ended.
    total = len(waiting_samples(outbox))
    wait_until(lambda: len(waiting_samples(outbox)) <= total - 300, 60, "the backlog draining")
    assert agents[1].process is not None
    agents[1].process.send_signal(15)
    code = agents[1].process.wait(timeout=grace_s + 15)
    assert code == 0, agents[1].log()[-3000:]
    assert "edge-agent stopped" in agents[1].log()
    left = len(waiting_samples(outbox))
    assert left > 0, "the backlog had drained before SIGTERM; the test proved nothing"
    collector.wait_for(lambda c: any(s["state"] == "offline" for s in c.status), 30,
                       "the offline status of a clean stop")
    agents.append(spawn(draining, tmp_path / "agent-after.log"))
    collector.wait_for(lambda c: all(c.has_seqs(d, n) for d, n in backlog_end.items()), 120,
                       "the rest of the backlog after the restart")
    stop(agents[2])
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2, 3, 4), collector,
                                outbox)
    numbers = reconcile(collector, outbox)
    for unit in (1, 2, 3, 4):
        lanes_in_order(collector, f"dev-{unit}")
    assert_no_crash(*agents)
    print(f"\n{left} samples left in the outbox at SIGTERM; "
          f"leftovers drained after a restart {leftovers}; {numbers}")


def test_sigterm_while_blackholed_exits_within_grace_and_resends_after_restart(
        tmp_path, broker, collector, gateway, spawn):
    """SIGTERM with the in-flight window full of messages the silent link swallowed: the
    agent does not wait for PUBACKs that cannot come beyond its grace, exits 0, and the
    restarted agent re-sends those messages."""
    outbox = tmp_path / "outbox.sqlite3"
    grace_s = 2.0
    proxy = BlackHoleProxy(broker.port).start()
    config = station(tmp_path, "station.yaml", proxy.port, gateway,
                     mqtt={"max_inflight": 10, "max_samples_per_message": 2,
                           "shutdown_grace_s": grace_s, "keepalive_s": 30})
    agents = []
    try:
        agents.append(spawn(config, tmp_path / "agent-1.log"))
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 10, 30, "data before the black hole")
        proxy.freeze()
        wait_until(lambda: len(claimed_messages(outbox)) >= 10, 30,
                   "the in-flight window full of unacknowledged messages")
        stuck = claimed_messages(outbox)
        assert agents[0].process is not None
        agents[0].process.send_signal(15)
        code = agents[0].process.wait(timeout=grace_s + 15)
        assert code == 0, agents[0].log()[-3000:]
        assert "edge-agent stopped" in agents[0].log()
        proxy.thaw()
        agents.append(spawn(config, tmp_path / "agent-2.log"))
        stuck_ids = {sample_id for rows in stuck.values() for _, _, sample_id in rows}
        collector.wait_for(lambda c: stuck_ids <= {r.sample["id"] for r in c.samples}, 60,
                           "the messages stuck at SIGTERM re-sent")
        stop(agents[1])
    finally:
        proxy.stop()
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2), collector, outbox)
    numbers = reconcile(collector, outbox)
    assert_no_crash(*agents)
    print(f"\nstuck at SIGTERM {len(stuck)} messages; "
          f"leftovers drained after a restart {leftovers}; {numbers}")


# -- 7. a flapping uplink: outage, partial drain, outage again with retention ----------------


def test_gap_after_flapping_uplink_never_covers_delivered_samples(
        tmp_path, broker, collector, gateway, spawn):
    """Outage 1 leaves a backlog; after reconnecting, live samples go first while the
    backlog drains; the uplink goes silent (outage 2) before the backlog has drained and
    retention drops the oldest undelivered samples: the rest of the backlog, then samples
    acquired after the live ones already delivered. Each gap event must describe exactly
    the samples it dropped, never a range with delivered samples inside. The uplink is
    slow (20 kB/s) so the backlog is still draining when outage 2 starts, however fast
    the machine."""
    outbox = tmp_path / "outbox.sqlite3"
    proxy = BlackHoleProxy(broker.port, rate_bytes_per_s=20_000).start()
    config = station(tmp_path, "station.yaml", proxy.port, gateway, links=2,
                     interval_s=0.02,
                     store={"retention": {"max_rows": 400, "max_bytes": None,
                                          "max_age_s": None}},
                     mqtt={"max_inflight": 1, "max_samples_per_message": 5,
                           "live_window_s": 0.2})
    try:
        agent = spawn(config, tmp_path / "agent.log")
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data before outage 1")
        broker.stop()
        start = committed(outbox)
        wait_until(lambda: committed(outbox) >= start + 100, 30, "a backlog during outage 1")
        outage_1_end = committed(outbox)
        broker.start()
        collector.wait_for(lambda c: any(r.device == "dev-1" and not r.historical
                                         and r.sample["seq"] > outage_1_end
                                         for r in c.samples), 60,
                           "a live sample after outage 1")
        proxy.freeze()  # outage 2: instant, nothing more reaches the broker
        outage_2_start = committed(outbox)
        delivered_live = [s for s in collector.seqs("dev-1") if s > outage_1_end]
        backlog_left = [s for d, s in query(
            outbox, "SELECT device_id, seq FROM outbox WHERE kind = 'sample' AND NOT EXISTS "
                    "(SELECT 1 FROM claims c WHERE c.device_id = outbox.device_id "
                    "AND outbox.id BETWEEN c.first_row AND c.last_row)")
            if d == "dev-1" and s <= outage_1_end]
        assert dropped_total(outbox) == 0, "retention dropped before outage 2: no scenario"
        assert backlog_left, "the backlog drained before outage 2: no scenario"

        def drops_passed_the_live_samples() -> bool:
            return any((json.loads(body)["last_seq"] or 0) > outage_2_start for (body,) in query(
                outbox, "SELECT body FROM outbox WHERE kind = 'gap' AND device_id = 'dev-1'"))

        wait_until(drops_passed_the_live_samples, 60,
                   "retention to drop the rest of the backlog and samples acquired after the "
                   "live ones that were delivered")
        proxy.thaw()
        resumed_at = committed(outbox)
        collector.wait_for(lambda c: max(c.seqs("dev-1")) > resumed_at + 20, 60,
                           "live data after outage 2")
        stop(agent)
    finally:
        proxy.stop()
    leftovers = drain_leftovers(spawn, tmp_path, broker, gateway, (1, 2), collector, outbox)
    total = dropped_total(outbox)
    collector.wait_for(lambda c: sum(g["count"] for g in gap_events(c)) == total, 60,
                       f"gap events counting all {total} drops")
    numbers = reconcile(collector, outbox)
    assert_no_crash(agent)
    gaps = sorted((g["first_seq"], g["last_seq"]) for g in gap_events(collector)
                  if g["device"] == "dev-1")
    print(f"\nflapping: dev-1 had {len(backlog_left)} backlog samples left and "
          f"{len(delivered_live)} live ones delivered ({min(delivered_live)}..) at outage 2; "
          f"dev-1 gaps {gaps}; leftovers drained after a restart {leftovers}; {numbers}")
